/**
 * Builds rules option by option the way iptables 1.8.9 (nf_tables) parses them: the generic
 * options, `-m` loading a match, the tcp/udp/icmp match loaded implicitly by the first option
 * getopt does not know, the extensions' options resolved last-loaded-first, libxtables' x6 checks
 * (once, invert, mandatory, exclusions, requirements) with their error texts, then the addresses
 * (parsed after the option loop, as iptables does; `-s a,b` gives one rule per address).
 */
import type { Extension, ParseEnv } from './extension.ts';
import { IPTABLES_MATCHES, isMatchKind, MATCHES } from './matches.ts';
import { fullRange, parseAddresses, RuleSyntaxError, strtouiFull, type ServiceLookup } from './parse.ts';
import { IPTABLES_TARGETS, STANDARD_TARGETS, TARGETS } from './targets.ts';
import { getprotobyname } from '../../wire/protocols.ts';
import type { Match, Rule, Target } from './types.ts';

export interface BuilderOptions {
  services?: ServiceLookup;
  /** the namespace's IP sets (`-m set` looks its set up while parsing, as libxt_set does) */
  ipset?: ParseEnv['ipset'];
}

/** a match or the target as loaded into the rule being built */
interface Loaded {
  ext: Extension<unknown>;
  data: unknown;
  /** canonical options seen */
  seen: Set<string>;
  isTarget: boolean;
}

/** the protocol whose match `-p` loads implicitly */
const PROTO_MATCH: Record<number, 'tcp' | 'udp' | 'icmp'> = { 6: 'tcp', 17: 'udp', 1: 'icmp' };

export class RuleBuilder {
  readonly rule: Rule = { matches: [], pkts: 0, bytes: 0 };
  /** generic options seen (-s -d -p -i -o -j) */
  readonly seen = new Set<string>();
  src?: { text: string; neg: boolean };
  dst?: { text: string; neg: boolean };
  /** the protocol match was loaded implicitly */
  private protoLoaded = false;
  /** matches and the target extension in the order they were loaded */
  private loaded: Loaded[] = [];
  /** `! --sport 0:65535`: iptables-nft drops such a port match (and the match when nothing else is left) */
  private invertedFull = false;

  constructor(private readonly opts: BuilderOptions = {}) {}

  private once(flag: string): void {
    if (this.seen.has(flag)) throw new RuleSyntaxError(`multiple ${flag} flags not allowed`);
    this.seen.add(flag);
  }

