// Builds the web app (ui/app) into ui/dist/app, which the control plane serves at `/`.
// Hashed file names under assets/ let the server mark them immutable; index.html is revalidated.
//
// Development: `ZIGRAL_API=http://127.0.0.1:8000 ZIGRAL_PROXY=http://127.0.0.1:6081 npx vite`
// serves the app with /api going to a running control plane and /websockify to its proxy (the
// app then opens the live view on its own origin).
import { defineConfig } from 'vite';

const api = process.env.ZIGRAL_API ?? 'http://127.0.0.1:8000';
const proxy = process.env.ZIGRAL_PROXY ?? 'http://127.0.0.1:6081';

export default defineConfig({
  root: 'app',
  // Relative asset URLs: the control plane serves the app at /, a fleet's HAProxy also at
  // /a/<name>/ (the app computes its API's URL from the page's directory too: src/api.ts).
  base: './',
  build: {
    outDir: '../dist/app',
    emptyOutDir: true,
    // noVNC 1.7.0 uses a top-level await (core/util/browser.js): es2022 or later is required.
    target: 'es2022',
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  optimizeDeps: { esbuildOptions: { target: 'es2022' } },
  server: {
    proxy: {
      '/api': { target: api, ws: true, headers: { origin: api } },
      // The proxy checks Origin: present the control plane's, which it allows.
      '/websockify': { target: proxy, ws: true, headers: { origin: api } },
    },
  },
});
