/**
 * Netfilter, IPv4: the five hooks and the filter table's chains, rules, counters and policies.
 * Rules are held as parsed matches and printed back in iptables-save form, so what a CNI
 * programs and what a user types are one representation.
 *
 * Rule options are parsed the way iptables 1.8.9 (nf_tables) parses them: one option at a time
 * (RuleBuilder), with the tcp/udp match loaded implicitly by the first port option, the same
 * validation and the same error texts (checked against the real tool in a network namespace).
 */
import { intToIp4, ip4ToInt, maskToLen, prefixMask } from '../wire/addr.ts';
import { getprotobyname, PROTOCOLS } from '../wire/protocols.ts';

export const HOOKS = ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'] as const;
export type Hook = (typeof HOOKS)[number];

/** conntrack states in the order iptables prints them (the bit order of xt_conntrack) */
export const CT_STATES = ['INVALID', 'NEW', 'RELATED', 'ESTABLISHED', 'UNTRACKED', 'SNAT', 'DNAT'] as const;
export type CtState = (typeof CT_STATES)[number];
/** the states `-m state --state` knows */
const STATE_STATES: readonly CtState[] = ['INVALID', 'NEW', 'RELATED', 'ESTABLISHED', 'UNTRACKED'];

export interface PacketMeta {
  src: string;
  dst: string;
  proto: number;
  sport?: number;
  dport?: number;
  in?: string;
  out?: string;
  ctstate: CtState;
  mark: number;
  /** IP total length, for byte counters */
  len: number;
}

interface Neg<T> {
  v: T;
  neg: boolean;
}

/** an address and prefix length; `mask` only for a non-contiguous mask (len is then -1) */
export interface Net {
  net: number;
  len: number;
  mask?: number;
}

export interface Rule {
  proto?: Neg<number>;
  src?: Neg<Net>;
  dst?: Neg<Net>;
  in?: Neg<string>;
  out?: Neg<string>;
  sport?: Neg<[number, number]>;
  dport?: Neg<[number, number]>;
  ctstate?: Neg<CtState[]>;
  mark?: Neg<{ value: number; mask: number }>;
  comment?: string;
  /** ACCEPT | DROP | REJECT | RETURN | user chain */
  target?: string;
  /** `-g CHAIN`: a jump that does not come back here */
  goto?: boolean;
  rejectWith?: string;
  /** the -m modules in the order given (tcp/udp also when loaded implicitly by a port option) */
  modules: string[];
  pkts: number;
  bytes: number;
}

export interface Chain {
  name: string;
  /** builtin chains have a policy */
  policy?: 'ACCEPT' | 'DROP';
  rules: Rule[];
  pkts: number;
  bytes: number;
}

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

function strtouiFull(s: string, max: number): number | undefined {
  const r = strtoul0(s);
  return r && r.rest === '' && r.value <= max ? r.value : undefined;
}

