/**
 * Connection tracking (nf_conntrack), per network namespace: both tuples, the TCP state machine
 * of nf_conntrack_proto_tcp (tcp_conntracks), UDP/ICMP/generic timeouts, SEEN_REPLY ("[UNREPLIED]"
 * until then) and ASSURED. Entries are created unconfirmed and confirmed when the packet leaves
 * the last hook (POSTROUTING or INPUT); a packet dropped before that leaves no entry. An ICMP
 * error is RELATED to the entry of the packet it quotes (nf_conntrack_inet_error) and creates
 * none. NAT (nat.ts) lives in the entry: the reply tuple is the NATed one, and the status bits
 * say which manips changed it (IPS_SRC_NAT, IPS_DST_NAT) and which are set up (IPS_*_NAT_DONE).
 */
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, type Ipv4Packet } from '../wire/types.ts';
import { parseIp4Cached } from '../wire/addr.ts';
import type { CtState } from './netfilter/types.ts';

export type TcpCtState =
  | 'NONE'
  | 'SYN_SENT'
  | 'SYN_RECV'
  | 'ESTABLISHED'
  | 'FIN_WAIT'
  | 'CLOSE_WAIT'
  | 'LAST_ACK'
  | 'TIME_WAIT'
  | 'CLOSE'
  | 'SYN_SENT2';

/** seconds, Linux defaults (nf_conntrack_tcp_timeout_*, udp, icmp, generic) */
export const CT_TIMEOUTS: Record<TcpCtState, number> = {
  NONE: 0,
  SYN_SENT: 120,
  SYN_RECV: 60,
  ESTABLISHED: 432000,
  FIN_WAIT: 120,
  CLOSE_WAIT: 60,
  LAST_ACK: 30,
  TIME_WAIT: 120,
  CLOSE: 10,
  SYN_SENT2: 120,
};
export const UDP_TIMEOUT = 30;
export const UDP_STREAM_TIMEOUT = 120;
export const ICMP_TIMEOUT = 30;
export const GENERIC_TIMEOUT = 600;

export interface Tuple {
  proto: number;
  src: string;
  dst: string;
  /** tcp/udp ports; icmp: type/code/id */
  sport: number;
  dport: number;
  icmpType?: number;
  icmpCode?: number;
  icmpId?: number;
}

export interface CtEntry {
  orig: Tuple;
  reply: Tuple;
  tcpState?: TcpCtState;
  /** µs at which the entry expires */
  expires: number;
  seenReply: boolean;
  assured: boolean;
  confirmed: boolean;
  /** UDP: µs after which two-way traffic makes it a stream (2 s after creation, as Linux) */
  streamTs: number;
  mark: number;
  /** IPS_SRC_NAT / IPS_DST_NAT: a manip changed the tuple */
  snat: boolean;
  dnat: boolean;
  /** IPS_SRC_NAT_DONE / IPS_DST_NAT_DONE: the nat hook of that manip has run for the entry */
  snatDone: boolean;
  dnatDone: boolean;
}

export type CtDir = 'original' | 'reply';

/** what nf_conntrack_in (or nf_ct_attach) gave the packet: its entry and ctinfo */
export interface CtResult {
  entry: CtEntry;
  dir: CtDir;
  ctstate: CtState;
  isNew: boolean;
  /** an ICMP error (or a reject's RST) belonging to the entry: IP_CT_RELATED[_REPLY] */
  related?: boolean;
  /** TCP state before/after, for the trace */
  from?: TcpCtState;
  to?: TcpCtState;
  invalid?: boolean;
}

/** ICMP types that are errors quoting a packet */
const ICMP_ERRORS = new Set([3, 4, 5, 11, 12]);

type TcpIdx = 'syn' | 'synack' | 'fin' | 'ack' | 'rst' | 'none';

