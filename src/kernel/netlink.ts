/**
 * The one netlink API: every change a control plane makes to kernel state (a CNI plugin or
 * daemon, BIRD, a user's `ip`/`bridge` command, a lab fault) goes through these functions, with
 * rtnetlink's checks, side effects and errors as a real 6.18 kernel has them: an address brings
 * its prefix route; a device set down loses its IPv4 routes and neighbours; a veth peer going
 * down takes the carrier; a bridge follows its ports' MTU and carrier. A refusal is a
 * NetlinkError: the errno, and the extended-ack message when the kernel sends one.
 */
import { broadcastOf, inPrefix, intToIp4, ip4ToInt, networkOf, parseCidr } from '../wire/addr.ts';
import type { MacAddr } from '../wire/types.ts';
import { errnoNumber, strerror, type Errno } from './errno.ts';
import { Fib, sameRoute, type Route, type RouteProto, type RouteScope, type RouteType } from './fib.ts';
import { bridgePorts, carrierOk, portForwarding, vethPeer } from './links.ts';
import {
  bridgeFdb,
  neighTable,
  newStats,
  NO_MACS,
  vxlanFdb,
  type Address,
  type BridgeLink,
  type DeviceSysctl,
  type FdbEntry,
  type Link,
  type LocalMade,
  type Netns,
  type NetnsRole,
  type NeighEntry,
  type NudState,
  type VxlanFdbEntry,
  type VethLink,
  type VxlanLink,
} from './objects.ts';
import type { World } from './world.ts';

export class NetlinkError extends Error {
  /** the errno number (EEXIST → 17) */
  readonly errno: number;

  /**
   * `code`: the errno the kernel answered with; `extack`: its extended-ack message, which `ip`
   * prints instead of the errno text ("Error: <extack>.").
   */
  constructor(
    readonly code: Errno,
    readonly extack?: string,
  ) {
    super(extack ? `${extack} (${strerror(code)})` : strerror(code));
    this.errno = errnoNumber(code);
  }
}

function ext(code: Errno, extack: string): NetlinkError {
  return new NetlinkError(code, extack);
}

/* ------------------------------------------------------------------ namespaces and links */

/**
 * `ip netns add NAME` and `ip -n NAME link set lo up`: a namespace with its loopback device
 * (127.0.0.1/8, which the kernel gives lo in every namespace) up.
 */
export function netnsAdd(w: World, name: string, role: NetnsRole): Netns {
  const ns = netnsWithLoopback(w, name, role);
  linkSetUp(w, ns, 'lo', true);
  return ns;
}

/** a new namespace with its loopback device (127.0.0.1/8), still down */
function netnsWithLoopback(w: World, name: string, role: NetnsRole): Netns {
  const ns = w.addNetns(name, role);
  // the device made whole by newLink's literal, its type in it: no spread (V8 gives each object a
  // spread makes a hidden class of its own, ~420 bytes a namespace), no field added after
  const lo = newLink(ns, 'lo', '00:00:00:00:00:00', 65536, undefined, 'loopback');
  lo.noarp = true;
  ns.links.set('lo', lo);
  // a list of its own length (a push gives an empty list room for 17 addresses)
  lo.addrs = [{ ip: '127.0.0.1', len: 8, scope: 'host' }];
  localChanged(ns);
  return ns;
}

const IFNAMSIZ = 15;

/** dev_valid_name, with IFNAMSIZ */
function validName(name: string): boolean {
  return !!name && name.length <= IFNAMSIZ && !/[\s/:]/.test(name) && name !== '.' && name !== '..';
}

/** dev_valid_name: EINVAL; a name in use: EEXIST */
function checkName(ns: Netns, name: string): void {
  if (!validName(name)) throw new NetlinkError('EINVAL');
  if (ns.links.has(name)) throw new NetlinkError('EEXIST');
}

/** dev_index_reserve: an ifindex asked for that a device of the namespace has is EBUSY */
function checkIfindex(ns: Netns, ifindex: number | undefined): void {
  if (ifindex === undefined) return;
  if (ifindex < 1) throw new NetlinkError('EINVAL');
  for (const l of ns.links.values()) if (l.ifindex === ifindex) throw new NetlinkError('EBUSY');
}

/**
 * the fields every net_device starts with: down, carrier on (alloc_netdev), a new ifindex, and
 * its kind, in one literal (a field added after it goes to a property array of its own)
 */
function newLink<T extends Link['type']>(
  ns: Netns,
  name: string,
  mac: MacAddr,
  mtu: number,
  ifindex: number | undefined,
  type: T,
) {
  return {
    name,
    ifindex: ns.allocIfindex(ifindex),
    mac,
    mtu,
    up: false,
    addrs: [] as Address[],
    noarp: false,
    stats: newStats(),
    carrier: true,
    carrierChanges: 0,
    uc: NO_MACS,
    mc: NO_MACS,
    type,
  };
}

/**
 * A veth end: newLink's fields in its order, then the peer, all in one literal (two of them a
 * pod: the peer added after newLink's literal went to a property array of each end's own), carrier
 * off (netif_carrier_off: one carrier change)
 */
function vethLink(ns: Netns, req: LinkAddBase, peerNetns: string, peerName: string): VethLink {
  return {
    name: req.name,
    ifindex: ns.allocIfindex(req.ifindex),
    mac: req.mac,
    mtu: req.mtu,
    up: false,
    addrs: [],
    noarp: false,
    stats: newStats(),
    carrier: false,
    carrierChanges: 1,
    uc: NO_MACS,
    mc: NO_MACS,
    type: 'veth',
    peer: { netns: peerNetns, name: peerName },
  };
}

/** min_mtu/max_mtu as the drivers set them */
export function mtuLimits(l: Pick<Link, 'type'>): { min: number; max: number } {
  switch (l.type) {
    case 'loopback':
      return { min: 0, max: 0 };
    case 'ipip':
      // IP_MAX_MTU minus the outer IPv4 header (__ip_tunnel_create); not checked against a kernel with ipip
      return { min: 68, max: 0xffff - 20 };
    default:
      return { min: 68, max: 65535 };
  }
}

/** dev_validate_mtu */
function validateMtu(type: Link['type'], mtu: number): void {
  const { min, max } = mtuLimits({ type });
  if (mtu < 0 || mtu < min) throw ext('EINVAL', 'mtu less than device minimum');
  if (max > 0 && mtu > max) throw ext('EINVAL', 'mtu greater than device maximum');
}

/** VXLAN's headroom over IPv4: outer IP 20 + UDP 8 + VXLAN 8 + the inner Ethernet header 14 */
export const VXLAN_HEADROOM = 50;

/** what every kind of `ip link add` takes */
export interface LinkAddBase {
  name: string;
  mac: MacAddr;
  mtu: number;
  /** IFLA_IFINDEX (`ip link add … index N`): the ifindex asked for; EBUSY when a device has it */
  ifindex?: number;
}

/** RTM_NEWLINK: `ip link add NAME address MAC mtu N type …` */
export type LinkAddRequest =
  | (LinkAddBase & { type: 'bridge' })
  | (LinkAddBase & {
      type: 'veth';
      /** `peer name P address M mtu N netns NS` */
      peer: { netns: Netns; name: string; mac: MacAddr; mtu: number; ifindex?: number };
    })
  | (LinkAddBase & {
      type: 'vxlan';
      vni: number;
      local: string;
      /** the underlay device */
      dev: string;
      dstport: number;
      learning: boolean;
      udpcsum: boolean;
    })
  | (Omit<LinkAddBase, 'mac'> & { type: 'ipip' });

/**
 * rtnl_newlink for the kinds the model has. A veth pair is created peer first (the peer gets
 * the lower ifindex) and both ends start without carrier (netif_carrier_off: one carrier change
 * each); a bridge starts with carrier and its own address in its FDB; a VXLAN device's MTU is
 * clamped to its underlay's MTU minus the VXLAN headroom (vxlan_config_apply), all as on 6.18.
 */
