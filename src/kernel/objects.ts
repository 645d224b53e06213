/**
 * Linux networking objects of one network namespace: links, addresses, neighbours, bridge FDB,
 * sysctls. Plain data; the datapath (stack.ts) gives them behaviour.
 */
import type { Ipv4Addr, Ipv4Packet, MacAddr } from '../wire/types.ts';
import { Fib } from './fib.ts';
import { Netfilter, NF_OWNER } from './netfilter.ts';
import { Conntrack } from './conntrack.ts';
import { DEVICE_SYSCTLS, NETNS_SYSCTLS } from './sysctl-recorded.ts';
import {
  CompactKeyedTable,
  CompactPairTable,
  derivedIn,
  QuadTable,
  Schema,
  type Derived,
  type StateOwner,
} from './table.ts';
import type { PingSocket, TcpConn } from './sockets.ts';

export interface LinkStats {
  rxPackets: number;
  rxBytes: number;
  rxDropped: number;
  txPackets: number;
  txBytes: number;
  txDropped: number;
}

export interface Address {
  ip: Ipv4Addr;
  len: number;
  /** "global" unless given; flannel.1's 10.244.0.0/32 is global too */
  scope: 'global' | 'link' | 'host';
}

interface LinkBase {
  name: string;
  ifindex: number;
  mac: MacAddr;
  mtu: number;
  /** administrative state (IFF_UP) */
  up: boolean;
  addrs: Address[];
  /** name of the bridge this link is a port of */
  master?: string;
  /** the bridge port's BR_HAIRPIN_MODE: frames may leave by the port they came in by (only while a port) */
  hairpin?: boolean;
  /** NOARP devices (tunl0, lo) do not resolve neighbours */
  noarp: boolean;
  stats: LinkStats;
  /**
   * the carrier bit (netif_carrier_ok, the inverse of __LINK_STATE_NOCARRIER), as netlink.ts
   * keeps it; read it through carrierOk (links.ts), which also needs the device up
   */
  carrier: boolean;
  /** IFLA_CARRIER_CHANGES: transitions of the carrier bit since the device was created */
  carrierChanges: number;
  /**
   * the device's own unicast and multicast address lists (dev_uc_add/dev_mc_add: `bridge fdb add
   * … self`); read-only: a change makes a new list (most devices never have one: they share NO_MACS)
   */
  uc: readonly MacAddr[];
  mc: readonly MacAddr[];
}

/** the empty address list every new device's uc and mc start as (never written: a change makes a new list) */
export const NO_MACS: readonly MacAddr[] = Object.freeze([]);

export interface VethLink extends LinkBase {
  type: 'veth';
  peer?: { netns: string; name: string };
}

export interface BridgeLink extends LinkBase {
  type: 'bridge';
  /** seconds; Linux default 300 */
  ageingTime: number;
  /** set once `ip link set BR mtu N` ran: the bridge stops following its ports' MTU */
  mtuSetByUser?: boolean;
  /** keyed by MAC */
  fdb: CompactKeyedTable<FdbEntry>;
}

export interface VxlanLink extends LinkBase {
  type: 'vxlan';
  vni: number;
  local: Ipv4Addr;
  /** underlay device */
  dev: string;
  dstport: number;
  learning: boolean;
  /** outer UDP checksum on transmit (iproute2 `udpcsum`; the kernel's default for IPv4, flannel turns it off) */
  udpcsum: boolean;
  /** source UDP port range, Linux default 32768..60999 (the ephemeral range) */
  srcPortMin: number;
  srcPortMax: number;
  /** VXLAN FDB: inner MAC -> remote VTEP, keyed by MAC */
  fdb: CompactKeyedTable<VxlanFdbEntry>;
}

export interface IpipLink extends LinkBase {
  type: 'ipip';
  local?: Ipv4Addr;
  remote?: Ipv4Addr;
  /** 0 = inherit the inner TTL */
  ttl: number;
  pmtudisc: boolean;
}

export interface LoopbackLink extends LinkBase {
  type: 'loopback';
}

export type Link = VethLink | BridgeLink | VxlanLink | IpipLink | LoopbackLink;

/**
 * A bridge FDB entry. The fields a lookup's answer depends on are readonly: written in place only
 * through the table's update (CompactTable.update), which moves the namespace's state generation.
 * `updated` is the datapath's refresh of a known address on the same port (br_fdb_update): no
 * answer changes until the entry's age passes the bridge's ageing time (fdbDeadline).
 */
export interface FdbEntry {
  readonly mac: MacAddr;
  /** port (or the bridge itself for its own "self"/local entries) */
  readonly port: string;
  /** local: the address of a port or the bridge ("permanent" in bridge fdb); static: added by hand */
  readonly state: 'local' | 'static' | 'dynamic';
  /** simulated µs when last seen (dynamic entries age out after ageingTime) */
  updated: number;
  /** the bridge sets "vlan 1" on entries when vlan filtering is off? no: only with filtering; kept for self entries */
  readonly vlan?: number;
}

