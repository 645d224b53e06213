/**
 * `iptables` (1.8.9, nf_tables) on the model's netfilter tables: -L/-S listings, -A -I -D -C -R
 * -N -X -F -Z -P -E, option parsing the way iptables' getopt loop does it (bundled short options,
 * unique long-option prefixes, the implicit tcp/udp match, `!`), and the same error texts and exit
 * statuses, each checked against the real tool in a network namespace. A refused command changes
 * nothing: every check runs before the first change.
 * Every table (filter, nat, mangle, raw, security): the kernel refuses what it refuses (a target
 * outside its tables or hooks, also through a jump) with the same EINVAL message.
 */
import {
  IPTABLES_TARGETS,
  RuleBuilder,
  RuleSyntaxError,
  STANDARD_TARGETS,
  TABLE_BUILTINS,
  clonePlain,
  formatRuleSpec,
  type Chain,
  type Netfilter,
  type Rule,
} from '../kernel/netfilter.ts';
import { IPTABLES_HELP } from './nf-help.ts';
import { listChains, listedChains, listRules, printRule, type ListFormat } from './nf-list.ts';
import { servicePort } from './services.ts';
import { ToolFailure, type Tool, type ToolResult } from './types.ts';

const PROG = 'iptables v1.8.9 (nf_tables)';
const TRY = "Try `iptables -h' or 'iptables --help' for more information.\n";

/** xtables_error: PARAMETER_PROBLEM (2) adds the "Try" line, VERSION_PROBLEM (3) its own hint */
const param = (msg: string) => new ToolFailure(2, `${PROG}: ${msg}\n${TRY}`);
/** errors the kernel (or libnftnl) reports: "iptables: <strerror-like text>." */
const kernel = (msg: string, code = 1) => new ToolFailure(code, `iptables: ${msg}\n`);
const notModelled = (msg: string) => new ToolFailure(2, `podwalk: iptables: ${msg}\n`);

/* the command bits of xshared.c, in cmdflags order */
const CMD = {
  INSERT: 1 << 0,
  DELETE: 1 << 1,
  DELETE_NUM: 1 << 2,
  REPLACE: 1 << 3,
  APPEND: 1 << 4,
  LIST: 1 << 5,
  FLUSH: 1 << 6,
  ZERO: 1 << 7,
  NEW_CHAIN: 1 << 8,
  DELETE_CHAIN: 1 << 9,
  SET_POLICY: 1 << 10,
  RENAME_CHAIN: 1 << 11,
  LIST_RULES: 1 << 12,
  ZERO_NUM: 1 << 13,
  CHECK: 1 << 14,
};
const CMD_CHARS = 'IDDRALFZNXPESZC';
const cmd2char = (bits: number) => CMD_CHARS[Math.log2(bits & -bits)];

/* options of commands_v_options: -n -s -d -p -j -v -x -i -o --line-numbers -c -f */
const OPT_NAMES = ['-n', '-s', '-d', '-p', '-j', '-v', '-x', '-i', '-o', '--line-numbers', '-c', '-f'];
const OPT = Object.fromEntries(OPT_NAMES.map((n, i) => [n, 1 << i])) as Record<string, number>;
/** 'x' = illegal, per command bit (INSERT … CHECK), per option above */
const LEGAL: Record<number, string> = {
  [CMD.INSERT]: 'x     x  x  ',
  [CMD.DELETE]: 'x     x  xx ',
  [CMD.DELETE_NUM]: 'xxxxx xxxxxx',
  [CMD.REPLACE]: 'x     x  x  ',
  [CMD.APPEND]: 'x     x  x  ',
  [CMD.LIST]: ' xxxx  xx xx',
  [CMD.FLUSH]: 'xxxxx xxxxxx',
  [CMD.ZERO]: 'xxxxx xxxxxx',
  [CMD.NEW_CHAIN]: 'xxxxx xxxxxx',
  [CMD.DELETE_CHAIN]: 'xxxxx xxxxxx',
  [CMD.SET_POLICY]: 'xxxxx xxxx x',
  [CMD.RENAME_CHAIN]: 'xxxxx xxxxxx',
  [CMD.LIST_RULES]: 'xxxxx xxxxxx',
  [CMD.ZERO_NUM]: 'xxxxx xxxxxx',
  [CMD.CHECK]: 'x     x  xx ',
};

