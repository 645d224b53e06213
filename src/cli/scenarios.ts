/**
 * The shipped scenarios/: ready-made broken clusters, each a cluster file with a `scenario:`
 * section naming the flow to diagnose and the fault planted in it.
 */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { loadCluster } from '../cluster/load.ts';
import type { ClusterSpec } from '../cluster/spec.ts';
import type { Io } from './app.ts';
import { UsageError } from './errors.ts';
import { noteSource } from './source.ts';

export const SCENARIO_DIR = fileURLToPath(new URL('../../scenarios/', import.meta.url));

function names(io: Io): string[] {
  if (!io.listDir) throw new UsageError('scenarios: no directory listing available');
  return io
    .listDir(SCENARIO_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => f.slice(0, -'.yaml'.length))
    .sort();
}

export function loadScenario(io: Io, name: string): ClusterSpec {
  if (name === '') throw new UsageError('--scenario: an empty name');
  const all = names(io);
  if (!all.includes(name))
    throw new UsageError(`--scenario ${name}: no such scenario (these are: ${all.join(', ')})`);
  const file = join(SCENARIO_DIR, `${name}.yaml`);
  const text = io.readFile(file);
  const spec = loadCluster(text, `scenarios/${name}.yaml`);
  if (!spec.scenario) throw new UsageError(`scenarios/${name}.yaml has no scenario: section`);
  noteSource(io, { file: `scenarios/${name}.yaml`, text, spec });
  return spec;
}

export function listScenarios(io: Io): { name: string; title: string; description: string }[] {
  return names(io).map((name) => {
    const s = loadScenario(io, name).scenario!;
    return { name, title: s.title, description: s.description };
  });
}
