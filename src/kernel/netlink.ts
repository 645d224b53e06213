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

export class NetlinkError extends Error {}

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
}

/** the prefix routes an address brings (connected route; the local table is implicit) */
function connectedRoute(dev: Link, ip: string, len: number): Route | undefined {
  if (len === 32) return undefined;
  const net = (ip4ToInt(ip) & prefixMask(len)) >>> 0;
  return {
    dst: net,
    len,
    type: 'unicast',
    dev: dev.name,
    proto: 'kernel',
    scope: 'link',
    src: ip,
    metric: 0,
    onlink: false,
  };
}

export function addAddress(ns: Netns, devName: string, ip: string, len: number): void {
  const dev = ns.link(devName);
  if (!dev) throw new NetlinkError('Cannot find device');
  if (dev.addrs.some((a) => a.ip === ip && a.len === len)) throw new NetlinkError('File exists');
  dev.addrs.push({ ip, len, scope: 'global' });
  if (dev.up) {
    const r = connectedRoute(dev, ip, len);
    if (r && !ns.fib.find(r.dst, r.len, 0)) ns.fib.add(r);
  }
}

export function delAddress(ns: Netns, devName: string, ip: string, len: number): void {
  const dev = ns.link(devName);
  if (!dev) throw new NetlinkError('Cannot find device');
  const i = dev.addrs.findIndex((a) => a.ip === ip && a.len === len);
  if (i < 0) throw new NetlinkError('Cannot assign requested address');
  dev.addrs.splice(i, 1);
  ns.fib.removeWhere((r) => r.dev === devName && r.proto === 'kernel' && r.src === ip);
  // routes whose preferred source vanished go too (fib_del_ifaddr)
  ns.fib.removeWhere((r) => r.src === ip);
}

export function setLinkUp(ns: Netns, name: string, up: boolean): void {
  const dev = ns.link(name);
  if (!dev) throw new NetlinkError(`Cannot find device "${name}"`);
  if (dev.up === up) return;
  dev.up = up;
  if (up) {
    for (const a of dev.addrs) {
      const r = connectedRoute(dev, a.ip, a.len);
      if (r && !ns.fib.find(r.dst, r.len, 0)) ns.fib.add(r);
    }
  } else {
    // fib_disable_ip: IPv4 routes through a device set down are removed
    ns.fib.removeWhere((r) => r.dev === name);
    // and its neighbours are flushed
    ns.neigh.removeWhere((n) => n.dev === name && n.state !== 'PERMANENT');
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
