/**
 * The six CNI modes, each as the daemon that programs the kernel does it:
 *  - flannel-vxlan: flanneld creates flannel.1 (VXLAN, nolearning) with the node's /32 from its
 *    subnet, and for every other node's lease adds: route `<cidr> via <cidr.0> dev flannel.1 onlink`,
 *    a permanent neighbour `<cidr.0> lladdr <their VTEP MAC>` and an FDB entry `<MAC> dst <node IP>`.
 *  - flannel-host-gw: flanneld adds `<cidr> via <node IP> dev eth0` for nodes on its own subnet;
 *    for others the kernel refuses the route (gateway not directly reachable) and flanneld logs it.
 *  - calico-bgp: BIRD installs `<cidr> via <node IP> dev eth0 proto bird` for each prefix learned
 *    over an Established mesh session (recursively via the subnet gateway when not direct), through
 *    its kernel protocol (src/bgp/krt.ts).
 *  - calico-ipip: tunl0 (ipip, MTU 1480) and `<cidr> via <node IP> dev tunl0 proto bird onlink`.
 *  - calico-ipip-crosssubnet: direct routes inside the subnet, tunl0 only across subnets.
 *  - calico-vxlan: Calico v3.27 with `calico_backend: vxlan` (the calico-vxlan.yaml manifest's
 *    backend: calico-node starts no BIRD and no confd, rc.local) and the pool's vxlanMode Always.
 *    felix programs everything from the datastore (IPAM blocks, node VTEPs), not from BGP
 *    (felix/dataplane/linux/vxlan_mgr.go, routetable/route_table.go, calc/l3_route_resolver.go):
 *    `vxlan.calico` (VNI 4096, port 4789, nolearning, udpcsum, over eth0 from the node's address, MTU
 *    host − 50 as felix detects it) with the node's VXLAN tunnel address from IPAM as a /32 and
 *    the MAC felix derives from the node name (vxlan_resolver.go vtepMACForHost: "f" and the
 *    first 5 bytes of sha1(name)); per remote VTEP a permanent neighbour `<its tunnel IP> lladdr
 *    <its MAC>` and an FDB entry `<its MAC> dst <node IP> self permanent` (ensureL2Dataplane);
 *    per remote block `<block> via <its tunnel IP> dev vxlan.calico onlink` and per address
 *    borrowed by a remote node the same /32 (a non-affine allocation: routesFromBlock), with
 *    felix's DeviceRouteProtocol, boot by default (config_params.go `int;3`: `ip route` prints no
 *    proto); per local block `blackhole <block> proto 80` (defaultVXLANProto). In the `bridge`
 *    layout the blocks are the nodes' pod CIDRs and the tunnel addresses their first addresses.
 *  - calico-vxlan-crosssubnet: the pool's vxlanMode CrossSubnet: felix's route manager programs a
 *    remote block whose node shares this node's subnet (the route update's SameSubnet) as a
 *    no-encap route `<block> via <node IP> dev eth0 proto 80` (calculateNonEncapRouteProtocol:
 *    VXLANDefaultProto while DeviceRouteProtocol is boot), and only the others via vxlan.calico;
 *    the VTEPs' neighbour and FDB entries are there for every node either way.
 * In the calico-* modes' `calico` layout (calico-node v3.27's own), what a node originates is its
 * IPAM blocks (src/cni/ipam.ts nodeBlocks), each also a `blackhole <block> proto bird` of BIRD's
 * static protocol, and whatever more of the pool its kernel table holds (a borrowed address's
 * /32 dev cali…), through calico_aggr; in the `bridge` layout, its pod CIDR.
 */
import type { CniMode } from '../cluster/spec.ts';
import { Mesh } from '../bgp/mesh.ts';
import {
  calicoExport,
  kernelProtocol,
  kernelRoutes,
  krtSync,
  nextHopRoute,
  locRib,
  PREF_BGP,
  PREF_STATIC,
  type KernelDest,
  type RibRoute,
} from '../bgp/krt.ts';
import { nodeBlocks } from './ipam.ts';
import { BgpDriver } from '../bgp/session.ts';
import { CALICO_DEFAULT_AS, calicoPeerings, type Peering } from '../bgp/peering.ts';
import { Reflector } from '../bgp/reflect.ts';
import type { PeerConfig } from '../bgp/fsm.ts';
import {
  addressAdd,
  fdbAdd,
  fdbFlushDynamic,
  neighFlush,
  leasesInstall,
  linkAdd,
  linkSetUp,
  neighAdd,
  NetlinkError,
  NLM_ADD,
  routeInstall,
  type FdbRequest,
  type LeaseRequest,
  type NeighRequest,
  type RouteRequest,
} from '../kernel/netlink.ts';
import { derivedMac } from '../kernel/world.ts';
import { inPrefix, ip4ToInt } from '../wire/addr.ts';
import { sha1Hex } from '../wire/sha1.ts';
import type { BuildOptions, Cluster, ResolvedNode } from './build.ts';

