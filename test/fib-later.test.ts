/**
 * Fib.insertLater queues a new namespace's routes and puts them at the table's first use (a
 * pod's two routes: most pods' tables are never read). Whatever is asked first, the answer and
 * the table after it must be what inserting them at once gives. Two tables get the same random
 * routes, one by insert() one by one, the other by insertLater (once, or twice: the queues
 * joined); then each method of the table is the first thing asked of them (every method, every
 * seed), with the answers compared, then random writes and reads interleaved (more routes queued
 * on the way), and after every step the whole table: generation, sizes, list(), scan() rows,
 * lookups, matches. FIB_LATER_SEED=S runs one seed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Fib, type Route, type RouteRow } from '../src/kernel/fib.ts';
import { seededRandom } from '../src/kernel/world.ts';
import { ip4ToInt, prefixMask } from '../src/wire/addr.ts';

const SEEDS = process.env.FIB_LATER_SEED
  ? [Number(process.env.FIB_LATER_SEED)]
  : Array.from({ length: 40 }, (_, i) => i + 1);

const BASES = ['10.244.0.0', '10.244.1.0', '192.168.1.0', '0.0.0.0', '169.254.1.1'].map(ip4ToInt);
const LENS = [0, 8, 16, 24, 24, 32];

function randomRoute(rnd: () => number): Route {
  const int = (k: number) => Math.floor(rnd() * k);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const len = pick(LENS);
  const r: Route = {
    dst: ((pick(BASES) | int(256)) & prefixMask(len)) >>> 0,
    len,
    type: rnd() < 0.1 ? 'blackhole' : 'unicast',
    dev: pick(['eth0', 'cni0']),
    proto: pick(['kernel', 'boot', 'static'] as const),
    scope: pick(['global', 'link'] as const),
    metric: pick([0, 0, 100]),
    onlink: rnd() < 0.2,
  };
  if (rnd() < 0.4) r.via = pick(['10.244.0.1', '169.254.1.1']);
  if (rnd() < 0.4) r.src = pick(['10.244.0.7', '10.244.1.9']);
  return r;
}

const row = (r: RouteRow | undefined) =>
  r && { dst: r.dst, len: r.len, type: r.type, via: r.via, dev: r.dev, route: r.route() };
const PROBES = ['10.244.0.9', '10.244.1.200', '192.168.1.3', '8.8.8.8', '169.254.1.1'].map(ip4ToInt);

/** the rows a scan of the table visits, as data */
function rows(scan: (visit: (r: RouteRow) => void) => void): unknown[] {
  const out: unknown[] = [];
  scan((r) => out.push(row(r)));
  return out;
}

/** everything a reader can see of a table */
function state(f: Fib): unknown {
  const scanned = rows((v) => f.scan(v));
  return {
    generation: f.generation,
    size: f.size,
    ownSize: f.ownSize,
    shared: f.shared,
    list: f.list().map((r) => ({ ...r })),
    scanned,
    lookups: PROBES.map((a) => f.lookup(a)),
    matches: PROBES.map((a) => row(f.match(a))),
  };
}

/** the first use of a table: each method once, its answer as data */
const FIRST: [string, (f: Fib, probe: Route) => unknown][] = [
  ['generation', (f) => f.generation],
  ['changed', (f) => (f.changed(), f.generation)],
  ['derived', (f) => f.derived((t: Fib) => t.list().length, f)],
  ['forget', (f) => f.forget()],
  ['size', (f) => f.size],
  ['ownSize', (f) => f.ownSize],
  ['shared', (f) => f.shared],
  ['segment', (f) => f.segment],
  ['list', (f) => f.list().map((r) => ({ ...r }))],
  [
    'attach',
    (f, p) => {
      const seg = new Fib();
      seg.insert({ ...p, dst: ip4ToInt('172.16.0.0'), len: 16 });
      return f.attach(seg, []);
    },
  ],
  ['find', (f, p) => f.find(p.dst, p.len)],
  ['aliases', (f, p) => f.aliases(p.dst, p.len)],
  ['clear', (f) => f.clear()],
  ['add', (f, p) => f.add({ ...p })],
  ['insert', (f, p) => f.insert({ ...p })],
  ['remove', (f, p) => f.remove({ ...p })],
  ['removeWhere', (f) => f.removeWhere((r) => r.dev === 'eth0')],
  ['lookup', (f, p) => f.lookup(p.dst)],
  ['peek', (f, p) => f.peek(p.dst)],
  ['match', (f, p) => row(f.match(p.dst))],
  ['scan', (f) => rows((v) => f.scan(v))],
  ['scanOwn', (f) => rows((v) => f.scanOwn(v))],
  ['scanObjects', (f) => rows((v) => f.scanObjects(v))],
  ['scanGone', (f) => rows((v) => f.scanGone(v))],
];

for (const seed of SEEDS)
  test(`insertLater is insert at the first use, whatever it is (seed ${seed})`, () => {
    for (const [name, first] of FIRST) {
      const rnd = seededRandom(seed * 1000 + name.length);
      const routes = Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => randomRoute(rnd));
      const more = rnd() < 0.5 ? [randomRoute(rnd)] : [];
      const eager = new Fib();
      const lazy = new Fib();
      // a table written before: its own generation and routes, then a new queue
      if (rnd() < 0.3) {
        const r = randomRoute(rnd);
        eager.insert({ ...r });
        lazy.insert({ ...r });
      }
      for (const r of [...routes, ...more]) eager.insert({ ...r });
      lazy.insertLater(routes.map((r) => ({ ...r })));
      if (more.length) lazy.insertLater(more.map((r) => ({ ...r })));
      const probe = rnd() < 0.7 ? routes[0] : randomRoute(rnd);
      assert.deepEqual(first(lazy, probe), first(eager, probe), `${name} first: its answer`);
      assert.deepEqual(state(lazy), state(eager), `${name} first: the table after`);
      // then writes and reads interleaved, queues included
      for (let i = 0; i < 12; i++) {
        const roll = rnd();
        const r = randomRoute(rnd);
        if (roll < 0.2) {
          eager.insert({ ...r });
          lazy.insertLater([{ ...r }]);
        } else if (roll < 0.4) {
          eager.insert({ ...r });
          lazy.insert({ ...r });
        } else if (roll < 0.55) {
          const victim = eager.list()[Math.floor(rnd() * 4)] ?? r;
          eager.remove({ ...victim });
          lazy.remove({ ...victim });
        } else if (roll < 0.65) {
          eager.removeWhere((x) => x.dev === 'cni0');
          lazy.removeWhere((x) => x.dev === 'cni0');
        } else if (roll < 0.75) {
          eager.changed();
          lazy.changed();
        } else if (roll < 0.8) {
          eager.clear();
          lazy.clear();
        }
        // the whole table read now and then (a read puts a queue): queues also meet the writes above
        if (rnd() < 0.6) continue;
        assert.deepEqual(state(lazy), state(eager), `${name} then step ${i}`);
      }
    }
  });
