/**
 * `ip route`: list (main/local/all tables, iproute2's filters and the fields they suppress),
 * get (the model's routing decision, printed as the kernel's cloned route), and
 * add/del/change/replace/append/prepend/test through the kernel-exact netlink functions.
 * Ported from ip/iproute.c of iproute2 6.1.
 */
import { liveExceptions, pmtuException } from '../kernel/pmtu.ts';
import type { Route, RouteProto, RouteScope, RouteType } from '../kernel/fib.ts';
import { strerror, type Errno } from '../kernel/errno.ts';
import { carrierOk } from '../kernel/links.ts';
import { localRoutes, routeAdd, routeDel, type LocalRoute } from '../kernel/netlink.ts';
import type { Link } from '../kernel/objects.ts';
import { inPrefix, intToIp4, ip4ToInt } from '../wire/addr.ts';
import {
  Args,
  duparg2,
  getAddr,
  getPrefix,
  getUnsigned,
  invarg,
  matches,
  nodev,
  talk,
  type Ctx,
  type Prefix,
} from './iproute-common.ts';
import { PRINT_ANY, PRINT_FP, PRINT_JSON, Printer } from './iproute-print.ts';

const ROUTE_USAGE =
  'Usage: ip route { list | flush } SELECTOR\n' +
  '       ip route save SELECTOR\n' +
  '       ip route restore\n' +
  '       ip route showdump\n' +
  '       ip route get [ ROUTE_GET_FLAGS ] ADDRESS\n' +
  '                            [ from ADDRESS iif STRING ]\n' +
  '                            [ oif STRING ] [ tos TOS ]\n' +
  '                            [ mark NUMBER ] [ vrf NAME ]\n' +
  '                            [ uid NUMBER ] [ ipproto PROTOCOL ]\n' +
  '                            [ sport NUMBER ] [ dport NUMBER ]\n' +
  '       ip route { add | del | change | append | replace } ROUTE\n' +
  'SELECTOR := [ root PREFIX ] [ match PREFIX ] [ exact PREFIX ]\n' +
  '            [ table TABLE_ID ] [ vrf NAME ] [ proto RTPROTO ]\n' +
  '            [ type TYPE ] [ scope SCOPE ]\n' +
  'ROUTE := NODE_SPEC [ INFO_SPEC ]\n' +
  'NODE_SPEC := [ TYPE ] PREFIX [ tos TOS ]\n' +
  '             [ table TABLE_ID ] [ proto RTPROTO ]\n' +
  '             [ scope SCOPE ] [ metric METRIC ]\n' +
  '             [ ttl-propagate { enabled | disabled } ]\n' +
  'INFO_SPEC := { NH | nhid ID } OPTIONS FLAGS [ nexthop NH ]...\n' +
  'NH := [ encap ENCAPTYPE ENCAPHDR ] [ via [ FAMILY ] ADDRESS ]\n' +
  '      [ dev STRING ] [ weight NUMBER ] NHFLAGS\n' +
  'FAMILY := [ inet | inet6 | mpls | bridge | link ]\n' +
  'OPTIONS := FLAGS [ mtu NUMBER ] [ advmss NUMBER ] [ as [ to ] ADDRESS ]\n' +
  '           [ rtt TIME ] [ rttvar TIME ] [ reordering NUMBER ]\n' +
  '           [ window NUMBER ] [ cwnd NUMBER ] [ initcwnd NUMBER ]\n' +
  '           [ ssthresh NUMBER ] [ realms REALM ] [ src ADDRESS ]\n' +
  '           [ rto_min TIME ] [ hoplimit NUMBER ] [ initrwnd NUMBER ]\n' +
  '           [ features FEATURES ] [ quickack BOOL ] [ congctl NAME ]\n' +
  '           [ pref PREF ] [ expires TIME ] [ fastopen_no_cookie BOOL ]\n' +
  'TYPE := { unicast | local | broadcast | multicast | throw |\n' +
  '          unreachable | prohibit | blackhole | nat }\n' +
  'TABLE_ID := [ local | main | default | all | NUMBER ]\n' +
  'SCOPE := [ host | link | global | NUMBER ]\n' +
  'NHFLAGS := [ onlink | pervasive ]\n' +
  'RTPROTO := [ kernel | boot | static | NUMBER ]\n' +
  'PREF := [ low | medium | high ]\n' +
  'TIME := NUMBER[s|ms]\n' +
  'BOOL := [1|0]\n' +
  'FEATURES := ecn\n' +
  'ENCAPTYPE := [ mpls | ip | ip6 | seg6 | seg6local | rpl | ioam6 | xfrm ]\n' +
  'ENCAPHDR := [ MPLSLABEL | SEG6HDR | SEG6LOCAL | IOAM6HDR | XFRMINFO ]\n' +
  'SEG6HDR := [ mode SEGMODE ] segs ADDR1,ADDRi,ADDRn [hmac HMACKEYID] [cleanup]\n' +
  'SEGMODE := [ encap | encap.red | inline | l2encap | l2encap.red ]\n' +
  'SEG6LOCAL := action ACTION [ OPTIONS ] [ count ]\n' +
  'ACTION := { End | End.X | End.T | End.DX2 | End.DX6 | End.DX4 |\n' +
  '            End.DT6 | End.DT4 | End.DT46 | End.B6 | End.B6.Encaps |\n' +
  '            End.BM | End.S | End.AS | End.AM | End.BPF }\n' +
  'OPTIONS := OPTION [ OPTIONS ]\n' +
  'OPTION := { flavors FLAVORS | srh SEG6HDR | nh4 ADDR | nh6 ADDR | iif DEV | oif DEV |\n' +
  '            table TABLEID | vrftable TABLEID | endpoint PROGNAME }\n' +
  'FLAVORS := { FLAVOR[,FLAVOR] }\n' +
  'FLAVOR := { psp | usp | usd | next-csid }\n' +
  'IOAM6HDR := trace prealloc type IOAM6_TRACE_TYPE ns IOAM6_NAMESPACE size IOAM6_TRACE_SIZE\n' +
  'XFRMINFO := if_id IF_ID [ link_dev LINK ]\n' +
  'ROUTE_GET_FLAGS := [ fibmatch ]\n';

