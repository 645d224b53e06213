/**
 * calico-node's own layout (Calico v3.27) in the calico-* modes: cali* veths with
 * ee:ee:ee:ee:ee:ee, proxy ARP for the pods' 169.254.1.1, /32 routes, IPAM blocks with their
 * blackholes and the routes BIRD learns for them; and the article's cni0 picture under
 * `calicoLayout: bridge`. What the real tools print on this layout is compared in
 * test/calico-golden.test.ts; packets and outcomes against the kernel in the differential suite.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { loadCluster } from '../src/cluster/load.ts';
import { seedCluster } from '../src/cluster/seed.ts';
import type { ClusterSpec } from '../src/cluster/spec.ts';
import { BuildError, buildCluster, calicoVethName } from '../src/cni/build.ts';
import { nodeBlocks } from '../src/cni/ipam.ts';
import { formatRoute } from '../src/kernel/fib.ts';
import { prepareCluster, runCommand } from '../src/tools/index.ts';
import { explainDrop } from '../src/diagnose/explain.ts';
import { walk } from '../src/trace/walk.ts';
import { hex, sha1, sha1Hex } from '../src/wire/sha1.ts';
import { utf8 } from '../src/wire/sha256.ts';

const routes = (c: ReturnType<typeof buildCluster>, ns: string) =>
  c.world
    .ns(ns)
    .fib.list()
    .map((r) => formatRoute(r).trim());

describe('names', () => {
  test('sha1 agrees with node:crypto across the padding boundaries', () => {
    for (const s of ['', 'abc', 'x'.repeat(55), 'x'.repeat(56), 'x'.repeat(64), 'é'.repeat(300)])
      assert.equal(hex(sha1(utf8(s))), createHash('sha1').update(s).digest('hex'), JSON.stringify(s));
    // random bytes of every length up to five blocks, each byte value among them
    let x = 7;
    for (let len = 0; len <= 320; len++) {
      const b = new Uint8Array(len);
      for (let i = 0; i < len; i++) b[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
      assert.equal(hex(sha1(b)), createHash('sha1').update(b).digest('hex'), `${len} random bytes`);
    }
  });

  test('sha1Hex agrees with node:crypto: strings of every length to two blocks, ASCII or not, every prefix', () => {
    let x = 11;
    const rnd = () => (x = (x * 1103515245 + 12345) >>> 0) >>> 8;
    // ASCII from NUL to DEL, then now and then a character past it (two, three and four bytes in UTF-8)
    const char = () => {
      const r = rnd() % 100;
      if (r < 90) return String.fromCharCode(rnd() % 0x80);
      return r < 94 ? 'é' : r < 97 ? '€' : '😀';
    };
    for (let len = 0; len <= 130; len++)
      for (let k = 0; k < 4; k++) {
        let s = '';
        while (s.length < len) s += k < 2 ? String.fromCharCode(32 + (rnd() % 95)) : char();
        const want = createHash('sha1').update(s).digest('hex');
        for (const digits of [0, 1, 8, 11, 39, 40])
          assert.equal(sha1Hex(s, digits), want.slice(0, digits), JSON.stringify(s));
        assert.equal(sha1Hex(s), want, JSON.stringify(s));
      }
  });

  test("VethNameForWorkload: cali + sha1(namespace.pod)[:11] (the vector of Calico's k8s CNI users)", () => {
    // github.com/aws/amazon-vpc-cni-k8s networkutils: "default"/"client-b6989bf87-2bgtc" → calic95a4947e07
    assert.equal(calicoVethName('default', 'client-b6989bf87-2bgtc'), 'calic95a4947e07');
    assert.equal(calicoVethName('default', 'pod-a').length, 15);
  });
});

describe('the seed cluster in calico-bgp, calico-node layout', () => {
  const c = buildCluster(seedCluster(), 'calico-bgp');

  test('no bridge; each pod behind a cali veth with ee:ee:ee:ee:ee:ee and the CNI sysctls', () => {
    const node1 = c.world.ns('node1');
    assert.equal(c.layout, 'calico');
    assert.equal(node1.link('cni0'), undefined);
    for (const p of c.pods.filter((x) => x.node === 'node1')) {
      assert.equal(p.hostVeth, calicoVethName(p.namespace, p.name));
      const l = node1.link(p.hostVeth)!;
      assert.equal(l.type, 'veth');
      assert.equal(l.mac, 'ee:ee:ee:ee:ee:ee');
      assert.equal(l.master, undefined);
      for (const [k, v] of [
        [`net.ipv4.conf.${p.hostVeth}.proxy_arp`, '1'],
        [`net.ipv4.neigh.${p.hostVeth}.proxy_delay`, '0'],
        [`net.ipv4.conf.${p.hostVeth}.route_localnet`, '1'],
        [`net.ipv4.conf.${p.hostVeth}.forwarding`, '1'],
      ])
        assert.equal(node1.sysctl.get(k), v, k);
    }
  });

  test('in the pod: the address as a /32, 169.254.1.1 on-link and the default route through it', () => {
    const pod = c.world.ns('pod-a');
    assert.deepEqual(
      pod.link('eth0')!.addrs.map((a) => `${a.ip}/${a.len}`),
      ['10.244.0.5/32'],
    );
    assert.deepEqual(routes(c, 'pod-a').sort(), [
      '169.254.1.1 dev eth0 scope link',
      'default via 169.254.1.1 dev eth0',
    ]);
  });

  test("on the node: a /32 per pod, the block's blackhole, the other nodes' blocks via BIRD", () => {
    const r = routes(c, 'node1');
    const a = c.pods.find((p) => p.name === 'pod-a')!;
    assert.ok(r.includes(`10.244.0.5 dev ${a.hostVeth} scope link`), r.join('\n'));
    assert.ok(r.includes('blackhole 10.244.0.0/26 proto bird'), r.join('\n'));
    assert.ok(r.includes('10.244.1.0/26 via 192.168.1.11 dev eth0 proto bird'), r.join('\n'));
    assert.ok(r.includes('10.244.2.0/26 via 192.168.1.12 dev eth0 proto bird'), r.join('\n'));
    assert.deepEqual(nodeBlocks(c, 'node2'), ['10.244.1.0/26']);
  });

  test('IPIP: the tunnel address is IPAM’s first on the node; remote blocks via tunl0 onlink', () => {
    const ipip = buildCluster(seedCluster(), 'calico-ipip');
    assert.deepEqual(
      ipip.world
        .ns('node1')
        .link('tunl0')!
        .addrs.map((a) => a.ip),
      ['10.244.0.0'],
    );
    assert.ok(routes(ipip, 'node1').includes('10.244.1.0/26 via 192.168.1.11 dev tunl0 proto bird onlink'));
  });

  test("the pod's first packet: ARP for 169.254.1.1, answered by node1 with proxy ARP", () => {
    const w = walk(c, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 });
    assert.equal(w.request.disposition.kind, 'delivered');
    const proxied = w.request.steps.find((s) => s.ev.type === 'arp-proxy-reply');
    assert.ok(proxied, 'a proxy ARP reply');
    assert.equal(proxied.netns, 'node1');
    if (proxied.ev.type !== 'arp-proxy-reply') throw new Error('unreachable');
    assert.equal(proxied.ev.target, '169.254.1.1');
    assert.equal(proxied.ev.mac, 'ee:ee:ee:ee:ee:ee');
    assert.equal(proxied.ev.route.dev, 'eth0');
  });

  test('proxy ARP off on the cali interface: the pod never resolves its gateway', () => {
    const a = c.pods.find((p) => p.name === 'pod-a')!;
    const broken = prepareCluster(seedCluster(), 'calico-bgp', [
      `node1: sysctl -w net.ipv4.conf.${a.hostVeth}.proxy_arp=0`,
    ]);
    const w = walk(broken, { from: 'pod-a', to: 'pod-c', proto: 'udp', port: 8080 });
    assert.equal(w.request.disposition.kind, 'dropped');
    if (w.request.disposition.kind !== 'dropped') return;
    assert.equal(w.request.disposition.drop.reason, 'neighbour-failed');
    assert.equal(w.request.disposition.drop.netns, 'pod-a');
    const x = explainDrop(broken, w.request)!;
    assert.match(x.causes[0], new RegExp(`^proxy ARP is off on node1's ${a.hostVeth}`));
  });

  test('ip_forward=0 turns every device’s forwarding off, the cali ones too (inet_forward_change)', () => {
    const off = prepareCluster(seedCluster(), 'calico-bgp', ['node1: sysctl -w net.ipv4.ip_forward=0']);
    const a = off.pods.find((p) => p.name === 'pod-a')!;
    assert.equal(off.world.ns('node1').forwarding(a.hostVeth), false);
    assert.equal(runCommand(off, 'node1', `sysctl -n net.ipv4.conf.${a.hostVeth}.forwarding`).stdout, '0\n');
    const w = walk(off, { from: 'pod-a', to: 'pod-b', proto: 'udp', port: 8080 });
    assert.equal(w.request.disposition.kind, 'dropped');
  });
});

describe('IPAM blocks', () => {
  const spec = (yaml: string): ClusterSpec => loadCluster(yaml, 'c.yaml');
  const base = (extra: string, pods: string) => `
cni: calico-bgp
${extra}
subnets: [{name: lan0, cidr: 192.168.1.0/24, gateway: 192.168.1.1}]
nodes:
  - {name: n1, ip: 192.168.1.10/24, podCIDR: 10.244.0.0/25}
  - {name: n2, ip: 192.168.1.11/24, podCIDR: 10.244.1.0/24}
pods:
${pods}`;

  test('addresses from ordinal 0 of the block; a second block when the first is full', () => {
    const pods = Array.from({ length: 66 }, (_, i) => `  - {name: p${i}, node: n2}`).join('\n');
    const c = buildCluster(spec(base('', pods)), 'calico-bgp');
    assert.equal(c.pods[0].ip, '10.244.1.0');
    assert.equal(c.pods[64].ip, '10.244.1.64');
    assert.deepEqual(nodeBlocks(c, 'n2'), ['10.244.1.0/26', '10.244.1.64/26']);
    const r = routes(c, 'n1');
    assert.ok(r.includes('10.244.1.0/26 via 192.168.1.11 dev eth0 proto bird'));
    assert.ok(r.includes('10.244.1.64/26 via 192.168.1.11 dev eth0 proto bird'));
    assert.ok(routes(c, 'n2').includes('blackhole 10.244.1.64/26 proto bird'));
    // a node without pods claims no block, and originates nothing
    assert.deepEqual(nodeBlocks(c, 'n1'), []);
  });

  test('an address of the block that no pod holds: the blackhole discards it silently (the lab agrees)', () => {
    // checked on the kernel: `podwalk lab trace pod-a 10.244.1.20 --proto icmp` on the seed in
    // calico-bgp: no echo reply, no ICMP error, simulation and kernel agree on all 26 interfaces
    const c = buildCluster(seedCluster(), 'calico-bgp');
    const w = walk(c, { from: 'pod-a', to: '10.244.1.20', proto: 'icmp' });
    const d = w.request.disposition;
    assert.equal(d.kind, 'dropped');
    if (d.kind !== 'dropped') return;
    assert.equal(d.netns, 'node2');
    assert.equal(d.drop.reason, 'no-route');
    if (d.drop.reason !== 'no-route') return;
    assert.equal(d.drop.route?.type, 'blackhole');
    assert.equal(w.reply, undefined, 'no ICMP error comes back');
    assert.deepEqual(d.drop.counters, []);
  });

  test("a borrowed address whose /32 the block's owner did not learn: doctor names the blackhole and the session", () => {
    const pods = ['  - {name: q0, node: n2}', '  - {name: big, node: n1, ip: 10.244.1.9}'].join('\n');
    const yaml = base('', pods) + '\nbgp: [{nodes: [n1, n2], state: down}]\n';
    const c = buildCluster(spec(yaml), 'calico-bgp');
    const w = walk(c, { from: 'q0', to: 'big', proto: 'icmp' });
    assert.equal(w.request.disposition.kind, 'dropped');
    const x = explainDrop(c, w.request)!;
    assert.equal(x.entry, '10.244.1.9 matches `blackhole 10.244.1.0/26 proto bird`');
    assert.match(x.causes[0], /borrowed by n1 from n2's IPAM block.*the BGP session n2 ↔ n1 is Active/);
  });

  test('ipamBlockSize: /28 blocks', () => {
    const pods = Array.from({ length: 17 }, (_, i) => `  - {name: p${i}, node: n2}`).join('\n');
    const c = buildCluster(spec(base('ipamBlockSize: 28', pods)), 'calico-bgp');
    assert.deepEqual(nodeBlocks(c, 'n2'), ['10.244.1.0/28', '10.244.1.16/28']);
  });

  test("borrowed: a node out of blocks takes an address from another node's block", () => {
    // n1's podCIDR /25 holds two /26 blocks: the 129th pod borrows from n2's block
    const pods = [
      '  - {name: q0, node: n2}',
      ...Array.from({ length: 129 }, (_, i) => `  - {name: p${i}, node: n1}`),
    ].join('\n');
    const c = buildCluster(spec(base('', pods)), 'calico-bgp');
    const last = c.pods.find((p) => p.name === 'p128')!;
    assert.equal(last.ip, '10.244.1.1');
    assert.equal(c.ipam!.borrowed.get('p128'), 'n2');
    // n1 announces the /32 (its kernel route, through calico_aggr); n2 routes it there, beside its blackhole
    const r2 = routes(c, 'n2');
    assert.ok(r2.includes('10.244.1.1 via 192.168.1.10 dev eth0 proto bird'), r2.join('\n'));
    assert.ok(r2.includes('blackhole 10.244.1.0/26 proto bird'), r2.join('\n'));
    const w = walk(c, { from: 'q0', to: 'p128', proto: 'icmp' });
    assert.equal(w.request.disposition.kind, 'delivered');
  });

  test('a block larger than a node’s podCIDR is refused', () => {
    assert.throws(
      () => buildCluster(spec(base('ipamBlockSize: 24', '  - {name: a, node: n1}')), 'calico-bgp'),
      (e: unknown) =>
        e instanceof BuildError && /does not fit in n1's podCIDR 10.244.0.0\/25/.test(e.message),
    );
  });
});

describe('calico-vxlan: felix’s routes from IPAM', () => {
  // /30 blocks: node1's /29 holds two, its tunnel address and seven pods fill them, and a8
  // borrows 10.244.0.9 from node2's block (node2's tunnel address is its .8). Checked on the
  // kernel: `podwalk lab trace b1 a8:8080`, `c1 a8 --proto icmp` and `a8 c1:8080` on this cluster:
  // simulation and kernel agree on all 31 interfaces, each delivered and answered
  const yaml = `
cni: calico-vxlan
ipamBlockSize: 30
subnets: [{name: lan0, cidr: 192.168.1.0/24, gateway: 192.168.1.1}]
nodes:
  - {name: node1, ip: 192.168.1.10/24, podCIDR: 10.244.0.0/29}
  - {name: node2, ip: 192.168.1.11/24, podCIDR: 10.244.0.8/29}
  - {name: node3, ip: 192.168.1.12/24, podCIDR: 10.244.0.16/29}
pods:
${[...Array.from({ length: 8 }, (_, i) => `  - {name: a${i + 1}, node: node1, listen: [tcp/8080]}`), '  - {name: b1, node: node2, listen: [tcp/8080]}', '  - {name: c1, node: node3, listen: [tcp/8080]}'].join('\n')}
`;
  const c = buildCluster(loadCluster(yaml, 'c.yaml'));

  test("a borrowed address: a /32 via the borrowing node's VTEP on every other node, over the owner's blackhole", () => {
    assert.equal(c.pods.find((p) => p.name === 'a8')!.ip, '10.244.0.9');
    assert.equal(c.ipam!.borrowed.get('a8'), 'node2');
    assert.deepEqual(routes(c, 'node2'), [
      'default via 192.168.1.1 dev eth0',
      '10.244.0.0/30 via 10.244.0.0 dev vxlan.calico onlink',
      '10.244.0.4/30 via 10.244.0.0 dev vxlan.calico onlink',
      'blackhole 10.244.0.8/30 proto 80',
      '10.244.0.9 via 10.244.0.0 dev vxlan.calico onlink',
      '10.244.0.10 dev cali947a4e9318d scope link',
      '10.244.0.16/30 via 10.244.0.16 dev vxlan.calico onlink',
      '192.168.1.0/24 dev eth0 proto kernel scope link src 192.168.1.11',
    ]);
    assert.ok(routes(c, 'node3').includes('10.244.0.9 via 10.244.0.0 dev vxlan.calico onlink'));
    // on its own node the borrowed address is a workload's: the CNI plugin's route, nothing of felix's
    assert.ok(!routes(c, 'node1').some((r) => r.startsWith('10.244.0.9 via')));
    for (const from of ['b1', 'c1']) {
      const w = walk(c, { from, to: 'a8', proto: 'tcp', port: 8080 });
      assert.equal(w.reply?.disposition.kind, 'delivered', from);
    }
  });

  test('each node: vxlan.calico with VNI 4096, its IPAM tunnel address, and a neighbour and FDB entry per remote VTEP', () => {
    const ns = c.world.ns('node1');
    const dev = ns.link('vxlan.calico')!;
    assert.ok(dev.type === 'vxlan' && dev.vni === 4096 && dev.dstport === 4789 && !dev.learning);
    assert.deepEqual(
      dev.addrs.map((a) => `${a.ip}/${a.len}`),
      ['10.244.0.0/32'],
    );
    assert.equal(
      runCommand(c, 'node1', 'ip neigh show dev vxlan.calico').stdout,
      '10.244.0.8 lladdr 66:2d:bf:44:a6:8b PERMANENT \n10.244.0.16 lladdr 66:a4:6f:e0:c4:da PERMANENT \n',
    );
    assert.equal(
      runCommand(c, 'node1', 'bridge fdb show dev vxlan.calico').stdout,
      '66:a4:6f:e0:c4:da dst 192.168.1.12 self permanent\n66:2d:bf:44:a6:8b dst 192.168.1.11 self permanent\n',
    );
  });
});

describe('calicoLayout: bridge, the article’s picture', () => {
  test('cni0, the bridge plugin’s veth names, one route per pod CIDR', () => {
    const c = buildCluster({ ...seedCluster(), calicoLayout: 'bridge' }, 'calico-bgp');
    assert.equal(c.layout, 'bridge');
    assert.ok(c.world.ns('node1').link('cni0'));
    assert.equal(c.pods[0].hostVeth, 'veth-pod-a');
    assert.ok(routes(c, 'node1').includes('10.244.1.0/24 via 192.168.1.11 dev eth0 proto bird'));
  });
});
