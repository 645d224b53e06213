/**
 * `podwalk matrix`: the reachability truth table of pods × pods for one protocol and port, rows
 * the sources and columns the destinations, `.` reachable and `X` blocked, laid out as the
 * Kubernetes NetworkPolicy e2e tests print theirs (test/e2e/network/netpol truthtable.go,
 * `TruthTable.PrettyPrint`: a header `-` and the destinations, then one line per source, fields
 * separated by tabs, pods as NAMESPACE/NAME).
 *
 * Every cell is the verdict of a real walk (`walk` + `walkOk`: the request delivered and answered
 * the way the protocol wants: SYN-ACK, or the UDP listener's reply), or of a walk between two
 * pods that the model cannot tell apart from the cell's pods. The walks keep no steps (`steps:
 * false`): only their outcome is shown.
 *
 * ## Grouping, and why it is sound
 *
 * Walking every cell costs pods² walks. Most pods are interchangeable: two replicas of one
 * Deployment differ only in their names, addresses and MACs. Pods get the same group when they
 * agree on everything the datapath can use to treat a packet of this protocol and port
 * differently, and one walk per (source group, destination group, relation) decides all the
 * cells of that combination. The relation of two pods is: the same pod (the packet never leaves
 * the pod's lo), two pods on one node (bridged by cni0), or two nodes whose BGP mesh session is up
 * or down (Calico; always up in the flannel modes).
 *
 * A pod's group key is:
 *
 *  1. its node's class: the node's underlay subnet, eth0 MTU and pod CIDR prefix length. The
 *     builder (cni/build.ts, cni/modes.ts) programs every node from these and from per-node
 *     identifiers only (names, addresses, MACs): two nodes of one class get the same devices,
 *     the same routes to every other class (a route per node pod CIDR, through the tunnel, the
 *     node or the subnet's router), the same sysctls and the same plugin chains;
 *  2. whether it listens on the protocol and port (else the answer is a RST or ICMP port
 *     unreachable);
 *  3. NetworkPolicy, in the modes that enforce it (cni/policy.ts compiles each isolated pod's
 *     chains from its selecting policies, matching peers by /32 or CIDR and ports by number):
 *     - as a destination: whether it is isolated for ingress, and which ingress rules of its
 *       selecting policies admit this protocol and port (named ports resolved on the pod);
 *     - as a source: whether it is isolated for egress, and which egress rules of its selecting
 *       policies could admit the port;
 *     - as a peer: for every ingress rule some pod's key lists, whether the rule's peers select
 *       this pod (podSelector/namespaceSelector on its labels and namespace, ipBlock on its
 *       address); for every listed egress rule, whether its peers select the pod and its ports
 *       admit the port on this pod (a named port resolves on the destination).
 *
 * Swapping two pods of one group (their names, addresses, MACs and veths) maps the kernel state
 * onto itself up to rules and entries that match neither pod of a walk: an iptables rule of
 * another pod's address never matches, a route covers the whole pod CIDR. So a walk between
 * (a', b') passes the same decisions as one between (a, b) when a ~ a', b ~ b' and the relation
 * is the same.
 *
 * The argument needs the kernel state to be what the builder programs from the cluster file.
 * Grouping is off when it is not: when commands were applied (`run:`, `--run`), when two devices
 * share an address, or two devices a MAC in one L2 domain, when a pod's address is not a host
 * address inside its node's pod CIDR, or when pod CIDRs overlap each other or an underlay subnet.
 * Then every cell is walked on a cluster built anew (with the commands applied), which is exactly
 * what `podwalk trace FROM TO:PORT` with the same options does.
 *
 * The grouped walks share one cluster. A walk leaves neighbour entries, bridge FDB entries,
 * conntrack entries and sockets behind; in a cluster without the anomalies above none of them
 * changes a later walk's verdict: a cached neighbour or FDB entry is what ARP or learning would
 * find again (no address or MAC is shared), and each pair is walked once, so no conntrack entry
 * or socket of an earlier walk matches its packets, unless its 4-tuple equals an earlier walk's or
 * that walk's reply's (two walks in opposite directions that both drew --port as their source
 * port): such a walk is repeated on a cluster built anew.
 *
 * test/matrix.test.ts checks the grouped matrix against every cell walked on a cluster built
 * anew, on seeded random clusters and on the shipped scenarios.
 */
