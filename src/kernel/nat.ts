/**
 * NAT as Linux keeps it in conntrack (nf_nat_core.c, nf_nat_proto.c): the first packet's nat-table
 * verdict sets up the manip of its hook's type (nf_nat_setup_info: a unique tuple in the range,
 * the reply tuple becomes the NATed one, IPS_SRC_NAT / IPS_DST_NAT and the *_DONE bits); every
 * later packet of both directions is rewritten from the entry (nf_nat_packet), never from the
 * table; ICMP errors about a NATed flow are translated inside and out
 * (nf_nat_icmp_reply_translation). Pure functions of the entry, the range and the table.
 */
import { intToIp4, ip4ToInt, parseIp4Cached } from '../wire/addr.ts';
import type { Ipv4Packet } from '../wire/types.ts';
import { invertTuple, type Conntrack, type CtDir, type CtEntry, type Tuple } from './conntrack.ts';
import type { Hook, NatRange } from './netfilter/types.ts';

export type Manip = 'src' | 'dst';

/** HOOK2MANIP: SNAT at POSTROUTING and INPUT, DNAT at PREROUTING and OUTPUT */
export function hookManip(hook: Hook): Manip {
  return hook === 'POSTROUTING' || hook === 'INPUT' ? 'src' : 'dst';
}

/** random numbers for port choice (get_random_u16): deterministic in the model */
export type NatRandom = (salt: string) => number;

/** what nf_nat_setup_info did: the original direction as it looked before and after the manip */
export interface NatSetup {
  manip: Manip;
  before: Tuple;
  after: Tuple;
  /** the manip changed the tuple (else: a binding that keeps it) */
  changed: boolean;
}

const TCP = 6;
const UDP = 17;
const ICMP = 1;
const PORT_PROTOS = new Set([TCP, UDP, 132, 33, 136]);
/** NF_NAT_MAX_ATTEMPTS */
const MAX_ATTEMPTS = 128;

/* ------------------------------------------------------------ jhash2 (include/linux/jhash.h) */

const rol32 = (x: number, s: number) => ((x << s) | (x >>> (32 - s))) >>> 0;

/** jhash2 of one u32 word */
export function jhash1(k: number, initval: number): number {
  let a = (0xdeadbeef + 4 + initval) >>> 0;
  let b = a;
  let c = a;
  a = (a + k) >>> 0;
  c = ((c ^ b) - rol32(b, 14)) >>> 0;
  a = ((a ^ c) - rol32(c, 11)) >>> 0;
  b = ((b ^ a) - rol32(a, 25)) >>> 0;
  c = ((c ^ b) - rol32(b, 16)) >>> 0;
  a = ((a ^ c) - rol32(c, 4)) >>> 0;
  b = ((b ^ a) - rol32(a, 14)) >>> 0;
  c = ((c ^ b) - rol32(b, 24)) >>> 0;
  return c;
}

/** an IPv4 address as the u32 the kernel loads from memory on a little-endian machine */
const le32 = (ip: string) => {
  const n = ip4ToInt(ip);
  return (((n & 0xff) << 24) | (((n >>> 8) & 0xff) << 16) | (((n >>> 16) & 0xff) << 8) | (n >>> 24)) >>> 0;
};

/** reciprocal_scale: (u32)(((u64)val * ep_ro) >> 32) */
const reciprocalScale = (val: number, range: number) => Number((BigInt(val) * BigInt(range)) >> 32n);

/* ------------------------------------------------------------ ranges and tuples */

const keyPort = (t: Tuple, manip: Manip) =>
  t.proto === ICMP ? (t.icmpId ?? 0) : manip === 'src' ? t.sport : t.dport;

function withKey(t: Tuple, manip: Manip, v: number): Tuple {
  if (t.proto === ICMP) return { ...t, icmpId: v };
  return manip === 'src' ? { ...t, sport: v } : { ...t, dport: v };
}

/** l4proto_in_range */
function l4InRange(t: Tuple, manip: Manip, r: NatRange): boolean {
  if (t.proto !== ICMP && !PORT_PROTOS.has(t.proto)) return true;
  const p = keyPort(t, manip);
  return p >= r.minPort! && p <= r.maxPort!;
}

/** nf_in_range (of the source part) */
function inRange(t: Tuple, r: NatRange): boolean {
  if (r.minIp !== undefined) {
    const a = ip4ToInt(t.src);
    if (a < r.minIp || a > r.maxIp!) return false;
  }
  return r.minPort === undefined || l4InRange(t, 'src', r);
}

