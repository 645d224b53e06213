/**
 * Netfilter, IPv4, of one network namespace: the raw, mangle, nat, filter and security tables
 * with their chains, rules, counters and policies, and the `-m recent` lists. Rules are held as
 * typed data (netfilter/types.ts) and printed back in iptables-save form, so what a CNI programs
 * and what a user types are one representation.
 *
 * Rule options are parsed the way iptables 1.8.9 (nf_tables) parses them (netfilter/builder.ts),
 * with the extensions of one registry (netfilter/matches.ts, targets.ts); the hooks run the tables
 * in the kernel's priority order (netfilter/hooks.ts).
 */
import { targetExt } from './netfilter/targets.ts';
import type { Chain, Hook, RecentEntry, Rule, TableName } from './netfilter/types.ts';
import { matchExt } from './netfilter/matches.ts';
import type { IpSet } from './ipset.ts';
import type { StateOwner } from './table.ts';
import { dropPlan, dropVerdicts } from './netfilter/plan.ts';

export * from './netfilter/types.ts';
export {
  RuleSyntaxError,
  PROTO_NAME,
  shellSplit,
  strtoul0,
  parseAddresses,
  netMask,
  fmtNet,
  fullRange,
  hex,
  quoteSave,
  type ServiceLookup,
} from './netfilter/parse.ts';
export { RuleBuilder, parseRuleSpec, clonePlain, type BuilderOptions } from './netfilter/builder.ts';
export { formatRuleSpec, matchText, targetColumn, targetSpec } from './netfilter/format.ts';
export {
  REJECT_TYPES,
  STANDARD_TARGETS,
  TARGETS,
  IPTABLES_TARGETS,
  targetName,
} from './netfilter/targets.ts';
export { MATCHES, ICMP_NAMES } from './netfilter/matches.ts';
export type { RuleHit, Traversal } from './netfilter/eval.ts';
export { planOf, randomChoice, type NfPlan } from './netfilter/plan.ts';

/** the builtin chains of each table, in the order iptables lists them */
export const TABLE_BUILTINS: Record<string, readonly Hook[]> = {
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  raw: ['PREROUTING', 'OUTPUT'],
  security: ['INPUT', 'FORWARD', 'OUTPUT'],
};
/** the order iptables-save (nf_tables) dumps the tables in */
export const SAVE_TABLE_ORDER: readonly TableName[] = ['mangle', 'security', 'raw', 'filter', 'nat'];

/** what restricts where a rule may be: the tables and hooks an extension is valid in */
interface Limit {
  why: string;
  table?: readonly TableName[];
  hooks: readonly Hook[];
}

const NO_SETS: ReadonlyMap<string, IpSet> = new Map();

/** what restricts the tables and hooks a rule may be in (an extension's, or a match's) */
interface Limit {
  why: string;
  table?: readonly TableName[];
  hooks: readonly Hook[];
}
/** the empty `created` and `recent` of every namespace that has none of its own (never written) */
const NO_TABLES: ReadonlySet<string> = new Set();
const NO_RECENT: ReadonlyMap<string, RecentEntry[]> = new Map();

/**
 * The key of a Netfilter's owner (its namespace, told of every change of the rule set and the IP
 * sets: Netns.stateGeneration). A symbol, so not data: a Netfilter travels as its own fields
 * (data.ts), and a namespace gives the one it reads back its owner (Netns.restoreTables).
 */
export const NF_OWNER = Symbol('netfilter owner');

export class Netfilter {
  declare [NF_OWNER]?: StateOwner;

  /** table -> chain name -> chain */
  readonly tables = new Map<string, Map<string, Chain>>();
  /**
   * tables a command has created in the kernel even while they hold nothing (iptables -N/-A/-P…);
   * a namespace shares one empty set with all the others until its first (copy on write: most
   * namespaces never have one, and an empty Set is ~150 bytes)
   */
  created: ReadonlySet<string> = NO_TABLES;
  /** `-m recent` lists by name (xt_recent's /proc/net/xt_recent/NAME); shared while empty, as `created` */
  recent: ReadonlyMap<string, RecentEntry[]> = NO_RECENT;
  /**
   * The namespace's IP sets by name (ip_set's per-netns list), changed only by src/kernel/ipset.ts;
   * undefined while there is none, so a namespace without sets is the same data as before sets
   * were modelled.
   */
  ipsetsByName?: Map<string, IpSet>;

