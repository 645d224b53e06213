/**
 * The IPv4 datapath, device by device, in the order Linux runs it:
 *
 *   local out:  route lookup → OUTPUT (conntrack, filter) → POSTROUTING → fragment/MTU → neighbour → dev xmit
 *   receive:    dev rx → bridge (learn, FDB, flood) | ARP | ip_rcv → PREROUTING (conntrack, defrag)
 *               → route input (local / forward, rp_filter) → INPUT → transport | vxlan/ipip decap
 *   forward:    TTL → MTU (ICMP frag-needed) → TTL-1 → FORWARD → POSTROUTING → fragment → neighbour → xmit
 *   devices:    veth (peer rx, MTU check), bridge, vxlan (FDB → UDP/4789 encap), ipip (tunl0), loopback
 *
 * It knows Linux objects only; what a CNI does is the state it programmed before.
 */
import { SendQueue } from './sendqueue.ts';
import {
  emitIpv4Packet,
  fragmentIpv4,
  ipv4Length,
  reassembleIpv4,
  ip4ToInt,
  intToIp4,
  prefixMask,
} from '../wire/index.ts';
import {
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  IPPROTO_ICMP,
  IPPROTO_IPIP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  type Frame,
  type Ipv4Packet,
  type MacAddr,
} from '../wire/types.ts';
import type { Route } from './fib.ts';
import { pmtuException } from './pmtu.ts';
import { ARP_LOCKTIME } from './deadlines.ts';
import { icmpGlobalAllow, icmpGlobalConsume, icmpPeerAllow, ipErrorAllow } from './icmp-ratelimit.ts';
import {
  NUD_VALID,
  type CounterEvent,
  type Drop,
  type DropCause,
  type IcmpErrorKind,
  type Layer,
  type NfDecision,
  type PacketRole,
  type Delivery,
  type StepEvent,
  type StepKind,
} from './events.ts';
import { carrierOk } from './links.ts';
import type {
  BridgeLink,
  IpipLink,
  Link,
  NeighEntry,
  Netns,
  NudTimer,
  QueuedSkb,
  VethLink,
  VxlanLink,
} from './objects.ts';
import { tupleOf, type CtResult } from './conntrack.ts';
import { planOf, randomChoice, type Hook } from './netfilter.ts';
import { runHook, type HookEnv, type HookPlace, type NfEvent } from './netfilter/hooks.ts';
import type { Traversal } from './netfilter/eval.ts';
import { REJECT_CODE, resetFor } from './netfilter/reject.ts';
import {
  DeviceCapture,
  fmix32,
  fnv1a,
  fnv1aChar,
  fnv1aUint,
  type CapturePoint,
  type TimerEvent,
  type World,
} from './world.ts';
import { WireBytes } from './wire-bytes.ts';
import { isPort } from '../wire/addr.ts';

export const BROADCAST: MacAddr = 'ff:ff:ff:ff:ff:ff';
const ZERO_MAC: MacAddr = '00:00:00:00:00:00';

const TCP_FLAGS = ['fin', 'syn', 'rst', 'psh', 'ack', 'urg'] as const;

/** time one device hop takes on the simulated clock, µs */
const HOP_US = 4;

export interface RouteResult {
  route: Route;
  dev: Link;
  src: string;
  /** the neighbour to resolve: the gateway, or the destination itself */
  nexthop: string;
  /** the path MTU of a FIB exception (ip route get: `cache expires …sec mtu N`), for local output */
  pmtu?: number;
}

/** what routeOutput keeps of a lookup (the answer before its PMTU exception), null when no route sends the packet */
type RouteAnswer = RouteResult | { error: 'local'; dev: Link } | null;

/** a namespace's kept route answers: by destination, and by output device (oif) then destination */
interface RouteMemo {
  main: Map<string, RouteAnswer>;
  byOif: Map<string, Map<string, RouteAnswer>> | undefined;
}

/** at most this many route answers are kept, over every namespace (~100 bytes each) */
const ROUTES_KEPT = 4096;

export type Terminal =
  | { kind: 'delivered'; netns: string; device: string; to: string }
  | { kind: 'dropped'; drop: Drop }
  /** it left the modelled namespaces, through `netns`'s `device` */
  | { kind: 'outside'; netns: string; device: string };

/** a packet the walk generated (an ICMP error, a socket's reply), waiting to be walked */
export interface Queued {
  ns: string;
  pkt: Ipv4Packet;
  role: PacketRole;
  /** the connection a kernel-made packet (ICMP error, reset) belongs to (nf_ct_attach) */
  ct?: CtResult;
}

/** What the transport layer (sockets.ts) does with a packet delivered locally. */
export interface TransportHandler {
  receive(ns: Netns, dev: Link, pkt: Ipv4Packet): void;
  /** a socket's timer fired */
  timer(ns: Netns, ev: TimerEvent): void;
}

/** What a socket of a process tells it (poll's events, read() of a stream socket) */
export type AppSocketEvent =
  /** connect() completed, or accept() returned a connection */
  | { kind: 'connected' }
  /** bytes read, in order */
  | { kind: 'data'; data: Uint8Array }
  /** read() returned 0: the peer's FIN */
  | { kind: 'eof' }
  /** poll() says POLLOUT again: the send buffer a write found full has room (sk_stream_write_space) */
  | { kind: 'writable' }
  /** the connection failed: connect() with its errno, or an open connection reset or timed out */
  | { kind: 'error'; errno: string };

/**
 * A process of the model with sockets and timers (BIRD, src/bgp/session.ts): the kernel calls it
 * back when one of its timers fires and when one of its sockets has something to say. Behaviour,
 * not state: what it knows lives in plain data it owns.
 */
export interface App {
  timer(ns: Netns, ev: Extract<TimerEvent, { kind: 'app' }>): void;
  /** `conn`: the socket (a TcpConn of sockets.ts) */
  socket(ns: Netns, conn: object, ev: AppSocketEvent): void;
}

/** Per-packet context carried along the path: where it came from, for ICMP errors and traces. */
interface Skb {
  pkt: Ipv4Packet;
  /** ingress device, set on receive */
  iif?: string;
  ct?: CtResult;
  /** skb->mark */
  mark?: number;
  /** CT --notrack: not tracked */
  untracked?: boolean;
  /** largest fragment seen when reassembled by conntrack defrag (IPCB frag_max_size) */
  fragMax?: number;
  /** br_netfilter ran PREROUTING when the frame entered the bridge (ip_sabotage_in skips it) */
  prerouted?: boolean;
}

/** an skb with every field present, so that every skb has one shape (the hooks set mark, untracked…) */
function newSkb(pkt: Ipv4Packet, iif?: string, ct?: CtResult, fragMax?: number): Skb {
  return { pkt, iif, ct, mark: undefined, untracked: undefined, fragMax, prerouted: undefined };
}

/**
 * A frame in the CPU's backlog (netif_rx → enqueue_to_backlog), with the walk's context it was
 * sent in: the side exchange, whether its drops and deliveries are the walked packet's, its part
 */
interface Backlogged {
  ns: Netns;
  dev: Link;
  frame: Frame;
  bytes: WireBytes;
  aux: string | undefined;
  auxDepth: number;
  part: string | undefined;
}

export class Stack {
  transport?: TransportHandler;
  /** the processes with sockets and timers, by name (TimerEvent app, ListenSocket app) */
  readonly apps = new Map<string, App>();
  /** terminal events of the packet being walked (ARP side-exchanges excluded) */
  terminals: Terminal[] = [];
  /**
   * packets generated while walking (ICMP errors, socket replies), per host: the walker turns
   * each into a trace, the exchange loop sends each when its host is ready (sendqueue.ts)
   */
  readonly queue: SendQueue<Queued>;
  private auxDepth = 0;
  /**
   * The CPU's backlog (softnet_data.input_pkt_queue): veth_xmit and loopback_xmit hand the frame
   * to the other end with __netif_rx, which queues it; process_backlog receives the queued frames
   * in order, and what their receivers send joins the tail. One CPU: the lab's flows are short.
   */
  private backlog: Backlogged[] = [];
  /** dev_queue_xmit's rcu_read_lock_bh nesting: pending softirqs run when the outermost one ends */
  private bhDisabled = 0;
  /** net_rx_action is running: a frame handed on now waits in the backlog */
  private softirq = false;
  /** the netns whose socket is in sendmsg (its first device transmission reports back), and what it reported */
  sender?: string;
  sendError?: 'ENOBUFS';
  /** fragments held by defrag, per netns+id */
  private defrag = new Map<string, Ipv4Packet[]>();

  constructor(readonly w: World) {
    this.queue = new SendQueue(() => w.now);
    w.onTimer = (ev) => this.timer(ev);
  }

  /* ------------------------------------------------------------ recording */

  private step(
    ns: Netns,
    kind: StepKind,
    layer: Layer,
    action: string,
    ev: StepEvent,
    extra?: { device?: string; wire?: WireBytes },
  ): void {
    const rec = this.w.rec;
    if (rec.keeps) rec.record(kind, layer, ns.name, extra?.device, action, ev, extra?.wire);
    else rec.passed();
  }

  /**
   * A counter every packet of its kind bumps (TcpInSegs, TcpOutSegs, IcmpInMsgs…): kept in the
   * namespace for nstat, not listed per walk (a walk's counters are the evidence of what happened)
   */
  count(ns: Netns, name: string): void {
    ns.own('mib').set(name, (ns.mib.get(name) ?? 0) + 1);
  }

  /** SNMP_INC_STATS: one of the counters nstat and netstat -s show */
  mib(ns: Netns, name: string): void {
    ns.own('mib').set(name, (ns.mib.get(name) ?? 0) + 1);
    this.w.rec.counter({ netns: ns.name, name });
  }

  /** a device's tx_dropped (ip -s link: TX dropped) */
  private txDropped(ns: Netns, dev: Link): void {
    dev.stats.txDropped++;
    this.w.rec.counter({ netns: ns.name, name: 'tx_dropped', device: dev.name });
  }

  /** kfree_skb: the packet ends here; the drop carries the counters bumped since the last step */
  drop(ns: Netns, cause: DropCause, device?: string, layer: Layer = 3): void {
    const counters: CounterEvent[] = this.w.rec.sinceLastStep();
    const drop = { ...cause, netns: ns.name, device, counters } as Drop;
    this.step(ns, 'drop', layer, 'drop', { type: 'drop', drop }, { device });
    if (this.auxDepth === 0) this.terminals.push({ kind: 'dropped', drop });
  }

  deliver(ns: Netns, device: string, to: string, delivery: Delivery, layer: Layer = 4): void {
    this.step(ns, 'deliver', layer, 'deliver', { type: 'deliver', to, delivery }, { device });
    if (this.auxDepth === 0) this.terminals.push({ kind: 'delivered', netns: ns.name, device, to });
  }

  /**
   * A frame that reached an imported cluster's `outside` namespace: it left the collected
   * namespaces through the device at the other end of `dev`. Nothing beyond is modelled.
   */
  private outside(ns: Netns, dev: Link, frame: Frame): void {
    const from =
      dev.type === 'veth' && dev.peer
        ? { netns: dev.peer.netns, device: dev.peer.name }
        : { netns: ns.name, device: dev.name };
    const bytes = WireBytes.frame(frame);
    this.capture(ns, dev, 'in', bytes);
    this.step(ns, 'outside', 2, 'leave', { type: 'outside', from }, { device: dev.name, wire: bytes });
    if (this.auxDepth === 0) this.terminals.push({ kind: 'outside', ...from });
    // it stands for every host that was not collected: it answers ARP for an address no modelled
    // namespace has, so that traffic to such a host reaches it (and ends here)
    const p = frame.payload;
    if (p.kind !== 'arp' || p.arp.op !== 1) return;
    const target = p.arp.targetIp;
    for (const other of this.w.netns.values())
      if (other.role !== 'outside' && other.localAddress(target)) return;
    this.step(
      ns,
      'arp',
      2,
      'reply',
      { type: 'arp-reply', target, mac: dev.mac, to: p.arp.senderIp },
      { device: dev.name },
    );
    this.devXmit(ns, dev, {
      eth: { dst: p.arp.senderMac, src: dev.mac, ethertype: ETHERTYPE_ARP },
      payload: {
        kind: 'arp',
        arp: {
          op: 2,
          senderMac: dev.mac,
          senderIp: target,
          targetMac: p.arp.senderMac,
          targetIp: p.arp.senderIp,
        },
      },
    });
  }

  /** run fn as a side exchange (ARP) whose drops and deliveries are not the walked packet's */
  private aux<T>(label: string, fn: () => T): T {
    this.auxDepth++;
    try {
      return this.w.rec.withAux(label, fn);
    } finally {
      this.auxDepth--;
    }
  }

