import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterError, loadCluster, placeIn } from '../src/cluster/load.ts';
import { SEED_YAML, seedCluster } from '../src/cluster/seed.ts';

/** Lines to a YAML text; line N of the test is element N-1. */
const y = (...lines: string[]) => lines.join('\n') + '\n';

/** One node, lines 1-4. */
const NODE1 = ['nodes:', '  - name: node1', '    ip: 192.168.1.10/24', '    podCIDR: 10.244.0.0/24'];
/** Two nodes, lines 1-7. */
const NODE12 = [...NODE1, '  - name: node2', '    ip: 192.168.1.11/24', '    podCIDR: 10.244.1.0/24'];
/** A subnet, lines 1-3. */
const LAN0 = ['subnets:', '  - name: lan0', '    cidr: 192.168.1.0/24'];

function errorOf(text: string, file = 'bad.yaml'): ClusterError {
  try {
    loadCluster(text, file);
  } catch (e) {
    assert.ok(e instanceof ClusterError, `expected a ClusterError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected loadCluster to throw');
}

describe('seed cluster', () => {
  const c = seedCluster();

  it('is the article cluster', () => {
    assert.equal(c.name, 'seed');
    assert.equal(c.cni, 'flannel-vxlan');
    assert.equal(c.mtu, 1500);
    assert.equal(c.podMtu, undefined);
    assert.deepEqual(c.subnets, [{ name: 'lan0', cidr: '192.168.1.0/24', gateway: '192.168.1.1' }]);
    assert.deepEqual(c.bgp, []);
    assert.deepEqual(c.run, []);
  });

  it('has the three nodes with their addresses and MACs', () => {
    assert.deepEqual(c.nodes, [
      { name: 'node1', ip: '192.168.1.10/24', podCIDR: '10.244.0.0/24', bridgeMac: '8a:1b:2c:3d:4e:5f' },
      { name: 'node2', ip: '192.168.1.11/24', podCIDR: '10.244.1.0/24', vtepMac: '5a:2b:3c:4d:5e:6f' },
      { name: 'node3', ip: '192.168.1.12/24', podCIDR: '10.244.2.0/24', vtepMac: '7a:8b:9c:0d:1e:2f' },
    ]);
  });

  it('has the four pods', () => {
    assert.deepEqual(c.pods, [
      { name: 'pod-a', node: 'node1', ip: '10.244.0.5', hostVeth: 'veth-pod-a', listen: [] },
      {
        name: 'pod-b',
        node: 'node1',
        ip: '10.244.0.6',
        mac: '62:a1:b2:c3:d4:e6',
        hostVeth: 'veth-pod-b',
        listen: [
          { proto: 'tcp', port: 8080 },
          { proto: 'udp', port: 8080 },
        ],
      },
      {
        name: 'pod-c',
        node: 'node2',
        ip: '10.244.1.5',
        hostVeth: 'veth-pod-c',
        listen: [
          { proto: 'tcp', port: 8080 },
          { proto: 'udp', port: 8080 },
        ],
      },
      {
        name: 'pod-d',
        node: 'node3',
        ip: '10.244.2.5',
        hostVeth: 'veth-pod-d',
        listen: [
          { proto: 'tcp', port: 8080 },
          { proto: 'udp', port: 53 },
        ],
      },
    ]);
  });

  it('is the text SEED_YAML', () => {
    assert.deepEqual(loadCluster(SEED_YAML, 'x.yaml'), c);
    assert.match(SEED_YAML, /^#/);
  });
});

describe('defaults', () => {
  it('fills in name, cni, mtu, the lan0 subnet and the empty lists', () => {
    assert.deepEqual(loadCluster(y(...NODE1), 'min.yaml'), {
      name: 'cluster',
      cni: 'flannel-vxlan',
      mtu: 1500,
      subnets: [{ name: 'lan0', cidr: '192.168.1.0/24' }],
      nodes: [{ name: 'node1', ip: '192.168.1.10/24', podCIDR: '10.244.0.0/24' }],
      pods: [],
      bgp: [],
      run: [],
    });
  });

  it('derives lan0 from the first node even when its prefix is not /24', () => {
    const c = loadCluster(y('nodes:', '  - {name: n1, ip: 172.16.5.9/20, podCIDR: 10.1.0.0/16}'), 'f');
    assert.deepEqual(c.subnets, [{ name: 'lan0', cidr: '172.16.0.0/20' }]);
  });

  it('fills pod listen and bgp state, keeps what is given', () => {
    const c = loadCluster(
      y(
        'name: lab',
        'cni: calico-bgp',
        'mtu: 9000',
        'podMtu: 8980',
        ...NODE12,
        '    mtu: 9000',
        'pods:',
        '  - name: p',
        '    node: node2',
        'bgp:',
        '  - nodes: [node1, node2]',
        'run:',
        '  - "node1: ip route del 10.244.1.0/24"',
      ),
      'f',
    );
    assert.equal(c.name, 'lab');
    assert.equal(c.cni, 'calico-bgp');
    assert.equal(c.mtu, 9000);
    assert.equal(c.podMtu, 8980);
    assert.equal(c.nodes[1].mtu, 9000);
    assert.equal(c.nodes[0].mtu, undefined);
    assert.deepEqual(c.pods, [{ name: 'p', node: 'node2', listen: [] }]);
    assert.deepEqual(c.bgp, [{ nodes: ['node1', 'node2'], state: 'down' }]);
    assert.deepEqual(c.run, ['node1: ip route del 10.244.1.0/24']);
  });
});

describe('MACs', () => {
  it('are normalised to lower case', () => {
    const c = loadCluster(
      y(
        ...LAN0,
        '    gatewayMac: 02:AA:bb:CC:dd:EE',
        ...NODE1,
        '    mac: 02:42:C0:A8:01:0A',
        '    bridgeMac: 8A:1B:2C:3D:4E:5F',
        '    vtepMac: 5a:2B:3c:4D:5e:6F',
        'pods:',
        '  - name: p',
        '    node: node1',
        '    mac: 62:A1:B2:C3:D4:E6',
        '    hostVethMac: FE:FF:FF:FF:FF:FF',
      ),
      'f',
    );
    assert.equal(c.subnets[0].gatewayMac, '02:aa:bb:cc:dd:ee');
    assert.equal(c.nodes[0].mac, '02:42:c0:a8:01:0a');
    assert.equal(c.nodes[0].bridgeMac, '8a:1b:2c:3d:4e:5f');
    assert.equal(c.nodes[0].vtepMac, '5a:2b:3c:4d:5e:6f');
    assert.equal(c.pods[0].mac, '62:a1:b2:c3:d4:e6');
    assert.equal(c.pods[0].hostVethMac, 'fe:ff:ff:ff:ff:ff');
  });
});

describe('ClusterError', () => {
  it('carries file, line, col and a one-line message', () => {
    const e = errorOf(y('mtu: 100', ...NODE1), 'clusters/lab.yaml');
    assert.equal(e.name, 'ClusterError');
    assert.equal(e.file, 'clusters/lab.yaml');
    assert.equal(e.line, 1);
    assert.equal(e.col, 6);
    assert.equal(e.reason, 'mtu must be an integer in 576..9216, got 100');
    assert.equal(e.message, 'clusters/lab.yaml:1:6: mtu must be an integer in 576..9216, got 100');
    assert.ok(e instanceof Error);
  });

  it('suggests the key an unknown key was probably meant to be', () => {
    // podCIDR is missing too, but the misspelling explains it
    assert.equal(
      errorOf(y('nodes:', '  - name: node1', '    ip: 192.168.1.10/24', '    podCidr: 10.244.0.0/24'))
        .message,
      'bad.yaml:4:5: unknown key "podCidr" (did you mean "podCIDR"?)',
    );
    assert.equal(
      errorOf(y('nmae: lab', ...NODE1)).message,
      'bad.yaml:1:1: unknown key "nmae" (did you mean "name"?)',
    );
  });
});

describe('YAML syntax errors', () => {
  const cases: [string, string, string][] = [
    ['duplicate key', y('mtu: 1500', ...NODE1, 'mtu: 9000'), 'bad.yaml:6:1: Map keys must be unique'],
    ['tab indentation', y('nodes:', '\t- name: node1'), 'bad.yaml:2:1: Tabs are not allowed as indentation'],
    ['unclosed quote', y(...NODE1, 'name: "lab', 'cni: x'), 'bad.yaml:7:1: Missing closing "quote'],
    ['unknown alias', y('nodes: *nodes'), 'bad.yaml:1:8: unknown alias *nodes'],
    [
      'second document',
      y(...NODE1, '---', 'name: x'),
      'bad.yaml:5:1: a cluster file holds one YAML document; this is the start of a second one',
    ],
    // a complex key: at the key, before the yaml library would stringify it (with a warning)
    [
      'a list as a key',
      y(...NODE1, '? [a, b]', ': 1'),
      'bad.yaml:5:3: a key must be a plain name, not a list',
    ],
    [
      'a mapping as a key inside a node',
      y(...NODE1, '    ? {a: 1}', '    : x'),
      'bad.yaml:5:7: a key must be a plain name, not a mapping',
    ],
    [
      'an alias of a list as a key',
      y('x: &l [1]', ...NODE1, '    *l : x'),
      'bad.yaml:6:5: a key must be a plain name, not an alias of a list or mapping',
    ],
  ];
  for (const [what, text, expected] of cases) {
    it(what, () => assert.equal(errorOf(text).message, expected));
  }
});

describe('a complex key never reaches the yaml library (no warning on stderr)', () => {
  it('loads nothing and emits no process warning', () => {
    const warnings: string[] = [];
    const on = (w: Error) => warnings.push(w.message);
    process.on('warning', on);
    try {
      errorOf(y(...NODE1, '? [a, b]', ': 1'));
    } finally {
      process.off('warning', on);
    }
    assert.deepEqual(warnings, []);
  });
});

describe('names and devices the build would refuse, at their place', () => {
  const cases: [string, string, string][] = [
    [
      'a hostVeth that is a node device',
      y(...NODE1, 'pods:', '  - name: p', '    node: node1', '    hostVeth: cni0'),
      `bad.yaml:8:15: hostVeth "cni0" is the name of a node's own device (lo, eth0, cni0, flannel.1, tunl0 are taken)`,
    ],
    [
      'a pod named like a subnet',
      y(...LAN0, ...NODE1, 'pods:', '  - {name: lan0, node: node1}'),
      'bad.yaml:9:12: pod name "lan0" is already the name of the subnet at line 2; subnets, the router, nodes, pods and external hosts share one namespace of names',
    ],
    [
      'a node named router when a subnet has a gateway',
      y(
        'subnets: [{name: lan0, cidr: 192.168.1.0/24, gateway: 192.168.1.1}]',
        'nodes:',
        '  - {name: router, ip: 192.168.1.10/24, podCIDR: 10.244.0.0/24}',
      ),
      'bad.yaml:3:12: node name "router" is already the name of the router that joins the subnets (a subnet has a gateway); subnets, the router, nodes, pods and external hosts share one namespace of names',
    ],
  ];
  for (const [what, text, expected] of cases) it(what, () => assert.equal(errorOf(text).message, expected));

  it('"router" is a fine name without a gateway', () => {
    assert.equal(
      loadCluster(y('nodes:', '  - {name: router, ip: 192.168.1.10/24, podCIDR: 10.244.0.0/24}'), 'x')
        .nodes[0].name,
      'router',
    );
  });

  it('placeIn names the place of a path in an accepted file', () => {
    const text = y(...NODE1, 'run:', '  - "node1: ip route"', '  - "node1: ip neigh"');
    loadCluster(text, 'ok.yaml');
    assert.equal(placeIn(text, 'ok.yaml', ['run', 1]), 'ok.yaml:7:5');
    assert.equal(placeIn(text, 'ok.yaml', ['nodes', 0]), 'ok.yaml:2:5');
  });
});

