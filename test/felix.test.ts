/**
 * Felix's filter chains (src/cni/felix.ts) in Calico's layout: its rule hashes and shortened names
 * against the values felix's own tests expect, every node's iptables-save against what the real
 * iptables 1.8.9 (nf_tables) saved after loading felix's rules (scripts/record-felix-goldens.ts),
 * and flows walked through them on a cluster whose policies use every peer and port form.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadCluster } from '../src/cluster/load.ts';
import type { CniMode } from '../src/cluster/spec.ts';
import { buildCluster } from '../src/cni/build.ts';
import {
  felixEndpointChain,
  lengthLimitedId,
  ruleHashes,
  selectorUniqueId,
  type FelixRule,
} from '../src/cni/felix.ts';
import { worldToData } from '../src/kernel/snapshot.ts';
import { runCommand } from '../src/tools/index.ts';
import { ipsetSaveText } from '../src/tools/ipset.ts';
import { iptablesSave } from '../src/tools/iptables-save.ts';
import { dropText } from '../src/render/step.ts';
import { walk } from '../src/trace/walk.ts';
import type { Proto } from '../src/trace/types.ts';
import { CASES } from '../scripts/record-felix-goldens.ts';

const any = { kind: 'cni', component: 'felix', purpose: 'test' } as const;
const rule = (action: string): FelixRule => ({ action, origin: any });

describe("felix's hashing", () => {
  test('rule hashes chain SHA-224s as Chain.RuleHashes does (felix/iptables/table_test.go, rules_test.go)', () => {
    // table_test.go: InsertOrAppendRules("FORWARD", [Drop]) and then [Drop, Accept, Drop, Accept]
    assert.deepEqual(ruleHashes('FORWARD', [rule('--jump DROP')]), ['hecdSCslEjdBPBPo']);
    assert.deepEqual(
      ruleHashes('FORWARD', [
        rule('--jump DROP'),
        rule('--jump ACCEPT'),
        rule('--jump DROP'),
        rule('--jump ACCEPT'),
      ]),
      ['hecdSCslEjdBPBPo', 'plvr29-ZiKUwbzDV', 'BMJ7gfua-eMLZ8Gu', 'rmnR1gc8haxMy_0W'],
    );
    // rules_test.go: the jump felix inserts into FORWARD
    assert.deepEqual(ruleHashes('FORWARD', [rule('--jump cali-FORWARD')]), ['wUHhoiAYhphO9Mso']);
  });

  test('a selector IP set ID is MakeUniqueID("s", selector) (libcalico-go selector/parser/parser_test.go)', () => {
    assert.equal(selectorUniqueId('all()'), 's:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug');
    assert.equal(selectorUniqueId('!(has(b) || !has(a))'), 's:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q');
    assert.equal(selectorUniqueId('!(a == "b" && !c != "d")'), 's:lh3haoY1ikTRkd4UZu0nWSaIBknYLPJLX16d-w');
  });

  test('long names are shortened as hashutils.GetLengthLimitedID does (felix/hashutils/id_test.go)', () => {
    assert.equal(lengthLimitedId('felix', '1234', 10), 'felix1234');
    assert.equal(lengthLimitedId('felix', '123456', 11), 'felix123456');
    assert.equal(lengthLimitedId('felix', '_2345', 10), 'felix_kMQI');
    assert.equal(lengthLimitedId('felix', '12345678910', 13), 'felix_Y2QCZIS');
  });
});

// goldens: the real iptables-save after the real iptables-restore of felix's rules
for (const k of CASES)
  test(`iptables-save of every node of ${k.file} in ${k.mode} is what the real iptables-save printed`, () => {
    const c = buildCluster(loadCluster(readFileSync(k.file, 'utf8'), k.file), k.mode);
    for (const n of c.nodes) {
      const real = readFileSync(`test/golden/felix/${k.name}/${n.name}.save`, 'utf8');
      assert.equal(iptablesSave(c.world.ns(n.name).netfilter), real, `${k.name}/${n.name}`);
    }
  });

/**
 * `ipset save` after felix's `ipset restore`: the kernel chose each set's initval at random and
 * lists members in its hash order, so initvals are masked and add lines compared sorted
 */
