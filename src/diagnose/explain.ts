/**
 * Why a packet was dropped, with the evidence a real node would show: where in the kernel, the
 * table entry (or the missing one) responsible, the counters that rose, the commands that show
 * all of it, and what usually causes it under the cluster's CNI.
 *
 * This reads a recorded Trace and the cluster's state; it never drives the datapath. The
 * evidence commands run through the emulated tools (read-only show commands), so their output is
 * the real tool's.
 */
import { MODE_INFO } from '../cni/modes.ts';
import { carrierOk } from '../kernel/links.ts';
import { CALICO_POD_GATEWAY, type Cluster, type ResolvedNode } from '../cni/build.ts';
import type { Route } from '../kernel/fib.ts';
import { inPrefix, ip4ToInt, parseCidr } from '../wire/addr.ts';
import { nodeBlocks } from '../cni/ipam.ts';
import { runCommand, TOOLS } from '../tools/index.ts';
import type { CounterEvent, DropReason, Step, Trace } from '../trace/types.ts';
import type { Rule, RuleOrigin } from '../kernel/netfilter.ts';
import {
  dropText,
  nfDecisionText,
  roleLabel,
  stepDetail,
  stepEntry,
  stepTable,
  unreachable,
} from '../render/step.ts';
import { neighEntryText, routeEntryText } from '../tools/printers.ts';

export interface Evidence {
  netns: string;
  command: string;
  /** what the emulated tool prints for it now; absent when podwalk does not emulate the command */
  output?: string;
}

export interface CounterEvidence {
  netns: string;
  /** e.g. "IpExtInNoRoutes", "tx_dropped on flannel.1", "iptables FORWARD rule 1 pkts" */
  counter: string;
  /** how much it rose during this walk */
  delta: number;
  /** its value now */
  value: number;
  /** the command that shows it on a real node */
  command: string;
}

export interface Explanation {
  reason: DropReason;
  netns: string;
  device?: string;
  /** the hook or lookup that dropped it, e.g. "ip_forward: FIB lookup (table main)" */
  stage: string;
  /** the table entry responsible, as the real tool prints it, or what is missing */
  entry: string;
  /** one line: what happened */
  summary: string;
  counters: CounterEvidence[];
  /** commands to run on the node (with their emulated output where podwalk has the tool) */
  evidence: Evidence[];
  /** what typically causes this under the cluster's CNI, most likely first */
  causes: string[];
  /** what the user sees as a consequence, e.g. the PMTU black hole of TCP */
  consequence?: string;
  /** for a NetworkPolicy drop: a NetworkPolicy (YAML) that allows exactly this flow */
  allowPolicy?: string;
}

/** the command a real node shows a counter with */
function counterCommand(e: CounterEvent): string {
  if (e.device) return `ip -s link show dev ${e.device}`;
  if (e.table) return `ip -s ntable show name ${e.table}`;
  return `nstat -az ${e.name}`;
}

function counterValue(c: Cluster, e: CounterEvent): number {
  const ns = c.world.netns.get(e.netns);
  if (!ns) return 0;
  if (e.device) return ns.link(e.device)?.stats.txDropped ?? 0;
  if (e.table) return ns.arpStats.resFailed;
  return ns.mib.get(e.name) ?? 0;
}

/** the node whose pod CIDR holds ip */
export function ownerOf(c: Cluster, ip: string): ResolvedNode | undefined {
  if (c.ipam) {
    const n = c.nodes.find((x) => podNetOf(c, x, ip));
    if (n) return n;
  }
  return c.nodes.find((n) => inPrefix(ip, n.podNet, n.podLen));
}

/**
 * The pod network of `owner` a route to `ip` is for: in calico-node's layout the IPAM block that
 * holds it (what BIRD or felix routes, a /26 by default), else the node's pod CIDR.
 */
function podNetOf(c: Cluster, owner: ResolvedNode, ip: string): string | undefined {
  if (!c.ipam) return inPrefix(ip, owner.podNet, owner.podLen) ? owner.podCIDR : undefined;
  return nodeBlocks(c, owner.name).find((b) => {
    const x = parseCidr(b);
    return inPrefix(ip, x.addr, x.len);
  });
}

/**
 * Why a packet met a route that sends nothing. In calico-node's layout the node's IPAM blocks are
 * `blackhole … proto bird` (BIRD's static protocol; felix's `proto 80` in calico-vxlan), covering every address of the block that has
 * no /32 of its own: a pod that is gone, a pod whose cali device is down, or an address the block
 * lent to a pod on another node whose /32 this node's BIRD did not learn.
 */
function deadRouteCauses(c: Cluster, netns: string, dst: string, r: Route): string[] {
  const route = `\`${routeEntryText(r).trim()}\``;
  // BIRD's static protocol's (proto bird), or felix's in calico-vxlan (proto 80, defaultVXLANProto)
  if (r.type !== 'blackhole' || (r.proto !== 'bird' && r.proto !== '80') || !c.ipam)
    return [
      `${route} on ${netns} matches ${dst}: someone added it (ip route add ${r.type} …), or a daemon did`,
    ];
  const pod = c.pods.find((p) => p.ip === dst);
  if (!pod)
    return [
      `no pod has ${dst}: ${route} is calico-node's blackhole for the IPAM block, which discards what is sent to an address nobody holds (a deleted pod's, a stale DNS answer, a stale Service endpoint)`,
    ];
  if (pod.node === netns) {
    const dev = c.world.netns.get(netns)?.link(pod.hostVeth);
    return [
      `${pod.name}'s route \`${dst} dev ${pod.hostVeth} scope link\` is gone${dev && !dev.up ? ` (${pod.hostVeth} is DOWN: the kernel removed the routes through it)` : ' (deleted by hand, or the CNI plugin never added it)'}, so the block's ${route} takes its traffic`,
    ];
  }
  if (MODE_INFO[c.mode].routeDaemon === 'felix')
    return [
      `${dst} is ${pod.name}'s, borrowed by ${pod.node} from ${netns}'s IPAM block: ${netns} routes it by the block's ${route} because felix did not add its /32 via ${pod.node}'s VTEP (\`${dst} via <${pod.node}'s tunnel address> dev vxlan.calico onlink\`, from the block's allocation for ${pod.node}); check calico-node on ${netns} and \`ip route get ${dst}\``,
    ];
  const s = c.mesh?.session(netns, pod.node);
  return [
    `${dst} is ${pod.name}'s, borrowed by ${pod.node} from ${netns}'s IPAM block: ${netns} routes it by the block's ${route} because its BIRD has no /32 for it from ${pod.node}${s && s.state !== 'Established' ? ` (the BGP session ${netns} ↔ ${pod.node} is ${s.state}, not Established)` : ''}; check \`birdc show route ${dst}/32\` on ${netns}`,
  ];
}

