/**
 * `--json`: a Trace as plain data, and the published schema of that data (docs/trace.schema.json
 * is generated from the zod schemas here by `npm run schema`, and a test keeps the two equal).
 *
 * Each step carries its typed event record (`ev`), plus the text the renderers make of it
 * (`detail`, `table`, `entry`) for readers who want the sentence. Packets held in events are
 * their bytes in hex; frames are in the step's `frame` (hex) and `headers`. Routes carry their
 * destination as a dotted address, rules their iptables-save form.
 */
import { z } from 'zod';
import type { StepEvent } from '../kernel/events.ts';
import { DROP_REASONS } from '../kernel/events.ts';
import { ROUTE_PROTOS, type Route } from '../kernel/fib.ts';
import { formatRuleSpec } from '../kernel/netfilter.ts';
import type { NfDecision } from '../kernel/events.ts';
import type { Trace } from '../trace/types.ts';
import { intToIp4 } from '../wire/addr.ts';
import { emitIpv4Packet } from '../wire/packet.ts';
import { headerLayers } from './headers.ts';
import { dropText, roleLabel, stepDetail, stepEntry, stepTable } from './step.ts';

/* ------------------------------------------------------------ schemas */

const ip = z.string().describe('dotted IPv4 address');
const mac = z.string().describe('MAC address, lower-case hex with colons');
const hexBytes = z
  .string()
  .regex(/^([0-9a-f]{2})*$/)
  .describe('bytes as lower-case hex');

const RouteJson = z.strictObject({
  dst: ip.describe('network address'),
  len: z.number().int().min(0).max(32),
  type: z.enum(['unicast', 'blackhole', 'unreachable', 'prohibit']),
  via: ip.optional(),
  dev: z.string().optional(),
  proto: z.enum(ROUTE_PROTOS),
  scope: z.enum(['global', 'link', 'host']),
  src: ip.optional(),
  metric: z.number().int(),
  onlink: z.boolean(),
});

const NudState = z.enum([
  'INCOMPLETE',
  'REACHABLE',
  'STALE',
  'DELAY',
  'PROBE',
  'FAILED',
  'PERMANENT',
  'NOARP',
]);
const NeighJson = z.strictObject({
  ip,
  dev: z.string(),
  lladdr: mac.optional(),
  state: NudState,
  router: z.boolean(),
  updated: z.number().describe('simulated µs of the last state change'),
});

const TcpCtState = z.enum([
  'NONE',
  'SYN_SENT',
  'SYN_RECV',
  'ESTABLISHED',
  'FIN_WAIT',
  'CLOSE_WAIT',
  'LAST_ACK',
  'TIME_WAIT',
  'CLOSE',
  'SYN_SENT2',
]);
const CtState = z.enum(['INVALID', 'NEW', 'RELATED', 'ESTABLISHED', 'UNTRACKED', 'SNAT', 'DNAT']);
const TupleJson = z.strictObject({
  proto: z.number().int(),
  src: ip,
  dst: ip,
  sport: z.number().int(),
  dport: z.number().int(),
  icmpType: z.number().int().optional(),
  icmpCode: z.number().int().optional(),
  icmpId: z.number().int().optional(),
});

const NfDecisionFields = {
  table: z.string(),
  hook: z.string(),
  verdict: z.enum(['ACCEPT', 'DROP', 'REJECT']),
  path: z.array(z.strictObject({ chain: z.string(), index: z.number().int() })),
  rule: z
    .strictObject({
      chain: z.string(),
      index: z.number().int(),
      spec: z.string().describe('iptables-save form'),
    })
    .optional(),
  policy: z.strictObject({ chain: z.string(), policy: z.enum(['ACCEPT', 'DROP']) }).optional(),
  rejectWith: z.string().optional(),
  nat: z.enum(['DNAT', 'SNAT', 'MASQUERADE']).optional().describe("the deciding rule's NAT target"),
};

const PacketRoleJson = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.enum([
      'syn',
      'syn-ack',
      'ack',
      'dup-ack',
      'fin',
      'rst',
      'request',
      'response',
      'retransmission',
      'udp-datagram',
      'udp-reply',
      'echo-request',
      'echo-reply',
    ]),
  }),
  z.strictObject({
    kind: z.literal('icmp-error'),
    type: z.number().int(),
    code: z.number().int(),
    mtu: z.number().int().optional(),
    rejectWith: z.string().optional(),
  }),
]);

