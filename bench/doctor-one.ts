/**
 * `podwalk doctor` at scale in one CNI mode, in a process of its own: `node --import tsx
 * bench/doctor-one.ts NODES PODS_PER_NODE MODE`. Builds bench/scale.ts's synthetic cluster in MODE,
 * then runs a whole doctor of the far-apart flow (first pod of the first node → last pod of the
 * last node, tcp/8080: the forward, full-size and reverse probes and the cluster-wide checks) and
 * then the checks alone once more on the same cluster. Reports the CPU time (user + system, GC
 * threads included: the machine is shared) of the build and of doctor after it, which is doctor's
 * own cost, and of the checks alone. Then, that cluster released, the whole command as a user
 * runs it: `podwalk doctor --cluster FILE FROM TO:8080` (the spec written as a cluster file),
 * through the CLI's own entry point (its modules already loaded and compiled by the runs before:
 * the command's own work), and reading the cluster file once more alone. Then the same command as
 * a user types it, a fresh process each time: `node bin/podwalk.js doctor --cluster FILE FROM
 * TO:8080` (the file written to a temporary directory), BENCH_DOCTOR_FRESH runs (3), each timed by
 * the CPU of the whole process (user + system of the child, all its threads: bash's `times`), with
 * what bin/podwalk.js ran (the bundle and its code cache, or the sources through tsx when the
 * bundle is not the sources'). One JSON line prefixed with RESULT_PREFIX. The process runs with the V8 flags the podwalk executable sets
 * (src/cli/v8-flags.ts), set first: the command as a user's `podwalk` runs it.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, type Io } from '../src/cli/app.ts';
import { loadCluster } from '../src/cluster/load.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { CNI_MODES, type CniMode } from '../src/cluster/spec.ts';
import { runChecks } from '../src/diagnose/checks.ts';
import { setPodwalkV8Flags } from '../src/cli/v8-flags.ts';
import { doctor, type DoctorReport } from '../src/diagnose/doctor.ts';
import { matrixYaml } from './matrix-spec.ts';
import { cpuMs, podName, RESULT_PREFIX, syntheticSpec } from './scale.ts';

export interface DoctorResult {
  mode: CniMode;
  nodes: number;
  podsPerNode: number;
  /** the 1-minute load average when the build started and when the run ended */
  loadAvg: [number, number];
  buildCpuMs: number;
  /** doctor after the build: the three probes and the checks */
  doctorCpuMs: number;
  doctorMs: number;
  /** the checks alone, on the cluster doctor walked */
  checksCpuMs: number;
  findings: number;
  healthy: boolean;
  /**
   * the whole `podwalk doctor --cluster FILE FROM TO:8080`: CPU and wall time, exit code, the
   * characters it printed; and the CPU time of reading the cluster file alone, timed after it
   */
  command: {
    cpuMs: number;
    wallMs: number;
    exit: number;
    loadCpuMs: number;
    bytes: number;
  };
  /**
   * the whole command in fresh processes, `node bin/podwalk.js doctor --cluster FILE FROM TO:8080`:
   * each run's CPU (user + system of the process), its exit codes and the characters it printed
   * (the same in every run, or the run throws), and what bin/podwalk.js ran: 'bundle, code cache
   * STATE' (bin/bundle.js's loadBundle) or 'tsx' (no bundle made from the sources as they are)
   */
  fresh: { cpuMs: number[]; exit: number[]; bytes: number; ran: string };
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** what bin/podwalk.js runs in this checkout: the bundle and what became of its code cache, or tsx */
function whatRuns(): string {
  const r = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { readFileSync } from 'node:fs';
       import { sourceHash } from ${JSON.stringify(join(ROOT, 'bin/source-hash.js'))};
       import { loadBundle } from ${JSON.stringify(join(ROOT, 'bin/bundle.js'))};
       const dist = new URL('dist/cli/', ${JSON.stringify(`file://${ROOT}`)});
       let made = '';
       try { made = readFileSync(new URL('podwalk.sources', dist), 'utf8').trim(); } catch {}
       console.log(made === sourceHash() ? 'bundle, code cache ' + loadBundle(dist).cache : 'tsx');`,
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`what bin/podwalk.js runs: ${r.stderr}`);
  return r.stdout.trim();
}

/** `node bin/podwalk.js ARGV…` in a fresh process: its CPU (user + system, bash's `times` of its child), exit code and output */
function timedChild(argv: string[]): { cpuMs: number; exit: number; out: string } {
  const dir = mkdtempSync(join(tmpdir(), 'podwalk-fresh-'));
  try {
    const out = join(dir, 'out');
    const r = spawnSync(
      'bash',
      [
        '-c',
        'out=$1; shift; "$@" > "$out"; code=$?; times; exit $code',
        'bash',
        out,
        process.execPath,
        ...argv,
      ],
      { encoding: 'utf8', cwd: ROOT },
    );
    // times: the shell's own user and system time, then its children's
    const m = /(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/.exec(r.stdout);
    if (!m) throw new Error(`no times from the child: ${r.stdout} ${r.stderr}`);
    const cpuMs = Math.round((Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4])) * 1000);
    return { cpuMs, exit: r.status ?? -1, out: readFileSync(out, 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** the whole command as a user types it, in fresh processes (see DoctorResult's fresh) */
function freshCommand(yaml: string, from: string, to: string): DoctorResult['fresh'] {
  const runs = Number(process.env.BENCH_DOCTOR_FRESH ?? 3);
  const dir = mkdtempSync(join(tmpdir(), 'podwalk-cluster-'));
  try {
    const file = join(dir, 'cluster.yaml');
    writeFileSync(file, yaml);
    const cpu: number[] = [];
    const exit: number[] = [];
    let text: string | undefined;
    for (let i = 0; i < runs; i++) {
      const r = timedChild([join(ROOT, 'bin/podwalk.js'), 'doctor', '--cluster', file, from, to]);
      if (text !== undefined && r.out !== text) throw new Error('two fresh runs printed different reports');
      text = r.out;
      cpu.push(r.cpuMs);
      exit.push(r.exit);
    }
    return { cpuMs: cpu, exit, bytes: text?.length ?? 0, ran: whatRuns() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `podwalk doctor` of the far-apart flow on the spec written as a cluster file, through the CLI's run() */
async function wholeCommand(
  nodes: number,
  podsPerNode: number,
  mode: CniMode,
): Promise<DoctorResult['command']> {
  const yaml = matrixYaml(syntheticSpec(nodes, podsPerNode, mode));
  let bytes = 0;
  const io: Io = {
    out: (s) => (bytes += s.length),
    err: (s) => (bytes += s.length),
    readFile: (path) => {
      if (path !== 'cluster.yaml') throw new Error(`unexpected read of ${path}`);
      return yaml;
    },
    openDir: () => {
      throw new Error('doctor writes no files');
    },
    env: {},
    isTTY: false,
  };
  const argv = [
    'doctor',
    '--cluster',
    'cluster.yaml',
    podName(0, 0),
    `${podName(nodes - 1, podsPerNode - 1)}:8080`,
  ];
  let cpu = process.cpuUsage();
  const t = performance.now();
  const exit = await run(argv, io);
  const wallMs = performance.now() - t;
  const cpuAll = cpuMs(process.cpuUsage(cpu));
  cpu = process.cpuUsage();
  loadCluster(yaml, 'cluster.yaml');
  const loadCpuMs = cpuMs(process.cpuUsage(cpu));
  return { cpuMs: cpuAll, wallMs, exit, loadCpuMs, bytes };
}

async function main(): Promise<void> {
  setPodwalkV8Flags();
  const nodes = Number(process.argv[2]);
  const podsPerNode = Number(process.argv[3]);
  const mode = process.argv[4] as CniMode;
  if (!Number.isInteger(nodes) || nodes < 2 || !Number.isInteger(podsPerNode) || podsPerNode < 1)
    throw new Error('usage: doctor-one.ts NODES(>=2) PODS_PER_NODE(>=1) MODE');
  if (!CNI_MODES.includes(mode)) throw new Error(`MODE must be one of ${CNI_MODES.join(', ')}`);
  const load = loadavg()[0];
  const spec = syntheticSpec(nodes, podsPerNode, mode);
  let cpu = process.cpuUsage();
  let c: Cluster | undefined = buildCluster(spec, mode);
  const buildCpuMs = cpuMs(process.cpuUsage(cpu));
  cpu = process.cpuUsage();
  const t = performance.now();
  let report: DoctorReport | undefined = doctor(c, {
    from: podName(0, 0),
    to: podName(nodes - 1, podsPerNode - 1),
    proto: 'tcp',
  });
  const doctorMs = performance.now() - t;
  const doctorCpuMs = cpuMs(process.cpuUsage(cpu));
  cpu = process.cpuUsage();
  const findings = runChecks(c).reduce((n, k) => n + k.findings.length, 0);
  const checksCpuMs = cpuMs(process.cpuUsage(cpu));
  const healthy = report.healthy;
  // the cluster and the report released before the whole command builds its own (one cluster in memory at a time)
  c = undefined;
  report = undefined;
  const command = await wholeCommand(nodes, podsPerNode, mode);
  const fresh = freshCommand(
    matrixYaml(syntheticSpec(nodes, podsPerNode, mode)),
    podName(0, 0),
    `${podName(nodes - 1, podsPerNode - 1)}:8080`,
  );
  const res: DoctorResult = {
    mode,
    nodes,
    podsPerNode,
    loadAvg: [load, loadavg()[0]],
    buildCpuMs,
    doctorCpuMs,
    doctorMs,
    checksCpuMs,
    findings,
    healthy,
    command,
    fresh,
  };
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(res)}\n`);
}

await main();
