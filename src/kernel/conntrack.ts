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
import { intToIp4Cached, parseIp4Cached } from '../wire/addr.ts';
import type { CtState } from './netfilter/types.ts';
import { grow, more } from './table.ts';

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

/** K0..K3 become the key at k[o .. o + 3] */
function loadKeyAt(k: Int32Array, o: number): void {
  K0 = k[o];
  K1 = k[o + 1];
  K2 = k[o + 2];
  K3 = k[o + 3];
}

/** K0..K3 become the key of the inverse tuple (invertTuple's): the addresses swapped, and the ports
 * swapped or the ICMP echo type the other (8 ↔ 0) */
function invertKey(): void {
  const proto = K0 & 0xff;
  const src = K1;
  K1 = K2;
  K2 = src;
  if (proto === 1) {
    const type = K0 >>> 8;
    K0 = 1 | ((type === 8 ? 0 : type === 0 ? 8 : type) << 8);
  } else {
    const sport = K0 >>> 8;
    K0 = proto | (K3 << 8);
    K3 = sport;
  }
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
  // (murmur3's fmix32 to end: without it the low bits, the home slot, mix too little of the ports,
  // and a replayed warm walk's tables of 190,000 keys at ¾ full had runs of full slots as long as
  // 528, a miss reading ~21 slots where random homes for the pairs give ~13)
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) & ~1) | (first ? 0 : 1);
}

const DIRS: readonly CtDir[] = ['original', 'reply'];

/* ------------------------------------------------------------ addresses as numbers */

/** the tuple whose numeric key is K0..K3 (numericKey's inverse: the same tupleKey, the same fields
 * for a tuple `regular` says yes to; a number's dotted quad is the one string parseIp4 takes for it,
 * as it refuses leading zeros) */
function tupleOfKey(k0: number, k1: number, k2: number, k3: number): Tuple {
  const proto = k0 & 0xff;
  const src = intToIp4Cached(k1 >>> 0);
  const dst = intToIp4Cached(k2 >>> 0);
  if (proto === 1) {
    const type = k0 >>> 8;
    const code = k3 >>> 17;
    const id = k3 & 0x1ffff;
    return {
      proto,
      src,
      dst,
      sport: 0,
      dport: 0,
      icmpType: type > 255 ? undefined : type,
      icmpCode: code > 255 ? undefined : code,
      icmpId: id > 0xffff ? undefined : id,
    };
  }
  return { proto, src, dst, sport: k0 >>> 8, dport: k3 };
}

/** tupleKey of the tuple whose numeric key is K0..K3 */
function keyOfKey(k0: number, k1: number, k2: number, k3: number): string {
  return tupleKey(tupleOfKey(k0, k1, k2, k3));
}

/** a tuple the columns keep as they are: its numeric key (numericKey true, K0..K3 set) gives back
 * every field it has (tupleOfKey): an ICMP tuple without ports, another without ICMP fields */
function regular(t: Tuple): boolean {
  if (!numericKey(t)) return false;
  return t.proto === 1
    ? t.sport === 0 && t.dport === 0
    : t.icmpType === undefined && t.icmpCode === undefined && t.icmpId === undefined;
}

/** the seconds an entry lives from now (nf_conntrack's per-protocol timeouts): by its protocol, TCP state and whether it is assured */
function ctTimeout(proto: number, tcpState: TcpCtState | undefined, assured: boolean): number {
  if (proto === 6) return CT_TIMEOUTS[tcpState ?? 'NONE'];
  if (proto === 17) return assured ? UDP_STREAM_TIMEOUT : UDP_TIMEOUT;
  if (proto === 1) return ICMP_TIMEOUT;
  return GENERIC_TIMEOUT;
}

/* ------------------------------------------------------------ the entries */

/** an entry's fields: the saved world's shape, the list `entries` gives, what readers see of a CtEntry */
export interface CtEntryData {
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

/* the status bits of a row (flags) */
const F_SEEN = 1;
const F_ASSURED = 2;
const F_CONFIRMED = 4;
const F_SNAT = 8;
const F_DNAT = 16;
const F_SNAT_DONE = 32;
const F_DNAT_DONE = 64;
/** the entry's boolean fields (the row's status bits) */
type FlagField = 'seenReply' | 'assured' | 'confirmed' | 'snat' | 'dnat' | 'snatDone' | 'dnatDone';
/** expired: out of the hash, in the list until it is next read */
const F_GONE = 128;
/** tcp column: no TCP state (undefined) */
const NO_TCP = 255;
/** a TCP state's number in the tcp column (its index in S) */
const TCP_NUM = Object.fromEntries(S.map((s, i) => [s, i])) as Record<TcpCtState, number>;

/** the entry's data with every field in blank's order (tcpState last): the list's objects */
function dataOf(
  orig: Tuple,
  reply: Tuple,
  expires: number,
  flags: number,
  streamTs: number,
  mark: number,
  tcpState: TcpCtState | undefined,
): CtEntryData {
  return {
    orig,
    reply,
    expires,
    seenReply: (flags & F_SEEN) !== 0,
    assured: (flags & F_ASSURED) !== 0,
    confirmed: (flags & F_CONFIRMED) !== 0,
    streamTs,
    mark,
    snat: (flags & F_SNAT) !== 0,
    dnat: (flags & F_DNAT) !== 0,
    snatDone: (flags & F_SNAT_DONE) !== 0,
    dnatDone: (flags & F_DNAT_DONE) !== 0,
    tcpState,
  };
}

/** the status bits of data whose fields are all booleans (else -1: the entry stays an object); a
 * `typeof` each field, written out: a loop would read the fields by a variable key, and a helper
 * function made here would be made (and named, by tsx) at every call */
function flagsOf(d: CtEntryData): number {
  const { seenReply: a, assured: b, confirmed: c, snat: e, dnat: f, snatDone: g, dnatDone: h } = d;
  if (
    typeof a !== 'boolean' ||
    typeof b !== 'boolean' ||
    typeof c !== 'boolean' ||
    typeof e !== 'boolean' ||
    typeof f !== 'boolean' ||
    typeof g !== 'boolean' ||
    typeof h !== 'boolean'
  )
    return -1;
  return (
    (a ? F_SEEN : 0) |
    (b ? F_ASSURED : 0) |
    (c ? F_CONFIRMED : 0) |
    (e ? F_SNAT : 0) |
    (f ? F_DNAT : 0) |
    (g ? F_SNAT_DONE : 0) |
    (h ? F_DNAT_DONE : 0)
  );
}

/**
 * A confirmed entry as the columns hold it: both tuples' numeric keys (orig K0..K3, reply K0..K3:
 * K0 the protocol | first port << 8, K1 and K2 the addresses, K3 the second port), the status bits,
 * the TCP state's number, expiry, stream time and mark. What a flow cache's replay keeps of an
 * entry a walk made, to write it again (Conntrack.insertRow) with other ports and times.
 */
export interface CtRow {
  keys: Int32Array;
  flags: number;
  tcp: number;
  expires: number;
  streamTs: number;
  mark: number;
}

/** the row of `d` as the columns would keep it, or undefined when they would keep its object */
export function ctRowOf(d: CtEntryData): CtRow | undefined {
  const keys = new Int32Array(8);
  const ft = columnsOf(d, keys, 0);
  if (ft < 0) return undefined;
  return { keys, flags: ft & 0xff, tcp: ft >>> 8, expires: d.expires, streamTs: d.streamTs, mark: d.mark };
}

/**
 * The port at place i of a CtRow's keys: 0 and 1 the original's source and destination ports,
 * 2 and 3 the reply's; -1 for an ICMP tuple's (its keys hold a type, code and id, no port)
 */
export function rowPort(keys: Int32Array, i: number): number {
  const o = 4 * (i >> 1);
  if ((keys[o] & 0xff) === IPPROTO_ICMP) return -1;
  return i & 1 ? keys[o + 3] : keys[o] >>> 8;
}

/** rowPort's place i of the keys given the port `port` (not an ICMP tuple's) */
export function setRowPort(keys: Int32Array, i: number, port: number): void {
  const o = 4 * (i >> 1);
  if (i & 1) keys[o + 3] = port;
  else keys[o] = (keys[o] & 0xff) | (port << 8);
}

/**
 * Whether the columns give `d` back field for field: its status bits | its TCP state's number << 8
 * when they do (its tuples' keys written to keys[o .. o + 7]: the original's, the reply's), -1
 * when they do not (keys written in part)
 */
function columnsOf(d: CtEntryData, keys: Int32Array, o: number): number {
  const flags = flagsOf(d);
  const tcp = d.tcpState === undefined ? NO_TCP : S.indexOf(d.tcpState);
  if (
    flags < 0 ||
    tcp < 0 ||
    typeof d.expires !== 'number' ||
    typeof d.streamTs !== 'number' ||
    typeof d.mark !== 'number' ||
    d.orig === d.reply ||
    !regular(d.orig)
  )
    return -1;
  keys[o] = K0;
  keys[o + 1] = K1;
  keys[o + 2] = K2;
  keys[o + 3] = K3;
  if (!regular(d.reply)) return -1;
  keys[o + 4] = K0;
  keys[o + 5] = K1;
  keys[o + 6] = K2;
  keys[o + 7] = K3;
  return flags | (tcp << 8);
}

/** the arrays of a list or heap that never had a value (never written: a value grows them first) */
const NO_INTS = new Int32Array(0);
const NO_TIMES = new Float64Array(0);

/**
 * A growable list of int32 (rows, key rows): a typed array, one twice as large when full, and its
 * length `n`. No JS heap a value, none for the GC to scan, as a number[] would be.
 */
class IntList {
  a = NO_INTS;
  n = 0;

