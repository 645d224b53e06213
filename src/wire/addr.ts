/** IPv4 / MAC address and prefix helpers. IPv4 addresses as numbers are unsigned 32-bit (`>>> 0`). */
import type { Ipv4Addr, MacAddr } from './types.ts';

/** A dotted quad ("10.244.0.5") as a uint32, strictly: four decimal octets 0..255, no leading zeros; else undefined. */
export function parseIp4(s: string): number | undefined {
  let v = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46; // end of string acts as a final '.'
    if (c >= 48 && c <= 57) {
      if (digits === 1 && octet === 0) return undefined; // leading zero
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return undefined;
    } else if (c === 46 && digits > 0 && dots < 4) {
      v = v * 256 + octet;
      octet = digits = 0;
      dots++;
    } else return undefined;
  }
  return dots === 4 ? v : undefined;
}

/** dotted quads parsed by string, −1 for one parseIp4 refuses: the tuples of a walk name a handful of
 * addresses, and a Map lookup of a string (its hash kept in the string) costs a fraction of a parse.
 * Emptied when it holds 65,536. */
const ADDRS = new Map<string, number>();
export function parseIp4Cached(s: string): number {
  let v = ADDRS.get(s);
  if (v === undefined) {
    if (ADDRS.size >= 65536) ADDRS.clear();
    v = parseIp4(s) ?? -1;
    ADDRS.set(s, v);
  }
  return v;
}

/** Parses a dotted quad as parseIp4 does, throwing on anything else. */
export function ip4ToInt(s: Ipv4Addr): number {
  const v = parseIp4(s);
  if (v === undefined) throw new Error(`invalid IPv4 address ${JSON.stringify(s)}`);
  return v;
}

/** ip4ToInt through parseIp4Cached's memo: the same number, or the same error */
export function ip4ToIntCached(s: Ipv4Addr): number {
  const v = parseIp4Cached(s);
  return v < 0 ? ip4ToInt(s) : v;
}

export function intToIp4(n: number): Ipv4Addr {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`invalid IPv4 address number ${n}`);
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** intToIp4's dotted quads by number, made once (the tables that keep addresses as numbers name a
 * handful of them); emptied when it holds 65,536 */
const QUADS = new Map<number, string>();
export function intToIp4Cached(n: number): Ipv4Addr {
  let s = QUADS.get(n);
  if (s === undefined) {
    if (QUADS.size >= 65536) QUADS.clear();
    QUADS.set(n, (s = intToIp4(n)));
  }
  return s;
}

/** a TCP or UDP port number: an integer 0..65535 */
export function isPort(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffff;
}

export function isValidIp4(s: string): boolean {
  return parseIp4(s) !== undefined;
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  c |= 0x20; // lower-case
  return c >= 97 && c <= 102 ? c - 87 : -1;
}

/** Writes a MAC given as six colon-separated hex pairs (either case) into buf[off, off+6). */
export function writeMac(s: MacAddr, buf: Uint8Array, off: number): void {
  if (s.length !== 17) throw new Error(`invalid MAC address ${JSON.stringify(s)}`);
  for (let i = 0; i < 6; i++) {
    const hi = hexVal(s.charCodeAt(3 * i));
    const lo = hexVal(s.charCodeAt(3 * i + 1));
    if (hi < 0 || lo < 0 || (i < 5 && s.charCodeAt(3 * i + 2) !== 58))
      throw new Error(`invalid MAC address ${JSON.stringify(s)}`);
    buf[off + i] = (hi << 4) | lo;
  }
}