export function linkAdd(w: World, ns: Netns, req: LinkAddRequest): Link {
  localChanged(ns);
  if (req.type === 'veth') localChanged(req.peer.netns);
  checkName(ns, req.name);
  checkIfindex(ns, req.ifindex);
  if (req.type === 'veth') checkIfindex(req.peer.netns, req.peer.ifindex);
  switch (req.type) {
    case 'bridge': {
      validateMtu('bridge', req.mtu);
      const br: BridgeLink = Object.assign(newLink(ns, req.name, req.mac, req.mtu, req.ifindex, 'bridge'), {
        ageingTime: 300,
        fdb: bridgeFdb(ns),
      });
      br.fdb.insert({ mac: req.mac, port: req.name, state: 'local', updated: w.now });
      ns.links.set(req.name, br);
      return br;
    }
    case 'veth': {
      const p = req.peer;
      // veth_newlink: is_valid_veth_mtu, no extack
      for (const m of [req.mtu, p.mtu]) if (m < 68 || m > 65535) throw new NetlinkError('EINVAL');
      checkName(p.netns, p.name);
      if (p.netns === ns && p.name === req.name) throw new NetlinkError('EEXIST');
      const peer = vethLink(p.netns, p, ns.name, req.name);
      p.netns.links.set(p.name, peer);
      const l = vethLink(ns, req, p.netns.name, p.name);
      ns.links.set(req.name, l);
      return l;
    }
    case 'vxlan': {
      const lower = req.dev ? ns.link(req.dev) : undefined;
      if (req.dev && !lower) throw new NetlinkError('ENODEV');
      validateMtu('vxlan', req.mtu);
      // vxlan_vni_in_use: one device per VNI and UDP port in a namespace
      for (const l of ns.links.values())
        if (l.type === 'vxlan' && l.vni === req.vni && l.dstport === req.dstport)
          throw ext('EEXIST', 'A VXLAN device with the specified VNI already exists');
      const vx: VxlanLink = Object.assign(
        // vxlan_config_apply: a device over a lower one is clamped to its MTU less the headroom
        newLink(
          ns,
          req.name,
          req.mac,
          lower ? Math.min(req.mtu, lower.mtu - VXLAN_HEADROOM) : req.mtu,
          req.ifindex,
          'vxlan',
        ),
        {
          vni: req.vni,
          local: req.local,
          dev: req.dev,
          dstport: req.dstport,
          learning: req.learning,
          udpcsum: req.udpcsum,
          srcPortMin: 32768,
          srcPortMax: 60999,
          fdb: vxlanFdb(ns),
        },
      );
      ns.links.set(req.name, vx);
      return vx;
    }
    case 'ipip': {
      validateMtu('ipip', req.mtu);
      const t: Link = Object.assign(
        newLink(ns, req.name, '00:00:00:00:00:00', req.mtu, req.ifindex, 'ipip'),
        {
          ttl: 0,
          pmtudisc: false,
        },
      );
      t.noarp = true;
      ns.links.set(req.name, t);
      return t;
    }
  }
}

/**
 * `ip link del DEV`: rtnl_dellink, unregister_netdevice_many. A veth takes its peer with it
 * (veth_dellink), a VXLAN device over a device that goes goes too
 * (vxlan_handle_lowerdev_unregister), a bridge releases its ports (br_dev_delete) and a port
 * leaves its bridge (br_del_if); each device is closed first (its routes and neighbours go:
 * dev_close), then its routes of scope host (its local addresses), its addresses and its
 * per-device sysctls. The loopback cannot be deleted (EOPNOTSUPP).
 */
export function linkDel(w: World, ns: Netns, name: string): void {
  const dev = ns.link(name);
  if (!dev) throw new NetlinkError('ENODEV');
  if (dev.type === 'loopback') throw new NetlinkError('EOPNOTSUPP');
  const gone: { ns: Netns; l: Link }[] = [{ ns, l: dev }];
  const peer = vethPeer(w, dev);
  if (peer && dev.type === 'veth' && dev.peer) gone.push({ ns: w.ns(dev.peer.netns), l: peer });
  for (let i = 0; i < gone.length; i++)
    for (const l of gone[i].ns.links.values())
      if (l.type === 'vxlan' && l.dev === gone[i].l.name && !gone.some((g) => g.l === l))
        gone.push({ ns: gone[i].ns, l });
  for (const { ns: n, l } of gone) {
    if (l.type === 'bridge') for (const p of bridgePorts(n, l)) linkSetMaster(w, n, p.name, undefined);
    if (l.master) linkSetMaster(w, n, l.name, undefined);
    if (l.up) linkSetUp(w, n, l.name, false);
    n.fib.removeWhere((r) => r.dev === l.name);
    n.neigh.removeWhere((e) => e.dev === l.name);
    for (const k of [...n.sysctl.keys()])
      if (k.startsWith(`net.ipv4.conf.${l.name}.`) || k.startsWith(`net.ipv4.neigh.${l.name}.`))
        n.sysctl.delete(k);
    n.links.delete(l.name);
    localChanged(n);
  }
}

/**
 * `ip link set PORT master BR` (or `nomaster` with `bridge` undefined): do_set_master. A port
 * already in another bridge leaves it first; the bridge adds the port's address to its FDB as a
 * local entry, follows the smallest port MTU (br_mtu_auto_adjust) and its carrier follows the
 * ports (br_port_state_selection). Leaving: the port's FDB entries go (br_fdb_delete_by_port).
 * A bridge, loopback or tunnel as a port is EINVAL (br_add_if), a master that is not a bridge
 * EOPNOTSUPP, as the kernel answers.
 */
export function linkSetMaster(w: World, ns: Netns, portName: string, bridge: string | undefined): void {
  const port = ns.link(portName);
  if (!port) throw new NetlinkError('ENODEV');
  const br = bridge === undefined ? undefined : ns.link(bridge);
  if (bridge !== undefined && !br) throw new NetlinkError('ENODEV');
  if (port.master === bridge) return;
  if (br && br.type !== 'bridge') throw new NetlinkError('EOPNOTSUPP');
  if (br && (port.type === 'bridge' || port.type === 'loopback' || port.type === 'ipip'))
    throw new NetlinkError('EINVAL');
  // the bridge a frame received on the port goes to: the state generation moves
  ns.stateChanged();
  withCarrier(w, [{ ns, l: port }], () => {
    const old = port.master ? ns.link(port.master) : undefined;
    if (old?.type === 'bridge') {
      old.fdb.removeWhere((e) => e.port === port.name);
      // br_del_if frees the net_bridge_port and its flags with it
      port.master = undefined;
      port.hairpin = undefined;
      bridgeMtuAdjust(ns, old);
    }
    if (br?.type === 'bridge') {
      port.master = br.name;
      br.fdb.insert({ mac: port.mac, port: port.name, state: 'local', updated: w.now });
      bridgeMtuAdjust(ns, br, port);
    }
  });
}

/**
 * RTM_SETLINK with IFLA_PROTINFO's IFLA_BRPORT_MODE (`bridge link set dev PORT hairpin on`): the
 * port's BR_HAIRPIN_MODE. A device that is no bridge port is EOPNOTSUPP (rtnl_bridge_setlink
 * finds no master's ndo_bridge_setlink), as the kernel answers.
 */
export function linkSetHairpin(ns: Netns, portName: string, on: boolean): void {
  const port = ns.link(portName);
  if (!port) throw new NetlinkError('ENODEV');
  if (!port.master || ns.link(port.master)?.type !== 'bridge') throw new NetlinkError('EOPNOTSUPP');
  // a bridge port's flag a frame's forwarding reads: the state generation moves
  ns.stateChanged();
  port.hairpin = on || undefined;
}

/**
 * The smallest MTU of a bridge's ports (Infinity: none), as the last bridgeMtuAdjust found it.
 * A port's MTU and its bridge change only through this API (links read from data are new
 * objects, without an entry), and every change but a port joining scans the ports again.
 */
const portsMinMtu = new WeakMap<Link, number>();

/**
 * br_mtu_auto_adjust: a bridge takes the smallest MTU of its ports, until a user sets its MTU.
 * `joined`: the one change since the last adjust is this port joining, so the smallest is the
 * one known before or the port's own (a segment's switch has a port per node: no scan of them
 * per port)
 */
function bridgeMtuAdjust(ns: Netns, br: Link, joined?: Link): void {
  if (br.type !== 'bridge' || br.mtuSetByUser) return;
  const known = joined && portsMinMtu.get(br);
  let min = Infinity;
  if (known !== undefined) min = Math.min(known, joined!.mtu);
  else for (const l of ns.links.values()) if (l.master === br.name) min = Math.min(min, l.mtu);
  portsMinMtu.set(br, min);
  if (min === Infinity || br.mtu === min) return;
  br.mtu = min;
  ns.routingChanged();
}

function flushPortFdb(ns: Netns, port: Link): void {
  const br = port.master ? ns.link(port.master) : undefined;
  if (br?.type === 'bridge') br.fdb.removeWhere((e) => e.port === port.name && e.state === 'dynamic');
}

/* ------------------------------------------------------------------ carrier */

interface Watched {
  ns: Netns;
  l: Link;
}

/** the carrier bit of `l`, a device of `ns`, changes (one more IFLA_CARRIER_CHANGES; a routing change: linkdown) */
function setCarrier(ns: Netns, l: Link, on: boolean): void {
  if (l.carrier === on) return;
  l.carrier = on;
  l.carrierChanges++;
  ns.routingChanged();
}

/** some port of the bridge forwards (in any order: no list of the ports is made) */
function someForwarding(ns: Netns, br: Link): boolean {
  for (const l of ns.links.values()) if (l.master === br.name && portForwarding(ns, l)) return true;
  return false;
}

/**
 * Run a change to `devs` and keep the carrier bits of everything it touches as the kernel does:
 * a veth has carrier while both ends are up (veth_open/veth_close); a bridge's carrier is set by
 * br_port_state_selection whenever its ports or their forwarding states change: on while a port
 * forwards, off otherwise (so a bridge that never had a port keeps the carrier it was born with).
 * A device that loses carrier while up flushes its non-permanent neighbours (neigh_carrier_down);
 * a port that stops forwarding forgets its learned FDB entries (br_stp_disable_port).
 */
