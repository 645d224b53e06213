/**
 * One netfilter hook of one namespace, as nf_hook_slow runs it: the hook's entries in priority
 * order — raw (−300), conntrack (−200, PREROUTING and OUTPUT), mangle (−150), nat of the
 * destination (−100, PREROUTING and OUTPUT), filter (0), security (50), nat of the source (100,
 * POSTROUTING and INPUT), conntrack confirm (last, POSTROUTING and INPUT). A table that does not
 * exist in the namespace has no entry and costs nothing; conntrack runs only where something
 * needs it (nf_ct_netns_get); NAT only where the nat table exists, and its table only for a
 * connection's first packet (nf_nat_inet_fn).
 *
 * The result is typed: what conntrack found, each table's traversal, each NAT set-up and packet
 * rewrite, and the verdict. The datapath (stack.ts) acts on it and records it.
 */
import { intToIp4, ip4ToInt, ip4ToIntCached } from '../../wire/addr.ts';
import type { Ipv4Packet } from '../../wire/types.ts';
import { quotedTuple, tcpIndex, tupleOf, type CtResult, type Tuple } from '../conntrack.ts';
import {
  hookManip,
  natIcmpReply,
  natInitialized,
  natNullBinding,
  natNullBindingKept,
  natPacket,
  natSetup,
  type Manip,
  type NatSetup,
} from '../nat.ts';
import type { Netns } from '../objects.ts';
import type { MatchEnv, PacketView } from './extension.ts';
import { traverse, type Traversal } from './eval.ts';
import { hookOps, OP_CT, OP_TABLE, planOf, type HookOp, type HookTable, type NfPlan } from './plan.ts';
import { cachedTraverse, newCache, verdictCache, type Recording } from './verdicts.ts';
import { type AddrType, type Hook, type NatRange, type TableName } from './types.ts';

/** what a hook sees of the skb; NAT replaces pkt, MARK changes mark, conntrack attaches ct */
export interface HookSkb {
  pkt: Ipv4Packet;
  mark?: number;
  ct?: CtResult;
  /** CT --notrack / NOTRACK: the packet is not tracked (IP_CT_UNTRACKED) */
  untracked?: boolean;
}

/** what the hook needs from the datapath around it (one object per datapath, not per packet) */
export interface HookEnv {
  now(): number;
  /** a deterministic u32 (statistic, NAT port choice) */
  random(...parts: (string | number)[]): number;
  /**
   * a draw pinned for a rule (namespace, table, chain, 1-based index), whatever the flow: how a walk takes one
   * branch of a random choice (`trace --endpoint`); undefined: the flow's own draw
   */
  pinned?(ns: Netns, table: TableName, chain: string, index: number): number | undefined;
  /** does the namespace track connections (asked only where it matters) */
  conntrackOn(ns: Netns): boolean;
}

export type NfEvent =
  /** nf_conntrack_in: the entry the packet belongs to (new, found, related) or INVALID */
  | { kind: 'conntrack'; hook: Hook; result: CtResult }
  /** a table's builtin chain ran (omitted for an empty chain that accepted) */
  | { kind: 'traversal'; traversal: Traversal }
  /** nf_nat_setup_info: the entry's manip (a rule's, or the null binding when no rule set one) */
  | { kind: 'nat-setup'; hook: Hook; setup: NatSetup; byRule: boolean; orig: Tuple; reply: Tuple }
  /** nf_nat_packet / nf_nat_icmp_reply_translation rewrote the packet from the entry */
  | { kind: 'nat-rewrite'; hook: Hook; manip: Manip; before: Tuple; after: Tuple; icmpError: boolean }
  /** MASQUERADE found no address on the output device ("ate my IP address") */
  | { kind: 'masquerade-failed'; hook: Hook; device: string };

export interface HookResult {
  verdict: 'ACCEPT' | 'DROP' | 'REJECT';
  /** the traversal whose rule (or policy) dropped or rejected */
  by?: Traversal;
  events: NfEvent[];
}

