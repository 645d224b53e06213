import js from '@eslint/js';
import tseslint from 'typescript-eslint';

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
    files: [
      'src/wire/**',
      'src/kernel/**',
      'src/bgp/**',
      'src/cni/**',
      'src/cluster/**',
      'src/trace/**',
      'src/render/**',
      'src/tools/**',
      'src/lab/plan.ts',
      // the page runs in a browser, on the same core
      'web/**',
    ],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['node:*', 'fs', 'child_process', 'os', 'path'],
              message: 'the core and the page are platform-free',
            },
          ],
        },
      ],
      'no-restricted-globals': ['error', 'process', 'Buffer', 'require'],
    },
  },
);
