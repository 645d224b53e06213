/**
 * BGP-4 messages (RFC 4271) as BIRD and calico-node exchange them on TCP port 179: OPEN with its
 * capabilities (RFC 5492: multiprotocol RFC 4760, route refresh RFC 2918, graceful restart RFC 4724,
 * 4-octet AS numbers RFC 6793, ADD-PATH RFC 7911, enhanced route refresh RFC 7313, long-lived
 * graceful restart RFC 9494, extended messages RFC 8654), UPDATE with the path attributes of RFC 4271 plus communities (RFC 1997) and route
 * reflection (ORIGINATOR_ID, CLUSTER_LIST: RFC 4456), NOTIFICATION, KEEPALIVE and ROUTE-REFRESH.
 *
 * As elsewhere in src/wire a Repr holds what the sender chooses; lengths are computed by emit and
 * checked by parse. How an UPDATE is laid out depends on what the session negotiated (2- or 4-octet
 * AS numbers in AS_PATH and AGGREGATOR, ADD-PATH path identifiers before each prefix, the largest
 * message): that is the `BgpCodec` both sides are given. parse(emit(x)) equals x, and the bytes BIRD
 * sends re-emit byte for byte (test/bgp-bird.test.ts). Malformed input throws a `BgpWireError` that
 * carries the NOTIFICATION error code and subcode RFC 4271 section 6 prescribes for it.
 */
import { cidrOf, formatCidr, intToIp4, ip4ToInt, prefixMask } from './addr.ts';
import { checkUint, get16, get32, put16, put32, WireError, type Parsed } from './bytes.ts';
import type { Ipv4Addr } from './types.ts';

export const BGP_PORT = 179;
export const BGP_HEADER_LEN = 19;
export const BGP_MARKER_LEN = 16;
/** the largest message of RFC 4271, and of a session that negotiated extended messages (RFC 8654) */
export const BGP_MAX_LEN = 4096;
export const BGP_MAX_EXTENDED_LEN = 65535;
/** the 2-octet My AS / AS_PATH stand-in for a 4-octet AS number (RFC 6793) */
export const AS_TRANS = 23456;

export const AFI_IPV4 = 1;
export const SAFI_UNICAST = 1;

export const BGP_MESSAGE_TYPE = {
  open: 1,
  update: 2,
  notification: 3,
  keepalive: 4,
  'route-refresh': 5,
} as const;

/** NOTIFICATION error codes (RFC 4271 4.5; 7 from RFC 7313) */
export const BGP_ERROR = {
  MESSAGE_HEADER: 1,
  OPEN_MESSAGE: 2,
  UPDATE_MESSAGE: 3,
  HOLD_TIMER_EXPIRED: 4,
  FSM: 5,
  CEASE: 6,
  ROUTE_REFRESH: 7,
} as const;

/** Message Header Error subcodes (RFC 4271 6.1) */
export const BGP_HEADER_ERROR = {
  CONNECTION_NOT_SYNCHRONIZED: 1,
  BAD_MESSAGE_LENGTH: 2,
  BAD_MESSAGE_TYPE: 3,
} as const;

/** OPEN Message Error subcodes (RFC 4271 6.2; 7 from RFC 5492) */
export const BGP_OPEN_ERROR = {
  UNSPECIFIC: 0,
  UNSUPPORTED_VERSION: 1,
  BAD_PEER_AS: 2,
  BAD_BGP_IDENTIFIER: 3,
  UNSUPPORTED_OPTIONAL_PARAMETER: 4,
  UNACCEPTABLE_HOLD_TIME: 6,
  UNSUPPORTED_CAPABILITY: 7,
} as const;

/** UPDATE Message Error subcodes (RFC 4271 6.3) */
export const BGP_UPDATE_ERROR = {
  MALFORMED_ATTRIBUTE_LIST: 1,
  UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: 2,
  MISSING_WELL_KNOWN_ATTRIBUTE: 3,
  ATTRIBUTE_FLAGS_ERROR: 4,
  ATTRIBUTE_LENGTH_ERROR: 5,
  INVALID_ORIGIN_ATTRIBUTE: 6,
  INVALID_NEXT_HOP_ATTRIBUTE: 8,
  OPTIONAL_ATTRIBUTE_ERROR: 9,
  INVALID_NETWORK_FIELD: 10,
  MALFORMED_AS_PATH: 11,
} as const;

/** Cease subcodes (RFC 4486) */
export const BGP_CEASE = {
  MAX_PREFIXES: 1,
  ADMINISTRATIVE_SHUTDOWN: 2,
  PEER_DECONFIGURED: 3,
  ADMINISTRATIVE_RESET: 4,
  CONNECTION_REJECTED: 5,
  OTHER_CONFIGURATION_CHANGE: 6,
  CONNECTION_COLLISION_RESOLUTION: 7,
  OUT_OF_RESOURCES: 8,
  HARD_RESET: 9,
} as const;

/** What the session negotiated, which decides how UPDATEs are laid out. */
export interface BgpCodec {
  /** both sides sent the 4-octet AS capability: AS_PATH and AGGREGATOR carry 4-octet AS numbers */
  as4: boolean;
  /** ADD-PATH for IPv4 unicast in this direction: every prefix is preceded by a 4-octet path id */
  addPath: boolean;
  /** both sides sent the extended message capability: messages up to 65535 octets */
  extendedMessages?: boolean;
}

/** A session of two RFC 6793 speakers without ADD-PATH. */
export const BGP_CODEC_DEFAULT: BgpCodec = { as4: true, addPath: false };

/** A malformed message, with the NOTIFICATION (code, subcode, data) RFC 4271 answers it with. */
export class BgpWireError extends WireError {
  constructor(
    message: string,
    readonly code: number,
    readonly subcode: number,
    readonly data: Uint8Array = new Uint8Array(0),
  ) {
    super(message);
  }
}

/* ---------- Reprs ---------- */

