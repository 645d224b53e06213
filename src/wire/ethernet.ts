/** Ethernet II header (no FCS: frames are as a Linux host captures them). */
import { formatMac, writeMac } from './addr.ts';
import { get16, need, put16, type Parsed } from './bytes.ts';
import type { EthernetRepr } from './types.ts';

export const ETHERNET_HEADER_LEN = 14;

export function emitEthernet(r: EthernetRepr, buf: Uint8Array, off: number): void {
  writeMac(r.dst, buf, off);
  writeMac(r.src, buf, off + 6);
  put16(buf, off + 12, r.ethertype);
}

export function parseEthernet(buf: Uint8Array, off = 0, end = buf.length): Parsed<EthernetRepr> {
  need('Ethernet header', off, ETHERNET_HEADER_LEN, end);
  const repr = { dst: formatMac(buf, off), src: formatMac(buf, off + 6), ethertype: get16(buf, off + 12) };
  return { repr, payloadOff: off + ETHERNET_HEADER_LEN, payloadEnd: end };
}
