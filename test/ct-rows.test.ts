/**
 * Conntrack's row API for the flow cache's replay (src/trace/replay.ts): an entry given as a
 * CtRow (`ctRowOf`) and written by key (`insertRow`, `refreshRow`) leaves the table as the entry
 * given as data (`insertConfirmed`, `refresh`) does: the same list, index, lookups and expiry; and
 * `rowIs` tells the entry a lookup found from one whose other tuple, status, TCP state or mark differ.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Conntrack, ctRowOf, type CtEntryData, type Tuple } from '../src/kernel/conntrack.ts';
import { encodeData } from '../src/kernel/data.ts';

const tcp = (src: string, sport: number, dst: string, dport: number): Tuple => ({
  proto: 6,
  src,
  dst,
  sport,
  dport,
});

function entry(orig: Tuple, reply: Tuple, over: Partial<CtEntryData> = {}): CtEntryData {
  return {
    orig,
    reply,
    expires: 120_000_000,
    seenReply: true,
    assured: false,
    confirmed: true,
    streamTs: 0,
    mark: 0,
    snat: false,
    dnat: false,
    snatDone: false,
    dnatDone: false,
    tcpState: 'SYN_RECV',
    ...over,
  };
}

const a = tcp('10.244.0.5', 40000, '10.244.1.5', 8080);
const aReply = tcp('10.244.1.5', 8080, '10.244.0.5', 40000);
// the reply of a flow whose destination a DNAT changed: the same original, another reply
const natReply = tcp('10.244.2.9', 8080, '10.244.0.5', 40000);
const b = tcp('10.0.0.10', 51234, '10.0.0.11', 4789);
const bReply = tcp('10.0.0.11', 4789, '10.0.0.10', 51234);

const state = (ct: Conntrack) =>
  JSON.stringify(encodeData({ entries: ct.entries, index: ct.index }, {}, '$')) +
  `|${ct.noExpiryBefore}|${ct.listedCount}`;

test('an entry inserted by its row is the entry inserted as data', () => {
  const byData = new Conntrack();
  const byRow = new Conntrack();
  const es = [
    entry(a, aReply),
    entry({ ...b, proto: 17 }, { ...bReply, proto: 17 }, { tcpState: undefined }),
  ];
  for (const e of es) {
    byData.insertConfirmed(e);
    const row = ctRowOf(e);
    assert.ok(row, 'a regular entry has a row');
    byRow.insertRow(row, row.keys, e.expires, e.streamTs);
  }
  assert.equal(state(byRow), state(byData));
  for (const e of es) {
    assert.deepEqual(byRow.find(e.orig)?.entry.data(), byData.find(e.orig)?.entry.data());
    assert.deepEqual(byRow.find(e.reply)?.dir, 'reply');
  }
});

test('a refresh by row writes what a refresh by data writes, a later or an earlier expiry', () => {
  const established = entry(a, aReply, {
    tcpState: 'ESTABLISHED',
    assured: true,
    expires: 432_000_000_000,
  });
  // a FIN: the expiry comes nearer (the expiry heap and the table's earliest expiry are told)
  const closing = entry(a, aReply, { tcpState: 'FIN_WAIT', assured: true, expires: 1_000_000 });
  for (const [before, after] of [
    [entry(a, aReply), established],
    [established, closing],
  ]) {
    const byData = new Conntrack();
    const byRow = new Conntrack();
    byData.insertConfirmed(before);
    byRow.insertConfirmed(before);
    byData.insertConfirmed(entry(b, bReply, { expires: 50_000_000 }));
    byRow.insertConfirmed(entry(b, bReply, { expires: 50_000_000 }));
    assert.ok(byData.refresh(a, after));
    const was = ctRowOf(before)!;
    const now = ctRowOf(after)!;
    const r = byRow.rowOfKey(was.keys, 0);
    assert.ok(r >= 0);
    assert.ok(byRow.rowIs(r, was.keys, was));
    byRow.refreshRow(r, now, after.expires);
    assert.equal(state(byRow), state(byData));
    // what expires first goes first, in both
    byData.expire(2_000_000);
    byRow.expire(2_000_000);
    assert.equal(state(byRow), state(byData));
    assert.equal(byRow.find(a) === undefined, after === closing);
  }
});

test('rowOfKey finds by either tuple; rowIs refuses an entry that differs but for the times', () => {
  const ct = new Conntrack();
  const e = entry(a, aReply);
  ct.insertConfirmed(e);
  const row = ctRowOf(e)!;
  assert.ok(ct.rowOfKey(row.keys, 0) >= 0);
  assert.ok(ct.rowOfKey(row.keys, 1) >= 0);
  assert.equal(ct.rowOfKey(ctRowOf(entry(b, bReply))!.keys, 0), -1);
  const r = ct.rowOfKey(row.keys, 0);
  assert.ok(ct.rowIs(r, row.keys, row));
  // the times are not compared (a hit reads past them: the refresh writes them)
  assert.ok(ct.rowIs(r, row.keys, ctRowOf({ ...e, expires: 1, streamTs: 5 })!));
  const differs: [string, CtEntryData][] = [
    ['the reply tuple', entry(a, natReply)],
    ['the TCP state', entry(a, aReply, { tcpState: 'ESTABLISHED' })],
    ['a status bit', entry(a, aReply, { assured: true })],
    ['the mark', entry(a, aReply, { mark: 7 })],
  ];
  for (const [what, d] of differs) {
    const other = ctRowOf(d)!;
    assert.equal(ct.rowIs(r, other.keys, other), false, what);
  }
});

test('ctRowOf refuses what the columns keep as an object', () => {
  assert.equal(ctRowOf(entry({ ...a, src: '10.244.00.5' }, aReply)), undefined);
  assert.equal(ctRowOf(entry(a, aReply, { mark: 'x' as unknown as number })), undefined);
});
