/**
 * Cluster-file loader: YAML text in, validated {@link ClusterSpec} out, or a {@link ClusterError}
 * that points at the YAML node at fault (`FILE:LINE:COL: MESSAGE`). Platform-free: takes text, not
 * paths.
 *
 * The format (every key not listed here is an error):
 *
 * ```yaml
 * name: seed                 # optional, default "cluster"
 * cni: flannel-vxlan         # one of CNI_MODES (spec.ts); default flannel-vxlan
 * mtu: 1500                  # underlay MTU, integer 576..9216, default 1500
 * podMtu: 1450               # optional, integer 576..9216
 * calicoLayout: calico       # optional, calico-* modes: calico (default; calico-node's cali* veths,
 *                            # proxy ARP, /32 routes, IPAM blocks) | bridge (the article's cni0 picture)
 * ipamBlockSize: 26          # optional, calico layout: the IPPool's blockSize, 20..32 (default 26);
 *                            # each node's blocks are carved from its podCIDR, so no larger than it
 * subnets:                   # optional; default: one segment "lan0" whose cidr is the network of the
 *                            # first node's ip/prefix. When given: non-empty, unique names, no overlaps.
 *   - name: lan0
 *     cidr: 192.168.1.0/24   # network address: host bits must be zero
 *     gateway: 192.168.1.1   # optional, inside cidr (not its network or broadcast address)
 *     gatewayMac: 02:...     # optional
 * nodes:                     # required, at least one
 *   - name: node1            # unique; 1-63 of a-z 0-9 - . (starting and ending alphanumeric); not a
 *                            # subnet's name, nor "router" when a subnet has a gateway
 *     ip: 192.168.1.10/24    # address/prefix: inside exactly one subnet, with that subnet's prefix length
 *     podCIDR: 10.244.0.0/24 # network address (overlaps are left to `doctor`)
 *     mac: 02:42:c0:a8:01:0a # optional eth0 MAC; likewise bridgeMac (cni0) and vtepMac (flannel.1)
 *     mtu: 1500              # optional, integer 576..9216
 * pods:                      # optional, default []
 *   - name: pod-a            # unique among pods, not the name of a node or subnet, nor "router" (each
 *                            # is a network namespace of that name)
 *     node: node1            # must name a node
 *     ip: 10.244.0.5         # optional plain IPv4 address (duplicates/outside podCIDR: left to `doctor`)
 *     mac: 62:a1:b2:c3:d4:e5 # optional; hostVethMac likewise
 *     hostVeth: veth-pod-a   # optional Linux ifname: 1-15 chars, no '/', ':' or whitespace, not '.'/'..';
 *                            # unique among the pods of one node; not lo, eth0, cni0, flannel.1 or tunl0
 *     listen: [tcp/8080]     # optional list of "tcp/PORT" | "udp/PORT", PORT 1..65535, no repeats;
 *                            # "tcp/8080/http" also names the container port (IANA_SVC_NAME, unique per pod)
 *     namespace: prod        # optional Kubernetes namespace, default "default"
 *     labels: {app: web}     # optional pod labels (string values)
 *     ready: false           # optional Ready condition, default true (not ready: no Service endpoint)
 * externalHosts:             # optional: hosts on the underlay outside the cluster (a client of
 *   - name: client           # NodePort and LoadBalancer Services); each its own network namespace,
 *                            # sharing the namespace of names with subnets, the router, nodes and pods
 *     ip: 192.168.1.100/24   # address/prefix, as a node's: inside exactly one subnet, with its prefix
 *                            # length, no node's or other host's address
 *     mac: 02:42:c0:a8:01:64 # optional eth0 MAC
 *     listen: [tcp/5432]     # optional listening sockets, as a pod's
 *     routes:                # optional routes besides the subnet's default route: `to` a network,
 *       - {to: 203.0.113.10/32, via: 192.168.1.11}  # `via` an address of its subnet, not its own
 *     labels: {route-reflector: "true"}  # optional Node labels (BGPPeer selectors match them)
 *     routeReflectorClusterID: 244.0.0.1  # optional, Calico: the Node's spec.bgp field (an IPv4
 *                            # address): the node is a route reflector with that cluster ID
 *     asNumber: 64513        # optional, Calico: the Node's spec.bgp.asNumber (1..4294967295), its
 *                            # own AS: sessions with nodes of another AS are eBGP. Default: the
 *                            # BGPConfiguration's asNumber
 * bgpConfiguration:          # optional, Calico: the BGPConfiguration as calicoctl takes it
 *   apiVersion: projectcalico.org/v3     # (metadata.name default; asNumber: the global AS,
 *   kind: BGPConfiguration
 *   metadata: {name: default}
 *   spec: {nodeToNodeMeshEnabled: false}   # default 64512)
 * bgpPeers:                  # optional, Calico: BGPPeer objects as calicoctl takes them; unique names
 *   - apiVersion: projectcalico.org/v3
 *     kind: BGPPeer
 *     metadata: {name: peer-with-route-reflectors}
 *     spec:                  # node (a node's name) or nodeSelector, or neither (every node); then
 *       nodeSelector: all()  # peerSelector, or peerIP (a node's address) with optional asNumber
 *       peerSelector: route-reflector == 'true'   # (the peer's AS, default the global AS; the
 *                            # node at peerIP peers back only if it is its AS). Calico's selectors
 * ipPool:                    # optional, Calico: the IPPool as calicoctl takes it; the pool is the
 *   apiVersion: projectcalico.org/v3   # cluster's pod network (the smallest prefix, at most /16,
 *   kind: IPPool                       # covering every podCIDR). Default: Calico's
 *   metadata: {name: default-ipv4-ippool}   # default-ipv4-ippool with natOutgoing on
 *   spec: {natOutgoing: false}  # felix masquerades what a pod sends out of the pool (default true)
 * flannel:                   # optional, flannel modes: flanneld's flags; default kube-flannel.yml's
 *   ipMasq: false            # --ip-masq: FLANNEL-POSTRTG masquerades what a pod sends out of the
 *                            # cluster's pod network (default true, as kube-flannel.yml passes it)
 * bgp:                       # optional: node-to-node mesh sessions that are not up
 *   - nodes: [node1, node2]  # two different existing nodes; each pair listed once
 *     state: down            # up | down, default down
 * run:                       # optional: "NETNS: command" lines applied after the CNI did its work
 *   - "node1: ip route del 10.244.1.0/24"
 * namespaces:                # optional: namespaces and their labels; unique names. A namespace a pod
 *   - name: prod             # names but that is not listed exists without labels. Every namespace has
 *     labels: {env: prod}    # the label kubernetes.io/metadata.name: NAME, as in Kubernetes
 * policies:                  # optional: networking.k8s.io/v1 NetworkPolicy objects, as `kubectl apply`
 *   - apiVersion: networking.k8s.io/v1   # takes them (apiVersion, kind, metadata, spec); NAMESPACE/NAME
 *     kind: NetworkPolicy                # unique; metadata.namespace defaults to "default"; SCTP
 *     metadata: {name: deny-all}         # ports match nothing modelled. Enforced by calico-* only.
 *     spec: {podSelector: {}}
 * serviceCIDR: 10.96.0.0/12 # optional: the API server's service range (default 10.96.0.0/12)
 * services:                  # optional: v1 Service objects as kubectl takes them; when the list is
 *   - apiVersion: v1         # there (even empty), kube-proxy (iptables mode) programs every node.
 *     kind: Service          # NAMESPACE/NAME unique; metadata.namespace defaults to "default"
 *     metadata: {name: web}
 *     spec:
 *       type: ClusterIP      # ClusterIP | NodePort | LoadBalancer (ExternalName is refused)
 *       selector: {app: web} # optional; without one no EndpointSlice is made
 *       clusterIP: 10.96.0.2 # optional, inside serviceCIDR, unique; "None": headless (type ClusterIP;
 *                            # kube-proxy writes nothing for it)
 *       ports:               # at least one; each needs a name when there are several
 *         - {name: http, port: 80, targetPort: http, protocol: TCP, nodePort: 30080}
 *                            # targetPort: a number or a pod's listen name (default: port); protocol
 *                            # TCP | UDP; nodePort 30000..32767, NodePort/LoadBalancer only, unique
 *       externalTrafficPolicy: Cluster  # Cluster | Local, NodePort/LoadBalancer only
 *       healthCheckNodePort: 32000      # LoadBalancer with Local only; allocated when absent
 *       sessionAffinity: ClientIP       # None | ClientIP (-m recent per endpoint)
 *       sessionAffinityConfig: {clientIP: {timeoutSeconds: 10800}}  # ClientIP only, 1..86400
 *     status: {loadBalancer: {ingress: [{ip: 203.0.113.10}]}}   # LoadBalancer: its ingress IPs
 * endpointSlices:            # optional: discovery.k8s.io/v1 EndpointSlices written by hand, for a
 *   - apiVersion: discovery.k8s.io/v1   # Service without a selector (or beside the controller's);
 *     kind: EndpointSlice              # NAMESPACE/NAME unique; the label names a Service of its
 *     metadata: {name: db-1, labels: {kubernetes.io/service-name: db}}   # namespace
 *     addressType: IPv4
 *     ports: [{name: "", port: 5432, protocol: TCP}]   # name matches the Service port's name
 *     endpoints:
 *       - addresses: [192.168.1.100]   # kube-proxy uses the first
 *         conditions: {ready: true}   # optional, default ready
 *         nodeName: node2             # optional, a node (which node's endpoint it is)
 *         targetRef: {kind: Pod, name: pod-c}   # optional
 * scenario:                  # optional: a ready-made fault for `podwalk doctor --scenario`
 *   title: flanneld missed a node
 *   description: …
 *   from: pod-a              # the flow doctor walks
 *   to: pod-c
 *   port: 8080               # optional
 *   proto: tcp               # tcp | udp | icmp, default tcp
 *   expect:                  # what doctor must find (checked by the tests)
 *     reason: vxlan-fdb-miss # the first drop's reason
 *     netns: node1           # and where
 *     checks: [vxlan-route-without-fdb]
 * ```
 *
 * MACs are six colon-separated hex bytes in either case, unicast and non-zero; they come out lower
 * case. When a file has several problems, the first one in document order is reported.
 */

import { isAlias, isMap, isScalar, isSeq, LineCounter, parseAllDocuments, parseDocument, visit } from 'yaml';
import type { Document } from 'yaml';
import * as z from 'zod';
import { CALICO_LAYOUTS, CNI_MODES, DEFAULT_SERVICE_CIDR, NODE_PORT_RANGE } from './spec.ts';
import { CalicoSelectorError, parseCalicoSelector } from './calico-selector.ts';
import { readPlainYaml } from './plain-yaml.ts';
import type {
  BgpConfigurationSpec,
  IpPoolSpec,
  BgpPeerSpec,
  ClusterSpec,
  EndpointSliceSpec,
  ListenSpec,
  NetworkPolicySpec,
  PodSpec,
  PolicyRuleSpec,
  ServicePortSpec,
  ServiceSpec,
  SubnetSpec,
} from './spec.ts';
import {
  broadcastOf,
  cidrContains,
  cidrOf,
  cidrsOverlap,
  cidrText,
  networkOf,
  parseIp4,
  type Cidr,
} from '../wire/addr.ts';

