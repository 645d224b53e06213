/**
 * Links and addresses as the kernel reports them over rtnetlink (what RTM_GETLINK/RTM_GETADDR
 * would carry, derived from the model) and as iproute2 6.1 prints them (ip/ipaddress.c
 * print_linkinfo, print_addrinfo, print_stats64, the vxlan/bridge/bridge_slave/veth/ipip
 * print_opt functions), text and JSON.
 */
import { bridgePorts, carrierOk, portForwarding, vethPeer } from '../kernel/links.ts';
import { isSecondary, mtuLimits } from '../kernel/netlink.ts';
import type { Address, Link, Netns } from '../kernel/objects.ts';
import type { Ctx } from './iproute-common.ts';
import { PRINT_ANY, PRINT_FP, PRINT_JSON, sprintf, type Printer } from './iproute-print.ts';

/* ------------------------------------------------------------------ net_device flags */

export const IFF = {
  UP: 0x1,
  BROADCAST: 0x2,
  DEBUG: 0x4,
  LOOPBACK: 0x8,
  POINTOPOINT: 0x10,
  NOTRAILERS: 0x20,
  RUNNING: 0x40,
  NOARP: 0x80,
  PROMISC: 0x100,
  ALLMULTI: 0x200,
  MASTER: 0x400,
  SLAVE: 0x800,
  MULTICAST: 0x1000,
  PORTSEL: 0x2000,
  AUTOMEDIA: 0x4000,
  DYNAMIC: 0x8000,
  LOWER_UP: 0x10000,
  DORMANT: 0x20000,
  ECHO: 0x40000,
} as const;

/**
 * The number of queues a veth gets is the number of possible CPUs of the machine it runs on;
 * podwalk's nodes are modelled as two-CPU machines.
 */
export const POSSIBLE_CPUS = 2;

export type OperState = 'UNKNOWN' | 'DOWN' | 'LOWERLAYERDOWN' | 'UP';

/** dev_get_iflink: the peer's ifindex for a veth, 0 for a tunnel with no underlay; else the device's own */
export function iflink(c: Ctx, l: Link): number {
  if (l.type === 'veth') return vethPeer(c.world, l)?.ifindex ?? l.ifindex;
  if (l.type === 'ipip') return 0;
  return l.ifindex;
}

function peerNetnsName(l: Link): string | undefined {
  return l.type === 'veth' && l.peer ? l.peer.netns : undefined;
}

/**
 * The namespace ids a namespace has given to the namespaces its veths lead to: in the order it
 * first meets them, by ifindex. (The kernel numbers them on first use; the order depends on the
 * history of the commands that built the namespaces, which the model does not keep.)
 */
export function nsids(c: Ctx, ns: Netns = c.netns): Map<string, number> {
  const ids = new Map<string, number>();
  for (const l of [...ns.links.values()].sort((a, b) => a.ifindex - b.ifindex)) {
    const peer = peerNetnsName(l);
    if (peer && peer !== ns.name && !ids.has(peer)) ids.set(peer, ids.size);
  }
  return ids;
}

/** IFLA_LINK_NETNSID: set when the link's other end is in another namespace */
export function linkNetnsid(c: Ctx, l: Link): { id: number; name: string } | undefined {
  const peer = peerNetnsName(l);
  if (!peer || peer === c.netns.name) return undefined;
  return { id: nsids(c).get(peer)!, name: peer };
}

/** IF_OPER_*: a device without carrier is LOWERLAYERDOWN when the device its iflink names here is not up */
export function operState(c: Ctx, l: Link, ns: Netns = c.netns): OperState {
  if (!l.up) return 'DOWN';
  switch (l.type) {
    case 'loopback':
    case 'vxlan':
    case 'ipip':
      return 'UNKNOWN';
    case 'bridge':
      // operstate is set by linkwatch on a carrier change: a bridge that never had one keeps UNKNOWN
      if (l.carrierChanges === 0) return 'UNKNOWN';
      return carrierOk(l) ? 'UP' : 'DOWN';
    case 'veth': {
      if (carrierOk(l)) return 'UP';
      const idx = iflink(c, l);
      if (idx === l.ifindex) return 'DOWN';
      const other = [...ns.links.values()].find((x) => x.ifindex === idx);
      if (!other) return 'DOWN';
      const st = operState(c, other, ns);
      return st === 'UP' || st === 'UNKNOWN' ? 'DOWN' : 'LOWERLAYERDOWN';
    }
  }
}

