/**
 * Cluster-wide checks: invariants a working pod network keeps, read off the kernel state of every
 * node (not the cluster file: what `--run` commands or a real node's dump changed counts). Each
 * violation names the namespace, the object and what to fix.
 */
import { MODE_INFO } from '../cni/modes.ts';
import { nodeBlocks } from '../cni/ipam.ts';
import type { Cluster, ResolvedNode } from '../cni/build.ts';
import { formatRoute, type Fib, type RouteRow } from '../kernel/fib.ts';
import type { Link, Netns, VxlanLink } from '../kernel/objects.ts';
import { inPrefix, ip4ToInt, networkOf, parseCidr } from '../wire/addr.ts';
import { BGP_PORT } from '../wire/index.ts';
import { walk } from '../trace/walk.ts';
import type { Peering } from '../bgp/peering.ts';
import type { SessionPeer } from '../bgp/session.ts';
import { dropText } from '../render/step.ts';

export const CHECKS = [
  'pod-mtu',
  'tunnel-mtu',
  'pod-cidr-overlap',
  'pod-ip-outside-cidr',
  'vxlan-route-without-fdb',
  'missing-pod-route',
  'pod-route-wrong-node',
  'host-gw-across-subnets',
  'router-knows-pods',
  'bgp-session',
  'duplicate-mac',
  'duplicate-ip',
  'ip-forward',
  'link-down',
] as const;
export type CheckName = (typeof CHECKS)[number];

export interface Finding {
  check: CheckName;
  severity: 'problem' | 'warning';
  netns?: string;
  message: string;
  /** what to do about it */
  fix?: string;
}

/**
 * A node's pod networks as the other nodes must route them, each with an address inside to probe:
 * its pod CIDR (cni0's address), or in calico-node's layout each IPAM block it holds (its first).
 */
function podNetsOf(c: Cluster, n: ResolvedNode): { cidr: string; probe: number }[] {
  if (c.layout === 'bridge') return [{ cidr: n.podCIDR, probe: ip4ToInt(n.gateway) }];
  return nodeBlocks(c, n.name).map((cidr) => ({ cidr, probe: parseCidr(cidr).addr }));
}

/**
 * Every node's pod networks as a shared segment of routes (a daemon's lease set, Fib.attach)
 * answers them, once per segment: a node that lists the segment answers a probe as the segment
 * does unless the segment's answer is gone from its table (its own lease, a route removed), one of
 * its own routes as long or longer covers the probe, or the answer's device is not up there. So a
 * node's routes to the other nodes' pods need looking at only where its table differs from the
 * segment (what it stores of its own), and where the segment's answer is itself a finding.
 */
interface SegmentProbes {
  /** the devices of the segment's unicast answers: each must be up on the node */
  devs: Set<string>;
  /** the nodes (indexes, ascending) whose pod networks a node of this segment may route wrongly */
  differing(fib: Fib): number[];
}

function segmentProbes(
  seg: Fib,
  netsOf: readonly { probe: number }[][],
  nodes: readonly ResolvedNode[],
  clean: (r: RouteRow, b: ResolvedNode) => boolean,
): SegmentProbes {
  const devs = new Set<string>();
  const unclean: number[] = [];
  const byPrefix = new Map<string, number[]>();
  const probes: { addr: number; node: number }[] = [];
  let minLen = 33;
  netsOf.forEach((nets, j) => {
    let ok = true;
    for (const { probe } of nets) {
      probes.push({ addr: probe, node: j });
      const r = seg.match(probe);
      if (!r || !r.dev || !clean(r, nodes[j])) {
        ok = false;
        continue;
      }
      devs.add(r.dev);
      minLen = Math.min(minLen, r.len);
      const k = `${r.dst}/${r.len}`;
      (byPrefix.get(k) ?? byPrefix.set(k, []).get(k)!).push(j);
    }
    if (!ok) unclean.push(j);
  });
  probes.sort((x, y) => x.addr - y.addr);
  return {
    devs,
    differing(fib) {
      const out = new Set(unclean);
      // the segment's answer is gone from this table
      fib.scanGone((r) => {
        for (const j of byPrefix.get(`${r.dst}/${r.len}`) ?? []) out.add(j);
      });
      // a route of its own that may win over the segment's answer (a shorter one never does)
      fib.scanOwn((r) => {
        if (r.len < minLen) return;
        const end = r.dst + 2 ** (32 - r.len);
        let lo = 0;
        let hi = probes.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if (probes[mid].addr < r.dst) lo = mid + 1;
          else hi = mid;
        }
        for (let i = lo; i < probes.length && probes[i].addr < end; i++) out.add(probes[i].node);
      });
      return [...out].sort((x, y) => x - y);
    },
  };
}

/**
 * The VXLAN routes of a shared route segment (a daemon's lease set, Fib.attach), by device and
 * gateway: how many rows of each, and their answers on a node whose neighbour table and FDBs are
 * the segments given (each (device, gateway) once: every node that shares them answers the same)
 */
interface VxlanSegment {
  /** rows by device, then gateway */
  rows: Map<string, Map<string, number>>;
  answers: VxlanAnswers[];
}

interface VxlanAnswers {
  neigh: NeighTable;
  /** per device of `rows` (in its order): its FDB's segment, or null where it is no VXLAN device */
  fdbs: (FdbTable | null)[];
  /** the (device, gateway) the segments leave without a neighbour or an FDB entry */
  failing: [string, string][];
  /** the (device, gateway) whose neighbour's MAC each FDB key (`DEV MAC`) answers */
  byMac: Map<string, [string, string][]>;
}

