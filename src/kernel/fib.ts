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

export const ROUTE_PROTOS = ['kernel', 'boot', 'static', 'bird', 'dhcp'] as const;
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

/* ------------------------------------------------------------------ interning */

/**
 * Strings of the routes (devices, gateways, sources), each kept once for the whole process; 0
 * stands for "none". Only the tables see the numbers: what leaves a table is the string.
 */
const strings: (string | undefined)[] = [undefined];
const stringIds = new Map<string, number>();

function intern(s: string | undefined): number {
  if (s === undefined) return 0;
  let id = stringIds.get(s);
  if (id === undefined) {
    id = strings.length;
    strings.push(s);
    stringIds.set(s, id);
  }
  return id;
}

/** the keys a route row can rebuild its object with */
const ROW_KEYS = ['dst', 'len', 'type', 'via', 'dev', 'proto', 'scope', 'src', 'metric', 'onlink'] as const;
type RowKey = (typeof ROW_KEYS)[number];

/** the key lists routes were inserted with, each once (a few: netlink's, the prefix routes', a file's) */
const shapes: (readonly RowKey[])[] = [];
const shapeIds = new Map<string, number>();

/** the keys every route has */
const REQUIRED: readonly RowKey[] = ['dst', 'len', 'type', 'proto', 'scope', 'metric', 'onlink'];

