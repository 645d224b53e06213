/**
 * Calico's node-to-node BGP mesh, as BIRD runs it: every node peers with every other (iBGP,
 * AS 64512), originates its pod CIDR, and installs each prefix learned over an Established
 * session into the kernel as `proto bird`. iBGP next hops that are not on a connected subnet are
 * resolved recursively through the kernel table (`gateway recursive`), as Calico's bird.cfg does.
 */
import { inPrefix, ip4ToInt } from '../wire/addr.ts';
import type { PeerRoute, PeerState } from './fsm.ts';
import type { BgpAttr } from '../wire/bgp.ts';
import { calicoPeerings, type Peering } from './peering.ts';

export interface BgpSession {
  a: string;
  b: string;
  /** Established when both sides are; otherwise the state of the side that is not (a's first) */
  state: PeerState;
  /** each side's FSM state, by node, once the sessions run over the datapath (session.ts) */
  sides?: Record<string, PeerState>;
  /** µs of the last state change */
  since: number;
  /**
   * the nodes whose BIRD has the session disabled (`birdc disable`, one side or both): such a side
   * sends nothing, the other side's connections fail
   */
  disabledBy?: readonly string[];
}

export interface BgpSpeaker {
  node: string;
  ip: string;
  /** prefix length of the node's underlay subnet */
  len: number;
  originates: string[];
}

export interface LearnedRoute {
  prefix: string;
  /** BGP next hop: the originating node's address */
  nextHop: string;
  /** the peer it was learned from */
  from: string;
  /** BIRD's protocol it was learned over (Mesh_…, Node_…, Global_…) */
  proto: string;
  /** whether the next hop is on one of our connected subnets (direct) or resolved via a gateway */
  direct: boolean;
  /** the origin AS, the last of AS_PATH (as_path_get_last); none for a route of our own AS */
  originAs?: number;
  /** ORIGIN: 'i', 'e' or '?' as birdc prints it */
  origin: 'i' | 'e' | '?';
  /** the path attributes it was received with (sessions over the datapath) */
  attrs?: readonly BgpAttr[];
}

/**
 * bgp_rte_better's key, smaller is better: LOCAL_PREF (negated; a route learned over eBGP has
 * BIRD's default 100, its own discarded), AS_PATH length, ORIGIN, eBGP before iBGP, the IGP
 * metric of the next hop (0 on a direct subnet, unknown through a gateway), ORIGINATOR_ID (else
 * the peer's BGP identifier), CLUSTER_LIST length, the peer's address. MULTI_EXIT_DISC is left
 * out: no route carries one (Calico's filters set none, and BIRD sends none to an eBGP peer
 * unless a filter set it).
 */
type RankKey = [number, number, number, number, number, number, number, number];

const ORIGIN_CHAR = { igp: 'i', egp: 'e', incomplete: '?' } as const;

export class Mesh {
  /** every session, once per pair of nodes that peer, in the order the first side configures it */
  readonly sessions: BgpSession[] = [];
  private readonly pairs = new Map<string, BgpSession>();
  /** per speaker (by index), its BGP protocols in configuration order: each node's share O(its peers) */
  private readonly bySpeaker: { peer: BgpSpeaker; session: BgpSession; peering: Peering }[][];
  private readonly index = new Map<string, number>();
  /** the speakers' addresses as numbers (is a peer on my subnet?) */
  private readonly addr: Map<BgpSpeaker, number>;
  /**
   * Adj-RIB-In of each side (`node\0peer`) when the sessions run over the datapath (session.ts
   * keeps it); without it, an Established session carries the peer's originated prefixes
   */
  readonly ribIn = new Map<string, ReadonlyMap<string, PeerRoute>>();
  /** whether the sessions run over the datapath (ribIn is what was received) */
  driven = false;

  constructor(
    readonly speakers: BgpSpeaker[],
    down: { a: string; b: string }[] = [],
    /** each node's protocols (peering.ts); default: the full node-to-node mesh */
    peerings: Map<string, Peering[]> = calicoPeerings(
      speakers.map((s) => ({ name: s.node, addr: s.ip })),
      undefined,
    ),
  ) {
    speakers.forEach((sp, i) => this.index.set(sp.node, i));
    this.addr = new Map(speakers.map((sp) => [sp, ip4ToInt(sp.ip)]));
    const isDown = new Set(down.flatMap((d) => [`${d.a}\0${d.b}`, `${d.b}\0${d.a}`]));
    this.bySpeaker = speakers.map(() => []);
    speakers.forEach((sp, i) => {
      for (const p of peerings.get(sp.node) ?? []) {
        const j = this.index.get(p.peerNode);
        if (j === undefined) continue;
        const [a, b] = i < j ? [sp.node, p.peerNode] : [p.peerNode, sp.node];
        let s = this.pairs.get(`${a}\0${b}`);
        if (!s) {
          s = { a, b, state: isDown.has(`${a}\0${b}`) ? 'Active' : 'Established', since: 0 };
          this.pairs.set(`${a}\0${b}`, s);
          this.sessions.push(s);
        }
        this.bySpeaker[i].push({ peer: speakers[j], session: s, peering: p });
      }
    });
  }

