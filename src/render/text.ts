/**
 * Renderers of a Trace: `steps` (numbered, OSI layer per step, the deciding table entry and the
 * headers on the wire: what a learner reads), `summary` (the device path on one line),
 * `minimal` (stable lines for regression tests, after ovn-trace's minimal output) and `json`.
 * They read a trace; they never touch the model.
 */
import type { Disposition, Flow, Step, Trace } from '../trace/types.ts';
import { headerLayers } from './headers.ts';
import { dropText, roleLabel, stepDetail, stepEntry, stepTable } from './step.ts';

export interface Style {
  bold(s: string): string;
  dim(s: string): string;
  ok(s: string): string;
  bad(s: string): string;
  accent(s: string): string;
}

export const PLAIN: Style = { bold: (s) => s, dim: (s) => s, ok: (s) => s, bad: (s) => s, accent: (s) => s };

export const ANSI: Style = {
  bold: (s) => `\x1b[1m${s}\x1b[22m`,
  dim: (s) => `\x1b[2m${s}\x1b[22m`,
  ok: (s) => `\x1b[32m${s}\x1b[39m`,
  bad: (s) => `\x1b[31m${s}\x1b[39m`,
  accent: (s) => `\x1b[36m${s}\x1b[39m`,
};

const LAYER_NAME: Record<number, string> = { 2: 'L2', 3: 'L3', 4: 'L4', 7: 'L7' };

export function flowLine(f: Flow): string {
  const ports = (ip: string, p?: number) => (p === undefined ? ip : `${ip}:${p}`);
  const size = f.size !== undefined ? `, ${f.size} bytes` : '';
  const df = f.df && f.proto !== 'tcp' ? ', DF' : '';
  return `${f.proto.toUpperCase()} ${ports(f.src, f.sport)} → ${ports(f.dst, f.dport)} (${roleLabel(f.role)}${size}${df}) from ${f.from}`;
}

export function dispositionLine(d: Disposition): string {
  switch (d.kind) {
    case 'delivered':
      return `delivered to ${d.netns} ${d.to}`;
    case 'dropped':
      return `DROPPED (${d.reason}) in ${d.netns}${d.device ? ` at ${d.device}` : ''}: ${dropText(d.drop)}`;
    case 'outside':
      return `left the collected nodes through ${d.netns} ${d.device} (outside: not known beyond)`;
    case 'pending':
      return 'no disposition: the packet left no terminal event';
  }
}

function dispo(d: Disposition, st: Style): string {
  const line = dispositionLine(d);
  return d.kind === 'delivered' ? st.ok(line) : st.bad(line);
}

export interface StepsOptions {
  /** steps of side exchanges (ARP): all of them, one line per exchange, or none; default full */
  aux?: 'full' | 'brief' | 'none';
  /** print the headers of every frame on tx/rx steps; default true */
  headers?: boolean;
}

function headerLines(s: Step, indent: string, st: Style): string[] {
  if (!s.frame) return [];
  const layers = headerLayers(s.frame);
  return layers.map(
    (l) =>
      `${indent}${'  '.repeat(l.depth - 1)}${st.dim(`${l.name.padEnd(8)} ${String(l.bytes).padStart(4)} B`)}  ${l.fields}`,
  );
}

