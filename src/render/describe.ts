/**
 * One-line descriptions of packets and frames, for the step renderer: the
 * text is made here, from the wire representations the datapath recorded.
 */
import { tcpFlagString } from '../wire/tcp.ts';
import type { Frame, Ipv4Packet } from '../wire/types.ts';

/** one line about an IP packet, tcpdump-like */
export function describeIp(p: Ipv4Packet): string {
  const pl = p.payload;
  const frag =
    p.ip.mf || p.ip.fragOffset ? ` frag id ${p.ip.id} off ${p.ip.fragOffset}${p.ip.mf ? '+' : ''}` : '';
  switch (pl.kind) {
    case 'tcp':
      return `TCP ${p.ip.src}:${pl.tcp.srcPort} → ${p.ip.dst}:${pl.tcp.dstPort} [${tcpFlagString(pl.tcp.flags)}]${pl.data.length ? ` len ${pl.data.length}` : ''}`;
    case 'udp':
      if (pl.payload.kind === 'vxlan')
        return `UDP ${p.ip.src}:${pl.udp.srcPort} → ${p.ip.dst}:${pl.udp.dstPort} VXLAN vni ${pl.payload.vxlan.vni} [${describeFrame(pl.payload.frame)}]`;
      return `UDP ${p.ip.src}:${pl.udp.srcPort} → ${p.ip.dst}:${pl.udp.dstPort} len ${pl.payload.data.length}`;
    case 'icmp': {
      const names: Record<number, string> = {
        0: 'echo reply',
        8: 'echo request',
        3: 'unreachable',
        11: 'time exceeded',
      };
      return `ICMP ${p.ip.src} → ${p.ip.dst} ${names[pl.icmp.type] ?? `type ${pl.icmp.type}`}${pl.icmp.type === 3 ? ` code ${pl.icmp.code}` : ''}`;
    }
    case 'ipip':
      return `IPIP ${p.ip.src} → ${p.ip.dst} [${describeIp(pl.inner)}]`;
    case 'raw':
      return `IP ${p.ip.src} → ${p.ip.dst} proto ${p.ip.protocol}${frag}`;
  }
}

export function describeFrame(f: Frame): string {
  const p = f.payload;
  if (p.kind === 'arp')
    return p.arp.op === 1
      ? `ARP who-has ${p.arp.targetIp} tell ${p.arp.senderIp}`
      : `ARP ${p.arp.senderIp} is-at ${p.arp.senderMac}`;
  if (p.kind === 'ipv4') return describeIp(p);
  return `ethertype 0x${f.eth.ethertype.toString(16)}`;
}
