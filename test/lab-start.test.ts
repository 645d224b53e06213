/**
 * How the lab starts its long-running tools (the listeners, the captures, tcpdump in
 * test/lab-capture): startReady waits for a tool's own "ready", with no fixed start-up timeout
 * (a loaded machine made a 5 s one fail, with an empty reason and the tool left running). A tool
 * that exits first, one that hangs past the limit, and one whose start is interrupted are killed,
 * its whole process group, and the error says why with what it printed. Plain processes, no
 * namespace: this needs no root.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LabError, LabInterrupted, processRuns, startReady } from '../src/lab/host.ts';

/** a shell that starts a child of its own (`sleep`), prints that child's pid, then runs `rest` */
const withChild = (rest: string) => ['sh', '-c', `sleep 300 & echo "child $!"; ${rest}`];

/** the pids of the shell's child, from what the error quotes */
const childOf = (message: string) => Number(/child (\d+)/.exec(message)?.[1]);

async function gone(pid: number): Promise<void> {
  const until = Date.now() + 10_000;
  while (processRuns(pid)) {
    if (Date.now() > until) assert.fail(`process ${pid} still runs`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  return assert.fail('it started');
}

describe('a lab tool that does not start says why and is killed', () => {
  test('waits for its "ready" however long it takes (no start-up timeout below the limit)', async () => {
    const child = await startReady('slow', ['sh', '-c', 'sleep 1; echo ready; exec sleep 300'], (o) =>
      /^ready$/m.test(o),
    );
    try {
      assert.ok(processRuns(child.pid!));
    } finally {
      process.kill(-child.pid!, 'SIGKILL');
    }
    await gone(child.pid!);
  });

  test('one that exits first: the error has its exit status and what it printed', async () => {
    const e = await rejection(
      startReady('the listeners', withChild('echo "bind: Address already in use" >&2; exit 3'), (o) =>
        /^ready$/m.test(o),
      ),
    );
    assert.ok(e instanceof LabError, String(e));
    assert.match(
      e.message,
      /^the listeners did not start: it exited with status 3; it printed: child \d+ \/ bind: Address already in use$/,
    );
    // what it had started in its process group is killed with it
    await gone(childOf(e.message));
  });

  test('one that hangs: killed (with its process group) after the limit, and said so', async () => {
    const e = await rejection(
      startReady('the captures', withChild('echo starting; exec sleep 300'), (o) => /^ready$/m.test(o), {
        limitMs: 500,
      }),
    );
    assert.ok(e instanceof LabError, String(e));
    assert.match(
      e.message,
      /^the captures did not start: not ready after 0\.5 s \(killed\); it printed: child \d+ \/ starting$/,
    );
    await gone(childOf(e.message));
  });

  test('one that cannot be started at all', async () => {
    const e = await rejection(startReady('tcpdump', ['/nonexistent/tcpdump'], () => false));
    assert.ok(e instanceof LabError, String(e));
    assert.match(e.message, /^tcpdump could not start: .*ENOENT/);
  });

  test('a signal while it starts: interrupted, and the tool killed', async () => {
    const ac = new AbortController();
    let childPid = 0;
    const p = startReady(
      'the listeners',
      withChild('exec sleep 300'),
      (o) => {
        childPid = childOf(o);
        if (childPid) setImmediate(() => ac.abort('SIGINT'));
        return false;
      },
      { signal: ac.signal },
    );
    const e = await rejection(p);
    assert.ok(e instanceof LabInterrupted, String(e));
    assert.equal(e.message, 'interrupted by SIGINT');
    await gone(childPid);
  });
});
