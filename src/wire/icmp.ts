/**
 * ICMP (RFC 792). Bytes 4-7 carry `id` (4-5) and `seq` (6-7) for every type, which is what echo
 * uses and what the unused field of errors holds (0); for type 3 code 4 (fragmentation needed,
 * RFC 1191) bytes 6-7 carry the next-hop `mtu` instead of `seq`.
 */
import { checkUint, get16, need, put16, WireError, type Parsed } from './bytes.ts';
import { badChecksum, expectedChecksum, internetChecksum } from './checksum.ts';
import type { IcmpRepr } from './types.ts';

export const ICMP_HEADER_LEN = 8;

export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACH = 3;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_FRAG_NEEDED = 4; // code of ICMP_DEST_UNREACH

function isFragNeeded(type: number, code: number): boolean {
  return type === ICMP_DEST_UNREACH && code === ICMP_FRAG_NEEDED;
}

/** Writes the header at `off`; the `payloadLen` data bytes must already be in place after it. */
export function emitIcmp(r: IcmpRepr, buf: Uint8Array, off: number, payloadLen: number): void {
  checkUint('ICMP type', r.type, 0xff);
  checkUint('ICMP code', r.code, 0xff);
  checkUint('ICMP id', r.id, 0xffff);
  const fragNeeded = isFragNeeded(r.type, r.code);
  if (fragNeeded) {
    if (r.mtu === undefined) throw new WireError('ICMP fragmentation-needed (type 3 code 4) requires mtu');
    checkUint('ICMP next-hop MTU', r.mtu, 0xffff);
    if (r.seq !== 0) throw new WireError('ICMP fragmentation-needed: seq must be 0 (bytes 6-7 hold the MTU)');
  } else {
    if (r.mtu !== undefined) throw new WireError(`ICMP type ${r.type} code ${r.code} has no MTU field`);
    checkUint('ICMP seq', r.seq, 0xffff);
  }
  buf[off] = r.type;
  buf[off + 1] = r.code;
  put16(buf, off + 2, 0);
  put16(buf, off + 4, r.id);
  put16(buf, off + 6, fragNeeded ? (r.mtu as number) : r.seq);
  put16(buf, off + 2, internetChecksum(buf, off, off + ICMP_HEADER_LEN + payloadLen));
}

/** Parses and verifies the message buf[off, end); the data (echo payload or quoted packet) follows the header. */
export function parseIcmp(buf: Uint8Array, off: number, end: number): Parsed<IcmpRepr> {
  need('ICMP header', off, ICMP_HEADER_LEN, end);
  if (internetChecksum(buf, off, end) !== 0)
    throw badChecksum('ICMP', get16(buf, off + 2), expectedChecksum(buf, off, end, off + 2));
  const type = buf[off];
  const code = buf[off + 1];
  const repr: IcmpRepr = isFragNeeded(type, code)
    ? { type, code, id: get16(buf, off + 4), seq: 0, mtu: get16(buf, off + 6) }
    : { type, code, id: get16(buf, off + 4), seq: get16(buf, off + 6) };
  return { repr, payloadOff: off + ICMP_HEADER_LEN, payloadEnd: end };
}