/** getopt_long's table: name → [short letter, has_arg 0|1|2] */
const LONG: Record<string, [string, 0 | 1 | 2]> = {
  append: ['A', 1],
  delete: ['D', 1],
  check: ['C', 1],
  insert: ['I', 1],
  replace: ['R', 1],
  list: ['L', 2],
  'list-rules': ['S', 2],
  flush: ['F', 2],
  zero: ['Z', 2],
  'new-chain': ['N', 1],
  'delete-chain': ['X', 2],
  'rename-chain': ['E', 1],
  policy: ['P', 1],
  source: ['s', 1],
  destination: ['d', 1],
  src: ['s', 1],
  dst: ['d', 1],
  protocol: ['p', 1],
  'in-interface': ['i', 1],
  jump: ['j', 1],
  table: ['t', 1],
  match: ['m', 1],
  numeric: ['n', 0],
  'out-interface': ['o', 1],
  verbose: ['v', 0],
  wait: ['w', 2],
  'wait-interval': ['W', 2],
  exact: ['x', 0],
  fragments: ['f', 0],
  version: ['V', 0],
  help: ['h', 2],
  'line-numbers': ['0', 0],
  modprobe: ['M', 1],
  'set-counters': ['c', 1],
  goto: ['g', 1],
  ipv4: ['4', 0],
  ipv6: ['6', 0],
};
/** the short options of "-:A:C:D:R:I:L::S::M:F::Z::N:X::E:P:Vh::o:p:s:d:j:i:fbvw::W::nt:m:xc:g:46" */
// prettier-ignore
const SHORT: Record<string, 0 | 1 | 2> = {
  A: 1, C: 1, D: 1, R: 1, I: 1, L: 2, S: 2, M: 1, F: 2, Z: 2, N: 1, X: 2, E: 1, P: 1, V: 0, h: 2,
  o: 1, p: 1, s: 1, d: 1, j: 1, i: 1, f: 0, b: 0, v: 0, w: 2, W: 2, n: 0, t: 1, m: 1, x: 0, c: 1,
  g: 1, '4': 0, '6': 0,
};

interface Parsed {
  command: number;
  table: string;
  chain?: string;
  newName?: string;
  policy?: string;
  rulenum?: number;
  options: number;
  verbose: boolean;
  builder: RuleBuilder;
  counters?: [number, number];
  help?: boolean;
  version?: boolean;
}

/** xs_has_arg: the next word is an argument when it starts with neither - nor ! */
const hasArg = (argv: readonly string[], i: number) =>
  i < argv.length && argv[i][0] !== '-' && argv[i][0] !== '!';

function parseRulenum(s: string): number {
  const n = /^\d+$/.test(s) ? Number(s) : NaN;
  if (!(n >= 1) || n > 0xffffffff) throw param(`Invalid rule number \`${s}'`);
  return n;
}

/** parse_chain of xshared.c (-N, -E) */
function checkChainName(name: string): void {
  if (name.length >= 29) throw param(`chain name \`${name}' too long (must be under 29 chars)`);
  if (name[0] === '-' || name[0] === '!') throw param(`chain name not allowed to start with \`${name[0]}'`);
  if ([...STANDARD_TARGETS, ...IPTABLES_TARGETS].includes(name))
    throw param('chain name may not clash with target name');
  if (/\s/.test(name)) throw param(`Invalid chain name \`${name}'`);
}

