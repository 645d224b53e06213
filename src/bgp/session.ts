/**
 * Every node's BIRD as a process of the model: its BGP sessions (the pure FSM of fsm.ts, one per
 * configured neighbour) carried over the modelled datapath on the World's clock. BIRD listens on
 * tcp/179 in the node's namespace; a session that connects opens a real connection of the model's
 * kernel (Sockets.connect: the SYN, its retransmissions, the SYN-ACK walked device by device through
 * both nodes' routes, netfilter and links), its OPEN, KEEPALIVE, UPDATE and NOTIFICATION messages
 * are written to that connection and read on the other side from what the kernel delivered, and its
 * ConnectRetry, Hold and Keepalive timers are process timers in the World's timer queue. So a DROP
 * of tcp/179, a missing route to the peer or a link that is down keeps a session from reaching
 * Established, and takes an Established one down when its hold timer expires; the routes learned
 * over it go with it (`onRib`: the node's Loc-RIB and kernel protocol, cni/modes.ts).
 *
 * Who connects: Calico's template makes the mesh unidirectional (`passive on` toward a higher
 * address, compared as strings by confd), so one side connects and the other waits. A connection
 * that arrives while the session is Connect or Active is taken (BIRD's bgp_incoming_connection
 * accepts one in those states, dropping its own pending connect); in any other state, or from an
 * address that is no configured neighbour, it is closed at once, as BIRD closes it.
 *
 * The driver's state (the FSMs, which connection belongs to which session, the armed deadline) is
 * plain data; the kernel calls it back through Stack.apps (the App interface).
 */
import type { App, AppSocketEvent } from '../kernel/stack.ts';
import type { Netns } from '../kernel/objects.ts';
import type { Sockets, TcpConn } from '../kernel/sockets.ts';
import type { TimerEvent } from '../kernel/world.ts';
import { runNetwork } from '../kernel/exchange.ts';
import { BGP_PORT } from '../wire/index.ts';
import { inPrefix, ip4ToInt } from '../wire/addr.ts';
import {
  newPeer,
  nextUpdate,
  peerDeadline,
  stepPeer,
  updatePending,
  type Peer,
  type ExportRoute,
  type PeerConfig,
  type PeerInput,
  type PeerRoute,
} from './fsm.ts';
import type { Mesh } from './mesh.ts';
import { bgpIdAbove, type Reflector } from './reflect.ts';

/** the process name of BIRD in Stack.apps and its timers */
export const BIRD_APP = 'bird';

/** one BGP protocol of one node's BIRD: the session toward one neighbour */
export interface SessionPeer {
  node: string;
  /** the neighbour's node */
  peerNode: string;
  peer: Peer;
  /** the TCP connection the session runs on (connecting or open) */
  conn?: TcpConn;
  /** the deadline its process timer is armed for (µs) */
  timerAt?: number;
  /** configured `disabled` or disabled with birdc: never started */
  disabled: boolean;
  /** µs of the last state change */
  since: number;
  /** connections opened (SYNs sent by connect(), not counting the kernel's retransmissions) */
  connects: number;
  /** BGP messages sent, of which UPDATEs (End-of-RIB included), and octets sent */
  sent: number;
  updates: number;
  octets: number;
  /** routes announced (NLRI) and withdrawn in the UPDATEs sent */
  nlri: number;
  withdrawn: number;
  /**
   * messages other than UPDATEs (OPEN, KEEPALIVE, NOTIFICATION) that found the socket's send
   * buffer full: written first when it has room (BIRD's packets_to_send, sent before UPDATEs)
   */
  backlog?: Uint8Array[];
}

/** what a node's BIRD is configured with: its address and one PeerConfig per neighbour node */
export interface BirdSpeakerConfig {
  node: string;
  peers: { peerNode: string; config: PeerConfig; disabled: boolean }[];
}

/** how a node's BIRD ended: a SIGKILL, its own shutdown, or a shutdown for a graceful restart */
export type BirdExit = 'killed' | 'shut down' | 'restarting';

