/**
 * ipt_do_table for one table at one hook: the builtin chain's rules in order, jumps and gotos
 * into user chains, RETURN, the policy; rule counters. Targets that do not decide (MARK, CT
 * --notrack, a rule without target) change the packet and go on; ACCEPT, DROP, REJECT and the NAT
 * targets decide. The result is a typed record of what happened, for the datapath to act on and
 * the trace to show.
 */
import type { NfDecision } from '../events.ts';
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
  /**
   * the traversal is one the table's cache keeps (verdicts.ts): its typed decision (stack.ts
   * nfDecision), its hook event (hooks.ts) and its step's event (stack.ts), each made once and
   * shared by every packet that replays it
   */
  kept?: {
    decision?: NfDecision;
    event?: { kind: 'traversal'; traversal: Traversal };
    step?: { type: 'netfilter'; decision: NfDecision };
  };
}

/**
 * ip_packet_match's ifname compare, of a pattern compiled by ifacePattern: `cali+` is every name
 * that starts with `cali`
 */
function matchIface(name: string, prefix: boolean, dev: string | undefined): boolean {
  if (dev === undefined) return false;
  return prefix ? dev.startsWith(name) : dev === name;
}

/** an -i/-o pattern as matchIface takes it: the name, without its `+` when it is a prefix */
function ifacePattern(pattern: string | undefined): [string | undefined, boolean] {
  if (pattern === undefined || pattern.charCodeAt(pattern.length - 1) !== 0x2b) return [pattern, false];
  return [pattern.slice(0, -1), true];
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
  /** -i: the name (a prefix when `inPrefix`: `cali+`), negated when `inNeg` */
  readonly in: string | undefined;
  readonly inPrefix: boolean;
  readonly inNeg: boolean;
  readonly out: string | undefined;
  readonly outPrefix: boolean;
  readonly outNeg: boolean;
  readonly matches: readonly Match[];
  readonly exts: readonly MatchExtension<Match>[];
  /** a match draws per rule (statistic): the traversal tells it the rule's place (env.pos) */
  readonly draws: boolean;
  readonly target: Target | undefined;
  /** what the target does in the traversal's loop (ACT_*) */
  readonly act: number;
  /** ACT_DECIDE: the verdict (ACCEPT for the NAT targets and a jump to ACCEPT) */
  readonly verdict: 'ACCEPT' | 'DROP' | 'REJECT';
  /** ACT_MARK: mark = (mark & ~markMask) ^ markValue */
  readonly markMask: number;
  readonly markValue: number;
  /** ACT_JUMP, ACT_GOTO: the chain's name, and the chain (undefined: not in the table) */
  readonly to: string;
  jump: CompiledChain | undefined;
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

/** the targets' actions in a traversal */
const ACT_NONE = 0;
const ACT_DECIDE = 1;
const ACT_RETURN = 2;
const ACT_MARK = 3;
const ACT_NOTRACK = 4;
const ACT_JUMP = 5;
const ACT_GOTO = 6;

function action(
  t: Target | undefined,
): Pick<CompiledRule, 'act' | 'verdict' | 'markMask' | 'markValue' | 'to'> {
  const out = {
    act: ACT_NONE,
    verdict: 'ACCEPT' as CompiledRule['verdict'],
    markMask: 0,
    markValue: 0,
    to: '',
  };
  switch (t?.kind) {
    case undefined:
      break;
    case 'ACCEPT':
    case 'DROP':
    case 'REJECT':
    case 'DNAT':
    case 'SNAT':
    case 'MASQUERADE':
      out.act = ACT_DECIDE;
      out.verdict = t.kind === 'DROP' || t.kind === 'REJECT' ? t.kind : 'ACCEPT';
      break;
    case 'RETURN':
      out.act = ACT_RETURN;
      break;
    case 'MARK':
      out.act = ACT_MARK;
      out.markMask = t.mask;
      out.markValue = t.value;
      break;
    case 'CT':
      out.act = ACT_NOTRACK;
      break;
    case 'jump':
    case 'goto':
      if (t.chain === 'ACCEPT' || t.chain === 'DROP') {
        out.act = ACT_DECIDE;
        out.verdict = t.chain;
      } else {
        out.act = t.kind === 'jump' ? ACT_JUMP : ACT_GOTO;
        out.to = t.chain;
      }
  }
  return out;
}

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
  const [inName, inPrefix] = ifacePattern(r.in?.v);
  const [outName, outPrefix] = ifacePattern(r.out?.v);
  return {
    rule: r,
    proto: r.proto,
    src: r.src,
    srcMask: r.src ? netMask(r.src.v) : 0,
    dst: r.dst,
    dstMask: r.dst ? netMask(r.dst.v) : 0,
    in: inName,
    inPrefix,
    inNeg: !!r.in?.neg,
    out: outName,
    outPrefix,
    outNeg: !!r.out?.neg,
    matches,
    exts,
    draws: matches.some((m) => m.kind === 'statistic'),
    target: r.target,
    ...action(r.target),
    jump: undefined,
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
  for (const c of out.values()) for (const r of c.rules) if (r.to) r.jump = out.get(r.to);
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
  if (r.in !== undefined && matchIface(r.in, r.inPrefix, p.in) === r.inNeg) return false;
  if (r.out !== undefined && matchIface(r.out, r.outPrefix, p.out) === r.outNeg) return false;
  const ms = r.matches;
  if (ms.length === 0) return true;
  if (r.draws) {
    env.pos.chain = chain;
    env.pos.index = index;
  }
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
  chain: CompiledChain | undefined,
  chainName: string,
  res: Traversal,
  p: PacketView,
  env: MatchEnv,
  depth: number,
): boolean {
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
    switch (c.act) {
      case ACT_NONE:
        continue;
      case ACT_DECIDE:
        res.verdict = c.verdict;
        res.decided = hit;
        return true;
      case ACT_RETURN:
        return false;
      case ACT_MARK:
        p.mark = ((p.mark & ~c.markMask) ^ c.markValue) >>> 0;
        continue;
      case ACT_NOTRACK:
        res.notrack = true;
        continue;
      default:
        if (walkChain(c.jump, c.to, res, p, env, depth + 1)) return true;
        // -g: the chain gone to returns to whoever called this one
        if (c.act === ACT_GOTO) return false;
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
  if (walkChain(table.get(hook), hook, res, p, env, 0)) return res;
  const builtin = table.get(hook)!.chain;
  // a table that does not exist in the kernel has no hooks: nothing counts there (a pod's namespace)
  if (countPolicy && !builtin.noCounters) {
    builtin.pkts++;
    builtin.bytes += p.len;
  }
  res.verdict = builtin.policy ?? 'ACCEPT';
  return res;
}
