/**
 * Walk a flow through a built cluster: the request packet, then every packet the exchange
 * produces (SYN-ACK, ACK, data, FIN… or ICMP errors, RST), each recorded as its own Trace.
 */
import type { Cluster } from '../cni/build.ts';
import { HEADLESS, type ResolvedService, type ServicePortInfo } from '../proxy/services.ts';
import { asciiBytes } from '../kernel/sockets.ts';
import type { Terminal } from '../kernel/stack.ts';
import type { Netns } from '../kernel/objects.ts';
import type { Drop } from '../kernel/events.ts';
import { Recorder } from '../kernel/world.ts';
import { GAP_US } from '../kernel/exchange.ts';
import { isValidIp4 } from '../wire/addr.ts';
import { flowCacheOf } from './flow-cache.ts';
import { freezeTrace, type Disposition, type Flow, type Proto, type Trace } from './types.ts';

export class WalkError extends Error {}

export interface WalkRequest {
  from: string;
  to: string;
  proto: Proto;
  port?: number;
  /** UDP/ICMP: IP total length of the datagram; TCP: bytes of request data */
  size?: number;
  /** Don't Fragment; for ICMP undefined is ping's default: DF when it fits the path MTU */
  df?: boolean;
  sport?: number;
  /** a Service's destination: the endpoint (pod name) kube-proxy's random choice takes */
  endpoint?: string;
}

export interface Walk {
  request: Trace;
  /** the first packet the exchange sent back toward the source (SYN-ACK, echo reply, ICMP error, RST) */
  reply?: Trace;
  /** every trace in order: request, reply, and the rest of the exchange */
  traces: Trace[];
}

/** Packets at most in one exchange, so a loop in a broken cluster cannot run forever */
const MAX_PACKETS = 64;
export { GAP_US };

export interface Endpoint {
  netns: string;
  ip: string;
}

/** pods and nodes by name, per cluster (both lists are fixed once the cluster is built) */
const byName = new WeakMap<Cluster, Map<string, Endpoint>>();

/** A pod, node or external host name, or an IP address → the network namespace and address it stands for */
export function resolveEndpoint(c: Cluster, what: string, role: 'source' | 'destination'): Endpoint {
  const e = endpointOf(c, what, role);
  return { netns: e.netns, ip: e.ip };
}

/** resolveEndpoint's answer, read only: a named endpoint is the index's own entry */
function endpointOf(c: Cluster, what: string, role: 'source' | 'destination'): Readonly<Endpoint> {
  let index = byName.get(c);
  if (!index) {
    index = new Map();
    // a pod and a node never share a name (one namespace of names); pods first, as before
    for (const n of c.nodes) index.set(n.name, { netns: n.name, ip: n.addr });
    for (const p of c.pods) index.set(p.name, { netns: p.name, ip: p.ip });
    for (const h of c.externalHosts) index.set(h.name, { netns: h.name, ip: h.addr });
    byName.set(c, index);
  }
  const named = index.get(what);
  if (named) return named;
  if (isValidIp4(what)) {
    for (const ns of c.world.netns.values()) {
      if (ns.role === 'segment') continue;
      if (ns.localAddress(what) && !what.startsWith('127.')) return { netns: ns.name, ip: what };
    }
    if (role === 'destination') return { netns: '', ip: what };
    throw new WalkError(`source ${what} is not an address of any pod or node`);
  }
  const hosts = c.externalHosts.length
    ? `, an external host (${c.externalHosts.map((h) => h.name).join(', ')})`
    : '';
  throw new WalkError(
    `unknown ${role} "${what}": expected a pod (${c.pods.map((p) => p.name).join(', ')}), a node (${c.nodes.map((n) => n.name).join(', ')})${hosts} or an IPv4 address`,
  );
}

export function dispositionOf(terminals: readonly Terminal[]): Disposition {
  // the first delivery, else the first drop that is not another host's ignoring a copy, else…
  let first: Drop | undefined;
  let drop: Drop | undefined;
  let out: Extract<Terminal, { kind: 'outside' }> | undefined;
  for (const t of terminals) {
    // a literal, not a spread: V8 gives a spread's copy a shape that Object.freeze cannot reuse a
    // frozen shape for (freezing one took ~0.6 µs, 12 times a literal's; freezeTrace freezes it)
    if (t.kind === 'delivered') return { kind: 'delivered', netns: t.netns, device: t.device, to: t.to };
    if (t.kind === 'dropped') {
      first ??= t.drop;
      if (!drop && t.drop.reason !== 'not-for-host') drop = t.drop;
    } else if (t.kind === 'outside') out ??= t;
  }
  // a copy that left the collected namespaces says more than copies other hosts ignored
  const d = drop ?? (out ? undefined : first);
  if (d) return { kind: 'dropped', reason: d.reason, netns: d.netns, device: d.device, drop: d };
  if (out) return { kind: 'outside', netns: out.netns, device: out.device };
  return { kind: 'pending' };
}

