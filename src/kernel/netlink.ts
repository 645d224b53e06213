/**
 * The operations a control plane (CNI daemon, BIRD, a user's `ip` command) performs on kernel
 * state, with the kernel's side effects: an address brings its connected route; a device set
 * down loses its IPv4 routes; a veth peer going down drops carrier. Errors carry the kernel's
 * errno text, as `ip` prints it after "RTNETLINK answers: ".
 */
import { intToIp4, ip4ToInt, prefixMask } from '../wire/addr.ts';
import { routeKey, type Route, type RouteProto, type RouteScope, type RouteType } from './fib.ts';
import {
  newStats,
  type Address,
  type BridgeLink,
  type FdbEntry,
  type IpipLink,
  type Link,
  type Netns,
  type NudState,
  type VethLink,
  type VxlanFdbEntry,
  type VxlanLink,
} from './objects.ts';
import { KeyedTable } from './table.ts';
import type { World } from './world.ts';

export class NetlinkError extends Error {
  /**
   * `message` is the errno text (strerror); `extack` the kernel's extended-ack message when it
   * sends one, which `ip` prints instead as "Error: <extack>.". Older call sites put an extack
   * text into `message` (e.g. "Nexthop has invalid gateway"): the tools treat any message that is
   * not a strerror text as an extack.
   */
  constructor(
    message: string,
    readonly extack?: string,
  ) {
    super(message);
  }
}

const IFNAMSIZ = 15;

function checkName(ns: Netns, name: string): void {
  if (!name || name.length > IFNAMSIZ || /[\s/:]/.test(name) || name === '.' || name === '..')
    throw new NetlinkError(`"${name}" is not a valid ifname`);
  if (ns.links.has(name)) throw new NetlinkError('File exists');
}

function base(ns: Netns, name: string, mac: string, mtu: number) {
  checkName(ns, name);
  return {
    name,
    ifindex: ns.allocIfindex(),
    mac,
    mtu,
    up: false,
    addrs: [],
    noarp: false,
    stats: newStats(),
  };
}

export function addLoopback(ns: Netns): Link {
  const lo: Link = { ...base(ns, 'lo', '00:00:00:00:00:00', 65536), type: 'loopback', noarp: true, up: true };
  lo.addrs.push({ ip: '127.0.0.1', len: 8, scope: 'host' });
  ns.links.set('lo', lo);
  return lo;
}

export function addVethPair(
  a: Netns,
  aName: string,
  aMac: string,
  b: Netns,
  bName: string,
  bMac: string,
  mtu: number,
): [VethLink, VethLink] {
  checkName(a, aName);
  checkName(b, bName);
  const la: VethLink = { ...base(a, aName, aMac, mtu), type: 'veth', peer: { netns: b.name, name: bName } };
  a.links.set(aName, la);
  const lb: VethLink = { ...base(b, bName, bMac, mtu), type: 'veth', peer: { netns: a.name, name: aName } };
  b.links.set(bName, lb);
  return [la, lb];
}

function newFdb(): KeyedTable<FdbEntry> {
  return new KeyedTable<FdbEntry>((f) => f.mac);
}

export function addBridge(ns: Netns, name: string, mac: string, mtu: number): BridgeLink {
  const br: BridgeLink = { ...base(ns, name, mac, mtu), type: 'bridge', ageingTime: 300, fdb: newFdb() };
  br.fdb.add({ mac, port: name, state: 'local', updated: 0 });
  ns.links.set(name, br);
  return br;
}

export function addVxlan(
  ns: Netns,
  name: string,
  mac: string,
  mtu: number,
  o: { vni: number; local: string; dev: string; dstport: number; learning: boolean; udpcsum?: boolean },
): VxlanLink {
  const vx: VxlanLink = {
    ...base(ns, name, mac, mtu),
    type: 'vxlan',
    ...o,
    udpcsum: o.udpcsum ?? true,
    srcPortMin: 32768,
    srcPortMax: 60999,
    fdb: new KeyedTable<VxlanFdbEntry>((f) => f.mac),
  };
  ns.links.set(name, vx);
  return vx;
}

export function addIpip(ns: Netns, name: string, mtu: number): IpipLink {
  const t: IpipLink = {
    ...base(ns, name, '00:00:00:00:00:00', mtu),
    type: 'ipip',
    noarp: true,
    ttl: 0,
    pmtudisc: false,
  };
  ns.links.set(name, t);
  return t;
}

export function setMaster(ns: Netns, port: string, bridge: string): void {
  const p = ns.link(port);
  const br = ns.link(bridge);
  if (!p || !br) throw new NetlinkError('Cannot find device');
  if (br.type !== 'bridge') throw new NetlinkError('Operation not supported');
  p.master = bridge;
  br.fdb.add({ mac: p.mac, port, state: 'local', updated: 0 });
  bridgeMtuAdjust(ns, br);
}

/** br_mtu_auto_adjust: a bridge takes the smallest MTU of its ports, until a user sets its MTU */
function bridgeMtuAdjust(ns: Netns, br: Link): void {
  if (br.type !== 'bridge' || br.mtuSetByUser) return;
  let min = Infinity;
  for (const l of ns.links.values()) if (l.master === br.name) min = Math.min(min, l.mtu);
  if (min !== Infinity) br.mtu = min;
}

