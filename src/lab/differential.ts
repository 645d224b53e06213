/**
 * The differential suite's unit: one seeded scenario, built in the simulation and on the real
 * kernel, the same fault applied as the same command (the real tool in the lab, the emulated one in
 * the model), the same flow walked on both; they must agree on the outcome and on every packet of
 * every interface.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildCluster, type Cluster } from '../cni/build.ts';
import { quiesce } from '../cni/modes.ts';
import { loadDumps } from '../collect/load.ts';
import { importCluster } from '../import/index.ts';
import { labCollect } from './collect.ts';
import { birdsStopped, labChange, labDown, LabError, labQuiesce, labScratch, labUp, pause } from './host.ts';
import { labTrace, type LabTraceResult, type ModelComparison } from './trace.ts';
import { faultOf, generateScenario, type Fault, type Scenario } from './scenarios.ts';
import { endpointDraws, resolveService, type Walk, type WalkRequest } from '../trace/walk.ts';
import { stateDiffs, type TableDiff } from './diff.ts';
import { NSTAT_COUNTERS } from '../tools/nstat.ts';
import { runCommand } from '../tools/index.ts';
import { formatRoute } from '../kernel/fib.ts';

/** every counter the model keeps, the ICMP types it sends included: the kernel must agree on each */
export const NSTAT_COMMAND = `nstat -asz ${NSTAT_COUNTERS.filter((n) => !n.endsWith('*')).join(' ')} ${[
  0, 3, 8, 11,
]
  .map((t) => `IcmpMsgOutType${t}`)
  .join(' ')}`;

export interface ScenarioResult {
  scenario: Scenario;
  /** the command that replays it */
  replay: string;
  fault?: string;
  simOk: boolean;
  realOk: boolean;
  trace: LabTraceResult;
  /** ip route, ip neigh, bridge fdb and the model's nstat counters of every namespace after the exchange */
  tables: TableDiff[];
  /** the simulation agrees with the kernel (and so does the imported World, when there is one) */
  agree: boolean;
  /** `imported`: the World imported from the lab, judged against the same real run */
  imported?: ImportedCheck;
}

export interface ImportedCheck {
  trace: ModelComparison;
  simOk: boolean;
  tables: TableDiff[];
  agree: boolean;
}

/**
 * The lab's half of forcing a Service's endpoint: the cluster the lab is programmed from gets each
 * statistic rule the model's walk pins set to probability 1 (the rule jumping to the endpoint's
 * KUBE-SEP- chain: xt_statistic's (random & 0x7fffffff) < 2^31 always holds) or 0 (the rules
 * before it: never), so the kernel takes the endpoint the model's `endpoint` pins.
 */
export function forceEndpoint(c: Cluster, req: WalkRequest): void {
  if (req.endpoint === undefined) return;
  const t = resolveService(c, req.to, req.port, req.proto);
  if (!t) throw new LabError(`${req.to}: no Service to force an endpoint of`);
  for (const d of endpointDraws(c, t, req.endpoint)) {
    const rule = c.world.ns(d.node).netfilter.chain('nat', d.chain)!.rules[d.index - 1];
    // new matches, not the old ones changed (a rule's parts may be shared between namespaces)
    rule.matches = rule.matches.map((m) =>
      m.kind === 'statistic' ? { ...m, probability: d.hit ? 0x80000000 : 0 } : m,
    );
  }
}

/**
 * kube-proxy's and felix's `MASQUERADE --random-fully` take a random source port (get_random_u16 in
 * nf_nat_l4proto_unique_tuple): no seed makes the kernel's choice the model's. Both sides of every
 * scenario run the rules without the flag, so the kernel keeps the source port where the
 * tuple is free, and the model must do the same: the packets are then comparable byte for byte.
 */
