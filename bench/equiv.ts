/**
 * Are two source trees the same model? A change meant to keep every output (a cache, a faster
 * table) is run against the tree before it (e.g. an archive of main) on the lab's seeded
 * scenarios, in one process: both trees' modules are loaded side by side, and for each scenario
 * each tree builds the cluster, walks its flow (the whole exchange), then changes the cluster with
 * the scenario's fault through the emulated tool (a cache warmed by the first walk must see it),
 * walks again from the next source port, lets 45 simulated seconds pass (neighbours go STALE, FDB
 * entries and conntrack entries age, timers fire), walks a third time, and last prints every node's
 * and pod's tables with the emulated tools. Every trace (as `--json` renders it), every command's
 * output and the whole World's data (snapshot.ts worldToData: tables, counters, sockets, timers,
 * captures) must be the same text in both trees; then warm walks on the seed cluster in every
 * CNI mode, a new connection each, compared the same way.
 *
 *   npx tsx bench/equiv.ts OTHER_TREE [SEEDS]
 *
 * SEEDS: a comma-separated list or ranges (`1-60,1001-1004`); by default the lab differential
 * suite's seeds. Prints one line per difference (the scenario, the part, its first differing
 * line in each tree) and a summary; exits 1 when any scenario differs, 2 on bad arguments.
 */
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';
import { existsSync } from 'node:fs';

const here = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const [other, seedsArg] = process.argv.slice(2);
if (!other || !existsSync(resolve(other, 'src/cni/build.ts'))) {
  process.stderr.write(
    'usage: npx tsx bench/equiv.ts OTHER_TREE [SEEDS] (OTHER_TREE: a podwalk source tree)\n',
  );
  process.exit(2);
}

/** the lab differential suite's seeds (test/lab-diff.test.ts with its defaults) */
function suiteSeeds(): number[] {
  const r = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
  return [
    ...r(1, 60),
    ...r(1001, 4),
    ...r(2001, 38),
    ...r(3001, 14),
    ...r(4001, 2),
    ...[1, 4, 5, 9, 22, 38].map((k) => 5000 + k),
    ...r(7001, 8),
  ];
}

