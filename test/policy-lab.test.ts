/**
 * NetworkPolicy on the real kernel: the lab restores the model's iptables (policy chains
 * included) into network namespaces, and one allowed and one denied flow must behave on the
 * kernel as in the simulation, packet by packet. Root only, with its own cluster name ("polt",
 * test/fixtures/policy-cluster.yaml), never the seed's; skipped with the reason elsewhere.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadCluster, loadPolicies } from '../src/cluster/load.ts';
import { buildCluster } from '../src/cni/build.ts';
import { labDown, labUnavailable, labUp } from '../src/lab/host.ts';
import { labTrace } from '../src/lab/trace.ts';
import { stateDiff } from '../src/lab/diff.ts';

const why = labUnavailable();
const skip = why ? `real-kernel lab unavailable: ${why}` : false;

const spec = loadCluster(
  readFileSync(new URL('./fixtures/policy-cluster.yaml', import.meta.url), 'utf8'),
  'c',
);
assert.equal(spec.name, 'polt');
spec.policies = loadPolicies(
  [
    'apiVersion: networking.k8s.io/v1',
    'kind: NetworkPolicy',
    'metadata: {name: web-in, namespace: prod}',
    'spec:',
    '  podSelector: {matchLabels: {app: web}}',
    '  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: http}]}]',
  ].join('\n'),
  'web.yaml',
);
const lab = buildCluster(spec, 'calico-bgp');

describe('NetworkPolicy in the real-kernel lab (calico-bgp)', { skip }, () => {
  after(() => {
    labDown(lab);
  });

  for (const [from, allowed] of [
    ['client', true],
    ['devclient', false],
  ] as const)
    test(
      `${from} → web:8080 is ${allowed ? 'allowed' : 'denied'} on the kernel as in the model`,
      { timeout: 120_000 },
      async () => {
        labDown(lab);
        const state = await labUp(lab);
        try {
          const tables = await stateDiff(state, buildCluster(spec, 'calico-bgp'), ['iptables-save']);
          for (const t of tables)
            assert.ok(t.equal, `${t.netns}: iptables-save differs\n${t.sim}\n---\n${t.real}`);
          const r = await labTrace(state, buildCluster(spec, 'calico-bgp'), {
            from,
            to: 'web',
            proto: 'tcp',
            port: 8080,
          });
          assert.equal(r.sim.request.disposition.kind, allowed ? 'delivered' : 'dropped');
          assert.equal(r.client.code === 0, allowed, `real client: ${r.client.out}`);
          const differ = r.diffs.filter((d) => d.first !== -1).map((d) => `${d.netns}/${d.dev}`);
          assert.ok(r.agree, `interfaces differ: ${differ.join(', ')}`);
        } finally {
          labDown(lab);
        }
      },
    );
});
