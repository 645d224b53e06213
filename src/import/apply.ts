/**
 * The import plan into kernel state. This is the ONE module of the importer that changes the
 * model, and it does so only through the kernel's own operations: the netlink functions
 * (links with the ifindex the node had, masters, MTUs, addresses, link state, routes,
 * neighbours, FDB entries, as `ip`/`bridge` would make them) and the emulated iptables-restore.
 * What the kernel derives by itself (prefix and local routes, a port's local FDB entries, the
 * multicast entries) is compared with the dump, and only the difference is added or removed.
 * Where the kernel refuses something the node had, a warning says so and the rest goes on.
 */
import type { Cluster } from '../cni/build.ts';
import { routePrefix, type Route } from '../kernel/fib.ts';
import {
  addressAdd,
  fdbAdd,
  linkAdd,
  linkSetHairpin,
  linkSetMaster,
  linkSetMtu,
  linkSetUp,
  localRoutes,
  neighAdd,
  NetlinkError,
  netnsAdd,
  VXLAN_HEADROOM,
  routeAdd,
  routeDel,
} from '../kernel/netlink.ts';
import { NUD_STATES, type Link, type Netns, type NudState } from '../kernel/objects.ts';
import { bridge } from '../tools/bridge.ts';
import { iptablesRestore } from '../tools/iptables-restore.ts';
import { ipsetRestore } from '../tools/ipset.ts';
import { NSTAT_COUNTERS } from '../tools/nstat.ts';
import type { FdbDump } from './parse.ts';
import type { ImportPlan, ImportWarning, PlanLink, PlanNs, PlanRoute } from './plan.ts';

function errnoText(e: NetlinkError): string {
  return e.extack ? `${e.message} (${e.extack})` : e.message;
}

/** run a kernel operation; a refusal becomes a warning about `subject` */
function attempt(
  warn: (w: ImportWarning) => void,
  netns: string,
  subject: string,
  effect: string,
  fn: () => void,
): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    if (!(e instanceof NetlinkError)) throw e;
    warn({ netns, subject: `${subject}: the model's kernel refused it (${errnoText(e)})`, effect });
    return false;
  }
}

function routeKey(r: {
  type: string;
  dst: string;
  via?: string;
  dev?: string;
  proto: string;
  scope: string;
  src?: string;
  metric: number;
  onlink: boolean;
}): string {
  return [
    r.type,
    r.dst,
    r.via ?? '',
    r.dev ?? '',
    r.proto,
    r.scope,
    r.src ?? '',
    r.metric,
    r.onlink ? 'onlink' : '',
  ].join('|');
}

function modelRouteKey(r: Route): string {
  return routeKey({ ...r, dst: routePrefix(r) });
}

function planRouteKey(r: PlanRoute): string {
  return routeKey({ ...r, dst: r.prefix === 'default' ? 'default' : r.prefix.replace(/\/32$/, '') });
}

function show(r: PlanRoute): string {
  return `${r.type === 'unicast' ? '' : r.type + ' '}${r.prefix}${r.via ? ` via ${r.via}` : ''}${r.dev ? ` dev ${r.dev}` : ''}`;
}

/** the FDB rows as `bridge -j fdb show` prints them in this namespace */
function fdbRows(c: Cluster, ns: Netns): FdbDump[] {
  const r = bridge(['-j', 'fdb', 'show'], { cluster: c, netns: ns });
  return r.code === 0 && r.stdout.trim() ? (JSON.parse(r.stdout) as FdbDump[]) : [];
}

const fdbKey = (r: FdbDump) =>
  [r.mac, r.ifname, r.dst ?? '', r.vlan ?? '', r.master ?? '', (r.flags ?? []).join(','), r.state ?? ''].join(
    '|',
  );

