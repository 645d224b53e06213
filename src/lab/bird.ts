/**
 * The BIRD configuration calico-node's confd writes for a node of the node-to-node mesh, for running
 * real BIRD 2 (Debian bird2) in lab namespaces: `lab up` in a Calico mode (labBirds, through the
 * plan), scripts/record-bgp-bird.ts and test/bgp-bird-session.test.ts use it.
 */

import { meshProtocolName } from '../bgp/krt.ts';
import type { Cluster } from '../cni/build.ts';
import { bgpOriginates, CALICO_AS } from '../cni/modes.ts';
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
  /** peers (by address) whose session is configured \`disabled\` */
  disabled?: readonly string[];
}

export { CALICO_AS };
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
  const peers = nodes.filter((n) => n.ip !== me.ip);
  const mesh = peers
    .map((p) => {
      // confd compares the addresses as strings: the higher one waits for the lower one to connect
      const passive =
        p.ip > me.ip ? '\n  passive on; # Mesh is unidirectional, peer will connect to us.' : '';
      const off = disabled.has(p.ip) ? '\n  disabled;' : '';
      return `# For peer /host/${p.name}/ip_addr_v4
protocol bgp Mesh_${p.ip.split('.').join('_')} from bgp_template {
  neighbor ${p.ip} as ${CALICO_AS};
  source address ${me.ip};  # The local address we use for the TCP connection${passive}${off}
}`;
    })
    .join('\n\n');
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
  local as ${CALICO_AS};
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
`;
}

/** a real BIRD of a lab: the node it runs on, its configuration, the sessions it has */
export interface LabBird {
  /** the node (model netns name) */
  node: string;
  config: string;
  /** its mesh sessions: BIRD's protocol name, the peer node, whether the configuration disables it */
  sessions: { proto: string; peer: string; peerIp: string; disabled: boolean }[];
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
  return c.nodes.map((n, i) => {
    const blocks = birdBlocks(c, n);
    const peers = c.nodes.filter((o) => o !== n);
    const sessions = peers.map((o) => ({
      proto: meshProtocolName(o.addr),
      peer: o.name,
      peerIp: o.addr,
      disabled: down.has(`${n.name}\0${o.name}`),
    }));
    return {
      node: n.name,
      config: calicoBirdConfig(all[i], all, {
        blocks,
        fork: true,
        disabled: sessions.filter((s) => s.disabled).map((s) => s.peerIp),
      }),
      sessions,
      expect: sessions
        .filter((s) => !s.disabled)
        .flatMap((s) => originates.get(s.peer)!.map((prefix) => ({ proto: s.proto, prefix }))),
    };
  });
}
