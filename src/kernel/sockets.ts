/**
 * Transport endpoints: TCP (active open, listeners, handshake, data, FIN, RST), UDP (an echo
 * listener, ICMP port unreachable when none), ICMP echo. What a packet does once delivered, and
 * the packets a host answers with — queued, so each answer is walked as its own trace.
 */
import { NETNS_SYSCTLS } from './sysctl-recorded.ts';
import { ipv4Length } from '../wire/index.ts';
import { intToIp4, isPort } from '../wire/addr.ts';
import { get16, get32 } from '../wire/bytes.ts';
import {
  IPPROTO_ICMP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  type Ipv4Packet,
  type TcpFlags,
  type TcpOptions,
  type TcpRepr,
} from '../wire/types.ts';
import type { Link, Netns } from './objects.ts';
import { loopbackRoute, type AppSocketEvent, type Stack, type TransportHandler } from './stack.ts';
import type { PacketRole, SegmentInfo, SendCall } from './events.ts';
import type { CtResult } from './conntrack.ts';
import { fmix32, fnv1a, fnv1aChar, fnv1aUint, type TimerEvent, type World } from './world.ts';
import { updatePmtu } from './pmtu.ts';
import { NO_BYTES } from './data.ts';

/** icmp_rcv's per-type counters (the ICMP_MIB_IN* of icmp_pointers) */
const ICMP_IN: Record<number, string> = {
  0: 'IcmpInEchoReps',
  3: 'IcmpInDestUnreachs',
  8: 'IcmpInEchos',
  11: 'IcmpInTimeExcds',
};

export const TCP_STATES = [
  'SYN_SENT',
  'SYN_RECV',
  'ESTABLISHED',
  'FIN_WAIT1',
  'FIN_WAIT2',
  'CLOSE_WAIT',
  'LAST_ACK',
  'TIME_WAIT',
  'CLOSED',
] as const;
export type TcpState = (typeof TCP_STATES)[number];

export interface TcpConn {
  ns: string;
  local: string;
  lport: number;
  remote: string;
  rport: number;
  state: TcpState;
  sndNxt: number;
  rcvNxt: number;
  /** our MSS option value (advmss) */
  mss: number;
  /** peer's MSS */
  peerMss: number;
  tsOffset: number;
  tsRecent: number;
  wscale: number;
  peerWscale: number;
  /** unscaled receive window we advertise */
  rcvWnd: number;
  /** bytes to send once established (client request / server response) */
  toSend: Uint8Array;
  /** close after sending (client) or after the peer's FIN (server) */
  closeAfterSend: boolean;
  received: number;
  role: 'client' | 'server';
  /** IP_TTL of what it sends (setsockopt); the default is 64 (net.ipv4.ip_default_ttl) */
  ttl?: number;
  /** oldest unacknowledged sequence number, and the data segments not yet acknowledged */
  sndUna: number;
  unacked: { seq: number; data: Uint8Array; psh: boolean }[];
  /** out-of-order segments held until the gap before them is filled (tcp_data_queue_ofo) */
  ofo: Map<number, { data: Uint8Array; psh: boolean }>;
  /** the in-order stream has carried a PSH: the application has its whole message */
  pushed: boolean;
  /** the application answered (server) or closed (client) */
  done: boolean;
  /** path MTU learned from ICMP fragmentation needed */
  pmtu?: number;
  /* the retransmission timer (armed only for connections opened with timers, e.g. by curl) */
  /** current RTO, µs (TCP_TIMEOUT_INIT 1 s for a SYN) */
  rto?: number;
  /** µs the timer is armed for */
  rtoAt?: number;
  /** µs the first SYN left (retrans_stamp) */
  retransStamp?: number;
  /** the last copy of the SYN sent (a retransmission waits while it still sits in a queue) */
  lastSyn?: Ipv4Packet;
  /** connect() still holds the socket lock (sock_owned_by_user): what its SYN set off happens meanwhile */
  owned?: boolean;
  /** a listener's request (SYN_RECV): the request timer's count of expiries (req->num_timeout) */
  numTimeout?: number;
  /** a listener's request: the options of its SYN-ACK (sent again as they were, with a new TS val) */
  synackOpts?: TcpOptions;
  /** icsk_retransmits and icsk_backoff */
  retransmits?: number;
  backoff?: number;
  /** the error the socket reports (sk_err): ETIMEDOUT, EHOSTUNREACH, ECONNREFUSED… */
  err?: SockErrno;
  /** an ICMP error remembered while retrying (sk_err_soft), reported on timeout */
  softErr?: SockErrno;
  /** µs the connection was established (curl's timings) */
  establishedAt?: number;
  /** µs it entered TIME_WAIT (the socket is gone TCP_TIMEWAIT_LEN, 60 s, later) */
  timeWaitAt?: number;
  /** the bytes the application received, in order */
  rcvd?: Uint8Array[];
  /**
   * the process (Stack.apps) that owns the socket: it reads and writes the stream itself and is
   * told of what happens to it (AppSocketEvent); no HTTP-like answer or close of its own
   */
  app?: string;
  /**
   * a process's stream (`write`): what it wrote that has not left yet (Nagle holds a partial
   * segment while data is unacknowledged), the octets of it, the send buffer's size (sk_sndbuf)
   * and SOCK_NOSPACE (the process found the buffer full and waits to be told it is writable)
   */
  unsent?: Uint8Array[];
  unsentBytes?: number;
  sndbuf?: number;
  nospace?: boolean;
  /** its process closed it (close(): RCV_SHUTDOWN, no reader any more) */
  orphan?: boolean;
}

export type SockErrno =
  | 'ETIMEDOUT'
  | 'EHOSTUNREACH'
  | 'ENETUNREACH'
  | 'ECONNREFUSED'
  | 'ECONNRESET'
  | 'ENOPROTOOPT'
  | 'EMSGSIZE'
  | 'ENOBUFS';

/** icmp_err_convert: the errno of an ICMP destination unreachable code */
export function icmpErrno(code: number): SockErrno {
  switch (code) {
    case 0:
    case 6:
    case 9:
    case 11:
      return 'ENETUNREACH';
    case 2:
      return 'ENOPROTOOPT';
    case 3:
      return 'ECONNREFUSED';
    case 4:
      return 'EMSGSIZE';
    default:
      return 'EHOSTUNREACH';
  }
}

/** IP_MTU_DISCOVER of a socket: DF always (do), never (dont), or when the packet fits the path MTU (want) */
export type Pmtudisc = 'do' | 'dont' | 'want';

/** what a ping socket received, in order: echo replies and its error queue (IP_RECVERR) */
export type PingEvent =
  | { kind: 'reply'; time: number; seq: number; from: string; ttl: number; bytes: number }
  | { kind: 'error'; time: number; seq: number; from: string; type: number; code: number; mtu?: number };

/** an ICMP socket of a ping process (its echo id), in its namespace's Netns.pings */
export interface PingSocket {
  id: number;
  inbox: PingEvent[];
}

/** why a send failed locally: the errno sendmsg returns, with the MTU for EMSGSIZE */
export interface SendError {
  errno: SockErrno;
  mtu?: number;
}

/**
 * The out-of-order queue of every socket that has held nothing out of order, and the bytes to
 * send of every socket that has nothing left to send: shared, never written (a socket is given
 * its own queue when a segment first waits in it, and its own bytes to send by assignment), so a
 * walk's two sockets make neither. A snapshot writes each socket on its own: they read as before.
 * The bytes are NO_BYTES, which is also the payload of every segment without one (a SYN, a
 * SYN-ACK, an ACK, a FIN, a RST): a saved world writes it in full wherever it is (a socket's
 * last SYN beside its bytes to send, packets waiting on one neighbour).
 */
export const NO_OFO: TcpConn['ofo'] = new Map();
const NOTHING = NO_BYTES;
/**
 * The retransmit queue of every socket that has sent nothing unacknowledged beyond its SYN:
 * shared and frozen (the first data segment gives a socket a list of its own; a server's request
 * never sends one in a walk), so a walk's two sockets make no empty list
 */
export const NO_UNACKED: TcpConn['unacked'] = Object.freeze([]) as unknown as TcpConn['unacked'];

/** pairs a derivePair cache holds at the most (per first member, and first members) */
const MAX_PAIRS = 4096;

/**
 * `tcp/PORT`, what a delivery to a TCP port is delivered to, made once per port below the
 * ephemeral range (a listener's); a client's port, new with nearly every connection, gets a string
 * of its own that is not kept (they were kept, one per port a walk ever used: 111 B a walk)
 */
const tcpTos: string[] = [];
const tcpTo = (port: number): string =>
  port >= 0 && port < 32768 ? (tcpTos[port] ??= `tcp/${port}`) : `tcp/${port}`;

/** told of every TCP timestamp a socket makes: its value and the clock (a flow cache's recording) */
let tsObserver: ((val: number, now: number) => void) | undefined;

/** set (or, undefined, clear) the observer of the TCP timestamps made; returns the one it replaces */
export function observeTimestamps(
  fn: ((val: number, now: number) => void) | undefined,
): ((val: number, now: number) => void) | undefined {
  const was = tsObserver;
  tsObserver = fn;
  return was;
}

/**
 * A connection's ISN: World.derive('isn', src, sport, dst, dport), the key's strings not made
 * (derive takes its parts as an array and prints each port: 0.75 % of a warm walk). A port that
 * is not an integer 0..65535 goes through derive itself.
 */
