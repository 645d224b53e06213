/**
 * The World as plain data: worldToData writes every namespace's kernel state (links with all
 * their fields and counters, addresses, the FIB, neighbours, bridge and VXLAN FDBs, sysctls,
 * netfilter, conntrack, listening sockets, TCP and ping sockets, MIB counters, ARP statistics,
 * neighbour timers with their queues, the PMTU cache on its routes, ICMP rate-limit buckets, the
 * ifindex counter, the IP id counter), the clock with its armed timers and the frames captured on
 * every device as JSON-safe data;
 * worldFromData reads it back, checking every field and reference, so a malformed file is one
 * line naming its JSON path (SnapshotError), never a crash further on. cloneWorld is the round
 * trip; diffWorlds compares two worlds object by object.
 *
 * Netfilter and Conntrack travel generically (data.ts): from their own fields, so what is added
 * to them travels without a change here. The namespace and the world are written field by field;
 * a field this file does not know is refused when writing, so none is ever silently dropped.
 * Text and key order are deterministic: the same world gives the same JSON.
 */
import { isValidIp4, isValidMac, networkOf } from '../wire/addr.ts';
import { Conntrack } from './conntrack.ts';
import { childPath, DataError, decodeData, encodeData, type DataClass, type Json } from './data.ts';
import { formatRoute, ROUTE_PROTOS, ROUTE_SCOPES, ROUTE_TYPES, type Route } from './fib.ts';
import { Netfilter } from './netfilter.ts';
import {
  bridgeFdb,
  NETNS_ROLES,
  Netns,
  NUD_STATES,
  vxlanFdb,
  type FdbEntry,
  type Link,
  type IcmpPeer,
  type ListenSocket,
  type NeighEntry,
  type NudTimer,
  type VxlanFdbEntry,
} from './objects.ts';
import { TCP_STATES, type PingSocket, type TcpConn } from './sockets.ts';
import { World, captureData, timerOrder, type Capture, type Timer } from './world.ts';

export const WORLD_FORMAT = 'podwalk-world';
export const WORLD_VERSION = 1;

/** the classes whose instances travel generically */
const CLASSES: Record<string, DataClass> = { Netfilter, Conntrack };

/** A world's data; the namespaces in the order the world holds them. */
export interface WorldData {
  format: typeof WORLD_FORMAT;
  version: typeof WORLD_VERSION;
  seed: string;
  /** the simulated clock, µs */
  now: number;
  capture: boolean;
  /**
   * armed kernel timers in the order they fall due (at, then seq: a heap as it is; the World's own
   * heap is laid out by the order it was written in, and part of it may still be queued) and the
   * next timer's insertion number
   */
  timers: Json[];
  timerSeq: number;
  netns: NetnsData[];
  /** frames seen on every device, in order; `frame` as {"$bytes": hex} */
  captures: Json[];
}

export interface NetnsData {
  name: string;
  role: string;
  nextIfindex: number;
  ipId: number;
  /** every link with all its fields; a bridge's or VXLAN device's FDB as the list `fdb` */
  links: Json[];
  /** the main table in `ip route` order */
  routes: Json[];
  neighbours: Json[];
  sysctl: [string, string][];
  mib: [string, number][];
  arpStats: Json;
  /** reachable_time as the kernel drew it, by device (ms); absent when none is known */
  neighReachable?: [string, number][];
  /** listening sockets */
  sockets: Json[];
  /** TCP sockets, in the order they were opened */
  tcp: Json[];
  /** local ports of the UDP sockets applications send from */
  udpClients: number[];
  /** ICMP sockets of ping processes */
  pings: Json[];
  /** neighbour timer state by `ip|dev`, with the packets queued on a resolution */
  nud: [string, Json][];
  /** per-destination ICMP rate-limit buckets (inet_peer) */
  icmpPeers: Json[];
  /** the netns-wide ICMP credit */
  icmpGlobal: Json;
  netfilter: Json;
  conntrack: Json;
}

/** malformed world data: the message is one line, starting with the JSON path */
export class SnapshotError extends Error {}

/** the fields worldToData writes; any other own field of a Netns or World is refused */
const NETNS_FIELDS = [
  'name',
  'role',
  'links',
  'fib',
  'neigh',
  'sysctl',
  'netfilter',
  'conntrack',
  'sockets',
  'tcp',
  'udpClients',
  'pings',
  'mib',
  'nud',
  'arpStats',
  'neighReachable',
  'icmpPeers',
  'icmpGlobal',
  'nextIfindex',
  'ipId',
];
/**
 * `rec` is the recorder of the walk running now and `onTimer` the datapath's timer handler, not
 * state; `unresolved` is a count of the packets in neighbour queues, recounted when read
 */
const WORLD_FIELDS = [
  'netns',
  'now',
  'timers',
  'timerSeq',
  'unresolved',
  'onTimer',
  'captures',
  'rec',
  'capture',
  'seed',
];

