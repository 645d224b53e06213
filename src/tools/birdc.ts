/**
 * `birdc` on a node of a Calico mode: BIRD 2.0.12's answers (Debian bird2, what the lab runs) about
 * the BIRD the model's node runs with Calico's configuration (src/lab/bird.ts): `show protocols
 * [NAME]` and `show route [all] [protocol NAME]`, in the formats of nest/proto.c (proto_cmd_show) and
 * nest/rt-show.c (rt_show_rte, bgp_get_route_info), checked against the real birdc of a lab
 * (test/lab-bird.test.ts live, test/birdc.test.ts on its recording; `all` by test/lab-ebgp.test.ts). Not emulated: `for`,
 * `show status`, anything but show; a protocol name the node has not is bad input here.
 *
 * BIRD's table is rebuilt from the model: the static protocol's blackholes (the node's IPAM blocks),
 * the direct protocol's subnets (`interface -"cali*", -"kube-ipvs*", "*"`), the kernel protocol's
 * alien routes (`learn`) and the mesh sessions' routes. `show route` lists the networks in the order
 * BIRD's FIB keeps them: nest/rt-fib.c hashes a network to net_hash_ip4 (ip4_hash(prefix) ^ pxlen << 26,
 * ip4_hash = the address × 2902958171, lib/bitops.h), the bucket is the hash's top bits, and
 * FIB_INSERT keeps each chain sorted by the hash: walking the buckets in order lists the networks by
 * ascending hash, whatever the table's size.
 */
import type { BirdError } from '../bgp/fsm.ts';
import { nextHopRoute } from '../bgp/krt.ts';
import type { BgpSession, BgpSpeaker } from '../bgp/mesh.ts';
import type { Cluster, ResolvedNode } from '../cni/build.ts';
import { bgpOriginates } from '../cni/modes.ts';
import { ERRNO, strerror, type Errno } from '../kernel/errno.ts';
import { routePrefix } from '../kernel/fib.ts';
import { carrierOk } from '../kernel/links.ts';
import { cidrText, ip4ToInt, networkOf } from '../wire/addr.ts';
import type { BgpAttr } from '../wire/bgp.ts';
import { EPOCH_US, type Tool, type ToolResult } from './types.ts';

export const BIRD_VERSION = '2.0.12';

/** one row of `show protocols` */
export interface BirdProtocol {
  name: string;
  proto: 'Static' | 'Kernel' | 'Device' | 'Direct' | 'BGP';
  table: string;
  /** proto_state_name: up, start, down… */
  state: string;
  /** µs on the model's clock of its last state change */
  since: number;
  /** get_status: BGP's state (padded to 14) and last error */
  info: string;
  /** the peer of a BGP protocol */
  peer?: { node: string; ip: string };
}

/** one route of BIRD's table */
interface BirdRoute {
  prefix: string;
  proto: string;
  pref: number;
  dest: 'unicast' | 'blackhole' | 'unreachable';
  via?: string;
  dev?: string;
  /** the BGP neighbour, printed as `from` when it is not the gateway */
  from?: string;
  bgp: boolean;
  /**
   * the IGP metric of a recursive next hop: a route learned from the kernel (rt_get_igp_metric:
   * IGP_METRIC_UNKNOWN, printed `/?`); none for a next hop on a direct subnet
   */
  igpUnknown?: boolean;
  since: number;
  /** a BGP route's origin AS (none: our own AS) and ORIGIN */
  originAs?: number;
  origin?: string;
  /** `show route all`: its attribute lines (Type: …, BGP.…, Kernel.…) */
  all: string[];
}

/**
 * The node's IPAM blocks, its static protocol's blackholes: what it originates (bgpOriginates),
 * except a prefix that is already one of its connected subnets (the cni0 layout's pod CIDR on a
 * bridge: host-local IPAM, no Calico block; BIRD's direct protocol carries it instead).
 */
export function birdBlocks(c: Cluster, node: ResolvedNode): string[] {
  const connected = new Set(
    c.world
      .ns(node.name)
      .fib.list()
      .filter((r) => r.proto === 'kernel' && r.scope === 'link')
      .map((r) => routePrefix(r)),
  );
  return bgpOriginates(c, node).filter((b) => !connected.has(b));
}

