/**
 * The route lookup cache (Stack.routeOutput keeps a namespace's answers until its routing
 * generation moves, Fib.derived) against the lookup without it, on random states. Two worlds are
 * made and changed by the very same random operations; in world A lookups answer from the cache,
 * in world B every lookup drops the namespace's kept answers first (Fib.forget, which leaves the
 * generation as it is), so B runs the uncached lookup every time. Everything must be equal:
 *
 *  - part 1, random namespaces written through every writer of the routing state: links (veth,
 *    bridge, VXLAN, IPIP) made, deleted, set up and down, given an MTU, a master (carrier follows),
 *    addresses added and deleted, routes of every type added (NLM_F_* create, excl, replace,
 *    append) and deleted, the bulk builders that write devices in place (bridgedNetnsAdd,
 *    routedNetnsAdd), flannel's lease batch (leasesInstall: a shared FIB segment, then routes
 *    added and deleted over it), sysctls, PMTU exceptions learned (updatePmtu, as a socket does on
 *    ICMP fragmentation needed) and expiring with the clock, and the world saved and read back;
 *    random lookups (destination, output device) in between. Compared: every lookup's answer (the
 *    route with its exceptions, device, source, nexthop, path MTU; the route the very object the
 *    table holds), every write's result, each namespace's generation, and now and then the whole
 *    world's data and the route objects each table has handed out. And the generation itself:
 *    after every write, the answers to a fixed set of lookups in every namespace (with the MTU and
 *    carrier of the answer's device) are taken again, and when any differs, the namespace's
 *    generation must have moved.
 *  - part 2, built clusters (flannel-vxlan, calico-bgp, calico-ipip): random walks (TCP, UDP,
 *    ICMP, sizes that fragment or learn a path MTU) between pods and nodes, interleaved with the
 *    emulated `ip` changing routes, links, MTUs and addresses (BGP's kernel routes follow), and
 *    the clock moving; every walk's traces (steps, counters, disposition) and every command's
 *    output equal, and the worlds' data equal at the end.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { seedCluster } from '../src/cluster/seed.ts';
import type { CniMode } from '../src/cluster/spec.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { formatRoute, routePrefix, type Route } from '../src/kernel/fib.ts';
import { carrierOk } from '../src/kernel/links.ts';
import {
  addressAdd,
  addressDel,
  bridgedNetnsAdd,
  leasesInstall,
  linkAdd,
  linkDel,
  linkSetMaster,
  linkSetMtu,
  linkSetUp,
  NetlinkError,
  netnsAdd,
  NLM_ADD,
  routeAdd,
  routeDel,
  routedNetnsAdd,
  routeInstall,
  type LeaseRequest,
  type RouteRequest,
} from '../src/kernel/netlink.ts';
import type { Netns } from '../src/kernel/objects.ts';
import { updatePmtu } from '../src/kernel/pmtu.ts';
import { worldFromData, worldToData } from '../src/kernel/snapshot.ts';
import { Stack } from '../src/kernel/stack.ts';
import { World } from '../src/kernel/world.ts';
import { rng, type Rng } from './rng.ts';
import { runCommand } from '../src/tools/index.ts';
import { walk } from '../src/trace/walk.ts';

/**
 * a lookup's answer as data: what routeOutput hands out, the route checked to be the table's own
 * object; with `now`, the route's exceptions only as far as they are alive (what `ip route show
 * cache` lists: an expired one goes when it is next read, which is no change of any answer)
 */
function answer(ns: Netns, rr: ReturnType<Stack['routeOutput']>, now?: number): string {
  if (!rr) return 'none';
  if ('error' in rr) return `local ${rr.dev.name} ${rr.dev === ns.link(rr.dev.name)}`;
  const live = ns.fib.aliases(rr.route.dst, rr.route.len, rr.route.metric).includes(rr.route);
  return JSON.stringify({
    route: formatRoute(rr.route),
    exceptions: now === undefined ? rr.route.exceptions : rr.route.exceptions?.filter((e) => e.expires > now),
    live,
    dev: rr.dev.name,
    sameDev: rr.dev === ns.link(rr.dev.name),
    src: rr.src,
    nexthop: rr.nexthop,
    pmtu: rr.pmtu,
    keys: Object.keys(rr),
  });
}

