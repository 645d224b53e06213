/**
 * ip_set, netfilter's IP sets (kernel 6.x, ipset protocol 7), of one network namespace: the set
 * types felix programs (felix/ipsets/ipset_defs.go: hash:ip, hash:net, hash:ip,port), family inet
 * only, and the operations of the ipset netlink subsystem (create, destroy, flush, add, del, test,
 * swap) with the kernel's checks. The sets live in the namespace's Netfilter (`nf.ipsets`), plain
 * data; a rule's `-m set` match names its set, and the references `ipset list` shows are those
 * rules, counted.
 *
 * Membership is tested as the kernel does it: hash:ip and hash:ip,port by the exact key; hash:net
 * by each prefix length the set holds, longest first (mtype_test_cidrs), an address tested without
 * a CIDR as /32. What is not modelled: the hash table itself (bucket layout, resizing, `Size in
 * memory`); members are kept in the order they were added, where the kernel lists them in its
 * bucket order, which depends on the random initval (the model keeps the initval its creator gave).
 *
 * Every function here that writes a set (create, destroy, flush, swap, add, load, del) first calls
 * Netfilter.setsChanged(): the hooks' kept traversals read the sets (netfilter/verdicts.ts).
 */
import { netMask } from './netfilter/parse.ts';
import type { Netfilter } from './netfilter.ts';

export const IPSET_TYPES = ['hash:ip', 'hash:net', 'hash:ip,port'] as const;
export type IpsetType = (typeof IPSET_TYPES)[number];

/** the revision each type's newest module has (ipset list's `Revision:` on 6.x) */
export const IPSET_REVISION: Record<IpsetType, number> = { 'hash:ip': 6, 'hash:net': 7, 'hash:ip,port': 7 };

/** how many packet fields a type's key takes (the set's dimension: `src` or `dst,dst`) */
export const IPSET_DIMENSION: Record<IpsetType, number> = { 'hash:ip': 1, 'hash:net': 1, 'hash:ip,port': 2 };

/** an element: the address (network for hash:net), prefix length (32 for the ip types), protocol and port (hash:ip,port) */
export interface IpsetEntry {
  ip: number;
  cidr: number;
  proto: number;
  port: number;
}

export interface IpSet {
  name: string;
  /** its slot in the namespace's set array (the lowest free one at create; list and save go in this order) */
  index: number;
  type: IpsetType;
  family: 'inet';
  hashsize: number;
  maxelem: number;
  bucketsize: number;
  /** the jhash seed, chosen at create (random in the kernel; the model takes it from its creator) */
  initval: number;
  entries: IpsetEntry[];
}

/** what the kernel answers with (the IPSET_ERR_* codes and errnos libipset turns into messages) */
export type IpsetErrorCode =
  /** ENOENT: no set of that name */
  | 'no-set'
  /** IPSET_ERR_EXIST_SETNAME2 on swap: the second set is not there */
  | 'no-set2'
  /** IPSET_ERR_EXIST_SETNAME2: create of a name in use (without -exist, or of another type) */
  | 'set-exists'
  /** IPSET_ERR_EXIST: add of an element already there */
  | 'exists'
  /** IPSET_ERR_EXIST on del: the element is not there */
  | 'not-added'
  /** IPSET_ERR_BUSY: destroy of a set a rule references */
  | 'busy'
  /** IPSET_ERR_TYPE_MISMATCH: swap of sets of different types */
  | 'type-mismatch'
  /** IPSET_ERR_HASH_FULL */
  | 'full'
  /** IPSET_ERR_INVALID_CIDR: hash:net of /0 */
  | 'invalid-cidr';

export class IpsetError extends Error {
  constructor(
    readonly code: IpsetErrorCode,
    readonly set: string,
  ) {
    super(`${code}: ${set}`);
  }
}

/** IPSET_MAXNAMELEN − 1 */
export const IPSET_MAX_NAME = 31;

export interface IpsetCreate {
  name: string;
  type: IpsetType;
  hashsize?: number;
  maxelem?: number;
  bucketsize?: number;
  initval: number;
  /** IPSET_FLAG_EXIST: a set of that name and type is no error */
  exist?: boolean;
}

/** the namespace's set map, created with the first set */
function sets(nf: Netfilter): Map<string, IpSet> {
  return (nf.ipsetsByName ??= new Map());
}

function setOf(nf: Netfilter, name: string): IpSet {
  const s = nf.ipsets.get(name);
  if (!s) throw new IpsetError('no-set', name);
  return s;
}

/** hash:* create: hashsize rounded up to a power of two, at least 64 (IPSET_MIMINAL_HASHSIZE) */
export function ipsetCreate(nf: Netfilter, req: IpsetCreate): IpSet {
  nf.setsChanged();
  const old = nf.ipsets.get(req.name);
  if (old) {
    // mtype_same_set: the type and the create parameters that stay (maxelem) must be the same
    if (req.exist && old.type === req.type && old.maxelem === (req.maxelem ?? 65536)) return old;
    throw new IpsetError('set-exists', req.name);
  }
  let hashsize = Math.max(64, req.hashsize ?? 1024);
  hashsize = 2 ** Math.ceil(Math.log2(hashsize));
  const used = new Set([...nf.ipsets.values()].map((x) => x.index));
  let index = 0;
  while (used.has(index)) index++;
  const s: IpSet = {
    name: req.name,
    index,
    type: req.type,
    family: 'inet',
    hashsize,
    maxelem: req.maxelem ?? 65536,
    bucketsize: Math.min(12, Math.max(2, ((req.bucketsize ?? 12) + 1) & ~1)),
    initval: req.initval >>> 0,
    entries: [],
  };
  sets(nf).set(req.name, s);
  return s;
}

