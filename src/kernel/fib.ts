/**
 * IPv4 FIB: the main routing table of a network namespace, with Linux's selection rules:
 * longest prefix first, then lowest metric (priority); routes whose device is down are gone
 * (Linux flushes IPv4 routes of a device set admin-down), routes on a carrier-down device are
 * marked linkdown and still used, as with the default ignore_routes_with_linkdown=0.
 */
import { intToIp4, prefixMask } from '../wire/addr.ts';
import type { FibException } from './objects.ts';

/**
 * rtm_protocol, named as `ip route` prints it: rt_protos' names, and `80` for the number it has no
 * name for that felix gives its own routes in Calico's VXLAN mode (vxlan_mgr.go defaultVXLANProto)
 */
export const ROUTE_PROTOS = ['kernel', 'boot', 'static', 'bird', 'dhcp', '80'] as const;
export type RouteProto = (typeof ROUTE_PROTOS)[number];
export const ROUTE_SCOPES = ['global', 'link', 'host'] as const;
export type RouteScope = (typeof ROUTE_SCOPES)[number];
export const ROUTE_TYPES = ['unicast', 'blackhole', 'unreachable', 'prohibit'] as const;
export type RouteType = (typeof ROUTE_TYPES)[number];

export interface Route {
  /** network address as uint32 */
  dst: number;
  len: number;
  type: RouteType;
  /** gateway (nexthop) address, when the route goes via a router */
  via?: string;
  dev?: string;
  proto: RouteProto;
  scope: RouteScope;
  /** preferred source ("src" in ip route) */
  src?: string;
  metric: number;
  onlink: boolean;
  /** FIB nexthop exceptions learned for destinations behind this route (the PMTU cache) */
  exceptions?: FibException[];
}

export function routePrefix(r: Pick<Route, 'dst' | 'len'>): string {
  return r.len === 0 ? 'default' : r.len === 32 ? intToIp4(r.dst) : `${intToIp4(r.dst)}/${r.len}`;
}

/** One route as `ip route show` prints it (main table, without the table keyword). */
export function formatRoute(r: Route, linkdown = false): string {
  const parts: string[] = [];
  if (r.type !== 'unicast') parts.push(r.type);
  parts.push(routePrefix(r));
  if (r.via) parts.push('via', r.via);
  if (r.dev) parts.push('dev', r.dev);
  if (r.proto !== 'boot') parts.push('proto', r.proto);
  if (r.scope !== 'global') parts.push('scope', r.scope);
  if (r.src) parts.push('src', r.src);
  if (r.metric) parts.push('metric', String(r.metric));
  if (r.onlink) parts.push('onlink');
  if (linkdown) parts.push('linkdown');
  return parts.join(' ');
}

/** the routes of one prefix: the route, or the routes by metric when there are several (most prefixes have one) */
type Aliases = Route | Route[];

const asList = (v: Aliases | undefined): readonly Route[] =>
  v === undefined ? [] : Array.isArray(v) ? v : [v];

export class Fib {
  /** kept in the order `ip route show` lists them: by network address, longer prefixes first, then metric */
  private routes: Route[] = [];
  /**
   * the routes by prefix length, then network address, several by metric; a length gets its map
   * when a route of that length is added (most namespaces use two or three of the 33)
   */
  private byLen: (Map<number, Aliases> | undefined)[] = [];
  /** the lengths that have a map, longest first: what lookup walks */
  private lens: number[] = [];

  list(): readonly Route[] {
    return this.routes;
  }

  find(dst: number, len: number, metric?: number): Route | undefined {
    return asList(this.byLen[len]?.get(dst)).find((r) => metric === undefined || r.metric === metric);
  }

  /** the routes of one prefix (and metric, when given), in the order list() has them; a hash lookup, not a scan */
  aliases(dst: number, len: number, metric?: number): Route[] {
    const list = asList(this.byLen[len]?.get(dst));
    return metric === undefined ? [...list] : list.filter((r) => r.metric === metric);
  }

  add(r: Route): void {
    // Linux lists the main table in trie order: by network address, longer prefix first on ties (checked on 6.18)
    const routes = this.routes;
    const last = routes[routes.length - 1];
    // routes are mostly added in that order already (a daemon's lease after lease): append
    if (!last || cmp(last, r) <= 0) routes.push(r);
    else {
      let lo = 0;
      let hi = routes.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (cmp(routes[mid], r) <= 0) lo = mid + 1;
        else hi = mid;
      }
      routes.splice(lo, 0, r);
    }
    let bucket = this.byLen[r.len];
    if (!bucket) {
      bucket = new Map();
      this.byLen[r.len] = bucket;
      this.lens.push(r.len);
      this.lens.sort((a, b) => b - a);
    }
    const v = bucket.get(r.dst);
    if (v === undefined) bucket.set(r.dst, r);
    else {
      const list = Array.isArray(v) ? v : [v];
      list.push(r);
      list.sort((a, b) => a.metric - b.metric);
      bucket.set(r.dst, list);
    }
  }

  remove(r: Route): void {
    const i = this.routes.indexOf(r);
    if (i >= 0) this.routes.splice(i, 1);
    this.unindex(r);
  }

  removeWhere(pred: (r: Route) => boolean): Route[] {
    const gone: Route[] = [];
    const keep: Route[] = [];
    for (const r of this.routes) (pred(r) ? gone : keep).push(r);
    if (!gone.length) return gone;
    // one pass over the table, not one per route removed (a device going down takes all its routes)
    this.routes = keep;
    for (const r of gone) this.unindex(r);
    return gone;
  }

  private unindex(r: Route): void {
    const bucket = this.byLen[r.len];
    const v = bucket?.get(r.dst);
    if (!bucket || v === undefined) return;
    const list = asList(v).filter((x) => x !== r);
    if (list.length === 0) bucket.delete(r.dst);
    else bucket.set(r.dst, list.length === 1 ? list[0] : list);
  }

  /**
   * Longest-prefix match. `usable` filters out routes whose nexthop is unusable (device gone or
   * down); Linux skips those and keeps looking at shorter prefixes.
   */
  lookup(addr: number, usable: (r: Route) => boolean = () => true): Route | undefined {
    for (const len of this.lens) {
      const bucket = this.byLen[len]!;
      if (bucket.size === 0) continue;
      const v = bucket.get((addr & prefixMask(len)) >>> 0);
      if (v === undefined) continue;
      if (!Array.isArray(v)) {
        if (usable(v)) return v;
        continue;
      }
      for (const r of v) if (usable(r)) return r;
    }
    return undefined;
  }
}

/** trie order: by network address, longer prefix first on ties, then metric */
function cmp(a: Route, b: Route): number {
  return a.dst - b.dst || b.len - a.len || a.metric - b.metric;
}
