/**
 * An exchange in time: the packets hosts send each other and the kernel's timers, on the
 * simulated clock, until the application has what it waits for or its deadline passes. The
 * emulated `ping` and `curl` run it between their own actions (a send every interval, a
 * timeout), so that what they print and the state they leave follow the kernel's timers.
 *
 * The latency model, deterministic: a device hop takes 4 µs (HOP_US in the datapath), a host
 * answers a packet GAP_US (50 µs) after it arrived, kernel timers fire exactly when armed.
 */
import type { Cluster } from '../cni/build.ts';
import { Recorder } from '../kernel/world.ts';
import { GAP_US } from './walk.ts';

/** a fresh recorder for each packet or timer: the tools read state and sockets, not steps */
function fresh(c: Cluster): void {
  c.world.rec = new Recorder(c.world);
  c.stack.terminals = [];
}

/**
 * Let the exchange run until `done()` holds or the clock reaches `until` (µs), whichever comes
 * first; the clock then reads the time `done()` became true, or `until`.
 */
export function runUntil(c: Cluster, until: number, done: () => boolean = () => false): void {
  const w = c.world;
  const stack = c.stack;
  while (!done()) {
    if (stack.queue.length) {
      // the answer leaves after the host's reaction time; timers due before it fire first
      const at = w.now + GAP_US;
      if (at > until) {
        w.run(until);
        return;
      }
      fresh(c);
      w.run(at);
      const item = stack.queue.shift()!;
      fresh(c);
      c.sockets.send(w.ns(item.ns), item.pkt, item.role);
      continue;
    }
    const next = w.nextTimer();
    if (next === undefined || next > until) {
      w.run(until);
      return;
    }
    fresh(c);
    w.run(next);
  }
}