/** dev_get_flags */
export function ifFlags(c: Ctx, l: Link, ns: Netns = c.netns): number {
  let f = 0;
  if (l.type === 'loopback') f |= IFF.LOOPBACK;
  else if (l.type === 'ipip') f |= IFF.NOARP;
  else f |= IFF.BROADCAST | IFF.MULTICAST;
  if (l.up) {
    f |= IFF.UP;
    const st = operState(c, l, ns);
    if (st === 'UP' || st === 'UNKNOWN') f |= IFF.RUNNING;
    if (carrierOk(l)) f |= IFF.LOWER_UP;
  }
  return f;
}

export function linkType(l: Link): string {
  return l.type === 'loopback' ? 'loopback' : l.type === 'ipip' ? 'ipip' : 'ether';
}

function broadcastOf(l: Link): string {
  return l.type === 'loopback' ? '00:00:00:00:00:00' : l.type === 'ipip' ? '0.0.0.0' : 'ff:ff:ff:ff:ff:ff';
}

function addressOf(l: Link): string {
  return l.type === 'ipip' ? (l.local ?? '0.0.0.0') : l.mac;
}

/* ------------------------------------------------------------------ shared printing */

/** print_link_flags */
export function printLinkFlags(p: Printer, flags: number, mdown: boolean): void {
  p.openArray(PRINT_ANY, p.isJson() ? 'flags' : '<');
  if (flags & IFF.UP && !(flags & IFF.RUNNING))
    p.string(PRINT_ANY, undefined, flags ? '%s,' : '%s', 'NO-CARRIER');
  flags &= ~IFF.RUNNING;
  const order: (keyof typeof IFF)[] = [
    'LOOPBACK',
    'BROADCAST',
    'POINTOPOINT',
    'MULTICAST',
    'NOARP',
    'ALLMULTI',
    'PROMISC',
    'MASTER',
    'SLAVE',
    'DEBUG',
    'DYNAMIC',
    'AUTOMEDIA',
    'PORTSEL',
    'NOTRAILERS',
    'UP',
    'LOWER_UP',
    'DORMANT',
    'ECHO',
  ];
  for (const f of order)
    if (flags & IFF[f]) {
      flags &= ~IFF[f];
      p.string(PRINT_ANY, undefined, flags ? '%s,' : '%s', f);
    }
  if (flags) p.hex(PRINT_ANY, undefined, '%x', flags);
  if (mdown) p.string(PRINT_ANY, undefined, ',%s', 'M-DOWN');
  p.closeArray(PRINT_ANY, '> ');
}

/**
 * print_name_and_link. `withNetnsid`: the dump carries IFLA_LINK_NETNSID (RTM_GETLINK does, the
 * AF_BRIDGE dump of `bridge link` does not, so there iproute2 names the index in this namespace).
 */
export function printNameAndLink(c: Ctx, fmt: string, l: Link, withNetnsid: boolean): boolean {
  const p = c.p;
  let name = l.name;
  let mflag = false;
  const idx = iflink(c, l);
  // rtnl_fill_link_ifindex: IFLA_LINK when it differs from the device's own ifindex, and always
  // for a link whose other end is in another namespace (checked on 6.18: a veth ifindex 2 whose
  // peer is ifindex 2 elsewhere prints eth0@if2 and "link_index":2; older kernels left it out)
  const hasLink = idx !== l.ifindex || (withNetnsid && !!linkNetnsid(c, l));
  if (hasLink) {
    let link: string | undefined;
    if (idx) {
      const nsid = withNetnsid ? linkNetnsid(c, l) : undefined;
      if (nsid) {
        if (p.isJson()) p.num(PRINT_JSON, 'link_index', undefined, idx);
        else link = `if${idx}`;
      } else {
        link = c.indexToName(idx);
        if (p.isJson()) {
          p.string(PRINT_JSON, 'link', undefined, link);
          link = undefined;
        }
        const target = c.byIndex(idx);
        mflag = !(target && ifFlags(c, target) & IFF.UP);
      }
    } else if (p.isJson()) p.null(PRINT_JSON, 'link', undefined, undefined);
    else link = 'NONE';
    if (link) name = `${name}@${link}`;
  }
  p.string(PRINT_ANY, 'ifname', fmt, name);
  return mflag;
}