export type BgpMessage = BgpOpen | BgpUpdate | BgpNotification | BgpKeepalive | BgpRouteRefresh;

export interface BgpOpen {
  kind: 'open';
  version: number;
  /** the 2-octet My Autonomous System field (AS_TRANS when the real AS needs 4 octets) */
  myAs: number;
  holdTime: number;
  bgpId: Ipv4Addr;
  /** optional parameters in order; BIRD sends all its capabilities in one */
  params: BgpOptParam[];
}

export type BgpOptParam =
  { kind: 'capabilities'; caps: BgpCapability[] } | { kind: 'unknown'; type: number; data: Uint8Array };

export interface BgpFamily {
  afi: number;
  safi: number;
}

export type BgpCapability =
  | ({ kind: 'multiprotocol' } & BgpFamily)
  | { kind: 'route-refresh' }
  | { kind: 'extended-message' }
  | {
      kind: 'graceful-restart';
      /** R: the sender has restarted */
      restarting: boolean;
      /** N: the sender does graceful restart for NOTIFICATIONs too (RFC 8538) */
      notification: boolean;
      /** seconds, 12 bits */
      time: number;
      families: (BgpFamily & { forwarding: boolean })[];
    }
  | { kind: 'as4'; asn: number }
  | { kind: 'add-path'; families: (BgpFamily & { sendReceive: 'receive' | 'send' | 'both' })[] }
  | { kind: 'enhanced-route-refresh' }
  | {
      kind: 'long-lived-graceful-restart';
      /** F: forwarding state preserved; staleTime: seconds, 24 bits */
      families: (BgpFamily & { forwarding: boolean; staleTime: number })[];
    }
  | { kind: 'unknown'; code: number; data: Uint8Array };

export interface BgpUpdate {
  kind: 'update';
  withdrawn: BgpPrefix[];
  attrs: BgpAttr[];
  nlri: BgpPrefix[];
}

export interface BgpPrefix {
  /** "10.244.0.0/26", host bits clear */
  prefix: string;
  /** the ADD-PATH path identifier, present exactly when the codec has addPath */
  pathId?: number;
}

export interface AsPathSegment {
  kind: 'set' | 'sequence' | 'confed-sequence' | 'confed-set';
  asns: number[];
}

/** the attribute's own value; `partial` and `extendedLength` are its flags where they are set */
export type BgpAttr = (
  | { kind: 'origin'; origin: 'igp' | 'egp' | 'incomplete' }
  | { kind: 'as-path'; segments: AsPathSegment[] }
  | { kind: 'next-hop'; nextHop: Ipv4Addr }
  | { kind: 'med'; med: number }
  | { kind: 'local-pref'; localPref: number }
  | { kind: 'atomic-aggregate' }
  | { kind: 'aggregator'; asn: number; address: Ipv4Addr }
  | { kind: 'communities'; communities: number[] }
  | { kind: 'originator-id'; originatorId: Ipv4Addr }
  | { kind: 'cluster-list'; clusterList: Ipv4Addr[] }
  | { kind: 'as4-path'; segments: AsPathSegment[] }
  | { kind: 'as4-aggregator'; asn: number; address: Ipv4Addr }
  /** any other attribute: `optional` and `transitive` are its flags */
  | { kind: 'unknown'; code: number; optional: boolean; transitive: boolean; data: Uint8Array }
) & {
  /** the Partial flag (only optional transitive attributes may set it) */
  partial?: true;
  /** the Extended Length flag on a value that would fit a 1-octet length */
  extendedLength?: true;
};

export interface BgpNotification {
  kind: 'notification';
  code: number;
  subcode: number;
  data: Uint8Array;
}

export interface BgpKeepalive {
  kind: 'keepalive';
}

export interface BgpRouteRefresh {
  kind: 'route-refresh';
  afi: number;
  /** 0 normal request, 1 Beginning of Route Refresh, 2 End of Route Refresh (RFC 7313) */
  subtype: number;
  safi: number;
}

/* ---------- tables ---------- */

const CAP = {
  multiprotocol: 1,
  'route-refresh': 2,
  'extended-message': 6,
  'graceful-restart': 64,
  as4: 65,
  'add-path': 69,
  'enhanced-route-refresh': 70,
  'long-lived-graceful-restart': 71,
} as const;
const CAP_BY_CODE = new Map<number, keyof typeof CAP>(
  Object.entries(CAP).map(([k, v]) => [v, k as keyof typeof CAP]),
);
const CAP_NAME: Record<keyof typeof CAP, string> = {
  multiprotocol: 'multiprotocol',
  'route-refresh': 'route refresh',
  'extended-message': 'extended message',
  'graceful-restart': 'graceful restart',
  as4: '4-octet AS',
  'add-path': 'ADD-PATH',
  'enhanced-route-refresh': 'enhanced route refresh',
  'long-lived-graceful-restart': 'long-lived graceful restart',
};

const OPTIONAL = 0x80;
const TRANSITIVE = 0x40;
const PARTIAL = 0x20;
const EXTENDED = 0x10;

