/**
 * The two ICMP rate limits of icmp_send (net/ipv4/icmp.c), per network namespace:
 *  - icmpv4_global_allow → icmp_global_allow: a token bucket of icmp_msgs_burst credits refilled
 *    at icmp_msgs_per_sec, for the types of icmp_ratemask (fragmentation needed never);
 *  - icmpv4_xrlim_allow → inet_peer_xrlim_allow (net/ipv4/inetpeer.c): per destination, one
 *    token per icmp_ratelimit ms, bursts of XRLIM_BURST_FACTOR (6); a new peer starts full;
 *  - and before them, for a packet that has no route, ip_error's own draw on the same peer's
 *    tokens (route.error_cost, route.error_burst).
 * icmp_global_consume takes 0, 1 or 2 credits at random; the model takes 1, the mean.
 *
 * Every use of a bucket (the netns-wide one when the type is limited, a peer's) moves the
 * namespace's state generation (Netns.stateGeneration): its answer depends on the tokens, which
 * the use takes and the clock refills, so a walk that asked one is never replayed by generations.
 */
import type { IcmpPeer, Netns } from './objects.ts';

const XRLIM_BURST_FACTOR = 6;
const NR_ICMP_TYPES = 18;
const HZ_US = 1_000_000;
/** route.error_cost and error_burst are jiffies; the kernel here has CONFIG_HZ 250 */
const JIFFY_US = 4000;

/** icmpv4_mask_allow: true when the type is never limited */
function maskAllow(ns: Netns, type: number, code: number): boolean {
  if (type > NR_ICMP_TYPES) return true;
  if (type === 3 && code === 4) return true; // don't limit PMTU discovery
  return !((1 << type) & ns.sysctlNum('net.ipv4.icmp_ratemask'));
}

/**
 * icmpv4_global_allow: 'free' (the type is not limited, nor per destination), 'limited' (allowed;
 * the per-destination limit applies), or false (over the netns-wide limit).
 */
export function icmpGlobalAllow(
  ns: Netns,
  type: number,
  code: number,
  now: number,
): 'free' | 'limited' | false {
  if (maskAllow(ns, type, code)) return 'free';
  ns.stateChanged();
  const g = ns.icmpGlobal;
  if (g.credit > 0) return 'limited';
  const delta = Math.min(now - g.stamp, HZ_US);
  if (delta < HZ_US / 50) return false;
  const incr = Math.floor((ns.sysctlNum('net.ipv4.icmp_msgs_per_sec') * delta) / HZ_US);
  if (!incr) return false;
  g.stamp = now;
  g.credit = Math.min(g.credit + incr, ns.sysctlNum('net.ipv4.icmp_msgs_burst'));
  return 'limited';
}

/** icmp_global_consume */
export function icmpGlobalConsume(ns: Netns): void {
  ns.stateChanged();
  ns.icmpGlobal.credit -= 1;
}

/** inet_getpeer: rate_tokens 0, rate_last 60 s ago, so that the first refill fills the bucket */
function peer(ns: Netns, ip: string, now: number): IcmpPeer {
  ns.stateChanged();
  let p = ns.icmpPeers.find((x) => x.ip === ip);
  if (!p) {
    p = { ip, tokens: 0, last: now - 60 * HZ_US };
    ns.own('icmpPeers').push(p);
  }
  return p;
}

/**
 * ip_error (net/ipv4/route.c): a packet the router cannot route draws from the same peer's
 * tokens first, route.error_cost per error up to route.error_burst; without a token the packet
 * is dropped with no ICMP at all and no counter.
 */
export function ipErrorAllow(ns: Netns, src: string, now: number): boolean {
  const p = peer(ns, src, now);
  const cost = ns.sysctlNum('net.ipv4.route.error_cost') * JIFFY_US;
  p.tokens = Math.min(p.tokens + (now - p.last), ns.sysctlNum('net.ipv4.route.error_burst') * JIFFY_US);
  p.last = now;
  if (p.tokens >= cost) {
    p.tokens -= cost;
    return true;
  }
  return false;
}

/** inet_peer_xrlim_allow for the peer `dst`, with timeout icmp_ratelimit */
export function icmpPeerAllow(ns: Netns, dst: string, now: number): boolean {
  const timeout = ns.sysctlNum('net.ipv4.icmp_ratelimit') * 1000;
  if (!timeout) return true;
  const p = peer(ns, dst, now);
  const delta = now - p.last;
  if (delta) {
    p.last = now;
    p.tokens = Math.min(p.tokens + delta, XRLIM_BURST_FACTOR * timeout);
  }
  if (p.tokens >= timeout) {
    p.tokens -= timeout;
    return true;
  }
  return false;
}
