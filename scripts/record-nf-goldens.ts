/**
 * Records the golden outputs of the real iptables 1.8.9 (nf_tables), iptables-save,
 * conntrack 1.4.7 and sysctl (procps-ng 4.0.2) that test/nftools.test.ts compares podwalk's
 * emulated tools with. Needs root and network namespaces:
 *
 *   npx tsx scripts/record-nf-goldens.ts [MODE…]     (default: flannel-vxlan flannel-host-gw calico-bgp)
 *
 * For each mode it builds the built-in cluster (under its own name, so that its namespaces
 * pw-nfgold-* cannot collide with another lab of the seed cluster), brings it up in real network
 * namespaces, lets the kernel's own start-up traffic (IGMP reports) pass, zeroes the counters and
 * flushes conntrack, then runs the scenario below: real traffic from real clients (the same flows
 * the test walks in the model), reads, iptables changes (valid and refused ones), more traffic.
 * Every command's stdout goes to test/golden/nf/MODE/NN-NETNS-COMMAND.out, and manifest.json
 * keeps the steps in order with argv, exit status, stderr and the seconds since the first flow
 * (the test advances the model's clock by as much). The lab is always removed again.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { seedCluster } from '../src/cluster/seed.ts';
import type { CniMode } from '../src/cluster/spec.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { shellSplit } from '../src/kernel/netfilter.ts';
import {
  existingNamespaces,
  labDown,
  labExec,
  labUnavailable,
  labUp,
  type LabState,
} from '../src/lab/host.ts';
import { labPrefix } from '../src/lab/plan.ts';
import { httpRequest, walk, type WalkRequest } from '../src/trace/walk.ts';

/** the cluster name of the golden lab (namespaces pw-nfgold-*) */
const GOLDEN_CLUSTER = 'nfgold';

/** the manifest's shape (test/nftools.test.ts reads it) */
type GoldenStep =
  | { kind: 'walk'; t: number; req: WalkRequest; client: { code: number; out: string } }
  | {
      kind: 'run';
      t: number;
      netns: string;
      argv: string[];
      code: number;
      stderr: string;
      /** the file holding stdout, next to manifest.json; absent when stdout was empty */
      out?: string;
    };

interface GoldenManifest {
  mode: CniMode;
  cluster: string;
  iptables: string;
  conntrack: string;
  kernel: string;
  steps: GoldenStep[];
}

type Scenario = ({ walk: WalkRequest } | { netns: string; cmd: string })[];

const reads = (netns: string): Scenario =>
  [
    'iptables -L -n -v',
    'iptables -L FORWARD -n -v',
    'iptables -L -n -v -x --line-numbers',
    'iptables -L',
    'iptables -S',
    'iptables -S -v',
    'iptables-save',
    'iptables-save -c',
    'conntrack -L',
    'conntrack -L -p tcp',
    'conntrack -L -p udp',
    'conntrack -L -p icmp',
    'conntrack -L -s 10.244.0.5',
    'conntrack -L -d 10.244.1.5 -p tcp --dport 8080',
    'conntrack -C',
    'conntrack -L -p icmp -s 10.244.0.0/16',
    'conntrack -L -o extended -p tcp',
    'conntrack -L -p tcp --state TIME_WAIT',
    'conntrack -L -r 10.244.1.5 -q 10.244.0.5',
    'conntrack -L -p foo',
    'conntrack -L --dport 8080',
    'conntrack -C -p tcp',
    'conntrack -L -s 10.244.0.300',
    'sysctl net.ipv4.ip_forward',
    'sysctl -n net.ipv4.ip_forward',
    'sysctl net.ipv4.conf.all.forwarding net.ipv4.conf.all.rp_filter net.ipv4.conf.eth0.rp_filter net.ipv4.conf.cni0.forwarding',
    'sysctl net.bridge.bridge-nf-call-iptables net.netfilter.nf_conntrack_tcp_loose net.ipv4.ip_default_ttl',
    'sysctl net.ipv4.ip_local_port_range net.ipv4.tcp_rmem',
    'sysctl net.ipv4.nope',
  ].map((cmd) => ({ netns, cmd }));

