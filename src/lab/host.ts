/**
 * The real-kernel lab on this machine: applies a lab plan with iproute2 and iptables-restore,
 * starts podwalk's own listeners in the pods, records what it created in a state file, and
 * removes exactly that again — also after a crash, by the namespace prefix.
 * Needs root and network namespaces.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import type { Cluster } from '../cni/build.ts';
import { planLab, type LabPlan, type PlanStep } from './plan.ts';

export class LabError extends Error {}

export interface LabState {
  cluster: string;
  mode: string;
  prefix: string;
  /** model netns → lab netns */
  namespaces: Record<string, string>;
  listeners: { netns: string; proto: string; port: number; pid: number }[];
  created: string;
  /** model netns → its role (node, pod, segment, router…), for lab collect */
  roles?: Record<string, string>;
}

export const STATE_DIR = '/run/podwalk';

export function statePath(prefix: string): string {
  return `${STATE_DIR}/${prefix.replace(/-$/, '')}.json`;
}

/**
 * One lab per prefix at a time. A process that brings a lab up for its own use (tests, scripts)
 * holds the lock file until its labDown; another process wanting the same prefix waits for it.
 * The CLI's `lab up` leaves the lab detached (pid 0): any later `lab down` may remove it.
 */
function lockPath(prefix: string): string {
  return `${STATE_DIR}/${prefix.replace(/-$/, '')}.lock`;
}

function alive(pid: number): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function lockOwner(prefix: string): number | undefined {
  try {
    return Number(readFileSync(lockPath(prefix), 'utf8').trim());
  } catch {
    return undefined;
  }
}

const sleepSync = (s: number) => spawnSync('sleep', [String(s)]);

