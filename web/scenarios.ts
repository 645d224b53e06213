/**
 * The shipped scenarios/ (the broken clusters `podwalk scenarios` lists) and examples/services.yaml,
 * bundled into the page as text and parsed by the core loader like any cluster file.
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

const servicesExample = import.meta.glob<string>('../examples/services.yaml', {
  query: '?raw',
  import: 'default',
  eager: true,
});

/** the shipped example clusters offered beside the scenarios: examples/services.yaml */
export const EXAMPLES: ShippedScenario[] = Object.values(servicesExample).map((yaml) => ({
  name: 'example:services',
  file: 'examples/services.yaml',
  yaml,
  title: 'Services: ClusterIP, NodePort, a pod not ready (examples/services.yaml)',
}));
