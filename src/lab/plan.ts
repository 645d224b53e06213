/**
 * The lab plan: the commands that rebuild a model's kernel state in real network namespaces.
 * It reads only the model (one source of truth): namespaces, links, addresses, routes, permanent
 * neighbours, FDB entries, per-namespace sysctls and the filter table. No CNI logic here.
 *
 * Every command runs inside a lab namespace (`ip -n NS`, `ip netns exec NS`), so nothing touches
 * the host's root namespace, and no lab link leads out of the lab.
 */
import type { Cluster } from '../cni/build.ts';
import { formatRoute } from '../kernel/fib.ts';
import type { Link, Netns } from '../kernel/objects.ts';
import { iptablesSave } from '../tools/iptables-save.ts';
import { ipsetSaveText } from '../tools/ipset.ts';
import { labBirds, type LabBird } from './bird.ts';

export class LabPlanError extends Error {}

export interface PlanStep {
  /** the namespace (model name) it applies to, for errors */
  netns: string;
  argv: string[];
  /** standard input, e.g. for iptables-restore */
  input?: string;
}

export interface LabPlan {
  prefix: string;
  /** model netns name → lab netns name */
  names: Map<string, string>;
  steps: PlanStep[];
  /** listeners to start in pods: [model netns, proto, port] */
  listeners: { netns: string; proto: 'tcp' | 'udp'; port: number }[];
  /**
   * real BIRDs to start on the nodes of a Calico mode, after the steps: they install the `proto bird`
   * routes, which the steps leave out
   */
  birds: LabBird[];
  /** every bridge of the lab: (model netns, name) */
  bridges: { netns: string; name: string }[];
}

/** sysctls that are per network namespace: the only ones the lab writes (a global one would change the host) */
export const PER_NETNS_SYSCTLS = [
  /^net\.ipv4\.ip_forward$/,
  // conf.all.forwarding is ip_forward under another name: written through ip_forward only
  /^net\.ipv4\.conf\.[^.]+\.rp_filter$/,
  /^net\.ipv4\.conf\.[^.]+\.proxy_arp$/,
  /^net\.ipv4\.neigh\.[^.]+\.proxy_delay$/,
  /^net\.ipv4\.conf\.(?!all\.)[^.]+\.forwarding$/,
  // a device's own (Calico's CNI plugin sets it on cali*); conf.all's is kube-proxy's, not the lab's
  /^net\.ipv4\.conf\.(?!all\.|default\.)[^.]+\.route_localnet$/,
  /^net\.ipv4\.tcp_rmem$/,
  /^net\.ipv4\.ip_local_port_range$/,
  /^net\.ipv4\.ip_default_ttl$/,
  /^net\.bridge\.bridge-nf-call-iptables$/,
  /^net\.netfilter\.nf_conntrack_tcp_loose$/,
];

/** where the labs keep their state files and directories */
export const STATE_DIR = '/run/podwalk';

/** a lab's BIRD directory (configurations, control sockets, pid files): removed with the lab */
export function birdPath(prefix: string): string {
  return `${STATE_DIR}/${prefix.replace(/-$/, '')}.bird`;
}

export function labPrefix(clusterName: string): string {
  const clean = clusterName.toLowerCase().replace(/[^a-z0-9-]/g, '-');
  return `pw-${clean}-`;
}

function linkAdd(
  ns: Netns,
  l: Link,
  names: Map<string, string>,
  peerOf: (netns: string, name: string) => Link | undefined,
): string[] | undefined {
  const head = [
    'ip',
    '-n',
    names.get(ns.name)!,
    'link',
    'add',
    l.name,
    'address',
    l.mac,
    'mtu',
    String(l.mtu),
    'type',
  ];
  switch (l.type) {
    case 'loopback':
      return undefined;
    case 'bridge':
      return [...head, 'bridge'];
    case 'vxlan':
      return [
        ...head,
        ...['vxlan', 'id', String(l.vni), 'local', l.local, 'dev', l.dev, 'dstport', String(l.dstport)],
        l.learning ? 'learning' : 'nolearning',
        l.udpcsum ? 'udpcsum' : 'noudpcsum',
      ];
    case 'veth': {
      if (!l.peer) throw new LabPlanError(`${ns.name}: veth ${l.name} has no peer`);
      // one command per pair, issued from the side whose (netns, name) sorts first
      if (`${ns.name}/${l.name}` > `${l.peer.netns}/${l.peer.name}`) return undefined;
      const peer = peerOf(l.peer.netns, l.peer.name);
      if (!peer)
        throw new LabPlanError(
          `${ns.name}: the peer of ${l.name} (${l.peer.netns}/${l.peer.name}) is missing`,
        );
      const peerNs = names.get(l.peer.netns)!;
      return [
        ...head,
        'veth',
        'peer',
        'name',
        l.peer.name,
        'netns',
        peerNs,
        'address',
        peer.mac,
        'mtu',
        String(peer.mtu),
      ];
    }
    case 'ipip':
      throw new LabPlanError(
        `${ns.name}: ${l.name} is an ipip device, and this kernel has no ipip device type`,
      );
  }
}

/** ip route add arguments for a model route, in the words `ip route` prints it */
function routeArgs(text: string): string[] {
  return text.split(' ').filter((w) => w !== 'linkdown');
}