function withCarrier(w: World, devs: Watched[], change: () => void, goingDown?: Link): void {
  const watched: Watched[] = [];
  const seen = new Set<Link>();
  for (const x of devs) {
    watch(watched, seen, x.ns, x.l);
    const peer = vethPeer(w, x.l);
    if (peer && x.l.type === 'veth') watch(watched, seen, w.ns(x.l.peer!.netns), peer);
  }
  for (let i = 0, n = watched.length; i < n; i++) {
    const x = watched[i];
    const br = x.l.master ? x.ns.link(x.l.master) : undefined;
    if (br) watch(watched, seen, x.ns, br);
    if (x.l.type === 'bridge') for (const p of bridgePorts(x.ns, x.l)) watch(watched, seen, x.ns, p);
  }
  // A bridge's ports and their forwarding states, compared before and after the change. Only the
  // watched devices change: a port that is not watched keeps its membership and state (a bridge
  // whose own state changes is in `devs`, and all its ports are watched), so comparing the watched
  // ports alone finds exactly what comparing every port would, without a scan of the bridge's
  // ports per change (a segment bridge has a port per node).
  const before: Before[] = [];
  for (const x of watched)
    before.push({
      ns: x.ns,
      l: x.l,
      ok: carrierOk(x.l),
      fwd: !!x.l.master && portForwarding(x.ns, x.l),
      ports: x.l.type === 'bridge' ? watchedPorts(watched, x) : undefined,
    });
  change();
  // a bridge that got ports by the change is watched too (its ports are the ones in `devs`)
  for (let i = 0, n = watched.length; i < n; i++) {
    const x = watched[i];
    const br = x.l.master ? x.ns.link(x.l.master) : undefined;
    if (br && !seen.has(br)) {
      watch(watched, seen, x.ns, br);
      before.push({ ns: x.ns, l: br, ok: carrierOk(br), fwd: false, ports: [] });
    }
  }
  for (const b of before) if (b.l.type === 'veth') setCarrier(b.ns, b.l, b.l.up && !!vethPeer(w, b.l)?.up);
  for (const b of before)
    if (b.l.type === 'bridge' && !samePorts(watchedPorts(watched, b), b.ports!))
      setCarrier(b.ns, b.l, someForwarding(b.ns, b.l));
  for (const b of before) {
    if (b.l === goingDown) continue;
    if (b.ok && !carrierOk(b.l))
      b.ns.neigh.removeWhere((n) => n.dev === b.l.name && n.state !== 'PERMANENT' && n.state !== 'NOARP');
    if (b.fwd && !portForwarding(b.ns, b.l)) flushPortFdb(b.ns, b.l);
  }
}

/** `l` is watched (once) */
function watch(watched: Watched[], seen: Set<Link>, ns: Netns, l: Link): void {
  if (seen.has(l)) return;
  seen.add(l);
  watched.push({ ns, l });
}

/** a watched device as it was before the change: carrier, forwarding, and for a bridge its watched ports */
interface Before extends Watched {
  ok: boolean;
  fwd: boolean;
  ports: PortState[] | undefined;
}

interface PortState {
  l: Link;
  fwd: boolean;
}

/** the watched ports of a bridge with their forwarding states, in ifindex order */
function watchedPorts(watched: readonly Watched[], br: Watched): PortState[] {
  const out: PortState[] = [];
  for (const p of watched)
    if (p.ns === br.ns && p.l.master === br.l.name) out.push({ l: p.l, fwd: portForwarding(br.ns, p.l) });
  if (out.length > 1) out.sort((a, b) => a.l.ifindex - b.l.ifindex);
  return out;
}

function samePorts(a: readonly PortState[], b: readonly PortState[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i].l.name !== b[i].l.name || a[i].fwd !== b[i].fwd) return false;
  return true;
}

/**
 * `ip link set DEV up|down`: dev_change_flags with everything the kernel does around it.
 * Up: each primary address brings its prefix route back (fib_add_ifaddr). Down: IPv4 routes
 * through the device go (fib_disable_ip; scope host ones stay), and all its neighbours,
 * PERMANENT ones too (neigh_ifdown); a bridge port's learned FDB entries go (br_stp_disable_port),
 * for a bridge those of every port; a VXLAN device loses its FDB entries that are neither
 * permanent nor static (vxlan_stop). Carrier follows (withCarrier). Routes over a device without
 * carrier stay, marked linkdown (derived when printed).
 */
export function linkSetUp(w: World, ns: Netns, name: string, up: boolean): void {
  const dev = ns.link(name);
  if (!dev) throw new NetlinkError('ENODEV');
  if (dev.up === up) return;
  withCarrier(
    w,
    [{ ns, l: dev }],
    () => {
      dev.up = up;
      localChanged(ns);
      if (up) {
        dev.addrs.forEach((a, i) => {
          const r = isSecondary(dev, i) ? undefined : prefixRoute(dev, a.ip, a.len, a.ip);
          if (r) fibMagicAdd(ns, r);
        });
        return;
      }
      ns.fib.removeWhere((r) => r.dev === name && r.scope !== 'host');
      ns.neigh.removeWhere((n) => n.dev === name);
      if (dev.master) flushPortFdb(ns, dev);
      if (dev.type === 'vxlan') dev.fdb.removeWhere((e) => !e.permanent && !e.static);
    },
    up ? undefined : dev,
  );
}

/**
 * `ip link set DEV mtu N`: dev_validate_mtu (extack), vxlan_change_mtu (no more than the lower
 * device's MTU minus the VXLAN headroom: EINVAL), then the bridge's MTU follows the smallest port
 * MTU unless it was set by hand (br_mtu_auto_adjust).
 */
export function linkSetMtu(ns: Netns, name: string, mtu: number): void {
  const dev = ns.link(name);
  if (!dev) throw new NetlinkError('ENODEV');
  validateMtu(dev.type, mtu);
  if (dev.type === 'vxlan') {
    const lower = ns.link(dev.dev);
    if (lower && mtu > lower.mtu - VXLAN_HEADROOM) throw new NetlinkError('EINVAL');
  }
  dev.mtu = mtu;
  ns.routingChanged();
  // a bridge set by hand stops following its ports (BROPT_MTU_SET_BY_USER); else it follows them
  if (dev.type === 'bridge') dev.mtuSetByUser = true;
  else if (dev.master) bridgeMtuAdjust(ns, ns.link(dev.master)!);
}

/* ------------------------------------------------------------------ addresses */

/** IFA_F_SECONDARY, derived from the list order the kernel keeps (primaries first) */
export function isSecondary(dev: Link, i: number): boolean {
  const a = dev.addrs[i];
  for (let j = 0; j < i; j++) {
    const b = dev.addrs[j];
    if (b.len === a.len && inPrefix(b.ip, a.ip, a.len)) return true;
  }
  return false;
}

function primaryOf(dev: Link, ip: string, len: number) {
  return dev.addrs.find((b, i) => b.len === len && inPrefix(b.ip, ip, len) && !isSecondary(dev, i));
}

/** fib_magic(RTM_NEWROUTE, NLM_F_CREATE|NLM_F_APPEND): add unless the very same route exists */
function fibMagicAdd(ns: Netns, r: Route): void {
  if (!ns.fib.aliases(r.dst, r.len, r.metric).some((x) => sameRoute(x, r))) ns.fib.insert(r);
}

/** the prefix route an address brings when its device is up (fib_add_ifaddr) */
function prefixRoute(dev: Link, ip: string, len: number, prim: string): Route | undefined {
  const net = networkOf({ addr: ip4ToInt(ip), len });
  if (net === 0 || (net === ip4ToInt(ip) && len === 32) || dev.type === 'loopback') return undefined;
  return {
    dst: net,
    len,
    type: 'unicast',
    dev: dev.name,
    proto: 'kernel',
    scope: 'link',
    src: prim,
    metric: 0,
    onlink: false,
  };
}

/**
 * `ip addr add IP/LEN dev D`: __inet_insert_ifa. The same address and mask on the subnet is
 * EEXIST ("ipv4: Address already assigned"); another address of an existing subnet and mask is
 * secondary and goes to the end of the list, a primary after the last primary; a primary on an
 * up device brings its prefix route (proto kernel scope link src IP).
 */
export function addressAdd(
  ns: Netns,
  devName: string,
  ip: string,
  len: number,
  scope?: Address['scope'],
): void {
  const dev = ns.link(devName);
  if (!dev) throw new NetlinkError('ENODEV');
  const sc = scope ?? (ip.startsWith('127.') ? 'host' : 'global');
  const rank = { global: 0, link: 253, host: 254 };
  let secondary = false;
  let lastPrimary = 0;
  dev.addrs.forEach((b, i) => {
    if (!isSecondary(dev, i) && rank[sc] <= rank[b.scope]) lastPrimary = i + 1;
    if (b.len === len && inPrefix(b.ip, ip, len)) {
      if (b.ip === ip) throw ext('EEXIST', 'ipv4: Address already assigned');
      if (b.scope !== sc) throw ext('EINVAL', 'ipv4: Invalid scope value');
      secondary = true;
    }
  });
  const a: Address = { ip, len, scope: sc };
  if (secondary) dev.addrs.push(a);
  else dev.addrs.splice(lastPrimary, 0, a);
  localChanged(ns);
  if (!secondary && dev.up) {
    const r = prefixRoute(dev, ip, len, ip);
    if (r) fibMagicAdd(ns, r);
  }
}

/**
 * `ip addr del IP[/LEN] dev D`: inet_rtm_deladdr finds the first address with that IP (and
 * prefix, when given), else EADDRNOTAVAIL ("ipv4: Address not found"). Deleting a primary deletes
 * its secondaries too (promote_secondaries is 0 in a new namespace). fib_del_ifaddr: a primary's
 * prefix route goes; when the IP is gone from the namespace, every route using it as src goes.
 */
