/**
 * The lab's short commands (ip, bridge, nstat, conntrack, birdc, sysctl… dozens to hundreds per
 * lab) started by one small helper process instead of by podwalk itself.
 *
 * Why: Node starts a child with fork() and exec(), and its fork copies the page tables of the
 * whole Node process (a lab process holds the model, tsx's compiler and V8's heap: 200 MB and
 * more) and blocks the event loop until the child has exec'd. Measured on this 2-CPU machine at a
 * load of about 12: 8 ms of podwalk's CPU and 66 ms of its wall time per command from a 245 MB
 * Node process, against 0.4 ms and 19 ms through this helper, a Python process of a few MB whose
 * subprocess module starts a child with vfork(). A differential scenario runs about a hundred
 * commands, and two scenarios share one event loop, so every blocking fork also stalls the other.
 *
 * The helper reads one JSON request a line on its stdin ({id, argv, input?, netns?} to run a
 * command in a session of its own, in the network namespace of the file netns names when given;
 * {id, sysctl, netns} to write `sysctl -w`'s settings in that namespace, no process needed; {kill: id} to SIGKILL that command's process group) and writes one JSON
 * reply a line ({id, code, stdout, stderr} with the bytes in base64, or {id, error}). It runs every
 * command in a thread of its own, so commands run concurrently as they did when Node started
 * them. A thread joins the namespace (setns(2) changes the calling thread's network namespace
 * only, and a child starts in its parent thread's) and starts the command there: what
 * `ip netns exec NS cmd` does but one process fewer, and without its mount namespace and its
 * remount of /sys, which the commands run this way do not read. When its stdin closes (podwalk exited, or was killed), it kills the process groups of the
 * commands still running and exits: a killed podwalk leaves none of its commands behind.
 *
 * Where there is no Python (the lab itself needs it for its listeners) or the helper has died,
 * `spawned` says so and the caller starts the command itself.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import type { Socket } from 'node:net';

const SCRIPT = String.raw`
import base64, ctypes, json, os, signal, subprocess, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
lock = threading.Lock()
procs = {}
killed = set()
out = sys.stdout.buffer
def reply(obj):
    line = (json.dumps(obj) + '\n').encode()
    with lock:
        out.write(line)
        out.flush()
def killgroup(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
def enter(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    finally:
        os.close(fd)
def sysctl(settings):
    for kv in settings:
        key, _, value = kv.partition('=')
        path = '/proc/sys/' + key.translate(str.maketrans('./', '/.'))
        try:
            with open(path, 'w') as f:
                f.write(value + '\n')
        except OSError as e:
            msg = 'sysctl: setting key "%s": %s\n' % (key, e.strerror)
            return {'code': 255, 'stdout': '', 'stderr': base64.b64encode(msg.encode()).decode()}
    return {'code': 0, 'stdout': '', 'stderr': ''}
def runone(req):
    rid = req['id']
    given = req.get('input')
    netns = req.get('netns')
    if netns is not None:
        try:
            enter(netns)
        except OSError as e:
            reply({'id': rid, 'error': 'cannot enter the network namespace %s: %s' % (netns, e.strerror)})
            return
    if 'sysctl' in req:
        reply(dict(sysctl(req['sysctl']), id=rid))
        return
    try:
        env = None if req.get('env') is None else dict(os.environ, **req['env'])
        p = subprocess.Popen(req['argv'], stdin=subprocess.DEVNULL if given is None else subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                             env=env)
    except OSError as e:
        reply({'id': rid, 'error': '%s: %s' % (req['argv'][0], e.strerror or e)})
        return
    with lock:
        procs[rid] = p
        if rid in killed:
            killgroup(p)
    try:
        so, se = p.communicate(None if given is None else given.encode())
    except BrokenPipeError:
        so, se = p.communicate()
    with lock:
        procs.pop(rid, None)
        killed.discard(rid)
    reply({'id': rid, 'code': p.returncode, 'stdout': base64.b64encode(so).decode(), 'stderr': base64.b64encode(se).decode()})
for line in sys.stdin.buffer:
    req = json.loads(line)
    if 'kill' in req:
        with lock:
            killed.add(req['kill'])
            p = procs.get(req['kill'])
            if p:
                killgroup(p)
        continue
    threading.Thread(target=runone, args=(req,), daemon=True).start()
with lock:
    for p in procs.values():
        killgroup(p)
os._exit(0)
`;

export interface Spawned {
  /** the exit code, or null when a signal ended it */
  code: number | null;
  /** the signal's name (SIGKILL…) when one ended it */
  signal: string | null;
  stdout: string;
  stderr: string;
  /** the command could not be started (not found, not executable): the reason */
  error?: string;
}

