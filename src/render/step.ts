/**
 * Text of one step: the sentence a learner reads, the table that decided it and its entry. This
 * is the only place a step becomes text; every renderer (steps, summary, minimal, JSON, the web
 * page) and the drop explanations go through it. Table entries are printed by the printers the
 * emulated tools use for the same kernel objects (`ip route`, `ip neigh`, `bridge fdb`,
 * `iptables -S`, `conntrack -L`).
 */
import type { Delivery, Drop, NfDecision, PacketRole, SendCall, Step, StepEvent } from '../kernel/events.ts';
import type { Tuple } from '../kernel/conntrack.ts';
import { formatRuleSpec } from '../kernel/netfilter.ts';
import { tcpFlagString } from '../wire/tcp.ts';
import { describeFrame, describeIp } from './describe.ts';
import { tuple } from './conntrack.ts';
import { fdbEntryText, neighEntryText, routeEntryText } from '../tools/printers.ts';

const ICMP_LABEL: Record<string, string> = {
  'net-unreachable': 'net unreachable',
  'host-unreachable': 'host unreachable',
  'protocol-unreachable': 'protocol unreachable',
  'port-unreachable': 'port unreachable',
  'fragmentation-needed': 'fragmentation needed',
  'time-exceeded': 'time exceeded',
  'admin-prohibited': 'administratively prohibited',
};

/** the ICMP error's name as the step says it: the REJECT rule's --reject-with, or the kind */
function icmpLabel(icmp: string, rejectWith?: string): string {
  return icmp === 'reject' ? (rejectWith ?? 'icmp-port-unreachable') : ICMP_LABEL[icmp];
}

const ICMP_ERROR_NAME: Record<string, string> = {
  '3/0': 'net unreachable',
  '3/1': 'host unreachable',
  '3/2': 'protocol unreachable',
  '3/3': 'port unreachable',
  '3/4': 'fragmentation needed',
  '11/0': 'time exceeded',
};

/** the label of a packet in its exchange: "SYN", "SYN-ACK", "ICMP host unreachable"… */
export function roleLabel(r: PacketRole): string {
  switch (r.kind) {
    case 'syn':
      return 'SYN';
    case 'syn-ack':
      return 'SYN-ACK';
    case 'ack':
      return 'ACK';
    case 'dup-ack':
      return 'dup ACK';
    case 'fin':
      return 'FIN';
    case 'rst':
      return 'RST';
    case 'request':
      return 'request';
    case 'response':
      return 'response';
    case 'retransmission':
      return 'retransmission';
    case 'udp-datagram':
      return 'UDP datagram';
    case 'udp-reply':
      return 'UDP reply';
    case 'echo-request':
      return 'ICMP echo request';
    case 'echo-reply':
      return 'ICMP echo reply';
    case 'icmp-error':
      return `ICMP ${r.rejectWith ?? ICMP_ERROR_NAME[`${r.type}/${r.code}`] ?? `type ${r.type} code ${r.code}`}`;
  }
}

function callText(c: SendCall | undefined): string {
  return c === undefined ? '' : typeof c === 'string' ? c : roleLabel(c);
}

function seg(s: {
  flags: Parameters<typeof tcpFlagString>[0];
  seq: number;
  ack?: number;
  len: number;
}): string {
  return `[${tcpFlagString(s.flags)}] seq ${s.seq}${s.ack !== undefined ? ` ack ${s.ack}` : ''}${s.len ? ` len ${s.len}` : ''}`;
}