/** do_parse of xshared.c: getopt's loop, then the checks that follow it, in its order */
function parse(argv: readonly string[], nf: Netfilter): Parsed {
  const p: Parsed = { command: 0, table: 'filter', options: 0, verbose: false, builder: newBuilder(nf) };
  const b = p.builder;
  let invert = false;

  const addCommand = (cmd: number, others: number) => {
    if (invert) throw param("unexpected '!' flag");
    const clash = p.command & ~others;
    if (clash) throw param(`Cannot use -${cmd2char(cmd)} with -${cmd2char(clash)}`);
    p.command |= cmd;
  };
  const setOption = (name: string, invertible: boolean) => {
    if (p.options & OPT[name]) throw param(`multiple ${name} flags not allowed`);
    p.options |= OPT[name];
    if (invert && !invertible) throw param(`cannot have ! before ${name}`);
  };
  const rule = (f: () => void) => {
    try {
      f();
    } catch (e) {
      if (e instanceof RuleSyntaxError) throw ruleError(e);
      throw e;
    }
  };

  let i = 0;
  while (i < argv.length) {
    const word = argv[i++];
    // getopt's RETURN_IN_ORDER ("-" in optstring): a non-option is returned as itself
    if (word === '--') {
      if (i < argv.length) throw param('unknown arguments found on commandline');
      break;
    }
    if (word[0] !== '-' || word === '-') {
      if (word === '!') {
        if (invert) throw param('multiple consecutive ! not allowed');
        invert = true;
        continue;
      }
      throw new ToolFailure(2, `Bad argument \`${word}'\n${TRY}`);
    }
    // the options this word holds: [letter, attached value or undefined, the word for messages]
    const opts: { c: string; val?: string; hasArg: 0 | 1 | 2; word: string; long?: string }[] = [];
    if (word.startsWith('--')) {
      const eq = word.indexOf('=');
      const name = word.slice(2, eq < 0 ? undefined : eq);
      const val = eq < 0 ? undefined : word.slice(eq + 1);
      const resolve = () => {
        const ext = b.extensionOptions();
        const all = [...Object.keys(LONG), ...ext];
        const hits = all.includes(name) ? [name] : [...new Set(all.filter((n) => n.startsWith(name)))];
        return hits.length === 1 && name ? { name: hits[0], ext: ext.includes(hits[0]) } : undefined;
      };
      let hit = resolve();
      // an option getopt does not know: the protocol's match may take it (load_proto), then retry
      if (!hit && b.canLoadProto()) {
        b.loadProto();
        hit = resolve();
      }
      if (!hit) throw param(`unknown option "${word}"`);
      if (hit.ext) opts.push({ c: 'ext', val, hasArg: b.hasArg(hit.name) ? 1 : 0, word, long: hit.name });
      else opts.push({ c: LONG[hit.name][0], val, hasArg: LONG[hit.name][1], word, long: hit.name });
    } else {
      for (let k = 1; k < word.length; k++) {
        const c = word[k];
        const has = SHORT[c];
        if (has === undefined) throw param(`unknown option "${word}"`);
        if (has && k + 1 < word.length) {
          opts.push({ c, val: word.slice(k + 1), hasArg: has, word });
          break;
        }
        opts.push({ c, hasArg: has, word });
      }
    }
    for (const o of opts) {
      let optarg = o.val;
      if (o.hasArg === 1 && optarg === undefined) {
        if (i >= argv.length) throw param(`option "${o.word}" requires an argument`);
        optarg = argv[i++];
      }
      if (o.hasArg === 0 && o.val !== undefined && o.long) throw param(`unknown option "${o.word}"`); // --numeric=x: getopt refuses it
      const next = () => (hasArg(argv, i) ? argv[i++] : undefined);
      switch (o.c) {
        case 'A':
        case 'C':
          addCommand(o.c === 'A' ? CMD.APPEND : CMD.CHECK, 0);
          p.chain = optarg;
          break;
        case 'D': {
          addCommand(CMD.DELETE, 0);
          p.chain = optarg;
          const n = next();
          if (n !== undefined) {
            p.rulenum = parseRulenum(n);
            p.command = CMD.DELETE_NUM;
          }
          break;
        }
        case 'R': {
          addCommand(CMD.REPLACE, 0);
          p.chain = optarg;
          const n = next();
          if (n === undefined) throw param('-R requires a rule number');
          p.rulenum = parseRulenum(n);
          break;
        }
        case 'I': {
          addCommand(CMD.INSERT, 0);
          p.chain = optarg;
          const n = next();
          p.rulenum = n !== undefined ? parseRulenum(n) : 1;
          break;
        }
        case 'L':
        case 'S': {
          addCommand(o.c === 'L' ? CMD.LIST : CMD.LIST_RULES, CMD.ZERO | CMD.ZERO_NUM);
          p.chain = optarg ?? next();
          const n = p.chain !== undefined ? next() : undefined;
          if (n !== undefined) p.rulenum = parseRulenum(n);
          break;
        }
        case 'F':
          addCommand(CMD.FLUSH, 0);
          p.chain = optarg ?? next();
          break;
        case 'Z': {
          addCommand(CMD.ZERO, CMD.LIST | CMD.LIST_RULES);
          const chain = optarg ?? next();
          if (chain !== undefined) p.chain = chain;
          const n = chain !== undefined ? next() : undefined;
          if (n !== undefined) {
            p.rulenum = parseRulenum(n);
            p.command = (p.command & ~CMD.ZERO) | CMD.ZERO_NUM;
          }
          break;
        }
        case 'N':
          checkChainName(optarg!);
          addCommand(CMD.NEW_CHAIN, 0);
          p.chain = optarg;
          break;
        case 'X':
          addCommand(CMD.DELETE_CHAIN, 0);
          p.chain = optarg ?? next();
          break;
        case 'E': {
          addCommand(CMD.RENAME_CHAIN, 0);
          p.chain = optarg;
          const n = next();
          if (n === undefined) throw param('-E requires old-chain-name and new-chain-name');
          checkChainName(n);
          p.newName = n;
          break;
        }
        case 'P': {
          addCommand(CMD.SET_POLICY, 0);
          p.chain = optarg;
          const n = next();
          if (n === undefined) throw param('-P requires a chain and a policy');
          p.policy = n;
          break;
        }
        case 'h':
          p.help = true;
          return p;
        case 'V':
          p.version = true;
          return p;
        case 'p':
        case 's':
        case 'd':
        case 'i':
        case 'o':
          setOption(`-${o.c}`, true);
          // iptables takes the protocol from argv[optind-1]: an attached value brings its option along
          rule(() =>
            b.generic(`-${o.c}` as '-p', o.c === 'p' && o.val !== undefined ? o.word : optarg!, invert),
          );
          break;
        case 'j':
        case 'g':
          if (p.options & OPT['-j']) throw param('multiple -j flags not allowed');
          setOption('-j', false);
          rule(() => b.generic(`-${o.c}` as '-j', optarg!, false));
          break;
        case 'm':
          if (invert) throw param('unexpected ! flag before --match');
          rule(() => b.generic('-m', optarg!, false));
          break;
        case 'ext':
          rule(() => {
            if (!b.extension(o.long!, optarg, invert, () => (i < argv.length ? argv[i++] : undefined)))
              throw new RuleSyntaxError(`unknown option "${o.word}"`);
          });
          break;
        case 'n':
          setOption('-n', false);
          break;
        case 'v':
          if (!p.verbose) setOption('-v', false);
          p.verbose = true;
          break;
        case 'x':
          setOption('-x', false);
          break;
        case '0':
          setOption('--line-numbers', false);
          break;
        case 't':
          if (invert) throw param('unexpected ! flag before --table');
          p.table = optarg!;
          break;
        case 'c': {
          setOption('-c', false);
          const bytes = next();
          if (bytes === undefined) throw param('-c requires packet and byte counter');
          const num = (s: string, what: string) => {
            if (!/^\d+$/.test(s)) throw param(`-c ${what} counter not numeric`);
            return Number(s);
          };
          p.counters = [num(optarg!, 'packet'), num(bytes, 'byte')];
          break;
        }
        case 'w': {
          const n = optarg ?? next();
          if (n !== undefined && !/^\s*[+-]?\d/.test(n)) throw param('wait seconds not numeric');
          break;
        }
        case 'W': {
          const n = optarg ?? next();
          if (n !== undefined && !/^\d/.test(n)) throw param('wait interval not numeric');
          break;
        }
        case 'M':
        case '4':
          break;
        case 'f':
          throw notModelled('-f (fragment matching) is not modelled');
        case 'b':
        case '6':
          throw param(`unknown option "${o.word}"`);
      }
      invert = false;
    }
  }

  rule(() => b.finalChecks());
  if (!p.command) throw param('no command specified');
  if (invert) throw param('nothing appropriate following !');
  const t = b.rule.target;
  if (p.table === 'nat' && (p.policy === 'DROP' || t?.kind === 'DROP'))
    throw param(
      '\nThe "nat" table is not intended for filtering, the use of DROP is therefore inhibited.\n\n',
    );
  return p;
}