/* nf_conntrack_proto_tcp.c tcp_conntracks[dir][index][old state]; sIV = invalid, sIG = ignore */
const S = [
  'NONE',
  'SYN_SENT',
  'SYN_RECV',
  'ESTABLISHED',
  'FIN_WAIT',
  'CLOSE_WAIT',
  'LAST_ACK',
  'TIME_WAIT',
  'CLOSE',
  'SYN_SENT2',
] as const;
type Next = TcpCtState | 'IV' | 'IG';
//                 sNO          sSS        sSR          sES          sFW         sCW          sLA          sTW          sCL          sS2
const ORIG: Record<TcpIdx, Next[]> = {
  syn: ['SYN_SENT', 'SYN_SENT', 'IG', 'IG', 'IG', 'IG', 'IG', 'SYN_SENT', 'SYN_SENT', 'SYN_SENT2'],
  synack: ['IV', 'IV', 'SYN_RECV', 'IV', 'IV', 'IV', 'IV', 'IV', 'IV', 'SYN_RECV'],
  fin: ['IV', 'IV', 'FIN_WAIT', 'FIN_WAIT', 'LAST_ACK', 'LAST_ACK', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'IV'],
  ack: [
    'ESTABLISHED',
    'IV',
    'ESTABLISHED',
    'ESTABLISHED',
    'CLOSE_WAIT',
    'CLOSE_WAIT',
    'TIME_WAIT',
    'TIME_WAIT',
    'CLOSE',
    'IV',
  ],
  rst: ['IV', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE'],
  none: ['IV', 'IV', 'IV', 'IV', 'IV', 'IV', 'IV', 'IV', 'IV', 'IV'],
};
const REPLY: Record<TcpIdx, Next[]> = {
  syn: ['IV', 'SYN_SENT2', 'IV', 'IV', 'IV', 'IV', 'IV', 'SYN_SENT', 'IV', 'SYN_SENT2'],
  synack: ['IV', 'SYN_RECV', 'IG', 'IG', 'IG', 'IG', 'IG', 'IG', 'IG', 'SYN_RECV'],
  fin: ['IV', 'IV', 'FIN_WAIT', 'FIN_WAIT', 'LAST_ACK', 'LAST_ACK', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'IV'],
  ack: [
    'IV',
    'IG',
    'SYN_RECV',
    'ESTABLISHED',
    'CLOSE_WAIT',
    'CLOSE_WAIT',
    'TIME_WAIT',
    'TIME_WAIT',
    'CLOSE',
    'IG',
  ],
  rst: ['IV', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE'],
  none: ['IV', 'IV', 'IV', 'IV', 'IV', 'IV', 'IV', 'IV', 'IV', 'IV'],
};

export function tcpIndex(f: { syn?: boolean; ack?: boolean; fin?: boolean; rst?: boolean }): TcpIdx {
  if (f.rst) return 'rst';
  if (f.syn) return f.ack ? 'synack' : 'syn';
  if (f.fin) return 'fin';
  if (f.ack) return 'ack';
  return 'none';
}

export function invertTuple(t: Tuple): Tuple {
  if (t.proto === 1) {
    // echo request (8) <-> echo reply (0)
    const type = t.icmpType === 8 ? 0 : t.icmpType === 0 ? 8 : t.icmpType;
    return { ...t, src: t.dst, dst: t.src, icmpType: type };
  }
  // a literal of tupleOf's keys in its order, not a spread: a spread makes every reply tuple a
  // dictionary-shaped copy, and this runs for each new conntrack entry and each NAT'd reply
  return { proto: t.proto, src: t.dst, dst: t.src, sport: t.dport, dport: t.sport };
}

export function tupleKey(t: Tuple): string {
  return t.proto === 1
    ? `1|${t.src}|${t.dst}|${t.icmpType}|${t.icmpCode}|${t.icmpId}`
    : `${t.proto}|${t.src}|${t.dst}|${t.sport}|${t.dport}`;
}

/** a tuple's hash key as numbers (K0..K3, module scratch: no allocation per lookup), or false for a
 * tuple whose string key (tupleKey) is not one of canonical numbers: an address parseIp4 refuses, a
 * port or ICMP field that is not an integer in its range. Equal keys ⇔ equal tupleKey strings. */
let K0 = 0;
let K1 = 0;
let K2 = 0;
let K3 = 0;
const u = (v: number | undefined, max: number): number =>
  v === undefined ? max + 1 : Number.isInteger(v) && v >= 0 && v <= max ? v : -1;
function numericKey(t: Tuple): boolean {
  const src = parseIp4Cached(t.src);
  const dst = parseIp4Cached(t.dst);
  if (src < 0 || dst < 0 || !Number.isInteger(t.proto) || t.proto < 0 || t.proto > 255) return false;
  let a: number;
  let b: number;
  if (t.proto === 1) {
    // undefined prints as "undefined" in tupleKey: a value of its own (max + 1)
    const type = u(t.icmpType, 255);
    const code = u(t.icmpCode, 255);
    const id = u(t.icmpId, 0xffff);
    if (type < 0 || code < 0 || id < 0) return false;
    a = type;
    b = (code << 17) | id;
  } else {
    if (!Number.isInteger(t.sport) || t.sport < 0 || t.sport > 0xffff) return false;
    if (!Number.isInteger(t.dport) || t.dport < 0 || t.dport > 0xffff) return false;
    a = t.sport;
    b = t.dport;
  }
  K0 = t.proto | (a << 8);
  K1 = src | 0;
  K2 = dst | 0;
  K3 = b;
  return true;
}

/**
 * The hash of K0..K3, the same for a tuple and its inverse but for the low bit (which side's address
 * and port come first): an entry's two tuples get neighbouring home slots, in one cache line, so
 * confirming an entry after looking up its tuples (or after the null binding asked for its reply)
 * reads one line of a table of thousands, not two. For ICMP the inverse's echo type is the other
 * (8 ↔ 0); any other field the same. Only where keys go: equal keys are still compared in full.
 */
function hashKey(): number {
  const proto = K0 & 0xff;
  let a = K0 >>> 8;
  let b = K3;
  let first: boolean;
  if (proto === 1) {
    // the echo pair counts as one type; the addresses say which side comes first, else the type
    first = K1 !== K2 ? K1 < K2 : a !== 0;
    if (a === 8) a = 0;
  } else {
    first = K1 !== K2 ? K1 < K2 : a <= b;
    if (!first) {
      const x = a;
      a = b;
      b = x;
    }
  }
  let h = Math.imul(proto ^ (a << 8) ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 15) ^ (first ? K1 : K2), 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 13) ^ (first ? K2 : K1), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 16) ^ b, 0xc2b2ae35);
  return ((h ^ (h >>> 16)) & ~1) | (first ? 0 : 1);
}

