/**
 * CompactTable.insertLater queues entries and puts them at the table's next use (a bridge port's
 * local FDB entry: most nodes' bridges are never read). Whatever is asked first, the answer and
 * the table after it must be what inserting them at once gives. An FDB (keyed by MAC) and a
 * neighbour table (keyed by address and device) each get the same random entries twice over,
 * insert() one by one in one table, insertLater in the other; then each method is the first thing
 * asked (every method, every seed) with the answers compared, then writes, queues and reads
 * interleaved, and after each step the whole table: sizes, list(), lookups of every key.
 * TABLE_LATER_SEED=S runs one seed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bridgeFdb, neighTable, vxlanFdb, type FdbEntry, type NeighEntry } from '../src/kernel/objects.ts';
import type { CompactKeyedTable, CompactPairTable } from '../src/kernel/table.ts';
import { seededRandom } from '../src/kernel/world.ts';

const SEEDS = process.env.TABLE_LATER_SEED
  ? [Number(process.env.TABLE_LATER_SEED)]
  : Array.from({ length: 40 }, (_, i) => i + 1);

const MACS = ['02:00:00:00:00:01', '02:00:00:00:00:02', '02:00:00:00:00:03', 'ee:ee:ee:ee:ee:ee'];
const PORTS = ['veth1', 'veth2', 'cni0'];
const IPS = ['10.244.0.1', '10.244.0.2', '10.0.0.11'];
const DEVS = ['eth0', 'cni0'];

type Rnd = () => number;
const pick = <T>(rnd: Rnd, xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];

function fdbEntry(rnd: Rnd): FdbEntry {
  const e: FdbEntry = {
    mac: pick(rnd, MACS),
    port: pick(rnd, PORTS),
    state: pick(rnd, ['local', 'static', 'dynamic'] as const),
    updated: Math.floor(rnd() * 1000),
  };
  return rnd() < 0.2 ? { ...e, vlan: 1 } : e;
}

function neighEntry(rnd: Rnd): NeighEntry {
  const e: NeighEntry = {
    ip: pick(rnd, IPS),
    dev: pick(rnd, DEVS),
    state: pick(rnd, ['REACHABLE', 'STALE', 'PERMANENT', 'INCOMPLETE'] as const),
    router: rnd() < 0.3,
    updated: Math.floor(rnd() * 1000),
  };
  return rnd() < 0.8 ? { ...e, lladdr: pick(rnd, MACS) } : e;
}

/** a kind of table: how to make one and an entry, and what a reader sees of it */
interface Kind<T extends object, Tb> {
  name: string;
  make: () => Tb & CompactKeyedTable<T>;
  entry: (rnd: Rnd) => T;
  /** the reads by key of the kind, each of every key */
  reads: [string, (t: Tb) => unknown][];
}

const byKey = <T extends object>(k: Kind<T, CompactKeyedTable<T>>, t: CompactKeyedTable<T>) =>
  k.reads.map(([, read]) => read(t));

const FDB: Kind<FdbEntry, CompactKeyedTable<FdbEntry>> = {
  name: 'fdb',
  make: () => bridgeFdb(undefined),
  entry: fdbEntry,
  reads: [
    ['get', (t) => MACS.map((m) => t.get(m))],
    ['getAll', (t) => MACS.map((m) => t.getAll(m))],
    ['peek', (t) => MACS.map((m) => t.peek(m))],
    ['has', (t) => MACS.map((m) => t.has(m))],
  ],
};
const KEYS = IPS.flatMap((ip) => DEVS.map((dev) => [ip, dev]));
// a neighbour table is a CompactPairTable: its reads by key differ, the rest is the same class
const NEIGH = {
  name: 'neigh',
  make: () => neighTable(undefined),
  entry: neighEntry,
  reads: [
    ['get', (t: CompactPairTable<NeighEntry>) => KEYS.map(([ip, dev]) => t.get(`${ip}|${dev}`))],
    ['pick', (t: CompactPairTable<NeighEntry>) => KEYS.map(([ip, dev]) => t.pick(ip, dev))],
    ['peek', (t: CompactPairTable<NeighEntry>) => KEYS.map(([ip, dev]) => t.peek(ip, dev))],
    [
      'peekField',
      (t: CompactPairTable<NeighEntry>) => KEYS.map(([ip, dev]) => t.peekField(ip, dev, 'lladdr')),
    ],
  ],
} as unknown as Kind<NeighEntry, CompactKeyedTable<NeighEntry>>;