/**
 * Why the node did not answer a Calico pod's ARP for 169.254.1.1: arp_process answers by proxy
 * only with proxy_arp on the pod's cali device (conf.all or conf.DEV), forwarding on it, and an
 * input route to 169.254.1.1 that leaves by another device (the node's default route).
 */
function proxyArpCauses(
  c: Cluster,
  pod: Cluster['pods'][number],
  cmd: (netns: string, command: string) => void,
): string[] {
  const node = c.world.netns.get(pod.node);
  const dev = pod.hostVeth;
  if (!node?.link(dev)) return [];
  const out: string[] = [];
  const on = (k: string) => node.sysctl.get(k) === '1';
  if (!on('net.ipv4.conf.all.proxy_arp') && !on(`net.ipv4.conf.${dev}.proxy_arp`)) {
    out.push(
      `proxy ARP is off on ${pod.node}'s ${dev}: the node answers ${pod.name}'s ARP for ${CALICO_POD_GATEWAY} only with net.ipv4.conf.${dev}.proxy_arp=1, which Calico's CNI plugin sets (sysctl -w net.ipv4.conf.${dev}.proxy_arp=1)`,
    );
    cmd(pod.node, `sysctl net.ipv4.conf.${dev}.proxy_arp`);
  }
  if (!node.forwarding(dev))
    out.push(
      `forwarding is off on ${pod.node}'s ${dev}: proxy ARP answers only on a device that forwards (net.ipv4.conf.${dev}.forwarding=1)`,
    );
  const r = node.fib.lookup(ip4ToInt(CALICO_POD_GATEWAY));
  if (!r || r.type !== 'unicast' || r.dev === dev) {
    out.push(
      `${pod.node} has no route to ${CALICO_POD_GATEWAY} out of another device (no default route): proxy ARP answers only for an address the node would forward elsewhere`,
    );
    cmd(pod.node, `ip route get ${CALICO_POD_GATEWAY} from ${pod.ip} iif ${dev}`);
  }
  return out;
}

/** the node a netns belongs to: itself, or the node of the pod */
function nodeOf(c: Cluster, netns: string): string | undefined {
  if (c.nodes.some((n) => n.name === netns)) return netns;
  return c.pods.find((p) => p.name === netns)?.node;
}

const FLANNEL = (c: Cluster) => c.mode.startsWith('flannel');

/** the roles of a packet that answers another */
const ANSWERS: ReadonlySet<string> = new Set(['syn-ack', 'udp-reply', 'echo-reply', 'response']);

/**
 * An external host's answer to a pod's address: the pod's packet left the cluster with its own
 * address because the CNI was told not to masquerade it (flanneld without --ip-masq, an IPPool
 * with natOutgoing false), so the host answered through its default route.
 */
function unmasqueradedOut(c: Cluster, t: Trace): string | undefined {
  const host = c.externalHosts.find((h) => h.addr === t.flow.src);
  if (!host || !ANSWERS.has(t.flow.role.kind)) return undefined;
  const back = `so ${host.name} answered ${t.flow.dst} through its default route, to the router, which knows no pod network`;
  if (FLANNEL(c) && c.spec.flannel?.ipMasq === false)
    return `the pod's packet to ${host.name} left the cluster with the pod's address: flanneld runs without --ip-masq (the cluster file's flannel.ipMasq: false; kube-flannel.yml passes it, and its FLANNEL-POSTRTG masquerades what leaves the pod network to the node's address), ${back}`;
  if (c.layout === 'calico' && c.spec.ipPool?.natOutgoing === false)
    return `the pod's packet to ${host.name} left the cluster with the pod's address: the IPPool ${c.spec.ipPool.name} has natOutgoing: false (with it felix's cali-nat-outgoing masquerades what leaves the pool to the node's address), ${back}`;
  return undefined;
}