const SendCall = z.union([z.enum(['connect()', 'sendto()', 'ping']), PacketRoleJson]);

const CounterJson = z.strictObject({
  netns: z.string(),
  name: z.string(),
  device: z.string().optional(),
  table: z.string().optional(),
});

const dropBase = { netns: z.string(), device: z.string().optional(), counters: z.array(CounterJson) };
const DropJson = z.discriminatedUnion('reason', [
  z.strictObject({
    ...dropBase,
    reason: z.literal('no-route'),
    site: z.enum(['ip_route_output', 'ip_route_input_slow', 'iptunnel_xmit', 'ipip_tunnel_xmit']),
    dst: z.string(),
    call: SendCall.optional(),
    tunnel: z.boolean().optional(),
    afterNat: z.boolean().optional(),
    ipip: z.enum(['no-gateway', 'frame']).optional(),
    route: RouteJson.optional().describe('the blackhole, unreachable or prohibit route that matched'),
  }),
  z.strictObject({
    ...dropBase,
    reason: z.literal('neighbour-failed'),
    site: z.literal('neigh_resolve_output'),
    nexthop: ip,
    probes: z.number().int(),
    queued: z.boolean().optional(),
  }),
  z.strictObject({ ...dropBase, reason: z.literal('vxlan-fdb-miss'), site: z.literal('vxlan_xmit'), mac }),
  z.strictObject({
    ...dropBase,
    reason: z.literal('link-down'),
    site: z.enum(['ip_finish_output2', 'dev_queue_xmit', 'br_handle_frame', 'br_forward', 'vxlan_rcv']),
    noCarrier: z.boolean().optional(),
    bridge: z.enum(['bridge', 'port']).optional(),
  }),
  z.strictObject({
    ...dropBase,
    reason: z.literal('filtered'),
    site: z.literal('nf_hook_slow'),
    masqueradeFailed: z.boolean().optional(),
    ...NfDecisionFields,
  }),
  z.strictObject({
    ...dropBase,
    reason: z.literal('mtu-exceeded'),
    site: z.enum(['ip_append_data', 'ip_finish_output', 'ip_forward', 'veth_xmit', 'br_dev_queue_push_xmit']),
    len: z.number().int(),
    mtu: z.number().int(),
    call: SendCall.optional(),
  }),
  z.strictObject({
    ...dropBase,
    reason: z.literal('ttl-exceeded'),
    site: z.enum(['ip_rcv', 'ip_forward']),
    ttl: z.number().int(),
  }),
  z.strictObject({
    ...dropBase,
    reason: z.literal('forwarding-disabled'),
    site: z.literal('ip_route_input_slow'),
    dst: ip,
  }),
  z.strictObject({
    ...dropBase,
    reason: z.literal('rp-filter'),
    site: z.literal('fib_validate_source'),
    mode: z.number().int(),
    src: ip,
  }),
  z.strictObject({
    ...dropBase,
    reason: z.literal('port-unreachable'),
    site: z.enum(['udp_rcv', 'ip_local_deliver', 'vxlan_rcv']),
    port: z.number().int().optional(),
    src: ip.optional(),
    ipip: z.boolean().optional(),
    vni: z.strictObject({ got: z.number().int(), dev: z.number().int() }).optional(),
  }),
  z.strictObject({
    ...dropBase,
    reason: z.literal('reset'),
    site: z.literal('tcp_v4_rcv'),
    port: z.number().int(),
    listener: z.boolean(),
    src: ip,
  }),
  z.strictObject({
    ...dropBase,
    reason: z.literal('not-for-host'),
    site: z.enum(['ip_rcv', 'br_forward']),
    mac,
    devMac: mac.optional(),
    port: z.string().optional(),
  }),
]);

const TcpFlagsJson = z.strictObject({
  fin: z.boolean().optional(),
  syn: z.boolean().optional(),
  rst: z.boolean().optional(),
  psh: z.boolean().optional(),
  ack: z.boolean().optional(),
  urg: z.boolean().optional(),
  ece: z.boolean().optional(),
  cwr: z.boolean().optional(),
});

