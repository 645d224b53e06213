/**
 * An exact cache of one table's traversals at one hook, per rule-set plan (Open vSwitch's megaflow
 * cache, for ipt_do_table): a traversal is a function of the packet fields the rules reachable from
 * the hook's builtin chain read (addresses, protocol, ports, ICMP type, devices, the mark as the
 * table begins, conntrack's state and entry), of the IP sets and of what `-m addrtype` and
 * `-m rpfilter` ask of the namespace. The fields are worked out once per plan and per IP-set
 * generation from the compiled rules, per protocol (`specOf`); a traversal is kept under their values, with the
 * answers it had from addrtype and rpfilter, and replayed for a later packet with the same values
 * when those answers still hold: the same rule hits (the same records), each rule's and the
 * policy's counters counted with this packet's length, MARK's effect on the mark, the verdict, the
 * deciding rule, CT --notrack.
 *
 * Never kept: a traversal that drew a random number (`-m statistic --mode random`, pinned or not),
 * and nothing of a table whose reachable rules keep state (`-m statistic --mode nth`, `-m recent`).
 * A new plan (Netfilter.changed()) starts with no cache; an IP-set write (src/kernel/ipset.ts)
 * drops the plan's caches (Netfilter.setsChanged()). Bounded: SLOTS entries per table and hook,
 * made at the first traversal of that table at that hook; a traversal is kept the second time its
 * key is seen, so that walks that do not repeat (podwalk matrix) keep nothing.
 */
import { IPSET_DIMENSION } from '../ipset.ts';
import type { MatchEnv, PacketView } from './extension.ts';
import {
  traverse,
  type CompiledChain,
  type CompiledRule,
  type CompiledTable,
  type RuleHit,
  type Traversal,
} from './eval.ts';
import type { HookTable } from './plan.ts';
import type { NfDecision } from '../events.ts';
import { CT_STATES, type Chain, type Hook, type Rule, type TableName } from './types.ts';

/** the fields a key holds (a bit each) */
const F_SRC = 1 << 0;
const F_DST = 1 << 1;
/** always (the protocol picks the fields) */
const F_PROTO = 1 << 2;
const F_SPORT = 1 << 3;
const F_DPORT = 1 << 4;
const F_ICMP = 1 << 5;
const F_IN = 1 << 6;
const F_OUT = 1 << 7;
const F_MARK = 1 << 8;
const F_CTSTATE = 1 << 9;
/** the entry's SNAT/DNAT (conntrack --ctstate SNAT,DNAT) */
const F_CTNAT = 1 << 10;
/** the rest of the entry xt_conntrack reads: direction, status bits, the tuples' addresses */
const F_CTALL = 1 << 11;

/** entries per table and hook (a power of two: the key's hash picks the slot) */
const SLOTS = 16;
const SLOT_SHIFT = 28;
/**
 * A key is the fields' values in two parts: its numbers, as int32 (src dst proto sport dport icmp
 * mark ctstate ctbits; an address or mark as its 32 bits), compared as integers, and its strings
 * (in out origsrc origdst replsrc repldst), only when the spec reads one of them (F_STRS)
 */
const NUMS = 9;
const STRS = 6;
const F_STRS = F_IN | F_OUT | F_CTALL;

/** an addrtype or rpfilter answer the traversal had (its arguments are the key's fields) */
type Probe =
  | { kind: 'addrtype'; addr: number; dev: string | undefined; answer: string }
  | { kind: 'rpfilter'; src: number; iif: string; loose: boolean; acceptLocal: boolean; answer: boolean };

/** one kept traversal */
interface Verdict {
  readonly hash: number;
  /** the key: its numbers and strings (undefined: the spec reads none) */
  readonly nums: Int32Array;
  readonly strs: readonly string[] | undefined;
  readonly path: readonly RuleHit[];
  /** the rules of the path (each counts the packet) */
  readonly rules: readonly Rule[];
  readonly verdict: Traversal['verdict'];
  readonly decided: RuleHit | undefined;
  readonly notrack: boolean;
  /** the mark after: (mark & markAnd) ^ markXor */
  readonly markAnd: number;
  readonly markXor: number;
  readonly probes: readonly Probe[] | undefined;
  /**
   * the namespace's routing generation (Netns.routeGeneration) when the probes last gave their
   * answers: they read only addresses, devices and routes, which move it, and their arguments
   * are the key's, so while it stands they need not be asked again
   */
  probesAt: number;
  /** the traversal's typed decision, once a step asked for it (stack.ts nfDecision) */
  decision?: NfDecision;
  /** its hook event, once a hook recorded it (hooks.ts runTable), and its step's event (stack.ts) */
  event?: { kind: 'traversal'; traversal: Traversal };
  step?: { type: 'netfilter'; decision: NfDecision };
  /**
   * the traversal as traverse made it when it was kept (kept set): what every replay gives (nothing
   * writes a traversal once it is made)
   */
  traversal: Traversal;
}

