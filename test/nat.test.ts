/**
 * NAT in conntrack, walked through the datapath: DNAT, SNAT and MASQUERADE round trips, the reply
 * un-NATed by the entry, later packets rewritten from the entry without the nat table, a source
 * port clash, ICMP errors translated inside and out, the RST of REJECT --reject-with tcp-reset,
 * NOTRACK, the marks kube-proxy's chains set, deterministic statistic and DNAT ranges; the null
 * binding kept without a copy (natNullBindingKept) only where natNullBinding keeps it, on random tables.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seedCluster } from '../src/cluster/seed.ts';
import type { CniMode } from '../src/cluster/spec.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { walk, walkOk, type Walk } from '../src/trace/walk.ts';
import { runCommand } from '../src/tools/index.ts';
import { parseFrame } from '../src/wire/packet.ts';
import type { Ipv4Packet } from '../src/wire/types.ts';
import { jhash1 } from '../src/kernel/nat.ts';
import { roleLabel, stepDetail, stepTable } from '../src/render/step.ts';

const cluster = (mode: CniMode = 'flannel-vxlan') => buildCluster(seedCluster(), mode);

function sh(c: Cluster, netns: string, line: string): string {
  const r = runCommand(c, netns, line);
  assert.equal(r.code, 0, `${netns}$ ${line}: ${r.stderr}`);
  return r.stdout;
}

/** the IPv4 packets a namespace's device received (in) or sent (out), from the captures */
function packets(c: Cluster, netns: string, dev: string, dir: 'in' | 'out'): Ipv4Packet[] {
  return c.world.captures
    .filter((x) => x.netns === netns && x.dev === dev && x.dir === dir)
    .map((x) => parseFrame(x.frame).payload)
    .filter((p): p is Ipv4Packet => p.kind === 'ipv4');
}

const ports = (p: Ipv4Packet) =>
  p.payload.kind === 'tcp'
    ? [p.payload.tcp.srcPort, p.payload.tcp.dstPort]
    : p.payload.kind === 'udp'
      ? [p.payload.udp.srcPort, p.payload.udp.dstPort]
      : [];
const endpoints = (p: Ipv4Packet) => `${p.ip.src}:${ports(p)[0]} > ${p.ip.dst}:${ports(p)[1]}`;

/** a rule's packet counter, from iptables -S -v's "-c P B" */
function ruleCounter(c: Cluster, netns: string, table: string, chain: string, n: number): number {
  const line = sh(c, netns, `iptables -t ${table} -S ${chain} ${n} -v`);
  return Number(/-c (\d+) /.exec(line)![1]);
}

function natSteps(w: Walk, trace: number, netns: string) {
  return w.traces[trace].steps.filter((s) => s.netns === netns && s.kind === 'netfilter');
}

const DNAT =
  'iptables -t nat -A PREROUTING -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.1.5:8080';