/** A problem in a cluster file, located at the YAML node at fault. */
export class ClusterError extends Error {
  override readonly name = 'ClusterError';
  /** The file name given to {@link loadCluster} */
  readonly file: string;
  /** 1-based */
  readonly line: number;
  /** 1-based */
  readonly col: number;
  /** The problem alone, without the `FILE:LINE:COL: ` prefix of {@link ClusterError.message} */
  readonly reason: string;

  constructor(file: string, line: number, col: number, reason: string) {
    super(`${file}:${line}:${col}: ${reason}`);
    this.file = file;
    this.line = line;
    this.col = col;
    this.reason = reason;
  }
}

// ---------------------------------------------------------------------------------------------
// IPv4 and CIDR: the wire layer's helpers (parseIp4, cidrOf and the prefix arithmetic)

/** For prefixes up to /30, the all-zeros and all-ones host parts are not usable addresses. */
function specialHostAddress(net: Cidr, addr: number): string | undefined {
  if (net.len > 30) return undefined;
  if (addr === networkOf(net)) return 'network';
  if (addr === broadcastOf(net)) return 'broadcast';
  return undefined;
}

/** A valid network CIDR (host bits zero), e.g. "10.244.0.0/24". */
function networkCidr(s: string): Cidr | undefined {
  const p = cidrOf(s);
  return p && networkOf(p) === p.addr ? p : undefined;
}

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

const NAME_RE = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/;

/** Linux dev_valid_name(): 1..15 bytes, not "." or "..", no '/', ':' or whitespace. */
function validIfName(s: string): boolean {
  return s.length >= 1 && s.length <= 15 && s !== '.' && s !== '..' && !/[/:\s]/.test(s);
}

// ---------------------------------------------------------------------------------------------
// Messages

/** Optimal-string-alignment distance (Levenshtein plus adjacent transpositions). */
function editDistance(a: string, b: string): number {
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    d.push([i]);
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        d[i].push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, d[i - 2][j - 2] + 1);
      d[i].push(v);
    }
  }
  return d[a.length][b.length];
}

/** The closest candidate, if it is close enough to be a plausible typo. */
function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = editDistance(word.toLowerCase(), c.toLowerCase());
    if (dist < bestD) {
      best = c;
      bestD = dist;
    }
  }
  if (best === undefined) return undefined;
  if (bestD <= 2 && bestD < word.length / 2) return best;
  // "flannel" for "flannel-vxlan"
  if (word.length >= 3 && best !== word && candidates.filter((c) => c.startsWith(word)).length === 1) {
    return candidates.find((c) => c.startsWith(word));
  }
  return undefined;
}

function didYouMean(word: string, candidates: readonly string[]): string {
  const s = suggest(word, candidates);
  return s === undefined ? '' : ` (did you mean "${s}"?)`;
}

