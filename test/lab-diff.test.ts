/**
 * The differential suite: seeded scenarios built both in the simulation and in real network
 * namespaces on this machine's kernel, with the same fault applied on both sides; the two must
 * agree on the outcome and on every packet seen on every interface. Needs root and network
 * namespaces; elsewhere it is skipped with the reason.
 *
 * PODWALK_LAB_SCENARIOS=N runs seeds 1..N (default 60), then the NAT scenarios (a MASQUERADE or a
 * DNAT rule applied on both sides: seeds NAT_SEED_BASE+1 …, PODWALK_LAB_NAT_SCENARIOS=M of them,
 * default 12), then the Service scenarios (kube-proxy's rules, the endpoint forced on both sides,
 * `conntrack -L` compared too: seeds SVC_SEED_BASE+1 …, PODWALK_LAB_SVC_SCENARIOS=K of them,
 * default 38: 20 from pods and nodes, 12 from a host outside the cluster, then 6 of hand-written
 * EndpointSlices and sessionAffinity), then calico-vxlan (seeds CVX_SEED_BASE+K: seed K's scenario
 * in calico-vxlan, PODWALK_LAB_CVX_SCENARIOS=V of them, default 16: K = 1 … V−2, and the
 * first two NAT seeds), then calico-vxlan-crosssubnet (seeds CVXCS_SEED_BASE+K for the draws K of
 * CVXCS_DRAWS, PODWALK_LAB_CVXCS_SCENARIOS of them, default all 6), then a pod to a host outside the
 * cluster (seeds OUT_SEED_BASE+1 …, PODWALK_LAB_OUT_SCENARIOS of them, default 8: the CNI's
 * masquerade in calico-bgp, calico-vxlan and calico-vxlan-crosssubnet, and natOutgoing off; then
 * flanneld's --ip-masq in flannel-vxlan and flannel-host-gw, and off in each; `conntrack -L`
 * compared where it masquerades, and in the flannel ones with it off); PODWALK_LAB_SEED=S runs just seed S. The first PODWALK_LAB_IMPORT_SCENARIOS seeds
 * (default 12) also collect their lab right after lab up, import it (--from) and judge that World
 * against the same real run: the importer checked on the kernel's own state.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { labUnavailable, run } from '../src/lab/host.ts';
import { runScenario } from '../src/lab/differential.ts';
import { differenceReport } from '../src/lab/compare.ts';
import { CVX_SEED_BASE, CVXCS_SEED_BASE, NAT_SEED_BASE, OUT_SEED_BASE } from '../src/lab/scenarios.ts';
import { SVC_SEED_BASE } from '../src/lab/svc-scenarios.ts';

const why = labUnavailable();
const skip = why ? `real-kernel lab unavailable: ${why}` : false;
const only = process.env.PODWALK_LAB_SEED;
const count = Number(process.env.PODWALK_LAB_SCENARIOS ?? 60);
const natCount = Number(process.env.PODWALK_LAB_NAT_SCENARIOS ?? 12);
const importCount = Number(process.env.PODWALK_LAB_IMPORT_SCENARIOS ?? 12);
const svcCount = Number(process.env.PODWALK_LAB_SVC_SCENARIOS ?? 38);
const cvxCount = Number(process.env.PODWALK_LAB_CVX_SCENARIOS ?? 16);
/**
 * calico-vxlan-crosssubnet: seeds CVXCS_SEED_BASE + K for these draws K: one subnet (every route
 * felix's no-encap one), and two subnets with the flow inside one (route-del, an MTU fault) and
 * across them (TCP, a link down, an MTU fault at the pod MTU with DF)
 */
const CVXCS_DRAWS = [1, 4, 5, 9, 22, 38];
const cvxcsCount = Number(process.env.PODWALK_LAB_CVXCS_SCENARIOS ?? CVXCS_DRAWS.length);
const outCount = Number(process.env.PODWALK_LAB_OUT_SCENARIOS ?? 8);
const seeds = only
  ? [Number(only)]
  : [
      ...Array.from({ length: count }, (_, i) => i + 1),
      ...Array.from({ length: natCount }, (_, i) => NAT_SEED_BASE + 1 + i),
      ...Array.from({ length: svcCount }, (_, i) => SVC_SEED_BASE + 1 + i),
      ...Array.from({ length: Math.max(0, cvxCount - 2) }, (_, i) => CVX_SEED_BASE + 1 + i),
      ...Array.from({ length: Math.min(2, cvxCount) }, (_, i) => CVX_SEED_BASE + NAT_SEED_BASE + 1 + i),
      ...CVXCS_DRAWS.slice(0, cvxcsCount).map((k) => CVXCS_SEED_BASE + k),
      ...Array.from({ length: outCount }, (_, i) => OUT_SEED_BASE + 1 + i),
    ];

/**
 * Scenarios run PODWALK_LAB_CONCURRENCY at a time (default 2): each has namespaces of its own
 * (pw-<its cluster>-…), and a scenario spends most of its time waiting on the kernel, process starts and
 * the clients. All 92 passed in 6.5 min at 2 with nothing else running (2026-12-04); one at a
 * time (PODWALK_LAB_CONCURRENCY=1) is the way to rule out an interaction between two labs.
 */
const concurrency = Number(process.env.PODWALK_LAB_CONCURRENCY ?? 2);

describe('the differential suite', { concurrency }, () => {
  for (const seed of seeds) {
    const imported = seed <= importCount;
    const name = `differential scenario ${seed}${imported ? ', and its lab imported' : ''}`;
    test(name, { skip, timeout: 180_000 }, async () => {
      const r = await runScenario(seed, { imported });
      const report = [
        r.scenario.title,
        r.fault ? `fault: ${r.fault}` : 'no fault',
        `outcome: kernel ${r.realOk ? 'answered' : 'not answered'} (${r.trace.client.out.split('\n').slice(-1)[0]}), simulation ${r.simOk ? 'answered' : 'not answered'}${r.imported ? `, imported World ${r.imported.simOk ? 'answered' : 'not answered'}` : ''}`,
        ...differenceReport('simulation', r.trace.diffs, r.tables),
        ...(r.imported ? differenceReport('imported World', r.imported.trace.diffs, r.imported.tables) : []),
        `replay: ${r.replay}`,
      ].join('\n');
      assert.ok(r.agree, report);
    });
  }
});

/** the namespaces of the suite's labs (clusters d<seed>): other lab tests may run alongside */
function labNamespaces(): string[] {
  return run(['ip', 'netns', 'list'])
    .stdout.split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => /^pw-d\d+-/.test(n));
}

/** what was there before the suite (another user's lab) is not the suite's to remove */
const before = skip ? [] : labNamespaces();

after(() => {
  if (skip) return;
  const left = labNamespaces().filter((n) => !before.includes(n));
  assert.deepEqual(left, [], 'the suite left lab namespaces behind');
});