/** the sets in their slots' order, as list and save walk them */
export function ipsetsInOrder(nf: Netfilter): IpSet[] {
  return [...nf.ipsets.values()].sort((a, b) => a.index - b.index);
}

/** the rules that hold a reference to the set (one per `-m set` match naming it) */
export function ipsetReferences(nf: Netfilter, name: string): number {
  let n = 0;
  for (const t of nf.tables.values())
    for (const c of t.values())
      for (const r of c.rules) for (const m of r.matches) if (m.kind === 'set' && m.name === name) n++;
  return n;
}

/** destroy one set, or every set (no name): a referenced set is EBUSY, and then nothing is destroyed */
export function ipsetDestroy(nf: Netfilter, name?: string): void {
  nf.setsChanged();
  const names = name === undefined ? ipsetsInOrder(nf).map((s) => s.name) : [setOf(nf, name).name];
  for (const n of names) if (ipsetReferences(nf, n) > 0) throw new IpsetError('busy', n);
  for (const n of names) sets(nf).delete(n);
  if (nf.ipsets.size === 0) nf.ipsetsByName = undefined;
}

export function ipsetFlush(nf: Netfilter, name?: string): void {
  nf.setsChanged();
  const sets = name === undefined ? [...nf.ipsets.values()] : [setOf(nf, name)];
  for (const s of sets) s.entries = [];
}

/** swap: the two sets exchange contents and type-specific headers, each name stays where rules point */
export function ipsetSwap(nf: Netfilter, a: string, b: string): void {
  nf.setsChanged();
  const x = setOf(nf, a);
  const y = nf.ipsets.get(b);
  if (!y) throw new IpsetError('no-set2', b);
  if (x.type !== y.type) throw new IpsetError('type-mismatch', a);
  sets(nf).set(a, { ...y, name: a, index: x.index });
  sets(nf).set(b, { ...x, name: b, index: y.index });
}

const sameKey = (a: IpsetEntry, b: IpsetEntry) =>
  a.ip === b.ip && a.cidr === b.cidr && a.proto === b.proto && a.port === b.port;

/** the key the kernel stores: the address masked to its prefix (hash:net), ports only for hash:ip,port */
function keyOf(s: IpSet, e: IpsetEntry): IpsetEntry {
  const cidr = s.type === 'hash:net' ? e.cidr : 32;
  if (s.type === 'hash:net' && (cidr < 1 || cidr > 32)) throw new IpsetError('invalid-cidr', s.name);
  const ip = (e.ip & netMask({ net: 0, len: cidr })) >>> 0;
  return s.type === 'hash:ip,port'
    ? { ip, cidr, proto: e.proto, port: e.port }
    : { ip, cidr, proto: 0, port: 0 };
}

/**
 * add: `entries` is what one command adds (hash:ip given a CIDR or hash:ip,port a port range adds
 * each element); IPSET_ERR_EXIST unless `exist`; a full set stops the add where it is, as the
 * kernel's range loop does.
 */
export function ipsetAdd(nf: Netfilter, name: string, entries: readonly IpsetEntry[], exist = false): void {
  nf.setsChanged();
  addTo(setOf(nf, name), entries, exist);
}

function addTo(s: IpSet, entries: readonly IpsetEntry[], exist: boolean): void {
  const name = s.name;
  own(s);
  const ix = indexes.get(s.entries) ?? makeIndex(s.entries);
  for (const e of entries) {
    const k = keyOf(s, e);
    const key = keyText(k);
    if (ix.keys.has(key)) {
      if (exist) continue;
      throw new IpsetError('exists', name);
    }
    if (s.entries.length >= s.maxelem) throw new IpsetError('full', name);
    s.entries.push(k);
    indexAdd(ix, k, key);
  }
}

/**
 * add of `entries` to an empty set, the set sharing the member list the add makes with every
 * other set loaded from the same `entries` with the same type and maxelem (felix puts every set
 * on every node: 30,000 members of a named-port set on each of 1,000 nodes). The members, their
 * order and the errors are ipsetAdd's (an add that fails is made by ipsetAdd, as far as it goes);
 * a shared list is copied before an add or del changes it (copy on write), so each set stays its
 * own. The caller keeps `entries` unchanged.
 */
