/**
 * Kubernetes NetworkPolicy (networking.k8s.io/v1) compiled to iptables, the way a policy-capable
 * CNI's agent programs each node. Pure: the cluster's policies, namespaces and pods in, per-node
 * chains of rule specs (iptables-save form, after `-A CHAIN`) out.
 *
 * The semantics are Kubernetes': a pod is isolated for ingress (egress) iff some policy of its
 * namespace selects it and has Ingress (Egress) in its policyTypes. An isolated pod's traffic in
 * that direction is allowed only when some rule of some selecting policy allows it (the union);
 * replies of allowed connections pass by conntrack. A flow between two pods needs the source's
 * egress and the destination's ingress. Traffic from a node to its own pods never reaches FORWARD
 * (it leaves through OUTPUT), so it stays allowed, as Kubernetes and Calico have it.
 *
 * The chain layout on a node, for each local pod that is isolated in a direction:
 *
 *   CNI-FORWARD  -s POD/32 … -j PW-OUT-<hostVeth>     egress jumps first, then
 *                -d POD/32 … -j PW-IN-<hostVeth>      ingress jumps, then the plugin's ACCEPTs
 *   INPUT        -s POD/32 … -j PW-OUT-<hostVeth>     egress also covers the pod's own node
 *   PW-IN-…      -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
 *                -s PEER [-p P -m P --dport N[:M]] -m comment --comment "policy NS/NAME ingress rule K" -j RETURN
 *                …
 *                -m comment --comment "no policy selecting NS/POD allows this ingress (selected by: …)" -j DROP
 *
 * An allowed packet RETURNs, so that a same-node flow that passed the source's egress chain still
 * meets the destination's ingress chain; only then do the plugin's rules accept it. Peers are
 * expanded to addresses: selected pods to /32s, an ipBlock with `except` to the prefixes that
 * cover the block without the exceptions. Named ports resolve against the pod that owns the port:
 * the chain's pod for ingress, each destination pod for egress.
 */
import type {
  LabelSelectorSpec,
  NamespaceSpec,
  NetworkPolicySpec,
  PolicyPeerSpec,
  PolicyPortSpec,
  PolicyRuleSpec,
} from '../cluster/spec.ts';
import type { RuleOrigin } from '../kernel/netfilter.ts';
import { hash32 } from '../kernel/world.ts';
import {
  cidrContains,
  cidrText,
  cidrWithin,
  ip4ToInt,
  networkOf,
  parseCidr,
  type Cidr,
} from '../wire/addr.ts';
import type { ResolvedPod } from './build.ts';

export type Direction = 'ingress' | 'egress';

/** A rule spec (iptables-save form, after `-A CHAIN`) and what put it there */
export interface PolicyRule {
  spec: string;
  origin: RuleOrigin;
}

/** What a node gets: its policy chains, and the jumps into them */
export interface NodePolicy {
  /** new chains in order, each with its rules */
  chains: { name: string; rules: PolicyRule[] }[];
  /** jumps for CNI-FORWARD, to go before the plugin's per-pod ACCEPT rules */
  forward: PolicyRule[];
  /** jumps for INPUT (a pod's egress to its own node) */
  input: PolicyRule[];
}

export interface PolicyInput {
  namespaces?: readonly NamespaceSpec[];
  policies?: readonly NetworkPolicySpec[];
}

/** the label every namespace carries */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

/** metav1.LabelSelector semantics: every matchLabels pair and every expression must hold */
export function selectorMatches(sel: LabelSelectorSpec, labels: Readonly<Record<string, string>>): boolean {
  const has = (k: string) => Object.prototype.hasOwnProperty.call(labels, k);
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (!has(k) || labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const values = e.values ?? [];
    const ok =
      e.operator === 'In'
        ? has(e.key) && values.includes(labels[e.key])
        : e.operator === 'NotIn'
          ? !has(e.key) || !values.includes(labels[e.key])
          : e.operator === 'Exists'
            ? has(e.key)
            : !has(e.key);
    if (!ok) return false;
  }
  return true;
}

/** The labels of a namespace: the listed ones plus kubernetes.io/metadata.name */
export function namespaceLabels(input: PolicyInput, ns: string): Record<string, string> {
  const listed = input.namespaces?.find((n) => n.name === ns)?.labels ?? {};
  return { ...listed, [NAMESPACE_NAME_LABEL]: ns };
}

const TYPE: Record<Direction, 'Ingress' | 'Egress'> = { ingress: 'Ingress', egress: 'Egress' };

/** The policies that select `pod` for `dir` (the pod is isolated in that direction iff any) */
export function selectingPolicies(input: PolicyInput, pod: ResolvedPod, dir: Direction): NetworkPolicySpec[] {
  return (input.policies ?? []).filter(
    (p) =>
      p.namespace === pod.namespace &&
      p.policyTypes.includes(TYPE[dir]) &&
      selectorMatches(p.podSelector, pod.labels),
  );
}

