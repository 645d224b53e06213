/**
 * The packet printer of the emulated tcpdump: a port of tcpdump 4.99.3's printers for what podwalk
 * puts on a wire (print-ether.c, print-arp.c, print-ip.c, print-ip-demux.c, print-tcp.c,
 * print-udp.c, print-icmp.c, print-vxlan.c, print-http.c, print-raw.c), with their bounds checks:
 * a read past the captured bytes ends the line with ` [|proto]` as tcpdump does (this happens in
 * the packet an ICMP error quotes).
 *
 * What is not ported, and prints differently from tcpdump: application decoders other than HTTP
 * (DNS on port 53, SSH, BGP, NTP, …: tcpdump would decode the payload, podwalk prints the plain
 * `UDP, length N` / TCP line), IP options, IPv6, and link types other than Ethernet and raw IP.
 * podwalk never sends those.
 */
import { services } from './pcapfilter.ts';

export interface PrintOptions {
  /** -v count */
  v: number;
  /** -e: print the link-level header */
  e: boolean;
  /** -n: no names (addresses are never resolved: podwalk has no DNS; without -n ports get /etc/services names) */
  n: boolean;
  /** -S: absolute TCP sequence numbers */
  S: boolean;
  /** -q: quick (less protocol information) */
  q: boolean;
}

class Trunc extends Error {}

const TH_FIN = 0x01;
const TH_SYN = 0x02;
const TH_RST = 0x04;
const TH_ACK = 0x10;
const TH_URG = 0x20;

const TCP_FLAGS: [number, string][] = [
  [0x01, 'F'],
  [0x02, 'S'],
  [0x04, 'R'],
  [0x08, 'P'],
  [0x10, '.'],
  [0x20, 'U'],
  [0x40, 'E'],
  [0x80, 'W'],
];

const TCP_OPTIONS: Record<number, string> = {
  0: 'eol',
  1: 'nop',
  2: 'mss',
  3: 'wscale',
  4: 'sackOK',
  5: 'sack',
  6: 'echo',
  7: 'echoreply',
  8: 'TS',
  11: 'cc',
  12: 'ccnew',
  13: '',
  19: 'md5',
  20: 'scps',
  28: 'uto',
  29: 'tcp-ao',
  30: 'mptcp',
  34: 'tfo',
  254: 'exp',
};

const IPPROTO_VALUES: Record<number, string> = {
  0: 'Options',
  1: 'ICMP',
  2: 'IGMP',
  4: 'IPIP',
  6: 'TCP',
  8: 'EGP',
  9: 'IGRP',
  17: 'UDP',
  33: 'DCCP',
  41: 'IPv6',
  43: 'Routing',
  44: 'Fragment',
  46: 'RSVP',
  47: 'GRE',
  50: 'ESP',
  51: 'AH',
  55: 'Mobile IP',
  58: 'ICMPv6',
  62: 'Mobile IP (old)',
  88: 'EIGRP',
  89: 'OSPF',
  103: 'PIM',
  108: 'Compressed IP',
  112: 'VRRP',
  113: 'PGM',
  132: 'SCTP',
  135: 'Mobility',
  143: 'Ethernet',
};

/** ipproto.c's netdb_protocol_names, 0..60 (what tcpdump prints for a later fragment without -n) */
const NETDB_PROTO = (
  'hopopt icmp igmp ggp ipencap st tcp cbt egp igp bbn-rcc-mon nvp-ii pup argus emcon xnet chaos udp mux ' +
  'dcn-meas hmp prm xns-idp trunk-1 trunk-2 leaf-1 leaf-2 rdp irtp iso-tp4 netblt mfe-nsp merit-inp dccp 3pc ' +
  'idpr xtp ddp idpr-cmtp tp++ il ipv6 sdrp ipv6-route ipv6-frag idrp rsvp gre dsr bna esp ah i-nlsp swipe ' +
  'narp mobile tlsp skip ipv6-icmp ipv6-nonxt ipv6-opts'
).split(' ');

const ETHERTYPES: Record<number, string> = {
  0x0800: 'IPv4',
  0x8847: 'MPLS unicast',
  0x8848: 'MPLS multicast',
  0x86dd: 'IPv6',
  0x8100: '802.1Q',
  0x9100: '802.1Q-9100',
  0x88a8: '802.1Q-QinQ',
  0x9200: '802.1Q-9200',
  0x88e5: '802.1AE MACsec',
  0x0806: 'ARP',
  0x8035: 'Reverse ARP',
  0x88cc: 'LLDP',
  0x888e: 'EAPOL',
  0x8863: 'PPPoE D',
  0x8864: 'PPPoE S',
  0x9000: 'Loopback',
};

const ARP_OPS: Record<number, string> = {
  1: 'Request',
  2: 'Reply',
  3: 'Reverse Request',
  4: 'Reverse Reply',
  8: 'Inverse Request',
  9: 'Inverse Reply',
  10: 'NACK Reply',
};
const ARP_HRD: Record<number, string> = {
  1: 'Ethernet',
  6: 'TokenRing',
  7: 'ArcNet',
  15: 'FrameRelay',
  23: 'Strip',
  24: 'IEEE 1394',
  19: 'ATM',
  32: 'InfiniBand',
};

