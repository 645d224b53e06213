/**
 * One BGP-4 peering as RFC 4271 section 8 runs it: Idle, Connect, Active, OpenSent, OpenConfirm,
 * Established, with the ConnectRetry, Hold and Keepalive timers. It is a function of its
 * plain-data state, an input and the time it is given: `stepPeer(peer, input, now)` returns the new
 * state (the Adj-RIB-In passes to it: the one part written in place) and what to do (open or close the TCP connection, send octets, Adj-RIB-In changes). Timers are
 * deadlines in the state; whoever owns the clock calls `stepPeer(peer, { kind: 'tick' }, now)` at
 * `peerDeadline(peer)` (there is no timer queue here). The transport carries octets: received
 * ones come in as `data` and are framed and decoded here, with the codec the OPENs negotiate.
 *
 * A failed connection in Connect goes to Idle (RFC 4271 8.2.2, Event 18 without DelayOpen). What
 * follows is BIRD's, when the configuration has its timers (`connectDelayTime`, `errorWaitTime`):
 * a session still started goes on at once to Active and connects again after `connect delay time`
 * (bgp_sock_err → bgp_conn_enter_idle_state → bgp_decision → bgp_active; BIRD's one connect timer
 * is the delay in Active and the ConnectRetry timer in Connect), and a session that an error took
 * down from OpenSent, OpenConfirm or Established starts again after BIRD's startup delay (`error
 * wait time MIN,MAX`: MIN, doubled after each error up to MAX, back to MIN after 300 s without one:
 * bgp_update_startup_delay). Without them the peer is RFC 4271's without automatic start: it
 * stays Idle until started.
 *
 * What it does not do (yet): collision detection between two connections to the same peer
 * (RFC 4271 6.8; Calico's mesh makes sessions one-way with `passive on`, so only one exists),
 * DelayOpen, damping, the restarting side of graceful restart (the capability is sent as BIRD
 * sends it, with no R bit; a restart of our own is not kept through).
 *
 * Graceful restart, the receiving side (RFC 4724 4.2, BIRD 2's bgp_handle_graceful_restart): when
 * both OPENs carried the capability for IPv4 unicast (Calico's `graceful restart`) and the
 * connection of an Established session closes or fails without a NOTIFICATION (the peer's BIRD
 * killed: its kernel sends a FIN), the routes learned over it stay (stale) and the session starts
 * again; they go when the peer's restart time (its capability's, BIRD's default 120 s) runs out
 * first (bgp_graceful_restart_timeout), or, once the session is back, with the peer's End-of-RIB
 * for those the new session did not send again (rt_refresh_end). A NOTIFICATION (a Cease too,
 * BIRD 2.0.12 sends no N bit) and the hold timer (bgp_hold_timeout takes the graceful path only
 * with p->llgr_ready, long-lived graceful restart: Calico's template leaves it at BIRD's "aware",
 * whose capability names no family) still flush them at once (the lab's recording,
 * test/golden/bgp/holddown.json). BIRD's timers are drawn up to a quarter below their value
 * (bgp_start_timer); here they run their full value.
 */
import {
  AFI_IPV4,
  BGP_MAX_EXTENDED_LEN,
  BGP_MAX_LEN,
  BGP_CEASE,
  BGP_ERROR,
  BGP_OPEN_ERROR,
  BGP_UPDATE_ERROR,
  bgpCodecFor,
  bgpFrameLength,
  bgpLength,
  BgpWireError,
  emitBgp,
  openAs,
  parseBgp,
  prefixBytes,
  SAFI_UNICAST,
  type BgpAttr,
  type BgpCodec,
  type BgpMessage,
  type BgpOpen,
  type BgpPrefix,
  type BgpUpdate,
} from '../wire/bgp.ts';
import type { Ipv4Addr } from '../wire/types.ts';

export type PeerState = 'Idle' | 'Connect' | 'Active' | 'OpenSent' | 'OpenConfirm' | 'Established';

/** Times in seconds (as BIRD's configuration gives them); the clock `now` is in microseconds. */
export interface PeerConfig {
  localAs: number;
  localId: Ipv4Addr;
  /** the address the session is sourced from: the NEXT_HOP of what we announce */
  localAddress: Ipv4Addr;
  peerAs: number;
  peerAddress: Ipv4Addr;
  /** proposed hold time (BIRD's default 240) */
  holdTime: number;
  /** ConnectRetry (Calico's template: `connect retry time 5`) */
  connectRetryTime: number;
  /** wait for the peer to connect (Calico's mesh: the higher address is passive) */
  passive: boolean;
  /** ADD-PATH send and receive for IPv4 unicast (Calico's `add paths on`) */
  addPath: boolean;
  /** graceful restart time advertised (Calico's `graceful restart`: BIRD's default 120), 0 for none */
  gracefulRestartTime: number;
  /** the prefixes announced when the session is Established (Calico: the node's IPAM blocks) */
  originates: string[];
  /** BIRD's `connect delay time` (s): Active before each connection a session opens itself */
  connectDelayTime?: number;
  /** BIRD's `error wait time MIN,MAX` (s): the startup delay after an error */
  errorWaitTime?: [number, number];
  /**
   * `rr client; rr cluster id C`: the peer is our route reflection client, C our cluster ID (BIRD 2
   * sets the protocol's rr_cluster_id only then): received routes whose CLUSTER_LIST holds C are
   * loops (treated as withdrawn, RFC 4456 8 as BIRD applies it)
   */
  rrClusterId?: Ipv4Addr;
  /**
   * an eBGP session without `multihop` (BIRD's default for eBGP, bgp_postconfig): the peer must
   * be on a connected subnet (bgp_start_locked waits for it as a neighbour, Idle, until it is)
   * and the session's packets leave with TTL 1
   */
  direct?: boolean;
}