const DIRS: readonly CtDir[] = ['original', 'reply'];

/** rows of objects in chunks of this many: no JS array as long as the table (V8 makes and fills one
 * slowly, element by element), so that growing the table only rehashes typed arrays */
const CHUNK_BITS = 10;
const CHUNK = 1 << CHUNK_BITS;

/**
 * The tuple hash (nf_conntrack_hash): tuple → entry and direction, with a Map's semantics (a set on
 * a key present replaces its value in place; insertion order kept for `toMap`), as numbers in an
 * open-addressing table (linear probing, backward-shift deletion) instead of a Map of string keys.
 * A slot is two words, the row + 1 and the key's hash (eight slots to a cache line: a probe that
 * misses, as most do in a table of thousands, reads one line, and growing copies two words a
 * slot); a row holds the key's numbers (compared when the hash is equal), the entry, the tuple it
 * was set with (toMap's key), the direction and the insertion order. A tuple without numeric key
 * (numericKey false) goes to a Map by its string key beside it; no string key of one can equal a
 * numeric one's.
 */
class TupleHash {
  /** slots: row + 1 (0: empty), hash */
  private mask = 15;
  private w = new Int32Array(16 * 2);
  /** rows: K0..K3 of each; entries and tuples in chunks, directions, insertion order; freed rows to reuse */
  private keys = new Int32Array(16 * 4);
  private entries: (CtEntry | undefined)[][] = [];
  private tuples: (Tuple | undefined)[][] = [];
  private dirs = new Uint8Array(16);
  private seqs = new Float64Array(16);
  private nrows = 0;
  private free: number[] = [];
  private size = 0;
  private seq = 0;
  private other = new Map<string, { entry: CtEntry; dir: CtDir; tuple: Tuple; seq: number }>();
  /** the direction of the last `get` that found an entry */
  dir: CtDir = 'original';

