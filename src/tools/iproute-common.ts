/**
 * What `ip` and `bridge` share: iproute2's argument helpers (matches, NEXT_ARG, invarg, get_addr,
 * get_prefix, get_unsigned, lladdr parsing) with their exact messages and exit codes, the
 * command context, and the translation of a model NetlinkError into what iproute2 prints
 * ("Error: <extack>." or "RTNETLINK answers: <strerror>").
 */
import type { Cluster } from '../cni/build.ts';
import { strerror } from '../kernel/errno.ts';
import { ip4ToInt, maskToLen } from '../wire/addr.ts';
import { NetlinkError } from '../kernel/netlink.ts';
import type { Link, Netns } from '../kernel/objects.ts';
import { Printer, ToolExit } from './iproute-print.ts';
import type { ToolResult } from './types.ts';

/** iproute2's matches(): true when `prefix` is a prefix of `word` (an empty prefix matches anything) */
export function matches(prefix: string, word: string): boolean {
  return word.startsWith(prefix);
}

export interface Opts {
  stats: number;
  details: number;
  json: boolean;
  pretty: boolean;
  brief: boolean;
  oneline: boolean;
  family: 'unspec' | 'inet' | 'inet6' | 'link' | 'bridge' | 'mpls';
}

/** the options before any flag is parsed, as ip and bridge start */
export function defaultOpts(): Opts {
  return { stats: 0, details: 0, json: false, pretty: false, brief: false, oneline: false, family: 'unspec' };
}

export class Ctx {
  readonly p: Printer;

  constructor(
    readonly cluster: Cluster,
    readonly netns: Netns,
    readonly opts: Opts,
  ) {
    this.p = new Printer(opts.json, opts.pretty, opts.oneline ? '\\' : '\n');
  }

  get world() {
    return this.cluster.world;
  }

  /** links in ifindex order, as a dump returns them */
  links(): Link[] {
    return [...this.netns.links.values()].sort((a, b) => a.ifindex - b.ifindex);
  }

  byIndex(ifindex: number): Link | undefined {
    for (const l of this.netns.links.values()) if (l.ifindex === ifindex) return l;
    return undefined;
  }

  /** ll_name_to_index: 0 when there is no such device (iproute2 also accepts "ifNN") */
  nameToIndex(name: string): number {
    const l = this.netns.links.get(name);
    if (l) return l.ifindex;
    const m = /^if(\d+)$/.exec(name);
    if (m && this.byIndex(Number(m[1]))) return Number(m[1]);
    return 0;
  }

  /** ll_index_to_name: "ifNN" when unknown */
  indexToName(ifindex: number): string {
    return this.byIndex(ifindex)?.name ?? `if${ifindex}`;
  }

  exit(code: number): never {
    throw new ToolExit(code);
  }

  /** the process's result; `ret` is main's return value (exit status is its low byte) */
  result(ret: number): ToolResult {
    return { stdout: this.p.stdout, stderr: this.p.stderr, code: ret & 0xff };
  }
}

/** run a tool body: exit() anywhere unwinds here */
export function runTool(ctx: Ctx, body: () => number): ToolResult {
  try {
    return ctx.result(body());
  } catch (e) {
    if (e instanceof ToolExit) return ctx.result(e.code);
    throw e;
  }
}

/* ------------------------------------------------------------------ argument errors (lib/utils.c) */

export function incompleteCommand(c: Ctx): never {
  c.p.eprintf('Command line is not complete. Try option "help"\n');
  return c.exit(-1);
}

export function invarg(c: Ctx, msg: string, arg: string): never {
  c.p.eprintf('Error: argument "%s" is wrong: %s\n', arg, msg);
  return c.exit(-1);
}

export function duparg(c: Ctx, key: string, arg: string): never {
  c.p.eprintf('Error: duplicate "%s": "%s" is the second value.\n', key, arg);
  return c.exit(-1);
}

export function duparg2(c: Ctx, key: string, arg: string): never {
  c.p.eprintf('Error: either "%s" is duplicate, or "%s" is a garbage.\n', key, arg);
  return c.exit(-1);
}

/** nodev(): prints and returns -1 (the caller returns it) */
export function nodev(c: Ctx, dev: string): number {
  c.p.eprintf('Cannot find device "%s"\n', dev);
  return -1;
}

/** an argv cursor with NEXT_ARG() semantics */
export class Args {
  i = 0;
  constructor(
    readonly c: Ctx,
    readonly argv: readonly string[],
  ) {}

  get more(): boolean {
    return this.i < this.argv.length;
  }

  get cur(): string {
    return this.argv[this.i];
  }

  /** NEXT_ARG(): the next word or "Command line is not complete" */
  next(): string {
    this.i++;
    if (this.i >= this.argv.length) incompleteCommand(this.c);
    return this.argv[this.i];
  }

  advance(): void {
    this.i++;
  }

  rest(): string[] {
    return this.argv.slice(this.i);
  }
}

/* ------------------------------------------------------------------ numbers and addresses */