export const VXLAN_OVERHEAD = 50; // outer Ethernet 14 + IP 20 + UDP 8 + VXLAN 8 (the inner Ethernet header replaces the outer one on the pod's budget)
export const IPIP_OVERHEAD = 20;
/** flannel's VXLAN: VNI 1, the IANA port as in the article (flannel's own default is the kernel's 8472) */
export const FLANNEL_VNI = 1;
export const FLANNEL_VXLAN_PORT = 4789;
/** felix's VXLAN device (Calico v3.27 config_params.go: VXLANVNI 4096, VXLANPort 4789) */
export const CALICO_VXLAN_DEVICE = 'vxlan.calico';
export const CALICO_VXLAN_VNI = 4096;
export const CALICO_VXLAN_PORT = 4789;

/**
 * felix's VTEP MAC for a node whose Node resource sets none (calc/vxlan_resolver.go
 * vtepMACForHost): the byte "f" (0x66) and the first five bytes of sha1(node name)
 */
export function calicoVtepMac(node: string): string {
  const h = sha1Hex(node, 10);
  return ['66', ...[0, 2, 4, 6, 8].map((i) => h.slice(i, i + 2))].join(':');
}

export interface ModeInfo {
  encapsulation: 'VXLAN' | 'IPinIP' | 'none' | 'IPinIP across subnets' | 'VXLAN across subnets';
  overhead: number;
  /** what the underlay network must know or allow */
  underlay: string;
  /** the tunnel device, if any */
  device?: string;
  controlPlane: string;
  /** the daemon that programs the routes to other nodes' pods */
  routeDaemon: 'flanneld' | 'BIRD' | 'felix';
  /** the CNI enforces Kubernetes NetworkPolicy (flannel does not) */
  networkPolicy: boolean;
}

export const MODE_INFO: Record<CniMode, ModeInfo> = {
  'flannel-vxlan': {
    encapsulation: 'VXLAN',
    overhead: VXLAN_OVERHEAD,
    underlay: 'node IPs only; UDP 4789 between nodes',
    device: 'flannel.1',
    controlPlane: 'flanneld (lease per node)',
    routeDaemon: 'flanneld',
    networkPolicy: false,
  },
  'flannel-host-gw': {
    encapsulation: 'none',
    overhead: 0,
    underlay: 'all nodes on one L2 segment; pod IPs cross it unencapsulated',
    controlPlane: 'flanneld (lease per node)',
    routeDaemon: 'flanneld',
    networkPolicy: false,
  },
  'calico-bgp': {
    encapsulation: 'none',
    overhead: 0,
    underlay: 'pod CIDRs routable: same L2 segment, or routers peering BGP',
    controlPlane: 'BIRD node-to-node mesh',
    routeDaemon: 'BIRD',
    networkPolicy: true,
  },
  'calico-ipip': {
    encapsulation: 'IPinIP',
    overhead: IPIP_OVERHEAD,
    underlay: 'node IPs only; IP protocol 4 between nodes',
    device: 'tunl0',
    controlPlane: 'BIRD node-to-node mesh',
    routeDaemon: 'BIRD',
    networkPolicy: true,
  },
  'calico-ipip-crosssubnet': {
    encapsulation: 'IPinIP across subnets',
    overhead: IPIP_OVERHEAD,
    underlay: 'pod IPs within a subnet; IP protocol 4 between subnets',
    device: 'tunl0',
    controlPlane: 'BIRD node-to-node mesh',
    routeDaemon: 'BIRD',
    networkPolicy: true,
  },
  'calico-vxlan': {
    encapsulation: 'VXLAN',
    overhead: VXLAN_OVERHEAD,
    underlay: 'node IPs only; UDP 4789 between nodes',
    device: CALICO_VXLAN_DEVICE,
    controlPlane: 'felix from IPAM blocks and VTEPs (no BIRD)',
    routeDaemon: 'felix',
    networkPolicy: true,
  },
  'calico-vxlan-crosssubnet': {
    encapsulation: 'VXLAN across subnets',
    overhead: VXLAN_OVERHEAD,
    underlay: 'pod IPs within a subnet; UDP 4789 between subnets',
    device: CALICO_VXLAN_DEVICE,
    controlPlane: 'felix from IPAM blocks and VTEPs (no BIRD)',
    routeDaemon: 'felix',
    networkPolicy: true,
  },
};