function newBuilder(nf: Netfilter): RuleBuilder {
  return new RuleBuilder({ services: servicePort, ipset: (name) => nf.ipsets.get(name) });
}

function ruleError(e: RuleSyntaxError): ToolFailure {
  return e.message.startsWith('podwalk ') ? notModelled(e.message.trimEnd()) : param(e.message);
}

/** the checks after parsing (post_parse, generic_opt_check, chain and interface rules) */
function check(p: Parsed): Rule[] {
  let rules: Rule[] = [];
  const ruleCmd = CMD.APPEND | CMD.INSERT | CMD.DELETE | CMD.REPLACE | CMD.CHECK;
  if (p.command & ruleCmd || p.builder.src || p.builder.dst)
    try {
      rules = p.builder.finish();
    } catch (e) {
      if (e instanceof RuleSyntaxError) throw ruleError(e);
      throw e;
    }
  for (let i = 0; i < OPT_NAMES.length; i++) {
    if (!(p.options & (1 << i))) continue;
    let legal = 0;
    for (const [bit, row] of Object.entries(LEGAL)) {
      if (!(p.command & Number(bit))) continue;
      if (row[i] !== 'x') legal = 1;
      else if (legal === 0) legal = -1;
    }
    if (legal === -1) throw param(`Illegal option \`${OPT_NAMES[i]}' with this command`);
  }
  if (p.command === CMD.REPLACE && rules.length !== 1)
    throw param('Replacement rule does not specify a unique address');
  if (p.chain !== undefined && p.chain.length >= 29)
    throw param(`chain name \`${p.chain}' too long (must be under 29 chars)`);
  if (p.command & ruleCmd) {
    const r = p.builder.rule;
    if ((p.chain === 'PREROUTING' || p.chain === 'INPUT') && r.out)
      throw param(`Can't use -o with ${p.chain}\n`);
    if ((p.chain === 'POSTROUTING' || p.chain === 'OUTPUT') && r.in)
      throw param(`Can't use -i with ${p.chain}\n`);
  }
  return rules;
}

