// The end-to-end test of the web UI against a running stack (tests/tests/ui.rs starts one with
// the fake provider and runs `node ui/e2e/run.mjs`): a person logs in, watches the desktop live,
// chats with the agent, answers its prompts, drives the desktop through noVNC, records it, and an
// administrator watches two users' desktops on the dashboard; the error states say what went
// wrong in plain words. Every page and state is screenshotted at 1280 and 480 px and scanned
// with axe-core. One line per step: `ok <step> (<ms>)`; a failed step prints why, leaves
// `FAILED-<step>.png` in the artifacts directory and exits 1.
//
// Configuration (environment):
//   ZIGRAL_E2E_BASE            the control plane serving the app, e.g. http://127.0.0.1:8000/
//   ZIGRAL_E2E_ARTIFACTS       where screenshots, axe reports and the downloaded recording go
//   ZIGRAL_E2E_ADMIN / ZIGRAL_E2E_ADMIN_PASSWORD       an administrator
//   ZIGRAL_E2E_USER / ZIGRAL_E2E_USER_PASSWORD         the person of the scenario (not an admin)
//   ZIGRAL_E2E_DISABLED / ZIGRAL_E2E_DISABLED_PASSWORD a disabled account (its login is a 403)
//   ZIGRAL_E2E_PROFILE         the name of the agent profile (fake provider) the user picks
//   ZIGRAL_E2E_CODE            the 2FA code the person enters when the agent asks
//   ZIGRAL_E2E_OTHER / ZIGRAL_E2E_OTHER_PASSWORD       a second user (not an admin) with
//   ZIGRAL_E2E_OTHER_SESSION / ZIGRAL_E2E_OTHER_DESKTOP a session on a desktop of their own
//   ZIGRAL_E2E_ONLY            optional: comma-separated step names to run (while developing)
// It writes `facts.json` (the session and desktop it drove, what it typed) and `recording.mp4`
// into the artifacts directory for the Rust test to check from outside.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Steps, StepFailed, apiClient, axe, canvasPixelMatches, env, launch, liveStatus, pageServer, rgb, shots, until, waitLive } from './lib.mjs';

const BASE = env('ZIGRAL_E2E_BASE');
const ART = env('ZIGRAL_E2E_ARTIFACTS');
const ADMIN = env('ZIGRAL_E2E_ADMIN');
const ADMIN_PW = env('ZIGRAL_E2E_ADMIN_PASSWORD');
const USER = env('ZIGRAL_E2E_USER');
const USER_PW = env('ZIGRAL_E2E_USER_PASSWORD');
const DISABLED = env('ZIGRAL_E2E_DISABLED');
const DISABLED_PW = env('ZIGRAL_E2E_DISABLED_PASSWORD');
const PROFILE = env('ZIGRAL_E2E_PROFILE');
const CODE = env('ZIGRAL_E2E_CODE');
const OTHER = env('ZIGRAL_E2E_OTHER');
const OTHER_PW = env('ZIGRAL_E2E_OTHER_PASSWORD');
const OTHER_SESSION = env('ZIGRAL_E2E_OTHER_SESSION');
const OTHER_DESKTOP = Number(env('ZIGRAL_E2E_OTHER_DESKTOP'));
const ONLY = (process.env.ZIGRAL_E2E_ONLY ?? '').split(',').filter(Boolean);

/** The colour painted on the desktop (a page whose background is all this colour). */
const PAINT = 'ff8000';
/** What the person types through noVNC. */
const TYPED = 'hello through novnc';
const AGENT_TIMEOUT = 90_000;

/** Requests a page made to anywhere but the appliance (the app must work offline: no CDN). */
const foreign = [];
const APPLIANCE_HOST = new URL(BASE).hostname;

const steps = new Steps(ART);
const api = apiClient(BASE);
const facts = { typed: TYPED, code: CODE };
let browser;
let pages;