function checkFields(o: object, known: string[], at: string): void {
  const extra = Object.keys(o).find((k) => !known.includes(k));
  if (extra !== undefined)
    throw new DataError(`${childPath(at, extra)}: snapshot.ts does not write this field yet; add it there`);
}

/* ================================================================== writing */

function linkData(l: Link, at: string): Json {
  // uc and mc as lists of their own: a device without addresses shares one empty list (NO_MACS),
  // which data would otherwise write once and refer to ($ref)
  const fields: Record<string, unknown> = { ...l, uc: [...l.uc], mc: [...l.mc] };
  if (l.type === 'bridge' || l.type === 'vxlan') fields.fdb = [...l.fdb.list()];
  return encodeData(fields, {}, at);
}

export function netnsData(ns: Netns, at = `$.netns[${ns.name}]`): NetnsData {
  checkFields(ns, NETNS_FIELDS, at);
  return {
    name: ns.name,
    role: ns.role,
    nextIfindex: ns.nextIfindex,
    ipId: ns.ipId,
    links: [...ns.links.values()].map((l, i) => linkData(l, childPath(childPath(at, 'links'), i))),
    routes: ns.fib.list().map((r, i) => encodeData(r, {}, childPath(childPath(at, 'routes'), i))),
    neighbours: ns.neigh.list().map((n, i) => encodeData(n, {}, childPath(childPath(at, 'neighbours'), i))),
    sysctl: [...ns.sysctl],
    mib: [...ns.mib],
    arpStats: encodeData(ns.arpStats, {}, childPath(at, 'arpStats')),
    ...(ns.neighReachable.size ? { neighReachable: [...ns.neighReachable] } : {}),
    sockets: ns.sockets.map((s, i) => encodeData(s, {}, childPath(childPath(at, 'sockets'), i))),
    tcp: ns.tcp.list().map((c, i) => encodeData(c, {}, childPath(childPath(at, 'tcp'), i))),
    udpClients: [...ns.udpClients],
    pings: ns.pings.map((p, i) => encodeData(p, {}, childPath(childPath(at, 'pings'), i))),
    nud: [...ns.nud].map(([k, t]) => [k, encodeData(t, {}, childPath(childPath(at, 'nud'), k))]),
    icmpPeers: ns.icmpPeers.map((p, i) => encodeData(p, {}, childPath(childPath(at, 'icmpPeers'), i))),
    icmpGlobal: encodeData(ns.icmpGlobal, {}, childPath(at, 'icmpGlobal')),
    netfilter: encodeData(ns.netfilter, CLASSES, childPath(at, 'netfilter')),
    conntrack: encodeData(ns.conntrack, CLASSES, childPath(at, 'conntrack')),
  };
}

/** The world as JSON-safe plain data (JSON.stringify gives the file). */
export function worldToData(w: World): WorldData {
  checkFields(w, WORLD_FIELDS, '$');
  return {
    format: WORLD_FORMAT,
    version: WORLD_VERSION,
    seed: w.seed,
    now: w.now,
    capture: w.capture,
    timers: [...w.timers].sort(timerOrder).map((t, i) => encodeData(t, {}, `$.timers[${i}]`)),
    timerSeq: w.timerSeq,
    netns: [...w.netns.values()].map((ns, i) => netnsData(ns, `$.netns[${i}]`)),
    captures: w.captures.map((c, i) => encodeData(captureData(c), {}, `$.captures[${i}]`)),
  };
}

/* ================================================================== reading */

type Obj = Record<string, unknown>;

function fail(at: string, what: string): never {
  throw new SnapshotError(`${at}: ${what}`);
}

function obj(x: unknown, at: string): Obj {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) fail(at, 'expected an object');
  return x as Obj;
}

function list(x: unknown, at: string): unknown[] {
  if (!Array.isArray(x)) fail(at, 'expected a list');
  return x;
}

/** a reader of one object's fields, each checked, each error naming the field's path */
class Fields {
  constructor(
    readonly o: Obj,
    readonly at: string,
  ) {}

  static of(x: unknown, at: string): Fields {
    return new Fields(obj(x, at), at);
  }

  path(k: string): string {
    return childPath(this.at, k);
  }

  has(k: string): boolean {
    return this.o[k] !== undefined;
  }

  str(k: string): string {
    const v = this.o[k];
    return typeof v === 'string' ? v : fail(this.path(k), 'expected a string');
  }

  bool(k: string): boolean {
    const v = this.o[k];
    return typeof v === 'boolean' ? v : fail(this.path(k), 'expected true or false');
  }

  num(k: string): number {
    const v = this.o[k];
    return typeof v === 'number' && !Number.isNaN(v) ? v : fail(this.path(k), 'expected a number');
  }