function usage(c: Ctx): never {
  c.p.eprintf('%s', ROUTE_USAGE);
  return c.exit(-1);
}

/* ------------------------------------------------------------------ names (lib/rt_names.c) */

const PROTOS: Record<number, string> = {
  0: 'unspec',
  1: 'redirect',
  2: 'kernel',
  3: 'boot',
  4: 'static',
  8: 'gated',
  9: 'ra',
  10: 'mrt',
  11: 'zebra',
  12: 'bird',
  13: 'dnrouted',
  14: 'xorp',
  15: 'ntk',
  16: 'dhcp',
  18: 'keepalived',
  42: 'babel',
  186: 'bgp',
  187: 'isis',
  188: 'ospf',
  189: 'rip',
  192: 'eigrp',
};
const PROTO_NUM: Record<RouteProto, number> = { kernel: 2, boot: 3, static: 4, bird: 12, dhcp: 16, 80: 80 };

function protoA2n(arg: string): number | undefined {
  for (const [n, name] of Object.entries(PROTOS)) if (name === arg) return Number(n);
  const v = getUnsigned(arg, 0);
  return v !== undefined && v <= 255 ? v : undefined;
}

function protoN2a(n: number): string {
  return PROTOS[n] ?? String(n);
}

const SCOPES: Record<number, string> = { 0: 'global', 200: 'site', 253: 'link', 254: 'host', 255: 'nowhere' };
const SCOPE_NUM: Record<RouteScope, number> = { global: 0, link: 253, host: 254 };

export function scopeA2n(arg: string): number | undefined {
  for (const [n, name] of Object.entries(SCOPES)) if (name === arg) return Number(n);
  const { value, used } = { value: Number(arg), used: /^\d+$/.test(arg) ? arg.length : 0 };
  return used && value <= 255 ? value : undefined;
}

/** a `scope` filter argument of ip route/addr show: a scope, or "all" (any scope: mask 0) */
export function scopeFilter(c: Ctx, f: { scope: number; scopemask: number }, arg: string): void {
  f.scopemask = -1;
  const sc = scopeA2n(arg);
  if (sc !== undefined) {
    f.scope = sc;
    return;
  }
  if (arg !== 'all') invarg(c, 'invalid "scope"\n', arg);
  f.scope = 255;
  f.scopemask = 0;
}

function scopeN2a(n: number): string {
  return SCOPES[n] ?? String(n);
}

/** RTN_* */
const RTN = {
  unspec: 0,
  unicast: 1,
  local: 2,
  broadcast: 3,
  anycast: 4,
  multicast: 5,
  blackhole: 6,
  unreachable: 7,
  prohibit: 8,
  throw: 9,
  nat: 10,
  xresolve: 11,
} as const;
const RTN_NAME = Object.fromEntries(Object.entries(RTN).map(([k, v]) => [v, k === 'unspec' ? 'none' : k]));

function rtntypeA2n(arg: string): number | undefined {
  if (arg === 'local') return RTN.local;
  if (arg === 'nat') return RTN.nat;
  if (matches(arg, 'broadcast') || arg === 'brd') return RTN.broadcast;
  if (matches(arg, 'anycast')) return RTN.anycast;
  if (matches(arg, 'multicast')) return RTN.multicast;
  if (matches(arg, 'prohibit')) return RTN.prohibit;
  if (matches(arg, 'unreachable')) return RTN.unreachable;
  if (matches(arg, 'blackhole')) return RTN.blackhole;
  if (matches(arg, 'xresolve')) return RTN.xresolve;
  if (matches(arg, 'unicast')) return RTN.unicast;
  if (arg === 'throw') return RTN.throw;
  const v = getUnsigned(arg, 0);
  return v !== undefined && v <= 255 ? v : undefined;
}

const TABLES: Record<string, number> = { unspec: 0, default: 253, main: 254, local: 255 };

function tableA2n(arg: string): number | undefined {
  if (arg in TABLES) return TABLES[arg];
  return getUnsigned(arg, 0);
}

function tableN2a(n: number): string {
  return Object.entries(TABLES).find(([, v]) => v === n)?.[0] ?? String(n);
}

/* ------------------------------------------------------------------ the route messages a dump returns */

