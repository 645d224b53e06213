/**
 * Ordered tables with a hash index: what the kernel keeps in hash tables (neighbours, FDB
 * entries), listed in the order they were added, as `ip neigh` and `bridge fdb` dump them.
 * Several entries may share a key (a VXLAN FDB's appended default destinations); get() returns
 * the first. An index holds the entry itself, or the entries in table order when several share
 * the key (an array is never an entry: entries are the kernel's objects); one entry per key is the
 * rule, so most keys cost no list of their own.
 */
import { isPort, parseIp4Cached } from '../wire/addr.ts';

type Slot<T> = T | T[];

/** what a table's readers worked out from it, by the function that worked each out */
export type Derived = Map<(arg: never) => unknown, unknown>;

/**
 * `make(arg)`, kept in `values` under `make` at the first ask (Sysctls.derived, Fib.derived: each
 * drops its `values` when what `make` reads is written)
 */
export function derivedIn<T, A>(values: Derived, make: (arg: A) => T, arg: A): T {
  let v = values.get(make) as T | undefined;
  if (v === undefined) values.set(make, (v = make(arg)));
  return v;
}

/** `t` goes last among the entries of `k` */
function linkIn<K, T extends object>(m: Map<K, Slot<T>>, k: K, t: T): void {
  const v = m.get(k);
  if (v === undefined) m.set(k, t);
  else if (Array.isArray(v)) v.push(t);
  else m.set(k, [v, t]);
}

/**
 * What makes an entry a table holds as a number until it is first read (QuadTable.addDeferredAt):
 * `make(arg)` makes the entry of `arg`, the same entry each time it is asked (what it reads never
 * changes). A table asks once: the entry made takes the number's place.
 */
export interface DeferredEntry<T> {
  make(arg: number): T;
}

/**
 * The entries in the order they were added; a subclass keeps the index. An entry may be deferred:
 * its place holds a number (its index in the deferred columns: its maker, its argument) until it
 * is first read, and then the entry its maker makes (a flow cache's replayed walk adds its sockets
 * so: nothing reads most of them, and each object a walk keeps is one the garbage collector copies
 * and marks again). Every read goes through `entryAt` or `list`.
 */
abstract class OrderedTable<T extends object> {
  protected items: (T | number)[] = [];
  /** the deferred entries' makers (each once), and by deferred index: its maker's place there, its argument */
  private makers: DeferredEntry<T>[] = [];
  private defMaker = new Int32Array(0);
  private defArg = new Float64Array(0);
  /** deferred indexes given out, and of those not made yet (both 0 again once all are made) */
  private defs = 0;
  private pending = 0;

  get size(): number {
    return this.items.length;
  }

  list(): readonly T[] {
    if (this.pending) for (let at = 0; at < this.items.length; at++) this.entryAt(at);
    return this.items as T[];
  }

  add(t: T): T {
    this.items.push(t);
    this.link(t);
    return t;
  }

  remove(t: T): boolean {
    const i = this.list().indexOf(t);
    if (i < 0) return false;
    this.items.splice(i, 1);
    this.removed();
    return true;
  }

  removeWhere(pred: (t: T) => boolean): T[] {
    const items = this.list();
    const gone = items.filter(pred);
    if (!gone.length) return gone;
    const keep = new Set(gone);
    this.items = items.filter((t) => !keep.has(t));
    this.removed();
    return gone;
  }

  /** the entry at place `at` (a deferred one made now) */
  protected entryAt(at: number): T {
    const t = this.items[at];
    if (typeof t !== 'number') return t;
    const made = this.makers[this.defMaker[t]].make(this.defArg[t]);
    this.items[at] = made;
    if (--this.pending === 0) this.defs = 0;
    return made;
  }

  /** a deferred entry goes last: `maker.make(arg)` when first read */
  protected pushDeferred(maker: DeferredEntry<T>, arg: number): void {
    let m = this.makers.indexOf(maker);
    if (m < 0) m = this.makers.push(maker) - 1;
    const d = this.defs++;
    if (d === this.defMaker.length) {
      this.defMaker = more(this.defMaker, d);
      this.defArg = more(this.defArg, d);
    }
    this.defMaker[d] = m;
    this.defArg[d] = arg;
    this.pending++;
    this.items.push(d);
  }

  /** t was added last */
  protected abstract link(t: T): void;
  /** entries left the table (the places of those after them moved) */
  protected abstract removed(): void;
}

/** the 4-tuple of a socket: its address and port, the peer's */
export interface Quad {
  local: string;
  lport: number;
  remote: string;
  rport: number;
}

/** a 4-tuple as the string QuadTable keys a tuple that is not canonical numbers by */
export function quadKey(c: Quad): string {
  return `${c.local}|${c.lport}|${c.remote}|${c.rport}`;
}

/**
 * An ordered table indexed by a 4-tuple (the established-socket hash): a Map by quadKey would make
 * a string per lookup; this has none. A tuple of dotted quads and ports is indexed by a hash of
 * its four numbers, masked to a small integer, in an open-addressed table of typed arrays (no
 * object and no Map entry per socket: 8 bytes a slot, at most half the slots used, and the hash
 * of each entry by its place in the table, to place them again): a slot holds an entry's place + 1
 * and its hash, a lookup probes from its hash's slot to the first empty one and keeps the entries
 * of its own tuple (tuples whose hashes are the same, or whose probes cross, share a run of
 * slots). A tuple that is not canonical numbers is indexed by its quadKey in a Map of its own; no
 * such key equals the quadKey of a canonical tuple (its address or port prints otherwise), so the
 * two never answer for one key. Removing entries moves the places of those after them: the index
 * is made again, from the table, at the next lookup or addition (sockets are added, not removed,
 * on the datapath).
 */