/** A route we send besides our own prefixes (route reflection): its path id and the attributes it leaves with */
export interface ExportRoute {
  prefix: string;
  pathId: number;
  attrs: BgpAttr[];
}

/** A route in the Adj-RIB-In: a prefix (and its path id under ADD-PATH) with its path attributes. */
export interface PeerRoute {
  prefix: string;
  pathId?: number;
  nextHop: Ipv4Addr;
  attrs: BgpAttr[];
}

export interface Peer {
  config: PeerConfig;
  state: PeerState;
  /** µs deadlines of the running timers */
  connectRetryAt?: number;
  holdAt?: number;
  keepaliveAt?: number;
  /** BIRD's startup timer: the session starts again (after an error) */
  restartAt?: number;
  /** BIRD's startup delay (s) and when the last error happened (µs) */
  startupDelay?: number;
  lastErrorAt?: number;
  /** the negotiated hold time in seconds (0: no keepalives, no hold timer) */
  holdTime?: number;
  peerOpen?: BgpOpen;
  /** octets received and not yet a whole message */
  inbuf: Uint8Array;
  /**
   * Adj-RIB-In by prefix and path ID, in the order the routes came (a route replaced goes to the
   * end): an UPDATE changes the entries it names, not the table (one UPDATE per reflected route
   * from a route reflector: rebuilding it per message made a client's convergence O(routes²)).
   * The one field stepPeer writes in place: the state it was given must not be read after it.
   */
  ribIn: Map<string, PeerRoute>;
  /** the peer's End-of-RIB came (RFC 4724): its whole table is in ribIn */
  eorIn?: boolean;
  /**
   * graceful restart of the peer (RFC 4724 4.2): the keys (`prefix#pathId`) of the routes of ribIn
   * kept from before its connection closed, not sent again since
   */
  stale?: Set<string>;
  /** the peer's restart timer (µs): the stale routes go when it expires */
  grAt?: number;
  /**
   * the last NOTIFICATION of the session, sent or received (why it last went down with an error):
   * kept through a connection that fails before the session is up again, cleared when it comes
   * up or closes without one. doctor names its cause from it (an OPEN's Bad Peer AS); what birdc
   * prints is `birdError`, BIRD's own last error, which a socket error replaces.
   */
  lastNotification?: { code: number; subcode: number; sent: boolean };
  /**
   * BIRD's last error of the protocol (bgp_store_error: the last one wins, none is kept while the
   * protocol stops, and the session up again clears it), which birdc prints after the state
   */
  birdError?: BirdError;
  /**
   * Adj-RIB-Out beyond our own prefixes (route reflection), by `prefix#pathId`: kept while the
   * session is down and sent whole when it is Established. Mutated in place (one owner: this peer).
   */
  adjOut?: Map<string, ExportRoute>;
  /** what is to be sent and not written yet (BIRD's buckets), while Established */
  tx?: TxQueue;
}

/**
 * BIRD 2's send queue of a channel (proto/bgp/attrs.c: bgp_rt_notify, bgp_get_bucket,
 * bgp_get_prefix): a route to announce goes into the bucket of its attribute set (one bucket per
 * distinct set, made at the tail of the bucket queue when first needed), a route to withdraw into
 * the one withdraw bucket; a prefix already waiting in a bucket moves to its new one. UPDATEs are
 * made from it only when the socket takes them (packets.c: bgp_fire_tx → bgp_create_update):
 * first the withdraw bucket, as many prefixes as fit in one message; else the bucket at the head
 * of the queue, its attributes and as many of its prefixes as fit in 4096 octets, the bucket freed
 * when emptied or else moved to the tail (bgp_defer_bucket); when nothing is left after the
 * table's feed, the End-of-RIB. Mutated in place (one owner: this peer).
 */
export interface TxQueue {
  withdraw: Map<string, BgpPrefix>;
  /** the bucket queue in order, by the attribute set's key (its content, as BIRD hashes it) */
  buckets: Map<string, { attrs: BgpAttr[]; prefixes: Map<string, BgpPrefix> }>;
  /** where each waiting prefix is: its bucket's key, or null for the withdraw bucket */
  where: Map<string, string | null>;
  /** the End-of-RIB goes once the buckets are empty (the initial feed: BFS_LOADED) */
  eor: boolean;
}