/** the route objects a table has handed out (doctor reads them: scanObjects), and its own rows */
function handedOut(ns: Netns): string {
  const rows: string[] = [];
  ns.fib.scanObjects((r) => rows.push(`${routePrefix(r)} ${r.via} ${r.dev}`));
  return rows.join(';');
}

interface Side {
  w: World;
  s: Stack;
}

/** what a write gave: its result, or the netlink error it was refused with */
function outcome(fn: () => unknown): string {
  try {
    const r = fn();
    return r === undefined ? 'ok' : JSON.stringify(r);
  } catch (e) {
    if (e instanceof NetlinkError) return `error ${e.message}`;
    throw e;
  }
}

/* ------------------------------------------------------------------ part 1: random namespaces */

const SUBNETS = ['10.0.0', '10.0.1', '10.1.0', '192.168.5'];
const LENS = [24, 24, 16, 32, 30, 8];
const MTUS = [1500, 1450, 1400, 9000, 1280, 68, 576];

/** a random address of the pool's subnets */
const anAddress = (r: Rng) => `${r.pick(SUBNETS)}.${1 + r.int(6)}`;

function aPrefix(r: Rng): string {
  switch (r.int(6)) {
    case 0:
      return 'default';
    case 1:
      return `${r.pick(SUBNETS)}.0/24`;
    case 2:
      return `${r.pick(SUBNETS).split('.').slice(0, 2).join('.')}.0.0/16`;
    case 3:
      return anAddress(r);
    case 4:
      return `${r.pick(SUBNETS)}.0/30`;
    default:
      return `${r.pick(SUBNETS)}.${r.int(3) * 4}/30`;
  }
}

const NL_FLAGS: RouteRequest['nl'][] = [
  NLM_ADD,
  NLM_ADD,
  { create: true, excl: false, replace: true, append: false },
  { create: true, excl: false, replace: false, append: true },
  { create: false, excl: false, replace: true, append: false },
];

class Part1 {
  a: Side;
  b: Side;
  n = 0;
  /** the destinations the generation oracle looks up in every namespace */
  probes: string[];

  constructor(private r: Rng) {
    this.a = this.side();
    this.b = this.side();
    this.probes = [
      '127.0.0.1',
      '8.8.8.8',
      ...Array.from({ length: 10 }, () => anAddress(r)),
      ...SUBNETS.map((s) => `${s}.200`),
      // the lease subnets (leases())
      '10.50.0.7',
      '10.51.0.7',
    ];
  }

  private side(): Side {
    const w = new World('route-cache');
    const s = new Stack(w);
    for (let i = 0; i < 4; i++) netnsAdd(w, `n${i}`, 'node');
    return { w, s };
  }

  /** run `fn` on both worlds (B's lookups uncached), their results must be equal */
  both(what: string, fn: (x: Side, uncached: boolean) => string): string {
    const ra = fn(this.a, false);
    const rb = fn(this.b, true);
    assert.equal(ra, rb, `${what}: cached and uncached differ`);
    return rb;
  }

  /** a lookup; B's without what its namespace kept */
  lookup(x: Side, uncached: boolean, ns: string, dst: string, oif?: string): string {
    const n = x.w.ns(ns);
    if (uncached) n.fib.forget();
    return answer(n, x.s.routeOutput(n, dst, oif));
  }

  names(): string[] {
    return [...this.b.w.netns.keys()];
  }

  links(ns: string): string[] {
    return [...this.b.w.ns(ns).links.keys()];
  }

  /** every namespace's answers to the probes (all devices as oif too), with the answer's device's MTU and carrier */
  fingerprint(): Map<string, string> {
    const out = new Map<string, string>();
    for (const name of this.names()) {
      const parts: string[] = [];
      for (const dst of this.probes)
        for (const oif of [undefined, ...this.links(name)]) {
          const got = this.both(`probe ${name} ${dst} ${oif}`, (x, u) => {
            const n = x.w.ns(name);
            if (u) n.fib.forget();
            const rr = x.s.routeOutput(n, dst, oif);
            const a = answer(n, rr, x.w.now);
            return rr?.dev ? `${a} mtu ${rr.dev.mtu} carrier ${carrierOk(rr.dev)}` : a;
          });
          parts.push(got);
        }
      out.set(name, parts.join('\n'));
    }
    return out;
  }