function printOperstate(c: Ctx, st: OperState): void {
  const p = c.p;
  if (c.opts.brief) p.string(PRINT_ANY, 'operstate', '%-14s ', st);
  else if (p.isJson()) p.string(PRINT_JSON, 'operstate', undefined, st);
  else p.printf('state %s ', st);
}

/* ------------------------------------------------------------------ print_stats64 */

export interface Stats64 {
  rx_bytes: number;
  rx_packets: number;
  rx_errors: number;
  rx_dropped: number;
  rx_over_errors: number;
  multicast: number;
  rx_missed_errors: number;
  tx_bytes: number;
  tx_packets: number;
  tx_errors: number;
  tx_dropped: number;
  tx_carrier_errors: number;
  collisions: number;
  carrier_changes: number;
}

export function stats64(c: Ctx, l: Link): Stats64 {
  const s = l.stats;
  return {
    rx_bytes: s.rxBytes,
    rx_packets: s.rxPackets,
    rx_errors: 0,
    rx_dropped: s.rxDropped,
    rx_over_errors: 0,
    multicast: 0,
    rx_missed_errors: 0,
    tx_bytes: s.txBytes,
    tx_packets: s.txPackets,
    tx_errors: 0,
    tx_dropped: s.txDropped,
    tx_carrier_errors: 0,
    collisions: 0,
    carrier_changes: l.carrierChanges,
  };
}

function sizeColumns(cols: number[], vals: number[]): void {
  vals.forEach((v, i) => {
    const len = String(Math.max(0, Math.trunc(v))).length;
    if (len > cols[i]) cols[i] = len;
  });
}

function printNum(p: Printer, width: number, v: number): void {
  p.printf('%*s ', width, String(v));
}

/** one direction of `ip -s link`: the header line of six counters (and an empty seventh), then their values */
function statsRow(
  p: Printer,
  cols: number[],
  dir: 'RX' | 'TX',
  names: readonly string[],
  values: readonly number[],
): void {
  p.printf(
    `    ${dir}: %*s %*s %*s %*s %*s %*s %*s%s`,
    cols[0] - 4,
    names[0],
    cols[1],
    names[1],
    cols[2],
    names[2],
    cols[3],
    names[3],
    cols[4],
    names[4],
    cols[5],
    names[5],
    cols[6],
    '',
    p.sl,
  );
  p.printf('    ');
  values.forEach((v, k) => printNum(p, cols[k], v));
}

