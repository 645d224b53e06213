/**
 * A FIB of up to 8 routes keeps them in lists of their exact length with a SlotList (the small
 * form: a pod's namespace has two routes), a bigger one in typed arrays with a SlotHash (the large
 * form). Both must answer alike: two namespaces set up alike, one whose table was made large first
 * (9 routes put in and taken out again), get the same random route operations through netlink (add,
 * replace, append, prepend, del, with the kernel's refusals) and on the table itself (objects kept
 * by `add`, with metrics a typed array stores as uint32, removals, a device's routes at once), and
 * after each one: the same error or none, `ip route` output, list() objects to their keys' order,
 * lookups, matches, find and aliases, and the world's snapshot (worldToData) to the byte. Then both
 * grow past 8 (the small one changes form on the way) and go on alike. FIB_FORMS_SEED=S runs one seed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Fib, formatRoute, type Route, type RouteProto } from '../src/kernel/fib.ts';
import {
  addressAdd,
  linkAdd,
  linkSetUp,
  netnsAdd,
  NetlinkError,
  routeAdd,
  routeDel,
  type RouteRequest,
} from '../src/kernel/netlink.ts';
import type { Netns } from '../src/kernel/objects.ts';
import { worldToData } from '../src/kernel/snapshot.ts';
import { seededRandom, World } from '../src/kernel/world.ts';
import { intToIp4, ip4ToInt, prefixMask } from '../src/wire/addr.ts';

const SEEDS = process.env.FIB_FORMS_SEED
  ? [Number(process.env.FIB_FORMS_SEED)]
  : Array.from({ length: 60 }, (_, i) => i + 1);

/** which form a table is in (a private field read: the test must know it compares two forms) */
const large = (f: Fib) => (f as unknown as { rows: unknown }).rows instanceof Uint32Array;

function setup(widen: boolean): { w: World; n: Netns } {
  const w = new World('forms');
  const n = netnsAdd(w, 'node1', 'node');
  linkAdd(w, n, { type: 'bridge', name: 'eth0', mac: '02:00:00:00:00:01', mtu: 1500 });
  linkAdd(w, n, { type: 'bridge', name: 'cni0', mac: '02:00:00:00:00:02', mtu: 1450 });
  linkSetUp(w, n, 'eth0', true);
  linkSetUp(w, n, 'cni0', true);
  addressAdd(n, 'eth0', '192.168.1.10', 24);
  if (widen) {
    const filler = (i: number): Route => ({
      dst: ip4ToInt(`203.0.113.${i}`),
      len: 32,
      type: 'unicast',
      dev: 'eth0',
      proto: 'static',
      scope: 'global',
      metric: 0,
      onlink: false,
    });
    for (let i = 0; i < 9; i++) n.fib.insert(filler(i));
    for (let i = 0; i < 9; i++) n.fib.remove(filler(i));
  }
  return { w, n };
}

/** a few nested networks, so that prefixes overlap, share a prefix and its metric */
const BASES = ['10.244.0.0', '10.244.1.0', '192.168.1.0', '0.0.0.0'].map(ip4ToInt);
const LENS = [0, 8, 16, 24, 24, 25, 32];
const METRICS = [0, 0, 5, 100];
const PROTOS: readonly RouteProto[] = ['boot', 'static', 'kernel', 'bird'];

type Op = { what: string; run: (n: Netns) => unknown };

function randomOps(seed: number, count: number): Op[] {
  const rnd = seededRandom(seed);
  const int = (k: number) => Math.floor(rnd() * k);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const prefix = () => {
    const len = pick(LENS);
    const addr = ((pick(BASES) | int(256)) & prefixMask(len)) >>> 0;
    // a prefix with host bits set now and then: EINVAL
    const shown = rnd() < 0.05 ? (addr | 1) >>> 0 : addr;
    return len === 0 && rnd() < 0.5 ? 'default' : `${intToIp4(shown)}/${len}`;
  };
  const request = (): Omit<RouteRequest, 'nl'> => {
    const r: Omit<RouteRequest, 'nl'> = { prefix: prefix() };
    const kind = rnd();
    if (kind < 0.1) r.type = pick(['blackhole', 'unreachable', 'prohibit'] as const);
    else if (kind < 0.5) r.via = pick(['192.168.1.1', '192.168.1.11', '10.9.9.9']);
    else r.dev = pick(['eth0', 'cni0', 'nosuch0']);
    if (rnd() < 0.5) r.metric = pick(METRICS);
    if (rnd() < 0.3) r.proto = pick(PROTOS);
    return r;
  };
  const ops: Op[] = [];
  for (let i = 0; i < count; i++) {
    const roll = rnd();
    if (roll < 0.45) {
      const r = request();
      const nl = pick([
        { create: true, excl: true, replace: false, append: false },
        { create: true, excl: false, replace: true, append: false },
        { create: true, excl: false, replace: false, append: true },
        { create: true, excl: false, replace: false, append: false },
        { create: false, excl: false, replace: true, append: false },
      ]);
      ops.push({
        what: `route add ${JSON.stringify(r)} ${JSON.stringify(nl)}`,
        run: (n) => routeAdd(n, { ...r, nl }),
      });
    } else if (roll < 0.7) {
      const p = prefix();
      const m = rnd() < 0.5 ? { metric: pick(METRICS) } : {};
      ops.push({ what: `route del ${p} ${JSON.stringify(m)}`, run: (n) => routeDel(n, p, m) });
    } else if (roll < 0.8) {
      // an object the table keeps as given, with a metric a typed array stores as uint32
      const len = pick(LENS);
      const r: Route = {
        dst: ((pick(BASES) | int(256)) & prefixMask(len)) >>> 0,
        len,
        type: 'unicast',
        dev: pick(['eth0', 'cni0']),
        proto: 'static',
        scope: 'global',
        metric: pick([0, 7, -1, 2 ** 32 + 3, 1.5, 2 ** 31]),
        onlink: rnd() < 0.5,
      };
      ops.push({ what: `fib.add ${JSON.stringify(r)}`, run: (n) => n.fib.add({ ...r }) });
    } else if (roll < 0.9) {
      // a route removed by its values (the first row of them), or one that is not there
      const k = int(20);
      ops.push({
        what: `fib.remove list()[${k}]`,
        run: (n) => {
          const r = n.fib.list()[k];
          if (r) n.fib.remove({ ...r });
        },
      });
    } else {
      const dev = pick(['eth0', 'cni0']);
      ops.push({
        what: `fib.removeWhere dev ${dev}`,
        run: (n) => n.fib.removeWhere((r) => r.dev === dev).map((r) => formatRoute(r)),
      });
    }
  }
  return ops;
}

