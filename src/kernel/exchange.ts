/**
 * Hosts talking in time: the packets the hosts' sockets queued (answers, data, FINs) and the
 * kernel's and processes' timers, on the simulated clock, until a condition holds or a deadline
 * passes. The emulated `ping` and `curl` run it (through trace/exchange.ts) between their own
 * actions, and so does BIRD's session driver (src/bgp/session.ts) for its BGP sessions.
 *
 * The latency model, deterministic: a device hop takes 4 µs (HOP_US in the datapath), a host
 * answers a packet GAP_US (50 µs) after it arrived or after its previous send ended, whichever is
 * later: each host (network namespace) handles its own packets one at a time, in order, and
 * different hosts at the same time (kernel/sendqueue.ts); timers fire exactly when armed.
 */
import type { Sockets } from './sockets.ts';
import { Recorder } from './world.ts';

/** µs between one packet's walk and the next (the other end's reaction time) */
export const GAP_US = 50;

/** a fresh recorder for each packet or timer: whoever runs this reads state and sockets, not steps */
function fresh(s: Sockets, keeps = true): void {
  s.stack.w.rec = new Recorder(s.stack.w, keeps);
  s.stack.terminals = [];
}

/**
 * Let the hosts run until `done()` holds or the clock reaches `until` (µs), whichever comes
 * first; the clock then reads the time `done()` became true, or `until`.
 *
 * `quiet`: nobody reads the steps or captures of this run (a daemon's own traffic while the
 * cluster is built: quiesce clears the captures after it). The packets are walked by the same
 * code through the same hooks, routes, neighbours, counters and timers; only what a trace reader
 * needs is not kept: steps and their counter lists (the recorder does not keep them) and the
 * captured frames (capture is off for the run, and on again after it if it was).
 */
export function runNetwork(
  s: Sockets,
  until: number,
  done: () => boolean = () => false,
  opts: { quiet?: boolean } = {},
): void {
  const w = s.stack.w;
  if (!opts.quiet) return loop(s, until, done, true);
  const capture = w.capture;
  w.capture = false;
  try {
    loop(s, until, done, false);
  } finally {
    w.capture = capture;
    fresh(s);
  }
}

function loop(s: Sockets, until: number, done: () => boolean, keeps: boolean): void {
  const stack = s.stack;
  const w = stack.w;
  const q = stack.queue;
  while (!done()) {
    // the next packet leaves its host's reaction time after the host is ready for it (each host
    // its own CPU: hosts work at once); the clock never goes back, so one that would have left
    // while another host's packet was on its way leaves when that walk ends
    const next = q.peek();
    const at = next && Math.max(next.ready + GAP_US, w.now);
    const timer = w.nextTimer();
    if (at !== undefined && (timer === undefined || timer > at)) {
      if (at > until) {
        w.run(until);
        return;
      }
      fresh(s, keeps);
      w.run(at);
      const item = q.take()!;
      fresh(s, keeps);
      s.send(w.ns(item.ns), item.pkt, item.role);
      q.sent(item.ns, w.now);
      continue;
    }
    // timers due before (or with) the next packet fire first
    if (timer === undefined || timer > until) {
      w.run(until);
      return;
    }
    fresh(s, keeps);
    w.run(timer);
  }
}
