/**
 * The cluster file a CLI invocation loaded, so that problems found after loading (the build, a
 * `run:` command) are reported at their place in it: `FILE:LINE:COL: message`.
 */
import type { ClusterSpec } from '../cluster/spec.ts';

export interface ClusterSource {
  file: string;
  text: string;
  spec: ClusterSpec;
}

const SOURCES = new WeakMap<object, ClusterSource>();

/** remember the cluster file `invocation` (the CLI's io object) loaded */
export function noteSource(invocation: object, source: ClusterSource): void {
  SOURCES.set(invocation, source);
}

export function sourceOf(invocation: object): ClusterSource | undefined {
  return SOURCES.get(invocation);
}
