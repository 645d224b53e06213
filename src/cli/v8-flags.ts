/**
 * How the podwalk process asks V8 to compile. A command is short (a whole `podwalk doctor` of
 * 1,000 nodes is ~1.5 s of JavaScript), and much of its code runs hot only once: V8's optimizing
 * compiler (TurboFan, on worker threads, counted in the process's CPU time) spent ~40 % of a
 * whole doctor's CPU at 1,000 nodes × 30 pods (perf, bench/doctor-one.ts's command: ~0.65–1.1 s
 * of 1.6–2.6 s), most of it compiling what it had inlined into the hot functions. With a smaller
 * budget of inlined bytecode per compiled function (V8's default 920 bytes, here 200) the same
 * command compiles about a third less and its own JavaScript runs no slower (BENCHMARKS.md,
 * session 17, s17-doctor). Only how V8 compiles changes: the same code runs, with the same results.
 */
import { setFlagsFromString } from 'node:v8';

/** the V8 flags the podwalk process runs with */
export const PODWALK_V8_FLAGS = ['--max-inlined-bytecode-size-cumulative=200'] as const;

/**
 * Set PODWALK_V8_FLAGS in this process: before the commands' code runs hot (the flags are read
 * when a function is compiled, so code compiled before keeps what it was compiled with)
 */
export function setPodwalkV8Flags(): void {
  for (const f of PODWALK_V8_FLAGS) setFlagsFromString(f);
}