  private slot(h: number): number {
    const w = this.w;
    const k = this.keys;
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const r = w[2 * i];
      if (r === 0) return ~i;
      if (w[2 * i + 1] === h) {
        const o = 4 * (r - 1);
        if (k[o] === K0 && k[o + 1] === K1 && k[o + 2] === K2 && k[o + 3] === K3) return i;
      }
    }
  }

  get(t: Tuple): CtEntry | undefined {
    if (!numericKey(t)) {
      const hit = this.other.get(tupleKey(t));
      if (hit) this.dir = hit.dir;
      return hit?.entry;
    }
    const i = this.slot(hashKey());
    if (i < 0) return undefined;
    const r = this.w[2 * i] - 1;
    this.dir = DIRS[this.dirs[r]];
    return this.entries[r >> CHUNK_BITS][r & (CHUNK - 1)];
  }

  set(t: Tuple, entry: CtEntry, dir: CtDir): void {
    if (!numericKey(t)) {
      const k = tupleKey(t);
      const had = this.other.get(k);
      this.other.set(k, { entry, dir, tuple: t, seq: had ? had.seq : this.seq++ });
      return;
    }
    const h = hashKey();
    let i = this.slot(h);
    let r: number;
    if (i >= 0) r = this.w[2 * i] - 1;
    else {
      if (2 * (this.size + 1) > this.mask + 1) {
        this.grow();
        i = this.slot(h);
      }
      i = ~i;
      r = this.newRow();
      this.w[2 * i] = r + 1;
      this.w[2 * i + 1] = h;
      const k = this.keys;
      k[4 * r] = K0;
      k[4 * r + 1] = K1;
      k[4 * r + 2] = K2;
      k[4 * r + 3] = K3;
      this.seqs[r] = this.seq++;
      this.size++;
    }
    this.entries[r >> CHUNK_BITS][r & (CHUNK - 1)] = entry;
    this.tuples[r >> CHUNK_BITS][r & (CHUNK - 1)] = t;
    this.dirs[r] = dir === 'original' ? 0 : 1;
  }

  private newRow(): number {
    const r = this.free.pop();
    if (r !== undefined) return r;
    const n = this.nrows++;
    if (n >> CHUNK_BITS === this.entries.length) {
      this.entries.push(new Array<CtEntry | undefined>(CHUNK).fill(undefined));
      this.tuples.push(new Array<Tuple | undefined>(CHUNK).fill(undefined));
    }
    if (n === this.dirs.length) {
      const dirs = new Uint8Array(2 * n);
      dirs.set(this.dirs);
      this.dirs = dirs;
      const seqs = new Float64Array(2 * n);
      seqs.set(this.seqs);
      this.seqs = seqs;
      const keys = new Int32Array(8 * n);
      keys.set(this.keys);
      this.keys = keys;
    }
    return n;
  }

  delete(t: Tuple): void {
    if (!numericKey(t)) {
      this.other.delete(tupleKey(t));
      return;
    }
    let i = this.slot(hashKey());
    if (i < 0) return;
    const w = this.w;
    const r = w[2 * i] - 1;
    this.entries[r >> CHUNK_BITS][r & (CHUNK - 1)] = undefined;
    this.tuples[r >> CHUNK_BITS][r & (CHUNK - 1)] = undefined;
    this.free.push(r);
    this.size--;
    // backward shift: move up every later slot of the run whose home is not between the hole and it
    for (let j = (i + 1) & this.mask; w[2 * j] !== 0; j = (j + 1) & this.mask) {
      const home = w[2 * j + 1] & this.mask;
      if (i <= j ? home > i && home <= j : home > i || home <= j) continue;
      w[2 * i] = w[2 * j];
      w[2 * i + 1] = w[2 * j + 1];
      i = j;
    }
    w[2 * i] = 0;
  }

  private grow(): void {
    const old = this.w;
    const n = old.length;
    const mask = (this.mask = n - 1);
    const w = (this.w = new Int32Array(2 * n));
    for (let o = 0; o < n; o += 2) {
      const r = old[o];
      if (r === 0) continue;
      const h = old[o + 1];
      let i = h & mask;
      while (w[2 * i] !== 0) i = (i + 1) & mask;
      w[2 * i] = r;
      w[2 * i + 1] = h;
    }
  }

  /** the hash as the Map by string key it stands for, in insertion order (the saved world's form) */
  toMap(): Map<string, { entry: CtEntry; dir: CtDir }> {
    const all: { seq: number; tuple: Tuple; entry: CtEntry; dir: CtDir }[] = [...this.other.values()];
    for (let r = 0; r < this.nrows; r++) {
      const entry = this.entries[r >> CHUNK_BITS][r & (CHUNK - 1)];
      if (entry !== undefined)
        all.push({
          seq: this.seqs[r],
          tuple: this.tuples[r >> CHUNK_BITS][r & (CHUNK - 1)]!,
          entry,
          dir: DIRS[this.dirs[r]],
        });
    }
    all.sort((a, b) => a.seq - b.seq);
    return new Map(all.map((x) => [tupleKey(x.tuple), { entry: x.entry, dir: x.dir }]));
  }
}

