/**
 * Rules carry their origin as data: the NetworkPolicy rule (namespace, name, direction, index),
 * the policy chain's jump, established accept and default deny, the CNI plugin's and flanneld's
 * rules, kube-proxy's. A diagnosis reads these fields; the comment is only how a rule prints.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadCluster } from '../src/cluster/load.ts';
import { seedCluster } from '../src/cluster/seed.ts';
import { buildCluster } from '../src/cni/build.ts';
import { felixPolicyChain } from '../src/cni/felix.ts';
import type { Rule } from '../src/kernel/netfilter.ts';
import { runCommand } from '../src/tools/index.ts';
import { walk } from '../src/trace/walk.ts';

const policyCluster = () =>
  buildCluster(
    loadCluster(
      readFileSync(new URL('../scenarios/policy-blocks-dns.yaml', import.meta.url), 'utf8'),
      'policy-blocks-dns.yaml',
    ),
    'calico-bgp',
  );

function rules(c: ReturnType<typeof buildCluster>, node: string): { chain: string; rule: Rule }[] {
  const out: { chain: string; rule: Rule }[] = [];
  for (const chain of c.world.ns(node).netfilter.table('filter').values())
    for (const rule of chain.rules) out.push({ chain: chain.name, rule });
  return out;
}

test('NetworkPolicy rules carry the policy, the direction and the rule index', () => {
  const c = policyCluster();
  const all = c.nodes.flatMap((n) => rules(c, n.name));
  const byPolicy = all.filter((r) => r.rule.origin?.kind === 'network-policy');
  assert.ok(byPolicy.length > 0);
  for (const { chain, rule } of byPolicy) {
    const o = rule.origin!;
    if (o.kind !== 'network-policy') continue;
    // felix's chain of that policy and direction holds it; its first rule has felix's comment
    const policy = c.spec.policies!.find((p) => p.namespace === o.namespace && p.name === o.name)!;
    assert.equal(chain, felixPolicyChain(policy, o.direction));
    assert.ok(
      o.ruleIndex >= 0 && o.ruleIndex < (o.direction === 'ingress' ? policy.ingress : policy.egress).length,
    );
  }
  // the first rule of a policy's chain carries felix's comment after its hash: the comment only prints the policy
  for (const n of c.nodes)
    for (const p of c.spec.policies!)
      for (const dir of ['ingress', 'egress'] as const) {
        const head = c.world.ns(n.name).netfilter.chain('filter', felixPolicyChain(p, dir))?.rules[0];
        if (!head) continue;
        const comments = head.matches.flatMap((m) => (m.kind === 'comment' ? [m.text] : []));
        assert.match(comments[0], /^cali:[\w-]{16}$/);
        assert.equal(comments[1], `Policy ${p.namespace}/knp.default.${p.name} ${dir}`);
      }
  const denies = all.filter(
    (r) => r.rule.origin?.kind === 'policy-chain' && r.rule.origin.role === 'default-deny',
  );
  assert.ok(denies.length > 0);
  for (const { rule } of denies) {
    assert.equal(rule.target?.kind, 'DROP');
    const o = rule.origin!;
    assert.ok(o.kind === 'policy-chain' && o.selectedBy.length > 0 && /\//.test(o.pod));
  }
  // a denied walk ends on a rule whose origin names the pod and its policies
  const s = c.spec.scenario!;
  const w = walk(c, { from: s.from, to: s.to, proto: s.proto, port: s.port });
  assert.equal(w.request.disposition.kind, 'dropped');
  const drop = all.find(
    (r) => r.rule.origin?.kind === 'policy-chain' && r.rule.origin.role === 'default-deny' && r.rule.pkts > 0,
  );
  assert.ok(drop, 'the deciding rule is the default deny of the isolated pod');
});

test('the CNI plugin, flanneld and kube-proxy rules say whose they are', () => {
  const c = buildCluster(seedCluster(), 'flannel-vxlan');
  const r = rules(c, 'node1');
  const kinds = new Set(r.map((x) => x.rule.origin?.kind));
  assert.deepEqual([...kinds].sort(), ['cni', 'kube-proxy']);
  const perPod = r.filter((x) => x.rule.origin?.kind === 'cni' && x.rule.origin.pod === 'default/pod-a');
  assert.equal(perPod.length, 2);
  assert.ok(
    r
      .filter((x) => x.chain === 'FLANNEL-FWD')
      .every((x) => x.rule.origin?.kind === 'cni' && x.rule.origin.component === 'flanneld'),
  );
  assert.ok(r.filter((x) => x.chain === 'KUBE-FORWARD').every((x) => x.rule.origin?.kind === 'kube-proxy'));
  // a rule a user adds has none
  assert.equal(runCommand(c, 'node1', 'iptables -A KUBE-FORWARD -s 10.9.9.9 -j ACCEPT').code, 0);
  assert.equal(
    c.world.ns('node1').netfilter.chain('filter', 'KUBE-FORWARD')!.rules.at(-1)!.origin,
    undefined,
  );
});