function describe(v: unknown): string {
  if (v === null) return 'an empty value';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') {
    const s = v.length > 60 ? `${v.slice(0, 57)}...` : v;
    return `string ${JSON.stringify(s)}`;
  }
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${String(v)}`;
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  array: 'a list',
  tuple: 'a list',
  object: 'a mapping',
  boolean: 'true or false',
};

type Path = readonly PropertyKey[];

/** "mtu", "listen[1]", "nodes[0]", or "the cluster file" for the root. */
function label(path: Path): string {
  let i = path.length;
  while (i > 0 && typeof path[i - 1] === 'number') i--;
  const idx = path
    .slice(i)
    .map((n) => `[${String(n)}]`)
    .join('');
  if (i === 0) return idx === '' ? 'the cluster file' : `item ${idx}`;
  return `${String(path[i - 1])}${idx}`;
}

const ENTITY: Record<string, string> = {
  subnets: 'subnet',
  nodes: 'node',
  pods: 'pod',
  externalHosts: 'external host',
  namespaces: 'namespace',
};

/** " in node \"node1\"", " in bgp[0]", "" for the root. */
function where(raw: unknown, path: Path): string {
  if (path.length === 0) return '';
  const item = getIn(raw, path);
  const list = String(path[0]);
  const name = isRecord(item) ? item.name : undefined;
  if (path.length === 2 && ENTITY[list] !== undefined && typeof name === 'string') {
    return ` in ${ENTITY[list]} ${JSON.stringify(name)}`;
  }
  return ` in ${label(path)}`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function getIn(raw: unknown, path: Path): unknown {
  let v = raw;
  for (const seg of path) {
    if (Array.isArray(v) && typeof seg === 'number') v = v[seg];
    else if (isRecord(v) && typeof seg === 'string') v = v[seg];
    else return undefined;
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Schema (shapes, types and the format of single values; cross-references are checked below)

const str = (fn: (s: string, ctx: z.RefinementCtx) => void) =>
  z.string().transform((s, ctx) => {
    const before = ctx.issues.length;
    fn(s, ctx);
    return ctx.issues.length > before ? z.NEVER : s;
  });

const nameSchema = (what: string) =>
  str((s, ctx) => {
    if (!NAME_RE.test(s)) {
      ctx.addIssue({
        code: 'custom',
        message:
          `invalid ${what} name ${JSON.stringify(s)}: use 1-63 lower-case letters, digits, '-' and '.', ` +
          'starting and ending with a letter or digit',
      });
    }
  });

const ipv4Schema = (key: string) =>
  str((s, ctx) => {
    if (parseIp4(s) === undefined) {
      const hint = s.includes('/') ? ' (a plain address, without /prefix)' : '';
      ctx.addIssue({
        code: 'custom',
        message: `${key} ${JSON.stringify(s)} is not a valid IPv4 address${hint}`,
      });
    }
  });

const cidrSchema = (key: string) =>
  str((s, ctx) => {
    const p = cidrOf(s);
    if (p === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `${key} ${JSON.stringify(s)} is not a valid IPv4 CIDR (ADDRESS/PREFIX, PREFIX 0..32)`,
      });
    } else if (networkOf(p) !== p.addr) {
      ctx.addIssue({ code: 'custom', message: `${s} has host bits set; did you mean ${cidrText(p)}?` });
    }
  });

/** An interface address with its prefix length, e.g. "192.168.1.10/24". */
const ifAddrSchema = (key: string) =>
  str((s, ctx) => {
    if (cidrOf(s) !== undefined) return;
    const hint = parseIp4(s) !== undefined ? `; add the prefix length, e.g. ${s}/24` : '';
    ctx.addIssue({
      code: 'custom',
      message: `${key} ${JSON.stringify(s)} is not a valid ADDRESS/PREFIX${hint}`,
    });
  });

const macSchema = (key: string) =>
  z.string().transform((s, ctx) => {
    const bad = (why: string) => {
      ctx.addIssue({ code: 'custom', message: `${key} ${JSON.stringify(s)} ${why}` });
      return z.NEVER;
    };
    if (!MAC_RE.test(s)) return bad('is not a MAC address (six hex bytes separated by ":")');
    const mac = s.toLowerCase();
    if (mac === '00:00:00:00:00:00') return bad('is the all-zero address');
    if (parseInt(mac.slice(0, 2), 16) & 1) return bad('is a multicast address; a device needs a unicast MAC');
    return mac;
  });

const intRange = (key: string, lo: number, hi: number) => {
  const message = (got: string) => `${key} must be an integer in ${lo}..${hi}, got ${got}`;
  return z
    .number({ error: (iss) => (iss.code === 'invalid_type' ? message(describe(iss.input)) : undefined) })
    .superRefine((v, ctx) => {
      if (!Number.isInteger(v) || v < lo || v > hi)
        ctx.addIssue({ code: 'custom', message: message(String(v)) });
    });
};

/** a 4-octet AS number (RFC 6793; Calico's numorstring.ASNumber as an integer; 0 is no AS) */
const asNumberSchema = intRange('asNumber', 1, 4294967295);

const nonEmpty = (message: string) =>
  z.string().superRefine((s, ctx) => {
    if (s === '') ctx.addIssue({ code: 'custom', message });
  });

/** "tcp/8080" or "tcp/8080/http" (a named container port) */
const LISTEN_RE = /^(tcp|udp)\/(0|[1-9][0-9]{0,4})(?:\/([^/]*))?$/;

/** IANA_SVC_NAME, as Kubernetes validates container port names: 1-15 of a-z 0-9 -, a letter, no "--" */
function validPortName(s: string): boolean {
  return /^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/.test(s) && /[a-z]/.test(s) && !s.includes('--');
}
const PORT_NAME_RULE =
  '1-15 lower-case letters, digits and "-", with a letter, no "--" and no "-" at either end';

const listenSchema = z.string().transform((s, ctx): ListenSpec => {
  const m = LISTEN_RE.exec(s);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) {
    ctx.addIssue({
      code: 'custom',
      message: `listen entry ${JSON.stringify(s)} must be "tcp/PORT", "udp/PORT" or "PROTO/PORT/NAME" with PORT 1..65535`,
    });
    return z.NEVER;
  }
  if (m[3] !== undefined && !validPortName(m[3])) {
    ctx.addIssue({
      code: 'custom',
      message: `listen entry ${JSON.stringify(s)}: port name ${JSON.stringify(m[3])} is not valid (${PORT_NAME_RULE})`,
    });
    return z.NEVER;
  }
  // the literal, not the match's own copy of it: one string for every pod's listener
  const proto = m[1] === 'tcp' ? 'tcp' : 'udp';
  return m[3] === undefined ? { proto, port } : { proto, port, name: m[3] };
});

const LABEL_KEY_RE =
  /^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE_RE = /^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/;

/** Kubernetes labels: qualified keys, values of at most 63 characters (strings: quote numbers) */
const labelsSchema = z.record(z.string(), z.string()).superRefine((labels, ctx) => {
  for (const [k, v] of Object.entries(labels)) {
    if (!LABEL_KEY_RE.test(k))
      ctx.addIssue({ code: 'custom', path: [k], message: `invalid label key ${JSON.stringify(k)}` });
    else if (!LABEL_VALUE_RE.test(v))
      ctx.addIssue({
        code: 'custom',
        path: [k],
        message: `invalid label value ${JSON.stringify(v)} for ${k}: at most 63 of A-Z a-z 0-9 - _ ., alphanumeric at both ends`,
      });
  }
});

const runSchema = str((s, ctx) => {
  if (!/^[^\s:]+: +\S/.test(s)) {
    ctx.addIssue({
      code: 'custom',
      message: `run line ${JSON.stringify(s)} must look like "NETNS: command"`,
    });
  }
});

const SubnetSchema = z.strictObject({
  name: nameSchema('subnet'),
  cidr: cidrSchema('cidr'),
  gateway: ipv4Schema('gateway').optional(),
  gatewayMac: macSchema('gatewayMac').optional(),
});

const NodeSchema = z.strictObject({
  name: nameSchema('node'),
  ip: ifAddrSchema('ip'),
  podCIDR: cidrSchema('podCIDR'),
  mac: macSchema('mac').optional(),
  bridgeMac: macSchema('bridgeMac').optional(),
  vtepMac: macSchema('vtepMac').optional(),
  mtu: intRange('mtu', 576, 9216).optional(),
  labels: labelsSchema.optional(),
  routeReflectorClusterID: ipv4Schema('routeReflectorClusterID').optional(),
  asNumber: asNumberSchema.optional(),
});

const ExternalHostSchema = z.strictObject({
  name: nameSchema('external host'),
  ip: ifAddrSchema('ip'),
  mac: macSchema('mac').optional(),
  listen: z.array(listenSchema).default([]),
  routes: z.array(z.strictObject({ to: cidrSchema('to'), via: ipv4Schema('via') })).default([]),
});

const PodSchema = z.strictObject({
  name: nameSchema('pod'),
  node: z.string(),
  ip: ipv4Schema('ip').optional(),
  mac: macSchema('mac').optional(),
  hostVeth: str((s, ctx) => {
    if (!validIfName(s)) {
      ctx.addIssue({
        code: 'custom',
        message:
          `hostVeth ${JSON.stringify(s)} is not a valid interface name ` +
          `(1-15 characters, no '/', ':' or whitespace, not '.' or '..')`,
      });
    }
  }).optional(),
  hostVethMac: macSchema('hostVethMac').optional(),
  listen: z.array(listenSchema).default([]),
  namespace: nameSchema('namespace').optional(),
  labels: labelsSchema.optional(),
  ready: z.boolean().optional(),
});

/**
 * The pods of a cluster file as PodSchema gives them, read straight when every pod is of the
 * common shape: the keys name, node, ip, namespace, listen, labels and ready only, each valid
 * (what the schema would accept, the values it would give, in the schema's key order). Undefined
 * when any pod is otherwise (another key, a value the schema refuses or changes): then the schema
 * reads them, and places any problem. The schema's checks made once per value, without its
 * payloads, issue lists and second copy of every object (30,000 pods at 1,000 nodes).
 */
export function plainPods(pods: unknown): PodSpec[] | undefined {
  if (!Array.isArray(pods)) return undefined;
  const out: PodSpec[] = new Array(pods.length);
  for (let i = 0; i < pods.length; i++) {
    const p = plainPod(pods[i]);
    if (p === undefined) return undefined;
    out[i] = p;
  }
  return out;
}

/** the pods as PodSchema gives them, or undefined where it refuses them (plainPods' reference, for tests) */
export function podsBySchema(pods: unknown): PodSpec[] | undefined {
  const r = z.array(PodSchema).safeParse(pods);
  return r.success ? r.data : undefined;
}

const PLAIN_POD_KEYS = new Set(['name', 'node', 'ip', 'listen', 'namespace', 'labels', 'ready']);

function plainPod(raw: unknown): PodSpec | undefined {
  if (!isRecord(raw)) return undefined;
  for (const k in raw) {
    if (!Object.hasOwn(raw, k) || !PLAIN_POD_KEYS.has(k)) return undefined;
  }
  if (Object.getOwnPropertySymbols(raw).length > 0) return undefined;
  const { name, node, ip, listen, namespace, labels, ready } = raw;
  if (typeof name !== 'string' || !NAME_RE.test(name) || typeof node !== 'string') return undefined;
  if ('ip' in raw && (typeof ip !== 'string' || parseIp4(ip) === undefined)) return undefined;
  let ls: ListenSpec[] = [];
  if ('listen' in raw) {
    if (!Array.isArray(listen)) return undefined;
    ls = new Array(listen.length);
    for (let j = 0; j < listen.length; j++) {
      const l = plainListen(listen[j]);
      if (l === undefined) return undefined;
      ls[j] = l;
    }
  }
  // made whole, in the schema's key order (an object literal: no room for keys it will not get)
  const pod: PodSpec =
    'ip' in raw ? { name, node, ip: ip as string, listen: ls } : { name, node, listen: ls };
  if ('namespace' in raw) {
    if (typeof namespace !== 'string' || !NAME_RE.test(namespace)) return undefined;
    pod.namespace = namespace;
  }
  if ('labels' in raw) {
    if (!isRecord(labels) || Object.getOwnPropertySymbols(labels).length > 0) return undefined;
    const copy: Record<string, string> = {};
    for (const k of Object.keys(labels)) {
      const v = labels[k];
      if (k === '__proto__' || typeof v !== 'string' || !LABEL_KEY_RE.test(k) || !LABEL_VALUE_RE.test(v))
        return undefined;
      copy[k] = v;
    }
    pod.labels = copy;
  }
  if ('ready' in raw) {
    if (typeof ready !== 'boolean') return undefined;
    pod.ready = ready;
  }
  return pod;
}

/** a listen entry as listenSchema gives it, or undefined where it refuses it */
function plainListen(s: unknown): ListenSpec | undefined {
  if (typeof s !== 'string') return undefined;
  const m = LISTEN_RE.exec(s);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) return undefined;
  if (m[3] !== undefined && !validPortName(m[3])) return undefined;
  // the literal, not the match's own copy of it: one string for every pod's listener
  const proto = m[1] === 'tcp' ? 'tcp' : 'udp';
  return m[3] === undefined ? { proto, port } : { proto, port, name: m[3] };
}

const NamespaceSchema = z.strictObject({
  name: nameSchema('namespace'),
  labels: labelsSchema.default({}),
});

// NetworkPolicy (networking.k8s.io/v1), validated as the API server does, then normalised

const SelectorSchema = z.strictObject({
  matchLabels: labelsSchema.optional(),
  matchExpressions: z
    .array(
      z
        .strictObject({
          key: z.string(),
          operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
          values: z.array(z.string()).optional(),
        })
        .superRefine((e, ctx) => {
          const n = e.values?.length ?? 0;
          if ((e.operator === 'In' || e.operator === 'NotIn') && n === 0)
            ctx.addIssue({ code: 'custom', message: `operator ${e.operator} needs a non-empty values list` });
          if ((e.operator === 'Exists' || e.operator === 'DoesNotExist') && n > 0)
            ctx.addIssue({
              code: 'custom',
              path: ['values'],
              message: `operator ${e.operator} takes no values`,
            });
        }),
    )
    .optional(),
});

/**
 * An ipBlock CIDR as the API server takes it (IsValidCIDRForLegacyField: ParseCIDRSloppy): host
 * bits are allowed; the policy means the network (the CNI plugins program the masked prefix), so
 * the value is kept masked, and ipBlockWarnings says what the API server warns about it.
 */
const ipBlockCidrSchema = (key: string) =>
  z.unknown().transform((v, ctx): string => {
    const p = typeof v === 'string' ? cidrOf(v) : undefined;
    if (p === undefined) {
      ctx.addIssue({
        code: 'custom',
        message:
          typeof v === 'string'
            ? `${key} ${JSON.stringify(v)} is not a valid IPv4 CIDR (ADDRESS/PREFIX, PREFIX 0..32)`
            : `${key} must be a string, got ${describe(v)}`,
      });
      return z.NEVER;
    }
    return cidrText(p);
  });

const IpBlockSchema = z
  .strictObject({
    cidr: ipBlockCidrSchema('cidr'),
    except: z.array(ipBlockCidrSchema('except')).optional(),
  })
  .superRefine((b, ctx) => {
    const outer = networkCidr(b.cidr);
    b.except?.forEach((e, i) => {
      const inner = networkCidr(e);
      if (outer && inner && (inner.len <= outer.len || !cidrContains(outer, inner.addr)))
        ctx.addIssue({
          code: 'custom',
          path: ['except', i],
          message: `except ${e} is not a strict subset of cidr ${b.cidr}`,
        });
    });
  });

const PeerSchema = z
  .strictObject({
    podSelector: SelectorSchema.optional(),
    namespaceSelector: SelectorSchema.optional(),
    ipBlock: IpBlockSchema.optional(),
  })
  .superRefine((p, ctx) => {
    if (p.ipBlock && (p.podSelector || p.namespaceSelector))
      ctx.addIssue({
        code: 'custom',
        path: ['ipBlock'],
        message: 'ipBlock cannot be combined with podSelector or namespaceSelector in one peer',
      });
    else if (!p.ipBlock && !p.podSelector && !p.namespaceSelector)
      ctx.addIssue({ code: 'custom', message: 'a peer needs podSelector, namespaceSelector or ipBlock' });
  });

/** IntOrString: a port number or the name of a container port */
const policyPortSchema = z.unknown().transform((v, ctx): number | string => {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535) return v;
  if (typeof v === 'string' && validPortName(v)) return v;
  ctx.addIssue({
    code: 'custom',
    message:
      typeof v === 'string'
        ? `port ${JSON.stringify(v)} is not a valid port name (${PORT_NAME_RULE})`
        : `port must be an integer in 1..65535 or a port name, got ${describe(v)}`,
  });
  return z.NEVER;
});

/** SCTP is a valid protocol of the API that the model does not carry: a Service of it is refused */
function refuseSctp(protocol: string, ctx: z.RefinementCtx): void {
  if (protocol === 'SCTP')
    ctx.addIssue({
      code: 'custom',
      path: ['protocol'],
      message: 'protocol SCTP is not modelled (podwalk carries TCP, UDP and ICMP)',
    });
}

const PolicyPortSchema = z
  .strictObject({
    protocol: z.enum(['TCP', 'UDP', 'SCTP']).default('TCP'),
    port: policyPortSchema.optional(),
    endPort: intRange('endPort', 1, 65535).optional(),
  })
  .superRefine((p, ctx) => {
    // SCTP entries are taken as the API server takes them and match nothing podwalk carries
    if (p.endPort === undefined) return;
    if (typeof p.port !== 'number')
      ctx.addIssue({ code: 'custom', path: ['endPort'], message: 'endPort needs a numeric port' });
    else if (p.endPort < p.port)
      ctx.addIssue({
        code: 'custom',
        path: ['endPort'],
        message: `endPort ${p.endPort} is less than port ${p.port}`,
      });
  });

const PortsSchema = z.array(PolicyPortSchema).optional();

const IngressRuleSchema = z
  .strictObject({ from: z.array(PeerSchema).optional(), ports: PortsSchema })
  .transform((r): PolicyRuleSpec => ({ peers: r.from ?? [], ports: r.ports ?? [] }));

const EgressRuleSchema = z
  .strictObject({ to: z.array(PeerSchema).optional(), ports: PortsSchema })
  .transform((r): PolicyRuleSpec => ({ peers: r.to ?? [], ports: r.ports ?? [] }));

const POLICY_TYPES = ['Ingress', 'Egress'] as const;

const NetworkPolicySchema = z
  .strictObject({
    apiVersion: z.literal('networking.k8s.io/v1'),
    kind: z.literal('NetworkPolicy'),
    metadata: z.strictObject({
      name: nameSchema('policy'),
      namespace: nameSchema('namespace').default('default'),
      labels: labelsSchema.optional(),
      annotations: z.record(z.string(), z.string()).optional(),
    }),
    spec: z.strictObject({
      podSelector: SelectorSchema.default({}),
      policyTypes: z
        .array(z.enum(POLICY_TYPES))
        .superRefine((a, ctx) => {
          if (new Set(a).size !== a.length)
            ctx.addIssue({ code: 'custom', message: 'policyTypes lists a type twice' });
        })
        .optional(),
      ingress: z.array(IngressRuleSchema).optional(),
      egress: z.array(EgressRuleSchema).optional(),
    }),
  })
  .transform(({ metadata, spec }): NetworkPolicySpec => {
    // the API server's defaulting: Ingress always, Egress when there are egress rules
    const types: NetworkPolicySpec['policyTypes'] =
      spec.policyTypes && spec.policyTypes.length > 0
        ? POLICY_TYPES.filter((t) => spec.policyTypes!.includes(t))
        : spec.egress && spec.egress.length > 0
          ? ['Ingress', 'Egress']
          : ['Ingress'];
    return {
      name: metadata.name,
      namespace: metadata.namespace,
      podSelector: spec.podSelector,
      policyTypes: types,
      ingress: spec.ingress ?? [],
      egress: spec.egress ?? [],
    };
  });

const PolicyDocSchema = NetworkPolicySchema.transform((p) => [p]);

const PolicyListSchema = z
  .strictObject({
    apiVersion: z.literal('v1'),
    kind: z.literal('List'),
    metadata: z.record(z.string(), z.unknown()).optional(),
    items: z.array(NetworkPolicySchema),
  })
  .transform((l) => l.items);

/** "NAMESPACE/NAME" of a raw policy or Service object, if it has a usable name */
function policyKey(item: Item): string | undefined {
  const md = item.metadata;
  if (!isRecord(md) || typeof md.name !== 'string') return undefined;
  return `${typeof md.namespace === 'string' ? md.namespace : 'default'}/${md.name}`;
}

// Service (v1), validated and defaulted as the API server does

const ServicePortSchema = z
  .strictObject({
    name: z
      .string()
      .superRefine((s, ctx) => {
        if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(s))
          ctx.addIssue({
            code: 'custom',
            message: `port name ${JSON.stringify(s)} is not valid: 1-63 lower-case letters, digits and "-", alphanumeric at both ends`,
          });
      })
      .optional(),
    protocol: z.enum(['TCP', 'UDP', 'SCTP']).default('TCP'),
    port: intRange('port', 1, 65535),
    targetPort: policyPortSchema.optional(),
    nodePort: intRange('nodePort', NODE_PORT_RANGE[0], NODE_PORT_RANGE[1]).optional(),
    appProtocol: z.string().optional(),
  })
  .superRefine((p, ctx) => refuseSctp(p.protocol, ctx))
  .transform((p): ServicePortSpec => ({
    name: p.name ?? '',
    protocol: p.protocol === 'UDP' ? 'UDP' : 'TCP',
    port: p.port,
    targetPort: p.targetPort ?? p.port,
    ...(p.nodePort !== undefined ? { nodePort: p.nodePort } : {}),
  }));

const ServiceSchema = z
  .strictObject({
    apiVersion: z.literal('v1'),
    kind: z.literal('Service'),
    metadata: z.strictObject({
      name: nameSchema('service'),
      namespace: nameSchema('namespace').default('default'),
      labels: labelsSchema.optional(),
      annotations: z.record(z.string(), z.string()).optional(),
    }),
    spec: z
      .strictObject({
        type: z.enum(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']).default('ClusterIP'),
        selector: labelsSchema.optional(),
        clusterIP: str((s, ctx) => {
          if (s !== 'None' && parseIp4(s) === undefined)
            ctx.addIssue({
              code: 'custom',
              message: `clusterIP ${JSON.stringify(s)} is not a valid IPv4 address`,
            });
        }).optional(),
        ports: z.array(ServicePortSchema).superRefine((a, ctx) => {
          if (a.length === 0) ctx.addIssue({ code: 'custom', message: 'ports must list at least one port' });
        }),
        externalTrafficPolicy: z.enum(['Cluster', 'Local']).optional(),
        healthCheckNodePort: intRange(
          'healthCheckNodePort',
          NODE_PORT_RANGE[0],
          NODE_PORT_RANGE[1],
        ).optional(),
        sessionAffinity: z.enum(['None', 'ClientIP']).optional(),
        sessionAffinityConfig: z
          .strictObject({
            clientIP: z
              .strictObject({ timeoutSeconds: intRange('timeoutSeconds', 1, 86400).optional() })
              .optional(),
          })
          .optional(),
      })
      .superRefine((sp, ctx) => {
        if (sp.type === 'ExternalName')
          ctx.addIssue({
            code: 'custom',
            path: ['type'],
            message: 'type ExternalName is not modelled (it is DNS only)',
          });
        // the API server's validation (pkg/apis/core/validation ValidateService)
        if (sp.sessionAffinityConfig !== undefined && sp.sessionAffinity !== 'ClientIP')
          ctx.addIssue({
            code: 'custom',
            path: ['sessionAffinityConfig'],
            message: 'sessionAffinityConfig may only be set when sessionAffinity is ClientIP',
          });
        const headless = sp.clusterIP === 'None';
        if (headless && sp.type !== 'ClusterIP')
          ctx.addIssue({
            code: 'custom',
            path: ['clusterIP'],
            message: `clusterIP None (headless) needs type ClusterIP, not ${sp.type}`,
          });
        if (headless && sp.sessionAffinity === 'ClientIP')
          ctx.addIssue({
            code: 'custom',
            path: ['sessionAffinity'],
            message: 'sessionAffinity ClientIP needs a ClusterIP, and this Service is headless',
          });
        if (
          sp.healthCheckNodePort !== undefined &&
          (sp.type !== 'LoadBalancer' || sp.externalTrafficPolicy !== 'Local')
        )
          ctx.addIssue({
            code: 'custom',
            path: ['healthCheckNodePort'],
            message:
              'healthCheckNodePort may only be set when type is LoadBalancer and externalTrafficPolicy is Local',
          });
        const external = sp.type === 'NodePort' || sp.type === 'LoadBalancer';
        if (sp.externalTrafficPolicy !== undefined && !external)
          ctx.addIssue({
            code: 'custom',
            path: ['externalTrafficPolicy'],
            message: 'externalTrafficPolicy may only be set when type is NodePort or LoadBalancer',
          });
        const names = new Set<string>();
        const portProtos = new Set<string>();
        sp.ports.forEach((p, i) => {
          if (sp.ports.length > 1 && p.name === '')
            ctx.addIssue({
              code: 'custom',
              path: ['ports', i],
              message: 'a Service with more than one port needs a name for each port',
            });
          else if (p.name !== '' && names.has(p.name))
            ctx.addIssue({
              code: 'custom',
              path: ['ports', i, 'name'],
              message: `port name "${p.name}" is used twice`,
            });
          names.add(p.name);
          const key = `${p.protocol}/${p.port}`;
          if (portProtos.has(key))
            ctx.addIssue({
              code: 'custom',
              path: ['ports', i, 'port'],
              message: `port ${key} is listed twice`,
            });
          portProtos.add(key);
          if (p.nodePort !== undefined && !external)
            ctx.addIssue({
              code: 'custom',
              path: ['ports', i, 'nodePort'],
              message: 'nodePort may only be set when type is NodePort or LoadBalancer',
            });
        });
      }),
    status: z
      .strictObject({
        loadBalancer: z
          .strictObject({ ingress: z.array(z.strictObject({ ip: ipv4Schema('ip') })).default([]) })
          .default({ ingress: [] }),
      })
      .optional(),
  })
  .transform(({ metadata, spec, status }): ServiceSpec => ({
    name: metadata.name,
    namespace: metadata.namespace,
    type: spec.type === 'ExternalName' ? 'ClusterIP' : spec.type,
    ...(spec.selector !== undefined ? { selector: spec.selector } : {}),
    ...(spec.clusterIP !== undefined ? { clusterIP: spec.clusterIP } : {}),
    ports: spec.ports,
    externalTrafficPolicy: spec.externalTrafficPolicy ?? 'Cluster',
    ...(spec.healthCheckNodePort !== undefined ? { healthCheckNodePort: spec.healthCheckNodePort } : {}),
    ...(spec.sessionAffinity === 'ClientIP'
      ? { affinitySeconds: spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? 10800 }
      : {}),
    loadBalancerIPs:
      spec.type === 'LoadBalancer' ? (status?.loadBalancer.ingress.map((i) => i.ip) ?? []) : [],
  }));

// EndpointSlice (discovery.k8s.io/v1) written by hand

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

const EndpointSliceSchema = z
  .strictObject({
    apiVersion: z.literal('discovery.k8s.io/v1'),
    kind: z.literal('EndpointSlice'),
    metadata: z.strictObject({
      name: nameSchema('endpointslice'),
      namespace: nameSchema('namespace').default('default'),
      labels: labelsSchema.optional(),
      annotations: z.record(z.string(), z.string()).optional(),
    }),
    addressType: z.literal('IPv4'),
    ports: z
      .array(
        z
          .strictObject({
            name: z.string().default(''),
            protocol: z.enum(['TCP', 'UDP', 'SCTP']).default('TCP'),
            port: intRange('port', 1, 65535),
            appProtocol: z.string().optional(),
          })
          .superRefine((p, ctx) => refuseSctp(p.protocol, ctx)),
      )
      .default([]),
    endpoints: z
      .array(
        z.strictObject({
          addresses: z.array(ipv4Schema('address')).superRefine((a, ctx) => {
            if (a.length === 0) ctx.addIssue({ code: 'custom', message: 'addresses must list an address' });
          }),
          conditions: z
            .strictObject({
              ready: z.boolean().optional(),
              serving: z.boolean().optional(),
              terminating: z.boolean().optional(),
            })
            .optional(),
          nodeName: z.string().optional(),
          zone: z.string().optional(),
          hostname: z.string().optional(),
          targetRef: z
            .strictObject({
              kind: z.string().optional(),
              name: z.string(),
              namespace: z.string().optional(),
              uid: z.string().optional(),
            })
            .optional(),
        }),
      )
      .default([]),
  })
  .transform(({ metadata, ports, endpoints }): EndpointSliceSpec => ({
    name: metadata.name,
    namespace: metadata.namespace,
    service: metadata.labels?.[SERVICE_NAME_LABEL] ?? '',
    ports: ports.map((p) => ({ name: p.name, protocol: p.protocol === 'UDP' ? 'UDP' : 'TCP', port: p.port })),
    endpoints: endpoints.map((e) => ({
      ip: e.addresses[0],
      ready: e.conditions?.ready ?? true,
      ...(e.nodeName !== undefined ? { nodeName: e.nodeName } : {}),
      ...(e.targetRef && (e.targetRef.kind ?? 'Pod') === 'Pod'
        ? { pod: `${e.targetRef.namespace ?? metadata.namespace}/${e.targetRef.name}` }
        : {}),
    })),
  }));

const BgpSchema = z.strictObject({
  nodes: z.array(z.string()).transform((a, ctx): [string, string] => {
    if (a.length !== 2) {
      ctx.addIssue({ code: 'custom', message: `a bgp session names exactly 2 nodes, got ${a.length}` });
      return z.NEVER;
    }
    return [a[0], a[1]];
  }),
  state: z.enum(['up', 'down']).default('down'),
});

const calicoSelectorSchema = (key: string) =>
  str((s, ctx) => {
    try {
      parseCalicoSelector(s);
    } catch (e) {
      if (!(e instanceof CalicoSelectorError)) throw e;
      ctx.addIssue({ code: 'custom', message: `${key}: ${e.message}` });
    }
  });

const calicoMetadata = z.strictObject({
  name: nameSchema('object'),
  labels: labelsSchema.optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});

const BgpConfigurationSchema = z
  .strictObject({
    apiVersion: z.literal('projectcalico.org/v3'),
    kind: z.literal('BGPConfiguration'),
    metadata: z.strictObject({ name: z.literal('default') }),
    spec: z
      .strictObject({
        nodeToNodeMeshEnabled: z.boolean().default(true),
        asNumber: asNumberSchema.optional(),
        logSeverityScreen: z.string().optional(),
      })
      .default({ nodeToNodeMeshEnabled: true }),
  })
  .transform((c): BgpConfigurationSpec => ({
    nodeToNodeMeshEnabled: c.spec.nodeToNodeMeshEnabled,
    ...(c.spec.asNumber !== undefined ? { asNumber: c.spec.asNumber } : {}),
  }));

const IpPoolSchema = z
  .strictObject({
    apiVersion: z.literal('projectcalico.org/v3'),
    kind: z.literal('IPPool'),
    metadata: calicoMetadata,
    spec: z.strictObject({ natOutgoing: z.boolean().default(true) }).default({ natOutgoing: true }),
  })
  .transform((p): IpPoolSpec => ({ name: p.metadata.name, natOutgoing: p.spec.natOutgoing }));

const FlannelSchema = z.strictObject({ ipMasq: z.boolean().default(true) });

const BgpPeerSchema = z
  .strictObject({
    apiVersion: z.literal('projectcalico.org/v3'),
    kind: z.literal('BGPPeer'),
    metadata: calicoMetadata,
    spec: z
      .strictObject({
        node: z.string().optional(),
        nodeSelector: calicoSelectorSchema('nodeSelector').optional(),
        peerSelector: calicoSelectorSchema('peerSelector').optional(),
        peerIP: ipv4Schema('peerIP').optional(),
        asNumber: asNumberSchema.optional(),
      })
      .superRefine((p, ctx) => {
        // libcalico-go's validator (validateBGPPeerSpec)
        if (p.node !== undefined && p.nodeSelector !== undefined)
          ctx.addIssue({
            code: 'custom',
            path: ['nodeSelector'],
            message: 'node field must be empty when nodeSelector is specified',
          });
        if (p.peerSelector !== undefined && (p.peerIP !== undefined || p.asNumber !== undefined))
          ctx.addIssue({
            code: 'custom',
            path: ['peerSelector'],
            message: 'peerIP and asNumber must be empty when peerSelector is specified',
          });
        if (p.peerSelector === undefined && p.peerIP === undefined)
          ctx.addIssue({ code: 'custom', message: 'a BGPPeer needs peerSelector or peerIP' });
      }),
  })
  .transform((p): BgpPeerSpec => ({
    name: p.metadata.name,
    ...(p.spec.node !== undefined ? { node: p.spec.node } : {}),
    ...(p.spec.nodeSelector !== undefined ? { nodeSelector: p.spec.nodeSelector } : {}),
    ...(p.spec.peerSelector !== undefined ? { peerSelector: p.spec.peerSelector } : {}),
    ...(p.spec.peerIP !== undefined ? { peerIP: p.spec.peerIP } : {}),
    ...(p.spec.asNumber !== undefined ? { asNumber: p.spec.asNumber } : {}),
  }));

const ScenarioSchema = z.strictObject({
  title: nonEmpty('scenario.title must not be empty'),
  description: z.string().default(''),
  from: nonEmpty('scenario.from must not be empty'),
  to: nonEmpty('scenario.to must not be empty'),
  port: intRange('port', 1, 65535).optional(),
  proto: z.enum(['tcp', 'udp', 'icmp']).default('tcp'),
  expect: z
    .strictObject({
      reason: z.string().optional(),
      netns: z.string().optional(),
      checks: z.array(z.string()).default([]),
    })
    .default({ checks: [] }),
});

const RootSchema = z.strictObject({
  name: nonEmpty('name must not be empty').default('cluster'),
  cni: z.enum(CNI_MODES).default('flannel-vxlan'),
  mtu: intRange('mtu', 576, 9216).default(1500),
  podMtu: intRange('podMtu', 576, 9216).optional(),
  calicoLayout: z.enum(CALICO_LAYOUTS).optional(),
  ipamBlockSize: intRange('ipamBlockSize', 20, 32).optional(),
  subnets: z
    .array(SubnetSchema)
    .superRefine((a, ctx) => {
      if (a.length === 0) {
        ctx.addIssue({ code: 'custom', message: 'subnets must list at least one segment (or be left out)' });
      }
    })
    .optional(),
  nodes: z.array(NodeSchema).superRefine((a, ctx) => {
    if (a.length === 0) ctx.addIssue({ code: 'custom', message: 'nodes must list at least one node' });
  }),
  pods: z.array(PodSchema).default([]),
  externalHosts: z.array(ExternalHostSchema).optional(),
  bgp: z.array(BgpSchema).default([]),
  bgpConfiguration: BgpConfigurationSchema.optional(),
  bgpPeers: z.array(BgpPeerSchema).optional(),
  ipPool: IpPoolSchema.optional(),
  flannel: FlannelSchema.optional(),
  run: z.array(runSchema).default([]),
  namespaces: z.array(NamespaceSchema).optional(),
  policies: z.array(NetworkPolicySchema).optional(),
  serviceCIDR: cidrSchema('serviceCIDR').optional(),
  services: z.array(ServiceSchema).optional(),
  endpointSlices: z.array(EndpointSliceSchema).optional(),
  scenario: ScenarioSchema.optional(),
});

/** RootSchema with the pods taken as they are (plainPods read them) */
const RootPlainPods = RootSchema.extend({ pods: z.unknown() });

/**
 * RootSchema.safeParse of a cluster file's value; its pods read by plainPods when it can (the same
 * value), the rest by the schema. Where the schema refuses anything, the whole value is parsed by
 * RootSchema again, whose issues place the problems as ever.
 */
function parseRoot(raw: unknown): ReturnType<typeof RootSchema.safeParse> {
  const error = errorMap(raw, 'the cluster file');
  const pods = isRecord(raw) ? plainPods(raw.pods) : undefined;
  if (pods !== undefined) {
    const r = RootPlainPods.safeParse(raw, { error });
    if (r.success) return { success: true, data: { ...r.data, pods } };
  }
  return RootSchema.safeParse(raw, { error });
}

interface SchemaDef {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
}

/** The keys a mapping at `path` of `schema` may have (for unknown-key suggestions). */
function keysAt(schema: z.ZodType, path: Path): string[] {
  let s: z.ZodType | undefined = schema;
  const def = (): SchemaDef => {
    for (;;) {
      const d = (s as unknown as { _zod: { def: SchemaDef } })._zod.def;
      if (d.innerType) s = d.innerType;
      else if (d.type === 'pipe' && d.in) s = d.in;
      else return d;
    }
  };
  for (const seg of path) {
    const d = def();
    s = d.type === 'object' ? d.shape?.[String(seg)] : d.type === 'array' ? d.element : undefined;
    if (s === undefined) return [];
  }
  const d = def();
  return d.type === 'object' && d.shape ? Object.keys(d.shape) : [];
}

/** Messages for zod's own issues (the custom ones above carry theirs). */
function errorMap(raw: unknown, root: string): z.core.$ZodErrorMap {
  return (iss) => {
    const path = iss.path ?? [];
    switch (iss.code) {
      case 'invalid_type': {
        if (iss.input === undefined && path.length > 0) {
          return `missing required key ${JSON.stringify(String(path[path.length - 1]))}${where(raw, path.slice(0, -1))}`;
        }
        if (path.length === 0) return `${root} must be a mapping, got ${describe(iss.input)}`;
        const expected = EXPECTED[iss.expected] ?? iss.expected;
        // `- node1: ip route ...` unquoted is a mapping
        const quote = path[0] === 'run' && isRecord(iss.input) ? ' (quote the line: "NETNS: command")' : '';
        return `${label(path)} must be ${expected}, got ${describe(iss.input)}${quote}`;
      }
      case 'invalid_value': {
        const values = iss.values.map(String);
        const got = typeof iss.input === 'string' ? didYouMean(iss.input, values) : '';
        return `${label(path)} must be one of ${values.join(', ')}; got ${describe(iss.input)}${got}`;
      }
      default:
        return undefined;
    }
  };
}

// ---------------------------------------------------------------------------------------------
// Cross-reference checks

interface Problem {
  path: Path;
  message: string;
  /** Point at the key of the last path element rather than at its value */
  atKey?: boolean;
}

type Item = Record<string, unknown>;

/** The mapping items of the list at `key` (other items are left to the schema). */
function entries(raw: unknown, key: string): [number, Item][] {
  const list = isRecord(raw) ? raw[key] : undefined;
  if (!Array.isArray(list)) return [];
  const out: [number, Item][] = [];
  for (let i = 0; i < list.length; i++) if (isRecord(list[i])) out.push([i, list[i] as Item]);
  return out;
}

/** Whether `key` holds a list of mappings each with a string at `field`. */
function wellFormed(raw: unknown, key: string, field: string): boolean {
  const list = isRecord(raw) ? raw[key] : undefined;
  return Array.isArray(list) && list.every((v) => isRecord(v) && typeof v[field] === 'string');
}

function text(o: Item, key: string): string | undefined {
  const v = o[key];
  return typeof v === 'string' ? v : undefined;
}

interface Checker {
  add(path: Path, message: string): void;
  /** The line where the node at `path` starts */
  lineOf(path: Path): number;
}

/** Reports a repeated name at `[list, i, 'name']`; records it otherwise. */
function checkUnique(
  c: Checker,
  seen: Map<string, number>,
  list: string,
  what: string,
  i: number,
  name: string,
) {
  const first = seen.get(name);
  if (first !== undefined) {
    c.add([list, i, 'name'], `${what} name "${name}" is already used at line ${c.lineOf([list, first])}`);
    return false;
  }
  seen.set(name, i);
  return true;
}

interface Segment {
  name: string;
  net: Cidr;
}

/** Unique names, no overlaps, gateway inside. Returns the segments, or undefined if any is unusable. */
function checkSubnets(c: Checker, raw: unknown): Segment[] | undefined {
  const segments: Segment[] = [];
  const names = new Map<string, number>();
  for (const [i, s] of entries(raw, 'subnets')) {
    const name = text(s, 'name');
    if (name !== undefined) checkUnique(c, names, 'subnets', 'subnet', i, name);
    const cidr = text(s, 'cidr');
    const net = cidr === undefined ? undefined : networkCidr(cidr);
    if (net === undefined || name === undefined) continue;
    const other = segments.find((o) => cidrsOverlap(o.net, net));
    if (other)
      c.add(['subnets', i, 'cidr'], `subnet ${name} ${cidr} overlaps ${other.name} ${cidrText(other.net)}`);
    segments.push({ name, net });
    const gw = text(s, 'gateway');
    const gwAddr = gw === undefined ? undefined : parseIp4(gw);
    if (gwAddr === undefined) continue;
    const special = specialHostAddress(net, gwAddr);
    if (!cidrContains(net, gwAddr))
      c.add(['subnets', i, 'gateway'], `gateway ${gw} is not inside ${name} ${cidr}`);
    else if (special)
      c.add(['subnets', i, 'gateway'], `gateway ${gw} is the ${special} address of ${name} ${cidr}`);
  }
  const list = isRecord(raw) ? raw.subnets : undefined;
  return Array.isArray(list) && list.length > 0 && segments.length === list.length ? segments : undefined;
}

/**
 * An interface address on the underlay (a node's or an external host's eth0): a host address
 * inside exactly one subnet, with its prefix length; without `subnets:`, on the segment derived
 * from the first node. Returns the network it sits on, when it is fine.
 */
function checkUnderlayAddress(
  c: Checker,
  at: Path,
  ip: string,
  segments: Segment[] | undefined,
  derived: { net: Cidr; from: string } | undefined,
): Cidr | undefined {
  const addr = cidrOf(ip);
  if (addr === undefined) return undefined;
  const special = specialHostAddress(addr, addr.addr);
  if (special) {
    c.add(at, `ip ${ip} is the ${special} address of ${cidrText(addr)}, not a host address`);
    return undefined;
  }
  if (segments !== undefined) {
    const inside = segments.filter((s) => cidrContains(s.net, addr.addr));
    const list = segments.map((s) => `${s.name} ${cidrText(s.net)}`).join(', ');
    if (inside.length === 0) c.add(at, `ip ${ip} is not inside any subnet (${list})`);
    else if (inside.length > 1) c.add(at, `ip ${ip} is inside more than one subnet (${list})`);
    else if (inside[0].net.len !== addr.len) {
      const s = inside[0];
      c.add(at, `ip ${ip} has prefix length /${addr.len} but subnet ${s.name} is ${cidrText(s.net)}`);
    } else return inside[0].net;
    return undefined;
  }
  if (derived && (!cidrContains(derived.net, addr.addr) || derived.net.len !== addr.len)) {
    c.add(
      at,
      `ip ${ip} is not on lan0 ${cidrText(derived.net)} (the default segment, derived from ` +
        `${derived.from}); list the segments under "subnets:"`,
    );
    return undefined;
  }
  return derived?.net ?? addr;
}

/** the segment of a file without `subnets:`: the network of the first node's address */
function derivedSegment(raw: unknown): { net: Cidr; from: string } | undefined {
  const first = entries(raw, 'nodes')[0]?.[1];
  const ip = first ? text(first, 'ip') : undefined;
  const addr = ip === undefined ? undefined : cidrOf(ip);
  if (addr === undefined || specialHostAddress(addr, addr.addr)) return undefined;
  return { net: addr, from: text(first!, 'name') ?? 'nodes[0]' };
}

/**
 * Unique names; each ip a host address inside exactly one subnet, with its prefix length. Without
 * `subnets:`, the segment is the one derived from the first node. Returns the node names.
 */
function checkNodes(c: Checker, raw: unknown, segments: Segment[] | undefined): Map<string, number> {
  const names = new Map<string, number>();
  const subnetsGiven = isRecord(raw) && raw.subnets !== undefined;
  const derived = subnetsGiven ? undefined : derivedSegment(raw);
  for (const [i, n] of entries(raw, 'nodes')) {
    const name = text(n, 'name');
    if (name !== undefined) checkUnique(c, names, 'nodes', 'node', i, name);
    const ip = text(n, 'ip');
    if (ip !== undefined)
      checkUnderlayAddress(c, ['nodes', i, 'ip'], ip, segments, i === 0 ? undefined : derived);
  }
  return names;
}

/**
 * External hosts: unique names that are no node's or pod's; an underlay address as a node's, not
 * a node's or another host's; each route's gateway an address of the host's own subnet, not its
 * own address.
 */
function checkExternalHosts(c: Checker, raw: unknown, segments: Segment[] | undefined) {
  const hosts = entries(raw, 'externalHosts');
  // nothing to check, and no map of every node's and pod's name to make (a cluster file without external hosts)
  if (!hosts.length) return;
  const names = new Map<string, number>();
  const subnetsGiven = isRecord(raw) && raw.subnets !== undefined;
  const derived = subnetsGiven ? undefined : derivedSegment(raw);
  // where each node's and pod's name is first given (its line looked up only for a message)
  const others = new Map<string, [list: 'nodes' | 'pods', i: number]>();
  for (const list of ['nodes', 'pods'] as const)
    for (const [i, n] of entries(raw, list)) {
      const name = text(n, 'name');
      if (name !== undefined && !others.has(name)) others.set(name, [list, i]);
    }
  const addrs = new Map<number, string>();
  for (const [i, n] of entries(raw, 'nodes')) {
    const a = cidrOf(text(n, 'ip') ?? '');
    if (a !== undefined && !addrs.has(a.addr)) addrs.set(a.addr, `node ${text(n, 'name') ?? `nodes[${i}]`}`);
  }
  for (const [i, h] of hosts) {
    const name = text(h, 'name');
    if (name !== undefined && checkUnique(c, names, 'externalHosts', 'external host', i, name)) {
      const other = others.get(name);
      if (other)
        c.add(
          ['externalHosts', i, 'name'],
          `external host name "${name}" is already the name of the ${ENTITY[other[0]]} at line ${c.lineOf(other)}; subnets, the router, nodes, pods and external hosts share one namespace of names`,
        );
    }
    const ip = text(h, 'ip');
    if (ip === undefined || (subnetsGiven && segments === undefined)) continue;
    const net = checkUnderlayAddress(c, ['externalHosts', i, 'ip'], ip, segments, derived);
    if (net === undefined) continue;
    const addr = cidrOf(ip)!.addr;
    const owner = addrs.get(addr);
    if (owner) c.add(['externalHosts', i, 'ip'], `ip ${ip} is already the address of ${owner}`);
    else addrs.set(addr, `external host ${name ?? `externalHosts[${i}]`}`);
    const routes = isRecord(h) && Array.isArray(h.routes) ? h.routes : [];
    routes.forEach((r: unknown, j) => {
      const via = isRecord(r) && typeof r.via === 'string' ? r.via : undefined;
      const gw = via === undefined ? undefined : parseIp4(via);
      if (gw === undefined) return;
      const at = ['externalHosts', i, 'routes', j, 'via'];
      if (gw === addr) c.add(at, `via ${via} is the host's own address`);
      else if (!cidrContains(net, gw) || specialHostAddress(net, gw))
        c.add(at, `via ${via} is not a host address of the host's subnet ${cidrText(net)}`);
    });
  }
}

