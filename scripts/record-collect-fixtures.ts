/**
 * Records the dump sets of test/fixtures/collect/ with the real collector on the real kernel:
 *
 *   sudo flock /tmp/podwalk-lab.lock npx tsx scripts/record-collect-fixtures.ts          # every set
 *   sudo flock /tmp/podwalk-lab.lock npx tsx scripts/record-collect-fixtures.ts calico-bgp
 *
 * For each set of scripts/collect-fixtures.ts: the seed cluster's lab (named "collect") comes up
 * in the set's mode, the fault is planted with the real command, pod-a pings pod-c when the set
 * says so, and `podwalk lab collect` (src/collect/collect.sh on every node and the router) writes
 * the dumps; the lab always goes down again. The hand-made sets are the topologies of
 * scripts/handmade-topology.ts, collected node by node:
 *
 *   sudo flock /tmp/podwalk-lab.lock npx tsx scripts/record-collect-fixtures.ts handmade-veth-pair
 *
 * test/collect.test.ts imports them without root.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildCluster } from '../src/cni/build.ts';
import { runCollector } from '../src/collect/run.ts';
import { labCollect } from '../src/lab/collect.ts';
import { labDown, labExec, labUnavailable, labUp } from '../src/lab/host.ts';
import { FIXTURE_DIR, FIXTURE_SETS, fixtureSpec, type FixtureSet } from './collect-fixtures.ts';
import {
  handmadeDown,
  handmadeUp,
  NODES,
  PAIR_NODES,
  PAIR_PREFIX,
  PREFIX,
  vethPairUp,
} from './handmade-topology.ts';

async function record(set: FixtureSet): Promise<void> {
  const out = fileURLToPath(new URL(`${set.name}/`, FIXTURE_DIR));
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  if (!set.mode) {
    const [up, down, prefix, nodes] =
      set.handmade === 'veth-pair'
        ? [vethPairUp, () => handmadeDown(PAIR_PREFIX), PAIR_PREFIX, PAIR_NODES]
        : [handmadeUp, () => handmadeDown(), PREFIX, NODES];
    await up();
    try {
      for (const n of nodes) {
        const r = runCollector({ out, netns: prefix + n, name: n });
        if (r.code !== 0) throw new Error(`${n}: the collector failed: ${r.stderr}`);
      }
    } finally {
      down();
    }
    return;
  }
  const spec = fixtureSpec();
  const c = buildCluster(spec, set.mode);
  labDown(c);
  const state = await labUp(c);
  try {
    if (set.fault) {
      const r = labExec(state, set.fault.netns, ['sh', '-c', set.fault.command]);
      if (r.code !== 0) throw new Error(`${set.fault.netns}: ${set.fault.command}: ${r.stderr}`);
    }
    if (set.ping) {
      const r = labExec(state, 'pod-a', ['ping', '-n', '-c', '1', '-W', '1', '10.244.1.5']);
      if (r.code !== 0) throw new Error(`the ping pod-a → pod-c failed: ${r.stdout}${r.stderr}`);
    }
    await labCollect(state, state.roles!, out);
  } finally {
    labDown(c);
  }
}

const why = labUnavailable();
if (why) {
  console.error(`record-collect-fixtures: ${why}`);
  process.exit(2);
}
const only = process.argv.slice(2);
const sets = only.length ? FIXTURE_SETS.filter((s) => only.includes(s.name)) : FIXTURE_SETS;
if (only.length && sets.length !== only.length) {
  console.error(`record-collect-fixtures: known sets: ${FIXTURE_SETS.map((s) => s.name).join(', ')}`);
  process.exit(2);
}
for (const s of sets) {
  await record(s);
  console.log(`recorded ${s.name}`);
}
