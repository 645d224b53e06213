/** The BGP-4 codec (src/wire/bgp.ts): round trips, the framing of a stream, and every malformation RFC 4271 names. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seededRandom } from '../src/kernel/world.ts';
import {
  AFI_IPV4,
  AS_TRANS,
  BGP_CEASE,
  BGP_ERROR,
  BGP_HEADER_ERROR,
  BGP_OPEN_ERROR,
  BGP_UPDATE_ERROR,
  bgpFrameLength,
  bgpLength,
  BgpWireError,
  emitBgp,
  formatCidr,
  intToIp4,
  openAs,
  openCapabilities,
  parseBgp,
  parseBgpStream,
  prefixMask,
  SAFI_UNICAST,
  WireError,
  type AsPathSegment,
  type BgpAttr,
  type BgpCapability,
  type BgpCodec,
  type BgpMessage,
  type BgpOpen,
  type BgpPrefix,
  type BgpUpdate,
} from '../src/wire/index.ts';

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, '').match(/../g) ?? [], (h) => parseInt(h, 16));
const MARKER = 'ff'.repeat(16);
const AS4: BgpCodec = { as4: true, addPath: false };
const AS2: BgpCodec = { as4: false, addPath: false };
const ADDPATH: BgpCodec = { as4: true, addPath: true };

const roundTrip = (m: BgpMessage, codec: BgpCodec = AS4) => {
  const b = emitBgp(m, codec);
  assert.equal(b.length, bgpLength(m, codec));
  const p = parseBgp(b, 0, b.length, codec);
  assert.deepEqual(p.repr, m);
  assert.equal(p.payloadEnd, b.length);
  return b;
};

function throwsBgp(f: () => unknown, code: number, subcode: number, msg: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof BgpWireError, `not a BgpWireError: ${String(e)}`);
    assert.match(e.message, msg);
    assert.deepEqual([e.code, e.subcode], [code, subcode], e.message);
    return true;
  });
}

const sampleOpen = (bgpId: string): BgpOpen => ({
  kind: 'open',
  version: 4,
  myAs: 64512,
  holdTime: 240,
  bgpId,
  params: [
    {
      kind: 'capabilities',
      caps: [
        { kind: 'multiprotocol', afi: AFI_IPV4, safi: SAFI_UNICAST },
        { kind: 'extended-message' },
        { kind: 'route-refresh' },
        {
          kind: 'graceful-restart',
          restarting: true,
          notification: true,
          time: 90,
          families: [{ afi: AFI_IPV4, safi: SAFI_UNICAST, forwarding: true }],
        },
        { kind: 'add-path', families: [{ afi: AFI_IPV4, safi: SAFI_UNICAST, sendReceive: 'receive' }] },
        { kind: 'as4', asn: 64512 },
      ],
    },
  ],
});

test('KEEPALIVE is the 19-octet header alone', () => {
  const b = roundTrip({ kind: 'keepalive' });
  assert.deepEqual(b, hex(`${MARKER} 0013 04`));
});

test('OPEN with capabilities: field by field', () => {
  const o = sampleOpen('192.168.1.10');
  const b = roundTrip(o);
  // version 4, AS 64512 (0xfc00), hold 240, id, 1 parameter (type 2) of capabilities
  assert.deepEqual(b.subarray(19, 28), hex('04 fc00 00f0 c0a8010a'));
  assert.equal(b[28], b.length - 29, 'optional parameters length');
  assert.deepEqual(
    b.subarray(29),
    hex(
      `02 ${(b.length - 31).toString(16).padStart(2, '0')}` +
        ' 0104 0001 0001' + // multiprotocol IPv4 unicast
        ' 0600' + // extended message
        ' 0200' + // route refresh
        ' 4006 c05a 0001 0180' + // graceful restart R N 90 s, IPv4 unicast, F set
        ' 4504 0001 0101' + // ADD-PATH IPv4 unicast receive
        ' 4104 0000fc00', // 4-octet AS 64512
    ),
  );
  assert.equal(openAs(o), 64512);
  assert.equal(openCapabilities(o).length, 6);
  const big: BgpOpen = {
    ...o,
    myAs: AS_TRANS,
    params: [{ kind: 'capabilities', caps: [{ kind: 'as4', asn: 4200000001 }] }],
  };
  roundTrip(big);
  assert.equal(openAs(big), 4200000001);
});

test('UPDATE with every attribute, in 4-octet and 2-octet AS sessions and with ADD-PATH', () => {
  const attrs: BgpAttr[] = [
    { kind: 'origin', origin: 'igp' },
    {
      kind: 'as-path',
      segments: [
        { kind: 'sequence', asns: [64512, 65001] },
        { kind: 'set', asns: [3, 4] },
      ],
    },
    { kind: 'next-hop', nextHop: '192.168.1.11' },
    { kind: 'med', med: 10 },
    { kind: 'local-pref', localPref: 100 },
    { kind: 'atomic-aggregate' },
    { kind: 'aggregator', asn: 64512, address: '192.168.1.11' },
    { kind: 'communities', communities: [64512 * 65536 + 7] },
    { kind: 'originator-id', originatorId: '192.168.1.11' },
    { kind: 'cluster-list', clusterList: ['1.0.0.1', '1.0.0.2'] },
    { kind: 'as4-path', segments: [{ kind: 'sequence', asns: [4200000001] }] },
    { kind: 'as4-aggregator', asn: 4200000001, address: '10.0.0.1' },
    {
      kind: 'unknown',
      code: 32,
      optional: true,
      transitive: true,
      data: hex('0000fc00 00000001 00000002'),
      partial: true,
    },
  ];
  const u: BgpUpdate = {
    kind: 'update',
    withdrawn: [{ prefix: '10.244.0.64/26' }, { prefix: '0.0.0.0/0' }],
    attrs,
    nlri: [{ prefix: '10.244.0.0/26' }, { prefix: '10.244.0.70/32' }, { prefix: '10.0.0.0/8' }],
  };
  const b4 = roundTrip(u, AS4);
  const b2 = roundTrip(u, AS2);
  // AS_PATH: 2 segments of 2 ASNs cost 4 octets more each with 4-octet ASNs; AGGREGATOR 2 more
  assert.equal(b4.length - b2.length, 2 * 2 * 2 + 2);
  // 10.244.0.0/26 is 1 + 4 octets, /8 is 1 + 1, 0/0 is 1
  assert.deepEqual(b4.subarray(b4.length - 12), hex('1a 0af40000 20 0af40046 08 0a'));
  const withIds = {
    ...u,
    withdrawn: u.withdrawn.map((p, i) => ({ ...p, pathId: i + 1 })),
    nlri: u.nlri.map((p, i) => ({ ...p, pathId: 0x10000 + i })),
  };
  const ba = roundTrip(withIds, ADDPATH);
  assert.equal(ba.length - b4.length, 4 * 5);
  // End-of-RIB for IPv4 unicast (RFC 4724): an empty UPDATE
  assert.deepEqual(
    roundTrip({ kind: 'update', withdrawn: [], attrs: [], nlri: [] }),
    hex(`${MARKER} 0017 02 0000 0000`),
  );
});

test('NOTIFICATION and ROUTE-REFRESH', () => {
  const shutdown = new TextEncoder().encode('maintenance');
  const n = roundTrip({
    kind: 'notification',
    code: BGP_ERROR.CEASE,
    subcode: BGP_CEASE.ADMINISTRATIVE_SHUTDOWN,
    data: Uint8Array.of(shutdown.length, ...shutdown),
  });
  assert.deepEqual(n.subarray(16, 22), hex(`00 21 03 06 02 0b`));
  roundTrip({
    kind: 'notification',
    code: BGP_ERROR.HOLD_TIMER_EXPIRED,
    subcode: 0,
    data: new Uint8Array(0),
  });
  assert.deepEqual(
    roundTrip({ kind: 'route-refresh', afi: AFI_IPV4, subtype: 1, safi: SAFI_UNICAST }),
    hex(`${MARKER} 0017 05 0001 01 01`),
  );
});

test('a stream of messages splits at message boundaries; a partial message waits for more', () => {
  const msgs: BgpMessage[] = [
    sampleOpen('192.168.1.11'),
    { kind: 'keepalive' },
    { kind: 'update', withdrawn: [], attrs: [], nlri: [] },
  ];
  const parts = msgs.map((m) => emitBgp(m));
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  assert.deepEqual(parseBgpStream(all), msgs);
  for (let cut = 0; cut < parts[0].length; cut++)
    assert.equal(bgpFrameLength(all, 0, cut), undefined, `cut at ${cut}`);
  assert.equal(bgpFrameLength(all, 0, all.length), parts[0].length);
});

test('truncations throw a BgpWireError naming what is missing', () => {
  const u: BgpUpdate = {
    kind: 'update',
    withdrawn: [{ prefix: '10.244.0.64/26' }],
    attrs: [
      { kind: 'origin', origin: 'igp' },
      { kind: 'as-path', segments: [{ kind: 'sequence', asns: [64512] }] },
      { kind: 'next-hop', nextHop: '192.168.1.11' },
    ],
    nlri: [{ prefix: '10.244.0.0/26' }],
  };
  for (const m of [u, sampleOpen('192.168.1.10')]) {
    const b = emitBgp(m);
    for (let cut = 0; cut < b.length; cut++) {
      assert.throws(() => parseBgp(b, 0, cut), BgpWireError, `cut at ${cut}`);
      // the length field too: every shorter claimed length is a malformed message
      const short = b.slice(0, cut);
      if (cut >= 19) {
        short[16] = cut >> 8;
        short[17] = cut & 0xff;
        // either malformed, or a shorter message that is whole by itself (an UPDATE cut before its NLRI)
        let whole: BgpMessage | undefined;
        try {
          whole = parseBgp(short, 0, cut).repr;
        } catch (e) {
          assert.ok(e instanceof BgpWireError, `length ${cut}: ${String(e)}`);
        }
        if (whole) assert.deepEqual(emitBgp(whole), short, `length ${cut}`);
      }
    }
  }
  throwsBgp(
    () => parseBgp(hex(MARKER), 0, 16),
    BGP_ERROR.MESSAGE_HEADER,
    BGP_HEADER_ERROR.BAD_MESSAGE_LENGTH,
    /BGP header truncated: need 19 octets, have 16/,
  );
  throwsBgp(
    () => parseBgp(hex(`${MARKER} 0017 02 0000`), 0, 21),
    BGP_ERROR.MESSAGE_HEADER,
    BGP_HEADER_ERROR.BAD_MESSAGE_LENGTH,
    /BGP message truncated: length field says 23 octets, have 21/,
  );
});

test('bad markers, lengths and types are Message Header Errors', () => {
  const ka = emitBgp({ kind: 'keepalive' });
  const bad = ka.slice();
  bad[5] = 0xfe;
  throwsBgp(
    () => parseBgp(bad, 0, bad.length),
    1,
    BGP_HEADER_ERROR.CONNECTION_NOT_SYNCHRONIZED,
    /marker is not all ones \(octet 5 is 0xfe\)/,
  );
  throwsBgp(() => parseBgp(hex(`${MARKER} 0012 04`), 0, 19), 1, 2, /length 18 outside 19\.\.4096/);
  throwsBgp(() => parseBgp(hex(`${MARKER} 1001 04`), 0, 19), 1, 2, /length 4097 outside 19\.\.4096/);
  const long = new Uint8Array(4097).fill(0);
  long.set(hex(`${MARKER} 1001 04`));
  assert.throws(() => parseBgp(long, 0, long.length), /outside 19\.\.4096/);
  // extended messages (RFC 8654) allow it
  assert.throws(
    () => parseBgp(long, 0, long.length, { ...AS4, extendedMessages: true }),
    /keepalive message length 4097, must be 19/,
  );
  throwsBgp(
    () => parseBgp(hex(`${MARKER} 0014 04 00`), 0, 20),
    1,
    2,
    /keepalive message length 20, must be 19/,
  );
  throwsBgp(
    () => parseBgp(hex(`${MARKER} 0014 03 06`), 0, 20),
    1,
    2,
    /notification message length 20, at least 21/,
  );
  throwsBgp(
    () => parseBgp(hex(`${MARKER} 0013 09`), 0, 19),
    1,
    BGP_HEADER_ERROR.BAD_MESSAGE_TYPE,
    /message type 9 unknown/,
  );
  throwsBgp(
    () => parseBgp(hex(`${MARKER} 001c 01 04fc0000f0c0a8010a`), 0, 28),
    1,
    2,
    /open message length 28, at least 29/,
  );
});

test('OPEN and UPDATE malformations carry the RFC 4271 subcodes', () => {
  const open = emitBgp(sampleOpen('192.168.1.10'));
  const o1 = open.slice();
  o1[28]--; // optional parameters length one short
  throwsBgp(() => parseBgp(o1, 0, o1.length), 1, 2, /optional parameters length \d+ does not match/);
  const o2 = open.slice();
  o2[31] = 65; // first capability becomes 4-octet AS with length 4: fine; make its length 3
  o2[32] = 3;
  throwsBgp(
    () => parseBgp(o2, 0, o2.length),
    BGP_ERROR.OPEN_MESSAGE,
    BGP_OPEN_ERROR.UNSPECIFIC,
    /capability 65 \(4-octet AS\) length 3, expected 4/,
  );

  const upd = (attrs: string, nlri = '') => {
    const a = hex(attrs);
    const n = hex(nlri);
    return hex(
      `${MARKER} ${(23 + a.length + n.length).toString(16).padStart(4, '0')} 02 0000 ${a.length.toString(16).padStart(4, '0')}` +
        attrs +
        nlri,
    );
  };
  const parse = (b: Uint8Array) => parseBgp(b, 0, b.length);
  const U = BGP_ERROR.UPDATE_MESSAGE;
  assert.deepEqual(parse(upd('40 01 01 00')).repr, {
    kind: 'update',
    withdrawn: [],
    attrs: [{ kind: 'origin', origin: 'igp' }],
    nlri: [],
  });
  throwsBgp(() => parse(upd('40 01 01 03')), U, BGP_UPDATE_ERROR.INVALID_ORIGIN_ATTRIBUTE, /ORIGIN 3/);
  throwsBgp(
    () => parse(upd('80 01 01 00')),
    U,
    BGP_UPDATE_ERROR.ATTRIBUTE_FLAGS_ERROR,
    /ORIGIN flags 0x80, expected 0x40/,
  );
  throwsBgp(() => parse(upd('60 01 01 00')), U, BGP_UPDATE_ERROR.ATTRIBUTE_FLAGS_ERROR, /ORIGIN flags 0x60/);
  throwsBgp(
    () => parse(upd('40 01 02 0000')),
    U,
    BGP_UPDATE_ERROR.ATTRIBUTE_LENGTH_ERROR,
    /ORIGIN length 2, expected 1/,
  );
  throwsBgp(
    () => parse(upd('40 03 05 c0a8010b00')),
    U,
    BGP_UPDATE_ERROR.ATTRIBUTE_LENGTH_ERROR,
    /NEXT_HOP length 5/,
  );
  throwsBgp(
    () => parse(upd('40 01 05 00')),
    U,
    BGP_UPDATE_ERROR.ATTRIBUTE_LENGTH_ERROR,
    /ORIGIN length 5 exceeds the 1 attribute octets left/,
  );
  throwsBgp(
    () => parse(upd('40 01 01 00 40 01 01 00')),
    U,
    BGP_UPDATE_ERROR.MALFORMED_ATTRIBUTE_LIST,
    /ORIGIN appears twice/,
  );
  throwsBgp(
    () => parse(upd('40 02 05 02 01 0000fc')),
    U,
    BGP_UPDATE_ERROR.MALFORMED_AS_PATH,
    /segment of 1 AS numbers truncated/,
  );
  throwsBgp(
    () => parse(upd('40 02 06 07 01 0000fc00')),
    U,
    BGP_UPDATE_ERROR.MALFORMED_AS_PATH,
    /segment type 7/,
  );
  throwsBgp(
    () => parse(upd('40 63 00')),
    U,
    BGP_UPDATE_ERROR.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
    /well-known attribute 99/,
  );
  throwsBgp(
    () => parse(upd('', '21 0a000000 00')),
    U,
    BGP_UPDATE_ERROR.INVALID_NETWORK_FIELD,
    /prefix length 33 > 32/,
  );
  throwsBgp(
    () => parse(upd('', '1a 0af400')),
    U,
    BGP_UPDATE_ERROR.INVALID_NETWORK_FIELD,
    /NLRI: prefix \/26 truncated: needs 4 octets, 3 left/,
  );
  throwsBgp(
    () => parseBgp(upd('', '1a 0af400'), 0, 27, ADDPATH),
    U,
    BGP_UPDATE_ERROR.INVALID_NETWORK_FIELD,
    /NLRI: prefix length missing at octet 4/,
  );
  throwsBgp(
    () => parseBgp(upd('', '1a 0af4'), 0, 26, ADDPATH),
    U,
    BGP_UPDATE_ERROR.INVALID_NETWORK_FIELD,
    /NLRI: path id truncated at octet 0/,
  );
  // an optional attribute podwalk does not know is kept as it came, flags included
  const unk = parse(upd('d0 63 0003 010203')).repr;
  assert.deepEqual(unk, {
    kind: 'update',
    withdrawn: [],
    attrs: [
      {
        kind: 'unknown',
        code: 99,
        optional: true,
        transitive: true,
        data: hex('010203'),
        extendedLength: true,
      },
    ],
    nlri: [],
  });
  assert.deepEqual(emitBgp(unk), upd('d0 63 0003 010203'));
  // RFC 4271 4.3: trailing bits past the prefix length are ignored
  assert.deepEqual((parse(upd('', '1a 0af400ff')).repr as BgpUpdate).nlri, [{ prefix: '10.244.0.192/26' }]);
});

test('emit refuses what it cannot write', () => {
  const u = (p: BgpPrefix): BgpUpdate => ({ kind: 'update', withdrawn: [], attrs: [], nlri: [p] });
  assert.throws(() => emitBgp(u({ prefix: '10.244.0.1/26' })), /host bits set/);
  assert.throws(() => emitBgp(u({ prefix: '10.244.0.0/26', pathId: 1 })), /no ADD-PATH/);
  assert.throws(() => emitBgp(u({ prefix: '10.244.0.0/26' }), ADDPATH), /needs a path id/);
  assert.throws(() => emitBgp(u({ prefix: '10.244.0/26' })), /not a\.b\.c\.d\/len/);
  const big: BgpUpdate = {
    kind: 'update',
    withdrawn: [],
    attrs: [],
    nlri: Array.from({ length: 1100 }, (_, i) => ({ prefix: formatCidr((0x0a000000 + i * 256) >>> 0, 24) })),
  };
  assert.throws(() => emitBgp(big), /BGP update message of 4423 octets exceeds 4096/);
  assert.throws(
    () =>
      emitBgp(
        {
          kind: 'update',
          withdrawn: [],
          attrs: [{ kind: 'as-path', segments: [{ kind: 'sequence', asns: [70000] }] }],
          nlri: [],
        },
        AS2,
      ),
    /2-octet AS number 70000 out of range/,
  );
  assert.throws(
    () =>
      emitBgp({
        kind: 'update',
        withdrawn: [],
        attrs: [{ kind: 'origin', origin: 'igp', partial: true }],
        nlri: [],
      }),
    /only optional transitive/,
  );
  assert.throws(() => emitBgp({ ...sampleOpen('1.2.3.4'), myAs: 70000 }), /My AS 70000 out of range/);
  assert.throws(() => emitBgp({ ...sampleOpen('1.2.3.400') }), WireError);
});

test('property: parse(emit(x)) == x for random messages in every codec (seeded)', () => {
  const rnd = seededRandom(0xb6b);
  const int = (n: number) => Math.floor(rnd() * n);
  const u32 = () => int(2 ** 32);
  const bool = () => rnd() < 0.5;
  const addr = () => intToIp4(u32());
  const bytes = (max: number) => Uint8Array.from({ length: int(max + 1) }, () => int(256));
  const list = <T>(max: number, f: () => T) => Array.from({ length: int(max + 1) }, f);
  for (const codec of [AS4, AS2, ADDPATH, { as4: false, addPath: true }]) {
    const asn = () => (codec.as4 ? u32() : int(65536));
    const prefix = (): BgpPrefix => {
      const len = int(33);
      const p = { prefix: formatCidr((u32() & prefixMask(len)) >>> 0, len) };
      return codec.addPath ? { ...p, pathId: u32() } : p;
    };
    const segs = (four: boolean): AsPathSegment[] =>
      list(3, () => ({
        kind: (['set', 'sequence', 'confed-sequence', 'confed-set'] as const)[int(4)],
        asns: Array.from({ length: 1 + int(6) }, () => (four ? u32() : int(65536))),
      }));
    const attrPool = (): BgpAttr[] => [
      { kind: 'origin', origin: (['igp', 'egp', 'incomplete'] as const)[int(3)] },
      { kind: 'as-path', segments: segs(codec.as4) },
      { kind: 'next-hop', nextHop: addr() },
      { kind: 'med', med: u32() },
      { kind: 'local-pref', localPref: u32() },
      { kind: 'atomic-aggregate' },
      { kind: 'aggregator', asn: asn(), address: addr() },
      { kind: 'communities', communities: list(4, u32), ...(bool() ? { partial: true as const } : {}) },
      { kind: 'originator-id', originatorId: addr() },
      { kind: 'cluster-list', clusterList: list(4, addr) },
      { kind: 'as4-path', segments: segs(true) },
      { kind: 'as4-aggregator', asn: u32(), address: addr() },
      { kind: 'unknown', code: 20 + int(200), optional: true, transitive: bool(), data: bytes(300) },
    ];
    const cap = (): BgpCapability => {
      const fam = () => ({ afi: int(65536), safi: int(256) });
      switch (int(9)) {
        case 0:
          return { kind: 'multiprotocol', ...fam() };
        case 1:
          return { kind: 'route-refresh' };
        case 2:
          return { kind: 'extended-message' };
        case 3:
          return {
            kind: 'graceful-restart',
            restarting: bool(),
            notification: bool(),
            time: int(4096),
            families: list(3, () => ({ ...fam(), forwarding: bool() })),
          };
        case 4:
          return { kind: 'as4', asn: u32() };
        case 5:
          return {
            kind: 'add-path',
            families: list(3, () => ({
              ...fam(),
              sendReceive: (['receive', 'send', 'both'] as const)[int(3)],
            })),
          };
        case 6:
          return { kind: 'enhanced-route-refresh' };
        case 7:
          return {
            kind: 'long-lived-graceful-restart',
            families: list(3, () => ({ ...fam(), forwarding: bool(), staleTime: int(1 << 24) })),
          };
        default:
          return { kind: 'unknown', code: 128 + int(64), data: bytes(8) };
      }
    };
    for (let i = 0; i < 300; i++) {
      let m: BgpMessage;
      switch (int(5)) {
        case 0:
          m = {
            kind: 'open',
            version: int(256),
            myAs: int(65536),
            holdTime: int(65536),
            bgpId: addr(),
            params: list(3, () =>
              bool()
                ? { kind: 'capabilities' as const, caps: list(5, cap) }
                : { kind: 'unknown' as const, type: 3 + int(200), data: bytes(10) },
            ),
          };
          break;
        case 1: {
          const pool = attrPool();
          const attrs = pool
            .filter(() => bool())
            .map((a) => (bool() && a.kind !== 'unknown' ? { ...a, extendedLength: true as const } : a));
          // any order the sender chooses
          for (let j = attrs.length - 1; j > 0; j--) {
            const k = int(j + 1);
            [attrs[j], attrs[k]] = [attrs[k], attrs[j]];
          }
          m = { kind: 'update', withdrawn: list(5, prefix), attrs, nlri: list(8, prefix) };
          break;
        }
        case 2:
          m = { kind: 'notification', code: int(256), subcode: int(256), data: bytes(20) };
          break;
        case 3:
          m = { kind: 'keepalive' };
          break;
        default:
          m = { kind: 'route-refresh', afi: int(65536), subtype: int(256), safi: int(256) };
      }
      const b = emitBgp(m, codec);
      assert.deepEqual(parseBgp(b, 0, b.length, codec).repr, m, `codec ${JSON.stringify(codec)} #${i}`);
    }
  }
});
