/**
 * Bring a cluster up: the underlay (one L2 segment per subnet, a router between them), every
 * node's host namespace, every pod's namespace wired to cni0 with a veth pair (the bridge
 * plugin + host-local IPAM), kube-proxy's and the CNI's iptables chains, then the CNI mode's
 * daemon programs the routes, neighbours and FDB entries it would program. Nothing below this
 * layer knows which CNI is running.
 */
import type { ClusterSpec, CniMode, ExternalHostSpec, NodeSpec, PodSpec } from '../cluster/spec.ts';
import { cidrText, coveringCidr, inPrefix, intToIp4, ip4ToInt, isValidIp4, parseCidr } from '../wire/addr.ts';
import type { Mesh } from '../bgp/mesh.ts';
import type { BgpDriver } from '../bgp/session.ts';
import type { Netns } from '../kernel/objects.ts';
import {
  addressAdd,
  bridgedNetnsAdd,
  linkAdd,
  linkSetMaster,
  linkSetUp,
  netnsAdd,
  NetlinkError,
  NLM_ADD,
  routeInstall,
  routedNetnsAdd,
  type PortSysctl,
} from '../kernel/netlink.ts';
import {
  clonePlain,
  parseRuleSpec,
  shellSplit,
  type Netfilter,
  type Rule,
  type RuleOrigin,
} from '../kernel/netfilter.ts';
import { Sockets } from '../kernel/sockets.ts';
import { Stack } from '../kernel/stack.ts';
import { derivedMac, derivedMacOf, fmix32, fnv1a, FNV_BASIS, World } from '../kernel/world.ts';
import { CALICO_VXLAN_DEVICE, MODE_INFO, programMode } from './modes.ts';
import { flannelMasqRules } from './flanneld.ts';
import { compilePolicies, type NodePolicy, type PolicyInput, type PolicyRule } from './policy.ts';
import {
  FELIX_MAX_IPSET_SIZE,
  felixFilter,
  felixHashComment,
  felixHashes,
  felixMemo,
  felixOtherTables,
  type FelixFilter,
  type FelixRules,
  type FelixIpset,
  type FelixMemo,
  type FelixOtherTables,
  type FelixPool,
} from './felix.ts';
import { ipsetCreate, ipsetLoad, type IpsetEntry } from '../kernel/ipset.ts';
import { resolveServices, ServiceError, type ResolvedService } from '../proxy/services.ts';
import { applySync, kubeProxySync } from '../proxy/kube-proxy.ts';
import { sha1Hex } from '../wire/sha1.ts';
import { calicoIpam, IpamError, usesCalicoLayout, type IpamResult } from './ipam.ts';

export interface ResolvedPod extends Required<Omit<PodSpec, 'listen' | 'labels'>> {
  listen: PodSpec['listen'];
  /** read only: a pod without labels has NO_LABELS */
  labels: Readonly<Record<string, string>>;
}

/** the labels of every pod the cluster file gives none (one object, frozen: never written) */
const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});

export interface ResolvedNode extends NodeSpec {
  addr: string;
  len: number;
  subnet: string;
  podNet: string;
  podLen: number;
  /** cni0 address: first host of the pod CIDR */
  gateway: string;
}

/** a host on the underlay outside the cluster, as built */
export interface ResolvedExternalHost extends ExternalHostSpec {
  addr: string;
  len: number;
  subnet: string;
}

export interface Cluster {
  spec: ClusterSpec;
  mode: CniMode;
  world: World;
  stack: Stack;
  sockets: Sockets;
  nodes: ResolvedNode[];
  pods: ResolvedPod[];
  /** hosts on the underlay outside the cluster */
  externalHosts: ResolvedExternalHost[];
  podMtu: number;
  mesh?: Mesh;
  /** every node's BIRD, its sessions running over the datapath (calico-* modes) */
  bgp?: BgpDriver;
  /**
   * How the node's pods are wired: `bridge` (cni0: flannel, and the calico-* modes with
   * `calicoLayout: bridge`) or `calico` (calico-node's cali* veths, proxy ARP, /32 routes)
   */
  layout: 'bridge' | 'calico';
  /** Calico IPAM's blocks and allocations (the `calico` layout only) */
  ipam?: IpamResult;
  /** the cluster-wide pod network (what flannel calls Network), the smallest prefix covering all pod CIDRs */
  clusterCidr: string;
  /** the Services as kube-proxy sees them (empty when the cluster file has no services: list) */
  services: ResolvedService[];
  /** kube-proxy runs (the cluster file has a services: list) */
  kubeProxy: boolean;
  /** what the user should know about the build, e.g. policies a mode does not enforce (one line each) */
  warnings: string[];
}

/** the smallest prefix covering all pod CIDRs, at most a /16 (flannel's default Network around the node subnets) */
export function supernet(cidrs: string[]): string {
  const nets = cidrs.map((c) => parseCidr(c, { allowHostBits: true }));
  return cidrText(
    coveringCidr(
      nets.map((c) => c.addr),
      Math.min(16, ...nets.map((c) => c.len)),
    ),
  );
}

function resolveNodes(spec: ClusterSpec): ResolvedNode[] {
  return spec.nodes.map((n) => {
    const ip = parseCidr(n.ip, { allowHostBits: true });
    const pod = parseCidr(n.podCIDR, { allowHostBits: true });
    const sub = spec.subnets.find((s) => s.cidr === cidrText(ip));
    return {
      ...n,
      addr: intToIp4(ip.addr),
      len: ip.len,
      subnet: sub?.name ?? spec.subnets[0].name,
      podNet: intToIp4(pod.addr),
      podLen: pod.len,
      gateway: intToIp4(pod.addr + 1),
    };
  });
}

