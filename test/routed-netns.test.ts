/**
 * netlink.ts routedNetnsAdd (a pod's namespace, a veth pair without a bridge, the pod's /32, its
 * route to a gateway no device holds and its default route through it, the host end's sysctls
 * and the host's route to the /32, in one request per namespace, the carrier bookkeeping done
 * once) against the same requests made one by one (routedNetnsOneByOne: netnsAdd, linkAdd,
 * linkSetUp, routeInstall twice, addressAdd, setSysctl for each, linkSetUp, routeInstall):
 * random runs of requests, valid and not (names taken or invalid, MTUs out of range, addresses and
 * gateways that are loopback, multicast, broadcast, in 0/8 or the node's own, addresses the host
 * already routes, sysctls the kernel acts on when written), on a host that routes some addresses
 * already or not. The world after each run, as data, and the refusal must be the same.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  addressAdd,
  linkAdd,
  linkSetUp,
  netnsAdd,
  routedNetnsAdd,
  routedNetnsOneByOne,
  routeInstall,
  NLM_ADD,
  type PortSysctl,
  type RoutedNetnsRequest,
} from '../src/kernel/netlink.ts';
import { worldToData } from '../src/kernel/snapshot.ts';
import { seededRandom, World } from '../src/kernel/world.ts';

/** a node with an address, and maybe a pod routed already (its port `caliold`, its address 10.1.0.5) */
function host(withPod: boolean, forwarding: boolean): World {
  const w = new World('routed');
  const node = netnsAdd(w, 'node', 'node');
  linkAdd(w, node, { type: 'bridge', name: 'br0', mac: '02:00:00:00:00:01', mtu: 1500 });
  linkSetUp(w, node, 'br0', true);
  addressAdd(node, 'br0', '10.0.0.10', 24);
  if (forwarding) node.setSysctl('net.ipv4.ip_forward', '1');
  if (withPod) {
    const old = netnsAdd(w, 'old', 'pod');
    linkAdd(w, old, {
      type: 'veth',
      name: 'eth0',
      mac: '02:00:00:00:00:02',
      mtu: 1450,
      peer: { netns: node, name: 'caliold', mac: 'ee:ee:ee:ee:ee:ee', mtu: 1450 },
    });
    linkSetUp(w, node, 'caliold', true);
    routeInstall(node, { prefix: '10.1.0.5', dev: 'caliold', scope: 'link', nl: NLM_ADD });
  }
  return w;
}

function pick<T>(rnd: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rnd() * xs.length)];
}

const CALICO: readonly PortSysctl[] = [
  { table: 'conf', knob: 'route_localnet', value: '1' },
  { table: 'neigh', knob: 'proxy_delay', value: '0' },
  { table: 'conf', knob: 'proxy_arp', value: '1' },
  { table: 'conf', knob: 'forwarding', value: '1' },
];
const ODD_SYSCTLS: readonly (readonly PortSysctl[])[] = [
  [],
  [{ table: 'conf', knob: 'forwarding', value: '0' }],
  [
    { table: 'neigh', knob: 'base_reachable_time_ms', value: '1000' },
    { table: 'conf', knob: 'proxy_arp', value: '0' },
  ],
  [...CALICO].reverse(),
];

function requests(rnd: () => number, n: number): RoutedNetnsRequest[] {
  const out: RoutedNetnsRequest[] = [];
  // each field is odd on its own, now and then
  const odd = () => rnd() < 0.08;
  for (let i = 0; i < n; i++) {
    const ip = odd()
      ? pick(rnd, [
          '10.1.0.5',
          `10.1.0.${10 + Math.max(0, i - 1)}`,
          '10.0.0.10',
          '10.0.0.255',
          '127.0.0.5',
          '0.0.0.7',
          '224.1.1.1',
          '255.255.255.255',
          '169.254.1.1',
        ])
      : `10.1.0.${10 + i}`;
    const hex = (i & 0xff).toString(16).padStart(2, '0');
    out.push({
      name: odd() ? pick(rnd, ['node', 'old', `p${Math.max(0, i - 1)}`]) : `p${i}`,
      role: 'pod',
      dev: odd() ? pick(rnd, ['lo', 'a b', 'x'.repeat(16), '', 'eth1']) : 'eth0',
      mac: `02:00:00:00:01:${hex}`,
      port: odd()
        ? pick(rnd, [
            'br0',
            'caliold',
            'lo',
            `cali${Math.max(0, i - 1)}`,
            'a/b',
            'all',
            'default',
            'x'.repeat(16),
          ])
        : `cali${i}`,
      portMac: 'ee:ee:ee:ee:ee:ee',
      mtu: odd() ? pick(rnd, [67, 68, 1400, 9000, 65535, 65536]) : 1450 - (i % 3) * 10,
      ip,
      gateway: odd()
        ? pick(rnd, [
            ip,
            '127.0.0.1',
            '0.0.0.0',
            '0.0.0.1',
            '224.0.0.1',
            '255.255.255.255',
            '10.0.0.10',
            '10.0.0.0',
          ])
        : '169.254.1.1',
      portSysctls: odd() ? pick(rnd, ODD_SYSCTLS) : CALICO,
    });
  }
  return out;
}

function run(f: () => void): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    return `${(e as Error).constructor.name}: ${(e as Error).message}`;
  }
}

test('routedNetnsAdd leaves the world as the requests one by one do, refusals included', () => {
  const rnd = seededRandom(17);
  let through = 0;
  let refused = 0;
  for (let trial = 0; trial < 1500; trial++) {
    const withPod = rnd() < 0.5;
    const forwarding = rnd() < 0.5;
    const reqs = requests(rnd, 1 + Math.floor(rnd() * 6));
    const a = host(withPod, forwarding);
    const b = host(withPod, forwarding);
    const errA = run(() => routedNetnsAdd(a, a.ns('node'), reqs));
    const errB = run(() => {
      for (const r of reqs) routedNetnsOneByOne(b, b.ns('node'), r);
    });
    const what = `trial ${trial}: ${JSON.stringify({ withPod, forwarding })} ${JSON.stringify(reqs)}`;
    assert.equal(errA, errB, what);
    assert.equal(JSON.stringify(worldToData(a)), JSON.stringify(worldToData(b)), what);
    if (errA) refused++;
    else through++;
  }
  // both ways were taken: runs without a refusal, and refusals
  assert.ok(through > 50 && refused > 50, `${through} runs through, ${refused} refused`);
});