type KnownAttr = Exclude<BgpAttr['kind'], 'unknown'>;
/** type code and the Optional/Transitive flags RFC 4271 5 (and RFCs 1997, 4456, 6793) fix for each */
const ATTR: Record<KnownAttr, { code: number; flags: number; name: string }> = {
  origin: { code: 1, flags: TRANSITIVE, name: 'ORIGIN' },
  'as-path': { code: 2, flags: TRANSITIVE, name: 'AS_PATH' },
  'next-hop': { code: 3, flags: TRANSITIVE, name: 'NEXT_HOP' },
  med: { code: 4, flags: OPTIONAL, name: 'MULTI_EXIT_DISC' },
  'local-pref': { code: 5, flags: TRANSITIVE, name: 'LOCAL_PREF' },
  'atomic-aggregate': { code: 6, flags: TRANSITIVE, name: 'ATOMIC_AGGREGATE' },
  aggregator: { code: 7, flags: OPTIONAL | TRANSITIVE, name: 'AGGREGATOR' },
  communities: { code: 8, flags: OPTIONAL | TRANSITIVE, name: 'COMMUNITIES' },
  'originator-id': { code: 9, flags: OPTIONAL, name: 'ORIGINATOR_ID' },
  'cluster-list': { code: 10, flags: OPTIONAL, name: 'CLUSTER_LIST' },
  'as4-path': { code: 17, flags: OPTIONAL | TRANSITIVE, name: 'AS4_PATH' },
  'as4-aggregator': { code: 18, flags: OPTIONAL | TRANSITIVE, name: 'AS4_AGGREGATOR' },
};
const ATTR_BY_CODE = new Map<number, KnownAttr>(
  Object.entries(ATTR).map(([k, v]) => [v.code, k as KnownAttr]),
);
/** an attribute's type code (BIRD writes the attributes of an UPDATE in ascending code order) */
export function bgpAttrCode(a: BgpAttr): number {
  return a.kind === 'unknown' ? a.code : ATTR[a.kind].code;
}
const ORIGINS = ['igp', 'egp', 'incomplete'] as const;
const SEGMENTS = ['set', 'sequence', 'confed-sequence', 'confed-set'] as const;
const SEND_RECEIVE = ['receive', 'send', 'both'] as const;

const HEADER = BGP_ERROR.MESSAGE_HEADER;
const OPEN = BGP_ERROR.OPEN_MESSAGE;
const UPDATE = BGP_ERROR.UPDATE_MESSAGE;

const u16 = (v: number) => Uint8Array.of(v >>> 8, v & 0xff);

function attrName(code: number): string {
  const k = ATTR_BY_CODE.get(code);
  return k ? ATTR[k].name : `attribute ${code}`;
}

/* ---------- lengths ---------- */

function capLength(c: BgpCapability): number {
  switch (c.kind) {
    case 'multiprotocol':
    case 'as4':
      return 4;
    case 'route-refresh':
    case 'extended-message':
    case 'enhanced-route-refresh':
      return 0;
    case 'graceful-restart':
      return 2 + 4 * c.families.length;
    case 'add-path':
      return 4 * c.families.length;
    case 'long-lived-graceful-restart':
      return 7 * c.families.length;
    case 'unknown':
      return c.data.length;
  }
}

function paramLength(p: BgpOptParam): number {
  if (p.kind === 'unknown') return p.data.length;
  let n = 0;
  for (const c of p.caps) n += 2 + capLength(c);
  return n;
}

/** Octets a prefix takes in an UPDATE (its path id under ADD-PATH, the length, the prefix octets). */
export function prefixBytes(p: BgpPrefix, codec: BgpCodec): number {
  const c = cidrOf(p.prefix);
  return (codec.addPath ? 4 : 0) + 1 + (c ? Math.ceil(c.len / 8) : 0);
}

function segmentsLength(segs: AsPathSegment[], asSize: number): number {
  let n = 0;
  for (const s of segs) n += 2 + asSize * s.asns.length;
  return n;
}

function attrValueLength(a: BgpAttr, codec: BgpCodec): number {
  switch (a.kind) {
    case 'origin':
      return 1;
    case 'as-path':
      return segmentsLength(a.segments, codec.as4 ? 4 : 2);
    case 'as4-path':
      return segmentsLength(a.segments, 4);
    case 'next-hop':
    case 'med':
    case 'local-pref':
    case 'originator-id':
      return 4;
    case 'atomic-aggregate':
      return 0;
    case 'aggregator':
      return codec.as4 ? 8 : 6;
    case 'as4-aggregator':
      return 8;
    case 'communities':
      return 4 * a.communities.length;
    case 'cluster-list':
      return 4 * a.clusterList.length;
    case 'unknown':
      return a.data.length;
  }
}

function attrLength(a: BgpAttr, codec: BgpCodec): number {
  const v = attrValueLength(a, codec);
  return (v > 255 || a.extendedLength ? 4 : 3) + v;
}

/** Octets emitBgp writes for `m`, the 19-octet header included. */
export function bgpLength(m: BgpMessage, codec: BgpCodec = BGP_CODEC_DEFAULT): number {
  switch (m.kind) {
    case 'open': {
      let n = BGP_HEADER_LEN + 10;
      for (const p of m.params) n += 2 + paramLength(p);
      return n;
    }
    case 'update': {
      let n = BGP_HEADER_LEN + 4;
      for (const p of m.withdrawn) n += prefixBytes(p, codec);
      for (const a of m.attrs) n += attrLength(a, codec);
      for (const p of m.nlri) n += prefixBytes(p, codec);
      return n;
    }
    case 'notification':
      return BGP_HEADER_LEN + 2 + m.data.length;
    case 'keepalive':
      return BGP_HEADER_LEN;
    case 'route-refresh':
      return BGP_HEADER_LEN + 4;
  }
}

/* ---------- emit ---------- */

export function emitBgp(m: BgpMessage, codec: BgpCodec = BGP_CODEC_DEFAULT): Uint8Array {
  const buf = new Uint8Array(bgpLength(m, codec));
  writeBgp(m, buf, 0, codec);
  return buf;
}

