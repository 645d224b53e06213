/**
 * `pkill` (procps-ng) on a node: what the model runs as processes that a signal can end is the
 * node's BIRD, so `pkill -9 bird` (or -KILL, -SIGKILL, --signal KILL; -x) kills it as a crash or an
 * OOM kill would: no shutdown of its own, no NOTIFICATION; the node's kernel closes its
 * connections (a FIN to each peer), its peers keep its routes for its graceful-restart time, and
 * the routes it installed stay in the node's kernel (src/bgp/session.ts kill). SIGTERM (pkill's
 * default, -15, -TERM) is BIRD's own shutdown, as `birdc down`: a NOTIFICATION Cease on each
 * session, whose peers flush its routes at once. pkill prints nothing; its exit status is 0 when a
 * process matched, 1 when none did. Other signals and other patterns are not emulated.
 */
import type { Tool } from './types.ts';

const KILL = new Set(['9', 'KILL', 'SIGKILL']);
const TERM = new Set(['15', 'TERM', 'SIGTERM']);

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
  const sig = signal.toUpperCase();
  if (!KILL.has(sig) && !TERM.has(sig))
    return bad(
      `signal ${signal}: emulated are SIGKILL (a BIRD that dies without a NOTIFICATION) and SIGTERM (BIRD's own shutdown, a Cease on each session)`,
    );
  const bgp = ctx.cluster.bgp;
  const matched = KILL.has(sig) ? bgp?.kill(ctx.netns.name) : bgp?.shutdown(ctx.netns.name, false);
  return { stdout: '', stderr: '', code: matched ? 0 : 1 };
};