function parseSeeds(s: string | undefined): number[] {
  if (s === undefined) return suiteSeeds();
  const out: number[] = [];
  for (const part of s.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) {
      process.stderr.write(
        `bench/equiv.ts: bad seed list "${s}" at "${part}": expected N or N-M, comma-separated\n`,
      );
      process.exit(2);
    }
    const a = Number(m[1]);
    const b = Number(m[2] ?? m[1]);
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

/** what one tree says about one case: named parts, each a text */
type Parts = Map<string, string>;

/* eslint-disable @typescript-eslint/no-explicit-any -- two source trees' modules, loaded by path */
async function load(root: string) {
  const m = async (p: string) => (await import(`${root}/${p}`)) as any;
  const { buildCluster } = await m('src/cni/build.ts');
  const { seedCluster } = await m('src/cluster/seed.ts');
  const { walk } = await m('src/trace/walk.ts');
  const { traceToJson } = await m('src/render/json.ts');
  const { runCommand } = await m('src/tools/index.ts');
  const { runUntil } = await m('src/trace/exchange.ts');
  const { worldToData } = await m('src/kernel/snapshot.ts');
  const { generateScenario, faultOf } = await m('src/lab/scenarios.ts');
  const { CNI_MODES } = await m('src/cluster/spec.ts');

  const walked = (parts: Parts, name: string, c: any, req: any) => {
    try {
      const w = walk(c, req, { exchange: true });
      parts.set(name, JSON.stringify(w.traces.map(traceToJson), null, 1));
    } catch (e) {
      parts.set(name, `threw ${(e as Error).name}: ${(e as Error).message}`);
    }
  };
  const tools = (parts: Parts, c: any) => {
    const names = [...c.nodes.map((n: any) => n.name), ...c.pods.map((p: any) => p.name)];
    for (const ns of names)
      for (const cmd of [
        'ip -d -s link show',
        'ip route show table all',
        'ip neigh show',
        'bridge fdb show',
        'iptables-save -c',
        'conntrack -L',
        'nstat -az',
        'ss -tanoi',
      ]) {
        const r = runCommand(c, ns, cmd);
        parts.set(`${ns}: ${cmd}`, `${r.code}\n${r.stdout}\n${r.stderr}`);
      }
    parts.set('world', JSON.stringify(worldToData(c.world), null, 1));
  };

  return {
    scenario(seed: number): Parts {
      const parts: Parts = new Map();
      const s = generateScenario(seed);
      parts.set('scenario', s.title);
      const c = buildCluster(s.spec, s.mode);
      walked(parts, 'walk 1', c, s.flow);
      const fault = faultOf(s, c);
      if (fault) {
        const r = runCommand(c, fault.netns, fault.command);
        parts.set('fault', `${fault.netns}: ${fault.command}\n${r.code}\n${r.stdout}\n${r.stderr}`);
      }
      const next = s.flow.sport === undefined ? s.flow : { ...s.flow, sport: s.flow.sport + 1 };
      walked(parts, 'walk 2 (after the fault)', c, next);
      runUntil(c, c.world.now + 45_000_000);
      const third = s.flow.sport === undefined ? s.flow : { ...s.flow, sport: s.flow.sport + 2 };
      walked(parts, 'walk 3 (45 s later)', c, third);
      tools(parts, c);
      return parts;
    },
    warm(mode: string, to: string): Parts {
      const parts: Parts = new Map();
      const c = buildCluster(seedCluster(), mode);
      for (let i = 0; i < 40; i++) {
        const w = walk(c, { from: 'pod-a', to, proto: 'tcp', port: 8080, sport: 40000 + i });
        parts.set(
          `walk ${i + 1}`,
          JSON.stringify(
            [w.request, w.reply].map((t) => t && traceToJson(t)),
            null,
            1,
          ),
        );
      }
      tools(parts, c);
      return parts;
    },
    modes: CNI_MODES as string[],
  };
}
/* eslint-enable @typescript-eslint/no-explicit-any */

/** the first line where two texts differ, with its number */
function firstDiff(a: string, b: string): string {
  const la = a.split('\n');
  const lb = b.split('\n');
  for (let i = 0; i < Math.max(la.length, lb.length); i++)
    if (la[i] !== lb[i]) return `line ${i + 1}:\n    A: ${la[i] ?? '(none)'}\n    B: ${lb[i] ?? '(none)'}`;
  return '(equal)';
}

function compare(what: string, a: Parts, b: Parts): number {
  let diffs = 0;
  for (const k of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(k) ?? '(missing)';
    const y = b.get(k) ?? '(missing)';
    if (x === y) continue;
    diffs++;
    console.log(`${what}: ${k} differs at ${firstDiff(x, y)}`);
  }
  return diffs;
}

const A = await load(resolve(other));
const B = await load(here);
const seeds = parseSeeds(seedsArg);
let cases = 0;
let differing = 0;
const run = (what: string, f: (t: typeof A) => Parts) => {
  cases++;
  const fa = f(A);
  const fb = f(B);
  if (compare(what, fa, fb)) differing++;
};
for (const seed of seeds) run(`scenario ${seed}`, (t) => t.scenario(seed));
for (const mode of B.modes)
  for (const to of ['pod-b', 'pod-c']) run(`warm ${mode} pod-a → ${to}`, (t) => t.warm(mode, to));
console.log(
  `${cases} cases (${seeds.length} scenarios, ${cases - seeds.length} warm runs): ${differing ? `${differing} differ` : 'every output the same'} (A ${resolve(other)}, B ${here})`,
);
process.exit(differing ? 1 : 0);