  generations(): Map<string, number> {
    const ga = new Map([...this.a.w.netns].map(([k, ns]) => [k, ns.routeGeneration]));
    const gb = new Map([...this.b.w.netns].map(([k, ns]) => [k, ns.routeGeneration]));
    assert.deepEqual(ga, gb, 'the generations of the two worlds differ');
    return ga;
  }

  /** one random write, applied to both worlds */
  write(): string {
    const r = this.r;
    const ns = r.pick(this.names());
    const links = this.links(ns);
    const link = r.pick(links);
    const k = this.n++;
    const hex = (v: number) => v.toString(16).padStart(2, '0');
    const mac = `02:00:00:00:${hex((k >> 8) & 0xff)}:${hex(k & 0xff)}`;
    switch (r.int(17)) {
      case 0: {
        const peerNs = r.pick(this.names());
        const req = { name: `v${k}`, mtu: r.pick([1500, 1450]), pp: `p${k}` };
        return this.both('veth', (x) =>
          outcome(
            () =>
              linkAdd(x.w, x.w.ns(ns), {
                type: 'veth',
                name: req.name,
                mac,
                mtu: req.mtu,
                peer: { netns: x.w.ns(peerNs), name: req.pp, mac: mac.replace(/^02/, '06'), mtu: req.mtu },
              }).name,
          ),
        );
      }
      case 1: {
        const type = r.pick(['bridge', 'ipip', 'vxlan'] as const);
        const vni = 1 + r.int(3);
        const local = anAddress(r);
        return this.both('link add', (x) =>
          outcome(() => {
            const n = x.w.ns(ns);
            if (type === 'bridge') return linkAdd(x.w, n, { type, name: `br${k}`, mac, mtu: 1500 }).name;
            if (type === 'ipip') return linkAdd(x.w, n, { type, name: `tun${k}`, mtu: 1480 }).name;
            return linkAdd(x.w, n, {
              type,
              name: `vx${k}`,
              mac,
              mtu: 1450,
              vni,
              local,
              dev: link,
              dstport: 4789,
              learning: false,
              udpcsum: false,
            }).name;
          }),
        );
      }
      case 2:
        return this.both('link del', (x) => outcome(() => linkDel(x.w, x.w.ns(ns), link)));
      case 3:
      case 4: {
        const up = r.chance(0.7);
        return this.both('link up', (x) => outcome(() => linkSetUp(x.w, x.w.ns(ns), link, up)));
      }
      case 5: {
        const mtu = r.pick(MTUS);
        return this.both('mtu', (x) => outcome(() => linkSetMtu(x.w.ns(ns), link, mtu)));
      }
      case 6: {
        const br = r.chance(0.3) ? undefined : r.pick(links);
        return this.both('master', (x) => outcome(() => linkSetMaster(x.w, x.w.ns(ns), link, br)));
      }
      case 7:
      case 8: {
        const ip = anAddress(r);
        const len = r.pick(LENS);
        const scope = r.chance(0.8) ? undefined : r.pick(['link', 'host', 'global'] as const);
        return this.both('addr add', (x) => outcome(() => addressAdd(x.w.ns(ns), link, ip, len, scope)));
      }
      case 9: {
        const have = [...this.b.w.ns(ns).addresses()];
        const a = have.length && r.chance(0.8) ? r.pick(have) : undefined;
        const dev = a?.dev.name ?? link;
        const ip = a?.addr.ip ?? anAddress(r);
        const len = r.chance(0.5) ? a?.addr.len : undefined;
        return this.both('addr del', (x) => outcome(() => addressDel(x.w.ns(ns), dev, ip, len)));
      }
      case 10:
      case 11:
      case 12: {
        const type = r.chance(0.8)
          ? undefined
          : r.pick(['unicast', 'blackhole', 'unreachable', 'prohibit'] as const);
        const req: RouteRequest = {
          prefix: aPrefix(r),
          type,
          via: type && type !== 'unicast' ? undefined : r.chance(0.6) ? anAddress(r) : undefined,
          dev: type && type !== 'unicast' ? undefined : r.chance(0.8) ? link : undefined,
          src: r.chance(0.15) ? anAddress(r) : undefined,
          metric: r.pick([undefined, 0, 10, 100]),
          onlink: r.chance(0.2),
          scope: r.chance(0.1) ? r.pick(['link', 'host', 'global'] as const) : undefined,
          nl: r.pick(NL_FLAGS),
        };
        const echo = r.chance(0.5);
        return this.both('route add', (x) =>
          outcome(() => {
            const n = x.w.ns(ns);
            if (echo) return formatRoute(routeAdd(n, req));
            routeInstall(n, req);
          }),
        );
      }
      case 13: {
        const routes = this.b.w.ns(ns).fib.list();
        const rt: Route | undefined = routes.length && r.chance(0.85) ? r.pick(routes) : undefined;
        const prefix = rt ? routePrefix(rt) : aPrefix(r);
        const m = rt
          ? {
              dev: r.chance(0.5) ? rt.dev : undefined,
              via: r.chance(0.5) ? rt.via : undefined,
              metric: r.chance(0.5) ? rt.metric : undefined,
            }
          : {};
        return this.both('route del', (x) => outcome(() => formatRoute(routeDel(x.w.ns(ns), prefix, m))));
      }
      case 14: {
        // the bulk builders, which write devices and addresses in place
        const bridges = links.filter((l) => this.b.w.ns(ns).link(l)!.type === 'bridge');
        const ip = anAddress(r);
        const gw = anAddress(r);
        // the new namespace's veth pair (VethNetnsRequest)
        const pair = (name: string, port: string, mtu: number) =>
          ({ name, role: 'pod', dev: 'eth0', mac, port, portMac: mac.replace(/^02/, '06'), mtu }) as const;
        if (bridges.length && r.chance(0.5)) {
          const br = r.pick(bridges);
          const req = { ...pair(`b${k}`, `vb${k}`, 1450), ip, len: 24, gateway: gw, onlink: false };
          return this.both('bridged netns', (x) =>
            outcome(() => bridgedNetnsAdd(x.w, x.w.ns(ns), br, [req]).map((n) => n.name)),
          );
        }
        const req = {
          ...pair(`r${k}`, `cali${k}`, 1500),
          ip,
          gateway: '169.254.1.1',
          portSysctls: [{ table: 'conf', knob: 'proxy_arp', value: '1' }] as const,
        };
        return this.both('routed netns', (x) =>
          outcome(() => routedNetnsAdd(x.w, x.w.ns(ns), [req]).map((n) => n.name)),
        );
      }
      case 15: {
        const which = r.int(4);
        const key = [
          'net.ipv4.route.mtu_expires',
          'net.ipv4.route.min_pmtu',
          'net.ipv4.ip_forward',
          'net.ipv4.conf.all.rp_filter',
        ][which];
        const value = r.pick(
          [
            ['600', '5', '60'],
            ['552', '1000'],
            ['0', '1'],
            ['0', '1', '2'],
          ][which],
        );
        return this.both('sysctl', (x) => outcome(() => x.w.ns(ns).setSysctl(key, value)));
      }
      default: {
        // a path MTU learned as a socket learns it (sockets.ts: the route of the moment, then updatePmtu)
        const dst = r.pick(this.probes);
        const mtu = 500 + r.int(1100);
        return this.both('pmtu', (x, u) =>
          outcome(() => {
            const n = x.w.ns(ns);
            if (u) n.fib.forget();
            const rr = x.s.routeOutput(n, dst);
            if (!rr || 'error' in rr) return 'no route';
            return updatePmtu(n, dst, rr.route, rr.dev.mtu, mtu, x.w.now) ?? 'unchanged';
          }),
        );
      }
    }
  }