/**
 * The expiry heap of a table's confirmed entries: a min-heap of places, each an entry and the
 * expiry it had when placed (two parallel arrays: no object per place). An entry whose timeout was
 * renewed since is placed again, at its new time, when its place comes due; one whose timeout was
 * shortened is placed again at once. So every entry in the table has a place at or before its
 * expiry, and expire() visits only what is due, not the whole table.
 */
class ExpiryHeap {
  readonly at: number[] = [];
  readonly e: CtEntry[] = [];

  get size(): number {
    return this.at.length;
  }

  push(t: number, e: CtEntry): void {
    const at = this.at;
    const es = this.e;
    let i = at.length;
    at.push(t);
    es.push(e);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (at[p] <= t) break;
      at[i] = at[p];
      es[i] = es[p];
      i = p;
    }
    at[i] = t;
    es[i] = e;
  }

  /** keeps only the places `keep` says yes to, in heap order again */
  retain(keep: (e: CtEntry) => boolean): void {
    const at = this.at;
    const es = this.e;
    let j = 0;
    for (let i = 0; i < at.length; i++)
      if (keep(es[i])) {
        at[j] = at[i];
        es[j] = es[i];
        j++;
      }
    at.length = j;
    es.length = j;
    // Floyd's heapify: sift each parent down, the last first
    for (let i = (j >> 1) - 1; i >= 0; i--) this.siftDown(i, at[i], es[i]);
  }

  /** removes the first place (the heap must not be empty) */
  pop(): void {
    const t = this.at.pop()!;
    const e = this.e.pop()!;
    if (this.at.length) this.siftDown(0, t, e);
  }

  /** puts place (t, e) at `i` or below, where it belongs among the places under `i` */
  private siftDown(i: number, t: number, e: CtEntry): void {
    const at = this.at;
    const es = this.e;
    const n = at.length;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && at[c + 1] < at[c]) c++;
      if (at[c] >= t) break;
      at[i] = at[c];
      es[i] = es[c];
      i = c;
    }
    at[i] = t;
    es[i] = e;
  }
}

/** a namespace's confirmed entries as the datapath keeps them (not data: `entries` and `index` travel) */
interface Store {
  /** in the order confirmed, those that expired since the list was last read among them */
  slots: CtEntry[];
  /** the entries of slots that expired since (their places in the heap may remain) */
  gone: Set<CtEntry>;
  due: ExpiryHeap;
}
const newStore = (): Store => ({ slots: [], gone: new Set(), due: new ExpiryHeap() });

/** the empty table of every namespace without a confirmed entry yet (never written: see own) */
const NO_ENTRIES: readonly CtEntry[] = Object.freeze([]);
const NO_HASH = new TupleHash();
const NO_STORE: Store = Object.freeze({
  slots: NO_ENTRIES as CtEntry[],
  gone: new Set<CtEntry>(),
  due: new ExpiryHeap(),
});

export class Conntrack {
  /**
   * Confirmed entries in the order confirmed (one empty list shared by every namespace until its
   * first). An own enumerable accessor, so that data.ts writes it as the array it was; read it and
   * let it go (the list is the table's own, and an entry that expires later leaves it)
   */
  declare readonly entries: readonly CtEntry[];
  /**
   * The tuple hash as data: a Map by tupleKey in insertion order, each value the entry and the
   * direction, made when read (the saved world's `index`; an own enumerable accessor, so that
   * data.ts writes it as it wrote the Map this was). The datapath reads `hash`, not this.
   */
  declare readonly index: ReadonlyMap<string, { entry: CtEntry; dir: CtDir }>;
  /** the tuple hash (not enumerable: not data; rebuilt from `index` by `fromData`) */
  declare private hash: TupleHash;
  /** the entries, their expiry heap (not enumerable: not data; rebuilt from `entries` by `fromData`) */
  declare private store: Store;