for (const mode of ['flannel-vxlan', 'calico-bgp'] as const)
  test(`DNAT round trip (${mode}): the backend gets the request, the client sees the service answer`, () => {
    const c = cluster(mode);
    sh(c, 'node1', DNAT);
    const w = walk(
      c,
      { from: 'pod-a', to: '10.96.0.10', proto: 'tcp', port: 80, sport: 40000 },
      { exchange: true },
    );
    assert.ok(walkOk(w), 'the exchange completes');
    assert.equal(w.request.disposition.kind === 'delivered' && w.request.disposition.netns, 'pod-c');
    // the backend sees the client's address and the target port
    assert.equal(endpoints(packets(c, 'pod-c', 'eth0', 'in')[0]), '10.244.0.5:40000 > 10.244.1.5:8080');
    // every packet the client gets back comes from the service address and port
    const back = packets(c, 'pod-a', 'eth0', 'in');
    assert.ok(back.length >= 3);
    for (const p of back) assert.equal(endpoints(p), '10.96.0.10:80 > 10.244.0.5:40000');
    // the nat table saw only the first packet; the others were rewritten from the entry
    assert.equal(ruleCounter(c, 'node1', 'nat', 'PREROUTING', 1), 1);
    const second = natSteps(w, 2, 'node1');
    assert.ok(second.some((s) => s.action === 'dnat' && /from the conntrack entry/.test(stepDetail(s))));
    assert.ok(!second.some((s) => stepTable(s) === 'nat PREROUTING'));
    const reply = natSteps(w, 1, 'node1');
    assert.ok(
      reply.some(
        (s) => s.action === 'snat' && /source 10\.244\.1\.5:8080 → 10\.96\.0\.10:80/.test(stepDetail(s)),
      ),
    );
    assert.match(
      sh(c, 'node1', 'conntrack -L -p tcp'),
      /^tcp {6}6 \d+ TIME_WAIT src=10\.244\.0\.5 dst=10\.96\.0\.10 sport=40000 dport=80 src=10\.244\.1\.5 dst=10\.244\.0\.5 sport=8080 dport=40000 \[ASSURED\] mark=0 use=1$/m,
    );
    // the DNATed flow is NATed in conntrack's eyes, filtered by -g and -j, not by -n
    assert.match(sh(c, 'node1', 'conntrack -L -g'), /dst=10\.96\.0\.10/);
    assert.match(sh(c, 'node1', 'conntrack -L -j'), /dst=10\.96\.0\.10/);
    assert.doesNotMatch(sh(c, 'node1', 'conntrack -L -n'), /dst=10\.96\.0\.10/);
    // node2 only ever saw the backend's address
    assert.match(
      sh(c, 'node2', 'conntrack -L -p tcp'),
      /src=10\.244\.0\.5 dst=10\.244\.1\.5 sport=40000 dport=8080/,
    );
  });

test('SNAT round trip: the server sees the new source, the reply is un-NATed before routing', () => {
  const c = cluster('calico-bgp');
  sh(c, 'node1', 'iptables -t nat -A POSTROUTING -s 10.244.0.5/32 -o eth0 -j SNAT --to-source 192.168.1.10');
  const w = walk(
    c,
    { from: 'pod-a', to: 'pod-c', proto: 'udp', port: 8080, sport: 40001 },
    { exchange: true },
  );
  assert.ok(walkOk(w));
  assert.equal(endpoints(packets(c, 'pod-c', 'eth0', 'in')[0]), '192.168.1.10:40001 > 10.244.1.5:8080');
  assert.equal(endpoints(packets(c, 'pod-a', 'eth0', 'in')[0]), '10.244.1.5:8080 > 10.244.0.5:40001');
  assert.match(
    sh(c, 'node1', 'conntrack -L -n'),
    /^udp {6}17 \d+ src=10\.244\.0\.5 dst=10\.244\.1\.5 sport=40001 dport=8080 src=10\.244\.1\.5 dst=192\.168\.1\.10 sport=8080 dport=40001 mark=0 use=1$/m,
  );
});

for (const [mode, dev, addr] of [
  ['flannel-vxlan', 'flannel.1', '10.244.0.0'],
  ['calico-bgp', 'eth0', '192.168.1.10'],
] as const)
  test(`MASQUERADE (${mode}): the address of ${dev} towards the next hop, the port kept`, () => {
    const c = cluster(mode);
    sh(c, 'node1', `iptables -t nat -A POSTROUTING -s 10.244.0.0/24 -o ${dev} -j MASQUERADE`);
    const w = walk(
      c,
      { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080, sport: 40002 },
      { exchange: true },
    );
    assert.ok(walkOk(w));
    for (const p of packets(c, 'pod-c', 'eth0', 'in'))
      assert.equal(endpoints(p), `${addr}:40002 > 10.244.1.5:8080`);
    for (const p of packets(c, 'pod-a', 'eth0', 'in'))
      assert.equal(endpoints(p), '10.244.1.5:8080 > 10.244.0.5:40002');
    // same-node traffic does not leave through the device: not masqueraded
    const same = walk(
      c,
      { from: 'pod-a', to: 'pod-b', proto: 'tcp', port: 8080, sport: 40003 },
      { exchange: true },
    );
    assert.ok(walkOk(same));
    assert.equal(endpoints(packets(c, 'pod-b', 'eth0', 'in')[0]), '10.244.0.5:40003 > 10.244.0.6:8080');
  });

