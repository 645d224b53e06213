/**
 * IPv4 FIB: the main routing table of a network namespace, with Linux's selection rules:
 * longest prefix first, then lowest metric (priority); routes whose device is down are gone
 * (Linux flushes IPv4 routes of a device set admin-down), routes on a carrier-down device are
 * marked linkdown and still used, as with the default ignore_routes_with_linkdown=0.
 *
 * The table is kept in columns (typed arrays, one row per route, strings interned), as the
 * kernel keeps a fib_alias per route in its trie rather than an object with strings: a node of a
 * big cluster holds a route per other node. A route is an object (Route) only where one is handed
 * out: `add` keeps the object it is given, `insert` keeps only its values; lookup, find and
 * aliases make a row's object once and keep it (a step or a PMTU exception refers to it, so it
 * must stay the same object); list and removeWhere show the rows without an object as fresh
 * copies. A copy has the very keys, in the very order, the inserted object had, so it prints,
 * spreads and serialises as that object did.
 */
import { intToIp4, prefixMask } from '../wire/addr.ts';
import type { FibException } from './objects.ts';
import { grow, intern, interned, sameKeys, SlotHash } from './table.ts';

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

/** the keys a route row can rebuild its object with */
const ROW_KEYS = ['dst', 'len', 'type', 'via', 'dev', 'proto', 'scope', 'src', 'metric', 'onlink'] as const;
type RowKey = (typeof ROW_KEYS)[number];

/** the key lists routes were inserted with, each once (a few: netlink's, the prefix routes', a file's) */
const shapes: (readonly RowKey[])[] = [];
const shapeIds = new Map<string, number>();

/** the keys every route has */
const REQUIRED: readonly RowKey[] = ['dst', 'len', 'type', 'proto', 'scope', 'metric', 'onlink'];

/** the key list of the last route inserted: routes mostly come from one place in a row */
let lastShape: number | undefined;

function shapeOf(keys: string[]): number | undefined {
  if (lastShape !== undefined && sameKeys(shapes[lastShape], keys)) return lastShape;
  const text = keys.join(',');
  let id = shapeIds.get(text);
  if (id === undefined) {
    if (!keys.every((k) => (ROW_KEYS as readonly string[]).includes(k))) return undefined;
    if (!REQUIRED.every((k) => keys.includes(k)) || shapes.length === 0x100) return undefined;
    id = shapes.length;
    shapes.push(keys as RowKey[]);
    shapeIds.set(text, id);
  }
  lastShape = id;
  return id;
}

const TYPE_ID = new Map<string, number>(ROUTE_TYPES.map((t, i) => [t, i]));
const PROTO_ID = new Map<string, number>(ROUTE_PROTOS.map((t, i) => [t, i]));
const SCOPE_ID = new Map<string, number>(ROUTE_SCOPES.map((t, i) => [t, i]));

// meta: len (6 bits) | type (2) << 6 | proto (3) << 8 | scope (2) << 11 | onlink << 13 | KEPT | shape (8) << 16
const lenOf = (m: number) => m & 0x3f;
const metaOf = (len: number, type: number, proto: number, scope: number, onlink: boolean, shape: number) =>
  len | (type << 6) | (proto << 8) | (scope << 11) | (onlink ? 1 << 13 : 0) | (shape << 16);

/** the row's object is the truth (given to `add`, or not representable in the columns) */
const KEPT = 1 << 14;

const isU32 = (n: unknown): n is number =>
  typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffffffff;

const NONE = -1;
/** a row: dst, metric, meta, via, dev, src (the strings' ids), the next alias's slot + 1 */
const W = 7;
const [DST, METRIC, META, VIA, DEV, SRC, NEXT] = [0, 1, 2, 3, 4, 5, 6];
/** what a table holds before its first route: no typed array of its own (a pod's namespace has two routes) */
const NO_ROWS = new Uint32Array(0);
const NO_SLOTS = new Int32Array(0);

export class Fib {
  /** slots in use or freed (a removed route's slot is reused) */
  private cap = 0;
  /** the rows, W words each, by slot */
  private rows = NO_ROWS;
  /** the route objects of the rows that have one: kept by `add`, or made when handed out */
  private objs: Map<number, Route> | undefined;
  private free: number[] | undefined;
  /** slots in the order `ip route show` lists them: by network address, longer prefixes first, then metric */
  private order = NO_SLOTS;
  private count = 0;
  /** prefix and length to the first alias's slot */
  private hash = this.newIndex();
  /** the prefix lengths present, longest first (what lookup walks), and the routes of each */
  private lens: number[] = [];
  private lenRoutes: number[] = [];

  get size(): number {
    return this.count;
  }

  list(): readonly Route[] {
    const out: Route[] = new Array(this.count);
    for (let i = 0; i < this.count; i++) out[i] = this.view(this.order[i]);
    return out;
  }

  find(dst: number, len: number, metric?: number): Route | undefined {
    for (let s = this.head(dst, len); s !== NONE; s = this.next(s))
      if (metric === undefined || this.rows[s * W + METRIC] === metric) return this.obj(s);
    return undefined;
  }