export function addressDel(ns: Netns, devName: string, ip: string, len?: number): void {
  const dev = ns.link(devName);
  if (!dev) throw new NetlinkError('ENODEV');
  const i = dev.addrs.findIndex((a) => a.ip === ip && (len === undefined || a.len === len));
  if (i < 0) throw ext('EADDRNOTAVAIL', 'ipv4: Address not found');
  const victim = dev.addrs[i];
  const gone = [victim];
  if (!isSecondary(dev, i))
    dev.addrs.forEach((b, j) => {
      if (j !== i && isSecondary(dev, j) && b.len === victim.len && inPrefix(b.ip, victim.ip, victim.len))
        gone.push(b);
    });
  for (const g of [...gone.slice(1), gone[0]]) {
    const k = dev.addrs.indexOf(g);
    const wasPrimary = !isSecondary(dev, k);
    dev.addrs.splice(k, 1);
    localChanged(ns);
    if (wasPrimary) {
      const r = prefixRoute(dev, g.ip, g.len, g.ip);
      if (r) {
        const old = ns.fib.aliases(r.dst, r.len, r.metric).find((x) => sameRoute(x, r));
        if (old) ns.fib.remove(old);
      }
    }
    const stillLocal = [...ns.addresses()].some(({ addr }) => addr.ip === g.ip);
    if (!stillLocal) ns.fib.removeWhere((r) => r.src === g.ip);
  }
}

/* ------------------------------------------------------------------ routes */

/** RTM_NEWROUTE in the main table */
export interface RouteRequest {
  /** "default", "A.B.C.D" or "A.B.C.D/LEN" */
  prefix: string;
  type?: RouteType;
  via?: string;
  dev?: string;
  proto?: RouteProto;
  scope?: RouteScope;
  src?: string;
  metric?: number;
  onlink?: boolean;
  /** NLM_F_* of the request */
  nl: { create: boolean; excl: boolean; replace: boolean; append: boolean };
}

/** NLM_F_CREATE|NLM_F_EXCL: what `ip route add`, `ip neigh add` and `bridge fdb add` send */
export const NLM_ADD = { create: true, excl: true, replace: false, append: false } as const;

/** rtm_dst_len and RTA_DST: a prefix with host bits set is EINVAL (fib_table_insert, fib_table_delete) */
function checkedPrefix(text: string): { dst: number; len: number } {
  if (text === 'default') return { dst: 0, len: 0 };
  const { addr, len } = parseCidr(text.includes('/') ? text : `${text}/32`, { allowHostBits: true });
  if (networkOf({ addr, len }) !== addr) throw ext('EINVAL', 'Invalid prefix for given prefix length');
  return { dst: addr, len };
}

/** a route of the local table (RT_TABLE_LOCAL), which the kernel derives from the addresses */
export interface LocalRoute {
  type: 'local' | 'broadcast';
  dst: number;
  len: number;
  dev: string;
  src: string;
  scope: 'host' | 'link';
}

/**
 * The local table: fib_add_ifaddr's routes. Every address has its `local` /32 (kept while the
 * device is down), with the subnet's primary as src; a primary on an up device adds the
 * broadcast route of its subnet (prefix < 31) and, on loopback, the `local` prefix route.
 * Listed in trie order (by address, longer prefix first). With `covering`, only the routes whose
 * prefix holds that address (what a lookup of it can hit; the same routes in the same order as
 * filtering the whole table, without making the others).
 */
export function localRoutes(ns: Netns, covering?: number): LocalRoute[] {
  const out: LocalRoute[] = [];
  eachLocalRoute(ns, covering, (type, dst, len, dev, src) => {
    for (const x of out)
      if (x.type === type && x.dst === dst && x.len === len && x.dev === dev && x.src === src) return;
    out.push({ type, dst, len, dev, src, scope: type === 'local' ? 'host' : 'link' });
  });
  return out.sort((a, b) => a.dst - b.dst || b.len - a.len);
}

/** a device, address or up/down state of the namespace changed: its local table is made anew when asked */
function localChanged(ns: Netns): void {
  ns.derivedChanged();
}

/**
 * fib_add_ifaddr's local-table routes covering `covering` (all when undefined), each handed to
 * `push` in the order they are made (devices in ifindex order, then their addresses): every
 * routeAdd with a gateway asks for the routes covering it without building the table.
 */
function eachLocalRoute(
  ns: Netns,
  covering: number | undefined,
  push: (type: LocalRoute['type'], dst: number, len: number, dev: string, src: string) => void,
): void {
  for (const r of localMade(ns))
    if (covering === undefined || inPrefix(covering, r.dst, r.len)) push(r.type, r.dst, r.len, r.dev, r.src);
}

/** the namespace's local-table routes as made, kept until localChanged */
function localMade(ns: Netns): readonly LocalMade[] {
  return ns.localMade(makeLocal);
}

function makeLocal(ns: Netns): LocalMade[] {
  const out: LocalMade[] = [];
  const put = (type: LocalRoute['type'], dst: number, len: number, dev: string, src: string) =>
    out.push({ type, dst, len, dev, src });
  // only devices with addresses make local routes (a node's pod veths have none: skip them before sorting)
  const links: Link[] = [];
  for (const dev of ns.links.values()) if (dev.addrs.length) links.push(dev);
  links.sort((a, b) => a.ifindex - b.ifindex);
  for (const dev of links)
    for (let i = 0; i < dev.addrs.length; i++) {
      const a = dev.addrs[i];
      const secondary = isSecondary(dev, i);
      const addr = ip4ToInt(a.ip);
      put('local', addr, 32, dev.name, secondary ? (primaryOf(dev, a.ip, a.len)?.ip ?? a.ip) : a.ip);
      if (!dev.up || secondary) continue;
      const c = { addr, len: a.len };
      const net = networkOf(c);
      if (net === 0 || (net === addr && a.len === 32)) continue;
      if (dev.type === 'loopback') put('local', net, a.len, dev.name, a.ip);
      if (a.len < 31) put('broadcast', broadcastOf(c), 32, dev.name, a.ip);
    }
  return out;
}

/**
 * The longest local-table route covering `n` (out of `oif` when given): what sorting
 * localRoutes(ns, n) by prefix length gives first. The covering routes of one length share their
 * network address, so the first one made of the longest length is that one.
 */
function longestLocalRoute(ns: Netns, n: number, oif?: string): LocalMade | undefined {
  let best: LocalMade | undefined;
  for (const r of localMade(ns))
    if ((!oif || r.dev === oif) && (!best || r.len > best.len) && inPrefix(n, r.dst, r.len)) best = r;
  return best;
}

/** inet_addr_type_dev_table: the type of a local-table route for `ip` (on `dev`, when given), else unicast */
export function addrType(
  ns: Netns,
  ip: string,
  dev?: string,
): 'local' | 'broadcast' | 'unicast' | 'multicast' {
  const n = ip4ToInt(ip);
  if (n === 0 || n === 0xffffffff) return 'broadcast';
  if (n >>> 28 === 0xe) return 'multicast';
  const hit = longestLocalRoute(ns, n);
  if (hit && (!dev || hit.dev === dev)) return hit.type;
  return 'unicast';
}

/** the device holding a local address (the local table, up or down), as fib_lookup sees it */
function localRouteDev(ns: Netns, ip: string, oif?: string): Link | undefined {
  const n = ip4ToInt(ip);
  const hit = localRoutes(ns, n).find((r) => r.type === 'local' && (!oif || r.dev === oif));
  return hit ? ns.link(hit.dev) : undefined;
}

/**
 * fib_lookup for a gateway in fib_check_nh_v4_gw: local and main table, longest prefix first,
 * only routes of scope link or host (flowi4_scope RT_SCOPE_LINK), out of `oif` when given.
 */
function gatewayLookup(
  ns: Netns,
  gw: string,
  oif: string | undefined,
): { type: string; dev?: string } | undefined {
  const n = ip4ToInt(gw);
  const best = longestLocalRoute(ns, n, oif);
  const main = ns.fib.lookup(n, (x) => (x.scope === 'link' || x.scope === 'host') && (!oif || x.dev === oif));
  if (best && (!main || best.len >= main.len)) return { type: best.type, dev: best.dev };
  if (main) return { type: main.type, dev: main.dev };
  return undefined;
}

/**
 * fib_create_info for an IPv4 unicast/blackhole/unreachable/prohibit route in the main table,
 * with the kernel's checks and messages (fib_check_nh_v4_gw, fib_check_nh_nongw,
 * fib_valid_prefsrc), then fib_table_insert's NLM_F_* semantics.
 */
export function routeAdd(ns: Netns, req: RouteRequest): Route {
  return routeCreate(ns, req, true);
}

/**
 * routeAdd for a daemon that does not ask for the route back (no NLM_F_ECHO: flanneld, the CNI
 * plugins): the same checks and the same table, which keeps only the route's values (compact
 * rows, Fib.insert) instead of the object routeAdd hands out.
 */
export function routeInstall(ns: Netns, req: RouteRequest): void {
  routeCreate(ns, req, false);
}

/** the route fib_create_info makes of a request that passed its checks (`dev`: the nexthop's device) */
function fibInfo(
  req: RouteRequest,
  dst: number,
  len: number,
  type: RouteType,
  scope: RouteScope,
  dev: string | undefined,
): Route {
  return {
    dst,
    len,
    type,
    via: type === 'unicast' ? req.via : undefined,
    dev: type === 'unicast' ? dev : undefined,
    proto: req.proto ?? 'boot',
    scope,
    src: req.src,
    metric: req.metric ?? 0,
    onlink: !!req.onlink && type === 'unicast',
  };
}