test('MASQUERADE: a free source port only on a clash; ICMP echo ids kept', () => {
  const c = cluster('calico-bgp');
  sh(c, 'node1', 'iptables -t nat -A POSTROUTING -s 10.244.0.0/24 -o eth0 -j MASQUERADE');
  const a = walk(
    c,
    { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080, sport: 41000 },
    { exchange: true },
  );
  const b = walk(
    c,
    { from: 'pod-b', to: 'pod-c', proto: 'tcp', port: 8080, sport: 41000 },
    { exchange: true },
  );
  assert.ok(walkOk(a) && walkOk(b));
  const seen = packets(c, 'pod-c', 'eth0', 'in').map((p) => ports(p)[0]);
  assert.equal(seen[0], 41000, 'the first connection keeps its port');
  const other = seen.find((p) => p !== 41000)!;
  assert.ok(other >= 1024 && other <= 65535, `the second gets another port: ${other}`);
  const lines = sh(c, 'node1', 'conntrack -L -p tcp').trim().split('\n');
  assert.equal(lines.length, 2);
  assert.ok(
    lines.some(
      (l) => l.includes('src=10.244.0.6 dst=10.244.1.5 sport=41000') && l.includes(`dport=${other}`),
    ),
  );
  // both replies reached their own clients
  assert.equal(endpoints(packets(c, 'pod-b', 'eth0', 'in')[0]), '10.244.1.5:8080 > 10.244.0.6:41000');
  const ping = walk(c, { from: 'pod-a', to: 'pod-c', proto: 'icmp' }, { exchange: true });
  assert.ok(walkOk(ping));
  const echo = packets(c, 'pod-c', 'eth0', 'in').filter((p) => p.payload.kind === 'icmp')[0];
  const sent = packets(c, 'pod-a', 'eth0', 'out').filter((p) => p.payload.kind === 'icmp')[0];
  assert.equal(echo.ip.src, '192.168.1.10');
  assert.equal(
    echo.payload.kind === 'icmp' && echo.payload.icmp.id,
    sent.payload.kind === 'icmp' && sent.payload.icmp.id,
  );
});

test('an ICMP error about a DNATed flow is translated back: the client sees the service address in it', () => {
  const c = cluster('calico-bgp');
  // DNAT to a port nothing listens on: pod-c answers port unreachable
  sh(
    c,
    'node1',
    'iptables -t nat -A PREROUTING -d 10.96.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 10.244.1.5:5353',
  );
  const w = walk(
    c,
    { from: 'pod-a', to: '10.96.0.11', proto: 'udp', port: 53, sport: 40004 },
    { exchange: true },
  );
  assert.equal(w.reply && roleLabel(w.reply.flow.role), 'ICMP port unreachable');
  assert.equal(w.reply?.disposition.kind, 'delivered');
  const err = packets(c, 'pod-a', 'eth0', 'in').find((p) => p.payload.kind === 'icmp')!;
  // the outer header looks like the reply to what the client sent: from the service address
  assert.equal(err.ip.src, '10.96.0.11');
  assert.equal(err.ip.dst, '10.244.0.5');
  assert.equal(
    packets(c, 'pod-c', 'eth0', 'out').find((p) => p.payload.kind === 'icmp')!.ip.src,
    '10.244.1.5',
  );
  if (err.payload.kind !== 'icmp') throw new Error('not ICMP');
  const q = err.payload.data;
  const quoted = `${q[16]}.${q[17]}.${q[18]}.${q[19]}:${(q[22] << 8) | q[23]}`;
  assert.equal(quoted, '10.96.0.11:53', 'the quoted packet is the one the client sent');
  // node1 found the error RELATED to the DNATed entry
  assert.ok(
    w.reply!.steps.some((s) => s.netns === 'node1' && s.kind === 'conntrack' && s.action === 'related'),
  );
});

