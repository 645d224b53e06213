/**
 * Ordered tables with a hash index: what the kernel keeps in hash tables (neighbours, FDB
 * entries), listed in the order they were added, as `ip neigh` and `bridge fdb` dump them.
 * Several entries may share a key (a VXLAN FDB's appended default destinations); get() returns
 * the first. An index holds the entry itself, or the entries in table order when several share
 * the key (an array is never an entry: entries are the kernel's objects); one entry per key is the
 * rule, so most keys cost no list of their own.
 */
type Slot<T> = T | T[];

/** `t` goes last among the entries of `k` */
function linkIn<T extends object>(m: Map<string, Slot<T>>, k: string, t: T): void {
  const v = m.get(k);
  if (v === undefined) m.set(k, t);
  else if (Array.isArray(v)) v.push(t);
  else m.set(k, [v, t]);
}

/** the entries of `k` that `gone` picks leave the index */
function unlinkIn<T extends object>(m: Map<string, Slot<T>>, k: string, gone: (x: T) => boolean): void {
  const v = m.get(k);
  if (v === undefined) return;
  const rest = (Array.isArray(v) ? v : [v]).filter((x) => !gone(x));
  if (rest.length === 0) m.delete(k);
  else m.set(k, rest.length === 1 ? rest[0] : rest);
}

const first = <T extends object>(v: Slot<T> | undefined): T | undefined => (Array.isArray(v) ? v[0] : v);

/** the entries in the order they were added; a subclass keeps the index */
abstract class OrderedTable<T extends object> {
  private items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  list(): readonly T[] {
    return this.items;
  }

  add(t: T): T {
    this.items.push(t);
    this.link(t);
    return t;
  }

  remove(t: T): boolean {
    const i = this.items.indexOf(t);
    if (i < 0) return false;
    this.items.splice(i, 1);
    this.unlink(t, (x) => x === t);
    return true;
  }

  removeWhere(pred: (t: T) => boolean): T[] {
    const gone = this.items.filter(pred);
    if (!gone.length) return gone;
    const keep = new Set(gone);
    this.items = this.items.filter((t) => !keep.has(t));
    for (const t of gone) this.unlink(t, (x) => keep.has(x));
    return gone;
  }

  protected abstract link(t: T): void;
  /** the entries under t's key that `gone` picks leave the index */
  protected abstract unlink(t: T, gone: (x: T) => boolean): void;
}

/** an ordered table indexed by one string key */
export class KeyedTable<T extends object> extends OrderedTable<T> {
  private index = new Map<string, Slot<T>>();

  constructor(private readonly keyOf: (t: T) => string) {
    super();
  }

  get(key: string): T | undefined {
    return first(this.index.get(key));
  }

  getAll(key: string): readonly T[] {
    const v = this.index.get(key);
    return v === undefined ? [] : Array.isArray(v) ? v : [v];
  }

  /** the key of an entry changed in place (e.g. an FDB entry moved port: key unchanged) — rekey */
  rekey(t: T, oldKey: string): void {
    unlinkIn(this.index, oldKey, (x) => x === t);
    linkIn(this.index, this.keyOf(t), t);
  }

  protected link(t: T): void {
    linkIn(this.index, this.keyOf(t), t);
  }

  protected unlink(t: T, gone: (x: T) => boolean): void {
    unlinkIn(this.index, this.keyOf(t), gone);
  }
}

/**
 * An ordered table with a key of two parts (a neighbour's device and address): an index per
 * first part, so a lookup builds no key string (the parts are strings the caller has) and no
 * entry keeps one. `get` takes the joined key `inner|outer` as well (a neighbour's `ip|dev`,
 * Netns.nud's key); the inner part never holds a "|".
 */
export class PairTable<T extends object> extends OrderedTable<T> {
  /** by outer, then inner part */
  private index = new Map<string, Map<string, Slot<T>>>();

  constructor(
    private readonly outerOf: (t: T) => string,
    private readonly innerOf: (t: T) => string,
  ) {
    super();
  }

  /** the first entry of the key `inner|outer` */
  get(key: string): T | undefined {
    const bar = key.indexOf('|');
    return bar < 0 ? undefined : this.pick(key.slice(0, bar), key.slice(bar + 1));
  }

  /** the first entry whose parts are `inner` and `outer` */
  pick(inner: string, outer: string): T | undefined {
    return first(this.index.get(outer)?.get(inner));
  }

  protected link(t: T): void {
    const outer = this.outerOf(t);
    let m = this.index.get(outer);
    if (!m) {
      m = new Map();
      this.index.set(outer, m);
    }
    linkIn(m, this.innerOf(t), t);
  }

  protected unlink(t: T, gone: (x: T) => boolean): void {
    const outer = this.outerOf(t);
    const m = this.index.get(outer);
    if (!m) return;
    unlinkIn(m, this.innerOf(t), gone);
    if (m.size === 0) this.index.delete(outer);
  }
}
