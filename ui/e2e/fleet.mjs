// The web app through a fleet (tests/tests/fleet.rs starts appliances behind HAProxy and runs
// `node ui/e2e/fleet.mjs`): a person logs in once at the fleet's address, sees their sessions of
// every appliance in one list (with the appliance each is on), creates a session, lands on its
// page at `/a/<appliance>/` and watches that desktop live through the fleet's pinned route.
// Every page is screenshotted at 1280 and 480 px and scanned with axe-core. One line per step:
// `ok <step> (<ms>)`; a failure prints why, leaves `FAILED-<step>.png` and exits 1.
//
// Configuration (environment):
//   ZIGRAL_E2E_FLEET          the fleet's address (HAProxy), e.g. http://127.0.0.1:8080/
//   ZIGRAL_E2E_ARTIFACTS      where screenshots and axe reports go
//   ZIGRAL_E2E_USER / ZIGRAL_E2E_USER_PASSWORD   a fleet user (listed in fleet_users)
//   ZIGRAL_E2E_SESSIONS       JSON [{id, appliance}]: the user's sessions made beforehand, on
//                             more than one appliance
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Steps, axe, canvasPixelMatches, env, launch, pageServer, rgb, shots, waitLive } from './lib.mjs';

const FLEET = env('ZIGRAL_E2E_FLEET');
const ART = env('ZIGRAL_E2E_ARTIFACTS');
const USER = env('ZIGRAL_E2E_USER');
const USER_PW = env('ZIGRAL_E2E_USER_PASSWORD');
const BEFORE = JSON.parse(env('ZIGRAL_E2E_SESSIONS'));
const PAINT = '2080ff';

const steps = new Steps(ART);
const facts = {};

async function look(page, name) {
  await shots(page, ART, name);
  await axe(page, ART, name);
}

/** A REST call through the fleet (`root` = `/` or `/a/<name>/`) with a bearer token. */
async function call(root, method, path, token, body) {
  const res = await fetch(new URL(`${root}api/v1${path}`, FLEET), {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${root}api/v1${path} -> ${res.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

async function main() {
  const browser = await launch();
  const pages = await pageServer();
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  page.on('pageerror', (e) => console.log(`  page error: ${e.message}`));
  steps.focus(page);
  let token = '';
  let created = null;

  await steps.run('fleet-log-in', async () => {
    await page.goto(FLEET);
    await page.getByLabel('User name').fill(USER);
    await page.getByLabel('Password').fill(USER_PW);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Sessions' }).waitFor();
    const c = (await context.cookies()).find((c) => c.name === 'zigral_session');
    if (!c?.value.startsWith('zgf_')) throw new Error(`the login cookie is not a fleet token: ${c?.value.slice(0, 8)}…`);
    if (c.path !== '/') throw new Error(`the fleet token's cookie has Path=${c.path}, not /`);
    token = c.value;
    const label = (await page.getByTestId('appliance').textContent()).trim();
    if (!/fleet/i.test(label)) throw new Error(`the top bar at the fleet's root says ${JSON.stringify(label)}`);
  });

  await steps.run('fleet-sessions-of-every-appliance', async () => {
    const rows = page.locator('tr[data-appliance]');
    await page.waitForFunction((n) => document.querySelectorAll('tr[data-appliance]').length >= n, BEFORE.length);
    const shown = await rows.evaluateAll((trs) => trs.map((tr) => [tr.getAttribute('data-appliance'), tr.textContent]));
    const appliances = new Set(shown.map(([a]) => a));
    const want = new Set(BEFORE.map((s) => s.appliance));
    for (const a of want) if (!appliances.has(a)) throw new Error(`no session of ${a} in the list: ${JSON.stringify(shown)}`);
    if (want.size < 2) throw new Error('the test needs sessions on two appliances');
    // Each row links to its session's page on its own appliance.
    for (const s of BEFORE) {
      const href = await page.locator(`tr[data-appliance="${s.appliance}"] a[href*="${s.id}"]`).first().getAttribute('href');
      if (!href.startsWith(`/a/${s.appliance}/#/sessions/`)) throw new Error(`the link to ${s.id} is ${href}`);
    }
    await look(page, 'fleet-sessions');
  });

  await steps.run('fleet-new-session-lands-on-its-appliance', async () => {
    await page.getByRole('button', { name: 'New session' }).click();
    await page.getByLabel('Title').fill('Through the fleet');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.waitForURL(/\/a\/[a-z0-9-]+\/#\/sessions\/[0-9a-f]+$/, { timeout: 90_000 });
    const [, appliance, id] = /\/a\/([a-z0-9-]+)\/#\/sessions\/([0-9a-f]+)$/.exec(page.url());
    created = { appliance, id };
    facts.created = created;
    await page.getByRole('heading', { level: 1, name: 'Through the fleet' }).waitFor();
    const label = (await page.getByTestId('appliance').textContent()).trim();
    if (!label.includes(appliance)) throw new Error(`the top bar on ${appliance} says ${JSON.stringify(label)}`);
  });

  await steps.run('fleet-live-view-through-the-pinned-route', async () => {
    const root = `/a/${created.appliance}/`;
    const sockets = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    await call(root, 'POST', `/sessions/${created.id}/actions`, token, {
      actions: [{ action: 'navigate', url: `${pages.url}/colour/${PAINT}` }],
    });
    await waitLive(page, 'connected');
    await canvasPixelMatches(page, rgb(PAINT));
    // Reloaded so the socket is seen from the start: it goes through /a/<appliance>/websockify.
    await page.reload();
    await waitLive(page, 'connected');
    const live = sockets.find((u) => u.includes('/websockify'));
    if (!live || !new URL(live).pathname.startsWith(`/a/${created.appliance}/websockify`) || new URL(live).host !== new URL(FLEET).host)
      throw new Error(`the live view opened ${live ?? 'no websocket'}`);
    await canvasPixelMatches(page, rgb(PAINT));
    await look(page, 'fleet-session-live');
  });

  writeFileSync(join(ART, 'fleet-facts.json'), JSON.stringify(facts, null, 2));
  pages.close();
  await browser.close();
}

main().then(
  () => {
    console.log(`all ${steps.passed.length} fleet steps passed`);
    process.exit(0);
  },
  (e) => {
    console.log(`fleet e2e failed: ${e?.message ?? e}`);
    process.exit(1);
  },
);
