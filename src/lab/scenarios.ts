/**
 * Seeded scenarios for the differential suite: a cluster (2–6 nodes in one or two subnets, 1–5
 * pods each), a mode the kernel here can build, a flow (TCP/UDP/ICMP, same- or cross-node, sizes
 * around the MTU with and without DF) and at most one fault: the real command a user would type
 * on a node, which the lab runs on the kernel and the model through its emulated tool.
 *
 * Seeds above NAT_SEED_BASE are NAT scenarios: a cross-node flow through a MASQUERADE rule on the
 * source node, or a DNAT rule (a service-like address on the source node, or a node port on the
 * destination node; sometimes to a UDP port nothing listens on, so the ICMP error is translated),
 * applied as the same iptables command on both sides (the model's through the emulated iptables).
 *
 * Seeds above SVC_SEED_BASE are Service scenarios (svc-scenarios.ts).
 *
 * Seeds CVX_SEED_BASE + K are calico-vxlan scenarios: seed K's (1 ≤ K < SVC_SEED_BASE: its
 * cluster, flow and fault, or its NAT rule) in calico-vxlan, whose VXLAN faults (fdb-del,
 * neigh-del) are on vxlan.calico. Seeds CVXCS_SEED_BASE + K are seed K's in calico-vxlan-crosssubnet
 * (felix's no-encap routes inside a subnet, vxlan.calico across). LAB_MODES stays as it was, so
 * every other seed keeps its scenario (the Service scenarios cycle through it too).
 *
 * Seeds OUT_SEED_BASE + K are flows from a pod to a host outside the cluster (an external host on
 * the underlay, `outside`): the CNI's masquerade of what leaves the pod network (felix's
 * cali-nat-outgoing with the IPPool's natOutgoing) on both sides, or with natOutgoing off the pod's
 * own address, which the outside host answers through its default route (the router, which knows
 * no pod network). The first four are Calico's (natOutgoing on in calico-bgp, calico-vxlan,
 * calico-vxlan-crosssubnet, then off); the next four flannel's (`flanneld --ip-masq`'s
 * FLANNEL-POSTRTG on in flannel-vxlan and flannel-host-gw, then off in each); then round again.
 */
import type { ClusterSpec, CniMode } from '../cluster/spec.ts';
import type { Cluster } from '../cni/build.ts';
import type { WalkRequest } from '../trace/walk.ts';
import { seededRandom } from '../kernel/world.ts';
import {
  isSvcKind,
  SVC_SEED_BASE,
  svcCommand,
  svcScenario,
  type ExtKind,
  type MoreKind,
  type SvcKind,
} from './svc-scenarios.ts';
import { nodeBlocks } from '../cni/ipam.ts';
import { MODE_INFO } from '../cni/modes.ts';
import { inPrefix, parseCidr } from '../wire/addr.ts';
import { meshProtocolName } from '../bgp/krt.ts';
import { birdPath, labPrefix } from './plan.ts';

export const LAB_MODES: readonly CniMode[] = ['flannel-vxlan', 'flannel-host-gw', 'calico-bgp'];

export const FAULT_KINDS = [
  'none',
  'route-del',
  'fdb-del',
  'neigh-del',
  'ip-forward-off',
  'mtu-mismatch',
  'link-down',
  'iptables-drop',
  'no-listener',
] as const;
/** the NAT scenarios' rules, chosen by seed (above NAT_SEED_BASE), never drawn as a fault */
export const NAT_KINDS = ['masquerade', 'dnat-vip', 'dnat-nodeport'] as const;
/**
 * the scenarios to a host outside the cluster (seeds above OUT_SEED_BASE): Calico's natOutgoing on
 * or off, flanneld's --ip-masq on or off
 */
export const OUT_KINDS = ['nat-outgoing', 'nat-outgoing-off', 'ip-masq', 'ip-masq-off'] as const;
export type OutKind = (typeof OUT_KINDS)[number];
export type FaultKind =
  (typeof FAULT_KINDS)[number] | (typeof NAT_KINDS)[number] | SvcKind | ExtKind | MoreKind | OutKind;