export class QuadTable<T extends Quad & object> extends OrderedTable<T> {
  /**
   * by probe slot i: slots[2i] the entry's place + 1 (0: empty), slots[2i + 1] its index key; a
   * power of two slots long. The key beside the place: a probe passes other tuples' slots without
   * reading their entries (in a table of tens of thousands of sockets each is a cache miss)
   */
  private slots = new Int32Array(0);
  /** the index key of each entry by its place (-1: not canonical, in `other`) */
  private hashes = new Int32Array(0);
  /** canonical entries in `slots` */
  private used = 0;
  /** entries were removed: `slots` and `hashes` are made again before they are read */
  private stale = false;
  private other = new Map<string, Slot<T>>();

  /** `mask`: the hash's bits (a test narrows it to make tuples share slots) */
  constructor(private readonly mask = 0x3fffffff) {
    super();
  }

  /**
   * the index key of a canonical tuple, or -1 (the tuple is indexed by its quadKey): what newestAt
   * and addAt take (a lookup and the addition that follows it compute it once)
   */
  key(local: string, lport: number, remote: string, rport: number): number {
    // parsed once per string: every segment received looks its socket up
    const a = parseIp4Cached(local);
    const b = parseIp4Cached(remote);
    if (a < 0 || b < 0 || !isPort(lport) || !isPort(rport)) return -1;
    let h = Math.imul(a ^ lport, 0x9e3779b1);
    h = Math.imul(h ^ (h >>> 15) ^ b, 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13) ^ rport, 0xc2b2ae35);
    return (h ^ (h >>> 16)) & this.mask;
  }

  /**
   * the places of the canonical entries of the tuple whose key is k, in probe order, which is
   * table order: entries are placed in table order (added, or all again) and never taken out of
   * a slot, so an entry of key k sits further on k's probe run than every entry of k before it
   */
  private *probe(k: number, local: string, lport: number, remote: string, rport: number): Generator<number> {
    if (this.stale) this.reindex();
    const slots = this.slots;
    const m = (slots.length >> 1) - 1;
    if (m < 0) return;
    for (let i = k & m; slots[2 * i] !== 0; i = (i + 1) & m) {
      const at = slots[2 * i] - 1;
      if (slots[2 * i + 1] === k && is(this.entryAt(at), local, lport, remote, rport)) yield at;
    }
  }

  /** the entries of the 4-tuple, in table order */
  getAll(local: string, lport: number, remote: string, rport: number): readonly T[] {
    const k = this.key(local, lport, remote, rport);
    // (entries removed: both indexes made again first, the quadKey Map too)
    if (this.stale) this.reindex();
    if (k < 0) {
      const v = this.other.get(quadKey({ local, lport, remote, rport }));
      return v === undefined ? [] : Array.isArray(v) ? v : [v];
    }
    return [...this.probe(k, local, lport, remote, rport)].map((at) => this.entryAt(at));
  }

  /** the last added entry of the 4-tuple */
  newest(local: string, lport: number, remote: string, rport: number): T | undefined {
    return this.newestAt(this.key(local, lport, remote, rport), local, lport, remote, rport);
  }

  /** newest, the tuple's index key k given (key's) */
  newestAt(k: number, local: string, lport: number, remote: string, rport: number): T | undefined {
    if (this.stale) this.reindex();
    if (k < 0) {
      const v = this.other.get(quadKey({ local, lport, remote, rport }));
      return Array.isArray(v) ? v[v.length - 1] : v;
    }
    const slots = this.slots;
    const m = (slots.length >> 1) - 1;
    if (m < 0) return undefined;
    let last = -1;
    for (let i = k & m; slots[2 * i] !== 0; i = (i + 1) & m) {
      const at = slots[2 * i] - 1;
      if (slots[2 * i + 1] === k && is(this.entryAt(at), local, lport, remote, rport)) last = at;
    }
    return last < 0 ? undefined : this.entryAt(last);
  }

  protected link(t: T): void {
    this.linkAt(this.key(t.local, t.lport, t.remote, t.rport));
  }

  /** add, the entry's index key k given (key's) */
  addAt(t: T, k: number): T {
    this.items.push(t);
    this.linkAt(k);
    return t;
  }

  /**
   * add the entry `maker.make(arg)` makes, made when first read (a lookup that finds it, `list`),
   * its index key k given (key's; a deferred entry's tuple is known without it)
   */
  addDeferredAt(maker: DeferredEntry<T>, arg: number, k: number): void {
    this.pushDeferred(maker, arg);
    this.linkAt(k);
  }

  /** the entry added last goes into the index under key k */
  private linkAt(k: number): void {
    if (this.stale) return this.reindex();
    this.place(this.items.length - 1, k);
  }

  /** the entry at `at` goes into the index under key k (those before it are in it, none after it) */
  private place(at: number, k: number): void {
    if (at >= this.hashes.length) {
      const h = new Int32Array(Math.max(8, this.hashes.length * 2));
      h.set(this.hashes);
      this.hashes = h;
    }
    this.hashes[at] = k;
    if (k < 0) {
      const t = this.entryAt(at);
      return linkIn(this.other, quadKey(t), t);
    }
    if ((this.used + 1) * 4 > this.slots.length) this.grow(Math.max(16, this.slots.length), at);
    this.insert(at, k);
    this.used++;
  }

  private insert(at: number, k: number): void {
    const slots = this.slots;
    const m = (slots.length >> 1) - 1;
    let i = k & m;
    while (slots[2 * i] !== 0) i = (i + 1) & m;
    slots[2 * i] = at + 1;
    slots[2 * i + 1] = k;
  }

  /** the probe table at `size` slots, the canonical entries before place `upTo` placed again in table order */
  private grow(size: number, upTo: number): void {
    this.slots = new Int32Array(2 * size);
    for (let at = 0; at < upTo; at++) if (this.hashes[at] >= 0) this.insert(at, this.hashes[at]);
  }

  /** the index made again from the table (after entries were removed) */
  private reindex(): void {
    this.stale = false;
    this.slots = new Int32Array(0);
    this.hashes = new Int32Array(0);
    this.used = 0;
    this.other = new Map();
    const items = this.list();
    for (let at = 0; at < items.length; at++) {
      const t = items[at];
      this.place(at, this.key(t.local, t.lport, t.remote, t.rport));
    }
  }

  protected removed(): void {
    this.stale = true;
  }
}