export function deriveIsn(w: World, src: string, sport: number, dst: string, dport: number): number {
  if (!isPort(sport) || !isPort(dport)) return w.derive('isn', src, sport, dst, dport);
  // "isn|" then "SRC|SPORT|DST|DPORT"
  let h = fnv1aChar(0x7c, fnv1a(src, w.deriveStart('isn')));
  h = fnv1aChar(0x7c, fnv1aUint(sport, h));
  h = fnv1aChar(0x7c, fnv1a(dst, h));
  return fmix32(fnv1aUint(dport, h));
}

/**
 * deriveIsn of one connection's client and server for any client port (the flow cache's replay):
 * the hash of what comes before the client's port in each key taken once
 */
export function isnsOf(
  w: World,
  src: string,
  dst: string,
  dport: number,
): { client(sport: number): number; server(sport: number): number } {
  const start = w.deriveStart('isn');
  if (!isPort(dport))
    return {
      client: (sport) => deriveIsn(w, src, sport, dst, dport),
      server: (sport) => deriveIsn(w, dst, dport, src, sport),
    };
  // SRC|SPORT|DST|DPORT
  const client = fnv1aChar(0x7c, fnv1a(src, start));
  // DST|DPORT|SRC|SPORT
  const server = fnv1aChar(
    0x7c,
    fnv1a(src, fnv1aChar(0x7c, fnv1aUint(dport, fnv1aChar(0x7c, fnv1a(dst, start))))),
  );
  return {
    client: (sport) =>
      isPort(sport)
        ? fmix32(fnv1aUint(dport, fnv1aChar(0x7c, fnv1a(dst, fnv1aChar(0x7c, fnv1aUint(sport, client))))))
        : deriveIsn(w, src, sport, dst, dport),
    server: (sport) =>
      isPort(sport) ? fmix32(fnv1aUint(sport, server)) : deriveIsn(w, dst, dport, src, sport),
  };
}

/** a is after b in sequence space */
const seqAfter = (a: number, b: number) => ((a - b) | 0) > 0;

/**
 * ipv4_default_advmss: the MSS a route's MTU gives, at least ip_rt_min_advmss (256) and at most
 * IPV4_MAX_PMTU (65535) less the headers: over lo (MTU 65536) 65495, not 65496
 */
export function advmss(mtu: number): number {
  return Math.min(Math.max(mtu - 40, 256), 65535 - 40);
}

/** TCP_RMEM_TO_WIN_SCALE and TCP_DEFAULT_SCALING_RATIO (include/net/tcp.h): a new socket's
 * skb->len/truesize ratio is assumed 50% (tcp_scaling_ratio_init), in 1/256ths. Since 6.6 this
 * ratio replaces net.ipv4.tcp_adv_win_scale, which the kernel no longer reads (its default 1 gave
 * the same 50%) */
const TCP_RMEM_TO_WIN_SCALE = 8;
const TCP_DEFAULT_SCALING_RATIO = 1 << (TCP_RMEM_TO_WIN_SCALE - 1);
/** TCP_MAX_WSCALE (include/net/tcp.h) and U16_MAX */
const TCP_MAX_WSCALE = 14;
const U16_MAX = 0xffff;

/** what a new socket's windows read of its namespace's sysctls (kept by Sysctls.derived until one is written) */
interface WindowSysctls {
  /** tcp_rmem: min, default, max */
  rmem: readonly number[];
  rmemMax: number;
  /** tcp_window_scaling on */
  scaling: boolean;
}

function readWindowSysctls(ns: Netns): WindowSysctls {
  return {
    rmem: ns.sysctlInts('net.ipv4.tcp_rmem'),
    rmemMax: ns.sysctlNum('net.core.rmem_max'),
    scaling: ns.sysctlNum('net.ipv4.tcp_window_scaling') !== 0,
  };
}

/** the window sysctls of `ns`, read again after any sysctl of the namespace was written */
function windowSysctlsOf(ns: Netns): WindowSysctls {
  return ns.sysctl.derived(readWindowSysctls, ns);
}

/**
 * tcp_full_space of a new socket: tcp_win_from_space (__tcp_win_from_space: space × ratio >>
 * TCP_RMEM_TO_WIN_SCALE) of its sk_rcvbuf, which tcp_init_sock sets to tcp_rmem[1]. A listener's
 * request sockets use the listener's (tcp_openreq_init_rwin); podwalk's sockets set no SO_RCVBUF.
 */
export function fullSpace(ns: Netns): number {
  return Math.floor((windowSysctlsOf(ns).rmem[1] * TCP_DEFAULT_SCALING_RATIO) / (1 << TCP_RMEM_TO_WIN_SCALE));
}

/** ilog2 of a positive 32-bit value */
const ilog2 = (x: number) => 31 - Math.clz32(x);

/**
 * tcp_select_initial_window (net/ipv4/tcp_output.c) with no route window clamp (RTAX_WINDOW,
 * RTAX_INITRWND) and tcp_workaround_signed_windows off: the receive window a SYN or SYN-ACK
 * offers (the space rounded down to a multiple of the MSS, at most U16_MAX) and the window scale
 * that lets the largest buffer (max of the space, tcp_rmem[2] and rmem_max) be advertised.
 * `mss`: the advertised MSS less the timestamp option when the peer's SYN carried one (the
 * SYN-ACK: tcp_openreq_init_rwin); `wscaleOk`: window scaling on (tcp_window_scaling, and for a
 * SYN-ACK the peer's SYN offered it).
 */
export function selectInitialWindow(
  ns: Netns,
  mss: number,
  wscaleOk: boolean,
): { rcvWnd: number; wscale: number; windowClamp: number } {
  // window_clamp 0: the max possible scaled window, U16_MAX << TCP_MAX_WSCALE
  let windowClamp = U16_MAX * 2 ** TCP_MAX_WSCALE;
  let space = Math.min(windowClamp, fullSpace(ns));
  if (space > mss) space = Math.floor(space / mss) * mss;
  const rcvWnd = Math.min(space, U16_MAX);
  let wscale = 0;
  if (wscaleOk) {
    const sys = windowSysctlsOf(ns);
    space = Math.max(space, sys.rmem[2], sys.rmemMax);
    space = Math.min(space, windowClamp);
    wscale = Math.min(Math.max(ilog2(space) - 15, 0), TCP_MAX_WSCALE);
  }
  windowClamp = Math.min(U16_MAX * 2 ** wscale, windowClamp);
  return { rcvWnd, wscale, windowClamp };
}
const TS_OPT = 12;
/** tcp_sndbuf_expand's sizes (x86-64, the 6.18 kernel of the lab: see Sockets.sndbuf) and TCP_INIT_CWND */
const MAX_TCP_HEADER = 256;
const SKB_SHARED_INFO = 320;
const SKB_SIZE = 256;
const TCP_INIT_CWND = 10;
/** TCP_TIMEOUT_INIT and TCP_RTO_MAX (include/net/tcp.h), µs */
const TCP_TIMEOUT_INIT = 1_000_000;
const TCP_RTO_MAX = 120_000_000;

/** tcp_model_timeout: how long `boundary` exponential backoffs from `rtoBase` take, µs */
export function modelTimeout(boundary: number, rtoBase: number): number {
  const thresh = Math.floor(Math.log2(TCP_RTO_MAX / rtoBase));
  if (boundary <= thresh) return ((2 << boundary) - 1) * rtoBase;
  return ((2 << thresh) - 1) * rtoBase + (boundary - thresh) * TCP_RTO_MAX;
}

export class Sockets implements TransportHandler {
  /** every TCP socket of every namespace (they live in Netns.tcp) */
  get conns(): TcpConn[] {
    return [...this.w.netns.values()].flatMap((ns) => ns.tcp.list());
  }

  /** the established-socket hash: the newest socket of the 4-tuple */
  private byTuple(
    ns: Netns,
    local: string,
    lport: number,
    remote: string,
    rport: number,
  ): TcpConn | undefined {
    return ns.tcp.newest(local, lport, remote, rport);
  }

  /** why the last send() returned false */
  lastError?: SendError;
  /** responses the server side sends on an established connection */
  serverResponse: (req: Uint8Array) => Uint8Array = () =>
    asciiBytes('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n');

  constructor(readonly stack: Stack) {
    stack.transport = this;
  }

  private get w() {
    return this.stack.w;
  }

  /* ------------------------------------------------------------ sending */

  /**
   * A socket's send: route lookup, source choice, the socket's MTU check, then ip_local_out.
   * Returns false when the packet never left (no route, EMSGSIZE).
   */
  /**
   * What a sent packet counts, whatever its route (a local destination too: a node connecting to
   * its own NodePort counts its segments, lab Service seed 2006)
   */
  private countOut(ns: Netns, pkt: Ipv4Packet, what: SendCall): void {
    const icmpType = pkt.payload.kind === 'icmp' ? pkt.payload.icmp.type : undefined;
    if (icmpType === 0 || icmpType === 8) {
      // __ip_make_skb / icmp_push_reply → icmp_out_count (errors are counted by icmp_send)
      this.stack.mib(ns, 'IcmpOutMsgs');
      this.stack.mib(ns, `IcmpMsgOutType${icmpType}`);
      this.stack.mib(ns, icmpType === 8 ? 'IcmpOutEchos' : 'IcmpOutEchoReps');
    }
    // __tcp_transmit_skb counts new segments only (a retransmission is TcpRetransSegs)
    if (pkt.payload.kind === 'tcp' && !(typeof what === 'object' && what.kind === 'retransmission'))
      this.stack.count(ns, 'TcpOutSegs');
  }

