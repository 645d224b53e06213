/**
 * The IP id of a tunnel's outer packet (vxlan_xmit → iptunnel_xmit: no DF, so the namespace's
 * counter): the World's derive('ipid', NETNS) plus the namespace's counter, each packet the next
 * number. The base is kept per namespace by the datapath since session 13; this checks every
 * outer packet of several walks, both ways and on both nodes, against the formula.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seedCluster } from '../src/cluster/seed.ts';
import { buildCluster } from '../src/cni/build.ts';
import { walk } from '../src/trace/walk.ts';

test("a VXLAN outer packet's IP id is derive('ipid', its netns) plus the netns's counter", () => {
  const c = buildCluster(seedCluster(), 'flannel-vxlan');
  const senders = new Set<string>();
  let checked = 0;
  for (let i = 0; i < 4; i++) {
    // the counter of every namespace before the walk: each outer packet a node sends takes the next
    const next = new Map([...c.world.netns.values()].map((ns) => [ns.name, ns.ipId]));
    const w = walk(c, {
      from: i % 2 ? 'pod-c' : 'pod-a',
      to: i % 2 ? 'pod-a' : 'pod-c',
      proto: 'tcp',
      port: 8080,
      sport: 41000 + i,
    });
    for (const t of w.traces)
      for (const s of t.steps) {
        if (s.ev.type !== 'xmit' || s.ev.frame.payload.kind !== 'ipv4') continue;
        const p = s.ev.frame.payload;
        if (p.payload.kind !== 'udp' || p.payload.payload.kind !== 'vxlan') continue;
        // sent by this namespace (the encapsulating node), not forwarded by a segment
        if (p.ip.src !== c.nodes.find((n) => n.name === s.netns)?.addr) continue;
        const n = (next.get(s.netns)! + 1) & 0xffff;
        next.set(s.netns, n);
        assert.equal(p.ip.id, (c.world.derive('ipid', s.netns) + n) & 0xffff, `${s.netns} step ${s.n}`);
        senders.add(s.netns);
        checked++;
      }
  }
  assert.ok(checked >= 8, `${checked} outer packets checked`);
  assert.equal(senders.size, 2, 'both nodes encapsulated');
});
