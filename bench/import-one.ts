/**
 * The import benchmark in a process of its own: `node --expose-gc --import tsx bench/import-one.ts
 * NODES PODS_PER_NODE`. A dump set of NODES nodes in the collector's layout (bench/dumps.ts: the
 * emulated tools' output for the synthetic flannel-vxlan cluster of bench/scale.ts) is written to a
 * temporary directory, then read back and imported as `--from DIR` does (src/collect/load.ts,
 * src/import): the time of each part, the memory after a full GC, and a walk between the first
 * and the last node of the imported cluster. One JSON line prefixed with RESULT_PREFIX.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { buildCluster } from '../src/cni/build.ts';
import { loadDumps } from '../src/collect/load.ts';
import { importCluster } from '../src/import/index.ts';
import { planImport } from '../src/import/plan.ts';
import { walk } from '../src/trace/walk.ts';
import { dumpsOf } from './dumps.ts';
import { nodeName, podName, RESULT_PREFIX, syntheticSpec } from './scale.ts';

export interface ImportResult {
  nodes: number;
  podsPerNode: number;
  files: number;
  bytes: number;
  namespaces: number;
  warnings: number;
  /** printing the dump set with the emulated tools (not part of an import) */
  dumpMs: number;
  /** reading the directory back (loadDumps) */
  readMs: number;
  /** parsing and planning (planImport) */
  planMs: number;
  /** the whole importCluster (plan and applying it to a World) */
  importMs: number;
  heapUsed: number;
  maxRss: number;
  walkMs: number;
  delivered: boolean;
}

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (!g) throw new Error('run with --expose-gc');
  g();
  g();
}

function main(): void {
  const nodes = Number(process.argv[2]);
  const podsPerNode = Number(process.argv[3] ?? '30');
  let t = performance.now();
  const files = dumpsOf(buildCluster(syntheticSpec(nodes, podsPerNode, 'flannel-vxlan')));
  const dumpMs = performance.now() - t;
  const dir = mkdtempSync(join(tmpdir(), 'podwalk-bench-dumps-'));
  let bytes = 0;
  try {
    for (const [p, text] of files) {
      mkdirSync(dirname(join(dir, p)), { recursive: true });
      writeFileSync(join(dir, p), text);
      bytes += Buffer.byteLength(text);
    }
    gc();
    t = performance.now();
    const loaded = loadDumps(dir);
    const readMs = performance.now() - t;
    t = performance.now();
    planImport(loaded.files, { name: 'bench' });
    const planMs = performance.now() - t;
    t = performance.now();
    const imported = importCluster(loaded.files, { name: 'bench' });
    const importMs = performance.now() - t;
    gc();
    const heapUsed = process.memoryUsage().heapUsed;
    t = performance.now();
    const w = walk(imported.cluster, {
      from: podName(0, 0),
      to: podName(nodes - 1, 0),
      proto: 'tcp',
      port: 8080,
    });
    const walkMs = performance.now() - t;
    const r: ImportResult = {
      nodes,
      podsPerNode,
      files: files.size,
      bytes,
      namespaces: imported.cluster.world.netns.size,
      warnings: imported.warnings.length,
      dumpMs,
      readMs,
      planMs,
      importMs,
      heapUsed,
      maxRss: process.resourceUsage().maxRSS * 1024,
      walkMs,
      delivered:
        w.request.disposition.kind === 'delivered' &&
        w.reply?.disposition.kind === 'delivered' &&
        imported.cluster.nodes.some((n) => n.name === nodeName(nodes - 1)),
    };
    process.stdout.write(RESULT_PREFIX + JSON.stringify(r) + '\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