export function explainDrop(c: Cluster, t: Trace): Explanation | undefined {
  const d = t.disposition;
  if (d.kind !== 'dropped') return undefined;
  const dropIdx = t.steps.findIndex((s) => s.kind === 'drop' && !s.aux && s.netns === d.netns);
  const before = t.steps.slice(0, dropIdx < 0 ? t.steps.length : dropIdx).filter((s) => !s.aux);
  const inNs = before.filter((s) => s.netns === d.netns);
  const lastWith = (pred: (s: Step) => boolean) => [...inNs].reverse().find(pred);
  const dst = t.flow.dst;
  const src = t.flow.src;
  const owner = ownerOf(c, dst);
  const ownerNet = owner ? (podNetOf(c, owner, dst) ?? owner.podCIDR) : undefined;
  const info = MODE_INFO[c.mode];
  const commands: { netns: string; command: string }[] = [];
  const cmd = (netns: string, command: string) => commands.push({ netns, command });
  const causes: string[] = [];
  let stage = '';
  let entry = '';
  let consequence: string | undefined;
  let allowPolicy: string | undefined;
  const dev = d.device;
  const where = `${d.netns}${dev ? ` ${dev}` : ''}`;
  const drop = d.drop;

  switch (drop.reason) {
    case 'no-route': {
      if (drop.route) {
        causes.push(...deadRouteCauses(c, d.netns, dst, drop.route));
        stage = `ip_route_input → ip_error: the FIB's best match for ${dst} is a ${drop.route.type} route`;
        entry = `${dst} matches \`${routeEntryText(drop.route)}\``;
        cmd(d.netns, `ip route get ${dst}`);
        cmd(d.netns, 'ip route show');
        break;
      }
      const out = drop.site === 'ip_route_output' || drop.site === 'iptunnel_xmit';
      const tunnel = !!drop.tunnel;
      stage = out
        ? `ip_route_output: FIB lookup (table main) for a ${tunnel ? 'tunnel packet' : 'locally sent packet'}`
        : 'ip_route_input → ip_forward: FIB lookup (table main)';
      const target = tunnel ? drop.dst : dst;
      entry = `no route matches ${target} in table main (and no default route)`;
      cmd(d.netns, `ip route get ${target}`);
      cmd(d.netns, 'ip route show');
      // the packet may have left a node by its default route because the node lacked the pod route
      const leaked = before.find(
        (s) =>
          s.ev.type === 'route' &&
          s.netns !== d.netns &&
          c.nodes.some((n) => n.name === s.netns) &&
          s.ev.route.len === 0,
      );
      if (owner && leaked) {
        entry = `${leaked.netns} has no route for ${ownerNet} (${owner.name}'s pods): it used \`${stepEntry(leaked)}\`, and ${d.netns} has no route for ${dst} either`;
        cmd(leaked.netns, `ip route get ${dst}`);
      }
      const from = leaked?.netns ?? nodeOf(c, d.netns) ?? d.netns;
      for (const name of new Set([d.netns, from])) {
        const down = [...(c.world.netns.get(name)?.links.values() ?? [])].filter(
          (l) => l.type !== 'loopback' && !l.up,
        );
        for (const l of down) {
          causes.push(
            `${l.name} is DOWN in ${name}: the kernel removed every route through it (\`ip link set ${l.name} up\` and the routes must be added again)`,
          );
          cmd(name, `ip link show dev ${l.name}`);
        }
      }
      const role = c.world.netns.get(d.netns)?.role;
      const unmasqueraded = role === 'router' && owner ? unmasqueradedOut(c, t) : undefined;
      if (unmasqueraded) causes.push(unmasqueraded);
      if (causes.length) {
        // a link that is down explains the missing routes; an answer to a pod's unmasqueraded
        // packet, why the router sees a pod address at all
      } else if (role === 'pod')
        causes.push(
          `${d.netns} has no default route via its gateway: the CNI's ADD did not finish (or someone deleted the route); the pod's routes come from the CNI config, not from a daemon`,
        );
      else if (!leaked && role === 'router')
        causes.push(
          `the router does not know the pod networks: ${c.mode} sends pod IPs across it unencapsulated, so it needs a route for ${ownerNet ?? dst}${c.mesh ? ' (peer it with BGP, or use IPIP CrossSubnet)' : ''}`,
        );
      else causes.push(...routeCauses(c, from, owner, ownerNet));
      break;
    }
    case 'neighbour-failed': {
      const ip = drop.nexthop;
      stage = `neighbour resolution: ARP for ${ip} on ${dev} (neigh_resolve_output)`;
      entry = `${ip} dev ${dev} FAILED (no ARP reply to 3 probes)`;
      cmd(d.netns, `ip neigh show dev ${dev}`);
      cmd(d.netns, `ip route get ${dst}`);
      cmd(d.netns, `arping -c 3 -I ${dev} ${ip}`);
      const route = lastWith((s) => s.ev.type === 'route');
      causes.push(
        `nothing answers ARP for ${ip} on ${dev}: the next hop of \`${route?.ev.type === 'route' ? routeEntryText(route.ev.route) : '?'}\` is down, gone or renumbered`,
      );
      if (
        (c.mode === 'flannel-host-gw' || c.mode === 'calico-bgp') &&
        c.world.netns.get(d.netns)?.role === 'node'
      )
        causes.push(
          `a node was replaced or changed its IP and ${info.controlPlane} on ${d.netns} still routes its pods to the old address; check that the route's gateway is a live node IP`,
        );
      const l = dev ? c.world.netns.get(d.netns)?.link(dev) : undefined;
      if (l && !carrierOk(l)) {
        const peer = l.type === 'veth' ? l.peer : undefined;
        causes.unshift(
          `${dev} has no carrier (NO-CARRIER)${peer ? `: its veth peer ${peer.name} in ${peer.netns} is down` : ': none of its ports forwards (each is down, or its veth peer is)'}, so the ARP requests never leave (tx_dropped rises); the route is still used because routes on a link without carrier stay (ignore_routes_with_linkdown=0)`,
        );
        if (peer) cmd(peer.netns, `ip link show dev ${peer.name}`);
      }
      const pod = c.pods.find((p) => p.node === d.netns && p.ip === ip);
      const host = pod ? c.world.netns.get(d.netns)?.link(pod.hostVeth) : undefined;
      const inPod = pod ? c.world.netns.get(pod.name)?.link('eth0') : undefined;
      if (pod && (!host || !host.up || !inPod?.up)) {
        causes.unshift(
          `${pod.name}'s veth pair is not up: ${!host ? `${pod.hostVeth} is gone` : !host.up ? `${pod.hostVeth} (the host end, a port of ${dev}) is DOWN` : `eth0 in ${pod.name} is DOWN`}, so the bridge cannot reach the pod and ARP for ${ip} goes unanswered`,
        );
        cmd(d.netns, `ip link show dev ${pod.hostVeth}`);
      } else if (pod)
        causes.push(`the pod's address or its veth was removed (CNI DEL ran, or the pod was deleted)`);
      // a Calico pod's gateway 169.254.1.1 is nobody's address: the node answers by proxy ARP
      const me = c.pods.find((p) => p.name === d.netns);
      if (me && c.layout === 'calico' && ip === CALICO_POD_GATEWAY)
        causes.unshift(...proxyArpCauses(c, me, cmd));
      break;
    }
    case 'vxlan-fdb-miss': {
      const mac = drop.mac;
      const neigh = before
        .map((s) => (s.netns === d.netns && s.ev.type === 'neigh' ? s.ev.entry : undefined))
        .find((e) => e?.lladdr === mac);
      stage = `vxlan_xmit: FDB lookup on ${dev} for the inner destination MAC`;
      entry = `no \`${mac} dev ${dev} dst <node IP>\` entry in ${dev}'s FDB${neigh ? ` (the MAC came from the neighbour entry \`${neighEntryText(neigh)}\`)` : ''}`;
      cmd(d.netns, `bridge fdb show dev ${dev}`);
      cmd(d.netns, `ip neigh show dev ${dev}`);
      cmd(d.netns, `ip -d link show dev ${dev}`);
      const peer = owner?.name ?? 'the destination node';
      if (info.routeDaemon === 'felix')
        causes.push(
          `felix writes \`${mac} dst <${peer}'s IP>\` to ${dev}'s FDB for ${peer}'s VTEP (its Node's VXLAN tunnel address and MAC: projectcalico.org/IPv4VXLANTunnelAddr, else the MAC felix derives from the node name); on ${d.netns} it never did or it was removed: check calico-node's logs on ${d.netns} (felix rewrites it at its next resync) and \`kubectl get node ${peer} -o yaml\``,
          `${peer}'s vxlan.calico has another MAC than ${d.netns}'s felix knows (a VXLANTunnelMACAddr set on its Node; the neighbour entry and the FDB disagree)`,
        );
      else
        causes.push(
          `flanneld writes \`${mac} dst <${peer}'s IP>\` to ${dev}'s FDB when ${peer}'s lease appears (its node annotation flannel.alpha.coreos.com/backend-data holds that VTEP MAC); on ${d.netns} it never did or it was removed: check flanneld's logs on ${d.netns} and \`kubectl get node ${peer} -o yaml\``,
          `${peer} recreated ${dev} with a new MAC and ${d.netns}'s flanneld has not caught up (the neighbour entry and the FDB disagree)`,
        );
      break;
    }
    case 'link-down': {
      const l = dev ? c.world.netns.get(d.netns)?.link(dev) : undefined;
      const carrier = !!drop.noCarrier;
      stage = carrier
        ? `dev_queue_xmit on ${dev}: no carrier, the noop qdisc drops`
        : `transmit on ${dev}: the device is administratively down`;
      entry = `${dev}: ${l?.up ? 'UP' : 'DOWN'}${carrier ? ', NO-CARRIER (its peer is down or gone)' : ''}`;
      cmd(d.netns, `ip link show dev ${dev}`);
      if (l?.type === 'veth' && l.peer) cmd(l.peer.netns, `ip link show dev ${l.peer.name}`);
      causes.push(
        l?.type === 'veth'
          ? `the other end of ${dev} (${l.peer ? `${l.peer.name} in ${l.peer.netns}` : 'its peer'}) is down: a pod being torn down, or \`ip link set ... down\` during debugging`
          : `${dev} was set down (by hand, or by a daemon restarting)`,
      );
      if (dev === info.device)
        causes.push(
          `${info.controlPlane} brings ${dev} up at start; restart it on ${d.netns} or \`ip link set ${dev} up\``,
        );
      break;
    }
    case 'filtered': {
      const nf = lastWith((s) => s.kind === 'netfilter');
      stage = `netfilter: ${(nf && stepTable(nf)) ?? 'filter'}${nf?.device ? ` (packet on ${nf.device})` : ''}`;
      entry = nfDecisionText(drop);
      const rule: Rule | undefined = drop.rule?.rule;
      cmd(d.netns, `iptables -L ${drop.rule?.chain ?? drop.policy?.chain ?? drop.hook} -n -v --line-numbers`);
      const ct = rule?.matches.find((m) => m.kind === 'conntrack' || m.kind === 'state');
      const states = ct?.kind === 'conntrack' ? ct.state : ct?.kind === 'state' ? ct.state : undefined;
      const invalid = !!states && !states.neg && states.v.includes('INVALID');
      if (invalid)
        causes.push(
          `conntrack on ${d.netns} saw ${roleLabel(t.flow.role)} without the packets before it: the two directions take different paths (asymmetric routing), so this node never saw the connection start`,
        );
      const origin = rule?.origin;
      if (origin?.kind === 'network-policy' || origin?.kind === 'policy-chain') {
        // what the rule is for comes from its origin: felix's rules carry its hash and its own words as comments
        const at = drop.rule ? ` (${drop.rule.chain} rule ${drop.rule.index})` : '';
        causes.push(`a Kubernetes NetworkPolicy: ${policyOriginText(origin)}${at}`);
        const via = serviceDnat(before);
        if (via) {
          const servicePortOnly = (c.spec.policies ?? []).filter(
            (p) =>
              p.ingress?.some((r) => r.ports.some((pp) => pp.port === via.from.dport)) &&
              !p.ingress?.some((r) => r.ports.some((pp) => pp.port === via.to?.dport)),
          );
          causes.push(
            `the policy saw the packet after kube-proxy's DNAT (${via.chain} on ${via.node}): to ${via.to ? `${via.to.dst}:${via.to.dport}` : 'the endpoint'}, not to the Service's ${via.from.dst}:${via.from.dport}; NetworkPolicy ports match the pod's port (the targetPort), not the Service port${servicePortOnly.length ? ` (${servicePortOnly.map((p) => `${p.namespace}/${p.name}`).join(', ')} allow${servicePortOnly.length === 1 ? 's' : ''} port ${via.from.dport} only)` : ''}`,
          );
          cmd(via.node, `iptables -t nat -L ${via.chain} -n`);
        }
        if (origin.kind === 'policy-chain' && origin.role === 'default-deny') {
          const [namespace, pod] = origin.pod.split('/');
          allowPolicy = allowingPolicy(c, t.flow, namespace, pod, origin.direction);
        }
      } else if (origin?.kind === 'service') causes.push(serviceDropCause(c, origin, d.netns));
      else if (drop.policy)
        causes.push(
          `the ${drop.policy.chain} chain's policy is ${drop.policy.policy} and no rule accepted this packet: a host firewall (or Docker's iptables setup) on ${d.netns}`,
        );
      else if (!invalid)
        causes.push(`a rule someone added to ${d.netns}'s ${drop.rule?.chain ?? drop.hook} chain`);
      break;
    }
    case 'mtu-exceeded': {
      const m = lastWith((s) => s.kind === 'mtu');
      const local = drop.site === 'ip_append_data';
      const veth = drop.site === 'veth_xmit' || drop.site === 'br_dev_queue_push_xmit';
      stage = local
        ? 'the sending socket: the packet is larger than the route MTU and DF is set (EMSGSIZE)'
        : veth
          ? `${drop.site === 'br_dev_queue_push_xmit' ? 'bridge forward' : 'veth transmit'}: the frame is larger than ${dev}'s MTU (is_skb_forwardable), dropped without ICMP`
          : `ip_forward: MTU check before ${dev} with DF set`;
      entry = m ? stepDetail(m) : dropText(drop);
      cmd(d.netns, `ip link show dev ${dev}`);
      cmd(d.netns, `ip route get ${dst}`);
      const podMtu = c.podMtu;
      const fits = c.spec.mtu - info.overhead;
      if (podMtu > fits)
        causes.push(
          `the pod MTU (${podMtu}) is larger than the underlay MTU ${c.spec.mtu} minus ${info.overhead} bytes of ${info.encapsulation} overhead (${fits}): set the CNI's MTU to ${fits}`,
        );
      causes.push(
        `a link on the path has a smaller MTU than the nodes assume (a VPN, a cloud network with MTU 1450, jumbo frames on only some hosts)`,
      );
      if (t.flow.proto === 'tcp')
        consequence = veth
          ? 'TCP: the handshake passes (small segments), then every full-size segment is dropped here without an ICMP error, so the sender never learns a smaller MTU and the connection stalls after the handshake (a PMTU black hole)'
          : 'TCP: the handshake passes (small segments); full-size segments are dropped here and the sender gets ICMP "fragmentation needed" with the MTU to use. If that ICMP reaches the pod, TCP retries with smaller segments (slow first requests); if a firewall drops it, the connection stalls after the handshake (a PMTU black hole)';
      break;
    }
    case 'ttl-exceeded': {
      stage = 'ip_forward: TTL check (the TTL would reach 0)';
      const seen = before.filter((s) => s.kind === 'forward').map((s) => s.netns);
      entry = `the packet was forwarded ${seen.length} times: ${[...new Set(seen)].join(' ↔ ')}`;
      cmd(d.netns, `ip route get ${dst}`);
      for (const ns of new Set(seen)) if (ns !== d.netns) cmd(ns, `ip route get ${dst}`);
      cmd(t.flow.from, `traceroute -n ${dst}`);
      causes.push(
        `a routing loop: ${[...new Set(seen)].join(' and ')} each route ${dst} towards the other (a stale static route, or a node sending a pod CIDR it lost to its default gateway that sends it back)`,
      );
      break;
    }
    case 'forwarding-disabled':
      stage = 'ip_route_input: the packet is not for this host and forwarding is off';
      entry = 'net.ipv4.ip_forward = 0';
      cmd(d.netns, 'sysctl net.ipv4.ip_forward');
      causes.push(
        `net.ipv4.ip_forward was reset to 0 on ${d.netns} (a sysctl.d file, a security baseline, or a reboot without the setting kubelet/the CNI expects); Kubernetes nodes need it on`,
      );
      break;
    case 'rp-filter': {
      const rp = lastWith((s) => s.ev.type === 'rp-filter');
      stage = `fib_validate_source: reverse-path filter on ${dev}`;
      entry = `${rp ? stepDetail(rp) : dropText(drop)}; reverse route: ${(rp && stepEntry(rp)) ?? '(none)'}`;
      cmd(d.netns, `sysctl net.ipv4.conf.all.rp_filter net.ipv4.conf.${dev?.replaceAll('.', '/')}.rp_filter`);
      cmd(d.netns, `ip route get ${src}`);
      const srcOwner = ownerOf(c, src);
      causes.push(
        `${d.netns} would answer ${src} through another device than ${dev} (or not at all)${srcOwner ? `: its route to ${srcOwner.name}'s pods (${srcOwner.podCIDR}) is missing or points elsewhere` : ''}, and strict rp_filter drops what arrives on the "wrong" side`,
        'set rp_filter to 2 (loose) on tunnel and pod-facing devices, as Calico and flannel expect, or fix the return route',
      );
      break;
    }
    case 'port-unreachable':
    case 'reset': {
      const port = t.flow.dport;
      const proto = t.flow.proto;
      stage =
        drop.reason === 'reset'
          ? 'tcp_v4_rcv: no socket for the destination port (TCP answers with RST)'
          : `${proto === 'udp' ? '__udp4_lib_rcv' : 'ip_local_deliver'}: no socket (ICMP port unreachable)`;
      // kube-proxy sent it to an endpoint: the socket looked for is the endpoint's, not the Service's
      const via = serviceDnat(before);
      const to = via?.to ?? { dst, dport: port };
      entry = `no ${proto} socket listening on ${to.dst}:${to.dport} in ${d.netns}`;
      cmd(d.netns, proto === 'udp' ? 'ss -lun' : 'ss -ltn');
      const hairpin = hairpinUnmasqueraded(c, t, d.netns);
      if (hairpin) {
        causes.push(hairpin.cause);
        cmd(hairpin.node, 'iptables -t nat -L KUBE-POSTROUTING -n -v');
        cmd(hairpin.node, 'conntrack -L');
      } else if (via) {
        const v = via.origin;
        const pod = c.pods.find((p) => p.ip === to.dst);
        causes.push(
          `Service ${v.namespace}/${v.name}${v.port ? `:${v.port}` : ''} sends ${proto}/${via.from.dport} to ${pod ? `${pod.name} at ` : ''}${to.dst}:${to.dport} (kube-proxy's DNAT in ${via.chain} on ${via.node}), and nothing in ${d.netns} listens on ${proto}/${to.dport}: the Service's targetPort names the wrong port (or the container's port is wrong), or the app has not started yet`,
        );
        cmd(via.node, `iptables -t nat -L ${via.chain} -n`);
      } else
        causes.push(
          `the application in ${d.netns} does not listen on ${proto}/${port}: a wrong containerPort/targetPort, the app listens on 127.0.0.1 only, or it has not started yet`,
        );
      break;
    }
    case 'not-for-host':
      if (drop.site === 'br_forward' && drop.port) {
        // should_deliver: the FDB sends the frame back to the port it came in by
        stage = `br_forward: ${drop.mac} is behind ${drop.port}, the port the frame came in by, and hairpin mode is off`;
        entry = dropText(drop);
        cmd(d.netns, `bridge -d link show dev ${drop.port}`);
        causes.push(
          `a pod reaching itself through its Service: DNAT sent the frame back to its own bridge port, which forwards it only in hairpin mode (flannel's CNI config asks the bridge plugin for "hairpinMode": true; by hand: bridge link set dev ${drop.port} hairpin on), and kube-proxy's KUBE-SEP hairpin rule then masquerades it`,
        );
        break;
      }
      stage = 'ip_rcv: the frame is for another host (PACKET_OTHERHOST)';
      entry = dropText(drop);
      cmd(d.netns, `ip link show dev ${dev}`);
      cmd(d.netns, 'ip neigh show');
      causes.push('a stale neighbour entry on the sender: the MAC it used belongs to another device now');
      break;
    default:
      unreachable(drop);
  }

  // the counters that rose during the walk: the error counters (ICMP totals only where an
  // error was sent, not for the echo that was walked)
  const errorIcmp = new Set(
    t.counters.filter((e) => /^Icmp(OutDestUnreachs|OutTimeExcds)$/.test(e.name)).map((e) => e.netns),
  );
  const relevant = t.counters.filter(
    (e) =>
      !/^(IcmpOutEchos|IcmpOutEchoReps|IcmpMsgOutType0|IcmpMsgOutType8)$/.test(e.name) &&
      (e.name !== 'IcmpOutMsgs' || errorIcmp.has(e.netns)),
  );
  const byKey = new Map<string, { e: CounterEvent; n: number }>();
  for (const e of relevant) {
    const key = `${e.netns}|${e.name}|${e.device ?? ''}|${e.table ?? ''}`;
    const cur = byKey.get(key);
    if (cur) cur.n++;
    else byKey.set(key, { e, n: 1 });
  }
  const counters: CounterEvidence[] = [...byKey.values()].map(({ e, n }) => ({
    netns: e.netns,
    counter: e.device ? `${e.name} on ${e.device}` : e.table ? `${e.table} ${e.name}` : e.name,
    delta: n,
    value: counterValue(c, e),
    command: counterCommand(e),
  }));
  if (drop.reason === 'filtered' && drop.rule) {
    const { chain: name, index } = drop.rule;
    const r = c.world.netns.get(d.netns)?.netfilter.chain(drop.table, name)?.rules[index - 1];
    if (r)
      counters.unshift({
        netns: d.netns,
        counter: `iptables ${name} rule ${index} pkts`,
        delta: 1,
        value: r.pkts,
        command: `iptables -L ${name} -n -v --line-numbers`,
      });
  }
  // one nstat per namespace for all its counters, as one would type it
  const nstat = new Map<string, string[]>();
  for (const e of counters) {
    const m = /^nstat -az (\S+)$/.exec(e.command);
    if (m) nstat.set(e.netns, [...(nstat.get(e.netns) ?? []), m[1]]);
    else if (!commands.some((x) => x.command === e.command && x.netns === e.netns))
      commands.push({ netns: e.netns, command: e.command });
  }
  for (const [netns, names] of nstat) commands.push({ netns, command: `nstat -az ${names.join(' ')}` });

  const evidence = commands.map(({ netns, command }) => {
    const program = command.split(' ')[0];
    if (!TOOLS[program]) return { netns, command };
    const r = runCommand(c, netns, command);
    if (r.code === 2 && /not emulated/.test(r.stderr)) return { netns, command };
    return { netns, command, output: (r.stdout + r.stderr).replace(/\n$/, '') };
  });
  return {
    reason: d.reason,
    netns: d.netns,
    device: dev,
    stage,
    entry,
    summary: `${roleLabel(t.flow.role)} dropped in ${where}: ${dropText(drop)}`,

    counters,
    evidence,
    causes,
    consequence,
    allowPolicy,
  };
}