/** an address as a CNI plugin adds it (`ip addr add`, with the kernel's rules: addressAdd) */
export function addAddress(ns: Netns, devName: string, ip: string, len: number): void {
  addressAdd(ns, devName, ip, len);
}

export function setLinkUp(ns: Netns, name: string, up: boolean): void {
  const dev = ns.link(name);
  if (!dev) throw new NetlinkError(`Cannot find device "${name}"`);
  if (dev.up === up) return;
  dev.up = up;
  if (up) {
    // fib_add_ifaddr for each address: the primaries bring their prefix routes back
    dev.addrs.forEach((a, i) => {
      const r = isSecondary(dev, i) ? undefined : prefixRoute(dev, a.ip, a.len, a.ip);
      if (r) fibMagicAdd(ns, r);
    });
  } else {
    // fib_disable_ip: IPv4 routes through a device set down are removed
    // fib_sync_down_dev: routes of scope host (nexthop scope RT_SCOPE_NOWHERE) survive, like local routes
    ns.fib.removeWhere((r) => r.dev === name && r.scope !== 'host');
    // and all its neighbours are flushed, PERMANENT ones too (neigh_ifdown; only a carrier loss keeps them)
    ns.neigh.removeWhere((n) => n.dev === name);
    // a bridge port that goes down forgets the addresses it learned (br_fdb_delete_by_port)
    const br = dev.master ? ns.link(dev.master) : undefined;
    if (br?.type === 'bridge') br.fdb.removeWhere((f) => f.port === name && f.state === 'dynamic');
  }
}

export function setMtu(ns: Netns, name: string, mtu: number): void {
  const dev = ns.link(name);
  if (!dev) throw new NetlinkError(`Cannot find device "${name}"`);
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new NetlinkError('Invalid argument');
  dev.mtu = mtu;
  if (dev.type === 'bridge') dev.mtuSetByUser = true;
  else if (dev.master) bridgeMtuAdjust(ns, ns.link(dev.master)!);
}

export interface RouteSpec {
  prefix: string;
  type?: RouteType;
  via?: string;
  dev?: string;
  proto?: RouteProto;
  scope?: RouteScope;
  src?: string;
  metric?: number;
  onlink?: boolean;
}

/** a prefix as the kernel takes it: host bits set are refused (EINVAL), as fib_table_insert does */
function prefixOf(text: string): { dst: number; len: number } {
  const [a, l] = text === 'default' ? ['0.0.0.0', '0'] : text.split('/');
  const len = l === undefined ? 32 : Number(l);
  const addr = ip4ToInt(a);
  const dst = (addr & prefixMask(len)) >>> 0;
  if (dst !== addr) throw new NetlinkError('Invalid prefix for given prefix length.');
  return { dst, len };
}

export function toRoute(ns: Netns, s: RouteSpec): Route {
  const { dst, len } = prefixOf(s.prefix);
  const type = s.type ?? 'unicast';
  let dev = s.dev;
  if (type === 'unicast') {
    if (s.via && !dev) {
      // the kernel finds the device from the gateway's connected route
      const r = ns.fib.lookup(ip4ToInt(s.via), (x) => !x.via && !!x.dev);
      if (!r) throw new NetlinkError('Network is unreachable');
      dev = r.dev;
    }
    if (!dev) throw new NetlinkError('No such device');
    const link = ns.link(dev);
    if (!link) throw new NetlinkError('Cannot find device');
    if (s.via && !s.onlink) {
      // the gateway must be directly reachable through dev
      const r = ns.fib.lookup(ip4ToInt(s.via), (x) => !x.via && x.dev === dev);
      if (!r) throw new NetlinkError('Nexthop has invalid gateway');
    }
    if (!link.up && !s.onlink) throw new NetlinkError('Network is down');
  }
  return {
    dst,
    len,
    type,
    via: s.via,
    dev: type === 'unicast' ? dev : undefined,
    proto: s.proto ?? 'boot',
    scope: s.scope ?? (type === 'unicast' && !s.via ? 'link' : 'global'),
    src: s.src,
    metric: s.metric ?? 0,
    onlink: !!s.onlink,
  };
}

export function addRoute(ns: Netns, s: RouteSpec, replace = false): Route {
  const r = toRoute(ns, s);
  const old = ns.fib.find(r.dst, r.len, r.metric);
  if (old) {
    if (!replace) throw new NetlinkError('File exists');
    ns.fib.remove(old);
  }
  ns.fib.add(r);
  return r;
}

export function delRoute(ns: Netns, prefix: string, match: Partial<RouteSpec> = {}): Route {
  const { dst, len } = prefixOf(prefix);
  const r = ns.fib
    .list()
    .find(
      (x) =>
        x.dst === dst &&
        x.len === len &&
        (match.metric === undefined || x.metric === match.metric) &&
        (match.dev === undefined || x.dev === match.dev) &&
        (match.via === undefined || x.via === match.via) &&
        (match.proto === undefined || x.proto === match.proto),
    );
  if (!r) throw new NetlinkError('No such process');
  ns.fib.remove(r);
  return r;
}

export function addNeighbour(
  ns: Netns,
  ip: string,
  dev: string,
  lladdr: string | undefined,
  state: NudState,
  w: World,
  replace = false,
): void {
  if (!ns.link(dev)) throw new NetlinkError('Cannot find device');
  const old = ns.neighbour(ip, dev);
  if (old && !replace) throw new NetlinkError('File exists');
  if (old) ns.neigh.remove(old);
  ns.neigh.add({ ip, dev, lladdr, state, router: false, updated: w.now });
}