type NeighTable = Netns['neigh'];
type FdbTable = VxlanLink['fdb'];

/**
 * Whether none of a node's VXLAN routes can lack its neighbour or FDB entry, known without reading
 * each route: when its routing table, its neighbour table and its VXLAN devices' FDBs list shared
 * segments, a route of the segment that the node still lists answers as on every node of those
 * segments (worked out once per segment, VxlanSegment) unless the node's own tables differ from
 * the segments for its key: a neighbour or FDB entry of its own, one gone, one it holds an object
 * of. Those routes, the node's own routes and its routes held as objects are checked as the
 * full scan checks them. False: the node's routes need the full scan (it may have a finding, or
 * its tables share no segment).
 */
function vxlanClean(
  node: Netns,
  vxlanOf: (name: string) => VxlanLink | undefined,
  memo: Map<Fib, VxlanSegment>,
): boolean {
  const seg = node.fib.segment;
  if (!seg) return false;
  // the full scan's test of one route (the full scan then says what is wrong)
  const ok = (via: string, devName: string) => {
    const dev = vxlanOf(devName);
    if (!dev || !via) return true;
    const lladdr = node.neigh.peekField(via, dev.name, 'lladdr');
    return !!lladdr && dev.fdb.has(lladdr);
  };
  let rows = memo.get(seg);
  if (!rows) {
    memo.set(seg, (rows = { rows: viaCounts((f) => seg.scan(f)), answers: [] }));
  }
  const devs = [...rows.rows.keys()];
  const fdbs: (FdbTable | null)[] = [];
  for (const d of devs) {
    const dev = vxlanOf(d);
    if (dev && !dev.fdb.segment) return false;
    fdbs.push(dev ? dev.fdb.segment! : null);
  }
  const neigh = node.neigh.segment;
  if (!neigh) return fdbs.every((f) => f === null) && ownRowsOk(node.fib, ok);
  let a = rows.answers.find((x) => x.neigh === neigh && x.fdbs.every((f, i) => f === fdbs[i]));
  if (!a) rows.answers.push((a = vxlanAnswers(rows.rows, neigh, fdbs)));
  if (!ownRowsOk(node.fib, ok)) return false;
  // the segment's routes this table does not list, by device and gateway
  const gone = viaCounts((f) => node.fib.scanGone(f));
  const listed = (dev: string, via: string) =>
    (rows.rows.get(dev)?.get(via) ?? 0) > (gone.get(dev)?.get(via) ?? 0);
  const suspect: [string, string][] = [...a.failing];
  node.neigh.scanDiffering((e) => suspect.push([e.dev, e.ip]));
  devs.forEach((d, i) => {
    if (fdbs[i]) vxlanOf(d)!.fdb.scanDiffering((e) => suspect.push(...(a.byMac.get(`${d} ${e.mac}`) ?? [])));
  });
  return suspect.every(([dev, via]) => !listed(dev, via) || ok(via, dev));
}

/** how many of the routes a scan gives go through each gateway, by device (routes without either left out) */
function viaCounts(scan: (f: (r: RouteRow) => void) => void): Map<string, Map<string, number>> {
  const byDev = new Map<string, Map<string, number>>();
  scan((r) => {
    if (r.dev === undefined || !r.via) return;
    const m = byDev.get(r.dev) ?? byDev.set(r.dev, new Map()).get(r.dev)!;
    m.set(r.via, (m.get(r.via) ?? 0) + 1);
  });
  return byDev;
}

/** a node's own routes and those it holds as objects pass the VXLAN test `ok` */
function ownRowsOk(fib: Fib, ok: (via: string, dev: string) => boolean): boolean {
  let clean = true;
  const test = (r: RouteRow) => {
    if (clean && r.dev !== undefined && r.via !== undefined && !ok(r.via, r.dev)) clean = false;
  };
  fib.scanOwn(test);
  fib.scanObjects(test);
  return clean;
}

/** the answers of a route segment's (device, gateway) keys on a node whose neighbours and FDBs are these segments */
function vxlanAnswers(
  rows: Map<string, Map<string, number>>,
  neigh: NeighTable,
  fdbs: (FdbTable | null)[],
): VxlanAnswers {
  const failing: [string, string][] = [];
  const byMac = new Map<string, [string, string][]>();
  [...rows].forEach(([dev, vias], i) => {
    const fdb = fdbs[i];
    if (!fdb) return;
    for (const via of vias.keys()) {
      const lladdr = neigh.peekField(via, dev, 'lladdr');
      if (!lladdr || !fdb.has(lladdr)) failing.push([dev, via]);
      if (lladdr) {
        const k = `${dev} ${lladdr}`;
        (byMac.get(k) ?? byMac.set(k, []).get(k)!).push([dev, via]);
      }
    }
  });
  return { neigh, fdbs, failing, byMac };
}

/** a namespace's devices by name that `pick` accepts, each looked up once (the routes of a node name a few) */
function devices<L extends Link>(node: Netns, pick: (l: Link) => l is L): (name: string) => L | undefined;
function devices(node: Netns, pick: (l: Link) => boolean): (name: string) => Link | undefined;
function devices(node: Netns, pick: (l: Link) => boolean): (name: string) => Link | undefined {
  const seen = new Map<string, Link | undefined>();
  return (name) => {
    if (seen.has(name)) return seen.get(name);
    const l = node.link(name);
    const v = l && pick(l) ? l : undefined;
    seen.set(name, v);
    return v;
  };
}

