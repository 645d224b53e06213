/** The flow cache's oracle (test/flow-cache.test.ts): see there. */
import { readFileSync } from 'node:fs';
import { loadCluster } from '../src/cluster/load.ts';
import { seedCluster } from '../src/cluster/seed.ts';
import type { ClusterSpec, CniMode } from '../src/cluster/spec.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { formatRoute } from '../src/kernel/fib.ts';
import { worldToData } from '../src/kernel/snapshot.ts';
import { captureData } from '../src/kernel/world.ts';
import { traceToJson } from '../src/render/json.ts';
import { renderSteps, renderSummary } from '../src/render/text.ts';
import { runCommand } from '../src/tools/index.ts';
import { runUntil } from '../src/trace/exchange.ts';
import type { Trace } from '../src/trace/types.ts';
import { walk, type WalkOptions, type WalkRequest } from '../src/trace/walk.ts';
import { enableFlowCache, type FlowCache, type FlowCacheOptions } from '../src/trace/flow-cache.ts';
import { rng, type Rng } from './rng.ts';

/** the one switch of a cache: side A is prepared with `cached` true, side B with false */
function prepare(c: Cluster, cached: boolean, opts: FlowCacheOptions = {}): Cluster {
  // the flow cache in its shadow form, checking every hit: a hit whose real walk is not its
  // template throws, and side A's outcome then differs from B's; or (opts.replay) replaying its
  // hits, whose worlds and outputs the oracle compares with B's walked ones
  if (cached) lastCache = enableFlowCache(c, { ...opts, check: !opts.replay });
  return c;
}

/** the flow cache of the last side A prepared (its counts: the hits the oracle checked) */
export let lastCache: FlowCache | undefined;

const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString('hex') : '-');

/** everything a trace renders to: JSON, text, the summary and every step's frame */
export function traceText(t: Trace): string {
  return [
    JSON.stringify(traceToJson(t)),
    renderSteps(t),
    renderSummary(t),
    t.steps.map((s) => `${s.n} ${s.time} ${hex(s.frame)}`).join('\n'),
  ].join('\n');
}

/** the first line where two texts differ */
function firstDiff(a: string, b: string): string {
  const la = a.split('\n');
  const lb = b.split('\n');
  for (let i = 0; i < Math.max(la.length, lb.length); i++)
    if (la[i] !== lb[i])
      return `line ${i + 1}:\n  A: ${(la[i] ?? '(none)').slice(0, 400)}\n  B: ${(lb[i] ?? '(none)').slice(0, 400)}`;
  return '(equal)';
}

const bytesAsHex = (_k: string, v: unknown) => (v instanceof Uint8Array ? hex(v) : v);

/**
 * the World's data (worldToData) without its captures, one line a namespace; the captures are
 * compared apart (capturesText), from where the last comparison ended: a world of a thousand
 * walks keeps ~26,000 of them, and emitting and printing every one of them after every operation
 * would be most of the test's time and memory
 */
export function worldText(c: Cluster): string {
  const captures = c.world.captures.splice(0);
  try {
    const { netns, ...rest } = worldToData(c.world);
    return [JSON.stringify(rest, bytesAsHex), ...netns.map((n) => JSON.stringify(n, bytesAsHex))].join('\n');
  } finally {
    c.world.captures.push(...captures);
  }
}

/** how many captures the world keeps, and each from `from` on as data (time, place, frame bytes) */
export function capturesText(c: Cluster, from: number): string {
  const all = c.world.captures;
  const out = [`${all.length} captures`];
  for (let i = Math.min(from, all.length); i < all.length; i++)
    out.push(JSON.stringify(captureData(all[i]), bytesAsHex));
  return out.join('\n');
}

/** one operation's outcome on one side, as text */
type Outcome = string;

interface Op {
  what: string;
  run: (c: Cluster, mutate?: (traces: Trace[]) => Trace[]) => Outcome;
}

