/**
 * What the API server and the EndpointSlice controller make of the cluster file's Services, as
 * kube-proxy receives it: every Service with its ClusterIP (allocated from serviceCIDR when the
 * file gives none) and node ports (allocated from 30000-32767), and the EndpointSlices of the
 * Services with a selector: the pods of the Service's namespace whose labels match, each with its
 * Ready condition, the target port resolved per pod (a number, or the pod's container port of that
 * name and protocol).
 *
 * Allocation is deterministic (the API server picks at random): the lowest free address of the
 * range from its second address on (the first is the `kubernetes` Service's, which podwalk does not
 * model), and the lowest free node port, both in file order after the ones the file gives; a
 * LoadBalancer with externalTrafficPolicy Local also gets its health check node port, after its
 * ports' node ports. A headless Service (clusterIP None) gets no address, and kube-proxy skips it.
 */
import {
  DEFAULT_SERVICE_CIDR,
  NODE_PORT_RANGE,
  type EndpointSliceSpec,
  type ServiceSpec,
  type ServiceType,
} from '../cluster/spec.ts';
import { broadcastOf, intToIp4, networkOf, parseCidr } from '../wire/addr.ts';
import { base32, sha256, utf8 } from '../wire/sha256.ts';
import type { ResolvedPod } from '../cni/build.ts';
import { selectorMatches } from '../cni/policy.ts';

/** one endpoint of an EndpointSlice (discovery.k8s.io/v1 Endpoint, IPv4) */
export interface SliceEndpoint {
  ip: string;
  ready: boolean;
  nodeName: string;
  /** targetRef: the pod (namespace/name) */
  pod: string;
}

export interface SlicePort {
  name: string;
  protocol: 'TCP' | 'UDP';
  port: number;
}

/** discovery.k8s.io/v1 EndpointSlice: the endpoints that share one resolution of the ports */
export interface EndpointSlice {
  name: string;
  namespace: string;
  /** kubernetes.io/service-name */
  service: string;
  ports: SlicePort[];
  endpoints: SliceEndpoint[];
}

/** what kube-proxy uses of an endpoint of one service port (proxy.BaseEndpointInfo) */
export interface EndpointInfo {
  ip: string;
  port: number;
  /** the pod's name (its address when a hand-written slice names no pod) */
  pod: string;
  nodeName: string;
  /** "IP:PORT" (its String()) */
  text: string;
  /** KUBE-SEP-… */
  chain: string;
}

/** one port of a Service, as kube-proxy's servicePortInfo holds it */
export interface ServicePortInfo {
  namespace: string;
  service: string;
  type: ServiceType;
  /** the port's name ("" for the single unnamed port) */
  portName: string;
  /** ServicePortName.String(): "NAMESPACE/NAME" plus ":PORTNAME" when named */
  nameString: string;
  protocol: 'tcp' | 'udp';
  clusterIP: string;
  port: number;
  nodePort?: number;
  externalTrafficPolicy: 'Cluster' | 'Local';
  /** the Service's health check node port (LoadBalancer, externalTrafficPolicy Local) */
  healthCheckNodePort?: number;
  /** sessionAffinity ClientIP: its timeout in seconds (StickyMaxAgeSeconds) */
  affinitySeconds?: number;
  loadBalancerIPs: string[];
  /** the ready endpoints, sorted as kube-proxy sorts them (by "IP:PORT" as text) */
  endpoints: EndpointInfo[];
  /** KUBE-SVC-, KUBE-SVL-, KUBE-EXT-, KUBE-FW- of this port */
  chains: { svc: string; svl: string; ext: string; fw: string };
}

export interface ResolvedService {
  namespace: string;
  name: string;
  type: ServiceType;
  clusterIP: string;
  ports: ServicePortInfo[];
  slices: EndpointSlice[];
}

export class ServiceError extends Error {
  constructor(
    message: string,
    /** index in the cluster file's services: list */
    readonly index: number,
  ) {
    super(message);
  }
}

/** the clusterIP of a headless Service */
export const HEADLESS = 'None';

/** kube-proxy's portProtoHash: base32(sha256(name + protocol)), first 16 characters */
export function portProtoHash(...parts: string[]): string {
  return base32(sha256(utf8(parts.join('')))).slice(0, 16);
}

/** ServicePortName.String() */
export function servicePortName(namespace: string, name: string, port: string): string {
  return `${namespace}/${name}${port ? `:${port}` : ''}`;
}

/** the container port a targetPort names on a pod, if it has it */
function targetOf(pod: ResolvedPod, target: number | string, protocol: 'TCP' | 'UDP'): number | undefined {
  if (typeof target === 'number') return target;
  const proto = protocol === 'UDP' ? 'udp' : 'tcp';
  return pod.listen.find((l) => l.name === target && l.proto === proto)?.port;
}

function allocateClusterIPs(services: readonly ServiceSpec[], cidr: string): string[] {
  const range = parseCidr(cidr);
  const taken = new Set(services.flatMap((s) => (s.clusterIP ? [s.clusterIP] : [])));
  taken.delete(HEADLESS);
  const first = networkOf(range) + 1;
  const last = broadcastOf(range) - 1;
  let next = first + 1;
  return services.map((s, i) => {
    if (s.clusterIP) return s.clusterIP;
    while (next <= last && taken.has(intToIp4(next))) next++;
    if (next > last) throw new ServiceError(`service ${s.namespace}/${s.name}: the range ${cidr} is full`, i);
    const ip = intToIp4(next++);
    taken.add(ip);
    return ip;
  });
}

