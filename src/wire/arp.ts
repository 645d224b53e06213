/** ARP for Ethernet/IPv4 (RFC 826): htype 1, ptype 0x0800, hlen 6, plen 4. */
import { formatMac, intToIp4, ip4ToInt, writeMac } from './addr.ts';
import { get16, get32, need, put16, put32, WireError, type Parsed } from './bytes.ts';
import { ETHERTYPE_IPV4, type ArpRepr } from './types.ts';

export const ARP_LEN = 28;

export function emitArp(r: ArpRepr, buf: Uint8Array, off: number): void {
  if (r.op !== 1 && r.op !== 2) throw new WireError(`ARP op ${String(r.op)} is not 1 (request) or 2 (reply)`);
  put16(buf, off, 1);
  put16(buf, off + 2, ETHERTYPE_IPV4);
  buf[off + 4] = 6;
  buf[off + 5] = 4;
  put16(buf, off + 6, r.op);
  writeMac(r.senderMac, buf, off + 8);
  put32(buf, off + 14, ip4ToInt(r.senderIp));
  writeMac(r.targetMac, buf, off + 18);
  put32(buf, off + 24, ip4ToInt(r.targetIp));
}

export function parseArp(buf: Uint8Array, off = 0, end = buf.length): Parsed<ArpRepr> {
  need('ARP packet', off, ARP_LEN, end);
  const htype = get16(buf, off);
  const ptype = get16(buf, off + 2);
  if (htype !== 1 || ptype !== ETHERTYPE_IPV4 || buf[off + 4] !== 6 || buf[off + 5] !== 4)
    throw new WireError(
      `ARP htype ${htype} ptype 0x${ptype.toString(16)} hlen ${buf[off + 4]} plen ${buf[off + 5]} is not Ethernet/IPv4`,
    );
  const op = get16(buf, off + 6);
  if (op !== 1 && op !== 2) throw new WireError(`ARP op ${op} is not 1 (request) or 2 (reply)`);
  const repr: ArpRepr = {
    op,
    senderMac: formatMac(buf, off + 8),
    senderIp: intToIp4(get32(buf, off + 14)),
    targetMac: formatMac(buf, off + 18),
    targetIp: intToIp4(get32(buf, off + 24)),
  };
  return { repr, payloadOff: off + ARP_LEN, payloadEnd: off + ARP_LEN };
}
