/**
 * Felix's filter table, as calico-node v3.27 programs it in iptables mode (read at tag v3.27.5:
 * felix/rules/static.go, endpoints.go, dispatch.go, policy.go; felix/iptables/rules.go, table.go,
 * match_builder.go, actions.go; felix/hashutils; libcalico-go's k8s conversion), with the settings
 * of Calico's Kubernetes manifest: workload interfaces `cali`, DefaultEndpointToHostAction ACCEPT,
 * IptablesMarkMask 0xffff0000 (accept 0x10000, pass 0x20000, scratch 0x40000 and 0x80000), no
 * kube-proxy IPVS, no WireGuard, no host endpoints, insert mode. Pure: a node's pods and the
 * cluster's policies in, chains of rules out, their `cali:` hash comments made when first asked for
 * (felixHashes: a build hashes only the chains something prints).
 *
 * The layout: FORWARD, INPUT and OUTPUT jump to cali-FORWARD, cali-INPUT, cali-OUTPUT first (felix
 * inserts at the top); FORWARD ends with felix's appended accept of the accept mark. cali-FORWARD
 * sends a packet from a `cali+` interface to cali-from-wl-dispatch, which goes to the workload's
 * cali-fw-<iface> (its egress), and a packet to a `cali+` interface through cali-to-wl-dispatch to
 * cali-tw-<iface> (its ingress). An endpoint chain accepts RELATED,ESTABLISHED, drops INVALID,
 * clears the accept mark, then either walks the NetworkPolicies that select the pod in that
 * direction (cali-pi-/cali-po- chains: an allow rule sets the accept mark and returns; "Drop if no
 * policies passed packet") or, with none, its profiles (kns.<namespace>: allow all;
 * ksa.<namespace>.<serviceaccount>: no rules), returning when one set the accept mark.
 *
 * Every rule carries felix's hash comment: SHA-224 of the chain name, then for each rule SHA-224
 * of the previous hash and the rule rendered as `-A CHAIN HASH …`, base64url, 16 characters
 * (Chain.RuleHashes; inserted rules hash under the builtin's name, appended ones under
 * `NAME*appends*`). Felix programs only chains some rule refers to.
 *
 * A NetworkPolicy's pod and namespace selectors are IP sets, as felix programs them
 * (felix/calc/rule_scanner.go, felix/ipsets, felix/rules/policy.go): a peer's selector is the
 * Calico selector libcalico-go makes of it (k8sSelectorToCalico, then the updateprocessors'
 * namespace clause, canonicalised as selector.String() does), its set `cali40` + `s:` +
 * base64url(SHA-224("s:" + selector)) cut to 31 characters, type hash:net, members the selected
 * pods' /32s (every pod of the cluster, as felix's calculation graph sees them), matched by
 * `-m set --match-set NAME src` (ingress) or `dst` (egress); a named port is a hash:ip,port set
 * `cali40n:…` of (pod, protocol, port) matched by `dst,dst`. A set that selects no pod is
 * programmed empty and its rule matches nothing, as on a real node. An SCTP port programs no rule
 * (podwalk carries no SCTP). The IPIP/VXLAN host rules of cali-INPUT/cali-OUTPUT need the
 * cali40all-hosts-net set and are left out, as is the this-host set (no rule of podwalk's filter
 * chains uses them). The raw, mangle and nat tables, with the masquerade manager's
 * all-ipam-pools and masq-ipam-pools sets, are felixOtherTables'.
 */
import type {
  LabelSelectorSpec,
  NetworkPolicySpec,
  PolicyPeerSpec,
  PolicyPortSpec,
} from '../cluster/spec.ts';
import type { RuleOrigin } from '../kernel/netfilter.ts';
import { base64Url, sha224, sha256, utf8 } from '../wire/sha256.ts';
import type { ResolvedPod } from './build.ts';
import {
  namedPort,
  peerPods,
  policyRuleOrigin,
  selectingPolicies,
  subtractCidrs,
  type Direction,
  type PolicyInput,
  type PolicyRule,
} from './policy.ts';

/** felix's mark bits with IptablesMarkMask 0xffff0000 (dataplane/driver.go allocates them in this order) */
export const FELIX_MARK = { accept: 0x10000, pass: 0x20000, scratch0: 0x40000, scratch1: 0x80000 } as const;
const ALL_MARKS = FELIX_MARK.accept | FELIX_MARK.pass | FELIX_MARK.scratch0 | FELIX_MARK.scratch1;
/** felix's WorkloadIfacePrefixes in Calico's Kubernetes install */
const IFACE = 'cali+';
/** iptables.MaxChainNameLength */
const MAX_CHAIN = 28;
/** iptables.HashLength */
const HASH_LENGTH = 16;
/** the Kubernetes policy order felix gives every NetworkPolicy (they sort by name within it) */
const KNP_PREFIX = 'knp.default.';

/** felix's iptables.Rule: comments, match fragments and the action fragment, and what put it there */
export interface FelixRule {
  comments?: string[];
  match?: string[];
  action?: string;
  /** the chain a jump or goto goes to */
  to?: string;
  origin: RuleOrigin;
}

export interface FelixChain {
  name: string;
  rules: FelixRule[];
}

/** Go's %#x */
const hx = (n: number) => `0x${n.toString(16)}`;

/* the fragments of felix/iptables/actions.go and match_builder.go */
const ACCEPT = '--jump ACCEPT';
const DROP = '--jump DROP';
const RETURN = '--jump RETURN';
const jump = (chain: string) => ({ action: `--jump ${chain}`, to: chain });
const goto = (chain: string) => ({ action: `--goto ${chain}`, to: chain });
const clearMark = (m: number) => `--jump MARK --set-mark 0/${hx(m)}`;
const setMark = (m: number) => `--jump MARK --set-mark ${hx(m)}/${hx(m)}`;
const setMaskedMark = (m: number, mask: number) => `--jump MARK --set-mark ${hx(m)}/${hx(mask)}`;
const markClear = (m: number) => `-m mark --mark 0/${hx(m)}`;
const markSet = (m: number) => `-m mark --mark ${hx(m)}/${hx(m)}`;
const inIface = (i: string) => `--in-interface ${i}`;
const outIface = (i: string) => `--out-interface ${i}`;
const ctState = (s: string) => `-m conntrack --ctstate ${s}`;
const notCtState = (s: string) => `-m conntrack ! --ctstate ${s}`;

/** escapeComment and truncateComment of felix/iptables/rules.go */
function felixComment(c: string): string {
  return c.replace(/[^\w @%+=:,./-]/g, '_').slice(0, 256);
}

