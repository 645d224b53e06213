/**
 * `--from`: a World built from `podwalk collect` dumps, not from a CNI mode. Platform-free: it
 * takes the dump files' contents (the CLI reads them from a directory or a .tar.gz).
 *
 *   const { cluster, warnings } = importCluster(files, { name: 'prod' });
 *
 * Every thing the model cannot represent is a warning saying what it may change about a walk
 * (cluster.warnings, one line each). A malformed dump throws DumpError ("FILE: what is wrong").
 */
import type { Cluster } from '../cni/build.ts';
import { applyPlan } from './apply.ts';
import { clusterOf, guessCni, renderWarning } from './cluster.ts';
import type { DumpFiles } from './dumps.ts';
import { planImport, type ImportPlan, type ImportWarning } from './plan.ts';

export { DumpError, untar, isGzip, LIMITS, DumpFilesBuilder, type DumpFiles } from './dumps.ts';
export type { ImportWarning, ImportPlan };

export interface Imported {
  cluster: Cluster;
  plan: ImportPlan;
  warnings: ImportWarning[];
}

export function importCluster(files: DumpFiles, opts: { name?: string } = {}): Imported {
  const plan = planImport(files, opts);
  const warnings: ImportWarning[] = [...plan.warnings];
  const warn = (w: ImportWarning) => void warnings.push(w);
  const cluster = clusterOf(plan, warn);
  applyPlan(plan, cluster, warn);
  const cni = guessCni(plan);
  cluster.warnings.push(
    `built from ${plan.manifests.length} node dump${plan.manifests.length === 1 ? '' : 's'}; the CNI looks like ${cni.mode} (${cni.evidence}): the diagnosis's likely causes and checks assume it`,
    ...warnings.map(renderWarning),
  );
  return { cluster, plan, warnings };
}