/** a VXLAN FDB entry: every field written in place only through the table's update (the state generation moves) */
export interface VxlanFdbEntry {
  readonly mac: MacAddr;
  readonly dst: Ipv4Addr;
  readonly permanent: boolean;
  /** added as `static` (NUD_NOARP|NUD_REACHABLE): kept when the device goes down, like a permanent one */
  readonly static: boolean;
}

const BRIDGE_FDB = new Schema<FdbEntry>({
  mac: 'str',
  port: 'str',
  state: ['local', 'static', 'dynamic'],
  updated: 'num',
  vlan: 'num',
});

/** a bridge's FDB, keyed by MAC; `owner` is the bridge's namespace (its state generation) */
export function bridgeFdb(owner: StateOwner | undefined): CompactKeyedTable<FdbEntry> {
  return new CompactKeyedTable(BRIDGE_FDB, ['mac'], owner);
}

const VXLAN_FDB = new Schema<VxlanFdbEntry>({ mac: 'str', dst: 'str', permanent: 'bool', static: 'bool' });

/** a VXLAN device's FDB, keyed by MAC; `owner` is the device's namespace (undefined: a shared segment) */
export function vxlanFdb(owner: StateOwner | undefined): CompactKeyedTable<VxlanFdbEntry> {
  return new CompactKeyedTable(VXLAN_FDB, ['mac'], owner);
}

/** the neighbour states in the order of their NUD_* bits (NUD_INCOMPLETE 0x01 … NUD_PERMANENT 0x80) */
export const NUD_STATES = [
  'INCOMPLETE',
  'REACHABLE',
  'STALE',
  'DELAY',
  'PROBE',
  'FAILED',
  'NOARP',
  'PERMANENT',
] as const;
export type NudState = (typeof NUD_STATES)[number];

/**
 * A neighbour entry. Every field is readonly: written in place only through the table's update
 * (ns.neigh.update, CompactTable.update), which moves the namespace's state generation. The
 * times the datapath writes at every use (neigh->used, neigh->confirmed) are in the entry's
 * NudTimer, not here.
 */
export interface NeighEntry {
  readonly ip: Ipv4Addr;
  readonly dev: string;
  readonly lladdr?: MacAddr;
  readonly state: NudState;
  readonly router: boolean;
  /** simulated µs of the last state change */
  readonly updated: number;
}

const NEIGHBOURS = new Schema<NeighEntry>({
  ip: 'str',
  dev: 'str',
  lladdr: 'str',
  state: NUD_STATES,
  router: 'bool',
  updated: 'num',
});

/** a neighbour table (a namespace's, `owner`; or a shared segment of one, undefined) */
export function neighTable(owner: StateOwner | undefined): CompactPairTable<NeighEntry> {
  return new CompactPairTable<NeighEntry>(NEIGHBOURS, ['ip', 'dev'], owner);
}

/**
 * neigh_timer_handler's inputs for one neighbour entry, kept beside the entry (Netns.nud, by the
 * entry's key) so that the entry stays what `ip neigh` shows.
 */
export interface NudTimer {
  /** probes sent in this round (neigh->probes) */
  probes: number;
  /** µs the peer was last confirmed reachable (an ARP reply) */
  confirmed?: number;
  /** µs the entry was last used by the slow output path (neigh_event_send) */
  used?: number;
  /** µs the entry's timer is armed for; absent when no timer runs */
  timer?: number;
  /** packets waiting for the resolution (arp_queue), bounded by unres_qlen */
  queue?: QueuedSkb[];
}

/** a packet parked on an unresolved neighbour */
export interface QueuedSkb {
  pkt: Ipv4Packet;
  /** the fragment label it was recorded under ("frag 2/3") */
  part?: string;
}

/**
 * A FIB nexthop exception (struct fib_nh_exception), kept on its route (Route.exceptions): what
 * the kernel learned about one destination behind the route, here the path MTU from ICMP
 * fragmentation needed. It expires after net.ipv4.route.mtu_expires; `ip route get` and
 * `ip route show cache` print it.
 */
export interface FibException {
  dst: Ipv4Addr;
  mtu: number;
  /** µs when it expires */
  expires: number;
  /** the MTU is locked (below min_pmtu) */
  locked: boolean;
}

/** inet_peer: the per-destination ICMP token bucket (inet_peer_xrlim_allow) */
export interface IcmpPeer {
  ip: Ipv4Addr;
  /** tokens in µs of credit (the kernel counts jiffies) */
  tokens: number;
  /** µs of the last refill */
  last: number;
}

/** a route of the local table as fib_add_ifaddr makes it, before the table's order and dedup (netlink.ts) */
export interface LocalMade {
  type: 'local' | 'broadcast';
  dst: number;
  len: number;
  dev: string;
  src: string;
}

export interface ListenSocket {
  proto: 'tcp' | 'udp';
  port: number;
  /** bound address, "0.0.0.0" for any */
  addr: Ipv4Addr;
  /** listen() backlog; the model's listeners are podwalk's own (the lab's listen(64)) */
  backlog?: number;
  /** the process (Stack.apps) that accepts its connections and reads and writes them itself */
  app?: string;
}