/** off: every traversal runs (the oracle test's reference); hits: traversals replayed so far */
export const verdictCache = { on: true, hits: 0 };

/** a table's cache at one hook */
export interface VerdictCache {
  /**
   * the fields of the key (F_*) by protocol class (classOf); -1: nothing is kept for that class;
   * UNKNOWN: not worked out yet
   */
  readonly specs: number[];
  readonly slots: (Verdict | undefined)[];
  /** per slot, the hash of a key seen once and not kept (-1: none) */
  readonly seen: number[];
}

/** what a traversal being kept records (HookRun, as the traversal's MatchEnv, fills it) */
export interface Recording {
  /** a random number was drawn: not kept */
  drew: boolean;
  probes: Probe[] | undefined;
}

/**
 * the protocols a key's fields are worked out for (a rule with another `-p` reads nothing of the
 * packet); the rest share a class (undefined)
 */
const PROTO_CLASSES = [6, 17, 1, undefined] as const;
/** a class whose fields are not worked out yet */
const UNKNOWN = -2;
const classOf = (proto: number) => (proto === 6 ? 0 : proto === 17 ? 1 : proto === 1 ? 2 : 3);

/** can the rule's -p pass for a packet of `proto` (undefined: any protocol outside PROTO_CLASSES) */
function protoMayPass(r: CompiledRule, proto: number | undefined): boolean {
  const p = r.proto;
  if (!p) return true;
  if (p.v === 0) return !p.neg;
  return proto === undefined || (p.v === proto) !== p.neg;
}

/**
 * The key's fields for packets of `proto` (undefined: any) in the rules the hook reaches in the
 * table (through jumps and gotos of rules whose -p may pass), the sets as they are now; -1: nothing
 * of it is kept. A rule whose -p cannot pass is never asked anything else (compiledMatches tests
 * the protocol first).
 */
function specOf(table: CompiledTable, hook: Hook, env: Pick<MatchEnv, 'ipset'>, proto?: number): number {
  let spec = F_PROTO;
  const seen = new Set<CompiledChain>();
  const todo: (CompiledChain | undefined)[] = [table.get(hook)];
  while (todo.length) {
    const c = todo.pop();
    if (!c || seen.has(c)) continue;
    seen.add(c);
    for (const r of c.rules) {
      if (!protoMayPass(r, proto)) continue;
      if (r.jump) todo.push(r.jump);
      if (r.src) spec |= F_SRC;
      if (r.dst) spec |= F_DST;
      if (r.in !== undefined) spec |= F_IN;
      if (r.out !== undefined) spec |= F_OUT;
      for (const m of r.matches)
        switch (m.kind) {
          case 'tcp':
          case 'udp':
            if (m.sport) spec |= F_SPORT;
            if (m.dport) spec |= F_DPORT;
            break;
          case 'icmp':
            spec |= F_ICMP;
            break;
          case 'multiport':
            spec |= m.flags === 'src' ? F_SPORT : m.flags === 'dst' ? F_DPORT : F_SPORT | F_DPORT;
            break;
          case 'mark':
            spec |= F_MARK;
            break;
          case 'state':
            spec |= F_CTSTATE;
            break;
          case 'conntrack':
            spec |= F_CTSTATE | F_CTNAT;
            if (m.origsrc || m.origdst || m.replsrc || m.repldst || m.status || m.dir) spec |= F_CTALL;
            break;
          case 'addrtype':
            spec |= F_SRC | F_DST | F_IN | F_OUT;
            break;
          case 'rpfilter':
            spec |= F_SRC | F_DST | F_IN;
            break;
          case 'set': {
            spec |= m.flags[0] === 'src' ? F_SRC : F_DST;
            const s = env.ipset(m.name);
            if (s && s.type === 'hash:ip,port' && m.flags.length >= IPSET_DIMENSION[s.type])
              spec |= F_ICMP | (m.flags[1] === 'src' ? F_SPORT : F_DPORT);
            break;
          }
          case 'statistic':
            // nth counts packets; random draws per flow (such a traversal is not kept: cachedTraverse)
            if (m.mode !== 'random') return -1;
            break;
          case 'recent':
            return -1;
          case 'comment':
            break;
          default: {
            // a match kind added later must say here what it reads, or nothing is kept
            const unknown: never = m;
            void unknown;
            return -1;
          }
        }
    }
  }
  return spec;
}

