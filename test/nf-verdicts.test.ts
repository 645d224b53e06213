/**
 * The hooks' cache of traversals (src/kernel/netfilter/verdicts.ts) against the hooks without it.
 * Two namespaces of one world get the same random operations: rule-set writes through every writer
 * (the emulated iptables and iptables-restore, Netfilter's methods), IP-set writes (the ipset tool
 * and restore, src/kernel/ipset.ts's functions), address, route and link changes (what -m addrtype
 * and -m rpfilter read), and packets of random fields through random hooks (conntrack and NAT
 * included). One runs its hooks with the cache, the other without; after each packet the results
 * (verdict, every event, the typed decision of each traversal, the mark, NOTRACK) must be the same,
 * and after each write the counters (`iptables-save -c`), the IP sets and the conntrack tables.
 * The rules come from the repertoire the model evaluates (felix's and kube-proxy's shapes among
 * them: jumps, gotos, marks, sets, conntrack states, statistic, NAT targets).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seedCluster } from '../src/cluster/seed.ts';
import { buildCluster } from '../src/cni/build.ts';
import { ipsetAdd, ipsetDel, ipsetFlush, ipsetLoad } from '../src/kernel/ipset.ts';
import { netnsAdd } from '../src/kernel/netlink.ts';
import { parseRuleSpec, planOf, type Hook } from '../src/kernel/netfilter.ts';
import {
  runHook,
  type HookEnv,
  type HookPlace,
  type HookResult,
  type HookSkb,
} from '../src/kernel/netfilter/hooks.ts';
import { verdictCache } from '../src/kernel/netfilter/verdicts.ts';
import type { Netns } from '../src/kernel/objects.ts';
import { rng } from './rng.ts';
import { nfDecision } from '../src/kernel/stack.ts';
import { iptablesSave } from '../src/tools/iptables-save.ts';
import { iptablesRestore } from '../src/tools/iptables-restore.ts';
import { ipsetRestore, ipsetSaveText } from '../src/tools/ipset.ts';
import { runCommand } from '../src/tools/index.ts';
import { ip4ToInt } from '../src/wire/addr.ts';
import type { Ipv4Packet } from '../src/wire/types.ts';

const ADDRS = ['10.0.0.1', '10.0.0.5', '10.0.0.6', '10.0.1.1', '10.0.1.7', '192.168.0.1', '10.0.2.9'];
const DEVS = ['eth0', 'cali1234', 'cali5678', 'vx0', 'vx1', 'lo'];
const PORTS = [80, 443, 53, 1000, 1500, 8080];
const MARKS = [0, 1, 2, 3, 0x10000, 0x40000];
const USER_CHAINS = ['U1', 'U2', 'U3'];
const SETS = ['S1', 'S2', 'P1'];

const HOOK_DEVS: Record<Hook, [boolean, boolean]> = {
  PREROUTING: [true, false],
  INPUT: [true, false],
  FORWARD: [true, true],
  OUTPUT: [false, true],
  POSTROUTING: [false, true],
};

const TABLE_CHAINS: Record<string, readonly string[]> = {
  raw: ['PREROUTING', 'OUTPUT'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
};

type R = ReturnType<typeof rng>;

/** the matches a rule may have, by what they read (a seed draws most of its rules' matches from one) */
const MATCH_POOLS = {
  header: [
    (r: R) => `-s ${r.pick(ADDRS)}`,
    (r: R) => `-s ${r.pick(['10.0.0.0/24', '10.0.1.0/24'])}`,
    (r: R) => `! -d ${r.pick(['10.0.0.0/24', '10.0.1.0/24', '10.0.0.5'])}`,
    (r: R) => `-d ${r.pick(ADDRS)}`,
    (r: R) => `-i ${r.pick(['eth0', 'cali+', 'vx0', 'lo'])}`,
    () => `! -i cali+`,
    (r: R) => `-o ${r.pick(['eth0', 'cali+', 'vx1'])}`,
    () => `! -o vx+`,
    (r: R) => `-m comment --comment "c${r.int(9)}"`,
  ],
  mark: [
    (r: R) => `-m mark --mark ${r.pick(['0x1/0x1', '0x2/0x2', '0x10000/0x10000', '0x0/0x40000', '0x3'])}`,
    () => `-m mark ! --mark 0x3`,
  ],
  conntrack: [
    (r: R) =>
      `-m conntrack --ctstate ${r.pick(['NEW', 'RELATED,ESTABLISHED', 'INVALID', 'DNAT', 'SNAT', 'UNTRACKED'])}`,
    () => `-m conntrack ! --ctstate NEW`,
    (r: R) => `-m conntrack --ctstatus ${r.pick(['CONFIRMED', 'SEEN_REPLY', 'ASSURED', 'NONE'])}`,
    () => `-m conntrack --ctorigsrc 10.0.0.0/24`,
    (r: R) => `-m conntrack --ctrepldst ${r.pick(ADDRS)}`,
    (r: R) => `-m conntrack --ctdir ${r.pick(['ORIGINAL', 'REPLY'])}`,
    (r: R) => `-m state --state ${r.pick(['NEW', 'ESTABLISHED', 'INVALID'])}`,
  ],
  namespace: [
    () => `-m addrtype --dst-type LOCAL`,
    () => `-m addrtype --src-type LOCAL --limit-iface-in`,
    () => `-m addrtype ! --dst-type UNICAST --limit-iface-out`,
    () => `-m rpfilter`,
    () => `-m rpfilter --loose --invert`,
    () => `-m rpfilter --accept-local`,
  ],
  sets: [
    (r: R) => `-m set --match-set ${r.pick(['S1', 'S2'])} ${r.pick(['src', 'dst'])}`,
    () => `-m set ! --match-set S1 dst`,
    () => `-p tcp -m set --match-set P1 dst,dst`,
  ],
  state: [
    () => `-m statistic --mode random --probability 0.5`,
    (r: R) => `-m statistic --mode nth --every ${2 + r.int(2)} --packet 0`,
    () => `-m recent --name r1 --set`,
    () => `-m recent --name r1 --rcheck --seconds 10`,
  ],
};
type Focus = keyof typeof MATCH_POOLS;