/** Writes `m` into buf at `off`; returns the end offset. Throws a WireError on out-of-range fields. */
export function writeBgp(
  m: BgpMessage,
  buf: Uint8Array,
  off: number,
  codec: BgpCodec = BGP_CODEC_DEFAULT,
): number {
  const len = bgpLength(m, codec);
  const max = codec.extendedMessages ? BGP_MAX_EXTENDED_LEN : BGP_MAX_LEN;
  if (len > max) throw new WireError(`BGP ${m.kind} message of ${len} octets exceeds ${max}`);
  if (off + len > buf.length)
    throw new WireError(`writeBgp: message of ${len} octets does not fit at offset ${off}`);
  buf.fill(0xff, off, off + BGP_MARKER_LEN);
  put16(buf, off + 16, len);
  buf[off + 18] = BGP_MESSAGE_TYPE[m.kind];
  const w = new Writer(buf, off + BGP_HEADER_LEN);
  switch (m.kind) {
    case 'open':
      checkUint('BGP version', m.version, 0xff);
      checkUint('BGP My AS', m.myAs, 0xffff);
      checkUint('BGP hold time', m.holdTime, 0xffff);
      w.u8(m.version);
      w.u16(m.myAs);
      w.u16(m.holdTime);
      w.ip(m.bgpId);
      w.u8(checkedLen('BGP optional parameters', len - BGP_HEADER_LEN - 10, 0xff));
      for (const p of m.params) writeParam(w, p);
      break;
    case 'update': {
      const wStart = w.i;
      w.u16(0);
      for (const p of m.withdrawn) writePrefix(w, p, codec);
      put16(buf, wStart, checkedLen('BGP withdrawn routes', w.i - wStart - 2, 0xffff));
      const aStart = w.i;
      w.u16(0);
      for (const a of m.attrs) writeAttr(w, a, codec);
      put16(buf, aStart, checkedLen('BGP path attributes', w.i - aStart - 2, 0xffff));
      for (const p of m.nlri) writePrefix(w, p, codec);
      break;
    }
    case 'notification':
      checkUint('BGP error code', m.code, 0xff);
      checkUint('BGP error subcode', m.subcode, 0xff);
      w.u8(m.code);
      w.u8(m.subcode);
      w.bytes(m.data);
      break;
    case 'keepalive':
      break;
    case 'route-refresh':
      checkUint('BGP AFI', m.afi, 0xffff);
      checkUint('BGP route refresh subtype', m.subtype, 0xff);
      checkUint('BGP SAFI', m.safi, 0xff);
      w.u16(m.afi);
      w.u8(m.subtype);
      w.u8(m.safi);
      break;
  }
  return off + len;
}

function checkedLen(what: string, n: number, max: number): number {
  if (n > max) throw new WireError(`${what}: ${n} octets exceed ${max}`);
  return n;
}

class Writer {
  constructor(
    readonly buf: Uint8Array,
    public i: number,
  ) {}
  u8(v: number): void {
    this.buf[this.i++] = v;
  }
  u16(v: number): void {
    put16(this.buf, this.i, v);
    this.i += 2;
  }
  u32(v: number): void {
    put32(this.buf, this.i, v);
    this.i += 4;
  }
  ip(a: Ipv4Addr): void {
    let v: number;
    try {
      v = ip4ToInt(a);
    } catch (e) {
      throw new WireError((e as Error).message);
    }
    this.u32(v);
  }
  bytes(b: Uint8Array): void {
    this.buf.set(b, this.i);
    this.i += b.length;
  }
}

function writeFamily(w: Writer, f: BgpFamily): void {
  checkUint('BGP AFI', f.afi, 0xffff);
  checkUint('BGP SAFI', f.safi, 0xff);
  w.u16(f.afi);
}

function writeParam(w: Writer, p: BgpOptParam): void {
  const n = checkedLen('BGP optional parameter', paramLength(p), 0xff);
  if (p.kind === 'unknown') {
    checkUint('BGP optional parameter type', p.type, 0xff);
    if (p.type === 2)
      throw new WireError('BGP optional parameter type 2 is capabilities: use kind "capabilities"');
    w.u8(p.type);
    w.u8(n);
    w.bytes(p.data);
    return;
  }
  w.u8(2);
  w.u8(n);
  for (const c of p.caps) {
    const code = c.kind === 'unknown' ? c.code : CAP[c.kind];
    checkUint('BGP capability code', code, 0xff);
    if (c.kind === 'unknown' && CAP_BY_CODE.has(code))
      throw new WireError(`BGP capability ${code} is ${CAP_NAME[CAP_BY_CODE.get(code)!]}: use its kind`);
    w.u8(code);
    w.u8(checkedLen('BGP capability', capLength(c), 0xff));
    switch (c.kind) {
      case 'multiprotocol':
        writeFamily(w, c);
        w.u8(0);
        w.u8(c.safi);
        break;
      case 'graceful-restart':
        checkUint('BGP graceful restart time', c.time, 0xfff);
        w.u16((c.restarting ? 0x8000 : 0) | (c.notification ? 0x4000 : 0) | c.time);
        for (const f of c.families) {
          writeFamily(w, f);
          w.u8(f.safi);
          w.u8(f.forwarding ? 0x80 : 0);
        }
        break;
      case 'as4':
        checkUint('BGP 4-octet AS', c.asn, 0xffffffff);
        w.u32(c.asn);
        break;
      case 'add-path':
        for (const f of c.families) {
          writeFamily(w, f);
          w.u8(f.safi);
          w.u8(SEND_RECEIVE.indexOf(f.sendReceive) + 1);
        }
        break;
      case 'long-lived-graceful-restart':
        for (const f of c.families) {
          writeFamily(w, f);
          w.u8(f.safi);
          w.u8(f.forwarding ? 0x80 : 0);
          checkUint('BGP long-lived stale time', f.staleTime, 0xffffff);
          w.u8(f.staleTime >>> 16);
          w.u16(f.staleTime & 0xffff);
        }
        break;
      case 'unknown':
        w.bytes(c.data);
        break;
      default:
        break;
    }
  }
}

function writePrefix(w: Writer, p: BgpPrefix, codec: BgpCodec): void {
  const c = cidrOf(p.prefix);
  if (!c) throw new WireError(`BGP prefix ${JSON.stringify(p.prefix)} is not a.b.c.d/len`);
  if ((c.addr & ~prefixMask(c.len)) >>> 0) throw new WireError(`BGP prefix ${p.prefix} has host bits set`);
  if (codec.addPath) {
    if (p.pathId === undefined) throw new WireError(`BGP prefix ${p.prefix} needs a path id (ADD-PATH)`);
    checkUint('BGP path id', p.pathId, 0xffffffff);
    w.u32(p.pathId);
  } else if (p.pathId !== undefined)
    throw new WireError(`BGP prefix ${p.prefix} has a path id but the session has no ADD-PATH`);
  w.u8(c.len);
  for (let i = 0; i < Math.ceil(c.len / 8); i++) w.u8(c.addr >>> (24 - 8 * i));
}

