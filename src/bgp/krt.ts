/**
 * BIRD's routing table and its kernel protocol: the routes the protocols of one BIRD put in its
 * table (static, direct, BGP), the best of each prefix (Loc-RIB), and what the kernel protocol
 * writes of it into the kernel's main table over netlink, as sysdep/unix/krt.c and
 * sysdep/linux/netlink.c do it (projectcalico/bird, BIRD 1.6's krt_replace_rte and nl_send_route):
 * a route that changes is deleted (RTM_DELROUTE) and the new one added (RTM_NEWROUTE,
 * NLM_F_CREATE|NLM_F_EXCL), with rtm_protocol RTPROT_BIRD (`proto bird`) and RTA_PRIORITY only when
 * the metric is not 0; a withdrawn one is deleted. A route the kernel refuses is left out (BIRD logs
 * "Netlink: ..." and flags it KRF_SYNC_ERROR). Calico's BIRD 1.6 fork sets no metric; BIRD 2's kernel
 * protocol has `metric 32` by default (test/fixtures/bgp/manifest.json).
 *
 * Everything goes through the one netlink API: the kernel knows only routes of `proto bird`.
 */
import { NetlinkError, NLM_ADD, routeAdd, routeDel } from '../kernel/netlink.ts';
import type { Netns } from '../kernel/objects.ts';
import type { Route } from '../kernel/fib.ts';
import { cidrText, inPrefix, ip4ToInt, networkOf, parseCidr } from '../wire/addr.ts';
import type { PeerRoute } from './fsm.ts';

/**
 * Where a route sends packets, as the kernel is told (krt_capable: unicast with a device, blackhole,
 * or unreachable: a BGP route whose next hop nothing resolves, which BIRD keeps and writes so)
 */
export type KernelDest =
  | { type: 'blackhole' }
  | { type: 'unreachable' }
  | { type: 'unicast'; dev: string; via?: string; onlink?: boolean };

/** A route in BIRD's table (master4): its protocol, its preference, and the BGP attributes that rank it. */
export interface RibRoute {
  prefix: string;
  /** the BIRD protocol that put it there: static1, direct1, Mesh_192_168_1_11 */
  proto: string;
  /** BIRD's preference: direct 240, static 200, BGP 100 */
  preference: number;
  dest: KernelDest;
  bgp?: { localPref: number; asPathLength: number; origin: number; neighbor: string };
  /** learned from the kernel by the kernel protocol itself: never written back (krt_preexport) */
  fromKernel?: boolean;
}

export const PREF_DIRECT = 240;
/** the kernel protocol's routes learned from the kernel (`learn`) */
export const PREF_KERNEL = 10;
export const PREF_STATIC = 200;
export const PREF_BGP = 100;

/** BIRD's kernel protocol for one namespace: what it has written (the `proto bird` routes it owns) */
export interface KernelProtocol {
  /** RTA_PRIORITY of every route it writes (0: none) */
  metric: number;
  installed: Map<string, KernelDest>;
}

export function kernelProtocol(metric: number): KernelProtocol {
  return { metric, installed: new Map() };
}

/** rte_better, then bgp_rte_better for two BGP routes: higher LOCAL_PREF, shorter AS_PATH, lower ORIGIN, lower neighbor address */
function better(a: RibRoute, b: RibRoute): boolean {
  if (a.preference !== b.preference) return a.preference > b.preference;
  if (a.bgp && b.bgp) {
    if (a.bgp.localPref !== b.bgp.localPref) return a.bgp.localPref > b.bgp.localPref;
    if (a.bgp.asPathLength !== b.bgp.asPathLength) return a.bgp.asPathLength < b.bgp.asPathLength;
    if (a.bgp.origin !== b.bgp.origin) return a.bgp.origin < b.bgp.origin;
    return ip4ToInt(a.bgp.neighbor) < ip4ToInt(b.bgp.neighbor);
  }
  return false;
}

