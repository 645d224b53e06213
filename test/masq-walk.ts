/**
 * What a walk from a pod to a host outside the cluster must show when the CNI masquerades it on
 * the pod's node (felix's cali-nat-outgoing, flanneld's FLANNEL-POSTRTG), and when it does not:
 * shared by test/felix-nat.test.ts and test/flannel-masq.test.ts.
 */
import assert from 'node:assert/strict';
import type { Cluster } from '../src/cni/build.ts';
import { explainDrop } from '../src/diagnose/explain.ts';
import type { NfDecision, StepEvent } from '../src/kernel/events.ts';
import type { Trace } from '../src/trace/types.ts';
import { walk, type Walk, type WalkRequest } from '../src/trace/walk.ts';

/** the steps of a walk of one kind of event */
export function events<T extends StepEvent['type']>(t: Trace, type: T) {
  return t.steps.flatMap((s) => (s.ev.type === type ? [{ s, ev: s.ev as StepEvent & { type: T } }] : []));
}

/**
 * `req` from a pod on node1 (192.168.1.10) to the outside host: delivered, one MASQUERADE on
 * node1 in nat POSTROUTING (returned for the caller to check which rule), the source the node's
 * address, the answer to it un-NATed back to the pod's address and port
 */
export function masqueradedOut(
  c: Cluster,
  req: WalkRequest,
): {
  w: Walk;
  decision: NfDecision;
  before: { src: string; sport: number };
  after: { src: string; sport: number };
} {
  const pod = c.pods.find((p) => p.name === req.from)!;
  const w = walk(c, req);
  assert.equal(w.request.disposition.kind, 'delivered', JSON.stringify(w.request.disposition));
  const nf = events(w.request, 'netfilter').filter(
    (x) => x.ev.decision.table === 'nat' && x.ev.decision.nat === 'MASQUERADE',
  );
  assert.equal(nf.length, 1);
  assert.equal(nf[0].s.netns, 'node1');
  assert.equal(nf[0].ev.decision.hook, 'POSTROUTING');
  assert.equal(nf[0].ev.decision.rule?.rule.origin?.kind, 'cni');
  // the source becomes node1's eth0 address
  const setup = events(w.request, 'nat-setup').filter((x) => x.ev.byRule);
  assert.equal(setup.length, 1);
  assert.equal(setup[0].ev.before.src, pod.ip);
  assert.equal(setup[0].ev.after.src, '192.168.1.10');
  // what the outside host got: from node1
  const rx = w.request.steps.filter((s) => s.netns === 'outside' && s.ev.type === 'deliver');
  assert.equal(rx.length, 1);
  // the answer goes to node1's address, conntrack turns it back into the pod's
  assert.equal(w.reply?.disposition.kind, 'delivered', JSON.stringify(w.reply?.disposition));
  assert.equal(w.reply?.flow.dst, '192.168.1.10');
  const back = events(w.reply!, 'nat-rewrite').filter((x) => x.s.netns === 'node1');
  assert.equal(back.length, 1);
  assert.equal(back[0].ev.manip, 'dst');
  assert.equal(back[0].ev.after.dst, pod.ip);
  assert.equal(back[0].ev.after.dport, setup[0].ev.before.sport);
  return { w, decision: nf[0].ev.decision, before: setup[0].ev.before, after: setup[0].ev.after };
}

/**
 * pod-a to the outside host unmasqueraded: the pod's address, answered through the router, which
 * drops it; the diagnosis names the CNI setting (`why`) among the likely causes, and not for the
 * outside host's own packet to the pod (no masquerade would carry that)
 */
export function keptAddressOut(c: Cluster, why: RegExp): void {
  const podA = c.pods.find((p) => p.name === 'pod-a')!;
  const w = walk(c, { from: 'pod-a', to: 'outside', proto: 'tcp', port: 8080 });
  assert.equal(w.request.disposition.kind, 'delivered');
  assert.equal(events(w.request, 'nat-setup').filter((x) => x.ev.byRule).length, 0);
  assert.equal(w.reply?.flow.dst, podA.ip);
  // outside has no route to the pod network: its answer leaves by its default route, to the router
  assert.ok(w.reply!.steps.some((s) => s.netns === 'router'));
  assert.notEqual(w.reply!.disposition.kind, 'delivered');
  const causes = explainDrop(c, w.reply!)?.causes ?? [];
  assert.equal(causes.filter((x) => why.test(x)).length, 1, causes.join('\n'));
  const inbound = walk(c, { from: 'outside', to: 'pod-a', proto: 'icmp' });
  assert.equal(inbound.request.disposition.kind, 'dropped');
  assert.deepEqual(
    (explainDrop(c, inbound.request)?.causes ?? []).filter((x) => why.test(x)),
    [],
  );
}