/** one rule's options: a protocol part, some matches, a target */
function ruleSpec(r: R, table: string, chain: string, focus: Focus): string {
  const parts: string[] = [];
  const proto = r.pick(['', '', 'tcp', 'udp', 'icmp', '! tcp']);
  if (proto === '! tcp') parts.push('! -p tcp');
  else if (proto) {
    parts.push(`-p ${proto}`);
    if (proto === 'tcp' || proto === 'udp')
      parts.push(
        r.pick([
          '',
          `-m ${proto} --dport ${r.pick(PORTS)}`,
          `-m ${proto} --sport 1000:2000`,
          `-m ${proto} ! --dport ${r.pick(PORTS)}`,
          `-m multiport --dports ${r.pick(PORTS)},${r.pick(PORTS)}`,
          `-m multiport --sports ${r.pick(PORTS)}`,
          `-m multiport --ports 53,1000`,
          '-m set --match-set P1 dst,dst',
        ]),
      );
    else parts.push(r.pick(['', '-m icmp --icmp-type echo-request', '-m icmp ! --icmp-type 0']));
  }
  const n = r.int(3);
  for (let i = 0; i < n; i++) {
    const pool = r.int(10) < 7 ? focus : r.pick(Object.keys(MATCH_POOLS) as Focus[]);
    parts.push(r.pick(MATCH_POOLS[pool])(r));
  }
  const targets = ['', 'ACCEPT', 'DROP', 'RETURN', ...USER_CHAINS.map((c) => `${c}`)];
  if (table !== 'nat')
    targets.push('MARK --set-xmark 0x1/0x1', 'MARK --set-xmark 0x10000/0x30000', 'MARK --set-mark 2');
  if (table === 'filter') targets.push('REJECT', 'REJECT --reject-with tcp-reset', 'DROP');
  if (table === 'raw') targets.push('CT --notrack', 'NOTRACK');
  if (table === 'nat') {
    if (chain === 'PREROUTING' || chain === 'OUTPUT' || USER_CHAINS.includes(chain))
      targets.push(`DNAT --to-destination ${r.pick(ADDRS)}`, `DNAT --to-destination 10.0.1.1:8080`);
    if (chain === 'POSTROUTING' || chain === 'INPUT' || USER_CHAINS.includes(chain))
      targets.push(`SNAT --to-source ${r.pick(ADDRS)}`, 'MASQUERADE', 'MASQUERADE --random-fully');
  }
  const marks = [
    'MARK --set-xmark 0x1/0x1',
    'MARK --set-xmark 0x10000/0x30000',
    'MARK --set-mark 2',
    'MARK --or-mark 0x4',
  ];
  const t = focus === 'mark' && table !== 'nat' && r.int(2) ? r.pick(marks) : r.pick(targets);
  if (t) parts.push(USER_CHAINS.includes(t) && r.int(4) === 0 ? `-g ${t}` : `-j ${t}`);
  return parts.filter(Boolean).join(' ');
}

function chainOf(r: R, table: string): string {
  return r.int(3) === 0 ? r.pick(USER_CHAINS) : r.pick(TABLE_CHAINS[table]);
}

/** a write, as the same operation for both namespaces */
type Op = (ns: Netns, run: (line: string) => string) => string;