/** t is the 4-tuple's */
function is(t: Quad, local: string, lport: number, remote: string, rport: number): boolean {
  return t.lport === lport && t.rport === rport && t.local === local && t.remote === remote;
}

/* ================================================================== compact tables */

/**
 * Strings the compact tables hold (devices, addresses, MACs), each kept once for the whole
 * process; 0 stands for "none". Only the tables see the numbers: what leaves a table is the string.
 */
const strings: (string | undefined)[] = [undefined];
const stringIds = new Map<string, number>();

export function intern(s: string | undefined): number {
  if (s === undefined) return 0;
  let id = stringIds.get(s);
  if (id === undefined) {
    id = strings.length;
    strings.push(s);
    stringIds.set(s, id);
  }
  return id;
}

/** the string of an id intern() gave */
export function interned(id: number): string | undefined {
  return strings[id];
}

/** a string's id when it has one (a lookup interns nothing) */
function idOf(s: string): number | undefined {
  return stringIds.get(s);
}

/** a column: an interned string (or undefined), a number, a boolean, or one of a closed list of strings */
export type ColumnKind = 'str' | 'num' | 'bool' | readonly string[];

/**
 * The columns of an entry type, and the key lists its entries were inserted with (each once: a
 * row keeps the number of its list, so that its object is rebuilt with the very keys, in the very
 * order, it had). A row is a run of 32-bit words (the strings' ids, booleans, the closed lists'
 * indexes, then the row's key list and its chain link) and a run of doubles (the numbers).
 */
export class Schema<T extends object> {
  readonly keys: readonly (keyof T & string)[];
  readonly kinds: readonly ColumnKind[];
  /** where a column is in its run */
  readonly pos: readonly number[];
  /** words per row: the columns that are not numbers, the key list, the chain link */
  readonly words: number;
  /** doubles per row */
  readonly doubles: number;
  private readonly colOf = new Map<string, number>();
  /** the key lists, as column numbers */
  readonly shapes: (readonly number[])[] = [];
  private readonly shapeIds = new Map<string, number>();
  private last: number | undefined;
  private lastKeys: readonly string[] = [];

  constructor(columns: { [K in keyof T & string]-?: ColumnKind }) {
    this.keys = Object.keys(columns) as (keyof T & string)[];
    this.kinds = this.keys.map((k) => columns[k]);
    this.keys.forEach((k, i) => this.colOf.set(k, i));
    let w = 0;
    let d = 0;
    this.pos = this.kinds.map((k) => (k === 'num' ? d++ : w++));
    this.words = w + 2;
    this.doubles = d;
  }

  column(key: keyof T & string): number {
    return this.colOf.get(key)!;
  }

  /** the number of an object's key list; undefined when a key is not a column (or too many lists) */
  shapeOf(o: object): number | undefined {
    const keys = Object.keys(o);
    // entries mostly come from one place in a row: the key list of the last one, without a join
    if (this.last !== undefined && sameKeys(this.lastKeys, keys)) return this.last;
    const text = keys.join(',');
    let id = this.shapeIds.get(text);
    if (id === undefined) {
      if (!keys.every((k) => this.colOf.has(k)) || this.shapes.length === KEPT) return undefined;
      id = this.shapes.length;
      this.shapes.push(keys.map((k) => this.colOf.get(k)!));
      this.shapeIds.set(text, id);
    }
    this.last = id;
    this.lastKeys = keys;
    return id;
  }

  /** whether `v` fits column `c` */
  fits(c: number, v: unknown): boolean {
    const kind = this.kinds[c];
    return kind === 'str'
      ? v === undefined || typeof v === 'string'
      : kind === 'num'
        ? typeof v === 'number'
        : kind === 'bool'
          ? typeof v === 'boolean'
          : typeof v === 'string' && kind.includes(v);
  }
}

