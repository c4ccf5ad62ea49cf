// Helpers of the end-to-end test of the web UI (run.mjs): configuration from the environment,
// the browser, named steps that print `ok name (ms)` and leave a screenshot when they fail,
// screenshots of a page at 1280 and 480 px, an axe-core scan, the REST API from Node, and a
// tiny web server for the pages the desktop's Chrome opens.
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const AXE = join(here, '..', 'node_modules', 'axe-core', 'axe.min.js');

/** A required environment variable (the Rust test sets them all). */
export function env(name, fallback) {
  const v = process.env[name] ?? fallback;
  if (v === undefined || v === '') throw new Error(`${name} is not set (ui/e2e/run.mjs reads its configuration from the environment)`);
  return v;
}

export const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Debian's Chromium through playwright-core. */
export function launch() {
  return chromium.launch({ executablePath: process.env.ZIGRAL_E2E_CHROMIUM ?? '/usr/bin/chromium', args: FLAGS });
}

/**
 * Named steps. `run(name, f)` prints `ok name (ms)`; a failure prints `FAILED name: why`, saves a
 * screenshot of the page in focus (`current`) as `FAILED-<name>.png` and rethrows.
 */
export class Steps {
  constructor(artifacts) {
    this.artifacts = artifacts;
    this.current = null;
    this.passed = [];
    mkdirSync(artifacts, { recursive: true });
  }

  /** The page a failure screenshot is taken of. */
  focus(page) {
    this.current = page;
  }

  async run(name, f) {
    const t0 = Date.now();
    try {
      await f();
    } catch (e) {
      const ms = Date.now() - t0;
      let shot = '';
      if (this.current && !this.current.isClosed()) {
        const file = join(this.artifacts, `FAILED-${name}.png`);
        try {
          await this.current.screenshot({ path: file, fullPage: true, timeout: 10_000 });
          shot = ` (screenshot: ${file}; page ${this.current.url()})`;
        } catch (se) {
          shot = ` (no screenshot: ${se.message})`;
        }
      }
      console.log(`FAILED ${name} (${ms} ms)${shot}: ${e && e.stack ? e.stack : e}`);
      throw new StepFailed(name, e);
    }
    this.passed.push(name);
    console.log(`ok ${name} (${Date.now() - t0} ms)`);
  }
}

export class StepFailed extends Error {
  constructor(step, cause) {
    super(`step ${step} failed: ${cause && cause.message ? cause.message : cause}`);
    this.step = step;
  }
}

/** Waits until layout and fonts settled (two animation frames after fonts are ready). */
async function settled(page) {
  await page.evaluate(
    () =>
      new Promise((res) => {
        void document.fonts.ready.then(() => requestAnimationFrame(() => requestAnimationFrame(() => res(undefined))));
      }),
  );
}

/**
 * Screenshots of `page` at 1280x800 and 480x900 (the whole page) as `<name>-1280.png` and
 * `<name>-480.png`; the viewport is 1280x800 again afterwards. At 480 px the page must not
 * scroll sideways (a layout that does not stack its columns).
 */
export async function shots(page, artifacts, name) {
  const files = [];
  for (const [w, h] of [
    [1280, 800],
    [480, 900],
  ]) {
    await page.setViewportSize({ width: w, height: h });
    await settled(page);
    const file = join(artifacts, `${name}-${w}.png`);
    await page.screenshot({ path: file, fullPage: true });
    files.push(file);
    if (w === 480) {
      const over = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      if (over > 2) throw new Error(`${name}: at 480 px the page is ${over} px wider than the window (columns do not stack)`);
    }
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  await settled(page);
  return files;
}

let axeText = null;
function axeSource() {
  axeText ??= readFileSync(AXE, 'utf8');
  return axeText;
}

/**
 * An axe-core scan of the page as it is: fails on any serious or critical violation, listing
 * each rule id, impact and the elements (targets). Every violation (any impact) is written to
 * `axe-<name>.json`.
 */
export async function axe(page, artifacts, name) {
  const has = await page.evaluate(() => typeof window.axe !== 'undefined');
  // Through DevTools rather than addScriptTag: the app's Content-Security-Policy (script-src
  // 'self') rightly refuses an inline script, and the test keeps that policy on.
  if (!has) await page.evaluate(axeSource());
  const violations = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.map((n) => n.target.join(' ')),
    }));
  });
  writeFileSync(join(artifacts, `axe-${name}.json`), JSON.stringify(violations, null, 2));
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length) {
    const lines = bad.map((v) => `  ${v.id} (${v.impact}): ${v.help} — ${v.targets.join(', ')}`);
    throw new Error(`axe found ${bad.length} serious/critical violation(s) on ${name}:\n${lines.join('\n')}`);
  }
}