/**
 * BIRD's last error (bgp_get_status: its class's prefix, then bgp_last_errmsg): a NOTIFICATION sent
 * ("BGP Error: Hold timer expired") or received ("Received: Administrative shutdown"), or its
 * socket's error ("Socket: " and the errno's strerror, or "Connection closed" for none: the peer
 * closed the connection)
 */
export type BirdError =
  { class: 'BGP Error' | 'Received'; code: number; subcode: number } | { class: 'Socket'; errno?: string };

export type PeerInput =
  | { kind: 'start' }
  | { kind: 'stop' }
  /** our connection to the peer's port 179 is up, or the peer connected to ours */
  | { kind: 'tcp-connected' }
  /** the connection failed (errno: connect()'s error, the socket's; none: closed) */
  | { kind: 'tcp-failed'; errno?: string }
  | { kind: 'tcp-closed'; errno?: string }
  | { kind: 'data'; data: Uint8Array }
  | { kind: 'announce'; prefixes: string[] }
  | { kind: 'withdraw'; prefixes: string[] }
  /** reflected routes to add to (or replace in) the Adj-RIB-Out, and paths to take out of it */
  | { kind: 'export'; announce: ExportRoute[]; withdraw: { prefix: string; pathId: number }[] }
  | { kind: 'tick' };

export type PeerAction =
  | { kind: 'connect' }
  | { kind: 'close' }
  | { kind: 'send'; msg: BgpMessage; bytes: Uint8Array }
  | { kind: 'rib'; added: PeerRoute[]; removed: PeerRoute[] }
  /**
   * `proto`: BIRD's protocol changed state too (up, or down and started again: its Since column);
   * connection attempts and the startup delay are within its `start`
   */
  | { kind: 'state'; from: PeerState; to: PeerState; proto: boolean };

/** RFC 4271 8.2.2: the hold timer while waiting for the OPEN ("a large value", 4 minutes) */
const OPEN_HOLD = 240;
const SEC = 1_000_000;
/** the path id we give our own routes under ADD-PATH (one path per prefix) */
const OWN_PATH_ID = 1;

export function newPeer(config: PeerConfig): Peer {
  return { config, state: 'Idle', inbuf: new Uint8Array(0), ribIn: new Map() };
}

/** The earliest running timer, in µs; undefined when none runs. */
export function peerDeadline(p: Peer): number | undefined {
  let d: number | undefined;
  for (const t of [p.connectRetryAt, p.holdAt, p.keepaliveAt, p.restartAt, p.grAt])
    if (t !== undefined && (d === undefined || t < d)) d = t;
  return d;
}

/** The OPEN this peer sends: capabilities in the order BIRD 2 sends them (test/bgp-bird.test.ts). */
export function localOpen(c: PeerConfig): BgpOpen {
  const fam = { afi: AFI_IPV4, safi: SAFI_UNICAST };
  return {
    kind: 'open',
    version: 4,
    myAs: c.localAs > 0xffff ? 23456 : c.localAs,
    holdTime: c.holdTime,
    bgpId: c.localId,
    params: [
      {
        kind: 'capabilities',
        caps: [
          { kind: 'multiprotocol', ...fam },
          { kind: 'route-refresh' },
          ...(c.gracefulRestartTime
            ? [
                {
                  kind: 'graceful-restart' as const,
                  restarting: false,
                  notification: false,
                  time: c.gracefulRestartTime,
                  families: [{ ...fam, forwarding: false }],
                },
              ]
            : []),
          { kind: 'as4', asn: c.localAs },
          ...(c.addPath
            ? [{ kind: 'add-path' as const, families: [{ ...fam, sendReceive: 'both' as const }] }]
            : []),
          { kind: 'enhanced-route-refresh' },
          // with graceful restart BIRD is long-lived graceful restart aware (llgr_mode "aware"):
          // it sends the capability with no family (the lab's and test/bgp-bird's captures)
          ...(c.gracefulRestartTime ? [{ kind: 'long-lived-graceful-restart' as const, families: [] }] : []),
        ],
      },
    ],
  };
}

interface Step {
  peer: Peer;
  actions: PeerAction[];
  /** µs of the input */
  now: number;
}

