/**
 * The route cache of IPv4 since 3.6: FIB nexthop exceptions (struct fib_nh_exception), here the
 * path MTU learned from ICMP fragmentation needed (__ip_rt_update_pmtu, net/ipv4/route.c). An
 * exception hangs off the route its destination matched (Route.exceptions, as fnhe hangs off
 * fib_nh), so it goes with its route when the route is deleted or replaced; it expires after
 * net.ipv4.route.mtu_expires (600 s). Local output uses it (dst_mtu); forwarding does not
 * (ip_dst_mtu_maybe_forward).
 */
import type { Route } from './fib.ts';
import type { FibException, Netns } from './objects.ts';

/** the live exception for `dst` on route `r` at `now`; an expired one is removed */
export function pmtuException(ns: Netns, dst: string, r: Route, now: number): FibException | undefined {
  const list = r.exceptions;
  if (!list) return undefined;
  const i = list.findIndex((e) => e.dst === dst);
  if (i < 0) return undefined;
  if (list[i].expires <= now) {
    list.splice(i, 1);
    return undefined;
  }
  return list[i];
}

/** every exception still alive at `now` (ip route show cache), route by route */
export function liveExceptions(ns: Netns, now: number): { route: Route; e: FibException }[] {
  const out: { route: Route; e: FibException }[] = [];
  for (const route of ns.fib.list()) {
    if (!route.exceptions) continue;
    route.exceptions = route.exceptions.filter((e) => e.expires > now);
    for (const e of route.exceptions) out.push({ route, e });
  }
  return out;
}

/**
 * __ip_rt_update_pmtu: lower the path MTU towards `dst` (reached by route `r` over a device of
 * MTU `devMtu`) to `mtu`. Never raises it; below min_pmtu the MTU is locked at min_pmtu; an
 * unchanged MTU is refreshed only in the second half of its life. Returns the exception, or
 * undefined when nothing changed.
 */
export function updatePmtu(
  ns: Netns,
  dst: string,
  r: Route,
  devMtu: number,
  mtu: number,
  now: number,
): FibException | undefined {
  const old = pmtuException(ns, dst, r, now);
  const current = old ? old.mtu : devMtu;
  if (current < mtu) return undefined;
  const minPmtu = ns.sysctlNum('net.ipv4.route.min_pmtu');
  const expiresUs = ns.sysctlNum('net.ipv4.route.mtu_expires') * 1e6;
  let locked = false;
  if (mtu < minPmtu) {
    locked = true;
    mtu = Math.min(current, minPmtu);
  }
  if (old && old.mtu === mtu && !locked && now < old.expires - expiresUs / 2) return undefined;
  // a new or changed exception changes the answer of a lookup of `dst` (its expiry, at a time, is
  // no write: a removal of an expired one when it is read changes no answer)
  ns.routingChanged();
  if (old) {
    old.mtu = mtu;
    old.locked = locked;
    old.expires = now + expiresUs;
    return old;
  }
  const e: FibException = { dst, mtu, expires: now + expiresUs, locked };
  (r.exceptions ??= []).push(e);
  return e;
}