function shapeOf(keys: string[]): number | undefined {
  const text = keys.join(',');
  let id = shapeIds.get(text);
  if (id !== undefined) return id;
  if (!keys.every((k) => (ROW_KEYS as readonly string[]).includes(k))) return undefined;
  if (!REQUIRED.every((k) => keys.includes(k)) || shapes.length === 0x100) return undefined;
  id = shapes.length;
  shapes.push(keys as RowKey[]);
  shapeIds.set(text, id);
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

export class Fib {
  /* the rows, by slot (a removed route's slot is reused) */
  private cap = 0;
  private dst = new Uint32Array(0);
  private metric = new Uint32Array(0);
  private meta = new Uint32Array(0);
  private via = new Uint32Array(0);
  private dev = new Uint32Array(0);
  private src = new Uint32Array(0);
  /** the next alias of the same prefix (by metric, then as added), or NONE */
  private next = new Int32Array(0);
  /** the route object of a slot that has one: kept by `add`, or made when handed out */
  private objs: (Route | undefined)[] = [];
  private free: number[] = [];
  /** slots in the order `ip route show` lists them: by network address, longer prefixes first, then metric */
  private order = new Int32Array(0);
  private count = 0;
  /** open addressing (linear probing) on prefix and length: the first alias's slot + 1, 0 when empty */
  private hash = new Int32Array(0);
  /** routes per prefix length; lookup walks the lengths present, longest first */
  private perLen = new Int32Array(33);
  private lens: number[] = [];

  get size(): number {
    return this.count;
  }

  list(): readonly Route[] {
    const out: Route[] = new Array(this.count);
    for (let i = 0; i < this.count; i++) out[i] = this.view(this.order[i]);
    return out;
  }

  find(dst: number, len: number, metric?: number): Route | undefined {
    for (let s = this.head(dst, len); s !== NONE; s = this.next[s])
      if (metric === undefined || this.metric[s] === metric) return this.obj(s);
    return undefined;
  }

  /** the routes of one prefix (and metric, when given), in the order list() has them; a hash lookup, not a scan */
  aliases(dst: number, len: number, metric?: number): Route[] {
    const out: Route[] = [];
    for (let s = this.head(dst, len); s !== NONE; s = this.next[s])
      if (metric === undefined || this.metric[s] === metric) out.push(this.obj(s));
    return out;
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
    for (const len of this.lens)
      for (let s = this.head((addr & prefixMask(len)) >>> 0, len); s !== NONE; s = this.next[s]) {
        const r = this.obj(s);
        if (!usable || usable(r)) return r;
      }
    return undefined;
  }

  /* ---------------------------------------------------------------- rows */

  private put(r: Route, keep: boolean): void {
    const s = this.alloc();
    const o = r as unknown as Record<string, unknown>;
    const keys = Object.keys(o);
    const shape = keep ? undefined : shapeOf(keys);
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
    this.dst[s] = r.dst;
    this.metric[s] = r.metric;
    this.meta[s] = plain ? metaOf(r.len, type, proto, scope, r.onlink, shape) : r.len | KEPT;
    this.via[s] = plain ? intern(r.via) : 0;
    this.dev[s] = plain ? intern(r.dev) : 0;
    this.src[s] = plain ? intern(r.src) : 0;
    this.objs[s] = plain ? undefined : r;
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

  /** the row's object: the one kept, else made now and kept */
  private obj(s: number): Route {
    return (this.objs[s] ??= this.make(s));
  }

  /** the row's object, or a copy when it has none */
  private view(s: number): Route {
    return this.objs[s] ?? this.make(s);
  }

  private make(s: number): Route {
    const m = this.meta[s];
    const o: Record<string, unknown> = {};
    for (const k of shapes[m >>> 16]) {
      switch (k) {
        case 'dst':
          o.dst = this.dst[s];
          break;
        case 'len':
          o.len = lenOf(m);
          break;
        case 'type':
          o.type = ROUTE_TYPES[(m >>> 6) & 3];
          break;
        case 'via':
          o.via = strings[this.via[s]];
          break;
        case 'dev':
          o.dev = strings[this.dev[s]];
          break;
        case 'proto':
          o.proto = ROUTE_PROTOS[(m >>> 8) & 7];
          break;
        case 'scope':
          o.scope = ROUTE_SCOPES[(m >>> 11) & 3];
          break;
        case 'src':
          o.src = strings[this.src[s]];
          break;
        case 'metric':
          o.metric = this.metric[s];
          break;
        case 'onlink':
          o.onlink = (m & (1 << 13)) !== 0;
          break;
      }
    }
    return o as unknown as Route;
  }

  private cmpSlot(s: number, r: Route): number {
    return this.dst[s] - r.dst || r.len - lenOf(this.meta[s]) || this.metric[s] - r.metric;
  }

  /** the slot holding `r`: the very object, else the first row of its values that was not given as an object */
  private slotOf(r: Route): number {
    let same = NONE;
    for (let s = this.head(r.dst, r.len); s !== NONE; s = this.next[s]) {
      if (this.objs[s] === r) return s;
      if (same === NONE && !(this.meta[s] & KEPT) && sameRoute(this.make(s), r)) same = s;
    }
    return same;
  }

  /** where slot `s` is in `order` */
  private position(s: number): number {
    let lo = 0;
    let hi = this.count;
    const d = this.dst[s];
    const l = lenOf(this.meta[s]);
    const m = this.metric[s];
    // the first row not before (d, l, m), then along the rows equal to it
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const t = this.order[mid];
      if ((this.dst[t] - d || l - lenOf(this.meta[t]) || this.metric[t] - m) < 0) lo = mid + 1;
      else hi = mid;
    }
    while (this.order[lo] !== s) lo++;
    return lo;
  }

  private alloc(): number {
    const f = this.free.pop();
    if (f !== undefined) return f;
    if (this.cap === this.dst.length) {
      const cap = this.cap < 4 ? 4 : this.cap * 2;
      this.dst = grow(this.dst, cap);
      this.metric = grow(this.metric, cap);
      this.meta = grow(this.meta, cap);
      this.via = grow(this.via, cap);
      this.dev = grow(this.dev, cap);
      this.src = grow(this.src, cap);
      this.next = grow(this.next, cap);
    }
    return this.cap++;
  }

  /* ---------------------------------------------------------------- the prefix hash */

  private bucket(dst: number, len: number): number {
    return (Math.imul(dst ^ Math.imul(len + 1, 0x9e3779b1), 0x85ebca6b) >>> 0) & (this.hash.length - 1);
  }

  /** the hash position of (dst, len), or where it would go */
  private probe(dst: number, len: number): number {
    const mask = this.hash.length - 1;
    let i = this.bucket(dst, len);
    for (;;) {
      const v = this.hash[i];
      if (v === 0) return i;
      const s = v - 1;
      if (this.dst[s] === dst && lenOf(this.meta[s]) === len) return i;
      i = (i + 1) & mask;
    }
  }

  private head(dst: number, len: number): number {
    if (this.hash.length === 0 || this.perLen[len] === 0) return NONE;
    return this.hash[this.probe(dst, len)] - 1;
  }

  private index(s: number): void {
    const d = this.dst[s];
    const l = lenOf(this.meta[s]);
    if (this.perLen[l]++ === 0) {
      this.lens.push(l);
      this.lens.sort((a, b) => b - a);
    }
    this.next[s] = NONE;
    // at most half full
    if ((this.count + 1) * 2 > this.hash.length) this.rehash(Math.max(8, this.hash.length * 2));
    const i = this.probe(d, l);
    const h = this.hash[i] - 1;
    if (h === NONE) {
      this.hash[i] = s + 1;
      return;
    }
    // aliases by metric; a new one after those of its metric
    const m = this.metric[s];
    if (this.metric[h] > m) {
      this.next[s] = h;
      this.hash[i] = s + 1;
      return;
    }
    let p = h;
    while (this.next[p] !== NONE && this.metric[this.next[p]] <= m) p = this.next[p];
    this.next[s] = this.next[p];
    this.next[p] = s;
  }

  private unindex(s: number): void {
    const d = this.dst[s];
    const l = lenOf(this.meta[s]);
    const i = this.probe(d, l);
    const h = this.hash[i] - 1;
    if (h === s) {
      if (this.next[s] !== NONE) this.hash[i] = this.next[s] + 1;
      else this.deleteAt(i);
    } else {
      let p = h;
      while (this.next[p] !== s) p = this.next[p];
      this.next[p] = this.next[s];
    }
    if (--this.perLen[l] === 0) this.lens.splice(this.lens.indexOf(l), 1);
    this.objs[s] = undefined;
    this.free.push(s);
  }

  /** linear probing's deletion: later entries of the run move back into the hole */
  private deleteAt(i: number): void {
    const mask = this.hash.length - 1;
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const v = this.hash[j];
      if (v === 0) break;
      const home = this.bucket(this.dst[v - 1], lenOf(this.meta[v - 1]));
      // move v into the hole unless its home lies cyclically in (hole, j]
      if (hole <= j ? home <= hole || home > j : home <= hole && home > j) {
        this.hash[hole] = v;
        hole = j;
      }
    }
    this.hash[hole] = 0;
  }

  private rehash(size: number): void {
    const old = this.hash;
    this.hash = new Int32Array(size);
    for (const v of old) if (v !== 0) this.hash[this.probe(this.dst[v - 1], lenOf(this.meta[v - 1]))] = v;
  }
}

function grow<T extends Uint32Array | Int32Array>(a: T, cap: number): T {
  const b = new (a.constructor as new (n: number) => T)(cap);
  b.set(a);
  return b;
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