/** oui.c */
const OUIS: Record<number, string> = {
  0x000000: 'Ethernet',
  0x00000c: 'Cisco',
  0x00005e: 'IANA',
  0x000081: 'Nortel Networks SONMP',
  0x0000f8: 'Cisco bridged',
  0x0080c2: 'Ethernet bridged',
  0x00a03e: 'ATM Forum',
  0x00e02f: 'DOCSIS Spanning Tree',
  0x080007: 'Appletalk',
  0x009069: 'Juniper',
  0x080009: 'Hewlett-Packard',
  0x00120f: 'IEEE 802.3 Private',
  0x0012bb: 'ANSI/TIA',
  0x001b21: 'DCBX',
  0x002320: 'Nicira Networks',
  0x5c16c7: 'Big Switch Networks',
  0xb0d2f5: 'Vello Systems',
  0x002481: 'HP',
  0x0004ea: 'HP-Labs',
  0x748771: 'Infoblox Inc',
  0xa42305: 'Open Networking Lab',
  0x00049f: 'Freescale',
  0x0015ad: 'Netronome',
  0x001018: 'Broadcom',
  0x00e004: 'PMC-Sierra',
  0xd0f0db: 'Ericsson',
};

const HTTP_CMDS = [
  'GET',
  'PUT',
  'COPY',
  'HEAD',
  'LOCK',
  'MOVE',
  'POLL',
  'POST',
  'BCOPY',
  'BMOVE',
  'MKCOL',
  'TRACE',
  'LABEL',
  'MERGE',
  'DELETE',
  'SEARCH',
  'UNLOCK',
  'REPORT',
  'UPDATE',
  'NOTIFY',
  'BDELETE',
  'CONNECT',
  'OPTIONS',
  'CHECKIN',
  'PROPFIND',
  'CHECKOUT',
  'CCM_POST',
  'SUBSCRIBE',
  'PROPPATCH',
  'BPROPFIND',
  'BPROPPATCH',
  'UNCHECKOUT',
  'MKACTIVITY',
  'MKWORKSPACE',
  'UNSUBSCRIBE',
  'RPC_CONNECT',
  'VERSION-CONTROL',
  'BASELINE-CONTROL',
];

const hex2 = (b: number) => b.toString(16).padStart(2, '0');
const hex4 = (v: number) => v.toString(16).padStart(4, '0');

function bittok(table: [number, string][], none: string, v: number, sep: string): string {
  const parts = table.filter(([bit]) => bit && (v & bit) === bit).map(([, s]) => s);
  return parts.length ? parts.join(sep) : none;
}

/** The ones'-complement checksum of the 16-bit words (an odd byte padded), as in_cksum() computes it. */
function cksumSum(p: Uint8Array, off: number, len: number, acc = 0): number {
  let i = off;
  const end = off + len;
  for (; i + 1 < end; i += 2) acc += (p[i] << 8) | p[i + 1];
  if (i < end) acc += p[i] << 8;
  return acc;
}

function fold(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 0x10000);
  return acc;
}

/** in_cksum(): 0 when the data, checksum field included, is correct */
function inCksum(acc: number): number {
  return ~fold(acc) & 0xffff;
}

/** in_cksum_shouldbe(): the value the checksum field should hold */
function shouldBe(sum: number, computed: number): number {
  let s = sum + computed;
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return s;
}

interface TcpSeqEntry {
  seq: number;
  ack: number;
}

/**
 * Prints packets as tcpdump does, one call per packet, keeping the per-connection TCP state
 * (initial sequence numbers for relative seq/ack) across calls like one tcpdump process.
 */
export class PacketPrinter {
  private readonly tcpSeq = new Map<string, TcpSeqEntry>();
  private out: string[] = [];
  private p: Uint8Array = new Uint8Array(0);
  private snapend = 0;
  private protocol = '';
  private readonly tportNames = new Map<number, string>();
  private readonly uportNames = new Map<number, string>();

  constructor(readonly opts: PrintOptions) {
    if (!opts.n) {
      // init_servarray(): the first name per port and protocol
      for (const s of services()) {
        const m = s.proto === 'tcp' ? this.tportNames : this.uportNames;
        if (!m.has(s.port)) m.set(s.port, s.name);
      }
    }
  }

  /** The text tcpdump prints for one packet after the timestamp (no trailing newline). */
  print(linktype: 'ether' | 'raw', data: Uint8Array, wireLen = data.length): string {
    this.out = [];
    this.p = data;
    this.snapend = data.length;
    this.protocol = '';
    try {
      if (linktype === 'ether') {
        this.protocol = 'ether';
        this.etherPrint(0, wireLen, data.length);
      } else {
        this.protocol = 'raw';
        if (this.opts.e) this.w('ip: ');
        this.ipNPrint(0, wireLen);
      }
    } catch (e) {
      if (!(e instanceof Trunc)) throw e;
      this.trunc();
    }
    return this.out.join('');
  }