function deliveryText(d: Delivery, netns: string): string {
  switch (d.what) {
    case 'local':
      return `delivered to ${netns}`;
    case 'udp':
      return d.client
        ? `UDP reply of ${d.bytes} bytes to the sending socket on udp/${d.port}`
        : `UDP datagram of ${d.bytes} bytes to the socket on udp/${d.port} (echoes it back)`;
    case 'echo-request':
      return `ICMP echo request id ${d.id} seq ${d.seq}: the kernel answers`;
    case 'icmp': {
      const what =
        d.type === 0
          ? `echo reply id ${d.id} seq ${d.seq}`
          : d.type === 3
            ? `destination unreachable code ${d.code}${d.mtu ? ` (mtu ${d.mtu})` : ''}`
            : d.type === 11
              ? 'time exceeded'
              : `type ${d.type}`;
      return `ICMP ${what} reaches the sender`;
    }
    case 'pmtu':
      if (d.already !== undefined)
        return `ICMP fragmentation needed (mtu ${d.mtu}): path MTU already ${d.already}`;
      return `ICMP fragmentation needed (mtu ${d.mtu}) for tcp/${d.sport} → ${d.dst}:${d.dport}: path MTU ${d.mtu}, segments ${d.before} → ${d.after} bytes; ${d.resent} segment${d.resent === 1 ? '' : 's'} sent again`;
    case 'proto':
      return `IP protocol ${d.proto} delivered`;
    case 'tcp': {
      const desc = seg(d.seg);
      switch (d.event) {
        case 'rst-no-conn':
          return `RST ${desc}: no connection`;
        case 'rst-reset':
          return `RST ${desc}: connection reset`;
        case 'abort-on-data':
          return `${desc}: data for a socket its process closed; RST, connection aborted`;
        case 'established':
          return `SYN-ACK ${desc}: ${d.from} → ESTABLISHED; connect() returns`;
        case 'out-of-order':
          return `${desc}: out of order (expected seq ${d.expected}), held in the out-of-order queue; duplicate ACK`;
        case 'duplicate':
          return `${desc}: already received; duplicate ACK`;
        case 'syn':
          return `SYN to the listener on tcp/${d.port}: SYN_RECV, answer SYN-ACK (mss ${d.mss})`;
        case 'data': {
          const change = d.from !== d.to ? `: ${d.from} → ${d.to}` : '';
          return `${desc} to the ${d.role} socket${change}${d.seg.len ? `; ${d.seg.len} bytes to the application` : ''}`;
        }
      }
      return unreachable(d.event);
    }
  }
  return unreachable(d);
}

/** what decided a netfilter verdict: "rule CHAIN #N: -A CHAIN …" or "policy CHAIN DROP" */
export function nfDecisionText(d: NfDecision): string {
  const table = d.table === 'filter' ? '' : `${d.table} `;
  return d.rule
    ? `rule ${table}${d.rule.chain} #${d.rule.index}: -A ${d.rule.chain} ${formatRuleSpec(d.rule.rule)}`
    : `policy ${table}${d.policy?.chain} ${d.policy?.policy}`;
}

/** a tuple as a flow: "TCP 10.244.0.5:40000 → 10.96.0.10:80" */
function tupleFlow(t: Tuple): string {
  return `${PROTO_LABEL[t.proto] ?? `proto ${t.proto}`} ${tupleEnd(t, 'src')} → ${tupleEnd(t, 'dst')}`;
}

/** one end of a tuple: "10.96.0.10:80", "10.244.0.5 id 7" */
function tupleEnd(t: Tuple, side: 'src' | 'dst'): string {
  const ip = side === 'src' ? t.src : t.dst;
  if (t.proto === 6 || t.proto === 17) return `${ip}:${side === 'src' ? t.sport : t.dport}`;
  if (t.proto === 1) return `${ip} id ${t.icmpId}`;
  return ip;
}

const PROTO_LABEL: Record<number, string> = { 6: 'TCP', 17: 'UDP', 1: 'ICMP' };

