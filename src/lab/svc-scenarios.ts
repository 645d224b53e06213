/**
 * The differential suite's Service scenarios (seeds SVC_SEED_BASE + 1 …): a three-node cluster
 * with kube-proxy (iptables mode) programming every node, one flow to a Service. Each seed takes
 * one case in turn (SVC_KINDS), the CNI mode and the protocol vary with the seed:
 *
 * - ClusterIP with one endpoint on the client's node or on another node, with three endpoints
 *   (one per node) taken on the client's node or on another one;
 * - NodePort from a pod to another node's address, and from a node (its own address or another's);
 *   the endpoint behind another node only where that node forwards it out of another device
 *   (flannel-vxlan): forwarded out of the underlay device it came in by, the kernel generates
 *   ICMP redirects (ip_rt_send_redirect; seed 2006 counted three, discarded before they left),
 *   which the model does not have yet;
 * - a Service whose selector matches no pod (kube-proxy's filter REJECT);
 * - hairpin: a pod reaching its own Service and taken as the endpoint, its bridge port in hairpin
 *   mode as flannel's CNI config sets it (svcCommand);
 * - NetworkPolicy on the endpoint (calico-bgp, the lab's policy mode): one allowing the target
 *   port (delivered) and one allowing only the Service port (dropped: the policy sees the packet
 *   after the DNAT).
 *
 * Seeds after the first SVC_KINDS.length * 2 (2021 …) take EXT_KINDS in turn: traffic from a host
 * outside the cluster ("client", on the nodes' segment), to node n2's node port or to a
 * LoadBalancer's ingress IP (203.0.113.10, which the client routes via n2, as a BGP-speaking load
 * balancer or a router's static route would give it: kube-proxy sees a packet to the ingress IP
 * arrive at a node):
 *
 * - NodePort (externalTrafficPolicy Cluster), the endpoint on n2 itself or behind n3;
 * - externalTrafficPolicy Local on n2 (endpoints on n2 and n3: n2's own taken, no masquerade), and
 *   to n1, which has no endpoint (KUBE-EXTERNAL-SERVICES drops it; UDP, as a dropped SYN is resent);
 * - LoadBalancer, Cluster (masqueraded) and Local (the client's address kept).
 *
 * An endpoint behind another node is taken only in flannel-vxlan, for the reason above: n2 would
 * forward the client's packet out of eth0, which it came in by, and send an ICMP redirect.
 *
 * The endpoint is forced on both sides: the model walks with `endpoint` (its statistic draws
 * pinned), and the lab is programmed with the same rules except that each statistic rule of the
 * Service's KUBE-SVC-/KUBE-SVL- chains has probability 1 (the rule that jumps to the endpoint's
 * KUBE-SEP- chain) or 0 (those before it): the kernel's xt_statistic then takes the same path
 * through the same rules. (Comparing modulo the kernel's random choice would need the walk after
 * the real flow; the lab's captures wait on the walk.)
 */
import type {
  ClusterSpec,
  CniMode,
  EndpointSliceSpec,
  NetworkPolicySpec,
  ServiceSpec,
} from '../cluster/spec.ts';
import type { Cluster } from '../cni/build.ts';
import type { WalkRequest } from '../trace/walk.ts';
import { seededRandom } from '../kernel/world.ts';
import { LAB_MODES, type Fault, type Scenario } from './scenarios.ts';

/** seeds SVC_SEED_BASE + 1 … are Service scenarios */
export const SVC_SEED_BASE = 2000;

export const SVC_KINDS = [
  'svc-same-1',
  'svc-cross-1',
  'svc-same-3',
  'svc-cross-3',
  'svc-nodeport-pod',
  'svc-nodeport-node',
  'svc-no-endpoints',
  'svc-hairpin',
  'svc-policy-allow',
  'svc-policy-deny',
] as const;
export type SvcKind = (typeof SVC_KINDS)[number];

/** the kinds of the seeds after the first two rounds of SVC_KINDS: from a host outside the cluster */
export const EXT_KINDS = [
  'svc-ext-nodeport-same',
  'svc-ext-nodeport-cross',
  'svc-ext-local',
  'svc-ext-local-none',
  'svc-ext-lb',
  'svc-ext-lb-local',
] as const;
export type ExtKind = (typeof EXT_KINDS)[number];
/** seeds SVC_SEED_BASE + 1 … EXT_FIRST − 1 cycle SVC_KINDS, then two rounds of EXT_KINDS */
export const EXT_FIRST = SVC_SEED_BASE + 2 * SVC_KINDS.length + 1;

