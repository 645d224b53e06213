/**
 * The lab under interruption and with colliding names, through the real `podwalk` process: real
 * SIGINT, SIGTERM and SIGKILL sent to `lab up` and `lab trace` (to the process or to its process
 * group, as a terminal's Ctrl-C does) at several points, then nothing of the lab may be left: no
 * namespace, no process, no state file or lock, no scratch or temporary directory. Two labs whose
 * names collide must not touch each other. A small cluster (4 namespaces) keeps it quick. Needs
 * root and network namespaces; elsewhere it is skipped with the reason.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { run as podwalkRun } from '../src/cli/app.ts';
import { openOutputDir } from '../src/cli/files.ts';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCluster } from '../src/cluster/load.ts';
import { buildCluster } from '../src/cni/build.ts';
import { generateScenario } from '../src/lab/scenarios.ts';
import {
  labCondition,
  labDown,
  labUnavailable,
  labUp,
  processRuns,
  run,
  scratchPath,
  STATE_DIR,
} from '../src/lab/host.ts';

const why = labUnavailable();
const skip = why ? `real-kernel lab unavailable: ${why}` : false;

const ROOT = new URL('..', import.meta.url).pathname;
const MAIN = join(ROOT, 'src/cli/main.ts');

/** a cluster of one node and two pods: lan0, node1, pod-a, pod-b */
function cluster(name: string, pods = ['pod-a', 'pod-b']): string {
  return [
    `name: ${JSON.stringify(name)}`,
    'nodes:',
    '  - {name: node1, ip: 192.168.1.10/24, podCIDR: 10.244.0.0/24}',
    'pods:',
    ...pods.map(
      (p, i) => `  - {name: ${p}, node: node1${i === pods.length - 1 ? ', listen: [tcp/8080]' : ''}}`,
    ),
    '',
  ].join('\n');
}

let dir = '';
/** a PYTHONPATH whose sitecustomize makes every Python start take two seconds */
let slowPython = '';
const file = (name: string) => join(dir, `${name}.yaml`);
/** the model of a test cluster, for what the test does itself (setting up, cleaning up) */
const model = (name: string) => buildCluster(loadCluster(readFileSync(file(name), 'utf8'), file(name)));

interface Done {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** `podwalk ARGS` in its own process group (so that a signal can go to the group, as Ctrl-C does) */
function start(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<Done>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { child, done };
}

/**
 * `podwalk ARGS` run in this process (its real code, its real output and exit status): for what
 * needs no signal, without the cost of starting a process
 */
async function podwalk(args: string[]): Promise<Done> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await podwalkRun(args, {
    out: (x) => out.push(x),
    err: (x) => err.push(x),
    readFile: (p) => readFileSync(p, 'utf8'),
    openDir: openOutputDir,
    env: {},
    isTTY: false,
  });
  const text = (l: string[]) => (l.length ? l.join('\n') + '\n' : '');
  return { code, signal: null, stdout: text(out), stderr: text(err) };
}

