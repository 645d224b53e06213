/**
 * An imported World as a Cluster, the shape trace, doctor, the tools and the lab work on: its
 * nodes (address, pod CIDR, segment) and pods (address, host veth, listeners, Kubernetes name and
 * labels) read off the plan, and the CNI the dumps look like. The CNI is only a label for the
 * diagnosis (its likely causes and checks, e.g. the tunnel overhead); nothing is built from it.
 */
import type { ClusterSpec, CniMode, ListenSpec, NodeSpec, PodSpec } from '../cluster/spec.ts';
import { supernet, type Cluster, type ResolvedNode, type ResolvedPod } from '../cni/build.ts';
import { Sockets } from '../kernel/sockets.ts';
import { Stack } from '../kernel/stack.ts';
import { World } from '../kernel/world.ts';
import { coveringCidr, intToIp4, ip4ToInt, networkOf } from '../wire/addr.ts';
import type { ImportPlan, ImportWarning, PlanNs } from './plan.ts';

export interface CniGuess {
  mode: CniMode;
  /** what in the dumps says so, e.g. "flannel.1: vxlan id 1 dstport 4789" */
  evidence: string;
}

/** the CNI the dumped nodes look like */
export function guessCni(plan: ImportPlan): CniGuess {
  const nodes = plan.namespaces.filter((p) => p.role === 'node');
  for (const n of nodes)
    for (const l of n.links)
      if (l.type === 'vxlan') {
        // felix's device (calico-vxlan), else flanneld's; felix's no-encap routes (proto 80 via
        // a node on the same subnet, not over vxlan.calico) are its vxlanMode CrossSubnet
        const direct =
          l.name === 'vxlan.calico' &&
          nodes.some((x) =>
            (x.routes ?? []).some(
              (r) =>
                r.proto === '80' && r.via && r.dev && x.links.find((k) => k.name === r.dev)?.type === 'veth',
            ),
          );
        return {
          mode:
            l.name === 'vxlan.calico'
              ? direct
                ? 'calico-vxlan-crosssubnet'
                : 'calico-vxlan'
              : 'flannel-vxlan',
          evidence: `${n.name}: ${l.name} is vxlan id ${l.vni} dstport ${l.dstport}${direct ? ', and felix routes some IPAM blocks without it' : ''}`,
        };
      }
  for (const n of nodes)
    for (const l of n.links)
      if (l.type === 'ipip') {
        const direct = nodes.some((x) =>
          (x.routes ?? []).some(
            (r) =>
              r.proto === 'bird' && r.via && r.dev && x.links.find((k) => k.name === r.dev)?.type === 'veth',
          ),
        );
        return {
          mode: direct ? 'calico-ipip-crosssubnet' : 'calico-ipip',
          evidence: `${n.name}: ${l.name} is ipip${direct ? ', and BIRD routes some pod CIDRs without it' : ''}`,
        };
      }
  for (const n of nodes) {
    const r = (n.routes ?? []).find((x) => x.proto === 'bird');
    if (r) return { mode: 'calico-bgp', evidence: `${n.name}: route ${r.prefix} proto bird` };
    const cali = n.links.find((l) => l.name.startsWith('cali'));
    if (cali) return { mode: 'calico-bgp', evidence: `${n.name}: Calico's veth ${cali.name}` };
  }
  return {
    mode: 'flannel-host-gw',
    evidence:
      'no CNI signature (no flannel.1, vxlan.calico, tunl0, cali* veths or BIRD routes): an unencapsulated routed network',
  };
}

function netOf(ip: string, len: number): string {
  return intToIp4(networkOf({ addr: ip4ToInt(ip), len }));
}

/** the longest prefix covering every address */
function covering(ips: string[]): { net: string; len: number } {
  const c = coveringCidr(ips.map(ip4ToInt));
  return { net: intToIp4(c.addr), len: c.len };
}

