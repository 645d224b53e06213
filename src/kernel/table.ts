/**
 * An ordered table with a hash index on a key: what the kernel keeps in hash tables (neighbours,
 * FDB entries), listed in the order they were added, as `ip neigh` and `bridge fdb` dump them.
 * Several entries may share a key (a VXLAN FDB's appended default destinations); get() returns the first.
 */
export class KeyedTable<T extends object> {
  private items: T[] = [];
  /**
   * by key: the entry, or the entries in table order when several share the key (an array is
   * never an entry: entries are the kernel's objects); one entry per key is the rule, so most
   * keys cost no list of their own
   */
  private index = new Map<string, T | T[]>();

  constructor(private readonly keyOf: (t: T) => string) {}

  get size(): number {
    return this.items.length;
  }

  list(): readonly T[] {
    return this.items;
  }

  get(key: string): T | undefined {
    const v = this.index.get(key);
    return Array.isArray(v) ? v[0] : v;
  }

  getAll(key: string): readonly T[] {
    const v = this.index.get(key);
    return v === undefined ? [] : Array.isArray(v) ? v : [v];
  }

  add(t: T): T {
    this.items.push(t);
    this.link(this.keyOf(t), t);
    return t;
  }

  remove(t: T): boolean {
    const i = this.items.indexOf(t);
    if (i < 0) return false;
    this.items.splice(i, 1);
    this.unlink(this.keyOf(t), (x) => x === t);
    return true;
  }

  removeWhere(pred: (t: T) => boolean): T[] {
    const gone = this.items.filter(pred);
    if (!gone.length) return gone;
    const keep = new Set(gone);
    this.items = this.items.filter((t) => !keep.has(t));
    for (const t of gone) this.unlink(this.keyOf(t), (x) => keep.has(x));
    return gone;
  }

  /** the key of an entry changed in place (e.g. an FDB entry moved port: key unchanged) — rekey */
  rekey(t: T, oldKey: string): void {
    this.unlink(oldKey, (x) => x === t);
    this.link(this.keyOf(t), t);
  }

  /** `t` goes last among the entries of `k` */
  private link(k: string, t: T): void {
    const v = this.index.get(k);
    if (v === undefined) this.index.set(k, t);
    else if (Array.isArray(v)) v.push(t);
    else this.index.set(k, [v, t]);
  }

  /** the entries of `k` that `gone` picks leave the index */
  private unlink(k: string, gone: (x: T) => boolean): void {
    const v = this.index.get(k);
    if (v === undefined) return;
    const rest = (Array.isArray(v) ? v : [v]).filter((x) => !gone(x));
    if (rest.length === 0) this.index.delete(k);
    else this.index.set(k, rest.length === 1 ? rest[0] : rest);
  }
}

/**
 * KeyedTable's order and methods with a key of two parts (a neighbour's device and address): an
 * index per first part, so a lookup builds no key string (the parts are strings the caller
 * has) and no entry keeps one. `get` takes the joined key `inner|outer` as well (a neighbour's
 * `ip|dev`, Netns.nud's key); the inner part never holds a "|".
 */
export class PairTable<T extends object> {
  private items: T[] = [];
  /** by outer, then inner part: the entry, or the entries in table order when several share the key */
  private index = new Map<string, Map<string, T | T[]>>();

  constructor(
    private readonly outerOf: (t: T) => string,
    private readonly innerOf: (t: T) => string,
  ) {}

  get size(): number {
    return this.items.length;
  }

  list(): readonly T[] {
    return this.items;
  }

  /** the first entry of the key `inner|outer` */
  get(key: string): T | undefined {
    const bar = key.indexOf('|');
    return bar < 0 ? undefined : this.pick(key.slice(0, bar), key.slice(bar + 1));
  }

  /** the first entry whose parts are `inner` and `outer` */
  pick(inner: string, outer: string): T | undefined {
    const v = this.index.get(outer)?.get(inner);
    return Array.isArray(v) ? v[0] : v;
  }

  add(t: T): T {
    this.items.push(t);
    const outer = this.outerOf(t);
    let m = this.index.get(outer);
    if (!m) {
      m = new Map();
      this.index.set(outer, m);
    }
    const k = this.innerOf(t);
    const v = m.get(k);
    if (v === undefined) m.set(k, t);
    else if (Array.isArray(v)) v.push(t);
    else m.set(k, [v, t]);
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

  private unlink(t: T, gone: (x: T) => boolean): void {
    const outer = this.outerOf(t);
    const m = this.index.get(outer);
    const k = this.innerOf(t);
    const v = m?.get(k);
    if (!m || v === undefined) return;
    const rest = (Array.isArray(v) ? v : [v]).filter((x) => !gone(x));
    if (rest.length) m.set(k, rest.length === 1 ? rest[0] : rest);
    else {
      m.delete(k);
      if (m.size === 0) this.index.delete(outer);
    }
  }
}
