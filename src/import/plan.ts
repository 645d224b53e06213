/**
 * From dumps to an import plan: which namespaces the World has, what each holds, and what the
 * model cannot represent (as warnings that say what each may change about a walk). Plain data:
 * src/import/apply.ts turns it into kernel state, through the kernel's own operations.
 *
 *  - every dumped namespace is found by (boot id, inode): the same namespace dumped from two
 *    nodes of one machine (a lab's underlay segment) is one namespace;
 *  - veth ends are joined by their peer ifindex and link-netnsid: an end pairs with the one
 *    end whose ifindex is its peer's and whose peer is it; a namespace id names one namespace;
 *  - roles: the dumped namespace of a dump is a node (a router when it holds no bridge, tunnel
 *    or pod and all its veths lead into switches); a namespace found through a veth is a pod,
 *    or an underlay segment when its end of the veth is a bridge port (a switch);
 *  - a node's uplink that leads nowhere collected (a physical NIC, a veth whose other end was
 *    not dumped) is joined to an underlay segment per IPv4 subnet, and the nodes' gateways
 *    become a router on those segments;
 *  - veths whose other end was not dumped lead to `outside`.
 */
import { derivedMac } from '../kernel/world.ts';
import { ROUTE_PROTOS, type RouteProto } from '../kernel/fib.ts';
import type { LinkAddBase, LinkAddRequest } from '../kernel/netlink.ts';
import type { NetnsRole } from '../kernel/objects.ts';
import { cidrContains, cidrText, ip4ToInt, isValidIp4, parseCidr } from '../wire/addr.ts';
import { DumpError, LIMITS, type DumpFiles } from './dumps.ts';
import { parseKube, type KubeObjects, type KubePod } from './kube.ts';
import {
  parseManifest,
  parseNamespace,
  type FdbDump,
  type LinkDump,
  type Listener,
  type Manifest,
  type NsDump,
} from './parse.ts';

/* ------------------------------------------------------------------ the plan */

/**
 * A link as the node had it: what `ip link add` takes for its kind (netlink's LinkAddRequest, with
 * the ifindex the node gave it), its state and counters. A veth names its peer's namespace and
 * name (the peer is a PlanLink of its own); a loopback is the namespace's own `lo`.
 */
export interface PlanLinkBase extends Required<LinkAddBase> {
  up: boolean;
  master?: string;
  /** the bridge port's hairpin mode (`bridge -d link`'s hairpin on) */
  hairpin?: boolean;
  stats?: {
    rxBytes: number;
    rxPackets: number;
    rxDropped: number;
    txBytes: number;
    txPackets: number;
    txDropped: number;
  };
}

type LinkAddOf<T extends LinkAddRequest['type']> = Omit<
  Extract<LinkAddRequest, { type: T }>,
  keyof LinkAddBase
>;

export type PlanLink =
  | (PlanLinkBase & { type: 'loopback' })
  | (PlanLinkBase & LinkAddOf<'bridge'> & { ageingTime: number })
  | (PlanLinkBase & Omit<LinkAddOf<'veth'>, 'peer'> & { peer: { ns: string; name: string } })
  | (PlanLinkBase & LinkAddOf<'vxlan'>)
  | (PlanLinkBase & LinkAddOf<'ipip'>);

export interface PlanRoute {
  prefix: string;
  type: 'unicast' | 'blackhole' | 'unreachable' | 'prohibit';
  via?: string;
  dev?: string;
  proto: RouteProto;
  scope: 'global' | 'link' | 'host';
  src?: string;
  metric: number;
  onlink: boolean;
}

export interface PlanNeigh {
  ip: string;
  dev: string;
  lladdr?: string;
  state: string;
}

export interface PlanNs {
  name: string;
  role: NetnsRole;
  /** a pod's node */
  node?: string;
  /** where it came from, for messages: "node1/netns/4026532301", or "synthesised" */
  source: string;
  /** its ip netns name on the node, when it had one */
  netnsName?: string;
  links: PlanLink[];
  addrs: { dev: string; ip: string; len: number; scope: 'global' | 'link' | 'host' }[];
  sysctls: [string, string][];
  /** the main table as dumped (undefined: keep what the addresses bring) */
  routes?: PlanRoute[];
  /** routes a synthesised namespace adds to what its addresses bring */
  addRoutes?: PlanRoute[];
  /** the local table as dumped, to compare with the one the addresses bring */
  localRoutes?: { type: string; prefix: string; dev?: string }[];
  neighs: PlanNeigh[];
  /** bridge -j fdb rows as dumped (undefined: keep what the links bring) */
  fdb?: FdbDump[];
  /** `ipset save` text of the namespace's IP sets (restored before the tables that name them) */
  ipsets?: string;
  /** iptables-save text of the tables the model evaluates */
  iptables?: string;
  listeners: Listener[];
  nstat?: Map<string, number>;
  /** the Kubernetes pod it is, when kube.json says so */
  kube?: KubePod;
  /** the pod's interface towards its node, and the node's end of it */
  podLink?: { podDev: string; hostDev: string };
}

export interface ImportWarning {
  /** the model namespace, or "" for the dump set */
  netns: string;
  /** what was found, in the words of the tool that showed it */
  subject: string;
  /** what that may change about a walk */
  effect: string;
}

export interface ImportPlan {
  name: string;
  namespaces: PlanNs[];
  warnings: ImportWarning[];
  kube?: KubeObjects;
  manifests: Manifest[];
  /** underlay segments: name, subnet, the router's address on it */
  segments: { name: string; cidr: string; gateway?: string; gatewayMac?: string }[];
}

/* ------------------------------------------------------------------ reading the dumps */

interface Found {
  key: string;
  dump: NsDump;
  /** the node dump it was found in first, and as what */
  nodeDir: string;
  manifest: Manifest;
  target: boolean;
  /** every node dump that found it */
  foundIn: Set<string>;
  host: string;
}

/** the dump set's files by node directory and namespace: one pass over the paths */
interface Layout {
  /** node directories ("" when the set is one node's directory) */
  nodes: string[];
  /** node directory → its namespace directories (NODE/netns/INODE) */
  namespaces: Map<string, string[]>;
  /** namespace directory → the names of its FILE.err files */
  errs: Map<string, string[]>;
}