/** a write of the rule set (`rules`), else of the IP sets, addresses, routes or links */
function randomWrite(r: R, rules: boolean, focus: Focus): Op {
  const table = r.pick(Object.keys(TABLE_CHAINS));
  const chain = chainOf(r, table);
  const k = rules ? (r.int(30) === 0 ? 98 : r.int(62)) : 62 + r.int(36);
  if (k < 35) {
    const spec = ruleSpec(r, table, chain, focus);
    return (_ns, run) => run(`iptables -t ${table} -A ${chain} ${spec}`);
  }
  if (k < 40) {
    const spec = ruleSpec(r, table, chain, focus);
    const pos = 1 + r.int(3);
    return (_ns, run) => run(`iptables -t ${table} -I ${chain} ${pos} ${spec}`);
  }
  if (k < 45) {
    const pos = 1 + r.int(4);
    return (_ns, run) => run(`iptables -t ${table} -D ${chain} ${pos}`);
  }
  if (k < 49) {
    const spec = ruleSpec(r, table, chain, focus);
    return (_ns, run) => run(`iptables -t ${table} -R ${chain} 1 ${spec}`);
  }
  if (k < 50) return (_ns, run) => run(`iptables -t ${table} -F ${chain}`);
  if (k < 53) {
    const builtin = r.pick(TABLE_CHAINS[table]);
    const policy = r.pick(['ACCEPT', 'DROP']);
    return (_ns, run) => run(`iptables -t ${table} -P ${builtin} ${policy}`);
  }
  if (k < 54) return (_ns, run) => run(`iptables -t ${table} -Z`);
  if (k < 58) {
    // Netfilter's own methods (what the CNI builders and the importer use)
    const spec = ruleSpec(r, table, chain, focus);
    const insert = r.int(2) === 0;
    return (ns) => {
      try {
        const rule = parseRuleSpec(
          spec.match(/"[^"]*"|\S+/g)!.map((w) => w.replace(/"/g, '')),
          {
            ipset: (n) => ns.netfilter.ipsets.get(n),
          },
        );
        if (!ns.netfilter.chain(table, chain)) ns.netfilter.newChain(table, chain);
        if (insert) ns.netfilter.insert(table, chain, 0, rule);
        else ns.netfilter.append(table, chain, rule);
        return 'ok';
      } catch (e) {
        return `error: ${(e as Error).message}`;
      }
    };
  }
  if (k < 62) {
    // iptables-restore of a whole table (its COMMIT replaces it)
    const lines = [`*${table}`];
    for (const c of TABLE_CHAINS[table]) lines.push(`:${c} ${r.pick(['ACCEPT', 'ACCEPT', 'DROP'])} [0:0]`);
    for (const c of USER_CHAINS) lines.push(`:${c} - [0:0]`);
    const n = 1 + r.int(6);
    for (let i = 0; i < n; i++) {
      const c = chainOf(r, table);
      lines.push(`-A ${c} ${ruleSpec(r, table, c, focus)}`);
    }
    lines.push('COMMIT', '');
    const text = lines.join('\n');
    return (ns, run) => {
      const res = iptablesRestore({ cluster: cluster, netns: ns }, text);
      return `${res.code} ${res.stdout} ${res.stderr} ${run('true')}`;
    };
  }
  if (k < 72) {
    const set = r.pick(SETS);
    const member =
      set === 'P1'
        ? `${r.pick(ADDRS)},${r.pick(['tcp', 'udp'])}:${r.pick(PORTS)}`
        : r.pick([...ADDRS, '10.0.0.0/24', '10.0.1.0/25']);
    const cmd = r.pick(['add', 'add', 'del']);
    return (_ns, run) => run(`ipset ${cmd} ${set} ${member} -exist`);
  }
  if (k < 75) {
    const set = r.pick(SETS);
    return (_ns, run) => run(`ipset flush ${set}`);
  }
  if (k < 77) return (_ns, run) => run(`ipset swap S1 S2`);
  if (k < 80) {
    // src/kernel/ipset.ts directly (the CNI builders' and the importer's path)
    const set = r.pick(['S1', 'S2']);
    const ip = ip4ToInt(r.pick(ADDRS));
    const which = r.int(3);
    return (ns) => {
      try {
        if (which === 0) ipsetAdd(ns.netfilter, set, [{ ip, cidr: 32, proto: 0, port: 0 }], true);
        else if (which === 1) ipsetDel(ns.netfilter, set, [{ ip, cidr: 32, proto: 0, port: 0 }], true);
        else ipsetFlush(ns.netfilter, set);
        return 'ok';
      } catch (e) {
        return `error: ${(e as Error).message}`;
      }
    };
  }
  if (k < 82) {
    const text = `create T1 hash:net\nadd T1 ${r.pick(ADDRS)}\n`;
    return (ns, run) => {
      const res = ipsetRestore({ cluster, netns: ns }, text, { exist: true });
      return `${run('ipset destroy T1')} ${res.code} ${res.stdout} ${res.stderr}`;
    };
  }
  if (k < 98) {
    // what -m addrtype and -m rpfilter read: addresses, routes, link state
    const dev = r.pick(['vx0', 'vx1']);
    const addr = r.pick(ADDRS);
    const line = r.pick([
      `ip addr add ${addr}/24 dev ${dev}`,
      `ip addr del ${addr}/24 dev ${dev}`,
      `ip link set ${dev} ${r.pick(['up', 'down'])}`,
      `ip route replace ${r.pick(['10.0.2.0/24', '192.168.0.0/16', '10.0.1.0/24'])} dev ${dev}`,
      `ip route del ${r.pick(['10.0.2.0/24', '192.168.0.0/16'])}`,
    ]);
    return (_ns, run) => run(line);
  }
  return (_ns, run) => run(`iptables -t ${table} -F`);
}

/** a packet's fields, and where it is */
interface Shape {
  hook: Hook;
  proto: number;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  flags: number;
  icmpType: number;
  mark: number;
  iif: string | undefined;
  oif: string | undefined;
  nexthop: string | undefined;
}

const FLAGS = [{ syn: true }, { ack: true }, { syn: true, ack: true }, { rst: true }];

/** the hook a packet meets next in the datapath (ip_rcv → forward or local in; local out → post) */
const NEXT_HOOK: Record<Hook, Hook | undefined> = {
  PREROUTING: 'FORWARD',
  FORWARD: 'POSTROUTING',
  OUTPUT: 'POSTROUTING',
  INPUT: undefined,
  POSTROUTING: undefined,
};