/** xtables_numeric_to_ipaddr: dotted bytes in base 0; a short form is completed with zeros (10.0 = 10.0.0.0) */
function numericToIp(s: string, isMask: boolean): number | undefined {
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

/** xtables_ipparse_multiple: `addr[/mask][,addr[/mask]…]`, host bits cleared */
export function parseAddresses(text: string): Net[] {
  return text.split(',').map((item) => {
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
  });
}

/** a port number or service name resolver (getservbyname); the kernel model knows numbers only */
export type ServiceLookup = (name: string, proto: 'tcp' | 'udp') => number | undefined;

function parsePort(text: string, proto: 'tcp' | 'udp', services?: ServiceLookup): number {
  const byName = services?.(text, proto);
  if (byName !== undefined) return byName;
  const n = strtouiFull(text, 65535);
  if (n === undefined) throw new RuleSyntaxError(`invalid port/service \`${text}' specified`);
  return n;
}

function parsePorts(text: string, proto: 'tcp' | 'udp', services?: ServiceLookup): [number, number] {
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

/** `--ctstate`/`--state` lists: case-insensitive prefixes of the state names, as libxt_conntrack */
function parseStates(arg: string, allowed: readonly CtState[], what: 'ctstate' | 'state'): CtState[] {
  const bad = (rest: string) => new RuleSyntaxError(`Bad ${what} "${rest}"`);
  const found = new Set<CtState>();
  let rest = arg;
  for (;;) {
    const comma = rest.indexOf(',');
    const tok = comma < 0 ? rest : rest.slice(0, comma);
    if (!tok && comma < 0 && what === 'state')
      throw new RuleSyntaxError(
        '"--state" requires a list of states with no spaces, e.g. ESTABLISHED,RELATED',
      );
    const s = tok
      ? allowed.find((x) => x.slice(0, tok.length).toLowerCase() === tok.toLowerCase())
      : undefined;
    if (!s) throw bad(rest);
    found.add(s);
    if (comma < 0) break;
    rest = rest.slice(comma + 1);
  }
  return CT_STATES.filter((s) => found.has(s));
}

/** libipt_REJECT's table: canonical name, alias (case-insensitive prefixes match, first wins) */
export const REJECT_TYPES: readonly (readonly [string, string])[] = [
  ['icmp-net-unreachable', 'net-unreach'],
  ['icmp-host-unreachable', 'host-unreach'],
  ['icmp-proto-unreachable', 'proto-unreach'],
  ['icmp-port-unreachable', 'port-unreach'],
  ['icmp-net-prohibited', 'net-prohib'],
  ['icmp-host-prohibited', 'host-prohib'],
  ['tcp-reset', 'tcp-rst'],
  ['icmp-admin-prohibited', 'admin-prohib'],
];

export const STANDARD_TARGETS = ['ACCEPT', 'DROP', 'RETURN'];
/** match extensions podwalk models */
export const MATCHES = ['tcp', 'udp', 'conntrack', 'state', 'comment', 'mark'];

/* ------------------------------------------------------------ the rule builder */

export interface BuilderOptions {
  services?: ServiceLookup;
}

/** which options a match extension takes (long names, with the canonical name for errors) */
const MATCH_OPTIONS: Record<string, Record<string, string>> = {
  tcp: {
    sport: 'source-port',
    'source-port': 'source-port',
    dport: 'destination-port',
    'destination-port': 'destination-port',
  },
  udp: {
    sport: 'source-port',
    'source-port': 'source-port',
    dport: 'destination-port',
    'destination-port': 'destination-port',
  },
  conntrack: { ctstate: 'ctstate' },
  state: { state: 'state' },
  comment: { comment: 'comment' },
  mark: { mark: 'mark' },
};

/** all the long options of each match extension iptables 1.8.9 has, modelled or not */
const ALL_OPTIONS: Record<string, string[]> = {
  tcp: ['source-port', 'sport', 'destination-port', 'dport', 'syn', 'tcp-flags', 'tcp-option'],
  udp: ['source-port', 'sport', 'destination-port', 'dport'],
  conntrack: [
    'ctstate',
    'ctproto',
    'ctorigsrc',
    'ctorigdst',
    'ctreplsrc',
    'ctrepldst',
    'ctorigsrcport',
    'ctorigdstport',
    'ctreplsrcport',
    'ctrepldstport',
    'ctstatus',
    'ctexpire',
    'ctdir',
  ],
  state: ['state'],
  comment: ['comment'],
  mark: ['mark'],
};

/**
 * Builds rules option by option, the way iptables' parser does. Address options are kept as
 * text and parsed in finish() (after the option loop, as iptables does); `-s a,b` gives one rule
 * per address.
 */
export class RuleBuilder {
  readonly rule: Rule = { modules: [], pkts: 0, bytes: 0 };
  /** generic options seen (-s -d -p -i -o -j) */
  readonly seen = new Set<string>();
  /** match/target options seen, "match:option" */
  private used = new Set<string>();
  src?: { text: string; neg: boolean };
  dst?: { text: string; neg: boolean };
  /** the protocol match was loaded implicitly */
  private protoLoaded = false;
  /** matches and the REJECT target in the order they were loaded */
  private loaded: string[] = [];
  /** `! --sport 0:65535`: iptables-nft drops such a port match (and the match when nothing else is left) */
  private invertedFull = false;

  constructor(private readonly opts: BuilderOptions = {}) {}

  private once(flag: string): void {
    if (this.seen.has(flag)) throw new RuleSyntaxError(`multiple ${flag} flags not allowed`);
    this.seen.add(flag);
  }

  /** a generic option (-p -s -d -i -o -j -g -m); `arg` is given */
  generic(opt: '-p' | '-s' | '-d' | '-i' | '-o' | '-j' | '-g' | '-m', arg: string, neg: boolean): void {
    const r = this.rule;
    switch (opt) {
      case '-p': {
        this.once('-p');
        const p = arg.toLowerCase();
        const num = strtouiFull(p, 255);
        const n = num ?? (p === 'all' ? 0 : getprotobyname(p)?.number);
        if (n === undefined) throw new RuleSyntaxError(`unknown protocol "${p}" specified`);
        if (n === 0 && neg) throw new RuleSyntaxError('rule would never match protocol');
        // iptables-nft compares one byte: mptcp (262) is stored, and listed, as tcp (6), as on 6.18
        r.proto = { v: n & 0xff, neg };
        return;
      }
      case '-s':
        this.once('-s');
        this.src = { text: arg, neg };
        return;
      case '-d':
        this.once('-d');
        this.dst = { text: arg, neg };
        return;
      case '-i':
      case '-o': {
        this.once(opt);
        if (arg.length + 1 > 16)
          throw new RuleSyntaxError(`interface name \`${arg}' must be shorter than IFNAMSIZ (15)`);
        if (arg === '') throw new RuleSyntaxError('Empty interface is likely to be undesired');
        r[opt === '-i' ? 'in' : 'out'] = { v: arg, neg };
        return;
      }
      case '-j':
      case '-g':
        if (neg) throw new RuleSyntaxError(`cannot have ! before ${opt}`);
        this.once('-j');
        r.target = arg;
        r.goto = opt === '-g' || undefined;
        if (arg === 'REJECT' && opt === '-j') {
          r.rejectWith = 'icmp-port-unreachable';
          this.loaded.push('REJECT');
        }
        return;
      case '-m':
        if (neg) throw new RuleSyntaxError('unexpected ! flag before --match');
        if (!MATCHES.includes(arg))
          throw new RuleSyntaxError(`Couldn't load match \`${arg}':No such file or directory\n`);
        if (r.modules.includes(arg)) throw new RuleSyntaxError(`podwalk models one \`-m ${arg}' per rule\n`);
        r.modules.push(arg);
        this.loaded.push(arg);
        return;
    }
  }

  /** every long option the loaded matches and the target add to getopt's table (modelled or not) */
  extensionOptions(): string[] {
    const out: string[] = [];
    for (const m of this.rule.modules) out.push(...ALL_OPTIONS[m]);
    if (this.rule.target === 'REJECT' && !this.rule.goto) out.push('reject-with');
    return out;
  }

  /** should_load_proto: -p tcp/udp given and its match not loaded yet */
  canLoadProto(): boolean {
    const p = this.rule.proto;
    if (!p || this.protoLoaded || (p.v !== 6 && p.v !== 17)) return false;
    return !this.rule.modules.includes(p.v === 6 ? 'tcp' : 'udp');
  }

  /** load_proto: the protocol's match, loaded implicitly by an option getopt did not know */
  loadProto(): void {
    const m = this.rule.proto!.v === 6 ? 'tcp' : 'udp';
    this.rule.modules.push(m);
    this.loaded.push(m);
    this.protoLoaded = true;
  }

  /** which loaded extension takes `--name` (an exact option name): the last loaded comes first in getopt's table */
  private owner(name: string): string | undefined {
    for (let i = this.loaded.length - 1; i >= 0; i--) {
      const m = this.loaded[i];
      if (m === 'REJECT' ? name === 'reject-with' : ALL_OPTIONS[m].includes(name)) return m;
    }
    return undefined;
  }

  /** a match or target option `--name` (exact); returns false when no loaded extension takes it */
  extension(name: string, arg: string | undefined, neg: boolean): boolean {
    const owner = this.owner(name);
    if (!owner) return false;
    if (owner !== 'REJECT' && !MATCH_OPTIONS[owner][name])
      throw new RuleSyntaxError(`podwalk does not model --${name} of the ${owner} match`);
    const canonical = owner === 'REJECT' ? 'reject-with' : MATCH_OPTIONS[owner][name];
    if (arg === undefined) throw new RuleSyntaxError(`option "--${name}" requires an argument`);
    const key = `${owner}:${canonical}`;
    const r = this.rule;
    if (owner === 'tcp' || owner === 'udp') {
      if (this.used.has(key)) throw new RuleSyntaxError(`Only one \`--${canonical}' allowed`);
      this.used.add(key);
      const ports = { v: parsePorts(arg, owner, this.opts.services), neg };
      if (canonical === 'source-port') r.sport = ports;
      else r.dport = ports;
      this.invertedFull ||= neg && fullRange(ports.v);
      return true;
    }
    if (this.used.has(key))
      throw new RuleSyntaxError(`${owner}: option "--${canonical}" can only be used once.\n`);
    this.used.add(key);
    switch (owner) {
      case 'conntrack':
        r.ctstate = { v: parseStates(arg, CT_STATES, 'ctstate'), neg };
        break;
      case 'state':
        r.ctstate = { v: parseStates(arg, STATE_STATES, 'state'), neg };
        break;
      case 'comment':
        if (neg) throw new RuleSyntaxError(`comment: option "--comment" cannot be inverted.\n`);
        r.comment = arg;
        break;
      case 'mark': {
        const bad = new RuleSyntaxError(`mark: bad integer value for option "--mark", or out of range.\n`);
        const v = strtoul0(arg);
        if (!v || v.value > 0xffffffff) throw bad;
        let mask = 0xffffffff;
        let rest = v.rest;
        if (rest.startsWith('/')) {
          const m = strtoul0(rest.slice(1));
          if (!m || m.value > 0xffffffff) throw bad;
          mask = m.value;
          rest = m.rest;
        }
        if (rest !== '')
          throw new RuleSyntaxError(`mark: trailing garbage after value for option "--mark".\n`);
        r.mark = { v: { value: v.value, mask }, neg };
        break;
      }
      case 'REJECT': {
        if (neg) throw new RuleSyntaxError(`REJECT: option "--reject-with" cannot be inverted.\n`);
        const a = arg.toLowerCase();
        const t = REJECT_TYPES.find(([n, alias]) => n.startsWith(a) || alias.startsWith(a));
        if (!t) throw new RuleSyntaxError(`unknown reject type "${arg}"`);
        r.rejectWith = t[0];
        break;
      }
    }
    return true;
  }

  /** the extensions' final checks (xtables_option_mfcall / tfcall), in load order */
  finalChecks(): void {
    const r = this.rule;
    for (const m of r.modules) {
      if (m === 'tcp' || m === 'udp') {
        if (!r.proto || r.proto.v !== (m === 'tcp' ? 6 : 17) || r.proto.neg)
          throw new RuleSyntaxError(`${m.toUpperCase()} match requires '-p ${m}'`);
      }
      if (m === 'conntrack' && !this.used.has('conntrack:ctstate'))
        throw new RuleSyntaxError('conntrack: At least one option is required');
      if ((m === 'state' || m === 'comment' || m === 'mark') && !this.used.has(`${m}:${m}`))
        throw new RuleSyntaxError(`${m}: option "--${m}" must be specified\n`);
    }
  }

  /** the addresses (iptables parses them after the option loop), then one rule per address pair */
  finish(): Rule[] {
    const srcs = this.src ? parseAddresses(this.src.text) : [undefined];
    const dsts = this.dst ? parseAddresses(this.dst.text) : [undefined];
    if ((srcs.length > 1 || dsts.length > 1) && (this.src?.neg || this.dst?.neg))
      throw new RuleSyntaxError('! not allowed with multiple source or destination IP addresses');
    const base = this.rule;
    if (this.invertedFull) {
      for (const k of ['sport', 'dport'] as const) if (base[k]?.neg && fullRange(base[k]!.v)) delete base[k];
      if (!base.sport && !base.dport) base.modules = base.modules.filter((m) => m !== 'tcp' && m !== 'udp');
    }
    const out: Rule[] = [];
    for (const s of srcs)
      for (const d of dsts) {
        const r: Rule = { ...this.rule, modules: [...this.rule.modules] };
        if (s && (s.len !== 0 || this.src!.neg)) r.src = { v: s, neg: this.src!.neg };
        if (d && (d.len !== 0 || this.dst!.neg)) r.dst = { v: d, neg: this.dst!.neg };
        out.push(r);
      }
    return out;
  }
}

/**
 * Parse the match-and-target part of an iptables rule (what follows `-A CHAIN`), e.g.
 * `-s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT`. One rule (a comma list
 * of addresses is refused here; the iptables tool expands it).
 */
export function parseRuleSpec(args: readonly string[], opts: BuilderOptions = {}): Rule {
  const b = new RuleBuilder(opts);
  let neg = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '!') {
      if (neg) throw new RuleSyntaxError('multiple consecutive ! not allowed');
      neg = true;
      continue;
    }
    const generic = GENERIC_OPTS[a];
    if (generic) {
      const v = args[++i];
      if (v === undefined) throw new RuleSyntaxError(`option "${a}" requires an argument`);
      b.generic(generic, v, neg);
    } else if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      if (!b.extensionOptions().includes(name) && b.canLoadProto()) b.loadProto();
      if (!b.extension(name, eq < 0 ? args[++i] : a.slice(eq + 1), neg))
        throw new RuleSyntaxError(`unknown option "${a}"`);
    } else throw new RuleSyntaxError(`unknown option "${a}"`);
    neg = false;
  }
  if (neg) throw new RuleSyntaxError('nothing appropriate following !');
  b.finalChecks();
  const rules = b.finish();
  if (rules.length !== 1) throw new RuleSyntaxError('one address per rule here');
  return rules[0];
}

