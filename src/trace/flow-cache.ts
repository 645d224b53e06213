/**
 * A flow cache for warm walks (issue 16). Two forms:
 *
 *  - **replay** (`enableFlowCache(c, { replay: true })`): a walk the guards let through is its
 *    template's plan written back onto the world with the walk's parameters (replay.ts: counters,
 *    times, timers, clock, the conntrack entries and sockets made, the entries refreshed, captures
 *    and traces made when read), not walked. A walk that is walked becomes the key's template when
 *    it wrote nothing a plan does not write, found without taking the world's data (#walkReplay);
 *    a walk whose conntrack entries are there as another case (a VXLAN source port an earlier flow
 *    hashed to) has the template of that case. The oracle (test/flow-cache.test.ts) runs it
 *    against walked clusters: worlds and outputs the same after every operation.
 *  - **shadow** (the default; `check` verifies): it records a walk's template (what the walk did,
 *    with what differs from walk to walk taken out), evaluates for every later walk of the same
 *    request whether a replay of the template would be allowed (the guards), counts those walks,
 *    and, in check mode, runs the real walk anyway and verifies that what it did is the template:
 *    any difference throws. It never replays. What it proves, on every state the oracle makes, is
 *    that the guards are sufficient for the parts of a walk the template describes.
 *
 * Keyed by what the walk request fixes (from, to, proto, port, size, df, endpoint, the walk's
 * options, whether captures are on); the source port is the parameter. A walk without a source
 * port (hashed from the port range) is not cached.
 *
 * The template of a walk, all of it relative to the walk's start (t0) and its parameters:
 *  - the clock's advance, the timers armed (offset, kind, namespace), the timer sequence's advance;
 *  - the captures (offset, namespace, device, direction, promiscuity) and their frames parsed;
 *  - every namespace's counters as deltas (IP id, MIB, ARP statistics, each device's statistics,
 *    each netfilter chain's and rule's packets and bytes), the neighbour and FDB entries' times as
 *    offsets from t0, the conntrack entries and TCP sockets made (whole) or changed (the fields);
 *  - each trace: its flow, disposition, role, counters, and every step's kind, layer, namespace,
 *    device, time offset, side exchange, fragment label, event and frame (parsed).
 * The parameters: the source port, the two ISNs (sockets.ts deriveIsn) as offsets, the VXLAN
 * source ports as vxlan_xmit computes them (stack.ts vxlanSourcePort), and, named in the order they first
 * appear (so only their places are checked, not how they are computed), the IP ids and the TCP
 * timestamps; checksums are left to the frames' parse.
 * A replay would have to write all of it, parameters computed; it does not exist yet.
 *
 * The guards (all must pass for a walk to count as one a replay would serve):
 *  - a template of the key, recorded from a walk that wrote nothing but what a replay writes (the
 *    state fingerprint and the generations the same before and after it, no conntrack entry or
 *    socket gone, none made that does not carry the walk's parameters: a tunnel's shared flow),
 *    that was delivered both ways, and whose steps include no ARP, fragment, reassembly, ICMP,
 *    PMTU, drop or leaving the cluster;
 *  - the state and route generations (Netns.stateGeneration, routeGeneration: s16-gen) of the
 *    namespaces the recorded walk's steps crossed the same as after it, and the walk moved none;
 *    no entry whose lookup answer changes with the clock alone (deadlines.ts: a bridge FDB entry's
 *    ageing, a PMTU exception) reaching its deadline before the walk would end. Option
 *    `fingerprint`: instead, the slow exact stand-in of the first version, every namespace's data
 *    (everything snapshot.ts writes but the fields a walk writes as a replay would: counters,
 *    neighbour and FDB times, conntrack, TCP sockets) the same as when the template was recorded;
 *  - no rule with a stateful match (statistic, recent) in a namespace the walk crosses, no pinned
 *    endpoint (kube-proxy's draws are per flow);
 *  - no timer due before the walk would end (t0 + the template's duration), no conntrack entry
 *    expiring before then (conntrack expires entries as lookups pass them, without a timer), no
 *    packet queued by a timer since the last walk (a retransmission the walk would send first);
 *  - the new source port in no conntrack tuple and no TCP socket of any namespace.
 *
 * Platform-free; costs nothing for a cluster on which it is not enabled (one WeakMap lookup a walk).
 */
import type { Cluster } from '../cni/build.ts';
import type { Json } from '../kernel/data.ts';
import { netnsData } from '../kernel/snapshot.ts';
import { deriveIsn } from '../kernel/sockets.ts';
import { fdbDeadline, pmtuDeadline } from '../kernel/deadlines.ts';
import type { Netns } from '../kernel/objects.ts';
import { parseFrame, parseIpv4Packet } from '../wire/packet.ts';
import type { Frame } from '../wire/types.ts';
import { vxlanSourcePort } from '../kernel/stack.ts';
import type { Trace } from './types.ts';
import type { Walk, WalkOptions, WalkRequest } from './walk.ts';
import { liveBefore, makePlan, observing, replayPlan, type Plan, type ReplayResult } from './replay.ts';

