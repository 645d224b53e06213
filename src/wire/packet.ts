/** Whole nested packets: Ethernet → ARP | IPv4 → TCP | UDP (→ VXLAN → Frame) | ICMP | IPIP (→ IPv4). */
import { ip4ToInt } from './addr.ts';
import { ARP_LEN, emitArp, parseArp } from './arp.ts';
import { checkUint, get32, WireError } from './bytes.ts';
import { emitEthernet, ETHERNET_HEADER_LEN, parseEthernet } from './ethernet.ts';
import { emitIcmp, ICMP_HEADER_LEN, parseIcmp } from './icmp.ts';
import { emitIpv4Header, IPV4_HEADER_LEN, isFragment, parseIpv4Header } from './ipv4.ts';
import { emitTcp, parseTcp, tcpHeaderLength } from './tcp.ts';
import {
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  IPPROTO_ICMP,
  IPPROTO_IPIP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  VXLAN_PORT,
  type Frame,
  type Ipv4Packet,
  type Ipv4Repr,
  type RawPayload,
} from './types.ts';
import { emitUdp, parseUdp, UDP_HEADER_LEN, type UdpChecksumMode, type UdpEmitOptions } from './udp.ts';
import { emitVxlan, parseVxlan, VXLAN_HEADER_LEN } from './vxlan.ts';

/** Reserved for emit-time choices; per-packet choices (the UDP checksum) live in the Reprs. */
export type EmitOptions = Record<string, never>;

const CSUM: Record<UdpChecksumMode, UdpEmitOptions> = {
  compute: { checksum: 'compute' },
  zero: { checksum: 'zero' },
};

/* ---------- lengths ---------- */

/** Bytes emitFrame will produce (no FCS, no padding to 60). */
export function frameLength(f: Frame): number {
  const p = f.payload;
  return (
    ETHERNET_HEADER_LEN + (p.kind === 'arp' ? ARP_LEN : p.kind === 'ipv4' ? ipv4Length(p) : p.data.length)
  );
}

/** IPv4 total length of the packet, computed without emitting. */
export function ipv4Length(p: Ipv4Packet): number {
  const pl = p.payload;
  switch (pl.kind) {
    case 'tcp':
      return IPV4_HEADER_LEN + tcpHeaderLength(pl.tcp) + pl.data.length;
    case 'udp': {
      const u = pl.payload;
      return (
        IPV4_HEADER_LEN +
        UDP_HEADER_LEN +
        (u.kind === 'vxlan' ? VXLAN_HEADER_LEN + frameLength(u.frame) : u.data.length)
      );
    }
    case 'icmp':
      return IPV4_HEADER_LEN + ICMP_HEADER_LEN + pl.data.length;
    case 'ipip':
      return IPV4_HEADER_LEN + ipv4Length(pl.inner);
    case 'raw':
      return IPV4_HEADER_LEN + pl.data.length;
  }
}

/* ---------- emit ---------- */

export function emitFrame(f: Frame, opts: EmitOptions = {}): Uint8Array {
  const buf = new Uint8Array(frameLength(f));
  putFrame(f, buf, 0, opts);
  return buf;
}

export function emitIpv4Packet(p: Ipv4Packet, opts: EmitOptions = {}): Uint8Array {
  const buf = new Uint8Array(ipv4Length(p));
  putIpv4(p, buf, 0, opts);
  return buf;
}

/** Emits into an existing buffer at `off` (no allocation); returns the end offset. */
export function writeFrame(f: Frame, buf: Uint8Array, off = 0, opts: EmitOptions = {}): number {
  const n = frameLength(f);
  if (off + n > buf.length)
    throw new WireError(`writeFrame: frame of ${n} bytes does not fit at offset ${off}`);
  return putFrame(f, buf, off, opts);
}

function putFrame(f: Frame, buf: Uint8Array, off: number, opts: EmitOptions): number {
  const p = f.payload;
  const want = p.kind === 'arp' ? ETHERTYPE_ARP : p.kind === 'ipv4' ? ETHERTYPE_IPV4 : f.eth.ethertype;
  if (f.eth.ethertype !== want)
    throw new WireError(
      `Ethernet ethertype 0x${f.eth.ethertype.toString(16)} does not match ${p.kind} payload`,
    );
  emitEthernet(f.eth, buf, off);
  const i = off + ETHERNET_HEADER_LEN;
  if (p.kind === 'arp') {
    emitArp(p.arp, buf, i);
    return i + ARP_LEN;
  }
  if (p.kind === 'ipv4') return putIpv4(p, buf, i, opts);
  buf.set(p.data, i);
  return i + p.data.length;
}