import type { PodSelector } from '../cluster/selector.ts';
import { selectorSubject } from '../cluster/selector.ts';
import type {
  ClusterSpec,
  CniMode,
  NetworkPolicySpec,
  PolicyPeerSpec,
  PolicyPortSpec,
} from '../cluster/spec.ts';
import type { Cluster, ResolvedPod } from '../cni/build.ts';
import { MODE_INFO } from '../cni/modes.ts';
import { namedPort, peerSelects, selectingPolicies, selectorMatches } from '../cni/policy.ts';
import { dispositionLine } from '../render/text.ts';
import { roleLabel } from '../render/step.ts';
import { prepareCluster } from '../tools/index.ts';
import type { Disposition, PacketRole } from '../trace/types.ts';
import { walk, walkOk } from '../trace/walk.ts';
import { inPrefix, ip4ToInt, prefixMask } from '../wire/addr.ts';
import { sharedAddresses, sharedMacs } from './checks.ts';

export interface MatrixRequest {
  proto: 'tcp' | 'udp';
  port: number;
  /** the rows: pods this selects (default: every pod) */
  from?: PodSelector;
  /** the columns */
  to?: PodSelector;
  /** walk one pair per group of pods the model cannot tell apart (default); false: every cell */
  group?: boolean;
}

/** A walk the matrix made, reduced to its outcome */
export interface CellWalk {
  from: string;
  to: string;
  ok: boolean;
  request: Disposition;
  /** the first packet sent back (SYN-ACK, UDP reply, RST, ICMP error), if any */
  reply?: { role: PacketRole; disposition: Disposition };
}

/**
 * A row in the form the matrix holds it, for renderers (a table of 30,000 pods is 900 million
 * cells, most of them repeats): the row is `template` (a walk per column) with the walks
 * `walks[k]` in the columns `columns[k]` (ascending). Rows of one source group share one
 * template array, so what a renderer makes of a template it can keep, keyed by the array. A
 * template may hold -1 (no walk) only in columns every row that shares it replaces.
 */
export interface RowShape {
  template: Int32Array;
  columns: Int32Array;
  walks: Int32Array;
}

export type Grouping = { used: true; groups: number } | { used: false; reason: string };

export interface Matrix {
  mode: CniMode;
  proto: 'tcp' | 'udp';
  port: number;
  from: readonly ResolvedPod[];
  to: readonly ResolvedPod[];
  walks: readonly CellWalk[];
  /** the index in `walks` of the walk that decides cell (i, j): row i (from), column j (to) */
  walkOf(i: number, j: number): number;
  /** walkOf(i, j) for every column j of row i, into `into` (length: the columns) */
  row(i: number, into: Int32Array): void;
  /** whether each cell of row i is reachable (1: walks[walkOf(i, j)].ok) or blocked (0), into `into` */
  okRow(i: number, into: Uint8Array): void;
  /** row i as a template shared with other rows and the few columns where it differs (see RowShape) */
  rowShape(i: number): RowShape;
  grouping: Grouping;
  /** what the build wants the user to know (policies a flannel mode does not enforce) */
  warnings: readonly string[];
}

export class MatrixError extends Error {}

/** What computeMatrix tells its caller as it goes (bench/matrix-one.ts times the phases with it) */
export interface MatrixHooks {
  /** called when a phase ends: the cluster built, the pods grouped, every walk made */
  phase?(name: 'build' | 'grouping' | 'walks'): void;
}

/** The pods a selector picks, in the cluster's order */
export function selectPods(pods: readonly ResolvedPod[], sel: PodSelector | undefined): ResolvedPod[] {
  if (!sel) return [...pods];
  const expr = { matchExpressions: sel.requirements };
  return pods.filter((p) => selectorMatches(expr, selectorSubject(p)));
}

/** The pod as the Kubernetes e2e tables name it: NAMESPACE/NAME */
export function podString(p: ResolvedPod): string {
  return `${p.namespace}/${p.name}`;
}

/**
 * Why the kernel state may not be what the builder programs from the cluster file alone (then
 * pods cannot be grouped), or undefined
 */