/** print_stats64 (no compressed/nohandler/otherhost counters: always 0 here) */
export function printStats64(c: Ctx, s: Stats64, what: string | undefined): void {
  const p = c.p;
  const show = c.opts.stats;
  if (p.isJson()) {
    if (what) p.openObject(what);
    p.openObject('rx');
    p.num(PRINT_JSON, 'bytes', undefined, s.rx_bytes);
    p.num(PRINT_JSON, 'packets', undefined, s.rx_packets);
    p.num(PRINT_JSON, 'errors', undefined, s.rx_errors);
    p.num(PRINT_JSON, 'dropped', undefined, s.rx_dropped);
    p.num(PRINT_JSON, 'over_errors', undefined, s.rx_over_errors);
    p.num(PRINT_JSON, 'multicast', undefined, s.multicast);
    if (show > 1) {
      for (const k of ['length_errors', 'crc_errors', 'frame_errors', 'fifo_errors'])
        p.num(PRINT_JSON, k, undefined, 0);
      p.num(PRINT_JSON, 'missed_errors', undefined, s.rx_missed_errors);
    }
    p.closeObject();
    p.openObject('tx');
    p.num(PRINT_JSON, 'bytes', undefined, s.tx_bytes);
    p.num(PRINT_JSON, 'packets', undefined, s.tx_packets);
    p.num(PRINT_JSON, 'errors', undefined, s.tx_errors);
    p.num(PRINT_JSON, 'dropped', undefined, s.tx_dropped);
    p.num(PRINT_JSON, 'carrier_errors', undefined, s.tx_carrier_errors);
    p.num(PRINT_JSON, 'collisions', undefined, s.collisions);
    if (show > 1) {
      for (const k of ['aborted_errors', 'fifo_errors', 'window_errors', 'heartbeat_errors'])
        p.num(PRINT_JSON, k, undefined, 0);
      p.num(PRINT_JSON, 'carrier_changes', undefined, s.carrier_changes);
    }
    p.closeObject();
    if (what) p.closeObject();
    return;
  }
  const cols = [
    '*X errors:'.length,
    'packets'.length,
    'errors'.length,
    'dropped'.length,
    'heartbt'.length,
    'overrun'.length,
    'compressed'.length,
    'otherhost'.length,
  ];
  sizeColumns(cols, [
    s.rx_bytes,
    s.rx_packets,
    s.rx_errors,
    s.rx_dropped,
    s.rx_missed_errors,
    s.multicast,
    0,
    0,
  ]);
  if (show > 1) sizeColumns(cols, [0, 0, 0, 0, 0, s.rx_over_errors, 0, 0]);
  sizeColumns(cols, [
    s.tx_bytes,
    s.tx_packets,
    s.tx_errors,
    s.tx_dropped,
    s.tx_carrier_errors,
    s.collisions,
    0,
    0,
  ]);
  if (show > 1) sizeColumns(cols, [0, 0, 0, 0, 0, 0, s.carrier_changes, 0]);
  const sl = p.sl;
  statsRow(
    p,
    cols,
    'RX',
    ['bytes', 'packets', 'errors', 'dropped', 'missed', 'mcast'],
    [s.rx_bytes, s.rx_packets, s.rx_errors, s.rx_dropped, s.rx_missed_errors, s.multicast],
  );
  if (show > 1) {
    p.printf('%s', sl);
    p.printf(
      '    RX errors:%*s %*s %*s %*s %*s %*s%*s%*s%s',
      cols[0] - 10,
      '',
      cols[1],
      'length',
      cols[2],
      'crc',
      cols[3],
      'frame',
      cols[4],
      'fifo',
      cols[5],
      'overrun',
      0,
      '',
      0,
      '',
      sl,
    );
    p.printf('%*s', cols[0] + 5, '');
    for (const [i, v] of [0, 0, 0, 0, s.rx_over_errors].entries()) printNum(p, cols[i + 1], v);
  }
  p.printf('%s', sl);
  statsRow(
    p,
    cols,
    'TX',
    ['bytes', 'packets', 'errors', 'dropped', 'carrier', 'collsns'],
    [s.tx_bytes, s.tx_packets, s.tx_errors, s.tx_dropped, s.tx_carrier_errors, s.collisions],
  );
  if (show > 1) {
    p.printf('%s', sl);
    p.printf(
      '    TX errors:%*s %*s %*s %*s %*s %*s%s',
      cols[0] - 10,
      '',
      cols[1],
      'aborted',
      cols[2],
      'fifo',
      cols[3],
      'window',
      cols[4],
      'heartbt',
      cols[5],
      'transns',
      sl,
    );
    p.printf('%*s', cols[0] + 5, '');
    for (let i = 1; i <= 4; i++) printNum(p, cols[i], 0);
    printNum(p, cols[5], s.carrier_changes);
  }
}

/* ------------------------------------------------------------------ -d: link kinds */

/** ether_ntoa_r: no leading zeros */
function etherNtoa(mac: string): string {
  return mac
    .split(':')
    .map((b) => parseInt(b, 16).toString(16))
    .join(':');
}

export function bridgeId(br: Link): string {
  return `8000.${etherNtoa(br.mac)}`;
}

function printTimer(c: Ctx, attr: string, seconds: number): void {
  const sec = Math.floor(seconds);
  const cs = Math.floor((seconds - sec) * 100 + 1e-9);
  if (c.p.isJson()) c.p.jsonRaw(attr, sprintf('%i.%.2i', sec, cs));
  else c.p.printf('%s %4i.%.2i ', attr, sec, cs);
}

/**
 * The bridge's garbage-collection timer: it runs every ageing_time/10 (at most every 10 s…) in
 * the kernel; its remaining time depends on the wall clock. podwalk prints the time left of a
 * timer started when the bridge came up, on the simulated clock.
 */
function gcTimerLeft(c: Ctx, ageingS: number): number {
  const period = Math.min(ageingS, 300);
  const now = c.world.now / 1e6;
  const left = period - (now % period);
  return Math.round(left * 100) / 100;
}