const PROTO = { tcp: IPPROTO_TCP, udp: IPPROTO_UDP, icmp: IPPROTO_ICMP, ipip: IPPROTO_IPIP } as const;

/** Writes the payload first, then each header over it, so checksums see their final bytes. */
function putIpv4(p: Ipv4Packet, buf: Uint8Array, off: number, opts: EmitOptions): number {
  const { ip, payload: pl } = p;
  const s = off + IPV4_HEADER_LEN;
  let end: number;
  if (pl.kind !== 'raw') {
    if (isFragment(ip)) throw new WireError('an IPv4 fragment must carry a raw payload (see fragmentIpv4)');
    if (ip.protocol !== PROTO[pl.kind])
      throw new WireError(
        `IPv4 protocol ${ip.protocol} does not match ${pl.kind} payload (${PROTO[pl.kind]})`,
      );
  }
  switch (pl.kind) {
    case 'tcp': {
      const h = tcpHeaderLength(pl.tcp);
      buf.set(pl.data, s + h);
      end = s + h + pl.data.length;
      emitTcp(pl.tcp, buf, s, pl.data.length, ip4ToInt(ip.src), ip4ToInt(ip.dst));
      break;
    }
    case 'udp': {
      const u = pl.payload;
      const d = s + UDP_HEADER_LEN;
      if (u.kind === 'vxlan') {
        // any port may carry VXLAN (flannel's default is the kernel's 8472); parse decodes 4789, as tcpdump does
        emitVxlan(u.vxlan, buf, d);
        end = putFrame(u.frame, buf, d + VXLAN_HEADER_LEN, opts);
      } else {
        buf.set(u.data, d);
        end = d + u.data.length;
      }
      const csum = CSUM[pl.udp.noChecksum ? 'zero' : 'compute'];
      emitUdp(pl.udp, buf, s, end - d, ip4ToInt(ip.src), ip4ToInt(ip.dst), csum);
      break;
    }
    case 'icmp':
      buf.set(pl.data, s + ICMP_HEADER_LEN);
      end = s + ICMP_HEADER_LEN + pl.data.length;
      emitIcmp(pl.icmp, buf, s, pl.data.length);
      break;
    case 'ipip':
      end = putIpv4(pl.inner, buf, s, opts);
      break;
    case 'raw':
      buf.set(pl.data, s);
      end = s + pl.data.length;
      break;
  }
  emitIpv4Header(ip, end - s, buf, off);
  return end;
}

/* ---------- parse ---------- */

/** Parses and verifies a whole frame; throws WireError on truncated/invalid input or a bad checksum. */
export function parseFrame(bytes: Uint8Array): Frame {
  return parseFrameAt(bytes, 0, bytes.length);
}

export function parseIpv4Packet(bytes: Uint8Array): Ipv4Packet {
  return parseIpv4At(bytes, 0, bytes.length);
}

function raw(b: Uint8Array, s: number, e: number): RawPayload {
  return { kind: 'raw', data: b.slice(s, e) };
}

function parseFrameAt(b: Uint8Array, off: number, end: number): Frame {
  const { repr: eth, payloadOff: s } = parseEthernet(b, off, end);
  if (eth.ethertype === ETHERTYPE_ARP)
    return { eth, payload: { kind: 'arp', arp: parseArp(b, s, end).repr } };
  if (eth.ethertype === ETHERTYPE_IPV4) return { eth, payload: parseIpv4At(b, s, end) };
  return { eth, payload: raw(b, s, end) };
}

function parseIpv4At(b: Uint8Array, off: number, end: number): Ipv4Packet {
  const { repr: ip, payloadOff: s, payloadEnd: e } = parseIpv4Header(b, off, end);
  if (isFragment(ip)) return { kind: 'ipv4', ip, payload: raw(b, s, e) };
  return decodeTransport(ip, b, s, e, get32(b, off + 12), get32(b, off + 16));
}

