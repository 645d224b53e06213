/**
 * Felix's raw, mangle and nat tables (src/cni/felix.ts felixOtherTables) and the rpfilter match
 * its raw table uses: rule hashes as real calico-node v3.27 nodes print them, the IPPool's
 * natOutgoing from the cluster file, and a pod reaching a host outside the cluster: masqueraded by
 * cali-nat-outgoing on its node, the answer un-NATed by conntrack back to the pod. The real
 * iptables-save of these tables is test/felix.test.ts's (scripts/record-felix-goldens.ts).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadCluster } from '../src/cluster/load.ts';
import type { ClusterSpec, CniMode } from '../src/cluster/spec.ts';
import { buildCluster } from '../src/cni/build.ts';
import { FELIX_ALL_POOLS_SET, FELIX_MASQ_POOLS_SET, felixOtherTables } from '../src/cni/felix.ts';
import { formatRuleSpec, parseRuleSpec, shellSplit } from '../src/kernel/netfilter.ts';
import { rpfilterLookup } from '../src/kernel/netfilter/hooks.ts';
import { ip4ToInt } from '../src/wire/addr.ts';
import { iptables } from '../src/tools/iptables.ts';
import { keptAddressOut, masqueradedOut } from './masq-walk.ts';

const FILE = 'test/fixtures/nat-outgoing.yaml';
const spec = (): ClusterSpec => loadCluster(readFileSync(FILE, 'utf8'), FILE);

describe('the rpfilter match (xt_rpfilter)', () => {
  const rule = (s: string) => parseRuleSpec(shellSplit(s));

  test('iptables-save prints its flags in libxt_rpfilter order whatever order they were given in', () => {
    assert.equal(
      formatRuleSpec(rule('-m rpfilter --invert --validmark -j DROP')),
      '-m rpfilter --validmark --invert -j DROP',
    );
    assert.equal(
      formatRuleSpec(rule('-m rpfilter --accept-local --loose -j ACCEPT')),
      '-m rpfilter --loose --accept-local -j ACCEPT',
    );
  });

  test('the kernel takes it in PREROUTING of raw and mangle only (rpfilter_check, .hooks)', () => {
    const c = buildCluster(spec());
    const nf = c.world.ns('node1').netfilter;
    const r = rule('-m rpfilter --invert -j DROP');
    assert.equal(nf.refuses('raw', 'PREROUTING', r), undefined);
    assert.equal(nf.refuses('mangle', 'PREROUTING', r), undefined);
    assert.ok(nf.refuses('filter', 'FORWARD', r));
    assert.ok(nf.refuses('raw', 'OUTPUT', r));
    const ctx = { cluster: c, netns: c.world.ns('node1') };
    const res = iptables(['-t', 'filter', '-A', 'FORWARD', '-m', 'rpfilter', '-j', 'DROP'], ctx);
    assert.notEqual(res.code, 0);
    assert.equal(
      nf.chain('filter', 'FORWARD')!.rules.filter((x) => x.matches.some((m) => m.kind === 'rpfilter')).length,
      0,
    );
  });

  test('the reverse lookup: the route back to the source must leave by the ingress device', () => {
    const c = buildCluster(spec());
    const node1 = c.world.ns('node1');
    const podA = c.pods.find((p) => p.name === 'pod-a')!;
    const podB = c.pods.find((p) => p.name === 'pod-b')!;
    const src = ip4ToInt(podA.ip);
    // pod-a's own address in on its cali veth: its /32 route leaves by it
    assert.equal(rpfilterLookup(node1, src, podA.hostVeth, false, false), true);
    // the same source in on eth0: the route back is the cali veth, not eth0 (loose would pass it)
    assert.equal(rpfilterLookup(node1, src, 'eth0', false, false), false);
    assert.equal(rpfilterLookup(node1, src, 'eth0', true, false), true);
    // pod-b's address (node2's block, via eth0) claimed from pod-a's veth: spoofed
    assert.equal(rpfilterLookup(node1, ip4ToInt(podB.ip), podA.hostVeth, false, false), false);
    // a local address as source passes only with --accept-local, on the device that holds it
    assert.equal(rpfilterLookup(node1, ip4ToInt('192.168.1.10'), 'eth0', false, false), false);
    assert.equal(rpfilterLookup(node1, ip4ToInt('192.168.1.10'), 'eth0', false, true), true);
  });
});

describe("felix's raw, mangle and nat tables", () => {
  const specs = (t: ReturnType<typeof felixOtherTables>, table: string) => {
    const x = t.tables.find((y) => y.table === table)!;
    return [
      ...x.insert.flatMap((i) => i.rules.map((r) => `-I ${i.chain} ${r.spec}`)),
      ...x.chains.flatMap((c) => c.rules.map((r) => `-A ${c.name} ${r.spec}`)),
    ];
  };

  test('the cali: hashes are those real calico-node v3.27 nodes print (public iptables-save/-L outputs)', () => {
    const t = felixOtherTables([{ cidr: '10.244.0.0/16', natOutgoing: true }], ['tunl0']);
    const hash = (lines: string[]) => lines.map((l) => /cali:([\w-]{16})/.exec(l)![1]);
    assert.deepEqual(hash(specs(t, 'nat')), [
      '6gwbT8clXdHdC1b1',
      'O3lYWMrLQYEMJtB5',
      'tVnHkvAo15HuiPy0',
      'r6XmIziWUJsdOK6Z',
      'Z-c7XtVd2Bq7s_hA',
      'nYKhEzDlr11Jccal',
      'SXWvdsbh4Mw7wOln',
      'GBTAv2p5CwevEyJm',
      'flqWnvo8yq4ULQLa',
    ]);
    assert.deepEqual(hash(specs(t, 'raw')).slice(2, 8), [
      'XFX5xbM8B9qR10JG',
      'EWMPb0zVROM-woQp',
      'PWuxTAIaFCtsg5Qa',
      'fSSbGND7dgyemWU7',
      'ImU0-4Rl2WoOI9Ou',
      'lV4V2MPoMBf0hl9T',
    ]);
    assert.deepEqual(hash(specs(t, 'mangle')).slice(2, 4), ['6BJqBjBC7crtA-7-', 'KX7AGNd6rMcDUai6']);
  });

  test('natOutgoing off: cali-nat-outgoing is empty and so is the masquerade pools set', () => {
    const t = felixOtherTables([{ cidr: '10.244.0.0/16', natOutgoing: false }], []);
    assert.ok(!specs(t, 'nat').some((l) => l.startsWith('-A cali-nat-outgoing')));
    const nat = t.tables.find((x) => x.table === 'nat')!;
    assert.deepEqual(nat.chains.find((c) => c.name === 'cali-nat-outgoing')!.rules, []);
    assert.deepEqual(
      t.ipsets.map((s) => [s.name, s.members]),
      [
        [FELIX_ALL_POOLS_SET, [{ ip: '10.244.0.0', cidr: 16 }]],
        [FELIX_MASQ_POOLS_SET, []],
      ],
    );
  });

  test('the tunnel MASQUERADE rule is there per tunnel device the mode gives an address', () => {
    const tunnelRules = (mode: CniMode) =>
      buildCluster(spec(), mode)
        .world.ns('node1')
        .netfilter.chain('nat', 'cali-POSTROUTING')!
        .rules.flatMap((r) => (r.out ? [r.out.v] : []));
    assert.deepEqual(tunnelRules('calico-bgp'), []);
    assert.deepEqual(tunnelRules('calico-ipip'), ['tunl0']);
    assert.deepEqual(tunnelRules('calico-vxlan-crosssubnet'), ['vxlan.calico']);
  });
});

describe('a pod reaching a host outside the cluster', () => {
  for (const mode of ['calico-bgp', 'calico-ipip', 'calico-vxlan'] as CniMode[])
    test(`${mode}: MASQUERADE by cali-nat-outgoing on the pod's node, the answer un-NATed back to the pod`, () => {
      const { decision } = masqueradedOut(buildCluster(spec(), mode), {
        from: 'pod-a',
        to: 'outside',
        proto: 'tcp',
        port: 8080,
      });
      // the rule that decided: cali-nat-outgoing's, in node1's nat POSTROUTING
      assert.equal(decision.rule?.chain, 'cali-nat-outgoing');
    });

  test('natOutgoing: false in the IPPool: the pod keeps its address, and the answer goes to the gateway', () => {
    const s = spec();
    s.ipPool = { name: 'default-ipv4-ippool', natOutgoing: false };
    keptAddressOut(buildCluster(s, 'calico-bgp'), /IPPool default-ipv4-ippool has natOutgoing: false/);
  });

  test('the IPPool object in the cluster file: natOutgoing defaults to true, false is read', () => {
    const text = readFileSync(FILE, 'utf8');
    const pool = (specText: string) =>
      `${text}ipPool:\n  apiVersion: projectcalico.org/v3\n  kind: IPPool\n  metadata: {name: default-ipv4-ippool}\n${specText}`;
    assert.equal(spec().ipPool, undefined);
    assert.deepEqual(loadCluster(pool(''), FILE).ipPool, { name: 'default-ipv4-ippool', natOutgoing: true });
    assert.deepEqual(loadCluster(pool('  spec: {natOutgoing: false}\n'), FILE).ipPool, {
      name: 'default-ipv4-ippool',
      natOutgoing: false,
    });
    assert.throws(() => loadCluster(pool('  spec: {natOutgoing: "yes"}\n'), FILE), /natOutgoing/);
  });
});
