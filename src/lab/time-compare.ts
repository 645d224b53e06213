/**
 * What the real ping, curl, ss, ip and nstat print and what the emulated ones print must agree
 * on, after removing only what depends on wall-clock timing or the kernel's random choices:
 * RTTs and elapsed times (`time=0.241 ms`, `time 2029ms`, the rtt line, `after 3074 ms`,
 * `after 4001 milliseconds`), the PMTU cache's countdown (`expires 596sec`), ephemeral ports,
 * and the order of ss's socket list (a hash table). nstat is compared on the counters the model
 * keeps (a counter it does not keep is an error in the emulation, never a 0).
 */
import { NSTAT_COUNTERS } from '../tools/nstat.ts';
import { seedCluster } from '../cluster/seed.ts';
import { buildCluster } from '../cni/build.ts';
import { runCommand } from '../tools/index.ts';
import type { ToolResult } from '../tools/types.ts';
import { runUntil } from '../trace/exchange.ts';
import type { TimeRecord, TimeScenario, TimeStep } from './time-scenarios.ts';

/** the lab's cluster name for the over-time scenarios (MACs and ports derive from it) */
export const TIME_CLUSTER = 'time';

const kept = (name: string) =>
  /^IcmpMsg(In|Out)Type\d+$/.test(name) || NSTAT_COUNTERS.some((n) => n === name);

/** an nstat command reduced to the counters the model keeps; undefined for any other command */
export function modelNstat(cmd: string): string | undefined {
  const words = cmd.trim().split(/\s+/);
  if (words[0] !== 'nstat') return undefined;
  return words.filter((w, i) => i === 0 || w.startsWith('-') || kept(w)).join(' ');
}

export function normaliseTimeOutput(cmd: string, text: string, counters?: readonly string[]): string {
  const tool = cmd.trim().split(/\s+/)[0];
  let s = text;
  if (tool === 'ping')
    s = s
      .replace(/time=\d+(\.\d+)? ms/g, 'time=<t> ms')
      .replace(/, time \d+ms/g, ', time <t>ms')
      .replace(/rtt min\/avg\/max\/mdev = [\d./]+ ms/g, 'rtt min/avg/max/mdev = <t> ms');
  if (tool === 'curl')
    s = s
      .replace(/after \d+ ms/g, 'after <t> ms')
      .replace(/after \d+ milliseconds/g, 'after <t> milliseconds');
  if (tool === 'ip') {
    // the lab's namespace prefix in link-netns names
    s = s.replace(/expires \d+sec/g, 'expires <t>sec').replace(/\bpw-[a-z0-9-]+?-(?=[a-z])/g, '');
    // neighbour dumps come in hash order
    if (/^ip( -\S+)* neigh/.test(cmd.trim()))
      s = s
        .split('\n')
        .filter((l) => l !== '')
        .sort()
        .map((l) => l + '\n')
        .join('');
  }
  if (tool === 'ss') {
    const lines = s.split('\n').filter((l) => l !== '');
    const head = lines[0]?.startsWith('State') ? [lines.shift()!] : [];
    // ephemeral ports, and the column widths they make (strip the padding ss derives from them)
    const body = lines.map((l) =>
      l.replace(/:(3[2-9]\d{3}|[4-5]\d{4}|60\d{3})\b/g, ':<port>').replace(/\s+/g, ' '),
    );
    s = [...head.map((h) => h.replace(/\s+/g, ' ')), ...body.sort()].join('\n') + '\n';
  }
  if (tool === 'nstat' && counters)
    s = s
      .split('\n')
      .filter((l) => l === '' || l.startsWith('#') || kept(l.split(/\s+/)[0]))
      .join('\n');
  return s;
}

export interface TimeMismatch {
  /** "pod-a$ ping -c 3 10.244.1.5" (or "… (after)") */
  where: string;
  what: 'stdout' | 'stderr' | 'exit status' | 'setup';
  sim: string;
  real: string;
}

