/** Classic libpcap files (not pcapng): written little-endian with microsecond timestamps. */
import { WireError } from './bytes.ts';

export interface PcapRecord {
  tsSec: number;
  tsUsec: number;
  frame: Uint8Array;
}

export const LINKTYPE_ETHERNET = 1;
export const PCAP_SNAPLEN = 262144;

const MAGIC_US = 0xa1b2c3d4;
const MAGIC_NS = 0xa1b23c4d;

export function writePcap(records: readonly PcapRecord[], linktype = LINKTYPE_ETHERNET): Uint8Array {
  let size = 24;
  for (const r of records) size += 16 + Math.min(r.frame.length, PCAP_SNAPLEN);
  const buf = new Uint8Array(size);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, MAGIC_US, true);
  dv.setUint16(4, 2, true);
  dv.setUint16(6, 4, true);
  // 8: thiszone 0, 12: sigfigs 0
  dv.setUint32(16, PCAP_SNAPLEN, true);
  dv.setUint32(20, linktype, true);
  let o = 24;
  for (const r of records) {
    if (!Number.isInteger(r.tsSec) || r.tsSec < 0 || r.tsSec > 0xffffffff)
      throw new WireError(`pcap tsSec ${r.tsSec} out of range`);
    if (!Number.isInteger(r.tsUsec) || r.tsUsec < 0 || r.tsUsec > 999999)
      throw new WireError(`pcap tsUsec ${r.tsUsec} out of range`);
    const incl = Math.min(r.frame.length, PCAP_SNAPLEN);
    dv.setUint32(o, r.tsSec, true);
    dv.setUint32(o + 4, r.tsUsec, true);
    dv.setUint32(o + 8, incl, true);
    dv.setUint32(o + 12, r.frame.length, true);
    buf.set(r.frame.subarray(0, incl), o + 16);
    o += 16 + incl;
  }
  return buf;
}

export interface PcapHeader {
  linktype: number;
  snaplen: number;
  littleEndian: boolean;
  nanosecond: boolean;
}

export function readPcapHeader(bytes: Uint8Array): PcapHeader {
  if (bytes.length < 24) throw new WireError(`pcap file truncated: ${bytes.length} bytes, header needs 24`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = dv.getUint32(0, true);
  if (magic === 0x0a0d0d0a) throw new WireError('pcapng files are not supported (classic pcap only)');
  const le = magic === MAGIC_US || magic === MAGIC_NS;
  const m = le ? magic : dv.getUint32(0, false);
  if (m !== MAGIC_US && m !== MAGIC_NS)
    throw new WireError(`not a pcap file (magic 0x${magic.toString(16)})`);
  return {
    linktype: dv.getUint32(20, le),
    snaplen: dv.getUint32(16, le),
    littleEndian: le,
    nanosecond: m === MAGIC_NS,
  };
}

/** Reads either byte order; nanosecond files are converted to microseconds (truncating). */
export function readPcap(bytes: Uint8Array): PcapRecord[] {
  const h = readPcapHeader(bytes);
  const le = h.littleEndian;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: PcapRecord[] = [];
  for (let o = 24; o < bytes.length;) {
    if (o + 16 > bytes.length) throw new WireError(`pcap record header at ${o} truncated`);
    const incl = dv.getUint32(o + 8, le);
    if (o + 16 + incl > bytes.length)
      throw new WireError(`pcap record at ${o} truncated: ${incl} bytes announced`);
    const frac = dv.getUint32(o + 4, le);
    out.push({
      tsSec: dv.getUint32(o, le),
      tsUsec: h.nanosecond ? Math.floor(frac / 1000) : frac,
      frame: bytes.slice(o + 16, o + 16 + incl),
    });
    o += 16 + incl;
  }
  return out;
}