export interface FlowCacheStats {
  /** walks through the cache */
  walks: number;
  /** templates recorded (a walk that passed the recording conditions) */
  recorded: number;
  /** walks that found a template and passed every guard: those a replay would serve */
  hits: number;
  /** hits whose real walk was checked against the template (check mode) */
  checked: number;
  /** hits served by a replay (replay mode): the datapath not walked */
  replayed: number;
  /** walks not served, by the first reason */
  misses: Record<string, number>;
}

export interface FlowCacheOptions {
  /** verify every hit: the real walk must do what the template says, or the walk throws */
  check?: boolean;
  /**
   * serve a hit by replaying its template (replay.ts) instead of walking the datapath (check is
   * then not applied: a replayed walk has no real walk to compare with)
   */
  replay?: boolean;
  /** templates kept at most (the oldest is forgotten first) */
  max?: number;
  /**
   * guard the state by the slow fingerprint of every namespace's data (the first stand-in for the
   * generations), not by Netns.stateGeneration, routeGeneration and the clock deadlines (default)
   */
  fingerprint?: boolean;
  /**
   * guards not applied (the oracle's check of each guard: without it, the check must find a hit
   * whose walk is not its template); never for anything but that test
   */
  unguarded?: readonly FlowCacheGuard[];
}

/** the guards, by the name a walk they stop is counted under */
export type FlowCacheGuard =
  | 'pins'
  | 'queued'
  | 'state'
  | 'generation'
  | 'deadline'
  | 'stateful-match'
  | 'timer-due'
  | 'socket-taken'
  | 'ct-expires'
  | 'tuple-taken';

/** a hit's real walk did not do what its template says: the guards let through a state they must not */
export class FlowCacheMismatch extends Error {}

interface Template {
  /** the state fingerprint before (and after) the recorded walk */
  fingerprint: string;
  /** µs the walk took on the clock */
  duration: number;
  /** the namespaces its steps crossed (undefined: steps not kept, every namespace counts) */
  crossed: string[] | undefined;
  /** the crossed namespaces themselves (a world's namespaces are never taken out: a name is always the same one) */
  spaces?: readonly Netns[];
  /** the template's text (what the check compares) */
  effect: string;
  /** the state and route generations of the namespaces the walk read, after it (and before it) */
  gens: number[];
  /** what a replay writes (replay mode), when the walk can be replayed */
  plan?: Plan;
  /** the earliest clock deadline (deadlines.ts) of the crossed namespaces' entries after the walk */
  deadline: number;
  /** replay mode: the key of the case template that served this key's last replay, if not this one */
  lastCase?: string;
  /** replay mode: the keys of this key's case templates by the entries present (caseKey's) */
  cases?: Map<number, string>;
}

/** the key of the case template of `key` (its template tpl) with these entries present (ReplayResult's) */
function caseKey(tpl: Template, key: string, present: number): string {
  const cases = (tpl.cases ??= new Map());
  let at = cases.get(present);
  if (at === undefined) cases.set(present, (at = `${key}#${present}`));
  return at;
}

const caches = new WeakMap<Cluster, FlowCache>();

/** the cluster's flow cache, if one was enabled */
export function flowCacheOf(c: Cluster): FlowCache | undefined {
  return caches.get(c);
}

/** enable the flow cache on `c` (shadow unless `opts.replay`: every walk is still the real one) */
export function enableFlowCache(c: Cluster, opts: FlowCacheOptions = {}): FlowCache {
  const fc = new FlowCache(opts);
  caches.set(c, fc);
  return fc;
}

export function disableFlowCache(c: Cluster): void {
  caches.delete(c);
}

/** fields a replay writes (excluded from the state fingerprint, described by the template instead) */
const REPLAYED = new Set([
  'ipId',
  'mib',
  'arpStats',
  'stats',
  'pkts',
  'bytes',
  'updated',
  'used',
  'confirmed',
]);
/** a namespace's tables a replay adds to (their contents are guarded by the source port's absence) */
const ADDED = new Set(['conntrack', 'tcp']);

/** the step kinds whose walks are not cached: stateful or rare (parked packets, learning, errors) */
const UNCACHED_STEPS = new Set(['arp', 'fragment', 'defrag', 'icmp', 'mtu', 'drop', 'outside']);
/** matches whose answer depends on a per-flow draw or on state a walk writes */
const STATEFUL_MATCHES = new Set(['statistic', 'recent']);

type Data = Record<string, Json>;

/** fields that hold a time (µs on the clock): the template keeps them as offsets from the walk's start */
const TIMES = new Set([
  'updated',
  'used',
  'confirmed',
  'timer',
  'at',
  'expires',
  'time',
  'streamTs',
  'rtoAt',
  'establishedAt',
]);

