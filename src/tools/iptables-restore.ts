/**
 * iptables-restore (1.8.9, nf_tables) on the model: the iptables-save format read table by table
 * (`*TABLE`, `:CHAIN POLICY [PKTS:BYTES]`, rule lines, `COMMIT`), each rule line run through the
 * emulated `iptables` (the same option parser, checks and errors), each table replaced as a whole
 * at its COMMIT, as the real tool does without --noflush. With `counters` (-c) the `[PKTS:BYTES]`
 * of chains and rules are kept. A table that fails changes nothing.
 *
 * It is the path the imported World's rules take (src/import/apply.ts), and the lab's own format.
 */
import { shellSplit, RuleSyntaxError, TABLE_BUILTINS } from '../kernel/netfilter.ts';
import { Netns } from '../kernel/objects.ts';
import { iptables } from './iptables.ts';
import type { ToolContext, ToolResult } from './types.ts';

const PROG = 'iptables-restore v1.8.9 (nf_tables)';

export interface RestoreOptions {
  /** -c: restore the packet and byte counters */
  counters?: boolean;
  /**
   * podwalk's importer only (the real tool has no such mode): a rule line the emulated iptables
   * refuses (a match or target the model does not evaluate) is reported here and left out,
   * instead of failing its table
   */
  skip?: (line: string, message: string, table: string) => void;
}

/** where a restore stopped: the 1-based line and the message */
export interface RestoreFailure {
  line: number;
  message: string;
}

function fail(line: number, message: string, code = 1): ToolResult & { failure: RestoreFailure } {
  return {
    stdout: '',
    stderr: `${PROG}: ${message}\nError occurred at line: ${line}\nTry \`iptables-restore -h' or 'iptables-restore --help' for more information.\n`,
    code,
    failure: { line, message },
  };
}

/**
 * Restore `text` into the namespace's netfilter tables. Returns the tool's result; on failure,
 * `failure` names the line, and no table of the failing one's COMMIT has changed.
 */
export function iptablesRestore(
  ctx: ToolContext,
  text: string,
  opts: RestoreOptions = {},
): ToolResult & { failure?: RestoreFailure } {
  const lines = text.split('\n');
  let table: string | undefined;
  // the table being built, in a scratch namespace: the real one changes only at COMMIT
  let scratch: Netns | undefined;
  const counters = new Map<string, [number, number]>();
  for (let i = 0; i < lines.length; i++) {
    const n = i + 1;
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      if (table) return fail(n, `table '${table}' has no COMMIT before the next table`);
      table = line.slice(1);
      if (!TABLE_BUILTINS[table]) return fail(n, `table '${table}' does not exist`);
      scratch = new Netns(ctx.netns.name, ctx.netns.role);
      // the IP sets are the namespace's: `-m set` looks its set up there
      scratch.netfilter.ipsetsByName = ctx.netns.netfilter.ipsetsByName;
      scratch.netfilter.table(table);
      scratch.netfilter.markCreated(table);
      counters.clear();
      continue;
    }
    if (!table || !scratch) return fail(n, 'no command specified');
    const run = (argv: string[]) => iptables(['-t', table!, ...argv], { ...ctx, netns: scratch! });
    if (line === 'COMMIT') {
      ctx.netns.netfilter.tables.set(table, scratch.netfilter.tables.get(table)!);
      ctx.netns.netfilter.markCreated(table);
      table = scratch = undefined;
      continue;
    }
    if (line.startsWith(':')) {
      const m = /^:(\S+)\s+(\S+)(?:\s+\[(\d+):(\d+)\])?$/.exec(line);
      if (!m) return fail(n, `bad chain line "${line}"`, 2);
      const [, chain, policy, pk, by] = m;
      const builtin = scratch.netfilter.isBuiltin(table, chain);
      if (!builtin) {
        const r = run(['-N', chain]);
        if (r.code !== 0) return fail(n, r.stderr.trim().replace(/^iptables[^:]*: /, ''), r.code);
      } else if (policy !== '-') {
        const r = run(['-P', chain, policy]);
        if (r.code !== 0) return fail(n, r.stderr.trim().replace(/^iptables[^:]*: /, ''), r.code);
        const c = scratch.netfilter.chain(table, chain)!;
        if (opts.counters && pk !== undefined) {
          c.pkts = Number(pk);
          c.bytes = Number(by);
        }
      }
      continue;
    }
    let rest = line;
    let ctr: [number, number] | undefined;
    const cm = /^\[(\d+):(\d+)\]\s+(.*)$/.exec(rest);
    if (cm) {
      ctr = [Number(cm[1]), Number(cm[2])];
      rest = cm[3];
    }
    let argv: string[];
    try {
      argv = shellSplit(rest);
    } catch (e) {
      if (e instanceof RuleSyntaxError) return fail(n, e.message, 2);
      throw e;
    }
    if (opts.counters && ctr) argv.push('-c', String(ctr[0]), String(ctr[1]));
    const r = run(argv);
    if (r.code !== 0) {
      const message = r.stderr
        .trim()
        .split('\n')[0]
        .replace(/^iptables v1\.8\.9 \(nf_tables\): /, '')
        .replace(/^podwalk: iptables: /, '');
      if (opts.skip) {
        opts.skip(rest, message, table);
        continue;
      }
      return fail(n, message, r.code);
    }
  }
  if (table) return fail(lines.length, `table '${table}' has no COMMIT`);
  return { stdout: '', stderr: '', code: 0 };
}