/**
 * the kinds of the seeds after the two rounds of EXT_KINDS (2033 …): a Service without a selector
 * and its hand-written EndpointSlices (an endpoint in both slices, one not ready; the ready pod on
 * another node taken), sessionAffinity ClientIP (the endpoint's -m recent list checked before the
 * random choice and set by its DNAT rule), and a hand-written endpoint outside the cluster (the
 * external host's listener: in a flannel mode the pod's datagram reaches it un-masqueraded (flannel's
 * ip-masq is not modelled), and the answer to a pod address dies at the router, which knows no pod
 * network; in Calico's layout felix's cali-nat-outgoing masquerades it to the node's address and the
 * answer comes back)
 */
export const MORE_KINDS = ['svc-manual', 'svc-affinity', 'svc-manual-external'] as const;
export type MoreKind = (typeof MORE_KINDS)[number];
export const MORE_FIRST = EXT_FIRST + 2 * EXT_KINDS.length;

export function isSvcKind(k: string): k is SvcKind | ExtKind | MoreKind {
  return [...SVC_KINDS, ...EXT_KINDS, ...MORE_KINDS].includes(k as SvcKind);
}

const SERVICE_PORT = 80;
const TARGET_PORT = 8080;
const NODE_PORTS = { tcp: 30080, udp: 30081 } as const;
/** the LoadBalancer's ingress IP (TEST-NET-3) and the client's address */
const INGRESS_IP = '203.0.113.10';
const CLIENT_IP = '192.168.1.100';

export function svcScenario(seed: number): Scenario {
  if (seed >= MORE_FIRST) return moreScenario(seed);
  if (seed >= EXT_FIRST) return extScenario(seed);
  const rnd = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const i = seed - SVC_SEED_BASE - 1;
  const kind = SVC_KINDS[i % SVC_KINDS.length];
  // each round of the kinds shifts the modes, so a kind meets every mode the lab builds
  const policy = kind === 'svc-policy-allow' || kind === 'svc-policy-deny';
  const mode: CniMode = policy
    ? 'calico-bgp'
    : LAB_MODES[(i + Math.floor(i / SVC_KINDS.length)) % LAB_MODES.length];
  // a dropped TCP SYN is retransmitted on the kernel's timer: the dropping case walks UDP. So does
  // the Service without endpoints: there the kernel counts no TcpAttemptFails for the connect()
  // its node's REJECT refused (the model counts one; open, see the README's Services section)
  const proto: 'tcp' | 'udp' =
    kind === 'svc-policy-deny' || kind === 'svc-no-endpoints' ? 'udp' : pick(['tcp', 'udp'] as const);

  // the endpoints (labelled app=web) and the one taken
  const [backends, chosen]: [string[], string | undefined] =
    kind === 'svc-same-1'
      ? [['p1b'], 'p1b']
      : kind === 'svc-cross-1'
        ? [['p2a'], 'p2a']
        : kind === 'svc-same-3'
          ? [['p1b', 'p2a', 'p3a'], 'p1b']
          : kind === 'svc-cross-3'
            ? [['p1b', 'p2a', 'p3a'], pick(['p2a', 'p3a'])]
            : kind === 'svc-nodeport-pod' || kind === 'svc-nodeport-node'
              ? [['p2a', 'p3a'], mode === 'flannel-vxlan' ? pick(['p2a', 'p3a']) : 'p2a']
              : kind === 'svc-no-endpoints'
                ? [[], undefined]
                : kind === 'svc-hairpin'
                  ? [['p1b', 'p2a'], 'p1b']
                  : [['p2a'], 'p2a'];
  const pods = base(seed, mode, backends).pods;
  const nodePort = kind === 'svc-nodeport-pod' || kind === 'svc-nodeport-node';
  const service: ServiceSpec = {
    name: 'web',
    namespace: 'default',
    type: nodePort ? 'NodePort' : 'ClusterIP',
    selector: { app: kind === 'svc-no-endpoints' ? 'none' : 'web' },
    ports: (['tcp', 'udp'] as const).map((p) => ({
      name: p === 'tcp' ? 'http' : 'dns',
      protocol: p === 'tcp' ? 'TCP' : 'UDP',
      port: SERVICE_PORT,
      targetPort: TARGET_PORT,
      nodePort: nodePort ? NODE_PORTS[p] : undefined,
    })),
    externalTrafficPolicy: 'Cluster',
    loadBalancerIPs: [],
  };
  const policies: NetworkPolicySpec[] = policy
    ? [
        {
          name: 'web',
          namespace: 'default',
          podSelector: { matchLabels: { app: 'web' } },
          policyTypes: ['Ingress'],
          ingress: [
            {
              peers: [],
              ports: [
                {
                  protocol: proto === 'tcp' ? 'TCP' : 'UDP',
                  port: kind === 'svc-policy-allow' ? TARGET_PORT : SERVICE_PORT,
                },
              ],
            },
          ],
          egress: [],
        },
      ]
    : [];
  const spec: ClusterSpec = { ...base(seed, mode, backends), policies, services: [service] };

  const from = kind === 'svc-hairpin' ? 'p1b' : kind === 'svc-nodeport-node' ? pick(['n1', 'n2']) : 'p1a';
  const [to, port] = nodePort ? ['n2', NODE_PORTS[proto]] : ['svc/web', SERVICE_PORT];
  const flow: WalkRequest = { from, to, proto, port, df: false, endpoint: chosen };
  const cross = chosen === undefined || pods.find((p) => p.name === chosen)!.node !== nodeOf(from);
  const title = `seed ${seed}: ${mode}, 3 nodes, ${pods.length} pods; ${proto} ${from} → ${to}:${port} (${service.type}, endpoints ${backends.join(', ') || 'none'}${chosen ? `, taken ${chosen}` : ''}); service: ${kind}`;
  return { seed, spec, mode, flow, faultKind: kind, cross, title };
}

