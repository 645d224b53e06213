/**
 * Conntrack's tuple hash (numbers in an open-addressing table since session 9) keeps the semantics
 * of the Map by string key it replaced: random confirms (tuples drawn from a small space, so keys
 * collide, are overwritten, deleted and set again), expiries and flushes, checked after each step
 * against a reference that is that Map (set replaces in place, delete by the entry's current
 * tuples, insertion order), through `index` (the saved world's form), `find` and `taken`; then a
 * save and load of the conntrack of 40 walks keeps the same index and lookups. The TCP socket
 * table (by a hash of the tuple's numbers since session 13) answers as a Map by the 4-tuple's
 * string did, tuples that are not canonical numbers included. The VXLAN source port's flow hash,
 * made without its key's strings since session 13, is World.derive of the string key it hashed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Conntrack,
  CtEntry,
  invertTuple,
  tupleKey,
  type CtDir,
  type Tuple,
} from '../src/kernel/conntrack.ts';
import { seedCluster } from '../src/cluster/seed.ts';
import { buildCluster } from '../src/cni/build.ts';
import { decodeData, encodeData } from '../src/kernel/data.ts';
import { cloneWorld } from '../src/kernel/snapshot.ts';
import { walk } from '../src/trace/walk.ts';
import { QuadTable, quadKey, type Quad } from '../src/kernel/table.ts';
import { flowHash, tupleOf, vxlanPortsOf, vxlanTuplePort } from '../src/kernel/stack.ts';
import { deriveIsn, isnsOf } from '../src/kernel/sockets.ts';
import { fnv1a, fnv1aUint, seededRandom, World } from '../src/kernel/world.ts';
import type { Ipv4Packet } from '../src/wire/types.ts';

/** a deterministic generator (mulberry32) */
const rng = seededRandom;

function tupleFrom(r: () => number, ports = [0, 1, 80, 65535, 1.5]): Tuple {
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const src = pick(['10.0.0.1', '10.0.0.2', '255.255.255.255', '0.0.0.0', '10.00.0.1']);
  const dst = pick(['10.0.0.1', '10.0.0.2', '192.168.1.1']);
  const proto = pick([1, 6, 17, 47]);
  if (proto === 1)
    return {
      proto,
      src,
      dst,
      sport: 0,
      dport: 0,
      icmpType: pick([0, 8, 3, undefined]),
      icmpCode: pick([0, 1]),
      icmpId: pick([0, 1, 65535, undefined]),
    };
  return { proto, src, dst, sport: pick(ports), dport: pick([0, 80, 65535]) };
}

test('the tuple hash behaves as the Map by string key, order included', () => {
  // small tuple spaces (keys collide often), then two large ones (tables of thousands of rows)
  const many = Array.from({ length: 3000 }, (_, i) => 1000 + i);
  for (let seed = 1; seed <= 22; seed++) {
    const r = rng(seed);
    const ports = seed > 20 ? many : undefined;
    const steps = seed > 20 ? 16000 : 400;
    const ct = new Conntrack();
    const ref = new Map<string, { entry: CtEntry; dir: CtDir }>();
    const refEntries: CtEntry[] = [];
    let now = 0;
    let most = 0;
    for (let step = 0; step < steps; step++) {
      const x = r();
      if (x < 0.7) {
        const t = tupleFrom(r, ports);
        // the reference's expiry first, as track does (before it: an entry the table let go may
        // have its row given to another, and its handle then refuses to be read)
        for (let i = refEntries.length - 1; i >= 0; i--)
          if (refEntries[i].expires <= now) {
            ref.delete(tupleKey(refEntries[i].orig));
            ref.delete(tupleKey(refEntries[i].reply));
            refEntries.splice(i, 1);
          }
        const res = ct.track(t, t.proto === 6 ? { syn: true } : undefined, now);
        if (!res.entry.confirmed && !res.invalid) {
          if (r() < 0.5) res.entry.reply = invertTuple(tupleFrom(r)); // as NAT replaces it
          ct.confirm(res.entry);
          refEntries.push(res.entry);
          ref.set(tupleKey(res.entry.orig), { entry: res.entry, dir: 'original' });
          ref.set(tupleKey(res.entry.reply), { entry: res.entry, dir: 'reply' });
          most = Math.max(most, ref.size);
        }
      } else if (x < 0.97) now += Math.floor(r() * (ports ? 5e4 : 20e6));
      else if (!ports || x > 0.999) {
        ct.flush();
        ref.clear();
        refEntries.length = 0;
      }
      if (step % (ports ? 1000 : 1) === 0 || step === steps - 1) {
        // the entries by row (a lookup gives a new handle of a row each time: `same`, `idOf`)
        const at = new Map(refEntries.map((e, i) => [ct.idOf(e), i]));
        assert.ok(!at.has(-1), `seed ${seed} step ${step}: an entry of the reference is not the table's`);
        assert.deepEqual(
          [...ct.index].map(([k, v]) => [k, v.dir, at.get(ct.idOf(v.entry)) ?? -1]),
          [...ref].map(([k, v]) => [k, v.dir, refEntries.indexOf(v.entry)]),
          `seed ${seed} step ${step}`,
        );
      }
      for (let i = 0; i < 5; i++) {
        const t = tupleFrom(r, ports);
        const hit = ct.find(t);
        const want = ref.get(tupleKey(t));
        assert.equal(hit === undefined, want === undefined);
        if (hit) assert.ok(ct.same(hit.entry, want!.entry), `seed ${seed} step ${step}: another entry found`);
        assert.equal(hit?.dir, want?.dir);
        if (refEntries.length)
          assert.equal(ct.taken(t, refEntries[0]), !!want && !ct.same(want.entry, refEntries[0]));
        else assert.equal(ct.taken(t, new CtEntry()), !!want);
      }
    }
    if (ports)
      assert.ok(most > 3 * 1024, `seed ${seed}: a table of ${most} keys, more than 3 chunks of rows`);
  }
});

