/**
 * The oracle of a flow cache for warm walks (issue 16): a cache must give byte for byte the outputs
 * of the uncached walk in every state the world can be in. Two clusters are built the same (several
 * CNI modes, a kube-proxy cluster with Services, several seeds); one is prepared as the cache wants
 * it (`prepare(c, true)`), the other not; the very same random operations run on both:
 *
 *  - bursts of warm walks back to back (the same pods and port, consecutive source ports, a run
 *    walked again now and then), as issue 16's benchmark walks: the walks a cache would hit;
 *  - walks between random pods, nodes and Services, TCP, UDP and ICMP, random ports (listening or
 *    not), sizes that fragment, source ports fresh, repeated (the same connection again: conntrack
 *    and socket lookups hit) or left to the ephemeral hash, with and without the whole exchange,
 *    with and without steps kept, kube-proxy's random choice pinned to an endpoint;
 *  - time passing, by steps that land just before and after the timers of a walk (the SYN-ACK's
 *    retransmission at 1 s, 3 s…, neighbours' REACHABLE → STALE → gone, FDB ageing at 300 s,
 *    conntrack's SYN_SENT/SYN_RECV/ESTABLISHED timeouts), timers firing on the way;
 *  - writes through the emulated tools: `ip route del/add/replace`, `ip neigh del/replace/flush`,
 *    `bridge fdb del/replace`, `iptables -I/-D/-F` (filter and nat), `conntrack -F`,
 *    `ip link set … down/up/mtu`, `ip addr del`, `ipset create/add/del/flush` and a rule matching
 *    the set, `sysctl -w` (forwarding, rp_filter, port range, bridge-nf, SYN retries, conntrack max).
 *
 * After every operation both sides must be the same: the walk's traces rendered as `--json` and as
 * text (steps, events, counters, disposition, flow), every step's frame bytes, the error thrown if
 * any, each command's output; and the whole World's data (snapshot.ts worldToData: clock, timers and
 * their order, every table and counter, conntrack, sockets, captures with their bytes).
 *
 * `prepare` is the one place a cache is switched: today nothing is (the measured prototype of
 * bench/flow-replay.ts is an experiment, not wired in: see BENCHMARKS.md, 2026-12-06 s15-flow), so
 * the two sides run the same code and the oracle checks that the model is deterministic across
 * clusters (no module-level memo leaks one cluster's state into another's walk). The oracle's own
 * power is checked below: each kind of error a replay could make (a device counter, an FDB or
 * neighbour time, an IP id, a MIB counter, a rule counter, a conntrack entry, a timer, the clock, a
 * capture, one step, one frame byte, one counter of a trace) is injected on one side only, and the
 * oracle must find it.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { seedCluster } from '../src/cluster/seed.ts';
import type { CniMode } from '../src/cluster/spec.ts';
import { buildCluster } from '../src/cni/build.ts';
import { walk } from '../src/trace/walk.ts';
import type { Trace } from '../src/trace/types.ts';
import { tsPart, twinsOf } from '../src/trace/replay.ts';
import { parseFrame, parseIpv4Packet } from '../src/wire/packet.ts';
import { capturesText, differ, FAULTS, lastCache, SPECS, traceText, worldText } from './flow-oracle.ts';
import { enableFlowCache, type FlowCacheGuard, type FlowCacheStats } from '../src/trace/flow-cache.ts';
import { runUntil } from '../src/trace/exchange.ts';
import { runCommand } from '../src/tools/index.ts';

describe('flow cache oracle: walks and worlds alike with the cache and without', () => {
  for (const name of Object.keys(SPECS))
    for (const seed of [1, 2, 3])
      test(`${name}, seed ${seed}`, () => {
        // (services seed 2 found a lost neighbour timer: test/timers.test.ts, "a neighbour timer that falls due while a walk runs")
        const d = differ(name, seed * 7919 + name.length, 70);
        assert.equal(d, undefined, d);
      });
});

describe('flow cache oracle: finds each kind of error a replay could make', () => {
  for (const f of FAULTS)
    test(f.name, () => {
      // the fault is applied at the first chance from operation 5 on (a trace fault at the next
      // walk with steps, frames or counters to change): the oracle must report a difference
      const d = differ('flannel-vxlan', 4242, 60, { at: 5, f });
      assert.notEqual(d, undefined, `${f.name}: the oracle saw no difference`);
      assert.doesNotMatch(d!, /never applied/);
    });
});

/**
 * What a replay of a warm walk would have to put into the frames it recorded: the header fields
 * that differ between two warm walks' captured frames (walks 20 apart: 1.8 ms, so that the TCP
 * timestamp's millisecond moves too), as the last two names of their path in the frame's
 * representation (a tunnel's inner headers included). Every other field of all 18–26 frames is
 * the same from walk to walk. A datapath change that makes another field vary per walk fails
 * this, and tells a cache what it must substitute now.
 */