/** each field of a shape, drawn at random */
const FIELDS: { [K in keyof Shape]?: (r: R, s: Shape) => Shape[K] } = {
  proto: (r) => r.pick([6, 6, 17, 1]),
  src: (r) => r.pick(ADDRS),
  dst: (r) => r.pick(ADDRS),
  sport: (r) => (r.int(5) === 0 ? r.pick(PORTS) : 30000 + r.int(20000)),
  dport: (r) => r.pick(PORTS),
  flags: (r) => r.int(FLAGS.length),
  icmpType: (r) => r.pick([8, 0]),
  mark: (r) => r.pick(MARKS),
  iif: (r, s) => (HOOK_DEVS[s.hook][0] ? r.pick(DEVS) : undefined),
  oif: (r, s) => (HOOK_DEVS[s.hook][1] ? r.pick(DEVS) : undefined),
  nexthop: (r, s) => (HOOK_DEVS[s.hook][1] ? r.pick(ADDRS) : undefined),
};

function randomShape(r: R): Shape {
  const s = { hook: r.pick(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'] as const) } as Shape;
  for (const [k, f] of Object.entries(FIELDS)) (s as unknown as Record<string, unknown>)[k] = f(r, s);
  return s;
}

/** the shape with one field drawn again (packets that differ in that field alone), or the reply's */
function variant(r: R, s: Shape): Shape {
  if (r.int(6) === 0) return { ...s, src: s.dst, dst: s.src, sport: s.dport, dport: s.sport };
  if (r.int(6) === 0) {
    const hook = r.pick(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'] as const);
    const [hasIn, hasOut] = HOOK_DEVS[hook];
    return {
      ...s,
      hook,
      iif: hasIn ? (s.iif ?? r.pick(DEVS)) : undefined,
      oif: hasOut ? (s.oif ?? r.pick(DEVS)) : undefined,
      nexthop: hasOut ? (s.nexthop ?? r.pick(ADDRS)) : undefined,
    };
  }
  const [k, f] = r.pick(Object.entries(FIELDS));
  return { ...s, [k]: f(r, s) };
}

function packetOf(s: Shape, r: R): Ipv4Packet {
  const { proto, sport, dport } = s;
  return {
    kind: 'ipv4',
    ip: {
      src: s.src,
      dst: s.dst,
      protocol: proto,
      ttl: 64,
      id: r.int(65536),
      df: true,
      mf: false,
      fragOffset: 0,
      tos: 0,
    },
    payload:
      proto === 6
        ? {
            kind: 'tcp',
            tcp: {
              srcPort: sport,
              dstPort: dport,
              seq: 1000,
              ack: 0,
              flags: { ...FLAGS[s.flags] },
              window: 65535,
              options: {},
            },
            data: new Uint8Array(r.int(3) * 100),
          }
        : proto === 17
          ? {
              kind: 'udp',
              udp: { srcPort: sport, dstPort: dport },
              payload: { kind: 'raw', data: new Uint8Array(8) },
            }
          : {
              kind: 'icmp',
              icmp: { type: s.icmpType, code: 0, id: sport & 3, seq: 1 },
              data: new Uint8Array(16),
            },
  };
}

/** what the datapath would take from a hook's run: everything but object identity */
function outcome(ns: Netns, r: HookResult, skb: HookSkb): unknown {
  return {
    verdict: r.verdict,
    by: r.by && nfDecision(ns, r.by),
    events: r.events.map((e) =>
      e.kind === 'traversal'
        ? { kind: e.kind, t: { ...e.traversal, kept: undefined }, decision: nfDecision(ns, e.traversal) }
        : e.kind === 'conntrack'
          ? {
              kind: e.kind,
              hook: e.hook,
              ctstate: e.result.ctstate,
              dir: e.result.dir,
              isNew: e.result.isNew,
            }
          : e,
    ),
    mark: skb.mark,
    untracked: skb.untracked,
    pkt: skb.pkt,
  };
}

/** what the namespace holds that hooks write or read: counters, sets, conntrack entries */
function state(ns: Netns): string {
  const ct = ns.conntrack.entries.map((e) =>
    JSON.stringify([e.orig, e.reply, e.seenReply, e.assured, e.confirmed, e.snat, e.dnat]),
  );
  // (a set's initval is drawn per namespace at create: not what the hooks do)
  const sets = ipsetSaveText(ns.netfilter).replace(/ initval \S+/g, '');
  return `${iptablesSave(ns.netfilter, true)}\n${sets}\n${ct.join('\n')}`;
}

const cluster = buildCluster(seedCluster(), 'flannel-vxlan');

function setup(name: string): Netns {
  const ns = netnsAdd(cluster.world, name, 'node');
  const run = (line: string) => {
    const res = runCommand(cluster, name, line);
    assert.equal(res.code, 0, `${line}: ${res.stderr}`);
  };
  run('ip link add vx0 type veth peer name vx1');
  run('ip link set vx0 up');
  run('ip link set vx1 up');
  run('ip addr add 10.0.0.5/24 dev vx0');
  run('ip addr add 10.0.1.7/24 dev vx1');
  run('ipset create S1 hash:net');
  run('ipset create S2 hash:net');
  run('ipset create P1 hash:ip,port');
  run('ipset add S1 10.0.0.0/24');
  run('ipset add P1 10.0.1.1,tcp:80');
  for (const t of Object.keys(TABLE_CHAINS)) for (const c of USER_CHAINS) run(`iptables -t ${t} -N ${c}`);
  return ns;
}

function hookEnv(pins: Map<string, number>): HookEnv {
  return {
    now: () => cluster.world.now,
    // the same draws in both namespaces: the parts after the namespace's name
    random: (...parts) => {
      let h = 0x811c9dc5;
      for (const ch of parts.slice(1).join('|')) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
      return h >>> 0;
    },
    pinned: (_ns, table, chain, index) => pins.get(`${table} ${chain} ${index}`),
    conntrackOn: (ns) => ns.netfilter.usesConntrack(),
  };
}

for (let seed = 1; seed <= 12; seed++) {
  const focus = (Object.keys(MATCH_POOLS) as Focus[])[seed % 6];
  test(`the verdict cache gives what the hooks without it give (seed ${seed}, mostly ${focus} matches)`, () => {
    const r = rng(seed);
    const onward = rng(seed + 1000);
    const a = setup(`vc-a${seed}`);
    const b = setup(`vc-b${seed}`);
    const pins = new Map<string, number>();
    const env = hookEnv(pins);
    const runIn = (ns: Netns) => (line: string) => {
      const res = runCommand(cluster, ns.name, line);
      return `${res.code}|${res.stdout}|${res.stderr.replaceAll(ns.name, 'NS')}`;
    };
    let hooks = 0;
    const hits0 = verdictCache.hits;
    let writes = 0;
    try {
      const write = (what: string, rules: boolean) => {
        const op = randomWrite(r, rules, focus);
        const ra = op(a, runIn(a));
        const rb = op(b, runIn(b));
        assert.equal(ra, rb, `${what}: the write answered differently`);
        writes++;
        if (r.int(10) === 0) {
          pins.clear();
          if (r.int(2) === 0) pins.set(`nat ${r.pick(USER_CHAINS)} 1`, r.int(2) ? 0 : 0x7fffffff);
        }
        assert.equal(state(a), state(b), `${what}: counters, sets or conntrack differ after a write`);
      };
      for (let phase = 0; phase < 8; phase++) {
        // a rule set, then packets of a few shapes again and again among the other writes
        for (let i = 0; i < 12; i++) write(`phase ${phase} rule write ${i}`, true);
        // a few shapes, and variants of them that differ in one field
        const bases = Array.from({ length: 3 }, () => randomShape(r));
        const shapes = [...bases, ...Array.from({ length: 9 }, () => variant(r, r.pick(bases)))];
        for (let step = 0; step < 150; step++) {
          const what = `phase ${phase} step ${step}`;
          const x = r.int(20);
          if (x < 5) {
            write(what, x < 1);
            continue;
          }
          const p = r.pick(shapes);
          const burst = 1 + r.int(3);
          for (let i = 0; i < burst; i++) {
            // what no rule reads: the IP id, and (mostly) the source port
            const pkt = packetOf(r.int(2) ? p : { ...p, sport: 30000 + r.int(20000) }, r);
            // and sometimes on through the hook that follows in the datapath, the same skb (the
            // packet object itself unless NAT replaced it) with the devices that hook has
            // (drawn from a generator of their own: the rest of the test draws what it drew before)
            const next = onward.int(3) === 0 ? NEXT_HOOK[p.hook] : undefined;
            const run = (ns: Netns, on: boolean) => {
              const skb: HookSkb = { pkt: structuredClone(pkt), mark: p.mark };
              verdictCache.on = on;
              try {
                const at = { iif: p.iif, oif: p.oif, nexthop: p.nexthop, len: 60 + i };
                const first = outcome(ns, runHook(ns, p.hook, skb, at, env), skb);
                if (!next || (first as { verdict: string }).verdict !== 'ACCEPT') return first;
                // (another length: what each rule counts shows the place each hook was given)
                const at2 = {
                  iif: HOOK_DEVS[next][0] ? p.iif : undefined,
                  oif: HOOK_DEVS[next][1] ? (p.oif ?? DEVS[0]) : undefined,
                  nexthop: HOOK_DEVS[next][1] ? (p.nexthop ?? ADDRS[0]) : undefined,
                  len: 100 + i,
                };
                return [first, outcome(ns, runHook(ns, next, skb, at2, env), skb)];
              } finally {
                verdictCache.on = true;
              }
            };
            const oa = run(a, true);
            const ob = run(b, false);
            assert.deepEqual(oa, ob, `${what}.${i}: ${p.hook} of ${JSON.stringify(pkt.ip)} differs`);
            hooks++;
          }
          cluster.world.advance(1000);
        }
      }
      assert.equal(state(a), state(b), 'counters, sets or conntrack differ at the end');
      // the cache was used: traversals were replayed (in the namespace with it only)
      const hits = verdictCache.hits - hits0;
      assert.ok(hooks > 1000 && writes > 300, `${hooks} hook runs, ${writes} writes`);
      assert.ok(hits > hooks / 4, `${hits} traversals replayed in ${hooks} hook runs`);
      for (const hook of ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'] as const)
        for (const e of Object.values(planOf(b.netfilter).hooks[hook])) assert.equal(e.verdicts, undefined);
    } finally {
      verdictCache.on = true;
    }
  });
}

/**
 * Each writer of what a kept traversal read, one at a time: a packet's traversal is kept (and
 * replayed once), the writer changes what decides it, and the same packet must now go as the
 * hooks without the cache say — and go otherwise than before (the write mattered).
 */
const WRITERS: {
  name: string;
  rule: string;
  write: (ns: Netns) => void;
  /** where the rule goes (filter FORWARD unless said) */
  table?: string;
  hook?: Hook;
  prep?: string;
}[] = [
  {
    name: 'ipset add',
    rule: '-m set --match-set S2 src -j DROP',
    write: (ns) => sh(ns, 'ipset add S2 10.0.0.1'),
  },
  {
    name: 'ipset del',
    rule: '-m set --match-set S1 src -j DROP',
    write: (ns) => sh(ns, 'ipset del S1 10.0.0.0/24'),
  },
  { name: 'ipset flush', rule: '-m set --match-set S1 src -j DROP', write: (ns) => sh(ns, 'ipset flush S1') },
  {
    name: 'ipset swap',
    rule: '-m set --match-set S1 src -j DROP',
    write: (ns) => sh(ns, 'ipset swap S1 S2'),
  },
  {
    name: 'ipset restore',
    rule: '-m set --match-set S2 src -j DROP',
    write: (ns) => assert.equal(ipsetRestore({ cluster, netns: ns }, 'add S2 10.0.0.1\n').code, 0),
  },
  {
    name: 'ipsetAdd',
    rule: '-m set --match-set S2 src -j DROP',
    write: (ns) => ipsetAdd(ns.netfilter, 'S2', [{ ip: ip4ToInt('10.0.0.1'), cidr: 32, proto: 0, port: 0 }]),
  },
  {
    name: 'ipsetLoad',
    rule: '-m set --match-set S2 src -j DROP',
    write: (ns) => ipsetLoad(ns.netfilter, 'S2', LOAD),
  },
  {
    name: 'ipsetDel',
    rule: '-m set --match-set S1 src -j DROP',
    write: (ns) => ipsetDel(ns.netfilter, 'S1', [{ ip: ip4ToInt('10.0.0.0'), cidr: 24, proto: 0, port: 0 }]),
  },
  { name: 'ipsetFlush', rule: '-m set --match-set S1 src -j DROP', write: (ns) => ipsetFlush(ns.netfilter) },
  { name: 'iptables -I', rule: '-s 10.0.0.9 -j DROP', write: (ns) => sh(ns, 'iptables -I FORWARD -j DROP') },
  { name: 'iptables -P', rule: '-s 10.0.0.9 -j DROP', write: (ns) => sh(ns, 'iptables -P FORWARD DROP') },
  {
    name: 'iptables-restore',
    rule: '-s 10.0.0.9 -j DROP',
    write: (ns) =>
      assert.equal(
        iptablesRestore(
          { cluster, netns: ns },
          '*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j DROP\nCOMMIT\n',
        ).code,
        0,
      ),
  },
  {
    name: 'Netfilter.insert',
    rule: '-s 10.0.0.9 -j DROP',
    write: (ns) => ns.netfilter.insert('filter', 'FORWARD', 0, parseRuleSpec(['-j', 'DROP'])),
  },
  {
    name: 'ip addr add (addrtype)',
    rule: '-m addrtype --dst-type LOCAL -j DROP',
    write: (ns) => sh(ns, 'ip addr add 10.0.1.1/32 dev vx0'),
  },
  {
    name: 'ip link set down (addrtype)',
    prep: 'ip addr add 10.0.1.1/32 dev vx1',
    rule: '-m addrtype --dst-type LOCAL -j DROP',
    write: (ns) => sh(ns, 'ip link set vx1 down'),
  },
  {
    name: 'ip route replace (rpfilter)',
    table: 'mangle',
    hook: 'PREROUTING',
    rule: '-m rpfilter --invert -j DROP',
    write: (ns) => sh(ns, 'ip route replace 10.0.0.0/24 dev vx1'),
  },
];

/** members ipsetLoad shares between namespaces (one list for both sides) */
const LOAD = [{ ip: ip4ToInt('10.0.0.1'), cidr: 32, proto: 0, port: 0 }];

/** 10.0.0.1:5000 → 10.0.1.1:53, UDP */
function udpPacket(sport = 5000): Ipv4Packet {
  return {
    kind: 'ipv4',
    ip: {
      src: '10.0.0.1',
      dst: '10.0.1.1',
      protocol: 17,
      ttl: 64,
      id: 1,
      df: true,
      mf: false,
      fragOffset: 0,
      tos: 0,
    },
    payload: {
      kind: 'udp',
      udp: { srcPort: sport, dstPort: 53 },
      payload: { kind: 'raw', data: new Uint8Array(8) },
    },
  };
}

function sh(ns: Netns, line: string): void {
  const r = runCommand(cluster, ns.name, line);
  assert.equal(r.code, 0, `${line}: ${r.stderr}`);
}

for (const [k, w] of WRITERS.entries())
  test(`a kept traversal goes when its input changes: ${w.name}`, () => {
    const a = setup(`vc-wa${k}`);
    const b = setup(`vc-wb${k}`);
    const env = hookEnv(new Map());
    const send = (ns: Netns, on: boolean) => {
      // forwarded from vx0 to vx1 (the route back to 10.0.0.1 is by vx0)
      const skb: HookSkb = { pkt: udpPacket(), mark: 0 };
      verdictCache.on = on;
      try {
        const at = { iif: 'vx0', oif: hook === 'FORWARD' ? 'vx1' : undefined, len: 36 };
        return outcome(ns, runHook(ns, hook, skb, at, env), skb);
      } finally {
        verdictCache.on = true;
      }
    };
    const hook = w.hook ?? 'FORWARD';
    for (const ns of [a, b]) {
      if (w.prep) sh(ns, w.prep);
      sh(ns, `iptables -t ${w.table ?? 'filter'} -A ${hook} ${w.rule}`);
    }
    const hits = verdictCache.hits;
    // seen once, kept the second time, replayed the third
    const before = [send(a, true), send(a, true), send(a, true)];
    assert.deepEqual(before, [send(b, false), send(b, false), send(b, false)]);
    assert.equal(verdictCache.hits, hits + 1, 'the third packet replays the second one’s traversal');
    for (const ns of [a, b]) w.write(ns);
    const after = send(a, true);
    assert.deepEqual(after, send(b, false), `after ${w.name}, with the cache and without`);
    assert.notEqual(
      (after as { verdict: string }).verdict,
      (before[0] as { verdict: string }).verdict,
      `${w.name} changes the verdict`,
    );
    assert.equal(state(a), state(b));
  });

/**
 * What conntrack's entry says changes between two packets of the same flow and the same state:
 * the entry is confirmed (--ctstatus), or NATed (--ctstate DNAT). The second packet must not
 * replay the first one's traversal.
 */
for (const [k, c] of [
  {
    name: '--ctstatus CONFIRMED',
    rules: ['-t mangle -A PREROUTING -m conntrack --ctstatus CONFIRMED -j DROP'],
  },
  {
    name: '--ctstate DNAT',
    rules: [
      '-t mangle -A PREROUTING -m conntrack --ctstate DNAT -j MARK --set-mark 7',
      '-t nat -A PREROUTING -j DNAT --to-destination 10.0.1.7',
    ],
  },
].entries())
  test(`a kept traversal is not another entry's: ${c.name}`, () => {
    const a = setup(`vc-ct-a${k}`);
    const b = setup(`vc-ct-b${k}`);
    const env = hookEnv(new Map());
    /** PREROUTING, then INPUT (which confirms the entry) unless `input` is false */
    const send = (ns: Netns, on: boolean, sport = 5000, input = true) => {
      const skb: HookSkb = { pkt: udpPacket(sport), mark: 0 };
      verdictCache.on = on;
      try {
        const pre = outcome(ns, runHook(ns, 'PREROUTING', skb, { iif: 'vx0', len: 36 }, env), skb);
        if (!input) return { pre };
        return { pre, input: outcome(ns, runHook(ns, 'INPUT', skb, { iif: 'vx0', len: 36 }, env), skb) };
      } finally {
        verdictCache.on = true;
      }
    };
    for (const ns of [a, b]) for (const rule of c.rules) sh(ns, `iptables ${rule}`);
    // two flows' first packets (no rule reads the port): their traversal of a new entry is kept
    for (const sport of [6000, 6001])
      assert.deepEqual(send(a, true, sport, false), send(b, false, sport, false));
    const hits = verdictCache.hits;
    const first = send(a, true);
    assert.deepEqual(first, send(b, false));
    assert.ok(verdictCache.hits > hits, 'the first packet of a third flow replays it');
    const second = send(a, true);
    assert.deepEqual(second, send(b, false), 'the second packet, with the cache and without');
    assert.notDeepEqual(second.pre, first.pre, 'the entry changed what PREROUTING does');
    assert.equal(state(a), state(b));
  });

/**
 * The state conntrack gives the packet (`-m state`, which reads nothing else): the first packets of
 * new flows are kept, then a reply (ESTABLISHED) must not replay them. The raw table runs before
 * conntrack (a view of the packet made untracked), mangle after it (the same packet, now tracked).
 */
test('a kept traversal is not another state’s, and the tables after conntrack see its state', () => {
  const a = setup('vc-st-a');
  const b = setup('vc-st-b');
  const env = hookEnv(new Map());
  const send = (ns: Netns, on: boolean, pkt: Ipv4Packet) => {
    const skb: HookSkb = { pkt, mark: 0 };
    verdictCache.on = on;
    try {
      const pre = outcome(ns, runHook(ns, 'PREROUTING', skb, { iif: 'vx0', len: 36 }, env), skb);
      return { pre, input: outcome(ns, runHook(ns, 'INPUT', skb, { iif: 'vx0', len: 36 }, env), skb) };
    } finally {
      verdictCache.on = true;
    }
  };
  const reply = (sport: number): Ipv4Packet => {
    const p = udpPacket(sport);
    p.ip = { ...p.ip, src: p.ip.dst, dst: p.ip.src };
    if (p.payload.kind === 'udp') p.payload.udp = { srcPort: 53, dstPort: sport };
    return p;
  };
  for (const ns of [a, b]) {
    sh(ns, 'iptables -t raw -A PREROUTING -m state --state UNTRACKED -j MARK --set-mark 1');
    sh(ns, 'iptables -t mangle -A PREROUTING -m state --state ESTABLISHED -j DROP');
  }
  for (const sport of [7000, 7001, 7002])
    assert.deepEqual(send(a, true, udpPacket(sport)), send(b, false, udpPacket(sport)));
  const hits = verdictCache.hits;
  const answered = send(a, true, reply(7002));
  assert.deepEqual(answered, send(b, false, reply(7002)), 'the reply, with the cache and without');
  assert.equal((answered.pre as { verdict: string }).verdict, 'DROP', 'mangle saw the reply ESTABLISHED');
  assert.ok(verdictCache.hits > hits, 'raw replayed a kept traversal');
  assert.equal(state(a), state(b));
});

/**
 * The entry's tuples (`--ctorigsrc`, `--ctrepldst`…): a rule that reads only the reply's
 * destination, flows from another source kept, then a flow whose reply goes to the rule's address:
 * nothing else of the key differs (the packet's source is not in it: no rule reads it).
 */
for (const [k, c] of [
  { match: '--ctorigsrc 10.0.0.1', field: 'orig' },
  { match: '--ctrepldst 10.0.0.1', field: 'reply' },
].entries())
  test(`a kept traversal is not another tuple's: ${c.match}`, () => {
    const a = setup(`vc-tu-a${k}`);
    const b = setup(`vc-tu-b${k}`);
    const env = hookEnv(new Map());
    const send = (ns: Netns, on: boolean, src: string, sport: number) => {
      const pkt = udpPacket(sport);
      pkt.ip = { ...pkt.ip, src };
      const skb: HookSkb = { pkt, mark: 0 };
      verdictCache.on = on;
      try {
        return outcome(ns, runHook(ns, 'PREROUTING', skb, { iif: 'vx0', len: 36 }, env), skb);
      } finally {
        verdictCache.on = true;
      }
    };
    for (const ns of [a, b]) sh(ns, `iptables -t mangle -A PREROUTING -m conntrack ${c.match} -j DROP`);
    for (const sport of [8000, 8001, 8002])
      assert.deepEqual(send(a, true, '10.0.0.6', sport), send(b, false, '10.0.0.6', sport));
    const hits = verdictCache.hits;
    const other = send(a, true, '10.0.0.1', 8003);
    assert.deepEqual(other, send(b, false, '10.0.0.1', 8003), 'a flow from the rule’s address');
    assert.equal((other as { verdict: string }).verdict, 'DROP');
    assert.equal(verdictCache.hits, hits, 'it replayed nothing');
    assert.equal(state(a), state(b));
  });

/**
 * Each field of the key: a rule that reads that field alone, a packet whose traversal is kept, then
 * one that differs from it in that field only, which the rule decides otherwise.
 */
const FIELD_CASES: {
  field: string;
  rule: string;
  other: (p: Ipv4Packet, at: HookPlace & { mark: number }) => void;
}[] = [
  { field: 'source', rule: '-s 10.0.0.1 -j DROP', other: (p) => (p.ip.src = '10.0.0.6') },
  { field: 'destination', rule: '-d 10.0.1.1 -j DROP', other: (p) => (p.ip.dst = '10.0.1.7') },
  { field: 'protocol', rule: '-p udp -j DROP', other: (p) => (p.ip.protocol = 132) },
  { field: 'source port', rule: '-p udp --sport 5000 -j DROP', other: (p) => setPorts(p, 5001, 53) },
  {
    field: 'destination port',
    rule: '-p udp -m multiport --dports 53 -j DROP',
    other: (p) => setPorts(p, 5000, 54),
  },
  { field: 'in-device', rule: '-i vx0 -j DROP', other: (_p, at) => (at.iif = 'vx9') },
  // (a name of the same length and last letter: the key's hash of a device name is only that)
  { field: 'in-device, same hash', rule: '-i vx0 -j DROP', other: (_p, at) => (at.iif = 'wx0') },
  { field: 'out-device', rule: '-o vx+ -j DROP', other: (_p, at) => (at.oif = 'eth0') },
  { field: 'mark', rule: '-m mark --mark 0x1/0x1 -j DROP', other: (_p, at) => (at.mark = 2) },
  { field: 'set member', rule: '-m set --match-set S1 src -j DROP', other: (p) => (p.ip.src = '10.0.2.9') },
];

function setPorts(p: Ipv4Packet, sport: number, dport: number): void {
  if (p.payload.kind === 'udp') p.payload.udp = { ...p.payload.udp, srcPort: sport, dstPort: dport };
}

for (const [k, c] of FIELD_CASES.entries())
  test(`a kept traversal is not another packet's: ${c.field}`, () => {
    const a = setup(`vc-f-a${k}`);
    const b = setup(`vc-f-b${k}`);
    const env = hookEnv(new Map());
    const send = (ns: Netns, on: boolean, change: boolean) => {
      const pkt = udpPacket();
      const at = { iif: 'vx0', oif: 'vx1', len: 36, mark: 1 };
      if (change) c.other(pkt, at);
      const skb: HookSkb = { pkt, mark: at.mark };
      verdictCache.on = on;
      try {
        return outcome(ns, runHook(ns, 'FORWARD', skb, at, env), skb);
      } finally {
        verdictCache.on = true;
      }
    };
    for (const ns of [a, b]) sh(ns, `iptables -A FORWARD ${c.rule}`);
    for (let i = 0; i < 3; i++) assert.deepEqual(send(a, true, false), send(b, false, false));
    const other = send(a, true, true);
    assert.deepEqual(other, send(b, false, true), `a packet of another ${c.field}`);
    assert.notEqual((other as { verdict: string }).verdict, 'DROP', `the rule decides it otherwise`);
    assert.equal(state(a), state(b));
  });
