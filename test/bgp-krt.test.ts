/**
 * Loc-RIB to FIB as BIRD's kernel protocol does it (src/bgp/krt.ts), driven by two podwalk BGP
 * peers (src/bgp/fsm.ts) on modelled namespaces, against the real kernel's tables: what `ip route`
 * printed in the recording of two real BIRD 2 on the same topology (test/fixtures/bgp/manifest.json,
 * scripts/record-bgp-bird.ts) once the mesh session was Established, with a workload on n1 borrowing
 * an address of n2's block, and once n1 had disabled the session.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PeerConfig } from '../src/bgp/fsm.ts';
import {
  bgpRoutes,
  calicoExport,
  directRoutes,
  kernelRoutes,
  kernelProtocol,
  krtSync,
  locRib,
  meshProtocolName,
  PREF_STATIC,
  type KernelProtocol,
} from '../src/bgp/krt.ts';
import type { Cluster } from '../src/cni/build.ts';
import {
  addressAdd,
  linkAdd,
  linkSetUp,
  netnsAdd,
  NLM_ADD,
  routeAdd,
  routeDel,
} from '../src/kernel/netlink.ts';
import type { Netns } from '../src/kernel/objects.ts';
import { World } from '../src/kernel/world.ts';
import { CALICO_AS, CALICO_POOL } from '../src/lab/bird.ts';
import { TOOLS } from '../src/tools/index.ts';
import { Pair } from './bgp-pair.ts';

const manifest = JSON.parse(
  readFileSync(join(import.meta.dirname, 'fixtures', 'bgp', 'manifest.json'), 'utf8'),
) as {
  nodes: { name: string; ip: string; mac: string; block: string }[];
  steps: { at: string; node: string; argv: string[]; out: string }[];
};
const borrowed = (
  JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'bgp', 'manifest.json'), 'utf8')) as {
    borrowed: { ip: string; dev: string; peer: string };
  }
).borrowed;
const recorded = (at: string, node: string) =>
  manifest.steps.find((s) => s.at === at && s.node === node && s.argv.join(' ') === 'ip route')!.out;

/** the recording's topology in the model: two namespaces on a veth pair, BIRD 2's kernel protocol (metric 32) in each */
function topology() {
  const w = new World('bgp-krt');
  const [a, b] = manifest.nodes;
  const ns = manifest.nodes.map((n) => netnsAdd(w, n.name, 'node'));
  linkAdd(w, ns[0], {
    type: 'veth',
    name: 'eth0',
    mac: a.mac,
    mtu: 1500,
    peer: { netns: ns[1], name: 'eth0', mac: b.mac, mtu: 1500 },
  });
  manifest.nodes.forEach((n, i) => {
    addressAdd(ns[i], 'eth0', n.ip, 24);
    linkSetUp(w, ns[i], 'eth0', true);
  });
  const cfg = (i: 0 | 1): PeerConfig => {
    const me = manifest.nodes[i];
    const peer = manifest.nodes[1 - i];
    return {
      localAs: CALICO_AS,
      peerAs: CALICO_AS,
      localId: me.ip,
      localAddress: me.ip,
      peerAddress: peer.ip,
      holdTime: 240,
      connectRetryTime: 5,
      // Calico's mesh: the higher address waits for the lower one... n2 connected to n1 in the recording
      passive: peer.ip > me.ip,
      addPath: true,
      gracefulRestartTime: 120,
      originates: [me.block],
    };
  };
  const pair = new Pair(cfg(0), cfg(1));
  const krt: KernelProtocol[] = [kernelProtocol(32), kernelProtocol(32)];
  /** what each node announces beyond its block (which the FSM originates) */
  let announced = [new Set<string>(), new Set<string>()];
  /**
   * each BIRD's table (static block, direct, what the kernel protocol learns, the session's routes)
   * synced to its kernel, and Calico's export filter applied to what it announces
   */
  const sync = (i: 0 | 1) => {
    const me = manifest.nodes[i];
    const peer = manifest.nodes[1 - i];
    const best = locRib([
      { prefix: me.block, proto: 'static1', preference: PREF_STATIC, dest: { type: 'blackhole' } },
      ...directRoutes(ns[i]),
      ...kernelRoutes(ns[i]),
      ...bgpRoutes(ns[i], meshProtocolName(peer.ip), peer.ip, [...pair.peers[i].ribIn.values()]),
    ]);
    krtSync(ns[i], krt[i], best);
    if (pair.peers[i].state !== 'Established') {
      announced[i].clear();
      return;
    }
    const out = new Set(calicoExport(best, CALICO_POOL, [me.block]).filter((p) => p !== me.block));
    const add = [...out].filter((p) => !announced[i].has(p));
    const gone = [...announced[i]].filter((p) => !out.has(p));
    announced = i === 0 ? [out, announced[1]] : [announced[0], out];
    if (add.length) pair.feed(i, { kind: 'announce', prefixes: add });
    if (gone.length) pair.feed(i, { kind: 'withdraw', prefixes: gone });
  };
  // the kernel protocol follows every change of the session's routes
  pair.onStep = (i, actions) => {
    if (actions.some((x) => x.kind === 'rib')) sync(i);
  };
  const ipRoute = (n: Netns) => TOOLS.ip(['route'], { cluster: { world: w } as Cluster, netns: n }).stdout;
  return { w, ns, pair, sync, ipRoute };
}

