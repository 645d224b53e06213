/**
 * flanneld's `--ip-masq` (src/cni/flanneld.ts, flannel v0.28.9 pkg/trafficmngr/iptables
 * masqRules): FLANNEL-POSTRTG on every node of the flannel modes, the cluster file's
 * `flannel: {ipMasq}` (default on, as kube-flannel.yml), and a pod reaching a host outside the
 * cluster: masqueraded by FLANNEL-POSTRTG on its node, the answer un-NATed by conntrack back to the
 * pod; traffic inside the pod network keeps its addresses. What the real iptables-save prints of
 * these rules is test/nftools.test.ts's (scripts/record-nf-goldens.ts); the real kernel's walk,
 * lab seeds 7005…7008 (test/lab-diff.test.ts).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadCluster } from '../src/cluster/load.ts';
import type { ClusterSpec, CniMode } from '../src/cluster/spec.ts';
import { buildCluster } from '../src/cni/build.ts';
import { flannelMasqRules } from '../src/cni/flanneld.ts';
import { walk, type WalkRequest } from '../src/trace/walk.ts';
import type { Trace } from '../src/trace/types.ts';
import { events, keptAddressOut, masqueradedOut } from './masq-walk.ts';
import { iptablesSave } from '../src/tools/iptables-save.ts';
import { runCommand } from '../src/tools/index.ts';

const FILE = 'test/fixtures/ip-masq.yaml';
const spec = (): ClusterSpec => loadCluster(readFileSync(FILE, 'utf8'), FILE);
const FLANNEL: CniMode[] = ['flannel-vxlan', 'flannel-host-gw'];

/** the nat decisions of a walk that set up a translation */
const natRules = (t: Trace) =>
  events(t, 'netfilter').filter((x) => x.ev.decision.table === 'nat' && x.ev.decision.nat !== undefined);

describe("flanneld's FLANNEL-POSTRTG", () => {
  test("each node's nat table: flanneld's rules, in its order, with its lease and the Network", () => {
    const c = buildCluster(spec());
    // the nat table as iptables-save prints it, between its header and COMMIT
    const nat = (node: string) => {
      const lines = iptablesSave(c.world.ns(node).netfilter).split('\n');
      const at = lines.indexOf('*nat');
      return lines.slice(at + 1, lines.indexOf('COMMIT', at));
    };
    const m = '-m comment --comment "flanneld masq"';
    for (const [node, lease] of [
      ['node1', '10.244.0.0/24'],
      ['node2', '10.244.1.0/24'],
    ])
      assert.deepEqual(nat(node), [
        ':PREROUTING ACCEPT [0:0]',
        ':INPUT ACCEPT [0:0]',
        ':OUTPUT ACCEPT [0:0]',
        ':POSTROUTING ACCEPT [0:0]',
        ':FLANNEL-POSTRTG - [0:0]',
        `-A POSTROUTING ${m} -j FLANNEL-POSTRTG`,
        `-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 ${m} -j RETURN`,
        `-A FLANNEL-POSTRTG -s ${lease} -d 10.244.0.0/16 ${m} -j RETURN`,
        `-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d ${lease} ${m} -j RETURN`,
        `-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d ${lease} ${m} -j RETURN`,
        `-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 ${m} -j MASQUERADE --random-fully`,
        `-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 ${m} -j MASQUERADE --random-fully`,
      ]);
    // every rule says it is flanneld's, as data
    for (const ch of ['POSTROUTING', 'FLANNEL-POSTRTG'])
      for (const r of c.world.ns('node1').netfilter.chain('nat', ch)!.rules)
        assert.deepEqual(
          [r.origin?.kind, r.origin?.kind === 'cni' && r.origin.component],
          ['cni', 'flanneld'],
          `${ch}: ${JSON.stringify(r.origin)}`,
        );
    assert.equal(flannelMasqRules('10.244.0.0/16', '10.244.0.0/24').length, 7);
  });

  test('kube-proxy prepends its jump: KUBE-POSTROUTING comes before FLANNEL-POSTRTG', () => {
    const c = buildCluster({ ...spec(), services: [] });
    const post = iptablesSave(c.world.ns('node1').netfilter)
      .split('\n')
      .filter((l) => l.startsWith('-A POSTROUTING'));
    assert.deepEqual(post, [
      '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
      '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
    ]);
  });

  test('ipMasq: false, and the calico modes: no FLANNEL-POSTRTG', () => {
    const off = buildCluster({ ...spec(), flannel: { ipMasq: false } });
    assert.equal(off.world.ns('node1').netfilter.tables.get('nat'), undefined);
    const calico = buildCluster(spec(), 'calico-bgp');
    assert.equal(calico.world.ns('node1').netfilter.chain('nat', 'FLANNEL-POSTRTG'), undefined);
  });

  test('the cluster file: flannel.ipMasq defaults to true, false is read, anything else refused', () => {
    const text = readFileSync(FILE, 'utf8');
    assert.equal(spec().flannel, undefined);
    assert.deepEqual(loadCluster(`${text}flannel: {}\n`, FILE).flannel, { ipMasq: true });
    assert.deepEqual(loadCluster(`${text}flannel: {ipMasq: false}\n`, FILE).flannel, { ipMasq: false });
    assert.throws(() => loadCluster(`${text}flannel: {ipMasq: "yes"}\n`, FILE), /ipMasq/);
    assert.throws(() => loadCluster(`${text}flannel: {ipMasqRandom: true}\n`, FILE), /ipMasqRandom/);
  });
});