  /** the nodes n0 … n3 and their lease subnets */
  private nodes(): { nodes: string[]; subnets: string[] } {
    const nodes = this.names().filter((n) => /^n\d$/.test(n));
    return { nodes, subnets: nodes.map((_, i) => `10.${50 + i}.0`) };
  }

  /** flannel's device `fl`, up, on the nodes that have none (a write of its own before leases()) */
  leaseDevices(): string {
    const { nodes, subnets } = this.nodes();
    return this.both('lease devices', (x) =>
      nodes
        .map((name, i) => {
          const n = x.w.ns(name);
          if (n.link('fl')) return 'has';
          return outcome(() => {
            linkAdd(x.w, n, {
              type: 'vxlan',
              name: 'fl',
              mac: `0a:00:00:00:00:0${i}`,
              mtu: 1450,
              vni: 9,
              local: `10.9.9.${i + 1}`,
              dev: 'lo',
              dstport: 8472,
              learning: false,
              udpcsum: false,
            });
            addressAdd(n, 'fl', `${subnets[i]}.0`, 32);
            linkSetUp(x.w, n, 'fl', true);
          });
        })
        .join(' '),
    );
  }

  /** flannel's lease batch on the nodes with a device `fl` (leaseDevices) */
  leases(): string {
    const r = this.r;
    const { nodes, subnets } = this.nodes();
    const ownLeases = r.chance(0.5);
    return this.both('leases', (x) =>
      outcome(() => {
        const ns = nodes.map((n) => x.w.ns(n));
        if (ns.some((n) => !n.link('fl'))) return 'no device';
        const leases: LeaseRequest[] = ns.map((n, i) => ({
          routes: [
            { prefix: `${subnets[i]}.0/24`, via: `${subnets[i]}.0`, dev: 'fl', onlink: true, nl: NLM_ADD },
          ],
          neigh: {
            ip: `${subnets[i]}.0`,
            dev: 'fl',
            lladdr: n.link('fl')!.mac,
            state: 'PERMANENT',
            nl: NLM_ADD,
          },
          fdb: {
            mac: n.link('fl')!.mac,
            dev: 'fl',
            self: true,
            master: false,
            state: { permanent: true, noarp: false, reachable: false },
            dst: `10.9.9.${i + 1}`,
            nl: NLM_ADD,
          },
        }));
        return leasesInstall(x.w, ns, leases, ownLeases ? ns.map((_, i) => i) : ns.map(() => -1)).map(
          (f) => `${f.node} ${f.lease} ${f.kind} ${f.error.message}`,
        );
      }),
    );
  }