export function keepSourcePorts(c: Cluster): void {
  for (const n of c.nodes)
    for (const chain of c.world.ns(n.name).netfilter.tables.get('nat')?.values() ?? [])
      for (const r of chain.rules)
        if (r.target?.kind === 'MASQUERADE' || r.target?.kind === 'SNAT')
          r.target = { ...r.target, range: { ...r.target.range, randomFully: false } };
}

/** every `proto bird` route of the cluster's nodes: [netns, its `ip route` line] */
function birdRoutes(c: Cluster): [string, string][] {
  return c.nodes.flatMap((n) =>
    c.world
      .ns(n.name)
      .fib.list()
      .filter((r) => r.proto === 'bird')
      .map((r): [string, string] => [n.name, formatRoute(r)]),
  );
}

/**
 * Apply a scenario's fault to the model `sim` (its emulated command), and return how to apply it
 * to a World imported from the lab: the same command, except a BIRD command (calico-bgp's
 * route-del is `birdc disable`): an imported World has no BIRD (import reads the kernels), so it
 * gets the command's effect on them, the routes the command took out of the model's kernels.
 */
export function applyFault(sim: Cluster, fault: Fault | undefined): (imported: Cluster) => void {
  const apply = (c: Cluster, model: string, command = fault?.command, netns = fault?.netns) => {
    if (!command || !netns) return;
    const r = runCommand(c, netns, command);
    if (r.code !== 0)
      throw new LabError(`${netns}: \`${command}\` failed in the ${model}: ${(r.stderr || r.stdout).trim()}`);
  };
  const before = birdRoutes(sim);
  apply(sim, 'model');
  if (!fault?.command.startsWith('birdc ')) return (c) => apply(c, 'imported model');
  // the lab clears what BGP's messages left after a birdc command (labQuiesce): so does the model
  quiesce(sim);
  const withdrawn = before.filter(([netns, r]) => !birdRoutes(sim).some(([n, x]) => n === netns && x === r));
  return (c) => {
    for (const [netns, r] of withdrawn) apply(c, 'imported model', `ip route del ${r}`, netns);
  };
}

/**
 * An imported World's counters from where the lab's baseline is (a Calico lab's BGP sessions
 * counted their own segments before the collection: LabState.nstatBase), as lab diff reads the real ones
 */
function countFromBase(c: Cluster, base: Record<string, Record<string, number>> | undefined): void {
  for (const [netns, counters] of Object.entries(base ?? {})) {
    const mib = c.world.netns.get(netns)?.own('mib');
    if (!mib) continue;
    for (const [k, v] of Object.entries(counters)) {
      const left = (mib.get(k) ?? 0) - v;
      if (left > 0) mib.set(k, left);
      else mib.delete(k);
    }
  }
}

/** delivered, and answered with what the flow wanted (not an ICMP error or RST) */
export function simOutcome(w: Walk): boolean {
  if (w.request.disposition.kind !== 'delivered' || !w.reply) return false;
  const role = w.reply.flow.role.kind;
  return w.reply.disposition.kind === 'delivered' && role !== 'rst' && role !== 'icmp-error';
}

/**
 * `imported`: also collect the lab right after lab up, import it (--from) and judge that World,
 * with the same fault applied, against the same real run: one kernel exchange checks both models.
 * `signal` aborts it (a Ctrl-C): the lab is removed and LabInterrupted thrown.
 */
