import { seededRandom } from '../src/kernel/world.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  emitFrame,
  emitIpv4Header,
  emitIpv4Packet,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  broadcastOf,
  cidrOf,
  coveringCidr,
  cidrsOverlap,
  cidrText,
  cidrWithin,
  formatCidr,
  formatMac,
  fragmentIpv4,
  frameLength,
  inPrefix,
  internetChecksum,
  internetChecksumOf,
  intToIp4,
  ip4ToInt,
  ipv4Length,
  IPPROTO_ICMP,
  IPPROTO_IPIP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  isValidIp4,
  isValidMac,
  maskToLen,
  parseCidr,
  parseIp4,
  parseFrame,
  parseIpv4Packet,
  parseMac,
  parseTcpOptions,
  prefixMask,
  readPcap,
  reassembleIpv4,
  sum16,
  VXLAN_PORT,
  WireError,
  writeFrame,
  writePcap,
  type Frame,
  type Ipv4Packet,
  type Ipv4Repr,
  type TcpOptions,
  type TcpRepr,
} from '../src/wire/index.ts';

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, '').match(/../g) ?? [], (h) => parseInt(h, 16));
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

const MAC_A = '62:a1:b2:c3:d4:e6';
const MAC_B = '0a:58:0a:f4:00:01';

function ip(src: string, dst: string, protocol: number, over: Partial<Ipv4Repr> = {}): Ipv4Repr {
  return { src, dst, protocol, ttl: 64, id: 0x1234, df: true, mf: false, fragOffset: 0, tos: 0, ...over };
}
function eth(payload: Frame['payload'], dst = MAC_B, src = MAC_A): Frame {
  const ethertype =
    payload.kind === 'arp' ? ETHERTYPE_ARP : payload.kind === 'ipv4' ? ETHERTYPE_IPV4 : 0x88b5;
  return { eth: { dst, src, ethertype }, payload };
}
function tcp(over: Partial<TcpRepr> = {}): TcpRepr {
  return {
    srcPort: 40000,
    dstPort: 80,
    seq: 1,
    ack: 0,
    flags: { syn: true },
    window: 64240,
    options: {},
    ...over,
  };
}
function tcpPacket(src: string, dst: string, t: TcpRepr, data = new Uint8Array(0)): Ipv4Packet {
  return { kind: 'ipv4', ip: ip(src, dst, IPPROTO_TCP), payload: { kind: 'tcp', tcp: t, data } };
}
function udpPacket(src: string, dst: string, data: Uint8Array, dstPort = 53): Ipv4Packet {
  return {
    kind: 'ipv4',
    ip: ip(src, dst, IPPROTO_UDP),
    payload: { kind: 'udp', udp: { srcPort: 33000, dstPort }, payload: { kind: 'raw', data } },
  };
}
const SYN_OPTS: TcpOptions = { mss: 1460, sackOk: true, timestamp: { val: 0x11223344, ecr: 0 }, wscale: 7 };

function vxlanFrame(inner: Frame): Frame {
  return eth({
    kind: 'ipv4',
    ip: ip('192.168.1.10', '192.168.1.11', IPPROTO_UDP, { df: false }),
    payload: {
      kind: 'udp',
      udp: { srcPort: 51234, dstPort: VXLAN_PORT, noChecksum: true },
      payload: { kind: 'vxlan', vxlan: { vni: 1 }, frame: inner },
    },
  });
}

function roundTrip(f: Frame): Uint8Array {
  const bytes = emitFrame(f);
  assert.equal(bytes.length, frameLength(f));
  assert.deepEqual(parseFrame(bytes), f);
  assert.deepEqual(emitFrame(parseFrame(bytes)), bytes);
  return bytes;
}

/* ---------- addresses ---------- */

test('addr: IPv4 and MAC parsing, formatting, validation', () => {
  assert.equal(ip4ToInt('10.244.0.5'), 0x0af40005);
  assert.equal(ip4ToInt('255.255.255.255'), 0xffffffff);
  assert.equal(ip4ToInt('0.0.0.0'), 0);
  assert.equal(intToIp4(0xc0a800c7), '192.168.0.199');
  for (const bad of [
    '',
    '1.2.3',
    '1.2.3.4.5',
    '256.1.1.1',
    '01.2.3.4',
    '1..2.3',
    '1.2.3.4 ',
    'a.b.c.d',
    '1.2.3.-4',
  ])
    assert.throws(() => ip4ToInt(bad), /invalid IPv4 address/, bad);
  assert.throws(() => intToIp4(2 ** 32), /invalid/);
  assert.equal(isValidIp4('10.0.0.1'), true);
  assert.equal(isValidIp4('10.0.0.256'), false);

  assert.deepEqual(parseMac('0A:58:0a:F4:00:01'), Uint8Array.of(0x0a, 0x58, 0x0a, 0xf4, 0, 1));
  assert.equal(formatMac(Uint8Array.of(0x0a, 0x58, 0x0a, 0xf4, 0, 1)), '0a:58:0a:f4:00:01');
  assert.equal(formatMac(Uint8Array.of(9, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa), 1), 'ff:ee:dd:cc:bb:aa');
  for (const bad of ['0a:58:0a:f4:00', '0a:58:0a:f4:00:0g', '0a-58-0a-f4-00-01', '0a:58:0a:f4:00:011'])
    assert.equal(isValidMac(bad), false, bad);
  assert.throws(() => parseMac('zz:58:0a:f4:00:01'), /invalid MAC/);
});