/** the backlog of podwalk's listeners (ss shows it as a LISTEN socket's Send-Q) */
export const LISTEN_BACKLOG = 64;

/** a key of a fresh namespace of the recorded kernel (sysctl-recorded.ts), its value there */
function fresh(key: string): string {
  const v = NETNS_SYSCTLS[key];
  if (v === undefined) throw new Error(`${key}: not a key of a fresh namespace`);
  return v;
}

/** the per-netns keys the model follows; each starts as a fresh namespace of this kernel has it */
const FOLLOWED = [
  'net.ipv4.ip_forward',
  'net.ipv4.conf.all.rp_filter',
  'net.ipv4.conf.default.rp_filter',
  'net.ipv4.conf.all.forwarding',
  'net.ipv4.ip_default_ttl',
  'net.ipv4.ip_local_port_range',
  'net.ipv4.tcp_timestamps',
  'net.ipv4.tcp_sack',
  'net.ipv4.tcp_window_scaling',
  // tcp_select_initial_window's inputs: the kernel sizes tcp_rmem[2] from memory at boot
  // (tcp_init) and a namespace copies the initial one's (tcp_sk_init)
  'net.ipv4.tcp_rmem',
  'net.core.rmem_max',
  // icmp_sk_init / the ICMP rate limits
  'net.ipv4.icmp_ratelimit',
  'net.ipv4.icmp_ratemask',
  'net.ipv4.icmp_msgs_per_sec',
  'net.ipv4.icmp_msgs_burst',
  // tcp_sk_init: SYN and SYN-ACK retransmissions
  'net.ipv4.tcp_syn_retries',
  'net.ipv4.tcp_synack_retries',
  'net.ipv4.tcp_syn_linear_timeouts',
  'net.ipv4.tcp_retries1',
  'net.ipv4.tcp_retries2',
  // the route cache: PMTU exceptions
  'net.ipv4.route.mtu_expires',
  'net.ipv4.route.min_pmtu',
  // br_netfilter loaded (kube-proxy and the CNIs need it): 1 in every netns, as a fresh netns reads
  'net.bridge.bridge-nf-call-iptables',
  'net.netfilter.nf_conntrack_tcp_loose',
];

/** neigh_timer_handler's parameters: the init_net-only "default" directory, as a device's copy reads it */
const NEIGH = [
  'gc_stale_time',
  'base_reachable_time_ms',
  'delay_first_probe_time',
  'retrans_time_ms',
  'mcast_solicit',
  'ucast_solicit',
  'app_solicit',
  'mcast_resolicit',
  'unres_qlen',
  'unres_qlen_bytes',
];

export const DEFAULT_SYSCTLS: Record<string, string> = {
  ...Object.fromEntries(FOLLOWED.map((k) => [k, fresh(k)])),
  ...Object.fromEntries(NEIGH.map((k) => [`net.ipv4.neigh.default.${k}`, DEVICE_SYSCTLS['ipv4.neigh'][k]])),
  // only the initial namespace has these (global); in jiffies (proc_dointvec): HZ and 5·HZ on
  // this kernel, CONFIG_HZ 250
  'net.ipv4.route.error_cost': '250',
  'net.ipv4.route.error_burst': '1250',
};

/** `net.ipv4.TABLE.DEV.KNOB`: the table, the device and the knob */
const DEVICE_KEY = /^net\.ipv4\.(conf|neigh)\.([^.]+)\.([^.]+)$/;

/**
 * What Netns.setSysctl does beyond writing the map for the key `net.ipv4.TABLE.DEV.KNOB` (the one
 * list of these: setSysctl acts by it, setDeviceSysctls queues only lists with none):
 * 'reachable' for a neighbour table's base_reachable_time (neigh_proc_base_reachable_time: the
 * device's reachable_time is drawn again), 'forwarding' for conf.all.forwarding (one knob with
 * net.ipv4.ip_forward: inet_forward_change sets every device's); undefined for any other key.
 */
export function deviceSysctlActs(
  table: string,
  dev: string,
  knob: string,
): 'reachable' | 'forwarding' | undefined {
  if (table === 'neigh')
    return knob === 'base_reachable_time' || knob === 'base_reachable_time_ms' ? 'reachable' : undefined;
  return table === 'conf' && dev === 'all' && knob === 'forwarding' ? 'forwarding' : undefined;
}

/** a sysctl of a device: `net.ipv4.TABLE.DEV.KNOB` */
export interface DeviceSysctl {
  table: 'conf' | 'neigh';
  knob: string;
  value: string;
}

/** DEFAULT_SYSCTLS as a map, shared by every namespace's Sysctls (never written) */
const DEFAULT_SYSCTL_MAP: ReadonlyMap<string, string> = new Map(Object.entries(DEFAULT_SYSCTLS));

/**
 * A namespace's sysctls: a Map that reads as a copy of the defaults (DEFAULT_SYSCTLS, in their
 * order) written since, but holds only what was written (the defaults are shared: a pod's
 * namespace writes none or a few of them). Every Map operation reads and iterates exactly as a
 * Map copied from the defaults would: a default written keeps its place, a key deleted and set
 * again, or a new key, goes last.
 */