/** a label selector that picks exactly these labels' owner (as far as labels can) */
function selectorYaml(labels: Record<string, string>): string {
  const pairs = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
  return `{ matchLabels: { ${pairs.map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(', ')} } }`;
}

/**
 * The smallest NetworkPolicy that lets this one flow through the policy that dropped it: in the
 * selected pod's namespace, selecting that pod by its labels, with one rule for the peer (a pod
 * by namespace and labels, else its address) and the flow's protocol and port.
 */
function allowingPolicy(
  c: Cluster,
  f: Trace['flow'],
  namespace: string,
  podName: string,
  dir: 'ingress' | 'egress',
): string | undefined {
  const pod = c.pods.find((p) => p.name === podName && p.namespace === namespace);
  if (!pod) return undefined;
  const peerIp = dir === 'egress' ? f.dst : f.src;
  const peer = c.pods.find((p) => p.ip === peerIp);
  const own = Object.keys(pod.labels).length ? selectorYaml(pod.labels) : '{}';
  const peerLines = peer
    ? [
        `        - namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: ${JSON.stringify(peer.namespace)} } }`,
        `          podSelector: ${Object.keys(peer.labels).length ? selectorYaml(peer.labels) : '{}'}`,
      ]
    : [`        - ipBlock: { cidr: ${peerIp}/32 }`];
  const proto = f.proto === 'icmp' ? undefined : f.proto.toUpperCase();
  const name = `allow-${f.proto}-${dir === 'egress' ? `${podName}-to-${peer?.name ?? peerIp.replaceAll('.', '-')}` : `${peer?.name ?? peerIp.replaceAll('.', '-')}-to-${podName}`}${f.dport ? `-${f.dport}` : ''}`;
  return [
    'apiVersion: networking.k8s.io/v1',
    'kind: NetworkPolicy',
    'metadata:',
    `  name: ${name}`,
    `  namespace: ${namespace}`,
    'spec:',
    `  podSelector: ${own}`,
    `  policyTypes: [${dir === 'egress' ? 'Egress' : 'Ingress'}]`,
    `  ${dir}:`,
    `    - ${dir === 'egress' ? 'to' : 'from'}:`,
    ...peerLines,
    ...(proto && f.dport ? ['      ports:', `        - { protocol: ${proto}, port: ${f.dport} }`] : []),
  ].join('\n');
}

