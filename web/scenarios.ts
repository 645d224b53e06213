/**
 * The shipped scenarios/ (the broken clusters `podwalk scenarios` lists), bundled into the page
 * as text and parsed by the core loader like any cluster file.
 */
import { loadCluster } from '../src/cluster/load.ts';

const files = import.meta.glob<string>('../scenarios/*.yaml', {
  query: '?raw',
  import: 'default',
  eager: true,
});

export interface ShippedScenario {
  name: string;
  /** what the page calls the loaded cluster */
  file: string;
  title: string;
  yaml: string;
}

export const SCENARIOS: ShippedScenario[] = Object.entries(files)
  .map(([path, yaml]) => {
    const name = path.replace(/^.*\/([^/]+)\.yaml$/, '$1');
    const file = `scenarios/${name}.yaml`;
    return { name, file, yaml, title: loadCluster(yaml, file).scenario?.title ?? name };
  })
  .sort((a, b) => a.title.localeCompare(b.title));
