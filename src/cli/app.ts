/**
 * The podwalk command line, as a function of its arguments and an IO object, so that tests run
 * it in-process. main.ts binds it to the real process.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ClusterError, loadCluster, loadPolicies, placeIn } from '../cluster/load.ts';
import { SEED_YAML, seedCluster } from '../cluster/seed.ts';
import {
  CALICO_LAYOUTS,
  CNI_MODES,
  type CalicoLayout,
  type ClusterSpec,
  type CniMode,
  type NetworkPolicySpec,
} from '../cluster/spec.ts';
import { BuildError, buildCluster, type Cluster } from '../cni/build.ts';
import { LabError, LabInterrupted } from '../lab/host.ts';
import { LabPlanError } from '../lab/plan.ts';
import { labCommand } from './lab.ts';
import { named, UsageError } from './errors.ts';
import { runShell } from './shell.ts';
import { DEFAULT_WEB_ROOT, hasBuild, serveWeb, type Served } from './serve.ts';
import { applyRun, CommandError, prepareCluster, runCommand, TOOLS } from '../tools/index.ts';
import { DumpError, importCluster, type DumpFiles } from '../import/index.ts';
import { pcapFiles } from '../tools/pcap-export.ts';
import { OutputDirError, type OutputFile } from './files.ts';
import { noteSource, sourceOf } from './source.ts';
import { wrapText } from '../render/wrap.ts';
import { compareModes } from '../diagnose/compare-modes.ts';
import { walk, WalkError, walkOk, type Walk } from '../trace/walk.ts';
import type { Proto, Trace } from '../trace/types.ts';
import { formatCtEntry } from '../render/conntrack.ts';
import { roleLabel } from '../render/step.ts';
import { explainDrop, renderExplanation } from '../diagnose/explain.ts';
import { doctor, doctorToJson, renderDoctor } from '../diagnose/doctor.ts';
import { duplicateIps, podCidrOverlaps } from '../diagnose/checks.ts';
import { computeMatrix, MatrixError, matrixJson, matrixLines } from '../diagnose/matrix.ts';
import { parsePodSelector, SelectorError } from '../cluster/selector.ts';
import { loadScenario, listScenarios, SCENARIO_DIR } from './scenarios.ts';
import {
  ANSI,
  dispositionLine,
  PLAIN,
  renderMinimal,
  renderSteps,
  renderSummary,
  type Style,
} from '../render/text.ts';
import { traceToJson } from '../render/json.ts';

export interface Io {
  out(s: string): void;
  err(s: string): void;
  readFile(path: string): string;
  /**
   * `--pcap DIR`: check that DIR takes files (creating it when missing) before anything is
   * printed; returns the writer of the files (all of them or none). Throws OutputDirError.
   */
  openDir(dir: string): (files: readonly OutputFile[]) => void;
  /** the terminal's width when stdout is a terminal (long lines are wrapped to it) */
  columns?: number;
  /** file names in a directory (for the shipped scenarios/) */
  listDir?(path: string): string[];
  /** `--from`: the files of a dump set (a directory or a .tar.gz), as src/collect/load.ts reads them */
  readDumps?(path: string): { files: DumpFiles; name: string; where(file: string): string };
  /** `podwalk collect`: run the collector script (src/collect/run.ts); stdout stays the process's */
  collect?(args: { out: string; netns?: string; name?: string; kube?: boolean }): {
    code: number;
    stderr: string;
  };
  /** `podwalk collect --script`: the collector script's text */
  collectorScript?(): string;
  /** the name of a dump set's cluster, from its path (the lab's namespace prefix) */
  dumpSetName?(path: string): string;
  env: Record<string, string | undefined>;
  isTTY: boolean;
  /** for `podwalk shell` */
  stdin?: NodeJS.ReadableStream;
  stdout?: NodeJS.WritableStream;
  stdinTTY?: boolean;
  /** `podwalk serve` hands its running server here (tests close it); the process stays up otherwise */
  served?(s: Served): void;
}

const collect = (v: string, prev: string[]) => [...prev, v];

/** the exit status of a command a signal ended is 128 + the signal's number, as in the shell */
const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

export { UsageError };

const FORMATS = ['steps', 'summary', 'minimal', 'json'] as const;
type Format = (typeof FORMATS)[number];

function style(io: Io): Style {
  // no-color.org: NO_COLOR present and not empty turns colour off
  return io.isTTY && !io.env.NO_COLOR && io.env.TERM !== 'dumb' ? ANSI : PLAIN;
}

function readInput(io: Io, file: string, what: string): string {
  try {
    return io.readFile(file);
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new UsageError(
      `${file}: cannot read ${what}${code === 'ENOENT' ? ': no such file' : code ? `: ${code}` : ''}`,
    );
  }
}

/** the cluster file's spec and the mode to build it in (--mode, else the file's) */
function specAndModeOf(
  io: Io,
  o: { cluster?: string; mode?: CniMode; calicoLayout?: CalicoLayout; policy?: string[] },
): [ClusterSpec, CniMode] {
  const spec = loadSpec(io, o.cluster, o.policy ?? []);
  return [spec, o.mode ?? spec.cni];
}

/**
 * The cluster file (or the seed) with the policies of the --policy files added; all or nothing.
 * `layout` (--calico-layout) overrides the file's calicoLayout.
 */
function loadSpec(
  io: Io,
  file: string | undefined,
  policyFiles: readonly string[] = [],
  layout?: CalicoLayout,
): ClusterSpec {
  const spec = loadSpecFile(io, file, policyFiles);
  return layout ? { ...spec, calicoLayout: layout } : spec;
}

function loadSpecFile(io: Io, file: string | undefined, policyFiles: readonly string[]): ClusterSpec {
  if (file === '') throw new UsageError('--cluster: an empty file name');
  if (file === undefined) return addPolicies(io, seedCluster(), file, policyFiles);
  const text = readInput(io, file, 'cluster file');
  const warnings: string[] = [];
  const spec = loadCluster(text, file, warnings);
  for (const w of warnings) io.err(`podwalk: warning: ${w}`);
  noteSource(io, { file, text, spec });
  return addPolicies(io, spec, file, policyFiles);
}

