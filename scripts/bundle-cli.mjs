/**
 * Bundles the CLI into one JavaScript file, so that `podwalk` starts without compiling its
 * TypeScript through tsx's loader each time (~0.3 s of CPU to start instead of ~1.2 s). Run by
 * `npm ci` and `npm install` (the prepare script); bin/podwalk.js runs the bundle only while the
 * sources are the ones it was made from, and the sources through tsx otherwise.
 *
 *   node scripts/bundle-cli.mjs            # dist/cli/ of this checkout
 *   node scripts/bundle-cli.mjs ROOT       # ROOT/dist/cli/ (test/cli-bundle.test.ts)
 *
 * Writes dist/cli/podwalk.mjs (src/cli/main.ts and everything it imports; the npm packages stay
 * imports), dist/cli/collect.sh (the collector script, which src/collect/run.ts reads beside the
 * module: in the bundle that is dist/cli/) and dist/cli/podwalk.sources (the hash of src/ it was
 * made from: bin/source-hash.js). The bundle sits two levels under the root, as src/cli/ does,
 * so the paths the CLI makes from its own place (../../scenarios, ../../dist/web) stay right.
 */
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sourceHash, SRC } from '../bin/source-hash.js';

const root = resolve(process.argv[2] ?? fileURLToPath(new URL('..', import.meta.url)));
const out = `${root}/dist/cli`;
mkdirSync(out, { recursive: true });
const hash = sourceHash();
await build({
  entryPoints: [`${SRC}cli/main.ts`],
  outfile: `${out}/podwalk.mjs`,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  logLevel: 'warning',
  banner: { js: '// podwalk CLI bundle made by scripts/bundle-cli.mjs from src/: do not edit' },
});
copyFileSync(`${SRC}collect/collect.sh`, `${out}/collect.sh`);
// last: a bundle is taken only with the hash beside it, so a build that failed leaves none
writeFileSync(`${out}/podwalk.sources`, hash + '\n');
