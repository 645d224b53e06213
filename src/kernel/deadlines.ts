/**
 * The clock deadlines of the entries whose answer to a lookup changes with the simulated clock
 * alone, with no write (so without Netns.stateGeneration or Netns.routeGeneration moving). A
 * reader that keeps an answer (a replay of a recorded walk) checks, for each such entry the walk
 * read, that the clock of its walk stays at or before the entry's deadline: until then a lookup of
 * the entry gives the answer it gave. Each function states the lookup it speaks for; the deadline
 * is a time of the World's clock, µs, and a lookup at a time t ≤ deadline gives the same answer
 * as at any other such time (the entry's fields as they are: a write to the entry moves the
 * state generation, and the deadline is asked again).
 *
 * The other entries a walk reads change only by writes, some of them a timer's:
 * - a neighbour's NUD state (REACHABLE → STALE → DELAY → PROBE → FAILED): neigh_timer_handler
 *   decides it when the entry's timer runs (Stack.neighTimer, through the table's update: the
 *   generation moves); a lookup (Stack.resolve) reads the state, never the clock. A replay must
 *   only not cross a timer that falls due (World.timers), which is true of every timer;
 * - the ICMP rate limits and `-m recent` lists read the clock, but every use of them moves the
 *   state generation (icmp-ratelimit.ts, netfilter/hooks.ts), so a walk that used one is never
 *   replayed by generations;
 * - conntrack entries (their expiry, checked at lookup) and connection sockets are the replay's
 *   own to reproduce and check, not counted here.
 */
import type { BridgeLink, FdbEntry, FibException, NeighEntry } from './objects.ts';

/** arp_tbl's locktime (net.ipv4.neigh.default.locktime 100, in USER_HZ: 1 s), µs */
export const ARP_LOCKTIME = 1_000_000;

/**
 * A bridge FDB entry, as the bridge's lookup (br_fdb_find → has_expired: Stack.fdbLookup) finds
 * it: a dynamic entry is found while the clock is at most its ageing time past its last update
 * (`now - updated > ageingTime` removes it); a local or static entry never ages (Infinity). A
 * walk's refresh of the entry (a frame from the address on the same port) moves `updated`, so the
 * deadline: ask it again after each walk.
 */
export function fdbDeadline(br: BridgeLink, e: FdbEntry): number {
  return e.state === 'dynamic' ? e.updated + br.ageingTime * 1e6 : Infinity;
}

/**
 * A PMTU exception on a route, as the output route lookup (pmtuException: routeOutput, ip route
 * get) finds it: live while the clock is before its expiry (`expires <= now` removes it). The
 * clock moves by whole µs, so the last such time is expires − 1.
 */
export function pmtuDeadline(e: FibException): number {
  return e.expires - 1;
}

/**
 * A neighbour entry's lock against an ARP reply that names another address (arp_process's
 * locktime: Stack's ARP receive): while the clock is at most ARP_LOCKTIME past the entry's last
 * change (`updated`), such a reply is ignored ("arp-locked"); after it, the reply overrides the
 * address. Only a walk that receives an ARP reply for a valid entry reads it.
 */
export function neighLockDeadline(n: NeighEntry): number {
  return n.updated + ARP_LOCKTIME;
}