/** why a node has no route to another node's pods, per control plane */
function routeCauses(
  c: Cluster,
  from: string,
  owner: ResolvedNode | undefined,
  net: string | undefined,
): string[] {
  const out: string[] = [];
  const peer = owner?.name;
  if (c.mesh && peer) {
    const s = c.mesh.session(from, peer);
    if (s && s.state !== 'Established')
      out.push(
        `the BGP session ${from} ↔ ${peer} is ${s.state}, not Established: BIRD withdrew ${peer}'s route for ${net} from ${from}'s kernel table (check \`birdc show protocols\` / \`calicoctl node status\` on ${from}, TCP 179 between the nodes, and calico-node on ${peer})`,
      );
  }
  if (c.mode === 'flannel-host-gw' && owner) {
    const me = c.nodes.find((n) => n.name === from);
    if (me && me.subnet !== owner.subnet)
      out.push(
        `host-gw needs every node on one L2 segment: ${from} (${me.subnet}) cannot route ${net} via ${owner.name}'s ${owner.addr} (${owner.subnet}) directly; flanneld logs that the gateway is not reachable. Use the vxlan backend (or DirectRouting) across subnets`,
      );
  }
  if (FLANNEL(c) && peer && !out.length)
    out.push(
      `flanneld on ${from} did not add the route for ${peer}'s lease (${net}): the lease event was missed, or flanneld on ${from} is not running; check its logs and restart it`,
    );
  else if (peer && !out.length && MODE_INFO[c.mode].routeDaemon === 'felix')
    out.push(
      `felix on ${from} has no route for ${peer}'s block ${net} via ${peer}'s VTEP on vxlan.calico: the route was deleted by hand (felix puts it back at its next route refresh), or ${peer}'s block or VTEP (its VXLAN tunnel address and MAC) is missing from the datastore`,
    );
  else if (peer && !out.length)
    out.push(
      `${from}'s BIRD has no route for ${net} from ${peer}: calico-node on ${peer} is not advertising it, or the route was deleted by hand (BIRD's kernel protocol puts it back at its next scan, every 2 s)`,
    );
  if (!peer)
    out.push(
      `the destination is outside every node's pod CIDR: a wrong address, or a network only a router knows`,
    );
  return out;
}

