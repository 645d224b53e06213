/**
 * CPU per warm walk on the seed cluster, in a process of its own: `node --import tsx
 * bench/walk-cpu.ts [MODE] [WALKS] [TO] [capture] [replay] [warm=N]` (default calico-bgp, 20,000,
 * pod-c, captures off, no flow cache, 300 warm-up walks). Like `npm run bench`'s warm case (one
 * built cluster, a new connection each walk from sport 40000, or 10000 with more than 300 warm-up
 * walks, request and reply recorded), with captures only when
 * asked (`capture`), with the flow cache replaying its hits when asked (`replay`:
 * src/trace/replay.ts; the walks' outputs are then made when read, and this reads their outcome
 * only), timed by process.cpuUsage() (user + system: the machine may be shared) after 300 warm-up
 * walks (`warm=N`: N, up to 30,000: the steady state, once V8 has compiled what the walks run and the
 * heap has grown to their size: `npm run bench` takes 30,000, after which TurboFan compiled nothing
 * more during the timed walks; after 5,000 it still compiled 20–48 functions). With `podwalk-flags`,
 * the process first sets the V8 flags the podwalk executable runs with (src/cli/v8-flags.ts), as
 * bench/doctor-one.ts does: the walks as a `podwalk` command would run them, not as a library in a
 * bare node. Prints one line: walks, CPU ms, µs per walk, walks per CPU second;
 * and, for `npm run bench` (which runs it as a child process: the issue's measure in a process of its
 * own, not after the other cases' garbage), the same as one JSON line after RESULT_PREFIX.
 */
import { seedCluster } from '../src/cluster/seed.ts';
import { CNI_MODES, type CniMode } from '../src/cluster/spec.ts';
import { buildCluster } from '../src/cni/build.ts';
import { enableFlowCache } from '../src/trace/flow-cache.ts';
import { walk, WalkError } from '../src/trace/walk.ts';
import { setPodwalkV8Flags } from '../src/cli/v8-flags.ts';
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
  /** warm-up walks before the timed ones */
  warm?: number;
  /** the process ran with the podwalk executable's V8 flags */
  podwalkFlags?: boolean;
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
const podwalkFlags = flags.includes('podwalk-flags');
const warmFlag = flags.find((f) => f.startsWith('warm='));
const warm = warmFlag === undefined ? 300 : Number(warmFlag.slice(5));
if (
  !CNI_MODES.includes(mode) ||
  !Number.isInteger(n) ||
  n < 1 ||
  n > 25000 ||
  !Number.isInteger(warm) ||
  warm < 1 ||
  warm > 30000 ||
  flags.some((f) => f !== 'capture' && f !== 'replay' && f !== 'podwalk-flags' && f !== warmFlag)
) {
  process.stderr.write(
    `usage: npx tsx bench/walk-cpu.ts [MODE (${CNI_MODES.join(', ')})] [WALKS (1-25000)] [TO] [capture] [replay] [warm=N (1-30000)] [podwalk-flags]\n`,
  );
  process.exit(2);
}
// (before anything runs hot: a flag is read when a function is compiled)
if (podwalkFlags) setPodwalkV8Flags();
const c = buildCluster(seedCluster(), mode);
c.world.capture = capture;
const cache = replay ? enableFlowCache(c, { replay: true }) : undefined;
// (source ports 40000-65299 for the 300 warm-up walks and 25,000 walks of before; 10000-64999 for more)
let sport = warm > 300 ? 10000 : 40000;
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
for (let i = 1; i < warm; i++) once();
const c0 = process.cpuUsage();
for (let i = 0; i < n; i++) once();
const u = process.cpuUsage(c0);
const ms = (u.user + u.system) / 1000;
// the steps of the last walk (read after the timing: a replayed walk makes them when read)
steps = last!.request.steps.length + last!.reply!.steps.length;
console.log(
  `${mode} pod-a → ${to}${capture ? ' (captures on)' : ''}${replay ? ' (flow cache, replayed)' : ''}${warm !== 300 ? ` after ${warm} warm-up walks` : ''}${podwalkFlags ? ' (podwalk V8 flags)' : ''}: ${n} walks, ${ms.toFixed(0)} ms CPU, ${((ms * 1000) / n).toFixed(1)} µs a walk, ` +
    `${((n * 1000) / ms).toFixed(0)} walks per CPU s`,
);
const result: WalkCpuResult = {
  mode,
  to,
  capture,
  ...(replay ? { replay, replayed: cache!.stats.replayed } : {}),
  warm,
  ...(podwalkFlags ? { podwalkFlags } : {}),
  walks: n,
  cpuMs: ms,
  steps,
};
console.log(RESULT_PREFIX + JSON.stringify(result));