function podCidrOf(
  plan: ImportPlan,
  node: PlanNs,
  pods: PlanNs[],
  addr: string,
  warn: (w: ImportWarning) => void,
): { net: string; len: number; gateway?: string } {
  const k = plan.kube?.nodes.find((x) => x.name === node.name || x.addresses.includes(addr));
  const fromKube = k?.podCIDRs[0];
  // the bridge the pods' host veths are ports of, and its address
  const hostDevs = new Set(pods.flatMap((p) => (p.podLink ? [p.podLink.hostDev] : [])));
  const bridgeName =
    node.links.find((l) => hostDevs.has(l.name) && l.master)?.master ??
    (node.links.some((l) => l.name === 'cni0') ? 'cni0' : undefined);
  // the bridge's address, or the node's on its own veth whose other end is a port of the bridge
  const gwDev = node.links.find(
    (l) =>
      l.type === 'veth' &&
      l.peer.ns === node.name &&
      node.links.some((x) => x.name === l.peer.name && x.master === bridgeName),
  )?.name;
  const brAddr = bridgeName
    ? (node.addrs.find((a) => a.dev === bridgeName && a.scope === 'global') ??
      node.addrs.find((a) => a.dev === gwDev && a.scope === 'global'))
    : undefined;
  if (fromKube) {
    const [net, l] = fromKube.split('/');
    return { net: netOf(net, Number(l)), len: Number(l), gateway: brAddr?.ip };
  }
  if (brAddr) return { net: netOf(brAddr.ip, brAddr.len), len: brAddr.len, gateway: brAddr.ip };
  // Calico keeps a blackhole route for each IPAM block it owns
  const hole = (node.routes ?? []).find((r) => r.type === 'blackhole' && r.prefix !== 'default');
  if (hole) {
    const [net, l] = hole.prefix.split('/');
    return { net, len: Number(l ?? 32) };
  }
  const ips = pods.flatMap((p) => p.addrs.filter((a) => a.dev === p.podLink?.podDev).map((a) => a.ip));
  if (ips.length) return covering(ips);
  warn({
    netns: node.name,
    subject: 'no pod CIDR found (no kube.json Node, pod bridge, blackhole route or pod)',
    effect: "the checks take the node's own address as its pod CIDR",
  });
  return { net: addr, len: 32 };
}

/** the value most entries have (ties: the larger) */
function mostCommon(xs: number[]): number | undefined {
  const n = new Map<number, number>();
  for (const x of xs) n.set(x, (n.get(x) ?? 0) + 1);
  return [...n].sort((a, b) => b[1] - a[1] || b[0] - a[0])[0]?.[0];
}

export function renderWarning(w: ImportWarning): string {
  return `${w.netns ? `${w.netns}: ` : ''}${w.subject}: ${w.effect}`;
}

