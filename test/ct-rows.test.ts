/**
 * Conntrack's row API for the flow cache's replay (src/trace/replay.ts) against the datapath's own
 * writes: an entry written by key as a CtRow (`ctRowOf`, `insertRow`) leaves the table as
 * track's miss and confirm did, and a refresh by row (`rowOfKey`, `rowIs`, `refreshRow`) as
 * track's hit did, a later or an earlier expiry (the same list, index, lookups, earliest expiry and
 * what expires first); `rowIs` tells the entry a lookup found from one whose other tuple, status,
 * TCP state or mark differ.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Conntrack, ctRowOf, type CtEntryData, type Tuple } from '../src/kernel/conntrack.ts';
import { encodeData } from '../src/kernel/data.ts';

const tuple = (proto: number, src: string, sport: number, dst: string, dport: number): Tuple => ({
  proto,
  src,
  dst,
  sport,
  dport,
});

const a = tuple(6, '10.244.0.5', 40000, '10.244.1.5', 8080);
const aReply = tuple(6, '10.244.1.5', 8080, '10.244.0.5', 40000);
// the reply of a flow whose destination a DNAT changed: the same original, another reply
const natReply = tuple(6, '10.244.2.9', 8080, '10.244.0.5', 40000);
const b = tuple(17, '10.0.0.10', 51234, '10.0.0.11', 4789);

const SEC = 1_000_000;

const state = (ct: Conntrack) =>
  JSON.stringify(encodeData({ entries: ct.entries, index: ct.index }, {}, '$')) +
  `|${ct.noExpiryBefore}|${ct.listedCount}`;

/** a new entry for tuple t, as the datapath makes one: track's miss, then confirm */
function made(ct: Conntrack, t: Tuple, flags: { syn?: boolean } | undefined, now: number): void {
  const r = ct.track(t, flags, now);
  assert.ok(r.isNew);
  ct.confirm(r.entry);
}

/** the same table by rows: each entry of `from` (in its list's order) inserted by its CtRow */
function byRows(from: Conntrack): Conntrack {
  const ct = new Conntrack();
  for (const d of from.entries) {
    const row = ctRowOf(d);
    assert.ok(row, 'a regular entry has a row');
    ct.insertRow(row, row.keys, d.expires, d.streamTs);
  }
  return ct;
}

const dataOf = (ct: Conntrack, t: Tuple): CtEntryData => {
  const hit = ct.find(t);
  assert.ok(hit);
  return hit.entry.data();
};

test('entries inserted by their rows are the entries the datapath made', () => {
  const dp = new Conntrack();
  made(dp, a, { syn: true }, SEC);
  made(dp, b, undefined, 2 * SEC);
  const rows = byRows(dp);
  assert.equal(state(rows), state(dp));
  for (const t of [a, aReply, b]) {
    assert.deepEqual(dataOf(rows, t), dataOf(dp, t));
    assert.equal(rows.find(t)?.dir, dp.find(t)?.dir);
  }
});

test('a refresh by row writes what track’s hit writes, a later or an earlier expiry', () => {
  const dp = new Conntrack();
  made(dp, a, { syn: true }, SEC);
  made(dp, b, undefined, SEC);
  // the SYN-ACK, the ACK (a later expiry: ESTABLISHED), a RST (an earlier one: CLOSE, before b's)
  const hits: [Tuple, { syn?: boolean; ack?: boolean; rst?: boolean }][] = [
    [aReply, { syn: true, ack: true }],
    [a, { ack: true }],
    [a, { rst: true }],
  ];
  let now = 2 * SEC;
  for (const [t, flags] of hits) {
    const rows = byRows(dp);
    const before = ctRowOf(dataOf(dp, a))!;
    assert.equal(dp.track(t, flags, now).isNew, false);
    const after = dataOf(dp, a);
    const r = rows.rowOfKey(before.keys, 0);
    assert.ok(r >= 0);
    assert.ok(rows.rowIs(r, before.keys, before));
    rows.refreshRow(r, ctRowOf(after)!, after.expires);
    assert.equal(state(rows), state(dp), `after ${after.tcpState}`);
    // what expires first goes first, in both
    const late = now + 20 * SEC;
    const [x, y] = [byRows(dp), rows];
    x.expire(late);
    y.expire(late);
    assert.equal(state(y), state(x));
    now += SEC;
  }
  assert.equal(dataOf(dp, a).tcpState, 'CLOSE', 'the last hit shortened the expiry');
});

test('rowOfKey finds by either tuple; rowIs refuses an entry that differs but for the times', () => {
  const ct = new Conntrack();
  made(ct, a, { syn: true }, SEC);
  const d = dataOf(ct, a);
  const row = ctRowOf(d)!;
  assert.ok(ct.rowOfKey(row.keys, 0) >= 0);
  assert.ok(ct.rowOfKey(row.keys, 1) >= 0);
  assert.equal(ct.rowOfKey(ctRowOf({ ...d, orig: b, reply: { ...b, src: b.dst, dst: b.src } })!.keys, 0), -1);
  const r = ct.rowOfKey(row.keys, 0);
  assert.ok(ct.rowIs(r, row.keys, row));
  // the times are not compared (a hit reads past them: the refresh writes them)
  assert.ok(ct.rowIs(r, row.keys, ctRowOf({ ...d, expires: 1, streamTs: 5 })!));
  const differs: [string, CtEntryData][] = [
    ['the reply tuple', { ...d, reply: natReply }],
    ['the TCP state', { ...d, tcpState: 'ESTABLISHED' }],
    ['a status bit', { ...d, assured: !d.assured }],
    ['the mark', { ...d, mark: 7 }],
  ];
  for (const [what, x] of differs) {
    const other = ctRowOf(x)!;
    assert.equal(ct.rowIs(r, other.keys, other), false, what);
  }
});

test('ctRowOf refuses what the columns keep as an object', () => {
  const ct = new Conntrack();
  made(ct, a, { syn: true }, SEC);
  const d = dataOf(ct, a);
  assert.equal(ctRowOf({ ...d, orig: { ...a, src: '10.244.00.5' } }), undefined);
  assert.equal(ctRowOf({ ...d, mark: 'x' as unknown as number }), undefined);
});