/** where the packet is: devices, the route's next hop (MASQUERADE), its length (counters) */
export interface HookPlace {
  iif?: string;
  oif?: string;
  nexthop?: string;
  len: number;
}

/** one run of a hook: the tables' match environment too (runHook reuses one, set up by start) */
class HookRun implements MatchEnv {
  table: TableName = 'filter';
  events: NfEvent[] = [];
  readonly pos = { chain: '', index: 0 };
  private flow?: string;
  ns!: Netns;
  hook!: Hook;
  skb!: HookSkb;
  at!: HookPlace;
  env!: HookEnv;
  /** the hook's entries in the namespace's plan, in order */
  private ops!: readonly HookOp[];
  /** a traversal being kept: what it asks that is not in its key (verdicts.ts) */
  recording?: Recording;

  /** a run of `hook` for the packet (every field a run sets, set again) */
  start(ns: Netns, hook: Hook, skb: HookSkb, at: HookPlace, env: HookEnv, plan: NfPlan): this {
    this.ns = ns;
    this.hook = hook;
    this.skb = skb;
    this.at = at;
    this.env = env;
    // the reference path (the verdict cache off) works out what the hook runs from the rule set as it is
    this.ops = verdictCache.on ? plan.ops[hook] : hookOps(ns.netfilter, hook, plan.hooks[hook]);
    this.table = 'filter';
    this.events = [];
    this.pos.chain = '';
    this.pos.index = 0;
    this.flow = undefined;
    this.recording = undefined;
    this.viewPkt = undefined;
    return this;
  }

  /** the run is over: it holds nothing of the world */
  done(): void {
    this.ns = this.skb = this.at = this.env = undefined!;
    this.viewPkt = this.viewCt = undefined;
    this.pv.ct = undefined;
  }

  get now(): number {
    return this.env.now();
  }

  get recent(): MatchEnv['recent'] {
    // a `-m recent` test reads (and may write) its lists, whose answers change with the clock
    this.ns.stateChanged();
    return this.ns.netfilter.ownRecent();
  }

  stateful(): void {
    this.ns.stateChanged();
  }

  ipset(name: string): ReturnType<MatchEnv['ipset']> {
    return this.ns.netfilter.ipsets.get(name);
  }

  /** the packet's flow, for the deterministic random numbers of statistic and NAT */
  private flowKey(): string {
    if (this.flow === undefined) {
      const t = tupleOf(this.skb.pkt);
      this.flow = `${t.proto}|${t.src}|${t.sport}|${t.dst}|${t.dport}|${t.icmpId ?? ''}`;
    }
    return this.flow;
  }

  /** each rule draws its own number, as each xt_statistic call takes a fresh get_random_u32() */
  random(salt: string): number {
    if (this.recording) this.recording.drew = true;
    const { chain, index } = this.pos;
    return (
      this.env.pinned?.(this.ns, this.table, chain, index) ??
      this.env.random(this.ns.name, this.table, this.hook, chain, index, salt, this.flowKey())
    );
  }

  natRandom(salt: string): number {
    return this.env.random(this.ns.name, 'nat', salt, this.flowKey());
  }

  addrType(addr: number, dev?: string): AddrType {
    const answer = inetAddrType(this.ns, addr, dev);
    if (this.recording) (this.recording.probes ??= []).push({ kind: 'addrtype', addr, dev, answer });
    return answer;
  }

  rpfilter(src: number, iif: string, loose: boolean, acceptLocal: boolean): boolean {
    const answer = rpfilterLookup(this.ns, src, iif, loose, acceptLocal);
    if (this.recording)
      (this.recording.probes ??= []).push({ kind: 'rpfilter', src, iif, loose, acceptLocal, answer });
    return answer;
  }