  get ipsets(): ReadonlyMap<string, IpSet> {
    return this.ipsetsByName ?? NO_SETS;
  }

  /** `created`, this namespace's own to write */
  private ownCreated(): Set<string> {
    if (this.created === NO_TABLES) this.created = new Set();
    return this.created as Set<string>;
  }

  /** the `-m recent` lists, this namespace's own to write (what a recent match changes) */
  ownRecent(): Map<string, RecentEntry[]> {
    if (this.recent === NO_RECENT) this.recent = new Map();
    return this.recent as Map<string, RecentEntry[]>;
  }

  constructor() {
    this.tables.set('filter', Netfilter.builtinChains('filter'));
  }

  /**
   * The rule set changed (tables, chains, rules, policies, the tables created): every writer calls
   * this — the methods here, the emulated iptables and iptables-restore — and the hooks make their
   * plan (netfilter/plan.ts) again at their next run.
   */
  changed(): void {
    dropPlan(this);
    this[NF_OWNER]?.stateChanged();
  }

  /**
   * An IP set was created, destroyed, swapped or had members added or removed: every writer of the
   * sets (src/kernel/ipset.ts) calls this, and the hooks' kept traversals (netfilter/verdicts.ts),
   * which read the sets, go.
   */
  setsChanged(): void {
    dropVerdicts(this);
    this[NF_OWNER]?.stateChanged();
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
      this.changed();
    }
    return t;
  }

  /** a new user chain; the table is created when it was not there */
  newChain(table: string, name: string): Chain {
    const t = this.table(table);
    if (t.has(name)) throw new Error(`chain ${name} already exists in ${table}`);
    const c: Chain = { name, rules: [], pkts: 0, bytes: 0 };
    t.set(name, c);
    this.markCreated(table);
    return c;
  }

  /** append a rule a program (CNI, kube-proxy) installs, after the kernel's checks */
  append(table: string, chain: string, rule: Rule): void {
    const c = this.chain(table, chain);
    if (!c) throw new Error(`no chain ${chain} in table ${table}`);
    const why = this.refuses(table, chain, rule);
    if (why) throw new Error(`the kernel refuses the rule in ${table} ${chain}: ${why}`);
    c.rules.push(rule);
    this.markCreated(table);
  }

  /** insert a rule a program installs at a 0-based position (`iptables -I CHAIN POS+1`), after the kernel's checks */
  insert(table: string, chain: string, pos: number, rule: Rule): void {
    const c = this.chain(table, chain);
    if (!c) throw new Error(`no chain ${chain} in table ${table}`);
    const why = this.refuses(table, chain, rule);
    if (why) throw new Error(`the kernel refuses the rule in ${table} ${chain}: ${why}`);
    c.rules.splice(pos, 0, rule);
    this.markCreated(table);
  }

  isBuiltin(table: string, name: string): boolean {
    return (TABLE_BUILTINS[table] ?? []).includes(name as Hook);
  }

  /** rules of the table that jump or go to `name` */
  references(table: string, name: string): number {
    let n = 0;
    for (const c of this.tables.get(table)?.values() ?? [])
      for (const r of c.rules)
        if ((r.target?.kind === 'jump' || r.target?.kind === 'goto') && r.target.chain === name) n++;
    return n;
  }

  /** the table is in the kernel (a command created it, or a rule or chain was written to it): the rule set changed */
  markCreated(table: string): void {
    this.changed();
    this.ownCreated().add(table);
  }

  /**
   * An iptables command (not iptables-restore) creates the table: iptables-nft adds its base
   * chains without counters, so their policies count nothing (checked in a namespace).
   */
  createByCommand(table: string): void {
    if (this.present(table)) return;
    for (const c of this.table(table).values()) if (this.isBuiltin(table, c.name)) c.noCounters = true;
    this.markCreated(table);
  }

  /** does the table exist in the kernel? (an untouched table with only empty ACCEPT builtins does not) */
  present(table: string): boolean {
    const t = this.tables.get(table);
    if (!t) return false;
    if (this.created.has(table)) return true;
    for (const c of t.values())
      if (!this.isBuiltin(table, c.name) || c.rules.length || c.policy !== 'ACCEPT') return true;
    return false;
  }

  /** does any table exist in the kernel? Without one, no hook has anything to do (a pod's namespace) */
  active(): boolean {
    for (const name of this.tables.keys()) if (this.present(name)) return true;
    return false;
  }

  /**
   * Does this namespace run conntrack? nf_conntrack registers its hooks per netns on demand: when
   * the nat table exists (its base chains need it) or a rule's match or target does
   * (xt_conntrack, xt_state, CT, the NAT targets).
   */
  usesConntrack(): boolean {
    if (this.present('nat')) return true;
    for (const t of this.tables.values())
      for (const c of t.values())
        for (const r of c.rules) {
          for (const m of r.matches) if (matchExt(m).conntrack) return true;
          if (r.target && targetExt(r.target)?.conntrack) return true;
        }
    return false;
  }

  /**
   * iptables-restore of a table (--noflush): each named chain flushed (or created), the rules
   * appended, and the table checked once, as the kernel validates a committed ruleset (one walk of
   * its jumps, not one per rule). All or nothing: a refused rule leaves the table as it was.
   */
  restore(table: string, chains: readonly string[], rules: readonly { chain: string; rule: Rule }[]): void {
    const t = this.table(table);
    const before = new Map(chains.map((name) => [name, t.get(name)]));
    // every chain the commit touches, as it was (a chain appended to without a flush too)
    const saved = [...new Set([...chains, ...rules.map((r) => r.chain)])].map((name) => {
      const c = t.get(name);
      return c && { c, rules: [...c.rules], pkts: c.pkts, bytes: c.bytes };
    });
    const wasCreated = this.created.has(table);
    try {
      for (const name of chains) {
        const c = t.get(name);
        if (c) {
          c.rules = [];
          c.pkts = c.bytes = 0;
        } else this.newChain(table, name);
      }
      for (const { chain, rule } of rules) {
        const c = this.chain(table, chain);
        if (!c) throw new Error(`no chain ${chain} in table ${table}`);
        c.rules.push(rule);
      }
      const reach = this.hookReach(table);
      for (const { chain, rule } of rules) {
        const why = this.refuses(table, chain, rule, reach);
        if (why) throw new Error(`the kernel refuses the rule in ${table} ${chain}: ${why}`);
      }
      this.markCreated(table);
    } catch (e) {
      for (const [name, c] of before) if (!c) t.delete(name);
      for (const x of saved)
        if (x) {
          x.c.rules = x.rules;
          x.c.pkts = x.pkts;
          x.c.bytes = x.bytes;
        }
      this.changed();
      if (!wasCreated) this.ownCreated().delete(table);
      throw e;
    }
  }

  /** every chain of the table with the builtin hooks it is reached from: hooksOf for all, in one walk per hook */
  hookReach(table: string): Map<string, Set<Hook>> {
    const out = new Map<string, Set<Hook>>();
    const t = this.tables.get(table);
    if (!t) return out;
    for (const hook of TABLE_BUILTINS[table] ?? []) {
      const stack = [hook as string];
      const seen = new Set<string>(stack);
      while (stack.length) {
        const name = stack.pop()!;
        let hooks = out.get(name);
        if (!hooks) out.set(name, (hooks = new Set()));
        hooks.add(hook);
        for (const r of t.get(name)?.rules ?? [])
          if ((r.target?.kind === 'jump' || r.target?.kind === 'goto') && !seen.has(r.target.chain)) {
            seen.add(r.target.chain);
            stack.push(r.target.chain);
          }
      }
    }
    return out;
  }

  /** the builtin hooks a chain of the table is reached from (through jumps and gotos) */
  hooksOf(table: string, chain: string): Set<Hook> {
    const t = this.tables.get(table);
    const out = new Set<Hook>();
    if (!t) return out;
    for (const hook of TABLE_BUILTINS[table] ?? []) {
      const seen = new Set<string>();
      const visit = (name: string) => {
        if (seen.has(name)) return;
        seen.add(name);
        if (name === chain) out.add(hook);
        for (const r of t.get(name)?.rules ?? [])
          if (r.target?.kind === 'jump' || r.target?.kind === 'goto') visit(r.target.chain);
      };
      visit(hook);
    }
    return out;
  }

  /**
   * What restricts the hooks and tables of `r` (its matches and target) and of the chains its jump
   * reaches, appended to `out` in that order (made when there is one); `seen` the chains already
   * walked (made at the first jump). A method, not a closure per check: the build checks every rule
   * it installs.
   */
  private limits(
    table: string,
    r: Rule,
    seen: Set<string> | undefined,
    out: Limit[] | undefined,
  ): Limit[] | undefined {
    for (const m of r.matches)
      // xt_rpfilter: .hooks PREROUTING, rpfilter_check: the raw or mangle table
      if (m.kind === 'rpfilter')
        (out ??= []).push({ why: 'rpfilter', table: ['raw', 'mangle'], hooks: ['PREROUTING'] });
      else if (m.kind === 'addrtype' && (m.limitIn || m.limitOut))
        (out ??= []).push({
          why: `addrtype --limit-iface-${m.limitIn ? 'in' : 'out'}`,
          hooks: m.limitIn ? ['PREROUTING', 'INPUT', 'FORWARD'] : ['FORWARD', 'OUTPUT', 'POSTROUTING'],
        });
    const tg = r.target;
    if (tg?.kind === 'jump' || tg?.kind === 'goto') {
      seen ??= new Set();
      if (seen.has(tg.chain)) return out;
      seen.add(tg.chain);
      for (const x of this.chain(table, tg.chain)?.rules ?? []) out = this.limits(table, x, seen, out);
      return out;
    }
    const ext = tg && targetExt(tg);
    if (ext && (ext.tables || ext.hooks))
      (out ??= []).push({
        why: ext.name,
        table: ext.tables,
        hooks: ext.hooks ?? TABLE_BUILTINS[table] ?? [],
      });
    return out;
  }

  /**
   * Why the kernel refuses `rule` in `chain` of `table` (EINVAL from the extensions' checkentry and
   * nft's chain validation), or undefined: a target outside its tables or hooks, also through the
   * chains a jump reaches; tcp-reset without -p tcp; `! -s 0.0.0.0/0`.
   */
  refuses(
    table: string,
    chain: string,
    rule: Rule,
    reach?: ReadonlyMap<string, ReadonlySet<Hook>>,
  ): string | undefined {
    const t = rule.target;
    if (t?.kind === 'REJECT' && t.with === 'tcp-reset' && (rule.proto?.v !== 6 || rule.proto.neg))
      return 'REJECT --reject-with tcp-reset needs -p tcp';
    if ((rule.src?.neg && rule.src.v.len === 0) || (rule.dst?.neg && rule.dst.v.len === 0))
      return 'a negated 0.0.0.0/0 never matches';
    for (const m of rule.matches) {
      // xt_set's checkentry: the set must exist (ip_set_nfnl_get_byindex)
      if (m.kind === 'set' && !this.ipsets.has(m.name)) return `set ${m.name} does not exist`;
      // xt_icmp, xt_tcpudp: .proto of the match
      const proto = m.kind === 'icmp' ? 1 : m.kind === 'tcp' ? 6 : m.kind === 'udp' ? 17 : undefined;
      if (proto !== undefined && (rule.proto?.v !== proto || rule.proto.neg))
        return `the ${m.kind} match needs -p ${m.kind}`;
    }
    // what restricts the hooks: the rule's matches and target, and those of the chains a jump reaches
    const limits = this.limits(table, rule, undefined, undefined);
    if (!limits) return undefined;
    const bad = limits.find((l) => l.table && !l.table.includes(table as TableName));
    if (bad) return `${bad.why} is not valid in the ${table} table`;
    const hooks = new Set(reach ? (reach.get(chain) ?? []) : this.hooksOf(table, chain));
    if (this.isBuiltin(table, chain)) hooks.add(chain as Hook);
    for (const l of limits) {
      const h = [...hooks].find((x) => !l.hooks.includes(x));
      if (h) return `${l.why} is not valid in ${h}`;
    }
    return undefined;
  }
}
