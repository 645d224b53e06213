/**
 * A/B of warm single-packet walks in CPU time between this tree (B) and another source tree (A,
 * e.g. main's tip checked out elsewhere), in one process: both trees' modules are loaded side by
 * side, each builds its seed cluster (flannel-vxlan) and warms up, then blocks of walks alternate
 * A, B, A, B… and each block's process.cpuUsage() (user + system) is taken; the medians of the
 * blocks are compared. CPU time, not wall time: the machine is shared and loaded, and alternating
 * blocks in one process exposes both trees to the same load and the same heap.
 *
 *   npx tsx bench/ab.ts OTHER_TREE [BLOCKS] [WALKS_PER_BLOCK]
 *
 * AB_MODES: the CNI modes to run, comma-separated, or `all` (default flannel-vxlan).
 */
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';

const here = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const [other, blocksArg, walksArg] = process.argv.slice(2);
if (!other) {
  process.stderr.write('usage: npx tsx bench/ab.ts OTHER_TREE [BLOCKS] [WALKS_PER_BLOCK]\n');
  process.exit(2);
}
const blocks = Number(blocksArg ?? 21);
const walks = Number(walksArg ?? 1000);
const ALL_MODES = [
  'flannel-vxlan',
  'flannel-host-gw',
  'calico-bgp',
  'calico-ipip',
  'calico-ipip-crosssubnet',
];
const modes =
  process.env.AB_MODES === 'all' ? ALL_MODES : (process.env.AB_MODES ?? 'flannel-vxlan').split(',');

interface Tree {
  name: string;
  run(to: string, sport: number): void;
}

async function load(
  name: string,
  root: string,
): Promise<Tree & { cluster: (to: string, mode: string) => void }> {
  const { seedCluster } = await import(`${root}/src/cluster/seed.ts`);
  const { buildCluster } = await import(`${root}/src/cni/build.ts`);
  const { walk } = await import(`${root}/src/trace/walk.ts`);
  const clusters = new Map<string, unknown>();
  return {
    name,
    cluster(to: string, mode: string) {
      clusters.set(to, buildCluster(seedCluster(), mode));
    },
    run(to: string, sport: number) {
      walk(clusters.get(to), { from: 'pod-a', to, proto: 'tcp', port: 8080, sport });
    },
  };
}

const trees = [await load('A', resolve(other)), await load('B', here)];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const mode of modes)
  for (const [path, to] of [
    ['cross-node pod-a → pod-c', 'pod-c'],
    ['same-node pod-a → pod-b', 'pod-b'],
  ] as const) {
    const per: Record<string, number[]> = { A: [], B: [] };
    let sport = 20000;
    for (const t of trees) {
      t.cluster(to, mode);
      for (let i = 0; i < 1500; i++) t.run(to, sport + i);
    }
    sport += 1500;
    for (let b = 0; b < blocks; b++) {
      for (const t of b % 2 ? [...trees].reverse() : trees) {
        const start = process.cpuUsage();
        for (let i = 0; i < walks; i++) t.run(to, sport + i);
        const d = process.cpuUsage(start);
        per[t.name].push((d.user + d.system) / walks);
      }
      sport += walks;
      if (sport > 60000) {
        sport = 20000;
        for (const t of trees) t.cluster(to, mode);
      }
    }
    const a = median(per.A);
    const bb = median(per.B);
    process.stdout.write(
      `${mode}, ${path}: A ${a.toFixed(1)} µs CPU/walk, B ${bb.toFixed(1)} µs CPU/walk, B/A ${(bb / a).toFixed(3)} (medians of ${blocks} blocks of ${walks})\n`,
    );
  }