export function parseMac(s: MacAddr): Uint8Array {
  const b = new Uint8Array(6);
  writeMac(s, b, 0);
  return b;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Lower-case colon hex of b[off, off+6). */
export function formatMac(b: Uint8Array, off = 0): MacAddr {
  if (off < 0 || off + 6 > b.length)
    throw new Error(`formatMac: need 6 bytes at offset ${off}, have ${b.length}`);
  return `${HEX[b[off]]}:${HEX[b[off + 1]]}:${HEX[b[off + 2]]}:${HEX[b[off + 3]]}:${HEX[b[off + 4]]}:${HEX[b[off + 5]]}`;
}

export function isValidMac(s: string): boolean {
  return valid(() => parseMac(s));
}

/** An IPv4 prefix: an address (as written: host bits may be set) and a prefix length. */
export interface Cidr {
  addr: number;
  len: number;
}

/** "a.b.c.d/len" with len 0..32 (no leading zeros), host bits allowed; undefined when malformed. */
export function cidrOf(s: string): Cidr | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const addr = parseIp4(s.slice(0, slash));
  const l = s.slice(slash + 1);
  if (addr === undefined || !/^(0|[1-9][0-9]?)$/.test(l) || Number(l) > 32) return undefined;
  return { addr, len: Number(l) };
}

/**
 * Parses "10.244.0.0/24". By default the address must be the network address (no host bits set);
 * pass `{ allowHostBits: true }` for an interface address such as "10.244.0.1/24".
 */
export function parseCidr(s: string, opts: { allowHostBits?: boolean } = {}): Cidr {
  const c = cidrOf(s);
  if (!c) throw new Error(`invalid CIDR ${JSON.stringify(s)}: expected a.b.c.d/len with len 0..32`);
  if (!opts.allowHostBits && networkOf(c) !== c.addr)
    throw new Error(`invalid CIDR ${JSON.stringify(s)}: host bits set (network is ${cidrText(c)})`);
  return c;
}

/** Netmask of a prefix length as uint32: prefixMask(24) === 0xffffff00. */
export function prefixMask(len: number): number {
  if (!Number.isInteger(len) || len < 0 || len > 32) throw new Error(`invalid prefix length ${len}`);
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/** The prefix length of a contiguous netmask (0xffffff00 → 24); undefined for a non-contiguous one. */
export function maskToLen(mask: number): number | undefined {
  const host = ~mask >>> 0;
  if ((host & (host + 1)) >>> 0 !== 0) return undefined;
  let len = 0;
  for (let m = mask >>> 0; m; m = (m << 1) >>> 0) len++;
  return len;
}

/** Whether `ip` lies in net/len; addresses as dotted quads or uint32. */
export function inPrefix(ip: Ipv4Addr | number, net: Ipv4Addr | number, len: number): boolean {
  const a = typeof ip === 'number' ? ip : ip4ToInt(ip);
  const n = typeof net === 'number' ? net : ip4ToInt(net);
  return ((a ^ n) & prefixMask(len)) === 0;
}

/** The network address of a prefix (host bits cleared). */
export function networkOf(c: Cidr): number {
  return (c.addr & prefixMask(c.len)) >>> 0;
}

/** The all-ones host address of a prefix. */
export function broadcastOf(c: Cidr): number {
  return (networkOf(c) | ~prefixMask(c.len)) >>> 0;
}

/** Whether the address lies in the prefix. */
export function cidrContains(c: Cidr, addr: number): boolean {
  return inPrefix(addr, c.addr, c.len);
}

/** Whether `inner` is `outer` or a part of it. */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return inner.len >= outer.len && cidrContains(outer, inner.addr);
}

/** Whether two prefixes share an address. */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return inPrefix(a.addr, b.addr, Math.min(a.len, b.len));
}

/**
 * The longest prefix, at most `maxLen` bits, that holds every address (at least one): its network
 * address and length. coveringCidr([10.244.0.5, 10.244.1.9]) is 10.244.0.0/23.
 */
export function coveringCidr(addrs: readonly number[], maxLen = 32): Cidr {
  if (!addrs.length) throw new Error('coveringCidr: no address');
  let len = maxLen;
  while (len > 0 && !addrs.every((a) => inPrefix(a, addrs[0], len))) len--;
  return { addr: networkOf({ addr: addrs[0], len }), len };
}

/** "10.244.0.0/24" from a uint32 and a prefix length (the address is printed as given). */
export function formatCidr(addr: number, len: number): string {
  prefixMask(len); // validates len
  return `${intToIp4(addr)}/${len}`;
}

/** The prefix as its network: "10.244.0.0/24" for 10.244.0.7/24. */
export function cidrText(c: Cidr): string {
  return formatCidr(networkOf(c), c.len);
}

function valid(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch {
    return false;
  }
}
