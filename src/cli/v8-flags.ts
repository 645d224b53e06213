/**
 * How the podwalk process asks V8 to compile. A command is short (a whole `podwalk doctor` of
 * 1,000 nodes is ~1.5 s of JavaScript), and much of its code runs hot only once: V8's optimizing
 * compiler (TurboFan, on worker threads, counted in the process's CPU time) spent ~40 % of a
 * whole doctor's CPU at 1,000 nodes × 30 pods (perf, bench/doctor-one.ts's command: ~0.65–1.1 s
 * of 1.6–2.6 s), most of it compiling what it had inlined into the hot functions. With a smaller
 * budget of inlined bytecode per compiled function (V8's default 920 bytes, here 200) the same
 * command compiles about a third less and its own JavaScript runs no slower (BENCHMARKS.md,
 * session 17, s17-doctor).
 *
 * The heap grows tenfold past what a full collection (mark-compact) leaves before the next one
 * (V8 picks a factor of at most 4 by its GC's speed). Building a cluster keeps nearly all it
 * allocates: a 1,000-node doctor's heap grows from ~24 MB at the first full collection (while
 * the cluster file is read) to ~120 MB built, and with V8's factor a second full collection
 * marked that whole live cluster near the build's end to free ~20 MB (~70 ms on the main thread
 * and its concurrent marking on the workers, ~10 % of a fresh `podwalk doctor`'s CPU:
 * BENCHMARKS.md, session 19, s19-doctor). Peak RSS the same at 5,000 nodes (714 / 718 MB), +8 %
 * for a 1,000-node `podwalk matrix` (793 → 860 MB). Only when V8 compiles and collects changes:
 * the same code runs, with the same results.
 */
import { setFlagsFromString } from 'node:v8';

/** the V8 flags the podwalk process runs with */
export const PODWALK_V8_FLAGS = [
  '--max-inlined-bytecode-size-cumulative=200',
  '--heap-growing-percent=900',
] as const;

/**
 * Set PODWALK_V8_FLAGS in this process: before the commands' code runs hot (the flags are read
 * when a function is compiled, so code compiled before keeps what it was compiled with)
 */
export function setPodwalkV8Flags(): void {
  for (const f of PODWALK_V8_FLAGS) setFlagsFromString(f);
}
