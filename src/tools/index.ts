/**
 * The emulated commands, by name, and the two ways in: run one command line in a namespace
 * (`podwalk exec`, the shell, `--run`, a cluster file's `run:`), and prepare a cluster with the
 * `run:` commands applied.
 */
import type { ClusterSpec, CniMode } from '../cluster/spec.ts';
import { buildCluster, type Cluster } from '../cni/build.ts';
import { RuleSyntaxError, shellSplit } from '../kernel/netfilter.ts';
import { birdc } from './birdc.ts';
import { bridge } from './bridge.ts';
import { calicoctl } from './calicoctl.ts';
import { conntrack } from './conntrack.ts';
import { ip } from './ip.ts';
import { iptables } from './iptables.ts';
import { iptablesSaveTool } from './iptables-save.ts';
import { ipset } from './ipset.ts';
import { nstat } from './nstat.ts';
import { ping } from './ping.ts';
import { pkill } from './pkill.ts';
import { curl } from './curl.ts';
import { ss } from './ss.ts';
import { sysctl } from './sysctl.ts';
import { tcpdump } from './tcpdump.ts';
import type { Tool, ToolResult } from './types.ts';

export const TOOLS: Record<string, Tool> = {
  ip,
  bridge,
  tcpdump,
  iptables,
  'iptables-save': iptablesSaveTool,
  ipset,
  conntrack,
  sysctl,
  calicoctl,
  birdc,
  nstat,
  ping,
  pkill,
  curl,
  ss,
};

export class CommandError extends Error {
  /** `runIndex`: the failed command's index in the cluster file's `run:` list (for its file:line:col) */
  constructor(
    message: string,
    readonly runIndex?: number,
  ) {
    super(message);
  }
}

/** "node1: ip route del 10.244.1.0/24" → ["node1", "ip route del 10.244.1.0/24"] */
export function splitRunLine(line: string): [string, string] {
  const m = /^\s*([^:\s]+)\s*:\s*(.+)$/.exec(line);
  if (!m)
    throw new CommandError(`"${line}": expected NETNS: COMMAND, e.g. "node1: ip route del 10.244.1.0/24"`);
  return [m[1], m[2]];
}

/** Run one command line (or argv) in a namespace of the cluster. */
export function runCommand(c: Cluster, netns: string, command: string | readonly string[]): ToolResult {
  const ns = c.world.netns.get(netns);
  if (!ns) {
    const names = [...c.world.netns.keys()].join(', ');
    return { stdout: '', stderr: `podwalk: no network namespace "${netns}" (${names})\n`, code: 2 };
  }
  let argv: readonly string[];
  try {
    argv = typeof command === 'string' ? shellSplit(command) : command;
  } catch (e) {
    if (e instanceof RuleSyntaxError) return { stdout: '', stderr: `podwalk: ${e.message}\n`, code: 2 };
    throw e;
  }
  if (argv.length === 0) return { stdout: '', stderr: '', code: 0 };
  const tool = TOOLS[argv[0]];
  if (!tool)
    return {
      stdout: '',
      stderr: `podwalk: ${argv[0]}: not an emulated command (these are: ${Object.keys(TOOLS).sort().join(', ')})\n`,
      code: 2,
    };
  const r = tool(argv.slice(1), { cluster: c, netns: ns });
  // a change of links, addresses or routes reaches the node's BIRD (netlink notifications)
  if (c.bgp && argv[0] === 'ip' && r.code === 0 && argv.some((a) => CHANGES.has(a)))
    c.bgp.kernelChanged(netns);
  return r;
}

/** the words of an `ip` command that changes the kernel */
const CHANGES = new Set(['set', 'add', 'del', 'delete', 'replace', 'change', 'append', 'flush']);

/**
 * Build the cluster and apply its `run:` commands, then `extra` ones (the CLI's --run), in order.
 * A command that fails stops here with a CommandError naming it; the cluster is discarded, so
 * nothing half-applied is ever used.
 */
export function prepareCluster(spec: ClusterSpec, mode: CniMode, extra: readonly string[] = []): Cluster {
  const c = buildCluster(spec, mode);
  applyRun(c, [
    ...spec.run.map((l, i) => ({ l, where: `run[${i}]`, index: i as number | undefined })),
    ...extra.map((l) => ({ l, where: '--run', index: undefined })),
  ]);
  return c;
}

/**
 * Apply `NETNS: COMMAND` lines to a built (or imported) cluster, in order; a command that fails
 * stops here with a CommandError naming it (`where` says which list it came from, `index` the
 * cluster file's run entry).
 */
export function applyRun(
  c: Cluster,
  lines: readonly { l: string; where: string; index?: number | undefined }[],
): void {
  for (const { l, where, index } of lines) {
    const [netns, cmd] = splitRunLine(l);
    const r = runCommand(c, netns, cmd);
    if (r.code !== 0) {
      const why = (r.stderr || r.stdout).trim().split('\n')[0];
      throw new CommandError(`${where} "${l}": ${why || `exit ${r.code}`}`, index);
    }
  }
}