/**
 * The hairpin scenario's port in hairpin mode where the pod hangs off a bridge, as flannel's CNI
 * config has the bridge plugin set it (`"hairpinMode": true`, netlink.LinkSetHairpin on the host
 * veth): the same command on both sides. Calico's pods are routed, with no bridge to hairpin.
 */
export function svcCommand(s: Scenario, c: Cluster): Fault | undefined {
  if (s.faultKind !== 'svc-hairpin' || s.mode === 'calico-bgp') return undefined;
  const pod = c.pods.find((p) => p.name === s.flow.from)!;
  return { netns: pod.node, command: `bridge link set dev ${pod.hostVeth} hairpin on` };
}

const NAMES = ['p1a', 'p1b', 'p2a', 'p2b', 'p3a'];

/** the three nodes, five pods (`backends` labelled app=web) of every Service scenario */
function base(seed: number, mode: CniMode, backends: readonly string[]): ClusterSpec {
  const nodes = [1, 2, 3].map((k) => ({
    name: `n${k}`,
    ip: `192.168.1.${9 + k}/24`,
    podCIDR: `10.244.${k - 1}.0/24`,
  }));
  const pods: ClusterSpec['pods'] = NAMES.map((name) => ({
    name,
    node: `n${name[1]}`,
    listen: [
      { proto: 'tcp', port: TARGET_PORT },
      { proto: 'udp', port: TARGET_PORT },
    ],
    labels: backends.includes(name) ? { app: 'web' } : { app: 'client' },
  }));
  return {
    name: `d${seed}`,
    cni: mode,
    mtu: 1500,
    subnets: [{ name: 'lan0', cidr: '192.168.1.0/24', gateway: '192.168.1.1' }],
    nodes,
    pods,
    bgp: [],
    run: [],
  };
}

/** a Service scenario from the external host (EXT_KINDS) */
function extScenario(seed: number): Scenario {
  const rnd = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const i = seed - EXT_FIRST;
  const kind = EXT_KINDS[i % EXT_KINDS.length];
  const cross = kind === 'svc-ext-nodeport-cross' || (kind === 'svc-ext-lb' && rnd() < 0.5);
  const mode: CniMode = cross
    ? 'flannel-vxlan'
    : LAB_MODES[(i + Math.floor(i / EXT_KINDS.length)) % LAB_MODES.length];
  const proto: 'tcp' | 'udp' = kind === 'svc-ext-local-none' ? 'udp' : pick(['tcp', 'udp'] as const);
  const local = kind === 'svc-ext-local' || kind === 'svc-ext-local-none' || kind === 'svc-ext-lb-local';
  const lb = kind === 'svc-ext-lb' || kind === 'svc-ext-lb-local';
  const backends = ['p2a', 'p3a'];
  const chosen = kind === 'svc-ext-local-none' ? undefined : cross ? 'p3a' : 'p2a';
  const service: ServiceSpec = {
    name: 'web',
    namespace: 'default',
    type: lb ? 'LoadBalancer' : 'NodePort',
    selector: { app: 'web' },
    ports: (['tcp', 'udp'] as const).map((p) => ({
      name: p === 'tcp' ? 'http' : 'dns',
      protocol: p === 'tcp' ? 'TCP' : 'UDP',
      port: SERVICE_PORT,
      targetPort: TARGET_PORT,
      nodePort: NODE_PORTS[p],
    })),
    externalTrafficPolicy: local ? 'Local' : 'Cluster',
    loadBalancerIPs: lb ? [INGRESS_IP] : [],
  };
  const spec: ClusterSpec = {
    ...base(seed, mode, backends),
    externalHosts: [
      {
        name: 'client',
        ip: `${CLIENT_IP}/24`,
        listen: [],
        routes: lb ? [{ to: `${INGRESS_IP}/32`, via: '192.168.1.11' }] : [],
      },
    ],
    services: [service],
  };
  const to = lb ? INGRESS_IP : kind === 'svc-ext-local-none' ? 'n1' : 'n2';
  const port = lb ? SERVICE_PORT : NODE_PORTS[proto];
  const flow: WalkRequest = { from: 'client', to, proto, port, df: false, endpoint: chosen };
  const title = `seed ${seed}: ${mode}, 3 nodes, 5 pods, external host client; ${proto} client → ${to}:${port} (${service.type}, externalTrafficPolicy ${service.externalTrafficPolicy}, endpoints ${backends.join(', ')}${chosen ? `, taken ${chosen}` : ''}); service: ${kind}`;
  return { seed, spec, mode, flow, faultKind: kind, cross: true, title };
}

