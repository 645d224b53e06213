/**
 * What the kernel derives from its link objects, in one place: a veth's peer, a bridge's ports,
 * carrier (IFF_LOWER_UP) and a bridge port's STP state. The datapath (stack.ts) and the tools
 * read carrier only through carrierOk; netlink.ts alone writes the carrier bit.
 */
import type { Link, Netns } from './objects.ts';
import type { World } from './world.ts';

/** the veth peer device, when its namespace is known */
export function vethPeer(w: World | undefined, l: Link): Link | undefined {
  if (l.type !== 'veth' || !l.peer || !w) return undefined;
  return w.netns.get(l.peer.netns)?.link(l.peer.name);
}

/** the ports of a bridge, in ifindex order */
export function bridgePorts(ns: Netns, br: Link): Link[] {
  return [...ns.links.values()].filter((l) => l.master === br.name).sort((a, b) => a.ifindex - b.ifindex);
}

/**
 * netif_running && netif_carrier_ok: what `ip link` shows as LOWER_UP and what the qdisc needs to
 * send (a device without it drops at its noop qdisc). The carrier bit itself is kernel state
 * (Link.carrier): a veth has it while both ends are up; a bridge as br_port_state_selection last
 * set it, which is "some port forwards" once a port ever joined; a bridge that never had a port
 * keeps the carrier it was created with (checked on 6.18: an empty new bridge is LOWER_UP, state
 * UNKNOWN, and sends; once its last port is gone or down it is NO-CARRIER and drops).
 */
export function carrierOk(l: Link): boolean {
  return l.up && l.carrier;
}

/** a bridge port forwards (STP off) while it, its carrier and its bridge are up; else it is "disabled" */
export function portForwarding(ns: Netns, port: Link): boolean {
  const br = port.master ? ns.link(port.master) : undefined;
  return !!br && br.up && carrierOk(port);
}