test('addr: CIDR, masks and prefix membership', () => {
  assert.deepEqual(parseCidr('10.244.0.0/24'), { addr: 0x0af40000, len: 24 });
  assert.deepEqual(parseCidr('0.0.0.0/0'), { addr: 0, len: 0 });
  assert.deepEqual(parseCidr('10.244.0.1/24', { allowHostBits: true }), { addr: 0x0af40001, len: 24 });
  assert.throws(() => parseCidr('10.244.0.1/24'), /host bits set \(network is 10\.244\.0\.0\/24\)/);
  for (const bad of [
    '10.244.0.0',
    '10.244.0.0/33',
    '10.244.0.0/',
    '10.244.0.0/08',
    '10.244.0/24',
    '10.0.0.0/-1',
    '10.0.0.0/2.5',
    '10.0.0.0/x',
    '',
  ]) {
    assert.throws(() => parseCidr(bad), /invalid/, bad);
    assert.equal(cidrOf(bad), undefined, bad);
  }
  assert.deepEqual(cidrOf('10.244.0.7/24'), { addr: 0x0af40007, len: 24 });
  assert.equal(cidrText({ addr: 0x0af40007, len: 24 }), '10.244.0.0/24');
  assert.equal(broadcastOf({ addr: 0x0af40007, len: 24 }), 0x0af400ff);
  assert.equal(cidrWithin({ addr: 0x0af40100, len: 24 }, { addr: 0x0af40000, len: 16 }), true);
  assert.equal(cidrWithin({ addr: 0x0af40000, len: 16 }, { addr: 0x0af40100, len: 24 }), false);
  assert.equal(cidrsOverlap({ addr: 0x0af40000, len: 16 }, { addr: 0x0af40100, len: 24 }), true);
  assert.equal(cidrsOverlap({ addr: 0x0af40000, len: 24 }, { addr: 0x0af40100, len: 24 }), false);
  assert.deepEqual(coveringCidr([0x0af40005, 0x0af40109]), { addr: 0x0af40000, len: 23 });
  assert.deepEqual(coveringCidr([0x0af40005]), { addr: 0x0af40005, len: 32 });
  assert.deepEqual(coveringCidr([0x0af40005], 16), { addr: 0x0af40000, len: 16 });
  assert.deepEqual(coveringCidr([0x0a000001, 0xc0a80001]), { addr: 0, len: 0 });
  assert.throws(() => coveringCidr([]), /no address/);
  assert.equal(maskToLen(0xffffff00), 24);
  assert.equal(maskToLen(0), 0);
  assert.equal(maskToLen(0xffffffff), 32);
  assert.equal(maskToLen(0xff00ff00), undefined);
  assert.equal(parseIp4('10.0.0.01'), undefined);
  assert.equal(parseIp4('10.0.0.1'), 0x0a000001);
  assert.equal(prefixMask(0), 0);
  assert.equal(prefixMask(24), 0xffffff00);
  assert.equal(prefixMask(32), 0xffffffff);
  assert.throws(() => prefixMask(33), /invalid prefix length/);
  assert.equal(inPrefix('10.244.1.7', '10.244.0.0', 16), true);
  assert.equal(inPrefix('10.245.1.7', '10.244.0.0', 16), false);
  assert.equal(inPrefix(ip4ToInt('200.1.2.3'), 0, 0), true);
  assert.equal(inPrefix('255.255.255.255', '255.255.255.254', 31), true);
  assert.equal(formatCidr(0x0af40000, 16), '10.244.0.0/16');
});

/* ---------- checksums: known vectors ---------- */

test('checksum: RFC 1071 section 3 example and split ranges', () => {
  const b = hex('0001 f203 f4f5 f6f7');
  assert.equal(sum16(b) % 0xffff, 0xddf2 % 0xffff); // unfolded 0x2ddf0 folds to 0xddf2
  assert.equal(internetChecksum(b), 0x220d);
  // several ranges, including odd-length ones, give the checksum of their concatenation
  assert.equal(
    internetChecksumOf([b.subarray(0, 3), b.subarray(3, 4), b.subarray(4, 7), b.subarray(7)]),
    0x220d,
  );
  assert.equal(internetChecksumOf([hex('01'), hex('02 03')]), internetChecksum(hex('0102 0300')));
});