/**
 * The request bytes of walks, per host, then port and size: the same every time, and only read
 * (a socket sends slices of them). Forgotten all at once when a level holds many (podwalk matrix
 * walks to thousands of pods).
 */
const requests = new Map<string, Map<number, Uint8Array>>();
const MAX_REQUESTS = 4096;

/** httpRequest's bytes, shared by every walk that sends them: nothing may write into them */
function requestBytes(host: string, port: number, size?: number): Uint8Array {
  if (size !== undefined && !(Number.isInteger(size) && size >= 0)) return httpRequest(host, port, size);
  let byPort = requests.get(host);
  if (!byPort) {
    if (requests.size >= MAX_REQUESTS) requests.clear();
    requests.set(host, (byPort = new Map()));
  }
  // a port is 1..65535 (walkFlow checked it): port and size in one exact number
  const key = size === undefined ? port : port + 65536 * (size + 1);
  let b = byPort.get(key);
  if (!b) {
    if (byPort.size >= MAX_REQUESTS) byPort.clear();
    byPort.set(key, (b = httpRequest(host, port, size)));
  }
  return b;
}

export function httpRequest(host: string, port: number, size?: number): Uint8Array {
  const base = `GET / HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: podwalk\r\nAccept: */*\r\n\r\n`;
  if (size === undefined || size <= base.length)
    return asciiBytes(size === undefined ? base : base.slice(0, Math.max(1, size)));
  const head = `POST / HTTP/1.1\r\nHost: ${host}:${port}\r\nContent-Length: `;
  const bodyLen = Math.max(0, size - head.length - 4 - String(size).length);
  return asciiBytes((head + `${bodyLen}\r\n\r\n` + 'x'.repeat(bodyLen)).padEnd(size, 'x').slice(0, size));
}

export function payload(n: number): Uint8Array {
  const b = new Uint8Array(Math.max(0, n));
  for (let i = 0; i < b.length; i++) b[i] = (0x10 + i) & 0xff; // ping's pattern: bytes counting up
  return b;
}

/** How a walk reaches a Service: the address and port it sends to, and the service port behind them */
export interface ServiceTarget {
  ip: string;
  port: number;
  via: 'cluster-ip' | 'node-port' | 'load-balancer';
  servicePort: ServicePortInfo;
}

const servicesList = (c: Cluster) =>
  c.services.length ? c.services.map((s) => `${s.namespace}/${s.name}`).join(', ') : 'none';

/** the one port of `ports` a walk to `to` (port, proto) means, or the error that says why there is none */
function pickPort(
  to: string,
  port: number | undefined,
  proto: Proto,
  ports: ServicePortInfo[],
  what: string,
  ip: (p: ServicePortInfo) => string,
  via: ServiceTarget['via'],
): ServiceTarget {
  const wantProto = proto === 'udp' ? 'udp' : 'tcp';
  const cands = ports.filter((p) => (port === undefined || p.port === port) && p.protocol === wantProto);
  if (cands.length === 1) return { ip: ip(cands[0]), port: cands[0].port, via, servicePort: cands[0] };
  const all = ports.map((p) => `${p.port}/${p.protocol}${p.portName ? ` (${p.portName})` : ''}`).join(', ');
  if (port === undefined && cands.length > 1)
    throw new WalkError(
      `${what} has several ${wantProto} ports (${all}): give one, e.g. ${to}:${cands[0].port}`,
    );
  throw new WalkError(
    `${what} has no ${proto} port${port === undefined ? '' : ` ${port}`}; its ports: ${all}`,
  );
}

/** the cluster's Service ports by what a walk may name them with, each list in the Services' order */
interface ServiceIndex {
  /** the list indexed and its length: another list, or one grown or cut, is indexed again */
  services: readonly ResolvedService[];
  count: number;
  byIp: Map<string, ServicePortInfo[]>;
  byLb: Map<string, ServicePortInfo[]>;
  /** by protocol, then NodePort: the first port with it (numbers: no `NODEPORT/PROTO` string made per walk) */
  byNodePort: Record<'tcp' | 'udp', Map<number, ServicePortInfo>>;
}
const serviceIndexes = new WeakMap<Cluster, ServiceIndex>();