function tupleEqual(a: Tuple, b: Tuple): boolean {
  return (
    a.proto === b.proto &&
    a.src === b.src &&
    a.dst === b.dst &&
    a.sport === b.sport &&
    a.dport === b.dport &&
    a.icmpId === b.icmpId &&
    a.icmpType === b.icmpType &&
    a.icmpCode === b.icmpCode
  );
}

/** nf_nat_used_tuple: the reply this tuple would get is some other entry's */
function usedTuple(ct: Conntrack, t: Tuple, e: CtEntry): boolean {
  return ct.takenInverse(t, e);
}

/** find_appropriate_src: the mapping another connection from the same source got, if it is in range */
function appropriateSrc(ct: Conntrack, t: Tuple, r: NatRange): Tuple | undefined {
  for (const x of ct.snatSources(t.proto, t.src, keyPort(t, 'src'))) {
    const inv = invertTuple(x.reply);
    const result: Tuple = {
      ...t,
      src: inv.src,
      sport: inv.sport,
      icmpId: t.proto === ICMP ? inv.icmpId : t.icmpId,
    };
    if (inRange(result, r)) return result;
  }
  return undefined;
}

/** find_best_ips_proto: the address of the manip, the one choice or a hash of the endpoints */
function bestIp(t: Tuple, r: NatRange, manip: Manip): Tuple {
  if (r.minIp === undefined) return t;
  let ip = r.minIp;
  if (r.minIp !== r.maxIp) {
    const j = jhash1(le32(t.src), r.persistent ? 0 : le32(t.dst));
    ip = (r.minIp + reciprocalScale(j, (r.maxIp! - r.minIp + 1) >>> 0)) >>> 0;
  }
  const addr = intToIp4(ip);
  // the address it has already (a null binding): the same tuple, no copy
  if (addr === (manip === 'src' ? t.src : t.dst)) return t;
  return manip === 'src' ? { ...t, src: addr } : { ...t, dst: addr };
}

/** nf_nat_l4proto_unique_tuple: a free port (ICMP id) in the range, from a random offset */
function uniqueL4(ct: Conntrack, t: Tuple, r: NatRange, manip: Manip, e: CtEntry, random: NatRandom): Tuple {
  let min: number;
  let size: number;
  const specified = r.minPort !== undefined;
  if (t.proto === ICMP) {
    min = specified ? r.minPort! : 0;
    size = specified ? r.maxPort! - r.minPort! + 1 : 65536;
  } else if (PORT_PROTOS.has(t.proto)) {
    if (!specified) {
      // if it's a destination rewrite, the port cannot change
      if (manip === 'dst') return t;
      const port = keyPort(t, manip);
      if (port < 1024) {
        [min, size] = port < 512 ? [1, 511] : [600, 1023 - 600 + 1];
      } else [min, size] = [1024, 65535 - 1024 + 1];
    } else {
      min = Math.min(r.minPort!, r.maxPort!);
      size = Math.abs(r.maxPort! - r.minPort!) + 1;
    }
  } else return t;
  let off = r.random || r.randomFully || manip !== 'dst' ? random(`nat-port|${manip}`) & 0xffff : 0;
  let attempts = Math.min(size, MAX_ATTEMPTS);
  for (;;) {
    for (let i = 0; i < attempts; i++, off++) {
      const cand = withKey(t, manip, min + (off % size));
      if (!usedTuple(ct, cand, e)) return cand;
    }
    if (attempts >= size || attempts < 16) return withKey(t, manip, min + ((off - 1) % size));
    attempts = Math.floor(attempts / 2);
    off = random(`nat-port-retry|${manip}|${attempts}`) & 0xffff;
  }
}

/** get_unique_tuple */
function uniqueTuple(
  ct: Conntrack,
  orig: Tuple,
  r: NatRange,
  e: CtEntry,
  manip: Manip,
  random: NatRandom,
): Tuple {
  const randomAll = r.random || r.randomFully;
  if (manip === 'src' && !randomAll) {
    // 1) the original tuple, or the mapping this source already has
    if (inRange(orig, r)) {
      if (!usedTuple(ct, orig, e)) return orig;
    } else {
      const t = appropriateSrc(ct, orig, r);
      if (t && !usedTuple(ct, t, e)) return t;
    }
  }
  // 2) the address
  const t = bestIp(orig, r, manip);
  // a destination rewrite keeps the port when the range names none (nf_nat_l4proto_unique_tuple
  // returns at once): whether the tuple is in use changes nothing, so it is not looked up
  if (manip === 'dst' && r.minPort === undefined && PORT_PROTOS.has(t.proto)) return t;
  // 3) the port, only when it is not in range and unique already
  if (!randomAll) {
    if (r.minPort !== undefined) {
      if (l4InRange(t, manip, r) && (r.minPort === r.maxPort || !usedTuple(ct, t, e))) return t;
    } else if (!usedTuple(ct, t, e)) return t;
  }
  return uniqueL4(ct, t, r, manip, e, random);
}