  push(v: number): void {
    if (this.n === this.a.length) this.a = more(this.a, this.n);
    this.a[this.n++] = v;
  }

  /** the last value, taken off (-1 when there is none: the values are never negative) */
  pop(): number {
    return this.n ? this.a[--this.n] : -1;
  }
}

/* A row of Rows: 64 bytes of one buffer, a cache line (the fields a lookup's hit reads and writes
 * together, as struct nf_conn keeps its tuples, status, timeout and mark), read through four views
 * of the buffer: as 16 int32 (k: orig K0..K3 at 0, reply K0..K3 at 4; u32: the generation at 14),
 * as 8 float64 (f64: expiry at 4, stream time at 5, mark at 6) and as 64 bytes (u8: status bits at
 * 60, TCP state's number at 61, hash keys naming it at 62, places in the list at 63). */
const RI = 16;
const RF = 8;
const RB = 64;
const GEN = 14;
const EXPIRES = 4;
const STREAM = 5;
const MARK = 6;
const FLAGS = 60;
const TCP = 61;
const REFS = 62;
const LISTED = 63;

/**
 * A namespace's confirmed entries in one buffer of rows, a row an entry (the layout above): both
 * tuples as their numeric keys (K0..K3 of each: addresses as numbers, ports, ICMP type/code/id),
 * the status bits, the TCP state's number, expiry, UDP stream time and mark as float64; the list in
 * the order confirmed (rows, those expired since it was last read among them) and the expiry heap
 * (rows). An entry whose data the columns cannot give back field for field (a tuple `regular`
 * refuses, a field of another type, both only from a saved world made by hand or a test) keeps its
 * data object (`objs`) and only its place here. A row is reused once it has left the list and no
 * key of the tuple hash names it (a key set with a tuple the entry no longer has stays until
 * deleted, as the Map by string key did); its generation then changes, and a handle of the old one
 * refuses to be read. Growing copies the one buffer into one twice its size.
 */
class Rows {
  cap = 16;
  n = 0;
  /** rows freed, to reuse (the last freed first) */
  free = new IntList();
  /** the rows' buffer as int32 (keys), uint32 (generation), float64 (times, mark) and bytes */
  k = new Int32Array(16 * RI);
  u32 = new Uint32Array(this.k.buffer);
  f64 = new Float64Array(this.k.buffer);
  u8 = new Uint8Array(this.k.buffer);
  /** rows whose entry is its data object */
  objs = new Map<number, CtEntry>();
  /** the tuple hash whose keys name these rows (the one made with them) */
  hash: TupleHash | undefined = undefined;
  /** the list: rows in the order confirmed, `gone` of them expired since it was last read */
  slots = new IntList();
  gone = 0;
  due = new ExpiryHeap();
  /** bumped by every write: the list's objects (`view`) are made again after one */
  version = 0;
  /**
   * The pending entry: a new entry's row, made by track's miss and neither listed nor in the hash
   * until confirmed (at most one a table: the next miss makes the one before, if never confirmed,
   * its data object, as every new entry was before, and takes its row), its handle, and what the
   * miss found in the hash for its original tuple: the key's hash, the empty slot it would go in
   * and the hash's `stamp` then (the confirm puts the key there if the hash has not changed since)
   */
  pending: CtEntry | undefined = undefined;
  pendingHash = 0;
  pendingSlot = 0;
  pendingStamp = -1;
  private viewAt = -1;
  private views: (CtEntryData | undefined)[] = [];

  alloc(): number {
    let r = this.free.pop();
    if (r < 0) {
      r = this.n++;
      if (r === this.cap) {
        const cap = (this.cap *= 2);
        const k = (this.k = grow(this.k, cap * RI));
        this.u32 = new Uint32Array(k.buffer);
        this.f64 = new Float64Array(k.buffer);
        this.u8 = new Uint8Array(k.buffer);
      }
    }
    return r;
  }

  /** row r's entry is its data object (in `objs`; none is, in a table the datapath made) */
  isObj(r: number): boolean {
    return this.objs.size !== 0 && this.objs.has(r);
  }

  /** row r's status bits */
  flags(r: number): number {
    return this.u8[RB * r + FLAGS];
  }
  setFlags(r: number, f: number): void {
    this.u8[RB * r + FLAGS] = f;
  }
  /** row r's TCP state's number */
  tcp(r: number): number {
    return this.u8[RB * r + TCP];
  }
  setTcp(r: number, s: number): void {
    this.u8[RB * r + TCP] = s;
  }
  expires(r: number): number {
    return this.f64[RF * r + EXPIRES];
  }
  setExpires(r: number, t: number): void {
    this.f64[RF * r + EXPIRES] = t;
  }
  streamTs(r: number): number {
    return this.f64[RF * r + STREAM];
  }
  mark(r: number): number {
    return this.f64[RF * r + MARK];
  }
  gen(r: number): number {
    return this.u32[RI * r + GEN];
  }
  /** how many keys of the tuple hash name row r, changed by d */
  ref(r: number, d: number): void {
    this.u8[RB * r + REFS] += d;
  }

  /** a row for `d` (data of an entry), listed and placed in the heap: in the columns when they give
   * `d` back field for field, else `d` itself kept with `handle` (or a handle of its own) */
  keep(d: CtEntryData, handle: CtEntry | undefined, asObject = false): number {
    const r = this.alloc();
    this.version++;
    const ft = asObject ? -1 : columnsOf(d, this.k, RI * r);
    if (ft >= 0) return this.fill(r, ft & 0xff, ft >>> 8, d.expires, d.streamTs, d.mark);
    // kept as its object: a handle of its own, the one every lookup gives
    const e = handle ?? new CtEntry();
    e.d = d;
    e.c = this;
    e.r = r;
    this.objs.set(r, e);
    this.setFlags(r, 0);
    this.list(r);
    return r;
  }

  /** a row of a CtRow's columns with these keys, expiry and stream time, listed and placed in the heap */
  keepRow(x: CtRow, keys: Int32Array, expires: number, streamTs: number): number {
    const r = this.alloc();
    this.version++;
    const k = this.k;
    const o = RI * r;
    k[o] = keys[0];
    k[o + 1] = keys[1];
    k[o + 2] = keys[2];
    k[o + 3] = keys[3];
    k[o + 4] = keys[4];
    k[o + 5] = keys[5];
    k[o + 6] = keys[6];
    k[o + 7] = keys[7];
    return this.fill(r, x.flags, x.tcp, expires, streamTs, x.mark);
  }

  /** row r's columns but its keys (written), listed and placed in the heap */
  private fill(
    r: number,
    flags: number,
    tcp: number,
    expires: number,
    streamTs: number,
    mark: number,
  ): number {
    const u8 = this.u8;
    const f64 = this.f64;
    u8[RB * r + FLAGS] = flags;
    u8[RB * r + TCP] = tcp;
    f64[RF * r + EXPIRES] = expires;
    f64[RF * r + STREAM] = streamTs;
    f64[RF * r + MARK] = mark;
    this.list(r);
    return r;
  }