function serviceIndex(c: Cluster): ServiceIndex {
  const had = serviceIndexes.get(c);
  if (had && had.services === c.services && had.count === c.services.length) return had;
  const ix: ServiceIndex = {
    services: c.services,
    count: c.services.length,
    byIp: new Map(),
    byLb: new Map(),
    byNodePort: { tcp: new Map(), udp: new Map() },
  };
  const add = (m: Map<string, ServicePortInfo[]>, k: string, p: ServicePortInfo) => {
    const l = m.get(k);
    if (!l) m.set(k, [p]);
    else if (l[l.length - 1] !== p) l.push(p);
  };
  for (const s of c.services)
    for (const p of s.ports) {
      add(ix.byIp, p.clusterIP, p);
      for (const lb of p.loadBalancerIPs) add(ix.byLb, lb, p);
      const np = ix.byNodePort[p.protocol];
      if (p.nodePort !== undefined && !np.has(p.nodePort)) np.set(p.nodePort, p);
    }
  serviceIndexes.set(c, ix);
  return ix;
}

/**
 * `svc/NAME`, `NAMESPACE/NAME`, a ClusterIP or load-balancer IP, or a node (name or address) with
 * one of its node ports: the Service port a walk goes to, or undefined when `to` is none of them.
 */
export function resolveService(
  c: Cluster,
  to: string,
  port: number | undefined,
  proto: Proto,
): ServiceTarget | undefined {
  const wantProto = proto === 'udp' ? 'udp' : 'tcp';
  const named = to.startsWith('svc/') ? to.slice(4) : to.includes('/') ? to : undefined;
  if (named !== undefined) {
    if (proto === 'icmp')
      throw new WalkError(`a Service carries TCP and UDP; ${to} takes --proto tcp or udp`);
    const [ns, name] = named.includes('/') ? named.split('/', 2) : [undefined, named];
    const found = c.services.filter((s) => s.name === name && (ns === undefined || s.namespace === ns));
    if (found.length > 1)
      throw new WalkError(
        `service "${name}" is in several namespaces (${found.map((s) => s.namespace).join(', ')}): say NAMESPACE/${name}`,
      );
    if (!found.length) {
      // NAMESPACE/NAME that is no Service: not a service name at all unless it said svc/
      if (!to.startsWith('svc/') && !c.kubeProxy) return undefined;
      throw new WalkError(`unknown service "${named}"; the cluster's services: ${servicesList(c)}`);
    }
    const s = found[0];
    if (s.clusterIP === HEADLESS) {
      const pods = [...new Set(s.ports.flatMap((p) => p.endpoints.map((e) => `${e.pod} ${e.ip}`)))];
      throw new WalkError(
        `service ${s.namespace}/${s.name} is headless (clusterIP None): kube-proxy programs nothing for it, and its clients reach the pods by their own addresses (what DNS answers for it): ${pods.join(', ') || 'none ready'}`,
      );
    }
    return pickPort(
      to,
      port,
      proto,
      s.ports,
      `service ${s.namespace}/${s.name}`,
      (p) => p.clusterIP,
      'cluster-ip',
    );
  }
  const ix = serviceIndex(c);
  const byIp = ix.byIp.get(to);
  if (byIp) return pickPort(to, port, proto, byIp, `cluster IP ${to}`, (p) => p.clusterIP, 'cluster-ip');
  const byLb = ix.byLb.get(to);
  if (byLb) return pickPort(to, port, proto, byLb, `load-balancer IP ${to}`, () => to, 'load-balancer');
  // the NodePort first: a walk to a pod of a cluster without one scans no node list (podwalk
  // matrix walks thousands of pairs on 1,000 nodes)
  const np = port === undefined ? undefined : ix.byNodePort[wantProto].get(port);
  if (!np) return undefined;
  const node = c.nodes.find((n) => n.name === to || n.addr === to);
  return node && { ip: node.addr, port: port!, via: 'node-port', servicePort: np };
}

/** one statistic rule of kube-proxy's random choice: whether it must match for the endpoint to be taken */
export interface EndpointDraw {
  node: string;
  chain: string;
  /** the rule's index in its chain, from 1 */
  index: number;
  hit: boolean;
}