  /* ---------------------------------------------------------------- helpers */

  private w(s: string): void {
    this.out.push(s);
  }

  private trunc(): void {
    this.w(` [|${this.protocol}]`);
  }

  private ttest(off: number, len: number): boolean {
    return len >= 0 && off >= 0 && off <= this.snapend && len <= this.snapend - off;
  }

  private u8(off: number): number {
    if (!this.ttest(off, 1)) throw new Trunc();
    return this.p[off];
  }

  private u16(off: number): number {
    if (!this.ttest(off, 2)) throw new Trunc();
    return (this.p[off] << 8) | this.p[off + 1];
  }

  private u24(off: number): number {
    if (!this.ttest(off, 3)) throw new Trunc();
    return (this.p[off] << 16) | (this.p[off + 1] << 8) | this.p[off + 2];
  }

  private u32(off: number): number {
    if (!this.ttest(off, 4)) throw new Trunc();
    return ((this.p[off] << 24) | (this.p[off + 1] << 16) | (this.p[off + 2] << 8) | this.p[off + 3]) >>> 0;
  }

  private ipaddr(off: number): string {
    if (!this.ttest(off, 4)) throw new Trunc();
    const p = this.p;
    return `${p[off]}.${p[off + 1]}.${p[off + 2]}.${p[off + 3]}`;
  }

  /** etheraddr_string(): without -n, tcpdump adds the OUI and knows the broadcast address */
  private etheraddr(off: number): string {
    if (!this.ttest(off, 6)) throw new Trunc();
    const b = this.p.subarray(off, off + 6);
    if (!this.opts.n && b.every((x) => x === 0xff)) return 'Broadcast';
    const s = Array.from(b, hex2).join(':');
    if (this.opts.n) return s;
    return `${s} (oui ${OUIS[(b[0] << 16) | (b[1] << 8) | b[2]] ?? 'Unknown'})`;
  }

  private tcpport(port: number): string {
    return this.tportNames.get(port) ?? String(port);
  }

  private udpport(port: number): string {
    return this.uportNames.get(port) ?? String(port);
  }

  private withSnapend<T>(end: number, f: () => T): T {
    const save = this.snapend;
    this.snapend = Math.min(end, this.snapend);
    try {
      return f();
    } finally {
      this.snapend = save;
    }
  }

  /* ---------------------------------------------------------------- Ethernet */

  private etherPrint(off: number, length: number, caplen: number): void {
    this.protocol = 'ether';
    if (length < caplen) {
      this.w(`[length ${length} < caplen ${caplen}] (invalid)`);
      return;
    }
    if (caplen < 14) {
      this.trunc();
      return;
    }
    const origLength = length;
    if (this.opts.e) this.w(`${this.etheraddr(off + 6)} > ${this.etheraddr(off)}, `);
    const type = this.u16(off + 12);
    length -= 14;
    caplen -= 14;
    const payload = off + 14;
    if (type <= 1500) {
      // 802.3 with LLC: podwalk never sends it
      if (this.opts.e) this.w(`802.3, length ${Math.min(type, length)}: `);
      this.w('LLC');
      return;
    }
    if (this.opts.e) this.w(`${this.ethertypeString(type)}, length ${origLength}: `);
    switch (type) {
      case 0x0800:
        this.ipPrint(payload, length);
        return;
      case 0x0806:
      case 0x8035:
        this.arpPrint(payload, length);
        return;
      default:
        if (!this.opts.e)
          this.w(
            `${this.etheraddr(off + 6)} > ${this.etheraddr(off)}, ${this.ethertypeString(type)}, length ${origLength}: `,
          );
    }
  }

  private ethertypeString(type: number): string {
    if (this.opts.q) return ETHERTYPES[type] ?? `Unknown Ethertype (0x${hex4(type)})`;
    return `ethertype ${ETHERTYPES[type] ?? 'Unknown'} (0x${hex4(type)})`;
  }

  /* ---------------------------------------------------------------- ARP */