interface RtMsg {
  type: number;
  table: number;
  protocol: number;
  scope: number;
  dst?: number;
  dstLen: number;
  src?: string;
  srcLen: number;
  gateway?: string;
  oif?: string;
  prefsrc?: string;
  priority?: number;
  /** RTNH_F_* / RTM_F_* as printed: onlink, linkdown */
  flags: { onlink?: boolean; linkdown?: boolean; cloned?: boolean };
  uid?: number;
  cacheFlags?: string[];
  /** RTA_CACHEINFO's expiry in seconds (a PMTU exception's countdown) and RTA_METRICS' mtu */
  expires?: number;
  mtu?: number;
  iif?: string;
}

/** the RTM_NEWROUTE message of a main-table route; `linkdown` when its nexthop has no carrier */
function routeMsg(r: Route, linkdown: boolean): RtMsg {
  return {
    type: RTN[r.type],
    table: 254,
    protocol: PROTO_NUM[r.proto],
    scope: SCOPE_NUM[r.scope],
    dst: r.len ? r.dst : undefined,
    dstLen: r.len,
    srcLen: 0,
    gateway: r.via,
    oif: r.dev,
    prefsrc: r.src,
    priority: r.metric || undefined,
    flags: { onlink: r.onlink, linkdown },
  };
}

function fromRoute(c: Ctx, r: Route): RtMsg {
  const dev = r.dev ? c.netns.link(r.dev) : undefined;
  return routeMsg(r, !!dev && dev.up && !carrierOk(dev));
}

function fromLocal(c: Ctx, r: LocalRoute): RtMsg {
  const dev = c.netns.link(r.dev);
  return {
    type: RTN[r.type],
    table: 255,
    protocol: 2,
    scope: SCOPE_NUM[r.scope],
    dst: r.dst,
    dstLen: r.len,
    srcLen: 0,
    oif: r.dev,
    prefsrc: r.src,
    flags: { linkdown: !!dev && dev.up && !carrierOk(dev) && r.type !== 'local' },
  };
}

/* ------------------------------------------------------------------ filter (struct filter of iproute.c) */

interface FPrefix {
  family: boolean;
  bitlen: number;
  lenGiven: boolean;
  addr: number;
}

interface Filter {
  tb: number;
  cloned: boolean;
  protocol: number;
  protocolmask: number;
  scope: number;
  scopemask: number;
  typemask: number;
  oif: string;
  oifmask: number;
  iifmask: number;
  metric: number;
  metricmask: number;
  rdst?: FPrefix;
  mdst?: FPrefix;
  rvia?: FPrefix;
  rprefsrc?: FPrefix;
}

function fprefix(p: Prefix): FPrefix {
  return {
    family: !p.isDefault,
    bitlen: p.bitlen,
    lenGiven: p.lenGiven,
    addr: p.addr ? ip4ToInt(p.addr) : 0,
  };
}

/** inet_addr_match: 0 when the first `bits` bits agree */
function addrMatch(a: number, b: number, bits: number): boolean {
  if (bits <= 0) return true;
  return inPrefix(a, b, Math.min(bits, 32));
}

function filterMsg(f: Filter, r: RtMsg): boolean {
  if (f.tb > 0 && f.tb !== r.table) return false;
  if ((f.protocol ^ r.protocol) & f.protocolmask) return false;
  if ((f.scope ^ r.scope) & f.scopemask) return false;
  if (f.typemask && !(f.typemask & (1 << r.type))) return false;
  if (f.rdst && (f.rdst.family || f.rdst.lenGiven) && f.rdst.bitlen > r.dstLen) return false;
  if (f.mdst && (f.mdst.family || f.mdst.lenGiven) && f.mdst.bitlen >= 0 && f.mdst.bitlen < r.dstLen)
    return false;
  const dst = r.dst ?? 0;
  if (f.rdst && (f.rdst.family || f.rdst.lenGiven) && !addrMatch(dst, f.rdst.addr, f.rdst.bitlen))
    return false;
  if (f.mdst && (f.mdst.family || f.mdst.lenGiven) && !addrMatch(dst, f.mdst.addr, r.dstLen)) return false;
  if (f.rvia?.family && !addrMatch(r.gateway ? ip4ToInt(r.gateway) : 0, f.rvia.addr, f.rvia.bitlen))
    return false;
  if (
    f.rprefsrc?.family &&
    !addrMatch(r.prefsrc ? ip4ToInt(r.prefsrc) : 0, f.rprefsrc.addr, f.rprefsrc.bitlen)
  )
    return false;
  if (f.oifmask && r.oif !== f.oif) return false;
  if (f.metricmask && (r.priority ?? 0) !== f.metric) return false;
  return true;
}

function newFilter(): Filter {
  return {
    tb: 0,
    cloned: false,
    protocol: 0,
    protocolmask: 0,
    scope: 0,
    scopemask: 0,
    typemask: 0,
    oif: '',
    oifmask: 0,
    iifmask: 0,
    metric: 0,
    metricmask: 0,
  };
}

/* ------------------------------------------------------------------ print_route */

/** what print_route needs: the printer and -details */
interface PrintCtx {
  p: Printer;
  opts: { details: number };
}

