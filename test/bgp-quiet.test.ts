/**
 * The build walks BIRD's own traffic quietly (src/kernel/exchange.ts runNetwork `quiet`: no steps,
 * counter lists or captures kept, as nobody traces the build and quiesce clears its captures).
 * The proof that this changes nothing the build leaves: on random clusters (one or two subnets,
 * with or without a router, sessions configured down, per-node MTUs, every BGP mode and both
 * layouts), the World built quietly is the World built with every step recorded and every frame
 * captured: the same kernel state (worldToData, with the sockets, timers and the clock), before
 * quiesce (the counters, neighbours, conntrack and FDB entries the traffic left) and after, and the
 * same BGP sessions (FSM state, Adj-RIB-In, timers, messages and octets sent, connect()s).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import type { ClusterSpec, CniMode } from '../src/cluster/spec.ts';
import { worldToData } from '../src/kernel/snapshot.ts';
import { seededRandom } from '../src/kernel/world.ts';

const MODES: CniMode[] = ['calico-bgp', 'calico-ipip', 'calico-ipip-crosssubnet'];

function randomSpec(rnd: () => number, k: number): ClusterSpec {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const nodes = 2 + Math.floor(rnd() * 7);
  const two = rnd() < 0.5;
  const router = !two || rnd() < 0.7;
  const subnets = [
    { name: 'lan0', cidr: '10.0.1.0/24', ...(router ? { gateway: '10.0.1.1' } : {}) },
    ...(two ? [{ name: 'lan1', cidr: '10.0.2.0/24', ...(router ? { gateway: '10.0.2.1' } : {}) }] : []),
  ];
  const names = Array.from({ length: nodes }, (_, i) => `n${i}`);
  const bgp: ClusterSpec['bgp'] = [];
  for (let i = 0; i < nodes; i++)
    for (let j = i + 1; j < nodes; j++)
      if (rnd() < 0.15)
        bgp.push({ nodes: rnd() < 0.5 ? [names[i], names[j]] : [names[j], names[i]], state: 'down' });
  const pods = names.flatMap((n, i) =>
    Array.from({ length: Math.floor(rnd() * 3) }, (_, j) => ({
      name: `p${i}-${j}`,
      node: n,
      listen: [{ proto: 'tcp' as const, port: 8080 }],
    })),
  );
  return {
    name: `quiet-${k}`,
    cni: pick(MODES),
    mtu: pick([1500, 9000]),
    ...(rnd() < 0.25 ? { calicoLayout: 'bridge' as const } : {}),
    subnets,
    nodes: names.map((name, i) => ({
      name,
      // in two subnets, the nodes alternate between them (in random order)
      ip: `10.0.${two && rnd() < 0.5 ? 2 : 1}.${10 + i}/24`,
      podCIDR: `10.244.${i}.0/24`,
      ...(rnd() < 0.2 ? { mtu: pick([1400, 1500]) } : {}),
    })),
    pods,
    bgp,
    run: [],
  };
}

/** every session as plain data (its connection by its four-tuple and state) */
function sessions(c: Cluster): unknown[] {
  return c.bgp!.all().map((s) => ({
    ...s,
    conn: s.conn && [s.conn.local, s.conn.lport, s.conn.remote, s.conn.rport, s.conn.state],
  }));
}

test('a quiet build of random calico clusters leaves exactly what a recorded build leaves', () => {
  const rnd = seededRandom(2026_12_05);
  let established = 0;
  let down = 0;
  for (let k = 0; k < 24; k++) {
    const spec = randomSpec(rnd, k);
    const what = `cluster ${k} (${spec.cni}, ${spec.nodes.length} nodes, ${spec.subnets.length} subnets)`;
    // what the traffic left before quiesce clears it (counters, neighbours, conntrack, FDBs) too
    const before: string[] = [];
    const converged = (c: Cluster) => {
      const d = worldToData(c.world);
      before.push(JSON.stringify({ ...d, captures: [] }));
    };
    const quiet = buildCluster(spec, spec.cni, { converged });
    const recorded = buildCluster(spec, spec.cni, { bgpWalk: 'recorded', converged });
    assert.ok(recorded.world.captures.length === 0 && before.length === 2);
    assert.equal(before[0], before[1], `${what}: the kernel state before quiesce`);
    assert.equal(
      JSON.stringify(worldToData(quiet.world)),
      JSON.stringify(worldToData(recorded.world)),
      `${what}: the kernel state`,
    );
    assert.deepEqual(sessions(quiet), sessions(recorded), `${what}: the sessions`);
    for (const s of quiet.bgp!.all())
      if (s.peer.state === 'Established') established++;
      else down++;
  }
  // the clusters cover both outcomes: sessions that came up and sessions that did not
  assert.ok(established > 100 && down > 10, `established ${established}, not ${down}`);
});