describe('bad cluster files', () => {
  // [what, file text, expected "file:line:col: message"]; positions counted by hand from the
  // lines (line N is the N-th argument of y()).
  const cases: [string, string, string][] = [
    ['empty file', '', 'bad.yaml:1:1: the cluster file is empty; it needs at least a "nodes:" list'],
    [
      'comments only',
      y('# nothing', '# here'),
      'bad.yaml:1:1: the cluster file is empty; it needs at least a "nodes:" list',
    ],
    [
      'not a mapping',
      y('- node1', '- node2'),
      'bad.yaml:1:1: the cluster file must be a mapping, got a list',
    ],
    ['missing nodes', y('name: lab', 'cni: flannel-vxlan'), 'bad.yaml:1:1: missing required key "nodes"'],
    ['no nodes', y('name: lab', 'nodes: []'), 'bad.yaml:2:8: nodes must list at least one node'],
    [
      'unknown top-level key',
      y(...NODE1, 'colour: blue'),
      'bad.yaml:5:1: unknown key "colour" (expected one of name, cni, mtu, podMtu, calicoLayout, ipamBlockSize, subnets, nodes, pods, externalHosts, bgp, bgpConfiguration, bgpPeers, ipPool, flannel, run, namespaces, policies, serviceCIDR, services, endpointSlices, scenario)',
    ],
    [
      'missing key in the second node: the mapping',
      y(...NODE1, '  - name: node2', '    ip: 192.168.1.11/24'),
      'bad.yaml:5:5: missing required key "podCIDR" in node "node2"',
    ],
    [
      'host bits in a podCIDR',
      y('nodes:', '  - name: node1', '    ip: 192.168.1.10/24', '    podCIDR: 10.244.0.1/24'),
      'bad.yaml:4:14: 10.244.0.1/24 has host bits set; did you mean 10.244.0.0/24?',
    ],
    [
      'host bits in a subnet cidr',
      y('subnets:', '  - {name: lan0, cidr: 192.168.1.1/24}', ...NODE1),
      'bad.yaml:2:24: 192.168.1.1/24 has host bits set; did you mean 192.168.1.0/24?',
    ],
    [
      'prefix out of range',
      y('nodes:', '  - name: node1', '    ip: 192.168.1.10/33', '    podCIDR: 10.244.0.0/24'),
      'bad.yaml:3:9: ip "192.168.1.10/33" is not a valid ADDRESS/PREFIX',
    ],
    [
      'node ip without prefix',
      y('nodes:', '  - name: node1', '    ip: 192.168.1.10', '    podCIDR: 10.244.0.0/24'),
      'bad.yaml:3:9: ip "192.168.1.10" is not a valid ADDRESS/PREFIX; add the prefix length, e.g. 192.168.1.10/24',
    ],
    [
      'node ip is the network address',
      y('nodes:', '  - name: node1', '    ip: 192.168.1.0/24', '    podCIDR: 10.244.0.0/24'),
      'bad.yaml:3:9: ip 192.168.1.0/24 is the network address of 192.168.1.0/24, not a host address',
    ],
    [
      'pod ip not an IPv4 address',
      y(...NODE1, 'pods:', '  - name: pod-a', '    node: node1', '    ip: 10.244.0.300'),
      'bad.yaml:8:9: ip "10.244.0.300" is not a valid IPv4 address',
    ],
    [
      'pod ip with a leading zero',
      y(...NODE1, 'pods:', '  - name: pod-a', '    node: node1', '    ip: 10.244.0.05'),
      'bad.yaml:8:9: ip "10.244.0.05" is not a valid IPv4 address',
    ],
    [
      'short MAC',
      y(...NODE1, '    mac: 02:42:c0:a8:01'),
      'bad.yaml:5:10: mac "02:42:c0:a8:01" is not a MAC address (six hex bytes separated by ":")',
    ],
    [
      'multicast MAC',
      y(...LAN0, '    gatewayMac: 01:00:5e:00:00:01', ...NODE1),
      'bad.yaml:4:17: gatewayMac "01:00:5e:00:00:01" is a multicast address; a device needs a unicast MAC',
    ],
    [
      'invalid node name',
      y('nodes:', '  - name: Node_1', '    ip: 192.168.1.10/24', '    podCIDR: 10.244.0.0/24'),
      'bad.yaml:2:11: invalid node name "Node_1": use 1-63 lower-case letters, digits, ' +
        "'-' and '.', starting and ending with a letter or digit",
    ],
    [
      'duplicate node name',
      y(...NODE1, '  - name: node1', '    ip: 192.168.1.11/24', '    podCIDR: 10.244.1.0/24'),
      'bad.yaml:5:11: node name "node1" is already used at line 2',
    ],
    [
      'duplicate pod name',
      y(...NODE1, 'pods:', '  - name: pod-a', '    node: node1', '  - name: pod-a', '    node: node1'),
      'bad.yaml:8:11: pod name "pod-a" is already used at line 6',
    ],
    [
      'pod named like a node',
      y(...NODE1, 'pods:', '  - name: node1', '    node: node1'),
      'bad.yaml:6:11: pod name "node1" is already the name of a node (line 2); pods and nodes share one namespace',
    ],
    [
      'pod on an unknown node',
      y(...NODE1, 'pods:', '  - {name: pod-a, node: nod1}'),
      'bad.yaml:6:25: unknown node "nod1" (did you mean "node1"?)',
    ],
    [
      'listen port out of range',
      y(...NODE1, 'pods:', '  - name: pod-a', '    node: node1', '    listen: [tcp/8080, tcp/70000]'),
      'bad.yaml:8:24: listen entry "tcp/70000" must be "tcp/PORT", "udp/PORT" or "PROTO/PORT/NAME" with PORT 1..65535',
    ],
    [
      'listen protocol',
      y(...NODE1, 'pods:', '  - name: pod-a', '    node: node1', '    listen:', '      - sctp/9'),
      'bad.yaml:9:9: listen entry "sctp/9" must be "tcp/PORT", "udp/PORT" or "PROTO/PORT/NAME" with PORT 1..65535',
    ],
    [
      'listen twice',
      y(...NODE1, 'pods:', '  - name: pod-a', '    node: node1', '    listen: [udp/53, tcp/53, udp/53]'),
      'bad.yaml:8:30: listen entry "udp/53" is listed twice',
    ],
    [
      'hostVeth too long',
      y(...NODE1, 'pods:', '  - name: pod-a', '    node: node1', '    hostVeth: veth-is-way-too-long'),
      'bad.yaml:8:15: hostVeth "veth-is-way-too-long" is not a valid interface name ' +
        "(1-15 characters, no '/', ':' or whitespace, not '.' or '..')",
    ],
    [
      'hostVeth used twice on a node',
      y(
        ...NODE1,
        'pods:',
        '  - {name: a, node: node1, hostVeth: veth0}',
        '  - {name: b, node: node1, hostVeth: veth0}',
      ),
      'bad.yaml:7:38: hostVeth "veth0" is already used on node node1 (line 6)',
    ],
    [
      'mtu out of range',
      y('mtu: 100', ...NODE1),
      'bad.yaml:1:6: mtu must be an integer in 576..9216, got 100',
    ],
    [
      'mtu as a string',
      y(...NODE1, '    mtu: "1500"'),
      'bad.yaml:5:10: mtu must be an integer in 576..9216, got string "1500"',
    ],
    [
      'mtu not an integer',
      y('podMtu: 1450.5', ...NODE1),
      'bad.yaml:1:9: podMtu must be an integer in 576..9216, got 1450.5',
    ],
    [
      'empty value: at the key',
      y(...NODE1, 'mtu:'),
      'bad.yaml:5:1: mtu must be an integer in 576..9216, got an empty value',
    ],
    [
      'cni typo',
      y('cni: flanel-vxlan', ...NODE1),
      'bad.yaml:1:6: cni must be one of flannel-vxlan, flannel-host-gw, calico-bgp, calico-ipip, ' +
        'calico-ipip-crosssubnet, calico-vxlan, calico-vxlan-crosssubnet; got string "flanel-vxlan" (did you mean "flannel-vxlan"?)',
    ],
    [
      'pods that are not mappings',
      y(...NODE1, 'pods: [pod-a]'),
      'bad.yaml:5:8: pods[0] must be a mapping, got string "pod-a"',
    ],
    [
      'node ip outside every subnet',
      y(...LAN0, 'nodes:', '  - name: node1', '    ip: 192.168.2.10/24', '    podCIDR: 10.244.0.0/24'),
      'bad.yaml:6:9: ip 192.168.2.10/24 is not inside any subnet (lan0 192.168.1.0/24)',
    ],
    [
      'node ip with the wrong prefix length',
      y(...LAN0, 'nodes:', '  - name: node1', '    ip: 192.168.1.10/16', '    podCIDR: 10.244.0.0/24'),
      'bad.yaml:6:9: ip 192.168.1.10/16 has prefix length /16 but subnet lan0 is 192.168.1.0/24',
    ],
    [
      'node off the derived default segment',
      y(...NODE1, '  - name: node2', '    ip: 10.0.0.5/24', '    podCIDR: 10.244.1.0/24'),
      'bad.yaml:6:9: ip 10.0.0.5/24 is not on lan0 192.168.1.0/24 (the default segment, derived from node1); ' +
        'list the segments under "subnets:"',
    ],
    [
      'gateway outside the subnet',
      y(...LAN0, '    gateway: 192.168.2.1', ...NODE1),
      'bad.yaml:4:14: gateway 192.168.2.1 is not inside lan0 192.168.1.0/24',
    ],
    [
      'overlapping subnets',
      y(...LAN0, '  - name: lan1', '    cidr: 192.168.0.0/16', ...NODE1),
      'bad.yaml:5:11: subnet lan1 192.168.0.0/16 overlaps lan0 192.168.1.0/24',
    ],
    [
      'empty subnets',
      y('subnets: []', ...NODE1),
      'bad.yaml:1:10: subnets must list at least one segment (or be left out)',
    ],
    [
      'bgp session with one node twice',
      y(...NODE1, 'bgp:', '  - nodes: [node1, node1]'),
      'bad.yaml:6:20: a bgp session needs two different nodes, got "node1" twice',
    ],
    [
      'bgp session with an unknown node',
      y(...NODE12, 'bgp:', '  - nodes: [node1, node3]'),
      'bad.yaml:9:20: unknown node "node3" (did you mean "node1"?)',
    ],
    [
      'bgp session with three nodes',
      y(...NODE12, 'bgp:', '  - nodes: [node1, node2, node1]'),
      'bad.yaml:9:12: a bgp session names exactly 2 nodes, got 3',
    ],
    [
      'bgp session listed twice',
      y(...NODE12, 'bgp:', '  - nodes: [node1, node2]', '  - nodes: [node2, node1]', '    state: up'),
      'bad.yaml:10:12: the session node2-node1 is already listed at line 9',
    ],
    [
      'bgp state',
      y(...NODE12, 'bgp:', '  - nodes: [node1, node2]', '    state: sideways'),
      'bad.yaml:10:12: state must be one of up, down; got string "sideways"',
    ],
    [
      'bgp key typo',
      y(...NODE12, 'bgp:', '  - nodes: [node1, node2]', '    sate: down'),
      'bad.yaml:10:5: unknown key "sate" (did you mean "state"?)',
    ],
    [
      'run line without "NETNS: "',
      y(...NODE1, 'run:', '  - node1 ip route'),
      'bad.yaml:6:5: run line "node1 ip route" must look like "NETNS: command"',
    ],
    [
      'run line that YAML read as a mapping',
      y(...NODE1, 'run:', '  - node1: ip route del 10.244.1.0/24'),
      'bad.yaml:6:5: run[0] must be a string, got a mapping (quote the line: "NETNS: command")',
    ],
    [
      'a problem behind an alias: at the alias',
      y(...NODE1, 'pods:', '  - &p {name: p, node: node1}', '  - *p'),
      'bad.yaml:7:5: pod name "p" is already used at line 6',
    ],
    [
      'first problem in document order: a cross-reference before a bad value',
      y('pods:', '  - name: pod-a', '    node: node9', ...NODE1.slice(0, 3), '    podCIDR: 10.244.0.1/24'),
      'bad.yaml:3:11: unknown node "node9" (did you mean "node1"?)',
    ],
    [
      'first problem in document order: a bad value before a cross-reference',
      y(...NODE1.slice(0, 3), '    podCIDR: 10.244.0.1/24', 'pods:', '  - {name: p, node: node9}'),
      'bad.yaml:4:14: 10.244.0.1/24 has host bits set; did you mean 10.244.0.0/24?',
    ],
    [
      'first problem in document order: an unknown key before a missing one',
      y('nodes:', '  - name: node1', '    addr: 192.168.1.10/24'),
      'bad.yaml:2:5: missing required key "ip" in node "node1"',
    ],
  ];

  it('has at least 15 cases', () => assert.ok(cases.length >= 15));
  for (const [what, text, expected] of cases) {
    it(what, () => assert.equal(errorOf(text).message, expected));
  }
});