/** the one-line account of a drop (what `DROPPED (reason) …:` is followed by) */
export function dropText(d: Drop): string {
  const dev = d.device ?? '';
  switch (d.reason) {
    case 'no-route':
      if (d.ipip === 'frame') return `${dev} takes IP packets, not frames`;
      if (d.ipip === 'no-gateway')
        return `${dev} (remote any) needs a route with a gateway: the tunnel endpoint`;
      if (d.tunnel) return `no route to tunnel endpoint ${d.dst}`;
      if (d.afterNat) return `no route to ${d.dst} after DNAT`;
      if (d.call) return `no route to ${d.dst}: ${callText(d.call)} fails with ENETUNREACH`;
      if (d.route?.type === 'blackhole') return `${d.dst} matches a blackhole route: discarded silently`;
      if (d.route?.type === 'unreachable')
        return `${d.dst} matches an unreachable route: ICMP host unreachable`;
      if (d.route?.type === 'prohibit')
        return `${d.dst} matches a prohibit route: ICMP administratively prohibited`;
      return `no route to ${d.dst} (IpExtInNoRoutes)`;
    case 'neighbour-failed':
      return d.queued
        ? `queued behind the failed resolution of ${d.nexthop}: dropped with it`
        : `no ARP reply for ${d.nexthop} on ${dev} after ${d.probes} probes`;
    case 'vxlan-fdb-miss':
      return `${dev} has no FDB entry for ${d.mac}; counted in tx_dropped`;
    case 'link-down':
      if (d.noCarrier) return `${dev} has no carrier (NO-CARRIER): the frame is dropped`;
      if (d.bridge === 'bridge') return `bridge ${dev} is down`;
      if (d.bridge === 'port') return `bridge port ${dev} is down`;
      return `${dev} is down`;
    case 'filtered':
      return `${d.verdict === 'REJECT' ? 'rejected' : 'dropped'} by ${nfDecisionText(d)}${d.masqueradeFailed ? `: MASQUERADE found no address on ${dev}` : ''}`;
    case 'mtu-exceeded':
      switch (d.site) {
        case 'ip_append_data':
          return `${callText(d.call)}: local error EMSGSIZE, message too long, mtu=${d.mtu}: the packet never leaves ${d.netns}`;
        case 'ip_finish_output':
          return `packet of ${d.len} bytes does not fit mtu ${d.mtu} of ${dev} and DF is set`;
        case 'ip_forward':
          return `packet of ${d.len} bytes does not fit mtu ${d.mtu} of ${dev} and DF is set (IpFragFails)`;
        case 'veth_xmit':
          return `frame of ${d.len} bytes exceeds ${dev} mtu ${d.mtu}: veth drops it silently`;
        case 'br_dev_queue_push_xmit':
          return `frame of ${d.len} bytes exceeds bridge port ${dev} mtu ${d.mtu}: the bridge drops it silently`;
      }
      return unreachable(d);
    case 'ttl-exceeded':
      return d.site === 'ip_rcv' ? 'TTL 0 on receive' : `TTL ${d.ttl} would reach 0 (IpInHdrErrors)`;
    case 'forwarding-disabled':
      return `${d.dst} is not local and net.ipv4.ip_forward = 0 (counted as IpInAddrErrors)`;
    case 'rp-filter':
      return `rp_filter=${d.mode} (${d.mode === 1 ? 'strict' : 'loose'}) on ${dev} rejects source ${d.src} (IPReversePathFilter)`;
    case 'port-unreachable':
      if (d.ipip) return 'IPinIP packet but no ipip device: ICMP protocol unreachable';
      if (d.vni) return `VNI ${d.vni.got} does not match ${dev} (vni ${d.vni.dev})`;
      return `nothing listens on udp/${d.port}: ICMP port unreachable to ${d.src}`;
    case 'reset':
      return `no socket for tcp/${d.port}${d.listener ? ' in this state' : ' (nothing listens)'}: RST sent to ${d.src}`;
    case 'not-for-host':
      return d.devMac
        ? `destination MAC ${d.mac} is not ${dev}'s ${d.devMac}`
        : `${d.mac} is on the ingress port${d.port ? ` ${d.port}` : ''}; bridge does not send it back (hairpin mode off)`;
  }
  return unreachable(d);
}

/** a switch that covers every case of a closed union ends here; a new case does not compile */
export function unreachable(x: never): never {
  throw new Error(`unhandled case ${JSON.stringify(x)}`);
}