  send(
    ns: Netns,
    pkt: Ipv4Packet,
    what: SendCall,
    opts: { ct?: CtResult; pmtudisc?: Pmtudisc } = {},
  ): boolean {
    return this.sendRouted(ns, pkt, what, opts.ct, opts.pmtudisc, this.stack.routeOutput(ns, pkt.ip.dst));
  }

  /** send() with the route lookup of pkt.ip.dst made by the caller, at this moment */
  private sendRouted(
    ns: Netns,
    pkt: Ipv4Packet,
    what: SendCall,
    ct: CtResult | undefined,
    pmtudisc: Pmtudisc | undefined,
    rr: ReturnType<Stack['routeOutput']>,
  ): boolean {
    this.lastError = undefined;
    if (!rr) {
      this.lastError = { errno: 'ENETUNREACH' };
      this.w.rec.add({
        kind: 'route',
        layer: 3,
        netns: ns.name,
        action: 'lookup',
        ev: { type: 'route-miss', dst: pkt.ip.dst },
      });
      this.stack.mib(ns, 'IpOutNoRoutes');
      this.stack.drop(ns, { reason: 'no-route', site: 'ip_route_output', dst: pkt.ip.dst, call: what });
      return false;
    }
    if ('error' in rr) {
      // local destination: through lo
      const local = loopbackRoute(ns, pkt.ip.dst, pkt.ip.src === '0.0.0.0' ? pkt.ip.dst : pkt.ip.src);
      if (pkt.ip.src === '0.0.0.0') pkt.ip.src = local.src;
      this.w.rec.add({
        kind: 'route',
        layer: 3,
        netns: ns.name,
        action: 'lookup',
        device: 'lo',
        ev: { type: 'route-local', dst: pkt.ip.dst, dev: rr.dev.name, via: 'output' },
      });
      this.countOut(ns, pkt, what);
      this.stack.localOut(ns, pkt, local, ct);
      return true;
    }
    if (pkt.ip.src === '0.0.0.0') pkt.ip.src = rr.src;
    this.stack.routeStep(ns, pkt.ip.dst, rr);
    const len = ipv4Length(pkt);
    // the socket's MTU is the path MTU (a cached FIB exception) or the device's
    const mtu = rr.pmtu ?? rr.dev.mtu;
    // IP_PMTUDISC_WANT: DF only on what fits the path MTU; the rest is fragmented here
    if (pmtudisc === 'want') pkt.ip.df = len <= mtu;
    if (pkt.ip.df && len > mtu) {
      this.w.rec.add({
        kind: 'mtu',
        layer: 3,
        netns: ns.name,
        action: 'check',
        device: rr.dev.name,
        ev: { type: 'mtu', len, mtu, dev: rr.dev.name, site: 'ip_append_data' },
      });
      this.stack.drop(
        ns,
        { reason: 'mtu-exceeded', site: 'ip_append_data', len, mtu, call: what },
        rr.dev.name,
      );
      // ip_local_error: EMSGSIZE with the MTU on the socket's error queue
      this.lastError = { errno: 'EMSGSIZE', mtu };
      return false;
    }
    if (pkt.payload.kind === 'tcp' || !pkt.ip.df) pkt.ip.id = this.ipId(ns, pkt);
    this.countOut(ns, pkt, what);
    const stack = this.stack;
    stack.sender = ns.name;
    stack.sendError = undefined;
    stack.localOut(ns, pkt, rr, ct);
    stack.sender = undefined;
    if (stack.sendError) {
      // NET_XMIT_DROP from the device: ip_push_pending_frames counts OutDiscards, sendmsg says ENOBUFS
      stack.mib(ns, 'IpOutDiscards');
      this.lastError = { errno: stack.sendError };
      stack.sendError = undefined;
      return false;
    }
    return true;
  }

  private ipId(ns: Netns, pkt: Ipv4Packet): number {
    ns.ipId = (ns.ipId + 1) & 0xffff;
    return (this.derivePair(this.ipIdBase, 'ipid', ns.name, pkt.ip.dst) + ns.ipId) & 0xffff;
  }

  /**
   * World.derive(what, a, b), kept per pair: the IP id base of a namespace and destination, the
   * timestamp offset of an address pair (derive gives the same for the same seed and inputs, and
   * the World's seed never changes). Forgotten all at once when one holds many pairs.
   */
  private derivePair(cache: Map<string, Map<string, number>>, what: string, a: string, b: string): number {
    let m = cache.get(a);
    if (m === undefined) {
      if (cache.size >= MAX_PAIRS) cache.clear();
      cache.set(a, (m = new Map()));
    }
    let v = m.get(b);
    if (v === undefined) {
      if (m.size >= MAX_PAIRS) m.clear();
      m.set(b, (v = this.w.derive(what, a, b)));
    }
    return v;
  }
  private readonly ipIdBase = new Map<string, Map<string, number>>();
  private readonly tsOffsets = new Map<string, Map<string, number>>();

  private ip(src: string, dst: string, protocol: number, df: boolean, ttl = 64): Ipv4Packet['ip'] {
    return { src, dst, protocol, ttl, id: 0, df, mf: false, fragOffset: 0, tos: 0 };
  }

  /** the route MTU a socket sees (for advmss): the output device's MTU */
  routeMtu(ns: Netns, dst: string): number {
    return mtuOfRoute(this.stack.routeOutput(ns, dst));
  }

  tsVal(c: TcpConn): number {
    const v = (Math.floor(this.w.now / 1000) + c.tsOffset) >>> 0;
    if (tsObserver !== undefined) tsObserver(v, this.w.now);
    return v;
  }

  private segment(c: TcpConn, flags: TcpFlags, data: Uint8Array, options: TcpOptions): Ipv4Packet {
    const win = flags.syn ? c.rcvWnd : Math.min(65535, Math.ceil(c.rcvWnd / (1 << c.wscale)));
    return {
      kind: 'ipv4',
      ip: this.ip(c.local, c.remote, IPPROTO_TCP, true, c.ttl ?? 64),
      payload: {
        kind: 'tcp',
        tcp: {
          srcPort: c.lport,
          dstPort: c.rport,
          seq: c.sndNxt,
          ack: flags.ack ? c.rcvNxt : 0,
          flags,
          window: win,
          options,
        },
        data,
      },
    };
  }

  private tsOpt(c: TcpConn): TcpOptions {
    return { timestamp: { val: this.tsVal(c), ecr: c.tsRecent } };
  }

  /**
   * connect(): build and send the SYN. With `timers`, the retransmission timer runs (RTO
   * TCP_TIMEOUT_INIT 1 s); walks send the SYN once.
   */
  connect(
    ns: Netns,
    dst: string,
    dport: number,
    sport: number,
    request: Uint8Array,
    opts: {
      timers?: boolean;
      app?: string;
      ttl?: number;
      /** the caller's routeOutput(ns, dst) of this moment (nothing changed since): not looked up again */
      route?: ReturnType<Stack['routeOutput']>;
    } = {},
  ): TcpConn | undefined {
    // one route lookup for the MTU, the source and the SYN's send (routeOutput reads the state
    // and the clock, and neither changes before the SYN leaves)
    const rr = 'route' in opts ? opts.route : this.stack.routeOutput(ns, dst);
    const mtu = mtuOfRoute(rr);
    const src = rr && !('error' in rr) ? rr.src : rr ? dst : '0.0.0.0';
    const mss = advmss(mtu);
    const isn = deriveIsn(this.w, src, sport, dst, dport);
    // tcp_connect_init: the advertised MSS, window scaling as the namespace has it
    const w = selectInitialWindow(ns, mss, windowSysctlsOf(ns).scaling);
    const tsOffset = this.derivePair(this.tsOffsets, 'tsoff', src, dst);
    const c = newConn(
      ns.name,
      'client',
      src,
      sport,
      dst,
      dport,
      isn,
      0,
      mss,
      536,
      tsOffset,
      0,
      w,
      0,
      request,
    );
    if (opts.app) c.app = opts.app;
    if (opts.ttl !== undefined) c.ttl = opts.ttl;
    this.w.rec.add({
      kind: 'socket',
      layer: 7,
      netns: ns.name,
      action: 'connect',
      ev: { type: 'connect', src, sport, dst, dport, mss, mtu, wscale: c.wscale },
    });
    const syn = this.segment(c, { syn: true }, NOTHING, {
      mss,
      sackOk: true,
      timestamp: { val: this.tsVal(c), ecr: 0 },
      wscale: c.wscale,
    });
    c.sndNxt = (c.sndNxt + 1) >>> 0;
    ns.tcp.add(c);
    // tcp_connect (after ip_route_connect found a route)
    if (rr) this.stack.count(ns, 'TcpActiveOpens');
    if (!this.sendRouted(ns, syn, 'connect()', undefined, undefined, rr)) {
      // tcp_connect failed before a SYN left: connect() returns the error at once
      c.err = this.lastError?.errno;
      if (rr) this.tcpDone(ns, c);
      else c.state = 'CLOSED';
      return opts.timers ? c : undefined;
    }
    if (opts.timers) {
      c.lastSyn = syn;
      c.retransStamp = this.w.now;
      c.rto = TCP_TIMEOUT_INIT;
      c.retransmits = 0;
      c.backoff = 0;
      if (!c.app) c.rcvd = [];
      this.armRto(ns, c);
    }
    return c;
  }

