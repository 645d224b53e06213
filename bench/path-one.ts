/**
 * The whole path the goal names, by phase, in a process of its own: `node --expose-gc
 * --import tsx bench/path-one.ts NODES [PODS_PER_NODE] [CNI]`.
 *
 * bench/scale.ts's synthetic cluster is written as a cluster file (YAML, as `podwalk` reads one;
 * not measured), then, measured: the file read (readFileSync), `loadCluster` (parse and
 * validate), `buildCluster`, and the first walk between the first and the last node (ARP across the
 * segment). Per phase: CPU time (user + system, GC threads included), wall time and the process's
 * peak RSS once it is done. Then what the namespaces cost: the heap a full GC gives back when every
 * pod's namespace is taken out of the world, per pod namespace (its devices, addresses, routes,
 * neighbours, netfilter, conntrack, sockets, sysctls; not the node's side of its veth). Printed as
 * one JSON line prefixed with RESULT_PREFIX (bench/scale.ts).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { loadCluster } from '../src/cluster/load.ts';
import { CNI_MODES, type CniMode } from '../src/cluster/spec.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { walk } from '../src/trace/walk.ts';
import { cpuMs, gc, nodeName, podName, RESULT_PREFIX, syntheticSpec } from './scale.ts';

export interface Phase {
  cpuMs: number;
  wallMs: number;
  /** bytes: the process's peak RSS when the phase ended */
  maxRss: number;
}

export interface PathResult {
  nodes: number;
  podsPerNode: number;
  cni: CniMode;
  netns: number;
  /** bytes of the cluster file */
  fileBytes: number;
  /** the 1-minute load average at the start and the end */
  loadAvg: [number, number];
  read: Phase;
  load: Phase;
  build: Phase;
  firstWalk: Phase & { requestSteps: number; replySteps: number; delivered: boolean };
  /** the four phases together */
  total: Phase;
  /** bytes: heap + array buffers after the build, after a full GC */
  heapAfterBuild: number;
  /** bytes a full GC gives back per pod namespace taken out of the world */
  podNetnsBytes: number;
  /** routes listed per node (`ip route` on the first and the last node) */
  routesFirst: number;
  routesLast: number;
}

function used(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function phase<T>(f: () => T): [T, Phase] {
  const wall = performance.now();
  const cpu = process.cpuUsage();
  const v = f();
  return [
    v,
    {
      cpuMs: cpuMs(process.cpuUsage(cpu)),
      wallMs: performance.now() - wall,
      maxRss: process.resourceUsage().maxRSS * 1024,
    },
  ];
}

/** takes every pod's namespace out of the world (in a frame of its own: the interpreter's registers
 * of the caller would keep the list of them alive through the next GC) */
function dropPods(c: Cluster): number {
  let pods = 0;
  for (const [name, ns] of [...c.world.netns])
    if (ns.role === 'pod') {
      c.world.netns.delete(name);
      pods++;
    }
  return pods;
}

function main(): void {
  const nodes = Number(process.argv[2]);
  const podsPerNode = Number(process.argv[3] ?? '30');
  const cni = (process.argv[4] ?? 'flannel-vxlan') as CniMode;
  if (!Number.isInteger(nodes) || nodes < 2 || !Number.isInteger(podsPerNode) || podsPerNode < 1)
    throw new Error('usage: path-one.ts NODES(>=2) [PODS_PER_NODE(>=1)] [CNI]');
  if (!CNI_MODES.includes(cni)) throw new Error(`CNI must be one of ${CNI_MODES.join(', ')}`);

  // the cluster file, as a user would write it (listen entries in their short form)
  const spec = syntheticSpec(nodes, podsPerNode, cni);
  const dir = mkdtempSync(join(tmpdir(), 'podwalk-bench-'));
  const file = join(dir, `bench-${nodes}x${podsPerNode}.yaml`);
  writeFileSync(
    file,
    stringify({
      ...spec,
      pods: spec.pods.map((p) => ({ ...p, listen: p.listen.map((l) => `${l.proto}/${l.port}`) })),
    }),
  );
  gc();
  const load0 = loadavg()[0];

  const wall0 = performance.now();
  const cpu0 = process.cpuUsage();
  const [text, read] = phase(() => readFileSync(file, 'utf8'));
  const [loaded, load] = phase(() => loadCluster(text, file));
  const [cluster, build] = phase((): Cluster => buildCluster(loaded, cni));
  const from = podName(0, 0);
  const to = podName(nodes - 1, podsPerNode - 1);
  const [w, first] = phase(() => walk(cluster, { from, to, proto: 'tcp', port: 8080, sport: 40000 }));
  const total: Phase = {
    cpuMs: cpuMs(process.cpuUsage(cpu0)),
    wallMs: performance.now() - wall0,
    maxRss: process.resourceUsage().maxRSS * 1024,
  };
  rmSync(dir, { recursive: true });
  if (loaded.pods.length !== nodes * podsPerNode) throw new Error('the loader lost pods');

  const routesOf = (n: string) => cluster.world.ns(n).fib.size;
  const routesFirst = routesOf(nodeName(0));
  const routesLast = routesOf(nodeName(nodes - 1));
  const netns = cluster.world.netns.size;
  gc();
  const heapAfterBuild = used();
  const pods = dropPods(cluster);
  gc();
  const podNetnsBytes = (heapAfterBuild - used()) / pods;

  const result: PathResult = {
    nodes,
    podsPerNode,
    cni,
    netns,
    fileBytes: Buffer.byteLength(text),
    loadAvg: [load0, loadavg()[0]],
    read,
    load,
    build,
    firstWalk: {
      ...first,
      requestSteps: w.request.steps.length,
      replySteps: w.reply?.steps.length ?? 0,
      delivered: w.request.disposition.kind === 'delivered' && w.reply?.disposition.kind === 'delivered',
    },
    total,
    heapAfterBuild,
    podNetnsBytes,
    routesFirst,
    routesLast,
  };
  process.stdout.write(RESULT_PREFIX + JSON.stringify(result) + '\n');
}

main();
