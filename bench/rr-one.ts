/**
 * Route-reflector convergence in a process of its own: `node --import tsx bench/rr-one.ts NODES
 * [REFLECTORS]`. bench/scale.ts's synthetic cluster (one pod a node) in calico-bgp as Calico's
 * documentation sets up route reflectors: the node-to-node mesh off (BGPConfiguration), the first
 * REFLECTORS nodes (default 2) labelled route-reflector=true with routeReflectorClusterID
 * 244.0.0.1, one BGPPeer (nodeSelector all(), peerSelector route-reflector == 'true'). Every
 * BIRD's sessions run over the modelled datapath (src/bgp/session.ts) and the reflectors reflect
 * (src/bgp/reflect.ts). Reports the sessions, the BGP messages and octets sent, the simulated time
 * to convergence, the TCP segments the nodes sent meanwhile (TcpOutSegs: data, ACKs, SYNs and FINs),
 * the build's CPU time and peak RSS, and whether every node has every other
 * node's block in its kernel (one pod a node: one /26 block each, so a node has NODES proto bird
 * routes, its own block's blackhole and one route per other node). One JSON line prefixed with RESULT_PREFIX.
 */
import { buildCluster } from '../src/cni/build.ts';
import { RESULT_PREFIX, syntheticSpec } from './scale.ts';

export interface RrResult {
  nodes: number;
  reflectors: number;
  sessions: number;
  established: number;
  messages: number;
  /** UPDATE messages sent (End-of-RIB included), the routes they announced and withdrew */
  updates: number;
  nlri: number;
  withdrawn: number;
  /** TCP segments the nodes sent while BGP converged (TcpOutSegs, before quiesce's baseline) */
  segments: number;
  octets: number;
  /** messages the reflectors sent */
  reflectorMessages: number;
  /** Adj-RIB-In entries over all sessions */
  routes: number;
  kernelRoutes: number;
  expectedRoutes: number;
  /** nodes whose kernel has a proto bird route for every block (its own blackhole, every other node's) */
  completeNodes: number;
  simulatedUs: number;
  buildCpuMs: number;
  maxRssMiB: number;
}

const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;

function main(): void {
  const nodes = Number(process.argv[2]);
  const reflectors = Number(process.argv[3] ?? '2');
  if (!Number.isInteger(nodes) || nodes < 2 || !Number.isInteger(reflectors) || reflectors < 1)
    throw new Error('usage: rr-one.ts NODES [REFLECTORS]');
  const spec = syntheticSpec(nodes, 1, 'calico-bgp');
  spec.nodes.slice(0, reflectors).forEach((n) => {
    n.labels = { 'route-reflector': 'true' };
    n.routeReflectorClusterID = '244.0.0.1';
  });
  spec.bgpConfiguration = { nodeToNodeMeshEnabled: false };
  spec.bgpPeers = [
    { name: 'peer-with-route-reflectors', nodeSelector: 'all()', peerSelector: "route-reflector == 'true'" },
  ];
  const cpu = process.cpuUsage();
  let segments = 0;
  const c = buildCluster(spec, spec.cni, {
    converged: (b) => {
      for (const n of b.nodes) segments += b.world.ns(n.name).mib.get('TcpOutSegs') ?? 0;
    },
  });
  const buildCpuMs = cpuMs(process.cpuUsage(cpu));
  const all = c.bgp!.all();
  const rrs = new Set(spec.nodes.slice(0, reflectors).map((n) => n.name));
  let kernelRoutes = 0;
  let completeNodes = 0;
  for (const n of c.nodes) {
    let bird = 0;
    for (const r of c.world.ns(n.name).fib.list()) if (r.proto === 'bird') bird++;
    kernelRoutes += bird;
    if (bird === nodes) completeNodes++;
  }
  const res: RrResult = {
    nodes,
    reflectors,
    sessions: all.length / 2,
    established: all.filter((s) => s.peer.state === 'Established').length / 2,
    messages: all.reduce((n, s) => n + s.sent, 0),
    updates: all.reduce((n, s) => n + s.updates, 0),
    nlri: all.reduce((n, s) => n + s.nlri, 0),
    withdrawn: all.reduce((n, s) => n + s.withdrawn, 0),
    segments,
    octets: all.reduce((n, s) => n + s.octets, 0),
    reflectorMessages: all.filter((s) => rrs.has(s.node)).reduce((n, s) => n + s.sent, 0),
    routes: all.reduce((n, s) => n + s.peer.ribIn.size, 0),
    kernelRoutes,
    // every node: a blackhole for its own block, a route for each other node's
    expectedRoutes: nodes * nodes,
    completeNodes,
    simulatedUs: c.world.now,
    buildCpuMs,
    maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
  };
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(res)}\n`);
}

main();
