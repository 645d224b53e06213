/**
 * Netfilter, IPv4: the five hooks and the filter table's chains, rules, counters and policies.
 * Rules are held as parsed matches and printed back in iptables-save form, so what a CNI
 * programs and what a user types are one representation.
 */
import { intToIp4, ip4ToInt, prefixMask } from '../wire/addr.ts';

export const HOOKS = ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'] as const;
export type Hook = (typeof HOOKS)[number];

export const CT_STATES = ['INVALID', 'NEW', 'ESTABLISHED', 'RELATED', 'UNTRACKED'] as const;
export type CtState = (typeof CT_STATES)[number];

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

export interface Rule {
  proto?: Neg<number>;
  src?: Neg<{ net: number; len: number }>;
  dst?: Neg<{ net: number; len: number }>;
  in?: Neg<string>;
  out?: Neg<string>;
  sport?: Neg<[number, number]>;
  dport?: Neg<[number, number]>;
  ctstate?: Neg<CtState[]>;
  mark?: Neg<{ value: number; mask: number }>;
  comment?: string;
  /** ACCEPT | DROP | REJECT | RETURN | user chain */
  target?: string;
  rejectWith?: string;
  /** the -m modules in the order given, for printing */
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

export class RuleSyntaxError extends Error {}

const PROTO_NUM: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, ipencap: 4, all: 0 };
export const PROTO_NAME: Record<number, string> = { 6: 'tcp', 17: 'udp', 1: 'icmp', 4: 'ipencap', 0: 'all' };

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

function parseNet(text: string): { net: number; len: number } {
  const [a, l] = text.split('/');
  const len = l === undefined ? 32 : Number(l);
  if (!/^\d{1,2}$/.test(l ?? '32') || len > 32)
    throw new RuleSyntaxError(`host/network \`${text}' not found`);
  let addr: number;
  try {
    addr = ip4ToInt(a);
  } catch {
    throw new RuleSyntaxError(`host/network \`${text}' not found`);
  }
  return { net: (addr & prefixMask(len)) >>> 0, len };
}

function parsePorts(text: string): [number, number] {
  const [a, b] = text.split(':');
  const lo = a === '' ? 0 : Number(a);
  const hi = b === undefined ? lo : b === '' ? 65535 : Number(b);
  if (![lo, hi].every((p) => Number.isInteger(p) && p >= 0 && p <= 65535) || lo > hi)
    throw new RuleSyntaxError(`invalid port/service \`${text}' specified`);
  return [lo, hi];
}

/**
 * Parse the match-and-target part of an iptables rule (what follows `-A CHAIN`), e.g.
 * `-s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT`.
 */
export function parseRuleSpec(args: readonly string[]): Rule {
  const rule: Rule = { modules: [], pkts: 0, bytes: 0 };
  let neg = false;
  const need = (i: number, opt: string): string => {
    const v = args[i];
    if (v === undefined) throw new RuleSyntaxError(`option "${opt}" requires an argument`);
    return v;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '!') {
      neg = true;
      continue;
    }
    const take = () => need(++i, a);
    switch (a) {
      case '-p':
      case '--protocol': {
        const p = take().toLowerCase();
        const n = PROTO_NUM[p] ?? (/^\d+$/.test(p) ? Number(p) : undefined);
        if (n === undefined) throw new RuleSyntaxError(`unknown protocol "${p}" specified`);
        rule.proto = { v: n, neg };
        break;
      }
      case '-s':
      case '--source':
        rule.src = { v: parseNet(take()), neg };
        break;
      case '-d':
      case '--destination':
        rule.dst = { v: parseNet(take()), neg };
        break;
      case '-i':
      case '--in-interface':
        rule.in = { v: take(), neg };
        break;
      case '-o':
      case '--out-interface':
        rule.out = { v: take(), neg };
        break;
      case '--sport':
      case '--source-port':
        if (!rule.proto || (rule.proto.v !== 6 && rule.proto.v !== 17))
          throw new RuleSyntaxError(`unknown option "${a}"`);
        rule.sport = { v: parsePorts(take()), neg };
        break;
      case '--dport':
      case '--destination-port':
        if (!rule.proto || (rule.proto.v !== 6 && rule.proto.v !== 17))
          throw new RuleSyntaxError(`unknown option "${a}"`);
        rule.dport = { v: parsePorts(take()), neg };
        break;
      case '-m':
      case '--match': {
        const m = take();
        if (!['conntrack', 'state', 'comment', 'mark', 'tcp', 'udp'].includes(m))
          throw new RuleSyntaxError(`Couldn't load match \`${m}':No such file or directory`);
        rule.modules.push(m);
        break;
      }
      case '--ctstate':
      case '--state': {
        const states = take().split(',');
        for (const s of states)
          if (!(CT_STATES as readonly string[]).includes(s)) throw new RuleSyntaxError(`Bad ctstate "${s}"`);
        rule.ctstate = { v: states as CtState[], neg };
        break;
      }
      case '--comment':
        rule.comment = take();
        break;
      case '--mark': {
        const [v, m] = take().split('/');
        rule.mark = { v: { value: Number(v), mask: m === undefined ? 0xffffffff : Number(m) }, neg };
        if (Number.isNaN(rule.mark.v.value) || Number.isNaN(rule.mark.v.mask))
          throw new RuleSyntaxError(`Bad mark value "${args[i]}"`);
        break;
      }
      case '-j':
      case '--jump':
        rule.target = take();
        break;
      case '--reject-with':
        rule.rejectWith = take();
        break;
      default:
        throw new RuleSyntaxError(`unknown option "${a}"`);
    }
    neg = false;
  }
  return rule;
}