export const SPECS: Record<string, () => { spec: ClusterSpec; mode?: CniMode }> = {
  'flannel-vxlan': () => ({ spec: seedCluster(), mode: 'flannel-vxlan' }),
  'calico-bgp': () => ({ spec: seedCluster(), mode: 'calico-bgp' }),
  'calico-ipip': () => ({ spec: seedCluster(), mode: 'calico-ipip' }),
  'calico-vxlan': () => ({ spec: seedCluster(), mode: 'calico-vxlan' }),
  'flannel-host-gw': () => ({ spec: seedCluster(), mode: 'flannel-host-gw' }),
  services: () => ({
    spec: loadCluster(readFileSync('test/fixtures/services-external.yaml', 'utf8'), 'services-external.yaml'),
  }),
};

function walkOp(req: WalkRequest, opts: WalkOptions): Op {
  return {
    what: `walk ${JSON.stringify(req)} ${JSON.stringify(opts)}`,
    run: (c, mutate) => {
      try {
        let traces = walk(c, req, opts).traces;
        if (mutate) traces = mutate(traces);
        return traces.map(traceText).join('\n----\n');
      } catch (e) {
        return `threw ${(e as Error).name}: ${(e as Error).message}`;
      }
    },
  };
}

/**
 * warm walks back to back, as issue 16's benchmark walks: the same pods, port and protocol, a new
 * connection each (consecutive source ports), nothing in between: the walks a flow cache hits
 */
function burstOp(req: WalkRequest, n: number): Op {
  return {
    what: `burst of ${n} walks ${JSON.stringify(req)}`,
    run: (c, mutate) => {
      const out: string[] = [];
      for (let i = 0; i < n; i++)
        try {
          const w = walk(c, { ...req, sport: req.sport! + i });
          let traces = [w.request, ...(w.reply ? [w.reply] : [])];
          if (mutate) traces = mutate(traces);
          out.push(traces.map(traceText).join('\n----\n'));
        } catch (e) {
          out.push(`threw ${(e as Error).name}: ${(e as Error).message}`);
        }
      return out.join('\n====\n');
    },
  };
}

function commandOp(netns: string, cmd: string): Op {
  return {
    what: `${netns}: ${cmd}`,
    run: (c) => {
      const r = runCommand(c, netns, cmd);
      return `${r.code}\n${r.stdout}\n${r.stderr}`;
    },
  };
}

function timeOp(us: number): Op {
  return {
    what: `${us} µs pass`,
    run: (c) => {
      runUntil(c, c.world.now + us);
      return `now ${c.world.now}, ${c.world.timers.length} timers`;
    },
  };
}

/** a command that writes the IP set `set` (made, a pod's address added or deleted, flushed) or a rule in `chains` that reads it */
export function ipsetCommand(r: Rng, c: Cluster, set: string, chains: readonly string[]): string {
  const ip = r.pick(c.pods).ip;
  return r.pick([
    `ipset create ${set} hash:ip`,
    `ipset add ${set} ${ip}`,
    `ipset del ${set} ${ip}`,
    `ipset flush ${set}`,
    `iptables -I ${r.pick(chains)} -m set --match-set ${set} ${r.pick(['src', 'dst'])} -j DROP`,
  ]);
}