/** The devices a node has besides the pods' veths, in one mode or another (cni/build.ts, cni/modes.ts) */
const NODE_DEVICES = ['lo', 'eth0', 'cni0', 'flannel.1', 'tunl0'];

/**
 * Unique names that are not node names; existing node; hostVeth unique per node and not a node
 * device; no repeated listener.
 */
function checkPods(c: Checker, raw: unknown, nodes: Map<string, number> | undefined) {
  const names = new Map<string, number>();
  const veths = new Map<string, number>();
  for (const [i, p] of entries(raw, 'pods')) {
    const name = text(p, 'name');
    const nodeIdx = name === undefined ? undefined : nodes?.get(name);
    if (name !== undefined && checkUnique(c, names, 'pods', 'pod', i, name) && nodeIdx !== undefined) {
      c.add(
        ['pods', i, 'name'],
        `pod name "${name}" is already the name of a node (line ${c.lineOf(['nodes', nodeIdx])}); ` +
          'pods and nodes share one namespace',
      );
    }
    const node = text(p, 'node');
    if (node !== undefined && nodes !== undefined && !nodes.has(node)) {
      c.add(['pods', i, 'node'], `unknown node "${node}"${didYouMean(node, [...nodes.keys()])}`);
    }
    const veth = text(p, 'hostVeth');
    if (veth !== undefined && NODE_DEVICES.includes(veth)) {
      c.add(
        ['pods', i, 'hostVeth'],
        `hostVeth "${veth}" is the name of a node's own device (${NODE_DEVICES.join(', ')} are taken)`,
      );
    } else if (node !== undefined && veth !== undefined && validIfName(veth)) {
      const key = JSON.stringify([node, veth]);
      const first = veths.get(key);
      if (first !== undefined) {
        const line = c.lineOf(['pods', first, 'hostVeth']);
        c.add(['pods', i, 'hostVeth'], `hostVeth "${veth}" is already used on node ${node} (line ${line})`);
      } else veths.set(key, i);
    }
    // (one entry repeats nothing)
    if (Array.isArray(p.listen) && p.listen.length > 1) {
      const sockets = new Set<string>();
      const portNames = new Set<string>();
      p.listen.forEach((l: unknown, j) => {
        const m = typeof l === 'string' ? LISTEN_RE.exec(l) : null;
        if (!m) return;
        const socket = `${m[1]}/${Number(m[2])}`;
        if (sockets.has(socket))
          c.add(['pods', i, 'listen', j], `listen entry ${JSON.stringify(l)} is listed twice`);
        else if (m[3] !== undefined && portNames.has(m[3]))
          c.add(['pods', i, 'listen', j], `port name "${m[3]}" is already used by another listen entry`);
        sockets.add(socket);
        if (m[3] !== undefined) portNames.add(m[3]);
      });
    }
  }
}