test('expiry visits only what is due and leaves the table as a full scan does', () => {
  // the reference is the full scan expire() was until session 12: at a track or expire at `now`
  // not before the lower bound, every entry whose expiry is `now` or before leaves, the order of
  // the rest kept, and the bound becomes the earliest expiry left; confirm and a renewed timeout
  // lower it. TCP flags of both directions move entries between timeouts of 10 s and 5 days, so
  // timeouts are shortened as well as renewed (in small tables too: a handful of connections
  // renewed again and again); now and then the table is saved and loaded.
  const next = (ct: Conntrack) => (ct as unknown as { nextExpiry: number }).nextExpiry;
  const FLAGS = [
    { syn: true },
    { syn: true, ack: true },
    { ack: true },
    { fin: true, ack: true },
    { rst: true },
  ];
  {
    // a renewed entry's earlier place comes first once the entry before it has gone: the bound is
    // the renewed expiry, not that place
    const ct = new Conntrack();
    const udp = (sport: number): Tuple => ({ proto: 17, src: '10.0.0.1', dst: '10.0.0.3', sport, dport: 53 });
    const y = ct.track(udp(1), undefined, 0).entry;
    ct.confirm(y);
    const x = ct.track(udp(2), undefined, 1e6).entry;
    ct.confirm(x);
    ct.track(invertTuple(udp(2)), undefined, 20e6);
    assert.equal(x.expires, 50e6);
    ct.expire(30.5e6);
    assert.deepEqual(ct.entries, [x.data()]);
    assert.equal(next(ct), 50e6);
  }
  for (let seed = 1; seed <= 12; seed++) {
    const r = rng(100 + seed);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
    let ct = new Conntrack();
    let ref: CtEntry[] = [];
    let refNext = Infinity;
    const sweep = (now: number) => {
      if (now < refNext) return;
      ref = ref.filter((e) => e.expires > now);
      refNext = Math.min(Infinity, ...ref.map((e) => e.expires));
    };
    let now = 0;
    let expired = 0;
    for (let step = 0; step < 3000; step++) {
      const x = r();
      if (x < 0.75) {
        const old = ref.length && r() < 0.6 ? pick(ref) : undefined;
        const t: Tuple = old
          ? r() < 0.5
            ? old.orig
            : old.reply
          : {
              proto: pick([6, 6, 17]),
              src: pick(['10.0.0.1', '10.0.0.2']),
              dst: '10.0.0.3',
              sport: 1000 + Math.floor(r() * (seed > 6 ? 6 : 200)),
              dport: 80,
            };
        const before = ref.length;
        sweep(now);
        expired += before - ref.length;
        const res = ct.track(t, t.proto === 6 ? pick(FLAGS) : undefined, now, r() < 0.5);
        if (!res.entry.confirmed && !res.invalid) {
          ct.confirm(res.entry);
          ref.push(res.entry);
        }
        if (res.entry.confirmed) refNext = Math.min(refNext, res.entry.expires);
      } else if (x < 0.9) now += Math.floor(r() * 3e6);
      else if (x < 0.96) now += Math.floor(r() * 400e6);
      else if (x < 0.99) {
        const at = now + (r() < 0.5 ? 0 : Math.floor(r() * 1e8));
        sweep(at);
        ct.expire(at);
      } else if (x < 0.995) {
        ct.flush();
        ref = [];
        refNext = Infinity;
      } else {
        const data = encodeData(ct, { Conntrack });
        ct = Conntrack.fromData(decodeData(data, { Conntrack }) as Conntrack, (what) => assert.fail(what));
        ref = ref.map((e) => ct.find(e.orig)!.entry);
      }
      assert.deepEqual(
        ct.entries,
        ref.map((e) => e.data()),
        `seed ${seed} step ${step}: the entries, in order`,
      );
      assert.equal(ct.entries.length, ref.length);
      ct.entries.forEach((e, i) =>
        assert.ok(ct.same(e, ref[i]), `seed ${seed} step ${step}: entry ${i} is the reference's`),
      );
      assert.equal(next(ct), refNext, `seed ${seed} step ${step}: the earliest expiry`);
    }
    assert.ok(expired > (seed > 6 ? 20 : 100), `seed ${seed}: ${expired} entries expired`);
  }
});