/** The best route of each prefix (in the order the prefixes first appear). */
export function locRib(routes: readonly RibRoute[]): RibRoute[] {
  const best = new Map<string, RibRoute>();
  for (const r of routes) {
    const cur = best.get(r.prefix);
    if (!cur || better(r, cur)) best.set(r.prefix, r);
  }
  return [...best.values()];
}

/**
 * The direct protocol (`interface -"cali*", -"kube-ipvs*", "*"`): the prefix of every address of
 * an up device whose name the pattern accepts. Loopback addresses have host scope, which the direct
 * protocol does not take.
 */
export function directRoutes(ns: Netns, proto = 'direct1'): RibRoute[] {
  const out: RibRoute[] = [];
  for (const dev of ns.links.values()) {
    if (!dev.up || dev.type === 'loopback' || /^(cali|kube-ipvs)/.test(dev.name)) continue;
    for (const a of dev.addrs) {
      if (a.scope === 'host') continue;
      const prefix = cidrText({ addr: networkOf({ addr: ip4ToInt(a.ip), len: a.len }), len: a.len });
      out.push({ prefix, proto, preference: PREF_DIRECT, dest: { type: 'unicast', dev: dev.name } });
    }
  }
  return out;
}

/**
 * The kernel protocol's `learn`: the main table's routes it did not write, as nl_parse_route sorts
 * them: `proto kernel` is skipped, `proto bird` is its own, every other protocol (boot, static…) is an
 * alien route BIRD takes into its table: a workload's `/32 dev cali…` route, say.
 */
export function kernelRoutes(ns: Netns, proto = 'kernel1'): RibRoute[] {
  const out: RibRoute[] = [];
  for (const r of ns.fib.list()) {
    if (r.proto === 'kernel' || r.proto === 'bird') continue;
    const prefix = cidrText({ addr: r.dst, len: r.len });
    const dest: KernelDest | undefined =
      r.type === 'blackhole'
        ? { type: 'blackhole' }
        : r.type === 'unicast' && r.dev
          ? { type: 'unicast', dev: r.dev, ...(r.via ? { via: r.via } : {}) }
          : undefined;
    if (dest) out.push({ prefix, proto, preference: PREF_KERNEL, dest, fromKernel: true });
  }
  return out;
}

/**
 * Calico's export filter toward its BGP peers (calico_export_to_bgp_peers with calico_aggr): the
 * node's own block itself, nothing more specific inside it, and any other prefix of the pool (an
 * address borrowed from another node's block). Routes learned over iBGP are not passed on to
 * iBGP peers (RFC 4271 9.2; the mesh has no route reflector).
 */
export function calicoExport(best: readonly RibRoute[], pool: string, blocks: readonly string[]): string[] {
  const p = parseCidr(pool);
  const own = blocks.map((b) => parseCidr(b));
  return best
    .filter((r) => !r.bgp)
    .map((r) => r.prefix)
    .filter((prefix) => {
      const c = parseCidr(prefix);
      if (own.some((b) => b.addr === c.addr && b.len === c.len)) return true;
      if (own.some((b) => c.len >= b.len && inPrefix(c.addr, b.addr, b.len))) return false;
      return c.len >= p.len && inPrefix(c.addr, p.addr, p.len);
    });
}

/**
 * The route of BIRD's table that resolves a BGP next hop (`gateway recursive`: what its direct and
 * kernel protocols took from the kernel, not its own routes); none: the route is unreachable
 */
export function nextHopRoute(ns: Netns, nextHop: string): Route | undefined {
  const hit = ns.fib.lookup(ip4ToInt(nextHop), (x) => x.proto !== 'bird' && x.type === 'unicast');
  return hit?.dev ? hit : undefined;
}

/**
 * What a BGP session's Adj-RIB-In puts in BIRD's table, each next hop resolved as `gateway
 * recursive` does it: through the kernel's table (what BIRD's kernel protocol learns), a next hop on
 * a connected subnet is the gateway itself, another one the gateway of the route that covers it.
 * A next hop nothing covers makes the route unreachable: it is left out.
 */
