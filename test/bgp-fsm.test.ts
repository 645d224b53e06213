/** The BGP session FSM (src/bgp/fsm.ts) between two podwalk peers, the clock driven by the test. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { peerDeadline, type PeerConfig } from '../src/bgp/fsm.ts';
import { Pair } from './bgp-pair.ts';
import { BGP_ERROR, BGP_OPEN_ERROR } from '../src/wire/index.ts';
import type { BgpAttr } from '../src/wire/bgp.ts';

const SEC = 1_000_000;
const base = {
  localAs: 64512,
  peerAs: 64512,
  holdTime: 240,
  connectRetryTime: 5,
  addPath: true,
  gracefulRestartTime: 120,
};
const cfgA: PeerConfig = {
  ...base,
  localId: '192.168.1.10',
  localAddress: '192.168.1.10',
  peerAddress: '192.168.1.11',
  passive: false,
  originates: ['10.244.0.0/26'],
};
const cfgB: PeerConfig = {
  ...base,
  localId: '192.168.1.11',
  localAddress: '192.168.1.11',
  peerAddress: '192.168.1.10',
  passive: true,
  originates: ['10.244.0.64/26'],
};

test('active and passive peer reach Established through every state and exchange their blocks', () => {
  const w = new Pair(cfgA, cfgB);
  w.feed(1, { kind: 'start' });
  w.feed(0, { kind: 'start' });
  assert.deepEqual(w.states[0], ['Connect', 'OpenSent', 'OpenConfirm', 'Established']);
  assert.deepEqual(w.states[1], ['Active', 'OpenSent', 'OpenConfirm', 'Established']);
  const [a, b] = w.peers;
  assert.equal(a.holdTime, 240);
  assert.deepEqual(
    [...a.ribIn.values()].map((r) => [r.prefix, r.pathId, r.nextHop]),
    [['10.244.0.64/26', 1, '192.168.1.11']],
  );
  assert.deepEqual(
    [...b.ribIn.values()].map((r) => [r.prefix, r.pathId, r.nextHop]),
    [['10.244.0.0/26', 1, '192.168.1.10']],
  );
  assert.deepEqual(
    w.sent[0].map((m) => m.kind),
    ['open', 'keepalive', 'update', 'update'],
  );
  // a borrowed /32 comes and goes
  w.feed(1, { kind: 'announce', prefixes: ['10.244.0.5/32'] });
  assert.deepEqual(
    [...w.peers[0].ribIn.values()].map((r) => r.prefix),
    ['10.244.0.64/26', '10.244.0.5/32'],
  );
  w.feed(1, { kind: 'withdraw', prefixes: ['10.244.0.5/32'] });
  assert.deepEqual(
    [...w.peers[0].ribIn.values()].map((r) => r.prefix),
    ['10.244.0.64/26'],
  );
});

test('keepalives every hold/3 keep the session up; cut the wire and the hold timer takes it and its routes down', () => {
  const w = new Pair(cfgA, cfgB);
  w.feed(1, { kind: 'start' });
  w.feed(0, { kind: 'start' });
  const before = w.sent[0].length;
  w.advance(10 * 60 * SEC);
  assert.equal(w.peers[0].state, 'Established');
  // 600 s at one KEEPALIVE per 80 s
  assert.equal(w.sent[0].slice(before).filter((m) => m.kind === 'keepalive').length, 7);
  w.cut = true;
  // the last KEEPALIVE arrived at 560 s: the hold timer runs out 240 s after it, whatever came since
  w.advance((560 + 239) * SEC);
  assert.equal(w.peers[0].state, 'Established', 'not before the hold time');
  w.advance((560 + 240) * SEC);
  for (const p of w.peers) {
    assert.equal(p.state, 'Idle');
    assert.equal(p.ribIn.size, 0);
    assert.deepEqual(p.lastNotification, { code: BGP_ERROR.HOLD_TIMER_EXPIRED, subcode: 0, sent: true });
  }
});

test('an AS mismatch is an OPEN error: NOTIFICATION Bad Peer AS and both Idle', () => {
  const w = new Pair({ ...cfgA, peerAs: 64513 }, cfgB);
  w.feed(1, { kind: 'start' });
  w.feed(0, { kind: 'start' });
  assert.equal(w.peers[0].state, 'Idle');
  assert.equal(w.peers[1].state, 'Idle');
  assert.deepEqual(w.peers[0].lastNotification, {
    code: BGP_ERROR.OPEN_MESSAGE,
    subcode: BGP_OPEN_ERROR.BAD_PEER_AS,
    sent: true,
  });
  assert.deepEqual(w.peers[1].lastNotification, {
    code: BGP_ERROR.OPEN_MESSAGE,
    subcode: BGP_OPEN_ERROR.BAD_PEER_AS,
    sent: false,
  });
});

test('no listener: Connect → Idle (RFC 4271 8.2.2, Event 18), and without automatic start it stays there', () => {
  const w = new Pair(cfgA, cfgB);
  w.feed(0, { kind: 'start' });
  assert.deepEqual(w.states[0], ['Connect', 'Idle']);
  assert.equal(peerDeadline(w.peers[0]), undefined, 'no timer runs: the ConnectRetryTimer was stopped');
  w.feed(1, { kind: 'start' });
  w.advance(60 * SEC);
  assert.equal(w.peers[0].state, 'Idle');
});

test("no listener, with BIRD's timers: Connect → Idle → Active, a new connection after the connect delay", () => {
  const bird = { connectDelayTime: 2, errorWaitTime: [5, 30] as [number, number] };
  const w = new Pair({ ...cfgA, ...bird }, { ...cfgB, ...bird });
  w.feed(0, { kind: 'start' });
  // BIRD's start: Active for the connect delay, then Connect; refused: Idle, Active again
  assert.deepEqual(w.states[0], ['Active']);
  assert.equal(peerDeadline(w.peers[0]), 2 * SEC);
  w.advance(2 * SEC);
  assert.deepEqual(w.states[0], ['Active', 'Connect', 'Idle', 'Active']);
  assert.equal(peerDeadline(w.peers[0]), 4 * SEC);
  w.feed(1, { kind: 'start' });
  w.advance(4 * SEC);
  assert.equal(w.peers[0].state, 'Established');
  assert.equal(w.peers[1].state, 'Established');
});

test("BIRD's startup delay after an error: the session starts again error wait time (5 s) later", () => {
  const bird = { connectDelayTime: 2, errorWaitTime: [5, 30] as [number, number] };
  const w = new Pair({ ...cfgA, ...bird }, { ...cfgB, ...bird });
  w.feed(1, { kind: 'start' });
  w.feed(0, { kind: 'start' });
  w.advance(2 * SEC);
  assert.equal(w.peers[0].state, 'Established');
  // the wire is cut: the hold timer expires 240 s after the last message received, Idle
  w.cut = true;
  const last = w.now;
  w.advance(last + 240 * SEC);
  assert.equal(w.peers[0].state, 'Idle');
  assert.equal(w.peers[0].lastNotification?.code, BGP_ERROR.HOLD_TIMER_EXPIRED);
  assert.equal(w.peers[0].startupDelay, 5);
  assert.equal(peerDeadline(w.peers[0]), last + 245 * SEC, 'it starts again after the startup delay');
  w.advance(last + 245 * SEC);
  assert.equal(w.peers[0].state, 'Active', 'started again: Active for the connect delay');
  w.advance(last + 247 * SEC);
  // the cut wire refuses the connection: Idle, Active again (a socket error is no session error)
  assert.notEqual(w.peers[0].state, 'Established');
});

test('graceful restart, the receiving side: a connection closed without a NOTIFICATION keeps the routes for the peer’s restart time; the End-of-RIB of the session back flushes what was not sent again', () => {
  const up = (b: PeerConfig) => {
    const w = new Pair(cfgA, b);
    w.feed(1, { kind: 'start' });
    w.feed(0, { kind: 'start' });
    w.feed(1, { kind: 'announce', prefixes: ['10.244.0.5/32'] });
    return w;
  };
  const prefixes = (w: Pair) => [...w.peers[0].ribIn.values()].map((r) => r.prefix);
  // B's BIRD killed: its kernel's FIN reaches A, no NOTIFICATION; nothing answers for B any more
  const w = up(cfgB);
  w.cut = true;
  w.feed(0, { kind: 'tcp-closed' });
  assert.notEqual(w.peers[0].state, 'Established');
  assert.deepEqual(prefixes(w), ['10.244.0.64/26', '10.244.0.5/32']);
  assert.equal(peerDeadline(w.peers[0]), w.now + 120 * SEC);
  w.advance(w.now + 119 * SEC);
  assert.equal(w.peers[0].ribIn.size, 2, 'kept for the restart time');
  w.advance(w.now + 1 * SEC);
  assert.equal(w.peers[0].ribIn.size, 0, 'gone when the restart timer expires');
  // B comes back within the restart time without the /32: its End-of-RIB takes it, the /26 stays
  const v = up(cfgB);
  v.cut = true;
  v.feed(0, { kind: 'tcp-closed' });
  v.advance(v.now + 30 * SEC);
  assert.equal(v.peers[0].ribIn.size, 2);
  v.cut = false;
  v.peers[1] = new Pair(cfgA, cfgB).peers[1];
  v.feed(1, { kind: 'start' });
  v.feed(0, { kind: 'start' });
  assert.equal(v.peers[0].state, 'Established');
  assert.deepEqual(prefixes(v), ['10.244.0.64/26']);
  assert.equal(v.peers[0].stale, undefined);
  assert.equal(peerDeadline(v.peers[0]) ?? 0, v.peers[0].keepaliveAt, 'no restart timer left');
  // a peer that did not advertise the capability: the routes go at once
  const x = up({ ...cfgB, gracefulRestartTime: 0 });
  x.feed(0, { kind: 'tcp-closed' });
  assert.equal(x.peers[0].ribIn.size, 0);
});

test("BIRD's buckets: a table larger than one message goes in UPDATEs of at most 4096 octets, withdrawals first", () => {
  // 1,000 blocks of one node: one attribute set, so one bucket; with ADD-PATH a /26 takes 9
  // octets (path id, length, 4 octets), after 19 + 4 + 21 octets of header and attributes
  // (ORIGIN 4, AS_PATH 3, NEXT_HOP 7, LOCAL_PREF 7): bgp_encode_nlri fills (4096 - 44) / 9 = 450
  const blocks = Array.from({ length: 1000 }, (_, i) => `10.${i >> 2}.${(i & 3) * 64}.0/26`);
  const w = new Pair({ ...cfgA, originates: blocks }, cfgB);
  w.feed(1, { kind: 'start' });
  w.feed(0, { kind: 'start' });
  const updates = w.sent[0].filter((m) => m.kind === 'update');
  assert.deepEqual(
    updates.map((m) => (m.kind === 'update' ? [m.withdrawn.length, m.nlri.length] : [])),
    [
      [0, 450],
      [0, 450],
      [0, 100],
      [0, 0], // End-of-RIB
    ],
  );
  assert.equal(w.peers[1].ribIn.size, 1000);
  // a withdrawal and an announcement queued together (a reflected route replaced by another
  // path): the withdraw bucket goes first, then the bucket of the announcement's attributes
  const attrs: BgpAttr[] = [
    { kind: 'origin', origin: 'igp' },
    { kind: 'as-path', segments: [] },
    { kind: 'next-hop', nextHop: '192.168.1.12' },
    { kind: 'local-pref', localPref: 100 },
  ];
  w.feed(0, { kind: 'export', announce: [{ prefix: '10.250.0.0/26', pathId: 2, attrs }], withdraw: [] });
  w.sent[0] = [];
  w.feed(0, {
    kind: 'export',
    announce: [{ prefix: '10.250.0.64/26', pathId: 3, attrs }],
    withdraw: [{ prefix: '10.250.0.0/26', pathId: 2 }],
  });
  assert.deepEqual(
    w.sent[0].map((m) => (m.kind === 'update' ? [m.withdrawn.length, m.nlri.length] : m.kind)),
    [
      [1, 0],
      [0, 1],
    ],
  );
});