test('ipv4: header emit matches the well-known example (checksum 0xb861)', () => {
  const buf = new Uint8Array(20);
  emitIpv4Header(ip('192.168.0.1', '192.168.0.199', IPPROTO_UDP, { id: 0 }), 0x73 - 20, buf, 0);
  assert.equal(toHex(buf), '450000730000400040' + '11b861c0a80001c0a800c7');
});

/* Genuine Linux 6.x SYN / SYN-ACK / ACK captured on lo (TCP checksums fixed up: lo leaves them partial). */
const LINUX_SYN =
  '00000000000000000000000008004500003c66f940004006d5c07f0000017f0000018b8cb04323ac00c100000000a002ffd7e43e00000204ffd70402080a6a8ca0f6000000000103030a';
const LINUX_SYNACK =
  '00000000000000000000000008004500003c0000400040063cba7f0000017f000001b0438b8ca18280b123ac00c2a012ffcb08a700000204ffd70402080a5aa45eba6a8ca0f60103030a';
const LINUX_ACK =
  '00000000000000000000000008004500003466fa40004006d5c77f0000017f0000018b8cb04323ac00c2a18280b280100040312600000101080a6a8ca0f65aa45eba';

test('tcp: Linux SYN, SYN-ACK and ACK byte vectors parse and re-emit byte-exactly', () => {
  const syn = parseFrame(hex(LINUX_SYN));
  assert.ok(syn.payload.kind === 'ipv4' && syn.payload.payload.kind === 'tcp');
  assert.deepEqual(syn.payload.ip, ip('127.0.0.1', '127.0.0.1', IPPROTO_TCP, { id: 0x66f9 }));
  assert.deepEqual(syn.payload.payload.tcp, {
    srcPort: 35724,
    dstPort: 45123,
    seq: 0x23ac00c1,
    ack: 0,
    flags: { syn: true },
    window: 65495,
    options: { mss: 65495, sackOk: true, timestamp: { val: 0x6a8ca0f6, ecr: 0 }, wscale: 10 },
  });
  const synack = parseFrame(hex(LINUX_SYNACK));
  assert.ok(synack.payload.kind === 'ipv4' && synack.payload.payload.kind === 'tcp');
  assert.deepEqual(synack.payload.payload.tcp.flags, { syn: true, ack: true });
  const ack = parseFrame(hex(LINUX_ACK));
  assert.ok(ack.payload.kind === 'ipv4' && ack.payload.payload.kind === 'tcp');
  assert.deepEqual(ack.payload.payload.tcp.options, { timestamp: { val: 0x6a8ca0f6, ecr: 0x5aa45eba } });
  for (const v of [LINUX_SYN, LINUX_SYNACK, LINUX_ACK]) assert.equal(toHex(emitFrame(parseFrame(hex(v)))), v);
});

test('tcp: option layouts are exactly Linux tcp_options_write()', () => {
  const opts = (o: TcpOptions) => {
    const b = emitIpv4Packet(tcpPacket('10.0.0.1', '10.0.0.2', tcp({ options: o })));
    return toHex(b.subarray(40, 20 + ((b[32] >> 4) << 2)));
  };
  assert.equal(opts(SYN_OPTS), '020405b4' + '0402080a' + '11223344' + '00000000' + '01030307');
  assert.equal(opts({ timestamp: { val: 1, ecr: 2 } }), '0101080a' + '00000001' + '00000002');
  assert.equal(opts({ mss: 1460, sackOk: true, wscale: 7 }), '020405b4' + '01010402' + '01030307');
  assert.equal(opts({ mss: 536 }), '02040218');
  assert.equal(opts({}), '');
});

test('tcp: options parse in any order with NOP/EOL padding; malformed options throw', () => {
  const b = hex('01 03 03 07 08 0a 00 00 00 05 00 00 00 06 01 04 02 02 04 05 b4 00 00 00');
  assert.deepEqual(parseTcpOptions(b, 0, b.length), {
    wscale: 7,
    timestamp: { val: 5, ecr: 6 },
    sackOk: true,
    mss: 1460,
  });
  // unknown option (kind 30, MPTCP) skipped; EOL stops parsing even if garbage follows
  const c = hex('1e 04 aa bb 02 04 05 78 00 ff ff ff');
  assert.deepEqual(parseTcpOptions(c, 0, c.length), { mss: 1400 });
  assert.throws(() => parseTcpOptions(hex('02 03 05 b4'), 0, 4), /kind 2 has length 3, expected 4/);
  assert.throws(() => parseTcpOptions(hex('08 0a 00 00'), 0, 4), /kind 8 has bad length 10/);
  assert.throws(() => parseTcpOptions(hex('01 01 01 02'), 0, 4), /bad length 0/);
  assert.throws(() => parseTcpOptions(hex('05 01 00 00'), 0, 4), /bad length 1/);
});

/* ---------- per-header round trips ---------- */

