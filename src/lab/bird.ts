/**
 * The BIRD configuration calico-node's confd writes for a node of the node-to-node mesh, for running
 * real BIRD 2 (Debian bird2) in lab namespaces: `lab up` in a Calico mode (labBirds, through the
 * plan), scripts/record-bgp-bird.ts and test/bgp-bird-session.test.ts use it.
 */

import { calicoNodeAs, protocolName, type Peering } from '../bgp/peering.ts';
import type { Cluster } from '../cni/build.ts';
import { bgpOriginates, CALICO_AS, clusterPeerings } from '../cni/modes.ts';
import { birdBlocks } from '../tools/birdc.ts';

/** a node of the mesh: its name, its address (router id and session source) and its IPAM block */
export interface BirdNode {
  name: string;
  ip: string;
  block: string;
}

export interface BirdOptions {
  /** the node's IPAM blocks, its static protocol's blackholes (default: [me.block]) */
  blocks?: readonly string[];
  /**
   * BIRD 2 run as Calico's BIRD 1.6 fork writes the kernel: no metric (\`metric 0\`), and the
   * direct protocol's routes not exported to it (1.6's \`device routes\` default, off)
   */
  fork?: boolean;
  /** peers (by address) whose session is configured `disabled` */
  disabled?: readonly string[];
  /**
   * the node's BGP protocols (src/bgp/peering.ts: the mesh or the BGPPeers); default: the
   * node-to-node mesh with every other node
   */
  peerings?: readonly Peering[];
  /** the node's routeReflectorClusterID: it is a route reflector (no mesh) */
  clusterId?: string;
  /** the node's AS, the template's `local as` (default 64512) */
  localAs?: number;
}

export { CALICO_AS };
const NO_GLOBAL = '# No global peers configured.';
const NO_NODE = '# No node-specific peers configured.';
export const CALICO_POOL = '10.244.0.0/16';

/**
 * Calico's bird.cfg + bird_ipam.cfg + bird_aggr.cfg for `me`, in BIRD 2 syntax. What the translation
 * changes: the BGP and kernel channel options (import/export, gateway recursive, add paths) move into
 * an `ipv4 { }` channel block; `protocol static` and `protocol direct` name their channel; the
 * `krt_tunnel = ""` line of calico_kernel_programming is left out (krt_tunnel exists only in Calico's
 * BIRD 1.6 fork; with no IPIP the template sets it to "", i.e. no tunnel). Everything else, the
 * timers included, is the template's output for: AS 64512, mesh on, one pool 10.244.0.0/16 without
 * IPIP/VXLAN, node network 192.168.1.0/24, log level info (debug { states }), no communities.
 * Where BIRD 2 then differs from the fork, as the recording shows (test/fixtures/bgp/manifest.json):
 * it installs routes with `metric 32` (its kernel protocol's default), and exports the direct
 * protocol's connected subnet to the kernel as a second, `proto bird`, route.
 */