describe('flow cache: the header fields that differ from one warm walk to the next', () => {
  const TCP = ['ip.id', 'tcp.ack', 'tcp.dstPort', 'tcp.seq', 'tcp.srcPort', 'timestamp.ecr', 'timestamp.val'];
  const cases: [CniMode, number, string[]][] = [
    ['flannel-vxlan', 26, [...TCP, 'udp.srcPort'].sort()],
    ['calico-vxlan', 22, [...TCP, 'udp.srcPort'].sort()],
    ['calico-bgp', 18, TCP],
    ['calico-ipip', 22, TCP],
    ['flannel-host-gw', 22, TCP],
  ];
  for (const [mode, frames, fields] of cases)
    test(mode, () => {
      const c = buildCluster(seedCluster(), mode);
      const req = { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 } as const;
      for (let i = 0; i < 50; i++) walk(c, { ...req, sport: 40000 + i });
      const captured = (sport: number) => {
        const before = c.world.captures.length;
        walk(c, { ...req, sport });
        return c.world.captures
          .slice(before)
          .map((x) =>
            c.world.ns(x.netns).link(x.dev)?.type === 'ipip' ? parseIpv4Packet(x.frame) : parseFrame(x.frame),
          );
      };
      const a = captured(41000);
      for (let i = 1; i < 20; i++) walk(c, { ...req, sport: 41000 + i });
      const b = captured(41020);
      assert.equal(a.length, frames);
      assert.equal(b.length, frames);
      const differ = new Set<string>();
      const visit = (x: unknown, y: unknown, path: string[]) => {
        if (x && typeof x === 'object' && !(x instanceof Uint8Array)) {
          const ox = x as Record<string, unknown>;
          const oy = (y ?? {}) as Record<string, unknown>;
          for (const k of new Set([...Object.keys(ox), ...Object.keys(oy)]))
            visit(ox[k], oy[k], [...path, k]);
        } else if (
          x instanceof Uint8Array ? !(y instanceof Uint8Array) || Buffer.compare(x, y) !== 0 : x !== y
        )
          differ.add(path.slice(-2).join('.'));
      };
      a.forEach((f, i) => visit(f, b[i], []));
      assert.deepEqual([...differ].sort(), fields);
    });
});

/**
 * The flow cache in its shadow form (src/trace/flow-cache.ts): it must really find its templates
 * on warm bursts (a cache that never hits would pass the oracle), every hit checked against the
 * real walk; and each guard the oracle's operations can show to be needed must be: without it,
 * the check finds a hit whose walk is not its template.
 */
describe('flow cache: warm bursts hit, every hit checked', () => {
  for (const mode of [
    'flannel-vxlan',
    'calico-vxlan',
    'calico-bgp',
    'calico-ipip',
    'flannel-host-gw',
  ] as const)
    test(mode, () => {
      const c = buildCluster(seedCluster(), mode);
      const fc = enableFlowCache(c, { check: true });
      for (let i = 0; i < 30; i++)
        walk(c, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080, sport: 40000 + i });
      // the first walk finds no template; the first warm one may still write state (a
      // neighbour's DELAY), every later one is a hit, checked
      assert.ok(fc.stats.hits >= 27, JSON.stringify(fc.stats));
      assert.equal(fc.stats.checked, fc.stats.hits);
      assert.equal(fc.size, 1);
    });
});

