/**
 * Runs one over-time scenario on the real kernel: the lab of the built-in cluster (flannel-vxlan,
 * prefix pw-time-), the fault commands, the real ping/curl/ss commands one after another (their
 * output, exit status and when each started and ended), the state commands afterwards, with
 * tcpdump on pod-a's and node1's eth0 the whole time. Used by the golden recorder
 * (scripts/record-time-goldens.ts) and the live comparison (test/time-lab.test.ts). Needs root.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seedCluster } from '../cluster/seed.ts';
import { buildCluster } from '../cni/build.ts';
import { labDown, labExec, labUp, promptly, run, type LabState } from './host.ts';
import type { TimeRecord, TimeScenario } from './time-scenarios.ts';
import { TIME_CLUSTER } from './time-compare.ts';

function capture(state: LabState, netns: string, dev: string, file: string): Promise<ChildProcess> {
  const child = spawn(
    'ip',
    ['netns', 'exec', state.namespaces[netns], 'tcpdump', '-i', dev, '-w', file, '-U', '-n'],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('listening on')) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`tcpdump on ${netns}/${dev} exited ${code}: ${err}`)));
  });
}

/**
 * reachable_time as the kernel drew it for each device of each lab namespace: `ip ntable show
 * name arp_cache` prints a device's parameters as "dev DEV" then "reachable MS" (the default
 * parameters, without "dev", are left out)
 */
export function drawnReachable(state: LabState): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const [netns, real] of Object.entries(state.namespaces)) {
    const r = run(['ip', '-n', real, 'ntable', 'show', 'name', 'arp_cache']);
    if (r.code !== 0) throw new Error(`${netns}: ip ntable show: ${r.stderr.trim()}`);
    let dev: string | undefined;
    for (const line of r.stdout.split('\n')) {
      const d = /^\s+dev (\S+)\s*$/.exec(line);
      if (d) dev = d[1];
      else if (/^inet /.test(line)) dev = undefined;
      const m = /\breachable (\d+)\b/.exec(line);
      if (m && dev) (out[netns] ??= {})[dev] = Number(m[1]);
    }
  }
  return out;
}

/** the machine's uptime in ms (/proc/uptime, 10 ms steps): one clock inside and outside the lab */
function uptimeMs(): number {
  return Math.round(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000);
}

/**
 * A command in a lab namespace, and when it really started: the shell reads /proc/uptime (a
 * builtin read, no process) just before it execs the command, so the time a loaded machine takes
 * to start `ip netns exec` and the shell is not counted as the command's (a model that runs it
 * seconds early sees other neighbour timers fire)
 */
function timed(state: LabState, netns: string, cmd: string, timeoutMs?: number) {
  const r = labExec(
    state,
    netns,
    // (the shell itself under SCHED_FIFO: between its read of the time and the command's start
    // nothing else runs first)
    promptly(['sh', '-c', 'read -r up rest < /proc/uptime; echo "$up" >&2; exec sh -c "$1"', 'sh', cmd]),
    undefined,
    timeoutMs,
  );
  const nl = r.stderr.indexOf('\n');
  const up = Number(r.stderr.slice(0, nl));
  if (nl < 0 || !Number.isFinite(up)) throw new Error(`${netns}: ${cmd}: no start time (${r.stderr.trim()})`);
  return { ...r, stderr: r.stderr.slice(nl + 1), startMs: Math.round(up * 1000) };
}

/** `cluster`: the lab's cluster name (its namespaces are pw-<cluster>-…; MACs derive from it) */
export async function recordTimeScenario(s: TimeScenario, cluster = TIME_CLUSTER): Promise<TimeRecord> {
  const spec = { ...seedCluster(), name: cluster };
  const c = buildCluster(spec, 'flannel-vxlan');
  labDown(c);
  const state = await labUp(c);
  const dir = mkdtempSync(join(tmpdir(), 'podwalk-time-'));
  const caps: { netns: string; dev: string; file: string; child: ChildProcess }[] = [];
  try {
    // the kernel's own start-up traffic (IGMP, ARP of the listeners' start) settles first
    run(['sleep', '1']);
    for (const f of s.setup) {
      const r = labExec(state, f.netns, ['sh', '-c', f.cmd]);
      if (r.code !== 0) throw new Error(`${f.netns}: ${f.cmd}: ${r.stderr}`);
    }
    for (const [netns, dev] of [
      ['pod-a', 'eth0'],
      ['node1', 'eth0'],
    ] as const) {
      const file = join(dir, `${netns}-${dev}.pcap`);
      caps.push({ netns, dev, file, child: await capture(state, netns, dev, file) });
    }
    const before = drawnReachable(state);
    const t0 = performance.now();
    const up0 = uptimeMs();
    const steps: TimeRecord['steps'] = [];
    for (const st of s.steps) {
      const r = timed(state, st.netns, st.cmd, 200_000);
      steps.push({
        ...st,
        stdout: r.stdout,
        stderr: r.stderr,
        code: r.code,
        startMs: r.startMs - up0,
        endMs: Math.round(performance.now() - t0),
      });
    }
    const after: TimeRecord['after'] = [];
    for (const st of s.after) {
      const r = timed(state, st.netns, st.cmd);
      after.push({ ...st, stdout: r.stdout, stderr: r.stderr, code: r.code, startMs: r.startMs - up0 });
    }
    const reachable = { before, after: drawnReachable(state) };
    await new Promise((r) => setTimeout(r, 300));
    const packets: Record<string, string> = {};
    for (const cp of caps) {
      cp.child.kill('SIGINT');
      await new Promise((r) => cp.child.once('exit', r));
      packets[`${cp.netns}/${cp.dev}`] = run(['tcpdump', '-r', cp.file, '-nn', '-v', '-ttttt']).stdout;
    }
    return {
      scenario: s.name,
      kernel: run(['uname', '-r']).stdout.trim(),
      ping: run(['ping', '-V']).stdout.split('\n')[0],
      curl: run(['curl', '--version']).stdout.split('\n')[0],
      setup: s.setup,
      steps,
      after,
      packets,
      reachable,
    };
  } finally {
    for (const cp of caps) cp.child.kill('SIGKILL');
    labDown(c);
    rmSync(dir, { recursive: true, force: true });
  }
}