function layout(files: DumpFiles): Layout {
  const out: Layout = { nodes: [], namespaces: new Map(), errs: new Map() };
  for (const p of files.keys()) {
    const parts = p.split('/');
    if (p === 'manifest.txt') out.nodes.push('');
    else if (parts.length === 2 && parts[1] === 'manifest.txt') out.nodes.push(parts[0]);
    // NODE/netns/INODE/FILE, or netns/INODE/FILE for one node's directory
    const k =
      parts.length === 4 && parts[1] === 'netns' ? 1 : parts.length === 3 && parts[0] === 'netns' ? 0 : -1;
    if (k < 0 || !/^\d+$/.test(parts[k + 1])) continue;
    const node = k ? parts[0] : '';
    const dir = parts.slice(0, k + 2).join('/');
    const file = parts[k + 2];
    if (file === 'where.txt') out.namespaces.set(node, [...(out.namespaces.get(node) ?? []), dir]);
    if (file.endsWith('.err')) out.errs.set(dir, [...(out.errs.get(dir) ?? []), file]);
  }
  out.nodes.sort();
  return out;
}

function readAll(files: DumpFiles): { found: Map<string, Found>; manifests: Manifest[]; kube?: KubeObjects } {
  const lay = layout(files);
  const dirs = lay.nodes;
  if (dirs.length === 0)
    throw new DumpError('.', 'no manifest.txt: not a podwalk collect dump (NODE/manifest.txt, NODE/netns/…)');
  if (dirs.length > LIMITS.nodes) throw new DumpError('.', `more than ${LIMITS.nodes} node dumps`);
  const found = new Map<string, Found>();
  const manifests: Manifest[] = [];
  const seenNodes = new Map<string, string>();
  for (const dir of dirs) {
    const at = (p: string) => (dir ? `${dir}/${p}` : p);
    const manifest = parseManifest(at('manifest.txt'), files.get(at('manifest.txt'))!);
    const other = seenNodes.get(manifest.node);
    if (other !== undefined)
      throw new DumpError(at('manifest.txt'), `node "${manifest.node}" is dumped twice (also in ${other})`);
    seenNodes.set(manifest.node, at('manifest.txt'));
    manifests.push(manifest);
    const nsDirs = lay.namespaces.get(dir) ?? [];
    if (nsDirs.length > LIMITS.namespaces)
      throw new DumpError(at('netns'), `more than ${LIMITS.namespaces} namespaces in one node's dump`);
    if (!nsDirs.includes(at(`netns/${manifest.target}`)))
      throw new DumpError(
        at(`netns/${manifest.target}`),
        "the node's own namespace is missing from the dump",
      );
    const host = manifest.bootId ?? `node:${manifest.node}`;
    for (const d of nsDirs.sort()) {
      const dump = parseNamespace(files, d, lay.errs.get(d) ?? []);
      const inode = d.slice(d.lastIndexOf('/') + 1);
      if (dump.where.inode !== inode)
        throw new DumpError(`${d}/where.txt`, `inode ${dump.where.inode} ≠ its directory ${inode}`);
      const key = `${host}:${inode}`;
      const target = inode === manifest.target;
      const prev = found.get(key);
      if (prev) {
        prev.foundIn.add(manifest.node);
        if (target && !prev.target) Object.assign(prev, { dump, nodeDir: dir, manifest, target });
        continue;
      }
      found.set(key, { key, dump, nodeDir: dir, manifest, target, foundIn: new Set([manifest.node]), host });
    }
  }
  const kubeText = files.get('kube.json');
  return { found, manifests, kube: kubeText !== undefined ? parseKube('kube.json', kubeText) : undefined };
}

/* ------------------------------------------------------------------ veth pairs */

interface End {
  ns: Found;
  link: LinkDump;
}

const kindOf = (l: LinkDump) => l.linkinfo?.info_kind;

/**
 * Join veth ends. Both ends in one namespace (a node's own veth pair): the dump has no
 * link-netnsid and iproute2 names the peer (`"link": "vb"`, the peer's ifindex resolved in the
 * same namespace), and the peer names this end back. Across namespaces: an end (ifindex a, peer
 * b, nsid n) pairs with an end (ifindex b, peer a) in another namespace of the same machine.
 * Each end pairs once; a namespace id names one namespace on each side (by its ip netns name
 * when the dump has it); when several candidates remain, one found in the same node dump wins.
 */
function pairVeths(found: Map<string, Found>, warn: (w: ImportWarning) => void): Map<End, End> {
  const pairs = new Map<End, End>();
  for (const f of found.values()) {
    const local = f.dump.links.filter((l) => kindOf(l) === 'veth' && l.link_netnsid === undefined);
    const byName = new Map(local.map((l) => [l.ifname, l]));
    for (const l of local) {
      const o = typeof l.link === 'string' ? byName.get(l.link) : undefined;
      if (!o || o === l || o.link !== l.ifname || l.ifindex > o.ifindex) continue;
      const a = { ns: f, link: l };
      const b = { ns: f, link: o };
      pairs.set(a, b).set(b, a);
    }
  }
  // ends by (machine, ifindex, peer ifindex): an end's candidates are the ends under its mirror key
  const byKey = new Map<string, End[]>();
  const key = (host: string, ifindex: number, peer: number) => `${host}|${ifindex}|${peer}`;
  const ends: End[] = [];
  for (const f of found.values())
    for (const link of f.dump.links)
      if (kindOf(link) === 'veth' && link.link_netnsid !== undefined) {
        // the kernel leaves IFLA_LINK out when the peer's ifindex equals this one's
        const e = {
          ns: f,
          link: link.link_index === undefined ? { ...link, link_index: link.ifindex } : link,
        };
        ends.push(e);
        const k = key(f.host, e.link.ifindex, e.link.link_index!);
        byKey.set(k, [...(byKey.get(k) ?? []), e]);
      }
  const nsid = new Map<Found, Map<number, Found>>();
  const ok = (a: End, b: End) => {
    const na = nsid.get(a.ns)?.get(a.link.link_netnsid!);
    const nb = nsid.get(b.ns)?.get(b.link.link_netnsid!);
    return (!na || na === b.ns) && (!nb || nb === a.ns);
  };
  const join = (a: End, b: End) => {
    pairs.set(a, b).set(b, a);
    for (const [x, y] of [
      [a, b],
      [b, a],
    ]) {
      const m = nsid.get(x.ns) ?? nsid.set(x.ns, new Map()).get(x.ns)!;
      m.set(x.link.link_netnsid!, y.ns);
    }
  };
  // the namespace a namespace id names, when iproute2 could name it (ip netns list-id)
  const named = (e: End) => e.ns.dump.nsids?.get(e.link.link_netnsid!);
  const candidates = (e: End) =>
    (byKey.get(key(e.ns.host, e.link.link_index!, e.link.ifindex)) ?? []).filter(
      (o) =>
        o.ns !== e.ns &&
        !pairs.has(o) &&
        (named(e) === undefined || named(e) === o.ns.dump.where.name) &&
        (named(o) === undefined || named(o) === e.ns.dump.where.name) &&
        ok(e, o),
    );
  const sameDump = (e: End, o: End) => [...e.ns.foundIn].some((n) => o.ns.foundIn.has(n));
  let open = ends;
  for (let progress = true; progress;) {
    progress = false;
    for (const e of open) {
      if (pairs.has(e)) continue;
      const c = candidates(e);
      if (c.length === 1 && candidates(c[0]).length === 1) {
        join(e, c[0]);
        progress = true;
      }
    }
    open = open.filter((e) => !pairs.has(e));
    if (progress) continue;
    for (const e of open) {
      const c = candidates(e).filter((o) => sameDump(e, o));
      if (c.length === 1) {
        join(e, c[0]);
        progress = true;
        break;
      }
    }
  }
  for (const e of open)
    if (!pairs.has(e) && candidates(e).length > 1)
      warn({
        netns: '',
        subject: `${e.ns.dump.dir}: veth ${e.link.ifname}@if${e.link.link_index} matches ${candidates(e).length} dumped namespaces`,
        effect: 'its other end is taken as not collected: packets sent into it leave the collected nodes',
      });
  return pairs;
}

