/**
 * `ss` (iproute2 6.1) on a namespace's sockets: `-t`/`-u` with `-a` and `-n` (`-tan`, `-uan`,
 * `-H`), listing the listeners (LISTEN, UNCONN) and the TCP connections in their states
 * (SYN-SENT, ESTAB, FIN-WAIT-1, TIME-WAIT for TCP_TIMEWAIT_LEN, 60 s…). The layout is ss's own
 * when its output is not a terminal (render_calc_width's compact output): each column as wide
 * as its widest field, addresses right-aligned before their ports. The kernel lists sockets in
 * hash order; here the listeners come first, then connections in the order they were opened.
 */
import { LISTEN_BACKLOG } from '../kernel/objects.ts';
import type { TcpState } from '../kernel/sockets.ts';
import type { Tool, ToolResult } from './types.ts';

/** TCP_TIMEWAIT_LEN, µs */
const TIMEWAIT_US = 60_000_000;

const STATE: Record<TcpState, string> = {
  SYN_SENT: 'SYN-SENT',
  SYN_RECV: 'SYN-RECV',
  ESTABLISHED: 'ESTAB',
  FIN_WAIT1: 'FIN-WAIT-1',
  FIN_WAIT2: 'FIN-WAIT-2',
  CLOSE_WAIT: 'CLOSE-WAIT',
  LAST_ACK: 'LAST-ACK',
  TIME_WAIT: 'TIME-WAIT',
  CLOSED: 'UNCONN',
};

interface Column {
  header: string;
  align: 'left' | 'right';
  ldelim: string;
}
const COLUMNS: Column[] = [
  { header: 'State', align: 'left', ldelim: ' ' },
  { header: 'Recv-Q', align: 'left', ldelim: ' ' },
  { header: 'Send-Q', align: 'left', ldelim: ' ' },
  { header: 'Local Address:', align: 'right', ldelim: ' ' },
  { header: 'Port', align: 'left', ldelim: '' },
  { header: 'Peer Address:', align: 'right', ldelim: ' ' },
  { header: 'Port', align: 'left', ldelim: '' },
  { header: 'Process', align: 'left', ldelim: '' },
];

/** render(): widths from the widest field (+ the left delimiter after the first column) */
function render(rows: string[][], header: boolean): string {
  const all = header ? [COLUMNS.map((c) => c.header), ...rows] : rows;
  const max = COLUMNS.map((_, i) => Math.max(0, ...all.map((r) => r[i].length)));
  let first = true;
  const width = max.map((m, i) => {
    const w = !first && m ? m + COLUMNS[i].ldelim.length : m;
    if (w) first = false;
    return w;
  });
  const lines = all.map((r, ri) => {
    let line = '';
    let started = false;
    r.forEach((f, i) => {
      if (!width[i] && !f) return;
      let printed = 0;
      if (started) {
        line += COLUMNS[i].ldelim;
        printed = COLUMNS[i].ldelim.length;
      }
      started = true;
      if (COLUMNS[i].align === 'right') {
        const s = width[i] - f.length - printed;
        if (s > 0) line += ' '.repeat(s);
        line += f;
      } else {
        line += f;
        printed += f.length;
        // the header's last column is not padded (print_header stops before the last field)
        if (!(header && ri === 0 && i === r.length - 1)) line += ' '.repeat(Math.max(0, width[i] - printed));
      }
    });
    return line;
  });
  return lines.map((l) => l + '\n').join('');
}

export const ss: Tool = (argv, { cluster: c, netns: ns }): ToolResult => {
  let tcp = false;
  let udp = false;
  let all = false;
  let listening = false;
  let header = true;
  for (const a of argv) {
    if (a === '-H' || a === '--no-header') {
      header = false;
      continue;
    }
    if (!/^-[a-zA-Z]+$/.test(a))
      return {
        stdout: '',
        stderr: `podwalk: "ss ${a}" is not emulated (ss -tan, -uan, -tln, -H)\n`,
        code: 2,
      };
    for (const f of a.slice(1)) {
      if (f === 't') tcp = true;
      else if (f === 'u') udp = true;
      else if (f === 'a') all = true;
      else if (f === 'l') listening = true;
      else if (f === 'n') continue;
      else
        return {
          stdout: '',
          stderr: `podwalk: "ss -${f}" is not emulated (ss -tan, -uan, -tln, -H)\n`,
          code: 2,
        };
    }
  }
  if (!tcp && !udp) return { stdout: '', stderr: 'podwalk: ss without -t or -u is not emulated\n', code: 2 };
  if (tcp && udp) return { stdout: '', stderr: 'podwalk: ss -t and -u together are not emulated\n', code: 2 };
  const rows: string[][] = [];
  const now = c.world.now;
  const addr = (ip: string) => `${ip}:`;
  const proto = tcp ? 'tcp' : 'udp';
  if (all || listening)
    for (const l of ns.sockets)
      if (l.proto === proto)
        rows.push([
          tcp ? 'LISTEN' : 'UNCONN',
          '0'.padEnd(6),
          String(tcp ? (l.backlog ?? LISTEN_BACKLOG) : 0).padEnd(6),
          addr(l.addr),
          String(l.port),
          addr('0.0.0.0'),
          '*',
          '',
        ]);
  if (tcp && !listening)
    for (const k of c.sockets.conns) {
      if (k.ns !== ns.name || k.state === 'CLOSED') continue;
      if (k.state === 'TIME_WAIT' && k.timeWaitAt !== undefined && now - k.timeWaitAt >= TIMEWAIT_US)
        continue;
      // a connection still opening is listed only with -a (ss shows established states by default)
      if (!all && (k.state === 'SYN_SENT' || k.state === 'SYN_RECV' || k.state === 'TIME_WAIT')) continue;
      rows.push([
        STATE[k.state],
        '0'.padEnd(6),
        '0'.padEnd(6),
        addr(k.local),
        String(k.lport),
        addr(k.remote),
        String(k.rport),
        '',
      ]);
    }
  return { stdout: render(rows, header), stderr: '', code: 0 };
};
