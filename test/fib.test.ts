import { seededRandom } from '../src/kernel/world.ts';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Fib, formatRoute, routePrefix } from '../src/kernel/fib.ts';
import type { Route, RouteProto, RouteType } from '../src/kernel/fib.ts';
import type { Errno } from '../src/kernel/errno.ts';
import {
  addressAdd,
  linkAdd,
  linkSetUp,
  netnsAdd,
  NetlinkError,
  NLM_ADD,
  routeAdd,
  routeDel,
  type RouteRequest,
} from '../src/kernel/netlink.ts';
import type { Netns } from '../src/kernel/objects.ts';
import { World } from '../src/kernel/world.ts';
import { intToIp4, ip4ToInt, parseCidr, prefixMask } from '../src/wire/addr.ts';

class Rng {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = seededRandom(seed);
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  u32(): number {
    return (this.int(0x10000) * 0x10000 + this.int(0x10000)) >>> 0;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

const mask = (addr: number, len: number) => (addr & prefixMask(len)) >>> 0;
const contains = (r: Route, addr: number) => mask(addr, r.len) === r.dst;

function route(prefix: string, o: Partial<Route> = {}): Route {
  const c =
    prefix === 'default' ? { addr: 0, len: 0 } : parseCidr(prefix.includes('/') ? prefix : `${prefix}/32`);
  const dst = c.addr;
  const len = c.len;
  return { dst, len, type: 'unicast', proto: 'boot', scope: 'global', metric: 0, onlink: false, ...o };
}

const describeRoute = (r: Route | undefined) =>
  r ? `${routePrefix(r)} metric ${r.metric} dev ${r.dev ?? '-'}` : 'none';

/** `ip route show` order, as checked on Linux: network address ascending, longer prefix first, lower metric first */
const ipRouteOrder = (a: Route, b: Route) => a.dst - b.dst || b.len - a.len || a.metric - b.metric;

/**
 * The reference lookup: among usable routes containing addr, the longest prefix, then the lowest
 * metric. Ties on both (the same prefix and metric twice, which addRoute refuses but Fib accepts)
 * have no documented winner, so the result is a set of equally good routes.
 */
function bruteForce(routes: readonly Route[], addr: number, usable: (r: Route) => boolean): Route[] {
  let best: Route[] = [];
  for (const r of routes) {
    if (!usable(r) || !contains(r, addr)) continue;
    const b = best[0];
    if (!b || r.len > b.len || (r.len === b.len && r.metric < b.metric)) best = [r];
    else if (r.len === b.len && r.metric === b.metric) best.push(r);
  }
  return best;
}

const DEVS = ['eth0', 'eth1', 'cni0', 'flannel.1', 'tunl0', 'cali1234'] as const;
const METRICS = [0, 0, 0, 5, 100, 1024] as const;
const PROTOS: readonly RouteProto[] = ['boot', 'kernel', 'static', 'bird'];

function randomRoute(rng: Rng, bases: readonly number[]): Route {
  // a few base networks, varied in their low bits only, so that prefixes nest and overlap a lot
  const base = rng.pick(bases);
  const varyFrom = rng.pick([8, 16, 20, 24, 28, 32]);
  const addr = (base ^ (rng.u32() & ~prefixMask(varyFrom))) >>> 0;
  const len = rng.chance(0.6) ? rng.pick([0, 8, 16, 20, 24, 24, 26, 28, 32]) : rng.int(33);
  const type: RouteType = rng.chance(0.05) ? 'blackhole' : 'unicast';
  const r: Route = {
    dst: mask(addr, len),
    len,
    type,
    proto: rng.pick(PROTOS),
    scope: 'global',
    metric: rng.pick(METRICS),
    onlink: false,
  };
  if (type === 'unicast') r.dev = rng.pick(DEVS);
  return r;
}

function randomAddress(rng: Rng, live: readonly Route[], bases: readonly number[]): number {
  const roll = rng.next();
  if (roll < 0.7 && live.length) {
    const r = rng.pick(live);
    // inside r; sometimes right at its edges
    const host = rng.chance(0.2) ? rng.pick([0, 0xffffffff]) : rng.u32();
    return (r.dst | (host & ~prefixMask(r.len))) >>> 0;
  }
  if (roll < 0.9) return (rng.pick(bases) ^ (rng.u32() & 0xffff)) >>> 0;
  return rng.u32();
}

interface TableResult {
  lookups: number;
  hits: number;
}

function checkTable(seed: number): TableResult {
  const rng = new Rng(seed);
  const ctx = `seed ${seed} (replay: FIB_SEED=${seed} FIB_TABLES=1)`;
  const bases = [0, ip4ToInt('10.244.0.0'), ip4ToInt('192.168.1.0'), rng.u32(), rng.u32()];
  const down = new Set<string>(DEVS.filter(() => rng.chance(0.3)));
  const usable = (r: Route) => r.dev === undefined || !down.has(r.dev);
  const fib = new Fib();
  /** the model: live routes, in insertion order */
  let live: Route[] = [];
  const removed: Route[] = [];
  const n = 1 + rng.int(300);
  let lookups = 0;
  let hits = 0;

  const query = (count: number) => {
    for (let i = 0; i < count; i++) {
      const addr = randomAddress(rng, live, bases);
      const got = fib.lookup(addr, usable);
      const want = bruteForce(live, addr, usable);
      lookups++;
      const where = `${ctx}: lookup(${intToIp4(addr)}) among ${live.length} routes, down ${[...down].join(',') || '-'}`;
      if (!want.length) {
        assert.equal(got, undefined, `${where}: expected no route, got ${describeRoute(got)}`);
        continue;
      }
      hits++;
      assert.ok(got, `${where}: expected ${describeRoute(want[0])}, got none`);
      assert.deepEqual(
        { dst: intToIp4(got.dst), len: got.len, metric: got.metric },
        { dst: intToIp4(want[0].dst), len: want[0].len, metric: want[0].metric },
        `${where}: got ${describeRoute(got)}, expected ${describeRoute(want[0])}`,
      );
      // whichever of equally good routes it picks, it must be a live, usable one containing addr
      assert.ok(
        want.includes(got),
        `${where}: ${describeRoute(got)} is not a live usable route containing it`,
      );
    }
  };

  const checkList = () => {
    const list = fib.list();
    assert.equal(list.length, live.length, `${ctx}: list() length`);
    const key = (r: Route) => `${routePrefix(r)} metric ${r.metric}`;
    assert.deepEqual(list.map(key), [...live].sort(ipRouteOrder).map(key), `${ctx}: list() order`);
    assert.deepEqual(new Set(list), new Set(live), `${ctx}: list() holds exactly the live routes`);
  };

  for (let i = 0; i < n; i++) {
    const r = removed.length && rng.chance(0.1) ? removed.splice(rng.int(removed.length), 1)[0] : null;
    const add = r ?? randomRoute(rng, bases);
    fib.add(add);
    live.push(add);
    if (live.length > 1 && rng.chance(0.15)) {
      const victim = rng.pick(live);
      fib.remove(victim);
      live = live.filter((x) => x !== victim);
      removed.push(victim);
    }
    if (rng.chance(0.01)) {
      // a device set down: all its routes go at once (fib_disable_ip)
      const dev = rng.pick(DEVS);
      const gone = fib.removeWhere((x) => x.dev === dev);
      assert.deepEqual(new Set(gone), new Set(live.filter((x) => x.dev === dev)), `${ctx}: removeWhere`);
      live = live.filter((x) => x.dev !== dev);
    }
    if (i === n >> 1) query(100);
  }

  checkList();
  query(500);

  // find(): some route with exactly that prefix (and metric), or none when the table has none
  for (let i = 0; i < 50; i++) {
    const probe = live.length && rng.chance(0.8) ? rng.pick(live) : randomRoute(rng, bases);
    const withMetric = fib.find(probe.dst, probe.len, probe.metric);
    const same = live.filter((x) => x.dst === probe.dst && x.len === probe.len);
    assert.equal(
      withMetric !== undefined,
      same.some((x) => x.metric === probe.metric),
      `${ctx}: find`,
    );
    if (withMetric)
      assert.ok(same.includes(withMetric) && withMetric.metric === probe.metric, `${ctx}: find`);
    const any = fib.find(probe.dst, probe.len);
    assert.equal(any !== undefined, same.length > 0, `${ctx}: find without metric`);
    if (any) assert.ok(same.includes(any), `${ctx}: find without metric`);
  }

  // removing everything leaves an empty table that finds nothing
  for (const r of [...live]) fib.remove(r);
  live = [];
  assert.equal(fib.list().length, 0, `${ctx}: list() after removing all`);
  query(20);
  return { lookups, hits };
}

describe('Fib.lookup against a brute-force scan', () => {
  const base = Number(process.env.FIB_SEED ?? 0x5eed);
  const tables = Number(process.env.FIB_TABLES ?? 250);

  test(`${tables} random tables from seed ${base}`, () => {
    let lookups = 0;
    let hits = 0;
    for (let t = 0; t < tables; t++) {
      const res = checkTable((base + t) >>> 0);
      lookups += res.lookups;
      hits += res.hits;
    }
    // the generator must exercise matches, not only misses
    assert.ok(lookups >= tables * 600, `only ${lookups} lookups`);
    assert.ok(hits > lookups / 2, `only ${hits} of ${lookups} lookups matched a route`);
  });

  test('skips unusable routes and falls back to shorter prefixes', () => {
    const fib = new Fib();
    const def = route('default', { via: '192.168.1.1', dev: 'eth0' });
    const wide = route('10.0.0.0/8', { dev: 'eth1' });
    const narrow = route('10.1.0.0/16', { dev: 'flannel.1' });
    const backup = route('10.1.0.0/16', { dev: 'tunl0', metric: 100 });
    for (const r of [def, wide, narrow, backup]) fib.add(r);
    const addr = ip4ToInt('10.1.2.3');
    assert.equal(fib.lookup(addr), narrow);
    assert.equal(
      fib.lookup(addr, (r) => r.dev !== 'flannel.1'),
      backup,
    );
    assert.equal(
      fib.lookup(addr, (r) => r.dev !== 'flannel.1' && r.dev !== 'tunl0'),
      wide,
    );
    assert.equal(
      fib.lookup(addr, (r) => r.dev === 'eth0'),
      def,
    );
    assert.equal(
      fib.lookup(addr, () => false),
      undefined,
    );
    assert.equal(
      fib.lookup(ip4ToInt('11.0.0.1'), (r) => r.len > 0),
      undefined,
    );
  });

  test('a lower metric wins on the same prefix whatever the insertion order', () => {
    for (const order of [
      [0, 1, 2],
      [2, 1, 0],
      [1, 2, 0],
    ]) {
      const fib = new Fib();
      const rs = [100, 5, 1024].map((metric) => route('10.244.1.0/24', { dev: `d${metric}`, metric }));
      for (const i of order) fib.add(rs[i]);
      assert.equal(fib.lookup(ip4ToInt('10.244.1.9'))?.metric, 5, `order ${order}`);
      fib.remove(rs[1]);
      assert.equal(fib.lookup(ip4ToInt('10.244.1.9'))?.metric, 100, `order ${order} after removing metric 5`);
    }
  });

  test('/32 and /0 at the edges of the address space', () => {
    const fib = new Fib();
    const def = route('default', { dev: 'eth0' });
    const top = route('255.255.255.255', { dev: 'eth1' });
    const zero = route('0.0.0.0/32', { dev: 'eth1' });
    for (const r of [def, top, zero]) fib.add(r);
    assert.equal(fib.lookup(0xffffffff), top);
    assert.equal(fib.lookup(0xfffffffe), def);
    assert.equal(fib.lookup(0), zero);
    assert.equal(fib.lookup(1), def);
  });
});

describe('Fib.list order is `ip route show` order', () => {
  const expected = [
    'default via 192.168.1.1 dev eth0',
    '9.0.0.0/8 dev eth1 scope link',
    '10.0.0.0/24 dev cni0 scope link',
    '10.0.0.0/24 dev eth1 scope link metric 5',
    '10.0.0.0/16 dev eth1 scope link',
    '10.0.0.0/8 dev eth1 scope link',
    '10.0.0.5 dev cali1 scope link',
    '10.0.1.0/24 via 192.168.1.11 dev eth0 proto bird',
    '192.168.1.0/24 dev eth0 proto kernel scope link src 192.168.1.10',
  ];
  const routes = (): Route[] => [
    route('default', { via: '192.168.1.1', dev: 'eth0' }),
    route('9.0.0.0/8', { dev: 'eth1', scope: 'link' }),
    route('10.0.0.0/24', { dev: 'cni0', scope: 'link' }),
    route('10.0.0.0/24', { dev: 'eth1', scope: 'link', metric: 5 }),
    route('10.0.0.0/16', { dev: 'eth1', scope: 'link' }),
    route('10.0.0.0/8', { dev: 'eth1', scope: 'link' }),
    route('10.0.0.5', { dev: 'cali1', scope: 'link' }),
    route('10.0.1.0/24', { via: '192.168.1.11', dev: 'eth0', proto: 'bird' }),
    route('192.168.1.0/24', { dev: 'eth0', proto: 'kernel', scope: 'link', src: '192.168.1.10' }),
  ];

  test('whatever the insertion order', () => {
    const rng = new Rng(42);
    for (let i = 0; i < 50; i++) {
      const rs = routes();
      // Fisher-Yates
      for (let j = rs.length - 1; j > 0; j--) {
        const k = rng.int(j + 1);
        [rs[j], rs[k]] = [rs[k], rs[j]];
      }
      const fib = new Fib();
      for (const r of rs) fib.add(r);
      const order = rs.map((r) => formatRoute(r)).join(' | ');
      assert.deepEqual(
        fib.list().map((r) => formatRoute(r)),
        expected,
        `inserted as ${order}`,
      );
    }
  });

  test('and after removals', () => {
    const fib = new Fib();
    const rs = routes();
    for (const r of rs) fib.add(r);
    fib.remove(rs[4]);
    fib.remove(rs[0]);
    assert.deepEqual(
      fib.list().map((r) => formatRoute(r)),
      expected.filter((_, i) => i !== 4 && i !== 0),
    );
  });
});

describe('formatRoute prints what `ip route` prints', () => {
  const cases: [Route, string, boolean?][] = [
    [
      route('10.244.1.0/24', { via: '10.244.1.0', dev: 'flannel.1', onlink: true }),
      '10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink',
    ],
    [
      route('10.244.0.0/24', { dev: 'cni0', proto: 'kernel', scope: 'link', src: '10.244.0.1' }),
      '10.244.0.0/24 dev cni0 proto kernel scope link src 10.244.0.1',
    ],
    [
      route('10.244.1.0/24', { via: '192.168.1.11', dev: 'eth0', proto: 'bird' }),
      '10.244.1.0/24 via 192.168.1.11 dev eth0 proto bird',
    ],
    [route('default', { via: '192.168.1.1', dev: 'eth0' }), 'default via 192.168.1.1 dev eth0'],
    [
      route('default', { via: '192.168.1.1', dev: 'eth0', proto: 'dhcp', src: '192.168.1.10', metric: 100 }),
      'default via 192.168.1.1 dev eth0 proto dhcp src 192.168.1.10 metric 100',
    ],
    [route('10.244.2.0/26', { type: 'blackhole', proto: 'bird' }), 'blackhole 10.244.2.0/26 proto bird'],
    [
      route('10.244.0.7', { dev: 'cali0a1b2c3d4e5', scope: 'link' }),
      '10.244.0.7 dev cali0a1b2c3d4e5 scope link',
    ],
    [
      route('10.244.0.0/24', { dev: 'cni0', proto: 'kernel', scope: 'link', src: '10.244.0.1' }),
      '10.244.0.0/24 dev cni0 proto kernel scope link src 10.244.0.1 linkdown',
      true,
    ],
  ];
  for (const [r, want, linkdown] of cases)
    test(want, () => {
      assert.equal(formatRoute(r, linkdown), want);
    });
});

/**
 * The netlink route operations against the kernel: each expectation is what a 6.18 kernel answered
 * in a namespace holding the same devices (`ip route add/del/replace`, errno and extack).
 */
describe('netlink route operations', () => {
  /** a namespace with eth0 192.168.1.10/24 (up) and cni0 10.244.0.1/24 (down), both bridges */
  function setup(): { w: World; n: Netns } {
    const w = new World('t');
    const n = netnsAdd(w, 'node1', 'node');
    linkAdd(w, n, { type: 'bridge', name: 'eth0', mac: '02:00:00:00:00:01', mtu: 1500 });
    linkAdd(w, n, { type: 'bridge', name: 'cni0', mac: '02:00:00:00:00:02', mtu: 1450 });
    linkSetUp(w, n, 'eth0', true);
    addressAdd(n, 'eth0', '192.168.1.10', 24);
    addressAdd(n, 'cni0', '10.244.0.1', 24);
    return { w, n };
  }
  const add = (n: Netns, r: Omit<RouteRequest, 'nl'>) => routeAdd(n, { ...r, nl: NLM_ADD });
  const replace = (n: Netns, r: Omit<RouteRequest, 'nl'>) =>
    routeAdd(n, { ...r, nl: { create: true, excl: false, replace: true, append: false } });
  const shown = (n: Netns) => n.fib.list().map((r) => formatRoute(r));
  const refused = (code: Errno, extack?: string) => (e: unknown) => {
    assert.ok(e instanceof NetlinkError, `expected a NetlinkError, got ${String(e)}`);
    assert.equal(e.code, code);
    assert.equal(e.extack, extack);
    return true;
  };

  test('an address on an up device brings its connected route; bringing a device up adds its own', () => {
    const { w, n } = setup();
    assert.deepEqual(shown(n), ['192.168.1.0/24 dev eth0 proto kernel scope link src 192.168.1.10']);
    linkSetUp(w, n, 'cni0', true);
    assert.deepEqual(shown(n), [
      '10.244.0.0/24 dev cni0 proto kernel scope link src 10.244.0.1',
      '192.168.1.0/24 dev eth0 proto kernel scope link src 192.168.1.10',
    ]);
  });

  test('routeAdd resolves the device from the gateway and sets kernel defaults', () => {
    const { n } = setup();
    const r = add(n, { prefix: 'default', via: '192.168.1.1' });
    assert.equal(formatRoute(r), 'default via 192.168.1.1 dev eth0');
    assert.equal(r.scope, 'global');
    assert.equal(r.proto, 'boot');
    assert.equal(
      formatRoute(add(n, { prefix: '10.9.0.0/16', dev: 'eth0' })),
      '10.9.0.0/16 dev eth0 scope link',
    );
    assert.equal(n.fib.lookup(ip4ToInt('8.8.8.8')), r);
  });

  test('routeAdd errors are the kernel’s', () => {
    const { n } = setup();
    add(n, { prefix: '10.1.0.0/16', via: '192.168.1.1', dev: 'eth0' });
    assert.throws(
      () => add(n, { prefix: '10.1.0.0/16', via: '192.168.1.2', dev: 'eth0' }),
      refused('EEXIST'),
    );
    // a different metric is a different route
    add(n, { prefix: '10.1.0.0/16', via: '192.168.1.2', dev: 'eth0', metric: 10 });
    assert.throws(
      () => add(n, { prefix: '10.2.0.0/16', via: '172.16.0.1' }),
      refused('ENETUNREACH', 'Nexthop has invalid gateway'),
    );
    assert.throws(
      () => add(n, { prefix: '10.2.0.0/16', via: '172.16.0.1', dev: 'eth0' }),
      refused('ENETUNREACH', 'Nexthop has invalid gateway'),
    );
    assert.throws(() => add(n, { prefix: '10.2.0.0/16' }), refused('ENODEV'));
    assert.throws(() => add(n, { prefix: '10.2.0.0/16', dev: 'nope0' }), refused('ENODEV'));
    assert.throws(
      () => add(n, { prefix: '10.2.0.0/16', dev: 'cni0' }),
      refused('ENETDOWN', 'Device for nexthop is not up'),
    );
    // onlink skips the gateway check, not the device's state
    assert.throws(
      () => add(n, { prefix: '10.244.1.0/24', via: '10.244.1.0', dev: 'cni0', onlink: true }),
      refused('ENETDOWN', 'Nexthop device is not up'),
    );
    add(n, { prefix: '10.244.1.0/24', via: '10.244.1.0', dev: 'eth0', onlink: true });
    assert.deepEqual(shown(n), [
      '10.1.0.0/16 via 192.168.1.1 dev eth0',
      '10.1.0.0/16 via 192.168.1.2 dev eth0 metric 10',
      '10.244.1.0/24 via 10.244.1.0 dev eth0 onlink',
      '192.168.1.0/24 dev eth0 proto kernel scope link src 192.168.1.10',
    ]);
  });

  test('replace swaps the route of the same prefix and metric', () => {
    const { n } = setup();
    replace(n, { prefix: '10.1.0.0/16', via: '192.168.1.1', dev: 'eth0' });
    replace(n, { prefix: '10.1.0.0/16', via: '192.168.1.2', dev: 'eth0' });
    assert.deepEqual(shown(n).slice(0, 1), ['10.1.0.0/16 via 192.168.1.2 dev eth0']);
    assert.equal(n.fib.list().length, 2);
  });

  test('routeDel removes the lowest-metric match (metric 0: any) and answers ESRCH when none', () => {
    const { n } = setup();
    add(n, { prefix: '10.1.0.0/16', via: '192.168.1.1', dev: 'eth0', metric: 10 });
    add(n, { prefix: '10.1.0.0/16', via: '192.168.1.2', dev: 'eth0' });
    assert.equal(routeDel(n, '10.1.0.0/16', {}).via, '192.168.1.2');
    assert.throws(() => routeDel(n, '10.1.0.0/16', { via: '192.168.1.2' }), refused('ESRCH'));
    assert.equal(routeDel(n, '10.1.0.0/16', { metric: 0 }).metric, 10);
    assert.throws(() => routeDel(n, '10.1.0.0/16', {}), refused('ESRCH'));
    assert.throws(() => routeDel(n, 'default', {}), refused('ESRCH'));
  });

  test('a device set down loses its IPv4 routes', () => {
    const { w, n } = setup();
    add(n, { prefix: 'default', via: '192.168.1.1', dev: 'eth0' });
    linkSetUp(w, n, 'eth0', false);
    assert.deepEqual(shown(n), []);
    assert.equal(n.fib.lookup(ip4ToInt('8.8.8.8')), undefined);
  });

  test('a prefix with host bits set is refused, as the kernel does', () => {
    const { n } = setup();
    assert.throws(
      () => add(n, { prefix: '10.1.2.3/16', dev: 'eth0' }),
      refused('EINVAL', 'Invalid prefix for given prefix length'),
    );
  });
});

test('a frozen route that insert cannot keep in its columns is copied: what is written to it later is the table’s alone', () => {
  // (a batch's namespaces share frozen routes, netlink.ts; a metric that is no u32 is kept as an object)
  const shared = Object.freeze(route('10.244.0.0/24', { dev: 'eth0', metric: -1 }));
  const a = new Fib();
  const b = new Fib();
  a.insert(shared);
  b.insert(shared);
  const [ra] = a.list();
  const [rb] = b.list();
  assert.notEqual(ra, shared);
  assert.notEqual(ra, rb);
  assert.deepEqual({ ...ra }, { ...shared });
  // a PMTU exception hangs off the route (pmtu.ts): written to one table's, not the other's
  ra.exceptions = [];
  assert.equal(rb.exceptions, undefined);
  // add keeps the object given, frozen or not
  const c = new Fib();
  c.add(shared);
  assert.equal(c.list()[0], shared);
  // insert keeps none, unfrozen either, nor its PMTU exceptions (pmtu.ts updates one in place)
  const given = route('10.244.1.0/24', { dev: 'eth0', metric: -1 });
  given.exceptions = [{ dst: '10.244.1.5', mtu: 1400, expires: 5, locked: false }];
  const d = new Fib();
  d.insert(given);
  const [rd] = d.list();
  assert.notEqual(rd, given);
  assert.deepEqual(rd, given);
  assert.notEqual(rd.exceptions![0], given.exceptions[0]);
});
