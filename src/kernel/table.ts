/**
 * An ordered table with a hash index on a key: what the kernel keeps in hash tables (neighbours,
 * FDB entries), listed in the order they were added, as `ip neigh` and `bridge fdb` dump them.
 * Several entries may share a key (a VXLAN FDB's appended default destinations); get() returns the first.
 */
export class KeyedTable<T> {
  private items: T[] = [];
  private index = new Map<string, T[]>();

  constructor(private readonly keyOf: (t: T) => string) {}

  get size(): number {
    return this.items.length;
  }

  list(): readonly T[] {
    return this.items;
  }

  get(key: string): T | undefined {
    return this.index.get(key)?.[0];
  }

  getAll(key: string): readonly T[] {
    return this.index.get(key) ?? [];
  }

  add(t: T): T {
    this.items.push(t);
    const k = this.keyOf(t);
    const list = this.index.get(k);
    if (list) list.push(t);
    else this.index.set(k, [t]);
    return t;
  }

  remove(t: T): boolean {
    const i = this.items.indexOf(t);
    if (i < 0) return false;
    this.items.splice(i, 1);
    const k = this.keyOf(t);
    const list = this.index.get(k)!.filter((x) => x !== t);
    if (list.length) this.index.set(k, list);
    else this.index.delete(k);
    return true;
  }

  removeWhere(pred: (t: T) => boolean): T[] {
    const gone = this.items.filter(pred);
    if (!gone.length) return gone;
    const keep = new Set(gone);
    this.items = this.items.filter((t) => !keep.has(t));
    for (const t of gone) {
      const k = this.keyOf(t);
      const list = this.index.get(k)!.filter((x) => !keep.has(x));
      if (list.length) this.index.set(k, list);
      else this.index.delete(k);
    }
    return gone;
  }

  /** the key of an entry changed in place (e.g. an FDB entry moved port: key unchanged) — rekey */
  rekey(t: T, oldKey: string): void {
    const list = this.index.get(oldKey)?.filter((x) => x !== t) ?? [];
    if (list.length) this.index.set(oldKey, list);
    else this.index.delete(oldKey);
    const k = this.keyOf(t);
    this.index.set(k, [...(this.index.get(k) ?? []), t]);
  }
}
