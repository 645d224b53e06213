/**
 * One conformance suite, run against every CNI mode on the seed cluster: what must hold whatever
 * the mode (delivery, replies, conntrack states, TTLs, MTU behaviour), and what must differ
 * (encapsulation on the underlay).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { seedCluster } from '../src/cluster/seed.ts';
import { CNI_MODES, type CniMode } from '../src/cluster/spec.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { walk, type Walk } from '../src/trace/walk.ts';
import type { Step, Trace } from '../src/trace/types.ts';
import { parseFrame } from '../src/wire/packet.ts';
import type { Frame, Ipv4Packet } from '../src/wire/types.ts';
import { formatCtEntry } from '../src/render/conntrack.ts';
import { traceToJson } from '../src/render/json.ts';
import { roleLabel, stepEntry, stepTable } from '../src/render/step.ts';

/**
 * The seed cluster in the article's picture (calico-* modes on the cni0 bridge, `calicoLayout:
 * bridge`): what this suite's assertions describe. calico-node's own layout is test/calico-layout.test.ts's.
 */
const articleSeed = () => ({ ...seedCluster(), calicoLayout: 'bridge' as const });

/** the label a reader sees for a packet of the exchange */
const label = (t: Trace | undefined) => (t ? roleLabel(t.flow.role) : undefined);

const OVERHEAD: Record<CniMode, number> = {
  'flannel-vxlan': 50,
  'flannel-host-gw': 0,
  'calico-bgp': 0,
  'calico-ipip': 20,
  'calico-ipip-crosssubnet': 0, // the seed's nodes share one subnet: direct routes
  'calico-vxlan': 50,
  'calico-vxlan-crosssubnet': 0, // the same: felix's no-encap routes via eth0
};
const TUNNEL: Partial<Record<CniMode, string>> = {
  'flannel-vxlan': 'flannel.1',
  'calico-ipip': 'tunl0',
  'calico-vxlan': 'vxlan.calico',
};

function frames(t: Trace, netns: string, kind: 'xmit' | 'rx', device?: string): Step[] {
  return t.steps.filter(
    (s) => !s.aux && s.netns === netns && s.kind === kind && s.frame && (!device || s.device === device),
  );
}

function innermostIp(f: Frame): Ipv4Packet {
  if (f.payload.kind !== 'ipv4') throw new Error('not IPv4');
  let p: Ipv4Packet = f.payload;
  for (;;) {
    const l4 = p.payload;
    if (l4.kind === 'udp' && l4.payload.kind === 'vxlan') {
      const inner = l4.payload.frame.payload;
      if (inner.kind !== 'ipv4') throw new Error('VXLAN without IPv4');
      p = inner;
    } else if (l4.kind === 'ipip') p = l4.inner;
    else return p;
  }
}

function ctLines(c: Cluster, node: string): string[] {
  return c.world.ns(node).conntrack.entries.map((e) => formatCtEntry(e, c.world.now));
}

function exchange(
  mode: CniMode,
  from: string,
  to: string,
  proto: 'tcp' | 'udp' | 'icmp',
): { c: Cluster; w: Walk } {
  const c = buildCluster(articleSeed(), mode);
  const w = walk(c, { from, to, proto, port: proto === 'icmp' ? undefined : 8080 }, { exchange: true });
  return { c, w };
}

