/**
 * ipt_do_table for one table at one hook: the builtin chain's rules in order, jumps and gotos
 * into user chains, RETURN, the policy; rule counters. Targets that do not decide (MARK, CT
 * --notrack, a rule without target) change the packet and go on; ACCEPT, DROP, REJECT and the NAT
 * targets decide. The result is a typed record of what happened, for the datapath to act on and
 * the trace to show.
 */
import type { MatchEnv, MatchExtension, PacketView } from './extension.ts';
import { matchExt } from './matches.ts';
import { netMask } from './parse.ts';
import type { Chain, Hook, Match, Neg, Net, Rule, TableName, Target } from './types.ts';

/** a rule that matched: its chain, its 1-based position, the rule */
export interface RuleHit {
  chain: string;
  index: number;
  rule: Rule;
}

export interface Traversal {
  table: TableName;
  hook: Hook;
  /** the builtin chain the hook runs */
  chain: string;
  /** every rule that matched, in order; the last one decided unless the policy did */
  path: RuleHit[];
  verdict: 'ACCEPT' | 'DROP' | 'REJECT';
  /** the rule whose target decided (ACCEPT, DROP, REJECT, DNAT, SNAT, MASQUERADE); undefined: the policy */
  decided?: RuleHit;
  /** a CT --notrack/NOTRACK rule matched: the packet stays untracked */
  notrack?: boolean;
}

/** ip_packet_match's ifname compare: `cali+` is every name that starts with `cali` (no substring made per packet) */
function matchIface(pattern: string, name: string | undefined): boolean {
  if (name === undefined) return false;
  const last = pattern.length - 1;
  if (pattern.charCodeAt(last) !== 0x2b) return pattern === name;
  if (name.length < last) return false;
  for (let i = 0; i < last; i++) if (pattern.charCodeAt(i) !== name.charCodeAt(i)) return false;
  return true;
}

/**
 * A rule as a traversal runs it, made once per rule set (netfilter/plan.ts): its header fields
 * with their masks worked out, only the matches that test something (a comment always matches),
 * each with its extension, and every rule of one shape (the rules' own records differ by which
 * options they have).
 */
export interface CompiledRule {
  readonly rule: Rule;
  readonly proto: Neg<number> | undefined;
  readonly src: Neg<Net> | undefined;
  readonly srcMask: number;
  readonly dst: Neg<Net> | undefined;
  readonly dstMask: number;
  readonly in: Neg<string> | undefined;
  readonly out: Neg<string> | undefined;
  readonly matches: readonly Match[];
  readonly exts: readonly MatchExtension<Match>[];
  readonly target: Target | undefined;
  /** the probability its `-m statistic --mode random` match matches with (the first such, not negated) */
  readonly random: number | undefined;
}

/** a chain of compiled rules */
export interface CompiledChain {
  readonly chain: Chain;
  readonly rules: readonly CompiledRule[];
  /** the 0-based index of its first rule with a random draw (`random`), rules.length when none */
  readonly firstRandom: number;
}

/** a table's chains, compiled, by name */
export type CompiledTable = ReadonlyMap<string, CompiledChain>;

export function compileRule(r: Rule): CompiledRule {
  const matches: Match[] = [];
  const exts: MatchExtension<Match>[] = [];
  let random: number | undefined;
  for (const m of r.matches) {
    if (random === undefined && m.kind === 'statistic' && m.mode === 'random' && !m.neg)
      random = m.probability / 0x80000000;
    if (m.kind === 'comment') continue;
    matches.push(m);
    exts.push(matchExt(m));
  }
  return {
    rule: r,
    proto: r.proto,
    src: r.src,
    srcMask: r.src ? netMask(r.src.v) : 0,
    dst: r.dst,
    dstMask: r.dst ? netMask(r.dst.v) : 0,
    in: r.in,
    out: r.out,
    matches,
    exts,
    target: r.target,
    random,
  };
}

export function compileTable(table: ReadonlyMap<string, Chain>): CompiledTable {
  const out = new Map<string, CompiledChain>();
  for (const [name, chain] of table) {
    const rules = chain.rules.map(compileRule);
    const first = rules.findIndex((r) => r.random !== undefined);
    out.set(name, { chain, rules, firstRandom: first < 0 ? rules.length : first });
  }
  return out;
}

