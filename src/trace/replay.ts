/**
 * The flow cache's replay (issue 16): a warm walk's template written back onto the world with the
 * walk's own parameters, instead of walking the datapath again. flow-cache.ts decides when (its
 * guards); this module records, from a walk the cache takes as a template, what the walk wrote, by
 * the live objects it wrote to, and writes it again for a later walk of the same request:
 *
 *  - counters (device statistics, netfilter chains' and rules' packets and bytes, ARP statistics,
 *    MIB counters, each namespace's IP id counter): what the walk added;
 *  - times (a neighbour timer's `used`, a bridge FDB entry's `updated`, …): their offset from the
 *    walk's start;
 *  - the timers it armed, the clock's advance;
 *  - the conntrack entries it made, as the table's columns keep them (CtRow: both tuples' numeric
 *    keys, whose ports are parameters, the status, TCP state and mark), written by key
 *    (Conntrack.insertRow), and those it refreshed (refreshRow); the TCP sockets it made (through
 *    the socket table's addDeferredAt, in the order made: each made from its template's when
 *    first read, as the captures are);
 *  - the captures and the traces, kept as the template's packets: a replayed capture or step
 *    makes its packet (and its bytes) from the template's when it is first read, and the captures
 *    themselves are made when the world's captures are read (World.captureLater). A replayed
 *    walk's outputs are made by its record (Replayed: the plan and the walk's parameters, computed
 *    once for the writes; it copies the template's objects with them); what it leaves for its
 *    captures, its sockets and its timers' events is a row of numbers in its plan's ReplayRows
 *    (the record is made again from it when they are read). Every replayed walk's captures,
 *    sockets and timers live on in the world, so each object a walk keeps is one the garbage
 *    collector copies and marks again: they are as few as that allows.
 *
 * What differs from walk to walk is a parameter, substituted by field: the source port (also in
 * texts: a delivery's `tcp/PORT`), the VXLAN source ports (udp_flow_src_port of the inner flow, as
 * stack.ts computes it), the two ISNs (sockets.ts deriveIsn, by isnsOf's hashers), the TCP
 * timestamps (the clock's ms when the segment was made, plus the pair's offset: the making times
 * are logged while the template walk runs), the IP ids (each sender's counter moved on), and every
 * time (shifted by the start's difference). A replay that cannot be computed (a new conntrack tuple or socket already
 * taken, two timestamps that would part) is refused and the walk is walked.
 *
 * Platform-free. Only for TCP walks (the benchmark's new connection each walk).
 */
import type { Cluster } from '../cni/build.ts';
import {
  ctRowOf,
  observeTrack,
  rowPort,
  setRowPort,
  tupleKey,
  type Conntrack,
  type CtEntryData,
  type CtRow,
} from '../kernel/conntrack.ts';
import type { Netns, VxlanLink } from '../kernel/objects.ts';
import { copyConn, isnsOf, NO_OFO, NO_UNACKED, observeTimestamps, type TcpConn } from '../kernel/sockets.ts';
import { vxlanPortsOf, vxlanTuplePort } from '../kernel/stack.ts';
import { grow, type DeferredEntry } from '../kernel/table.ts';
import {
  DeviceCapture,
  Recorder,
  recordedStep,
  stepWire,
  TimerQueue,
  type Capture,
  type CaptureBatch,
  type CapturePoint,
  type TimerEvent,
} from '../kernel/world.ts';
import { emitRepr, WireBytes } from '../kernel/wire-bytes.ts';
import { IPPROTO_TCP, type Frame, type Ipv4Packet } from '../wire/types.ts';
import { frozenHops, type Disposition, type Flow, type Hop, type Step, type Trace } from './types.ts';
import type { Walk } from './walk.ts';

type Cell = Record<string, unknown>;

/** a numeric field of a live object, and its value before the walk */
interface Before {
  obj: Cell;
  key: string;
  v: number;
}

/** the world before a walk that may become a template (taken only on the walks that are not replayed) */
export interface LiveBefore {
  t0: number;
  seq: number;
  /** timers armed */
  timers: number;
  captures: number;
  cells: Before[];
  ipIds: Map<Netns, number>;
  mibs: Map<Netns, Map<string, number>>;
  ct: Map<Netns, number>;
  tcp: Map<Netns, number>;
  /** TCP timestamps made while the walk ran: value, clock (µs) */
  ts: number[];
  /** the entries the walk's conntrack lookups found, as they were before it, by table and original tuple */
  found: Map<Conntrack, Map<string, CtEntryData>>;
}

/** fields holding a time on the clock (µs): a replay shifts them by the difference of the starts */
const TIME_KEYS = new Set([
  'time',
  'at',
  'updated',
  'used',
  'confirmed',
  'expires',
  'streamTs',
  'rtoAt',
  'establishedAt',
  'retransStamp',
]);
/** fields holding a port */
const PORT_KEYS = new Set(['sport', 'dport', 'lport', 'rport', 'srcPort', 'dstPort', 'port']);
/** fields holding a TCP sequence number */
const SEQ_KEYS = new Set(['seq', 'ack', 'sndNxt', 'rcvNxt', 'sndUna']);
/** fields holding a TCP timestamp */
const TS_KEYS = new Set(['val', 'ecr', 'tsRecent']);
/** the fields of a live object that a walk may set to the clock (the others it adds to) */
const TIMES_WRITTEN = ['updated', 'used', 'confirmed'] as const;

const isTimeWritten = (k: string): k is keyof Sets => (TIMES_WRITTEN as readonly string[]).includes(k);

/** times a walk set, by field (TIMES_WRITTEN's) */
type Sets = { [K in (typeof TIMES_WRITTEN)[number]]: { obj: Record<K, number>; off: number }[] };

function numericCells(obj: Cell, keys: Iterable<string>, out: Before[]): void {
  for (const key of keys) {
    const v = obj[key];
    if (typeof v === 'number') out.push({ obj, key, v });
  }
}

/** the live state a walk may write to, as it is now */
export function liveBefore(c: Cluster): LiveBefore {
  const cells: Before[] = [];
  const ipIds = new Map<Netns, number>();
  const mibs = new Map<Netns, Map<string, number>>();
  const ct = new Map<Netns, number>();
  const tcp = new Map<Netns, number>();
  for (const ns of c.world.netns.values()) {
    ipIds.set(ns, ns.ipId);
    mibs.set(ns, new Map(ns.mib));
    ct.set(ns, ns.conntrack.listedCount);
    tcp.set(ns, ns.tcp.size);
    numericCells(ns.arpStats as unknown as Cell, Object.keys(ns.arpStats), cells);
    for (const l of ns.links.values()) {
      numericCells(l.stats as unknown as Cell, Object.keys(l.stats), cells);
      if (l.type === 'bridge' || l.type === 'vxlan')
        for (const e of l.fdb.list()) numericCells(e as unknown as Cell, TIMES_WRITTEN, cells);
    }
    for (const t of ns.nud.values()) numericCells(t as unknown as Cell, TIMES_WRITTEN, cells);
    for (const n of ns.neigh.list()) numericCells(n as unknown as Cell, TIMES_WRITTEN, cells);
    for (const t of ns.netfilter.tables.values())
      for (const ch of t.values()) {
        numericCells(ch as unknown as Cell, ['pkts', 'bytes'], cells);
        for (const r of ch.rules) numericCells(r as unknown as Cell, ['pkts', 'bytes'], cells);
      }
  }
  return {
    t0: c.world.now,
    seq: c.world.timerSeq,
    timers: c.world.timerCount,
    captures: c.world.captures.length,
    cells,
    ipIds,
    mibs,
    ct,
    tcp,
    ts: [],
    found: new Map(),
  };
}