export function groupingObstacle(c: Cluster, run: readonly string[]): string | undefined {
  const commands = c.spec.run.length + run.length;
  if (commands)
    return `${commands} command${commands > 1 ? 's were' : ' was'} applied to the nodes by run: or --run`;
  for (const [ip, where] of sharedAddresses(c)) return `${ip} is assigned to ${where.join(', ')}`;
  for (const [domain, byMac] of sharedMacs(c))
    for (const [mac, where] of byMac)
      return `MAC ${mac} is used by ${where.join(', ')} in one L2 domain (${domain})`;
  const byName = new Map(c.nodes.map((n) => [n.name, n]));
  for (const p of c.pods) {
    const n = byName.get(p.node)!;
    const host = (ip4ToInt(p.ip) & ~prefixMask(n.podLen)) >>> 0;
    const last = 2 ** (32 - n.podLen) - 1;
    // on cni0 the CIDR's network and broadcast addresses are special; Calico's pods are /32s
    const special = c.layout === 'bridge' && (host === 0 || host === last);
    if (!inPrefix(p.ip, n.podNet, n.podLen) || special)
      return `${p.name}'s address ${p.ip} is not a host address of ${n.name}'s pod CIDR ${n.podCIDR}`;
    // a borrowed address has a /32 route of its own on every node: no other pod looks like it
    const lender = c.ipam?.borrowed.get(p.name);
    if (lender) return `${p.name}'s address ${p.ip} is borrowed from ${lender}'s IPAM block`;
  }
  const nets = [
    ...c.nodes.map((n) => ({
      what: `${n.name}'s pod CIDR ${n.podCIDR}`,
      net: ip4ToInt(n.podNet),
      len: n.podLen,
    })),
    ...c.spec.subnets.map((s) => {
      const [a, l] = s.cidr.split('/');
      return { what: `subnet ${s.name} ${s.cidr}`, net: ip4ToInt(a), len: Number(l) };
    }),
  ].sort((a, b) => a.net - b.net || a.len - b.len);
  // sorted by address: a prefix overlaps another iff it covers the next one's address
  for (let i = 0; i + 1 < nets.length; i++) {
    const a = nets[i];
    const b = nets[i + 1];
    if (inPrefix(b.net, a.net, a.len)) return `${a.what} overlaps ${b.what}`;
  }
  return undefined;
}

/* ------------------------------------------------------------ grouping */

interface RuleRef {
  id: number;
  policy: NetworkPolicySpec;
  ports: PolicyPortSpec[];
  peers: PolicyPeerSpec[];
}

/** Does a policy's port list admit (proto, port), named ports resolved on `owner`? */
function portsAdmit(
  ports: readonly PolicyPortSpec[],
  proto: 'tcp' | 'udp',
  port: number,
  owner: ResolvedPod,
): boolean {
  if (ports.length === 0) return true;
  return ports.some((p) => {
    if (p.protocol.toLowerCase() !== proto) return false;
    if (p.port === undefined) return true;
    if (typeof p.port === 'string') return namedPort(owner, p.port, proto) === port;
    return port >= p.port && port <= (p.endPort ?? p.port);
  });
}

/** Could a port list admit (proto, port) for some destination? (named ports depend on it) */
function portsMayAdmit(ports: readonly PolicyPortSpec[], proto: 'tcp' | 'udp', port: number): boolean {
  if (ports.length === 0) return true;
  return ports.some(
    (p) =>
      p.protocol.toLowerCase() === proto &&
      (p.port === undefined ||
        typeof p.port === 'string' ||
        (port >= p.port && port <= (p.endPort ?? p.port))),
  );
}

function inBlock(ip: string, block: { cidr: string; except?: string[] }): boolean {
  const inside = (c: string) => {
    const [a, l] = c.split('/');
    return inPrefix(ip, a, Number(l));
  };
  return inside(block.cidr) && !(block.except ?? []).some(inside);
}