test('round trips: ARP, TCP segments, UDP, ICMP, raw', () => {
  const arp = (op: 1 | 2) =>
    eth(
      {
        kind: 'arp',
        arp: {
          op,
          senderMac: MAC_A,
          senderIp: '10.244.0.5',
          targetMac: '00:00:00:00:00:00',
          targetIp: '10.244.0.1',
        },
      },
      'ff:ff:ff:ff:ff:ff',
    );
  const arpBytes = roundTrip(arp(1));
  assert.equal(toHex(arpBytes.subarray(12, 22)), '0806' + '0001080006040001');
  assert.equal(arpBytes.length, 42); // not padded to 60
  roundTrip(arp(2));

  roundTrip(eth(tcpPacket('10.244.0.5', '10.96.0.10', tcp({ options: SYN_OPTS }))));
  roundTrip(
    eth(
      tcpPacket(
        '10.244.1.9',
        '10.244.0.5',
        tcp({
          flags: { ack: true, psh: true },
          seq: 0xfffffff0,
          ack: 0x80000000,
          options: { timestamp: { val: 9, ecr: 8 } },
        }),
        new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n'),
      ),
    ),
  );
  roundTrip(
    eth(
      tcpPacket(
        '1.1.1.1',
        '2.2.2.2',
        tcp({ flags: { fin: true, ack: true, rst: true, urg: true } }),
        hex('ab'),
      ),
    ),
  );
  roundTrip(eth(udpPacket('10.244.0.5', '10.96.0.10', hex('1234 0100 0001 0000 0000 0000 03'))));
  roundTrip(eth(udpPacket('10.244.0.5', '10.96.0.10', new Uint8Array(0))));
  const icmp = (type: number, code: number, id: number, seq: number, data: Uint8Array, mtu?: number): Frame =>
    eth({
      kind: 'ipv4',
      ip: ip('10.244.0.5', '10.244.1.9', IPPROTO_ICMP),
      payload: {
        kind: 'icmp',
        icmp: mtu === undefined ? { type, code, id, seq } : { type, code, id, seq, mtu },
        data,
      },
    });
  roundTrip(icmp(8, 0, 0x1c2f, 1, hex('0001020304050607')));
  roundTrip(icmp(0, 0, 0x1c2f, 1, hex('0001020304050607')));
  const quoted = emitIpv4Packet(tcpPacket('10.244.0.5', '10.244.1.9', tcp())).subarray(0, 28);
  const fragNeeded = roundTrip(icmp(3, 4, 0, 0, quoted, 1450));
  assert.equal(toHex(fragNeeded.subarray(34, 42)).replace(/^(....)..../, '$1xxxx'), '0304xxxx000005aa');
  roundTrip(icmp(11, 0, 0, 0, quoted));
  roundTrip(icmp(3, 3, 0, 0, quoted));
  roundTrip(eth({ kind: 'raw', data: hex('deadbeef') }));
  roundTrip(
    eth({
      kind: 'ipv4',
      ip: ip('10.0.0.1', '10.0.0.2', 47),
      payload: { kind: 'raw', data: hex('0000 6558') },
    }),
  );
});

test('udp: a computed checksum of 0 is sent as 0xffff', () => {
  const probe = emitIpv4Packet(udpPacket('10.0.0.1', '10.0.0.2', hex('0000')));
  const c = (probe[26] << 8) | probe[27];
  // a payload word equal to the checksum of the zero-payload datagram makes the one's-complement sum 0xffff
  const b = emitIpv4Packet(udpPacket('10.0.0.1', '10.0.0.2', Uint8Array.of(c >> 8, c & 255)));
  assert.equal(toHex(b.subarray(26, 28)), 'ffff');
  assert.deepEqual(parseIpv4Packet(b), udpPacket('10.0.0.1', '10.0.0.2', Uint8Array.of(c >> 8, c & 255)));
});

test('round trips: VXLAN (vni 1) carrying a TCP SYN, and IPIP', () => {
  const inner = eth(tcpPacket('10.244.0.5', '10.244.1.9', tcp({ options: SYN_OPTS })), MAC_A, MAC_B);
  const vx = roundTrip(vxlanFrame(inner));
  assert.equal(
    toHex(vx.subarray(40, 42)),
    '0000',
    'outer UDP checksum 0 (noChecksum: a vxlan device with noudpcsum)',
  );
  assert.equal(toHex(vx.subarray(42, 50)), '0800000000000100', 'VXLAN header, vni 1');
  assert.equal(vx.length, 14 + 20 + 8 + 8 + 14 + 20 + 40);
  const withCsum = vxlanFrame(inner);
  const outerUdp = (withCsum.payload as Ipv4Packet).payload;
  assert.ok(outerUdp.kind === 'udp');
  delete outerUdp.udp.noChecksum;
  const computed = emitFrame(withCsum);
  assert.notEqual(toHex(computed.subarray(40, 42)), '0000');
  assert.deepEqual(parseFrame(computed), withCsum);

  const ipip = eth({
    kind: 'ipv4',
    ip: ip('192.168.1.10', '192.168.1.11', IPPROTO_IPIP, { tos: 0, ttl: 64 }),
    payload: { kind: 'ipip', inner: tcpPacket('10.244.0.5', '10.244.1.9', tcp({ options: SYN_OPTS })) },
  });
  const b = roundTrip(ipip);
  assert.equal(b[14 + 9], 4);
  assert.equal(ipv4Length(ipip.payload as Ipv4Packet), 20 + 20 + 40);
  assert.deepEqual(parseIpv4Packet(b.subarray(14)), ipip.payload);
});

