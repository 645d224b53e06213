/**
 * podwalk's benchmark: `npm run bench`. Prints the tables and rewrites BENCHMARKS.md with them.
 *
 *  1. traces per second on the seed cluster, for every CNI mode, pod-a → pod-c (node1 → node2)
 *     and pod-a → pod-b (both on node1): "cold" = buildCluster + the first walk (with ARP) per
 *     iteration, "warm" = new connections (sport 40000+i) walked through one built cluster;
 *  2. buildCluster time and memory for 100 × 30 and 1000 × 30 flannel-vxlan clusters, each in a
 *     child process of its own (bench/build-one.ts), and one walk across the 1000-node cluster;
 *     Then doctor's own CPU time per mode, and a whole `podwalk doctor --cluster FILE` (bench/doctor-one.ts, a
 *     child process each; BENCH_DOCTOR="MODE:NODES,…", default flannel-vxlan and calico-vxlan at 1,000 × 30,
 *     calico-bgp at 100 × 30).
 *  3. podwalk matrix on clusters of those sizes with 50 NetworkPolicies (bench/matrix-one.ts).
 *  2b. the issue's whole path, file to first walk, by phase (bench/path-one.ts): flannel-vxlan at
 *     100, 1,000 and 5,000 nodes, and calico-vxlan (/26 IPAM blocks) at the same sizes (BENCH_PATH
 *     sets them).
 *
 *  4. Services at scale (bench/svc-one.ts, a child process): 1,000 ClusterIP Services of 5
 *     endpoints on 20 nodes × 250 pods, against the same cluster without them: build time, heap,
 *     `iptables-save -t nat`'s rules, the nat rules a new connection's first packet runs through and
 *     walks per second (BENCH_SERVICES="NODES,PODS_PER_NODE,SERVICES,ENDPOINTS").
 *
 *  3. importing a dump set of 100 nodes × 30 pods (`--from DIR`): read, plan, apply, in a child
 *     process (bench/import-one.ts); the dump set is printed by the emulated tools (bench/dumps.ts).
 *
 *  BGP over the datapath: a node-to-node mesh (bench/bgp-one.ts, BENCH_BGP_SIZES) and route
 *  reflectors (bench/rr-one.ts, BENCH_RR_SIZES), each size a child process: messages, the model's
 *  time to converge, CPU, peak RSS, whether every node has every route.
 *
 * Environment: BENCH_MS (measuring time per case, default 1500), BENCH_WARMUP_MS (default 250),
 * BENCH_SIZES (node counts of the scale and matrix runs, default "100,1000"; the build-and-memory
 * runs default to "100,1000,5000", BENCH_SCALE_SIZES sets them alone).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { seedCluster } from '../src/cluster/seed.ts';
import { CNI_MODES, type ClusterSpec, type CniMode } from '../src/cluster/spec.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { walk, type Walk } from '../src/trace/walk.ts';
import { RESULT_PREFIX, sizeOf, type BuildResult } from './scale.ts';
import type { MatrixResult, Timing } from './matrix-one.ts';
import { kernelBench, type KernelBench } from './kernel.ts';
import type { ImportResult } from './import-one.ts';
import type { SvcResult } from './svc-one.ts';
import type { BgpResult } from './bgp-one.ts';
import type { PathResult } from './path-one.ts';
import type { DoctorResult } from './doctor-one.ts';
import type { RrResult } from './rr-one.ts';
import type { WalkCpuResult } from './walk-cpu.ts';

const MEASURE_MS = Number(process.env.BENCH_MS ?? 1500);
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 250);
const SIZES = (process.env.BENCH_SIZES ?? '100,1000').split(',').map(Number);
/** the Services run: nodes, pods per node, Services, endpoints each (BENCH_SERVICES, e.g. "20,250,1000,5") */
const SERVICES = (process.env.BENCH_SERVICES ?? '20,250,1000,5').split(',');
/** node counts of the build-and-memory runs: the matrix's sizes and Kubernetes' limit, 5,000 nodes */
const SCALE_SIZES = (process.env.BENCH_SCALE_SIZES ?? process.env.BENCH_SIZES ?? '100,1000,5000')
  .split(',')
  .map(Number);
const PODS_PER_NODE = 30;
/** nodes of the imported dump set (BENCH_IMPORT_NODES) */
const IMPORT_NODES = Number(process.env.BENCH_IMPORT_NODES ?? 100);
const DEFAULTS = !process.env.BENCH_MS && !process.env.BENCH_WARMUP_MS && !process.env.BENCH_SIZES;
/** warm walks use sport 40000, 40001, …: a new connection each, until the port range ends */
const SPORT_BASE = 40000;
const MAX_WARM_WALKS = 65535 - SPORT_BASE + 1;
/** the warm runs are cut into this many windows to see whether walks slow down as tables grow */
const WINDOWS = 6;

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OUT = fileURLToPath(new URL('../BENCHMARKS.md', import.meta.url));

interface PathCase {
  label: string;
  from: string;
  to: string;
}

const PATHS: PathCase[] = [
  { label: 'cross-node pod-a → pod-c', from: 'pod-a', to: 'pod-c' },
  { label: 'same-node pod-a → pod-b', from: 'pod-a', to: 'pod-b' },
];

interface ColdResult {
  iterations: number;
  ms: number;
  buildMs: number;
  walkMs: number;
  requestSteps: number;
  replySteps: number;
  delivered: boolean;
}

interface WarmResult {
  walks: number;
  ms: number;
  /** CPU time (user + system) of the measured run: the machine may be shared */
  cpuMs: number;
  /** ops/s of each window of the measured run */
  windows: number[];
  requestSteps: [number, number];
  replySteps: [number, number];
  delivered: boolean;
  /** table sizes after the run (warm-up walks included) */
  totalWalks: number;
  tcpConns: number;
  conntrack: number;
  captures: number;
  /** simulated µs the clock advanced per walk */
  simUsPerWalk: number;
  exhausted: boolean;
}

interface CaseResult {
  mode: CniMode;
  path: PathCase;
  cold: ColdResult;
  warm: WarmResult;
}

function ok(w: Walk): boolean {
  return w.request.disposition.kind === 'delivered' && w.reply?.disposition.kind === 'delivered';
}

function runCold(spec: ClusterSpec, mode: CniMode, path: PathCase): ColdResult {
  const once = () => {
    const t0 = performance.now();
    const c = buildCluster(spec, mode);
    const t1 = performance.now();
    const w = walk(c, { from: path.from, to: path.to, proto: 'tcp', port: 8080, sport: SPORT_BASE });
    return { build: t1 - t0, walk: performance.now() - t1, w };
  };
  const warmupEnd = performance.now() + WARMUP_MS;
  while (performance.now() < warmupEnd) once();
  let iterations = 0;
  let buildMs = 0;
  let walkMs = 0;
  let last: Walk | undefined;
  let delivered = true;
  const start = performance.now();
  let now = start;
  while (now - start < MEASURE_MS) {
    const r = once();
    buildMs += r.build;
    walkMs += r.walk;
    last = r.w;
    delivered &&= ok(r.w);
    iterations++;
    now = performance.now();
  }
  return {
    iterations,
    ms: now - start,
    buildMs,
    walkMs,
    requestSteps: last!.request.steps.length,
    replySteps: last!.reply?.steps.length ?? 0,
    delivered,
  };
}