describe('flow cache: each guard the oracle can show needed is', () => {
  // (the generations of s16-gen are the guard; the slow fingerprint of every namespace's data,
  // its first stand-in, is kept as an option and checked the same way)
  const cases: [FlowCacheGuard[], string, number, boolean][] = [
    [['generation'], 'flannel-vxlan', 2, false],
    [['generation'], 'calico-bgp', 1, false],
    [['state'], 'flannel-vxlan', 2, true],
    [['socket-taken', 'tuple-taken'], 'flannel-host-gw', 1, false],
  ];
  for (const [guards, spec, seed, fingerprint] of cases)
    test(`${guards.join(' + ')} (${spec}, seed ${seed}${fingerprint ? ', fingerprint' : ''})`, () => {
      const d = differ(spec, seed * 7919 + spec.length, 70, undefined, undefined, {
        unguarded: guards,
        fingerprint,
      });
      assert.match(d ?? '', /flow cache: the walk differs from its template/);
    });

  test('stateful-match: a rule that draws per flow (-m statistic) in a crossed namespace', () => {
    const run = (unguarded: FlowCacheGuard[]) => {
      const c = buildCluster(seedCluster(), 'flannel-vxlan');
      const fc = enableFlowCache(c, { check: true, unguarded });
      const r = runCommand(
        c,
        'node1',
        'iptables -I FORWARD -m statistic --mode random --probability 0.5 -j DROP',
      );
      assert.equal(r.code, 0, r.stderr);
      try {
        for (let i = 0; i < 30; i++)
          walk(c, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080, sport: 40000 + i });
        return fc.stats;
      } catch (e) {
        return (e as Error).message;
      }
    };
    const guarded = run([]);
    assert.ok(typeof guarded === 'object' && guarded.misses['stateful-match'] > 0, JSON.stringify(guarded));
    assert.match(String(run(['stateful-match'])), /flow cache: the walk differs from its template/);
  });

  test('ct-expires: a conntrack entry that expires while the walk runs (no timer of the World marks it)', () => {
    const run = (unguarded: FlowCacheGuard[]) => {
      const c = buildCluster(seedCluster(), 'flannel-vxlan');
      const fc = enableFlowCache(c, { check: true, unguarded });
      const req = { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 } as const;
      for (let i = 0; i < 3; i++) walk(c, { ...req, sport: 40000 + i });
      // the first entry to expire, while the second walk from here runs (the first re-records:
      // 30 s have changed the neighbours' states)
      let first = Infinity;
      for (const ns of c.world.netns.values())
        for (const e of ns.conntrack.entries) first = Math.min(first, e.expires);
      runUntil(c, first - 130);
      try {
        walk(c, { ...req, sport: 40003 });
        walk(c, { ...req, sport: 40004 });
        return fc.stats;
      } catch (e) {
        return (e as Error).message;
      }
    };
    const guarded = run([]);
    assert.equal(typeof guarded, 'object');
    assert.ok(
      (guarded as FlowCacheStats).misses['ct-expires'] || (guarded as FlowCacheStats).misses['timer-due'],
    );
    assert.match(String(run(['ct-expires', 'timer-due'])), /flow cache: the walk differs from its template/);
  });
});