  /** a kernel timer fired (World.run) */
  private timer(ev: TimerEvent): void {
    const ns = this.w.netns.get(ev.netns);
    if (!ns) return;
    if (ev.kind === 'neigh') {
      const n = ns.neighbour(ev.ip, ev.dev);
      if (n) this.neighTimer(ns, n);
    } else if (ev.kind === 'app') this.apps.get(ev.app)?.timer(ns, ev);
    else this.transport?.timer(ns, ev);
  }

  /* ------------------------------------------------------------ routing */

  /** a nexthop is usable when its device exists and is up */
  private usable(ns: Netns) {
    return (r: Route) => r.type !== 'unicast' || (!!r.dev && !!ns.link(r.dev)?.up);
  }

  /**
   * fib_lookup + source selection, as `ip route get` does. The answer but its PMTU exception is
   * kept per namespace until its routing generation moves (the kernel's dst cache in spirit:
   * routeLookup reads only the FIB, the devices, their up/down states and addresses, all of which
   * move the generation when written); the exception, which also expires with the clock, is read
   * at every call, as the lookup read it. A kept answer is handed out as a copy, as a lookup makes one.
   */
  routeOutput(ns: Netns, dst: string, oif?: string): RouteResult | { error: 'local'; dev: Link } | undefined {
    let memo = ns.fib.derived(this.newRouteMemo, ns);
    let a = (oif ? memo.byOif?.get(oif) : memo.main)?.get(dst);
    if (a === undefined) {
      a = this.routeLookup(ns, dst, oif);
      if (this.routesKept === ROUTES_KEPT) {
        this.forgetRoutes();
        memo = ns.fib.derived(this.newRouteMemo, ns);
      }
      this.routesKept++;
      if (!oif) memo.main.set(dst, a);
      else {
        const byOif = (memo.byOif ??= new Map());
        let m = byOif.get(oif);
        if (!m) byOif.set(oif, (m = new Map()));
        m.set(dst, a);
      }
    }
    if (a === null) return undefined;
    if ('error' in a) return { error: 'local', dev: a.dev };
    const { route, dev, src, nexthop } = a;
    if (route.exceptions) {
      const e = pmtuException(ns, dst, route, this.w.now);
      if (e && e.mtu < dev.mtu) return { route, dev, src, nexthop, pmtu: e.mtu };
    }
    return { route, dev, src, nexthop };
  }

  /** routeOutput's lookup, before the PMTU exception: null when no route sends the packet */
  private routeLookup(ns: Netns, dst: string, oif: string | undefined): RouteAnswer {
    const local = ns.localAddress(dst);
    if (local) return { error: 'local', dev: local };
    const d = ip4ToInt(dst);
    const usable = this.usable(ns);
    const route = ns.fib.lookup(d, oif ? (r) => usable(r) && r.dev === oif : usable);
    if (!route || route.type !== 'unicast' || !route.dev) return null;
    const dev = ns.link(route.dev)!;
    const nexthop = route.via ?? dst;
    const src = route.src ?? this.selectSource(ns, dev, nexthop) ?? '0.0.0.0';
    return { route, dev, src, nexthop };
  }

  /**
   * The namespaces that keep route answers (each once per memo made), and the answers kept since
   * they were last all dropped: at ROUTES_KEPT, every namespace's are dropped (forgetRoutes), so a
   * sweep over many namespaces and destinations (a matrix of 155,000 pods) keeps at most that many.
   */
  private routeMemos: Netns[] = [];
  private routesKept = 0;

  /** a namespace's first route answer since its generation moved: a memo, the namespace noted */
  private readonly newRouteMemo = (ns: Netns): RouteMemo => {
    this.routeMemos.push(ns);
    return { main: new Map(), byOif: undefined };
  };

  private forgetRoutes(): void {
    for (const ns of this.routeMemos) ns.fib.forget();
    this.routeMemos = [];
    this.routesKept = 0;
  }

  /** inet_select_addr: an address of the device in the nexthop's subnet, else its first, else any global one */
  selectSource(ns: Netns, dev: Link, towards: string): string | undefined {
    const t = ip4ToInt(towards);
    let first: string | undefined;
    for (const a of dev.addrs) {
      if (a.scope === 'host') continue;
      if (((ip4ToInt(a.ip) ^ t) & prefixMask(a.len)) === 0) return a.ip;
      first ??= a.ip;
    }
    if (first !== undefined) return first;
    for (const { dev: other, addr } of ns.addresses())
      if (other.type !== 'loopback' && addr.scope === 'global' && other.up) return addr.ip;
    return undefined;
  }

  /* ------------------------------------------------------------ local output */

  /**
   * ip_local_out for a packet a socket (or the kernel: ICMP, tunnels) built. The route has been
   * chosen by the caller (the socket's route lookup).
   */
  localOut(ns: Netns, pkt: Ipv4Packet, rr: RouteResult, ct?: CtResult): void {
    const skb = newSkb(pkt, undefined, ct);
    if (!this.netfilterHook(ns, 'OUTPUT', skb, undefined, rr.dev.name, rr.nexthop)) return;
    if (skb.pkt.ip.dst !== pkt.ip.dst) {
      // ip_route_me_harder: the nat OUTPUT hook changed the destination, route again
      const again = this.routeOutput(ns, skb.pkt.ip.dst);
      if (!again) {
        this.mib(ns, 'IpOutNoRoutes');
        return this.drop(ns, {
          reason: 'no-route',
          site: 'ip_route_output',
          dst: skb.pkt.ip.dst,
          afterNat: true,
        });
      }
      // a local destination now: through lo
      rr = 'error' in again ? loopbackRoute(ns, skb.pkt.ip.dst, skb.pkt.ip.src) : again;
      this.routeStep(ns, skb.pkt.ip.dst, rr);
    }
    this.postRouting(ns, skb, rr);
  }

  private postRouting(ns: Netns, skb: Skb, rr: RouteResult): void {
    if (!this.netfilterHook(ns, 'POSTROUTING', skb, undefined, rr.dev.name, rr.nexthop)) return;
    this.finishOutput(ns, skb, rr);
  }

  /** ip_finish_output: fragment when needed, then hand each piece to the neighbour layer */
  private finishOutput(ns: Netns, skb: Skb, rr: RouteResult): void {
    // ip_skb_dst_mtu: local output follows the path MTU, forwarding the device's
    const mtu = skb.iif === undefined && rr.pmtu ? rr.pmtu : rr.dev.mtu;
    const len = ipv4Length(skb.pkt);
    const limit = skb.fragMax ? Math.min(mtu, skb.fragMax) : mtu;
    if (len <= mtu && !(skb.fragMax && len > skb.fragMax)) return this.neighOutput(ns, skb.pkt, rr);
    if (skb.pkt.ip.df) {
      // only reached for local senders that bypass the socket MTU check (kernel-built packets)
      this.step(
        ns,
        'mtu',
        3,
        'check',
        { type: 'mtu', len, mtu, dev: rr.dev.name, site: 'ip_finish_output' },
        { device: rr.dev.name },
      );
      this.mib(ns, 'IpFragFails');
      this.drop(ns, { reason: 'mtu-exceeded', site: 'ip_finish_output', len, mtu }, rr.dev.name);
      return;
    }
    const frags = fragmentIpv4(skb.pkt, limit);
    this.step(
      ns,
      'fragment',
      3,
      'fragment',
      { type: 'fragment', len, mtu: limit, dev: rr.dev.name, sizes: frags.map(ipv4Length) },
      { device: rr.dev.name },
    );
    const rec = this.w.rec;
    const prev = rec.part;
    // the fragments leave together: while the neighbour resolves they wait in its queue (one round
    // of ARP probes for all of them), and a failed resolution drops the whole queue
    frags.forEach((f, i) => {
      rec.part = `frag ${i + 1}/${frags.length}`;
      this.neighOutput(ns, f, rr);
    });
    rec.part = prev;
  }

  /** neigh_output / dev_queue_xmit: resolve the L2 address and hand the frame to the device */
  private neighOutput(ns: Netns, pkt: Ipv4Packet, rr: RouteResult): void {
    const dev = rr.dev;
    if (!dev.up) return this.drop(ns, { reason: 'link-down', site: 'ip_finish_output2' }, dev.name, 2);
    if (dev.type === 'ipip') return this.ipipXmit(ns, dev, pkt, rr);
    if (dev.type === 'loopback') {
      this.w.tick(HOP_US);
      // loopback_xmit: out with lo's all-zero Ethernet header and straight back in; libpcap shows
      // the packet once, as received (it skips the outgoing copy on loopback)
      const frame: Frame = { eth: { dst: dev.mac, src: dev.mac, ethertype: ETHERTYPE_IPV4 }, payload: pkt };
      this.capture(ns, dev, 'in', WireBytes.frame(frame));
      // lo counts the packet out and in, without the Ethernet header (eth_type_trans pulled it)
      const len = ipv4Length(pkt);
      dev.stats.txPackets++;
      dev.stats.txBytes += len;
      dev.stats.rxPackets++;
      dev.stats.rxBytes += len;
      return this.ipRcv(ns, dev, newSkb(pkt));
    }
    const mac = this.resolve(ns, dev, rr.nexthop, pkt);
    if (!mac) return;
    const frame: Frame = { eth: { dst: mac, src: dev.mac, ethertype: ETHERTYPE_IPV4 }, payload: pkt };
    this.devXmit(ns, dev, frame);
  }

  /* ------------------------------------------------------------ neighbours / ARP */

  /** a neighbour parameter of the device (net.ipv4.neigh.DEV.NAME, else .default.NAME) */
  neighParm(ns: Netns, dev: string, name: string): number {
    const v = ns.sysctl.get(neighKey(dev, name)) ?? ns.sysctl.get(neighKey('default', name));
    return Number(v ?? '0');
  }

  /**
   * reachable_time, µs: the kernel draws it uniformly from [base/2, 3·base/2) of
   * base_reachable_time_ms (neigh_rand_reach_time, redrawn every 300 s); the model takes the draw
   * when it is known (Netns.neighReachable, read from a real node), else the mean,
   * base_reachable_time itself, so that a run is deterministic and centred on the kernel's.
   */
  reachableTime(ns: Netns, dev: string): number {
    return (ns.neighReachable.get(dev) ?? this.neighParm(ns, dev, 'base_reachable_time_ms')) * 1000;
  }

  /** the timer state kept beside a neighbour entry */
  private nud(ns: Netns, n: NeighEntry): NudTimer {
    const key = nudKey(n.ip, n.dev);
    let t = ns.nud.get(key);
    if (!t) {
      t = { probes: 0 };
      ns.own('nud').set(key, t);
    }
    return t;
  }

  /** neigh_add_timer / mod_timer on a neighbour entry */
  private neighArm(ns: Netns, n: NeighEntry, at: number): void {
    this.nud(ns, n).timer = at;
    this.w.schedule(at, { kind: 'neigh', netns: ns.name, ip: n.ip, dev: n.dev });
  }

  /**
   * neigh_output → neigh_resolve_output → neigh_event_send: a valid entry's address is used at
   * once (a STALE one moves to DELAY); otherwise the packet waits in the entry's queue while ARP
   * resolves it (neigh_timer_handler sends the next probes and fails the queue). Returns the MAC
   * when the frame can leave now; undefined when it was queued (or dropped with the queue).
   */
  /** the step of a neighbour lookup that found a valid entry (a copy of it as it was) */
  private neighHit(ns: Netns, device: string, nexthop: string, n: NeighEntry): void {
    if (this.w.rec.keeps)
      this.step(
        ns,
        'neigh',
        2,
        'lookup',
        { type: 'neigh', result: 'hit', nexthop, entry: { ...n } },
        { device },
      );
    else this.w.rec.passed();
  }