export function addVxlanFdb(ns: Netns, dev: string, mac: string, dst: string, append = false): void {
  const vx = ns.link(dev);
  if (!vx || vx.type !== 'vxlan') throw new NetlinkError('Cannot find device');
  if (!append && vx.fdb.get(mac)) throw new NetlinkError('File exists');
  vx.fdb.add({ mac, dst, permanent: true });
}

export { routeKey, intToIp4 };

/* ====================================================================================== */
/*  Kernel-exact mutations for the emulated `ip` and `bridge` (rtnetlink's checks, side   */
/*  effects and errors, checked against a real 6.18 kernel). The functions above keep     */
/*  their historical behaviour for the callers that use them; see each note.              */
/* ====================================================================================== */

const EINVAL = 'Invalid argument';
const EEXIST = 'File exists';
const ENOENT = 'No such file or directory';
const ESRCH = 'No such process';
const ENODEV = 'No such device';
const EOPNOTSUPP = 'Operation not supported';
const EADDRNOTAVAIL = 'Cannot assign requested address';

function ext(errno: string, extack: string): NetlinkError {
  return new NetlinkError(errno, extack);
}

/** the veth peer device, when its namespace is known */
export function vethPeer(w: World | undefined, l: Link): Link | undefined {
  if (l.type !== 'veth' || !l.peer || !w) return undefined;
  return w.netns.get(l.peer.netns)?.link(l.peer.name);
}

export function bridgePorts(ns: Netns, br: Link): Link[] {
  return [...ns.links.values()].filter((l) => l.master === br.name).sort((a, b) => a.ifindex - b.ifindex);
}

/**
 * netif_carrier_ok: a veth has carrier while both ends are up; a bridge while one of its ports
 * forwards (a bridge without ports keeps carrier); loopback, vxlan and ipip always have it.
 */
export function carrierOk(w: World | undefined, ns: Netns, l: Link): boolean {
  if (!l.up) return false;
  if (l.type === 'veth') {
    const peer = vethPeer(w, l);
    return peer ? peer.up : !l.peer;
  }
  if (l.type === 'bridge') {
    const ports = bridgePorts(ns, l);
    return ports.length === 0 || ports.some((p) => p.up && carrierOk(w, ns, p));
  }
  return true;
}

/** a bridge port forwards (STP off) while it, its carrier and its bridge are up; else it is "disabled" */
export function portForwarding(w: World | undefined, ns: Netns, port: Link): boolean {
  const br = port.master ? ns.link(port.master) : undefined;
  return !!br && br.up && port.up && carrierOk(w, ns, port);
}

function flushPortFdb(ns: Netns, port: Link): void {
  const br = port.master ? ns.link(port.master) : undefined;
  if (br?.type === 'bridge') br.fdb.removeWhere((e) => e.port === port.name && e.state === 'dynamic');
}

/**
 * `ip link set DEV up|down`: dev_change_flags with everything the kernel does around it.
 * Down: IPv4 routes through the device go (fib_disable_ip), and all its neighbours, PERMANENT
 * ones too (neigh_ifdown); a bridge port's learned FDB entries go (br_stp_disable_port), for a
 * bridge those of every port. Carrier follows: the veth peer loses it, and a bridge whose last
 * forwarding port went loses it; a device that loses carrier flushes its non-permanent
 * neighbours (neigh_carrier_down) and a port that stops forwarding its learned FDB entries.
 * Routes over a device without carrier stay, marked linkdown (derived when printed). A VXLAN
 * device going down loses its FDB entries that are neither permanent nor static (vxlan_stop).
 */
/** carrier transitions per device since it was created (IFLA_CARRIER_CHANGES), once the tools changed one */
const carrierTransitions = new WeakMap<Link, number>();

/**
 * IFLA_CARRIER_CHANGES: a veth or bridge starts without carrier (one transition, netif_carrier_off
 * at creation) and gains it when it comes up with a peer/port (another); loopback, VXLAN and IPIP
 * never change carrier. Later transitions are counted by linkSetUp.
 */
export function carrierChanges(w: World | undefined, ns: Netns, l: Link): number {
  const n = carrierTransitions.get(l);
  if (n !== undefined) return n;
  if (l.type !== 'veth' && l.type !== 'bridge') return 0;
  return 1 + (carrierOk(w, ns, l) ? 1 : 0);
}

