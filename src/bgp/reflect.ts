/**
 * Route reflection (RFC 4456) and eBGP as BIRD 2.0.12 do it, for the sessions of one node's BIRD:
 * what it exports to one session of a route it learned over another.
 *
 * - bgp_preexport: never back to the session it came from; between two iBGP sessions only when
 *   one of them is an `rr client`; not to a client whose cluster ID the route's CLUSTER_LIST holds.
 * - Calico's export filter (calico_export_to_bgp_peers with calico_aggr): a prefix of the pool, not
 *   strictly inside one of the node's own blocks.
 * - bgp_update_attrs, toward iBGP: NEXT_HOP kept; between two iBGP sessions (reflection)
 *   ORIGINATOR_ID set to the BGP identifier of the peer it came from unless present, CLUSTER_LIST:
 *   the source session's cluster ID prepended when it is a client, then the destination's when it
 *   is a client of another cluster ID; LOCAL_PREF 100 when the route has none (one learned over
 *   eBGP, whose LOCAL_PREF was discarded).
 * - toward eBGP: the local AS prepended to AS_PATH (into its first AS_SEQUENCE while it has fewer
 *   than 255, else as a new one: as_path_prepend2); MULTI_EXIT_DISC, LOCAL_PREF, ORIGINATOR_ID and
 *   CLUSTER_LIST removed (none is set by Calico's filter); NEXT_HOP (bgp_update_next_hop_ip) kept
 *   when both sessions are direct (single-hop on the same interface), else the route's gateway
 *   when the destination is direct and the gateway on its interface (bgp_use_gateway), else the
 *   session's own address (next hop self). Every node session is on eth0.
 * - ADD-PATH (`add paths on`): the channel exports every route of a network (RA_ANY), each under
 *   its own path id (BIRD: the route source's global id; here numbered per node from 2 in the
 *   order the sources first appear, 1 being the node's own routes).
 *
 * Costs O(1) per route and destination session: a route learned once goes to at most every other
 * session of the node (O(sessions × routes) for a reflector).
 */
import { bgpAttrCode, type AsPathSegment, type BgpAttr } from '../wire/bgp.ts';
import { inPrefix, ip4ToInt, parseCidr, type Cidr } from '../wire/addr.ts';
import type { ExportRoute, PeerConfig, PeerRoute } from './fsm.ts';

/** the session a route came over, or goes to: its configuration and the peer's BGP identifier */
export interface ReflectSession {
  config: PeerConfig;
  /** the peer's BGP identifier from its OPEN */
  remoteId?: string;
}

export class Reflector {
  private readonly pool: Cidr;
  private readonly blocks = new Map<string, Cidr[]>();
  /** per node, the path id of each route source (`peerAddress#pathId`) */
  private readonly pathIds = new Map<string, Map<string, number>>();
  /** the attributes a route leaves with, shared by the routes of one received UPDATE */
  private readonly attrsOut = new WeakMap<BgpAttr[], Map<string, BgpAttr[]>>();

  constructor(
    pool: string,
    blocksOf: ReadonlyMap<string, readonly string[]>,
    /** the gateway of the node's route to a BGP next hop (BIRD's resolved nh.gw), if on its subnet */
    private readonly gatewayOf: (node: string, nextHop: string) => string | undefined = () => undefined,
  ) {
    this.pool = parseCidr(pool);
    for (const [node, bs] of blocksOf)
      this.blocks.set(
        node,
        bs.map((b) => parseCidr(b)),
      );
  }

  /** the path id the node gives routes of this source */
  pathId(node: string, from: ReflectSession, r: PeerRoute): number {
    let m = this.pathIds.get(node);
    if (!m) this.pathIds.set(node, (m = new Map()));
    const key = `${from.config.peerAddress}#${r.pathId ?? 0}`;
    let id = m.get(key);
    if (id === undefined) m.set(key, (id = m.size + 2));
    return id;
  }

  /** whether the calico filter and bgp_preexport let the route learned over `from` go to `to` */
  passes(node: string, from: ReflectSession, to: ReflectSession, r: PeerRoute): boolean {
    if (from === to) return false;
    const src = from.config;
    const dst = to.config;
    const internal = src.localAs === src.peerAs && dst.localAs === dst.peerAs;
    if (internal && src.rrClusterId === undefined && dst.rrClusterId === undefined) return false;
    if (dst.rrClusterId !== undefined) {
      const cl = r.attrs.find((a) => a.kind === 'cluster-list');
      if (cl?.kind === 'cluster-list' && cl.clusterList.includes(dst.rrClusterId)) return false;
    }
    const c = parseCidr(r.prefix);
    for (const b of this.blocks.get(node) ?? []) {
      if (b.addr === c.addr && b.len === c.len) return true;
      if (c.len >= b.len && inPrefix(c.addr, b.addr, b.len)) return false;
    }
    return c.len >= this.pool.len && inPrefix(c.addr, this.pool.addr, this.pool.len);
  }