test('a saved and loaded conntrack keeps its index and lookups', () => {
  const c = buildCluster(seedCluster(), 'flannel-vxlan');
  for (let sport = 40000; sport < 40040; sport++)
    walk(c, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080, sport });
  const w = cloneWorld(c.world);
  let checked = 0;
  for (const [name, ns] of c.world.netns) {
    const a = ns.conntrack;
    const b = w.ns(name).conntrack;
    assert.deepEqual(
      [...b.index].map(([k, v]) => [k, v.dir, b.entries.indexOf(v.entry)]),
      [...a.index].map(([k, v]) => [k, v.dir, a.entries.indexOf(v.entry)]),
    );
    a.entries.forEach((e, i) => {
      assert.ok(b.same(b.find(e.orig)!.entry, b.entries[i]));
      assert.equal(b.find(e.reply)?.dir, 'reply');
      checked++;
    });
  }
  assert.ok(checked > 0, 'the walks left conntrack entries');
});

test('the socket table finds by 4-tuple what a Map by quadKey finds, in table order', () => {
  const r = rng(7);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  // local and remote from the same addresses and ports: a tuple and its mirror image (local and
  // remote swapped), equal ports, and a tuple whose two ends are the same are all drawn
  const addrs = ['10.0.0.1', '10.0.0.2', '255.255.255.255', '0.0.0.0', '10.0.0.01'];
  const ports = [0, 1, 80, 8080, 65535, 65536, 2.5];
  const quad = (): Quad => ({
    local: pick(addrs),
    lport: pick(ports),
    remote: pick(addrs),
    rport: pick(ports),
  });
  // the table as it is, and with a hash of 2 bits: most tuples share their slot with others
  for (const t of [new QuadTable<Quad>(), new QuadTable<Quad>(3)]) checkQuads(t, quad, r);
});

test('a deferred socket is made when first read, once, and is then the one every read finds', () => {
  const made: number[] = [];
  const quadOf = (lport: number): Quad => ({ local: '10.0.0.1', lport, remote: '10.0.0.2', rport: 80 });
  const maker = {
    make(arg: number): Quad {
      made.push(arg);
      return quadOf(arg);
    },
  };
  const t = new QuadTable<Quad>();
  t.add(quadOf(999));
  for (let p = 1000; p < 1100; p++) t.addDeferredAt(maker, p, t.key('10.0.0.1', p, '10.0.0.2', 80));
  assert.equal(t.size, 101);
  assert.deepEqual(made, []);
  // a lookup of another tuple makes none; one of a deferred socket's makes that one
  assert.equal(t.newest('10.0.0.1', 2000, '10.0.0.2', 80), undefined);
  assert.equal(t.newest('10.0.0.1', 999, '10.0.0.2', 80)?.lport, 999);
  assert.deepEqual(made, []);
  const s = t.newest('10.0.0.1', 1050, '10.0.0.2', 80);
  assert.deepEqual(s, quadOf(1050));
  assert.deepEqual(made, [1050]);
  assert.equal(t.getAll('10.0.0.1', 1050, '10.0.0.2', 80)[0], s);
  assert.deepEqual(made, [1050]);
  // the list makes the rest, in table order; the one made before is kept
  const all = t.list();
  assert.deepEqual(
    all.map((q) => q.lport),
    Array.from({ length: 101 }, (_, i) => 999 + i),
  );
  assert.equal(all[51], s);
  assert.equal(made.length, 100);
  t.list();
  assert.equal(made.length, 100);
  // deferred again after all were made (the deferred columns start over), then removed
  t.addDeferredAt(maker, 5000, t.key('10.0.0.1', 5000, '10.0.0.2', 80));
  const other = quadOf(6000);
  t.add(other);
  assert.ok(t.remove(other));
  assert.deepEqual(t.newest('10.0.0.1', 5000, '10.0.0.2', 80), quadOf(5000));
  assert.equal(made.length, 101);
});