/**
 * The prefixes a node's BIRD originates in a Calico mode (its static protocol's blocks, which the
 * mesh announces to every peer): its IPAM blocks in Calico's layout, its pod CIDR in the bridge
 * layout. The one source of them: the mesh below and
 * the lab's real BIRD configuration (src/lab/bird.ts) both call this.
 */
export function bgpOriginates(c: Cluster, node: ResolvedNode): string[] {
  return c.layout === 'calico' ? nodeBlocks(c, node.name) : [node.podCIDR];
}

/** Each node's BGP protocols as confd configures its BIRD (peering.ts): the mesh, or the BGPPeers */
export function clusterPeerings(c: Cluster): Map<string, Peering[]> {
  return calicoPeerings(
    c.nodes.map((n) => ({
      name: n.name,
      addr: n.addr,
      ...(n.labels ? { labels: n.labels } : {}),
      ...(n.routeReflectorClusterID ? { routeReflectorClusterID: n.routeReflectorClusterID } : {}),
      ...(n.asNumber !== undefined ? { asNumber: n.asNumber } : {}),
    })),
    c.spec.bgpConfiguration,
    c.spec.bgpPeers,
  );
}

/** Calico's AS of the node-to-node mesh (BGPConfiguration asNumber default) */
export const CALICO_AS = CALICO_DEFAULT_AS;
/** BIRD's default hold time (Calico's template sets none): 240 s, keepalives every 80 s */
export const BIRD_HOLD_TIME = 240;
/** Calico's template as the lab's BIRD has it (src/lab/bird.ts): `connect retry time 5`, `connect delay time 2`, `error wait time 5,30` */
export const CALICO_CONNECT_RETRY = 5;
export const CALICO_CONNECT_DELAY = 2;
export const CALICO_ERROR_WAIT: [number, number] = [5, 30];
/**
 * how long the build lets the sessions run at most before the cluster counts as up (µs): long
 * enough for a 1,000-node cluster on two route reflectors (about a minute of simulated time at one
 * UPDATE a segment, BENCHMARKS.md), and less than BIRD's hold time, so that no session the build
 * left unfinished has been taken down by its hold timer meanwhile
 */
const CONVERGE_LIMIT = 120_000_000;

/**
 * A mesh session as Calico's template configures it on the node `me` toward `peer` (bird.cfg:
 * `passive on` toward a higher address, compared as strings by confd; add paths on; graceful
 * restart 120; the timers as lab/bird.ts writes them); the ASes and `multihop` as peering.ts
 * says (an eBGP session without multihop is direct).
 */
export function meshPeerConfig(
  me: string,
  peer: string,
  originates: string[],
  peering?: Pick<Peering, 'passive' | 'rrClusterId' | 'localAs' | 'peerAs' | 'multihop'>,
): PeerConfig {
  const localAs = peering?.localAs ?? CALICO_AS;
  const peerAs = peering?.peerAs ?? CALICO_AS;
  return {
    localAs,
    localId: me,
    localAddress: me,
    peerAs,
    peerAddress: peer,
    holdTime: BIRD_HOLD_TIME,
    connectRetryTime: CALICO_CONNECT_RETRY,
    passive: peering ? peering.passive : peer > me,
    addPath: true,
    gracefulRestartTime: 120,
    originates,
    connectDelayTime: CALICO_CONNECT_DELAY,
    errorWaitTime: CALICO_ERROR_WAIT,
    ...(peering?.rrClusterId !== undefined ? { rrClusterId: peering.rrClusterId } : {}),
    ...(localAs !== peerAs && !peering?.multihop ? { direct: true } : {}),
  };
}

/**
 * Once the mesh has converged, what BGP's own traffic left is cleared as `lab up` clears it in the
 * lab (host.ts quiesce): non-permanent neighbours, the bridges' learned FDB entries, conntrack; and
 * the counters are counted from here, as the lab counts nstat from its baseline: the MIB, the
 * links' statistics and the netfilter counters (the real tools' goldens were recorded without BGP
 * traffic), and the captures. The sessions, their sockets and timers stay.
 */