/** wait until no other live process holds the prefix, then take it (pid 0: detached) */
function acquire(prefix: string, pid: number, waitMs = 15 * 60_000): void {
  mkdirSync(STATE_DIR, { recursive: true });
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const fd = openSync(lockPath(prefix), 'wx');
      writeSync(fd, String(pid));
      closeSync(fd);
      return;
    } catch {
      const owner = lockOwner(prefix);
      if (owner === undefined || owner === process.pid || !alive(owner)) {
        rmSync(lockPath(prefix), { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new LabError(`the lab ${prefix}* is held by process ${owner}`);
      sleepSync(0.2);
    }
  }
}

function release(prefix: string): void {
  const owner = lockOwner(prefix);
  if (owner === undefined || owner === 0 || owner === process.pid || !alive(owner))
    rmSync(lockPath(prefix), { force: true });
}

/** while another live process uses this prefix, wait for it to finish */
function waitForOthers(prefix: string): void {
  for (;;) {
    const owner = lockOwner(prefix);
    if (owner === undefined || owner === 0 || owner === process.pid || !alive(owner)) return;
    sleepSync(0.2);
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

export function run(argv: readonly string[], input?: string, timeoutMs = 20_000): RunResult {
  const r = spawnSync(argv[0], argv.slice(1), { input, encoding: 'utf8', timeout: timeoutMs });
  if (r.error) return { stdout: '', stderr: String(r.error.message), code: 127 };
  return { stdout: r.stdout ?? '', stderr: r.stderr ?? '', code: r.status ?? 1 };
}

/** why the lab cannot run here, or undefined when it can */
export function labUnavailable(): string | undefined {
  if (process.platform !== 'linux')
    return `the lab needs Linux network namespaces (this is ${process.platform})`;
  if (typeof process.getuid === 'function' && process.getuid() !== 0)
    return 'the lab needs root (network namespaces, veth, bridges)';
  const ip = run(['ip', '-V']);
  if (ip.code !== 0) return 'the lab needs iproute2 (`ip`): apt-get install iproute2';
  const probe = `pw-probe-${process.pid}`;
  const add = run(['ip', 'netns', 'add', probe]);
  if (add.code !== 0) return `cannot create network namespaces here: ${add.stderr.trim()}`;
  run(['ip', 'netns', 'del', probe]);
  for (const tool of ['iptables-restore', 'sysctl', 'bridge'])
    if (run(['sh', '-c', `command -v ${tool}`]).code !== 0)
      return `the lab needs ${tool}: apt-get install iptables procps iproute2`;
  return undefined;
}

/** lab namespaces of this prefix that exist now */
export function existingNamespaces(prefix: string): string[] {
  const r = run(['ip', 'netns', 'list']);
  return r.stdout
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => n.startsWith(prefix));
}

export function readState(prefix: string): LabState | undefined {
  const p = statePath(prefix);
  if (!existsSync(p)) return undefined;
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

/**
 * The lab's listeners, all in one process of our own (no name resolution): it enters each pod's
 * namespace in turn with setns(2) and opens the socket there (a socket stays in the namespace it
 * was made in), then serves them all. TCP answers one HTTP response and waits for the close; UDP
 * echoes. One Python start instead of one per listener (each costs 0.4 s of CPU on a small
 * machine). It ends in the first namespace, so that `ip netns pids` of it finds the process.
 */
const LISTENER = `
import ctypes, os, selectors, socket, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)
def enter(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    finally:
        os.close(fd)
def serve(c):
    try:
        d = c.recv(65536)
        if d:
            # longer than the longest delayed ACK (200 ms): the request's ACK always leaves on its own
            time.sleep(0.25)
            c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nok\\n")
        while c.recv(65536):
            pass
    except OSError:
        pass
    finally:
        c.close()
sel = selectors.DefaultSelector()
specs = [a.rsplit(",", 2) for a in sys.argv[1:]]
for path, proto, port in specs:
    try:
        enter(path)
        if proto == "tcp":
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", int(port))); s.listen(64)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(port)))
    except OSError as e:
        print("error", path, proto, port, e, flush=True); sys.exit(1)
    sel.register(s, selectors.EVENT_READ, proto)
enter(specs[0][0])
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        if key.data == "tcp":
            c, _ = key.fileobj.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()
        else:
            d, a = key.fileobj.recvfrom(65536)
            key.fileobj.sendto(d, a)
`;

/** start the listeners (lab namespace, proto, port) and wait until every socket is open; the pid */
function startListeners(prefix: string, ls: { ns: string; proto: string; port: number }[]): number {
  const out = `${STATE_DIR}/${prefix.replace(/-$/, '')}.listeners`;
  rmSync(out, { force: true });
  const fd = openSync(out, 'w');
  const child = spawn(
    'python3',
    ['-u', '-c', LISTENER, ...ls.map((l) => `/run/netns/${l.ns},${l.proto},${l.port}`)],
    { stdio: ['ignore', fd, fd], detached: true },
  );
  closeSync(fd);
  child.unref();
  if (!child.pid) throw new LabError('could not start the listeners (python3)');
  // python3 takes seconds to start on a loaded machine
  for (let i = 0; i < 600; i++) {
    const said = readFileSync(out, 'utf8');
    if (said.includes('ready')) {
      rmSync(out, { force: true });
      return child.pid;
    }
    // (an exited child stays a zombie while this loop runs: its word is what counts)
    if (said.includes('error')) break;
    sleepSync(0.05);
  }
  const said = readFileSync(out, 'utf8').trim();
  rmSync(out, { force: true });
  try {
    process.kill(child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
  throw new LabError(
    `the lab's listeners did not come up: ${said.split('\n').pop() || 'python3 printed nothing in 30 s'}`,
  );
}

/** Remove every namespace of the prefix (state file or not) and the processes in them. Idempotent. */
export function labDown(prefix: string): string[] {
  waitForOthers(prefix);
  const state = readState(prefix);
  const names = new Set([...Object.values(state?.namespaces ?? {}), ...existingNamespaces(prefix)]);
  for (const n of names) {
    // processes we started (listeners, captures) live in the namespace: end them first
    const pids = run(['ip', 'netns', 'pids', n]).stdout.split('\n').filter(Boolean);
    for (const pid of pids) run(['kill', '-9', pid]);
  }
  const removed: string[] = [];
  const existing = new Set(existingNamespaces(prefix));
  for (const n of names) {
    if (!existing.has(n)) continue;
    const r = run(['ip', 'netns', 'del', n]);
    if (r.code === 0) removed.push(n);
  }
  rmSync(statePath(prefix), { force: true });
  release(prefix);
  return removed;
}

export interface UpOptions {
  /** start listeners in pods (default true) */
  listeners?: boolean;
  /** the lab outlives this process (the CLI's `lab up`); otherwise this process holds it until labDown */
  detached?: boolean;
}

interface Batch {
  argv: string[];
  input?: string;
  /** the plan's steps it runs, in order */
  steps: PlanStep[];
}

/**
 * The plan's steps as few processes as give the same result: a run of `ip -n NS …` (or
 * `bridge -n NS …`) commands in one namespace is one `ip -n NS -batch -`, a run of sysctl writes
 * in one namespace one `sysctl -w` with them all. Each `ip netns exec` costs a mount namespace and
 * a remount of /sys; a 20-namespace lab is 436 steps and 137 processes this way.
 */
export function batches(steps: readonly PlanStep[]): Batch[] {
  const out: Batch[] = [];
  const key = (s: PlanStep): string | undefined => {
    const a = s.argv;
    if (s.input !== undefined) return undefined;
    if ((a[0] === 'ip' || a[0] === 'bridge') && a[1] === '-n') return `${a[0]} ${a[2]}`;
    if (
      a[0] === 'ip' &&
      a[1] === 'netns' &&
      a[2] === 'exec' &&
      a[4] === 'sysctl' &&
      a[5] === '-q' &&
      a[6] === '-w'
    )
      return `sysctl ${a[3]}`;
    return undefined;
  };
  let run: { key: string; steps: PlanStep[] } | undefined;
  const flush = () => {
    if (!run) return;
    const first = run.steps[0].argv;
    if (run.steps.length === 1) out.push({ argv: first, steps: run.steps });
    else if (run.key.startsWith('sysctl '))
      out.push({ argv: [...first.slice(0, 7), ...run.steps.map((s) => s.argv[7])], steps: run.steps });
    else
      out.push({
        argv: [first[0], '-n', first[2], '-batch', '-'],
        input: run.steps.map((s) => s.argv.slice(3).join(' ') + '\n').join(''),
        steps: run.steps,
      });
    run = undefined;
  };
  for (const s of steps) {
    const k = key(s);
    if (k && run?.key === k) {
      run.steps.push(s);
      continue;
    }
    flush();
    if (k) run = { key: k, steps: [s] };
    else out.push({ argv: s.argv, input: s.input, steps: [s] });
  }
  flush();
  return out;
}

/** Build the lab; on any failure, remove what was created and throw: never half-applied. */
export function labUp(c: Cluster, opts: UpOptions = {}): LabState {
  const why = labUnavailable();
  if (why) throw new LabError(why);
  const plan: LabPlan = planLab(c);
  acquire(plan.prefix, opts.detached ? 0 : process.pid);
  if (existingNamespaces(plan.prefix).length) {
    release(plan.prefix);
    throw new LabError(
      `a lab for "${c.spec.name}" is already up (namespaces ${plan.prefix}*): run podwalk lab down first`,
    );
  }
  mkdirSync(STATE_DIR, { recursive: true });
  const state: LabState = {
    cluster: c.spec.name,
    mode: c.mode,
    prefix: plan.prefix,
    namespaces: Object.fromEntries(plan.names),
    listeners: [],
    created: new Date().toISOString(),
    roles: Object.fromEntries([...c.world.netns.values()].map((ns) => [ns.name, ns.role])),
  };
  // the state file first, so that a crash half-way still lets `lab down` find everything
  writeFileSync(statePath(plan.prefix), JSON.stringify(state, null, 2));
  const onSignal = () => {
    labDown(plan.prefix);
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    for (const b of batches(plan.steps)) {
      const r = run(b.argv, b.input);
      if (r.code === 0) continue;
      // a batch stops at its first failing line and names it ("Command failed -:N")
      const line = Number(/Command failed -:(\d+)/.exec(r.stderr)?.[1] ?? 0);
      const s = b.steps[Math.max(0, Math.min(b.steps.length - 1, line - 1))];
      const why = r.stderr.replace(/\n?Command failed -:\d+\s*$/, '').trim();
      throw new LabError(`${s.netns}: \`${s.argv.join(' ')}\` failed: ${why || `exit ${r.code}`}`);
    }
    if (opts.listeners !== false) {
      if (plan.listeners.length) {
        const pid = startListeners(
          plan.prefix,
          plan.listeners.map((l) => ({ ns: plan.names.get(l.netns)!, proto: l.proto, port: l.port })),
        );
        for (const l of plan.listeners)
          state.listeners.push({ netns: l.netns, proto: l.proto, port: l.port, pid });
      }
    }
    writeFileSync(statePath(plan.prefix), JSON.stringify(state, null, 2));
    return state;
  } catch (e) {
    labDown(plan.prefix);
    throw e;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

/** run a real command in a lab namespace */
export function labExec(
  state: Pick<LabState, 'namespaces'>,
  netns: string,
  argv: readonly string[],
  input?: string,
  timeoutMs?: number,
): RunResult {
  const ns = state.namespaces[netns];
  if (!ns) throw new LabError(`no netns "${netns}" in the lab (${Object.keys(state.namespaces).join(', ')})`);
  return run(['ip', 'netns', 'exec', ns, ...argv], input, timeoutMs);
}