/** Calico's MAC of every host-side workload veth (dataplane_linux.go sets it on the host end) */
export const CALICO_VETH_MAC = 'ee:ee:ee:ee:ee:ee';
/** The link-local gateway every Calico pod routes through; the host answers its ARP by proxy */
export const CALICO_POD_GATEWAY = '169.254.1.1';

/**
 * libcalico-go's VethNameForWorkload: "cali" + the first 11 hex digits of sha1("NAMESPACE.POD"),
 * one flat string (an array joined: a template literal of 13 characters or more is a cons string
 * over its parts, 32 bytes more in every device, route and table that keeps the name)
 */
export function calicoVethName(namespace: string, pod: string): string {
  return ['cali', sha1Hex(`${namespace}.${pod}`, 11)].join('');
}

/**
 * host-local IPAM (the next free address from .2 upward; MACs and veth names from seeded hashes),
 * or with `ipam` Calico's allocations and its veth names and MAC (a pod's hostVeth and hostVethMac
 * from the cluster file are the bridge plugin's: Calico's CNI plugin names the veth itself)
 */
function resolvePods(spec: ClusterSpec, nodes: ResolvedNode[], ipam?: IpamResult): ResolvedPod[] {
  const taken = new Set(spec.pods.filter((p) => p.ip).map((p) => p.ip!));
  const nodeByName = new Map(nodes.map((n) => [n.name, n]));
  // per node, the host part below which every address is taken: addresses are only ever taken,
  // so the next search starts there, not at .2 again
  const from = new Map<string, number>();
  const clusterSeed = fnv1a('/', fnv1a(spec.name, FNV_BASIS));
  return spec.pods.map((p) => {
    const node = nodeByName.get(p.node)!;
    let ip = ipam ? ipam.podIps.get(p.name) : p.ip;
    if (!ip) {
      const base = ip4ToInt(node.podNet);
      const size = 2 ** (32 - node.podLen);
      for (let i = from.get(node.name) ?? 2; i < size - 1; i++) {
        const cand = intToIp4(base + i);
        if (!taken.has(cand)) {
          ip = cand;
          from.set(node.name, i + 1);
          break;
        }
      }
      if (!ip) throw new BuildError(`pod ${p.name}: no free address left in ${node.podCIDR}`, p.name);
      taken.add(ip);
    }
    // the seed `${spec.name}/${p.name}` hashed piece by piece (FNV-1a reads it character by
    // character): no string made of it, nor of its `/eth0` and `/host` seeds
    const seed = fnv1a(p.name, clusterSeed);
    const namespace = p.namespace ?? 'default';
    return {
      name: p.name,
      node: p.node,
      ip,
      mac: p.mac ?? derivedMacOf(fnv1a('/eth0', seed)),
      hostVeth: ipam
        ? calicoVethName(namespace, p.name)
        : (p.hostVeth ?? `veth${fmix32(seed).toString(16).padStart(8, '0')}`),
      hostVethMac: ipam ? CALICO_VETH_MAC : (p.hostVethMac ?? derivedMacOf(fnv1a('/host', seed))),
      listen: p.listen,
      namespace,
      labels: p.labels ?? NO_LABELS,
      ready: p.ready ?? true,
    };
  });
}

/**
 * Rule specs already parsed, the parsed rule as a template (parsing is a pure function of the
 * spec: every node's chains, and every build of the same cluster, repeat most of them); emptied
 * when it holds PARSED_MAX, so a large cluster's one-off rules cost memory only for a while
 */
const parsed = new Map<string, Rule>();
const PARSED_MAX = 50_000;

function parsedRule(spec: string): Rule {
  let rule = parsed.get(spec);
  if (!rule) {
    rule = parseRuleSpec(shellSplit(spec));
    if (parsed.size >= PARSED_MAX) parsed.clear();
    parsed.set(spec, rule);
  }
  return rule;
}

/**
 * a string of its own: a slice of a longer string (and a concatenation holding one) keeps the whole
 * longer string alive in V8, here the rule's spec, which the rule outlives
 */
function flat(s: string): string {
  const codes: number[] = [];
  for (let i = 0; i < s.length; i++) codes.push(s.charCodeAt(i));
  return String.fromCharCode(...codes);
}

/** felix's hash comment, first in each of its rules: `-m comment --comment "cali:` + 16 characters + `"` */
const HASH_AT = '-m comment --comment "cali:'.length;
const HASH_HOLE = 'x'.repeat(16);
/** the bridge plugin's per-pod rules: `-d IP/32 …` or `-s IP/32 …` */
const POD_ADDR = /^-([ds]) (\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})\/32 /;
const ADDR_HOLE = '10.0.0.1';

/**
 * A rule a program installs in the filter table, from its spec (after `-A CHAIN`): a copy of its
 * own. The specs that differ only in felix's hash comment or in a pod's /32 (every pod of a node
 * has its own) are parsed once as a template with the value left out, which the copy gets back:
 * the comment's text is taken as it is, and a /32 parses to its address and length alone.
 */