/** the node ports of each Service's ports, then its health check node port (undefined where it has none) */
function allocateNodePorts(
  services: readonly ServiceSpec[],
): { ports: (number | undefined)[]; hc?: number }[] {
  const taken = new Set(
    services.flatMap((s) => [
      ...s.ports.flatMap((p) => (p.nodePort ? [p.nodePort] : [])),
      ...(s.healthCheckNodePort ? [s.healthCheckNodePort] : []),
    ]),
  );
  let next = NODE_PORT_RANGE[0];
  return services.map((s, i) => {
    const allocate = (given: number | undefined) => {
      if (given) return given;
      while (next <= NODE_PORT_RANGE[1] && taken.has(next)) next++;
      if (next > NODE_PORT_RANGE[1])
        throw new ServiceError(`service ${s.namespace}/${s.name}: no node port left`, i);
      taken.add(next);
      return next++;
    };
    const ports = s.ports.map((p) => (s.type === 'ClusterIP' ? undefined : allocate(p.nodePort)));
    const local = s.type === 'LoadBalancer' && s.externalTrafficPolicy === 'Local';
    return { ports, ...(local ? { hc: allocate(s.healthCheckNodePort) } : {}) };
  });
}

/** the EndpointSlice controller: pods grouped by how they resolve the Service's ports */
function slicesOf(svc: ServiceSpec, pods: readonly ResolvedPod[]): EndpointSlice[] {
  if (!svc.selector) return [];
  const selected = pods.filter(
    (p) => p.namespace === svc.namespace && selectorMatches({ matchLabels: svc.selector }, p.labels),
  );
  const groups = new Map<string, EndpointSlice>();
  for (const p of selected) {
    const ports: SlicePort[] = svc.ports.flatMap((sp) => {
      const port = targetOf(p, sp.targetPort, sp.protocol);
      return port === undefined ? [] : [{ name: sp.name, protocol: sp.protocol, port }];
    });
    const key = JSON.stringify(ports);
    let slice = groups.get(key);
    if (!slice) {
      const suffix = portProtoHash(svc.namespace, svc.name, key).slice(0, 5).toLowerCase();
      slice = {
        name: `${svc.name}-${suffix}`,
        namespace: svc.namespace,
        service: svc.name,
        ports,
        endpoints: [],
      };
      groups.set(key, slice);
    }
    slice.endpoints.push({ ip: p.ip, ready: p.ready, nodeName: p.node, pod: `${p.namespace}/${p.name}` });
  }
  return [...groups.values()];
}

/** a hand-written EndpointSlice as the controller's are held */
function manualSlice(s: EndpointSliceSpec): EndpointSlice {
  return {
    name: s.name,
    namespace: s.namespace,
    service: s.service,
    ports: s.ports,
    endpoints: s.endpoints.map((e) => ({
      ip: e.ip,
      ready: e.ready,
      nodeName: e.nodeName ?? '',
      pod: e.pod ?? `/${e.ip}`,
    })),
  };
}

/**
 * The Services as kube-proxy sees them; `pods` with their nodes and readiness, `manual` the
 * EndpointSlices written by hand (kube-proxy merges every slice labelled for a Service)
 */
export function resolveServices(
  services: readonly ServiceSpec[],
  pods: readonly ResolvedPod[],
  serviceCIDR = DEFAULT_SERVICE_CIDR,
  manual: readonly EndpointSliceSpec[] = [],
): ResolvedService[] {
  const ips = allocateClusterIPs(services, serviceCIDR);
  const nodePorts = allocateNodePorts(services);
  return services.map((svc, i) => {
    const slices = [
      ...slicesOf(svc, pods),
      ...manual.filter((m) => m.namespace === svc.namespace && m.service === svc.name).map(manualSlice),
    ];
    const ports = svc.ports.map((sp, j): ServicePortInfo => {
      const protocol = sp.protocol === 'UDP' ? 'udp' : 'tcp';
      const nameString = servicePortName(svc.namespace, svc.name, sp.name);
      const endpoints: EndpointInfo[] = [];
      for (const s of slices) {
        const port = s.ports.find((p) => p.name === sp.name && p.protocol === sp.protocol);
        if (!port) continue;
        for (const e of s.endpoints) {
          const text = `${e.ip}:${port.port}`;
          // endpointSliceCache keys a port's endpoints by IP:PORT: one endpoint in two slices counts once
          if (!e.ready || endpoints.some((x) => x.text === text)) continue;
          const pod = e.pod.slice(e.pod.indexOf('/') + 1);
          const chain = `KUBE-SEP-${portProtoHash(nameString, protocol, text)}`;
          endpoints.push({ ip: e.ip, port: port.port, pod, nodeName: e.nodeName, text, chain });
        }
      }
      endpoints.sort((a, b) => (a.text < b.text ? -1 : a.text > b.text ? 1 : 0));
      const hash = portProtoHash(nameString, protocol);
      return {
        namespace: svc.namespace,
        service: svc.name,
        type: svc.type,
        portName: sp.name,
        nameString,
        protocol,
        clusterIP: ips[i],
        port: sp.port,
        nodePort: nodePorts[i].ports[j],
        externalTrafficPolicy: svc.externalTrafficPolicy,
        ...(nodePorts[i].hc !== undefined ? { healthCheckNodePort: nodePorts[i].hc } : {}),
        ...(svc.affinitySeconds !== undefined ? { affinitySeconds: svc.affinitySeconds } : {}),
        loadBalancerIPs: svc.loadBalancerIPs,
        endpoints,
        chains: {
          svc: `KUBE-SVC-${hash}`,
          svl: `KUBE-SVL-${hash}`,
          ext: `KUBE-EXT-${hash}`,
          fw: `KUBE-FW-${hash}`,
        },
      };
    });
    return { namespace: svc.namespace, name: svc.name, type: svc.type, clusterIP: ips[i], ports, slices };
  });
}