const DeliveryJson = z.discriminatedUnion('what', [
  z.strictObject({ what: z.literal('local') }),
  z.strictObject({
    what: z.literal('udp'),
    port: z.number().int(),
    bytes: z.number().int(),
    client: z.boolean(),
  }),
  z.strictObject({ what: z.literal('echo-request'), id: z.number().int(), seq: z.number().int() }),
  z.strictObject({
    what: z.literal('icmp'),
    type: z.number().int(),
    code: z.number().int(),
    id: z.number().int(),
    seq: z.number().int(),
    mtu: z.number().int().optional(),
  }),
  z.strictObject({
    what: z.literal('pmtu'),
    mtu: z.number().int(),
    already: z.number().int().optional(),
    sport: z.number().int().optional(),
    dst: ip.optional(),
    dport: z.number().int().optional(),
    before: z.number().int().optional(),
    after: z.number().int().optional(),
    resent: z.number().int().optional(),
  }),
  z.strictObject({ what: z.literal('proto'), proto: z.number().int() }),
  z.strictObject({
    what: z.literal('tcp'),
    port: z.number().int(),
    seg: z.strictObject({
      flags: TcpFlagsJson,
      seq: z.number().int(),
      ack: z.number().int().optional(),
      len: z.number().int(),
    }),
    event: z.enum([
      'rst-no-conn',
      'rst-reset',
      'abort-on-data',
      'established',
      'out-of-order',
      'duplicate',
      'data',
      'syn',
    ]),
    role: z.enum(['client', 'server']).optional(),
    from: z.string().optional(),
    to: z.string().optional(),
    expected: z.number().int().optional(),
    mss: z.number().int().optional(),
  }),
]);

const IcmpErrorKind = z.enum([
  'net-unreachable',
  'host-unreachable',
  'protocol-unreachable',
  'port-unreachable',
  'fragmentation-needed',
  'time-exceeded',
  'admin-prohibited',
  'reject',
]);

const ev = <T extends string, S extends z.ZodRawShape>(type: T, shape: S) =>
  z.strictObject({ type: z.literal(type), ...shape });
const FdbState = z.enum(['local', 'static', 'dynamic']);