/** the Cluster around an empty World; applyPlan fills the World */
export function clusterOf(plan: ImportPlan, warn: (w: ImportWarning) => void): Cluster {
  const cni = guessCni(plan);
  const byName = new Map(plan.namespaces.map((p) => [p.name, p]));
  const segmentOf = (p: PlanNs) => {
    for (const l of p.links)
      if (l.type === 'veth' && byName.get(l.peer.ns)?.role === 'segment') {
        const a = p.addrs.find((x) => x.dev === l.name && x.scope === 'global');
        if (a) return { seg: l.peer.ns, addr: a, link: l };
      }
    return undefined;
  };
  const nodes: ResolvedNode[] = [];
  const nodeSpecs: NodeSpec[] = [];
  for (const p of plan.namespaces.filter((x) => x.role === 'node')) {
    const up = segmentOf(p);
    const addr = up?.addr ?? p.addrs.find((a) => a.scope === 'global' && a.dev !== 'lo');
    if (!addr) {
      warn({
        netns: p.name,
        subject: 'no IPv4 address',
        effect: 'it is not listed as a node (its namespace is there)',
      });
      continue;
    }
    const pods = plan.namespaces.filter((x) => x.role === 'pod' && x.node === p.name);
    const pc = podCidrOf(plan, p, pods, addr.ip, warn);
    const podCIDR = `${pc.net}/${pc.len}`;
    const spec: NodeSpec = { name: p.name, ip: `${addr.ip}/${addr.len}`, podCIDR, mac: up?.link.mac };
    nodeSpecs.push(spec);
    nodes.push({
      ...spec,
      addr: addr.ip,
      len: addr.len,
      subnet: up?.seg ?? '',
      podNet: pc.net,
      podLen: pc.len,
      gateway: pc.gateway ?? intToIp4(ip4ToInt(pc.net) + (pc.len < 31 ? 1 : 0)),
    });
  }
  const pods: ResolvedPod[] = [];
  const podSpecs: PodSpec[] = [];
  for (const p of plan.namespaces.filter((x) => x.role === 'pod' && x.node && x.podLink)) {
    const dev = p.podLink!.podDev;
    const link = p.links.find((l) => l.name === dev)!;
    const hostLink = byName.get(p.node!)?.links.find((l) => l.name === p.podLink!.hostDev);
    const ip = p.addrs.find((a) => a.dev === dev && a.scope === 'global')?.ip;
    if (!ip) {
      warn({
        netns: p.name,
        subject: `no IPv4 address on ${dev}`,
        effect: 'it is not listed as a pod (its namespace is there)',
      });
      continue;
    }
    const named = new Map((p.kube?.ports ?? []).map((x) => [`${x.proto}/${x.port}`, x.name]));
    const listen: ListenSpec[] = p.listeners
      .filter((l) => l.addr === '0.0.0.0' || l.addr === ip)
      .map((l) => ({ proto: l.proto, port: l.port, name: named.get(`${l.proto}/${l.port}`) }))
      .filter((l, i, all) => all.findIndex((x) => x.proto === l.proto && x.port === l.port) === i);
    const pod: ResolvedPod = {
      name: p.name,
      node: p.node!,
      ip,
      mac: link.mac,
      hostVeth: p.podLink!.hostDev,
      hostVethMac: hostLink?.mac ?? '',
      listen,
      namespace: p.kube?.namespace ?? 'default',
      labels: p.kube?.labels ?? {},
      // a pod in a dump is running; readiness only decides EndpointSlices, and the dump's Services
      // are the nat rules kube-proxy left on the node, imported as they are
      ready: true,
    };
    pods.push(pod);
    podSpecs.push({ ...pod });
  }
  const uplinkMtus = plan.namespaces
    .filter((p) => p.role === 'node')
    .flatMap((p) => {
      const up = segmentOf(p);
      return up ? [up.link.mtu] : [];
    });
  const podMtus = pods.map(
    (p) => byName.get(p.name)!.links.find((l) => l.name === byName.get(p.name)!.podLink!.podDev)!.mtu,
  );
  const spec: ClusterSpec = {
    name: plan.name,
    cni: cni.mode,
    // the underlay MTU the nodes were set up with: the most common uplink MTU (a node that differs is a finding)
    mtu: mostCommon(uplinkMtus) ?? 1500,
    podMtu: podMtus.length ? Math.max(...podMtus) : undefined,
    subnets: plan.segments.map((s) => ({
      name: s.name,
      cidr: s.cidr,
      gateway: s.gateway,
      gatewayMac: s.gatewayMac,
    })),
    nodes: nodeSpecs,
    pods: podSpecs,
    bgp: [],
    run: [],
    policies: plan.kube?.policies,
  };
  const world = new World(plan.name);
  const stack = new Stack(world);
  return {
    spec,
    mode: cni.mode,
    world,
    stack,
    sockets: new Sockets(stack),
    nodes,
    pods,
    // a host outside the cluster is not collected (only nodes and routers are)
    externalHosts: [],
    podMtu: spec.podMtu ?? spec.mtu,
    // the dump's own wiring: Calico's (no bridge behind a pod's host veth) or a bridge's
    layout:
      cni.mode.startsWith('calico') &&
      !plan.namespaces.some((x) => x.links.some((l) => l.type === 'bridge' && x.role === 'node'))
        ? 'calico'
        : 'bridge',
    clusterCidr: nodes.length ? supernet(nodes.map((n) => n.podCIDR)) : '0.0.0.0/0',
    warnings: [],
    // kube-proxy's rules come in with the dumped iptables tables: nothing programs them again
    services: [],
    kubeProxy: false,
  };
}