function filterRule(r: PolicyRule) {
  const spec = r.spec;
  let out: Rule | undefined;
  if (spec.startsWith('-m comment --comment "cali:') && spec.charCodeAt(HASH_AT + 16) === 34 /* " */) {
    const hash = spec.slice(HASH_AT, HASH_AT + 16);
    if (/^[\w-]{16}$/.test(hash)) {
      out = clonePlain(parsedRule(spec.slice(0, HASH_AT) + HASH_HOLE + spec.slice(HASH_AT + 16)));
      const m = out.matches[0];
      if (m?.kind === 'comment' && m.text === `cali:${HASH_HOLE}`) m.text = flat(`cali:${hash}`);
      else out = undefined;
    }
  } else {
    const a = POD_ADDR.exec(spec);
    const ip = a && isValidIp4(a[2]) && intToIp4(ip4ToInt(a[2])) === a[2] ? ip4ToInt(a[2]) : undefined;
    if (a && ip !== undefined) {
      out = clonePlain(parsedRule(`-${a[1]} ${ADDR_HOLE}/32 ${spec.slice(a[0].length)}`));
      const addr = a[1] === 'd' ? out.dst : out.src;
      if (addr && !addr.neg && addr.v.len === 32 && addr.v.net === ip4ToInt(ADDR_HOLE)) addr.v.net = ip;
      else out = undefined;
    }
  }
  out ??= clonePlain(parsedRule(spec));
  out.origin = r.origin;
  return out;
}

/**
 * A felix rule parsed once, by what follows its hash comment (with HASH_HOLE as the hash): `copies`
 * hold the parts its installed rules share between nodes, frozen; the k-th rule of a node made from
 * it shares copies[k]'s, so no two rules of one namespace share an object (a namespace's netfilter
 * is written as data with a reference for an object met twice)
 */
interface FelixTemplate {
  copies: Rule[];
  /** no statistic match (its `count` changes per packet): its parts can be shared */
  shared: boolean;
}

/**
 * felix's rules by what follows their hash comment, or null when the comment does not parse as a
 * match of its own, first in the rule; emptied when it holds PARSED_MAX
 */
const felixParsed = new Map<string, FelixTemplate | null>();

function deepFreeze<T>(x: T): T {
  if (typeof x === 'object' && x !== null && !Object.isFrozen(x)) {
    for (const v of Object.values(x)) deepFreeze(v);
    Object.freeze(x);
  }
  return x;
}

function felixTemplate(rest: string): FelixTemplate | null {
  let t = felixParsed.get(rest);
  if (t === undefined) {
    const hole = `-m comment --comment "cali:${HASH_HOLE}"`;
    const r = parseRuleSpec(shellSplit(rest ? `${hole} ${rest}` : hole));
    const m = r.matches[0];
    const shared = !r.matches.some((x) => x.kind === 'statistic');
    t =
      m?.kind === 'comment' && m.text === `cali:${HASH_HOLE}`
        ? { copies: [shared ? deepFreeze(r) : r], shared }
        : null;
    if (felixParsed.size >= PARSED_MAX) felixParsed.clear();
    felixParsed.set(rest, t);
  }
  return t;
}

/** where a felix rule's comment gets its hash from: the chain's rules and the rule's place in them */
const HASHES = Symbol('felix rules');
const AT = Symbol('rule index');
interface LazyComment {
  kind: 'comment';
  text: string;
  [HASHES]: FelixRules;
  [AT]: number;
}

/**
 * A felix hash comment's text, `cali:` + the rule's hash: made when first read (the whole chain's
 * hashes at once, felixHashes), so a rule nothing prints costs no SHA-224. The text is an own
 * enumerable property like any match's (read, copied, serialized and compared as one); it has no
 * setter: the comment is shared and frozen like the rule's other parts, and writing it throws.
 */
const LAZY_TEXT: PropertyDescriptor = {
  get(this: LazyComment): string {
    return `cali:${felixHashes(this[HASHES])[this[AT]]}`;
  },
  enumerable: true,
  configurable: true,
};

/**
 * Rule `i`'s hash comment, made once for the chain's rules and frozen: the nodes that share a chain
 * (felix's static, policy and profile chains, the jumps into them: one each a node) share its
 * comments, as they share the rules' other parts
 */
function lazyComment(rules: FelixRules, i: number): LazyComment {
  const made = (rules.comments ??= []) as LazyComment[];
  let m = made[i];
  if (!m) {
    m = { kind: 'comment' } as LazyComment;
    Object.defineProperty(m, 'text', LAZY_TEXT);
    Object.defineProperty(m, HASHES, { value: rules });
    Object.defineProperty(m, AT, { value: i });
    made[i] = Object.freeze(m);
  }
  return m;
}

/** a rule of its own with a template's parts: its keys in the template's order (what clonePlain keeps), origin to come last */
function shallowRule(parts: Rule): Rule {
  const out = {} as Record<string, unknown>;
  for (const key in parts) {
    const v = (parts as unknown as Record<string, unknown>)[key];
    if (v !== undefined) out[key] = v;
  }
  return out as unknown as Rule;
}

/**
 * A dispatch chain's rule for one workload interface, `--in-interface caliX --goto cali-fw-caliX`
 * (`--out-interface`, `cali-tw-`): two a pod, each unique, so not parsed one by one but made from
 * one template with a placeholder interface and chain, which get the rule's own (a Calico veth name
 * is `cali` and 11 hex digits: always a valid interface name, and `cali-fw-` + it a chain name)
 */
const DISPATCH = /^--(in|out)-interface (cali[0-9a-f]{11}) --goto (cali-[ft]w-cali[0-9a-f]{11})$/;
const IFACE_HOLE = 'cali00000000000';