  private resolve(ns: Netns, dev: Link, nexthop: string, pkt: Ipv4Packet): MacAddr | undefined {
    let n = ns.neighbour(nexthop, dev.name);
    if (n && n.lladdr && NUD_VALID.includes(n.state)) {
      this.neighHit(ns, dev.name, nexthop, n);
      if (n.state !== 'REACHABLE' && n.state !== 'PERMANENT' && n.state !== 'NOARP')
        this.nud(ns, n).used = this.w.now;
      if (n.state === 'STALE') {
        // __neigh_event_send: a used STALE entry waits delay_first_probe_time for a confirmation
        ns.neigh.update(n, { state: 'DELAY', updated: this.w.now });
        this.neighArm(ns, n, this.w.now + this.neighParm(ns, dev.name, 'delay_first_probe_time') * 1e6);
      }
      return n.lladdr;
    }
    const resolving = n && n.state === 'INCOMPLETE' ? ns.nud.get(nudKey(n.ip, n.dev)) : undefined;
    if (n && resolving?.queue) {
      // already resolving: the packet joins the queue (unres_qlen), no new probe
      resolving.used = this.w.now;
      this.enqueue(ns, n, pkt);
      this.step(
        ns,
        'neigh',
        2,
        'queue',
        { type: 'neigh', result: 'queued', nexthop, entry: { ...n }, qlen: resolving.queue.length },
        { device: dev.name },
      );
      return undefined;
    }
    this.step(
      ns,
      'neigh',
      2,
      'miss',
      { type: 'neigh', result: 'miss', nexthop, entry: n ? { ...n } : undefined },
      { device: dev.name },
    );
    if (!n) {
      n = { ip: nexthop, dev: dev.name, state: 'INCOMPLETE', router: false, updated: this.w.now };
      ns.neigh.add(n);
    } else {
      ns.neigh.update(n, { state: 'INCOMPLETE', lladdr: undefined, updated: this.w.now });
    }
    // __neigh_event_send: probes start at ucast_solicit (so that arp_solicit broadcasts), the
    // timer runs every retrans_time, and the first probe leaves at once
    const t = this.nud(ns, n);
    t.probes = this.neighParm(ns, dev.name, 'ucast_solicit');
    t.used = this.w.now;
    t.queue = [];
    this.enqueue(ns, n, pkt);
    this.neighArm(ns, n, this.w.now + this.retransTime(ns, dev.name));
    this.neighProbe(ns, dev, n);
    return undefined;
  }

  private retransTime(ns: Netns, dev: string): number {
    return Math.max(this.neighParm(ns, dev, 'retrans_time_ms'), 10) * 1000;
  }

  /** __skb_queue_tail on arp_queue; the oldest packet is dropped beyond unres_qlen */
  private enqueue(ns: Netns, n: NeighEntry, pkt: Ipv4Packet): void {
    const q = this.nud(ns, n).queue!;
    const max = this.neighParm(ns, n.dev, 'unres_qlen');
    while (q.length >= max && q.length) {
      q.shift();
      this.w.unresolved--;
      ns.arpStats.unresDiscards++;
    }
    q.push({ pkt, part: this.w.rec.part });
    this.w.unresolved++;
    // the queue's length is what the next packet for the entry meets (unres_qlen)
    ns.stateChanged();
  }

  /** neigh_probe → arp_solicit: broadcast while probes ≥ ucast_solicit, else unicast to the known address */
  private neighProbe(ns: Netns, dev: Link, n: NeighEntry): void {
    const t = this.nud(ns, n);
    const probes = t.probes;
    const unicast = probes < this.neighParm(ns, dev.name, 'ucast_solicit') && n.lladdr;
    const src = this.selectSource(ns, dev, n.ip) ?? '0.0.0.0';
    const nexthop = n.ip;
    this.aux('arp', () => {
      const req: Frame = {
        eth: { dst: unicast ? n.lladdr! : BROADCAST, src: dev.mac, ethertype: ETHERTYPE_ARP },
        payload: {
          kind: 'arp',
          arp: { op: 1, senderMac: dev.mac, senderIp: src, targetMac: ZERO_MAC, targetIp: nexthop },
        },
      };
      this.step(
        ns,
        'arp',
        2,
        'request',
        unicast
          ? { type: 'arp-request', target: nexthop, sender: src, unicast: n.lladdr }
          : { type: 'arp-request', target: nexthop, sender: src },
        { device: dev.name },
      );
      this.devXmit(ns, dev, req);
    });
    t.probes = probes + 1;
    this.flushResolved();
  }

  /** neighbours that became valid while their packets waited: resolved now, the queue leaves (neigh_update) */
  private resolvedQ: { ns: Netns; n: NeighEntry }[] = [];

  private flushResolved(): void {
    if (this.auxDepth > 0) return;
    while (this.resolvedQ.length) {
      const { ns, n } = this.resolvedQ.shift()!;
      const t = this.nud(ns, n);
      const q = t.queue;
      if (!q || !q.length || !n.lladdr) continue;
      t.queue = undefined;
      this.w.unresolved -= q.length;
      const dev = ns.link(n.dev);
      const rec = this.w.rec;
      const prev = rec.part;
      for (const item of q) {
        rec.part = item.part;
        this.step(
          ns,
          'neigh',
          2,
          'resolved',
          { type: 'neigh', result: 'resolved', nexthop: n.ip, entry: { ...n } },
          { device: n.dev },
        );
        if (!dev) continue;
        if (dev.type === 'bridge' && this.bridgedQ.has(item.pkt)) {
          this.bridgedDnatSlow(ns, dev as BridgeLink, item.pkt, n.lladdr);
          continue;
        }
        const frame: Frame = {
          eth: { dst: n.lladdr, src: dev.mac, ethertype: ETHERTYPE_IPV4 },
          payload: item.pkt,
        };
        this.devXmit(ns, dev, frame);
      }
      rec.part = prev;
    }
  }

  /** an entry left an unresolved state with an address: its queue may go */
  private validated(ns: Netns, n: NeighEntry): void {
    const q = ns.nud.get(nudKey(n.ip, n.dev))?.queue;
    if (q && q.length) this.resolvedQ.push({ ns, n });
  }

  /**
   * neigh_timer_handler: REACHABLE ages to STALE (or DELAY when used lately), DELAY becomes
   * REACHABLE on a confirmation or PROBE, PROBE and INCOMPLETE send the next probe every
   * retrans_time until neigh_max_probes, then FAILED drops the queue (neigh_invalidate).
   */
  neighTimer(ns: Netns, n: NeighEntry): void {
    const t = this.nud(ns, n);
    // re-armed for later, or deleted, since; a timer the clock passed inside a walk (hops tick,
    // timers fire between packets) runs late, as in the kernel (and Sockets.timer's RTO), not never
    if (t.timer === undefined || t.timer > this.w.now) return;
    t.timer = undefined;
    const now = this.w.now;
    const dev = ns.link(n.dev);
    if (!dev) return;
    const delay = this.neighParm(ns, n.dev, 'delay_first_probe_time') * 1e6;
    const reach = this.reachableTime(ns, n.dev);
    let next = now + 1_000_000;
    if (n.state === 'REACHABLE') {
      const confirmed = t.confirmed ?? n.updated;
      if (now <= confirmed + reach) next = confirmed + reach;
      else if (now <= (t.used ?? 0) + delay) {
        ns.neigh.update(n, { state: 'DELAY', updated: now });
        next = now + delay;
      } else {
        ns.neigh.update(n, { state: 'STALE', updated: now });
        return;
      }
    } else if (n.state === 'DELAY') {
      if (now <= (t.confirmed ?? -Infinity) + delay) {
        ns.neigh.update(n, { state: 'REACHABLE', updated: now });
        next = (t.confirmed ?? now) + reach;
      } else {
        ns.neigh.update(n, { state: 'PROBE', updated: now });
        t.probes = 0;
        next = now + this.retransTime(ns, n.dev);
      }
    } else if (n.state === 'PROBE' || n.state === 'INCOMPLETE') {
      next = now + this.retransTime(ns, n.dev);
    } else return;
    if ((n.state === 'INCOMPLETE' || n.state === 'PROBE') && t.probes >= this.maxProbes(ns, n)) {
      ns.neigh.update(n, { state: 'FAILED', updated: now });
      this.neighInvalidate(ns, n);
      return;
    }
    this.neighArm(ns, n, Math.max(next, now + 10_000));
    if (n.state === 'INCOMPLETE' || n.state === 'PROBE') this.neighProbe(ns, dev, n);
  }

  /** neigh_max_probes: ucast + app + (PROBE ? mcast_resolicit : mcast_solicit) */
  private maxProbes(ns: Netns, n: NeighEntry): number {
    const p = (k: string) => this.neighParm(ns, n.dev, k);
    return (
      p('ucast_solicit') +
      p('app_solicit') +
      (n.state === 'PROBE' ? p('mcast_resolicit') : p('mcast_solicit'))
    );
  }

  /**
   * neigh_invalidate: res_failed, then every queued packet is reported (arp_error_report →
   * dst_link_failure: ICMP host unreachable to its sender) and freed.
   */
  private neighInvalidate(ns: Netns, n: NeighEntry): void {
    ns.arpStats.resFailed++;
    this.w.rec.counter({ netns: ns.name, name: 'res_failed', table: 'arp_cache' });
    const t = this.nud(ns, n);
    const q = t.queue ?? [];
    t.queue = undefined;
    this.w.unresolved -= q.length;
    const rec = this.w.rec;
    const prev = rec.part;
    const probes = this.neighParm(ns, n.dev, 'mcast_solicit');
    q.forEach((item, i) => {
      rec.part = item.part;
      this.drop(
        ns,
        item.part !== undefined && i > 0
          ? { reason: 'neighbour-failed', site: 'neigh_resolve_output', nexthop: n.ip, probes, queued: true }
          : { reason: 'neighbour-failed', site: 'neigh_resolve_output', nexthop: n.ip, probes },
        n.dev,
        2,
      );
      this.icmpError(ns, item.pkt, 3, 1, undefined, 'host-unreachable');
    });
    rec.part = prev;
  }

  /**
   * the TCP segment still waits in a neighbour queue of `ns` (skb_still_in_host_queue): the same
   * packet, or one of the same connection, sequence number and flags (a world read back from its
   * data holds copies, not the objects the socket kept)
   */
  queued(ns: Netns, pkt: Ipv4Packet): boolean {
    if (this.w.unresolved <= 0) return false;
    const same = (q: Ipv4Packet): boolean => {
      if (q === pkt) return true;
      const a = q.payload;
      const b = pkt.payload;
      return (
        a.kind === 'tcp' &&
        b.kind === 'tcp' &&
        q.ip.src === pkt.ip.src &&
        q.ip.dst === pkt.ip.dst &&
        a.tcp.srcPort === b.tcp.srcPort &&
        a.tcp.dstPort === b.tcp.dstPort &&
        a.tcp.seq === b.tcp.seq &&
        TCP_FLAGS.every((f) => !a.tcp.flags[f] === !b.tcp.flags[f])
      );
    };
    for (const t of ns.nud.values()) if (t.queue?.some((q) => same(q.pkt))) return true;
    return false;
  }

  /**
   * Run the clock until the packets parked on a neighbour resolution when the walk's run ended
   * have left or failed. Packets parked later, by what the passing time makes the hosts send, are
   * not waited for: a BGP speaker whose peer's address is gone parks a new SYN every few seconds
   * (its connect retries and their retransmissions), and a walk that waited for every parked
   * packet never ended (issue 16's state-generation test: calico-ipip after `ip addr del` of a
   * node's address).
   */
  settle(): void {
    if (this.w.unresolved <= 0) return;
    // the parked packets, counted again: an entry deleted by hand (ip neigh del/flush) took its
    // queue with it
    const waiting: { ns: Netns; key: string; skb: QueuedSkb }[] = [];
    for (const ns of this.w.netns.values())
      for (const [key, t] of ns.nud)
        if (t.queue && ns.neigh.get(key)) for (const skb of t.queue) waiting.push({ ns, key, skb });
    this.w.unresolved = waiting.length;
    const parked = (x: (typeof waiting)[number]) =>
      !!x.ns.nud.get(x.key)?.queue?.includes(x.skb) && !!x.ns.neigh.get(x.key);
    while (waiting.some(parked)) {
      const at = this.w.nextTimer();
      if (at === undefined) break;
      this.w.run(at);
    }
  }

