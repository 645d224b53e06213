/** IPv4 header (RFC 791). Emitted with IHL 5 (no options); options are skipped at parse. */
import { intToIp4, ip4ToInt } from './addr.ts';
import { checkUint, get16, get32, need, put16, put32, WireError, type Parsed } from './bytes.ts';
import { badChecksum, expectedChecksum, internetChecksum } from './checksum.ts';
import type { Ipv4Repr } from './types.ts';

export const IPV4_HEADER_LEN = 20;
export const IPV4_MAX_LEN = 0xffff;

const DF = 0x4000;
const MF = 0x2000;

/** Writes the 20-byte header at `off` for a payload of `payloadLen` bytes (total length, checksum computed). */
export function emitIpv4Header(r: Ipv4Repr, payloadLen: number, buf: Uint8Array, off: number): void {
  const total = IPV4_HEADER_LEN + payloadLen;
  if (total > IPV4_MAX_LEN) throw new WireError(`IPv4 total length ${total} exceeds ${IPV4_MAX_LEN}`);
  checkUint('IPv4 tos', r.tos, 0xff);
  checkUint('IPv4 id', r.id, 0xffff);
  checkUint('IPv4 ttl', r.ttl, 0xff);
  checkUint('IPv4 protocol', r.protocol, 0xff);
  checkUint('IPv4 fragment offset', r.fragOffset, 0xfff8);
  if (r.fragOffset & 7) throw new WireError(`IPv4 fragment offset ${r.fragOffset} is not a multiple of 8`);
  buf[off] = 0x45;
  buf[off + 1] = r.tos;
  put16(buf, off + 2, total);
  put16(buf, off + 4, r.id);
  put16(buf, off + 6, (r.df ? DF : 0) | (r.mf ? MF : 0) | (r.fragOffset >>> 3));
  buf[off + 8] = r.ttl;
  buf[off + 9] = r.protocol;
  put16(buf, off + 10, 0);
  put32(buf, off + 12, ip4ToInt(r.src));
  put32(buf, off + 16, ip4ToInt(r.dst));
  put16(buf, off + 10, internetChecksum(buf, off, off + IPV4_HEADER_LEN));
}

/**
 * Parses and verifies the header at `off`. The payload ends at the header's total length; bytes
 * after it up to `end` (Ethernet padding) are ignored.
 */
export function parseIpv4Header(buf: Uint8Array, off = 0, end = buf.length): Parsed<Ipv4Repr> {
  need('IPv4 header', off, IPV4_HEADER_LEN, end);
  if (buf[off] >>> 4 !== 4) throw new WireError(`IP version ${buf[off] >>> 4} is not 4`);
  const hlen = (buf[off] & 15) * 4;
  if (hlen < IPV4_HEADER_LEN) throw new WireError(`IPv4 header length ${hlen} < 20`);
  need('IPv4 header with options', off, hlen, end);
  const total = get16(buf, off + 2);
  if (total < hlen) throw new WireError(`IPv4 total length ${total} < header length ${hlen}`);
  need('IPv4 packet', off, total, end);
  if (internetChecksum(buf, off, off + hlen) !== 0)
    throw badChecksum('IPv4 header', get16(buf, off + 10), expectedChecksum(buf, off, off + hlen, off + 10));
  const frag = get16(buf, off + 6);
  const repr: Ipv4Repr = {
    src: intToIp4(get32(buf, off + 12)),
    dst: intToIp4(get32(buf, off + 16)),
    protocol: buf[off + 9],
    ttl: buf[off + 8],
    id: get16(buf, off + 4),
    df: (frag & DF) !== 0,
    mf: (frag & MF) !== 0,
    fragOffset: (frag & 0x1fff) * 8,
    tos: buf[off + 1],
  };
  return { repr, payloadOff: off + hlen, payloadEnd: off + total };
}

/** Whether the packet is a fragment (MF set or a non-zero offset). */
export function isFragment(r: Ipv4Repr): boolean {
  return r.mf || r.fragOffset > 0;
}