/** Feeds one input at time `now` (µs). Never throws on what the peer sends: errors end the session. */
export function stepPeer(peer: Peer, input: PeerInput, now: number): Step {
  const s: Step = { peer: { ...peer }, actions: [], now };
  switch (input.kind) {
    case 'start':
      if (s.peer.state === 'Idle') start(s, now);
      break;
    case 'stop':
      if (s.peer.state === 'OpenSent' || s.peer.state === 'OpenConfirm' || s.peer.state === 'Established')
        notify(s, BGP_ERROR.CEASE, BGP_CEASE.ADMINISTRATIVE_SHUTDOWN);
      down(s);
      // ManualStop: no automatic start after it
      s.peer.restartAt = undefined;
      break;
    case 'tcp-connected':
      if (s.peer.state === 'Connect' || s.peer.state === 'Active') {
        s.peer.connectRetryAt = undefined;
        s.peer.inbuf = new Uint8Array(0);
        send(s, localOpen(s.peer.config), undefined);
        s.peer.holdAt = now + OPEN_HOLD * SEC;
        go(s, 'OpenSent');
      } else s.actions.push({ kind: 'close' }); // a second connection: not ours to keep
      break;
    case 'tcp-failed':
      // bgp_sock_err: the socket's error is the protocol's last error
      if (s.peer.state !== 'Idle' && s.peer.state !== 'Active')
        s.peer.birdError = { class: 'Socket', ...(input.errno ? { errno: input.errno } : {}) };
      if (s.peer.state === 'Connect') {
        // RFC 4271 8.2.2, Connect, TcpConnectionFails (no DelayOpen): ConnectRetryTimer stopped, Idle
        s.peer.connectRetryAt = undefined;
        go(s, 'Idle');
        // BIRD: the session is still started: Active, a new connection after the connect delay
        if (s.peer.config.connectDelayTime !== undefined) active(s, now);
      } else if (s.peer.state !== 'Active' && s.peer.state !== 'Idle') down(s, true, true);
      break;
    case 'tcp-closed':
      if (s.peer.state === 'OpenSent') {
        // RFC 4271 8.2.2: OpenSent, TcpConnectionFails: back to Active
        s.peer.holdAt = undefined;
        s.peer.connectRetryAt = now + s.peer.config.connectRetryTime * SEC;
        s.peer.birdError = { class: 'Socket' };
        go(s, 'Active');
      } else if (s.peer.state === 'Established' && gracefulRestartReady(s.peer)) peerRestarts(s, now);
      else if (s.peer.state !== 'Idle' && s.peer.state !== 'Connect' && s.peer.state !== 'Active') {
        down(s, false, true);
        s.peer.lastNotification = undefined;
        s.peer.birdError = { class: 'Socket', ...(input.errno ? { errno: input.errno } : {}) };
      }
      break;
    case 'data':
      receive(s, input.data, now);
      break;
    case 'announce':
    case 'withdraw':
      if (s.peer.state === 'Established' && input.prefixes.length) {
        const own = input.prefixes.map((prefix) => ownPrefix(s.peer, prefix));
        if (input.kind === 'announce') queueAnnounce(s.peer, ownAttrs(s.peer), own);
        else queueWithdraw(s.peer, own);
      }
      break;
    case 'export':
      exportRoutes(s, input.announce, input.withdraw);
      break;
    case 'tick':
      tick(s, now);
      break;
  }
  return s;
}

/**
 * The Adj-RIB-Out follows; when Established, what changed goes into BIRD's buckets (the
 * withdrawals into the withdraw bucket, the routes into the bucket of their attributes)
 */
function exportRoutes(
  s: Step,
  announce: readonly ExportRoute[],
  withdraw: readonly { prefix: string; pathId: number }[],
): void {
  const out = (s.peer.adjOut ??= new Map());
  const gone: { prefix: string; pathId: number }[] = [];
  for (const w of withdraw) if (out.delete(`${w.prefix}#${w.pathId}`)) gone.push(w);
  for (const r of announce) out.set(`${r.prefix}#${r.pathId}`, r);
  if (s.peer.state !== 'Established') return;
  const addPath = codecOut(s.peer)?.addPath;
  const px = (r: { prefix: string; pathId: number }): BgpPrefix =>
    addPath ? { prefix: r.prefix, pathId: r.pathId } : { prefix: r.prefix };
  if (gone.length) queueWithdraw(s.peer, gone.map(px));
  queueExported(s.peer, announce);
}

/** reflected routes into their buckets */
function queueExported(p: Peer, routes: Iterable<ExportRoute>): void {
  const addPath = codecOut(p)?.addPath;
  for (const r of routes)
    queueAnnounce(p, r.attrs, [addPath ? { prefix: r.prefix, pathId: r.pathId } : { prefix: r.prefix }]);
}

/** the key of an attribute set: its content (BIRD hashes the ea_list), made once per array */
const attrKeys = new WeakMap<BgpAttr[], string>();
function attrKey(attrs: BgpAttr[]): string {
  let k = attrKeys.get(attrs);
  if (k === undefined) attrKeys.set(attrs, (k = JSON.stringify(attrs)));
  return k;
}

function txQueue(p: Peer): TxQueue {
  return (p.tx ??= { withdraw: new Map(), buckets: new Map(), where: new Map(), eor: false });
}

/** bgp_get_prefix's rem_node: a prefix waiting in a bucket leaves it */
function unqueue(q: TxQueue, key: string): void {
  const at = q.where.get(key);
  if (at === undefined) return;
  if (at === null) q.withdraw.delete(key);
  else q.buckets.get(at)?.prefixes.delete(key);
  q.where.delete(key);
}

/** bgp_rt_notify of routes with one attribute set: into its bucket (made at the queue's tail) */
export function queueAnnounce(p: Peer, attrs: BgpAttr[], prefixes: readonly BgpPrefix[]): void {
  const q = txQueue(p);
  const k = attrKey(attrs);
  let b = q.buckets.get(k);
  if (!b) q.buckets.set(k, (b = { attrs, prefixes: new Map() }));
  for (const x of prefixes) {
    const key = routeKey(x);
    unqueue(q, key);
    b.prefixes.set(key, x);
    q.where.set(key, k);
  }
}