const GENERIC_OPTS: Record<string, '-p' | '-s' | '-d' | '-i' | '-o' | '-j' | '-g' | '-m'> = {
  '-p': '-p',
  '--protocol': '-p',
  '-s': '-s',
  '--source': '-s',
  '--src': '-s',
  '-d': '-d',
  '--destination': '-d',
  '--dst': '-d',
  '-i': '-i',
  '--in-interface': '-i',
  '-o': '-o',
  '--out-interface': '-o',
  '-j': '-j',
  '--jump': '-j',
  '-g': '-g',
  '--goto': '-g',
  '-m': '-m',
  '--match': '-m',
};

/* ------------------------------------------------------------ printing (iptables-save form) */

/** "a.b.c.d/len" (a non-contiguous mask in dotted form) */
export function fmtNet(n: Net): string {
  return `${intToIp4(n.net)}/${n.mask !== undefined ? intToIp4(n.mask) : n.len}`;
}

/** a port range that matches everything is not printed at all (tcp_save / tcp_print) */
export function fullRange(p: [number, number]): boolean {
  return p[0] === 0 && p[1] === 0xffff;
}

const bang = (n: { neg: boolean }) => (n.neg ? '! ' : '');

export const hex = (n: number) => `0x${n.toString(16)}`;

/** The rule as iptables-save prints it after `-A CHAIN`; `counters` adds `-c P B` where `iptables -S -v` puts it. */
export function formatRuleSpec(r: Rule, opts: { counters?: boolean } = {}): string {
  const p: string[] = [];
  if (r.src) p.push(`${bang(r.src)}-s ${fmtNet(r.src.v)}`);
  if (r.dst) p.push(`${bang(r.dst)}-d ${fmtNet(r.dst.v)}`);
  if (r.in) p.push(`${bang(r.in)}-i ${r.in.v}`);
  if (r.out) p.push(`${bang(r.out)}-o ${r.out.v}`);
  if (r.proto && (r.proto.v !== 0 || r.proto.neg))
    p.push(`${bang(r.proto)}-p ${PROTO_NAME[r.proto.v] ?? r.proto.v}`);
  for (const m of r.modules) {
    if (m === 'comment' && r.comment !== undefined) p.push(`-m comment --comment ${quoteSave(r.comment)}`);
    if ((m === 'conntrack' || m === 'state') && r.ctstate)
      p.push(`-m ${m} ${bang(r.ctstate)}--${m === 'state' ? 'state' : 'ctstate'} ${r.ctstate.v.join(',')}`);
    if (m === 'mark' && r.mark) {
      const { value, mask } = r.mark.v;
      p.push(`-m mark ${bang(r.mark)}--mark ${hex(value)}${mask === 0xffffffff ? '' : `/${hex(mask)}`}`);
    }
    if (m === 'tcp' || m === 'udp') {
      const ports: string[] = [];
      const fmt = ([lo, hi]: [number, number]) => (lo === hi ? String(lo) : `${lo}:${hi}`);
      if (r.sport && !fullRange(r.sport.v)) ports.push(`${bang(r.sport)}--sport ${fmt(r.sport.v)}`);
      if (r.dport && !fullRange(r.dport.v)) ports.push(`${bang(r.dport)}--dport ${fmt(r.dport.v)}`);
      p.push(`-m ${m}${ports.length ? ' ' + ports.join(' ') : ''}`);
    }
  }
  if (opts.counters) p.push(`-c ${r.pkts} ${r.bytes}`);
  if (r.target) p.push(`${r.goto ? '-g' : '-j'} ${r.target}`);
  if (r.rejectWith && r.target === 'REJECT' && !r.goto) p.push(`--reject-with ${r.rejectWith}`);
  return p.join(' ');
}