/** Build the plan's namespaces in `c.world`; what the kernel refused goes to `warn` */
export function applyPlan(plan: ImportPlan, c: Cluster, warn: (w: ImportWarning) => void): void {
  const w = c.world;
  const nsOf = new Map<string, Netns>();
  for (const p of plan.namespaces) {
    // with its lo (ifindex 1, 127.0.0.1/8, up), as `ip netns add` makes it
    const ns = netnsAdd(w, p.name, p.role);
    nsOf.set(p.name, ns);
  }
  const linkOf = new Map<string, { p: PlanNs; l: PlanLink }>();
  for (const p of plan.namespaces) for (const l of p.links) linkOf.set(`${p.name}/${l.name}`, { p, l });

  /*
   * links, with the ifindex, MAC and MTU the node had. A VXLAN device's MTU is clamped to its
   * underlay's at creation, so an underlay that is now smaller than the VXLAN device allows (its
   * MTU lowered after the VXLAN device was made, which the kernel lets stand) is made large
   * enough first and lowered with the other MTUs below, as it happened on the node.
   */
  const createMtu = (ns: string, l: PlanLink) =>
    Math.max(
      l.mtu,
      ...(linksOf.get(ns) ?? []).flatMap((x) =>
        x.type === 'vxlan' && x.dev === l.name ? [x.mtu + VXLAN_HEADROOM] : [],
      ),
    );
  const linksOf = new Map(plan.namespaces.map((p) => [p.name, p.links]));
  const made = new Set<string>();
  for (const p of plan.namespaces) {
    const ns = nsOf.get(p.name)!;
    for (const l of [...p.links].sort((a, b) => a.ifindex - b.ifindex)) {
      const id = `${p.name}/${l.name}`;
      if (made.has(id)) continue;
      if (l.type === 'loopback') {
        if (ns.link('lo')!.mtu !== l.mtu)
          attempt(warn, p.name, `lo mtu ${l.mtu}`, 'lo keeps MTU 65536', () => linkSetMtu(ns, 'lo', l.mtu));
        made.add(id);
        continue;
      }
      switch (l.type) {
        case 'bridge': {
          // the plan's link is the request `ip link add` takes for its kind
          const br = linkAdd(w, ns, l);
          if (br.type === 'bridge') br.ageingTime = l.ageingTime;
          break;
        }
        case 'vxlan':
        case 'ipip':
          linkAdd(w, ns, l);
          break;
        case 'veth': {
          const other = linkOf.get(`${l.peer.ns}/${l.peer.name}`);
          const peerNs = nsOf.get(l.peer.ns);
          if (!other || !peerNs || other.l.type !== 'veth')
            throw new Error(`import plan: ${id}'s peer ${l.peer.ns}/${l.peer.name} is not planned`);
          linkAdd(w, ns, {
            type: 'veth',
            name: l.name,
            mac: l.mac,
            mtu: createMtu(p.name, l),
            ifindex: l.ifindex,
            peer: {
              netns: peerNs,
              name: other.l.name,
              mac: other.l.mac,
              mtu: createMtu(l.peer.ns, other.l),
              ifindex: other.l.ifindex,
            },
          });
          made.add(`${l.peer.ns}/${l.peer.name}`);
          break;
        }
      }
      made.add(id);
    }
  }
  for (const p of plan.namespaces) {
    const ns = nsOf.get(p.name)!;
    for (const l of p.links) {
      const link = ns.link(l.name)!;
      if (l.stats) Object.assign(link.stats, l.stats);
    }
  }

  /* bridge ports, then each MTU (a bridge follows its ports' unless it was set) */
  for (const p of plan.namespaces) {
    const ns = nsOf.get(p.name)!;
    for (const l of p.links)
      if (l.master)
        attempt(
          warn,
          p.name,
          `${l.name} master ${l.master}`,
          `${l.name} is not a port of ${l.master} in the model`,
          () => linkSetMaster(w, ns, l.name, l.master!),
        );
    for (const l of p.links)
      if (l.hairpin)
        attempt(
          warn,
          p.name,
          `bridge port ${l.name} hairpin on`,
          `${l.name} is not in hairpin mode in the model`,
          () => linkSetHairpin(ns, l.name, true),
        );
  }
  for (const p of plan.namespaces) {
    const ns = nsOf.get(p.name)!;
    const links = [...p.links].sort((a, b) => (a.type === 'bridge' ? 1 : 0) - (b.type === 'bridge' ? 1 : 0));
    for (const l of links) {
      const link = ns.link(l.name)!;
      if (link.mtu !== l.mtu)
        attempt(warn, p.name, `${l.name} mtu ${l.mtu}`, `${l.name} keeps MTU ${link.mtu} in the model`, () =>
          linkSetMtu(ns, l.name, l.mtu),
        );
    }
  }

  /* addresses in the kernel's list order, then the links that were up */
  for (const p of plan.namespaces) {
    const ns = nsOf.get(p.name)!;
    for (const a of p.addrs) {
      if (a.dev === 'lo' && a.ip === '127.0.0.1' && a.len === 8) continue;
      attempt(warn, p.name, `${a.ip}/${a.len} on ${a.dev}`, 'the address is not local in the model', () =>
        addressAdd(ns, a.dev, a.ip, a.len, a.scope),
      );
    }
  }
  for (const p of plan.namespaces) {
    const ns = nsOf.get(p.name)!;
    for (const l of [...p.links].sort((a, b) => a.ifindex - b.ifindex))
      if (ns.link(l.name)!.up !== l.up) linkSetUp(w, ns, l.name, l.up);
  }

  /* sysctls */
  for (const p of plan.namespaces) {
    const ns = nsOf.get(p.name)!;
    for (const [k, v] of p.sysctls) ns.setSysctl(k, v);
  }

  /* the main table: what the addresses brought, made equal to the dump */
  for (const p of plan.namespaces) {
    for (const r of p.addRoutes ?? [])
      routeAdd(nsOf.get(p.name)!, { ...r, nl: { create: true, excl: true, replace: false, append: false } });
    if (!p.routes) continue;
    const ns = nsOf.get(p.name)!;
    const want = new Map(p.routes.map((r) => [planRouteKey(r), r]));
    for (const r of [...ns.fib.list()])
      if (!want.has(modelRouteKey(r)))
        routeDel(ns, routePrefix(r), {
          type: r.type,
          dev: r.dev,
          via: r.via,
          proto: r.proto,
          metric: r.metric,
          scope: r.scope,
        });
    const have = new Set(ns.fib.list().map(modelRouteKey));
    // device routes first: a gateway must be reachable when its route is added
    const todo = p.routes.filter((r) => !have.has(planRouteKey(r)));
    for (const r of [...todo.filter((x) => !x.via), ...todo.filter((x) => x.via)])
      attempt(
        warn,
        p.name,
        `route ${show(r)}`,
        'the route is left out: its destinations take another route',
        () =>
          routeAdd(ns, {
            prefix: r.prefix,
            type: r.type,
            via: r.via,
            dev: r.dev,
            proto: r.proto,
            scope: r.scope,
            src: r.src,
            metric: r.metric,
            onlink: r.onlink,
            nl: { create: true, excl: true, replace: false, append: false },
          }),
      );
    if (p.localRoutes) {
      const derived = new Set(
        localRoutes(ns).map(
          (r) =>
            `${r.type} ${routePrefix({ dst: r.dst, len: r.len }).replace(/^default$/, '0.0.0.0/0')} ${r.dev}`,
        ),
      );
      for (const r of p.localRoutes) {
        const key = `${r.type} ${r.prefix.replace(/^default$/, '0.0.0.0/0')} ${r.dev ?? ''}`;
        if (!derived.has(key) && (!r.dev || ns.link(r.dev)))
          warn({
            netns: p.name,
            subject: `local table: ${r.type} ${r.prefix}${r.dev ? ` dev ${r.dev}` : ''}`,
            effect: 'the model derives the local table from the addresses: this route is not in it',
          });
      }
    }
  }

  /* neighbours, in the dump's order */
  for (const p of plan.namespaces) {
    const ns = nsOf.get(p.name)!;
    for (const n of p.neighs) {
      if (!(NUD_STATES as readonly string[]).includes(n.state)) {
        warn({
          netns: p.name,
          subject: `neighbour ${n.ip} dev ${n.dev} state ${n.state}`,
          effect: 'not a state the model keeps: left out',
        });
        continue;
      }
      attempt(
        warn,
        p.name,
        `neighbour ${n.ip} dev ${n.dev}`,
        'the entry is left out: the walk resolves it with ARP',
        () =>
          neighAdd(ns, w, {
            ip: n.ip,
            dev: n.dev,
            lladdr: n.lladdr,
            state: n.state as NudState,
            nl: { create: true, excl: false, replace: true },
          }),
      );
    }
  }

  /* FDB: the entries the links did not bring, oldest first (bridge fdb lists the newest first) */
  for (const p of plan.namespaces) {
    if (!p.fdb) continue;
    const ns = nsOf.get(p.name)!;
    const have = new Map<string, number>();
    for (const r of fdbRows(c, ns)) have.set(fdbKey(r), (have.get(fdbKey(r)) ?? 0) + 1);
    const missing: FdbDump[] = [];
    for (const r of p.fdb) {
      const k = fdbKey(r);
      const n = have.get(k) ?? 0;
      if (n > 0) have.set(k, n - 1);
      else missing.push(r);
    }
    for (const r of missing.reverse()) {
      const dev = ns.link(r.ifname);
      if (!dev) continue;
      if (r.vlan !== undefined || r.vni !== undefined || r.src_vni !== undefined || r.port !== undefined) {
        warn({
          netns: p.name,
          subject: `bridge fdb ${r.mac} dev ${r.ifname}${r.vlan !== undefined ? ` vlan ${r.vlan}` : ''}${r.vni !== undefined ? ` vni ${r.vni}` : ''}`,
          effect: 'per-VLAN/VNI/port FDB entries are not modelled: left out',
        });
        continue;
      }
      const self = (r.flags ?? []).includes('self');
      const state = r.state ?? '';
      const master = !!r.master && !self;
      if (master && ns.link(r.master!)?.type !== 'bridge') continue;
      attempt(warn, p.name, `bridge fdb ${r.mac} dev ${r.ifname}`, 'the entry is left out', () =>
        fdbAdd(ns, w, {
          mac: r.mac,
          dev: r.ifname,
          self,
          master,
          dst: r.dst,
          state: {
            permanent: state === 'permanent',
            noarp: state === 'static',
            reachable: state !== 'permanent',
          },
          nl: { create: true, excl: false, replace: false, append: !!r.dst },
        }),
      );
    }
  }

  /* IP sets, through ipset restore (before the rules that name them) */
  for (const p of plan.namespaces) {
    if (!p.ipsets) continue;
    const r = ipsetRestore({ cluster: c, netns: nsOf.get(p.name)! }, p.ipsets);
    if (r.code !== 0)
      warn({
        netns: p.name,
        subject: `ipset restore of the dumped sets failed: ${r.stderr.trim()}`,
        effect: 'the sets up to the failing line are imported; a rule naming a missing set is left out',
      });
  }

  /* iptables, through iptables-restore; rules the model cannot evaluate are reported and left out */
  for (const p of plan.namespaces) {
    if (!p.iptables) continue;
    const ns = nsOf.get(p.name)!;
    const skipped = new Map<string, { line: string; message: string }[]>();
    const r = iptablesRestore({ cluster: c, netns: ns }, p.iptables, {
      counters: true,
      skip: (line, message, table) => {
        if (!skipped.has(table)) skipped.set(table, []);
        skipped.get(table)!.push({ line, message });
      },
    });
    if (r.code !== 0)
      warn({
        netns: p.name,
        subject: `iptables-restore of the dumped tables failed: ${r.failure?.message ?? r.stderr.trim()}`,
        effect:
          'the tables up to the failing one are imported, the rest are not: the walk may pass where the kernel drops, or miss NAT',
      });
    for (const [table, rules] of skipped) {
      const by = (re: RegExp) => rules.filter((x) => re.test(x.line)).length;
      const drops = by(/-j (DROP|REJECT)\b/);
      const accepts = by(/-j (ACCEPT|RETURN)\b/);
      const nat = by(/-j (DNAT|SNAT|MASQUERADE|REDIRECT)\b/);
      const other = rules.length - drops - accepts - nat;
      const n = (k: number, one: string, many = `${one}s`) => `${k} ${k === 1 ? one : many}`;
      const reasons = [...new Set(rules.map((x) => x.message.trim()))];
      const effects = [
        drops ? `${n(drops, 'DROP/REJECT rule')}: the walk may pass where the kernel drops` : '',
        accepts
          ? `${n(accepts, 'ACCEPT/RETURN rule')}: the walk may drop or go on where the kernel accepts`
          : '',
        nat ? `${n(nat, 'NAT rule')}: the walk may miss a translation the kernel makes` : '',
        other
          ? `${n(other, 'jump or other target', 'jumps or other targets')}: their chains and effects are skipped`
          : '',
      ].filter(Boolean);
      warn({
        netns: p.name,
        subject: `${table}: ${n(rules.length, 'rule')} with what the model does not evaluate (${reasons.slice(0, 4).join(', ')}${reasons.length > 4 ? ', …' : ''}), e.g. \`${rules[0].line}\``,
        effect: `left out; ${effects.join('; ')}`,
      });
    }
  }

  /* listening sockets, SNMP counters */
  const counted = new Set<string>(NSTAT_COUNTERS.filter((n) => !n.endsWith('*')));
  for (const p of plan.namespaces) {
    const ns = nsOf.get(p.name)!;
    const vxlanPorts = new Set(
      [...ns.links.values()].flatMap((l: Link) => (l.type === 'vxlan' ? [l.dstport] : [])),
    );
    for (const s of p.listeners) {
      if (s.proto === 'udp' && vxlanPorts.has(s.port)) continue;
      if (ns.sockets.some((x) => x.proto === s.proto && x.port === s.port && x.addr === s.addr)) continue;
      ns.addListener({ proto: s.proto, port: s.port, addr: s.addr });
    }
    for (const [k, v] of p.nstat ?? [])
      if (v > 0 && (counted.has(k) || /^IcmpMsgOutType\d+$/.test(k))) ns.own('mib').set(k, v);
  }
}