  private arpRcv(ns: Netns, dev: Link, frame: Frame): void {
    if (frame.payload.kind !== 'arp') return;
    const arp = frame.payload.arp;
    if (arp.op === 1) {
      const owner = ns.localAddress(arp.targetIp);
      const proxy = owner ? undefined : this.proxyArp(ns, dev, arp.senderIp, arp.targetIp);
      if ((!owner || owner.type === 'loopback') && !proxy) {
        // every host on the segment gets each broadcast request: the most frequent step of all
        if (this.w.rec.keeps)
          this.step(
            ns,
            'arp',
            2,
            'ignore',
            { type: 'arp-ignore', target: arp.targetIp },
            { device: dev.name },
          );
        else this.w.rec.passed();
        return;
      }
      // arp_process: the sender becomes a STALE neighbour (neigh_event_ns), then we answer from the receiving device
      this.learnNeighbour(ns, dev.name, arp.senderIp, arp.senderMac, 'STALE', false);
      this.step(
        ns,
        'arp',
        2,
        'reply',
        proxy
          ? {
              type: 'arp-proxy-reply',
              target: arp.targetIp,
              mac: dev.mac,
              to: arp.senderIp,
              route: { ...proxy },
              proxyDelay: Number(
                ns.sysctl.get(`net.ipv4.neigh.${dev.name}.proxy_delay`) ??
                  ns.sysctl.get('net.ipv4.neigh.default.proxy_delay') ??
                  '80',
              ),
            }
          : { type: 'arp-reply', target: arp.targetIp, mac: dev.mac, to: arp.senderIp },
        { device: dev.name },
      );
      const reply: Frame = {
        eth: { dst: arp.senderMac, src: dev.mac, ethertype: ETHERTYPE_ARP },
        payload: {
          kind: 'arp',
          arp: {
            op: 2,
            senderMac: dev.mac,
            senderIp: arp.targetIp,
            targetMac: arp.senderMac,
            targetIp: arp.senderIp,
          },
        },
      };
      this.devXmit(ns, dev, reply);
    } else {
      const n = ns.neighbour(arp.senderIp, dev.name);
      if (!n || n.state === 'PERMANENT') return;
      // arp_process: several replies back to back, the first one wins. Within locktime of the
      // entry's last change (neigh->updated) a reply is no override (a gratuitous one is), and
      // __neigh_update leaves a valid entry with another address as it is
      const valid = n.state !== 'INCOMPLETE' && n.state !== 'FAILED';
      const garp = arp.senderIp === arp.targetIp;
      if (valid && n.lladdr !== arp.senderMac && !garp && this.w.now <= n.updated + ARP_LOCKTIME) {
        this.step(
          ns,
          'arp',
          2,
          'ignore',
          { type: 'arp-locked', ip: arp.senderIp, mac: arp.senderMac, entry: { ...n } },
          { device: dev.name },
        );
        return;
      }
      // neigh_update(NUD_REACHABLE): confirmed now, the timer runs until reachable_time. An entry
      // that was not REACHABLE gets its timer from neigh_add_timer, which also moves `used` up to
      // `confirmed`: the reply counts as a use, so a reachable_time shorter than
      // delay_first_probe_time ages to DELAY, not STALE (and never stops probing)
      const fresh = n.state !== 'REACHABLE';
      ns.neigh.update(n, { lladdr: arp.senderMac, state: 'REACHABLE', updated: this.w.now });
      const t = this.nud(ns, n);
      t.confirmed = this.w.now;
      if (fresh && (t.used === undefined || t.used < t.confirmed)) t.used = t.confirmed;
      this.neighArm(ns, n, this.w.now + this.reachableTime(ns, dev.name));
      this.step(
        ns,
        'arp',
        2,
        'learn',
        { type: 'arp-learn', ip: arp.senderIp, mac: arp.senderMac, entry: { ...n } },
        { device: dev.name },
      );
      this.validated(ns, n);
    }
  }

  /**
   * arp_process for a target that is not local: with forwarding and proxy_arp on the receiving
   * device (conf.all or conf.DEV; medium_id 0), the kernel answers for a target whose input route
   * (ip_route_input_noref from the sender, source validation included) is unicast out of another
   * device (arp_fwd_proxy). The kernel delays a proxied answer to a broadcast request by up to
   * neigh.DEV.proxy_delay; the model answers at once (timing only: Calico sets proxy_delay 0).
   */
  private proxyArp(ns: Netns, dev: Link, sip: string, tip: string): Route | undefined {
    const conf = (key: string) =>
      Number(
        ns.sysctl.get(`net.ipv4.conf.${dev.name}.${key}`) ??
          ns.sysctl.get(`net.ipv4.conf.default.${key}`) ??
          '0',
      );
    const proxyArp = Number(ns.sysctl.get('net.ipv4.conf.all.proxy_arp') ?? '0') || conf('proxy_arp');
    if (!proxyArp || !ns.forwarding(dev.name) || sip === '0.0.0.0') return undefined;
    const route = ns.fib.lookup(ip4ToInt(tip), this.usable(ns));
    if (!route || route.type !== 'unicast' || route.dev === dev.name) return undefined;
    // fib_validate_source for the sender, as ip_route_input does
    const mode = ns.rpFilter(dev.name);
    if (mode !== 0) {
      const back = ns.fib.lookup(ip4ToInt(sip), this.usable(ns));
      if (mode === 1 ? back?.dev !== dev.name : !back) return undefined;
    }
    return route;
  }

  private learnNeighbour(
    ns: Netns,
    dev: string,
    ip: string,
    mac: MacAddr,
    state: 'STALE',
    router: boolean,
  ): void {
    const n = ns.neighbour(ip, dev);
    if (n) {
      if (n.state === 'PERMANENT') return;
      if (n.lladdr !== mac || n.state === 'INCOMPLETE' || n.state === 'FAILED') {
        ns.neigh.update(n, { lladdr: mac, state, updated: this.w.now });
        const t = ns.nud.get(nudKey(ip, dev));
        if (t) t.timer = undefined;
        this.validated(ns, n);
      }
      return;
    }
    ns.neigh.add({ ip, dev, lladdr: mac, state, router, updated: this.w.now });
  }

  /* ------------------------------------------------------------ devices */

  private capture(ns: Netns, dev: Link, dir: 'in' | 'out', bytes: WireBytes, promisc = false): void {
    // a device that is down cannot be captured on (tcpdump: "That device is not up")
    if (this.w.capture && dev.up)
      this.w.captures.push(new DeviceCapture(this.w.now, capturePoint(ns, dev, dir, promisc), bytes));
  }

  /**
   * dev_queue_xmit: BHs are off while the device transmits (rcu_read_lock_bh); when the outermost
   * transmission ends outside softirq context, local_bh_enable runs NET_RX (net_rx_action) on
   * what the devices put in the backlog
   */
  devXmit(ns: Netns, dev: Link, frame: Frame): void {
    this.bhDisabled++;
    try {
      this.xmit(ns, dev, frame);
    } catch (e) {
      if (this.bhDisabled === 1 && !this.softirq) this.backlog.length = 0;
      throw e;
    } finally {
      this.bhDisabled--;
    }
    if (this.bhDisabled === 0 && !this.softirq) this.netRxAction();
  }

  /** netif_rx → enqueue_to_backlog: the frame waits in the backlog until net_rx_action */
  private netifRx(ns: Netns, dev: Link, frame: Frame, bytes: WireBytes): void {
    const rec = this.w.rec;
    this.backlog.push({ ns, dev, frame, bytes, aux: rec.side, auxDepth: this.auxDepth, part: rec.part });
  }

  /**
   * net_rx_action → process_backlog: each queued frame is received (__netif_receive_skb) in the
   * context it was sent in; a neighbour its receiver resolved sends its queue at once (neigh_update)
   */
  private netRxAction(): void {
    // nothing queued (what the transmission sent left by a tunnel, or was dropped): nothing runs
    if (!this.backlog.length) return;
    const rec = this.w.rec;
    const depth = this.auxDepth;
    const part = rec.part;
    this.softirq = true;
    try {
      for (let i = 0; i < this.backlog.length; i++) {
        const b = this.backlog[i];
        this.auxDepth = b.auxDepth;
        rec.part = b.part;
        const outer = rec.enterSide(b.aux);
        try {
          this.netifReceive(b.ns, b.dev, b.frame, b.bytes);
        } finally {
          rec.leaveSide(outer);
        }
        this.auxDepth = depth;
        rec.part = part;
        this.flushResolved();
      }
    } finally {
      // a new list rather than length = 0 (a call into the runtime, after every transmission)
      this.backlog = [];
      this.softirq = false;
      this.auxDepth = depth;
      rec.part = part;
    }
  }

  private xmit(ns: Netns, dev: Link, frame: Frame): void {
    // only a sending socket's own first transmission reports back to its sendmsg
    const mine = this.sender === ns.name;
    this.sender = undefined;
    if (!dev.up) return this.drop(ns, { reason: 'link-down', site: 'dev_queue_xmit' }, dev.name, 2);
    if (!carrierOk(dev)) {
      // without carrier the device's qdisc is noop: the frame is dropped before any capture sees it
      this.txDropped(ns, dev);
      return this.drop(ns, { reason: 'link-down', site: 'dev_queue_xmit', noCarrier: true }, dev.name, 2);
    }
    switch (dev.type) {
      case 'bridge':
        return this.bridgeXmit(ns, dev, frame);
      case 'vxlan':
        return this.vxlanXmit(ns, dev, frame);
      case 'veth':
        return this.vethXmit(ns, dev, frame, mine);
      case 'loopback':
        // loopback_xmit → __netif_rx
        return this.netifRx(ns, dev, frame, WireBytes.frame(frame));
      case 'ipip':
        return this.drop(
          ns,
          { reason: 'no-route', site: 'ipip_tunnel_xmit', dst: '', ipip: 'frame' },
          dev.name,
          2,
        );
    }
  }

  private vethXmit(ns: Netns, dev: VethLink, frame: Frame, mine = false): void {
    const bytes = WireBytes.frame(frame);
    const len = bytes.length;
    this.txStep(ns, dev, frame, bytes);
    // devXmit checked the carrier: the peer exists and is up
    const peerNs = this.w.ns(dev.peer!.netns);
    const peer = peerNs.link(dev.peer!.name)!;
    // veth_xmit → __dev_forward_skb → is_skb_forwardable: larger than the peer's MTU + L2 header →
    // dropped and counted on the peer (rx_dropped) and on this end (tx_dropped); a local sender's
    // sendmsg gets NET_XMIT_DROP back as ENOBUFS
    if (len > peer.mtu + 14 + 4) {
      peer.stats.rxDropped++;
      this.w.rec.counter({ netns: peerNs.name, name: 'rx_dropped', device: peer.name });
      this.txDropped(ns, dev);
      if (mine) this.sendError = 'ENOBUFS';
      return this.drop(
        peerNs,
        { reason: 'mtu-exceeded', site: 'veth_xmit', len, mtu: peer.mtu },
        peer.name,
        2,
      );
    }
    // veth counts what it handed to the peer (veth_stats_tx): a dropped frame is not a TX packet
    dev.stats.txPackets++;
    dev.stats.txBytes += len;
    this.w.tick(HOP_US);
    // veth_forward_skb → __netif_rx: the peer receives it from the backlog
    this.netifRx(peerNs, peer, frame, bytes);
  }

  private txStep(ns: Netns, dev: Link, frame: Frame, bytes: WireBytes): void {
    this.capture(ns, dev, 'out', bytes);
    if (this.w.rec.keeps)
      this.step(ns, 'xmit', 2, 'tx', { type: 'xmit', frame }, { device: dev.name, wire: bytes });
    else this.w.rec.passed();
  }

  /** netif_receive_skb: bridge port → bridge; else ARP or IPv4 when the frame is for this host */
  netifReceive(ns: Netns, dev: Link, frame: Frame, bytes: WireBytes): void {
    if (ns.role === 'outside') return this.outside(ns, dev, frame);
    this.capture(ns, dev, 'in', bytes);
    dev.stats.rxPackets++;
    // vxlan_rcv counts from the inner IP header, every other device the whole frame
    dev.stats.rxBytes += dev.type === 'vxlan' ? bytes.length - 14 : bytes.length;
    if (this.w.rec.keeps)
      this.step(ns, 'rx', 2, 'rx', { type: 'rx', frame }, { device: dev.name, wire: bytes });
    else this.w.rec.passed();
    if (dev.master) {
      const br = ns.link(dev.master);
      if (br && br.type === 'bridge') {
        let fragMax: number | undefined;
        let prerouted: Skb | undefined;
        const p = frame.payload;
        if (
          p.kind === 'ipv4' &&
          (p.ip.mf || p.ip.fragOffset) &&
          this.brNetfilter(ns) &&
          this.conntrackOn(ns)
        ) {
          // br_netfilter: the bridge's PREROUTING hook reassembles fragments (nf_defrag) before anything else
          const whole = this.reassemble(ns, p);
          if (!whole) return;
          frame = { eth: frame.eth, payload: whole.pkt };
          bytes = WireBytes.frame(frame);
          fragMax = whole.max;
        }
        // br_nf_pre_routing: IPv4 entering a bridge port runs PREROUTING (conntrack, NAT) in the
        // bridge, before the FDB decides; the IP layer does not run it again (ip_sabotage_in)
        if (frame.payload.kind === 'ipv4' && this.brNetfilter(ns)) {
          const daddr = frame.payload.ip.dst;
          const pre = newSkb(frame.payload, br.name, undefined, fragMax);
          if (!this.netfilterHook(ns, 'PREROUTING', pre, br.name, undefined)) return;
          if (pre.pkt !== frame.payload) {
            frame = { eth: frame.eth, payload: pre.pkt };
            bytes = WireBytes.frame(frame);
          }
          if (pre.pkt.ip.dst !== daddr) {
            // br_nf_pre_routing_finish: the destination was DNATed
            const rr = ns.localAddress(pre.pkt.ip.dst) ? undefined : this.routeOutput(ns, pre.pkt.ip.dst);
            if (rr && !('error' in rr) && rr.dev === br)
              return this.bridgedDnat(ns, br, dev, frame, pre, rr.nexthop, fragMax);
            // routed by the host: the frame is for the bridge device now (PACKET_HOST)
            frame = { eth: { ...frame.eth, dst: br.mac }, payload: pre.pkt };
            bytes = WireBytes.frame(frame);
          }
          prerouted = pre;
        }
        this.bridgeFinish(ns, br, dev, frame, bytes, fragMax, prerouted);
        return;
      }
    }
    this.l2Deliver(ns, dev, frame);
  }