test('writeFrame emits into an existing buffer and checks room', () => {
  const f = eth(udpPacket('10.0.0.1', '10.0.0.2', hex('0102')));
  const buf = new Uint8Array(100).fill(0xee);
  assert.equal(writeFrame(f, buf, 10), 10 + frameLength(f));
  assert.deepEqual(buf.subarray(10, 10 + frameLength(f)), emitFrame(f));
  assert.equal(buf[9], 0xee);
  assert.throws(() => writeFrame(f, new Uint8Array(20)), WireError);
});

/* ---------- validation ---------- */

test('parse: flipped bytes are caught by the checksum of the layer that covers them', () => {
  const inner = eth(
    tcpPacket('10.244.0.5', '10.244.1.9', tcp({ options: SYN_OPTS }), hex('00112233')),
    MAC_A,
    MAC_B,
  );
  const cases: [Frame, number, RegExp][] = [
    [eth(tcpPacket('1.2.3.4', '5.6.7.8', tcp())), 14 + 8, /bad IPv4 header checksum/], // TTL
    [eth(tcpPacket('1.2.3.4', '5.6.7.8', tcp(), hex('aabb'))), 14 + 20 + 20 + 1, /bad TCP checksum/],
    [eth(tcpPacket('1.2.3.4', '5.6.7.8', tcp({ options: SYN_OPTS }))), 14 + 20 + 22, /bad TCP checksum/], // MSS
    [eth(udpPacket('1.2.3.4', '5.6.7.8', hex('aabbcc'))), 14 + 20 + 8 + 2, /bad UDP checksum/],
    [
      eth({
        kind: 'ipv4',
        ip: ip('1.2.3.4', '5.6.7.8', IPPROTO_ICMP),
        payload: { kind: 'icmp', icmp: { type: 8, code: 0, id: 1, seq: 2 }, data: hex('0102') },
      }),
      14 + 20 + 6,
      /bad ICMP checksum/,
    ],
    // the outer UDP has no checksum: the inner TCP checksum catches a flipped payload byte
    [vxlanFrame(inner), 14 + 20 + 8 + 8 + 14 + 20 + 40 + 3, /bad TCP checksum/],
  ];
  for (const [f, at, re] of cases) {
    const b = emitFrame(f);
    assert.doesNotThrow(() => parseFrame(b));
    b[at] ^= 0x01;
    assert.throws(
      () => parseFrame(b),
      (e: unknown) => e instanceof WireError && re.test(e.message),
      re.source,
    );
  }
  // pseudo-header: a segment checksummed for 1.2.3.4 fails under an IPv4 header from 1.2.3.5
  const a = emitFrame(eth(tcpPacket('1.2.3.4', '5.6.7.8', tcp())));
  const b = emitFrame(eth(tcpPacket('1.2.3.5', '5.6.7.8', tcp())));
  b.set(a.subarray(34), 34);
  assert.throws(() => parseFrame(b), /bad TCP checksum 0x[0-9a-f]{4}, expected 0x[0-9a-f]{4}/);
});

test('parse: every truncation of a frame throws WireError; Ethernet padding is ignored', () => {
  const frames = [
    eth(tcpPacket('10.244.0.5', '10.244.1.9', tcp({ options: SYN_OPTS }), hex('0102030405'))),
    vxlanFrame(eth(udpPacket('10.244.0.5', '10.244.1.9', hex('01020304')))),
    eth({
      kind: 'arp',
      arp: { op: 2, senderMac: MAC_A, senderIp: '10.0.0.1', targetMac: MAC_B, targetIp: '10.0.0.2' },
    }),
  ];
  for (const f of frames) {
    const b = emitFrame(f);
    for (let n = 0; n < b.length; n++)
      assert.throws(() => parseFrame(b.subarray(0, n)), WireError, `length ${n}`);
    const padded = new Uint8Array(Math.max(60, b.length + 4));
    padded.set(b);
    assert.deepEqual(parseFrame(padded), f);
  }
});

