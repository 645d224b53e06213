/**
 * The collector: src/collect/collect.sh is the one implementation. `podwalk collect` runs that
 * very script with sh (so the Node command and the script a node without Node runs can never
 * disagree), `podwalk collect --script` prints it, and the lab collects its nodes with it.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export const COLLECTOR_PATH = new URL('./collect.sh', import.meta.url);

export function collectorScript(): string {
  return readFileSync(COLLECTOR_PATH, 'utf8');
}

export interface CollectOptions {
  out: string;
  netns?: string;
  name?: string;
  kube?: boolean;
}

export function collectorArgs(o: CollectOptions): string[] {
  return [
    '--out',
    o.out,
    ...(o.netns ? ['--netns', o.netns] : []),
    ...(o.name ? ['--name', o.name] : []),
    ...(o.kube ? ['--kube'] : []),
  ];
}

export interface CollectResult {
  code: number;
  /** with --out -: the gzipped tar */
  stdout: Buffer;
  stderr: string;
}

/**
 * Run the collector script with sh. stdout is binary (a .tar.gz with --out -); `inherit` hands it
 * to this process's stdout (the CLI), else it is returned.
 */
export function runCollector(
  o: CollectOptions,
  opts: { inherit?: boolean; timeoutMs?: number } = {},
): CollectResult {
  const r = spawnSync('sh', ['-c', collectorScript(), 'podwalk-collect', ...collectorArgs(o)], {
    timeout: opts.timeoutMs ?? 600_000,
    maxBuffer: 1024 * 1024 * 1024,
    stdio: ['ignore', opts.inherit ? 'inherit' : 'pipe', 'pipe'],
  });
  if (r.error) return { code: 127, stdout: Buffer.alloc(0), stderr: `cannot run sh: ${r.error.message}` };
  return { code: r.status ?? 1, stdout: r.stdout ?? Buffer.alloc(0), stderr: r.stderr.toString('utf8') };
}