export function linkSetUp(w: World, ns: Netns, name: string, up: boolean): void {
  const dev = ns.link(name);
  if (!dev) throw new NetlinkError(ENODEV);
  if (dev.up === up) return;
  const peer = vethPeer(w, dev);
  const peerNs = peer && dev.type === 'veth' ? w.netns.get(dev.peer!.netns) : undefined;
  type Watched = { ns: Netns; l: Link };
  const watched: Watched[] = [{ ns, l: dev }];
  if (peer && peerNs) watched.push({ ns: peerNs, l: peer });
  for (const x of [...watched]) {
    const br = x.l.master ? x.ns.link(x.l.master) : undefined;
    if (br) watched.push({ ns: x.ns, l: br });
    if (x.l.type === 'bridge') for (const p of bridgePorts(x.ns, x.l)) watched.push({ ns: x.ns, l: p });
  }
  const seen = new Set<Link>();
  const unique = watched.filter((x) => !seen.has(x.l) && !!seen.add(x.l));
  const before = unique.map((x) => ({
    ...x,
    carrier: carrierOk(w, x.ns, x.l),
    changes: carrierChanges(w, x.ns, x.l),
    fwd: !!x.l.master && portForwarding(w, x.ns, x.l),
  }));
  setLinkUp(ns, name, up);
  if (!up) {
    if (dev.master) flushPortFdb(ns, dev);
    // vxlan_stop: the FDB entries that are neither permanent nor static go
    if (dev.type === 'vxlan') dev.fdb.removeWhere((e) => !e.permanent && !vxlanStatic.has(e));
  }
  for (const b of before) {
    const carrier = carrierOk(w, b.ns, b.l);
    if ((b.l.type === 'veth' || b.l.type === 'bridge') && carrier !== b.carrier)
      carrierTransitions.set(b.l, b.changes + 1);
    if (b.l === dev && !up) continue;
    if (b.carrier && !carrierOk(w, b.ns, b.l))
      b.ns.neigh.removeWhere((n) => n.dev === b.l.name && n.state !== 'PERMANENT' && n.state !== 'NOARP');
    if (b.fwd && !portForwarding(w, b.ns, b.l)) flushPortFdb(b.ns, b.l);
  }
}

/** min_mtu/max_mtu as the drivers set them */
export function mtuLimits(l: Link): { min: number; max: number } {
  switch (l.type) {
    case 'loopback':
      return { min: 0, max: 0 };
    case 'ipip':
      // IP_MAX_MTU minus the outer IPv4 header (__ip_tunnel_create); not checked against a kernel with ipip
      return { min: 68, max: 0xffff - 20 };
    default:
      return { min: 68, max: 65535 };
  }
}

/**
 * `ip link set DEV mtu N`: dev_validate_mtu (extack), vxlan_change_mtu (no more than the lower
 * device's MTU minus the VXLAN headroom: EINVAL), then the bridge's MTU follows the smallest port
 * MTU unless it was set by hand (br_mtu_auto_adjust).
 */
export function linkSetMtu(ns: Netns, name: string, mtu: number): void {
  const dev = ns.link(name);
  if (!dev) throw new NetlinkError(ENODEV);
  const { min, max } = mtuLimits(dev);
  if (mtu < 0 || mtu < min) throw ext(EINVAL, 'mtu less than device minimum');
  if (max > 0 && mtu > max) throw ext(EINVAL, 'mtu greater than device maximum');
  if (dev.type === 'vxlan') {
    const lower = ns.link(dev.dev);
    if (lower && mtu > lower.mtu - 50) throw new NetlinkError(EINVAL);
  }
  dev.mtu = mtu;
  // a bridge set by hand stops following its ports (BROPT_MTU_SET_BY_USER); else it follows them
  if (dev.type === 'bridge') dev.mtuSetByUser = true;
  else if (dev.master) bridgeMtuAdjust(ns, ns.link(dev.master)!);
}

/* ------------------------------------------------------------------ addresses */

function inSubnet(a: string, b: string, len: number): boolean {
  return ((ip4ToInt(a) ^ ip4ToInt(b)) & prefixMask(len)) === 0;
}

/** IFA_F_SECONDARY, derived from the list order the kernel keeps (primaries first) */
export function isSecondary(dev: Link, i: number): boolean {
  const a = dev.addrs[i];
  return dev.addrs.slice(0, i).some((b) => b.len === a.len && inSubnet(b.ip, a.ip, a.len));
}

function primaryOf(dev: Link, ip: string, len: number) {
  return dev.addrs.find((b, i) => b.len === len && inSubnet(b.ip, ip, len) && !isSecondary(dev, i));
}

function sameRoute(a: Route, b: Route): boolean {
  return (
    a.dst === b.dst &&
    a.len === b.len &&
    a.type === b.type &&
    a.via === b.via &&
    a.dev === b.dev &&
    a.proto === b.proto &&
    a.scope === b.scope &&
    a.src === b.src &&
    a.metric === b.metric &&
    a.onlink === b.onlink
  );
}

/** fib_magic(RTM_NEWROUTE, NLM_F_CREATE|NLM_F_APPEND): add unless the very same route exists */
function fibMagicAdd(ns: Netns, r: Route): void {
  if (!ns.fib.list().some((x) => sameRoute(x, r))) ns.fib.add(r);
}

/** the prefix route an address brings when its device is up (fib_add_ifaddr) */
function prefixRoute(dev: Link, ip: string, len: number, prim: string): Route | undefined {
  const net = (ip4ToInt(ip) & prefixMask(len)) >>> 0;
  if (net === 0 || (net === ip4ToInt(ip) && len === 32) || dev.type === 'loopback') return undefined;
  return {
    dst: net,
    len,
    type: 'unicast',
    dev: dev.name,
    proto: 'kernel',
    scope: 'link',
    src: prim,
    metric: 0,
    onlink: false,
  };
}

/**
 * `ip addr add IP/LEN dev D`: __inet_insert_ifa. The same address and mask on the subnet is
 * EEXIST ("ipv4: Address already assigned"); another address of an existing subnet and mask is
 * secondary and goes to the end of the list, a primary after the last primary; a primary on an
 * up device brings its prefix route (proto kernel scope link src IP).
 */