/** the same keys in the same order */
export function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Who is told that a table's entries changed (its namespace: Netns.stateChanged, the state
 * generation moves on). A table of a namespace has one; a shared segment (never written) none.
 */
export interface StateOwner {
  stateChanged(): void;
}

/** a type whose fields may be written (the entries' readonly fields are written only through CompactTable.update) */
export type Writable<T> = { -readonly [K in keyof T]: T[K] };

/** the key list number of a row whose object is the truth (given to `add`, or not representable in the columns) */
const KEPT = 0xff;
const NONE = -1;
/** what a table holds before its first row: no typed array of its own (a pod's namespace has few rows) */
const NO_WORDS = new Uint32Array(0);
const NO_DOUBLES = new Float64Array(0);
const NO_SLOTS = new Int32Array(0);

/**
 * An ordered table kept in columns (typed arrays, strings interned), indexed by one or two string
 * columns with open addressing: the kernel's neighbour and FDB hash tables, listed in the order
 * entries were added. An entry is an object only where one is handed out: `add` keeps the object
 * it is given (a lookup returns that very object), `insert` keeps only its values; `first` and
 * `all` make a row's object once and keep it (the datapath changes an entry in place: the kept
 * object is then the entry); `list` and `removeWhere` show the rows without an object as fresh
 * copies. Several entries may share a key; `first` returns the first added.
 */
export class CompactTable<T extends object> {
  /**
   * A shared segment (an immutable table of the same schema that no namespace writes: a
   * daemon's lease set, the same entries on every node), listed and looked up as this table's
   * own rows, except the slots in `gone` (the node's own lease, entries removed since). Its slots
   * are this table's 0 … nb-1, this table's own rows nb and up; it is listed where it was
   * attached (before the own rows at `baseAt` and after). A key lives either in the own rows or in
   * the segment's live rows, never in both: an own entry of a key the segment holds first copies
   * the segment's rows into this table (copy on write, `materialize`).
   */
  private base: CompactTable<T> | undefined;
  private nb = 0;
  private gone: Set<number> | undefined;
  private baseLive = 0;
  private baseAt = 0;
  /** slots in use or freed */
  private cap = 0;
  private u = NO_WORDS;
  private f = NO_DOUBLES;
  /** the objects of the rows that have one, by slot */
  private objs: Map<number, T> | undefined;
  private free: number[] | undefined;
  /** slots in the order the entries were added */
  private order = NO_SLOTS;
  private count = 0;
  private hash: SlotHash;
  /** the words of the key columns in a row (colB -1: a key of one column) */
  private readonly colA: number;
  private readonly colB: number;

  constructor(
    private readonly schema: Schema<T>,
    private readonly keyNames: readonly (keyof T & string)[],
    /**
     * told of every change of the entries: an entry added, removed or changed through update (a
     * table moved to another namespace with its device gets that namespace: netlink.ts)
     */
    public owner?: StateOwner,
  ) {
    const [a, b] = keyNames.map((k) => schema.pos[schema.column(k)]);
    this.colA = a;
    this.colB = b ?? -1;
    this.hash = new SlotHash(this);
  }

  /** SlotKeys: a slot's key (the tables of every namespace share these methods, not closures of their own) */
  keyA(s: number): number {
    return this.word(s, this.colA);
  }

  keyB(s: number): number {
    return this.colB < 0 ? 0 : this.word(s, this.colB);
  }

  /**
   * Entries insertLater queued: put at the table's next use, before anything else (every method
   * below puts them first), so that what anything reads or writes is the table as if they had
   * been put at once
   */
  private later: T[] | undefined;

  /**
   * insert(t), made at the table's next use (a bridge port's local FDB entry: most nodes' bridges
   * are never read). Not for a segment (attach puts a segment's queue first too).
   */
  insertLater(t: T): void {
    // a write as insert's is: the owner's generation moves now, as when the entry is put
    this.owner?.stateChanged();
    (this.later ??= []).push(t);
  }

  /** the entries insertLater queued, put now (insert's work, in order) */
  private now(): void {
    const q = this.later;
    if (q === undefined) return;
    this.later = undefined;
    for (const t of q) this.put(t, false);
  }

  get size(): number {
    this.now();
    return this.count + this.baseLive;
  }

  /** the rows this table stores itself: its entries but those it lists from its segment */
  get ownSize(): number {
    this.now();
    return this.count;
  }

  /** the table lists a shared segment's rows (attach) */
  get shared(): boolean {
    this.now();
    return this.base !== undefined;
  }

  list(): readonly T[] {
    this.now();
    const slots = this.slots();
    const out: T[] = new Array(slots.length);
    for (let i = 0; i < slots.length; i++) out[i] = this.view(slots[i]);
    return out;
  }

  /** the shared segment this table lists as rows of its own (attach, a table of its class); undefined when it has none */
  get segment(): this | undefined {
    this.now();
    return this.base as this | undefined;
  }

  /**
   * The entries by which this table may answer a key otherwise than its segment does: its own
   * rows, the segment's rows it does not list (gone: as the segment has them), and the segment's
   * rows it holds an object of (handed out, and changed in place maybe), in no particular order.
   * A key none of them has is answered as the segment answers it.
   */
  scanDiffering(visit: (t: T) => void): void {
    this.now();
    for (let i = 0; i < this.count; i++) visit(this.view(this.order[i]));
    if (this.gone) for (const s of this.gone) visit(this.base!.view(s));
    if (this.objs) for (const [s, t] of this.objs) if (s < this.nb) visit(t);
  }