interface Before {
  /** every namespace's state and route generations */
  gens: number[];
  t0: number;
  seq: number;
  captures: number;
  data: Map<string, Data>;
  fingerprint: string;
}

export class FlowCache {
  readonly stats: FlowCacheStats = { walks: 0, recorded: 0, hits: 0, checked: 0, replayed: 0, misses: {} };
  readonly #templates = new Map<string, Template>();
  readonly #check: boolean;
  readonly #max: number;
  readonly #unguarded: readonly FlowCacheGuard[];
  readonly #fingerprint: boolean;
  readonly #replay: boolean;

  constructor(opts: FlowCacheOptions = {}) {
    this.#replay = opts.replay ?? false;
    if (this.#replay && opts.fingerprint)
      throw new Error('flow cache: a replay is guarded by the generations, not the fingerprint');
    this.#unguarded = opts.unguarded ?? [];
    this.#fingerprint = opts.fingerprint ?? false;
    this.#check = opts.check ?? false;
    this.#max = opts.max ?? 256;
  }

  /** templates kept now */
  get size(): number {
    return this.#templates.size;
  }

  #miss(why: string): void {
    this.stats.misses[why] = (this.stats.misses[why] ?? 0) + 1;
  }

  /** the last key made, and what it was made of */
  #last: { req: WalkRequest; exchange: boolean; steps: boolean; capture: boolean; key: string } | undefined;