for (const mode of CNI_MODES) {
  describe(`conformance: ${mode}`, () => {
    test('same-node TCP: bridged through cni0, handshake, data, close; conntrack TIME_WAIT [ASSURED] on node1', () => {
      const { c, w } = exchange(mode, 'pod-a', 'pod-b', 'tcp');
      assert.deepEqual(w.request.disposition, {
        kind: 'delivered',
        netns: 'pod-b',
        device: 'eth0',
        to: 'tcp/8080',
      });
      assert.equal(label(w.reply), 'SYN-ACK');
      assert.equal(w.reply?.disposition.kind, 'delivered');
      assert.equal(w.reply?.disposition.kind === 'delivered' && w.reply.disposition.netns, 'pod-a');
      const labels = w.traces.map((t) => label(t));
      // as the real kernel does it (checked with tcpdump on veth in network namespaces): data is ACKed at once
      assert.deepEqual(labels, [
        'SYN',
        'SYN-ACK',
        'ACK',
        'request',
        'ACK',
        'response',
        'ACK',
        'FIN',
        'FIN',
        'ACK',
      ]);
      for (const t of w.traces) assert.equal(t.disposition.kind, 'delivered', `${label(t)} delivered`);
      // L2 only on node1: the bridge forwards port to port, no routing step in node1
      const node1 = w.request.steps.filter((s) => !s.aux && s.netns === 'node1');
      assert.ok(
        node1.some(
          (s) =>
            s.kind === 'bridge' &&
            s.action === 'forward' &&
            stepEntry(s)?.includes('dev veth-pod-b master cni0'),
        ),
      );
      assert.ok(!node1.some((s) => s.kind === 'route'), 'no routing on node1 for bridged traffic');
      // br_netfilter: the bridged packet still traverses filter FORWARD
      assert.ok(node1.some((s) => s.kind === 'netfilter' && stepTable(s) === 'filter FORWARD'));
      const atB = parseFrame(frames(w.request, 'pod-b', 'rx')[0].frame!);
      assert.equal(atB.payload.kind === 'ipv4' && atB.payload.ip.ttl, 64, 'bridged: TTL unchanged');
      assert.equal(atB.eth.dst, '62:a1:b2:c3:d4:e6', "pod-b's MAC from the article");
      const ct = ctLines(c, 'node1').filter((l) => l.includes('dport=8080 '));
      assert.equal(ct.length, 1);
      assert.match(
        ct[0],
        /^tcp {6}6 1(19|20) TIME_WAIT src=10\.244\.0\.5 dst=10\.244\.0\.6 sport=\d+ dport=8080 src=10\.244\.0\.6 dst=10\.244\.0\.5 sport=8080 dport=\d+ \[ASSURED\] mark=0 use=1$/,
      );
    });

    test(`cross-node TCP: routed by node1, ${OVERHEAD[mode] ? `${OVERHEAD[mode]} bytes of encapsulation` : 'no encapsulation'} on the underlay, reply and conntrack on both nodes`, () => {
      const { c, w } = exchange(mode, 'pod-a', 'pod-c', 'tcp');
      assert.deepEqual(w.request.disposition, {
        kind: 'delivered',
        netns: 'pod-c',
        device: 'eth0',
        to: 'tcp/8080',
      });
      assert.equal(label(w.reply), 'SYN-ACK');
      assert.equal(w.reply?.disposition.kind === 'delivered' && w.reply.disposition.netns, 'pod-a');
      for (const t of w.traces) assert.equal(t.disposition.kind, 'delivered', `${label(t)} delivered`);

      const sent = frames(w.request, 'pod-a', 'xmit')[0].frame!;
      const onWire = frames(w.request, 'lan0', 'rx')[0].frame!;
      assert.equal(onWire.length - sent.length, OVERHEAD[mode], 'overhead on the underlay');
      const wire = parseFrame(onWire);
      assert.equal(wire.payload.kind, 'ipv4');
      const outer = wire.payload as Ipv4Packet;
      const inner = innermostIp(wire);
      assert.equal(inner.ip.src, '10.244.0.5');
      assert.equal(inner.ip.dst, '10.244.1.5');
      if (mode === 'flannel-vxlan') {
        assert.equal(outer.ip.src, '192.168.1.10');
        assert.equal(outer.ip.dst, '192.168.1.11');
        assert.ok(outer.payload.kind === 'udp' && outer.payload.udp.dstPort === 4789);
        assert.ok(
          outer.payload.kind === 'udp' &&
            outer.payload.payload.kind === 'vxlan' &&
            outer.payload.payload.vxlan.vni === 1,
        );
        const vxFrame =
          outer.payload.kind === 'udp' && outer.payload.payload.kind === 'vxlan'
            ? outer.payload.payload.frame
            : undefined;
        assert.equal(vxFrame?.eth.dst, '5a:2b:3c:4d:5e:6f', "node2's VTEP MAC from the article");
      } else if (mode === 'calico-vxlan') {
        assert.equal(outer.ip.src, '192.168.1.10');
        assert.equal(outer.ip.dst, '192.168.1.11');
        const vx =
          outer.payload.kind === 'udp' && outer.payload.payload.kind === 'vxlan' ? outer.payload : undefined;
        assert.equal(vx?.udp.dstPort, 4789);
        assert.equal(vx?.payload.kind === 'vxlan' && vx.payload.vxlan.vni, 4096, "felix's VXLANVNI");
        // vtepMACForHost("node2"): 0x66 and sha1("node2")[0:5] (Python's hashlib)
        assert.equal(
          vx?.payload.kind === 'vxlan' && vx.payload.frame.eth.dst,
          '66:2d:bf:44:a6:8b',
          "node2's VTEP MAC as felix derives it",
        );
      } else if (mode === 'calico-ipip') {
        assert.equal(outer.ip.protocol, 4);
        assert.equal(outer.ip.src, '192.168.1.10');
        assert.equal(outer.ip.dst, '192.168.1.11');
      } else {
        assert.equal(outer, inner === outer ? outer : inner, 'no encapsulation');
        assert.equal(outer.ip.dst, '10.244.1.5', 'pod IPs visible on the underlay');
      }
      // the route node1 used, as ip route prints it
      const route = w.request.steps.find((s) => s.netns === 'node1' && s.kind === 'route' && !s.aux)!;
      const expected: Record<CniMode, string> = {
        'flannel-vxlan': '10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink',
        'flannel-host-gw': '10.244.1.0/24 via 192.168.1.11 dev eth0',
        'calico-bgp': '10.244.1.0/24 via 192.168.1.11 dev eth0 proto bird',
        'calico-ipip': '10.244.1.0/24 via 192.168.1.11 dev tunl0 proto bird onlink',
        'calico-ipip-crosssubnet': '10.244.1.0/24 via 192.168.1.11 dev eth0 proto bird',
        // felix's route: the remote VTEP's tunnel address (bridge layout: the CIDR's first), proto boot
        'calico-vxlan': '10.244.1.0/24 via 10.244.1.0 dev vxlan.calico onlink',
        // felix's no-encap route for a node on this node's subnet: proto 80 (VXLANDefaultProto)
        'calico-vxlan-crosssubnet': '10.244.1.0/24 via 192.168.1.11 dev eth0 proto 80',
      };
      assert.equal(stepEntry(route), expected[mode]);
      // two routed hops: TTL 62 at pod-c
      const atC = parseFrame(frames(w.request, 'pod-c', 'rx')[0].frame!);
      assert.equal(atC.payload.kind === 'ipv4' && atC.payload.ip.ttl, 62);
      // MSS follows the pod MTU
      const syn = parseFrame(sent);
      assert.equal(
        syn.payload.kind === 'ipv4' &&
          syn.payload.payload.kind === 'tcp' &&
          syn.payload.payload.tcp.options.mss,
        c.podMtu - 40,
      );
      for (const node of ['node1', 'node2']) {
        const ct = ctLines(c, node).filter((l) => l.startsWith('tcp'));
        assert.equal(ct.length, 1, `${node}: one TCP entry`);
        assert.match(ct[0], /TIME_WAIT src=10\.244\.0\.5 dst=10\.244\.1\.5 .* \[ASSURED\]/, node);
      }
    });

    for (const [to, where] of [
      ['pod-b', 'same-node'],
      ['pod-c', 'cross-node'],
    ] as const) {
      test(`${where} UDP: datagram delivered, echo reply delivered, conntrack replied`, () => {
        const { c, w } = exchange(mode, 'pod-a', to, 'udp');
        assert.equal(w.request.disposition.kind === 'delivered' && w.request.disposition.to, 'udp/8080');
        assert.equal(label(w.reply), 'UDP reply');
        assert.equal(w.reply?.disposition.kind === 'delivered' && w.reply.disposition.netns, 'pod-a');
        const ct = ctLines(c, 'node1').filter((l) => l.startsWith('udp') && l.includes('dport=8080 '));
        assert.equal(ct.length, 1);
        assert.doesNotMatch(ct[0], /UNREPLIED/);
        assert.match(ct[0], /^udp {6}17 (29|30) src=10\.244\.0\.5 /);
      });

      test(`${where} ICMP: echo request and reply`, () => {
        const { c, w } = exchange(mode, 'pod-a', to, 'icmp');
        assert.equal(w.request.disposition.kind === 'delivered' && w.request.disposition.netns, to);
        assert.equal(label(w.reply), 'ICMP echo reply');
        assert.equal(w.reply?.disposition.kind === 'delivered' && w.reply.disposition.netns, 'pod-a');
        assert.ok(
          ctLines(c, 'node1').some(
            (l) => l.startsWith('icmp     1 ') && l.includes('type=8 code=0') && !l.includes('UNREPLIED'),
          ),
        );
      });
    }

    test('DF packet over the pod MTU from the pod: EMSGSIZE, the packet never leaves (Linux sends no ICMP to a local sender)', () => {
      const c = buildCluster(articleSeed(), mode);
      const w = walk(c, { from: 'pod-a', to: 'pod-c', proto: 'icmp', size: c.podMtu + 1, df: true });
      assert.equal(w.request.disposition.kind, 'dropped');
      assert.equal(w.request.disposition.kind === 'dropped' && w.request.disposition.reason, 'mtu-exceeded');
      assert.equal(w.request.disposition.kind === 'dropped' && w.request.disposition.netns, 'pod-a');
      assert.ok(!w.request.steps.some((s) => s.kind === 'xmit'), 'nothing transmitted');
      assert.equal(w.reply, undefined);
      // one byte less fits
      const ok = walk(buildCluster(articleSeed(), mode), {
        from: 'pod-a',
        to: 'pod-c',
        proto: 'icmp',
        size: c.podMtu,
        df: true,
      });
      assert.equal(ok.request.disposition.kind, 'delivered');
    });

    test('pod MTU set to the underlay MTU: a full-size DF packet is dropped where the tunnel cannot carry it, and ICMP fragmentation-needed reaches the sender', () => {
      const spec = { ...articleSeed(), podMtu: 1500 };
      const c = buildCluster(spec, mode);
      const w = walk(c, { from: 'pod-a', to: 'pod-c', proto: 'icmp', size: 1500, df: true });
      const tunnel = TUNNEL[mode];
      if (!tunnel) {
        assert.equal(
          w.request.disposition.kind,
          'delivered',
          'no encapsulation: 1500 bytes fit the underlay',
        );
        return;
      }
      assert.deepEqual(
        {
          kind: w.request.disposition.kind,
          reason: w.request.disposition.kind === 'dropped' && w.request.disposition.reason,
          netns: w.request.disposition.kind === 'dropped' && w.request.disposition.netns,
          device: w.request.disposition.kind === 'dropped' && w.request.disposition.device,
        },
        { kind: 'dropped', reason: 'mtu-exceeded', netns: 'node1', device: tunnel },
      );
      const icmp = w.reply!;
      assert.equal(label(icmp), 'ICMP fragmentation needed');
      assert.equal(icmp.disposition.kind === 'delivered' && icmp.disposition.netns, 'pod-a');
      const f = parseFrame(frames(icmp, 'pod-a', 'rx')[0].frame!);
      assert.ok(f.payload.kind === 'ipv4' && f.payload.payload.kind === 'icmp');
      const msg =
        f.payload.kind === 'ipv4' && f.payload.payload.kind === 'icmp' ? f.payload.payload : undefined;
      assert.equal(msg?.icmp.type, 3);
      assert.equal(msg?.icmp.code, 4);
      assert.equal(msg?.icmp.mtu, 1500 - OVERHEAD[mode]);
      assert.equal(
        f.payload.kind === 'ipv4' && f.payload.ip.src,
        '10.244.0.1',
        "from node1's address toward pod-a",
      );
      // and without DF (ping -M dont; ping's default sets DF on what fits the device) the same
      // datagram is fragmented and delivered
      const frag = walk(buildCluster(spec, mode), {
        from: 'pod-a',
        to: 'pod-c',
        proto: 'icmp',
        size: 1500,
        df: false,
      });
      assert.equal(frag.request.disposition.kind, 'delivered');
      assert.ok(frag.request.steps.some((s) => s.kind === 'fragment' && s.netns === 'node1'));
    });

    test('no listener: TCP answered with RST, UDP with ICMP port unreachable', () => {
      const c = buildCluster(articleSeed(), mode);
      const t = walk(c, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 9999 });
      assert.equal(t.request.disposition.kind === 'dropped' && t.request.disposition.reason, 'reset');
      assert.equal(label(t.reply), 'RST');
      assert.equal(t.reply?.disposition.kind === 'delivered' && t.reply.disposition.netns, 'pod-a');
      const u = walk(c, { from: 'pod-a', to: 'pod-c', proto: 'udp', port: 9999 });
      assert.equal(
        u.request.disposition.kind === 'dropped' && u.request.disposition.reason,
        'port-unreachable',
      );
      assert.equal(label(u.reply), 'ICMP port unreachable');
      assert.equal(u.reply?.disposition.kind === 'delivered' && u.reply.disposition.netns, 'pod-a');
    });

    test('deterministic: the same cluster and flow give byte-identical traces', () => {
      const a = exchange(mode, 'pod-a', 'pod-c', 'tcp').w;
      const b = exchange(mode, 'pod-a', 'pod-c', 'tcp').w;
      assert.equal(JSON.stringify(a.traces.map(traceToJson)), JSON.stringify(b.traces.map(traceToJson)));
    });
  });
}