function routeCreate(ns: Netns, req: RouteRequest, echo: boolean): Route {
  const { dst, len } = checkedPrefix(req.prefix);
  const type = req.type ?? 'unicast';
  const scope = req.scope ?? (type === 'unicast' && !req.via ? 'link' : 'global');
  let dev = req.dev;
  const oif = dev ? ns.link(dev) : undefined;
  if (dev && !oif) throw new NetlinkError('ENODEV');
  if (type !== 'unicast') {
    if (req.via || req.dev)
      throw ext('EINVAL', 'Gateway, device and multipath can not be specified for this route type');
  } else if (scope === 'host') {
    if (req.via) throw ext('EINVAL', 'Route with host scope can not have a gateway');
    if (!oif) throw new NetlinkError('ENODEV');
  } else if (req.via) {
    if (req.onlink) {
      if (scope === 'link') throw ext('EINVAL', 'Nexthop has invalid scope');
      if (!oif) throw ext('ENODEV', 'Nexthop device required for onlink');
      if (!oif.up) throw ext('ENETDOWN', 'Nexthop device is not up');
      if (addrType(ns, req.via, oif.name) !== 'unicast') throw ext('EINVAL', 'Nexthop has invalid gateway');
    } else {
      // the gateway must be on a link- or host-scope route (connected or local), out of dev if given
      const hit = scope === 'link' ? undefined : gatewayLookup(ns, req.via, dev);
      const local = scope === 'link' ? localRouteDev(ns, req.via, dev) : undefined;
      const res = hit ?? (local ? { type: 'local', dev: local.name } : undefined);
      if (!res) throw ext('ENETUNREACH', 'Nexthop has invalid gateway');
      if (res.type !== 'unicast' && res.type !== 'local') throw ext('EINVAL', 'Nexthop has invalid gateway');
      const found = res.dev ? ns.link(res.dev) : undefined;
      if (!found) throw ext('EINVAL', 'No egress device for nexthop gateway');
      dev = found.name;
      if (!found.up) throw new NetlinkError('ENETDOWN');
    }
  } else {
    if (req.onlink) throw ext('EINVAL', 'Invalid flags for nexthop - PERVASIVE and ONLINK can not be set');
    if (!oif) throw new NetlinkError('ENODEV');
    if (!oif.up) throw ext('ENETDOWN', 'Device for nexthop is not up');
  }
  if (req.src && !localRouteDev(ns, req.src)) throw ext('EINVAL', 'Invalid prefsrc address');
  const r = fibInfo(req, dst, len, type, scope, dev);
  // fib_table_insert: aliases of the same prefix and priority
  const same = ns.fib.aliases(dst, len, r.metric);
  if (same.length) {
    if (req.nl.excl) throw new NetlinkError('EEXIST');
    if (req.nl.replace) {
      const match = same.find((x) => sameRoute(x, r));
      if (match) return match;
      ns.fib.remove(same[0]);
      if (echo) ns.fib.add(r);
      else ns.fib.insert(r);
      return r;
    }
    if (same.some((x) => sameRoute(x, r))) throw new NetlinkError('EEXIST');
  }
  if (!req.nl.create) throw new NetlinkError('ENOENT');
  if (echo) ns.fib.add(r);
  else ns.fib.insert(r);
  return r;
}

/** fib_table_delete: the first alias of the prefix that matches every attribute given; else ESRCH */
export function routeDel(
  ns: Netns,
  prefix: string,
  m: {
    type?: RouteType;
    scope?: RouteScope;
    src?: string;
    proto?: RouteProto;
    metric?: number;
    dev?: string;
    via?: string;
  },
): Route {
  const { dst, len } = checkedPrefix(prefix);
  // the prefix's aliases by metric, each metric's in the order they were added: a hash lookup
  const r = ns.fib
    .aliases(dst, len)
    .find(
      (x) =>
        (!m.type || x.type === m.type) &&
        (!m.scope || x.scope === m.scope) &&
        (!m.src || x.src === m.src) &&
        (!m.proto || x.proto === m.proto) &&
        (!m.metric || x.metric === m.metric) &&
        (!m.dev || x.dev === m.dev) &&
        (!m.via || x.via === m.via),
    );
  if (!r) throw new NetlinkError('ESRCH');
  ns.fib.remove(r);
  return r;
}

/* ------------------------------------------------------------------ neighbours */

export interface NeighRequest {
  ip: string;
  dev: string;
  lladdr?: string;
  state: NudState;
  nl: { create: boolean; excl: boolean; replace: boolean };
}

const NUD_VALID: NudState[] = ['PERMANENT', 'NOARP', 'REACHABLE', 'PROBE', 'STALE', 'DELAY'];

/** neigh_add + __neigh_update */
export function neighAdd(ns: Netns, w: World, req: NeighRequest): void {
  const dev = ns.link(req.dev);
  if (!dev) throw new NetlinkError('ENODEV');
  if (req.lladdr !== undefined && fieldsOf(req.lladdr) < (dev.type === 'ipip' ? 4 : 6))
    throw ext('EINVAL', 'Invalid link address');
  const old = ns.neighbour(req.ip, req.dev);
  if (!old && !req.nl.create) throw new NetlinkError('ENOENT');
  if (old && req.nl.excl) throw new NetlinkError('EEXIST');
  const valid = NUD_VALID.includes(req.state);
  let lladdr = req.lladdr;
  if (valid && lladdr === undefined) {
    if (!old || !old.lladdr || !NUD_VALID.includes(old.state))
      throw ext('EINVAL', 'No link layer address given');
    lladdr = old.lladdr;
  }
  // a new entry goes in as values (no one holds it); an old one changes in place
  const change = valid ? { state: req.state, lladdr, updated: w.now } : { state: req.state, updated: w.now };
  if (old) ns.neigh.update(old, change);
  else ns.neigh.insert({ ...newNeigh(req, w.now), ...change });
}

/** a neighbour entry as neigh_create makes it (the address is set after) */
function newNeigh(req: NeighRequest, now: number): NeighEntry {
  return { ip: req.ip, dev: req.dev, state: req.state, router: false, updated: now };
}

/** the colon-separated fields of a link-layer address (`split(':').length`, without the split) */
function fieldsOf(lladdr: string): number {
  let n = 1;
  for (let i = 0; i < lladdr.length; i++) if (lladdr.charCodeAt(i) === 58) n++;
  return n;
}

/** neigh_delete: ENOENT when there is no such entry */
export function neighDel(ns: Netns, ip: string, devName: string): void {
  const n = ns.neighbour(ip, devName);
  if (!n) throw new NetlinkError('ENOENT');
  ns.neigh.remove(n);
}

/**
 * `ip neigh flush all`: every entry that is neither PERMANENT nor NOARP goes (neigh_flush_dev
 * as RTM_DELNEIGH walks it), with its timer state
 */
export function neighFlush(ns: Netns): void {
  for (const n of [...ns.neigh.list()]) {
    if (n.state === 'PERMANENT' || n.state === 'NOARP') continue;
    ns.neigh.remove(n);
    const key = `${n.ip}|${n.dev}`;
    if (ns.nud.has(key)) ns.own('nud').delete(key);
  }
}

/* ------------------------------------------------------------------ FDB */

/** `bridge fdb flush dev BRIDGE dynamic`: the entries the bridge learned */
export function fdbFlushDynamic(ns: Netns, bridge: string): void {
  const br = ns.link(bridge);
  if (br?.type === 'bridge') br.fdb.removeWhere((e) => e.state === 'dynamic');
}

/** NUD_* of an FDB request, as `bridge fdb` builds it */
export interface FdbState {
  permanent: boolean;
  noarp: boolean;
  reachable: boolean;
}

export interface FdbRequest {
  mac: string;
  dev: string;
  self: boolean;
  master: boolean;
  state: FdbState;
  dst?: string;
  nl: { create: boolean; excl: boolean; replace: boolean; append: boolean };
}

function isMulticastMac(mac: string): boolean {
  return (parseInt(mac.slice(0, 2), 16) & 1) === 1;
}

function isZeroMac(mac: string): boolean {
  return mac === '00:00:00:00:00:00';
}

function brFdbAdd(br: BridgeLink, port: Link | undefined, req: FdbRequest, w: World): void {
  const s = req.state;
  // fdb_add_entry: pr_info only, no extack
  if (!port && !s.permanent) throw new NetlinkError('EINVAL');
  const state: FdbEntry['state'] = s.permanent ? 'local' : s.noarp ? 'static' : 'dynamic';
  const portName = port?.name ?? br.name;
  const e = br.fdb.get(req.mac);
  if (!e) {
    if (!req.nl.create) throw new NetlinkError('ENOENT');
    br.fdb.insert({ mac: req.mac, port: portName, state, updated: w.now });
    return;
  }
  if (req.nl.excl) throw new NetlinkError('EEXIST');
  br.fdb.update(e, { port: portName, state, updated: w.now });
}

