/**
 * Conntrack's rows as one buffer (session 20: a row is 64 bytes, a cache line, read through views
 * of different types; a hash key that is its row's own tuple is compared with the row's keys, no
 * key row of its own) against the table as objects (test/fixtures/conntrack/objects.ts): hundreds
 * of entries, so that the rows' buffer, the tuple hash's slots and the rows' insertion orders grow
 * many times over, some of them NAT'd after the confirm (the old reply's key, the row's own until
 * then, must stay the old tuple's), expired and their rows reused by the next; after each stage the
 * saved form (entries, index and their order), every lookup and the earliest expiry are the
 * objects'. And a saved world's marks of any number (a fraction, -0, NaN, 2^40, negative), expiries
 * and stream times come back from the float64s of a row as they went in.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Conntrack, ctRowOf, setRowPort, type CtEntry, type Tuple } from '../src/kernel/conntrack.ts';
import { Conntrack as ObjConntrack, type CtEntry as ObjEntry } from './fixtures/conntrack/objects.ts';
import { decodeData, encodeData, type Json } from '../src/kernel/data.ts';
import { setFlagsFromString } from 'node:v8';

const save = (ct: object, cls: object): string => JSON.stringify(encodeData(ct, { Conntrack: cls as never }));
const load = <T>(json: Json, cls: { fromData(ct: T, check: (what: string) => never): T }): T =>
  cls.fromData(decodeData(json, { Conntrack: cls as never }) as T, (what) => assert.fail(what));

const SEC = 1_000_000;
const tcp = (i: number): Tuple => ({
  proto: 6,
  src: `10.1.${i >> 8}.${i & 0xff}`,
  dst: '10.2.0.1',
  sport: 1000 + i,
  dport: 80,
});
const udp = (i: number): Tuple => ({
  proto: 17,
  src: '10.3.0.1',
  dst: '10.3.0.2',
  sport: 2000 + i,
  dport: 53,
});

test('rows and keys grown and reused many times over keep every entry as the objects do', () => {
  const a = new Conntrack();
  const b = new ObjConntrack();
  const made: [CtEntry, ObjEntry, Tuple][] = [];
  const same = (at: string) => {
    assert.equal(save(a, Conntrack), save(b, ObjConntrack), `${at}: the saved form`);
    assert.equal(a.noExpiryBefore, (b as unknown as { nextExpiry: number }).nextExpiry, `${at}: next expiry`);
    for (const [, , t] of made)
      for (const u of [t, { ...t, src: t.dst, dst: t.src, sport: t.dport, dport: t.sport }])
        assert.equal(a.find(u)?.dir, b.find(u)?.dir, `${at}: ${JSON.stringify(u)} found`);
  };
  let now = 0;
  const confirmOne = (t: Tuple, nat: boolean) => {
    const ra = a.track(t, t.proto === 6 ? { syn: true } : undefined, now);
    const rb = b.track(structuredClone(t), t.proto === 6 ? { syn: true } : undefined, now);
    assert.ok(ra.isNew && rb.isNew);
    a.confirm(ra.entry);
    b.confirm(rb.entry);
    made.push([ra.entry, rb.entry, t]);
    if (nat) {
      // a DNAT decided after the confirm: the hash keeps the reply key it had, the entry a new reply
      const reply: Tuple = { ...t, src: '10.9.9.9', dst: t.src, sport: 8080, dport: t.sport };
      ra.entry.reply = reply;
      rb.entry.reply = structuredClone(reply);
    }
  };
  for (let round = 0; round < 3; round++) {
    // 300 TCP (SYN_SENT: 120 s) and 100 UDP (30 s) entries: rows 16 → 512, slots 32 → 1,024
    for (let i = 0; i < 300; i++) confirmOne(tcp(400 * round + i), i % 17 === 5);
    for (let i = 0; i < 100; i++) confirmOne(udp(400 * round + i), i % 13 === 2);
    same(`round ${round}: made`);
    // the UDP flows expire, and the list lets their rows go: the next round's take them
    now += 31 * SEC;
    a.expire(now);
    b.expire(now);
    same(`round ${round}: UDP expired`);
    // a refresh of some TCP entries (the SYN again: SYN_SENT, a later expiry)
    for (let i = 0; i < 300; i += 7) {
      const t = tcp(400 * round + i);
      a.track(t, { syn: true }, now);
      b.track(structuredClone(t), { syn: true }, now);
    }
    same(`round ${round}: refreshed`);
  }
  now += 200 * SEC;
  a.expire(now);
  b.expire(now);
  same('all expired');
  // every handle of a row let go and reused refuses to be read, as a reused row's handle must
  const reused = made.filter(([e]) => {
    try {
      void e.expires;
      return false;
    } catch {
      return true;
    }
  });
  assert.ok(reused.length > 0, 'rows were reused');
  // and a new round fills the rows freed, from a table that grew past them
  for (let i = 0; i < 50; i++) confirmOne(tcp(5000 + i), i % 3 === 0);
  same('made again');
});

test('marks, expiries and stream times of any number come back from a row as they went in', () => {
  const b = new ObjConntrack();
  const marks = [0, 1.5, -0, NaN, 2 ** 40, -1, 0xffffffff, Number.MAX_VALUE, Infinity];
  for (let i = 0; i < marks.length; i++) {
    const r = b.track(udp(i), undefined, i * 0.25);
    b.confirm(r.entry);
    r.entry.mark = marks[i];
    r.entry.streamTs = -i * 1e15;
  }
  // a saved world (data.ts writes -0 as 0): the rows give back what the objects loaded have
  const json = JSON.parse(save(b, ObjConntrack)) as Json;
  const a = load<Conntrack>(json, Conntrack);
  const o = load<ObjConntrack>(json, ObjConntrack);
  assert.equal(save(a, Conntrack), save(b, ObjConntrack));
  // and by a CtRow (the flow cache's replay): -0 too
  const c = new Conntrack();
  for (let i = 0; i < marks.length; i++) {
    const e = a.find(udp(i))!.entry;
    const x = o.find(udp(i))!.entry;
    assert.ok(e.keyed, 'kept in the columns');
    for (const f of ['mark', 'expires', 'streamTs'] as const)
      assert.ok(Object.is(e[f], x[f]), `${f} of ${i}`);
    const d = b.find(udp(i))!.entry;
    const row = ctRowOf({ ...d, orig: { ...d.orig }, reply: { ...d.reply } })!;
    c.insertRow(row, row.keys, d.expires, d.streamTs);
    const y = c.find(udp(i))!.entry;
    for (const f of ['mark', 'expires', 'streamTs'] as const)
      assert.ok(Object.is(y[f], d[f]), `${f} of ${i} by row`);
  }
});

test('keys put and deleted in a large table are all found, and only they', () => {
  // 20,000 entries put by their rows (40,000 keys: the hash's slots grow to 65,536), each living a
  // pseudo-random time, expired in batches between the puts: every tuple is looked up after each
  // batch, found while its entry lives and not after (the deletion's backward shift keeps every
  // run whole, a probe stops at the first empty slot)
  const src = new Conntrack();
  const made = src.track(udp(0), undefined, 0);
  src.confirm(made.entry);
  const row = ctRowOf(src.entries[0])!;
  const ct = new Conntrack();
  const n = 20000;
  const keys: Int32Array[] = [];
  const until: number[] = [];
  let x = 7;
  const rand = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32;
  let now = 0;
  for (let i = 0; i < n; i++) {
    const k = new Int32Array(row.keys);
    setRowPort(k, 0, i % 60000);
    setRowPort(k, 3, i % 60000);
    setRowPort(k, 1, 53 + Math.floor(i / 60000));
    setRowPort(k, 2, 53 + Math.floor(i / 60000));
    const t = now + 1 + Math.floor(rand() * 4000);
    ct.insertRow(row, k, t, 0);
    keys.push(k);
    until.push(t);
    if (i % 1000 === 999) {
      now += 1000;
      ct.expire(now);
      for (let j = 0; j <= i; j++) {
        const there = until[j] > now;
        assert.equal(ct.rowOfKey(keys[j], 0) >= 0, there, `entry ${j} at ${now}: original`);
        assert.equal(ct.rowOfKey(keys[j], 1) >= 0, there, `entry ${j} at ${now}: reply`);
      }
    }
  }
  assert.ok(ct.listedCount > 1000 && ct.listedCount < n);
});

test('every table has one hidden class with its properties in it: made, written, flushed or loaded', () => {
  // (V8's own view: %HaveSameMap, %HasFastProperties; a table whose accessors were closures of its
  // own had a class of its own, and all but the first table made kept their properties in a
  // dictionary, each read of the tuple hash a lookup by name)
  setFlagsFromString('--allow-natives-syntax');
  const sameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;
  const fast = new Function('o', 'return %HasFastProperties(o)') as (o: object) => boolean;
  const first = new Conntrack();
  const written = new Conntrack();
  for (let i = 0; i < 40; i++) written.confirm(written.track(tcp(i), { syn: true }, i * SEC).entry);
  const flushed = new Conntrack();
  flushed.confirm(flushed.track(udp(1), undefined, 0).entry);
  flushed.flush();
  const loaded = load(JSON.parse(save(written, Conntrack)) as Json, Conntrack);
  const loadedEmpty = load(JSON.parse(save(new Conntrack(), Conntrack)) as Json, Conntrack);
  for (const [what, ct] of Object.entries({ written, flushed, loaded, loadedEmpty })) {
    assert.ok(fast(ct), `${what}: properties in a dictionary`);
    assert.ok(sameMap(first, ct), `${what}: a hidden class of its own`);
  }
  assert.equal(save(loaded, Conntrack), save(written, Conntrack));
});