  /**
   * br_handle_frame_finish: learn, forward or pass up; the promiscuous bridge device's copy first.
   * `pre`: what br_netfilter's PREROUTING left on the skb as the frame entered this bridge, carried
   * along the bridge's own path (FORWARD and POSTROUTING out of a port, or up to the host, where
   * ip_rcv does not run PREROUTING again); a frame that leaves by a port is a new skb elsewhere.
   */
  private bridgeFinish(
    ns: Netns,
    br: BridgeLink,
    dev: Link,
    frame: Frame,
    bytes: WireBytes,
    fragMax?: number,
    pre?: Skb,
  ): void {
    // tcpdump puts the bridge device in promiscuous mode, and a promiscuous bridge passes a copy
    // of every frame it receives up to itself: a capture on cni0 sees all bridged traffic;
    // without promiscuous mode (tcpdump -p) only what br_pass_frame_up hands the host
    if (this.w.capture) {
      const d = frame.eth.dst;
      const forHost = d === BROADCAST || isMulticast(d) || d === br.mac || br.fdb.get(d)?.state === 'local';
      this.capture(ns, br, 'in', bytes, !forHost);
    }
    this.bridgeInput(ns, br, dev, frame, fragMax, pre);
  }

  /**
   * br_nf_pre_routing_finish's bridged_dnat: DNAT sent the frame to an address routed out of the
   * bridge it came in by, so it is bridged there, not routed (no TTL decrement, its source MAC
   * kept). br_nf_pre_routing_finish_bridge: with a connected neighbour the destination MAC is
   * copied in and the bridge forwards at once; otherwise the neighbour's output (ARP on the bridge
   * device) sends it through the bridge device, whose br_dev_xmit puts the source MAC back and
   * hands it to the bridge as from its ingress port (br_nf_pre_routing_finish_bridge_slow).
   */
  private bridgedDnat(
    ns: Netns,
    br: BridgeLink,
    port: Link,
    frame: Frame,
    skb: Skb,
    nexthop: string,
    fragMax?: number,
  ): void {
    const pkt = skb.pkt;
    this.step(
      ns,
      'bridge',
      3,
      'bridged-dnat',
      { type: 'bridged-dnat', bridge: br.name, dst: pkt.ip.dst, port: port.name },
      { device: br.name },
    );
    const n = ns.neighbour(nexthop, br.name);
    if (n?.lladdr && (n.state === 'REACHABLE' || n.state === 'PERMANENT' || n.state === 'NOARP')) {
      this.neighHit(ns, br.name, nexthop, n);
      const out: Frame = { eth: { ...frame.eth, dst: n.lladdr }, payload: pkt };
      return this.bridgeFinish(ns, br, port, out, WireBytes.frame(out), fragMax, skb);
    }
    this.bridgedQ.set(pkt, { port: port.name, src: frame.eth.src, skb, fragMax });
    const mac = this.resolve(ns, br, nexthop, pkt);
    if (mac) this.bridgedDnatSlow(ns, br, pkt, mac);
  }

  /** packets of a bridged DNAT that left by the bridge device's neighbour output, with what br_dev_xmit restores */
  private bridgedQ = new WeakMap<Ipv4Packet, { port: string; src: MacAddr; skb: Skb; fragMax?: number }>();

  /** br_dev_xmit → br_nf_pre_routing_finish_bridge_slow: the tap sees the neighbour's header, the bridge the restored one */
  private bridgedDnatSlow(ns: Netns, br: BridgeLink, pkt: Ipv4Packet, mac: MacAddr): void {
    const b = this.bridgedQ.get(pkt)!;
    this.bridgedQ.delete(pkt);
    const sent: Frame = { eth: { dst: mac, src: br.mac, ethertype: ETHERTYPE_IPV4 }, payload: pkt };
    this.txStep(ns, br, sent, WireBytes.frame(sent));
    const port = ns.link(b.port);
    if (!port) return;
    const out: Frame = { eth: { dst: mac, src: b.src, ethertype: ETHERTYPE_IPV4 }, payload: pkt };
    this.bridgeFinish(ns, br, port, out, WireBytes.frame(out), b.fragMax, b.skb);
  }

  /**
   * the frame is up the stack of `dev` (a plain device, or the bridge device itself); `pre`: what
   * br_netfilter's PREROUTING left on the skb when the frame entered that bridge
   */
  private l2Deliver(ns: Netns, dev: Link, frame: Frame, fragMax?: number, pre?: Skb): void {
    const dst = frame.eth.dst;
    if (dst !== BROADCAST && dst !== dev.mac && !isMulticast(dst)) {
      // PACKET_OTHERHOST: ip_rcv drops it silently
      return this.drop(
        ns,
        { reason: 'not-for-host', site: 'ip_rcv', mac: dst, devMac: dev.mac },
        dev.name,
        2,
      );
    }
    if (frame.eth.ethertype === ETHERTYPE_ARP) return this.arpRcv(ns, dev, frame);
    if (frame.eth.ethertype === ETHERTYPE_IPV4 && frame.payload.kind === 'ipv4') {
      return this.ipRcv(
        ns,
        dev,
        pre ? { ...pre, prerouted: true } : newSkb(frame.payload, undefined, undefined, fragMax),
      );
    }
  }

  private brNetfilter(ns: Netns): boolean {
    return ns.sysctl.get('net.bridge.bridge-nf-call-iptables') === '1';
  }

  /* ------------------------------------------------------------ bridge */

  private fdbLookup(br: BridgeLink, mac: MacAddr) {
    const e = br.fdb.get(mac);
    if (e && e.state === 'dynamic' && this.w.now - e.updated > br.ageingTime * 1e6) {
      br.fdb.remove(e);
      return undefined;
    }
    return e;
  }

  /** br_handle_frame: learn the source, then forward, flood or pass up */
  private bridgeInput(
    ns: Netns,
    br: BridgeLink,
    port: Link,
    frame: Frame,
    fragMax?: number,
    pre?: Skb,
  ): void {
    if (!br.up)
      return this.drop(ns, { reason: 'link-down', site: 'br_handle_frame', bridge: 'bridge' }, br.name, 2);
    const src = frame.eth.src;
    const known = this.fdbLookup(br, src);
    if (!isMulticast(src)) {
      if (!known) {
        br.fdb.add({ mac: src, port: port.name, state: 'dynamic', updated: this.w.now });
        this.step(
          ns,
          'bridge',
          2,
          'learn',
          { type: 'fdb-learn', bridge: br.name, mac: src, port: port.name },
          { device: br.name },
        );
      } else if (known.state === 'dynamic') {
        // a known address seen again: refreshed in place (no answer changes: fdbDeadline), moved
        // to another port through the table (the namespace's state generation moves)
        if (known.port !== port.name) br.fdb.update(known, { port: port.name });
        known.updated = this.w.now;
      }
    }
    this.bridgeForward(ns, br, frame, port, fragMax, pre);
  }

  /** br_pass_frame_up: the bridge device counts what it hands to the host, without the Ethernet header */
  private passUp(br: BridgeLink, frame: Frame): void {
    const p = frame.payload;
    br.stats.rxPackets++;
    br.stats.rxBytes += p.kind === 'ipv4' ? ipv4Length(p) : p.kind === 'arp' ? 28 : p.data.length;
  }

  /** br_dev_xmit: the host sends through its bridge device */
  private bridgeXmit(ns: Netns, br: BridgeLink, frame: Frame): void {
    const bytes = WireBytes.frame(frame);
    this.txStep(ns, br, frame, bytes);
    br.stats.txPackets++;
    br.stats.txBytes += bytes.length;
    this.bridgeForward(ns, br, frame, undefined);
  }

  private bridgeForward(
    ns: Netns,
    br: BridgeLink,
    frame: Frame,
    inPort: Link | undefined,
    fragMax?: number,
    pre?: Skb,
  ): void {
    const dst = frame.eth.dst;
    if (dst === BROADCAST || isMulticast(dst)) {
      const ports = portsOf(ns, br);
      this.floodStep(ns, br, dst, true, () => ports.filter((p) => shouldDeliver(p, inPort)), !!inPort);
      // br_handle_frame_finish: br_flood sends the copies out of the ports, then br_pass_frame_up
      // hands the frame to the host (synchronously: netif_receive_skb). A copy out of a veth port
      // reaches the peer through the backlog, after the host has answered: an ARP request answered
      // by the bridge's own address and by a device behind a veth pair is answered by the bridge
      // first (test/collect.test.ts, the node's own veth pair), and on a hairpin port the asker's
      // own request goes back out before the host's reply (the svc-hairpin lab seeds)
      for (const p of ports)
        if (shouldDeliver(p, inPort)) this.bridgePortXmit(ns, br, p, frame, inPort, fragMax, pre);
      if (inPort) this.passUp(br, frame);
      if (inPort) this.l2Deliver(ns, br, frame, fragMax, pre);
      return;
    }
    const e = this.fdbLookup(br, dst);
    if (e && e.state === 'local') {
      this.step(
        ns,
        'bridge',
        2,
        'local',
        { type: 'fdb-local', bridge: br.name, mac: dst, port: e.port, state: e.state },
        { device: br.name },
      );
      if (!inPort) return; // the host sent to itself: nothing to do
      this.passUp(br, frame);
      return this.l2Deliver(ns, br, frame, fragMax, pre);
    }
    if (e) {
      const out = ns.link(e.port);
      this.step(
        ns,
        'bridge',
        2,
        'forward',
        { type: 'fdb-forward', bridge: br.name, mac: dst, port: e.port, state: e.state },
        { device: br.name },
      );
      if (!out || !shouldDeliver(out, inPort))
        return this.drop(
          ns,
          { reason: 'not-for-host', site: 'br_forward', mac: dst, port: out?.name },
          br.name,
          2,
        );
      return this.bridgePortXmit(ns, br, out, frame, inPort, fragMax, pre);
    }
    const others = portsOf(ns, br).filter((p) => shouldDeliver(p, inPort));
    this.floodStep(ns, br, dst, false, () => others, false);
    for (const p of others) this.bridgePortXmit(ns, br, p, frame, inPort, fragMax, pre);
  }

  /**
   * The bridge's flood step (broadcast and multicast, or an unknown unicast): its event, with the
   * ports it goes out of, made only when the recorder keeps steps (the build's quiet BGP walks and
   * the matrix's walks flood without one), else the step passed as any other
   */
  private floodStep(
    ns: Netns,
    br: BridgeLink,
    mac: string,
    broadcast: boolean,
    ports: () => readonly Link[],
    toHost: boolean,
  ): void {
    if (!this.w.rec.keeps) return this.w.rec.passed();
    this.step(
      ns,
      'bridge',
      2,
      'flood',
      { type: 'fdb-flood', bridge: br.name, mac, broadcast, ports: ports().map((p) => p.name), toHost },
      { device: br.name },
    );
  }