/** what follows the hash comment in Rule.renderInner: `[-m comment --comment "…"]… [match] [action]` */
function renderRest(r: FelixRule): string {
  const parts: string[] = [];
  for (const c of r.comments ?? []) parts.push(`-m comment --comment "${felixComment(c)}"`);
  if (r.match?.length) parts.push(r.match.join(' '));
  if (r.action) parts.push(r.action);
  return parts.join(' ');
}

/**
 * A chain's rules as felix writes them, with their hash comments made only when first asked for:
 * each hash chains in the one before it, so a chain is hashed as a whole, once, and only when
 * something prints one of its comments (iptables-save, iptables -L, a trace's rule text)
 */
export interface FelixRules {
  /** the name the hashes start from (a builtin's appended rules hash as `NAME*appends*`) */
  readonly hashName: string;
  /** each rule's spec after its hash comment, '' when there is nothing after it */
  readonly rests: readonly string[];
  readonly origins: readonly RuleOrigin[];
  /** the hashes, once made (felixHashes) */
  hashes?: readonly string[];
  /** the rules' hash comments as installed, made once for every node that has the chain (build.ts) */
  comments?: unknown[];
}

/**
 * The rests by their text: a node's endpoint chains repeat the same rules pod after pod, and a chain
 * keeps its rests until it is hashed (or for good); emptied when it holds RESTS_MAX
 */
const rests = new Map<string, string>();
const RESTS_MAX = 100_000;

function internRest(rest: string): string {
  const known = rests.get(rest);
  if (known !== undefined) return known;
  if (rests.size >= RESTS_MAX) rests.clear();
  rests.set(rest, rest);
  return rest;
}

/** `rules` of a chain as felix writes them, hashed under `hashName` (the chain's name but for appends) */
export function felixRules(hashName: string, rules: readonly FelixRule[]): FelixRules {
  return {
    hashName,
    rests: rules.map((r) => internRest(renderRest(r))),
    origins: rules.map((r) => r.origin),
  };
}

/**
 * Hashes already computed, by the chain's name and rendered rules (a pure function of them: every
 * build of the same cluster, every node with the same chain, asks again); emptied when its keys
 * pass HASHED_MAX characters, so a large cluster's one-off chains cost memory only for a while
 */
const hashed = new Map<string, string[]>();
let hashedChars = 0;
const HASHED_MAX = 16 << 20;

/** Chain.RuleHashes of a chain's rules, made once */
export function felixHashes(r: FelixRules): readonly string[] {
  if (r.hashes) return r.hashes;
  // the rule as felix hashes it: `-A NAME HASH …` (Rule.RenderAppend with the prefix HASH)
  const texts = r.rests.map((rest) => (rest ? `-A ${r.hashName} HASH ${rest}` : `-A ${r.hashName} HASH`));
  // one key for one list: the lines joined (a rendered rule is one line), or as JSON when one is not
  const chain = r.hashName;
  const joined = `${chain}\n${texts.join('\n')}`;
  const key =
    chain.includes('\n') || texts.some((t) => t.includes('\n')) ? JSON.stringify([chain, ...texts]) : joined;
  let out = hashed.get(key);
  if (!out) {
    out = chainHashes(chain, texts);
    if (hashedChars + key.length > HASHED_MAX) {
      hashed.clear();
      hashedChars = 0;
    }
    hashed.set(key, out);
    hashedChars += key.length;
  }
  return (r.hashes = out);
}

/** Chain.RuleHashes: each rule's hash chains in the one before it, the first in the chain's name */
export function ruleHashes(chain: string, rules: readonly FelixRule[]): string[] {
  return [...felixHashes(felixRules(chain, rules))];
}

function chainHashes(chain: string, texts: readonly string[]): string[] {
  let hash = sha224(utf8(chain));
  return texts.map((t) => {
    const text = utf8(t);
    const buf = new Uint8Array(hash.length + text.length);
    buf.set(hash);
    buf.set(text, hash.length);
    hash = sha224(buf);
    return base64Url(hash).slice(0, HASH_LENGTH);
  });
}

/** felix's hash comment of rule `i`, as its spec starts: `-m comment --comment "cali:HASH"` */
export function felixHashComment(r: FelixRules, i: number): string {
  return `-m comment --comment "cali:${felixHashes(r)[i]}"`;
}

/** the rule specs (after `-A CHAIN`) of a chain's rules, their hashes made */
export function felixRuleSpecs(r: FelixRules): PolicyRule[] {
  return r.rests.map((rest, i) => ({
    spec: rest ? `${felixHashComment(r, i)} ${rest}` : felixHashComment(r, i),
    origin: r.origins[i],
  }));
}

/** the rule specs (after `-A CHAIN`) felix writes for `rules` of `chain` (hashed under `hashName`) */
export function felixSpecs(chain: string, rules: readonly FelixRule[], hashName = chain): PolicyRule[] {
  void chain;
  return felixRuleSpecs(felixRules(hashName, rules));
}

/** hashutils.GetLengthLimitedID: prefix + suffix, or prefix + "_" + base64url(sha256(suffix)) cut to fit */
export function lengthLimitedId(prefix: string, suffix: string, max = MAX_CHAIN): string {
  const total = prefix.length + suffix.length;
  if (total > max || (total === max && suffix.startsWith('_')))
    return `${prefix}_${base64Url(sha256(utf8(suffix))).slice(0, max - 1 - prefix.length)}`;
  return prefix + suffix;
}

/** felix's policy ID of a Kubernetes NetworkPolicy: NAMESPACE/knp.default.NAME */
export function felixPolicyId(p: NetworkPolicySpec): string {
  return `${p.namespace}/${KNP_PREFIX}${p.name}`;
}

/** cali-pi- (ingress) or cali-po- (egress) chain of a policy */
export function felixPolicyChain(p: NetworkPolicySpec, dir: Direction): string {
  return lengthLimitedId(dir === 'ingress' ? 'cali-pi-' : 'cali-po-', felixPolicyId(p));
}

/** cali-tw- (to the workload: its ingress) or cali-fw- (from it: its egress) chain of a pod */
export function felixEndpointChain(pod: ResolvedPod, dir: Direction): string {
  return lengthLimitedId(dir === 'ingress' ? 'cali-tw-' : 'cali-fw-', pod.hostVeth);
}

/** the profiles of a Kubernetes pod: its namespace's and its service account's (podwalk's pods run as `default`) */
function profiles(pod: ResolvedPod): string[] {
  return [`kns.${pod.namespace}`, `ksa.${pod.namespace}.default`];
}

const felixOrigin = (purpose: string, pod?: string): RuleOrigin => ({
  kind: 'cni',
  component: 'felix',
  purpose,
  ...(pod ? { pod } : {}),
});