export class BgpDriver implements App {
  /** per node, its sessions by the neighbour's address */
  readonly byNode = new Map<string, Map<string, SessionPeer>>();
  private readonly byConn = new Map<TcpConn, SessionPeer>();
  private readonly pending: [SessionPeer, PeerInput][] = [];
  /** sessions that may have UPDATEs to write once the inputs at hand are handled (BIRD's tx event) */
  private readonly kicked = new Set<SessionPeer>();
  private busy = false;
  /** the nodes whose Adj-RIB-In changed and whose table has not followed yet */
  private readonly dirty = new Set<string>();
  /** while the build converges, tables follow once at the end (no packet of BGP uses a route BGP makes) */
  private deferRib = false;
  /** the nodes whose BIRD no longer runs, and how it ended */
  private readonly dead = new Map<string, BirdExit>();
  /** the nodes that pass routes on (one of their sessions is an `rr client`, or eBGP) */
  private readonly reflecting = new Set<string>();

  constructor(
    private readonly sockets: Sockets,
    speakers: readonly BirdSpeakerConfig[],
    /** a node's Adj-RIB-In changed: its BIRD's table and kernel protocol follow */
    private readonly onRib: (node: string) => void,
    /** the pairs' view (birdc, calicoctl, doctor) kept in step with the FSMs */
    private readonly mesh?: Mesh,
    /** route reflection (reflect.ts) on the nodes with `rr client` sessions */
    private readonly reflector?: Reflector,
  ) {
    for (const sp of speakers) {
      const m = new Map<string, SessionPeer>();
      for (const p of sp.peers)
        m.set(p.config.peerAddress, {
          node: sp.node,
          peerNode: p.peerNode,
          peer: newPeer(p.config),
          disabled: p.disabled,
          since: 0,
          connects: 0,
          sent: 0,
          updates: 0,
          octets: 0,
          nlri: 0,
          withdrawn: 0,
        });
      this.byNode.set(sp.node, m);
      if (sp.peers.some((p) => p.config.rrClusterId !== undefined || p.config.localAs !== p.config.peerAs))
        this.reflecting.add(sp.node);
    }
    sockets.stack.apps.set(BIRD_APP, this);
  }

  private get w() {
    return this.sockets.stack.w;
  }

  /** every session of every node, in node order, then configuration order */
  all(): SessionPeer[] {
    return [...this.byNode.values()].flatMap((m) => [...m.values()]);
  }

  session(node: string, peerIp: string): SessionPeer | undefined {
    return this.byNode.get(node)?.get(peerIp);
  }

  /**
   * BIRD starts on every node: it listens on tcp/179, then starts each session not disabled (every
   * BIRD listens before the first connects, as once calico-node runs on every node: a connection
   * to a BIRD not started yet would be refused, and wait for ConnectRetry)
   */
  start(): void {
    for (const node of this.byNode.keys()) this.sockets.listen(this.w.ns(node), BGP_PORT, BIRD_APP);
    for (const m of this.byNode.values())
      for (const sp of m.values())
        if (sp.disabled) continue;
        else if (this.neighbour(sp)) this.feed(sp, { kind: 'start' });
        // started, waiting in Idle for its peer to become a neighbour
        else this.mesh?.sideChanged(sp.node, sp.peerNode, 'Idle', this.w.now);
  }

  /**
   * bgp_start_locked: a direct (single-hop eBGP) session starts only once its peer is a neighbour,
   * an address of a connected subnet of an up interface (neigh_find); until then it stays Idle
   * ("Waiting for … to become my neighbor"). A multihop session needs none.
   */
  private neighbour(sp: SessionPeer): boolean {
    if (!sp.peer.config.direct) return true;
    const peer = ip4ToInt(sp.peer.config.peerAddress);
    for (const l of this.w.ns(sp.node).links.values())
      if (l.up && l.type !== 'loopback')
        for (const a of l.addrs) if (a.scope !== 'host' && inPrefix(peer, ip4ToInt(a.ip), a.len)) return true;
    return false;
  }