function vxlanFdbAdd(vx: VxlanLink, req: FdbRequest): void {
  const s = req.state;
  if (!s.permanent && !s.reachable) throw new NetlinkError('EINVAL');
  if (!req.dst) throw new NetlinkError('EINVAL');
  const entries = vx.fdb.getAll(req.mac);
  const mz = isMulticastMac(req.mac) || isZeroMac(req.mac);
  const setState = (e: VxlanFdbEntry) =>
    vx.fdb.update(e, { permanent: s.permanent, static: !s.permanent && s.noarp });
  if (entries.length) {
    if (req.nl.excl) throw new NetlinkError('EEXIST');
    for (const e of entries) setState(e);
    if (req.nl.replace) {
      if (mz) throw ext('EOPNOTSUPP', 'Cannot replace non-unicast fdb entries');
      vx.fdb.update(entries[0], { dst: req.dst });
    }
    if (req.nl.append && mz && !entries.some((e) => e.dst === req.dst)) {
      insertAfter(vx, entries[entries.length - 1], newRemote(req, req.dst));
    }
    return;
  }
  if (!req.nl.create) throw new NetlinkError('ENOENT');
  if (req.nl.replace && mz) throw new NetlinkError('EOPNOTSUPP');
  vx.fdb.insert(newRemote(req, req.dst));
}

/** a VXLAN FDB entry (vxlan_fdb_create) with the request's NUD state */
function newRemote(req: FdbRequest, dst: string): VxlanFdbEntry {
  const permanent = req.state.permanent;
  return { mac: req.mac, dst, permanent, static: !permanent && req.state.noarp };
}

/** a remote appended to an existing VXLAN FDB entry keeps the entry's place in the table */
function insertAfter(vx: VxlanLink, after: VxlanFdbEntry, e: VxlanFdbEntry): void {
  const rest = vx.fdb.list().slice(vx.fdb.list().indexOf(after) + 1);
  for (const x of rest) vx.fdb.remove(x);
  vx.fdb.add(e);
  for (const x of rest) vx.fdb.add(x);
}

function dfltFdbAdd(ns: Netns, dev: Link, req: FdbRequest): void {
  const s = req.state;
  if (!s.permanent) throw new NetlinkError('EINVAL');
  const key = isMulticastMac(req.mac) ? 'mc' : 'uc';
  if (dev[key].includes(req.mac)) {
    if (req.nl.excl) throw new NetlinkError('EEXIST');
    return;
  }
  // the device's own address lists decide what its receive path accepts: the state generation moves
  ns.stateChanged();
  dev[key] = [...dev[key], req.mac];
}

/** rtnl_fdb_add: the bridge master's handler for a port ("master"), then the device's own ("self") */
export function fdbAdd(ns: Netns, w: World, req: FdbRequest): void {
  const dev = ns.link(req.dev);
  if (!dev) throw new NetlinkError('ENODEV');
  if (dev.type === 'loopback' || dev.type === 'ipip')
    throw ext('EINVAL', 'FDB add only supported for Ethernet devices');
  let done = false;
  if (req.master && dev.master) {
    const br = ns.link(dev.master);
    if (br?.type === 'bridge') {
      brFdbAdd(br, dev, req, w);
      done = true;
    }
  }
  if (req.self) {
    if (dev.type === 'bridge') brFdbAdd(dev, undefined, req, w);
    else if (dev.type === 'vxlan') vxlanFdbAdd(dev, req);
    else dfltFdbAdd(ns, dev, req);
    done = true;
  }
  if (!done) throw new NetlinkError('EOPNOTSUPP');
}

/** rtnl_fdb_del, same dispatch; a VXLAN remote that is not there is not an error (vxlan_fdb_delete) */
export function fdbDel(ns: Netns, req: Omit<FdbRequest, 'nl' | 'state'>): void {
  const dev = ns.link(req.dev);
  if (!dev) throw new NetlinkError('ENODEV');
  let done = false;
  if (req.master && dev.master) {
    const br = ns.link(dev.master);
    if (br?.type === 'bridge') {
      const e = br.fdb.get(req.mac);
      if (!e || e.port !== dev.name) throw new NetlinkError('ENOENT');
      br.fdb.remove(e);
      done = true;
    }
  }
  if (req.self) {
    if (dev.type === 'bridge') {
      const e = dev.fdb.get(req.mac);
      if (!e || e.port !== dev.name) throw new NetlinkError('ENOENT');
      dev.fdb.remove(e);
    } else if (dev.type === 'vxlan') {
      const entries = dev.fdb.getAll(req.mac);
      if (!entries.length) throw new NetlinkError('ENOENT');
      if (req.dst) {
        const rd = entries.find((e) => e.dst === req.dst);
        if (rd) dev.fdb.remove(rd);
      } else for (const e of [...entries]) dev.fdb.remove(e);
    } else {
      const key = isMulticastMac(req.mac) ? 'mc' : 'uc';
      const i = dev[key].indexOf(req.mac);
      if (i < 0) throw new NetlinkError('ENOENT');
      ns.stateChanged();
      dev[key] = dev[key].filter((_, j) => j !== i);
    }
    done = true;
  }
  if (!done) throw new NetlinkError('EOPNOTSUPP');
}

/* ------------------------------------------------------------------ a daemon's lease set */

/**
 * one lease as a VXLAN daemon programs it on a node: the routes to its subnets (flanneld: the
 * node's one subnet; felix: each of the node's IPAM blocks and borrowed addresses), its VTEP's
 * neighbour and FDB entry
 */
export interface LeaseRequest {
  routes: readonly RouteRequest[];
  neigh: NeighRequest;
  fdb: FdbRequest;
}

/** an entry a batch could not program on a node: what the one-by-one call threw */
export interface LeaseRefusal {
  node: string;
  lease: number;
  kind: 'route' | 'neigh' | 'fdb';
  error: NetlinkError;
}

/**
 * Every node's lease set at once (flanneld, felix's VXLAN manager: each node holds every other
 * node's lease, `own[i]` being node i's own lease, or -1): on each node the same as routeInstall
 * of each of a lease's routes, neighAdd and fdbAdd, for every lease but its own, in lease order,
 * each refused entry skipped (and returned), as the
 * daemon logs a refusal and carries on. The rows are made once, as a shared immutable segment
 * per table that every node's table lists as its own (Fib.attach, CompactTable.attach), when
 * the kernel's checks give every node the same result for every entry: the leases' own checks
 * once (prefix, flags, addresses, no two leases with one key), a node's once per node (the
 * device exists, is up and is a VXLAN device, no lease's gateway is a local or broadcast
 * address of the node, none of the node's own entries has a lease's key). A node or table that
 * fails them gets the entries one by one, with the very calls above.
 */
export function leasesInstall(
  w: World,
  nodes: readonly Netns[],
  leases: readonly LeaseRequest[],
  own: readonly number[],
): LeaseRefusal[] {
  const refused: LeaseRefusal[] = [];
  const one = (ns: Netns, k: number, kind: LeaseRefusal['kind'], fn: () => void) => {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof NetlinkError)) throw e;
      refused.push({ node: ns.name, lease: k, kind, error: e });
    }
  };
  const seg = leaseSegments(w, leases);
  for (let i = 0; i < nodes.length; i++) {
    const ns = nodes[i];
    const skip = own[i] >= 0 ? [own[i]] : [];
    const vx = seg ? ns.link(seg.dev) : undefined;
    const shared = vx?.type === 'vxlan' && !vx.master;
    const routes =
      shared &&
      vx.up &&
      gatewaysUnicast(ns, seg!, own[i]) &&
      ns.fib.attach(seg!.fib, routeSlots(seg!, own[i]));
    const neighs = shared && ns.neigh.attach(seg!.neigh, skip);
    const fdbs = shared && vx.fdb.attach(seg!.fdb, skip);
    // every table shares the segment: nothing one by one (no pass over the leases per node: n² of them)
    if (routes && neighs && fdbs) continue;
    for (let k = 0; k < leases.length; k++) {
      if (k === own[i]) continue;
      const l = leases[k];
      if (!routes) for (const r of l.routes) one(ns, k, 'route', () => routeInstall(ns, r));
      if (!neighs) one(ns, k, 'neigh', () => neighAdd(ns, w, l.neigh));
      if (!fdbs) one(ns, k, 'fdb', () => fdbAdd(ns, w, l.fdb));
    }
  }
  return refused;
}

interface LeaseSegments {
  dev: string;
  fib: Fib;
  /** lease k's routes are the fib segment's slots routeFrom[k] … routeFrom[k + 1] - 1 */
  routeFrom: Int32Array;
  neigh: ReturnType<typeof neighTable>;
  fdb: ReturnType<typeof vxlanFdb>;
  /** the leases' gateways, ascending, with their lease */
  vias: Float64Array;
  viaLease: Int32Array;
}

/** the fib segment's slots of lease `k` (none for -1) */
function routeSlots(seg: LeaseSegments, k: number): number[] {
  const out: number[] = [];
  if (k >= 0) for (let s = seg.routeFrom[k]; s < seg.routeFrom[k + 1]; s++) out.push(s);
  return out;
}

const plainAdd = (nl: RouteRequest['nl']) => nl.create && !nl.replace && !nl.append;

/** what a VXLAN daemon sends for a lease's subnet: an onlink unicast route via an address on `dev` */
function leaseRoute(r: RouteRequest, dev: string): boolean {
  return (
    r.dev === dev &&
    !!r.via &&
    !!r.onlink &&
    (r.type ?? 'unicast') === 'unicast' &&
    (r.scope ?? 'global') === 'global' &&
    r.src === undefined &&
    plainAdd(r.nl)
  );
}