  /** the app on a UDP socket sends one datagram */
  sendUdp(ns: Netns, dst: string, sport: number, dport: number, data: Uint8Array, df: boolean): boolean {
    this.w.rec.add({
      kind: 'socket',
      layer: 7,
      netns: ns.name,
      action: 'sendto',
      ev: { type: 'sendto', bytes: data.length, dst, dport, sport, df },
    });
    const pkt: Ipv4Packet = {
      kind: 'ipv4',
      ip: this.ip('0.0.0.0', dst, IPPROTO_UDP, df),
      payload: { kind: 'udp', udp: { srcPort: sport, dstPort: dport }, payload: { kind: 'raw', data } },
    };
    if (!ns.udpClients.includes(sport)) ns.own('udpClients').push(sport);
    return this.send(ns, pkt, 'sendto()');
  }

  /** ping: one ICMP echo request */
  sendEcho(
    ns: Netns,
    dst: string,
    id: number,
    seq: number,
    data: Uint8Array,
    df: boolean,
    opts: { pmtudisc?: Pmtudisc; ttl?: number; src?: string } = {},
  ): boolean {
    this.w.rec.add({
      kind: 'socket',
      layer: 7,
      netns: ns.name,
      action: 'ping',
      ev: { type: 'ping', dst, id, seq, bytes: data.length, df },
    });
    const pkt: Ipv4Packet = {
      kind: 'ipv4',
      ip: this.ip(opts.src ?? '0.0.0.0', dst, IPPROTO_ICMP, df),
      payload: { kind: 'icmp', icmp: { type: 8, code: 0, id, seq }, data },
    };
    if (opts.ttl !== undefined) pkt.ip.ttl = opts.ttl;
    return this.send(ns, pkt, 'ping', { pmtudisc: opts.pmtudisc });
  }

  /** socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) of a ping process: its echo id, and what it receives */
  openPing(ns: Netns, id: number): PingSocket {
    const sock: PingSocket = { id, inbox: [] };
    ns.own('pings').push(sock);
    return sock;
  }

  closePing(ns: Netns, sock: PingSocket): void {
    const i = ns.pings.indexOf(sock);
    if (i >= 0) ns.own('pings').splice(i, 1);
  }

  private pingSocket(ns: Netns, id: number): PingSocket | undefined {
    for (const p of ns.pings) if (p.id === id) return p;
    return undefined;
  }

  /** a socket timer fired (tcp_write_timer) */
  timer(ns: Netns, ev: TimerEvent): void {
    if (ev.kind !== 'tcp-rto') return;
    const c = this.byTuple(ns, ev.local, ev.lport, ev.remote, ev.rport);
    // the timer armed last (an older arming fires earlier and finds a later rtoAt); it may run a
    // little after its time when a timer due at the same moment sent a packet first (hops tick)
    if (c && c.rtoAt !== undefined && c.rtoAt <= this.w.now) this.retransmitTimer(ns, c);
  }

  private armRto(ns: Netns, c: TcpConn): void {
    c.rtoAt = this.w.now + c.rto!;
    this.w.schedule(c.rtoAt, {
      kind: 'tcp-rto',
      netns: ns.name,
      local: c.local,
      lport: c.lport,
      remote: c.remote,
      rport: c.rport,
    });
  }

  /**
   * tcp_retransmit_timer for a SYN: tcp_write_timeout gives up after tcp_syn_retries +
   * tcp_syn_linear_timeouts retransmissions (ETIMEDOUT, or the soft ICMP error it remembered);
   * otherwise the SYN leaves again, and the RTO doubles (up to TCP_RTO_MAX 120 s) once the
   * backoff passes tcp_syn_linear_timeouts.
   */
  private retransmitTimer(ns: Netns, c: TcpConn): void {
    c.rtoAt = undefined;
    if (c.state === 'SYN_RECV') return this.requestTimer(ns, c);
    if (c.state !== 'SYN_SENT') return;
    const linear = ns.sysctlNum('net.ipv4.tcp_syn_linear_timeouts');
    const retryUntil = ns.sysctlNum('net.ipv4.tcp_syn_retries');
    // tcp_write_timeout: the count of retransmissions, or retransmits_timed_out: the time since
    // the first SYN passed tcp_model_timeout(tcp_syn_retries) with rto_base TCP_TIMEOUT_INIT
    const retransmits = c.retransmits ?? 0;
    const expired =
      retransmits >= retryUntil + linear ||
      (retransmits > 0 && this.w.now - (c.retransStamp ?? 0) >= modelTimeout(retryUntil, TCP_TIMEOUT_INIT));
    if (expired) {
      // tcp_write_err
      c.err = c.softErr ?? 'ETIMEDOUT';
      this.tcpDone(ns, c);
      this.stack.mib(ns, 'TcpExtTCPAbortOnTimeout');
      return;
    }
    c.retransmits = (c.retransmits ?? 0) + 1;
    c.backoff = (c.backoff ?? 0) + 1;
    if (c.backoff > linear) c.rto = Math.min(c.rto! * 2, TCP_RTO_MAX);
    this.armRto(ns, c);
    // skb_still_in_host_queue: the last copy still waits on a neighbour resolution: -EBUSY, no new copy
    if (c.lastSyn && this.stack.queued(ns, c.lastSyn)) return;
    this.stack.mib(ns, 'TcpRetransSegs');
    // tcp_retransmit_skb: a SYN resent counts in TCPSynRetrans
    this.stack.mib(ns, 'TcpExtTCPSynRetrans');
    const seq = c.sndNxt;
    c.sndNxt = (c.sndNxt - 1) >>> 0;
    const syn = this.segment(c, { syn: true }, NOTHING, {
      mss: c.mss,
      sackOk: true,
      timestamp: { val: this.tsVal(c), ecr: 0 },
      wscale: c.wscale,
    });
    c.sndNxt = seq;
    c.lastSyn = syn;
    this.resend(ns, syn);
  }

  /** a copy sent again by a timer: its own step, then out (counted as a retransmission) */
  private resend(ns: Netns, pkt: Ipv4Packet): void {
    this.w.rec.add({
      kind: 'socket',
      layer: 4,
      netns: ns.name,
      action: 'send',
      ev: { type: 'send', role: { kind: 'retransmission' }, pkt },
    });
    this.send(ns, pkt, { kind: 'retransmission' });
  }

  /**
   * reqsk_timer_handler for a listener's request (SYN_RECV) whose SYN-ACK got no ACK: unless it
   * has expired tcp_synack_retries times already (syn_ack_recalc without TCP_DEFER_ACCEPT), the
   * SYN-ACK leaves again (tcp_rtx_synack) and the timer is re-armed at reqsk_timeout: 1 s <<
   * num_timeout, at most TCP_RTO_MAX (1, 3, 7, 15, 31 s after the SYN); otherwise the request is
   * dropped (inet_csk_reqsk_queue_drop_and_put: no counter, it never was a connection). The
   * pruning of old requests when the queue is half full never applies to podwalk's few requests.
   * Each expiry counts TCPTimeouts (tcp_syn_ack_timeout), a counter the model does not keep.
   */
  private requestTimer(ns: Netns, c: TcpConn): void {
    const n = c.numTimeout ?? 0;
    if (n >= ns.sysctlNum('net.ipv4.tcp_synack_retries')) {
      c.state = 'CLOSED';
      return;
    }
    this.rtxSynack(ns, c);
    c.numTimeout = n + 1;
    c.rto = Math.min(TCP_TIMEOUT_INIT * 2 ** c.numTimeout, TCP_RTO_MAX);
    this.armRto(ns, c);
  }

  /**
   * tcp_rtx_synack: the request's SYN-ACK again, as it was but for its TS val. tcp_make_synack
   * counts every SYN-ACK in TcpOutSegs, a resent one too; tcp_rtx_synack adds TcpRetransSegs and
   * TCPSynRetrans.
   */
  private rtxSynack(ns: Netns, c: TcpConn): void {
    const opts = c.synackOpts ?? {};
    const seq = c.sndNxt;
    c.sndNxt = (c.sndNxt - 1) >>> 0;
    const synack = this.segment(c, { syn: true, ack: true }, NOTHING, {
      ...opts,
      timestamp: opts.timestamp ? { val: this.tsVal(c), ecr: c.tsRecent } : undefined,
    });
    c.sndNxt = seq;
    this.stack.count(ns, 'TcpOutSegs');
    this.stack.mib(ns, 'TcpRetransSegs');
    this.stack.mib(ns, 'TcpExtTCPSynRetrans');
    this.resend(ns, synack);
  }

  /** tcp_done: the connection is closed; a handshake that never finished counts as a failed attempt */
  private tcpDone(ns: Netns, c: TcpConn): void {
    if (c.state === 'SYN_SENT' || c.state === 'SYN_RECV') this.stack.mib(ns, 'TcpAttemptFails');
    const was = c.state;
    c.state = 'CLOSED';
    c.rtoAt = undefined;
    // a request that never became a connection was never the process's (no accept())
    if (was !== 'SYN_RECV' && was !== 'CLOSED')
      this.tell(ns, c, { kind: 'error', errno: c.err ?? 'ECONNRESET' });
  }

