/**
 * Netns.stateGeneration and the clock deadlines (src/kernel/deadlines.ts): what a replay of a
 * recorded walk relies on to know that nothing the walk's decisions read has changed.
 *
 * The generations: on the clusters of the flow cache's oracle (test/flow-oracle.ts: every CNI mode
 * of the seed cluster and the services fixture with kube-proxy), random operations run — the
 * oracle's walks, bursts of warm walks, time steps and writes through the emulated tools (ip,
 * bridge, iptables, ipset, conntrack, sysctl), and more written here: writes through the netlink
 * API and the namespace's own methods (bridge port master and hairpin, a device's own address
 * list, neighbours made and changed, sysctls queued and deleted, a device's drawn reachable_time,
 * listeners opened and closed, a netfilter program queued) and rules that keep state per packet
 * (`-m statistic --mode nth`, `-m recent`). After each operation every namespace is projected
 * (snapshot.ts's namespace data, kept to what a walk's decisions read: counters, IP ids, MIB
 * counters, conntrack, TCP sockets, a neighbour's used/confirmed times, an FDB entry's refresh
 * time, dead PMTU exceptions dropped); when a namespace's projection changed, its stateGeneration
 * or its routeGeneration must have moved. The test's power was checked by removing the move from
 * one writer at a time (BENCHMARKS.md, 2026-12-06 s16-gen, lists which): each made it fail.
 *
 * The deadlines: each deadline function against the real lookup at its deadline and just after,
 * and the neighbour's NUD state, which has no deadline: its lookup does not read the clock, and
 * the timer that changes it moves the generation.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { fdbDeadline, neighLockDeadline, pmtuDeadline, ARP_LOCKTIME } from '../src/kernel/deadlines.ts';
import type { Json } from '../src/kernel/data.ts';
import { fdbAdd, fdbFlushDynamic, linkSetHairpin, linkSetMaster, neighAdd } from '../src/kernel/netlink.ts';
import type { BridgeLink, Link, Netns } from '../src/kernel/objects.ts';
import type { Ipv4Packet } from '../src/wire/types.ts';
import { pmtuException, updatePmtu } from '../src/kernel/pmtu.ts';
import { worldToData, type NetnsData } from '../src/kernel/snapshot.ts';
import { runCommand } from '../src/tools/index.ts';
import { runUntil } from '../src/trace/exchange.ts';
import { walk } from '../src/trace/walk.ts';
import { ipsetCommand, randomOps, SPECS } from './flow-oracle.ts';
import { rng, type Rng } from './rng.ts';

/** `v` without the fields named in `drop`, at any depth */
function without(v: Json, drop: ReadonlySet<string>): Json {
  if (Array.isArray(v)) return v.map((x) => without(x, drop));
  if (v === null || typeof v !== 'object') return v;
  const out: { [k: string]: Json } = {};
  for (const [k, x] of Object.entries(v)) if (!drop.has(k)) out[k] = without(x, drop);
  return out;
}

const COUNTERS = new Set(['pkts', 'bytes']);

type Obj = { [k: string]: Json };

/**
 * What a walk's decisions read of a namespace, as text: its data without what a replay
 * reproduces and no decision reads (device counters and carrier changes, an FDB entry's refresh
 * time, the IP id, MIB counters, ARP statistics, TCP sockets, conntrack, a neighbour timer's
 * probes, times and armed time — its queue stays —, rule and chain counters) and without PMTU
 * exceptions that are dead at `now` (no lookup finds them; the next lookup removes them)
 */
