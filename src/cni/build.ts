/**
 * Bring a cluster up: the underlay (one L2 segment per subnet, a router between them), every
 * node's host namespace, every pod's namespace wired to cni0 with a veth pair (the bridge
 * plugin + host-local IPAM), kube-proxy's and the CNI's iptables chains, then the CNI mode's
 * daemon programs the routes, neighbours and FDB entries it would program. Nothing below this
 * layer knows which CNI is running.
 */
import type { ClusterSpec, CniMode, NodeSpec, PodSpec } from '../cluster/spec.ts';
import { intToIp4, ip4ToInt, prefixMask } from '../wire/addr.ts';
import { Mesh } from '../bgp/mesh.ts';
import type { Netns } from '../kernel/objects.ts';
import {
  addAddress,
  addBridge,
  addLoopback,
  addRoute,
  addVethPair,
  setLinkUp,
  setMaster,
  NetlinkError,
} from '../kernel/netlink.ts';
import { parseRuleSpec, shellSplit } from '../kernel/netfilter.ts';
import { Sockets } from '../kernel/sockets.ts';
import { Stack } from '../kernel/stack.ts';
import { derivedMac, hash32, World } from '../kernel/world.ts';
import { MODE_INFO, programMode } from './modes.ts';
import { compilePolicies, type NodePolicy } from './policy.ts';

export interface ResolvedPod extends Required<Omit<PodSpec, 'listen'>> {
  listen: PodSpec['listen'];
}

export interface ResolvedNode extends NodeSpec {
  addr: string;
  len: number;
  subnet: string;
  podNet: string;
  podLen: number;
  /** cni0 address: first host of the pod CIDR */
  gateway: string;
}

export interface Cluster {
  spec: ClusterSpec;
  mode: CniMode;
  world: World;
  stack: Stack;
  sockets: Sockets;
  nodes: ResolvedNode[];
  pods: ResolvedPod[];
  podMtu: number;
  mesh?: Mesh;
  /** the cluster-wide pod network (what flannel calls Network), the smallest prefix covering all pod CIDRs */
  clusterCidr: string;
  /** what the user should know about the build, e.g. policies a mode does not enforce (one line each) */
  warnings: string[];
}

function sameNet(a: string, b: string, len: number): boolean {
  return ((ip4ToInt(a) ^ ip4ToInt(b)) & prefixMask(len)) === 0;
}

function subnetOf(ip: string, len: number): string {
  return `${intToIp4((ip4ToInt(ip) & prefixMask(len)) >>> 0)}/${len}`;
}

export function supernet(cidrs: string[]): string {
  let len = 32;
  const nets = cidrs.map((c) => {
    const [a, l] = c.split('/');
    len = Math.min(len, Number(l));
    return ip4ToInt(a);
  });
  while (len > 0 && !nets.every((n) => ((n ^ nets[0]) & prefixMask(len)) === 0)) len--;
  // flannel's default Network is a /16 around the node subnets
  len = Math.min(len, 16);
  return `${intToIp4((nets[0] & prefixMask(len)) >>> 0)}/${len}`;
}

function resolveNodes(spec: ClusterSpec): ResolvedNode[] {
  return spec.nodes.map((n) => {
    const [addr, l] = n.ip.split('/');
    const len = Number(l);
    const [podNet, pl] = n.podCIDR.split('/');
    const sub = spec.subnets.find((s) => s.cidr === subnetOf(addr, len));
    return {
      ...n,
      addr,
      len,
      subnet: sub?.name ?? spec.subnets[0].name,
      podNet,
      podLen: Number(pl),
      gateway: intToIp4(ip4ToInt(podNet) + 1),
    };
  });
}

/** host-local IPAM: the next free address from .2 upward; MACs and veth names from seeded hashes */
function resolvePods(spec: ClusterSpec, nodes: ResolvedNode[]): ResolvedPod[] {
  const taken = new Set(spec.pods.filter((p) => p.ip).map((p) => p.ip!));
  return spec.pods.map((p) => {
    const node = nodes.find((n) => n.name === p.node)!;
    let ip = p.ip;
    if (!ip) {
      const base = ip4ToInt(node.podNet);
      const size = 2 ** (32 - node.podLen);
      for (let i = 2; i < size - 1; i++) {
        const cand = intToIp4(base + i);
        if (!taken.has(cand)) {
          ip = cand;
          break;
        }
      }
      if (!ip) throw new BuildError(`pod ${p.name}: no free address left in ${node.podCIDR}`);
      taken.add(ip);
    }
    const seed = `${spec.name}/${p.name}`;
    return {
      name: p.name,
      node: p.node,
      ip,
      mac: p.mac ?? derivedMac(`${seed}/eth0`),
      hostVeth: p.hostVeth ?? `veth${hash32(seed).toString(16).padStart(8, '0')}`,
      hostVethMac: p.hostVethMac ?? derivedMac(`${seed}/host`),
      listen: p.listen,
      namespace: p.namespace ?? 'default',
      labels: p.labels ?? {},
    };
  });
}