/** xtables_save_string: bare when only [A-Za-z0-9_-], else double-quoted with \ before " \ and ' */
export function quoteSave(s: string): string {
  return /^[\w-]+$/.test(s) ? s : `"${s.replace(/(["\\'])/g, '\\$1')}"`;
}

/* ------------------------------------------------------------ evaluation */

function matchIface(pattern: string, name: string | undefined): boolean {
  if (name === undefined) return false;
  return pattern.endsWith('+') ? name.startsWith(pattern.slice(0, -1)) : pattern === name;
}

function inNet(ip: string, n: Net): boolean {
  return (ip4ToInt(ip) & netMask(n)) >>> 0 === n.net;
}

export function ruleMatches(r: Rule, p: PacketMeta): boolean {
  const t = (m: { neg: boolean } | undefined, ok: () => boolean) => !m || ok() !== m.neg;
  return (
    t(r.proto, () => r.proto!.v === 0 || r.proto!.v === p.proto) &&
    t(r.src, () => inNet(p.src, r.src!.v)) &&
    t(r.dst, () => inNet(p.dst, r.dst!.v)) &&
    t(r.in, () => matchIface(r.in!.v, p.in)) &&
    t(r.out, () => matchIface(r.out!.v, p.out)) &&
    t(r.sport, () => p.sport !== undefined && p.sport >= r.sport!.v[0] && p.sport <= r.sport!.v[1]) &&
    t(r.dport, () => p.dport !== undefined && p.dport >= r.dport!.v[0] && p.dport <= r.dport!.v[1]) &&
    t(r.ctstate, () => r.ctstate!.v.includes(p.ctstate)) &&
    t(r.mark, () => (p.mark & r.mark!.v.mask) >>> 0 === r.mark!.v.value)
  );
}

