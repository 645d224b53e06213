/**
 * What REJECT sends (nf_reject_ipv4.c): for tcp-reset the RST nf_send_reset builds, for the
 * others the ICMP destination-unreachable code icmp_send gets.
 */
import { IPPROTO_TCP, type Ipv4Packet } from '../../wire/types.ts';
import type { RejectWith } from './types.ts';

/** the ICMP code of each --reject-with type (ICMP destination unreachable) */
export const REJECT_CODE: Record<Exclude<RejectWith, 'tcp-reset'>, number> = {
  'icmp-net-unreachable': 0,
  'icmp-host-unreachable': 1,
  'icmp-proto-unreachable': 2,
  'icmp-port-unreachable': 3,
  'icmp-net-prohibited': 9,
  'icmp-host-prohibited': 10,
  'icmp-admin-prohibited': 13,
};

/**
 * nf_send_reset: the RST answering a TCP segment, from its destination to its source, with DF,
 * id 0 and the route's hop limit; none for a RST or a non-first fragment.
 */
export function resetFor(old: Ipv4Packet, ttl: number): Ipv4Packet | undefined {
  const pl = old.payload;
  if (pl.kind !== 'tcp' || pl.tcp.flags.rst || old.ip.fragOffset) return undefined;
  const oth = pl.tcp;
  const tcp = oth.flags.ack
    ? {
        srcPort: oth.dstPort,
        dstPort: oth.srcPort,
        seq: oth.ack,
        ack: 0,
        flags: { rst: true },
        window: 0,
        options: {},
      }
    : {
        srcPort: oth.dstPort,
        dstPort: oth.srcPort,
        seq: 0,
        ack: (oth.seq + (oth.flags.syn ? 1 : 0) + (oth.flags.fin ? 1 : 0) + pl.data.length) >>> 0,
        flags: { rst: true, ack: true },
        window: 0,
        options: {},
      };
  return {
    kind: 'ipv4',
    ip: {
      src: old.ip.dst,
      dst: old.ip.src,
      protocol: IPPROTO_TCP,
      ttl,
      id: 0,
      df: true,
      mf: false,
      fragOffset: 0,
      tos: 0,
    },
    payload: { kind: 'tcp', tcp, data: new Uint8Array(0) },
  };
}