  int(k: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.o[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      fail(this.path(k), `expected an integer in ${min}..${max}`);
    return v;
  }

  oneOf<T extends string>(k: string, values: readonly T[]): T {
    const v = this.o[k];
    if (typeof v !== 'string' || !values.includes(v as T))
      fail(this.path(k), `expected one of ${values.map((x) => JSON.stringify(x)).join(', ')}`);
    return v as T;
  }

  ip(k: string): string {
    const v = this.str(k);
    return isValidIp4(v) ? v : fail(this.path(k), `${JSON.stringify(v)} is not an IPv4 address`);
  }

  mac(k: string): string {
    const v = this.str(k);
    return isValidMac(v) ? v : fail(this.path(k), `${JSON.stringify(v)} is not a MAC address`);
  }

  /** an optional field: checked when present */
  opt<T>(k: string, read: (k: string) => T): T | undefined {
    return this.has(k) ? read.call(this, k) : undefined;
  }

  list(k: string): unknown[] {
    return list(this.o[k], this.path(k));
  }

  each<T>(k: string, read: (f: Fields, i: number) => T): T[] {
    return this.list(k).map((x, i) => read(Fields.of(x, childPath(this.path(k), i)), i));
  }
}

/** generic data without class instances (links, routes, neighbours…) */
function plain(x: unknown, at: string): unknown {
  try {
    return decodeData(x, {}, at);
  } catch (e) {
    if (e instanceof DataError) throw new SnapshotError(e.message);
    throw e;
  }
}

/** each entry of the list `k` of `f`, decoded as plain data and read field by field */
function eachPlain<T>(f: Fields, k: string, read: (e: Fields) => void): T[] {
  return f.list(k).map((x, i) => {
    const p = childPath(f.path(k), i);
    const e = Fields.of(plain(x, p), p);
    read(e);
    return e.o as unknown as T;
  });
}

const IFNAMSIZ = 15;

function ifname(f: Fields, k: string): string {
  const v = f.str(k);
  if (!v || v.length > IFNAMSIZ || /[\s/:]/.test(v) || v === '.' || v === '..')
    fail(f.path(k), `${JSON.stringify(v)} is not a valid interface name`);
  return v;
}

/** one link: every field the model reads is checked; unknown fields travel as they are */
function readLink(x: unknown, at: string, ns: Netns): Link {
  const f = Fields.of(plain(x, at), at);
  ifname(f, 'name');
  f.int('ifindex', 1);
  const type = f.oneOf('type', ['veth', 'bridge', 'vxlan', 'ipip', 'loopback']);
  f.mac('mac');
  f.int('mtu', 0, 0xffffffff);
  f.bool('up');
  f.bool('noarp');
  f.bool('carrier');
  f.int('carrierChanges');
  f.opt('master', f.str);
  f.opt('hairpin', f.bool);
  f.each('addrs', (a) => {
    a.ip('ip');
    a.int('len', 0, 32);
    a.oneOf('scope', ['global', 'link', 'host']);
  });
  const stats = Fields.of(f.o.stats, f.path('stats'));
  for (const k of ['rxPackets', 'rxBytes', 'rxDropped', 'txPackets', 'txBytes', 'txDropped']) stats.int(k);
  for (const k of ['uc', 'mc'])
    f.list(k).forEach((m, i) => {
      if (typeof m !== 'string' || !isValidMac(m)) fail(childPath(f.path(k), i), 'expected a MAC address');
    });
  const l = f.o as unknown as Link;
  switch (type) {
    case 'veth':
      if (f.has('peer')) {
        const p = Fields.of(f.o.peer, f.path('peer'));
        p.str('netns');
        ifname(p, 'name');
      }
      break;
    case 'bridge': {
      f.num('ageingTime');
      f.opt('mtuSetByUser', f.bool);
      const fdb = bridgeFdb(ns);
      f.each('fdb', (e) => {
        e.mac('mac');
        ifname(e, 'port');
        e.oneOf('state', ['local', 'static', 'dynamic']);
        e.num('updated');
        e.opt('vlan', e.int);
        fdb.insert(e.o as unknown as FdbEntry);
      });
      (f.o as { fdb: unknown }).fdb = fdb;
      break;
    }
    case 'vxlan': {
      f.int('vni', 0, 0xffffff);
      f.ip('local');
      ifname(f, 'dev');
      f.int('dstport', 0, 65535);
      f.bool('learning');
      f.bool('udpcsum');
      f.int('srcPortMin', 0, 65535);
      f.int('srcPortMax', 0, 65535);
      const fdb = vxlanFdb(ns);
      f.each('fdb', (e) => {
        e.mac('mac');
        e.ip('dst');
        e.bool('permanent');
        e.bool('static');
        fdb.insert(e.o as unknown as VxlanFdbEntry);
      });
      (f.o as { fdb: unknown }).fdb = fdb;
      break;
    }
    case 'ipip':
      f.opt('local', f.ip);
      f.opt('remote', f.ip);
      f.int('ttl', 0, 255);
      f.bool('pmtudisc');
      break;
    case 'loopback':
      break;
  }
  return l;
}

function readRoute(x: unknown, at: string, ns: Netns): Route {
  const f = Fields.of(plain(x, at), at);
  const dst = f.int('dst', 0, 0xffffffff);
  const len = f.int('len', 0, 32);
  if (networkOf({ addr: dst, len }) !== dst) fail(f.path('dst'), 'host bits set for the prefix length');
  f.oneOf('type', ROUTE_TYPES);
  f.opt('via', f.ip);
  const dev = f.opt('dev', f.str);
  if (dev !== undefined && !ns.links.has(dev)) fail(f.path('dev'), `no link "${dev}" in ${ns.name}`);
  f.oneOf('proto', ROUTE_PROTOS);
  f.oneOf('scope', ROUTE_SCOPES);
  f.opt('src', f.ip);
  f.int('metric', 0, 0xffffffff);
  f.bool('onlink');
  if (f.has('exceptions'))
    f.each('exceptions', (e) => {
      e.ip('dst');
      e.int('mtu', 68, 0xffffffff);
      e.num('expires');
      e.bool('locked');
    });
  return f.o as unknown as Route;
}

function readNeighbour(x: unknown, at: string, ns: Netns): NeighEntry {
  const f = Fields.of(plain(x, at), at);
  f.ip('ip');
  const dev = f.str('dev');
  if (!ns.links.has(dev)) fail(f.path('dev'), `no link "${dev}" in ${ns.name}`);
  f.opt('lladdr', f.str);
  f.oneOf('state', NUD_STATES);
  f.bool('router');
  f.num('updated');
  return f.o as unknown as NeighEntry;
}

/** a generic class instance (Netfilter, Conntrack) with the shape the datapath and tools read */
function readInstance<T>(x: unknown, at: string, cls: abstract new () => T): T {
  let v: unknown;
  try {
    v = decodeData(x, CLASSES, at);
  } catch (e) {
    if (e instanceof DataError) throw new SnapshotError(e.message);
    throw e;
  }
  if (!(v instanceof cls)) fail(at, `expected {"$class": "${cls.name}", …}`);
  return v;
}

function readNetfilter(x: unknown, at: string): Netfilter {
  const nf = readInstance(x, at, Netfilter);
  const tables = (nf as unknown as { tables: unknown }).tables;
  const tp = childPath(childPath(at, 'fields'), 'tables');
  if (!(tables instanceof Map)) fail(tp, 'expected a {"$map": …} of tables');
  [...tables].forEach(([name, chains], i) => {
    const entry = childPath(childPath(childPath(tp, '$map'), i), 1);
    if (typeof name !== 'string')
      fail(childPath(childPath(childPath(tp, '$map'), i), 0), 'expected a table name');
    if (!(chains instanceof Map)) fail(entry, 'expected a {"$map": …} of chains');
    [...chains].forEach(([cname, chain], j) => {
      const cp = childPath(childPath(childPath(entry, '$map'), j), 1);
      const c = Fields.of(chain, cp);
      if (c.str('name') !== cname) fail(c.path('name'), `expected the chain's key ${JSON.stringify(cname)}`);
      c.opt('policy', (k) => c.oneOf(k, ['ACCEPT', 'DROP']));
      c.int('pkts');
      c.int('bytes');
      c.each('rules', (r) => {
        r.int('pkts');
        r.int('bytes');
      });
    });
  });
  return nf;
}

function readTuple(f: Fields, k: string): void {
  const t = Fields.of(f.o[k], f.path(k));
  t.int('proto', 0, 255);
  t.ip('src');
  t.ip('dst');
  t.num('sport');
  t.num('dport');
  t.opt('icmpType', t.num);
  t.opt('icmpCode', t.num);
  t.opt('icmpId', t.num);
}

function readConntrack(x: unknown, at: string): Conntrack {
  const ct = readInstance(x, at, Conntrack);
  const fields = Fields.of(ct, childPath(at, 'fields'));
  fields.each('entries', (e) => {
    readTuple(e, 'orig');
    readTuple(e, 'reply');
    e.num('expires');
    e.bool('seenReply');
    e.bool('assured');
    e.bool('confirmed');
  });
  const index = childPath(fields.path('index'), '$map');
  return Conntrack.fromData(ct, (what, i) =>
    fail(i < 0 ? fields.path('index') : childPath(childPath(index, i), 1), what),
  );
}

function readNetns(x: unknown, at: string): Netns {
  const f = Fields.of(x, at);
  const ns = new Netns(f.str('name'), f.oneOf('role', NETNS_ROLES));
  ns.nextIfindex = f.int('nextIfindex', 1);
  ns.ipId = f.int('ipId', 0, 0xffff);
  const ifindexes = new Set<number>();
  f.list('links').forEach((lx, i) => {
    const lp = childPath(f.path('links'), i);
    const l = readLink(lx, lp, ns);
    if (ns.links.has(l.name)) fail(childPath(lp, 'name'), `a second link "${l.name}"`);
    if (ifindexes.has(l.ifindex) || l.ifindex >= ns.nextIfindex)
      fail(
        childPath(lp, 'ifindex'),
        `ifindex ${l.ifindex} is taken or not below nextIfindex ${ns.nextIfindex}`,
      );
    ifindexes.add(l.ifindex);
    ns.links.set(l.name, l);
  });
  [...ns.links.values()].forEach((l, i) => {
    const lp = childPath(f.path('links'), i);
    if (l.master !== undefined && ns.links.get(l.master)?.type !== 'bridge')
      fail(childPath(lp, 'master'), `no bridge "${l.master}" in ${ns.name}`);
    if (l.type === 'vxlan' && !ns.links.has(l.dev))
      fail(childPath(lp, 'dev'), `no link "${l.dev}" in ${ns.name}`);
    if (l.type === 'bridge')
      l.fdb.list().forEach((e, j) => {
        if (!ns.links.has(e.port))
          fail(childPath(childPath(childPath(lp, 'fdb'), j), 'port'), `no link "${e.port}"`);
      });
  });
  f.list('routes').forEach((r, i) => ns.fib.insert(readRoute(r, childPath(f.path('routes'), i), ns)));
  f.list('neighbours').forEach((n, i) =>
    ns.neigh.insert(readNeighbour(n, childPath(f.path('neighbours'), i), ns)),
  );
  ns.sysctl.clear();
  f.list('sysctl').forEach((kv, i) => {
    const p = childPath(f.path('sysctl'), i);
    if (!Array.isArray(kv) || kv.length !== 2 || typeof kv[0] !== 'string' || typeof kv[1] !== 'string')
      fail(p, 'expected ["key", "value"]');
    ns.sysctl.set(kv[0], kv[1]);
  });
  f.list('mib').forEach((kv, i) => {
    const p = childPath(f.path('mib'), i);
    if (!Array.isArray(kv) || kv.length !== 2 || typeof kv[0] !== 'string' || !Number.isInteger(kv[1]))
      fail(p, 'expected ["Name", integer]');
    ns.own('mib').set(kv[0], kv[1]);
  });
  const arp = Fields.of(plain(f.o.arpStats, f.path('arpStats')), f.path('arpStats'));
  arp.int('resFailed');
  arp.int('unresDiscards');
  Object.assign(ns.arpStats, arp.o);
  if (f.o.neighReachable !== undefined)
    f.list('neighReachable').forEach((kv, i) => {
      const p = childPath(f.path('neighReachable'), i);
      if (!Array.isArray(kv) || kv.length !== 2 || typeof kv[0] !== 'string' || !Number.isInteger(kv[1]))
        fail(p, 'expected ["dev", milliseconds]');
      ns.own('neighReachable').set(kv[0], kv[1]);
    });
  f.list('nud').forEach((kv, i) => {
    const p = childPath(f.path('nud'), i);
    if (!Array.isArray(kv) || kv.length !== 2 || typeof kv[0] !== 'string')
      fail(p, 'expected ["ip|dev", {…}]');
    const [ip, dev] = kv[0].split('|');
    if (!isValidIp4(ip ?? '') || !ns.links.has(dev ?? ''))
      fail(childPath(p, 0), `expected "ip|dev" of a link in ${ns.name}`);
    const t = Fields.of(plain(kv[1], childPath(p, 1)), childPath(p, 1));
    t.int('probes');
    t.opt('confirmed', t.num);
    t.opt('used', t.num);
    t.opt('timer', t.num);
    if (t.has('queue'))
      t.each('queue', (q) => {
        if (Fields.of(q.o.pkt, q.path('pkt')).o.kind !== 'ipv4')
          fail(q.path('pkt'), 'expected an IPv4 packet');
        q.opt('part', q.str);
      });
    ns.own('nud').set(kv[0], t.o as unknown as NudTimer);
  });
  ns.own('pings').push(
    ...eachPlain<PingSocket>(f, 'pings', (s) => {
      s.int('id', 0, 65535);
      s.list('inbox');
    }),
  );
  ns.own('icmpPeers').push(
    ...eachPlain<IcmpPeer>(f, 'icmpPeers', (peer) => {
      peer.ip('ip');
      peer.num('tokens');
      peer.num('last');
    }),
  );
  const g = Fields.of(plain(f.o.icmpGlobal, f.path('icmpGlobal')), f.path('icmpGlobal'));
  g.num('credit');
  g.num('stamp');
  Object.assign(ns.icmpGlobal, g.o);
  ns.setListeners(
    eachPlain<ListenSocket>(f, 'sockets', (sf) => {
      sf.oneOf('proto', ['tcp', 'udp']);
      sf.int('port', 0, 65535);
      sf.ip('addr');
    }),
  );
  f.list('tcp').forEach((s, i) => {
    const p = childPath(f.path('tcp'), i);
    const c = Fields.of(plain(s, p), p);
    if (c.str('ns') !== ns.name) fail(c.path('ns'), `expected "${ns.name}"`);
    c.ip('local');
    c.ip('remote');
    c.int('lport', 0, 65535);
    c.int('rport', 0, 65535);
    c.oneOf('state', TCP_STATES);
    c.oneOf('role', ['client', 'server']);
    for (const k of ['sndNxt', 'rcvNxt', 'sndUna']) c.int(k, 0, 0xffffffff);
    if (!(c.o.toSend instanceof Uint8Array)) fail(c.path('toSend'), 'expected {"$bytes": hex}');
    if (!(c.o.ofo instanceof Map)) fail(c.path('ofo'), 'expected a {"$map": …}');
    c.list('unacked');
    ns.tcp.add(c.o as unknown as TcpConn);
  });
  f.list('udpClients').forEach((p, i) => {
    if (!Number.isInteger(p) || (p as number) < 0 || (p as number) > 65535)
      fail(childPath(f.path('udpClients'), i), 'expected a port');
    ns.own('udpClients').push(p as number);
  });
  ns.restoreTables(
    readNetfilter(f.o.netfilter, f.path('netfilter')),
    readConntrack(f.o.conntrack, f.path('conntrack')),
  );
  return ns;
}

/**
 * A world from its data (a parsed JSON file). Everything is checked: a wrong type or value, a
 * link, bridge or device that is named but not there, a veth whose peer does not point back.
 */
export function worldFromData(d: unknown): World {
  const f = Fields.of(d, '$');
  if (f.o.format !== WORLD_FORMAT) fail(f.path('format'), `expected "${WORLD_FORMAT}"`);
  if (f.o.version !== WORLD_VERSION)
    fail(f.path('version'), `expected ${WORLD_VERSION} (the version this podwalk reads)`);
  const w = new World(f.str('seed'));
  w.now = f.num('now');
  w.capture = f.bool('capture');
  w.timerSeq = f.int('timerSeq');
  f.list('netns').forEach((x, i) => {
    const at = childPath(f.path('netns'), i);
    const ns = readNetns(x, at);
    if (w.netns.has(ns.name)) fail(childPath(at, 'name'), `a second namespace "${ns.name}"`);
    w.netns.set(ns.name, ns);
  });
  [...w.netns.values()].forEach((ns, i) =>
    [...ns.links.values()].forEach((l, j) => {
      if (l.type !== 'veth' || !l.peer) return;
      const at = childPath(childPath(childPath(childPath(f.path('netns'), i), 'links'), j), 'peer');
      const peer = w.netns.get(l.peer.netns)?.links.get(l.peer.name);
      if (peer?.type !== 'veth' || peer.peer?.netns !== ns.name || peer.peer.name !== l.name)
        fail(at, `the peer ${l.peer.netns}/${l.peer.name} is not a veth whose peer is ${ns.name}/${l.name}`);
    }),
  );
  f.list('timers').forEach((x, i) => {
    const at = childPath(f.path('timers'), i);
    const t = Fields.of(plain(x, at), at);
    t.num('at');
    t.int('seq');
    const e = Fields.of(t.o.ev, t.path('ev'));
    const kind = e.oneOf('kind', ['neigh', 'tcp-rto', 'app']);
    if (!w.netns.has(e.str('netns'))) fail(e.path('netns'), `no namespace "${String(e.o.netns)}"`);
    if (kind === 'neigh') {
      e.ip('ip');
      e.str('dev');
    } else if (kind === 'app') {
      e.str('app');
      e.str('id');
    } else {
      e.ip('local');
      e.ip('remote');
      e.int('lport', 0, 65535);
      e.int('rport', 0, 65535);
    }
    w.timers.push(t.o as unknown as Timer);
  });
  w.unresolved = [...w.netns.values()].reduce(
    (n, ns) => [...ns.nud.values()].reduce((m, t) => m + (t.queue?.length ?? 0), n),
    0,
  );
  f.list('captures').forEach((x, i) => {
    const at = childPath(f.path('captures'), i);
    const c = Fields.of(plain(x, at), at);
    c.num('time');
    const netns = c.str('netns');
    if (!w.netns.get(netns)?.links.has(c.str('dev')))
      fail(c.path('dev'), `no link "${String(c.o.dev)}" in "${netns}"`);
    c.oneOf('dir', ['in', 'out']);
    c.bool('promisc');
    if (!(c.o.frame instanceof Uint8Array)) fail(c.path('frame'), 'expected {"$bytes": hex}');
    w.captures.push(c.o as unknown as Capture);
  });
  return w;
}

/** A deep copy of the world's state (through its data). */
export function cloneWorld(w: World): World {
  return worldFromData(worldToData(w));
}

/* ================================================================== differences */

export type WorldDiffKind =
  | 'world'
  | 'netns'
  | 'link'
  | 'address'
  | 'route'
  | 'neighbour'
  | 'fdb'
  | 'sysctl'
  | 'mib'
  | 'arp-stats'
  | 'neigh-reachable'
  | 'neigh-timer'
  | 'icmp-ratelimit'
  | 'socket'
  | 'netfilter'
  | 'conntrack'
  | 'timer'
  | 'capture';

/** one difference: in which namespace, what kind of object, which one, and its data before and after */
export interface WorldDiff {
  netns?: string;
  kind: WorldDiffKind;
  /** the object, the way the tools name it ("10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink", "eth0") */
  key: string;
  /** the field of the object that differs (a path: "mtu", "stats.txPackets"); absent when the whole object came or went */
  field?: string;
  /** absent: the object is new in b */
  before?: Json;
  /** absent: the object is gone in b */
  after?: Json;
}

const same = (a: Json | undefined, b: Json | undefined) => JSON.stringify(a) === JSON.stringify(b);

function isRecord(x: Json | undefined): x is { [k: string]: Json } {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** field-level differences of two versions of one object */
function fieldDiffs(
  a: Json,
  b: Json,
  field: string,
  emit: (field: string, before: Json | undefined, after: Json | undefined) => void,
): void {
  if (same(a, b)) return;
  if (isRecord(a) && isRecord(b) && !('$class' in a) === !('$class' in b)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const f = field ? `${field}.${k}` : k;
      if (!(k in a)) emit(f, undefined, b[k]);
      else if (!(k in b)) emit(f, a[k], undefined);
      else fieldDiffs(a[k], b[k], f, emit);
    }
    return;
  }
  emit(field, a, b);
}

/** the objects of one kind, by key: gone, new, and changed field by field */
function keyedDiffs(
  out: WorldDiff[],
  netns: string | undefined,
  kind: WorldDiffKind,
  a: [string, Json][],
  b: [string, Json][],
): void {
  const am = new Map(a);
  const bm = new Map(b);
  for (const [k, v] of a)
    if (!bm.has(k)) out.push({ netns, kind, key: k, before: v });
    else
      fieldDiffs(v, bm.get(k)!, '', (field, before, after) =>
        out.push({
          netns,
          kind,
          key: k,
          ...(field ? { field } : {}),
          ...(before !== undefined ? { before } : {}),
          ...(after !== undefined ? { after } : {}),
        }),
      );
  for (const [k, v] of b) if (!am.has(k)) out.push({ netns, kind, key: k, after: v });
}

/** numbered keys for lists whose entries may repeat ("#2" for the second of the same key) */
function keyed<T>(xs: T[], key: (x: T) => string, data: (x: T) => Json): [string, Json][] {
  const n = new Map<string, number>();
  return xs.map((x) => {
    const k = key(x);
    const i = (n.get(k) ?? 0) + 1;
    n.set(k, i);
    return [i > 1 ? `${k} #${i}` : k, data(x)];
  });
}

type LinkJson = { [k: string]: Json } & {
  name: string;
  addrs: { ip: string; len: number }[];
  fdb?: ({ mac: string; port?: string; dst?: string } & { [k: string]: Json })[];
};

function netnsDiffs(out: WorldDiff[], a: NetnsData, b: NetnsData): void {
  const ns = a.name;
  for (const k of ['role', 'nextIfindex', 'ipId'] as const)
    if (a[k] !== b[k]) out.push({ netns: ns, kind: 'netns', key: ns, field: k, before: a[k], after: b[k] });
  const links = (d: NetnsData) => d.links as LinkJson[];
  const bare = (l: LinkJson): Json => {
    const { addrs: _a, fdb: _f, ...rest } = l;
    return rest;
  };
  keyedDiffs(
    out,
    ns,
    'link',
    links(a).map((l) => [l.name, bare(l)]),
    links(b).map((l) => [l.name, bare(l)]),
  );
  const addrs = (d: NetnsData) =>
    links(d).flatMap((l) =>
      keyed(
        l.addrs,
        (x) => `${x.ip}/${x.len} dev ${l.name}`,
        (x) => x as unknown as Json,
      ),
    );
  keyedDiffs(out, ns, 'address', addrs(a), addrs(b));
  const routes = (d: NetnsData) =>
    keyed(
      d.routes,
      (r) => formatRoute(r as unknown as Route),
      (r) => r,
    );
  keyedDiffs(out, ns, 'route', routes(a), routes(b));
  const neigh = (d: NetnsData) =>
    keyed(
      d.neighbours as { ip: string; dev: string }[],
      (n) => `${n.ip} dev ${n.dev}`,
      (n) => n as unknown as Json,
    );
  keyedDiffs(out, ns, 'neighbour', neigh(a), neigh(b));
  const fdb = (d: NetnsData) =>
    links(d).flatMap((l) =>
      keyed(
        l.fdb ?? [],
        (e) =>
          e.dst !== undefined
            ? `${e.mac} dev ${l.name} dst ${e.dst}`
            : `${e.mac} dev ${e.port} master ${l.name}`,
        (e) => e as Json,
      ),
    );
  keyedDiffs(out, ns, 'fdb', fdb(a), fdb(b));
  keyedDiffs(out, ns, 'sysctl', a.sysctl, b.sysctl);
  keyedDiffs(out, ns, 'mib', a.mib, b.mib);
  keyedDiffs(out, ns, 'arp-stats', [['arp_cache', a.arpStats]], [['arp_cache', b.arpStats]]);
  keyedDiffs(out, ns, 'neigh-reachable', a.neighReachable ?? [], b.neighReachable ?? []);
  const socks = (d: NetnsData) =>
    keyed(
      d.sockets as { proto: string; addr: string; port: number }[],
      (s) => `${s.proto} ${s.addr}:${s.port}`,
      (s) => s as unknown as Json,
    );
  keyedDiffs(out, ns, 'socket', socks(a), socks(b));
  const tcp = (d: NetnsData) =>
    keyed(
      d.tcp as { local: string; lport: number; remote: string; rport: number }[],
      (c) => `tcp ${c.local}:${c.lport} ${c.remote}:${c.rport}`,
      (c) => c as unknown as Json,
    );
  keyedDiffs(out, ns, 'socket', tcp(a), tcp(b));
  keyedDiffs(
    out,
    ns,
    'socket',
    a.udpClients.map((p) => [`udp client :${p}`, p]),
    b.udpClients.map((p) => [`udp client :${p}`, p]),
  );
  keyedDiffs(
    out,
    ns,
    'socket',
    keyed(
      a.pings,
      (p) => `ping id ${(p as { id: number }).id}`,
      (p) => p,
    ),
    keyed(
      b.pings,
      (p) => `ping id ${(p as { id: number }).id}`,
      (p) => p,
    ),
  );
  keyedDiffs(out, ns, 'neigh-timer', a.nud, b.nud);
  keyedDiffs(
    out,
    ns,
    'icmp-ratelimit',
    [
      ['global', a.icmpGlobal],
      ...keyed(
        a.icmpPeers,
        (p) => `peer ${(p as { ip: string }).ip}`,
        (p) => p,
      ),
    ],
    [
      ['global', b.icmpGlobal],
      ...keyed(
        b.icmpPeers,
        (p) => `peer ${(p as { ip: string }).ip}`,
        (p) => p,
      ),
    ],
  );
  keyedDiffs(out, ns, 'netfilter', [['netfilter', a.netfilter]], [['netfilter', b.netfilter]]);
  keyedDiffs(out, ns, 'conntrack', [['conntrack', a.conntrack]], [['conntrack', b.conntrack]]);
}

/**
 * What differs between two worlds, object by object, in the order of a's namespaces: the
 * world's own fields, namespaces that came or went, then in each namespace its links (field by
 * field, stats included), addresses, routes, neighbours, FDB entries, sysctls, MIB counters, ARP
 * statistics, sockets, neighbour timers, ICMP rate-limit buckets, netfilter and conntrack (field
 * paths inside them), then the armed timers and the captures.
 */
export function diffWorlds(a: World, b: World): WorldDiff[] {
  const da = worldToData(a);
  const db = worldToData(b);
  const out: WorldDiff[] = [];
  for (const k of ['seed', 'now', 'capture', 'timerSeq'] as const)
    if (da[k] !== db[k]) out.push({ kind: 'world', key: k, before: da[k], after: db[k] });
  const bn = new Map(db.netns.map((n) => [n.name, n]));
  const an = new Map(da.netns.map((n) => [n.name, n]));
  for (const n of da.netns) {
    const other = bn.get(n.name);
    if (!other) out.push({ netns: n.name, kind: 'netns', key: n.name, before: n.role });
    else netnsDiffs(out, n, other);
  }
  for (const n of db.netns)
    if (!an.has(n.name)) out.push({ netns: n.name, kind: 'netns', key: n.name, after: n.role });
  const timers = (d: WorldData) =>
    keyed(
      d.timers,
      (t) => {
        const { at, ev } = t as { at: number; ev: { kind: string; netns: string } };
        return `${ev.kind} ${ev.netns} at ${at}`;
      },
      (t) => t,
    );
  keyedDiffs(out, undefined, 'timer', timers(da), timers(db));
  keyedDiffs(
    out,
    undefined,
    'capture',
    da.captures.map((c, i) => [String(i), c]),
    db.captures.map((c, i) => [String(i), c]),
  );
  return out;
}