/* ------------------------------------------------------------------ static chains (static.go) */

function staticChains(): FelixChain[] {
  const o = felixOrigin;
  return [
    {
      name: 'cali-FORWARD',
      rules: [
        { action: clearMark(ALL_MARKS & ~FELIX_MARK.accept), origin: o('clear the mark bits') },
        {
          match: [markClear(FELIX_MARK.accept)],
          ...jump('cali-from-hep-forward'),
          origin: o('host endpoint forward policy'),
        },
        { match: [inIface(IFACE)], ...jump('cali-from-wl-dispatch'), origin: o('from a workload') },
        { match: [outIface(IFACE)], ...jump('cali-to-wl-dispatch'), origin: o('to a workload') },
        { ...jump('cali-to-hep-forward'), origin: o('host endpoint forward policy') },
        { ...jump('cali-cidr-block'), origin: o('service CIDR loop prevention') },
      ],
    },
    {
      name: 'cali-INPUT',
      rules: [
        { match: [inIface(IFACE)], ...goto('cali-wl-to-host'), origin: o('from a workload to the host') },
        {
          match: [markSet(FELIX_MARK.accept)],
          action: ACCEPT,
          origin: o('accepted in the raw or mangle table'),
        },
        { action: clearMark(ALL_MARKS), origin: o('clear the mark bits') },
        { ...jump('cali-from-host-endpoint'), origin: o('host endpoint policy') },
        {
          comments: ['Host endpoint policy accepted packet.'],
          match: [markSet(FELIX_MARK.accept)],
          action: ACCEPT,
          origin: o('host endpoint policy accepted'),
        },
      ],
    },
    {
      name: 'cali-wl-to-host',
      rules: [
        { ...jump('cali-from-wl-dispatch'), origin: o('egress policy of the workload') },
        {
          comments: ['Configured DefaultEndpointToHostAction'],
          action: ACCEPT,
          origin: o('DefaultEndpointToHostAction ACCEPT'),
        },
      ],
    },
    {
      name: 'cali-OUTPUT',
      rules: [
        {
          match: [markSet(FELIX_MARK.accept)],
          action: ACCEPT,
          origin: o('accepted in the raw or mangle table'),
        },
        { match: [outIface(IFACE)], action: RETURN, origin: o('from the host to a workload') },
        { action: clearMark(ALL_MARKS), origin: o('clear the mark bits') },
        { match: [notCtState('DNAT')], ...jump('cali-to-host-endpoint'), origin: o('host endpoint policy') },
        {
          comments: ['Host endpoint policy accepted packet.'],
          match: [markSet(FELIX_MARK.accept)],
          action: ACCEPT,
          origin: o('host endpoint policy accepted'),
        },
      ],
    },
    // no host endpoints: the dispatch chains are empty, as is the service loop prevention chain
    { name: 'cali-from-hep-forward', rules: [] },
    { name: 'cali-to-hep-forward', rules: [] },
    { name: 'cali-from-host-endpoint', rules: [] },
    { name: 'cali-to-host-endpoint', rules: [] },
    { name: 'cali-cidr-block', rules: [] },
  ];
}

/* ------------------------------------------------------------------ dispatch chains (dispatch.go) */

function commonPrefix(names: readonly string[]): string {
  if (names.length === 0) return '';
  let p = names[0];
  for (const n of names) while (!n.startsWith(p)) p = p.slice(0, -1);
  return p;
}

/** interfaceNameDispatchChains for one direction: a root chain, and a child chain per shared next character */
function dispatchChains(
  root: string,
  names: readonly string[],
  match: (iface: string) => string,
  target: (iface: string) => string,
  pods: ReadonlyMap<string, ResolvedPod>,
): FelixChain[] {
  const sorted = [...new Set(names)].sort();
  const common = commonPrefix(sorted);
  const prefixes: string[] = [];
  const byPrefix = new Map<string, string[]>();
  for (const n of sorted) {
    const p = n.length > common.length ? n.slice(0, common.length + 1) : common;
    if (!byPrefix.has(p)) {
      prefixes.push(p);
      byPrefix.set(p, []);
    }
    byPrefix.get(p)!.push(n);
  }
  const unknown: FelixRule = {
    comments: ['Unknown interface'],
    action: DROP,
    origin: felixOrigin('drop from or to an unknown cali interface'),
  };
  const podOf = (n: string) => {
    const p = pods.get(n)!;
    return `${p.namespace}/${p.name}`;
  };
  const children: FelixChain[] = [];
  const rootRules: FelixRule[] = [];
  for (const p of prefixes) {
    const ifaces = byPrefix.get(p)!;
    if (ifaces.length > 1) {
      const child = `${root}-${p.slice(common.length)}`;
      rootRules.push({ match: [match(`${p}+`)], ...goto(child), origin: felixOrigin('dispatch') });
      children.push({
        name: child,
        rules: [
          ...ifaces.map((n) => ({
            match: [match(n)],
            ...goto(target(n)),
            origin: felixOrigin('dispatch to the endpoint chain', podOf(n)),
          })),
          unknown,
        ],
      });
    } else
      rootRules.push({
        match: [match(ifaces[0])],
        ...goto(target(ifaces[0])),
        origin: felixOrigin('dispatch to the endpoint chain', podOf(ifaces[0])),
      });
  }
  return [...children, { name: root, rules: [...rootRules, unknown] }];
}

/* ------------------------------------------------------------------ selectors and IP sets */

/** libcalico-go's selector AST (lib/selector/parser/ast.go), the nodes a Kubernetes peer makes */
type SelNode =
  | { op: 'eq'; label: string; value: string }
  | { op: 'in' | 'not in'; label: string; values: string[] }
  | { op: 'has'; label: string }
  | { op: 'not'; x: SelNode }
  | { op: 'and'; xs: SelNode[] }
  | { op: 'all' };

const ALL: SelNode = { op: 'all' };

/** appendLabelOpAndQuotedString: double quotes unless the value holds one */
const selQuote = (v: string) => (v.includes('"') ? `'${v}'` : `"${v}"`);

/** collectFragments: the canonical text felix hashes */
function selText(n: SelNode): string {
  switch (n.op) {
    case 'eq':
      return `${n.label} == ${selQuote(n.value)}`;
    case 'in':
    case 'not in':
      return `${n.label} ${n.op} {${n.values.map(selQuote).join(', ')}}`;
    case 'has':
      return `has(${n.label})`;
    case 'not':
      return `!${selText(n.x)}`;
    case 'and':
      return `(${n.xs.map(selText).join(' && ')})`;
    case 'all':
      return 'all()';
  }
}

