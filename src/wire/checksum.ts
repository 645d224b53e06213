/** RFC 1071 internet checksum. Sums are kept unfolded (a plain JS number) until `foldChecksum`. */
import { WireError } from './bytes.ts';

/** Adds the big-endian 16-bit words of buf[start, end) to `acc`; an odd last byte is padded with zero. */
export function sum16(buf: Uint8Array, start = 0, end = buf.length, acc = 0): number {
  let i = start;
  for (; i + 1 < end; i += 2) acc += (buf[i] << 8) | buf[i + 1];
  if (i < end) acc += buf[i] << 8;
  return acc;
}

/** Folds carries into 16 bits and complements: the value to put in a checksum field. */
export function foldChecksum(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 0x10000);
  return ~acc & 0xffff;
}

/** Checksum of buf[start, end). Over a header that includes its own checksum field, 0 means valid. */
export function internetChecksum(buf: Uint8Array, start = 0, end = buf.length): number {
  return foldChecksum(sum16(buf, start, end));
}

/**
 * Checksum over several byte ranges taken as one contiguous stream (a range of odd length shifts
 * the next one to the low byte, handled by RFC 1071's byte-swap property).
 */
export function internetChecksumOf(ranges: readonly Uint8Array[]): number {
  let acc = 0;
  let odd = false;
  for (const r of ranges) {
    let s = sum16(r);
    while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
    acc += odd ? ((s & 0xff) << 8) | (s >>> 8) : s;
    if (r.length & 1) odd = !odd;
  }
  return foldChecksum(acc);
}

/** Unfolded sum of the IPv4 pseudo-header (src, dst, zero, protocol, transport length). */
export function pseudoHeaderSum(src: number, dst: number, protocol: number, length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length;
}

/** TCP/UDP checksum of the segment buf[start, end) under the IPv4 pseudo-header. */
export function ipv4PseudoChecksum(
  src: number,
  dst: number,
  protocol: number,
  buf: Uint8Array,
  start: number,
  end: number,
): number {
  return foldChecksum(sum16(buf, start, end, pseudoHeaderSum(src, dst, protocol, end - start)));
}

/** What the 16-bit checksum field at `field` should hold for buf[start, end) (plus `acc`): for error messages. */
export function expectedChecksum(
  buf: Uint8Array,
  start: number,
  end: number,
  field: number,
  acc = 0,
): number {
  return foldChecksum(sum16(buf, field + 2, end, sum16(buf, start, field, acc)));
}

export function badChecksum(what: string, got: number, want: number): WireError {
  const hex = (v: number) => '0x' + v.toString(16).padStart(4, '0');
  return new WireError(`bad ${what} checksum ${hex(got)}, expected ${hex(want)}`);
}