function projection(d: NetnsData, now: number): string {
  const links = (d.links as Obj[]).map((l) => {
    const { stats: _s, carrierChanges: _c, fdb, ...rest } = l;
    return fdb === undefined ? rest : { ...rest, fdb: without(fdb, new Set(['updated'])) };
  });
  const routes = (d.routes as Obj[]).map((r) =>
    r.exceptions === undefined
      ? r
      : { ...r, exceptions: (r.exceptions as Obj[]).filter((e) => (e.expires as number) > now) },
  );
  return JSON.stringify({
    name: d.name,
    role: d.role,
    nextIfindex: d.nextIfindex,
    links,
    routes,
    neighbours: d.neighbours,
    sysctl: d.sysctl,
    neighReachable: d.neighReachable ?? [],
    sockets: d.sockets,
    udpClients: d.udpClients,
    pings: d.pings,
    nud: d.nud.map(([k, t]) => [k, (t as Obj).queue ?? null]),
    icmpPeers: d.icmpPeers,
    icmpGlobal: d.icmpGlobal,
    netfilter: without(d.netfilter, COUNTERS),
  });
}

/** every namespace's projection, by name (the captures emptied first: not state, and long) */
function projections(c: Cluster): Map<string, string> {
  c.world.captures.length = 0;
  const d = worldToData(c.world);
  return new Map(d.netns.map((n) => [n.name, projection(n, c.world.now)]));
}

/** every namespace's two generations, by name */
function generations(c: Cluster): Map<string, [number, number]> {
  return new Map(
    [...c.world.netns.values()].map((ns) => [ns.name, [ns.stateGeneration, ns.routeGeneration]]),
  );
}

interface Op {
  what: string;
  run: (c: Cluster) => unknown;
}

const command = (netns: string, cmd: string): Op => ({
  what: `${netns}: ${cmd}`,
  run: (c) => runCommand(c, netns, cmd),
});