export function addressAdd(
  ns: Netns,
  devName: string,
  ip: string,
  len: number,
  scope?: Address['scope'],
): void {
  const dev = ns.link(devName);
  if (!dev) throw new NetlinkError(ENODEV);
  const sc = scope ?? (ip.startsWith('127.') ? 'host' : 'global');
  const rank = { global: 0, link: 253, host: 254 };
  let secondary = false;
  let lastPrimary = 0;
  dev.addrs.forEach((b, i) => {
    if (!isSecondary(dev, i) && rank[sc] <= rank[b.scope]) lastPrimary = i + 1;
    if (b.len === len && inSubnet(b.ip, ip, len)) {
      if (b.ip === ip) throw ext(EEXIST, 'ipv4: Address already assigned');
      if (b.scope !== sc) throw ext(EINVAL, 'ipv4: Invalid scope value');
      secondary = true;
    }
  });
  const a: Address = { ip, len, scope: sc };
  if (secondary) dev.addrs.push(a);
  else dev.addrs.splice(lastPrimary, 0, a);
  if (!secondary && dev.up) {
    const r = prefixRoute(dev, ip, len, ip);
    if (r) fibMagicAdd(ns, r);
  }
}

/**
 * `ip addr del IP[/LEN] dev D`: inet_rtm_deladdr finds the first address with that IP (and
 * prefix, when given), else EADDRNOTAVAIL ("ipv4: Address not found"). Deleting a primary deletes
 * its secondaries too (promote_secondaries is 0 in a new namespace). fib_del_ifaddr: a primary's
 * prefix route goes; when the IP is gone from the namespace, every route using it as src goes.
 */
export function addressDel(ns: Netns, devName: string, ip: string, len?: number): void {
  const dev = ns.link(devName);
  if (!dev) throw new NetlinkError(ENODEV);
  const i = dev.addrs.findIndex((a) => a.ip === ip && (len === undefined || a.len === len));
  if (i < 0) throw ext(EADDRNOTAVAIL, 'ipv4: Address not found');
  const victim = dev.addrs[i];
  const gone = [victim];
  if (!isSecondary(dev, i))
    dev.addrs.forEach((b, j) => {
      if (j !== i && isSecondary(dev, j) && b.len === victim.len && inSubnet(b.ip, victim.ip, victim.len))
        gone.push(b);
    });
  for (const g of [...gone.slice(1), gone[0]]) {
    const k = dev.addrs.indexOf(g);
    const wasPrimary = !isSecondary(dev, k);
    dev.addrs.splice(k, 1);
    if (wasPrimary) {
      const r = prefixRoute(dev, g.ip, g.len, g.ip);
      if (r) {
        const old = ns.fib.list().find((x) => sameRoute(x, r));
        if (old) ns.fib.remove(old);
      }
    }
    const stillLocal = [...ns.addresses()].some(({ addr }) => addr.ip === g.ip);
    if (!stillLocal) ns.fib.removeWhere((r) => r.src === g.ip);
  }
}

/* ------------------------------------------------------------------ routes */

export interface RouteRequest extends RouteSpec {
  /** NLM_F_* of the request */
  nl: { create: boolean; excl: boolean; replace: boolean; append: boolean };
}

/** a prefix with host bits set: EINVAL "Invalid prefix for given prefix length" */
function checkedPrefix(text: string): { dst: number; len: number } {
  try {
    return prefixOf(text);
  } catch (e) {
    if (e instanceof NetlinkError) throw ext(EINVAL, 'Invalid prefix for given prefix length');
    throw e;
  }
}

/** a route of the local table (RT_TABLE_LOCAL), which the kernel derives from the addresses */
export interface LocalRoute {
  type: 'local' | 'broadcast';
  dst: number;
  len: number;
  dev: string;
  src: string;
  scope: 'host' | 'link';
}

/**
 * The local table: fib_add_ifaddr's routes. Every address has its `local` /32 (kept while the
 * device is down), with the subnet's primary as src; a primary on an up device adds the
 * broadcast route of its subnet (prefix < 31) and, on loopback, the `local` prefix route.
 * Listed in trie order (by address, longer prefix first).
 */
export function localRoutes(ns: Netns): LocalRoute[] {
  const out: LocalRoute[] = [];
  const push = (r: LocalRoute) => {
    if (
      !out.some(
        (x) => x.type === r.type && x.dst === r.dst && x.len === r.len && x.dev === r.dev && x.src === r.src,
      )
    )
      out.push(r);
  };
  const links = [...ns.links.values()].sort((a, b) => a.ifindex - b.ifindex);
  for (const dev of links)
    dev.addrs.forEach((a, i) => {
      const prim = isSecondary(dev, i) ? (primaryOf(dev, a.ip, a.len)?.ip ?? a.ip) : a.ip;
      push({ type: 'local', dst: ip4ToInt(a.ip), len: 32, dev: dev.name, src: prim, scope: 'host' });
      if (!dev.up || isSecondary(dev, i)) return;
      const mask = prefixMask(a.len);
      const net = (ip4ToInt(a.ip) & mask) >>> 0;
      if (net === 0 || (net === ip4ToInt(a.ip) && a.len === 32)) return;
      if (dev.type === 'loopback')
        push({ type: 'local', dst: net, len: a.len, dev: dev.name, src: a.ip, scope: 'host' });
      if (a.len < 31)
        push({
          type: 'broadcast',
          dst: (net | ~mask) >>> 0,
          len: 32,
          dev: dev.name,
          src: a.ip,
          scope: 'link',
        });
    });
  return out.sort((a, b) => a.dst - b.dst || b.len - a.len);
}