describe('a pod reaching a host outside the cluster', () => {
  for (const mode of FLANNEL)
    for (const proto of ['tcp', 'udp'] as const)
      test(`${mode}, ${proto}: MASQUERADE by FLANNEL-POSTRTG on the pod's node, the answer un-NATed back to the pod`, () => {
        const c = buildCluster(spec(), mode);
        const podA = c.pods.find((p) => p.name === 'pod-a')!;
        const req: WalkRequest = { from: 'pod-a', to: 'outside', proto, port: proto === 'tcp' ? 8080 : 5353 };
        const { decision, before, after } = masqueradedOut(c, req);
        // the rule that decided: FLANNEL-POSTRTG's 5th, jumped to from node1's nat POSTROUTING
        assert.equal(decision.rule?.chain, 'FLANNEL-POSTRTG');
        assert.equal(decision.rule?.index, 5);
        assert.deepEqual(decision.path, [
          { chain: 'POSTROUTING', index: 1 },
          { chain: 'FLANNEL-POSTRTG', index: 5 },
        ]);
        // the conntrack entry on node1 holds both: the pod's tuple, the reply to the node
        const ct = runCommand(c, 'node1', `conntrack -L -p ${proto} -s ${podA.ip}`);
        assert.equal(ct.code, 0, ct.stderr);
        const [line, ...more] = ct.stdout.split('\n').filter((l) => l.startsWith(proto));
        assert.deepEqual(more, []);
        assert.match(
          line,
          new RegExp(
            `src=${podA.ip} dst=192\\.168\\.1\\.100 sport=${before.sport} .*src=192\\.168\\.1\\.100 dst=192\\.168\\.1\\.10 sport=${req.port} dport=${after.sport} `,
          ),
        );
      });

  for (const mode of FLANNEL)
    test(`${mode}: inside the pod network nothing is masqueraded (FLANNEL-POSTRTG returns)`, () => {
      const c = buildCluster(spec(), mode);
      const w = walk(c, { from: 'pod-a', to: 'pod-b', proto: 'tcp', port: 8080 });
      assert.equal(w.request.disposition.kind, 'delivered');
      assert.equal(w.reply?.disposition.kind, 'delivered');
      assert.deepEqual(natRules(w.request), []);
      assert.deepEqual(
        events(w.request, 'nat-setup').filter((x) => x.ev.byRule),
        [],
      );
      // node1 returns at the lease-to-Network rule, node2 at the Network-to-lease rule; in
      // flannel-vxlan node1's VXLAN datagram (node to node) matches none and the policy accepts it
      const nat = events(w.request, 'netfilter').filter((x) => x.ev.decision.table === 'nat');
      assert.deepEqual(
        nat.map((x) => [x.s.netns, x.ev.decision.path.at(-1), x.ev.decision.policy?.chain]),
        [
          ['node1', { chain: 'FLANNEL-POSTRTG', index: 2 }, 'POSTROUTING'],
          ...(mode === 'flannel-vxlan' ? [['node1', { chain: 'POSTROUTING', index: 1 }, 'POSTROUTING']] : []),
          ['node2', { chain: 'FLANNEL-POSTRTG', index: 3 }, 'POSTROUTING'],
        ],
      );
    });

  test('flannel-host-gw: the host reaching a pod behind another node is masqueraded (the last rule)', () => {
    const c = buildCluster(spec(), 'flannel-host-gw');
    const w = walk(c, { from: 'node1', to: 'pod-b', proto: 'tcp', port: 8080 });
    assert.equal(w.reply?.disposition.kind, 'delivered', JSON.stringify(w.reply?.disposition));
    const nf = natRules(w.request);
    assert.equal(nf.length, 1);
    assert.equal(nf[0].s.netns, 'node1');
    assert.equal(nf[0].ev.decision.rule?.index, 6);
  });

  test('ipMasq: false: the pod keeps its address, the answer goes to the gateway, and doctor says why', () => {
    for (const mode of FLANNEL)
      keptAddressOut(
        buildCluster({ ...spec(), flannel: { ipMasq: false } }, mode),
        /flanneld runs without --ip-masq/,
      );
  });
});