/**
 * run `fn` (a walk) with its TCP timestamps logged (value, clock) and the conntrack entries its
 * lookups find kept as they were before (LiveBefore's `ts` and `found`)
 */
export function observing<T>(b: LiveBefore, fn: () => T): T {
  const wasTrack = observeTrack((ct, t) => {
    const hit = ct.find(t);
    if (!hit) return;
    let m = b.found.get(ct);
    if (!m) b.found.set(ct, (m = new Map()));
    const key = tupleKey(hit.entry.orig);
    if (!m.has(key)) m.set(key, plainEntry(hit.entry.data()));
  });
  const wasTs = observeTimestamps((v, now) => b.ts.push(v, now));
  try {
    return fn();
  } finally {
    observeTrack(wasTrack);
    observeTimestamps(wasTs);
  }
}

/** a VXLAN source port of the template, and the range of the device that computed it */
interface VxlanPort {
  port: number;
  range: Pick<VxlanLink, 'srcPortMin' | 'srcPortMax'>;
  /** the port for a walk's source port (stack.ts vxlanPortsOf) */
  of: (sport: number) => number;
}

/** what a template walk wrote, by live object, and its outputs, to be written again */
export interface Plan {
  t0: number;
  duration: number;
  sport: number;
  src: string;
  dst: string;
  dport: number;
  /** the template's ISNs (isns' of its source port, kept: seqOf reads them for every number) */
  isnC: number;
  isnS: number;
  /** the ISNs of a walk's source port (sockets.ts isnsOf) */
  isns: ReturnType<typeof isnsOf>;
  timers: { off: number; ev: TimerEvent }[];
  /** what the walk added to counters, by object (what addAll writes): netfilter counters, device statistics, the rest */
  counts: Counts;
  /** the times it set (TIMES_WRITTEN's fields), by field: each object and the time's offset from the start */
  sets: Sets;
  ipIds: { ns: Netns; d: number; before: number; addrs: string[] }[];
  mibs: { ns: Netns; name: string; d: number }[];
  ct: PlanEntry[];
  /** entries the walk found and refreshed: as they were, as it left them */
  refresh: PlanRefresh[];
  /** the sockets made */
  tcp: PlanSocket[];
  captures: { off: number; at: CapturePoint; repr: Frame | Ipv4Packet }[];
  traces: Trace[];
  /** TCP timestamps of the template: value, clock when made */
  ts: number[];
  /**
   * places in ts of a value made again at another time: the first's place, then the other's (a
   * replay must move them together)
   */
  tsTwins: number[];
  /** the VXLAN source ports (each its own, none the source port: a port parameter each) */
  vxlan: VxlanPort[];
  steps: boolean;
  /** the template's source port in a text */
  sportRe: RegExp;
  /** texts of the template that hold its source port, split at it (made when a replay first copies one) */
  texts: Map<string, string[]>;
  /** each sender address of ipIds: its place there */
  idOf: Map<string, number>;
  /**
   * template objects that hold a value a replay changes, each with the fields that do (the
   * others are shared as they are); a socket's every object (each socket its own)
   */
  touched: WeakMap<object, readonly string[]>;
  /** template objects reached more than once from what a replay copies (copied once a walk) */
  shared: WeakSet<object>;
  /** template objects a replay copies as a literal of their type (isLiteral's) */
  literal: WeakSet<object>;
  /** its replayed walks whose captures are not made yet (made when the world's captures are next read) */
  log: ReplayLog | undefined;
  /**
   * its replayed walks, a row each, the i-th replay's the i-th row: what they left to be made when
   * read is made from it (each socket when first read: PlanSocket's `deferred`; each timer's event
   * when the timers are read or it falls due: `queues`; the captures: `log`)
   */
  rows: ReplayRows | undefined;
  /** by timer (of `timers`): the queue its replays' timers are armed in, its argument a replay's row in `rows` */
  queues: TimerQueue[];
}

/**
 * a socket the template's walk made; `rest`, c's fields after those copyConn makes (undefined:
 * copyConn's do not come first in c, in its order, and c is copied by spread); `deferred`, the
 * maker of a replay's (its argument the replay's row in the plan's `rows`)
 */
interface PlanSocket {
  ns: Netns;
  c: TcpConn;
  rest: readonly string[] | undefined;
  deferred: DeferredEntry<TcpConn>;
}

/**
 * a conntrack entry the template's walk made, as the columns keep it (`row`), with the places of
 * its keys that hold a port parameter; `keys`, the replay's: the row's keys with its ports
 */
interface PlanEntry {
  ns: Netns;
  row: CtRow;
  /**
   * the port parameter (0 the source port, 1 + i the plan's vxlan[i]) of each port of the keys:
   * the original's first and second, the reply's first and second; -1 a port of its own
   */
  ports: Int8Array;
  /** the expiry and stream time are times of the walk (shifted by a replay) */
  shiftExpires: boolean;
  shiftStream: boolean;
  keys: Int32Array;
  /**
   * a refreshed entry's (PlanRefresh's), undefined and -1 in an entry made: both kinds one shape,
   * so that the replay's reads of them (fillKeys, replayPlan's loops) stay monomorphic (a refreshed
   * entry made by a spread of a made one with two more fields took fillKeys' loads megamorphic: a
   * cost of every walk)
   */
  was: CtRow | undefined;
  hit: number;
}

/** an entry the template's walk found and refreshed: as it was (`was`), as it left it (`row`) */
interface PlanRefresh extends PlanEntry {
  was: CtRow;
  /** the row the replay found it in */
  hit: number;
}

/** the plan's form of an entry (undefined: the columns would not keep it) */
function planEntry(
  ns: Netns,
  d: CtEntryData,
  plan: { t0: number; sport: number; vxlan: VxlanPort[] },
): PlanEntry | undefined {
  const row = ctRowOf(d);
  if (!row) return undefined;
  const ports = new Int8Array(4).fill(-1);
  for (let i = 0; i < 4; i++) {
    const v = rowPort(row.keys, i);
    if (v >= 0) ports[i] = v === plan.sport ? 0 : plan.vxlan.findIndex((x) => x.port === v) + 1 || -1;
  }
  return {
    ns,
    row,
    ports,
    shiftExpires: row.expires >= plan.t0,
    shiftStream: row.streamTs >= plan.t0,
    keys: new Int32Array(8),
    was: undefined,
    hit: -1,
  };
}

