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
import {
  derivedIn,
  grow,
  intern,
  interned,
  sameKeys,
  SlotHash,
  SlotList,
  type Derived,
  type SlotIndex,
} from './table.ts';

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
  // the few key lists known, compared in place: a bulk path's routes of two shapes in turn (a
  // pod's prefix route, then its default route) made a joined text of each route's keys
  for (let id = 0; id < shapes.length; id++) if (sameKeys(shapes[id], keys)) return (lastShape = id);
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
/**
 * What a table holds before its first route (nothing of its own), and up to SMALL routes: lists
 * of their exact length and a SlotList, where typed arrays and a SlotHash would cost ~700 bytes
 * more (a pod's namespace has two routes); past SMALL, typed arrays grown by doubling and a
 * SlotHash. The lists hold what the typed arrays would (values written as uint32), so the two
 * forms answer alike.
 */
const NO_ROWS: readonly number[] = [];
const NO_SLOTS: readonly number[] = [];
/** no prefix lengths: shared, never written (countLen makes a new list to add one, splices only a list that has it) */
const NO_LENS: readonly number[] = [];
const SMALL = 8;

/**
 * a route of its own: a copy of r (its keys in its order), its PMTU exceptions copies of its own
 * (pmtu.ts adds to the list and updates an exception in place)
 */
function ownRoute(r: Route): Route {
  const o = { ...r };
  if (r.exceptions) o.exceptions = r.exceptions.map((e) => ({ ...e }));
  return o;
}

/** `a` at length `n`, its values kept and the rest 0: a list of the exact length (a push leaves room for more) */
function resized(a: ArrayLike<number>, n: number): number[] {
  const b = new Array<number>(n);
  for (let i = 0; i < n; i++) b[i] = i < a.length ? a[i] : 0;
  return b;
}

/**
 * A route as a reader that keeps nothing sees it (doctor's checks of every node's every route):
 * the fields a lookup and the checks read, and `route()` for the whole route (its object, or a
 * copy as `list` gives). The table fills one such row for `scan` and `match` and refills it on the
 * next row: read it before the table's next call.
 */
export interface RouteRow {
  readonly dst: number;
  readonly len: number;
  readonly type: RouteType;
  readonly via: string | undefined;
  readonly dev: string | undefined;
  route(): Route;
}

/** the row a table fills: RouteRow's fields, and the slot `route()` reads */
type FilledRow = { -readonly [K in keyof RouteRow]: RouteRow[K] } & { slot: number };

/**
 * `list` with `v` at `i`, a new list of its exact length: a push, splice or spread gives a list
 * room for 17 at first (~120 bytes more), and most tables have one to three prefix lengths (a
 * pod's: its subnet and the default); the short ones are literals (concat is a slower builtin)
 */
function inserted(list: readonly number[], i: number, v: number): number[] {
  if (list.length === 0) return [v];
  if (list.length === 1) return i === 0 ? [v, list[0]] : [list[0], v];
  return list.slice(0, i).concat(v, list.slice(i));
}

/** a table's generation with what is kept beside it (Fib.#aux) */
interface FibAux {
  gen: number;
  /** what `derived` keeps until the generation moves */
  values: Derived | undefined;
  /** the one row scan and match fill, made on their first use */
  row: FilledRow | undefined;
}

export class Fib {
  /**
   * The routing generation: counts every write of this table (put, remove, removeWhere, clear,
   * attach) and every change of what a lookup reads beside it that its namespace reports
   * (`changed`: devices, addresses, up/down, carrier, MTU, PMTU exceptions; Netns.routingChanged).
   * Only ever grows, so an answer kept with the generation it was worked out at is still the
   * answer while the generation is the same. With it, what `derived` keeps until the next change
   * and the row scan fills: one field, a number until something is kept (a namespace whose table
   * is never looked up or scanned costs what it cost before there was a generation).
   */
  #aux: number | FibAux = 0;

  /**
   * Routes a new namespace's table gets in bulk (insertLater), put at the first use of the table
   * after them: every method below puts them first (now()), so what anything reads or writes is
   * the table as if they had been put at once, generation included. A pod's two routes cost
   * nothing until the pod is walked through or listed (doctor's checks read no pod's table).
   */
  #later: readonly Route[] | undefined;