/** an operation written here: the netlink API, the namespace's own methods, rules that keep state */
function extraOp(r: Rng, c: Cluster): Op {
  const nodes = c.nodes.map((n) => n.name);
  const name = r.chance(0.8) ? r.pick(nodes) : r.pick(c.pods).name;
  const ns = c.world.ns(name);
  const links = [...ns.links.values()].filter((l) => l.name !== 'lo');
  const link = r.pick(links);
  const bridge = links.find((l): l is BridgeLink => l.type === 'bridge');
  const ports = bridge ? links.filter((l) => l.master === bridge.name) : [];
  const at = `${name}:`;
  const tryRun = (f: () => void) => {
    try {
      f();
    } catch (e) {
      return `threw ${(e as Error).message}`;
    }
    return 'ok';
  };
  switch (r.int(17)) {
    case 0: {
      const port = ports.length ? r.pick(ports) : link;
      const on = r.chance(0.5);
      return {
        what: `${at} hairpin ${port.name} ${on}`,
        run: () => tryRun(() => linkSetHairpin(ns, port.name, on)),
      };
    }
    case 1: {
      // a port leaves its bridge or joins it (its FDB entries go, the bridge adds its address);
      // or first its FDB entries go (then leaving the bridge removes none: only the master moves)
      const port: Link | undefined = ports.length ? r.pick(ports) : undefined;
      const free = links.find((l) => l.type === 'veth' && !l.master);
      if (port && bridge && r.chance(0.5) && bridge.fdb.list().some((e) => e.port === port.name))
        return {
          what: `${at} ${port.name}'s FDB entries removed`,
          run: () => bridge.fdb.removeWhere((e) => e.port === port.name),
        };
      if (port)
        return {
          what: `${at} ${port.name} nomaster`,
          run: (cl) => tryRun(() => linkSetMaster(cl.world, ns, port.name, undefined)),
        };
      if (bridge && free)
        return {
          what: `${at} ${free.name} master ${bridge.name}`,
          run: (cl) => tryRun(() => linkSetMaster(cl.world, ns, free.name, bridge.name)),
        };
      return command(name, 'ip link show');
    }
    case 2: {
      // the device's own unicast list (`bridge fdb add MAC dev DEV self permanent`), or off it
      const mac = `02:00:5e:00:00:0${r.int(3)}`;
      return {
        what: `${at} fdb ${mac} self ${link.name}`,
        run: (cl) =>
          tryRun(() =>
            fdbAdd(ns, cl.world, {
              mac,
              dev: link.name,
              self: true,
              master: false,
              state: { permanent: true, noarp: false, reachable: false },
              nl: { create: true, excl: false, replace: false, append: false },
            }),
          ),
      };
    }
    case 3:
      return command(name, `bridge fdb del 02:00:5e:00:00:0${r.int(3)} dev ${link.name} self`);
    case 4: {
      // a neighbour made or changed through netlink
      const ip =
        r.chance(0.5) && ns.neigh.size ? r.pick(ns.neigh.list()).ip : `10.${r.int(3)}.0.${1 + r.int(3)}`;
      const state = r.pick(['PERMANENT', 'REACHABLE', 'STALE', 'NOARP', 'DELAY'] as const);
      return {
        what: `${at} neigh ${ip} ${state} ${link.name}`,
        run: (cl) =>
          tryRun(() =>
            neighAdd(ns, cl.world, {
              ip,
              dev: link.name,
              lladdr: `02:00:00:00:0${r.int(2)}:01`,
              state,
              nl: { create: true, excl: false, replace: true },
            }),
          ),
      };
    }
    case 5:
      // a device's drawn reachable_time (as a real node's is known), then a new base draws it again
      return r.chance(0.5)
        ? { what: `${at} reachable ${link.name}`, run: () => ns.own('neighReachable').set(link.name, 12_345) }
        : command(
            name,
            `sysctl -w net.ipv4.neigh.${link.name}.base_reachable_time_ms=${r.pick([30000, 5000])}`,
          );
    case 6: {
      const value = String(r.int(3));
      return {
        what: `${at} device sysctls queued ${link.name} rp_filter=${value}`,
        run: () => ns.setDeviceSysctls(link.name, [{ table: 'conf', knob: 'rp_filter', value }]),
      };
    }
    case 7:
      return {
        what: `${at} sysctl delete`,
        run: () => ns.sysctl.delete(r.pick(['net.ipv4.conf.all.rp_filter', 'net.ipv4.tcp_syn_retries'])),
      };
    case 8: {
      const mine = ns.sockets.find((l) => l.app === 'pw-gen');
      const port = mine?.port ?? r.pick([8080, 9, 7777]);
      return mine && r.chance(0.7)
        ? { what: `${at} unlisten ${port}`, run: (cl) => cl.sockets.unlisten(ns, port, 'pw-gen') }
        : { what: `${at} listen ${port}`, run: (cl) => cl.sockets.listen(ns, port, 'pw-gen') };
    }
    case 9: {
      const port = r.pick([53, 9]);
      return {
        what: `${at} udp listener ${port}`,
        run: () => ns.addListener({ proto: 'udp', port, addr: '0.0.0.0' }),
      };
    }
    case 10:
      return {
        what: `${at} netfilter program queued`,
        run: () =>
          ns.netfilterLater(() => {
            runCommand(c, name, 'iptables -I FORWARD -p udp --dport 53 -j DROP');
          }),
      };
    case 11:
      return command(
        name,
        `iptables -I ${r.pick(['FORWARD', 'INPUT'])} -p tcp -m statistic --mode nth --every 2 --packet 0 -j DROP`,
      );
    case 12:
      return command(
        name,
        r.chance(0.5)
          ? `iptables -I ${r.pick(['FORWARD', 'INPUT'])} -p tcp -m recent --set --name pw`
          : `iptables -I ${r.pick(['FORWARD', 'INPUT'])} -p tcp -m recent --rcheck --seconds 2 --name pw -j DROP`,
      );
    case 13:
      return bridge && r.chance(0.5)
        ? {
            what: `${at} ${bridge.name}: dynamic FDB entries flushed`,
            run: () => fdbFlushDynamic(ns, bridge.name),
          }
        : command(name, r.pick(['ip neigh flush all', 'iptables -F', 'iptables -Z']));
    case 15:
      // an IP set's members, written after a rule that reads it is in (or before)
      return command(name, ipsetCommand(r, c, 'pw-gen', ['FORWARD', 'INPUT']));
    case 14:
      return command(name, `ip link set ${link.name} ${r.chance(0.5) ? 'down' : 'up'}`);
    default:
      return command(name, `sysctl -w net.ipv4.conf.${link.name}.forwarding=${r.int(2)}`);
  }
}