export function ipsetLoad(nf: Netfilter, name: string, entries: readonly IpsetEntry[]): void {
  nf.setsChanged();
  const s = setOf(nf, name);
  if (s.entries.length) return ipsetAdd(nf, name, entries);
  let made = loaded.get(entries);
  if (!made) loaded.set(entries, (made = new Map()));
  const how = `${s.type} ${s.maxelem}`;
  let list = made.get(how);
  if (list === undefined) {
    // the add made once, on a set of this type and size of its own
    const probe: IpSet = { ...s, entries: [] };
    try {
      addTo(probe, entries, false);
      list = probe.entries;
      shared.add(list);
    } catch {
      list = null;
    }
    made.set(how, list);
  }
  if (list === null) return ipsetAdd(nf, name, entries);
  s.entries = list;
}

/** member lists ipsetLoad made, by what they were made from, and the set's type and maxelem (null: the add fails) */
const loaded = new WeakMap<readonly IpsetEntry[], Map<string, IpsetEntry[] | null>>();
/** member lists several sets hold: copied before a change */
const shared = new WeakSet<IpsetEntry[]>();

/** the set's own member list, to change in place */
function own(s: IpSet): IpsetEntry[] {
  if (shared.has(s.entries)) s.entries = s.entries.slice();
  return s.entries;
}

export function ipsetDel(nf: Netfilter, name: string, entries: readonly IpsetEntry[], exist = false): void {
  nf.setsChanged();
  const s = setOf(nf, name);
  own(s);
  const ix = indexes.get(s.entries) ?? makeIndex(s.entries);
  for (const e of entries) {
    const k = keyOf(s, e);
    const key = keyText(k);
    if (!ix.keys.has(key)) {
      if (exist) continue;
      throw new IpsetError('not-added', name);
    }
    s.entries.splice(
      s.entries.findIndex((x) => sameKey(x, k)),
      1,
    );
    indexDel(ix, k, key);
  }
}

/**
 * A set's members by key, and the prefix lengths it holds with how many members each: the
 * kernel's hash table and nets[] array, beside the member list (which stays the set's plain data,
 * in the order of the adds). An add or del makes one for the members it changes when the list
 * has none (not kept: felix puts every set on every node, and most nodes' sets are never
 * tested); a packet's test makes one and keeps it, keyed by the list itself: only ipsetAdd and
 * ipsetDel change a list in place and they keep its index in step (flush gives the set a new
 * list, swap moves a list whole, a world read back from data has lists of its own).
 */
interface SetIndex {
  keys: Set<number | string>;
  cidrs: Map<number, number>;
  /** the prefix lengths longest first, until the next add or del changes them */
  order?: number[];
}

const indexes = new WeakMap<IpsetEntry[], SetIndex>();

/** a member's key: a number for the address types (no protocol or port, keyOf), text for hash:ip,port */
const keyText = (k: IpsetEntry): number | string =>
  k.proto === 0 && k.port === 0 ? netKey(k.ip, k.cidr) : `${k.ip}/${k.cidr}/${k.proto}/${k.port}`;

/** exact in a double: the address times 64 plus the prefix length (at most 32) */
const netKey = (ip: number, cidr: number) => ip * 64 + cidr;

function makeIndex(entries: readonly IpsetEntry[]): SetIndex {
  const ix: SetIndex = { keys: new Set(), cidrs: new Map() };
  for (const e of entries) indexAdd(ix, e, keyText(e));
  return ix;
}

function indexOf(entries: IpsetEntry[]): SetIndex {
  let ix = indexes.get(entries);
  if (!ix) indexes.set(entries, (ix = makeIndex(entries)));
  return ix;
}

function indexAdd(ix: SetIndex, k: IpsetEntry, key: number | string): void {
  ix.keys.add(key);
  const n = ix.cidrs.get(k.cidr) ?? 0;
  ix.cidrs.set(k.cidr, n + 1);
  if (!n) ix.order = undefined;
}

function indexDel(ix: SetIndex, k: IpsetEntry, key: number | string): void {
  ix.keys.delete(key);
  const n = ix.cidrs.get(k.cidr)! - 1;
  if (n) ix.cidrs.set(k.cidr, n);
  else {
    ix.cidrs.delete(k.cidr);
    ix.order = undefined;
  }
}

/** the prefix lengths a hash:net set holds, longest first (the kernel's nets[] array) */
function cidrsOf(ix: SetIndex): number[] {
  return (ix.order ??= [...ix.cidrs.keys()].sort((a, b) => b - a));
}

/**
 * Is the element in the set? An address without a CIDR (cidr 32) in a hash:net set is looked up
 * under each prefix length the set holds; with one, exactly (the uadt test of hash:net).
 */
export function ipsetHas(s: IpSet, e: IpsetEntry): boolean {
  const ix = indexOf(s.entries);
  if (s.type === 'hash:net' && e.cidr === 32) {
    for (const cidr of cidrsOf(ix)) {
      const ip = (e.ip & netMask({ net: 0, len: cidr })) >>> 0;
      // a hash:net member's key has no protocol or port (keyOf)
      if (ix.keys.has(netKey(ip, cidr))) return true;
    }
    return false;
  }
  return ix.keys.has(keyText(keyOf(s, e)));
}

/** `ipset test`: ENOENT for a missing set, else the answer */
export function ipsetTest(nf: Netfilter, name: string, e: IpsetEntry): boolean {
  return ipsetHas(setOf(nf, name), e);
}