/** iptables changes on node1, refused ones among them, each followed by what the tables show */
const NODE1_CHANGES = [
  'iptables -N PODWALK-TEST',
  'iptables -A PODWALK-TEST -s 10.244.1.0/24 -p tcp --dport 8080 -m comment --comment "podwalk test" -j RETURN',
  'iptables -A PODWALK-TEST -p udp -m udp --sport 53 -j REJECT --reject-with icmp-host-prohibited',
  'iptables -A PODWALK-TEST -m conntrack --ctstate NEW,INVALID -m mark ! --mark 0x10/0xff -j DROP',
  'iptables -v -A PODWALK-TEST -s 10.244.1.5 -p tcp --dport 8080 -j ACCEPT',
  'iptables -v -I PODWALK-TEST -j DROP',
  'iptables -I FORWARD 2 -i cni0 ! -o cni0 -j PODWALK-TEST',
  'iptables -L FORWARD -n -v --line-numbers',
  'iptables -L PODWALK-TEST',
  'iptables -S PODWALK-TEST',
  'iptables -C PODWALK-TEST -p udp --sport 53 -j REJECT --reject-with icmp-host-prohibited',
  'iptables -C PODWALK-TEST -p udp --sport 54 -j REJECT --reject-with icmp-host-prohibited',
  'iptables -X PODWALK-TEST',
  'iptables -D FORWARD -i cni0 ! -o cni0 -j PODWALK-TEST',
  'iptables -D PODWALK-TEST 9',
  'iptables -D PODWALK-TEST 1',
  'iptables -D PODWALK-TEST -j ACCEPT',
  'iptables -X PODWALK-TEST',
  'iptables -F PODWALK-TEST',
  'iptables -X PODWALK-TEST',
  'iptables -L PODWALK-TEST',
  'iptables -A FORWARD -j PODWALK-TEST',
  'iptables -P FORWARD DROP',
  'iptables -S FORWARD',
  'iptables -P FORWARD ACCEPT',
  'iptables -P CNI-FORWARD DROP',
  'iptables -P FORWARD REJECT',
  'iptables -N KUBE-FORWARD',
  'iptables -I KUBE-FORWARD 9 -j ACCEPT',
  'iptables -A FORWARD -p tcp --dport 99999 -j ACCEPT',
  'iptables -A FORWARD --dport 80 -j ACCEPT',
  'iptables -A FORWARD -m conntrack --ctstate BOGUS -j ACCEPT',
  'iptables -A FORWARD -s 10.244.0.300 -j ACCEPT',
  'iptables -L -n FORWARD',
  'iptables -t nat -L -n',
  'iptables -Z KUBE-FORWARD',
  'iptables -L -n -v',
  'iptables-save -c',
  'sysctl -w net.ipv4.conf.all.rp_filter=2',
  'sysctl net.ipv4.conf.all.rp_filter net.ipv4.conf.cni0.rp_filter',
  'sysctl -w net.ipv4.conf.all.rp_filter=0',
  'sysctl -w net.ipv4.ip_default_ttl=0',
  'sysctl -w net.nope=1',
  'sysctl -n net.ipv4.conf.flannel/1.rp_filter',
  'sysctl -N net.ipv4.ip_forward net.nope',
  'sysctl net/ipv4/ip_forward',
  'sysctl -w net.ipv4.ip_local_port_range=30000',
  'sysctl net.ipv4.ip_local_port_range',
  'sysctl -w "net.ipv4.ip_local_port_range=40000 30000"',
  'sysctl -w "net.ipv4.ip_local_port_range=32768 60999"',
  'sysctl -w net.bridge.bridge-nf-call-iptables=5',
  'sysctl net.bridge.bridge-nf-call-iptables',
  'sysctl -w net.ipv4.conf.all.forwarding=0',
  'sysctl net.ipv4.ip_forward net.ipv4.conf.default.forwarding net.ipv4.conf.eth0.forwarding',
  'sysctl -w net.ipv4.ip_forward=1',
  'sysctl net.ipv4.conf.eth0.forwarding',
  'sysctl -w net.ipv4.ip_forward',
  'sysctl -e net.nope',
  'sysctl',
  'sysctl -Q',
  'iptables -nvL KUBE-FORWARD',
  'iptables --list FORWARD --numeric --line-numbers',
  'iptables -L FORWARD 2',
  'iptables -S FORWARD 2',
  'iptables -v -L -Z CNI-FORWARD',
  'iptables -L CNI-FORWARD -v',
];