/**
 * The statistic rules of every node's KUBE-SVC-/KUBE-SVL- chain of the Service port, as they are
 * (a chain a command changed is read as changed), each with whether it must match for `pod` to be
 * the endpoint taken: the rule that jumps to the endpoint's chain matches, those before it do not.
 */
export function endpointDraws(c: Cluster, t: ServiceTarget, pod: string): EndpointDraw[] {
  const sp = t.servicePort;
  const ep = sp.endpoints.find((e) => e.pod === pod);
  if (!ep)
    throw new WalkError(
      `${pod} is no ready endpoint of ${sp.nameString}; its endpoints: ${sp.endpoints.map((e) => e.pod).join(', ') || 'none'}`,
    );
  const out: EndpointDraw[] = [];
  for (const n of c.nodes) {
    const nf = c.world.ns(n.name).netfilter;
    for (const name of [sp.chains.svc, sp.chains.svl]) {
      nf.chain('nat', name)?.rules.forEach((r, i) => {
        if (!r.matches.some((m) => m.kind === 'statistic')) return;
        const hit = r.target?.kind === 'jump' && r.target.chain === ep.chain;
        out.push({ node: n.name, chain: name, index: i + 1, hit });
      });
    }
  }
  return out;
}

/** Pin kube-proxy's random choice to one endpoint: each statistic rule draws 0 (matches) or 2^31 − 1 (does not) */
function pinEndpoint(c: Cluster, t: ServiceTarget, pod: string): void {
  for (const d of endpointDraws(c, t, pod))
    c.stack.pins.set(`${d.node} nat ${d.chain} ${d.index}`, d.hit ? 0 : 0x7fffffff);
}

export interface WalkOptions {
  /** walk the whole exchange, not only the request and the first packet back */
  exchange?: boolean;
  /**
   * false: only the outcome is wanted (podwalk matrix): the traces keep no steps (the datapath
   * does not even make the hottest ones, as for the build's BGP traffic); the packets go through
   * the same code, and the dispositions, drops with their counters, and every state the walk
   * changes are the same
   */
  steps?: boolean;
}

export function walk(c: Cluster, req: WalkRequest, opts: WalkOptions = {}): Walk {
  const fc = flowCacheOf(c);
  return fc ? fc.walk(c, req, opts, walkUncached) : walkUncached(c, req, opts);
}

/** walk, the flow cache not asked */
function walkUncached(c: Cluster, req: WalkRequest, opts: WalkOptions): Walk {
  const src = endpointOf(c, req.from, 'source');
  const svc = resolveService(c, req.to, req.port, req.proto);
  if (req.endpoint !== undefined && !svc)
    throw new WalkError(
      `--endpoint needs a Service as the destination (svc/NAME, NAMESPACE/NAME, a ClusterIP or NODE:NODEPORT)`,
    );
  if (svc) req = { ...req, to: svc.ip, port: svc.port };
  const dst = endpointOf(c, req.to, 'destination');
  const pins = c.stack.pins;
  if (pins.size) pins.clear();
  if (svc && req.endpoint !== undefined) pinEndpoint(c, svc, req.endpoint);
  try {
    return walkFlow(c, req, src, dst, opts);
  } finally {
    if (pins.size) pins.clear();
  }
}

/** one packet of the walk as its own trace: `run` sends it, the datapath records it */
function record(c: Cluster, opts: WalkOptions, traces: Trace[], flow: Flow, run: () => void): Trace {
  const stack = c.stack;
  c.world.rec = new Recorder(c.world, opts.steps !== false, true);
  stack.terminals = [];
  run();
  // a packet parked on a resolving neighbour: let the neighbour timers run until it leaves or fails
  stack.settle();
  const t = freezeTrace(flow, dispositionOf(stack.terminals), c.world.rec.steps, c.world.rec.counters);
  traces.push(t);
  return t;
}

/** the source port the flow's socket is given: a hash of the flow within ip_local_port_range */
function ephemeralPort(c: Cluster, ns: Netns, src: string, dst: string, dport: number): number {
  const [lo, hi] = ns.sysctlInts('net.ipv4.ip_local_port_range', '32768\t60999');
  return lo + (c.world.derive('sport', src, dst, dport) % (hi - lo + 1));
}