/** k8sSelectorToCalico's terms (parsed: `in` values sorted and de-duplicated), labels prefixed (pcns. for namespaces) */
function k8sTerms(s: LabelSelectorSpec | undefined, prefix: string, pod: boolean): SelNode[] {
  const out: SelNode[] = pod ? [{ op: 'eq', label: 'projectcalico.org/orchestrator', value: 'k8s' }] : [];
  if (!s) return out;
  const labels = s.matchLabels ?? {};
  for (const k of Object.keys(labels).sort()) out.push({ op: 'eq', label: prefix + k, value: labels[k] });
  for (const e of s.matchExpressions ?? []) {
    const values = [...new Set(e.values ?? [])].sort();
    const label = prefix + e.key;
    if (e.operator === 'In') out.push({ op: 'in', label, values });
    else if (e.operator === 'NotIn') out.push({ op: 'not in', label, values });
    else if (e.operator === 'Exists') out.push({ op: 'has', label });
    else out.push({ op: 'not', x: { op: 'has', label } });
  }
  return out;
}

const andOf = (xs: SelNode[]): SelNode => (xs.length === 1 ? xs[0] : { op: 'and', xs });

/**
 * The selector felix gets for a pod/namespace peer of a namespaced policy (getEndpointSelector):
 * `(NAMESPACE-PART) && (POD-PART)`, the namespace part the policy's namespace, or the peer's
 * namespace selector with `pcns.` labels (an empty one: every namespace, has(projectcalico.org/namespace))
 */
function peerSelector(policy: NetworkPolicySpec, peer: PolicyPeerSpec): SelNode {
  let ns: SelNode;
  if (peer.namespaceSelector) {
    const terms = k8sTerms(peer.namespaceSelector, 'pcns.', false);
    ns = terms.length ? andOf(terms) : { op: 'has', label: 'projectcalico.org/namespace' };
  } else ns = { op: 'eq', label: 'projectcalico.org/namespace', value: policy.namespace };
  return { op: 'and', xs: [ns, andOf(k8sTerms(peer.podSelector, '', true))] };
}

/** hash.MakeUniqueID: PREFIX:base64url(SHA-224("PREFIX:" + content)) */
function uniqueId(prefix: string, content: string): string {
  return `${prefix}:${base64Url(sha224(utf8(`${prefix}:${content}`)))}`;
}

/** selector.UniqueID() of a canonical selector text */
export const selectorUniqueId = (selector: string) => uniqueId('s', selector);

/** IPVersionConfig.NameForMainIPSet: cali40 + the ID, at most 31 characters */
const ipsetName = (id: string) => `cali40${id}`.slice(0, 31);

/** an IP set felix programs: its name, type and members (address, and protocol and port for hash:ip,port) */
export interface FelixIpset {
  name: string;
  type: 'hash:net' | 'hash:ip,port';
  /** the selector (and named port) it stands for, as felix's calculation graph names it */
  selector: string;
  /** an address (a /32 unless `cidr` says otherwise: a pool's network), with protocol and port in a hash:ip,port set */
  members: { ip: string; cidr?: number; proto?: 'tcp' | 'udp'; port?: number }[];
}

/** a selector's set (type NET: hash:net), members the pods it selects; its name */
function selectorSet(sets: Map<string, FelixIpset>, sel: SelNode, selected: readonly ResolvedPod[]): string {
  const name = ipsetName(uniqueId('s', selText(sel)));
  if (!sets.has(name))
    sets.set(name, {
      name,
      type: 'hash:net',
      selector: selText(sel),
      members: selected.map((p) => ({ ip: p.ip })),
    });
  return name;
}

/** a named port's set (IP_AND_PORT: hash:ip,port): the selected pods that have the port; its name */
function namedPortSet(
  sets: Map<string, FelixIpset>,
  sel: SelNode,
  selected: readonly ResolvedPod[],
  proto: 'tcp' | 'udp',
  port: string,
): string {
  const id = uniqueId('n', `${uniqueId('s', selText(sel))},${proto},${port}`);
  const name = ipsetName(id);
  if (!sets.has(name)) {
    const members: FelixIpset['members'] = [];
    for (const p of selected) {
      const n = namedPort(p, port, proto);
      if (n !== undefined) members.push({ ip: p.ip, proto, port: n });
    }
    sets.set(name, { name, type: 'hash:ip,port', selector: `${selText(sel)} ${proto}:${port}`, members });
  }
  return name;
}

/** a member as felix writes it into `ipset restore` (ip.CIDR and V4IPPort String()) */
export function felixMember(m: FelixIpset['members'][number]): string {
  return m.port === undefined ? `${m.ip}/${m.cidr ?? 32}` : `${m.ip},${m.proto}:${m.port}`;
}

/** felix's `ipset restore` input for a fresh node (writeUpdates: create, the adds, then COMMIT) */
export function felixIpsetRestore(sets: readonly FelixIpset[]): string {
  let out = '';
  for (const s of sets) {
    out += `create ${s.name} ${s.type} family inet maxelem ${FELIX_MAX_IPSET_SIZE}\n`;
    for (const m of s.members) out += `add ${s.name} ${felixMember(m)}\n`;
  }
  return out + 'COMMIT\n';
}

/** felix's MaxIpsetSize default */
export const FELIX_MAX_IPSET_SIZE = 1048576;

const setMatch = (name: string, dirs: string) => `-m set --match-set ${name} ${dirs}`;

/* ------------------------------------------------------------------ policy chains (policy.go) */

interface PortRange {
  first: number;
  last: number;
}

/** A Calico rule as libcalico-go converts a Kubernetes rule (k8sRuleToCalico), peers already resolved */
interface CalicoRule {
  protocol?: string;
  /** the peer's nets (an ipBlock) */
  nets: string[];
  notNets: string[];
  /** the peer's selector IP set (a pod or namespace selector peer) */
  ipset?: string;
  ports: PortRange[];
  /** the named ports' IP sets */
  namedSets: string[];
  /** the Kubernetes rule it came from */
  ruleIndex: number;
}

/** SimplifyPorts: sorted, overlapping and adjacent ranges merged */
function simplifyPorts(ports: PortRange[]): PortRange[] {
  const s = [...ports].sort((a, b) => a.first - b.first || a.last - b.last);
  const out: PortRange[] = [];
  for (const p of s) {
    const last = out[out.length - 1];
    if (last && p.first <= last.last + 1) last.last = Math.max(last.last, p.last);
    else out.push({ ...p });
  }
  return out;
}

