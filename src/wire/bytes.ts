/** Big-endian byte access and the error type shared by every parser and emitter in src/wire. */

/** Thrown on truncated, malformed or checksum-failing input, and on out-of-range Repr fields at emit. */
export class WireError extends Error {
  override name = 'WireError';
}

export function get16(b: Uint8Array, off: number): number {
  return (b[off] << 8) | b[off + 1];
}

export function get32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

export function put16(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 8;
  b[off + 1] = v;
}

export function put32(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = v >>> 16;
  b[off + 2] = v >>> 8;
  b[off + 3] = v;
}

/** Throws a WireError unless `v` is an integer in [0, max]. */
export function checkUint(what: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new WireError(`${what} ${v} out of range 0..${max}`);
}

/** Throws a WireError unless buf[off, off+len) lies within [.., end). */
export function need(what: string, off: number, len: number, end: number): void {
  if (off + len > end)
    throw new WireError(`${what} truncated: need ${len} bytes, have ${Math.max(0, end - off)}`);
}

/** What a header parser returns: the decoded Repr and where its payload lies in the buffer. */
export interface Parsed<T> {
  repr: T;
  payloadOff: number;
  payloadEnd: number;
}