describe('external hosts', () => {
  const HOST = (...more: string[]) => ['externalHosts:', '  - name: client', ...more];
  it("a host on the nodes' segment, with a route to a load balancer IP via a node", () => {
    const spec = loadCluster(
      y(
        ...LAN0,
        ...NODE12,
        ...HOST('    ip: 192.168.1.100/24', '    routes: [{to: 203.0.113.10/32, via: 192.168.1.11}]'),
      ),
      'ok.yaml',
    );
    assert.deepEqual(spec.externalHosts, [
      {
        name: 'client',
        ip: '192.168.1.100/24',
        listen: [],
        routes: [{ to: '203.0.113.10/32', via: '192.168.1.11' }],
      },
    ]);
    // without subnets: the segment derived from the first node
    assert.equal(
      loadCluster(y(...NODE1, ...HOST('    ip: 192.168.1.7/24')), 'ok.yaml').externalHosts?.length,
      1,
    );
  });
  const cases: [string, string, string][] = [
    [
      'an address outside every subnet',
      y(...LAN0, ...NODE1, ...HOST('    ip: 10.0.0.100/24')),
      'bad.yaml:10:9: ip 10.0.0.100/24 is not inside any subnet (lan0 192.168.1.0/24)',
    ],
    [
      'an address off the derived segment',
      y(...NODE1, ...HOST('    ip: 192.168.2.100/24')),
      'bad.yaml:7:9: ip 192.168.2.100/24 is not on lan0 192.168.1.0/24 (the default segment, derived from node1); list the segments under "subnets:"',
    ],
    [
      "a node's address",
      y(...LAN0, ...NODE12, ...HOST('    ip: 192.168.1.11/24')),
      'bad.yaml:13:9: ip 192.168.1.11/24 is already the address of node node2',
    ],
    [
      'a gateway off its subnet',
      y(
        ...LAN0,
        ...NODE1,
        ...HOST('    ip: 192.168.1.100/24', '    routes: [{to: 203.0.113.10/32, via: 10.0.0.1}]'),
      ),
      "bad.yaml:11:41: via 10.0.0.1 is not a host address of the host's subnet 192.168.1.0/24",
    ],
    [
      'its own address as the gateway',
      y(
        ...LAN0,
        ...NODE1,
        ...HOST('    ip: 192.168.1.100/24', '    routes: [{to: 0.0.0.0/0, via: 192.168.1.100}]'),
      ),
      "bad.yaml:11:35: via 192.168.1.100 is the host's own address",
    ],
    [
      'a route to a network with host bits',
      y(
        ...LAN0,
        ...NODE1,
        ...HOST('    ip: 192.168.1.100/24', '    routes: [{to: 203.0.113.10/24, via: 192.168.1.10}]'),
      ),
      'bad.yaml:11:19: 203.0.113.10/24 has host bits set; did you mean 203.0.113.0/24?',
    ],
    [
      'the name of a node',
      y(...LAN0, ...NODE1, 'externalHosts:', '  - {name: node1, ip: 192.168.1.100/24}'),
      'bad.yaml:9:12: external host name "node1" is already the name of the node at line 5; subnets, the router, nodes, pods and external hosts share one namespace of names',
    ],
    [
      'the name of a subnet',
      y(...LAN0, ...NODE1, 'externalHosts:', '  - {name: lan0, ip: 192.168.1.100/24}'),
      'bad.yaml:9:12: external host name "lan0" is already the name of the subnet at line 2; subnets, the router, nodes, pods and external hosts share one namespace of names',
    ],
    [
      'twice the same name',
      y(
        ...LAN0,
        ...NODE1,
        'externalHosts:',
        '  - {name: c, ip: 192.168.1.100/24}',
        '  - {name: c, ip: 192.168.1.101/24}',
      ),
      'bad.yaml:10:12: external host name "c" is already used at line 9',
    ],
    [
      'an unknown key',
      y(...LAN0, ...NODE1, ...HOST('    ip: 192.168.1.100/24', '    gateway: 192.168.1.1')),
      'bad.yaml:11:5: unknown key "gateway" (expected one of name, ip, mac, listen, routes)',
    ],
  ];
  for (const [what, text, expected] of cases) it(what, () => assert.equal(errorOf(text).message, expected));
});