  /** the key of a walk request (the last one's again when its fields are the same) */
  #keyOf(req: WalkRequest, opts: WalkOptions, capture: boolean): string {
    const exchange = !!opts.exchange;
    const steps = opts.steps !== false;
    const l = this.#last;
    if (
      l !== undefined &&
      l.req.from === req.from &&
      l.req.to === req.to &&
      l.req.proto === req.proto &&
      l.req.port === req.port &&
      l.req.size === req.size &&
      l.req.df === req.df &&
      l.exchange === exchange &&
      l.steps === steps &&
      l.capture === capture
    )
      return l.key;
    const key = JSON.stringify([
      req.from,
      req.to,
      req.proto,
      req.port ?? null,
      req.size ?? null,
      req.df ?? null,
      exchange,
      steps,
      capture,
    ]);
    this.#last = {
      req: { from: req.from, to: req.to, proto: req.proto, port: req.port, size: req.size, df: req.df },
      exchange,
      steps,
      capture,
      key,
    };
    return key;
  }

  walk(
    c: Cluster,
    req: WalkRequest,
    opts: WalkOptions,
    real: (c: Cluster, req: WalkRequest, opts: WalkOptions) => Walk,
  ): Walk {
    this.stats.walks++;
    const sport = req.sport;
    if (sport === undefined || req.endpoint !== undefined || req.to.includes('/')) {
      this.#miss(sport === undefined ? 'no-sport' : 'service');
      return real(c, req, opts);
    }
    const key = this.#keyOf(req, opts, c.world.capture);
    const tpl = this.#templates.get(key);
    if (this.#replay) return this.#walkReplay(c, req, opts, real, key, sport, tpl);
    const before = this.#before(c);
    const why = tpl ? this.#guard(c, tpl, before.t0, before.fingerprint, sport) : 'no-template';
    if (why) this.#miss(why);
    else this.stats.hits++;
    const w = real(c, req, opts);
    const after = this.#before(c);
    const effect = this.#effect(c, before, after, w, sport);
    if (!why && this.#check) {
      this.stats.checked++;
      if (effect !== tpl!.effect)
        throw new FlowCacheMismatch(
          `flow cache: the walk differs from its template at ${firstDiff(tpl!.effect, effect)}`,
        );
    }
    const notRecorded = this.#recordable(c, w, before, after, effect);
    if (!notRecorded) {
      const crossed = opts.steps === false ? undefined : crossedOf(w);
      this.#remember(c, key, crossed ?? [...c.world.netns.keys()], {
        fingerprint: after.fingerprint,
        duration: after.t0 - before.t0,
        crossed,
        effect,
      });
    } else if (tpl && notRecorded !== 'not-delivered') this.#templates.delete(key);
    return w;
  }

  /**
   * walk, replay mode: a hit is the template's plan written again (replay.ts); any other walk is
   * walked, and becomes the key's template (with a plan) when it wrote nothing but what a plan
   * writes, found without taking the world's data: every generation the same, every conntrack
   * lookup a miss or a hit on an entry it made, the sockets it made the only ones of their
   * four-tuples, no timer gone (makePlan checks the rest)
   */
  #walkReplay(
    c: Cluster,
    req: WalkRequest,
    opts: WalkOptions,
    real: (c: Cluster, req: WalkRequest, opts: WalkOptions) => Walk,
    key: string,
    sport: number,
    tpl: Template | undefined,
  ): Walk {
    // the case that served the key's last replay first: any template whose guards and checks pass
    // is the walk (its own entries are as its walk found them); a VXLAN flow's walks once their
    // source ports repeat are all of one case
    const last = tpl?.lastCase !== undefined ? this.#templates.get(tpl.lastCase) : undefined;
    if (last?.plan && !this.#guard(c, last, c.world.now, '', sport)) {
      const r = replayPlan(c, last.plan, sport);
      if (!('present' in r) && !('refused' in r)) return this.#served(r);
    }
    let why: string | undefined = tpl ? this.#guard(c, tpl, c.world.now, '', sport) : 'no-template';
    // the template's walk made or refreshed conntrack entries this one finds otherwise (a VXLAN
    // flow's source port an earlier flow hashed to): the case has its own template
    let at = key;
    let r: ReplayResult | undefined;
    if (!why) r = tpl!.plan ? replayPlan(c, tpl!.plan, sport) : undefined;
    if (r && 'present' in r) {
      at = caseKey(tpl!, key, r.present);
      const other = this.#templates.get(at);
      why = other ? this.#guard(c, other, c.world.now, '', sport) : 'no-template-of-case';
      r = !why && other!.plan ? replayPlan(c, other!.plan, sport) : undefined;
    }
    if (!why) {
      if (!r) why = 'no-plan';
      else if ('refused' in r) why = `replay-refused:${r.refused}`;
      else if ('present' in r) why = 'replay-refused:present';
      else {
        tpl!.lastCase = at === key ? undefined : at;
        return this.#served(r);
      }
    }
    this.#miss(why);
    const all = [...c.world.netns.keys()];
    const gens = gensOf(c, all);
    const live = liveBefore(c);
    const w = observing(live, () => real(c, req, opts));
    // (a walk that cannot be a template leaves the key's template: its guards decide for the next)
    const not = (r: string) => {
      this.#miss(`plan:${r}`);
      return w;
    };
    if (opts.steps === false) return not('no-steps');
    if (w.request.disposition.kind !== 'delivered' || w.reply?.disposition.kind !== 'delivered')
      return not('not-delivered');
    if (c.world.unresolved) return not('parked');
    for (const t of w.traces)
      for (const s of t.steps) if (UNCACHED_STEPS.has(s.kind)) return not('uncached-step');
    if (gensOf(c, all).join() !== gens.join()) return not('moved-generation');
    const crossed = crossedOf(w);
    if (statefulIn(c, crossed)) return not('stateful-match');
    const plan = makePlan(c, live, w, sport, true);
    if (typeof plan === 'string') return not(plan);
    this.#remember(c, at, crossed, {
      fingerprint: '',
      duration: c.world.now - live.t0,
      crossed,
      effect: '',
      plan,
    });
    return w;
  }

  /**
   * the template of `key` kept (the oldest forgotten first when the cache is full), with the state
   * and route generations and the earliest clock deadline of the namespaces `names` now
   */
  #remember(
    c: Cluster,
    key: string,
    names: readonly string[],
    t: Pick<Template, 'fingerprint' | 'duration' | 'crossed' | 'effect' | 'plan'>,
  ): void {
    if (this.#templates.size >= this.#max && !this.#templates.has(key))
      this.#templates.delete(this.#templates.keys().next().value!);
    // every field from the start, in one order: one hidden class for every template, so the guards'
    // and the replay's reads of them stay monomorphic (a spread of the recording's object, with
    // lastCase and cases added later, made several: V8's IC log showed them polymorphic)
    this.#templates.set(key, {
      fingerprint: t.fingerprint,
      duration: t.duration,
      crossed: t.crossed,
      spaces: t.crossed?.map((n) => c.world.ns(n)),
      effect: t.effect,
      gens: gensOf(c, names),
      plan: t.plan,
      deadline: Math.min(...names.map((n) => deadlineOf(c.world.ns(n)))),
      lastCase: undefined,
      cases: undefined,
    });
    this.stats.recorded++;
  }

  /** a walk served by a replay, counted */
  #served(w: Walk): Walk {
    this.stats.hits++;
    this.stats.replayed++;
    return w;
  }

  /** the first guard that fails (but the one left out, if any), or undefined */
  #guard(
    c: Cluster,
    tpl: Template,
    t0: number,
    fingerprint: string,
    sport: number,
  ): FlowCacheGuard | undefined {
    const off = this.#unguarded;
    const on = off.length ? (g: FlowCacheGuard) => !off.includes(g) : always;
    if (on('pins') && c.stack.pins.size) return 'pins';
    // packets a timer queued since the last walk (a retransmission): the walk sends them first
    if (on('queued') && c.stack.queue.length) return 'queued';
    // the namespaces the guards read: those the template's steps crossed, or (no steps kept) every one now
    const spaces = tpl.spaces ?? [...c.world.netns.values()];
    if (this.#fingerprint) {
      if (on('state') && fingerprint !== tpl.fingerprint) return 'state';
    } else if (on('generation') && !gensAre(spaces, tpl.gens)) return 'generation';
    const end = t0 + tpl.duration;
    if (this.#replay) {
      // the same guards at a walk's cost: the earliest deadline of the crossed namespaces as the
      // template found it (adding or removing an entry moves the generation; a refresh only puts
      // a deadline later); no rule with a stateful match there (a plan is made only without one:
      // the rule sets are the generation's); the tuples and sockets a replay makes are looked up
      // by replayPlan; no conntrack entry of a crossed namespace expiring before the walk ends
      // (no timer guard: timers run inside a walk only while a packet is parked on a neighbour,
      // which no template's walk does; a timer due runs after the walk, replayed or not)
      if (on('deadline') && tpl.deadline <= end) return 'deadline';
      if (on('ct-expires'))
        for (let i = 0; i < spaces.length; i++)
          if (spaces[i].conntrack.noExpiryBefore <= end) return 'ct-expires';
      return undefined;
    }
    // the entries whose lookup answer changes with the clock alone (deadlines.ts)
    if (!this.#fingerprint && on('deadline'))
      for (const ns of spaces) if (deadlineOf(ns) <= end) return 'deadline';
    if (on('stateful-match') && statefulIn(c, tpl.crossed ?? c.world.netns.keys())) return 'stateful-match';
    const next = c.world.nextTimer();
    if (on('timer-due') && next !== undefined && next <= end) return 'timer-due';
    for (const ns of c.world.netns.values()) {
      if (on('socket-taken'))
        for (const t of ns.tcp.list()) if (t.lport === sport || t.rport === sport) return 'socket-taken';
      // conntrack's entries expire when a lookup passes them, not by a timer of the World's
      if (on('ct-expires')) for (const e of ns.conntrack.entries) if (e.expires <= end) return 'ct-expires';
      if (on('tuple-taken'))
        for (const e of ns.conntrack.entries)
          for (const t of [e.orig, e.reply]) if (t.sport === sport || t.dport === sport) return 'tuple-taken';
    }
    return undefined;
  }

  /** why the walk just made cannot be a template (undefined: it can) */
  #recordable(c: Cluster, w: Walk, b: Before, a: Before, effect: string): string | undefined {
    if (w.request.disposition.kind !== 'delivered' || w.reply?.disposition.kind !== 'delivered')
      return 'not-delivered';
    if (c.world.unresolved) return 'parked';
    for (const t of w.traces) for (const s of t.steps) if (UNCACHED_STEPS.has(s.kind)) return 'uncached-step';
    if (a.fingerprint !== b.fingerprint) return 'wrote-state';
    if (b.gens.join() !== a.gens.join()) return 'moved-generation';
    for (const line of effect.split('\n')) {
      // an entry or socket that expired while the walk ran: a later walk's window has none
      if (/^\S+\.(conntrack|tcp) − /.test(line)) return 'expired-in-walk';
      // an entry made without the walk's parameters (a tunnel's flow, shared by later walks,
      // which refresh it): the first walk of many makes it, the others do not
      if (/^\S+\.(conntrack|tcp) \+ /.test(line) && !line.includes('$sport') && !line.includes('$port'))
        return 'shared-entry';
    }
    return undefined;
  }

  /** the state the guards and the template read, now */
  #before(c: Cluster): Before {
    const data = new Map<string, Data>();
    const parts: string[] = [];
    for (const ns of c.world.netns.values()) {
      const d = netnsData(ns) as unknown as Data;
      // the MIB by name (a walk that makes a counter's first count adds a name, a replay a count)
      d.mib = Object.fromEntries(d.mib as [string, number][]);
      data.set(ns.name, d);
      parts.push(JSON.stringify(d, (k, v: unknown) => (REPLAYED.has(k) || ADDED.has(k) ? undefined : v)));
    }
    return {
      gens: gensOf(c, [...c.world.netns.keys()]),
      t0: c.world.now,
      seq: c.world.timerSeq,
      captures: c.world.captures.length,
      data,
      fingerprint: parts.join('\n'),
    };
  }

  /** what the walk did, relative to its start and source port, as text (the template) */
  #effect(c: Cluster, b: Before, a: Before, w: Walk, sport: number): string {
    const t0 = b.t0;
    const rel = (v: Json): Json =>
      typeof v === 'number' && v >= t0 && v <= a.t0 ? `t+${v - t0}` : v === sport ? '$sport' : v;
    // the walk's parameters: its source port, the two ISNs (sockets.ts deriveIsn), its start
    const flow = w.request.flow;
    const isnC = deriveIsn(c.world, flow.src, sport, flow.dst, flow.dport ?? 0);
    const isnS = deriveIsn(c.world, flow.dst, flow.dport ?? 0, flow.src, sport);
    const norm = (f: string, v: unknown): unknown => {
      if (typeof v !== 'number') return v;
      if (TIMES.has(f)) return `t+${v - t0}`;
      // the peer's TCP timestamp (its offset plus the ms of the clock it was sent at): not verified yet
      if (f === 'tsRecent') return '$ts';
      if ((f === 'sport' || f === 'dport' || f === 'lport' || f === 'rport') && v === sport) return '$sport';
      // a VXLAN flow's source port (the inner flow's hash): a parameter of its own
      if ((f === 'sport' || f === 'dport') && v >= 32768) return '$port';
      const dc = (v - isnC) >>> 0;
      const ds = (v - isnS) >>> 0;
      if (dc < 0x10000) return `isnC+${dc}`;
      if (ds < 0x10000) return `isnS+${ds}`;
      return v;
    };
    const out: string[] = [`duration ${a.t0 - t0}`, `timers +${a.seq - b.seq}`];
    // (in the order armed: the heap's order is the order it was written in)
    for (const t of c.world.timers.filter((t) => t.seq >= b.seq).sort((x, y) => x.seq - y.seq))
      out.push(`timer t+${t.at - t0} ${t.ev.kind} ${t.ev.netns}`);
    const caps = c.world.captures;
    for (let i = b.captures; i < caps.length; i++) {
      const x = caps[i];
      out.push(`capture t+${x.time - t0} ${x.netns} ${x.dev} ${x.dir} ${x.promisc}`);
    }
    for (const [name, db] of b.data) {
      const da = a.data.get(name)!;
      for (const k of Object.keys(db)) {
        if (!ADDED.has(k)) {
          diff(db[k], da[k], `${name}.${k}`, rel, out);
          continue;
        }
        // the rows added, normalised: the walk's own values as the parameters they are
        const rb = rowsOf(db[k], k);
        const ra = rowsOf(da[k], k);
        // rows by identity (a conntrack entry's original tuple, a socket's four-tuple): made (+),
        // changed (~: an entry the walk refreshed) or gone (−: expired while the walk ran)
        // (a closed socket and a new one may share their four-tuple: the n-th of a key is its own row)
        const keyB = rowKeys(rb, k);
        const keyA = rowKeys(ra, k);
        const had = new Map(rb.map((r, i) => [keyB[i], JSON.stringify(r)]));
        let kept = 0;
        for (let i = 0; i < ra.length; i++) {
          const r = ra[i];
          const id = keyA[i];
          const raw = had.get(id);
          if (raw !== undefined) kept++;
          if (raw === undefined)
            out.push(`${name}.${k} + ${JSON.stringify(r, (f, v: unknown) => norm(f, v))}`);
          else if (raw !== JSON.stringify(r)) {
            // a changed row: the fields the walk wrote
            const was = JSON.parse(raw) as Data;
            const now = r as Data;
            const fields = Object.keys(now).filter((f) => JSON.stringify(now[f]) !== JSON.stringify(was[f]));
            const text = fields.map(
              (f) => `${f}=${JSON.stringify(now[f], (g, v: unknown) => norm(g || f, v))}`,
            );
            out.push(`${name}.${k} ~ ${id} ${text.join(' ')}`);
          }
        }
        if (kept !== had.size) out.push(`${name}.${k} − ${had.size - kept}`);
      }
    }
    for (const t of w.traces) out.push(...traceTemplate(t, t0));
    // every trace's and capture's content: flows, step events, frames parsed from their bytes,
    // each value that differs per walk as the parameter it is: a VXLAN source port computed as
    // vxlan_xmit computes it (the inner flow's hash, stack.ts flowHash, in the device's range); IP
    // ids and TCP timestamps numbered in the order they first appear (their formulas are not
    // checked: an IP id as its sender's base plus what Netns.ipId added in the walk held for every
    // walk but a loopback one, flannel-host-gw seed 1 op 34, whose SYN-ACK's id was 12 off)
    const named = new Map<string, Map<number, string>>();
    const sportRe = new RegExp(`(?<![0-9])${sport}(?![0-9])`, 'g');
    const param = (kind: string, v: number) => {
      let m = named.get(kind);
      if (!m) named.set(kind, (m = new Map()));
      let n = m.get(v);
      if (n === undefined) m.set(v, (n = `$${kind}${m.size}`));
      return n;
    };
    const frames: { time: number; parsed: unknown }[] = [];
    const stepFrames = w.traces.map((t) =>
      t.steps.map((st) => {
        if (!st.frame) return undefined;
        const f = { time: st.time, parsed: parseBytes(c, st.netns, st.device, st.frame) };
        frames.push(f);
        return f;
      }),
    );
    const captured: { time: number; parsed: unknown }[] = [];
    for (let i = b.captures; i < caps.length; i++)
      captured.push({ time: caps[i].time, parsed: parseBytes(c, caps[i].netns, caps[i].dev, caps[i].frame) });
    const vxlanPorts = new Set<number>();
    for (const f of [...frames, ...captured]) collectVxlanPorts(c, f.parsed, vxlanPorts);
    const content = (f: string, v: unknown): unknown => {
      if (v instanceof Uint8Array) return hex(v);
      // a text naming the source port (a delivery's `tcp/PORT`)
      if (typeof v === 'string') return v.replace(sportRe, '$$sport');
      if (typeof v !== 'number') return v;
      if (TIMES.has(f)) return v >= t0 ? `t+${v - t0}` : v;
      if (PORTS.has(f) && v === sport) return '$sport';
      if (PORTS.has(f) && vxlanPorts.has(v)) return '$vxlan-port';
      if (PORTS.has(f) && v >= 32768) return param('port', v);
      if (f === 'seq' || f === 'ack' || f === 'isn') {
        const dc = (v - isnC) >>> 0;
        const ds = (v - isnS) >>> 0;
        if (dc < 0x10000) return `isnC+${dc}`;
        if (ds < 0x10000) return `isnS+${ds}`;
      }
      // a TCP timestamp: its sender's offset plus the clock's ms when the segment was made, which
      // is not the step's time (a SYN-ACK is made on the SYN's arrival, sent a step later): named
      if ((f === 'val' || f === 'ecr') && v) return param('ts', v);
      if (f === 'id') return param('id', v);
      return v;
    };
    w.traces.forEach((t, i) => {
      out.push(`flow ${stringify(t.flow, content)}`);
      t.steps.forEach((st, j) => {
        out.push(`ev ${st.n} ${stringify(st.ev, content)}`);
        const f = stepFrames[i][j];
        if (f) out.push(`frame ${st.n} ${stringify(f.parsed, content)}`);
      });
    });
    for (const f of captured) out.push(`captured ${stringify(f.parsed, content)}`);
    return out.join('\n');
  }
}