/** one schema per event type: a StepEvent type without one does not compile */
const EVENTS = {
  route: ev('route', { dst: ip, route: RouteJson, dev: z.string(), src: ip, outer: z.boolean().optional() }),
  'route-local': ev('route-local', { dst: ip, dev: z.string(), via: z.enum(['input', 'output']) }),
  'route-miss': ev('route-miss', {
    dst: ip,
    outer: z.boolean().optional(),
    oif: z.string().optional(),
    input: z.boolean().optional(),
    route: RouteJson.optional().describe(
      'the best match, a route that sends nothing (blackhole, unreachable, prohibit)',
    ),
  }),
  'rp-filter': ev('rp-filter', { src: ip, back: RouteJson.optional(), iif: z.string() }),
  forward: ev('forward', { pkt: hexBytes, iif: z.string(), oif: z.string(), ttl: z.number().int() }),
  mtu: ev('mtu', {
    len: z.number().int(),
    mtu: z.number().int(),
    dev: z.string(),
    site: z.enum(['ip_append_data', 'ip_finish_output', 'ip_forward']),
  }),
  fragment: ev('fragment', {
    len: z.number().int(),
    mtu: z.number().int(),
    dev: z.string(),
    sizes: z.array(z.number().int()),
  }),
  refragment: ev('refragment', {
    bridge: z.string(),
    len: z.number().int(),
    port: z.string(),
    count: z.number().int(),
  }),
  'defrag-hold': ev('defrag-hold', { offset: z.number().int(), id: z.number().int() }),
  defrag: ev('defrag', { count: z.number().int(), id: z.number().int(), len: z.number().int() }),
  neigh: ev('neigh', {
    result: z.enum(['hit', 'miss', 'resolved', 'queued']),
    nexthop: ip,
    entry: NeighJson.optional().describe('absent on a miss with no entry at all'),
    qlen: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe("queued: the packets in the entry's queue (arp_queue), this one included"),
  }),
  'arp-request': ev('arp-request', {
    target: ip,
    sender: ip,
    unicast: mac.optional().describe("a PROBE-state probe: sent to the entry's known address"),
  }),
  'arp-ignore': ev('arp-ignore', { target: ip }),
  'arp-reply': ev('arp-reply', { target: ip, mac, to: ip }),
  'arp-proxy-reply': ev('arp-proxy-reply', {
    target: ip,
    mac,
    to: ip,
    route: RouteJson.describe(
      "the input route to the target: it leaves by another device than the request's",
    ),
    proxyDelay: z.number().int().describe('neigh.DEV.proxy_delay (USER_HZ)'),
  }).describe('answered by proxy ARP (arp_process → arp_fwd_proxy) with the receiving device’s MAC'),
  'arp-learn': ev('arp-learn', { ip, mac, entry: NeighJson }),
  'arp-locked': ev('arp-locked', { ip, mac, entry: NeighJson }).describe(
    "a reply with another address within locktime of the entry's last change: ignored (the first reply wins)",
  ),
  outside: ev('outside', { from: z.strictObject({ netns: z.string(), device: z.string() }) }).describe(
    'the frame left the collected namespaces (an imported cluster): not known beyond',
  ),
  xmit: ev('xmit', {}).describe("the frame is the step's frame"),
  'xmit-ip': ev('xmit-ip', {}).describe("an IP packet on an L3 device (tunl0): the step's frame"),
  rx: ev('rx', {}),
  'rx-ip': ev('rx-ip', {}),
  'fdb-learn': ev('fdb-learn', { bridge: z.string(), mac, port: z.string() }),
  'bridged-dnat': ev('bridged-dnat', { bridge: z.string(), dst: z.string(), port: z.string() }),
  'fdb-flood': ev('fdb-flood', {
    bridge: z.string(),
    ports: z.array(z.string()),
    broadcast: z.boolean(),
    mac,
    toHost: z.boolean(),
  }),
  'fdb-local': ev('fdb-local', { bridge: z.string(), mac, port: z.string(), state: FdbState }),
  'fdb-forward': ev('fdb-forward', { bridge: z.string(), mac, port: z.string(), state: FdbState }),
  'vxlan-fdb-miss': ev('vxlan-fdb-miss', { mac }),
  'encap-vxlan': ev('encap-vxlan', {
    vni: z.number().int(),
    sport: z.number().int(),
    dport: z.number().int(),
    local: ip,
    remote: ip,
    fdb: z.strictObject({ mac, dst: ip, permanent: z.boolean() }),
  }),
  'encap-ipip': ev('encap-ipip', { local: ip, remote: ip, route: RouteJson }),
  'decap-vxlan': ev('decap-vxlan', {
    outerSrc: ip,
    outerDst: ip,
    dport: z.number().int(),
    vni: z.number().int(),
    innerSrc: mac,
    innerDst: mac,
  }),
  'decap-ipip': ev('decap-ipip', { outerSrc: ip, outerDst: ip, inner: hexBytes }),
  netfilter: ev('netfilter', { decision: z.strictObject(NfDecisionFields) }),
  conntrack: ev('conntrack', {
    ctstate: CtState,
    dir: z.enum(['original', 'reply']),
    isNew: z.boolean(),
    invalid: z.boolean(),
    related: z.boolean().optional(),
    from: TcpCtState.optional(),
    to: TcpCtState.optional(),
    orig: TupleJson,
  }),
  'nat-setup': ev('nat-setup', {
    hook: z.string(),
    manip: z.enum(['src', 'dst']),
    before: TupleJson,
    after: TupleJson,
    byRule: z.boolean(),
    orig: TupleJson,
    reply: TupleJson,
  }),
  'nat-rewrite': ev('nat-rewrite', {
    hook: z.string(),
    manip: z.enum(['src', 'dst']),
    before: TupleJson,
    after: TupleJson,
    icmpError: z.boolean(),
  }),
  'masquerade-failed': ev('masquerade-failed', { hook: z.string() }),
  'icmp-send': ev('icmp-send', {
    to: ip,
    icmp: IcmpErrorKind,
    rejectWith: z.string().optional(),
    mtu: z.number().int().optional(),
  }),
  'icmp-unsent': ev('icmp-unsent', { to: ip, icmp: IcmpErrorKind, rejectWith: z.string().optional() }),
  'icmp-ratelimited': ev('icmp-ratelimited', {
    to: ip,
    icmp: IcmpErrorKind,
    limit: z
      .enum(['host', 'global', 'route'])
      .describe(
        "per destination (IcmpOutRateLimitHost), netns-wide (IcmpOutRateLimitGlobal), or ip_error's draw on the destination's tokens",
      ),
  }),
  connect: ev('connect', {
    src: ip,
    sport: z.number().int(),
    dst: ip,
    dport: z.number().int(),
    mss: z.number().int(),
    mtu: z.number().int(),
    wscale: z.number().int(),
  }),
  sendto: ev('sendto', {
    bytes: z.number().int(),
    dst: ip,
    dport: z.number().int(),
    sport: z.number().int(),
    df: z.boolean(),
  }),
  ping: ev('ping', {
    dst: ip,
    id: z.number().int(),
    seq: z.number().int(),
    bytes: z.number().int(),
    df: z.boolean(),
  }),
  send: ev('send', { role: PacketRoleJson, pkt: hexBytes }),
  deliver: ev('deliver', { to: z.string(), delivery: DeliveryJson }),
  drop: ev('drop', { drop: DropJson }),
} satisfies { [K in StepEvent['type']]: z.ZodType };