test('a deleted route: the packet follows the default route to the LAN router, which drops it (no-route) and cannot even answer', () => {
  const c = buildCluster(articleSeed(), 'flannel-vxlan');
  const ns = c.world.ns('node1');
  const r = ns.fib.list().find((x) => x.dev === 'flannel.1' && x.len === 24 && x.via === '10.244.1.0')!;
  ns.fib.remove(r);
  const w = walk(c, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 });
  // 10.244.1.5 now follows the default route to the LAN router, which knows no pod CIDRs
  assert.equal(w.request.disposition.kind, 'dropped');
  assert.equal(w.request.disposition.kind === 'dropped' && w.request.disposition.reason, 'no-route');
  assert.equal(w.request.disposition.kind === 'dropped' && w.request.disposition.netns, 'router');
  // the router has no route back to the pod network either: no ICMP leaves it
  assert.equal(w.reply, undefined);
  assert.ok(
    w.request.steps.some(
      (s) => s.netns === 'node1' && s.kind === 'route' && stepEntry(s) === 'default via 192.168.1.1 dev eth0',
    ),
  );
});

test('crosssubnet: IPinIP only toward the node in another subnet', () => {
  const spec = articleSeed();
  spec.subnets.push({ name: 'lan1', cidr: '192.168.2.0/24', gateway: '192.168.2.1' });
  spec.nodes[2] = { ...spec.nodes[2], ip: '192.168.2.12/24' };
  const c = buildCluster(spec, 'calico-ipip-crosssubnet');
  const routes = c.world
    .ns('node1')
    .fib.list()
    .filter((r) => r.proto === 'bird');
  const to2 = routes.find((r) => r.via === '192.168.1.11')!;
  const to3 = routes.find((r) => r.via === '192.168.2.12')!;
  assert.equal(to2.dev, 'eth0');
  assert.equal(to3.dev, 'tunl0');
  const w = walk(c, { from: 'pod-a', to: 'pod-d', proto: 'tcp', port: 8080 });
  assert.equal(w.request.disposition.kind, 'delivered');
  const atRouter = frames(w.request, 'router', 'rx')[0];
  const f = parseFrame(atRouter.frame!);
  assert.ok(f.payload.kind === 'ipv4' && f.payload.ip.protocol === 4, 'IPinIP through the router');
  assert.equal(w.reply?.disposition.kind, 'delivered');
});

