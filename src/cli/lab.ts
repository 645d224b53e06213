/**
 * `podwalk lab …`: the real-kernel lab of a cluster (root only).
 */
import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { named } from './errors.ts';
import type { ClusterSpec, CniMode } from '../cluster/spec.ts';
import { buildCluster, type Cluster } from '../cni/build.ts';
import { planLab } from '../lab/plan.ts';
import {
  labChange,
  labCondition,
  labDown,
  labDownOrphaned,
  labExec,
  labsHere,
  LabError,
  LabInterrupted,
  labUnavailable,
  labUp,
  type LabState,
} from '../lab/host.ts';
import { labTrace } from '../lab/trace.ts';
import { labCollect } from '../lab/collect.ts';
import { runScenario } from '../lab/differential.ts';
import { stateDiff } from '../lab/diff.ts';
import type { Proto } from '../trace/types.ts';
import { flowLine, type Style } from '../render/text.ts';
import { applyRun, prepareCluster, splitRunLine } from '../tools/index.ts';

export interface LabCliDeps {
  out(s: string): void;
  err(s: string): void;
  /** the cluster file (or the seed) with the --policy files' policies added */
  loadSpec(file: string | undefined, policies?: readonly string[]): ClusterSpec;
  parseMode(v: string): CniMode;
  parseIntArg(min: number, max: number): (v: string) => number;
  parseTarget(v: string): { to: string; port?: number };
  style: Style;
  /** print the build's warnings on stderr */
  warn(c: Cluster): void;
  /** the cluster a dump set describes (--from) */
  importFrom(from: string): Cluster;
  /** the name a dump set's cluster (and lab) gets, without reading it */
  dumpSetName(from: string): string;
  setCode(code: number): void;
}

function need(): void {
  const why = labUnavailable();
  if (why) throw new LabError(why);
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Run a lab operation that builds something, with SIGINT, SIGTERM and SIGHUP turned into an abort:
 * the operation stops at its next step or wait, removes what it built and throws LabInterrupted.
 * Until it has, further signals change nothing (a second Ctrl-C does not leave half a lab).
 */
async function interruptible<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const on = (sig: NodeJS.Signals) => {
    if (!ac.signal.aborted) ac.abort(sig);
  };
  for (const s of SIGNALS) process.on(s, on);
  try {
    const r = await fn(ac.signal);
    if (ac.signal.aborted) throw new LabInterrupted(String(ac.signal.reason));
    return r;
  } finally {
    for (const s of SIGNALS) process.off(s, on);
  }
}

/** a lab held as lab status says it: up (left by lab up), or in use by the live process that owns it */
function held(kind: 'up' | 'in-use', st: LabState): string {
  return kind === 'up'
    ? `up (${st.mode}, since ${st.created})`
    : `in use by process ${st.owner} (${st.mode}, since ${st.created}), which removes it when it ends`;
}

/** the state of the cluster's lab, for the commands that work in a running lab */
function runningLab(c: Cluster): LabState {
  const cond = labCondition(c);
  switch (cond.kind) {
    case 'up':
    case 'in-use':
    case 'orphaned':
      return cond.state;
    case 'other':
      throw new LabError(
        `the namespaces ${cond.state.prefix}* belong to the lab of "${cond.state.cluster}", not "${c.spec.name}"`,
      );
    default:
      throw new LabError(`no lab for "${c.spec.name}" is up: run podwalk lab up first`);
  }
}

/** a command run before the flow, with where it came from: `run[i]` of the cluster file, `--run` */
interface RunLine {
  l: string;
  where: string;
  index?: number;
}

/** the cluster file's `run:` lines, then --run's, in the order they are applied */
function runLines(spec: ClusterSpec, extra: readonly string[] = []): RunLine[] {
  return [
    ...spec.run.map((l, i) => ({ l, where: `run[${i}]`, index: i })),
    ...extra.map((l) => ({ l, where: '--run' })),
  ];
}

