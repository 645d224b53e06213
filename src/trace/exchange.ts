/**
 * An exchange in time: the packets hosts send each other and the kernel's timers, on the
 * simulated clock, until the application has what it waits for or its deadline passes. The
 * emulated `ping` and `curl` run it between their own actions (a send every interval, a
 * timeout), so that what they print and the state they leave follow the kernel's timers. The
 * loop itself is the kernel's (kernel/exchange.ts runNetwork), which BIRD's sessions run on too.
 */
import type { Cluster } from '../cni/build.ts';
import { runNetwork } from '../kernel/exchange.ts';

/**
 * Let the exchange run until `done()` holds or the clock reaches `until` (µs), whichever comes
 * first; the clock then reads the time `done()` became true, or `until`.
 */
export function runUntil(c: Cluster, until: number, done: () => boolean = () => false): void {
  runNetwork(c.sockets, until, done);
}