/** Group id of every pod of the cluster (c.pods order) for this protocol and port; see the file comment */
export function podGroups(
  c: Cluster,
  proto: 'tcp' | 'udp',
  port: number,
): { group: Int32Array; count: number } {
  const spec = c.spec;
  const policies = MODE_INFO[c.mode].networkPolicy ? (spec.policies ?? []) : [];
  const rules: Record<'ingress' | 'egress', Map<NetworkPolicySpec, RuleRef[]>> = {
    ingress: new Map(),
    egress: new Map(),
  };
  let nextId = 0;
  for (const dir of ['ingress', 'egress'] as const)
    for (const p of policies)
      rules[dir].set(
        p,
        p[dir].map((r) => ({ id: nextId++, policy: p, ports: r.ports, peers: r.peers })),
      );

  // a peer selector's verdict depends only on the pod's namespace and labels: computed once per combination
  const selMemo = new Map<PolicyPeerSpec, Map<string, boolean>>();
  const labelKey = (p: ResolvedPod) =>
    `${p.namespace}\0${Object.keys(p.labels)
      .sort()
      .map((k) => `${k}=${p.labels[k]}`)
      .join('\0')}`;
  const keys = c.pods.map(labelKey);
  const ruleSelects = (r: RuleRef, pod: ResolvedPod, key: string): boolean =>
    r.peers.length === 0 ||
    r.peers.some((peer) => {
      if (peer.ipBlock) return inBlock(pod.ip, peer.ipBlock);
      let m = selMemo.get(peer);
      if (!m) selMemo.set(peer, (m = new Map()));
      let v = m.get(key);
      if (v === undefined) m.set(key, (v = peerSelects(spec, r.policy, peer, pod)));
      return v;
    });

  // pass 1: each pod as a destination (ingress rules that admit the port) and as a source (egress rules)
  const inRules: (number[] | undefined)[] = [];
  const outRules: (number[] | undefined)[] = [];
  const relevantIn = new Map<number, RuleRef>();
  const relevantOut = new Map<number, RuleRef>();
  for (const pod of c.pods) {
    const isel = policies.length ? selectingPolicies(spec, pod, 'ingress') : [];
    const osel = policies.length ? selectingPolicies(spec, pod, 'egress') : [];
    let ins: number[] | undefined;
    if (isel.length) {
      ins = [];
      for (const p of isel)
        for (const r of rules.ingress.get(p)!)
          if (portsAdmit(r.ports, proto, port, pod)) {
            ins.push(r.id);
            relevantIn.set(r.id, r);
          }
    }
    let outs: number[] | undefined;
    if (osel.length) {
      outs = [];
      for (const p of osel)
        for (const r of rules.egress.get(p)!)
          if (portsMayAdmit(r.ports, proto, port)) {
            outs.push(r.id);
            relevantOut.set(r.id, r);
          }
    }
    inRules.push(ins);
    outRules.push(outs);
  }
  const inList = [...relevantIn.values()].sort((a, b) => a.id - b.id);
  const outList = [...relevantOut.values()].sort((a, b) => a.id - b.id);

  // pass 2: the key
  const nodeClass = new Map(c.nodes.map((n) => [n.name, `${n.subnet}/${n.mtu ?? spec.mtu}/${n.podLen}`]));
  const ids = new Map<string, number>();
  const group = new Int32Array(c.pods.length);
  c.pods.forEach((pod, i) => {
    const listens = pod.listen.some((l) => l.proto === proto && l.port === port);
    let asPeerIn = '';
    for (const r of inList) asPeerIn += ruleSelects(r, pod, keys[i]) ? '1' : '0';
    let asPeerOut = '';
    for (const r of outList)
      asPeerOut += ruleSelects(r, pod, keys[i]) && portsAdmit(r.ports, proto, port, pod) ? '1' : '0';
    const key = [
      nodeClass.get(pod.node),
      listens ? 'L' : '-',
      inRules[i]?.join(',') ?? 'open',
      outRules[i]?.join(',') ?? 'open',
      asPeerIn,
      asPeerOut,
    ].join('|');
    let id = ids.get(key);
    if (id === undefined) ids.set(key, (id = ids.size));
    group[i] = id;
  });
  return { group, count: ids.size };
}

/* ------------------------------------------------------------ the matrix */

const SELF = 0;
const SAME_NODE = 1;
const OTHER_NODE = 2;
const OTHER_NODE_DOWN = 3;
const RELATIONS = 4;

/**
 * A cell needs only its walk's outcome: the walks keep no steps (the same packets through the
 * same code; the dispositions and drops with their counters are those of a recorded walk, which
 * test/matrix.test.ts checks)
 */
const VERDICT = { steps: false } as const;

function summarize(from: string, to: string, w: ReturnType<typeof walk>): CellWalk {
  return {
    from,
    to,
    ok: walkOk(w),
    request: w.request.disposition,
    reply: w.reply && { role: w.reply.flow.role, disposition: w.reply.disposition },
  };
}

/**
 * Build the cluster (with its run: commands and `run`), and walk what the matrix needs. Throws
 * MatrixError when a selector selects no pod; cluster and command errors propagate as they are.
 */
