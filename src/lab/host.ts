/**
 * The real-kernel lab on this machine: applies a lab plan with iproute2 and iptables-restore,
 * starts podwalk's own listeners in the pods, records what it created in a state file, and
 * removes exactly that again — also after a crash or a signal.
 * Needs root and network namespaces.
 *
 * Ownership. A lab's state file, /run/podwalk/pw-<cluster>.json, is created exclusively before
 * anything else and names the cluster, its namespaces (exactly `pw-<cluster>-<netns>` for each
 * namespace of the model) and the process that owns the lab: 0 for a lab `podwalk lab up` leaves
 * behind on purpose, or the pid of a process that brings a lab up for its own use (`lab trace`,
 * tests) and removes it when done. A lab whose owner is gone (killed) is orphaned: `lab status`
 * says so and `lab down` removes it. Nothing is ever matched by prefix: a lab removes its own
 * namespaces and no other lab's, and a cluster whose namespace names would collide with a running
 * lab's is refused.
 *
 * Signals. Every command runs asynchronously in its own process group, so the event loop stays
 * free and a Ctrl-C reaches podwalk only; labUp and labTrace take an AbortSignal, check it between
 * steps and during every wait, remove what they built and throw LabInterrupted.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { setMaxListeners } from 'node:events';
import type { Cluster } from '../cni/build.ts';
import { spawned, type Spawned } from './spawner.ts';
import { birdPath, labNames, labPrefix, planLab, STATE_DIR, type LabPlan, type PlanStep } from './plan.ts';
export { birdPath };

export class LabError extends Error {}

/** A signal ended the lab operation; what it had built is removed. */
export class LabInterrupted extends Error {
  constructor(readonly signal: string) {
    super(`interrupted by ${signal}`);
  }
}

export interface LabState {
  cluster: string;
  mode: string;
  prefix: string;
  /** model netns → lab netns */
  namespaces: Record<string, string>;
  listeners: { netns: string; proto: string; port: number; pid: number }[];
  created: string;
  /** the process that holds the lab for its own use and removes it when done; 0: detached (`lab up`) */
  owner: number;
  /** the owner's start time (/proc/PID/stat), so that a reused pid is not taken for the owner */
  ownerStart?: string;
  /** model netns → its role (node, pod, segment, router…), for lab collect */
  roles?: Record<string, string>;
  /** the NetworkPolicy files `lab up --policy` enforced (absolute paths): what `lab diff` models */
  policies?: string[];
  /** the real BIRDs of a Calico mode's nodes: node (model netns), pid, control socket */
  birds?: { netns: string; pid: number; ctl: string }[];
  /**
   * the SNMP counters (`nstat -asz`) of each namespace once the BGP mesh had converged: what the
   * sessions' own segments counted before any flow (lab diff counts from here)
   */
  nstatBase?: Record<string, Record<string, number>>;
}

export { STATE_DIR } from './plan.ts';

/** the state file's base name: the prefix without its trailing '-' */
function key(prefix: string): string {
  return prefix.replace(/-$/, '');
}

export function statePath(prefix: string): string {
  return `${STATE_DIR}/${key(prefix)}.json`;
}

/** the lab's scratch directory (lab trace's captures): removed with the lab, also after a crash */
export function scratchPath(prefix: string): string {
  return `${STATE_DIR}/${key(prefix)}.d`;
}

/** the lock file of earlier versions, removed by labDown when found */
function legacyLockPath(prefix: string): string {
  return `${STATE_DIR}/${key(prefix)}.lock`;
}

/**
 * A lab operation waits on many things at once (a capture per interface, a listener per port),
 * each listening to the same signal: no limit on its listeners (node warns beyond 10).
 */
export function manyListeners(signal: AbortSignal | undefined): void {
  if (signal) setMaxListeners(0, signal);
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new LabInterrupted(String(signal.reason ?? 'a signal'));
}

/** sleep, cut short by the signal (the caller checks it afterwards) */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done);
  });
}

/* ------------------------------------------------------------ processes */

/** the fields of /proc/PID/stat from the state (field 3) on, or undefined when it does not exist */
function procStat(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) is in parentheses and may hold spaces
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** the start time of a process (field 22 of /proc/PID/stat), or undefined when it does not exist */
function processStart(pid: number): string | undefined {
  return procStat(pid)?.[19];
}

/** a process that runs: it exists and is no zombie (killed, not yet reaped) */
export function processRuns(pid: number): boolean {
  const st = procStat(pid)?.[0];
  return st !== undefined && st !== 'Z';
}

/** whether the owner recorded in a state file still runs */
function ownerAlive(st: LabState): boolean {
  if (!st.owner) return false;
  const start = processStart(st.owner);
  return start !== undefined && (st.ownerStart === undefined || start === st.ownerStart);
}

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Run a command to its end (blocking). A command that runs out of time is killed: exit 124. */
export function run(argv: readonly string[], input?: string, timeoutMs = 20_000): RunResult {
  const r = spawnSync(argv[0], argv.slice(1), {
    input,
    encoding: 'utf8',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
  });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT')
    return {
      stdout: r.stdout ?? '',
      stderr: `${r.stderr ?? ''}${argv[0]}: killed after ${timeoutMs / 1000} s without finishing`,
      code: 124,
    };
  if (r.error) return { stdout: '', stderr: String(r.error.message), code: 127 };
  return { stdout: r.stdout ?? '', stderr: r.stderr ?? '', code: r.status ?? 128 };
}

/**
 * Run a command without blocking the event loop, in its own process group (a Ctrl-C on the
 * terminal reaches podwalk, not the command). Killed with its group when `timeoutMs` passes
 * (exit 124) or the signal aborts (then LabInterrupted is thrown).
 */
