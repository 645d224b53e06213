/**
 * `iptables -L` and `iptables -S` output, column for column as iptables 1.8.9 (nf_tables) prints
 * it: print_header, print_rule_details, xtables_print_num (K/M/G/T unless -x), the match and
 * target print functions, and the FMT_PRINT_RULE line `iptables -v -A` echoes.
 */
import { intToIp4 } from '../wire/addr.ts';
import {
  formatRuleSpec,
  matchText as ruleMatchText,
  netMask,
  PROTO_NAME,
  targetColumn,
  type Chain,
  type Net,
  type Netfilter,
  type Rule,
} from '../kernel/netfilter.ts';
import { serviceName } from './services.ts';

export interface ListFormat {
  numeric: boolean;
  verbose: boolean;
  exact: boolean;
  lineNumbers: boolean;
}

/** xtables_print_num: exact ("%8llu ") with -x, else rounded with K/M/G/T ("%5llu " / "%4lluK ") */
export function printNum(n: number, exact: boolean, notable = false): string {
  if (exact) return notable ? `${n} ` : `${String(n).padStart(8)} `;
  if (n <= 99999) return notable ? `${n} ` : `${String(n).padStart(5)} `;
  let v = n;
  for (const unit of ['K', 'M', 'G']) {
    v = Math.floor((v + 500) / 1000);
    if (v <= 9999) return notable ? `${v}${unit} ` : `${String(v).padStart(4)}${unit} `;
  }
  v = Math.floor((v + 500) / 1000);
  return notable ? `${v}T ` : `${String(v).padStart(4)}T `;
}

/** "Chain NAME (policy P[ N packets, M bytes])" or "Chain NAME (N references)" */
export function chainHeader(nf: Netfilter, table: string, c: Chain, f: ListFormat): string {
  if (nf.isBuiltin(table, c.name)) {
    const counts = f.verbose
      ? ` ${printNum(c.pkts, f.exact, true)}packets, ${printNum(c.bytes, f.exact, true)}bytes`
      : '';
    return `Chain ${c.name} (policy ${c.policy ?? 'ACCEPT'}${counts})`;
  }
  return `Chain ${c.name} (${nf.references(table, c.name)} references)`;
}

/** the column titles under each chain header */
export function columnHeader(f: ListFormat): string {
  let s = f.lineNumbers ? 'num  ' : '';
  if (f.verbose) s += f.exact ? `${'pkts'.padStart(8)} ${'bytes'.padStart(10)} ` : ' pkts bytes ';
  s += `${'target'.padEnd(9)}  prot opt`;
  if (f.verbose) s += ` ${'in'.padEnd(6)} ${'out'.padEnd(6)} `;
  s += ` ${'source'.padEnd(19)}  ${'destination'.padEnd(19)} `;
  return s;
}

/**
 * the address, then the mask (none for /32); without -n the lab's namespaces name no address
 * (the real iptables there printed `!127.0.0.0/8`, not `loopback/8`)
 */
function addr(n: Net | undefined, numeric: boolean): string {
  if (!n || netMask(n) === 0) return numeric ? '0.0.0.0/0' : 'anywhere';
  const ip = intToIp4(n.net);
  if (n.mask !== undefined) return `${ip}/${intToIp4(n.mask)}`;
  return ip + (n.len === 32 ? '' : `/${n.len}`);
}

/** what the matches and the target print after the addresses, each with a leading space */
function matchText(r: Rule, numeric: boolean): string {
  return ruleMatchText(r, { numeric, serviceName });
}

function protoText(r: Rule, numeric: boolean): string {
  const n = r.proto?.v ?? 0;
  return numeric ? String(n) : (PROTO_NAME[n] ?? String(n));
}