  constructor() {
    Conntrack.attach(this, NO_HASH, NO_STORE);
  }

  private static attach(ct: Conntrack, hash: TupleHash, store: Store): void {
    Object.defineProperty(ct, 'hash', { value: hash, writable: true, enumerable: false });
    Object.defineProperty(ct, 'store', { value: store, writable: true, enumerable: false });
    Object.defineProperty(ct, 'entries', { get: () => ct.listed(), enumerable: true, configurable: true });
    Object.defineProperty(ct, 'index', { get: () => ct.hash.toMap(), enumerable: true, configurable: true });
  }

  /** a store of `entries` (a decoded list, in its order) */
  private static storeOf(entries: readonly CtEntry[]): Store {
    if (!entries.length) return NO_STORE;
    const s = newStore();
    for (const e of entries) Conntrack.keep(s, e);
    return s;
  }

  private static keep(s: Store, e: CtEntry): void {
    s.slots.push(e);
    s.due.push(e.expires, e);
  }

  /** the entries without those that expired (dropped from the list and the heap when read) */
  private listed(): readonly CtEntry[] {
    const s = this.store;
    if (s.gone.size) {
      const gone = s.gone;
      const slots = s.slots;
      let j = 0;
      for (let i = 0; i < slots.length; i++) if (!gone.has(slots[i])) slots[j++] = slots[i];
      slots.length = j;
      s.due.retain((e) => !gone.has(e));
      gone.clear();
    }
    return s.slots as readonly CtEntry[];
  }

  /**
   * A Conntrack decoded from data (data.ts gives it its fields, `index` a Map by string key): its
   * hash rebuilt from that Map in its order. `check(key, at)` is called for a key whose value
   * is not an entry of `entries` with a direction, or whose tuple in that direction has another
   * key; it must throw.
   */
  static fromData(ct: Conntrack, check: (what: string, i: number) => never): Conntrack {
    const index = (ct as unknown as { index: unknown }).index;
    if (!(index instanceof Map)) return check('expected a {"$map": …} of tuple keys', -1);
    const hash = new TupleHash();
    // the decoded list: a field of its own until the accessor takes its place
    const list = ct.entries;
    const entries = new Set(list);
    let i = 0;
    for (const [key, v] of index as Map<unknown, { entry?: unknown; dir?: unknown } | null>) {
      const entry = v?.entry;
      const dir = v?.dir;
      if (!entries.has(entry as CtEntry) || (dir !== 'original' && dir !== 'reply'))
        check('expected {"dir": "original" or "reply", "entry": an entry of entries}', i);
      const e = entry as CtEntry;
      const t = dir === 'original' ? e.orig : e.reply;
      if (tupleKey(t) !== key)
        check(`the key of the entry's ${dir} tuple is ${JSON.stringify(tupleKey(t))}`, i);
      hash.set(t, e, dir);
      i++;
    }
    delete (ct as unknown as { index?: unknown }).index;
    delete (ct as unknown as { entries?: unknown }).entries;
    Conntrack.attach(ct, list.length === 0 && i === 0 ? NO_HASH : hash, Conntrack.storeOf(list));
    return ct;
  }

  /** the entries and their hash, this namespace's own to write */
  private own(): [Store, TupleHash] {
    if (this.store === NO_STORE) this.store = newStore();
    if (this.hash === NO_HASH) this.hash = new TupleHash();
    return [this.store, this.hash];
  }

