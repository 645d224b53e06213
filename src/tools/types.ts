/**
 * Emulated troubleshooting tools (ip, bridge, tcpdump, iptables, conntrack, sysctl, calicoctl, nstat):
 * each is a function of its argv and the model, printing what the real tool prints.
 */
import type { Cluster } from '../cni/build.ts';
import type { Netns } from '../kernel/objects.ts';

export interface ToolContext {
  cluster: Cluster;
  /** the namespace the command runs in (a pod or a node) */
  netns: Netns;
}

export interface ToolResult {
  stdout: string;
  stderr: string;
  /** the real tool's exit status */
  code: number;
}

/** argv holds the arguments only, without the command's own name (argv[0] of a process) */
export type Tool = (argv: readonly string[], ctx: ToolContext) => ToolResult;

/**
 * Wall-clock time of the simulated clock's zero, in µs since the Unix epoch: 2026-01-01 00:00:00 UTC.
 * tcpdump lines and pcap timestamps are this plus World.now.
 */
export const EPOCH_US = 1_767_225_600_000_000;

/** A tool that ends with an error: the exit status and what it printed on stderr (thrown to the tool's entry point) */
export class ToolFailure extends Error {
  constructor(
    readonly code: number,
    readonly stderr: string,
  ) {
    super(stderr);
  }
}