  /** what a process's socket tells it (after the kernel's own state change) */
  private tell(ns: Netns, c: TcpConn, ev: AppSocketEvent): void {
    if (c.app) this.stack.apps.get(c.app)?.socket(ns, c, ev);
  }

  /** listen() on a TCP port for a process: it accepts the connections and reads them itself */
  listen(ns: Netns, port: number, app: string): void {
    ns.addListener({ proto: 'tcp', port, addr: '0.0.0.0', app });
  }

  /** the process's listening socket on a TCP port closes (the process ended): SYNs to it are refused */
  unlisten(ns: Netns, port: number, app: string): void {
    const i = ns.sockets.findIndex((l) => l.proto === 'tcp' && l.port === port && l.app === app);
    if (i >= 0) ns.removeListener(i);
  }

  /**
   * write() on a process's established connection (tcp_sendmsg): the bytes join the socket's
   * stream and leave as tcp_push sends it, in segments of the MSS with Nagle's algorithm on (the
   * process sets no TCP_NODELAY: BIRD does not): a full segment leaves at once, a partial one only
   * when nothing sent is unacknowledged, and waits otherwise for the ACK or for more data to fill
   * it. So a process that writes message after message while its segments are on their way fills
   * segments with several messages, as a real BIRD's UPDATEs share segments. The model has no
   * congestion or receive window: what is full leaves at once. Returns false (EAGAIN) when the
   * send buffer is full (see `writable`), and then writes nothing.
   */
  write(ns: Netns, c: TcpConn, data: Uint8Array): boolean {
    if (c.state !== 'ESTABLISHED' && c.state !== 'CLOSE_WAIT') return true;
    if (!this.writable(c)) return false;
    (c.unsent ??= []).push(data);
    c.unsentBytes = (c.unsentBytes ?? 0) + data.length;
    this.push(ns, c);
    return true;
  }

  /**
   * sk_stream_memory_free: the send buffer holds less than sk_sndbuf (sk_wmem_queued: what is
   * unacknowledged or unsent; counted here in payload octets, without the kernel's per-skb
   * overhead). When it is full the caller waits (SOCK_NOSPACE) and is told `writable` once an
   * ACK frees a third of it (sk_stream_write_space: free space at least half of what is queued).
   */
  writable(c: TcpConn): boolean {
    if (this.queued(c) < this.sndbuf(c)) return true;
    c.nospace = true;
    return false;
  }

  /** octets written and not acknowledged (sent or not) */
  private queued(c: TcpConn): number {
    return ((c.sndNxt - c.sndUna) >>> 0) + (c.unsentBytes ?? 0);
  }

  /**
   * sk_sndbuf of an established connection: tcp_init_buffer_space → tcp_sndbuf_expand sets it to
   * factor × max(TCP_INIT_CWND 10, snd_cwnd, reordering + 1) × per_mss, the factor the congestion
   * control's sndbuf_expand (bbr: 3; cubic and reno have none: 2), per_mss the worst case of one
   * skb per segment: roundup_pow_of_two(max(mss_clamp, mss_cache) + MAX_TCP_HEADER +
   * SKB_DATA_ALIGN(skb_shared_info)) + SKB_DATA_ALIGN(sk_buff), at least tcp_wmem[1] (tcp_init_sock)
   * and at most tcp_wmem[2]. The header sizes are this machine's kernel's (6.18, x86-64): 2,048 +
   * 256 at MSS 1460, so that the real kernel's SO_SNDBUF after connect() over a veth of MTU 1500
   * with bbr, 69,120 (3 × 10 × 2,304), is the model's. The model has no congestion window: the
   * initial 10 segments.
   */
  private sndbuf(c: TcpConn): number {
    if (c.sndbuf !== undefined) return c.sndbuf;
    const ns = this.w.ns(c.ns);
    // a value sysctl -w set, or a fresh namespace's of the recorded kernel
    const fresh = (k: string) => ns.sysctl.get(k) ?? NETNS_SYSCTLS[k];
    const wmem = ns.sysctlInts('net.ipv4.tcp_wmem', fresh('net.ipv4.tcp_wmem'));
    const factor = fresh('net.ipv4.tcp_congestion_control') === 'bbr' ? 3 : 2;
    const raw = Math.max(c.peerMss, this.sendMss(c) + TS_OPT) + MAX_TCP_HEADER + SKB_SHARED_INFO;
    const perMss = 2 ** Math.ceil(Math.log2(raw)) + SKB_SIZE;
    c.sndbuf = Math.min(Math.max(wmem[1], factor * TCP_INIT_CWND * perMss), wmem[2]);
    return c.sndbuf;
  }

  /** tcp_push of a process's stream: full segments leave; a partial one when nothing is in flight (Nagle) */
  private push(ns: Netns, c: TcpConn, flush = false): void {
    const mss = this.sendMss(c);
    while (c.unsentBytes) {
      const n = Math.min(mss, c.unsentBytes);
      if (n < mss && !flush && c.sndNxt !== c.sndUna) return;
      const part = this.takeUnsent(c, n);
      this.sendSegment(ns, c, part, !c.unsentBytes);
    }
  }

  /** one data segment of the stream leaves (and waits in the retransmit queue for its ACK) */
  private sendSegment(ns: Netns, c: TcpConn, part: Uint8Array, psh: boolean): void {
    const seg = this.segment(c, { psh, ack: true }, part, this.tsOpt(c));
    const u = { seq: c.sndNxt, data: part, psh };
    // the first of an empty queue in a list of one: push would give the list room for 16 (152 B
    // a socket, kept as long as the socket)
    if (c.unacked.length) c.unacked.push(u);
    else c.unacked = [u];
    c.sndNxt = (c.sndNxt + part.length) >>> 0;
    this.stack.queue.push({
      ns: ns.name,
      pkt: seg,
      role: { kind: c.role === 'client' ? 'request' : 'response' },
    });
  }

