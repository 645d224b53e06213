/**
 * The CLI's bundle (scripts/bundle-cli.mjs, made by `npm ci`'s prepare script) against the sources
 * run through tsx: the same commands print the same bytes with the same exit status, the paths the
 * CLI makes from its own place (scenarios, the collector script) still lead to their files, and
 * bin/podwalk.js runs the bundle only while the sources hash as they did when it was made.
 * Everything is built in a directory of its own (node_modules, scenarios and src linked), never in
 * the checkout's dist/.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
// @ts-expect-error: a plain JavaScript module of bin/ (no declarations), run by node itself
import { sourceHash } from '../bin/source-hash.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
let root = '';

const node = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, args, {
    cwd: REPO,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', ...env },
    maxBuffer: 64 << 20,
  });

describe('the CLI bundle', () => {
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'podwalk-bundle-'));
    for (const d of ['node_modules', 'scenarios', 'src']) symlinkSync(join(REPO, d), join(root, d));
    cpSync(join(REPO, 'bin'), join(root, 'bin'), { recursive: true });
    const r = node([join(REPO, 'scripts/bundle-cli.mjs'), root]);
    assert.equal(r.status, 0, r.stderr);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const commands: string[][] = [
    ['trace', 'pod-a', 'pod-c:8080'],
    ['trace', 'pod-a', 'pod-c:8080', '--mode', 'calico-vxlan', '--format', 'json'],
    ['exec', 'node1', '--', 'ip', 'route'],
    ['exec', 'node2', '--', 'iptables-save'],
    ['doctor', '--scenario', 'ip-forward-off'],
    ['matrix'],
    ['collect', '--script'],
    ['trace', 'pod-a', 'nosuch'],
    ['matrix', '--port', 'x'],
  ];
  for (const argv of commands)
    test(`podwalk ${argv.join(' ')}: the bundle prints what the sources print`, () => {
      const viaTsx = node(['--import', 'tsx', 'src/cli/main.ts', ...argv]);
      const viaBundle = node([join(root, 'dist/cli/podwalk.mjs'), ...argv]);
      assert.equal(viaBundle.stdout, viaTsx.stdout);
      assert.equal(viaBundle.stderr, viaTsx.stderr);
      assert.equal(viaBundle.status, viaTsx.status);
      assert.ok(viaTsx.stdout.length + viaTsx.stderr.length > 0, 'the command printed nothing');
    });

  test('the collector script beside the bundle is the one in src/collect', () => {
    const r = node([join(root, 'dist/cli/podwalk.mjs'), 'collect', '--script']);
    assert.equal(r.stdout, readFileSync(join(REPO, 'src/collect/collect.sh'), 'utf8'));
  });

  test('bin/podwalk.js runs the bundle only when it was made from the sources as they are', () => {
    const bin = join(root, 'bin/podwalk.js');
    const sources = join(root, 'dist/cli/podwalk.sources');
    const made = readFileSync(sources, 'utf8').trim();
    assert.equal(made, sourceHash(join(REPO, 'src')));
    // a stand-in bundle shows which of the two ran
    const bundle = join(root, 'dist/cli/podwalk.mjs');
    const real = readFileSync(bundle, 'utf8');
    writeFileSync(bundle, 'console.log("the bundle ran");\n');
    try {
      assert.equal(node([bin, 'exec', 'node1', '--', 'ip', 'route']).stdout, 'the bundle ran\n');
      const fromSources = node(['--import', 'tsx', 'src/cli/main.ts', 'exec', 'node1', '--', 'ip', 'route']);
      assert.equal(
        node([bin, 'exec', 'node1', '--', 'ip', 'route'], { PODWALK_TSX: '1' }).stdout,
        fromSources.stdout,
      );
      writeFileSync(sources, made.replace(/^./, (c) => (c === '0' ? '1' : '0')) + '\n');
      assert.equal(node([bin, 'exec', 'node1', '--', 'ip', 'route']).stdout, fromSources.stdout);
      rmSync(sources);
      assert.equal(node([bin, 'exec', 'node1', '--', 'ip', 'route']).stdout, fromSources.stdout);
    } finally {
      writeFileSync(bundle, real);
      writeFileSync(sources, made + '\n');
    }
  });

  test('the hash of the sources moves with any byte of any file, and with a name', () => {
    const src = mkdtempSync(join(tmpdir(), 'podwalk-src-'));
    try {
      cpSync(join(REPO, 'src/wire'), join(src, 'wire'), { recursive: true });
      const h0 = sourceHash(src);
      assert.equal(sourceHash(src), h0);
      const f = join(src, 'wire/addr.ts');
      const text = readFileSync(f, 'utf8');
      writeFileSync(f, text + ' ');
      assert.notEqual(sourceHash(src), h0);
      writeFileSync(f, text);
      assert.equal(sourceHash(src), h0);
      cpSync(f, join(src, 'wire/addr2.ts'));
      assert.notEqual(sourceHash(src), h0);
    } finally {
      rmSync(src, { recursive: true, force: true });
    }
  });
});