function bridgePrintOpt(c: Ctx, br: Link & { type: 'bridge' }): void {
  const p = c.p;
  const u = (key: string, fmt: string, v: number) => p.num(PRINT_ANY, key, fmt, v);
  u('forward_delay', 'forward_delay %u ', 1500);
  u('hello_time', 'hello_time %u ', 200);
  u('max_age', 'max_age %u ', 2000);
  u('ageing_time', 'ageing_time %u ', br.ageingTime * 100);
  u('stp_state', 'stp_state %u ', 0);
  u('priority', 'priority %u ', 32768);
  u('vlan_filtering', 'vlan_filtering %u ', 0);
  p.string(PRINT_ANY, 'bridge_id', 'bridge_id %s ', bridgeId(br));
  p.string(PRINT_ANY, 'root_id', 'designated_root %s ', bridgeId(br));
  u('root_port', 'root_port %u ', 0);
  u('root_path_cost', 'root_path_cost %u ', 0);
  u('topology_change', 'topology_change %u ', 0);
  u('topology_change_detected', 'topology_change_detected %u ', 0);
  printTimer(c, 'hello_timer', 0);
  printTimer(c, 'tcn_timer', 0);
  printTimer(c, 'topology_change_timer', 0);
  printTimer(c, 'gc_timer', br.up ? gcTimerLeft(c, br.ageingTime) : 0);
  p.hex0x(PRINT_ANY, 'group_fwd_mask', 'group_fwd_mask %#llx ', 0);
  p.string(PRINT_ANY, 'group_addr', 'group_address %s ', '01:80:c2:00:00:00');
  u('mcast_snooping', 'mcast_snooping %u ', 1);
  u('no_linklocal_learn', 'no_linklocal_learn %u ', 0);
  u('mcast_vlan_snooping', 'mcast_vlan_snooping %u ', 0);
  u('mcast_router', 'mcast_router %u ', 1);
  u('mcast_query_use_ifaddr', 'mcast_query_use_ifaddr %u ', 0);
  u('mcast_querier', 'mcast_querier %u ', 0);
  u('mcast_hash_elasticity', 'mcast_hash_elasticity %u ', 16);
  u('mcast_hash_max', 'mcast_hash_max %u ', 4096);
  u('mcast_last_member_cnt', 'mcast_last_member_count %u ', 2);
  u('mcast_startup_query_cnt', 'mcast_startup_query_count %u ', 2);
  u('mcast_last_member_intvl', 'mcast_last_member_interval %llu ', 100);
  u('mcast_membership_intvl', 'mcast_membership_interval %llu ', 26000);
  u('mcast_querier_intvl', 'mcast_querier_interval %llu ', 25500);
  u('mcast_query_intvl', 'mcast_query_interval %llu ', 12500);
  u('mcast_query_response_intvl', 'mcast_query_response_interval %llu ', 1000);
  u('mcast_startup_query_intvl', 'mcast_startup_query_interval %llu ', 3124);
  u('mcast_stats_enabled', 'mcast_stats_enabled %u ', 0);
  u('mcast_igmp_version', 'mcast_igmp_version %u ', 2);
  u('mcast_mld_version', 'mcast_mld_version %u ', 1);
  u('nf_call_iptables', 'nf_call_iptables %u ', 0);
  u('nf_call_ip6tables', 'nf_call_ip6tables %u ', 0);
  u('nf_call_arptables', 'nf_call_arptables %u ', 0);
}

/** the port number the bridge gave the port: 1, 2, … in the order ports joined (ifindex order here) */
export function portNo(ns: Netns, port: Link): number {
  const br = port.master ? ns.link(port.master) : undefined;
  return br ? bridgePorts(ns, br).indexOf(port) + 1 : 0;
}

export function portState(c: Ctx, port: Link): 'forwarding' | 'disabled' {
  return portForwarding(c.netns, port) ? 'forwarding' : 'disabled';
}