  /** the slots in the order the entries were added: the own rows before `baseAt`, the segment's live rows, the rest */
  private slots(): number[] {
    const out: number[] = [];
    const at = this.base ? this.baseAt : this.count;
    for (let i = 0; i < at; i++) out.push(this.order[i]);
    const b = this.base;
    if (b)
      for (let j = 0; j < b.count; j++) {
        const s = b.order[j];
        if (!this.gone?.has(s)) out.push(s);
      }
    for (let i = at; i < this.count; i++) out.push(this.order[i]);
    return out;
  }

  /**
   * Share `seg`'s rows (same schema and class), all but the slots in `exclude` (a daemon's lease set:
   * every node's table the same segment, its own lease left out), listed after this table's
   * entries. Refused (false) when this table already shares one, when `seg` has a row that is
   * an object (it would be shared, not copied), or when a key of the segment's live rows is among
   * this table's own entries; the caller then adds the entries one by one.
   */
  attach(seg: CompactTable<T>, exclude: readonly number[]): boolean {
    this.now();
    seg.now();
    if (
      this.base ||
      seg.base ||
      seg.schema !== this.schema ||
      seg.constructor !== this.constructor ||
      seg.objs?.size ||
      seg.free?.length
    )
      return false;
    const gone = new Set(exclude);
    for (let i = 0; i < this.count; i++) {
      const s = this.order[i];
      for (let t = seg.hash.head(this.keyA(s), this.keyB(s)); t !== NONE; t = seg.next(t))
        if (!gone.has(t)) return false;
    }
    const own = this.slots();
    const { u, f, objs } = this;
    this.clear();
    this.base = seg;
    this.nb = seg.cap;
    this.gone = gone.size ? gone : undefined;
    this.baseLive = seg.count - gone.size;
    this.copyRows(
      own.length,
      (i) => own[i],
      (i) => own[i],
      u,
      f,
      objs,
    );
    this.baseAt = this.count;
    this.owner?.stateChanged();
    return true;
  }

  /** the segment's rows become this table's own (copy on write), in the order they are listed */
  private materialize(): void {
    const slots = this.slots();
    const { words, doubles } = this.schema;
    const u = new Uint32Array(slots.length * words);
    const f = new Float64Array(slots.length * doubles);
    slots.forEach((s, i) => {
      for (let k = 0; k < words; k++) u[i * words + k] = this.word(s, k);
      for (let k = 0; k < doubles; k++) f[i * doubles + k] = this.dbl(s, k);
    });
    const objs = this.objs;
    this.clear();
    this.copyRows(
      slots.length,
      (i) => i,
      (i) => slots[i],
      u,
      f,
      objs,
    );
  }

  /** rows appended as own rows in the order given: row `i` at `rowAt(i)` of `u` and `f`, its object `objs`' entry for `keyOf(i)` */
  private copyRows(
    n: number,
    rowAt: (i: number) => number,
    keyOf: (i: number) => number,
    u: Uint32Array,
    f: Float64Array,
    objs: Map<number, T> | undefined,
  ): void {
    const { words, doubles } = this.schema;
    for (let i = 0; i < n; i++) {
      const s = this.alloc();
      const r = rowAt(i);
      const o = s - this.nb;
      for (let k = 0; k < words; k++) this.u[o * words + k] = u[r * words + k];
      for (let k = 0; k < doubles; k++) this.f[o * doubles + k] = f[r * doubles + k];
      const t = objs?.get(keyOf(i));
      if (t !== undefined) (this.objs ??= new Map()).set(s, t);
      if (this.count === this.order.length) this.order = grow(this.order, this.count * 2 + 4);
      this.order[this.count++] = s;
      this.index(s);
    }
  }

  /** word `k` of slot `s`'s row: the segment's below nb, else this table's own */
  private word(s: number, k: number): number {
    const w = this.schema.words;
    return s < this.nb ? this.base!.u[s * w + k] : this.u[(s - this.nb) * w + k];
  }

  private dbl(s: number, k: number): number {
    const d = this.schema.doubles;
    return s < this.nb ? this.base!.f[s * d + k] : this.f[(s - this.nb) * d + k];
  }

  /** a segment row leaves this table (the segment keeps it: other tables share it) */
  private drop(s: number): void {
    (this.gone ??= new Set()).add(s);
    this.baseLive--;
    this.objs?.delete(s);
  }

  private skipGone(s: number): number {
    while (s !== NONE && this.gone?.has(s)) s = this.base!.next(s);
    return s;
  }

  /**
   * The one writer of an entry's fields in place (the entry as a lookup returned it): the fields
   * in `change` are set and the owner is told. An entry type's fields that decide a lookup's
   * answer are readonly, so that every such write comes here (tsc finds any other).
   */
  update(t: T, change: Partial<Writable<T>>): void {
    this.owner?.stateChanged();
    Object.assign(t, change);
  }