  /** the first n octets of the unsent stream */
  private takeUnsent(c: TcpConn, n: number): Uint8Array {
    const u = c.unsent!;
    c.unsentBytes! -= n;
    if (u[0].length === n) return u.shift()!;
    if (u[0].length > n) {
      const part = u[0].subarray(0, n);
      u[0] = u[0].subarray(n);
      return part;
    }
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const k = Math.min(u[0].length, n - off);
      out.set(u[0].subarray(0, k), off);
      off += k;
      if (k === u[0].length) u.shift();
      else u[0] = u[0].subarray(k);
    }
    return out;
  }

  /**
   * close() by a process: a connection still opening is dropped (its SYNs stop); an open one sends
   * its FIN (tcp_close: FIN_WAIT1, or LAST_ACK after the peer's FIN)
   */
  close(ns: Netns, c: TcpConn): void {
    if (c.app) c.orphan = true;
    c.app = undefined;
    if (c.state === 'SYN_SENT' || c.state === 'SYN_RECV') {
      c.state = 'CLOSED';
      c.rtoAt = undefined;
      return;
    }
    if (c.state !== 'ESTABLISHED' && c.state !== 'CLOSE_WAIT') return;
    // tcp_send_fin: what the stream still holds leaves first, Nagle or not
    if (c.unsentBytes) this.push(ns, c, true);
    c.state = c.state === 'ESTABLISHED' ? 'FIN_WAIT1' : 'LAST_ACK';
    const fin = this.segment(c, { fin: true, ack: true }, NOTHING, this.tsOpt(c));
    c.sndNxt = (c.sndNxt + 1) >>> 0;
    this.stack.queue.push({ ns: ns.name, pkt: fin, role: { kind: 'fin' } });
  }

  /** the application closes a connection that is still opening (curl giving up): tcp_close of SYN_SENT */
  abort(c: TcpConn): void {
    c.rtoAt = undefined;
    if (c.state === 'SYN_SENT') c.state = 'CLOSED';
  }

  /* ------------------------------------------------------------ receiving */

  receive(ns: Netns, dev: Link, pkt: Ipv4Packet): void {
    const p = pkt.payload;
    if (p.kind === 'tcp') return this.tcpRcv(ns, dev, pkt);
    if (p.kind === 'udp') {
      const sock = ns.sockets.find((s) => s.proto === 'udp' && s.port === p.udp.dstPort);
      if (!sock && ns.udpClients.includes(p.udp.dstPort)) {
        const n = p.payload.kind === 'raw' ? p.payload.data.length : 0;
        this.stack.deliver(ns, dev.name, `udp/${p.udp.dstPort}`, {
          what: 'udp',
          port: p.udp.dstPort,
          bytes: n,
          client: true,
        });
        return;
      }
      if (!sock) {
        this.stack.mib(ns, 'UdpNoPorts');
        this.stack.drop(
          ns,
          { reason: 'port-unreachable', site: 'udp_rcv', port: p.udp.dstPort, src: pkt.ip.src },
          dev.name,
          4,
        );
        this.stack.icmpError(ns, pkt, 3, 3, undefined, 'port-unreachable');
        return;
      }
      const data = p.payload.kind === 'raw' ? p.payload.data : new Uint8Array(0);
      this.stack.deliver(ns, dev.name, `udp/${p.udp.dstPort}`, {
        what: 'udp',
        port: p.udp.dstPort,
        bytes: data.length,
        client: false,
      });
      const reply: Ipv4Packet = {
        kind: 'ipv4',
        ip: this.ip(pkt.ip.dst, pkt.ip.src, IPPROTO_UDP, false),
        payload: {
          kind: 'udp',
          udp: { srcPort: p.udp.dstPort, dstPort: p.udp.srcPort },
          payload: { kind: 'raw', data },
        },
      };
      // the listener's socket keeps the default IP_PMTUDISC_WANT: DF on what fits the route MTU
      reply.ip.df = ipv4Length(reply) <= this.routeMtu(ns, pkt.ip.src);
      this.stack.queue.push({ ns: ns.name, pkt: reply, role: { kind: 'udp-reply' } });
      return;
    }
    if (p.kind === 'icmp') {
      const t = p.icmp.type;
      // icmp_rcv
      this.stack.count(ns, 'IcmpInMsgs');
      this.stack.count(ns, `IcmpMsgInType${t}`);
      const inName = ICMP_IN[t];
      if (inName) this.stack.count(ns, inName);
      if (t === 0) {
        const sock = this.pingSocket(ns, p.icmp.id);
        if (sock)
          sock.inbox.push({
            kind: 'reply',
            time: this.w.now,
            seq: p.icmp.seq,
            from: pkt.ip.src,
            ttl: pkt.ip.ttl,
            bytes: p.data.length + 8,
          });
      }
      if (t === 3 || t === 11) {
        if (this.icmpError(ns, dev, pkt, t, p.icmp.code, p.icmp.mtu, p.data)) return;
      }
      if (t === 8) {
        this.stack.deliver(ns, dev.name, 'icmp', { what: 'echo-request', id: p.icmp.id, seq: p.icmp.seq }, 3);
        const reply: Ipv4Packet = {
          kind: 'ipv4',
          ip: this.ip(pkt.ip.dst, pkt.ip.src, IPPROTO_ICMP, false),
          payload: { kind: 'icmp', icmp: { type: 0, code: 0, id: p.icmp.id, seq: p.icmp.seq }, data: p.data },
        };
        this.stack.queue.push({ ns: ns.name, pkt: reply, role: { kind: 'echo-reply' } });
        return;
      }
      this.stack.deliver(
        ns,
        dev.name,
        'icmp',
        { what: 'icmp', type: t, code: p.icmp.code, id: p.icmp.id, seq: p.icmp.seq, mtu: p.icmp.mtu },
        3,
      );
      return;
    }
    this.stack.deliver(
      ns,
      dev.name,
      `proto ${pkt.ip.protocol}`,
      { what: 'proto', proto: pkt.ip.protocol },
      3,
    );
  }

  /**
   * icmp_unreach / icmp_socket_deliver: an ICMP error about a packet this host sent. The quoted
   * header names the socket. Fragmentation needed lowers the path MTU of the route to the quoted
   * destination (ipv4_sk_update_pmtu / tcp_v4_mtu_reduced: a FIB exception); a ping socket gets
   * the error on its error queue; a connection still opening fails with the error's errno
   * (tcp_v4_err), an established one remembers it as its soft error. Returns true when a TCP
   * PMTU reaction was recorded (the delivery step is its own).
   */
  private icmpError(
    ns: Netns,
    dev: Link,
    pkt: Ipv4Packet,
    type: number,
    code: number,
    mtu: number | undefined,
    quoted: Uint8Array,
  ): boolean {
    const ihl = (quoted[0] & 0x0f) * 4;
    if (quoted.length < ihl + 8) return false;
    const proto = quoted[9];
    const src = intToIp4(get32(quoted, 12));
    const dst = intToIp4(get32(quoted, 16));
    if (type === 3 && code === 4 && mtu) {
      const rr = this.stack.routeOutput(ns, dst);
      if (rr && !('error' in rr)) updatePmtu(ns, dst, rr.route, rr.dev.mtu, mtu, this.w.now);
    }
    if (proto === IPPROTO_ICMP && quoted[ihl] === 8) {
      const sock = this.pingSocket(ns, get16(quoted, ihl + 4));
      if (sock)
        sock.inbox.push({
          kind: 'error',
          time: this.w.now,
          seq: get16(quoted, ihl + 6),
          from: pkt.ip.src,
          type,
          code,
          mtu,
        });
      return false;
    }
    if (proto !== IPPROTO_TCP) return false;
    if (type === 3 && code === 4 && mtu) return this.mtuReduced(ns, dev, quoted, mtu);
    const c = this.byTuple(ns, src, get16(quoted, ihl), dst, get16(quoted, ihl + 2));
    if (!c || c.state === 'CLOSED') return false;
    const err: SockErrno = type === 3 ? icmpErrno(code) : 'EHOSTUNREACH';
    if ((c.state === 'SYN_SENT' || c.state === 'SYN_RECV') && !c.owned) {
      c.err = err;
      this.tcpDone(ns, c);
    } else {
      // an established connection, or one whose connect() still holds the lock: sk_err_soft,
      // which getsockopt(SO_ERROR) hands to the application all the same
      c.softErr = err;
      if (c.owned) c.err = err;
    }
    return false;
  }

  /** an answer to the segment tcpRcv took (ACK, duplicate ACK, FIN), queued for the walker */
  private reply(ns: Netns, conn: TcpConn, flags: TcpFlags, payload: Uint8Array, role: PacketRole): void {
    const out = this.segment(conn, flags, payload, this.tsOpt(conn));
    conn.sndNxt = (conn.sndNxt + payload.length + (flags.fin ? 1 : 0)) >>> 0;
    this.stack.queue.push({ ns: ns.name, pkt: out, role });
  }

  private tcpRcv(ns: Netns, dev: Link, pkt: Ipv4Packet): void {
    if (pkt.payload.kind !== 'tcp') return;
    const { tcp, data } = pkt.payload;
    const f = tcp.flags;
    this.stack.count(ns, 'TcpInSegs');
    const found = this.byTuple(ns, pkt.ip.dst, tcp.dstPort, pkt.ip.src, tcp.srcPort);
    const conn = found && found.state !== 'CLOSED' ? found : undefined;
    const port = tcp.dstPort;
    if (!conn) {
      const listener = tcpListener(ns, tcp.dstPort, pkt.ip.dst);
      // a SYN to a listener: acceptSyn records the segment itself
      if (f.syn && !f.ack && listener) return this.acceptSyn(ns, dev, pkt, listener.app);
      if (f.rst)
        return this.stack.deliver(
          ns,
          dev.name,
          tcpTo(port),
          { what: 'tcp', port, seg: segmentInfo(tcp, data), event: 'rst-no-conn' },
          4,
        );
      this.stack.mib(ns, 'TcpOutRsts');
      this.stack.drop(
        ns,
        { reason: 'reset', site: 'tcp_v4_rcv', port, listener: !!listener, src: pkt.ip.src },
        dev.name,
        4,
      );
      this.sendReset(ns, pkt);
      return;
    }
    const seg = segmentInfo(tcp, data);
    const to = tcpTo(port);
    if (f.rst) {
      // tcp_reset: connect() gets ECONNREFUSED, an open connection ECONNRESET
      conn.err = conn.state === 'SYN_SENT' ? 'ECONNREFUSED' : 'ECONNRESET';
      this.tcpDone(ns, conn);
      return this.stack.deliver(ns, dev.name, to, { what: 'tcp', port, seg, event: 'rst-reset' }, 4);
    }
    if (tcp.options.timestamp) conn.tsRecent = tcp.options.timestamp.val;
    const before = conn.state;
    if (conn.state === 'SYN_SENT' && f.syn && f.ack) {
      conn.rcvNxt = (tcp.seq + 1) >>> 0;
      conn.peerMss = tcp.options.mss ?? 536;
      conn.peerWscale = tcp.options.wscale ?? 0;
      conn.state = 'ESTABLISHED';
      conn.sndUna = tcp.ack;
      conn.rtoAt = undefined;
      conn.establishedAt = this.w.now;
      this.stack.deliver(ns, dev.name, to, { what: 'tcp', port, seg, event: 'established', from: before }, 4);
      this.reply(ns, conn, { ack: true }, NOTHING, { kind: 'ack' });
      if (conn.toSend.length) this.sendData(conn, ns);
      this.tell(ns, conn, { kind: 'connected' });
      return;
    }
    if (conn.state === 'SYN_RECV' && f.syn && !f.ack) {
      // tcp_check_req: the client's SYN again (its own timer resent it): the SYN-ACK goes again
      // (inet_rtx_syn_ack) and a pending request timer restarts from now (mod_timer_pending)
      this.stack.deliver(ns, dev.name, to, { what: 'tcp', port, seg, event: 'syn', mss: conn.mss }, 4);
      if ((tcp.seq + 1) >>> 0 !== conn.rcvNxt) return;
      this.rtxSynack(ns, conn);
      if (conn.rtoAt !== undefined) {
        conn.rto = Math.min(TCP_TIMEOUT_INIT * 2 ** (conn.numTimeout ?? 0), TCP_RTO_MAX);
        this.armRto(ns, conn);
      }
      return;
    }
    if (conn.state === 'SYN_RECV' && f.ack && !f.syn) {
      // the request becomes a full socket: its request timer goes with it
      conn.rtoAt = undefined;
      conn.state = 'ESTABLISHED';
      this.stack.count(ns, 'TcpPassiveOpens');
      this.tell(ns, conn, { kind: 'connected' });
    }
    if (f.ack && seqAfter(tcp.ack, conn.sndUna)) {
      conn.sndUna = tcp.ack;
      // tcp_clean_rtx_queue: the retransmit queue is in sequence order, so what the ACK covers is
      // its head (a reflector's connection holds a client's whole table unacknowledged: filtering
      // the queue on every ACK made a session O(routes²))
      const u = conn.unacked;
      let k = 0;
      while (k < u.length && !seqAfter((u[k].seq + u[k].data.length) >>> 0, tcp.ack)) k++;
      if (k) u.splice(0, k);
      if (conn.app && (conn.state === 'ESTABLISHED' || conn.state === 'CLOSE_WAIT')) {
        // tcp_data_snd_check: what Nagle held leaves now; tcp_check_space: a writer that found
        // the buffer full is told it may write once a third of it is free
        if (conn.unsentBytes) this.push(ns, conn);
        if (conn.nospace && this.sndbuf(conn) - this.queued(conn) >= this.queued(conn) / 2) {
          conn.nospace = false;
          this.tell(ns, conn, { kind: 'writable' });
        }
      }
    }
    if (
      conn.orphan &&
      (conn.state === 'FIN_WAIT1' || conn.state === 'FIN_WAIT2') &&
      data.length &&
      seqAfter((tcp.seq + data.length) >>> 0, conn.rcvNxt)
    ) {
      // tcp_rcv_state_process: new data for a socket its process closed (RCV_SHUTDOWN) is RFC
      // 1122's reset (TCPAbortOnData): tcp_reset, and tcp_v4_do_rcv answers the segment with a RST
      this.stack.mib(ns, 'TcpExtTCPAbortOnData');
      conn.state = 'CLOSED';
      conn.rtoAt = undefined;
      this.stack.deliver(ns, dev.name, to, { what: 'tcp', port, seg, event: 'abort-on-data' }, 4);
      this.sendReset(ns, pkt);
      return;
    }
    if (data.length && tcp.seq !== conn.rcvNxt) {
      // tcp_data_queue: a segment after a gap waits in the out-of-order queue; either way the
      // receiver answers at once with a duplicate ACK for the first byte it is missing
      const ahead = seqAfter(tcp.seq, conn.rcvNxt);
      if (ahead) {
        if (conn.ofo === NO_OFO) conn.ofo = new Map();
        conn.ofo.set(tcp.seq, { data, psh: !!f.psh });
      }
      this.stack.deliver(
        ns,
        dev.name,
        to,
        ahead
          ? { what: 'tcp', port, seg, event: 'out-of-order', expected: conn.rcvNxt }
          : { what: 'tcp', port, seg, event: 'duplicate' },
        4,
      );
      this.reply(ns, conn, { ack: true }, NOTHING, { kind: 'dup-ack' });
      return;
    }
    let pushedNow = false;
    /** what a process reads now (the segment and what it let out of the out-of-order queue) */
    const read: Uint8Array[] = [];
    if (data.length) {
      conn.rcvNxt = (conn.rcvNxt + data.length) >>> 0;
      conn.received += data.length;
      conn.rcvd?.push(data);
      read.push(data);
      pushedNow = !!f.psh;
      // the gap is filled: queued segments follow in order
      for (let next = conn.ofo.get(conn.rcvNxt); next; next = conn.ofo.get(conn.rcvNxt)) {
        conn.ofo.delete(conn.rcvNxt);
        conn.rcvNxt = (conn.rcvNxt + next.data.length) >>> 0;
        conn.received += next.data.length;
        conn.rcvd?.push(next.data);
        read.push(next.data);
        pushedNow ||= next.psh;
      }
      if (pushedNow) conn.pushed = true;
    }
    if (f.fin) conn.rcvNxt = (conn.rcvNxt + 1) >>> 0;
    // state after the peer's FIN / ACK of our FIN
    if (conn.state === 'FIN_WAIT1' && f.ack && tcp.ack === conn.sndNxt)
      conn.state = f.fin ? 'TIME_WAIT' : 'FIN_WAIT2';
    else if (conn.state === 'FIN_WAIT2' && f.fin) conn.state = 'TIME_WAIT';
    if (conn.state === 'TIME_WAIT' && conn.timeWaitAt === undefined) conn.timeWaitAt = this.w.now;
    else if (conn.state === 'ESTABLISHED' && f.fin) conn.state = 'CLOSE_WAIT';
    else if (conn.state === 'LAST_ACK' && f.ack && tcp.ack === conn.sndNxt) conn.state = 'CLOSED';
    this.stack.deliver(
      ns,
      dev.name,
      to,
      { what: 'tcp', port, seg, event: 'data', role: conn.role, from: before, to: conn.state },
      data.length ? 7 : 4,
    );
    // quickack at the start of a connection: data is acknowledged at once, before the application reacts
    if (data.length && !f.fin) this.reply(ns, conn, { ack: true }, NOTHING, { kind: 'ack' });
    if (conn.app) {
      // a process's stream: it reads what came, and closes on EOF itself (the FIN is acknowledged)
      for (const d of read) this.tell(ns, conn, { kind: 'data', data: d });
      if (f.fin && (conn.state === 'CLOSE_WAIT' || conn.state === 'TIME_WAIT')) {
        this.reply(ns, conn, { ack: true }, NOTHING, { kind: 'ack' });
        if (conn.state === 'CLOSE_WAIT') this.tell(ns, conn, { kind: 'eof' });
      }
      return;
    }
    if (conn.role === 'server' && data.length && conn.pushed && !conn.done) {
      // the application has the whole request (the stream carried its PSH): it answers
      conn.done = true;
      conn.toSend = this.serverResponse(data);
      this.sendData(conn, ns);
      return;
    }
    if (
      conn.role === 'client' &&
      data.length &&
      conn.pushed &&
      conn.closeAfterSend &&
      conn.state === 'ESTABLISHED'
    ) {
      // response received: the application closes
      conn.state = 'FIN_WAIT1';
      this.reply(ns, conn, { fin: true, ack: true }, NOTHING, { kind: 'fin' });
      return;
    }
    if (conn.state === 'CLOSE_WAIT') {
      // the server closes too: FIN+ACK
      conn.state = 'LAST_ACK';
      this.reply(ns, conn, { fin: true, ack: true }, NOTHING, { kind: 'fin' });
      return;
    }
    if (conn.state === 'TIME_WAIT' && f.fin) this.reply(ns, conn, { ack: true }, NOTHING, { kind: 'ack' });
  }

  /** tcp_v4_send_reset: the RST that answers a segment (sent with DF, as the kernel's reply socket does) */
  private sendReset(ns: Netns, pkt: Ipv4Packet): void {
    if (pkt.payload.kind !== 'tcp') return;
    const { tcp, data } = pkt.payload;
    const f = tcp.flags;
    const rst: Ipv4Packet = {
      kind: 'ipv4',
      ip: this.ip(pkt.ip.dst, pkt.ip.src, IPPROTO_TCP, true),
      payload: {
        kind: 'tcp',
        tcp: f.ack
          ? {
              srcPort: tcp.dstPort,
              dstPort: tcp.srcPort,
              seq: tcp.ack,
              ack: 0,
              flags: { rst: true },
              window: 0,
              options: {},
            }
          : {
              srcPort: tcp.dstPort,
              dstPort: tcp.srcPort,
              seq: 0,
              ack: (tcp.seq + data.length + (f.syn ? 1 : 0) + (f.fin ? 1 : 0)) >>> 0,
              flags: { rst: true, ack: true },
              window: 0,
              options: {},
            },
        data: NOTHING,
      },
    };
    this.stack.queue.push({ ns: ns.name, pkt: rst, role: { kind: 'rst' } });
  }

  /** payload bytes per segment: the smaller MSS, less the timestamp option, within the path MTU */
  private sendMss(conn: TcpConn): number {
    const mss = Math.min(conn.peerMss, conn.mss, conn.pmtu ? conn.pmtu - 40 : Infinity);
    return mss - TS_OPT;
  }

  /**
   * tcp_v4_err → tcp_v4_mtu_reduced: ICMP fragmentation needed for one of our segments lowers
   * the path MTU, and tcp_simple_retransmit sends again, cut to the new size, every unacknowledged
   * segment that no longer fits.
   */
  private mtuReduced(ns: Netns, dev: Link, quoted: Uint8Array, mtu: number): boolean {
    // the quoted IP header and the first 8 bytes of the segment (truncated: no whole-packet parse)
    const ihl = (quoted[0] & 0x0f) * 4;
    if (quoted.length < ihl + 8 || quoted[9] !== IPPROTO_TCP) return false;
    const src = intToIp4(get32(quoted, 12));
    const dst = intToIp4(get32(quoted, 16));
    const sport = get16(quoted, ihl);
    const dport = get16(quoted, ihl + 2);
    const conn = this.byTuple(ns, src, sport, dst, dport);
    if (!conn || conn.state === 'CLOSED') return false;
    const before = this.sendMss(conn);
    if (conn.pmtu !== undefined && conn.pmtu <= mtu) {
      this.stack.deliver(ns, dev.name, 'icmp', { what: 'pmtu', mtu, already: conn.pmtu }, 3);
      return true;
    }
    conn.pmtu = mtu;
    const chunk = this.sendMss(conn);
    const lost = conn.unacked.filter((u) => u.data.length > chunk);
    this.stack.deliver(
      ns,
      dev.name,
      'icmp',
      { what: 'pmtu', mtu, sport, dst, dport, before, after: chunk, resent: lost.length },
      4,
    );
    const sndNxt = conn.sndNxt;
    for (const u of lost) {
      const parts: { seq: number; data: Uint8Array; psh: boolean }[] = [];
      for (let off = 0; off < u.data.length; off += chunk) {
        const part = u.data.subarray(off, Math.min(off + chunk, u.data.length));
        parts.push({ seq: (u.seq + off) >>> 0, data: part, psh: u.psh && off + chunk >= u.data.length });
      }
      conn.unacked.splice(conn.unacked.indexOf(u), 1, ...parts);
      for (const part of parts) {
        conn.sndNxt = part.seq;
        const seg = this.segment(conn, { psh: part.psh, ack: true }, part.data, this.tsOpt(conn));
        this.stack.queue.push({ ns: ns.name, pkt: seg, role: { kind: 'retransmission' } });
      }
    }
    conn.sndNxt = sndNxt;
    return true;
  }

  private sendData(conn: TcpConn, ns: Netns): void {
    const chunk = this.sendMss(conn);
    const data = conn.toSend;
    for (let off = 0; off < data.length; off += chunk) {
      this.sendSegment(
        ns,
        conn,
        data.subarray(off, Math.min(off + chunk, data.length)),
        off + chunk >= data.length,
      );
    }
    conn.toSend = NOTHING;
  }

  /** a listener gets a SYN: SYN-ACK (tcp_conn_request) */
  private acceptSyn(ns: Netns, dev: Link, pkt: Ipv4Packet, app: string | undefined): void {
    if (pkt.payload.kind !== 'tcp') return;
    const { tcp } = pkt.payload;
    const o = tcp.options;
    const mtu = this.routeMtu(ns, pkt.ip.src);
    const mss = advmss(mtu);
    const isn = deriveIsn(this.w, pkt.ip.dst, tcp.dstPort, pkt.ip.src, tcp.srcPort);
    // tcp_openreq_init_rwin: less the timestamp option when the SYN had one; scaling when it offered it
    const w = selectInitialWindow(
      ns,
      mss - (o.timestamp ? TS_OPT : 0),
      o.wscale !== undefined && windowSysctlsOf(ns).scaling,
    );
    const wscale = o.wscale !== undefined ? w.wscale : undefined;
    const tsOffset = this.derivePair(this.tsOffsets, 'tsoff', pkt.ip.dst, pkt.ip.src);
    const c = newConn(
      ns.name,
      'server',
      pkt.ip.dst,
      tcp.dstPort,
      pkt.ip.src,
      tcp.srcPort,
      isn,
      (tcp.seq + 1) >>> 0,
      mss,
      o.mss ?? 536,
      tsOffset,
      o.timestamp?.val ?? 0,
      w,
      o.wscale ?? 0,
      NOTHING,
    );
    c.synackOpts = synackOptions(mss, !!o.sackOk, !!o.timestamp, wscale);
    // inet_csk_reqsk_queue_hash_add: the request timer, TCP_TIMEOUT_INIT (reqsk_timer_handler)
    c.rto = TCP_TIMEOUT_INIT;
    c.numTimeout = 0;
    if (app) c.app = app;
    ns.tcp.add(c);
    this.stack.deliver(
      ns,
      dev.name,
      tcpTo(tcp.dstPort),
      {
        what: 'tcp',
        port: tcp.dstPort,
        seg: segmentInfo(tcp, NOTHING),
        event: 'syn',
        mss,
      },
      4,
    );
    const synack = this.segment(c, { syn: true, ack: true }, NOTHING, {
      mss,
      sackOk: !!o.sackOk,
      timestamp: o.timestamp ? { val: this.tsVal(c), ecr: c.tsRecent } : undefined,
      wscale,
    });
    synack.ip.id = 0;
    c.sndNxt = (c.sndNxt + 1) >>> 0;
    this.armRto(ns, c);
    this.stack.queue.push({ ns: ns.name, pkt: synack, role: { kind: 'syn-ack' } });
  }
}