test('REJECT --reject-with tcp-reset answers with the RST nf_send_reset builds', () => {
  const c = cluster('calico-bgp');
  sh(
    c,
    'node2',
    'iptables -I FORWARD -d 10.244.1.5/32 -p tcp -m tcp --dport 8080 -j REJECT --reject-with tcp-reset',
  );
  const w = walk(
    c,
    { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080, sport: 40005 },
    { exchange: true },
  );
  assert.equal(w.request.disposition.kind, 'dropped');
  assert.equal(w.reply && roleLabel(w.reply.flow.role), 'RST');
  assert.equal(w.reply?.disposition.kind, 'delivered');
  const rst = packets(c, 'pod-a', 'eth0', 'in')[0];
  assert.equal(endpoints(rst), '10.244.1.5:8080 > 10.244.0.5:40005');
  if (rst.payload.kind !== 'tcp') throw new Error('not TCP');
  const syn = packets(c, 'pod-a', 'eth0', 'out')[0];
  if (syn.payload.kind !== 'tcp') throw new Error('not TCP');
  assert.deepEqual(rst.payload.tcp.flags, { rst: true, ack: true });
  assert.equal(rst.payload.tcp.ack, (syn.payload.tcp.seq + 1) >>> 0);
  assert.equal(rst.payload.tcp.window, 0);
  assert.ok(rst.ip.df);
});

test('kube-proxy shapes: KUBE-MARK-MASQ marks in nat PREROUTING/OUTPUT, KUBE-POSTROUTING masquerades what is marked', () => {
  const c = cluster('calico-bgp');
  for (const cmd of [
    '-N KUBE-SERVICES',
    '-N KUBE-POSTROUTING',
    '-N KUBE-MARK-MASQ',
    '-N KUBE-SVC-WEB',
    '-N KUBE-SEP-C',
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
    '-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000',
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE',
    '-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000',
    '-A KUBE-SERVICES -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.10 --dport 80 -j KUBE-SVC-WEB',
    '-A KUBE-SVC-WEB -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.10 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ',
    '-A KUBE-SVC-WEB -m comment --comment "default/web:http -> 10.244.1.5:8080" -j KUBE-SEP-C',
    '-A KUBE-SEP-C -m comment --comment default/web:http -s 10.244.1.5 -j KUBE-MARK-MASQ',
    '-A KUBE-SEP-C -m comment --comment default/web:http -m tcp -p tcp -j DNAT --to-destination 10.244.1.5:8080',
  ])
    sh(c, 'node1', `iptables -t nat ${cmd}`);
  // a pod inside the cluster CIDR keeps its address
  const pod = walk(
    c,
    { from: 'pod-a', to: '10.96.0.10', proto: 'tcp', port: 80, sport: 40006 },
    { exchange: true },
  );
  assert.ok(walkOk(pod));
  assert.equal(endpoints(packets(c, 'pod-c', 'eth0', 'in')[0]), '10.244.0.5:40006 > 10.244.1.5:8080');
  // the node itself (OUTPUT, re-routed after DNAT) is outside it: marked and masqueraded
  const node = walk(
    c,
    { from: 'node1', to: '10.96.0.10', proto: 'tcp', port: 80, sport: 40007 },
    { exchange: true },
  );
  assert.ok(walkOk(node));
  const seen = packets(c, 'pod-c', 'eth0', 'in').map(endpoints);
  assert.ok(seen.includes('192.168.1.10:40007 > 10.244.1.5:8080'), seen.join('\n'));
  const entry = sh(c, 'node1', 'conntrack -L -p tcp --sport 40007');
  assert.match(
    entry,
    /src=192\.168\.1\.10 dst=10\.96\.0\.10 sport=40007 dport=80 src=10\.244\.1\.5 dst=192\.168\.1\.10 sport=8080 dport=40007/,
  );
  assert.match(
    sh(c, 'node1', 'iptables -t nat -L KUBE-MARK-MASQ -v -n'),
    /^ +1 +\d+ MARK .* MARK or 0x4000$/m,
  );
});