test('parse: invalid headers are rejected with a clear message', () => {
  const good = emitFrame(eth(udpPacket('10.0.0.1', '10.0.0.2', hex('00'))));
  const bad = (at: number, v: number) => {
    const b = good.slice();
    b[at] = v;
    return b;
  };
  assert.throws(() => parseFrame(bad(14, 0x65)), /IP version 6 is not 4/);
  assert.throws(() => parseFrame(bad(14, 0x44)), /IPv4 header length 16 < 20/);
  assert.throws(() => parseFrame(bad(14 + 3, 10)), /IPv4 total length 10 < header length 20/);
  assert.throws(() => parseFrame(bad(14 + 20 + 5, 4)), /UDP length 4 < 8/);
  const arp = emitFrame(
    eth({
      kind: 'arp',
      arp: { op: 1, senderMac: MAC_A, senderIp: '1.1.1.1', targetMac: MAC_B, targetIp: '2.2.2.2' },
    }),
  );
  arp[14 + 7] = 3;
  assert.throws(() => parseFrame(arp), /ARP op 3/);
  const vx = emitFrame(vxlanFrame(eth(udpPacket('10.0.0.1', '10.0.0.2', hex('00')))));
  vx[42] = 0x0c;
  assert.throws(() => parseFrame(vx), /VXLAN flags 0xc are not 0x08/);
});

test('emit: inconsistent or out-of-range Reprs throw WireError', () => {
  const f = eth(tcpPacket('10.0.0.1', '10.0.0.2', tcp()));
  assert.throws(
    () => emitFrame({ ...f, eth: { ...f.eth, ethertype: ETHERTYPE_ARP } }),
    /does not match ipv4/,
  );
  const p = tcpPacket('10.0.0.1', '10.0.0.2', tcp());
  assert.throws(
    () => emitIpv4Packet({ ...p, ip: { ...p.ip, protocol: IPPROTO_UDP } }),
    /protocol 17 does not match tcp/,
  );
  assert.throws(
    () => emitIpv4Packet({ ...p, ip: { ...p.ip, mf: true } }),
    /fragment must carry a raw payload/,
  );
  assert.throws(
    () =>
      emitIpv4Packet({ ...p, ip: { ...p.ip, fragOffset: 12 }, payload: { kind: 'raw', data: hex('00') } }),
    /not a multiple of 8/,
  );
  assert.throws(() => emitIpv4Packet({ ...p, ip: { ...p.ip, ttl: 256 } }), /IPv4 ttl 256 out of range/);
  assert.throws(
    () => emitIpv4Packet(tcpPacket('10.0.0.1', '10.0.0.2', tcp({ srcPort: 70000 }))),
    /TCP source port/,
  );
  assert.throws(() => emitIpv4Packet(tcpPacket('10.0.0.1', '10.0.0.2', tcp({ seq: -1 }))), /TCP seq/);
  assert.throws(
    () => emitIpv4Packet(udpPacket('10.0.0.1', '10.0.0.2', new Uint8Array(65536))),
    /UDP length 65544 out of range 0..65535/,
  );
  const big: Ipv4Packet = {
    kind: 'ipv4',
    ip: ip('1.1.1.1', '2.2.2.2', 47),
    payload: { kind: 'raw', data: new Uint8Array(65516) },
  };
  assert.throws(() => emitIpv4Packet(big), /IPv4 total length 65536 exceeds 65535/);
  const icmp = (type: number, code: number, mtu?: number): Ipv4Packet => ({
    kind: 'ipv4',
    ip: ip('1.1.1.1', '2.2.2.2', IPPROTO_ICMP),
    payload: {
      kind: 'icmp',
      icmp: { type, code, id: 0, seq: 0, ...(mtu === undefined ? {} : { mtu }) },
      data: hex(''),
    },
  });
  assert.throws(() => emitIpv4Packet(icmp(3, 4)), /requires mtu/);
  assert.throws(() => emitIpv4Packet(icmp(8, 0, 1500)), /has no MTU field/);
  const v = vxlanFrame(eth(udpPacket('10.0.0.1', '10.0.0.2', hex('00'))));
  const outer = v.payload as Ipv4Packet;
  assert.ok(outer.payload.kind === 'udp');
  // VXLAN on another port (flannel's default 8472) emits; parse leaves it undecoded, as tcpdump does
  const udp = { ...outer.payload, udp: { srcPort: 1, dstPort: 8472 } };
  const on8472 = parseFrame(emitFrame({ ...v, payload: { ...outer, payload: udp } }));
  assert.ok(on8472.payload.kind === 'ipv4' && on8472.payload.payload.kind === 'udp');
  assert.equal(on8472.payload.payload.payload.kind, 'raw');
  assert.throws(
    () => emitFrame(eth(tcpPacket('10.0.0.300', '10.0.0.2', tcp()))),
    /invalid IPv4 address "10.0.0.300"/,
  );
});

/* ---------- fragmentation ---------- */

