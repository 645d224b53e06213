/**
 * Calico's route reflectors (v3.27): who peers with whom as confd computes it (peering.ts), the
 * cluster file's BGPConfiguration and BGPPeers (bad input: file:line:col), and the model's BIRDs
 * reflecting as BIRD 2 does over the modelled datapath: every client's table gets every other
 * node's block with the originating node as next hop, the reflected routes carry ORIGINATOR_ID
 * and CLUSTER_LIST, calicoctl calls the peers "node specific".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCluster } from '../src/cluster/load.ts';
import { clusterErrorOf, recordedBirdAgrees } from './bird-lab.ts';
import { buildCluster } from '../src/cni/build.ts';
import { calicoPeerings } from '../src/bgp/peering.ts';
import { prepareCluster, runCommand } from '../src/tools/index.ts';
import { runUntil } from '../src/trace/exchange.ts';
import { runChecks } from '../src/diagnose/checks.ts';
import { calicoBirdConfig } from '../src/lab/bird.ts';
import { labBirds } from '../src/lab/bird.ts';

const ROOT = new URL('..', import.meta.url).pathname;
export const RR_CLUSTER = join(ROOT, 'test/fixtures/rr/rr-cluster.yaml');
const RR_TEXT = readFileSync(RR_CLUSTER, 'utf8');

const nodes = [
  { name: 'node1', addr: '192.168.1.10', labels: { rr: 'true' }, routeReflectorClusterID: '244.0.0.1' },
  { name: 'node2', addr: '192.168.1.11', labels: { rr: 'true' }, routeReflectorClusterID: '244.0.0.1' },
  { name: 'node3', addr: '192.168.1.12' },
  { name: 'node4', addr: '192.168.1.13' },
];
const summary = (m: ReturnType<typeof calicoPeerings>) =>
  Object.fromEntries(
    [...m].map(([n, ps]) => [
      n,
      ps.map((p) => `${p.proto}${p.passive ? ' passive' : ''}${p.rrClusterId ? ` rr ${p.rrClusterId}` : ''}`),
    ]),
  );

test('peerings: reflectors with the mesh off, as confd writes them', () => {
  const m = calicoPeerings(nodes, { nodeToNodeMeshEnabled: false }, [
    { name: 'peer-with-rr', nodeSelector: 'all()', peerSelector: "rr == 'true'" },
  ]);
  assert.deepEqual(summary(m), {
    // the reflectors peer with each other as non-clients (the same cluster ID) and with every
    // other node as an rr client; the clients peer with the reflectors
    node1: ['Node_192_168_1_11', 'Node_192_168_1_12 rr 244.0.0.1', 'Node_192_168_1_13 rr 244.0.0.1'],
    node2: ['Node_192_168_1_10', 'Node_192_168_1_12 rr 244.0.0.1', 'Node_192_168_1_13 rr 244.0.0.1'],
    node3: ['Node_192_168_1_10', 'Node_192_168_1_11'],
    node4: ['Node_192_168_1_10', 'Node_192_168_1_11'],
  });
});

test('peerings: the mesh stays among the non-reflectors; a reverse peering makes a selector peering symmetric', () => {
  // mesh on: node3 and node4 mesh, skipping the reflectors; the BGPPeer names only the clients'
  // side (nodeSelector), the reverse pass gives the reflectors their sessions back
  const m = calicoPeerings(nodes, undefined, [
    { name: 'clients', nodeSelector: '!has(rr)', peerSelector: 'has(rr)' },
  ]);
  assert.deepEqual(summary(m), {
    node1: ['Node_192_168_1_12 rr 244.0.0.1', 'Node_192_168_1_13 rr 244.0.0.1'],
    node2: ['Node_192_168_1_12 rr 244.0.0.1', 'Node_192_168_1_13 rr 244.0.0.1'],
    node3: ['Mesh_192_168_1_13 passive', 'Node_192_168_1_10', 'Node_192_168_1_11'],
    node4: ['Mesh_192_168_1_12', 'Node_192_168_1_10', 'Node_192_168_1_11'],
  });
  // a global peer by peerIP: every node but the peer itself, a Global_ protocol; the peer's
  // cluster ID is not known through peerIP (confd: only nodeAsBGPPeers carries it), so the other
  // reflector makes it an rr client
  const g = calicoPeerings(nodes, { nodeToNodeMeshEnabled: false }, [{ name: 'g', peerIP: '192.168.1.10' }]);
  assert.deepEqual(summary(g), {
    // the reverse peering: the peer's node peers back with every node, knowing their cluster IDs
    node1: ['Node_192_168_1_11', 'Node_192_168_1_12 rr 244.0.0.1', 'Node_192_168_1_13 rr 244.0.0.1'],
    node2: ['Global_192_168_1_10 rr 244.0.0.1'],
    node3: ['Global_192_168_1_10'],
    node4: ['Global_192_168_1_10'],
  });
});

const errorOf = (text: string) => clusterErrorOf(text, 'rr.yaml');

test('bad BGPConfiguration and BGPPeers: one line with file:line:col', () => {
  const bad = (from: string, to: string) => {
    assert.ok(RR_TEXT.includes(from), from);
    return errorOf(RR_TEXT.replace(from, to));
  };
  assert.match(
    bad("route-reflector == 'true'", "route-reflector = 'true'"),
    /^rr\.yaml:38:21: peerSelector: selector .*expected ==/,
  );
  assert.match(bad('nodeSelector: all()', 'node: node9'), /^rr\.yaml:37:13: unknown node "node9"/);
  assert.match(
    bad("peerSelector: route-reflector == 'true'", 'peerIP: 192.168.1.99'),
    /^rr\.yaml:38:15: peerIP 192\.168\.1\.99 is no node's address/,
  );
  assert.match(
    bad("peerSelector: route-reflector == 'true'", 'peerIP: 192.168.1.11\n      asNumber: 0'),
    /^rr\.yaml:39:17: asNumber must be an integer in 1\.\.4294967295, got 0/,
  );
  assert.match(
    bad('routeReflectorClusterID: 244.0.0.1', 'routeReflectorClusterID: 244.0.1'),
    /^rr\.yaml:11:30: routeReflectorClusterID "244\.0\.1" is not a valid IPv4 address/,
  );
  assert.match(bad('kind: BGPPeer', 'kind: BGPPeers'), /^rr\.yaml:34:11:/);
  assert.match(
    errorOf(
      RR_TEXT +
        `  - apiVersion: projectcalico.org/v3\n    kind: BGPPeer\n    metadata: {name: peer-with-route-reflectors}\n    spec: {peerIP: 192.168.1.10}\n`,
    ),
    /^rr\.yaml:41:22: BGPPeer peer-with-route-reflectors is already defined at line 33/,
  );
});

test('the model reflects: every node routes every block via its own node; reflected routes carry ORIGINATOR_ID and CLUSTER_LIST', () => {
  const c = buildCluster(loadCluster(RR_TEXT, RR_CLUSTER), 'calico-bgp');
  for (const s of c.bgp!.all())
    assert.equal(s.peer.state, 'Established', `${s.node} → ${s.peer.config.peerAddress}`);
  for (const n of c.nodes) {
    const routes = runCommand(c, n.name, 'ip route').stdout;
    for (const o of c.nodes) {
      const block = o.name === 'node2' ? undefined : `10.244.${Number(o.addr.split('.')[3]) - 10}.0/26`;
      if (!block || o === n) continue;
      assert.ok(
        routes.includes(`${block} via ${o.addr} dev eth0 proto bird`),
        `${n.name}: ${block}\n${routes}`,
      );
    }
  }
  // node3 learned node4's block from both reflectors, with node4 as originator and the cluster ID
  const node3 = c.bgp!.byNode.get('node3')!;
  for (const rr of ['192.168.1.10', '192.168.1.11']) {
    const r = [...node3.get(rr)!.peer.ribIn.values()].find((x) => x.prefix === '10.244.3.0/26')!;
    assert.equal(r.nextHop, '192.168.1.13');
    assert.deepEqual(
      r.attrs.filter((a) => a.kind === 'originator-id' || a.kind === 'cluster-list'),
      [
        { kind: 'originator-id', originatorId: '192.168.1.13' },
        { kind: 'cluster-list', clusterList: ['244.0.0.1'] },
      ],
    );
    // never its own block back (ORIGINATOR_ID would be its own)
    assert.equal(
      [...node3.get(rr)!.peer.ribIn.values()].filter((x) => x.prefix === '10.244.2.0/26').length,
      0,
    );
  }
  const status = runCommand(c, 'node3', 'calicoctl node status').stdout;
  assert.match(status, /\| 192\.168\.1\.10 \| node specific \| up {4}\| \d\d:\d\d:\d\d \| Established \|/);
  assert.match(runCommand(c, 'node1', 'birdc show protocols').stdout, /^Node_192_168_1_12 BGP +--- +up /m);
  // the reflectors' BIRD configuration: no mesh, rr client toward the clients only
  const birds = labBirds(c);
  const rr1 = birds.find((b) => b.node === 'node1')!.config;
  assert.match(rr1, /configured as a route reflector with cluster ID 244\.0\.0\.1/);
  assert.match(
    rr1,
    /protocol bgp Node_192_168_1_12 from bgp_template \{\n {2}ttl security off;\n {2}multihop;\n {2}neighbor 192\.168\.1\.12 as 64512;\n {2}source address 192\.168\.1\.10;.*\n {2}rr client;\n {2}rr cluster id 244\.0\.0\.1;\n\}/,
  );
  assert.match(
    rr1,
    /protocol bgp Node_192_168_1_11 from bgp_template \{\n {2}ttl security off;\n {2}multihop;\n {2}neighbor 192\.168\.1\.11 as 64512;\n {2}source address 192\.168\.1\.10;.*\n\}/,
  );
  const client = birds.find((b) => b.node === 'node3')!.config;
  assert.match(client, /# Node-to-node mesh disabled/);
  assert.doesNotMatch(client, /rr client/);
  assert.equal(typeof calicoBirdConfig, 'function');
});

const SEC = 1_000_000;
const rrSpec = () => loadCluster(RR_TEXT, RR_CLUSTER);

test('a reflector stops its BGP (birdc disable on each protocol): its clients drop its paths at once (Cease), the other reflector keeps the routes', () => {
  const c = buildCluster(rrSpec(), 'calico-bgp');
  const before = runCommand(c, 'node3', 'ip route').stdout;
  for (const p of ['Node_192_168_1_11', 'Node_192_168_1_12', 'Node_192_168_1_13'])
    assert.equal(runCommand(c, 'node1', `birdc disable ${p}`).code, 0);
  const node3 = c.bgp!.byNode.get('node3')!;
  // the NOTIFICATION Cease reached node3 before the command returned: no hold time to wait
  assert.notEqual(node3.get('192.168.1.10')!.peer.state, 'Established');
  // (node3's BIRD starts the session again at once after a Cease: Active, connecting to a disabled peer)
  assert.equal(node3.get('192.168.1.10')!.peer.ribIn.size, 0);
  const table = runCommand(c, 'node3', 'birdc show route').stdout;
  assert.doesNotMatch(table, /Node_192_168_1_10 /);
  assert.match(
    table,
    /^10\.244\.3\.0\/26 +unicast \[Node_192_168_1_11 [\d:.]+ from 192\.168\.1\.11\] \* \(100\) \[i\]\n\tvia 192\.168\.1\.13 on eth0$/m,
  );
  // node2 still reflects node4's block; node1's own block is gone with node1's BGP (node2
  // learned it from node1 too)
  assert.equal(
    runCommand(c, 'node3', 'ip route').stdout,
    before.replace('10.244.0.0/26 via 192.168.1.10 dev eth0 proto bird \n', ''),
  );
  assert.notEqual(before, runCommand(c, 'node3', 'ip route').stdout);
});

test('both reflectors down (eth0 down): after the hold time the clients lose every reflected route; doctor names the reflector sessions', () => {
  const c = prepareCluster(rrSpec(), 'calico-bgp', [
    'node1: ip link set eth0 down',
    'node2: ip link set eth0 down',
  ]);
  const t0 = c.world.now;
  runUntil(c, t0 + 239 * SEC);
  assert.match(
    runCommand(c, 'node3', 'ip route').stdout,
    /^10\.244\.3\.0\/26 via 192\.168\.1\.13 dev eth0 proto bird $/m,
  );
  runUntil(c, t0 + 241 * SEC);
  const node3 = c.bgp!.byNode.get('node3')!;
  for (const rr of ['192.168.1.10', '192.168.1.11']) {
    assert.notEqual(node3.get(rr)!.peer.state, 'Established');
    assert.deepEqual(node3.get(rr)!.peer.lastNotification, { code: 4, subcode: 0, sent: true });
  }
  assert.doesNotMatch(runCommand(c, 'node3', 'ip route').stdout, /via .* proto bird/);
  const found = runChecks(c)
    .flatMap((r) => r.findings)
    .filter((f) => f.check === 'bgp-session' && f.netns === 'node3')
    .map((f) => f.message);
  assert.equal(found.length, 2, found.join('\n'));
  assert.match(
    found[0],
    /^BGP session node3 ↔ node1 \(Node_192_168_1_10 on node3; node1 is its route reflector, cluster ID 244\.0\.0\.1\) is Idle \(TCP 179 from node1 to node3: no route to 192\.168\.1\.12: connect\(\) fails with ENETUNREACH on node1\): node3 learns no route through node1, and node1 reflects none of node3's$/,
  );
});

test('birdc, calicoctl and ip route print what the real BIRD lab printed (test/fixtures/rr/lab.json, recorded by test/lab-rr.test.ts)', () => {
  const spec = rrSpec();
  spec.name = 'pwrr';
  const c = buildCluster(spec, 'calico-bgp');
  const outputs = recordedBirdAgrees(c, join(ROOT, 'test/fixtures/rr/lab.json'));
  assert.equal(Object.keys(outputs).length, 12);
  // the reflectors' tables hold two paths of each client block: the client's own first
  assert.match(
    outputs['node1: birdc show route'],
    /\[Node_192_168_1_12 [\d:.]+\] \* \(100\) \[i\]\n\tvia 192\.168\.1\.12 on eth0\n +unicast \[Node_192_168_1_11 [\d:.]+ from 192\.168\.1\.11\] \(100\) \[i\]/,
  );
});