/** Whether a peer of `policy` selects `pod` by its namespace and labels (not for ipBlock peers) */
export function peerSelects(
  input: PolicyInput,
  policy: NetworkPolicySpec,
  peer: PolicyPeerSpec,
  pod: ResolvedPod,
): boolean {
  return (
    (peer.namespaceSelector
      ? selectorMatches(peer.namespaceSelector, namespaceLabels(input, pod.namespace))
      : pod.namespace === policy.namespace) &&
    (!peer.podSelector || selectorMatches(peer.podSelector, pod.labels))
  );
}

/** The pods a peer selects (not for ipBlock peers) */
export function peerPods(
  input: PolicyInput,
  pods: readonly ResolvedPod[],
  policy: NetworkPolicySpec,
  peer: PolicyPeerSpec,
): ResolvedPod[] {
  return pods.filter((p) => peerSelects(input, policy, peer, p));
}

/** `cidr` without the `except` blocks, as the fewest prefixes, in address order */
export function subtractCidrs(cidr: string, except: readonly string[]): string[] {
  const block = (t: string): Cidr => {
    const c = parseCidr(t, { allowHostBits: true });
    return { addr: networkOf(c), len: c.len };
  };
  const ex = except.map(block);
  const split = (c: Cidr): Cidr[] => {
    if (ex.some((e) => cidrWithin(c, e))) return [];
    if (!ex.some((e) => cidrWithin(e, c))) return [c];
    const half = 2 ** (31 - c.len);
    return [
      ...split({ addr: c.addr, len: c.len + 1 }),
      ...split({ addr: (c.addr + half) >>> 0, len: c.len + 1 }),
    ];
  };
  return split(block(cidr)).map(cidrText);
}

/** An address a rule matches, and the pod that has it (named ports resolve against that pod) */
interface Peer {
  cidr: string;
  pod?: ResolvedPod;
}

const ANY: Peer = { cidr: '0.0.0.0/0' };

/** The number of a named container port of `pod` (what a NetworkPolicy's named port resolves to) */
export function namedPort(pod: ResolvedPod, name: string, proto: 'tcp' | 'udp'): number | undefined {
  return pod.listen.find((l) => l.name === name && l.proto === proto)?.port;
}

/** `chain` name for a pod's direction: PW-IN-/PW-OUT- and the host veth (a hash if it has odd characters) */
export function policyChain(pod: ResolvedPod, dir: Direction): string {
  const suffix = /^[A-Za-z0-9_.-]+$/.test(pod.hostVeth)
    ? pod.hostVeth
    : hash32(pod.hostVeth).toString(16).padStart(8, '0');
  return `${dir === 'ingress' ? 'PW-IN' : 'PW-OUT'}-${suffix}`;
}

/** iptables comments hold at most 255 characters */
function comment(text: string): string {
  const t = text.length > 255 ? `${text.slice(0, 252)}...` : text;
  return `-m comment --comment "${t}"`;
}

/** `-p P` and the port match of a policy port (`number`: a named port, resolved) */
function portMatch(port: PolicyPortSpec | undefined, number?: number): { proto?: string; dport?: string } {
  if (port === undefined) return {};
  const proto = port.protocol.toLowerCase();
  if (port.port === undefined) return { proto };
  const n = number ?? (port.port as number);
  return {
    proto,
    dport: port.endPort !== undefined && port.endPort !== n ? `${n}:${port.endPort}` : String(n),
  };
}

/** the origin of the rules compiled from rule `k` of a policy's ingress or egress list */
export function policyRuleOrigin(policy: NetworkPolicySpec, dir: Direction, k: number): RuleOrigin {
  return {
    kind: 'network-policy',
    namespace: policy.namespace,
    name: policy.name,
    direction: dir,
    ruleIndex: k,
  };
}