interface Out {
  stdout: string;
}

/** run the command on the model; throws ToolFailure for errors (after which nothing has changed) */
function execute(p: Parsed, rules: Rule[], nf: Netfilter, out: Out): void {
  if (!TABLE_BUILTINS[p.table])
    throw new ToolFailure(
      3,
      `${PROG}: table '${p.table}' does not exist\nPerhaps iptables or your kernel needs to be upgraded.\n`,
    );
  const listing = CMD.LIST | CMD.LIST_RULES | CMD.ZERO | CMD.ZERO_NUM;
  const table = nf.table(p.table);
  const present = nf.present(p.table);
  // a table in the kernel stays there when a command empties it
  if (present) nf.markCreated(p.table);
  const noChain = () => kernel('No chain/target/match by that name.');
  const chainOf = (name: string): Chain => {
    const c = present ? table.get(name) : undefined;
    if (!c) throw noChain();
    return c;
  };
  // a jump to a chain must name one that exists (checked before the kernel sees the rule)
  if (p.command & (CMD.APPEND | CMD.INSERT | CMD.REPLACE)) {
    const t = p.builder.rule.target;
    if ((t?.kind === 'jump' || t?.kind === 'goto') && !table.has(t.chain))
      throw param(`Chain '${t.chain}' does not exist`);
  }
  const f: ListFormat = {
    numeric: !!(p.options & OPT['-n']),
    verbose: p.verbose,
    exact: !!(p.options & OPT['-x']),
    lineNumbers: !!(p.options & OPT['--line-numbers']),
  };
  const echo = (r: Rule) => {
    if (p.verbose) out.stdout += printRule(r);
  };
  const opName =
    p.command & CMD.INSERT ? 'RULE_INSERT' : p.command & CMD.REPLACE ? 'RULE_REPLACE' : 'RULE_APPEND';
  // the extensions' checkentry and nft's validation (tables, hooks, tcp-reset, `! -s 0.0.0.0/0`)
  const kernelChecks = (c: Chain, r: Rule) => {
    if (nf.refuses(p.table, c.name, r))
      throw new ToolFailure(4, `${PROG}:  ${opName} failed (Invalid argument): rule in chain ${c.name}\n`);
  };
  const withCounters = (r: Rule): Rule => ({
    ...clonePlain(r),
    pkts: p.counters?.[0] ?? 0,
    bytes: p.counters?.[1] ?? 0,
  });
  const same = (a: Rule, b: Rule) => formatRuleSpec(a) === formatRuleSpec(b);

  switch (p.command) {
    case CMD.APPEND:
    case CMD.INSERT: {
      const c = table.get(p.chain!);
      if (!c) throw noChain();
      for (const r of rules) kernelChecks(c, r);
      const at = p.command === CMD.APPEND ? c.rules.length : p.rulenum! - 1;
      if (at > c.rules.length) throw kernel('Index of insertion too big.');
      nf.createByCommand(p.table);
      c.rules.splice(at, 0, ...rules.map(withCounters));
      rules.forEach(echo);
      return;
    }
    case CMD.REPLACE: {
      const c = chainOf(p.chain!);
      kernelChecks(c, rules[0]);
      if (p.rulenum! > c.rules.length) throw kernel('Index of replacement too big.');
      c.rules[p.rulenum! - 1] = withCounters(rules[0]);
      echo(rules[0]);
      return;
    }
    case CMD.DELETE:
    case CMD.CHECK: {
      const c = table.get(p.chain!);
      // without the table in the kernel, the builtin chains exist but hold nothing
      if (!c || (!present && !nf.isBuiltin(p.table, c.name))) throw noChain();
      // all the rules must be there before any goes (one transaction)
      const taken = new Set<number>();
      for (const r of rules) {
        const idx = c.rules.findIndex((x, k) => !taken.has(k) && same(x, r));
        if (idx < 0) throw kernel('Bad rule (does a matching rule exist in that chain?).');
        taken.add(idx);
      }
      rules.forEach(echo);
      if (p.command === CMD.DELETE) c.rules = c.rules.filter((_, k) => !taken.has(k));
      return;
    }
    case CMD.DELETE_NUM: {
      const c = chainOf(p.chain!);
      if (p.rulenum! > c.rules.length) throw kernel('Index of deletion too big.');
      c.rules.splice(p.rulenum! - 1, 1);
      return;
    }
    case CMD.NEW_CHAIN:
      if (table.has(p.chain!)) throw kernel('Chain already exists.');
      nf.createByCommand(p.table);
      nf.newChain(p.table, p.chain!);
      return;
    case CMD.SET_POLICY: {
      const c = table.get(p.chain!);
      if (!c || !nf.isBuiltin(p.table, c.name)) throw kernel('Bad built-in chain name.');
      if (p.policy !== 'ACCEPT' && p.policy !== 'DROP')
        throw kernel("Bad policy name. Run `dmesg' for more information.");
      nf.createByCommand(p.table);
      c.policy = p.policy;
      return;
    }
    case CMD.FLUSH:
      if (p.chain !== undefined && !present && nf.isBuiltin(p.table, p.chain)) return;
      if (p.chain !== undefined) chainOf(p.chain).rules = [];
      else if (present) for (const c of table.values()) c.rules = [];
      if (p.verbose)
        for (const c of p.chain !== undefined ? [chainOf(p.chain)] : present ? listedChains(nf, p.table) : [])
          out.stdout += `Flushing chain \`${c.name}'\n`;
      return;
    case CMD.DELETE_CHAIN: {
      const del = (c: Chain) => {
        if (nf.isBuiltin(p.table, c.name) && c.policy !== 'ACCEPT') throw kernel('Directory not empty.');
        if (c.rules.length || nf.references(p.table, c.name))
          throw new ToolFailure(4, `${PROG}:  CHAIN_DEL failed (Device or resource busy): chain ${c.name}\n`);
      };
      const victims =
        p.chain !== undefined
          ? [chainOf(p.chain)]
          : present
            ? [...table.values()].filter((c) => !nf.isBuiltin(p.table, c.name))
            : [];
      victims.forEach(del);
      for (const c of victims) {
        if (p.verbose) out.stdout += `Deleting chain \`${c.name}'\n`;
        if (nf.isBuiltin(p.table, c.name)) c.pkts = c.bytes = 0;
        else table.delete(c.name);
      }
      return;
    }
    case CMD.RENAME_CHAIN: {
      if (nf.isBuiltin(p.table, p.chain!))
        throw notModelled(
          'renaming a builtin chain leaves a base chain iptables calls incompatible; not modelled',
        );
      const c = chainOf(p.chain!);
      if (table.has(p.newName!)) throw kernel('File exists.');
      const entries = [...table.entries()].map(([k, v]): [string, Chain] =>
        k === c.name ? [p.newName!, { ...v, name: p.newName! }] : [k, v],
      );
      table.clear();
      for (const [k, v] of entries) table.set(k, v);
      for (const ch of table.values())
        for (const r of ch.rules)
          // a new target, not the old one changed: a rule's parts may be shared with other namespaces' rules
          if ((r.target?.kind === 'jump' || r.target?.kind === 'goto') && r.target.chain === c.name)
            r.target = { ...r.target, chain: p.newName! };
      return;
    }
  }

  // -L, -S, -Z and their combinations (-L -Z lists, then zeroes)
  if (p.command & listing) {
    // -Z CHAIN N: nf_tables zeroes single rules of base chains only
    if (p.command & CMD.ZERO_NUM && !nf.isBuiltin(p.table, p.chain!))
      throw kernel('Incompatible with this kernel.');
    let chains: Chain[];
    if (p.chain !== undefined) {
      const c = table.get(p.chain);
      if (!c || (!present && !nf.isBuiltin(p.table, p.chain))) {
        if (p.command & (CMD.LIST | CMD.LIST_RULES))
          throw new ToolFailure(
            1,
            `${PROG}: chain \`${p.chain}' in table \`${p.table}' is incompatible, use 'nft' tool.\n`,
          );
        throw noChain();
      }
      chains = [c];
    } else chains = listedChains(nf, p.table);
    if (p.command & CMD.LIST) out.stdout += listChains(nf, p.table, chains, f, p.rulenum);
    if (p.command & CMD.LIST_RULES) out.stdout += listRules(nf, p.table, chains, p.verbose, p.rulenum);
    if (p.command & CMD.ZERO_NUM) {
      const r = chains[0].rules[p.rulenum! - 1];
      if (r) r.pkts = r.bytes = 0;
    } else if (p.command & CMD.ZERO && present)
      for (const c of chains) {
        if (p.verbose) out.stdout += `Zeroing chain \`${c.name}'\n`;
        c.pkts = c.bytes = 0;
        for (const r of c.rules) r.pkts = r.bytes = 0;
      }
  }
}

export const iptables: Tool = (argv, ctx): ToolResult => {
  const out: Out = { stdout: '' };
  try {
    const p = parse(argv, ctx.netns.netfilter);
    if (p.help) return { stdout: IPTABLES_HELP, stderr: '', code: 0 };
    if (p.version) return { stdout: `${PROG}\n`, stderr: '', code: 0 };
    const rules = check(p);
    const nf = ctx.netns.netfilter;
    try {
      execute(p, rules, nf, out);
    } finally {
      // the command writes chains, rules and policies in place: the hooks' plan is made again
      nf.changed();
    }
    return { stdout: out.stdout, stderr: '', code: 0 };
  } catch (e) {
    if (e instanceof ToolFailure) return { stdout: out.stdout, stderr: e.stderr, code: e.code };
    throw e;
  }
};