interface Reply {
  id: number;
  code?: number;
  stdout?: string;
  stderr?: string;
  error?: string;
}

const signalNames = new Map(Object.entries(constants.signals).map(([name, n]) => [n, name]));

class Helper {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, (r: Spawned) => void>();
  private next = 1;
  private rest = '';
  dead = false;

  constructor(python: string) {
    // a session of its own, as every lab command has: a Ctrl-C on the terminal reaches podwalk only
    this.child = spawn(python, ['-u', '-c', SCRIPT], { stdio: ['pipe', 'pipe', 'inherit'], detached: true });
    this.child.stdin!.on('error', () => this.die());
    this.child.on('error', () => this.die());
    this.child.on('exit', () => this.die());
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => this.read(d));
    this.idle();
  }

  /** start argv; the promise settles when it has ended (or could not start) */
  run(req: Request): { id: number; done: Promise<Spawned> } {
    const id = this.next++;
    const done = new Promise<Spawned>((resolve) => this.pending.set(id, resolve));
    if (this.pending.size === 1) this.busy();
    this.child.stdin!.write(JSON.stringify({ id, ...req }) + '\n');
    return { id, done };
  }

  /** SIGKILL the process group of a command still running */
  kill(id: number): void {
    if (!this.dead && this.pending.has(id)) this.child.stdin!.write(JSON.stringify({ kill: id }) + '\n');
  }

  private read(d: string): void {
    const lines = (this.rest + d).split('\n');
    this.rest = lines.pop()!;
    for (const line of lines) {
      const r = JSON.parse(line) as Reply;
      const resolve = this.pending.get(r.id);
      if (!resolve) continue;
      this.pending.delete(r.id);
      if (!this.pending.size) this.idle();
      const code = r.code ?? null;
      resolve(
        r.error !== undefined
          ? { code: null, signal: null, stdout: '', stderr: '', error: r.error }
          : {
              code: code !== null && code >= 0 ? code : null,
              signal: code !== null && code < 0 ? (signalNames.get(-code) ?? `signal ${-code}`) : null,
              stdout: Buffer.from(r.stdout ?? '', 'base64').toString('utf8'),
              stderr: Buffer.from(r.stderr ?? '', 'base64').toString('utf8'),
            },
      );
    }
  }

  /** nothing is waited for: the helper does not keep podwalk running */
  private idle(): void {
    this.child.unref();
    (this.child.stdout as Socket).unref();
    (this.child.stdin as unknown as Socket).unref();
  }

  private busy(): void {
    this.child.ref();
    (this.child.stdout as Socket).ref();
    (this.child.stdin as unknown as Socket).ref();
  }

  private die(): void {
    if (this.dead) return;
    this.dead = true;
    for (const resolve of this.pending.values())
      resolve({ code: null, signal: null, stdout: '', stderr: '', error: 'the lab command helper exited' });
    this.pending.clear();
  }
}

let helper: Helper | undefined;

/**
 * What the helper does: run argv (with input on its stdin, env added to the environment), or write sysctl settings (`key=value`,
 * as `sysctl -w` takes them) itself, in the network namespace of the file `netns` when given
 */
export type Request =
  | { argv: readonly string[]; input?: string; netns?: string; env?: Record<string, string> }
  | { sysctl: readonly string[]; netns: string };

/**
 * Run a request through the helper: undefined when there is none (no usable Python, or it has
 * died), and the caller starts the command itself
 */
export function spawned(
  python: string | undefined,
  req: Request,
): { done: Promise<Spawned>; kill(): void } | undefined {
  if (!python) return undefined;
  if (!helper || helper.dead) {
    if (helper?.dead) return undefined;
    helper = new Helper(python);
  }
  const h = helper;
  const { id, done } = h.run(req);
  return { done, kill: () => h.kill(id) };
}