export interface CheckResult {
  check: CheckName;
  findings: Finding[];
}

/** the MTU of a node's underlay link: its eth0 and the segment's side of it */
function underlayMtu(c: Cluster, n: ResolvedNode): number {
  const eth0 = c.world.netns.get(n.name)?.link('eth0');
  if (!eth0) return c.spec.mtu;
  const peer =
    eth0.type === 'veth' && eth0.peer ? c.world.netns.get(eth0.peer.netns)?.link(eth0.peer.name) : undefined;
  return Math.min(eth0.mtu, peer?.mtu ?? eth0.mtu);
}

/** the path from a node to another that carries the least: the other node (its index), the limit, and its terms */
interface TightestPath {
  to: number;
  /** underlay MTU − overhead */
  limit: number;
  /** the smaller underlay MTU of the two nodes */
  under: number;
  /** encapsulation overhead between them */
  over: number;
}

/**
 * For every node, the first other node (in node order) to which the path carries the least:
 * min(underlay MTU of both) − the mode's overhead between them, which is the same to every other
 * node, or in the CrossSubnet modes none within the node's subnet. Within a group of nodes of one
 * overhead the least is the node's own underlay MTU, reached by the group's first node, unless a
 * node of the group has a smaller one (then the first with the smallest); so each group needs only
 * its two first nodes and its two smallest MTUs, and a node's groups are all nodes, or its subnet
 * and all the others: linear in the nodes (every pair compared was the same answer in O(n²)).
 */
function tightestPaths(c: Cluster, under: readonly number[]): (TightestPath | undefined)[] {
  const overhead = MODE_INFO[c.mode].overhead;
  const cross = c.mode === 'calico-ipip-crosssubnet' || c.mode === 'calico-vxlan-crosssubnet';
  const bySubnet = new Map<string, Group>();
  c.nodes.forEach((n, i) =>
    addNode(bySubnet.get(n.subnet) ?? bySubnet.set(n.subnet, group()).get(n.subnet)!, i, under[i]),
  );
  // every subnet's outside: the groups before it merged with those after it
  const subnets = [...bySubnet.values()];
  const before = [group()];
  for (const g of subnets) before.push(merge(before[before.length - 1], g));
  const after: Group[] = new Array(subnets.length + 1);
  after[subnets.length] = group();
  for (let k = subnets.length - 1; k >= 0; k--) after[k] = merge(subnets[k], after[k + 1]);
  const all = before[subnets.length];
  const others = new Map([...bySubnet.keys()].map((k, j) => [k, merge(before[j], after[j + 1])]));
  return c.nodes.map((n, i) => {
    const groups: [Group, number][] = cross
      ? [
          [bySubnet.get(n.subnet)!, 0],
          [others.get(n.subnet)!, overhead],
        ]
      : [[all, overhead]];
    let best: TightestPath | undefined;
    for (const [g, over] of groups) {
      const p = tightestIn(g, i, under, over);
      if (p && (!best || p.limit < best.limit || (p.limit === best.limit && p.to < best.to))) best = p;
    }
    return best;
  });
}

/** nodes (indexes) of one overhead: the two first, the two first of the smallest MTU, the next smallest MTU and its first */
interface Group {
  first: number[];
  min: number;
  atMin: number[];
  next: number;
  atNext: number;
}

function group(): Group {
  return { first: [], min: Infinity, atMin: [], next: Infinity, atNext: -1 };
}

/** a node joins a group, in node order */
function addNode(g: Group, i: number, mtu: number): void {
  if (g.first.length < 2) g.first.push(i);
  if (mtu < g.min) {
    g.next = g.min;
    g.atNext = g.atMin[0] ?? -1;
    g.min = mtu;
    g.atMin = [i];
  } else if (mtu === g.min) {
    if (g.atMin.length < 2) g.atMin.push(i);
  } else if (mtu < g.next) {
    g.next = mtu;
    g.atNext = i;
  }
}

/** the group of the nodes of two groups */
function merge(a: Group, b: Group): Group {
  const two = (x: number[], y: number[]) => [...x, ...y].sort((p, q) => p - q).slice(0, 2);
  const min = Math.min(a.min, b.min);
  const atMin = two(a.min === min ? a.atMin : [], b.min === min ? b.atMin : []);
  // the second smallest MTU is one of the groups' two smallest; its first node is among theirs
  let next = Infinity;
  for (const v of [a.min, a.next, b.min, b.next]) if (v > min && v < next) next = v;
  const at = [a, b].flatMap((g) => (g.min === next ? [g.atMin[0]] : g.next === next ? [g.atNext] : []));
  const atNext = next === Infinity ? -1 : Math.min(...at);
  return { first: two(a.first, b.first), min, atMin, next, atNext };
}

