/**
 * The importer without root: dump sets in the collector's layout printed by the emulated tools
 * from simulated clusters (bench/dumps.ts; the emulated tools print what the real ones do), of
 * every CNI mode and every differential scenario, import back to a World that prints the same
 * dumps and walks the same; what the model cannot represent is a warning that says what it may
 * change; malformed dumps are one `FILE: what is wrong` and nothing else. The recorded dumps of
 * real namespaces are test/collect.test.ts's.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dumpsOf } from '../bench/dumps.ts';
import { seedCluster } from '../src/cluster/seed.ts';
import { CNI_MODES, type CniMode } from '../src/cluster/spec.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import {
  DumpError,
  DumpFilesBuilder,
  importCluster,
  LIMITS,
  untar,
  type DumpFiles,
  type ImportWarning,
} from '../src/import/index.ts';
import { lineDiff, roundTrip } from '../src/import/roundtrip.ts';
import { faultOf, generateScenario } from '../src/lab/scenarios.ts';
import { applyFault } from '../src/lab/differential.ts';
import { renderMinimal, renderSummary } from '../src/render/text.ts';
import { walk, walkOk, type WalkRequest } from '../src/trace/walk.ts';
import { runCommand } from '../src/tools/index.ts';

function seedDumps(mode: CniMode = 'flannel-vxlan'): DumpFiles {
  return dumpsOf(buildCluster(seedCluster(), mode));
}

/** the dump directory of a model namespace (dumpsOf: NODE/netns/INODE) in a node's dump */
function dirOf(files: DumpFiles, node: string, netns: string): string {
  for (const [p, t] of files)
    if (p.startsWith(`${node}/netns/`) && p.endsWith('/where.txt') && t.includes(`name: sim-${netns}\n`))
      return p.slice(0, -'/where.txt'.length);
  throw new Error(`no dump of ${netns} in ${node}`);
}

function edit(files: DumpFiles, path: string, f: (text: string) => string): DumpFiles {
  const out = new Map(files);
  out.set(path, f(files.get(path) ?? ''));
  return out;
}

function editJson<T>(files: DumpFiles, path: string, f: (v: T) => T): DumpFiles {
  return edit(files, path, (t) => JSON.stringify(f(JSON.parse(t) as T)) + '\n');
}

function dumpError(fn: () => unknown): DumpError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DumpError) return e;
    throw e;
  }
  assert.fail('expected a DumpError');
}

function traces(c: Cluster, r: WalkRequest): string {
  return walk(c, r, { exchange: true })
    .traces.map((t) => renderMinimal(t))
    .join('\n');
}

