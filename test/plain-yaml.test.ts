import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseDocument, stringify } from 'yaml';
import { readPlainYaml } from '../src/cluster/plain-yaml.ts';
import { SEED_YAML } from '../src/cluster/seed.ts';
import { seededRandom } from '../src/kernel/world.ts';
import { syntheticSpec } from '../bench/scale.ts';

/**
 * The property the loader relies on: whenever the fast reader gives a value, the `yaml` library
 * reads the same text without an error (nor a warning) into the same value.
 */
function agrees(text: string): 'read' | 'left' {
  const v = readPlainYaml(text);
  if (v === undefined) return 'left';
  const doc = parseDocument(text, { prettyErrors: false });
  assert.deepEqual(
    doc.errors.map((e) => e.message),
    [],
    `the reader took a text yaml refuses:\n${text}`,
  );
  assert.deepEqual(doc.warnings, [], `yaml warns about a text the reader took:\n${text}`);
  assert.deepStrictEqual(v, doc.toJS(), `the reader and yaml disagree on:\n${text}`);
  return 'read';
}

/** a bench-sized cluster file, as `yaml` writes it (block style, quotes where it needs them) */
function generated(nodes: number): string {
  const spec = syntheticSpec(nodes, 3);
  return stringify({
    ...spec,
    pods: spec.pods.map((p) => ({ ...p, listen: p.listen.map((l) => `${l.proto}/${l.port}`) })),
  });
}

/** pieces of cluster-file-like YAML, tricky ones among them */
const KEYS = [
  'name',
  'ip',
  'node',
  'labels',
  'listen',
  'a',
  'b',
  'kubernetes.io/name',
  'true',
  'null',
  'x_1',
];
const SCALARS = [
  'node1',
  '10.0.0.1/24',
  '1500',
  '-1',
  '0x1f',
  '0o17',
  '1e3',
  '.5',
  '1.50',
  '.inf',
  '~',
  'null',
  'Null',
  'true',
  'False',
  'yes',
  'tcp/8080',
  '02:42:c0:a8:01:0a',
  '"quoted # not a comment"',
  "'it''s'",
  '"a\\"b"',
  "'open",
  '"',
  'a #comment',
  'a#b',
  'a: b',
  'a:',
  '[tcp/80, udp/53]',
  '[ ]',
  '{app: web, tier: db}',
  '{a: [1, 2], b: {c: d}}',
  '[a, ]',
  '[a,,b]',
  '{a}',
  '[a: b]',
  '&x 1',
  '*x',
  '!!str 1',
  '|',
  '>-',
  '? a',
  '- a',
  '%x',
  '@x',
  '`x',
  '',
  'two words',
  'x, y',
  'a]',
];

function randomDoc(rnd: () => number): string {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)];
  const lines: string[] = [];
  if (rnd() < 0.1) lines.push('---');
  const block = (indent: number, depth: number): void => {
    const pad = ' '.repeat(indent);
    const n = 1 + Math.floor(rnd() * 3);
    const seq = depth > 0 && rnd() < 0.4;
    for (let i = 0; i < n; i++) {
      if (rnd() < 0.1) lines.push(`${' '.repeat(Math.floor(rnd() * 6))}# a comment`);
      if (rnd() < 0.05) lines.push('');
      if (seq) {
        const r = rnd();
        if (r < 0.4) lines.push(`${pad}- ${pick(SCALARS)}`);
        else if (r < 0.8 && depth < 4) {
          const gap = ' '.repeat(1 + Math.floor(rnd() * 2));
          lines.push(`${pad}-${gap}${pick(KEYS)}: ${pick(SCALARS)}`);
          for (let k = 0; k < Math.floor(rnd() * 3); k++)
            lines.push(`${pad} ${gap}${pick(KEYS)}: ${pick(SCALARS)}`);
        } else if (depth < 4) {
          lines.push(`${pad}-`);
          block(indent + 1 + Math.floor(rnd() * 3), depth + 1);
        } else lines.push(`${pad}-`);
      } else {
        const k = pick(KEYS);
        const r = rnd();
        if (r < 0.6 || depth >= 4) lines.push(`${pad}${k}: ${pick(SCALARS)}`);
        else {
          lines.push(`${pad}${k}:${rnd() < 0.1 ? ' # c' : ''}`);
          // a sequence at the key's own indentation, or a deeper block
          block(rnd() < 0.3 ? indent : indent + 1 + Math.floor(rnd() * 3), depth + 1);
        }
      }
    }
  };
  block(0, 0);
  return lines.join('\n') + (rnd() < 0.8 ? '\n' : '');
}

const EDITS = [
  ' ',
  '  ',
  '-',
  ':',
  ': ',
  '#',
  ' #',
  '"',
  "'",
  '[',
  ']',
  '{',
  '}',
  ',',
  '\n',
  '\n  ',
  '\t',
  'a',
  '1',
  '&',
  '*',
  '!',
  '?',
  '---\n',
  '\r',
];

/** a random edit: a piece inserted, a character removed or replaced */
function mutate(text: string, rnd: () => number): string {
  const at = Math.floor(rnd() * (text.length + 1));
  const piece = EDITS[Math.floor(rnd() * EDITS.length)];
  const r = rnd();
  if (r < 0.4) return text.slice(0, at) + piece + text.slice(at);
  if (r < 0.7) return text.slice(0, at) + text.slice(at + 1);
  return text.slice(0, at) + piece + text.slice(at + 1);
}

describe('the fast cluster-file reader', () => {
  it('agrees with yaml on every YAML file of the repository, and reads the seed cluster', () => {
    const files = execFileSync('git', ['ls-files', '*.yaml', '*.yml'], { encoding: 'utf8' })
      .trim()
      .split('\n');
    assert.ok(files.length > 10);
    for (const f of files) agrees(readFileSync(f, 'utf8'));
    assert.equal(agrees(SEED_YAML), 'read');
  });

  it('reads generated cluster files (the large ones it is for)', () => {
    for (const n of [2, 50]) assert.equal(agrees(generated(n)), 'read');
  });

  it('agrees with yaml on random documents and on random edits of them', () => {
    const rnd = seededRandom(2026_12_05_8);
    const count = { read: 0, left: 0 };
    const base = generated(3);
    for (let i = 0; i < 6000; i++) {
      const doc = i % 3 === 0 ? base : randomDoc(rnd);
      count[agrees(doc)]++;
      let t = doc;
      for (let k = 0; k < 3; k++) {
        t = mutate(t, rnd);
        count[agrees(t)]++;
      }
    }
    // both ways are exercised: not a reader that always gives up, nor inputs it always takes
    assert.ok(count.read > 3000 && count.left > 3000, JSON.stringify(count));
  });
});