/** inet_addr_type_dev_table: the type of a local-table route for `ip` (on `dev`, when given), else unicast */
export function addrType(
  ns: Netns,
  ip: string,
  dev?: string,
): 'local' | 'broadcast' | 'unicast' | 'multicast' {
  const n = ip4ToInt(ip);
  if (n === 0 || n === 0xffffffff) return 'broadcast';
  if (n >>> 28 === 0xe) return 'multicast';
  const hit = localRoutes(ns)
    .filter((r) => ((n ^ r.dst) & prefixMask(r.len)) === 0)
    .sort((a, b) => b.len - a.len)[0];
  if (hit && (!dev || hit.dev === dev)) return hit.type;
  return 'unicast';
}

/** the device holding a local address (the local table, up or down), as fib_lookup sees it */
function localRouteDev(ns: Netns, ip: string, oif?: string): Link | undefined {
  const n = ip4ToInt(ip);
  const hit = localRoutes(ns).find(
    (r) => r.type === 'local' && ((n ^ r.dst) & prefixMask(r.len)) === 0 && (!oif || r.dev === oif),
  );
  return hit ? ns.link(hit.dev) : undefined;
}

/**
 * fib_lookup for a gateway in fib_check_nh_v4_gw: local and main table, longest prefix first,
 * only routes of scope link or host (flowi4_scope RT_SCOPE_LINK), out of `oif` when given.
 */
function gatewayLookup(
  ns: Netns,
  gw: string,
  oif: string | undefined,
): { type: string; dev?: string } | undefined {
  const n = ip4ToInt(gw);
  const local = localRoutes(ns).filter(
    (r) => ((n ^ r.dst) & prefixMask(r.len)) === 0 && (!oif || r.dev === oif),
  );
  const main = ns.fib.lookup(n, (x) => (x.scope === 'link' || x.scope === 'host') && (!oif || x.dev === oif));
  const best = local.sort((a, b) => b.len - a.len)[0];
  if (best && (!main || best.len >= main.len)) return { type: best.type, dev: best.dev };
  if (main) return { type: main.type, dev: main.dev };
  return undefined;
}

/**
 * fib_create_info for an IPv4 unicast/blackhole/unreachable/prohibit route in the main table,
 * with the kernel's checks and messages (fib_check_nh_v4_gw, fib_check_nh_nongw,
 * fib_valid_prefsrc), then fib_table_insert's NLM_F_* semantics.
 */
export function routeAdd(ns: Netns, req: RouteRequest): Route {
  const { dst, len } = checkedPrefix(req.prefix);
  const type = req.type ?? 'unicast';
  const scope = req.scope ?? (type === 'unicast' && !req.via ? 'link' : 'global');
  let dev = req.dev;
  const oif = dev ? ns.link(dev) : undefined;
  if (dev && !oif) throw new NetlinkError(ENODEV);
  if (type !== 'unicast') {
    if (req.via || req.dev)
      throw ext(EINVAL, 'Gateway, device and multipath can not be specified for this route type');
  } else if (scope === 'host') {
    if (req.via) throw ext(EINVAL, 'Route with host scope can not have a gateway');
    if (!oif) throw new NetlinkError(ENODEV);
  } else if (req.via) {
    if (req.onlink) {
      if (scope === 'link') throw ext(EINVAL, 'Nexthop has invalid scope');
      if (!oif) throw ext(ENODEV, 'Nexthop device required for onlink');
      if (!oif.up) throw ext('Network is down', 'Nexthop device is not up');
      if (addrType(ns, req.via, oif.name) !== 'unicast') throw ext(EINVAL, 'Nexthop has invalid gateway');
    } else {
      // the gateway must be on a link- or host-scope route (connected or local), out of dev if given
      const hit = scope === 'link' ? undefined : gatewayLookup(ns, req.via, dev);
      const local = scope === 'link' ? localRouteDev(ns, req.via, dev) : undefined;
      const res = hit ?? (local ? { type: 'local', dev: local.name } : undefined);
      if (!res) throw ext('Network is unreachable', 'Nexthop has invalid gateway');
      if (res.type !== 'unicast' && res.type !== 'local') throw ext(EINVAL, 'Nexthop has invalid gateway');
      const found = res.dev ? ns.link(res.dev) : undefined;
      if (!found) throw ext(EINVAL, 'No egress device for nexthop gateway');
      dev = found.name;
      if (!found.up) throw new NetlinkError('Network is down');
    }
  } else {
    if (req.onlink) throw ext(EINVAL, 'Invalid flags for nexthop - PERVASIVE and ONLINK can not be set');
    if (!oif) throw new NetlinkError(ENODEV);
    if (!oif.up) throw ext('Network is down', 'Device for nexthop is not up');
  }
  if (req.src && !localRouteDev(ns, req.src)) throw ext(EINVAL, 'Invalid prefsrc address');
  const r: Route = {
    dst,
    len,
    type,
    via: type === 'unicast' ? req.via : undefined,
    dev: type === 'unicast' ? dev : undefined,
    proto: req.proto ?? 'boot',
    scope,
    src: req.src,
    metric: req.metric ?? 0,
    onlink: !!req.onlink && type === 'unicast',
  };
  // fib_table_insert: aliases of the same prefix and priority
  const same = ns.fib.list().filter((x) => x.dst === dst && x.len === len && x.metric === r.metric);
  if (same.length) {
    if (req.nl.excl) throw new NetlinkError(EEXIST);
    if (req.nl.replace) {
      const match = same.find((x) => sameRoute(x, r));
      if (match) return match;
      ns.fib.remove(same[0]);
      ns.fib.add(r);
      return r;
    }
    if (same.some((x) => sameRoute(x, r))) throw new NetlinkError(EEXIST);
  }
  if (!req.nl.create) throw new NetlinkError(ENOENT);
  ns.fib.add(r);
  return r;
}