  /**
   * The packet view, one object the run fills (nothing keeps a view past a traversal), and what
   * it was filled from: the next table reuses it while the packet, its entry and tracking are the
   * same (viewPkt undefined: not filled in this run)
   */
  private readonly pv: PacketView = {
    src: 0,
    dst: 0,
    proto: 0,
    sport: undefined,
    dport: undefined,
    icmpType: undefined,
    icmpCode: undefined,
    in: undefined,
    out: undefined,
    ttl: 0,
    len: 0,
    mark: 0,
    ctstate: 'UNTRACKED',
    ct: undefined,
  };
  private viewPkt?: Ipv4Packet;
  private viewCt?: CtResult;
  private viewUntracked?: boolean;
  /** the last address strings made numbers, and their numbers (parsing is a pure function of the string) */
  private srcStr = '';
  private srcInt = 0;
  private dstStr = '';
  private dstInt = 0;

  view(): PacketView {
    const skb = this.skb;
    const v = this.pv;
    const ct = skb.ct;
    // (the reference path, the verdict cache off, makes it anew for each table)
    if (this.viewPkt === skb.pkt && verdictCache.on) {
      // conntrack of this hook (or CT --notrack) since the last table: only what it set changes
      if (this.viewCt !== ct || this.viewUntracked !== skb.untracked) {
        v.ctstate = skb.untracked || !ct ? 'UNTRACKED' : ct.ctstate;
        v.ct = ct && !ct.invalid ? ct : undefined;
        this.viewCt = ct;
        this.viewUntracked = skb.untracked;
      }
      // MARK of an earlier table is in skb.mark already; nothing else of the view changes
      v.mark = skb.mark ?? 0;
      return v;
    }
    const p = skb.pkt;
    const pl = p.payload;
    const ip = p.ip;
    if (ip.src !== this.srcStr) {
      this.srcInt = ip4ToIntCached(ip.src);
      this.srcStr = ip.src;
    }
    if (ip.dst !== this.dstStr) {
      this.dstInt = ip4ToIntCached(ip.dst);
      this.dstStr = ip.dst;
    }
    v.src = this.srcInt;
    v.dst = this.dstInt;
    v.proto = ip.protocol;
    v.sport = pl.kind === 'tcp' ? pl.tcp.srcPort : pl.kind === 'udp' ? pl.udp.srcPort : undefined;
    v.dport = pl.kind === 'tcp' ? pl.tcp.dstPort : pl.kind === 'udp' ? pl.udp.dstPort : undefined;
    v.icmpType = pl.kind === 'icmp' ? pl.icmp.type : undefined;
    v.icmpCode = pl.kind === 'icmp' ? pl.icmp.code : undefined;
    v.in = this.at.iif;
    v.out = this.at.oif;
    v.ttl = ip.ttl;
    v.len = this.at.len;
    v.mark = skb.mark ?? 0;
    v.ctstate = skb.untracked || !ct ? 'UNTRACKED' : ct.ctstate;
    v.ct = ct && !ct.invalid ? ct : undefined;
    this.viewPkt = p;
    this.viewCt = ct;
    this.viewUntracked = skb.untracked;
    return v;
  }

  /** one table's builtin chain (a table that does not exist in the kernel has no entry: a pod's namespace) */
  runTable(entry: HookTable): Traversal | undefined {
    const chain = entry.chain;
    if (entry.empty) {
      // no rule to match: only the policy decides and counts, as traverse would (no view made, no
      // traversal recorded: an empty chain that accepted is not an event, and says nothing to NAT)
      if (!chain.noCounters) {
        chain.pkts++;
        chain.bytes += this.at.len;
      }
      return undefined;
    }
    const view = this.view();
    const name = entry.name;
    this.table = name;
    const t = verdictCache.on
      ? cachedTraverse((entry.verdicts ??= newCache()), entry, name, view, this)
      : traverse(entry.compiled, name, this.hook, view, this, true);
    this.skb.mark = view.mark;
    if (chain.rules.length || chain.policy !== 'ACCEPT' || t.verdict !== 'ACCEPT') {
      const kept = t.kept;
      // a kept traversal's event is the same for every packet that replays it
      this.events.push(
        kept ? (kept.event ??= { kind: 'traversal', traversal: t }) : { kind: 'traversal', traversal: t },
      );
    }
    if (t.notrack && !this.skb.ct) this.skb.untracked = true;
    return t;
  }