function addPolicies(
  io: Io,
  spec: ClusterSpec,
  file: string | undefined,
  policyFiles: readonly string[],
): ClusterSpec {
  if (policyFiles.length === 0) return spec;
  const key = (p: NetworkPolicySpec) => `${p.namespace}/${p.name}`;
  const policies = [...(spec.policies ?? [])];
  const taken = new Map(policies.map((p) => [key(p), `in ${file ?? 'the cluster file'}`]));
  for (const f of policyFiles) {
    if (f === '') throw new UsageError('--policy: an empty file name');
    const warnings: string[] = [];
    const added = loadPolicies(readInput(io, f, 'policy file'), f, taken, warnings);
    // what the API server says while it accepts the objects (kubectl's "Warning: …")
    for (const w of warnings) io.err(`podwalk: warning: ${w}`);
    for (const p of added) taken.set(key(p), `in ${f}`);
    policies.push(...added);
  }
  return { ...spec, policies };
}

/** --scenario NAME or --cluster FILE (or the seed), with the --policy files added */
function scenarioOrCluster(
  io: Io,
  o: { scenario?: string; cluster?: string; policy: string[]; calicoLayout?: CalicoLayout },
): ClusterSpec {
  if (o.scenario !== undefined && o.cluster !== undefined)
    throw new UsageError('--scenario and --cluster both name a cluster: give one');
  const spec =
    o.scenario !== undefined
      ? addPolicies(io, loadScenario(io, o.scenario), `scenarios/${o.scenario}.yaml`, o.policy)
      : loadSpec(io, o.cluster, o.policy);
  return o.calicoLayout ? { ...spec, calicoLayout: o.calicoLayout } : spec;
}

/**
 * What the user should know before a walk, on stderr: the build's warnings (e.g. policies a
 * flannel mode does not enforce), and addresses that make walks ambiguous (doctor's duplicate-ip
 * and pod-cidr-overlap checks, on the cluster as built and changed by --run).
 */
function warn(io: Io, c: Cluster): void {
  for (const w of c.warnings) io.err(`podwalk: warning: ${w}`);
  for (const f of [...podCidrOverlaps(c), ...duplicateIps(c)])
    io.err(`podwalk: warning: ${f.message} (podwalk doctor: ${f.check})`);
}

const POLICY_HELP = 'a NetworkPolicy YAML file (repeatable); enforced in the calico-* modes';

const FROM_HELP =
  'build the cluster from `podwalk collect` dumps: a directory (one subdirectory per node) or a .tar.gz';

/** --from names the whole cluster: the options that describe a simulated one do not apply */
function fromConflicts(o: {
  from?: string;
  cluster?: string;
  mode?: string;
  policy?: string[];
  scenario?: string;
}): void {
  if (!o.from) return;
  const other = o.cluster
    ? '--cluster'
    : o.scenario
      ? '--scenario'
      : o.mode
        ? '--mode'
        : o.policy?.length
          ? '--policy'
          : undefined;
  if (other)
    throw new UsageError(
      `--from builds the cluster from the dumps; ${other} describes a simulated one: give one of them`,
    );
}

/** The cluster the dumps describe, with the --run commands applied; each call builds a fresh one */
export function importFrom(io: Io, from: string, run: readonly string[] = []): Cluster {
  if (!io.readDumps) throw new UsageError('--from needs a file system to read the dumps from');
  const d = io.readDumps(from);
  let c: Cluster;
  try {
    c = importCluster(d.files, { name: d.name }).cluster;
  } catch (e) {
    if (e instanceof DumpError) throw new DumpError(e.file === '.' ? from : d.where(e.file), e.problem);
    throw e;
  }
  applyRun(
    c,
    run.map((l) => ({ l, where: '--run' })),
  );
  return c;
}

function parseLayout(v: string): CalicoLayout {
  if (!(CALICO_LAYOUTS as readonly string[]).includes(v))
    throw new InvalidArgumentError(`expected one of ${CALICO_LAYOUTS.join(', ')}`);
  return v as CalicoLayout;
}

/** --calico-layout: the calico-* modes' layout, over the cluster file's calicoLayout */
export const layoutOption = () =>
  new Option(
    '--calico-layout <layout>',
    "calico-* modes: calico (calico-node's cali* veths, proxy ARP, IPAM blocks; the default) or bridge (the article's cni0)",
  ).argParser(parseLayout);

function parseMode(v: string): CniMode {
  if (!(CNI_MODES as readonly string[]).includes(v))
    throw new InvalidArgumentError(`expected one of ${CNI_MODES.join(', ')}`);
  return v as CniMode;
}