/** fib_table_delete: the first alias of the prefix that matches every attribute given; else ESRCH */
export function routeDel(
  ns: Netns,
  prefix: string,
  m: {
    type?: RouteType;
    scope?: RouteScope;
    src?: string;
    proto?: RouteProto;
    metric?: number;
    dev?: string;
    via?: string;
  },
): Route {
  const { dst, len } = checkedPrefix(prefix);
  const r = ns.fib
    .list()
    .filter((x) => x.dst === dst && x.len === len)
    .sort((a, b) => a.metric - b.metric)
    .find(
      (x) =>
        (!m.type || x.type === m.type) &&
        (!m.scope || x.scope === m.scope) &&
        (!m.src || x.src === m.src) &&
        (!m.proto || x.proto === m.proto) &&
        (!m.metric || x.metric === m.metric) &&
        (!m.dev || x.dev === m.dev) &&
        (!m.via || x.via === m.via),
    );
  if (!r) throw new NetlinkError(ESRCH);
  ns.fib.remove(r);
  return r;
}

/* ------------------------------------------------------------------ neighbours */

export interface NeighRequest {
  ip: string;
  dev: string;
  lladdr?: string;
  state: NudState;
  nl: { create: boolean; excl: boolean; replace: boolean };
}

const NUD_VALID: NudState[] = ['PERMANENT', 'NOARP', 'REACHABLE', 'PROBE', 'STALE', 'DELAY'];

/** neigh_add + __neigh_update */
export function neighAdd(ns: Netns, w: World, req: NeighRequest): void {
  const dev = ns.link(req.dev);
  if (!dev) throw new NetlinkError(ENODEV);
  if (req.lladdr !== undefined && req.lladdr.split(':').length < (dev.type === 'ipip' ? 4 : 6))
    throw ext(EINVAL, 'Invalid link address');
  const old = ns.neighbour(req.ip, req.dev);
  if (!old && !req.nl.create) throw new NetlinkError(ENOENT);
  if (old && req.nl.excl) throw new NetlinkError(EEXIST);
  const valid = NUD_VALID.includes(req.state);
  let lladdr = req.lladdr;
  if (valid && lladdr === undefined) {
    if (!old || !old.lladdr || !NUD_VALID.includes(old.state))
      throw ext(EINVAL, 'No link layer address given');
    lladdr = old.lladdr;
  }
  const entry =
    old ?? ns.neigh.add({ ip: req.ip, dev: req.dev, state: req.state, router: false, updated: w.now });
  entry.state = req.state;
  if (valid) entry.lladdr = lladdr;
  entry.updated = w.now;
}

/** neigh_delete: ENOENT when there is no such entry */
export function neighDel(ns: Netns, ip: string, devName: string): void {
  const n = ns.neighbour(ip, devName);
  if (!n) throw new NetlinkError(ENOENT);
  ns.neigh.remove(n);
}

/* ------------------------------------------------------------------ FDB */

/** NUD_* of an FDB request, as `bridge fdb` builds it */
export interface FdbState {
  permanent: boolean;
  noarp: boolean;
  reachable: boolean;
}

export interface FdbRequest {
  mac: string;
  dev: string;
  self: boolean;
  master: boolean;
  state: FdbState;
  dst?: string;
  nl: { create: boolean; excl: boolean; replace: boolean; append: boolean };
}

/** entries a device's own address lists hold (dev_uc_add/dev_mc_add through `bridge fdb add … self`) */
const addrLists = new WeakMap<Link, { uc: string[]; mc: string[] }>();

export function deviceAddrLists(l: Link): { uc: string[]; mc: string[] } {
  let a = addrLists.get(l);
  if (!a) addrLists.set(l, (a = { uc: [], mc: [] }));
  return a;
}

/** NDA state of VXLAN FDB entries added as `static` (NUD_NOARP|NUD_REACHABLE); default is permanent */
const vxlanStatic = new WeakSet<VxlanFdbEntry>();

export function vxlanFdbIsStatic(e: VxlanFdbEntry): boolean {
  return vxlanStatic.has(e);
}

function isMulticastMac(mac: string): boolean {
  return (parseInt(mac.slice(0, 2), 16) & 1) === 1;
}

function isZeroMac(mac: string): boolean {
  return mac === '00:00:00:00:00:00';
}

function brFdbAdd(ns: Netns, br: BridgeLink, port: Link | undefined, req: FdbRequest, w: World): void {
  const s = req.state;
  // fdb_add_entry: pr_info only, no extack
  if (!port && !s.permanent) throw new NetlinkError(EINVAL);
  const state: FdbEntry['state'] = s.permanent ? 'local' : s.noarp ? 'static' : 'dynamic';
  const portName = port?.name ?? br.name;
  const e = br.fdb.get(req.mac);
  if (!e) {
    if (!req.nl.create) throw new NetlinkError(ENOENT);
    br.fdb.add({ mac: req.mac, port: portName, state, updated: w.now });
    return;
  }
  if (req.nl.excl) throw new NetlinkError(EEXIST);
  e.port = portName;
  e.state = state;
  e.updated = w.now;
  void ns;
}