/**
 * nf_nat_setup_info: set up the manip of `manip` type for an entry not yet confirmed. The
 * original direction as it looks now is the inverse of the reply tuple; the new one is made
 * unique in the range; the reply tuple becomes its inverse.
 */
export function natSetup(ct: Conntrack, e: CtEntry, r: NatRange, manip: Manip, random: NatRandom): NatSetup {
  const before = invertTuple(e.reply);
  const after = uniqueTuple(ct, before, r, e, manip, random);
  const changed = !tupleEqual(after, before);
  if (changed) {
    e.reply = invertTuple(after);
    if (manip === 'src') e.snat = true;
    else e.dnat = true;
  }
  if (manip === 'src') e.snatDone = true;
  else e.dnatDone = true;
  return { manip, before, after, changed };
}

/** nf_nat_alloc_null_binding: no rule set up the manip; keep the address, let the port be unique */
export function natNullBinding(ct: Conntrack, e: CtEntry, manip: Manip, random: NatRandom): NatSetup {
  const ip = ip4ToInt(manip === 'src' ? e.reply.dst : e.reply.src);
  return natSetup(ct, e, { minIp: ip, maxIp: ip }, manip, random);
}

/**
 * natNullBinding when it keeps the tuple, without a copy: the range is the one address the tuple has
 * (in range), so get_unique_tuple returns the original direction unless its reply is another entry's;
 * a TCP/UDP destination is kept even then (nf_nat_l4proto_unique_tuple cannot change it). The reply
 * of the inverse of the inverse of e.reply is e.reply (same hash key, ICMP echo types included). The
 * manip is marked set up and true returned; false (nothing changed) when natNullBinding must find a
 * new tuple, or must refuse an address that is not a dotted quad as it does.
 */
export function natNullBindingKept(ct: Conntrack, e: CtEntry, manip: Manip): boolean {
  // an entry of the columns (a new one is its table's pending row) has dotted quads, and its reply
  // is asked of the hash by its numbers, without the tuple
  if (!e.keyed) {
    const r = e.reply;
    if (parseIp4Cached(manip === 'src' ? r.dst : r.src) < 0) return false;
  }
  if (!(manip === 'dst' && PORT_PROTOS.has(e.replyProto)) && ct.replyTaken(e)) return false;
  if (manip === 'src') e.snatDone = true;
  else e.dnatDone = true;
  return true;
}

export function natInitialized(e: CtEntry, manip: Manip): boolean {
  return manip === 'src' ? e.snatDone : e.dnatDone;
}

/* ------------------------------------------------------------ rewriting packets */

/** the status bit nf_nat_packet tests for a manip in a direction */
function applies(e: CtEntry, dir: CtDir, manip: Manip): boolean {
  const src = manip === 'src' ? dir === 'original' : dir === 'reply';
  return src ? e.snat : e.dnat;
}

/** nf_nat_ipv4_manip_pkt on the outer packet: address and port (ICMP echo id) of one side */
function manipPacket(p: Ipv4Packet, target: Tuple, manip: Manip): Ipv4Packet {
  const ip = { ...p.ip };
  if (manip === 'src') ip.src = target.src;
  else ip.dst = target.dst;
  const pl = p.payload;
  if (pl.kind === 'tcp') {
    const tcp = { ...pl.tcp };
    if (manip === 'src') tcp.srcPort = target.sport;
    else tcp.dstPort = target.dport;
    return { ...p, ip, payload: { ...pl, tcp } };
  }
  if (pl.kind === 'udp') {
    const udp = { ...pl.udp };
    if (manip === 'src') udp.srcPort = target.sport;
    else udp.dstPort = target.dport;
    return { ...p, ip, payload: { ...pl, udp } };
  }
  if (pl.kind === 'icmp' && [0, 8, 13, 14, 15, 16, 17, 18].includes(pl.icmp.type))
    return { ...p, ip, payload: { ...pl, icmp: { ...pl.icmp, id: target.icmpId ?? pl.icmp.id } } };
  return { ...p, ip };
}

