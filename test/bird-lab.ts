/**
 * One check of a calico-bgp lab with real BIRD, shared by test/lab-bird.test.ts,
 * test/lab-rr.test.ts and test/lab-bgp-faults.test.ts: the routes BIRD installed (`ip route` on
 * every node) are the model's byte for byte, and the emulated birdc prints what the real birdc
 * prints (`show protocols`, `show route`; BIRD's wall-clock times masked). PODWALK_RECORD=1 writes
 * the real outputs to FIXTURES/lab.json for the model-lane tests.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Cluster } from '../src/cni/build.ts';
import { ClusterError, loadCluster } from '../src/cluster/load.ts';
import { labExec, pause, run, type LabState } from '../src/lab/host.ts';
import { stateDiff } from '../src/lab/diff.ts';
import { runCommand } from '../src/tools/index.ts';

/** why real BIRD cannot run here (bird2 not installed), or undefined */
export function birdMissing(): string | undefined {
  return run(['sh', '-c', 'command -v bird && command -v birdc']).code !== 0
    ? 'bird2 not installed (apt-get install bird2)'
    : undefined;
}

/** BIRD's wall-clock times (TM_ISO_SHORT_MS: %T.%3f) */
export const maskTimes = (s: string) => s.replace(/\b\d\d:\d\d:\d\d\.\d\d\d\b/g, 'HH:MM:SS.mmm');

/** one output of the lab and the model's for it: `node: command` */
export interface BirdOutput {
  key: string;
  real: string;
  sim: string;
}

/**
 * `birdc show protocols` and `show route` of every running BIRD of the lab (`birds`: those, by
 * node; default all) and every node's `ip route`, real and modelled (birdc's times masked)
 */
export async function birdOutputs(
  c: Cluster,
  st: LabState,
  birds?: readonly string[],
): Promise<BirdOutput[]> {
  const out: BirdOutput[] = [];
  for (const b of st.birds!) {
    if (birds && !birds.includes(b.netns)) continue;
    for (const cmd of ['show protocols', 'show route']) {
      const real = labExec(st, b.netns, ['birdc', '-s', b.ctl, ...cmd.split(' ')]);
      assert.equal(real.code, 0, real.stderr);
      const sim = runCommand(c, b.netns, `birdc ${cmd}`).stdout;
      out.push({ key: `${b.netns}: birdc ${cmd}`, real: maskTimes(real.stdout), sim: maskTimes(sim) });
    }
  }
  for (const d of await stateDiff(st, c, ['ip route']))
    if (c.nodes.some((n) => n.name === d.netns))
      out.push({ key: `${d.netns}: ip route`, real: d.real, sim: d.sim });
  return out;
}

/**
 * The lab's BIRDs and kernels agree with the model once they have settled: read every `limitMs`
 * fraction until they do (BIRD acts on a Cease or a closed connection within its main loop's
 * turn, and its kernel protocol writes the kernel at once; a client's next connection attempt
 * comes after its connect delay), then compare for good (the first difference fails, with both
 * outputs). Returns how long it took.
 */
export async function birdLabSettles(
  c: Cluster,
  st: LabState,
  opts: { birds?: readonly string[]; limitMs?: number } = {},
): Promise<number> {
  const started = Date.now();
  const limit = opts.limitMs ?? 10_000;
  let out = await birdOutputs(c, st, opts.birds);
  while (out.some((o) => o.real !== o.sim) && Date.now() - started < limit) {
    await pause(250);
    out = await birdOutputs(c, st, opts.birds);
  }
  const took = Date.now() - started;
  const differ = out.filter((o) => o.real !== o.sim);
  assert.deepEqual(
    Object.fromEntries(differ.map((o) => [o.key, o.sim])),
    Object.fromEntries(differ.map((o) => [o.key, o.real])),
    `model (actual) and lab (expected) after ${took} ms: ${differ.map((o) => o.key).join(', ')}`,
  );
  return took;
}

export async function birdLabAgrees(
  c: Cluster,
  st: LabState,
  record: { dir: string; cluster: string },
  /** the birdc commands compared and recorded */
  commands: readonly string[] = ['show protocols', 'show route'],
): Promise<void> {
  const recorded: Record<string, string> = {};
  const sims: Record<string, string> = {};
  for (const b of st.birds!)
    for (const cmd of commands) {
      const real = labExec(st, b.netns, ['birdc', '-s', b.ctl, ...cmd.split(' ')]);
      assert.equal(real.code, 0, real.stderr);
      recorded[`${b.netns}: birdc ${cmd}`] = real.stdout;
      sims[`${b.netns}: birdc ${cmd}`] = runCommand(c, b.netns, `birdc ${cmd}`).stdout;
    }
  for (const n of c.nodes) recorded[`${n.name}: ip route`] = labExec(st, n.name, ['ip', 'route']).stdout;
  if (process.env.PODWALK_RECORD) {
    mkdirSync(record.dir, { recursive: true });
    const bird = run(['bird', '--version']);
    const fixture = {
      bird: (bird.stdout + bird.stderr).trim(),
      cluster: record.cluster,
      mode: 'calico-bgp',
      outputs: recorded,
    };
    writeFileSync(join(record.dir, 'lab.json'), JSON.stringify(fixture, null, 2) + '\n');
  }
  for (const d of await stateDiff(st, c, ['ip route'])) assert.equal(d.real, d.sim, `${d.netns}: ip route`);
  for (const [k, real] of Object.entries(recorded))
    if (k.includes('birdc')) assert.equal(maskTimes(sims[k]), maskTimes(real), k);
}

/**
 * The emulated commands print what the lab printed in a recording (FIXTURES/lab.json written by
 * birdLabAgrees): each output compared, BIRD's times masked. Returns the recorded outputs.
 */
export function recordedBirdAgrees(c: Cluster, file: string): Record<string, string> {
  const lab = JSON.parse(readFileSync(file, 'utf8')) as { bird: string; outputs: Record<string, string> };
  assert.equal(lab.bird, 'BIRD version 2.0.12');
  for (const [key, real] of Object.entries(lab.outputs)) {
    const [node, cmd] = key.split(': ');
    const sim = runCommand(c, node, cmd).stdout;
    assert.equal(
      cmd.startsWith('birdc') ? maskTimes(sim) : sim,
      cmd.startsWith('birdc') ? maskTimes(real) : real,
      key,
    );
  }
  return lab.outputs;
}

/** the one-line error loading a cluster file gives (it must fail with a ClusterError) */
export function clusterErrorOf(text: string, file: string): string {
  try {
    loadCluster(text, file);
  } catch (e) {
    assert.ok(e instanceof ClusterError, String(e));
    return e.message;
  }
  assert.fail('loaded');
}
