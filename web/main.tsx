/**
 * Start the page: the cluster comes from the URL (shared link), else from `podwalk serve
 * --cluster` (./cluster.yaml), else the built-in seed; it is parsed by the core loader.
 */
import { createRoot } from 'react-dom/client';
import { App } from './App.tsx';
import {
  decodeCluster,
  decodeState,
  defaultFlow,
  encodeCluster,
  loadDumps,
  loadYaml,
  seed,
  SERVED_DUMPS,
  type LoadedCluster,
  type PageState,
} from './session.ts';

/** `podwalk serve --from`: the node dumps, imported here by the same platform-free importer */
async function servedDumps(): Promise<LoadedCluster | undefined> {
  const r = await fetch('./dumps.json').catch(() => undefined);
  if (r?.status !== 200 || !(r.headers.get('content-type') ?? '').includes('json')) return undefined;
  return loadDumps(await r.text());
}

async function clusterOf(fromUrl: string | undefined): Promise<LoadedCluster> {
  if (fromUrl === SERVED_DUMPS || !fromUrl) {
    const d = await servedDumps();
    if (d) return d;
    if (fromUrl === SERVED_DUMPS)
      throw new Error('the link names dumps that this server does not serve (podwalk serve --from)');
  }
  if (fromUrl) return fromUrl === 'seed' ? seed() : loadYaml(decodeCluster(fromUrl), 'from the link');
  const r = await fetch('./cluster.yaml').catch(() => undefined);
  // a static host may answer a missing file with its index page
  if (r?.status === 200 && !(r.headers.get('content-type') ?? '').includes('html'))
    return loadYaml(await r.text(), decodeURIComponent(r.headers.get('x-podwalk-file') ?? 'cluster.yaml'));
  return seed();
}

async function start(): Promise<void> {
  const root = createRoot(document.getElementById('root')!);
  try {
    const url = decodeState(location.hash);
    const loaded = await clusterOf(url.cluster);
    const flow = { ...defaultFlow(loaded.spec), ...url.flow };
    const state: PageState = {
      cluster: loaded.dumps ? SERVED_DUMPS : encodeCluster(loaded.yaml),
      mode: url.mode ?? loaded.spec.cni,
      flow,
      run: url.run ?? [],
      trace: url.trace ?? 0,
      step: url.step ?? 0,
      compare: url.compare,
    };
    root.render(<App initial={state} loaded={loaded} />);
  } catch (e) {
    root.render(<p className="error">podwalk: {(e as Error).message}</p>);
  }
}

void start();
