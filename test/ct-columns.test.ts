/**
 * Conntrack's entries in typed-array columns (session 14) against the table as objects they
 * replaced (test/fixtures/conntrack/objects.ts: main 7855c7d's conntrack.ts, unchanged): the same
 * random operations on both — packets tracked (TCP flags of both directions, UDP, ICMP echo and
 * errors quoting an entry, tuples the columns cannot keep: a non-canonical address, a port of 1.5),
 * confirms, a NAT manip replacing the reply before the confirm and, now and then, after it (a key
 * of the hash then names a tuple the entry no longer has), status bits set, time passing, expiry,
 * flushes, saves and loads (some with a field of a type the columns cannot keep) — and after each
 * step the saved form (data.ts's JSON of the whole table: entries, index, the order of both,
 * shared objects), every result of `track`, `find` and `taken` (which entry, by the pairs the
 * two tables made), and the earliest expiry must be the same.
 *
 * The new-entry path (session 15): a new entry is its table's pending row, made from the numbers
 * of track's miss, its original tuple's hash and slot carried to the confirm. New entries are held
 * unconfirmed now and then and read, written and confirmed later — after other misses (the pending
 * row then becomes the object it was), other confirms and expiry (the hash changed since the miss),
 * a flush or a load (confirmed in another table) — and the null binding's question (the reply taken,
 * asked by its numbers) must be answered as the objects answer it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Conntrack, invertTuple, type CtEntry, type CtResult, type Tuple } from '../src/kernel/conntrack.ts';
import { Conntrack as ObjConntrack, type CtEntry as ObjEntry } from './fixtures/conntrack/objects.ts';
import { decodeData, encodeData, type Json } from '../src/kernel/data.ts';
import { seededRandom } from '../src/kernel/world.ts';

const save = (ct: object, cls: object): string => JSON.stringify(encodeData(ct, { Conntrack: cls as never }));
const load = <T>(json: Json, cls: { fromData(ct: T, check: (what: string) => never): T }): T =>
  cls.fromData(decodeData(json, { Conntrack: cls as never }) as T, (what) => assert.fail(what));

/** an entry's fields as the saved form has them (undefined fields left out) */
const fields = (e: object): unknown => JSON.parse(JSON.stringify(e));
const cols = (e: CtEntry): unknown => fields(e.data());

function sameResult(a: CtResult, b: ReturnType<ObjConntrack['track']>, at: string): void {
  assert.deepEqual(
    [a.dir, a.ctstate, a.isNew, a.related, a.from, a.to, a.invalid],
    [b.dir, b.ctstate, b.isNew, b.related, b.from, b.to, b.invalid],
    `${at}: the result`,
  );
  assert.deepEqual(cols(a.entry), fields(b.entry), `${at}: the result's entry`);
}