function bridgeSlavePrintOpt(c: Ctx, port: Link): void {
  const p = c.p;
  const br = c.netns.link(port.master!)!;
  const no = portNo(c.netns, port);
  const id = 0x8000 | no;
  p.string(PRINT_ANY, 'state', 'state %s ', portState(c, port));
  p.num(PRINT_ANY, 'priority', 'priority %d ', 32);
  p.num(PRINT_ANY, 'cost', 'cost %d ', 2);
  p.onOff(PRINT_ANY, 'hairpin', 'hairpin %s ', !!port.hairpin);
  p.onOff(PRINT_ANY, 'guard', 'guard %s ', false);
  p.onOff(PRINT_ANY, 'root_block', 'root_block %s ', false);
  p.onOff(PRINT_ANY, 'fastleave', 'fastleave %s ', false);
  p.onOff(PRINT_ANY, 'learning', 'learning %s ', true);
  p.onOff(PRINT_ANY, 'flood', 'flood %s ', true);
  p.hex0x(PRINT_ANY, 'id', 'port_id %#llx ', id);
  p.hex0x(PRINT_ANY, 'no', 'port_no %#llx ', no);
  p.num(PRINT_ANY, 'designated_port', 'designated_port %u ', id);
  p.num(PRINT_ANY, 'designated_cost', 'designated_cost %u ', 0);
  p.string(PRINT_ANY, 'bridge_id', 'designated_bridge %s ', bridgeId(br));
  p.string(PRINT_ANY, 'root_id', 'designated_root %s ', bridgeId(br));
  printTimer(c, 'hold_timer', 0);
  printTimer(c, 'message_age_timer', 0);
  // with STP off a port forwards at once, yet br_make_forwarding arms the forward-delay timer
  // (15 s) when the port is enabled: here, when the cluster came up (simulated clock)
  printTimer(
    c,
    'forward_delay_timer',
    portState(c, port) === 'forwarding' ? Math.max(0, 15 - c.world.now / 1e6) : 0,
  );
  p.num(PRINT_ANY, 'topology_change_ack', 'topology_change_ack %u ', 0);
  p.num(PRINT_ANY, 'config_pending', 'config_pending %u ', 0);
  p.onOff(PRINT_ANY, 'proxy_arp', 'proxy_arp %s ', false);
  p.onOff(PRINT_ANY, 'proxy_arp_wifi', 'proxy_arp_wifi %s ', false);
  p.num(PRINT_ANY, 'multicast_router', 'mcast_router %u ', 1);
  p.string(PRINT_FP, undefined, 'mcast_fast_leave %s ', 'off');
  p.onOff(PRINT_ANY, 'mcast_flood', 'mcast_flood %s ', true);
  p.onOff(PRINT_ANY, 'bcast_flood', 'bcast_flood %s ', true);
  p.onOff(PRINT_ANY, 'mcast_to_unicast', 'mcast_to_unicast %s ', false);
  p.onOff(PRINT_ANY, 'neigh_suppress', 'neigh_suppress %s ', false);
  p.hex0x(PRINT_ANY, 'group_fwd_mask', 'group_fwd_mask %#llx ', 0);
  p.string(PRINT_ANY, 'group_fwd_mask_str', 'group_fwd_mask_str %s ', '0x0');
  p.onOff(PRINT_ANY, 'vlan_tunnel', 'vlan_tunnel %s ', false);
  p.onOff(PRINT_ANY, 'isolated', 'isolated %s ', false);
  p.onOff(PRINT_ANY, 'locked', 'locked %s ', false);
}

function vxlanPrintOpt(c: Ctx, vx: Link & { type: 'vxlan' }): void {
  const p = c.p;
  p.num(PRINT_ANY, 'id', 'id %u ', vx.vni);
  if (vx.local !== '0.0.0.0') p.string(PRINT_ANY, 'local', 'local %s ', vx.local);
  const lower = c.netns.link(vx.dev);
  if (lower) p.string(PRINT_ANY, 'link', 'dev %s ', lower.name);
  // IFLA_VXLAN_PORT_RANGE is 0 0 unless a range was configured: the kernel then uses ip_local_port_range
  const dflt = vx.srcPortMin === 32768 && vx.srcPortMax === 60999;
  const [lo, hi] = dflt ? [0, 0] : [vx.srcPortMin, vx.srcPortMax + 1];
  if (p.isJson()) {
    p.openObject('port_range');
    p.num(PRINT_JSON, 'low', undefined, lo);
    p.num(PRINT_JSON, 'high', undefined, hi);
    p.closeObject();
  } else p.printf('srcport %u %u ', lo, hi);
  p.num(PRINT_ANY, 'port', 'dstport %u ', vx.dstport);
  p.bool(PRINT_JSON, 'learning', undefined, vx.learning);
  if (!vx.learning) p.bool(PRINT_FP, undefined, 'nolearning ', true);
  if (p.isJson()) p.num(PRINT_ANY, 'ttl', 'ttl %u ', 0);
  else p.string(PRINT_FP, undefined, 'ttl %s ', 'auto');
  p.string(PRINT_JSON, 'df', 'df %s ', 'unset');
  p.num(PRINT_ANY, 'ageing', 'ageing %u ', 300);
  if (p.isJson()) {
    p.bool(PRINT_ANY, 'udp_csum', undefined, vx.udpcsum);
    p.bool(PRINT_ANY, 'udp_zero_csum6_tx', undefined, false);
    p.bool(PRINT_ANY, 'udp_zero_csum6_rx', undefined, false);
  } else p.printf('%sudpcsum noudp6zerocsumtx noudp6zerocsumrx ', vx.udpcsum ? '' : 'no');
}