  /** the routes of one prefix (and metric, when given), in the order list() has them; a hash lookup, not a scan */
  aliases(dst: number, len: number, metric?: number): Route[] {
    const out: Route[] = [];
    for (let s = this.head(dst, len); s !== NONE; s = this.next(s))
      if (metric === undefined || this.rows[s * W + METRIC] === metric) out.push(this.obj(s));
    return out;
  }

  /** every route gone, the columns given back */
  clear(): void {
    this.cap = 0;
    this.rows = NO_ROWS;
    this.objs = undefined;
    this.free = undefined;
    this.order = NO_SLOTS;
    this.count = 0;
    this.hash = this.newIndex();
    this.lens = [];
    this.lenRoutes = [];
  }

  /** a route, kept as the object given: lookups return this very object */
  add(r: Route): void {
    this.put(r, true);
  }

  /** a route's values: the object given is not kept (netlink's routes, a world read from data) */
  insert(r: Route): void {
    this.put(r, false);
  }

  remove(r: Route): void {
    const s = this.slotOf(r);
    if (s === NONE) return;
    const i = this.position(s);
    this.order.copyWithin(i, i + 1, this.count);
    this.count--;
    this.unindex(s);
  }

  removeWhere(pred: (r: Route) => boolean): Route[] {
    const gone: Route[] = [];
    let k = 0;
    const goneSlots: number[] = [];
    // one pass over the table, not one per route removed (a device going down takes all its routes)
    for (let i = 0; i < this.count; i++) {
      const s = this.order[i];
      const r = this.view(s);
      if (pred(r)) {
        gone.push(r);
        goneSlots.push(s);
      } else this.order[k++] = s;
    }
    this.count = k;
    for (const s of goneSlots) this.unindex(s);
    return gone;
  }

  /**
   * Longest-prefix match. `usable` filters out routes whose nexthop is unusable (device gone or
   * down); Linux skips those and keeps looking at shorter prefixes.
   */
  lookup(addr: number, usable?: (r: Route) => boolean): Route | undefined {
    return this.search(addr, usable, true);
  }

  /**
   * lookup for a reader that keeps nothing (doctor's checks of every node pair): the route's
   * object when it has one, else a copy, and the table makes and keeps no object
   */
  peek(addr: number, usable?: (r: Route) => boolean): Route | undefined {
    return this.search(addr, usable, false);
  }

  private search(
    addr: number,
    usable: ((r: Route) => boolean) | undefined,
    keep: boolean,
  ): Route | undefined {
    for (const len of this.lens)
      for (let s = this.hash.head((addr & prefixMask(len)) >>> 0, len); s !== NONE; s = this.next(s)) {
        const r = keep ? this.obj(s) : this.view(s);
        if (!usable || usable(r)) return r;
      }
    return undefined;
  }

  /* ---------------------------------------------------------------- rows */

