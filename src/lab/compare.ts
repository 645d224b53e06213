/**
 * What the simulation and the real kernel must agree on for every packet on every interface:
 * MAC and IP addresses, ports, protocol, TCP flags, lengths, TTL, DF, VNI, ICMP type/code (and
 * the MTU of fragmentation-needed), ARP op and addresses, the TCP options of a SYN.
 * Left out, because the kernel chooses them at random or by timing: timestamps, IP ids, TCP
 * sequence numbers and timestamp values, windows after the handshake, the ICMP echo id, and the
 * VXLAN outer UDP source port (a hash with a per-boot secret).
 */
import { parseFrame, parseIpv4Packet } from '../wire/packet.ts';
import { get16, get32 } from '../wire/bytes.ts';
import { expectedChecksum, pseudoHeaderSum } from '../wire/checksum.ts';
import type { Frame, Ipv4Packet } from '../wire/types.ts';
import { tcpFlagString } from '../wire/tcp.ts';

function ipSummary(p: Ipv4Packet, outerOfVxlan = false): string {
  const ip = p.ip;
  const flags = `${ip.df ? 'DF' : ''}${ip.mf ? 'MF' : ''}`;
  const frag = ip.mf || ip.fragOffset ? ` off ${ip.fragOffset}` : '';
  const head = `ip ${ip.src}>${ip.dst} ttl ${ip.ttl}${flags ? ` ${flags}` : ''}${frag}`;
  const pl = p.payload;
  switch (pl.kind) {
    case 'tcp': {
      const t = pl.tcp;
      const o = t.options;
      const syn = t.flags.syn
        ? ` win ${t.window} <${[o.mss !== undefined ? `mss ${o.mss}` : '', o.sackOk ? 'sackOK' : '', o.timestamp ? 'TS' : '', o.wscale !== undefined ? `wscale ${o.wscale}` : ''].filter(Boolean).join(',')}>`
        : '';
      return `${head} tcp ${t.srcPort}>${t.dstPort} [${tcpFlagString(t.flags)}] len ${pl.data.length}${syn}`;
    }
    case 'udp': {
      if (pl.payload.kind === 'vxlan')
        return `${head} udp *>${pl.udp.dstPort} vxlan ${pl.payload.vxlan.vni} | ${frameSummary(pl.payload.frame)}`;
      const sport = outerOfVxlan ? '*' : String(pl.udp.srcPort);
      return `${head} udp ${sport}>${pl.udp.dstPort} len ${pl.payload.data.length}`;
    }
    case 'icmp': {
      const i = pl.icmp;
      const echo = i.type === 0 || i.type === 8 ? ` seq ${i.seq}` : '';
      return `${head} icmp ${i.type}/${i.code}${i.mtu ? ` mtu ${i.mtu}` : ''}${echo} len ${pl.data.length}`;
    }
    case 'ipip':
      return `${head} ipip | ${ipSummary(pl.inner)}`;
    case 'raw':
      return `${head} proto ${ip.protocol} len ${pl.data.length}`;
  }
}

function frameSummary(f: Frame): string {
  const p = f.payload;
  const eth = `${f.eth.src}>${f.eth.dst}`;
  if (p.kind === 'arp') {
    const a = p.arp;
    return a.op === 1
      ? `${eth} arp who-has ${a.targetIp} tell ${a.senderIp}`
      : `${eth} arp ${a.senderIp} is-at ${a.senderMac} to ${a.targetIp}`;
  }
  if (p.kind === 'ipv4') return `${eth} ${ipSummary(p)}`;
  return `${eth} type 0x${f.eth.ethertype.toString(16)} len ${p.data.length}`;
}

/**
 * Captures taken on veth and bridges carry TCP/UDP checksums the kernel left to offload
 * (CHECKSUM_PARTIAL: only the pseudo-header sum is in the field). Complete them in a copy, as
 * a NIC would, so the packet decodes; a zero UDP checksum ("none") stays zero.
 */
export function completeChecksums(bytes: Uint8Array, raw = false): Uint8Array {
  const b = bytes.slice();
  const ip = (off: number): void => {
    if (off + 20 > b.length || b[off] >> 4 !== 4) return;
    const ihl = (b[off] & 15) * 4;
    const total = get16(b, off + 2);
    const end = Math.min(off + total, b.length);
    const frag = get16(b, off + 6) & 0x3fff;
    const proto = b[off + 9];
    const t = off + ihl;
    if (frag) return;
    const src = get32(b, off + 12);
    const dst = get32(b, off + 16);
    const fix = (field: number) => {
      const c = expectedChecksum(b, t, end, field, pseudoHeaderSum(src, dst, proto, end - t));
      const v = proto === 17 && c === 0 ? 0xffff : c;
      b[field] = v >> 8;
      b[field + 1] = v & 0xff;
    };
    if (proto === 6 && t + 20 <= end) fix(t + 16);
    if (proto === 17 && t + 8 <= end) {
      // VXLAN: complete the inner packet first, then the outer checksum over it
      if (get16(b, t + 2) === 4789 && t + 16 + 14 <= end && get16(b, t + 16 + 12) === 0x0800) ip(t + 16 + 14);
      if (get16(b, t + 6) !== 0) fix(t + 6);
    }
    if (proto === 4) ip(t);
  };
  if (raw) ip(0);
  else if (b.length >= 14 && get16(b, 12) === 0x0800) ip(14);
  return b;
}

/** one comparable line per packet; `raw` for devices that carry bare IP (ipip) */
export function packetSummary(bytes: Uint8Array, raw = false): string {
  try {
    return raw ? ipSummary(parseIpv4Packet(bytes)) : frameSummary(parseFrame(bytes));
  } catch (e) {
    return `undecodable (${bytes.length} bytes): ${(e as Error).message}`;
  }
}

export interface InterfaceDiff {
  netns: string;
  dev: string;
  sim: string[];
  real: string[];
  /** index of the first differing packet, or -1 when equal */
  first: number;
}

/**
 * What differs between a model and the kernel, a paragraph per interface whose packets differ
 * (its first differing packet on both sides) and per state command whose output differs; `label`
 * names the model ("simulation", "imported World"). The one report the tests print.
 */
export function differenceReport(
  label: string,
  diffs: readonly InterfaceDiff[],
  tables: readonly { netns: string; command: string; sim: string; real: string; equal: boolean }[] = [],
): string[] {
  return [
    ...diffs
      .filter((d) => d.first !== -1)
      .map(
        (d) =>
          `${label}: ${d.netns}/${d.dev} differs at packet ${d.first + 1}:\n  model: ${d.sim[d.first] ?? '(nothing)'}\n  real:  ${d.real[d.first] ?? '(nothing)'}`,
      ),
    ...tables
      .filter((t) => !t.equal)
      .map(
        (t) => `${label}: ${t.netns}: \`${t.command}\` differs:\n--- model\n${t.sim}\n--- kernel\n${t.real}`,
      ),
  ];
}

export function compareSequences(netns: string, dev: string, sim: string[], real: string[]): InterfaceDiff {
  let first = -1;
  const n = Math.max(sim.length, real.length);
  for (let i = 0; i < n; i++)
    if (sim[i] !== real[i]) {
      first = i;
      break;
    }
  return { netns, dev, sim, real, first };
}