function state<T extends object>(k: Kind<T, CompactKeyedTable<T>>, t: CompactKeyedTable<T>): unknown {
  const differing: unknown[] = [];
  t.scanDiffering((e) => differing.push({ ...e }));
  return {
    size: t.size,
    ownSize: t.ownSize,
    shared: t.shared,
    list: t.list().map((e) => ({ ...e })),
    differing,
    byKey: byKey(k, t),
  };
}

/** the first use of a table: each method once, its answer as data */
function firsts<T extends object>(
  k: Kind<T, CompactKeyedTable<T>>,
): [string, (t: CompactKeyedTable<T>, e: T) => unknown][] {
  return [
    ['size', (t) => t.size],
    ['ownSize', (t) => t.ownSize],
    ['shared', (t) => t.shared],
    ['segment', (t) => t.segment],
    ['list', (t) => t.list().map((e) => ({ ...e }))],
    ['scanDiffering', (t) => state(k, t)],
    ['attach', (t) => t.attach(k.make(), [])],
    [
      'attach a segment',
      (t, e) => {
        const seg = k.make();
        seg.insert({ ...e });
        return t.attach(seg, []);
      },
    ],
    ['clear', (t) => t.clear()],
    ['add', (t, e) => t.add({ ...e })],
    ['insert', (t, e) => t.insert({ ...e })],
    ['remove', (t, e) => t.remove({ ...e })],
    ['removeWhere', (t) => t.removeWhere((x) => JSON.stringify(x).includes('cni0')).map((x) => ({ ...x }))],
    ...k.reads,
  ];
}

function check<T extends object>(k: Kind<T, CompactKeyedTable<T>>, seed: number): void {
  for (const [name, first] of firsts(k)) {
    const rnd = seededRandom(seed * 1000 + name.length);
    const entries = Array.from({ length: 1 + Math.floor(rnd() * 5) }, () => k.entry(rnd));
    const eager = k.make();
    const lazy = k.make();
    if (rnd() < 0.3) {
      const e = k.entry(rnd);
      eager.insert({ ...e });
      lazy.insert({ ...e });
    }
    for (const e of entries) {
      eager.insert({ ...e });
      lazy.insertLater({ ...e });
    }
    const e = rnd() < 0.7 ? entries[0] : k.entry(rnd);
    assert.deepEqual(first(lazy, e), first(eager, e), `${k.name} ${name} first: its answer`);
    assert.deepEqual(state(k, lazy), state(k, eager), `${k.name} ${name} first: the table after`);
    for (let i = 0; i < 12; i++) {
      const roll = rnd();
      const x = k.entry(rnd);
      if (roll < 0.3) {
        eager.insert({ ...x });
        lazy.insertLater({ ...x });
      } else if (roll < 0.45) {
        eager.insert({ ...x });
        lazy.insert({ ...x });
      } else if (roll < 0.6) {
        const victim = eager.list()[Math.floor(rnd() * 4)] ?? x;
        assert.equal(lazy.remove({ ...victim }), eager.remove({ ...victim }));
      } else if (roll < 0.7) {
        eager.removeWhere((y) => JSON.stringify(y).includes('veth1'));
        lazy.removeWhere((y) => JSON.stringify(y).includes('veth1'));
      } else if (roll < 0.75) {
        eager.clear();
        lazy.clear();
      }
      // the whole table read now and then (a read puts the queue): queues also meet the writes above
      if (rnd() < 0.6) continue;
      assert.deepEqual(state(k, lazy), state(k, eager), `${k.name} ${name} then step ${i}`);
    }
  }
}

for (const seed of SEEDS)
  test(`insertLater is insert at the next use, whatever it is (seed ${seed})`, () => {
    check(FDB, seed);
    check({ ...FDB, name: 'vxlan fdb', make: (() => vxlanFdb(undefined)) as never }, seed);
    check(NEIGH, seed);
  });

test("insertLater moves the owner's state generation when it queues, as insert would", () => {
  let moved = 0;
  const owner = { stateChanged: () => void moved++ };
  const fdb = bridgeFdb(owner);
  fdb.insertLater({ mac: MACS[0], port: 'veth1', state: 'local', updated: 0 });
  // nothing has read the table yet: the write is counted all the same
  assert.ok(moved > 0, 'a queued entry moved no generation');
  const before = moved;
  assert.equal(fdb.get(MACS[0])?.port, 'veth1');
  assert.ok(moved >= before);
});
