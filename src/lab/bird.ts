/**
 * The BIRD configuration calico-node's confd writes for a node of the node-to-node mesh, for running
 * real BIRD 2 (Debian bird2) in lab namespaces: scripts/record-bgp-bird.ts and
 * test/bgp-bird-session.test.ts use it.
 */

/** a node of the mesh: its name, its address (router id and session source) and its IPAM block */
export interface BirdNode {
  name: string;
  ip: string;
  block: string;
}

export const CALICO_AS = 64512;
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
export function calicoBirdConfig(me: BirdNode, nodes: readonly BirdNode[]): string {
  const peers = nodes.filter((n) => n.ip !== me.ip);
  const mesh = peers
    .map((p) => {
      // confd compares the addresses as strings: the higher one waits for the lower one to connect
      const passive =
        p.ip > me.ip ? '\n  passive on; # Mesh is unidirectional, peer will connect to us.' : '';
      return `# For peer /host/${p.name}/ip_addr_v4
protocol bgp Mesh_${p.ip.split('.').join('_')} from bgp_template {
  neighbor ${p.ip} as ${CALICO_AS};
  source address ${me.ip};  # The local address we use for the TCP connection${passive}
}`;
    })
    .join('\n\n');
  return `# bird_aggr.cfg
protocol static {
  ipv4;
   # IP blocks for this host.
   route ${me.block} blackhole;
}

# Aggregation of routes on this host; export the block, nothing beneath it.
function calico_aggr ()
{
      # Block ${me.block} is confirmed
      if ( net = ${me.block} ) then { accept; }
      if ( net ~ ${me.block} ) then { reject; }
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

filter calico_kernel_programming {
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
  scan time 2;       # Scan kernel routing table every 2 seconds
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
