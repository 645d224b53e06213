/**
 * `podwalk lab collect`: the collector (src/collect/collect.sh, the one a real node runs) on every
 * node and router of a running lab, each as `--netns <lab namespace> --name <model name>`. Their
 * pods and the underlay segments come with them, found the way a real node's are: through veths.
 */
import { collectorArgs, collectorScript } from '../collect/run.ts';
import { LabError, runAsync, type LabState } from './host.ts';

/** the lab's namespaces the collector starts from: what the model calls nodes and routers */
export function collectTargets(state: LabState, roles: Record<string, string>): string[] {
  return Object.keys(state.namespaces)
    .filter((n) => roles[n] === 'node' || roles[n] === 'router')
    .sort();
}

/**
 * collect every node and router of the lab into out/<name>/…, all at once (each collector waits
 * mostly on the processes it starts); returns their names
 */
export async function labCollect(
  state: LabState,
  roles: Record<string, string>,
  out: string,
  signal?: AbortSignal,
): Promise<string[]> {
  const targets = collectTargets(state, roles);
  if (!targets.length) throw new LabError('the lab has no node to collect');
  const script = collectorScript();
  const results = await Promise.all(
    targets.map((name) =>
      runAsync(
        [
          'sh',
          '-c',
          script,
          'podwalk-collect',
          ...collectorArgs({ out, netns: state.namespaces[name], name }),
        ],
        { timeoutMs: 600_000, signal },
      ),
    ),
  );
  results.forEach((r, i) => {
    if (r.code !== 0)
      throw new LabError(
        `${targets[i]}: the collector failed (exit ${r.code}): ${r.stderr.trim().split('\n').pop()}`,
      );
  });
  return targets;
}
