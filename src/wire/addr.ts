/** IPv4 / MAC address and prefix helpers. IPv4 addresses as numbers are unsigned 32-bit (`>>> 0`). */
import type { Ipv4Addr, MacAddr } from './types.ts';

/** Parses a dotted quad ("10.244.0.5") strictly: four decimal octets 0..255, no leading zeros. */
export function ip4ToInt(s: Ipv4Addr): number {
  let v = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46; // end of string acts as a final '.'
    if (c >= 48 && c <= 57) {
      if (digits === 1 && octet === 0) return badIp4(s); // leading zero
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return badIp4(s);
    } else if (c === 46 && digits > 0 && dots < 4) {
      v = v * 256 + octet;
      octet = digits = 0;
      dots++;
    } else return badIp4(s);
  }
  return dots === 4 ? v : badIp4(s);
}

function badIp4(s: string): never {
  throw new Error(`invalid IPv4 address ${JSON.stringify(s)}`);
}

export function intToIp4(n: number): Ipv4Addr {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`invalid IPv4 address number ${n}`);
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function isValidIp4(s: string): boolean {
  return valid(() => ip4ToInt(s));
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

export interface Cidr {
  addr: number;
  len: number;
}

/**
 * Parses "10.244.0.0/24". By default the address must be the network address (no host bits set);
 * pass `{ allowHostBits: true }` for an interface address such as "10.244.0.1/24".
 */
export function parseCidr(s: string, opts: { allowHostBits?: boolean } = {}): Cidr {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(s);
  if (!m) throw new Error(`invalid CIDR ${JSON.stringify(s)}: expected a.b.c.d/len`);
  const len = Number(m[2]);
  if (len > 32 || (m[2].length > 1 && m[2][0] === '0'))
    throw new Error(`invalid CIDR ${JSON.stringify(s)}: prefix length must be 0..32`);
  const addr = ip4ToInt(m[1]);
  if (!opts.allowHostBits && (addr & ~prefixMask(len)) !== 0)
    throw new Error(
      `invalid CIDR ${JSON.stringify(s)}: host bits set (network is ${formatCidr((addr & prefixMask(len)) >>> 0, len)})`,
    );
  return { addr, len };
}

/** Netmask of a prefix length as uint32: prefixMask(24) === 0xffffff00. */
export function prefixMask(len: number): number {
  if (!Number.isInteger(len) || len < 0 || len > 32) throw new Error(`invalid prefix length ${len}`);
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/** Whether `ip` lies in net/len; addresses as dotted quads or uint32. */
export function inPrefix(ip: Ipv4Addr | number, net: Ipv4Addr | number, len: number): boolean {
  const a = typeof ip === 'number' ? ip : ip4ToInt(ip);
  const n = typeof net === 'number' ? net : ip4ToInt(net);
  return ((a ^ n) & prefixMask(len)) === 0;
}

/** "10.244.0.0/24" from a uint32 and a prefix length (the address is printed as given). */
export function formatCidr(addr: number, len: number): string {
  prefixMask(len); // validates len
  return `${intToIp4(addr)}/${len}`;
}

function valid(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch {
    return false;
  }
}
