/**
 * CPU per warm walk on the seed cluster, in a process of its own: `node --import tsx
 * bench/walk-cpu.ts [MODE] [WALKS] [TO] [capture] [replay]` (default calico-bgp, 20,000, pod-c,
 * captures off, no flow cache). Like `npm run bench`'s warm case (one built cluster, a new
 * connection each walk from sport 40000, request and reply recorded), with captures only when
 * asked (`capture`), with the flow cache replaying its hits when asked (`replay`:
 * src/trace/replay.ts; the walks' outputs are then made when read, and this reads their outcome
 * only), timed by process.cpuUsage() (user + system: the machine may be shared) after 300 warm-up
 * walks. Prints one line: walks, CPU ms, µs per walk, walks per CPU second;
 * and, for `npm run bench` (which runs it as a child process: the issue's measure in a process of its
 * own, not after the other cases' garbage), the same as one JSON line after RESULT_PREFIX.
 */
import { seedCluster } from '../src/cluster/seed.ts';
import { CNI_MODES, type CniMode } from '../src/cluster/spec.ts';
import { buildCluster } from '../src/cni/build.ts';
import { enableFlowCache } from '../src/trace/flow-cache.ts';
import { walk, WalkError } from '../src/trace/walk.ts';
import { RESULT_PREFIX } from './scale.ts';

/** one run's numbers (npm run bench reads them) */
export interface WalkCpuResult {
  mode: CniMode;
  to: string;
  capture: boolean;
  /** the flow cache replayed hits */
  replay?: boolean;
  /** walks the flow cache replayed, of those timed and the warm-up */
  replayed?: number;
  walks: number;
  cpuMs: number;
  steps: number;
}

const mode = (process.argv[2] ?? 'calico-bgp') as CniMode;
const n = Number(process.argv[3] ?? 20000);
const to = process.argv[4] ?? 'pod-c';
const flags = process.argv.slice(5);
const capture = flags.includes('capture');
const replay = flags.includes('replay');
if (
  !CNI_MODES.includes(mode) ||
  !Number.isInteger(n) ||
  n < 1 ||
  n > 25000 ||
  flags.some((f) => f !== 'capture' && f !== 'replay')
) {
  process.stderr.write(
    `usage: npx tsx bench/walk-cpu.ts [MODE (${CNI_MODES.join(', ')})] [WALKS (1-25000)] [TO] [capture] [replay]\n`,
  );
  process.exit(2);
}
const c = buildCluster(seedCluster(), mode);
c.world.capture = capture;
const cache = replay ? enableFlowCache(c, { replay: true }) : undefined;
let sport = 40000;
let steps = 0;
const once = () => {
  const w = walk(c, { from: 'pod-a', to, proto: 'tcp', port: 8080, sport: sport++ });
  if (w.request.disposition.kind !== 'delivered' || w.reply?.disposition.kind !== 'delivered')
    throw new Error(`pod-a → ${to} was not delivered and answered`);
  last = w;
};
let last: ReturnType<typeof walk> | undefined;
try {
  once();
} catch (e) {
  if (!(e instanceof WalkError)) throw e;
  process.stderr.write(`bench/walk-cpu.ts: ${e.message}\n`);
  process.exit(2);
}
for (let i = 1; i < 300; i++) once();
const c0 = process.cpuUsage();
for (let i = 0; i < n; i++) once();
const u = process.cpuUsage(c0);
const ms = (u.user + u.system) / 1000;
// the steps of the last walk (read after the timing: a replayed walk makes them when read)
steps = last!.request.steps.length + last!.reply!.steps.length;
console.log(
  `${mode} pod-a → ${to}${capture ? ' (captures on)' : ''}${replay ? ' (flow cache, replayed)' : ''}: ${n} walks, ${ms.toFixed(0)} ms CPU, ${((ms * 1000) / n).toFixed(1)} µs a walk, ` +
    `${((n * 1000) / ms).toFixed(0)} walks per CPU s`,
);
const result: WalkCpuResult = {
  mode,
  to,
  capture,
  ...(replay ? { replay, replayed: cache!.stats.replayed } : {}),
  walks: n,
  cpuMs: ms,
  steps,
};
console.log(RESULT_PREFIX + JSON.stringify(result));