export function computeMatrix(
  spec: ClusterSpec,
  mode: CniMode,
  run: readonly string[],
  req: MatrixRequest,
  hooks: MatrixHooks = {},
): Matrix {
  const c = prepareCluster(spec, mode, run);
  hooks.phase?.('build');
  // the verdicts need no frames: captures would grow with every walk
  c.world.capture = false;
  const from = selectPods(c.pods, req.from);
  const to = selectPods(c.pods, req.to);
  if (!from.length) throw new MatrixError(`--from "${req.from?.text}" selects no pod`);
  if (!to.length) throw new MatrixError(`--to "${req.to?.text}" selects no pod`);

  const walks: CellWalk[] = [];
  const fresh = () => {
    const f = prepareCluster(spec, mode, run);
    f.world.capture = false;
    return f;
  };
  const base = { mode: c.mode, proto: req.proto, port: req.port, from, to, walks, warnings: c.warnings };

  const obstacle = req.group === false ? 'grouping was turned off' : groupingObstacle(c, run);
  if (obstacle !== undefined) {
    // every cell on a cluster of its own: exactly `podwalk trace FROM TO:PORT` with the same options
    const cells = new Int32Array(from.length * to.length);
    for (let i = 0; i < from.length; i++)
      for (let j = 0; j < to.length; j++) {
        const r = { from: from[i].name, to: to[j].name, proto: req.proto, port: req.port };
        walks.push(summarize(r.from, r.to, walk(i + j === 0 ? c : fresh(), r, VERDICT)));
        cells[i * to.length + j] = walks.length - 1;
      }
    hooks.phase?.('walks');
    const row = (i: number, into: Int32Array) => into.set(cells.subarray(i * to.length, (i + 1) * to.length));
    const none = new Int32Array(0);
    return {
      ...base,
      walkOf: (i, j) => cells[i * to.length + j],
      row,
      okRow: okRowOf(walks, row),
      rowShape: (i) => ({
        template: cells.subarray(i * to.length, (i + 1) * to.length),
        columns: none,
        walks: none,
      }),
      grouping: { used: false, reason: obstacle },
    };
  }

  // the walks share this cluster; a walk whose packets would match the conntrack entries or
  // sockets of an earlier one (the same 4-tuple, or its reverse) gets a cluster of its own
  const tuples = new Set<string>();
  const doWalk = (a: ResolvedPod, b: ResolvedPod): number => {
    const r = { from: a.name, to: b.name, proto: req.proto, port: req.port };
    let w = walk(c, r, VERDICT);
    const f = w.request.flow;
    const orig = `${f.src}:${f.sport}>${f.dst}:${f.dport}`;
    if (tuples.has(orig)) w = walk(fresh(), r, VERDICT);
    tuples.add(orig).add(`${f.dst}:${f.dport}>${f.src}:${f.sport}`);
    walks.push(summarize(a.name, b.name, w));
    return walks.length - 1;
  };

  const { group, count: G } = podGroups(c, req.proto, req.port);
  const podIndex = new Map(c.pods.map((p, i) => [p, i]));
  const nodeIndex = new Map(c.nodes.map((n, i) => [n.name, i]));
  const N = c.nodes.length;
  const down = new Set<number>();
  for (const s of c.mesh?.sessions ?? [])
    if (s.state !== 'Established') {
      const a = nodeIndex.get(s.a)!;
      const b = nodeIndex.get(s.b)!;
      down.add(a * N + b).add(b * N + a);
    }

  const fromG = Int32Array.from(from, (p) => group[podIndex.get(p)!]);
  const toG = Int32Array.from(to, (p) => group[podIndex.get(p)!]);
  const fromNode = Int32Array.from(from, (p) => nodeIndex.get(p.node)!);
  const toNode = Int32Array.from(to, (p) => nodeIndex.get(p.node)!);
  const relation = (i: number, j: number): number => {
    if (from[i] === to[j]) return SELF;
    const n = fromNode[i];
    const m = toNode[j];
    return n === m ? SAME_NODE : down.has(n * N + m) ? OTHER_NODE_DOWN : OTHER_NODE;
  };

  // what needs a walk: one representative pair per (source group, destination group, relation) present
  const table = new Int32Array(G * G * RELATIONS).fill(-1);
  const reps: [ResolvedPod, ResolvedPod][] = [];
  const need = (g: number, h: number, rel: number, a: ResolvedPod, b: ResolvedPod) => {
    const k = (g * G + h) * RELATIONS + rel;
    if (table[k] === -1) {
      table[k] = reps.length;
      reps.push([a, b]);
    }
  };
  const has = (g: number, h: number, rel: number) => table[(g * G + h) * RELATIONS + rel] !== -1;

  const inTo = new Set(to);
  const selfColumn = new Map(to.map((p, j) => [p, j]));
  for (let i = 0; i < from.length; i++)
    if (inTo.has(from[i])) need(fromG[i], fromG[i], SELF, from[i], from[i]);

  // per node: its groups on each side, with up to two pods each (two, so that a pair of distinct pods is found)
  const fromOn = Array.from({ length: N }, () => new Map<number, ResolvedPod[]>());
  const toOn = Array.from({ length: N }, () => new Map<number, ResolvedPod[]>());
  const add = (on: Map<number, ResolvedPod[]>, g: number, p: ResolvedPod) => {
    const l = on.get(g);
    if (!l) on.set(g, [p]);
    else if (l.length < 2) l.push(p);
  };
  for (let i = 0; i < from.length; i++) add(fromOn[fromNode[i]], fromG[i], from[i]);
  for (let j = 0; j < to.length; j++) add(toOn[toNode[j]], toG[j], to[j]);

  for (let n = 0; n < N; n++)
    for (const [g, as] of fromOn[n])
      for (const [h, bs] of toOn[n]) {
        if (has(g, h, SAME_NODE)) continue;
        const pair = as.flatMap((a) => bs.filter((b) => b !== a).map((b) => [a, b] as const))[0];
        if (pair) need(g, h, SAME_NODE, pair[0], pair[1]);
      }

  for (const k of down) {
    const n = Math.floor(k / N);
    const m = k % N;
    for (const [g, as] of fromOn[n]) for (const [h, bs] of toOn[m]) need(g, h, OTHER_NODE_DOWN, as[0], bs[0]);
  }

  // across nodes: the first walk between two nodes ARPs across the underlay (a broadcast every
  // node of the segment receives); later walks between them reuse the neighbour entries. So the
  // pairs across nodes are taken among a few hub nodes that host many groups (greedy set cover)
  const rank = hubRanks(N, fromOn, toOn);
  const nodesOf = (on: Map<number, ResolvedPod[]>[]) => {
    const out = Array.from({ length: G }, () => [] as number[]);
    for (let n = 0; n < N; n++) for (const g of on[n].keys()) out[g].push(n);
    for (const l of out) l.sort((a, b) => rank[a] - rank[b]);
    return out;
  };
  const fromNodesOf = nodesOf(fromOn);
  const toNodesOf = nodesOf(toOn);
  for (let g = 0; g < G; g++) {
    if (!fromNodesOf[g].length) continue;
    for (let h = 0; h < G; h++) {
      if (!toNodesOf[h].length) continue;
      search: for (const n of fromNodesOf[g])
        for (const m of toNodesOf[h])
          if (n !== m && !down.has(n * N + m)) {
            need(g, h, OTHER_NODE, fromOn[n].get(g)![0], toOn[m].get(h)![0]);
            break search;
          }
    }
  }

  hooks.phase?.('grouping');
  const walkIds = reps.map(([a, b]) => doWalk(a, b));
  hooks.phase?.('walks');
  const walkAt = (g: number, h: number, rel: number) => walkIds[table[(g * G + h) * RELATIONS + rel]];

  // a row, without a call per cell (the rows of 30,000 pods are 900 million cells): a cell's walk
  // depends on the two groups and the relation, and most cells of a row are on other nodes with
  // the session up, so each source group's row is made once that way (its template), then each
  // row is its group's template with the columns on its own node (its own column among them)
  // and on nodes whose session is down put right
  const columnsOn = Array.from({ length: N }, () => [] as number[]);
  for (let j = 0; j < to.length; j++) columnsOn[toNode[j]].push(j);
  const downOf = Array.from({ length: N }, () => [] as number[]);
  for (const k of down) downOf[Math.floor(k / N)].push(k % N);
  // per source node: the columns its rows replace, ascending (made when a row of the node is first asked for)
  const patchedOn = new Array<Int32Array | undefined>(N);
  const patched = (n: number): Int32Array => {
    let p = patchedOn[n];
    if (!p) {
      p = Int32Array.from(columnsOn[n]);
      if (downOf[n].length) {
        const all = [...p];
        for (const m of downOf[n]) all.push(...columnsOn[m]);
        p = Int32Array.from(all).sort();
      }
      patchedOn[n] = p;
    }
    return p;
  };
  const templates = new Map<number, Int32Array>();
  const template = (g: number): Int32Array => {
    let t = templates.get(g);
    if (!t) {
      t = new Int32Array(to.length);
      // a pair that never occurs across nodes has no walk: its cells are all on one node or down
      for (let j = 0; j < to.length; j++)
        t[j] = table[(g * G + toG[j]) * RELATIONS + OTHER_NODE] === -1 ? -1 : walkAt(g, toG[j], OTHER_NODE);
      templates.set(g, t);
    }
    return t;
  };
  const rowShape = (i: number): RowShape => {
    const g = fromG[i];
    const n = fromNode[i];
    const columns = patched(n);
    const self = selfColumn.get(from[i]);
    const ws = new Int32Array(columns.length);
    for (let k = 0; k < columns.length; k++) {
      const j = columns[k];
      const rel = j === self ? SELF : toNode[j] === n ? SAME_NODE : OTHER_NODE_DOWN;
      ws[k] = walkAt(g, toG[j], rel);
    }
    return { template: template(g), columns, walks: ws };
  };
  const row = (i: number, into: Int32Array) => {
    const { template: t, columns, walks: ws } = rowShape(i);
    into.set(t);
    for (let k = 0; k < columns.length; k++) into[columns[k]] = ws[k];
  };
  return {
    ...base,
    walkOf: (i, j) => walkAt(fromG[i], toG[j], relation(i, j)),
    row,
    okRow: okRowOf(walks, row),
    rowShape,
    grouping: { used: true, groups: new Set([...fromG, ...toG]).size },
  };
}

