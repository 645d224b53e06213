/**
 * Drop explanations, doctor and the shipped scenarios: every drop reason is planted as a fault
 * and its explanation checked (stage, entry, counters, evidence, cause); every scenario is
 * diagnosed and doctor must find the planted cause.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, type Io } from '../src/cli/app.ts';
import { loadCluster, loadPolicies } from '../src/cluster/load.ts';
import { seedCluster } from '../src/cluster/seed.ts';
import { CNI_MODES, type ClusterSpec, type CniMode } from '../src/cluster/spec.ts';
import { runChecks, type CheckName } from '../src/diagnose/checks.ts';
import { doctor, LARGE_REQUEST, nextPort, type DoctorRequest } from '../src/diagnose/doctor.ts';
import { explainDrop, renderExplanation, type Explanation } from '../src/diagnose/explain.ts';
import { prepareCluster, runCommand } from '../src/tools/index.ts';
import type { Trace } from '../src/trace/types.ts';
import { walk, type Walk, type WalkRequest } from '../src/trace/walk.ts';
import { roleLabel } from '../src/render/step.ts';
import { SCENARIO_DIR } from '../src/cli/scenarios.ts';

const TCP: WalkRequest = { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 };
const ICMP: WalkRequest = { from: 'pod-a', to: 'pod-c', proto: 'icmp' };

/** walk on the seed cluster with faults planted; the first dropped trace and its explanation */
function explain(
  mode: CniMode,
  run: string[],
  req: WalkRequest,
  spec: ClusterSpec = seedCluster(),
): { t: Trace; x: Explanation; text: string } {
  const c = prepareCluster(spec, mode, run);
  const w = walk(c, req, { exchange: true });
  const t = w.traces.find((x) => x.disposition.kind === 'dropped');
  assert.ok(t, `expected a drop, got: ${w.traces.map((x) => x.disposition.kind).join(', ')}`);
  const x = explainDrop(c, t);
  assert.ok(x);
  return { t, x, text: renderExplanation(x) };
}

const counter = (x: Explanation, name: string) => x.counters.find((k) => k.counter === name);
const evidence = (x: Explanation, netns: string, cmd: string) =>
  x.evidence.find((e) => e.netns === netns && e.command === cmd);

