/**
 * eBGP in Calico v3.27 as the model runs it, without a lab: the cluster file's AS numbers (a
 * Node's asNumber, the BGPConfiguration's, a BGPPeer's; bad ones: file:line:col), who peers with
 * whom in which AS (peering.ts, as confd computes it), the BIRD configuration (src/lab/bird.ts),
 * and the model's speakers against what real BIRD 2.0.12 printed and installed in the lab
 * (test/fixtures/ebgp/lab.json, recorded by test/lab-ebgp.test.ts): birdc's origin AS and primary
 * route, ip route, and the sessions' TTL 1 (a direct eBGP session).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCluster } from '../src/cluster/load.ts';
import { clusterErrorOf, recordedBirdAgrees } from './bird-lab.ts';
import { buildCluster } from '../src/cni/build.ts';
import { calicoPeerings } from '../src/bgp/peering.ts';
import { labBirds } from '../src/lab/bird.ts';
import { runCommand } from '../src/tools/index.ts';
import { runChecks } from '../src/diagnose/checks.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const EBGP_CLUSTER = join(ROOT, 'test/fixtures/ebgp/ebgp-cluster.yaml');
const TEXT = readFileSync(EBGP_CLUSTER, 'utf8');

const errorOf = (text: string) => clusterErrorOf(text, 'ebgp.yaml');

test('AS numbers in the cluster file: 1..4294967295, bad ones named with file:line:col', () => {
  const bad = (from: string, to: string) => {
    assert.ok(TEXT.includes(from), from);
    return errorOf(TEXT.replace(from, to));
  };
  assert.equal(loadCluster(TEXT, 'ebgp.yaml').nodes[2].asNumber, 64513);
  assert.match(
    bad('asNumber: 64513', 'asNumber: 0'),
    /^ebgp\.yaml:17:15: asNumber must be an integer in 1\.\.4294967295, got 0$/,
  );
  assert.match(
    bad('asNumber: 64513', 'asNumber: 4294967296'),
    /^ebgp\.yaml:17:15: asNumber must be an integer in 1\.\.4294967295, got 4294967296$/,
  );
  assert.match(bad('asNumber: 64513', 'asNumber: 645.5'), /^ebgp\.yaml:17:15: asNumber must be an integer/);
  assert.match(
    bad('asNumber: 64513', 'asNumber: "64513"'),
    /^ebgp\.yaml:17:15: asNumber must be an integer in 1\.\.4294967295, got string "64513"$/,
  );
  assert.match(
    errorOf(
      TEXT +
        'bgpConfiguration:\n  apiVersion: projectcalico.org/v3\n  kind: BGPConfiguration\n  metadata: {name: default}\n  spec: {asNumber: -1}\n',
    ),
    /^ebgp\.yaml:26:20: asNumber must be an integer in 1\.\.4294967295, got -1$/,
  );
  // a 4-octet AS is fine (BIRD's OPEN then carries AS_TRANS, fsm.ts localOpen)
  const big = loadCluster(TEXT.replace('asNumber: 64513', 'asNumber: 4200000000'), 'ebgp.yaml');
  assert.equal(big.nodes[2].asNumber, 4200000000);
});

test('peerings: each session in the ASes confd writes (the node’s own, else the global AS)', () => {
  const nodes = [
    { name: 'node1', addr: '192.168.1.10', labels: { rr: 'true' }, routeReflectorClusterID: '244.0.0.1' },
    { name: 'node2', addr: '192.168.1.11', asNumber: 65002 },
    { name: 'node3', addr: '192.168.1.12' },
  ];
  const summary = (m: ReturnType<typeof calicoPeerings>) =>
    Object.fromEntries(
      [...m].map(([n, ps]) => [
        n,
        ps.map(
          (p) =>
            `${p.proto} ${p.localAs}>${p.peerAs}${p.multihop ? ' multihop' : ''}${p.rrClusterId ? ` rr ${p.rrClusterId}` : ''}`,
        ),
      ]),
    );
  // the global AS 65000; node2 in its own: node1 reflects to node3 only (rr client needs the same AS)
  const m = calicoPeerings(nodes, { nodeToNodeMeshEnabled: false, asNumber: 65000 }, [
    { name: 'to-rr', nodeSelector: '!has(rr)', peerSelector: 'has(rr)' },
  ]);
  assert.deepEqual(summary(m), {
    node1: ['Node_192_168_1_11 65000>65002 multihop', 'Node_192_168_1_12 65000>65000 multihop rr 244.0.0.1'],
    node2: ['Node_192_168_1_10 65002>65000 multihop'],
    node3: ['Node_192_168_1_10 65000>65000 multihop'],
  });
  // the mesh: no multihop; a peerIP BGPPeer names its AS, and the node at that address peers back
  // only when the AS is its own (nodesWithIPPortAndAS)
  const plain = nodes.map(({ name, addr, asNumber }) => ({ name, addr, ...(asNumber ? { asNumber } : {}) }));
  const mesh = calicoPeerings(plain, undefined, [
    { name: 'right-as', node: 'node1', peerIP: '192.168.1.11', asNumber: 65002 },
    { name: 'wrong-as', node: 'node3', peerIP: '192.168.1.11', asNumber: 65009 },
  ]);
  assert.deepEqual(summary(mesh), {
    node1: [
      'Mesh_192_168_1_11 64512>65002',
      'Mesh_192_168_1_12 64512>64512',
      'Node_192_168_1_11 64512>65002 multihop',
    ],
    node2: [
      'Mesh_192_168_1_10 65002>64512',
      'Mesh_192_168_1_12 65002>64512',
      'Node_192_168_1_10 65002>64512 multihop',
    ],
    node3: [
      'Mesh_192_168_1_10 64512>64512',
      'Mesh_192_168_1_11 64512>65002',
      'Node_192_168_1_11 64512>65009 multihop',
    ],
  });
});

test('BIRD configuration: local as the node’s AS, neighbor as the peer’s, the eBGP mesh sessions direct', () => {
  const c = buildCluster(loadCluster(TEXT, EBGP_CLUSTER), 'calico-bgp');
  const [b1, , b3] = labBirds(c);
  assert.match(b1.config, /\n {2}local as 64512;\n/);
  assert.match(b3.config, /\n {2}local as 64513;\n/);
  assert.match(
    b1.config,
    /protocol bgp Mesh_192_168_1_11 from bgp_template \{\n {2}neighbor 192\.168\.1\.11 as 64512;\n/,
  );
  assert.match(
    b1.config,
    /protocol bgp Mesh_192_168_1_12 from bgp_template \{\n {2}direct; .*\n {2}neighbor 192\.168\.1\.12 as 64513;\n/,
  );
  assert.match(
    b3.config,
    /protocol bgp Mesh_192_168_1_10 from bgp_template \{\n {2}direct; .*\n {2}neighbor 192\.168\.1\.10 as 64512;\n/,
  );
  // BIRD 2 refuses an eBGP channel without explicit filters: the template's are explicit
  assert.match(b3.config, /\n {4}import all; [^]*?\n {4}export filter calico_export_to_bgp_peers;/);
});

test('birdc and ip route print what the real BIRD lab printed (test/fixtures/ebgp/lab.json, recorded by test/lab-ebgp.test.ts)', () => {
  const spec = loadCluster(TEXT, EBGP_CLUSTER);
  spec.name = 's10ebgp';
  const c = buildCluster(spec, 'calico-bgp');
  const outputs = recordedBirdAgrees(c, join(ROOT, 'test/fixtures/ebgp/lab.json'));
  assert.equal(Object.keys(outputs).length, 12);
  // `show route all`: node1's route to node3's block came over eBGP: AS_PATH 64513, no LOCAL_PREF
  // on the wire, BIRD's default 100 in its table; node2's copy of it, passed on over iBGP, keeps
  // node3's address as NEXT_HOP
  assert.match(
    outputs['node1: birdc show route all'],
    /10\.244\.2\.0\/26 +unicast \[Mesh_192_168_1_12 [\d:.]+\] \* \(100\) \[AS64513i\]\n\tvia 192\.168\.1\.12 on eth0\n\tType: BGP univ\n\tBGP\.origin: IGP\n\tBGP\.as_path: 64513\n\tBGP\.next_hop: 192\.168\.1\.12\n\tBGP\.local_pref: 100\n +unicast \[Mesh_192_168_1_11 [\d:.]+ from 192\.168\.1\.11\] \(100\) \[AS64513i\]\n\tvia 192\.168\.1\.12 on eth0\n\tType: BGP univ\n\tBGP\.origin: IGP\n\tBGP\.as_path: 64513\n\tBGP\.next_hop: 192\.168\.1\.12\n/,
  );
  // node3 holds node1's block twice, both with node1 as next hop: from node1, and from node2 with
  // node1's address as a third-party next hop (both sessions direct on eth0); node1's is primary
  // (equal AS_PATH length, both eBGP: the lower BGP identifier)
  assert.match(
    outputs['node3: birdc show route'],
    /10\.244\.0\.0\/26 +unicast \[Mesh_192_168_1_10 [\d:.]+\] \* \(100\) \[AS64512i\]\n\tvia 192\.168\.1\.10 on eth0\n +unicast \[Mesh_192_168_1_11 [\d:.]+ from 192\.168\.1\.11\] \(100\) \[AS64512i\]\n\tvia 192\.168\.1\.10 on eth0/,
  );
  // node1 prefers the eBGP route to node3's block over node2's iBGP copy of it
  assert.match(
    outputs['node1: birdc show route'],
    /10\.244\.2\.0\/26 +unicast \[Mesh_192_168_1_12 [\d:.]+\] \* \(100\) \[AS64513i\]/,
  );
  // the direct eBGP sessions run with TTL 1 (BIRD's bgp_connect / bgp_setup_sk), the iBGP one with 64
  const ttl = (node: string, peer: string) => c.bgp!.session(node, peer)!.conn?.ttl ?? 64;
  assert.deepEqual(
    [
      ttl('node1', '192.168.1.11'),
      ttl('node1', '192.168.1.12'),
      ttl('node3', '192.168.1.10'),
      ttl('node3', '192.168.1.11'),
    ],
    [64, 1, 1, 1],
  );
});

test('a direct eBGP mesh session toward a node off the subnet stays Idle: no routes, and doctor says why', () => {
  // node3 behind the router in its own AS: the mesh writes no multihop, so BIRD waits for it to
  // become a neighbour (bgp_start_locked) and nothing crosses between the ASes
  const text = TEXT.replace('name: ebgp', 'name: ebgp-offlink')
    .replace(
      'nodes:\n',
      'subnets:\n  - { name: lan0, cidr: 192.168.1.0/24, gateway: 192.168.1.1 }\n  - { name: lan1, cidr: 192.168.2.0/24, gateway: 192.168.2.1 }\nnodes:\n',
    )
    .replace('ip: 192.168.1.12/24', 'ip: 192.168.2.12/24');
  const c = buildCluster(loadCluster(text, 'offlink.yaml'), 'calico-bgp');
  const sp = c.bgp!.session('node1', '192.168.2.12')!;
  assert.equal(sp.peer.state, 'Idle');
  assert.equal(sp.connects, 0);
  assert.equal(c.bgp!.session('node1', '192.168.1.11')!.peer.state, 'Established');
  assert.doesNotMatch(runCommand(c, 'node1', 'ip route').stdout, /10\.244\.2\.0\/26/);
  assert.doesNotMatch(runCommand(c, 'node3', 'ip route').stdout, /via .* proto bird/);
  assert.match(
    runCommand(c, 'node1', 'birdc show protocols').stdout,
    /\nMesh_192_168_2_12 BGP +--- +start .*Idle/,
  );
  const found = runChecks(c)
    .flatMap((r) => r.findings)
    .filter((f) => f.check === 'bgp-session')
    .map((f) => f.message);
  assert.equal(found.length, 2, found.join('\n'));
  assert.match(
    found.join('\n'),
    /BGP session node1 ↔ node3 is Idle \(eBGP without multihop \(AS 64512 to AS 64513\): node1's BIRD waits for 192\.168\.2\.12 to be on one of its subnets/,
  );
});

test('a BGPPeer naming a node in another AS than its own: no reverse peering, and no route from the one-sided session', () => {
  const text =
    TEXT.replace('name: ebgp', 'name: ebgp-wrongas') +
    'bgpConfiguration:\n  apiVersion: projectcalico.org/v3\n  kind: BGPConfiguration\n  metadata: {name: default}\n  spec: {nodeToNodeMeshEnabled: false}\n' +
    'bgpPeers:\n' +
    '  - {apiVersion: projectcalico.org/v3, kind: BGPPeer, metadata: {name: a}, spec: {node: node1, peerIP: 192.168.1.12, asNumber: 64513}}\n' +
    '  - {apiVersion: projectcalico.org/v3, kind: BGPPeer, metadata: {name: b}, spec: {node: node2, peerIP: 192.168.1.12, asNumber: 65009}}\n';
  const c = buildCluster(loadCluster(text, 'wrongas.yaml'), 'calico-bgp');
  assert.deepEqual(
    [...c.bgp!.byNode].map(([n, m]) => [
      n,
      [...m.values()].map((s) => `${s.peer.config.peerAddress} as ${s.peer.config.peerAs} ${s.peer.state}`),
    ]),
    [
      ['node1', ['192.168.1.12 as 64513 Established']],
      // node3 (AS 64513) does not peer back with node2, whose BGPPeer says AS 65009
      ['node2', ['192.168.1.12 as 65009 Active']],
      ['node3', ['192.168.1.10 as 64512 Established']],
    ],
  );
  assert.match(
    runCommand(c, 'node1', 'ip route').stdout,
    /10\.244\.2\.0\/26 via 192\.168\.1\.12 dev eth0 proto bird/,
  );
  // multihop (a BGPPeer): TTL 64
  assert.equal(c.bgp!.session('node1', '192.168.1.12')!.conn?.ttl, undefined);
  assert.doesNotMatch(runCommand(c, 'node2', 'ip route').stdout, /via .* proto bird/);
});