function writeSegments(w: Writer, segs: AsPathSegment[], asSize: number): void {
  for (const s of segs) {
    if (s.asns.length === 0 || s.asns.length > 255)
      throw new WireError(`BGP AS_PATH segment of ${s.asns.length} AS numbers (1..255)`);
    w.u8(SEGMENTS.indexOf(s.kind) + 1);
    w.u8(s.asns.length);
    for (const a of s.asns) {
      checkUint(
        asSize === 4 ? 'BGP AS number' : 'BGP 2-octet AS number',
        a,
        asSize === 4 ? 0xffffffff : 0xffff,
      );
      if (asSize === 4) w.u32(a);
      else w.u16(a);
    }
  }
}

function writeAttr(w: Writer, a: BgpAttr, codec: BgpCodec): void {
  const v = attrValueLength(a, codec);
  let flags: number;
  let code: number;
  if (a.kind === 'unknown') {
    checkUint('BGP attribute type', a.code, 0xff);
    if (ATTR_BY_CODE.has(a.code))
      throw new WireError(`BGP attribute ${a.code} is ${attrName(a.code)}: use its kind`);
    code = a.code;
    flags = (a.optional ? OPTIONAL : 0) | (a.transitive ? TRANSITIVE : 0);
  } else {
    code = ATTR[a.kind].code;
    flags = ATTR[a.kind].flags;
  }
  if (a.partial) {
    if ((flags & (OPTIONAL | TRANSITIVE)) !== (OPTIONAL | TRANSITIVE))
      throw new WireError(`BGP ${attrName(code)}: only optional transitive attributes may be partial`);
    flags |= PARTIAL;
  }
  const ext = v > 255 || a.extendedLength === true;
  if (ext) flags |= EXTENDED;
  w.u8(flags);
  w.u8(code);
  if (ext) w.u16(v);
  else w.u8(v);
  switch (a.kind) {
    case 'origin':
      w.u8(ORIGINS.indexOf(a.origin));
      break;
    case 'as-path':
      writeSegments(w, a.segments, codec.as4 ? 4 : 2);
      break;
    case 'as4-path':
      writeSegments(w, a.segments, 4);
      break;
    case 'next-hop':
      w.ip(a.nextHop);
      break;
    case 'med':
      checkUint('BGP MULTI_EXIT_DISC', a.med, 0xffffffff);
      w.u32(a.med);
      break;
    case 'local-pref':
      checkUint('BGP LOCAL_PREF', a.localPref, 0xffffffff);
      w.u32(a.localPref);
      break;
    case 'atomic-aggregate':
      break;
    case 'aggregator':
    case 'as4-aggregator': {
      const four = a.kind === 'as4-aggregator' || codec.as4;
      checkUint(`BGP ${ATTR[a.kind].name} AS`, a.asn, four ? 0xffffffff : 0xffff);
      if (four) w.u32(a.asn);
      else w.u16(a.asn);
      w.ip(a.address);
      break;
    }
    case 'communities':
      for (const c of a.communities) {
        checkUint('BGP community', c, 0xffffffff);
        w.u32(c);
      }
      break;
    case 'originator-id':
      w.ip(a.originatorId);
      break;
    case 'cluster-list':
      for (const id of a.clusterList) w.ip(id);
      break;
    case 'unknown':
      w.bytes(a.data);
      break;
  }
}

/* ---------- parse ---------- */

/**
 * When buf[off, end) starts with a whole message, its length; undefined when more octets are
 * needed. Checks the marker and the length field as soon as the header is there.
 */
export function bgpFrameLength(
  buf: Uint8Array,
  off: number,
  end: number,
  codec: BgpCodec = BGP_CODEC_DEFAULT,
): number | undefined {
  if (end - off < BGP_HEADER_LEN) return undefined;
  for (let i = 0; i < BGP_MARKER_LEN; i++)
    if (buf[off + i] !== 0xff)
      throw new BgpWireError(
        `BGP marker is not all ones (octet ${i} is 0x${buf[off + i].toString(16).padStart(2, '0')})`,
        HEADER,
        BGP_HEADER_ERROR.CONNECTION_NOT_SYNCHRONIZED,
      );
  const len = get16(buf, off + 16);
  const max = codec.extendedMessages ? BGP_MAX_EXTENDED_LEN : BGP_MAX_LEN;
  if (len < BGP_HEADER_LEN || len > max)
    throw new BgpWireError(
      `BGP message length ${len} outside ${BGP_HEADER_LEN}..${max}`,
      HEADER,
      BGP_HEADER_ERROR.BAD_MESSAGE_LENGTH,
      u16(len),
    );
  return end - off < len ? undefined : len;
}

const MIN_LEN: Record<number, [number, number]> = {
  1: [29, Infinity],
  2: [23, Infinity],
  3: [21, Infinity],
  4: [19, 19],
  5: [23, 23],
};
const KIND_BY_TYPE = new Map<number, BgpMessage['kind']>(
  Object.entries(BGP_MESSAGE_TYPE).map(([k, v]) => [v, k as BgpMessage['kind']]),
);

/**
 * Parses the message at buf[off, end): `repr` is the message, [payloadOff, payloadEnd) its body
 * after the 19-octet header (payloadEnd is where the next message starts).
 */
