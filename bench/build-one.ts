/**
 * One scale measurement in a process of its own, so that its memory is not mixed with anything
 * else: `node --expose-gc --import tsx bench/build-one.ts NODES PODS_PER_NODE`.
 *
 * Builds a synthetic flannel-vxlan cluster, reports buildCluster's wall time, memory after a full
 * GC, the process's peak RSS, the routes/neighbours/FDB entries the nodes got and the heap each
 * kind of entry costs (by emptying the tables: that cluster is then built again), and the time of a
 * walk between two far-apart nodes (first on a fresh cluster, with ARP; then a second connection).
 * Last, the spec goes through the YAML loader to prove it is a valid cluster file. The result is
 * printed as one JSON line prefixed with RESULT_PREFIX.
 */
import { loadavg } from 'node:os';
import { stringify } from 'yaml';
import { loadCluster } from '../src/cluster/load.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { walk } from '../src/trace/walk.ts';
import { runChecks } from '../src/diagnose/checks.ts';
import { doctor } from '../src/diagnose/doctor.ts';
import {
  nodeName,
  podName,
  cpuMs,
  gc,
  RESULT_PREFIX,
  sizeOf,
  syntheticSpec,
  type BuildResult,
  type WalkTiming,
} from './scale.ts';

/** the JS heap and the typed arrays' buffers (the compact tables' rows), which V8 keeps outside its heap */
function used(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function timedWalk(c: ReturnType<typeof buildCluster>, from: string, to: string, sport: number): WalkTiming {
  const t = performance.now();
  const w = walk(c, { from, to, proto: 'tcp', port: 8080, sport });
  const ms = performance.now() - t;
  return {
    from,
    to,
    ms,
    requestSteps: w.request.steps.length,
    replySteps: w.reply?.steps.length ?? 0,
    delivered: w.request.disposition.kind === 'delivered' && w.reply?.disposition.kind === 'delivered',
  };
}

/** what tableBytes needs of a table: Fib and CompactTable both are one */
interface StoredTable {
  readonly size: number;
  readonly ownSize: number;
  readonly segment: StoredTable | undefined;
  clear(): void;
}

/**
 * Heap each kind of table entry costs, measured by emptying that table in every namespace (the
 * routes, then the neighbours, then every bridge and VXLAN FDB; `clear` gives the columns back)
 * and taking the heap a full GC gives back: the entries with their share of the tables' columns
 * and indexes and of what they alone refer to, not the namespaces and devices around them. Per
 * entry listed (what `ip route`, `ip neigh`, `bridge fdb` print on every namespace), and per row
 * stored: a table's own rows, and the rows of a shared segment (a lease set every node lists,
 * netlink.ts leasesInstall) once, however many tables list it.
 */
function tableBytes(c: Cluster): BuildResult['perEntry'] {
  const nss = [...c.world.netns.values()];
  // a namespace's neighbour table is made when first read: made here first for every namespace,
  // so that the tables this function would make are not counted against the entries (they were
  // when it read them between the two GCs: −82 B a neighbour at 100 nodes)
  for (const ns of nss) void ns.neigh;
  const drop = (tablesOf: (ns: (typeof nss)[number]) => StoredTable[]) => {
    const tables = nss.flatMap(tablesOf);
    gc();
    const before = used();
    let entries = 0;
    let rows = 0;
    const segments = new Set<StoredTable>();
    for (const t of tables) {
      entries += t.size;
      rows += t.ownSize;
      const seg = t.segment;
      if (seg && !segments.has(seg)) {
        segments.add(seg);
        rows += seg.ownSize;
      }
      t.clear();
    }
    segments.clear();
    gc();
    const freed = before - used();
    return { entries, rows, bytes: entries ? freed / entries : 0, rowBytes: rows ? freed / rows : 0 };
  };
  const route = drop((ns) => [ns.fib]);
  const neighbour = drop((ns) => [ns.neigh]);
  const fdb = drop((ns) => {
    const out: StoredTable[] = [];
    for (const l of ns.links.values()) if (l.type === 'bridge' || l.type === 'vxlan') out.push(l.fdb);
    return out;
  });
  return { route, neighbour, fdb };
}

function main(): void {
  const nodes = Number(process.argv[2]);
  const podsPerNode = Number(process.argv[3] ?? '30');
  if (!Number.isInteger(nodes) || nodes < 2 || !Number.isInteger(podsPerNode) || podsPerNode < 1)
    throw new Error('usage: build-one.ts NODES(>=2) [PODS_PER_NODE(>=1)]');

  let t = performance.now();
  const spec = syntheticSpec(nodes, podsPerNode, 'flannel-vxlan');
  const specMs = performance.now() - t;
  gc();
  const heapUsedBefore = used();

  const load = loadavg()[0];
  t = performance.now();
  let cpu = process.cpuUsage();
  let cluster: Cluster | undefined = buildCluster(spec, 'flannel-vxlan');
  const buildMs = performance.now() - t;
  const buildCpuMs = cpuMs(process.cpuUsage(cpu));

  gc();
  const mem = process.memoryUsage();
  const maxRss = process.resourceUsage().maxRSS * 1024;

  let routes = 0;
  let neighbours = 0;
  let fdb = 0;
  for (const n of cluster.nodes) {
    const ns = cluster.world.ns(n.name);
    routes += sizeOf(ns.fib);
    neighbours += sizeOf(ns.neigh);
    const vx = ns.link('flannel.1');
    if (vx?.type === 'vxlan') fdb += sizeOf(vx.fdb);
  }

  // what each kind of entry costs, on the tables as the build left them (a walk or doctor's
  // checks make objects of the entries they read); then the same cluster built again for the rest
  const pods = cluster.pods.length;
  const netns = cluster.world.netns.size;
  // the first run of the code that empties the tables compiles it, which the heap shows: once on
  // a small cluster first (without it, −10 B a neighbour at 100 nodes, whose 100 rows are a few KiB)
  tableBytes(buildCluster(syntheticSpec(2, 2, 'flannel-vxlan'), 'flannel-vxlan'));
  const perEntry = tableBytes(cluster);
  cluster = undefined;
  gc();
  cluster = buildCluster(spec, 'flannel-vxlan');

  // the two nodes furthest apart in every table (first and last node, address and pod CIDR)
  const from = podName(0, 0);
  const to = podName(nodes - 1, podsPerNode - 1);
  if (!cluster.pods.some((p) => p.name === to && p.node === nodeName(nodes - 1)))
    throw new Error(`pod ${to} missing`);
  const firstWalk = timedWalk(cluster, from, to, 40000);
  const secondWalk = timedWalk(cluster, from, to, 40001);
  const WARM_WALKS = 200;
  let warmMs = 0;
  let last = secondWalk;
  let delivered = true;
  for (let k = 0; k < WARM_WALKS; k++) {
    last = timedWalk(cluster, from, to, 40002 + k);
    warmMs += last.ms;
    delivered &&= last.delivered;
  }
  const warmWalk = { ...last, ms: warmMs / WARM_WALKS, delivered, walks: WARM_WALKS };

  // doctor: the checks on this cluster, then a whole doctor run (a fresh build, the three probes
  // on it, the checks), with this cluster released first; wall and CPU time (the machine is shared)
  t = performance.now();
  cpu = process.cpuUsage();
  const findings = runChecks(cluster).reduce((n, k) => n + k.findings.length, 0);
  const checksMs = performance.now() - t;
  const checksCpuMs = cpuMs(process.cpuUsage(cpu));
  cluster = undefined;
  gc();
  t = performance.now();
  cpu = process.cpuUsage();
  const fresh = buildCluster(spec, 'flannel-vxlan');
  const doctorBuildMs = performance.now() - t;
  const doctorBuildCpuMs = cpuMs(process.cpuUsage(cpu));
  cpu = process.cpuUsage();
  const report = doctor(fresh, { from, to, proto: 'tcp', port: 8080 });
  const doctorCpuMs = doctorBuildCpuMs + cpuMs(process.cpuUsage(cpu));
  const doctorMs = performance.now() - t;

  // the generated spec is a valid cluster file (after the measurements: it must not count in maxRSS)
  t = performance.now();
  const yaml = stringify({
    ...spec,
    pods: spec.pods.map((p) => ({ ...p, listen: p.listen.map((l) => `${l.proto}/${l.port}`) })),
  });
  const loaded = loadCluster(yaml, `bench-${nodes}x${podsPerNode}.yaml`);
  const loadMs = performance.now() - t;
  if (loaded.nodes.length !== nodes || loaded.pods.length !== nodes * podsPerNode)
    throw new Error('the loader disagrees with the generated spec');

  const result: BuildResult = {
    nodes,
    podsPerNode,
    pods,
    netns,
    specMs,
    buildMs,
    buildCpuMs,
    loadAvg: [load, loadavg()[0]],
    heapUsedBefore,
    heapUsed: mem.heapUsed + mem.arrayBuffers,
    rss: mem.rss,
    maxRss,
    routes,
    neighbours,
    fdb,
    perEntry,
    checksMs,
    checksCpuMs,
    findings,
    doctorMs,
    doctorBuildMs,
    doctorCpuMs,
    doctorBuildCpuMs,
    doctorHealthy: report.healthy,
    firstWalk,
    secondWalk,
    warmWalk,
    loadMs,
  };
  process.stdout.write(RESULT_PREFIX + JSON.stringify(result) + '\n');
}

main();