  /**
   * insert() of each route, in order, made at the table's next use. Not for a segment (a Fib other
   * tables list: attach puts a segment's queue first too).
   */
  insertLater(routes: readonly Route[]): void {
    const q = this.#later;
    this.#later = q === undefined ? routes : q.concat(routes);
  }

  /** the routes insertLater queued, put now (insert's work, one by one) */
  private now(): void {
    const q = this.#later;
    if (q === undefined) return;
    this.#later = undefined;
    for (const r of q) this.put(r, false);
  }

  /** the routing generation (see #aux) */
  get generation(): number {
    this.now();
    const a = this.#aux;
    return typeof a === 'number' ? a : a.gen;
  }

  /** something a lookup reads changed: the generation moves on and what `derived` kept is dropped */
  changed(): void {
    this.now();
    const a = this.#aux;
    if (typeof a === 'number') this.#aux = a + 1;
    else if (!a.row) this.#aux = a.gen + 1;
    else {
      a.gen++;
      a.values = undefined;
    }
  }

  /**
   * What `make(arg)` works out from the routing state (a route lookup's answers), made at the first
   * ask and kept until the generation moves (Sysctls.derived's pattern). `make` names the value: the
   * same function at every call.
   */
  derived<T, A>(make: (arg: A) => T, arg: A): T {
    this.now();
    return derivedIn((this.aux().values ??= new Map()), make, arg);
  }

  /** what `derived` kept is dropped, the generation unchanged (a reader bounding its memory) */
  forget(): void {
    this.now();
    const a = this.#aux;
    if (typeof a === 'number') return;
    if (a.row) a.values = undefined;
    else this.#aux = a.gen;
  }

