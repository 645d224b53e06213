/**
 * The cluster-wide checks that src/diagnose/checks.ts made linear, as they were before (main at
 * 3b590ee): every node pair's route looked up, every node's routes listed with the neighbour and
 * FDB entry behind each, every pair of nodes' MTUs compared, a scan of every BGP session for each
 * session down. test/checks-diff.test.ts runs them against runChecks on random clusters with
 * faults planted; the findings must be the same, in the same order, to the byte.
 */
import { MODE_INFO } from '../src/cni/modes.ts';
import { nodeBlocks } from '../src/cni/ipam.ts';
import type { Cluster, ResolvedNode, ResolvedPod } from '../src/cni/build.ts';
import { formatRoute, type Route } from '../src/kernel/fib.ts';
import type { Link, Netns } from '../src/kernel/objects.ts';
import { ip4ToInt, parseCidr } from '../src/wire/addr.ts';
import { BGP_PORT } from '../src/wire/index.ts';
import { walk } from '../src/trace/walk.ts';
import { dropText } from '../src/render/step.ts';
import type { CheckName, Finding } from '../src/diagnose/checks.ts';

/** the checks this reference computes (the others did not change) */
export const CHANGED = [
  'pod-mtu',
  'tunnel-mtu',
  'vxlan-route-without-fdb',
  'missing-pod-route',
  'pod-route-wrong-node',
  'router-knows-pods',
  'bgp-session',
  'duplicate-mac',
  'duplicate-ip',
] as const satisfies readonly CheckName[];

/**
 * A node's pod networks as the other nodes must route them, each with an address inside to probe:
 * its pod CIDR (cni0's address), or in calico-node's layout each IPAM block it holds (its first).
 */
function podNetsOf(c: Cluster, n: ResolvedNode): { cidr: string; probe: number }[] {
  if (c.layout === 'bridge') return [{ cidr: n.podCIDR, probe: ip4ToInt(n.gateway) }];
  return nodeBlocks(c, n.name).map((cidr) => ({ cidr, probe: parseCidr(cidr).addr }));
}

/** the MTU of a node's underlay link: its eth0 and the segment's side of it */
function underlayMtu(c: Cluster, n: ResolvedNode): number {
  const eth0 = c.world.netns.get(n.name)?.link('eth0');
  if (!eth0) return c.spec.mtu;
  const peer =
    eth0.type === 'veth' && eth0.peer ? c.world.netns.get(eth0.peer.netns)?.link(eth0.peer.name) : undefined;
  return Math.min(eth0.mtu, peer?.mtu ?? eth0.mtu);
}

/** encapsulation overhead between two nodes in this mode */
function overheadBetween(c: Cluster, a: ResolvedNode, b: ResolvedNode): number {
  if (c.mode === 'calico-ipip-crosssubnet' || c.mode === 'calico-vxlan-crosssubnet')
    return a.subnet === b.subnet ? 0 : MODE_INFO[c.mode].overhead;
  return MODE_INFO[c.mode].overhead;
}

