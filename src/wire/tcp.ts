/** TCP header (RFC 9293) with the options Linux puts in a SYN, laid out exactly as tcp_options_write(). */
import { checkUint, get16, get32, need, put16, put32, WireError, type Parsed } from './bytes.ts';
import { badChecksum, expectedChecksum, ipv4PseudoChecksum, pseudoHeaderSum } from './checksum.ts';
import { IPPROTO_TCP, type TcpFlags, type TcpOptions, type TcpRepr } from './types.ts';

export const TCP_HEADER_LEN = 20;

const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const PSH = 0x08;
const ACK = 0x10;
const URG = 0x20;

/** Option bytes Linux emits for these options (always a multiple of 4, at most 20). */
export function tcpOptionsLength(o: TcpOptions): number {
  return (
    (o.mss !== undefined ? 4 : 0) +
    (o.timestamp ? 12 : o.sackOk ? 4 : 0) + // SACK-permitted shares the timestamp word when both are on
    (o.wscale !== undefined ? 4 : 0)
  );
}

export function tcpHeaderLength(r: TcpRepr): number {
  return TCP_HEADER_LEN + tcpOptionsLength(r.options);
}

/**
 * Writes the header at `off`; the `payloadLen` data bytes must already be in place after it (they
 * are covered by the checksum). `src`/`dst` are the IPv4 addresses of the pseudo-header.
 * Option layout (Linux): [02 04 mss] [04 02 | 01 01] [08 0a val ecr] | [01 01 04 02] [01 03 03 ws].
 */
export function emitTcp(
  r: TcpRepr,
  buf: Uint8Array,
  off: number,
  payloadLen: number,
  src: number,
  dst: number,
): void {
  checkUint('TCP source port', r.srcPort, 0xffff);
  checkUint('TCP destination port', r.dstPort, 0xffff);
  checkUint('TCP seq', r.seq, 0xffffffff);
  checkUint('TCP ack', r.ack, 0xffffffff);
  checkUint('TCP window', r.window, 0xffff);
  const o = r.options;
  let i = off + TCP_HEADER_LEN;
  if (o.mss !== undefined) {
    checkUint('TCP MSS', o.mss, 0xffff);
    put16(buf, i, 0x0204);
    put16(buf, i + 2, o.mss);
    i += 4;
  }
  if (o.timestamp) {
    checkUint('TCP timestamp value', o.timestamp.val, 0xffffffff);
    checkUint('TCP timestamp echo reply', o.timestamp.ecr, 0xffffffff);
    put32(buf, i, o.sackOk ? 0x0402080a : 0x0101080a);
    put32(buf, i + 4, o.timestamp.val);
    put32(buf, i + 8, o.timestamp.ecr);
    i += 12;
  } else if (o.sackOk) {
    put32(buf, i, 0x01010402);
    i += 4;
  }
  if (o.wscale !== undefined) {
    checkUint('TCP window scale', o.wscale, 0xff);
    put32(buf, i, 0x01030300 | o.wscale);
    i += 4;
  }
  const hlen = i - off;
  const f = r.flags;
  put16(buf, off, r.srcPort);
  put16(buf, off + 2, r.dstPort);
  put32(buf, off + 4, r.seq);
  put32(buf, off + 8, r.ack);
  buf[off + 12] = (hlen / 4) << 4;
  buf[off + 13] =
    (f.fin ? FIN : 0) |
    (f.syn ? SYN : 0) |
    (f.rst ? RST : 0) |
    (f.psh ? PSH : 0) |
    (f.ack ? ACK : 0) |
    (f.urg ? URG : 0);
  put16(buf, off + 14, r.window);
  put32(buf, off + 16, 0); // checksum, urgent pointer
  put16(buf, off + 16, ipv4PseudoChecksum(src, dst, IPPROTO_TCP, buf, off, off + hlen + payloadLen));
}

/**
 * Parses the segment buf[off, end) and verifies its checksum under the pseudo-header (src, dst).
 * Options may come in any order with NOP/EOL padding; options podwalk does not model (SACK blocks,
 * MD5, ...) are skipped. Flags that are set appear as `true`, clear ones are absent.
 */
export function parseTcp(
  buf: Uint8Array,
  off: number,
  end: number,
  src: number,
  dst: number,
): Parsed<TcpRepr> {
  need('TCP header', off, TCP_HEADER_LEN, end);
  const hlen = (buf[off + 12] >>> 4) * 4;
  if (hlen < TCP_HEADER_LEN) throw new WireError(`TCP data offset ${hlen} < 20`);
  need('TCP header with options', off, hlen, end);
  if (ipv4PseudoChecksum(src, dst, IPPROTO_TCP, buf, off, end) !== 0) {
    const want = expectedChecksum(buf, off, end, off + 16, pseudoHeaderSum(src, dst, IPPROTO_TCP, end - off));
    throw badChecksum('TCP', get16(buf, off + 16), want);
  }
  const fb = buf[off + 13];
  const flags: TcpFlags = {};
  if (fb & FIN) flags.fin = true;
  if (fb & SYN) flags.syn = true;
  if (fb & RST) flags.rst = true;
  if (fb & PSH) flags.psh = true;
  if (fb & ACK) flags.ack = true;
  if (fb & URG) flags.urg = true;
  const repr: TcpRepr = {
    srcPort: get16(buf, off),
    dstPort: get16(buf, off + 2),
    seq: get32(buf, off + 4),
    ack: get32(buf, off + 8),
    flags,
    window: get16(buf, off + 14),
    options: parseTcpOptions(buf, off + TCP_HEADER_LEN, off + hlen),
  };
  return { repr, payloadOff: off + hlen, payloadEnd: end };
}

const OPTION_LEN: Record<number, number> = { 2: 4, 3: 3, 4: 2, 8: 10 };

export function parseTcpOptions(buf: Uint8Array, i: number, end: number): TcpOptions {
  const o: TcpOptions = {};
  while (i < end) {
    const kind = buf[i];
    if (kind === 0) break; // EOL
    if (kind === 1) {
      i++;
      continue;
    }
    const len = i + 1 < end ? buf[i + 1] : 0;
    if (len < 2 || i + len > end) throw new WireError(`TCP option kind ${kind} has bad length ${len}`);
    const want = OPTION_LEN[kind];
    if (want !== undefined && len !== want)
      throw new WireError(`TCP option kind ${kind} has length ${len}, expected ${want}`);
    if (kind === 2) o.mss = get16(buf, i + 2);
    else if (kind === 3) o.wscale = buf[i + 2];
    else if (kind === 4) o.sackOk = true;
    else if (kind === 8) o.timestamp = { val: get32(buf, i + 2), ecr: get32(buf, i + 6) };
    i += len;
  }
  return o;
}

/** tcpdump's flag letters: F S R P U, then . for ACK; "none" when no flag is set */
const TCP_FLAG_ORDER: [keyof TcpFlags, string][] = [
  ['fin', 'F'],
  ['syn', 'S'],
  ['rst', 'R'],
  ['psh', 'P'],
  ['urg', 'U'],
];

export function tcpFlagString(f: TcpFlags): string {
  let s = '';
  for (const [k, c] of TCP_FLAG_ORDER) if (f[k]) s += c;
  if (f.ack) s += '.';
  return s || 'none';
}
