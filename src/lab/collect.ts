/**
 * `podwalk lab collect`: the collector (src/collect/collect.sh, the one a real node runs) on every
 * node and router of a running lab, each as `--netns <lab namespace> --name <model name>`. Their
 * pods and the underlay segments come with them, found the way a real node's are: through veths.
 */
import { runCollector } from '../collect/run.ts';
import { LabError, type LabState } from './host.ts';

/** the lab's namespaces the collector starts from: what the model calls nodes and routers */
export function collectTargets(state: LabState, roles: Record<string, string>): string[] {
  return Object.keys(state.namespaces)
    .filter((n) => roles[n] === 'node' || roles[n] === 'router')
    .sort();
}

/** collect every node and router of the lab into out/<name>/…; returns their names */
export function labCollect(state: LabState, roles: Record<string, string>, out: string): string[] {
  const targets = collectTargets(state, roles);
  if (!targets.length) throw new LabError('the lab has no node to collect');
  for (const name of targets) {
    const r = runCollector({ out, netns: state.namespaces[name], name });
    if (r.code !== 0)
      throw new LabError(
        `${name}: the collector failed (exit ${r.code}): ${r.stderr.trim().split('\n').pop()}`,
      );
  }
  return targets;
}