  /**
   * nf_conntrack_in: find or create the entry for a packet and advance its state. `quoted` is the
   * tuple of the packet an ICMP error quotes: the error is RELATED to that packet's entry
   * (nf_conntrack_inet_error), or has none (INVALID), and never creates one.
   */
  track(
    t: Tuple,
    tcpFlags: Parameters<typeof tcpIndex>[0] | undefined,
    now: number,
    loose = true,
    quoted?: Tuple,
  ): CtResult {
    this.expire(now);
    if (t.proto === IPPROTO_ICMP && ICMP_ERRORS.has(t.icmpType!)) {
      const hit = quoted && this.find(invertTuple(quoted));
      // the found direction's destination must be the error's destination
      if (hit && (hit.dir === 'original' ? hit.entry.orig : hit.entry.reply).dst === t.dst)
        return { entry: hit.entry, dir: hit.dir, ctstate: 'RELATED', isNew: false, related: true };
      return this.invalid(t, now);
    }
    const entry = this.hash.get(t);
    if (!entry) {
      const idx = tcpFlags ? tcpIndex(tcpFlags) : undefined;
      let tcpState: TcpCtState | undefined;
      if (t.proto === 6) {
        // a new connection must start with SYN, or (tcp_loose) any ACK picks up mid-stream
        const next = idx === 'syn' ? 'SYN_SENT' : loose && idx === 'ack' ? 'ESTABLISHED' : undefined;
        if (!next) return this.invalid(t, now);
        tcpState = next;
      }
      const fresh = this.blank(t, now, tcpState);
      this.setExpiry(fresh, now + this.timeout(fresh) * 1e6);
      return { entry: fresh, dir: 'original', ctstate: 'NEW', isNew: true, from: 'NONE', to: tcpState };
    }
    const dir = this.hash.dir;
    let from: TcpCtState | undefined;
    let to: TcpCtState | undefined;
    if (t.proto === 6 && tcpFlags && entry.tcpState) {
      from = entry.tcpState;
      const next = (dir === 'original' ? ORIG : REPLY)[tcpIndex(tcpFlags)][S.indexOf(from)];
      if (next === 'IV')
        return { entry, dir, ctstate: 'INVALID', isNew: false, invalid: true, from, to: from };
      to = next === 'IG' ? from : next;
      entry.tcpState = to;
      if (!entry.assured && (from === 'SYN_RECV' || from === 'ESTABLISHED') && to === 'ESTABLISHED')
        entry.assured = true;
    }
    if (t.proto === 17 && entry.seenReply) {
      if (now > entry.streamTs) entry.assured = true;
    }
    const ctstate: CtState = dir === 'reply' || entry.seenReply ? 'ESTABLISHED' : 'NEW';
    if (dir === 'reply') entry.seenReply = true;
    this.setExpiry(entry, now + this.timeout(entry) * 1e6);
    return { entry, dir, ctstate, isNew: false, from, to };
  }

  /** __nf_conntrack_confirm: the entry becomes visible in the table */
  confirm(e: CtEntry): void {
    if (e.confirmed) return;
    e.confirmed = true;
    const [store, hash] = this.own();
    Conntrack.keep(store, e);
    if (e.expires < this.nextExpiry) this.nextExpiry = e.expires;
    hash.set(e.orig, e, 'original');
    hash.set(e.reply, e, 'reply');
  }

  /** the confirmed entry with this tuple in either direction (nf_conntrack_find_get) */
  find(t: Tuple): { entry: CtEntry; dir: CtDir } | undefined {
    const entry = this.hash.get(t);
    return entry && { entry, dir: this.hash.dir };
  }

  /** nf_conntrack_tuple_taken: another confirmed entry has this tuple in either direction */
  taken(t: Tuple, ignore: CtEntry): boolean {
    const entry = this.hash.get(t);
    return !!entry && entry !== ignore;
  }

  /** the earliest expiry of any confirmed entry (a lower bound): expire() has nothing to do before it */
  private nextExpiry = Infinity;

  private setExpiry(e: CtEntry, t: number): void {
    const was = e.expires;
    e.expires = t;
    if (!e.confirmed) return;
    if (t < this.nextExpiry) this.nextExpiry = t;
    // shortened: its place in the heap may be later than its expiry now
    // (an entry found in the table: track's, whose timeout this is)
    if (t < was) this.store.due.push(t, e);
  }

  /** `conntrack -F`: every entry goes */
  flush(): void {
    this.store = newStore();
    this.hash = new TupleHash();
    this.nextExpiry = Infinity;
  }