function ipipPrintOpt(c: Ctx, t: Link & { type: 'ipip' }): void {
  const p = c.p;
  p.string(PRINT_ANY, 'proto', '%s ', 'ipip');
  p.string(PRINT_ANY, 'remote', 'remote %s ', t.remote ?? 'any');
  p.string(PRINT_ANY, 'local', 'local %s ', t.local ?? 'any');
  if (p.isJson() || t.ttl) p.num(PRINT_ANY, 'ttl', 'ttl %u ', t.ttl);
  else p.string(PRINT_FP, undefined, 'ttl %s ', 'inherit');
  if (t.pmtudisc) p.bool(PRINT_ANY, 'pmtudisc', 'pmtudisc ', true);
  else p.bool(PRINT_ANY, 'pmtudisc', 'nopmtudisc ', false);
}

function printLinktype(c: Ctx, l: Link): void {
  const p = c.p;
  p.openObject('linkinfo');
  if (l.type !== 'loopback') {
    p.nl();
    const kind = l.type;
    p.string(PRINT_ANY, 'info_kind', '    %s ', kind);
    if (l.type === 'bridge' || l.type === 'vxlan' || l.type === 'ipip') {
      p.openObject('info_data');
      if (l.type === 'bridge') bridgePrintOpt(c, l);
      else if (l.type === 'vxlan') vxlanPrintOpt(c, l);
      else ipipPrintOpt(c, l);
      p.closeObject();
    }
  }
  if (l.master) {
    p.nl();
    p.string(PRINT_ANY, 'info_slave_kind', '    %s_slave ', 'bridge');
    p.openObject('info_slave_data');
    bridgeSlavePrintOpt(c, l);
    p.closeObject();
  }
  p.closeObject();
}

/* ------------------------------------------------------------------ print_linkinfo */

export interface LinkFilter {
  /** `ip link` (do_link): prints "mode DEFAULT", addrgenmode and stats in place */
  doLink: boolean;
  family: 'unspec' | 'inet' | 'link';
}

function printLinkinfoBrief(c: Ctx, l: Link, f: LinkFilter): void {
  const p = c.p;
  const mflag = printNameAndLink(c, '%-16s ', l, true);
  printOperstate(c, operState(c, l));
  if (f.family === 'link') {
    p.string(PRINT_ANY, 'address', '%s ', addressOf(l));
    printLinkFlags(p, ifFlags(c, l), mflag);
    p.string(PRINT_FP, undefined, '%s', '\n');
  }
}

