/**
 * The emulated iptables, iptables-save, conntrack, sysctl and calicoctl beyond the recorded
 * goldens: changes reach the datapath, refused commands change nothing, calicoctl's table, and
 * the counter formatting at the boundaries the real iptables showed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seedCluster } from '../src/cluster/seed.ts';
import type { CniMode } from '../src/cluster/spec.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { Netfilter, parseRuleSpec, shellSplit } from '../src/kernel/netfilter.ts';
import { walk } from '../src/trace/walk.ts';
import { calicoctl } from '../src/tools/calicoctl.ts';
import { conntrack } from '../src/tools/conntrack.ts';
import { iptables } from '../src/tools/iptables.ts';
import { iptablesSave, iptablesSaveTool } from '../src/tools/iptables-save.ts';
import { printNum } from '../src/tools/nf-list.ts';
import { sysctl } from '../src/tools/sysctl.ts';
import type { Tool } from '../src/tools/types.ts';

const TOOLS: Record<string, Tool> = {
  iptables,
  'iptables-save': iptablesSaveTool,
  conntrack,
  sysctl,
  calicoctl,
};

function sh(c: Cluster, netns: string, line: string) {
  const [cmd, ...argv] = shellSplit(line);
  return TOOLS[cmd](argv, { cluster: c, netns: c.world.ns(netns) });
}

const cluster = (mode: CniMode = 'flannel-vxlan') => buildCluster(seedCluster(), mode);
const tcp = (c: Cluster) =>
  walk(c, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 }).request.disposition;

test('calicoctl node status: the mesh in calicoctl table, as Calico documents it', () => {
  const c = cluster('calico-bgp');
  const r = sh(c, 'node1', 'calicoctl node status');
  assert.equal(r.code, 0);
  assert.equal(
    r.stdout,
    `Calico process is running.

IPv4 BGP status
+--------------+-------------------+-------+----------+-------------+
| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+--------------+-------------------+-------+----------+-------------+
| 192.168.1.11 | node-to-node mesh | up    | 00:00:02 | Established |
| 192.168.1.12 | node-to-node mesh | up    | 00:00:02 | Established |
+--------------+-------------------+-------+----------+-------------+

IPv6 BGP status
No IPv6 peers found.

`,
  );
});

test('calicoctl node status: a session that is down, and where calico-node is not running', () => {
  const spec = seedCluster();
  spec.bgp = [{ nodes: ['node1', 'node3'], state: 'down' }];
  const c = buildCluster(spec, 'calico-bgp');
  const out = sh(c, 'node1', 'calicoctl node status').stdout;
  // node1, the lower address, is passive toward node3 (Calico's template: `passive on` where the
  // peer's address is the greater, as real BIRD showed in test/lab-bgp-faults): it waits; node3
  // connects and is refused
  assert.match(out, /^\| 192\.168\.1\.12 \| node-to-node mesh \| start \| 00:00:00 \| Passive {5}\|$/m);
  assert.match(
    sh(c, 'node3', 'calicoctl node status').stdout,
    /^\| 192\.168\.1\.10 \| node-to-node mesh \| start \| 00:00:00 \| Active Socket: Connection refused \|$/m,
  );
  // Established 2 s after BIRD started: its connect delay (Calico's `connect delay time 2`)
  assert.match(out, /^\| 192\.168\.1\.11 \| node-to-node mesh \| up {4}\| 00:00:02 \| Established \|$/m);
  for (const [mode, netns] of [
    ['flannel-vxlan', 'node1'],
    ['calico-bgp', 'pod-a'],
  ] as const) {
    const r = sh(cluster(mode), netns, 'calicoctl node status');
    assert.deepEqual(r, { stdout: '', stderr: 'Calico process is not running.\n', code: 1 });
  }
});

test('iptables changes reach the datapath', () => {
  const c = cluster();
  assert.equal(tcp(c).kind, 'delivered');
  assert.equal(sh(c, 'node2', 'iptables -I FORWARD -d 10.244.1.5/32 -p tcp --dport 8080 -j DROP').code, 0);
  const d = tcp(c);
  assert.equal(d.kind, 'dropped');
  assert.equal(d.kind === 'dropped' && d.reason, 'filtered');
  assert.match(sh(c, 'node2', 'iptables -L FORWARD 1 -v -n').stdout, /^ {4}1 {4}60 DROP {7}6 /);
  assert.equal(sh(c, 'node2', 'iptables -D FORWARD 1').code, 0);
  assert.equal(tcp(c).kind, 'delivered');
});

test('sysctl -w reaches the datapath; ip_forward and conf.all.forwarding are one value', () => {
  const c = cluster();
  assert.equal(sh(c, 'node1', 'sysctl -w net.ipv4.ip_forward=0').stdout, 'net.ipv4.ip_forward = 0\n');
  assert.equal(
    sh(c, 'node1', 'sysctl -n net.ipv4.conf.all.forwarding net.ipv4.conf.cni0.forwarding').stdout,
    '0\n0\n',
  );
  const d = tcp(c);
  assert.equal(d.kind === 'dropped' && d.reason, 'forwarding-disabled');
  assert.equal(sh(c, 'node1', 'sysctl -q -w net.ipv4.conf.all.forwarding=1').stdout, '');
  assert.equal(sh(c, 'node1', 'sysctl -n net.ipv4.ip_forward').stdout, '1\n');
  assert.equal(tcp(c).kind, 'delivered');
  assert.deepEqual(sh(c, 'node1', 'sysctl -w net.ipv4.ip_default_ttl=256'), {
    stdout: '',
    stderr: 'sysctl: setting key "net.ipv4.ip_default_ttl": Invalid argument\n',
    code: 1,
  });
  assert.equal(
    sh(c, 'node1', 'sysctl net.ipv4.conf.flannel/1.rp_filter').stdout,
    'net.ipv4.conf.flannel/1.rp_filter = 0\n',
  );
});

test('a refused iptables command changes nothing', () => {
  const c = cluster();
  const before = sh(c, 'node1', 'iptables -S').stdout;
  // the kernel refuses tcp-reset without -p tcp, after the first of the two rules was built
  const r = sh(
    c,
    'node1',
    'iptables -A FORWARD -s 10.0.0.1,10.0.0.2 -p udp -j REJECT --reject-with tcp-reset',
  );
  assert.equal(r.code, 4);
  assert.equal(
    r.stderr,
    'iptables v1.8.9 (nf_tables):  RULE_APPEND failed (Invalid argument): rule in chain FORWARD\n',
  );
  assert.equal(sh(c, 'node1', 'iptables -S').stdout, before);
  // one of the two rules to delete is not there: neither goes
  assert.equal(sh(c, 'node1', 'iptables -A KUBE-FORWARD -s 10.1.1.1 -j ACCEPT').code, 0);
  const withRule = sh(c, 'node1', 'iptables -S').stdout;
  assert.equal(sh(c, 'node1', 'iptables -D KUBE-FORWARD -s 10.1.1.1,10.2.2.2 -j ACCEPT').code, 1);
  assert.equal(sh(c, 'node1', 'iptables -S').stdout, withRule);
  // a busy chain is not deleted
  assert.equal(sh(c, 'node1', 'iptables -X KUBE-FORWARD').code, 4);
  assert.equal(sh(c, 'node1', 'iptables -S').stdout, withRule);
});

test('iptables -v counters: the K/M/G/T rounding the real iptables showed', () => {
  const cases: [number, string][] = [
    [99999, '99999 '],
    [100000, ' 100K '],
    [100500, ' 101K '],
    [9999499, '9999K '],
    [9999500, '  10M '],
    [12345678, '  12M '],
    [1234567890, '1235M '],
    [999999999999, '1000G '],
    [9999999999999, '  10T '],
  ];
  for (const [n, s] of cases) assert.equal(printNum(n, false), s, String(n));
  assert.equal(printNum(1234567890, true), '1234567890 ');
  assert.equal(printNum(100499, false, true), '100K ');
});

test('iptables-save: the comment lines carry the simulated clock; the lab restores the same tables', () => {
  const c = cluster();
  const out = sh(c, 'node1', 'iptables-save').stdout;
  assert.match(
    out,
    /^# Generated by iptables-save v1\.8\.9 \(nf_tables\) on Thu Jan {2}1 00:00:00 2026\n\*filter\n/,
  );
  assert.match(out, /\nCOMMIT\n# Completed on Thu Jan {2}1 00:00:00 2026\n$/);
  const body = out
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .join('\n');
  assert.equal(body, iptablesSave(c.world.ns('node1').netfilter));
  // a pod's namespace has no table at all: nothing to save, nothing counted
  assert.equal(sh(c, 'pod-a', 'iptables-save').stdout, '');
  walk(c, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 }, { exchange: true });
  assert.match(sh(c, 'pod-a', 'iptables -L OUTPUT -v').stdout, /policy ACCEPT 0 packets, 0 bytes/);
  assert.match(sh(c, 'node1', 'iptables -L OUTPUT -v').stdout, /policy ACCEPT 6 packets/);
});

test('conntrack -L, -C and -F', () => {
  const c = cluster();
  walk(c, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 }, { exchange: true });
  const r = sh(c, 'node2', 'conntrack -L -p tcp');
  assert.match(
    r.stdout,
    /^tcp {6}6 119 TIME_WAIT src=10\.244\.0\.5 dst=10\.244\.1\.5 sport=\d+ dport=8080 src=10\.244\.1\.5 /,
  );
  assert.equal(r.stderr, 'conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n');
  assert.equal(sh(c, 'node2', 'conntrack -C').stdout, '3\n');
  assert.equal(
    sh(c, 'node2', 'conntrack -F').stderr,
    'conntrack v1.4.7 (conntrack-tools): connection tracking table has been emptied.\n',
  );
  assert.equal(sh(c, 'node2', 'conntrack -C').stdout, '0\n');
});

test('iptables -p takes /etc/protocols names; iptables-nft keeps one byte of the number (mptcp, 262, is tcp)', () => {
  // what iptables 1.8.9 (nf_tables) on 6.18 did in a namespace of its own
  const c = cluster();
  for (const p of ['mptcp', 'ipencap', 'ipip'])
    assert.equal(sh(c, 'pod-a', `iptables -A INPUT -p ${p} -j ACCEPT`).code, 0);
  assert.equal(
    sh(c, 'pod-a', 'iptables -S INPUT').stdout,
    '-P INPUT ACCEPT\n-A INPUT -p tcp -j ACCEPT\n-A INPUT -p ipencap -j ACCEPT\n-A INPUT -p ipip -j ACCEPT\n',
  );
  const r = sh(c, 'pod-a', 'iptables -A INPUT -p CPHB -j ACCEPT');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown protocol "cphb" specified/);
});

test('Netfilter.restore: one commit, checked once on the final table, all or nothing', () => {
  const nf = new Netfilter();
  const r = (args: string) => parseRuleSpec(shellSplit(args));
  // a jump to a chain whose DNAT comes later in the same commit: valid from PREROUTING
  nf.restore(
    'nat',
    ['KUBE-SVC-X', 'KUBE-SEP-Y'],
    [
      { chain: 'KUBE-SVC-X', rule: r('-j KUBE-SEP-Y') },
      { chain: 'KUBE-SEP-Y', rule: r('-p tcp -j DNAT --to-destination 10.244.1.5:8080') },
      { chain: 'PREROUTING', rule: r('-j KUBE-SVC-X') },
    ],
  );
  assert.equal(nf.chain('nat', 'KUBE-SEP-Y')!.rules.length, 1);
  // reached from POSTROUTING, DNAT is refused: nothing of the commit stays, the chains keep their rules
  assert.throws(
    () =>
      nf.restore(
        'nat',
        ['KUBE-SEP-Y', 'KUBE-NEW'],
        [
          { chain: 'KUBE-SEP-Y', rule: r('-p tcp -j DNAT --to-destination 10.244.2.5:8080') },
          { chain: 'KUBE-NEW', rule: r('-j KUBE-SEP-Y') },
          { chain: 'POSTROUTING', rule: r('-j KUBE-NEW') },
        ],
      ),
    /the kernel refuses the rule in nat KUBE-SEP-Y: DNAT is not valid in POSTROUTING/,
  );
  assert.equal(nf.chain('nat', 'KUBE-NEW'), undefined);
  assert.equal(nf.chain('nat', 'POSTROUTING')!.rules.length, 0);
  assert.deepEqual(
    nf.chain('nat', 'KUBE-SEP-Y')!.rules.map((x) => x.target),
    [r('-p tcp -j DNAT --to-destination 10.244.1.5:8080').target],
  );
});