  /** every entry gone, the columns given back */
  clear(): void {
    this.now();
    this.owner?.stateChanged();
    this.base = undefined;
    this.nb = 0;
    this.gone = undefined;
    this.baseLive = 0;
    this.baseAt = 0;
    this.cap = 0;
    this.u = NO_WORDS;
    this.f = NO_DOUBLES;
    this.objs = undefined;
    this.free = undefined;
    this.order = NO_SLOTS;
    this.count = 0;
    this.hash = new SlotHash(this);
  }

  /** an entry kept as the object given: lookups return this very object */
  add(t: T): T {
    this.now();
    this.put(t, true);
    return t;
  }

  /** an entry's values: the object given is not kept */
  insert(t: T): void {
    this.now();
    this.put(t, false);
  }

  remove(t: T): boolean {
    this.now();
    const s = this.slotOf(t);
    if (s === NONE) return false;
    this.owner?.stateChanged();
    if (s < this.nb) {
      this.drop(s);
      return true;
    }
    let i = 0;
    while (this.order[i] !== s) i++;
    this.order.copyWithin(i, i + 1, this.count);
    this.count--;
    if (i < this.baseAt) this.baseAt--;
    this.unindex(s);
    return true;
  }

  removeWhere(pred: (t: T) => boolean): T[] {
    this.now();
    const gone: T[] = [];
    const goneSlots: number[] = [];
    for (const s of this.slots()) {
      const t = this.view(s);
      if (pred(t)) {
        gone.push(t);
        goneSlots.push(s);
      }
    }
    if (!goneSlots.length) return gone;
    this.owner?.stateChanged();
    const dead = new Set(goneSlots);
    let k = 0;
    let at = this.baseAt;
    for (let i = 0; i < this.count; i++)
      if (!dead.has(this.order[i])) this.order[k++] = this.order[i];
      else if (i < this.baseAt) at--;
    this.count = k;
    this.baseAt = at;
    for (const s of goneSlots)
      if (s < this.nb) this.drop(s);
      else this.unindex(s);
    return gone;
  }

  /** the first entry whose key columns hold `key` (one string per key column) */
  protected first(key: readonly string[]): T | undefined {
    this.now();
    const h = this.head(key);
    return h === NONE ? undefined : this.obj(h);
  }

  /** `first` for a reader that keeps nothing: the entry's object when it has one, else a copy */
  protected peekFirst(key: readonly string[]): T | undefined {
    this.now();
    const h = this.head(key);
    return h === NONE ? undefined : this.view(h);
  }

  /** whether an entry's key columns hold `key` */
  protected holds(key: readonly string[]): boolean {
    this.now();
    return this.head(key) !== NONE;
  }

  /**
   * One field of the first entry of `key`, read without making an object (a reader of every
   * node's every entry: doctor's checks); undefined when there is no such entry or it has no
   * such field, as `peekFirst(key)?.[col]` would be
   */
  protected peekColumn<K extends keyof T & string>(key: readonly string[], col: K): T[K] | undefined {
    this.now();
    const h = this.head(key);
    if (h === NONE) return undefined;
    const o = this.objs?.get(h);
    if (o !== undefined) return o[col];
    const c = this.schema.column(col);
    return this.schema.shapes[this.shapeAt(h)].includes(c) ? (this.cell(h, c) as T[K]) : undefined;
  }

  /** every entry of `key`, in the order they were added */
  protected all(key: readonly string[]): T[] {
    this.now();
    const out: T[] = [];
    for (let s = this.head(key); s !== NONE; s = this.next(s)) out.push(this.obj(s));
    return out;
  }

  /* ---------------------------------------------------------------- rows */

  private next(s: number): number {
    const n = this.word(s, this.schema.words - 1) - 1;
    return s < this.nb ? this.skipGone(n) : n;
  }

  /** only ever an own row's (a segment is never written) */
  private setNext(s: number, n: number): void {
    this.u[(s - this.nb) * this.schema.words + this.schema.words - 1] = n + 1;
  }

  private shapeAt(s: number): number {
    return this.word(s, this.schema.words - 2);
  }

  private put(t: T, keep: boolean): void {
    this.owner?.stateChanged();
    // a key the shared segment holds: its rows become this table's own first
    if (this.base) {
      const o = t as Record<string, unknown>;
      const key = this.keyNames.map((k) => o[k] as string);
      if (this.baseHeadOf(key) !== NONE) this.materialize();
    }
    const s0 = this.alloc();
    const s = s0 - this.nb;
    const o = t as Record<string, unknown>;
    const { keys, kinds, pos, words, doubles } = this.schema;
    let shape = keep ? undefined : this.schema.shapeOf(t);
    if (shape !== undefined && !this.schema.shapes[shape].every((c) => this.schema.fits(c, o[keys[c]])))
      shape = undefined;
    for (let c = 0; c < kinds.length; c++) {
      const v = o[keys[c]];
      const kind = kinds[c];
      if (kind === 'num') this.f[s * doubles + pos[c]] = typeof v === 'number' ? v : 0;
      else
        this.u[s * words + pos[c]] =
          kind === 'str'
            ? typeof v === 'string'
              ? intern(v)
              : 0
            : kind === 'bool'
              ? v
                ? 1
                : 0
              : Math.max(0, kind.indexOf(v as string));
    }
    this.u[s * words + words - 2] = shape ?? KEPT;
    if (shape === undefined) (this.objs ??= new Map()).set(s0, t);
    if (this.count === this.order.length) this.order = grow(this.order, this.count * 2 + 4);
    this.order[this.count++] = s0;
    this.index(s0);
  }

