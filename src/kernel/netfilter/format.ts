/**
 * A rule printed the way iptables 1.8.9 (nf_tables) prints it: the iptables-save form
 * (`-A CHAIN` + this; also `iptables -S`), and the match-and-target text of `iptables -L`. One
 * printer per object: the emulated tools and the trace both call these.
 */
import type { PrintCtx } from './extension.ts';
import { matchExt } from './matches.ts';
import { bang, fmtNet, PROTO_NAME } from './parse.ts';
import { targetExt, targetName } from './targets.ts';
import type { Rule, Target } from './types.ts';

/** The rule as iptables-save prints it after `-A CHAIN`; `counters` adds `-c P B` where `iptables -S -v` puts it. */
export function formatRuleSpec(r: Rule, opts: { counters?: boolean } = {}): string {
  const p: string[] = [];
  if (r.src) p.push(`${bang(r.src)}-s ${fmtNet(r.src.v)}`);
  if (r.dst) p.push(`${bang(r.dst)}-d ${fmtNet(r.dst.v)}`);
  if (r.in) p.push(`${bang(r.in)}-i ${r.in.v}`);
  if (r.out) p.push(`${bang(r.out)}-o ${r.out.v}`);
  if (r.proto && (r.proto.v !== 0 || r.proto.neg))
    p.push(`${bang(r.proto)}-p ${PROTO_NAME[r.proto.v] ?? r.proto.v}`);
  for (const m of r.matches) p.push(`-m ${m.kind}${matchExt(m).save(m)}`);
  if (opts.counters) p.push(`-c ${r.pkts} ${r.bytes}`);
  if (r.target) p.push(targetSpec(r.target));
  return p.join(' ');
}

/** `-j NAME OPTIONS` or `-g CHAIN` */
export function targetSpec(t: Target): string {
  if (t.kind === 'goto') return `-g ${t.chain}`;
  return `-j ${targetName(t)}${targetExt(t)?.save(t) ?? ''}`;
}

/** the target column of `iptables -L` */
export function targetColumn(r: Rule): string {
  if (!r.target) return '';
  return targetExt(r.target)?.listName ?? targetName(r.target);
}

/** what the matches and the target print after the addresses in `iptables -L`, each with a leading space */
export function matchText(r: Rule, ctx: PrintCtx): string {
  const c = { ...ctx, proto: r.proto?.v };
  let s = '';
  for (const m of r.matches) s += matchExt(m).print(m, c);
  if (r.target) s += targetExt(r.target)?.print(r.target, c) ?? '';
  return s;
}