const EventJson = z.discriminatedUnion(
  'type',
  Object.values(EVENTS) as unknown as [(typeof EVENTS)['route'], ...(typeof EVENTS)[keyof typeof EVENTS][]],
);

const HeaderLayerJson = z.strictObject({
  name: z.string(),
  depth: z.number().int(),
  bytes: z.number().int(),
  fields: z.string(),
});

const StepJson = z.strictObject({
  n: z.number().int().min(1),
  time: z.number().describe('simulated µs since the cluster came up'),
  netns: z.string(),
  device: z.string().optional(),
  layer: z.union([z.literal(2), z.literal(3), z.literal(4), z.literal(7)]),
  kind: z.enum([
    'socket',
    'route',
    'neigh',
    'arp',
    'netfilter',
    'conntrack',
    'xmit',
    'rx',
    'bridge',
    'encap',
    'decap',
    'mtu',
    'fragment',
    'defrag',
    'forward',
    'deliver',
    'drop',
    'icmp',
    'outside',
  ]),
  action: z.string().describe('a short verb token: lookup, tx, rx, forward, flood, drop…'),
  aux: z.string().optional().describe('a side exchange the walk triggered, e.g. arp'),
  part: z.string().optional().describe('a fragment: "frag 1/2"'),
  ev: EventJson,
  detail: z.string().describe('the sentence the steps format prints'),
  table: z.string().optional(),
  entry: z.string().optional().describe('the deciding entry, as the real tool prints it'),
  frame: hexBytes.optional(),
  headers: z.array(HeaderLayerJson).optional(),
});

export const TraceJsonSchema = z.strictObject({
  flow: z.strictObject({
    proto: z.enum(['tcp', 'udp', 'icmp']),
    from: z.string(),
    to: z.string().optional(),
    src: ip,
    dst: ip,
    sport: z.number().int().optional(),
    dport: z.number().int().optional(),
    size: z.number().int().optional(),
    df: z.boolean(),
    role: PacketRoleJson,
    label: z.string(),
  }),
  disposition: z.discriminatedUnion('kind', [
    z.strictObject({ kind: z.literal('delivered'), netns: z.string(), device: z.string(), to: z.string() }),
    z.strictObject({
      kind: z.literal('dropped'),
      reason: z.enum(DROP_REASONS),
      netns: z.string(),
      device: z.string().optional(),
      drop: DropJson,
      detail: z.string(),
    }),
    z
      .strictObject({ kind: z.literal('outside'), netns: z.string(), device: z.string() })
      .describe('it left the collected namespaces of an imported cluster through netns/device'),
    z.strictObject({ kind: z.literal('pending') }),
  ]),
  counters: z.array(CounterJson),
  hops: z.array(z.strictObject({ netns: z.string(), steps: z.array(StepJson) })),
});

