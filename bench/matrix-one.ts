/**
 * `podwalk matrix` at scale, in a process of its own: `node --import tsx bench/matrix-one.ts NODES
 * [PODS_PER_NODE] [MODE]`. The cluster is bench/matrix-spec.ts's (calico-bgp unless MODE says
 * another, 20 namespaces, 1,000 Deployments, 50 NetworkPolicies), written as a cluster file and
 * read back as the CLI reads it; then computeMatrix for tcp/8080 (the build, the grouping and
 * every walk, each phase timed), then the whole truth table rendered
 * line by line into a sink that counts bytes (what `podwalk matrix > file` writes). Times are
 * wall and CPU (user + system of the process, GC threads included: the machine is shared, CPU
 * time is what the run itself cost). The result is one JSON line prefixed with RESULT_PREFIX.
 */
import { loadCluster } from '../src/cluster/load.ts';
import { CNI_MODES, type CniMode } from '../src/cluster/spec.ts';
import { computeMatrix, matrixLines } from '../src/diagnose/matrix.ts';
import { matrixSpec, matrixYaml } from './matrix-spec.ts';
import { RESULT_PREFIX } from './scale.ts';

export interface Timing {
  wallMs: number;
  cpuMs: number;
}

export interface MatrixResult {
  mode: CniMode;
  nodes: number;
  podsPerNode: number;
  pods: number;
  policies: number;
  /** bytes of the cluster file */
  yamlBytes: number;
  load: Timing;
  /** computeMatrix: build, grouping and every walk */
  matrix: Timing;
  /** computeMatrix's phases: the cluster built (for calico-bgp, BIRD's sessions converged), the pods grouped, every walk */
  phases: { build: Timing; grouping: Timing; walks: Timing };
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

function now(): Timing {
  const c = process.cpuUsage();
  return { wallMs: performance.now(), cpuMs: (c.user + c.system) / 1000 };
}

const since = (a: Timing, b: Timing): Timing => ({ wallMs: b.wallMs - a.wallMs, cpuMs: b.cpuMs - a.cpuMs });

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
  const mode = CNI_MODES.find((m) => m === (process.argv[4] ?? 'calico-bgp'));
  if (!Number.isInteger(nodes) || nodes < 2 || !Number.isInteger(podsPerNode) || podsPerNode < 1 || !mode)
    throw new Error('usage: matrix-one.ts NODES(>=2) [PODS_PER_NODE(>=1)] [MODE]');
  const yaml = matrixYaml(matrixSpec(nodes, podsPerNode, mode));
  const [spec, load] = timed(() => loadCluster(yaml, `matrix-${nodes}x${podsPerNode}.yaml`));
  const marks: Partial<Record<'build' | 'grouping' | 'walks', Timing>> = {};
  const start = now();
  const [m, matrix] = timed(() =>
    computeMatrix(spec, spec.cni, [], { proto: 'tcp', port: 8080 }, { phase: (p) => (marks[p] = now()) }),
  );
  const built = marks.build ?? start;
  const grouped = marks.grouping ?? built;
  const phases = {
    build: since(start, built),
    grouping: since(built, grouped),
    walks: since(grouped, marks.walks ?? grouped),
  };
  let bytes = 0;
  const [counts, render] = timed(() => matrixLines(m, (l) => (bytes += Buffer.byteLength(l) + 1)));
  const nodeOf = new Map(spec.pods.map((p) => [p.name, p.node]));
  const cross = m.walks.filter((w) => nodeOf.get(w.from) !== nodeOf.get(w.to));
  const pairs = new Set(cross.map((w) => [nodeOf.get(w.from), nodeOf.get(w.to)].sort().join(' ')));
  const result: MatrixResult = {
    mode,
    nodes,
    podsPerNode,
    pods: spec.pods.length,
    policies: spec.policies?.length ?? 0,
    yamlBytes: yaml.length,
    load,
    matrix,
    phases,
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