export interface Verdict {
  verdict: 'ACCEPT' | 'DROP' | 'REJECT';
  /** rules traversed that matched, in order ("chain: spec"); the last one decided unless policy */
  path: { chain: string; index: number; rule?: Rule }[];
  /** the rule that decided, or undefined when the chain policy did */
  rule?: Rule;
  chain: string;
  rejectWith?: string;
}

/** the builtin chains of each table, in the order iptables lists them */
export const TABLE_BUILTINS: Record<string, readonly string[]> = {
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  raw: ['PREROUTING', 'OUTPUT'],
  security: ['INPUT', 'FORWARD', 'OUTPUT'],
};
/** the order iptables-save (nf_tables) dumps the tables in */
export const SAVE_TABLE_ORDER = ['mangle', 'security', 'raw', 'filter', 'nat'];

export class Netfilter {
  /** table -> chain name -> chain; only the filter table is evaluated here */
  readonly tables = new Map<string, Map<string, Chain>>();
  /** tables a command has created in the kernel even while they hold nothing (iptables -N/-A/-P…) */
  private readonly created = new Set<string>();

  constructor() {
    this.tables.set('filter', Netfilter.builtinChains('filter'));
  }

  private static builtinChains(table: string): Map<string, Chain> {
    const m = new Map<string, Chain>();
    for (const name of TABLE_BUILTINS[table] ?? [])
      m.set(name, { name, policy: 'ACCEPT', rules: [], pkts: 0, bytes: 0 });
    return m;
  }