/** rows' identities: a conntrack entry's original tuple, a TCP socket's addresses and ports, and which of that key */
function rowKeys(rows: Json[], k: string): string[] {
  const seen = new Map<string, number>();
  return rows.map((r) => {
    const o = (r ?? {}) as Data;
    const key = k === 'tcp' ? JSON.stringify([o.local, o.lport, o.remote, o.rport]) : JSON.stringify(o.orig);
    const n = seen.get(key) ?? 0;
    seen.set(key, n + 1);
    return n ? `${key}#${n}` : key;
  });
}

/** the rows of a namespace's conntrack table (confirmed entries in order) or TCP sockets, in their data */
function rowsOf(v: Json, k: string): Json[] {
  if (k === 'tcp') return Array.isArray(v) ? v : [];
  const fields = v && typeof v === 'object' && !Array.isArray(v) ? (v as Data).fields : undefined;
  const entries = fields && typeof fields === 'object' && !Array.isArray(fields) ? fields.entries : undefined;
  return Array.isArray(entries) ? entries : [];
}

/** the changes from `x` to `y` (not in conntrack or TCP sockets): numbers as deltas, times as offsets */
function diff(x: Json, y: Json, path: string, rel: (v: Json) => Json, out: string[]): void {
  if (x === y) return;
  if ((typeof x === 'number' || x === undefined) && typeof y === 'number') {
    // a time the walk wrote as an offset from its start, a counter as what the walk added
    const time = TIMES.has(path.slice(path.lastIndexOf('.') + 1));
    out.push(`${path} ${time ? JSON.stringify(rel(y)) : `+${y - (x ?? 0)}`}`);
    return;
  }
  if (x && y && typeof x === 'object' && typeof y === 'object') {
    if (Array.isArray(x) !== Array.isArray(y)) {
      out.push(`${path} ${JSON.stringify(y)}`);
      return;
    }
    if (Array.isArray(x) && Array.isArray(y) && x.length !== y.length)
      out.push(`${path} length ${x.length} → ${y.length}`);
    const ox = x as Data;
    const oy = y as Data;
    for (const k of new Set([...Object.keys(ox), ...Object.keys(oy)]))
      diff(ox[k], oy[k], `${path}.${k}`, rel, out);
    return;
  }
  out.push(`${path} ${JSON.stringify(rel(x))} → ${JSON.stringify(rel(y))}`);
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

/** fields that hold a port */
const PORTS = new Set(['sport', 'dport', 'srcPort', 'dstPort', 'lport', 'rport', 'port']);

/** JSON of `x` through `replace`, an object seen before (shared or a cycle) written as a mark */
function stringify(x: unknown, replace: (k: string, v: unknown, holder: unknown) => unknown): string {
  const seen = new Set<object>();
  return JSON.stringify(x, function (this: unknown, k: string, v: unknown) {
    if (v && typeof v === 'object' && !(v instanceof Uint8Array)) {
      if (seen.has(v)) return '$seen';
      seen.add(v);
      // a rule's live counters are not what the step recorded
      if (Array.isArray(v)) return v;
    }
    if (k === 'pkts' || k === 'bytes') return undefined;
    return replace(k, v, this);
  });
}

/**
 * the VXLAN source ports of the packets in `x` (a parsed frame) that are what vxlan_xmit gives
 * (udp_flow_src_port: the inner flow's hash in the sending device's range)
 */
function collectVxlanPorts(c: Cluster, x: unknown, out: Set<number>): void {
  if (!x || typeof x !== 'object') return;
  const p = x as {
    kind?: string;
    ip?: { src: string };
    payload?: {
      kind: string;
      udp?: { srcPort: number };
      payload?: { kind: string; frame?: { payload: unknown } };
    };
  };
  const inner = p.payload?.payload?.kind === 'vxlan' ? p.payload.payload.frame?.payload : undefined;
  if (p.kind === 'ipv4' && p.ip && p.payload?.udp && inner && (inner as { kind?: string }).kind === 'ipv4') {
    for (const ns of c.world.netns.values())
      for (const l of ns.links.values())
        if (l.type === 'vxlan' && l.local === p.ip.src) {
          const port = vxlanSourcePort(c.world, l, p.payload.payload!.frame as Frame);
          if (port === p.payload.udp.srcPort) out.add(port);
        }
  }
  for (const v of Object.values(x)) collectVxlanPorts(c, v, out);
}

/** a captured frame's or a step's bytes as headers (an IPIP device carries IP packets, no Ethernet) */
function parseBytes(c: Cluster, netns: string, dev: string | undefined, b: Uint8Array): unknown {
  const link = dev === undefined ? undefined : c.world.netns.get(netns)?.link(dev);
  try {
    return link?.type === 'ipip' ? parseIpv4Packet(b) : parseFrame(b);
  } catch (e) {
    return `unparsed ${(e as Error).message} ${hex(b)}`;
  }
}

/** a trace's template: what does not depend on the source port or the start time */
function traceTemplate(t: Trace, t0: number): string[] {
  const d = t.disposition;
  const out = [
    `trace ${t.flow.role.kind} ${d.kind} ${'netns' in d ? d.netns : ''} ${'device' in d ? (d.device ?? '') : ''} ${t.steps.length} steps`,
    `counters ${JSON.stringify(t.counters)}`,
  ];
  for (const s of t.steps)
    out.push(
      `step ${s.n} ${s.kind} ${s.layer} ${s.netns} ${s.device ?? ''} t+${s.time - t0} ${s.aux ?? ''} ${s.part ?? ''}`,
    );
  return out;
}

const always = () => true;

/** a rule with a stateful match (statistic, recent) in a namespace named, or a namespace gone */
function statefulIn(c: Cluster, names: Iterable<string>): boolean {
  for (const n of names) {
    const ns = c.world.netns.get(n);
    if (!ns) return true;
    for (const t of ns.netfilter.tables.values())
      for (const ch of t.values())
        for (const r of ch.rules) if (r.matches.some((m) => STATEFUL_MATCHES.has(m.kind))) return true;
  }
  return false;
}

/** the state and route generation of each namespace named */
function gensOf(c: Cluster, names: Iterable<string>): number[] {
  const out: number[] = [];
  for (const n of names) {
    const ns = c.world.netns.get(n);
    out.push(ns ? ns.stateGeneration : -1, ns ? ns.routeGeneration : -1);
  }
  return out;
}

/** the namespaces' generations are `gens` (gensOf's of their names; made without the array) */
function gensAre(spaces: readonly Netns[], gens: readonly number[]): boolean {
  if (gens.length !== 2 * spaces.length) return false;
  for (let i = 0; i < spaces.length; i++)
    if (spaces[i].stateGeneration !== gens[2 * i] || spaces[i].routeGeneration !== gens[2 * i + 1])
      return false;
  return true;
}

/** the earliest clock deadline of a namespace's entries that change with the clock alone (deadlines.ts) */
function deadlineOf(ns: Netns): number {
  let d = Infinity;
  for (const l of ns.links.values())
    if (l.type === 'bridge') for (const e of l.fdb.list()) d = Math.min(d, fdbDeadline(l, e));
  for (const r of ns.fib.list()) for (const x of r.exceptions ?? []) d = Math.min(d, pmtuDeadline(x));
  return d;
}

/** the namespaces a walk's steps crossed */
function crossedOf(w: Walk): string[] {
  const s = new Set<string>();
  for (const t of w.traces) for (const x of t.steps) s.add(x.netns);
  return [...s];
}

function firstDiff(a: string, b: string): string {
  const la = a.split('\n');
  const lb = b.split('\n');
  for (let i = 0; i < Math.max(la.length, lb.length); i++)
    if (la[i] !== lb[i]) {
      // the lines from a little before their first differing character
      const x = la[i] ?? '(none)';
      const y = lb[i] ?? '(none)';
      let k = 0;
      while (k < x.length && x[k] === y[k]) k++;
      const from = Math.max(0, k - 40);
      return `line ${i + 1}${from ? ` from character ${from}` : ''}: template ${x.slice(from, from + 120)}; walk ${y.slice(from, from + 120)}`;
    }
  return '(equal)';
}