export function runAsync(
  argv: readonly string[],
  opts: { input?: string; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<RunResult> {
  throwIfAborted(opts.signal);
  const helper = PYTHON.startsWith('/') ? PYTHON : undefined;
  const netns = inNetns(argv) ? `${NETNS_DIR}/${argv[3]}` : undefined;
  const helped = !netns
    ? spawned(helper, { argv, input: opts.input })
    : argv[4] === 'sysctl' && argv[5] === '-q' && argv[6] === '-w' && opts.input === undefined
      ? spawned(helper, { sysctl: argv.slice(7), netns })
      : spawned(helper, { argv: argv.slice(4), input: opts.input, netns });
  if (helped) return settle(argv, helped, opts);
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    let ended: 'timeout' | 'abort' | undefined;
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => {});
      child.stdin!.end(opts.input);
    }
    const kill = (why: 'timeout' | 'abort') => {
      ended ??= why;
      killGroup(child);
    };
    const timer = setTimeout(() => kill('timeout'), opts.timeoutMs ?? 20_000);
    const onAbort = () => kill('abort');
    opts.signal?.addEventListener('abort', onAbort);
    const finish = () => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    child.on('error', (e) => {
      finish();
      resolve({ stdout: '', stderr: `${argv[0]}: ${e.message}`, code: 127 });
    });
    child.on('close', (code, sig) => {
      finish();
      if (ended === 'abort') return reject(new LabInterrupted(String(opts.signal?.reason ?? 'a signal')));
      if (ended === 'timeout')
        return resolve({
          stdout,
          stderr: `${stderr}${argv[0]}: killed after ${(opts.timeoutMs ?? 20_000) / 1000} s without finishing`,
          code: 124,
        });
      resolve({ stdout, stderr: stderr + (sig ? `${argv[0]}: killed by ${sig}` : ''), code: code ?? 128 });
    });
  });
}

/** where `ip netns add` puts a namespace's file */
const NETNS_DIR = '/run/netns';

/**
 * The commands podwalk runs in a lab namespace that read nothing under /sys: the spawner starts
 * them in the namespace itself (spawner.ts) instead of through `ip netns exec`, whose mount
 * namespace and remount of /sys are there for the commands that do; `sysctl -q -w` it writes
 * itself (a thread in the namespace sees that namespace's /proc/sys/net). `sh` runs podwalk's own
 * scripts of these and of ip, bridge and iptables-save; `chrt` its clients (Python, ping, curl).
 */
const NO_SYSFS = new Set(['sysctl', 'iptables-restore', 'ipset', 'nstat', 'conntrack', 'sh', 'chrt']);

function inNetns(argv: readonly string[]): boolean {
  return (
    argv[0] === 'ip' &&
    argv[1] === 'netns' &&
    argv[2] === 'exec' &&
    argv.length > 4 &&
    !argv[3].includes('/') &&
    NO_SYSFS.has(argv[4])
  );
}

/** runAsync's ending of a command the helper runs: the same results, timeouts and aborts */
async function settle(
  argv: readonly string[],
  cmd: { done: Promise<Spawned>; kill(): void },
  opts: { timeoutMs?: number; signal?: AbortSignal },
): Promise<RunResult> {
  let ended: 'timeout' | 'abort' | undefined;
  const kill = (why: 'timeout' | 'abort') => {
    ended ??= why;
    cmd.kill();
  };
  const timer = setTimeout(() => kill('timeout'), opts.timeoutMs ?? 20_000);
  const onAbort = () => kill('abort');
  opts.signal?.addEventListener('abort', onAbort);
  const r = await cmd.done.finally(() => {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  });
  if (r.error !== undefined) return { stdout: '', stderr: r.error, code: 127 };
  if (ended === 'abort') throw new LabInterrupted(String(opts.signal?.reason ?? 'a signal'));
  if (ended === 'timeout')
    return {
      stdout: r.stdout,
      stderr: `${r.stderr}${argv[0]}: killed after ${(opts.timeoutMs ?? 20_000) / 1000} s without finishing`,
      code: 124,
    };
  return {
    stdout: r.stdout,
    stderr: r.stderr + (r.signal ? `${argv[0]}: killed by ${r.signal}` : ''),
    code: r.code ?? 128,
  };
}

/**
 * SIGKILL a detached child and everything in its process group. `evenIfExited`: also when the
 * child itself has just exited, for what it started in its group and left running (its pid,
 * the group's id, is not given to another process while the group has members).
 */
function killGroup(child: ChildProcess, evenIfExited = false): void {
  if (!child.pid) return;
  if (!evenIfExited && (child.exitCode !== null || child.signalCode !== null)) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    child.kill('SIGKILL');
  }
}

/**
 * The Python of the lab's listeners and clients: the system's own (Debian's python3, which CI
 * installs) when there is one, else the first python3 on PATH. A version manager's shim
 * (pyenv's python3 is a bash script that runs pyenv) costs a second or more per process on a
 * loaded machine, and a lab starts one per listener.
 */
export const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

let fifo: string[] | undefined;

/**
 * A lab application's command (the listeners, the flow's client, the time scenarios' ping and
 * curl) under SCHED_FIFO priority 1, which every normal task yields to, when the machine allows it
 * (`chrt` execs the command: its pid and command line stay the application's). The model's
 * applications react GAP_US after a packet arrives; on a loaded machine a normal task wakes tens of
 * milliseconds late, and the kernel does what it must with a late application: the server's ACK
 * of the client's FIN waits for the delayed-ACK timer (40 ms at least) and leaves alone when the
 * close comes after it, or ping's next request leaves late. That is the kernel judging a different
 * scenario, not the same one. Where real-time scheduling is refused (a container without
 * CAP_SYS_NICE, an RT cgroup budget of 0) the command runs as it is.
 */
export function promptly(argv: readonly string[]): string[] {
  fifo ??=
    spawnSync('chrt', ['-f', '1', 'true'], { stdio: 'ignore' }).status === 0 ? ['chrt', '-f', '1'] : [];
  return [...fifo, ...argv];
}

let unavailable: { why: string | undefined } | undefined;

/** why the lab cannot run here, or undefined when it can (probed once per process) */
export function labUnavailable(): string | undefined {
  unavailable ??= { why: probe() };
  return unavailable.why;
}

let ipsetMissing: { why: string | undefined } | undefined;

/** why a lab with IP sets (felix's, in a calico mode with NetworkPolicies) cannot run here */
export function ipsetUnavailable(): string | undefined {
  ipsetMissing ??= {
    why:
      run(['sh', '-c', 'command -v ipset']).code !== 0
        ? "the lab needs ipset for felix's IP sets: apt-get install ipset"
        : undefined,
  };
  return ipsetMissing.why;
}

function probe(): string | undefined {
  if (process.platform !== 'linux')
    return `the lab needs Linux network namespaces (this is ${process.platform})`;
  if (typeof process.getuid === 'function' && process.getuid() !== 0)
    return 'the lab needs root (network namespaces, veth, bridges)';
  const ip = run(['ip', '-V']);
  if (ip.code !== 0) return 'the lab needs iproute2 (`ip`): apt-get install iproute2';
  const name = `pw-probe-${process.pid}`;
  const add = run(['ip', 'netns', 'add', name]);
  if (add.code !== 0) return `cannot create network namespaces here: ${add.stderr.trim()}`;
  run(['ip', 'netns', 'del', name]);
  for (const tool of ['iptables-restore', 'sysctl', 'bridge', PYTHON])
    if (run(['sh', '-c', `command -v ${tool}`]).code !== 0)
      return `the lab needs ${tool}: apt-get install iptables procps iproute2 python3`;
  return undefined;
}