export function printLinkinfo(c: Ctx, l: Link, f: LinkFilter): void {
  const p = c.p;
  const o = c.opts;
  if (o.brief) return printLinkinfoBrief(c, l, f);
  p.num(PRINT_ANY, 'ifindex', '%d: ', l.ifindex);
  const mflag = printNameAndLink(c, '%s: ', l, true);
  printLinkFlags(p, ifFlags(c, l), mflag);
  p.num(PRINT_ANY, 'mtu', 'mtu %u ', l.mtu);
  p.string(PRINT_ANY, 'qdisc', 'qdisc %s ', 'noqueue');
  if (l.master) p.string(PRINT_ANY, 'master', 'master %s ', l.master);
  printOperstate(c, operState(c, l));
  if (f.doLink) p.string(PRINT_ANY, 'linkmode', 'mode %s ', 'DEFAULT');
  p.string(PRINT_ANY, 'group', 'group %s ', 'default');
  p.num(PRINT_ANY, 'txqlen', 'qlen %d', 1000);
  if (f.family === 'unspec' || f.family === 'link' || o.details) {
    p.nl();
    p.string(PRINT_ANY, 'link_type', '    link/%s ', linkType(l));
    p.string(PRINT_ANY, 'address', '%s', addressOf(l));
    p.string(PRINT_FP, undefined, ' brd ', undefined);
    p.string(PRINT_ANY, 'broadcast', '%s', broadcastOf(l));
  }
  const nsid = linkNetnsid(c, l);
  if (nsid) {
    if (p.isJson()) p.num(PRINT_JSON, 'link_netnsid', undefined, nsid.id);
    else p.string(PRINT_FP, undefined, ' link-netns %s', nsid.name);
  }
  if (o.details) {
    const port = !!l.master;
    const { min, max } = mtuLimits(l);
    p.num(PRINT_ANY, 'promiscuity', ' promiscuity %u ', port ? 1 : 0);
    p.num(PRINT_ANY, 'allmulti', ' allmulti %u ', port ? 1 : 0);
    p.num(PRINT_ANY, 'min_mtu', 'minmtu %u ', min);
    p.num(PRINT_ANY, 'max_mtu', 'maxmtu %u ', max);
    if (l.type !== 'loopback' || l.master) printLinktype(c, l);
    if (f.doLink) p.string(PRINT_ANY, 'inet6_addr_gen_mode', 'addrgenmode %s ', 'eui64');
    const queues = l.type === 'veth' ? POSSIBLE_CPUS : 1;
    p.num(PRINT_ANY, 'num_tx_queues', 'numtxqueues %u ', queues);
    p.num(PRINT_ANY, 'num_rx_queues', 'numrxqueues %u ', queues);
    p.num(PRINT_ANY, 'gso_max_size', 'gso_max_size %u ', 65536);
    p.num(PRINT_ANY, 'gso_max_segs', 'gso_max_segs %u ', 65535);
    p.num(PRINT_ANY, 'tso_max_size', 'tso_max_size %u ', 524280);
    p.num(PRINT_ANY, 'tso_max_segs', 'tso_max_segs %u ', 65535);
    p.num(PRINT_ANY, 'gro_max_size', 'gro_max_size %u ', 65536);
  }
  if (f.doLink && o.stats) {
    p.nl();
    printStats64(c, stats64(c, l), 'stats64');
  }
  p.string(PRINT_FP, undefined, '%s', '\n');
}

/* ------------------------------------------------------------------ print_addrinfo */

export function printAddrinfo(c: Ctx, dev: Link, a: Address, secondary: boolean): void {
  const p = c.p;
  if (!c.opts.brief) {
    if (c.opts.oneline) {
      if (p.isJson()) {
        p.num(PRINT_JSON, 'index', undefined, dev.ifindex);
        p.string(PRINT_JSON, 'dev', undefined, dev.name);
      } else p.printf('%u: %s', dev.ifindex, dev.name);
    }
    p.string(PRINT_ANY, 'family', '    %s ', 'inet');
  }
  p.string(PRINT_ANY, 'local', '%s', a.ip);
  p.num(PRINT_ANY, 'prefixlen', '/%d ', a.len);
  if (c.opts.brief) return;
  p.string(PRINT_ANY, 'scope', 'scope %s ', a.scope === 'global' ? 'global' : a.scope);
  if (secondary) {
    p.string(PRINT_FP, undefined, '%s ', 'secondary');
    p.bool(PRINT_JSON, 'secondary', undefined, true);
  }
  p.string(PRINT_ANY, 'label', '%s', dev.name);
  p.nl();
  p.string(PRINT_FP, undefined, '       valid_lft ', undefined);
  p.num(PRINT_JSON, 'valid_life_time', undefined, 4294967295);
  p.string(PRINT_FP, undefined, '%s', 'forever');
  p.string(PRINT_FP, undefined, ' preferred_lft ', undefined);
  p.num(PRINT_JSON, 'preferred_life_time', undefined, 4294967295);
  p.string(PRINT_FP, undefined, '%s', 'forever');
  p.string(PRINT_FP, undefined, '%s', '\n');
}

/** the link's addresses in the kernel's list order, each with its IFA_F_SECONDARY */
export function addrList(dev: Link): { a: Address; secondary: boolean }[] {
  return dev.addrs.map((a, i) => ({ a, secondary: isSecondary(dev, i) }));
}