export function quiesce(c: Cluster): void {
  const w = c.world;
  for (const ns of w.netns.values()) {
    neighFlush(ns);
    for (const l of ns.links.values()) {
      if (l.type === 'bridge') fdbFlushDynamic(ns, l.name);
      const st = l.stats;
      st.rxPackets = st.rxBytes = st.rxDropped = st.txPackets = st.txBytes = st.txDropped = 0;
    }
    for (const t of ns.netfilter.tables.values())
      for (const ch of t.values()) {
        ch.pkts = ch.bytes = 0;
        for (const r of ch.rules) r.pkts = r.bytes = 0;
      }
    ns.conntrack.flush();
    ns.own('mib').clear();
    ns.arpStats.resFailed = ns.arpStats.unresDiscards = 0;
  }
  w.captures.length = 0;
}

/**
 * Program every node as the mode's daemon would. A route, neighbour or FDB entry the kernel
 * refuses is skipped, as flanneld and BIRD log the refusal and carry on (doctor's checks find
 * what is missing).
 */
export function programMode(c: Cluster, opts: BuildOptions = {}): void {
  const w = c.world;
  const mac = (...parts: string[]) => derivedMac([c.spec.name, ...parts].join('/'));
  const tryAdd = (fn: () => void) => {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof NetlinkError)) throw e;
    }
  };
  const route = (node: string, r: RouteRequest) => tryAdd(() => routeInstall(w.ns(node), r));

  switch (c.mode) {
    case 'flannel-vxlan': {
      for (const n of c.nodes) {
        const ns = w.ns(n.name);
        linkAdd(w, ns, {
          type: 'vxlan',
          name: 'flannel.1',
          mac: n.vtepMac ?? mac(n.name, 'flannel.1'),
          mtu: c.spec.mtu - VXLAN_OVERHEAD,
          vni: FLANNEL_VNI,
          local: n.addr,
          dev: 'eth0',
          dstport: FLANNEL_VXLAN_PORT,
          learning: false,
          // flanneld creates the device over netlink without UDP checksums: `noudpcsum` in ip -d link
          udpcsum: false,
        });
        addressAdd(ns, 'flannel.1', n.podNet, 32);
        linkSetUp(w, ns, 'flannel.1', true);
      }
      // every node's lease on every other node, as flanneld programs it (one batch: the rows
      // are made once and shared by the nodes' tables, netlink.ts leasesInstall)
      const leases: LeaseRequest[] = c.nodes.map((o) => {
        const vtep = w.ns(o.name).link('flannel.1')!.mac;
        return {
          routes: [{ prefix: o.podCIDR, via: o.podNet, dev: 'flannel.1', onlink: true, nl: NLM_ADD }],
          neigh: { ip: o.podNet, dev: 'flannel.1', lladdr: vtep, state: 'PERMANENT', nl: NLM_ADD },
          fdb: {
            mac: vtep,
            dev: 'flannel.1',
            self: true,
            master: false,
            state: { permanent: true, noarp: false, reachable: false },
            dst: o.addr,
            nl: NLM_ADD,
          },
        };
      });
      leasesInstall(
        w,
        c.nodes.map((n) => w.ns(n.name)),
        leases,
        c.nodes.map((_, i) => i),
      );
      break;
    }
    case 'flannel-host-gw': {
      for (const n of c.nodes)
        for (const o of c.nodes) {
          if (o === n) continue;
          route(n.name, { prefix: o.podCIDR, via: o.addr, dev: 'eth0', nl: NLM_ADD });
        }
      break;
    }
    case 'calico-bgp':
    case 'calico-ipip':
    case 'calico-ipip-crosssubnet': {
      // each node's BIRD before any session: its static protocol (confd's bird_aggr.cfg.template:
      // `route <block> blackhole;` per block the node holds) and what its kernel protocol learns
      const own = (n: (typeof c.nodes)[number]): RibRoute[] =>
        c.layout === 'calico'
          ? [
              ...nodeBlocks(c, n.name).map((b): RibRoute => ({
                prefix: b,
                proto: 'static1',
                preference: PREF_STATIC,
                dest: { type: 'blackhole' },
              })),
              ...kernelRoutes(w.ns(n.name)),
            ]
          : [];
      const originates = new Map(
        c.nodes.map((n) => [
          n.name,
          c.layout === 'calico'
            ? calicoExport(locRib(own(n)), c.clusterCidr, nodeBlocks(c, n.name))
            : [n.podCIDR],
        ]),
      );
      const down = c.spec.bgp
        .filter((s) => s.state === 'down')
        .map((s) => ({ a: s.nodes[0], b: s.nodes[1] }));
      const peerings = clusterPeerings(c);
      const mesh = new Mesh(
        c.nodes.map((n) => ({ node: n.name, ip: n.addr, len: n.len, originates: originates.get(n.name)! })),
        down,
        peerings,
      );
      c.mesh = mesh;
      const ipip = c.mode !== 'calico-bgp';
      if (ipip)
        for (const n of c.nodes) {
          const ns = w.ns(n.name);
          linkAdd(w, ns, { type: 'ipip', name: 'tunl0', mtu: c.spec.mtu - IPIP_OVERHEAD });
          // calico-node's tunnel address: IPAM's first allocation on the node (bridge layout: the CIDR's first)
          addressAdd(ns, 'tunl0', c.ipam?.tunnel.get(n.name) ?? n.podNet, 32);
          linkSetUp(w, ns, 'tunl0', true);
        }
      // each node's BIRD: the sessions' routes in its table, written to the kernel by its kernel
      // protocol (Calico's BIRD 1.6 fork: no metric); the tunnel is calico_kernel_programming's krt_tunnel
      const krts = new Map(c.nodes.map((n) => [n.name, kernelProtocol(0)]));
      const byName = new Map(c.nodes.map((n) => [n.name, n]));
      const sync = (name: string) => {
        const n = byName.get(name)!;
        const sub = c.spec.subnets.find((s) => s.name === n.subnet);
        const rib: RibRoute[] = own(n);
        for (const r of mesh.learned(n.name)) {
          const encap = c.mode === 'calico-ipip' || (c.mode === 'calico-ipip-crosssubnet' && !r.direct);
          const dest: KernelDest | undefined = encap
            ? { type: 'unicast', via: r.nextHop, dev: 'tunl0', onlink: true }
            : !nextHopRoute(w.ns(n.name), r.nextHop)
              ? // nothing resolves the next hop (the node's eth0 down): BIRD keeps the route, unreachable
                { type: 'unreachable' }
              : r.direct
                ? { type: 'unicast', via: r.nextHop, dev: 'eth0' }
                : // gateway recursive: the BGP next hop is reached via the subnet's router (none: BIRD has no route)
                  sub?.gateway
                  ? { type: 'unicast', via: sub.gateway, dev: 'eth0' }
                  : undefined;
          if (dest) rib.push({ prefix: r.prefix, proto: r.proto, preference: PREF_BGP, dest });
        }
        krtSync(w.ns(n.name), krts.get(n.name)!, locRib(rib));
      };
      // before any session is up BIRD's table has only its own routes: the mesh reads what the
      // sessions received (nothing yet), not the routes of sessions it assumes Established (a
      // session that never comes up, such as a direct eBGP one toward a peer off the node's
      // subnets or a BGPPeer the peer does not mirror, must never have put routes in the kernel)
      mesh.driven = true;
      for (const n of c.nodes) sync(n.name);
      // BIRD starts on every node and its sessions run over the datapath until the mesh converged
      const isDown = new Set(down.flatMap((d) => [`${d.a}\0${d.b}`, `${d.b}\0${d.a}`]));
      const driver = new BgpDriver(
        c.sockets,
        c.nodes.map((n) => ({
          node: n.name,
          peers: peerings.get(n.name)!.map((p) => ({
            peerNode: p.peerNode,
            disabled: isDown.has(`${n.name}\0${p.peerNode}`),
            config: meshPeerConfig(n.addr, p.peerIp, originates.get(n.name)!, p),
          })),
        })),
        sync,
        mesh,
        new Reflector(
          c.clusterCidr,
          new Map(c.nodes.map((n) => [n.name, c.layout === 'calico' ? nodeBlocks(c, n.name) : [n.podCIDR]])),
          // the gateway `gateway recursive` resolves a next hop to: itself on the node's subnet,
          // else the subnet's router
          (name, nextHop) => {
            const n = byName.get(name)!;
            if (inPrefix(ip4ToInt(n.addr), ip4ToInt(nextHop), n.len)) return nextHop;
            return c.spec.subnets.find((s) => s.name === n.subnet)?.gateway;
          },
        ),
      );
      c.bgp = driver;
      driver.start();
      // nobody traces the build's BGP traffic, and quiesce clears its captures: walked quietly
      driver.converge(CONVERGE_LIMIT, { quiet: opts.bgpWalk !== 'recorded' });
      opts.converged?.(c);
      quiesce(c);
      break;
    }
    case 'calico-vxlan':
    case 'calico-vxlan-crosssubnet': {
      // calico-node -allocate-tunnel-addrs gave each node its tunnel address (IPAM); felix's VXLAN
      // manager creates the device (configureVXLANDevice: link, MTU, the one /32 address, up)
      const tunnel = (n: ResolvedNode) => c.ipam?.tunnel.get(n.name) ?? n.podNet;
      for (const n of c.nodes) {
        const ns = w.ns(n.name);
        linkAdd(w, ns, {
          type: 'vxlan',
          name: CALICO_VXLAN_DEVICE,
          mac: calicoVtepMac(n.name),
          mtu: (n.mtu ?? c.spec.mtu) - VXLAN_OVERHEAD,
          vni: CALICO_VXLAN_VNI,
          local: n.addr,
          dev: 'eth0',
          dstport: CALICO_VXLAN_PORT,
          // vishvananda/netlink (addVxlanAttrs) sends IFLA_VXLAN_LEARNING 0 and no
          // IFLA_VXLAN_UDP_CSUM: the kernel then computes UDP checksums (`udpcsum` in ip -d link,
          // as this kernel shows for a device added without the attribute)
          learning: false,
          udpcsum: true,
        });
        addressAdd(ns, CALICO_VXLAN_DEVICE, tunnel(n), 32);
        linkSetUp(w, ns, CALICO_VXLAN_DEVICE, true);
        // the blackhole route table (InterfaceNone, defaultVXLANProto) for the node's own blocks
        if (c.layout === 'calico')
          for (const b of nodeBlocks(c, n.name))
            route(n.name, { prefix: b, type: 'blackhole', proto: '80', nl: NLM_ADD });
      }
      // the L3 route resolver's REMOTE_WORKLOAD routes: each remote node's blocks, and each
      // address a remote node borrowed from a block (its own or a third node's)
      const dests = new Map<string, string[]>(c.nodes.map((o) => [o.name, nodeBlocks(c, o.name)]));
      for (const p of c.pods) if (c.ipam?.borrowed.has(p.name)) dests.get(p.node)?.push(`${p.ip}/32`);
      const vteps = c.nodes.map((o) => ({ node: o, ip: tunnel(o), mac: calicoVtepMac(o.name) }));
      const neigh = (v: (typeof vteps)[number]): NeighRequest => ({
        ip: v.ip,
        dev: CALICO_VXLAN_DEVICE,
        lladdr: v.mac,
        state: 'PERMANENT',
        nl: NLM_ADD,
      });
      const fdb = (v: (typeof vteps)[number]): FdbRequest => ({
        mac: v.mac,
        dev: CALICO_VXLAN_DEVICE,
        self: true,
        master: false,
        state: { permanent: true, noarp: false, reachable: false },
        dst: v.node.addr,
        nl: NLM_ADD,
      });
      if (c.mode === 'calico-vxlan') {
        // every remote node's VTEP and blocks, the same on every node but its own: one batch, the
        // rows made once and shared by the nodes' tables (netlink.ts leasesInstall)
        leasesInstall(
          w,
          c.nodes.map((n) => w.ns(n.name)),
          vteps.map((v) => ({
            routes: dests
              .get(v.node.name)!
              .map((d) => ({ prefix: d, via: v.ip, dev: CALICO_VXLAN_DEVICE, onlink: true, nl: NLM_ADD })),
            neigh: neigh(v),
            fdb: fdb(v),
          })),
          c.nodes.map((_, i) => i),
        );
        break;
      }
      for (const n of c.nodes) {
        const ns = w.ns(n.name);
        for (const v of vteps) {
          if (v.node === n) continue;
          tryAdd(() => neighAdd(ns, w, neigh(v)));
          tryAdd(() => fdbAdd(ns, w, fdb(v)));
          // CrossSubnet: a node on this node's subnet gets its blocks without encapsulation
          const direct = v.node.subnet === n.subnet;
          for (const d of dests.get(v.node.name)!)
            route(
              n.name,
              direct
                ? { prefix: d, via: v.node.addr, dev: 'eth0', proto: '80', nl: NLM_ADD }
                : { prefix: d, via: v.ip, dev: CALICO_VXLAN_DEVICE, onlink: true, nl: NLM_ADD },
            );
        }
      }
      break;
    }
  }
}
