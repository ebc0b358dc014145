// The dashboard's build: `vite build` (make build) writes web/dist, which the server
// serves (docs/architecture.md#the-dashboard). Hashed files go to dist/assets/, which
// the server caches for a year; index.html is fetched afresh each time.
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

export default defineConfig({
  root: __dirname,
  plugins: [svelte()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    // No inline script: the polyfill would be one more module; every browser we aim at
    // has modulepreload.
    modulePreload: { polyfill: false },
    // Never inline assets as data: URLs into scripts or styles.
    assetsInlineLimit: 0,
    target: 'es2022',
    sourcemap: false,
  },
  server: {
    // `npx vite web` during development: the API is the real server's.
    proxy: { '/api': 'http://127.0.0.1:8000' },
  },
});
