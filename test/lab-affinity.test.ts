/**
 * sessionAffinity ClientIP on the real kernel with two flows from the same client (root only;
 * skipped with the reason elsewhere; run it under `flock /tmp/podwalk-lab.lock`). The affinity
 * scenario's lab (src/lab/svc-scenarios.ts, svc-affinity) takes endpoint A for the first flow (its
 * statistic rules set to 1 and 0, the model's draws pinned the same way). Then every statistic rule
 * is set to take endpoint B instead (`iptables -t nat -R` in the lab; the model's draws pinned to
 * B), and the client connects again from another port: kube-proxy's `-m recent --rcheck` rules,
 * before the random ones in KUBE-SVC-, send it to A on both sides, which must agree on every
 * interface and on `conntrack -L` (two entries, both DNATed to A).
 */
import { staleNeighbours } from './lab-neigh.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildCluster } from '../src/cni/build.ts';
import { forceEndpoint, keepSourcePorts } from '../src/lab/differential.ts';
import { stateDiffs } from '../src/lab/diff.ts';
import { labChange, labDown, labUnavailable, labUp } from '../src/lab/host.ts';
import { differenceReport } from '../src/lab/compare.ts';
import { generateScenario } from '../src/lab/scenarios.ts';
import { MORE_FIRST, MORE_KINDS } from '../src/lab/svc-scenarios.ts';
import { labTrace } from '../src/lab/trace.ts';
import { runCommand } from '../src/tools/index.ts';
import { endpointDraws, resolveService } from '../src/trace/walk.ts';

const why = labUnavailable();
/** the first svc-affinity seed */
const SEED = MORE_FIRST + MORE_KINDS.indexOf('svc-affinity');

test(
  'sessionAffinity ClientIP: a second connection from the client reaches the first one’s endpoint, on the kernel and in the model',
  { skip: why, timeout: 240_000 },
  async () => {
    const drawn = generateScenario(SEED);
    // a cluster name of its own: the differential suite, in the other lane, runs seed 2034 as
    // cluster d2034 at a time of its own, and each lab up first removes its cluster's lab
    const s = { ...drawn, spec: { ...drawn.spec, name: 'affinity' } };
    assert.equal(s.faultKind, 'svc-affinity');
    const a = s.flow.endpoint!;
    const b = ['p2a', 'p3a'].find((p) => p !== a)!;
    const base = buildCluster(s.spec, s.mode);
    forceEndpoint(base, s.flow);
    const sim = buildCluster(s.spec, s.mode);
    for (const c of [base, sim]) keepSourcePorts(c);
    // the rules that take B: the same chains with B's draws, as iptables-save prints them
    const other = buildCluster(s.spec, s.mode);
    forceEndpoint(other, { ...s.flow, endpoint: b });
    keepSourcePorts(other);
    const target = resolveService(other, s.flow.to, s.flow.port, s.flow.proto)!;
    const replace = endpointDraws(other, target, b).map((d) => {
      const lines = runCommand(other, d.node, 'iptables-save -t nat')
        .stdout.split('\n')
        .filter((l) => l.startsWith(`-A ${d.chain} `));
      return {
        node: d.node,
        command: `iptables -t nat -R ${d.chain} ${d.index} ${lines[d.index - 1].slice(3 + d.chain.length + 1)}`,
      };
    });
    assert.ok(replace.length > 0);

    labDown(base);
    const state = await labUp(base);
    try {
      const first = await labTrace(state, sim, s.flow);
      const report = (t: typeof first) => differenceReport('simulation', t.diffs).join('\n');
      assert.ok(first.agree, `first flow:\n${report(first)}`);
      assert.equal(first.client.code, 0, 'the first flow is answered on the kernel');

      for (const r of replace) {
        const done = await labChange(state, r.node, r.command);
        assert.equal(done.code, 0, `${r.node}: ${r.command}: ${done.stderr}`);
      }
      // the kernel's rules now take B for a client without a recent entry: the model's rules for B
      const [rules] = await stateDiffs(state, [other], ['iptables-save -t nat']);
      for (const t of rules.filter((t) => /^n\d$/.test(t.netns)))
        assert.ok(
          t.equal,
          `${t.netns}: iptables-save -t nat differs:\n--- model\n${t.sim}\n--- kernel\n${t.real}`,
        );
      const sport = first.sim.request.flow.sport! + 1;
      // the model's captures of the first flow are not the second one's
      sim.world.captures.length = 0;
      // the first flow's neighbours STALE on both sides (test/lab-neigh.ts; CI: three unicast
      // probes in the second flow, the kernel's entries run out between the flows)
      staleNeighbours(state, ['REACHABLE', 'DELAY', 'PROBE'], sim);
      const second = await labTrace(state, sim, { ...s.flow, endpoint: b, sport });
      assert.ok(second.agree, `second flow:\n${report(second)}`);
      assert.equal(second.client.code, 0, 'the second flow is answered on the kernel');

      const [tables] = await stateDiffs(state, [sim], ['conntrack -L']);
      for (const t of tables)
        assert.ok(t.equal, `${t.netns}: conntrack -L differs:\n--- model\n${t.sim}\n--- kernel\n${t.real}`);
      // both connections DNATed to A on the client's node
      const aIp = sim.pods.find((p) => p.name === a)!.ip;
      const node = tables.find((t) => t.netns === 'n1')!;
      const entries = node.real.split('\n').filter((l) => l.includes(`dst=${target.ip}`));
      assert.equal(entries.length, 2, node.real);
      for (const e of entries) assert.match(e, new RegExp(`src=${aIp.replaceAll('.', '\\.')} `), e);
    } finally {
      labDown(base);
    }
  },
);