/** BIRD's descriptions of the NOTIFICATION codes it names (proto/bgp/packets.c, bgp_msg_table) */
const BGP_MSG: Record<string, string> = {
  '1.0': 'Invalid message header',
  '1.1': 'Connection not synchronized',
  '1.2': 'Bad message length',
  '1.3': 'Bad message type',
  '2.0': 'Invalid OPEN message',
  '2.1': 'Unsupported version number',
  '2.2': 'Bad peer AS',
  '2.3': 'Bad BGP identifier',
  '2.4': 'Unsupported optional parameter',
  '2.5': 'Authentication failure',
  '2.6': 'Unacceptable hold time',
  '2.7': 'Required capability missing',
  '2.8': 'No supported AFI/SAFI',
  '2.11': 'Role mismatch',
  '3.0': 'Invalid UPDATE message',
  '3.1': 'Malformed attribute list',
  '3.2': 'Unrecognized well-known attribute',
  '3.3': 'Missing mandatory attribute',
  '3.4': 'Invalid attribute flags',
  '3.5': 'Invalid attribute length',
  '3.6': 'Invalid ORIGIN attribute',
  '3.7': 'AS routing loop',
  '3.8': 'Invalid NEXT_HOP attribute',
  '3.9': 'Optional attribute error',
  '3.10': 'Invalid network field',
  '3.11': 'Malformed AS_PATH',
  '4.0': 'Hold timer expired',
  '5.0': 'Finite state machine error',
  '5.1': 'Unexpected message in OpenSent state',
  '5.2': 'Unexpected message in OpenConfirm state',
  '5.3': 'Unexpected message in Established state',
  '6.0': 'Cease',
  '6.1': 'Maximum number of prefixes reached',
  '6.2': 'Administrative shutdown',
  '6.3': 'Peer de-configured',
  '6.4': 'Administrative reset',
  '6.5': 'Connection rejected',
  '6.6': 'Other configuration change',
  '6.7': 'Connection collision resolution',
  '6.8': 'Out of Resources',
  '7.0': 'Invalid ROUTE-REFRESH message',
  '7.1': 'Invalid ROUTE-REFRESH message length',
};

/** bgp_last_errmsg after its class's prefix (bgp_err_classes); '' for none */
function birdErrorText(e: BirdError | undefined): string {
  if (!e) return '';
  if (e.class === 'Socket')
    return `Socket: ${!e.errno ? 'Connection closed' : e.errno in ERRNO ? strerror(e.errno as Errno) : e.errno}`;
  return `${e.class}: ${BGP_MSG[`${e.code}.${e.subcode}`] ?? `Unknown error ${e.code}.${e.subcode}`}`;
}

/**
 * bgp_get_status for a session in the model's state, on `me`. A session one side disabled (as the
 * lab's birdc printed it): that side is down with no info; the other waits if its peering is
 * passive (the mesh's higher address), else it connects and the peer's kernel answers: while the
 * peer's BIRD has any BGP protocol not disabled, it has its listening socket (one for all its
 * protocols, bgp_open/bgp_close) and drops the connection of the disabled one ("Connection reset
 * by peer", the mesh lab); once every one is disabled, no socket listens on port 179 and the
 * kernel refuses the SYN ("Connection refused", the route-reflector lab)
 */
