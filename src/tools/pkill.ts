/**
 * `pkill` (procps-ng) on a node: what the model runs as processes that a signal can end is the
 * node's BIRD, so `pkill -9 bird` (or -KILL, -SIGKILL, --signal KILL; -x) kills it as a crash or an
 * OOM kill would: no shutdown of its own, no NOTIFICATION; the node's kernel closes its
 * connections (a FIN to each peer), its peers keep its routes for its graceful-restart time, and
 * the routes it installed stay in the node's kernel (src/bgp/session.ts kill). pkill prints
 * nothing; its exit status is 0 when a process matched, 1 when none did. Other signals (SIGTERM:
 * BIRD's own shutdown, a Cease on each session) and other patterns are not emulated.
 */
import type { Tool } from './types.ts';

const KILL = new Set(['9', 'KILL', 'SIGKILL']);

export const pkill: Tool = (argv, ctx) => {
  const bad = (why: string) => ({ stdout: '', stderr: `podwalk: pkill: ${why}\n`, code: 2 });
  const words = [...argv];
  let signal: string | undefined;
  while (words[0]?.startsWith('-')) {
    const opt = words.shift()!;
    if (opt === '-x' || opt === '--exact') continue;
    if (opt === '--signal' || opt === '-s') {
      if (!words.length) return bad(`${opt} needs a signal`);
      signal = words.shift()!;
    } else signal = opt.slice(1);
  }
  if (signal === undefined) signal = 'TERM';
  if (words.length !== 1) return bad(`expected one pattern, e.g. \`pkill -9 bird'`);
  if (words[0] !== 'bird') return bad(`only the node's BIRD is emulated as a process (\`pkill -9 bird')`);
  if (!KILL.has(signal.toUpperCase()))
    return bad(
      `signal ${signal}: only SIGKILL is emulated (a BIRD that dies without a NOTIFICATION); BIRD's own shutdown, a Cease on each session, is \`birdc disable' of each protocol`,
    );
  const killed = ctx.cluster.bgp?.kill(ctx.netns.name) ?? false;
  return { stdout: '', stderr: '', code: killed ? 0 : 1 };
};