/** the tightest path from node `i` within group `g` (`i` itself left out), of overhead `over` */
function tightestIn(g: Group, i: number, under: readonly number[], over: number): TightestPath | undefined {
  const first = g.first[0] === i ? g.first[1] : g.first[0];
  if (first === undefined) return undefined;
  // the smallest MTU among the others, and its first node
  let m = g.min;
  let at = g.atMin[0] === i ? g.atMin[1] : g.atMin[0];
  if (at === undefined) {
    m = g.next;
    at = g.atNext;
  }
  const own = under[i];
  if (at < 0 || m >= own) return { to: first, limit: own - over, under: own, over };
  return { to: at, limit: m - over, under: m, over };
}

/**
 * nodes whose pod CIDRs overlap, each pair once, in node order. Two prefixes overlap when one
 * holds the other, so a sweep over the CIDRs sorted by address (wider first) finds every pair
 * with a stack of the prefixes still open: O(n log n) and the pairs, not every pair of nodes.
 */
export function podCidrOverlaps(c: Cluster): Finding[] {
  const ranges = c.nodes.map((n, i) => {
    const cidr = parseCidr(n.podCIDR, { allowHostBits: true });
    const start = networkOf(cidr);
    return { i, start, end: start + 2 ** (32 - cidr.len) - 1, len: cidr.len };
  });
  ranges.sort((a, b) => a.start - b.start || a.len - b.len || a.i - b.i);
  const pairs: [number, number][] = [];
  const open: typeof ranges = [];
  for (const r of ranges) {
    while (open.length && open[open.length - 1].end < r.start) open.pop();
    for (const o of open) pairs.push(o.i < r.i ? [o.i, r.i] : [r.i, o.i]);
    open.push(r);
  }
  pairs.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  return pairs.map(([i, j]) => ({
    check: 'pod-cidr-overlap',
    severity: 'problem',
    message: `${c.nodes[i].name}'s pod CIDR ${c.nodes[i].podCIDR} overlaps ${c.nodes[j].name}'s ${c.nodes[j].podCIDR}: their pods' addresses are ambiguous`,
    fix: 'give every node a disjoint podCIDR (kube-controller-manager --allocate-node-cidrs, or the IPAM block size)',
  }));
}

/** the same address on two devices of nodes and pods */
export function duplicateIps(c: Cluster): Finding[] {
  return duplicateIpFindings(sharedAddresses(c));
}

/** duplicateIps' findings from sharedAddresses' answer */
function duplicateIpFindings(shared: ReadonlyMap<string, string[]>): Finding[] {
  const out: Finding[] = [];
  // duplicate IPs among the devices of nodes and pods (pod and node addresses are routed cluster-wide)
  for (const [ip, where] of shared)
    out.push({
      check: 'duplicate-ip',
      severity: 'problem',
      message: `${ip} is assigned to ${where.join(', ')}`,
      fix: 'remove the duplicate (a stale IPAM allocation, or an address added by hand)',
    });
  return out;
}

