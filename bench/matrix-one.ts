/**
 * `podwalk matrix` at scale, in a process of its own: `node --import tsx bench/matrix-one.ts NODES
 * [PODS_PER_NODE]`. The cluster is bench/matrix-spec.ts's (calico-bgp, 20 namespaces, 1,000
 * Deployments, 50 NetworkPolicies), written as a cluster file and read back as the CLI reads it;
 * then computeMatrix for tcp/8080 (the build and every walk), then the whole truth table rendered
 * line by line into a sink that counts bytes (what `podwalk matrix > file` writes). Times are
 * wall and CPU (user + system of the process, GC threads included: the machine is shared, CPU
 * time is what the run itself cost). The result is one JSON line prefixed with RESULT_PREFIX.
 */
import { loadCluster } from '../src/cluster/load.ts';
import { computeMatrix, matrixLines } from '../src/diagnose/matrix.ts';
import { matrixSpec, matrixYaml } from './matrix-spec.ts';
import { RESULT_PREFIX } from './scale.ts';

export interface Timing {
  wallMs: number;
  cpuMs: number;
}

export interface MatrixResult {
  nodes: number;
  podsPerNode: number;
  pods: number;
  policies: number;
  /** bytes of the cluster file */
  yamlBytes: number;
  load: Timing;
  /** computeMatrix: build, grouping and every walk */
  matrix: Timing;
  render: Timing;
  cells: number;
  blocked: number;
  walks: number;
  groups: number;
  /** walks between two nodes (the rest stay on one node) */
  crossNodeWalks: number;
  /** the node pairs they walked between: the first walk of each broadcast ARP on the underlay */
  nodePairs: number;
  /** bytes of the rendered truth table */
  bytes: number;
  /** bytes (resourceUsage().maxRSS is in KiB) */
  maxRss: number;
}

function timed<T>(f: () => T): [T, Timing] {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = f();
  const c = process.cpuUsage(c0);
  return [r, { wallMs: performance.now() - t0, cpuMs: (c.user + c.system) / 1000 }];
}

function main(): void {
  const nodes = Number(process.argv[2]);
  const podsPerNode = Number(process.argv[3] ?? '30');
  if (!Number.isInteger(nodes) || nodes < 2 || !Number.isInteger(podsPerNode) || podsPerNode < 1)
    throw new Error('usage: matrix-one.ts NODES(>=2) [PODS_PER_NODE(>=1)]');
  const yaml = matrixYaml(matrixSpec(nodes, podsPerNode));
  const [spec, load] = timed(() => loadCluster(yaml, `matrix-${nodes}x${podsPerNode}.yaml`));
  const [m, matrix] = timed(() => computeMatrix(spec, spec.cni, [], { proto: 'tcp', port: 8080 }));
  let bytes = 0;
  const [counts, render] = timed(() => matrixLines(m, (l) => (bytes += Buffer.byteLength(l) + 1)));
  const nodeOf = new Map(spec.pods.map((p) => [p.name, p.node]));
  const cross = m.walks.filter((w) => nodeOf.get(w.from) !== nodeOf.get(w.to));
  const pairs = new Set(cross.map((w) => [nodeOf.get(w.from), nodeOf.get(w.to)].sort().join(' ')));
  const result: MatrixResult = {
    nodes,
    podsPerNode,
    pods: spec.pods.length,
    policies: spec.policies?.length ?? 0,
    yamlBytes: yaml.length,
    load,
    matrix,
    render,
    cells: counts.cells,
    blocked: counts.blocked,
    walks: m.walks.length,
    groups: m.grouping.used ? m.grouping.groups : 0,
    crossNodeWalks: cross.length,
    nodePairs: pairs.size,
    bytes,
    maxRss: process.resourceUsage().maxRSS * 1024,
  };
  process.stdout.write(RESULT_PREFIX + JSON.stringify(result) + '\n');
}

main();