function printRoute(c: PrintCtx, f: Filter, r: RtMsg): void {
  const p = c.p;
  const details = c.opts.details;
  p.openObject();
  if ((r.type !== RTN.unicast || details > 0) && (!f.typemask || f.typemask & (1 << r.type)))
    p.string(PRINT_ANY, 'type', '%s ', RTN_NAME[r.type] ?? String(r.type));
  let b1: string;
  if (r.dst !== undefined) b1 = r.dstLen !== 32 ? `${intToIp4(r.dst)}/${r.dstLen}` : intToIp4(r.dst);
  else if (r.dstLen) b1 = `0/${r.dstLen} `;
  else b1 = 'default';
  p.string(PRINT_ANY, 'dst', '%s ', b1);
  if (r.src !== undefined)
    p.string(PRINT_ANY, 'from', 'from %s ', r.srcLen !== 32 ? `${r.src}/${r.srcLen}` : r.src);
  if (r.gateway && f.rvia?.bitlen !== 32) {
    if (p.isJson()) p.string(PRINT_JSON, 'gateway', undefined, r.gateway);
    else {
      p.printf('via ');
      p.string(PRINT_FP, undefined, '%s ', r.gateway);
    }
  }
  if (r.oif && f.oifmask !== -1) {
    if (p.isJson()) p.string(PRINT_JSON, 'dev', undefined, r.oif);
    else p.printf('dev %s ', r.oif);
  }
  if (r.table && (r.table !== 254 || details > 0) && !f.tb)
    p.string(PRINT_ANY, 'table', 'table %s ', tableN2a(r.table));
  if (!r.flags.cloned) {
    if ((r.protocol !== 3 || details > 0) && f.protocolmask !== -1)
      p.string(PRINT_ANY, 'protocol', 'proto %s ', protoN2a(r.protocol));
    if ((r.scope !== 0 || details > 0) && f.scopemask !== -1)
      p.string(PRINT_ANY, 'scope', 'scope %s ', scopeN2a(r.scope));
  }
  if (r.prefsrc && f.rprefsrc?.bitlen !== 32) {
    if (p.isJson()) p.string(PRINT_JSON, 'prefsrc', undefined, r.prefsrc);
    else {
      p.printf('src ');
      p.string(PRINT_FP, undefined, '%s ', r.prefsrc);
    }
  }
  if (r.priority !== undefined && f.metricmask !== -1) p.num(PRINT_ANY, 'metric', 'metric %u ', r.priority);
  p.openArray(PRINT_JSON, p.isJson() ? 'flags' : '');
  if (r.flags.onlink) p.string(PRINT_ANY, undefined, '%s ', 'onlink');
  if (r.flags.linkdown) p.string(PRINT_ANY, undefined, '%s ', 'linkdown');
  p.closeArray(PRINT_JSON, undefined);
  if (r.uid !== undefined) p.num(PRINT_ANY, 'uid', 'uid %u ', r.uid);
  if (r.flags.cloned) {
    const flags = r.cacheFlags ?? [];
    if (p.isJson()) {
      p.jsonName('cache');
      p.jsonStartArray();
      for (const fl of flags) p.jsonString(fl);
      p.jsonEndArray();
    } else {
      p.printf('%s    cache ', p.sl);
      if (flags.length) p.printf('<%s> ', flags.join(','));
    }
    if (r.expires) p.num(PRINT_ANY, 'expires', 'expires %dsec ', r.expires);
  }
  if (r.mtu !== undefined) {
    if (p.isJson()) {
      p.jsonName('metrics');
      p.jsonStartArray();
      p.openObject();
      p.num(PRINT_JSON, 'mtu', undefined, r.mtu);
      p.closeObject();
      p.jsonEndArray();
    } else p.printf('mtu %u ', r.mtu);
  }
  if (r.iif && f.iifmask !== -1) {
    if (p.isJson()) p.string(PRINT_JSON, 'iif', undefined, r.iif);
    else p.printf('iif %s ', r.iif);
  }
  p.string(PRINT_FP, undefined, '\n', undefined);
  p.closeObject();
}

/* ------------------------------------------------------------------ ip route list */