/** seeds NAT_SEED_BASE + 1 … are NAT scenarios */
export const NAT_SEED_BASE = 1000;
/** seeds CVX_SEED_BASE + K: seed K's scenario in calico-vxlan */
export const CVX_SEED_BASE = 3000;
/** seeds CVXCS_SEED_BASE + K: seed K's scenario in calico-vxlan-crosssubnet */
export const CVXCS_SEED_BASE = 5000;
/** seeds OUT_SEED_BASE + 1 …: a pod to a host outside the cluster */
export const OUT_SEED_BASE = 7000;
/** the outside scenarios' round: the mode and whether its CNI masquerades (seed OUT_SEED_BASE + 1 + i: entry i mod 8) */
const OUT_ROUND: readonly { mode: CniMode; kind: OutKind }[] = [
  { mode: 'calico-bgp', kind: 'nat-outgoing' },
  { mode: 'calico-vxlan', kind: 'nat-outgoing' },
  { mode: 'calico-vxlan-crosssubnet', kind: 'nat-outgoing' },
  { mode: 'calico-bgp', kind: 'nat-outgoing-off' },
  { mode: 'flannel-vxlan', kind: 'ip-masq' },
  { mode: 'flannel-host-gw', kind: 'ip-masq' },
  { mode: 'flannel-vxlan', kind: 'ip-masq-off' },
  { mode: 'flannel-host-gw', kind: 'ip-masq-off' },
];
/** the service-like address of the dnat-vip scenarios, and the ports */
const VIP = '10.96.0.10';
const VIP_PORT = 80;
const NODE_PORT = 30080;

export interface Fault {
  /** the model netns the command runs in */
  netns: string;
  /** the real command, as typed on the node: run by the kernel in the lab, by the emulated tool in the model */
  command: string;
}

export interface Scenario {
  seed: number;
  spec: ClusterSpec;
  mode: CniMode;
  flow: WalkRequest;
  faultKind: FaultKind;
  /** source and destination on different nodes */
  cross: boolean;
  /** NAT scenarios: the pod behind the address, and the port the DNAT sends to (8080, or 9999 where nothing listens) */
  natPod?: string;
  natTargetPort?: number;
  /** one line for a report */
  title: string;
}

export function generateScenario(seed: number): Scenario {
  if (seed > OUT_SEED_BASE) return outsideScenario(seed);
  if (seed > CVX_SEED_BASE && seed - CVX_SEED_BASE < SVC_SEED_BASE)
    return drawScenario(seed, seed - CVX_SEED_BASE, 'calico-vxlan');
  if (seed > CVXCS_SEED_BASE && seed - CVXCS_SEED_BASE < SVC_SEED_BASE)
    return drawScenario(seed, seed - CVXCS_SEED_BASE, 'calico-vxlan-crosssubnet');
  if (seed > SVC_SEED_BASE) return svcScenario(seed);
  return drawScenario(seed, seed);
}