export function referenceChecks(c: Cluster): Map<CheckName, Finding[]> {
  const results = new Map<CheckName, Finding[]>(CHANGED.map((k) => [k, []]));
  const add = (f: Finding) => results.get(f.check)!.push(f);
  const ns = (name: string): Netns | undefined => c.world.netns.get(name);
  const info = MODE_INFO[c.mode];

  // pod MTU against every path its packets can take: per node, its largest pod MTU against the
  // tightest path to another node (nodes × nodes, not pods × nodes)
  const under = new Map(c.nodes.map((n) => [n.name, underlayMtu(c, n)]));
  const podsOf = new Map<string, ResolvedPod[]>();
  for (const p of c.pods) (podsOf.get(p.node) ?? podsOf.set(p.node, []).get(p.node)!).push(p);
  for (const src of c.nodes) {
    let pod: { name: string; mtu: number } | undefined;
    for (const p of podsOf.get(src.name) ?? []) {
      const mtu = ns(p.name)?.link('eth0')?.mtu;
      if (mtu !== undefined && (!pod || mtu > pod.mtu)) pod = { name: p.name, mtu };
    }
    if (!pod) continue;
    let worst: { limit: number; to: string; over: number; under: number } | undefined;
    for (const dst of c.nodes) {
      if (dst === src) continue;
      const u = Math.min(under.get(src.name)!, under.get(dst.name)!);
      const over = overheadBetween(c, src, dst);
      if (pod.mtu > u - over && (!worst || u - over < worst.limit))
        worst = { limit: u - over, to: dst.name, over, under: u };
    }
    if (worst)
      add({
        check: 'pod-mtu',
        severity: 'problem',
        netns: src.name,
        message: `${pod.name} (and the other pods of ${src.name}) have MTU ${pod.mtu}, but ${src.name} → ${worst.to} carries at most ${worst.limit}: underlay MTU ${worst.under} − ${worst.over} bytes of ${info.encapsulation} overhead`,
        fix: `set the CNI's MTU to ${worst.limit} (flannel: the network config's MTU / --iface-mtu; Calico: veth_mtu in calico-config) and restart the pods`,
      });
  }

  // the tunnel device must fit in the underlay with its own overhead
  if (info.device)
    for (const n of c.nodes) {
      const tun = ns(n.name)?.link(info.device);
      if (!tun) continue;
      const limit = underlayMtu(c, n) - info.overhead;
      if (tun.mtu > limit)
        add({
          check: 'tunnel-mtu',
          severity: 'problem',
          netns: n.name,
          message: `${info.device} on ${n.name} has MTU ${tun.mtu} > underlay ${underlayMtu(c, n)} − ${info.overhead}: encapsulated packets do not fit eth0`,
          fix: `ip link set ${info.device} mtu ${limit}`,
        });
    }

  // VXLAN: every onlink route through a vxlan device needs a neighbour and an FDB entry behind it
  // (flanneld writes them in flannel-vxlan, felix, as calico-node, in calico-vxlan)
  const vxlanDaemon = info.routeDaemon === 'felix' ? 'calico-node' : 'flanneld';
  for (const n of c.nodes) {
    const node = ns(n.name);
    if (!node) continue;
    for (const r of node.fib.list()) {
      const dev = r.dev ? node.link(r.dev) : undefined;
      if (!dev || dev.type !== 'vxlan' || !r.via) continue;
      // read without making the tables keep an object of each entry (every node's every route)
      const neigh = node.neigh.peek(r.via, dev.name);
      if (neigh?.lladdr && dev.fdb.peek(neigh.lladdr)) continue;
      const route = formatRoute(r).trim();
      if (!neigh?.lladdr) {
        add({
          check: 'vxlan-route-without-fdb',
          severity: 'problem',
          netns: n.name,
          message: `\`${route}\` has no neighbour entry for ${r.via} on ${dev.name}: the inner frame has no destination MAC`,
          fix: `restart ${vxlanDaemon} on ${n.name} (it writes \`${r.via} lladdr <VTEP MAC> PERMANENT\`)`,
        });
        continue;
      }
      add({
        check: 'vxlan-route-without-fdb',
        severity: 'problem',
        netns: n.name,
        message: `\`${route}\` resolves ${r.via} to ${neigh.lladdr}, but ${dev.name}'s FDB has no entry for ${neigh.lladdr}: no VTEP to send to`,
        fix: `restart ${vxlanDaemon} on ${n.name} (it writes \`${neigh.lladdr} dst <node IP> self permanent\`)`,
      });
    }
  }

  // every node routes every other node's pod CIDR by a route of its own, not its default route
  const byGateway = new Map<string, ResolvedNode>();
  // a node's VTEP address: flannel.1's (its pod CIDR's first), or calico-vxlan's tunnel address from IPAM
  const tunnelOf = (n: ResolvedNode) => c.ipam?.tunnel.get(n.name) ?? n.podNet;
  for (const n of c.nodes) byGateway.set(n.addr, n).set(n.podNet, n).set(tunnelOf(n), n);
  const gateways = new Set(c.spec.subnets.map((x) => x.gateway));
  for (const a of c.nodes) {
    const node = ns(a.name);
    if (!node) continue;
    const usable = (x: Route) => x.type !== 'unicast' || !!(x.dev && node.link(x.dev)?.up);
    for (const b of c.nodes) {
      if (a === b) continue;
      for (const { cidr, probe } of podNetsOf(c, b)) {
        // peek: the table keeps no object of each route read (every node pair)
        const r = node.fib.peek(probe, usable);
        // a gateway that is another node (its node IP, or its VTEP address) sends the pods' traffic the long way round
        const viaNode = r?.via ? byGateway.get(r.via) : undefined;
        const other = viaNode && viaNode !== a && viaNode !== b ? viaNode : undefined;
        if (r && other)
          add({
            check: 'pod-route-wrong-node',
            severity: 'problem',
            netns: a.name,
            message: `${a.name} routes ${b.name}'s pods (${cidr}) via ${other.name}: \`${formatRoute(r).trim()}\`; the answers come back another way (asymmetric path)`,
            fix: `delete the stale route on ${a.name} so ${info.routeDaemon}'s route to ${b.name} applies`,
          });
        if (
          r?.via &&
          r.len > 0 &&
          !other &&
          r.via !== b.addr &&
          r.via !== b.podNet &&
          r.via !== tunnelOf(b) &&
          !gateways.has(r.via)
        )
          add({
            check: 'pod-route-wrong-node',
            severity: 'problem',
            netns: a.name,
            message: `${a.name} routes ${b.name}'s pods (${cidr}) via ${r.via}, which is not ${b.name}'s address (${b.addr}): \`${formatRoute(r).trim()}\``,
            fix: `a stale route from when ${b.name} had another address: delete it so ${info.routeDaemon} can add the right one`,
          });
        if (!r || r.len === 0 || r.type !== 'unicast')
          add({
            check: 'missing-pod-route',
            severity: 'problem',
            netns: a.name,
            message: `${a.name} has no route to ${b.name}'s pods (${cidr})${r ? `: it would use \`${formatRoute(r).trim()}\`` : ''}`,
            fix:
              info.routeDaemon === 'BIRD'
                ? `check BIRD on ${a.name} and ${b.name} (birdc show protocols; calicoctl node status)`
                : info.routeDaemon === 'felix'
                  ? `check calico-node (felix) on ${a.name}: it adds a route for each node's IPAM block from the datastore, via that node's VTEP (its VXLANTunnelEndpoint)`
                  : `check flanneld on ${a.name}: it adds a route for each node's lease`,
          });
      }
    }
  }

  // calico-bgp: unencapsulated pod traffic between subnets crosses the router: it must route the pod CIDRs
  if (info.overhead === 0 && c.mesh) {
    const router = ns('router');
    const subnets = new Set(c.nodes.map((n) => n.subnet));
    if (router && subnets.size > 1)
      for (const n of c.nodes)
        for (const { cidr, probe } of podNetsOf(c, n)) {
          const r = router.fib.lookup(probe);
          if (!r || r.len === 0)
            add({
              check: 'router-knows-pods',
              severity: 'problem',
              netns: 'router',
              message: `the router between the subnets has no route for ${n.name}'s pods (${cidr}), but ${c.mode} sends pod IPs across it unencapsulated`,
              fix: c.mesh
                ? 'peer the routers with BGP (Calico BGPPeer), or use IPIP/VXLAN CrossSubnet'
                : 'add the pod routes to the router, or use an encapsulating backend',
            });
        }
  }

  for (const s of c.mesh?.sessions ?? [])
    if (s.state !== 'Established') {
      const why = bgpCause(c, s.a, s.b);
      // a session with a route reflector: the side whose protocol has `rr client` reflects
      const side = (x: string, y: string) => c.mesh!.peersOf(x).find((p) => p.peer.node === y)?.peering;
      const [rr, client] = side(s.a, s.b)?.rrClusterId
        ? [s.a, s.b]
        : side(s.b, s.a)?.rrClusterId
          ? [s.b, s.a]
          : [];
      if (rr && client) {
        const p = side(client, rr);
        add({
          check: 'bgp-session',
          severity: 'problem',
          netns: client,
          message: `BGP session ${client} ↔ ${rr} (${p?.proto ?? 'not configured'} on ${client}; ${rr} is its route reflector, cluster ID ${side(rr, client)!.rrClusterId}) is ${s.state}${why ? ` (${why})` : ''}: ${client} learns no route through ${rr}, and ${rr} reflects none of ${client}'s`,
          fix: `check TCP 179 between ${client} and ${rr} and BIRD on ${rr} (calicoctl node status on ${client})`,
        });
        continue;
      }
      add({
        check: 'bgp-session',
        severity: 'problem',
        netns: s.a,
        message: `BGP session ${s.a} ↔ ${s.b} is ${s.state}${why ? ` (${why})` : ''}: neither node has the other's pod routes`,
        fix: `check TCP 179 between ${s.a} and ${s.b} and calico-node on both (calicoctl node status)`,
      });
    }

  // every device's MAC and address listed, the duplicates picked out
  for (const [domain, byMac] of macDomains(c))
    for (const [mac, where] of byMac)
      if (where.length > 1)
        add({
          check: 'duplicate-mac',
          severity: 'problem',
          message: `MAC ${mac} is used by ${where.join(', ')}, in one L2 domain (${domain})`,
          fix: 'give each device its own MAC (a cloned VM image, or MACs written into a config by hand)',
        });
  for (const [ip, where] of addressOwners(c))
    if (where.length > 1)
      add({
        check: 'duplicate-ip',
        severity: 'problem',
        message: `${ip} is assigned to ${where.join(', ')}`,
        fix: 'remove the duplicate (a stale IPAM allocation, or an address added by hand)',
      });
  return results;
}