function vxlanFdbAdd(vx: VxlanLink, req: FdbRequest): void {
  const s = req.state;
  if (!s.permanent && !s.reachable) throw new NetlinkError(EINVAL);
  if (!req.dst) throw new NetlinkError(EINVAL);
  const entries = vx.fdb.getAll(req.mac);
  const mz = isMulticastMac(req.mac) || isZeroMac(req.mac);
  const setState = (e: VxlanFdbEntry) => {
    e.permanent = s.permanent;
    if (!s.permanent && s.noarp) vxlanStatic.add(e);
    else vxlanStatic.delete(e);
  };
  if (entries.length) {
    if (req.nl.excl) throw new NetlinkError(EEXIST);
    for (const e of entries) setState(e);
    if (req.nl.replace) {
      if (mz) throw ext(EOPNOTSUPP, 'Cannot replace non-unicast fdb entries');
      entries[0].dst = req.dst;
    }
    if (req.nl.append && mz && !entries.some((e) => e.dst === req.dst)) {
      const e = { mac: req.mac, dst: req.dst, permanent: s.permanent };
      setState(e);
      insertAfter(vx, entries[entries.length - 1], e);
    }
    return;
  }
  if (!req.nl.create) throw new NetlinkError(ENOENT);
  if (req.nl.replace && mz) throw new NetlinkError(EOPNOTSUPP);
  const e = vx.fdb.add({ mac: req.mac, dst: req.dst, permanent: s.permanent });
  setState(e);
}

/** a remote appended to an existing VXLAN FDB entry keeps the entry's place in the table */
function insertAfter(vx: VxlanLink, after: VxlanFdbEntry, e: VxlanFdbEntry): void {
  const rest = vx.fdb.list().slice(vx.fdb.list().indexOf(after) + 1);
  for (const x of rest) vx.fdb.remove(x);
  vx.fdb.add(e);
  for (const x of rest) vx.fdb.add(x);
}

function dfltFdbAdd(dev: Link, req: FdbRequest): void {
  const s = req.state;
  if (!s.permanent) throw new NetlinkError(EINVAL);
  const lists = deviceAddrLists(dev);
  const list = isMulticastMac(req.mac) ? lists.mc : lists.uc;
  if (list.includes(req.mac)) {
    if (req.nl.excl) throw new NetlinkError(EEXIST);
    return;
  }
  list.push(req.mac);
}

/** rtnl_fdb_add: the bridge master's handler for a port ("master"), then the device's own ("self") */
export function fdbAdd(ns: Netns, w: World, req: FdbRequest): void {
  const dev = ns.link(req.dev);
  if (!dev) throw new NetlinkError(ENODEV);
  if (dev.type === 'loopback' || dev.type === 'ipip')
    throw ext(EINVAL, 'FDB add only supported for Ethernet devices');
  let done = false;
  if (req.master && dev.master) {
    const br = ns.link(dev.master);
    if (br?.type === 'bridge') {
      brFdbAdd(ns, br, dev, req, w);
      done = true;
    }
  }
  if (req.self) {
    if (dev.type === 'bridge') brFdbAdd(ns, dev, undefined, req, w);
    else if (dev.type === 'vxlan') vxlanFdbAdd(dev, req);
    else dfltFdbAdd(dev, req);
    done = true;
  }
  if (!done) throw new NetlinkError(EOPNOTSUPP);
}

/** rtnl_fdb_del, same dispatch; a VXLAN remote that is not there is not an error (vxlan_fdb_delete) */
export function fdbDel(ns: Netns, req: Omit<FdbRequest, 'nl' | 'state'>): void {
  const dev = ns.link(req.dev);
  if (!dev) throw new NetlinkError(ENODEV);
  let done = false;
  if (req.master && dev.master) {
    const br = ns.link(dev.master);
    if (br?.type === 'bridge') {
      const e = br.fdb.get(req.mac);
      if (!e || e.port !== dev.name) throw new NetlinkError(ENOENT);
      br.fdb.remove(e);
      done = true;
    }
  }
  if (req.self) {
    if (dev.type === 'bridge') {
      const e = dev.fdb.get(req.mac);
      if (!e || e.port !== dev.name) throw new NetlinkError(ENOENT);
      dev.fdb.remove(e);
    } else if (dev.type === 'vxlan') {
      const entries = dev.fdb.getAll(req.mac);
      if (!entries.length) throw new NetlinkError(ENOENT);
      if (req.dst) {
        const rd = entries.find((e) => e.dst === req.dst);
        if (rd) dev.fdb.remove(rd);
      } else for (const e of [...entries]) dev.fdb.remove(e);
    } else {
      const lists = deviceAddrLists(dev);
      const list = isMulticastMac(req.mac) ? lists.mc : lists.uc;
      const i = list.indexOf(req.mac);
      if (i < 0) throw new NetlinkError(ENOENT);
      list.splice(i, 1);
    }
    done = true;
  }
  if (!done) throw new NetlinkError(EOPNOTSUPP);
}