/** The RETURN rules of one policy rule for the chain of `pod` */
function ruleSpecs(
  input: PolicyInput,
  pods: readonly ResolvedPod[],
  policy: NetworkPolicySpec,
  k: number,
  pod: ResolvedPod,
  dir: Direction,
  /** the peers of a rule do not depend on the pod whose chain it is: expanded once per rule */
  expanded: Map<PolicyRuleSpec, Peer[]>,
): PolicyRule[] {
  const rule = (dir === 'ingress' ? policy.ingress : policy.egress)[k];
  let peers = expanded.get(rule);
  if (!peers) {
    peers =
      rule.peers.length === 0
        ? [ANY]
        : rule.peers.flatMap((peer) =>
            peer.ipBlock
              ? subtractCidrs(peer.ipBlock.cidr, peer.ipBlock.except ?? []).map((cidr) => ({ cidr }))
              : peerPods(input, pods, policy, peer).map((p) => ({ cidr: `${p.ip}/32`, pod: p })),
          );
    expanded.set(rule, peers);
  }
  const ports: (PolicyPortSpec | undefined)[] = rule.ports.length === 0 ? [undefined] : rule.ports;
  const flag = dir === 'ingress' ? '-s' : '-d';
  const tag = comment(`policy ${policy.namespace}/${policy.name} ${dir} rule ${k}`);
  const origin = policyRuleOrigin(policy, dir, k);
  const out: PolicyRule[] = [];
  const emit = (cidr: string, m: { proto?: string; dport?: string }) =>
    out.push({
      spec: [
        cidr.endsWith('/0') ? '' : `${flag} ${cidr}`,
        m.proto ? `-p ${m.proto}` : '',
        tag,
        m.dport ? `-m ${m.proto} --dport ${m.dport}` : '',
        '-j RETURN',
      ]
        .filter((x) => x !== '')
        .join(' '),
      origin,
    });
  for (const peer of peers)
    for (const port of ports) {
      // an SCTP entry is valid (the API server takes it) but matches nothing podwalk carries: it
      // programs no rule, and a rule whose ports are all SCTP allows no modelled traffic
      if (port?.protocol === 'SCTP') continue;
      if (typeof port?.port !== 'string') {
        emit(peer.cidr, portMatch(port));
        continue;
      }
      const proto = port.protocol === 'UDP' ? 'udp' : 'tcp';
      const name = port.port;
      if (dir === 'ingress') {
        const n = namedPort(pod, name, proto);
        if (n !== undefined) emit(peer.cidr, portMatch(port, n));
        continue;
      }
      // egress: the destination pods that have a port of that name
      const owners = peer.pod
        ? [peer.pod]
        : pods.filter((p) => cidrContains(parseCidr(peer.cidr, { allowHostBits: true }), ip4ToInt(p.ip)));
      for (const o of owners) {
        const n = namedPort(o, name, proto);
        if (n !== undefined) emit(`${o.ip}/32`, portMatch(port, n));
      }
    }
  return out;
}

/** Compile the policies for every node: per isolated pod and direction, one chain and its jumps. */
export function compilePolicies(input: PolicyInput, pods: readonly ResolvedPod[]): Map<string, NodePolicy> {
  const nodes = new Map<string, NodePolicy & { ingress: PolicyRule[] }>();
  const expanded = new Map<PolicyRuleSpec, Peer[]>();
  for (const pod of pods) {
    let node = nodes.get(pod.node);
    if (!node) {
      node = { chains: [], forward: [], input: [], ingress: [] };
      nodes.set(pod.node, node);
    }
    for (const dir of ['egress', 'ingress'] as const) {
      const selecting = selectingPolicies(input, pod, dir);
      if (selecting.length === 0) continue;
      const name = policyChain(pod, dir);
      const who = `${pod.namespace}/${pod.name}`;
      const selectedBy = selecting.map((p) => `${p.namespace}/${p.name}`);
      const chainRule = (spec: string, role: 'jump' | 'established' | 'default-deny'): PolicyRule => ({
        spec,
        origin: { kind: 'policy-chain', pod: who, direction: dir, role, selectedBy },
      });
      const rules = [chainRule('-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT', 'established')];
      const seen = new Set(rules.map((r) => r.spec));
      for (const policy of selecting) {
        const list = dir === 'ingress' ? policy.ingress : policy.egress;
        for (let k = 0; k < list.length; k++)
          for (const r of ruleSpecs(input, pods, policy, k, pod, dir, expanded))
            if (!seen.has(r.spec)) {
              seen.add(r.spec);
              rules.push(r);
            }
      }
      const by = selectedBy.join(', ');
      rules.push(
        chainRule(
          `${comment(`no policy selecting ${who} allows this ${dir} (selected by: ${by})`)} -j DROP`,
          'default-deny',
        ),
      );
      node.chains.push({ name, rules });
      const jump = chainRule(
        `${dir === 'egress' ? '-s' : '-d'} ${pod.ip}/32 ${comment(`${dir} policy of ${who}`)} -j ${name}`,
        'jump',
      );
      if (dir === 'ingress') node.ingress.push(jump);
      else {
        node.forward.push(jump);
        node.input.push(jump);
      }
    }
  }
  // egress jumps before ingress jumps: a same-node flow meets its source's egress chain first
  const out = new Map<string, NodePolicy>();
  for (const [name, n] of nodes)
    if (n.chains.length)
      out.set(name, { chains: n.chains, forward: [...n.forward, ...n.ingress], input: n.input });
  return out;
}