export function bgpRoutes(
  ns: Netns,
  proto: string,
  neighbor: string,
  adjIn: readonly PeerRoute[],
): RibRoute[] {
  const out: RibRoute[] = [];
  for (const r of adjIn) {
    const hit = nextHopRoute(ns, r.nextHop);
    if (!hit?.dev) continue;
    const origin = r.attrs.find((a) => a.kind === 'origin');
    const path = r.attrs.find((a) => a.kind === 'as-path');
    const lp = r.attrs.find((a) => a.kind === 'local-pref');
    out.push({
      prefix: r.prefix,
      proto,
      preference: PREF_BGP,
      dest: { type: 'unicast', dev: hit.dev, via: hit.via ?? r.nextHop },
      bgp: {
        localPref: lp?.kind === 'local-pref' ? lp.localPref : 100,
        asPathLength:
          path?.kind === 'as-path'
            ? path.segments.reduce((n, s) => n + (s.kind === 'set' ? 1 : s.asns.length), 0)
            : 0,
        origin: origin?.kind === 'origin' ? ['igp', 'egp', 'incomplete'].indexOf(origin.origin) : 0,
        neighbor,
      },
    });
  }
  return out;
}

const sameDest = (a: KernelDest, b: KernelDest) =>
  a.type === b.type &&
  (a.type !== 'unicast' ||
    (b.type === 'unicast' && a.dev === b.dev && a.via === b.via && !!a.onlink === !!b.onlink));

function del(ns: Netns, krt: KernelProtocol, prefix: string, d: KernelDest): Route | undefined {
  try {
    return routeDel(ns, prefix, {
      type: d.type,
      proto: 'bird',
      metric: krt.metric,
      ...(d.type === 'unicast' ? { dev: d.dev, via: d.via } : {}),
    });
  } catch (e) {
    // gone already (someone deleted it): nothing to do
    if (!(e instanceof NetlinkError)) throw e;
    return undefined;
  }
}

/**
 * Brings the kernel's main table in line with `best` (the Loc-RIB; the export filter of Calico,
 * calico_kernel_programming, accepts every route): withdrawn routes deleted, changed ones deleted
 * and added again, new ones added. Returns what changed and what the kernel refused.
 */
export function krtSync(
  ns: Netns,
  krt: KernelProtocol,
  best: readonly RibRoute[],
): { added: Route[]; removed: Route[]; refused: { prefix: string; errno: string }[] } {
  const res = {
    added: [] as Route[],
    removed: [] as Route[],
    refused: [] as { prefix: string; errno: string }[],
  };
  const exported = best.filter((r) => !r.fromKernel);
  const want = new Map(exported.map((r) => [r.prefix, r.dest]));
  for (const [prefix, d] of [...krt.installed]) {
    const w = want.get(prefix);
    if (w && sameDest(w, d)) continue;
    const gone = del(ns, krt, prefix, d);
    if (gone) res.removed.push(gone);
    krt.installed.delete(prefix);
  }
  for (const r of exported) {
    if (krt.installed.has(r.prefix)) continue;
    try {
      const added = routeAdd(ns, {
        prefix: r.prefix,
        type: r.dest.type,
        ...(r.dest.type === 'unicast' ? { dev: r.dest.dev, via: r.dest.via, onlink: r.dest.onlink } : {}),
        proto: 'bird',
        ...(krt.metric ? { metric: krt.metric } : {}),
        nl: NLM_ADD,
      });
      krt.installed.set(r.prefix, r.dest);
      res.added.push(added);
    } catch (e) {
      if (!(e instanceof NetlinkError)) throw e;
      res.refused.push({ prefix: r.prefix, errno: e.code });
    }
  }
  return res;
}

/** BIRD's name of the session with a peer: Mesh_192_168_1_11 */
export function meshProtocolName(peer: string): string {
  return `Mesh_${peer.split('.').join('_')}`;
}