  list(r: number): void {
    this.slots.push(r);
    this.u8[RB * r + LISTED]++;
    this.due.push(this.expiryOf(r), r);
  }

  /** K0..K3: the key of row r's tuple in direction dir (0 original, 1 reply) */
  loadKey(r: number, dir: number): void {
    loadKeyAt(this.k, RI * r + 4 * dir);
  }

  expiryOf(r: number): number {
    return this.isObj(r) ? this.objs.get(r)!.d!.expires : this.f64[RF * r + EXPIRES];
  }

  /** the list as data (objects made once a version: `entries` and `index` give the same ones) */
  view(r: number): CtEntryData {
    if (this.viewAt !== this.version) {
      this.views = [];
      this.viewAt = this.version;
    }
    let v = this.views[r];
    if (v === undefined) {
      const o = this.objs.get(r);
      v = o !== undefined ? o.d! : this.data(r);
      this.views[r] = v;
    }
    return v;
  }

  /** row r's fields as a new data object (its original tuple `orig` when given, else from the key) */
  data(r: number, orig?: Tuple): CtEntryData {
    const k = this.k;
    const o = RI * r;
    const tcp = this.tcp(r);
    return dataOf(
      orig ?? tupleOfKey(k[o], k[o + 1], k[o + 2], k[o + 3]),
      tupleOfKey(k[o + 4], k[o + 5], k[o + 6], k[o + 7]),
      this.expires(r),
      this.flags(r),
      this.streamTs(r),
      this.mark(r),
      tcp === NO_TCP ? undefined : S[tcp],
    );
  }

  /** the row whose `view` is v, -1 for none */
  rowOfView(v: CtEntryData): number {
    const u8 = this.u8;
    for (let r = 0; r < this.n; r++)
      if ((u8[RB * r + LISTED] || u8[RB * r + REFS]) && this.view(r) === v) return r;
    return -1;
  }

  /** the list without the rows that expired (dropped from the list and the heap when read) */
  listedRows(): IntList {
    if (this.gone) {
      const slots = this.slots.a;
      const u8 = this.u8;
      // the heap first, while the expired rows still say so: a place of a row released (its bit
      // cleared) and left in the heap would expire the row again, and delete its tuples' keys
      // from the hash, where a new entry of the same tuples may be by then
      this.due.retain((r) => (u8[RB * r + FLAGS] & F_GONE) === 0);
      let j = 0;
      for (let i = 0; i < this.slots.n; i++) {
        const r = slots[i];
        if (u8[RB * r + FLAGS] & F_GONE) {
          u8[RB * r + LISTED]--;
          this.release(r);
        } else slots[j++] = r;
      }
      this.slots.n = j;
      this.gone = 0;
    }
    return this.slots;
  }

  /** an expired row nothing names any more is free */
  release(r: number): void {
    const u8 = this.u8;
    const o = RB * r;
    if (u8[o + REFS] === 0 && u8[o + LISTED] === 0 && u8[o + FLAGS] & F_GONE) {
      u8[o + FLAGS] = 0;
      this.u32[RI * r + GEN]++;
      if (this.objs.size !== 0) this.objs.delete(r);
      this.free.push(r);
    }
  }

  /**
   * A new entry of tuple t (regular: its numeric key in K0..K3) as the pending row, its reply the
   * inverse (invertTuple's, from the numbers), not yet confirmed; `hash` the miss's (see pending)
   */
  newPending(
    t: Tuple,
    now: number,
    tcpState: TcpCtState | undefined,
    hash: number,
    slot: number,
    stamp: number,
  ): CtEntry {
    const proto = K0 & 0xff;
    const old = this.pending;
    // (materialize and alloc leave K0..K3 as they are)
    if (old !== undefined) this.materialize(old);
    const r = this.alloc();
    this.version++;
    const k = this.k;
    const o = RI * r;
    k[o] = K0;
    k[o + 1] = K1;
    k[o + 2] = K2;
    k[o + 3] = K3;
    invertKey();
    k[o + 4] = K0;
    k[o + 5] = K1;
    k[o + 6] = K2;
    k[o + 7] = K3;
    const u8 = this.u8;
    const f64 = this.f64;
    u8[RB * r + FLAGS] = 0;
    u8[RB * r + TCP] = tcpState === undefined ? NO_TCP : TCP_NUM[tcpState];
    // a new entry is never assured
    f64[RF * r + EXPIRES] = now + ctTimeout(proto, tcpState, false) * 1e6;
    f64[RF * r + STREAM] = now + 2e6;
    f64[RF * r + MARK] = 0;
    const e = new CtEntry();
    e.c = this;
    e.r = r;
    e.g = this.gen(r);
    e.o = t;
    this.pending = e;
    this.pendingHash = hash;
    this.pendingSlot = slot;
    this.pendingStamp = stamp;
    return e;
  }

  /** the pending entry e becomes its data object (blank's fields, in its order), its row free again */
  materialize(e: CtEntry): void {
    const r = e.r;
    e.d = this.data(r, e.o);
    e.c = undefined;
    e.r = -1;
    e.g = 0;
    e.o = undefined;
    if (this.pending === e) this.pending = undefined;
    this.setFlags(r, 0);
    this.u32[RI * r + GEN]++;
    this.free.push(r);
  }

  /** the handle of row r: its object, or a handle of the columns */
  handle(r: number): CtEntry {
    if (this.isObj(r)) return this.objs.get(r)!;
    const e = new CtEntry();
    e.c = this;
    e.r = r;
    e.g = this.gen(r);
    return e;
  }
}

/**
 * A conntrack entry as the datapath and NAT read and write it: a handle of a row of its table's
 * columns once confirmed, or its data object (an entry not in a table: new and not yet confirmed,
 * INVALID; or one the columns cannot keep). Lookups give a new handle of a row each time:
 * `Conntrack.same` says whether two are the same entry. A handle of a row that has been reused
 * since (the entry expired and was dropped, and its row given to another) throws when read.
 */
export class CtEntry implements CtEntryData {
  /** the data, while the entry is an object */
  d: CtEntryData | undefined = undefined;
  /** the table's columns and the row, once confirmed (-1 before), and the row's generation */
  c: Rows | undefined = undefined;
  r = -1;
  g = 0;
  /** the original tuple while the entry is its table's pending row (track's tuple, as `orig` was) */
  o: Tuple | undefined = undefined;

  /** the row, checked to be this handle's still */
  private row(): number {
    if (this.c!.gen(this.r) !== this.g) throw new Error('a conntrack entry read after its row was reused');
    return this.r;
  }
  private tuple(dir: number): Tuple {
    const k = this.c!.k;
    const o = RI * this.row() + 4 * dir;
    return tupleOfKey(k[o], k[o + 1], k[o + 2], k[o + 3]);
  }

  get orig(): Tuple {
    return this.d !== undefined ? this.d.orig : this.o !== undefined ? this.o : this.tuple(0);
  }
  get reply(): Tuple {
    return this.d !== undefined ? this.d.reply : this.tuple(1);
  }
  /** a new reply tuple (NAT): one the columns can keep (NAT makes only such) */
  set reply(t: Tuple) {
    if (this.d === undefined && this.o !== undefined && !regular(t)) {
      // pending: a tuple the columns cannot keep makes it its data object, as it was
      this.c!.materialize(this);
    }
    if (this.d !== undefined) {
      this.d.reply = t;
      return;
    }
    if (!regular(t)) throw new Error('a conntrack entry in the table given a reply tuple of no numeric key');
    const k0 = K0;
    const k1 = K1;
    const k2 = K2;
    const k3 = K3;
    const c = this.c!;
    const r = this.row();
    // a confirmed entry's reply key in the hash stays the old tuple's (a pending one has none)
    if (this.o === undefined) c.hash!.disown(r, 1);
    const o = RI * r + 4;
    c.version++;
    c.k[o] = k0;
    c.k[o + 1] = k1;
    c.k[o + 2] = k2;
    c.k[o + 3] = k3;
  }
  /** the reply tuple's destination (the original's source unless SNAT changed it), without the tuple */
  dstOf(dir: CtDir): string {
    if (this.d !== undefined) return (dir === 'original' ? this.d.orig : this.d.reply).dst;
    return intToIp4Cached(this.c!.k[RI * this.row() + (dir === 'original' ? 2 : 6)] >>> 0);
  }
  /** the entry's tuples are numeric keys in its table's columns (addresses dotted quads) */
  get keyed(): boolean {
    return this.d === undefined;
  }
  /** K0..K3: the key of the tuple in direction dir (0 original, 1 reply), of an entry `keyed` */
  loadKey(dir: number): void {
    this.c!.loadKey(this.row(), dir);
  }
  /** the reply tuple's protocol, without the tuple */
  get replyProto(): number {
    return this.d !== undefined ? this.d.reply.proto : this.c!.k[RI * this.row() + 4] & 0xff;
  }
  /** the original tuple's protocol */
  get proto(): number {
    return this.d !== undefined ? this.d.orig.proto : this.c!.k[RI * this.row()] & 0xff;
  }

