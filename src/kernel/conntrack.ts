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
  return { ...t, src: t.dst, dst: t.src, sport: t.dport, dport: t.sport };
}

export function tupleKey(t: Tuple): string {
  return t.proto === 1
    ? `1|${t.src}|${t.dst}|${t.icmpType}|${t.icmpCode}|${t.icmpId}`
    : `${t.proto}|${t.src}|${t.dst}|${t.sport}|${t.dport}`;
}

/** the empty table of every namespace without a confirmed entry yet (never written: see own) */
const NO_ENTRIES: readonly CtEntry[] = Object.freeze([]);
const NO_INDEX: ReadonlyMap<string, { entry: CtEntry; dir: CtDir }> = new Map();

export class Conntrack {
  /** confirmed entries; one empty list shared by every namespace until its first (copy on write) */
  entries: readonly CtEntry[] = NO_ENTRIES;
  private index: ReadonlyMap<string, { entry: CtEntry; dir: CtDir }> = NO_INDEX;

  /** the entries and their index, this namespace's own to write */
  private own(): [CtEntry[], Map<string, { entry: CtEntry; dir: CtDir }>] {
    if (this.entries === NO_ENTRIES) {
      this.entries = [];
      this.index = new Map();
    }
    return [this.entries as CtEntry[], this.index as Map<string, { entry: CtEntry; dir: CtDir }>];
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
      const hit = quoted && this.index.get(tupleKey(invertTuple(quoted)));
      // the found direction's destination must be the error's destination
      if (hit && (hit.dir === 'original' ? hit.entry.orig : hit.entry.reply).dst === t.dst)
        return { entry: hit.entry, dir: hit.dir, ctstate: 'RELATED', isNew: false, related: true };
      return { entry: this.blank(t, now), dir: 'original', ctstate: 'INVALID', isNew: false, invalid: true };
    }
    const found = this.index.get(tupleKey(t));
    if (!found) {
      const idx = tcpFlags ? tcpIndex(tcpFlags) : undefined;
      let tcpState: TcpCtState | undefined;
      if (t.proto === 6) {
        // a new connection must start with SYN, or (tcp_loose) any ACK picks up mid-stream
        const next = idx === 'syn' ? 'SYN_SENT' : loose && idx === 'ack' ? 'ESTABLISHED' : undefined;
        if (!next)
          return {
            entry: this.blank(t, now),
            dir: 'original',
            ctstate: 'INVALID',
            isNew: false,
            invalid: true,
          };
        tcpState = next;
      }
      const entry = this.blank(t, now);
      entry.tcpState = tcpState;
      this.setExpiry(entry, now + this.timeout(entry) * 1e6);
      return { entry, dir: 'original', ctstate: 'NEW', isNew: true, from: 'NONE', to: tcpState };
    }
    const { entry, dir } = found;
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
    const [entries, index] = this.own();
    entries.push(e);
    if (e.expires < this.nextExpiry) this.nextExpiry = e.expires;
    index.set(tupleKey(e.orig), { entry: e, dir: 'original' });
    index.set(tupleKey(e.reply), { entry: e, dir: 'reply' });
  }

  /** the confirmed entry with this tuple in either direction (nf_conntrack_find_get) */
  find(t: Tuple): { entry: CtEntry; dir: CtDir } | undefined {
    return this.index.get(tupleKey(t));
  }

  /** nf_conntrack_tuple_taken: another confirmed entry has this tuple in either direction */
  taken(t: Tuple, ignore: CtEntry): boolean {
    const hit = this.index.get(tupleKey(t));
    return !!hit && hit.entry !== ignore;
  }

  /** the earliest expiry of any confirmed entry (a lower bound): expire() has nothing to do before it */
  private nextExpiry = Infinity;

  private setExpiry(e: CtEntry, t: number): void {
    e.expires = t;
    if (e.confirmed && t < this.nextExpiry) this.nextExpiry = t;
  }

  /** `conntrack -F`: every entry goes */
  flush(): void {
    const [entries, index] = this.own();
    entries.length = 0;
    index.clear();
    this.nextExpiry = Infinity;
  }

  expire(now: number): void {
    if (now < this.nextExpiry) return;
    let next = Infinity;
    const [entries, index] = this.own();
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = entries[i];
      if (e.expires > now) {
        next = Math.min(next, e.expires);
        continue;
      }
      entries.splice(i, 1);
      index.delete(tupleKey(e.orig));
      index.delete(tupleKey(e.reply));
    }
    this.nextExpiry = next;
  }

  timeout(e: CtEntry): number {
    if (e.orig.proto === 6) return CT_TIMEOUTS[e.tcpState ?? 'NONE'];
    if (e.orig.proto === 17) return e.assured ? UDP_STREAM_TIMEOUT : UDP_TIMEOUT;
    if (e.orig.proto === 1) return ICMP_TIMEOUT;
    return GENERIC_TIMEOUT;
  }

  private blank(t: Tuple, now: number): CtEntry {
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
