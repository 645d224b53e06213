/**
 * conntrack entries in the layout `conntrack -L` (conntrack-tools 1.4.x) prints.
 */
import type { CtEntryData, Tuple } from '../kernel/conntrack.ts';

const PROTO: Record<number, string> = { 6: 'tcp', 17: 'udp', 1: 'icmp' };

/** one tuple as `conntrack -L` prints it; trace steps print conntrack entries with it too */
export function tuple(t: Tuple): string {
  if (t.proto === 6 || t.proto === 17) return `src=${t.src} dst=${t.dst} sport=${t.sport} dport=${t.dport}`;
  if (t.proto === 1) return `src=${t.src} dst=${t.dst} type=${t.icmpType} code=${t.icmpCode} id=${t.icmpId}`;
  return `src=${t.src} dst=${t.dst}`;
}

export function formatCtEntry(e: CtEntryData, now: number): string {
  const name = PROTO[e.orig.proto] ?? 'unknown';
  const secs = Math.max(0, Math.floor((e.expires - now) / 1e6));
  const parts = [`${name.padEnd(8)} ${e.orig.proto} ${secs}`];
  if (e.tcpState) parts.push(e.tcpState);
  parts.push(tuple(e.orig));
  if (!e.seenReply) parts.push('[UNREPLIED]');
  parts.push(tuple(e.reply));
  if (e.assured) parts.push('[ASSURED]');
  parts.push(`mark=${e.mark}`, 'use=1');
  return parts.join(' ');
}