  chain(table: string, name: string): Chain | undefined {
    return this.tables.get(table)?.get(name);
  }

  /** the table's chains, creating its builtin chains when it has none yet */
  table(name: string): Map<string, Chain> {
    let t = this.tables.get(name);
    if (!t) {
      t = Netfilter.builtinChains(name);
      this.tables.set(name, t);
    }
    return t;
  }

  newChain(table: string, name: string): Chain {
    const t = this.tables.get(table);
    if (!t) throw new RuleSyntaxError(`can't initialize iptables table \`${table}': Table does not exist`);
    if (t.has(name)) throw new RuleSyntaxError('Chain already exists.');
    const c: Chain = { name, rules: [], pkts: 0, bytes: 0 };
    t.set(name, c);
    return c;
  }

  isBuiltin(table: string, name: string): boolean {
    return (TABLE_BUILTINS[table] ?? []).includes(name);
  }

  /** rules of the table that jump or go to `name` */
  references(table: string, name: string): number {
    let n = 0;
    for (const c of this.tables.get(table)?.values() ?? [])
      for (const r of c.rules) if (r.target === name) n++;
    return n;
  }

  /** a command created the table in the kernel */
  markCreated(table: string): void {
    this.created.add(table);
  }

  /** does the table exist in the kernel? (an untouched table with only empty ACCEPT builtins does not) */
  present(table: string): boolean {
    const t = this.tables.get(table);
    if (!t) return false;
    if (this.created.has(table)) return true;
    return [...t.values()].some(
      (c) => !this.isBuiltin(table, c.name) || c.rules.length || c.policy !== 'ACCEPT',
    );
  }

