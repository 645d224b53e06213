/**
 * The world: every network namespace of a cluster (nodes, pods, underlay segments, router),
 * a simulated clock, the frames seen on every device, and the recorder the datapath writes steps to.
 */
import type { CounterEvent, Layer, Step, StepEvent, StepKind } from './events.ts';
import { heapPop, heapPush } from './heap.ts';
import { Netns, type NetnsRole } from './objects.ts';
import { more } from './table.ts';
import { emitRepr, type WireBytes } from './wire-bytes.ts';
import type { Frame, Ipv4Packet } from '../wire/types.ts';

/**
 * What a kernel timer does when it fires: plain data naming the object whose timer it is (the
 * handler lives in the datapath, stack.ts). One timer per object as in the kernel (mod_timer): the
 * object holds the expiry it armed, and a queued timer whose expiry no longer matches is stale.
 */
export type TimerEvent =
  /** neigh_timer_handler of one neighbour entry */
  | { kind: 'neigh'; netns: string; ip: string; dev: string }
  /** tcp_write_timer → tcp_retransmit_timer of one connection */
  | { kind: 'tcp-rto'; netns: string; local: string; lport: number; remote: string; rport: number }
  /**
   * a timer of a process running in the namespace (its poll timeout): `app` names the process
   * (Stack.apps), `id` what the timer is for in it (the handler is the process's, not the kernel's)
   */
  | { kind: 'app'; netns: string; app: string; id: string };

export interface Timer {
  /** µs on the simulated clock */
  at: number;
  /** insertion order: timers due at the same µs fire in the order they were armed */
  seq: number;
  ev: TimerEvent;
}

export interface Capture {
  /** µs */
  readonly time: number;
  readonly netns: string;
  readonly dev: string;
  readonly dir: 'in' | 'out';
  readonly frame: Uint8Array;
  /** seen only because the capture put the device in promiscuous mode (a bridge's view of
   * traffic it forwards between ports); `tcpdump -p` leaves these out */
  readonly promisc: boolean;
}

/**
 * captures taken together and made when read (World.captureLater); a batch given again stands
 * for its next captures (a flow cache's plan: each replayed walk's)
 */
export interface CaptureBatch {
  /** push the captures of the batch's next taking (each call the next), in the order taken */
  make(into: Capture[]): void;
}

/** where a capture was taken: one record per device, direction and promiscuity, shared by its captures */
export interface CapturePoint {
  readonly netns: string;
  readonly dev: string;
  readonly dir: 'in' | 'out';
  readonly promisc: boolean;
}

/**
 * a frame the datapath captured: its bytes are emitted when first read (wire-bytes.ts), from the
 * representation it keeps (not the step's WireBytes), and where it was taken is a record shared
 * by the device's captures. Captures are kept, ~26 a walk: every object and field they keep is
 * one the garbage collector copies and marks again (three fields, not six plus a WireBytes)
 */
export class DeviceCapture implements Capture {
  readonly #at: CapturePoint;
  readonly #repr: Frame | Ipv4Packet;

  constructor(
    readonly time: number,
    at: CapturePoint,
    wire: WireBytes,
  ) {
    this.#at = at;
    this.#repr = wire.repr;
  }

  get netns(): string {
    return this.#at.netns;
  }

  get dev(): string {
    return this.#at.dev;
  }

  get dir(): 'in' | 'out' {
    return this.#at.dir;
  }

  get promisc(): boolean {
    return this.#at.promisc;
  }