/**
 * Why a mesh session that runs over the datapath is not Established: what its BIRDs last saw (an
 * error in a NOTIFICATION, Bad Peer AS in an OPEN), else what the connection to the passive side's
 * port 179 meets: a probe SYN from the side that connects is walked, and the drop that stops it or
 * its SYN-ACK (a netfilter rule, no route, a link down) is the cause. A session the cluster file
 * marks down has none to find (undefined).
 */
function bgpCause(c: Cluster, a: string, b: string): string | undefined {
  const drv = c.bgp;
  if (!drv) return undefined;
  const side = (x: string, y: string) => drv.all().find((s) => s.node === x && s.peerNode === y);
  const sa = side(a, b);
  const sb = side(b, a);
  if (!sa || !sb || sa.disabled || sb.disabled) return undefined;
  const err = [sa, sb].find((s) => s.peer.lastNotification)?.peer.lastNotification;
  // RFC 4271 6.2: OPEN error, Bad Peer AS
  if (err && err.code === 2 && err.subcode === 2)
    return 'AS mismatch: an OPEN named another AS than configured';
  const from = sa.peer.config.passive ? sb : sa;
  const to = from === sa ? sb : sa;
  const w = walk(c, { from: from.node, to: to.peer.config.localAddress, proto: 'tcp', port: BGP_PORT });
  for (const t of [w.request, w.reply])
    if (t?.disposition.kind === 'dropped')
      return `TCP ${BGP_PORT} from ${from.node} to ${to.node}: ${t === w.reply ? 'the SYN-ACK ' : ''}${dropText(t.disposition.drop)} on ${t.disposition.netns}`;
  if (err) return `the last error: code ${err.code}/${err.subcode} ${err.sent ? 'sent' : 'received'}`;
  return undefined;
}