/** one Kubernetes rule of `policy` as Calico rules: per protocol (sorted), per peer */
function calicoRules(
  input: PolicyInput,
  pods: readonly ResolvedPod[],
  policy: NetworkPolicySpec,
  dir: Direction,
  k: number,
  sets: Map<string, FelixIpset>,
): CalicoRule[] {
  const rule = (dir === 'ingress' ? policy.ingress : policy.egress)[k];
  // protocol → numeric ports and named ports (undefined: any port); '' → no protocol at all
  const byProto = new Map<string, { ports?: PortRange[]; named: string[] }>();
  for (const p of rule.ports as readonly PolicyPortSpec[]) {
    const proto = p.protocol;
    let e = byProto.get(proto);
    if (p.port === undefined) {
      byProto.set(proto, { ports: undefined, named: [] });
      continue;
    }
    if (e && e.ports === undefined && e.named.length === 0) continue; // already any port
    if (!e) byProto.set(proto, (e = { ports: [], named: [] }));
    if (typeof p.port === 'string') e.named.push(p.port);
    else e.ports!.push({ first: p.port, last: p.endPort ?? p.port });
  }
  if (byProto.size === 0) byProto.set('', { ports: undefined, named: [] });
  const out: CalicoRule[] = [];
  for (const proto of [...byProto.keys()].sort()) {
    // felix renders an SCTP rule (`-p sctp -m multiport …`); podwalk models multiport for TCP and
    // UDP only and carries no SCTP, so the rule, which matches nothing here, is left out
    if (proto === 'SCTP') continue;
    const { ports, named } = byProto.get(proto)!;
    const peers = rule.peers.length === 0 ? [undefined] : rule.peers;
    for (const peer of peers) {
      let nets: string[] = [];
      let notNets: string[] = [];
      let sel: SelNode | undefined;
      if (peer?.ipBlock) {
        nets = [parseCidrText(peer.ipBlock.cidr)];
        notNets = (peer.ipBlock.except ?? []).map(parseCidrText);
      } else if (peer) sel = peerSelector(policy, peer);
      // the named ports' sets, filtered by the destination's selector: the peer's for egress, all() for ingress
      const l4 = proto === 'UDP' ? 'udp' : 'tcp';
      const portSel = dir === 'egress' && sel ? sel : ALL;
      const portPods = portSel === ALL ? pods : peerPods(input, pods, policy, peer!);
      const namedSets = named.map((name) => namedPortSet(sets, portSel, portPods, l4, name));
      // the peer's own set, unless the named ports already carry its selector (ruleToParsedRule's optimisation)
      let ipset: string | undefined;
      if (sel && !(dir === 'egress' && named.length > 0 && (ports ?? []).length === 0))
        ipset = selectorSet(sets, sel, peerPods(input, pods, policy, peer!));
      out.push({
        protocol: proto === '' ? undefined : proto.toLowerCase(),
        nets,
        notNets,
        ipset,
        ports: ports ? simplifyPorts(ports) : [],
        namedSets,
        ruleIndex: k,
      });
    }
  }
  return out;
}

/** an ipBlock CIDR as the API server stores it (masked) */
function parseCidrText(t: string): string {
  return subtractCidrs(t, [])[0];
}

const portList = (ps: readonly PortRange[]) =>
  ps.map((p) => (p.first === p.last ? String(p.first) : `${p.first}:${p.last}`)).join(',');

/** SplitPortList: at most 15 multiport slots (a range takes two) per rule */
function splitPorts(ps: readonly PortRange[]): PortRange[][] {
  const out: PortRange[][] = [];
  let cur: PortRange[] = [];
  let slots = 15;
  for (const p of ps) {
    const need = p.first === p.last ? 1 : 2;
    if (slots < need) {
      out.push(cur);
      cur = [];
      slots = 15;
    }
    cur.push(p);
    slots -= need;
  }
  if (cur.length) out.push(cur);
  return out;
}

/** ProtoRuleToIptablesRules for an allow rule, ingress (`src`) or egress (`dst`) */
function renderRule(r: CalicoRule, dir: Direction, origin: RuleOrigin): FelixRule[] {
  const side = dir === 'ingress' ? 'source' : 'destination';
  const net = (n: string) => `--${side} ${n}`;
  const out: FelixRule[] = [];
  let usingBlocks = false;
  let donePositive = false;
  const all = FELIX_MARK.scratch0;
  const block = FELIX_MARK.scratch1;
  const initial = (bits: number) => {
    if (usingBlocks) return;
    out.push({ action: setMaskedMark(bits, all | block), origin });
    usingBlocks = true;
  };
  const positiveMark = () => (donePositive ? block : all);
  const finishPositive = () => {
    if (!donePositive) donePositive = true;
    else out.push({ match: [markClear(block)], action: clearMark(all), origin });
  };
  const proto = r.protocol ? [`-p ${r.protocol}`] : [];
  // destination ports: numeric splits and named ports' sets, in a block when more than one
  let ports = r.ports;
  let namedSets = r.namedSets;
  const splits = splitPorts(r.ports);
  if (splits.length + namedSets.length > 1) {
    initial(0);
    const m = positiveMark();
    for (const s of splits)
      out.push({
        match: [...proto, `-m multiport --destination-ports ${portList(s)}`],
        action: setMark(m),
        origin,
      });
    for (const n of namedSets) out.push({ match: [setMatch(n, 'dst,dst')], action: setMark(m), origin });
    finishPositive();
    ports = [];
    namedSets = [];
  }
  let nets = r.nets;
  if (nets.length > 1) {
    initial(0);
    const m = positiveMark();
    for (const n of nets) out.push({ match: [net(n)], action: setMark(m), origin });
    finishPositive();
    nets = [];
  }
  let notNets = r.notNets;
  if (nets.length + notNets.length > 1) {
    initial(all);
    for (const n of notNets) out.push({ match: [net(n)], action: clearMark(all), origin });
    notNets = [];
  }
  // CalculateRuleMatch: protocol, the peer's net and IP set, destination ports, named port set, negations
  const match = [...proto];
  if (nets.length === 1) match.push(net(nets[0]));
  if (r.ipset) match.push(setMatch(r.ipset, dir === 'ingress' ? 'src' : 'dst'));
  if (ports.length) match.push(`-m multiport --destination-ports ${portList(ports)}`);
  for (const n of namedSets) match.push(setMatch(n, 'dst,dst'));
  if (notNets.length === 1) match.push(`! --${side} ${notNets[0]}`);
  if (usingBlocks) match.push(markSet(all));
  out.push({ match, action: setMark(FELIX_MARK.accept), origin });
  out.push({ match: [markSet(FELIX_MARK.accept)], action: RETURN, origin });
  return out;
}