test('a socket removed is not found, its tuple canonical or not', () => {
  // (a tuple that is not canonical numbers is in the quadKey Map: it was found there until the next add)
  for (const q of [
    { local: '10.0.0.01', lport: 1, remote: '10.0.0.1', rport: 2 },
    { local: '10.0.0.1', lport: 1, remote: '10.0.0.2', rport: 2 },
  ]) {
    const t = new QuadTable<Quad>();
    t.add(q);
    t.remove(q);
    assert.deepEqual(t.getAll(q.local, q.lport, q.remote, q.rport), []);
    assert.equal(t.newest(q.local, q.lport, q.remote, q.rport), undefined);
  }
});

function checkQuads(t: QuadTable<Quad>, quad: () => Quad, r: () => number): void {
  const ref = new Map<string, Quad[]>();
  // a deferred entry's maker gives the quad drawn for it, once (the table keeps what it made)
  const pool: Quad[] = [];
  const made = new Set<number>();
  const maker = {
    make(arg: number): Quad {
      assert.ok(!made.has(arg), `deferred entry ${arg} made twice`);
      made.add(arg);
      return pool[arg];
    },
  };
  for (let step = 0; step < 2000; step++) {
    if (r() < 0.6) {
      // (add, or addAt with the tuple's index key, or addDeferredAt: the flow cache's replay)
      const n = quad();
      const how = r();
      const k = t.key(n.local, n.lport, n.remote, n.rport);
      if (how < 0.33) t.add(n);
      else if (how < 0.66) t.addAt(n, k);
      else t.addDeferredAt(maker, pool.push(n) - 1, k);
      ref.set(quadKey(n), [...(ref.get(quadKey(n)) ?? []), n]);
    } else if (t.size) {
      const q = t.list()[Math.floor(r() * t.size)];
      t.remove(q);
      const rest = ref.get(quadKey(q))!.filter((x) => x !== q);
      if (rest.length) ref.set(quadKey(q), rest);
      else ref.delete(quadKey(q));
    }
    const q = quad();
    const want = ref.get(quadKey(q)) ?? [];
    assert.deepEqual(t.getAll(q.local, q.lport, q.remote, q.rport), want);
    assert.equal(t.newest(q.local, q.lport, q.remote, q.rport), want.at(-1));
    const k = t.key(q.local, q.lport, q.remote, q.rport);
    assert.equal(t.newestAt(k, q.local, q.lport, q.remote, q.rport), want.at(-1));
  }
}