function runWarm(spec: ClusterSpec, mode: CniMode, path: PathCase, capture: boolean): WarmResult {
  const c: Cluster = buildCluster(spec, mode);
  c.world.capture = capture;
  let i = 0;
  const next = () =>
    walk(c, { from: path.from, to: path.to, proto: 'tcp', port: 8080, sport: SPORT_BASE + i++ });
  next(); // the first walk resolves the neighbours (ARP); every later one reuses them
  const warmupEnd = performance.now() + WARMUP_MS;
  while (performance.now() < warmupEnd && i < MAX_WARM_WALKS) next();

  const windowMs = MEASURE_MS / WINDOWS;
  const windows: number[] = [];
  let first: Walk | undefined;
  let last: Walk | undefined;
  let delivered = true;
  let walks = 0;
  let exhausted = false;
  const cpu = process.cpuUsage();
  const start = performance.now();
  let windowStart = start;
  let windowWalks = 0;
  let now = start;
  while (now - start < MEASURE_MS) {
    if (i >= MAX_WARM_WALKS) {
      exhausted = true;
      break;
    }
    last = next();
    first ??= last;
    delivered &&= ok(last);
    walks++;
    windowWalks++;
    now = performance.now();
    if (now - windowStart >= windowMs || now - start >= MEASURE_MS) {
      windows.push((windowWalks * 1000) / (now - windowStart));
      windowStart = now;
      windowWalks = 0;
    }
  }
  if (windowWalks) windows.push((windowWalks * 1000) / (now - windowStart));
  const used = process.cpuUsage(cpu);
  let conntrack = 0;
  for (const ns of c.world.netns.values()) conntrack += sizeOf(ns.conntrack.entries);
  return {
    walks,
    ms: now - start,
    cpuMs: (used.user + used.system) / 1000,
    windows,
    requestSteps: [first!.request.steps.length, last!.request.steps.length],
    replySteps: [first!.reply?.steps.length ?? 0, last!.reply?.steps.length ?? 0],
    delivered,
    totalWalks: i,
    tcpConns: sizeOf(c.sockets.conns),
    conntrack,
    captures: sizeOf(c.world.captures),
    simUsPerWalk: c.world.now / i,
    exhausted,
  };
}

/**
 * JIT warm-up over every mode and path before anything is measured (WARMUP_MS / 2 of cold
 * iterations and as much of warm walks each), so that the first case measured is not the slowest
 */
function warmUpAll(spec: ClusterSpec): void {
  for (const mode of CNI_MODES)
    for (const path of PATHS) {
      let end = performance.now() + WARMUP_MS / 2;
      while (performance.now() < end)
        walk(buildCluster(spec, mode), { from: path.from, to: path.to, proto: 'tcp', port: 8080 });
      const c = buildCluster(spec, mode);
      end = performance.now() + WARMUP_MS / 2;
      for (let k = 0; performance.now() < end && k < MAX_WARM_WALKS; k++)
        walk(c, { from: path.from, to: path.to, proto: 'tcp', port: 8080, sport: SPORT_BASE + k });
    }
}

