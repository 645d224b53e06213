/**
 * The kernel timers of the model, each with the kernel's default constants and the function it
 * follows: World's clock and timer queue, neigh_timer_handler (net/core/neighbour.c), the PMTU
 * exceptions of __ip_rt_update_pmtu (net/ipv4/route.c), the ICMP rate limits of
 * icmpv4_xrlim_allow / icmp_global_allow (net/ipv4/icmp.c, net/ipv4/inetpeer.c), and
 * tcp_retransmit_timer / tcp_write_timeout (net/ipv4/tcp_timer.c).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { seedCluster } from '../src/cluster/seed.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { World } from '../src/kernel/world.ts';
import { payload } from '../src/trace/walk.ts';
import type { Frame } from '../src/wire/types.ts';
import { parseFrame } from '../src/wire/packet.ts';

const S = 1_000_000;

function cluster(): Cluster {
  return buildCluster(seedCluster(), 'flannel-vxlan');
}

/** ARP requests pod-a put on its eth0, with their times */
function arpProbes(c: Cluster, netns = 'pod-a', dev = 'eth0'): { time: number; frame: Frame }[] {
  return c.world.captures
    .filter((x) => x.netns === netns && x.dev === dev && x.dir === 'out')
    .map((x) => ({ time: x.time, frame: parseFrame(x.frame) }))
    .filter((x) => x.frame.payload.kind === 'arp' && x.frame.payload.arp.op === 1);
}

function echo(c: Cluster, from: string, dst: string, seq: number): void {
  c.sockets.sendEcho(c.world.ns(from), dst, 0x1234, seq, payload(56), false);
}

describe('World: one clock, one timer queue', () => {
  test('timers fire in (time, arming order), each at its own time; run() leaves the clock at its end', () => {
    const w = new World('t');
    const fired: string[] = [];
    w.onTimer = (ev) => fired.push(`${w.now}:${ev.kind === 'neigh' ? ev.ip : ev.local}`);
    w.schedule(3 * S, { kind: 'neigh', netns: 'x', ip: 'c', dev: 'd' });
    w.schedule(1 * S, { kind: 'neigh', netns: 'x', ip: 'a', dev: 'd' });
    w.schedule(1 * S, { kind: 'neigh', netns: 'x', ip: 'b', dev: 'd' });
    w.schedule(9 * S, { kind: 'neigh', netns: 'x', ip: 'z', dev: 'd' });
    w.run(5 * S);
    assert.deepEqual(fired, ['1000000:a', '1000000:b', '3000000:c']);
    assert.equal(w.now, 5 * S);
    assert.equal(w.nextTimer(), 9 * S);
    w.advance(4 * S);
    assert.deepEqual(fired.at(-1), '9000000:z');
  });

  test('a timer is never armed in the past', () => {
    const w = new World('t');
    w.run(2 * S);
    const t = w.schedule(1 * S, { kind: 'neigh', netns: 'x', ip: 'a', dev: 'd' });
    assert.equal(t.at, 2 * S);
  });
});

