/**
 * The CLI's bundle (scripts/bundle-cli.mjs, made by `npm ci`'s prepare script) against the sources
 * run through tsx: the same commands print the same bytes with the same exit status, the paths the
 * CLI makes from its own place (scenarios, the collector script) still lead to their files, and
 * bin/podwalk.js runs the bundle only while the sources hash as they did when it was made. The
 * bundle's V8 code cache (bin/bundle.js) is taken when it is the one made for the bundle, and a
 * missing, stale or damaged one is passed over: the bundle then runs compiled from its source,
 * printing the same bytes.
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
      const viaBundle = node([join(root, 'bin/podwalk.js'), ...argv]);
      assert.equal(viaBundle.stdout, viaTsx.stdout);
      assert.equal(viaBundle.stderr, viaTsx.stderr);
      assert.equal(viaBundle.status, viaTsx.status);
      assert.ok(viaTsx.stdout.length + viaTsx.stderr.length > 0, 'the command printed nothing');
    });

  test('the collector script beside the bundle is the one in src/collect', () => {
    const r = node([join(root, 'bin/podwalk.js'), 'collect', '--script']);
    assert.equal(r.stdout, readFileSync(join(REPO, 'src/collect/collect.sh'), 'utf8'));
  });

  test('bin/podwalk.js runs the bundle only when it was made from the sources as they are', () => {
    const bin = join(root, 'bin/podwalk.js');
    const sources = join(root, 'dist/cli/podwalk.sources');
    const made = readFileSync(sources, 'utf8').trim();
    assert.equal(made, sourceHash(join(REPO, 'src')));
    // a stand-in bundle shows which of the two ran
    const bundle = join(root, 'dist/cli/podwalk.cjs');
    const real = readFileSync(bundle, 'utf8');
    writeFileSync(bundle, 'module.exports.main = () => console.log("the bundle ran");\n');
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

  /** what bin/bundle.js did with the code cache, in a process of its own (V8's default flags) */
  const cacheState = (flags: string[] = []) => {
    const r = node([
      ...flags,
      '--input-type=module',
      '-e',
      `import { loadBundle } from ${JSON.stringify(join(root, 'bin/bundle.js'))};` +
        `console.log(loadBundle(new URL(${JSON.stringify(`file://${root}/dist/cli/`)})).cache);`,
    ]);
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  };

  test('the code cache is taken; missing, stale, damaged or rejected it is passed over, with the same output', () => {
    const cache = join(root, 'dist/cli/podwalk.v8cache');
    const bundle = join(root, 'dist/cli/podwalk.cjs');
    const good = readFileSync(cache);
    const real = readFileSync(bundle, 'utf8');
    const argv = ['trace', 'pod-a', 'pod-c:8080', '--mode', 'calico-vxlan'];
    const want = node(['--import', 'tsx', 'src/cli/main.ts', ...argv]);
    const same = (state: string, flags: string[] = []) => {
      assert.equal(cacheState(flags), state);
      const r = node([...flags, join(root, 'bin/podwalk.js'), ...argv]);
      assert.equal(r.stderr, want.stderr, state);
      assert.equal(r.stdout, want.stdout, state);
      assert.equal(r.status, want.status, state);
    };
    const nl = good.indexOf(10);
    const header = JSON.parse(good.subarray(0, nl).toString('utf8'));
    const withHeader = (h: object, data = good.subarray(nl + 1)) =>
      Buffer.concat([Buffer.from(JSON.stringify(h) + '\n'), data]);
    try {
      same('used');
      // another V8 flag: the header is right, V8 says no
      same('rejected', ['--max-lazy']);
      rmSync(cache);
      same('missing');
      // one byte of the data flipped, the data cut short, the header damaged, an empty file
      const flipped = Buffer.from(good);
      flipped[nl + 1 + (flipped.length - nl - 1) / 2] ^= 0x40;
      for (const bytes of [
        flipped,
        good.subarray(0, good.length - 1000),
        Buffer.concat([Buffer.from('{"format":'), good.subarray(nl)]),
        good.subarray(nl + 1),
        Buffer.alloc(0),
      ]) {
        writeFileSync(cache, bytes);
        same('corrupt');
      }
      // made for another bundle (one byte of its banner changed: the same length, which is all V8
      // itself checks of the source), another Node.js, another cache format
      writeFileSync(bundle, real.replace('do not edit', 'do not edjt'));
      writeFileSync(cache, good);
      same('stale');
      writeFileSync(bundle, real);
      writeFileSync(cache, withHeader({ ...header, node: 'v0.0.0' }));
      same('stale');
      writeFileSync(cache, withHeader({ ...header, format: 'podwalk-v8cache 0' }));
      same('stale');
      writeFileSync(cache, good);
      same('used');
    } finally {
      writeFileSync(bundle, real);
      writeFileSync(cache, good);
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