export function runChecks(c: Cluster): CheckResult[] {
  const results = new Map<CheckName, Finding[]>(CHECKS.map((k) => [k, []]));
  const add = (f: Finding) => results.get(f.check)!.push(f);
  const ns = (name: string): Netns | undefined => c.world.netns.get(name);
  const info = MODE_INFO[c.mode];

  // pod MTU against every path its packets can take: per node, its largest pod MTU against the
  // tightest path to another node (see tightestPaths: linear in the nodes, not their pairs)
  const under = c.nodes.map((n) => underlayMtu(c, n));
  // every pod's eth0, looked up once for the pod checks (the checks change no device)
  const podEth0 = c.pods.map((p) => ns(p.name)?.link('eth0'));
  const podsOf = new Map<string, number[]>();
  c.pods.forEach((p, i) => (podsOf.get(p.node) ?? podsOf.set(p.node, []).get(p.node)!).push(i));
  const tightest = tightestPaths(c, under);
  c.nodes.forEach((src, i) => {
    let pod: { name: string; mtu: number } | undefined;
    for (const i of podsOf.get(src.name) ?? []) {
      const mtu = podEth0[i]?.mtu;
      if (mtu !== undefined && (!pod || mtu > pod.mtu)) pod = { name: c.pods[i].name, mtu };
    }
    const worst = tightest[i];
    if (!pod || !worst || pod.mtu <= worst.limit) return;
    add({
      check: 'pod-mtu',
      severity: 'problem',
      netns: src.name,
      message: `${pod.name} (and the other pods of ${src.name}) have MTU ${pod.mtu}, but ${src.name} → ${c.nodes[worst.to].name} carries at most ${worst.limit}: underlay MTU ${worst.under} − ${worst.over} bytes of ${info.encapsulation} overhead`,
      fix: `set the CNI's MTU to ${worst.limit} (flannel: the network config's MTU / --iface-mtu; Calico: veth_mtu in calico-config) and restart the pods`,
    });
  });

  // the tunnel device must fit in the underlay with its own overhead
  if (info.device)
    c.nodes.forEach((n, i) => {
      const tun = ns(n.name)?.link(info.device!);
      if (!tun) return;
      const limit = under[i] - info.overhead;
      if (tun.mtu > limit)
        add({
          check: 'tunnel-mtu',
          severity: 'problem',
          netns: n.name,
          message: `${info.device} on ${n.name} has MTU ${tun.mtu} > underlay ${under[i]} − ${info.overhead}: encapsulated packets do not fit eth0`,
          fix: `ip link set ${info.device} mtu ${limit}`,
        });
    });

  for (const f of podCidrOverlaps(c)) add(f);

  const nodeByName = new Map(c.nodes.map((n) => [n.name, n]));
  for (let i = 0; i < c.pods.length; i++) {
    const p = c.pods[i];
    const node = nodeByName.get(p.node);
    const eth0 = podEth0[i];
    if (!node || !eth0) continue;
    // Calico IPAM lends an address from another node's block: its /32 is announced by BIRD
    const borrowed = c.ipam?.borrowed.has(p.name) ?? false;
    for (const a of eth0.addrs) {
      const inside = inPrefix(a.ip, node.podNet, node.podLen);
      if (!inside && !(borrowed && a.ip === p.ip))
        add({
          check: 'pod-ip-outside-cidr',
          severity: 'problem',
          netns: p.name,
          message: `${p.name} has ${a.ip}/${a.len}, outside ${node.name}'s pod CIDR ${node.podCIDR}: other nodes route that address elsewhere`,
          fix: `let host-local IPAM allocate from ${node.podCIDR}`,
        });
    }
  }

  // VXLAN: every onlink route through a vxlan device needs a neighbour and an FDB entry behind it
  // (flanneld writes them in flannel-vxlan, felix, as calico-node, in calico-vxlan)
  const vxlanDaemon = info.routeDaemon === 'felix' ? 'calico-node' : 'flanneld';
  const vxlanSegments = new Map<Fib, VxlanSegment>();
  for (const n of c.nodes) {
    const node = ns(n.name);
    if (!node) continue;
    // each route read in place, its neighbour's MAC and the FDB's entry looked up by key: no
    // object made of any (every node's every route), the route's only for a finding
    const vxlanOf = devices(node, (l): l is VxlanLink => l.type === 'vxlan');
    if (vxlanClean(node, vxlanOf, vxlanSegments)) continue;
    node.fib.scan((row) => {
      const dev = row.dev !== undefined ? vxlanOf(row.dev) : undefined;
      if (!dev || !row.via) return;
      const via = row.via;
      const lladdr = node.neigh.peekField(via, dev.name, 'lladdr');
      if (lladdr && dev.fdb.has(lladdr)) return;
      const r = row.route();
      const route = formatRoute(r).trim();
      if (!lladdr) {
        add({
          check: 'vxlan-route-without-fdb',
          severity: 'problem',
          netns: n.name,
          message: `\`${route}\` has no neighbour entry for ${r.via} on ${dev.name}: the inner frame has no destination MAC`,
          fix: `restart ${vxlanDaemon} on ${n.name} (it writes \`${r.via} lladdr <VTEP MAC> PERMANENT\`)`,
        });
        return;
      }
      add({
        check: 'vxlan-route-without-fdb',
        severity: 'problem',
        netns: n.name,
        message: `\`${route}\` resolves ${r.via} to ${lladdr}, but ${dev.name}'s FDB has no entry for ${lladdr}: no VTEP to send to`,
        fix: `restart ${vxlanDaemon} on ${n.name} (it writes \`${lladdr} dst <node IP> self permanent\`)`,
      });
    });
  }

  // every node routes every other node's pod CIDR by a route of its own, not its default route
  const byGateway = new Map<string, ResolvedNode>();
  // a node's VTEP address: flannel.1's (its pod CIDR's first), or calico-vxlan's tunnel address from IPAM
  const tunnelOf = (n: ResolvedNode) => c.ipam?.tunnel.get(n.name) ?? n.podNet;
  for (const n of c.nodes) byGateway.set(n.addr, n).set(n.podNet, n).set(tunnelOf(n), n);
  const gateways = new Set(c.spec.subnets.map((x) => x.gateway));
  const netsOf = c.nodes.map((n) => podNetsOf(c, n));
  // a route that is no finding from any node: unicast, not the default, via nothing or via b itself
  const clean = (r: RouteRow, b: ResolvedNode) => {
    const viaNode = r.via ? byGateway.get(r.via) : undefined;
    return (
      r.len > 0 &&
      r.type === 'unicast' &&
      (viaNode === undefined || viaNode === b) &&
      (!r.via || r.via === b.addr || r.via === b.podNet || r.via === tunnelOf(b) || gateways.has(r.via))
    );
  };
  const segments = new Map<Fib, SegmentProbes>();
  for (const a of c.nodes) {
    const node = ns(a.name);
    if (!node) continue;
    const up = devices(node, (l) => l.up);
    const usable = (x: RouteRow) => x.type !== 'unicast' || !!(x.dev && up(x.dev));
    // the nodes whose pod networks this node may route wrongly (in node order), else every node
    let only: number[] | undefined;
    const seg = node.fib.segment;
    if (seg) {
      let sp = segments.get(seg);
      if (!sp) segments.set(seg, (sp = segmentProbes(seg, netsOf, c.nodes, clean)));
      if ([...sp.devs].every((d) => up(d))) only = sp.differing(node.fib);
    }
    for (const j of only ?? c.nodes.keys()) {
      const b = c.nodes[j];
      if (a === b) continue;
      for (const { cidr, probe } of netsOf[j]) {
        // a row read in place: no object of each route read (every node pair), the route's only for a finding
        const r = node.fib.match(probe, usable);
        // a gateway that is another node (its node IP, or its VTEP address) sends the pods' traffic the long way round
        const viaNode = r?.via ? byGateway.get(r.via) : undefined;
        const other = viaNode && viaNode !== a && viaNode !== b ? viaNode : undefined;
        if (r && other)
          add({
            check: 'pod-route-wrong-node',
            severity: 'problem',
            netns: a.name,
            message: `${a.name} routes ${b.name}'s pods (${cidr}) via ${other.name}: \`${formatRoute(r.route()).trim()}\`; the answers come back another way (asymmetric path)`,
            fix: `delete the stale route on ${a.name} so ${info.routeDaemon}'s route to ${b.name} applies`,
          });
        if (
          r?.via &&
          r.len > 0 &&
          !other &&
          r.via !== b.addr &&
          r.via !== b.podNet &&
          r.via !== tunnelOf(b) &&
          !gateways.has(r.via)
        )
          add({
            check: 'pod-route-wrong-node',
            severity: 'problem',
            netns: a.name,
            message: `${a.name} routes ${b.name}'s pods (${cidr}) via ${r.via}, which is not ${b.name}'s address (${b.addr}): \`${formatRoute(r.route()).trim()}\``,
            fix: `a stale route from when ${b.name} had another address: delete it so ${info.routeDaemon} can add the right one`,
          });
        if (!r || r.len === 0 || r.type !== 'unicast')
          add({
            check: 'missing-pod-route',
            severity: 'problem',
            netns: a.name,
            message: `${a.name} has no route to ${b.name}'s pods (${cidr})${r ? `: it would use \`${formatRoute(r.route()).trim()}\`` : ''}`,
            fix:
              info.routeDaemon === 'BIRD'
                ? `check BIRD on ${a.name} and ${b.name} (birdc show protocols; calicoctl node status)`
                : info.routeDaemon === 'felix'
                  ? `check calico-node (felix) on ${a.name}: it adds a route for each node's IPAM block from the datastore, via that node's VTEP (its VXLANTunnelEndpoint)`
                  : `check flanneld on ${a.name}: it adds a route for each node's lease`,
          });
      }
    }
  }

  if (c.mode === 'flannel-host-gw') {
    const subnets = [...new Set(c.nodes.map((n) => n.subnet))];
    if (subnets.length > 1)
      add({
        check: 'host-gw-across-subnets',
        severity: 'problem',
        message: `host-gw routes pod CIDRs via node IPs, so all nodes must share one L2 segment; these nodes span ${subnets.join(', ')}`,
        fix: 'use the vxlan backend (optionally with DirectRouting) for nodes on different subnets',
      });
  }

  // calico-bgp: unencapsulated pod traffic between subnets crosses the router: it must route the pod CIDRs
  if (info.overhead === 0 && c.mesh) {
    const router = ns('router');
    const subnets = new Set(c.nodes.map((n) => n.subnet));
    if (router && subnets.size > 1)
      for (const n of c.nodes)
        for (const { cidr, probe } of podNetsOf(c, n)) {
          const r = router.fib.match(probe);
          if (!r || r.len === 0)
            add({
              check: 'router-knows-pods',
              severity: 'problem',
              netns: 'router',
              message: `the router between the subnets has no route for ${n.name}'s pods (${cidr}), but ${c.mode} sends pod IPs across it unencapsulated`,
              fix: c.mesh
                ? 'peer the routers with BGP (Calico BGPPeer), or use IPIP/VXLAN CrossSubnet'
                : 'add the pod routes to the router, or use an encapsulating backend',
            });
        }
  }

  // each node's peerings and BIRD sessions by peer, indexed once when a session is down
  let bgp:
    | {
        peering: (x: string, y: string) => Peering | undefined;
        cause: (a: string, b: string) => string | undefined;
      }
    | undefined;
  for (const s of c.mesh?.sessions ?? [])
    if (s.state !== 'Established') {
      bgp ??= bgpIndex(c);
      const why = bgp.cause(s.a, s.b);
      // a session with a route reflector: the side whose protocol has `rr client` reflects
      const side = bgp.peering;
      const [rr, client] = side(s.a, s.b)?.rrClusterId
        ? [s.a, s.b]
        : side(s.b, s.a)?.rrClusterId
          ? [s.b, s.a]
          : [];
      if (rr && client) {
        const p = side(client, rr);
        add({
          check: 'bgp-session',
          severity: 'problem',
          netns: client,
          message: `BGP session ${client} ↔ ${rr} (${p?.proto ?? 'not configured'} on ${client}; ${rr} is its route reflector, cluster ID ${side(rr, client)!.rrClusterId}) is ${s.state}${why ? ` (${why})` : ''}: ${client} learns no route through ${rr}, and ${rr} reflects none of ${client}'s`,
          fix: `check TCP 179 between ${client} and ${rr} and BIRD on ${rr} (calicoctl node status on ${client})`,
        });
        continue;
      }
      add({
        check: 'bgp-session',
        severity: 'problem',
        netns: s.a,
        message: `BGP session ${s.a} ↔ ${s.b} is ${s.state}${why ? ` (${why})` : ''}: neither node has the other's pod routes`,
        fix: `check TCP 179 between ${s.a} and ${s.b} and calico-node on both (calicoctl node status)`,
      });
    }

  // duplicate MACs within one L2 domain (a bridge with its ports and what is behind them, or
  // the VXLAN overlay of one VNI); the same MAC in two separate domains is harmless
  // (the MACs and the addresses of every device in one pass over the namespaces)
  const held = sharedMacsAndAddresses(c, true, true);
  for (const [domain, byMac] of held.macs)
    for (const [mac, where] of byMac)
      add({
        check: 'duplicate-mac',
        severity: 'problem',
        message: `MAC ${mac} is used by ${where.join(', ')}, in one L2 domain (${domain})`,
        fix: 'give each device its own MAC (a cloned VM image, or MACs written into a config by hand)',
      });

  for (const f of duplicateIpFindings(held.addresses)) add(f);

  for (const n of c.nodes) {
    const node = ns(n.name);
    if (node && node.sysctl.get('net.ipv4.ip_forward') !== '1')
      add({
        check: 'ip-forward',
        severity: 'problem',
        netns: n.name,
        message: `net.ipv4.ip_forward is 0 on ${n.name}: it cannot route for its pods`,
        fix: `sysctl -w net.ipv4.ip_forward=1 (and persist it in /etc/sysctl.d)`,
      });
  }

  // links of the datapath that are down
  const down = (netns: string, l: Link | undefined, what: string) => {
    if (l && !l.up)
      add({
        check: 'link-down',
        severity: 'problem',
        netns,
        message: `${l.name} (${what}) is DOWN in ${netns}`,
        fix: `ip link set ${l.name} up`,
      });
  };
  for (const n of c.nodes) {
    const node = ns(n.name);
    if (!node) continue;
    down(n.name, node.link('eth0'), 'the underlay');
    down(n.name, node.link('cni0'), "the pods' bridge");
    if (info.device) down(n.name, node.link(info.device), 'the tunnel device');
  }
  const nodeNs = new Map(c.nodes.map((n) => [n.name, ns(n.name)]));
  c.pods.forEach((p, i) => {
    down(
      p.node,
      (nodeNs.has(p.node) ? nodeNs.get(p.node) : ns(p.node))?.link(p.hostVeth),
      `${p.name}'s host veth`,
    );
    down(p.name, podEth0[i], `${p.name}'s interface`);
  });

  return CHECKS.map((k) => ({ check: k, findings: results.get(k)! }));
}