  /**
   * A write of the table through the Fib's own methods, past netlink's checks (as tests and a
   * world read from data write it): the table counts its own writes
   */
  tableWrite(): string {
    const r = this.r;
    const ns = r.pick(this.names());
    const link = r.pick(this.links(ns));
    const routes = this.b.w.ns(ns).fib.list();
    const victim = routes.length ? r.int(routes.length) : -1;
    const gone = victim >= 0 ? routes[victim].dev : link;
    const route: Route = {
      dst: 0,
      len: 0,
      type: 'unicast',
      via: r.chance(0.5) ? anAddress(r) : undefined,
      dev: link,
      proto: 'static',
      scope: 'global',
      metric: r.pick([0, 5, 50]),
      onlink: true,
    };
    const p = aPrefix(r);
    if (p !== 'default') {
      const [a, len] = p.split('/');
      route.dst = a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
      route.len = len === undefined ? 32 : Number(len);
    }
    if (route.dst % 2 ** (32 - route.len) !== 0) route.len = 32;
    const how = r.int(10);
    return this.both('table write', (x) => {
      const fib = x.w.ns(ns).fib;
      if (how < 3 && victim >= 0) fib.remove(fib.list()[victim]);
      else if (how < 6) return `removed ${fib.removeWhere((rt) => rt.dev === gone).length}`;
      else if (how === 6) fib.clear();
      else if (how === 7) fib.add({ ...route });
      else fib.insert({ ...route });
      return 'ok';
    });
  }

  /** the world saved and read back, in both (a new Stack each: nothing kept survives) */
  reload(): void {
    for (const x of [this.a, this.b]) {
      x.w = worldFromData(worldToData(x.w));
      x.s = new Stack(x.w);
    }
  }