/** model netns → lab netns: exactly the namespaces a lab of this cluster has (pw-<cluster>-<netns>) */
export function labNames(c: Cluster): Map<string, string> {
  const prefix = labPrefix(c.spec.name);
  // an imported pod is named NAMESPACE/NAME: a netns name is a file name in /run/netns
  return new Map([...c.world.netns.keys()].map((n) => [n, prefix + n.replace(/\//g, '_')]));
}

export function planLab(c: Cluster): LabPlan {
  const w = c.world;
  const prefix = labPrefix(c.spec.name);
  const names = labNames(c);
  const peerOf = (netns: string, name: string) => w.netns.get(netns)?.link(name);
  const steps: PlanStep[] = [];
  const add = (ns: Netns, argv: string[], input?: string) => steps.push({ netns: ns.name, argv, input });
  const all = [...w.netns.values()];

  for (const ns of all) add(ns, ['ip', 'netns', 'add', names.get(ns.name)!]);
  for (const ns of all) {
    // the model has no IPv6: keep the kernel from sending router solicitations, MLD and ND into
    // captures; nor IGMP: a bridge with multicast snooping joins 224.0.0.106 (all-snoopers) when
    // it comes up with an address, and its unsolicited reports (the first one and a resend up to
    // 1 s later) reach every port that is up by then, so whether a pod counts one would depend on
    // how fast the lab is built
    for (const kv of [
      'net.ipv6.conf.all.disable_ipv6=1',
      'net.ipv6.conf.default.disable_ipv6=1',
      'net.ipv4.igmp_link_local_mcast_reports=0',
    ])
      add(ns, ['ip', 'netns', 'exec', names.get(ns.name)!, 'sysctl', '-q', '-w', kv]);
    // bridges and veths first, then devices that name a lower device (vxlan dev eth0)
    const links = [...ns.links.values()].sort(
      (a, b) => (a.type === 'vxlan' ? 1 : 0) - (b.type === 'vxlan' ? 1 : 0),
    );
    for (const l of links) {
      const argv = linkAdd(ns, l, names, peerOf);
      if (argv) add(ns, argv);
    }
  }
  for (const ns of all) {
    const n = names.get(ns.name)!;
    for (const l of ns.links.values()) {
      if (l.master) add(ns, ['ip', '-n', n, 'link', 'set', l.name, 'master', l.master]);
      if (l.hairpin) add(ns, ['bridge', '-n', n, 'link', 'set', 'dev', l.name, 'hairpin', 'on']);
    }
    for (const [k, v] of ns.sysctl) {
      if (!PER_NETNS_SYSCTLS.some((re) => re.test(k))) continue;
      if (k.startsWith('net.bridge.') && ![...ns.links.values()].some((l) => l.type === 'bridge')) continue;
      add(ns, ['ip', 'netns', 'exec', n, 'sysctl', '-q', '-w', `${k}=${v}`]);
    }
    // lo with the namespace's other addresses: one `ip -n NS -batch` with them (a pod's only
    // other steps are the sysctls, which the lab writes without a process)
    add(ns, ['ip', '-n', n, 'link', 'set', 'lo', 'up']);
    for (const l of ns.links.values())
      for (const a of l.addrs)
        if (l.type !== 'loopback') add(ns, ['ip', '-n', n, 'addr', 'add', `${a.ip}/${a.len}`, 'dev', l.name]);
    for (const l of ns.links.values())
      if (l.up && l.type !== 'loopback') add(ns, ['ip', '-n', n, 'link', 'set', l.name, 'up']);
  }
  const birds = labBirds(c);
  const birdNodes = new Set(birds.map((b) => b.node));
  for (const ns of all) {
    const n = names.get(ns.name)!;
    // routes through a gateway after the ones without: `default via 169.254.1.1 dev eth0` needs
    // `169.254.1.1 dev eth0 scope link` first (Calico's pods), or the kernel refuses the gateway
    const routes = ns.fib.list();
    for (const r of [...routes.filter((x) => !x.via), ...routes.filter((x) => x.via)]) {
      if (r.proto === 'kernel') continue;
      // BIRD's own: the real BIRD installs them
      if (r.proto === 'bird' && birdNodes.has(ns.name)) continue;
      add(ns, ['ip', '-n', n, 'route', 'add', ...routeArgs(formatRoute(r))]);
    }
    for (const e of ns.neigh.list())
      if (e.state === 'PERMANENT')
        add(ns, ['ip', '-n', n, 'neigh', 'add', e.ip, 'lladdr', e.lladdr!, 'dev', e.dev, 'nud', 'permanent']);
    for (const l of ns.links.values()) {
      if (l.type === 'vxlan')
        for (const f of l.fdb.list())
          add(ns, [
            'bridge',
            '-n',
            n,
            'fdb',
            'append',
            f.mac,
            'dev',
            l.name,
            'dst',
            f.dst,
            'self',
            'permanent',
          ]);
      if (l.type === 'bridge')
        for (const f of l.fdb.list())
          if (f.state === 'static')
            add(ns, ['bridge', '-n', n, 'fdb', 'add', f.mac, 'dev', f.port, 'master', 'static']);
    }
    // the IP sets first (a rule naming a missing set does not load), in ipset save's form: the
    // model's initval given to the kernel, so both hash alike
    if (ns.netfilter.ipsets.size)
      add(ns, ['ip', 'netns', 'exec', n, 'ipset', 'restore'], ipsetSaveText(ns.netfilter));
    const save = iptablesSave(ns.netfilter);
    if (save) add(ns, ['ip', 'netns', 'exec', n, 'iptables-restore'], save);
  }
  // a process's own listener (BIRD's tcp/179) is the real process's in the lab, not podwalk's listener
  const listeners = all.flatMap((ns) =>
    ns.sockets.filter((s) => !s.app).map((s) => ({ netns: ns.name, proto: s.proto, port: s.port })),
  );
  const bridges = all.flatMap((ns) =>
    [...ns.links.values()].filter((l) => l.type === 'bridge').map((l) => ({ netns: ns.name, name: l.name })),
  );
  return { prefix, names, steps, listeners, birds, bridges };
}
