/** UDP header (RFC 768). */
import { checkUint, get16, need, put16, WireError, type Parsed } from './bytes.ts';
import { badChecksum, expectedChecksum, ipv4PseudoChecksum, pseudoHeaderSum } from './checksum.ts';
import { IPPROTO_UDP, type UdpRepr } from './types.ts';

export const UDP_HEADER_LEN = 8;

/**
 * 'compute': the RFC 768 checksum (a computed 0 goes out as 0xffff). 'zero': checksum field 0,
 * "no checksum", as the Linux vxlan driver sends its outer UDP by default (udpcsum off).
 */
export type UdpChecksumMode = 'compute' | 'zero';

export interface UdpEmitOptions {
  checksum?: UdpChecksumMode;
}

/** Writes the header at `off`; the `payloadLen` bytes must already be in place after it. */
export function emitUdp(
  r: UdpRepr,
  buf: Uint8Array,
  off: number,
  payloadLen: number,
  src: number,
  dst: number,
  opts: UdpEmitOptions = {},
): void {
  checkUint('UDP source port', r.srcPort, 0xffff);
  checkUint('UDP destination port', r.dstPort, 0xffff);
  const len = UDP_HEADER_LEN + payloadLen;
  checkUint('UDP length', len, 0xffff);
  put16(buf, off, r.srcPort);
  put16(buf, off + 2, r.dstPort);
  put16(buf, off + 4, len);
  put16(buf, off + 6, 0);
  if (opts.checksum !== 'zero')
    put16(buf, off + 6, ipv4PseudoChecksum(src, dst, IPPROTO_UDP, buf, off, off + len) || 0xffff);
}

/**
 * Parses the datagram at `off` (IP payload up to `end`) and verifies its checksum unless it is 0
 * (none sent). The payload ends at the UDP length; IP payload bytes past it are ignored, as Linux trims them.
 */
export function parseUdp(
  buf: Uint8Array,
  off: number,
  end: number,
  src: number,
  dst: number,
): Parsed<UdpRepr> {
  need('UDP header', off, UDP_HEADER_LEN, end);
  const len = get16(buf, off + 4);
  if (len < UDP_HEADER_LEN) throw new WireError(`UDP length ${len} < 8`);
  need('UDP datagram', off, len, end);
  const sum = get16(buf, off + 6);
  if (sum !== 0 && ipv4PseudoChecksum(src, dst, IPPROTO_UDP, buf, off, off + len) !== 0)
    throw badChecksum(
      'UDP',
      sum,
      expectedChecksum(buf, off, off + len, off + 6, pseudoHeaderSum(src, dst, IPPROTO_UDP, len)) || 0xffff,
    );
  const repr: UdpRepr = { srcPort: get16(buf, off), dstPort: get16(buf, off + 2) };
  if (sum === 0) repr.noChecksum = true;
  return { repr, payloadOff: off + UDP_HEADER_LEN, payloadEnd: off + len };
}
