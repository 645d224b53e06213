/**
 * Cross-checks the wire layer against an independent decoder: frames emitted by podwalk are written
 * to a pcap and decoded by tshark with checksum validation on for IPv4, TCP and UDP (ICMP checksums
 * are always validated).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AFI_IPV4,
  BGP_CEASE,
  BGP_ERROR,
  BGP_PORT,
  emitBgp,
  emitFrame,
  emitIpv4Packet,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  fragmentIpv4,
  IPPROTO_ICMP,
  IPPROTO_IPIP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  VXLAN_PORT,
  writePcap,
  SAFI_UNICAST,
  type BgpCodec,
  type BgpMessage,
  type Frame,
  type Ipv4Packet,
  type Ipv4Repr,
  type TcpRepr,
} from '../src/wire/index.ts';

function tsharkAvailable(): boolean {
  try {
    execFileSync('tshark', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const skip = tsharkAvailable() ? false : 'tshark not installed: apt-get install tshark';

const POD_A = '0a:58:0a:f4:00:05';
const GW_A = '0a:58:0a:f4:00:01';
const NODE_1 = '52:54:00:12:34:01';
const NODE_2 = '52:54:00:12:34:02';

const ip = (src: string, dst: string, protocol: number, over: Partial<Ipv4Repr> = {}): Ipv4Repr => ({
  src,
  dst,
  protocol,
  ttl: 64,
  id: 0x3e8,
  df: true,
  mf: false,
  fragOffset: 0,
  tos: 0,
  ...over,
});
const eth = (payload: Frame['payload'], src = POD_A, dst = GW_A): Frame => ({
  eth: { dst, src, ethertype: payload.kind === 'arp' ? ETHERTYPE_ARP : ETHERTYPE_IPV4 },
  payload,
});
const tcpPkt = (
  src: string,
  dst: string,
  tcp: TcpRepr,
  data: Uint8Array = new Uint8Array(0),
  over: Partial<Ipv4Repr> = {},
) =>
  ({
    kind: 'ipv4',
    ip: ip(src, dst, IPPROTO_TCP, over),
    payload: { kind: 'tcp', tcp, data },
  }) satisfies Ipv4Packet;
const seg = (srcPort: number, dstPort: number, over: Partial<TcpRepr>): TcpRepr => ({
  srcPort,
  dstPort,
  seq: 1000,
  ack: 0,
  flags: {},
  window: 64240,
  options: {},
  ...over,
});
const SYN_OPTS = { mss: 1460, sackOk: true, timestamp: { val: 123456, ecr: 0 }, wscale: 7 };
const synTo = (srcPort: number) =>
  tcpPkt('10.244.0.5', '10.244.1.9', seg(srcPort, 80, { flags: { syn: true }, options: SYN_OPTS }));

function dnsQuery(name: string): Uint8Array {
  const labels = name.split('.').flatMap((l) => [l.length, ...Array.from(l, (c) => c.charCodeAt(0))]);
  return Uint8Array.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 1, 0, 1]);
}

interface Case {
  name: string;
  frame: Frame;
  protocols: string;
  /** `*.checksum.status` values tshark must report (1 = good, 3 = not present) */
  status: Record<string, string[]>;
  fields?: Record<string, string[]>;
  fieldsOneOf?: Record<string, string[][]>;
}

