#!/usr/bin/env node
// The podwalk CLI. `npm ci` bundles it into dist/cli/ (scripts/bundle-cli.mjs, the prepare
// script) with V8's code cache of the bundle (bin/bundle.js): a fresh `podwalk` starts in ~0.15 s
// of CPU, where compiling the TypeScript through tsx's loader takes ~1.2 s. The bundle runs only
// when it was made from the sources as they are now (bin/source-hash.js); after an edit, without a
// bundle, or with PODWALK_TSX=1 set, the sources run through tsx, as they always could: no build
// step is needed.
import { readFileSync } from 'node:fs';
import { sourceHash } from './source-hash.js';

const dist = new URL('../dist/cli/', import.meta.url);

function bundleIsFresh() {
  if (process.env.PODWALK_TSX === '1') return false;
  let made;
  try {
    made = readFileSync(new URL('podwalk.sources', dist), 'utf8').trim();
  } catch {
    return false;
  }
  return made === sourceHash();
}

if (bundleIsFresh()) {
  const { loadBundle } = await import('./bundle.js');
  await loadBundle(dist).exports.main();
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