  private arpPrint(bp: number, length: number): void {
    this.protocol = 'arp';
    if (!this.ttest(bp, 8)) throw new Trunc();
    const hrd = this.u16(bp);
    const pro = this.u16(bp + 2);
    const hln = this.u8(bp + 4);
    const pln = this.u8(bp + 5);
    const op = this.u16(bp + 6);
    const sha = bp + 8;
    const spa = sha + hln;
    const tha = spa + pln;
    const tpa = tha + hln;
    if (hrd === 19) {
      this.w('ATM ARP');
      return;
    }
    if (!this.ttest(tpa, pln)) throw new Trunc();
    if (!this.opts.e) this.w('ARP, ');
    if ((pro !== 0x0800 && pro !== 0x1000) || pln !== 4 || hln === 0 || this.opts.v) {
      this.w(
        `${ARP_HRD[hrd] ?? `Unknown Hardware (${hrd})`} (len ${hln}), ${ETHERTYPES[pro] ?? `Unknown Protocol (0x${hex4(pro)})`} (len ${pln})`,
      );
      if (!this.opts.v) {
        this.w(`, length ${length}`);
        return;
      }
    }
    const paddr = (a: number) =>
      pro !== 0x0800 && pro !== 0x1000 ? '<wrong proto type>' : pln !== 4 ? '<wrong len>' : this.ipaddr(a);
    const laddr = (a: number) =>
      hln === 0
        ? '<empty>'
        : hrd !== 15 && hln === 6
          ? this.etheraddr(a)
          : Array.from(this.p.subarray(a, a + hln), hex2).join(':');
    this.w(`${this.opts.v ? ', ' : ''}${ARP_OPS[op] ?? `Unknown (${op})`} `);
    switch (op) {
      case 1: {
        this.w(`who-has ${paddr(tpa)}`);
        if (this.p.subarray(tha, tha + hln).some((x) => x !== 0)) this.w(` (${laddr(tha)})`);
        this.w(` tell ${paddr(spa)}`);
        break;
      }
      case 2:
        this.w(`${paddr(spa)} is-at ${laddr(sha)}`);
        break;
      case 3:
      case 8:
        this.w(`who-is ${laddr(tha)} tell ${laddr(sha)}`);
        break;
      case 4:
        this.w(`${laddr(tha)} at ${paddr(tpa)}`);
        break;
      case 9:
        this.w(`${laddr(sha)} at ${paddr(spa)}`);
        break;
      default:
        return;
    }
    this.w(`, length ${length}`);
  }

  /* ---------------------------------------------------------------- IPv4 */

  private ipNPrint(bp: number, length: number): void {
    if (length < 1) {
      this.w(`truncated-ip ${length}`);
      return;
    }
    const v = this.u8(bp) & 0xf0;
    if (v === 0x40) this.ipPrint(bp, length);
    else if (v === 0x60) this.w('IP6');
    else this.w(`unknown ip ${v >> 4}`);
  }

  private ipPrint(bp: number, length: number): void {
    this.protocol = 'ip';
    const ver = this.u8(bp) >> 4;
    if (ver !== 4) {
      this.w(ver === 6 ? 'IP6, wrong link-layer encapsulation' : `IP${ver}`);
      this.w(' (invalid)');
      return;
    }
    if (!this.opts.e) this.w('IP ');
    if (!this.ttest(bp, 20)) throw new Trunc();
    if (length < 20) {
      this.w(`truncated-ip ${length}`);
      return;
    }
    const hlen = (this.u8(bp) & 0x0f) * 4;
    if (hlen < 20) {
      this.w(`bad-hlen ${hlen}`);
      return;
    }
    let len = this.u16(bp + 2);
    if (length < len) this.w(`truncated-ip - ${len - length} bytes missing! `);
    if (len < hlen) {
      this.w(`bad-len ${len}`);
      return;
    }
    this.withSnapend(bp + len, () => {
      len -= hlen;
      const off = this.u16(bp + 6);
      const proto = this.u8(bp + 9);
      if (this.opts.v) {
        const tos = this.u8(bp + 1);
        this.w(`(tos 0x${tos.toString(16)}`);
        this.w(['', ',ECT(1)', ',ECT(0)', ',CE'][tos & 3]);
        const ttl = this.u8(bp + 8);
        if (ttl >= 1) this.w(`, ttl ${ttl}`);
        const flags = bittok(
          [
            [0x2000, '+'],
            [0x4000, 'DF'],
            [0x8000, 'rsvd'],
          ],
          'none',
          off & 0xe000,
          ', ',
        );
        this.w(
          `, id ${this.u16(bp + 4)}, offset ${(off & 0x1fff) * 8}, flags [${flags}], proto ${IPPROTO_VALUES[proto] ?? 'unknown'} (${proto})`,
        );
        this.w(`, length ${this.u16(bp + 2)}`);
        if (hlen > 20) this.w(', options (…)');
        if (bp + hlen <= this.snapend) {
          const sum = inCksum(cksumSum(this.p, bp, hlen));
          if (sum !== 0) {
            const ipSum = this.u16(bp + 10);
            this.w(`, bad cksum ${ipSum.toString(16)} (->${shouldBe(ipSum, sum).toString(16)})!`);
          }
        }
        this.w(')\n    ');
      }
      if ((off & 0x1fff) === 0) {
        if (proto !== 6 && proto !== 17 && proto !== 132 && proto !== 33)
          this.w(`${this.ipaddr(bp + 12)} > ${this.ipaddr(bp + 16)}: `);
        if (!this.ttest(bp, hlen)) throw new Trunc();
        this.ipDemux(bp + hlen, len, (off & 0x2000) !== 0, proto, bp);
      } else {
        this.w(`${this.ipaddr(bp + 12)} > ${this.ipaddr(bp + 16)}:`);
        const name = !this.opts.n ? NETDB_PROTO[proto] : undefined;
        this.w(name ? ` ${name}` : ` ip-proto-${proto}`);
      }
    });
  }