  private env(nextArg?: () => string | undefined): ParseEnv {
    return { services: this.opts.services, rule: this.rule, nextArg, ipset: this.opts.ipset };
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
      case '-g': {
        if (neg) throw new RuleSyntaxError(`cannot have ! before ${opt}`);
        this.once('-j');
        if (opt === '-g') {
          r.target = { kind: 'goto', chain: arg };
          return;
        }
        const ext = TARGETS[arg];
        if (ext) {
          const data = ext.init();
          r.target = data;
          this.loaded.push({ ext: ext as Extension<unknown>, data, seen: new Set(), isTarget: true });
        } else if (IPTABLES_TARGETS.includes(arg))
          throw new RuleSyntaxError(`podwalk does not model the ${arg} target`);
        else if ((STANDARD_TARGETS as readonly string[]).includes(arg)) r.target = { kind: arg } as Target;
        else r.target = { kind: 'jump', chain: arg };
        return;
      }
      case '-m':
        if (neg) throw new RuleSyntaxError('unexpected ! flag before --match');
        if (!isMatchKind(arg)) {
          if (IPTABLES_MATCHES.includes(arg))
            throw new RuleSyntaxError(`podwalk does not model the ${arg} match`);
          throw new RuleSyntaxError(`Couldn't load match \`${arg}':No such file or directory\n`);
        }
        this.loadMatch(arg);
        return;
    }
  }

  private loadMatch(name: Match['kind']): void {
    const ext = MATCHES[name] as Extension<unknown>;
    const data = ext.init() as Match;
    this.rule.matches.push(data);
    this.loaded.push({ ext, data, seen: new Set(), isTarget: false });
  }

  /** every long option the loaded matches and the target add to getopt's table (modelled or not) */
  extensionOptions(): string[] {
    const out: string[] = [];
    for (const l of this.loaded) out.push(...Object.keys(l.ext.options));
    return out;
  }

  /** does the extension option `--name` (an exact option name) take an argument? */
  hasArg(name: string): boolean {
    const owner = this.owner(name);
    return owner ? owner.ext.options[name].arg : true;
  }

  /** should_load_proto: -p tcp/udp/icmp given and its match not loaded yet */
  canLoadProto(): boolean {
    const p = this.rule.proto;
    const m = p && PROTO_MATCH[p.v];
    if (!m || this.protoLoaded) return false;
    return !this.rule.matches.some((x) => x.kind === m);
  }

  /** load_proto: the protocol's match, loaded implicitly by an option getopt did not know */
  loadProto(): void {
    this.loadMatch(PROTO_MATCH[this.rule.proto!.v]);
    this.protoLoaded = true;
  }

  /** which loaded extension takes `--name` (an exact option name): the last loaded comes first in getopt's table */
  private owner(name: string): Loaded | undefined {
    for (let i = this.loaded.length - 1; i >= 0; i--)
      if (Object.prototype.hasOwnProperty.call(this.loaded[i].ext.options, name)) return this.loaded[i];
    return undefined;
  }

  /** a match or target option `--name` (exact); returns false when no loaded extension takes it */
  extension(
    name: string,
    arg: string | undefined,
    neg: boolean,
    /** takes the next word of the command line (an option with two arguments) */
    nextArg?: () => string | undefined,
  ): boolean {
    const l = this.owner(name);
    if (!l) return false;
    const spec = l.ext.options[name];
    const ext = l.ext.name;
    if (spec.modelled === false)
      throw new RuleSyntaxError(
        `podwalk does not model --${name} of the ${ext} ${l.isTarget ? 'target' : 'match'}`,
      );
    if (spec.arg && arg === undefined) throw new RuleSyntaxError(`option "--${name}" requires an argument`);
    if (!l.ext.oldStyle) {
      if (l.seen.has(spec.name))
        throw new RuleSyntaxError(`${ext}: option "--${spec.name}" can only be used once.\n`);
      if (neg && !spec.invert)
        throw new RuleSyntaxError(`${ext}: option "--${spec.name}" cannot be inverted.\n`);
    }
    l.ext.parse(l.data, spec.name, spec.arg ? arg : undefined, neg, this.env(nextArg));
    l.seen.add(spec.name);
    if (l.ext.oldStyle && neg) {
      const m = l.data as Match;
      if (m.kind === 'tcp' || m.kind === 'udp') {
        const p = spec.name === 'source-port' ? m.sport : m.dport;
        this.invertedFull ||= !!p && fullRange(p.v);
      }
    }
    return true;
  }

  /** the extensions' final checks (xtables_option_mfcall / tfcall), matches in load order, then the target */
  finalChecks(): void {
    const order = [...this.loaded.filter((l) => !l.isTarget), ...this.loaded.filter((l) => l.isTarget)];
    for (const l of order) {
      l.ext.final?.(l.data, l.seen, this.rule);
      if (!l.ext.oldStyle) optionsFcheck(l);
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
      base.matches = base.matches.filter((m) => {
        if (m.kind !== 'tcp' && m.kind !== 'udp') return true;
        for (const k of ['sport', 'dport'] as const) if (m[k]?.neg && fullRange(m[k]!.v)) delete m[k];
        return !!(m.sport || m.dport);
      });
    }
    const out: Rule[] = [];
    for (const s of srcs)
      for (const d of dsts) {
        const r = clonePlain(base);
        if (s && (s.len !== 0 || this.src!.neg)) r.src = { v: s, neg: this.src!.neg };
        if (d && (d.len !== 0 || this.dst!.neg)) r.dst = { v: d, neg: this.dst!.neg };
        out.push(r);
      }
    return out;
  }
}

/** a deep copy of plain data (objects, arrays, primitives) */
export function clonePlain<T>(x: T): T {
  if (typeof x !== 'object' || x === null) return x;
  if (Array.isArray(x)) {
    const a = new Array<unknown>(x.length);
    for (let i = 0; i < x.length; i++) a[i] = clonePlain(x[i]);
    return a as T;
  }
  // a plain object's own enumerable keys, in Object.entries' order (its prototype adds none)
  const o: Record<string, unknown> = {};
  const src = x as Record<string, unknown>;
  for (const k in src) {
    const v = src[k];
    if (v !== undefined) o[k] = clonePlain(v);
  }
  return o as T;
}

/** xtables_options_fcheck: mandatory options, exclusions and requirements, in the table's order */
function optionsFcheck(l: Loaded): void {
  const ext = l.ext.name;
  const entries: { name: string; mandatory?: boolean; excl?: readonly string[]; also?: readonly string[] }[] =
    [];
  for (const spec of Object.values(l.ext.options))
    if (!entries.some((e) => e.name === spec.name)) entries.push(spec);
  const left = new Set(l.seen);
  for (const e of entries) {
    if (e.mandatory && !l.seen.has(e.name))
      throw new RuleSyntaxError(`${ext}: option "--${e.name}" must be specified\n`);
    if (!left.has(e.name)) continue;
    left.delete(e.name);
    const other = entries.find((o) => e.excl?.includes(o.name) && left.has(o.name));
    if (other)
      throw new RuleSyntaxError(
        `${ext}: option "--${e.name}" cannot be used together with "--${other.name}".\n`,
      );
    const missing = entries.find((o) => e.also?.includes(o.name) && !l.seen.has(o.name));
    if (missing)
      throw new RuleSyntaxError(`${ext}: option "--${e.name}" also requires "--${missing.name}".\n`);
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
      const arg = eq >= 0 ? a.slice(eq + 1) : b.hasArg(name) ? args[++i] : undefined;
      if (!b.extension(name, arg, neg, () => args[++i])) throw new RuleSyntaxError(`unknown option "${a}"`);
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