/**
 * The scenario in the model, command for command, each started when it started on the real
 * kernel (the clock runs to that moment first), and every difference from the recording after
 * normalisation. Empty when the emulation agrees with the kernel.
 */
export function compareTimeRecord(s: TimeScenario, rec: TimeRecord, cluster = TIME_CLUSTER): TimeMismatch[] {
  const out: TimeMismatch[] = [];
  const c = buildCluster({ ...seedCluster(), name: cluster }, 'flannel-vxlan');
  for (const f of s.setup) {
    const r = runCommand(c, f.netns, f.cmd);
    if (r.code !== 0) out.push({ where: `${f.netns}$ ${f.cmd}`, what: 'setup', sim: r.stderr, real: '' });
  }
  // the kernel's own draw of reachable_time (when the recording has it): a neighbour entry goes
  // stale when the kernel's did, not at the mean
  for (const [netns, devs] of Object.entries(rec.reachable?.before ?? {}))
    for (const [dev, ms] of Object.entries(devs)) c.world.ns(netns).own('neighReachable').set(dev, ms);
  const t0 = c.world.now;
  const check = (
    where: string,
    cmd: string,
    sim: ToolResult,
    real: { stdout: string; stderr: string; code: number },
    after: boolean,
  ) => {
    const a = normaliseTimeOutput(cmd, sim.stdout);
    const b = normaliseTimeOutput(cmd, real.stdout, after ? NSTAT_COUNTERS : undefined);
    if (a !== b) out.push({ where, what: 'stdout', sim: a, real: b });
    if (!after) {
      const e1 = normaliseTimeOutput(cmd, sim.stderr);
      const e2 = normaliseTimeOutput(cmd, real.stderr);
      if (e1 !== e2) out.push({ where, what: 'stderr', sim: e1, real: e2 });
    }
    if (sim.code !== real.code)
      out.push({ where, what: 'exit status', sim: String(sim.code), real: String(real.code) });
  };
  // a command a scenario runs more than once is paired with the recording's run of the same rank
  const nth = <T extends TimeStep>(list: readonly T[], st: TimeStep, rank: Map<string, number>) => {
    const key = `${st.netns}\0${st.cmd}`;
    const n = rank.get(key) ?? 0;
    rank.set(key, n + 1);
    return list.filter((x) => x.netns === st.netns && x.cmd === st.cmd)[n];
  };
  const stepRank = new Map<string, number>();
  for (const st of s.steps) {
    const real = nth(rec.steps, st, stepRank);
    const where = `${st.netns}$ ${st.cmd}`;
    if (!real) {
      out.push({ where, what: 'stdout', sim: '', real: '(not recorded: re-record the scenario)' });
      continue;
    }
    runUntil(c, Math.max(c.world.now, t0 + real.startMs * 1000));
    check(where, st.cmd, runCommand(c, st.netns, modelNstat(st.cmd) ?? st.cmd), real, false);
  }
  const last = rec.steps[rec.steps.length - 1];
  if (last) runUntil(c, Math.max(c.world.now, t0 + last.endMs * 1000));
  const afterRank = new Map<string, number>();
  for (const st of s.after) {
    const real = nth(rec.after, st, afterRank);
    const where = `${st.netns}$ ${st.cmd} (after)`;
    if (!real) {
      out.push({ where, what: 'stdout', sim: '', real: '(not recorded: re-record the scenario)' });
      continue;
    }
    // a loaded machine runs the state commands seconds after the last step: the timers ran on
    if (real.startMs !== undefined) runUntil(c, Math.max(c.world.now, t0 + real.startMs * 1000));
    check(where, st.cmd, runCommand(c, st.netns, modelNstat(st.cmd) ?? st.cmd), real, true);
  }
  return out;
}

/** the mismatches as a report: where, then the model's and the kernel's text */
export function mismatchReport(ms: readonly TimeMismatch[]): string {
  return ms
    .map((m) => `${m.where}: ${m.what} differs\n--- podwalk\n${m.sim}\n--- kernel\n${m.real}`)
    .join('\n');
}
