/**
 * Lab tests' neighbours between two flows. A neighbour entry's timers run on the kernel's clock
 * and the model's on its own: between two flows the kernel's REACHABLE entry runs out whenever
 * its drawn reachable time does, and one used lately goes to DELAY and sends a unicast probe 5 s
 * later, inside the next flow's captures when the machine is slow, while the model's entry is
 * still fresh (or was imported fresh from a dump, which carries no timers). Setting the resolved
 * entries STALE, the state their timers lead to, on both sides makes the next flow start alike:
 * a STALE entry waits for its next use.
 */
import assert from 'node:assert/strict';
import type { Cluster } from '../src/cni/build.ts';
import { run, type LabState } from '../src/lab/host.ts';
import type { NudState } from '../src/kernel/objects.ts';
import { runCommand } from '../src/tools/index.ts';

/**
 * Every entry of the lab in one of `states` set STALE with the real `ip neigh change`, and, with
 * `model`, every such entry of the model's namespaces with the emulated one
 */
export function staleNeighbours(
  state: Pick<LabState, 'namespaces'>,
  states: readonly NudState[],
  model?: Cluster,
): void {
  const change = (e: { ip: string; dev: string; lladdr: string }) =>
    `neigh change ${e.ip} dev ${e.dev} lladdr ${e.lladdr} nud stale`;
  for (const [name, ns] of Object.entries(state.namespaces)) {
    const real = JSON.parse(run(['ip', '-n', ns, '-j', 'neigh', 'show']).stdout || '[]') as {
      dst: string;
      dev: string;
      lladdr?: string;
      state?: string[];
    }[];
    const lines = real
      .filter((e) => e.lladdr && e.state?.some((s) => states.includes(s as NudState)))
      .map((e) => change({ ip: e.dst, dev: e.dev, lladdr: e.lladdr! }));
    if (lines.length) {
      const r = run(['ip', '-n', ns, '-batch', '-'], lines.join('\n') + '\n');
      assert.equal(r.code, 0, `${ns}: ${r.stderr}`);
    }
    const mine = model?.world.netns.get(name);
    if (!mine) continue;
    for (const e of mine.neigh.list())
      if (e.lladdr && states.includes(e.state)) {
        const r = runCommand(model!, name, `ip ${change({ ip: e.ip, dev: e.dev, lladdr: e.lladdr })}`);
        assert.equal(r.code, 0, `${name} (model): ${r.stderr}`);
      }
  }
}