/** plain-text rendering, indented under a dropped trace */
export function renderExplanation(x: Explanation): string {
  const lines = [
    `why: ${x.reason} in ${x.netns}${x.device ? ` at ${x.device}` : ''}`,
    `  where:   ${x.stage}`,
    `  entry:   ${x.entry}`,
  ];
  if (x.counters.length) {
    lines.push('  counters (rose during this walk):');
    for (const k of x.counters)
      lines.push(`    ${k.netns}: ${k.counter} +${k.delta} (now ${k.value})   ← ${k.command}`);
  }
  if (x.consequence) lines.push(`  consequence: ${x.consequence}`);
  if (x.causes.length) {
    lines.push('  likely causes:');
    for (const cz of x.causes) lines.push(`    - ${cz}`);
  }
  if (x.allowPolicy) {
    lines.push('  a NetworkPolicy that allows exactly this flow (kubectl apply -f, or podwalk --policy):');
    for (const l of x.allowPolicy.split('\n')) lines.push(`    ${l}`);
  }
  if (x.evidence.length) {
    lines.push('  on a real node:');
    for (const e of x.evidence) {
      lines.push(`    ${e.netns}$ ${e.command}`);
      if (e.output !== undefined)
        for (const l of (e.output || '(no output)').split('\n')) lines.push(`      ${l}`);
    }
  }
  return lines.join('\n');
}