test('fragmentIpv4: Linux sizes, offsets, MF, id; reassembly restores the transport bytes', () => {
  const payload = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7) & 255);
  const p = udpPacket('10.244.0.5', '10.244.1.9', payload);
  p.ip.df = false;
  const transport = emitIpv4Packet(p).subarray(20);
  assert.equal(transport.length, 3008);
  assert.equal(ipv4Length(p), 3028);
  const frags = fragmentIpv4(p, 1500);
  assert.deepEqual(
    frags.map((f) => [ipv4Length(f), f.ip.fragOffset, f.ip.mf, f.ip.id]),
    [
      [1500, 0, true, 0x1234],
      [1500, 1480, true, 0x1234],
      [68, 2960, false, 0x1234],
    ],
  );
  const joined = new Uint8Array(transport.length);
  for (const f of frags) {
    assert.equal(f.payload.kind, 'raw');
    const bytes = emitIpv4Packet(f);
    assert.equal(bytes[6] & 0x40, 0, 'DF clear');
    const back = parseIpv4Packet(bytes); // a fragment parses as raw
    assert.deepEqual(back, f);
    if (back.payload.kind === 'raw') joined.set(back.payload.data, back.ip.fragOffset);
  }
  assert.deepEqual(joined, transport);
  assert.deepEqual(reassembleIpv4([frags[2], frags[0], frags[1]]), p);

  // MTU 1503: 1483 bytes of room; non-last fragments are cut to 1480, the last may use all 1483 (ip_do_fragment)
  const q = udpPacket('10.0.0.1', '10.0.0.2', new Uint8Array(2963 - 8));
  q.ip.df = false;
  assert.deepEqual(
    fragmentIpv4(q, 1503).map((f) => ipv4Length(f) - 20),
    [1480, 1483],
  );
  // fits: returned as is; DF set and too big: error
  assert.deepEqual(fragmentIpv4(q, 3000), [q]);
  assert.throws(
    () => fragmentIpv4({ ...q, ip: { ...q.ip, df: true } }, 1500),
    /exceeds MTU 1500 and has DF set/,
  );
  assert.throws(() => fragmentIpv4(q, 67), /below the IPv4 minimum/);
  // refragmenting a middle fragment keeps MF on its last piece and offsets relative to the original
  const again = fragmentIpv4(frags[1], 600);
  assert.deepEqual(
    again.map((f) => [f.ip.fragOffset, f.ip.mf, ipv4Length(f) - 20]),
    [
      [1480, true, 576],
      [2056, true, 576],
      [2632, true, 328],
    ],
  );
  assert.deepEqual(reassembleIpv4([frags[0], ...again, frags[2]]), p);
  assert.throws(() => reassembleIpv4([frags[0], frags[2]]), /gap or overlap/);
  assert.throws(() => reassembleIpv4([frags[0], frags[1]]), /last fragment missing/);
  // a corrupted fragment is caught by the transport checksum after reassembly
  const corrupt = {
    ...frags[1],
    payload: {
      kind: 'raw' as const,
      data: frags[1].payload.kind === 'raw' ? frags[1].payload.data.slice() : hex(''),
    },
  };
  corrupt.payload.data[100] ^= 0xff;
  assert.throws(() => reassembleIpv4([frags[0], corrupt, frags[2]]), /bad UDP checksum/);
});

/* ---------- pcap ---------- */

test('pcap: write/read round trip and header layout', () => {
  const records = [
    {
      tsSec: 1700000000,
      tsUsec: 1,
      frame: emitFrame(eth(tcpPacket('10.0.0.1', '10.0.0.2', tcp({ options: SYN_OPTS })))),
    },
    { tsSec: 1700000000, tsUsec: 999999, frame: hex(LINUX_ACK) },
    { tsSec: 0, tsUsec: 0, frame: new Uint8Array(0) },
  ];
  const file = writePcap(records);
  assert.equal(
    toHex(file.subarray(0, 24)),
    'd4c3b2a1' + '02000400' + '00000000' + '00000000' + '00000400' + '01000000',
  );
  assert.equal(toHex(file.subarray(24, 40)), '00f15365' + '01000000' + '4a000000' + '4a000000');
  assert.equal(file.length, 24 + 3 * 16 + 74 + 66);
  assert.deepEqual(readPcap(file), records);
  // a big-endian file with nanosecond timestamps reads to the same records
  const be = new Uint8Array(24 + 16 + 2);
  const dv = new DataView(be.buffer);
  dv.setUint32(0, 0xa1b23c4d);
  dv.setUint16(4, 2);
  dv.setUint16(6, 4);
  dv.setUint32(16, 65535);
  dv.setUint32(20, 1);
  dv.setUint32(24, 7);
  dv.setUint32(28, 123456789);
  dv.setUint32(32, 2);
  dv.setUint32(36, 2);
  be.set([0xab, 0xcd], 40);
  assert.deepEqual(readPcap(be), [{ tsSec: 7, tsUsec: 123456, frame: hex('abcd') }]);
  assert.throws(() => readPcap(file.subarray(0, file.length - 1)), /truncated/);
  assert.throws(() => readPcap(hex('0a0d0d0a' + '00'.repeat(20))), /pcapng/);
  assert.throws(() => writePcap([{ tsSec: 1, tsUsec: 1000000, frame: hex('') }]), /tsUsec/);
});

/* ---------- seeded random property test ---------- */