/** kube-proxy's and the CNI firewall plugin's FORWARD chains, as the article's nodes show */
function programFilter(
  ns: Netns,
  cluster: { pods: ResolvedPod[]; clusterCidr: string },
  node: string,
  flannel: boolean,
  policy: NodePolicy | undefined,
): void {
  const nf = ns.netfilter;
  const add = (chain: string, spec: string) =>
    nf.chain('filter', chain)!.rules.push(parseRuleSpec(shellSplit(spec)));
  nf.newChain('filter', 'KUBE-FORWARD');
  nf.newChain('filter', 'CNI-FORWARD');
  add('FORWARD', '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD');
  add('FORWARD', '-m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD');
  add('KUBE-FORWARD', '-m conntrack --ctstate INVALID -j DROP');
  add(
    'KUBE-FORWARD',
    '-m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT',
  );
  add(
    'KUBE-FORWARD',
    '-m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  );
  // the policy agent's chains (policy.ts): jumped to before the plugin accepts anything
  for (const c of policy?.chains ?? []) {
    nf.newChain('filter', c.name);
    for (const r of c.rules) add(c.name, r);
  }
  for (const r of policy?.forward ?? []) add('CNI-FORWARD', r);
  for (const r of policy?.input ?? []) add('INPUT', r);
  for (const p of cluster.pods.filter((x) => x.node === node)) {
    add('CNI-FORWARD', `-d ${p.ip}/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
    add('CNI-FORWARD', `-s ${p.ip}/32 -j ACCEPT`);
  }
  if (flannel) {
    nf.newChain('filter', 'FLANNEL-FWD');
    add('FORWARD', '-m comment --comment "flanneld forward" -j FLANNEL-FWD');
    add('FLANNEL-FWD', `-s ${cluster.clusterCidr} -m comment --comment "flanneld forward" -j ACCEPT`);
    add('FLANNEL-FWD', `-d ${cluster.clusterCidr} -m comment --comment "flanneld forward" -j ACCEPT`);
  }
}

/** A cluster that cannot be brought up as described */
export class BuildError extends Error {}

/**
 * Bring the cluster up as its CNI would. The spec's `run:` commands are not applied here: they
 * are commands of the emulated tools, a layer above (tools/index.ts prepareCluster).
 */
export function buildCluster(spec: ClusterSpec, mode: CniMode = spec.cni): Cluster {
  try {
    return build(spec, mode);
  } catch (e) {
    // a kernel refusal while programming the nodes is a cluster that cannot be brought up as described
    if (e instanceof NetlinkError)
      throw new BuildError(`cluster "${spec.name}" (${mode}): the kernel refused a step: ${e.message}`);
    throw e;
  }
}

function build(spec: ClusterSpec, mode: CniMode): Cluster {
  // every name is a network namespace: segments, the router, nodes and pods share one namespace of names
  const names = [
    ...spec.subnets.map((s) => s.name),
    ...(spec.subnets.some((s) => s.gateway) ? ['router'] : []),
    ...spec.nodes.map((n) => n.name),
    ...spec.pods.map((p) => p.name),
  ];
  const seen = new Set<string>();
  const dup = names.find((n) => (seen.has(n) ? true : (seen.add(n), false)));
  if (dup)
    throw new BuildError(
      `the name "${dup}" is used twice (subnets, the router, nodes and pods each get a network namespace of that name)`,
    );
  const world = new World(spec.name);
  const stack = new Stack(world);
  const sockets = new Sockets(stack);
  const info = MODE_INFO[mode];
  const podMtu = spec.podMtu ?? spec.mtu - info.overhead;
  const nodes = resolveNodes(spec);
  const pods = resolvePods(spec, nodes);
  const clusterCidr = supernet(spec.nodes.map((n) => n.podCIDR));
  const mac = (...parts: string[]) => derivedMac([spec.name, ...parts].join('/'));

  // underlay: a namespace per segment holding a bridge that plays the switch
  for (const s of spec.subnets) {
    const seg = world.addNetns(s.name, 'segment');
    addLoopback(seg);
    addBridge(seg, s.name, mac('segment', s.name), spec.mtu);
    setLinkUp(seg, s.name, true);
  }
  const gatewaySubnets = spec.subnets.filter((s) => s.gateway);
  if (gatewaySubnets.length) {
    const router = world.addNetns('router', 'router');
    addLoopback(router);
    router.setSysctl('net.ipv4.ip_forward', '1');
    gatewaySubnets.forEach((s, i) => {
      const seg = world.ns(s.name);
      const leg = `eth${i}`;
      addVethPair(
        router,
        leg,
        s.gatewayMac ?? mac('router', leg),
        seg,
        'router',
        mac('segment', s.name, 'router'),
        spec.mtu,
      );
      setMaster(seg, 'router', s.name);
      setLinkUp(seg, 'router', true);
      setLinkUp(router, leg, true);
      addAddress(router, leg, s.gateway!, Number(s.cidr.split('/')[1]));
    });
  }

  for (const n of nodes) {
    const ns = world.addNetns(n.name, 'node');
    addLoopback(ns);
    const seg = world.ns(n.subnet);
    const port = n.name.slice(0, 15);
    addVethPair(
      ns,
      'eth0',
      n.mac ?? mac(n.name, 'eth0'),
      seg,
      port,
      mac('segment', n.subnet, n.name),
      n.mtu ?? spec.mtu,
    );
    setMaster(seg, port, n.subnet);
    setLinkUp(seg, port, true);
    setLinkUp(ns, 'eth0', true);
    addAddress(ns, 'eth0', n.addr, n.len);
    const sub = spec.subnets.find((s) => s.name === n.subnet);
    if (sub?.gateway) addRoute(ns, { prefix: 'default', via: sub.gateway, dev: 'eth0' });
    ns.setSysctl('net.ipv4.ip_forward', '1');
    ns.setSysctl('net.bridge.bridge-nf-call-iptables', '1');

    // the bridge plugin: cni0 with the pod gateway address
    addBridge(ns, 'cni0', n.bridgeMac ?? mac(n.name, 'cni0'), podMtu);
    setLinkUp(ns, 'cni0', true);
    addAddress(ns, 'cni0', n.gateway, n.podLen);
  }

  for (const p of pods) {
    const node = nodes.find((n) => n.name === p.node)!;
    const host = world.ns(node.name);
    const ns = world.addNetns(p.name, 'pod');
    addLoopback(ns);
    addVethPair(ns, 'eth0', p.mac, host, p.hostVeth, p.hostVethMac, podMtu);
    setMaster(host, p.hostVeth, 'cni0');
    setLinkUp(host, p.hostVeth, true);
    setLinkUp(ns, 'eth0', true);
    addAddress(ns, 'eth0', p.ip, node.podLen);
    // a pod address outside the node's CIDR (a static IP, a stale allocation) cannot reach cni0's
    // address on-link: the route is added onlink, so the pod still sends and doctor can show why
    const onlink = !sameNet(p.ip, node.gateway, node.podLen);
    addRoute(ns, { prefix: 'default', via: node.gateway, dev: 'eth0', onlink });
    for (const l of p.listen) ns.sockets.push({ proto: l.proto, port: l.port, addr: '0.0.0.0' });
  }

  const warnings: string[] = [];
  const policies = spec.policies ?? [];
  let compiled = new Map<string, NodePolicy>();
  if (info.networkPolicy) compiled = compilePolicies(spec, pods);
  else if (policies.length > 0) {
    const n = policies.length;
    warnings.push(
      `${mode} does not enforce NetworkPolicy: ${n === 1 ? '1 policy is' : `${n} policies are`} not applied ` +
        `(${policies.map((p) => `${p.namespace}/${p.name}`).join(', ')}); a calico-* mode enforces them`,
    );
  }
  const cluster: Cluster = { spec, mode, world, stack, sockets, nodes, pods, podMtu, clusterCidr, warnings };
  for (const n of nodes)
    programFilter(world.ns(n.name), cluster, n.name, mode.startsWith('flannel'), compiled.get(n.name));
  programMode(cluster);
  return cluster;
}