/** a policy's chain for one direction (PolicyToIptablesChains): its rules, the first with the chain comment */
function policyChain(
  input: PolicyInput,
  pods: readonly ResolvedPod[],
  policy: NetworkPolicySpec,
  dir: Direction,
  sets: Map<string, FelixIpset>,
): FelixChain {
  const list = dir === 'ingress' ? policy.ingress : policy.egress;
  const rules: FelixRule[] = [];
  for (let k = 0; k < list.length; k++) {
    const origin = policyRuleOrigin(policy, dir, k);
    for (const r of calicoRules(input, pods, policy, dir, k, sets)) rules.push(...renderRule(r, dir, origin));
  }
  const comment = `Policy ${felixPolicyId(policy)} ${dir}`;
  if (rules.length === 0)
    rules.push({ origin: felixOrigin(`policy ${felixPolicyId(policy)} has no ${dir} rule`) });
  rules[0] = { ...rules[0], comments: [...(rules[0].comments ?? []), comment] };
  return { name: felixPolicyChain(policy, dir), rules };
}

/** a profile's chain (ProfileToIptablesChains): kns.<ns> allows everything, ksa.… has no rules */
function profileChain(profile: string, dir: Direction): FelixChain {
  const name = lengthLimitedId(dir === 'ingress' ? 'cali-pri-' : 'cali-pro-', profile);
  const origin = felixOrigin(`profile ${profile}`);
  const rules: FelixRule[] = profile.startsWith('kns.')
    ? [
        { action: setMark(FELIX_MARK.accept), origin },
        { match: [markSet(FELIX_MARK.accept)], action: RETURN, origin },
      ]
    : [{ origin }];
  rules[0] = { ...rules[0], comments: [`Profile ${profile} ${dir}`] };
  return { name, rules };
}

/* ------------------------------------------------------------------ endpoint chains (endpoints.go) */

function endpointChain(pod: ResolvedPod, dir: Direction, policies: readonly NetworkPolicySpec[]): FelixChain {
  const who = `${pod.namespace}/${pod.name}`;
  const selectedBy = policies.map((p) => `${p.namespace}/${p.name}`);
  const o = (purpose: string) => felixOrigin(purpose, who);
  const pc = (role: 'jump' | 'established' | 'default-deny'): RuleOrigin => ({
    kind: 'policy-chain',
    pod: who,
    direction: dir,
    role,
    selectedBy,
  });
  const rules: FelixRule[] = [
    {
      match: [ctState('RELATED,ESTABLISHED')],
      action: ACCEPT,
      origin: policies.length ? pc('established') : o('accept established'),
    },
    { match: [ctState('INVALID')], action: DROP, origin: o('drop invalid') },
    { action: clearMark(FELIX_MARK.accept), origin: o('clear the accept mark') },
  ];
  if (dir === 'egress')
    rules.push(
      {
        comments: ['Drop VXLAN encapped packets originating in workloads'],
        match: ['-p 17', '-m multiport --destination-ports 4789'],
        action: DROP,
        origin: o('drop VXLAN from a workload'),
      },
      {
        comments: ['Drop IPinIP encapped packets originating in workloads'],
        match: ['-p 4'],
        action: DROP,
        origin: o('drop IPinIP from a workload'),
      },
    );
  if (policies.length) {
    rules.push({ comments: ['Start of policies'], action: clearMark(FELIX_MARK.pass), origin: pc('jump') });
    for (const p of policies)
      rules.push(
        { match: [markClear(FELIX_MARK.pass)], ...jump(felixPolicyChain(p, dir)), origin: pc('jump') },
        {
          comments: ['Return if policy accepted'],
          match: [markSet(FELIX_MARK.accept)],
          action: RETURN,
          origin: pc('jump'),
        },
      );
    rules.push({
      comments: ['Drop if no policies passed packet'],
      match: [markClear(FELIX_MARK.pass)],
      action: DROP,
      origin: pc('default-deny'),
    });
  }
  for (const prof of profiles(pod))
    rules.push(
      {
        ...jump(lengthLimitedId(dir === 'ingress' ? 'cali-pri-' : 'cali-pro-', prof)),
        origin: o(`profile ${prof}`),
      },
      {
        comments: ['Return if profile accepted'],
        match: [markSet(FELIX_MARK.accept)],
        action: RETURN,
        origin: o(`profile ${prof}`),
      },
    );
  rules.push({
    comments: ['Drop if no profiles matched'],
    action: DROP,
    origin: o('drop if no profile matched'),
  });
  return { name: felixEndpointChain(pod, dir), rules };
}

/* ------------------------------------------------------------------ a node */

/** What felix programs in a node's filter table */
export interface FelixFilter {
  /** the chains felix programs (those some rule refers to), each with its rules (felixRuleSpecs: their specs) */
  chains: { name: string; rules: FelixRules }[];
  /** rules inserted at the top of the builtin chains, in order */
  insert: { chain: 'INPUT' | 'FORWARD' | 'OUTPUT'; rules: FelixRules }[];
  /** rules appended to FORWARD */
  append: FelixRules;
  /** the IP sets the rules use, in the order the policies' rules first name them */
  ipsets: FelixIpset[];
}

/**
 * What every node of one cluster shares: a policy's chains and the profiles' depend only on the
 * cluster's pods and policies, so one build computes and hashes each once (felixFilter with the
 * same `input` and `pods` for every node).
 */
export interface FelixMemo {
  /** `policy ID` + direction, `profile` + direction → the chain */
  chains: Map<string, FelixChain>;
  /** a shared chain's rules as felix writes them (hashed once, when first asked for) */
  specs: WeakMap<FelixChain, FelixRules>;
  /** the IP sets a shared policy chain names, in the order it names them */
  sets: Map<string, FelixIpset[]>;
  /** the static chains (the same on every node) */
  statics?: FelixChain[];
  /** the jumps inserted at the top of the builtin chains and the rules appended to FORWARD */
  insert?: FelixFilter['insert'];
  append?: FelixRules;
}

export function felixMemo(): FelixMemo {
  return { chains: new Map(), specs: new WeakMap(), sets: new Map() };
}

/** a chain's rules, once for a chain the memo shares */
function memoSpecs(memo: FelixMemo | undefined, c: FelixChain): FelixRules {
  let specs = memo?.specs.get(c);
  if (!specs) {
    specs = felixRules(c.name, c.rules);
    memo?.specs.set(c, specs);
  }
  return specs;
}

function memoChain(memo: FelixMemo | undefined, key: string, make: () => FelixChain): FelixChain {
  if (!memo) return make();
  let c = memo.chains.get(key);
  if (!c) memo.chains.set(key, (c = make()));
  return c;
}

/**
 * Felix's filter table for a node: its pods (`nodePods`), every pod of the cluster and the
 * policies; `memo` shares what does not depend on the node between calls for the same cluster
 */
