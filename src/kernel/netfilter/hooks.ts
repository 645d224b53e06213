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
import { ip4ToInt } from '../../wire/addr.ts';
import type { Ipv4Packet } from '../../wire/types.ts';
import { quotedTuple, tupleOf, type CtResult, type Tuple } from '../conntrack.ts';
import {
  hookManip,
  natIcmpReply,
  natInitialized,
  natNullBinding,
  natPacket,
  natSetup,
  type Manip,
  type NatSetup,
} from '../nat.ts';
import type { Netns } from '../objects.ts';
import { HOOK_TABLES } from '../netfilter.ts';
import type { CtView, MatchEnv, PacketView } from './extension.ts';
import { traverse, type Traversal } from './eval.ts';
import type { AddrType, CtStatus, Hook, NatRange } from './types.ts';

/** what a hook sees of the skb; NAT replaces pkt, MARK changes mark, conntrack attaches ct */
export interface HookSkb {
  pkt: Ipv4Packet;
  mark?: number;
  ct?: CtResult;
  /** CT --notrack / NOTRACK: the packet is not tracked (IP_CT_UNTRACKED) */
  untracked?: boolean;
}

/** what the hook needs from the datapath around it */
export interface HookEnv {
  now: number;
  /** a deterministic u32 for this packet (statistic, NAT port choice) */
  random(...parts: (string | number)[]): number;
  /** inet_addr_type in the namespace, or of one device (--limit-iface-*) */
  addrType(addr: number, dev?: string): AddrType;
  /** MASQUERADE: inet_select_addr(out, nexthop, RT_SCOPE_UNIVERSE) */
  masqueradeSource(out: string, nexthop: string): string | undefined;
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

const CT_TABLE_HOOKS: readonly Hook[] = ['PREROUTING', 'OUTPUT'];

function ctView(ct: CtResult): CtView {
  const e = ct.entry;
  const status = new Set<CtStatus>();
  if (e.seenReply) status.add('SEEN_REPLY');
  if (e.assured) status.add('ASSURED');
  if (e.confirmed) status.add('CONFIRMED');
  return {
    dir: ct.dir === 'original' ? 'ORIGINAL' : 'REPLY',
    origSrc: ip4ToInt(e.orig.src),
    origDst: ip4ToInt(e.orig.dst),
    replSrc: ip4ToInt(e.reply.src),
    replDst: ip4ToInt(e.reply.dst),
    status,
    snat: e.snat,
    dnat: e.dnat,
  };
}

function packetView(skb: HookSkb, iif: string | undefined, oif: string | undefined, len: number): PacketView {
  const p = skb.pkt;
  const pl = p.payload;
  const ct = skb.ct;
  return {
    src: ip4ToInt(p.ip.src),
    dst: ip4ToInt(p.ip.dst),
    proto: p.ip.protocol,
    sport: pl.kind === 'tcp' ? pl.tcp.srcPort : pl.kind === 'udp' ? pl.udp.srcPort : undefined,
    dport: pl.kind === 'tcp' ? pl.tcp.dstPort : pl.kind === 'udp' ? pl.udp.dstPort : undefined,
    icmpType: pl.kind === 'icmp' ? pl.icmp.type : undefined,
    icmpCode: pl.kind === 'icmp' ? pl.icmp.code : undefined,
    in: iif,
    out: oif,
    ttl: p.ip.ttl,
    len,
    mark: skb.mark ?? 0,
    ctstate: skb.untracked || !ct ? 'UNTRACKED' : ct.ctstate,
    ct: ct && !ct.invalid ? ctView(ct) : undefined,
  };
}

/**
 * Run `hook` for the packet. `len` is its IP total length (for counters); `nexthop` is the
 * route's next hop (MASQUERADE picks the output device's address towards it); `conntrackOn`:
 * the namespace tracks connections; `tcpLoose`: nf_conntrack_tcp_loose.
 */
export function runHook(
  ns: Netns,
  hook: Hook,
  skb: HookSkb,
  opts: {
    iif?: string;
    oif?: string;
    nexthop?: string;
    len: number;
    /** does the namespace track connections (asked only where it matters) */
    conntrackOn: () => boolean;
    tcpLoose: boolean;
  },
  env: HookEnv,
): HookResult {
  const nf = ns.netfilter;
  const events: NfEvent[] = [];
  const flowKey = () => {
    const t = tupleOf(skb.pkt);
    return `${t.proto}|${t.src}|${t.sport}|${t.dst}|${t.dport}|${t.icmpId ?? ''}`;
  };
  const matchEnv = (table: MatchEnv['table']): MatchEnv => ({
    table,
    hook,
    now: env.now,
    random: (salt) => env.random(ns.name, table, hook, salt, flowKey()),
    addrType: env.addrType,
    recent: nf.recent,
  });

  /** one table's builtin chain; a decision to drop ends the hook */
  const runTable = (name: MatchEnv['table']): Traversal | undefined => {
    const table = nf.tables.get(name);
    if (!table) return undefined;
    const chain = table.get(hook);
    if (!chain) return undefined;
    // a table that does not exist in the kernel has no hooks (a pod's namespace)
    if (!nf.present(name)) return undefined;
    const view = packetView(skb, opts.iif, opts.oif, opts.len);
    const t = traverse(table, name, hook, view, matchEnv(name), true);
    skb.mark = view.mark;
    if (chain.rules.length || chain.policy !== 'ACCEPT' || t.verdict !== 'ACCEPT')
      events.push({ kind: 'traversal', traversal: t });
    if (t.notrack && !skb.ct) skb.untracked = true;
    return t;
  };

  const ctIn = () => {
    if (skb.untracked || skb.ct || !opts.conntrackOn()) return;
    const t = tupleOf(skb.pkt);
    const flags = skb.pkt.payload.kind === 'tcp' ? skb.pkt.payload.tcp.flags : undefined;
    const res = ns.conntrack.track(t, flags, env.now, opts.tcpLoose, quotedTuple(skb.pkt));
    skb.ct = res;
    events.push({ kind: 'conntrack', hook, result: res });
  };

  const nat = (): HookResult | undefined => {
    const ct = skb.ct;
    // the nat table's base chains are what make conntrack run: no nat table, no NAT
    if (!ct || ct.invalid || skb.untracked || !nf.present('nat')) return undefined;
    const manip = hookManip(hook);
    const e = ct.entry;
    const before = tupleOf(skb.pkt);
    // nf_nat_ipv4_fn: an ICMP error of a NATed entry is translated, never run through the table
    if (ct.related && skb.pkt.payload.kind === 'icmp') {
      const out = natIcmpReply(e, ct.dir, manip, skb.pkt);
      if (out) {
        skb.pkt = out;
        events.push({ kind: 'nat-rewrite', hook, manip, before, after: tupleOf(out), icmpError: true });
      }
      return undefined;
    }
    // nf_nat_inet_fn: the table only while the entry's manip of this type is not set up
    if ((ct.ctstate === 'NEW' || ct.related) && !natInitialized(e, manip)) {
      const t = runTable('nat');
      const rule = t?.decided?.rule;
      const target = rule?.target;
      if (t && t.verdict !== 'ACCEPT') return { verdict: t.verdict, by: t, events };
      const random = (salt: string) => env.random(ns.name, 'nat', salt, flowKey());
      if (target?.kind === 'DNAT' || target?.kind === 'SNAT') {
        const setup = natSetup(ns.conntrack, e, target.range, manip, random);
        events.push({ kind: 'nat-setup', hook, setup, byRule: true, orig: e.orig, reply: e.reply });
      } else if (target?.kind === 'MASQUERADE' && e.orig.src !== '0.0.0.0') {
        // nf_nat_masquerade_ipv4: the output device's address towards the next hop
        const src = opts.oif ? env.masqueradeSource(opts.oif, opts.nexthop ?? skb.pkt.ip.dst) : undefined;
        if (!src) {
          events.push({ kind: 'masquerade-failed', hook, device: opts.oif ?? '' });
          return { verdict: 'DROP', by: t, events };
        }
        const range: NatRange = { ...target.range, minIp: ip4ToInt(src), maxIp: ip4ToInt(src) };
        const setup = natSetup(ns.conntrack, e, range, manip, random);
        events.push({ kind: 'nat-setup', hook, setup, byRule: true, orig: e.orig, reply: e.reply });
      }
      if (!natInitialized(e, manip)) {
        const setup = natNullBinding(ns.conntrack, e, manip, random);
        if (setup.changed)
          events.push({ kind: 'nat-setup', hook, setup, byRule: false, orig: e.orig, reply: e.reply });
      }
    }
    const out = natPacket(e, ct.dir, manip, skb.pkt);
    if (out) {
      skb.pkt = out;
      events.push({ kind: 'nat-rewrite', hook, manip, before, after: tupleOf(out), icmpError: false });
    }
    return undefined;
  };

  for (const name of HOOK_TABLES[hook]) {
    if (name === 'mangle' && CT_TABLE_HOOKS.includes(hook)) ctIn();
    if (name === 'nat') {
      const r = nat();
      if (r) return r;
      continue;
    }
    const t = runTable(name);
    if (t && t.verdict !== 'ACCEPT') return { verdict: t.verdict, by: t, events };
  }
  // __nf_conntrack_confirm, the last entry of POSTROUTING and INPUT (not for related packets)
  if ((hook === 'POSTROUTING' || hook === 'INPUT') && skb.ct?.isNew && !skb.ct.entry.confirmed)
    ns.conntrack.confirm(skb.ct.entry);
  return { verdict: 'ACCEPT', events };
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

/** the HookEnv of a namespace at the world's current time */
export function hookEnv(ns: Netns, now: number, derive: (...parts: (string | number)[]) => number): HookEnv {
  return {
    now,
    random: derive,
    addrType: (addr, dev) => inetAddrType(ns, addr, dev),
    masqueradeSource: (out, nexthop) => inetSelectAddr(ns, out, nexthop),
  };
}
