/**
 * Connection tracking (nf_conntrack), per network namespace: both tuples, the TCP state machine
 * of nf_conntrack_proto_tcp (tcp_conntracks), UDP/ICMP/generic timeouts, SEEN_REPLY ("[UNREPLIED]"
 * until then) and ASSURED. Entries are created unconfirmed and confirmed when the packet leaves
 * the last hook (POSTROUTING or INPUT); a packet dropped before that leaves no entry.
 */
import type { CtState } from './netfilter.ts';

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
}

export type CtDir = 'original' | 'reply';

export interface CtResult {
  entry: CtEntry;
  dir: CtDir;
  ctstate: CtState;
  isNew: boolean;
  /** TCP state before/after, for the trace */
  from?: TcpCtState;
  to?: TcpCtState;
  invalid?: boolean;
}

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

function invert(t: Tuple): Tuple {
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

export class Conntrack {
  readonly entries: CtEntry[] = [];
  private index = new Map<string, { entry: CtEntry; dir: CtDir }>();

  /** nf_conntrack_in: find or create the entry for a packet and advance its state */
  track(t: Tuple, tcpFlags: Parameters<typeof tcpIndex>[0] | undefined, now: number, loose = true): CtResult {
    this.expire(now);
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
    this.entries.push(e);
    if (e.expires < this.nextExpiry) this.nextExpiry = e.expires;
    this.index.set(tupleKey(e.orig), { entry: e, dir: 'original' });
    this.index.set(tupleKey(e.reply), { entry: e, dir: 'reply' });
  }

  /** ICMP error quoting a tracked packet: RELATED */
  related(quoted: Tuple): CtEntry | undefined {
    return this.index.get(tupleKey(quoted))?.entry;
  }

  /** the earliest expiry of any confirmed entry (a lower bound): expire() has nothing to do before it */
  private nextExpiry = Infinity;

  private setExpiry(e: CtEntry, t: number): void {
    e.expires = t;
    if (e.confirmed && t < this.nextExpiry) this.nextExpiry = t;
  }

  expire(now: number): void {
    if (now < this.nextExpiry) return;
    let next = Infinity;
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const e = this.entries[i];
      if (e.expires > now) {
        next = Math.min(next, e.expires);
        continue;
      }
      this.entries.splice(i, 1);
      this.index.delete(tupleKey(e.orig));
      this.index.delete(tupleKey(e.reply));
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
      reply: invert(t),
      expires: now,
      seenReply: false,
      assured: false,
      confirmed: false,
      streamTs: now + 2e6,
      mark: 0,
    };
  }
}