/** a random command, made from side A's state (B gets the same text) */
function randomCommand(r: Rng, c: Cluster): Op {
  const nodes = c.nodes.map((n) => n.name);
  const pods = c.pods.map((p) => p.name);
  const netns = r.chance(0.75) ? r.pick(nodes) : r.pick(pods);
  const ns = c.world.ns(netns);
  const links = [...ns.links.keys()].filter((l) => l !== 'lo');
  const link = r.pick(links);
  const neighs = ns.neigh.list();
  switch (r.int(18)) {
    case 0: {
      const routes = ns.fib.list();
      if (!routes.length) return commandOp(netns, 'ip route show');
      return commandOp(netns, `ip route del ${formatRoute(r.pick(routes))}`);
    }
    case 1:
      return commandOp(netns, `ip route replace 10.${240 + r.int(8)}.${r.int(3)}.0/24 dev ${link}`);
    case 2: {
      if (!neighs.length) return commandOp(netns, 'ip neigh show');
      const n = r.pick(neighs);
      return commandOp(netns, `ip neigh del ${n.ip} dev ${n.dev}`);
    }
    case 3: {
      if (!neighs.length) return commandOp(netns, `ip neigh flush dev ${link}`);
      const n = r.pick(neighs);
      const state = r.pick(['permanent', 'reachable', 'stale', 'noarp']);
      return commandOp(
        netns,
        `ip neigh replace ${n.ip} lladdr ${n.lladdr ?? '02:00:00:00:00:01'} dev ${n.dev} nud ${state}`,
      );
    }
    case 4:
      return commandOp(netns, `ip neigh flush dev ${link}`);
    case 5: {
      const out = runCommand(c, netns, 'bridge fdb show').stdout.split('\n').filter(Boolean);
      const line = out.length ? r.pick(out) : undefined;
      const m = line && /^(\S+) dev (\S+)(?: dst (\S+))?/.exec(line);
      if (!m) return commandOp(netns, 'bridge fdb show');
      return commandOp(netns, `bridge fdb del ${m[1]} dev ${m[2]}${m[3] ? ` dst ${m[3]}` : ''}`);
    }
    case 6: {
      const vx = links.find((l) => ns.link(l)!.type === 'vxlan');
      if (!vx) return commandOp(netns, 'bridge fdb show');
      return commandOp(
        netns,
        `bridge fdb replace 02:00:00:00:00:0${r.int(9)} dev ${vx} dst 192.168.1.1${r.int(3)}`,
      );
    }
    case 7:
      return commandOp(
        netns,
        `iptables -I ${r.pick(['FORWARD', 'INPUT', 'OUTPUT'])} -p ${r.pick(['tcp', 'udp'])} --dport ${r.pick([8080, 53, 80])} -j ${r.pick(['DROP', 'ACCEPT', 'REJECT'])}`,
      );
    case 8:
      return commandOp(netns, `iptables -D ${r.pick(['FORWARD', 'INPUT', 'OUTPUT'])} 1`);
    case 9:
      return commandOp(
        netns,
        r.chance(0.5)
          ? `iptables -t nat -I POSTROUTING -p udp -j MASQUERADE`
          : `iptables -t nat -I PREROUTING -p tcp --dport 9 -j DNAT --to-destination 10.244.1.5:8080`,
      );
    case 10:
      return commandOp(netns, 'conntrack -F');
    case 11:
      return commandOp(netns, `ip link set ${link} ${r.chance(0.5) ? 'down' : 'up'}`);
    case 12:
      return commandOp(netns, `ip link set ${link} mtu ${r.pick([1500, 1450, 1400, 1200])}`);
    case 13:
      return commandOp(
        netns,
        `sysctl -w ${r.pick([
          `net.ipv4.ip_forward=${r.int(2)}`,
          `net.ipv4.conf.all.rp_filter=${r.int(3)}`,
          `net.ipv4.ip_local_port_range=${r.pick(['32768 60999', '40000 40010'])}`,
          `net.bridge.bridge-nf-call-iptables=${r.int(2)}`,
          `net.ipv4.tcp_syn_retries=${r.pick([1, 6])}`,
          `net.netfilter.nf_conntrack_max=${r.pick([1, 2, 262144])}`,
        ])}`,
      );
    case 14:
      return commandOp(netns, `iptables -F ${r.pick(['FORWARD', 'INPUT'])}`);
    case 15:
      // an IP set a rule reads, its members written after the rule is in
      return commandOp(netns, ipsetCommand(r, c, 'pw-flow', ['FORWARD', 'OUTPUT', 'INPUT']));
    case 16:
      return commandOp(
        netns,
        `ip addr del ${ns.link(link)!.addrs[0]?.ip ?? '10.9.9.9'}/${ns.link(link)!.addrs[0]?.len ?? 32} dev ${link}`,
      );
    default:
      return commandOp(netns, `ip link set ${link} up`);
  }
}