function dispatchRule(
  inbound: boolean,
  iface: string,
  chain: string,
  rules: FelixRules,
  i: number,
): Rule | null {
  const hole = `${chain.slice(0, 'cali-fw-'.length)}${IFACE_HOLE}`;
  const t = felixTemplate(`--${inbound ? 'in' : 'out'}-interface ${IFACE_HOLE} --goto ${hole}`);
  const parts = t?.copies[0];
  const dev = inbound ? parts?.in : parts?.out;
  if (!t?.shared || !parts || dev?.v !== IFACE_HOLE || dev.neg || parts.target?.kind !== 'goto') return null;
  if (parts.target.chain !== hole || parts.matches.length !== 1) return null;
  // the interface and the target the rule's own
  const rule = shallowRule(parts);
  if (inbound) rule.in = { ...dev, v: iface };
  else rule.out = { ...dev, v: iface };
  rule.target = { ...parts.target, chain };
  rule.matches = [lazyComment(rules, i)];
  return rule;
}

/**
 * felix's rule `i` of a chain, as it is installed on a node: the parsed rule of what follows its hash
 * comment (felixTemplate), its addresses, interfaces, matches and target shared with the same rule
 * of the other nodes (frozen: what changes an installed rule's part replaces it, copy on write), its
 * own counters, origin and list of matches, the first its hash comment, whose text is made when
 * first read (lazyComment). `uses` counts the node's rules made from each template. A rule whose
 * comment would not parse that way is made from its whole spec.
 */
function felixRule(rules: FelixRules, i: number, uses: Map<FelixTemplate, number>): Rule {
  const rest = rules.rests[i];
  const origin = rules.origins[i];
  const d = DISPATCH.exec(rest);
  if (d) {
    const own = dispatchRule(d[1] === 'in', d[2], d[3], rules, i);
    if (own) {
      own.origin = origin;
      return own;
    }
  }
  const t = felixTemplate(rest);
  if (!t) {
    const hash = felixHashComment(rules, i);
    return filterRule({ spec: rest ? `${hash} ${rest}` : hash, origin });
  }
  if (!t.shared) {
    const own = clonePlain(t.copies[0]);
    own.matches[0] = lazyComment(rules, i);
    own.origin = origin;
    return own;
  }
  const k = uses.get(t) ?? 0;
  uses.set(t, k + 1);
  const parts = (t.copies[k] ??= deepFreeze(clonePlain(t.copies[0])));
  const rule = shallowRule(parts);
  rule.matches = parts.matches.slice();
  rule.matches[0] = lazyComment(rules, i);
  rule.origin = origin;
  return rule;
}

/**
 * kube-proxy's FORWARD chain, as the article's nodes show, and in the bridge layout the CNI
 * firewall plugin's (Calico's own CNI configuration has no firewall plugin: felix's chains, see
 * programFelix, take its place)
 */