/**
 * The same commands on the real kernel, in order, each in its namespace of the lab (the model's
 * emulated tools have run them first, so a command they refuse never gets here)
 */
async function runInLab(st: LabState, lines: readonly RunLine[], signal: AbortSignal): Promise<void> {
  for (const { l, where } of lines) {
    const [netns, cmd] = splitRunLine(l);
    if (!st.namespaces[netns]) throw new LabError(`${where}: the lab has no namespace ${netns}`);
    const x = await labChange(st, netns, cmd, signal);
    if (x.code !== 0)
      throw new LabError(
        `${where} "${netns}: ${cmd}" failed in the lab: ${(x.stderr || x.stdout).trim().split('\n')[0] || `exit ${x.code}`}`,
      );
  }
}

export function labCommand(d: LabCliDeps): Command {
  const lab = new Command('lab').description(
    "the cluster on this machine's real kernel: network namespaces named pw-<cluster>-<netns> (root only)",
  );
  lab.addHelpText(
    'after',
    `
Examples:
  $ podwalk lab up                              the seed cluster (flannel-vxlan) in network namespaces
  $ podwalk lab exec node1 -- ip route          a real command in a lab namespace
  $ podwalk lab exec pod-a -- ping -c1 10.244.1.5
  $ podwalk lab status
  $ podwalk lab status --all                    every lab on this machine (lab down --orphaned: the killed ones)
  $ podwalk lab diff                            the lab's tables against the model's
  $ podwalk lab down                            removes exactly what up created (also after a crash)
  $ podwalk lab trace pod-a pod-c:8080 --mode calico-bgp   simulation vs kernel, packet by packet`,
  );
  const clusterOpt = () =>
    new Option('--cluster <file>', 'cluster YAML (default: the built-in seed cluster)');
  const policyOpt = () =>
    new Option('--policy <file>', 'a NetworkPolicy YAML file (repeatable); enforced in the calico-* modes')
      .argParser((v: string, prev: string[] = []) => [...prev, v])
      .default([]);
  const modeOpt = () =>
    new Option('--mode <mode>', "CNI mode (default: the cluster file's)").argParser(d.parseMode);
  const fromOpt = () =>
    new Option(
      '--from <DIR|FILE.tar.gz>',
      'the cluster of `podwalk collect` dumps (its lab is pw-<dump set name>-…)',
    ).argParser(named('--from'));
  /** an option that takes every lab on the machine instead of one cluster's (lab status --all, lab down --orphaned) */
  const everyLabOpt = (flags: string, description: string) =>
    new Option(flags, description).conflicts(['cluster', 'from']);
  /** the cluster of the lab a command names: --from's dumps imported, or --cluster (or the seed) */
  const labCluster = (o: { cluster?: string; from?: string }): Cluster => {
    if (o.from !== undefined && o.cluster !== undefined)
      throw new LabError('--from and --cluster both name a cluster: give one');
    return o.from !== undefined ? d.importFrom(o.from) : buildCluster(d.loadSpec(o.cluster));
  };

  lab
    .command('up')
    .description(
      'build the cluster in network namespaces: links, addresses, routes, neighbours, FDB, sysctls, iptables, listeners',
    )
    .addOption(clusterOpt())
    .addOption(modeOpt())
    .addOption(policyOpt())
    .addOption(fromOpt())
    .option('--dry-run', 'print the commands instead of running them (no root needed)')
    .action(
      async (o: { cluster?: string; mode?: CniMode; policy: string[]; dryRun?: boolean; from?: string }) => {
        if (o.from && (o.cluster || o.mode || o.policy.length))
          throw new LabError(
            '--from builds the lab from the dumps: --cluster, --mode and --policy do not apply',
          );
        const c = o.from
          ? d.importFrom(o.from)
          : (() => {
              const spec = d.loadSpec(o.cluster, o.policy);
              return buildCluster(spec, o.mode ?? spec.cni);
            })();
        const spec = c.spec;
        d.warn(c);
        // the cluster file's run: lines, on both sides as lab trace's --run: the model's emulated
        // tools first (a command they refuse is an error at its file:line:col before anything is
        // built), then the real ones in the lab once it is up
        const runs = o.from ? [] : runLines(spec);
        if (runs.length) applyRun(buildCluster(spec, c.mode), runs);
        if (o.dryRun) {
          for (const s of planLab(c).steps)
            d.out(
              s.argv.map((a) => (/[\s"'$]/.test(a) ? `'${a}'` : a)).join(' ') +
                (s.input ? ' <<EOF\n' + s.input + 'EOF' : ''),
            );
          return;
        }
        need();
        const policies = o.policy.map((f) => resolve(f));
        const st = await interruptible(async (signal) => {
          const up = await labUp(c, { detached: true, signal, policies });
          try {
            await runInLab(up, runs, signal);
          } catch (e) {
            labDown(c);
            throw e;
          }
          return up;
        });
        d.out(
          `lab ${spec.name} (${c.mode}) is up: ${Object.keys(st.namespaces).length} network namespaces, ${st.listeners.length} listeners${st.birds?.length ? `, ${st.birds.length} BIRDs (mesh Established)` : ''}`,
        );
        d.out(Object.values(st.namespaces).join(' '));
      },
    );

  lab
    .command('down')
    .description('remove the lab: its namespaces, the processes in them and its state file (idempotent)')
    .addOption(clusterOpt())
    .addOption(fromOpt())
    .addOption(
      everyLabOpt(
        '--orphaned',
        'instead: every lab whose owner was killed (lab status --all lists them), by its state file',
      ),
    )
    .action((o: { cluster?: string; from?: string; orphaned?: boolean }) => {
      need();
      if (o.orphaned) {
        const gone = labDownOrphaned();
        if (!gone.length) d.out('no orphaned lab');
        for (const g of gone)
          d.out(
            `lab ${g.cluster}: removed ${g.removed.length} namespaces${g.removed.length ? ': ' + g.removed.join(' ') : ''}`,
          );
        return;
      }
      const c = labCluster(o);
      const removed = labDown(c);
      d.out(
        removed.length
          ? `removed ${removed.length} namespaces: ${removed.join(' ')}`
          : `no namespaces of the lab of "${c.spec.name}" were left`,
      );
    });

  /**
   * lab status --all: each lab with its state file, and lab-named namespaces without one. Exit 0
   * when there is a lab and each is up or in use with all its namespaces; 1 otherwise (nothing
   * up, or something to remove).
   */
  const statusAll = () => {
    const { labs, unclaimed } = labsHere();
    let clean = labs.length > 0;
    if (!labs.length && !unclaimed.length) d.out('no lab on this machine');
    for (const l of labs) {
      const st = l.state;
      const all = Object.keys(st.namespaces).length;
      const how =
        l.kind === 'orphaned'
          ? `orphaned (owner pid ${st.owner} is gone; ${st.mode}, since ${st.created})`
          : held(l.kind, st);
      const missing = all - l.namespaces.length;
      d.out(
        `lab ${st.cluster}: ${how}, ${l.namespaces.length} of ${all} namespaces` +
          (l.kind === 'orphaned'
            ? ': run podwalk lab down --orphaned'
            : missing
              ? ': run podwalk lab down'
              : ''),
      );
      if (l.kind === 'orphaned' || missing) clean = false;
    }
    if (unclaimed.length) {
      d.out(
        `namespaces named like a lab's that no state file names (a lab killed before it wrote one; lab down --cluster FILE of its cluster removes them): ${unclaimed.join(' ')}`,
      );
      clean = false;
    }
    if (!clean) d.setCode(1);
  };

  lab
    .command('status')
    .description('is the lab up; its namespaces and listeners (--all: every lab on this machine)')
    .addOption(clusterOpt())
    .addOption(fromOpt())
    .addOption(
      everyLabOpt('--all', 'every lab on this machine, by its state file, whatever cluster it is of'),
    )
    .action((o: { cluster?: string; from?: string; all?: boolean }) => {
      if (o.all) return statusAll();
      const c = labCluster(o);
      const spec = c.spec;
      const cond = labCondition(c);
      const head = `lab ${spec.name}: `;
      switch (cond.kind) {
        case 'down':
          d.out(head + 'down');
          return d.setCode(1);
        case 'stray':
          d.out(head + 'namespaces left without a state file: run podwalk lab down');
          for (const n of cond.namespaces) d.out(`  ${n}`);
          return d.setCode(1);
        case 'other':
          d.out(
            head +
              `down; its namespace names ${cond.state.prefix}* are taken by the lab of "${cond.state.cluster}"`,
          );
          return d.setCode(1);
        case 'orphaned':
          d.out(head + `orphaned (owner pid ${cond.state.owner} is gone): run podwalk lab down`);
          d.setCode(1);
          break;
        case 'in-use':
        case 'up':
          d.out(head + held(cond.kind, cond.state));
          break;
      }
      const all = Object.values(cond.state.namespaces);
      for (const n of all) d.out(`  ${n}${cond.namespaces.includes(n) ? '' : '  (missing)'}`);
      for (const l of cond.state.listeners) d.out(`  listener ${l.netns} ${l.proto}/${l.port} pid ${l.pid}`);
      for (const b of cond.state.birds ?? []) d.out(`  bird ${b.netns} pid ${b.pid}: birdc -s ${b.ctl}`);
      if (cond.kind === 'up' && cond.namespaces.length < all.length) {
        d.out(
          `${all.length - cond.namespaces.length} of ${all.length} namespaces are missing: run podwalk lab down`,
        );
        d.setCode(1);
      }
    });

  lab
    .command('exec')
    .description('run a real command in a lab namespace: podwalk lab exec NETNS -- CMD…')
    .argument('<NETNS>', 'pod or node name')
    .argument('<CMD...>', 'the command')
    .addOption(clusterOpt())
    .addOption(fromOpt())
    .action((netns: string, cmd: string[], o: { cluster?: string; from?: string }) => {
      need();
      const st = runningLab(labCluster(o));
      const r = labExec(st, netns, cmd, undefined, 60_000);
      if (r.stdout) d.out(r.stdout.replace(/\n$/, ''));
      if (r.stderr) d.err(r.stderr.replace(/\n$/, ''));
      d.setCode(r.code);
    });

  lab
    .command('trace')
    .description(
      'the same flow in the simulation and on the real kernel, compared interface by interface (builds a fresh lab for it)',
    )
    .argument('<FROM>', 'source: pod, node or IP')
    .argument('<TO[:PORT]>', 'destination, with an optional port (default 8080)')
    .addOption(new Option('--proto <proto>', 'protocol').choices(['tcp', 'udp', 'icmp']).default('tcp'))
    .addOption(
      new Option('--size <bytes>', 'UDP/ICMP: IP total length; TCP: bytes of request data').argParser(
        d.parseIntArg(28, 65535),
      ),
    )
    .option('--df', "set Don't Fragment (UDP/ICMP)")
    .addOption(clusterOpt())
    .addOption(modeOpt())
    .addOption(policyOpt())
    .option(
      '--run <NETNS: CMD>',
      'before the flow, run a command on both sides: the emulated tool in the model, the real one in the lab (repeatable, in order), e.g. "node1: ip route del 10.244.1.0/24"',
      (v: string, prev: string[] = []) => [...prev, v],
      [],
    )
    .option('--all', 'print every interface, also those that agree')
    .action(
      async (
        from: string,
        target: string,
        o: {
          proto: Proto;
          size?: number;
          df?: boolean;
          cluster?: string;
          mode?: CniMode;
          policy: string[];
          run: string[];
          all?: boolean;
        },
      ) => {
        need();
        const spec = d.loadSpec(o.cluster, o.policy);
        const mode = o.mode ?? spec.cni;
        const { to, port } = d.parseTarget(target);
        const built = buildCluster(spec, mode);
        d.warn(built);
        if (labCondition(built).kind === 'up')
          throw new LabError(
            `a lab for "${spec.name}" is up: lab trace builds its own fresh one; run podwalk lab down first`,
          );
        // the model first: a command the emulation refuses is a usage error before any lab is built
        // (the cluster file's run: lines first, then --run's)
        const sim = buildCluster(spec, mode);
        const runs = runLines(spec, o.run);
        applyRun(sim, runs);
        const r = await interruptible(async (signal) => {
          const st = await labUp(built, { signal });
          try {
            await runInLab(st, runs, signal);
            return await labTrace(
              st,
              sim,
              { from, to, proto: o.proto, port, size: o.size, df: o.df },
              { signal },
            );
          } finally {
            labDown(built);
          }
        });
        const st2 = d.style;
        d.out(st2.bold(flowLine(r.sim.request.flow)) + `  [${mode}]`);
        d.out(
          `real client: exit ${r.client.code}${r.client.out ? `: ${r.client.out.split('\n').slice(-1)[0]}` : ''}`,
        );
        for (const diff of r.diffs) {
          if (diff.first === -1 && !o.all) continue;
          const head = `${diff.netns}/${diff.dev}: ${diff.first === -1 ? st2.ok(`agree (${diff.sim.length} packets)`) : st2.bad(`DIFFER from packet ${diff.first + 1} (simulated ${diff.sim.length}, real ${diff.real.length})`)}`;
          d.out(head);
          const n = Math.max(diff.sim.length, diff.real.length);
          for (let i = 0; i < n; i++) {
            const same = diff.sim[i] === diff.real[i];
            if (same) d.out(`    ${i + 1}. ${diff.sim[i]}`);
            else {
              d.out(st2.bad(`  ! ${i + 1}. sim:  ${diff.sim[i] ?? '(nothing)'}`));
              d.out(st2.bad(`  ! ${i + 1}. real: ${diff.real[i] ?? '(nothing)'}`));
            }
          }
        }
        const bad = r.diffs.filter((x) => x.first !== -1).length;
        d.out(
          bad
            ? st2.bad(`${bad} of ${r.diffs.length} interfaces differ`)
            : st2.ok(`simulation and kernel agree on all ${r.diffs.length} interfaces`),
        );
        d.setCode(r.agree ? 0 : 1);
      },
    );
  lab
    .command('collect')
    .description(
      'run the collector on every node (and router) of the running lab: what `podwalk collect` dumps on a real node, for --from',
    )
    .requiredOption('--out <dir>', 'write DIR/NODE/… for each node')
    .addOption(clusterOpt())
    .addOption(fromOpt())
    .addHelpText(
      'after',
      `
Examples:
  $ sudo podwalk lab up && sudo podwalk lab collect --out /tmp/seed-dumps
  $ podwalk trace pod-a pod-c:8080 --from /tmp/seed-dumps      the lab's kernel state, walked`,
    )
    .action(async (o: { out: string; cluster?: string; from?: string }) => {
      need();
      const c = labCluster(o);
      const name = c.spec.name;
      const st = runningLab(c);
      const roles =
        st.roles ??
        Object.fromEntries(
          [...buildCluster(c.spec, st.mode as CniMode).world.netns.values()].map((ns) => [ns.name, ns.role]),
        );
      const nodes = await labCollect(st, roles, o.out);
      d.out(`collected ${nodes.length} nodes of lab ${name} into ${o.out}: ${nodes.join(' ')}`);
    });

  lab
    .command('diff')
    .description(
      "compare the lab's real state with the model's, table by table: ip route, ip neigh, bridge fdb, ip link, iptables-save",
    )
    .addOption(clusterOpt())
    .addOption(
      policyOpt().default([], "the policies of lab up --policy, which the lab's state file remembers"),
    )
    .addOption(fromOpt())
    .option('--all', 'print the tables that agree too')
    .action(async (o: { cluster?: string; policy: string[]; all?: boolean; from?: string }) => {
      need();
      const st = runningLab(labCluster(o));
      // the policies lab up enforced, unless --policy names others
      const policies = o.policy.length ? o.policy : (st.policies ?? []);
      const model = o.from
        ? d.importFrom(o.from)
        : prepareCluster(d.loadSpec(o.cluster, policies), st.mode as CniMode);
      const diffs = await stateDiff(st, model);
      const st2 = d.style;
      for (const t of diffs) {
        if (t.equal && !o.all) continue;
        d.out(
          t.equal ? st2.ok(`${t.netns}: ${t.command}: agree`) : st2.bad(`${t.netns}: ${t.command}: DIFFER`),
        );
        if (t.equal) continue;
        const a = t.sim.split('\n');
        const b = t.real.split('\n');
        for (const l of a) if (!b.includes(l)) d.out(st2.bad(`  - model: ${l}`));
        for (const l of b) if (!a.includes(l)) d.out(st2.bad(`  + lab:   ${l}`));
      }
      const bad = diffs.filter((t) => !t.equal).length;
      d.out(
        bad ? st2.bad(`${bad} of ${diffs.length} tables differ`) : st2.ok(`all ${diffs.length} tables agree`),
      );
      d.setCode(bad ? 1 : 0);
    });

  lab
    .command('scenario')
    .description(
      'run one seeded scenario of the differential suite (what a failing test prints to replay it)',
    )
    .argument('<SEED>', 'the scenario seed', d.parseIntArg(0, 2 ** 31 - 1))
    .option(
      '--imported',
      'also collect the lab, import it (--from) and judge that World against the same real run',
    )
    .action(async (seed: number, o: { imported?: boolean }) => {
      need();
      const r = await interruptible((signal) => runScenario(seed, { imported: o.imported, signal }));
      const st2 = d.style;
      d.out(st2.bold(r.scenario.title));
      d.out(r.fault ? `fault: ${r.fault}` : 'no fault');
      d.out(
        `kernel: ${r.realOk ? 'answered' : 'not answered'} (client: ${r.trace.client.out.split('\n').slice(-1)[0]})`,
      );
      const models = [
        { name: 'simulation', ok: r.simOk, trace: r.trace, tables: r.tables },
        ...(r.imported ? [{ name: 'imported World', ...r.imported, ok: r.imported.simOk }] : []),
      ];
      for (const m of models) {
        d.out(`${m.name}: ${m.ok ? 'answered' : 'not answered'}`);
        for (const diff of m.trace.diffs) {
          if (diff.first === -1) continue;
          d.out(st2.bad(`  ${diff.netns}/${diff.dev} differs from packet ${diff.first + 1}:`));
          const n = Math.max(diff.sim.length, diff.real.length);
          for (let i = 0; i < n; i++)
            d.out(
              `    ${diff.sim[i] === diff.real[i] ? ' ' : '!'} sim:  ${diff.sim[i] ?? '(nothing)'}\n    ${diff.sim[i] === diff.real[i] ? ' ' : '!'} real: ${diff.real[i] ?? '(nothing)'}`,
            );
        }
        for (const t of m.tables.filter((x) => !x.equal))
          d.out(
            st2.bad(`  ${t.netns}: \`${t.command}\` differs:\n--- model\n${t.sim}\n--- kernel\n${t.real}`),
          );
      }
      d.out(r.agree ? st2.ok('agree') : st2.bad('DIFFER'));
      d.setCode(r.agree ? 0 : 1);
    });
  return lab;
}
