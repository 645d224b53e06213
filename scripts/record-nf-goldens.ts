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

function scenario(): Scenario {
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
  ];
}

/** the same client podwalk's lab trace uses: connect from SPORT, send the request, read "ok", close */
const TCP_CLIENT = `
import socket, sys
dst, dport, sport, req = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), bytes.fromhex(sys.argv[4])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", sport)); s.settimeout(3)
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
import socket, sys
dst, dport, sport, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", sport)); s.settimeout(1)
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
function realFlow(state: LabState, model: Cluster, req: WalkRequest): { code: number; out: string } {
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
      ['ping', '-n', '-c', '1', '-W', '1', '-e', String(id), f.dst],
      undefined,
      10_000,
    );
  }
  return { code: r.code, out: (r.stdout + r.stderr).trim() };
}

const slug = (argv: string[]) =>
  argv
    .join('-')
    .replace(/[^A-Za-z0-9._-]+/g, '')
    .replace(/-+/g, '-')
    .slice(0, 60);

async function recordMode(mode: CniMode, dir: URL): Promise<void> {
  const spec = { ...seedCluster(), name: GOLDEN_CLUSTER };
  const model = buildCluster(spec, mode);
  const prefix = labPrefix(GOLDEN_CLUSTER);
  labDown(prefix);
  const state = labUp(buildCluster(spec, mode));
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
    for (const s of scenario()) {
      if ('walk' in s) {
        const at = t();
        const client = realFlow(state, model, s.walk);
        manifest.steps.push({ kind: 'walk', t: at, req: s.walk, client });
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
    labDown(prefix);
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
  const onSignal = () => {
    labDown(labPrefix(GOLDEN_CLUSTER));
    removeNoDns(labPrefix(GOLDEN_CLUSTER));
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    for (const mode of modes) await recordMode(mode, dir);
  } finally {
    labDown(labPrefix(GOLDEN_CLUSTER));
    removeNoDns(labPrefix(GOLDEN_CLUSTER));
    const left = existingNamespaces(labPrefix(GOLDEN_CLUSTER));
    if (left.length) console.error(`record-nf-goldens: namespaces left behind: ${left.join(' ')}`);
  }
}

await main();
