/**
 * The cluster a user describes (YAML file or the built-in seed). This is *intent*: what a
 * Kubernetes cluster and its CNI were configured with. The CNI modules turn it into kernel state.
 * Optional fields are derived deterministically by the builder (pod IPs from the node's podCIDR,
 * MACs from a seeded hash of the cluster name and the device's place).
 */

export const CNI_MODES = [
  'flannel-vxlan',
  'flannel-host-gw',
  'calico-bgp',
  'calico-ipip',
  'calico-ipip-crosssubnet',
  'calico-vxlan',
  'calico-vxlan-crosssubnet',
] as const;
export type CniMode = (typeof CNI_MODES)[number];

/**
 * How the calico-* modes lay out a node (the flannel modes always use the bridge):
 *  - `calico` (the default): as calico-node (Calico v3.27) programs it: no bridge, a host-side
 *    veth `cali…` with MAC ee:ee:ee:ee:ee:ee and proxy ARP per pod, the pod's address as a /32
 *    with `default via 169.254.1.1`, a `/32 dev cali… scope link` route per pod on the node, and
 *    IPAM blocks (`blackhole <block> proto bird`) routed between nodes by BIRD (calico-vxlan: by
 *    felix, `blackhole <block> proto 80`, over vxlan.calico);
 *  - `bridge`: the article's picture: pods on the `cni0` bridge, one route per node's pod CIDR.
 */
export const CALICO_LAYOUTS = ['calico', 'bridge'] as const;
export type CalicoLayout = (typeof CALICO_LAYOUTS)[number];
/** Calico's default IPPool blockSize (IPv4) */
export const DEFAULT_IPAM_BLOCK_SIZE = 26;

export interface SubnetSpec {
  /** Name of the underlay L2 segment, e.g. "lan0" */
  name: string;
  /** e.g. "192.168.1.0/24" */
  cidr: string;
  /** Router address on this segment (default route of its nodes), e.g. "192.168.1.1" */
  gateway?: string;
  /** MAC of the router's leg on this segment */
  gatewayMac?: string;
}

export interface NodeSpec {
  name: string;
  /** Address with prefix on eth0, e.g. "192.168.1.10/24"; its subnet is the segment it sits on */
  ip: string;
  /** e.g. "10.244.0.0/24" */
  podCIDR: string;
  /** eth0 MAC */
  mac?: string;
  /** cni0 MAC */
  bridgeMac?: string;
  /** flannel.1 MAC (flannel-vxlan) */
  vtepMac?: string;
  /** eth0 MTU; defaults to the cluster's underlay MTU */
  mtu?: number;
  /** the Node's labels (what a BGPPeer's nodeSelector and peerSelector match) */
  labels?: Record<string, string>;
  /** Calico's Node spec.bgp.routeReflectorClusterID: the node is a route reflector of this cluster */
  routeReflectorClusterID?: string;
  /** Calico's Node spec.bgp.asNumber: the node's own AS (default: the BGPConfiguration's) */
  asNumber?: number;
}

/**
 * A host on the underlay outside the cluster (a client, the user behind a load balancer): its own
 * network namespace on a segment, like a node's eth0, with no CNI, no kube-proxy and no forwarding.
 */
export interface ExternalHostSpec {
  name: string;
  /** Address with prefix on eth0, e.g. "192.168.1.100/24"; its subnet is the segment it sits on */
  ip: string;
  /** eth0 MAC */
  mac?: string;
  /** Listening sockets, as a pod's (a backend outside the cluster behind a Service's manual endpoints) */
  listen: ListenSpec[];
  /**
   * Routes of its own besides the subnet's default route, e.g. a load balancer's ingress IP via a
   * node (what a BGP-speaking load balancer or a router's static route gives the user)
   */
  routes: { to: string; via: string }[];
}

export interface PodSpec {
  name: string;
  node: string;
  /** Pod IP; default: the next free address in the node's podCIDR from .2 on (host-local IPAM) */
  ip?: string;
  /** Pod eth0 MAC */
  mac?: string;
  /** Host-side veth name; default "veth" + 8 hex chars derived from the pod name */
  hostVeth?: string;
  hostVethMac?: string;
  /** Listening sockets, e.g. ["tcp/8080", "udp/53"]; `name` is the container port's name ("tcp/8080/http") */
  listen: ListenSpec[];
  /** Kubernetes namespace; default "default" */
  namespace?: string;
  /** Pod labels (what NetworkPolicy podSelectors and Service selectors match) */
  labels?: Record<string, string>;
  /** the pod's Ready condition (default true); a pod that is not ready is no Service endpoint */
  ready?: boolean;
}