/**
 * a table's cache at a hook: each protocol class's fields are worked out at its first packet (the
 * rules and the sets as they are then)
 */
export function newCache(): VerdictCache {
  return {
    specs: [UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN],
    slots: new Array<Verdict | undefined>(SLOTS).fill(undefined),
    seen: new Array<number>(SLOTS).fill(-1),
  };
}

const mix = (h: number, x: number) => Math.imul(h ^ x, 0x9e3779b1) >>> 0;
const strHash = (s: string) => (s.length << 8) ^ (s.length ? s.charCodeAt(s.length - 1) : 0);

/** the key of the view under `spec`, into `nums` and (when the spec reads one) `strs`, every unused field 0 or ''; returns its hash */
function keyOf(spec: number, p: PacketView): number {
  const n = nums;
  n[0] = spec & F_SRC ? p.src : 0;
  n[1] = spec & F_DST ? p.dst : 0;
  n[2] = p.proto;
  n[3] = spec & F_SPORT ? (p.sport ?? -1) : 0;
  n[4] = spec & F_DPORT ? (p.dport ?? -1) : 0;
  n[5] = spec & F_ICMP ? (p.icmpType === undefined ? -1 : (p.icmpType << 8) | (p.icmpCode ?? 0)) : 0;
  n[6] = spec & F_MARK ? p.mark : 0;
  // a state's place in CT_STATES, from 1
  n[7] = spec & F_CTSTATE ? CT_STATES.indexOf(p.ctstate) + 1 : 0;
  const ct = p.ct;
  const e = ct?.entry;
  let bits = 0;
  if (spec & (F_CTNAT | F_CTALL) && e) bits = 1 | (e.snat ? 2 : 0) | (e.dnat ? 4 : 0);
  if (spec & F_CTALL && e)
    bits |=
      (ct!.dir === 'reply' ? 8 : 0) | (e.seenReply ? 16 : 0) | (e.assured ? 32 : 0) | (e.confirmed ? 64 : 0);
  n[8] = bits;
  let h = spec;
  for (let i = 0; i < NUMS; i++) h = mix(h, n[i]);
  if (!(spec & F_STRS)) return h;
  const s = strs;
  s[0] = spec & F_IN ? (p.in ?? '\0') : '';
  s[1] = spec & F_OUT ? (p.out ?? '\0') : '';
  if (spec & F_CTALL && e) {
    s[2] = e.orig.src;
    s[3] = e.orig.dst;
    s[4] = e.reply.src;
    s[5] = e.reply.dst;
  } else s[2] = s[3] = s[4] = s[5] = '';
  return mix(h, strHash(s[0]) ^ (strHash(s[1]) << 12));
}

/** the key keyOf made last */
const nums = new Int32Array(NUMS);
const strs: string[] = new Array<string>(STRS).fill('');

/**
 * is the kept traversal's key the one keyOf made last (the spec is the same: the key holds the
 * protocol, and a protocol's class has one spec in a cache)
 */
function sameKey(v: Verdict): boolean {
  const a = v.nums;
  for (let i = 0; i < NUMS; i++) if (a[i] !== nums[i]) return false;
  const b = v.strs;
  if (b) for (let i = 0; i < STRS; i++) if (b[i] !== strs[i]) return false;
  return true;
}

/** what cachedTraverse needs of its environment: the matches', and the namespace's routing generation */
type CacheEnv = MatchEnv & { recording?: Recording; readonly ns: { readonly routeGeneration: number } };

/**
 * do the addrtype and rpfilter answers the kept traversal had still hold: at once while the
 * routing generation is the one they were given at, else asked again (and, when they all hold,
 * taken as given at the generation of now)
 */