/** bgp_rt_notify of withdrawn routes: into the withdraw bucket */
export function queueWithdraw(p: Peer, prefixes: readonly BgpPrefix[]): void {
  const q = txQueue(p);
  for (const x of prefixes) {
    const key = routeKey(x);
    unqueue(q, key);
    q.withdraw.set(key, x);
    q.where.set(key, null);
  }
}

/** whether the session has an UPDATE (or its End-of-RIB) waiting to be written */
export function updatePending(p: Peer): boolean {
  const q = p.tx;
  return !!q && (q.eor || q.withdraw.size > 0 || q.buckets.size > 0);
}

/**
 * bgp_create_update (and the End-of-RIB after it): the next UPDATE of the session, taken out of
 * its buckets, or undefined when none waits. Sending an UPDATE restarts the keepalive timer
 * (RFC 4271 8.2.2; the caller re-arms its timer).
 */
export function nextUpdate(p: Peer, now: number): { msg: BgpUpdate; bytes: Uint8Array } | undefined {
  const q = p.tx;
  if (!q || p.state !== 'Established') return undefined;
  const codec = codecOut(p)!;
  const max = codec.extendedMessages ? BGP_MAX_EXTENDED_LEN : BGP_MAX_LEN;
  /** as many prefixes of `from` as fit after `base` octets, taken out of it */
  const take = (from: Map<string, BgpPrefix>, base: number): BgpPrefix[] => {
    const out: BgpPrefix[] = [];
    let n = base;
    for (const [key, x] of from) {
      const len = prefixBytes(x, codec);
      if (n + len > max) break;
      n += len;
      out.push(x);
      from.delete(key);
      q.where.delete(key);
    }
    return out;
  };
  let msg: BgpUpdate | undefined;
  if (q.withdraw.size) {
    msg = { kind: 'update', withdrawn: take(q.withdraw, bgpLength(END_OF_RIB, codec)), attrs: [], nlri: [] };
  } else {
    for (const [k, b] of q.buckets) {
      if (!b.prefixes.size) {
        q.buckets.delete(k);
        continue;
      }
      const base = bgpLength({ kind: 'update', withdrawn: [], attrs: b.attrs, nlri: [] }, codec);
      msg = { kind: 'update', withdrawn: [], attrs: b.attrs, nlri: take(b.prefixes, base) };
      q.buckets.delete(k);
      // bgp_defer_bucket: what did not fit waits at the tail
      if (b.prefixes.size) q.buckets.set(k, b);
      break;
    }
  }
  if (!msg) {
    if (!q.eor) return undefined;
    q.eor = false;
    msg = END_OF_RIB;
  }
  if (p.keepaliveAt !== undefined) p.keepaliveAt = now + Math.floor(p.holdTime! / 3) * SEC;
  return { msg, bytes: emitBgp(msg, codec) };
}

/**
 * BIRD's gr_ready for the session: we are graceful-restart aware (Calico's `graceful restart`
 * makes BIRD able, which is aware too) and the peer's OPEN names IPv4 unicast in its capability
 * (rem->gr_able)
 */
function gracefulRestartReady(p: Peer): boolean {
  return (
    p.config.gracefulRestartTime > 0 &&
    !!restartCapability(p)?.families.some((f) => f.afi === AFI_IPV4 && f.safi === SAFI_UNICAST)
  );
}

function restartCapability(p: Peer) {
  for (const prm of p.peerOpen?.params ?? [])
    if (prm.kind === 'capabilities') for (const c of prm.caps) if (c.kind === 'graceful-restart') return c;
  return undefined;
}

/**
 * The peer's connection closed without a NOTIFICATION (bgp_sock_err with gr_ready): its routes
 * stay, marked stale; the restart timer runs for the peer's restart time; the session starts again
 * (bgp_conn_enter_idle_state → bgp_decision → bgp_active: after the connect delay, no startup
 * delay: no error was counted)
 */
function peerRestarts(s: Step, now: number): void {
  const p = s.peer;
  const time = restartCapability(p)!.time;
  s.actions.push({ kind: 'close' });
  p.stale = new Set(p.ribIn.keys());
  p.grAt = now + time * SEC;
  p.eorIn = undefined;
  p.connectRetryAt = p.holdAt = p.keepaliveAt = undefined;
  p.holdTime = undefined;
  p.peerOpen = undefined;
  p.inbuf = new Uint8Array(0);
  p.tx = undefined;
  go(s, 'Idle');
  start(s, now);
  p.lastNotification = undefined;
  p.birdError = { class: 'Socket' };
}

/** the stale routes go (the restart timer expired, or the End-of-RIB of the session back up came) */
function flushStale(s: Step): void {
  const p = s.peer;
  const removed: PeerRoute[] = [];
  for (const k of p.stale ?? []) {
    const r = p.ribIn.get(k);
    if (r) {
      removed.push(r);
      p.ribIn.delete(k);
    }
  }
  p.stale = undefined;
  p.grAt = undefined;
  if (removed.length) s.actions.push({ kind: 'rib', added: [], removed });
}