export interface ListenSpec {
  proto: 'tcp' | 'udp';
  port: number;
  /** the named container port (NetworkPolicy ports may name it) */
  name?: string;
}

/** A Kubernetes namespace and its labels (`kubernetes.io/metadata.name: NAME` is implicit) */
export interface NamespaceSpec {
  name: string;
  labels: Record<string, string>;
}

/** metav1.LabelSelector; an empty selector matches everything */
export interface LabelSelectorSpec {
  matchLabels?: Record<string, string>;
  matchExpressions?: {
    key: string;
    operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
    values?: string[];
  }[];
}

/** networking.k8s.io/v1 NetworkPolicyPeer: ipBlock alone, or pod and/or namespace selectors */
export interface PolicyPeerSpec {
  podSelector?: LabelSelectorSpec;
  namespaceSelector?: LabelSelectorSpec;
  ipBlock?: { cidr: string; except?: string[] };
}

export interface PolicyPortSpec {
  protocol: 'TCP' | 'UDP' | 'SCTP';
  /** a number or the name of a container port; absent: every port of the protocol */
  port?: number | string;
  endPort?: number;
}

/** One ingress (`from`) or egress (`to`) rule; an empty peer list means every peer, empty ports every port */
export interface PolicyRuleSpec {
  peers: PolicyPeerSpec[];
  ports: PolicyPortSpec[];
}

/** A networking.k8s.io/v1 NetworkPolicy, normalised: policyTypes filled in as the API server does */
export interface NetworkPolicySpec {
  name: string;
  namespace: string;
  podSelector: LabelSelectorSpec;
  policyTypes: ('Ingress' | 'Egress')[];
  ingress: PolicyRuleSpec[];
  egress: PolicyRuleSpec[];
}

export interface BgpSessionSpec {
  /** The two node names of a mesh session */
  nodes: [string, string];
  state: 'up' | 'down';
}

/** Calico's BGPConfiguration `default` (projectcalico.org/v3): what the model takes of its spec */
export interface BgpConfigurationSpec {
  /** the node-to-node mesh (default true) */
  nodeToNodeMeshEnabled: boolean;
  /** the global AS of every node without its own (default 64512) */
  asNumber?: number;
}

/**
 * A Calico BGPPeer (projectcalico.org/v3): which nodes peer (`node` or `nodeSelector`; neither:
 * every node, a global peer) with what (`peerSelector` over the nodes' labels, or `peerIP` and
 * `asNumber`: the peer's AS, default the global AS; another AS than the local node's makes the
 * session eBGP). Selectors in Calico's selector syntax (src/cluster/calico-selector.ts).
 */
export interface BgpPeerSpec {
  name: string;
  node?: string;
  nodeSelector?: string;
  peerSelector?: string;
  peerIP?: string;
  asNumber?: number;
}

/** Calico's IPPool (projectcalico.org/v3) of the cluster's pod network: what the model takes of it */
export interface IpPoolSpec {
  name: string;
  /** masquerade what a pod sends out of every pool (felix's cali-nat-outgoing); Calico's default pool has it on */
  natOutgoing: boolean;
}

/** flanneld's flags that the model takes (kube-flannel.yml passes `--ip-masq --kube-subnet-mgr`) */
export interface FlannelSpec {
  /** `--ip-masq`: flanneld's FLANNEL-POSTRTG masquerades what pods send out of the Network (kube-flannel.yml: on) */
  ipMasq: boolean;
}