/**
 * kube-proxy's DNAT on the way (the last one): the Service port it was for, the KUBE-SEP- chain
 * and node it ran in, and the tuple before and after it (conntrack's nat-setup)
 */
function serviceDnat(steps: readonly Step[]):
  | {
      origin: Extract<RuleOrigin, { kind: 'service' }>;
      chain: string;
      node: string;
      from: { dst: string; dport: number };
      to?: { dst: string; dport: number };
    }
  | undefined {
  let found: ReturnType<typeof serviceDnat>;
  for (const s of steps) {
    const ev = s.ev;
    if (ev.type === 'netfilter' && ev.decision.nat === 'DNAT') {
      const r = ev.decision.rule;
      if (r?.rule.origin?.kind === 'service')
        found = { origin: r.rule.origin, chain: r.chain, node: s.netns, from: { dst: '', dport: 0 } };
    } else if (
      found &&
      !found.to &&
      ev.type === 'nat-setup' &&
      ev.manip === 'dst' &&
      s.netns === found.node
    ) {
      found.from = { dst: ev.before.dst, dport: ev.before.dport };
      found.to = { dst: ev.after.dst, dport: ev.after.dport };
    }
  }
  return found;
}

/**
 * A pod that reached itself through its Service without being masqueraded: the answer to it went
 * straight over lo from the pod's own address and port, which the connecting socket does not
 * know (it talks to the Service address). The Service port is the one with this pod as an
 * endpoint on the answer's source port.
 */