/** what an operation did: its value or its error, as text */
function outcome(op: Op, n: Netns): string {
  try {
    const v = op.run(n);
    return `ok ${JSON.stringify(v === undefined ? null : v)}`;
  } catch (e) {
    if (e instanceof NetlinkError) return `netlink ${e.code} ${e.extack ?? ''} ${e.message}`;
    throw e;
  }
}

/** everything the table shows: listing, lookups, matches, find and aliases */
function answers(n: Netns, seed: number): string[] {
  const f = n.fib;
  const out: string[] = [
    JSON.stringify(f.list()),
    f
      .list()
      .map((r) => formatRoute(r))
      .join('\n'),
    String(f.size),
  ];
  const rnd = seededRandom(seed);
  for (let i = 0; i < 24; i++) {
    const addr = ((BASES[Math.floor(rnd() * BASES.length)] | Math.floor(rnd() * 65536)) >>> 0) ^ (i & 1);
    out.push(JSON.stringify(f.peek(addr) ?? null));
    out.push(JSON.stringify(f.peek(addr, (r) => r.dev !== 'cni0') ?? null));
    const m = f.match(addr, (r) => r.type === 'unicast');
    out.push(m ? `${m.dst}/${m.len} ${m.type} ${m.via} ${m.dev} ${JSON.stringify(m.route())}` : 'none');
  }
  for (const r of f.list()) {
    out.push(
      JSON.stringify(f.find(r.dst, r.len) ?? null),
      JSON.stringify(f.find(r.dst, r.len, r.metric) ?? null),
    );
    out.push(JSON.stringify(f.aliases(r.dst, r.len)), JSON.stringify(f.aliases(r.dst, r.len, 5)));
  }
  return out;
}

function compare(seed: number): { small: number; widened: boolean } {
  const s = setup(false);
  const l = setup(true);
  assert.ok(large(l.n.fib), 'the table made large is in the large form');
  let small = 0;
  let widened = false;
  const step = (op: Op, k: number, ctx: string) => {
    const a = outcome(op, s.n);
    const b = outcome(op, l.n);
    const where = `seed ${seed} (FIB_FORMS_SEED=${seed}) ${ctx} op ${k} ${op.what}`;
    assert.equal(a, b, `${where}: outcome`);
    assert.deepEqual(
      answers(s.n, seed * 1000 + k),
      answers(l.n, seed * 1000 + k),
      `${where}: the tables' answers`,
    );
    assert.equal(JSON.stringify(worldToData(s.w)), JSON.stringify(worldToData(l.w)), `${where}: worldToData`);
    if (!large(s.n.fib)) small++;
    else widened = true;
  };
  // a pod's size: at most 8 routes in the small table
  randomOps(seed, 60).forEach((op, k) => {
    if (s.n.fib.size >= 8 && op.what.startsWith('route add')) return;
    if (s.n.fib.size >= 8 && op.what.startsWith('fib.add')) return;
    step(op, k, 'small');
  });
  // then beyond: the small one changes form on the way
  randomOps(seed + 7919, 80).forEach((op, k) => step(op, k, 'growing'));
  return { small, widened };
}

test('the small and the large FIB answer alike over random route operations', () => {
  let small = 0;
  let widened = 0;
  for (const seed of SEEDS) {
    const r = compare(seed);
    small += r.small;
    if (r.widened) widened++;
  }
  // the comparison really had a small table against a large one, and tables that changed form
  assert.ok(small > SEEDS.length * 20, `steps with the small form: ${small}`);
  assert.ok(widened > 0, 'no small table grew past its form');
});

test('a table changes form past 8 routes and keeps every route and its order', () => {
  const f = new Fib();
  const routes: Route[] = [];
  for (let i = 0; i < 20; i++) {
    const r: Route = {
      dst: ip4ToInt(`10.244.${(i * 7) % 20}.0`),
      len: 24,
      type: 'unicast',
      dev: 'eth0',
      proto: 'static',
      scope: 'global',
      metric: i % 3,
      onlink: false,
    };
    f.insert(r);
    routes.push(r);
    assert.equal(large(f), i >= 8, `after ${i + 1} routes`);
  }
  const want = [...routes].sort((a, b) => a.dst - b.dst || a.metric - b.metric);
  assert.deepEqual(f.list(), want);
  for (const r of routes) assert.deepEqual(f.find(r.dst, r.len, r.metric), r);
  f.clear();
  assert.equal(large(f), false, 'a cleared table is small again');
});