/**
 * Keys (MACs, addresses) met more than once, each with its holders (`NETNS DEV`), in the order the
 * keys were first met: every key's first holder is kept as met (no string made for it), a list
 * is made only when the key is met again (a cluster's devices are many, its duplicates few)
 */
class Shared {
  private readonly first = new Map<string, number>();
  private readonly firstNs: string[] = [];
  private readonly firstDev: string[] = [];
  private readonly lists = new Map<string, { at: number; where: string[] }>();

  add(key: string, netns: string, dev: string): void {
    const i = this.first.get(key);
    if (i === undefined) {
      this.first.set(key, this.firstNs.length);
      this.firstNs.push(netns);
      this.firstDev.push(dev);
      return;
    }
    const l = this.lists.get(key);
    if (l) l.where.push(`${netns} ${dev}`);
    else this.lists.set(key, { at: i, where: [`${this.firstNs[i]} ${this.firstDev[i]}`, `${netns} ${dev}`] });
  }

  /** the keys met more than once with their holders, in the order they were first met */
  entries(): [string, string[]][] {
    return [...this.lists].sort((x, y) => x[1].at - y[1].at).map(([k, v]) => [k, v.where]);
  }
}

/**
 * The MACs used twice or more within one L2 domain of the cluster: a bridge with its ports and the
 * devices behind them (a veth's peer), or the VXLAN overlay of one VNI. Keyed by domain (in the
 * order the domains are met), then MAC (in the order met), with the devices (`NETNS DEV`) that
 * carry the MAC there; a domain without a shared MAC is left out.
 */