function bgpInfo(
  c: Cluster,
  s: BgpSession,
  me: BgpSpeaker,
  peer: BgpSpeaker,
  passive: boolean,
): { state: string; info: string } {
  const pad = (st: string) => st.padEnd(14);
  if (s.disabledBy?.includes(me.node)) return { state: 'down', info: '' };
  const side = c.bgp?.session(me.node, peer.ip);
  if (s.disabledBy?.length) {
    if (passive) return { state: 'start', info: pad('Passive') + birdErrorText(side?.peer.birdError) };
    const listens = c.mesh!.peersOf(peer.node).some((x) => !x.session.disabledBy?.includes(peer.node));
    return {
      state: 'start',
      info: pad('Active') + (listens ? 'Socket: Connection reset by peer' : 'Socket: Connection refused'),
    };
  }
  // then BIRD's last error (bgp_get_status): a NOTIFICATION sent or received, the connection that
  // closed (the peer's BIRD killed), the last connect()'s error (refused: no BIRD listening there;
  // unreachable: no route to the peer). A mesh with no BIRD driving it, or a session the cluster
  // file holds down (no connection ever tried in the model): the connecting side's connect() refused
  const err = side ? birdErrorText(side.peer.birdError) : '';
  switch (s.sides?.[me.node] ?? s.state) {
    case 'Established':
      return { state: 'up', info: pad('Established') };
    case 'OpenSent':
      return { state: 'start', info: pad('OpenSent') + err };
    case 'OpenConfirm':
      return { state: 'start', info: pad('OpenConfirm') + err };
    case 'Active':
      // bgp_state_dsc: a passive protocol with no connection is "Passive"
      return {
        state: 'start',
        info:
          pad(passive ? 'Passive' : 'Active') +
          ((side && !side.disabled) || passive ? err : 'Socket: Connection refused'),
      };
    case 'Connect':
      return { state: 'start', info: pad('Connect') + err };
    case 'Idle':
      return { state: 'start', info: pad('Idle') + err };
  }
}

/** The protocols of a node's BIRD in the order its configuration creates them (bird_aggr.cfg first). */
export function birdProtocols(c: Cluster, node: ResolvedNode): BirdProtocol[] {
  const out: BirdProtocol[] = [
    { name: 'static1', proto: 'Static', table: 'master4', state: 'up', since: 0, info: '' },
    { name: 'kernel1', proto: 'Kernel', table: 'master4', state: 'up', since: 0, info: '' },
    { name: 'device1', proto: 'Device', table: '---', state: 'up', since: 0, info: '' },
    { name: 'direct1', proto: 'Direct', table: '---', state: 'up', since: 0, info: '' },
  ];
  const me = c.mesh?.speakers.find((s) => s.node === node.name);
  for (const { peer, session, peering } of me ? c.mesh!.peersOf(node.name) : [])
    out.push({
      name: peering.proto,
      proto: 'BGP',
      table: '---',
      ...bgpInfo(c, session, me!, peer, !!peering.passive),
      // when this side's protocol last changed state (each BIRD has its own); the pair's without a driver
      since: c.bgp?.session(node.name, peer.ip)?.since ?? session.since,
      peer: { node: peer.node, ip: peer.ip },
    });
  return out;
}