test('the columns keep what the objects kept: saved form, lookups, results and expiry, step by step', () => {
  let checked = 0;
  let kept = 0;
  let refused = 0;
  let sources = 0;
  let loaded = 0;
  let held = 0;
  for (let seed = 1; seed <= 24; seed++) {
    const r = seededRandom(500 + seed);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
    const big = seed > 20;
    const tuple = (): Tuple => {
      const src = pick(['10.0.0.1', '10.0.0.2', '10.0.0.3', big ? '10.0.0.4' : '10.00.0.1']);
      const dst = pick(['10.0.0.1', '10.0.0.2', '192.168.1.1']);
      const proto = pick([1, 6, 6, 17, 47]);
      if (proto === 1)
        return {
          proto,
          src,
          dst,
          sport: 0,
          dport: 0,
          icmpType: pick([0, 8, 8, 13, undefined]),
          icmpCode: 0,
          icmpId: pick([0, 1, 2, undefined]),
        };
      const sport = big ? 1000 + Math.floor(r() * 2000) : pick([1000, 1001, 1002, 1.5]);
      return { proto, src, dst, sport: proto === 47 ? 0 : sport, dport: proto === 47 ? 0 : pick([80, 443]) };
    };
    const FLAGS = [
      { syn: true },
      { syn: true, ack: true },
      { ack: true },
      { fin: true, ack: true },
      { rst: true },
    ];
    let a = new Conntrack();
    let b = new ObjConntrack();
    /** entries made by both, side by side (the columns' handle, the object) */
    let pairs: [CtEntry, ObjEntry][] = [];
    /** new entries held unconfirmed (the columns' pending row, or the object it became), and where made */
    const open: [CtEntry, ObjEntry, string][] = [];
    let now = 0;
    const steps = big ? 6000 : 600;
    for (let step = 0; step < steps; step++) {
      const at = `seed ${seed} step ${step}`;
      if (open.length && r() < 0.15) {
        // a held new entry: read, written now and then, and confirmed (its table's pending row
        // confirmed with the slot its miss found, or the hash changed since; or its data object)
        const [ea, eb, made] = open.splice(Math.floor(r() * open.length), 1)[0];
        assert.deepEqual(cols(ea), fields(eb), `${at}: the entry made at ${made}, held`);
        assert.equal(ea.confirmed, eb.confirmed, `${at}: confirmed`);
        if (r() < 0.2) {
          const rep = tuple();
          ea.reply = rep;
          eb.reply = structuredClone(rep);
          ea.snat = eb.snat = true;
        }
        if (r() < 0.3) ea.dnatDone = eb.dnatDone = true;
        assert.equal(a.replyTaken(ea), b.taken(eb.reply, eb), `${at}: the held entry's reply taken`);
        if (r() < 0.8) {
          a.confirm(ea);
          b.confirm(eb);
          held++;
        }
        assert.deepEqual(cols(ea), fields(eb), `${at}: the entry made at ${made}, confirmed`);
      }
      const x = r();
      if (x < 0.6) {
        // a packet: a new tuple, or one of a kept entry's, either way
        const old = pairs.length && r() < 0.5 ? pick(pairs)[1] : undefined;
        const t = old ? structuredClone(r() < 0.5 ? old.orig : old.reply) : tuple();
        const flags = t.proto === 6 ? pick(FLAGS) : undefined;
        const loose = r() < 0.7;
        // now and then an ICMP error quoting it
        const quoted = r() < 0.05 ? t : undefined;
        const err: Tuple | undefined = quoted && {
          proto: 1,
          src: '10.9.9.9',
          dst: quoted.src,
          sport: 0,
          dport: 0,
          icmpType: 3,
          icmpCode: 1,
          icmpId: 0,
        };
        const ra = a.track(err ?? t, flags, now, loose, quoted && invertTuple(quoted));
        const rb = b.track(structuredClone(err ?? t), flags, now, loose, quoted && invertTuple(quoted));
        sameResult(ra, rb, at);
        if (ra.isNew) {
          // a new entry's original tuple is the tracked one (a pending row's as its object's was)
          assert.equal(ra.entry.orig === (err ?? t), true, `${at}: the new entry's tuple`);
          // and no entry of the table until confirmed (as an object not in the table was not)
          assert.equal(a.idOf(ra.entry), -1, `${at}: the new entry is the table's`);
          pairs.push([ra.entry, rb.entry]);
          if (r() < 0.3) {
            // a NAT manip before the confirm
            const rep = tuple();
            ra.entry.reply = rep;
            rb.entry.reply = structuredClone(rep);
            ra.entry.dnat = rb.entry.dnat = true;
          }
          if (r() < 0.5) ra.entry.snatDone = rb.entry.snatDone = true;
          // the null binding's question: is the reply another entry's (asked by its numbers)
          assert.equal(a.replyTaken(ra.entry), b.taken(rb.entry.reply, rb.entry), `${at}: the reply taken`);
          if (r() < 0.7) {
            a.confirm(ra.entry);
            b.confirm(rb.entry);
          } else {
            // held unconfirmed: confirmed later (after other misses, confirms, expiry, a flush or a
            // load in between), or never
            open.push([ra.entry, rb.entry, at]);
            if (open.length > 6) open.shift();
          }
        }
      } else if (x < 0.65 && pairs.length) {
        // a kept entry written after its confirm (only one the table still lists: a handle of a
        // row let go refuses to be read, where the object stayed readable)
        const [ea, eb] = pick(pairs);
        if (b.entries.includes(eb)) {
          if (r() < 0.3) {
            const rep = tuple();
            if (!rep.src.includes('00') && rep.sport !== 1.5) {
              ea.reply = rep;
              eb.reply = structuredClone(rep);
            }
          } else ea.dnatDone = eb.dnatDone = true;
        }
      } else if (x < 0.85) now += Math.floor(r() * (big ? 2e6 : 40e6));
      else if (x < 0.93) {
        const t = now + Math.floor(r() * 1e8);
        a.expire(t);
        b.expire(t);
      } else if (x < 0.95) {
        a.flush();
        b.flush();
        pairs = [];
      } else if (x < 0.98) {
        // saved and loaded (a field of another type now and then: that entry stays an object)
        const json = JSON.parse(save(b, ObjConntrack)) as { fields: { entries: Record<string, Json>[] } };
        const list = json.fields.entries;
        if (list.length && r() < 0.3) pick(list).mark = 'x';
        // a key naming a tuple its entry no longer has cannot be loaded: both refuse it alike
        const tryLoad = <T>(cls: { fromData(ct: T, check: (what: string) => never): T }): T | string => {
          try {
            return load(json as unknown as Json, cls);
          } catch (e) {
            return (e as Error).message;
          }
        };
        const la = tryLoad(Conntrack);
        const lb = tryLoad(ObjConntrack);
        if (typeof la === 'string' || typeof lb === 'string') {
          assert.equal(la, lb, `${at}: the load's refusal`);
          refused++;
          continue;
        }
        a = la;
        b = lb;
        // the pairs again, by the loaded lists (an entry found by its original tuple that is the list's)
        pairs = [];
        b.entries.forEach((eb, i) => {
          const h = a.find(eb.orig)?.entry;
          if (h && a.same(h, a.entries[i])) pairs.push([h, eb]);
        });
        loaded++;
      }
      // the saved form of both tables: entries, index, their order, shared objects (in the large
      // tables every 25 steps)
      if (!big || step % 25 === 0 || step === steps - 1)
        assert.equal(save(a, Conntrack), save(b, ObjConntrack), `${at}: the saved form`);
      assert.equal(
        (a as unknown as { nextExpiry: number }).nextExpiry,
        (b as unknown as { nextExpiry: number }).nextExpiry,
        `${at}: the earliest expiry`,
      );
      {
        // find_appropriate_src's candidates (nat.ts): the list filtered, in its order
        const t = pairs.length && r() < 0.5 ? pick(pairs)[1].orig : tuple();
        const port = (o: Tuple) => (o.proto === 1 ? (o.icmpId ?? 0) : o.sport);
        const found = [...a.snatSources(t.proto, t.src, port(t))];
        if (found.length) sources++;
        assert.deepEqual(
          found.map(cols),
          b.entries
            .filter(
              (e) =>
                e.snatDone && e.orig.proto === t.proto && e.orig.src === t.src && port(e.orig) === port(t),
            )
            .map(fields),
          `${at}: the entries of the same source with a source manip`,
        );
      }
      for (let i = 0; i < 3; i++) {
        const t = i === 0 && pairs.length ? pick(pairs)[1].reply : tuple();
        const ha = a.find(t);
        const hb = b.find(t);
        assert.equal(ha?.dir, hb?.dir, `${at}: find's direction`);
        if (!ha || !hb) {
          assert.equal(ha, hb, `${at}: find`);
          continue;
        }
        assert.deepEqual(cols(ha.entry), fields(hb.entry), `${at}: find's entry`);
        for (let j = 0; j < Math.min(pairs.length, 12); j++) {
          const pair: [CtEntry, ObjEntry] =
            j === 0 ? (pairs.find(([, o]) => o === hb.entry) ?? pick(pairs)) : pick(pairs);
          const [ea, eb] = pair;
          if (eb !== hb.entry && !b.entries.includes(eb)) continue;
          assert.equal(a.same(ha.entry, ea), hb.entry === eb, `${at}: find's entry is the pair's`);
          if (b.entries.includes(eb)) {
            assert.equal(a.taken(t, ea), b.taken(t, eb), `${at}: taken`);
            // NAT's question of a candidate tuple: is its inverse taken (made from t's numbers)
            assert.equal(a.takenInverse(t, ea), b.taken(invertTuple(t), eb), `${at}: the inverse taken`);
            checked++;
          }
        }
      }
    }
    kept += a.entries.length;
  }
  if (process.env.CT_COLUMNS_COUNTS) console.log({ checked, kept, loaded, refused, sources, held });
  assert.ok(checked > 50000, `${checked} taken checks`);
  assert.ok(kept > 50, `${kept} entries kept at the ends`);
  assert.ok(sources > 100, `${sources} steps with entries of a source`);
  assert.ok(loaded > 300 && refused > 0, `${loaded} loads, ${refused} refused`);
  assert.ok(held > 1000, `${held} entries confirmed after other operations`);
});