  /** br_forward: bridged IPv4 goes through iptables FORWARD when br_netfilter is on */
  private bridgePortXmit(
    ns: Netns,
    br: BridgeLink,
    port: Link,
    frame: Frame,
    inPort: Link | undefined,
    fragMax?: number,
    prerouted?: Skb,
  ): void {
    if (!port.up)
      return this.drop(ns, { reason: 'link-down', site: 'br_forward', bridge: 'port' }, port.name, 2);
    const pre = inPort ? prerouted : undefined;
    if (pre) {
      // br_nf_forward_ip, br_nf_post_routing (PREROUTING ran when the frame entered the bridge)
      const skb: Skb = { ...pre };
      if (!this.netfilterHook(ns, 'FORWARD', skb, br.name, br.name)) return;
      if (!this.netfilterHook(ns, 'POSTROUTING', skb, undefined, br.name, skb.pkt.ip.dst)) return;
      if (skb.pkt !== frame.payload) frame = { eth: frame.eth, payload: skb.pkt };
    }
    const p = frame.payload;
    if (fragMax && p.kind === 'ipv4' && ipv4Length(p) > fragMax) {
      // br_nf_dev_queue_xmit: what was reassembled leaves in fragments no larger than it came in
      const frags = fragmentIpv4(p, fragMax);
      this.step(
        ns,
        'fragment',
        3,
        'refragment',
        { type: 'refragment', bridge: br.name, len: ipv4Length(p), port: port.name, count: frags.length },
        { device: port.name },
      );
      const rec = this.w.rec;
      const prev = rec.part;
      frags.forEach((f, i) => {
        rec.part = `frag ${i + 1}/${frags.length}`;
        this.devXmit(ns, port, { eth: frame.eth, payload: f });
      });
      rec.part = prev;
      return;
    }
    // br_dev_queue_push_xmit → is_skb_forwardable: larger than the egress port's MTU → dropped, no ICMP
    if (port.type !== 'bridge' && p.kind === 'ipv4' && ipv4Length(p) > port.mtu) {
      this.txDropped(ns, port);
      return this.drop(
        ns,
        { reason: 'mtu-exceeded', site: 'br_dev_queue_push_xmit', len: ipv4Length(p) + 14, mtu: port.mtu },
        port.name,
        2,
      );
    }
    this.devXmit(ns, port, frame);
  }

  /* ------------------------------------------------------------ vxlan */

  private vxlanXmit(ns: Netns, vx: VxlanLink, frame: Frame): void {
    const bytes = WireBytes.frame(frame);
    this.txStep(ns, vx, frame, bytes);
    const fdb = vx.fdb.get(frame.eth.dst) ?? vx.fdb.get(ZERO_MAC);
    if (!fdb) {
      this.txDropped(ns, vx);
      this.step(
        ns,
        'encap',
        2,
        'lookup',
        { type: 'vxlan-fdb-miss', mac: frame.eth.dst },
        { device: vx.name },
      );
      return this.drop(ns, { reason: 'vxlan-fdb-miss', site: 'vxlan_xmit', mac: frame.eth.dst }, vx.name, 2);
    }
    vx.stats.txPackets++;
    // vxlan_xmit_one counts from the inner IP header
    vx.stats.txBytes += bytes.length - 14;
    const inner = frame.payload.kind === 'ipv4' ? frame.payload : undefined;
    const sport = vxlanSourcePort(this.w, vx, frame);
    const outer: Ipv4Packet = {
      kind: 'ipv4',
      ip: {
        src: vx.local,
        dst: fdb.dst,
        protocol: IPPROTO_UDP,
        ttl: 64,
        id: 0,
        df: false,
        mf: false,
        fragOffset: 0,
        tos: inner ? inner.ip.tos : 0,
      },
      payload: {
        kind: 'udp',
        udp: { srcPort: sport, dstPort: vx.dstport, noChecksum: !vx.udpcsum },
        payload: { kind: 'vxlan', vxlan: { vni: vx.vni }, frame },
      },
    };
    this.step(
      ns,
      'encap',
      3,
      'encapsulate',
      {
        type: 'encap-vxlan',
        vni: vx.vni,
        sport,
        dport: vx.dstport,
        local: vx.local,
        remote: fdb.dst,
        fdb: { mac: fdb.mac, dst: fdb.dst, permanent: fdb.permanent },
      },
      { device: vx.name },
    );
    this.tunnelOut(ns, outer, vx.dev);
  }

  /** iptunnel_xmit → ip_local_out: the outer packet is routed like any locally generated one */
  private tunnelOut(ns: Netns, outer: Ipv4Packet, oif: string | undefined): void {
    const rr = this.routeOutput(ns, outer.ip.dst, oif);
    if (!rr || 'error' in rr) {
      this.step(ns, 'route', 3, 'lookup', { type: 'route-miss', dst: outer.ip.dst, outer: true, oif });
      this.mib(ns, 'IpOutNoRoutes');
      return this.drop(ns, { reason: 'no-route', site: 'iptunnel_xmit', dst: outer.ip.dst, tunnel: true });
    }
    outer.ip.id = this.nextId(ns, outer);
    this.routeStep(ns, outer.ip.dst, rr, true);
    this.localOut(ns, outer, rr);
  }

  /** Linux leaves the IP id 0 on DF packets of connected sockets; others take the per-netns counter */
  private nextId(ns: Netns, p: Ipv4Packet): number {
    if (p.ip.df) return 0;
    ns.ipId = (ns.ipId + 1) & 0xffff;
    let base = this.ipIdBases.get(ns.name);
    if (base === undefined) this.ipIdBases.set(ns.name, (base = this.w.derive('ipid', ns.name)));
    return (base + ns.ipId) & 0xffff;
  }

  /** derive('ipid', NETNS) by netns name (the World's seed never changes): every tunnel packet asked */
  private readonly ipIdBases = new Map<string, number>();

  routeStep(ns: Netns, dst: string, rr: RouteResult, outer = false): void {
    if (!this.w.rec.keeps) return this.w.rec.passed();
    this.step(
      ns,
      'route',
      3,
      'lookup',
      { type: 'route', dst, route: rr.route, dev: rr.dev.name, src: rr.src, outer: outer || undefined },
      { device: rr.dev.name },
    );
  }

  /* ------------------------------------------------------------ ipip */

  private ipipXmit(ns: Netns, tun: IpipLink, inner: Ipv4Packet, rr: RouteResult): void {
    const remote = tun.remote ?? rr.nexthop;
    if (remote === inner.ip.dst && !tun.remote && !rr.route.via) {
      return this.drop(
        ns,
        { reason: 'no-route', site: 'ipip_tunnel_xmit', dst: inner.ip.dst, ipip: 'no-gateway' },
        tun.name,
      );
    }
    const bytes = WireBytes.ip(inner);
    this.capture(ns, tun, 'out', bytes);
    this.step(ns, 'xmit', 3, 'tx', { type: 'xmit-ip', pkt: inner }, { device: tun.name, wire: bytes });
    tun.stats.txPackets++;
    tun.stats.txBytes += bytes.length;
    const pre = this.routeOutput(ns, remote);
    const src = tun.local ?? (pre && !('error' in pre) ? pre.src : undefined) ?? '0.0.0.0';
    const outer: Ipv4Packet = {
      kind: 'ipv4',
      ip: {
        src,
        dst: remote,
        protocol: IPPROTO_IPIP,
        ttl: tun.ttl || inner.ip.ttl,
        id: 0,
        df: tun.pmtudisc || inner.ip.df,
        mf: false,
        fragOffset: 0,
        tos: inner.ip.tos,
      },
      payload: { kind: 'ipip', inner },
    };
    this.step(
      ns,
      'encap',
      3,
      'encapsulate',
      { type: 'encap-ipip', local: src, remote, route: rr.route },
      { device: tun.name },
    );
    this.tunnelOut(ns, outer, undefined);
  }

  /* ------------------------------------------------------------ IP receive */

  /** ip_rcv → PREROUTING → ip_rcv_finish (route input) */
  ipRcv(ns: Netns, dev: Link, skb: Skb): void {
    skb.iif = dev.name;
    const pkt = skb.pkt;
    if (pkt.ip.ttl === 0) return this.drop(ns, { reason: 'ttl-exceeded', site: 'ip_rcv', ttl: 0 }, dev.name);
    // nf_defrag_ipv4: with conntrack on, fragments are reassembled before PREROUTING
    if ((pkt.ip.mf || pkt.ip.fragOffset) && this.conntrackOn(ns)) {
      const whole = this.reassemble(ns, skb.pkt);
      if (!whole) return;
      skb.pkt = whole.pkt;
      skb.fragMax = whole.max;
    }
    if (!skb.prerouted && !this.netfilterHook(ns, 'PREROUTING', skb, dev.name, undefined)) return;
    const dst = skb.pkt.ip.dst;
    const localDev = ns.localAddress(dst);
    if (localDev) {
      if (!this.rpCheck(ns, dev, skb.pkt)) return;
      this.step(
        ns,
        'route',
        3,
        'lookup',
        { type: 'route-local', dst, dev: localDev.name, via: 'input' },
        { device: dev.name },
      );
      return this.localIn(ns, dev, skb);
    }
    // ip_route_input_slow: IN_DEV_FORWARD(in_dev), the input device's own forwarding
    if (!ns.forwarding(dev.name)) {
      this.mib(ns, 'IpInAddrErrors');
      return this.drop(ns, { reason: 'forwarding-disabled', site: 'ip_route_input_slow', dst }, dev.name);
    }
    const rr = this.routeOutput(ns, dst);
    // the best match sends nothing: fib_lookup's error is the type's (fib_props), and ip_error
    // discards a blackhole's packet silently (EINVAL: no ICMP, no IpExtInNoRoutes), answers an
    // unreachable one with host unreachable (EHOSTUNREACH), a prohibit one with code 13 (EACCES)
    const dead = rr ? undefined : ns.fib.lookup(ip4ToInt(dst), this.usable(ns));
    if (dead && dead.type !== 'unicast') {
      this.step(
        ns,
        'route',
        3,
        'lookup',
        { type: 'route-miss', dst, input: true, route: { ...dead } },
        { device: dev.name },
      );
      this.drop(ns, { reason: 'no-route', site: 'ip_route_input_slow', dst, route: { ...dead } }, dev.name);
      if (dead.type === 'blackhole') return;
      const [code, kind] =
        dead.type === 'unreachable' ? [1, 'host-unreachable' as const] : [13, 'admin-prohibited' as const];
      if (ipErrorAllow(ns, skb.pkt.ip.src, this.w.now))
        this.icmpError(ns, skb.pkt, 3, code, undefined, kind, undefined, skb.ct);
      else this.icmpLimited(ns, skb.pkt.ip.src, kind, 'route');
      return;
    }
    if (!rr || 'error' in rr) {
      this.step(ns, 'route', 3, 'lookup', { type: 'route-miss', dst, input: true }, { device: dev.name });
      this.mib(ns, 'IpExtInNoRoutes');
      this.drop(ns, { reason: 'no-route', site: 'ip_route_input_slow', dst }, dev.name);
      // ip_error: the net unreachable only when the sender's peer has a token left
      if (ipErrorAllow(ns, skb.pkt.ip.src, this.w.now))
        this.icmpError(ns, skb.pkt, 3, 0, undefined, 'net-unreachable', undefined, skb.ct);
      else this.icmpLimited(ns, skb.pkt.ip.src, 'net-unreachable', 'route');
      return;
    }
    if (!this.rpCheck(ns, dev, skb.pkt)) return;
    this.routeStep(ns, dst, rr);
    this.forward(ns, dev, skb, rr);
  }

  /** fib_validate_source: strict (1) needs the reverse route out of the ingress device, loose (2) any route */
  private rpCheck(ns: Netns, dev: Link, pkt: Ipv4Packet): boolean {
    const mode = ns.rpFilter(dev.name);
    if (mode === 0) return true;
    const back = ns.fib.lookup(ip4ToInt(pkt.ip.src), this.usable(ns));
    const ok = mode === 1 ? back?.dev === dev.name : !!back;
    if (ok) return true;
    this.step(
      ns,
      'route',
      3,
      'rp_filter',
      { type: 'rp-filter', src: pkt.ip.src, back, iif: dev.name },
      { device: dev.name },
    );
    this.mib(ns, 'TcpExtIPReversePathFilter');
    this.drop(ns, { reason: 'rp-filter', site: 'fib_validate_source', mode, src: pkt.ip.src }, dev.name);
    return false;
  }

  /** ip_forward */
  private forward(ns: Netns, dev: Link, skb: Skb, rr: RouteResult): void {
    const pkt = skb.pkt;
    if (pkt.ip.ttl <= 1) {
      this.mib(ns, 'IpInHdrErrors');
      this.drop(ns, { reason: 'ttl-exceeded', site: 'ip_forward', ttl: pkt.ip.ttl }, dev.name);
      this.icmpError(ns, pkt, 11, 0, undefined, 'time-exceeded', undefined, skb.ct);
      return;
    }
    const len = ipv4Length(pkt);
    const mtu = rr.dev.mtu;
    if (len > mtu && pkt.ip.df) {
      this.step(
        ns,
        'mtu',
        3,
        'check',
        { type: 'mtu', len, mtu, dev: rr.dev.name, site: 'ip_forward' },
        { device: rr.dev.name },
      );
      this.mib(ns, 'IpFragFails');
      this.drop(ns, { reason: 'mtu-exceeded', site: 'ip_forward', len, mtu }, rr.dev.name);
      this.icmpError(ns, pkt, 3, 4, mtu, 'fragmentation-needed', undefined, skb.ct);
      return;
    }
    const fwd: Ipv4Packet = { ...pkt, ip: { ...pkt.ip, ttl: pkt.ip.ttl - 1 } };
    skb.pkt = fwd;
    this.step(
      ns,
      'forward',
      3,
      'forward',
      { type: 'forward', pkt: fwd, iif: dev.name, oif: rr.dev.name, ttl: pkt.ip.ttl },
      { device: rr.dev.name },
    );
    if (!this.netfilterHook(ns, 'FORWARD', skb, dev.name, rr.dev.name)) return;
    this.postRouting(ns, skb, rr);
  }

