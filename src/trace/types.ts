/**
 * The one Trace type (after Batfish's Trace/Hop/Step): what happened to one packet, recorded once
 * by the datapath and rendered many ways. Immutable once built.
 */

import type {
  CounterEvent,
  Drop,
  DropReason,
  Layer,
  PacketRole,
  Step,
  StepEvent,
  StepKind,
} from '../kernel/events.ts';

export { DROP_REASONS } from '../kernel/events.ts';
export type { CounterEvent, Drop, DropReason, Layer, PacketRole, Step, StepEvent, StepKind };

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
  /** what the packet is in its exchange: SYN, SYN-ACK, echo request, an ICMP error… */
  role: PacketRole;
}

export type Disposition =
  | { kind: 'delivered'; netns: string; device: string; to: string }
  | { kind: 'dropped'; reason: DropReason; netns: string; device?: string; drop: Drop }
  /** it left the collected namespaces of an imported cluster through `netns`'s `device`: not known beyond */
  | { kind: 'outside'; netns: string; device: string }
  /** the walk ended on an answer that is not a delivery: e.g. ICMP error or RST sent back */
  | { kind: 'pending' };

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
    // (not hops[-1]: reading before an empty array's start is a slow property lookup)
    const last = hops.length ? hops[hops.length - 1] : undefined;
    if (last && last.netns === s.netns) (last.steps as Step[]).push(s);
    else hops.push({ netns: s.netns, steps: [s] });
  }
  return hops;
}

/**
 * A recorded trace: frozen, with its list of steps, flow, disposition and counters; its steps are
 * read-only by type (Step's fields are readonly: test/trace-immutable.test.ts checks that writing
 * one does not compile), not frozen one by one (Object.freeze of ~75 steps was ~3 % of a warm
 * walk). Its hops are grouped when first read (most walks are only asked for their outcome or
 * their steps, never their hops)
 */
class RecordedTrace implements Trace {
  #hops: readonly Hop[] | undefined;

  constructor(
    readonly flow: Flow,
    readonly disposition: Disposition,
    readonly steps: readonly Step[],
    readonly counters: readonly CounterEvent[],
  ) {
    Object.freeze(this);
  }

  get hops(): readonly Hop[] {
    return (this.#hops ??= frozenHops(this.steps));
  }
}

/** the steps grouped by namespace, every list frozen */
export function frozenHops(steps: readonly Step[]): readonly Hop[] {
  const hops = hopsOf(steps);
  for (const h of hops) {
    Object.freeze(h.steps);
    Object.freeze(h);
  }
  return Object.freeze(hops);
}

const NO_COUNTERS: readonly CounterEvent[] = Object.freeze([]);

export function freezeTrace(
  flow: Flow,
  disposition: Disposition,
  steps: Step[],
  counters: readonly CounterEvent[] = [],
): Trace {
  return new RecordedTrace(
    Object.freeze(flow),
    Object.freeze(disposition),
    // a copy: the recorder's own array may still take steps (timers that fire after the walk)
    Object.freeze(steps.slice()),
    counters.length ? Object.freeze(counters.map((c) => Object.freeze({ ...c }))) : NO_COUNTERS,
  );
}