/** the scenario `seed` names: the draws of seed `draw`, in `forced` mode when given */
function drawScenario(seed: number, draw: number, forced?: CniMode): Scenario {
  const rnd = seededRandom(draw);
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];

  const drawn = pick(LAB_MODES);
  const mode = forced ?? drawn;
  const nNodes = int(2, 6);
  const twoSubnets = nNodes >= 3 && rnd() < 0.25;
  const subnets = [{ name: 'lan0', cidr: '192.168.1.0/24', gateway: '192.168.1.1' }];
  if (twoSubnets) subnets.push({ name: 'lan1', cidr: '192.168.2.0/24', gateway: '192.168.2.1' });
  const nodes = Array.from({ length: nNodes }, (_, i) => {
    const second = twoSubnets && i === nNodes - 1;
    return { name: `n${i + 1}`, ip: `192.168.${second ? 2 : 1}.${10 + i}/24`, podCIDR: `10.244.${i}.0/24` };
  });
  const pods: ClusterSpec['pods'] = [];
  for (const n of nodes) {
    const k = int(1, 5);
    for (let j = 0; j < k; j++)
      pods.push({
        name: `p${n.name.slice(1)}${String.fromCharCode(97 + j)}`,
        node: n.name,
        listen: [
          { proto: 'tcp', port: 8080 },
          { proto: 'udp', port: 8080 },
        ],
      });
  }
  const spec: ClusterSpec = {
    name: `d${seed}`,
    cni: mode,
    mtu: 1500,
    subnets,
    nodes,
    pods,
    bgp: [],
    run: [],
  };

  const natKind = draw > NAT_SEED_BASE ? NAT_KINDS[draw % NAT_KINDS.length] : undefined;
  const src = pick(pods);
  const sameNode = pods.filter((p) => p.node === src.node && p !== src);
  const otherNode = pods.filter((p) => p.node !== src.node);
  const cross = otherNode.length > 0 && (natKind !== undefined || sameNode.length === 0 || rnd() < 0.7);
  const dst = pick(cross ? otherNode : sameNode.length ? sameNode : otherNode);
  const podMtu = 1500 - MODE_INFO[mode].overhead;
  const vxlan = MODE_INFO[mode].encapsulation === 'VXLAN';
  if (natKind) return natScenario(seed, spec, mode, natKind, src, dst, rnd, nNodes, twoSubnets);

  let faultKind: FaultKind = pick(['none', ...FAULT_KINDS]);
  if ((faultKind === 'fdb-del' || faultKind === 'neigh-del') && (!vxlan || !cross)) faultKind = 'route-del';
  if (faultKind === 'route-del' && !cross) faultKind = 'link-down';

  // flows with timers the simulation does not run (TCP retransmission) stay out of faults that
  // stall: every fault but a missing listener (which answers at once)
  const stalls = faultKind !== 'none' && faultKind !== 'no-listener';
  const proto: WalkRequest['proto'] =
    faultKind === 'no-listener'
      ? pick(['tcp', 'udp'] as const)
      : stalls
        ? pick(['udp', 'icmp'] as const)
        : pick(['tcp', 'udp', 'icmp'] as const);
  let size: number | undefined;
  let df = false;
  if (proto !== 'tcp') {
    const sizes = [undefined, undefined, podMtu - 1, podMtu, podMtu + 1, 3000];
    size = faultKind === 'mtu-mismatch' ? podMtu : pick(sizes);
    df = faultKind === 'mtu-mismatch' ? true : rnd() < 0.5;
  }
  const flow: WalkRequest = {
    from: src.name,
    to: dst.name,
    proto,
    port: proto === 'icmp' ? undefined : faultKind === 'no-listener' ? 9999 : 8080,
    size,
    df,
  };

  const title = `seed ${seed}: ${mode}, ${nNodes} nodes${twoSubnets ? ' in 2 subnets' : ''}, ${pods.length} pods; ${proto} ${src.name} → ${dst.name}${flow.port ? `:${flow.port}` : ''}${size ? ` size ${size}` : ''}${df ? ' DF' : ''}; fault: ${faultKind}`;
  return { seed, spec, mode, flow, faultKind, cross, title };
}