/**
 * Does the compiled rule match the packet: the header fields, then each match in order through its
 * extension's test (MATCHES in matches.ts: a new match kind is one entry there). `chain` and
 * `index` are the rule's place, set in env.pos for the matches that draw per rule (statistic).
 */
function compiledMatches(
  r: CompiledRule,
  p: PacketView,
  env: MatchEnv,
  chain: string,
  index: number,
): boolean {
  const proto = r.proto;
  if (proto && (proto.v === 0 || proto.v === p.proto) === proto.neg) return false;
  const src = r.src;
  if (src && ((p.src & r.srcMask) >>> 0 === src.v.net) === src.neg) return false;
  const dst = r.dst;
  if (dst && ((p.dst & r.dstMask) >>> 0 === dst.v.net) === dst.neg) return false;
  const iif = r.in;
  if (iif && matchIface(iif.v, p.in) === iif.neg) return false;
  const oif = r.out;
  if (oif && matchIface(oif.v, p.out) === oif.neg) return false;
  const ms = r.matches;
  if (ms.length === 0) return true;
  env.pos.chain = chain;
  env.pos.index = index;
  const exts = r.exts;
  for (let i = 0; i < ms.length; i++) if (!exts[i].test(ms[i], p, env)) return false;
  return true;
}

/** Does the rule match the packet (what a traversal asks of each rule, for one rule on its own) */
export function ruleMatches(r: Rule, p: PacketView, env: MatchEnv, chain = '', index = 0): boolean {
  return compiledMatches(compileRule(r), p, env, chain, index);
}

/** the most chains deep a traversal goes (the kernel refuses loops when rules are added) */
const MAX_DEPTH = 32;

/** one chain of a traversal (ipt_do_table's loop, a jump recursing); true when a target decided */
function walkChain(
  table: CompiledTable,
  res: Traversal,
  p: PacketView,
  env: MatchEnv,
  chainName: string,
  depth: number,
): boolean {
  const chain = table.get(chainName);
  if (!chain || depth > MAX_DEPTH) return false;
  const rules = chain.rules;
  for (let i = 0; i < rules.length; i++) {
    const c = rules[i];
    if (!compiledMatches(c, p, env, chainName, i + 1)) continue;
    const r = c.rule;
    r.pkts++;
    r.bytes += p.len;
    const hit = { chain: chainName, index: i + 1, rule: r };
    res.path.push(hit);
    const t = c.target;
    if (!t) continue;
    switch (t.kind) {
      case 'ACCEPT':
      case 'DROP':
      case 'REJECT':
      case 'DNAT':
      case 'SNAT':
      case 'MASQUERADE':
        res.verdict = t.kind === 'DROP' || t.kind === 'REJECT' ? t.kind : 'ACCEPT';
        res.decided = hit;
        return true;
      case 'RETURN':
        return false;
      case 'MARK':
        p.mark = ((p.mark & ~t.mask) ^ t.value) >>> 0;
        continue;
      case 'CT':
        res.notrack = true;
        continue;
      case 'jump':
      case 'goto': {
        if (t.chain === 'ACCEPT' || t.chain === 'DROP') {
          res.verdict = t.chain;
          res.decided = hit;
          return true;
        }
        if (walkChain(table, res, p, env, t.chain, depth + 1)) return true;
        // -g: the chain gone to returns to whoever called this one
        if (t.kind === 'goto') return false;
        continue;
      }
    }
  }
  return false;
}

/**
 * Run a packet through a builtin chain of a compiled table. `countPolicy`: the table exists in the
 * kernel, so its builtin chain counts the packets its policy decides.
 */
export function traverse(
  table: CompiledTable,
  tableName: TableName,
  hook: Hook,
  p: PacketView,
  env: MatchEnv,
  countPolicy: boolean,
): Traversal {
  const res: Traversal = { table: tableName, hook, chain: hook, path: [], verdict: 'ACCEPT' };
  if (walkChain(table, res, p, env, hook, 0)) return res;
  const builtin = table.get(hook)!.chain;
  // a table that does not exist in the kernel has no hooks: nothing counts there (a pod's namespace)
  if (countPolicy && !builtin.noCounters) {
    builtin.pkts++;
    builtin.bytes += p.len;
  }
  res.verdict = builtin.policy ?? 'ACCEPT';
  return res;
}