test('host-gw across subnets: flanneld cannot add the route; traffic goes to the router and dies there', () => {
  const spec = articleSeed();
  spec.subnets.push({ name: 'lan1', cidr: '192.168.2.0/24', gateway: '192.168.2.1' });
  spec.nodes[2] = { ...spec.nodes[2], ip: '192.168.2.12/24' };
  const c = buildCluster(spec, 'flannel-host-gw');
  assert.ok(
    !c.world
      .ns('node1')
      .fib.list()
      .some((r) => r.via === '192.168.2.12'),
  );
  const w = walk(c, { from: 'pod-a', to: 'pod-d', proto: 'tcp', port: 8080 });
  assert.equal(w.request.disposition.kind === 'dropped' && w.request.disposition.netns, 'router');
  assert.equal(w.request.disposition.kind === 'dropped' && w.request.disposition.reason, 'no-route');
});

test("BGP session down: the peer's prefix is never installed and the walk follows the default route", () => {
  const spec = {
    ...articleSeed(),
    bgp: [{ nodes: ['node1', 'node2'] as [string, string], state: 'down' as const }],
  };
  const c = buildCluster(spec, 'calico-bgp');
  const n1 = c.world
    .ns('node1')
    .fib.list()
    .filter((r) => r.proto === 'bird');
  assert.equal(n1.length, 1, "only node3's prefix");
  assert.equal(n1[0].via, '192.168.1.12');
  const w = walk(c, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 });
  assert.equal(w.request.disposition.kind, 'dropped');
});