test('property: parse(emit(x)) == x for random frames (seeded)', () => {
  const rnd = seededRandom(0xc0ffee);
  const int = (n: number) => Math.floor(rnd() * n);
  const u32 = () => int(2 ** 32);
  const bool = () => rnd() < 0.5;
  const bytes = (max: number) => Uint8Array.from({ length: int(max + 1) }, () => int(256));
  const addr = () => intToIp4(u32());
  const mac = () => formatMac(Uint8Array.from({ length: 6 }, () => int(256)));
  const ipr = (protocol: number): Ipv4Repr => ({
    src: addr(),
    dst: addr(),
    protocol,
    ttl: int(256),
    id: int(65536),
    df: bool(),
    mf: false,
    fragOffset: 0,
    tos: int(256),
  });
  const options = (): TcpOptions => {
    const o: TcpOptions = {};
    if (bool()) o.mss = int(65536);
    if (bool()) o.sackOk = true;
    if (bool()) o.timestamp = { val: u32(), ecr: u32() };
    if (bool()) o.wscale = int(15);
    return o;
  };
  const flags = () => {
    const f: TcpRepr['flags'] = {};
    for (const k of ['fin', 'syn', 'rst', 'psh', 'ack', 'urg'] as const) if (bool()) f[k] = true;
    return f;
  };
  const packet = (depth: number): Ipv4Packet => {
    switch (int(depth > 0 ? 6 : 4)) {
      case 0: {
        const t = {
          srcPort: int(65536),
          dstPort: int(65536),
          seq: u32(),
          ack: u32(),
          flags: flags(),
          window: int(65536),
          options: options(),
        };
        return { kind: 'ipv4', ip: ipr(IPPROTO_TCP), payload: { kind: 'tcp', tcp: t, data: bytes(64) } };
      }
      case 1: {
        const udp = { srcPort: int(65536), dstPort: (int(65535) + VXLAN_PORT + 1) % 65536 };
        return {
          kind: 'ipv4',
          ip: ipr(IPPROTO_UDP),
          payload: { kind: 'udp', udp, payload: { kind: 'raw', data: bytes(64) } },
        };
      }
      case 2: {
        const [type, code] = [
          [8, 0],
          [0, 0],
          [11, 0],
          [3, 1],
          [3, 4],
        ][int(5)];
        const icmp =
          type === 3 && code === 4
            ? { type, code, id: 0, seq: 0, mtu: int(65536) }
            : { type, code, id: int(65536), seq: int(65536) };
        return { kind: 'ipv4', ip: ipr(IPPROTO_ICMP), payload: { kind: 'icmp', icmp, data: bytes(40) } };
      }
      case 3: {
        const r = ipr(int(2) ? 47 : 50);
        if (bool()) Object.assign(r, { df: false, mf: bool(), fragOffset: 8 * int(4000) + 8 }); // a fragment
        return { kind: 'ipv4', ip: r, payload: { kind: 'raw', data: bytes(64) } };
      }
      case 4:
        return { kind: 'ipv4', ip: ipr(IPPROTO_IPIP), payload: { kind: 'ipip', inner: packet(depth - 1) } };
      default: {
        const udp = bool()
          ? { srcPort: int(65536), dstPort: VXLAN_PORT, noChecksum: true }
          : { srcPort: int(65536), dstPort: VXLAN_PORT };
        const inner = frame(depth - 1);
        return {
          kind: 'ipv4',
          ip: ipr(IPPROTO_UDP),
          payload: {
            kind: 'udp',
            udp,
            payload: { kind: 'vxlan', vxlan: { vni: int(1 << 24) }, frame: inner },
          },
        };
      }
    }
  };
  const frame = (depth: number): Frame => {
    if (rnd() < 0.15) {
      const arp = {
        op: (1 + int(2)) as 1 | 2,
        senderMac: mac(),
        senderIp: addr(),
        targetMac: mac(),
        targetIp: addr(),
      };
      return { eth: { dst: mac(), src: mac(), ethertype: ETHERTYPE_ARP }, payload: { kind: 'arp', arp } };
    }
    return { eth: { dst: mac(), src: mac(), ethertype: ETHERTYPE_IPV4 }, payload: packet(depth) };
  };
  for (let i = 0; i < 400; i++) {
    const f = frame(2);
    const b = emitFrame(f);
    assert.equal(b.length, frameLength(f));
    assert.deepEqual(parseFrame(b), f, `iteration ${i}`);
    const mtu = 68 + 8 * int(8);
    if (f.payload.kind === 'ipv4' && f.payload.payload.kind !== 'raw' && ipv4Length(f.payload) > mtu) {
      const p = { ...f.payload, ip: { ...f.payload.ip, df: false } };
      const frags = fragmentIpv4(p, mtu);
      assert.ok(frags.length > 1);
      assert.deepEqual(reassembleIpv4(frags.map((x) => parseIpv4Packet(emitIpv4Packet(x)))), p);
    }
  }
});