/** Idle → started: passive, it waits in Active; otherwise it connects (with BIRD, after the connect delay) */
function start(s: Step, now: number): void {
  const p = s.peer;
  // the last error stays until the session is Established again (bgp_conn_enter_established_state
  // clears it): a passive session waiting after a Cease shows it ("Received: Administrative shutdown")
  p.restartAt = undefined;
  if (p.config.passive) {
    p.connectRetryAt = now + p.config.connectRetryTime * SEC;
    go(s, 'Active');
  } else if (p.config.connectDelayTime !== undefined) active(s, now);
  else {
    p.connectRetryAt = now + p.config.connectRetryTime * SEC;
    go(s, 'Connect');
    s.actions.push({ kind: 'connect' });
  }
}

/** BIRD's bgp_active: Active, the connect timer at the connect delay (at least 1 s) */
function active(s: Step, now: number): void {
  s.peer.connectRetryAt = now + Math.max(1, s.peer.config.connectDelayTime ?? 0) * SEC;
  go(s, 'Active');
}

/** `proto`: BIRD's protocol goes down and starts again (an error, a stop, the restart timer) */
function go(s: Step, to: PeerState, proto = false): void {
  const from = s.peer.state;
  if (from !== to)
    s.actions.push({
      kind: 'state',
      from,
      to,
      proto: proto || from === 'Established' || to === 'Established',
    });
  s.peer.state = to;
}

/**
 * The codecs of a session, each a pure function of the two OPENs: made once per OPEN received
 * (the peer's OPEN is a new object each time one arrives) and this side's configuration
 */
const codecs = new WeakMap<BgpOpen, { config: PeerConfig; out: BgpCodec; in: BgpCodec }>();

function sessionCodecs(config: PeerConfig, peerOpen: BgpOpen): { out: BgpCodec; in: BgpCodec } {
  let c = codecs.get(peerOpen);
  if (!c || c.config !== config) {
    const mine = localOpen(config);
    c = { config, out: bgpCodecFor(mine, peerOpen), in: bgpCodecFor(peerOpen, mine) };
    codecs.set(peerOpen, c);
  }
  return c;
}

function codecOut(p: Peer): BgpCodec | undefined {
  return p.peerOpen ? sessionCodecs(p.config, p.peerOpen).out : undefined;
}

function send(s: Step, msg: BgpMessage, now: number | undefined): void {
  s.actions.push({
    kind: 'send',
    msg,
    bytes: emitBgp(msg, msg.kind === 'open' ? undefined : codecOut(s.peer)),
  });
  // RFC 4271 8.2.2: each KEEPALIVE or UPDATE sent restarts the KeepaliveTimer
  if (
    now !== undefined &&
    s.peer.keepaliveAt !== undefined &&
    (msg.kind === 'keepalive' || msg.kind === 'update')
  )
    s.peer.keepaliveAt = now + Math.floor(s.peer.holdTime! / 3) * SEC;
}

function notify(s: Step, code: number, subcode: number, data: Uint8Array = new Uint8Array(0)): void {
  send(s, { kind: 'notification', code, subcode, data }, undefined);
  s.peer.lastNotification = { code, subcode, sent: true };
  s.peer.birdError = { class: 'BGP Error', code, subcode };
}

/**
 * To Idle: close the connection, stop the timers, drop every route learned over the session.
 * `error`: an error took it down: with BIRD's error wait time, it starts again after the
 * startup delay (bgp_update_startup_delay, error amnesia time 300 s).
 */
function down(s: Step, close = true, error: boolean | 'cease' = false): void {
  if (close && s.peer.state !== 'Idle' && s.peer.state !== 'Active') s.actions.push({ kind: 'close' });
  if (s.peer.ribIn.size) s.actions.push({ kind: 'rib', added: [], removed: [...s.peer.ribIn.values()] });
  s.peer.ribIn = new Map();
  s.peer.eorIn = undefined;
  s.peer.stale = s.peer.grAt = undefined;
  s.peer.connectRetryAt = s.peer.holdAt = s.peer.keepaliveAt = undefined;
  s.peer.holdTime = undefined;
  s.peer.peerOpen = undefined;
  s.peer.inbuf = new Uint8Array(0);
  s.peer.tx = undefined;
  // the protocol stops (bgp_stop, or a NOTIFICATION received) and starts again
  go(s, 'Idle', true);
  const wait = s.peer.config.errorWaitTime;
  if (!error || !wait) return;
  const errorAt = s.now;
  const p = s.peer;
  if (error === 'cease') {
    p.restartAt = errorAt + (p.startupDelay ?? 0) * SEC;
    return;
  }
  if (p.lastErrorAt !== undefined && errorAt - p.lastErrorAt >= ERROR_AMNESIA * SEC)
    p.startupDelay = undefined;
  p.lastErrorAt = errorAt;
  p.startupDelay = p.startupDelay === undefined ? wait[0] : Math.min(2 * p.startupDelay, wait[1]);
  p.restartAt = errorAt + p.startupDelay * SEC;
}

/** BIRD's `error forget time` default: an error older than this no longer lengthens the startup delay */
const ERROR_AMNESIA = 300;

