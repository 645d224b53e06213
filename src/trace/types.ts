/**
 * The one Trace type (after Batfish's Trace/Hop/Step): what happened to one packet, recorded once
 * by the datapath and rendered many ways. Immutable once built.
 */

import type { CounterEvent } from '../kernel/world.ts';

export type { CounterEvent };

export type Proto = 'tcp' | 'udp' | 'icmp';

export interface Flow {
  proto: Proto;
  /** netns the packet starts in (pod or node name) */
  from: string;
  /** netns that owns the destination address, when known */
  to?: string;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  /** IP total length of the first packet in bytes, when the user asked for a size */
  size?: number;
  df: boolean;
  /** free-form label, e.g. "SYN", "SYN-ACK", "echo request" */
  label: string;
}

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
  'martian',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export type Disposition =
  | { kind: 'delivered'; netns: string; device: string; to: string }
  | { kind: 'dropped'; reason: DropReason; netns: string; device?: string; detail: string }
  /** the walk ended on an answer that is not a delivery: e.g. ICMP error or RST sent back */
  | { kind: 'pending'; detail: string };

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
  | 'icmp';

export interface Step {
  /** 1-based, in order of occurrence */
  n: number;
  kind: StepKind;
  layer: Layer;
  netns: string;
  device?: string;
  /** short verb: "lookup", "tx", "rx", "forward", "flood", "encapsulate", "drop" … */
  action: string;
  /** one line a learner reads */
  detail: string;
  /** the table that decided it, e.g. "route main", "neigh", "fdb cni0", "filter FORWARD" */
  table?: string;
  /** the entry that decided, printed as the real tool prints it; "(none)" where nothing matched */
  entry?: string;
  /** frame bytes as they were on this device (tx / rx steps) */
  frame?: Uint8Array;
  /** simulated clock, microseconds since the cluster started */
  time: number;
  /** set on steps of a side exchange the walk triggered, e.g. "arp" resolution */
  aux?: string;
  /** set when the packet was split: "frag 1/2" */
  part?: string;
}

export interface Hop {
  netns: string;
  steps: readonly Step[];
}

export interface Trace {
  flow: Flow;
  disposition: Disposition;
  hops: readonly Hop[];
  steps: readonly Step[];
  /** kernel counters that rose during this walk, in order (nstat, ip -s link, ip -s ntable) */
  counters: readonly CounterEvent[];
}

/** Group consecutive steps by network namespace. */
export function hopsOf(steps: readonly Step[]): Hop[] {
  const hops: Hop[] = [];
  for (const s of steps) {
    const last = hops[hops.length - 1];
    if (last && last.netns === s.netns) (last.steps as Step[]).push(s);
    else hops.push({ netns: s.netns, steps: [s] });
  }
  return hops;
}

export function freezeTrace(
  flow: Flow,
  disposition: Disposition,
  steps: Step[],
  counters: readonly CounterEvent[] = [],
): Trace {
  const hops = hopsOf(steps);
  for (const h of hops) Object.freeze(h.steps);
  return Object.freeze({
    flow: Object.freeze(flow),
    disposition: Object.freeze(disposition),
    hops: Object.freeze(hops.map((h) => Object.freeze(h))),
    steps: Object.freeze(steps.map((s) => Object.freeze(s))),
    counters: Object.freeze(counters.map((c) => Object.freeze({ ...c }))),
  });
}