/**
 * Subnets, the router (when a subnet has a gateway), nodes, pods and external hosts are each a
 * network namespace of that name: none may take a subnet's name or "router" (nodes and pods are
 * checked against each other in checkPods, external hosts against both in checkExternalHosts).
 */
function checkNetnsNames(c: Checker, raw: unknown) {
  // what holds each taken name (the subnet's line looked up only for a message)
  const taken = new Map<string, () => string>();
  for (const [i, s] of entries(raw, 'subnets')) {
    const name = text(s, 'name');
    if (name !== undefined && !taken.has(name))
      taken.set(name, () => `subnet at line ${c.lineOf(['subnets', i])}`);
  }
  if (entries(raw, 'subnets').some(([, s]) => text(s, 'gateway') !== undefined))
    taken.set('router', () => 'router that joins the subnets (a subnet has a gateway)');
  for (const list of ['nodes', 'pods', 'externalHosts'] as const)
    for (const [i, n] of entries(raw, list)) {
      const name = text(n, 'name');
      const other = name === undefined ? undefined : taken.get(name);
      if (other)
        c.add(
          [list, i, 'name'],
          `${ENTITY[list]} name "${name}" is already the name of the ${other()}; subnets, the router, nodes, pods and external hosts share one namespace of names`,
        );
    }
}