export function sharedMacs(c: Cluster): Map<string, Map<string, string[]>> {
  return sharedMacsAndAddresses(c, true, false).macs;
}

/** sharedMacs (`macs`) and sharedAddresses (`addresses`) in one pass over the namespaces' devices; each only when asked for */
function sharedMacsAndAddresses(
  c: Cluster,
  wantMacs: boolean,
  wantAddresses: boolean,
): { macs: Map<string, Map<string, string[]>>; addresses: Map<string, string[]> } {
  const domains = new Map<string, Shared>();
  const domain = (name: string) => domains.get(name) ?? domains.set(name, new Shared()).get(name)!;
  const ips = new Shared();
  for (const n of c.world.netns.values()) {
    const addressed = wantAddresses && (n.role === 'node' || n.role === 'pod');
    if (!addressed && !wantMacs) continue;
    for (const l of n.links.values()) {
      if (addressed)
        for (const addr of l.addrs) if (!addr.ip.startsWith('127.')) ips.add(addr.ip, n.name, l.name);
      if (!wantMacs) continue;
      if (l.type === 'bridge') {
        const d = domain(`bridge ${n.name}/${l.name}`);
        d.add(l.mac, n.name, l.name);
        for (const port of n.links.values()) {
          if (port.master !== l.name) continue;
          d.add(port.mac, n.name, port.name);
          const peer = port.type === 'veth' && port.peer ? c.world.netns.get(port.peer.netns) : undefined;
          const far = peer?.link(port.type === 'veth' ? port.peer!.name : '');
          if (peer && far) d.add(far.mac, peer.name, far.name);
        }
      } else if (l.type === 'vxlan') domain(`vxlan vni ${l.vni}`).add(l.mac, n.name, l.name);
    }
  }
  const out = new Map<string, Map<string, string[]>>();
  for (const [name, d] of domains) {
    const macs = d.entries();
    if (macs.length) out.set(name, new Map(macs));
  }
  return { macs: out, addresses: new Map(ips.entries()) };
}