export class Sysctls extends Map<string, string> {
  /** the defaults no longer in their place (deleted, maybe set again since: then in the own entries) */
  private moved: Set<string> | undefined;

  /** told of every write (set, delete, clear, later): the namespace, whose state generation moves */
  readonly #owner: StateOwner | undefined;

  constructor(owner?: StateOwner) {
    super();
    this.#owner = owner;
  }

  /**
   * Device sysctls written with later() and not set yet: the devices and their lists, in the order
   * written (two lists of the same length). Set, in that order, before anything else reads or
   * writes the map: every method but get and has of a key not queued sets them first.
   */
  #laterDevs: string[] | undefined;
  #laterLists: (readonly DeviceSysctl[])[] | undefined;

  /**
   * `set('net.ipv4.TABLE.DEV.KNOB', VALUE)` for each of `list`, in order, done at the first get
   * or has of one of these keys or at any other use of the map (a write, a listing, derived()):
   * until then the keys are not made. A node of a large Calico cluster writes four a pod (120,000
   * keys at 1,000 nodes × 30 pods); a broadcast on the underlay reads its `eth0` sysctls, doctor
   * its ip_forward, and only the nodes a walk routes through read a pod's port.
   */
  later(dev: string, list: readonly DeviceSysctl[]): void {
    // the keys answer their new values from now on (get sets them first): the write is now
    this.#owner?.stateChanged();
    if (this.#laterDevs === undefined) {
      this.#laterDevs = [];
      this.#laterLists = [];
    }
    this.#laterDevs.push(dev);
    this.#laterLists!.push(list);
  }

