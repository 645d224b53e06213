/**
 * Calico's node-to-node BGP mesh, as BIRD runs it: every node peers with every other (iBGP,
 * AS 64512), originates its pod CIDR, and installs each prefix learned over an Established
 * session into the kernel as `proto bird`. iBGP next hops that are not on a connected subnet are
 * resolved recursively through the kernel table (`gateway recursive`), as Calico's bird.cfg does.
 */
import { inPrefix, ip4ToInt } from '../wire/addr.ts';
import type { PeerRoute, PeerState } from './fsm.ts';

export interface BgpSession {
  a: string;
  b: string;
  /** Established when both sides are; otherwise the state of the side that is not (a's first) */
  state: PeerState;
  /** each side's FSM state, by node, once the sessions run over the datapath (session.ts) */
  sides?: Record<string, PeerState>;
  /** µs of the last state change */
  since: number;
  /** the node whose BIRD has the session disabled (`birdc disable`): it sends nothing, the other side's connections are reset */
  disabledBy?: string;
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
  /** whether the next hop is on one of our connected subnets (direct) or resolved via a gateway */
  direct: boolean;
}

export class Mesh {
  /** every session of the full mesh, once per pair, in speaker order */
  readonly sessions: BgpSession[] = [];
  private readonly index = new Map<string, number>();
  /** per speaker (by index), its sessions: the mesh is n(n-1)/2 sessions, each node's share O(n) */
  private readonly bySpeaker: { peer: BgpSpeaker; session: BgpSession }[][];
  /** the speakers' addresses as numbers (is a peer on my subnet?) */
  private readonly addr: Map<BgpSpeaker, number>;
  /**
   * Adj-RIB-In of each side (`node\0peer`) when the sessions run over the datapath (session.ts
   * keeps it); without it, an Established session carries the peer's originated prefixes
   */
  readonly ribIn = new Map<string, PeerRoute[]>();
  /** whether the sessions run over the datapath (ribIn is what was received) */
  driven = false;

  constructor(
    readonly speakers: BgpSpeaker[],
    down: { a: string; b: string }[] = [],
  ) {
    speakers.forEach((sp, i) => this.index.set(sp.node, i));
    this.addr = new Map(speakers.map((sp) => [sp, ip4ToInt(sp.ip)]));
    const isDown = new Set(down.flatMap((d) => [`${d.a}\0${d.b}`, `${d.b}\0${d.a}`]));
    this.bySpeaker = speakers.map(() => []);
    for (let i = 0; i < speakers.length; i++)
      for (let j = i + 1; j < speakers.length; j++) {
        const a = speakers[i].node;
        const b = speakers[j].node;
        const s: BgpSession = { a, b, state: isDown.has(`${a}\0${b}`) ? 'Active' : 'Established', since: 0 };
        this.sessions.push(s);
        this.bySpeaker[i].push({ peer: speakers[j], session: s });
        this.bySpeaker[j].push({ peer: speakers[i], session: s });
      }
  }

  session(a: string, b: string): BgpSession | undefined {
    const i = this.index.get(a);
    const j = this.index.get(b);
    if (i === undefined || j === undefined || i === j) return undefined;
    // bySpeaker[i] lists the peers in speaker order, without i itself
    return this.bySpeaker[i][j < i ? j : j - 1].session;
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

  peersOf(node: string): { peer: BgpSpeaker; session: BgpSession }[] {
    const i = this.index.get(node);
    return i === undefined ? [] : [...this.bySpeaker[i]];
  }

  /** Adj-RIB-In of a node after convergence: in a full mesh, only direct sessions carry routes (no iBGP re-advertisement). */
  learned(node: string): LearnedRoute[] {
    const i = this.index.get(node);
    if (i === undefined) return [];
    const me = this.speakers[i];
    const mine = this.addr.get(me)!;
    const out: LearnedRoute[] = [];
    for (const { peer, session } of this.bySpeaker[i]) {
      if (this.driven) {
        for (const r of this.ribIn.get(`${node}\0${peer.node}`) ?? [])
          out.push({
            prefix: r.prefix,
            nextHop: r.nextHop,
            from: peer.node,
            direct: inPrefix(mine, ip4ToInt(r.nextHop), me.len),
          });
        continue;
      }
      if (session.state !== 'Established') continue;
      const direct = inPrefix(mine, this.addr.get(peer)!, me.len);
      for (const prefix of peer.originates) out.push({ prefix, nextHop: peer.ip, from: peer.node, direct });
    }
    return out;
  }
}