function cases(): Case[] {
  const http = new TextEncoder().encode('GET / HTTP/1.1\r\nHost: web\r\n\r\n');
  const ts = (val: number, ecr: number) => ({ timestamp: { val, ecr } });
  const ok = (ip: number, l4?: string, n = 1) => ({
    'ip.checksum.status': Array<string>(ip).fill('1'),
    ...(l4 ? { [`${l4}.checksum.status`]: Array<string>(n).fill('1') } : {}),
  });
  // Linux quotes the offending datagram up to 576 bytes in total; here the IP header + 8 bytes (see report:
  // tshark 4.0 checks a quoted TCP checksum over a truncated quote and wrongly reports it bad)
  const big = tcpPkt(
    '10.244.0.5',
    '10.244.1.9',
    seg(40003, 48879, { flags: { ack: true }, seq: 1001, ack: 5001, options: ts(123500, 987700) }),
    new Uint8Array(1448).fill(0x61),
  );
  const quoted = emitIpv4Packet(big).subarray(0, 28);
  const dns: Ipv4Packet = {
    kind: 'ipv4',
    ip: ip('10.244.0.5', '10.96.0.10', IPPROTO_UDP, { df: false, ttl: 1 }),
    payload: {
      kind: 'udp',
      udp: { srcPort: 45678, dstPort: 53 },
      payload: { kind: 'raw', data: dnsQuery('web.default.svc.cluster.local') },
    },
  };
  const bigUdp: Ipv4Packet = {
    kind: 'ipv4',
    ip: ip('10.244.0.5', '10.244.1.9', IPPROTO_UDP, { df: false, id: 0x4d2 }),
    payload: {
      kind: 'udp',
      udp: { srcPort: 5000, dstPort: 9999 },
      payload: { kind: 'raw', data: new Uint8Array(3000).fill(7) },
    },
  };
  const frags = fragmentIpv4(bigUdp, 1500);
  const icmp = (
    type: number,
    code: number,
    id: number,
    seq: number,
    data: Uint8Array,
    src = '10.244.0.5',
    dst = '10.244.1.9',
    mtu?: number,
  ): Ipv4Packet => ({
    kind: 'ipv4',
    ip: ip(src, dst, IPPROTO_ICMP),
    payload: {
      kind: 'icmp',
      icmp: mtu === undefined ? { type, code, id, seq } : { type, code, id, seq, mtu },
      data,
    },
  });
  const pingData = Uint8Array.from({ length: 56 }, (_, i) => i);
  return [
    {
      name: 'ARP request',
      frame: eth(
        {
          kind: 'arp',
          arp: {
            op: 1,
            senderMac: POD_A,
            senderIp: '10.244.0.5',
            targetMac: '00:00:00:00:00:00',
            targetIp: '10.244.0.1',
          },
        },
        POD_A,
        'ff:ff:ff:ff:ff:ff',
      ),
      protocols: 'eth:ethertype:arp',
      status: {},
      fields: {
        'arp.opcode': ['1'],
        'arp.src.proto_ipv4': ['10.244.0.5'],
        'arp.dst.proto_ipv4': ['10.244.0.1'],
        'eth.dst': ['ff:ff:ff:ff:ff:ff'],
      },
    },
    {
      name: 'ARP reply',
      frame: eth(
        {
          kind: 'arp',
          arp: { op: 2, senderMac: GW_A, senderIp: '10.244.0.1', targetMac: POD_A, targetIp: '10.244.0.5' },
        },
        GW_A,
        POD_A,
      ),
      protocols: 'eth:ethertype:arp',
      status: {},
      fields: { 'arp.opcode': ['2'], 'arp.src.hw_mac': [GW_A], 'arp.dst.hw_mac': [POD_A] },
    },
    {
      name: 'TCP SYN',
      frame: eth(synTo(40000)),
      protocols: 'eth:ethertype:ip:tcp',
      status: ok(1, 'tcp'),
      fields: {
        'tcp.flags': ['0x0002'],
        'tcp.hdr_len': ['40'],
        'tcp.options.mss_val': ['1460'],
        'tcp.options.wscale.shift': ['7'],
        'tcp.options.timestamp.tsval': ['123456'],
        'tcp.options.sack_perm': ['04:02'],
        'tcp.options': ['02:04:05:b4:04:02:08:0a:00:01:e2:40:00:00:00:00:01:03:03:07'],
      },
    },
    {
      name: 'TCP SYN-ACK',
      frame: eth(
        tcpPkt(
          '10.244.1.9',
          '10.244.0.5',
          seg(80, 40000, {
            flags: { syn: true, ack: true },
            seq: 5000,
            ack: 1001,
            window: 65160,
            options: { mss: 1410, sackOk: true, timestamp: { val: 987654, ecr: 123456 }, wscale: 7 },
          }),
          undefined,
          { id: 0 },
        ),
        GW_A,
        POD_A,
      ),
      protocols: 'eth:ethertype:ip:tcp',
      status: ok(1, 'tcp'),
      fields: {
        'tcp.flags': ['0x0012'],
        'tcp.options.mss_val': ['1410'],
        'tcp.options.timestamp.tsecr': ['123456'],
      },
    },
    {
      name: 'TCP ACK with data',
      frame: eth(
        tcpPkt(
          '10.244.0.5',
          '10.244.1.9',
          seg(40000, 80, {
            flags: { ack: true, psh: true },
            seq: 1001,
            ack: 5001,
            window: 502,
            options: ts(123460, 987654),
          }),
          http,
        ),
      ),
      protocols: 'eth:ethertype:ip:tcp:http',
      status: ok(1, 'tcp'),
      fields: {
        'tcp.flags': ['0x0018'],
        'tcp.hdr_len': ['32'],
        'tcp.options': ['01:01:08:0a:00:01:e2:44:00:0f:12:06'],
        'tcp.len': [String(http.length)],
        'http.request.method': ['GET'],
      },
    },
    {
      name: 'TCP FIN',
      frame: eth(
        tcpPkt(
          '10.244.0.5',
          '10.244.1.9',
          seg(40000, 80, {
            flags: { fin: true, ack: true },
            seq: 1001 + http.length,
            ack: 5001,
            window: 502,
            options: ts(123470, 987660),
          }),
        ),
      ),
      protocols: 'eth:ethertype:ip:tcp',
      status: ok(1, 'tcp'),
      fields: { 'tcp.flags': ['0x0011'] },
    },
    {
      name: 'UDP DNS query',
      frame: eth({
        kind: 'ipv4',
        ip: ip('10.244.0.5', '10.96.0.10', IPPROTO_UDP, { df: false }),
        payload: {
          kind: 'udp',
          udp: { srcPort: 45678, dstPort: 53 },
          payload: { kind: 'raw', data: dnsQuery('web.default.svc.cluster.local') },
        },
      }),
      protocols: 'eth:ethertype:ip:udp:dns',
      status: ok(1, 'udp'),
      fields: { 'dns.qry.name': ['web.default.svc.cluster.local'], 'udp.length': ['55'] },
    },
    {
      name: 'ICMP echo request',
      frame: eth(icmp(8, 0, 0x1c2f, 1, pingData)),
      protocols: 'eth:ethertype:ip:icmp:data',
      status: ok(1, 'icmp'),
      fields: { 'icmp.type': ['8'], 'icmp.ident': ['7215'], 'icmp.seq': ['1'], 'data.len': ['56'] },
    },
    {
      name: 'ICMP echo reply',
      frame: eth(icmp(0, 0, 0x1c2f, 1, pingData, '10.244.1.9', '10.244.0.5'), GW_A, POD_A),
      protocols: 'eth:ethertype:ip:icmp:data',
      status: ok(1, 'icmp'),
      fields: { 'icmp.type': ['0'], 'icmp.ident': ['7215'], 'icmp.seq': ['1'] },
    },
    {
      name: 'ICMP fragmentation needed quoting IP header + 8 bytes',
      frame: eth(icmp(3, 4, 0, 0, quoted, '10.244.0.1', '10.244.0.5', 1450), GW_A, POD_A),
      protocols: 'eth:ethertype:ip:icmp:ip:tcp',
      status: { 'ip.checksum.status': ['1', '1'], 'icmp.checksum.status': ['1'] },
      fields: {
        'icmp.type': ['3'],
        'icmp.code': ['4'],
        'icmp.mtu': ['1450'],
        'ip.src': ['10.244.0.1', '10.244.0.5'],
        'ip.len': ['56', '1500'],
        'tcp.srcport': ['40003'],
        'tcp.seq': ['1001'],
      },
    },
    {
      name: 'ICMP time exceeded quoting a whole DNS query',
      frame: eth(icmp(11, 0, 0, 0, emitIpv4Packet(dns), '10.244.0.1', '10.244.0.5'), GW_A, POD_A),
      protocols: 'eth:ethertype:ip:icmp:ip:udp:dns',
      status: {
        'ip.checksum.status': ['1', '1'],
        'icmp.checksum.status': ['1'],
        'udp.checksum.status': ['1'],
      },
      fields: {
        'icmp.type': ['11'],
        'ip.ttl': ['64', '1'],
        'dns.qry.name': ['web.default.svc.cluster.local'],
      },
    },
    {
      name: 'VXLAN (vni 1) carrying a TCP SYN, outer UDP checksum 0',
      frame: eth(
        {
          kind: 'ipv4',
          ip: ip('192.168.1.10', '192.168.1.11', IPPROTO_UDP, { df: false, id: 0x7a1 }),
          payload: {
            kind: 'udp',
            udp: { srcPort: 51000, dstPort: VXLAN_PORT, noChecksum: true },
            payload: {
              kind: 'vxlan',
              vxlan: { vni: 1 },
              frame: eth(synTo(40001), '66:77:88:99:aa:01', '66:77:88:99:aa:02'),
            },
          },
        },
        NODE_1,
        NODE_2,
      ),
      protocols: 'eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:tcp',
      status: {
        'ip.checksum.status': ['1', '1'],
        'udp.checksum.status': ['3'],
        'tcp.checksum.status': ['1'],
      },
      fields: {
        'udp.dstport': ['4789'],
        'udp.checksum': ['0x0000'],
        'vxlan.vni': ['1'],
        'vxlan.flags': ['0x0800'],
        'ip.src': ['192.168.1.10', '10.244.0.5'],
        'eth.src': [NODE_1, '66:77:88:99:aa:01'],
        'tcp.options.mss_val': ['1460'],
      },
    },
    {
      name: 'IPIP carrying a TCP SYN',
      frame: eth(
        {
          kind: 'ipv4',
          ip: ip('192.168.1.10', '192.168.1.11', IPPROTO_IPIP, { id: 0x7a2 }),
          payload: { kind: 'ipip', inner: synTo(40002) },
        },
        NODE_1,
        NODE_2,
      ),
      protocols: 'eth:ethertype:ip:ip:tcp',
      status: { 'ip.checksum.status': ['1', '1'], 'tcp.checksum.status': ['1'] },
      fields: {
        'ip.proto': ['4', '6'],
        'ip.src': ['192.168.1.10', '10.244.0.5'],
        'tcp.srcport': ['40002'],
        'tcp.flags': ['0x0002'],
      },
    },
    ...frags.map((f, i): Case => ({
      name: `IPv4 fragment ${i + 1}/3`,
      frame: eth(f),
      protocols: i < 2 ? 'eth:ethertype:ip:data' : 'eth:ethertype:ip:udp:data',
      // tshark 4.x shows the offset in 8-byte units, older releases in bytes
      fieldsOneOf: { 'ip.frag_offset': [[String(185 * i)], [String(1480 * i)]] },
      status: i < 2 ? ok(1) : ok(1, 'udp'),
      fields: {
        'ip.id': ['0x04d2'],
        'ip.flags.mf': [i < 2 ? '1' : '0'],
        ...(i < 2
          ? {}
          : { 'ip.reassembled.length': ['3008'], 'udp.length': ['3008'], 'udp.dstport': ['9999'] }),
      },
    })),
    ...bgpCases(),
  ];
}