/** the sentence of a step */
export function stepDetail(s: Step): string {
  const e: StepEvent = s.ev;
  const dev = s.device ?? '';
  switch (e.type) {
    case 'route': {
      const via = e.route.via ? `via ${e.route.via} ` : '';
      return `${e.outer ? 'outer ' : ''}${e.dst} → ${via}dev ${e.dev} src ${e.src}`;
    }
    case 'route-local':
      return e.via === 'input'
        ? `${e.dst} is a local address (on ${e.dev}): deliver locally`
        : `${e.dst} is local: via lo`;
    case 'route-miss':
      if (e.route) return `${e.dst} → ${e.route.type}: the route sends nothing`;
      return e.outer
        ? `outer ${e.dst}: no route${e.oif ? ` via ${e.oif}` : ''}`
        : `${e.dst}: no matching route`;
    case 'rp-filter':
      return `reverse path to ${e.src} ${e.back ? `leaves via ${e.back.dev}` : 'does not exist'}, packet came in on ${e.iif}`;
    case 'forward':
      return `forward ${describeIp(e.pkt)} ${e.iif} → ${e.oif}, TTL ${e.ttl} → ${e.ttl - 1}`;
    case 'mtu':
      switch (e.site) {
        case 'ip_finish_output':
          return `${e.len} bytes > mtu ${e.mtu} of ${e.dev} with DF set`;
        case 'ip_forward':
          return `${e.len} bytes > mtu ${e.mtu} of ${e.dev}, DF set`;
        case 'ip_append_data':
          return `${e.len} bytes > mtu ${e.mtu} of ${e.dev}, DF set (IP_PMTUDISC_DO)`;
      }
      return unreachable(e.site);
    case 'fragment':
      return `${e.len} bytes > mtu ${e.mtu} of ${e.dev}, DF clear: ${e.sizes.length} fragments of ${e.sizes.join('+')} bytes`;
    case 'refragment':
      return `${e.bridge}: reassembled ${e.len} bytes leave ${e.port} again as ${e.count} fragments`;
    case 'defrag-hold':
      return `fragment offset ${e.offset} of id ${e.id} held for reassembly`;
    case 'defrag':
      return `${e.count} fragments of id ${e.id} reassembled: ${e.len} bytes`;
    case 'neigh':
      if (e.result === 'hit') return `${e.nexthop} is at ${e.entry.lladdr} (${e.entry.state})`;
      if (e.result === 'miss') return `no neighbour entry for ${e.nexthop} on ${dev}: resolve with ARP`;
      if (e.result === 'queued')
        return `${e.nexthop} is still resolving (INCOMPLETE): queued behind ${e.qlen - 1} packet(s)`;
      return `${e.nexthop} is at ${e.entry.lladdr}`;
    case 'arp-request':
      return e.unicast
        ? `who-has ${e.target} tell ${e.sender} (unicast probe to ${e.unicast} on ${dev})`
        : `who-has ${e.target} tell ${e.sender} (broadcast on ${dev})`;
    case 'arp-ignore':
      return `who-has ${e.target}: not a local address, ignored`;
    case 'arp-reply':
      return `${e.target} is-at ${e.mac} (reply to ${e.to})`;
    case 'arp-proxy-reply':
      return `${e.target} is-at ${e.mac}: proxy ARP on ${dev} (proxy_arp=1, ${e.target} is routed out of ${e.route.dev}${e.proxyDelay ? '' : ', proxy_delay 0: at once'}; reply to ${e.to})`;
    case 'arp-learn':
      return `${e.ip} is-at ${e.mac}: neighbour REACHABLE`;
    case 'arp-locked':
      return `${e.ip} is-at ${e.mac}: ignored, the entry changed to ${e.entry.lladdr ?? '?'} less than locktime (1 s) ago (the first reply wins)`;
    case 'xmit':
      return `${describeFrame(e.frame)} out ${dev}`;
    case 'xmit-ip':
      return `${describeIp(e.pkt)} out ${dev}`;
    case 'rx':
      return `${describeFrame(e.frame)} in ${dev}`;
    case 'rx-ip':
      return `${describeIp(e.pkt)} in ${dev}`;
    case 'fdb-learn':
      return `${e.bridge} learns ${e.mac} on port ${e.port}`;
    case 'bridged-dnat':
      return `DNAT to ${e.dst}, routed out of ${e.bridge} that the frame came in by (from ${e.port}): bridged, not routed (br_netfilter bridged DNAT: no TTL decrement, source MAC kept)`;
    case 'fdb-flood':
      return e.broadcast
        ? `${e.bridge}: broadcast, flooded to ${e.ports.join(', ') || 'no other port'}${e.toHost ? ' and up to the host' : ''}`
        : `${e.bridge}: ${e.mac} unknown, flooded to ${e.ports.join(', ') || 'no other port'}`;
    case 'fdb-local':
      return `${e.mac} is ${e.bridge}'s own address: up to the host stack`;
    case 'fdb-forward':
      return `${e.bridge}: ${e.mac} is on port ${e.port}`;
    case 'vxlan-fdb-miss':
      return `${dev}: no FDB entry for ${e.mac}: no remote VTEP`;
    case 'encap-vxlan':
      return `${dev}: VXLAN vni ${e.vni}, UDP ${e.sport} → ${e.dport}, outer ${e.local} → ${e.remote} (+50 bytes)`;
    case 'encap-ipip':
      return `${dev}: IPinIP (protocol 4), outer ${e.local} → ${e.remote} (+20 bytes)`;
    case 'decap-vxlan':
      return `UDP ${e.outerSrc} → ${e.outerDst}:${e.dport} is VXLAN vni ${e.vni} for ${dev}: inner frame ${e.innerSrc} → ${e.innerDst}`;
    case 'decap-ipip':
      return `IPinIP ${e.outerSrc} → ${e.outerDst} for ${dev}: inner ${describeIp(e.inner)}`;
    case 'netfilter': {
      const d = e.decision;
      const through = d.path.map((p) => `${p.chain}#${p.index}`).join(' → ');
      const choice = d.choice
        ? `; random choice ${d.choice.chain}#${d.choice.index}, probability ${d.choice.probability.toFixed(4)}`
        : '';
      return `${d.table} ${d.hook}: ${d.nat ?? d.verdict}${through ? ` (${through})` : ' (policy)'}${choice}`;
    }
    case 'nat-setup': {
      const what = e.manip === 'dst' ? 'DNAT' : 'SNAT';
      const how = e.byRule ? '' : ' (null binding: the source port was taken)';
      return `nat ${e.hook}: ${what} ${tupleFlow(e.before)} becomes ${tupleFlow(e.after)}${how}`;
    }
    case 'nat-rewrite':
      return `nat ${e.hook}: ${e.manip === 'dst' ? 'destination' : 'source'} ${tupleEnd(e.before, e.manip)} → ${tupleEnd(e.after, e.manip)} (from the conntrack entry${e.icmpError ? ', ICMP error and the packet it quotes' : ''})`;
    case 'masquerade-failed':
      return `nat ${e.hook}: MASQUERADE: ${dev} has no address`;
    case 'conntrack': {
      const tcp = e.to && e.from !== e.to ? ` ${e.from} → ${e.to}` : e.to ? ` ${e.to}` : '';
      return `conntrack: ${e.ctstate} (${e.dir})${tcp}`;
    }
    case 'icmp-send':
      return `ICMP ${icmpLabel(e.icmp, e.rejectWith)} to ${e.to}${e.mtu ? ` (mtu ${e.mtu})` : ''}`;
    case 'icmp-unsent':
      return `ICMP ${icmpLabel(e.icmp, e.rejectWith)} to ${e.to} not sent: no route back to it`;
    case 'icmp-ratelimited':
      if (e.limit === 'route')
        return `ICMP ${icmpLabel(e.icmp)} to ${e.to} not sent: ip_error's rate limit for that destination (route.error_cost, no counter)`;
      return e.limit === 'host'
        ? `ICMP ${icmpLabel(e.icmp)} to ${e.to} not sent: over icmp_ratelimit for that destination (IcmpOutRateLimitHost)`
        : `ICMP ${icmpLabel(e.icmp)} to ${e.to} not sent: over icmp_msgs_per_sec (IcmpOutRateLimitGlobal)`;
    case 'connect':
      return `connect() ${e.src}:${e.sport} → ${e.dst}:${e.dport}: TCP SYN, mss ${e.mss} (mtu ${e.mtu} − 40), wscale ${e.wscale}, SACK, timestamps`;
    case 'sendto':
      return `sendto() ${e.bytes} bytes → ${e.dst}:${e.dport} from port ${e.sport}${e.df ? ' (IP_PMTUDISC_DO)' : ''}`;
    case 'ping':
      return `ping ${e.dst}: ICMP echo request id ${e.id} seq ${e.seq}, ${e.bytes} data bytes${e.df ? ' (-M do)' : ''}`;
    case 'send':
      return `${s.netns} sends ${roleLabel(e.role)}: ${describeIp(e.pkt)}`;
    case 'deliver':
      return deliveryText(e.delivery, s.netns);
    case 'drop':
      return `${e.drop.reason}: ${dropText(e.drop)}`;
    case 'outside':
      return `left the collected nodes through ${e.from.netns} ${e.from.device}: what lies beyond was not collected`;
  }
  return unreachable(e);
}