/** Matrix.okRow from Matrix.row: each cell's walk, then whether it was ok */
function okRowOf(walks: readonly CellWalk[], row: (i: number, into: Int32Array) => void) {
  const ok = Uint8Array.from(walks, (w) => (w.ok ? 1 : 0));
  let ids = new Int32Array(0);
  return (i: number, into: Uint8Array): void => {
    if (ids.length !== into.length) ids = new Int32Array(into.length);
    row(i, ids);
    for (let j = 0; j < into.length; j++) into[j] = ok[ids[j]];
  };
}

/** Greedy set cover: nodes that host the most groups not yet hosted by a better node rank first */
function hubRanks(N: number, ...sides: Map<number, unknown>[][]): Float64Array {
  const groupsOn = Array.from({ length: N }, (_, n) => {
    const s = new Set<number>();
    for (const side of sides) for (const g of side[n].keys()) s.add(g);
    return [...s];
  });
  const rank = new Float64Array(N).fill(Infinity);
  const covered = new Set<number>();
  const total = new Set(groupsOn.flat()).size;
  for (let r = 0; covered.size < total; r++) {
    let best = -1;
    let gain = 0;
    for (let n = 0; n < N; n++) {
      if (rank[n] !== Infinity) continue;
      let k = 0;
      for (const g of groupsOn[n]) if (!covered.has(g)) k++;
      if (k > gain) {
        gain = k;
        best = n;
      }
    }
    if (best < 0) break;
    rank[best] = r;
    for (const g of groupsOn[best]) covered.add(g);
  }
  // the rest in node order, after the hubs
  for (let n = 0; n < N; n++) if (rank[n] === Infinity) rank[n] = N + n;
  return rank;
}