describe('simulated clusters exported by the emulated tools import back', () => {
  for (const mode of CNI_MODES)
    test(`${mode}: every dumped command prints the same, no warnings, the same walks`, () => {
      const files = seedDumps(mode);
      const { cluster, plan, warnings } = importCluster(files, { name: 'seed' });
      assert.deepEqual(warnings, []);
      assert.equal(cluster.mode, mode, 'the CNI the dumps look like');
      const bad = roundTrip(files, plan, cluster).filter((r) => !r.equal);
      assert.equal(
        bad.length,
        0,
        bad.map((r) => `${r.netns}: ${r.command}\n${lineDiff(r.model, r.real)}`).join('\n'),
      );
      assert.deepEqual(
        cluster.pods.map((p) => `${p.name} ${p.node} ${p.ip} ${p.hostVeth}`),
        buildCluster(seedCluster(), mode).pods.map((p) => `${p.name} ${p.node} ${p.ip} ${p.hostVeth}`),
      );
      for (const r of [
        { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 },
        { from: 'pod-a', to: 'pod-b', proto: 'udp', port: 8080, size: 1400 },
        { from: 'pod-c', to: 'pod-d', proto: 'icmp', size: 1500, df: true },
        { from: 'node1', to: 'pod-d', proto: 'tcp', port: 8080 },
      ] as WalkRequest[])
        assert.equal(
          traces(importCluster(files, { name: 'seed' }).cluster, r),
          traces(buildCluster(seedCluster(), mode), r),
          `${r.from} → ${r.to} ${r.proto}`,
        );
    });

  test('an underlay lowered below its VXLAN device (ip link set eth0 mtu 1400 after flannel.1 was made) imports as it is', () => {
    const sim = buildCluster(seedCluster(), 'flannel-vxlan');
    assert.equal(runCommand(sim, 'node2', 'ip link set eth0 mtu 1400').code, 0);
    const files = dumpsOf(sim);
    const imp = importCluster(files, { name: sim.spec.name });
    assert.deepEqual(imp.warnings, []);
    const bad = roundTrip(files, imp.plan, imp.cluster).filter((r) => !r.equal);
    assert.equal(
      bad.length,
      0,
      bad.map((r) => `${r.netns}: ${r.command}\n${lineDiff(r.model, r.real)}`).join('\n'),
    );
    assert.equal(imp.cluster.world.ns('node2').link('flannel.1')?.mtu, 1450);
    assert.equal(imp.cluster.world.ns('node2').link('eth0')?.mtu, 1400);
  });

  test('the 60 differential scenarios (two subnets and a router, faults applied to both): same dumps, same walks', () => {
    for (let seed = 1; seed <= 60; seed++) {
      const s = generateScenario(seed);
      const files = dumpsOf(buildCluster(s.spec, s.mode));
      const imp = importCluster(files, { name: s.spec.name });
      assert.deepEqual(imp.warnings, [], s.title);
      const bad = roundTrip(files, imp.plan, imp.cluster).filter((r) => !r.equal);
      assert.equal(bad.length, 0, `${s.title}: ${bad.map((r) => `${r.netns} ${r.command}`).join(', ')}`);
      const sim = buildCluster(s.spec, s.mode);
      // as the lab applies it (a BIRD command: its effect on the kernels, for the imported World)
      applyFault(sim, faultOf(s, sim))(imp.cluster);
      assert.equal(traces(imp.cluster, s.flow), traces(sim, s.flow), s.title);
    }
  });
});

