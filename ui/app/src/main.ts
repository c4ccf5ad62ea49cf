// The app shell: who is signed in, the top bar, and the hash router (#/sessions/ID, …).
// Pages live in pages/; each exports `mount` (see ctx.ts). In a fleet (fleet.ts) the top bar
// names the appliance the page is on.
import './style.css';
import { ApiError, get, post, onUnauthorized, type Me } from './api';
import { h, fill, toast } from './dom';
import { startEvents, stopEvents, onEventsState } from './events';
import { fleet, loadFleet, pinnedTo } from './fleet';
import type { Ctx, Mount } from './ctx';

const main = document.getElementById('main') as HTMLElement;
const topbar = document.getElementById('topbar') as HTMLElement;
let me: Me | null = null;
let unmount: (() => void) | void = undefined;
/** Why the login page is shown (expired session, logout). */
let loginNotice = '';
/** The top bar's listener of the events connection (replaced at each render). */
let unfollowEvents: () => void = () => {};

type Route = { re: RegExp; load: () => Promise<{ mount: Mount }>; admin?: boolean };
const routes: Route[] = [
  { re: /^\/?$/, load: () => import('./pages/sessions') },
  { re: /^\/sessions$/, load: () => import('./pages/sessions') },
  { re: /^\/sessions\/([^/]+)$/, load: () => import('./pages/session') },
  { re: /^\/credentials$/, load: () => import('./pages/credentials') },
  { re: /^\/admin(?:\/(.*))?$/, load: () => import('./pages/admin'), admin: true },
];

export function navigate(path: string): void {
  if (location.hash === `#${path}`) void route();
  else location.hash = path;
}

function setTitle(title: string): void {
  document.title = `${title} · Zigral`;
}

/** In a fleet: which appliance this page talks to ("on zigral-1"), or that any may answer. */
function applianceLabel(): HTMLElement | null {
  const f = fleet();
  if (!f) return null;
  const here = pinnedTo();
  return here
    ? h('span', { class: 'appliance', 'data-testid': 'appliance', title: `This page works with appliance ${here} of the fleet.` }, `on ${here}`)
    : h('span', { class: 'appliance', 'data-testid': 'appliance', title: 'Any appliance of the fleet answers this page; each session opens on its own appliance.' }, 'on the fleet');
}

function renderTopbar(): void {
  if (!me) {
    unfollowEvents();
    fill(topbar, h('span', { class: 'brand' }, 'Zigral'), applianceLabel());
    return;
  }
  const link = (href: string, text: string) =>
    h('a', { href: `#${href}`, 'aria-current': location.hash.startsWith(`#${href}`) ? 'page' : null }, text);
  const dot = h('span', { class: 'events-dot', title: 'live updates: connecting', role: 'img', 'aria-label': 'live updates: connecting' });
  unfollowEvents();
  unfollowEvents = onEventsState((up) => {
    dot.dataset.up = String(up);
    const label = up ? 'live updates: connected' : 'live updates: reconnecting';
    dot.title = label;
    dot.setAttribute('aria-label', label);
  });
  fill(
    topbar,
    h('a', { class: 'brand', href: '#/' }, 'Zigral'),
    applianceLabel(),
    h(
      'nav',
      { 'aria-label': 'Main' },
      link('/sessions', 'Sessions'),
      link('/credentials', 'Credentials'),
      me.is_admin ? link('/admin', 'Dashboard') : null,
    ),
    h(
      'div',
      { class: 'who' },
      dot,
      h('span', null, me.username, me.is_admin ? ' (admin)' : ''),
      h('button', { type: 'button', class: 'secondary', onclick: logout }, 'Log out'),
    ),
  );
}

async function logout(): Promise<void> {
  try {
    await post('/auth/logout');
  } catch {
    // Logged out either way.
  }
  signedOut('You are logged out.');
}

function signedOut(notice: string): void {
  me = null;
  stopEvents();
  loginNotice = notice;
  renderTopbar();
  navigate('/login');
}

/** Counts route() calls: a page whose code arrives after a newer route began is not mounted
 * (two quick hash changes must not end with the older page over the newer one's hash). */
let routeGen = 0;

async function route(): Promise<void> {
  const gen = ++routeGen;
  const path = location.hash.replace(/^#/, '') || '/';
  if (unmount) unmount();
  unmount = undefined;
  if (path === '/login' || !me) {
    if (path !== '/login') sessionStorage.setItem('zigral.after-login', path);
    const { mountLogin } = await import('./pages/login');
    if (gen !== routeGen) return;
    unmount = mountLogin(main, loginNotice, async (user) => {
      me = user;
      loginNotice = '';
      startEvents();
      renderTopbar();
      const next = sessionStorage.getItem('zigral.after-login') || '/sessions';
      sessionStorage.removeItem('zigral.after-login');
      navigate(next === '/login' ? '/sessions' : next);
    });
    setTitle('Log in');
    return;
  }
  renderTopbar();
  for (const r of routes) {
    const m = r.re.exec(path);
    if (!m) continue;
    if (r.admin && !me.is_admin) {
      fill(main, h('div', { class: 'notice error', role: 'alert' }, 'The dashboard is for administrators. Ask an admin for access.'));
      setTitle('Not allowed');
      return;
    }
    const ctx: Ctx = { me, navigate, setTitle };
    const page = await r.load();
    if (gen !== routeGen) return;
    main.replaceChildren();
    unmount = page.mount(main, ctx, m.slice(1).map((x) => (x === undefined ? '' : decodeURIComponent(x))));
    main.focus({ preventScroll: true });
    return;
  }
  fill(main, h('div', { class: 'notice', role: 'alert' }, 'There is no such page. ', h('a', { href: '#/sessions' }, 'Go to your sessions')));
  setTitle('Not found');
}

onUnauthorized(() => {
  if (me) signedOut('Your session has expired. Please log in again.');
});

window.addEventListener('hashchange', () => void route());

async function boot(): Promise<void> {
  // Whether the app is in a fleet decides the pages' links: known before the first page.
  const inFleet = loadFleet();
  try {
    me = await get<Me>('/auth/me');
    startEvents();
  } catch (e) {
    me = null;
    if (!(e instanceof ApiError && e.status === 401)) toast(String((e as Error).message), 'error');
  }
  await inFleet;
  renderTopbar();
  await route();
}

void boot();
