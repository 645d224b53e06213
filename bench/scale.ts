/**
 * Synthetic clusters for the scale benchmark: one underlay segment (10.0.0.0/16, router at
 * 10.0.0.1), N nodes at 10.0.0.10 upward, each with a /24 pod CIDR from 10.128.0.0/9 and P pods
 * listening on tcp/8080. Also what bench/build-one.ts reports back to bench/run.ts.
 */
import type { ClusterSpec, CniMode, NodeSpec, PodSpec } from '../src/cluster/spec.ts';

const NODE_BASE = (10 << 24) + 10; // 10.0.0.10
const POD_BASE = (10 << 24) + (128 << 16); // 10.128.0.0

function dotted(n: number): string {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.');
}

export function nodeName(i: number): string {
  return `node-${String(i).padStart(4, '0')}`;
}

export function podName(node: number, j: number): string {
  return `p${String(node).padStart(4, '0')}-${String(j).padStart(2, '0')}`;
}

export function syntheticSpec(
  nodes: number,
  podsPerNode: number,
  cni: CniMode = 'flannel-vxlan',
): ClusterSpec {
  // 10.0.0.10 + nodes must stay inside 10.0.0.0/16 (and short of its broadcast address);
  // pod /24s must stay inside 10.128.0.0/9
  if (nodes < 1 || nodes > 65000) throw new Error(`nodes must be 1..65000, got ${nodes}`);
  if (podsPerNode < 0 || podsPerNode > 250) throw new Error(`pods per node must be 0..250`);
  const nodeSpecs: NodeSpec[] = [];
  const podSpecs: PodSpec[] = [];
  for (let i = 0; i < nodes; i++) {
    const name = nodeName(i);
    nodeSpecs.push({
      name,
      ip: `${dotted(NODE_BASE + i)}/16`,
      podCIDR: `${dotted(POD_BASE + i * 256)}/24`,
    });
    for (let j = 0; j < podsPerNode; j++)
      podSpecs.push({ name: podName(i, j), node: name, listen: [{ proto: 'tcp', port: 8080 }] });
  }
  return {
    name: `bench-${nodes}x${podsPerNode}`,
    cni,
    mtu: 1500,
    subnets: [{ name: 'lan0', cidr: '10.0.0.0/16', gateway: '10.0.0.1' }],
    nodes: nodeSpecs,
    pods: podSpecs,
    bgp: [],
    run: [],
  };
}

/**
 * Entries in a kernel table, whether the model keeps it as an array or as a keyed table with a
 * size (the kernel objects' representation changes as the model is optimised)
 */
export function sizeOf(t: { readonly length: number } | { readonly size: number }): number {
  return 'length' in t ? t.length : t.size;
}

/** a full GC, twice (the process runs with --expose-gc), before reading the heap */
export function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (!g) throw new Error('run with --expose-gc');
  g();
  g();
}

/** user + system CPU time of a process.cpuUsage() difference, ms */
export const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;

/** build-one.ts prints its result as one JSON line starting with this */
export const RESULT_PREFIX = 'BUILD-RESULT ';

export interface WalkTiming {
  from: string;
  to: string;
  ms: number;
  requestSteps: number;
  replySteps: number;
  delivered: boolean;
}

export interface BuildResult {
  nodes: number;
  podsPerNode: number;
  pods: number;
  netns: number;
  specMs: number;
  buildMs: number;
  /** the same in CPU time (user + system, GC threads included): the machine is shared */
  buildCpuMs: number;
  /** the 1-minute load average when the build started and when the run ended */
  loadAvg: [number, number];
  /** bytes: heap with the spec only (before buildCluster), after gc(); heap here and below is
   * heapUsed + arrayBuffers (the tables' typed arrays live outside V8's heap) */
  heapUsedBefore: number;
  /** bytes, after buildCluster and gc() */
  heapUsed: number;
  rss: number;
  /** bytes (resourceUsage().maxRSS is in KiB) */
  maxRss: number;
  routes: number;
  neighbours: number;
  fdb: number;
  /**
   * heap per route, neighbour and FDB entry (every namespace's, pods' and bridges' included): what
   * a full GC gives back when that table is emptied everywhere, per entry listed and per row
   * stored (a shared segment's rows once: bench/build-one.ts tableBytes)
   */
  perEntry: Record<
    'route' | 'neighbour' | 'fdb',
    { entries: number; rows: number; bytes: number; rowBytes: number }
  >;
  firstWalk: WalkTiming;
  secondWalk: WalkTiming;
  /** mean of WARM_WALKS further walks (new connection each) */
  warmWalk: WalkTiming & { walks: number };
  loadMs: number;
  /** doctor's cluster-wide checks on the built cluster */
  checksMs: number;
  checksCpuMs: number;
  /** findings the checks reported (0 on the healthy synthetic cluster) */
  findings: number;
  /** a whole `podwalk doctor` of the far-apart flow: the cluster built, three probes on it, the checks */
  doctorMs: number;
  /** of which the build */
  doctorBuildMs: number;
  /** the same in CPU time (user + system, GC threads included) */
  doctorCpuMs: number;
  doctorBuildCpuMs: number;
  doctorHealthy: boolean;
}