/**
 * BGP messages as podwalk's codec writes them, each the first data segment of its own connection to
 * port 179 (so that tshark's TCP analysis sees no gap before it).
 */
function bgpCases(): Case[] {
  const ipv4u = { afi: AFI_IPV4, safi: SAFI_UNICAST };
  const bgp = (i: number, m: BgpMessage, codec?: BgpCodec) =>
    eth(
      tcpPkt(
        '192.168.1.11',
        '192.168.1.10',
        seg(40100 + i, BGP_PORT, { flags: { ack: true, psh: true }, seq: 7001, ack: 9001, window: 502 }),
        emitBgp(m, codec),
      ),
      NODE_2,
      NODE_1,
    );
  const shutdown = new TextEncoder().encode('node drained');
  const msgs: { name: string; m: BgpMessage; codec?: BgpCodec; fields: Record<string, string[]> }[] = [
    {
      name: 'BGP OPEN with every capability the codec knows',
      m: {
        kind: 'open',
        version: 4,
        myAs: 64512,
        holdTime: 240,
        bgpId: '192.168.1.11',
        params: [
          {
            kind: 'capabilities',
            caps: [
              { kind: 'multiprotocol', ...ipv4u },
              { kind: 'route-refresh' },
              { kind: 'extended-message' },
              {
                kind: 'graceful-restart',
                restarting: true,
                notification: false,
                time: 120,
                families: [{ ...ipv4u, forwarding: true }],
              },
              { kind: 'as4', asn: 4200000001 },
              { kind: 'add-path', families: [{ ...ipv4u, sendReceive: 'both' }] },
              { kind: 'enhanced-route-refresh' },
              {
                kind: 'long-lived-graceful-restart',
                families: [{ ...ipv4u, forwarding: false, staleTime: 3600 }],
              },
            ],
          },
        ],
      },
      fields: {
        'bgp.type': ['1'],
        'bgp.open.myas': ['64512'],
        'bgp.open.holdtime': ['240'],
        'bgp.open.identifier': ['192.168.1.11'],
        'bgp.cap.type': ['1', '2', '6', '64', '65', '69', '70', '71'],
        'bgp.cap.4as': ['4200000001'],
        'bgp.cap.gr.timers.restart_time': ['120'],
        'bgp.cap.ap.sendreceive': ['3'],
      },
    },
    { name: 'BGP KEEPALIVE', m: { kind: 'keepalive' }, fields: { 'bgp.type': ['4'], 'bgp.length': ['19'] } },
    {
      name: 'BGP UPDATE with every path attribute (4-octet AS session)',
      m: {
        kind: 'update',
        withdrawn: [{ prefix: '10.244.0.64/26' }],
        attrs: [
          { kind: 'origin', origin: 'incomplete' },
          { kind: 'as-path', segments: [{ kind: 'sequence', asns: [64512, 4200000001] }] },
          { kind: 'next-hop', nextHop: '192.168.1.11' },
          { kind: 'med', med: 20 },
          { kind: 'local-pref', localPref: 100 },
          { kind: 'atomic-aggregate' },
          { kind: 'aggregator', asn: 64512, address: '192.168.1.11' },
          { kind: 'communities', communities: [64512 * 65536 + 100] },
          { kind: 'originator-id', originatorId: '192.168.1.12' },
          { kind: 'cluster-list', clusterList: ['1.0.0.1'] },
        ],
        nlri: [{ prefix: '10.244.0.0/26' }, { prefix: '10.244.0.70/32' }],
      },
      fields: {
        'bgp.type': ['2'],
        'bgp.update.path_attribute.type_code': ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10'],
        'bgp.update.path_attribute.origin': ['2'],
        'bgp.update.path_attribute.next_hop': ['192.168.1.11'],
        'bgp.update.path_attribute.multi_exit_disc': ['20'],
        'bgp.update.path_attribute.local_pref': ['100'],
        'bgp.update.path_attribute.originator_id': ['192.168.1.12'],
        'bgp.nlri_prefix': ['10.244.0.0', '10.244.0.70'],
        'bgp.prefix_length': ['26', '26', '32'],
      },
    },
    {
      name: 'BGP UPDATE with ADD-PATH path ids',
      m: {
        kind: 'update',
        withdrawn: [],
        attrs: [
          { kind: 'origin', origin: 'igp' },
          { kind: 'as-path', segments: [] },
          { kind: 'next-hop', nextHop: '192.168.1.11' },
          { kind: 'local-pref', localPref: 100 },
        ],
        nlri: [{ prefix: '10.244.0.64/26', pathId: 7 }],
      },
      codec: { as4: true, addPath: true },
      fields: { 'bgp.nlri_path_id': ['7'], 'bgp.nlri_prefix': ['10.244.0.64'], 'bgp.prefix_length': ['26'] },
    },
    {
      name: 'BGP End-of-RIB',
      m: { kind: 'update', withdrawn: [], attrs: [], nlri: [] },
      fields: { 'bgp.type': ['2'], 'bgp.length': ['23'] },
    },
    {
      name: 'BGP NOTIFICATION Cease, administrative shutdown with a message (RFC 9003)',
      m: {
        kind: 'notification',
        code: BGP_ERROR.CEASE,
        subcode: BGP_CEASE.ADMINISTRATIVE_SHUTDOWN,
        data: Uint8Array.of(shutdown.length, ...shutdown),
      },
      fields: { 'bgp.notify.major_error': ['6'], 'bgp.notify.minor_error_cease': ['2'] },
    },
    {
      name: 'BGP NOTIFICATION hold timer expired',
      m: { kind: 'notification', code: BGP_ERROR.HOLD_TIMER_EXPIRED, subcode: 0, data: new Uint8Array(0) },
      fields: { 'bgp.notify.major_error': ['4'] },
    },
    {
      name: 'BGP ROUTE-REFRESH',
      m: { kind: 'route-refresh', ...ipv4u, subtype: 0 },
      fields: { 'bgp.type': ['5'] },
    },
  ];
  return msgs.map(({ name, m, codec, fields }, i) => ({
    name,
    frame: bgp(i, m, codec),
    protocols: 'eth:ethertype:ip:tcp:bgp',
    status: { 'ip.checksum.status': ['1'], 'tcp.checksum.status': ['1'] },
    fields,
  }));
}

