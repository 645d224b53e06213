/**
 * The differential suite's unit: one seeded scenario, built in the simulation and on the real
 * kernel, the same fault applied as the same command (the real tool in the lab, the emulated one in
 * the model), the same flow walked on both; they must agree on the outcome and on every packet of
 * every interface.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCluster, type Cluster } from '../cni/build.ts';
import { loadDumps } from '../collect/load.ts';
import { importCluster } from '../import/index.ts';
import { labCollect } from './collect.ts';
import { labDown, labExec, LabError, labUp } from './host.ts';
import { labTrace, type LabTraceResult } from './trace.ts';
import { faultOf, generateScenario, type Scenario } from './scenarios.ts';
import type { Walk } from '../trace/walk.ts';
import { stateDiff, type TableDiff } from './diff.ts';
import { NSTAT_COUNTERS } from '../tools/nstat.ts';
import { runCommand } from '../tools/index.ts';

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
  agree: boolean;
}

/** delivered, and answered with what the flow wanted (not an ICMP error or RST) */
export function simOutcome(w: Walk): boolean {
  if (w.request.disposition.kind !== 'delivered' || !w.reply) return false;
  const role = w.reply.flow.role.kind;
  return w.reply.disposition.kind === 'delivered' && role !== 'rst' && role !== 'icmp-error';
}

/**
 * `imported`: the model walked is not the simulated cluster but the World imported from the lab
 * itself (lab collect right after lab up, then --from), with the same fault applied to it.
 * `signal` aborts it (a Ctrl-C): the lab is removed and LabInterrupted thrown.
 */
export async function runScenario(
  seed: number,
  opts: { imported?: boolean; signal?: AbortSignal } = {},
): Promise<ScenarioResult> {
  const s = generateScenario(seed);
  const base = buildCluster(s.spec, s.mode);
  let sim: Cluster = buildCluster(s.spec, s.mode);
  const fault = faultOf(s, sim);
  const applyFault = (c: Cluster) => {
    if (!fault) return;
    const r = runCommand(c, fault.netns, fault.command);
    if (r.code !== 0)
      throw new LabError(
        `${fault.netns}: \`${fault.command}\` failed in the model: ${(r.stderr || r.stdout).trim()}`,
      );
  };
  applyFault(sim);
  labDown(base);
  const state = await labUp(base, { signal: opts.signal });
  try {
    if (opts.imported) {
      const dir = mkdtempSync(join(tmpdir(), 'podwalk-collect-'));
      try {
        labCollect(state, state.roles!, dir);
        sim = importCluster(loadDumps(dir).files, { name: s.spec.name }).cluster;
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      applyFault(sim);
    }
    if (fault) {
      const r = labExec(state, fault.netns, ['sh', '-c', fault.command]);
      if (r.code !== 0)
        throw new LabError(`${fault.netns}: \`${fault.command}\` failed in the lab: ${r.stderr.trim()}`);
    }
    const trace = await labTrace(state, sim, s.flow, opts);
    const simOk = simOutcome(trace.sim);
    const realOk = trace.client.code === 0;
    // counters count every copy the kernel resent, and a walk sends once (no time passes in it)
    const tables = await stateDiff(state, sim, [
      'ip route',
      'ip neigh',
      'bridge fdb show',
      ...(trace.retransmitted ? [] : [NSTAT_COMMAND]),
    ]);
    return {
      scenario: s,
      replay: `npx podwalk lab scenario ${seed}${opts.imported ? ' --imported' : ''}`,
      fault: fault ? `${fault.netns}: ${fault.command}` : undefined,
      simOk,
      realOk,
      trace,
      tables,
      agree: trace.agree && simOk === realOk && tables.every((t) => t.equal),
    };
  } finally {
    labDown(base);
  }
}