/**
 * Run `n` random operations on a cluster of `spec`; after each, a namespace whose projection
 * changed must have moved one of its generations. Returns the first that did not, or undefined.
 */
export function unmoved(spec: string, seed: number, n: number): string | undefined {
  const { spec: s, mode } = SPECS[spec]();
  const c = buildCluster(s, mode);
  const r = rng(seed);
  const oracle = randomOps(r, c, n);
  let before = projections(c);
  for (let i = 0; i < n; i++) {
    const op: Op | undefined = r.chance(0.35) ? extraOp(r, c) : oracle();
    if (!op) break;
    const gens = generations(c);
    op.run(c);
    // the generations as the operation left them, before the projection reads the world (a read
    // runs a netfilter program queued: that is no write of the operation's)
    const moved = generations(c);
    const after = projections(c);
    for (const [name, p] of after) {
      const was = before.get(name);
      const g0 = gens.get(name);
      const g1 = moved.get(name)!;
      if (was === undefined || g0 === undefined || was === p) continue;
      if (g0[0] === g1[0] && g0[1] === g1[1]) {
        const a = was;
        const b = p;
        let k = 0;
        while (k < a.length && a[k] === b[k]) k++;
        return `op ${i} (${op.what}): ${name} changed with no generation moved, at …${a.slice(Math.max(0, k - 120), k + 80)}… → …${b.slice(Math.max(0, k - 120), k + 80)}…`;
      }
    }
    before = after;
  }
  return undefined;
}

describe('stateGeneration: a namespace whose decisions could change moved a generation', () => {
  for (const name of Object.keys(SPECS))
    for (const seed of [1, 2])
      test(`${name}, seed ${seed}`, () => {
        const d = unmoved(name, seed * 7727 + name.length, 120);
        assert.equal(d, undefined, d);
      });
});

describe('stateGeneration: what does not move it', () => {
  for (const name of ['flannel-vxlan', 'flannel-host-gw', 'calico-bgp', 'calico-ipip', 'calico-vxlan'])
    test(`${name}: warm walks back to back move no generation (after the first of their kind)`, () => {
      const { spec, mode } = SPECS[name]();
      const c = buildCluster(spec, mode);
      const req = { from: 'pod-a', to: 'pod-c', proto: 'tcp' as const, port: 8080 };
      for (let i = 0; i < 3; i++) walk(c, { ...req, sport: 40000 + i });
      const g = generations(c);
      for (let i = 3; i < 40; i++) walk(c, { ...req, sport: 40000 + i });
      assert.deepEqual(generations(c), g);
    });
});

/** a cluster of the oracle's */
function build(name: string): Cluster {
  const { spec, mode } = SPECS[name]();
  return buildCluster(spec, mode);
}

/** a dynamic entry of a bridge's FDB in a cluster after a walk: flannel's cni0 */
function bridgeEntry(c: Cluster): { ns: Netns; br: BridgeLink; mac: string } {
  walk(c, { from: 'pod-a', to: 'pod-b', proto: 'tcp', port: 8080 });
  for (const ns of c.world.netns.values())
    for (const l of ns.links.values())
      if (l.type === 'bridge') {
        const e = l.fdb.list().find((x) => x.state === 'dynamic');
        if (e) return { ns, br: l, mac: e.mac };
      }
  throw new Error('no dynamic FDB entry');
}

/** the datapath's own lookups, called as the datapath calls them */
interface StackLookups {
  fdbLookup(br: BridgeLink, mac: string): unknown;
  arpRcv(ns: Netns, dev: Link, frame: unknown): void;
  resolve(ns: Netns, dev: Link, nexthop: string, pkt: Ipv4Packet): string | undefined;
}
const lookups = (c: Cluster) => c.stack as unknown as StackLookups;