function probesHold(v: Verdict, env: CacheEnv): boolean {
  const gen = env.ns.routeGeneration;
  if (v.probesAt === gen) return true;
  for (const q of v.probes!)
    if (
      q.kind === 'addrtype'
        ? env.addrType(q.addr, q.dev) !== q.answer
        : env.rpfilter(q.src, q.iif, q.loose, q.acceptLocal) !== q.answer
    )
      return false;
  v.probesAt = gen;
  return true;
}

/**
 * The traversal of the table at the hook for the view, from the cache when a kept one has the
 * view's key (its counters, mark and record replayed), else traverse's, kept when it may be.
 */
export function cachedTraverse(
  cache: VerdictCache,
  entry: HookTable,
  tableName: TableName,
  p: PacketView,
  env: CacheEnv,
): Traversal {
  const hook = env.hook;
  const cls = classOf(p.proto);
  let spec = cache.specs[cls];
  // each protocol class's fields, worked out at its first packet
  if (spec === UNKNOWN) spec = cache.specs[cls] = specOf(entry.compiled, hook, env, PROTO_CLASSES[cls]);
  if (spec < 0) return traverse(entry.compiled, tableName, hook, p, env, true);
  const hash = keyOf(spec, p);
  // two ways: the slot the product's high bits give (they mix every bit of the fields) and its pair
  const slot = hash >>> SLOT_SHIFT;
  const slots = cache.slots;
  const v = slots[slot];
  if (v && v.hash === hash && sameKey(v) && (!v.probes || probesHold(v, env)))
    return replay(v, entry.chain, p);
  const w = slots[slot ^ 1];
  if (w && w.hash === hash && sameKey(w) && (!w.probes || probesHold(w, env)))
    return replay(w, entry.chain, p);
  // a key is kept the second time it is seen (a walk of pairs that never repeat — podwalk matrix —
  // keeps nothing): the hashes of the last keys seen once, two per pair of slots
  const seen = cache.seen;
  if (seen[slot] !== hash && seen[slot ^ 1] !== hash) {
    seen[slot ^ 1] = seen[slot];
    seen[slot] = hash;
    return traverse(entry.compiled, tableName, hook, p, env, true);
  }
  const key = nums.slice();
  const keyStrs = spec & F_STRS ? strs.slice() : undefined;
  const mark = p.mark;
  const rec: Recording = { drew: false, probes: undefined };
  env.recording = rec;
  let t: Traversal;
  try {
    t = traverse(entry.compiled, tableName, hook, p, env, true);
  } finally {
    env.recording = undefined;
  }
  const kept = rec.drew
    ? undefined
    : keep(t, hash, key, keyStrs, rec.probes, env.ns.routeGeneration, mark, p.mark);
  if (kept) {
    t.kept = kept;
    // the newest in the slot, the one it displaces in the pair's other (the older of the two goes)
    if (v) slots[slot ^ 1] = v;
    slots[slot] = kept;
  }
  return t;
}

function keep(
  t: Traversal,
  hash: number,
  key: Int32Array,
  keyStrs: string[] | undefined,
  probes: Probe[] | undefined,
  probesAt: number,
  before: number,
  after: number,
): Verdict | undefined {
  // MARK's --set-xmark steps compose into one: (m & A) ^ X
  let markAnd = 0xffffffff;
  let markXor = 0;
  for (const h of t.path) {
    const target = h.rule.target;
    if (target?.kind !== 'MARK') continue;
    markAnd = (markAnd & ~target.mask) >>> 0;
    markXor = ((markXor & ~target.mask) ^ target.value) >>> 0;
  }
  // (always so: a check that what is replayed is what the traversal did)
  if (((before & markAnd) ^ markXor) >>> 0 !== after) return undefined;
  return {
    hash,
    nums: key,
    strs: keyStrs,
    path: t.path,
    rules: t.path.map((h) => h.rule),
    verdict: t.verdict,
    decided: t.decided,
    notrack: !!t.notrack,
    markAnd,
    markXor,
    probes,
    probesAt,
    traversal: t,
  };
}

function replay(v: Verdict, builtin: Chain, p: PacketView): Traversal {
  verdictCache.hits++;
  const len = p.len;
  const rules = v.rules;
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i];
    r.pkts++;
    r.bytes += len;
  }
  p.mark = ((p.mark & v.markAnd) ^ v.markXor) >>> 0;
  // the policy counts what it decides
  if (!v.decided && !builtin.noCounters) {
    builtin.pkts++;
    builtin.bytes += len;
  }
  return v.traversal;
}