/** x.keys: its row's keys with the ports `pv` (by parameter) */
function fillKeys(x: PlanEntry, pv: readonly number[]): Int32Array {
  const k = x.keys;
  k.set(x.row.keys);
  for (let i = 0; i < 4; i++) {
    const j = x.ports[i];
    if (j >= 0) setRowPort(k, i, pv[j]);
  }
  return k;
}

/** the template's own parameters (the identity substitution: what `touched` is computed with) */
function recordParams(p: Plan): Params {
  // (no shift: each timestamp is its own value, none parts from another)
  return new Replayed(
    p,
    0,
    [p.sport, ...p.vxlan.map((v) => v.port), ...p.ipIds.map(() => 0)],
    p.isnC,
    p.isnS,
  );
}

const portRe = (port: number) => new RegExp(`(?<![0-9])${port}(?![0-9])`, 'g');

/** does this field's value change with the parameters (under the template's own: could it) */
function touches(p: Params, key: string, v: unknown, holder: Cell): boolean {
  const re = p.plan.sportRe;
  if (typeof v === 'string') return re.test(v) && !(re.lastIndex = 0);
  if (typeof v !== 'number') return false;
  if (TIME_KEYS.has(key)) return v >= p.plan.t0;
  if (PORT_KEYS.has(key)) return p.portOf(v) !== undefined;
  if (SEQ_KEYS.has(key)) return (v - p.plan.isnC) >>> 0 < 0x10000 || (v - p.plan.isnS) >>> 0 < 0x10000;
  if (TS_KEYS.has(key)) return p.tsOf(v) !== undefined;
  if (key === 'id') return typeof holder.src === 'string' && p.plan.idOf.has(holder.src);
  return false;
}

function substitute(p: Params, key: string, v: number, holder: Cell): number {
  if (TIME_KEYS.has(key)) return v >= p.plan.t0 ? v + p.dt : v;
  if (PORT_KEYS.has(key)) return p.portOf(v) ?? v;
  if (SEQ_KEYS.has(key)) return seqOf(p, v);
  if (TS_KEYS.has(key)) return p.tsOf(v) ?? v;
  if (key === 'id' && typeof holder.src === 'string') {
    const i = p.plan.idOf.get(holder.src);
    return i === undefined ? v : (v + p.pv[1 + p.plan.vxlan.length + i]) & 0xffff;
  }
  return v;
}

/** a TCP sequence number of the template's with the replay's ISNs (within 64 KiB of one of the template's) */
function seqOf(p: Params, v: number): number {
  const c = (v - p.plan.isnC) >>> 0;
  if (c < 0x10000) return (p.isnC + c) >>> 0;
  const s = (v - p.plan.isnS) >>> 0;
  if (s < 0x10000) return (p.isnS + s) >>> 0;
  return v;
}

const isPlain = (x: object) => {
  const proto = Object.getPrototypeOf(x) as unknown;
  return proto === Object.prototype || proto === Array.prototype || proto === null;
};

/**
 * mark the template's objects that hold a value the parameters change, with the fields that do
 * (depth first; plain objects and arrays only); `all`: every plain object, array and Map below
 */
function markTouched(
  p: Params,
  x: unknown,
  touched: WeakMap<object, readonly string[]>,
  seen: Set<object>,
  all = false,
  shared?: WeakSet<object>,
): boolean {
  if (!x || typeof x !== 'object') return false;
  if (x instanceof Map) {
    if (!all) return false;
    for (const v of x.values()) markTouched(p, v, touched, seen, all, shared);
    touched.set(x, []);
    return true;
  }
  if (!isPlain(x)) return false;
  if (seen.has(x)) {
    // reached again: its copies are made once a walk (Replayed's memo)
    shared?.add(x);
    return touched.has(x);
  }
  seen.add(x);
  const keys: string[] = [];
  const o = x as Cell;
  for (const k of Object.keys(o)) {
    const v = o[k];
    if (v && typeof v === 'object') {
      if (markTouched(p, v, touched, seen, all, shared)) keys.push(k);
    } else if (touches(p, k, v, o)) keys.push(k);
  }
  if (keys.length || all) touched.set(x, keys);
  return keys.length > 0 || all;
}

/**
 * One replayed walk, as its outputs keep it: the plan and the values the replay substitutes for
 * the template's (its plan's: the source port, the ISNs, the IP ids…), and the copier of the
 * template's objects with them substituted: what nothing changes is shared. The outputs' copies
 * are made when first read; its captures when the world's captures are read (the plan's
 * ReplayRows keeps what they need of every replayed walk, as numbers).
 */
class Replayed {
  #memo: Map<object, unknown> | undefined;
  constructor(
    readonly plan: Plan,
    /** the clock's shift from the template's start */
    readonly dt: number,
    /**
     * the port parameters: the source port, then the VXLAN source ports (the plan's sport, vxlan);
     * then the IP id shift of each sender of the plan's ipIds (plan.idOf: each sender address's
     * place there)
     */
    readonly pv: readonly number[],
    readonly isnC: number,
    readonly isnS: number,
  ) {}

  get sport(): number {
    return this.pv[0];
  }

  /** the replay's port for the template's port v (undefined: v is no parameter) */
  portOf(v: number): number | undefined {
    const plan = this.plan;
    if (v === plan.sport) return this.pv[0];
    for (let i = 0; i < plan.vxlan.length; i++) if (plan.vxlan[i].port === v) return this.pv[i + 1];
    return undefined;
  }

  /**
   * the replay's TCP timestamp for the template's v (undefined: no timestamp the template made):
   * the clock's ms when made moved by the shift, the pair's offset kept (replayPlan checked that
   * all the template made of one value move together: tsPart)
   */
  tsOf(v: number): number | undefined {
    const log = this.plan.ts;
    for (let i = 0; i < log.length; i += 2) if (log[i] === v) return tsMoved(v, log[i + 1], this.dt);
    return undefined;
  }

  /** the walk's captures (its plan's ReplayLog's: made when the world's captures are read) */
  capture(into: Capture[]): void {
    for (const x of this.plan.captures) into.push(new ReplayedCapture(x, this));
  }

