/**
 * The headers of a frame as nested layers, outermost first, each with its size in bytes:
 * what the step list prints under a tx/rx step, and what the web view draws as boxes.
 */
import { parseFrame, parseIpv4Packet } from '../wire/packet.ts';
import type { Frame, Ipv4Packet, TcpOptions } from '../wire/types.ts';
import { tcpFlagString } from '../wire/tcp.ts';

export interface HeaderLayer {
  name: 'Ethernet' | 'ARP' | 'IPv4' | 'TCP' | 'UDP' | 'ICMP' | 'VXLAN' | 'payload';
  /** header bytes (payload: data bytes) */
  bytes: number;
  fields: string;
  /** 1 for the outer headers of an encapsulation, 2 for what is inside, … */
  depth: number;
}

function tcpOpts(o: TcpOptions): string {
  const p: string[] = [];
  if (o.mss !== undefined) p.push(`mss ${o.mss}`);
  if (o.sackOk) p.push('sackOK');
  if (o.timestamp) p.push(`TS val ${o.timestamp.val} ecr ${o.timestamp.ecr}`);
  if (o.wscale !== undefined) p.push(`wscale ${o.wscale}`);
  return p.length ? ` <${p.join(',')}>` : '';
}

function ipLayers(p: Ipv4Packet, depth: number, out: HeaderLayer[], total: number): void {
  const ip = p.ip;
  const flags = [ip.df ? 'DF' : '', ip.mf ? 'MF' : ''].filter(Boolean).join(',');
  out.push({
    name: 'IPv4',
    bytes: 20,
    depth,
    fields: `${ip.src} → ${ip.dst} proto ${ip.protocol} ttl ${ip.ttl} id ${ip.id}${flags ? ` [${flags}]` : ''}${ip.fragOffset ? ` offset ${ip.fragOffset}` : ''} len ${total}`,
  });
  const pl = p.payload;
  switch (pl.kind) {
    case 'tcp': {
      const t = pl.tcp;
      const hl = 20 + (total - 20 - 20 - pl.data.length);
      out.push({
        name: 'TCP',
        bytes: hl,
        depth,
        fields: `${t.srcPort} → ${t.dstPort} [${tcpFlagString(t.flags)}] seq ${t.seq}${t.flags.ack ? ` ack ${t.ack}` : ''} win ${t.window}${tcpOpts(t.options)}`,
      });
      if (pl.data.length)
        out.push({ name: 'payload', bytes: pl.data.length, depth, fields: `${pl.data.length} bytes` });
      return;
    }
    case 'udp':
      out.push({
        name: 'UDP',
        bytes: 8,
        depth,
        fields: `${pl.udp.srcPort} → ${pl.udp.dstPort} len ${total - 20}`,
      });
      if (pl.payload.kind === 'vxlan') {
        out.push({ name: 'VXLAN', bytes: 8, depth, fields: `flags 0x08 vni ${pl.payload.vxlan.vni}` });
        frameLayers(pl.payload.frame, depth + 1, out);
      } else if (pl.payload.data.length)
        out.push({
          name: 'payload',
          bytes: pl.payload.data.length,
          depth,
          fields: `${pl.payload.data.length} bytes`,
        });
      return;
    case 'icmp': {
      const i = pl.icmp;
      const what = i.type === 8 || i.type === 0 ? ` id ${i.id} seq ${i.seq}` : i.mtu ? ` mtu ${i.mtu}` : '';
      out.push({ name: 'ICMP', bytes: 8, depth, fields: `type ${i.type} code ${i.code}${what}` });
      if (pl.data.length)
        out.push({ name: 'payload', bytes: pl.data.length, depth, fields: `${pl.data.length} bytes` });
      return;
    }
    case 'ipip':
      ipLayers(pl.inner, depth + 1, out, total - 20);
      return;
    case 'raw':
      out.push({
        name: 'payload',
        bytes: pl.data.length,
        depth,
        fields: `${pl.data.length} bytes (fragment)`,
      });
  }
}

function frameLayers(f: Frame, depth: number, out: HeaderLayer[]): void {
  out.push({
    name: 'Ethernet',
    bytes: 14,
    depth,
    fields: `${f.eth.src} → ${f.eth.dst} type 0x${f.eth.ethertype.toString(16).padStart(4, '0')}`,
  });
  const p = f.payload;
  if (p.kind === 'arp') {
    const a = p.arp;
    out.push({
      name: 'ARP',
      bytes: 28,
      depth,
      fields:
        a.op === 1
          ? `request who-has ${a.targetIp} tell ${a.senderIp}`
          : `reply ${a.senderIp} is-at ${a.senderMac}`,
    });
  } else if (p.kind === 'ipv4') {
    // total length from the emitted packet: parse gave us the structure, bytes come from the caller
    ipLayers(p, depth, out, ipTotal(p));
  }
}

function ipTotal(p: Ipv4Packet): number {
  const pl = p.payload;
  switch (pl.kind) {
    case 'tcp': {
      const o = pl.tcp.options;
      const optLen = o.mss !== undefined || o.wscale !== undefined ? 20 : o.timestamp ? 12 : 0;
      return 40 + optLen + pl.data.length;
    }
    case 'udp':
      return 28 + (pl.payload.kind === 'vxlan' ? 8 + frameBytes(pl.payload.frame) : pl.payload.data.length);
    case 'icmp':
      return 28 + pl.data.length;
    case 'ipip':
      return 20 + ipTotal(pl.inner);
    case 'raw':
      return 20 + pl.data.length;
  }
}

function frameBytes(f: Frame): number {
  const p = f.payload;
  return 14 + (p.kind === 'arp' ? 28 : p.kind === 'ipv4' ? ipTotal(p) : p.data.length);
}

/** Decode captured bytes (an Ethernet frame, or a bare IP packet for ipip devices) into layers. */
export function headerLayers(bytes: Uint8Array): HeaderLayer[] {
  const out: HeaderLayer[] = [];
  const isIp =
    bytes.length > 0 &&
    bytes[0] >> 4 === 4 &&
    bytes.length >= 20 &&
    ((bytes[2] << 8) | bytes[3]) === bytes.length;
  try {
    if (isIp) {
      const p = parseIpv4Packet(bytes);
      ipLayers(p, 1, out, bytes.length);
    } else frameLayers(parseFrame(bytes), 1, out);
  } catch (e) {
    out.push({
      name: 'payload',
      bytes: bytes.length,
      depth: 1,
      fields: `undecodable: ${(e as Error).message}`,
    });
  }
  return out;
}
