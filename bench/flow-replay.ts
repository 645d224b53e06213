/**
 * EXPERIMENT (issue 16), not a cache and not exact: what would a warm walk cost if a flow cache
 * replayed it? On the seed cluster, after 300 warm walks, one walk is recorded as the writes it
 * made to the world's counters (every device's stats, every netfilter chain's and rule's packet
 * and byte counters, each namespace's IP id and MIB counters: deltas found by comparing them
 * before and after), the timer it armed (offset from the walk's start), the captures it added
 * (their times as offsets, places, frame representations) and its two traces. Then WALKS
 * "replays" run: each adds the deltas, advances the clock, arms the timer, makes the captures
 * anew (a fresh shallow copy of each frame representation, as a replay that substitutes ports,
 * ISN, IP ids and checksums would have to make) and makes two traces over the recorded steps. Timed
 * by process.cpuUsage(), alternated with the same number of real walks on a second cluster.
 *
 * What it leaves out, so its number is a floor of a replay, not a replay: the conntrack entries and
 * sockets a walk makes (bench/state-floor.ts measures keeping their state: 2.3–3.1 µs in columns),
 * FDB `updated` and neighbour `used` times, new packets' header values (ports, ISN, IP ids,
 * checksums, the VXLAN source port), the guards (the lookups that must miss, the states and
 * generations that must be the same), steps made anew. The world it leaves is NOT the one a walk
 * leaves: never use it for anything but this measurement.
 *
 *   npx tsx bench/flow-replay.ts [MODE] [WALKS] [capture]
 */
import { seedCluster } from '../src/cluster/seed.ts';
import { CNI_MODES, type CniMode } from '../src/cluster/spec.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { DeviceCapture, type Capture, type CapturePoint, type TimerEvent } from '../src/kernel/world.ts';
import type { WireBytes } from '../src/kernel/wire-bytes.ts';
import type { Frame, Ipv4Packet } from '../src/wire/types.ts';
import { freezeTrace, type Trace } from '../src/trace/types.ts';
import { walk } from '../src/trace/walk.ts';

const mode = (process.argv[2] ?? 'flannel-vxlan') as CniMode;
const n = Number(process.argv[3] ?? 20000);
const capture = process.argv[4] === 'capture' || process.argv[4] === 'compact';
/** compact: a replayed capture keeps its time, its recorded template and the walk's one parameter record */
const compact = process.argv[4] === 'compact';
if (!CNI_MODES.includes(mode) || !Number.isInteger(n) || n < 1000 || (process.argv[4] && !capture)) {
  process.stderr.write('usage: npx tsx bench/flow-replay.ts [MODE] [WALKS (>= 1000)] [capture|compact]\n');
  process.exit(2);
}

/** a numeric field of some object of the world, with what one walk added to it */
interface Delta {
  obj: Record<string, number>;
  key: string;
  by: number;
}

/** every counter object of the world a walk may bump: device stats, chains, rules, per-ns ids */
function counters(c: Cluster): { obj: Record<string, number>; keys: string[] }[] {
  const out: { obj: Record<string, number>; keys: string[] }[] = [];
  for (const ns of c.world.netns.values()) {
    out.push({ obj: ns as unknown as Record<string, number>, keys: ['ipId'] });
    for (const l of ns.links.values())
      out.push({ obj: l.stats as unknown as Record<string, number>, keys: Object.keys(l.stats) });
    for (const t of ns.netfilter.tables.values())
      for (const ch of t.values()) {
        out.push({ obj: ch as unknown as Record<string, number>, keys: ['pkts', 'bytes'] });
        for (const r of ch.rules)
          out.push({ obj: r as unknown as Record<string, number>, keys: ['pkts', 'bytes'] });
      }
  }
  return out;
}

interface Recorded {
  deltas: Delta[];
  mib: { map: Map<string, number>; key: string; by: number }[];
  duration: number;
  timer?: { after: number; ev: TimerEvent };
  captures: { after: number; at: CapturePoint; repr: Frame | Ipv4Packet }[];
  traces: Trace[];
}

function record(c: Cluster, sport: number): Recorded {
  const before = counters(c).map((x) => ({ ...x, v: x.keys.map((k) => x.obj[k]) }));
  const mibs = [...c.world.netns.values()].map((ns) => ({ ns, m: new Map(ns.mib) }));
  const t0 = c.world.now;
  const seq0 = c.world.timerSeq;
  const cap0 = c.world.captures.length;
  // the captured frames' representations, as the datapath hands them to a capture (Stack.capture)
  const stack = c.stack as unknown as { capture: (...a: unknown[]) => void };
  const reprs: (Frame | Ipv4Packet)[] = [];
  const own = stack.capture;
  stack.capture = function (this: unknown, ...a: unknown[]) {
    if (c.world.capture) reprs.push((a[3] as WireBytes).repr);
    return own.apply(this, a);
  };
  const w = walk(c, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080, sport });
  delete (stack as { capture?: unknown }).capture;
  const deltas: Delta[] = [];
  for (const b of before)
    b.keys.forEach((k, i) => {
      const by = b.obj[k] - b.v[i];
      if (by) deltas.push({ obj: b.obj, key: k, by });
    });
  const mib: Recorded['mib'] = [];
  for (const { ns, m } of mibs)
    for (const [k, v] of ns.mib)
      if (v !== (m.get(k) ?? 0))
        mib.push({ map: ns.mib as Map<string, number>, key: k, by: v - (m.get(k) ?? 0) });
  const timers = c.world.timers.filter((t) => t.seq >= seq0);
  if (timers.length > 1) throw new Error(`a walk armed ${timers.length} timers`);
  const captures = (c.world.captures.slice(cap0) as Capture[]).map((d, i) => ({
    after: d.time - t0,
    at: { netns: d.netns, dev: d.dev, dir: d.dir, promisc: d.promisc },
    repr: reprs[i],
  }));
  return {
    deltas,
    mib,
    duration: c.world.now - t0,
    timer: timers[0] && { after: timers[0].at - t0, ev: timers[0].ev },
    captures,
    traces: [w.request, w.reply!],
  };
}