  get tcpState(): TcpCtState | undefined {
    if (this.d !== undefined) return this.d.tcpState;
    const s = this.c!.tcp(this.row());
    return s === NO_TCP ? undefined : S[s];
  }
  set tcpState(v: TcpCtState | undefined) {
    if (this.d !== undefined) {
      this.d.tcpState = v;
      return;
    }
    const c = this.c!;
    c.version++;
    c.setTcp(this.row(), v === undefined ? NO_TCP : TCP_NUM[v]);
  }
  get expires(): number {
    return this.d !== undefined ? this.d.expires : this.c!.expires(this.row());
  }
  set expires(v: number) {
    if (this.d !== undefined) {
      this.d.expires = v;
      if (this.c !== undefined) this.c.version++;
      return;
    }
    const c = this.c!;
    c.version++;
    c.setExpires(this.row(), v);
  }
  get streamTs(): number {
    return this.d !== undefined ? this.d.streamTs : this.c!.streamTs(this.row());
  }
  get mark(): number {
    return this.d !== undefined ? this.d.mark : this.c!.mark(this.row());
  }
  /** a status bit: the data's field, or the row's bit */
  private bit(name: FlagField, bit: number): boolean {
    const d = this.d;
    return d !== undefined ? d[name] : (this.c!.flags(this.row()) & bit) !== 0;
  }
  private setBit(name: FlagField, bit: number, v: boolean): void {
    const d = this.d;
    if (d !== undefined) d[name] = v;
    else {
      const c = this.c!;
      const r = this.row();
      c.version++;
      c.setFlags(r, v ? c.flags(r) | bit : c.flags(r) & ~bit);
    }
  }
  get confirmed(): boolean {
    return this.bit('confirmed', F_CONFIRMED);
  }
  /* prettier-ignore */ get seenReply(): boolean { return this.bit('seenReply', F_SEEN); }
  /* prettier-ignore */ set seenReply(v: boolean) { this.setBit('seenReply', F_SEEN, v); }
  /* prettier-ignore */ get assured(): boolean { return this.bit('assured', F_ASSURED); }
  /* prettier-ignore */ set assured(v: boolean) { this.setBit('assured', F_ASSURED, v); }
  /* prettier-ignore */ get snat(): boolean { return this.bit('snat', F_SNAT); }
  /* prettier-ignore */ set snat(v: boolean) { this.setBit('snat', F_SNAT, v); }
  /* prettier-ignore */ get dnat(): boolean { return this.bit('dnat', F_DNAT); }
  /* prettier-ignore */ set dnat(v: boolean) { this.setBit('dnat', F_DNAT, v); }
  /* prettier-ignore */ get snatDone(): boolean { return this.bit('snatDone', F_SNAT_DONE); }
  /* prettier-ignore */ set snatDone(v: boolean) { this.setBit('snatDone', F_SNAT_DONE, v); }
  /* prettier-ignore */ get dnatDone(): boolean { return this.bit('dnatDone', F_DNAT_DONE); }
  /* prettier-ignore */ set dnatDone(v: boolean) { this.setBit('dnatDone', F_DNAT_DONE, v); }