function programFilter(
  nf: Netfilter,
  clusterCidr: string,
  /** the pods of this node */
  pods: readonly ResolvedPod[],
  flannel: boolean,
  policy: NodePolicy | undefined,
  firewallPlugin: boolean,
): void {
  const add = (chain: string, spec: string, origin: RuleOrigin) =>
    nf.append('filter', chain, filterRule({ spec, origin }));
  const kube = (purpose: string): RuleOrigin => ({ kind: 'kube-proxy', purpose });
  const plugin = (purpose: string, pod?: string): RuleOrigin => ({
    kind: 'cni',
    component: 'bridge-plugin',
    purpose,
    pod,
  });
  const flanneld: RuleOrigin = { kind: 'cni', component: 'flanneld', purpose: 'forward the pod network' };
  nf.newChain('filter', 'KUBE-FORWARD');
  add('FORWARD', '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD', kube('jump'));
  if (firewallPlugin) {
    nf.newChain('filter', 'CNI-FORWARD');
    add('FORWARD', '-m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD', plugin('jump'));
  }
  add('KUBE-FORWARD', '-m conntrack --ctstate INVALID -j DROP', kube('drop invalid'));
  add(
    'KUBE-FORWARD',
    '-m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT',
    kube('accept marked for masquerade'),
  );
  add(
    'KUBE-FORWARD',
    '-m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    kube('accept established'),
  );
  // the policy agent's chains (policy.ts): jumped to before the plugin accepts anything
  for (const c of policy?.chains ?? []) {
    nf.newChain('filter', c.name);
    for (const r of c.rules) add(c.name, r.spec, r.origin);
  }
  for (const r of policy?.forward ?? []) add('CNI-FORWARD', r.spec, r.origin);
  for (const r of policy?.input ?? []) add('INPUT', r.spec, r.origin);
  for (const p of firewallPlugin ? pods : []) {
    const pod = `${p.namespace}/${p.name}`;
    add(
      'CNI-FORWARD',
      `-d ${p.ip}/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
      plugin('accept established to the pod', pod),
    );
    add('CNI-FORWARD', `-s ${p.ip}/32 -j ACCEPT`, plugin('accept from the pod', pod));
  }
  if (flannel) {
    nf.newChain('filter', 'FLANNEL-FWD');
    add('FORWARD', '-m comment --comment "flanneld forward" -j FLANNEL-FWD', flanneld);
    add('FLANNEL-FWD', `-s ${clusterCidr} -m comment --comment "flanneld forward" -j ACCEPT`, flanneld);
    add('FLANNEL-FWD', `-d ${clusterCidr} -m comment --comment "flanneld forward" -j ACCEPT`, flanneld);
  }
}

/** flanneld's FLANNEL-POSTRTG (flanneld.ts): the chain cleared (created), then its rules appended */
function programFlannelMasq(nf: Netfilter, network: string, podCidr: string): void {
  nf.newChain('nat', 'FLANNEL-POSTRTG');
  for (const r of flannelMasqRules(network, podCidr)) nf.append('nat', r.chain, filterRule(r));
}

/** a felix set's members as the kernel's elements, made once per set (felix's sets are the build's, shared by its nodes) */
const entriesOf = new WeakMap<FelixIpset, IpsetEntry[]>();

function ipsetEntries(s: FelixIpset): IpsetEntry[] {
  let e = entriesOf.get(s);
  if (!e)
    entriesOf.set(
      s,
      (e = s.members.map((m) => ({
        ip: ip4ToInt(m.ip),
        cidr: m.cidr ?? 32,
        proto: m.proto === 'udp' ? 17 : m.proto ? 6 : 0,
        port: m.port ?? 0,
      }))),
    );
  return e;
}

/**
 * Felix's tables on a node (felix.ts): its IP sets, its filter chains, its jumps inserted at the top
 * of INPUT, FORWARD and OUTPUT (insert mode keeps them above kube-proxy's), its accept of the accept
 * mark appended to FORWARD, its raw, mangle and nat chains. Queued once kube-proxy has programmed
 * the node, run at the node's first netfilter read or write (Netns.netfilterLater).
 */
function programFelix(w: World, ns: Netns, nf: Netfilter, f: FelixFilter, other: FelixOtherTables): void {
  // felix's `ipset restore` first (its IP set manager applies before the iptables tables that use
  // them); the masquerade manager's sets exist from felix's start
  for (const s of [...other.ipsets, ...f.ipsets]) {
    ipsetCreate(nf, {
      name: s.name,
      type: s.type,
      maxelem: FELIX_MAX_IPSET_SIZE,
      initval: w.derive('ipset-initval', ns.name, s.name),
    });
    // the same members on every node: one list, which the nodes' sets share until one changes
    ipsetLoad(nf, s.name, ipsetEntries(s));
  }
  for (const c of f.chains) nf.newChain('filter', c.name);
  const uses = new Map<FelixTemplate, number>();
  // felix commits the table in one iptables-restore, which the kernel checks as a whole; here each
  // rule is checked as it comes (Netfilter.refuses walks the chains its jump reaches). The jumps
  // into felix's chains come first, then each chain is filled before the chains it jumps to (from
  // the top down), so a rule is checked against the hooks that reach its chain while the chains it
  // jumps to are still empty: the same table in the end as chains first and jumps last, without
  // the last jumps' checks walking all ~670 rules of the node.
  const chains = new Map(f.chains.map((c) => [c.name, c.rules]));
  const fill = (name: string) => {
    const rules = chains.get(name);
    if (!rules) return;
    chains.delete(name);
    const made: Rule[] = [];
    for (let i = 0; i < rules.rests.length; i++) {
      made.push(felixRule(rules, i, uses));
      nf.append('filter', name, made[i]);
    }
    for (const r of made) if (r.target?.kind === 'jump' || r.target?.kind === 'goto') fill(r.target.chain);
  };
  for (const { chain, rules } of f.insert)
    for (let i = 0; i < rules.rests.length; i++) {
      const r = felixRule(rules, i, uses);
      nf.insert('filter', chain, i, r);
      if (r.target?.kind === 'jump') fill(r.target.chain);
    }
  // any chain no jump from the builtins reaches (felix programs only chains a rule refers to), in its order
  for (const name of [...chains.keys()]) fill(name);
  for (let i = 0; i < f.append.rests.length; i++)
    nf.append('filter', 'FORWARD', felixRule(f.append, i, uses));
  for (const t of other.tables) {
    for (const c of t.chains) nf.newChain(t.table, c.name);
    for (const c of t.chains) for (const r of c.rules) nf.append(t.table, c.name, filterRule(r));
    for (const { chain, rules } of t.insert)
      rules.forEach((r, i) => nf.insert(t.table, chain, i, filterRule(r)));
  }
}

/**
 * What Calico's CNI plugin does on the host end of a workload's veth (cni-plugin
 * pkg/dataplane/linux/dataplane_linux.go configureSysctls, Calico v3.27), in its order:
 * route_localnet=1, neigh proxy_delay=0, proxy_arp=1, forwarding=1.
 */
const CALICO_PORT_SYSCTLS: readonly PortSysctl[] = [
  { table: 'conf', knob: 'route_localnet', value: '1' },
  { table: 'neigh', knob: 'proxy_delay', value: '0' },
  { table: 'conf', knob: 'proxy_arp', value: '1' },
  { table: 'conf', knob: 'forwarding', value: '1' },
];

/** A cluster that cannot be brought up as described; `pod`: the pod it is about, `service`: the index of the Service */
export class BuildError extends Error {
  constructor(
    message: string,
    readonly pod?: string,
    readonly service?: number,
  ) {
    super(message);
  }
}

/** how a build runs (not what it builds: every option gives the same built state) */
export interface BuildOptions {
  /**
   * the build's BGP traffic (BIRD's sessions converging): `quiet` (the default) walks it without
   * keeping what only a trace reader needs (steps, captures: quiesce clears the captures anyway);
   * `recorded` keeps them as any walk does: the reference test/bgp-quiet.test.ts compares with
   */
  bgpWalk?: 'quiet' | 'recorded';
  /** called with the cluster as the build's BGP traffic left it, before quiesce clears what it left */
  converged?: (c: Cluster) => void;
  /**
   * every node's netfilter tables (felix's, the firewall plugin's, flanneld's, kube-proxy's FORWARD
   * chain, the policy agent's) programmed during the build, not when a node's netfilter is first
   * read or written (Netns.netfilterLater): the reference test/felix-lazy.test.ts and
   * test/filter-lazy.test.ts compare with
   */
  tablesNow?: boolean;
}

/**
 * Bring the cluster up as its CNI would. The spec's `run:` commands are not applied here: they
 * are commands of the emulated tools, a layer above (tools/index.ts prepareCluster).
 */
export function buildCluster(spec: ClusterSpec, mode: CniMode = spec.cni, opts: BuildOptions = {}): Cluster {
  try {
    return build(spec, mode, opts);
  } catch (e) {
    // a kernel refusal while programming the nodes is a cluster that cannot be brought up as described
    if (e instanceof NetlinkError)
      throw new BuildError(`cluster "${spec.name}" (${mode}): the kernel refused a step: ${e.message}`);
    if (e instanceof ServiceError) throw new BuildError(e.message, undefined, e.index);
    if (e instanceof IpamError) throw new BuildError(e.message, e.pod);
    throw e;
  }
}

function build(spec: ClusterSpec, mode: CniMode, opts: BuildOptions): Cluster {
  // every name is a network namespace: segments, the router, nodes and pods share one namespace of names
  const names = [
    ...spec.subnets.map((s) => s.name),
    ...(spec.subnets.some((s) => s.gateway) ? ['router'] : []),
    ...spec.nodes.map((n) => n.name),
    ...spec.pods.map((p) => p.name),
    ...(spec.externalHosts ?? []).map((h) => h.name),
  ];
  const seen = new Set<string>();
  const dup = names.find((n) => (seen.has(n) ? true : (seen.add(n), false)));
  if (dup)
    throw new BuildError(
      `the name "${dup}" is used twice (subnets, the router, nodes, pods and external hosts each get a network namespace of that name)`,
    );
  const world = new World(spec.name);
  const stack = new Stack(world);
  const sockets = new Sockets(stack);
  const info = MODE_INFO[mode];
  const podMtu = spec.podMtu ?? spec.mtu - info.overhead;
  const nodes = resolveNodes(spec);
  const layout = usesCalicoLayout(spec, mode) ? 'calico' : 'bridge';
  const ipam = layout === 'calico' ? calicoIpam(spec, nodes, mode !== 'calico-bgp') : undefined;
  const pods = resolvePods(spec, nodes, ipam);
  const clusterCidr = supernet(spec.nodes.map((n) => n.podCIDR));
  const mac = (...parts: string[]) => derivedMac([spec.name, ...parts].join('/'));

  // underlay: a namespace per segment holding a bridge that plays the switch
  for (const s of spec.subnets) {
    const seg = netnsAdd(world, s.name, 'segment');
    linkAdd(world, seg, { type: 'bridge', name: s.name, mac: mac('segment', s.name), mtu: spec.mtu });
    linkSetUp(world, seg, s.name, true);
  }
  const gatewaySubnets = spec.subnets.filter((s) => s.gateway);
  if (gatewaySubnets.length) {
    const router = netnsAdd(world, 'router', 'router');
    router.setSysctl('net.ipv4.ip_forward', '1');
    gatewaySubnets.forEach((s, i) => {
      const seg = world.ns(s.name);
      const leg = `eth${i}`;
      linkAdd(world, router, {
        type: 'veth',
        name: leg,
        mac: s.gatewayMac ?? mac('router', leg),
        mtu: spec.mtu,
        peer: { netns: seg, name: 'router', mac: mac('segment', s.name, 'router'), mtu: spec.mtu },
      });
      linkSetMaster(world, seg, 'router', s.name);
      linkSetUp(world, seg, 'router', true);
      linkSetUp(world, router, leg, true);
      addressAdd(router, leg, s.gateway!, parseCidr(s.cidr).len);
    });
  }

  for (const n of nodes) addNode(world, spec, n, layout, podMtu);

  const externalHosts = (spec.externalHosts ?? []).map((h) => addExternalHost(world, spec, h));

  const nodeByName = new Map(nodes.map((n) => [n.name, n]));
  for (let i = 0; i < pods.length;) i = addPods(world, pods, i, nodeByName, layout, podMtu);

  const warnings: string[] = [];
  const policies = spec.policies ?? [];
  let compiled = new Map<string, NodePolicy>();
  // felix compiles the policies into its own chains in Calico's layout; the article's bridge picture keeps PW-IN/PW-OUT
  if (info.networkPolicy) {
    if (layout !== 'calico') compiled = compilePolicies(spec, pods);
  } else if (policies.length > 0) {
    const n = policies.length;
    warnings.push(
      `${mode} does not enforce NetworkPolicy: ${n === 1 ? '1 policy is' : `${n} policies are`} not applied ` +
        `(${policies.map((p) => `${p.namespace}/${p.name}`).join(', ')}); a calico-* mode enforces them`,
    );
  }
  const kubeProxy = spec.services !== undefined;
  const services = kubeProxy
    ? resolveServices(spec.services!, pods, spec.serviceCIDR, spec.endpointSlices)
    : [];
  const cluster: Cluster = {
    spec,
    mode,
    world,
    stack,
    sockets,
    nodes,
    pods,
    externalHosts,
    podMtu,
    layout,
    ...(ipam ? { ipam } : {}),
    clusterCidr,
    warnings,
    services,
    kubeProxy,
  };
  const podsOf = podsByNode(nodes, pods);
  // each node's filter table (kube-proxy's FORWARD chain, the firewall plugin's and flanneld's
  // rules, the policy agent's chains) made when first read or written (Netns.netfilterLater), as
  // felix's below: doctor's checks read no node's rules, a walk only those of the nodes it crosses
  for (const n of nodes)
    queueTable(
      world.ns(n.name),
      programFilter,
      clusterCidr,
      podsOf.get(n.name)!,
      mode.startsWith('flannel'),
      compiled.get(n.name),
      layout !== 'calico',
    );
  programMode(cluster, opts);
  // flanneld's --ip-masq (kube-flannel.yml passes it): its masquerade of what leaves the Network
  if (mode.startsWith('flannel') && (spec.flannel?.ipMasq ?? true))
    for (const n of nodes) queueTable(world.ns(n.name), programFlannelMasq, clusterCidr, n.podCIDR);
  // kube-proxy starts on each node once the CNI is up: localhost node ports need route_localnet
  if (kubeProxy)
    for (const n of nodes) {
      const ns = world.ns(n.name);
      ns.setSysctl('net.ipv4.conf.all.route_localnet', '1');
      applySync(ns.netfilter, kubeProxySync({ node: n.name, clusterCidr }, services));
    }
  // calico-node's felix, in every Calico mode laid out as Calico lays it out
  if (layout === 'calico') {
    const memo = felixMemo();
    // the one pool: the cluster's pod network, natOutgoing as the IPPool says (Calico's default: on)
    const pools = [{ cidr: clusterCidr, natOutgoing: spec.ipPool?.natOutgoing ?? true }];
    // the policies and namespaces as they are now (the build's input; a later change to the spec is not felix's)
    const input = { namespaces: spec.namespaces, policies: spec.policies };
    // each node's tables made when first read or written (Netns.netfilterLater): a walk reads only
    // the nodes it passes through; a tool, a dump or doctor the nodes it reads, and those get the
    // same table as made here at once
    const felix: FelixInput = { world, input, pods, memo, pools };
    for (const n of nodes) {
      const ns = world.ns(n.name);
      queueFelix(felix, ns, podsOf.get(n.name)!, felixTunnels(cluster, n.name));
    }
  }
  if (opts.tablesNow) for (const n of nodes) void world.ns(n.name).netfilter;
  return cluster;
}

/**
 * A node: its namespace on its segment's switch (eth0 addressed, the subnet's default route,
 * forwarding on) and, in the bridge layout, the bridge plugin's cni0. A function of its own, not
 * a loop body of build(): V8 compiles it once, where a loop in build() made it recompile all of
 * build() on stack (OSR) in every build.
 */
function addNode(
  world: World,
  spec: ClusterSpec,
  n: ResolvedNode,
  layout: Cluster['layout'],
  podMtu: number,
): void {
  const mac = (...parts: string[]) => derivedMac([spec.name, ...parts].join('/'));
  const ns = netnsAdd(world, n.name, 'node');
  const seg = world.ns(n.subnet);
  const port = n.name.slice(0, 15);
  const mtu = n.mtu ?? spec.mtu;
  linkAdd(world, ns, {
    type: 'veth',
    name: 'eth0',
    mac: n.mac ?? mac(n.name, 'eth0'),
    mtu,
    peer: { netns: seg, name: port, mac: mac('segment', n.subnet, n.name), mtu },
  });
  linkSetMaster(world, seg, port, n.subnet);
  linkSetUp(world, seg, port, true);
  linkSetUp(world, ns, 'eth0', true);
  addressAdd(ns, 'eth0', n.addr, n.len);
  const sub = spec.subnets.find((s) => s.name === n.subnet);
  if (sub?.gateway) routeInstall(ns, { prefix: 'default', via: sub.gateway, dev: 'eth0', nl: NLM_ADD });
  ns.setSysctl('net.ipv4.ip_forward', '1');
  ns.setSysctl('net.bridge.bridge-nf-call-iptables', '1');

  if (layout === 'calico') return;
  // the bridge plugin: cni0 with the pod gateway address
  linkAdd(world, ns, {
    type: 'bridge',
    name: 'cni0',
    mac: n.bridgeMac ?? mac(n.name, 'cni0'),
    mtu: podMtu,
  });
  linkSetUp(world, ns, 'cni0', true);
  addressAdd(ns, 'cni0', n.gateway, n.podLen);
}

/**
 * The pods of the node of `pods[i]` that follow it in the cluster file's order, made at once;
 * the index after them. A function of its own, as addNode.
 */
function addPods(
  world: World,
  pods: readonly ResolvedPod[],
  i: number,
  nodeByName: ReadonlyMap<string, ResolvedNode>,
  layout: Cluster['layout'],
  podMtu: number,
): number {
  const node = nodeByName.get(pods[i].node)!;
  const host = world.ns(node.name);
  // the next pods of the same node at once (in the cluster file's order); each request written
  // out field by field: an object spread then extended (`{ ...veth(p), ip }`) cost ~5 µs a pod in
  // V8 (150 ms for 30,000 against 4 ms written out)
  let j = i;
  while (j < pods.length && pods[j].node === node.name) j++;
  const run = pods.slice(i, j);
  if (layout === 'calico') {
    // Calico's CNI plugin (dataplane_linux.go DoNetworking, Calico v3.27): in the pod, both ends
    // set up there (the host end moved out, which downs it), `169.254.1.1 dev eth0 scope link`,
    // `default via 169.254.1.1 dev eth0` and the address as a /32; on the host end its sysctls,
    // the link up, then SetupRoutes: `<pod IP> dev cali… scope link`. Every route is added
    // without a protocol (vishvananda/netlink's RTPROT_BOOT, which `ip route` does not print).
    const made = routedNetnsAdd(
      world,
      host,
      run.map((p) => ({
        name: p.name,
        role: 'pod' as const,
        dev: 'eth0',
        mac: p.mac,
        port: p.hostVeth,
        portMac: p.hostVethMac,
        mtu: podMtu,
        ip: p.ip,
        gateway: CALICO_POD_GATEWAY,
        portSysctls: CALICO_PORT_SYSCTLS,
      })),
    );
    run.forEach((p, k) => listening(made[k], p));
    return j;
  }
  // the bridge plugin
  const made = bridgedNetnsAdd(
    world,
    host,
    'cni0',
    run.map((p) => ({
      name: p.name,
      role: 'pod' as const,
      dev: 'eth0',
      mac: p.mac,
      port: p.hostVeth,
      portMac: p.hostVethMac,
      mtu: podMtu,
      ip: p.ip,
      len: node.podLen,
      gateway: node.gateway,
      // a pod address outside the node's CIDR (a static IP, a stale allocation) cannot reach cni0's
      // address on-link: the route is added onlink, so the pod still sends and doctor can show why
      onlink: !inPrefix(p.ip, node.gateway, node.podLen),
    })),
  );
  run.forEach((p, k) => listening(made[k], p));
  return j;
}

/** the pod's listeners, a list of its own length (a push gives an empty list room for 17: ~120 bytes a pod) */
function listening(ns: Netns, p: ResolvedPod): void {
  ns.setListeners(
    ns.sockets.concat(p.listen.map((l) => ({ proto: l.proto, port: l.port, addr: '0.0.0.0' }))),
  );
}

/**
 * Each node's pods, in the cluster file's order. A function of its own, as addNode: a loop over
 * every pod in build() made V8 count build() hot and compile all of it in the next build.
 */
function podsByNode(
  nodes: readonly ResolvedNode[],
  pods: readonly ResolvedPod[],
): Map<string, ResolvedPod[]> {
  const podsOf = new Map<string, ResolvedPod[]>(nodes.map((n) => [n.name, []]));
  for (const p of pods) podsOf.get(p.node)!.push(p);
  return podsOf;
}

/**
 * A table program run on a node's netfilter when it is first read or written
 * (Netns.netfilterLater). A function of its own: the program holds only what it is given (a
 * closure made in build() would hold build()'s whole scope); the pods, their addresses and the
 * policy are the build's, which nothing writes after it.
 */
function queueTable<A extends unknown[]>(
  ns: Netns,
  program: (nf: Netfilter, ...args: A) => void,
  ...args: A
): void {
  ns.netfilterLater((nf) => program(nf, ...args));
}

/** what felix programs every node of a build from */
interface FelixInput {
  world: World;
  input: PolicyInput;
  pods: readonly ResolvedPod[];
  memo: FelixMemo;
  pools: readonly FelixPool[];
}

/**
 * felix's tables on a node, queued (Netns.netfilterLater). A function of its own: the program
 * holds only what it is given (a closure made in build() would hold build()'s whole scope).
 */
function queueFelix(
  f: FelixInput,
  ns: Netns,
  nodePods: readonly ResolvedPod[],
  tunnels: readonly string[],
): void {
  ns.netfilterLater((nf) =>
    programFelix(
      f.world,
      ns,
      nf,
      felixFilter(f.input, f.pods, nodePods, f.memo),
      felixOtherTables(f.pools, tunnels),
    ),
  );
}

/**
 * The tunnel devices felix masquerades host traffic out of (StaticNATPostroutingChains): tunl0
 * when a pool uses IPIP and the node has its IPIP tunnel address, vxlan.calico likewise for VXLAN
 */
function felixTunnels(c: Cluster, node: string): string[] {
  if (!c.ipam?.tunnel.has(node)) return [];
  if (c.mode === 'calico-ipip' || c.mode === 'calico-ipip-crosssubnet') return ['tunl0'];
  if (c.mode === 'calico-vxlan' || c.mode === 'calico-vxlan-crosssubnet') return [CALICO_VXLAN_DEVICE];
  return [];
}

/**
 * A host outside the cluster on its segment: eth0 plugged into the segment's switch like a node's,
 * its address, the subnet's default route and the routes the file gives it. No forwarding, no
 * iptables: a plain Linux host.
 */
function addExternalHost(world: World, spec: ClusterSpec, h: ExternalHostSpec): ResolvedExternalHost {
  const ip = parseCidr(h.ip, { allowHostBits: true });
  const sub = spec.subnets.find((s) => s.cidr === cidrText(ip)) ?? spec.subnets[0];
  const ns = netnsAdd(world, h.name, 'external');
  const seg = world.ns(sub.name);
  const port = h.name.slice(0, 15);
  const mac = (...parts: string[]) => derivedMac([spec.name, ...parts].join('/'));
  linkAdd(world, ns, {
    type: 'veth',
    name: 'eth0',
    mac: h.mac ?? mac(h.name, 'eth0'),
    mtu: spec.mtu,
    peer: { netns: seg, name: port, mac: mac('segment', sub.name, h.name), mtu: spec.mtu },
  });
  linkSetMaster(world, seg, port, sub.name);
  linkSetUp(world, seg, port, true);
  linkSetUp(world, ns, 'eth0', true);
  addressAdd(ns, 'eth0', intToIp4(ip.addr), ip.len);
  if (sub.gateway) routeInstall(ns, { prefix: 'default', via: sub.gateway, dev: 'eth0', nl: NLM_ADD });
  for (const r of h.routes) routeInstall(ns, { prefix: r.to, via: r.via, dev: 'eth0', nl: NLM_ADD });
  for (const l of h.listen) ns.addListener({ proto: l.proto, port: l.port, addr: '0.0.0.0' });
  return { ...h, addr: intToIp4(ip.addr), len: ip.len, subnet: sub.name };
}
