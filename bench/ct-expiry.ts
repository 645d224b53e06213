/**
 * Warm walks while conntrack entries expire all the time, in a process of its own: `node --import
 * tsx bench/ct-expiry.ts [MODE] [GAP_US] [WALKS]` (default flannel-vxlan, 5,000 µs, 40,000). One
 * built seed cluster, captures off, a new TCP connection per walk (pod-a → pod-c, source ports
 * from 1024 round again), the simulated clock moved GAP_US before each walk: after a minute of
 * simulated time (SYN_RECV's timeout) the table holds a steady number of entries, as many expire
 * as are made. Prints, per block of 5,000 walks, the CPU µs a walk (user + system), the simulated
 * time and the conntrack entries of every namespace together.
 */
import { seedCluster } from '../src/cluster/seed.ts';
import { CNI_MODES, type CniMode } from '../src/cluster/spec.ts';
import { buildCluster } from '../src/cni/build.ts';
import { walk } from '../src/trace/walk.ts';

const mode = (process.argv[2] ?? 'flannel-vxlan') as CniMode;
const gap = Number(process.argv[3] ?? 5000);
const total = Number(process.argv[4] ?? 40000);
const BLOCK = 5000;
if (!CNI_MODES.includes(mode) || !(gap >= 0) || !Number.isInteger(total) || total < BLOCK)
  throw new Error('usage: ct-expiry.ts [MODE] [GAP_US] [WALKS (≥ 5,000)]');
const c = buildCluster(seedCluster(), mode);
c.world.capture = false;
let sport = 1024;
for (let b = 0; b < Math.floor(total / BLOCK); b++) {
  const t0 = process.cpuUsage();
  for (let i = 0; i < BLOCK; i++) {
    c.world.tick(gap);
    walk(c, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080, sport: sport++ });
    if (sport > 65000) sport = 1024;
  }
  const u = process.cpuUsage(t0);
  let entries = 0;
  for (const ns of c.world.netns.values()) entries += ns.conntrack.entries.length;
  console.log(
    `${mode}, walks ${(b + 1) * BLOCK}: ${((u.user + u.system) / BLOCK).toFixed(1)} µs CPU a walk, ` +
      `simulated ${(c.world.now / 1e6).toFixed(1)} s, ${entries} conntrack entries`,
  );
}
