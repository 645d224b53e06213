/**
 * `podwalk lab diff` and the state half of the differential suite: the same commands run for real
 * in every lab namespace and emulated on the model, compared table by table.
 *
 * Normalised, because the kernel decides them by a hash seed or a wall-clock timer: the order of
 * `ip neigh` and `bridge fdb` dumps (hash tables), the transient neighbour states (REACHABLE,
 * STALE, DELAY, PROBE: timers on the wall clock), iptables-save's date lines and counters, the
 * order of `conntrack -L` (a hash table) and its entries' timeouts (counting down on the wall clock). The
 * lab's namespace prefix is removed from `link-netns` names.
 */
import type { Cluster } from '../cni/build.ts';
import { runCommand } from '../tools/index.ts';
import { shellSplit } from '../kernel/netfilter.ts';
import { labExecAsync, pool, type LabState } from './host.ts';

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
  // a hash set lists its members in its buckets' order (the lab gives the kernel the model's
  // initval, so the headers agree; the model keeps the order members were added in)
  if (command.startsWith('ipset')) return lines(s).sort().join('\n');
  // conntrack walks its hash table (a per-boot seed orders it), a timeout counts down on the wall
  // clock, and a VXLAN packet's source port is udp_flow_src_port's hash of the skb (a sending
  // socket's random sk_txhash): masked as the packet comparison masks it
  if (command.startsWith('conntrack'))
    return lines(s)
      .map((l) =>
        l
          .replace(/^(\S+ +\d+ )\d+ /, '$1* ')
          .replace(/sport=\d+ dport=4789\b/g, 'sport=* dport=4789')
          .replace(/sport=4789 dport=\d+/g, 'sport=4789 dport=*'),
      )
      .sort()
      .join('\n');
  if (command.startsWith('iptables-save'))
    return lines(s)
      .filter((l) => !l.startsWith('#'))
      .map((l) => l.replace(/\[\d+:\d+\]/, '[*]'))
      .join('\n');
  if (command.startsWith('ip link')) s = s.replace(/\blink-netnsid \d+/g, 'link-netnsid *');
  return lines(s).join('\n');
}

/**
 * nstat's absolute counters less what they were when the lab was ready (a Calico lab's BGP sessions
 * counted their own segments before any flow: LabState.nstatBase); other commands as they are
 */
export function sinceBase(command: string, text: string, base: Record<string, number> | undefined): string {
  if (!base || !command.startsWith('nstat')) return text;
  // nstat's columns: the name in 32, the value left-aligned in 16, the rate
  return text.replace(
    /^(\S+)(\s+)(\d+)(\s+)/gm,
    (all, name: string, gap: string, v: string, trail: string) => {
      if (!(name in base)) return all;
      const d = String(Number(v) - base[name]);
      return `${name}${gap}${d}${' '.repeat(Math.max(1, trail.length + v.length - d.length))}`;
    },
  );
}

/** a line none of the state commands prints: where one command's output ends */
const END = '@@podwalk: end of output@@';

const quote = (w: string) => `'${w.replace(/'/g, `'\\''`)}'`;

/** the real outputs of `commands` in one lab namespace, from one process (each with its own exit status) */
async function realOutputs(state: LabState, netns: string, commands: readonly string[]): Promise<string[]> {
  const script = commands
    .map((c) => `${shellSplit(c).map(quote).join(' ')}; printf '\\n%s\\n' '${END}'`)
    .join('\n');
  const r = await labExecAsync(state, netns, ['sh', '-c', script]);
  const parts = r.stdout.split(`\n${END}\n`);
  return commands.map((_, i) => parts[i] ?? '');
}

/** the commands run in every lab namespace (a few namespaces at a time) and emulated on the model */
export async function stateDiff(
  state: LabState,
  model: Cluster,
  commands: readonly string[] = STATE_COMMANDS,
): Promise<TableDiff[]> {
  return (await stateDiffs(state, [model], commands))[0];
}

/** the lab's tables read once, each model's compared with them (the first model's roles choose) */
export async function stateDiffs(
  state: LabState,
  models: readonly Cluster[],
  commands: readonly string[] = STATE_COMMANDS,
): Promise<TableDiff[][]> {
  const netnsList = Object.keys(state.namespaces);
  // the underlay segments have no iptables of their own
  const which = (netns: string) =>
    commands.filter((c) => c !== 'iptables-save' || models[0].world.netns.get(netns)?.role === 'node');
  const real = new Map<string, string[]>();
  await pool(
    netnsList,
    4,
    async (netns) => void real.set(netns, await realOutputs(state, netns, which(netns))),
  );
  return models.map((model) => {
    const out: TableDiff[] = [];
    for (const netns of netnsList) {
      which(netns).forEach((command, i) => {
        const sim = runCommand(model, netns, command);
        const a = normaliseState(command, sim.stdout, state.prefix);
        const b = normaliseState(
          command,
          sinceBase(command, real.get(netns)![i], state.nstatBase?.[netns]),
          state.prefix,
        );
        out.push({ netns, command, sim: a, real: b, equal: a === b });
      });
    }
    return out;
  });
}
