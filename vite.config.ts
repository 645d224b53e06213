/**
 * The web page (web/): built with `npm run build` to dist/web, a static site with a relative base so
 * it works from any path of any static host; `podwalk serve` serves that build. JSX is compiled by
 * esbuild (no React plugin: the page needs no fast refresh).
 */
import { defineConfig } from 'vite';

export default defineConfig({
  root: 'web',
  base: './',
  esbuild: { jsx: 'automatic' },
  build: {
    outDir: '../dist/web',
    emptyOutDir: true,
    chunkSizeWarningLimit: 1500,
    rollupOptions: {
      // zod ships a /* @__PURE__ */ comment in a place Rollup ignores; it says so on every build
      onwarn(w, warn) {
        if (w.code !== 'INVALID_ANNOTATION') warn(w);
      },
    },
  },
  logLevel: 'warn',
});