test('statistic --mode random: the choice is deterministic per flow and spreads over the endpoints', () => {
  const build = () => {
    const c = cluster('calico-bgp');
    sh(c, 'node1', 'iptables -t nat -N SVC');
    sh(c, 'node1', 'iptables -t nat -A PREROUTING -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j SVC');
    sh(
      c,
      'node1',
      'iptables -t nat -A SVC -p tcp -m statistic --mode random --probability 0.5 -j DNAT --to-destination 10.244.1.5:8080',
    );
    sh(c, 'node1', 'iptables -t nat -A SVC -p tcp -j DNAT --to-destination 10.244.2.5:8080');
    return c;
  };
  const choose = (c: Cluster, sport: number) => {
    const w = walk(c, { from: 'pod-a', to: '10.96.0.10', proto: 'tcp', port: 80, sport });
    return w.request.disposition.kind === 'delivered' ? w.request.disposition.netns : 'dropped';
  };
  const c1 = build();
  const c2 = build();
  const picks = Array.from({ length: 24 }, (_, i) => choose(c1, 42000 + i));
  assert.deepEqual(
    picks,
    Array.from({ length: 24 }, (_, i) => choose(c2, 42000 + i)),
  );
  assert.ok(picks.includes('pod-c') && picks.includes('pod-d'), picks.join(' '));
  assert.match(
    sh(c1, 'node1', 'iptables-save -t nat'),
    /-m statistic --mode random --probability 0\.50000000000 -j DNAT/,
  );
});

test('DNAT to an address range: find_best_ips_proto hashes the source with jhash2, as the kernel does', () => {
  // jhash2 of one word (lookup3 hashword, initval 0xdeadbeef + 4)
  assert.equal(jhash1(0, 0), 0x049396b8);
  const c = cluster('calico-bgp');
  sh(
    c,
    'node1',
    'iptables -t nat -A PREROUTING -d 10.96.0.10/32 -p udp -m udp --dport 53 -j DNAT --to-destination 10.244.1.5-10.244.1.9:8080',
  );
  walk(c, { from: 'pod-a', to: '10.96.0.10', proto: 'udp', port: 53, sport: 40008 });
  const entry = sh(c, 'node1', 'conntrack -L -p udp --sport 40008');
  assert.match(entry, /src=10\.244\.1\.[5-9] dst=10\.244\.0\.5 sport=8080 dport=40008/);
});

test('NOTRACK in raw: the packets stay untracked, no entry, no NAT', () => {
  const c = cluster('calico-bgp');
  sh(c, 'node1', 'iptables -t raw -A PREROUTING -s 10.244.0.5/32 -p udp -j NOTRACK');
  sh(c, 'node1', 'iptables -t nat -A POSTROUTING -s 10.244.0.5/32 -o eth0 -j MASQUERADE');
  const w = walk(c, { from: 'pod-a', to: 'pod-c', proto: 'udp', port: 8080, sport: 40009 });
  assert.equal(w.request.disposition.kind, 'delivered');
  assert.equal(endpoints(packets(c, 'pod-c', 'eth0', 'in')[0]), '10.244.0.5:40009 > 10.244.1.5:8080');
  // no entry of the request; the reply, which the rule does not match, is tracked as new
  const entries = sh(c, 'node1', 'conntrack -L').split('\n');
  assert.ok(!entries.some((l) => /^udp +17 +\d+ src=10\.244\.0\.5 /.test(l)), entries.join('\n'));
  assert.ok(
    entries.some((l) => /^udp +17 +\d+ src=10\.244\.1\.5 dst=10\.244\.0\.5 sport=8080 dport=40009 /.test(l)),
  );
  assert.match(
    sh(c, 'node1', 'iptables -t raw -L PREROUTING -n -v'),
    /^ +1 +\d+ CT +17 +-- +\* +\* +10\.244\.0\.5 +0\.0\.0\.0\/0 +NOTRACK$/m,
  );
});

test('the nat table exists: conntrack runs in the namespace even without a rule that asks for it', () => {
  const c = cluster('calico-bgp');
  assert.ok(!c.world.ns('pod-a').netfilter.usesConntrack());
  sh(c, 'pod-a', 'iptables -t nat -N NOTHING');
  assert.ok(c.world.ns('pod-a').netfilter.usesConntrack());
  walk(c, { from: 'pod-a', to: 'pod-c', proto: 'udp', port: 8080, sport: 40010 });
  assert.match(sh(c, 'pod-a', 'conntrack -L'), /sport=40010/);
});