/**
 * a new representation of the same frame, as a replay that substitutes the per-flow header values
 * would make it: the IP and L4 headers (and a tunnel's inner frame) made anew, the Ethernet header
 * and byte arrays shared
 */
function copyPacket(p: Ipv4Packet): Ipv4Packet {
  const l4 = p.payload;
  let payload: Ipv4Packet['payload'] = l4;
  if (l4.kind === 'tcp') {
    const t = l4.tcp;
    const o = t.options;
    payload = {
      kind: 'tcp',
      tcp: { ...t, options: o && { ...o, timestamp: o.timestamp && { ...o.timestamp } } },
      data: l4.data,
    };
  } else if (l4.kind === 'udp') {
    const v = l4.payload;
    payload = {
      kind: 'udp',
      udp: { ...l4.udp },
      payload: v.kind === 'vxlan' ? { ...v, frame: copyRepr(v.frame) as Frame } : v,
    };
  }
  return { kind: 'ipv4', ip: { ...p.ip }, payload };
}

function copyRepr(r: Frame | Ipv4Packet): Frame | Ipv4Packet {
  if ('eth' in r)
    return { eth: r.eth, payload: r.payload.kind === 'ipv4' ? copyPacket(r.payload) : r.payload };
  return copyPacket(r);
}

/**
 * a replayed capture as a cache could keep it: its time, the recorded capture it repeats and the
 * walk's parameter record; its frame would be emitted from the template with the parameters put in
 * when read (not done here: nothing reads them in this measurement)
 */
class CompactCapture {
  constructor(
    readonly time: number,
    readonly template: Recorded['captures'][number],
    readonly params: object,
  ) {}
}

function replay(c: Cluster, r: Recorded): Trace[] {
  const t0 = c.world.now;
  for (let i = 0; i < r.deltas.length; i++) {
    const d = r.deltas[i];
    d.obj[d.key] += d.by;
  }
  for (let i = 0; i < r.mib.length; i++) {
    const m = r.mib[i];
    m.map.set(m.key, (m.map.get(m.key) ?? 0) + m.by);
  }
  if (c.world.capture && compact) {
    // one record of what differs per walk (the values a replay would substitute), shared by its captures
    const params = { t0, sport: t0 & 0xffff, isn: t0 >>> 3, ipId: t0 & 0xfff, vxlanSport: t0 & 0x3fff };
    for (let i = 0; i < r.captures.length; i++)
      c.world.captures.push(
        new CompactCapture(t0 + r.captures[i].after, r.captures[i], params) as unknown as Capture,
      );
  } else if (c.world.capture)
    for (let i = 0; i < r.captures.length; i++) {
      const x = r.captures[i];
      const repr = copyRepr(x.repr);
      c.world.captures.push(new DeviceCapture(t0 + x.after, x.at, { repr } as unknown as WireBytes));
    }
  if (r.timer) c.world.schedule(t0 + r.timer.after, r.timer.ev);
  c.world.now = t0 + r.duration;
  return r.traces.map((t) => freezeTrace(t.flow, t.disposition, t.steps as never, t.counters));
}

const real = buildCluster(seedCluster(), mode);
const fast = buildCluster(seedCluster(), mode);
real.world.capture = capture;
fast.world.capture = capture;
let sport = 40000;
for (let i = 0; i < 300; i++) {
  walk(real, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080, sport });
  walk(fast, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080, sport: sport++ });
}
const rec = record(fast, sport);
const block = 1000;
let realMs = 0;
let replayMs = 0;
let rs = sport;
for (let i = 0; i < 300; i++) replay(fast, rec); // warm-up of the replay itself
for (let done = 0; done < n; done += block) {
  let c0 = process.cpuUsage();
  for (let i = 0; i < block; i++)
    walk(real, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080, sport: rs++ });
  let u = process.cpuUsage(c0);
  realMs += (u.user + u.system) / 1000;
  c0 = process.cpuUsage();
  for (let i = 0; i < block; i++) replay(fast, rec);
  u = process.cpuUsage(c0);
  replayMs += (u.user + u.system) / 1000;
}
const walks = Math.ceil(n / block) * block;
console.log(
  `${mode}${capture ? ' (captures on)' : ''}: a recorded walk's ${rec.deltas.length} counter deltas, ${rec.mib.length} MIB, ` +
    `${rec.timer ? 1 : 0} timer, ${rec.captures.length} captures, ${rec.traces.reduce((s, t) => s + t.steps.length, 0)} steps; ` +
    `real walks ${((realMs * 1000) / walks).toFixed(1)} µs, replays ${((replayMs * 1000) / walks).toFixed(2)} µs a walk (${walks} each, alternated blocks of ${block})`,
);