function routeList(c: Ctx, a: Args, flush: boolean): number {
  const f = newFilter();
  f.tb = 254;
  if (flush && !a.more) {
    c.p.eprintf('"ip route flush" requires arguments.\n');
    return -1;
  }
  let od: string | undefined;
  let id: string | undefined;
  for (; a.more; a.advance()) {
    const w = a.cur;
    if (matches(w, 'table')) {
      const arg = a.next();
      const tid = tableA2n(arg);
      if (tid === undefined) {
        if (arg === 'all') f.tb = 0;
        else if (arg === 'cache') f.cloned = true;
        else if (arg === 'help') usage(c);
        else invarg(c, 'table id value is invalid\n', arg);
      } else f.tb = tid;
    } else if (matches(w, 'vrf')) unmodelled(c, w);
    else if (matches(w, 'cached') || matches(w, 'cloned')) f.cloned = true;
    else if (w === 'tos' || matches(w, 'dsfield')) unmodelled(c, w);
    else if (matches(w, 'protocol')) {
      const arg = a.next();
      f.protocolmask = -1;
      const prot = protoA2n(arg);
      if (prot === undefined) {
        if (arg !== 'all') invarg(c, 'invalid "protocol"\n', arg);
        f.protocol = 0;
        f.protocolmask = 0;
      } else f.protocol = prot;
    } else if (matches(w, 'scope')) scopeFilter(c, f, a.next());
    else if (matches(w, 'type')) {
      const arg = a.next();
      const t = rtntypeA2n(arg);
      if (t === undefined) invarg(c, 'node type value is invalid\n', arg);
      f.typemask = 1 << t;
    } else if (w === 'dev' || w === 'oif') od = a.next();
    else if (w === 'iif') id = a.next();
    else if (w === 'mark') {
      const arg = a.next();
      if (getUnsigned(arg, 0) === undefined) invarg(c, 'invalid mark value', arg);
    } else if (matches(w, 'metric') || matches(w, 'priority') || w === 'preference') {
      const arg = a.next();
      const m = getUnsigned(arg, 0);
      if (m === undefined) invarg(c, '"metric" value is invalid\n', arg);
      f.metric = m;
      f.metricmask = -1;
    } else if (w === 'via') f.rvia = fprefix(getPrefix(c, a.next()));
    else if (w === 'src') f.rprefsrc = fprefix(getPrefix(c, a.next()));
    else if (matches(w, 'realms')) unmodelled(c, w);
    else if (matches(w, 'from')) {
      a.next();
      // RTA_SRC selectors: IPv4 routes here have no source prefix (/0), which every selector covers
      getPrefix(
        c,
        matches(a.cur, 'root') || matches(a.cur, 'match') || matches(a.cur, 'exact') ? a.next() : a.cur,
      );
    } else {
      let arg = w;
      if (matches(arg, 'to')) arg = a.next();
      if (matches(arg, 'root')) f.rdst = fprefix(getPrefix(c, a.next()));
      else if (matches(arg, 'match')) f.mdst = fprefix(getPrefix(c, a.next()));
      else {
        if (matches(arg, 'exact')) arg = a.next();
        f.mdst = fprefix(getPrefix(c, arg));
        f.rdst = f.mdst;
      }
    }
  }
  if (id) {
    if (!c.nameToIndex(id)) return nodev(c, id);
    f.iifmask = -1;
  }
  if (od) {
    if (!c.nameToIndex(od)) return nodev(c, od);
    f.oif = od;
    f.oifmask = -1;
  }
  if (f.tb && f.tb !== 254 && f.tb !== 255) {
    c.p.eprintf('Error: ipv4: FIB table does not exist.\nDump terminated\n');
    return -2;
  }
  if (f.cloned) {
    // IPv4 has no route cache since 3.6: what is listed are the FIB nexthop exceptions (PMTU)
    c.p.newJsonObj();
    const now = c.world.now;
    for (const { route, e } of liveExceptions(c.netns, now)) {
      if (f.oif && route.dev !== f.oif) continue;
      printRoute(c, f, {
        type: RTN.unicast,
        table: 254,
        protocol: 0,
        scope: 0,
        dst: ip4ToInt(e.dst),
        dstLen: 32,
        srcLen: 0,
        gateway: route.via,
        oif: route.dev,
        flags: { cloned: true },
        expires: cacheSeconds(e.expires, now),
        mtu: e.mtu,
      });
    }
    c.p.deleteJsonObj();
    return 0;
  }
  const msgs: RtMsg[] = [];
  // the model is IPv4 only: another family (-6, -M, -B) dumps nothing
  if (c.opts.family === 'unspec' || c.opts.family === 'inet') {
    msgs.push(...c.netns.fib.list().map((r) => fromRoute(c, r)));
    msgs.push(...localRoutes(c.netns).map((r) => fromLocal(c, r)));
  }
  const shown = msgs.filter((r) => filterMsg(f, r));
  if (flush) return routeFlush(c, shown);
  c.p.newJsonObj();
  for (const r of shown) printRoute(c, f, r);
  c.p.deleteJsonObj();
  return 0;
}

function routeFlush(c: Ctx, shown: RtMsg[]): number {
  for (const r of shown) {
    if (r.table !== 254) continue;
    const prefix = r.dst === undefined ? 'default' : `${intToIp4(r.dst)}/${r.dstLen}`;
    talk(c, () =>
      routeDel(c.netns, prefix, {
        type: (RTN_NAME[r.type] as RouteType) ?? undefined,
        dev: r.oif,
        via: r.gateway,
        metric: r.priority,
      }),
    );
  }
  return 0;
}

/* ------------------------------------------------------------------ ip route add/del/… */

interface ModFlags {
  create: boolean;
  excl: boolean;
  replace: boolean;
  append: boolean;
}

function unmodelled(c: Ctx, what: string): never {
  c.p.eprintf('podwalk: "%s" is not modelled by podwalk\'s ip route\n', what);
  return c.exit(2);
}