/* ------------------------------------------------------------ output */

/**
 * One line of the truth table per call: the header, then a row per source (TruthTable.PrettyPrint).
 * Returns how many cells there are and how many are blocked.
 */
export function matrixLines(m: Matrix, out: (line: string) => void): { cells: number; blocked: number } {
  out(['-', ...m.to.map(podString)].join('\t'));
  const mark = m.walks.map((w) => (w.ok ? '\t.' : '\tX'));
  const text = rowText((w) => mark[w] ?? '\tX');
  const tally = cellTally(m.walks.length);
  for (let i = 0; i < m.from.length; i++) {
    const shape = m.rowShape(i);
    tally.add(shape);
    out(podString(m.from[i]) + text(shape));
  }
  const decided = tally.done();
  let blocked = 0;
  m.walks.forEach((w, k) => (blocked += w.ok ? 0 : decided[k]));
  return { cells: m.from.length * m.to.length, blocked };
}

/**
 * A row's text from its RowShape: the text of each cell from its walk and column (a -1 walk, which
 * every row replaces, may have any text); a template's text is made once, and a row is that
 * text with the row's own columns spliced in: slices of one string, not a concatenation per
 * cell (a row of 30,000 pods is 60,000 characters).
 */
function rowText(cellText: (walk: number, column: number) => string): (s: RowShape) => string {
  const made = new WeakMap<Int32Array, { text: string; at: Int32Array }>();
  return (s) => {
    let t = made.get(s.template);
    if (!t) {
      const parts = Array.from(s.template, cellText);
      // where each column's text starts
      const at = new Int32Array(parts.length + 1);
      for (let j = 0; j < parts.length; j++) at[j + 1] = at[j] + parts[j].length;
      t = { text: parts.join(''), at };
      made.set(s.template, t);
    }
    let line = '';
    let done = 0;
    for (let k = 0; k < s.columns.length; k++) {
      const j = s.columns[k];
      if (t.at[j] > done) line += t.text.slice(done, t.at[j]);
      line += cellText(s.walks[k], j);
      done = t.at[j + 1];
    }
    return done < t.text.length ? line + t.text.slice(done) : line;
  };
}