describe('stateGeneration: a packet queued on an unresolved neighbour moves it', () => {
  test('the second packet for an address being resolved joins its queue: the generation moves', () => {
    const c = build('flannel-vxlan');
    const ns = c.world.ns('pod-a');
    const dev = ns.link('eth0')!;
    const pkt = {
      kind: 'ipv4',
      ip: { src: dev.addrs[0].ip, dst: '10.244.0.250' },
      payload: { kind: 'raw', data: new Uint8Array(0) },
    } as unknown as Ipv4Packet;
    assert.equal(lookups(c).resolve(ns, dev, '10.244.0.250', pkt), undefined);
    const queue = () => ns.nud.get(`10.244.0.250|eth0`)?.queue?.length;
    assert.equal(queue(), 1);
    const g = ns.stateGeneration;
    assert.equal(lookups(c).resolve(ns, dev, '10.244.0.250', pkt), undefined);
    assert.equal(queue(), 2);
    assert.equal(ns.neighbour('10.244.0.250', 'eth0')!.state, 'INCOMPLETE');
    assert.notEqual(ns.stateGeneration, g);
  });
});

describe('stateGeneration: a port that leaves its bridge with no FDB entry moves it', () => {
  test('the master alone changes: the generation moves', () => {
    const c = build('flannel-vxlan');
    const ns = c.world.ns('node1');
    const br = ns.link('cni0') as BridgeLink;
    const port = [...ns.links.values()].find((l) => l.master === 'cni0')!;
    br.fdb.removeWhere((e) => e.port === port.name);
    const g = ns.stateGeneration;
    linkSetMaster(c.world, ns, port.name, undefined);
    assert.equal(port.master, undefined);
    assert.notEqual(ns.stateGeneration, g);
  });
});