function routeModify(c: Ctx, a: Args, del: boolean, nl: ModFlags): number {
  let src: string | undefined;
  let via: string | undefined;
  let metric: number | undefined;
  let scope: number | undefined;
  let proto: number | undefined = del ? undefined : 3;
  let table: number | undefined;
  let onlink = false;
  let d: string | undefined;
  let type: number | undefined;
  let dst: Prefix | undefined;
  for (; a.more; a.advance()) {
    const w = a.cur;
    // the order of iproute_modify's tests: prefix matches make it matter ("p" is priority, "d" dsfield)
    if (w === 'src') src = getAddr(c, a.next());
    else if (w === 'as') unmodelled(c, w);
    else if (w === 'via') {
      if (via) invarg(c, 'use nexthop syntax to specify multiple via\n', w);
      let arg = a.next();
      if (arg === 'inet') arg = a.next();
      via = getAddr(c, arg);
    } else if (w === 'from') {
      const p = getPrefix(c, a.next());
      if (p.bitlen) unmodelled(c, 'from');
    } else if (w === 'tos' || matches(w, 'dsfield') || w === 'expires') unmodelled(c, w);
    else if (matches(w, 'metric') || matches(w, 'priority') || w === 'preference') {
      const arg = a.next();
      metric = getUnsigned(arg, 0);
      if (metric === undefined) invarg(c, '"metric" value is invalid\n', arg);
    } else if (w === 'scope') {
      const arg = a.next();
      scope = scopeA2n(arg);
      if (scope === undefined) invarg(c, 'invalid "scope" value\n', arg);
    } else if (
      ['mtu', 'hoplimit', 'advmss', 'rtt', 'rto_min'].includes(w) ||
      [
        'reordering',
        'window',
        'cwnd',
        'initcwnd',
        'initrwnd',
        'features',
        'quickack',
        'congctl',
        'rttvar',
        'ssthresh',
        'realms',
      ].some((x) => matches(w, x))
    )
      unmodelled(c, w);
    else if (w === 'onlink') onlink = true;
    else if (w === 'nexthop' || w === 'nhid') unmodelled(c, w);
    else if (matches(w, 'protocol')) {
      const arg = a.next();
      proto = protoA2n(arg);
      if (proto === undefined) invarg(c, '"protocol" value is invalid\n', arg);
    } else if (matches(w, 'table')) {
      const arg = a.next();
      table = tableA2n(arg);
      if (table === undefined) invarg(c, '"table" value is invalid\n', arg);
    } else if (matches(w, 'vrf')) unmodelled(c, w);
    else if (w === 'dev' || w === 'oif') d = a.next();
    else if (matches(w, 'pref') || w === 'encap' || w === 'ttl-propagate' || matches(w, 'fastopen_no_cookie'))
      unmodelled(c, w);
    else {
      let arg = w;
      if (arg === 'to') arg = a.next();
      if ((arg[0] < '0' || arg[0] > '9') && rtntypeA2n(arg) !== undefined) {
        type = rtntypeA2n(arg);
        arg = a.next();
      }
      if (matches(arg, 'help')) usage(c);
      if (dst) duparg2(c, 'to', arg);
      dst = getPrefix(c, arg);
    }
  }
  if (!dst) usage(c);
  if (d && !c.nameToIndex(d)) return nodev(c, d);
  if (
    table === undefined &&
    (type === RTN.local || type === RTN.broadcast || type === RTN.nat || type === RTN.anycast)
  )
    table = 255;
  if (table !== undefined && table !== 254) unmodelled(c, `table ${tableN2a(table)}`);
  const typeName = type === undefined ? (del ? undefined : 'unicast') : RTN_NAME[type];
  if (typeName && !['unicast', 'blackhole', 'unreachable', 'prohibit'].includes(typeName))
    unmodelled(c, `type ${typeName}`);
  if (scope === undefined && !del) {
    if (type === RTN.local || type === RTN.nat) scope = 254;
    else if (type === RTN.broadcast || type === RTN.multicast || type === RTN.anycast) scope = 253;
    else if ((type ?? RTN.unicast) === RTN.unicast) scope = via ? 0 : 253;
    else scope = 0;
  }
  const protoName =
    proto === undefined
      ? undefined
      : (Object.entries(PROTO_NUM).find(([, n]) => n === proto)?.[0] as RouteProto);
  if (proto !== undefined && !protoName) unmodelled(c, `proto ${protoN2a(proto)}`);
  const scopeName =
    scope === undefined
      ? undefined
      : (Object.entries(SCOPE_NUM).find(([, n]) => n === scope)?.[0] as RouteScope);
  if (scope !== undefined && scope !== 255 && !scopeName) unmodelled(c, `scope ${scopeN2a(scope)}`);
  const prefix = dst.isDefault ? 'default' : `${dst.addr}/${dst.bitlen}`;
  const ok = talk(c, () => {
    if (del)
      routeDel(c.netns, prefix, {
        type: typeName as RouteType | undefined,
        scope: scope === 255 ? undefined : scopeName,
        src,
        proto: protoName,
        metric,
        dev: d,
        via,
      });
    else
      routeAdd(c.netns, {
        prefix,
        type: typeName as RouteType,
        via,
        dev: d,
        proto: protoName,
        scope: scopeName,
        src,
        metric,
        onlink,
        nl,
      });
  });
  return ok ? 0 : -2;
}

/* ------------------------------------------------------------------ ip route get */