  /** nf_conntrack_in */
  ctIn(): void {
    const skb = this.skb;
    if (skb.untracked || skb.ct || !this.env.conntrackOn(this.ns)) return;
    const t = tupleOf(skb.pkt);
    const flags = skb.pkt.payload.kind === 'tcp' ? skb.pkt.payload.tcp.flags : undefined;
    // nf_conntrack_tcp_loose decides only for an ACK that would start a connection: read only then
    const loose =
      !flags ||
      tcpIndex(flags) !== 'ack' ||
      this.ns.sysctl.get('net.netfilter.nf_conntrack_tcp_loose') !== '0';
    const res = this.ns.conntrack.track(t, flags, this.env.now(), loose, quotedTuple(skb.pkt));
    skb.ct = res;
    this.events.push({ kind: 'conntrack', hook: this.hook, result: res });
  }

  /**
   * nf_nat_ipv4_fn / nf_nat_inet_fn (run only where the nat table exists: hookOps), with the nat
   * table's entry at the hook; a result only when the packet is dropped
   */
  nat(entry: HookTable | undefined): HookResult | undefined {
    const { skb, hook, events, ns } = this;
    const ct = skb.ct;
    if (!ct || ct.invalid || skb.untracked) return undefined;
    const manip = hookManip(hook);
    const e = ct.entry;
    // the packet as it came (the table never rewrites it: only NAT does, below)
    const pkt = skb.pkt;
    // an ICMP error of a NATed entry is translated, never run through the table
    if (ct.related && pkt.payload.kind === 'icmp') {
      const out = natIcmpReply(e, ct.dir, manip, pkt);
      if (out) {
        skb.pkt = out;
        const before = tupleOf(pkt);
        events.push({ kind: 'nat-rewrite', hook, manip, before, after: tupleOf(out), icmpError: true });
      }
      return undefined;
    }
    // the table only while the entry's manip of this type is not set up
    if ((ct.ctstate === 'NEW' || ct.related) && !natInitialized(e, manip)) {
      const t = entry && this.runTable(entry);
      if (t && t.verdict !== 'ACCEPT') return { verdict: t.verdict, by: t, events };
      const target = t?.decided?.rule.target;
      let range: NatRange | undefined;
      if (target?.kind === 'DNAT' || target?.kind === 'SNAT') range = target.range;
      else if (target?.kind === 'MASQUERADE' && e.orig.src !== '0.0.0.0') {
        // nf_nat_masquerade_ipv4: the output device's address towards the next hop
        const out = this.at.oif;
        const src = out ? inetSelectAddr(ns, out, this.at.nexthop ?? skb.pkt.ip.dst) : undefined;
        if (!src) {
          events.push({ kind: 'masquerade-failed', hook, device: out ?? '' });
          return { verdict: 'DROP', by: t, events };
        }
        range = { ...target.range, minIp: ip4ToInt(src), maxIp: ip4ToInt(src) };
      }
      if (range) {
        const setup = natSetup(ns.conntrack, e, range, manip, (salt) => this.natRandom(salt));
        events.push({ kind: 'nat-setup', hook, setup, byRule: true, orig: e.orig, reply: e.reply });
      }
      // the null binding: most keep the tuple, found without a copy or a closure
      if (!natInitialized(e, manip) && !natNullBindingKept(ns.conntrack, e, manip)) {
        const setup = natNullBinding(ns.conntrack, e, manip, (salt) => this.natRandom(salt));
        if (setup.changed)
          events.push({ kind: 'nat-setup', hook, setup, byRule: false, orig: e.orig, reply: e.reply });
      }
    }
    const out = natPacket(e, ct.dir, manip, pkt);
    if (out) {
      skb.pkt = out;
      const before = tupleOf(pkt);
      events.push({ kind: 'nat-rewrite', hook, manip, before, after: tupleOf(out), icmpError: false });
    }
    return undefined;
  }