/** BIRD's table on the node (every route of every protocol), the best of each network first */
function birdTable(c: Cluster, node: ResolvedNode): BirdRoute[] {
  const ns = c.world.ns(node.name);
  const routes: BirdRoute[] = [];
  for (const b of birdBlocks(c, node))
    routes.push({
      prefix: b,
      proto: 'static1',
      pref: 200,
      dest: 'blackhole',
      bgp: false,
      since: 0,
      all: ['Type: static univ'],
    });
  for (const l of ns.links.values()) {
    if (l.type === 'loopback' || /^(cali|kube-ipvs)/.test(l.name) || !carrierOk(l)) continue;
    for (const a of l.addrs) {
      if (a.scope === 'host') continue;
      routes.push({
        prefix: cidrText({ addr: networkOf({ addr: ip4ToInt(a.ip), len: a.len }), len: a.len }),
        proto: 'direct1',
        pref: 240,
        dest: 'unicast',
        dev: l.name,
        bgp: false,
        since: 0,
        all: ['Type: device univ'],
      });
    }
  }
  for (const r of ns.fib.list()) {
    if (r.proto === 'kernel' || r.proto === 'bird') continue;
    if (r.type !== 'unicast' && r.type !== 'blackhole') continue;
    routes.push({
      prefix: cidrText({ addr: r.dst, len: r.len }),
      proto: 'kernel1',
      pref: 10,
      dest: r.type,
      via: r.via,
      dev: r.dev,
      bgp: false,
      since: 0,
      // nl_parse_route: the protocol and priority always, the scope when it is not universe
      all: [
        'Type: inherit univ',
        `Kernel.source: ${RTPROT[r.proto] ?? r.proto}`,
        `Kernel.metric: ${r.metric}`,
        ...(r.scope !== 'global' ? [`Kernel.scope: ${RT_SCOPE[r.scope]}`] : []),
      ],
    });
  }
  const sub = c.spec.subnets.find((s) => s.name === node.subnet);
  const ips = new Map(c.mesh?.speakers.map((s) => [s.node, s.ip]));
  for (const r of c.mesh?.learned(node.name) ?? []) {
    // gateway recursive: a next hop off our subnets is reached through the subnet's router; one
    // nothing resolves (the node's eth0 down) leaves the route unreachable
    const reached = !!nextHopRoute(ns, r.nextHop);
    const via = r.direct ? r.nextHop : sub?.gateway;
    const session = c.mesh!.session(node.name, r.from)!;
    const neighbor = ips.get(r.from);
    routes.push({
      prefix: r.prefix,
      proto: r.proto,
      pref: 100,
      ...(reached ? { dest: 'unicast', via, dev: 'eth0', igpUnknown: !r.direct } : { dest: 'unreachable' }),
      from: neighbor,
      bgp: true,
      since: session.since,
      ...(r.originAs !== undefined ? { originAs: r.originAs } : {}),
      origin: r.origin,
      all: ['Type: BGP univ', ...bgpAttrLines(r.attrs ?? [])],
    });
  }
  // per network: the best (highest preference) first, the others after it in the order they came
  const byNet = new Map<string, BirdRoute[]>();
  for (const r of routes) {
    const list = byNet.get(r.prefix) ?? [];
    list.push(r);
    byNet.set(r.prefix, list);
  }
  const nets = [...byNet.keys()].sort((a, b) => fibHash(a) - fibHash(b));
  return nets.flatMap((n) => {
    const list = byNet.get(n)!;
    const best = list.reduce((x, y) => (y.pref > x.pref ? y : x));
    return [best, ...list.filter((r) => r !== best)];
  });
}

/** rtm_protocol and rtm_scope as numbers (linux/rtnetlink.h), as BIRD's kernel protocol keeps them */
const RTPROT: Record<string, number> = { kernel: 2, boot: 3, static: 4, bird: 12, dhcp: 16 };
const RT_SCOPE: Record<string, number> = { global: 0, site: 200, link: 253, host: 254, nowhere: 255 };

/**
 * A BGP route's attributes as `show route all` prints them (ea_show, by attribute code): ORIGIN,
 * AS_PATH (its ASNs, a set in braces), NEXT_HOP, MULTI_EXIT_DISC, LOCAL_PREF (100 when the
 * route came without one: bgp_decode_attrs sets it), ORIGINATOR_ID, CLUSTER_LIST
 */
function bgpAttrLines(attrs: readonly BgpAttr[]): string[] {
  const out: string[] = [];
  const find = <K extends BgpAttr['kind']>(k: K) =>
    attrs.find((a): a is Extract<BgpAttr, { kind: K }> => a.kind === k);
  const origin = find('origin');
  if (origin) out.push(`BGP.origin: ${{ igp: 'IGP', egp: 'EGP', incomplete: 'Incomplete' }[origin.origin]}`);
  const path = find('as-path');
  out.push(
    `BGP.as_path: ${(path?.segments ?? []).map((g) => (g.kind === 'set' ? `{${g.asns.join(' ')}}` : g.asns.join(' '))).join(' ')}`,
  );
  const nh = find('next-hop');
  if (nh) out.push(`BGP.next_hop: ${nh.nextHop}`);
  const med = find('med');
  if (med) out.push(`BGP.med: ${med.med}`);
  out.push(`BGP.local_pref: ${find('local-pref')?.localPref ?? 100}`);
  const oid = find('originator-id');
  if (oid) out.push(`BGP.originator_id: ${oid.originatorId}`);
  const cl = find('cluster-list');
  if (cl) out.push(`BGP.cluster_list: ${cl.clusterList.join(' ')}`);
  return out;
}

