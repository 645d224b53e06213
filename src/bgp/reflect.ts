/**
 * Route reflection (RFC 4456) as BIRD 2.0.12 does it, for the sessions of one node's BIRD:
 * what it exports to one session of a route it learned over another.
 *
 * - bgp_preexport: never back to the session it came from; between two iBGP sessions only when
 *   one of them is an `rr client`; not to a client whose cluster ID the route's CLUSTER_LIST holds.
 * - Calico's export filter (calico_export_to_bgp_peers with calico_aggr): a prefix of the pool, not
 *   strictly inside one of the node's own blocks.
 * - bgp_update_attrs: NEXT_HOP kept (iBGP), ORIGINATOR_ID set to the BGP identifier of the peer
 *   it came from unless present, CLUSTER_LIST: the source session's cluster ID prepended when it is
 *   a client, then the destination's when it is a client of another cluster ID.
 * - ADD-PATH (`add paths on`): the channel exports every route of a network (RA_ANY), each under
 *   its own path id (BIRD: the route source's global id; here numbered per node from 2 in the
 *   order the sources first appear, 1 being the node's own routes).
 *
 * Costs O(1) per route and destination session: a route learned once goes to at most every other
 * session of the node (O(sessions × routes) for a reflector).
 */
import { bgpAttrCode, type BgpAttr } from '../wire/bgp.ts';
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

  constructor(pool: string, blocksOf: ReadonlyMap<string, readonly string[]>) {
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
    const key = `${from.remoteId ?? ''}|${src ?? ''}|${dst ?? ''}`;
    let byKey = this.attrsOut.get(r.attrs);
    if (!byKey) this.attrsOut.set(r.attrs, (byKey = new Map()));
    let attrs = byKey.get(key);
    if (!attrs) {
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
}

/** BGP identifiers compare as unsigned 32-bit numbers (RFC 4271 6.8) */
export function bgpIdAbove(a: string, b: string): boolean {
  return ip4ToInt(a) > ip4ToInt(b);
}