  /** the worlds' data, and what each table handed out, equal */
  sameWorlds(what: string): void {
    assert.equal(JSON.stringify(worldToData(this.a.w)), JSON.stringify(worldToData(this.b.w)), what);
    for (const name of this.names())
      assert.equal(handedOut(this.a.w.ns(name)), handedOut(this.b.w.ns(name)), `${what}: ${name}`);
  }
}

describe('route cache: cached and uncached lookups alike on random namespaces', () => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    test(`seed ${seed}`, () => {
      const r = rng(seed);
      const p = new Part1(r);
      let before = p.fingerprint();
      let gens = p.generations();
      let moved = 0;
      for (let step = 0; step < 220; step++) {
        const what = r.int(20);
        if (what < 8) {
          // lookups, some of the same destination again (what the cache answers)
          for (let i = 0; i < 1 + r.int(6); i++) {
            const ns = r.pick(p.names());
            const dst = r.chance(0.5) ? r.pick(p.probes) : anAddress(r);
            const oif = r.chance(0.7) ? undefined : r.chance(0.8) ? r.pick(p.links(ns)) : 'nope';
            p.both(`lookup ${ns} ${dst} ${oif}`, (x, u) => p.lookup(x, u, ns, dst, oif));
          }
          continue;
        }
        if (what === 8) {
          // the clock: exceptions expire (mtu_expires 5, 60 or 600 s)
          const us = r.pick([1e6, 4e6, 30e6, 70e6, 700e6]);
          p.a.w.advance(us);
          p.b.w.advance(us);
          before = p.fingerprint();
          gens = p.generations();
          continue;
        }
        if (what === 9 && r.chance(0.3)) {
          p.reload();
          p.sameWorlds(`step ${step}: after reading back`);
          before = p.fingerprint();
          gens = p.generations();
          continue;
        }
        const did =
          what === 10 && r.chance(0.4)
            ? `leases ${r.chance(0.3) ? p.leaseDevices() : p.leases()}`
            : what === 11
              ? `table ${p.tableWrite()}`
              : p.write();
        const after = p.fingerprint();
        const now = p.generations();
        for (const [name, fp] of after) {
          if (fp === before.get(name)) continue;
          moved++;
          assert.notEqual(
            now.get(name),
            gens.get(name),
            `step ${step} (${did}): ${name}'s lookups changed, its generation did not`,
          );
        }
        before = after;
        gens = now;
        if (step % 40 === 0) p.sameWorlds(`step ${step}`);
      }
      p.sameWorlds('the end');
      // the oracle saw answers change (it is not vacuous)
      assert.ok(moved > 20, `only ${moved} changes of answers`);
    });
  }
});

describe('route cache: the generation moves with what a lookup hands out', () => {
  test("a bridge's MTU following a port that joins (its carrier unchanged)", () => {
    const w = new World('route-cache');
    const s = new Stack(w);
    const ns = netnsAdd(w, 'n0', 'node');
    const peer = netnsAdd(w, 'n1', 'node');
    linkAdd(w, ns, { type: 'bridge', name: 'br0', mac: '02:00:00:00:00:01', mtu: 1500 });
    linkSetUp(w, ns, 'br0', true);
    addressAdd(ns, 'br0', '10.0.0.1', 24);
    const veth = (port: string, end: string, mtu: number, m: number) =>
      linkAdd(w, ns, {
        type: 'veth',
        name: port,
        mac: `02:00:00:00:00:0${m}`,
        mtu,
        peer: { netns: peer, name: end, mac: `02:00:00:00:00:0${m + 1}`, mtu },
      });
    // a port that forwards: the bridge has carrier, and keeps it when a second, down port joins
    veth('p1', 'e1', 1500, 2);
    linkSetMaster(w, ns, 'p1', 'br0');
    linkSetUp(w, ns, 'p1', true);
    linkSetUp(w, peer, 'e1', true);
    veth('p2', 'e2', 1400, 4);
    const br = ns.link('br0')!;
    const rr = s.routeOutput(ns, '10.0.0.9');
    assert.ok(rr && !('error' in rr) && rr.dev === br && br.mtu === 1500 && carrierOk(br));
    const gen = ns.routeGeneration;
    linkSetMaster(w, ns, 'p2', 'br0');
    assert.equal(br.mtu, 1400);
    assert.ok(carrierOk(br), 'the carrier is unchanged: only the MTU can move the generation');
    assert.notEqual(ns.routeGeneration, gen);
  });
});