export function parseBgp(
  buf: Uint8Array,
  off: number,
  end: number,
  codec: BgpCodec = BGP_CODEC_DEFAULT,
): Parsed<BgpMessage> {
  if (end - off < BGP_HEADER_LEN)
    throw new BgpWireError(
      `BGP header truncated: need ${BGP_HEADER_LEN} octets, have ${Math.max(0, end - off)}`,
      HEADER,
      BGP_HEADER_ERROR.BAD_MESSAGE_LENGTH,
    );
  const len = bgpFrameLength(buf, off, end, codec);
  if (len === undefined || off + len > end)
    throw new BgpWireError(
      `BGP message truncated: length field says ${get16(buf, off + 16)} octets, have ${end - off}`,
      HEADER,
      BGP_HEADER_ERROR.BAD_MESSAGE_LENGTH,
      u16(get16(buf, off + 16)),
    );
  const type = buf[off + 18];
  const kind = KIND_BY_TYPE.get(type);
  if (!kind)
    throw new BgpWireError(
      `BGP message type ${type} unknown`,
      HEADER,
      BGP_HEADER_ERROR.BAD_MESSAGE_TYPE,
      Uint8Array.of(type),
    );
  const [min, max] = MIN_LEN[type];
  if (len < min || len > max)
    throw new BgpWireError(
      `BGP ${kind} message length ${len}, ${min === max ? `must be ${min}` : `at least ${min}`}`,
      HEADER,
      BGP_HEADER_ERROR.BAD_MESSAGE_LENGTH,
      u16(len),
    );
  const s = off + BGP_HEADER_LEN;
  const e = off + len;
  let repr: BgpMessage;
  switch (kind) {
    case 'open':
      repr = parseOpen(buf, s, e);
      break;
    case 'update':
      repr = parseUpdate(buf, s, e, codec);
      break;
    case 'notification':
      repr = { kind, code: buf[s], subcode: buf[s + 1], data: buf.slice(s + 2, e) };
      break;
    case 'keepalive':
      repr = { kind };
      break;
    case 'route-refresh':
      repr = { kind, afi: get16(buf, s), subtype: buf[s + 2], safi: buf[s + 3] };
      break;
  }
  return { repr, payloadOff: s, payloadEnd: e };
}

/** Every message in buf[off, end), which must end on a message boundary. */
export function parseBgpStream(
  buf: Uint8Array,
  codec: BgpCodec = BGP_CODEC_DEFAULT,
  off = 0,
  end = buf.length,
): BgpMessage[] {
  const out: BgpMessage[] = [];
  while (off < end) {
    const p = parseBgp(buf, off, end, codec);
    out.push(p.repr);
    off = p.payloadEnd;
  }
  return out;
}

function parseOpen(b: Uint8Array, s: number, e: number): BgpOpen {
  const optLen = b[s + 9];
  if (s + 10 + optLen !== e)
    throw new BgpWireError(
      `BGP OPEN optional parameters length ${optLen} does not match the ${e - s - 10} octets after it`,
      HEADER,
      BGP_HEADER_ERROR.BAD_MESSAGE_LENGTH,
      u16(e - s + BGP_HEADER_LEN),
    );
  const params: BgpOptParam[] = [];
  for (let i = s + 10; i < e;) {
    if (i + 2 > e)
      throw new BgpWireError('BGP OPEN optional parameter truncated', OPEN, BGP_OPEN_ERROR.UNSPECIFIC);
    const type = b[i];
    const n = b[i + 1];
    if (type === 255)
      throw new BgpWireError(
        'BGP OPEN extended optional parameters (RFC 9072) are not supported',
        OPEN,
        BGP_OPEN_ERROR.UNSPECIFIC,
      );
    if (i + 2 + n > e)
      throw new BgpWireError(
        `BGP OPEN optional parameter ${type} truncated: length ${n}, ${e - i - 2} octets left`,
        OPEN,
        BGP_OPEN_ERROR.UNSPECIFIC,
      );
    params.push(
      type === 2
        ? { kind: 'capabilities', caps: parseCaps(b, i + 2, i + 2 + n) }
        : { kind: 'unknown', type, data: b.slice(i + 2, i + 2 + n) },
    );
    i += 2 + n;
  }
  return {
    kind: 'open',
    version: b[s],
    myAs: get16(b, s + 1),
    holdTime: get16(b, s + 3),
    bgpId: intToIp4(get32(b, s + 5)),
    params,
  };
}

function parseCaps(b: Uint8Array, s: number, e: number): BgpCapability[] {
  const caps: BgpCapability[] = [];
  for (let i = s; i < e;) {
    if (i + 2 > e) throw new BgpWireError('BGP capability truncated', OPEN, BGP_OPEN_ERROR.UNSPECIFIC);
    const code = b[i];
    const n = b[i + 1];
    const v = i + 2;
    if (v + n > e)
      throw new BgpWireError(
        `BGP capability ${code} truncated: length ${n}, ${e - v} octets left`,
        OPEN,
        BGP_OPEN_ERROR.UNSPECIFIC,
      );
    const kind = CAP_BY_CODE.get(code);
    const bad = (want: string) =>
      new BgpWireError(
        `BGP capability ${code} (${CAP_NAME[kind!]}) length ${n}, expected ${want}`,
        OPEN,
        BGP_OPEN_ERROR.UNSPECIFIC,
      );
    const fixed = (want: number) => {
      if (n !== want) throw bad(String(want));
    };
    switch (kind) {
      case 'multiprotocol':
        fixed(4);
        caps.push({ kind, afi: get16(b, v), safi: b[v + 3] });
        break;
      case 'route-refresh':
      case 'extended-message':
      case 'enhanced-route-refresh':
        fixed(0);
        caps.push({ kind });
        break;
      case 'graceful-restart': {
        if (n < 2 || (n - 2) % 4) throw bad('2 + 4n');
        const families: (BgpFamily & { forwarding: boolean })[] = [];
        for (let j = v + 2; j < v + n; j += 4)
          families.push({ afi: get16(b, j), safi: b[j + 2], forwarding: (b[j + 3] & 0x80) !== 0 });
        const f = get16(b, v);
        caps.push({
          kind,
          restarting: (f & 0x8000) !== 0,
          notification: (f & 0x4000) !== 0,
          time: f & 0xfff,
          families,
        });
        break;
      }
      case 'as4':
        fixed(4);
        caps.push({ kind, asn: get32(b, v) });
        break;
      case 'add-path': {
        if (n % 4) throw bad('4n');
        const families: (BgpFamily & { sendReceive: 'receive' | 'send' | 'both' })[] = [];
        for (let j = v; j < v + n; j += 4) {
          const sr = SEND_RECEIVE[b[j + 3] - 1];
          if (!sr)
            throw new BgpWireError(
              `BGP ADD-PATH send/receive value ${b[j + 3]} (1..3)`,
              OPEN,
              BGP_OPEN_ERROR.UNSPECIFIC,
            );
          families.push({ afi: get16(b, j), safi: b[j + 2], sendReceive: sr });
        }
        caps.push({ kind, families });
        break;
      }
      case 'long-lived-graceful-restart': {
        if (n % 7) throw bad('7n');
        const families: (BgpFamily & { forwarding: boolean; staleTime: number })[] = [];
        for (let j = v; j < v + n; j += 7)
          families.push({
            afi: get16(b, j),
            safi: b[j + 2],
            forwarding: (b[j + 3] & 0x80) !== 0,
            staleTime: (b[j + 4] << 16) | get16(b, j + 5),
          });
        caps.push({ kind, families });
        break;
      }
      default:
        caps.push({ kind: 'unknown', code, data: b.slice(v, v + n) });
    }
    i = v + n;
  }
  return caps;
}

