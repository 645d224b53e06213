/**
 * A node's netfilter tables made on its first netfilter read or write (Netns.netfilterLater):
 * felix's, and the filter table's rules of kube-proxy's FORWARD chain, the firewall plugin, flanneld
 * and the bridge layout's policy agent, and flanneld's masquerade, against the same build with
 * every node's tables made in the build (`tablesNow`, as before): the same clusters, then the same
 * random sequence of what reads or writes a node's netfilter (walks between random pods,
 * iptables-save, ipset list, iptables -L with counters, a rule appended or inserted by hand in the
 * filter or nat table before anything read the node, doctor's cluster-wide checks), each answer
 * compared, then the whole world as data and diffWorlds. In every mode on the seed cluster, the
 * NetworkPolicy scenario, a synthetic cluster with policies (pod and namespace selectors, ipBlocks
 * with exceptions, named and numeric ports, ranges) in two Calico modes and in the bridge layout,
 * the Services example (kube-proxy's tables written in the build, after the queued programs) and
 * flanneld without `--ip-masq`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadCluster } from '../src/cluster/load.ts';
import { seedCluster } from '../src/cluster/seed.ts';
import { CNI_MODES, type ClusterSpec, type CniMode } from '../src/cluster/spec.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { runChecks } from '../src/diagnose/checks.ts';
import { diffWorlds, worldToData } from '../src/kernel/snapshot.ts';
import { seededRandom } from '../src/kernel/world.ts';
import { applyRun, runCommand } from '../src/tools/index.ts';
import { walk } from '../src/trace/walk.ts';

/** 6 nodes × 4 pods in two namespaces, and policies of every kind felix compiles */
const POLICY_CLUSTER = `
name: felix-lazy
cni: calico-vxlan
mtu: 1500
subnets:
  - { name: lan0, cidr: 192.168.1.0/24, gateway: 192.168.1.1 }
nodes:
${Array.from({ length: 6 }, (_, i) => `  - { name: node${i}, ip: 192.168.1.${10 + i}/24, podCIDR: 10.244.${i}.0/24 }`).join('\n')}
namespaces:
  - { name: shop, labels: { team: shop } }
  - { name: ops, labels: { team: ops } }
pods:
${Array.from(
  { length: 24 },
  (_, k) =>
    `  - { name: p${k}, node: node${k % 6}, namespace: ${k % 3 ? 'shop' : 'ops'}, labels: { app: a${k % 4}, tier: t${k % 2} }, listen: [tcp/8080/http, udp/53/dns, tcp/9000] }`,
).join('\n')}
policies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: { name: web-in, namespace: shop }
    spec:
      podSelector: { matchLabels: { app: a1 } }
      policyTypes: [Ingress]
      ingress:
        - from:
            - podSelector: { matchLabels: { tier: t0 } }
            - namespaceSelector: { matchLabels: { team: ops } }
          ports:
            - { protocol: TCP, port: http }
            - { protocol: TCP, port: 9000, endPort: 9010 }
        - from:
            - ipBlock: { cidr: 10.244.0.0/16, except: [10.244.3.0/24, 10.244.4.0/24] }
          ports:
            - { protocol: UDP, port: 53 }
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: { name: egress, namespace: shop }
    spec:
      podSelector: { matchExpressions: [{ key: app, operator: In, values: [a2, a0] }] }
      policyTypes: [Egress]
      egress:
        - to:
            - podSelector: { matchLabels: { app: a1 } }
          ports:
            - { protocol: TCP, port: http }
        - to:
            - namespaceSelector: {}
              podSelector: { matchLabels: { app: a3 } }
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: { name: deny-all, namespace: ops }
    spec:
      podSelector: {}
      policyTypes: [Ingress]
`;

interface Case {
  name: string;
  spec: ClusterSpec;
  mode: CniMode;
  /** the lazy build leaves some node's tables to be made (false where the build's own traffic reads every node) */
  lazy: boolean;
}

const example = (file: string): ClusterSpec =>
  loadCluster(readFileSync(new URL(`../examples/${file}`, import.meta.url), 'utf8'), file);

const cases: Case[] = [
  ...CNI_MODES.map((mode) => ({ name: `seed ${mode}`, spec: seedCluster(), mode, lazy: true })),
  {
    name: 'policies calico-vxlan, bridge layout',
    spec: { ...loadCluster(POLICY_CLUSTER, 'felix-lazy.yaml'), calicoLayout: 'bridge' },
    mode: 'calico-vxlan',
    lazy: true,
  },
  { name: 'services flannel-vxlan', spec: example('services.yaml'), mode: 'flannel-vxlan', lazy: false },
  {
    name: 'seed flannel-vxlan without --ip-masq',
    spec: { ...seedCluster(), flannel: { ipMasq: false } },
    mode: 'flannel-vxlan',
    lazy: true,
  },
  ...(['calico-vxlan', 'calico-ipip'] as const).map((mode) => ({
    name: `policies ${mode}`,
    spec: loadCluster(POLICY_CLUSTER, 'felix-lazy.yaml'),
    mode,
    lazy: true,
  })),
  (() => {
    const spec = loadCluster(
      readFileSync(new URL('../scenarios/policy-blocks-dns.yaml', import.meta.url), 'utf8'),
      'policy-blocks-dns.yaml',
    );
    return { name: 'scenario policy-blocks-dns', spec, mode: spec.cni, lazy: true };
  })(),
];