  /**
   * the copy of `x`, made once (what the template shares, the copies share: an object the
   * template reaches more than once is copied once a walk, through the memo)
   */
  copy<T>(x: T): T {
    if (!x || typeof x !== 'object') return x;
    const keys = this.plan.touched.get(x);
    if (keys === undefined) return x;
    if (!this.plan.shared.has(x)) return this.#copyOf(x, keys, true, false);
    const had = (this.#memo ??= new Map()).get(x);
    if (had !== undefined) return had as T;
    return this.#copyOf(x, keys, true, true);
  }

  /** a copy of `x` of its own (the template's one object not shared with others made so) */
  own<T>(x: T): T {
    if (!x || typeof x !== 'object') return x;
    const keys = this.plan.touched.get(x);
    return keys === undefined ? x : this.#copyOf(x, keys, false, false);
  }

  /** `deep`: what is below copied by copy (else by own); `memo`: the copy kept in the memo */
  #copyOf<T>(x: T & object, keys: readonly string[], deep: boolean, memo: boolean): T {
    if (x instanceof Map) {
      const m = new Map([...x].map(([k, v]) => [k, deep ? this.copy(v) : this.own(v)]));
      if (memo) this.#memo!.set(x, m);
      return m as T;
    }
    const o = x as unknown as Cell;
    if (this.plan.literal.has(o)) {
      const out = this.#literal(o as unknown as Literal, keys);
      if (memo) this.#memo!.set(x, out);
      return out as T;
    }
    // a copy by spread (the same fields in the same order, made at once), then what changes
    const out = (Array.isArray(x) ? x.slice() : { ...x }) as Cell;
    if (memo) this.#memo!.set(x, out);
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      out[k] = this.#value(o, k, deep);
    }
    if (Object.isFrozen(x)) Object.freeze(out);
    return out as T;
  }

  /** o[k] with the parameters substituted (what is below copied by copy when `deep`, else by own) */
  #value(o: Cell, k: string, deep: boolean): unknown {
    const v = o[k];
    return typeof v === 'number'
      ? substitute(this, k, v, o)
      : typeof v === 'string'
        ? this.#text(v)
        : deep
          ? this.copy(v)
          : this.own(v);
  }

  /** a text of the template with the walk's source port for the template's */
  #text(v: string): string {
    const texts = this.plan.texts;
    let parts = texts.get(v);
    if (parts === undefined) texts.set(v, (parts = v.split(this.plan.sportRe)));
    const port = String(this.sport);
    return parts.length === 2 ? parts[0] + port + parts[1] : parts.join(port);
  }

  /**
   * the copy of an object of a type whose fields are its type's, in its order (Plan.literal), made
   * as one object literal: a spread copy of a frozen object, then frozen, costs ~4 times as much
   */
  #literal(x: Literal, keys: readonly string[]): Literal {
    // (a field that does not change is read by its name: a load of one shape, not a keyed one of
    // every Literal's; one that does goes through #value)
    const o = x as unknown as Cell;
    const ch = (k: string) => keys.includes(k);
    if (x.kind === 'delivered')
      return Object.freeze({
        kind: x.kind,
        netns: ch('netns') ? (this.#value(o, 'netns', false) as string) : x.netns,
        device: ch('device') ? (this.#value(o, 'device', false) as string) : x.device,
        to: ch('to') ? (this.#value(o, 'to', false) as string) : x.to,
      });
    return {
      kind: x.kind,
      netns: ch('netns') ? (this.#value(o, 'netns', false) as string) : x.netns,
      local: ch('local') ? (this.#value(o, 'local', false) as string) : x.local,
      lport: ch('lport') ? (this.#value(o, 'lport', false) as number) : x.lport,
      remote: ch('remote') ? (this.#value(o, 'remote', false) as string) : x.remote,
      rport: ch('rport') ? (this.#value(o, 'rport', false) as number) : x.rport,
    };
  }
}

/** what a replay substitutes (a Replayed's parameters; the template's own when recording) */
type Params = Replayed;

/**
 * The replayed walks of one plan, a row of numbers each (its clock shift and its pv), no object:
 * what a replay's outputs that are made when read are made from (its Replayed, made again). Every
 * replayed walk's captures, sockets and timers live on in the world, and every object a walk keeps
 * is one the garbage collector copies and marks again.
 */
class ReplayRows {
  #rows = new Float64Array(0);
  /** rows written */
  #n = 0;

  constructor(
    readonly plan: Plan,
    /** 1 + a pv's length */
    readonly width: number,
  ) {}

  /** a row for this walk's parameters: its index */
  add(dt: number, pv: readonly number[]): number {
    const w = this.width;
    if ((this.#n + 1) * w > this.#rows.length) this.#rows = grow(this.#rows, Math.max(16, 2 * this.#n) * w);
    const at = this.#n * w;
    this.#rows[at] = dt;
    for (let i = 1; i < w; i++) this.#rows[at + i] = pv[i - 1];
    return this.#n++;
  }

  /** the record of the walk of row i, made again */
  replayed(i: number): Replayed {
    const plan = this.plan;
    const at = i * this.width;
    const pv = Array.from(this.#rows.subarray(at + 1, at + this.width));
    const sport = pv[0];
    return new Replayed(plan, this.#rows[at], pv, plan.isns.client(sport), plan.isns.server(sport));
  }
}

/**
 * The replayed walks of one plan whose captures are not made yet, in the order replayed: the
 * world's CaptureBatch for them (World.captureLater; each make makes the next walk's, from its row
 * of the plan's `rows`: every replay of a plan with captures takes once, so the i-th taking is the
 * i-th replay's)
 */
class ReplayLog implements CaptureBatch {
  /** the row the next make reads */
  #next = 0;

  constructor(readonly plan: Plan) {}

  make(into: Capture[]): void {
    this.plan.rows!.replayed(this.#next++).capture(into);
  }
}

/** the objects a replay copies as a literal of their type (Plan.literal) */
type Literal = Extract<Disposition, { kind: 'delivered' }> | Extract<TimerEvent, { kind: 'tcp-rto' }>;

/** the fields of each Literal kind in its type's order, and whether the object is frozen */
const LITERALS: Record<Literal['kind'], { fields: string; frozen: boolean }> = {
  delivered: { fields: 'kind,netns,device,to', frozen: true },
  'tcp-rto': { fields: 'kind,netns,local,lport,remote,rport', frozen: false },
};

/** x is a Literal: its kind's fields, in that order, frozen as the kind's are */
function isLiteral(x: object): boolean {
  const kind = (x as { kind?: unknown }).kind;
  if (kind !== 'delivered' && kind !== 'tcp-rto') return false;
  const l = LITERALS[kind];
  return isPlain(x) && Object.keys(x).join() === l.fields && Object.isFrozen(x) === l.frozen;
}

/**
 * The plan of a template walk (`b` taken before it, `w` the walk), or why it cannot be replayed.
 * The caller has checked that the walk wrote nothing a replay does not write (flow-cache.ts's
 * recording conditions: no entry or socket changed or gone, only counters and times otherwise).
 */
export function makePlan(c: Cluster, b: LiveBefore, w: Walk, sport: number, steps: boolean): Plan | string {
  const flow = w.request.flow;
  if (flow.proto !== 'tcp' || flow.dport === undefined) return 'not-tcp';
  const world = c.world;
  const t0 = b.t0;
  const adds: Add[] = [];
  const sets: Sets = { updated: [], used: [], confirmed: [] };
  for (const x of b.cells) {
    const now = x.obj[x.key] as number;
    if (now === x.v) continue;
    if (isTimeWritten(x.key)) {
      if (now < t0) return 'time-before-walk';
      sets[x.key].push({ obj: x.obj as never, off: now - t0 });
    } else adds.push({ obj: x.obj, key: x.key, d: now - x.v });
  }
  const ipIds: Plan['ipIds'] = [];
  const mibs: Plan['mibs'] = [];
  const ct: { ns: Netns; d: CtEntryData }[] = [];
  const tcp: Omit<PlanSocket, 'deferred'>[] = [];
  for (const ns of world.netns.values()) {
    const before = b.ipIds.get(ns);
    if (before === undefined) return 'new-netns';
    const d = (ns.ipId - before) & 0xffff;
    if (d) ipIds.push({ ns, d, before, addrs: [...ns.addresses()].map((a) => a.addr.ip) });
    const mb = b.mibs.get(ns)!;
    for (const [name, v] of ns.mib) {
      const was = mb.get(name) ?? 0;
      if (v !== was) mibs.push({ ns, name, d: v - was });
    }
    const made = ns.conntrack.listedCount - b.ct.get(ns)!;
    const entries = made < 0 ? undefined : ns.conntrack.lastListed(made);
    if (!entries) return 'ct-gone';
    for (const e of entries) ct.push({ ns, d: plainEntry(e) });
    const conns = ns.tcp.list();
    const tcpBefore = b.tcp.get(ns)!;
    if (conns.length < tcpBefore) return 'tcp-gone';
    // as they are now: the sockets live on (a timer may change them before a replay)
    for (let i = tcpBefore; i < conns.length; i++) {
      const k = deepCopy(conns[i]);
      // a request's SYN-ACK options: frozen, one object per set of values, shared by the sockets
      // (sockets.ts's synackOptions): kept as the same object
      const opts = conns[i].synackOpts;
      if (opts && Object.isFrozen(opts)) k.synackOpts = opts;
      const keys = Object.keys(k);
      const made = Object.keys(copyConn(k));
      const rest = keys.slice(0, made.length).join() === made.join() ? keys.slice(made.length) : undefined;
      tcp.push({ ns, c: k, rest });
    }
  }
  // an address two senders share (each namespace's 127.0.0.1) names no one sender: a packet from it
  // in the walk makes the walk not replayable
  const senders = new Map<string, number>();
  for (const x of ipIds) for (const a of x.addrs) senders.set(a, (senders.get(a) ?? 0) + 1);
  for (const x of ipIds) x.addrs = x.addrs.filter((a) => senders.get(a) === 1);
  // no timer ran (every one armed before is there, and every one the walk armed)
  if (world.timerCount !== b.timers + (world.timerSeq - b.seq)) return 'timer-ran';
  const timers: Plan['timers'] = world.timers
    .filter((t) => t.seq >= b.seq)
    .sort((x, y) => x.seq - y.seq)
    .map((t) => ({ off: t.at - t0, ev: deepCopy(t.ev) }));
  const captures: Plan['captures'] = [];
  for (let i = b.captures; i < world.captures.length; i++) {
    const x = world.captures[i];
    if (!(x instanceof DeviceCapture)) return 'capture';
    const { at, repr } = x.parts;
    captures.push({ off: x.time - t0, at, repr });
  }
  // the VXLAN source ports: each must be udp_flow_src_port of the walk's flow on its device
  const vxlan: VxlanPort[] = [];
  const seenPorts = new Set<number>();
  const reprs: (Frame | Ipv4Packet)[] = captures.map((x) => x.repr);
  for (const t of w.traces)
    for (const s of t.steps) {
      const wire = stepWire(s);
      if (wire) reprs.push(wire.repr);
    }
  for (const r of reprs) if (sources(r).some((a) => (senders.get(a) ?? 0) > 1)) return 'shared-address';
  for (const r of reprs) {
    const pkt = 'eth' in r ? (r.payload.kind === 'ipv4' ? r.payload : undefined) : r;
    const l4 = pkt?.payload;
    if (!pkt || l4?.kind !== 'udp' || l4.payload.kind !== 'vxlan') continue;
    const port = l4.udp.srcPort;
    if (seenPorts.has(port)) continue;
    seenPorts.add(port);
    const range = vxlanRange(c, pkt.ip.src);
    if (!range) return 'vxlan-device';
    if (vxlanTuplePort(world, range, IPPROTO_TCP, flow.src, sport, flow.dst, flow.dport) !== port)
      return 'vxlan-port';
    if (port === sport) return 'vxlan-port';
    vxlan.push({ port, range, of: vxlanPortsOf(world, range, IPPROTO_TCP, flow.src, flow.dst, flow.dport) });
  }
  // the walk's conntrack lookups found those it made, or entries it refreshed: each as it was
  // (the observer's) and as it is now
  const made = new Set<string>();
  for (const x of ct) made.add(`${x.ns.name} ${tupleKey(x.d.orig)}`);
  const refresh: { ns: Netns; before: CtEntryData; after: CtEntryData }[] = [];
  const refreshed = new Set<string>();
  for (const t of w.traces)
    for (const s of t.steps) {
      if (s.ev.type !== 'conntrack') continue;
      const key = tupleKey(s.ev.orig);
      const id = `${s.netns} ${key}`;
      if (made.has(id) || refreshed.has(id)) continue;
      const ns = world.ns(s.netns);
      const before = b.found.get(ns.conntrack)?.get(key);
      const now = ns.conntrack.find(s.ev.orig);
      if (!before || !now || now.dir !== 'original' || s.ev.dir !== 'original') return 'ct-hit';
      const after = plainEntry(now.entry.data());
      if (Object.keys(before).join() !== CT_FIELDS || Object.keys(after).join() !== CT_FIELDS)
        return 'ct-shape';
      // a UDP entry that has seen a reply: its hit reads the stream timeout's clock (not replayed)
      if (before.seenReply && before.orig.proto === 17) return 'ct-hit';
      // (refreshRow's: a confirmed entry it refreshes)
      if (!before.confirmed) return 'ct-hit';
      refreshed.add(id);
      refresh.push({ ns, before, after });
    }
  // each socket made is the only one of its four-tuple
  for (const x of tcp)
    if (x.ns.tcp.getAll(x.c.local, x.c.lport, x.c.remote, x.c.rport).length !== 1) return 'tcp-hit';
  // the entries as the columns keep them (an entry they would keep as its object is not replayed)
  const at = { t0, sport, vxlan };
  const planCt: PlanEntry[] = [];
  for (const x of ct) {
    const e = planEntry(x.ns, x.d, at);
    if (!e) return 'ct-shape';
    planCt.push(e);
  }
  const planRefresh: PlanRefresh[] = [];
  for (const x of refresh) {
    const e = planEntry(x.ns, x.after, at);
    const was = ctRowOf(x.before);
    if (!e || !was || was.keys.join() !== e.row.keys.join()) return 'ct-shape';
    e.was = was;
    planRefresh.push(e as PlanRefresh);
  }
  if (planCt.length + planRefresh.length > MAX_CASE_ENTRIES) return 'ct-many';
  const isns = isnsOf(world, flow.src, flow.dst, flow.dport);
  const plan: Plan = {
    t0,
    duration: world.now - t0,
    sport,
    src: flow.src,
    dst: flow.dst,
    dport: flow.dport,
    isnC: isns.client(sport),
    isnS: isns.server(sport),
    isns,
    timers,
    counts: countsOf(adds),
    sets,
    ipIds,
    mibs,
    ct: planCt,
    refresh: planRefresh,
    tcp: [],
    captures,
    traces: w.traces,
    ts: b.ts.slice(),
    tsTwins: twinsOf(b.ts),
    vxlan,
    steps,
    sportRe: portRe(sport),
    texts: new Map(),
    idOf: new Map(ipIds.flatMap((x, i) => x.addrs.map((a) => [a, i] as [string, number]))),
    touched: new WeakMap(),
    shared: new WeakSet(),
    literal: new WeakSet(),
    log: undefined,
    rows: undefined,
    queues: [],
  };
  // (each a literal of PlanSocket's fields: a spread's copies took a hidden class each, and the
  // replay's reads of them went megamorphic)
  for (const x of tcp)
    plan.tcp.push({ ns: x.ns, c: x.c, rest: x.rest, deferred: new DeferredSocket(plan, plan.tcp.length) });
  // (a replay's timer: the template's event copied with the replay's parameters, as it was armed)
  for (const t of timers) plan.queues.push(new TimerQueue((row) => plan.rows!.replayed(row).own(t.ev)));
  const p = recordParams(plan);
  const shape = shapeOf(p, ct, tcp);
  if (shape) return shape;
  const seen = new Set<object>();
  const mark = (x: unknown) => markTouched(p, x, plan.touched, seen, false, plan.shared);
  for (const x of timers) mark(x.ev);
  // (a timer's event and a trace's disposition of a Literal type: copied as a literal)
  for (const x of [...timers.map((t) => t.ev), ...w.traces.map((t) => t.disposition)])
    if (isLiteral(x)) plan.literal.add(x);
  for (const x of tcp) {
    // (frozen options are shared: copied only where a parameter is in them)
    if (x.c.synackOpts)
      markTouched(p, x.c.synackOpts, plan.touched, seen, !Object.isFrozen(x.c.synackOpts), plan.shared);
    if (x.c.lastSyn) markTouched(p, x.c.lastSyn, plan.touched, seen, true, plan.shared);
  }
  for (const x of captures) mark(x.repr);
  for (const t of w.traces) {
    mark(t.flow);
    mark(t.disposition);
    mark(t.counters);
    for (const s of t.steps) {
      mark(s.ev);
      const wire = stepWire(s);
      if (wire) mark(wire.repr);
    }
  }
  return plan;
}

/** the places of each timestamp made again at another time, after the first's (Plan.tsTwins) */
export function twinsOf(log: readonly number[]): number[] {
  const out: number[] = [];
  for (let j = 2; j < log.length; j += 2) {
    let i = 0;
    while (log[i] !== log[j]) i += 2;
    if (i < j && log[i + 1] !== log[j + 1]) out.push(i, j);
  }
  return out;
}

/** a copy of plain objects, arrays and Maps all the way down (byte arrays and class instances shared) */
function deepCopy<T>(x: T): T {
  if (!x || typeof x !== 'object') return x;
  if (x instanceof Map) return new Map([...x].map(([k, v]) => [k, deepCopy(v)])) as T;
  if (!isPlain(x)) return x;
  if (Array.isArray(x)) return x.map((v: unknown) => deepCopy(v)) as T;
  // by spread, then the objects below (an object made field by field past a dozen fields would be
  // a slow dictionary, and so would every copy of it)
  const out: Cell = { ...(x as Cell) };
  for (const k of Object.keys(x)) {
    const v = out[k];
    if (v && typeof v === 'object') out[k] = deepCopy(v);
  }
  return out as T;
}

/** the fields of a conntrack entry's data and of its tuples as the columns give them back (ctRowOf's) */
const CT_FIELDS =
  'orig,reply,expires,seenReply,assured,confirmed,streamTs,mark,snat,dnat,snatDone,dnatDone,tcpState';
const TUPLE_FIELDS = 'proto,src,dst,sport,dport';
/** the fields of a socket connFor changes (the others are the template's; a socket with others is not replayed) */
const CONN_CHANGED = new Set([
  'lport',
  'rport',
  'sndNxt',
  'rcvNxt',
  'sndUna',
  'tsRecent',
  'rtoAt',
  'establishedAt',
  'retransStamp',
  'unacked',
  'ofo',
  'synackOpts',
  'lastSyn',
]);

function port(p: Params, v: number): number {
  return p.portOf(v) ?? v;
}

/** a socket of the template for this walk: every object of its own, the parameters substituted */
function connFor(p: Params, x: Omit<PlanSocket, 'deferred'>): TcpConn {
  const c = x.c;
  let k: TcpConn;
  if (x.rest === undefined) k = { ...c };
  else {
    k = copyConn(c);
    for (const f of x.rest) (k as unknown as Cell)[f] = (c as unknown as Cell)[f];
  }
  k.lport = port(p, c.lport);
  k.rport = port(p, c.rport);
  k.sndNxt = seqOf(p, c.sndNxt);
  k.rcvNxt = seqOf(p, c.rcvNxt);
  k.sndUna = seqOf(p, c.sndUna);
  k.tsRecent = p.tsOf(c.tsRecent) ?? c.tsRecent;
  const t0 = p.plan.t0;
  if (c.rtoAt !== undefined && c.rtoAt >= t0) k.rtoAt = c.rtoAt + p.dt;
  if (c.establishedAt !== undefined && c.establishedAt >= t0) k.establishedAt = c.establishedAt + p.dt;
  if (c.retransStamp !== undefined && c.retransStamp >= t0) k.retransStamp = c.retransStamp + p.dt;
  // (empty: the one every socket shares until a segment waits unacknowledged, as sockets.ts's)
  k.unacked = c.unacked.length
    ? c.unacked.map((u) => ({
        seq: seqOf(p, u.seq),
        data: u.data,
        psh: u.psh,
      }))
    : NO_UNACKED;
  // (empty: shapeOf's) the queue every socket shares until a segment waits in it
  k.ofo = NO_OFO;
  if (c.synackOpts) k.synackOpts = p.own(c.synackOpts);
  if (c.lastSyn) k.lastSyn = p.own(c.lastSyn);
  return k;
}

/**
 * The maker of a replay's copy of the plan's i-th template socket (PlanSocket's `deferred`): the
 * socket table holds the replay's row in the plan's `rows` until the socket is first read
 */
class DeferredSocket implements DeferredEntry<TcpConn> {
  constructor(
    readonly plan: Plan,
    readonly i: number,
  ) {}

  make(row: number): TcpConn {
    return connFor(this.plan.rows!.replayed(row), this.plan.tcp[this.i]);
  }
}

/** why a template's conntrack entry or socket cannot be replayed as a row or by connFor (undefined: it can) */
function shapeOf(
  p: Params,
  ct: readonly { d: CtEntryData }[],
  tcp: readonly Omit<PlanSocket, 'deferred'>[],
): string | undefined {
  for (const x of ct) {
    if (Object.keys(x.d).join() !== CT_FIELDS) return 'ct-shape';
    if (Object.keys(x.d.orig).join() !== TUPLE_FIELDS || Object.keys(x.d.reply).join() !== TUPLE_FIELDS)
      return 'ct-shape';
  }
  for (const x of tcp) {
    const o = x.c as unknown as Cell;
    for (const k of Object.keys(o)) {
      const v = o[k];
      if (CONN_CHANGED.has(k) || k === 'toSend') continue;
      if ((v && typeof v === 'object') || touches(p, k, v, o)) return 'tcp-shape';
    }
    if (x.c.ofo.size) return 'tcp-shape';
    for (const u of x.c.unacked) if (Object.keys(u).join() !== 'seq,data,psh') return 'tcp-shape';
  }
  return undefined;
}

/** an entry's data as a plain object of its own (the table's view objects are made again when read) */
function plainEntry(e: CtEntryData): CtEntryData {
  return { ...e, orig: { ...e.orig }, reply: { ...e.reply } };
}

/** the IP sources of a frame or packet, the encapsulated ones too */
function sources(r: Frame | Ipv4Packet, out: string[] = []): string[] {
  const pkt = 'eth' in r ? (r.payload.kind === 'ipv4' ? r.payload : undefined) : r;
  if (!pkt) return out;
  out.push(pkt.ip.src);
  const l4 = pkt.payload;
  if (l4.kind === 'udp' && l4.payload.kind === 'vxlan') sources(l4.payload.frame, out);
  else if (l4.kind === 'ipip') sources(l4.inner, out);
  return out;
}

/** the source port range of the VXLAN device that sends from `local` */
function vxlanRange(c: Cluster, local: string): VxlanPort['range'] | undefined {
  for (const ns of c.world.netns.values())
    for (const l of ns.links.values())
      if (l.type === 'vxlan' && l.local === local)
        return { srcPortMin: l.srcPortMin, srcPortMax: l.srcPortMax };
  return undefined;
}

/** what a walk added to a numeric field of a live object */
interface Add {
  obj: Cell;
  key: string;
  d: number;
}

/** a plan's counter additions by object: one entry an object, its fields named in the code */
interface Counts {
  nf: { o: { pkts: number; bytes: number }; p: number; b: number }[];
  dev: {
    o: { rxPackets: number; rxBytes: number; txPackets: number; txBytes: number };
    rp: number;
    rb: number;
    tp: number;
    tb: number;
  }[];
  rest: Add[];
}

const NF_KEYS = ['pkts', 'bytes'];
const DEV_KEYS = ['rxPackets', 'rxBytes', 'txPackets', 'txBytes'];

/** the adds by object: those of a netfilter counter's or a device's numeric fields together */
function countsOf(adds: readonly Add[]): Counts {
  const by = new Map<Cell, Map<string, number>>();
  for (const a of adds) {
    let m = by.get(a.obj);
    if (!m) by.set(a.obj, (m = new Map()));
    m.set(a.key, (m.get(a.key) ?? 0) + a.d);
  }
  const out: Counts = { nf: [], dev: [], rest: [] };
  const all = (o: Cell, keys: string[]) => keys.every((k) => typeof o[k] === 'number');
  for (const [obj, m] of by) {
    const d = (k: string) => m.get(k) ?? 0;
    const only = (keys: string[]) => [...m.keys()].every((k) => keys.includes(k));
    if (only(NF_KEYS) && all(obj, NF_KEYS))
      out.nf.push({ o: obj as unknown as Counts['nf'][number]['o'], p: d('pkts'), b: d('bytes') });
    else if (only(DEV_KEYS) && all(obj, DEV_KEYS))
      out.dev.push({
        o: obj as unknown as Counts['dev'][number]['o'],
        rp: d('rxPackets'),
        rb: d('rxBytes'),
        tp: d('txPackets'),
        tb: d('txBytes'),
      });
    else for (const [key, v] of m) out.rest.push({ obj, key, d: v });
  }
  return out;
}

/** the counters' additions (adding 0 to a field of the same object leaves it as it was) */
function addAll(c: Counts): void {
  const nf = c.nf;
  for (let i = 0; i < nf.length; i++) {
    const x = nf[i];
    x.o.pkts += x.p;
    x.o.bytes += x.b;
  }
  const dev = c.dev;
  for (let i = 0; i < dev.length; i++) {
    const x = dev[i];
    const o = x.o;
    o.rxPackets += x.rp;
    o.rxBytes += x.rb;
    o.txPackets += x.tp;
    o.txBytes += x.tb;
  }
  const rest = c.rest;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    (a.obj as Record<string, number>)[a.key] += a.d;
  }
}

/** a TCP timestamp v made at the clock's `at` (µs), made dt later: its ms moved, the pair's offset kept */
function tsMoved(v: number, at: number, dt: number): number {
  return (v - Math.floor(at / 1000) + Math.floor((at + dt) / 1000)) >>> 0;
}

/**
 * two timestamps of one value the template made at different times (plan.tsTwins: the log's
 * places of each) that a replay dt later would part (each is one value to substitute)
 */
export function tsPart(plan: Pick<Plan, 'ts' | 'tsTwins'>, dt: number): boolean {
  const log = plan.ts;
  const twins = plan.tsTwins;
  for (let i = 0; i < twins.length; i += 2) {
    const a = twins[i];
    const b = twins[i + 1];
    if (tsMoved(log[a], log[a + 1], dt) !== tsMoved(log[b], log[b + 1], dt)) return true;
  }
  return false;
}

/** a capture of a replayed walk: its packet made from the template's when first read */
class ReplayedCapture implements Capture {
  constructor(
    readonly x: Plan['captures'][number],
    readonly r: Replayed,
  ) {}

  get time(): number {
    return this.r.plan.t0 + this.r.dt + this.x.off;
  }

  get at(): CapturePoint {
    return this.x.at;
  }

  get netns(): string {
    return this.at.netns;
  }

  get dev(): string {
    return this.at.dev;
  }

  get dir(): 'in' | 'out' {
    return this.at.dir;
  }

  get promisc(): boolean {
    return this.at.promisc;
  }

  get frame(): Uint8Array {
    let b = replayedBytes.get(this);
    if (!b) replayedBytes.set(this, (b = emitRepr(this.r.copy(this.x.repr))));
    return b;
  }
}

/** the bytes of the replayed captures read so far (few are: a slot in every capture would be kept for none) */
const replayedBytes = new WeakMap<ReplayedCapture, Uint8Array>();

/** a trace of a replayed walk: its steps made from the template's when first read */
class ReplayedTrace implements Trace {
  #steps: readonly Step[] | undefined;
  #hops: readonly Hop[] | undefined;
  #flow: Flow | undefined;
  #disposition: Disposition | undefined;
  #counters: Trace['counters'] | undefined;

  constructor(
    readonly template: Trace,
    readonly r: Replayed,
  ) {
    // frozen as a walked trace is (freezeTrace's; what it makes when read is in private fields)
    Object.freeze(this);
  }

  get flow(): Flow {
    return (this.#flow ??= this.r.copy(this.template.flow));
  }

  get disposition(): Disposition {
    return (this.#disposition ??= this.r.copy(this.template.disposition));
  }

  get counters(): Trace['counters'] {
    return (this.#counters ??= this.r.copy(this.template.counters));
  }

  get steps(): readonly Step[] {
    if (this.#steps === undefined) {
      const c = this.r;
      const dt = c.dt;
      this.#steps = Object.freeze(
        this.template.steps.map((s) => {
          const wire = stepWire(s);
          let w = wire;
          if (wire && c.plan.touched.has(wire.repr)) {
            const r = c.copy(wire.repr);
            w = 'eth' in r ? WireBytes.frame(r) : WireBytes.ip(r);
          }
          return recordedStep(s, c.copy(s.ev), w, s.time + dt);
        }),
      );
    }
    return this.#steps;
  }

  get hops(): readonly Hop[] {
    return (this.#hops ??= frozenHops(this.steps));
  }
}

/**
 * what replayPlan gives: the walk, written; or nothing written and why: `present`, the conntrack
 * entries the template's walk made or refreshed that are there now (bit i, 2^i, the plan's entry i
 * of its made, then refreshed ones: MAX_CASE_ENTRIES at most; the key of the template of that
 * case); `refused`, a replay that cannot be computed
 */
export type ReplayResult = Walk | { present: number } | { refused: string };

/** a plan's conntrack entries, made and refreshed, at most (each a bit of an exact double) */
const MAX_CASE_ENTRIES = 52;

const refused = (why: string) => ({ refused: why });

/** replayPlan's sockets' index keys (an array for every replay: none keeps it) */
const CONN_KEYS: number[] = [];

/**
 * Write the plan for a walk from `sport` now, and return the walk; nothing written when the
 * conntrack entries it makes or refreshes are not (or are) there as the template's walk found
 * them, or when the replay cannot be computed (a socket it would make is taken, two timestamps the
 * template made in one ms would part, an entry it refreshes is not as it was)
 */
export function replayPlan(c: Cluster, plan: Plan, sport: number): ReplayResult {
  const world = c.world;
  const t0 = world.now;
  const dt = t0 - plan.t0;
  if (dt < 0) return refused('clock');
  // the port parameters by number (PlanEntry's): the source port, then each VXLAN source port
  const vx = plan.vxlan;
  const ipIds = plan.ipIds;
  // (then the IP id shifts: Replayed's pv)
  const pv: number[] = new Array<number>(1 + vx.length + ipIds.length);
  pv[0] = sport;
  for (let i = 0; i < vx.length; i++) pv[i + 1] = vx[i].of(sport);
  // what it makes must not be there, what it refreshes must be, as it was (else: which are there,
  // the key of the template of that case: `present`, a bit an entry)
  let present = 0;
  let bit = 1;
  for (let i = 0; i < plan.ct.length; i++, bit *= 2) {
    const x = plan.ct[i];
    const keys = fillKeys(x, pv);
    const ct = x.ns.conntrack;
    if (ct.rowOfKey(keys, 0) >= 0 || ct.rowOfKey(keys, 1) >= 0) present += bit;
  }
  // (those it makes must all be absent; those it refreshes all there)
  const madeThere = present !== 0;
  let missing = false;
  for (let i = 0; i < plan.refresh.length; i++, bit *= 2) {
    const x = plan.refresh[i];
    const keys = fillKeys(x, pv);
    const ct = x.ns.conntrack;
    // found by its original tuple, with both tuples, the status, TCP state and mark as the template's found it
    const r = (x.hit = ct.rowOfKey(keys, 0));
    if (r < 0) missing = true;
    else if (!ct.rowIs(r, keys, x.was)) return refused('ct-state');
    else present += bit;
  }
  if (madeThere || missing) return { present };
  // two timestamps the template made of one value that would part
  if (plan.tsTwins.length && tsPart(plan, dt)) return refused('timestamps');
  for (let i = 0; i < ipIds.length; i++)
    pv[1 + vx.length + i] = (ipIds[i].ns.ipId - ipIds[i].before) & 0xffff;
  const isnC = plan.isns.client(sport);
  const isnS = plan.isns.server(sport);
  const r = new Replayed(plan, dt, pv, isnC, isnS);
  // (a socket's tuple: its template's addresses, its ports connFor's)
  for (let i = 0; i < plan.tcp.length; i++) {
    const x = plan.tcp[i];
    const c = x.c;
    const lport = port(r, c.lport);
    const rport = port(r, c.rport);
    const at = (CONN_KEYS[i] = x.ns.tcp.key(c.local, lport, c.remote, rport));
    if (x.ns.tcp.newestAt(at, c.local, lport, c.remote, rport) !== undefined) return refused('socket-taken');
  }
  // the writes, in the order the walk made them where the order is kept; what is made when read
  // (sockets, timers' events, captures) from the replay's row of numbers
  const row = (plan.rows ??= new ReplayRows(plan, 1 + pv.length)).add(dt, pv);
  for (let i = 0; i < plan.timers.length; i++) world.armQueued(plan.queues[i], plan.timers[i].off + t0, row);
  addAll(plan.counts);
  // (by field: each store of one name, to objects of few shapes)
  const sets = plan.sets;
  for (let i = 0; i < sets.updated.length; i++) {
    const s = sets.updated[i];
    s.obj.updated = t0 + s.off;
  }
  for (let i = 0; i < sets.used.length; i++) {
    const s = sets.used[i];
    s.obj.used = t0 + s.off;
  }
  for (let i = 0; i < sets.confirmed.length; i++) {
    const s = sets.confirmed[i];
    s.obj.confirmed = t0 + s.off;
  }
  for (let i = 0; i < plan.ipIds.length; i++) {
    const x = plan.ipIds[i];
    x.ns.ipId = (x.ns.ipId + x.d) & 0xffff;
  }
  for (let i = 0; i < plan.mibs.length; i++) {
    const m = plan.mibs[i];
    const mib = m.ns.own('mib');
    mib.set(m.name, (mib.get(m.name) ?? 0) + m.d);
  }
  for (let i = 0; i < plan.ct.length; i++) {
    const x = plan.ct[i];
    const r = x.row;
    x.ns.conntrack.insertRow(
      r,
      x.keys,
      x.shiftExpires ? r.expires + dt : r.expires,
      x.shiftStream ? r.streamTs + dt : r.streamTs,
    );
  }
  for (let i = 0; i < plan.refresh.length; i++) {
    const x = plan.refresh[i];
    x.ns.conntrack.refreshRow(x.hit, x.row, x.shiftExpires ? x.row.expires + dt : x.row.expires);
  }
  // the sockets, each made when first read (most never are: the replay's row is what they keep),
  // but one whose tuple the table indexes by its quadKey (the socket is its own key)
  for (let i = 0; i < plan.tcp.length; i++) {
    const x = plan.tcp[i];
    const k = CONN_KEYS[i];
    if (k < 0) x.ns.tcp.addAt(connFor(r, x), k);
    else x.ns.tcp.addDeferredAt(x.deferred, row, k);
  }
  if (plan.captures.length) {
    world.captureLater((plan.log ??= new ReplayLog(plan)));
  }
  world.now = t0 + plan.duration;
  // (a recorder as a walk leaves it: the world's is kept when it is as a new one would be, nothing
  // recorded in it, keeping what this one would: the one the last replay left, mostly)
  if (!world.rec.fresh(plan.steps, true)) world.rec = new Recorder(world, plan.steps, true);
  const traces = plan.traces.map((t) => new ReplayedTrace(t, r));
  return { request: traces[0], reply: traces[1], traces };
}