/* ------------------------------------------------------------------ planning */

const MODELLED_KINDS = new Set(['veth', 'bridge', 'vxlan', 'ipip']);
/** kinds that carry a node's own address to the network: modelled as its link into the underlay */
const UPLINK_KINDS = new Set(['bond', 'vlan', 'team', 'macvlan', 'ipvlan']);

/** what a link kind the model does not have may change */
function kindEffect(kind: string): string {
  switch (kind) {
    case 'wireguard':
      return 'WireGuard encryption and its peers are not modelled: traffic routed into it is not walked';
    case 'dummy':
      return 'its addresses (kube-proxy IPVS keeps Service IPs on kube-ipvs0) are not local in the model; packets to them are routed instead';
    case 'ipvlan':
    case 'macvlan':
      return 'packets routed into it are not walked';
    case 'geneve':
    case 'gre':
    case 'gretap':
    case 'ip6tnl':
    case 'sit':
      return 'this tunnel is not modelled: traffic routed into it is not walked';
    case 'tun':
    case 'tap':
      return 'a user-space program owns it: traffic routed into it is not walked';
    default:
      return 'traffic routed into it is not walked';
  }
}

function isIp4(s: string | undefined): s is string {
  return !!s && isValidIp4(s);
}

function inSubnet(ip: string, cidr: string): boolean {
  return cidrContains(parseCidr(cidr), ip4ToInt(ip));
}

const DEFAULT_RULES = [
  { priority: 0, table: 'local' },
  { priority: 32766, table: 'main' },
  { priority: 32767, table: 'default' },
];

const PROTOS = new Set<string>(ROUTE_PROTOS);
const ROUTE_TYPES = new Set(['unicast', 'blackhole', 'unreachable', 'prohibit']);

/** sysctls the model reads, and the per-device ones */
const MODEL_SYSCTL =
  /^net\.(ipv4\.(ip_forward|ip_default_ttl|ip_local_port_range|tcp_timestamps|tcp_sack|tcp_window_scaling|tcp_rmem|neigh\.default\.gc_stale_time|neigh\.[^.]+\.proxy_delay|conf\.[^.].*\.(rp_filter|forwarding|proxy_arp))|core\.rmem_max|bridge\.bridge-nf-call-iptables|netfilter\.nf_conntrack_tcp_loose)$/;

/**
 * sysctls the model does not read, and what a non-default value may change. Not among them:
 * route_localnet, which Calico's CNI plugin sets to 1 on every cali* device and kube-proxy on
 * conf.all: the model has no martian check for 127.0.0.0/8 from the wire (ip_route_input_slow's),
 * so it behaves as route_localnet=1 does everywhere, and a dump's 1 changes nothing in it.
 */
const UNMODELLED_SYSCTLS: [RegExp, string, string][] = [
  [/^net\.ipv4\.conf\.(.+)\.arp_ignore$/, '0', 'the model answers ARP for any local address on any device'],
  [/^net\.ipv4\.conf\.(.+)\.arp_filter$/, '0', 'the model answers ARP on whichever device a request arrives'],
  [
    /^net\.ipv4\.conf\.(.+)\.accept_local$/,
    '0',
    'the model drops packets from a local source arriving from outside',
  ],
  [/^net\.ipv4\.conf\.(.+)\.src_valid_mark$/, '0', 'the model ignores the packet mark in source validation'],
  [/^net\.ipv4\.fib_multipath_hash_policy$/, '0', 'the model has no multipath routes'],
];

interface Ctx {
  warn(w: ImportWarning): void;
}

/** iptables-save text split into tables: name → its lines, *TABLE … COMMIT included */
function saveTables(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let cur: string[] | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) {
      cur = [line];
      out.set(line.slice(1).trim(), cur);
    } else if (cur && !line.startsWith('#')) {
      cur.push(line);
      if (line.trim() === 'COMMIT') cur = undefined;
    }
  }
  return out;
}

/** iptables-save of the dump (every table: the model evaluates them all), and warnings about the rest */
function planIptables(d: NsDump, name: string, c: Ctx): string | undefined {
  let text = d.iptablesSave;
  const legacy = d.iptablesLegacySave ? saveTables(d.iptablesLegacySave) : undefined;
  const rulesIn = (t: Map<string, string[]>) =>
    [...t.values()].reduce((n, lines) => n + lines.filter((l) => /^(\[\d+:\d+\] )?-A /.test(l)).length, 0);
  if (legacy && rulesIn(legacy) > 0) {
    const nft = text ? saveTables(text) : new Map();
    if (rulesIn(nft) === 0) text = d.iptablesLegacySave;
    else
      c.warn({
        netns: name,
        subject: `iptables-legacy-save: ${rulesIn(legacy)} rules in the legacy x_tables besides ${rulesIn(nft)} in nf_tables`,
        effect:
          'both run in the kernel; the model evaluates only the nf_tables rules, so the legacy ones are left out',
      });
  }
  if (d.legacyMissing)
    c.warn({
      netns: name,
      subject: `legacy iptables tables (${d.legacyMissing.replace(/^legacy tables: /, '')}) but no iptables-legacy-save on the node`,
      effect: 'their rules were not dumped: the walk does not see them',
    });
  if (text?.includes("is incompatible, use 'nft' tool"))
    c.warn({
      netns: name,
      subject: 'iptables-save: a table holds nft rules iptables cannot show',
      effect: 'those rules are left out: the walk may pass where the kernel drops, or the reverse',
    });
  if (!text) return undefined;
  // every table iptables makes is evaluated by the model (netfilter's hooks × tables, NAT in conntrack)
  return text;
}

