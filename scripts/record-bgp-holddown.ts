/**
 * Records what real BIRD 2 (Debian bird2) does when a node of Calico's mesh goes silent (its eth0
 * down: no FIN, no RST, no NOTIFICATION; its peers' segments to it go nowhere), for
 * test/bgp-holddown.test.ts. Needs root, network namespaces and bird2; it takes about 5 minutes
 * (BIRD's hold time, 240 s, which Calico's template keeps); run it alone:
 *
 *   flock /tmp/podwalk-lab.lock npx tsx scripts/record-bgp-holddown.ts
 *
 * The lab of scenarios/host-gw-across-subnets.yaml in calico-bgp (node1 and node2 on lan0, node3
 * on lan1 behind the router; each node's BIRD configured as calico-node's confd configures it,
 * src/lab/bird.ts) comes up, and once its BIRDs agree with the model (test/bird-lab.ts), node3's
 * eth0 goes down. Then, every 0.5 s for OBSERVE seconds, every node's `birdc show protocols`, `birdc show
 * route` and `ip route` are read; each time one of them changes (BIRD's HH:MM:SS.mmm times masked), the
 * outputs are kept with the time since the link went down, together with `birdc show protocols
 * all` of the sessions with node3 (their hold and keepalive timers). The lab always comes down
 * again.
 *
 * Output: test/golden/bgp/holddown.json (OUT=FILE: elsewhere).
 *
 * SOON=1 is the shorter run (OBSERVE=200 is enough for it): the link goes down just before the
 * silent node's next KEEPALIVE to the peer it sends one to first (its keepalive timer, read with
 * `birdc show protocols all`), so that peer has heard nothing for 60 to 80 s already and its hold
 * timer runs out 100 to 180 s later instead of up to 240 s; the other peer's, as it falls.
 * Nothing of Calico's configuration changes.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadCluster } from '../src/cluster/load.ts';
import { buildCluster } from '../src/cni/build.ts';
import { labChange, labDown, labExec, labUp, pause, run } from '../src/lab/host.ts';
import { birdLabSettles, maskTimes } from '../test/bird-lab.ts';

const ROOT = join(import.meta.dirname, '..');
const CLUSTER = 'scenarios/host-gw-across-subnets.yaml';
const FAULT = { node: 'node3', command: 'ip link set eth0 down' };
/** the silent node's peers' protocol for it, and its own for them (Calico's names) */
const SESSIONS: Record<string, string[]> = {
  node1: ['Mesh_192_168_2_12'],
  node2: ['Mesh_192_168_2_12'],
  node3: ['Mesh_192_168_1_10', 'Mesh_192_168_1_11'],
};
const OBSERVE = Number(process.env.OBSERVE ?? 400);

const file = join(ROOT, CLUSTER);
const spec = loadCluster(readFileSync(file, 'utf8'), file);
spec.name = 's10hold';
const c = buildCluster(spec, 'calico-bgp');

interface Snapshot {
  /** seconds since the link went down (ms precision) */
  t: number;
  outputs: Record<string, string>;
  /** `birdc show protocols all NAME` of the sessions with the silent node, and when each was read */
  timers: Record<string, { t: number; out: string }>;
}

labDown(c);
const st = await labUp(c);
try {
  const settled = await birdLabSettles(c, st);
  process.stderr.write(`converged, the model agrees (${settled} ms)\n`);
  const ctl = (node: string) => st.birds!.find((b) => b.netns === node)!.ctl;
  const read = () => {
    const outputs: Record<string, string> = {};
    for (const n of c.nodes)
      for (const cmd of ['show protocols', 'show route']) {
        const r = labExec(st, n.name, ['birdc', '-s', ctl(n.name), ...cmd.split(' ')]);
        outputs[`${n.name}: birdc ${cmd}`] = r.stdout + r.stderr;
      }
    for (const n of c.nodes) outputs[`${n.name}: ip route`] = labExec(st, n.name, ['ip', 'route']).stdout;
    return outputs;
  };
  let since = () => 0;
  const timers = () => {
    const out: Snapshot['timers'] = {};
    for (const [node, protos] of Object.entries(SESSIONS))
      for (const p of protos) {
        const t = since();
        const argv = ['birdc', '-s', ctl(node), 'show', 'protocols', 'all', p];
        out[`${node}: birdc show protocols all ${p}`] = { t, out: labExec(st, node, argv).stdout };
      }
    return out;
  };
  const snapshots: Snapshot[] = [];
  const before = { t: 0, outputs: read(), timers: timers() };
  if (process.env.SOON) {
    // the silent node's keepalive timers now: the fault a second before the first fires
    const ka = SESSIONS[FAULT.node].map((p) => {
      const argv = ['birdc', '-s', ctl(FAULT.node), 'show', 'protocols', 'all', p];
      return Number(/Keepalive timer: +([\d.]+)\//.exec(labExec(st, FAULT.node, argv).stdout)![1]);
    });
    const wait = Math.min(...ka) - 1;
    process.stderr.write(`keepalive timers ${ka.join(', ')} s: the fault in ${wait} s\n`);
    if (wait > 0) await pause(wait * 1000);
  }
  // the time starts as the command does (`ip link set` returns at once; labChange then waits
  // for the lab's links to settle)
  const t0 = performance.now();
  // BIRD's clock (TM_ISO_SHORT_MS, local time) at that moment, for its Since columns
  const d = new Date();
  const clock = `${d.toTimeString().slice(0, 8)}.${String(d.getMilliseconds()).padStart(3, '0')}`;
  since = () => Math.round(performance.now() - t0) / 1000;
  const r = await labChange(st, FAULT.node, FAULT.command);
  if (r.code !== 0) throw new Error(`${FAULT.node}: ${FAULT.command}: ${r.stderr}`);
  snapshots.push({ t: since(), outputs: read(), timers: timers() });
  let last = snapshots[0].outputs;
  const same = (a: Record<string, string>, b: Record<string, string>) =>
    Object.keys(a).every((k) => maskTimes(a[k]) === maskTimes(b[k]));
  while (since() < OBSERVE) {
    await pause(500);
    const t = since();
    const now = read();
    if (same(now, last)) continue;
    snapshots.push({ t, outputs: now, timers: timers() });
    process.stderr.write(
      `${t} s: ${Object.keys(now)
        .filter((k) => maskTimes(now[k]) !== maskTimes(last[k]))
        .join(', ')}\n`,
    );
    last = now;
  }
  snapshots.push({ t: since(), outputs: read(), timers: timers() });
  const bird = run(['bird', '--version']);
  const golden = {
    bird: (bird.stdout + bird.stderr).trim(),
    kernel: run(['uname', '-r']).stdout.trim(),
    cluster: CLUSTER,
    mode: 'calico-bgp',
    fault: `${FAULT.node}: ${FAULT.command}`,
    clock,
    before,
    after: snapshots,
  };
  const out = process.env.OUT ?? join(ROOT, 'test/golden/bgp/holddown.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(golden, null, 2) + '\n');
  process.stderr.write(`wrote ${snapshots.length} snapshots\n`);
} finally {
  labDown(c);
}
