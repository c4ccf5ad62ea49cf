// Builds the web app (ui/app) into ui/dist/app, which the control plane serves at `/`.
// Hashed file names under assets/ let the server mark them immutable; index.html is revalidated.
import { defineConfig } from 'vite';

export default defineConfig({
  root: 'app',
  base: '/',
  build: {
    outDir: '../dist/app',
    emptyOutDir: true,
    // noVNC 1.7.0 uses a top-level await (core/util/browser.js): es2022 or later is required.
    target: 'es2022',
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  optimizeDeps: { esbuildOptions: { target: 'es2022' } },
});
