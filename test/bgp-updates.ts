/**
 * What a speaker sent on its BGP sessions, read from captured frames the way a reader of the
 * capture reads them: per session direction, the TCP stream reassembled in sequence order
 * (a retransmitted segment counted once), cut into BGP messages with the codec the two OPENs
 * negotiate (src/wire/bgp.ts); per message its type and, for an UPDATE, how many routes it
 * withdraws and announces; per segment its payload octets and the messages that begin in it.
 * Shared by scripts/record-bird-updates.ts (real BIRD's frames, from the lab's pcaps) and
 * test/rr-updates.test.ts (the model's frames, from its captures).
 */
import { bgpCodecFor, parseBgp, bgpFrameLength, type BgpOpen } from '../src/wire/bgp.ts';
import type { Frame } from '../src/wire/types.ts';

export interface StreamSummary {
  /** each message in order: `O` OPEN, `K` KEEPALIVE, `N` NOTIFICATION, `E` End-of-RIB, `U w/n` an UPDATE withdrawing w and announcing n routes */
  messages: string[];
  /** per TCP segment with payload, in order: [payload octets, messages that begin in it] */
  segments: [number, number][];
}

interface Stream {
  from: string;
  to: string;
  segs: { seq: number; data: Uint8Array }[];
}

/**
 * `frames`: every frame the nodes sent (each from its own eth0; what is not TCP to or from port
 * 179 is passed over); `nodes`: name and address.
 * Keys are `from>to` by node name; a second connection between the same two nodes in the same
 * direction gets `#2`, and so on, in the order their first segments came.
 */
export function bgpStreamSummary(
  frames: readonly Frame[],
  nodes: readonly { name: string; addr: string }[],
): Record<string, StreamSummary> {
  const byAddr = new Map(nodes.map((n) => [n.addr, n.name]));
  const streams = new Map<string, Stream>();
  for (const f of frames) {
    const p = f.payload;
    if (p.kind !== 'ipv4' || p.payload.kind !== 'tcp') continue;
    const t = p.payload;
    if (t.tcp.srcPort !== 179 && t.tcp.dstPort !== 179) continue;
    if (!t.data.length) continue;
    const key = `${p.ip.src}:${t.tcp.srcPort}>${p.ip.dst}:${t.tcp.dstPort}`;
    let s = streams.get(key);
    if (!s) {
      const from = byAddr.get(p.ip.src);
      const to = byAddr.get(p.ip.dst);
      if (!from || !to) continue;
      streams.set(key, (s = { from, to, segs: [] }));
    }
    s.segs.push({ seq: t.tcp.seq, data: t.data });
  }
  // the OPEN each side sent on each connection (the codec of a direction needs both)
  const opens = new Map<string, BgpOpen>();
  const firstOpen = (s: Stream): BgpOpen | undefined => {
    const d = s.segs[0]?.data;
    if (!d) return undefined;
    const n = bgpFrameLength(d, 0, d.length);
    if (n === undefined) return undefined;
    const m = parseBgp(d, 0, n).repr;
    return m.kind === 'open' ? m : undefined;
  };
  for (const [k, s] of streams) {
    const o = firstOpen(s);
    if (o) opens.set(k, o);
  }
  const out: Record<string, StreamSummary> = {};
  const count = new Map<string, number>();
  for (const [k, s] of streams) {
    const [a, b] = k.split('>');
    const mine = opens.get(k);
    const theirs = opens.get(`${b}>${a}`);
    const codec = mine && theirs ? bgpCodecFor(mine, theirs) : undefined;
    // in sequence order, each byte once (a retransmission repeats what came)
    let next: number | undefined;
    const parts: Uint8Array[] = [];
    const segments: [number, number][] = [];
    const starts: number[] = [];
    let off = 0;
    for (const g of s.segs) {
      if (next !== undefined && ((g.seq - next) | 0) < 0) continue;
      if (next !== undefined && g.seq !== next) return fail(`${k}: a gap in the stream`);
      next = (g.seq + g.data.length) >>> 0;
      parts.push(g.data);
      segments.push([g.data.length, 0]);
      starts.push(off);
      off += g.data.length;
    }
    const buf = new Uint8Array(off);
    parts.reduce((o, d) => (buf.set(d, o), o + d.length), 0);
    const messages: string[] = [];
    let seg = 0;
    for (let at = 0; at < buf.length;) {
      const n = bgpFrameLength(buf, at, buf.length);
      if (n === undefined) break;
      while (seg + 1 < starts.length && starts[seg + 1] <= at) seg++;
      segments[seg][1]++;
      const m = parseBgp(buf, at, at + n, messages.length ? codec : undefined).repr;
      at += n;
      if (m.kind === 'open') messages.push('O');
      else if (m.kind === 'keepalive') messages.push('K');
      else if (m.kind === 'notification') messages.push('N');
      else if (m.kind === 'update')
        messages.push(
          !m.withdrawn.length && !m.attrs.length && !m.nlri.length
            ? 'E'
            : `U ${m.withdrawn.length}/${m.nlri.length}`,
        );
      else messages.push('R');
    }
    const name = `${s.from}>${s.to}`;
    const i = (count.get(name) ?? 0) + 1;
    count.set(name, i);
    out[i === 1 ? name : `${name}#${i}`] = { messages, segments };
  }
  return out;
}

function fail(why: string): never {
  throw new Error(`bgpStreamSummary: ${why}`);
}