function walkFlow(
  c: Cluster,
  req: WalkRequest,
  src: Readonly<Endpoint>,
  dst: Readonly<Endpoint>,
  opts: WalkOptions,
): Walk {
  const ns = c.world.ns(src.netns);
  const stack = c.stack;
  const proto = req.proto;
  const dport = req.port ?? (proto === 'icmp' ? undefined : 8080);
  if (proto !== 'icmp' && (dport === undefined || dport < 1 || dport > 65535))
    throw new WalkError(`port must be 1..65535`);
  const rr = stack.routeOutput(ns, dst.ip);
  const srcIp = rr && 'error' in rr ? dst.ip : (rr?.src ?? src.ip);
  const sport = req.sport ?? (proto === 'icmp' ? undefined : ephemeralPort(c, ns, srcIp, dst.ip, dport!));
  // ping's default (IP_PMTUDISC_WANT, iputils sets nothing): DF on what fits the path MTU
  const want = proto === 'icmp' && req.df === undefined;
  const pathMtu = rr && !('error' in rr) ? (rr.pmtu ?? rr.dev.mtu) : 65535;
  const df = proto === 'tcp' ? true : want ? (req.size ?? 84) <= pathMtu : !!req.df;

  const traces: Trace[] = [];

  const flow: Flow = {
    proto,
    from: src.netns,
    to: dst.netns || undefined,
    src: srcIp,
    dst: dst.ip,
    sport,
    dport,
    size: req.size,
    df,
    role: { kind: proto === 'tcp' ? 'syn' : proto === 'udp' ? 'udp-datagram' : 'echo-request' },
  };
  const request = record(c, opts, traces, flow, () => {
    // the route looked up above: nothing has changed since (same state, same clock)
    if (proto === 'tcp')
      c.sockets.connect(ns, dst.ip, dport!, sport!, requestBytes(dst.ip, dport!, req.size), { route: rr });
    else if (proto === 'udp')
      c.sockets.sendUdp(ns, dst.ip, sport!, dport!, payload(req.size !== undefined ? req.size - 28 : 32), df);
    else
      c.sockets.sendEcho(
        ns,
        dst.ip,
        c.world.derive('icmp-id', src.netns) & 0xffff,
        1,
        payload(req.size !== undefined ? req.size - 28 : 56),
        df,
      );
  });

  let reply: Trace | undefined;
  let sent = 1;
  while (stack.queue.length && sent < MAX_PACKETS) {
    const item = stack.queue.shift()!;
    if (reply && !opts.exchange) break;
    c.world.tick(GAP_US);
    const p = item.pkt;
    const l4 = p.payload;
    const f: Flow = {
      proto: l4.kind === 'tcp' ? 'tcp' : l4.kind === 'udp' ? 'udp' : 'icmp',
      from: item.ns,
      src: p.ip.src,
      dst: p.ip.dst,
      sport: l4.kind === 'tcp' ? l4.tcp.srcPort : l4.kind === 'udp' ? l4.udp.srcPort : undefined,
      dport: l4.kind === 'tcp' ? l4.tcp.dstPort : l4.kind === 'udp' ? l4.udp.dstPort : undefined,
      df: p.ip.df,
      role: item.role,
    };
    const t = record(c, opts, traces, f, () => {
      c.world.rec.add({
        kind: 'socket',
        layer: p.payload.kind === 'icmp' ? 3 : 4,
        netns: item.ns,
        action: 'send',
        ev: { type: 'send', role: item.role, pkt: p },
      });
      c.sockets.send(c.world.ns(item.ns), p, item.role, { ct: item.ct });
    });
    sent++;
    if (!reply) reply = t;
  }
  if (!opts.exchange) stack.queue.clear();
  return { request, reply, traces };
}

/** the reply the protocol expects: TCP answers, ICMP echo answers, a UDP echo listener answers */
function expectsReply(w: Walk): boolean {
  return w.request.disposition.kind === 'delivered';
}

/** the request was delivered and answered the way the flow wanted */
export function walkOk(w: Walk): boolean {
  // it left the collected nodes: as far as the dumps go, nothing failed
  if (w.request.disposition.kind === 'outside') return true;
  if (w.request.disposition.kind !== 'delivered') return false;
  if (!expectsReply(w)) return true;
  return (
    !!w.reply &&
    w.reply.disposition.kind === 'delivered' &&
    // an ICMP error or a RST is an answer, but not the one the flow wanted
    w.reply.flow.role.kind !== 'icmp-error' &&
    w.reply.flow.role.kind !== 'rst'
  );
}