/* ------------------------------------------------------------ state */

/** every network namespace on this machine */
/**
 * The named network namespaces: the entries of /run/netns, which is what `ip netns list` reads
 * (iproute2's netns_list), without a process (labs ask often: before and after every step that
 * adds or removes namespaces).
 */
export function allNamespaces(): string[] {
  try {
    return readdirSync('/run/netns').sort();
  } catch {
    return []; // no namespace was ever named here
  }
}

/** the lab namespaces of this cluster that exist now (exactly its pw-<cluster>-<netns> names) */
export function existingNamespaces(c: Cluster): string[] {
  const all = new Set(allNamespaces());
  return [...labNames(c).values()].filter((n) => all.has(n));
}

/** the state file of a prefix; undefined when there is none. A damaged file is a LabError. */
export function readState(prefix: string): LabState | undefined {
  return readStateFile(statePath(prefix));
}

function readStateFile(p: string): LabState | undefined {
  let text: string;
  try {
    text = readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const st = JSON.parse(text) as LabState;
    if (typeof st.cluster !== 'string' || typeof st.namespaces !== 'object') throw new Error('fields');
    st.owner ??= 0;
    st.listeners ??= [];
    return st;
  } catch {
    throw new LabError(`${p} is damaged: remove it, and the namespaces it names, by hand`);
  }
}

