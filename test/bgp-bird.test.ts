/**
 * The BGP codec against real BIRD 2: test/fixtures/bgp/bird-mesh.pcap is what tcpdump captured
 * between two BIRDs configured as Calico's confd templates configure the node-to-node mesh
 * (scripts/record-bgp-bird.ts recorded it; n1.conf and n2.conf are their configurations). Every
 * message BIRD sent is parsed with the codec the two OPENs negotiate and emitted again, byte for
 * byte; and what they say is what the recording set up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { calicoBirdConfig } from '../src/lab/bird.ts';
import { completeChecksums } from '../src/lab/compare.ts';
import {
  AFI_IPV4,
  BGP_CEASE,
  BGP_ERROR,
  bgpCodecFor,
  bgpFrameLength,
  emitBgp,
  openAs,
  parseBgp,
  parseFrame,
  readPcap,
  SAFI_UNICAST,
  type BgpMessage,
  type BgpOpen,
  type BgpUpdate,
} from '../src/wire/index.ts';

const DIR = join(import.meta.dirname, 'fixtures', 'bgp');
const manifest = JSON.parse(readFileSync(join(DIR, 'manifest.json'), 'utf8')) as {
  bird: string;
  nodes: { name: string; ip: string; block: string }[];
  borrowed: { ip: string };
};
const [n1, n2] = manifest.nodes;

interface Stream {
  from: string;
  to: string;
  bytes: number[];
  /** the next sequence number expected */
  next?: number;
}

/** The TCP payload each side sent, in order; fails on a gap or a retransmission in the capture. */
function streams(): Map<string, Stream> {
  const out = new Map<string, Stream>();
  for (const [i, r] of readPcap(readFileSync(join(DIR, 'bird-mesh.pcap'))).entries()) {
    // tcpdump on a veth sees the checksums the kernel left to offload: complete them as a NIC would
    const f = parseFrame(completeChecksums(r.frame));
    assert.ok(f.payload.kind === 'ipv4' && f.payload.payload.kind === 'tcp', `frame ${i + 1} is TCP`);
    const { ip } = f.payload;
    const { tcp, data } = f.payload.payload;
    const key = `${ip.src}:${tcp.srcPort}`;
    let s = out.get(key);
    if (!s) out.set(key, (s = { from: ip.src, to: ip.dst, bytes: [] }));
    if (tcp.flags.syn) s.next = (tcp.seq + 1) >>> 0;
    if (data.length === 0) continue;
    assert.equal(tcp.seq, s.next, `frame ${i + 1}: segment at ${tcp.seq}, expected ${s.next}`);
    s.bytes.push(...data);
    s.next = (tcp.seq + data.length) >>> 0;
  }
  return out;
}

/** Splits a stream into message bytes, asserting it ends on a boundary. */
function split(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let o = 0; o < bytes.length;) {
    const n = bgpFrameLength(bytes, o, bytes.length);
    assert.ok(n !== undefined, `stream ends inside a message at ${o}`);
    out.push(bytes.subarray(o, o + n));
    o += n;
  }
  return out;
}

const all = [...streams().values()];
const byIp = (ip: string) => {
  const s = all.find((x) => x.from === ip);
  assert.ok(s, `no stream from ${ip}`);
  return split(Uint8Array.from(s.bytes));
};
const sent = { [n1.ip]: byIp(n1.ip), [n2.ip]: byIp(n2.ip) };
const openOf = (ip: string) => parseBgp(sent[ip][0], 0, sent[ip][0].length).repr as BgpOpen;

test(`${manifest.bird}: every message BIRD sent parses and re-emits byte for byte`, () => {
  assert.equal(all.length, 2, 'one TCP connection, two directions');
  for (const [from, to] of [
    [n1.ip, n2.ip],
    [n2.ip, n1.ip],
  ]) {
    const codec = bgpCodecFor(openOf(from), openOf(to));
    for (const [i, b] of sent[from].entries()) {
      // the OPEN is read before anything is negotiated; its layout does not depend on the codec
      const m = parseBgp(b, 0, b.length, i === 0 ? undefined : codec).repr;
      assert.deepEqual(emitBgp(m, codec), b, `${from} message ${i + 1} (${m.kind})`);
    }
  }
});