  run(): HookResult {
    const ops = this.ops;
    for (let i = 0; i < ops.length; i++) {
      const o = ops[i];
      if (o.op === OP_TABLE) {
        const t = this.runTable(o.entry!);
        if (t && t.verdict !== 'ACCEPT') return { verdict: t.verdict, by: t, events: this.events };
      } else if (o.op === OP_CT) this.ctIn();
      else {
        const r = this.nat(o.entry);
        if (r) return r;
      }
    }
    // __nf_conntrack_confirm, the last entry of POSTROUTING and INPUT (not for related packets)
    const hook = this.hook;
    const ct = this.skb.ct;
    if ((hook === 'POSTROUTING' || hook === 'INPUT') && ct?.isNew && !ct.entry.confirmed)
      this.ns.conntrack.confirm(ct.entry);
    return { verdict: 'ACCEPT', events: this.events };
  }
}

/** a HookRun not in use (a run never starts another: one is enough) */
let spare: HookRun | undefined;

/** Run `hook` for the packet in the namespace (`plan`: its netfilter's, when the caller has it already). */
export function runHook(
  ns: Netns,
  hook: Hook,
  skb: HookSkb,
  at: HookPlace,
  env: HookEnv,
  plan = planOf(ns.netfilter),
): HookResult {
  // (the reference path, the verdict cache off, makes a run of its own each time)
  const run = (verdictCache.on && spare) || new HookRun();
  spare = undefined;
  try {
    return run.start(ns, hook, skb, at, env, plan).run();
  } finally {
    run.done();
    spare = run;
  }
}

/* ------------------------------------------------------------ the datapath's side */

const prefix = (len: number) => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);

/** inet_dev_addr_type over the namespace's local table (local and broadcast routes of its addresses) */
export function inetAddrType(ns: Netns, addr: number, dev?: string): AddrType {
  if (addr === 0 || addr === 0xffffffff) return 'BROADCAST';
  if (addr >>> 28 === 0xe) return 'MULTICAST';
  for (const { dev: l, addr: a } of ns.addresses()) {
    if (!l.up) continue;
    const ip = ip4ToInt(a.ip);
    const mask = prefix(a.len);
    const onDev = dev === undefined || dev === l.name;
    // lo's 127.0.0.0/8 is local as a whole
    if (ip === addr || (l.type === 'loopback' && ((addr ^ ip) & mask) === 0))
      return onDev ? 'LOCAL' : 'UNICAST';
    if (a.len < 31 && addr === (ip | ~mask) >>> 0) return onDev ? 'BROADCAST' : 'UNICAST';
  }
  return 'UNICAST';
}

/**
 * rpfilter_lookup_reverse: fib_lookup towards the source with FIB_LOOKUP_IGNORE_LINKSTATE (a
 * route whose device is down is gone in the kernel, one without carrier is not); a local source is
 * an RTN_LOCAL result, which passes only with --accept-local and the address on the ingress device
 */
export function rpfilterLookup(
  ns: Netns,
  src: number,
  iif: string,
  loose: boolean,
  acceptLocal: boolean,
): boolean {
  const local = ns.localAddress(intToIp4(src));
  if (local) return acceptLocal && (local.name === iif || loose);
  const r = ns.fib.lookup(src, (x) => x.type !== 'unicast' || (!!x.dev && !!ns.link(x.dev)?.up));
  if (!r || r.type !== 'unicast') return false;
  return r.dev === iif || loose;
}

/** inet_select_addr(dev, dst, RT_SCOPE_UNIVERSE): a primary global address of dev in dst's subnet, its first, else any device's */
export function inetSelectAddr(ns: Netns, devName: string, dst: string): string | undefined {
  const d = ip4ToInt(dst);
  const dev = ns.link(devName);
  let first: string | undefined;
  for (const a of dev?.addrs ?? []) {
    if (a.scope !== 'global') continue;
    if (((ip4ToInt(a.ip) ^ d) & prefix(a.len)) === 0) return a.ip;
    first ??= a.ip;
  }
  if (first) return first;
  for (const l of ns.links.values()) for (const a of l.addrs) if (a.scope === 'global') return a.ip;
  return undefined;
}