function lookupMain(c: Ctx, dst: number, oif?: string): Route | undefined {
  const usable = (r: Route) => r.type !== 'unicast' || (!!r.dev && !!c.netns.link(r.dev)?.up);
  return c.netns.fib.lookup(dst, oif ? (r) => usable(r) && r.dev === oif : usable);
}

function localHit(c: Ctx, dst: number): LocalRoute | undefined {
  return localRoutes(c.netns)
    .filter((r) => inPrefix(dst, r.dst, r.len))
    .sort((a, b) => b.len - a.len)[0];
}

/** fib_props: the error a lookup that ends on a route of this type returns */
const ERRNO_OF_TYPE: Partial<Record<RouteType, Errno>> = {
  blackhole: 'EINVAL',
  unreachable: 'EHOSTUNREACH',
  prohibit: 'EACCES',
};

function rtnlFail(c: Ctx, e: Errno): number {
  c.p.eprintf('RTNETLINK answers: %s\n', strerror(e));
  return -2;
}

/** inet_select_addr via the model's source selection */
function sourceFor(c: Ctx, dev: Link, towards: string, r: Route): string {
  return r.src ?? c.cluster.stack.selectSource(c.netns, dev, towards) ?? '0.0.0.0';
}

function routeGet(c: Ctx, a: Args): number {
  let from: string | undefined;
  let idev: string | undefined;
  let odev: string | undefined;
  let dstArg: Prefix | undefined;
  let fibmatch = false;
  for (; a.more; a.advance()) {
    const w = a.cur;
    if (matches(w, 'from')) {
      const arg = a.next();
      if (matches(arg, 'help')) usage(c);
      const p = getPrefix(c, arg);
      from = p.addr;
    } else if (matches(w, 'iif')) idev = a.next();
    else if (matches(w, 'oif') || w === 'dev') odev = a.next();
    else if (matches(w, 'fibmatch')) fibmatch = true;
    else if (matches(w, 'connected') || matches(w, 'notify')) continue;
    else if (
      w === 'tos' ||
      matches(w, 'dsfield') ||
      matches(w, 'mark') ||
      matches(w, 'vrf') ||
      matches(w, 'uid') ||
      w === 'as' ||
      matches(w, 'sport') ||
      matches(w, 'dport') ||
      matches(w, 'ipproto')
    ) {
      a.next();
    } else {
      let arg = w;
      if (arg === 'to') arg = a.next();
      if (matches(arg, 'help')) usage(c);
      const p = getPrefix(c, arg);
      if (p.bitlen !== 32 && !p.isDefault)
        c.p.eprintf('Warning: /%u as prefix is invalid, only /32 (or none) is supported.\n', p.bitlen);
      dstArg = p;
    }
  }
  if (!dstArg) {
    c.p.eprintf('need at least a destination address\n');
    return -1;
  }
  if (idev && !c.nameToIndex(idev)) return nodev(c, idev);
  if (odev && !c.nameToIndex(odev)) return nodev(c, odev);
  const dstIp = dstArg.addr ?? '0.0.0.0';
  const dst = ip4ToInt(dstIp);
  const f = newFilter();
  if (fibmatch) {
    const l = localHit(c, dst);
    const m = lookupMain(c, dst, odev);
    c.p.newJsonObj();
    // local and main share one trie (no policy rules): the match is reported as the main table's
    if (l && (!m || l.len >= m.len)) printRoute(c, f, { ...fromLocal(c, l), table: 254 });
    else if (m) printRoute(c, f, fromRoute(c, m));
    else {
      c.p.deleteJsonObj();
      return rtnlFail(c, 'ENETUNREACH');
    }
    c.p.deleteJsonObj();
    return 0;
  }
  const msg: RtMsg = {
    type: RTN.unicast,
    table: 254,
    protocol: 0,
    scope: 0,
    dst,
    dstLen: 32,
    srcLen: 0,
    flags: { cloned: true },
  };
  if (from) {
    msg.src = from;
    msg.srcLen = 32;
  }
  if (idev) {
    const r = routeInput(c, msg, dst, from ?? '0.0.0.0', c.netns.link(idev)!);
    if (r !== 0) return r;
  } else {
    if (from) {
      const s = ip4ToInt(from);
      if (s >>> 28 === 0xe || s === 0xffffffff || s >>> 24 === 0) return rtnlFail(c, 'EINVAL');
      if (localHit(c, s)?.type !== 'local') return rtnlFail(c, 'ENETUNREACH');
    }
    const l = localHit(c, dst);
    if (l && l.type === 'local') {
      msg.type = RTN.local;
      msg.oif = 'lo';
      msg.cacheFlags = ['local'];
      if (!from) msg.prefsrc = dstIp;
    } else {
      let r = lookupMain(c, dst, odev);
      if (!r && odev && c.netns.link(odev)?.up) {
        // no route out of oif: the kernel assumes the destination is on-link there
        r = {
          dst,
          len: 32,
          type: 'unicast',
          dev: odev,
          proto: 'boot',
          scope: 'link',
          metric: 0,
          onlink: false,
        };
      }
      if (!r) return rtnlFail(c, 'ENETUNREACH');
      if (r.type !== 'unicast') return rtnlFail(c, ERRNO_OF_TYPE[r.type]!);
      const dev = c.netns.link(r.dev!)!;
      msg.oif = dev.name;
      msg.gateway = r.via;
      if (l?.type === 'broadcast') {
        msg.type = RTN.broadcast;
        msg.cacheFlags = ['local', 'brd'];
        msg.gateway = undefined;
      }
      if (!from) msg.prefsrc = sourceFor(c, dev, r.via ?? dstIp, r);
      const e = pmtuException(c.netns, dstIp, r, c.world.now);
      if (e) {
        msg.expires = cacheSeconds(e.expires, c.world.now);
        msg.mtu = e.mtu;
      }
    }
    msg.uid = 0;
  }
  c.p.newJsonObj();
  printRoute(c, f, msg);
  c.p.deleteJsonObj();
  return 0;
}

