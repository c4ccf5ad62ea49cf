// A session's page: the live view large on the left; needs-you prompts, chat, steps and
// recording on the right (stacked on a narrow window). In a fleet the page belongs on the
// session's appliance (`/a/<name>/`): opened anywhere else, it goes there.
import type { Mount } from '../../ctx';
import { ApiError, explain, get } from '../../api';
import { h, fill } from '../../dom';
import { elsewhere, fleet, locateSession, sessionHref } from '../../fleet';
import { subscribe, type AppEvent } from '../../events';
import { LiveView } from './live';
import { Control } from './control';
import { clipboardPanel } from './clipboard';
import { secretTyper } from './secret';
import { Chat } from './chat';
import { Steps } from './steps';
import { Prompts } from './prompts';
import { Recording } from './recording';
import type { SessionRecord } from './types';
import { ms } from './types';
import './session.css';

export const mount: Mount = (root, ctx, params) => {
  const id = params[0] ?? '';
  root.classList.add('session-page');
  let cleanup: (() => void) | null = null;
  let gone = false;
  ctx.setTitle('Session');
  fill(root, h('p', { class: 'muted', role: 'status' }, 'Loading the session…'));
  load(id)
    .then((s) => {
      if (gone) return;
      if (s && elsewhere(s.appliance)) moveTo(root, s.id, s.appliance);
      else if (s) cleanup = render(root, ctx, s);
    })
    .catch((e) => {
      if (gone) return;
      const text =
        e instanceof ApiError && e.status === 404
          ? 'There is no such session (it may have been deleted).'
          : e instanceof ApiError && e.status === 403
            ? `You are not allowed to see this session. ${explain(e)}`
            : explain(e);
      fill(root, h('h1', null, 'Session'), h('div', { class: 'notice error', role: 'alert' }, text, ' ', h('a', { href: '#/sessions' }, 'Back to your sessions')));
    });
  return () => {
    gone = true;
    cleanup?.();
    root.classList.remove('session-page');
  };
};

/** The session; in a fleet, when this page's appliance does not have it, null after sending
 * the page to the appliance that does. */
async function load(id: string): Promise<SessionRecord | null> {
  try {
    return await get<SessionRecord>(`/sessions/${encodeURIComponent(id)}`);
  } catch (e) {
    const f = fleet();
    if (!(f && e instanceof ApiError && e.status === 404)) throw e;
    const where = await locateSession(f, id);
    if (!where || !elsewhere(where)) throw e;
    moveTo(null, id, where);
    return null;
  }
}

/** Replaces this page with the session's page on its appliance (a full navigation). */
function moveTo(root: HTMLElement | null, id: string, appliance: string | undefined): void {
  if (root) fill(root, h('p', { class: 'muted', role: 'status' }, `Opening the session on ${appliance}…`));
  location.replace(sessionHref(id, appliance));
}

function render(root: HTMLElement, ctx: Parameters<Mount>[1], s: SessionRecord): () => void {
  const title = s.title || `Session ${s.id.slice(0, 8)}`;
  const live = new LiveView(s.id, s.desktop);
  const control = new Control(s.id, ctx.me.id, live);
  const chat = new Chat(s.id);
  const steps = new Steps(s.id);
  const prompts = new Prompts(s.id);
  const recording = new Recording(s.desktop);
  steps.seek = (n) => recording.seekStep(n);
  recording.onStep = (n, call) => steps.shots(n, null, null, call);
  prompts.onShots = (n, b, a, call) => steps.shots(n, b, a, call);
  // On a narrow window the prompts sit below the live view: a button at the top leads to them.
  const jump = h(
    'button',
    {
      type: 'button',
      class: 'needs-you-jump',
      hidden: true,
      onclick: () => {
        prompts.el.setAttribute('tabindex', '-1');
        prompts.el.scrollIntoView({ block: 'start' });
        prompts.el.focus({ preventScroll: true });
      },
    },
    'The agent needs you: go to the prompts',
  );
  prompts.onCount = (n) => {
    ctx.setTitle(n > 0 ? `(!) ${title}` : title);
    jump.hidden = n === 0;
  };
  let first = true;
  chat.onStatus = (st) => {
    control.agentBusy = !!st && st.state !== 'idle';
    if (first) {
      first = false;
      const done = chat.finishedTurns.reduce((a, t) => a + t.steps, 0);
      steps.history(done + (st && st.state !== 'idle' ? st.steps : 0));
    }
  };

  const leave = h('p', { class: 'muted hint' }, 'While you control the desktop, keys go to it: press Shift+Escape to get back to the page.');
  live.screen.tabIndex = -1;
  live.screen.addEventListener(
    'keydown',
    (ev) => {
      if (ev.key === 'Escape' && ev.shiftKey) {
        ev.stopPropagation();
        ev.preventDefault();
        live.blur();
        control.button.focus();
      }
    },
    true,
  );
  const notice = sessionStorage.getItem('zigral.session-notice');
  sessionStorage.removeItem('zigral.session-notice');

  fill(
    root,
    h(
      'div',
      { class: 'session-head' },
      h('h1', null, title),
      h(
        'p',
        { class: 'muted' },
        `Desktop ${s.desktop} · ${s.state} · created ${new Date(ms(s.created_at)).toLocaleString()} · `,
        h('a', { href: '#/sessions' }, 'All sessions'),
      ),
      jump,
    ),
    notice ? h('div', { class: 'notice error', role: 'alert' }, notice) : null,
    h(
      'div',
      { class: 'session-layout' },
      h(
        'div',
        { class: 'live-col' },
        h(
          'section',
          { class: 'card live', 'aria-label': 'Live view' },
          h('h2', { class: 'visually-hidden' }, 'Live view'),
          h('div', { class: 'row live-bar' }, live.status, control.holder, control.rtt, h('span', { class: 'spacer' }), control.button),
          control.error,
          live.screen,
          leave,
          clipboardPanel(live),
          secretTyper(s.id),
        ),
      ),
      h('div', { class: 'side-col' }, prompts.el, chat.el, steps.el, recording.el),
    ),
  );
  void live.connect('view');

  const off = subscribe('', (e: AppEvent) => {
    if (e.session_id === s.id) {
      if (e.kind === 'session.deleted') {
        fill(root, h('h1', null, title), h('div', { class: 'notice error', role: 'alert' }, 'This session was deleted. ', h('a', { href: '#/sessions' }, 'Back to your sessions')));
        return;
      }
      control.onEvent(e);
      chat.onEvent(e);
      steps.onEvent(e);
      prompts.onEvent(e);
    } else if (e.session_id === null && Number(e.data?.desktop) === s.desktop) {
      live.onEvent(e);
      recording.onEvent(e);
    }
  });
  return () => {
    off();
    control.destroy();
    live.destroy();
    recording.destroy();
    document.title = 'Zigral';
  };
}