/** a random walk: sources and destinations the cluster has, the source port fresh, repeated or hashed */
function randomWalk(r: Rng, c: Cluster, sports: number[]): Op {
  const pods = c.pods.map((p) => p.name);
  const nodes = c.nodes.map((n) => n.name);
  const services = c.services.flatMap((s) =>
    s.clusterIP === 'None' ? [] : [`svc/${s.namespace}/${s.name}`, `${s.namespace}/${s.name}`],
  );
  const from = r.chance(0.85) ? r.pick(pods) : r.pick(nodes);
  const toKind = r.int(10);
  const to = services.length && toKind < 3 ? r.pick(services) : toKind < 9 ? r.pick(pods) : r.pick(nodes);
  const proto = r.chance(0.75) ? 'tcp' : r.pick(['udp', 'icmp'] as const);
  const svc = to.includes('/');
  let sport: number | undefined;
  const k = r.int(10);
  if (k < 5 || !sports.length) sports.push((sport = 40000 + sports.length));
  else if (k < 8) sport = r.pick(sports);
  else if (k < 9) sport = sports[sports.length - 1] + 1;
  const req: WalkRequest = {
    from,
    to,
    proto: svc && proto === 'icmp' ? 'tcp' : proto,
    port: svc ? undefined : r.pick([8080, 8080, 8080, 53, 9, 9000]),
    size: r.chance(0.1) ? r.pick([1400, 2000]) : undefined,
    sport,
  };
  if (svc && r.chance(0.5)) {
    const s = c.services.find((x) => to.endsWith(`${x.namespace}/${x.name}`));
    const eps = s?.ports.flatMap((p) => p.endpoints.map((e) => e.pod)) ?? [];
    if (eps.length) req.endpoint = r.pick(eps);
  }
  return walkOp(req, { exchange: r.chance(0.2), steps: r.chance(0.9) });
}

/** time steps around a walk's timers (1 s RTO and its doublings, neighbour and FDB ageing, ct timeouts) */
const TIMES = [
  1, 90, 5_000, 999_000, 1_000_000, 1_100_000, 3_000_000, 27_000_000, 31_000_000, 61_000_000, 121_000_000,
  301_000_000,
];

export function randomOps(r: Rng, a: Cluster, n: number): () => Op | undefined {
  const sports: number[] = [];
  const bursts: number[] = [];
  let i = 0;
  return () => {
    if (i++ >= n) return undefined;
    const k = r.int(20);
    if (k < 2) {
      // a fresh run of source ports, or one walked before (its connections are still there)
      const base = bursts.length && r.chance(0.3) ? r.pick(bursts) : 50000 + 100 * bursts.length;
      if (!bursts.includes(base)) bursts.push(base);
      const pods = a.pods.filter((p) => p.listen?.length);
      const to = r.pick(pods.length ? pods : a.pods).name;
      const from = r.pick(a.pods.filter((p) => p.name !== to)).name;
      return burstOp({ from, to, proto: 'tcp', port: r.chance(0.8) ? 8080 : 9, sport: base }, 3 + r.int(10));
    }
    if (k < 12) return randomWalk(r, a, sports);
    if (k < 16) return randomCommand(r, a);
    return timeOp(r.pick(TIMES));
  };
}

/**
 * a fault on side A, applied at the first chance from operation `at` on: a world fault after the
 * operation ran on A, a trace fault to what a walk returned (undefined: nothing to change in these)
 */
export type Fault =
  | { name: string; world: (c: Cluster) => void }
  | { name: string; trace: (traces: Trace[]) => Trace[] | undefined };

/**
 * Run `ops` operations on two clusters of `spec`, A prepared with the cache, B without; after each
 * the outcomes and the worlds must be the same. Returns the first difference, or undefined.
 */
export function differ(
  specName: string,
  seed: number,
  ops: number,
  fault?: { at: number; f: Fault },
  log?: (what: string, outcome: string) => void,
  cache?: FlowCacheOptions,
): string | undefined {
  const { spec, mode } = SPECS[specName]();
  const a = prepare(buildCluster(spec, mode), true, cache);
  const b = prepare(buildCluster(SPECS[specName]().spec, mode), false);
  const r = rng(seed);
  const next = randomOps(r, a, ops);
  const wa = worldText(a) + capturesText(a, 0);
  const wb = worldText(b) + capturesText(b, 0);
  if (wa !== wb) return `built worlds differ at ${firstDiff(wa, wb)}`;
  // captures compared so far (the list only grows, or is emptied: then it is compared from its start)
  let seen = a.world.captures.length;
  let pending = fault;
  for (let i = 0; ; i++) {
    const op = next();
    if (!op) return pending ? `the fault was never applied` : undefined;
    const f = pending && pending.at <= i ? pending.f : undefined;
    const oa = op.run(
      a,
      f && 'trace' in f
        ? (traces) => {
            const changed = f.trace(traces);
            if (!changed) return traces;
            pending = undefined;
            return changed;
          }
        : undefined,
    );
    if (f && 'world' in f) {
      f.world(a);
      pending = undefined;
    }
    const ob = op.run(b);
    log?.(op.what, ob);
    if (oa !== ob) return `op ${i} (${op.what}): outcomes differ at ${firstDiff(oa, ob)}`;
    const worldA = worldText(a);
    const worldB = worldText(b);
    if (worldA !== worldB) return `op ${i} (${op.what}): worlds differ at ${firstDiff(worldA, worldB)}`;
    const from = Math.min(seen, a.world.captures.length, b.world.captures.length);
    const capsA = capturesText(a, from);
    const capsB = capturesText(b, from);
    if (capsA !== capsB) return `op ${i} (${op.what}): captures differ at ${firstDiff(capsA, capsB)}`;
    seen = a.world.captures.length;
  }
}