/**
 * A new connection: connect()'s client socket (SYN_SENT) or a listener's request (SYN_RECV).
 * Every connection is made here, with the same fields in the same order, those a handshake sets
 * later (the timer's, establishedAt, the request's SYN-ACK options) included as undefined: one
 * hidden class for every socket, and no property store added to it when the handshake goes on
 * (a saved world writes no undefined field: the data are those of the fields that have values).
 * A field is 8 bytes of every socket: those only a process's or a timed connection sets (app,
 * ttl, the SYN's retransmissions, the stream's) are added to those sockets alone.
 */
function newConn(
  ns: string,
  role: 'client' | 'server',
  local: string,
  lport: number,
  remote: string,
  rport: number,
  isn: number,
  rcvNxt: number,
  mss: number,
  peerMss: number,
  tsOffset: number,
  tsRecent: number,
  w: { rcvWnd: number; wscale: number },
  peerWscale: number,
  toSend: Uint8Array,
): TcpConn {
  const client = role === 'client';
  return {
    ns,
    local,
    lport,
    remote,
    rport,
    state: client ? 'SYN_SENT' : 'SYN_RECV',
    sndNxt: isn,
    // tcp_connect_init (client) and tcp_create_openreq_child (server): snd_una = the ISN (the SYN
    // or SYN-ACK is the first thing unacknowledged)
    sndUna: isn,
    rcvNxt,
    mss,
    peerMss,
    tsOffset,
    tsRecent,
    rcvWnd: w.rcvWnd,
    wscale: w.wscale,
    peerWscale,
    toSend,
    closeAfterSend: client,
    received: 0,
    role,
    unacked: NO_UNACKED,
    ofo: NO_OFO,
    pushed: false,
    done: false,
    rto: undefined,
    rtoAt: undefined,
    numTimeout: undefined,
    synackOpts: undefined,
    establishedAt: undefined,
  };
}

