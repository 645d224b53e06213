/**
 * The bytes a device put on or took off its wire — a frame, or a bare IPv4 packet on an L3 device
 * (ipip) — kept as the packet's representation and emitted when first read (a tx/rx step's frame,
 * a capture for tcpdump, a pcap, `--json`'s hex). A walk records every hop's packet but reads the
 * bytes of none of them, so it builds none.
 *
 * Correct because a representation is never changed once it is on a wire: a socket fills in its
 * packet (source, IP id, DF) before it hands it to the IP layer, a forward copies the packet with
 * its new TTL, NAT makes a new packet, a tunnel a new outer one around the same inner. The bytes
 * read later are therefore the ones the device saw then.
 */
import { emitFrame, emitIpv4Packet, frameLength, ipv4Length } from '../wire/packet.ts';
import type { Frame, Ipv4Packet } from '../wire/types.ts';

export class WireBytes {
  #bytes: Uint8Array | undefined;

  private constructor(
    private readonly frame: Frame | undefined,
    private readonly packet: Ipv4Packet | undefined,
  ) {}

  /** an Ethernet frame (with its header) */
  static frame(f: Frame): WireBytes {
    return new WireBytes(f, undefined);
  }

  /** a bare IPv4 packet, as an L3 device (ipip) carries it */
  static ip(p: Ipv4Packet): WireBytes {
    return new WireBytes(undefined, p);
  }

  /** bytes on the wire, without emitting them */
  get length(): number {
    return this.frame ? frameLength(this.frame) : ipv4Length(this.packet!);
  }

  get bytes(): Uint8Array {
    return (this.#bytes ??= emitRepr(this.repr));
  }

  /** the representation: a frame, or a bare IPv4 packet (a capture keeps it, not this object) */
  get repr(): Frame | Ipv4Packet {
    return this.frame ?? this.packet!;
  }
}

/** the bytes of a frame, or of a bare IPv4 packet */
export function emitRepr(r: Frame | Ipv4Packet): Uint8Array {
  return 'eth' in r ? emitFrame(r) : emitIpv4Packet(r);
}