test('a connection made again after the rows of its kind were let go keeps its keys', () => {
  // SYN (SYN_SENT, 120 s) then SYN-ACK (SYN_RECV, 60 s): the shortened timeout gives each entry a
  // second, later place in the heap. At 60 s they expire; reading the list lets their rows go; the
  // first connection is made again (in another row); when the later places come due they must
  // expire nothing: the rows they named are gone, and the tuples are the new entry's
  const a = new Conntrack();
  const b = new ObjConntrack();
  const tcp = (sport: number): Tuple => ({ proto: 6, src: '10.0.0.1', dst: '10.0.0.2', sport, dport: 80 });
  const both = (t: Tuple, flags: { syn?: boolean; ack?: boolean }, now: number) => {
    const f = t.proto === 6 ? flags : undefined;
    const ra = a.track(t, f, now);
    const rb = b.track(structuredClone(t), f, now);
    sameResult(ra, rb, `${t.sport} at ${now}`);
    if (ra.isNew) {
      a.confirm(ra.entry);
      b.confirm(rb.entry);
    }
  };
  for (let p = 1000; p < 1010; p++) {
    both(tcp(p), { syn: true }, 0);
    both(invertTuple(tcp(p)), { syn: true, ack: true }, 1);
  }
  // a UDP flow due at 70 s: expire stops at its place, before the later places of the others
  both({ proto: 17, src: '10.0.0.1', dst: '10.0.0.3', sport: 53, dport: 53 }, {}, 40e6);
  assert.equal(a.entries.length, 11);
  a.expire(61e6);
  b.expire(61e6);
  assert.equal(a.entries.length, 1);
  assert.equal(save(a, Conntrack), save(b, ObjConntrack));
  both(tcp(1000), { syn: true }, 62e6);
  for (const now of [121e6, 125e6, 181e6]) {
    a.expire(now);
    b.expire(now);
    assert.equal(save(a, Conntrack), save(b, ObjConntrack), `at ${now / 1e6} s`);
    assert.equal(a.find(tcp(1000))?.dir, b.find(tcp(1000))?.dir, `at ${now / 1e6} s: the new entry found`);
  }
  assert.equal(a.find(tcp(1000))?.dir, 'original');
});