  /**
   * whether `k` is one of the keys later() queued (`net.ipv4.TABLE.DEV.KNOB`, compared piece by
   * piece: no key made); setting the others leaves what get and has answer for it as it is
   */
  #queued(k: string): boolean {
    const table = k.startsWith('net.ipv4.conf.')
      ? 'conf'
      : k.startsWith('net.ipv4.neigh.')
        ? 'neigh'
        : undefined;
    if (table === undefined) return false;
    const at = table === 'conf' ? 14 : 15;
    const devs = this.#laterDevs!;
    const lists = this.#laterLists!;
    for (let i = 0; i < devs.length; i++) {
      const d = devs[i];
      const knobAt = at + d.length + 1;
      if (!k.startsWith(d, at) || k.charCodeAt(knobAt - 1) !== 0x2e) continue;
      for (const s of lists[i])
        if (s.table === table && k.length === knobAt + s.knob.length && k.endsWith(s.knob)) return true;
    }
    return false;
  }

  /** what later() queued, set now */
  #now(): void {
    const devs = this.#laterDevs;
    if (devs === undefined) return;
    const lists = this.#laterLists!;
    this.#laterDevs = this.#laterLists = undefined;
    for (let i = 0; i < devs.length; i++)
      for (const s of lists[i]) super.set(`net.ipv4.${s.table}.${devs[i]}.${s.knob}`, s.value);
    this.#derived = undefined;
  }

  private inPlace(k: string): boolean {
    return DEFAULT_SYSCTL_MAP.has(k) && !this.moved?.has(k);
  }

  override get(k: string): string | undefined {
    if (this.#laterDevs !== undefined && this.#queued(k)) this.#now();
    const v = super.get(k);
    return v !== undefined || super.has(k) ? v : this.inPlace(k) ? DEFAULT_SYSCTL_MAP.get(k) : undefined;
  }

  override has(k: string): boolean {
    if (this.#laterDevs !== undefined && this.#queued(k)) this.#now();
    return super.has(k) || this.inPlace(k);
  }

  /** what derived() worked out since the last write, by the function that worked it out */
  #derived: Derived | undefined;

  /**
   * What `make(arg)` works out from these sysctls (a value per namespace that packets read: the
   * window sysctls of a new socket, rp_filter and forwarding per device), made at the first ask
   * and kept until a sysctl is written (set, delete, clear). `make` names the value: a function of
   * the module, the same at every call; `arg` the namespace whose sysctls these are.
   */
  derived<T, A>(make: (arg: A) => T, arg: A): T {
    this.#now();
    return derivedIn((this.#derived ??= new Map()), make, arg);
  }

  // set: Map's (a default written in place is read from the own entries in its place; a moved or
  // new key is listed after the defaults, in the order written)
  override set(k: string, v: string): this {
    this.#now();
    this.#derived = undefined;
    this.#owner?.stateChanged();
    return super.set(k, v);
  }

  override delete(k: string): boolean {
    this.#now();
    this.#derived = undefined;
    this.#owner?.stateChanged();
    const had = this.has(k);
    super.delete(k);
    if (had && DEFAULT_SYSCTL_MAP.has(k)) (this.moved ??= new Set()).add(k);
    return had;
  }

  override clear(): void {
    this.#now();
    this.#derived = undefined;
    this.#owner?.stateChanged();
    super.clear();
    this.moved = new Set(DEFAULT_SYSCTL_MAP.keys());
  }

  override get size(): number {
    let n = 0;
    for (const _ of this.entries()) n++;
    return n;
  }

  // the queued writes set when the iterator is made (a generator's body runs at the first next())
  override entries(): MapIterator<[string, string]> {
    this.#now();
    return this.#entries();
  }

  *#entries(): MapIterator<[string, string]> {
    for (const [k, d] of DEFAULT_SYSCTL_MAP)
      if (!this.moved?.has(k)) yield [k, super.has(k) ? super.get(k)! : d];
    for (const e of super.entries()) if (!this.inPlace(e[0])) yield e;
  }

  override [Symbol.iterator](): MapIterator<[string, string]> {
    return this.entries();
  }

  override *keys(): MapIterator<string> {
    for (const [k] of this.entries()) yield k;
  }

  override *values(): MapIterator<string> {
    for (const [, v] of this.entries()) yield v;
  }

  override forEach(fn: (v: string, k: string, m: Map<string, string>) => void, self?: unknown): void {
    for (const [k, v] of this.entries()) fn.call(self, v, k, this);
  }
}

/**
 * What a namespace's sysctls give per device, worked out when first asked and kept until a sysctl
 * of the namespace is written (Sysctls.derived): rp_filter in effect and IN_DEV_FORWARD, which
 * every packet received asks (three and two reads of the sysctls each)
 */
interface ConfMemo {
  rp: Map<string, number>;
  fwd: Map<string, boolean>;
}
const newConfMemo = (): ConfMemo => ({ rp: new Map(), fwd: new Map() });

/**
 * `outside`: an imported cluster's edge. A frame that reaches it has left the namespaces the
 * dumps describe (a veth whose other end was not collected, the gateway's way out); the model
 * knows nothing beyond, and says so (the walk ends there as "outside"). `external`: a host on the
 * underlay outside the cluster (a client of NodePort and LoadBalancer Services).
 */
export const NETNS_ROLES = ['node', 'pod', 'segment', 'router', 'outside', 'external'] as const;

/** `net.ipv4.conf.DEV.KNOB`, made once per device name and knob: a key built per packet is a new
 * string the sysctl table must hash each time; one kept has its hash cached */
const confKeys = { forwarding: new Map<string, string>(), rp_filter: new Map<string, string>() };
function confKey(dev: string, knob: keyof typeof confKeys): string {
  const m = confKeys[knob];
  let k = m.get(dev);
  if (k === undefined) m.set(dev, (k = `net.ipv4.conf.${dev}.${knob}`));
  return k;
}

export type NetnsRole = (typeof NETNS_ROLES)[number];

/** the empty list and map the copy-on-write tables of every Netns start as (never written: Netns.own) */
const NO_LIST: readonly never[] = Object.freeze([]);
const NO_MAP: ReadonlyMap<never, never> = new Map<never, never>();
interface OwnedLists {
  udpClients: number[];
  pings: PingSocket[];
  icmpPeers: IcmpPeer[];
}
interface OwnedMaps {
  mib: Map<string, number>;
  nud: Map<string, NudTimer>;
  neighReachable: Map<string, number>;
}
type OwnedList = keyof OwnedLists;
type OwnedMap = keyof OwnedMaps;

/** vector sysctl values parsed, by their text (few distinct values: the recorded defaults and what a cluster sets) */
const parsedInts = new Map<string, readonly number[]>();

export class Netns {
  readonly links = new Map<string, Link>();
  readonly fib = new Fib();
  // The tables below are made on first use (a pod's namespace reads most of them only when a walk
  // passes through it: ~150,000 of them in a 5,000-node cluster). Made when first read, not only
  // when first written: what is read is then the table, as it was, and a fresh one is what an
  // eager field held. Private fields: not own enumerable properties, so not data of the namespace
  // (snapshot.ts writes and reads them by name).
  #neigh: CompactPairTable<NeighEntry> | undefined;
  #sysctl: Sysctls | undefined;
  #netfilter: Netfilter | undefined;
  #netfilterLater: ((nf: Netfilter) => void) | undefined;
  #conntrack: Conntrack | undefined;
  #tcp: QuadTable<TcpConn> | undefined;
  #arpStats: { resFailed: number; unresDiscards: number } | undefined;
  #icmpGlobal: { credit: number; stamp: number } | undefined;

  /** keyed by address and device (`get` takes the key `ip|dev` too) */
  get neigh(): CompactPairTable<NeighEntry> {
    return (this.#neigh ??= neighTable(this));
  }

  get sysctl(): Sysctls {
    return (this.#sysctl ??= new Sysctls(this));
  }

  get netfilter(): Netfilter {
    let nf = this.#netfilter;
    if (nf === undefined) {
      nf = this.#netfilter = new Netfilter();
      nf[NF_OWNER] = this;
    }
    if (this.#netfilterLater) this.netfilterNow(nf);
    return nf;
  }

  /**
   * The state generation: moves on at every write of what a walk's decisions read in this
   * namespace beside what routeGeneration counts, never goes back. What moves it, each through
   * one place:
   * - netfilter: the rule set (Netfilter.changed: tables, chains, rules, policies; a program
   *   queued with netfilterLater), the IP sets (Netfilter.setsChanged), and the state rules keep
   *   per packet (`-m recent` lists, `-m statistic --mode nth` counts: every test of such a rule);
   * - sysctls: every write of the map (Sysctls set, delete, clear, and later() when it queues:
   *   from then on the queued keys answer their values) and the device reachable_time a write of
   *   base_reachable_time draws again (neighReachable);
   * - neighbours: an entry added or removed (the table, CompactTable), a field written in place
   *   (the table's update: every field of NeighEntry is readonly), a packet queued on an
   *   unresolved entry (Stack.enqueue: the queue's length is what the next packet meets);
   * - bridge and VXLAN FDBs: an entry added, removed, or its port, state, destination or flags
   *   written (the tables of the devices, given this namespace when made or moved here);
   * - devices beside routing: a bridge port's master and hairpin flag, a device's own unicast and
   *   multicast address lists (netlink.ts);
   * - sockets a lookup finds: listeners (listen, close: addListener, removeListener,
   *   setListeners), the UDP ports applications send from (udpClients) and ping sockets;
   * - the ICMP rate limits (icmp-ratelimit.ts), at every use: their tokens refill with the clock.
   * Not moved by what a walk writes that decides nothing it or a later walk does: a neighbour's
   * used and confirmed times (NudTimer), a known FDB entry's refresh on the same port
   * (FdbEntry.updated), conntrack entries, connection sockets, counters, IP ids, MIB counters,
   * captures, the clock. Entries whose answer changes with the clock alone: deadlines.ts.
   */
  get stateGeneration(): number {
    return this.#stateGeneration;
  }

  #stateGeneration = 0;

  /** something stateGeneration counts changed (StateOwner: the namespace's tables call it) */
  stateChanged(): void {
    this.#stateGeneration++;
  }

  /**
   * What a program writes into the namespace's netfilter (chains, rules, IP sets), run at the
   * table's first read or write from now on, not at once: every read and write goes through the
   * getter, which runs it first, so what anything sees is the table as if it had run here, in its
   * order among the other programs of the table. For a program whose result depends only on what
   * it is given and on the table as it is (a node's firewall agent, whose rules only a walk through
   * the node, a tool on it or a dump of the world reads: most nodes of a large cluster are never
   * read). Not data: a namespace written as data writes the table, which runs it.
   */
  netfilterLater(program: (nf: Netfilter) => void): void {
    this.stateChanged();
    const before = this.#netfilterLater;
    this.#netfilterLater = before
      ? (nf) => {
          before(nf);
          program(nf);
        }
      : program;
  }

  /** whether a program netfilterLater queued is still to run (read without running it) */
  get netfilterQueued(): boolean {
    return this.#netfilterLater !== undefined;
  }

  /** the programs netfilterLater queued, run once, in order (a read from inside one sees the table as it is) */
  private netfilterNow(nf: Netfilter): void {
    const program = this.#netfilterLater!;
    this.#netfilterLater = undefined;
    program(nf);
  }

  get conntrack(): Conntrack {
    return (this.#conntrack ??= new Conntrack());
  }

  /** TCP sockets in the order they were opened, by 4-tuple; a lookup takes the newest */
  get tcp(): QuadTable<TcpConn> {
    return (this.#tcp ??= new QuadTable<TcpConn>());
  }

  /** neighbour table statistics (`ip -s ntable show name arp_cache`) */
  get arpStats(): { resFailed: number; unresDiscards: number } {
    return (this.#arpStats ??= { resFailed: 0, unresDiscards: 0 });
  }

  /** icmp_global: the netns-wide ICMP credit and when it was last refilled (µs; the kernel's stamp
   * starts at jiffies 0, long before any netns exists: one second before the clock starts here) */
  get icmpGlobal(): { credit: number; stamp: number } {
    return (this.#icmpGlobal ??= { credit: 0, stamp: -1_000_000 });
  }

  /**
   * What is derived from the namespace's devices and addresses, kept until one of them changes
   * (derivedChanged; every such change goes through netlink.ts): its devices by the addresses
   * they hold, and the local-table routes as fib_add_ifaddr makes them (netlink.ts). A cache
   * beside the state, not data (a world read back from data starts without). Private fields, not
   * WeakMaps by namespace: such a WeakMap, which namespaces are deleted from at every change of
   * theirs, was slow at 5,000 nodes (its get and set 7.8 % of a build's profile).
   */
  #byAddress: Map<Ipv4Addr, Link[]> | undefined;
  #localMade: readonly LocalMade[] | undefined;

  /** the local-table routes as `make` makes them, kept until derivedChanged */
  localMade(make: (ns: Netns) => readonly LocalMade[]): readonly LocalMade[] {
    return (this.#localMade ??= make(this));
  }

  /** a device, an address or an up/down state of the namespace changed (a routing change too) */
  derivedChanged(): void {
    this.#byAddress = undefined;
    this.#localMade = undefined;
    this.fib.changed();
  }

  /**
   * Something a route lookup reads beside the FIB changed (a device's carrier or MTU, a PMTU
   * exception): the routing generation moves on. Devices, addresses and up/down states report
   * through derivedChanged, the FIB's own writes count themselves (Fib.changed).
   */
  routingChanged(): void {
    this.fib.changed();
  }

  /**
   * The routing generation: moves on at every write that can change the answer of a route lookup
   * in this namespace (the FIB's rows, devices made, deleted or set up or down, their addresses,
   * carrier and MTU, PMTU exceptions made, changed or removed), never goes back. An exception that
   * expires with the clock is not a write: a reader that keeps an answer with an exception checks
   * its expiry itself (routeOutput evaluates the exception at every call).
   */
  get routeGeneration(): number {
    return this.fib.generation;
  }

  /** each device by the addresses it holds (each device once per address, in the namespace's order of devices) */
  private byAddress(): Map<Ipv4Addr, Link[]> {
    let m = this.#byAddress;
    if (!m) {
      m = new Map();
      for (const dev of this.links.values())
        for (const a of dev.addrs) {
          const l = m.get(a.ip);
          if (!l) m.set(a.ip, [dev]);
          else if (l[l.length - 1] !== dev) l.push(dev);
        }
      this.#byAddress = m;
    }
    return m;
  }

  /** a namespace read from data gets its netfilter and conntrack (snapshot.ts) */
  restoreTables(netfilter: Netfilter, conntrack: Conntrack): void {
    this.stateChanged();
    netfilter[NF_OWNER] = this;
    this.#netfilter = netfilter;
    this.#netfilterLater = undefined;
    this.#conntrack = conntrack;
  }

  /** listening sockets (a program may give the namespace a list of its own: setListeners) */
  #sockets: ListenSocket[] = [];

  /** listening sockets; written through addListener, removeListener and setListeners */
  get sockets(): readonly ListenSocket[] {
    return this.#sockets;
  }

  /** listen(): a listening socket more (the state generation moves) */
  addListener(s: ListenSocket): void {
    this.stateChanged();
    this.#sockets.push(s);
  }

  /** close() of the listening socket at `i` of `sockets` (the state generation moves) */
  removeListener(i: number): void {
    this.stateChanged();
    this.#sockets.splice(i, 1);
  }

  /** the listening sockets are `list`, kept, not copied (the state generation moves) */
  setListeners(list: ListenSocket[]): void {
    this.stateChanged();
    this.#sockets = list;
  }
  // The tables below start as one empty table shared by every namespace (most never get an entry:
  // an empty Map is ~180 bytes) and become the namespace's own at the first write, through own():
  // their types are read-only so that the compiler finds every write.
  /** the local ports of UDP sockets applications opened to send from (connected: replies reach them) */
  udpClients: readonly number[] = NO_LIST as readonly number[];
  /** ICMP sockets of ping processes running in this namespace */
  pings: readonly PingSocket[] = NO_LIST as readonly PingSocket[];
  /** SNMP MIB counters by nstat's name (/proc/net/snmp, netstat); only those the model counts */
  mib: ReadonlyMap<string, number> = NO_MAP as ReadonlyMap<string, number>;
  /** the neighbour timers' state, by neighbour key `ip|dev` */
  nud: ReadonlyMap<string, NudTimer> = NO_MAP as ReadonlyMap<string, NudTimer>;
  /**
   * reachable_time in ms as the kernel drew it for a device's ARP parameters (`ip ntable show`
   * prints it as "reachable"), when it is known, as from a real node; without it the model takes
   * base_reachable_time_ms, the mean of the kernel's draw
   */
  neighReachable: ReadonlyMap<string, number> = NO_MAP as ReadonlyMap<string, number>;
  /** inet_peer entries: per-destination ICMP rate limit buckets */
  icmpPeers: readonly IcmpPeer[] = NO_LIST as readonly IcmpPeer[];
  /** the ifindex the next device gets (dev_index_reserve: per namespace, counting up) */
  nextIfindex = 1;
  /** IPv4 id counter per destination is what Linux does; a per-netns counter is enough here */
  ipId = 0;

  constructor(
    readonly name: string,
    readonly role: NetnsRole,
  ) {}

  /**
   * dev_index_reserve: the ifindex asked for (IFLA_IFINDEX, `ip link add … index N`) when it is
   * free (netlink refuses a taken one with EBUSY before asking), else the next one. The model keeps counting past an index
   * asked for; the kernel's cyclic allocation skips taken ones instead: the two differ only in
   * the index of a later device made without asking.
   */
  allocIfindex(want?: number): number {
    if (want === undefined) return this.nextIfindex++;
    this.nextIfindex = Math.max(this.nextIfindex, want + 1);
    return want;
  }

  link(name: string): Link | undefined {
    return this.links.get(name);
  }

  /** one of the tables that start shared and empty, this namespace's own to write */
  own<K extends OwnedList>(k: K): OwnedLists[K];
  own<K extends OwnedMap>(k: K): OwnedMaps[K];
  own(k: OwnedList | OwnedMap): unknown {
    // sockets a lookup finds, and the reachable_time a neighbour's timer reads
    if (k === 'udpClients' || k === 'pings' || k === 'neighReachable') this.stateChanged();
    if (this[k] === NO_LIST) (this as Record<OwnedList, unknown>)[k as OwnedList] = [];
    else if (this[k] === NO_MAP) (this as Record<OwnedMap, unknown>)[k as OwnedMap] = new Map();
    return this[k];
  }

  /**
   * sysctl -w: net.ipv4.ip_forward and net.ipv4.conf.all.forwarding are one knob in the kernel
   * (devinet_sysctl_forward): writing either sets both.
   */
  setSysctl(key: string, value: string): void {
    this.sysctl.set(key, value);
    const d = DEVICE_KEY.exec(key);
    const acts = d
      ? deviceSysctlActs(d[1], d[2], d[3])
      : key === 'net.ipv4.ip_forward'
        ? 'forwarding'
        : undefined;
    // neigh_proc_base_reachable_time: a new base draws the device's reachable_time again
    if (acts === 'reachable' && this.neighReachable.has(d![2])) this.own('neighReachable').delete(d![2]);
    if (acts === 'forwarding') {
      // inet_forward_change: conf.default and every device's conf.DEV.forwarding follow
      for (const k of [...this.sysctl.keys()])
        if (k.startsWith('net.ipv4.conf.') && k.endsWith('.forwarding')) this.sysctl.set(k, value);
      this.sysctl.set('net.ipv4.ip_forward', value);
    }
  }

  /**
   * sysctl -w net.ipv4.TABLE.DEV.KNOB=VALUE for each of `list`, in order: the same as setSysctl
   * for each. When none is one that setSysctl acts on beyond the map (deviceSysctlActs), queued
   * in the map (Sysctls.later): set at the first read of one of these keys or any other use of
   * the map. `list` is kept, not copied: it must not change (Calico's is a constant of the module).
   */
  setDeviceSysctls(dev: string, list: readonly DeviceSysctl[]): void {
    if (list.every((s) => deviceSysctlActs(s.table, dev, s.knob) === undefined)) this.sysctl.later(dev, list);
    else for (const s of list) this.setSysctl(`net.ipv4.${s.table}.${dev}.${s.knob}`, s.value);
  }

  /** IN_DEV_FORWARD: the device's conf.DEV.forwarding (set with ip_forward unless written alone) */
  forwarding(dev: string): boolean {
    const m = this.confMemo();
    let f = m.fwd.get(dev);
    if (f === undefined) {
      f = (this.sysctl.get(confKey(dev, 'forwarding')) ?? this.sysctl.get('net.ipv4.ip_forward')) === '1';
      m.fwd.set(dev, f);
    }
    return f;
  }

  private confMemo(): ConfMemo {
    return this.sysctl.derived(newConfMemo, undefined);
  }

  sysctlNum(key: string): number {
    return Number(this.sysctl.get(key) ?? '0');
  }

  /** a vector sysctl (tcp_rmem, ip_local_port_range: numbers separated by white space), or `dflt` when unset */
  sysctlInts(key: string, dflt = ''): readonly number[] {
    const v = this.sysctl.get(key) ?? dflt;
    let p = parsedInts.get(v);
    if (!p) {
      p = Object.freeze(v.split(/\s+/).map(Number));
      parsedInts.set(v, p);
    }
    return p;
  }

  /** rp_filter in effect on a device: max(conf.all, conf.DEV), as the kernel computes it */
  rpFilter(dev: string): number {
    const m = this.confMemo();
    let r = m.rp.get(dev);
    if (r === undefined) {
      const all = this.sysctlNum('net.ipv4.conf.all.rp_filter');
      const own = Number(
        this.sysctl.get(confKey(dev, 'rp_filter')) ?? this.sysctl.get('net.ipv4.conf.default.rp_filter'),
      );
      r = Math.max(all, own);
      m.rp.set(dev, r);
    }
    return r;
  }

  /** every address of the namespace, with its device */
  *addresses(): Iterable<{ dev: Link; addr: Address }> {
    for (const dev of this.links.values()) for (const addr of dev.addrs) yield { dev, addr };
  }

  /**
   * the device owning `ip` when it is a local address (weak host model: any device): the first
   * device up, in the namespace's order of devices, that has it. Every node answers this for each
   * ARP request flooded on its segment: the devices by address are kept (byAddress)
   */
  localAddress(ip: Ipv4Addr): Link | undefined {
    if (ip.startsWith('127.')) return this.links.get('lo');
    const devs = this.byAddress().get(ip);
    if (devs) for (const dev of devs) if (dev.up) return dev;
    return undefined;
  }

  neighbour(ip: Ipv4Addr, dev: string): NeighEntry | undefined {
    return this.neigh.pick(ip, dev);
  }
}

export function newStats(): LinkStats {
  return { rxPackets: 0, rxBytes: 0, rxDropped: 0, txPackets: 0, txBytes: 0, txDropped: 0 };
}