describe('neigh_timer_handler (net/core/neighbour.c), arp_tbl defaults', () => {
  test('a failed resolution: mcast_solicit 3 broadcast probes retrans_time_ms 1000 apart, FAILED at 3 s', () => {
    const c = cluster();
    const ns = c.world.ns('pod-a');
    echo(c, 'pod-a', '10.244.0.99', 1);
    const n = ns.neighbour('10.244.0.99', 'eth0')!;
    assert.equal(n.state, 'INCOMPLETE');
    assert.equal(n.queue?.length, 1);
    c.world.run(2.5 * S);
    assert.equal(n.state, 'INCOMPLETE', 'still retrying at 2.5 s');
    assert.equal(ns.arpStats.resFailed, 0);
    c.world.run(3 * S);
    assert.equal(n.state, 'FAILED');
    assert.equal(ns.arpStats.resFailed, 1);
    const probes = arpProbes(c);
    assert.deepEqual(
      probes.map((p) => p.time),
      [0, 1 * S, 2 * S],
    );
    assert.ok(probes.every((p) => p.frame.eth.dst === 'ff:ff:ff:ff:ff:ff'));
    // neigh_invalidate → arp_error_report: ICMP host unreachable for the queued packet
    assert.equal(c.stack.queue.length, 1);
    const icmp = c.stack.queue[0].pkt.payload;
    assert.ok(icmp.kind === 'icmp' && icmp.icmp.type === 3 && icmp.icmp.code === 1);
  });

  test('echo requests 1 s apart queue on one INCOMPLETE entry: 3 probes in all, 3 errors together', () => {
    const c = cluster();
    echo(c, 'pod-a', '10.244.0.99', 1);
    c.world.run(1 * S);
    echo(c, 'pod-a', '10.244.0.99', 2);
    c.world.run(2 * S);
    echo(c, 'pod-a', '10.244.0.99', 3);
    assert.equal(c.world.ns('pod-a').neighbour('10.244.0.99', 'eth0')!.queue?.length, 3);
    c.world.run(3 * S - 1);
    assert.equal(c.stack.queue.length, 0, 'no error before the entry fails');
    c.world.run(3 * S);
    assert.equal(arpProbes(c).length, 3);
    assert.equal(c.stack.queue.length, 3);
    assert.equal(c.world.unresolved, 0);
  });

  test('unres_qlen 101: the oldest queued packet is dropped beyond it (unres_discards)', () => {
    const c = cluster();
    const ns = c.world.ns('pod-a');
    for (let i = 1; i <= 103; i++) echo(c, 'pod-a', '10.244.0.99', i);
    assert.equal(ns.neighbour('10.244.0.99', 'eth0')!.queue?.length, 101);
    assert.equal(ns.arpStats.unresDiscards, 2);
  });

  test('REACHABLE ages to STALE after reachable_time, drawn from [base/2, 3·base/2) of base_reachable_time_ms 30000', () => {
    const c = cluster();
    echo(c, 'pod-a', '10.244.0.6', 1);
    const n = c.world.ns('pod-a').neighbour('10.244.0.6', 'eth0')!;
    assert.equal(n.state, 'REACHABLE');
    const reach = c.stack.reachableTime(c.world.ns('pod-a'), 'eth0');
    assert.ok(reach >= 15 * S && reach < 45 * S, `reachable_time ${reach}`);
    c.world.run(n.confirmed! + reach);
    // time_before_eq(now, confirmed + reachable_time) still holds at the boundary: the timer is
    // re-armed, no sooner than HZ/100 later
    assert.equal(n.state, 'REACHABLE');
    c.world.run(n.confirmed! + reach + 10_000);
    assert.equal(n.state, 'STALE');
  });

  test('a used STALE entry: DELAY, delay_first_probe_time 5 s later PROBE with a unicast probe, the reply makes it REACHABLE', () => {
    const c = cluster();
    echo(c, 'pod-a', '10.244.0.6', 1);
    const n = c.world.ns('pod-a').neighbour('10.244.0.6', 'eth0')!;
    c.world.run(60 * S);
    assert.equal(n.state, 'STALE');
    const before = arpProbes(c).length;
    echo(c, 'pod-a', '10.244.0.6', 2);
    assert.equal(n.state, 'DELAY');
    c.world.run(65 * S - 1);
    assert.equal(n.state, 'DELAY');
    assert.equal(arpProbes(c).length, before, 'no probe while DELAY');
    c.world.run(65 * S);
    const probes = arpProbes(c).slice(before);
    assert.equal(probes.length, 1);
    assert.equal(probes[0].time, 65 * S);
    assert.equal(probes[0].frame.eth.dst, n.lladdr, 'ucast_solicit: the probe goes to the known address');
    assert.equal(n.state, 'REACHABLE', 'pod-b answered the unicast probe');
  });

  test('a PROBE that goes unanswered: ucast_solicit 3 unicast probes, then FAILED', () => {
    const c = cluster();
    echo(c, 'pod-a', '10.244.0.6', 1);
    const n = c.world.ns('pod-a').neighbour('10.244.0.6', 'eth0')!;
    c.world.run(60 * S);
    // pod-b goes away: its address is gone, nothing answers
    const podB = c.world.ns('pod-b').link('eth0')!;
    podB.addrs = [];
    echo(c, 'pod-a', '10.244.0.6', 2);
    c.world.run(65 * S);
    assert.equal(n.state, 'PROBE');
    c.world.run(67 * S);
    assert.equal(n.state, 'PROBE');
    c.world.run(68 * S);
    assert.equal(n.state, 'FAILED');
    const unicast = arpProbes(c).filter((p) => p.frame.eth.dst !== 'ff:ff:ff:ff:ff:ff');
    assert.deepEqual(
      unicast.map((p) => p.time),
      [65 * S, 66 * S, 67 * S],
    );
  });
});
