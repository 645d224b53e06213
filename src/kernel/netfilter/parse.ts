/**
 * The parsing and printing helpers iptables 1.8.9 and libxtables share: the shell's word
 * splitting, xtables_strtoui, address and port parsing, /etc/protocols, iptables-save's quoting.
 */
import { intToIp4, maskToLen, prefixMask } from '../../wire/addr.ts';
import { PROTOCOLS } from '../../wire/protocols.ts';
import type { Net, PortRange } from './types.ts';

/** A rule the iptables parser refuses; the message is the text after "iptables v1.8.9 (nf_tables): ". */
export class RuleSyntaxError extends Error {}

/** protocol number → the name iptables prints (getprotobynumber; 0 is "all") */
export const PROTO_NAME: Record<number, string> = { 0: 'all' };
for (const { name, number } of PROTOCOLS)
  if (number !== 0 && PROTO_NAME[number] === undefined) PROTO_NAME[number] = name;

/** Split a command line the way a POSIX shell does for quotes and backslashes (no expansion). */
export function shellSplit(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < line.length && '"\\$`'.includes(line[i + 1]))
        cur += line[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < line.length) {
      cur += line[++i];
      inWord = true;
    } else if (c === ' ' || c === '\t') {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) throw new RuleSyntaxError(`unterminated ${quote} quote`);
  if (inWord) out.push(cur);
  return out;
}

/* ------------------------------------------------------------ number and address parsing */

/** xtables_strtoui: strtoul with base 0 (0x hex, 0 octal), no minus; `rest` is what follows the number */
export function strtoul0(s: string): { value: number; rest: string } | undefined {
  const m = /^(\s*\+?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)/.exec(s);
  if (!m) return undefined;
  const t = m[2];
  const value = /^0[xX]/.test(t)
    ? parseInt(t.slice(2), 16)
    : t.length > 1 && t[0] === '0'
      ? parseInt(t, 8)
      : Number(t);
  return { value, rest: s.slice(m[0].length) };
}

/** the whole string is a number in [min, max] */
export function strtouiFull(s: string, max: number, min = 0): number | undefined {
  const r = strtoul0(s);
  return r && r.rest === '' && r.value <= max && r.value >= min ? r.value : undefined;
}

/** xtables_numeric_to_ipaddr: dotted bytes in base 0; a short form is completed with zeros (10.0 = 10.0.0.0) */
export function numericToIp(s: string, isMask: boolean): number | undefined {
  const parts = s.split('.');
  if (parts.length > 4 || (isMask && parts.length !== 4)) return undefined;
  const bytes = [0, 0, 0, 0];
  for (let i = 0; i < parts.length; i++) {
    const b = strtouiFull(parts[i], 255);
    if (b === undefined) return undefined;
    bytes[i] = b;
  }
  return ((bytes[0] << 24) | (bytes[1] << 16) | (bytes[2] << 8) | bytes[3]) >>> 0;
}

/** the mask of an address as a number */
export function netMask(n: Net): number {
  return n.mask ?? prefixMask(n.len);
}

/** xtables_ipparse_any for one `addr[/mask]`, host bits cleared */
export function parseAddress(item: string): Net {
  const slash = item.lastIndexOf('/');
  const host = slash < 0 ? item : item.slice(0, slash);
  let len = 32;
  let dotted: number | undefined;
  if (slash >= 0) {
    const mask = item.slice(slash + 1);
    if (mask.includes('.')) {
      const m = numericToIp(mask, true);
      if (m === undefined) throw new RuleSyntaxError(`host/network \`${mask}' not found`);
      const l = maskToLen(m);
      if (l === undefined) dotted = m;
      else len = l;
    } else {
      const l = strtouiFull(mask, 32);
      if (l === undefined) throw new RuleSyntaxError(`invalid mask \`${mask}' specified`);
      len = l;
    }
  }
  const addr = numericToIp(host, false);
  if (addr === undefined) throw new RuleSyntaxError(`host/network \`${host}' not found`);
  if (dotted !== undefined) return { net: (addr & dotted) >>> 0, len: -1, mask: dotted };
  return { net: (addr & prefixMask(len)) >>> 0, len };
}

/** xtables_ipparse_multiple: `addr[/mask][,addr[/mask]…]` */
export function parseAddresses(text: string): Net[] {
  return text.split(',').map(parseAddress);
}

/** a port number or service name resolver (getservbyname); the kernel model knows numbers only */
export type ServiceLookup = (name: string, proto: 'tcp' | 'udp') => number | undefined;

export function parsePort(text: string, proto: 'tcp' | 'udp', services?: ServiceLookup): number {
  const byName = services?.(text, proto);
  if (byName !== undefined) return byName;
  const n = strtouiFull(text, 65535);
  if (n === undefined) throw new RuleSyntaxError(`invalid port/service \`${text}' specified`);
  return n;
}

/** xtables_parse_port ranges: `a`, `a:b`, `:b`, `a:` */
export function parsePortRange(text: string, proto: 'tcp' | 'udp', services?: ServiceLookup): PortRange {
  const colon = text.indexOf(':');
  if (colon < 0) {
    const p = parsePort(text, proto, services);
    return [p, p];
  }
  const a = text.slice(0, colon);
  const b = text.slice(colon + 1);
  const lo = a ? parsePort(a, proto, services) : 0;
  const hi = b ? parsePort(b, proto, services) : 0xffff;
  if (lo > hi) throw new RuleSyntaxError('invalid portrange (min > max)');
  return [lo, hi];
}

/* ------------------------------------------------------------ printing (iptables-save form) */

/** "a.b.c.d/len" (a non-contiguous mask in dotted form) */
export function fmtNet(n: Net): string {
  return `${intToIp4(n.net)}/${n.mask !== undefined ? intToIp4(n.mask) : n.len}`;
}

/** a port range that matches everything is not printed at all (tcp_save / tcp_print) */
export function fullRange(p: PortRange): boolean {
  return p[0] === 0 && p[1] === 0xffff;
}

export const bang = (n: { neg: boolean }): string => (n.neg ? '! ' : '');

export const hex = (n: number): string => `0x${n.toString(16)}`;

/** xtables_save_string: bare when only [A-Za-z0-9_-], else double-quoted with \ before " \ and ' */
export function quoteSave(s: string): string {
  return /^[\w-]+$/.test(s) ? s : `"${s.replace(/(["\\'])/g, '\\$1')}"`;
}