/** RFC 4648 base32 (Go's base32.StdEncoding) */
function base32(b: Uint8Array): string {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let out = '';
  let bits = 0;
  let value = 0;
  for (const x of b) {
    value = (value << 8) | x;
    bits += 8;
    while (bits >= 5) {
      out += A[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += A[(value << (5 - bits)) & 31];
  return out;
}

/** kube-proxy's chain names (proxier.go: portProtoHash, servicePortEndpointChainName) */
const kubeHash = (s: string) => base32(createHash('sha256').update(s).digest()).slice(0, 16);
const svcChain = (portName: string, proto: string) => `KUBE-SVC-${kubeHash(portName + proto)}`;
const sepChain = (portName: string, proto: string, ep: string) =>
  `KUBE-SEP-${kubeHash(portName + proto + ep)}`;

/**
 * kube-proxy's nat table (pkg/proxy/iptables/proxier.go, its argument order as it writes the
 * rules) for a TCP service web with one endpoint (pod-c), a UDP service dns with one endpoint
 * (pod-d) and a service multi with three endpoints (listed, not walked: its choice is random), a
 * plain MASQUERADE of pod-b leaving node1, mangle and raw rules of NodeLocal DNSCache's shape; then
 * refused commands, NATed flows, and what iptables, iptables-save and conntrack show of them.
 */
function natPart(mode: CniMode): Scenario {
  const out = mode === 'flannel-vxlan' ? 'flannel.1' : 'eth0';
  const web = 'default/web:http';
  const dns = 'kube-system/kube-dns:dns';
  const multi = 'default/multi:http';
  const webSvc = svcChain(web, 'tcp');
  const webSep = sepChain(web, 'tcp', '10.244.1.5:8080');
  const dnsSvc = svcChain(dns, 'udp');
  const dnsSep = sepChain(dns, 'udp', '10.244.2.5:53');
  const multiSvc = svcChain(multi, 'tcp');
  const multiEps = ['10.244.0.6:8080', '10.244.1.5:8080', '10.244.2.5:8080'];
  const multiSeps = multiEps.map((ep) => sepChain(multi, 'tcp', ep));
  const nat = (args: string) => `iptables -t nat ${args}`;
  const cmds = [
    ...[
      'KUBE-SERVICES',
      'KUBE-NODEPORTS',
      'KUBE-POSTROUTING',
      'KUBE-MARK-MASQ',
      webSvc,
      webSep,
      dnsSvc,
      dnsSep,
      multiSvc,
      ...multiSeps,
    ].map((c) => nat(`-N ${c}`)),
    nat('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    nat('-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    nat('-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'),
    nat(`-A POSTROUTING -s 10.244.0.6/32 -o ${out} -j MASQUERADE`),
    nat('-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN'),
    nat('-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000'),
    nat(
      '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    ),
    nat('-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000'),
    nat(
      `-A KUBE-SERVICES -m comment --comment "${web} cluster IP" -m tcp -p tcp -d 10.96.0.10 --dport 80 -j ${webSvc}`,
    ),
    nat(
      `-A ${webSvc} -m comment --comment "${web} cluster IP" -m tcp -p tcp -d 10.96.0.10 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ`,
    ),
    nat(`-A ${webSvc} -m comment --comment "${web} -> 10.244.1.5:8080" -j ${webSep}`),
    nat(`-A ${webSep} -m comment --comment ${web} -s 10.244.1.5 -j KUBE-MARK-MASQ`),
    nat(`-A ${webSep} -m comment --comment ${web} -m tcp -p tcp -j DNAT --to-destination 10.244.1.5:8080`),
    nat(
      `-A KUBE-SERVICES -m comment --comment "${dns} cluster IP" -m udp -p udp -d 10.96.0.11 --dport 53 -j ${dnsSvc}`,
    ),
    nat(
      `-A ${dnsSvc} -m comment --comment "${dns} cluster IP" -m udp -p udp -d 10.96.0.11 --dport 53 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ`,
    ),
    nat(`-A ${dnsSvc} -m comment --comment "${dns} -> 10.244.2.5:53" -j ${dnsSep}`),
    nat(`-A ${dnsSep} -m comment --comment ${dns} -s 10.244.2.5 -j KUBE-MARK-MASQ`),
    nat(`-A ${dnsSep} -m comment --comment ${dns} -m udp -p udp -j DNAT --to-destination 10.244.2.5:53`),
    nat(
      `-A KUBE-SERVICES -m comment --comment "${multi} cluster IP" -m tcp -p tcp -d 10.96.0.12 --dport 80 -j ${multiSvc}`,
    ),
    nat(
      `-A ${multiSvc} -m comment --comment "${multi} cluster IP" -m tcp -p tcp -d 10.96.0.12 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ`,
    ),
    ...multiEps.map((ep, i) =>
      nat(
        `-A ${multiSvc} -m comment --comment "${multi} -> ${ep}"${i < 2 ? ` -m statistic --mode random --probability ${(1 / (3 - i)).toFixed(10)}` : ''} -j ${multiSeps[i]}`,
      ),
    ),
    ...multiEps.flatMap((ep, i) => [
      nat(`-A ${multiSeps[i]} -m comment --comment ${multi} -s ${ep.split(':')[0]} -j KUBE-MARK-MASQ`),
      nat(`-A ${multiSeps[i]} -m comment --comment ${multi} -m tcp -p tcp -j DNAT --to-destination ${ep}`),
    ]),
    nat(
      '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS',
    ),
    'iptables -t mangle -N KUBE-PROXY-CANARY',
    'iptables -t mangle -A PREROUTING -i cni0 -p udp -m udp --dport 53 -j MARK --set-mark 0x100/0xf00',
    'iptables -t raw -A PREROUTING -d 169.254.20.10/32 -p udp -m udp --dport 53 -j NOTRACK',
    'iptables -t raw -A OUTPUT -s 169.254.20.10/32 -p udp -m udp --sport 53 -j CT --notrack',
    // refused
    nat('-A POSTROUTING -p tcp -j DNAT --to-destination 10.244.1.5'),
    nat(`-A POSTROUTING -j ${webSvc}`),
    nat('-P POSTROUTING DROP'),
    nat('-A OUTPUT -j DROP'),
    'iptables -t raw -A PREROUTING -p tcp -j DNAT --to-destination 10.244.1.5',
    'iptables -t mangle -A INPUT -j REJECT',
    'iptables -A FORWARD -j CT --notrack',
    nat('-A OUTPUT -j DNAT --to-destination 10.244.1.5:80'),
    nat('-A OUTPUT -p tcp -j DNAT --to-destination 10.244.1.5:99999'),
    nat('-A OUTPUT -p tcp -j DNAT --to-destination 10.244.1.5:80-70'),
    nat('-A OUTPUT -p tcp -j DNAT --to-destination 10.244.1.300'),
    nat('-A OUTPUT -p tcp -j DNAT'),
    nat('-A OUTPUT -p tcp -j DNAT --to-destination 10.244.1.5 --random-fully'),
    nat('-A POSTROUTING -j MASQUERADE --to-ports 1024-2048'),
    nat('-A POSTROUTING -p udp -j MASQUERADE ! --random'),
    nat('-A OUTPUT -m statistic --mode random'),
    nat('-A OUTPUT -m statistic --mode random --probability 1.5'),
    nat('-A OUTPUT -m statistic --mode nth --every 3'),
    'iptables -t mangle -A OUTPUT -j MARK',
    'iptables -t mangle -A OUTPUT -j MARK --set-mark 1 --or-mark 2',
    'iptables -t mangle -A OUTPUT -j MARK --set-xmark foo',
    'iptables -t mangle -A OUTPUT -m addrtype',
    'iptables -t mangle -A OUTPUT -m addrtype --src-type LOCAL --limit-iface-in',
    'iptables -t mangle -A OUTPUT -p icmp --icmp-type e',
    'iptables -t mangle -A OUTPUT -p icmp --icmp-type 3/300',
    'iptables -t mangle -A OUTPUT -m icmp --icmp-type 8',
    'iptables -t mangle -A OUTPUT -p tcp -m multiport --dports 80,81 --sports 9',
    'iptables -t mangle -A OUTPUT -p tcp -m multiport --dports 90:80',
    'iptables -t mangle -A OUTPUT -m recent --set --reap',
    'iptables -t mangle -A OUTPUT -m recent --update --set',
    'iptables -t mangle -N DNAT',
    // accepted, then listed and removed again
    'iptables -t mangle -N PODWALK-NAT',
    'iptables -t mangle -A PODWALK-NAT -p icmp -m icmp --icmp-type echo-request -j MARK --set-mark 7',
    'iptables -t mangle -A PODWALK-NAT -p icmp --icmp-type port-unreachable -j MARK --and-mark 0xff',
    'iptables -t mangle -A PODWALK-NAT -p tcp -m multiport ! --sports 53,http -j MARK --set-xmark 0x1/0x0',
    'iptables -t mangle -A PODWALK-NAT -m addrtype ! --src-type local,broadcast --dst-type UNICAST --limit-iface-out',
    'iptables -t mangle -A PODWALK-NAT -m statistic --mode nth --every 3 --packet 1',
    'iptables -t mangle -A PODWALK-NAT -m conntrack --ctstate SNAT,DNAT --ctorigdst 10.96.0.10 --ctstatus ASSURED,SEEN_REPLY --ctdir REPLY',
    'iptables -t mangle -A PODWALK-NAT -m recent ! --update --seconds 60 --reap --name X --mask 255.255.0.0',
    'iptables -t mangle -A PODWALK-NAT -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-X',
    'iptables -t mangle -L PODWALK-NAT',
    'iptables -t mangle -L PODWALK-NAT -n -v --line-numbers',
    'iptables -t mangle -S PODWALK-NAT',
    'iptables -t mangle -F PODWALK-NAT',
    'iptables -t mangle -X PODWALK-NAT',
    nat(
      `-A OUTPUT -p tcp -d 10.96.0.99 --dport 80 -j DNAT --to-destination 10.244.1.5-10.244.1.9:8080-8090 --random --persistent`,
    ),
    nat(`-A POSTROUTING -o lo -p udp -j SNAT --to-source 192.168.1.10:1024-2000 --random-fully`),
    nat('-A POSTROUTING -o lo -p tcp -j MASQUERADE --to-ports 1024-65535 --random'),
    nat('-S OUTPUT'),
    nat('-L POSTROUTING -n --line-numbers'),
    nat('-D OUTPUT 2'),
    nat('-D POSTROUTING -o lo -p udp -j SNAT --to-source 192.168.1.10:1024-2000 --random-fully'),
    nat('-R POSTROUTING 3 -o lo -p tcp -j MASQUERADE --to-ports 2000'),
    nat('-L POSTROUTING 3 -v'),
    nat('-D POSTROUTING 3'),
    nat(`-X ${webSep}`),
    nat('-L -n -v'),
    nat('-L'),
    nat('-S'),
    nat(`-L ${multiSvc} -n --line-numbers`),
    'iptables -t mangle -L -n -v',
    'iptables -t raw -L -n -v',
    'iptables -t raw -L',
    'iptables -t raw -S',
    'iptables -t security -L -n',
    'iptables-save',
    'iptables-save -t nat',
  ].map((cmd) => ({ netns: 'node1', cmd }));
  const reads = (netns: string): Scenario =>
    [
      'conntrack -L',
      'conntrack -L -n',
      'conntrack -L -g',
      'conntrack -L -j',
      'conntrack -L --src-nat 192.168.1.10',
      'conntrack -L -p udp',
      'conntrack -L -o extended -p tcp',
    ].map((cmd) => ({ netns, cmd }));
  return [
    ...cmds,
    { walk: { from: 'pod-a', to: '10.96.0.10', proto: 'tcp', port: 80 } },
    { walk: { from: 'pod-a', to: '10.96.0.11', proto: 'udp', port: 53 } },
    { walk: { from: 'pod-b', to: 'pod-c', proto: 'tcp', port: 8080 } },
    { walk: { from: 'pod-b', to: 'pod-d', proto: 'udp', port: 53 } },
    { walk: { from: 'pod-b', to: 'pod-d', proto: 'icmp' } },
    ...reads('node1'),
    ...reads('node2'),
    ...reads('node3'),
    ...[nat('-L -n -v -x'), 'iptables -t mangle -L PREROUTING -n -v -x', 'iptables-save -c'].map((cmd) => ({
      netns: 'node1',
      cmd,
    })),
    { netns: 'node1', cmd: nat('-Z') },
    { netns: 'node1', cmd: nat('-L KUBE-SERVICES -n -v') },
  ];
}

function scenario(mode: CniMode): Scenario {
  return [
    { walk: { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 } },
    { walk: { from: 'pod-a', to: 'pod-c', proto: 'udp', port: 8080 } },
    { walk: { from: 'pod-a', to: 'pod-c', proto: 'icmp' } },
    { walk: { from: 'pod-a', to: 'pod-b', proto: 'tcp', port: 8080 } },
    ...reads('node1'),
    ...reads('node2'),
    ...['iptables -L -n -v', 'iptables-save', 'conntrack -L', 'sysctl net.ipv4.ip_forward'].map((cmd) => ({
      netns: 'pod-a',
      cmd,
    })),
    ...NODE1_CHANGES.map((cmd) => ({ netns: 'node1', cmd })),
    // a change on node2 the next flow runs into: the datagram is dropped in node2's FORWARD
    { netns: 'node2', cmd: 'iptables -I FORWARD 1 -d 10.244.1.5/32 -p udp --dport 8080 -j DROP' },
    { walk: { from: 'pod-a', to: 'pod-c', proto: 'udp', port: 8080, sport: 40000 } },
    { netns: 'node2', cmd: 'iptables -L FORWARD -n -v -x' },
    { netns: 'node2', cmd: 'iptables -L INPUT -n -v -x' },
    { netns: 'node2', cmd: 'conntrack -L -p udp' },
    { netns: 'node1', cmd: 'iptables -L FORWARD -n -v -x' },
    { netns: 'node1', cmd: 'conntrack -L -p udp' },
    { netns: 'node1', cmd: 'conntrack -L' },
    ...natPart(mode),
  ];
}

/** the same client podwalk's lab trace uses: connect from SPORT, send the request, read "ok", close */
/** each client prints the wall-clock second its first packet leaves (the interpreter's start-up, slow on a busy machine, is not part of the flow) */
const TCP_CLIENT = `
import socket, sys, time
dst, dport, sport, req = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), bytes.fromhex(sys.argv[4])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", sport)); s.settimeout(3)
print("T=%f" % time.time(), flush=True)
try:
    s.connect((dst, dport))
    s.sendall(req)
    got = b""
    while b"ok\\n" not in got:
        d = s.recv(65536)
        if not d:
            break
        got += d
except OSError as e:
    print("tcp:", e); sys.exit(1)
s.close()
print(len(got), "bytes")
`;

const UDP_CLIENT = `
import socket, sys, time
dst, dport, sport, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", sport)); s.settimeout(1)
print("T=%f" % time.time(), flush=True)
try:
    s.sendto(bytes((0x10 + i) & 0xff for i in range(n)), (dst, dport))
    d, a = s.recvfrom(65536)
    print(len(d), "bytes back")
except OSError as e:
    print("udp:", e); sys.exit(1)
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join('');

/** run the flow for real from the source pod, with the source port (or ICMP id) the model uses */
const PING = `
import subprocess, sys, time
print("T=%f" % time.time(), flush=True)
sys.exit(subprocess.call(sys.argv[1:]))
`;

/** run the flow for real; `at` is the wall-clock second (epoch) its first packet left */
function realFlow(
  state: LabState,
  model: Cluster,
  req: WalkRequest,
): { code: number; out: string; at: number } {
  const w = walk(model, req, { exchange: true });
  const f = w.request.flow;
  let r;
  if (f.proto === 'tcp')
    r = labExec(
      state,
      f.from,
      [
        'python3',
        '-c',
        TCP_CLIENT,
        f.dst,
        String(f.dport),
        String(f.sport),
        hex(httpRequest(f.dst, f.dport!)),
      ],
      undefined,
      10_000,
    );
  else if (f.proto === 'udp')
    r = labExec(
      state,
      f.from,
      ['python3', '-c', UDP_CLIENT, f.dst, String(f.dport), String(f.sport), '32'],
      undefined,
      10_000,
    );
  else {
    const id = model.world.derive('icmp-id', f.from) & 0xffff;
    r = labExec(
      state,
      f.from,
      ['python3', '-c', PING, 'ping', '-n', '-c', '1', '-W', '1', '-e', String(id), f.dst],
      undefined,
      10_000,
    );
  }
  const m = /^T=([\d.]+)\n/.exec(r.stdout);
  if (!m) throw new Error(`the client printed no start time: ${r.stdout}${r.stderr}`);
  return { code: r.code, out: (r.stdout.slice(m[0].length) + r.stderr).trim(), at: Number(m[1]) };
}

const slug = (argv: string[]) =>
  argv
    .join('-')
    .replace(/[^A-Za-z0-9._-]+/g, '')
    .replace(/-+/g, '-')
    .slice(0, 60);

async function recordMode(mode: CniMode, dir: URL): Promise<void> {
  // calico-bgp in the article's picture (cni0), as these goldens were recorded
  const spec = { ...seedCluster(), name: GOLDEN_CLUSTER, calicoLayout: 'bridge' as const };
  const model = buildCluster(spec, mode);
  const prefix = labPrefix(GOLDEN_CLUSTER);
  const lab = buildCluster(spec, mode);
  labDown(lab);
  const state = await labUp(lab);
  try {
    noDns(state);
    // the kernel's own start-up traffic (IGMP membership reports) is over after a few seconds
    await sleep(4000);
    for (const n of ['node1', 'node2', 'node3']) {
      labExec(state, n, ['conntrack', '-F']);
      labExec(state, n, ['iptables', '-Z']);
    }
    const out = new URL(`${mode}/`, dir);
    rmSync(out, { recursive: true, force: true });
    mkdirSync(out, { recursive: true });
    const version = (argv: string[]) => labExec(state, 'node1', argv).stdout.trim();
    const manifest: GoldenManifest = {
      mode,
      cluster: GOLDEN_CLUSTER,
      iptables: version(['iptables', '-V']),
      conntrack: version(['conntrack', '-V']),
      kernel: version(['uname', '-r']),
      steps: [],
    };
    const t0 = Date.now();
    const t = () => (Date.now() - t0) / 1000;
    for (const s of scenario(mode)) {
      if ('walk' in s) {
        const { at, ...client } = realFlow(state, model, s.walk);
        manifest.steps.push({ kind: 'walk', t: at - t0 / 1000, req: s.walk, client });
        // let the last packets of the exchange (FIN, ACK) land
        await sleep(300);
        continue;
      }
      const argv = shellSplit(s.cmd);
      const at = t();
      const r = labExec(state, s.netns, argv, undefined, 20_000);
      const step: GoldenStep = { kind: 'run', t: at, netns: s.netns, argv, code: r.code, stderr: r.stderr };
      if (r.stdout) {
        step.out = `${String(manifest.steps.length).padStart(3, '0')}-${s.netns}-${slug(argv)}.out`;
        writeFileSync(new URL(step.out, out), r.stdout);
      }
      manifest.steps.push(step);
    }
    writeFileSync(new URL('manifest.json', out), JSON.stringify(manifest, null, 2) + '\n');
    console.log(`${mode}: ${manifest.steps.length} steps recorded in ${out.pathname}`);
  } finally {
    labDown(lab);
    removeNoDns(prefix);
  }
}

const NETNS_ETC = '/etc/netns';

/**
 * `ip netns exec` bind-mounts /etc/netns/NS/* over /etc: give every lab namespace an
 * nsswitch.conf whose hosts come from /etc/hosts only. iptables -L (without -n) then names
 * addresses the way podwalk does, instead of asking the host's DNS resolver through the lab's
 * router, which added DNS conntrack entries and OUTPUT packets to the nodes and waited 5 s per
 * address.
 */
function noDns(state: LabState): void {
  const host = readFileSync('/etc/nsswitch.conf', 'utf8');
  const conf = host.replace(/^hosts:.*$/m, 'hosts:          files');
  for (const ns of Object.values(state.namespaces)) {
    mkdirSync(`${NETNS_ETC}/${ns}`, { recursive: true });
    writeFileSync(`${NETNS_ETC}/${ns}/nsswitch.conf`, conf);
  }
}

function removeNoDns(prefix: string): void {
  if (!existsSync(NETNS_ETC)) return;
  for (const d of readdirSync(NETNS_ETC))
    if (d.startsWith(prefix)) rmSync(`${NETNS_ETC}/${d}`, { recursive: true, force: true });
  if (!readdirSync(NETNS_ETC).length) rmSync(NETNS_ETC, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const why = labUnavailable();
  if (why) {
    console.error(`record-nf-goldens: ${why}`);
    process.exit(2);
  }
  const modes = (
    process.argv.slice(2).length ? process.argv.slice(2) : ['flannel-vxlan', 'flannel-host-gw', 'calico-bgp']
  ) as CniMode[];
  const dir = new URL('../test/golden/nf/', import.meta.url);
  const golden = buildCluster({ ...seedCluster(), name: GOLDEN_CLUSTER });
  const onSignal = () => {
    labDown(golden);
    removeNoDns(labPrefix(GOLDEN_CLUSTER));
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    for (const mode of modes) await recordMode(mode, dir);
  } finally {
    labDown(golden);
    removeNoDns(labPrefix(GOLDEN_CLUSTER));
    const left = existingNamespaces(golden);
    if (left.length) console.error(`record-nf-goldens: namespaces left behind: ${left.join(' ')}`);
  }
}

await main();