/** every lab's state on this machine */
function allStates(): LabState[] {
  let files: string[];
  try {
    files = readdirSync(STATE_DIR).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  return files.flatMap((f) => {
    try {
      const st = readStateFile(`${STATE_DIR}/${f}`);
      return st ? [st] : [];
    } catch {
      return [];
    }
  });
}

function writeState(st: LabState): void {
  const p = statePath(st.prefix);
  writeFileSync(`${p}.tmp`, JSON.stringify(st, null, 2));
  renameSync(`${p}.tmp`, p);
}

export type LabCondition =
  | { kind: 'down' }
  /** namespaces of the cluster exist without a state file */
  | { kind: 'stray'; namespaces: string[] }
  | { kind: 'up'; state: LabState; namespaces: string[] }
  /** held by a live process (lab trace, a test) that removes it when it ends */
  | { kind: 'in-use'; state: LabState; namespaces: string[] }
  /** its owner was killed before removing it */
  | { kind: 'orphaned'; state: LabState; namespaces: string[] }
  /** the state file belongs to another cluster whose name gives the same namespace prefix */
  | { kind: 'other'; state: LabState };

/** what is on this machine for the cluster's lab */
export function labCondition(c: Cluster): LabCondition {
  const prefix = labPrefix(c.spec.name);
  const st = readState(prefix);
  const all = new Set(allNamespaces());
  if (st && st.cluster !== c.spec.name) return { kind: 'other', state: st };
  if (!st) {
    const others = claimedElsewhere(prefix);
    const stray = [...labNames(c).values()].filter((n) => all.has(n) && !others.has(n));
    return stray.length ? { kind: 'stray', namespaces: stray } : { kind: 'down' };
  }
  return found(st, all);
}

/** a lab whose state file is there: who holds it, and which of its namespaces exist now */
function found(state: LabState, present: ReadonlySet<string>): LabHere {
  const namespaces = Object.values(state.namespaces).filter((n) => present.has(n));
  const kind = !state.owner ? 'up' : ownerAlive(state) ? 'in-use' : 'orphaned';
  return { kind, state, namespaces };
}

/** the namespaces other labs' state files name */
function claimedElsewhere(prefix: string): Set<string> {
  return new Set(allStates().flatMap((s) => (s.prefix === prefix ? [] : Object.values(s.namespaces))));
}

/** a lab found on this machine by its state file */
export interface LabHere {
  state: LabState;
  kind: 'up' | 'in-use' | 'orphaned';
  /** the namespaces of its state file that exist now */
  namespaces: string[];
}

/**
 * Every lab on this machine, by its state file (whatever cluster file it came from: `lab
 * scenario N`'s dN, a test's, a user's), in the order of their prefixes; and the lab-named
 * namespaces (pw-*) no state file names, left by a crash before the state file was written.
 */
export function labsHere(): { labs: LabHere[]; unclaimed: string[] } {
  const all = allNamespaces();
  const present = new Set(all);
  const labs = allStates()
    .sort((a, b) => (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0))
    .map((state) => found(state, present));
  const claimed = new Set(labs.flatMap((l) => Object.values(l.state.namespaces)));
  return { labs, unclaimed: all.filter((n) => n.startsWith('pw-') && !claimed.has(n)) };
}

/**
 * Remove every orphaned lab (its owner was killed before it removed the lab) by what its state file
 * names, with no cluster file needed: its namespaces and the processes in them, its directories and
 * its state file. Labs that are up or in use by a live process are left alone.
 */
export function labDownOrphaned(): { cluster: string; removed: string[] }[] {
  return labsHere()
    .labs.filter((l) => l.kind === 'orphaned')
    .map((l) => ({ cluster: l.state.cluster, removed: removeLab(l.state.prefix, l.namespaces) }));
}

/* ------------------------------------------------------------ down */

/**
 * Remove the cluster's lab: exactly the namespaces its state file names and the cluster's own
 * `pw-<cluster>-<netns>` names (for a crash before the state file was complete), never a namespace
 * another lab's state file names; the processes in them (listeners, captures, clients); its
 * scratch directory and its state file. Idempotent. Refuses a lab another live process holds, and
 * a state file of another cluster whose name gives the same prefix.
 */
export function labDown(c: Cluster): string[] {
  const prefix = labPrefix(c.spec.name);
  let st: LabState | undefined;
  try {
    st = readState(prefix);
  } catch {
    // a damaged state file: the cluster's own names are still known, and the file goes too
  }
  if (st && st.cluster !== c.spec.name)
    throw new LabError(
      `the lab ${key(prefix)} belongs to the cluster "${st.cluster}", not "${c.spec.name}": nothing removed`,
    );
  if (st && st.owner && st.owner !== process.pid && ownerAlive(st))
    throw new LabError(
      `the lab of "${c.spec.name}" is in use by process ${st.owner}, which removes it when it ends`,
    );
  const all = new Set(allNamespaces());
  const others = claimedElsewhere(prefix);
  const names = [...new Set([...Object.values(st?.namespaces ?? {}), ...labNames(c).values()])].filter(
    (n) => all.has(n) && !others.has(n),
  );
  return removeLab(prefix, names);
}

/**
 * Remove a lab's namespaces (the processes in them first), its scratch and BIRD directories, its
 * state file and the temporary siblings a killed process may have left; the namespaces removed.
 */
function removeLab(prefix: string, names: readonly string[]): string[] {
  removeNamespaces(names);
  const left = new Set(allNamespaces());
  const removed = names.filter((n) => !left.has(n));
  rmSync(scratchPath(prefix), { recursive: true, force: true });
  rmSync(birdPath(prefix), { recursive: true, force: true });
  rmSync(statePath(prefix), { force: true });
  // the state file's temporary siblings (.tmp, .PID) a killed process may have left
  const base = `${key(prefix)}.json.`;
  let files: string[] = [];
  try {
    files = readdirSync(STATE_DIR);
  } catch {
    // no state directory: nothing was ever up here
  }
  for (const f of files.filter((x) => x.startsWith(base))) rmSync(`${STATE_DIR}/${f}`, { force: true });
  rmSync(legacyLockPath(prefix), { force: true });
  return removed;
}

/**
 * The pids of the processes in these namespaces (listeners, captures, clients): those whose
 * /proc/PID/ns/net is the namespace /run/netns/NAME holds, as `ip netns pids` finds them, without
 * a process per namespace. And those still on their way in: the listeners' and the captures' one
 * process starts in the root namespace and enters each namespace it names on its command line
 * (`/run/netns/NAME,…`, `MODEL=/run/netns/NAME`), so a lab up or trace killed while it started
 * leaves it outside every namespace for a moment.
 */
function pidsIn(names: readonly string[]): number[] {
  const inodes = new Set<string>();
  for (const n of names)
    try {
      inodes.add(`net:[${statSync(`/run/netns/${n}`).ino}]`);
    } catch {
      // gone
    }
  const paths = new Set(names.map((n) => `/run/netns/${n}`));
  const naming = (arg: string) => {
    const path = /\/run\/netns\/[^,=\s]+/.exec(arg)?.[0];
    return path !== undefined && paths.has(path);
  };
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (inodes.has(readlinkSync(`/proc/${d}/ns/net`))) {
        pids.push(Number(d));
        continue;
      }
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').some(naming)) pids.push(Number(d));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

/**
 * kill(2) returns before its target has died: a process SIGKILLed in the middle of a system call
 * that does not sleep interruptibly (a capture closing its packet sockets, a client in the
 * namespace's teardown) runs on until that call returns. Wait, a few milliseconds at a time and
 * for at most 10 s, until each is gone or a zombie, so that whoever called lab down finds nothing
 * of the lab running when it returns. (Measured: lab-signals' SIGKILL of lab trace left a
 * process that was gone a moment after lab down returned, 3 of 3 runs on a loaded machine.)
 */
function awaitExit(pids: readonly number[]): void {
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const until = Date.now() + 10_000;
  let left = pids.filter(processRuns);
  while (left.length && Date.now() < until) {
    Atomics.wait(nap, 0, 0, 5);
    left = left.filter(processRuns);
  }
}

function removeNamespaces(names: readonly string[]): void {
  if (!names.length) return;
  // processes we started (listeners, captures, clients) live in the namespace: end them first
  const killed = pidsIn(names);
  for (const pid of killed)
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  awaitExit(killed);
  const r = run(['ip', '-force', '-batch', '-'], names.map((n) => `netns del ${n}`).join('\n') + '\n');
  // -force goes on after a failure; whatever is left is tried once more, one by one
  if (r.code !== 0) {
    const left = new Set(allNamespaces());
    for (const n of names) if (left.has(n)) run(['ip', 'netns', 'del', n]);
  }
}

/* ------------------------------------------------------------ up */

export interface UpOptions {
  /** start listeners in pods (default true) */
  listeners?: boolean;
  /** the lab outlives this process (the CLI's `lab up`); otherwise this process owns it until labDown */
  detached?: boolean;
  /** abort (a signal): stop, remove what was built, throw LabInterrupted */
  signal?: AbortSignal;
  /** the NetworkPolicy files the cluster was built with, remembered in the state file */
  policies?: string[];
  /**
   * once the BGP mesh has converged, set the lab back to the model's state (default true);
   * false for a caller that stops the BIRDs and does that itself (labQuiesce) before it reads
   */
  quiesce?: boolean;
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

/**
 * A process in a lab namespace that says on stdout or stderr when it is ready (`ready` for the
 * listeners, tcpdump's `listening on`). Waits as long as the process runs and has not said so:
 * no fixed start-up timeout, which a loaded machine would exceed; `limitMs` only bounds a process
 * that hangs. A process that exits first, hangs or is aborted is killed and the error says what
 * it printed.
 */
export function startReady(
  what: string,
  argv: readonly string[],
  ready: (out: string) => boolean,
  opts: { signal?: AbortSignal; limitMs?: number; stdout?: 'pipe' | 'ignore' } = {},
): Promise<ChildProcess> {
  throwIfAborted(opts.signal);
  const limitMs = opts.limitMs ?? 120_000;
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      stdio: ['ignore', opts.stdout ?? 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    let settled = false;
    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) {
        killGroup(child);
        return reject(err);
      }
      // it runs on: what it prints from now on is read and dropped (a pipe nobody reads would
      // stall it, and a closed one kill it), without keeping this process alive for it
      for (const s of [child.stdout, child.stderr]) {
        if (!s) continue;
        s.removeListener('data', onData);
        s.on('data', () => {});
        (s as unknown as { unref?: () => void }).unref?.();
      }
      resolve(child);
    };
    const said = () => out.trim().split('\n').slice(-3).join(' / ') || 'nothing';
    const onData = (d: Buffer) => {
      out += d.toString();
      if (ready(out) && child.exitCode === null && child.signalCode === null) settle();
    };
    child.stdout?.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('error', (e) => settle(new LabError(`${what} could not start: ${e.message}`)));
    // it exited before it was ready: what it left in its group is killed, which closes the pipes
    // those held, then the error quotes all it printed ('exit' can come before its last output)
    child.on('exit', (code, sig) => {
      if (settled) return;
      killGroup(child, true);
      child.on('close', () =>
        settle(
          new LabError(
            `${what} did not start: it ${sig ? `was killed by ${sig}` : `exited with status ${code}`}; it printed: ${said()}`,
          ),
        ),
      );
    });
    const timer = setTimeout(
      () =>
        settle(
          new LabError(
            `${what} did not start: not ready after ${limitMs / 1000} s (killed); it printed: ${said()}`,
          ),
        ),
      limitMs,
    );
    const onAbort = () => settle(new LabInterrupted(String(opts.signal?.reason ?? 'a signal')));
    opts.signal?.addEventListener('abort', onAbort);
  });
}