/**
 * nf_nat_packet: rewrite a packet of the entry at a hook of `manip` type, from the entry alone.
 * Returns the rewritten packet, or undefined when the entry has no manip for this direction here.
 */
export function natPacket(e: CtEntry, dir: CtDir, manip: Manip, p: Ipv4Packet): Ipv4Packet | undefined {
  if (!applies(e, dir, manip)) return undefined;
  const target = invertTuple(dir === 'original' ? e.reply : e.orig);
  return manipPacket(p, target, manip);
}

/* RFC 1624 incremental checksum updates (csum_replace2/4, inet_proto_csum_replace*) */
function csumReplace16(sum: number, from: number, to: number): number {
  let s = (~sum & 0xffff) + (~from & 0xffff) + to;
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}
function csumReplace32(sum: number, from: number, to: number): number {
  return csumReplace16(csumReplace16(sum, from >>> 16, to >>> 16), from & 0xffff, to & 0xffff);
}
const get16 = (d: Uint8Array, o: number) => (d[o] << 8) | d[o + 1];
const put16 = (d: Uint8Array, o: number, v: number) => {
  d[o] = v >>> 8;
  d[o + 1] = v & 0xff;
};
const get32 = (d: Uint8Array, o: number) =>
  ((d[o] << 24) | (d[o + 1] << 16) | (d[o + 2] << 8) | d[o + 3]) >>> 0;
const put32 = (d: Uint8Array, o: number, v: number) => {
  put16(d, o, v >>> 16);
  put16(d, o + 2, v & 0xffff);
};

/** nf_nat_ipv4_manip_pkt on the packet an ICMP error quotes: its header, L4 port/id and their checksums */
function manipQuoted(d: Uint8Array, target: Tuple, manip: Manip): void {
  const ihl = (d[0] & 15) * 4;
  const proto = d[9];
  const addrOff = manip === 'src' ? 12 : 16;
  const oldAddr = get32(d, addrOff);
  const newAddr = ip4ToInt(manip === 'src' ? target.src : target.dst);
  const l4 = ihl;
  if (proto === TCP || proto === UDP) {
    const portOff = l4 + (manip === 'src' ? 0 : 2);
    const oldPort = get16(d, portOff);
    const newPort = manip === 'src' ? target.sport : target.dport;
    put16(d, portOff, newPort);
    // the L4 checksum only when the quote holds it: the whole TCP header, the UDP header if set
    const csumOff = proto === TCP ? l4 + 16 : l4 + 6;
    const holds = proto === TCP ? d.length >= l4 + 20 : d.length >= l4 + 8 && get16(d, csumOff) !== 0;
    if (holds) {
      let c = csumReplace32(get16(d, csumOff), oldAddr, newAddr);
      c = csumReplace16(c, oldPort, newPort);
      if (proto === UDP && c === 0) c = 0xffff;
      put16(d, csumOff, c);
    }
  } else if (proto === ICMP && d.length >= l4 + 8 && [0, 8, 13, 14, 15, 16, 17, 18].includes(d[l4])) {
    const oldId = get16(d, l4 + 4);
    const newId = target.icmpId ?? oldId;
    put16(d, l4 + 4, newId);
    put16(d, l4 + 2, csumReplace16(get16(d, l4 + 2), oldId, newId));
  }
  put32(d, addrOff, newAddr);
  put16(d, 10, csumReplace32(get16(d, 10), oldAddr, newAddr));
}

/**
 * nf_nat_icmp_reply_translation: an ICMP error RELATED to a NATed entry, at a hook of `manip`
 * type: the quoted packet is put back the way its sender saw it, and the outer header made to
 * look like the reply to it. Undefined when this hook has nothing to change.
 */
export function natIcmpReply(e: CtEntry, dir: CtDir, manip: Manip, p: Ipv4Packet): Ipv4Packet | undefined {
  const pl = p.payload;
  if (pl.kind !== 'icmp') return undefined;
  if (!applies(e, dir, manip)) return undefined;
  const other = dir === 'original' ? e.reply : e.orig;
  const data = pl.data.slice();
  if (data.length >= 20) manipQuoted(data, other, manip === 'src' ? 'dst' : 'src');
  const target = { ...invertTuple(other), proto: ICMP };
  const ip = { ...p.ip };
  if (manip === 'src') ip.src = target.src;
  else ip.dst = target.dst;
  return { ...p, ip, payload: { ...pl, data } };
}
