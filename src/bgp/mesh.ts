/**
 * Calico's node-to-node BGP mesh, as BIRD runs it: every node peers with every other (iBGP,
 * AS 64512), originates its pod CIDR, and installs each prefix learned over an Established
 * session into the kernel as `proto bird`. iBGP next hops that are not on a connected subnet are
 * resolved recursively through the kernel table (`gateway recursive`), as Calico's bird.cfg does.
 */
import { inPrefix } from '../wire/addr.ts';

export interface BgpSession {
  a: string;
  b: string;
  state: 'Established' | 'Idle' | 'Active' | 'Connect';
  /** µs of the last state change */
  since: number;
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
  readonly sessions: BgpSession[] = [];

  constructor(
    readonly speakers: BgpSpeaker[],
    down: { a: string; b: string }[] = [],
  ) {
    for (let i = 0; i < speakers.length; i++)
      for (let j = i + 1; j < speakers.length; j++) {
        const a = speakers[i].node;
        const b = speakers[j].node;
        const isDown = down.some((d) => (d.a === a && d.b === b) || (d.a === b && d.b === a));
        this.sessions.push({ a, b, state: isDown ? 'Active' : 'Established', since: 0 });
      }
  }

  session(a: string, b: string): BgpSession | undefined {
    return this.sessions.find((s) => (s.a === a && s.b === b) || (s.a === b && s.b === a));
  }

  peersOf(node: string): { peer: BgpSpeaker; session: BgpSession }[] {
    const out: { peer: BgpSpeaker; session: BgpSession }[] = [];
    for (const s of this.sessions) {
      if (s.a !== node && s.b !== node) continue;
      const other = s.a === node ? s.b : s.a;
      out.push({ peer: this.speakers.find((p) => p.node === other)!, session: s });
    }
    return out;
  }

  /** Adj-RIB-In of a node after convergence: in a full mesh, only direct sessions carry routes (no iBGP re-advertisement). */
  learned(node: string): LearnedRoute[] {
    const me = this.speakers.find((s) => s.node === node);
    if (!me) return [];
    const out: LearnedRoute[] = [];
    for (const { peer, session } of this.peersOf(node)) {
      if (session.state !== 'Established') continue;
      const direct = inPrefix(me.ip, peer.ip, me.len);
      for (const prefix of peer.originates) out.push({ prefix, nextHop: peer.ip, from: peer.node, direct });
    }
    return out;
  }
}
