// What the CLI's bundle (dist/cli/podwalk.mjs) was made from: one hash of every file under src/,
// path and bytes, in a fixed order. bin/podwalk.js runs the bundle only when the sources hash the
// same now; scripts/bundle-cli.mjs writes the hash beside the bundle it makes.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const SRC = fileURLToPath(new URL('../src/', import.meta.url));

export function sourceHash(src = SRC) {
  const h = createHash('sha256');
  const walk = (dir, rel) => {
    const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
    for (const e of entries) {
      const path = `${dir}/${e.name}`;
      const name = `${rel}${e.name}`;
      if (e.isDirectory()) walk(path, `${name}/`);
      else if (e.isFile()) {
        const bytes = readFileSync(path);
        h.update(`${name}\0${bytes.length}\0`);
        h.update(bytes);
      }
    }
  };
  walk(src.replace(/\/$/, ''), '');
  return h.digest('hex');
}
