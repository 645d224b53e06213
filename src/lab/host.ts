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
import { planLab, type LabPlan } from './plan.ts';

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

/** A tiny listener of our own (no name resolution): TCP answers one HTTP response then waits for the close; UDP echoes. */
const LISTENER = `
import socket, sys, threading, time
proto, port = sys.argv[1], int(sys.argv[2])
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
if proto == "tcp":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        d, a = s.recvfrom(65536)
        s.sendto(d, a)
`;

function startListener(ns: string, proto: string, port: number): number {
  const child = spawn('ip', ['netns', 'exec', ns, 'python3', '-u', '-c', LISTENER, proto, String(port)], {
    stdio: ['ignore', 'ignore', 'ignore'],
    detached: true,
  });
  child.unref();
  if (!child.pid) throw new LabError(`${ns}: could not start the ${proto}/${port} listener`);
  return child.pid;
}

function waitListening(ns: string, proto: string, port: number): void {
  const flag = proto === 'tcp' ? '-ltn' : '-lun';
  for (let i = 0; i < 100; i++) {
    const r = run(['ip', 'netns', 'exec', ns, 'ss', '-H', flag, `sport = :${port}`]);
    if (r.code === 0 && r.stdout.trim()) return;
    spawnSync('sleep', ['0.05']);
  }
  throw new LabError(`${ns}: the ${proto}/${port} listener did not come up`);
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
  for (const n of names) {
    if (!existingNamespaces(prefix).includes(n)) continue;
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
    for (const s of plan.steps) {
      const r = run(s.argv, s.input);
      if (r.code !== 0)
        throw new LabError(
          `${s.netns}: \`${s.argv.join(' ')}\` failed: ${r.stderr.trim() || `exit ${r.code}`}`,
        );
    }
    if (opts.listeners !== false) {
      for (const l of plan.listeners) {
        const ns = plan.names.get(l.netns)!;
        const pid = startListener(ns, l.proto, l.port);
        state.listeners.push({ netns: l.netns, proto: l.proto, port: l.port, pid });
      }
      for (const l of plan.listeners) waitListening(plan.names.get(l.netns)!, l.proto, l.port);
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
  state: LabState,
  netns: string,
  argv: readonly string[],
  input?: string,
  timeoutMs?: number,
): RunResult {
  const ns = state.namespaces[netns];
  if (!ns) throw new LabError(`no netns "${netns}" in the lab (${Object.keys(state.namespaces).join(', ')})`);
  return run(['ip', 'netns', 'exec', ns, ...argv], input, timeoutMs);
}