const show = (r: Done) => `exit ${r.code ?? r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

async function waitFor<T>(what: string, probe: () => T | undefined, ms = 120_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function namespaces(prefix: string): string[] {
  return run(['ip', 'netns', 'list'])
    .stdout.split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => n.startsWith(prefix));
}

/** pids of the processes in a namespace, with their command names */
function processesIn(ns: string): { pid: number; comm: string }[] {
  return run(['ip', 'netns', 'pids', ns])
    .stdout.split('\n')
    .filter(Boolean)
    .map((p) => {
      let comm = '?';
      try {
        comm = readFileSync(`/proc/${p}/comm`, 'utf8').trim();
      } catch {
        // gone meanwhile
      }
      return { pid: Number(p), comm };
    });
}

const tmpLabDirs = () => readdirSync(tmpdir()).filter((f) => f.startsWith('podwalk-lab-'));

/** nothing of the lab named `name` is left: namespaces, processes, state, lock, scratch, temp dirs */
function assertGone(name: string, pids: number[], tmpBefore: string[]): void {
  const prefix = `pw-${name.toLowerCase()}-`;
  assert.deepEqual(namespaces(prefix), [], 'namespaces left');
  const alive = pids.filter(processRuns);
  const what = (pid: number) => {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
      const net = readlinkSync(`/proc/${pid}/ns/net`);
      const ppid = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[1];
      return `${pid} (parent ${ppid}, ${net}): ${cmd}`;
    } catch {
      return `${pid}: gone`;
    }
  };
  assert.deepEqual(alive, [], `processes left:\n${alive.map(what).join('\n')}`);
  for (const f of [`${name}.json`, `${name}.json.tmp`, `${name}.lock`, `${name}.d`].map(
    (f) => `${STATE_DIR}/pw-${f.toLowerCase()}`,
  ))
    assert.ok(!existsSync(f), `${f} left`);
  assert.deepEqual(
    tmpLabDirs().filter((d) => !tmpBefore.includes(d)),
    [],
    'temporary directories left',
  );
}

describe('lab up and lab trace under signals: nothing left behind', { skip, timeout: 600_000 }, () => {
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'podwalk-sigtest-'));
    slowPython = join(dir, 'slow-python');
    mkdirSync(slowPython);
    writeFileSync(join(slowPython, 'sitecustomize.py'), 'import time\ntime.sleep(2)\n');
    for (const n of ['sigt', 'nwc', 'nwc-b', 'Sigt', 'a.b', 'a-b', 'x', 'x-b'])
      writeFileSync(file(n), cluster(n));
    writeFileSync(file('x'), cluster('x', ['pod-a', 'b-node1']));
    for (const n of ['sigt', 'nwc', 'nwc-b', 'a.b', 'x', 'x-b']) labDown(model(n));
  });
  after(() => {
    for (const n of ['sigt', 'nwc', 'nwc-b', 'a.b', 'x', 'x-b']) labDown(model(n));
    rmSync(dir, { recursive: true, force: true });
  });

  type Point = 'namespaces' | 'links' | 'listener' | 'captures';

  /** processes whose command line holds `needle` (found from /proc, without starting a process) */
  function withCommandLine(needle: string): number[] {
    return readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          return readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(needle);
        } catch {
          return false;
        }
      })
      .map(Number);
  }

  /**
   * Wait until the lab has reached `point` (or the process ended: then fail with its output);
   * returns the pids of every process in its namespaces so far.
   */
  async function reach(point: Point, p: ReturnType<typeof start>): Promise<number[]> {
    const prefix = 'pw-sigt-';
    let ended: Done | undefined;
    void p.done.then((d) => (ended = d));
    await waitFor(
      point,
      () => {
        if (ended) throw new Error(`the process ended before its ${point} were there:\n${show(ended)}`);
        switch (point) {
          case 'namespaces':
            return namespaces(prefix).length > 0;
          case 'links':
            // node1 has its eth0 and cni0, the pods are not wired yet
            return (
              namespaces(prefix).includes(`${prefix}node1`) &&
              /cni0/.test(run(['ip', '-n', `${prefix}node1`, 'link']).stdout)
            );
          case 'listener':
            // the listeners' one python3 (it names each socket's namespace on its command line)
            // exists from the moment it is started, while it still starts up in the root
            // namespace, until long after it is ready; it is the last thing lab up starts
            return withCommandLine(`/run/netns/${prefix}pod-b,tcp,8080`).length > 0;
          case 'captures':
            // the captures' one process writes the index of its pcap files once every socket is
            // bound (src/lab/capture.ts), then says it is ready
            return existsSync(join(scratchPath(prefix), 'index'));
        }
      },
      120_000,
    );
    return [
      ...namespaces(prefix).flatMap((n) => processesIn(n).map((x) => x.pid)),
      ...withCommandLine(`/run/netns/${prefix}`),
    ];
  }

  /** a test starts with no lab of sigt */
  function clean(): void {
    labDown(model('sigt'));
    assert.deepEqual(namespaces('pw-sigt-'), []);
  }

  const cases: { cmd: 'up' | 'trace'; at: Point; signal: NodeJS.Signals; group: boolean }[] = [
    { cmd: 'up', at: 'namespaces', signal: 'SIGINT', group: false },
    { cmd: 'up', at: 'links', signal: 'SIGINT', group: true },
    { cmd: 'up', at: 'listener', signal: 'SIGINT', group: true },
    { cmd: 'up', at: 'links', signal: 'SIGTERM', group: false },
    { cmd: 'trace', at: 'links', signal: 'SIGINT', group: true },
    { cmd: 'trace', at: 'captures', signal: 'SIGINT', group: false },
  ];
  for (const c of cases)
    test(`${c.signal} to ${c.group ? 'the process group of ' : ''}lab ${c.cmd} once its ${c.at} are there: interrupted, nothing left`, async () => {
      const args =
        c.cmd === 'up'
          ? ['lab', 'up', '--cluster', file('sigt')]
          : ['lab', 'trace', 'pod-a', 'pod-b:8080', '--cluster', file('sigt')];
      // the listener is ready a moment after it starts: to land a signal in that moment every
      // time, its Python starts slowly here (a sitecustomize that sleeps; podwalk is unchanged).
      // So it does at every point: lab up builds independent namespaces side by side, and a
      // 4-namespace lab can be up before the test has seen its namespaces or links and sent the
      // signal (CI, 2026-12-05: "is up", then killed by the SIGINT meant for the build)
      const env: Record<string, string> = { PYTHONPATH: slowPython };
      clean();
      const tmpBefore = tmpLabDirs();
      const p = start(args, env);
      const pids = await reach(c.at, p);
      process.kill(c.group ? -p.child.pid! : p.child.pid!, c.signal);
      const r = await p.done;
      assert.equal(r.code, c.signal === 'SIGTERM' ? 143 : 130, show(r));
      assert.equal(r.stdout, '', show(r));
      assert.match(r.stderr, new RegExp(`^podwalk: interrupted by ${c.signal}: `), show(r));
      assert.equal(r.stderr.trim().split('\n').length, 1, show(r));
      assertGone('sigt', pids, tmpBefore);
    });

  for (const [cmd, at] of [
    ['up', 'links'],
    ['trace', 'captures'],
  ] as const)
    test(`SIGKILL to lab ${cmd} once its ${at} are there: status says orphaned, down removes everything`, async () => {
      clean();
      const tmpBefore = tmpLabDirs();
      const args =
        cmd === 'up'
          ? ['lab', 'up', '--cluster', file('sigt')]
          : ['lab', 'trace', 'pod-a', 'pod-b:8080', '--cluster', file('sigt')];
      // a slow Python: lab up is not over before the signal (see above)
      const p = start(args, { PYTHONPATH: slowPython });
      let pids = await reach(at, p);
      process.kill(-p.child.pid!, 'SIGKILL');
      const killed = await p.done;
      assert.equal(killed.signal, 'SIGKILL', show(killed));
      // what the killed process had started lives on until lab down
      pids = [
        ...new Set([...pids, ...namespaces('pw-sigt-').flatMap((n) => processesIn(n).map((x) => x.pid))]),
      ];
      const status = await podwalk(['lab', 'status', '--cluster', file('sigt')]);
      assert.equal(status.code, 1, show(status));
      assert.match(
        status.stdout.split('\n')[0],
        new RegExp(`^lab sigt: orphaned \\(owner pid ${p.child.pid} is gone\\): run podwalk lab down$`),
      );
      const again = await podwalk(args);
      assert.equal(again.code, 2, show(again));
      assert.match(
        again.stderr,
        /orphaned: owner pid \d+ is gone\): run podwalk lab down first/,
        show(again),
      );
      // every lab on the machine, without its cluster file (the other lab files' labs may be listed too)
      const all = await podwalk(['lab', 'status', '--all']);
      assert.equal(all.code, 1, show(all));
      assert.match(
        all.stdout,
        new RegExp(
          `^lab sigt: orphaned \\(owner pid ${p.child.pid} is gone; flannel-vxlan, since [^)]+\\), 4 of 4 namespaces: run podwalk lab down --orphaned$`,
          'm',
        ),
        show(all),
      );
      // lab up's lab removed through its cluster file, lab trace's by its state file alone
      const down = await podwalk(
        cmd === 'up' ? ['lab', 'down', '--cluster', file('sigt')] : ['lab', 'down', '--orphaned'],
      );
      assert.equal(down.code, 0, show(down));
      assert.match(
        down.stdout,
        cmd === 'up' ? /^removed 4 namespaces: / : /^lab sigt: removed 4 namespaces: pw-sigt-/m,
      );
      assertGone('sigt', pids, tmpBefore);
      assert.doesNotMatch((await podwalk(['lab', 'status', '--all'])).stdout, /^lab sigt:/m);
      assert.equal(labCondition(model('sigt')).kind, 'down');
    });

  test('SIGKILL to lab scenario --imported while it collects: nothing in /tmp, its next run removes every trace', async () => {
    // seed 960 (flannel-vxlan, 2 nodes, 4 pods): a small lab, outside the seeds lab-diff runs
    const seed = 960;
    const s = generateScenario(seed);
    const c = buildCluster(s.spec, s.mode);
    labDown(c);
    const prefix = `pw-${s.spec.name}-`;
    // the lab's temporary directories only: other test files make podwalk-… ones of their own
    // meanwhile (npm test runs files side by side)
    const labTmp = () => readdirSync(tmpdir()).filter((f) => /^podwalk-(collect|lab)-/.test(f));
    const tmpBefore = labTmp();
    const collecting = join(scratchPath(prefix), 'collect');
    const p = start(['lab', 'scenario', String(seed), '--imported']);
    let ended: Done | undefined;
    void p.done.then((d) => (ended = d));
    await waitFor('the collection', () => {
      if (ended) throw new Error(`the scenario ended before its collection:\n${show(ended)}`);
      return existsSync(collecting);
    });
    const pids = namespaces(prefix).flatMap((n) => processesIn(n).map((x) => x.pid));
    process.kill(-p.child.pid!, 'SIGKILL');
    assert.equal((await p.done).signal, 'SIGKILL');
    // the collection was in the lab's scratch directory (a SIGKILL left /tmp/podwalk-collect-*)
    assert.deepEqual(
      labTmp().filter((f) => !tmpBefore.includes(f)),
      [],
      'temporary directories left',
    );
    assert.equal(labCondition(c).kind, 'orphaned');
    // what lab down (and the scenario's next run, which starts with it) removes
    labDown(c);
    assertGone(s.spec.name, pids, tmpLabDirs());
  });

  test('lab down of one lab leaves a lab whose name starts the same alone (nwc, nwc-b)', async () => {
    for (const n of ['nwc-b', 'nwc']) await labUp(model(n), { detached: true });
    const b = namespaces('pw-nwc-b-');
    const listeners = b.flatMap((n) => processesIn(n).map((x) => x.pid));
    assert.equal(b.length, 4);
    assert.ok(listeners.length > 0);
    const down = await podwalk(['lab', 'down', '--cluster', file('nwc')]);
    assert.equal(down.code, 0, show(down));
    assert.equal(
      down.stdout,
      `removed 4 namespaces: ${['lan0', 'node1', 'pod-a', 'pod-b'].map((n) => `pw-nwc-${n}`).join(' ')}\n`,
    );
    assert.deepEqual(namespaces('pw-nwc-b-'), b);
    assert.ok(listeners.every(processRuns), 'the other lab lost processes');
    assert.equal(labCondition(model('nwc-b')).kind, 'up');
    labDown(model('nwc-b'));
    assertGone('nwc-b', listeners, []);
  });

  for (const [first, second] of [
    ['sigt', 'Sigt'],
    ['a.b', 'a-b'],
  ])
    test(`names that give the same namespaces are refused, and not removed by the other (${first}, ${second})`, async () => {
      await labUp(model(first), { detached: true });
      const mine = namespaces(`pw-${first.replace('.', '-').toLowerCase()}-`);
      assert.equal(mine.length, 4);
      const up = await podwalk(['lab', 'up', '--cluster', file(second)]);
      assert.equal(up.code, 2, show(up));
      assert.match(
        up.stderr,
        new RegExp(`^podwalk: the cluster name "${second}" collides with the running lab of "${first}"`),
      );
      const down = await podwalk(['lab', 'down', '--cluster', file(second)]);
      assert.equal(down.code, 2, show(down));
      assert.match(
        down.stderr,
        new RegExp(`belongs to the cluster "${first.replace('.', '\\.')}", not "${second}": nothing removed`),
      );
      const trace = await podwalk(['lab', 'trace', 'pod-a', 'pod-b:8080', '--cluster', file(second)]);
      assert.equal(trace.code, 2, show(trace));
      assert.deepEqual(namespaces(`pw-${first.replace('.', '-').toLowerCase()}-`), mine);
      assert.equal(labCondition(model(first)).kind, 'up');
      labDown(model(first));
    });

  test('a namespace name two labs would share is refused (x with pod b-node1, x-b with node1)', async () => {
    await labUp(model('x-b'), { detached: true });
    const up = await podwalk(['lab', 'up', '--cluster', file('x')]);
    assert.equal(up.code, 2, show(up));
    assert.match(
      up.stderr,
      /^podwalk: the cluster name "x" collides with the running lab of "x-b": both want namespace pw-x-b-node1/,
    );
    // and x's lab down does not take x-b's pw-x-b-node1
    assert.equal(
      (await podwalk(['lab', 'down', '--cluster', file('x')])).stdout,
      'no namespaces of the lab of "x" were left\n',
    );
    assert.equal(namespaces('pw-x-b-').length, 4);
    labDown(model('x-b'));
  });
});
