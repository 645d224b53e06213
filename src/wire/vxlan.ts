/** VXLAN header (RFC 7348): flags 0x08 (I), 3 reserved, 24-bit VNI, 1 reserved. */
import { checkUint, need, WireError, type Parsed } from './bytes.ts';
import type { VxlanRepr } from './types.ts';

export const VXLAN_HEADER_LEN = 8;
const FLAG_I = 0x08;

export function emitVxlan(r: VxlanRepr, buf: Uint8Array, off: number): void {
  checkUint('VXLAN VNI', r.vni, 0xffffff);
  buf[off] = FLAG_I;
  buf[off + 1] = buf[off + 2] = buf[off + 3] = 0;
  buf[off + 4] = r.vni >>> 16;
  buf[off + 5] = r.vni >>> 8;
  buf[off + 6] = r.vni;
  buf[off + 7] = 0;
}

/** Like the Linux vxlan driver (no GBP/GPE), rejects a header with the I flag clear or other bits set. */
export function parseVxlan(buf: Uint8Array, off: number, end: number): Parsed<VxlanRepr> {
  need('VXLAN header', off, VXLAN_HEADER_LEN, end);
  if (buf[off] !== FLAG_I)
    throw new WireError(`VXLAN flags 0x${buf[off].toString(16)} are not 0x08 (I flag only)`);
  if (buf[off + 1] | buf[off + 2] | buf[off + 3] | buf[off + 7])
    throw new WireError('VXLAN reserved bits are not zero');
  const vni = (buf[off + 4] << 16) | (buf[off + 5] << 8) | buf[off + 6];
  return { repr: { vni }, payloadOff: off + VXLAN_HEADER_LEN, payloadEnd: end };
}