  /**
   * Let the sessions run until nothing is in flight and every session is either Established with
   * the peer's End-of-RIB in, or waiting for a timer after its first connection failed (a passive
   * one: for its peer), or until `limitUs` passes. `quiet`: nobody traces or captures this
   * traffic (the build: quiesce clears the captures), see runNetwork.
   * Returns the µs it took.
   */
  converge(limitUs: number, opts: { quiet?: boolean } = {}): number {
    const start = this.w.now;
    const all = this.all();
    // the sessions are checked from where the last check stopped: a settled one rarely unsettles,
    // and a full pass confirms before the answer is yes (the check stays O(1) amortized per step)
    let from = 0;
    // a session that connects has tried once (BIRD's connect delay passed); a passive one waits
    // for its peer, which is settled on its own side
    const ok = (s: SessionPeer) =>
      s.disabled ||
      (s.peer.state === 'Established'
        ? !!s.peer.eorIn
        : (s.peer.state === 'Idle' || s.peer.state === 'Active' || s.peer.state === 'Connect') &&
          (s.connects > 0 || s.peer.config.passive));
    const settled = () => {
      if (this.sockets.stack.queue.length) return false;
      while (from < all.length && ok(all[from])) from++;
      if (from < all.length) return false;
      from = 0;
      while (from < all.length && ok(all[from])) from++;
      return from === all.length;
    };
    this.deferRib = true;
    try {
      runNetwork(this.sockets, start + limitUs, settled, opts);
    } finally {
      this.deferRib = false;
    }
    this.syncDirty();
    return this.w.now - start;
  }

  /** `birdc disable`: the session stops (a NOTIFICATION Cease if it was up) and stays down */
  disable(node: string, peerIp: string): void {
    const sp = this.session(node, peerIp);
    if (!sp) return;
    sp.disabled = true;
    this.feed(sp, { kind: 'stop' });
    // what the stop sent (the NOTIFICATION, the FIN) reaches the peer before the command returns
    this.deliver();
  }

  /** what is on its way is delivered (at most 1 s of model time): a command's effect on the peers */
  private deliver(): void {
    runNetwork(this.sockets, this.w.now + 1_000_000, () => !this.sockets.stack.queue.length);
  }

  /**
   * The node's BIRD is killed (SIGKILL: no shutdown of its own): its kernel closes its sockets, so
   * each open connection sends a FIN and no NOTIFICATION (the peers' BIRDs keep its routes for its
   * restart time: graceful restart, fsm.ts), its listening socket goes (the peers' next SYNs are
   * refused) and nothing of it runs any more; the routes it installed stay in the node's kernel
   * (nobody removes them). Returns whether a BIRD ran there.
   */
  kill(node: string): boolean {
    return this.exit(node, 'killed');
  }

  /**
   * The node's BIRD shuts down (`birdc down`, SIGTERM: order_shutdown(0)): every protocol goes
   * down with PDC_CMD_SHUTDOWN, so each BGP session that is up sends a NOTIFICATION Cease,
   * administrative shutdown (bgp_shutdown: subcode 2), and its peer flushes the session's routes
   * at once (BIRD 2.0 has no RFC 8538 graceful restart after a NOTIFICATION). `graceful`
   * (`birdc graceful restart`: order_shutdown(1), PDC_CMD_GR_DOWN): a session able to restart
   * gracefully, as Calico's template makes every one, sends no NOTIFICATION and only closes its
   * connection (a FIN), so its peers keep its routes as stale, as after a kill. Either way the
   * kernel protocol leaves the installed routes in the kernel (Calico's `persist`; a GR_DOWN never
   * flushes), BIRD unlinks its control socket and exits, and its listening socket goes.
   */
  shutdown(node: string, graceful: boolean): boolean {
    return this.exit(node, graceful ? 'restarting' : 'shut down');
  }

