/**
 * A recorded trace cannot be changed: the trace, its list of steps, its hops, flow, disposition
 * and counters are frozen; its steps are read-only by type (not frozen one by one: that was ~3 %
 * of a warm walk), which the compiler checks here: each `@ts-expect-error` below fails
 * `tsc --noEmit` as soon as the write it marks compiles. And a capture reads the bytes of the
 * frame the step beside it recorded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seedCluster } from '../src/cluster/seed.ts';
import { buildCluster } from '../src/cni/build.ts';
import { walk } from '../src/trace/walk.ts';
import type { Step, Trace } from '../src/trace/types.ts';

/** never called: what the compiler must refuse */
export function writes(t: Trace, s: Step): void {
  // @ts-expect-error a step's fields are read-only
  s.kind = 'rx';
  // @ts-expect-error s.n is read-only
  s.n = 0;
  // @ts-expect-error s.netns is read-only
  s.netns = '';
  // @ts-expect-error s.device is read-only
  s.device = '';
  // @ts-expect-error s.action is read-only
  s.action = '';
  // @ts-expect-error s.ev is read-only
  s.ev = { type: 'arp-ignore', target: '' };
  // @ts-expect-error s.time is read-only
  s.time = 0;
  // @ts-expect-error s.aux is read-only
  s.aux = '';
  // @ts-expect-error s.part is read-only
  s.part = '';
  // @ts-expect-error s.layer is read-only
  s.layer = 2;
  // @ts-expect-error s.frame is read-only
  s.frame = new Uint8Array();
  // @ts-expect-error a trace's list of steps is read-only
  t.steps.push(s);
  // @ts-expect-error t.steps is read-only
  t.steps[0] = s;
}

test('a walk’s traces, their steps, hops, flow, disposition and counters are frozen', () => {
  const c = buildCluster(seedCluster(), 'flannel-vxlan');
  const w = walk(c, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 });
  // a drop carries counters: one of each kind of trace
  const d = walk(c, { from: 'pod-a', to: 'pod-c', proto: 'udp', port: 9 });
  for (const t of [w.request, w.reply!, ...d.traces]) {
    assert.ok(t.steps.length > 0);
    for (const x of [
      t,
      t.steps,
      t.flow,
      t.disposition,
      t.counters,
      t.hops,
      ...t.hops,
      ...t.hops.map((h) => h.steps),
    ])
      assert.ok(Object.isFrozen(x));
    for (const c of t.counters) assert.ok(Object.isFrozen(c));
    assert.throws(() => (t.steps as Step[]).push(t.steps[0]), TypeError);
    assert.throws(() => ((t as { steps: unknown }).steps = []), TypeError);
  }
  assert.ok(
    d.traces.some((t) => t.counters.length > 0),
    'a trace with counters',
  );
});

test('a capture’s bytes are those of the step that recorded the frame on its device, read once', () => {
  const c = buildCluster(seedCluster(), 'flannel-vxlan');
  c.world.captures.length = 0;
  const w = walk(c, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 });
  const caps = c.world.captures;
  let compared = 0;
  for (const s of [...w.request.steps, ...w.reply!.steps]) {
    if (!s.frame || (s.kind !== 'xmit' && s.kind !== 'rx')) continue;
    const dir = s.kind === 'xmit' ? 'out' : 'in';
    const cap = caps.find(
      (k) => k.time === s.time && k.netns === s.netns && k.dev === s.device && k.dir === dir,
    );
    assert.ok(cap, `a capture of step ${s.n}`);
    assert.deepEqual(cap.frame, s.frame, `step ${s.n} ${s.netns} ${s.device}`);
    assert.equal(cap.frame, cap.frame, 'emitted once');
    compared++;
  }
  assert.ok(compared >= 20, `${compared} frames compared`);
});