/**
 * The leases' rows, made once (neighbour and FDB segment slot k = lease k, the route segment's
 * slots of lease k from routeFrom[k]), when every lease is what a VXLAN daemon sends and passes
 * the checks that do not depend on the node: onlink routes via an address on the device, a
 * permanent neighbour with a link-layer address, a permanent unicast FDB entry with a
 * destination, all on one device, no two routes, neighbours or FDB entries with the same key.
 * Otherwise undefined: every node gets the leases one by one.
 */
function leaseSegments(w: World, leases: readonly LeaseRequest[]): LeaseSegments | undefined {
  if (!leases.length) return undefined;
  const dev = leases[0].neigh.dev;
  const fib = new Fib();
  // shared segments: never written, no namespace's
  const neigh = neighTable(undefined);
  const fdb = vxlanFdb(undefined);
  const vias: [number, number][] = [];
  const routeFrom = new Int32Array(leases.length + 1);
  let slots = 0;
  // the keys taken (a lookup in the segment would make it keep an object of the row)
  const routeKeys = new Set<string>();
  const neighKeys = new Set<string>();
  const macs = new Set<string>();
  for (let k = 0; k < leases.length; k++) {
    const { routes, neigh: n, fdb: f } = leases[k];
    if (
      !routes.every((r) => leaseRoute(r, dev)) ||
      n.dev !== dev ||
      n.lladdr === undefined ||
      fieldsOf(n.lladdr) < 6 ||
      n.state !== 'PERMANENT' ||
      !n.nl.create ||
      n.nl.replace ||
      f.dev !== dev ||
      !f.self ||
      f.master ||
      !f.state.permanent ||
      !f.dst ||
      isMulticastMac(f.mac) ||
      isZeroMac(f.mac) ||
      !plainAdd(f.nl)
    )
      return undefined;
    if (neighKeys.has(n.ip) || macs.has(f.mac)) return undefined;
    neighKeys.add(n.ip);
    macs.add(f.mac);
    routeFrom[k] = slots;
    for (const r of routes) {
      let p: { dst: number; len: number };
      try {
        p = checkedPrefix(r.prefix);
      } catch {
        return undefined;
      }
      const via = ip4ToInt(r.via!);
      // a gateway that is no unicast address anywhere (0.0.0.0, broadcast, multicast) is refused on every node
      if (via === 0 || via === 0xffffffff || via >>> 28 === 0xe) return undefined;
      const metric = r.metric ?? 0;
      const key = `${p.dst}/${p.len}/${metric}`;
      if (routeKeys.has(key)) return undefined;
      routeKeys.add(key);
      // a new Fib gives its rows slots 0, 1, … in the order they are inserted
      fib.insert(fibInfo(r, p.dst, p.len, 'unicast', 'global', dev));
      slots++;
      vias.push([via, k]);
    }
    neigh.insert({ ...newNeigh(n, w.now), lladdr: n.lladdr });
    fdb.insert(newRemote(f, f.dst));
  }
  routeFrom[leases.length] = slots;
  vias.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  return {
    dev,
    fib,
    routeFrom,
    neigh,
    fdb,
    vias: Float64Array.from(vias, (v) => v[0]),
    viaLease: Int32Array.from(vias, (v) => v[1]),
  };
}

/**
 * fib_check_nh_v4_gw's onlink check on a node for every lease but its own: the gateway's type
 * on the device (inet_addr_type_dev_table) must be unicast. Only a gateway inside one of the
 * node's local-table routes can be anything else: those are looked up one by one.
 */
function gatewaysUnicast(ns: Netns, seg: LeaseSegments, own: number): boolean {
  for (const r of localMade(ns)) {
    const lo = r.dst;
    const hi = r.dst + 2 ** (32 - r.len);
    let a = 0;
    let b = seg.vias.length;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (seg.vias[m] < lo) a = m + 1;
      else b = m;
    }
    for (let i = a; i < seg.vias.length && seg.vias[i] < hi; i++)
      if (seg.viaLease[i] !== own && addrType(ns, intToIp4(seg.vias[i]), seg.dev) !== 'unicast') return false;
  }
  return true;
}

/* ------------------------------------------------------------------ a namespace on a veth */

/** a new namespace and a veth pair between it and another namespace (the host) */
export interface VethNetnsRequest {
  name: string;
  role: NetnsRole;
  /** the veth end in the new namespace, its MAC */
  dev: string;
  mac: MacAddr;
  /** the other end, in the host (a port of its bridge, if any), its MAC */
  port: string;
  portMac: MacAddr;
  /** both ends' MTU */
  mtu: number;
}

/** `ip netns add NAME` and `ip link add DEV netns NAME type veth peer PORT` (the peer in `host`), one by one */
function vethNetnsOneByOne(w: World, host: Netns, r: VethNetnsRequest): Netns {
  const ns = netnsAdd(w, r.name, r.role);
  linkAdd(w, ns, vethRequest(host, r));
  return ns;
}

function vethRequest(host: Netns, r: VethNetnsRequest): LinkAddRequest {
  return {
    type: 'veth',
    name: r.dev,
    mac: r.mac,
    mtu: r.mtu,
    peer: { netns: host, name: r.port, mac: r.portMac, mtu: r.mtu },
  };
}

/**
 * vethNetnsOneByOne, its loopback set up without the carrier bookkeeping (a loopback has none,
 * and no prefix route); linkAdd unchanged, with its checks and refusals. The new namespace, its
 * end and the host's.
 */
function vethNetns(w: World, host: Netns, r: VethNetnsRequest): { ns: Netns; dev: Link; port: Link } {
  const ns = netnsWithLoopback(w, r.name, r.role);
  ns.link('lo')!.up = true;
  const dev = linkAdd(w, ns, vethRequest(host, r));
  return { ns, dev, port: host.link(r.port)! };
}

/* ------------------------------------------------------------------ a namespace on a bridge */

/**
 * A new namespace joined to a bridge of another namespace by a veth pair, its end addressed and
 * routed by default through a gateway: what a CNI plugin asks of the kernel for a pod on a
 * node's bridge (the bridge plugin's ADD).
 */
export interface BridgedNetnsRequest extends VethNetnsRequest {
  /** the new end's address */
  ip: string;
  len: number;
  /** the default route's gateway, `onlink` or not */
  gateway: string;
  onlink: boolean;
}

/**
 * What the requests below do, made one by one for each of `reqs` in order: `ip netns add NAME`
 * (with lo up), `ip link add DEV netns NAME type veth peer PORT` (the peer in `host`), `ip link
 * set PORT master BRIDGE`, `ip link set PORT up`, `ip -n NAME link set DEV up`, `ip -n NAME addr
 * add IP/LEN dev DEV`, `ip -n NAME route add default via GATEWAY dev DEV [onlink]`, each with
 * every check and every refusal of its own (a refusal leaves the namespaces made before it, as
 * the requests one by one would).
 */
export function bridgedNetnsOneByOne(w: World, host: Netns, bridge: string, r: BridgedNetnsRequest): Netns {
  const ns = vethNetnsOneByOne(w, host, r);
  linkSetMaster(w, host, r.port, bridge);
  linkSetUp(w, host, r.port, true);
  linkSetUp(w, ns, r.dev, true);
  addressAdd(ns, r.dev, r.ip, r.len);
  routeInstall(ns, { prefix: 'default', via: r.gateway, dev: r.dev, onlink: r.onlink, nl: NLM_ADD });
  return ns;
}

/** the first octet of an address a gateway and an address of the batch may have (unicast, not loopback, not 0/8) */
function plainUnicast(n: number): boolean {
  const a = n >>> 24;
  return a !== 0 && a !== 127 && a < 224;
}

/**
 * bridgedNetnsOneByOne for each request, in order, with the same result (the same namespaces,
 * devices, carrier bits and their changes, FDB entries, bridge MTU, addresses, routes, and the
 * same refusals), the carrier bookkeeping and the checks done once per request rather than once
 * per step. Only the requests whose every step is known to pass take this way: a new name, valid
 * device names (the port's free in `host`), a valid MTU, an up bridge, an address that brings its
 * prefix route and a gateway in that prefix that is neither its broadcast nor loopback (the
 * checks of the route then find the new device, unicast), no `onlink`; any other request is made
 * one by one (bridgedNetnsOneByOne), refusals included.
 */
export function bridgedNetnsAdd(
  w: World,
  host: Netns,
  bridge: string,
  reqs: readonly BridgedNetnsRequest[],
): Netns[] {
  const out: Netns[] = [];
  for (const r of reqs) {
    const br = host.link(bridge);
    const ip = ip4ToInt(r.ip);
    const gw = ip4ToInt(r.gateway);
    const net = networkOf({ addr: ip, len: r.len });
    const known =
      br?.type === 'bridge' &&
      br.up &&
      !w.netns.has(r.name) &&
      validName(r.dev) &&
      r.dev !== 'lo' &&
      validName(r.port) &&
      !host.links.has(r.port) &&
      r.mtu >= 68 &&
      r.mtu <= 65535 &&
      r.len >= 1 &&
      r.len <= 30 &&
      plainUnicast(ip) &&
      plainUnicast(gw) &&
      net !== 0 &&
      inPrefix(gw, net, r.len) &&
      gw !== broadcastOf({ addr: ip, len: r.len }) &&
      !r.onlink;
    out.push(known ? bridgedNetns(w, host, br, r) : bridgedNetnsOneByOne(w, host, bridge, r));
  }
  return out;
}