function planNft(d: NsDump, name: string, c: Ctx): void {
  const IPT = new Set(['filter', 'nat', 'mangle', 'raw', 'security']);
  for (const o of d.nft ?? []) {
    const t = o.table as { family?: string; name?: string } | undefined;
    if (!t) continue;
    if (t.family === 'ip' && IPT.has(t.name ?? '')) continue;
    if (t.family === 'ip6') continue; // IPv6: warned about once with the addresses
    c.warn({
      netns: name,
      subject: `nft table ${t.family} ${t.name} (not made by iptables)`,
      effect:
        'nftables-only rules are not in the model: the walk may pass where they drop, or miss their NAT',
    });
  }
}

function planTc(d: NsDump, name: string, c: Ctx): void {
  for (const [key, text] of d.tcFilters) {
    const bpf = /\bbpf\b/.test(text);
    c.warn({
      netns: name,
      subject: `tc ${bpf ? 'eBPF program' : 'filter'} on ${key}${bpf ? (/name (\S+)/.exec(text)?.[1] ? ` (${/name (\S+)/.exec(text)![1]})` : '') : ''}`,
      effect: `tc ${key.split(' ')[1]} programs can drop, redirect or rewrite packets; the model does not run them`,
    });
  }
  for (const l of d.links)
    if (l.xdp !== undefined)
      c.warn({
        netns: name,
        subject: `XDP program on ${l.ifname}`,
        effect: 'XDP runs before the stack and can drop or redirect; the model does not run it',
      });
}