/** the table that decided a step, as its label reads ("main", "neigh", "fdb cni0", "filter FORWARD") */
export function stepTable(s: Step): string | undefined {
  const e = s.ev;
  switch (e.type) {
    case 'route':
    case 'route-miss':
    case 'rp-filter':
    case 'encap-ipip':
    case 'arp-proxy-reply':
      return 'main';
    case 'route-local':
      return 'local';
    case 'neigh':
    case 'arp-learn':
    case 'arp-locked':
      return 'neigh';
    case 'fdb-learn':
    case 'fdb-local':
    case 'fdb-forward':
      return `fdb ${e.bridge}`;
    case 'fdb-flood':
      return e.broadcast ? undefined : `fdb ${e.bridge}`;
    case 'vxlan-fdb-miss':
    case 'encap-vxlan':
      return `fdb ${s.device}`;
    case 'netfilter':
      return `${e.decision.table} ${e.decision.hook}`;
    case 'conntrack':
    case 'nat-setup':
    case 'nat-rewrite':
      return 'conntrack';
  }
  return undefined;
}

/** the entry that decided a step, printed as the real tool prints it; "(none)" where nothing matched */
export function stepEntry(s: Step): string | undefined {
  const e = s.ev;
  switch (e.type) {
    case 'route':
      return routeEntryText(e.route);
    case 'encap-ipip':
    case 'arp-proxy-reply':
      return routeEntryText(e.route);
    case 'rp-filter':
      return e.back ? routeEntryText(e.back) : '(none)';
    case 'route-miss':
      return e.route ? routeEntryText(e.route) : '(none)';
    case 'route-local':
      return `local ${e.dst} dev ${e.dev} proto kernel scope host src ${e.dst}`;
    case 'neigh':
      return e.entry ? neighEntryText(e.entry) : '(none)';
    case 'arp-learn':
    case 'arp-locked':
      return neighEntryText(e.entry);
    case 'fdb-learn':
      return fdbEntryText(e.bridge, { mac: e.mac, port: e.port, state: 'dynamic' });
    case 'fdb-local':
    case 'fdb-forward':
      return fdbEntryText(e.bridge, { mac: e.mac, port: e.port, state: e.state });
    case 'fdb-flood':
      return e.broadcast ? undefined : '(none)';
    case 'vxlan-fdb-miss':
      return '(none)';
    case 'encap-vxlan':
      return `${e.fdb.mac} dst ${e.fdb.dst} self${e.fdb.permanent ? ' permanent' : ''}`;
    case 'netfilter': {
      const d = e.decision;
      return d.rule ? `-A ${d.rule.chain} ${formatRuleSpec(d.rule.rule)}` : `-P ${d.hook} ${d.verdict}`;
    }
    case 'conntrack':
      return tuple(e.orig);
    case 'nat-setup':
      return `${tuple(e.orig)} ${tuple(e.reply)}`;
    case 'nat-rewrite':
      return tuple(e.before);
  }
  return undefined;
}
