/**
 * netlink.ts bridgedNetnsAdd (a pod's namespace, veth, bridge port, address and default route in
 * one request per namespace, the carrier bookkeeping done once) against the same requests made
 * one by one (bridgedNetnsOneByOne: netnsAdd, linkAdd, linkSetMaster, linkSetUp twice,
 * addressAdd, routeInstall): random runs of requests, valid and not (names taken or invalid,
 * MTUs out of range, a bridge down, addresses that bring no prefix route, gateways outside the
 * prefix, its broadcast, loopback, onlink), on a bridge with or without a forwarding port and a
 * neighbour its carrier loss would flush. The world after each run, as data, and the refusal
 * must be the same.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  addressAdd,
  bridgedNetnsAdd,
  bridgedNetnsOneByOne,
  linkAdd,
  linkSetMaster,
  linkSetUp,
  neighAdd,
  netnsAdd,
  type BridgedNetnsRequest,
} from '../src/kernel/netlink.ts';
import { worldToData } from '../src/kernel/snapshot.ts';
import { seededRandom, World } from '../src/kernel/world.ts';

interface Setup {
  bridgeUp: boolean;
  /** a port already on the bridge, forwarding (its peer up) or not */
  port?: 'forwarding' | 'down';
  /** a neighbour on the bridge (a bridge up that loses its carrier flushes it) */
  neighbour: boolean;
}

function host(s: Setup): World {
  const w = new World('bridged');
  const node = netnsAdd(w, 'node', 'node');
  linkAdd(w, node, { type: 'bridge', name: 'br0', mac: '02:00:00:00:00:01', mtu: 1500 });
  if (s.bridgeUp) linkSetUp(w, node, 'br0', true);
  addressAdd(node, 'br0', '10.1.0.1', 24);
  if (s.port) {
    const other = netnsAdd(w, 'other', 'pod');
    linkAdd(w, other, {
      type: 'veth',
      name: 'eth0',
      mac: '02:00:00:00:00:02',
      mtu: 1450,
      peer: { netns: node, name: 'vethold', mac: '02:00:00:00:00:03', mtu: 1450 },
    });
    linkSetMaster(w, node, 'vethold', 'br0');
    linkSetUp(w, node, 'vethold', true);
    if (s.port === 'forwarding') linkSetUp(w, other, 'eth0', true);
  }
  if (s.neighbour)
    neighAdd(node, w, {
      ip: '10.1.0.9',
      dev: 'br0',
      lladdr: '02:00:00:00:00:09',
      state: 'REACHABLE',
      nl: { create: true, excl: true, replace: false },
    });
  return w;
}

function pick<T>(rnd: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rnd() * xs.length)];
}

function requests(rnd: () => number, n: number): BridgedNetnsRequest[] {
  const out: BridgedNetnsRequest[] = [];
  // each field is odd on its own, now and then
  const odd = () => rnd() < 0.08;
  for (let i = 0; i < n; i++) {
    const len = odd() ? pick(rnd, [0, 1, 2, 8, 16, 30, 31, 32]) : 24;
    const ip = odd()
      ? pick(rnd, ['10.1.0.0', '10.1.0.255', '127.0.0.5', '0.0.0.7', '64.0.0.5', '224.1.1.1', '10.1.7.7'])
      : `10.1.0.${10 + i}`;
    const hex = (i & 0xff).toString(16).padStart(2, '0');
    out.push({
      name: odd() ? pick(rnd, ['node', 'other', `p${Math.max(0, i - 1)}`]) : `p${i}`,
      role: 'pod',
      dev: odd() ? pick(rnd, ['lo', 'a b', 'x'.repeat(16), '', 'eth1']) : 'eth0',
      mac: `02:00:00:00:01:${hex}`,
      port: odd() ? pick(rnd, ['br0', 'vethold', 'lo', `veth${Math.max(0, i - 1)}`, 'a/b']) : `veth${i}`,
      portMac: `02:00:00:00:02:${hex}`,
      mtu: odd() ? pick(rnd, [67, 68, 1400, 9000, 65535, 65536]) : 1450 - (i % 3) * 10,
      ip,
      len,
      gateway: odd()
        ? pick(rnd, [
            ip,
            '10.1.0.255',
            '10.1.0.0',
            '10.1.255.255',
            '10.2.0.1',
            '127.0.0.1',
            '64.0.0.1',
            '0.0.0.1',
          ])
        : '10.1.0.1',
      onlink: odd(),
    });
  }
  return out;
}

function run(w: World, f: () => void): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    return `${(e as Error).constructor.name}: ${(e as Error).message}`;
  }
}

test('bridgedNetnsAdd leaves the world as the requests one by one do, refusals included', () => {
  const rnd = seededRandom(16);
  let fast = 0;
  let refused = 0;
  for (let trial = 0; trial < 1500; trial++) {
    const setup: Setup = {
      bridgeUp: rnd() < 0.9,
      port: pick(rnd, [undefined, 'forwarding', 'down'] as const),
      neighbour: rnd() < 0.5,
    };
    const reqs = requests(rnd, 1 + Math.floor(rnd() * 6));
    const a = host(setup);
    const b = host(setup);
    const errA = run(a, () => bridgedNetnsAdd(a, a.ns('node'), 'br0', reqs));
    const errB = run(b, () => {
      for (const r of reqs) bridgedNetnsOneByOne(b, b.ns('node'), 'br0', r);
    });
    const what = `trial ${trial}: ${JSON.stringify(setup)} ${JSON.stringify(reqs)}`;
    assert.equal(errA, errB, what);
    assert.equal(JSON.stringify(worldToData(a)), JSON.stringify(worldToData(b)), what);
    if (errA) refused++;
    if (!errA && setup.bridgeUp) fast++;
  }
  // both ways were taken: runs without a refusal on an up bridge, and refusals
  assert.ok(fast > 50 && refused > 50, `${fast} runs through, ${refused} refused`);
});