/**
 * The L2 domains of the cluster, each with its members' MACs: a bridge with its ports and the
 * devices behind them (a veth's peer), and the VXLAN overlay of one VNI. Keyed by domain, then MAC,
 * with the devices (`NETNS DEV`) that carry the MAC there.
 */
function macDomains(c: Cluster): Map<string, Map<string, string[]>> {
  const macs = new Map<string, Map<string, string[]>>();
  const member = (domain: string, netns: string, l: Link) => {
    const d = macs.get(domain) ?? macs.set(domain, new Map()).get(domain)!;
    d.set(l.mac, [...(d.get(l.mac) ?? []), `${netns} ${l.name}`]);
  };
  for (const n of c.world.netns.values())
    for (const l of n.links.values()) {
      if (l.type === 'bridge') {
        const domain = `bridge ${n.name}/${l.name}`;
        member(domain, n.name, l);
        for (const port of n.links.values()) {
          if (port.master !== l.name) continue;
          member(domain, n.name, port);
          const peer = port.type === 'veth' && port.peer ? c.world.netns.get(port.peer.netns) : undefined;
          const far = peer?.link(port.type === 'veth' ? port.peer!.name : '');
          if (peer && far) member(domain, peer.name, far);
        }
      } else if (l.type === 'vxlan') member(`vxlan vni ${l.vni}`, n.name, l);
    }
  return macs;
}

/** Every IPv4 address on the devices of nodes and pods (loopback left out), with the devices (`NETNS DEV`) holding it */
function addressOwners(c: Cluster): Map<string, string[]> {
  const ips = new Map<string, string[]>();
  for (const n of c.world.netns.values()) {
    if (n.role !== 'node' && n.role !== 'pod') continue;
    for (const { dev, addr } of n.addresses()) {
      if (addr.ip.startsWith('127.')) continue;
      ips.set(addr.ip, [...(ips.get(addr.ip) ?? []), `${n.name} ${dev.name}`]);
    }
  }
  return ips;
}