  private ipDemux(bp: number, length: number, fragmented: boolean, nh: number, ip: number): void {
    switch (nh) {
      case 6:
        this.tcpPrint(bp, length, ip, fragmented);
        return;
      case 17:
        this.udpPrint(bp, length, ip, fragmented);
        return;
      case 1:
        this.icmpPrint(bp, length, fragmented);
        return;
      case 4:
        this.ipPrint(bp, length);
        return;
      default: {
        const name = !this.opts.n ? NETDB_PROTO[nh] : undefined;
        this.w(name ? ` ${name}` : ` ip-proto-${nh}`);
        this.w(` ${length}`);
      }
    }
  }

  /* ---------------------------------------------------------------- TCP */

  private tcpPrint(bp: number, length: number, ip: number, fragmented: boolean): void {
    this.protocol = 'tcp';
    if (!this.ttest(bp + 2, 2)) {
      this.w(`${this.ipaddr(ip + 12)} > ${this.ipaddr(ip + 16)}:`);
      throw new Trunc();
    }
    const sport = this.u16(bp);
    const dport = this.u16(bp + 2);
    this.w(
      `${this.ipaddr(ip + 12)}.${this.tcpport(sport)} > ${this.ipaddr(ip + 16)}.${this.tcpport(dport)}: `,
    );
    if (!this.ttest(bp, 20)) throw new Trunc();
    let hlen = (this.u8(bp + 12) >> 4) * 4;
    if (hlen < 20) {
      this.w(` tcp ${length - hlen} [bad hdr length ${hlen} - too short, < 20]`);
      return;
    }
    let seq = this.u32(bp + 4);
    let ack = this.u32(bp + 8);
    const win = this.u16(bp + 14);
    const urp = this.u16(bp + 18);
    if (this.opts.q) {
      this.w(`tcp ${length - hlen}`);
      if (hlen > length) this.w(` [bad hdr length ${hlen} - too long, > ${length}]`);
      return;
    }
    const flags = this.u8(bp + 13);
    this.w(`Flags [${bittok(TCP_FLAGS, 'none', flags, '')}]`);
    let rev = false;
    let thseq = 0;
    let thack = 0;
    if (!this.opts.S && flags & TH_ACK) {
      const src = this.u32(ip + 12);
      const dst = this.u32(ip + 16);
      rev = sport > dport || (sport === dport && src > dst);
      const key = rev ? `${dst}|${src}|${dport}|${sport}` : `${src}|${dst}|${sport}|${dport}`;
      let th = this.tcpSeq.get(key);
      if (!th || flags & TH_SYN) {
        th = rev ? { ack: seq, seq: (ack - 1) >>> 0 } : { seq, ack: (ack - 1) >>> 0 };
        this.tcpSeq.set(key, th);
      } else if (rev) {
        seq = (seq - th.ack) >>> 0;
        ack = (ack - th.seq) >>> 0;
      } else {
        seq = (seq - th.seq) >>> 0;
        ack = (ack - th.ack) >>> 0;
      }
      thseq = th.seq;
      thack = th.ack;
    }
    if (hlen > length) {
      this.w(` [bad hdr length ${hlen} - too long, > ${length}]`);
      return;
    }
    if (this.opts.v && !fragmented && this.ttest(bp, length)) {
      const acc = cksumSum(this.p, bp, length, cksumSum(this.p, ip + 12, 8) + 6 + length);
      const sum = inCksum(acc);
      const tcpSum = this.u16(bp + 16);
      this.w(`, cksum 0x${hex4(tcpSum)}`);
      this.w(sum !== 0 ? ` (incorrect -> 0x${hex4(shouldBe(tcpSum, sum))})` : ' (correct)');
    }
    length -= hlen;
    if (this.opts.v > 1 || length > 0 || flags & (TH_SYN | TH_FIN | TH_RST)) {
      this.w(`, seq ${seq}`);
      if (length > 0) this.w(`:${(seq + length) >>> 0}`);
    }
    if (flags & TH_ACK) this.w(`, ack ${ack}`);
    this.w(`, win ${win}`);
    if (flags & TH_URG) this.w(`, urg ${urp}`);
    if (hlen > 20) {
      hlen -= 20;
      let cp = bp + 20;
      let ch = '';
      this.w(', options [');
      const bad = () => {
        this.w('[bad opt]');
        if (ch) this.w(']');
      };
      while (hlen > 0) {
        if (ch) this.w(ch);
        const opt = this.u8(cp);
        cp++;
        let len: number;
        if (opt === 0 || opt === 1) len = 1;
        else {
          len = this.u8(cp);
          cp++;
          if (len < 2 || len > hlen) return bad();
          --hlen;
        }
        --hlen;
        let datalen = 0;
        const lencheck = (l: number) => {
          if (l > hlen) return false;
          if (!this.ttest(cp, l)) throw new Trunc();
          return true;
        };
        this.w(TCP_OPTIONS[opt] ?? `unknown-${opt}`);
        switch (opt) {
          case 2:
            datalen = 2;
            if (!lencheck(datalen)) return bad();
            this.w(` ${this.u16(cp)}`);
            break;
          case 3:
            datalen = 1;
            if (!lencheck(datalen)) return bad();
            this.w(` ${this.u8(cp)}`);
            break;
          case 5:
            datalen = len - 2;
            if (datalen % 8 !== 0) this.w(' invalid sack');
            else {
              this.w(` ${datalen / 8} `);
              for (let i = 0; i < datalen; i += 8) {
                if (!lencheck(i + 4)) return bad();
                let s = this.u32(cp + i);
                if (!lencheck(i + 8)) return bad();
                let e = this.u32(cp + i + 4);
                const base = rev ? thseq : thack;
                s = (s - base) >>> 0;
                e = (e - base) >>> 0;
                this.w(`{${s}:${e}}`);
              }
            }
            break;
          case 6:
          case 7:
          case 11:
          case 12:
          case 13:
            datalen = 4;
            if (!lencheck(datalen)) return bad();
            this.w(` ${this.u32(cp)}`);
            break;
          case 8:
            datalen = 8;
            if (!lencheck(datalen)) return bad();
            this.w(` val ${this.u32(cp)} ecr ${this.u32(cp + 4)}`);
            break;
          case 0:
          case 1:
          case 4:
            break;
          default:
            datalen = len - 2;
            if (datalen) this.w(' 0x');
            for (let i = 0; i < datalen; ++i) {
              if (!lencheck(i + 1)) return bad();
              this.w(hex2(this.u8(cp + i)));
            }
        }
        cp += datalen;
        hlen -= datalen;
        datalen++;
        if (opt !== 0 && opt !== 1) datalen++;
        if (datalen !== len) this.w(`[len ${len}]`);
        ch = ',';
        if (opt === 0) break;
      }
      this.w(']');
    }
    this.w(`, length ${length}`);
    if (length === 0) return;
    const headerLen = (this.u8(bp + 12) >> 4) * 4;
    if (!this.ttest(bp, headerLen)) {
      this.w(` [remaining caplen(${Math.max(0, this.snapend - bp)}) < header length(${headerLen})]`);
      throw new Trunc();
    }
    const data = bp + headerLen;
    if (flags & TH_RST && this.opts.v) {
      this.tcpRstData(data, length);
      return;
    }
    const port = (p: number) => sport === p || dport === p;
    if (port(80) || port(8080)) {
      this.w(': ');
      this.protocol = 'http';
      this.txtproto(data, length, HTTP_CMDS);
    }
  }