/**
 * Claim the cluster's lab: refuse a lab that is up, in use or orphaned, and a cluster whose
 * namespaces collide with a running lab or with namespaces nobody owns; then create the state
 * file exclusively.
 */
async function claim(c: Cluster, plan: LabPlan, st: LabState, signal?: AbortSignal): Promise<void> {
  mkdirSync(STATE_DIR, { recursive: true });
  const mine = new Set(plan.names.values());
  for (;;) {
    throwIfAborted(signal);
    const held = labCondition(c);
    switch (held.kind) {
      case 'other':
        throw new LabError(
          `the cluster name "${c.spec.name}" collides with the running lab of "${held.state.cluster}": both give namespaces ${plan.prefix}*; rename the cluster`,
        );
      case 'up':
        throw new LabError(
          `a lab for "${c.spec.name}" is already up (${held.state.mode}, namespaces ${plan.prefix}*): run podwalk lab down first`,
        );
      case 'orphaned':
        throw new LabError(
          `a lab for "${c.spec.name}" was left behind (orphaned: owner pid ${held.state.owner} is gone): run podwalk lab down first`,
        );
      case 'stray':
        throw new LabError(
          `namespace ${held.namespaces[0]} already exists without a lab's state file: run podwalk lab down (with the same cluster) first`,
        );
      case 'in-use':
        throw new LabError(
          held.state.owner === process.pid
            ? `this process already holds the lab of "${c.spec.name}"`
            : `the lab of "${c.spec.name}" is in use by process ${held.state.owner}, which removes it when it ends`,
        );
      case 'down':
        break;
    }
    for (const other of allStates()) {
      if (other.prefix === plan.prefix) continue;
      const clash = Object.values(other.namespaces).find((n) => mine.has(n));
      if (clash)
        throw new LabError(
          `the cluster name "${c.spec.name}" collides with the running lab of "${other.cluster}": both want namespace ${clash}; rename the cluster`,
        );
    }
    // written whole to a file of our own, then linked into place: the link fails if the file
    // exists (another process claimed it between our look and now: look again), and nobody ever
    // sees a half-written state file, even if this process is killed here
    const mineTmp = `${statePath(plan.prefix)}.${process.pid}`;
    writeFileSync(mineTmp, JSON.stringify(st, null, 2));
    try {
      linkSync(mineTmp, statePath(plan.prefix));
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      rmSync(mineTmp, { force: true });
    }
  }
}

/**
 * Start the listeners (namespace name, proto, port) in one process and wait until every socket
 * is open; its pid. The process stays in the first listener's namespace (`ip netns pids` finds it
 * there) and runs until it is killed.
 */
export async function startListeners(
  ls: { ns: string; proto: string; port: number }[],
  signal?: AbortSignal,
): Promise<number> {
  const child = await startReady(
    "the lab's listeners",
    promptly([PYTHON, '-u', '-c', LISTENER, ...ls.map((l) => `/run/netns/${l.ns},${l.proto},${l.port}`)]),
    (out) => /^ready$/m.test(out),
    { signal },
  );
  child.unref();
  return child.pid!;
}

interface Batch {
  argv: string[];
  input?: string;
  /** the plan's steps it runs, in order */
  steps: PlanStep[];
}

/** the lab namespaces a batch (or step) runs in or names: the far end of a veth, where a device moves */
function touchedBy(b: { argv: readonly string[]; input?: string }, names: ReadonlySet<string>): Set<string> {
  return new Set([...b.argv, ...(b.input ?? '').split(/\s+/)].filter((w) => names.has(w)));
}

/**
 * The plan's steps as few processes as give the same result: the `ip -n NS …` (or
 * `bridge -n NS …`) commands in one namespace are one `ip -n NS -batch -`, the sysctl writes in
 * one namespace one `sysctl -w` with them all, the namespaces one `ip -batch -` of `netns add`
 * lines. Each process costs about 10 ms of CPU here (exec, and a mount namespace and a remount of
 * /sys for `ip -n` and `ip netns exec`).
 *
 * A step joins the latest batch of its kind when no batch after that one touches a namespace the
 * step touches (runs in or names): every namespace still sees its steps in the plan's order, which
 * is all the order the kernel sees (a device is created before it is configured, a veth's far
 * namespace before the veth), and the steps of one namespace that other namespaces' steps
 * interleave with (a pod's addresses and routes between the node's veths) become one process.
 */