/**
 * A copy of socket c made by newConn (its fields, in its order, in the object itself: a spread's
 * copy of 29 fields keeps 4 there and the rest in a store of their own), their values c's. c's
 * other fields are not copied. A flow cache's replay of a socket (which checks that the copy's
 * fields come in c's order).
 */
export function copyConn(c: TcpConn): TcpConn {
  // (c has the device window newConn asks for: rcvWnd and wscale)
  const k = newConn(
    c.ns,
    c.role,
    c.local,
    c.lport,
    c.remote,
    c.rport,
    c.sndNxt,
    c.rcvNxt,
    c.mss,
    c.peerMss,
    c.tsOffset,
    c.tsRecent,
    c,
    c.peerWscale,
    c.toSend,
  );
  // what newConn sets by the role or to a new socket's
  k.state = c.state;
  k.sndUna = c.sndUna;
  k.closeAfterSend = c.closeAfterSend;
  k.received = c.received;
  k.unacked = c.unacked;
  k.ofo = c.ofo;
  k.pushed = c.pushed;
  k.done = c.done;
  k.rto = c.rto;
  k.rtoAt = c.rtoAt;
  k.numTimeout = c.numTimeout;
  k.synackOpts = c.synackOpts;
  k.establishedAt = c.establishedAt;
  return k;
}

/**
 * The options of a request's SYN-ACK (kept to send it again), one object per set of values: a
 * listener's requests mostly share theirs. Frozen: never written (rtxSynack copies them).
 */
const synackOptionSets = new Map<number, TcpOptions>();
function synackOptions(mss: number, sackOk: boolean, ts: boolean, wscale: number | undefined): TcpOptions {
  const key = ((mss * 2 + (sackOk ? 1 : 0)) * 2 + (ts ? 1 : 0)) * 16 + (wscale ?? 15);
  let o = synackOptionSets.get(key);
  if (o === undefined) {
    if (synackOptionSets.size >= MAX_PAIRS) synackOptionSets.clear();
    o = Object.freeze({
      mss,
      sackOk,
      timestamp: ts ? Object.freeze({ val: 0, ecr: 0 }) : undefined,
      wscale,
    });
    synackOptionSets.set(key, o);
  }
  return o;
}

/** what a delivery step records of the segment (its flags copied) */
function segmentInfo(tcp: TcpRepr, data: Uint8Array): SegmentInfo {
  const f = tcp.flags;
  return { flags: { ...f }, seq: tcp.seq, ack: f.ack ? tcp.ack : undefined, len: data.length };
}

/** the MTU a route lookup gives a socket: its device's (a local address: 65536; no route: 1500) */
function mtuOfRoute(rr: ReturnType<Stack['routeOutput']>): number {
  if (!rr) return 1500;
  if ('error' in rr) return 65536;
  return rr.dev.mtu;
}

/** the first listening TCP socket of the namespace on `port` that takes `addr` (a wildcard or the address) */
function tcpListener(ns: Netns, port: number, addr: string): Netns['sockets'][number] | undefined {
  // by index: for…of made an iterator per segment delivered (V8 kept it: 21 B a walk)
  const all = ns.sockets;
  for (let i = 0; i < all.length; i++) {
    const s = all[i];
    if (s.proto === 'tcp' && s.port === port && (s.addr === '0.0.0.0' || s.addr === addr)) return s;
  }
  return undefined;
}

export function asciiBytes(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i) & 0xff;
  return b;
}