  /** ip_local_deliver: INPUT hook, then the protocol handler (tunnels, sockets) */
  private localIn(ns: Netns, dev: Link, skb: Skb): void {
    let pkt = skb.pkt;
    if (pkt.ip.mf || pkt.ip.fragOffset) {
      const whole = this.reassemble(ns, pkt);
      if (!whole) return;
      pkt = skb.pkt = whole.pkt;
    }
    if (!this.netfilterHook(ns, 'INPUT', skb, dev.name, undefined)) return;
    // the INPUT hook confirmed the entry; the nat of the source may have rewritten the packet
    pkt = skb.pkt;
    const p = pkt.payload;
    if (p.kind === 'udp' && p.payload.kind === 'vxlan') {
      // (a loop, not a find over a copy of the links: every VXLAN packet received asks)
      for (const l of ns.links.values())
        if (l.type === 'vxlan' && l.dstport === p.udp.dstPort && (l.local === pkt.ip.dst || !l.local))
          return this.vxlanRcv(ns, l, pkt, p.payload.vxlan.vni, p.payload.frame);
    }
    if (p.kind === 'ipip') {
      for (const l of ns.links.values())
        if (l.type === 'ipip' && l.up) return this.ipipRcv(ns, l, pkt, p.inner);
      this.drop(ns, { reason: 'port-unreachable', site: 'ip_local_deliver', ipip: true }, dev.name);
      this.icmpError(ns, pkt, 3, 2, undefined, 'protocol-unreachable');
      return;
    }
    if (!this.transport) return this.deliver(ns, dev.name, ns.name, { what: 'local' });
    this.transport.receive(ns, dev, pkt);
  }

  private vxlanRcv(ns: Netns, vx: VxlanLink, outer: Ipv4Packet, vni: number, inner: Frame): void {
    if (vni !== vx.vni)
      return this.drop(
        ns,
        { reason: 'port-unreachable', site: 'vxlan_rcv', vni: { got: vni, dev: vx.vni } },
        vx.name,
      );
    if (!vx.up) return this.drop(ns, { reason: 'link-down', site: 'vxlan_rcv' }, vx.name, 2);
    this.step(
      ns,
      'decap',
      3,
      'decapsulate',
      {
        type: 'decap-vxlan',
        outerSrc: outer.ip.src,
        outerDst: outer.ip.dst,
        dport: vx.dstport,
        vni,
        innerSrc: inner.eth.src,
        innerDst: inner.eth.dst,
      },
      { device: vx.name },
    );
    this.w.tick(HOP_US);
    this.netifReceive(ns, vx, inner, WireBytes.frame(inner));
  }

  private ipipRcv(ns: Netns, tun: IpipLink, outer: Ipv4Packet, inner: Ipv4Packet): void {
    this.step(
      ns,
      'decap',
      3,
      'decapsulate',
      { type: 'decap-ipip', outerSrc: outer.ip.src, outerDst: outer.ip.dst, inner },
      { device: tun.name },
    );
    const bytes = WireBytes.ip(inner);
    this.capture(ns, tun, 'in', bytes);
    tun.stats.rxPackets++;
    tun.stats.rxBytes += bytes.length;
    this.step(ns, 'rx', 3, 'rx', { type: 'rx-ip', pkt: inner }, { device: tun.name, wire: bytes });
    this.ipRcv(ns, tun, newSkb(inner));
  }

  private reassemble(ns: Netns, frag: Ipv4Packet): { pkt: Ipv4Packet; max: number } | undefined {
    const key = `${ns.name}|${frag.ip.src}|${frag.ip.dst}|${frag.ip.id}|${frag.ip.protocol}`;
    const held = this.defrag.get(key) ?? [];
    held.push(frag);
    const total = held.find((f) => !f.ip.mf);
    const have = held.reduce((n, f) => n + ipv4Length(f) - 20, 0);
    if (!total || have < total.ip.fragOffset + ipv4Length(total) - 20) {
      this.defrag.set(key, held);
      this.step(ns, 'defrag', 3, 'hold', { type: 'defrag-hold', offset: frag.ip.fragOffset, id: frag.ip.id });
      return undefined;
    }
    this.defrag.delete(key);
    const whole = reassembleIpv4(held);
    // from here on the datagram travels whole
    this.w.rec.part = undefined;
    this.step(ns, 'defrag', 3, 'reassemble', {
      type: 'defrag',
      count: held.length,
      id: frag.ip.id,
      len: ipv4Length(whole),
    });

    return { pkt: whole, max: Math.max(...held.map(ipv4Length)) };
  }

  /* ------------------------------------------------------------ netfilter + conntrack */

  conntrackOn(ns: Netns): boolean {
    return ns.netfilter.usesConntrack();
  }

  /**
   * Draws of `-m statistic --mode random` pinned per rule ("NETNS TABLE CHAIN INDEX" → u32): how
   * a walk takes one branch of a random choice (trace --endpoint). Empty: every flow draws its own
   * numbers.
   */
  readonly pins = new Map<string, number>();

  /** what netfilter's hooks need of the datapath */
  private readonly hookEnv: HookEnv = {
    now: () => this.w.now,
    random: (...parts: (string | number)[]) => this.w.derive('netfilter', ...parts),
    pinned: (ns, table, chain, index) =>
      this.pins.size ? this.pins.get(`${ns.name} ${table} ${chain} ${index}`) : undefined,
    conntrackOn: (ns: Netns) => this.conntrackOn(ns),
  };

  private readonly hookPlace: HookPlace = { iif: undefined, oif: undefined, nexthop: undefined, len: 0 };

  /** nf_hook_slow: the hook's tables in priority order, conntrack and NAT (netfilter/hooks.ts) */
  private netfilterHook(
    ns: Netns,
    hook: Hook,
    skb: Skb,
    iif?: string,
    oif?: string,
    nexthop?: string,
  ): boolean {
    // no table in the namespace: no hook, no conntrack, nothing to run
    const plan = planOf(ns.netfilter);
    if (!skb.ct && !plan.active) return true;
    // (one place for every run: a run keeps nothing of it once it returns)
    const at = this.hookPlace;
    at.iif = iif;
    at.oif = oif;
    at.nexthop = nexthop;
    at.len = ipv4Length(skb.pkt);
    const r = runHook(ns, hook, skb, at, this.hookEnv, plan);
    for (const ev of r.events) this.netfilterStep(ns, ev, iif ?? oif);
    if (r.verdict === 'ACCEPT') return true;
    const decision = nfDecision(ns, r.by!);
    const target = r.by!.decided?.rule.target;
    if (r.verdict === 'REJECT' && target?.kind === 'REJECT') {
      this.drop(ns, { reason: 'filtered', site: 'nf_hook_slow', ...decision }, iif ?? oif);
      if (target.with !== 'tcp-reset') {
        this.icmpError(ns, skb.pkt, 3, REJECT_CODE[target.with], undefined, 'reject', target.with, skb.ct);
      } else {
        const rst = resetFor(skb.pkt, Number(ns.sysctl.get('net.ipv4.ip_default_ttl') ?? 64));
        if (rst) this.queue.push({ ns: ns.name, pkt: rst, role: { kind: 'rst' }, ct: attachedCt(skb.ct) });
      }
    } else if (target?.kind === 'MASQUERADE')
      this.drop(ns, { reason: 'filtered', site: 'nf_hook_slow', ...decision, masqueradeFailed: true }, oif);
    else this.drop(ns, { reason: 'filtered', site: 'nf_hook_slow', ...decision }, iif ?? oif);
    return false;
  }

  /** one netfilter event as a step of the trace */
  private netfilterStep(ns: Netns, ev: NfEvent, dev?: string): void {
    // what follows only makes the step's record (nfDecision and the rest read, never write); each kind makes one
    if (!this.w.rec.keeps) return this.w.rec.passed();
    switch (ev.kind) {
      case 'conntrack': {
        const res = ev.result;
        const action = res.isNew ? 'new' : res.invalid ? 'invalid' : res.related ? 'related' : 'match';
        return this.step(ns, 'conntrack', 3, action, {
          type: 'conntrack',
          ctstate: res.ctstate,
          dir: res.dir,
          isNew: res.isNew,
          invalid: !!res.invalid,
          related: res.related || undefined,
          from: res.from,
          to: res.to,
          orig: { ...res.entry.orig },
        });
      }
      case 'traversal': {
        // a kept traversal's step event is the same for every packet that replays it
        const t = ev.traversal;
        const kept = t.kept;
        const e = kept ? (kept.step ??= { type: 'netfilter', decision: nfDecision(ns, t) }) : undefined;
        const decision = e ? e.decision : nfDecision(ns, t);
        return this.w.rec.record(
          'netfilter',
          3,
          ns.name,
          dev,
          NF_ACTION[decision.nat ?? decision.verdict],
          e ?? { type: 'netfilter', decision },
          undefined,
        );
      }
      case 'nat-setup':
        return this.step(
          ns,
          'netfilter',
          3,
          ev.setup.manip === 'dst' ? 'dnat' : 'snat',
          {
            type: 'nat-setup',
            hook: ev.hook,
            manip: ev.setup.manip,
            before: { ...ev.setup.before },
            after: { ...ev.setup.after },
            byRule: ev.byRule,
            orig: { ...ev.orig },
            reply: { ...ev.reply },
          },
          { device: dev },
        );
      case 'nat-rewrite':
        return this.step(
          ns,
          'netfilter',
          3,
          ev.manip === 'dst' ? 'dnat' : 'snat',
          {
            type: 'nat-rewrite',
            hook: ev.hook,
            manip: ev.manip,
            before: { ...ev.before },
            after: { ...ev.after },
            icmpError: ev.icmpError,
          },
          { device: dev },
        );
      case 'masquerade-failed':
        return this.step(
          ns,
          'netfilter',
          3,
          'drop',
          { type: 'masquerade-failed', hook: ev.hook },
          { device: ev.device },
        );
    }
  }

  /* ------------------------------------------------------------ ICMP errors */

  /** an ICMP error held back by a rate limit (IcmpOutRateLimitHost/Global; ip_error counts nothing) */
  private icmpLimited(ns: Netns, to: string, icmp: IcmpErrorKind, limit: 'host' | 'global' | 'route'): void {
    if (limit !== 'route') this.mib(ns, limit === 'host' ? 'IcmpOutRateLimitHost' : 'IcmpOutRateLimitGlobal');
    this.step(ns, 'icmp', 3, 'ratelimit', { type: 'icmp-ratelimited', to, icmp, limit });
  }

