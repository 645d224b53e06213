/**
 * What a namespace's hooks need of its rule set, worked out once per rule set instead of at every
 * hook run: whether any table exists in the kernel, per hook the tables that have an entry (with
 * their builtin chain and whether it has a rule at all), each table's rules compiled for the
 * traversal (eval.ts), and where the `-m statistic --mode random` rules are.
 *
 * A plan is kept until the rule set changes: every writer of a namespace's netfilter (Netfilter's
 * methods, the emulated iptables and iptables-restore) calls Netfilter.changed(), which drops it,
 * and the next hook makes a new one. Counters, `-m recent` lists, nth counts and IP sets are read
 * where they are, never kept here.
 */
import type { NfDecision } from '../events.ts';
import type { Netfilter } from '../netfilter.ts';
import { compileRule, compileTable, type CompiledTable, type Traversal } from './eval.ts';
import type { VerdictCache } from './verdicts.ts';
import { HOOK_TABLES, HOOKS, type Chain, type Hook, type TableName } from './types.ts';

/** one table's entry at a hook */
export interface HookTable {
  readonly name: TableName;
  readonly compiled: CompiledTable;
  /** the table's builtin chain for the hook */
  readonly chain: Chain;
  /** no rule and an ACCEPT policy: the policy decides alone, without a packet view or a record */
  readonly empty: boolean;
  /** its kept traversals (verdicts.ts), made at its first traversal; dropped by an IP-set write */
  verdicts?: VerdictCache;
}

/** what a hook runs, in priority order: a table's builtin chain, nf_conntrack_in, or NAT (with the nat table's entry) */
export const OP_TABLE = 0;
export const OP_CT = 1;
export const OP_NAT = 2;
export interface HookOp {
  readonly op: typeof OP_TABLE | typeof OP_CT | typeof OP_NAT;
  /** the table's entry (OP_TABLE, always; OP_NAT, the nat table's at the hook when it has one) */
  readonly entry: HookTable | undefined;
}

export interface NfPlan {
  /** a table exists in the kernel (Netfilter.active()): without one, no hook has anything to do */
  readonly active: boolean;
  /** per hook, the tables that have an entry there (the table exists in the kernel and has the hook's chain) */
  readonly hooks: Readonly<Record<Hook, Readonly<Partial<Record<TableName, HookTable>>>>>;
  /** per hook, what it runs in order (hookOps) */
  readonly ops: Readonly<Record<Hook, readonly HookOp[]>>;
  /** the compiled tables of those entries, by name */
  readonly tables: ReadonlyMap<string, CompiledTable>;
  /** those of them with a rule that draws at random (`-m statistic --mode random`) */
  readonly random: ReadonlySet<string>;
}

const plans = new WeakMap<Netfilter, NfPlan>();

function makePlan(nf: Netfilter): NfPlan {
  const tables = new Map<string, CompiledTable>();
  const hooks = {} as Record<Hook, Partial<Record<TableName, HookTable>>>;
  const ops = {} as Record<Hook, HookOp[]>;
  for (const hook of HOOKS) {
    const entries: Partial<Record<TableName, HookTable>> = {};
    for (const name of HOOK_TABLES[hook]) {
      const table = nf.tables.get(name);
      const chain = table?.get(hook);
      // a table that does not exist in the kernel has no hooks (a pod's namespace)
      if (!table || !chain || !nf.present(name)) continue;
      let compiled = tables.get(name);
      if (!compiled) tables.set(name, (compiled = compileTable(table)));
      entries[name] = { name, compiled, chain, empty: chain.rules.length === 0 && chain.policy !== 'DROP' };
    }
    hooks[hook] = entries;
    ops[hook] = hookOps(nf, hook, entries);
  }
  const random = new Set<string>();
  for (const [name, t] of tables)
    for (const c of t.values()) if (c.firstRandom < c.rules.length) random.add(name);
  return { active: nf.active(), hooks, ops, tables, random };
}

const CT_OP: HookOp = { op: OP_CT, entry: undefined };

/**
 * What nf_hook_slow runs at the hook, in priority order, for the rule set as it is now: the
 * tables that have an entry there; nf_conntrack_in (−200) at PREROUTING and OUTPUT, before mangle
 * whether mangle is there or not; NAT where the nat table exists (its base chains are what make
 * it run: no nat table, no NAT), with the nat table's entry. Every write that could change it
 * drops the plan (Netfilter.changed()).
 */
export function hookOps(
  nf: Netfilter,
  hook: Hook,
  entries: Readonly<Partial<Record<TableName, HookTable>>>,
): HookOp[] {
  const ops: HookOp[] = [];
  const ctHook = hook === 'PREROUTING' || hook === 'OUTPUT';
  for (const name of HOOK_TABLES[hook]) {
    if (name === 'mangle' && ctHook) ops.push(CT_OP);
    const entry = entries[name];
    if (name === 'nat') {
      if (nf.present('nat')) ops.push({ op: OP_NAT, entry });
    } else if (entry) ops.push({ op: OP_TABLE, entry });
  }
  return ops;
}

/** the namespace's plan for its rule set as it is */
export function planOf(nf: Netfilter): NfPlan {
  let p = plans.get(nf);
  if (!p) plans.set(nf, (p = makePlan(nf)));
  return p;
}

/** the rule set changed (Netfilter.changed()): the next hook makes a new plan */
export function dropPlan(nf: Netfilter): void {
  plans.delete(nf);
}

/** an IP set changed (Netfilter.setsChanged()): the plan's kept traversals go, the plan stays */
export function dropVerdicts(nf: Netfilter): void {
  const p = plans.get(nf);
  if (!p) return;
  for (const hook of HOOKS) for (const e of Object.values(p.hooks[hook])) e.verdicts = undefined;
}

/**
 * The last rule of a traversal's path reached through `-m statistic --mode random` draws, with the
 * probability a flow takes it: its own probability times, for each random rule before it in its
 * chain, that of not matching (multiplied in the chain's order).
 */
export function randomChoice(nf: Netfilter, t: Traversal): NfDecision['choice'] {
  const plan = planOf(nf);
  const table = plan.tables.get(t.table);
  // no rule of the table draws: no hit of the path can be a random choice
  if (table && !plan.random.has(t.table)) return undefined;
  for (let k = t.path.length - 1; k >= 0; k--) {
    const hit = t.path[k];
    const chain = table?.get(hit.chain);
    const rules = chain?.rules ?? [];
    let probability = (chain ? rules[hit.index - 1].random : compileRule(hit.rule).random) ?? 1;
    let random = probability !== 1;
    const before = Math.min(hit.index - 1, rules.length);
    if (!random && (chain?.firstRandom ?? 0) >= before) continue;
    for (let i = 0; i < before; i++) {
      const q = rules[i].random;
      if (q === undefined) continue;
      probability *= 1 - q;
      random = true;
    }
    if (random) return { chain: hit.chain, index: hit.index, probability };
  }
  return undefined;
}