/** The control plane's REST API from Node with a bearer token; throws on a non-2xx answer. */
export function apiClient(base) {
  const call = async (method, path, { token, body, ok = true } = {}) => {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(new URL(`/api/v1${path}`, base), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = text;
    }
    if (ok && !res.ok) throw new Error(`${method} ${path} -> ${res.status}: ${text}`);
    return ok ? data : { status: res.status, data };
  };
  return {
    call,
    async login(username, password) {
      const r = await call('POST', '/auth/login', { body: { username, password } });
      return r.token;
    },
    /** Runs actions on a session's desktop; throws unless every action succeeded. */
    async actions(token, session, actions) {
      const r = await call('POST', `/sessions/${session}/actions`, { token, body: { actions } });
      if (r.ok !== true) throw new Error(`actions failed: ${JSON.stringify(r)}`);
      return r;
    },
  };
}

/**
 * A web server on 127.0.0.1 (port 0) for the pages the desktop's Chrome opens: `/colour/RRGGBB`
 * (the whole window one colour) and `/type` (a full-window text area that autofocuses and
 * mirrors what is typed into the title and a `#typed` line).
 */
export async function pageServer() {
  const pages = {
    colour: (c) =>
      `<!doctype html><html><head><title>colour ${c}</title></head><body style="margin:0;background:#${c};height:100vh"></body></html>`,
    type: () =>
      '<!doctype html><html><head><title>typed:</title><style>body{margin:0;font:24px sans-serif;background:#fff}' +
      'textarea{position:fixed;left:0;top:60px;width:100vw;height:calc(100vh - 60px);font-size:24px;border:0}</style></head>' +
      '<body><p id="typed">typed:</p><textarea id="t" autofocus aria-label="Type here"></textarea><script>' +
      'const t=document.getElementById("t");t.addEventListener("input",()=>{document.title="typed:"+t.value;' +
      'document.getElementById("typed").textContent="typed:"+t.value;});</script></body></html>',
  };
  const server = createServer((req, res) => {
    const m = /^\/colour\/([0-9a-f]{6})$/.exec(req.url ?? '');
    const body = m ? pages.colour(m[1]) : req.url === '/type' ? pages.type() : null;
    res.writeHead(body ? 200 : 404, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(body ?? 'not found');
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}`, close: () => server.close() };
}

/** Polls the async predicate `f` every 100 ms until it holds; fails after `timeout` ms. */
export async function until(f, what, timeout = 30_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await f()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** `#rrggbb` → [r, g, b]. */
export function rgb(hex) {
  const n = parseInt(hex.replace('#', ''), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

/** The centre pixel of the live view's noVNC canvas, or null before it has drawn. */
export function canvasPixelMatches(page, [r, g, b]) {
  return page.waitForFunction(
    ([r, g, b]) => {
      const region = document.querySelector('[aria-label="Live view"]');
      const canvas = region?.querySelector('canvas');
      if (!canvas || !canvas.width || !canvas.height) return false;
      const ctx = canvas.getContext('2d', { willReadFrequently: true });
      if (!ctx) return false;
      const [pr, pg, pb] = ctx.getImageData(Math.floor(canvas.width / 2), Math.floor(canvas.height / 2), 1, 1).data;
      const near = (a, c) => Math.abs(a - c) <= 12;
      return near(pr, r) && near(pg, g) && near(pb, b) ? [pr, pg, pb] : false;
    },
    [r, g, b],
    { timeout: 30_000, polling: 200 },
  );
}

export function liveStatus(page) {
  return page.getByRole('region', { name: 'Live view' }).getByTestId('live-status');
}

export async function waitLive(page, state) {
  await page.waitForFunction(
    (want) => document.querySelector('[aria-label="Live view"] [data-testid="live-status"]')?.getAttribute('data-state') === want,
    state,
    { timeout: 30_000 },
  );
}