function tick(s: Step, now: number): void {
  const p = s.peer;
  if (p.grAt !== undefined && now >= p.grAt) {
    // bgp_graceful_restart_timeout: the protocol stops (its stale routes flushed) and, not
    // disabled, starts again at once (no error counted)
    flushStale(s);
    if (p.state !== 'Established') {
      go(s, 'Idle', true);
      start(s, now);
    }
    return;
  }
  if (p.restartAt !== undefined && now >= p.restartAt) {
    if (p.state === 'Idle') start(s, now);
    else p.restartAt = undefined;
    return;
  }
  if (p.holdAt !== undefined && now >= p.holdAt) {
    notify(s, BGP_ERROR.HOLD_TIMER_EXPIRED, 0);
    down(s, true, true);
    return;
  }
  if (p.keepaliveAt !== undefined && now >= p.keepaliveAt) {
    p.keepaliveAt = now + Math.floor(p.holdTime! / 3) * SEC;
    send(s, { kind: 'keepalive' }, undefined);
  }
  if (p.connectRetryAt !== undefined && now >= p.connectRetryAt) {
    p.connectRetryAt = now + p.config.connectRetryTime * SEC;
    if (p.state === 'Connect') s.actions.push({ kind: 'close' }, { kind: 'connect' });
    else if (p.state === 'Active' && !p.config.passive) {
      go(s, 'Connect');
      s.actions.push({ kind: 'connect' });
    }
  }
}

function receive(s: Step, data: Uint8Array, now: number): void {
  const p = s.peer;
  const buf = new Uint8Array(p.inbuf.length + data.length);
  buf.set(p.inbuf);
  buf.set(data, p.inbuf.length);
  let off = 0;
  try {
    for (;;) {
      if (s.peer.state === 'Idle') return;
      const n = bgpFrameLength(buf, off, buf.length);
      if (n === undefined) break;
      const codec = s.peer.peerOpen ? sessionCodecs(s.peer.config, s.peer.peerOpen).in : undefined;
      const msg = parseBgp(buf, off, off + n, codec).repr;
      off += n;
      message(s, msg, now);
    }
  } catch (e) {
    if (!(e instanceof BgpWireError)) throw e;
    notify(s, e.code, e.subcode, e.data);
    down(s, true, true);
    return;
  }
  s.peer.inbuf = buf.slice(off);
}

function fsmError(s: Step): void {
  notify(s, BGP_ERROR.FSM, 0);
  down(s, true, true);
}

function message(s: Step, m: BgpMessage, now: number): void {
  const p = s.peer;
  if (m.kind === 'notification') {
    p.lastNotification = { code: m.code, subcode: m.subcode, sent: false };
    p.birdError = { class: 'Received', code: m.code, subcode: m.subcode };
    // a Cease is the peer's choice, not an error of the session: BIRD starts again without a
    // longer startup delay (bgp_rx_notification updates it for the other codes only)
    down(s, false, m.code !== BGP_ERROR.CEASE ? true : 'cease');
    s.actions.push({ kind: 'close' });
    return;
  }
  switch (p.state) {
    case 'OpenSent': {
      if (m.kind !== 'open') return fsmError(s);
      const err = checkOpen(p.config, m);
      if (err) {
        notify(s, BGP_ERROR.OPEN_MESSAGE, err.subcode, err.data);
        down(s, true, true);
        return;
      }
      p.peerOpen = m;
      p.holdTime = Math.min(p.config.holdTime, m.holdTime);
      send(s, { kind: 'keepalive' }, undefined);
      if (p.holdTime > 0) {
        p.holdAt = now + p.holdTime * SEC;
        p.keepaliveAt = now + Math.floor(p.holdTime / 3) * SEC;
      } else p.holdAt = p.keepaliveAt = undefined;
      go(s, 'OpenConfirm');
      return;
    }
    case 'OpenConfirm':
      if (m.kind !== 'keepalive') return fsmError(s);
      restartHold(p, now);
      // the peer is back: its restart timer stops (its stale routes wait for its End-of-RIB)
      p.grAt = undefined;
      p.lastNotification = undefined;
      p.birdError = undefined;
      go(s, 'Established');
      // as BIRD does: the whole table into the buckets, then End-of-RIB (written as the socket takes them)
      p.tx = undefined;
      if (p.config.originates.length)
        queueAnnounce(
          p,
          ownAttrs(p),
          p.config.originates.map((prefix) => ownPrefix(p, prefix)),
        );
      if (p.adjOut?.size) queueExported(p, p.adjOut.values());
      txQueue(p).eor = true;
      return;
    case 'Established':
      if (m.kind === 'keepalive') restartHold(p, now);
      else if (m.kind === 'update') {
        restartHold(p, now);
        update(s, m);
      } else if (m.kind === 'open') fsmError(s);
      return;
    default:
      return fsmError(s);
  }
}

function restartHold(p: Peer, now: number): void {
  if (p.holdTime) p.holdAt = now + p.holdTime * SEC;
}