function parsePrefixes(b: Uint8Array, s: number, e: number, codec: BgpCodec, what: string): BgpPrefix[] {
  const out: BgpPrefix[] = [];
  const err = (m: string) =>
    new BgpWireError(`BGP ${what}: ${m}`, UPDATE, BGP_UPDATE_ERROR.INVALID_NETWORK_FIELD);
  for (let i = s; i < e;) {
    let pathId: number | undefined;
    if (codec.addPath) {
      if (i + 4 > e) throw err(`path id truncated at octet ${i - s}`);
      pathId = get32(b, i);
      i += 4;
    }
    if (i >= e) throw err(`prefix length missing at octet ${i - s}`);
    const len = b[i++];
    if (len > 32) throw err(`prefix length ${len} > 32`);
    const n = Math.ceil(len / 8);
    if (i + n > e) throw err(`prefix /${len} truncated: needs ${n} octets, ${e - i} left`);
    let addr = 0;
    for (let j = 0; j < 4; j++) addr = addr * 256 + (j < n ? b[i + j] : 0);
    // RFC 4271 4.3: the trailing bits of the last octet are irrelevant
    const prefix = formatCidr((addr & prefixMask(len)) >>> 0, len);
    out.push(pathId === undefined ? { prefix } : { prefix, pathId });
    i += n;
  }
  return out;
}

function parseUpdate(b: Uint8Array, s: number, e: number, codec: BgpCodec): BgpUpdate {
  const malformed = (m: string) =>
    new BgpWireError(`BGP UPDATE ${m}`, UPDATE, BGP_UPDATE_ERROR.MALFORMED_ATTRIBUTE_LIST);
  const wLen = get16(b, s);
  if (s + 2 + wLen + 2 > e)
    throw malformed(
      `withdrawn routes length ${wLen} leaves no room for the attributes length (${e - s - 2} octets)`,
    );
  const withdrawn = parsePrefixes(b, s + 2, s + 2 + wLen, codec, 'withdrawn routes');
  const a = s + 2 + wLen;
  const aLen = get16(b, a);
  if (a + 2 + aLen > e)
    throw malformed(`path attributes length ${aLen} exceeds the ${e - a - 2} octets left`);
  const attrs: BgpAttr[] = [];
  const seen = new Set<number>();
  for (let i = a + 2; i < a + 2 + aLen;) {
    const end = a + 2 + aLen;
    if (i + 3 > end) throw malformed(`attribute header truncated at octet ${i - a - 2}`);
    const flags = b[i];
    const code = b[i + 1];
    const ext = (flags & EXTENDED) !== 0;
    if (ext && i + 4 > end) throw malformed(`attribute header truncated at octet ${i - a - 2}`);
    const n = ext ? get16(b, i + 2) : b[i + 2];
    const v = i + (ext ? 4 : 3);
    if (v + n > end)
      throw new BgpWireError(
        `BGP UPDATE ${attrName(code)} length ${n} exceeds the ${end - v} attribute octets left`,
        UPDATE,
        BGP_UPDATE_ERROR.ATTRIBUTE_LENGTH_ERROR,
        b.slice(i, Math.min(end, v + n)),
      );
    if (seen.has(code)) throw malformed(`${attrName(code)} appears twice`);
    seen.add(code);
    const attr = parseAttr(b, flags, code, v, n, codec, b.slice(i, v + n));
    if (flags & PARTIAL) attr.partial = true;
    if (ext && n <= 255) attr.extendedLength = true;
    attrs.push(attr);
    i = v + n;
  }
  const nlri = parsePrefixes(b, a + 2 + aLen, e, codec, 'NLRI');
  return { kind: 'update', withdrawn, attrs, nlri };
}

function parseSegments(b: Uint8Array, v: number, n: number, asSize: number, name: string): AsPathSegment[] {
  const segs: AsPathSegment[] = [];
  const bad = (m: string) =>
    new BgpWireError(`BGP UPDATE ${name} ${m}`, UPDATE, BGP_UPDATE_ERROR.MALFORMED_AS_PATH);
  for (let i = v; i < v + n;) {
    if (i + 2 > v + n) throw bad('segment header truncated');
    const kind = SEGMENTS[b[i] - 1];
    const count = b[i + 1];
    if (!kind) throw bad(`segment type ${b[i]} (1..4)`);
    if (count === 0) throw bad('segment of 0 AS numbers');
    if (i + 2 + count * asSize > v + n)
      throw bad(`segment of ${count} AS numbers truncated (${asSize} octets each, ${v + n - i - 2} left)`);
    const asns: number[] = [];
    for (let j = 0; j < count; j++)
      asns.push(asSize === 4 ? get32(b, i + 2 + 4 * j) : get16(b, i + 2 + 2 * j));
    segs.push({ kind, asns });
    i += 2 + count * asSize;
  }
  return segs;
}