describe('deadlines: the answer of a lookup is the same until the deadline, and may change after', () => {
  test('fdbDeadline: a dynamic entry is found at its deadline, aged out a µs after', () => {
    const c = build('flannel-vxlan');
    const { ns, br, mac } = bridgeEntry(c);
    const e = br.fdb.get(mac)!;
    const d = fdbDeadline(br, e);
    assert.equal(d, e.updated + 300e6);
    const g = ns.stateGeneration;
    c.world.now = d; // the clock alone: no timer runs
    assert.equal(lookups(c).fdbLookup(br, mac), e);
    assert.equal(ns.stateGeneration, g, 'a lookup that finds the entry writes nothing');
    c.world.now = d + 1;
    assert.equal(lookups(c).fdbLookup(br, mac), undefined);
    assert.notEqual(ns.stateGeneration, g, 'the lookup that ages the entry out removes it: a write');
    // a local entry never ages
    const local = br.fdb.list().find((x) => x.state === 'local')!;
    assert.equal(fdbDeadline(br, local), Infinity);
    c.world.now = 1e15;
    assert.equal(lookups(c).fdbLookup(br, local.mac), br.fdb.get(local.mac));
  });

  test('pmtuDeadline: an exception is found at its deadline, gone a µs after', () => {
    const c = build('flannel-vxlan');
    const ns = c.world.ns('node1');
    const rr = c.stack.routeOutput(ns, '10.99.0.1');
    assert.ok(rr && !('error' in rr));
    const e = updatePmtu(ns, '10.99.0.1', rr.route, rr.dev.mtu, 1200, c.world.now)!;
    const d = pmtuDeadline(e);
    assert.equal(pmtuException(ns, '10.99.0.1', rr.route, d), e);
    assert.equal(pmtuException(ns, '10.99.0.1', rr.route, d + 1), undefined);
  });

  test("neighLockDeadline: another address's ARP reply is ignored until it, taken after", () => {
    const c = build('flannel-vxlan');
    walk(c, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 });
    const ns = c.world.ns('node1');
    const dev = ns.link('eth0')!;
    const n = ns.neigh.list().find((x) => x.dev === 'eth0' && x.lladdr && x.state === 'REACHABLE');
    assert.ok(n, 'a REACHABLE neighbour of eth0');
    const reply = (mac: string) => ({
      eth: { dst: dev.mac, src: mac, ethertype: 0x0806 },
      payload: {
        kind: 'arp',
        arp: { op: 2, senderMac: mac, senderIp: n.ip, targetMac: dev.mac, targetIp: dev.addrs[0].ip },
      },
    });
    const d = neighLockDeadline(n);
    assert.equal(d, n.updated + ARP_LOCKTIME);
    const old = n.lladdr;
    const g = ns.stateGeneration;
    c.world.now = d;
    lookups(c).arpRcv(ns, dev, reply('02:aa:00:00:00:01'));
    assert.equal(ns.neighbour(n.ip, 'eth0')!.lladdr, old, 'locked at the deadline');
    assert.equal(ns.stateGeneration, g, 'an ignored reply writes nothing');
    c.world.now = d + 1;
    lookups(c).arpRcv(ns, dev, reply('02:aa:00:00:00:01'));
    assert.equal(ns.neighbour(n.ip, 'eth0')!.lladdr, '02:aa:00:00:00:01', 'taken after it');
    assert.notEqual(ns.stateGeneration, g);
  });

  test('a neighbour has no deadline: its lookup reads no clock; the timer that changes its state moves the generation', () => {
    const req = { from: 'pod-a', to: 'pod-c', proto: 'tcp' as const, port: 8080, sport: 41000 };
    const c = build('flannel-vxlan');
    walk(c, req);
    // the entries the walk left REACHABLE, each with its timer armed
    const armed = [...c.world.netns.values()].flatMap((ns) =>
      ns.neigh
        .list()
        .filter((n) => n.state === 'REACHABLE' && ns.nud.get(`${n.ip}|${n.dev}`)?.timer !== undefined)
        .map((n) => ({ ns, n, at: ns.nud.get(`${n.ip}|${n.dev}`)!.timer! })),
    );
    assert.ok(armed.length, 'the walk left REACHABLE entries with timers');
    // the clock far past every timer, none run: the lookup finds each entry valid, as it was
    const now = c.world.now;
    c.world.now = Math.max(...armed.map((x) => x.at)) + 600e6;
    for (const { ns, n } of armed) {
      const g = ns.stateGeneration;
      const pkt = {
        kind: 'ipv4',
        ip: { src: '10.0.0.1', dst: n.ip },
        payload: { kind: 'raw', data: new Uint8Array(0) },
      };
      assert.equal(lookups(c).resolve(ns, ns.link(n.dev)!, n.ip, pkt as unknown as Ipv4Packet), n.lladdr);
      assert.equal(ns.neighbour(n.ip, n.dev)!.state, 'REACHABLE');
      assert.equal(ns.stateGeneration, g);
    }
    c.world.now = now;
    // the same walk on a new cluster, then its timers run: each entry's state changes when its
    // timer runs, not before, and its namespace's generation moves then
    const c2 = build('flannel-vxlan');
    walk(c2, req);
    // the first neighbour timer of any state (the walk leaves DELAY entries too, due sooner)
    const first = Math.min(
      ...[...c2.world.netns.values()].flatMap((ns) => [...ns.nud.values()].flatMap((t) => t.timer ?? [])),
    );
    const g2 = generations(c2);
    runUntil(c2, first - 1);
    assert.deepEqual(generations(c2), g2, 'nothing changes before the first neighbour timer');
    runUntil(c2, Math.max(...armed.map((x) => x.at)) + 60e6);
    for (const { ns, n } of armed) {
      const ns2 = c2.world.ns(ns.name);
      assert.notEqual(ns2.neighbour(n.ip, n.dev)?.state, 'REACHABLE', `${ns.name} ${n.ip}: its timer ran`);
      assert.notEqual(ns2.stateGeneration, g2.get(ns.name)![0], `${ns.name}: the timer moved it`);
    }
  });
});