  session(a: string, b: string): BgpSession | undefined {
    return this.pairs.get(`${a}\0${b}`) ?? this.pairs.get(`${b}\0${a}`);
  }

  /** one side's FSM changed state (session.ts): the pair's state follows */
  sideChanged(node: string, peer: string, to: PeerState, now: number): void {
    const s = this.session(node, peer);
    if (!s) return;
    const sides = (s.sides ??= { [s.a]: 'Idle', [s.b]: 'Idle' });
    sides[node] = to;
    const state =
      sides[s.a] === 'Established' && sides[s.b] === 'Established'
        ? 'Established'
        : sides[s.a] !== 'Established'
          ? sides[s.a]
          : sides[s.b];
    if (state !== s.state) s.since = now;
    s.state = state;
  }

  peersOf(node: string): { peer: BgpSpeaker; session: BgpSession; peering: Peering }[] {
    const i = this.index.get(node);
    return i === undefined ? [] : [...this.bySpeaker[i]];
  }

  /**
   * Adj-RIB-In of a node after convergence. Driven: what each session received (reflected routes
   * included). Not driven: each Established session carries the peer's own prefixes (a full
   * mesh: no iBGP re-advertisement). The routes of one network are together, the best first as
   * BIRD 2's bgp_rte_better ranks them (RankKey); the others follow in the order they came.
   */
  learned(node: string): LearnedRoute[] {
    const i = this.index.get(node);
    if (i === undefined) return [];
    const rank = new Map<LearnedRoute, RankKey>();
    const all = this.received(node, (r, k) => rank.set(r, k));
    const byNet = new Map<string, LearnedRoute[]>();
    for (const r of all) {
      const l = byNet.get(r.prefix);
      if (l) l.push(r);
      else byNet.set(r.prefix, [r]);
    }
    const better = (a: LearnedRoute, b: LearnedRoute) => {
      const x = rank.get(a)!;
      const y = rank.get(b)!;
      for (let k = 0; k < x.length; k++) if (x[k] !== y[k]) return x[k] < y[k];
      return false;
    };
    return [...byNet.values()].flatMap((l) => {
      const best = l.reduce((x, y) => (better(y, x) ? y : x));
      return [best, ...l.filter((r) => r !== best)];
    });
  }

  /** every route received, with its rank key */
  private received(node: string, key: (r: LearnedRoute, k: RankKey) => void): LearnedRoute[] {
    const i = this.index.get(node);
    if (i === undefined) return [];
    const me = this.speakers[i];
    const mine = this.addr.get(me)!;
    const out: LearnedRoute[] = [];
    for (const { peer, session, peering } of this.bySpeaker[i]) {
      if (this.driven) {
        const internal = peering.localAs === peering.peerAs ? 1 : 0;
        for (const r of this.ribIn.get(`${node}\0${peer.node}`)?.values() ?? []) {
          const origin = r.attrs.find((a) => a.kind === 'origin');
          const path = r.attrs.find((a) => a.kind === 'as-path');
          const lp = r.attrs.find((a) => a.kind === 'local-pref');
          const segs = path?.kind === 'as-path' ? path.segments : [];
          const last = segs[segs.length - 1];
          const l: LearnedRoute = {
            prefix: r.prefix,
            nextHop: r.nextHop,
            from: peer.node,
            proto: peering.proto,
            direct: inPrefix(mine, ip4ToInt(r.nextHop), me.len),
            ...(last?.kind === 'sequence' && last.asns.length
              ? { originAs: last.asns[last.asns.length - 1] }
              : {}),
            origin: origin?.kind === 'origin' ? ORIGIN_CHAR[origin.origin] : '?',
            attrs: r.attrs,
          };
          const oid = r.attrs.find((a) => a.kind === 'originator-id');
          const cl = r.attrs.find((a) => a.kind === 'cluster-list');
          key(l, [
            -(lp?.kind === 'local-pref' ? lp.localPref : 100),
            segs.reduce((n, g) => n + (g.kind === 'sequence' ? g.asns.length : g.kind === 'set' ? 1 : 0), 0),
            origin?.kind === 'origin' ? ['igp', 'egp', 'incomplete'].indexOf(origin.origin) : 2,
            internal,
            l.direct ? 0 : 1,
            oid?.kind === 'originator-id' ? ip4ToInt(oid.originatorId) : this.addr.get(peer)!,
            cl?.kind === 'cluster-list' ? cl.clusterList.length : 0,
            this.addr.get(peer)!,
          ]);
          out.push(l);
        }
        continue;
      }
      if (session.state !== 'Established') continue;
      const direct = inPrefix(mine, this.addr.get(peer)!, me.len);
      const internal = peering.localAs === peering.peerAs;
      for (const prefix of peer.originates) {
        const l: LearnedRoute = {
          prefix,
          nextHop: peer.ip,
          from: peer.node,
          proto: peering.proto,
          direct,
          ...(internal ? {} : { originAs: peering.peerAs }),
          origin: 'i',
        };
        key(l, [
          -100,
          internal ? 0 : 1,
          0,
          internal ? 1 : 0,
          direct ? 0 : 1,
          this.addr.get(peer)!,
          0,
          this.addr.get(peer)!,
        ]);
        out.push(l);
      }
    }
    return out;
  }
}