  private aux(): FibAux {
    const a = this.#aux;
    if (typeof a !== 'number') return a;
    return (this.#aux = { gen: a, values: undefined, row: undefined });
  }

  /**
   * A shared segment (an immutable Fib that no namespace writes: a daemon's lease set, the same
   * routes on every node) whose rows this table lists and looks up as its own, except the
   * slots in `gone` (the node's own lease, routes removed since). Its slots are this table's
   * 0 … nb-1; this table's own rows are nb and up. A (prefix, length) lives either in the own rows
   * or in the segment's live rows, never in both: an own route of a prefix the segment holds first
   * copies the segment's rows into this table (copy on write, `materialize`).
   */
  private base: Fib | undefined;
  private nb = 0;
  private gone: Set<number> | undefined;
  /** the segment's live rows in this table */
  private baseLive = 0;
  /** slots in use or freed (a removed route's slot is reused) */
  private cap = 0;
  /** the rows, W words each, by slot (a list in the small form) */
  private rows: Uint32Array | number[] = NO_ROWS as number[];
  /** the route objects of the rows that have one: kept by `add`, or made when handed out */
  private objs: Map<number, Route> | undefined;
  private free: number[] | undefined;
  /** slots in the order `ip route show` lists them: by network address, longer prefixes first, then metric */
  private order: Int32Array | number[] = NO_SLOTS as number[];
  private count = 0;
  /** prefix and length to the first alias's slot */
  private hash: SlotIndex = this.newIndex();
  /** the prefix lengths present, longest first (what lookup walks), and the routes of each */
  private lens = NO_LENS as number[];
  private lenRoutes = NO_LENS as number[];

  get size(): number {
    this.now();
    return this.count + this.baseLive;
  }

  /** the routes this table stores itself: its routes but those it lists from its segment */
  get ownSize(): number {
    this.now();
    return this.count;
  }

  /** the table lists a shared segment's rows (attach) */
  get shared(): boolean {
    this.now();
    return this.base !== undefined;
  }

  list(): readonly Route[] {
    this.now();
    const slots = this.slots();
    const out: Route[] = new Array(slots.length);
    for (let i = 0; i < slots.length; i++) out[i] = this.view(slots[i]);
    return out;
  }

  /** the slots in `ip route` order: the own rows and the segment's live rows merged (they never tie) */
  private slots(): number[] {
    const out: number[] = [];
    const b = this.base;
    if (!b) {
      for (let i = 0; i < this.count; i++) out.push(this.order[i]);
      return out;
    }
    let i = 0;
    let j = 0;
    for (;;) {
      while (j < b.count && this.gone?.has(b.order[j])) j++;
      if (j === b.count) break;
      const bs = b.order[j];
      if (i < this.count && this.cmpSlots(this.order[i], bs) < 0) out.push(this.order[i++]);
      else {
        out.push(bs);
        j++;
      }
    }
    while (i < this.count) out.push(this.order[i++]);
    return out;
  }

  private cmpSlots(a: number, b: number): number {
    return (
      this.dstOf(a) - this.dstOf(b) ||
      this.lenOfSlot(b) - this.lenOfSlot(a) ||
      this.at(a, METRIC) - this.at(b, METRIC)
    );
  }

  /**
   * Share `seg`'s rows, all but the slots in `exclude` (a daemon's lease set: every node's
   * table the same segment, its own lease left out). Refused (false) when this table already
   * shares a segment, when `seg` has a row that is an object (it would be shared, not copied), or
   * when a prefix of the segment's live rows is among this table's own routes; the caller then
   * adds the routes one by one.
   */
  attach(seg: Fib, exclude: readonly number[]): boolean {
    this.now();
    seg.now();
    if (this.base || seg.base || seg.objs?.size || seg.free?.length) return false;
    const gone = new Set(exclude);
    for (let i = 0; i < this.count; i++) {
      const s = this.order[i];
      for (let t = seg.hash.head(this.dstOf(s), this.lenOfSlot(s)); t !== NONE; t = seg.at(t, NEXT) - 1)
        if (!gone.has(t)) return false;
    }
    // the own rows move up past the segment's slots (clear() counts the change)
    const nb = seg.cap;
    const own = this.slots();
    const objs = this.objs;
    const rows = this.rows;
    this.clear();
    this.base = seg;
    this.nb = nb;
    this.gone = gone.size ? gone : undefined;
    this.baseLive = seg.count - gone.size;
    for (let i = 0; i < seg.lens.length; i++) this.countLen(seg.lens[i], seg.lenRoutes[i]);
    for (const s of gone) this.countLen(seg.lenOfSlot(s), -1);
    this.copyRows(
      own.length,
      (i) => own[i],
      (i) => own[i],
      rows,
      objs,
    );
    return true;
  }

  /** the segment's rows become this table's own (copy on write), in the order they are listed */
  private materialize(): void {
    const slots = this.slots();
    const rows = new Uint32Array(slots.length * W);
    slots.forEach((s, i) => {
      for (let k = 0; k < W; k++) rows[i * W + k] = this.at(s, k);
    });
    const objs = this.objs;
    this.clear();
    this.copyRows(
      slots.length,
      (i) => i,
      (i) => slots[i],
      rows,
      objs,
    );
  }

  /**
   * rows appended as own rows, in the order given (the list order): row `i` is at words
   * `i * W` of `rows`, its object (when it has one) is `objs`' entry for `keyOf(i)`
   */
  private copyRows(
    n: number,
    rowAt: (i: number) => number,
    keyOf: (i: number) => number,
    rows: ArrayLike<number>,
    objs: Map<number, Route> | undefined,
  ): void {
    for (let i = 0; i < n; i++) {
      const s = this.alloc();
      const src = rowAt(i) * W;
      const dst = (s - this.nb) * W;
      for (let k = 0; k < W; k++) this.rows[dst + k] = rows[src + k];
      const o = objs?.get(keyOf(i));
      if (o !== undefined) (this.objs ??= new Map()).set(s, o);
      this.roomInOrder();
      this.order[this.count++] = s;
      this.index(s);
    }
  }

  find(dst: number, len: number, metric?: number): Route | undefined {
    this.now();
    for (let s = this.head(dst, len); s !== NONE; s = this.next(s))
      if (metric === undefined || this.at(s, METRIC) === metric) return this.obj(s);
    return undefined;
  }

  /** the routes of one prefix (and metric, when given), in the order list() has them; a hash lookup, not a scan */
  aliases(dst: number, len: number, metric?: number): Route[] {
    this.now();
    const out: Route[] = [];
    for (let s = this.head(dst, len); s !== NONE; s = this.next(s))
      if (metric === undefined || this.at(s, METRIC) === metric) out.push(this.obj(s));
    return out;
  }

  /** every route gone, the columns given back */
  clear(): void {
    this.now();
    this.changed();
    this.base = undefined;
    this.nb = 0;
    this.gone = undefined;
    this.baseLive = 0;
    this.cap = 0;
    this.rows = NO_ROWS as number[];
    this.objs = undefined;
    this.free = undefined;
    this.order = NO_SLOTS as number[];
    this.count = 0;
    this.hash = this.newIndex();
    this.lens = NO_LENS as number[];
    this.lenRoutes = NO_LENS as number[];
  }

  /** a route, kept as the object given: lookups return this very object */
  add(r: Route): void {
    this.now();
    this.put(r, true);
  }

  /** a route's values: the object given is not kept (netlink's routes, a world read from data) */
  insert(r: Route): void {
    this.now();
    this.put(r, false);
  }

  remove(r: Route): void {
    this.now();
    const s = this.slotOf(r);
    if (s === NONE) return;
    this.changed();
    if (s < this.nb) {
      this.drop(s);
      return;
    }
    const i = this.position(s);
    this.order.copyWithin(i, i + 1, this.count);
    this.count--;
    this.unindex(s);
  }

  removeWhere(pred: (r: Route) => boolean): Route[] {
    this.now();
    const gone: Route[] = [];
    const goneSlots: number[] = [];
    // one pass over the table, not one per route removed (a device going down takes all its routes)
    for (const s of this.slots()) {
      const r = this.view(s);
      if (pred(r)) {
        gone.push(r);
        goneSlots.push(s);
      }
    }
    if (!goneSlots.length) return gone;
    this.changed();
    const dead = new Set(goneSlots);
    let k = 0;
    for (let i = 0; i < this.count; i++) if (!dead.has(this.order[i])) this.order[k++] = this.order[i];
    this.count = k;
    for (const s of goneSlots)
      if (s < this.nb) this.drop(s);
      else this.unindex(s);
    return gone;
  }

  /**
   * Longest-prefix match. `usable` filters out routes whose nexthop is unusable (device gone or
   * down); Linux skips those and keeps looking at shorter prefixes.
   */
  lookup(addr: number, usable?: (r: Route) => boolean): Route | undefined {
    this.now();
    return this.search(addr, usable, true);
  }

  /**
   * lookup for a reader that keeps nothing (doctor's checks of every node pair): the route's
   * object when it has one, else a copy, and the table makes and keeps no object
   */
  peek(addr: number, usable?: (r: Route) => boolean): Route | undefined {
    this.now();
    return this.search(addr, usable, false);
  }

  /** every route in `ip route` order as a row that `visit` reads in place: no object made (see RouteRow) */
  scan(visit: (r: RouteRow) => void): void {
    this.now();
    const slots = this.slots();
    const row = this.cursor();
    for (let i = 0; i < slots.length; i++) visit(this.fill(row, slots[i]));
  }

  /** the shared segment this table lists as rows of its own (attach); undefined when it has none */
  get segment(): Fib | undefined {
    this.now();
    return this.base;
  }

  /** the table's own rows (not its segment's), in `ip route` order, read in place as `scan` reads them */
  scanOwn(visit: (r: RouteRow) => void): void {
    this.now();
    const row = this.cursor();
    for (let i = 0; i < this.count; i++) visit(this.fill(row, this.order[i]));
  }

  /**
   * the segment's rows this table holds an object of (a lookup handed one out), read as the object:
   * with the own rows (scanOwn) and the rows gone (scanGone), the rows whose values this table may
   * show otherwise than its segment does
   */
  scanObjects(visit: (r: RouteRow) => void): void {
    this.now();
    if (!this.objs) return;
    const row = this.cursor();
    for (const s of this.objs.keys()) if (s < this.nb) visit(this.fill(row, s));
  }

  /** the segment's rows this table does not list (its own lease left out, removed since), read in place */
  scanGone(visit: (r: RouteRow) => void): void {
    this.now();
    if (!this.gone) return;
    const row = this.cursor();
    for (const s of this.gone) visit(this.fill(row, s));
  }

  /**
   * `peek` as a row (see RouteRow): the longest-prefix match whose row `usable` accepts, no
   * object made; `route()` gives what `peek` would have
   */
  match(addr: number, usable?: (r: RouteRow) => boolean): RouteRow | undefined {
    this.now();
    const row = this.cursor();
    for (const len of this.lens)
      for (let s = this.head((addr & prefixMask(len)) >>> 0, len); s !== NONE; s = this.next(s)) {
        this.fill(row, s);
        if (!usable || usable(row)) return row;
      }
    return undefined;
  }

  /** the one row scan and match fill, made on their first use (kept in #aux) */
  private cursor(): FilledRow {
    const a = this.aux();
    if (a.row) return a.row;
    const row: FilledRow = {
      dst: 0,
      len: 0,
      type: 'unicast',
      via: undefined,
      dev: undefined,
      slot: NONE,
      route: () => this.view(row.slot),
    };
    return (a.row = row);
  }

  /** the row of slot `s`: from its object when it has one (the object is the truth), else the columns */
  private fill(row: FilledRow, s: number): RouteRow {
    row.slot = s;
    const o = this.objs?.get(s);
    if (o !== undefined) {
      row.dst = o.dst;
      row.len = o.len;
      row.type = o.type;
      row.via = o.via;
      row.dev = o.dev;
      return row;
    }
    const m = this.at(s, META);
    row.dst = this.at(s, DST);
    row.len = lenOf(m);
    row.type = ROUTE_TYPES[(m >>> 6) & 3];
    row.via = interned(this.at(s, VIA));
    row.dev = interned(this.at(s, DEV));
    return row;
  }

  private search(
    addr: number,
    usable: ((r: Route) => boolean) | undefined,
    keep: boolean,
  ): Route | undefined {
    for (const len of this.lens)
      for (let s = this.head((addr & prefixMask(len)) >>> 0, len); s !== NONE; s = this.next(s)) {
        const r = keep ? this.obj(s) : this.view(s);
        if (!usable || usable(r)) return r;
      }
    return undefined;
  }

  /* ---------------------------------------------------------------- rows */

  private put(r: Route, keep: boolean): void {
    this.changed();
    // a prefix the shared segment holds: its rows become this table's own first
    if (this.base && this.baseHead(r.dst, r.len) !== NONE) this.materialize();
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
    const o = (s - this.nb) * W;
    const rows = this.rows;
    // as a Uint32Array stores them (ToUint32), in either form
    rows[o + DST] = r.dst >>> 0;
    rows[o + METRIC] = r.metric >>> 0;
    rows[o + META] = (plain ? metaOf(r.len, type, proto, scope, r.onlink, shape) : r.len | KEPT) >>> 0;
    rows[o + VIA] = plain ? intern(r.via) : 0;
    rows[o + DEV] = plain ? intern(r.dev) : 0;
    rows[o + SRC] = plain ? intern(r.src) : 0;
    // (insert keeps no object of the route given: one the columns cannot hold is kept as a copy, so
    // that what is written to it later, a PMTU exception, is this table's alone, a frozen route a
    // batch's namespaces share (netlink.ts) included)
    if (!plain) (this.objs ??= new Map()).set(s, keep ? r : ownRoute(r));
    // Linux lists the main table in trie order: by network address, longer prefix first on ties (checked on 6.18)
    const n = this.count;
    this.roomInOrder();
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

  /** word `k` of slot `s`'s row: the segment's below nb, else this table's own */
  private at(s: number, k: number): number {
    return s < this.nb ? this.base!.rows[s * W + k] : this.rows[(s - this.nb) * W + k];
  }

  /** the next alias, past the segment's rows this table does not have */
  private next(s: number): number {
    const n = this.at(s, NEXT) - 1;
    return s < this.nb ? this.skipGone(n) : n;
  }

  private skipGone(s: number): number {
    while (s !== NONE && this.gone?.has(s)) s = this.base!.rows[s * W + NEXT] - 1;
    return s;
  }

  /** only ever an own row's (a segment is never written) */
  private setNext(s: number, n: number): void {
    this.rows[(s - this.nb) * W + NEXT] = n + 1;
  }

  private dstOf(s: number): number {
    return this.at(s, DST);
  }

  private lenOfSlot(s: number): number {
    return lenOf(this.at(s, META));
  }

  /** the first live segment row of a prefix */
  private baseHead(dst: number, len: number): number {
    return this.base ? this.skipGone(this.base.hash.head(dst, len)) : NONE;
  }

  /** a segment row leaves this table (the segment keeps it: other tables share it) */
  private drop(s: number): void {
    (this.gone ??= new Set()).add(s);
    this.baseLive--;
    this.countLen(this.lenOfSlot(s), -1);
    this.objs?.delete(s);
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
    if (s < this.nb) return this.base!.make(s);
    const row = (s - this.nb) * W;
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
    return this.dstOf(s) - r.dst || r.len - this.lenOfSlot(s) || this.at(s, METRIC) - r.metric;
  }

  /** the slot holding `r`: the very object, else the first row of its values that was not given as an object */
  private slotOf(r: Route): number {
    let same = NONE;
    for (let s = this.head(r.dst, r.len); s !== NONE; s = this.next(s)) {
      if (this.objs?.get(s) === r) return s;
      if (same === NONE && !(this.at(s, META) & KEPT) && sameRoute(this.make(s), r)) same = s;
    }
    return same;
  }

  /** where slot `s` is in `order` */
  private position(s: number): number {
    let lo = 0;
    let hi = this.count;
    const d = this.dstOf(s);
    const l = this.lenOfSlot(s);
    const m = this.at(s, METRIC);
    // the first row not before (d, l, m), then along the rows equal to it
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const t = this.order[mid];
      if ((this.dstOf(t) - d || l - this.lenOfSlot(t) || this.at(t, METRIC) - m) < 0) lo = mid + 1;
      else hi = mid;
    }
    while (this.order[lo] !== s) lo++;
    return lo;
  }

  private alloc(): number {
    const f = this.free?.pop();
    if (f !== undefined) return f;
    if (this.cap * W === this.rows.length) {
      if (this.cap < SMALL) this.rows = resized(this.rows, (this.cap + 1) * W);
      else {
        if (Array.isArray(this.rows)) this.widen();
        this.rows = grow(this.rows as Uint32Array, this.cap * 2 * W);
      }
    }
    return this.nb + this.cap++;
  }

  /** room in `order` for one slot more: of the exact length in the small form, else doubling */
  private roomInOrder(): void {
    const n = this.count;
    if (n < this.order.length) return;
    this.order = Array.isArray(this.order) ? resized(this.order, n + 1) : grow(this.order, n * 2 + 4);
  }

  /** the small form's lists become typed arrays, its SlotList a SlotHash (the table grew past SMALL slots) */
  private widen(): void {
    this.rows = Uint32Array.from(this.rows);
    this.order = Int32Array.from(this.order);
    const heads = (this.hash as SlotList).heads();
    this.hash = new SlotHash(this);
    for (const h of heads) this.hash.setHead(this.keyA(h), this.keyB(h), h);
  }

  /* ---------------------------------------------------------------- the prefix index */

  private newIndex(): SlotIndex {
    return new SlotList(this);
  }

  /** SlotKeys: a slot's key, its prefix and length (one method for every namespace's FIB, not
   * closures of each) */
  keyA(s: number): number {
    return this.dstOf(s);
  }

  keyB(s: number): number {
    return this.lenOfSlot(s);
  }

  /** the first alias of a prefix: the own rows', else the segment's live rows' (never both) */
  private head(dst: number, len: number): number {
    if (!this.lens.includes(len)) return NONE;
    const h = this.hash.head(dst, len);
    return h !== NONE || !this.base ? h : this.baseHead(dst, len);
  }

  /** the routes of length `l` change by `d` (the lengths present, longest first) */
  private countLen(l: number, d: number): void {
    const at = this.lens.indexOf(l);
    if (at >= 0) {
      this.lenRoutes[at] += d;
      if (this.lenRoutes[at] === 0) {
        this.lens.splice(at, 1);
        this.lenRoutes.splice(at, 1);
      }
      return;
    }
    let i = 0;
    while (i < this.lens.length && this.lens[i] > l) i++;
    this.lens = inserted(this.lens, i, l);
    this.lenRoutes = inserted(this.lenRoutes, i, d);
  }

  private index(s: number): void {
    const d = this.dstOf(s);
    const l = this.lenOfSlot(s);
    this.countLen(l, 1);
    const h = this.hash.head(d, l);
    // aliases by metric; a new one after those of its metric
    const m = this.at(s, METRIC);
    if (h === NONE || this.at(h, METRIC) > m) {
      this.setNext(s, h);
      this.hash.setHead(d, l, s);
      return;
    }
    let p = h;
    while (this.next(p) !== NONE && this.at(this.next(p), METRIC) <= m) p = this.next(p);
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
    this.countLen(l, -1);
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