  /** the entry's fields as a plain object (a copy: writing it changes nothing) */
  data(): CtEntryData {
    return this.d !== undefined ? { ...this.d } : this.c!.data(this.row(), this.o);
  }
}

/** an INVALID or new entry: its data object, every field in the literal (tcpState last) */
function blankEntry(d: CtEntryData): CtEntry {
  const e = new CtEntry();
  e.d = d;
  return e;
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

/* ------------------------------------------------------------ the tuple hash */

/* a key row of TupleHash: 8 int32 (32 bytes) of one buffer, K0..K3, the entry row at 4, the
 * direction at 5, and the insertion order as the float64 at 3 of the row's 4 */
const KR = 8;
const KF = 4;
const KENT = 4;
const KDIR = 5;
const KSEQ = 3;

/** where the key of a slot value v > 0 (a row's own: 2 × row + direction + 1) is in the rows' int32 */
const ownKeyAt = (v: number) => RI * ((v - 1) >> 1) + 4 * ((v - 1) & 1);

/**
 * The tuple hash (nf_conntrack_hash): tuple → entry row and direction, with a Map's semantics (a
 * set on a key present replaces its value in place; insertion order kept for `toMap`), as numbers
 * in an open-addressing table (linear probing, backward-shift deletion) instead of a Map of string
 * keys. A slot is two words, its value and the key's hash (eight slots to a cache line: a probe
 * that misses, as most do in a table of thousands, reads one line, and growing copies two words a
 * slot). The value of a key that is its entry row's own tuple (a row of the columns, in that
 * direction: every key the datapath sets) is 2 × the row + the direction + 1, its key compared
 * with the row's (when the hash is equal): a hit reads the slot's line and the row's, which the
 * caller reads next anyway, as nf_conntrack_tuple_hash lives in struct nf_conn; its insertion
 * order is kept beside (`rowSeqs`, by 2 × row + direction). Any other key (of an entry kept as its
 * object; one whose entry's reply tuple changed since, made one before the change: `disown`) is a
 * key row of its own, the value ~ its index: 32 bytes of one buffer (two to a cache line) holding
 * the key's numbers, the entry's row, the direction and the insertion order. A tuple without
 * numeric key (numericKey false) goes to a Map by its string key beside it; no string key of one
 * can equal a numeric one's. The keys stay the tuples the entries were set with (a key names its
 * entry's row: `Rows.ref`).
 */
class TupleHash {
  /** slots: value (0: empty; > 0: 2 × entry row + direction + 1, the row's own key; < 0: ~ key row), hash */
  private mask = 15;
  private w = new Int32Array(16 * 2);
  /** key rows, 8 int32 each: K0..K3, the entry row, the direction, and the insertion order as the
   * float64 at 3 of the row (seqs: the buffer as float64); freed key rows to reuse */
  private keys = new Int32Array(16 * KR);
  private seqs = new Float64Array(this.keys.buffer);
  private nrows = 0;
  private free = new IntList();
  /** the insertion order of the keys that are their row's own, at 2 × row + direction */
  private rowSeqs = new Float64Array(32);
  private size = 0;
  private seq = 0;
  private other = new Map<string, { row: number; dir: number; seq: number }>();
  /** the direction of the last `get` that found an entry (0 original, 1 reply) */
  dir = 0;
  /** of the last getKey that found nothing: the key's hash and the empty slot where it would go */
  missHash = 0;
  missSlot = 0;
  /** bumped when a key comes or goes, or the slots grow (a slot found before is then stale) */
  stamp = 0;

  constructor(readonly rows: Rows) {
    rows.hash = this;
  }

  private slot(h: number): number {
    const w = this.w;
    const k = this.keys;
    const rk = this.rows.k;
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const v = w[2 * i];
      if (v === 0) return ~i;
      if (w[2 * i + 1] === h) {
        if (v > 0) {
          const o = ownKeyAt(v);
          if (rk[o] === K0 && rk[o + 1] === K1 && rk[o + 2] === K2 && rk[o + 3] === K3) return i;
        } else {
          const o = KR * ~v;
          if (k[o] === K0 && k[o + 1] === K1 && k[o + 2] === K2 && k[o + 3] === K3) return i;
        }
      }
    }
  }

  /** the entry row of slot value v (its direction in `dir`) */
  private entry(v: number): number {
    this.dir = this.dirOf(v);
    return this.rowOf(v);
  }

  /** the entry row a slot value names */
  private rowOf(v: number): number {
    return v > 0 ? (v - 1) >> 1 : this.keys[KR * ~v + KENT];
  }

  /** the direction of the entry's tuple a slot value is the key of */
  private dirOf(v: number): number {
    return v > 0 ? (v - 1) & 1 : this.keys[KR * ~v + KDIR];
  }

  /** the entry row of tuple t (-1: none); its direction in `dir` */
  get(t: Tuple): number {
    return numericKey(t) ? this.getKey() : this.getOther(t);
  }

  /** get of a tuple without numeric key (numericKey false) */
  getOther(t: Tuple): number {
    const hit = this.other.get(tupleKey(t));
    if (!hit) return -1;
    this.dir = hit.dir;
    return hit.row;
  }

  /** get of the key K0..K3 (a miss leaves its hash and slot in missHash, missSlot) */
  getKey(): number {
    const h = hashKey();
    const i = this.slot(h);
    if (i < 0) {
      this.missHash = h;
      this.missSlot = ~i;
      return -1;
    }
    return this.entry(this.w[2 * i]);
  }

  /** the entry row `row` is now the value of tuple t (K0..K3 when t is undefined), direction `dir` */
  set(t: Tuple | undefined, row: number, dir: number): void {
    const rows = this.rows;
    rows.ref(row, 1);
    if (t !== undefined && !numericKey(t)) {
      const k = tupleKey(t);
      const had = this.other.get(k);
      if (had) this.unref(had.row);
      this.other.set(k, { row, dir, seq: had ? had.seq : this.seq++ });
      return;
    }
    this.setHashed(hashKey(), row, dir);
  }

  /**
   * set of the key K0..K3, known to be absent, whose hash is h: put in `slot` (the empty one a
   * miss found) when the hash has not changed since (`stamp`), without probing again
   */
  setNew(h: number, slot: number, stamp: number, row: number, dir: number): void {
    this.rows.ref(row, 1);
    if (stamp !== this.stamp || this.full()) return this.setHashed(h, row, dir);
    this.insertAt(slot, h, row, dir);
  }

  /** the key K0..K3 (hash h) put in the empty `slot`, its value entry row `row`, direction `dir` */
  private insertAt(slot: number, h: number, row: number, dir: number): void {
    this.stamp++;
    this.size++;
    this.w[2 * slot] = this.value(row, dir, this.seq++);
    this.w[2 * slot + 1] = h;
  }

  /**
   * the slot value of the key K0..K3 naming entry row `row`, direction `dir`, inserted `seq`-th: the
   * row's own (its insertion order kept beside) when it is the row's tuple in that direction, else
   * a new key row
   */
  private value(row: number, dir: number, seq: number): number {
    const rows = this.rows;
    const rk = rows.k;
    const o = RI * row + 4 * dir;
    if (rk[o] === K0 && rk[o + 1] === K1 && rk[o + 2] === K2 && rk[o + 3] === K3 && !rows.isObj(row)) {
      const at = 2 * row + dir;
      if (at >= this.rowSeqs.length) this.rowSeqs = grow(this.rowSeqs, 2 * rows.cap);
      this.rowSeqs[at] = seq;
      return at + 1;
    }
    return this.keyRow(row, dir, seq);
  }

  /** the slot value of a new key row of K0..K3 naming entry row `row`, direction `dir`, inserted `seq`-th */
  private keyRow(row: number, dir: number, seq: number): number {
    const r = this.newRow();
    const k = this.keys;
    const p = KR * r;
    k[p] = K0;
    k[p + 1] = K1;
    k[p + 2] = K2;
    k[p + 3] = K3;
    k[p + KENT] = row;
    k[p + KDIR] = dir;
    this.seqs[KF * r + KSEQ] = seq;
    return ~r;
  }

  /** the insertion order of the key whose slot value is v */
  private seqOf(v: number): number {
    return v > 0 ? this.rowSeqs[v - 1] : this.seqs[KF * ~v + KSEQ];
  }

  /** set of the key K0..K3 whose hash is h (the row's reference counted by the caller) */
  private setHashed(h: number, row: number, dir: number): void {
    let i = this.slot(h);
    if (i >= 0) {
      // in place: the same slot and insertion order, the value of the new entry row
      const v = this.w[2 * i];
      // (the old value's entry row read before its key row is freed: the new value may take it)
      const old = this.rowOf(v);
      const seq = this.seqOf(v);
      if (v < 0) this.free.push(~v);
      this.w[2 * i] = this.value(row, dir, seq);
      this.unref(old);
      return;
    }
    if (this.full()) {
      this.grow();
      i = this.slot(h);
    }
    this.insertAt(~i, h, row, dir);
  }

  /**
   * entry row `row`'s tuple in direction `dir` is about to change (a NAT'd reply set after the
   * confirm): its key, if its slot is the row's own, becomes a key row of its own, as it was
   */
  disown(row: number, dir: number): void {
    this.rows.loadKey(row, dir);
    const i = this.slot(hashKey());
    if (i >= 0 && this.w[2 * i] === 2 * row + dir + 1)
      this.w[2 * i] = this.keyRow(row, dir, this.rowSeqs[2 * row + dir]);
  }

  /**
   * one more key would fill more than ½ of the slots: they grow first (twice as many). An entry's
   * two keys have neighbouring homes, so runs of full slots are longer than a random key's would
   * be: at ¾ full a miss read ~13 slots (and a run of 298) in a replayed warm walk's tables of
   * 190,000 keys, at ½ (0.37 full there) ~1.3. Session 19 grew at ¾ for fewer page faults (half the
   * memory touched for the first time when the slots grow); once a steady replayed walk kept no
   * object of its own but the timer (session 21), the misses' cache lines cost more: growing at ½
   * took 8.3 → 7.2 µs off a steady replayed flannel-vxlan walk (7 alternated), for 8 bytes a slot
   * (16–32 bytes a key, the entry's 64-byte row beside)
   */
  private full(): boolean {
    return 2 * (this.size + 1) > this.mask + 1;
  }

  private unref(row: number): void {
    this.rows.ref(row, -1);
    this.rows.release(row);
  }

  private newRow(): number {
    const r = this.free.pop();
    if (r >= 0) return r;
    const n = this.nrows++;
    if (KR * n === this.keys.length) {
      this.keys = grow(this.keys, 2 * KR * n);
      this.seqs = new Float64Array(this.keys.buffer);
    }
    return n;
  }

  /** deletes the key of tuple t (K0..K3 when t is undefined), whatever entry it names */
  delete(t: Tuple | undefined): void {
    if (t !== undefined && !numericKey(t)) {
      const k = tupleKey(t);
      const had = this.other.get(k);
      if (had) {
        this.other.delete(k);
        this.unref(had.row);
      }
      return;
    }
    let i = this.slot(hashKey());
    if (i < 0) return;
    const w = this.w;
    const v = w[2 * i];
    const row = this.rowOf(v);
    if (v < 0) this.free.push(~v);
    this.size--;
    this.stamp++;
    // backward shift: move up every later slot of the run whose home is not between the hole and it
    for (let j = (i + 1) & this.mask; w[2 * j] !== 0; j = (j + 1) & this.mask) {
      const home = w[2 * j + 1] & this.mask;
      if (i <= j ? home > i && home <= j : home > i || home <= j) continue;
      w[2 * i] = w[2 * j];
      w[2 * i + 1] = w[2 * j + 1];
      i = j;
    }
    w[2 * i] = 0;
    this.unref(row);
  }

  private grow(): void {
    this.stamp++;
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
  toMap(): Map<string, { entry: CtEntryData; dir: CtDir }> {
    const all: { seq: number; key: string; row: number; dir: number }[] = [];
    for (const [key, v] of this.other) all.push({ seq: v.seq, key, row: v.row, dir: v.dir });
    const w = this.w;
    for (let i = 0; i <= this.mask; i++) {
      const v = w[2 * i];
      if (v === 0) continue;
      const k = v > 0 ? this.rows.k : this.keys;
      const o = v > 0 ? ownKeyAt(v) : KR * ~v;
      all.push({
        seq: this.seqOf(v),
        key: keyOfKey(k[o], k[o + 1], k[o + 2], k[o + 3]),
        row: this.rowOf(v),
        dir: this.dirOf(v),
      });
    }
    all.sort((a, b) => a.seq - b.seq);
    return new Map(all.map((x) => [x.key, { entry: this.rows.view(x.row), dir: DIRS[x.dir] }]));
  }
}

/**
 * The expiry heap of a table's confirmed entries: a min-heap of places, each a row and the
 * expiry it had when placed (two parallel arrays: no object per place). An entry whose timeout was
 * renewed since is placed again, at its new time, when its place comes due; one whose timeout was
 * shortened is placed again at once. So every entry in the table has a place at or before its
 * expiry, and expire() visits only what is due, not the whole table.
 */
class ExpiryHeap {
  /** the places' expiries and rows, the first `size` of each (typed arrays, grown twice as large) */
  at = NO_TIMES;
  e = NO_INTS;
  size = 0;

  push(t: number, e: number): void {
    let i = this.size++;
    if (i === this.at.length) {
      this.at = more(this.at, i);
      this.e = more(this.e, i);
    }
    const at = this.at;
    const es = this.e;
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
  retain(keep: (e: number) => boolean): void {
    const at = this.at;
    const es = this.e;
    let j = 0;
    for (let i = 0; i < this.size; i++)
      if (keep(es[i])) {
        at[j] = at[i];
        es[j] = es[i];
        j++;
      }
    this.size = j;
    // Floyd's heapify: sift each parent down, the last first
    for (let i = (j >> 1) - 1; i >= 0; i--) this.siftDown(i, at[i], es[i]);
  }

  /** removes the first place (the heap must not be empty) */
  pop(): void {
    const n = --this.size;
    if (n) this.siftDown(0, this.at[n], this.e[n]);
  }

  /** puts place (t, e) at `i` or below, where it belongs among the places under `i` */
  private siftDown(i: number, t: number, e: number): void {
    const at = this.at;
    const es = this.e;
    const n = this.size;
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

/** the empty table of every namespace without a confirmed entry yet (never written: see own) */
const NO_ROWS = new Rows();
const NO_HASH = new TupleHash(NO_ROWS);

/** told of every lookup track makes, before it (a flow cache's recording: the entries a walk finds, as they were) */
let trackObserver: ((ct: Conntrack, t: Tuple) => void) | undefined;

/** set (or, undefined, clear) the observer of track's lookups; returns the one it replaces */
export function observeTrack(
  fn: ((ct: Conntrack, t: Tuple) => void) | undefined,
): ((ct: Conntrack, t: Tuple) => void) | undefined {
  const was = trackObserver;
  trackObserver = fn;
  return was;
}

export class Conntrack {
  /**
   * Confirmed entries in the order confirmed, as data (objects made when read, the same ones
   * until the table changes). An own enumerable accessor, so that data.ts writes it as the array
   * it was; read it and let it go (writing its objects changes nothing)
   */
  declare readonly entries: readonly CtEntryData[];
  /**
   * The tuple hash as data: a Map by tupleKey in insertion order, each value an object of
   * `entries` and the direction, made when read (the saved world's `index`; an own enumerable
   * accessor, so that data.ts writes it as it wrote the Map this was). The datapath reads `hash`.
   */
  declare readonly index: ReadonlyMap<string, { entry: CtEntryData; dir: CtDir }>;
  /** the tuple hash (not enumerable: not data; rebuilt from `index` by `fromData`) */
  declare private hash: TupleHash;
  /** the entries' columns, list and heap (not enumerable: not data; rebuilt from `entries` by `fromData`) */
  declare private rows: Rows;

  constructor() {
    Conntrack.attach(this, NO_HASH);
  }

  /**
   * `entries` and `index`, the same accessors on every table: each table's own closures would give
   * each its own hidden class, and V8 keeps the properties of all but the first table made in a
   * dictionary then (every read of `hash` or `rows` a lookup by name)
   */
  private static readonly ENTRIES: PropertyDescriptor = {
    get(this: Conntrack) {
      return this.listed();
    },
    enumerable: true,
    configurable: true,
  };
  private static readonly INDEX: PropertyDescriptor = {
    get(this: Conntrack) {
      return this.hash.toMap();
    },
    enumerable: true,
    configurable: true,
  };

  private static attach(ct: Conntrack, hash: TupleHash): void {
    Object.defineProperty(ct, 'hash', { value: hash, writable: true, enumerable: false });
    Object.defineProperty(ct, 'rows', { value: hash.rows, writable: true, enumerable: false });
    Object.defineProperty(ct, 'entries', Conntrack.ENTRIES);
    Object.defineProperty(ct, 'index', Conntrack.INDEX);
  }

  /** the entries without those that expired (dropped from the list and the heap when read) */
  private listed(): readonly CtEntryData[] {
    const rows = this.rows;
    const slots = rows.listedRows();
    const out: CtEntryData[] = [];
    for (let i = 0; i < slots.n; i++) out.push(rows.view(slots.a[i]));
    return out;
  }

  /**
   * find_appropriate_src's candidates: the listed entries, in the list's order, whose source manip
   * is set up and whose original tuple has protocol `proto`, source `src` and source port `port`
   * (ICMP: the id, 0 for none), as nat.ts's keyPort gives it. Read from the columns: no entry is
   * made into an object to be asked.
   */
  *snatSources(proto: number, src: string, port: number): Generator<CtEntry> {
    const rows = this.rows;
    const addr = parseIp4Cached(src);
    // the list's length and array read at each place, as the number[]'s were: a row listed or the
    // list compacted between two entries given is seen
    const slots = rows.listedRows();
    for (let i = 0; i < slots.n; i++) {
      const r = slots.a[i];
      if (rows.isObj(r)) {
        const o = rows.objs.get(r)!;
        const t = o.d!.orig;
        const p = t.proto === 1 ? (t.icmpId ?? 0) : t.sport;
        if (o.d!.snatDone && t.proto === proto && t.src === src && p === port) yield o;
        continue;
      }
      const o = RI * r;
      const k0 = rows.k[o];
      // a source parseIp4 refuses is no row's (rows hold only canonical addresses)
      if (addr < 0 || (rows.flags(r) & F_SNAT_DONE) === 0 || (k0 & 0xff) !== proto) continue;
      if (rows.k[o + 1] !== (addr | 0)) continue;
      // the numeric key's port: the source port, or the ICMP id (65,536: none, keyPort's 0)
      const id = rows.k[o + 3] & 0x1ffff;
      if ((proto === 1 ? (id > 0xffff ? 0 : id) : k0 >>> 8) === port) yield rows.handle(r);
    }
  }

  /** the row of an entry of this table (a handle, or an object of `entries`/`index`), -1 for none */
  idOf(x: CtEntry | CtEntryData): number {
    const rows = this.rows;
    if (x instanceof CtEntry) {
      // a pending entry is no entry of the table yet
      if (x.c !== rows || x.o !== undefined) return -1;
      if (x.d === undefined) return rows.gen(x.r) === x.g ? x.r : -1;
      return rows.objs.get(x.r) === x ? x.r : -1;
    }
    return rows.rowOfView(x);
  }

  /** are a and b (handles, or objects of `entries`/`index`) the same entry of this table */
  same(a: CtEntry | CtEntryData, b: CtEntry | CtEntryData): boolean {
    const r = this.idOf(a);
    return r >= 0 && r === this.idOf(b);
  }

  /**
   * The Conntrack of one decoded from data (data.ts gives it its fields, `index` a Map by string
   * key): a table made new, its rows and hash rebuilt from them in their order. `check(key, at)` is called for a key whose
   * value is not an entry of `entries` with a direction, or whose tuple in that direction has
   * another key; it must throw.
   */
  static fromData(ct: Conntrack, check: (what: string, i: number) => never): Conntrack {
    const index = (ct as unknown as { index: unknown }).index;
    if (!(index instanceof Map)) return check('expected a {"$map": …} of tuple keys', -1);
    // the decoded list: a field of its own until the accessor takes its place
    const list = ct.entries;
    const rows = new Rows();
    const hash = new TupleHash(rows);
    // a tuple two entries share (a hand-made file's $ref) keeps its entries objects, so that it
    // is written shared again
    const tuples = new Set<Tuple>();
    const shared = new Set<Tuple>();
    for (const e of list)
      for (const t of [e.orig, e.reply]) {
        if (tuples.has(t)) shared.add(t);
        tuples.add(t);
      }
    const rowOf = new Map<CtEntryData, number>();
    for (const e of list) {
      const had = rowOf.get(e);
      if (had !== undefined) {
        // the same entry twice in the list (a hand-made file): twice, as the array had it
        rows.list(had);
        continue;
      }
      rowOf.set(e, rows.keep(e, undefined, shared.has(e.orig) || shared.has(e.reply)));
    }
    let i = 0;
    for (const [key, v] of index as Map<unknown, { entry?: unknown; dir?: unknown } | null>) {
      const entry = v?.entry;
      const dir = v?.dir;
      const row = rowOf.get(entry as CtEntryData);
      if (row === undefined || (dir !== 'original' && dir !== 'reply'))
        check('expected {"dir": "original" or "reply", "entry": an entry of entries}', i);
      const e = entry as CtEntryData;
      const t = dir === 'original' ? e.orig : e.reply;
      if (tupleKey(t) !== key)
        check(`the key of the entry's ${dir} tuple is ${JSON.stringify(tupleKey(t))}`, i);
      hash.set(t, row!, dir === 'original' ? 0 : 1);
      i++;
    }
    // a table made new, given the decoded one's other fields (deleting `entries` and `index` from
    // the decoded object would leave its properties in a dictionary: every read of them a lookup)
    const out = new Conntrack();
    for (const k of Object.keys(ct))
      if (k !== 'entries' && k !== 'index')
        (out as unknown as Record<string, unknown>)[k] = (ct as unknown as Record<string, unknown>)[k];
    if (list.length !== 0 || i !== 0) {
      out.hash = hash;
      out.rows = hash.rows;
    }
    return out;
  }

  /** the rows and their hash, this namespace's own to write */
  private own(): TupleHash {
    if (this.hash === NO_HASH) {
      this.hash = new TupleHash(new Rows());
      this.rows = this.hash.rows;
    }
    return this.hash;
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
    if (trackObserver !== undefined) trackObserver(this, t);
    this.expire(now);
    if (t.proto === IPPROTO_ICMP && ICMP_ERRORS.has(t.icmpType!)) {
      const hit = quoted && this.find(invertTuple(quoted));
      // the found direction's destination must be the error's destination
      if (hit && hit.entry.dstOf(hit.dir) === t.dst)
        return { entry: hit.entry, dir: hit.dir, ctstate: 'RELATED', isNew: false, related: true };
      return this.invalid(t, now);
    }
    const hash = this.hash;
    const numeric = numericKey(t);
    const row = numeric ? hash.getKey() : hash.getOther(t);
    if (row < 0) {
      const idx = tcpFlags ? tcpIndex(tcpFlags) : undefined;
      let tcpState: TcpCtState | undefined;
      if (t.proto === 6) {
        // a new connection must start with SYN, or (tcp_loose) any ACK picks up mid-stream
        const next = idx === 'syn' ? 'SYN_SENT' : loose && idx === 'ack' ? 'ESTABLISHED' : undefined;
        if (!next) return this.invalid(t, now);
        tcpState = next;
      }
      // a tuple the columns keep (K0..K3 still its key) is the table's pending row, its hash and
      // the slot the miss found carried to the confirm; any other its data object
      let entry: CtEntry;
      if (
        numeric &&
        (t.proto === 1
          ? t.sport === 0 && t.dport === 0
          : t.icmpType === undefined && t.icmpCode === undefined && t.icmpId === undefined)
      ) {
        // (a table without entries yet gets its own: the slot found in the empty one is none)
        const own = this.own();
        const stamp = own === hash ? hash.stamp : -1;
        entry = own.rows.newPending(t, now, tcpState, hash.missHash, hash.missSlot, stamp);
      } else entry = this.fresh(t, now, tcpState);
      return { entry, dir: 'original', ctstate: 'NEW', isNew: true, from: 'NONE', to: tcpState };
    }
    if (!this.rows.isObj(row)) return this.hit(row, this.hash.dir, t, tcpFlags, now);
    const dir = DIRS[this.hash.dir];
    const entry = this.rows.handle(row);
    let from: TcpCtState | undefined;
    let to: TcpCtState | undefined;
    if (t.proto === 6 && tcpFlags) {
      const state = entry.tcpState;
      if (state) {
        from = state;
        const next = (dir === 'original' ? ORIG : REPLY)[tcpIndex(tcpFlags)][S.indexOf(from)];
        if (next === 'IV')
          return { entry, dir, ctstate: 'INVALID', isNew: false, invalid: true, from, to: from };
        to = next === 'IG' ? from : next;
        entry.tcpState = to;
        if ((from === 'SYN_RECV' || from === 'ESTABLISHED') && to === 'ESTABLISHED' && !entry.assured)
          entry.assured = true;
      }
    }
    const seenReply = entry.seenReply;
    if (t.proto === 17 && seenReply) {
      if (now > entry.streamTs) entry.assured = true;
    }
    const ctstate: CtState = dir === 'reply' || seenReply ? 'ESTABLISHED' : 'NEW';
    if (dir === 'reply' && !seenReply) entry.seenReply = true;
    this.setExpiry(entry, now + this.timeout(entry) * 1e6);
    return { entry, dir, ctstate, isNew: false, from, to };
  }

  /**
   * track's found entry, a row of the columns (direction d: 0 original, 1 reply): the same steps
   * read and written on the row, not through a handle's fields
   */
  private hit(
    r: number,
    d: number,
    t: Tuple,
    tcpFlags: Parameters<typeof tcpIndex>[0] | undefined,
    now: number,
  ): CtResult {
    const rows = this.rows;
    const dir = DIRS[d];
    const entry = rows.handle(r);
    let from: TcpCtState | undefined;
    let to: TcpCtState | undefined;
    const u8 = rows.u8;
    let flags = u8[RB * r + FLAGS];
    let s = u8[RB * r + TCP];
    if (t.proto === 6 && tcpFlags && s !== NO_TCP) {
      from = S[s];
      const next = (d === 0 ? ORIG : REPLY)[tcpIndex(tcpFlags)][s];
      if (next === 'IV')
        return { entry, dir, ctstate: 'INVALID', isNew: false, invalid: true, from, to: from };
      to = next === 'IG' ? from : next;
      s = TCP_NUM[to];
      u8[RB * r + TCP] = s;
      if ((from === 'SYN_RECV' || from === 'ESTABLISHED') && to === 'ESTABLISHED') flags |= F_ASSURED;
    }
    const seenReply = (flags & F_SEEN) !== 0;
    if (t.proto === 17 && seenReply && now > rows.f64[RF * r + STREAM]) flags |= F_ASSURED;
    const ctstate: CtState = d === 1 || seenReply ? 'ESTABLISHED' : 'NEW';
    if (d === 1) flags |= F_SEEN;
    u8[RB * r + FLAGS] = flags;
    rows.version++;
    // timeout() and setExpiry()
    const timeout = ctTimeout(
      rows.k[RI * r] & 0xff,
      s === NO_TCP ? undefined : S[s],
      (flags & F_ASSURED) !== 0,
    );
    this.rowExpires(r, now + timeout * 1e6, (flags & F_CONFIRMED) !== 0);
    return { entry, dir, ctstate, isNew: false, from, to };
  }

  /**
   * row r expires at `at` (setExpiry of a row): a confirmed one's earlier expiry told to
   * nextExpiry, a shortened one placed in the heap again at once
   */
  private rowExpires(r: number, at: number, confirmed: boolean): void {
    const rows = this.rows;
    const f64 = rows.f64;
    const was = f64[RF * r + EXPIRES];
    f64[RF * r + EXPIRES] = at;
    if (confirmed) {
      if (at < this.nextExpiry) this.nextExpiry = at;
      if (at < was) rows.due.push(at, r);
    }
  }

  /** __nf_conntrack_confirm: the entry becomes visible in the table */
  confirm(e: CtEntry): void {
    if (e.o !== undefined) {
      const rows = e.c!;
      if (rows === this.rows && rows.pending === e) {
        // the pending row is listed and its keys put in the hash: the original's where the miss
        // found room for it, if the hash is as it was then
        const r = e.r;
        rows.pending = undefined;
        e.o = undefined;
        rows.setFlags(r, rows.flags(r) | F_CONFIRMED);
        rows.version++;
        rows.list(r);
        const at = rows.expires(r);
        if (at < this.nextExpiry) this.nextExpiry = at;
        const hash = this.hash;
        rows.loadKey(r, 0);
        hash.setNew(rows.pendingHash, rows.pendingSlot, rows.pendingStamp, r, 0);
        rows.loadKey(r, 1);
        hash.set(undefined, r, 1);
        return;
      }
      // confirmed in another table (or this one flushed since): as its data object
      rows.materialize(e);
    }
    const d = e.d;
    if (d === undefined || d.confirmed || e.c !== undefined) return;
    d.confirmed = true;
    const hash = this.own();
    const rows = this.rows;
    const orig = d.orig;
    const reply = d.reply;
    const r = rows.keep(d, e);
    if (!rows.isObj(r)) {
      // in the columns now: the handle is of the row
      e.d = undefined;
      e.c = rows;
      e.r = r;
      e.g = rows.gen(r);
    }
    this.hashed(hash, r, orig, reply);
  }

  /**
   * row r, listed: its expiry told, its original's key then its reply's put in the hash (a row of
   * the columns by the keys it has; one kept as its object by its tuples, `orig` and `reply`)
   */
  private hashed(hash: TupleHash, r: number, orig?: Tuple, reply?: Tuple): void {
    const rows = this.rows;
    const at = rows.expiryOf(r);
    if (at < this.nextExpiry) this.nextExpiry = at;
    if (!rows.isObj(r)) {
      // the keys the columns have (numericKey's, made once)
      rows.loadKey(r, 0);
      hash.set(undefined, r, 0);
      rows.loadKey(r, 1);
      hash.set(undefined, r, 1);
    } else {
      hash.set(orig, r, 0);
      hash.set(reply, r, 1);
    }
  }

  /** the confirmed entry with this tuple in either direction (nf_conntrack_find_get) */
  find(t: Tuple): { entry: CtEntry; dir: CtDir } | undefined {
    const row = this.hash.get(t);
    return row < 0 ? undefined : { entry: this.rows.handle(row), dir: DIRS[this.hash.dir] };
  }

  /**
   * the row of the confirmed entry with the tuple of numeric key keys[4 * dir .. 4 * dir + 3] (a
   * CtRow's keys: 0 its original, 1 its reply) in either direction, -1 for none
   */
  rowOfKey(keys: Int32Array, dir: number): number {
    loadKeyAt(keys, 4 * dir);
    return this.hash.getKey();
  }

  /**
   * row r, found by its original tuple, is kept in the columns with both tuples `keys` and x's
   * status bits, TCP state and mark (the fields a lookup's hit reads and leaves: find and
   * CtEntryData's but the expiry and stream time)
   */
  rowIs(r: number, keys: Int32Array, x: CtRow): boolean {
    const rows = this.rows;
    const u8 = rows.u8;
    if (
      u8[RB * r + FLAGS] !== x.flags ||
      u8[RB * r + TCP] !== x.tcp ||
      rows.f64[RF * r + MARK] !== x.mark ||
      rows.isObj(r)
    )
      return false;
    const k = rows.k;
    const o = RI * r;
    for (let i = 0; i < 8; i++) if (k[o + i] !== keys[i]) return false;
    return true;
  }

  /**
   * A confirmed entry put in the table as confirm puts one (at the end of the list, its original's
   * key then its reply's in the hash: a flow cache's replay of a walk that made it), given as a
   * CtRow (its status, TCP state, mark) with these keys, expiry and stream time: its tuples must be
   * in no entry of the table
   */
  insertRow(x: CtRow, keys: Int32Array, expires: number, streamTs: number): void {
    const hash = this.own();
    this.hashed(hash, this.rows.keepRow(x, keys, expires, streamTs));
  }

  /**
   * Row r, an entry a lookup found (rowIs said which), given x's status and TCP state and this
   * expiry as track's hit writes them, the heap told of a shorter expiry (a flow cache's replay of
   * a walk whose packets refreshed it)
   */
  refreshRow(r: number, x: CtRow, expires: number): void {
    const rows = this.rows;
    const u8 = rows.u8;
    u8[RB * r + TCP] = x.tcp;
    u8[RB * r + FLAGS] = x.flags;
    rows.version++;
    this.rowExpires(r, expires, true);
  }

  /** nf_conntrack_tuple_taken: another confirmed entry has this tuple in either direction */
  taken(t: Tuple, ignore: CtEntry): boolean {
    return this.takenRow(this.hash.get(t), ignore);
  }

  /** taken(e.reply, e), an entry `keyed` asked by its numbers, without the tuple */
  replyTaken(e: CtEntry): boolean {
    if (!e.keyed) return this.taken(e.reply, e);
    e.loadKey(1);
    return this.takenRow(this.hash.getKey(), e);
  }

  /** taken(invertTuple(t), ignore) (nf_nat_used_tuple), the inverse's key made from t's numbers */
  takenInverse(t: Tuple, ignore: CtEntry): boolean {
    if (!numericKey(t)) return this.taken(invertTuple(t), ignore);
    invertKey();
    return this.takenRow(this.hash.getKey(), ignore);
  }

  /** taken, of the row the hash gave */
  private takenRow(row: number, ignore: CtEntry): boolean {
    if (row < 0) return false;
    // the same entry: `ignore` is this row's handle (of the columns, or its object)
    const rows = this.rows;
    return !(
      ignore.c === rows &&
      ignore.r === row &&
      (ignore.d === undefined ? ignore.g === rows.gen(row) : rows.objs.get(row) === ignore)
    );
  }

  /** the earliest expiry of any confirmed entry (a lower bound): expire() has nothing to do before it */
  private nextExpiry = Infinity;

  /** the entries listed, those known to have expired not counted (no list made) */
  get listedCount(): number {
    return this.rows.slots.n - this.rows.gone;
  }

  /** the data of the last `k` entries of the list, or undefined when one of them has expired */
  lastListed(k: number): CtEntryData[] | undefined {
    const rows = this.rows;
    const slots = rows.slots;
    const out: CtEntryData[] = [];
    for (let i = slots.n - k; i < slots.n; i++) {
      const r = slots.a[i];
      if (i < 0 || rows.flags(r) & F_GONE) return undefined;
      out.push(rows.view(r));
    }
    return out;
  }

  /** no entry expires before this µs (a lower bound of the earliest expiry: expire() has nothing to do before it) */
  get noExpiryBefore(): number {
    return this.nextExpiry;
  }

  private setExpiry(e: CtEntry, t: number): void {
    const was = e.expires;
    e.expires = t;
    if (!e.confirmed || e.c === undefined) return;
    if (t < this.nextExpiry) this.nextExpiry = t;
    // shortened: its place in the heap may be later than its expiry now
    // (an entry found in the table: track's, whose timeout this is)
    if (t < was) this.rows.due.push(t, e.r);
  }

  /** `conntrack -F`: every entry goes */
  flush(): void {
    this.hash = NO_HASH;
    this.rows = NO_ROWS;
    this.own();
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
    const rows = this.rows;
    const due = rows.due;
    const u8 = rows.u8;
    while (due.size) {
      const r = due.e[0];
      const at = rows.expiryOf(r);
      if (u8[RB * r + FLAGS] & F_GONE) due.pop();
      else if (due.at[0] !== at) {
        due.pop();
        due.push(at, r);
      } else if (at <= now) {
        due.pop();
        u8[RB * r + FLAGS] |= F_GONE;
        rows.gone++;
        rows.version++;
        if (!rows.isObj(r)) {
          rows.loadKey(r, 0);
          this.hash.delete(undefined);
          rows.loadKey(r, 1);
          this.hash.delete(undefined);
        } else {
          const o = rows.objs.get(r)!;
          this.hash.delete(o.d!.orig);
          this.hash.delete(o.d!.reply);
        }
      } else break;
    }
    this.nextExpiry = due.size ? due.at[0] : Infinity;
    // a table that expired most of its entries gives their places back
    if (rows.gone > 64 && 2 * rows.gone > rows.slots.n) rows.listedRows();
  }

  timeout(e: CtEntry): number {
    return ctTimeout(e.proto, e.tcpState, e.assured);
  }

  /** a new entry as its data object (a tuple the columns cannot keep) */
  private fresh(t: Tuple, now: number, tcpState: TcpCtState | undefined): CtEntry {
    const e = blankEntry(this.blank(t, now, tcpState));
    e.expires = now + this.timeout(e) * 1e6;
    return e;
  }

  /** INVALID: an entry for the packet alone, never confirmed, without a TCP state (not even undefined) */
  private invalid(t: Tuple, now: number): CtResult {
    const { tcpState: _, ...d } = this.blank(t, now, undefined);
    return { entry: blankEntry(d), dir: 'original', ctstate: 'INVALID', isNew: false, invalid: true };
  }

  /** a new entry's data, every field in the literal (tcpState last, where it was added after): no field
   * added later to move the entry's fields out of the object */
  private blank(t: Tuple, now: number, tcpState: TcpCtState | undefined): CtEntryData {
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
