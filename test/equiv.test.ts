/**
 * bench/equiv.ts, the check that a change kept every output, works: it finds this tree the same
 * as a copy of it, and finds a copy whose neighbour entries go STALE one µs later different, in the
 * walk after 45 simulated seconds and in the World's data, naming the scenario and the line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');

/** a copy of the source tree (src/, package.json) that imports the same node_modules */
function copyTree(edit?: (stack: string) => string): string {
  const dir = mkdtempSync(join(tmpdir(), 'podwalk-equiv-'));
  cpSync(join(ROOT, 'src'), join(dir, 'src'), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  if (edit) {
    const p = join(dir, 'src/kernel/stack.ts');
    writeFileSync(p, edit(readFileSync(p, 'utf8')));
  }
  return dir;
}

function equiv(other: string, seeds: string) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/equiv.ts', other, seeds], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  return { code: r.status, out: r.stdout + r.stderr };
}

test('bench/equiv.ts: the same tree is the same model', () => {
  const same = copyTree();
  try {
    const r = equiv(same, '1');
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^15 cases \(1 scenarios, 14 warm runs\): every output the same/m);
  } finally {
    rmSync(same, { recursive: true, force: true });
  }
});

test('bench/equiv.ts: a tree whose entries go STALE a µs later differs, and says where', () => {
  const stale = "ns.neigh.update(n, { state: 'STALE', updated: now });";
  const later = copyTree((src) => {
    assert.ok(
      src.includes(stale),
      'the STALE transition of neigh_periodic_work is where the test changes it',
    );
    return src.replace(stale, "ns.neigh.update(n, { state: 'STALE', updated: now + 1 });");
  });
  try {
    const r = equiv(later, '1-3');
    assert.equal(r.code, 1, r.out);
    assert.match(
      r.out,
      /^scenario \d+: walk 3 \(45 s later\) differs at line \d+:\n {4}A: .*"updated": \d+/m,
    );
    assert.match(r.out, /^scenario \d+: world differs at line \d+:/m);
    assert.match(r.out, /^17 cases \(3 scenarios, 14 warm runs\): \d+ differ/m);
  } finally {
    rmSync(later, { recursive: true, force: true });
  }
});