export interface ClusterSpec {
  name: string;
  cni: CniMode;
  /** Underlay MTU (node eth0), default 1500 */
  mtu: number;
  /** Pod (and cni0) MTU; default: underlay MTU minus the mode's encapsulation overhead */
  podMtu?: number;
  subnets: SubnetSpec[];
  nodes: NodeSpec[];
  pods: PodSpec[];
  /** calico-* modes: calico-node's own layout (default) or the article's cni0 bridge */
  calicoLayout?: CalicoLayout;
  /** calico-* modes, `calico` layout: the IPPool's blockSize, 20..32 (default 26) */
  ipamBlockSize?: number;
  /** Hosts on the underlay outside the cluster (clients of NodePort and LoadBalancer Services) */
  externalHosts?: ExternalHostSpec[];
  /** Calico: sessions of the node-to-node mesh that differ from "up" */
  bgp: BgpSessionSpec[];
  /** Calico's BGPConfiguration (default: the mesh on) */
  bgpConfiguration?: BgpConfigurationSpec;
  /** Calico's BGPPeer objects */
  bgpPeers?: BgpPeerSpec[];
  /** Calico's IPPool (default: Calico's default-ipv4-ippool, natOutgoing on) */
  ipPool?: IpPoolSpec;
  /** flannel modes: flanneld's flags (default: kube-flannel.yml's, `--ip-masq` on) */
  flannel?: FlannelSpec;
  /** Commands applied after the CNI programmed the nodes, e.g. "node1: ip route del 10.244.1.0/24" */
  run: string[];
  /** Kubernetes namespaces with labels; namespaces pods name but that are not listed here exist unlabelled */
  namespaces?: NamespaceSpec[];
  /** NetworkPolicies (enforced by the policy-capable CNI modes only) */
  policies?: NetworkPolicySpec[];
  /** v1 Services; when the list is there (even empty), kube-proxy (iptables mode) runs on every node */
  services?: ServiceSpec[];
  /** EndpointSlices written by hand (the controller makes those of Services with a selector) */
  endpointSlices?: EndpointSliceSpec[];
  /** the API server's --service-cluster-ip-range (default 10.96.0.0/12) */
  serviceCIDR?: string;
  /** A ready-made broken cluster (scenarios/): the flow to diagnose and the fault planted in it */
  scenario?: ScenarioSpec;
}

/** the API server's default --service-node-port-range */
export const NODE_PORT_RANGE: readonly [number, number] = [30000, 32767];
/** the API server's default --service-cluster-ip-range */
export const DEFAULT_SERVICE_CIDR = '10.96.0.0/12';

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer';

/** v1 ServicePort, defaulted as the API server does (protocol TCP, targetPort = port) */
export interface ServicePortSpec {
  /** required when the Service has more than one port; "" otherwise */
  name: string;
  protocol: 'TCP' | 'UDP';
  port: number;
  /** a container port number or the name of a container port (a pod's `listen` name) */
  targetPort: number | string;
  /** NodePort/LoadBalancer: 30000-32767, allocated when absent */
  nodePort?: number;
}

/** A v1 Service, normalised */
export interface ServiceSpec {
  name: string;
  namespace: string;
  type: ServiceType;
  /** absent: no EndpointSlice is made for it (manual endpoints are not modelled yet) */
  selector?: Record<string, string>;
  /** allocated from serviceCIDR when absent; "None": headless (no ClusterIP, kube-proxy skips it) */
  clusterIP?: string;
  ports: ServicePortSpec[];
  externalTrafficPolicy: 'Cluster' | 'Local';
  /** LoadBalancer with externalTrafficPolicy Local: the node port kube-proxy's health check serves (allocated when absent) */
  healthCheckNodePort?: number;
  /** sessionAffinity ClientIP: sessionAffinityConfig.clientIP.timeoutSeconds (default 10800); absent: None */
  affinitySeconds?: number;
  /** status.loadBalancer.ingress[].ip */
  loadBalancerIPs: string[];
}

/**
 * A discovery.k8s.io/v1 EndpointSlice written by hand (for a Service without a selector, or next to
 * the controller's): kube-proxy uses it for the Service its kubernetes.io/service-name label names.
 */
export interface EndpointSliceSpec {
  name: string;
  namespace: string;
  /** the kubernetes.io/service-name label */
  service: string;
  ports: { name: string; protocol: 'TCP' | 'UDP'; port: number }[];
  endpoints: {
    /** addresses[0] (kube-proxy uses the first) */
    ip: string;
    /** conditions.ready; absent means ready */
    ready: boolean;
    nodeName?: string;
    /** targetRef's NAMESPACE/NAME, when it names a pod */
    pod?: string;
  }[];
}

export interface ScenarioSpec {
  title: string;
  description: string;
  /** FROM, TO and optional PORT, as `podwalk doctor` takes them */
  from: string;
  to: string;
  port?: number;
  proto: 'tcp' | 'udp' | 'icmp';
  /** what doctor must find: the first drop's reason and where, and the checks that must fail */
  expect: { reason?: string; netns?: string; checks: string[] };
}