test("BIRD 2's kernel protocol on podwalk's sessions: ip route byte-identical to the real kernel's, Established, a borrowed /32, after Cease", () => {
  const { w, ns, pair, sync, ipRoute } = topology();
  // BIRD starts: static and direct routes are exported before any session is up
  sync(0);
  sync(1);
  assert.equal(
    ipRoute(ns[0]),
    recorded('disabled', 'n1'),
    'no session: the block blackhole and the direct route, as after n1 disabled the session',
  );
  pair.feed(0, { kind: 'start' });
  pair.feed(1, { kind: 'start' });
  assert.deepEqual(
    pair.peers.map((p) => p.state),
    ['Established', 'Established'],
  );
  assert.equal(ipRoute(ns[0]), recorded('established', 'n1'));
  assert.equal(ipRoute(ns[1]), recorded('established', 'n2'));

  // a workload on n1 with an address of n2's block (the recording's): its /32 route on a cali
  // interface, which n1's kernel protocol learns and n1 announces; n2 installs it
  const wl = netnsAdd(w, 'pwh-wl0', 'pod');
  linkAdd(w, ns[0], {
    type: 'veth',
    name: borrowed.dev,
    mac: 'ee:ee:ee:ee:ee:ee',
    mtu: 1500,
    peer: { netns: wl, name: borrowed.peer, mac: '02:00:00:00:00:46', mtu: 1500 },
  });
  linkSetUp(w, wl, borrowed.peer, true);
  linkSetUp(w, ns[0], borrowed.dev, true);
  routeAdd(ns[0], { prefix: borrowed.ip, dev: borrowed.dev, nl: NLM_ADD });
  sync(0); // the kernel protocol's scan
  assert.equal(ipRoute(ns[0]), recorded('borrowed', 'n1'));
  assert.equal(ipRoute(ns[1]), recorded('borrowed', 'n2'));
  // what each learned: the other's block and the borrowed /32, nothing of its own sent back
  assert.deepEqual(
    pair.peers.map((p) => [...p.ribIn.values()].map((r) => r.prefix)),
    [['10.244.0.64/26'], ['10.244.0.0/26', '10.244.0.70/32']],
  );
  // the route deleted: n1 withdraws it, n2 deletes it
  routeDel(ns[0], borrowed.ip, { dev: borrowed.dev });
  sync(0);
  assert.equal(ipRoute(ns[0]), recorded('established', 'n1'));
  assert.equal(ipRoute(ns[1]), recorded('established', 'n2'));

  // n1 disables the session (birdc disable): Cease, both Idle, the learned routes leave the kernel
  pair.feed(0, { kind: 'stop' });
  assert.deepEqual(
    pair.peers.map((p) => p.state),
    ['Idle', 'Idle'],
  );
  assert.equal(ipRoute(ns[0]), recorded('disabled', 'n1'));
  assert.equal(ipRoute(ns[1]), recorded('disabled', 'n2'));
});

test('the kernel protocol deletes only its own routes: another route of the prefix stays when the session drops', () => {
  const { ns, pair } = topology();
  pair.feed(0, { kind: 'start' });
  pair.feed(1, { kind: 'start' });
  // an admin's route of the same prefix at another metric: not BIRD's
  routeAdd(ns[0], { prefix: '10.244.0.64/26', via: '192.168.1.11', dev: 'eth0', metric: 100, nl: NLM_ADD });
  const of = () =>
    ns[0].fib
      .list()
      .filter((r) => r.len === 26 && r.via === '192.168.1.11')
      .map((r) => `${r.proto} ${r.metric}`);
  assert.deepEqual(of(), ['bird 32', 'boot 100']);
  pair.feed(0, { kind: 'stop' });
  assert.deepEqual(of(), ['boot 100']);
});