/** Namespace names once; policy NAMESPACE/NAME once. */
function checkNamespacesAndPolicies(c: Checker, raw: unknown) {
  const names = new Map<string, number>();
  for (const [i, n] of entries(raw, 'namespaces')) {
    const name = text(n, 'name');
    if (name !== undefined) checkUnique(c, names, 'namespaces', 'namespace', i, name);
  }
  checkObjectNames(c, raw, 'policies', 'policy');
}

/** Kubernetes objects of a list (policies, services): NAMESPACE/NAME once */
function checkObjectNames(c: Checker, raw: unknown, list: string, what: string) {
  const seen = new Map<string, number>();
  for (const [i, p] of entries(raw, list)) {
    const key = policyKey(p);
    if (key === undefined) continue;
    const first = seen.get(key);
    if (first !== undefined)
      c.add(
        [list, i, 'metadata', 'name'],
        `${what} ${key} is already defined at line ${c.lineOf([list, first])}`,
      );
    else seen.set(key, i);
  }
}

/**
 * Services: NAMESPACE/NAME once; a clusterIP inside serviceCIDR (not its network or broadcast
 * address) and not another Service's; a nodePort not another Service's.
 */
function checkServices(c: Checker, raw: unknown) {
  const given = isRecord(raw) && typeof raw.serviceCIDR === 'string' ? raw.serviceCIDR : DEFAULT_SERVICE_CIDR;
  const range = networkCidr(given);
  checkObjectNames(c, raw, 'services', 'service');
  const ips = new Map<string, number>();
  const nodePorts = new Map<number, number>();
  for (const [i, svc] of entries(raw, 'services')) {
    const spec = svc.spec;
    if (!isRecord(spec)) continue;
    const ip = typeof spec.clusterIP === 'string' && spec.clusterIP !== 'None' ? spec.clusterIP : undefined;
    const addr = ip === undefined ? undefined : parseIp4(ip);
    if (ip !== undefined && addr !== undefined && range) {
      const at = ['services', i, 'spec', 'clusterIP'];
      const special = specialHostAddress(range, addr);
      const first = ips.get(ip);
      if (!cidrContains(range, addr))
        c.add(at, `clusterIP ${ip} is not inside the service range ${cidrText(range)} (serviceCIDR)`);
      else if (special) c.add(at, `clusterIP ${ip} is the ${special} address of ${cidrText(range)}`);
      else if (first !== undefined)
        c.add(
          at,
          `clusterIP ${ip} is already allocated to the service at line ${c.lineOf(['services', first])}`,
        );
      else ips.set(ip, i);
    }
    if (Array.isArray(spec.ports))
      spec.ports.forEach((p: unknown, j) => {
        if (!isRecord(p) || typeof p.nodePort !== 'number') return;
        const first = nodePorts.get(p.nodePort);
        if (first !== undefined && first !== i)
          c.add(
            ['services', i, 'spec', 'ports', j, 'nodePort'],
            `nodePort ${p.nodePort} is already allocated to the service at line ${c.lineOf(['services', first])}`,
          );
        else nodePorts.set(p.nodePort, i);
      });
    const hc = spec.healthCheckNodePort;
    if (typeof hc === 'number') {
      const first = nodePorts.get(hc);
      if (first !== undefined)
        c.add(
          ['services', i, 'spec', 'healthCheckNodePort'],
          `healthCheckNodePort ${hc} is already allocated to the service at line ${c.lineOf(['services', first])}`,
        );
      else nodePorts.set(hc, i);
    }
  }
}