function parseIntArg(min: number, max: number) {
  return (v: string) => {
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
      throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`);
    return Number(v);
  };
}

function renderTrace(
  t: Trace,
  format: Format,
  st: Style,
  aux: 'full' | 'brief' | 'none',
  width?: number,
): string {
  switch (format) {
    case 'steps':
      return renderSteps(t, st, { aux, width });
    case 'summary':
      return renderSummary(t, st);
    case 'minimal':
      return renderMinimal(t);
    case 'json':
      return JSON.stringify(traceToJson(t));
  }
}

/** conntrack entries of the walked flow on every node, as conntrack -L prints them */
function conntrackOf(c: Cluster, w: Walk): string[] {
  const f = w.request.flow;
  const lines: string[] = [];
  for (const n of c.nodes) {
    const ns = c.world.ns(n.name);
    ns.conntrack.expire(c.world.now);
    for (const e of ns.conntrack.entries)
      if (e.orig.src === f.src && e.orig.dst === f.dst && (f.sport === undefined || e.orig.sport === f.sport))
        lines.push(`${n.name}: ${formatCtEntry(e, c.world.now)}`);
  }
  return lines;
}

/** the namespaces a walk crossed, with the devices it used in the nodes (ARP side-exchanges left out) */
function pathOf(t: Trace, nodes: ReadonlySet<string>): string {
  const hops: { netns: string; devices: string[] }[] = [];
  for (const s of t.steps) {
    if (s.aux) continue;
    let h = hops[hops.length - 1];
    if (h?.netns !== s.netns) hops.push((h = { netns: s.netns, devices: [] }));
    if (s.device && !h.devices.includes(s.device)) h.devices.push(s.device);
  }
  return hops
    .map((h) => (nodes.has(h.netns) && h.devices.length ? `${h.netns} (${h.devices.join(' → ')})` : h.netns))
    .join(' → ');
}

/** one line on how a walk and its exchange ended */
function outcome(w: Walk): string {
  const d = w.request.disposition;
  if (d.kind === 'dropped') return `DROPPED (${d.reason}) in ${d.netns}${d.device ? ` at ${d.device}` : ''}`;
  if (d.kind !== 'delivered') return dispositionLine(d);
  const lost = w.traces.filter((t) => t.disposition.kind !== 'delivered').length;
  return lost
    ? `delivered; ${lost} of the exchange's ${w.traces.length} packets were not`
    : `delivered and answered: the whole exchange, ${w.traces.length} packets`;
}

const TRY_NEXT: [string, string][] = [
  ['npx podwalk trace pod-a pod-c:8080 --format summary', 'one flow and its reply, device by device'],
  ['npx podwalk trace pod-a pod-c:8080 --mode calico-bgp', 'the same flow in another mode, step by step'],
  ['npx podwalk modes', 'the modes side by side: encapsulation, overhead, pod MTU'],
  ['npx podwalk exec node1 -- ip route', "node1's routes, as ip prints them (also bridge, tcpdump, …)"],
  ['npx podwalk doctor --scenario vxlan-pod-mtu', 'a broken cluster diagnosed (npx podwalk scenarios)'],
  ['npx podwalk demo --mode calico-ipip', "one mode's walks only"],
];

function demo(
  io: Io,
  spec: ClusterSpec,
  modes: CniMode[],
  format: Format,
  st: Style,
  print: (s: string) => void,
): void {
  const a = spec.pods[0];
  const same = spec.pods.find((p) => p !== a && p.node === a.node && p.listen.some((l) => l.proto === 'tcp'));
  const other = spec.pods.find((p) => p.node !== a.node && p.listen.some((l) => l.proto === 'tcp'));
  const runs = modes.map((mode) => ({
    mode,
    flows: [same, other].flatMap((dst) => {
      if (!dst) return [];
      const c = buildCluster(spec, mode);
      const port = dst.listen.find((l) => l.proto === 'tcp')!.port;
      const w = walk(c, { from: a.name, to: dst.name, proto: 'tcp', port }, { exchange: true });
      const label = `${a.name} → ${dst.name}:${port}`;
      return [{ dst, port, c, w, label, where: dst.node === a.node ? 'same node' : 'another node' }];
    }),
  }));
  if (format === 'json') {
    io.out(
      JSON.stringify(
        runs.flatMap((r) =>
          r.flows.map((f) => ({
            mode: r.mode,
            request: traceToJson(f.w.request),
            reply: f.w.reply && traceToJson(f.w.reply),
          })),
        ),
      ),
    );
    return;
  }
  // the first screen: every mode in a few lines, and what to try next; the walks follow
  const rows = new Map(compareModes(spec, modes).map((r) => [r.mode, r]));
  const modeWidth = Math.max(...modes.map((m) => m.length));
  const labelWidth = Math.max(0, ...runs.flatMap((r) => r.flows.map((f) => f.label.length)));
  print(
    st.bold(
      `podwalk demo: ${a.name} to ${[same, other]
        .filter((p) => p)
        .map((p) => p!.name)
        .join(
          ' and to ',
        )}, a whole TCP exchange each, in ${modes.length === 1 ? modes[0] : `${modes.length} CNI modes`}`,
    ),
  );
  print('');
  for (const r of runs) {
    const row = rows.get(r.mode)!;
    print(
      `${st.bold(r.mode.padEnd(modeWidth))}  ${row.encapsulation === 'none' ? 'no encapsulation' : `${row.encapsulation}, ${row.overhead} B overhead`}, pod MTU ${row.podMtu}`,
    );
    for (const f of r.flows) {
      const nodes = new Set(f.c.nodes.map((n) => n.name));
      print(`  ${f.label.padEnd(labelWidth)}  ${outcome(f.w)}`);
      print(`  ${' '.repeat(labelWidth)}  ${st.dim(pathOf(f.w.request, nodes))}`);
    }
  }
  const tryNext = () => {
    print(st.bold('Try next:'));
    const w = Math.max(...TRY_NEXT.map(([c]) => c.length));
    for (const [cmd, what] of TRY_NEXT) print(`  ${cmd.padEnd(w)}  ${st.dim(what)}`);
  };
  print('');
  tryNext();
  print('');
  print(st.dim('Below: each walk step by step (request, reply, the rest of the exchange, conntrack).'));
  for (const r of runs) {
    print(st.bold(`\n════ ${r.mode} ════\n`));
    for (const { dst, c, w, label, where } of r.flows) {
      print(st.accent(`── ${label} (${where}) ──`));
      print(renderTrace(w.request, format, st, 'brief', io.columns));
      if (w.reply) {
        print(st.accent('── reply ──'));
        print(renderTrace(w.reply, format, st, 'brief', io.columns));
      }
      const rest = w.traces.slice(2);
      if (rest.length)
        print(
          st.dim(
            `── then ${rest.map((t) => roleLabel(t.flow.role)).join(', ')}: ${rest.every((t) => t.disposition.kind === 'delivered') ? 'all delivered' : 'not all delivered'} ──`,
          ),
        );
      const ct = conntrackOf(c, w);
      if (ct.length) print(st.dim('conntrack -L after the exchange:\n') + ct.map((l) => `  ${l}`).join('\n'));
      print('');
      void dst;
    }
  }
  print(
    st.dim(
      `That was ${modes.length === 1 ? modes[0] : `all ${modes.length} modes`}; the summary is at the top (npm start | less).`,
    ),
  );
  tryNext();
}

/** a directory option's problem is a usage error naming the option and the directory */
function guardDir<T>(option: string, dir: string, fn: () => T): T {
  if (dir === '') throw new UsageError(`${option}: an empty directory name`);
  try {
    return fn();
  } catch (e) {
    if (e instanceof OutputDirError) throw new UsageError(`${option} ${dir}: ${e.message}`);
    throw e;
  }
}

function openDir(io: Io, option: string, dir: string): (files: readonly OutputFile[]) => void {
  return guardDir(option, dir, () => io.openDir(dir));
}

function parseTarget(v: string): { to: string; port?: number } {
  const m = /^(.*?)(?::(\d+))?$/.exec(v)!;
  if (!m[1]) throw new UsageError(`TO "${v}" names no destination`);
  if (m[2] !== undefined) {
    const port = Number(m[2]);
    if (port < 1 || port > 65535) throw new UsageError(`TO "${v}": port must be 1..65535`);
    return { to: m[1], port };
  }
  return { to: m[1] };
}

/** io.out, with long lines wrapped to the terminal's width when stdout is a terminal */
function wrapped(io: Io): (s: string) => void {
  const width = io.columns;
  return width ? (s) => io.out(wrapText(s, width)) : (s) => io.out(s);
}

const EXAMPLES = {
  demo: `
Examples:
  $ podwalk demo                         the article's walk, every CNI mode
  $ podwalk demo --mode calico-ipip      one mode only
  $ podwalk demo --format summary        one line of devices per namespace`,
  trace: `
FROM and TO are pod names, node names or IPv4 addresses; TO may also be a Service
(svc/NAME, NAMESPACE/NAME, its ClusterIP, or NODE:NODEPORT) and may end in :PORT.
Exit status: 0 delivered (and answered), 1 dropped, 2 bad usage.

Examples:
  $ podwalk trace pod-a pod-c:8080                   TCP, cross-node, flannel VXLAN
  $ podwalk trace pod-a pod-b:8080 --format summary  same node, through cni0
  $ podwalk trace pod-a 10.244.1.5 --proto icmp --mode calico-ipip
  $ podwalk trace pod-a pod-c:8080 --proto udp --size 1400
  $ podwalk trace pod-a pod-c --proto icmp --size 1472 --df   over the pod MTU: dropped
  $ podwalk trace pod-a pod-c:8080 --exchange        every packet of the exchange
  $ podwalk trace pod-a pod-c:8080 --cluster my.yaml --format json
  $ podwalk trace default/web default/db:5432 --from dumps/   nodes dumped by podwalk collect
  $ podwalk trace pod-a svc/web:80 --cluster examples/services.yaml   through kube-proxy's DNAT
  $ podwalk trace pod-a svc/web:80 --endpoint pod-c --cluster examples/services.yaml
  $ podwalk trace pod-a node2:30080 --cluster examples/services.yaml  a node port`,
  doctor: `
Exit status: 0 healthy, 1 problems found, 2 bad usage.

Examples:
  $ podwalk doctor pod-a pod-c:8080
  $ podwalk doctor pod-a pod-c:8080 --run "node1: bridge fdb del 5a:2b:3c:4d:5e:6f dev flannel.1"
  $ podwalk doctor pod-a pod-d --proto icmp --mode calico-ipip --json
  $ podwalk doctor pod-a svc/web:80 --cluster examples/services.yaml   through kube-proxy's DNAT
  $ podwalk doctor --scenario vxlan-pod-mtu        a ready-made fault (podwalk scenarios lists them)
  $ podwalk doctor default/web default/db:5432 --from dumps/    your real nodes (podwalk collect)`,
  matrix: `
Rows are the sources (--from), columns the destinations (--to), pods as NAMESPACE/NAME; "." the
connection is answered (TCP: SYN-ACK; UDP: the listener's reply), "X" it is not. The layout is
that of the Kubernetes NetworkPolicy e2e tests' truth tables (tab-separated). Every cell is a
walk, or the walk of two pods the model cannot tell apart (same node class, same listener, same
NetworkPolicy selection and peers). SELECTOR is a label selector as kubectl -l takes it
(app=web, tier!=db, env in (prod,dev), !canary), where metadata.name, metadata.namespace and
spec.nodeName match the pod's fields. Exit status: 0, or 2 on bad usage.

Examples:
  $ podwalk matrix                                  every pod to every pod on tcp/8080
  $ podwalk matrix --cluster scenarios/policy-blocks-dns.yaml --proto udp --port 53
  $ podwalk matrix --scenario policy-blocks-dns --proto udp --port 53 --policy examples/allow-dns.yaml
  $ podwalk matrix --scenario policy-blocks-dns --from 'metadata.namespace=shop' --to 'app in (cart,web)'
  $ podwalk matrix --mode calico-bgp --run 'node1: iptables -I FORWARD -s 10.244.0.6 -j DROP'
  $ podwalk matrix --from spec.nodeName=node1 --json      every cell and the walk that decides it`,
  modes: `
Examples:
  $ podwalk modes
  $ podwalk modes --cluster my.yaml --json`,
};

export async function run(argv: string[], io: Io): Promise<number> {
  const st = style(io);
  let code = 0;
  const program = new Command('podwalk')
    .description('Walk a packet through the Kubernetes pod network, device by device, as Linux runs it.')
    .version('0.1.0')
    .addHelpText(
      'after',
      `
Examples:
  $ podwalk demo                             the article's walk in every CNI mode
  $ podwalk trace pod-a pod-c:8080           one flow and its reply, step by step
  $ podwalk trace pod-a pod-b:8080 --format summary --mode calico-bgp
  $ podwalk modes                            encapsulation, overhead and pod MTU per mode
  $ podwalk doctor pod-a pod-c:8080          diagnose a flow: first failure, evidence, cluster checks
  $ podwalk doctor --scenario vxlan-pod-mtu  a ready-made broken cluster (podwalk scenarios lists them)
  $ podwalk matrix --scenario policy-blocks-dns --proto udp --port 53   pods × pods: who reaches whom
  $ podwalk seed > my.yaml                   the built-in cluster, to edit and pass with --cluster
  $ sudo podwalk collect --out dumps         on a real node: its network state, for --from
  $ podwalk doctor web db:5432 --from dumps/ walk and diagnose what was collected`,
    )
    .exitOverride()
    .showHelpAfterError(false)
    .configureOutput({
      writeOut: (s) => io.out(s.replace(/\n$/, '')),
      writeErr: (s) => io.err(s.replace(/\n$/, '')),
    });

  program
    .command('demo')
    .description(
      "the source article's walk: Pod A to Pod B (same node) and Pod C (another node) in every CNI mode, then the replies",
    )
    .addOption(new Option('--mode <mode>', 'only this CNI mode').argParser(parseMode))
    .addOption(layoutOption())
    .option('--cluster <file>', 'cluster YAML (default: the built-in seed cluster)')
    .addOption(new Option('--format <format>', 'output format').choices(FORMATS).default('steps'))
    .option('--json', 'same as --format json')
    .addHelpText('after', EXAMPLES.demo)
    .action(
      (o: {
        mode?: CniMode;
        calicoLayout?: CalicoLayout;
        cluster?: string;
        format: Format;
        json?: boolean;
      }) => {
        const spec = loadSpec(io, o.cluster, [], o.calicoLayout);
        demo(io, spec, o.mode ? [o.mode] : [...CNI_MODES], o.json ? 'json' : o.format, st, wrapped(io));
      },
    );

  program
    .command('trace')
    .description('walk one flow and its reply')
    .argument('<FROM>', 'source: pod, node or IP')
    .argument(
      '<TO[:PORT]>',
      "destination: pod, node, IP, or a Service (svc/NAME, NAMESPACE/NAME, its ClusterIP, NODE:NODEPORT), with an optional port (default 8080, or the Service's one port)",
    )
    .addOption(new Option('--proto <proto>', 'protocol').choices(['tcp', 'udp', 'icmp']).default('tcp'))
    .addOption(
      new Option('--size <bytes>', 'UDP/ICMP: IP total length; TCP: bytes of request data').argParser(
        parseIntArg(28, 65535),
      ),
    )
    .option(
      '--df',
      "set Don't Fragment (UDP; ICMP sets it by default where the packet fits, as ping does; TCP always)",
    )
    .option('--no-df', "ICMP: clear Don't Fragment (ping -M dont)")
    .addOption(
      new Option('--sport <port>', 'source port (default: a seeded ephemeral port)').argParser(
        parseIntArg(1, 65535),
      ),
    )
    .addOption(new Option('--mode <mode>', "CNI mode (default: the cluster file's)").argParser(parseMode))
    .addOption(layoutOption())
    .option('--cluster <file>', 'cluster YAML (default: the built-in seed cluster)')
    .addOption(new Option('--format <format>', 'output format').choices(FORMATS).default('steps'))
    .option('--json', 'same as --format json')
    .option('--exchange', 'walk and print every packet of the exchange (handshake, data, close)')
    .option('--no-arp', 'hide the steps of ARP resolution')
    .option(
      '--run <NETNS: CMD>',
      'apply an emulated command first, e.g. "node1: ip route del 10.244.1.0/24" (repeatable, in order)',
      collect,
      [],
    )
    .option('--pcap <dir>', 'write one pcap per interface the walk touched: DIR/<netns>-<dev>.pcap')
    .option(
      '--endpoint <pod>',
      "a Service's destination: take this endpoint where kube-proxy chooses one at random (default: the flow's own draw)",
    )
    .option('--policy <file>', POLICY_HELP, collect, [])
    .option('--from <DIR|FILE.tar.gz>', FROM_HELP, named('--from'))
    .addHelpText('after', EXAMPLES.trace)
    .action(
      (
        from: string,
        target: string,
        o: {
          proto: Proto;
          size?: number;
          df?: boolean;
          sport?: number;
          mode?: CniMode;
          calicoLayout?: CalicoLayout;
          cluster?: string;
          format: Format;
          json?: boolean;
          exchange?: boolean;
          arp: boolean;
          run: string[];
          pcap?: string;
          policy: string[];
          from?: string;
          endpoint?: string;
        },
      ) => {
        fromConflicts(o);
        const spec = o.from ? undefined : loadSpec(io, o.cluster, o.policy, o.calicoLayout);
        const { to, port } = parseTarget(target);
        if (o.proto === 'icmp' && port !== undefined)
          throw new UsageError(`TO "${target}": ICMP has no ports`);
        const c = spec ? prepareCluster(spec, o.mode ?? spec.cni, o.run) : importFrom(io, o.from!, o.run);
        warn(io, c);
        const w = walk(
          c,
          { from, to, proto: o.proto, port, size: o.size, df: o.df, sport: o.sport, endpoint: o.endpoint },
          { exchange: !!o.exchange },
        );
        // the pcap directory is checked, and the files written (all or none), before anything is
        // printed: a directory entry in the way is one line and exit 2, not a trace and then an error
        const pcaps = o.pcap === undefined ? undefined : pcapFiles(c.world);
        if (pcaps) guardDir('--pcap', o.pcap!, () => openDir(io, '--pcap', o.pcap!)(pcaps));
        const format: Format = o.json ? 'json' : o.format;
        const traces = o.exchange ? w.traces : [w.request, ...(w.reply ? [w.reply] : [])];
        if (format === 'json') {
          io.out(
            JSON.stringify({
              mode: c.mode,
              ...(o.from ? { from: o.from, warnings: c.warnings } : {}),
              ok: walkOk(w),
              traces: traces.map((t) => {
                const why = explainDrop(c, t);
                return why ? { ...traceToJson(t), explanation: why } : traceToJson(t);
              }),
              conntrack: conntrackOf(c, w),
            }),
          );
        } else {
          const explained = new Set<string>();
          traces.forEach((t, i) => {
            if (i === 1 && !o.exchange) io.out(st.accent('── reply ──'));
            else if (i > 0) io.out(st.accent(`── ${roleLabel(t.flow.role)} ──`));
            io.out(renderTrace(t, format, st, o.arp ? 'full' : 'none'));
            // minimal is the regression format: one line per step, nothing else
            const why = format === 'minimal' ? undefined : explainDrop(c, t);
            if (!why) return;
            const key = `${why.reason} in ${why.netns}${why.device ? ` at ${why.device}` : ''}`;
            io.out(st.bad(explained.has(key) ? `why: ${key}, as above` : renderExplanation(why)));
            explained.add(key);
          });
          if (o.exchange) {
            const ct = conntrackOf(c, w);
            if (ct.length)
              io.out(st.dim('conntrack -L after the exchange:\n') + ct.map((l) => `  ${l}`).join('\n'));
          }
        }
        if (pcaps) io.err(`wrote ${pcaps.length} pcap files to ${o.pcap}`);
        code = walkOk(w) ? 0 : 1;
      },
    );

  const execWalks = (c: Cluster, specs: string[]) => {
    for (const line of specs) {
      const words = line.trim().split(/\s+/);
      const get = (flag: string) => {
        const i = words.indexOf(flag);
        return i >= 0 ? words[i + 1] : undefined;
      };
      const pos = words.filter(
        (x, i) => !x.startsWith('--') && !['--proto', '--size'].includes(words[i - 1]),
      );
      if (pos.length !== 2)
        throw new UsageError(`--walk "${line}": expected "FROM TO[:PORT] [--proto P] [--size N] [--df]"`);
      const { to, port } = parseTarget(pos[1]);
      const proto = (get('--proto') ?? 'tcp') as Proto;
      if (!['tcp', 'udp', 'icmp'].includes(proto))
        throw new UsageError(`--walk "${line}": --proto takes tcp, udp or icmp`);
      const size = get('--size') !== undefined ? parseIntArg(28, 65535)(get('--size')!) : undefined;
      const df = words.includes('--df') ? true : words.includes('--no-df') ? false : undefined;
      walk(c, { from: pos[0], to, port, proto, size, df }, { exchange: true });
    }
  };

  program
    .command('exec')
    .description(
      'run an emulated command in a pod or node of the simulated cluster: podwalk exec NETNS -- CMD…',
    )
    .argument('<NETNS>', 'pod or node name')
    .argument('<CMD...>', `the command: ${Object.keys(TOOLS).join(', ')}`)
    .option('--cluster <file>', 'cluster YAML (default: the built-in seed cluster)')
    .addOption(new Option('--mode <mode>', "CNI mode (default: the cluster file's)").argParser(parseMode))
    .addOption(layoutOption())
    .option('--run <NETNS: CMD>', 'apply an emulated command first (repeatable, in order)', collect, [])
    .option(
      '--walk <FLOW>',
      'walk a flow first, e.g. "pod-a pod-c:8080" or "pod-a pod-c --proto icmp" (repeatable)',
      collect,
      [],
    )
    .option('--policy <file>', POLICY_HELP, collect, [])
    .option('--from <DIR|FILE.tar.gz>', FROM_HELP, named('--from'))
    .addHelpText(
      'after',
      `
Examples:
  $ podwalk exec node1 -- ip route
  $ podwalk exec pod-a -- ip route get 10.244.1.5
  $ podwalk exec node1 -- bridge fdb show dev flannel.1
  $ podwalk exec node1 --walk 'pod-a pod-c:8080' -- tcpdump -i eth0 -nn udp port 4789
  $ podwalk exec node2 --walk 'pod-a pod-c:8080' -- conntrack -L
  $ podwalk exec node1 --run 'node1: ip route del 10.244.1.0/24' -- ip route
  $ podwalk exec router --run 'node1: ip route del 10.244.1.0/24' --walk 'pod-a pod-c:8080' -- nstat -az IpExtInNoRoutes
  $ podwalk exec node1 --from dumps/ -- ip route      a node of the collected dumps`,
    )
    .action(
      (
        netns: string,
        cmd: string[],
        o: {
          cluster?: string;
          mode?: CniMode;
          calicoLayout?: CalicoLayout;
          run: string[];
          walk: string[];
          policy: string[];
          from?: string;
        },
      ) => {
        fromConflicts(o);
        const c = o.from ? importFrom(io, o.from, o.run) : prepareCluster(...specAndModeOf(io, o), o.run);
        warn(io, c);
        execWalks(c, o.walk);
        const r = runCommand(c, netns, cmd);
        if (r.stdout) io.out(r.stdout.replace(/\n$/, ''));
        if (r.stderr) io.err(r.stderr.replace(/\n$/, ''));
        code = r.code;
      },
    );

  program
    .command('shell')
    .description(
      'an interactive prompt in the simulated cluster: cd between pods and nodes, run the emulated tools, walk flows',
    )
    .option('--cluster <file>', 'cluster YAML (default: the built-in seed cluster)')
    .addOption(new Option('--mode <mode>', "CNI mode (default: the cluster file's)").argParser(parseMode))
    .addOption(layoutOption())
    .option('--run <NETNS: CMD>', 'apply an emulated command first (repeatable, in order)', collect, [])
    .option('--walk <FLOW>', 'walk a flow first (repeatable)', collect, [])
    .option('--in <netns>', 'the namespace to start in (default: the first node)')
    .option('--policy <file>', POLICY_HELP, collect, [])
    .option('--from <DIR|FILE.tar.gz>', FROM_HELP, named('--from'))
    .addHelpText(
      'after',
      `
Examples:
  $ podwalk shell
  node1# ip route
  node1# walk pod-a pod-c:8080
  node1# tcpdump -i flannel.1 -nn
  node1# cd pod-a
  pod-a$ ip neigh
  $ echo 'ip route' | podwalk shell --in pod-a     (reads commands from a pipe, no prompt)`,
    )
    .action(
      async (o: {
        cluster?: string;
        mode?: CniMode;
        calicoLayout?: CalicoLayout;
        run: string[];
        walk: string[];
        in?: string;
        policy: string[];
        from?: string;
      }) => {
        fromConflicts(o);
        const c = o.from ? importFrom(io, o.from, o.run) : prepareCluster(...specAndModeOf(io, o), o.run);
        warn(io, c);
        execWalks(c, o.walk);
        const start = o.in !== undefined ? o.in : c.nodes[0].name;
        if (!c.world.netns.has(start)) throw new UsageError(`--in ${start}: no such pod or node`);
        if (!io.stdin || !io.stdout) throw new UsageError('shell needs a terminal or piped input');
        code = await runShell(
          c,
          { input: io.stdin, output: io.stdout, interactive: !!io.stdinTTY, style: st },
          start,
        );
      },
    );

  program
    .command('doctor')
    .description(
      'diagnose a flow: walk it both ways (TCP: the handshake and full-size segments too), explain the first failure with its evidence, and run the cluster-wide checks',
    )
    .argument('[FROM]', "source: pod or node (default: the scenario's)")
    .argument('[TO[:PORT]]', 'destination: pod, node or IP, with an optional port (default 8080)')
    .addOption(
      new Option('--proto <proto>', "protocol (default tcp, or the scenario's)").choices([
        'tcp',
        'udp',
        'icmp',
      ]),
    )
    .addOption(new Option('--mode <mode>', "CNI mode (default: the cluster file's)").argParser(parseMode))
    .addOption(layoutOption())
    .option('--cluster <file>', 'cluster YAML (default: the built-in seed cluster)')
    .option('--scenario <name>', 'a ready-made broken cluster from scenarios/ (see podwalk scenarios)')
    .option('--run <NETNS: CMD>', 'apply an emulated command first (repeatable, in order)', collect, [])
    .option('--policy <file>', POLICY_HELP, collect, [])
    .option('--from <DIR|FILE.tar.gz>', FROM_HELP, named('--from'))
    .option('--json', 'machine-readable report')
    .addHelpText('after', EXAMPLES.doctor)
    .action(
      (
        from: string | undefined,
        target: string | undefined,
        o: {
          proto?: Proto;
          mode?: CniMode;
          calicoLayout?: CalicoLayout;
          cluster?: string;
          scenario?: string;
          run: string[];
          policy: string[];
          json?: boolean;
          from?: string;
        },
      ) => {
        fromConflicts(o);
        if (o.from) {
          if (!from || !target) throw new UsageError('doctor --from needs FROM and TO');
          const { to, port } = parseTarget(target);
          const proto: Proto = o.proto ?? 'tcp';
          if (proto === 'icmp' && port !== undefined)
            throw new UsageError(`TO "${target}": ICMP has no ports`);
          // bad dumps and --run lines surface here
          const report = doctor(importFrom(io, o.from, o.run), {
            from,
            to,
            proto,
            port: proto === 'icmp' ? undefined : port,
          });
          if (o.json) io.out(JSON.stringify(doctorToJson(report)));
          else io.out(renderDoctor(report));
          code = report.healthy ? 0 : 1;
          return;
        }
        const spec = scenarioOrCluster(io, o);
        const sc = spec.scenario;
        if (!from && !sc) throw new UsageError('doctor needs FROM and TO (or --scenario NAME)');
        if (from && !target) throw new UsageError('doctor needs TO after FROM');
        const { to, port } = target ? parseTarget(target) : { to: sc!.to, port: sc!.port };
        const proto: Proto = o.proto ?? (target ? 'tcp' : (sc?.proto ?? 'tcp'));
        if (proto === 'icmp' && port !== undefined && target)
          throw new UsageError(`TO "${target}": ICMP has no ports`);
        const mode = o.mode ?? spec.cni;
        // bad --run lines and cluster errors surface here, before any walk
        const report = doctor(prepareCluster(spec, mode, o.run), {
          from: from ?? sc!.from,
          to,
          proto,
          port: proto === 'icmp' ? undefined : port,
        });
        if (o.json) io.out(JSON.stringify(doctorToJson(report)));
        else io.out(renderDoctor(report));
        code = report.healthy ? 0 : 1;
      },
    );

  program
    .command('matrix')
    .description(
      'the reachability truth table of pods × pods for one port: "." reachable, "X" blocked, in the layout of the Kubernetes NetworkPolicy e2e tests',
    )
    .addOption(new Option('--port <port>', 'destination port').argParser(parseIntArg(1, 65535)).default(8080))
    .addOption(new Option('--proto <proto>', 'protocol').choices(['tcp', 'udp']).default('tcp'))
    .option('--from <SELECTOR>', 'the rows: pods this label selector selects (default: every pod)')
    .option('--to <SELECTOR>', 'the columns (default: every pod)')
    .addOption(new Option('--mode <mode>', "CNI mode (default: the cluster file's)").argParser(parseMode))
    .addOption(layoutOption())
    .option('--cluster <file>', 'cluster YAML (default: the built-in seed cluster)')
    .option('--scenario <name>', 'a ready-made cluster from scenarios/ (see podwalk scenarios)')
    .option('--run <NETNS: CMD>', 'apply an emulated command first (repeatable, in order)', collect, [])
    .option('--policy <file>', POLICY_HELP, collect, [])
    .option('--json', 'every cell, the walk that decides it and what that walk ended with')
    .addHelpText('after', EXAMPLES.matrix)
    .action(
      (o: {
        port: number;
        proto: 'tcp' | 'udp';
        from?: string;
        to?: string;
        mode?: CniMode;
        calicoLayout?: CalicoLayout;
        cluster?: string;
        scenario?: string;
        run: string[];
        policy: string[];
        json?: boolean;
      }) => {
        const selector = (flag: string, text: string | undefined) => {
          if (text === undefined) return undefined;
          try {
            return parsePodSelector(text);
          } catch (e) {
            if (e instanceof SelectorError) throw new UsageError(`${flag} "${text}": ${e.message}`);
            throw e;
          }
        };
        const from = selector('--from', o.from);
        const to = selector('--to', o.to);
        const spec = scenarioOrCluster(io, o);
        const m = computeMatrix(spec, o.mode ?? spec.cni, o.run, { proto: o.proto, port: o.port, from, to });
        for (const w of m.warnings) io.err(`podwalk: warning: ${w}`);
        if (o.json) {
          matrixJson(m, (l) => io.out(l));
          return;
        }
        const { cells, blocked } = matrixLines(m, (l) => io.out(l));
        const how = m.grouping.used
          ? `${m.walks.length} walk${m.walks.length === 1 ? '' : 's'}, one per group of pods the model cannot tell apart (${m.grouping.groups} groups)`
          : `every cell walked (${m.grouping.reason})`;
        io.err(
          st.dim(`podwalk: ${m.proto}/${m.port} in ${m.mode}: ${cells} cells, ${blocked} blocked; ${how}`),
        );
      },
    );

  program
    .command('collect')
    .description(
      "dump a node's network state for --from: the namespace (the node, or --netns NAME) and every pod its veths lead to (run as root on the node; --script prints the same collector as a POSIX sh script)",
    )
    .option('--out <DIR|->', 'write DIR/NODE/… (-: a gzipped tar of it on stdout)')
    .option(
      '--netns <name>',
      'dump the named network namespace (ip netns) instead of the current one',
      named('--netns'),
    )
    .option(
      '--name <node>',
      "the node's name in the dump (default: the hostname, or the --netns name)",
      named('--name'),
    )
    .option('--kube', 'also save kubectl get nodes,pods,services,endpointslices,networkpolicies -A -o json')
    .option('--script', 'print the collector (a POSIX sh script needing only iproute2) instead of running it')
    .addHelpText(
      'after',
      `
The collector only reads (ip/bridge/tc/ss show, iptables-save, nft list, conntrack -L, nstat -s,
/proc/sys). Copy each node's DIR/NODE into one directory, then walk it with --from.

Examples:
  # on each node, as root
  $ sudo podwalk collect --out /tmp/dumps
  $ sudo podwalk collect --out - > node1.tar.gz
  # a node without Node.js: the same script through kubectl debug or ssh
  $ podwalk collect --script > collect.sh
  $ kubectl debug node/node1 -q -i --profile=sysadmin --image=busybox -- chroot /host sh -s -- --out - < collect.sh > node1.tar.gz
  $ ssh root@node1 sh -s -- --out - < collect.sh > node1.tar.gz
  # then, anywhere
  $ podwalk trace default/web default/db:5432 --from dumps/
  $ podwalk doctor default/web default/db:5432 --from node1.tar.gz`,
    )
    .action((o: { out?: string; netns?: string; name?: string; kube?: boolean; script?: boolean }) => {
      if (o.script) {
        if (!io.collectorScript) throw new UsageError('collect --script needs the installed podwalk');
        io.out(io.collectorScript().replace(/\n$/, ''));
        return;
      }
      if (!o.out)
        throw new UsageError(
          'collect needs --out DIR (--out - writes a .tar.gz to stdout; --script prints the collector)',
        );
      if (!io.collect) throw new UsageError('collect runs on a node: it needs sh and the file system');
      // the directory is checked (and made) first, as --pcap's: a file, /proc or /sys there is one
      // line and exit 2, not the collector's mkdir error and exit 1
      if (o.out !== '-') openDir(io, '--out', o.out);
      const r = io.collect({ out: o.out, netns: o.netns, name: o.name, kube: o.kube });
      if (r.stderr) io.err(r.stderr.replace(/\n$/, ''));
      code = r.code;
    });

  program
    .command('scenarios')
    .description('list the ready-made broken clusters of scenarios/, for podwalk doctor --scenario NAME')
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }) => {
      const list = listScenarios(io);
      if (o.json) return io.out(JSON.stringify(list));
      const w = Math.max(...list.map((x) => x.name.length));
      for (const x of list) io.out(`${x.name.padEnd(w)}  ${x.title}`);
      io.out(
        st.dim(`\n${list.length} scenarios in ${SCENARIO_DIR}; run one with: podwalk doctor --scenario NAME`),
      );
    });

  program
    .command('modes')
    .description(
      'compare the CNI modes on the cluster: encapsulation, overhead, pod MTU, what the underlay must know (measured by walking a cross-node flow in each)',
    )
    .option('--cluster <file>', 'cluster YAML (default: the built-in seed cluster)')
    .option('--json', 'machine-readable output')
    .addHelpText('after', EXAMPLES.modes)
    .action((o: { cluster?: string; json?: boolean }) => {
      const rows = compareModes(loadSpec(io, o.cluster));
      if (o.json) return io.out(JSON.stringify(rows));
      const head = ['MODE', 'ENCAPSULATION', 'OVERHEAD', 'POD MTU', 'UNDERLAY MUST KNOW'];
      const body = rows.map((r) => [
        r.mode,
        r.encapsulation,
        `${r.overhead} B`,
        String(r.podMtu),
        r.delivered ? r.underlayMustKnow : `(walk not delivered) ${r.underlayMustKnow}`,
      ]);
      const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
      const line = (cells: string[]) =>
        cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
      io.out(st.bold(line(head)));
      for (const b of body) io.out(line(b));
      io.out(
        st.dim(
          `underlay MTU ${rows[0]?.underlayMtu}; overhead = bytes on the underlay minus bytes on the pod's eth0 for the same packet`,
        ),
      );
    });

  const lab = labCommand({
    out: (x) => io.out(x),
    err: (x) => io.err(x),
    loadSpec: (f, policies) => loadSpec(io, f, policies),
    warn: (c) => warn(io, c),
    importFrom: (from) => importFrom(io, from),
    dumpSetName: (from) => io.dumpSetName?.(from) ?? 'imported',
    parseMode,
    parseIntArg,
    parseTarget,
    style: st,
    setCode: (c) => {
      code = c;
    },
  });
  // the settings .command() passes on (exitOverride: usage errors exit 2, output through io)
  for (const cmd of [lab, ...lab.commands]) cmd.copyInheritedSettings(program);
  program.addCommand(lab);

  program
    .command('serve')
    .description(
      'serve the web page (built by `npm run build`) on 127.0.0.1: the cluster drawn, walks animated step by step, a console per namespace',
    )
    .option('--cluster <file>', 'cluster YAML for the page (default: the built-in seed cluster)')
    .addOption(
      new Option('--port <port>', 'TCP port on 127.0.0.1 (0: any free port)')
        .argParser(parseIntArg(0, 65535))
        .default(8080),
    )
    .option('--dir <dir>', 'the page build to serve', DEFAULT_WEB_ROOT)
    .option('--from <DIR|FILE.tar.gz>', `${FROM_HELP}; the page imports them itself`, named('--from'))
    .addHelpText(
      'after',
      `
Examples:
  $ npm run build && npx podwalk serve
  $ podwalk serve --cluster my.yaml --port 9000`,
    )
    .action(async (o: { cluster?: string; port: number; dir: string; from?: string }) => {
      fromConflicts(o);
      let cluster: { yaml: string; file: string } | undefined;
      let dumps: string | undefined;
      if (o.from) {
        importFrom(io, o.from); // validate here: FILE: what is wrong, exit 2
        const d = io.readDumps!(o.from);
        dumps = JSON.stringify({ name: d.name, files: Object.fromEntries(d.files) });
      }
      if (o.cluster !== undefined) {
        loadSpec(io, o.cluster); // validate here: file:line:col, exit 2
        cluster = { yaml: io.readFile(o.cluster), file: o.cluster };
      }
      if (o.dir === '') throw new UsageError('--dir: an empty directory name');
      if (!hasBuild(o.dir)) throw new UsageError(`no page build in ${o.dir}: run \`npm run build\` first`);
      let s: Served;
      try {
        s = await serveWeb({ root: o.dir, port: o.port, cluster, dumps });
      } catch (e) {
        const code = (e as { code?: string }).code;
        throw new UsageError(
          `cannot listen on 127.0.0.1:${o.port}: ${code === 'EADDRINUSE' ? 'the port is in use (pick another with --port)' : (code ?? (e as Error).message)}`,
        );
      }
      io.out(`podwalk: serving ${o.from ?? o.cluster ?? 'the built-in cluster'} at ${s.url} (Ctrl-C stops)`);
      io.served?.(s);
    });

  program
    .command('seed')
    .description('print the built-in cluster as YAML (a starting point for --cluster)')
    .action(() => io.out(SEED_YAML.replace(/\n$/, '')));

  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return 0;
      // `podwalk` alone: commander printed the help on stderr; that is bad usage
      if (e.code === 'commander.help') return e.exitCode === 0 ? 0 : 2;
      if (e.code === 'commander.executeSubCommandAsync') return 0;
      return 2; // commander already printed its one-line error
    }
    if (e instanceof LabInterrupted) {
      io.err(`podwalk: ${e.message}: stopped, and removed what this command had built`);
      return 128 + (SIGNAL_NUMBERS[e.signal] ?? 2);
    }
    // a problem found after the cluster file was read (the build, a run: command): its place in the file
    const src = sourceOf(io);
    if (e instanceof CommandError && e.runIndex !== undefined && src) {
      io.err(`podwalk: ${placeIn(src.text, src.file, ['run', e.runIndex])}: ${e.message}`);
      return 2;
    }
    if (e instanceof BuildError && src) {
      const pod = e.pod === undefined ? -1 : src.spec.pods.findIndex((p) => p.name === e.pod);
      io.err(`podwalk: ${pod >= 0 ? placeIn(src.text, src.file, ['pods', pod]) : src.file}: ${e.message}`);
      return 2;
    }
    if (
      e instanceof ClusterError ||
      e instanceof UsageError ||
      e instanceof WalkError ||
      e instanceof LabError ||
      e instanceof LabPlanError ||
      e instanceof BuildError ||
      e instanceof CommandError ||
      e instanceof MatrixError ||
      e instanceof DumpError
    ) {
      io.err(`podwalk: ${e.message}`);
      return 2;
    }
    throw e;
  }
}