describe('flow cache replay: a hit written back, not walked, the same as walked', () => {
  // the oracle with the replay on side A: every hit's plan is written (replay.ts), nothing walked;
  // the worlds and outputs after every operation must be B's, who walked
  let replayed = 0;
  for (const name of Object.keys(SPECS))
    for (const seed of [1, 2, 3])
      test(`oracle: ${name}, seed ${seed}`, () => {
        const d = differ(name, seed * 7919 + name.length, 70, undefined, undefined, { replay: true });
        assert.equal(d, undefined, d);
        replayed += lastCache!.stats.replayed;
      });
  test('the oracle replayed walks (not only walked them)', () => {
    assert.ok(replayed >= 100, `${replayed} replayed`);
  });

  /**
   * issue 16's benchmark, on two clusters: A with the replay, B walking; the walks' outputs, the
   * worlds and the captures compared at the end. Long enough that VXLAN source ports repeat (an
   * earlier flow's entries refreshed: the case has its own template)
   */
  /** whether a trace and its parts are frozen (`all`: its flow, counters and steps too, not only its disposition) */
  const frozenness = (t: Trace, all: boolean) =>
    [t, t.disposition, ...(all ? [t.flow, t.counters, t.steps] : [])].map((x) => Object.isFrozen(x)).join('');
  const burst = (mode: CniMode, n: number, to = 'pod-c') => {
    const a = buildCluster(seedCluster(), mode);
    const b = buildCluster(seedCluster(), mode);
    const fc = enableFlowCache(a, { replay: true });
    const outA: string[] = [];
    const outB: string[] = [];
    for (let i = 0; i < n; i++) {
      const req = { from: 'pod-a', to, proto: 'tcp', port: 8080, sport: 40000 + i } as const;
      const wa = walk(a, req);
      const wb = walk(b, req);
      // every 10th walk read whole (steps, frames, text): the others by their outcome, as the benchmark reads them
      if (i % 10 === 0 || i === n - 1) {
        outA.push(wa.traces.map(traceText).join('\n'));
        outB.push(wb.traces.map(traceText).join('\n'));
      } else {
        outA.push(wa.traces.map((t) => JSON.stringify(t.disposition)).join());
        outB.push(wb.traces.map((t) => JSON.stringify(t.disposition)).join());
      }
      // what JSON does not show: frozen or not (a replay copies some as literals of their type)
      outA.push(wa.traces.map((t) => frozenness(t, i % 10 === 0)).join());
      outB.push(wb.traces.map((t) => frozenness(t, i % 10 === 0)).join());
    }
    assert.deepEqual(outA, outB);
    assert.equal(worldText(a), worldText(b));
    assert.equal(capturesText(a, 0), capturesText(b, 0));
    return fc.stats;
  };
  test('flannel-vxlan: 2,500 warm walks, VXLAN source ports repeating', () => {
    const st = burst('flannel-vxlan', 2500);
    assert.ok(st.replayed >= 2400, JSON.stringify(st));
    // a walk whose VXLAN flow's entries were there already: replayed from the template of that case
    assert.ok((st.misses['no-template-of-case'] ?? 0) >= 1, JSON.stringify(st));
  });
  for (const mode of ['calico-bgp', 'calico-vxlan', 'flannel-host-gw'] as const)
    test(`${mode}: 300 warm walks`, () => {
      const st = burst(mode, 300);
      assert.ok(st.replayed >= 290, JSON.stringify(st));
    });
  test('calico-ipip: 300 warm walks, the tunnel flow refreshed by each', () => {
    const st = burst('calico-ipip', 300);
    assert.ok(st.replayed >= 290, JSON.stringify(st));
  });
  test('same node: flannel-vxlan pod-a → pod-b', () => {
    const st = burst('flannel-vxlan', 300, 'pod-b');
    assert.ok(st.replayed >= 290, JSON.stringify(st));
  });
});

describe('a replay and the TCP timestamps its template made', () => {
  // (value, clock µs) as the template's walk logged them: 5 made twice, 0.4 ms apart in one ms
  const ts = [5, 1_000_500, 7, 1_000_600, 5, 1_000_900, 7, 1_000_600];
  const plan = { ts, tsTwins: twinsOf(ts) };

  test('a value made again at another time is paired with its first; made again at the same time, not', () => {
    assert.deepEqual(plan.tsTwins, [0, 4]);
  });

  test('a replay that would move the two into different ms is refused; one that keeps them in one, not', () => {
    // 1,000.7 and 1,001.1 ms: apart
    assert.equal(tsPart(plan, 200), true);
    // 1,000.55 and 1,000.95 ms: together
    assert.equal(tsPart(plan, 50), false);
    // a whole second later: together
    assert.equal(tsPart(plan, 1_000_000), false);
  });
});