  /** does any rule in this namespace need conntrack? (nf_conntrack hooks register per netns on demand) */
  usesConntrack(): boolean {
    for (const t of this.tables.values())
      for (const c of t.values()) for (const r of c.rules) if (r.ctstate) return true;
    return false;
  }

  /** Run a packet through a builtin chain of the filter table. */
  evaluate(hookChain: 'INPUT' | 'FORWARD' | 'OUTPUT', p: PacketMeta): Verdict {
    const table = this.tables.get('filter')!;
    const path: Verdict['path'] = [];
    const walk = (chainName: string, depth: number): Verdict | 'RETURN' => {
      const chain = table.get(chainName);
      if (!chain || depth > 32) return 'RETURN';
      for (let i = 0; i < chain.rules.length; i++) {
        const r = chain.rules[i];
        if (!ruleMatches(r, p)) continue;
        r.pkts++;
        r.bytes += p.len;
        path.push({ chain: chainName, index: i + 1, rule: r });
        const tgt = r.target;
        if (!tgt) continue;
        if (tgt === 'ACCEPT' || tgt === 'DROP' || tgt === 'REJECT')
          return { verdict: tgt, path, rule: r, chain: chainName, rejectWith: r.rejectWith };
        if (tgt === 'RETURN') return 'RETURN';
        const res = walk(tgt, depth + 1);
        // -g: the chain gone to returns to whoever called this one
        if (res !== 'RETURN' || r.goto) return res;
      }
      return 'RETURN';
    };
    const res = walk(hookChain, 0);
    if (res !== 'RETURN') return res;
    const builtin = table.get(hookChain)!;
    // a table that does not exist in the kernel has no hooks: nothing counts there (a pod's namespace)
    if (this.present('filter')) {
      builtin.pkts++;
      builtin.bytes += p.len;
    }
    return { verdict: builtin.policy ?? 'ACCEPT', path, chain: hookChain };
  }
}