  get frame(): Uint8Array {
    let b = captureBytes.get(this);
    if (!b) captureBytes.set(this, (b = emitRepr(this.#repr)));
    return b;
  }

  /** where it was taken and the representation it keeps (a flow cache's template reads them) */
  get parts(): { at: CapturePoint; repr: Frame | Ipv4Packet } {
    return { at: this.#at, repr: this.#repr };
  }
}

/** the bytes of the captures read so far (few are: a slot of their own in every capture would be kept for none) */
const captureBytes = new WeakMap<DeviceCapture, Uint8Array>();

/** a capture as plain data (the world's saved form), in the fields' order */
export function captureData(c: Capture): Capture {
  return { time: c.time, netns: c.netns, dev: c.dev, dir: c.dir, frame: c.frame, promisc: c.promisc };
}

/** FNV-1a over a string, 32-bit: the root of every seeded value (MACs, ports, ISNs). */
export function hash32(s: string): number {
  return fmix32(fnv1a(s, FNV_BASIS));
}

/** FNV-1a's state after `s`, from `h` (World.deriveStart's callers hash their key piece by piece with it) */
export function fnv1a(s: string, h: number): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h;
}

/** FNV-1a's state after the character (UTF-16 code unit) `c`, from `h` */
export function fnv1aChar(c: number, h: number): number {
  return Math.imul(h ^ c, 0x01000193);
}

/** FNV-1a's state after the decimal digits of a non-negative integer (String(n)'s), most significant first */
export function fnv1aUint(n: number, h: number): number {
  if (n <= 0x7fffffff) {
    // (integer arithmetic: a port's or a counter's digits)
    let d = 1;
    while (d <= n / 10) d *= 10;
    for (; d > 0; d = (d / 10) | 0) h = fnv1aChar(48 + (((n / d) | 0) % 10), h);
    return h;
  }
  let d = 1;
  while (d * 10 <= n) d *= 10;
  for (; d >= 1; d /= 10) h = fnv1aChar(48 + (Math.floor(n / d) % 10), h);
  return h;
}

/** the final avalanche (murmur3 fmix32) so that near-identical inputs spread */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** timer a falls due before timer b (at, then seq) */
function timerBefore(a: Timer, b: Timer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/** the order timers fall due in, as a sort's comparator (timerBefore's) */
export function timerOrder(a: Timer, b: Timer): number {
  return a.at - b.at || a.seq - b.seq;
}

/**
 * Timers armed elsewhere and made when read or due (World.armQueued: a flow cache's replays, each
 * arming its template's timer again): none falls due before one armed in the queue earlier, so the
 * World looks at its first only. A timer is three numbers (its due time, its insertion number and
 * the argument `make` makes its event from), no object, until it is read or falls due.
 */
export class TimerQueue {
  /** by queued timer i, at 3i: its due time, its insertion number, its argument */
  #q = new Float64Array(0);
  /** the first timer's place and the places used */
  #head = 0;
  #n = 0;
  /** the World the queue's timers are armed in (a queue is one World's) */
  world: World | undefined = undefined;

  constructor(readonly make: (arg: number) => TimerEvent) {}

  /** timers queued */
  get length(): number {
    return this.#n - this.#head;
  }

  /** due time of the first (the queue is not empty) */
  firstAt(): number {
    return this.#q[3 * this.#head];
  }

  /** insertion number of the first */
  firstSeq(): number {
    return this.#q[3 * this.#head + 1];
  }

  /** due time of the last (the queue is not empty) */
  lastAt(): number {
    return this.#q[3 * (this.#n - 1)];
  }

  push(at: number, seq: number, arg: number): void {
    const q = this.#q;
    if (3 * this.#n + 3 > q.length) {
      if (this.#head > 0 && this.#head * 2 >= this.#n) {
        // (half or more taken: the rest moved to the front)
        q.copyWithin(0, 3 * this.#head, 3 * this.#n);
        this.#n -= this.#head;
        this.#head = 0;
      } else this.#q = more(q, q.length);
    }
    const o = 3 * this.#n++;
    this.#q[o] = at;
    this.#q[o + 1] = seq;
    this.#q[o + 2] = arg;
  }

  /** the first, made and taken off (the queue is not empty) */
  shift(): Timer {
    const o = 3 * this.#head++;
    const q = this.#q;
    const t: Timer = { at: q[o], seq: q[o + 1], ev: this.make(q[o + 2]) };
    if (this.#head === this.#n) this.#head = this.#n = 0;
    return t;
  }
}

/** mulberry32: a small seeded PRNG in [0, 1), for generated scenarios and property tests */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** a byte as two lowercase hex digits */
const HEX2 = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * A locally administered unicast MAC derived from a seed string. One flat string (an array
 * joined): a template literal is a tree of cons strings over its parts (four of 32 bytes here),
 * which the devices that keep the MAC keep whole.
 */
export function derivedMac(seed: string): string {
  return derivedMacOf(fnv1a(seed, FNV_BASIS));
}

/** FNV-1a's start: hash32(s) is fmix32(fnv1a(s, FNV_BASIS)) */
export const FNV_BASIS = 0x811c9dc5;

/**
 * derivedMac of the seed whose FNV-1a state (from FNV_BASIS) is `h`: a caller that hashes its seed
 * piece by piece (fnv1a over each part in turn) makes no string of it
 */
export function derivedMacOf(h: number): string {
  // hash32(seed) and hash32(seed + '#'), the seed's characters read once
  const a = fmix32(h);
  const b = fmix32(fnv1a('#', h));
  return [
    '02',
    HEX2[(a >>> 24) & 0xff],
    HEX2[(a >>> 16) & 0xff],
    HEX2[(a >>> 8) & 0xff],
    HEX2[a & 0xff],
    HEX2[b & 0xff],
  ].join(':');
}

export type { CounterEvent };

/** what a step is recorded from: the frame's bytes as the device saw them, emitted when read */
export type StepInput = Pick<Step, 'kind' | 'layer' | 'netns' | 'device' | 'action' | 'ev'> & {
  wire?: WireBytes;
};

/** a recorded step; `frame` is emitted from the packet's representation when first read */
class RecordedStep implements Step {
  readonly #wire: WireBytes | undefined;

  constructor(
    readonly n: number,
    readonly kind: StepKind,
    readonly layer: Layer,
    readonly netns: string,
    readonly device: string | undefined,
    readonly action: string,
    readonly ev: StepEvent,
    wire: WireBytes | undefined,
    readonly time: number,
    readonly aux: string | undefined,
    readonly part: string | undefined,
  ) {
    this.#wire = wire;
  }

  get frame(): Uint8Array | undefined {
    return this.#wire?.bytes;
  }

  /** the wire bytes it was recorded with (a flow cache's template reads them) */
  get wire(): WireBytes | undefined {
    return this.#wire;
  }
}

/** a step as the recorder makes it (a flow cache's replay: a template's step with its values changed) */
export function recordedStep(s: Step, ev: StepEvent, wire: WireBytes | undefined, time: number): Step {
  return new RecordedStep(s.n, s.kind, s.layer, s.netns, s.device, s.action, ev, wire, time, s.aux, s.part);
}

/** the wire bytes a recorded step keeps */
export function stepWire(s: Step): WireBytes | undefined {
  return s instanceof RecordedStep ? s.wire : undefined;
}

export class Recorder {
  readonly steps: Step[] = [];
  readonly counters: CounterEvent[] = [];
  /** counters[mark…] rose after the last step */
  private mark = 0;
  /** the side exchange the next steps belong to (withAux nests: the innermost label) */
  private aux: string | undefined = undefined;
  part?: string;

  constructor(
    private readonly world: World,
    /**
     * false: nobody reads this recorder's steps (a daemon's own traffic while nobody traces or
     * captures, a walk of which only the outcome is wanted): they are not kept, and the hottest
     * are not even made; the walk and every state it changes are the same
     */
    readonly keeps = true,
    /**
     * the counters are kept (a drop carries those that rose since the last step, kept or not):
     * by default when the steps are
     */
    readonly counts = keeps,
  ) {}

  add(s: StepInput): void {
    this.record(s.kind, s.layer, s.netns, s.device, s.action, s.ev, s.wire);
  }

  /** nothing recorded nor marked since it was made, and made with these keeps and counts */
  fresh(keeps: boolean, counts: boolean): boolean {
    return (
      this.keeps === keeps &&
      this.counts === counts &&
      this.steps.length === 0 &&
      this.counters.length === 0 &&
      this.mark === 0 &&
      this.aux === undefined &&
      this.part === undefined
    );
  }

  /** add, the step's fields as arguments (the datapath's steps: no input object made per step) */
  record(
    kind: StepKind,
    layer: Layer,
    netns: string,
    device: string | undefined,
    action: string,
    ev: StepEvent,
    wire: WireBytes | undefined,
  ): void {
    if (!this.keeps) return this.passed();
    // one class for every step (absent fields are undefined): the recorder is on the hot path
    const step = new RecordedStep(
      this.steps.length + 1,
      kind,
      layer,
      netns,
      device,
      action,
      ev,
      wire,
      this.world.now,
      this.aux,
      this.part,
    );
    this.steps.push(step);
    this.mark = this.counters.length;
  }

  /** a counter rose */
  counter(e: CounterEvent): void {
    if (this.counts) this.counters.push(e);
  }

  /** a step the datapath passed without making its record (keeps false): later counters are the next step's */
  passed(): void {
    this.mark = this.counters.length;
  }

  /** the counters that rose since the last step */
  sinceLastStep(): CounterEvent[] {
    return this.counters.slice(this.mark);
  }

  /** the side exchange the next steps belong to now (kept with work the kernel defers: the backlog) */
  get side(): string | undefined {
    return this.aux;
  }

  /** run fn with its steps in side exchange `label` (undefined: the walked packet's own steps) */
  withAux<T>(label: string | undefined, fn: () => T): T {
    const outer = this.enterSide(label);
    try {
      return fn();
    } finally {
      this.leaveSide(outer);
    }
  }

  /**
   * withAux without a function (a caller on the hot path, which makes no closure per call): the
   * next steps are in side exchange `label` until leaveSide(what this returned)
   */
  enterSide(label: string | undefined): string | undefined {
    const outer = this.aux;
    this.aux = label;
    return outer;
  }

  leaveSide(outer: string | undefined): void {
    this.aux = outer;
  }
}

export class World {
  readonly netns = new Map<string, Netns>();
  /** µs since the cluster came up: the one clock of the model (never the wall clock) */
  now = 0;
  /** armed kernel timers but the queued ones, a binary min-heap on (at, seq) */
  readonly #heap: Timer[] = [];
  /** the TimerQueues armed in, and how many timers they hold */
  readonly #queues: TimerQueue[] = [];
  #queued = 0;
  /** the next timer's insertion number */
  timerSeq = 0;
  /** packets waiting in neighbour queues (arp_queue) for a resolution to end */
  unresolved = 0;
  /** what a fired timer does: set by the datapath (Stack); behaviour, not state */
  onTimer?: (ev: TimerEvent) => void;
  readonly #captures: Capture[] = [];
  /** captures taken and not made yet (CaptureBatch), in the order taken, all after #captures' */
  #later: CaptureBatch[] = [];
  /** how many takings of each of #later's batches in a row (its make called that many times) */
  #laterRuns: number[] = [];

  /**
   * the frames captured, in the order taken (tcpdump's, pcap's): those taken in batches made
   * first (captureLater's). Always the same array; read it again after walks rather than keeping
   * it across them: a replayed walk's captures are put in it when `captures` is next read
   */
  get captures(): Capture[] {
    if (this.#later.length) {
      const later = this.#later;
      const runs = this.#laterRuns;
      this.#later = [];
      this.#laterRuns = [];
      for (let i = 0; i < later.length; i++) for (let n = runs[i]; n > 0; n--) later[i].make(this.#captures);
    }
    return this.#captures;
  }

  /**
   * captures taken now, made when `captures` is next read (a flow cache's replayed walk: what its
   * captures are is known, and few are read)
   */
  captureLater(b: CaptureBatch): void {
    // (the same batch again: one more of its takings, no entry of its own)
    const last = this.#later.length - 1;
    if (last >= 0 && this.#later[last] === b) this.#laterRuns[last]++;
    else {
      this.#later.push(b);
      this.#laterRuns.push(1);
    }
  }

  /** steps go here while a walk is recorded */
  rec: Recorder;
  /** capture frames per device (tcpdump, pcap); off for benchmarks that do not need it */
  capture = true;

  constructor(readonly seed: string) {
    this.rec = new Recorder(this);
  }

  addNetns(name: string, role: NetnsRole): Netns {
    if (this.netns.has(name)) throw new Error(`netns "${name}" exists`);
    const ns = new Netns(name, role);
    this.netns.set(name, ns);
    return ns;
  }

  ns(name: string): Netns {
    const ns = this.netns.get(name);
    if (!ns) throw new Error(`no netns "${name}"`);
    return ns;
  }

  /** time passing inside one walk (a device hop, a host's reaction): no timer fires in between */
  tick(us: number): void {
    this.now += us;
  }

  /**
   * armed kernel timers, a binary min-heap on (at, seq); plain data (the queued timers are made
   * and put in it first: read it when a timer's data is needed, timerCount for how many)
   */
  get timers(): Timer[] {
    if (this.#queued) {
      for (const q of this.#queues) while (q.length) heapPush(this.#heap, q.shift(), timerBefore);
      this.#queued = 0;
    }
    return this.#heap;
  }

  /** how many timers are armed (none made) */
  get timerCount(): number {
    return this.#heap.length + this.#queued;
  }

  /** mod_timer: arm a timer at `at` µs (never in the past) */
  schedule(at: number, ev: TimerEvent): Timer {
    const t: Timer = { at: Math.max(at, this.now), seq: this.timerSeq++, ev };
    heapPush(this.#heap, t, timerBefore);
    return t;
  }

  /**
   * schedule of the timer whose event `q.make(arg)` makes, made when the timers are read or when
   * it falls due (in the heap at once if it would fall due before one queued before it)
   */
  armQueued(q: TimerQueue, at: number, arg: number): void {
    const due = Math.max(at, this.now);
    if (q.world !== this) {
      if (q.world) throw new Error('a timer queue of another world');
      q.world = this;
      this.#queues.push(q);
    }
    if (q.length && due < q.lastAt()) {
      this.schedule(due, q.make(arg));
      return;
    }
    q.push(due, this.timerSeq++, arg);
    this.#queued++;
  }

  /** the queue whose first timer falls due before every other queue's and the heap's first (undefined: the heap's) */
  #firstQueue(): TimerQueue | undefined {
    const h = this.#heap;
    let at = h.length ? h[0].at : Infinity;
    let seq = h.length ? h[0].seq : Infinity;
    let first: TimerQueue | undefined;
    for (const q of this.#queues)
      if (q.length && (q.firstAt() < at || (q.firstAt() === at && q.firstSeq() < seq))) {
        first = q;
        at = q.firstAt();
        seq = q.firstSeq();
      }
    return first;
  }

  /** µs of the next armed timer, or undefined */
  nextTimer(): number | undefined {
    const q = this.#queued ? this.#firstQueue() : undefined;
    return q ? q.firstAt() : this.#heap[0]?.at;
  }

  /** fire every timer due at or before `untilUs`, in order, each at its own time; then the clock reads untilUs */
  run(untilUs: number): void {
    for (;;) {
      const q = this.#queued ? this.#firstQueue() : undefined;
      let t: Timer;
      if (q) {
        if (q.firstAt() > untilUs) break;
        this.#queued--;
        t = q.shift();
      } else {
        if (!this.#heap.length || this.#heap[0].at > untilUs) break;
        t = heapPop(this.#heap, timerBefore);
      }
      if (t.at > this.now) this.now = t.at;
      this.onTimer?.(t.ev);
    }
    if (untilUs > this.now) this.now = untilUs;
  }

  /** let `us` µs pass: run(now + us) */
  advance(us: number): void {
    this.run(this.now + us);
  }

  /** FNV-1a's state after the seed and '|' (derive's common start; the seed never changes) */
  #seedHash: number | undefined;

  /** FNV-1a's state after the seed and '|' */
  private seedHash(): number {
    return (this.#seedHash ??= Math.imul(fnv1a(this.seed, 0x811c9dc5) ^ 0x7c, 0x01000193));
  }

  /**
   * derive(what, key) without the key's string: FNV-1a's state after the seed, `what` and '|', from
   * which the caller hashes the key's pieces (fnv1a, fnv1aChar) and ends with fmix32
   */
  deriveStart(what: string): number {
    return fnv1aChar(0x7c, fnv1a(what, this.seedHash()));
  }

  /** ephemeral-port/ISN style values: stable for the same seed and inputs */
  derive(...parts: (string | number)[]): number {
    // hash32(seed + '|' + parts.join('|')), the string never made: FNV-1a reads it piece by piece
    let h = this.seedHash(); // seed + '|'
    for (let i = 0; i < parts.length; i++) {
      if (i) h = Math.imul(h ^ 0x7c, 0x01000193); // '|'
      const p = parts[i];
      h = fnv1a(typeof p === 'string' ? p : p == null ? '' : String(p), h);
    }
    return fmix32(h);
  }
}
