/**
 * Bundles the CLI into one JavaScript file, so that `podwalk` starts without compiling its
 * TypeScript through tsx's loader each time, and makes V8's code cache of it, so that it starts
 * without compiling the bundle either. Run by `npm ci` and `npm install` (the prepare script);
 * bin/podwalk.js runs the bundle only while the sources are the ones it was made from, and the
 * sources through tsx otherwise.
 *
 *   node scripts/bundle-cli.mjs            # dist/cli/ of this checkout
 *   node scripts/bundle-cli.mjs ROOT       # ROOT/dist/cli/ (test/cli-bundle.test.ts)
 *
 * Writes dist/cli/podwalk.cjs (src/cli/process.ts and everything it imports, yaml and zod
 * included; commander stays a require), a script that bin/bundle.js compiles and runs (its
 * `import.meta.url` is the bundle's URL, given by bin/bundle.js), dist/cli/podwalk.v8cache (V8's
 * code cache of it: bin/bundle.js), dist/cli/collect.sh (the collector script, which
 * src/collect/run.ts reads beside the module: in the bundle that is dist/cli/) and
 * dist/cli/podwalk.sources (the hash of src/ it was made from: bin/source-hash.js). The bundle sits
 * two levels under the root, as src/cli/ does, so the paths the CLI makes from its own place
 * (../../scenarios, ../../dist/web) stay right.
 */
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sourceHash, SRC } from '../bin/source-hash.js';
import { BUNDLE, CODE_CACHE } from '../bin/bundle.js';

const root = resolve(process.argv[2] ?? fileURLToPath(new URL('..', import.meta.url)));
const out = `${root}/dist/cli`;
mkdirSync(out, { recursive: true });
const hash = sourceHash();
// a bundle is taken only with the hash beside it: none while it is remade
rmSync(`${out}/podwalk.sources`, { force: true });
rmSync(`${out}/${CODE_CACHE}`, { force: true });
// the bundle of before session 18, an ES module (now a script: podwalk.cjs)
rmSync(`${out}/podwalk.mjs`, { force: true });
await build({
  entryPoints: [`${SRC}cli/process.ts`],
  outfile: `${out}/${BUNDLE}`,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // commander is CommonJS written for sloppy mode; the bundle runs strict (bin/bundle.js)
  external: ['commander'],
  define: { 'import.meta.url': '__podwalkUrl' },
  logLevel: 'warning',
  banner: { js: '// podwalk CLI bundle made by scripts/bundle-cli.mjs from src/: do not edit' },
});
copyFileSync(`${SRC}collect/collect.sh`, `${out}/collect.sh`);
// the code cache, in a process of its own (V8's default flags, as bin/podwalk.js compiles with);
// without it the bundle runs the same, only compiled at each start
const made = spawnSync(
  process.execPath,
  [fileURLToPath(new URL('../bin/bundle.js', import.meta.url)), '--make-cache', out],
  {
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
  },
);
if (made.status !== 0)
  process.stderr.write(
    `podwalk: no code cache made for the CLI bundle (it runs without one):\n${made.stderr}`,
  );
// last: a bundle is taken only with the hash beside it, so a build that failed leaves none
writeFileSync(`${out}/podwalk.sources`, hash + '\n');