/** net_hash_ip4 (lib/net.h): ip4_hash(prefix) ^ pxlen << 26, ip4_hash(a) = a × 2902958171 (lib/bitops.h) */
export function fibHash(prefix: string): number {
  const [ip, len] = prefix.split('/');
  return ((Math.imul(ip4ToInt(ip), 2902958171 | 0) >>> 0) ^ ((Number(len) << 26) >>> 0)) >>> 0;
}

/**
 * tm_format_time with BIRD 2's default for protocols and routes (TM_ISO_SHORT_MS): "%T.%3f" within
 * 20 hours of now, else "%F"; local time, which is UTC here
 */
function birdTime(us: number, now: number): string {
  const d = new Date(Math.floor((EPOCH_US + us) / 1000));
  const iso = d.toISOString();
  return Math.abs(now - us) < 20 * 3600 * 1_000_000 ? iso.slice(11, 23) : iso.slice(0, 10);
}

const HEADER = `BIRD ${BIRD_VERSION} ready.\n`;

function showProtocols(c: Cluster, node: ResolvedNode, name: string | undefined): ToolResult {
  const now = c.world.now;
  const all = birdProtocols(c, node);
  const rows = name === undefined ? all : all.filter((p) => p.name === name);
  if (!rows.length)
    return {
      stdout: '',
      stderr: `podwalk: birdc: no protocol ${name} on ${node.name} (${all.map((p) => p.name).join(', ')})\n`,
      code: 2,
    };
  const f = (s: string, w: number) => s.padEnd(w);
  let out =
    HEADER +
    `${f('Name', 10)} ${f('Proto', 10)} ${f('Table', 10)} ${f('State', 6)} ${f('Since', 12)}  Info\n`;
  for (const p of rows)
    out += `${f(p.name, 10)} ${f(p.proto, 10)} ${f(p.table, 10)} ${f(p.state, 6)} ${f(birdTime(p.since, now), 12)}  ${p.info}\n`;
  return { stdout: out, stderr: '', code: 0 };
}

function showRoute(c: Cluster, node: ResolvedNode, proto: string | undefined, all = false): ToolResult {
  const now = c.world.now;
  let out = HEADER;
  let table = false;
  let last = '';
  for (const r of birdTable(c, node)) {
    if (proto !== undefined && r.proto !== proto) continue;
    if (!table) out += 'Table master4:\n';
    table = true;
    const first = r.prefix !== last;
    last = r.prefix;
    const from = r.from && r.from !== r.via ? ` from ${r.from}` : '';
    const primary = first ? ' *' : '';
    // bgp_get_route_info: preference, IGP metric, then the origin AS (the last of AS_PATH; none
    // when it is empty: our own AS's) and ORIGIN
    const info = r.bgp
      ? ` (${r.pref}${r.igpUnknown ? '/?' : ''}) [${r.originAs !== undefined ? `AS${r.originAs}` : ''}${r.origin ?? 'i'}]`
      : ` (${r.pref})`;
    out += `${(first ? r.prefix : '').padEnd(20)} ${r.dest} [${r.proto} ${birdTime(r.since, now)}${from}]${primary}${info}\n`;
    if (r.dest === 'unicast') out += r.via ? `\tvia ${r.via} on ${r.dev}\n` : `\tdev ${r.dev}\n`;
    if (all) for (const l of r.all) out += `\t${l}\n`;
  }
  return { stdout: out, stderr: '', code: 0 };
}

/** birdc's keywords, which it takes abbreviated to any unique prefix */
const WORDS: Record<string, readonly string[]> = {
  top: ['show'],
  show: ['protocols', 'route', 'status', 'interfaces', 'symbols', 'memory'],
  route: ['protocol', 'all', 'for', 'table', 'filter', 'where', 'primary', 'count'],
};

function keyword(word: string, level: string): string | undefined {
  const hits = WORDS[level].filter((k) => k.startsWith(word));
  return hits.length === 1 ? hits[0] : hits.find((k) => k === word);
}

const USAGE = `podwalk: birdc: emulated are \`show protocols [NAME]', \`show route [all] [protocol NAME]', \`disable NAME', \`down' and \`graceful restart'`;