export async function runScenario(
  seed: number,
  opts: { imported?: boolean; signal?: AbortSignal } = {},
): Promise<ScenarioResult> {
  const s = generateScenario(seed);
  const base = buildCluster(s.spec, s.mode);
  forceEndpoint(base, s.flow);
  const sim: Cluster = buildCluster(s.spec, s.mode);
  // the Services' MASQUERADE --random-fully, felix's in cali-nat-outgoing (a pod's packet to any
  // address outside the pool: an outside host, and another node's address too) and flanneld's in
  // FLANNEL-POSTRTG (a pod's packet out of the Network, the host's into it)
  for (const c of [base, sim]) keepSourcePorts(c);
  const masq =
    !!s.spec.services ||
    s.faultKind === 'nat-outgoing' ||
    s.faultKind === 'ip-masq' ||
    s.faultKind === 'ip-masq-off';
  const fault = faultOf(s, sim);
  const onImported = applyFault(sim, fault);
  const birdFault = !!fault?.command.startsWith('birdc ');
  labDown(base);
  // lab up's own quiesce is undone by the BIRDs running on, and quietBgp below does it again before
  // anything is read: only the collection of a birdc fault's scenario, made while they run, needs it
  const state = await labUp(base, { signal: opts.signal, quiesce: birdFault && !!opts.imported });
  // From the flow to the end of the comparison no BGP message, as in the model's walk: the lab's
  // BIRDs are stopped, and the lab set back to the model's state (lab up's quiesce is not enough:
  // under load, lab up's wait for the mesh, the collection and the fault can take long enough for
  // a KEEPALIVE and its ACK to teach the underlay bridge two nodes' MACs, as CI at load 12–19 saw).
  // A birdc fault needs its BIRD: they stop after it, and before the collection otherwise, so that
  // the imported World is collected from the state the flow starts from
  const quietBgp = async () => {
    birdsStopped(state, true);
    await labQuiesce(state, base, opts.signal);
  };
  try {
    if (state.birds?.length && !birdFault) await quietBgp();
    let imported: Cluster | undefined;
    if (opts.imported) {
      // in the lab's scratch directory, not in /tmp: lab down (or the next run of the scenario)
      // removes it also when this process was killed (a SIGKILL left /tmp/podwalk-collect-*)
      const dir = join(labScratch(state), 'collect');
      mkdirSync(dir);
      try {
        await labCollect(state, state.roles!, dir, opts.signal);
        imported = importCluster(loadDumps(dir).files, { name: s.spec.name }).cluster;
        countFromBase(imported, state.nstatBase);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      onImported(imported);
    }
    if (fault) {
      const r = await labChange(state, fault.netns, fault.command, opts.signal);
      if (r.code !== 0)
        throw new LabError(`${fault.netns}: \`${fault.command}\` failed in the lab: ${r.stderr.trim()}`);
    }
    if (birdFault) {
      // BIRD's NOTIFICATION and the connection's close go over the underlay, and the peer's BIRD
      // withdraws the routes, while they run (the pause quiesce makes); then stopped, the lab back
      // to the model's state once, as for any other scenario
      await pause(300, opts.signal);
      await quietBgp();
    }
    const trace = await labTrace(state, sim, s.flow, {
      signal: opts.signal,
      also: imported ? [imported] : [],
    });
    const realOk = trace.client.code === 0;
    // counters count every copy the kernel resent, and a walk sends once (no time passes in it)
    const commands = [
      'ip route',
      'ip neigh',
      'bridge fdb show',
      ...(trace.retransmitted ? [] : [NSTAT_COMMAND]),
      ...(masq ? ['conntrack -L'] : []),
    ];
    const [tables, itables] = await stateDiffs(state, imported ? [sim, imported] : [sim], commands);
    const simOk = simOutcome(trace.sim);
    const agree = trace.agree && simOk === realOk && tables.every((t) => t.equal);
    let check: ImportedCheck | undefined;
    if (imported) {
      const t = trace.also[0];
      const ok = simOutcome(t.sim);
      check = {
        trace: t,
        simOk: ok,
        tables: itables,
        agree: t.agree && ok === realOk && itables.every((x) => x.equal),
      };
    }
    return {
      scenario: s,
      replay: `npx podwalk lab scenario ${seed}${opts.imported ? ' --imported' : ''}`,
      fault: fault ? `${fault.netns}: ${fault.command}` : undefined,
      simOk,
      realOk,
      trace,
      tables,
      agree: agree && (check?.agree ?? true),
      imported: check,
    };
  } finally {
    birdsStopped(state, false);
    labDown(base);
  }
}