/** numbered steps grouped by namespace, each with its OSI layer and the entry that decided it */
export function renderSteps(t: Trace, st: Style = PLAIN, o: StepsOptions = {}): string {
  const aux = o.aux ?? 'full';
  const showHeaders = o.headers ?? true;
  const out: string[] = [st.bold(flowLine(t.flow))];
  let lastNs = '';
  for (let i = 0; i < t.steps.length; i++) {
    const s = t.steps[i];
    if (s.aux && aux === 'none') continue;
    if (s.aux && aux === 'brief') {
      let j = i;
      while (j + 1 < t.steps.length && t.steps[j + 1].aux === s.aux) j++;
      const run = t.steps.slice(i, j + 1);
      const learned = run.flatMap((x) => (x.ev.type === 'arp-learn' ? [`${x.ev.ip} is-at ${x.ev.mac}`] : []));
      const ns = new Set(run.map((x) => x.netns));
      out.push(
        st.dim(
          `  ${String(s.n).padStart(3)}-${run[run.length - 1].n}  ${s.aux}: ${learned.length ? learned.join('; ') : 'no answer'} (${run.length} steps across ${[...ns].join(', ')})`,
        ),
      );
      i = j;
      lastNs = '';
      continue;
    }
    if (s.netns !== lastNs) {
      out.push(`  ${st.accent(`[${s.netns}]`)}`);
      lastNs = s.netns;
    }
    const n = String(s.n).padStart(3);
    const auxTag = s.aux ? st.dim(`(${s.aux}) `) : '';
    const part = s.part ? st.dim(`{${s.part}} `) : '';
    const kind = s.kind.padEnd(9);
    const text = `${n}  ${LAYER_NAME[s.layer]}  ${kind} ${auxTag}${part}${stepDetail(s)}`;
    out.push(s.kind === 'drop' ? st.bad(text) : s.aux ? st.dim(text) : text);
    const entry = stepEntry(s);
    const table = stepTable(s);
    if (entry !== undefined && table) out.push(`                     ${st.dim(`${table}:`)} ${entry}`);
    if (showHeaders && !s.aux && s.kind === 'xmit') out.push(...headerLines(s, '                     ', st));
  }
  out.push(`  => ${dispo(t.disposition, st)}`);
  return out.join('\n');
}

/** the path as devices, one line per namespace */
export function renderSummary(t: Trace, st: Style = PLAIN): string {
  const out: string[] = [st.bold(flowLine(t.flow))];
  let cur: { ns: string; devs: string[] } | undefined;
  const flush = () => cur && out.push(`  ${cur.ns.padEnd(8)} ${cur.devs.join(' → ')}`);
  for (const s of t.steps) {
    if (s.aux) continue;
    let tag: string | undefined;
    if ((s.kind === 'xmit' || s.kind === 'rx' || s.kind === 'bridge') && s.device) tag = s.device;
    else if (s.ev.type === 'encap-vxlan') tag = `[VXLAN vni ${s.ev.vni}]`;
    else if (s.ev.type === 'encap-ipip') tag = '[IPinIP (protocol 4)]';
    else if (s.kind === 'decap') tag = '[decap]';
    else if (s.ev.type === 'drop') tag = st.bad(`✗ ${s.ev.drop.reason}`);
    if (!tag) continue;
    if (!cur || cur.ns !== s.netns) {
      flush();
      cur = { ns: s.netns, devs: [] };
    }
    if (cur.devs[cur.devs.length - 1] !== tag) cur.devs.push(tag);
  }
  flush();
  out.push(`  => ${dispo(t.disposition, st)}`);
  return out.join('\n');
}

/** stable, minimal: one line per non-side step, no timings, no bytes */
export function renderMinimal(t: Trace): string {
  const f = t.flow;
  const out = [
    `flow ${f.proto} ${f.src}${f.sport !== undefined ? `:${f.sport}` : ''} > ${f.dst}${f.dport !== undefined ? `:${f.dport}` : ''} ${roleLabel(f.role)} from ${f.from}`,
  ];
  for (const s of t.steps) {
    if (s.aux) continue;
    const dev = s.device ? ` ${s.device}` : '';
    const e = stepEntry(s);
    const entry = e !== undefined ? ` | ${e}` : '';
    const part = s.part ? ` {${s.part}}` : '';
    out.push(`  ${s.netns}${dev}: ${s.kind} ${s.action}${part}${entry}`);
  }
  const d = t.disposition;
  out.push(
    d.kind === 'delivered'
      ? `  delivered ${d.netns} ${d.to}`
      : d.kind === 'dropped'
        ? `  dropped ${d.reason} ${d.netns}${d.device ? ` ${d.device}` : ''}`
        : '  pending',
  );
  return out.join('\n');
}