/** strtoul(s, &end, base): the value and how many characters were used (0 = no digits) */
export function strtoul(s: string, base = 0): { value: number; used: number } {
  let i = 0;
  while (i < s.length && /\s/.test(s[i])) i++;
  let neg = false;
  if (s[i] === '+' || s[i] === '-') {
    neg = s[i] === '-';
    i++;
  }
  let b = base;
  if (
    (b === 0 || b === 16) &&
    s[i] === '0' &&
    (s[i + 1] === 'x' || s[i + 1] === 'X') &&
    /[0-9a-f]/i.test(s[i + 2] ?? '')
  ) {
    i += 2;
    b = 16;
  } else if (b === 0) b = s[i] === '0' ? 8 : 10;
  const start = i;
  let v = 0;
  for (; i < s.length; i++) {
    const d = parseInt(s[i], 36);
    if (Number.isNaN(d) || d >= b) break;
    v = v * b + d;
  }
  if (i === start) return { value: 0, used: 0 };
  return { value: neg ? -v : v, used: i };
}

/** get_unsigned / get_u32: the whole word must be a number ≤ 2^32-1 */
export function getUnsigned(arg: string, base = 0): number | undefined {
  if (!arg) return undefined;
  const { value, used } = strtoul(arg, base);
  if (used === 0 || used !== arg.length) return undefined;
  if (value < 0) {
    const wrapped = 2 ** 64 + value;
    return wrapped > 0xffffffff ? undefined : wrapped;
  }
  if (value > 0xffffffff) return undefined;
  return value;
}

/** get_addr_ipv4: "a.b.c.d", also the short forms "10", "10.1" and hex/octal parts, as inet_aton */
export function parseIpv4(s: string): string | undefined {
  const parts = [0, 0, 0, 0];
  let cp = s;
  for (let i = 0; i < 4; i++) {
    const { value, used } = strtoul(cp, 0);
    if (value > 255 || value < 0) return undefined;
    if (used === 0) return undefined;
    parts[i] = value;
    const rest = cp.slice(used);
    if (rest === '') break;
    if (i === 3 || rest[0] !== '.') return undefined;
    cp = rest.slice(1);
  }
  return parts.join('.');
}

export interface Prefix {
  /** dotted quad, or undefined for "default"/"any" */
  addr?: string;
  /** -2 for default/any (iproute2's marker), else the prefix length */
  bitlen: number;
  /** a prefix length was written (or "default") */
  lenGiven: boolean;
  isDefault: boolean;
}

function parseNetmask(s: string): number | undefined {
  const n = getUnsigned(s, 0);
  if (n !== undefined) return n;
  const a = parseIpv4(s);
  if (!a) return undefined;
  return maskToLen(ip4ToInt(a));
}

/** get_prefix_1 for IPv4; undefined when invalid */
export function parsePrefixArg(arg: string): Prefix | undefined {
  const slash = arg.indexOf('/');
  const a = slash >= 0 ? arg.slice(0, slash) : arg;
  if (a === 'default' || a === 'all' || a === 'any') {
    if (slash >= 0) return undefined;
    return { bitlen: 0, lenGiven: a === 'default', isDefault: true };
  }
  if (a.includes(':')) return undefined;
  const addr = parseIpv4(a);
  if (!addr) return undefined;
  if (slash < 0) return { addr, bitlen: 32, lenGiven: false, isDefault: false };
  const plen = parseNetmask(arg.slice(slash + 1));
  if (plen === undefined || plen > 32) return undefined;
  return { addr, bitlen: plen, lenGiven: true, isDefault: false };
}

/** get_prefix(): exits 1 with iproute2's message when invalid */
export function getPrefix(c: Ctx, arg: string): Prefix {
  const p = parsePrefixArg(arg);
  if (!p) {
    c.p.eprintf('Error: %s prefix is expected rather than "%s".\n', 'any valid', arg);
    return c.exit(1);
  }
  return p;
}

/** get_addr(): exits 1 with iproute2's message when invalid */
export function getAddr(c: Ctx, arg: string, family = 'any valid'): string {
  const a = arg.includes(':') ? undefined : parseIpv4(arg);
  if (!a) {
    c.p.eprintf('Error: %s address is expected rather than "%s".\n', family, arg);
    return c.exit(1);
  }
  return a;
}

/** ll_addr_a2n for a MAC: undefined (after printing the message) when invalid */
export function parseLladdr(c: Ctx, arg: string): string | undefined {
  if (arg.includes('.')) {
    const a = parseIpv4(arg);
    if (!a) {
      c.p.eprintf('"%s" is invalid lladdr.\n', arg);
      return undefined;
    }
    return a;
  }
  const bytes: number[] = [];
  for (const part of arg.split(':')) {
    const m = /^\s*(?:0[xX])?([0-9a-fA-F]+)/.exec(part);
    if (!m) {
      c.p.eprintf('"%s" is invalid lladdr.\n', part);
      return undefined;
    }
    const v = parseInt(m[1], 16);
    if (v > 255) {
      c.p.eprintf('"%s" is invalid lladdr.\n', part);
      return undefined;
    }
    bytes.push(v);
    if (bytes.length === 20) break;
  }
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/* ------------------------------------------------------------------ kernel errors */

/** how iproute2 reports a failed request (lib/libnetlink.c): the extack when there is one, else strerror(errno) */
export function netlinkMessage(e: NetlinkError): string {
  if (e.extack) return `Error: ${e.extack}${e.extack.endsWith('.') ? '' : '.'}\n`;
  return `RTNETLINK answers: ${strerror(e.code)}\n`;
}

/** run a model mutation; on a kernel error print it and return false */
export function talk(c: Ctx, fn: () => void): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    if (!(e instanceof NetlinkError)) throw e;
    c.p.stderr += netlinkMessage(e);
    return false;
  }
}