  /**
   * Every entry whose expiry is `now` or before leaves the table; `nextExpiry` becomes the
   * earliest expiry of those left. Only the heap's first places are visited: one whose entry left
   * already is dropped, one that is not its entry's expiry (renewed or shortened since) goes back
   * at that expiry, and the first place left is then the earliest expiry of all.
   */
  expire(now: number): void {
    if (now < this.nextExpiry) return;
    const s = this.store;
    const due = s.due;
    while (due.size) {
      const e = due.e[0];
      if (s.gone.has(e)) due.pop();
      else if (due.at[0] !== e.expires) {
        due.pop();
        due.push(e.expires, e);
      } else if (e.expires <= now) {
        due.pop();
        s.gone.add(e);
        this.hash.delete(e.orig);
        this.hash.delete(e.reply);
      } else break;
    }
    this.nextExpiry = due.size ? due.at[0] : Infinity;
    // a table that expired most of its entries gives their places back
    if (s.gone.size > 64 && 2 * s.gone.size > s.slots.length) this.listed();
  }

  timeout(e: CtEntry): number {
    if (e.orig.proto === 6) return CT_TIMEOUTS[e.tcpState ?? 'NONE'];
    if (e.orig.proto === 17) return e.assured ? UDP_STREAM_TIMEOUT : UDP_TIMEOUT;
    if (e.orig.proto === 1) return ICMP_TIMEOUT;
    return GENERIC_TIMEOUT;
  }

  /** INVALID: an entry for the packet alone, never confirmed, without a TCP state (not even undefined) */
  private invalid(t: Tuple, now: number): CtResult {
    const { tcpState: _, ...entry } = this.blank(t, now, undefined);
    return { entry, dir: 'original', ctstate: 'INVALID', isNew: false, invalid: true };
  }

  /** a new entry, every field in the literal (tcpState last, where it was added after): no field added later
   * to move the entry's fields out of the object */
  private blank(t: Tuple, now: number, tcpState: TcpCtState | undefined): CtEntry {
    return {
      orig: t,
      reply: invertTuple(t),
      expires: now,
      seenReply: false,
      assured: false,
      confirmed: false,
      streamTs: now + 2e6,
      mark: 0,
      snat: false,
      dnat: false,
      snatDone: false,
      dnatDone: false,
      tcpState,
    };
  }
}

/** nf_ct_get_tuple of a packet; an ICMP error's quoted packet comes as `quoted` */
export function tupleOf(p: Ipv4Packet): Tuple {
  const pl = p.payload;
  if (pl.kind === 'tcp')
    return { proto: IPPROTO_TCP, src: p.ip.src, dst: p.ip.dst, sport: pl.tcp.srcPort, dport: pl.tcp.dstPort };
  if (pl.kind === 'udp')
    return { proto: IPPROTO_UDP, src: p.ip.src, dst: p.ip.dst, sport: pl.udp.srcPort, dport: pl.udp.dstPort };
  if (pl.kind === 'icmp')
    return {
      proto: IPPROTO_ICMP,
      src: p.ip.src,
      dst: p.ip.dst,
      sport: 0,
      dport: 0,
      icmpType: pl.icmp.type,
      icmpCode: pl.icmp.code,
      icmpId: ICMP_ERRORS.has(pl.icmp.type) ? 0 : pl.icmp.id,
    };
  return { proto: p.ip.protocol, src: p.ip.src, dst: p.ip.dst, sport: 0, dport: 0 };
}

/** the tuple of the packet an ICMP error quotes (its IP header and first 8 bytes), if it is one */
export function quotedTuple(p: Ipv4Packet): Tuple | undefined {
  const pl = p.payload;
  if (pl.kind !== 'icmp' || !ICMP_ERRORS.has(pl.icmp.type)) return undefined;
  const d = pl.data;
  if (d.length < 20 || d[0] >> 4 !== 4) return undefined;
  const ihl = (d[0] & 15) * 4;
  if (d.length < ihl + 8) return undefined;
  const ip = (o: number) => `${d[o]}.${d[o + 1]}.${d[o + 2]}.${d[o + 3]}`;
  const proto = d[9];
  const src = ip(12);
  const dst = ip(16);
  const u16 = (o: number) => (d[o] << 8) | d[o + 1];
  if (proto === IPPROTO_TCP || proto === IPPROTO_UDP)
    return { proto, src, dst, sport: u16(ihl), dport: u16(ihl + 2) };
  if (proto === IPPROTO_ICMP)
    return {
      proto,
      src,
      dst,
      sport: 0,
      dport: 0,
      icmpType: d[ihl],
      icmpCode: d[ihl + 1],
      icmpId: u16(ihl + 4),
    };
  return { proto, src, dst, sport: 0, dport: 0 };
}