test('the OPENs are calico-node mesh OPENs: AS 64512, router id = node address, BIRD capabilities', () => {
  for (const n of [n1, n2]) {
    const o = openOf(n.ip);
    assert.equal(o.version, 4);
    assert.equal(openAs(o), 64512);
    assert.equal(o.myAs, 64512);
    assert.equal(o.bgpId, n.ip);
    assert.equal(o.holdTime, 240, "BIRD's default hold time (Calico's template does not set one)");
    assert.deepEqual(o.params, [
      {
        kind: 'capabilities',
        caps: [
          { kind: 'multiprotocol', afi: AFI_IPV4, safi: SAFI_UNICAST },
          { kind: 'route-refresh' },
          {
            kind: 'graceful-restart',
            restarting: false,
            notification: false,
            time: 120,
            families: [{ afi: AFI_IPV4, safi: SAFI_UNICAST, forwarding: false }],
          },
          { kind: 'as4', asn: 64512 },
          { kind: 'add-path', families: [{ afi: AFI_IPV4, safi: SAFI_UNICAST, sendReceive: 'both' }] },
          { kind: 'enhanced-route-refresh' },
          { kind: 'long-lived-graceful-restart', families: [] },
        ],
      },
    ]);
  }
  // `add paths on` both ways: path ids in every UPDATE in both directions
  assert.deepEqual(bgpCodecFor(openOf(n1.ip), openOf(n2.ip)), { as4: true, addPath: true });
  assert.deepEqual(bgpCodecFor(openOf(n2.ip), openOf(n1.ip)), { as4: true, addPath: true });
});

test('the conversation: blocks announced, End-of-RIB, the borrowed /32 announced and withdrawn, Cease', () => {
  const codec = bgpCodecFor(openOf(n1.ip), openOf(n2.ip));
  const msgs = (ip: string): BgpMessage[] =>
    sent[ip].map((b, i) => parseBgp(b, 0, b.length, i ? codec : undefined).repr);
  const route = (n: { ip: string }, prefix: string): BgpUpdate => ({
    kind: 'update',
    withdrawn: [],
    attrs: [
      { kind: 'origin', origin: 'igp' },
      { kind: 'as-path', segments: [] },
      { kind: 'next-hop', nextHop: n.ip },
      { kind: 'local-pref', localPref: 100 },
    ],
    nlri: [{ prefix, pathId: pathIdOf(n, prefix) }],
  });
  // BIRD numbers its paths itself; take the id from the announcement and check it is reused in the withdraw
  const pathIdOf = (n: { ip: string }, prefix: string): number => {
    for (const m of msgs(n.ip))
      if (m.kind === 'update') for (const p of m.nlri) if (p.prefix === prefix) return p.pathId!;
    assert.fail(`${n.ip} never announced ${prefix}`);
  };
  const eor: BgpUpdate = { kind: 'update', withdrawn: [], attrs: [], nlri: [] };
  const borrowed = `${manifest.borrowed.ip}/32`;
  assert.deepEqual(msgs(n2.ip).slice(1), [{ kind: 'keepalive' }, route(n2, n2.block), eor]);
  assert.deepEqual(msgs(n1.ip).slice(1), [
    { kind: 'keepalive' },
    route(n1, n1.block),
    eor,
    route(n1, borrowed),
    {
      kind: 'update',
      withdrawn: [{ prefix: borrowed, pathId: pathIdOf(n1, borrowed) }],
      attrs: [],
      nlri: [],
    },
    {
      kind: 'notification',
      code: BGP_ERROR.CEASE,
      subcode: BGP_CEASE.ADMINISTRATIVE_SHUTDOWN,
      data: new Uint8Array(0),
    },
  ]);
});

test('the recorded BIRDs ran the configuration src/lab/bird.ts writes', () => {
  for (const n of manifest.nodes)
    assert.equal(
      calicoBirdConfig(n, manifest.nodes),
      readFileSync(join(DIR, `${n.name}.conf`), 'utf8'),
      n.name,
    );
});