/** RFC 4271 6.2 and RFC 6793: what makes an OPEN unacceptable; undefined when it is fine. */
export function checkOpen(c: PeerConfig, o: BgpOpen): { subcode: number; data?: Uint8Array } | undefined {
  if (o.version !== 4) return { subcode: BGP_OPEN_ERROR.UNSUPPORTED_VERSION, data: Uint8Array.of(0, 4) };
  if (openAs(o) !== c.peerAs) return { subcode: BGP_OPEN_ERROR.BAD_PEER_AS };
  if (o.holdTime === 1 || o.holdTime === 2) return { subcode: BGP_OPEN_ERROR.UNACCEPTABLE_HOLD_TIME };
  if (o.bgpId === '0.0.0.0' || (c.peerAs === c.localAs && o.bgpId === c.localId))
    return { subcode: BGP_OPEN_ERROR.BAD_BGP_IDENTIFIER };
  return undefined;
}

const routeKey = (r: { prefix: string; pathId?: number }) => `${r.prefix}#${r.pathId ?? 0}`;

function update(s: Step, u: BgpUpdate): void {
  const p = s.peer;
  if (!u.withdrawn.length && !u.attrs.length && !u.nlri.length) {
    p.eorIn = true;
    if (p.stale) flushStale(s);
    return;
  }
  const removed: PeerRoute[] = [];
  const added: PeerRoute[] = [];
  // written in place: the table passes from the state given to the state returned
  const byKey = p.ribIn;
  const take = (x: BgpPrefix) => {
    p.stale?.delete(routeKey(x));
    const old = byKey.get(routeKey(x));
    if (old) {
      removed.push(old);
      byKey.delete(routeKey(x));
    }
  };
  for (const w of u.withdrawn) take(w);
  // BIRD 2's bgp_finish_attrs: our AS in AS_PATH (RFC 4271 9.1.2, `allow local as` 0), our
  // router id as ORIGINATOR_ID over iBGP, or (from a client) our cluster ID in CLUSTER_LIST
  // (RFC 4456 8) is a loop: the NLRI count as withdrawn
  const oid = u.attrs.find((a) => a.kind === 'originator-id');
  const cl = u.attrs.find((a) => a.kind === 'cluster-list');
  const path = u.attrs.find((a) => a.kind === 'as-path');
  const ibgp = p.config.localAs === p.config.peerAs;
  const loop =
    (path?.kind === 'as-path' && path.segments.some((g) => g.asns.includes(p.config.localAs))) ||
    (ibgp && oid?.kind === 'originator-id' && oid.originatorId === p.config.localId) ||
    (p.config.rrClusterId !== undefined &&
      cl?.kind === 'cluster-list' &&
      cl.clusterList.includes(p.config.rrClusterId));
  if (loop) {
    for (const n of u.nlri) take(n);
    p.ribIn = byKey;
    if (removed.length) s.actions.push({ kind: 'rib', added: [], removed });
    return;
  }
  const nh = u.attrs.find((a) => a.kind === 'next-hop');
  if (u.nlri.length && !nh) {
    // RFC 4271 6.3: NEXT_HOP is mandatory when there is NLRI
    notify(s, BGP_ERROR.UPDATE_MESSAGE, BGP_UPDATE_ERROR.MISSING_WELL_KNOWN_ATTRIBUTE, Uint8Array.of(3));
    down(s, true, true);
    return;
  }
  // bgp_decode_local_pref: LOCAL_PREF from an eBGP peer is discarded (the route stays)
  const attrs = ibgp ? u.attrs : u.attrs.filter((a) => a.kind !== 'local-pref');
  for (const n of u.nlri) {
    take(n);
    const r: PeerRoute = {
      prefix: n.prefix,
      nextHop: nh?.kind === 'next-hop' ? nh.nextHop : '',
      attrs,
    };
    if (n.pathId !== undefined) r.pathId = n.pathId;
    byKey.set(routeKey(r), r);
    added.push(r);
  }
  p.ribIn = byKey;
  if (added.length || removed.length) s.actions.push({ kind: 'rib', added, removed });
}

/** The attributes BIRD puts on Calico's blocks, announced over iBGP (or eBGP), one array per configuration. */
const ownAttrSets = new WeakMap<PeerConfig, BgpAttr[]>();
export function ownAttrs(p: Peer): BgpAttr[] {
  let a = ownAttrSets.get(p.config);
  if (a) return a;
  const ibgp = p.config.localAs === p.config.peerAs;
  a = [
    { kind: 'origin', origin: 'igp' },
    { kind: 'as-path', segments: ibgp ? [] : [{ kind: 'sequence', asns: [p.config.localAs] }] },
    { kind: 'next-hop', nextHop: p.config.localAddress },
    ...(ibgp ? [{ kind: 'local-pref' as const, localPref: 100 }] : []),
  ];
  ownAttrSets.set(p.config, a);
  return a;
}

function ownPrefix(p: Peer, prefix: string): BgpPrefix {
  return codecOut(p)?.addPath ? { prefix, pathId: OWN_PATH_ID } : { prefix };
}

/** The End-of-RIB marker for IPv4 unicast (RFC 4724): an empty UPDATE. */
export const END_OF_RIB: BgpUpdate = { kind: 'update', withdrawn: [], attrs: [], nlri: [] };