function parseAttr(
  b: Uint8Array,
  flags: number,
  code: number,
  v: number,
  n: number,
  codec: BgpCodec,
  whole: Uint8Array,
): BgpAttr {
  const kind = ATTR_BY_CODE.get(code);
  if (!kind) {
    if (!(flags & OPTIONAL))
      throw new BgpWireError(
        `BGP UPDATE unrecognized well-known attribute ${code}`,
        UPDATE,
        BGP_UPDATE_ERROR.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
        whole,
      );
    return {
      kind: 'unknown',
      code,
      optional: true,
      transitive: (flags & TRANSITIVE) !== 0,
      data: b.slice(v, v + n),
    };
  }
  const spec = ATTR[kind];
  const okPartial = (spec.flags & (OPTIONAL | TRANSITIVE)) === (OPTIONAL | TRANSITIVE);
  if ((flags & (OPTIONAL | TRANSITIVE)) !== spec.flags || (flags & PARTIAL && !okPartial))
    throw new BgpWireError(
      `BGP UPDATE ${spec.name} flags 0x${flags.toString(16)}, expected 0x${spec.flags.toString(16)}`,
      UPDATE,
      BGP_UPDATE_ERROR.ATTRIBUTE_FLAGS_ERROR,
      whole,
    );
  const length = (ok: boolean, want: string) => {
    if (!ok)
      throw new BgpWireError(
        `BGP UPDATE ${spec.name} length ${n}, expected ${want}`,
        UPDATE,
        BGP_UPDATE_ERROR.ATTRIBUTE_LENGTH_ERROR,
        whole,
      );
  };
  switch (kind) {
    case 'origin': {
      length(n === 1, '1');
      const origin = ORIGINS[b[v]];
      if (!origin)
        throw new BgpWireError(
          `BGP UPDATE ORIGIN ${b[v]} (0 IGP, 1 EGP, 2 INCOMPLETE)`,
          UPDATE,
          BGP_UPDATE_ERROR.INVALID_ORIGIN_ATTRIBUTE,
          whole,
        );
      return { kind, origin };
    }
    case 'as-path':
      return { kind, segments: parseSegments(b, v, n, codec.as4 ? 4 : 2, spec.name) };
    case 'as4-path':
      return { kind, segments: parseSegments(b, v, n, 4, spec.name) };
    case 'next-hop':
      length(n === 4, '4');
      return { kind, nextHop: intToIp4(get32(b, v)) };
    case 'med':
      length(n === 4, '4');
      return { kind, med: get32(b, v) };
    case 'local-pref':
      length(n === 4, '4');
      return { kind, localPref: get32(b, v) };
    case 'atomic-aggregate':
      length(n === 0, '0');
      return { kind };
    case 'aggregator':
    case 'as4-aggregator': {
      const four = kind === 'as4-aggregator' || codec.as4;
      length(n === (four ? 8 : 6), four ? '8' : '6');
      return four
        ? { kind, asn: get32(b, v), address: intToIp4(get32(b, v + 4)) }
        : { kind, asn: get16(b, v), address: intToIp4(get32(b, v + 2)) };
    }
    case 'communities': {
      length(n % 4 === 0, 'a multiple of 4');
      const communities: number[] = [];
      for (let j = v; j < v + n; j += 4) communities.push(get32(b, j));
      return { kind, communities };
    }
    case 'originator-id':
      length(n === 4, '4');
      return { kind, originatorId: intToIp4(get32(b, v)) };
    case 'cluster-list': {
      length(n % 4 === 0, 'a multiple of 4');
      const clusterList: Ipv4Addr[] = [];
      for (let j = v; j < v + n; j += 4) clusterList.push(intToIp4(get32(b, j)));
      return { kind, clusterList };
    }
  }
}

/* ---------- helpers ---------- */

/** Every capability of an OPEN, across its optional parameters, in order. */
export function openCapabilities(o: BgpOpen): BgpCapability[] {
  return o.params.flatMap((p) => (p.kind === 'capabilities' ? p.caps : []));
}

/** The speaker's AS: the 4-octet AS capability when it sent one, else My AS. */
export function openAs(o: BgpOpen): number {
  for (const c of openCapabilities(o)) if (c.kind === 'as4') return c.asn;
  return o.myAs;
}

/**
 * The codec of the messages `sender` sends to `receiver`, from their OPENs: 4-octet AS numbers when
 * both sent the capability, ADD-PATH for IPv4 unicast when the sender may send and the receiver
 * receive (RFC 7911 4), extended messages when both sent the capability (RFC 8654).
 */
export function bgpCodecFor(sender: BgpOpen, receiver: BgpOpen): BgpCodec {
  const s = openCapabilities(sender);
  const r = openCapabilities(receiver);
  const has = (caps: BgpCapability[], kind: BgpCapability['kind']) => caps.some((c) => c.kind === kind);
  const addPath = (caps: BgpCapability[], dir: 'send' | 'receive') =>
    caps.some(
      (c) =>
        c.kind === 'add-path' &&
        c.families.some(
          (f) =>
            f.afi === AFI_IPV4 &&
            f.safi === SAFI_UNICAST &&
            (f.sendReceive === dir || f.sendReceive === 'both'),
        ),
    );
  const codec: BgpCodec = {
    as4: has(s, 'as4') && has(r, 'as4'),
    addPath: addPath(s, 'send') && addPath(r, 'receive'),
  };
  if (has(s, 'extended-message') && has(r, 'extended-message')) codec.extendedMessages = true;
  return codec;
}