export function felixFilter(
  input: PolicyInput,
  pods: readonly ResolvedPod[],
  nodePods: readonly ResolvedPod[],
  memo?: FelixMemo,
): FelixFilter {
  // the static chains' objects shared by every node of the build: their specs are made once (memoSpecs)
  const chains: FelixChain[] = memo ? [...(memo.statics ??= staticChains())] : staticChains();
  const byIface = new Map(nodePods.map((p) => [p.hostVeth, p]));
  const ifaces = nodePods.map((p) => p.hostVeth);
  chains.push(
    ...dispatchChains(
      'cali-from-wl-dispatch',
      ifaces,
      inIface,
      (n) => lengthLimitedId('cali-fw-', n),
      byIface,
    ),
    ...dispatchChains(
      'cali-to-wl-dispatch',
      ifaces,
      outIface,
      (n) => lengthLimitedId('cali-tw-', n),
      byIface,
    ),
  );
  const policies = new Map<string, NetworkPolicySpec>();
  const profileNames = new Set<string>();
  for (const pod of nodePods) {
    for (const dir of ['ingress', 'egress'] as const) {
      // the tier's order: every NetworkPolicy has order 1000, then by name
      const sel = selectingPolicies(input, pod, dir).sort((a, b) =>
        felixPolicyId(a) < felixPolicyId(b) ? -1 : felixPolicyId(a) > felixPolicyId(b) ? 1 : 0,
      );
      for (const p of sel) policies.set(felixPolicyId(p), p);
      chains.push(endpointChain(pod, dir, sel));
    }
    for (const prof of profiles(pod)) profileNames.add(prof);
  }
  const sets = new Map<string, FelixIpset>();
  for (const [id, p] of policies)
    for (const dir of ['ingress', 'egress'] as const) {
      // a policy's chain and the sets it names depend on the cluster only: once per build (memo)
      const key = `policy ${id} ${dir}`;
      let chain = memo?.chains.get(key);
      let named = memo?.sets.get(key);
      if (!chain || !named) {
        const own = new Map<string, FelixIpset>();
        chain = policyChain(input, pods, p, dir, own);
        named = [...own.values()];
        memo?.chains.set(key, chain);
        memo?.sets.set(key, named);
      }
      chains.push(chain);
      for (const set of named) if (!sets.has(set.name)) sets.set(set.name, set);
    }
  for (const prof of profileNames)
    for (const dir of ['ingress', 'egress'] as const)
      chains.push(memoChain(memo, `profile ${prof} ${dir}`, () => profileChain(prof, dir)));

  const insert = memo?.insert ?? felixInsert();
  const append = memo?.append ?? felixAppend();
  if (memo) {
    memo.insert = insert;
    memo.append = append;
  }
  // only chains something refers to are programmed (Table.chainRefCounts)
  const referenced = new Set<string>(['cali-FORWARD', 'cali-INPUT', 'cali-OUTPUT']);
  for (const c of chains) for (const r of c.rules) if (r.to) referenced.add(r.to);
  return {
    chains: chains
      .filter((c) => referenced.has(c.name))
      .map((c) => ({ name: c.name, rules: memoSpecs(memo, c) })),
    insert,
    append,
    ipsets: [...sets.values()],
  };
}

/** felix's jumps inserted at the top of FORWARD, INPUT and OUTPUT */
function felixInsert(): FelixFilter['insert'] {
  return (['FORWARD', 'INPUT', 'OUTPUT'] as const).map((chain) => ({
    chain,
    rules: felixRules(chain, [{ ...jump(`cali-${chain}`), origin: felixOrigin(`jump to cali-${chain}`) }]),
  }));
}

/** felix's rules appended to FORWARD (hashed as appends) */
function felixAppend(): FelixRules {
  const rules: FelixRule[] = [
    {
      comments: ['Policy explicitly accepted packet.'],
      match: [markSet(FELIX_MARK.accept)],
      action: ACCEPT,
      origin: felixOrigin('accept what policy accepted'),
    },
    { action: setMark(FELIX_MARK.accept), origin: felixOrigin('mark forwarded traffic') },
  ];
  return felixRules('FORWARD*appends*', rules);
}

/* ------------------------------------------------------------------ the raw, mangle and nat tables */

/** an IP pool as felix's masquerade manager gets it (proto.IPAMPool: the CIDR, natOutgoing as Masquerade) */
export interface FelixPool {
  cidr: string;
  natOutgoing: boolean;
}

/** felix's chains of one of the other tables, and its jumps inserted at the top of the builtins */
export interface FelixTable {
  table: 'raw' | 'mangle' | 'nat';
  chains: { name: string; rules: PolicyRule[] }[];
  insert: { chain: string; rules: PolicyRule[] }[];
}

/** What felix programs in a node's raw, mangle and nat tables, and the IP sets the nat rules use */
export interface FelixOtherTables {
  tables: FelixTable[];
  ipsets: FelixIpset[];
}

/** the masquerade manager's sets (IPSetIDNATOutgoingAllPools, IPSetIDNATOutgoingMasqPools), type hash:net */
export const FELIX_ALL_POOLS_SET = ipsetName('all-ipam-pools');
export const FELIX_MASQ_POOLS_SET = ipsetName('masq-ipam-pools');

const MASQ = '--jump MASQUERADE --random-fully';

/** a table's chains (only those some rule refers to, Table.chainRefCounts) and the jumps into them */
function felixTable(
  table: FelixTable['table'],
  chains: FelixChain[],
  builtins: readonly string[],
): FelixTable {
  const insert = builtins.map((chain) => ({
    chain,
    rules: felixSpecs(chain, [{ ...jump(`cali-${chain}`), origin: felixOrigin(`jump to cali-${chain}`) }]),
  }));
  const referenced = new Set(builtins.map((b) => `cali-${b}`));
  for (const c of chains) for (const r of c.rules) if (r.to) referenced.add(r.to);
  return {
    table,
    chains: chains
      .filter((c) => referenced.has(c.name))
      .map((c) => ({ name: c.name, rules: felixSpecs(c.name, c.rules) })),
    insert,
  };
}