  /** the row's object: the one kept, else made now and kept */
  private obj(s: number): T {
    let t = this.objs?.get(s);
    if (t === undefined) {
      t = this.make(s);
      (this.objs ??= new Map()).set(s, t);
    }
    return t;
  }

  private view(s: number): T {
    return this.objs?.get(s) ?? this.make(s);
  }

  private make(s: number): T {
    const o: Record<string, unknown> = {};
    const { keys } = this.schema;
    for (const c of this.schema.shapes[this.shapeAt(s)]) o[keys[c]] = this.cell(s, c);
    return o as T;
  }

  /** column `c`'s value in slot `s`'s row (a row without an object) */
  private cell(s: number, c: number): unknown {
    const kind = this.schema.kinds[c];
    const p = this.schema.pos[c];
    if (kind === 'num') return this.dbl(s, p);
    const v = this.word(s, p);
    return kind === 'str' ? strings[v] : kind === 'bool' ? v === 1 : kind[v];
  }

  /** the slot of `t`: the very object, else the first row without an object that has its values */
  private slotOf(t: T): number {
    const o = t as Record<string, unknown>;
    const key = this.keyNames.map((k) => o[k] as string);
    let same = NONE;
    for (let s = this.head(key); s !== NONE; s = this.next(s)) {
      const kept = this.objs?.get(s);
      if (kept === t) return s;
      if (same === NONE && kept === undefined && sameEntry(this.make(s), o)) same = s;
    }
    return same;
  }

  private alloc(): number {
    const f = this.free?.pop();
    if (f !== undefined) return f;
    const { words, doubles } = this.schema;
    if (this.cap * words === this.u.length) {
      const cap = this.cap < 2 ? 2 : this.cap * 2;
      this.u = grow(this.u, cap * words);
      if (doubles) this.f = grow(this.f, cap * doubles);
    }
    return this.nb + this.cap++;
  }

  /* ---------------------------------------------------------------- the key index */

  /** the first slot of a key given as strings (a lookup interns nothing) */
  private head(key: readonly string[]): number {
    const a = idOf(key[0]);
    const b = key.length > 1 ? idOf(key[1]) : 0;
    if (a === undefined || b === undefined) return NONE;
    const h = this.hash.head(a, b);
    // the own rows' first, else the segment's live rows' (a key is never in both)
    return h !== NONE || !this.base ? h : this.skipGone(this.base.hash.head(a, b));
  }

  /** the first live segment row of a key given as strings */
  private baseHeadOf(key: readonly string[]): number {
    const a = idOf(key[0]);
    const b = key.length > 1 ? idOf(key[1]) : 0;
    if (!this.base || a === undefined || b === undefined) return NONE;
    return this.skipGone(this.base.hash.head(a, b));
  }

  private index(s: number): void {
    this.setNext(s, NONE);
    const a = this.keyA(s);
    const b = this.keyB(s);
    const h = this.hash.head(a, b);
    if (h === NONE) this.hash.setHead(a, b, s);
    else {
      let p = h;
      while (this.next(p) !== NONE) p = this.next(p);
      this.setNext(p, s);
    }
  }

  private unindex(s: number): void {
    const a = this.keyA(s);
    const b = this.keyB(s);
    const h = this.hash.head(a, b);
    if (h === s) this.hash.setHead(a, b, this.next(s));
    else {
      let p = h;
      while (this.next(p) !== s) p = this.next(p);
      this.setNext(p, this.next(s));
    }
    this.objs?.delete(s);
    (this.free ??= []).push(s);
  }
}

/** what a SlotHash reads a slot's key with: the table whose rows keep the keys */
export interface SlotKeys {
  keyA(s: number): number;
  keyB(s: number): number;
}

/** an index from a key of two numbers to the first row slot of that key (SlotHash, or SlotList for a few keys) */
export interface SlotIndex {
  /** the first slot of (a, b), or -1 */
  head(a: number, b: number): number;
  /** slot `s` is the first of (a, b) from now on; -1: the key has no slot any more */
  setHead(a: number, b: number, s: number): void;
}

const NO_HEADS: readonly number[] = [];

/**
 * SlotIndex for a table of a few keys (a pod's routes): the first slots in a list of its exact
 * length, searched in order (a SlotHash's array and object cost ~250 bytes for two keys). `heads`
 * gives them to a SlotHash when the table grows.
 */
export class SlotList implements SlotIndex {
  private t: readonly number[] = NO_HEADS;

  constructor(private readonly rows: SlotKeys) {}

  private find(a: number, b: number): number {
    for (let i = 0; i < this.t.length; i++)
      if (this.rows.keyA(this.t[i]) === a && this.rows.keyB(this.t[i]) === b) return i;
    return NONE;
  }

  head(a: number, b: number): number {
    const i = this.find(a, b);
    return i === NONE ? NONE : this.t[i];
  }

  setHead(a: number, b: number, s: number): void {
    const i = this.find(a, b);
    const n = this.t.length;
    if (i !== NONE && s !== NONE) {
      (this.t as number[])[i] = s;
      return;
    }
    if (i === NONE && s === NONE) return;
    // a list of the exact length (a push leaves room for more)
    const t = new Array<number>(s === NONE ? n - 1 : n + 1);
    for (let j = 0, k = 0; j < n; j++) if (j !== i) t[k++] = this.t[j];
    if (s !== NONE) t[n] = s;
    this.t = t;
  }