/** the same random sequence of reads and writes on both clusters, each answer compared */
function exercise(eager: Cluster, lazy: Cluster, seed: number): void {
  const rnd = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const nodes = eager.nodes.map((n) => n.name);
  const pods = eager.pods.map((p) => p.name);
  const both = <T>(f: (c: Cluster) => T, what: string) => assert.deepStrictEqual(f(lazy), f(eager), what);
  let sport = 41000;
  for (let step = 0; step < 14; step++) {
    const node = pick(nodes);
    switch (Math.floor(rnd() * 8)) {
      case 0:
      case 1: {
        const from = pick(pods);
        const to = pick(pods);
        const proto = rnd() < 0.7 ? ('tcp' as const) : ('udp' as const);
        const req = { from, to, proto, port: proto === 'tcp' ? 8080 : 53, sport: sport++ };
        both((c) => JSON.parse(JSON.stringify(walk(c, req))), `walk ${from} → ${to} ${proto}`);
        break;
      }
      case 2:
        both((c) => runCommand(c, node, 'iptables-save'), `iptables-save on ${node}`);
        break;
      case 3:
        both((c) => runCommand(c, node, 'ipset list'), `ipset list on ${node}`);
        break;
      case 4:
        both((c) => runCommand(c, node, 'iptables -t filter -L -n -v'), `iptables -L on ${node}`);
        break;
      case 5: {
        // written before anything read the node: the rule lands where it would on the eager table
        const cmd =
          rnd() < 0.5
            ? `${node}: iptables -I FORWARD 2 -s 10.9.${step}.0/24 -j DROP`
            : `${node}: iptables -A ${eager.layout === 'calico' ? 'cali-FORWARD' : 'KUBE-FORWARD'} -d 10.9.${step}.1/32 -j ACCEPT`;
        both((c) => applyRun(c, [{ l: cmd, where: 'test' }]), cmd);
        break;
      }
      case 6:
        both((c) => JSON.parse(JSON.stringify(runChecks(c))), 'doctor checks');
        break;
      case 7: {
        const cmd = `${node}: iptables -t nat -I POSTROUTING 1 -d 10.9.${step}.2/32 -j RETURN`;
        both((c) => applyRun(c, [{ l: cmd, where: 'test' }]), cmd);
        break;
      }
    }
  }
}

for (const k of cases)
  test(`a node's tables made on first use equal those made in the build: ${k.name}`, () => {
    for (const seed of [1, 2, 3]) {
      const eager = buildCluster(k.spec, k.mode, { tablesNow: true });
      const lazy = buildCluster(k.spec, k.mode);
      assert.ok(
        eager.nodes.every((n) => !eager.world.ns(n.name).netfilterQueued),
        'tablesNow made every node',
      );
      if (k.lazy)
        assert.ok(
          lazy.nodes.some((n) => lazy.world.ns(n.name).netfilterQueued),
          'some node left for its first read',
        );
      exercise(eager, lazy, seed);
      assert.deepStrictEqual(diffWorlds(lazy.world, eager.world), [], 'diffWorlds');
      assert.deepStrictEqual(worldToData(lazy.world), worldToData(eager.world), 'the worlds as data');
      assert.ok(
        lazy.nodes.every((n) => !lazy.world.ns(n.name).netfilterQueued),
        'every node made by the reads',
      );
    }
  });

test('a namespace runs its queued netfilter programs once, in order, before the first read or write', () => {
  const c = buildCluster(seedCluster(), 'calico-vxlan');
  const ns = c.world.ns(c.nodes[0].name);
  assert.ok(ns.netfilterQueued);
  const seen: string[] = [];
  ns.netfilterLater((nf) => {
    seen.push(`second sees ${nf.chain('filter', 'cali-FORWARD') ? 'felix' : 'nothing'}`);
    nf.newChain('filter', 'LATER');
  });
  assert.deepStrictEqual(seen, []);
  assert.ok(ns.netfilter.chain('filter', 'LATER'));
  assert.deepStrictEqual(seen, ['second sees felix']);
  assert.ok(!ns.netfilterQueued);
  void ns.netfilter;
  assert.deepStrictEqual(seen, ['second sees felix']);
});