/**
 * `birdc disable NAME` (proto_cmd_disable): the session goes down on both sides, and each BIRD
 * withdraws what it learned over it: the kernel protocol deletes those routes
 */
function disable(c: Cluster, node: ResolvedNode, name: string): ToolResult {
  const mesh = c.mesh!;
  const p = birdProtocols(c, node).find((x) => x.name === name);
  if (!p)
    return {
      stdout: '',
      stderr: `podwalk: birdc: no protocol ${name} on ${node.name}\n`,
      code: 2,
    };
  if (!p.peer)
    return {
      stdout: '',
      stderr: `podwalk: birdc: disabling ${name} is not emulated (only BGP sessions)\n`,
      code: 2,
    };
  const session = mesh.session(node.name, p.peer.node)!;
  if (session.disabledBy?.includes(node.name))
    return { stdout: `${HEADER}${name}: already disabled\n`, stderr: '', code: 0 };
  // BIRD stops the protocol: a NOTIFICATION Cease over the session, which the peer reads and drops
  // the session too; each side's kernel protocol withdraws what it learned over it
  c.bgp?.disable(node.name, p.peer.ip);
  session.disabledBy = [...(session.disabledBy ?? []), node.name];
  return { stdout: `${HEADER}${name}: disabled\n`, stderr: '', code: 0 };
}

export const birdc: Tool = (argv, ctx) => {
  const words = [...argv];
  let socket = '/run/bird/bird.ctl';
  while (words[0]?.startsWith('-')) {
    const opt = words.shift()!;
    if (opt === '-s' && words.length) socket = words.shift()!;
    else
      return {
        stdout: '',
        stderr: `podwalk: birdc: option ${opt} is not emulated (only -s SOCKET)\n`,
        code: 2,
      };
  }
  const node = ctx.cluster.nodes.find((n) => n.name === ctx.netns.name);
  if (!ctx.cluster.mesh || !node)
    return {
      stdout: '',
      stderr: `Unable to connect to server control socket (${socket}): No such file or directory\n`,
      code: 1,
    };
  // a killed BIRD left its control socket behind: nothing accepts on it; one that shut down
  // unlinked it (sysdep_shutdown_done)
  const exited = ctx.cluster.bgp?.exited(node.name);
  if (exited)
    return {
      stdout: '',
      stderr: `Unable to connect to server control socket (${socket}): ${exited === 'killed' ? 'Connection refused' : 'No such file or directory'}\n`,
      code: 1,
    };
  if (!words.length) return { stdout: '', stderr: `${USAGE} (birdc's interactive mode is not)\n`, code: 2 };
  const bad = () => ({ stdout: '', stderr: `${USAGE}: \`${argv.join(' ')}' is not\n`, code: 2 });
  if (words[0] === 'disable' && words.length === 2) return disable(ctx.cluster, node, words[1]);
  // cmd_shutdown and cmd_graceful_restart: the reply, then BIRD shuts down (src/bgp/session.ts)
  if (words.length === 1 && words[0] === 'down') {
    ctx.cluster.bgp?.shutdown(node.name, false);
    return { stdout: `${HEADER}Shutdown requested\n`, stderr: '', code: 0 };
  }
  if (words.length === 2 && words[0] === 'graceful' && words[1] === 'restart') {
    ctx.cluster.bgp?.shutdown(node.name, true);
    return { stdout: `${HEADER}Graceful restart requested\n`, stderr: '', code: 0 };
  }
  if (keyword(words[0], 'top') !== 'show' || words.length < 2) return bad();
  const what = keyword(words[1], 'show');
  if (what === 'protocols') {
    if (words.length > 3) return bad();
    return showProtocols(ctx.cluster, node, words[2]);
  }
  if (what === 'route') {
    // its options in any order: `all`, `protocol NAME`
    let all = false;
    let proto: string | undefined;
    for (let i = 2; i < words.length; i++) {
      const k = keyword(words[i], 'route');
      if (k === 'all' && !all) all = true;
      else if (k === 'protocol' && proto === undefined && i + 1 < words.length) proto = words[++i];
      else return bad();
    }
    return showRoute(ctx.cluster, node, proto, all);
  }
  return bad();
};