/** a Service scenario of MORE_KINDS: from pod p1a to the Service's ClusterIP */
function moreScenario(seed: number): Scenario {
  const rnd = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const i = seed - MORE_FIRST;
  const kind = MORE_KINDS[i % MORE_KINDS.length];
  const mode = LAB_MODES[(i + Math.floor(i / MORE_KINDS.length)) % LAB_MODES.length];
  const external = kind === 'svc-manual-external';
  // a reply that dies at the router is not resent as a datagram: UDP there
  const proto: 'tcp' | 'udp' = external ? 'udp' : pick(['tcp', 'udp'] as const);
  const manual = kind !== 'svc-affinity';
  const backends = manual ? [] : ['p1b', 'p2a', 'p3a'];
  const ports = (['tcp', 'udp'] as const).map((p) => ({
    name: p === 'tcp' ? 'http' : 'dns',
    protocol: p === 'tcp' ? ('TCP' as const) : ('UDP' as const),
    port: SERVICE_PORT,
    targetPort: TARGET_PORT,
  }));
  const service: ServiceSpec = {
    name: 'web',
    namespace: 'default',
    type: 'ClusterIP',
    ...(manual ? {} : { selector: { app: 'web' } }),
    ports,
    externalTrafficPolicy: 'Cluster',
    ...(kind === 'svc-affinity' ? { affinitySeconds: 600 } : {}),
    loadBalancerIPs: [],
  };
  const spec: ClusterSpec = { ...base(seed, mode, backends), services: [service] };
  // host-local IPAM: a node's first pod gets .2, its second .3
  const ep = (pod: string, ready = true) => ({
    ip: `10.244.${Number(pod[1]) - 1}.${pod.endsWith('a') ? 2 : 3}`,
    ready,
    nodeName: `n${pod[1]}`,
    pod: `default/${pod}`,
  });
  const slice = (name: string, endpoints: EndpointSliceSpec['endpoints']): EndpointSliceSpec => ({
    name,
    namespace: 'default',
    service: 'web',
    ports: ports.map((p) => ({ name: p.name, protocol: p.protocol, port: TARGET_PORT })),
    endpoints,
  });
  if (kind === 'svc-manual')
    spec.endpointSlices = [
      slice('web-1', [ep('p2a'), ep('p3a', false)]),
      slice('web-2', [ep('p2a'), ep('p1b')]),
    ];
  if (external) {
    spec.externalHosts = [
      { name: 'client', ip: `${CLIENT_IP}/24`, listen: [{ proto, port: TARGET_PORT }], routes: [] },
    ];
    spec.endpointSlices = [slice('web-1', [{ ip: CLIENT_IP, ready: true }])];
  }
  const chosen = external ? CLIENT_IP : kind === 'svc-manual' ? 'p2a' : pick(['p2a', 'p3a']);
  const flow: WalkRequest = {
    from: 'p1a',
    to: 'svc/web',
    proto,
    port: SERVICE_PORT,
    df: false,
    endpoint: chosen,
  };
  const title = `seed ${seed}: ${mode}, 3 nodes, 5 pods; ${proto} p1a → svc/web:${SERVICE_PORT} (ClusterIP, ${manual ? 'hand-written EndpointSlices' : 'sessionAffinity ClientIP'}, taken ${chosen}); service: ${kind}`;
  return { seed, spec, mode, flow, faultKind: kind, cross: true, title };
}

function nodeOf(name: string): string {
  return name.startsWith('n') ? name : `n${name[1]}`;
}
