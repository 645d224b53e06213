/**
 * `podwalk lab diff` and the state half of the differential suite: the same commands run for real
 * in every lab namespace and emulated on the model, compared table by table.
 *
 * Normalised, because the kernel decides them by a hash seed or a wall-clock timer: the order of
 * `ip neigh` and `bridge fdb` dumps (hash tables), the transient neighbour states (REACHABLE,
 * STALE, DELAY, PROBE: timers on the wall clock), iptables-save's date lines and counters. The
 * lab's namespace prefix is removed from `link-netns` names.
 */
import type { Cluster } from '../cni/build.ts';
import { runCommand } from '../tools/index.ts';
import { shellSplit } from '../kernel/netfilter.ts';
import { labExec, type LabState } from './host.ts';

export const STATE_COMMANDS = [
  'ip route',
  'ip neigh',
  'bridge fdb show',
  'ip link',
  'iptables-save',
] as const;

export interface TableDiff {
  netns: string;
  command: string;
  sim: string;
  real: string;
  equal: boolean;
}

function lines(s: string): string[] {
  return s.split('\n').filter((l) => l.trim() !== '');
}

export function normaliseState(command: string, text: string, prefix: string): string {
  let s = text.split(prefix).join('');
  if (command.startsWith('ip neigh'))
    return lines(s.replace(/\b(REACHABLE|STALE|DELAY|PROBE)\b/g, '<dynamic>'))
      .sort()
      .join('\n');
  if (command.startsWith('bridge fdb')) return lines(s).sort().join('\n');
  if (command.startsWith('iptables-save'))
    return lines(s)
      .filter((l) => !l.startsWith('#'))
      .map((l) => l.replace(/\[\d+:\d+\]/, '[*]'))
      .join('\n');
  if (command.startsWith('ip link')) s = s.replace(/\blink-netnsid \d+/g, 'link-netnsid *');
  return lines(s).join('\n');
}

export function stateDiff(
  state: LabState,
  model: Cluster,
  commands: readonly string[] = STATE_COMMANDS,
): TableDiff[] {
  const out: TableDiff[] = [];
  for (const netns of Object.keys(state.namespaces)) {
    const role = model.world.netns.get(netns)?.role;
    for (const command of commands) {
      // the underlay segments have no iptables of their own
      if (command === 'iptables-save' && role !== 'node') continue;
      const real = labExec(state, netns, shellSplit(command));
      const sim = runCommand(model, netns, command);
      const a = normaliseState(command, sim.stdout, state.prefix);
      const b = normaliseState(command, real.stdout, state.prefix);
      out.push({ netns, command, sim: a, real: b, equal: a === b });
    }
  }
  return out;
}
