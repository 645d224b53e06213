/**
 * What the datapath records while it walks a packet: typed events, never sentences. Every step
 * holds one `StepEvent`, every drop one `Drop` (a reason from a closed set, the kernel function
 * that dropped it, the subject and the table entry involved, the counters it bumped), and every
 * packet a `PacketRole`. Text is made only by the renderers (src/render/step.ts), with the same
 * printers the emulated tools use for the same kernel objects.
 *
 * Entries in events are copies taken when the event happened (a neighbour changes state later;
 * the step keeps what the kernel saw then).
 */
import type { Frame, Ipv4Packet, MacAddr, TcpFlags } from '../wire/types.ts';
import type { Route } from './fib.ts';
import type { NeighEntry, NudState } from './objects.ts';
import type { CtDir, TcpCtState, Tuple } from './conntrack.ts';
import type { CtState, Rule } from './netfilter.ts';

/** Closed set of reasons a packet can be dropped; every drop names one. */
export const DROP_REASONS = [
  'no-route',
  'neighbour-failed',
  'vxlan-fdb-miss',
  'link-down',
  'filtered',
  'mtu-exceeded',
  'ttl-exceeded',
  'forwarding-disabled',
  'rp-filter',
  'port-unreachable',
  'reset',
  'not-for-host',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export type Layer = 2 | 3 | 4 | 7;

export type StepKind =
  | 'socket'
  | 'route'
  | 'neigh'
  | 'arp'
  | 'netfilter'
  | 'conntrack'
  | 'xmit'
  | 'rx'
  | 'bridge'
  | 'encap'
  | 'decap'
  | 'mtu'
  | 'fragment'
  | 'defrag'
  | 'forward'
  | 'deliver'
  | 'drop'
  | 'icmp'
  | 'outside';

/** a kernel counter that rose while a walk was recorded: what `nstat`, `ip -s link` or `ip -s ntable` shows */
export interface CounterEvent {
  netns: string;
  /** nstat's name (IpExtInNoRoutes, IcmpOutDestUnreachs, TcpExtIPReversePathFilter…), or a link's
   * statistic (tx_dropped) with `device`, or a neighbour table's (res_failed) with `table` */
  name: string;
  device?: string;
  table?: string;
}

/* ------------------------------------------------------------ packet roles */

/** what a packet is in its exchange; the label a reader sees is made from it when rendering */
export type PacketRole =
  | { kind: 'syn' }
  | { kind: 'syn-ack' }
  | { kind: 'ack' }
  | { kind: 'dup-ack' }
  | { kind: 'fin' }
  | { kind: 'rst' }
  | { kind: 'request' }
  | { kind: 'response' }
  | { kind: 'retransmission' }
  | { kind: 'udp-datagram' }
  | { kind: 'udp-reply' }
  | { kind: 'echo-request' }
  | { kind: 'echo-reply' }
  /** an ICMP error the kernel sent; `rejectWith` when an iptables REJECT rule made it */
  | { kind: 'icmp-error'; type: number; code: number; mtu?: number; rejectWith?: string };

/** ICMP errors the kernel sends (icmp_send callers) */
export type IcmpErrorKind =
  | 'net-unreachable'
  | 'host-unreachable'
  | 'protocol-unreachable'
  | 'port-unreachable'
  | 'fragmentation-needed'
  | 'time-exceeded'
  /** destination unreachable code 13 (a prohibit route: ip_error's EACCES) */
  | 'admin-prohibited'
  | 'reject';

/* ------------------------------------------------------------ drops */

/** who sent a packet that failed locally: a system call, or a socket answering on its own */
export type SendCall = 'connect()' | 'sendto()' | 'ping' | PacketRole;

/** the kernel function a drop happens in (the place `perf trace -e skb:kfree_skb` would name) */
export type KernelSite =
  | 'ip_route_output'
  | 'ip_append_data'
  | 'ip_route_input_slow'
  | 'fib_validate_source'
  | 'ip_rcv'
  | 'ip_forward'
  | 'ip_finish_output'
  | 'ip_finish_output2'
  | 'neigh_resolve_output'
  | 'dev_queue_xmit'
  | 'veth_xmit'
  | 'br_handle_frame'
  | 'br_forward'
  | 'br_dev_queue_push_xmit'
  | 'vxlan_xmit'
  | 'vxlan_rcv'
  | 'ipip_tunnel_xmit'
  | 'iptunnel_xmit'
  | 'ip_local_deliver'
  | 'udp_rcv'
  | 'tcp_v4_rcv'
  | 'nf_hook_slow';

/** one netfilter decision: the rules that matched on the way and what decided */
export interface NfDecision {
  table: string;
  hook: string;
  verdict: 'ACCEPT' | 'DROP' | 'REJECT';
  /** rules that matched, in order; the last one decided unless `policy` */
  path: readonly { chain: string; index: number }[];
  /** the deciding rule (a copy), with the chain it is in and its 1-based index */
  rule?: { chain: string; index: number; rule: Rule };
  /** set when the builtin chain's policy decided */
  policy?: { chain: string; policy: 'ACCEPT' | 'DROP' };
  rejectWith?: string;
  /** the deciding rule's NAT target (the verdict is ACCEPT) */
  nat?: 'DNAT' | 'SNAT' | 'MASQUERADE';
  /**
   * the branch of a random choice the packet took (`-m statistic --mode random` rules of a chain,
   * as kube-proxy spreads a Service over its endpoints): the rule taken, and the probability that a
   * flow takes it (its own probability times that of every random rule before it not matching)
   */
  choice?: { chain: string; index: number; probability: number };
}

/** the details of a drop, by reason: each reason's subject and the entry involved */
export type DropCause =
  | {
      reason: 'no-route';
      site: 'ip_route_output' | 'ip_route_input_slow' | 'iptunnel_xmit' | 'ipip_tunnel_xmit';
      dst: string;
      /** a local send that failed: the call, or the packet a socket sent on its own */
      call?: SendCall;
      /** the outer destination of a tunnel packet */
      tunnel?: boolean;
      /** the nat OUTPUT hook changed the destination and the new one has no route */
      afterNat?: boolean;
      /** ipip with `remote any` and a route without gateway, or a frame handed to an L3 device */
      ipip?: 'no-gateway' | 'frame';
      /** the route that matched and sends nothing (ip_error: blackhole silently, unreachable and prohibit with ICMP) */
      route?: Route;
    }
  | {
      reason: 'neighbour-failed';
      site: 'neigh_resolve_output';
      nexthop: string;
      probes: number;
      /** a fragment queued behind the failed resolution */
      queued?: boolean;
    }
  | { reason: 'vxlan-fdb-miss'; site: 'vxlan_xmit'; mac: MacAddr }
  | {
      reason: 'link-down';
      site: 'ip_finish_output2' | 'dev_queue_xmit' | 'br_handle_frame' | 'br_forward' | 'vxlan_rcv';
      /** up but without carrier (NO-CARRIER) */
      noCarrier?: boolean;
      /** the device is a bridge, or a port of one */
      bridge?: 'bridge' | 'port';
    }
  | ({
      reason: 'filtered';
      site: 'nf_hook_slow';
      /** MASQUERADE found no address on the output device */
      masqueradeFailed?: boolean;
    } & NfDecision)
  | {
      reason: 'mtu-exceeded';
      site: 'ip_append_data' | 'ip_finish_output' | 'ip_forward' | 'veth_xmit' | 'br_dev_queue_push_xmit';
      /** IP total length, or the frame length for the silent L2 drops */
      len: number;
      mtu: number;
      call?: SendCall;
    }
  | { reason: 'ttl-exceeded'; site: 'ip_rcv' | 'ip_forward'; ttl: number }
  | { reason: 'forwarding-disabled'; site: 'ip_route_input_slow'; dst: string }
  | { reason: 'rp-filter'; site: 'fib_validate_source'; mode: number; src: string }
  | {
      reason: 'port-unreachable';
      site: 'udp_rcv' | 'ip_local_deliver' | 'vxlan_rcv';
      port?: number;
      src?: string;
      /** IPinIP without an ipip device, or a VXLAN VNI no device has */
      ipip?: boolean;
      vni?: { got: number; dev: number };
    }
  | { reason: 'reset'; site: 'tcp_v4_rcv'; port: number; listener: boolean; src: string }
  | {
      reason: 'not-for-host';
      site: 'ip_rcv' | 'br_forward';
      mac: MacAddr;
      /** the device's own MAC (ip_rcv), absent for the bridge's hairpin refusal */
      devMac?: MacAddr;
      /** br_forward: the port the frame came in by and would leave by (hairpin mode off) */
      port?: string;
    };

export type Drop = DropCause & {
  netns: string;
  device?: string;
  /** the counters this drop bumped, in order */
  counters: readonly CounterEvent[];
};

/* ------------------------------------------------------------ deliveries */

export interface SegmentInfo {
  flags: TcpFlags;
  seq: number;
  ack?: number;
  len: number;
}

export type Delivery =
  | { what: 'local' }
  | { what: 'udp'; port: number; bytes: number; client: boolean }
  | { what: 'echo-request'; id: number; seq: number }
  | { what: 'icmp'; type: number; code: number; id: number; seq: number; mtu?: number }
  | {
      what: 'pmtu';
      mtu: number;
      already?: number;
      sport?: number;
      dst?: string;
      dport?: number;
      before?: number;
      after?: number;
      resent?: number;
    }
  | { what: 'proto'; proto: number }
  | {
      what: 'tcp';
      port: number;
      seg: SegmentInfo;
      /** what the socket did with it */
      event:
        | 'rst-no-conn'
        | 'rst-reset'
        | 'abort-on-data'
        | 'established'
        | 'out-of-order'
        | 'duplicate'
        | 'data'
        | 'syn';
      role?: 'client' | 'server';
      from?: string;
      to?: string;
      expected?: number;
      mss?: number;
    };

/* ------------------------------------------------------------ step events */

export type StepEvent =
  | { type: 'route'; dst: string; route: Route; dev: string; src: string; outer?: boolean }
  | { type: 'route-local'; dst: string; dev: string; via: 'input' | 'output' }
  /**
   * `route`: the best match is a route that sends nothing (blackhole, unreachable, prohibit: the
   * FIB answers -EINVAL, -EHOSTUNREACH, -EACCES), e.g. an IPAM block's `blackhole … proto bird`
   */
  | { type: 'route-miss'; dst: string; outer?: boolean; oif?: string; input?: boolean; route?: Route }
  | { type: 'rp-filter'; src: string; back?: Route; iif: string }
  | { type: 'forward'; pkt: Ipv4Packet; iif: string; oif: string; ttl: number }
  | {
      type: 'mtu';
      len: number;
      mtu: number;
      dev: string;
      site: 'ip_append_data' | 'ip_finish_output' | 'ip_forward';
    }
  | { type: 'fragment'; len: number; mtu: number; dev: string; sizes: number[] }
  | { type: 'refragment'; bridge: string; len: number; port: string; count: number }
  | { type: 'defrag-hold'; offset: number; id: number }
  | { type: 'defrag'; count: number; id: number; len: number }
  | { type: 'neigh'; result: 'hit'; nexthop: string; entry: NeighEntry }
  | { type: 'neigh'; result: 'miss'; nexthop: string; entry?: NeighEntry }
  | { type: 'neigh'; result: 'resolved'; nexthop: string; entry: NeighEntry }
  /** the entry is already resolving: the packet waits in its queue (arp_queue) */
  | { type: 'neigh'; result: 'queued'; nexthop: string; entry: NeighEntry; qlen: number }
  /** `unicast`: a PROBE-state probe sent to the entry's known address (arp_solicit) */
  | { type: 'arp-request'; target: string; sender: string; unicast?: MacAddr }
  | { type: 'arp-ignore'; target: string }
  | { type: 'arp-reply'; target: string; mac: MacAddr; to: string }
  /**
   * arp_process → arp_fwd_proxy: a request for an address that is not ours, answered with the
   * receiving device's MAC because proxy_arp is on there (conf.all or conf.DEV), forwarding is on
   * and the input route to the target leaves by another device (`route`); `proxyDelay`:
   * neigh.DEV.proxy_delay in USER_HZ (Calico sets 0: the answer goes at once)
   */
  | {
      type: 'arp-proxy-reply';
      target: string;
      mac: MacAddr;
      to: string;
      route: Route;
      proxyDelay: number;
    }
  | { type: 'arp-learn'; ip: string; mac: MacAddr; entry: NeighEntry }
  /**
   * a reply for a valid entry with another address within locktime of the entry's last change:
   * kept as it is (arp_process: several replies back to back, the first one wins)
   */
  | { type: 'arp-locked'; ip: string; mac: MacAddr; entry: NeighEntry }
  /** the frame left the modelled namespaces through `from` (an imported cluster's edge) */
  | { type: 'outside'; from: { netns: string; device: string } }
  | { type: 'xmit'; frame: Frame }
  | { type: 'xmit-ip'; pkt: Ipv4Packet }
  | { type: 'rx'; frame: Frame }
  | { type: 'rx-ip'; pkt: Ipv4Packet }
  | { type: 'fdb-learn'; bridge: string; mac: MacAddr; port: string }
  /** br_netfilter: DNAT sent the frame to an address behind the bridge it came in by (from `port`): bridged, not routed */
  | { type: 'bridged-dnat'; bridge: string; dst: string; port: string }
  | { type: 'fdb-flood'; bridge: string; ports: string[]; broadcast: boolean; mac: MacAddr; toHost: boolean }
  | { type: 'fdb-local'; bridge: string; mac: MacAddr; port: string; state: FdbState }
  | { type: 'fdb-forward'; bridge: string; mac: MacAddr; port: string; state: FdbState }
  | { type: 'vxlan-fdb-miss'; mac: MacAddr }
  | {
      type: 'encap-vxlan';
      vni: number;
      sport: number;
      dport: number;
      local: string;
      remote: string;
      fdb: { mac: MacAddr; dst: string; permanent: boolean };
    }
  | { type: 'encap-ipip'; local: string; remote: string; route: Route }
  | {
      type: 'decap-vxlan';
      outerSrc: string;
      outerDst: string;
      dport: number;
      vni: number;
      innerSrc: MacAddr;
      innerDst: MacAddr;
    }
  | { type: 'decap-ipip'; outerSrc: string; outerDst: string; inner: Ipv4Packet }
  | { type: 'netfilter'; decision: NfDecision }
  | {
      type: 'conntrack';
      ctstate: CtState;
      dir: CtDir;
      isNew: boolean;
      invalid: boolean;
      /** an ICMP error about a tracked connection */
      related?: boolean;
      from?: TcpCtState;
      to?: TcpCtState;
      orig: Tuple;
    }
  | {
      type: 'nat-setup';
      hook: string;
      manip: 'src' | 'dst';
      /** the original direction before and after the manip */
      before: Tuple;
      after: Tuple;
      /** false: the null binding (no rule set a manip; the tuple kept, or its port moved off a clash) */
      byRule: boolean;
      orig: Tuple;
      reply: Tuple;
    }
  | {
      type: 'nat-rewrite';
      hook: string;
      manip: 'src' | 'dst';
      before: Tuple;
      after: Tuple;
      /** an ICMP error and the packet it quotes were translated */
      icmpError: boolean;
    }
  | { type: 'masquerade-failed'; hook: string }
  | { type: 'icmp-send'; to: string; icmp: IcmpErrorKind; rejectWith?: string; mtu?: number }
  | { type: 'icmp-unsent'; to: string; icmp: IcmpErrorKind; rejectWith?: string }
  /** icmp_send held back by a rate limit: per destination (IcmpOutRateLimitHost), netns-wide
   * (…Global), or ip_error's own draw on the destination's tokens (no counter) */
  | { type: 'icmp-ratelimited'; to: string; icmp: IcmpErrorKind; limit: 'host' | 'global' | 'route' }
  | {
      type: 'connect';
      src: string;
      sport: number;
      dst: string;
      dport: number;
      mss: number;
      mtu: number;
      wscale: number;
    }
  | { type: 'sendto'; bytes: number; dst: string; dport: number; sport: number; df: boolean }
  | { type: 'ping'; dst: string; id: number; seq: number; bytes: number; df: boolean }
  | { type: 'send'; role: PacketRole; pkt: Ipv4Packet }
  | { type: 'deliver'; to: string; delivery: Delivery }
  | { type: 'drop'; drop: Drop };

export type FdbState = 'local' | 'static' | 'dynamic';

/** One step of a walk: what happened, where, when, on which layer; text comes from the renderers. */
export interface Step {
  /** 1-based, in order of occurrence */
  readonly n: number;
  readonly kind: StepKind;
  readonly layer: Layer;
  readonly netns: string;
  readonly device?: string;
  /** short verb token: "lookup", "tx", "rx", "forward", "flood", "encapsulate", "drop" … */
  readonly action: string;
  readonly ev: StepEvent;
  /** frame bytes as they were on this device (tx / rx steps) */
  readonly frame?: Uint8Array;
  /** simulated clock, microseconds since the cluster started */
  readonly time: number;
  /** set on steps of a side exchange the walk triggered, e.g. "arp" resolution */
  readonly aux?: string;
  /** set when the packet was split: "frag 1/2" */
  readonly part?: string;
}

/** the neighbour states in which an entry's lladdr is used as it is */
export const NUD_VALID: readonly NudState[] = ['REACHABLE', 'PERMANENT', 'STALE', 'DELAY', 'PROBE', 'NOARP'];