function natScenario(
  seed: number,
  spec: ClusterSpec,
  mode: CniMode,
  faultKind: (typeof NAT_KINDS)[number],
  src: ClusterSpec['pods'][number],
  dst: ClusterSpec['pods'][number],
  rnd: () => number,
  nNodes: number,
  twoSubnets: boolean,
): Scenario {
  const proto = (['tcp', 'udp', 'icmp'] as const)[Math.floor(rnd() * 3)];
  // a UDP DNAT to a port nothing listens on: the ICMP port unreachable comes back translated
  const natTargetPort = faultKind !== 'masquerade' && proto === 'udp' && rnd() < 0.5 ? 9999 : 8080;
  const dstNode = spec.nodes.find((n) => n.name === dst.node)!;
  const to =
    faultKind === 'dnat-vip' ? VIP : faultKind === 'dnat-nodeport' ? dstNode.ip.split('/')[0] : dst.name;
  const port =
    proto === 'icmp'
      ? undefined
      : faultKind === 'dnat-vip'
        ? VIP_PORT
        : faultKind === 'dnat-nodeport'
          ? NODE_PORT
          : 8080;
  const flow: WalkRequest = { from: src.name, to, proto, port, df: false };
  const title = `seed ${seed}: ${mode}, ${nNodes} nodes${twoSubnets ? ' in 2 subnets' : ''}, ${spec.pods.length} pods; ${proto} ${src.name} → ${to}${port ? `:${port}` : ''} (${dst.name}${natTargetPort !== 8080 ? `:${natTargetPort}` : ''}); nat: ${faultKind}`;
  return { seed, spec, mode, flow, faultKind, cross: true, title, natPod: dst.name, natTargetPort };
}

/**
 * a pod on n1 or n2 to `outside` (192.168.1.100, tcp and udp 8080), the IPPool's natOutgoing or
 * flanneld's --ip-masq per kind
 */
function outsideScenario(seed: number): Scenario {
  const rnd = seededRandom(seed);
  const { mode, kind } = OUT_ROUND[(seed - OUT_SEED_BASE - 1) % OUT_ROUND.length];
  const masq = kind === 'nat-outgoing' || kind === 'ip-masq';
  // an answer that dies at the router is not resent as a datagram: UDP there
  const proto: 'tcp' | 'udp' = !masq ? 'udp' : rnd() < 0.5 ? 'tcp' : 'udp';
  const from = rnd() < 0.5 ? 'p1a' : 'p2a';
  const listen = [
    { proto: 'tcp' as const, port: 8080 },
    { proto: 'udp' as const, port: 8080 },
  ];
  const spec: ClusterSpec = {
    name: `d${seed}`,
    cni: mode,
    mtu: 1500,
    subnets: [{ name: 'lan0', cidr: '192.168.1.0/24', gateway: '192.168.1.1' }],
    nodes: [1, 2].map((k) => ({
      name: `n${k}`,
      ip: `192.168.1.${9 + k}/24`,
      podCIDR: `10.244.${k - 1}.0/24`,
    })),
    pods: ['p1a', 'p2a'].map((name) => ({ name, node: `n${name[1]}`, listen })),
    externalHosts: [{ name: 'outside', ip: '192.168.1.100/24', listen, routes: [] }],
    ...(mode.startsWith('flannel')
      ? { flannel: { ipMasq: masq } }
      : { ipPool: { name: 'default-ipv4-ippool', natOutgoing: masq } }),
    bgp: [],
    run: [],
  };
  const flow: WalkRequest = { from, to: 'outside', proto, port: 8080, df: false };
  const what = mode.startsWith('flannel') ? 'ip-masq' : 'natOutgoing';
  const title = `seed ${seed}: ${mode}, 2 nodes, 2 pods, external host outside; ${proto} ${from} → outside:8080 (${what} ${masq ? 'on' : 'off'}); kind: ${kind}`;
  return { seed, spec, mode, flow, faultKind: kind, cross: true, title };
}