describe('what the model cannot represent is a warning saying what it may change', () => {
  const base = seedDumps();
  const node1 = dirOf(base, 'node1', 'node1');
  const warningsOf = (files: DumpFiles) => importCluster(files).warnings;
  const has = (ws: ImportWarning[], netns: string, subject: RegExp, effect: RegExp) =>
    assert.ok(
      ws.some((w) => w.netns === netns && subject.test(w.subject) && effect.test(w.effect)),
      `no warning ${subject} / ${effect} for ${netns} in:\n${ws.map((w) => `${w.netns}: ${w.subject}: ${w.effect}`).join('\n')}`,
    );
  type L = Record<string, unknown>;

  test('link kinds the model does not have', () => {
    const files = editJson<L[]>(base, `${node1}/link.json`, (ls) => [
      ...ls,
      {
        ...ls[1],
        ifindex: 90,
        ifname: 'wg0',
        link_index: undefined,
        link_netnsid: undefined,
        linkinfo: { info_kind: 'wireguard' },
      },
      {
        ...ls[1],
        ifindex: 91,
        ifname: 'kube-ipvs0',
        link_index: undefined,
        link_netnsid: undefined,
        linkinfo: { info_kind: 'dummy' },
      },
    ]);
    const ws = warningsOf(files);
    has(ws, 'node1', /wg0: link kind wireguard/, /WireGuard/);
    has(ws, 'node1', /kube-ipvs0: link kind dummy/, /not local in the model/);
  });

  test('policy routing: rules, other tables, multipath', () => {
    let files = editJson<L[]>(base, `${node1}/rule.json`, (rs) => [
      { priority: 100, src: '10.244.0.0/24', table: '100' },
      ...rs,
    ]);
    files = editJson<L[]>(files, `${node1}/route.json`, (rs) => [
      ...rs,
      { dst: 'default', gateway: '192.168.1.1', dev: 'eth0', table: '100', flags: [] },
      { dst: '10.9.0.0/16', nexthops: [{ gateway: '192.168.1.11', dev: 'eth0' }], flags: [] },
    ]);
    const ws = warningsOf(files);
    has(ws, 'node1', /ip rule 100: src 10\.244\.0\.0\/24 table 100/, /policy routing rules are not modelled/);
    has(ws, 'node1', /1 route in table 100/, /use main instead/);
    has(ws, 'node1', /10\.9\.0\.0\/16 with several nexthops/, /multipath/);
  });

  test('nft-only tables, eBPF and XDP, ipsets, NAT, legacy rules', () => {
    let files = edit(base, `${node1}/nft.json`, () =>
      JSON.stringify({
        nftables: [
          { metainfo: { version: '1.0.6', json_schema_version: 1 } },
          { table: { family: 'ip', name: 'filter', handle: 1 } },
          { table: { family: 'inet', name: 'cilium', handle: 7 } },
        ],
      }),
    );
    files = edit(
      files,
      `${node1}/tc-filter.txt`,
      () =>
        'dev eth0 ingress\nfilter protocol all pref 1 bpf chain 0 handle 0x1 cil_from_netdev direct-action not_in_hw id 42 name cil_from_netdev tag 0123\n',
    );
    files = editJson<L[]>(files, `${node1}/link.json`, (ls) =>
      ls.map((l) => (l.ifname === 'eth0' ? { ...l, xdp: { mode: 1, prog: { id: 7 } } } : l)),
    );
    files = edit(
      files,
      `${node1}/iptables-save.txt`,
      (t) =>
        t.replace(
          '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
          '-A FORWARD -m set --match-set cali40all-ipam-pools dst -j DROP\n[0:0] -A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        ) +
        '*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n[0:0] -A PREROUTING -j KUBE-SERVICES\nCOMMIT\n',
    );
    const ws = warningsOf(files);
    has(ws, 'node1', /nft table inet cilium/, /nftables-only rules are not in the model/);
    has(ws, 'node1', /tc eBPF program on eth0 ingress \(cil_from_netdev\)/, /does not run them/);
    has(ws, 'node1', /XDP program on eth0/, /does not run it/);
    has(
      ws,
      'node1',
      /filter: 1 rule with what the model does not evaluate \(Set cali40all-ipam-pools doesn't exist\.\), e\.g\. `-A FORWARD -m set --match-set/,
      /^left out; 1 DROP\/REJECT rule: the walk may pass where the kernel drops$/,
    );
    assert.ok(!ws.some((w) => /nat/.test(w.subject)), 'the nat table is imported, not warned about');
    const legacy = edit(
      files,
      `${node1}/iptables-legacy-save.txt`,
      () =>
        '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n[0:0] -A FORWARD -j DROP\nCOMMIT\n',
    );
    has(warningsOf(legacy), 'node1', /1 rules in the legacy x_tables/, /only the nf_tables rules/);
  });

  test('the nat table is imported: a Service DNAT translates the walk; a nat rule the model cannot evaluate is a warning', () => {
    const files = edit(
      base,
      `${node1}/iptables-save.txt`,
      (t) =>
        t +
        [
          '*nat',
          ':PREROUTING ACCEPT [0:0]',
          ':INPUT ACCEPT [0:0]',
          ':OUTPUT ACCEPT [0:0]',
          ':POSTROUTING ACCEPT [0:0]',
          ':KUBE-SERVICES - [0:0]',
          '[3:180] -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
          '[0:0] -A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.1.5:8080',
          '[0:0] -A KUBE-SERVICES -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE',
          'COMMIT',
          '',
        ].join('\n'),
    );
    const imp = importCluster(files);
    has(
      imp.warnings,
      'node1',
      /^nat: 1 rule with what the model does not evaluate \(Set KUBE-LOOP-BACK doesn't exist\.\), e\.g\. `-A KUBE-SERVICES -m set/,
      /^left out; 1 NAT rule: the walk may miss a translation the kernel makes$/,
    );
    // the table as iptables-save prints it, its counters too, less the rule left out
    const saved = runCommand(imp.cluster, 'node1', 'iptables-save -c -t nat').stdout;
    assert.match(
      saved,
      /^\[3:180\] -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES$/m,
    );
    assert.match(
      saved,
      /^\[0:0\] -A KUBE-SERVICES -d 10\.96\.0\.10\/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10\.244\.1\.5:8080$/m,
    );
    assert.doesNotMatch(saved, /match-set/);
    // the same walk as on the simulated cluster given the same rule
    const sim = buildCluster(seedCluster(), 'flannel-vxlan');
    assert.equal(
      runCommand(
        sim,
        'node1',
        'iptables -t nat -A PREROUTING -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.1.5:8080',
      ).code,
      0,
    );
    const req: WalkRequest = { from: 'pod-a', to: '10.96.0.10', proto: 'tcp', port: 80, sport: 40000 };
    const a = walk(imp.cluster, req, { exchange: true });
    const b = walk(sim, req, { exchange: true });
    assert.equal(a.reply?.disposition.kind, 'delivered');
    assert.deepEqual(
      a.traces.map((t) => renderSummary(t)),
      b.traces.map((t) => renderSummary(t)),
    );
  });

  test('IPv6, conntrack state, sysctls the model does not read, bridge options', () => {
    let files = editJson<{ ifname: string; addr_info: L[] }[]>(base, `${node1}/addr.json`, (as) =>
      as.map((a) =>
        a.ifname === 'eth0'
          ? {
              ...a,
              addr_info: [
                ...a.addr_info,
                { family: 'inet6', local: 'fe80::1', prefixlen: 64, scope: 'link' },
              ],
            }
          : a,
      ),
    );
    files = edit(
      files,
      `${node1}/conntrack.txt`,
      () =>
        'ipv4     2 tcp      6 431999 ESTABLISHED src=10.244.0.5 dst=10.244.1.5 sport=1 dport=8080 src=10.244.1.5 dst=10.244.0.5 sport=8080 dport=1 [ASSURED] mark=0 use=1\n',
    );
    files = edit(files, `${node1}/sysctl.txt`, (t) => t + 'net/ipv4/conf/all/arp_ignore = 1\n');
    files = editJson<L[]>(files, `${node1}/link.json`, (ls) =>
      ls.map((l) =>
        l.ifname === 'cni0'
          ? {
              ...l,
              linkinfo: {
                ...(l.linkinfo as L),
                info_data: { ...((l.linkinfo as L).info_data as L), vlan_filtering: 1 },
              },
            }
          : l,
      ),
    );
    files = editJson<L[]>(files, `${node1}/bridge-link.json`, (ls) =>
      ls.map((l) => ({ ...l, hairpin: true })),
    );
    const ws = warningsOf(files);
    has(ws, 'node1', /1 IPv6 address/, /only IPv4 flows/);
    has(ws, 'node1', /1 conntrack entry/, /starts as a NEW connection/);
    has(ws, 'node1', /net\.ipv4\.conf\.all\.arp_ignore = 1/, /answers ARP for any local address/);
    has(ws, 'node1', /bridge cni0 vlan_filtering 1/, /VLAN filtering is not modelled/);
    // hairpin mode is imported: the port reflects frames as the kernel's does
    assert.ok(!ws.some((w) => /hairpin/.test(w.subject)), 'hairpin on is modelled, not warned about');
    const hp = runCommand(importCluster(files).cluster, 'node1', 'bridge -d link show dev veth-pod-a');
    assert.match(hp.stdout, /hairpin on/);
  });

  test('a veth whose other end was not collected leads outside; a walk into it ends there', () => {
    // drop pod-b's namespace from node1's dump: its host veth now leads nowhere collected
    const podB = dirOf(base, 'node1', 'pod-b');
    const files = new Map([...base].filter(([p]) => !p.startsWith(podB + '/')));
    const { cluster, warnings } = importCluster(files);
    has(
      warnings,
      'node1',
      /veth veth-pod-b: its other end \(ifindex 2\) was not collected/,
      /leave the collected nodes/,
    );
    // outside answers ARP for addresses no collected namespace has: the datagram goes into the veth
    const w = walk(cluster, { from: 'pod-a', to: '10.244.0.6', proto: 'udp', port: 8080 });
    assert.deepEqual(w.request.disposition, { kind: 'outside', netns: 'node1', device: 'veth-pod-b' });
    assert.ok(walkOk(w));
  });
});

describe('nodes whose uplink leads nowhere collected join the underlay their addresses imply', () => {
  // a physical NIC as the real ip -s -d -j link prints one (test/fixtures/physical-nic-link.json,
  // recorded from this machine's eth0): no linkinfo, a parent bus
  const nic = (
    JSON.parse(readFileSync(new URL('./fixtures/physical-nic-link.json', import.meta.url), 'utf8')) as Record<
      string,
      unknown
    >[]
  )[0];
  test('eth0 as a physical NIC: a segment per subnet and a router from the default routes; walks as before', () => {
    const base = seedDumps('flannel-vxlan');
    let files: DumpFiles = new Map(
      [...base].filter(
        ([p, t]) => !p.startsWith('router/') && !(p.endsWith('where.txt') && t.includes('name: sim-lan0')),
      ),
    );
    const lan0Dirs = [...base]
      .filter(([p, t]) => p.endsWith('where.txt') && t.includes('name: sim-lan0'))
      .map(([p]) => p.slice(0, -10));
    files = new Map([...files].filter(([p]) => !lan0Dirs.some((d) => p.startsWith(d + '/'))));
    for (const node of ['node1', 'node2', 'node3']) {
      const dir = dirOf(files, node, node);
      files = editJson<Record<string, unknown>[]>(files, `${dir}/link.json`, (ls) =>
        ls.map((l) =>
          l.ifname === 'eth0'
            ? {
                ...nic,
                ifindex: l.ifindex,
                ifname: 'eth0',
                address: l.address,
                mtu: l.mtu,
                stats64: l.stats64,
              }
            : l,
        ),
      );
    }
    const { cluster, warnings, plan } = importCluster(files, { name: 'seed' });
    assert.deepEqual(
      plan.namespaces.filter((p) => p.source === 'synthesised').map((p) => `${p.name}:${p.role}`),
      ['lan0:segment', 'router:router', 'outside:outside'],
    );
    assert.deepEqual(plan.segments, [
      {
        name: 'lan0',
        cidr: '192.168.1.0/24',
        gateway: '192.168.1.1',
        gatewayMac: plan.segments[0].gatewayMac,
      },
    ]);
    assert.ok(warnings.some((w) => /192\.168\.1\.1's MAC is in no dumped neighbour table/.test(w.subject)));
    const r: WalkRequest = { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 };
    const w = walk(cluster, r, { exchange: true });
    assert.ok(walkOk(w));
    // the underlay the walk crossed is synthesised (only the segment's and router's MACs are made
    // up): the devices the packets cross are the same
    assert.deepEqual(
      w.traces.map((t) => renderSummary(t)),
      walk(buildCluster(seedCluster(), 'flannel-vxlan'), r, { exchange: true }).traces.map((t) =>
        renderSummary(t),
      ),
    );
    // beyond the gateway: outside
    const out = walk(importCluster(files).cluster, { from: 'pod-a', to: '8.8.8.8', proto: 'udp', port: 53 });
    assert.deepEqual(out.request.disposition, { kind: 'outside', netns: 'router', device: 'outside' });
  });
});

describe('dumps are untrusted input: one line naming the file, nothing applied', () => {
  const base = seedDumps();
  const node1 = dirOf(base, 'node1', 'node1');
  const cases: [string, () => DumpFiles, RegExp][] = [
    [
      'truncated JSON',
      () => edit(base, `${node1}/link.json`, (t) => t.slice(0, t.length / 2)),
      new RegExp(`^${node1}/link\\.json: not valid JSON`),
    ],
    [
      'a field of the wrong type',
      () =>
        editJson<Record<string, unknown>[]>(base, `${node1}/link.json`, (ls) =>
          ls.map((l, i) => (i === 1 ? { ...l, mtu: 'big' } : l)),
        ),
      new RegExp(`^${node1}/link\\.json: entry 1 \\(ifname eth0\\): mtu: `),
    ],
    [
      'not an array',
      () => edit(base, `${node1}/route.json`, () => '{"dst":"default"}'),
      new RegExp(`^${node1}/route\\.json: expected a JSON array`),
    ],
    [
      'an empty file',
      () => edit(base, `${node1}/addr.json`, () => ''),
      new RegExp(`^${node1}/addr\\.json: empty`),
    ],
    [
      'a missing file',
      () => new Map([...base].filter(([p]) => p !== `${node1}/neigh.json`)),
      new RegExp(`^${node1}/neigh\\.json: missing from the dump`),
    ],
    [
      'a command that failed on the node',
      () => {
        const f = new Map([...base].filter(([p]) => p !== `${node1}/fdb.json`));
        f.set(`${node1}/fdb.json.err`, 'bridge: command not found\nexit 127\n');
        return f;
      },
      new RegExp(`^${node1}/fdb\\.json: the command failed on the node: bridge: command not found`),
    ],
    [
      'no manifest',
      () => new Map([...base].filter(([p]) => !p.endsWith('manifest.txt'))),
      /^\.: no manifest\.txt/,
    ],
    [
      'a foreign manifest',
      () => edit(base, 'node1/manifest.txt', () => 'hello: world\n'),
      /^node1\/manifest\.txt: not a podwalk collect manifest/,
    ],
    [
      'a newer format',
      () => edit(base, 'node1/manifest.txt', (t) => t.replace('podwalk-collect: 1', 'podwalk-collect: 2')),
      /^node1\/manifest\.txt: dump format version 2/,
    ],
    [
      'a garbled manifest line',
      () => edit(base, 'node1/manifest.txt', (t) => t + 'this is not a key\n'),
      /^node1\/manifest\.txt:7: expected "key: value"/,
    ],
    [
      "the node's own namespace missing",
      () => new Map([...base].filter(([p]) => !p.startsWith(node1 + '/'))),
      new RegExp(`^${node1}: the node's own namespace is missing`),
    ],
    [
      'where.txt naming another inode',
      () => edit(base, `${node1}/where.txt`, (t) => t.replace(/inode: \d+/, 'inode: 1')),
      new RegExp(`^${node1}/where\\.txt: inode 1 ≠ its directory`),
    ],
    [
      'a sysctl line that is not PATH = VALUE',
      () => edit(base, `${node1}/sysctl.txt`, (t) => 'net/ipv4/ip_forward 1\n' + t),
      new RegExp(`^${node1}/sysctl\\.txt:1: expected "PATH = VALUE"`),
    ],
    [
      'an ss line without a port',
      () => edit(base, `${node1}/ss.txt`, () => 'tcp LISTEN 0 4096 somewhere *\n'),
      new RegExp(`^${node1}/ss\\.txt:1: local address "somewhere" has no port`),
    ],
    [
      'the same ifindex twice',
      () =>
        editJson<Record<string, unknown>[]>(base, `${node1}/link.json`, (ls) => [
          ...ls,
          { ...ls[2], ifname: 'dup0' },
        ]),
      new RegExp(`^${node1}/link\\.json: ifindex 3 twice`),
    ],
    [
      'a device name longer than IFNAMSIZ',
      () =>
        editJson<Record<string, unknown>[]>(base, `${node1}/link.json`, (ls) =>
          ls.map((l, i) => (i === 2 ? { ...l, ifname: 'a-very-long-device-name' } : l)),
        ),
      new RegExp(`^${node1}/link\\.json: entry 2 \\(ifname a-very-long-device-name\\): ifname: `),
    ],
    [
      'a gateway that is not an address',
      () =>
        editJson<Record<string, unknown>[]>(base, `${node1}/route.json`, (rs) => [
          ...rs,
          { dst: '10.7.0.0/16', gateway: '$(reboot)', dev: 'eth0', flags: [] },
        ]),
      new RegExp(
        `^${node1}/route\\.json: route 10\\.7\\.0\\.0/16: gateway "\\$\\(reboot\\)" is not an IPv4 address`,
      ),
    ],
    [
      'the same node twice',
      () => {
        const f = new Map(base);
        for (const [p, t] of base)
          if (p.startsWith('node2/'))
            f.set(
              p.replace(/^node2\//, 'node9/'),
              p === 'node2/manifest.txt' ? t.replace('node: node2', 'node: node1') : t,
            );
        return f;
      },
      /^node9\/manifest\.txt: node "node1" is dumped twice/,
    ],
  ];
  for (const [what, make, want] of cases)
    test(what, () => {
      const e = dumpError(() => importCluster(make()));
      assert.match(e.message, want);
      assert.ok(!e.message.includes('\n'), 'one line');
    });

  test('bounded sizes, UTF-8, plain relative paths', () => {
    const b = new DumpFilesBuilder();
    assert.match(
      dumpError(() => b.add('x/link.json', new Uint8Array(LIMITS.fileBytes + 1))).message,
      /^x\/link\.json: 64\.0 MiB, more than the 64 MiB a dump file may have$/,
    );
    assert.match(
      dumpError(() => b.add('x/y.txt', new Uint8Array([0x66, 0xff, 0x6f]))).message,
      /^x\/y\.txt: not UTF-8 text$/,
    );
    assert.match(
      dumpError(() => b.add('../../etc/passwd', new Uint8Array(1))).message,
      /not a plain relative path/,
    );
    assert.match(
      dumpError(() => b.add('/etc/passwd', new Uint8Array(1))).message,
      /not a plain relative path/,
    );
    b.add('a/b.txt', new Uint8Array([0x68, 0x69]));
    assert.match(
      dumpError(() => b.add('./a/b.txt', new Uint8Array(1))).message,
      /^a\/b\.txt: the file is in the dump set twice$/,
    );
  });

  test('tar archives: entries are checked, truncation and links are errors', () => {
    const header = (name: string, size: number, type = '0') => {
      const h = new Uint8Array(512);
      const put = (s: string, off: number) => [...s].forEach((ch, i) => (h[off + i] = ch.charCodeAt(0)));
      put(name, 0);
      put('0000644\0', 100);
      put(size.toString(8).padStart(11, '0') + '\0', 124);
      put(type, 156);
      put('ustar\0', 257);
      put('        ', 148);
      const sum = h.reduce((a, x) => a + x, 0);
      put(sum.toString(8).padStart(6, '0') + '\0 ', 148);
      return h;
    };
    const tar = (...parts: Uint8Array[]) => {
      const out = new Uint8Array(parts.reduce((n, p) => n + Math.ceil(p.length / 512) * 512, 0) + 1024);
      let o = 0;
      for (const p of parts) {
        out.set(p, o);
        o += Math.ceil(p.length / 512) * 512;
      }
      return out;
    };
    const data = new Uint8Array([0x6f, 0x6b]);
    assert.deepEqual([...untar(tar(header('./n/a.txt', 2), data), 'd.tar')], [['n/a.txt', 'ok']]);
    assert.match(
      dumpError(() => untar(tar(header('../a.txt', 2), data), 'd.tar')).message,
      /^\.\.\/a\.txt: not a plain relative path/,
    );
    assert.match(
      dumpError(() => untar(tar(header('n/l', 0, '2')), 'd.tar')).message,
      /^d\.tar: n\/l: a tar entry of type "2"/,
    );
    assert.match(
      dumpError(() => untar(tar(header('n/a.txt', 2000)).slice(0, 1024), 'd.tar')).message,
      /^d\.tar: truncated: n\/a\.txt ends past the end/,
    );
    const bad = tar(header('n/a.txt', 2), data);
    bad[0] ^= 1;
    assert.match(dumpError(() => untar(bad, 'd.tar')).message, /^d\.tar: broken tar header at byte 0$/);
  });

  test('nothing in a dump runs: shell text in names, comments and rules stays text', () => {
    const files = edit(base, `${node1}/iptables-save.txt`, (t) =>
      t.replace(
        '"kubernetes forwarding rules" -j KUBE-FORWARD',
        '"$(touch /tmp/podwalk-pwned) `id`" -j KUBE-FORWARD',
      ),
    );
    const { cluster } = importCluster(files);
    assert.match(
      runCommand(cluster, 'node1', 'iptables -S FORWARD').stdout,
      /--comment "\$\(touch \/tmp\/podwalk-pwned\) `id`"/,
    );
    assert.throws(() => readFileSync('/tmp/podwalk-pwned'));
  });
});