describe('drop explanations', () => {
  test('no route: the node that leaked the packet to its default route, IpExtInNoRoutes on the router', () => {
    const { x } = explain('flannel-vxlan', ['node1: ip route del 10.244.1.0/24'], TCP);
    assert.equal(x.reason, 'no-route');
    assert.equal(x.netns, 'router');
    assert.match(x.entry, /node1 has no route for 10\.244\.1\.0\/24/);
    assert.match(x.entry, /default via 192\.168\.1\.1 dev eth0/);
    assert.equal(counter(x, 'IpExtInNoRoutes')?.delta, 1);
    assert.equal(
      evidence(x, 'router', 'ip route get 10.244.1.5')?.output,
      'RTNETLINK answers: Network is unreachable',
    );
    assert.match(x.causes[0], /flanneld on node1 did not add the route for node2's lease/);
  });

  test('no route for a locally sent packet counts IpOutNoRoutes', () => {
    const { x } = explain(
      'flannel-vxlan',
      ['node1: ip route del 10.244.1.0/24', 'node1: ip route del default'],
      { from: 'node1', to: '10.244.1.5', proto: 'icmp' },
    );
    assert.equal(x.reason, 'no-route');
    assert.match(x.stage, /ip_route_output/);
    assert.equal(counter(x, 'IpOutNoRoutes')?.value, 1);
  });

  test('link down: a pod whose eth0 is down has lost its routes', () => {
    const { x } = explain('flannel-vxlan', ['pod-a: ip link set eth0 down'], TCP);
    assert.equal(x.reason, 'no-route');
    assert.match(x.causes[0], /eth0 is DOWN in pod-a: the kernel removed every route through it/);
    assert.match(evidence(x, 'pod-a', 'ip link show dev eth0')?.output ?? '', /state DOWN/);
  });

  test('link down: the host veth down leaves the pod without carrier; ARP dies at its qdisc', () => {
    const { x } = explain('flannel-vxlan', ['node1: ip link set veth-pod-a down'], TCP);
    assert.equal(x.reason, 'neighbour-failed');
    assert.match(
      x.causes[0],
      /eth0 has no carrier \(NO-CARRIER\): its veth peer veth-pod-a in node1 is down/,
    );
    assert.equal(counter(x, 'tx_dropped on eth0')?.delta, 3);
    assert.match(evidence(x, 'pod-a', 'ip -s link show dev eth0')?.output ?? '', /NO-CARRIER/);
  });

  test('neighbour unresolved: ARP timeout for a stale gateway, res_failed and ICMP host unreachable', () => {
    const { x } = explain(
      'flannel-host-gw',
      ['node1: ip route replace 10.244.1.0/24 via 192.168.1.99 dev eth0'],
      TCP,
    );
    assert.equal(x.reason, 'neighbour-failed');
    assert.equal(x.netns, 'node1');
    assert.match(x.entry, /192\.168\.1\.99 dev eth0 FAILED/);
    assert.equal(counter(x, 'arp_cache res_failed')?.delta, 1);
    assert.equal(counter(x, 'IcmpOutDestUnreachs')?.delta, 1);
    assert.match(evidence(x, 'node1', 'ip neigh show dev eth0')?.output ?? '', /192\.168\.1\.99 FAILED/);
  });

  test('missing VXLAN FDB entry: the MAC from the neighbour entry, tx_dropped on flannel.1, flanneld', () => {
    const { x } = explain('flannel-vxlan', ['node1: bridge fdb del 5a:2b:3c:4d:5e:6f dev flannel.1'], TCP);
    assert.equal(x.reason, 'vxlan-fdb-miss');
    assert.match(x.entry, /5a:2b:3c:4d:5e:6f dev flannel\.1/);
    assert.match(x.entry, /10\.244\.1\.0 dev flannel\.1 lladdr 5a:2b:3c:4d:5e:6f PERMANENT/);
    assert.equal(counter(x, 'tx_dropped on flannel.1')?.value, 1);
    const fdb = evidence(x, 'node1', 'bridge fdb show dev flannel.1')?.output ?? '';
    assert.doesNotMatch(fdb, /5a:2b:3c:4d:5e:6f/);
    assert.match(x.causes[0], /flanneld writes .* when node2's lease appears/);
  });

  test('ip_forward off: IpInAddrErrors, and sysctl shows it', () => {
    const { x } = explain('flannel-vxlan', ['node2: sysctl -w net.ipv4.ip_forward=0'], TCP);
    assert.equal(x.reason, 'forwarding-disabled');
    assert.equal(x.entry, 'net.ipv4.ip_forward = 0');
    assert.equal(counter(x, 'IpInAddrErrors')?.delta, 1);
    assert.equal(evidence(x, 'node2', 'sysctl net.ipv4.ip_forward')?.output, 'net.ipv4.ip_forward = 0');
  });

  test('rp_filter: strict mode and a return route through another device', () => {
    const { x } = explain(
      'flannel-vxlan',
      ['node2: ip route del 10.244.0.0/24', 'node2: sysctl -w net.ipv4.conf.all.rp_filter=1'],
      ICMP,
    );
    assert.equal(x.reason, 'rp-filter');
    assert.match(x.entry, /reverse route: default via 192\.168\.1\.1 dev eth0/);
    assert.equal(counter(x, 'TcpExtIPReversePathFilter')?.delta, 1);
    // sysctl takes dots in interface names as slashes, as the real one does
    const out = evidence(x, 'node2', 'sysctl net.ipv4.conf.all.rp_filter net.ipv4.conf.flannel/1.rp_filter');
    assert.equal(out?.output, 'net.ipv4.conf.all.rp_filter = 1\nnet.ipv4.conf.flannel/1.rp_filter = 0');
  });

  test('MTU exceeded with DF: IpFragFails, ICMP fragmentation needed, and the PMTU consequence for TCP', () => {
    const spec = { ...seedCluster(), podMtu: 1500 };
    const { x } = explain('flannel-vxlan', [], { ...TCP, size: 4000 }, spec);
    assert.equal(x.reason, 'mtu-exceeded');
    assert.equal(x.netns, 'node1');
    assert.equal(x.device, 'flannel.1');
    assert.equal(counter(x, 'IpFragFails')?.delta, 1);
    assert.equal(counter(x, 'IcmpOutDestUnreachs')?.delta, 1);
    assert.match(x.consequence ?? '', /handshake passes/);
    assert.match(x.consequence ?? '', /PMTU black hole/);
    assert.match(
      x.causes[0],
      /pod MTU \(1500\) is larger than the underlay MTU 1500 minus 50 bytes of VXLAN overhead/,
    );
  });

  test('MTU: silent drops (no ICMP) at a bridge port and at a veth are a black hole', () => {
    // a switch port with a smaller MTU: the bridge drops what does not fit (is_skb_forwardable)
    const br = explain('calico-bgp', ['lan0: ip link set node2 mtu 1400'], { ...TCP, size: 4000 }).x;
    assert.equal(br.reason, 'mtu-exceeded');
    assert.equal(br.netns, 'lan0');
    assert.match(br.stage, /bridge forward/);
    assert.equal(counter(br, 'tx_dropped on node2')?.delta, 1);
    assert.match(br.consequence ?? '', /without an ICMP error/);
    // node2's eth0 takes less than the wire brings: the veth drops it on the way in
    const veth = explain('calico-bgp', ['node2: ip link set eth0 mtu 1400'], { ...TCP, size: 4000 }).x;
    assert.equal(veth.reason, 'mtu-exceeded');
    assert.match(veth.stage, /veth transmit/);
    assert.match(veth.consequence ?? '', /stalls after the handshake/);
  });

  test('TTL exceeded: a routing loop between a node and the router', () => {
    const { x } = explain(
      'calico-bgp',
      // calico-node's layout: node2's pods are in its IPAM block 10.244.1.0/26
      ['node1: ip route del 10.244.1.0/26', 'router: ip route add 10.244.1.0/26 via 192.168.1.10'],
      ICMP,
    );
    assert.equal(x.reason, 'ttl-exceeded');
    assert.match(x.causes[0], /a routing loop: .*node1.*router|a routing loop: .*router.*node1/);
    assert.equal(counter(x, 'IpInHdrErrors')?.delta, 1);
    // the router has no route back to pod-a: its ICMP time exceeded is never sent, nor counted
    assert.equal(counter(x, 'IcmpOutTimeExcds'), undefined);
  });

  test("a missing block route names the IPAM block, not the node's pod CIDR, and who owns the route", () => {
    // calico-node's layout: node2's pods are in its IPAM block 10.244.1.0/26 (its pod CIDR is a /24)
    for (const [mode, owner] of [
      ['calico-bgp', /node1's BIRD has no route for 10\.244\.1\.0\/26 from node2/],
      ['calico-vxlan', /felix on node1 has no route for node2's block 10\.244\.1\.0\/26 via node2's VTEP/],
    ] as const) {
      const { x } = explain(mode, ['node1: ip route del 10.244.1.0/26'], TCP);
      assert.equal(x.reason, 'no-route', mode);
      assert.match(
        x.entry,
        /^node1 has no route for 10\.244\.1\.0\/26 \(node2's pods\): it used `default via/,
        mode,
      );
      assert.ok(
        x.causes.some((cause) => owner.test(cause)),
        `${mode}: ${x.causes.join(' | ')}`,
      );
    }
  });

  test('filtered by a rule: the rule, its packet counter and iptables -L', () => {
    const { x } = explain('flannel-vxlan', ['node2: iptables -A INPUT -p udp --dport 4789 -j DROP'], TCP);
    assert.equal(x.reason, 'filtered');
    assert.equal(x.netns, 'node2');
    assert.match(x.entry, /rule INPUT #1: -A INPUT -p udp -m udp --dport 4789 -j DROP/);
    const k = counter(x, 'iptables INPUT rule 1 pkts');
    assert.equal(k?.value, 1);
    assert.match(
      evidence(x, 'node2', 'iptables -L INPUT -n -v --line-numbers')?.output ?? '',
      /^1 +1 +\d+ DROP/m,
    );
  });

  test('no listener: TCP RST (TcpOutRsts) and UDP port unreachable (UdpNoPorts)', () => {
    const tcp = explain('flannel-vxlan', [], { ...TCP, port: 9090 }).x;
    assert.equal(tcp.reason, 'reset');
    assert.equal(tcp.netns, 'pod-c');
    assert.equal(counter(tcp, 'TcpOutRsts')?.delta, 1);
    assert.match(tcp.causes[0], /does not listen on tcp\/9090/);
    const udp = explain('flannel-vxlan', [], { ...TCP, proto: 'udp', port: 9090 }).x;
    assert.equal(udp.reason, 'port-unreachable');
    assert.equal(counter(udp, 'UdpNoPorts')?.delta, 1);
    assert.equal(counter(udp, 'IcmpMsgOutType3')?.delta, 1);
  });

  test('BGP session down: the route was withdrawn, the session named', () => {
    const spec: ClusterSpec = { ...seedCluster(), bgp: [{ nodes: ['node1', 'node2'], state: 'down' }] };
    const { x } = explain('calico-bgp', [], TCP, spec);
    assert.equal(x.reason, 'no-route');
    assert.match(
      x.causes[0],
      /BGP session node1 ↔ node2 is Active, not Established: BIRD withdrew node2's route/,
    );
  });

  test('every explanation renders its stage, entry, counters and causes', () => {
    const { text } = explain('flannel-vxlan', ['node2: sysctl -w net.ipv4.ip_forward=0'], TCP);
    for (const part of [
      'why: forwarding-disabled in node2',
      'where:',
      'entry:',
      'counters',
      'likely causes:',
      'on a real node:',
    ])
      assert.ok(text.includes(part), `missing "${part}" in\n${text}`);
  });
});

describe('doctor', () => {
  const make = (run: string[] = [], mode: CniMode = 'flannel-vxlan', spec = seedCluster()) =>
    prepareCluster(spec, mode, run);

  test('healthy seed cluster in every mode', () => {
    for (const mode of [
      'flannel-vxlan',
      'flannel-host-gw',
      'calico-bgp',
      'calico-ipip',
      'calico-ipip-crosssubnet',
    ] as const) {
      const r = doctor(make([], mode), { from: 'pod-a', to: 'pod-d', proto: 'tcp', port: 8080 });
      assert.ok(
        r.healthy,
        `${mode}: ${JSON.stringify(r.checks.flatMap((k) => k.findings))} ${r.failure?.explanation.summary}`,
      );
      assert.deepEqual(
        r.probes.map((p) => p.name),
        ['forward', 'full-size', 'reverse'],
      );
    }
  });

  test('PMTU: the handshake passes, full-size segments fail', () => {
    const r = doctor(make([], 'flannel-vxlan', { ...seedCluster(), podMtu: 1500 }), {
      from: 'pod-a',
      to: 'pod-c',
      proto: 'tcp',
      port: 8080,
    });
    assert.equal(r.healthy, false);
    const fwd = r.probes.find((p) => p.name === 'forward')!;
    assert.equal(fwd.ok, true, 'small requests work');
    assert.equal(r.failure?.probe, 'full-size');
    assert.equal(r.failure?.explanation.reason, 'mtu-exceeded');
    // node1 answers ICMP fragmentation needed: TCP lowers its segment size and sends again
    assert.equal(r.failure?.recovered, true);
    const full = r.probes.find((p) => p.name === 'full-size')!;
    assert.ok(
      full.walk.traces.some(
        (t) => t.flow.role.kind === 'retransmission' && t.disposition.kind === 'delivered',
      ),
    );
  });

  test('PMTU black hole: a silent drop, no ICMP, the exchange never completes', () => {
    const r = doctor(make(['lan0: ip link set node2 mtu 1400'], 'calico-bgp'), {
      from: 'pod-a',
      to: 'pod-c',
      proto: 'tcp',
      port: 8080,
    });
    assert.equal(r.probes[0].ok, true, 'the handshake and a small request pass');
    assert.equal(r.failure?.probe, 'full-size');
    assert.equal(r.failure?.recovered, false);
    const full = r.probes.find((p) => p.name === 'full-size')!;
    assert.ok(!full.walk.traces.some((t) => t.flow.role.kind === 'response'), 'no response ever comes');
  });

  test('asymmetric return path: the reply dies where the request never went', () => {
    const r = doctor(
      // calico-node's layout: node1's pods are in its IPAM block 10.244.0.0/26
      make(['node2: ip route replace 10.244.0.0/26 via 192.168.1.12 dev eth0'], 'calico-bgp'),
      {
        from: 'pod-a',
        to: 'pod-c',
        proto: 'tcp',
        port: 8080,
      },
    );
    assert.equal(r.failure?.packet, 'SYN-ACK');
    assert.equal(r.failure?.explanation.netns, 'node3');
    assert.deepEqual(r.failure?.asymmetric, {
      request: ['pod-a', 'node1', 'node2', 'pod-c'],
      reply: ['pod-c', 'node2', 'node3'],
    });
    assert.match(r.failure!.explanation.causes[0], /^asymmetric return path/);
  });

  test('the reverse direction is walked on its own', () => {
    // node1 cannot reach node2's pods, but node2 still reaches node1's: only the forward fails
    const r = doctor(make(['node2: ip route del 10.244.0.0/24']), {
      from: 'pod-a',
      to: 'pod-c',
      proto: 'icmp',
    });
    const rev = r.probes.find((p) => p.name === 'reverse')!;
    assert.equal(rev.ok, false);
    assert.equal(rev.firstDrop?.trace.flow.from, 'pod-c');
  });
});

describe('doctor: the probes share one cluster', () => {
  /** what happened to every packet of a walk: its role and where it ended */
  const outcome = (w: Walk) =>
    w.traces.map((t) => {
      const d = t.disposition;
      const where =
        d.kind === 'dropped'
          ? `${d.reason} ${d.netns} ${d.device ?? ''}`
          : d.kind === 'delivered'
            ? d.netns
            : '';
      return `${roleLabel(t.flow.role)} ${d.kind} ${where}`;
    });
  const cases: { what: string; spec: ClusterSpec; mode: CniMode; run: string[]; req: DoctorRequest }[] = [];
  for (const f of readdirSync(SCENARIO_DIR).filter((x) => x.endsWith('.yaml'))) {
    const spec = loadCluster(readFileSync(join(SCENARIO_DIR, f), 'utf8'), f);
    const sc = spec.scenario!;
    cases.push({
      what: f,
      spec,
      mode: spec.cni,
      run: [],
      req: { from: sc.from, to: sc.to, proto: sc.proto, port: sc.port },
    });
  }
  const tcp: DoctorRequest = { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 };
  for (const mode of CNI_MODES)
    cases.push({ what: `seed ${mode}`, spec: seedCluster(), mode, run: [], req: tcp });
  cases.push(
    {
      what: 'pod MTU 1500 on VXLAN',
      spec: { ...seedCluster(), podMtu: 1500 },
      mode: 'flannel-vxlan',
      run: [],
      req: tcp,
    },
    {
      what: 'PMTU black hole',
      spec: seedCluster(),
      mode: 'calico-bgp',
      run: ['lan0: ip link set node2 mtu 1400'],
      req: tcp,
    },
    {
      what: 'asymmetric return',
      spec: seedCluster(),
      mode: 'calico-bgp',
      run: ['node2: ip route replace 10.244.0.0/24 via 192.168.1.12 dev eth0'],
      req: tcp,
    },
    {
      what: 'one way only',
      spec: seedCluster(),
      mode: 'flannel-vxlan',
      run: ['node2: ip route del 10.244.0.0/24'],
      req: { ...tcp, proto: 'icmp', port: undefined },
    },
    {
      what: 'ARP fails',
      spec: seedCluster(),
      mode: 'flannel-host-gw',
      run: ['node1: ip route replace 10.244.1.0/24 via 192.168.1.99 dev eth0'],
      req: tcp,
    },
  );

  for (const k of cases)
    test(`every probe ends as the same walk on a cluster built anew: ${k.what}`, () => {
      const r = doctor(prepareCluster(k.spec, k.mode, k.run), k.req);
      const fresh = () => prepareCluster(k.spec, k.mode, k.run);
      const fwd = r.probes[0].walk.request.flow;
      for (const p of r.probes) {
        const req: WalkRequest =
          p.name === 'forward'
            ? { from: k.req.from, to: k.req.to, proto: k.req.proto, port: r.request.port }
            : p.name === 'full-size'
              ? {
                  from: k.req.from,
                  to: k.req.to,
                  proto: 'tcp',
                  port: r.request.port,
                  size: LARGE_REQUEST,
                  sport: nextPort(fwd.sport!),
                }
              : { from: k.req.to, to: k.req.from, proto: 'icmp' };
        assert.deepEqual(
          outcome(p.walk),
          outcome(walk(fresh(), req, { exchange: true })),
          `${k.what}: ${p.name}`,
        );
      }
      const full = r.probes.find((p) => p.name === 'full-size');
      if (full)
        assert.notEqual(
          full.walk.request.flow.sport,
          fwd.sport,
          'the full-size probe is a connection of its own',
        );
    });
});

describe('cluster checks', () => {
  const found = (
    spec: ClusterSpec,
    run: string[] = [],
    mode: CniMode = spec.cni,
  ): Map<CheckName, string[]> => {
    const res = runChecks(prepareCluster(spec, mode, run));
    return new Map(
      res.filter((k) => k.findings.length).map((k) => [k.check, k.findings.map((f) => f.message)]),
    );
  };
  const seed = seedCluster();

  test('the seed cluster passes every check in every mode', () => {
    for (const mode of [
      'flannel-vxlan',
      'flannel-host-gw',
      'calico-bgp',
      'calico-ipip',
      'calico-ipip-crosssubnet',
    ] as const)
      assert.deepEqual([...found(seed, [], mode).keys()], [], mode);
  });

  test('pod MTU above underlay minus overhead, per mode', () => {
    assert.ok(found({ ...seed, podMtu: 1460 }, [], 'flannel-vxlan').has('pod-mtu'));
    assert.ok(found({ ...seed, podMtu: 1481 }, [], 'calico-ipip').has('pod-mtu'));
    assert.ok(!found({ ...seed, podMtu: 1480 }, [], 'calico-ipip').has('pod-mtu'));
    assert.ok(!found({ ...seed, podMtu: 1500 }, [], 'calico-bgp').has('pod-mtu'));
  });

  test('tunnel MTU above the underlay', () => {
    assert.ok(found(seed, ['node1: ip link set eth0 mtu 1400']).has('tunnel-mtu'));
  });

  test('overlapping pod CIDRs, pod IPs outside the node CIDR, duplicate IPs and MACs', () => {
    const spec = loadCluster(
      `name: bad
cni: flannel-vxlan
nodes:
  - {name: n1, ip: 192.168.1.10/24, podCIDR: 10.244.0.0/16, mac: 02:00:00:00:00:01}
  - {name: n2, ip: 192.168.1.11/24, podCIDR: 10.244.1.0/24, mac: 02:00:00:00:00:01}
pods:
  - {name: p1, node: n1, ip: 10.250.0.5}
  - {name: p2, node: n2, ip: 10.244.1.7}
  - {name: p3, node: n2, ip: 10.244.1.7}
`,
      'bad.yaml',
    );
    const f = found(spec);
    assert.match(
      f.get('pod-cidr-overlap')?.[0] ?? '',
      /n1's pod CIDR 10\.244\.0\.0\/16 overlaps n2's 10\.244\.1\.0\/24/,
    );
    assert.match(f.get('pod-ip-outside-cidr')?.[0] ?? '', /p1 has 10\.250\.0\.5\/16, outside n1's pod CIDR/);
    assert.match(f.get('duplicate-ip')?.[0] ?? '', /10\.244\.1\.7 is assigned to p2 eth0, p3 eth0/);
    assert.match(f.get('duplicate-mac')?.[0] ?? '', /02:00:00:00:00:01 is used by n1 eth0, n2 eth0/);
  });

  test('a MAC is a duplicate only within one L2 domain', () => {
    const spec = (node2: string) =>
      loadCluster(
        `name: macs
nodes:
  - {name: n1, ip: 192.168.1.10/24, podCIDR: 10.244.0.0/24}
  - {name: n2, ip: 192.168.1.11/24, podCIDR: 10.244.1.0/24}
pods:
  - {name: p1, node: n1, mac: 02:00:00:00:00:07}
  - {name: p2, node: ${node2}, mac: 02:00:00:00:00:07}
`,
        'macs.yaml',
      );
    // behind two different cni0 bridges: harmless
    assert.ok(!found(spec('n2')).has('duplicate-mac'));
    // behind one cni0: the bridge cannot tell them apart
    assert.match(
      found(spec('n1')).get('duplicate-mac')?.[0] ?? '',
      /02:00:00:00:00:07 is used by p1 eth0, p2 eth0, in one L2 domain \(bridge n1\/cni0\)/,
    );
  });

  test('VXLAN route without neighbour or FDB entry', () => {
    const f = found(seed, ['node1: ip neigh del 10.244.2.0 dev flannel.1']);
    assert.match(
      f.get('vxlan-route-without-fdb')?.[0] ?? '',
      /no neighbour entry for 10\.244\.2\.0 on flannel\.1/,
    );
  });

  test('BGP session down, routes missing, router without pod routes', () => {
    const f = found({ ...seed, bgp: [{ nodes: ['node1', 'node3'], state: 'down' }] }, [], 'calico-bgp');
    assert.match(f.get('bgp-session')?.[0] ?? '', /node1 ↔ node3 is Active/);
    assert.equal(f.get('missing-pod-route')?.length, 2);
  });

  test('ip_forward and links down', () => {
    const f = found(seed, ['node3: sysctl -w net.ipv4.ip_forward=0', 'node2: ip link set cni0 down']);
    assert.ok(f.has('ip-forward'));
    assert.match(f.get('link-down')?.join('\n') ?? '', /cni0 \(the pods' bridge\) is DOWN in node2/);
  });
});

/* ------------------------------------------------------------ scenarios, through the CLI */

const realIo = (out: string[], err: string[]): Io => ({
  out: (s) => out.push(s),
  err: (s) => err.push(s),
  readFile: (p) => readFileSync(p, 'utf8'),
  listDir: (p) => readdirSync(p),
  openDir: () => () => undefined,
  env: {},
  isTTY: false,
});

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(argv, realIo(out, err));
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('scenarios', () => {
  const names = readdirSync(SCENARIO_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => f.replace(/\.yaml$/, ''));

  test('at least 8 ship, and podwalk scenarios lists them all', async () => {
    assert.ok(names.length >= 8, `${names.length} scenarios`);
    const r = await cli(['scenarios', '--json']);
    assert.equal(r.code, 0);
    const list = JSON.parse(r.out) as { name: string; title: string }[];
    assert.deepEqual(list.map((x) => x.name).sort(), [...names].sort());
    for (const x of list) assert.ok(x.title.length > 5);
  });

  for (const name of names) {
    test(`doctor finds the cause planted in ${name}`, async () => {
      const spec = loadCluster(readFileSync(join(SCENARIO_DIR, `${name}.yaml`), 'utf8'), `${name}.yaml`);
      const want = spec.scenario!.expect;
      const r = await cli(['doctor', '--scenario', name, '--json']);
      assert.equal(r.code, 1, r.err);
      const rep = JSON.parse(r.out) as {
        healthy: boolean;
        failure?: { explanation: Explanation };
        checks: { check: string; ok: boolean }[];
      };
      if (want.reason) assert.equal(rep.failure?.explanation.reason, want.reason);
      if (want.netns) assert.equal(rep.failure?.explanation.netns, want.netns);
      const failing = rep.checks.filter((k) => !k.ok).map((k) => k.check);
      assert.deepEqual(failing.sort(), [...want.checks].sort());
      // the text report names the same
      const text = await cli(['doctor', '--scenario', name]);
      assert.equal(text.code, 1);
      if (want.reason) assert.match(text.out, new RegExp(`^why: ${want.reason} in `, 'm'));
    });
  }

  test('doctor: usage errors are one line and exit 2', async () => {
    for (const argv of [
      ['doctor'],
      ['doctor', 'pod-a'],
      ['doctor', '--scenario', 'nope'],
      ['doctor', 'pod-a', 'pod-c', '--run', 'node1: ip route frobnicate'],
      ['doctor', 'pod-x', 'pod-c'],
    ]) {
      const r = await cli(argv);
      assert.equal(r.code, 2, `${argv.join(' ')}: ${r.out}\n${r.err}`);
      assert.equal(r.err.split('\n').length, 1, r.err);
    }
  });

  test('doctor in a flannel mode warns that the policies are not enforced', async () => {
    const r = await cli(['doctor', '--scenario', 'policy-blocks-dns', '--mode', 'flannel-vxlan', '--json']);
    assert.equal(r.code, 0, r.out);
    const rep = JSON.parse(r.out) as { healthy: boolean; warnings: string[] };
    assert.match(
      rep.warnings.join('\n'),
      /flannel-vxlan does not enforce NetworkPolicy: 1 policy is not applied \(shop\/web-egress\)/,
    );
  });

  test("examples/allow-dns.yaml fixes policy-blocks-dns (the README's --policy example)", async () => {
    const argv = [
      'web',
      'coredns:53',
      '--proto',
      'udp',
      '--cluster',
      join(SCENARIO_DIR, 'policy-blocks-dns.yaml'),
    ];
    assert.equal((await cli(['trace', ...argv])).code, 1);
    const fixed = [
      ...argv,
      '--policy',
      fileURLToPath(new URL('../examples/allow-dns.yaml', import.meta.url)),
    ];
    const r = await cli(['trace', ...fixed]);
    assert.equal(r.code, 0, r.out);
    assert.equal((await cli(['doctor', ...fixed])).code, 0);
  });

  test('doctor on a healthy cluster exits 0', async () => {
    const r = await cli(['doctor', 'pod-a', 'pod-c:8080']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /verdict: healthy/);
  });

  test('trace prints the explanation under a dropped walk, and in its JSON', async () => {
    const run1 = ['--run', 'node2: sysctl -w net.ipv4.ip_forward=0'];
    const r = await cli(['trace', 'pod-a', 'pod-c:8080', ...run1]);
    assert.equal(r.code, 1);
    assert.match(r.out, /^why: forwarding-disabled in node2 at flannel\.1$/m);
    const j = await cli(['trace', 'pod-a', 'pod-c:8080', '--json', ...run1]);
    const doc = JSON.parse(j.out) as { traces: { explanation?: Explanation }[] };
    assert.equal(doc.traces[0].explanation?.reason, 'forwarding-disabled');
  });
});

test('counters live in the trace and in the namespace', () => {
  const c = prepareCluster(seedCluster(), 'flannel-vxlan', ['node2: sysctl -w net.ipv4.ip_forward=0']);
  const w = walk(c, TCP);
  assert.deepEqual(w.request.counters, [{ netns: 'node2', name: 'IpInAddrErrors' }]);
  assert.equal(c.world.ns('node2').mib.get('IpInAddrErrors'), 1);
  // a second walk counts again
  walk(c, TCP);
  assert.equal(c.world.ns('node2').mib.get('IpInAddrErrors'), 2);
  assert.equal(runCommand(c, 'node2', 'sysctl net.ipv4.ip_forward').stdout, 'net.ipv4.ip_forward = 0\n');
});

describe('a NetworkPolicy drop comes with a policy that allows the flow', () => {
  const fixture = readFileSync(new URL('./fixtures/policy-cluster.yaml', import.meta.url), 'utf8');
  /** walk; if dropped by a policy, apply the suggested one and walk again */
  const check = (spec: ClusterSpec, mode: CniMode, req: WalkRequest, extra = '') => {
    const w = walk(prepareCluster(spec, mode), req);
    assert.equal(w.request.disposition.kind, 'dropped', extra);
    const c = prepareCluster(spec, mode);
    const t = walk(c, req).request;
    const x = explainDrop(c, t)!;
    assert.ok(x.allowPolicy, renderExplanation(x));
    const added = loadPolicies(x.allowPolicy, 'suggested.yaml');
    const fixed = prepareCluster({ ...spec, policies: [...(spec.policies ?? []), ...added] }, mode);
    const again = walk(fixed, req);
    assert.equal(
      again.request.disposition.kind,
      'delivered',
      `${x.allowPolicy}\n${JSON.stringify(again.request.disposition)}`,
    );
    assert.equal(again.reply?.disposition.kind, 'delivered');
    return x;
  };

  test('egress: the scenario that forgot DNS', () => {
    const spec = loadCluster(readFileSync(join(SCENARIO_DIR, 'policy-blocks-dns.yaml'), 'utf8'), 'p.yaml');
    const x = check(spec, 'calico-ipip', { from: 'web', to: 'coredns', proto: 'udp', port: 53 });
    assert.match(x.allowPolicy!, /namespace: shop\n/);
    assert.match(x.allowPolicy!, /policyTypes: \[Egress\]/);
    assert.match(x.allowPolicy!, /- \{ protocol: UDP, port: 53 \}/);
  });

  test('ingress: default deny in prod, a pod of another namespace, and an address outside the pods', () => {
    const base = loadCluster(fixture, 'policy-cluster.yaml');
    const deny = loadPolicies(
      'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: prod}\nspec: {podSelector: {}}\n',
      'deny.yaml',
    );
    const spec = { ...base, policies: deny };
    for (const mode of ['calico-bgp', 'calico-ipip'] as const) {
      const x = check(spec, mode, { from: 'devclient', to: 'db', proto: 'tcp', port: 5432 }, mode);
      assert.match(x.allowPolicy!, /policyTypes: \[Ingress\]/);
      assert.match(x.allowPolicy!, /kubernetes\.io\/metadata\.name: "dev"/);
    }
    // from a node: an ipBlock of its address
    const x = check(spec, 'calico-bgp', { from: 'node3', to: 'db', proto: 'tcp', port: 8080 });
    assert.match(x.allowPolicy!, /ipBlock: \{ cidr: 192\.168\.1\.12\/32 \}/);
  });
});

describe('nstat', () => {
  const c = prepareCluster(seedCluster(), 'flannel-vxlan', ['node2: sysctl -w net.ipv4.ip_forward=0']);
  walk(c, ICMP);
  walk(c, { from: 'pod-a', to: 'pod-b', proto: 'icmp' });
  const nstat = (netns: string, cmd: string) => runCommand(c, netns, cmd);

  test("nstat's format: #kernel, %-32s%-16llu%6.1f, the kernel's order, -z for zeros", () => {
    assert.deepEqual(nstat('node2', 'nstat -az UdpNoPorts IpInAddrErrors'), {
      stdout:
        '#kernel\nIpInAddrErrors                  1                  0.0\nUdpNoPorts                      0                  0.0\n',
      stderr: '',
      code: 0,
    });
    assert.equal(
      nstat('node2', 'nstat -as UdpNoPorts IpInAddrErrors').stdout,
      '#kernel\nIpInAddrErrors                  1                  0.0\n',
    );
  });

  test('ICMP output counts echo requests and replies; IcmpMsg types exist once non-zero', () => {
    const out = nstat('pod-a', 'nstat -az IcmpOutMsgs IcmpOutEchos IcmpMsgOutType8 IcmpMsgOutType0').stdout;
    assert.equal(
      out,
      '#kernel\nIcmpOutMsgs                     2                  0.0\nIcmpOutEchos                    2                  0.0\nIcmpMsgOutType8                 2                  0.0\n',
    );
    assert.match(nstat('pod-b', 'nstat -a IcmpOutEchoReps').stdout, /^IcmpOutEchoReps {17}1 /m);
  });

  test('-j, and what is not emulated', () => {
    assert.equal(nstat('node2', 'nstat -asj IpInAddrErrors').stdout, '{"kernel":{"IpInAddrErrors":1}}\n');
    for (const cmd of [
      'nstat IpInAddrErrors',
      'nstat -a',
      "nstat -a 'Ip*'",
      'nstat -a IpInReceives',
      'nstat -ar IpInAddrErrors',
    ]) {
      const r = nstat('node2', cmd);
      assert.equal(r.code, 2, cmd);
      assert.match(r.stderr, /^podwalk: /, cmd);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, cmd);
    }
  });
});
