/**
 * Loc-RIB to FIB as BIRD's kernel protocol does it (src/bgp/krt.ts), driven by two podwalk BGP
 * peers (src/bgp/fsm.ts) on modelled namespaces, against the real kernel's tables: what `ip route`
 * printed in the recording of two real BIRD 2 on the same topology (test/fixtures/bgp/manifest.json,
 * scripts/record-bgp-bird.ts) once the mesh session was Established, and once n1 had disabled it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PeerConfig } from '../src/bgp/fsm.ts';
import {
  bgpRoutes,
  directRoutes,
  kernelProtocol,
  krtSync,
  locRib,
  meshProtocolName,
  PREF_STATIC,
  type KernelProtocol,
} from '../src/bgp/krt.ts';
import type { Cluster } from '../src/cni/build.ts';
import { addressAdd, linkAdd, linkSetUp, netnsAdd, NLM_ADD, routeAdd } from '../src/kernel/netlink.ts';
import type { Netns } from '../src/kernel/objects.ts';
import { World } from '../src/kernel/world.ts';
import { CALICO_AS } from '../src/lab/bird.ts';
import { TOOLS } from '../src/tools/index.ts';
import { Pair } from './bgp-pair.ts';

const manifest = JSON.parse(
  readFileSync(join(import.meta.dirname, 'fixtures', 'bgp', 'manifest.json'), 'utf8'),
) as {
  nodes: { name: string; ip: string; mac: string; block: string }[];
  steps: { at: string; node: string; argv: string[]; out: string }[];
};
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
  /** each BIRD's table (static block, direct, the session's routes) synced to its kernel */
  const sync = (i: 0 | 1) => {
    const peer = manifest.nodes[1 - i];
    return krtSync(
      ns[i],
      krt[i],
      locRib([
        {
          prefix: manifest.nodes[i].block,
          proto: 'static1',
          preference: PREF_STATIC,
          dest: { type: 'blackhole' },
        },
        ...directRoutes(ns[i]),
        ...bgpRoutes(ns[i], meshProtocolName(peer.ip), peer.ip, pair.peers[i].ribIn),
      ]),
    );
  };
  // the kernel protocol follows every change of the session's routes
  pair.onStep = (i, actions) => {
    if (actions.some((x) => x.kind === 'rib')) sync(i);
  };
  const ipRoute = (n: Netns) => TOOLS.ip(['route'], { cluster: { world: w } as Cluster, netns: n }).stdout;
  return { w, ns, pair, sync, ipRoute };
}

test("BIRD 2's kernel protocol on podwalk's sessions: ip route byte-identical to the real kernel's, Established and after Cease", () => {
  const { ns, pair, sync, ipRoute } = topology();
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