/** one request of bridgedNetnsAdd whose every step passes; each step's effects as the step makes them */
function bridgedNetns(w: World, host: Netns, br: BridgeLink, r: BridgedNetnsRequest): Netns {
  const { ns, dev, port } = vethNetns(w, host, r);
  // linkSetMaster: the port joins, its address in the bridge's FDB, the MTU follows; the bridge's
  // ports changed, so its carrier is whether some port forwards (not the new one: no carrier yet),
  // and a bridge that loses its carrier while up flushes its neighbours (withCarrier)
  port.master = br.name;
  // put at the FDB's first use (CompactTable.insertLater: most nodes' bridges are never read)
  br.fdb.insertLater({ mac: port.mac, port: port.name, state: 'local', updated: w.now });
  bridgeMtuAdjust(host, br, port);
  bridgeCarrier(host, br);
  // linkSetUp of the port: its peer is down, so no carrier, the bridge's ports forward as before
  port.up = true;
  // linkSetUp of the new end: both ends up, each gets carrier (one change each), the port forwards
  dev.up = true;
  setCarrier(ns, dev, true);
  setCarrier(host, port, true);
  bridgeCarrier(host, br);
  localChanged(host);
  // addressAdd: the device's first address, a primary, its prefix route in an empty table (a
  // list of its own length: a push gives an empty list room for 17 addresses)
  dev.addrs = [{ ip: r.ip, len: r.len, scope: 'global' }];
  localChanged(ns);
  // routeInstall: the gateway is on the prefix route (or the address itself): out of the new end.
  // Both put at the table's first use (Fib.insertLater: most pods' tables are never read)
  ns.fib.insertLater([prefixRoute(dev, r.ip, r.len, r.ip)!, gatewayRoutes(r.gateway, r.dev).viaGateway]);
  return ns;
}

/** the routes a batch's new namespaces share: those through one gateway out of one device */
interface GatewayRoutes {
  gateway: string;
  dev: string;
  /** `default via GATEWAY dev DEV` */
  viaGateway: Route;
  /** `GATEWAY dev DEV scope link` and viaGateway (routedNetns's table), made at the first ask */
  routed: readonly Route[] | undefined;
}

/** the last gateway's routes: a batch's requests mostly name one gateway and device (a node's pods) */
let lastGateway: GatewayRoutes | undefined;

/**
 * The routes through `gateway` out of `dev` that a new namespace's table gets, one object each for
 * every namespace that gets them (~100 bytes a route, two a pod): frozen, as Fib.insertLater's
 * table copies a route's fields into its rows and keeps no object of these fields' shape (Fib.put).
 */
function gatewayRoutes(gateway: string, dev: string): GatewayRoutes {
  const last = lastGateway;
  if (last !== undefined && last.gateway === gateway && last.dev === dev) return last;
  const req: RouteRequest = { prefix: 'default', via: gateway, nl: NLM_ADD };
  const viaGateway = Object.freeze(fibInfo(req, 0, 0, 'unicast', 'global', dev));
  return (lastGateway = { gateway, dev, viaGateway, routed: undefined });
}

/**
 * br_port_state_selection after a change of a bridge's ports: the carrier is whether some port
 * forwards; a bridge up that loses it flushes its neighbours that are neither permanent nor NOARP
 * (neigh_carrier_down), as withCarrier does
 */
function bridgeCarrier(host: Netns, br: Link): void {
  const ok = carrierOk(br);
  setCarrier(host, br, someForwarding(host, br));
  if (ok && !carrierOk(br))
    host.neigh.removeWhere((n) => n.dev === br.name && n.state !== 'PERMANENT' && n.state !== 'NOARP');
}

/* ------------------------------------------------------------------ a namespace routed through its veth */

/** a sysctl of a veth's host end: `net.ipv4.TABLE.PORT.KNOB` */
export type PortSysctl = DeviceSysctl;

/**
 * A new namespace joined to another (the host) by a veth pair without a bridge: the new end holds
 * a /32 and reaches everything through a gateway address that no device holds, on a link-scope
 * route of its own (the host end, which has no address, answers for it by proxy ARP when its
 * sysctls say so); the host routes the /32 to its end. What a CNI plugin asks of the kernel for a
 * routed pod (Calico's cni-plugin DoNetworking and SetupRoutes).
 */
export interface RoutedNetnsRequest extends VethNetnsRequest {
  /** the new end's address, a /32 */
  ip: string;
  /** the address the new end's routes go through */
  gateway: string;
  /** the host end's sysctls, written in this order before it is set up */
  portSysctls: readonly PortSysctl[];
}

/**
 * What the requests below do, made one by one for each of `reqs` in order: `ip netns add NAME`
 * (with lo up), `ip link add DEV netns NAME type veth peer PORT` (the peer in `host`), `ip -n
 * NAME link set DEV up`, `ip -n NAME route add GATEWAY dev DEV scope link`, `ip -n NAME route add
 * default via GATEWAY dev DEV`, `ip -n NAME addr add IP/32 dev DEV`, `sysctl -w
 * net.ipv4.TABLE.PORT.KNOB=VALUE` for each of the port's sysctls, `ip link set PORT up`, `ip route
 * add IP dev PORT scope link`, each with every check and every refusal of its own (a refusal
 * leaves what was made before it, as the requests one by one would).
 */
export function routedNetnsOneByOne(w: World, host: Netns, r: RoutedNetnsRequest): Netns {
  const ns = vethNetnsOneByOne(w, host, r);
  linkSetUp(w, ns, r.dev, true);
  routeInstall(ns, { prefix: r.gateway, dev: r.dev, scope: 'link', nl: NLM_ADD });
  routeInstall(ns, { prefix: 'default', via: r.gateway, dev: r.dev, nl: NLM_ADD });
  addressAdd(ns, r.dev, r.ip, 32);
  setPortSysctls(host, r);
  linkSetUp(w, host, r.port, true);
  routeInstall(host, { prefix: r.ip, dev: r.port, scope: 'link', nl: NLM_ADD });
  return ns;
}

/** `sysctl -w net.ipv4.TABLE.PORT.KNOB=VALUE` for each of the port's sysctls, in order */
function setPortSysctls(host: Netns, r: RoutedNetnsRequest): void {
  for (const s of r.portSysctls) host.setSysctl(`net.ipv4.${s.table}.${r.port}.${s.knob}`, s.value);
}

/**
 * routedNetnsOneByOne for each request, in order, with the same result (the same namespaces,
 * devices, carrier bits and their changes, addresses, routes, sysctls and the same refusals), the
 * carrier bookkeeping and the checks done once per request rather than once per step. The
 * namespace and the veth pair are made by the same calls with their own checks and refusals, first
 * (a name taken, an invalid device name or MTU: refused there, as one by one); after them only
 * the address and the host's table can refuse or change what a step does, so the rest is made
 * at once for the requests whose address is unicast, neither loopback nor in 0/8, and not routed
 * by the host's main table yet; any other request is made one by one (routedNetnsOneByOne). Any
 * gateway passes: its route, the first in the new table, holds it out of the new end, which has
 * no address yet (no local route of the namespace but lo's is on it).
 */
export function routedNetnsAdd(w: World, host: Netns, reqs: readonly RoutedNetnsRequest[]): Netns[] {
  const out: Netns[] = [];
  for (const r of reqs) {
    const ip = ip4ToInt(r.ip);
    const known = plainUnicast(ip) && host.fib.find(ip, 32, 0) === undefined;
    out.push(known ? routedNetns(w, host, r, ip) : routedNetnsOneByOne(w, host, r));
  }
  return out;
}

/** the fields of a link-scope route request that fibInfo reads (no gateway, proto, src, metric) */
const LINK_ROUTE: RouteRequest = { prefix: '', nl: NLM_ADD };

/** one request of routedNetnsAdd whose every step passes; each step's effects as the step makes them */
function routedNetns(w: World, host: Netns, r: RoutedNetnsRequest, ip: number): Netns {
  const { ns, dev, port } = vethNetns(w, host, r);
  // linkSetUp of the new end: its peer is down, so neither end has carrier yet
  dev.up = true;
  // routeInstall of the gateway's route (a /32 of scope link: its device is up), then of the
  // default route, whose gateway that route holds out of the same device, in an empty table:
  // both put at the table's first use (Fib.insertLater), queued below once the steps that only
  // move its generation on are done (the generation counts them all the same)
  const g = gatewayRoutes(r.gateway, r.dev);
  const routes = (g.routed ??= Object.freeze([
    Object.freeze(fibInfo(LINK_ROUTE, ip4ToInt(r.gateway), 32, 'unicast', 'link', r.dev)),
    g.viaGateway,
  ]));
  // addressAdd: the device's first address, a /32: no prefix route (a list of its own length: a
  // push gives an empty list room for 17 addresses)
  dev.addrs = [{ ip: r.ip, len: 32, scope: 'global' }];
  localChanged(ns);
  // setPortSysctls: the keys made when the host's device sysctls are first read
  host.setDeviceSysctls(r.port, r.portSysctls);
  // linkSetUp of the port: both ends up, each gets carrier (one change each); neither is a bridge port
  port.up = true;
  setCarrier(ns, dev, true);
  ns.fib.insertLater(routes);
  setCarrier(host, port, true);
  localChanged(host);
  // routeInstall of the host's route to the address: new in its table, out of an up device
  host.fib.insert(fibInfo(LINK_ROUTE, ip, 32, 'unicast', 'link', r.port));
  return ns;
}
