/**
 * Structured representations ("Repr", after smoltcp) of every header podwalk puts on a wire.
 *
 * A Repr holds the fields a sender chooses; lengths and checksums are computed by `emit`, and
 * `parse` checks them. Addresses are kept in their canonical text form (IPv4 dotted quad, MAC
 * lower-case colon hex) so that traces read well and compare with `===`.
 */

export type Ipv4Addr = string; // "10.244.0.5"
export type MacAddr = string; // "62:a1:b2:c3:d4:e6"

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;

export const IPPROTO_ICMP = 1;
export const IPPROTO_IPIP = 4;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export const VXLAN_PORT = 4789;

export interface EthernetRepr {
  dst: MacAddr;
  src: MacAddr;
  ethertype: number;
}

export interface ArpRepr {
  /** 1 = request, 2 = reply */
  op: 1 | 2;
  senderMac: MacAddr;
  senderIp: Ipv4Addr;
  targetMac: MacAddr;
  targetIp: Ipv4Addr;
}

export interface Ipv4Repr {
  src: Ipv4Addr;
  dst: Ipv4Addr;
  protocol: number;
  ttl: number;
  id: number;
  df: boolean;
  mf: boolean;
  /** fragment offset in bytes (multiple of 8) */
  fragOffset: number;
  /** DSCP/ECN byte */
  tos: number;
}

export interface TcpOptions {
  mss?: number;
  sackOk?: boolean;
  timestamp?: { val: number; ecr: number };
  wscale?: number;
}

export interface TcpFlags {
  fin?: boolean;
  syn?: boolean;
  rst?: boolean;
  psh?: boolean;
  ack?: boolean;
  urg?: boolean;
}

export interface TcpRepr {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: TcpFlags;
  window: number;
  options: TcpOptions;
}

export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  /** true: the checksum field is 0 ("no checksum", RFC 768), as a vxlan device with noudpcsum sends */
  noChecksum?: boolean;
}

export interface IcmpRepr {
  type: number;
  code: number;
  /** echo: identifier and sequence; other types: 0 */
  id: number;
  seq: number;
  /** type 3 code 4 (fragmentation needed): next-hop MTU */
  mtu?: number;
}

export interface VxlanRepr {
  /** 24-bit VXLAN network identifier */
  vni: number;
}

/* ---------- nested packets: what a device holds and a trace records ---------- */

export type Frame = {
  eth: EthernetRepr;
  payload: ArpPayload | Ipv4Packet | RawPayload;
};

export interface ArpPayload {
  kind: 'arp';
  arp: ArpRepr;
}

export interface RawPayload {
  kind: 'raw';
  data: Uint8Array;
}

export interface Ipv4Packet {
  kind: 'ipv4';
  ip: Ipv4Repr;
  /** For a non-first fragment, or a protocol podwalk does not decode: raw bytes */
  payload: TcpSegment | UdpDatagram | IcmpMessage | IpipPayload | RawPayload;
}

export interface TcpSegment {
  kind: 'tcp';
  tcp: TcpRepr;
  data: Uint8Array;
}

export interface UdpDatagram {
  kind: 'udp';
  udp: UdpRepr;
  payload: VxlanPayload | RawPayload;
}

export interface VxlanPayload {
  kind: 'vxlan';
  vxlan: VxlanRepr;
  frame: Frame;
}

export interface IcmpMessage {
  kind: 'icmp';
  icmp: IcmpRepr;
  /** echo: payload data; errors: the offending IP header + first 8 bytes (as Linux quotes) */
  data: Uint8Array;
}

export interface IpipPayload {
  kind: 'ipip';
  inner: Ipv4Packet;
}