/** a trace like `t`, rebuilt with one change (what a replay that got one thing wrong would return) */
function retrace(t: Trace, change: Partial<Pick<Trace, 'steps' | 'counters'>>): Trace {
  const steps = change.steps ?? t.steps;
  return {
    flow: t.flow,
    disposition: t.disposition,
    steps,
    counters: change.counters ?? t.counters,
    get hops() {
      return t.hops;
    },
  };
}

/** the first walk's traces that have steps: the fault waits for one */
const withSteps = (traces: Trace[]) => traces.find((t) => t.steps.length > 2);

export const FAULTS: Fault[] = [
  {
    name: 'a device counter',
    world: (c) => {
      c.world.ns('node1').link('eth0')!.stats.txPackets++;
    },
  },
  {
    name: 'a neighbour timer input (used)',
    world: (c) => {
      const ns = c.world.ns('node1');
      for (const t of ns.nud.values()) t.used = (t.used ?? 0) + 1;
    },
  },
  {
    name: 'an IP id',
    world: (c) => {
      c.world.ns('pod-a').ipId++;
    },
  },
  {
    name: 'the clock',
    world: (c) => c.world.tick(1),
  },
  {
    name: 'a timer armed once more',
    world: (c) => {
      c.world.timerSeq++;
    },
  },
  {
    name: 'a conntrack table',
    world: (c) => {
      runCommand(c, 'node1', 'conntrack -F');
    },
  },
  {
    name: 'a rule counter',
    world: (c) => {
      runCommand(c, 'node1', 'iptables -Z FORWARD');
    },
  },
  {
    name: 'a capture',
    world: (c) => {
      c.world.captures.pop();
    },
  },
  {
    name: 'one step fewer in a trace',
    trace: (traces) => {
      const t = withSteps(traces);
      return t && traces.map((x) => (x === t ? retrace(t, { steps: t.steps.slice(0, -1) }) : x));
    },
  },
  {
    name: "one byte of a step's frame",
    trace: (traces) => {
      const t = traces.find((x) => x.steps.some((s) => s.frame?.length));
      if (!t) return undefined;
      const i = t.steps.findIndex((s) => s.frame?.length);
      const s = t.steps[i];
      const frame = s.frame!.slice();
      frame[frame.length - 1] ^= 1;
      const changed = Object.create(s, { frame: { value: frame } }) as typeof s;
      return traces.map((x) =>
        x === t ? retrace(t, { steps: t.steps.map((y, j) => (j === i ? changed : y)) }) : x,
      );
    },
  },
  {
    name: "a step's time",
    trace: (traces) => {
      const t = withSteps(traces);
      if (!t) return undefined;
      const s = t.steps[1];
      const changed = Object.create(s, { time: { value: s.time + 1 } }) as typeof s;
      return traces.map((x) =>
        x === t ? retrace(t, { steps: t.steps.map((y, j) => (j === 1 ? changed : y)) }) : x,
      );
    },
  },
  {
    name: 'a counter of a trace',
    trace: (traces) => {
      const t = traces.find((x) => x.counters.length);
      return t && traces.map((x) => (x === t ? retrace(t, { counters: t.counters.slice(1) }) : x));
    },
  },
];