/** one rule line of `iptables -L` */
export function ruleLine(r: Rule, num: number, f: ListFormat): string {
  let s = f.lineNumbers ? `${String(num).padEnd(4)} ` : '';
  if (f.verbose) s += printNum(r.pkts, f.exact) + printNum(r.bytes, f.exact);
  s += `${targetColumn(r).padEnd(9)} `;
  s += (r.proto?.neg ? '!' : ' ') + `${protoText(r, f.numeric).padEnd(4)} `;
  s += '-- ';
  if (f.verbose) {
    const any = f.numeric ? '*' : 'any';
    const dev = (d: Rule['in']) => (d ? `${d.neg ? '!' : ''}${d.v}` : any);
    s += ` ${dev(r.in).padEnd(6)} ${dev(r.out).padEnd(6)} `;
  }
  s += (r.src?.neg ? '!' : ' ') + `${addr(r.src?.v, f.numeric).padEnd(19)} `;
  s += (r.dst?.neg ? '!' : ' ') + `${addr(r.dst?.v, f.numeric).padEnd(19)} `;
  if (r.target?.kind === 'goto') s += '[goto] ';
  return s + matchText(r, f.numeric);
}

/** the chains of a table in listing order: builtins, then user chains by name */
export function listedChains(nf: Netfilter, table: string): Chain[] {
  const chains = [...nf.table(table).values()];
  const builtins = chains.filter((c) => nf.isBuiltin(table, c.name));
  const user = chains
    .filter((c) => !nf.isBuiltin(table, c.name))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return [...builtins, ...user];
}

/** `iptables -L [CHAIN [N]]` for chains that exist; undefined rulenum lists whole chains */
export function listChains(
  nf: Netfilter,
  table: string,
  chains: Chain[],
  f: ListFormat,
  rulenum?: number,
): string {
  if (rulenum !== undefined) {
    const r = chains[0].rules[rulenum - 1];
    return r ? ruleLine(r, rulenum, f) + '\n' : '';
  }
  return chains
    .map((c) =>
      [chainHeader(nf, table, c, f), columnHeader(f), ...c.rules.map((r, i) => ruleLine(r, i + 1, f))]
        .map((l) => l + '\n')
        .join(''),
    )
    .join('\n');
}

/** `iptables -S [CHAIN [N]]` */
export function listRules(
  nf: Netfilter,
  table: string,
  chains: Chain[],
  verbose: boolean,
  rulenum?: number,
): string {
  const spec = (c: Chain, r: Rule) => {
    const s = formatRuleSpec(r, { counters: verbose });
    return `-A ${c.name}${s ? ' ' + s : ''}`;
  };
  if (rulenum !== undefined) {
    const r = chains[0].rules[rulenum - 1];
    return r ? spec(chains[0], r) + '\n' : '';
  }
  const out: string[] = [];
  for (const c of chains)
    out.push(
      nf.isBuiltin(table, c.name)
        ? `-P ${c.name} ${c.policy ?? 'ACCEPT'}${verbose ? ` -c ${c.pkts} ${c.bytes}` : ''}`
        : `-N ${c.name}`,
    );
  for (const c of chains) for (const r of c.rules) out.push(spec(c, r));
  return out.map((l) => l + '\n').join('');
}

/** the line `iptables -v -A/-I/-D/-C` prints for each rule (FMT_PRINT_RULE) */
export function printRule(r: Rule): string {
  let s = `${targetColumn(r)} `;
  s += (r.proto?.neg ? '!' : ' ') + `${PROTO_NAME[r.proto?.v ?? 0] ?? r.proto?.v} `;
  s += 'opt -- ';
  const dev = (d: Rule['in']) => (d ? `${d.neg ? '!' : ''}${d.v}` : '*');
  s += `in ${dev(r.in)} out ${dev(r.out)} `;
  s += (r.src?.neg ? '!' : ' ') + `${addr(r.src?.v, true)} `;
  s += (r.dst?.neg ? '!' : ' ') + `-> ${addr(r.dst?.v, true)}`;
  s += '  ';
  if (r.target?.kind === 'goto') s += '[goto] ';
  return s + matchText(r, true) + '\n';
}