function decodeTransport(
  ip: Ipv4Repr,
  b: Uint8Array,
  s: number,
  e: number,
  src: number,
  dst: number,
): Ipv4Packet {
  switch (ip.protocol) {
    case IPPROTO_TCP: {
      const t = parseTcp(b, s, e, src, dst);
      return {
        kind: 'ipv4',
        ip,
        payload: { kind: 'tcp', tcp: t.repr, data: b.slice(t.payloadOff, t.payloadEnd) },
      };
    }
    case IPPROTO_UDP: {
      const { repr: udp, payloadOff: us, payloadEnd: ue } = parseUdp(b, s, e, src, dst);
      if (udp.dstPort !== VXLAN_PORT)
        return { kind: 'ipv4', ip, payload: { kind: 'udp', udp, payload: raw(b, us, ue) } };
      const v = parseVxlan(b, us, ue);
      const frame = parseFrameAt(b, v.payloadOff, ue);
      return {
        kind: 'ipv4',
        ip,
        payload: { kind: 'udp', udp, payload: { kind: 'vxlan', vxlan: v.repr, frame } },
      };
    }
    case IPPROTO_ICMP: {
      const m = parseIcmp(b, s, e);
      return { kind: 'ipv4', ip, payload: { kind: 'icmp', icmp: m.repr, data: b.slice(m.payloadOff, e) } };
    }
    case IPPROTO_IPIP:
      return { kind: 'ipv4', ip, payload: { kind: 'ipip', inner: parseIpv4At(b, s, e) } };
    default:
      return { kind: 'ipv4', ip, payload: raw(b, s, e) };
  }
}

/* ---------- fragmentation ---------- */

/**
 * Splits `p` for an egress MTU as Linux ip_do_fragment() does: every fragment but the last carries
 * floor((mtu - 20) / 8) * 8 payload bytes, all share the id, MF is set on all but the last (which
 * keeps the original MF), offsets are in bytes relative to the original offset. Returns [p] when it
 * fits; throws if DF is set (Linux answers with ICMP fragmentation-needed instead).
 */
export function fragmentIpv4(p: Ipv4Packet, mtu: number, opts: EmitOptions = {}): Ipv4Packet[] {
  checkUint('MTU', mtu, 0xffff);
  if (mtu < 68) throw new WireError(`MTU ${mtu} is below the IPv4 minimum of 68`);
  const total = ipv4Length(p);
  if (total <= mtu) return [p];
  if (p.ip.df) throw new WireError(`IPv4 packet of ${total} bytes exceeds MTU ${mtu} and has DF set`);
  const data = emitIpv4Packet(p, opts).subarray(IPV4_HEADER_LEN);
  const room = mtu - IPV4_HEADER_LEN;
  const out: Ipv4Packet[] = [];
  for (let o = 0; o < data.length;) {
    const left = data.length - o;
    const n = left <= room ? left : room & ~7;
    const last = n === left;
    const ip = { ...p.ip, mf: last ? p.ip.mf : true, fragOffset: p.ip.fragOffset + o };
    out.push({ kind: 'ipv4', ip, payload: { kind: 'raw', data: data.slice(o, o + n) } });
    o += n;
  }
  return out;
}

/**
 * Reassembles the fragments of one datagram (any order) and decodes its transport payload, verifying
 * checksums. Throws on mismatched id/src/dst/protocol, gaps, overlaps, or a missing last fragment.
 */
export function reassembleIpv4(fragments: readonly Ipv4Packet[]): Ipv4Packet {
  if (fragments.length === 0) throw new WireError('reassembleIpv4: no fragments');
  const sorted = [...fragments].sort((a, b) => a.ip.fragOffset - b.ip.fragOffset);
  const first = sorted[0].ip;
  let len = 0;
  for (const [i, f] of sorted.entries()) {
    const { ip, payload } = f;
    if (payload.kind !== 'raw') throw new WireError('reassembleIpv4: fragment payload is not raw');
    if (ip.id !== first.id || ip.src !== first.src || ip.dst !== first.dst || ip.protocol !== first.protocol)
      throw new WireError('reassembleIpv4: fragments of different datagrams (id/src/dst/protocol differ)');
    if (ip.fragOffset !== len)
      throw new WireError(
        `reassembleIpv4: fragment at offset ${ip.fragOffset}, expected ${len} (gap or overlap)`,
      );
    if (ip.mf !== i < sorted.length - 1)
      throw new WireError(
        i < sorted.length - 1
          ? 'reassembleIpv4: MF clear before the last fragment'
          : 'reassembleIpv4: last fragment missing',
      );
    len += payload.data.length;
  }
  const data = new Uint8Array(len);
  for (const f of sorted) data.set((f.payload as RawPayload).data, f.ip.fragOffset);
  const ip: Ipv4Repr = { ...first, mf: false, fragOffset: 0 };
  return decodeTransport(ip, data, 0, len, ip4ToInt(ip.src), ip4ToInt(ip.dst));
}