/** The scenario's fault as the real command (its values come from the model). */
export function faultOf(s: Scenario, c: Cluster): Fault | undefined {
  const kind = s.faultKind;
  // a Service scenario has no fault: its kube-proxy rules are the cluster's own
  if (isSvcKind(kind)) return svcCommand(s, c);
  // nor a flow to the outside host: the masquerade is the CNI's own
  if ((OUT_KINDS as readonly string[]).includes(kind)) return undefined;
  const srcPod = c.pods.find((p) => p.name === s.flow.from)!;
  const dstPod = c.pods.find((p) => p.name === (s.natPod ?? s.flow.to))!;
  const srcNode = c.nodes.find((n) => n.name === srcPod.node)!;
  const dstNode = c.nodes.find((n) => n.name === dstPod.node)!;
  switch (kind) {
    case 'none':
    case 'no-listener':
    case 'nat-outgoing':
    case 'nat-outgoing-off':
    case 'ip-masq':
    case 'ip-masq-off':
      return undefined;
    case 'route-del': {
      // BIRD puts back a route deleted under it (its kernel scan, every 2 s): on a node of the
      // mesh, the route goes when the session does, disabled on the side that connects (the higher
      // address: the other one, passive, then sends nothing more); the lab's birdc needs its socket
      if (s.mode === 'calico-bgp') {
        const [on, peer] = srcNode.addr > dstNode.addr ? [srcNode, dstNode] : [dstNode, srcNode];
        return {
          netns: on.name,
          command: `birdc -s ${birdPath(labPrefix(c.spec.name))}/${on.name}.ctl disable ${meshProtocolName(peer.addr)}`,
        };
      }
      // the route the destination's block has (Calico's layout: an IPAM block; else the pod CIDR)
      const block = nodeBlocks(c, dstNode.name).find((b) => {
        const x = parseCidr(b);
        return inPrefix(dstPod.ip, x.addr, x.len);
      });
      return { netns: srcNode.name, command: `ip route del ${block ?? dstNode.podCIDR}` };
    }
    case 'fdb-del':
    case 'neigh-del': {
      // the VXLAN device (flannel.1, vxlan.calico), the destination's VTEP MAC, and the source's
      // permanent neighbour that resolves the destination's VTEP address to it
      const dev = MODE_INFO[s.mode].device!;
      const vtep = c.world.ns(dstNode.name).link(dev)!.mac;
      if (kind === 'fdb-del')
        return { netns: srcNode.name, command: `bridge fdb del ${vtep} dev ${dev} dst ${dstNode.addr}` };
      const neigh = c.world
        .ns(srcNode.name)
        .neigh.list()
        .find((e) => e.dev === dev && e.lladdr === vtep)!;
      return { netns: srcNode.name, command: `ip neigh del ${neigh.ip} dev ${dev}` };
    }
    case 'ip-forward-off':
      return { netns: s.cross ? dstNode.name : srcNode.name, command: 'sysctl -q -w net.ipv4.ip_forward=0' };
    case 'mtu-mismatch':
      return { netns: dstNode.name, command: 'ip link set eth0 mtu 1400' };
    case 'link-down':
      return { netns: dstNode.name, command: `ip link set ${dstPod.hostVeth} down` };
    case 'masquerade':
    case 'dnat-vip':
    case 'dnat-nodeport': {
      const proto = s.flow.proto;
      const p = proto === 'icmp' ? '-p icmp' : `-p ${proto} -m ${proto}`;
      const to = proto === 'icmp' ? dstPod.ip : `${dstPod.ip}:${s.natTargetPort}`;
      const out = MODE_INFO[s.mode].encapsulation === 'VXLAN' ? MODE_INFO[s.mode].device! : 'eth0';
      const [netns, rule] =
        s.faultKind === 'masquerade'
          ? [srcNode.name, `-A POSTROUTING -s ${srcPod.ip}/32 -o ${out} -j MASQUERADE`]
          : s.faultKind === 'dnat-vip'
            ? [
                srcNode.name,
                `-A PREROUTING -d ${VIP}/32 ${p}${proto === 'icmp' ? '' : ` --dport ${VIP_PORT}`} -j DNAT --to-destination ${to}`,
              ]
            : [
                dstNode.name,
                `-A PREROUTING -d ${dstNode.addr}/32 ${p}${proto === 'icmp' ? '' : ` --dport ${NODE_PORT}`} -j DNAT --to-destination ${to}`,
              ];
      return { netns, command: `iptables -t nat ${rule}` };
    }
    case 'iptables-drop':
      return { netns: dstNode.name, command: `iptables -I FORWARD -d ${dstPod.ip}/32 -j DROP` };
  }
}