export function calicoBirdConfig(me: BirdNode, nodes: readonly BirdNode[], opts: BirdOptions = {}): string {
  const blocks = opts.blocks ?? [me.block];
  const disabled = new Set(opts.disabled ?? []);
  const peerings =
    opts.peerings ??
    nodes
      .filter((n) => n.ip !== me.ip)
      .map((n): Peering => ({
        proto: protocolName('node-to-node mesh', n.ip),
        type: 'node-to-node mesh',
        peerNode: n.name,
        peerIp: n.ip,
        // confd compares the addresses as strings: the higher one waits for the lower one to connect
        passive: n.ip > me.ip,
        localAs: CALICO_AS,
        peerAs: CALICO_AS,
        multihop: false,
      }));
  const protocol = (p: Peering, comment: string) => {
    const passive = p.passive ? '\n  passive on; # Mesh is unidirectional, peer will connect to us.' : '';
    const rr = p.rrClusterId ? `\n  rr client;\n  rr cluster id ${p.rrClusterId};` : '';
    const off = disabled.has(p.peerIp) ? '\n  disabled;' : '';
    // v3.27 writes `ttl security off; multihop;` for a BGPPeer, and no multihop for the mesh
    // (nor in its template): an eBGP mesh session is BIRD's default for eBGP, direct, which
    // `direct` restores over the recorded template's `multihop` (iBGP is multihop either way)
    const hops = p.multihop
      ? '\n  ttl security off;\n  multihop;'
      : p.peerAs !== p.localAs
        ? '\n  direct;           # v3.27: no multihop for the mesh; eBGP defaults to direct'
        : '';
    return `# For peer ${comment}
protocol bgp ${p.proto} from bgp_template {${hops}
  neighbor ${p.peerIp} as ${p.peerAs};
  source address ${me.ip};  # The local address we use for the TCP connection${passive}${rr}${off}
}`;
  };
  const section = (type: Peering['type'], comment: (p: Peering) => string, none: string) => {
    const list = peerings.filter((p) => p.type === type);
    return list.length ? list.map((p) => protocol(p, comment(p))).join('\n\n') : none;
  };
  const byIp = new Map(nodes.map((n) => [n.ip, n.name]));
  const mesh = opts.clusterId
    ? `# This node (${me.name}) is configured as a route reflector with cluster ID ${opts.clusterId};
# ignore node-to-node mesh setting.`
    : section(
        'node-to-node mesh',
        (p) => `/host/${byIp.get(p.peerIp) ?? p.peerNode}/ip_addr_v4`,
        '# Node-to-node mesh disabled',
      );
  const global = section('global', (p) => `/global/peer_v4/${p.peerIp}`, NO_GLOBAL);
  const nodeSpecific = section('node specific', (p) => `/host/${me.name}/peer_v4/${p.peerIp}`, NO_NODE);
  const statics = blocks.map((b) => `\n   route ${b} blackhole;`).join('');
  const aggr = blocks
    .map(
      (b) => `
      # Block ${b} is confirmed
      if ( net = ${b} ) then { accept; }
      if ( net ~ ${b} ) then { reject; }`,
    )
    .join('');
  // BIRD 1.6's kernel protocol (Calico's fork) sets no metric and leaves device routes out
  // (krt_import_control, `device routes` off); BIRD 2 has neither default
  const forkMetric = opts.fork ? '\n  metric 0;          # the fork sets no metric' : '';
  const forkDevice = opts.fork
    ? '\n  if ( source = RTS_DEVICE ) then reject; # the fork: device routes off'
    : '';
  return `# bird_aggr.cfg
protocol static {
  ipv4;
   # IP blocks for this host.${statics}
}

# Aggregation of routes on this host; export the block, nothing beneath it.
function calico_aggr ()
{${aggr}
}

# bird_ipam.cfg
function reject_disabled_pools ()
{
}

function apply_communities ()
{
}

filter calico_export_to_bgp_peers {
  reject_disabled_pools();
  apply_communities();
  calico_aggr();
  if ( net ~ ${CALICO_POOL} ) then {
    accept;
  }
  reject;
}

filter calico_kernel_programming {${forkDevice}
  if ( net ~ ${CALICO_POOL} ) then {
    accept;
  }
  accept;
}

# bird.cfg
router id ${me.ip};

# Configure synchronization between routing tables and kernel.
protocol kernel {
  learn;             # Learn all alien routes from the kernel
  persist;           # Don't remove routes on bird shutdown
  scan time 2;       # Scan kernel routing table every 2 seconds${forkMetric}
  ipv4 {
    import all;
    export filter calico_kernel_programming; # Default is export none
  };
  graceful restart;
  merge paths on;    # Allow export multipath routes (ECMP)
}

# Watch interface up/down events.
protocol device {
  debug { states };
  scan time 2;    # Scan interfaces every 2 seconds
}

protocol direct {
  debug { states };
  ipv4;
  interface -"cali*", -"kube-ipvs*", "*";
}

# Template for all BGP clients
template bgp bgp_template {
  debug { states };
  description "Connection to BGP peer";
  local as ${opts.localAs ?? CALICO_AS};
  multihop;
  ipv4 {
    gateway recursive; # This should be the default, but just in case.
    import all;        # Import all routes, since we don't know what the upstream
                       # topology is and therefore have to trust the ToR/RR.
    export filter calico_export_to_bgp_peers;  # Only want to export routes for workloads.
    add paths on;
  };
  graceful restart;  # See comment in kernel section about graceful restart.
  connect delay time 2;
  connect retry time 5;
  error wait time 5,30;
}

# ------------- Node-to-node mesh -------------
${mesh}
${
  // the template's two other sections, written here only when a node has such peers (the
  // recorded mesh configurations, test/fixtures/bgp, predate them)
  global === NO_GLOBAL && nodeSpecific === NO_NODE
    ? ''
    : `
# ------------- Global peers -------------
${global}

# ------------- Node-specific peers -------------
${nodeSpecific}
`
}`;
}