function fmtNet(n: { net: number; len: number }): string {
  return `${intToIp4(n.net)}/${n.len}`;
}
function fmtPorts([lo, hi]: [number, number]): string {
  return lo === hi ? String(lo) : `${lo}:${hi}`;
}
const bang = (n: { neg: boolean }) => (n.neg ? '! ' : '');

/** The rule as iptables-save prints it after `-A CHAIN`. */
export function formatRuleSpec(r: Rule): string {
  const p: string[] = [];
  if (r.src) p.push(`${bang(r.src)}-s ${fmtNet(r.src.v)}`);
  if (r.dst) p.push(`${bang(r.dst)}-d ${fmtNet(r.dst.v)}`);
  if (r.in) p.push(`${bang(r.in)}-i ${r.in.v}`);
  if (r.out) p.push(`${bang(r.out)}-o ${r.out.v}`);
  if (r.proto) p.push(`${bang(r.proto)}-p ${PROTO_NAME[r.proto.v] ?? r.proto.v}`);
  const printed = new Set<string>();
  for (const m of r.modules) {
    if (printed.has(m)) continue;
    printed.add(m);
    if (m === 'comment' && r.comment !== undefined) p.push(`-m comment --comment ${quoteSave(r.comment)}`);
    if ((m === 'conntrack' || m === 'state') && r.ctstate)
      p.push(`-m ${m} ${bang(r.ctstate)}--${m === 'state' ? 'state' : 'ctstate'} ${r.ctstate.v.join(',')}`);
    if (m === 'mark' && r.mark)
      p.push(
        `-m mark ${bang(r.mark)}--mark 0x${r.mark.v.value.toString(16)}/0x${r.mark.v.mask.toString(16)}`,
      );
    if (m === 'tcp' || m === 'udp') {
      const ports: string[] = [];
      if (r.sport) ports.push(`${bang(r.sport)}--sport ${fmtPorts(r.sport.v)}`);
      if (r.dport) ports.push(`${bang(r.dport)}--dport ${fmtPorts(r.dport.v)}`);
      p.push(`-m ${m}${ports.length ? ' ' + ports.join(' ') : ''}`);
    }
  }
  if (r.target) p.push(`-j ${r.target}`);
  if (r.rejectWith) p.push(`--reject-with ${r.rejectWith}`);
  return p.join(' ');
}

function quoteSave(s: string): string {
  return /^[\w./:-]+$/.test(s) ? s : `"${s.replace(/(["\\])/g, '\\$1')}"`;
}

function matchIface(pattern: string, name: string | undefined): boolean {
  if (name === undefined) return false;
  return pattern.endsWith('+') ? name.startsWith(pattern.slice(0, -1)) : pattern === name;
}

function inNet(ip: string, n: { net: number; len: number }): boolean {
  return (ip4ToInt(ip) & prefixMask(n.len)) >>> 0 === n.net;
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
    t(r.mark, () => (p.mark & r.mark!.v.mask) === r.mark!.v.value)
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

export class Netfilter {
  /** table -> chain name -> chain; only the filter table is evaluated here */
  readonly tables = new Map<string, Map<string, Chain>>();

  constructor() {
    const filter = new Map<string, Chain>();
    for (const name of ['INPUT', 'FORWARD', 'OUTPUT'])
      filter.set(name, { name, policy: 'ACCEPT', rules: [], pkts: 0, bytes: 0 });
    this.tables.set('filter', filter);
  }

  chain(table: string, name: string): Chain | undefined {
    return this.tables.get(table)?.get(name);
  }

  newChain(table: string, name: string): Chain {
    const t = this.tables.get(table);
    if (!t) throw new RuleSyntaxError(`can't initialize iptables table \`${table}': Table does not exist`);
    if (t.has(name)) throw new RuleSyntaxError('Chain already exists.');
    const c: Chain = { name, rules: [], pkts: 0, bytes: 0 };
    t.set(name, c);
    return c;
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
        if (res !== 'RETURN') return res;
      }
      return 'RETURN';
    };
    const res = walk(hookChain, 0);
    if (res !== 'RETURN') return res;
    const builtin = table.get(hookChain)!;
    builtin.pkts++;
    builtin.bytes += p.len;
    return { verdict: builtin.policy ?? 'ACCEPT', path, chain: hookChain };
  }
}