type Json = string | number | boolean | null | Json[] | { [k: string]: Json };

/** Every value of `key` anywhere below `node`, in document order (arrays from --no-duplicate-keys flattened). */
function values(node: Json, key: string, out: Json[] = []): Json[] {
  if (Array.isArray(node)) for (const n of node) values(n, key, out);
  else if (node !== null && typeof node === 'object')
    for (const [k, v] of Object.entries(node)) {
      if (k === key) out.push(...(Array.isArray(v) ? v : [v]));
      else values(v, key, out);
    }
  return out;
}

function statuses(node: Json): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  const walk = (n: Json): void => {
    if (Array.isArray(n)) n.forEach(walk);
    else if (n !== null && typeof n === 'object')
      for (const [k, v] of Object.entries(n)) {
        if (k.endsWith('.checksum.status')) (out[k] ??= []).push(...(Array.isArray(v) ? v : [v]).map(String));
        else walk(v);
      }
  };
  walk(node);
  for (const k of Object.keys(out)) out[k].sort();
  return out;
}

const PI_WARN = 0x00600000;
const PI_CHECKSUM = 0x01000000;
const PI_MALFORMED = 0x07000000;

test('tshark decodes podwalk frames with valid checksums and the expected fields', { skip }, () => {
  const all = cases();
  const dir = mkdtempSync(join(tmpdir(), 'podwalk-wire-'));
  try {
    const file = join(dir, 'podwalk.pcap');
    writeFileSync(
      file,
      writePcap(all.map((c, i) => ({ tsSec: 1700000000 + i, tsUsec: 250000, frame: emitFrame(c.frame) }))),
    );
    const prefs = ['ip.check_checksum:TRUE', 'tcp.check_checksum:TRUE', 'udp.check_checksum:TRUE'].flatMap(
      (p) => ['-o', p],
    );
    const out = execFileSync('tshark', ['-r', file, '-T', 'json', '--no-duplicate-keys', ...prefs], {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const packets = JSON.parse(out) as { _source: { layers: Json } }[];
    assert.equal(packets.length, all.length);
    all.forEach((c, i) => {
      const layers = packets[i]._source.layers;
      const at = `${i + 1}: ${c.name}`;
      assert.deepEqual(values(layers, 'frame.protocols'), [c.protocols], at);
      assert.deepEqual(values(layers, '_ws.malformed'), [], `${at}: malformed`);
      const severities = values(layers, '_ws.expert.severity').map(Number);
      const groups = values(layers, '_ws.expert.group').map(Number);
      const messages = values(layers, '_ws.expert.message');
      assert.ok(
        !severities.some((s) => s >= PI_WARN),
        `${at}: expert warnings/errors ${JSON.stringify(messages)}`,
      );
      assert.ok(
        !groups.some((g) => g === PI_CHECKSUM || g === PI_MALFORMED),
        `${at}: expert ${JSON.stringify(messages)}`,
      );
      assert.deepEqual(statuses(layers), c.status, `${at}: checksum status`);
      for (const [field, want] of Object.entries(c.fields ?? {}))
        assert.deepEqual(values(layers, field), want, `${at}: ${field}`);
      for (const [field, alts] of Object.entries(c.fieldsOneOf ?? {})) {
        const got = values(layers, field);
        assert.ok(
          alts.some((a) => JSON.stringify(a) === JSON.stringify(got)),
          `${at}: ${field} = ${JSON.stringify(got)}`,
        );
      }
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