/** a real BIRD of a lab: the node it runs on, its configuration, the sessions it has */
export interface LabBird {
  /** the node (model netns name) */
  node: string;
  config: string;
  /** its mesh sessions: BIRD's protocol name, the peer node, whether the configuration disables it */
  sessions: {
    proto: string;
    peer: string;
    peerIp: string;
    disabled: boolean;
    /** a direct eBGP session whose peer is off the node's subnets: BIRD waits for it, never up */
    waits?: boolean;
  }[];
  /** the prefixes each peer announces to it (what its table holds once the mesh has converged) */
  expect: { proto: string; prefix: string }[];
}

/**
 * The BIRD of every node of a Calico mode's cluster, configured as Calico's templates configure it
 * (calicoBirdConfig, as Calico's fork writes the kernel): the mesh of all nodes, and as IPAM blocks
 * what the model says each node originates (bgpOriginates, through birdBlocks: a prefix that is
 * already a connected subnet of the node, the cni0 layout's pod CIDR, is no IPAM block and gets no
 * blackhole; BIRD's direct protocol carries it, its interface pattern takes cni0, and the mesh
 * exports it as the pool's). A session the cluster file marks down is configured disabled
 * on both sides (nothing on the wire, no routes). Empty for other modes.
 */
export function labBirds(c: Cluster): LabBird[] {
  if (!c.mesh) return [];
  const originates = new Map(c.nodes.map((n) => [n.name, bgpOriginates(c, n)]));
  const all: BirdNode[] = c.nodes.map((n) => ({
    name: n.name,
    ip: n.addr,
    block: originates.get(n.name)![0],
  }));
  const down = new Set(
    c.spec.bgp
      .filter((s) => s.state === 'down')
      .flatMap((s) => [`${s.nodes[0]}\0${s.nodes[1]}`, `${s.nodes[1]}\0${s.nodes[0]}`]),
  );
  const peerings = clusterPeerings(c);
  const mesh = c.mesh;
  return c.nodes.map((n, i) => {
    const blocks = birdBlocks(c, n);
    const sessions = peerings.get(n.name)!.map((p) => {
      const sp = c.bgp?.session(n.name, p.peerIp);
      return {
        proto: p.proto,
        peer: p.peerNode,
        peerIp: p.peerIp,
        disabled: down.has(`${n.name}\0${p.peerNode}`),
        ...(sp?.peer.config.direct && sp.peer.state === 'Idle' && !sp.connects ? { waits: true } : {}),
      };
    });
    // what BIRD's table holds once it converged: the model's learned routes, the first of each
    // network (the mesh: each peer's own prefixes; with reflectors also what they reflect)
    const expect = new Map<string, string>();
    for (const r of mesh.learned(n.name)) if (!expect.has(r.prefix)) expect.set(r.prefix, r.proto);
    return {
      node: n.name,
      config: calicoBirdConfig(all[i], all, {
        blocks,
        fork: true,
        disabled: sessions.filter((s) => s.disabled).map((s) => s.peerIp),
        peerings: peerings.get(n.name)!,
        ...(n.routeReflectorClusterID ? { clusterId: n.routeReflectorClusterID } : {}),
        localAs: calicoNodeAs(n, c.spec.bgpConfiguration),
      }),
      sessions,
      expect: [...expect].map(([prefix, proto]) => ({ proto, prefix })),
    };
  });
}
