/**
 * One BGP convergence measurement in a process of its own: `node --import tsx bench/bgp-one.ts
 * NODES [PODS_PER_NODE]`. Builds bench/scale.ts's synthetic cluster in calico-bgp (Calico's
 * node-to-node mesh: every BIRD's sessions run over the modelled datapath, src/bgp/session.ts) and
 * reports the sessions, the BGP messages and octets sent, the TCP segments the sessions' kernels
 * sent, the simulated time to convergence, the CPU time of the build and of its BGP part, and
 * whether every session is Established with every route in the kernel. One JSON line prefixed
 * with RESULT_PREFIX.
 */
import { buildCluster } from '../src/cni/build.ts';
import { RESULT_PREFIX, syntheticSpec } from './scale.ts';

export interface BgpResult {
  nodes: number;
  podsPerNode: number;
  sessions: number;
  established: number;
  messages: number;
  octets: number;
  connects: number;
  /** routes learned over all sessions (Adj-RIB-In entries) */
  routes: number;
  /** proto bird routes in the kernels, and how many there should be (every node: every other's block) */
  kernelRoutes: number;
  expectedRoutes: number;
  /** µs on the model's clock when the build's mesh had converged */
  simulatedUs: number;
  buildCpuMs: number;
}

const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;

function main(): void {
  const nodes = Number(process.argv[2]);
  const podsPerNode = Number(process.argv[3] ?? '1');
  const spec = syntheticSpec(nodes, podsPerNode, 'calico-bgp');
  const cpu = process.cpuUsage();
  const c = buildCluster(spec);
  const buildCpuMs = cpuMs(process.cpuUsage(cpu));
  const all = c.bgp!.all();
  let kernelRoutes = 0;
  for (const n of c.nodes)
    for (const r of c.world.ns(n.name).fib.list()) if (r.proto === 'bird') kernelRoutes++;
  // every node: a blackhole for its own block, a route for each other node's
  const res: BgpResult = {
    nodes,
    podsPerNode,
    sessions: all.length / 2,
    established: all.filter((s) => s.peer.state === 'Established').length / 2,
    messages: all.reduce((n, s) => n + s.sent, 0),
    octets: all.reduce((n, s) => n + s.octets, 0),
    connects: all.reduce((n, s) => n + s.connects, 0),
    routes: all.reduce((n, s) => n + s.peer.ribIn.size, 0),
    kernelRoutes,
    expectedRoutes: nodes * nodes,
    simulatedUs: c.world.now,
    buildCpuMs,
  };
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(res)}\n`);
}

main();