/**
 * EndpointSlices: NAMESPACE/NAME once; the kubernetes.io/service-name label names a Service of the
 * slice's namespace; each endpoint's nodeName a node.
 */
function checkEndpointSlices(c: Checker, raw: unknown, nodes: Map<string, number> | undefined) {
  checkObjectNames(c, raw, 'endpointSlices', 'endpointslice');
  const services = new Set(entries(raw, 'services').flatMap(([, s]) => policyKey(s) ?? []));
  for (const [i, e] of entries(raw, 'endpointSlices')) {
    const md = e.metadata;
    if (!isRecord(md)) continue;
    const ns = typeof md.namespace === 'string' ? md.namespace : 'default';
    const labels = isRecord(md.labels) ? md.labels : {};
    const svc = labels[SERVICE_NAME_LABEL];
    if (typeof svc !== 'string')
      c.add(
        ['endpointSlices', i, 'metadata', isRecord(md.labels) ? 'labels' : 'name'],
        `an EndpointSlice needs the label ${SERVICE_NAME_LABEL}: the Service it belongs to`,
      );
    else if (!services.has(`${ns}/${svc}`))
      c.add(
        ['endpointSlices', i, 'metadata', 'labels', SERVICE_NAME_LABEL],
        `no Service ${ns}/${svc} in the cluster file; its services: ${[...services].join(', ') || 'none'}`,
      );
    const eps = Array.isArray(e.endpoints) ? e.endpoints : [];
    eps.forEach((ep: unknown, j) => {
      const node = isRecord(ep) && typeof ep.nodeName === 'string' ? ep.nodeName : undefined;
      if (node !== undefined && nodes !== undefined && !nodes.has(node))
        c.add(
          ['endpointSlices', i, 'endpoints', j, 'nodeName'],
          `unknown node "${node}"${didYouMean(node, [...nodes.keys()])}`,
        );
    });
  }
}

/** Two different existing nodes, each pair once. */
function checkBgp(c: Checker, raw: unknown, nodes: Map<string, number> | undefined) {
  const pairs = new Map<string, number>();
  for (const [i, b] of entries(raw, 'bgp')) {
    const pair: unknown = b.nodes;
    if (!Array.isArray(pair) || pair.length !== 2) continue;
    const [x, y]: unknown[] = pair;
    if (typeof x !== 'string' || typeof y !== 'string') continue;
    let ok = true;
    [x, y].forEach((n, j) => {
      if (nodes !== undefined && !nodes.has(n)) {
        c.add(['bgp', i, 'nodes', j], `unknown node "${n}"${didYouMean(n, [...nodes.keys()])}`);
        ok = false;
      }
    });
    if (x === y) {
      c.add(['bgp', i, 'nodes', 1], `a bgp session needs two different nodes, got "${x}" twice`);
      ok = false;
    }
    if (!ok) continue;
    const key = JSON.stringify([x, y].sort());
    const first = pairs.get(key);
    if (first !== undefined) {
      c.add(
        ['bgp', i, 'nodes'],
        `the session ${x}-${y} is already listed at line ${c.lineOf(['bgp', first])}`,
      );
    } else pairs.set(key, i);
  }
}

/**
 * BGPPeers: unique names, `node` an existing node, `peerIP` a node's address (peers outside the
 * cluster are not modelled); route reflector cluster IDs only in a Calico BGP mode.
 */
function checkBgpPeers(c: Checker, raw: unknown, nodes: Map<string, number> | undefined) {
  const names = new Map<string, number>();
  for (const [i, p] of entries(raw, 'bgpPeers')) {
    const name = isRecord(p.metadata) ? text(p.metadata, 'name') : undefined;
    if (name === undefined) continue;
    const first = names.get(name);
    if (first !== undefined)
      c.add(
        ['bgpPeers', i, 'metadata', 'name'],
        `BGPPeer ${name} is already defined at line ${c.lineOf(['bgpPeers', first])}`,
      );
    else names.set(name, i);
  }
  const ips = new Set(
    entries(raw, 'nodes').flatMap(([, n]) => {
      const ip = text(n, 'ip');
      return ip ? [ip.split('/')[0]] : [];
    }),
  );
  for (const [i, p] of entries(raw, 'bgpPeers')) {
    const spec = isRecord(p.spec) ? p.spec : {};
    const node = typeof spec.node === 'string' ? spec.node : undefined;
    if (node !== undefined && nodes !== undefined && !nodes.has(node))
      c.add(['bgpPeers', i, 'spec', 'node'], `unknown node "${node}"${didYouMean(node, [...nodes.keys()])}`);
    const ip = typeof spec.peerIP === 'string' ? spec.peerIP : undefined;
    if (ip !== undefined && parseIp4(ip) !== undefined && !ips.has(ip))
      c.add(
        ['bgpPeers', i, 'spec', 'peerIP'],
        `peerIP ${ip} is no node's address (peers outside the cluster are not modelled)`,
      );
  }
}

/**
 * Cross-reference checks. They run on the raw data so that they apply even when the schema found
 * problems elsewhere (the first problem in document order wins); values the schema rejects are
 * skipped, and references are only checked against a well-formed nodes list.
 */