function hairpinUnmasqueraded(
  c: Cluster,
  t: Trace,
  netns: string,
): { cause: string; node: string } | undefined {
  const f = t.flow;
  if (f.src !== f.dst || f.proto === 'icmp') return undefined;
  const pod = c.pods.find((p) => p.name === netns && p.ip === f.src);
  if (!pod) return undefined;
  for (const s of c.services)
    for (const sp of s.ports) {
      if (sp.protocol !== f.proto || !sp.endpoints.some((e) => e.ip === f.src && e.port === f.sport))
        continue;
      return {
        node: pod.node,
        cause: `${pod.name} reached itself through Service ${sp.nameString} (${sp.clusterIP}:${sp.port} DNATed back to ${f.src}:${f.sport}) and was not masqueraded: its answer went straight over lo from ${f.src}:${f.sport}, not from ${sp.clusterIP}:${sp.port}, and the connecting socket does not know it. kube-proxy's KUBE-SEP- rule marks hairpin traffic (-s ${f.src}/32 -j KUBE-MARK-MASQ) and KUBE-POSTROUTING masquerades what is marked: on ${pod.node} that rule is missing or bypassed (conntrack -L shows the entry's reply going to ${f.src} itself)`,
      };
    }
  return undefined;
}

/**
 * Why kube-proxy's filter rule for a Service dropped or rejected: the Service port has no ready
 * endpoint (which pods its selector matches, which of them are not ready or lack the target
 * port), or, for external traffic with externalTrafficPolicy Local, none on this node.
 */
function serviceDropCause(c: Cluster, o: Extract<RuleOrigin, { kind: 'service' }>, node: string): string {
  const svc = c.services.find((s) => s.namespace === o.namespace && s.name === o.name);
  const sp = svc?.ports.find((p) => p.portName === (o.port ?? ''));
  const name = `${o.namespace}/${o.name}${o.port ? `:${o.port}` : ''}`;
  if (!svc || !sp) return `kube-proxy's rule for Service ${name}`;
  if (sp.endpoints.length)
    return `Service ${name} has externalTrafficPolicy Local and no ready endpoint on ${node} (its endpoints: ${sp.endpoints.map((e) => `${e.pod} on ${e.nodeName}`).join(', ')}): kube-proxy drops external traffic there`;
  const spec = c.spec.services?.find((s) => s.namespace === o.namespace && s.name === o.name);
  if (!spec?.selector)
    return `Service ${name} has no selector, and nobody made EndpointSlices for it: kube-proxy rejects`;
  const members = svc.slices.flatMap((sl) => sl.endpoints.map((e) => ({ ...e, ports: sl.ports })));
  if (!members.length)
    return `Service ${name} has no endpoints: its selector ${Object.entries(spec.selector)
      .map(([k, v]) => `${k}=${v}`)
      .join(',')} matches no pod in namespace ${o.namespace}; kube-proxy rejects (icmp port unreachable)`;
  const why = members.map((m) =>
    !m.ready
      ? `${m.pod} is not ready`
      : `${m.pod} has no container port for the targetPort of ${o.port || 'the port'}`,
  );
  return `Service ${name} has no ready endpoint: ${why.join(', ')}; kube-proxy rejects (icmp port unreachable)`;
}

/** what a policy rule is, from its origin, for a rule without a comment */
function policyOriginText(o: Extract<RuleOrigin, { kind: 'network-policy' | 'policy-chain' }>): string {
  return o.kind === 'network-policy'
    ? `policy ${o.namespace}/${o.name} ${o.direction} rule ${o.ruleIndex}`
    : `no policy selecting ${o.pod} allows this ${o.direction} (selected by: ${o.selectedBy.join(', ')})`;
}