/**
 * The IPv4 addresses that two or more devices of nodes and pods hold (loopback left out), in the
 * order they are met, with those devices (`NETNS DEV`)
 */
export function sharedAddresses(c: Cluster): Map<string, string[]> {
  return sharedMacsAndAddresses(c, false, true).addresses;
}

export function describeCheck(k: CheckName): string {
  switch (k) {
    case 'pod-mtu':
      return 'pod MTU fits the underlay MTU minus the encapsulation overhead on every path';
    case 'tunnel-mtu':
      return 'the tunnel device MTU fits the underlay';
    case 'pod-cidr-overlap':
      return 'node pod CIDRs do not overlap';
    case 'pod-ip-outside-cidr':
      return "every pod IP is inside its node's pod CIDR";
    case 'vxlan-route-without-fdb':
      return 'every VXLAN route has its neighbour and FDB entries';
    case 'missing-pod-route':
      return "every node routes every other node's pod CIDR";
    case 'pod-route-wrong-node':
      return "every node routes another node's pod CIDR to that node";
    case 'host-gw-across-subnets':
      return 'host-gw nodes share one L2 segment';
    case 'router-knows-pods':
      return 'the router between subnets routes every pod CIDR (unencapsulated modes)';
    case 'bgp-session':
      return 'every BGP session (mesh or route reflector) is Established';
    case 'duplicate-mac':
      return 'no MAC address is used twice';
    case 'duplicate-ip':
      return 'no IP address is assigned twice';
    case 'ip-forward':
      return 'IP forwarding is on on every node';
    case 'link-down':
      return 'eth0, cni0, the tunnel device and every veth are up';
  }
}

/**
 * The mesh's peerings and the BIRD sessions, each node's by peer node (the first of each pair, as
 * a scan in node and configuration order finds it), and bgpCause over them: a session down costs
 * its own probe, not a scan of every session.
 */
function bgpIndex(c: Cluster): {
  peering: (x: string, y: string) => Peering | undefined;
  cause: (a: string, b: string) => string | undefined;
} {
  const key = (x: string, y: string) => `${x}\0${y}`;
  const peerings = new Map<string, Map<string, Peering>>();
  const peersOf = (x: string) => {
    let m = peerings.get(x);
    if (m) return m;
    m = new Map();
    for (const p of c.mesh?.peersOf(x) ?? []) if (!m.has(p.peer.node)) m.set(p.peer.node, p.peering);
    peerings.set(x, m);
    return m;
  };
  const drv = c.bgp;
  const sessions = new Map<string, SessionPeer>();
  for (const s of drv?.all() ?? [])
    if (!sessions.has(key(s.node, s.peerNode))) sessions.set(key(s.node, s.peerNode), s);
  return {
    peering: (x, y) => peersOf(x).get(y),
    cause: (a, b) => (drv ? bgpCause(c, (x, y) => sessions.get(key(x, y)), a, b) : undefined),
  };
}

/**
 * Why a mesh session that runs over the datapath is not Established: what its BIRDs last saw (an
 * error in a NOTIFICATION, Bad Peer AS in an OPEN), else what the connection to the passive side's
 * port 179 meets: a probe SYN from the side that connects is walked, and the drop that stops it or
 * its SYN-ACK (a netfilter rule, no route, a link down) is the cause. A session the cluster file
 * marks down has none to find (undefined).
 */
function bgpCause(
  c: Cluster,
  side: (x: string, y: string) => SessionPeer | undefined,
  a: string,
  b: string,
): string | undefined {
  const sa = side(a, b);
  const sb = side(b, a);
  if (!sa || !sb || sa.disabled || sb.disabled) return undefined;
  const err = [sa, sb].find((s) => s.peer.lastNotification)?.peer.lastNotification;
  // RFC 4271 6.2: OPEN error, Bad Peer AS
  if (err && err.code === 2 && err.subcode === 2)
    return 'AS mismatch: an OPEN named another AS than configured';
  // bgp_start_locked: a direct (single-hop) eBGP session waits, Idle, for its peer to be on a
  // connected subnet: v3.27's mesh writes no multihop
  const waiting = [sa, sb].find((s) => s.peer.config.direct && s.peer.state === 'Idle' && !s.connects);
  if (waiting)
    return `eBGP without multihop (AS ${waiting.peer.config.localAs} to AS ${waiting.peer.config.peerAs}): ${waiting.node}'s BIRD waits for ${waiting.peer.config.peerAddress} to be on one of its subnets (a direct session; the mesh writes no multihop)`;
  const from = sa.peer.config.passive ? sb : sa;
  const to = from === sa ? sb : sa;
  const w = walk(c, { from: from.node, to: to.peer.config.localAddress, proto: 'tcp', port: BGP_PORT });
  for (const t of [w.request, w.reply])
    if (t?.disposition.kind === 'dropped')
      return `TCP ${BGP_PORT} from ${from.node} to ${to.node}: ${t === w.reply ? 'the SYN-ACK ' : ''}${dropText(t.disposition.drop)} on ${t.disposition.netns}`;
  if (err) return `the last error: code ${err.code}/${err.subcode} ${err.sent ? 'sent' : 'received'}`;
  return undefined;
}