  /**
   * icmp_send: an error back to the packet's source, quoting its IP header and first 8 bytes.
   * Queued: the walker records it as its own trace.
   */
  icmpError(
    ns: Netns,
    offending: Ipv4Packet,
    type: number,
    code: number,
    mtu: number | undefined,
    icmp: IcmpErrorKind,
    rejectWith?: string,
    ct?: CtResult,
  ): void {
    if (offending.payload.kind === 'icmp' && ![0, 8].includes(offending.payload.icmp.type)) return; // never about an error
    if (offending.ip.fragOffset) return;
    // icmpv4_global_allow, before the route lookup (unless the offending packet came in on lo)
    const global = icmpGlobalAllow(ns, type, code, this.w.now);
    if (global === false) return this.icmpLimited(ns, offending.ip.src, icmp, 'global');
    const rr = this.routeOutput(ns, offending.ip.src);
    if (!rr) {
      this.step(ns, 'icmp', 3, 'unsent', { type: 'icmp-unsent', to: offending.ip.src, icmp, rejectWith });
      return;
    }
    if (global === 'limited') {
      // icmpv4_xrlim_allow: per destination, except towards ourselves (a loopback route)
      if (!('error' in rr) && !icmpPeerAllow(ns, offending.ip.src, this.w.now))
        return this.icmpLimited(ns, offending.ip.src, icmp, 'host');
      icmpGlobalConsume(ns);
    }
    // the offending packet was our own (a failed neighbour resolution of a local sender): the
    // error goes to ourselves through lo, from our own address, and the socket hears of it
    const src = 'error' in rr ? offending.ip.src : rr.src;
    // icmp_send quotes as much of the offending packet as fits in 576 bytes (RFC 1812)
    const whole = emitIpv4Packet(offending);
    const quoted = whole.subarray(0, Math.min(whole.length, 576 - 20 - 8));
    const pkt: Ipv4Packet = {
      kind: 'ipv4',
      ip: {
        src,
        dst: offending.ip.src,
        protocol: IPPROTO_ICMP,
        ttl: 64,
        id: 0,
        df: false,
        mf: false,
        fragOffset: 0,
        tos: 0xc0,
      },
      payload: { kind: 'icmp', icmp: { type, code, id: 0, seq: 0, mtu }, data: quoted.slice() },
    };
    pkt.ip.id = this.nextId(ns, pkt);
    // icmp_out_count: the total, the per-type IcmpMsg counter and the named one
    this.mib(ns, 'IcmpOutMsgs');
    this.mib(ns, `IcmpMsgOutType${type}`);
    if (type === 3) this.mib(ns, 'IcmpOutDestUnreachs');
    if (type === 11) this.mib(ns, 'IcmpOutTimeExcds');
    this.step(ns, 'icmp', 3, 'send', { type: 'icmp-send', to: offending.ip.src, icmp, rejectWith, mtu });
    this.queue.push({
      ns: ns.name,
      pkt,
      role: { kind: 'icmp-error', type, code, mtu, rejectWith },
      ct: attachedCt(ct),
    });
  }
}

/* ------------------------------------------------------------ helpers */

/** the route of a local destination: lo, as the local table sends it */
export function loopbackRoute(ns: Netns, dst: string, src: string): RouteResult {
  return {
    route: {
      dst: 0,
      len: 32,
      type: 'unicast',
      dev: 'lo',
      proto: 'kernel',
      scope: 'host',
      metric: 0,
      onlink: false,
    },
    dev: ns.link('lo')!,
    src,
    nexthop: dst,
  };
}

export function isMulticast(mac: MacAddr): boolean {
  // the group bit is the low bit of the first octet: of its second hex digit
  const c = mac.charCodeAt(1);
  return ((c <= 57 ? c - 48 : (c | 32) - 87) & 1) === 1;
}

export { tupleOf };

/**
 * nf_ct_attach: a packet the kernel makes about another (an ICMP error, a reject's RST) belongs
 * to that packet's connection, in the other direction, as RELATED.
 */
function attachedCt(ct: CtResult | undefined): CtResult | undefined {
  if (!ct || ct.invalid) return undefined;
  return {
    entry: ct.entry,
    dir: ct.dir === 'original' ? 'reply' : 'original',
    ctstate: 'RELATED',
    isNew: false,
    related: true,
  };
}

/**
 * Keys made once per part and kept (a key built per packet is a new string that the table must
 * flatten and hash each time; one kept has its hash cached): a neighbour's `ip|dev` (Netns.nud),
 * a neighbour parameter's `net.ipv4.neigh.DEV.NAME`
 */
function keptKey(
  kept: Map<string, Map<string, string>>,
  a: string,
  b: string,
  make: (a: string, b: string) => string,
): string {
  let m = kept.get(b);
  if (!m) kept.set(b, (m = new Map()));
  let k = m.get(a);
  if (k === undefined) m.set(a, (k = make(a, b)));
  return k;
}
const nudKeys = new Map<string, Map<string, string>>();
const makeNudKey = (ip: string, dev: string) => `${ip}|${dev}`;
const nudKey = (ip: string, dev: string) => keptKey(nudKeys, ip, dev, makeNudKey);
const neighKeys = new Map<string, Map<string, string>>();
const makeNeighKey = (dev: string, name: string) => `net.ipv4.neigh.${dev}.${name}`;
const neighKey = (dev: string, name: string) => keptKey(neighKeys, dev, name, makeNeighKey);

/** each device's capture points, by direction and promiscuity (in, out, promiscuous in, promiscuous out) */
const capturePoints = new WeakMap<Link, CapturePoint[]>();
function capturePoint(ns: Netns, dev: Link, dir: 'in' | 'out', promisc: boolean): CapturePoint {
  let points = capturePoints.get(dev);
  if (!points) capturePoints.set(dev, (points = []));
  const i = (dir === 'out' ? 1 : 0) + (promisc ? 2 : 0);
  const p = points[i];
  // (a device renamed or moved to another namespace since: a point of its own now)
  if (p && p.netns === ns.name && p.dev === dev.name) return p;
  return (points[i] = { netns: ns.name, dev: dev.name, dir, promisc });
}

/** a bridge's ports, in the order the namespace has its links */
function portsOf(ns: Netns, br: Link): Link[] {
  const out: Link[] = [];
  for (const l of ns.links.values()) if (l.master === br.name) out.push(l);
  return out;
}

/** should_deliver: never back out of the port it came in by, unless that port is in hairpin mode */
function shouldDeliver(p: Link, inPort: Link | undefined): boolean {
  return p !== inPort || !!p.hairpin;
}

/**
 * The flow hash, symmetric (flow_hash_from_keys orders the endpoints: both directions share it):
 * w.derive(what, KEY), KEY being `PROTO|A|B` with A and B the ends `ADDR:PORT` of the packet's
 * conntrack tuple in string order, hashed piece by piece, without making KEY (every VXLAN packet
 * hashed its flow's four strings)
 */
/**
 * udp_flow_src_port as vxlan_xmit calls it: a hash of the inner flow (of the frame's addresses when
 * it carries no IPv4 packet), scaled into the device's source port range
 */
export function vxlanSourcePort(
  w: World,
  range: Pick<VxlanLink, 'srcPortMin' | 'srcPortMax'>,
  frame: Pick<Frame, 'eth' | 'payload'>,
): number {
  const h =
    frame.payload.kind === 'ipv4'
      ? flowHash(w, 'vxlan-sport', frame.payload)
      : w.derive('vxlan-sport', frame.eth.src + frame.eth.dst);
  return portIn(range, h);
}

/** vxlanSourcePort of a TCP or UDP inner packet given as its tuple (the flow cache's replay: no packet made) */
export function vxlanTuplePort(
  w: World,
  range: Pick<VxlanLink, 'srcPortMin' | 'srcPortMax'>,
  proto: number,
  src: string,
  sport: number,
  dst: string,
  dport: number,
): number {
  return portIn(range, tupleHash(w, 'vxlan-sport', proto, src, sport, dst, dport));
}

/**
 * vxlanTuplePort of one flow for any source port (the flow cache's replay: a walk's VXLAN source
 * port): the hash of what comes before the source port in the key taken once, when the addresses
 * alone order the key's ends (neither is the start of the other) and the port is an integer
 */
export function vxlanPortsOf(
  w: World,
  range: Pick<VxlanLink, 'srcPortMin' | 'srcPortMax'>,
  proto: number,
  src: string,
  dst: string,
  dport: number,
): (sport: number) => number {
  const whole = (sport: number) => vxlanTuplePort(w, range, proto, src, sport, dst, dport);
  if (src === dst || src.startsWith(dst) || dst.startsWith(src)) return whole;
  const dp = String(dport);
  const start = fnv1aChar(0x7c, fnv1a(String(proto), w.deriveStart('vxlan-sport')));
  if (src < dst) {
    // PROTO|SRC:SPORT|DST:DPORT
    const before = fnv1aChar(0x3a, fnv1a(src, start));
    return (sport) =>
      isPort(sport)
        ? portIn(range, fmix32(hashEnd(fnv1aChar(0x7c, fnv1aUint(sport, before)), dst, dp)))
        : whole(sport);
  }
  // PROTO|DST:DPORT|SRC:SPORT
  const before = fnv1aChar(0x3a, fnv1a(src, fnv1aChar(0x7c, hashEnd(start, dst, dp))));
  return (sport) => (isPort(sport) ? portIn(range, fmix32(fnv1aUint(sport, before))) : whole(sport));
}

/** udp_flow_src_port's scaling of a hash into the port range */
function portIn(range: Pick<VxlanLink, 'srcPortMin' | 'srcPortMax'>, h: number): number {
  return range.srcPortMin + (h % (range.srcPortMax - range.srcPortMin + 1));
}

export function flowHash(w: World, what: string, p: Ipv4Packet): number {
  const pl = p.payload;
  // the tuple's protocol and ports (tupleOf): ports for TCP and UDP, 0 for the rest
  const proto =
    pl.kind === 'tcp'
      ? IPPROTO_TCP
      : pl.kind === 'udp'
        ? IPPROTO_UDP
        : pl.kind === 'icmp'
          ? IPPROTO_ICMP
          : p.ip.protocol;
  const sport = pl.kind === 'tcp' ? pl.tcp.srcPort : pl.kind === 'udp' ? pl.udp.srcPort : 0;
  const dport = pl.kind === 'tcp' ? pl.tcp.dstPort : pl.kind === 'udp' ? pl.udp.dstPort : 0;
  return tupleHash(w, what, proto, p.ip.src, sport, p.ip.dst, dport);
}

/**
 * flowHash of a flow given as its tuple (the protocol number, the addresses and ports)
 */
function tupleHash(
  w: World,
  what: string,
  proto: number,
  src: string,
  sportN: number,
  dst: string,
  dportN: number,
): number {
  const sport = String(sportN);
  const dport = String(dportN);
  const srcFirst = endBefore(src, sport, dst, dport);
  let h = fnv1aChar(0x7c, fnv1a(String(proto), w.deriveStart(what)));
  h = srcFirst ? hashEnd(h, src, sport) : hashEnd(h, dst, dport);
  h = fnv1aChar(0x7c, h);
  h = srcFirst ? hashEnd(h, dst, dport) : hashEnd(h, src, sport);
  return fmix32(h);
}

/** FNV-1a over `ADDR:PORT` */
function hashEnd(h: number, addr: string, port: string): number {
  return fnv1a(port, fnv1aChar(0x3a, fnv1a(addr, h)));
}

/** `${a1}:${p1}` < `${a2}:${p2}` (JavaScript's string order, by UTF-16 code units), the strings not made */
function endBefore(a1: string, p1: string, a2: string, p2: string): boolean {
  // addresses that differ before either ends decide alone (the common case: two hosts)
  if (a1 !== a2 && !a1.startsWith(a2) && !a2.startsWith(a1)) return a1 < a2;
  const n1 = a1.length + 1 + p1.length;
  const n2 = a2.length + 1 + p2.length;
  const n = Math.min(n1, n2);
  for (let i = 0; i < n; i++) {
    const c1 = i < a1.length ? a1.charCodeAt(i) : i === a1.length ? 0x3a : p1.charCodeAt(i - a1.length - 1);
    const c2 = i < a2.length ? a2.charCodeAt(i) : i === a2.length ? 0x3a : p2.charCodeAt(i - a2.length - 1);
    if (c1 !== c2) return c1 < c2;
  }
  return n1 < n2;
}

export { intToIp4 };

/** a netfilter step's action: what decided, in lower case */
const NF_ACTION = {
  ACCEPT: 'accept',
  DROP: 'drop',
  REJECT: 'reject',
  DNAT: 'dnat',
  SNAT: 'snat',
  MASQUERADE: 'masquerade',
} as const;

/**
 * the typed record of a table's traversal: the rules that matched and what decided (a kept
 * traversal's, made once: it is the same for every packet that replays it, within its rule set)
 */
export function nfDecision(ns: Netns, t: Traversal): NfDecision {
  const kept = t.kept;
  return kept ? (kept.decision ??= decisionOf(ns, t)) : decisionOf(ns, t);
}

function decisionOf(ns: Netns, t: Traversal): NfDecision {
  const d = t.decided;
  const target = d?.rule.target;
  const nat =
    target && (target.kind === 'DNAT' || target.kind === 'SNAT' || target.kind === 'MASQUERADE')
      ? target.kind
      : undefined;
  return {
    table: t.table,
    hook: t.hook,
    verdict: t.verdict,
    path: t.path.map((p) => ({ chain: p.chain, index: p.index })),
    rule: d ? { chain: d.chain, index: d.index, rule: d.rule } : undefined,
    policy: d
      ? undefined
      : { chain: t.chain, policy: ns.netfilter.chain(t.table, t.chain)?.policy ?? 'ACCEPT' },
    rejectWith: target?.kind === 'REJECT' ? target.with : undefined,
    nat,
    choice: randomChoice(ns.netfilter, t),
  };
}