const maskIpset = (t: string) =>
  t
    .replace(/initval 0x[0-9a-f]+/g, 'initval <random>')
    .split('\n')
    .sort()
    .join('\n');
for (const k of CASES)
  test(`ipset save of every node of ${k.file} in ${k.mode} is what the real ipset saved`, () => {
    const c = buildCluster(loadCluster(readFileSync(k.file, 'utf8'), k.file), k.mode);
    for (const n of c.nodes) {
      const real = readFileSync(`test/golden/felix/${k.name}/${n.name}.ipset`, 'utf8');
      assert.equal(
        maskIpset(ipsetSaveText(c.world.ns(n.name).netfilter)),
        maskIpset(real),
        `${k.name}/${n.name}`,
      );
    }
  });

describe("felix's rules on many nodes", () => {
  test('the nodes share the parsed parts of the same rules, frozen, never twice in one namespace; a change on one node leaves the others as they were', () => {
    const spec = loadCluster(readFileSync('test/fixtures/felix-cluster.yaml', 'utf8'), 'felix-cluster.yaml');
    const c = buildCluster(spec, 'calico-vxlan');
    const [one, two] = c.nodes.map((n) => c.world.ns(n.name).netfilter);
    const a = one.chain('filter', 'cali-FORWARD')!.rules;
    const b = two.chain('filter', 'cali-FORWARD')!.rules;
    assert.ok(a.length > 1 && a.length === b.length);
    a.forEach((r, i) => {
      // a rule of its own (its counters), its target and matches (the hash comment first) the other node's
      assert.notEqual(r, b[i]);
      assert.equal(r.target, b[i].target);
      assert.deepEqual(r.matches, b[i].matches);
      r.matches.forEach((m, k) => assert.equal(m, b[i].matches[k]));
      assert.ok(Object.isFrozen(r.target) && r.matches.every((m) => Object.isFrozen(m)));
      assert.match(JSON.stringify(r.matches[0]), /^\{"kind":"comment","text":"cali:[\w-]{16}"\}$/);
    });
    // a shared part cannot be changed in place
    assert.throws(
      () => Object.assign(a.find((r) => r.target?.kind === 'jump')!.target!, { chain: 'x' }),
      TypeError,
    );
    assert.throws(() => Object.assign(a[0].matches[0], { text: 'x' }), TypeError);
    // each namespace's netfilter, written as data, meets no rule part twice (a shared part would be a
    // $ref; only origins and their parts are, as felix's chains share them: a chain's rules one origin)
    for (const ns of worldToData(c.world).netns) {
      const text = JSON.stringify((ns as { netfilter: unknown }).netfilter);
      for (const [, path] of text.matchAll(/\{"\$ref":"([^"]*)"\}/g)) assert.match(path, /\.origin(\.|$)/);
    }
    // iptables -E renames the jump targets of one node only
    const before = runCommand(c, 'node2', 'iptables-save -t filter').stdout;
    assert.equal(runCommand(c, 'node1', 'iptables -E cali-from-wl-dispatch cali-renamed').code, 0);
    assert.match(runCommand(c, 'node1', 'iptables-save -t filter').stdout, /-j cali-renamed\n/);
    assert.equal(runCommand(c, 'node2', 'iptables-save -t filter').stdout, before);
  });
});

describe('flows through felix-cluster.yaml', () => {
  const spec = loadCluster(readFileSync('test/fixtures/felix-cluster.yaml', 'utf8'), 'felix-cluster.yaml');
  const cases: {
    from: string;
    to: string;
    port?: number;
    proto?: Proto;
    /** delivered, or the chain of which pod's felix endpoint chain drops it (ingress: tw, egress: fw) */
    expect: 'delivered' | { pod: string; dir: 'ingress' | 'egress' };
  }[] = [
    // web's named port http (8080) from api and workers; 9090 by number; not from queue
    { from: 'api', to: 'web', port: 8080, expect: 'delivered' },
    { from: 'worker2', to: 'web', port: 9090, expect: 'delivered' },
    { from: 'redis', to: 'web', port: 8080, expect: { pod: 'web', dir: 'ingress' } },
    // api: from ops (any pod) on the port range, not from shop's cache (node2)
    { from: 'grafana', to: 'api', port: 9005, expect: 'delivered' },
    { from: 'cache', to: 'api', port: 8080, expect: { pod: 'api', dir: 'ingress' } },
    // any UDP from 10.0.0.0/8 (the second rule), TCP from there only on the listed ports
    { from: 'batch', to: 'api', port: 5353, proto: 'udp', expect: 'delivered' },
    { from: 'batch', to: 'api', port: 8080, expect: { pod: 'api', dir: 'ingress' } },
    // the node subnet but node2: node1 itself reaches api through OUTPUT (felix returns cali+ traffic there)
    { from: 'node2', to: 'api', port: 8080, expect: { pod: 'api', dir: 'ingress' } },
    // queue's egress: redis on its named port, DNS, nothing else
    { from: 'queue', to: 'redis', port: 6379, expect: 'delivered' },
    { from: 'queue', to: 'tool', port: 53, proto: 'udp', expect: 'delivered' },
    { from: 'queue', to: 'tool', port: 8080, expect: { pod: 'queue', dir: 'egress' } },
    // metrics: ingress from grafana and the node subnet, egress denied (also to its own node)
    { from: 'grafana', to: 'metrics', port: 9090, expect: 'delivered' },
    { from: 'logs', to: 'metrics', port: 9090, expect: { pod: 'metrics', dir: 'ingress' } },
    { from: 'metrics', to: 'node1', port: 22, expect: { pod: 'metrics', dir: 'egress' } },
    // namespaces without policies: their profiles allow everything
    { from: 'tool', to: 'logs', port: 514, proto: 'udp', expect: 'delivered' },
  ];
  for (const mode of ['calico-bgp', 'calico-ipip'] as CniMode[]) {
    const c = buildCluster(spec, mode);
    // another node: its eth0 address in calico-bgp; through tunl0 in calico-ipip, with tunl0's
    // address as source, outside the ipBlock of the node subnet
    const fromNode2: (typeof cases)[number] = {
      from: 'node2',
      to: 'metrics',
      port: 9090,
      expect: mode === 'calico-bgp' ? 'delivered' : { pod: 'metrics', dir: 'ingress' },
    };
    for (const k of [...cases, fromNode2])
      test(`${mode}: ${k.from} → ${k.to}:${k.port ?? 8080}/${k.proto ?? 'tcp'}`, () => {
        const w = walk(c, { from: k.from, to: k.to, proto: k.proto ?? 'tcp', port: k.port ?? 8080 });
        const d = w.request.disposition;
        if (k.expect === 'delivered') {
          assert.equal(d.kind, 'delivered', JSON.stringify(d));
          if (k.to !== 'node1') assert.equal(w.reply?.disposition.kind, 'delivered');
          return;
        }
        const { pod: name, dir } = k.expect;
        assert.ok(d.kind === 'dropped' && d.drop.reason === 'filtered' && d.drop.rule, JSON.stringify(d));
        const pod = c.pods.find((p) => p.name === name)!;
        assert.equal(d.drop.rule.chain, felixEndpointChain(pod, dir), dropText(d.drop));
        const o = d.drop.rule.rule.origin;
        assert.ok(o?.kind === 'policy-chain' && o.role === 'default-deny' && o.direction === dir);
        assert.equal(o.pod, `${pod.namespace}/${pod.name}`);
      });
  }
});