/* ------------------------------------------------------------------ part 2: walks on built clusters */

/** B's stack looks up without the cache: each lookup drops what its namespace kept */
function uncached(c: Cluster): Cluster {
  const s = c.stack;
  const lookup = s.routeOutput.bind(s);
  s.routeOutput = (ns, dst, oif) => {
    ns.fib.forget();
    return lookup(ns, dst, oif);
  };
  return c;
}

function ipCommand(r: Rng, c: Cluster, netns: string, removed: Map<string, string[]>): string {
  const ns = c.world.ns(netns);
  const links = [...ns.links.keys()].filter((l) => l !== 'lo');
  const link = r.pick(links);
  switch (r.int(6)) {
    case 0: {
      const routes = ns.fib.list();
      if (!routes.length) return 'ip route show';
      const rt = r.pick(routes);
      const text = formatRoute(rt);
      (removed.get(netns) ?? removed.set(netns, []).get(netns)!).push(text);
      return `ip route del ${text}`;
    }
    case 1: {
      const gone = removed.get(netns);
      if (!gone?.length) return 'ip route show';
      return `ip route add ${gone.splice(r.int(gone.length), 1)[0]}`;
    }
    case 2:
      return `ip link set ${link} ${r.chance(0.5) ? 'down' : 'up'}`;
    case 3:
      return `ip link set ${link} mtu ${r.pick([1500, 1450, 1400, 1200, 9000])}`;
    case 4: {
      const a = ns.link(link)!.addrs[0];
      return a ? `ip addr del ${a.ip}/${a.len} dev ${link}` : `ip link set ${link} up`;
    }
    default:
      return `ip route replace 10.${200 + r.int(3)}.0.0/16 dev ${link}`;
  }
}

describe('route cache: walks alike with and without it', () => {
  const modes: CniMode[] = ['flannel-vxlan', 'calico-bgp', 'calico-ipip'];
  for (const mode of modes)
    for (const seed of [11, 12]) {
      test(`${mode}, seed ${seed}`, () => {
        const r = rng(seed);
        const a = buildCluster(seedCluster(), mode);
        const b = uncached(buildCluster(seedCluster(), mode));
        const pods = a.spec.pods.map((p) => p.name);
        const ends = [...pods, ...a.spec.nodes.map((n) => n.ip.split('/')[0])];
        const names = [...a.world.netns.keys()];
        const removed = new Map<string, string[]>();
        let sport = 30000;
        for (let step = 0; step < 60; step++) {
          const what = r.int(10);
          if (what < 6) {
            const req = {
              from: r.pick(pods),
              to: r.pick(ends),
              proto: r.pick(['tcp', 'udp', 'icmp'] as const),
              port: r.pick([8080, 53, 9]),
              size: r.chance(0.3) ? r.pick([1400, 1480, 2000, 4000]) : undefined,
              df: r.chance(0.3) ? r.chance(0.5) : undefined,
              sport: sport++,
            };
            const run = (c: Cluster) => {
              try {
                return JSON.stringify(walk(c, req).traces);
              } catch (e) {
                return `error ${(e as Error).message}`;
              }
            };
            assert.equal(run(a), run(b), `step ${step}: walk ${JSON.stringify(req)}`);
          } else if (what < 9) {
            const netns = r.pick(names);
            // the command is made from A's state; B gets the same text
            const cmd = ipCommand(r, a, netns, removed);
            const ra = runCommand(a, netns, cmd);
            const rb = runCommand(b, netns, cmd);
            assert.deepEqual(ra, rb, `step ${step}: ${netns}: ${cmd}`);
          } else {
            const us = r.pick([1e5, 2e6, 40e6]);
            a.world.advance(us);
            b.world.advance(us);
          }
        }
        assert.equal(JSON.stringify(worldToData(a.world)), JSON.stringify(worldToData(b.world)));
        for (const name of names)
          assert.equal(a.world.ns(name).routeGeneration, b.world.ns(name).routeGeneration, name);
      });
    }
});