/** the links, addresses and tables of one dumped namespace, in model form */
function planNamespace(
  f: Found,
  name: string,
  role: NetnsRole,
  peerOf: (l: LinkDump) => { ns: string; name: string } | undefined,
  c: Ctx,
): PlanNs {
  const d = f.dump;
  const links: PlanLink[] = [];
  const created = new Set<string>();
  const sorted = [...d.links].sort((a, b) => a.ifindex - b.ifindex);
  const seenIfindex = new Set<number>();
  for (const l of sorted) {
    if (seenIfindex.has(l.ifindex)) throw new DumpError(`${d.dir}/link.json`, `ifindex ${l.ifindex} twice`);
    seenIfindex.add(l.ifindex);
  }
  for (const l of sorted) {
    const base: PlanLinkBase = {
      name: l.ifname,
      ifindex: l.ifindex,
      mac: l.address ?? '00:00:00:00:00:00',
      mtu: l.mtu,
      up: l.flags.includes('UP'),
      master: l.master,
      hairpin: d.bridgeLinks.some((b) => b.ifname === l.ifname && b.hairpin === true) || undefined,
      stats: l.stats64
        ? {
            rxBytes: l.stats64.rx.bytes,
            rxPackets: l.stats64.rx.packets,
            rxDropped: l.stats64.rx.dropped,
            txBytes: l.stats64.tx.bytes,
            txPackets: l.stats64.tx.packets,
            txDropped: l.stats64.tx.dropped,
          }
        : undefined,
    };
    const kind = kindOf(l);
    if (l.link_type === 'loopback') {
      links.push({ ...base, type: 'loopback' });
      created.add(l.ifname);
      continue;
    }
    const peer = peerOf(l);
    if (peer) {
      links.push({ ...base, type: 'veth', peer });
      created.add(l.ifname);
      continue;
    }
    if (kind === 'bridge') {
      const data = l.linkinfo?.info_data ?? {};
      const ageing = typeof data.ageing_time === 'number' ? Math.round(data.ageing_time / 100) : 300;
      links.push({ ...base, type: 'bridge', ageingTime: ageing });
      created.add(l.ifname);
      for (const [k, dflt, effect] of [
        ['stp_state', 0, 'STP is not modelled: every port forwards at once'],
        ['vlan_filtering', 0, 'VLAN filtering is not modelled: frames are forwarded whatever their VLAN'],
      ] as const)
        if (data[k] !== undefined && data[k] !== dflt)
          c.warn({ netns: name, subject: `bridge ${l.ifname} ${k} ${String(data[k])}`, effect });
      continue;
    }
    if (kind === 'vxlan') {
      const data = l.linkinfo?.info_data ?? {};
      const vni = data.id;
      if (typeof vni !== 'number')
        throw new DumpError(`${d.dir}/link.json`, `${l.ifname}: a vxlan without "id"`);
      const lower = typeof data.link === 'string' ? data.link : '';
      links.push({
        ...base,
        type: 'vxlan',
        vni,
        local: typeof data.local === 'string' ? data.local : '0.0.0.0',
        dev: lower,
        dstport: typeof data.port === 'number' ? data.port : 8472,
        learning: data.learning !== false,
        udpcsum: data.udp_csum !== false,
      });
      created.add(l.ifname);
      if (data.group !== undefined || data.remote !== undefined)
        c.warn({
          netns: name,
          subject: `vxlan ${l.ifname} ${data.group !== undefined ? `group ${String(data.group)}` : `remote ${String(data.remote)}`}`,
          effect:
            'a default remote or multicast group is not modelled: only per-MAC FDB entries send to a VTEP',
        });
      const range = data.port_range as { low?: number; high?: number } | undefined;
      if (range && (range.low || range.high))
        c.warn({
          netns: name,
          subject: `vxlan ${l.ifname} srcport ${range.low} ${range.high}`,
          effect:
            'the model picks outer source ports from 32768–60999: only the outer UDP source port differs',
        });
      continue;
    }
    if (kind === 'ipip') {
      links.push({ ...base, type: 'ipip' });
      created.add(l.ifname);
      const data = l.linkinfo?.info_data ?? {};
      if (
        (data.remote && data.remote !== 'any') ||
        (data.local && data.local !== 'any') ||
        data.ttl ||
        data.pmtudisc
      )
        c.warn({
          netns: name,
          subject: `ipip ${l.ifname} remote ${String(data.remote ?? 'any')} local ${String(data.local ?? 'any')} ttl ${String(data.ttl ?? 0)}${data.pmtudisc ? ' pmtudisc' : ''}`,
          effect: "the model's tunl0 has no fixed endpoints, inherits the TTL and does not do PMTU discovery",
        });
      continue;
    }
    const addressed = d.addrs.some(
      (a) => a.ifname === l.ifname && a.addr_info.some((x) => x.family === 'inet' && x.scope !== 'host'),
    );
    if (kind === 'veth' && role === 'node' && addressed) {
      // a node's addressed veth whose other end was not dumped: its uplink, joined to the underlay below
      links.push({ ...base, type: 'veth', peer: { ns: '', name: '' } });
      created.add(l.ifname);
      continue;
    }
    if (kind === 'veth') {
      // a veth whose other end was not dumped: it leads outside
      links.push({ ...base, type: 'veth', peer: { ns: OUTSIDE, name: `${name}.${l.ifname}`.slice(0, 15) } });
      created.add(l.ifname);
      c.warn({
        netns: name,
        subject: `veth ${l.ifname}: its other end (ifindex ${l.link_index ?? '?'}) was not collected`,
        effect: 'packets sent into it leave the collected nodes (outside)',
      });
      continue;
    }
    if (kind === undefined || UPLINK_KINDS.has(kind)) {
      // a physical NIC or an uplink kind: joined to the underlay below, if it has an IPv4 address
      links.push({ ...base, type: 'veth', peer: { ns: '', name: '' } });
      created.add(l.ifname);
      continue;
    }
    if (!MODELLED_KINDS.has(kind))
      c.warn({
        netns: name,
        subject: `${l.ifname}: link kind ${kind} is not modelled`,
        effect: kindEffect(kind),
      });
  }

  const addrs: PlanNs['addrs'] = [];
  let ipv6 = 0;
  for (const a of d.addrs) {
    for (const x of a.addr_info) {
      if (x.family === 'inet6') {
        ipv6++;
        continue;
      }
      if (x.family !== 'inet') continue;
      if (!created.has(a.ifname)) continue;
      if (!isIp4(x.local) || x.prefixlen === undefined || x.prefixlen > 32)
        throw new DumpError(`${d.dir}/addr.json`, `${a.ifname}: an inet address without local/prefixlen`);
      const scope = x.scope === 'host' || x.scope === 'link' ? x.scope : 'global';
      addrs.push({ dev: a.ifname, ip: x.local, len: x.prefixlen, scope });
      if (x.address && x.address !== x.local)
        c.warn({
          netns: name,
          subject: `${x.local} peer ${x.address} on ${a.ifname}`,
          effect: 'point-to-point peer addresses are not modelled: the prefix is taken as on-link',
        });
    }
  }
  if (ipv6 && role !== 'segment')
    c.warn({
      netns: name,
      subject: `${ipv6} IPv6 address${ipv6 === 1 ? '' : 'es'}`,
      effect: 'IPv6 is not modelled: only IPv4 flows can be walked',
    });
  for (const a of d.addrs)
    if (!created.has(a.ifname) && a.addr_info.some((x) => x.family === 'inet') && a.ifname !== 'lo')
      c.warn({
        netns: name,
        subject: `${a.addr_info.filter((x) => x.family === 'inet').length} IPv4 address(es) on ${a.ifname}, which is not modelled`,
        effect: 'they are not local in the model: packets to them are routed instead of delivered here',
      });

  const sysctls: [string, string][] = [];
  for (const [path, value] of d.sysctls) {
    const key = path.split('/').join('.');
    if (MODEL_SYSCTL.test(key)) sysctls.push([key, value]);
    for (const [re, dflt, effect] of UNMODELLED_SYSCTLS) {
      const m = re.exec(key);
      if (m && value !== dflt && (!m[1] || m[1] === 'all' || created.has(m[1])))
        c.warn({ netns: name, subject: `${key} = ${value}`, effect });
    }
  }

  const routes: PlanRoute[] = [];
  const localRoutes: PlanNs['localRoutes'] = [];
  const badTables = new Map<string, number>();
  for (const r of d.routes) {
    const type = r.type ?? 'unicast';
    const table = r.table ?? 'main';
    const show = `${type === 'unicast' ? '' : type + ' '}${r.dst}${r.gateway ? ` via ${r.gateway}` : ''}${r.dev ? ` dev ${r.dev}` : ''}`;
    if (table === 'local') {
      localRoutes.push({ type, prefix: r.dst, dev: r.dev });
      continue;
    }
    if (table !== 'main') {
      badTables.set(table, (badTables.get(table) ?? 0) + 1);
      continue;
    }
    if (r.nexthops !== undefined || r.nhid !== undefined) {
      c.warn({
        netns: name,
        subject: `route ${show} with several nexthops`,
        effect:
          'multipath routes are not modelled: the route is left out, so its destination takes another route',
      });
      continue;
    }
    if (r.encap !== undefined || r.via !== undefined) {
      c.warn({
        netns: name,
        subject: `route ${show} with ${r.encap !== undefined ? 'a lightweight tunnel (encap)' : 'a via of another family'}`,
        effect: 'not modelled: the route is left out',
      });
      continue;
    }
    if (!ROUTE_TYPES.has(type)) {
      c.warn({
        netns: name,
        subject: `route ${show} (type ${type})`,
        effect: 'this route type is not modelled: left out',
      });
      continue;
    }
    if (r.dev && !created.has(r.dev)) {
      c.warn({
        netns: name,
        subject: `route ${show}`,
        effect: `${r.dev} is not modelled, so neither is the route: its destinations take another route`,
      });
      continue;
    }
    if (r.gateway !== undefined && !isIp4(r.gateway))
      throw new DumpError(
        `${d.dir}/route.json`,
        `route ${r.dst}: gateway "${r.gateway}" is not an IPv4 address`,
      );
    if (r.metrics !== undefined)
      c.warn({
        netns: name,
        subject: `route ${show} ${JSON.stringify(r.metrics)}`,
        effect: 'route metrics (mtu, advmss…) are not modelled: the device MTU applies',
      });
    let proto = r.protocol ?? 'boot';
    if (!PROTOS.has(proto)) {
      c.warn({
        netns: name,
        subject: `route ${show} proto ${proto}`,
        effect: `the model knows protocols ${[...PROTOS].join(', ')}: it is shown as proto static (no effect on walks)`,
      });
      proto = 'static';
    }
    routes.push({
      prefix: r.dst,
      type: type as PlanRoute['type'],
      via: r.gateway,
      dev: r.dev,
      proto: proto as RouteProto,
      scope: (r.scope ?? 'global') as PlanRoute['scope'],
      src: r.prefsrc,
      metric: r.metric ?? 0,
      onlink: (r.flags ?? []).includes('onlink'),
    });
  }
  for (const [table, n] of badTables)
    c.warn({
      netns: name,
      subject: `${n} route${n === 1 ? '' : 's'} in table ${table}`,
      effect: `policy routing beyond the main and local tables is not modelled: packets that rules send to table ${table} use main instead`,
    });
  for (const r of d.rules ?? []) {
    const std = DEFAULT_RULES.some((x) => x.priority === r.priority && x.table === r.table);
    const plain =
      (!r.src || r.src === 'all') &&
      !r.dst &&
      !r.not &&
      Object.keys(r).every((k) => ['priority', 'src', 'table'].includes(k));
    if (std && plain) continue;
    const what = Object.entries(r)
      .filter(([k]) => k !== 'priority')
      .map(([k, v]) => `${k} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
      .join(' ');
    c.warn({
      netns: name,
      subject: `ip rule ${r.priority}: ${what}`,
      effect: 'policy routing rules are not modelled: every packet uses the local, then the main table',
    });
  }

  const neighs: PlanNeigh[] = [];
  for (const n of d.neighs) {
    if (!isIp4(n.dst) || !n.dev) continue;
    if (!created.has(n.dev)) continue;
    const state = (n.state ?? ['NONE'])[0];
    if (state === 'NONE' || state === 'NOARP') continue;
    neighs.push({ ip: n.dst, dev: n.dev, lladdr: n.lladdr, state });
  }

  for (const bl of d.bridgeLinks) {
    const flags = (['proxy_arp', 'neigh_suppress', 'isolated'] as const).filter((k) => bl[k] === true);
    for (const k of flags)
      c.warn({
        netns: name,
        subject: `bridge port ${bl.ifname} ${k} on`,
        effect: `${k} on a bridge port is not modelled`,
      });
  }
  planNft(d, name, c);
  planTc(d, name, c);
  if (d.conntrackEntries)
    c.warn({
      netns: name,
      subject: `${d.conntrackEntries} conntrack entr${d.conntrackEntries === 1 ? 'y' : 'ies'}`,
      effect:
        'connection tracking state is not imported: a walk starts as a NEW connection (ESTABLISHED-only rules see the exchange the walk makes)',
    });
  for (const fl of d.failures)
    c.warn({
      netns: name,
      subject: `${fl.file} failed on the node: ${fl.message}`,
      effect: 'what it would show is missing',
    });

  return {
    name,
    role,
    source: d.dir,
    netnsName: d.where.name,
    links,
    addrs,
    sysctls,
    routes,
    localRoutes,
    neighs,
    fdb: d.fdb.filter((r) => created.has(r.ifname)),
    ...(d.ipsetSave?.trim() ? { ipsets: d.ipsetSave } : {}),
    iptables: planIptables(d, name, c),
    listeners: d.listeners ?? [],
    nstat: d.nstat,
  };
}

export const OUTSIDE = 'outside';
/** the synthesised router's next hop towards outside (link-local: it is on no real network) */
export const OUTSIDE_GATEWAY = '169.254.0.1';

/* ------------------------------------------------------------------ the whole set */

export function planImport(files: DumpFiles, opts: { name?: string } = {}): ImportPlan {
  const warnings: ImportWarning[] = [];
  const seen = new Set<string>();
  const c: Ctx = {
    warn: (w) => {
      const k = `${w.netns}\0${w.subject}`;
      if (seen.has(k)) return;
      seen.add(k);
      warnings.push(w);
    },
  };
  const { found, manifests, kube } = readAll(files);
  const pairs = pairVeths(found, c.warn);
  const endOf = new Map<string, End>();
  for (const [e] of pairs) endOf.set(`${e.ns.key}/${e.link.ifindex}`, e);

  /* roles */
  const role = new Map<Found, NetnsRole>();
  const podNode = new Map<Found, Found>();
  const all = [...found.values()];
  for (const f of all) if (f.target) role.set(f, 'node');
  for (const f of all) {
    if (f.target) continue;
    // a peer: a switch when its end of a veth into a dumped namespace is a bridge port
    const mine = f.dump.links.filter((l) => {
      const e = endOf.get(`${f.key}/${l.ifindex}`);
      return e && pairs.get(e)!.ns !== f;
    });
    const sw = mine.some((l) => !!l.master);
    role.set(f, sw ? 'segment' : 'pod');
    if (!sw) {
      const node = mine.map((l) => pairs.get(endOf.get(`${f.key}/${l.ifindex}`)!)!.ns).find((o) => o.target);
      if (node) podNode.set(f, node);
      else
        c.warn({
          netns: '',
          subject: `${f.dump.dir}: a namespace found through a veth that leads to no dumped node`,
          effect: 'it is imported as a pod of the node whose dump found it',
        });
    }
  }
  for (const f of all) {
    if (role.get(f) !== 'pod' || podNode.has(f)) continue;
    const byDump = all.find((o) => o.target && o.manifest.node === [...f.foundIn][0]);
    if (byDump) podNode.set(f, byDump);
  }
  // a dumped namespace without bridges, tunnels or pods, whose veths all lead into switches, is a router
  for (const f of all) {
    if (!f.target) continue;
    const kinds = f.dump.links.map(kindOf);
    const veths = f.dump.links.filter((l) => kindOf(l) === 'veth');
    const far = veths
      .map((l) => endOf.get(`${f.key}/${l.ifindex}`))
      .map((e) => (e ? pairs.get(e)!.ns : undefined));
    const fwd = f.dump.sysctls.get('net/ipv4/ip_forward') === '1';
    if (
      fwd &&
      veths.length > 0 &&
      !kinds.some((k) => k === 'bridge' || k === 'vxlan' || k === 'ipip') &&
      far.every((o) => o && role.get(o) === 'segment') &&
      !all.some((o) => podNode.get(o) === f)
    )
      role.set(f, 'router');
  }

  /* names */
  const names = new Map<Found, string>();
  const taken = new Set<string>([OUTSIDE]);
  const unique = (want: string) => {
    let n = want;
    for (let i = 2; taken.has(n); i++) n = `${want}-${i}`;
    taken.add(n);
    return n;
  };
  const podByIp = new Map<string, KubePod>();
  for (const p of kube?.pods ?? []) if (!p.hostNetwork) for (const ip of p.ips) podByIp.set(ip, p);
  const kubeOf = new Map<Found, KubePod>();
  const targetOf = new Map(all.filter((f) => f.target).map((f) => [f.manifest.node, f]));
  for (const f of all) if (f.target) names.set(f, unique(f.manifest.node));
  for (const f of all) {
    if (f.target) continue;
    const dumper = [...f.foundIn].map((n) => targetOf.get(n)).find((x) => x) ?? all.find((o) => o.target)!;
    const m = dumper.manifest;
    // a lab's namespaces share a prefix: node1 dumped from pw-seed-node1 makes pw-seed-pod-a "pod-a"
    const prefix =
      m.targetNetns && m.targetNetns.endsWith(m.node) && m.targetNetns.length > m.node.length
        ? m.targetNetns.slice(0, -m.node.length)
        : undefined;
    const w = f.dump.where;
    let want = w.name
      ? prefix && w.name.startsWith(prefix) && w.name.length > prefix.length
        ? w.name.slice(prefix.length)
        : w.name
      : `${m.node}-netns-${w.inode}`;
    if (role.get(f) === 'pod') {
      const ips = f.dump.addrs.flatMap((a) =>
        a.addr_info.filter((x) => x.family === 'inet').map((x) => x.local ?? ''),
      );
      const k = ips.map((ip) => podByIp.get(ip)).find((x) => x);
      if (k) {
        kubeOf.set(f, k);
        want = `${k.namespace}/${k.name}`;
      }
    }
    names.set(f, unique(want));
  }

  /* namespaces */
  const namespaces: PlanNs[] = [];
  const planOf = new Map<Found, PlanNs>();
  for (const f of all.sort((a, b) => names.get(a)!.localeCompare(names.get(b)!))) {
    const name = names.get(f)!;
    const r = role.get(f)!;
    const peerOf = (l: LinkDump) => {
      const e = endOf.get(`${f.key}/${l.ifindex}`);
      if (!e) return undefined;
      const o = pairs.get(e)!;
      return { ns: names.get(o.ns)!, name: o.link.ifname };
    };
    const p = planNamespace(f, name, r, peerOf, c);
    if (r === 'pod') {
      const node = podNode.get(f);
      if (node) {
        p.node = names.get(node)!;
        const link = f.dump.links.find((l) => {
          const e = endOf.get(`${f.key}/${l.ifindex}`);
          return e && pairs.get(e)!.ns === node;
        });
        if (link)
          p.podLink = {
            podDev: link.ifname,
            hostDev: pairs.get(endOf.get(`${f.key}/${link.ifindex}`)!)!.link.ifname,
          };
      }
      p.kube = kubeOf.get(f);
    }
    namespaces.push(p);
    planOf.set(f, p);
  }

  /* the underlay: uplinks that lead nowhere dumped join a segment per subnet */
  const segments: ImportPlan['segments'] = [];
  const uplinks: { ns: PlanNs; link: PlanLink; ip: string; len: number; subnet: string }[] = [];
  for (const p of namespaces) {
    for (const l of p.links) {
      if (l.type !== 'veth' || l.peer.ns !== '') continue;
      const a = p.addrs.find((x) => x.dev === l.name && x.scope === 'global');
      if (!a || p.role !== 'node') {
        c.warn({
          netns: p.name,
          subject: `${l.name} (a device without a modelled kind${a ? '' : ', without an IPv4 address'})`,
          effect: 'it is modelled as a link into a switch of its own: nothing answers behind it',
        });
        uplinks.push({
          ns: p,
          link: l,
          ip: a?.ip ?? '0.0.0.0',
          len: a?.len ?? 32,
          subnet: `${p.name}/${l.name}`,
        });
        continue;
      }
      uplinks.push({
        ns: p,
        link: l,
        ip: a.ip,
        len: a.len,
        subnet: cidrText({ addr: ip4ToInt(a.ip), len: a.len }),
      });
    }
  }
  const subnets = [...new Set(uplinks.map((u) => u.subnet))].sort((a, b) => {
    const [x, y] = [a, b].map((s) =>
      s.includes('/') && isIp4(s.split('/')[0]) ? ip4ToInt(s.split('/')[0]) : Infinity,
    );
    return x - y || a.localeCompare(b);
  });
  let routerPlan: PlanNs | undefined;
  const outsideExtra: PlanLink[] = [];
  subnets.forEach((subnet, i) => {
    const members = uplinks.filter((u) => u.subnet === subnet);
    const name = unique(`lan${i}`);
    const seg: PlanNs = {
      name,
      role: 'segment',
      source: 'synthesised',
      links: [
        { type: 'loopback', name: 'lo', ifindex: 1, mac: '00:00:00:00:00:00', mtu: 65536, up: true },
        {
          type: 'bridge',
          name,
          ifindex: 2,
          mac: derivedMac(`import/${name}`),
          mtu: 1500,
          up: true,
          ageingTime: 300,
        },
      ],
      addrs: [],
      sysctls: [],
      neighs: [],
      listeners: [],
    };
    const portNames = new Set<string>();
    const port = (want: string) => {
      let n = want.slice(0, 15);
      for (let k = 2; portNames.has(n); k++) n = `${want.slice(0, 12)}-${k}`;
      portNames.add(n);
      return n;
    };
    let ifindex = 3;
    for (const u of members) {
      const pn = port(u.ns.name.replace(/[/\s:]/g, '-'));
      (u.link as PlanLinkBase & { peer: { ns: string; name: string } }).peer = { ns: name, name: pn };
      seg.links.push({
        type: 'veth',
        name: pn,
        ifindex: ifindex++,
        mac: derivedMac(`import/${name}/${pn}`),
        mtu: u.link.mtu,
        up: true,
        master: name,
        peer: { ns: u.ns.name, name: u.link.name },
      });
    }
    namespaces.push(seg);
    if (!subnet.includes('/') || !isIp4(subnet.split('/')[0])) return;
    // the gateways the members' default routes name on this subnet
    const gws = [
      ...new Set(
        members.flatMap((u) =>
          (u.ns.routes ?? [])
            .filter(
              (r) => r.prefix === 'default' && r.via && r.dev === u.link.name && inSubnet(r.via, subnet),
            )
            .map((r) => r.via!),
        ),
      ),
    ];
    segments.push({ name, cidr: subnet, gateway: gws[0] });
    if (!gws.length) return;
    if (!routerPlan) {
      routerPlan = {
        name: unique('router'),
        role: 'router',
        source: 'synthesised',
        links: [{ type: 'loopback', name: 'lo', ifindex: 1, mac: '00:00:00:00:00:00', mtu: 65536, up: true }],
        addrs: [],
        sysctls: [['net.ipv4.ip_forward', '1']],
        neighs: [],
        listeners: [],
      };
      namespaces.push(routerPlan);
    }
    const leg = `eth${routerPlan.links.length - 1}`;
    const known = members
      .flatMap((u) => u.ns.neighs.filter((n) => n.ip === gws[0] && n.dev === u.link.name && n.lladdr))
      .map((n) => n.lladdr!)[0];
    if (!known)
      c.warn({
        netns: routerPlan.name,
        subject: `the gateway ${gws[0]}'s MAC is in no dumped neighbour table`,
        effect: `the router synthesised on ${name} uses ${derivedMac(`import/router/${leg}`)}: only that MAC differs from the real one`,
      });
    const mac = known ?? derivedMac(`import/router/${leg}`);
    segments[segments.length - 1].gatewayMac = mac;
    const pn = port('router');
    routerPlan.links.push({
      type: 'veth',
      name: leg,
      ifindex: routerPlan.links.length + 1,
      mac,
      mtu: Math.min(...members.map((u) => u.link.mtu)),
      up: true,
      peer: { ns: name, name: pn },
    });
    seg.links.push({
      type: 'veth',
      name: pn,
      ifindex: ifindex++,
      mac: derivedMac(`import/${name}/router`),
      mtu: Math.min(...members.map((u) => u.link.mtu)),
      up: true,
      master: name,
      peer: { ns: routerPlan.name, name: leg },
    });
    const len = Number(subnet.split('/')[1]);
    for (const gw of gws) routerPlan.addrs.push({ dev: leg, ip: gw, len, scope: 'global' });
    c.warn({
      netns: routerPlan.name,
      subject: `a router with ${gws.join(', ')} on ${name} (${subnet}), from the nodes' default routes`,
      effect: 'it knows only its connected subnets: what lies beyond it is outside the collected nodes',
    });
  });

  // the synthesised router's way out: a default route to outside, via a neighbour that always answers
  if (routerPlan) {
    const mac = derivedMac('import/outside/router');
    routerPlan.links.push({
      type: 'veth',
      name: 'outside',
      ifindex: routerPlan.links.length + 1,
      mac: derivedMac('import/router/outside'),
      mtu: 1500,
      up: true,
      peer: { ns: OUTSIDE, name: 'router' },
    });
    routerPlan.addRoutes = [
      {
        prefix: 'default',
        type: 'unicast',
        via: OUTSIDE_GATEWAY,
        dev: 'outside',
        proto: 'static',
        scope: 'global',
        metric: 0,
        onlink: true,
      },
    ];
    routerPlan.neighs.push({ ip: OUTSIDE_GATEWAY, dev: 'outside', lladdr: mac, state: 'PERMANENT' });
    outsideExtra.push({
      type: 'veth',
      name: 'router',
      ifindex: 0,
      mac,
      mtu: 1500,
      up: true,
      peer: { ns: routerPlan.name, name: 'outside' },
    });
  }

  // collected segments: their subnets come from the nodes attached to them
  for (const p of namespaces) {
    if (p.role !== 'segment' || p.source === 'synthesised') continue;
    const attached = namespaces.filter((o) => o.links.some((l) => l.type === 'veth' && l.peer.ns === p.name));
    const cidrs = new Set<string>();
    for (const o of attached)
      for (const l of o.links)
        if (l.type === 'veth' && l.peer.ns === p.name)
          for (const a of o.addrs.filter((x) => x.dev === l.name && x.scope === 'global'))
            cidrs.add(cidrText({ addr: ip4ToInt(a.ip), len: a.len }));
    const routers = attached.filter((o) => o.role === 'router');
    for (const cidr of [...cidrs].sort()) {
      const gw = routers.flatMap((o) => o.addrs).find((a) => inSubnet(a.ip, cidr));
      const gwLink = gw ? routers.flatMap((o) => o.links).find((l) => l.name === gw.dev) : undefined;
      segments.push({ name: p.name, cidr, gateway: gw?.ip, gatewayMac: gwLink?.mac });
    }
  }

  // veths leading outside: their other ends, in one namespace
  const outside = namespaces.flatMap((p) =>
    p.links.flatMap((l) => (l.type === 'veth' && l.peer.ns === OUTSIDE ? [{ p, l }] : [])),
  );
  if (outside.length || outsideExtra.length) {
    const o: PlanNs = {
      name: OUTSIDE,
      role: 'outside',
      source: 'synthesised',
      links: [{ type: 'loopback', name: 'lo', ifindex: 1, mac: '00:00:00:00:00:00', mtu: 65536, up: true }],
      addrs: [],
      sysctls: [],
      neighs: [],
      listeners: [],
    };
    outside.forEach(({ p, l }, i) =>
      o.links.push({
        type: 'veth',
        name: (l as { peer: { name: string } }).peer.name,
        ifindex: i + 2,
        mac: derivedMac(`import/outside/${p.name}/${l.name}`),
        mtu: l.mtu,
        up: true,
        peer: { ns: p.name, name: l.name },
      }),
    );
    for (const l of outsideExtra) o.links.push({ ...l, ifindex: o.links.length + 1 });
    namespaces.push(o);
  }

  // kube-proxy's iptables mode: its Service rules are in the dumped nat tables, imported as they are
  const kubeProxyRules = namespaces.some((p) => /^(\[\d+:\d+\] )?-A KUBE-SERVICES /m.test(p.iptables ?? ''));
  if (kube && kube.services > 0 && !kubeProxyRules)
    c.warn({
      netns: '',
      subject: `kube.json: ${kube.services} Service${kube.services === 1 ? '' : 's'}, but no dumped node has kube-proxy's iptables rules (KUBE-SERVICES)`,
      effect:
        "ClusterIPs are not translated in walks (kube-proxy's IPVS or nftables mode and eBPF Service load balancing are not modelled): walk to a pod's address",
    });
  const name = opts.name ?? 'imported';
  return { name, namespaces, warnings, kube, manifests, segments };
}