  private tcpRstData(sp: number, length: number): void {
    this.w(this.ttest(sp, length) ? ' [RST' : ' [!RST');
    if (length > 30) {
      length = 30;
      this.w('+');
    }
    this.w(' ');
    while (length && sp < this.snapend) {
      this.w(printChar(this.u8(sp)));
      sp++;
      length--;
    }
    this.w(']');
  }

  /* ---------------------------------------------------------------- text protocols (util-print.c) */

  private fetchToken(pptr: number, idx: number, len: number): { idx: number; token: string } {
    let token = '';
    for (; idx < len; idx++) {
      if (!this.ttest(pptr + idx, 1)) return { idx: 0, token };
      const c = this.u8(pptr + idx);
      if (c > 0x7f) return { idx: 0, token };
      if (c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a) break;
      if (c < 0x20 || c > 0x7e) return { idx: 0, token };
      if (token.length + 2 > 129) return { idx: 0, token };
      token += String.fromCharCode(c);
    }
    if (token.length === 0) return { idx: 0, token };
    for (; idx < len; idx++) {
      if (!this.ttest(pptr + idx, 1)) break;
      const c = this.u8(pptr + idx);
      if (c === 0x0d || c === 0x0a) break;
      if (c < 0x20 || c > 0x7e) break;
      if (c !== 0x20 && c !== 0x09) break;
    }
    return { idx, token };
  }

  private printTxtLine(prefix: string, pptr: number, idx: number, len: number): number {
    const start = idx;
    let linelen: number;
    const text = (n: number) => String.fromCharCode(...this.p.subarray(pptr + start, pptr + start + n));
    while (idx < len) {
      const c = this.u8(pptr + idx);
      if (c === 0x0a) {
        linelen = idx - start;
        idx++;
        this.w(prefix + text(linelen));
        return idx;
      } else if (c === 0x0d) {
        if (idx + 1 >= len) return 0;
        if (this.u8(pptr + idx + 1) === 0x0a) {
          linelen = idx - start;
          idx += 2;
          this.w(prefix + text(linelen));
          return idx;
        }
        return 0;
      } else if ((c < 0x20 || c > 0x7e) && c !== 0x09) return 0;
      idx++;
    }
    this.w(prefix + text(idx - start));
    this.trunc();
    return 0;
  }

