/**
 * `podwalk lab …`: the real-kernel lab of a cluster (root only).
 */
import { Command, Option } from 'commander';
import type { ClusterSpec, CniMode } from '../cluster/spec.ts';
import { buildCluster, type Cluster } from '../cni/build.ts';
import { labPrefix, planLab } from '../lab/plan.ts';
import {
  existingNamespaces,
  labDown,
  labExec,
  LabError,
  labUnavailable,
  labUp,
  readState,
} from '../lab/host.ts';
import { labTrace } from '../lab/trace.ts';
import { labCollect } from '../lab/collect.ts';
import { runScenario } from '../lab/differential.ts';
import { stateDiff } from '../lab/diff.ts';
import type { Proto } from '../trace/types.ts';
import { flowLine, type Style } from '../render/text.ts';

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
    );
  /** the lab's cluster name: the dump set's, or the cluster file's */
  const labName = (o: { cluster?: string; from?: string }) => {
    if (o.from && o.cluster) throw new LabError('--from and --cluster both name a cluster: give one');
    return o.from ? d.dumpSetName(o.from) : d.loadSpec(o.cluster).name;
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
    .action((o: { cluster?: string; mode?: CniMode; policy: string[]; dryRun?: boolean; from?: string }) => {
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
      if (o.dryRun) {
        for (const s of planLab(c).steps)
          d.out(
            s.argv.map((a) => (/[\s"'$]/.test(a) ? `'${a}'` : a)).join(' ') +
              (s.input ? ' <<EOF\n' + s.input + 'EOF' : ''),
          );
        return;
      }
      need();
      const st = labUp(c, { detached: true });
      d.out(
        `lab ${spec.name} (${c.mode}) is up: ${Object.keys(st.namespaces).length} network namespaces, ${st.listeners.length} listeners`,
      );
      d.out(Object.values(st.namespaces).join(' '));
    });

  lab
    .command('down')
    .description('remove the lab: its namespaces, the processes in them and its state file (idempotent)')
    .addOption(clusterOpt())
    .addOption(fromOpt())
    .action((o: { cluster?: string; from?: string }) => {
      need();
      const name = labName(o);
      const removed = labDown(labPrefix(name));
      d.out(
        removed.length
          ? `removed ${removed.length} namespaces: ${removed.join(' ')}`
          : `no lab namespaces ${labPrefix(name)}* were left`,
      );
    });

  lab
    .command('status')
    .description('is the lab up; its namespaces and listeners')
    .addOption(clusterOpt())
    .addOption(fromOpt())
    .action((o: { cluster?: string; from?: string }) => {
      const spec = { name: labName(o) };
      const prefix = labPrefix(spec.name);
      const st = readState(prefix);
      const live = process.getuid?.() === 0 ? existingNamespaces(prefix) : [];
      if (!st && !live.length) {
        d.out(`lab ${spec.name}: down`);
        d.setCode(1);
        return;
      }
      d.out(
        `lab ${spec.name}: ${st ? `up (${st.mode}, since ${st.created})` : 'namespaces left without a state file: run podwalk lab down'}`,
      );
      for (const n of live) d.out(`  ${n}`);
      for (const l of st?.listeners ?? []) d.out(`  listener ${l.netns} ${l.proto}/${l.port} pid ${l.pid}`);
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
      const spec = { name: labName(o) };
      const st = readState(labPrefix(spec.name));
      if (!st) throw new LabError(`no lab for "${spec.name}" is up: run podwalk lab up first`);
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
          all?: boolean;
        },
      ) => {
        need();
        const spec = d.loadSpec(o.cluster, o.policy);
        const mode = o.mode ?? spec.cni;
        const { to, port } = d.parseTarget(target);
        const prefix = labPrefix(spec.name);
        if (readState(prefix) || existingNamespaces(prefix).length)
          throw new LabError(
            `a lab for "${spec.name}" is up: lab trace builds its own fresh one; run podwalk lab down first`,
          );
        const built = buildCluster(spec, mode);
        d.warn(built);
        const st = labUp(built);
        try {
          const r = await labTrace(st, buildCluster(spec, mode), {
            from,
            to,
            proto: o.proto,
            port,
            size: o.size,
            df: o.df,
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
        } finally {
          labDown(prefix);
        }
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
    .action((o: { out: string; cluster?: string; from?: string }) => {
      need();
      const name = labName(o);
      const st = readState(labPrefix(name));
      if (!st) throw new LabError(`no lab for "${name}" is up: run podwalk lab up first`);
      const roles =
        st.roles ??
        Object.fromEntries(
          [...buildCluster(d.loadSpec(o.cluster), st.mode as CniMode).world.netns.values()].map((ns) => [
            ns.name,
            ns.role,
          ]),
        );
      const nodes = labCollect(st, roles, o.out);
      d.out(`collected ${nodes.length} nodes of lab ${name} into ${o.out}: ${nodes.join(' ')}`);
    });

  lab
    .command('diff')
    .description(
      "compare the lab's real state with the model's, table by table: ip route, ip neigh, bridge fdb, ip link, iptables-save",
    )
    .addOption(clusterOpt())
    .addOption(policyOpt())
    .addOption(fromOpt())
    .option('--all', 'print the tables that agree too')
    .action((o: { cluster?: string; policy: string[]; all?: boolean; from?: string }) => {
      need();
      const name = labName(o);
      const st = readState(labPrefix(name));
      if (!st) throw new LabError(`no lab for "${name}" is up: run podwalk lab up first`);
      const model = o.from
        ? d.importFrom(o.from)
        : buildCluster(d.loadSpec(o.cluster, o.policy), st.mode as CniMode);
      const diffs = stateDiff(st, model);
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
      'walk the World imported from the lab (lab collect, --from) instead of the simulated one',
    )
    .action(async (seed: number, o: { imported?: boolean }) => {
      need();
      const r = await runScenario(seed, { imported: o.imported });
      const st2 = d.style;
      d.out(st2.bold(r.scenario.title));
      d.out(r.fault ? `fault: ${r.fault}` : 'no fault');
      d.out(
        `outcome: simulation ${r.simOk ? 'answered' : 'not answered'}, kernel ${r.realOk ? 'answered' : 'not answered'} (client: ${r.trace.client.out.split('\n').slice(-1)[0]})`,
      );
      for (const diff of r.trace.diffs) {
        if (diff.first === -1) continue;
        d.out(st2.bad(`${diff.netns}/${diff.dev} differs from packet ${diff.first + 1}:`));
        const n = Math.max(diff.sim.length, diff.real.length);
        for (let i = 0; i < n; i++)
          d.out(
            `  ${diff.sim[i] === diff.real[i] ? ' ' : '!'} sim:  ${diff.sim[i] ?? '(nothing)'}\n  ${diff.sim[i] === diff.real[i] ? ' ' : '!'} real: ${diff.real[i] ?? '(nothing)'}`,
          );
      }
      d.out(r.agree ? st2.ok('agree') : st2.bad('DIFFER'));
      d.setCode(r.agree ? 0 : 1);
    });
  return lab;
}