test('null bindings: a clash moves a source port (nf_nat_l4proto_unique_tuple), never a destination port', async () => {
  const { Conntrack } = await import('../src/kernel/conntrack.ts');
  const { natNullBinding } = await import('../src/kernel/nat.ts');
  const ct = new Conntrack();
  // another connection's reply tuple is the one this connection's reply would be
  const other = ct.track(
    { proto: 6, src: '10.0.0.9', dst: '10.0.0.1', sport: 8080, dport: 40000 },
    { syn: true },
    0,
  );
  other.entry.reply = { proto: 6, src: '10.0.0.2', dst: '10.0.0.1', sport: 8080, dport: 40000 };
  ct.confirm(other.entry);
  const mine = () =>
    ct.track({ proto: 6, src: '10.0.0.1', dst: '10.0.0.2', sport: 40000, dport: 8080 }, { syn: true }, 0)
      .entry;
  const random = () => 12345;
  const dst = mine();
  const d = natNullBinding(ct, dst, 'dst', random);
  assert.equal(d.changed, false, 'a destination rewrite cannot change the port');
  assert.deepEqual([dst.reply.sport, dst.reply.dport, dst.dnatDone, dst.dnat], [8080, 40000, true, false]);
  const src = mine();
  const s = natNullBinding(ct, src, 'src', random);
  assert.equal(s.changed, true, 'a source port in use moves');
  assert.notEqual(src.reply.dport, 40000);
  assert.ok(src.snat && src.snatDone);
});

test('natNullBindingKept keeps a tuple only where natNullBinding keeps it, and leaves the rest to it', async () => {
  const { Conntrack } = await import('../src/kernel/conntrack.ts');
  const { natNullBinding, natNullBindingKept } = await import('../src/kernel/nat.ts');
  type T = import('../src/kernel/conntrack.ts').Tuple;
  let seed = 7;
  const r = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const addrs = ['10.0.0.1', '10.0.0.2'];
  const tuple = (): T => {
    const proto = [1, 6, 17, 47][r(4)];
    const src = addrs[r(2)];
    const dst = addrs[r(2)];
    if (proto === 1)
      return { proto, src, dst, sport: 0, dport: 0, icmpType: [0, 8][r(2)], icmpCode: 0, icmpId: r(2) };
    return { proto, src, dst, sport: proto === 47 ? 0 : 1000 + r(2), dport: proto === 47 ? 0 : 80 + r(2) };
  };
  /** the same table twice: one for each function */
  const tables = () => {
    const cts = [new Conntrack(), new Conntrack()];
    for (let i = 0; i < 16; i++) {
      const [o, rep, nat] = [tuple(), tuple(), r(2) === 0];
      for (const ct of cts) {
        const res = ct.track(o, o.proto === 6 ? { syn: true } : undefined, 0);
        if (res.invalid || res.entry.confirmed) continue;
        if (nat) res.entry.reply = rep;
        ct.confirm(res.entry);
      }
    }
    return cts;
  };
  const counts = { kept: 0, moved: 0 };
  for (let round = 0; round < 1000; round++) {
    const [a, b] = tables();
    const t = tuple();
    const manip = r(2) ? 'src' : 'dst';
    const ra = a.track(t, t.proto === 6 ? { syn: true } : undefined, 0);
    const eb = b.track(t, t.proto === 6 ? { syn: true } : undefined, 0).entry;
    // a new connection's entry (the hook sets up NAT for no other)
    if (!ra.isNew) continue;
    const ea = ra.entry;
    const eaBefore = structuredClone(ea.data());
    const kept = natNullBindingKept(a, ea, manip);
    const setup = natNullBinding(b, eb, manip, () => 4242);
    if (kept) {
      counts.kept++;
      assert.equal(setup.changed, false, `round ${round}: kept, but natNullBinding moved it`);
      assert.deepEqual(ea.data(), eb.data(), `round ${round}: the entries differ`);
    } else {
      // the hook runs natNullBinding then: nothing may have been set up yet
      counts.moved += setup.changed ? 1 : 0;
      assert.deepEqual(ea.data(), eaBefore, `round ${round}: not kept, but the entry changed`);
    }
  }
  assert.ok(counts.kept > 200 && counts.moved > 20, JSON.stringify(counts));
});