  /** the node's BIRD process ends: killed, or after its own shutdown (see kill and shutdown) */
  private exit(node: string, how: BirdExit): boolean {
    const m = this.byNode.get(node);
    if (!m || this.dead.has(node)) return false;
    this.dead.set(node, how);
    // BIRD's own shutdown stops each session that runs (a Cease if it is up); the kernel protocol
    // goes down with the others and leaves the kernel as it is: what the stops withdraw reaches
    // BIRD's table, not the node's routes (syncDirty skips a node whose BIRD ended)
    if (how === 'shut down') for (const sp of m.values()) if (!sp.disabled) this.feed(sp, { kind: 'stop' });
    const ns = this.w.ns(node);
    this.sockets.unlisten(ns, BGP_PORT, BIRD_APP);
    for (const sp of m.values()) {
      sp.disabled = true;
      sp.timerAt = undefined;
      this.drop(sp);
      if (sp.peer.state !== 'Idle') {
        sp.since = this.w.now;
        this.mesh?.sideChanged(node, sp.peerNode, 'Idle', this.w.now);
      }
      // the process's state is gone (its Adj-RIB-In stays what the node's kernel holds)
      sp.peer = {
        ...sp.peer,
        state: 'Idle',
        connectRetryAt: undefined,
        holdAt: undefined,
        keepaliveAt: undefined,
        restartAt: undefined,
        grAt: undefined,
      };
    }
    // the NOTIFICATIONs and FINs reach the peers before the command returns
    this.deliver();
    return true;
  }

  /**
   * BIRD's netlink listener (its device and kernel protocols): the node's links, addresses or
   * routes changed, and its table follows at once (next hops resolved again, the kernel written)
   */
  kernelChanged(node: string): void {
    if (this.byNode.has(node) && !this.dead.has(node)) this.onRib(node);
  }

  /** whether the node's BIRD no longer runs (killed, or shut down) */
  killed(node: string): boolean {
    return this.dead.has(node);
  }

  /** how the node's BIRD ended, if it did */
  exited(node: string): BirdExit | undefined {
    return this.dead.get(node);
  }

  /* ------------------------------------------------------------------ the process */

  timer(_ns: Netns, ev: Extract<TimerEvent, { kind: 'app' }>): void {
    const sp = this.session(ev.netns, ev.id);
    if (!sp || sp.timerAt === undefined || sp.timerAt > this.w.now) return;
    sp.timerAt = undefined;
    this.feed(sp, { kind: 'tick' });
  }

  socket(ns: Netns, c: object, ev: AppSocketEvent): void {
    const conn = c as TcpConn;
    let sp = this.byConn.get(conn);
    if (!sp && ev.kind === 'connected' && conn.role === 'server') {
      // accept(): a connection from a neighbour
      const cand = this.session(ns.name, conn.remote);
      let takes =
        cand &&
        !cand.disabled &&
        (cand.peer.state === 'Active' || cand.peer.state === 'Connect') &&
        cand.conn?.state !== 'ESTABLISHED';
      // both sides connect (a BGPPeer session has no `passive on`): the connections collide.
      // BIRD resolves it (bgp_rx_open, RFC 4271 6.8) by keeping the connection the speaker with
      // the higher BGP identifier opened; here it is decided when the second connection comes
      // up, with the same outcome: the lower side drops its own connection and takes the peer's
      if (
        cand &&
        !takes &&
        !cand.disabled &&
        cand.peer.state === 'OpenSent' &&
        cand.conn?.role === 'client' &&
        bgpIdAbove(cand.peer.config.peerAddress, cand.peer.config.localId)
      ) {
        this.drop(cand);
        this.feed(cand, { kind: 'tcp-closed' });
        const now: SessionPeer = cand;
        takes = now.peer.state === ('Active' as SessionPeer['peer']['state']);
      }
      if (!cand || !takes) {
        this.sockets.close(ns, conn);
        return;
      }
      sp = cand;
      if (sp.conn) this.drop(sp);
      // bgp_incoming_connection → bgp_setup_sk: the session's TTL on the accepted socket
      if (sp.peer.config.direct) conn.ttl = 1;
      sp.conn = conn;
      this.byConn.set(conn, sp);
    }
    if (!sp || sp.conn !== conn) return;
    switch (ev.kind) {
      case 'connected':
        this.feed(sp, { kind: 'tcp-connected' });
        break;
      case 'data':
        this.feed(sp, { kind: 'data', data: ev.data });
        break;
      case 'eof':
        this.drop(sp);
        this.feed(sp, { kind: 'tcp-closed' });
        break;
      case 'writable':
        // bgp_tx: the socket takes writes again
        this.kicked.add(sp);
        this.run();
        break;
      case 'error':
        this.byConn.delete(conn);
        sp.conn = undefined;
        this.feed(
          sp,
          sp.peer.state === 'Connect' || sp.peer.state === 'Active'
            ? { kind: 'tcp-failed', errno: ev.errno }
            : { kind: 'tcp-closed', errno: ev.errno },
        );
        break;
    }
  }