  /** the route as it leaves toward `to` (call only when `passes`) */
  exported(node: string, from: ReflectSession, to: ReflectSession, r: PeerRoute): ExportRoute {
    const src = from.config.rrClusterId;
    const dst = to.config.rrClusterId;
    const external = to.config.localAs !== to.config.peerAs;
    const nextHop = external ? this.nextHopTo(node, from, to, r) : '';
    const key = external
      ? `e|${to.config.localAs}|${nextHop}`
      : `${from.remoteId ?? ''}|${src ?? ''}|${dst ?? ''}|${from.config.localAs === from.config.peerAs}`;
    let byKey = this.attrsOut.get(r.attrs);
    if (!byKey) this.attrsOut.set(r.attrs, (byKey = new Map()));
    let attrs = byKey.get(key);
    if (!attrs && external) {
      attrs = r.attrs
        .filter((a) => !DROPPED_TO_EBGP.has(a.kind))
        .map((a): BgpAttr => {
          if (a.kind === 'as-path')
            return { kind: 'as-path', segments: prepend(a.segments, to.config.localAs) };
          if (a.kind === 'next-hop') return { kind: 'next-hop', nextHop };
          return a;
        });
      byKey.set(key, attrs);
    } else if (!attrs && from.config.localAs !== from.config.peerAs) {
      // learned over eBGP, to iBGP: as it came, with the LOCAL_PREF BIRD gave it on import
      attrs = r.attrs.some((a) => a.kind === 'local-pref')
        ? r.attrs
        : [...r.attrs, { kind: 'local-pref' as const, localPref: 100 }].sort(
            (a, b) => bgpAttrCode(a) - bgpAttrCode(b),
          );
      byKey.set(key, attrs);
    } else if (!attrs) {
      const oid = r.attrs.find((a) => a.kind === 'originator-id');
      const cl = r.attrs.find((a) => a.kind === 'cluster-list');
      let list = cl?.kind === 'cluster-list' ? cl.clusterList : [];
      if (src !== undefined) list = [src, ...list];
      if (dst !== undefined && dst !== src) list = [dst, ...list];
      attrs = [
        ...r.attrs.filter((a) => a.kind !== 'originator-id' && a.kind !== 'cluster-list'),
        oid ?? { kind: 'originator-id', originatorId: from.remoteId ?? from.config.peerAddress },
        ...(list.length ? [{ kind: 'cluster-list' as const, clusterList: list }] : []),
      ].sort((a, b) => bgpAttrCode(a) - bgpAttrCode(b));
      byKey.set(key, attrs);
    }
    return { prefix: r.prefix, pathId: this.pathId(node, from, r), attrs };
  }

  /** bgp_update_next_hop_ip toward an eBGP session: kept, the gateway, or self */
  private nextHopTo(node: string, from: ReflectSession, to: ReflectSession, r: PeerRoute): string {
    if (!to.config.direct) return to.config.localAddress;
    if (from.config.direct) return r.nextHop;
    return this.gatewayOf(node, r.nextHop) ?? to.config.localAddress;
  }
}

/** what BIRD does not send to an eBGP peer (bgp_update_attrs, the attributes' export hooks) */
const DROPPED_TO_EBGP = new Set<BgpAttr['kind']>(['med', 'local-pref', 'originator-id', 'cluster-list']);

/** as_path_prepend2 with AS_SEQUENCE: into the first segment when it is a sequence of fewer than 255 */
function prepend(segments: readonly AsPathSegment[], as: number): AsPathSegment[] {
  const [first, ...rest] = segments;
  if (first?.kind === 'sequence' && first.asns.length < 255)
    return [{ kind: 'sequence', asns: [as, ...first.asns] }, ...rest];
  return [{ kind: 'sequence', asns: [as] }, ...segments];
}

/** BGP identifiers compare as unsigned 32-bit numbers (RFC 4271 6.8) */
export function bgpIdAbove(a: string, b: string): boolean {
  return ip4ToInt(a) > ip4ToInt(b);
}
