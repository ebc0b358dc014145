// The dashboard's build: `vite build` (make build) writes web/dist, which the server
// serves (docs/architecture.md#the-dashboard). Hashed files go to dist/assets/, which
// the server caches for a year; index.html is fetched afresh each time.
import { defineConfig, type Plugin } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync, constants } from 'node:zlib';

// Each hashed script and stylesheet also as NAME.gz: the server sends it to a browser
// that accepts gzip (Content-Encoding: gzip), so the bytes on the wire are the
// compressed ones without compressing on every request.
function gzipAssets(): Plugin {
  return {
    name: 'mecapy-gzip-assets',
    apply: 'build',
    closeBundle() {
      const dir = join(__dirname, 'dist', 'assets');
      for (const f of readdirSync(dir)) {
        if (!/\.(js|css|svg|json)$/.test(f)) continue;
        const data = readFileSync(join(dir, f));
        const gz = gzipSync(data, { level: constants.Z_BEST_COMPRESSION });
        if (gz.length < data.length) writeFileSync(join(dir, `${f}.gz`), gz);
      }
    },
  };
}

export default defineConfig({
  root: __dirname,
  plugins: [svelte(), gzipAssets()],
  // Every <script>, <link> and <style> of index.html gets nonce="__MP_CSP_NONCE__", and a
  // <meta property="csp-nonce"> carries it for the scripts: the server puts a fresh nonce
  // in its place in each answer and names it in style-src, so that the styles CodeMirror
  // adds are allowed and no other inline style is (src/api/api-web.c).
  html: { cspNonce: '__MP_CSP_NONCE__' },
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