  private syncDirty(): void {
    for (const n of this.dirty) if (!this.dead.has(n)) this.onRib(n);
    this.dirty.clear();
  }

  /** closes the session's connection (it is no longer the session's) */
  private drop(sp: SessionPeer): void {
    if (!sp.conn) return;
    const conn = sp.conn;
    this.byConn.delete(conn);
    sp.conn = undefined;
    sp.backlog = undefined;
    this.sockets.close(this.w.ns(sp.node), conn);
  }

  /** one input for one session; inputs that arise while handling it are handled after it, in order */
  private feed(sp: SessionPeer, input: PeerInput): void {
    this.pending.push([sp, input]);
    this.run();
  }

  /**
   * the inputs, in order (those that arise while handling one after it), then the writes of the
   * sessions they gave something to send: as in BIRD, routes that arrive together share their
   * buckets before the tx event makes UPDATEs of them
   */
  private run(): void {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.pending.length || this.kicked.size) {
        while (this.pending.length) {
          const [s, inp] = this.pending.shift()!;
          this.step(s, inp);
        }
        const kicked = [...this.kicked];
        this.kicked.clear();
        for (const s of kicked) this.write(s);
      }
      if (!this.deferRib) this.syncDirty();
    } finally {
      this.busy = false;
    }
  }

  /**
   * bgp_fire_tx while the socket takes writes: the messages waiting, then UPDATEs made from the
   * session's buckets one at a time (nextUpdate), until none is left or the send buffer is full
   * (then the socket says `writable` when it has room again). What is not written stays in the
   * buckets as routes, not as messages.
   */
  private write(sp: SessionPeer): void {
    const conn = sp.conn;
    if (!conn) return;
    const ns = this.w.ns(sp.node);
    while (sp.backlog?.length) {
      if (!this.sockets.write(ns, conn, sp.backlog[0])) return;
      sp.backlog.shift();
    }
    if (!updatePending(sp.peer)) return;
    while (this.sockets.writable(conn)) {
      const u = nextUpdate(sp.peer, this.w.now);
      if (!u) break;
      sp.sent++;
      sp.updates++;
      sp.octets += u.bytes.length;
      sp.nlri += u.msg.nlri.length;
      sp.withdrawn += u.msg.withdrawn.length;
      this.sockets.write(ns, conn, u.bytes);
    }
    this.arm(sp);
  }

  /** what the node's other sessions export of routes that came or went over `sp` (reflect.ts) */
  private reflect(sp: SessionPeer, added: readonly PeerRoute[], removed: readonly PeerRoute[]): void {
    const r = this.reflector;
    if (!r) return;
    const from = { config: sp.peer.config, remoteId: sp.peer.peerOpen?.bgpId };
    for (const q of this.byNode.get(sp.node)!.values()) {
      if (q === sp) continue;
      const to = { config: q.peer.config };
      // bgp_preexport: between two iBGP sessions only when one of them is an `rr client`
      const internal = (c: PeerConfig) => c.localAs === c.peerAs;
      if (
        internal(from.config) &&
        internal(to.config) &&
        from.config.rrClusterId === undefined &&
        to.config.rrClusterId === undefined
      )
        continue;
      const announce: ExportRoute[] = [];
      const withdraw: { prefix: string; pathId: number }[] = [];
      for (const x of added) {
        if (!r.passes(sp.node, from, to, x)) continue;
        const e = r.exported(sp.node, from, to, x);
        // bgp_update_next_hop_ip: a NEXT_HOP that is the neighbour's own address is rejected
        // (a route passed back toward the node it leads to): what was sent of it is withdrawn
        if (e.attrs.some((a) => a.kind === 'next-hop' && a.nextHop === to.config.peerAddress))
          withdraw.push({ prefix: e.prefix, pathId: e.pathId });
        else announce.push(e);
      }
      const again = new Set(announce.map((x) => `${x.prefix}#${x.pathId}`));
      withdraw.push(
        ...removed
          .map((x) => ({ prefix: x.prefix, pathId: r.pathId(sp.node, from, x) }))
          .filter((x) => !again.has(`${x.prefix}#${x.pathId}`)),
      );
      if (announce.length || withdraw.length) this.pending.push([q, { kind: 'export', announce, withdraw }]);
    }
  }

  private step(sp: SessionPeer, input: PeerInput): void {
    const now = this.w.now;
    const ns = this.w.ns(sp.node);
    const { peer, actions } = stepPeer(sp.peer, input, now);
    sp.peer = peer;
    for (const a of actions)
      switch (a.kind) {
        case 'state':
          // birdc's Since: when BIRD's protocol last changed state
          if (a.proto) sp.since = now;
          this.mesh?.sideChanged(sp.node, sp.peerNode, a.to, now);
          break;
        case 'rib':
          this.dirty.add(sp.node);
          this.mesh?.ribIn.set(`${sp.node}\0${sp.peerNode}`, sp.peer.ribIn);
          if (this.reflecting.has(sp.node)) this.reflect(sp, a.added, a.removed);
          break;
        case 'send':
          sp.sent++;
          sp.octets += a.bytes.length;
          if (sp.conn && (sp.backlog?.length || !this.sockets.write(ns, sp.conn, a.bytes)))
            (sp.backlog ??= []).push(a.bytes);
          break;
        case 'close':
          this.drop(sp);
          break;
        case 'connect': {
          this.drop(sp);
          sp.connects++;
          const [lo, hi] = ns.sysctlInts('net.ipv4.ip_local_port_range', '32768\t60999');
          const sport =
            lo + (this.w.derive('bird-sport', sp.node, sp.peer.config.peerAddress, now) % (hi - lo + 1));
          const conn = this.sockets.connect(
            ns,
            sp.peer.config.peerAddress,
            BGP_PORT,
            sport,
            new Uint8Array(0),
            {
              timers: true,
              app: BIRD_APP,
              // bgp_connect: TTL 1 for a direct session, the multihop count (64) otherwise
              ...(sp.peer.config.direct ? { ttl: 1 } : {}),
            },
          );
          if (!conn) break;
          if (conn.state === 'CLOSED') {
            // connect() failed before a SYN left (no route: ENETUNREACH)
            this.pending.push([sp, { kind: 'tcp-failed', errno: conn.err ?? 'ENETUNREACH' }]);
            break;
          }
          sp.conn = conn;
          this.byConn.set(conn, sp);
          break;
        }
      }
    if (updatePending(sp.peer)) this.kicked.add(sp);
    this.arm(sp);
  }

  /** the session's process timer at its FSM's earliest deadline */
  private arm(sp: SessionPeer): void {
    const d = peerDeadline(sp.peer);
    if (d !== undefined && d !== sp.timerAt) {
      sp.timerAt = d;
      this.w.schedule(d, { kind: 'app', netns: sp.node, app: BIRD_APP, id: sp.peer.config.peerAddress });
    } else if (d === undefined) sp.timerAt = undefined;
  }
}