async function step(name, f) {
  if (ONLY.length && !ONLY.includes(name)) return;
  await steps.run(name, f);
}

/** Screenshots at both widths and an axe scan of the page as it is now. */
async function look(page, name) {
  await shots(page, ART, name);
  await axe(page, ART, name);
}

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  context.on('request', (r) => {
    const u = new URL(r.url());
    if (!['data:', 'blob:'].includes(u.protocol) && u.hostname !== APPLIANCE_HOST) foreign.push(r.url());
  });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  page.on('pageerror', (e) => console.log(`  page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') console.log(`  console error: ${m.text()}`);
  });
  steps.focus(page);
  return page;
}

async function fillLogin(page, user, password) {
  await page.goto(BASE);
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
}

/** The login form's error line once it says something. */
async function loginError(page) {
  const alert = page.locator('#login-error');
  await page.waitForFunction(() => (document.getElementById('login-error')?.textContent ?? '').trim() !== '');
  return (await alert.textContent()).trim();
}

async function logIn(page, user, password) {
  await fillLogin(page, user, password);
  await page.getByRole('button', { name: 'Log out' }).waitFor();
}

/** The bearer token of a page's login (its HttpOnly session cookie). */
async function cookieToken(page) {
  const c = (await page.context().cookies()).find((c) => c.name === 'zigral_session');
  if (!c) throw new Error('no zigral_session cookie after logging in');
  return c.value;
}

/** Polls the desktop's page title through the actions API until `pred` holds. */
async function desktopTitle(token, session, pred, what) {
  const deadline = Date.now() + 30_000;
  let last = '';
  while (Date.now() < deadline) {
    const r = await api.actions(token, session, [{ action: 'tab_list' }]);
    last = JSON.stringify(r);
    if (pred(last)) return last;
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error(`timed out waiting for ${what}; the desktop's tabs: ${last}`);
}

async function main() {
  browser = await launch();
  pages = await pageServer();
  const user = await newPage();
  let userToken = '';
  let sessionId = '';

  // --- Logging in, and what goes wrong there ------------------------------------------------
  await step('login-page', async () => {
    await user.goto(BASE);
    await user.getByRole('heading', { level: 1 }).waitFor();
    await user.getByLabel('User name').waitFor();
    await user.getByLabel('Password').waitFor();
    await look(user, 'login');
  });

  await step('wrong-password', async () => {
    await fillLogin(user, USER, 'not-the-password');
    const msg = await loginError(user);
    if (!/wrong user name or password/i.test(msg)) throw new Error(`a wrong password says ${JSON.stringify(msg)}`);
    await look(user, 'login-wrong-password');
  });

  await step('disabled-account-403', async () => {
    // The API answers 403 (this account is disabled); the page says so in words.
    await fillLogin(user, DISABLED, DISABLED_PW);
    const msg = await loginError(user);
    if (!/disabled/i.test(msg) || !/administrator/i.test(msg)) throw new Error(`a disabled account's login says ${JSON.stringify(msg)}`);
    await look(user, 'login-disabled-403');
  });

  await step('log-in', async () => {
    await logIn(user, USER, USER_PW);
    await user.getByRole('heading', { level: 1, name: 'Sessions' }).waitFor();
    userToken = await cookieToken(user);
    await look(user, 'sessions');
  });

  await step('non-admin-dashboard', async () => {
    await user.goto(`${BASE}#/admin`);
    await user.getByRole('alert').filter({ hasText: /administrator/i }).waitFor();
    await look(user, 'dashboard-not-admin');
  });

  // --- A session with the agent -----------------------------------------------------------------
  await step('new-session', async () => {
    await user.goto(`${BASE}#/sessions`);
    await user.getByRole('heading', { level: 1, name: 'Sessions' }).waitFor();
    await user.getByRole('button', { name: 'New session' }).click();
    await user.getByLabel('Title').fill('Rocket launch');
    await user.getByLabel('Agent profile').selectOption({ label: PROFILE });
    await look(user, 'sessions-new');
    await user.getByRole('button', { name: 'Create' }).click();
    await user.waitForURL(/#\/sessions\/[0-9a-f]+$/, { timeout: 90_000 });
    sessionId = /#\/sessions\/([0-9a-f]+)$/.exec(user.url())[1];
    const s = await api.call('GET', `/sessions/${sessionId}`, { token: userToken });
    if (s.title !== 'Rocket launch') throw new Error(`the new session's title is ${JSON.stringify(s.title)}`);
    facts.session = sessionId;
    facts.desktop = s.desktop;
    await user.getByRole('heading', { level: 1, name: 'Rocket launch' }).waitFor();
    await user.getByRole('region', { name: 'Live view' }).waitFor();
  });

  await step('live-view-shows-desktop', async () => {
    await api.actions(userToken, sessionId, [{ action: 'navigate', url: `${pages.url}/colour/${PAINT}` }]);
    await waitLive(user, 'connected');
    await canvasPixelMatches(user, rgb(PAINT));
    await look(user, 'session-live');
  });

  await step('chat-steps-stream-in', async () => {
    await user.getByLabel('Message to the agent').fill('Launch the rocket, please.');
    await user.getByRole('button', { name: 'Send' }).click();
    // The scripted model takes a screenshot, then types (a gated action): steps stream in.
    const list = user.getByRole('region', { name: 'Steps' }).getByRole('listitem');
    await list.first().getByText('Step 1').waitFor({ timeout: AGENT_TIMEOUT });
    await look(user, 'session-steps');
  });

  const needs = user.getByRole('region', { name: 'Needs you' });

  /** A prompt card in "Needs you" whose heading matches `name`. */
  const card = (name) => needs.getByRole('article').filter({ has: user.getByRole('heading', { name }) });

  await step('answer-feedback', async () => {
    // The feedback prompt of step 1 (the screenshot): approve it.
    const prompt = card('How was step 1?');
    await prompt.waitFor({ timeout: AGENT_TIMEOUT });
    await needs.getByRole('alert').waitFor();
    await look(user, 'session-feedback');
    await prompt.getByLabel('Rating').selectOption('5');
    await prompt.getByRole('button', { name: 'Approve' }).click();
    await prompt.waitFor({ state: 'detached' });
    const fb = await api.call('GET', `/sessions/${sessionId}/feedback`, { token: userToken });
    const one = fb.find((f) => f.feedback.step === 1);
    if (!one || one.feedback.status !== 'answered') throw new Error(`step 1's feedback is not answered: ${JSON.stringify(one)}`);
  });

  await step('approve-gated-action', async () => {
    const prompt = card('Approve this action?');
    await prompt.waitFor({ timeout: AGENT_TIMEOUT });
    await prompt.getByText('launch the rocket').first().waitFor();
    await look(user, 'session-approval');
    await prompt.getByRole('button', { name: 'Approve' }).click();
    await prompt.waitFor({ state: 'detached', timeout: AGENT_TIMEOUT });
    // The approved action ran: the turn ends with the model's answer in the chat.
    await user.getByRole('list', { name: 'Messages' }).getByText('The rocket is launched.').waitFor({ timeout: AGENT_TIMEOUT });
    await user.getByRole('region', { name: 'Steps' }).getByRole('listitem').nth(1).waitFor();
    await look(user, 'session-turn-done');
  });

  await step('take-control-and-type', async () => {
    await api.actions(userToken, sessionId, [{ action: 'navigate', url: `${pages.url}/type` }]);
    await desktopTitle(userToken, sessionId, (t) => t.includes('typed:'), 'the typing page');
    await user.getByRole('button', { name: 'Take control' }).click();
    await user.getByRole('button', { name: 'Release control' }).waitFor();
    await waitLive(user, 'connected');
    const canvas = user.getByRole('region', { name: 'Live view' }).locator('canvas').first();
    await canvas.click();
    await user.keyboard.type(TYPED, { delay: 30 });
    await desktopTitle(userToken, sessionId, (t) => t.includes(`typed:${TYPED}`), 'the typed text on the desktop');
    await look(user, 'session-in-control');
    await user.getByRole('button', { name: 'Release control' }).click();
    await user.getByRole('button', { name: 'Take control' }).waitFor();
  });

  await step('enter-2fa-code', async () => {
    await user.getByLabel('Message to the agent').fill('Now verify the account.');
    await user.getByRole('button', { name: 'Send' }).click();
    const prompt = card('The agent needs a code');
    await prompt.waitFor({ timeout: AGENT_TIMEOUT });
    await needs.getByRole('alert').waitFor();
    await look(user, 'session-2fa');
    await prompt.getByLabel('Enter the code we texted you').fill(CODE);
    await prompt.getByRole('button', { name: 'Submit' }).click();
    await prompt.waitFor({ state: 'detached', timeout: AGENT_TIMEOUT });
    // The code was typed into the desktop's focused field; the API shows it redacted.
    await desktopTitle(userToken, sessionId, (t) => t.includes(`typed:${TYPED}<secret:2fa_code>`), 'the 2FA code typed on the desktop');
    await user.getByRole('list', { name: 'Messages' }).getByText('Verified.').waitFor({ timeout: AGENT_TIMEOUT });
  });

  await step('record-and-download', async () => {
    const downloads = user.getByRole('link', { name: 'Download' });
    const before = await downloads.count();
    await user.getByRole('button', { name: 'Start recording' }).click();
    await user.getByRole('button', { name: 'Stop recording' }).waitFor();
    // Something changes on the desktop while it records (more text on the page that holds
    // what was typed: the Rust test reads it afterwards).
    await api.actions(userToken, sessionId, [{ action: 'type', text: ' recorded' }]);
    await desktopTitle(userToken, sessionId, (t) => t.includes(' recorded'), 'the text typed while recording');
    await look(user, 'session-recording');
    await user.getByRole('button', { name: 'Stop recording' }).click();
    await user.getByRole('button', { name: 'Start recording' }).waitFor();
    // The newest recording comes first; its Download link appears once the file is final.
    await until(async () => (await downloads.count()) > before, 'the new recording to be ready for download', 60_000);
    const link = downloads.first();
    const [download] = await Promise.all([user.waitForEvent('download', { timeout: 60_000 }), link.click()]);
    const file = join(ART, 'recording.mp4');
    await download.saveAs(file);
    facts.recording = file;
    await look(user, 'session-recorded');
  });

  // --- The administrator's dashboard ------------------------------------------------------------
  await step('dashboard-two-desktops-live', async () => {
    // (The person's page stays on the session: its live view is a viewer the dashboard counts.)
    const admin = await newPage();
    await logIn(admin, ADMIN, ADMIN_PW);
    await admin.goto(`${BASE}#/admin`);
    await admin.getByRole('heading', { level: 1, name: 'Dashboard' }).waitFor();
    const row = (n) =>
      admin.getByRole('row').filter({ has: admin.getByRole('rowheader', { name: `Desktop ${n}`, exact: true }) });
    for (const [n, owner] of [
      [facts.desktop, USER],
      [OTHER_DESKTOP, OTHER],
    ]) {
      await row(n).getByRole('cell', { name: owner, exact: true }).waitFor();
      const sw = row(n).getByRole('checkbox', { name: `Live view of desktop ${n}` });
      await until(async () => (await sw.isChecked()) && (await sw.isEnabled()), `the live view switch of desktop ${n} on and usable`);
      await row(n).getByRole('checkbox', { name: `Recording of desktop ${n}` }).waitFor();
    }
    // Live: the person watching desktop N counts as its viewer (polled), and the other user
    // taking control of their desktop shows up at once (an event), without a reload.
    await admin.waitForFunction(
      (n) => {
        const table = [...document.querySelectorAll('table')].find((t) => [...t.querySelectorAll('th')].some((th) => th.textContent?.trim() === `Desktop ${n}`));
        if (!table) return false;
        const col = [...table.querySelectorAll('thead th')].findIndex((th) => th.textContent?.trim() === 'Viewers');
        const r = [...table.querySelectorAll('tbody tr')].find((tr) => tr.children[0]?.textContent?.trim() === `Desktop ${n}`);
        return col >= 0 && !!r && Number(r.children[col]?.textContent) >= 1;
      },
      facts.desktop,
      { timeout: 30_000 },
    );
    const otherToken = await api.login(OTHER, OTHER_PW);
    await api.call('POST', `/sessions/${OTHER_SESSION}/control`, { token: otherToken });
    await row(OTHER_DESKTOP).locator('.adm-driver').filter({ hasText: OTHER }).waitFor();
    await look(admin, 'dashboard');
    await api.call('DELETE', `/sessions/${OTHER_SESSION}/control`, { token: otherToken });
    steps.focus(user);
    await admin.context().close();
  });

  // Each of the dashboard's other tabs shows what it is for (screenshots and axe of each).
  await step('dashboard-tabs', async () => {
    const admin = await newPage();
    await logIn(admin, ADMIN, ADMIN_PW);
    const main = admin.getByRole('main');
    for (const [path, heading, shows] of [
      ['users', 'Users', () => main.getByRole('table').getByText(OTHER, { exact: true }).first()],
      ['agents', 'Agent profiles', () => main.getByText(PROFILE).first()],
      ['recordings', 'Recordings', () => main.getByRole('link', { name: 'Download' }).first()],
      ['services', 'Services', () => main.getByRole('table').getByText('control', { exact: true }).first()],
      ['audit', 'Audit log', () => main.getByText('recording.start').first()],
    ]) {
      await admin.goto(`${BASE}#/admin/${path}`);
      await admin.getByRole('heading', { level: 2, name: heading, exact: true }).waitFor();
      await shows().waitFor();
      await look(admin, `dashboard-${path}`);
    }
    steps.focus(user);
    await admin.context().close();
  });

  await step('credentials-page', async () => {
    await user.goto(`${BASE}#/credentials`);
    await user.getByRole('heading', { level: 1, name: 'Credentials' }).waitFor();
    await user.getByRole('button', { name: 'Save credential' }).waitFor();
    await look(user, 'credentials');
  });

  // --- An expired session ------------------------------------------------------------------------
  await step('expired-session', async () => {
    // The login the page holds is revoked elsewhere (as a logout from another device does);
    // the next thing the person does returns them to the login page, which says why.
    await api.call('POST', '/auth/logout', { token: userToken });
    // The person clicks on (the app may have noticed already through its events connection).
    const link = user.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Sessions' });
    if (await link.isVisible()) await link.click({ timeout: 5_000 }).catch(() => undefined);
    await user.getByText('Your session has expired').waitFor();
    await user.getByLabel('User name').waitFor();
    await look(user, 'login-session-expired');
  });

  await step('nothing-but-the-appliance', async () => {
    if (foreign.length) throw new Error(`the app made requests outside the appliance: ${[...new Set(foreign)].join(', ')}`);
  });

  writeFileSync(join(ART, 'facts.json'), JSON.stringify(facts, null, 2));
  console.log(`all ${steps.passed.length} steps passed; artifacts in ${ART}`);
}

try {
  await main();
} catch (e) {
  if (!(e instanceof StepFailed)) console.log(`FAILED: ${e && e.stack ? e.stack : e}`);
  await step('nothing-but-the-appliance', async () => {
    if (foreign.length) throw new Error(`the app made requests outside the appliance: ${[...new Set(foreign)].join(', ')}`);
  });

  writeFileSync(join(ART, 'facts.json'), JSON.stringify(facts, null, 2));
  process.exitCode = 1;
} finally {
  await browser?.close();
  pages?.close();
}