/** a bench script in a child process of its own (node flags, then the script's arguments); its one result line */
function child<T>(script: string, flags: string[], args: string[]): T {
  const out = execFileSync(process.execPath, [...flags, '--import', 'tsx', script, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 16 << 20,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = out.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
  if (!line) throw new Error(`${script} ${args.join(' ')} printed no result:\n${out}`);
  return JSON.parse(line.slice(RESULT_PREFIX.length)) as T;
}

/**
 * the whole path (cluster file read, loaded, built, first walk) per size and mode
 * (BENCH_PATH="MODE:N,N;MODE:N"): flannel-vxlan, and calico-vxlan (Calico's layout, /26 IPAM blocks)
 */
const PATH_RUNS = (process.env.BENCH_PATH ?? 'flannel-vxlan:100,1000,5000;calico-vxlan:100,1000,5000')
  .split(';')
  .flatMap((run) => {
    const [mode, sizes] = run.split(':');
    return sizes.split(',').map((n) => ({ mode: mode as CniMode, nodes: Number(n) }));
  });

function runPath(mode: CniMode, nodes: number): PathResult {
  return child('bench/path-one.ts', ['--expose-gc'], [String(nodes), String(PODS_PER_NODE), mode]);
}

function pathTable(rs: PathResult[]): string {
  const ph = (p: PathResult['read']) => `${fmt(p.cpuMs / 1000, 2)} s`;
  return table(
    [
      'cluster',
      'file',
      'read',
      'loadCluster',
      'buildCluster',
      'first walk',
      'total CPU (wall)',
      'load average',
      'peak RSS: load / build / end',
      'a pod namespace',
    ],
    rs.map((r) => [
      `${r.cni}, ${fmt(r.nodes)} nodes × ${r.podsPerNode} pods (${fmt(r.netns)} netns)`,
      mib(r.fileBytes),
      ph(r.read),
      ph(r.load),
      ph(r.build),
      `${ph(r.firstWalk)} (${fmt(r.firstWalk.requestSteps)} + ${fmt(r.firstWalk.replySteps)} steps${r.firstWalk.delivered ? '' : ', NOT delivered'})`,
      `**${fmt(r.total.cpuMs / 1000, 1)} s** (${fmt(r.total.wallMs / 1000, 1)} s)`,
      r.loadAvg.map((x) => fmt(x, 1)).join(' → '),
      `${mib(r.load.maxRss)} / ${mib(r.build.maxRss)} / **${mib(r.total.maxRss)}**`,
      `${fmt(r.podNetnsBytes)} B`,
    ]),
    [1, 2, 3, 4, 5, 6, 9],
  );
}

function runScale(nodes: number): BuildResult {
  return child('bench/build-one.ts', ['--expose-gc'], [String(nodes), String(PODS_PER_NODE)]);
}

/**
 * doctor's own runs per mode (BENCH_DOCTOR, "MODE:NODES,…", 30 pods a node): calico-bgp stays at
 * 100 nodes, its mesh's sessions over the datapath make a 1,000-node build take about half an hour
 */
const DOCTOR_RUNS = (process.env.BENCH_DOCTOR ?? 'flannel-vxlan:1000,calico-vxlan:1000,calico-bgp:100').split(
  ',',
);

/** fresh processes of the whole command per doctor run (bench/doctor-one.ts) */
const FRESH_RUNS = Number(process.env.BENCH_DOCTOR_FRESH ?? 3);

function runDoctor(run: string): DoctorResult {
  const [mode, nodes] = run.split(':');
  return child('bench/doctor-one.ts', [], [nodes, String(PODS_PER_NODE), mode]);
}

function doctorModeTable(rs: DoctorResult[]): string {
  return table(
    [
      'mode',
      'cluster',
      'build, CPU',
      'doctor after the build, CPU (wall)',
      'its checks alone, CPU',
      'whole `podwalk doctor --cluster FILE`, CPU (of it reading the file)',
      'the same as a user types it, fresh processes: CPU, median (runs)',
      'findings',
      'load',
    ],
    rs.map((r) => [
      r.mode,
      `${fmt(r.nodes)} × ${r.podsPerNode}`,
      `${fmt(r.buildCpuMs)} ms`,
      `${fmt(r.doctorCpuMs)} ms (${fmt(r.doctorMs)} ms)`,
      `${fmt(r.checksCpuMs)} ms`,
      `${fmt(r.command.cpuMs)} ms (${fmt(r.command.loadCpuMs)} ms)${r.command.exit === 0 ? '' : `, exit ${r.command.exit}`}`,
      freshCell(r.fresh),
      `${fmt(r.findings)}${r.healthy ? ', healthy' : ', PROBLEMS'}`,
      `${fmt(r.loadAvg[0], 1)} → ${fmt(r.loadAvg[1], 1)}`,
    ]),
    [2, 3, 4, 5, 7],
  );
}

/** doctor-one's fresh processes: the median CPU, every run's, and what bin/podwalk.js ran */
function freshCell(f: DoctorResult['fresh']): string {
  if (f.cpuMs.length === 0) return '—';
  const sorted = [...f.cpuMs].sort((a, b) => a - b);
  const median = sorted[(sorted.length - 1) >> 1];
  const failed = f.exit.filter((e) => e !== 0);
  return (
    `**${fmt(median)} ms** (${f.cpuMs.map((c) => fmt(c)).join(', ')}; ${f.ran})` +
    (failed.length ? `, exit ${failed.join(', ')}` : '')
  );
}

/**
 * the matrix runs: every size in calico-vxlan (felix's chains and sets, no BGP), and these sizes
 * in calico-bgp too (BENCH_MATRIX_BGP_SIZES): a 1,000-node mesh is 499,500 BGP sessions walked
 * over the datapath by the build
 */
const MATRIX_BGP_SIZES = (process.env.BENCH_MATRIX_BGP_SIZES ?? '100').split(',').map(Number);
/** node counts of the BGP mesh convergence runs (BENCH_BGP_SIZES) */
const BGP_SIZES = (process.env.BENCH_BGP_SIZES ?? '30,100').split(',').map(Number);

function runBgp(nodes: number): BgpResult {
  return child('bench/bgp-one.ts', [], [String(nodes), '1']);
}

function bgpTable(rs: BgpResult[]): string {
  return table(
    [
      'mesh',
      'sessions (Established)',
      'BGP messages, octets',
      'connect()s',
      'routes learned',
      'proto bird routes in kernels',
      'model time to converge',
      'build CPU',
      'CPU per session',
    ],
    rs.map((r) => [
      `${fmt(r.nodes)} nodes`,
      `${fmt(r.sessions)} (${fmt(r.established)})`,
      `${fmt(r.messages)}, ${fmt(r.octets)}`,
      fmt(r.connects),
      fmt(r.routes),
      `${fmt(r.kernelRoutes)} of ${fmt(r.expectedRoutes)}`,
      `${fmt(r.simulatedUs / 1e6, 3)} s`,
      `${fmt(r.buildCpuMs / 1000, 1)} s`,
      `${fmt(r.buildCpuMs / r.sessions, 2)} ms`,
    ]),
    [1, 2, 3, 4, 5, 6, 7, 8],
  );
}

function runMatrix(nodes: number, mode: CniMode): MatrixResult {
  return child('bench/matrix-one.ts', [], [String(nodes), String(PODS_PER_NODE), mode]);
}

function runImport(nodes: number): ImportResult {
  const out = execFileSync(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', 'bench/import-one.ts', String(nodes), String(PODS_PER_NODE)],
    { cwd: ROOT, encoding: 'utf8', maxBuffer: 16 << 20, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const line = out.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
  if (!line) throw new Error(`import-one.ts ${nodes} printed no result:\n${out}`);
  return JSON.parse(line.slice(RESULT_PREFIX.length)) as ImportResult;
}

/* ------------------------------------------------------------ formatting */

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function mib(bytes: number): string {
  return `${fmt(bytes / 2 ** 20)} MiB`;
}

function steps(pair: [number, number]): string {
  return pair[0] === pair[1] ? String(pair[0]) : `${pair[0]} → ${pair[1]}`;
}

function table(head: string[], rows: string[][], right: number[] = []): string {
  const align = head.map((_, i) => (right.includes(i) ? '---:' : '---'));
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(head), line(align), ...rows.map(line)].join('\n');
}

function cpuModel(): string {
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const m = /^model name\s*:\s*(.+)$/m.exec(info) ?? /^Hardware\s*:\s*(.+)$/m.exec(info);
    const mhz = /^cpu MHz\s*:\s*([\d.]+)$/m.exec(info);
    if (m) return `${m[1].trim()}${mhz ? ` (${fmt(Number(mhz[1]))} MHz)` : ''}`;
  } catch {
    // not Linux: fall back to what libuv reports
  }
  return os.cpus()[0]?.model ?? 'unknown';
}

/** the commit measured, and whether src/ differs from it */
function sourceVersion(): string {
  try {
    const git = (...args: string[]) =>
      execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = git('status', '--porcelain', '--', 'src') !== '';
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? ' + uncommitted changes in src/' : ''}`;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

function machine(date: Date, runSeconds: number, loadAtStart: number[]): string {
  const load = (l: number[]) => l.map((x) => fmt(x, 2)).join(', ');
  const rows: [string, string][] = [
    ['CPU', cpuModel()],
    ['Cores', `${os.availableParallelism()} available (${os.cpus().length} logical CPUs)`],
    ['Memory', `${fmt(os.totalmem() / 2 ** 30, 1)} GiB total`],
    ['Node.js', `${process.version} (V8 ${process.versions.v8})`],
    ['OS', `${os.type()} ${os.release()} ${os.machine()} (${os.version()})`],
    [
      'Date',
      date
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, ' UTC'),
    ],
    ['Source', sourceVersion()],
    [
      'Load average (1, 5, 15 min)',
      `${load(loadAtStart)} at the start, ${load(os.loadavg())} at the end, on ${os.availableParallelism()} CPUs ` +
        '(other work on the machine slows every wall time here; the CPU times are what the runs themselves cost)',
    ],
    ['Bench run time', `${fmt(runSeconds, 1)} s`],
  ];
  return table(
    ['', ''],
    rows.map(([k, v]) => [`**${k}**`, v]),
  );
}

function coldTable(results: CaseResult[]): string {
  return table(
    ['mode', 'path', 'ops/s', 'mean µs', 'of which build µs', 'of which walk µs', 'steps (request + reply)'],
    results.map((r) => {
      const c = r.cold;
      return [
        r.mode,
        r.path.label,
        fmt((c.iterations * 1000) / c.ms),
        fmt((c.ms * 1000) / c.iterations),
        fmt((c.buildMs * 1000) / c.iterations),
        fmt((c.walkMs * 1000) / c.iterations),
        `${c.requestSteps} + ${c.replySteps}${c.delivered ? '' : ' (NOT delivered)'}`,
      ];
    }),
    [2, 3, 4, 5],
  );
}

function warmTable(results: CaseResult[]): string {
  return table(
    [
      'mode',
      'path',
      'ops/s',
      'ops per CPU s',
      'mean µs',
      'steps (request + reply)',
      'first → last window ops/s',
      'walks measured',
    ],
    results.map((r) => {
      const w = r.warm;
      return [
        r.mode,
        r.path.label,
        fmt((w.walks * 1000) / w.ms),
        fmt((w.walks * 1000) / w.cpuMs),
        fmt((w.ms * 1000) / w.walks),
        `${steps(w.requestSteps)} + ${steps(w.replySteps)}${w.delivered ? '' : ' (NOT delivered)'}`,
        `${fmt(w.windows[0])} → ${fmt(w.windows[w.windows.length - 1])}`,
        `${fmt(w.walks)}${w.exhausted ? ' (sport range used up)' : ''}`,
      ];
    }),
    [2, 3, 4, 7],
  );
}

function growthTable(rows: { label: string; w: WarmResult }[]): string {
  return table(
    [
      'run',
      'ops/s',
      'ops/s per window (first … last)',
      'walks on the cluster',
      'TCP sockets',
      'conntrack entries',
      'captured frames',
    ],
    rows.map(({ label, w }) => [
      label,
      fmt((w.walks * 1000) / w.ms),
      w.windows.map((x) => fmt(x)).join(', '),
      fmt(w.totalWalks),
      fmt(w.tcpConns),
      fmt(w.conntrack),
      fmt(w.captures),
    ]),
    [1, 3, 4, 5, 6],
  );
}

/** a full GC's heap moves by some 100 KiB between two readings with nothing freed: less freed than this is not measured */
const FREED_RESOLUTION = 1 << 20;

/**
 * route / neighbour / FDB bytes per entry (or per row), each only where emptying that table freed
 * more than the GC's resolution (100 nodes' neighbours are one shared segment of 100 rows, a few KiB)
 */
function perKind(r: BuildResult, per: (e: BuildResult['perEntry']['route']) => number): string {
  const one = (e: BuildResult['perEntry']['route']) =>
    Math.abs(e.bytes * e.entries) < FREED_RESOLUTION ? '< 1 MiB freed' : `${fmt(per(e))} B`;
  return [r.perEntry.route, r.perEntry.neighbour, r.perEntry.fdb].map(one).join(' / ');
}

function scaleTable(rs: BuildResult[]): string {
  return table(
    [
      'cluster',
      'netns',
      'buildCluster (CPU time)',
      'load average',
      'routes + neigh + fdb',
      'heap + array buffers after build (gc)',
      'heap per entry',
      'per route / neighbour / FDB entry listed',
      'rows stored: routes + neigh + fdb',
      'per row stored',
      'rss after build (gc)',
      'max RSS',
    ],
    rs.map((r) => [
      `${fmt(r.nodes)} nodes × ${r.podsPerNode} pods`,
      fmt(r.netns),
      `${fmt(r.buildMs / 1000, 2)} s (${fmt(r.buildCpuMs / 1000, 2)} s)`,
      r.loadAvg.map((x) => fmt(x, 1)).join(' → '),
      `${fmt(r.routes)} + ${fmt(r.neighbours)} + ${fmt(r.fdb)} = ${fmt(r.routes + r.neighbours + r.fdb)}`,
      mib(r.heapUsed),
      // the heap the build added, namespaces and devices included, per route, neighbour or FDB entry
      `${fmt((r.heapUsed - r.heapUsedBefore) / (r.routes + r.neighbours + r.fdb))} B`,
      // what emptying that table everywhere gave back, per entry listed and per row stored (a
      // shared segment's once: bench/build-one.ts tableBytes)
      perKind(r, (e) => e.bytes),
      `${fmt(r.perEntry.route.rows)} + ${fmt(r.perEntry.neighbour.rows)} + ${fmt(r.perEntry.fdb.rows)}`,
      perKind(r, (e) => e.rowBytes),
      mib(r.rss),
      mib(r.maxRss),
    ]),
    [1, 2, 4, 5, 6, 7, 8, 9, 10, 11],
  );
}

function scaleWalkTable(rs: BuildResult[]): string {
  const rows: string[][] = [];
  for (const r of rs)
    for (const [what, w] of [
      ['first walk (ARP across the segment)', r.firstWalk],
      ['second walk (new connection)', r.secondWalk],
      [`mean of the next ${r.warmWalk.walks} walks (new connection each)`, r.warmWalk],
    ] as const)
      rows.push([
        `${fmt(r.nodes)} × ${r.podsPerNode}`,
        `${w.from} → ${w.to}`,
        what,
        `${fmt(w.ms, 2)} ms`,
        `${fmt(w.requestSteps)} + ${fmt(w.replySteps)}${w.delivered ? '' : ' (NOT delivered)'}`,
      ]);
  return table(['cluster', 'walk', '', 'time', 'steps (request + reply)'], rows, [3]);
}

/** bench/svc-one.ts: the builds with and without the Services, the nat table, walks per second */
function svcTables(r: SvcResult): string {
  const row = (label: string, x: SvcResult['with']) => [
    label,
    `${fmt(x.buildMs / 1000, 2)} s`,
    `${fmt(x.buildCpuMs / 1000, 2)} s`,
    mib(x.heapUsed),
  ];
  const build = table(
    ['cluster', 'build (wall)', 'build (CPU)', 'heapUsed after build (gc)'],
    [
      row(`${r.nodes} nodes, ${fmt(r.pods)} pods, no Services`, r.without),
      row(`the same, ${fmt(r.services)} Services, ${fmt(r.endpoints)} endpoints`, r.with),
    ],
  );
  const walks = table(
    ['walk (a new connection each)', 'walks/s', 'walks per CPU s', 'nat rules, first packet, client node'],
    r.walks.map((w) => [
      `${w.label}${w.delivered ? '' : ' (NOT delivered)'}`,
      fmt(w.perSec),
      fmt(w.perCpuSec),
      fmt(w.natRules),
    ]),
  );
  return `\`iptables-save -t nat\` on one node: ${fmt(r.natRules)} rules (${fmt(r.natLines)} lines), ${fmt(r.kubeServices)} in KUBE-SERVICES.

${build}

${walks}`;
}

function importTable(r: ImportResult): string {
  return table(
    [
      'dump set',
      'files',
      'size',
      'read (loadDumps)',
      'parse + plan',
      'import (plan + apply)',
      'heapUsed after import (gc)',
      'max RSS',
      'walk first → last node',
    ],
    [
      [
        `${fmt(r.nodes)} nodes × ${r.podsPerNode} pods, ${fmt(r.namespaces)} netns`,
        fmt(r.files),
        mib(r.bytes),
        `${fmt(r.readMs / 1000, 2)} s`,
        `${fmt(r.planMs / 1000, 2)} s`,
        `${fmt(r.importMs / 1000, 2)} s`,
        mib(r.heapUsed),
        mib(r.maxRss),
        `${fmt(r.walkMs, 1)} ms${r.delivered ? '' : ' (NOT delivered)'}`,
      ],
    ],
    [1, 2, 3, 4, 5, 6, 7, 8],
  );
}

function doctorTable(rs: BuildResult[]): string {
  return table(
    [
      'cluster',
      'cluster-wide checks',
      'findings',
      'podwalk doctor (build + probes + checks)',
      'of which the build',
      'doctor after the build',
      'CPU time: doctor, after the build',
      'verdict',
    ],
    rs.map((r) => [
      `${fmt(r.nodes)} × ${r.podsPerNode}`,
      `${fmt(r.checksMs)} ms (CPU ${fmt(r.checksCpuMs)} ms)`,
      fmt(r.findings),
      `${fmt(r.doctorMs)} ms`,
      `${fmt(r.doctorBuildMs)} ms`,
      `${fmt(r.doctorMs - r.doctorBuildMs)} ms`,
      `${fmt(r.doctorCpuMs)} ms, ${fmt(r.doctorCpuMs - r.doctorBuildCpuMs)} ms`,
      r.doctorHealthy ? 'healthy' : 'PROBLEMS',
    ]),
    [1, 2, 3, 4, 5, 6],
  );
}

/** node counts of the route-reflector convergence runs (BENCH_RR_SIZES) */
const RR_SIZES = (process.env.BENCH_RR_SIZES ?? '100,300').split(',').map(Number);

function runRr(nodes: number): RrResult {
  return child('bench/rr-one.ts', [], [String(nodes)]);
}

function rrTable(rs: RrResult[]): string {
  return table(
    [
      'nodes',
      'sessions (Established)',
      'BGP messages (UPDATEs), octets',
      'routes in UPDATEs',
      'TCP segments sent',
      'reflectors sent',
      'proto bird routes in kernels',
      'every node every route',
      'model time to converge',
      'build CPU',
      'peak RSS',
    ],
    rs.map((r) => [
      fmt(r.nodes),
      `${fmt(r.sessions)} (${fmt(r.established)})`,
      `${fmt(r.messages)} (${fmt(r.updates)}), ${fmt(r.octets)}`,
      fmt(r.nlri + r.withdrawn),
      fmt(r.segments),
      fmt(r.reflectorMessages),
      `${fmt(r.kernelRoutes)} of ${fmt(r.expectedRoutes)}`,
      r.completeNodes === r.nodes ? 'yes' : `no: ${fmt(r.completeNodes)} of ${fmt(r.nodes)} nodes`,
      `${fmt(r.simulatedUs / 1e6, 3)} s`,
      `${fmt(r.buildCpuMs / 1000, 1)} s`,
      `${fmt(r.maxRssMiB)} MiB`,
    ]),
    [1, 2, 3, 4, 5, 6, 8, 9, 10],
  );
}

function matrixTable(rs: MatrixResult[]): string {
  const t = (x: Timing) => `${fmt(x.wallMs / 1000, 1)} s (CPU ${fmt(x.cpuMs / 1000, 1)} s)`;
  return table(
    [
      'cluster',
      'pods × pods',
      'load the cluster file',
      'podwalk matrix: build + walks',
      'of which build / grouping / walks (CPU)',
      'walks (across nodes; node pairs)',
      'groups',
      'blocked',
      'render the table',
      'table',
      'max RSS',
    ],
    rs.map((r) => [
      `${r.mode}, ${fmt(r.nodes)} × ${r.podsPerNode}, ${r.policies} policies`,
      `${fmt(r.pods)} × ${fmt(r.pods)} = ${fmt(r.cells)}`,
      t(r.load),
      t(r.matrix),
      [r.phases.build, r.phases.grouping, r.phases.walks]
        .map((x) => `${fmt(x.cpuMs / 1000, 1)} s`)
        .join(' / '),
      `${fmt(r.walks)} (${fmt(r.crossNodeWalks)}; ${fmt(r.nodePairs)})`,
      fmt(r.groups),
      `${fmt((100 * r.blocked) / r.cells, 1)} %`,
      t(r.render),
      mib(r.bytes),
      mib(r.maxRss),
    ]),
    [5, 6, 7, 9, 10],
  );
}

function loadTable(rs: BuildResult[]): string {
  return table(
    ['cluster', 'generate spec', 'heapUsed of the spec', 'YAML stringify + loadCluster'],
    rs.map((r) => [
      `${fmt(r.nodes)} × ${r.podsPerNode}`,
      `${fmt(r.specMs, 1)} ms`,
      mib(r.heapUsedBefore),
      `${fmt(r.loadMs)} ms`,
    ]),
    [1, 2, 3],
  );
}

/**
 * Issue 16's measure, warm walks per CPU second, in processes of their own (bench/walk-cpu.ts): the
 * in-process warm rows above run after the cold cases and pay for their garbage (the first of them
 * varied 7,089–9,088 between three runs of one tree). Each case runs WALK_CPU_RUNS times, the
 * median is reported with the spread.
 */
// (5: on this shared machine memory-bound code varies ±20–40 % between processes; a median of 5
// moves less than one of 3)
const WALK_CPU_RUNS = 5;
const WALK_CPU_WALKS = 20000;
/** warm-up walks of the steady-state rows (bench/walk-cpu.ts warm=N) */
const WALK_CPU_STEADY = 30000;
const WALK_CPU_CASES: {
  mode: CniMode;
  to: string;
  capture: boolean;
  replay?: boolean;
  warm?: number;
  podwalkFlags?: boolean;
}[] = [
  { mode: 'flannel-vxlan', to: 'pod-c', capture: true },
  { mode: 'flannel-vxlan', to: 'pod-c', capture: false },
  { mode: 'flannel-vxlan', to: 'pod-b', capture: true },
  { mode: 'calico-bgp', to: 'pod-c', capture: true },
  // the flow cache replaying its hits (src/trace/replay.ts): the same walks, outputs made when read
  { mode: 'flannel-vxlan', to: 'pod-c', capture: true, replay: true },
  { mode: 'calico-bgp', to: 'pod-c', capture: true, replay: true },
  // the same in the steady state: after 30,000 warm-up walks, when V8 has stopped compiling what the
  // replay runs and the heap has grown to the walks' size. After 5,000 (this row's warm-up until
  // session 20) TurboFan still compiled 20–48 functions during the timed walks (--trace-opt): V8's
  // allocation sites changed their pretenuring decisions as the kept sockets, timers and events
  // survived, and each change marked the code allocating there for deoptimization (--trace-deopt:
  // "code dependencies"); after 10,000 still 7–10, after 20,000 and 30,000 none
  { mode: 'flannel-vxlan', to: 'pod-c', capture: true, replay: true, warm: WALK_CPU_STEADY },
  { mode: 'calico-bgp', to: 'pod-c', capture: true, replay: true, warm: WALK_CPU_STEADY },
  { mode: 'flannel-vxlan', to: 'pod-c', capture: false, replay: true, warm: WALK_CPU_STEADY },
  // the first steady row again in a process with the podwalk executable's V8 flags (src/cli/v8-flags.ts:
  // the heap grows tenfold past a full collection), as a podwalk command would run the walks; the rows
  // above are the library in a bare node (a major collection marks every connection the walks kept)
  {
    mode: 'flannel-vxlan',
    to: 'pod-c',
    capture: true,
    replay: true,
    warm: WALK_CPU_STEADY,
    podwalkFlags: true,
  },
];

function runWalkCpu(): { label: string; runs: WalkCpuResult[] }[] {
  return WALK_CPU_CASES.map((k) => ({
    label:
      `${k.mode}, pod-a → ${k.to}${k.capture ? '' : ', **captures off**'}` +
      (k.replay ? ', **flow cache: hits replayed**' : '') +
      (k.warm ? `, **after ${fmt(k.warm)} warm-up walks**` : '') +
      (k.podwalkFlags ? ', **the podwalk process’s V8 flags**' : ''),
    runs: Array.from({ length: WALK_CPU_RUNS }, () =>
      child<WalkCpuResult>(
        'bench/walk-cpu.ts',
        [],
        [
          k.mode,
          String(WALK_CPU_WALKS),
          k.to,
          ...(k.capture ? ['capture'] : []),
          ...(k.replay ? ['replay'] : []),
          ...(k.warm ? [`warm=${k.warm}`] : []),
          ...(k.podwalkFlags ? ['podwalk-flags'] : []),
        ],
      ),
    ),
  }));
}

/** a walk-cpu run's walks per CPU second */
const walksPerSec = (r: WalkCpuResult) => (r.walks * 1000) / r.cpuMs;

/** the median walks per CPU second of a case's runs (the upper of two middles) */
function walkCpuMedian(runs: readonly WalkCpuResult[]): number {
  const sorted = runs.map(walksPerSec).sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function walkCpuTable(rows: { label: string; runs: WalkCpuResult[] }[]): string {
  return table(
    [
      'case',
      'walks per CPU s, median',
      'µs a walk, median',
      'the runs, walks per CPU s',
      'steps',
      'replayed',
    ],
    rows.map(({ label, runs }) => {
      const median = walkCpuMedian(runs);
      return [
        label,
        fmt(median),
        fmt(1e6 / median, 1),
        runs.map((r) => fmt(walksPerSec(r))).join(', '),
        String(runs[0].steps),
        runs[0].replay ? runs.map((r) => fmt(r.replayed ?? 0)).join(', ') : '–',
      ];
    }),
    [1, 2, 4, 5],
  );
}

/** the issue's measure against the kernel's datagrams over the same path, measured in this run */
function walkCpuVsKernel(rows: { label: string; runs: WalkCpuResult[] }[], k: KernelBench): string {
  const median = walkCpuMedian(rows[0].runs);
  const head =
    `A warm walk is two packets (the SYN and the SYN-ACK): ${rows[0].label} is ${fmt(2 * median)} packets per CPU ` +
    `second, every step recorded.`;
  if (k.skipped) return `${head} The real kernel's half was skipped (${k.skipped}).`;
  // the same path with the flow cache replaying (the first such row of the same mode and pods)
  const medianOf = (row: { runs: WalkCpuResult[] } | undefined) => row && walkCpuMedian(row.runs);
  const replayed = rows.filter((r) => r.runs[0].replay && r.label.startsWith(rows[0].label));
  const repMedian = medianOf(replayed.find((r) => !r.runs[0].warm || r.runs[0].warm === 300));
  const steadyMedian = medianOf(replayed.find((r) => (r.runs[0].warm ?? 300) > 300));
  const ratio = (m: number) => `×${fmt(k.kernelPps / (2 * m), 1)}`;
  return (
    `${head} The real kernel delivered ${fmt(k.kernelPps)} UDP datagrams a second over the same path in this run ` +
    `(${fmt(k.kernelPpsCpu)} per CPU second of its sender; Simulation vs the real kernel, below): ` +
    `${ratio(median)} the model's packets per CPU second` +
    (repMedian
      ? `; ${ratio(repMedian)} those of the same walks replayed by the flow cache (${fmt(2 * repMedian)} packets per CPU second)`
      : '') +
    (steadyMedian
      ? `; ${ratio(steadyMedian)} those replayed in the steady state (${fmt(2 * steadyMedian)} packets per CPU second).`
      : '.')
  );
}

/* ------------------------------------------------------------ main */

function kernelTable(k: KernelBench): string {
  const sim = table(
    ['measure', 'simulation', 'real kernel', 'kernel / simulation'],
    [
      [
        'bring the seed cluster up (flannel-vxlan)',
        `${fmt(k.simBuildMs, 2)} ms (buildCluster)`,
        k.skipped ? 'skipped' : `${fmt(k.labUpMs)} ms (lab up; lab down ${fmt(k.labDownMs)} ms)`,
        k.skipped ? '–' : `×${fmt(k.labUpMs / k.simBuildMs)} slower`,
      ],
      [
        'UDP datagrams per second, pod-a → pod-c over VXLAN',
        `${fmt(k.simDatagramsPerSec)} /s (${fmt(k.simWalks)} walks, request + echo reply, every step recorded)`,
        k.skipped
          ? 'skipped'
          : `${fmt(k.kernelPps)} /s delivered to veth-pod-c (${fmt(k.kernelDelivered)} of ${fmt(k.kernelSent)} sent)`,
        k.skipped ? '–' : `×${fmt(k.kernelPps / k.simDatagramsPerSec, 1)}`,
      ],
      [
        'the same per second of CPU time',
        `${fmt(k.simDatagramsPerCpuSec)} /s (process.cpuUsage())`,
        k.skipped ? 'skipped' : `${fmt(k.kernelPpsCpu)} /s (the sender's user + system time)`,
        k.skipped ? '–' : `×${fmt(k.kernelPpsCpu / k.simDatagramsPerCpuSec, 1)}`,
      ],
    ],
    [1, 2, 3],
  );
  return (
    (k.skipped ? `The real-kernel half was skipped: ${k.skipped}.\n\n` : '') +
    `The kernel numbers come from the lab (network namespaces on this machine, one Python sender in pod-a); the ` +
    `simulation numbers from walk() on the model of the same cluster.\n\n${sim}`
  );
}

async function main(): Promise<void> {
  const started = performance.now();
  const loadAtStart = os.loadavg();
  const date = new Date();
  const spec = seedCluster();

  process.stderr.write('warm-up: every mode and path …\n');
  warmUpAll(spec);
  const results: CaseResult[] = [];
  for (const mode of CNI_MODES)
    for (const path of PATHS) {
      process.stderr.write(`traces: ${mode}, ${path.label} …\n`);
      const cold = runCold(spec, mode, path);
      const warm = runWarm(spec, mode, path, true);
      results.push({ mode, path, cold, warm });
    }
  process.stderr.write('traces: flannel-vxlan cross-node, captures off …\n');
  const vx = results.find((r) => r.mode === 'flannel-vxlan' && r.path === PATHS[0])!;
  const noCapture = runWarm(spec, 'flannel-vxlan', PATHS[0], false);
  process.stderr.write('traces: warm walks in processes of their own (bench/walk-cpu.ts) …\n');
  const walkCpu = runWalkCpu();

  const scale: BuildResult[] = [];
  /** sizes whose process failed (out of memory at 5,000 nodes, say): reported, not fatal */
  const scaleFailed: string[] = [];
  for (const n of SCALE_SIZES) {
    process.stderr.write(`scale: ${n} nodes × ${PODS_PER_NODE} pods (child process) …\n`);
    try {
      scale.push(runScale(n));
    } catch (e) {
      const last = String((e as Error).message)
        .trim()
        .split('\n')
        .pop();
      scaleFailed.push(`${fmt(n)} nodes × ${PODS_PER_NODE} pods: the process failed (${last})`);
    }
  }
  const paths: PathResult[] = [];
  const pathFailed: string[] = [];
  for (const { mode, nodes } of PATH_RUNS) {
    process.stderr.write(
      `path: ${mode}, ${nodes} nodes × ${PODS_PER_NODE} pods, file to first walk (child process) …\n`,
    );
    try {
      paths.push(runPath(mode, nodes));
    } catch (e) {
      const last = String((e as Error).message)
        .trim()
        .split('\n')
        .pop();
      pathFailed.push(`${mode}, ${fmt(nodes)} nodes × ${PODS_PER_NODE} pods: the process failed (${last})`);
    }
  }
  const doctors: DoctorResult[] = [];
  for (const run of DOCTOR_RUNS) {
    process.stderr.write(`doctor: ${run} × ${PODS_PER_NODE} pods (child process) …\n`);
    doctors.push(runDoctor(run));
  }
  const bgps: BgpResult[] = [];
  for (const n of BGP_SIZES) {
    process.stderr.write(`bgp: a ${n}-node calico-bgp mesh over the datapath (child process) …\n`);
    bgps.push(runBgp(n));
  }
  const rrs: RrResult[] = [];
  for (const n of RR_SIZES) {
    process.stderr.write(`rr: a ${n}-node calico-bgp cluster on two route reflectors (child process) …\n`);
    rrs.push(runRr(n));
  }
  const matrices: MatrixResult[] = [];
  for (const n of SIZES)
    for (const mode of [
      'calico-vxlan',
      ...(MATRIX_BGP_SIZES.includes(n) ? ['calico-bgp'] : []),
    ] as CniMode[]) {
      process.stderr.write(
        `matrix: ${mode}, ${n} nodes × ${PODS_PER_NODE} pods, 50 policies (child process) …\n`,
      );
      matrices.push(runMatrix(n, mode));
    }
  process.stderr.write(`import: a ${IMPORT_NODES}-node dump set (child process) …\n`);
  const imported = runImport(IMPORT_NODES);
  process.stderr.write(`services: ${SERVICES.join(', ')} (child process) …\n`);
  const svc = child<SvcResult>('bench/svc-one.ts', ['--expose-gc'], SERVICES);
  process.stderr.write('simulation vs real kernel (lab) …\n');
  const kernel = await kernelBench(MEASURE_MS);
  const runSeconds = (performance.now() - started) / 1000;

  const slowest = results.reduce((a, r) =>
    r.warm.windows[r.warm.windows.length - 1] / r.warm.windows[0] <
    a.warm.windows[a.warm.windows.length - 1] / a.warm.windows[0]
      ? r
      : a,
  );
  const drop = (w: WarmResult) => 1 - w.windows[w.windows.length - 1] / w.windows[0];
  const notes: string[] = [];
  notes.push(
    `- Warm walks slow down as the tables grow: the worst case (${slowest.mode}, ${slowest.path.label}) ` +
      `fell from ${fmt(slowest.warm.windows[0])} to ${fmt(slowest.warm.windows[slowest.warm.windows.length - 1])} ops/s ` +
      `(−${fmt(100 * drop(slowest.warm))} %) between the first and the last window, with ` +
      `${fmt(slowest.warm.tcpConns)} TCP sockets and ${fmt(slowest.warm.conntrack)} conntrack entries at the end. ` +
      `Every walk leaves two sockets (client and server) in \`Sockets.conns\` and its conntrack entries ` +
      `behind; they would expire after simulated seconds to days, but a walk advances the simulated clock by only ` +
      `~${fmt(slowest.warm.simUsPerWalk)} µs.`,
  );
  notes.push(
    `- Turning captures off (\`cluster.world.capture = false\`) changes flannel-vxlan cross-node warm throughput from ` +
      `${fmt((vx.warm.walks * 1000) / vx.warm.ms)} to ${fmt((noCapture.walks * 1000) / noCapture.ms)} ops/s ` +
      `(first window: ${fmt(vx.warm.windows[0])} → ${fmt(noCapture.windows[0])}). Captures are on by default and in ` +
      `every other row.`,
  );
  if (scale.length >= 2) {
    const [a, b] = [scale[0], scale[scale.length - 1]];
    const ea = a.routes + a.neighbours + a.fdb;
    const eb = b.routes + b.neighbours + b.fdb;
    notes.push(
      `- From ${fmt(a.nodes)} to ${fmt(b.nodes)} nodes the entries grow ×${fmt(eb / ea, 1)} (every node knows every other), ` +
        `buildCluster time ×${fmt(b.buildMs / a.buildMs, 1)}, heapUsed ×${fmt(b.heapUsed / a.heapUsed, 1)}.`,
    );
    notes.push(
      `- A walk on a fresh cluster starts with ARP for the remote node's address, which the underlay bridge floods to ` +
        `every node: ${fmt(b.firstWalk.requestSteps)} request steps at ${fmt(b.nodes)} nodes. The next connection reuses ` +
        `the neighbour entry and takes ${b.secondWalk.requestSteps} + ${b.secondWalk.replySteps} steps ` +
        `(${fmt(b.secondWalk.ms, 2)} ms, ${fmt(b.warmWalk.ms, 2)} ms on average over the next ${b.warmWalk.walks}), ` +
        `like a warm flannel-vxlan cross-node walk on the 3-node seed cluster ` +
        `(${vx.warm.requestSteps[1]} + ${vx.warm.replySteps[1]} steps, ${fmt(vx.warm.ms / vx.warm.walks, 2)} ms).`,
    );
  }

  for (const r of matrices)
    notes.push(
      `- podwalk matrix on ${fmt(r.nodes)} nodes × ${r.podsPerNode} pods (${r.mode}): ${fmt(r.cells)} cells decided by ${fmt(r.walks)} walks ` +
        `(one per cell would be ×${fmt(r.cells / r.walks)} as many), ${fmt(r.groups)} groups of pods. ${fmt(r.crossNodeWalks)} walks cross ` +
        `nodes, between ${fmt(r.nodePairs)} node pairs: the first walk of each pair broadcasts ARP for the other node on the ` +
        `underlay, which every node of the segment receives and checks against its addresses.`,
    );
  const md = `# Benchmarks

What \`npm run bench\` measures (bench/run.ts; it rewrites this file with the numbers of its run):

1. **Traces per second on the seed cluster** (\`seedCluster()\`), for each CNI mode: \`walk()\` of a TCP
   connection to port 8080, which records the request (SYN) and the reply (SYN-ACK) with all their steps
   and frames. **Cold**: \`buildCluster(spec, mode)\` plus the first walk on the fresh cluster (which
   resolves neighbours with ARP, hence more steps), per iteration; the YAML is parsed once, outside the loop.
   **Warm**: one built cluster, a new connection each walk (sport ${SPORT_BASE}, ${SPORT_BASE + 1}, …), neighbours
   already resolved. After a JIT warm-up pass over every mode and path, each case runs ${fmt(WARMUP_MS)} ms to warm
   up, then ${fmt(MEASURE_MS)} ms measured; the warm run is cut into ${WINDOWS} windows to show whether walks slow down
   as conntrack and socket tables grow.
2. **Build time and memory at scale**: flannel-vxlan clusters of ${SCALE_SIZES.map((n) => `${fmt(n)} nodes`).join(', ')} × ${PODS_PER_NODE} pods
   (bench/scale.ts: one underlay segment 10.0.0.0/16, nodes from 10.0.0.10, a /24 pod CIDR per node from
   10.128.0.0/9, pods listening on tcp/8080), every node with routes, neighbours and FDB entries to every other.
   Each size runs in its own process (\`node --expose-gc --import tsx bench/build-one.ts N 30\`): wall and CPU time
   (\`process.cpuUsage()\`, the machine may be shared: the load average is shown) of \`buildCluster\`,
   \`process.memoryUsage()\` after a full GC (heapUsed + arrayBuffers: the tables' typed arrays are outside V8's
   heap) and the heap the build added per route, neighbour or FDB entry
   (namespaces and devices included), what each kind of entry costs (the heap a full GC gives back when the
   routes, then the neighbours, then the FDBs are emptied in every namespace, per entry listed and per row
   stored: nodes list every other node's lease from one shared segment per table, stored once),
   \`process.resourceUsage().maxRSS\`, then, on the same cluster built again, walks
   between the first and the last node, then doctor's cluster-wide checks and a whole \`podwalk doctor\` of that flow;
   then doctor per mode (\`bench/doctor-one.ts N 30 MODE\`: ${DOCTOR_RUNS.join(', ')}), its CPU time after the build,
   and a whole \`podwalk doctor --cluster FILE\` through the CLI's entry point (file read, build, probes, checks, report),
   then as a user types it: \`node bin/podwalk.js doctor --cluster FILE …\` in fresh processes, their CPU (issue 16's goal).
3. **podwalk matrix at scale**: the reachability truth table of every pod × every pod on clusters of the same sizes
   with 50 NetworkPolicies (bench/matrix-spec.ts), in processes of their own (\`bench/matrix-one.ts\`).
4. **Importing a dump set** (\`podwalk … --from DIR\`): ${fmt(IMPORT_NODES)} nodes × ${PODS_PER_NODE} pods in the collector's layout
   (NODE/manifest.txt, NODE/netns/INODE/…, one directory per node holding its pods and the underlay
   segment), written to a temporary directory, then read back (\`loadDumps\`), parsed and planned
   (\`planImport\`) and applied to a World (\`importCluster\`), in a process of its own
   (bench/import-one.ts). The dump set is printed by the emulated tools from the synthetic
   flannel-vxlan cluster of item 2 (bench/dumps.ts): the shape of real nodes' dumps (the emulated
   tools print what the real ones do), not dumps of 100 real nodes.
5. **The cluster file to the first walk** (\`bench/path-one.ts MODE N 30\`, BENCH_PATH): reading and loading the
   YAML, the build and the first walk, CPU and peak RSS per phase, and the bytes of a pod's namespace.
6. **BGP**: the node-to-node mesh converging over the datapath (\`bench/bgp-one.ts\`, BENCH_BGP_SIZES) and route
   reflectors (\`bench/rr-one.ts\`, BENCH_RR_SIZES): messages, UPDATEs, simulated time to converge, CPU, RSS.
7. **Services** (\`bench/svc-one.ts\`, BENCH_SERVICES): kube-proxy's rules for many Services, the nat table per packet.
8. **Simulation vs the real kernel** (root only): the seed cluster brought up both ways, and UDP over the VXLAN path.

Re-run with \`npm run bench\` (about 5 minutes on 2 CPUs: the 1,000- and 5,000-node runs are most of it; each
run is a process of its own, and one that fails is reported, not fatal). \`BENCH_MS\`, \`BENCH_WARMUP_MS\` and \`BENCH_SIZES\` (e.g. \`100\`)
shorten it; ${
    DEFAULTS ? 'the numbers below are from a full default run.' : '**this run did not use the defaults.**'
  }

## Machine

${machine(date, runSeconds, loadAtStart)}

## Traces on the seed cluster

Cold: build + first walk, per iteration.

${coldTable(results)}

Warm: repeated walks on one cluster, a new connection each (captures on, the default); ops per CPU s divides
the walks by the run's CPU time (user + system), which the other work of a shared machine does not inflate as much
as wall time.

${warmTable(results)}

Table growth during the warm runs (sizes at the end, warm-up walks included; conntrack summed over all
namespaces), and the same flannel-vxlan cross-node run with captures off:

${growthTable([
  ...results.map((r) => ({ label: `${r.mode}, ${r.path.label}`, w: r.warm })),
  { label: 'flannel-vxlan, cross-node pod-a → pod-c, **captures off**', w: noCapture },
])}

Issue 16's measure (warm walks per CPU second, goal 100,000) in processes of their own, which the cases
above do not disturb: \`node --import tsx bench/walk-cpu.ts MODE ${WALK_CPU_WALKS} TO [capture] [replay] [warm=N]\`, a
new connection each walk after 300 warm-up walks (${fmt(WALK_CPU_STEADY)} where the row says so: the steady state),
request and reply recorded, ${WALK_CPU_RUNS} runs per case.
The rows marked *flow cache* walk with \`enableFlowCache(c, { replay: true })\` (src/trace/replay.ts): a walk the
cache's guards let through is its template written back with the walk's parameters, not walked; its
outputs are the walked ones (test/flow-cache.test.ts) and are made when read (the benchmark reads the
outcome); "replayed" counts those walks of the ${fmt(WALK_CPU_WALKS + 300)} (${fmt(WALK_CPU_WALKS + WALK_CPU_STEADY)}):

${walkCpuTable(walkCpu)}

${walkCpuVsKernel(walkCpu, kernel)}

## From the cluster file to the first walk (issue 16's goal: 5,000 nodes in ≤ 10 s and ≤ 4 GiB)

bench/scale.ts's cluster written as a cluster file (YAML, not timed), then in a process of its own
(\`node --expose-gc --import tsx bench/path-one.ts N 30 MODE\`): the file read, \`loadCluster\` (parse and
validate), \`buildCluster\`, and the first walk p0000-00 → the last node's last pod (ARP across the
segment first). CPU time (user + system, GC included) per phase; the process's peak RSS when loading,
building and everything had ended; and what a pod's namespace costs (the heap a full GC gives back
when every pod's namespace is taken out of the world, per pod). \`BENCH_PATH\` sets the runs.

${pathTable(paths)}
${pathFailed.map((f) => `\n- ${f}`).join('')}

## Build time and memory at scale (flannel-vxlan)

${scaleTable(scale)}
${scaleFailed.map((f) => `\n- ${f}`).join('')}

${scaleWalkTable(scale)}

Spec generation and a check that the generated spec is a valid cluster file (YAML round trip through
\`loadCluster\`, done after the memory measurements):

${loadTable(scale)}

## podwalk doctor at scale

The cluster-wide checks on the built cluster (node pairs for routes and MTU, every device for
duplicates), and a whole doctor of the far-apart flow: the cluster built, then the forward,
full-size and reverse probes on it (each a connection of its own), then the checks. The build is
the kernel tables' cost; what doctor adds is the column after it.

${doctorTable(scale)}

doctor's own time per mode, each in a process of its own (\`node --import tsx bench/doctor-one.ts N 30
MODE\`): the cluster built, then a whole doctor of the far-apart flow on it (the three probes and the
checks), then the checks alone once more. CPU time (user + system): the machine is shared. The
whole command is timed twice: through the CLI's \`run()\` in that process (its code already loaded and
compiled by the runs before), and as a user types it, \`node bin/podwalk.js doctor --cluster FILE FROM
TO:8080\` in fresh processes (${FRESH_RUNS} runs: start-up, the bundle and its code cache read, the
file, build, probes, checks and report; user + system of the whole process, bash's \`times\`).

${doctorModeTable(doctors)}

## podwalk matrix at scale

\`podwalk matrix\` for tcp/8080 on bench/matrix-spec.ts's clusters (one segment, 20 namespaces,
1,000 Deployments spread over the nodes, 50 NetworkPolicies: default deny, per-namespace and
cross-namespace allows, egress limits, ipBlocks) in calico-vxlan (felix's chains and IP sets) at
every size and in calico-bgp at ${MATRIX_BGP_SIZES.join(', ')} nodes (its build walks the BGP mesh's
sessions: 499,500 at 1,000 nodes), each in a process of its own
(\`node --import tsx bench/matrix-one.ts N 30 MODE\`): the cluster file read as the CLI reads it,
\`computeMatrix\` (the build, the grouping and every walk, each timed), and the whole truth table rendered into a
sink that counts its bytes (what \`podwalk matrix > file\` writes). Wall time, and CPU time (the
machine is shared: CPU time is what the run itself cost).

${matrixTable(matrices)}

## BGP mesh convergence over the datapath

Calico's node-to-node mesh (calico-bgp, bench/scale.ts's nodes on one segment, one pod each) as
\`buildCluster\` runs it: every node's BIRD (src/bgp/session.ts) listens on tcp/179 and its sessions
connect after Calico's connect delay (2 s), each a TCP connection of the model's kernel whose
segments are walked through both nodes; the build ends when every session is Established with
the peer's End-of-RIB, then clears what that traffic left (\`node --import tsx bench/bgp-one.ts N 1\`).
Messages are OPEN, KEEPALIVE, one UPDATE and End-of-RIB per side: 8 per session, and the
octets grow with the routes; the walks are O(sessions × (1 + routes per UPDATE segment)).

${bgpTable(bgps)}

## Route-reflector convergence over the datapath

The same nodes with the mesh off and two route reflectors, as Calico's documentation sets them up
for large clusters (\`node --import tsx bench/rr-one.ts N\`: node 0 and 1 labelled
route-reflector=true with routeReflectorClusterID 244.0.0.1, one BGPPeer from all() to them). Each
reflector sends every client one UPDATE per other node's block (a reflected route carries its
originator's ORIGINATOR_ID, so no two share an UPDATE): about 2 × reflectors × nodes² messages,
O(sessions × routes). Each node handles its own packets one at a time (a 50 µs reaction each) and
the nodes at the same time, so the model time is the reflectors' one UPDATE a segment; the time
includes Calico's 2 s connect delay.

${rrTable(rrs)}

## Importing a dump set (--from)

${importTable(imported)}

${imported.warnings ? `The import warned ${imported.warnings} times.` : 'The import had no warnings (a model-shaped cluster has nothing it cannot represent).'} Printing the dump set with the emulated tools (not part of an import) took ${fmt(imported.dumpMs / 1000, 1)} s.

## Services at scale (kube-proxy, iptables mode)

${svcTables(svc)}

## Simulation vs the real kernel

${kernelTable(kernel)}

## Observations

${notes.join('\n')}
`;
  // the sections measured by hand on branches (dated, between the introduction and "## Machine")
  // and the A/B sections (bench/ab.ts, run by hand against another tree) are kept as they are
  let kept = '';
  let byHand = '';
  try {
    const old = readFileSync(OUT, 'utf8');
    const at = old.indexOf('\n## CPU time A/B');
    if (at >= 0) kept = old.slice(at);
    const from = old.search(/\n## \d{4}-\d{2}-\d{2} /);
    const to = old.indexOf('\n## Machine');
    if (from >= 0 && to > from) byHand = old.slice(from + 1, to + 1);
  } catch {
    kept = '';
  }
  const machineAt = md.indexOf('## Machine');
  writeFileSync(OUT, md.slice(0, machineAt) + byHand + md.slice(machineAt) + kept);
  process.stdout.write(md);
  process.stderr.write(`wrote ${OUT} in ${fmt(runSeconds, 1)} s\n`);
}

await main();
