import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The layers, lowest first. A file may import from its own layer and the ones below it, never
 * from a layer above: wire ← kernel ← cni/bgp/proxy ← trace ← render, tools, diagnose, import ← cli, web,
 * lab, collect. (import/ builds a World from node dumps and is platform-free; collect/ runs the
 * collector script on a node.)
 * (cluster/ is the cluster file's schema and loader: plain input, below everything that uses it.)
 */
const LAYERS = [
  ['wire', 'cluster'],
  ['kernel'],
  ['cni', 'bgp', 'proxy'],
  ['trace'],
  ['render', 'tools', 'diagnose', 'import'],
  ['cli', 'lab', 'web', 'collect'],
];

/** the core and the page run in a browser too: no Node built-ins, no process */
const PLATFORM_FREE = [
  'wire',
  'kernel',
  'bgp',
  'cni',
  'proxy',
  'cluster',
  'trace',
  'render',
  'tools',
  'import',
  'web',
];
const PLATFORM = {
  group: ['node:*', 'fs', 'child_process', 'os', 'path'],
  message: 'the core and the page are platform-free',
};

function layerConfig(rank, dir) {
  const above = LAYERS.slice(rank + 1).flat();
  const patterns = above.length
    ? [
        {
          group: above.flatMap((d) => [`../${d}/*`, `../../${d}/*`, `../src/${d}/*`]),
          message: `${dir}/ is below ${above.join(', ')}: no import runs upward (see the layers in eslint.config.js)`,
        },
      ]
    : [];
  const platformFree = PLATFORM_FREE.includes(dir);
  if (platformFree) patterns.push(PLATFORM);
  const files = dir === 'web' ? ['web/**'] : [`src/${dir}/**`];
  return {
    files,
    rules: {
      ...(patterns.length ? { 'no-restricted-imports': ['error', { patterns }] } : {}),
      ...(platformFree ? { 'no-restricted-globals': ['error', 'process', 'Buffer', 'require'] } : {}),
    },
  };
}

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // the plain JavaScript node runs itself: the CLI's launcher and the bundler
    files: ['bin/**/*.js', 'scripts/**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', URL: 'readonly', console: 'readonly' } },
  },
  ...LAYERS.flatMap((dirs, rank) => dirs.map((d) => layerConfig(rank, d))),
  {
    // the lab's plan is computed without touching the host: it runs in a browser too
    files: ['src/lab/plan.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [PLATFORM] }],
      'no-restricted-globals': ['error', 'process', 'Buffer', 'require'],
    },
  },
);