  private txtproto(pptr: number, len: number, cmds: string[]): void {
    let printThis = false;
    let t = this.fetchToken(pptr, 0, len);
    if (t.idx !== 0) {
      const tok = t.token.toUpperCase();
      if (cmds.some((c) => c === tok)) printThis = true;
      t = this.fetchToken(pptr, t.idx, len);
      if (t.idx !== 0 && /^[0-9]{3}$/.test(t.token)) printThis = true;
    }
    this.w(this.protocol.toUpperCase());
    if (!printThis) return;
    if (this.opts.v) {
      this.w(`, length: ${len}`);
      for (let idx = 0; idx < len;) {
        const eol = this.printTxtLine('\n\t', pptr, idx, len);
        if (eol === 0) break;
        idx = eol;
      }
    } else this.printTxtLine(': ', pptr, 0, len);
  }

  /* ---------------------------------------------------------------- UDP */

  private udpPrint(bp: number, length: number, ip: number, fragmented: boolean): void {
    this.protocol = 'udp';
    const addrs = (sport?: number, dport?: number) => {
      if (sport === undefined) this.w(`${this.ipaddr(ip + 12)} > ${this.ipaddr(ip + 16)}: `);
      else
        this.w(
          `${this.ipaddr(ip + 12)}.${this.udpport(sport)} > ${this.ipaddr(ip + 16)}.${this.udpport(dport!)}: `,
        );
    };
    if (!this.ttest(bp + 2, 2)) {
      addrs();
      throw new Trunc();
    }
    const sport = this.u16(bp);
    const dport = this.u16(bp + 2);
    if (length < 8) {
      addrs(sport, dport);
      this.w(`truncated-udp ${length}`);
      return;
    }
    if (!this.ttest(bp + 4, 2)) {
      addrs(sport, dport);
      throw new Trunc();
    }
    let ulen = this.u16(bp + 4);
    if (ulen === 0 && length > 65535) ulen = length;
    if (ulen < 8) {
      addrs(sport, dport);
      this.w(`truncated-udplength ${ulen}`);
      return;
    }
    ulen -= 8;
    length -= 8;
    if (ulen < length) length = ulen;
    const cp = bp + 8;
    if (cp > this.snapend) {
      addrs(sport, dport);
      throw new Trunc();
    }
    addrs(sport, dport);
    if (this.opts.v && !fragmented && this.opts.v > 1) {
      const udpSum = this.u16(bp + 6);
      if (udpSum === 0) this.w('[no cksum] ');
      else if (this.ttest(cp, length)) {
        const l = length + 8;
        const sum = inCksum(cksumSum(this.p, bp, l, cksumSum(this.p, ip + 12, 8) + 17 + l));
        if (sum !== 0) this.w(`[bad udp cksum 0x${hex4(udpSum)} -> 0x${hex4(shouldBe(udpSum, sum))}!] `);
        else this.w('[udp sum ok] ');
      }
    }
    if (!this.opts.q && (sport === 4789 || dport === 4789)) {
      this.vxlanPrint(cp, length);
      return;
    }
    if (ulen > length && !fragmented) this.w(`UDP, bad length ${ulen} > ${length}`);
    else this.w(`UDP, length ${ulen}`);
  }

  private vxlanPrint(bp: number, len: number): void {
    this.protocol = 'vxlan';
    this.w('VXLAN');
    if (len < 8) {
      this.w(' (invalid)');
      return;
    }
    const flags = this.u8(bp);
    this.w(`, flags [${flags & 0x08 ? 'I' : 'invalid'}] (0x${hex2(flags)}), `);
    this.w(`vni ${this.u24(bp + 4)}\n`);
    this.u8(bp + 7);
    this.etherPrint(bp + 8, len - 8, Math.max(0, this.snapend - (bp + 8)));
  }

  /* ---------------------------------------------------------------- ICMP */