  /** the first slot of every key */
  heads(): readonly number[] {
    return this.t;
  }
}

/**
 * Open addressing (linear probing) from a key of two numbers to the first row slot of that key:
 * the index of the compact tables and of the FIB. The rows keep their keys: the table's `keyA`
 * and `keyB` read a slot's.
 */
export class SlotHash implements SlotIndex {
  /** a key's first slot + 1; 0 is empty (no array of its own until the first key) */
  private t = NO_SLOTS;
  private keys = 0;

  constructor(private readonly rows: SlotKeys) {}

  /** the first slot of (a, b), or -1 */
  head(a: number, b: number): number {
    return this.keys === 0 ? NONE : this.t[this.probe(a, b)] - 1;
  }

  /** slot `s` is the first of (a, b) from now on; -1: the key has no slot any more */
  setHead(a: number, b: number, s: number): void {
    if (s === NONE) {
      const i = this.probe(a, b);
      if (this.t[i] === 0) return;
      this.deleteAt(i);
      this.keys--;
      return;
    }
    // at most half full
    if ((this.keys + 1) * 2 > this.t.length) this.rehash(Math.max(8, this.t.length * 2));
    const i = this.probe(a, b);
    if (this.t[i] === 0) this.keys++;
    this.t[i] = s + 1;
  }

  private home(a: number, b: number): number {
    const h = Math.imul(a ^ Math.imul(b + 1, 0x9e3779b1), 0x85ebca6b);
    return ((h ^ (h >>> 15)) >>> 0) & (this.t.length - 1);
  }

  /** the position of (a, b), or where it would go */
  private probe(a: number, b: number): number {
    const mask = this.t.length - 1;
    let i = this.home(a, b);
    for (;;) {
      const v = this.t[i];
      if (v === 0 || (this.rows.keyA(v - 1) === a && this.rows.keyB(v - 1) === b)) return i;
      i = (i + 1) & mask;
    }
  }

  /** linear probing's deletion: later keys of the run move back into the hole */
  private deleteAt(i: number): void {
    const mask = this.t.length - 1;
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const v = this.t[j];
      if (v === 0) break;
      const home = this.home(this.rows.keyA(v - 1), this.rows.keyB(v - 1));
      // v moves into the hole unless its home lies cyclically in (hole, j]
      if (hole <= j ? home <= hole || home > j : home <= hole && home > j) {
        this.t[hole] = v;
        hole = j;
      }
    }
    this.t[hole] = 0;
  }

  private rehash(size: number): void {
    const old = this.t;
    this.t = new Int32Array(size);
    for (const v of old) if (v !== 0) this.t[this.probe(this.rows.keyA(v - 1), this.rows.keyB(v - 1))] = v;
  }
}

export function grow<A extends Uint8Array | Uint32Array | Int32Array | Float64Array>(a: A, cap: number): A {
  const b = new (a.constructor as new (n: number) => A)(cap);
  b.set(a);
  return b;
}

/** a growable typed array full with its n values, grown to hold more: 16, then twice as many */
export function more<A extends Uint8Array | Uint32Array | Int32Array | Float64Array>(a: A, n: number): A {
  return grow(a, n ? 2 * n : 16);
}

/** the same keys with the same values (an entry handed out before and a row's copy) */
function sameEntry(a: object, b: Record<string, unknown>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => (a as Record<string, unknown>)[k] === b[k]);
}

/** a compact table keyed by one string column (an FDB by MAC) */
export class CompactKeyedTable<T extends object> extends CompactTable<T> {
  get(key: string): T | undefined {
    return this.first([key]);
  }

  getAll(key: string): readonly T[] {
    return this.all([key]);
  }

  /** get for a reader that keeps nothing (doctor's checks): the entry's object when it has one, else a copy */
  peek(key: string): T | undefined {
    return this.peekFirst([key]);
  }
  /** an entry of `key` is in the table */
  has(key: string): boolean {
    return this.holds([key]);
  }
}

/**
 * A compact table keyed by two string columns (a neighbour's address and device): `pick` takes
 * the parts, `get` the joined key `inner|outer` (a neighbour's `ip|dev`, Netns.nud's key); the
 * inner part never holds a "|".
 */
export class CompactPairTable<T extends object> extends CompactTable<T> {
  /** the first entry of the key `inner|outer` */
  get(key: string): T | undefined {
    const bar = key.indexOf('|');
    return bar < 0 ? undefined : this.first([key.slice(0, bar), key.slice(bar + 1)]);
  }

  /** the first entry whose parts are `inner` and `outer` */
  pick(inner: string, outer: string): T | undefined {
    return this.first([inner, outer]);
  }

  /** pick for a reader that keeps nothing (doctor's checks): the entry's object when it has one, else a copy */
  peek(inner: string, outer: string): T | undefined {
    return this.peekFirst([inner, outer]);
  }
  /** one field of `pick(inner, outer)`, read without making an object (doctor's checks) */
  peekField<K extends keyof T & string>(inner: string, outer: string, col: K): T[K] | undefined {
    return this.peekColumn([inner, outer], col);
  }
}