/** rta_expires in seconds as iproute2 prints it (jiffies left, divided down) */
function cacheSeconds(expires: number, now: number): number {
  return Math.max(0, Math.floor((expires - now) / 1e6));
}

/** ip_route_input_slow for `ip route get … iif DEV` */
function routeInput(c: Ctx, msg: RtMsg, dst: number, from: string, iif: Link): number {
  const src = ip4ToInt(from);
  const ns = c.netns;
  msg.iif = iif.name;
  const martian = (s: number) => s >>> 28 === 0xe || s === 0xffffffff || s >>> 24 === 0;
  if (martian(src)) return rtnlFail(c, 'EINVAL');
  if (dst >>> 24 === 0 || dst >>> 24 === 127) return rtnlFail(c, 'EINVAL');
  if (src >>> 24 === 127) return rtnlFail(c, 'EINVAL');
  const forward = ns.sysctlNum('net.ipv4.ip_forward') === 1;
  const l = localHit(c, dst);
  const main = lookupMain(c, dst);
  if (l?.type === 'local') {
    if (localHit(c, src)?.type === 'local') return rtnlFail(c, 'EINVAL');
    msg.type = RTN.local;
    msg.oif = 'lo';
    msg.cacheFlags = ['local'];
    return 0;
  }
  if (!main && !l) return rtnlFail(c, forward ? 'ENETUNREACH' : 'EHOSTUNREACH');
  if (main && main.type !== 'unicast') {
    if (!forward) return rtnlFail(c, 'EHOSTUNREACH');
    return rtnlFail(c, ERRNO_OF_TYPE[main.type]!);
  }
  if (!forward) return rtnlFail(c, 'EHOSTUNREACH');
  if (localHit(c, src)?.type === 'local') return rtnlFail(c, 'EINVAL');
  const rp = ns.rpFilter(iif.name);
  if (rp) {
    const back = lookupMain(c, src);
    if (!back || (rp === 1 && back.dev !== iif.name)) return rtnlFail(c, 'EXDEV');
  }
  const r = main!;
  msg.oif = r.dev;
  msg.gateway = r.via;
  if (r.dev === iif.name) {
    const back = lookupMain(c, src, iif.name);
    if (back && !back.via) msg.cacheFlags = ['redirect'];
  }
  return 0;
}

/* ------------------------------------------------------------------ do_iproute */

export function doIproute(c: Ctx, argv: readonly string[]): number {
  const a = new Args(c, argv);
  if (!a.more) return routeList(c, a, false);
  const w = a.cur;
  a.advance();
  if (matches(w, 'add'))
    return routeModify(c, a, false, { create: true, excl: true, replace: false, append: false });
  if (matches(w, 'change') || w === 'chg')
    return routeModify(c, a, false, { create: false, excl: false, replace: true, append: false });
  if (matches(w, 'replace'))
    return routeModify(c, a, false, { create: true, excl: false, replace: true, append: false });
  if (matches(w, 'prepend'))
    return routeModify(c, a, false, { create: true, excl: false, replace: false, append: false });
  if (matches(w, 'append'))
    return routeModify(c, a, false, { create: true, excl: false, replace: false, append: true });
  if (matches(w, 'test'))
    return routeModify(c, a, false, { create: false, excl: true, replace: false, append: false });
  if (matches(w, 'delete'))
    return routeModify(c, a, true, { create: false, excl: false, replace: false, append: false });
  if (matches(w, 'list') || matches(w, 'show') || matches(w, 'lst')) return routeList(c, a, false);
  if (matches(w, 'get')) return routeGet(c, a);
  if (matches(w, 'flush')) return routeList(c, a, true);
  if (matches(w, 'save') || matches(w, 'restore') || matches(w, 'showdump')) {
    c.p.eprintf('podwalk: "ip route %s" is not emulated\n', w);
    return c.exit(2);
  }
  if (matches(w, 'help')) usage(c);
  c.p.eprintf('Command "%s" is unknown, try "ip route help".\n', w);
  return c.exit(-1);
}

/**
 * One route of the main table as `ip route show` prints it (print_route, without the newline):
 * the entry a trace step shows is printed by the tool's own code. `linkdown` as the kernel flagged
 * the nexthop when the route was used.
 */
export function routeEntryText(r: Route, linkdown = false): string {
  const c: PrintCtx = { p: new Printer(false, false), opts: { details: 0 } };
  const f = newFilter();
  f.tb = 254;
  printRoute(c, f, routeMsg(r, linkdown));
  return c.p.stdout.replace(/ ?\n$/, '');
}