export type TraceJson = z.infer<typeof TraceJsonSchema>;
type EventJsonT = z.infer<typeof EventJson>;

/** the JSON Schema (draft 2020-12) of one trace, as published in docs/trace.schema.json */
export function traceJsonSchema(): unknown {
  return {
    ...z.toJSONSchema(TraceJsonSchema, { target: 'draft-2020-12', reused: 'ref' }),
    title: 'podwalk trace',
    description:
      'One packet walked through the modelled datapath (podwalk trace --json prints these under "traces"). Generated from src/render/json.ts.',
  };
}

/* ------------------------------------------------------------ conversion */

function hex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

/** the route as configured; its FIB exceptions (the PMTU cache) change over time and are not part of a step */
function routeJson(r: Route): z.infer<typeof RouteJson> {
  const { exceptions: _, ...route } = r;
  return { ...route, dst: intToIp4(r.dst) };
}

type DecisionJson = z.infer<z.ZodObject<typeof NfDecisionFields>>;

/** `rule` is always set (maybe undefined), so that spreading it over a Drop replaces the Drop's rule */
function decisionJson(d: NfDecision): DecisionJson & { rule: DecisionJson['rule'] } {
  return {
    ...d,
    path: d.path.map((p) => ({ ...p })),
    rule: d.rule && { chain: d.rule.chain, index: d.rule.index, spec: formatRuleSpec(d.rule.rule) },
  };
}

/** an event as JSON: the compiler checks each case against the schema's type */
function jsonEvent(e: StepEvent): EventJsonT {
  switch (e.type) {
    case 'route':
      return { ...e, route: routeJson(e.route) };
    case 'rp-filter':
      return { ...e, back: e.back && routeJson(e.back) };
    case 'encap-ipip':
      return { ...e, route: routeJson(e.route) };
    case 'arp-proxy-reply':
      return { ...e, route: routeJson(e.route) };
    case 'route-miss': {
      const { route, ...rest } = e;
      return route ? { ...rest, route: routeJson(route) } : rest;
    }
    case 'forward':
    case 'send':
      return { ...e, pkt: hex(emitIpv4Packet(e.pkt)) };
    case 'decap-ipip':
      return { ...e, inner: hex(emitIpv4Packet(e.inner)) };
    case 'xmit':
    case 'rx':
      return { type: e.type };
    case 'xmit-ip':
    case 'rx-ip':
      return { type: e.type };
    case 'netfilter':
      return { type: 'netfilter', decision: decisionJson(e.decision) };
    case 'drop': {
      const d = e.drop;
      const counters = [...d.counters];
      if (d.reason === 'filtered') return { type: 'drop', drop: { ...d, ...decisionJson(d), counters } };
      if (d.reason === 'no-route') {
        const { route, ...rest } = d;
        return { type: 'drop', drop: { ...rest, ...(route ? { route: routeJson(route) } : {}), counters } };
      }
      return { type: 'drop', drop: { ...d, counters } };
    }
    default:
      return e;
  }
}

/** a trace as plain data (the shape TraceJsonSchema describes) */
export function traceToJson(t: Trace): TraceJson {
  const d = t.disposition;
  return {
    flow: { ...t.flow, label: roleLabel(t.flow.role) },
    disposition:
      d.kind === 'dropped'
        ? {
            ...d,
            drop: (jsonEvent({ type: 'drop', drop: d.drop }) as { drop: z.infer<typeof DropJson> }).drop,
            detail: dropText(d.drop),
          }
        : d,
    counters: t.counters.map((c) => ({ ...c })),
    hops: t.hops.map((h) => ({
      netns: h.netns,
      steps: h.steps.map((s) => ({
        n: s.n,
        time: s.time,
        netns: s.netns,
        device: s.device,
        layer: s.layer,
        kind: s.kind,
        action: s.action,
        aux: s.aux,
        part: s.part,
        ev: jsonEvent(s.ev),
        detail: stepDetail(s),
        table: stepTable(s),
        entry: stepEntry(s),
        frame: s.frame ? hex(s.frame) : undefined,
        headers: s.frame ? headerLayers(s.frame) : undefined,
      })),
    })),
  };
}