  private put(r: Route, keep: boolean): void {
    const s = this.alloc();
    const shape = keep ? undefined : shapeOf(Object.keys(r));
    const type = TYPE_ID.get(r.type);
    const proto = PROTO_ID.get(r.proto);
    const scope = SCOPE_ID.get(r.scope);
    const plain =
      shape !== undefined &&
      type !== undefined &&
      proto !== undefined &&
      scope !== undefined &&
      typeof r.onlink === 'boolean' &&
      isU32(r.metric) &&
      (r.via === undefined || typeof r.via === 'string') &&
      (r.dev === undefined || typeof r.dev === 'string') &&
      (r.src === undefined || typeof r.src === 'string');
    const o = s * W;
    const rows = this.rows;
    rows[o + DST] = r.dst;
    rows[o + METRIC] = r.metric;
    rows[o + META] = plain ? metaOf(r.len, type, proto, scope, r.onlink, shape) : r.len | KEPT;
    rows[o + VIA] = plain ? intern(r.via) : 0;
    rows[o + DEV] = plain ? intern(r.dev) : 0;
    rows[o + SRC] = plain ? intern(r.src) : 0;
    if (!plain) (this.objs ??= new Map()).set(s, r);
    // Linux lists the main table in trie order: by network address, longer prefix first on ties (checked on 6.18)
    const n = this.count;
    if (n === this.order.length) this.order = grow(this.order, n * 2 + 4);
    // routes are mostly added in that order already (a daemon's lease after lease): append
    if (n === 0 || this.cmpSlot(this.order[n - 1], r) <= 0) this.order[n] = s;
    else {
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.cmpSlot(this.order[mid], r) <= 0) lo = mid + 1;
        else hi = mid;
      }
      this.order.copyWithin(lo + 1, lo, n);
      this.order[lo] = s;
    }
    this.count++;
    this.index(s);
  }

  private next(s: number): number {
    return this.rows[s * W + NEXT] - 1;
  }

  private setNext(s: number, n: number): void {
    this.rows[s * W + NEXT] = n + 1;
  }

  private dstOf(s: number): number {
    return this.rows[s * W + DST];
  }

  private lenOfSlot(s: number): number {
    return lenOf(this.rows[s * W + META]);
  }

  /** the row's object: the one kept, else made now and kept */
  private obj(s: number): Route {
    let r = this.objs?.get(s);
    if (r === undefined) {
      r = this.make(s);
      (this.objs ??= new Map()).set(s, r);
    }
    return r;
  }

  /** the row's object, or a copy when it has none */
  private view(s: number): Route {
    return this.objs?.get(s) ?? this.make(s);
  }

  private make(s: number): Route {
    const row = s * W;
    const m = this.rows[row + META];
    const o: Record<string, unknown> = {};
    for (const k of shapes[m >>> 16]) {
      switch (k) {
        case 'dst':
          o.dst = this.rows[row + DST];
          break;
        case 'len':
          o.len = lenOf(m);
          break;
        case 'type':
          o.type = ROUTE_TYPES[(m >>> 6) & 3];
          break;
        case 'via':
          o.via = interned(this.rows[row + VIA]);
          break;
        case 'dev':
          o.dev = interned(this.rows[row + DEV]);
          break;
        case 'proto':
          o.proto = ROUTE_PROTOS[(m >>> 8) & 7];
          break;
        case 'scope':
          o.scope = ROUTE_SCOPES[(m >>> 11) & 3];
          break;
        case 'src':
          o.src = interned(this.rows[row + SRC]);
          break;
        case 'metric':
          o.metric = this.rows[row + METRIC];
          break;
        case 'onlink':
          o.onlink = (m & (1 << 13)) !== 0;
          break;
      }
    }
    return o as unknown as Route;
  }

  private cmpSlot(s: number, r: Route): number {
    return this.dstOf(s) - r.dst || r.len - this.lenOfSlot(s) || this.rows[s * W + METRIC] - r.metric;
  }

  /** the slot holding `r`: the very object, else the first row of its values that was not given as an object */
  private slotOf(r: Route): number {
    let same = NONE;
    for (let s = this.head(r.dst, r.len); s !== NONE; s = this.next(s)) {
      if (this.objs?.get(s) === r) return s;
      if (same === NONE && !(this.rows[s * W + META] & KEPT) && sameRoute(this.make(s), r)) same = s;
    }
    return same;
  }

  /** where slot `s` is in `order` */
  private position(s: number): number {
    let lo = 0;
    let hi = this.count;
    const d = this.dstOf(s);
    const l = this.lenOfSlot(s);
    const m = this.rows[s * W + METRIC];
    // the first row not before (d, l, m), then along the rows equal to it
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const t = this.order[mid];
      if ((this.dstOf(t) - d || l - this.lenOfSlot(t) || this.rows[t * W + METRIC] - m) < 0) lo = mid + 1;
      else hi = mid;
    }
    while (this.order[lo] !== s) lo++;
    return lo;
  }

  private alloc(): number {
    const f = this.free?.pop();
    if (f !== undefined) return f;
    if (this.cap * W === this.rows.length) this.rows = grow(this.rows, (this.cap < 2 ? 2 : this.cap * 2) * W);
    return this.cap++;
  }

  /* ---------------------------------------------------------------- the prefix index */

  private newIndex(): SlotHash {
    return new SlotHash(
      (s) => this.dstOf(s),
      (s) => this.lenOfSlot(s),
    );
  }

  private head(dst: number, len: number): number {
    return this.lens.includes(len) ? this.hash.head(dst, len) : NONE;
  }

  private index(s: number): void {
    const d = this.dstOf(s);
    const l = this.lenOfSlot(s);
    const at = this.lens.indexOf(l);
    if (at >= 0) this.lenRoutes[at]++;
    else {
      // longest first
      let i = 0;
      while (i < this.lens.length && this.lens[i] > l) i++;
      this.lens.splice(i, 0, l);
      this.lenRoutes.splice(i, 0, 1);
    }
    const h = this.hash.head(d, l);
    // aliases by metric; a new one after those of its metric
    const m = this.rows[s * W + METRIC];
    if (h === NONE || this.rows[h * W + METRIC] > m) {
      this.setNext(s, h);
      this.hash.setHead(d, l, s);
      return;
    }
    let p = h;
    while (this.next(p) !== NONE && this.rows[this.next(p) * W + METRIC] <= m) p = this.next(p);
    this.setNext(s, this.next(p));
    this.setNext(p, s);
  }

  private unindex(s: number): void {
    const d = this.dstOf(s);
    const l = this.lenOfSlot(s);
    const h = this.hash.head(d, l);
    if (h === s) this.hash.setHead(d, l, this.next(s));
    else {
      let p = h;
      while (this.next(p) !== s) p = this.next(p);
      this.setNext(p, this.next(s));
    }
    const at = this.lens.indexOf(l);
    if (--this.lenRoutes[at] === 0) {
      this.lens.splice(at, 1);
      this.lenRoutes.splice(at, 1);
    }
    this.objs?.delete(s);
    (this.free ??= []).push(s);
  }
}

/** the same route: every attribute equal (the PMTU exceptions are not the route's) */
export function sameRoute(a: Route, b: Route): boolean {
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