test('the flow hash is World.derive of the flow key string, ends in string order', () => {
  // the key vxlan_xmit's source port was hashed from: `PROTO|A|B`, the ends `ADDR:PORT` sorted as strings
  const flowKey = (p: Ipv4Packet) => {
    const t = tupleOf(p);
    const a = `${t.src}:${t.sport}`;
    const b = `${t.dst}:${t.dport}`;
    return `${t.proto}|${a < b ? a + '|' + b : b + '|' + a}`;
  };
  const r = rng(11);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  // addresses that are prefixes of each other, equal ones, and ports whose strings order unlike their numbers
  const addrs = ['10.0.0.1', '10.0.0.12', '10.0.0.2', '10.0.0.1', '1.2.3.4', '10.0.0.10', '9.9.9.9', ''];
  const ports = [0, 1, 2, 9, 10, 12, 80, 8080, 8472, 40000, 65535, 1.5];
  const w = new World(pick(['seed', 'other', '']));
  let checked = 0;
  for (let i = 0; i < 5000; i++) {
    const ip = {
      src: pick(addrs),
      dst: pick(addrs),
      protocol: pick([1, 6, 17, 47]),
      ttl: 64,
      id: 0,
      df: false,
      mf: false,
      fragOffset: 0,
      tos: 0,
    };
    const kind = pick(['tcp', 'udp', 'icmp', 'raw'] as const);
    const data = new Uint8Array(0);
    const payload: Ipv4Packet['payload'] =
      kind === 'tcp'
        ? {
            kind,
            tcp: {
              srcPort: pick(ports),
              dstPort: pick(ports),
              seq: 0,
              ack: 0,
              flags: {},
              window: 0,
              options: {},
            },
            data,
          }
        : kind === 'udp'
          ? {
              kind,
              udp: { srcPort: pick(ports), dstPort: pick(ports) },
              payload: { kind: 'raw', data },
            }
          : kind === 'icmp'
            ? { kind, icmp: { type: pick([0, 3, 8]), code: 0, id: pick(ports), seq: 1 }, data }
            : { kind, data };
    const p: Ipv4Packet = { kind: 'ipv4', ip, payload };
    const what = pick(['vxlan-sport', 'x']);
    assert.equal(flowHash(w, what, p), w.derive(what, flowKey(p)), flowKey(p));
    checked++;
  }
  assert.equal(checked, 5000);
});

test("a connection's ISN is World.derive('isn', src, sport, dst, dport), whatever the ports", () => {
  const r = rng(13);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const w = new World('isn-seed');
  const addrs = ['10.244.0.5', '10.244.1.5', '0.0.0.0', '255.255.255.255', '10.0.0.01'];
  // the digits' edges (0, 9, 10, 99, 100, …), the largest port, and what is no port (derive itself)
  const ports = [0, 1, 9, 10, 99, 100, 999, 1000, 8080, 9999, 10000, 40000, 65535, 65536, -1, 2.5];
  for (let i = 0; i < 5000; i++) {
    const src = pick(addrs);
    const dst = pick(addrs);
    const sport = r() < 0.5 ? pick(ports) : Math.floor(r() * 65536);
    const dport = r() < 0.5 ? pick(ports) : Math.floor(r() * 65536);
    assert.equal(
      deriveIsn(w, src, sport, dst, dport),
      w.derive('isn', src, sport, dst, dport),
      `${src}:${sport} ${dst}:${dport}`,
    );
  }
});

test("a number's digits hash as its string does, past 2^31 too", () => {
  for (const n of [0, 9, 10, 99, 100, 65535, 99999, 100000, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 1e12])
    assert.equal(fnv1aUint(n, 2166136261), fnv1a(String(n), 2166136261), String(n));
});

test("the replay's hashers of a flow are the whole hashes: a VXLAN source port, both ends' ISNs", () => {
  const r = rng(17);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  // addresses equal, prefixes of each other or not, either way round
  const addrs = ['10.244.0.5', '10.244.1.5', '10.244.0.50', '10.244.0.5', '9.9.9.9', '10.2'];
  const ports = [0, 1, 9, 10, 99, 100, 8080, 40000, 65535, 65536, -1, 2.5];
  const range = { srcPortMin: 32768, srcPortMax: 61000 };
  let fast = 0;
  for (const seed of ['seed', 'other'])
    for (let i = 0; i < 300; i++) {
      const w = new World(seed);
      const src = pick(addrs);
      const dst = pick(addrs);
      const dport = r() < 0.5 ? pick(ports) : Math.floor(r() * 65536);
      const proto = pick([6, 17]);
      const vx = vxlanPortsOf(w, range, proto, src, dst, dport);
      const isns = isnsOf(w, src, dst, dport);
      for (let j = 0; j < 10; j++) {
        const sport = r() < 0.3 ? pick(ports) : Math.floor(r() * 65536);
        const at = `${proto} ${src}:${sport} ${dst}:${dport}`;
        assert.equal(vx(sport), vxlanTuplePort(w, range, proto, src, sport, dst, dport), at);
        assert.equal(isns.client(sport), deriveIsn(w, src, sport, dst, dport), at);
        assert.equal(isns.server(sport), deriveIsn(w, dst, dport, src, sport), at);
        if (src !== dst && !src.startsWith(dst) && !dst.startsWith(src)) fast++;
      }
    }
  // (the hash of what comes before the port taken once: most flows)
  assert.ok(fast > 2000, String(fast));
});