/**
 * How many cells each walk decides, added up row by row from RowShapes (a template's count of
 * each walk made once): `done()` returns them, indexed as `walks`
 */
function cellTally(walks: number) {
  // index 0: the template cells without a walk (-1), which the rows' own columns must all replace
  const count = new Float64Array(walks + 1);
  const made = new WeakMap<Int32Array, Float64Array>();
  return {
    add(s: RowShape): void {
      let per = made.get(s.template);
      if (!per) {
        const m = new Map<number, number>();
        for (const w of s.template) m.set(w, (m.get(w) ?? 0) + 1);
        per = Float64Array.from([...m].flat());
        made.set(s.template, per);
      }
      for (let k = 0; k < per.length; k += 2) count[per[k] + 1] += per[k + 1];
      for (let k = 0; k < s.columns.length; k++) {
        count[s.template[s.columns[k]] + 1]--;
        count[s.walks[k] + 1]++;
      }
    },
    done(): Float64Array {
      if (count[0] !== 0) throw new Error(`matrix: ${count[0]} cells of a row template have no walk`);
      return count.subarray(1);
    },
  };
}

/** What the walk that decides a cell ended with, one line */
export function cellWalkLine(w: CellWalk): string {
  if (w.ok) return `reachable: ${roleLabel(w.reply!.role)} ${dispositionLine(w.reply!.disposition)}`;
  if (w.request.kind !== 'delivered') return `blocked: ${dispositionLine(w.request)}`;
  if (!w.reply) return 'blocked: no answer';
  return `blocked: the answer is ${roleLabel(w.reply.role)}, ${dispositionLine(w.reply.disposition)}`;
}

function podJson(p: ResolvedPod) {
  return { pod: podString(p), name: p.name, namespace: p.namespace, node: p.node, ip: p.ip };
}

function dispositionJson(d: Disposition) {
  return d.kind === 'dropped'
    ? { kind: d.kind, reason: d.reason, netns: d.netns, device: d.device, drop: d.drop }
    : d;
}

/**
 * The matrix as one JSON document, written a line at a time (a row of 30,000 cells is one line;
 * the whole document at 1,000 nodes × 30 pods would not fit in one string): `rows[i][j]` is `.` or
 * `X`, `cells[i][j]` the index in `walks` of the walk that decides the cell.
 */
export function matrixJson(m: Matrix, out: (line: string) => void): void {
  const list = (name: string, items: readonly unknown[], last = false) => {
    out(`${JSON.stringify(name)}:[`);
    items.forEach((x, k) => out(JSON.stringify(x) + (k + 1 < items.length ? ',' : '')));
    out(last ? ']' : '],');
  };
  out('{');
  out(`"mode":${JSON.stringify(m.mode)},"proto":${JSON.stringify(m.proto)},"port":${m.port},`);
  list('from', m.from.map(podJson));
  list('to', m.to.map(podJson));
  const mark = m.walks.map((w) => (w.ok ? '.' : 'X'));
  const marks = rowText((w) => mark[w] ?? 'X');
  const tally = cellTally(m.walks.length);
  out('"rows":[');
  for (let i = 0; i < m.from.length; i++) {
    const shape = m.rowShape(i);
    tally.add(shape);
    out(`"${marks(shape)}"${i + 1 < m.from.length ? ',' : ''}`);
  }
  const decided = tally.done();
  out('],');
  out('"cells":[');
  const ids = rowText((w, j) => (j ? `,${w}` : `${w}`));
  for (let i = 0; i < m.from.length; i++) out(`[${ids(m.rowShape(i))}]${i + 1 < m.from.length ? ',' : ''}`);
  out('],');
  list(
    'walks',
    m.walks.map((w, k) => ({
      from: w.from,
      to: w.to,
      ok: w.ok,
      cells: decided[k],
      outcome: cellWalkLine(w),
      request: dispositionJson(w.request),
      reply: w.reply && {
        packet: roleLabel(w.reply.role),
        role: w.reply.role,
        disposition: dispositionJson(w.reply.disposition),
      },
    })),
  );
  out(`"grouping":${JSON.stringify(m.grouping)}`);
  out('}');
}
