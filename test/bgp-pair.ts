/** Two podwalk BGP peers (src/bgp/fsm.ts) and a wire between them, the clock driven by the test. */
import {
  newPeer,
  nextUpdate,
  peerDeadline,
  stepPeer,
  type Peer,
  type PeerAction,
  type PeerConfig,
  type PeerInput,
} from '../src/bgp/fsm.ts';
import type { BgpMessage } from '../src/wire/index.ts';

export /** Two peers and a wire between them; `cut` drops what either sends (a DROP rule on port 179). */
class Pair {
  /** called after each input a peer handled */
  onStep: (i: 0 | 1, actions: PeerAction[]) => void = () => {};
  peers: [Peer, Peer];
  sent: [BgpMessage[], BgpMessage[]] = [[], []];
  states: [string[], string[]] = [[], []];
  cut = false;
  now = 0;
  constructor(a: PeerConfig, b: PeerConfig) {
    this.peers = [newPeer(a), newPeer(b)];
  }
  private queue: [0 | 1, PeerInput][] = [];
  /** queues an input; inputs are handled one at a time, in the order they arose (as a network would) */
  feed(i: 0 | 1, input: PeerInput): void {
    this.queue.push([i, input]);
    if (this.queue.length > 1) return;
    while (this.queue.length) {
      const [j, inp] = this.queue[0];
      const { peer, actions } = stepPeer(this.peers[j], inp, this.now);
      this.peers[j] = peer;
      // then the UPDATEs its buckets hold (BIRD's tx event; this wire always takes them)
      for (let u = nextUpdate(peer, this.now); u; u = nextUpdate(peer, this.now))
        actions.push({ kind: 'send', msg: u.msg, bytes: u.bytes });
      this.run(j, actions);
      this.onStep(j, actions);
      this.queue.shift();
    }
  }
  private run(i: 0 | 1, actions: PeerAction[]): void {
    const o = (1 - i) as 0 | 1;
    for (const a of actions) {
      if (a.kind === 'state') this.states[i].push(a.to);
      if (a.kind === 'connect') {
        if (this.cut || this.peers[o].state !== 'Active') this.queue.push([i, { kind: 'tcp-failed' }]);
        else this.queue.push([i, { kind: 'tcp-connected' }], [o, { kind: 'tcp-connected' }]);
      }
      if (a.kind === 'send') {
        this.sent[i].push(a.msg);
        if (!this.cut) this.queue.push([o, { kind: 'data', data: a.bytes }]);
      }
      if (a.kind === 'close' && !this.cut) this.queue.push([o, { kind: 'tcp-closed' }]);
    }
  }
  /** runs every timer up to `t` µs, in deadline order */
  advance(t: number): void {
    for (;;) {
      const next = Math.min(...this.peers.map((p) => peerDeadline(p) ?? Infinity));
      if (next > t) break;
      this.now = next;
      for (const i of [0, 1] as const)
        if ((peerDeadline(this.peers[i]) ?? Infinity) <= next) this.feed(i, { kind: 'tick' });
    }
    this.now = t;
  }
}