  private icmpPrint(bp: number, plen: number, fragmented: boolean): void {
    this.protocol = 'icmp';
    const type = this.u8(bp);
    const code = this.u8(bp + 1);
    const oip = bp + 8;
    const odst = () => this.ipaddr(oip + 16);
    let str: string;
    switch (type) {
      case 0:
      case 8:
        str = `echo ${type === 8 ? 'request' : 'reply'}, id ${this.u16(bp + 4)}, seq ${this.u16(bp + 6)}`;
        break;
      case 3:
        switch (code) {
          case 0:
            str = `net ${odst()} unreachable`;
            break;
          case 1:
            str = `host ${odst()} unreachable`;
            break;
          case 2:
            str = `${odst()} protocol ${this.u8(oip + 9)} unreachable`;
            break;
          case 3: {
            this.u8(oip + 9);
            const hlen = (this.u8(oip) & 0x0f) * 4;
            const dport = this.u16(oip + hlen + 2);
            const proto = this.u8(oip + 9);
            str =
              proto === 6
                ? `${odst()} tcp port ${this.tcpport(dport)} unreachable`
                : proto === 17
                  ? `${odst()} udp port ${this.udpport(dport)} unreachable`
                  : `${odst()} protocol ${proto} port ${dport} unreachable`;
            break;
          }
          case 4: {
            const mtu = this.u16(bp + 6);
            str = mtu
              ? `${odst()} unreachable - need to frag (mtu ${mtu})`
              : `${odst()} unreachable - need to frag`;
            break;
          }
          case 5:
            str = `${odst()} unreachable - source route failed`;
            break;
          case 6:
            str = `net ${odst()} unreachable - unknown`;
            break;
          case 7:
            str = `host ${odst()} unreachable - unknown`;
            break;
          case 8:
            str = `${odst()} unreachable - source host isolated`;
            break;
          case 9:
            str = `net ${odst()} unreachable - admin prohibited`;
            break;
          case 10:
            str = `host ${odst()} unreachable - admin prohibited`;
            break;
          case 11:
            str = `net ${odst()} unreachable - tos prohibited`;
            break;
          case 12:
            str = `host ${odst()} unreachable - tos prohibited`;
            break;
          case 13:
            str = `host ${odst()} unreachable - admin prohibited filter`;
            break;
          case 14:
            str = `host ${odst()} unreachable - host precedence violation`;
            break;
          case 15:
            str = `host ${odst()} unreachable - precedence cutoff`;
            break;
          default:
            str = `${odst()} unreachable - #${code}`;
        }
        break;
      case 5: {
        const gw = this.ipaddr(bp + 4);
        const names = [
          'redirect %s to net %g',
          'redirect %s to host %g',
          'redirect-tos %s to net %g',
          'redirect-tos %s to host %g',
        ];
        str = (names[code] ?? `redirect-#${code} %s to %g`).replace('%s', odst()).replace('%g', gw);
        break;
      }
      case 11:
        this.u32(oip + 16);
        str =
          code === 0
            ? 'time exceeded in-transit'
            : code === 1
              ? 'ip reassembly time exceeded'
              : `time exceeded-#${code}`;
        break;
      case 12:
        str = code ? `parameter problem - code ${code}` : `parameter problem - octet ${this.u8(bp + 4)}`;
        break;
      case 18:
        str = `address mask is 0x${this.u32(bp + 8)
          .toString(16)
          .padStart(8, '0')}`;
        break;
      case 13:
        str = `time stamp query id ${this.u16(bp + 4)} seq ${this.u16(bp + 6)}`;
        break;
      default:
        str =
          {
            4: 'source quench',
            10: 'router solicitation',
            14: 'time stamp reply',
            15: 'information request',
            16: 'information reply',
            17: 'address mask request',
          }[type] ?? `type-#${type}`;
    }
    this.w(`ICMP ${str}, length ${plen}`);
    if (this.opts.v && !fragmented && this.ttest(bp, plen)) {
      const sum = inCksum(cksumSum(this.p, bp, plen));
      if (sum !== 0) {
        const icmpSum = this.u16(bp + 2);
        this.w(` (wrong icmp cksum ${icmpSum.toString(16)} (->${shouldBe(icmpSum, sum).toString(16)})!)`);
      }
    }
    const errType = type === 3 || type === 4 || type === 5 || type === 11 || type === 12;
    if (this.opts.v >= 1 && errType) {
      this.w('\n\t');
      const ipLen = this.u16(oip + 2);
      this.withSnapend(oip + ipLen, () => this.ipPrint(oip, ipLen));
    }
    this.protocol = 'icmp';
    // RFC 4884 multi-part extensions: tcpdump looks for one behind the first 128 bytes of the quote
    const EXTD_MINLEN = 136;
    if (this.opts.v >= 1 && plen > EXTD_MINLEN && (type === 3 || type === 11 || type === 12)) {
      if (!this.ttest(bp, 8)) throw new Trunc();
      const extOff = bp + 8 + 128;
      if (this.u8(bp + 5) === 0 && this.ttest(extOff, plen - EXTD_MINLEN)) {
        if (inCksum(cksumSum(this.p, extOff, plen - EXTD_MINLEN)) !== 0) return;
      }
      this.w(`\n\tICMP Multi-Part extension v${(this.u8(extOff) & 0xf0) >> 4}`);
      if ((this.u8(extOff) & 0xf0) >> 4 !== 2) {
        this.w(' packet not supported');
        return;
      }
      this.w(' (podwalk does not decode its objects)');
    }
  }
}

/** fn_print_char(): non-printable bytes as M- / ^ escapes */
function printChar(c: number): string {
  let s = '';
  if (c > 0x7f) {
    c &= 0x7f;
    s += 'M-';
  }
  if (c < 0x20 || c > 0x7e) {
    c ^= 0x40;
    s += '^';
  }
  return s + String.fromCharCode(c);
}