/**
 * Felix's raw, mangle and nat tables on a node (felix v3.27.5, iptables mode, no host endpoints,
 * no floating IPs, no WireGuard, no IPVS; setUpIptablesNormal and the managers that fill them):
 *
 * - raw (StaticRawTableChains): cali-PREROUTING clears felix's mark bits, marks a packet from a
 *   `cali+` interface with scratch0, gives it cali-rpf-skip (the endpoint manager's, empty: no
 *   workload allows spoofed sources) and drops it when `-m rpfilter --validmark --invert` (strict
 *   reverse path: the route back to its source must leave by the interface it came in on); the
 *   rest goes to the host endpoints' untracked dispatch (empty); the accept mark accepts.
 *   cali-OUTPUT likewise for what the host sends.
 * - mangle (StaticMangleTableChains): cali-PREROUTING accepts RELATED,ESTABLISHED and what the raw
 *   table accepted, then the pre-DNAT host endpoint dispatch (empty); cali-POSTROUTING returns for
 *   the accept mark (forwarded traffic: filter FORWARD's last rule set it), clears the marks and
 *   sends DNATed host traffic to the host endpoints' egress dispatch (empty).
 * - nat (StaticNATTableChains, NATOutgoingChain, the floating IP manager's empty cali-fip-dnat and
 *   cali-fip-snat): cali-POSTROUTING → cali-fip-snat, cali-nat-outgoing, then per tunnel device
 *   with an address (tunl0 with IPIP, vxlan.calico with VXLAN) a MASQUERADE of what leaves by it
 *   from a local address that is not the device's own; cali-nat-outgoing masquerades a source in
 *   a natOutgoing pool (cali40masq-ipam-pools) to a destination in no pool (cali40all-ipam-pools),
 *   `--random-fully` as felix writes it when iptables ≥ 1.6.2 and the kernel ≥ 3.14.
 *
 * The two sets are the masquerade manager's: created at start, members the pools' CIDRs.
 */
export function felixOtherTables(pools: readonly FelixPool[], tunnels: readonly string[]): FelixOtherTables {
  const o = felixOrigin;
  const scratch0 = FELIX_MARK.scratch0;
  const raw: FelixChain[] = [
    {
      name: 'cali-PREROUTING',
      rules: [
        { action: clearMark(ALL_MARKS), origin: o('clear the mark bits') },
        { match: [inIface(IFACE)], action: setMark(scratch0), origin: o('mark what comes from a workload') },
        {
          match: [markSet(scratch0)],
          ...jump('cali-rpf-skip'),
          origin: o('workloads allowed to spoof their source'),
        },
        {
          match: [markSet(scratch0), '-m rpfilter --invert --validmark'],
          action: DROP,
          origin: o('drop a workload packet that fails the reverse path check'),
        },
        {
          match: [markClear(scratch0)],
          ...jump('cali-from-host-endpoint'),
          origin: o('untracked host endpoint policy'),
        },
        {
          match: [markSet(FELIX_MARK.accept)],
          action: ACCEPT,
          origin: o('accepted by untracked policy'),
        },
      ],
    },
    { name: 'cali-rpf-skip', rules: [] },
    {
      name: 'cali-OUTPUT',
      rules: [
        { action: clearMark(ALL_MARKS), origin: o('clear the mark bits') },
        { ...jump('cali-to-host-endpoint'), origin: o('untracked host endpoint policy') },
        {
          match: [markSet(FELIX_MARK.accept)],
          action: ACCEPT,
          origin: o('accepted by untracked policy'),
        },
      ],
    },
    { name: 'cali-from-host-endpoint', rules: [] },
    { name: 'cali-to-host-endpoint', rules: [] },
  ];
  const hepAccepted = (action: string): FelixRule => ({
    comments: ['Host endpoint policy accepted packet.'],
    match: [markSet(FELIX_MARK.accept)],
    action,
    origin: o('host endpoint policy accepted'),
  });
  const mangle: FelixChain[] = [
    {
      name: 'cali-PREROUTING',
      rules: [
        { match: [ctState('RELATED,ESTABLISHED')], action: ACCEPT, origin: o('accept established') },
        {
          match: [markSet(FELIX_MARK.accept)],
          action: ACCEPT,
          origin: o('accepted in the raw table'),
        },
        { ...jump('cali-from-host-endpoint'), origin: o('pre-DNAT host endpoint policy') },
        hepAccepted(ACCEPT),
      ],
    },
    {
      name: 'cali-POSTROUTING',
      rules: [
        { match: [markSet(FELIX_MARK.accept)], action: RETURN, origin: o('forwarded traffic') },
        { action: clearMark(ALL_MARKS), origin: o('clear the mark bits') },
        {
          match: [ctState('DNAT')],
          ...jump('cali-to-host-endpoint'),
          origin: o('host endpoint policy of DNATed host traffic'),
        },
        hepAccepted(RETURN),
      ],
    },
    { name: 'cali-from-host-endpoint', rules: [] },
    { name: 'cali-to-host-endpoint', rules: [] },
  ];
  const masq = pools.some((p) => p.natOutgoing);
  const nat: FelixChain[] = [
    { name: 'cali-PREROUTING', rules: [{ ...jump('cali-fip-dnat'), origin: o('floating IPs') }] },
    {
      name: 'cali-POSTROUTING',
      rules: [
        { ...jump('cali-fip-snat'), origin: o('floating IPs') },
        { ...jump('cali-nat-outgoing'), origin: o('natOutgoing') },
        ...tunnels.map((dev): FelixRule => ({
          match: [
            outIface(dev),
            '-m addrtype ! --src-type LOCAL --limit-iface-out',
            '-m addrtype --src-type LOCAL',
          ],
          action: MASQ,
          origin: o(`masquerade a host address that is not ${dev}'s`),
        })),
      ],
    },
    { name: 'cali-OUTPUT', rules: [{ ...jump('cali-fip-dnat'), origin: o('floating IPs') }] },
    {
      name: 'cali-nat-outgoing',
      rules: masq
        ? [
            {
              match: [
                setMatch(FELIX_MASQ_POOLS_SET, 'src'),
                `-m set ! --match-set ${FELIX_ALL_POOLS_SET} dst`,
              ],
              action: MASQ,
              origin: o('natOutgoing: masquerade what leaves the pools'),
            },
          ]
        : [],
    },
    { name: 'cali-fip-dnat', rules: [] },
    { name: 'cali-fip-snat', rules: [] },
  ];
  const member = (p: FelixPool) => {
    const [ip, len] = p.cidr.split('/');
    return { ip, cidr: Number(len) };
  };
  return {
    tables: [
      felixTable('raw', raw, ['PREROUTING', 'OUTPUT']),
      felixTable('mangle', mangle, ['PREROUTING', 'POSTROUTING']),
      felixTable('nat', nat, ['PREROUTING', 'POSTROUTING', 'OUTPUT']),
    ],
    ipsets: [
      { name: FELIX_ALL_POOLS_SET, type: 'hash:net', selector: 'all-ipam-pools', members: pools.map(member) },
      {
        name: FELIX_MASQ_POOLS_SET,
        type: 'hash:net',
        selector: 'masq-ipam-pools',
        members: pools.filter((p) => p.natOutgoing).map(member),
      },
    ],
  };
}