function crossCheck(raw: unknown, lineOf: (path: Path) => number): Problem[] {
  const problems: Problem[] = [];
  const c: Checker = { add: (path, message) => problems.push({ path, message }), lineOf };
  const segments = checkSubnets(c, raw);
  const nodeNames = checkNodes(c, raw, segments);
  const nodes = wellFormed(raw, 'nodes', 'name') ? nodeNames : undefined;
  checkPods(c, raw, nodes);
  checkExternalHosts(c, raw, segments);
  checkNetnsNames(c, raw);
  checkBgp(c, raw, nodes);
  checkBgpPeers(c, raw, nodes);
  checkNamespacesAndPolicies(c, raw);
  checkServices(c, raw);
  checkEndpointSlices(c, raw, nodes);
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Locating problems in the YAML

function startOf(node: unknown): number | undefined {
  if (typeof node !== 'object' || node === null || !('range' in node)) return undefined;
  const range = (node as { range?: [number, number, number] | null }).range;
  return range ? range[0] : undefined;
}

/** An empty value (`key:` with nothing after it) has a zero-width range at the end of the line. */
function isEmptyValue(node: unknown): boolean {
  return isScalar(node) && node.value === null && node.source === '';
}

/**
 * The offset of the node at `path`: its value, or (atKey) its key. Where the path leaves the
 * document (a missing key), the deepest node on the way: the mapping that lacks the key.
 */
function offsetOf(doc: Document, path: Path, atKey = false): number {
  let node: unknown = doc.contents;
  let offset = startOf(node) ?? 0;
  for (const [i, seg] of path.entries()) {
    // What lies behind an alias is written elsewhere: the alias is this path's place in the text.
    if (isAlias(node)) return offset;
    if (isMap(node)) {
      const pair = node.items.find(
        (p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(seg),
      );
      if (pair === undefined) return offset;
      const keyOffset = startOf(pair.key) ?? offset;
      if (atKey && i === path.length - 1) return keyOffset;
      node = pair.value;
      offset = node === null || isEmptyValue(node) ? keyOffset : (startOf(node) ?? keyOffset);
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg];
      if (node === undefined) return offset;
      offset = startOf(node) ?? offset;
    } else {
      return offset;
    }
  }
  return offset;
}

// ---------------------------------------------------------------------------------------------

type Fail = (offset: number, message: string) => never;

/** Zod's issues as problems; a misspelt key explains the missing key it was meant to be: only the former. */
function schemaProblems(schema: z.ZodType, issues: readonly z.core.$ZodIssue[], raw: unknown): Problem[] {
  const problems: Problem[] = [];
  const misspelt = new Set<string>();
  for (const iss of issues) {
    if (iss.code !== 'unrecognized_keys') continue;
    for (const key of iss.keys) {
      const hint = suggest(key, keysAt(schema, iss.path));
      if (hint !== undefined) misspelt.add(JSON.stringify([...iss.path.map(String), hint]));
    }
  }
  for (const iss of issues) {
    const missing = iss.code === 'invalid_type' && getIn(raw, iss.path) === undefined;
    if (missing && misspelt.has(JSON.stringify(iss.path.map(String)))) continue;
    if (iss.code === 'unrecognized_keys') {
      const allowed = keysAt(schema, iss.path);
      for (const key of iss.keys) {
        const hint = suggest(key, allowed);
        const message =
          hint !== undefined
            ? `unknown key ${JSON.stringify(key)} (did you mean ${JSON.stringify(hint)}?)`
            : `unknown key ${JSON.stringify(key)}${allowed.length > 0 ? ` (expected one of ${allowed.join(', ')})` : ''}`;
        problems.push({ path: [...iss.path, key], message, atKey: true });
      }
    } else {
      problems.push({ path: iss.path, message: iss.message });
    }
  }
  return problems;
}

/** Fails at the first problem in document order, if any. */
function failFirst(doc: Document, problems: readonly Problem[], fail: Fail): void {
  if (problems.length === 0) return;
  let best = problems[0];
  let bestOffset = offsetOf(doc, best.path, best.atKey);
  for (const p of problems.slice(1)) {
    const o = offsetOf(doc, p.path, p.atKey);
    if (o < bestOffset) {
      best = p;
      bestOffset = o;
    }
  }
  fail(bestOffset, best.message);
}

/** YAML syntax errors and unknown aliases of one document; `multiple` explains a second document. */
function checkSyntax(doc: Document, fail: Fail, multiple: string): void {
  if (doc.errors.length > 0) {
    const first = doc.errors.reduce((a, b) => (b.pos[0] < a.pos[0] ? b : a));
    fail(first.pos[0], first.code === 'MULTIPLE_DOCS' ? multiple : first.message.split('\n')[0]);
  }
  visit(doc, {
    Alias(_key, alias) {
      if (alias.resolve(doc) === undefined) fail(startOf(alias) ?? 0, `unknown alias *${alias.source}`);
    },
    // a list or mapping as a key (`? [a, b]`): JavaScript objects have only string keys, and the
    // yaml library would stringify it with a warning on stderr
    Pair(_key, pair) {
      if (pair.key !== null && !isScalar(pair.key) && !isAlias(pair.key))
        fail(
          startOf(pair.key) ?? 0,
          `a key must be a plain name, not ${isSeq(pair.key) ? 'a list' : 'a mapping'}`,
        );
      if (isAlias(pair.key)) {
        const target = pair.key.resolve(doc);
        if (target !== undefined && !isScalar(target))
          fail(startOf(pair.key) ?? 0, `a key must be a plain name, not an alias of a list or mapping`);
      }
    },
  });
}

function toJS(doc: Document, fail: Fail): unknown {
  try {
    return doc.toJS();
  } catch (e) {
    return fail(startOf(doc.contents) ?? 0, e instanceof Error ? e.message.split('\n')[0] : String(e));
  }
}

/**
 * What the API server warns about a NetworkPolicy it accepts (networkPolicyWarnings in
 * pkg/registry/networking/networkpolicy/strategy.go, GetWarningsForCIDR): an ipBlock `cidr` or
 * `except` with bits set beyond its prefix length. `at` is the policy's path in the document.
 */
function ipBlockWarnings(policy: unknown, at: Path): { path: Path; message: string }[] {
  const out: { path: Path; message: string }[] = [];
  const spec = isRecord(policy) ? policy.spec : undefined;
  for (const [dir, peersKey] of [
    ['ingress', 'from'],
    ['egress', 'to'],
  ] as const)
    for (const [i, rule] of entries(spec, dir))
      for (const [j, peer] of entries(rule, peersKey)) {
        const block = peer.ipBlock;
        if (!isRecord(block)) continue;
        const field = `spec.${dir}[${i}].${peersKey}[${j}].ipBlock`;
        const base: Path = [...at, 'spec', dir, i, peersKey, j, 'ipBlock'];
        const check = (value: unknown, fld: string, path: Path) => {
          const c = typeof value === 'string' ? cidrOf(value) : undefined;
          if (c === undefined || networkOf(c) === c.addr) return;
          const single = `${value as string}`.replace(/\/\d+$/, '/32');
          out.push({
            path,
            message: `${fld}: CIDR value ${JSON.stringify(value)} is ambiguous in this context (should be ${JSON.stringify(cidrText(c))} or ${JSON.stringify(single)}?)`,
          });
        };
        check(block.cidr, `${field}.cidr`, [...base, 'cidr']);
        if (Array.isArray(block.except))
          block.except.forEach((e, k) => check(e, `${field}.except[${k}]`, [...base, 'except', k]));
      }
  return out;
}

function failAt(fileName: string, lineCounter: LineCounter): Fail {
  return (offset, message) => {
    const { line, col } = lineCounter.linePos(offset);
    throw new ClusterError(fileName, Math.max(line, 1), Math.max(col, 1), message);
  };
}

/** the cluster file as the `yaml` library reads it, with the places of its nodes */
interface Placed {
  doc: Document;
  fail: Fail;
  raw: unknown;
  lineOf(path: Path): number;
}

/** reads `text` with `yaml`, with source positions: syntax errors end it here */
function placed(text: string, fileName: string): Placed {
  const lineCounter = new LineCounter();
  const fail = failAt(fileName, lineCounter);
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  checkSyntax(doc, fail, 'a cluster file holds one YAML document; this is the start of a second one');
  if (doc.contents === null) fail(0, 'the cluster file is empty; it needs at least a "nodes:" list');
  const raw = toJS(doc, fail);
  return { doc, fail, raw, lineOf: (path) => lineCounter.linePos(offsetOf(doc, path)).line };
}

/**
 * Parses and validates a cluster file. `fileName` is only used in error messages.
 *
 * A file in plain block YAML is read by the fast reader (src/cluster/plain-yaml.ts: the value
 * `yaml` would give, without its document tree); the `yaml` library's document with source
 * positions is made only for a file outside that subset or when there is a problem to place (a
 * valid large file is never parsed twice; a file with a problem is reported exactly as from the
 * document).
 * @throws ClusterError for the first problem in document order (YAML syntax errors first).
 */
export function loadCluster(text: string, fileName: string, warnings?: string[]): ClusterSpec {
  let positioned: Placed | undefined;
  const places = () => (positioned ??= placed(text, fileName));
  const quick = readPlainYaml(text);
  const raw = quick === undefined ? places().raw : quick;

  const parsed = parseRoot(raw);
  const problems = parsed.success ? [] : schemaProblems(RootSchema, parsed.error.issues, raw);
  problems.push(...crossCheck(raw, (path) => places().lineOf(path)));
  if (problems.length > 0) failFirst(places().doc, problems, places().fail);
  if (!parsed.success) throw new Error('unreachable: schema failed without problems');
  for (const [i, policy] of entries(raw, 'policies'))
    for (const w of ipBlockWarnings(policy, ['policies', i]))
      warnings?.push(`${placeIn(text, fileName, w.path)}: ${w.message}`);

  const spec = parsed.data;
  let subnets: SubnetSpec[];
  if (spec.subnets !== undefined) {
    subnets = spec.subnets;
  } else {
    const first = cidrOf(spec.nodes[0].ip);
    if (first === undefined) throw new Error('unreachable: node ip validated');
    subnets = [{ name: 'lan0', cidr: cidrText(first) }];
  }
  return { ...spec, subnets };
}

/**
 * `FILE:LINE:COL` of the node at `path` (e.g. `['run', 2]`, `['pods', 0, 'name']`) in a cluster
 * file that {@link loadCluster} accepted: the place of a problem found later, while the cluster is
 * built or its `run:` commands applied.
 */
export function placeIn(text: string, fileName: string, path: Path): string {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const { line, col } = lineCounter.linePos(offsetOf(doc, path));
  return `${fileName}:${Math.max(line, 1)}:${Math.max(col, 1)}`;
}

/**
 * Parses and validates a NetworkPolicy file (`--policy FILE`): one or more YAML documents, each a
 * networking.k8s.io/v1 NetworkPolicy or a v1 List of them. `taken` maps the "NAMESPACE/NAME" of
 * policies already loaded (from the cluster file or earlier files) to where they came from; a
 * policy of the same name is an error. Either every policy of the file is returned or none.
 * @throws ClusterError for the first problem in document order
 */
export function loadPolicies(
  text: string,
  fileName: string,
  taken: ReadonlyMap<string, string> = new Map(),
  warnings?: string[],
): NetworkPolicySpec[] {
  const lineCounter = new LineCounter();
  const fail = failAt(fileName, lineCounter);
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false });
  const out: NetworkPolicySpec[] = [];
  const seen = new Map(taken);
  for (const doc of docs) {
    checkSyntax(doc, fail, '');
    if (doc.contents === null) continue;
    const raw = toJS(doc, fail);
    const list = isRecord(raw) && raw.kind === 'List';
    const schema: z.ZodType<NetworkPolicySpec[]> = list ? PolicyListSchema : PolicyDocSchema;
    const parsed = schema.safeParse(raw, { error: errorMap(raw, 'a policy document') });
    const problems = parsed.success ? [] : schemaProblems(schema, parsed.error.issues, raw);
    const items = list ? entries(raw, 'items').map(([i, v]): [Path, Item] => [['items', i], v]) : [];
    if (!list && isRecord(raw)) items.push([[], raw]);
    for (const [at, item] of items) {
      const key = policyKey(item);
      if (key === undefined) continue;
      const first = seen.get(key);
      const line = lineCounter.linePos(offsetOf(doc, at)).line;
      if (first !== undefined)
        problems.push({
          path: [...at, 'metadata', 'name'],
          message: `policy ${key} is already defined ${first}`,
        });
      else seen.set(key, `at ${fileName}:${line}`);
    }
    // a document of another kind or version: say that, not what else it lacks
    const header = problems.filter((p) => p.path[0] === 'apiVersion' || p.path[0] === 'kind');
    failFirst(doc, header.length > 0 ? header : problems, fail);
    if (!parsed.success) throw new Error('unreachable: schema failed without problems');
    for (const [at, item] of items)
      for (const w of ipBlockWarnings(item, at)) {
        const { line, col } = lineCounter.linePos(offsetOf(doc, w.path));
        warnings?.push(`${fileName}:${Math.max(line, 1)}:${Math.max(col, 1)}: ${w.message}`);
      }
    out.push(...parsed.data);
  }
  if (out.length === 0) fail(0, 'the policy file holds no NetworkPolicy');
  return out;
}