export function batches(steps: readonly PlanStep[], names: ReadonlySet<string>): Batch[] {
  const key = (s: PlanStep): string | undefined => {
    const a = s.argv;
    if (s.input !== undefined) return undefined;
    if ((a[0] === 'ip' || a[0] === 'bridge') && a[1] === '-n') return `${a[0]} ${a[2]}`;
    if (a[0] === 'ip' && a[1] === 'netns' && a[2] === 'add' && a.length === 4) return 'netns add';
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
  const runs: { key: string | undefined; steps: PlanStep[] }[] = [];
  /** namespace → the last run that touches it */
  const last = new Map<string, number>();
  /** a kind of step → its latest run */
  const latest = new Map<string, number>();
  /** the last run that touches no namespace (and everything before it) */
  let barrier = -1;
  for (const s of steps) {
    const k = key(s);
    const touched = touchedBy(s, names);
    // the last run this step must follow, and the one it could join
    let after = touched.size ? -1 : runs.length - 1;
    for (const n of touched) after = Math.max(after, last.get(n) ?? -1);
    after = Math.max(after, barrier);
    const j = k === undefined ? -1 : (latest.get(k) ?? -1);
    const i = j >= 0 && j >= after ? j : runs.length;
    if (i === runs.length) runs.push({ key: k, steps: [] });
    if (k !== undefined) latest.set(k, i);
    runs[i].steps.push(s);
    for (const n of touched) last.set(n, i);
    if (!touched.size) barrier = i;
  }
  return runs.map(({ key: k, steps: run }): Batch => {
    const first = run[0].argv;
    if (run.length === 1) return { argv: first, input: run[0].input, steps: run };
    if (k === 'netns add')
      return {
        argv: ['ip', '-batch', '-'],
        input: run.map((s) => `netns add ${s.argv[3]}\n`).join(''),
        steps: run,
      };
    if (k!.startsWith('sysctl '))
      return { argv: [...first.slice(0, 7), ...run.map((s) => s.argv[7])], steps: run };
    return {
      argv: [first[0], '-n', first[2], '-batch', '-'],
      input: run.map((s) => s.argv.slice(3).join(' ') + '\n').join(''),
      steps: run,
    };
  });
}

/**
 * The batches, several at a time, each after every earlier batch that touches one of its
 * namespaces (the one it runs in, and any it names: the far end of a veth, the namespace a device
 * moves to), so each namespace sees its steps in the plan's order (its devices get the plan's
 * ifindexes) while independent namespaces are built side by side. A lab waits mostly on process
 * starts, which a loaded machine makes slow; one at a time, a 20-namespace lab is some 60 of them
 * in a row. After the first failure nothing new starts; the running ones are waited for, and the
 * failure of the earliest batch is thrown, naming its step.
 */
async function runBatches(
  bs: readonly Batch[],
  names: ReadonlySet<string>,
  signal?: AbortSignal,
): Promise<void> {
  const last = new Map<string, number>();
  const deps = bs.map((b, i) => {
    const touched = touchedBy(b, names);
    const before = new Set([...touched].flatMap((n) => (last.has(n) ? [last.get(n)!] : [])));
    for (const n of touched) last.set(n, i);
    // a batch that names no lab namespace (none in the plan) keeps its place in the order
    if (!touched.size && i > 0) before.add(i - 1);
    return [...before];
  });
  const failures: { i: number; e: unknown }[] = [];
  let slots = LAB_PARALLEL;
  const waiting: (() => void)[] = [];
  const acquire = () =>
    slots > 0 ? (slots--, Promise.resolve()) : new Promise<void>((r) => waiting.push(r));
  const release = () => (waiting.length ? waiting.shift()!() : slots++);
  const done: Promise<boolean>[] = [];
  bs.forEach((b, i) => {
    done[i] = Promise.all(deps[i].map((j) => done[j])).then(async (ok) => {
      if (!ok.every(Boolean) || failures.length) return false;
      await acquire();
      try {
        if (failures.length) return false;
        throwIfAborted(signal);
        const r = await runAsync(b.argv, { input: b.input, signal });
        throwIfAborted(signal);
        if (r.code === 0) return true;
        // a batch stops at its first failing line and names it ("Command failed -:N")
        const line = Number(/Command failed -:(\d+)/.exec(r.stderr)?.[1] ?? 0);
        const s = b.steps[Math.max(0, Math.min(b.steps.length - 1, line - 1))];
        const why = r.stderr.replace(/\n?Command failed -:\d+\s*$/, '').trim();
        throw new LabError(`${s.netns}: \`${s.argv.join(' ')}\` failed: ${why || `exit ${r.code}`}`);
      } catch (e) {
        failures.push({ i, e });
        return false;
      } finally {
        release();
      }
    });
  });
  await Promise.all(done);
  if (failures.length) throw failures.sort((a, b) => a.i - b.i)[0].e;
}

/** how many of a lab's set-up processes run at once */
const LAB_PARALLEL = 4;

/**
 * `fn` over `items`, at most `n` at a time; after the first failure no new item starts, the
 * running ones are waited for, and the failure is thrown.
 */
export async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { e: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (e) {
        failure ??= { e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (failure) throw failure.e;
}

/** BIRD's row of a protocol in `birdc show protocols`: name → state and info (info holds spaces) */
export function birdProtocolRows(out: string): Map<string, { state: string; info: string }> {
  const rows = new Map<string, { state: string; info: string }>();
  for (const l of out.split('\n')) {
    // Name Proto Table State Since Info; Since is one word in BIRD 2's default time format
    const m = /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*(.*?)\s*$/.exec(l);
    if (m && m[1] !== 'Name' && m[2] !== 'ready.') rows.set(m[1], { state: m[4], info: m[6] });
  }
  return rows;
}

/** how long the mesh may take to come up: BIRD's connect delay (2 s), a retry (5 s) and its error wait (5 s) and more */
const BIRD_WAIT_MS = 20_000;
/** while sessions keep coming up, the wait goes on up to this */
const BIRD_WAIT_CAP_MS = 120_000;

/**
 * Start the plan's BIRDs (each daemonizes once its configuration is read and its control socket is
 * open, or exits with the configuration's error) and wait until every session that is not disabled
 * (nor a direct eBGP one waiting for its peer to become a neighbour, which never comes up)
 * is Established and every BIRD's table holds what its peers announce. The wait is bounded: 20 s,
 * extended while sessions or routes keep arriving, never beyond 120 s; then the error names every
 * session not Established with what BIRD says of it, and every route missing.
 */
async function startBirds(
  plan: LabPlan,
  state: LabState,
  signal?: AbortSignal,
  settle = true,
): Promise<void> {
  if (!plan.birds.length) return;
  for (const tool of ['bird', 'birdc'])
    if (run(['sh', '-c', `command -v ${tool}`]).code !== 0)
      throw new LabError(
        `a Calico mode's lab runs real BIRD 2 on its nodes: ${tool} is missing (apt-get install bird2)`,
      );
  const dir = birdPath(plan.prefix);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  state.birds = [];
  const files = (node: string) => {
    const base = `${dir}/${node.replace(/\//g, '_')}`;
    return { conf: `${base}.conf`, ctl: `${base}.ctl`, pid: `${base}.pid` };
  };
  for (const b of plan.birds) {
    const f = files(b.node);
    writeFileSync(f.conf, b.config);
    const r = await runAsync(
      ['ip', 'netns', 'exec', plan.names.get(b.node)!, 'bird', '-c', f.conf, '-s', f.ctl, '-P', f.pid],
      { signal },
    );
    if (r.code !== 0)
      throw new LabError(
        `${b.node}: bird did not start (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`,
      );
  }
  // the daemon writes its pid file after its parent has exited
  for (const b of plan.birds) {
    const f = files(b.node);
    let pid = 0;
    for (let i = 0; i < 50 && !pid; i++) {
      try {
        pid = Number(readFileSync(f.pid, 'utf8').trim()) || 0;
      } catch {
        // not yet
      }
      if (!pid) await pause(20, signal);
      throwIfAborted(signal);
    }
    state.birds.push({ netns: b.node, pid, ctl: f.ctl });
  }
  writeState(state);
  const started = Date.now();
  let limit = BIRD_WAIT_MS;
  let best = -1;
  let delay = 100;
  for (;;) {
    throwIfAborted(signal);
    // in the plan's order, whatever order the answers come in: every session that is not up (the
    // cause) before every route that is missing (the consequence)
    const sessionsDown: string[][] = plan.birds.map(() => []);
    const routesMissing: string[][] = plan.birds.map(() => []);
    let progress = 0;
    await Promise.all(
      plan.birds.map(async (b, i) => {
        const ctl = files(b.node).ctl;
        const [p, r] = await Promise.all([
          runAsync(['birdc', '-s', ctl, 'show', 'protocols'], { signal }),
          runAsync(['birdc', '-s', ctl, 'show', 'route'], { signal }),
        ]);
        const rows = birdProtocolRows(p.stdout);
        for (const s of b.sessions) {
          // disabled, or (direct eBGP toward a peer off its subnets) waiting for a neighbour
          if (s.disabled || s.waits) continue;
          const row = rows.get(s.proto);
          if (row?.info === 'Established') progress++;
          else
            sessionsDown[i].push(
              `${b.node}: BGP session ${s.proto} (to ${s.peer}) not Established: ${row ? `${row.state} ${row.info}`.trim() : (p.stdout + p.stderr).trim().split('\n').pop()}`,
            );
        }
        const have = new Set(
          r.stdout.split('\n').flatMap((l) => {
            const m = /^(\S+)\s+\S+\s+\[(\S+) /.exec(l);
            return m ? [`${m[2]} ${m[1]}`] : [];
          }),
        );
        for (const e of b.expect)
          if (have.has(`${e.proto} ${e.prefix}`)) progress++;
          else routesMissing[i].push(`${b.node}: BIRD has no route ${e.prefix} from ${e.proto}`);
      }),
    );
    const missing = [...sessionsDown.flat(), ...routesMissing.flat()];
    if (!missing.length) return settle ? quiesce(plan, state, signal) : undefined;
    const elapsed = Date.now() - started;
    if (progress > best) {
      best = progress;
      limit = Math.min(BIRD_WAIT_CAP_MS, Math.max(limit, elapsed + BIRD_WAIT_MS / 2));
    }
    if (elapsed >= limit)
      throw new LabError(
        `the BGP mesh did not converge in ${Math.round(elapsed / 1000)} s: ${missing.slice(0, 4).join('; ')}${missing.length > 4 ? ` (and ${missing.length - 4} more)` : ''}`,
      );
    await pause(delay, signal);
    delay = Math.min(1000, delay * 2);
  }
}

/**
 * Once the mesh has converged, the lab starts from the state the model starts from: the BGP
 * sessions' TCP segments resolved neighbours (the peers, the routers across subnets), taught
 * the segments' bridges where each node is and, where conntrack runs, left its entries; those are
 * flushed, and the counters they bumped are taken as the baseline lab diff counts from. BIRD then stays quiet until its first
 * KEEPALIVE (a third of the 240 s hold time after its last message); a late delayed ACK is waited out.
 */
async function quiesce(plan: LabPlan, state: LabState, signal?: AbortSignal): Promise<void> {
  await resetState([...plan.names], plan.bridges, state, signal);
}

/**
 * Stop (SIGSTOP) or continue (SIGCONT) the lab's BIRDs. A differential flow is compared against a
 * model in which no BGP message is sent while the flow runs, and its walk takes milliseconds of
 * simulated time; BIRD sends a KEEPALIVE 60 to 80 s (RFC 4271's jitter of a third of the 240 s
 * hold time) after its last message on a session, and one sent during the flow teaches the
 * underlay bridge MACs the flow never showed it. Stopped, BIRD sends nothing, its kernel keeps the
 * connections (and ACKs nothing, having nothing to ACK), and a flow and its collection take far
 * less than the hold time, so every session is still up when BIRD continues.
 */
export function birdsStopped(state: LabState, stopped: boolean): void {
  for (const b of state.birds ?? [])
    try {
      process.kill(b.pid, stopped ? 'SIGSTOP' : 'SIGCONT');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
      // (continuing one that died is nothing to do; stopping one, a lab that lost its BGP)
      if (stopped) throw new LabError(`${b.netns}: BIRD (pid ${b.pid}) is gone`);
    }
}

/**
 * The same after a command that made BIRD talk (lab diff's `birdc disable`): the lab's namespaces
 * back to the model's neighbours and bridges, the counters counted from here
 */
export async function labQuiesce(state: LabState, c: Cluster, signal?: AbortSignal): Promise<void> {
  const bridges = [...c.world.netns.values()].flatMap((ns) =>
    [...ns.links.values()].filter((l) => l.type === 'bridge').map((l) => ({ netns: ns.name, name: l.name })),
  );
  await resetState(Object.entries(state.namespaces), bridges, state, signal);
}

async function resetState(
  names: [string, string][],
  allBridges: { netns: string; name: string }[],
  state: LabState,
  signal?: AbortSignal,
): Promise<void> {
  await pause(300, signal);
  throwIfAborted(signal);
  const base: Record<string, Record<string, number>> = {};
  await pool(names, 4, async ([model, ns]) => {
    const bridges = allBridges.filter((b) => b.netns === model).map((b) => b.name);
    const script = [
      `ip neigh flush all`,
      ...bridges.map((b) => `bridge fdb flush dev ${b} dynamic`),
      // where iptables loaded conntrack (kube-proxy's NAT), it tracks the BGP connections too;
      // nf_conntrack_count is the namespace's own (0, or no such file: nothing to flush)
      `{ n=0; read n < /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null; [ "$n" = 0 ] || ! command -v conntrack >/dev/null || conntrack -F 2>/dev/null; }`,
      `nstat -asz`,
    ].join(' && ');
    const r = await runAsync(['ip', 'netns', 'exec', ns, 'sh', '-c', script], { signal });
    if (r.code !== 0) throw new LabError(`${model}: resetting after the BGP mesh failed: ${r.stderr.trim()}`);
    base[model] = Object.fromEntries(
      r.stdout.split('\n').flatMap((l) => {
        const m = /^(\S+)\s+(\d+)/.exec(l);
        return m ? [[m[1], Number(m[2])]] : [];
      }),
    );
  });
  state.nstatBase = base;
  writeState(state);
}

/** Build the lab; on any failure or abort, remove what was created and throw: never half-applied. */
export async function labUp(c: Cluster, opts: UpOptions = {}): Promise<LabState> {
  const signal = opts.signal;
  manyListeners(signal);
  const why = labUnavailable();
  if (why) throw new LabError(why);
  const plan: LabPlan = planLab(c);
  if (plan.steps.some((st) => st.argv.includes('ipset'))) {
    const no = ipsetUnavailable();
    if (no) throw new LabError(no);
  }
  throwIfAborted(signal);
  const owner = opts.detached ? 0 : process.pid;
  const state: LabState = {
    cluster: c.spec.name,
    mode: c.mode,
    prefix: plan.prefix,
    namespaces: Object.fromEntries(plan.names),
    listeners: [],
    created: new Date().toISOString(),
    // while it is built, the lab is this process's; `lab up` detaches it once it is complete
    owner: process.pid,
    ownerStart: processStart(process.pid),
    roles: Object.fromEntries([...c.world.netns.values()].map((ns) => [ns.name, ns.role])),
    ...(opts.policies?.length ? { policies: opts.policies } : {}),
  };
  // the state file first, so that a crash half-way still lets `lab down` find everything
  await claim(c, plan, state, signal);
  try {
    const names = new Set(plan.names.values());
    await runBatches(batches(plan.steps, names), names, signal);
    await linksSettled([...plan.names.values()], signal);
    if (opts.listeners !== false && plan.listeners.length) {
      const pid = await startListeners(
        plan.listeners.map((l) => ({ ns: plan.names.get(l.netns)!, proto: l.proto, port: l.port })),
        signal,
      );
      for (const l of plan.listeners)
        state.listeners.push({ netns: l.netns, proto: l.proto, port: l.port, pid });
    }
    await startBirds(plan, state, signal, opts.quiesce ?? true);
    throwIfAborted(signal);
    state.owner = owner;
    if (!owner) delete state.ownerStart;
    writeState(state);
    return state;
  } catch (e) {
    labDown(c);
    throw e;
  }
}

/**
 * Wait until the kernel has applied every carrier change in the lab's namespaces. A device's
 * carrier (LOWER_UP) changes at once, but its operstate, a bridge port's forwarding state and a
 * device's qdisc follow only when linkwatch runs: at once for a veth, up to a second later for a
 * bridge, and later still when something else holds RTNL (namespaces being removed by another lab
 * on a loaded machine kept a router's bridge port disabled for over a second, and a flow's ARP
 * went unanswered: lab-diff seed 4001 in CI). A device whose LOWER_UP and operstate disagree
 * still has a linkwatch event pending.
 */
export async function linksSettled(
  namespaces: readonly string[],
  signal?: AbortSignal,
  limitMs = 15_000,
): Promise<void> {
  const started = Date.now();
  // each look reads only the namespaces whose links were not settled at the last one
  let left = [...namespaces];
  for (let delay = 20; ; delay = Math.min(200, delay * 2)) {
    throwIfAborted(signal);
    const script = left.map((ns) => `ip -n ${ns} -j link show && echo`).join(' && ');
    const r = await runAsync(['sh', '-c', script], { signal });
    if (r.code !== 0) throw new LabError(`reading the lab's links failed: ${r.stderr.trim()}`);
    const pending: string[] = [];
    const still = new Set<string>();
    r.stdout
      .split('\n')
      .filter((l) => l.trim())
      .forEach((line, i) => {
        for (const l of JSON.parse(line) as { ifname: string; flags: string[]; operstate: string }[]) {
          const up = l.flags.includes('UP');
          const carrier = up && l.flags.includes('LOWER_UP');
          const oper = l.operstate;
          if (oper === 'UNKNOWN' || oper === 'DORMANT' || oper === 'TESTING') continue;
          if (carrier ? oper !== 'UP' : oper === 'UP') {
            pending.push(`${left[i]}/${l.ifname} (${oper})`);
            still.add(left[i]);
          }
        }
      });
    if (!pending.length) return;
    if (Date.now() - started > limitMs)
      throw new LabError(
        `the kernel did not apply carrier changes in ${Math.round(limitMs / 1000)} s (linkwatch): ${pending.slice(0, 4).join(', ')}`,
      );
    left = left.filter((ns) => still.has(ns));
    await pause(delay, signal);
  }
}

/** a fresh scratch directory of the lab (removed by labDown) */
export function labScratch(state: Pick<LabState, 'prefix'>): string {
  const dir = scratchPath(state.prefix);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/**
 * A shell command run in a lab namespace to change it before a flow (a fault, `lab trace --run`),
 * the flow to follow once the kernel has applied it: a device set down takes its bridge's carrier
 * with it, but the kernel applies a carrier change later (linkwatch, up to a second for a device
 * that is its own link); until then the bridge keeps its qdisc and sends, so a flow started at
 * once shows its first ARP probe on cni0 where the model, the state after it, shows none (lab-diff
 * seed 59, once the captures started faster than tcpdumps did). linksSettled waits for it.
 */
export async function labChange(
  state: Pick<LabState, 'namespaces'>,
  netns: string,
  command: string,
  signal?: AbortSignal,
): Promise<RunResult> {
  const r = labExec(state, netns, ['sh', '-c', command]);
  if (r.code === 0 && /^ip (-\S+ )*link set /.test(command))
    await linksSettled(Object.values(state.namespaces), signal);
  return r;
}

/** run a real command in a lab namespace */
export function labExec(
  state: Pick<LabState, 'namespaces'>,
  netns: string,
  argv: readonly string[],
  input?: string,
  timeoutMs?: number,
): RunResult {
  return run(['ip', 'netns', 'exec', labNs(state, netns), ...argv], input, timeoutMs);
}

/** the same, without blocking the event loop; the signal aborts it (LabInterrupted) */
export function labExecAsync(
  state: Pick<LabState, 'namespaces'>,
  netns: string,
  argv: readonly string[],
  opts: { input?: string; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<RunResult> {
  return runAsync(['ip', 'netns', 'exec', labNs(state, netns), ...argv], opts);
}

export function labNs(state: Pick<LabState, 'namespaces'>, netns: string): string {
  const ns = state.namespaces[netns];
  if (!ns) throw new LabError(`no netns "${netns}" in the lab (${Object.keys(state.namespaces).join(', ')})`);
  return ns;
}
