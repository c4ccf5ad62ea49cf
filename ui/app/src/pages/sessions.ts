// The Sessions page: the user's sessions with state, desktop and who drives; create and delete.
// In a fleet it lists the sessions of every appliance (with an Appliance column), talks to each
// session's own appliance, and a new session opens on the appliance that got it.
import type { Mount } from '../ctx';
import { apiAt, get, explain } from '../api';
import { applianceApi, createApi, elsewhere, fleet, fleetSessions, locateSession, pinnedTo, sessionHref } from '../fleet';
import { h, fill, ago } from '../dom';
import { subscribe, type AppEvent } from '../events';
import { act, errorLine } from './session/act';
import type { AgentProfile, AgentState, AgentView, ControlStatus, SessionRecord } from './session/types';
import { ms } from './session/types';
import './sessions.css';

interface Row {
  s: SessionRecord;
  control: ControlStatus | null;
  agent: AgentView | null;
}

export const mount: Mount = (root, ctx) => {
  root.classList.add('sessions-page');
  ctx.setTitle('Sessions');
  const f = fleet();
  const rows = new Map<string, Row>();
  const status = h('p', { class: 'muted', role: 'status' }, 'Loading your sessions…');
  const listErr = errorLine();
  /** In a fleet: one sentence per appliance that could not be asked for its sessions. */
  const fleetErr = h('div', { class: 'fleet-problems', 'data-testid': 'fleet-problems', 'aria-live': 'polite' });
  const tbody = h('tbody');
  const table = h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'sessions-table' },
      h('caption', { class: 'visually-hidden' }, 'Your sessions'),
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          ...['Title', ...(f ? ['Appliance'] : []), 'State', 'Desktop', 'Who drives', 'Created', 'Actions'].map((t) => h('th', { scope: 'col' }, t)),
        ),
      ),
      tbody,
    ),
  );
  const formSlot = h('div');
  const newBtn = h('button', { type: 'button', 'aria-expanded': 'false', onclick: () => toggleForm() }, 'New session');

  fill(
    root,
    h('div', { class: 'row page-head' }, h('h1', null, 'Sessions'), newBtn),
    formSlot,
    listErr,
    fleetErr,
    status,
    table,
  );

  function driver(r: Row): string {
    const holder = r.control?.holder;
    if (holder) return holder.user_id === ctx.me.id ? `you (${holder.user_name})` : holder.user_name;
    const st = r.agent?.status?.state;
    if (st && st !== 'idle') return `the agent (${st})`;
    return r.s.agent ? 'nobody (agent idle)' : 'nobody';
  }

  function renderRow(r: Row): HTMLTableRowElement {
    const title = r.s.title || `Session ${r.s.id.slice(0, 8)}`;
    const actions = h('td', { 'data-label': 'Actions' });
    const delBtn = h(
      'button',
      { type: 'button', class: 'secondary', 'aria-label': `Delete ${title}`, onclick: () => confirmDelete() },
      'Delete',
    );
    const err = errorLine();
    fill(actions, delBtn, err);
    function confirmDelete(): void {
      const yes = h('button', { type: 'button', class: 'danger' }, 'Yes, delete');
      const no = h('button', { type: 'button', class: 'secondary', onclick: () => { fill(actions, delBtn, err); delBtn.focus(); } }, 'Cancel');
      yes.onclick = () =>
        void act(yes, err, async () => {
          await apiAt(applianceApi(r.s.appliance), 'DELETE', `/sessions/${encodeURIComponent(r.s.id)}`);
          rows.delete(r.s.id);
          render();
        });
      fill(actions, h('div', { class: 'row', role: 'group', 'aria-label': `Delete ${title}?` }, h('span', null, 'Delete it?'), yes, no), err);
      yes.focus();
    }
    return h(
      'tr',
      { dataset: f ? { session: r.s.id, appliance: r.s.appliance ?? '' } : { session: r.s.id } },
      h('td', { 'data-label': 'Title' }, h('a', { href: sessionHref(r.s.id, r.s.appliance) }, title)),
      f ? h('td', { class: 'appliance', 'data-label': 'Appliance' }, r.s.appliance || '—') : null,
      h('td', { 'data-label': 'State' }, h('span', { class: 'badge' }, r.s.state || '—')),
      h('td', { 'data-label': 'Desktop' }, String(r.s.desktop)),
      h('td', { class: 'driver', 'data-label': 'Who drives' }, driver(r)),
      h('td', { 'data-label': 'Created' }, h('time', { datetime: new Date(ms(r.s.created_at)).toISOString() }, ago(ms(r.s.created_at)))),
      actions,
    );
  }

  function render(): void {
    const list = [...rows.values()].sort((a, b) => b.s.created_at - a.s.created_at);
    fill(tbody, ...list.map(renderRow));
    table.hidden = list.length === 0;
    status.textContent = list.length === 0 ? 'You have no sessions yet. Create one with “New session”.' : `${list.length} session${list.length === 1 ? '' : 's'}`;
  }

  async function details(r: Row): Promise<void> {
    const id = encodeURIComponent(r.s.id);
    const at = applianceApi(r.s.appliance);
    const [c, a] = await Promise.allSettled([apiAt<ControlStatus>(at, 'GET', `/sessions/${id}/control`), apiAt<AgentView>(at, 'GET', `/sessions/${id}/agent`)]);
    if (c.status === 'fulfilled') r.control = c.value;
    if (a.status === 'fulfilled') r.agent = a.value;
  }

  /** The user's sessions: this appliance's, or in a fleet every member's (naming the ones that failed). */
  async function fetchList(): Promise<SessionRecord[]> {
    if (!f) return get<SessionRecord[]>('/sessions');
    const { sessions, problems } = await fleetSessions(f);
    fill(fleetErr, ...problems.map((p) => h('p', { class: 'form-error' }, p)));
    return sessions;
  }

  async function load(): Promise<void> {
    try {
      const list = await fetchList();
      rows.clear();
      for (const s of list) rows.set(s.id, { s, control: null, agent: null });
      render();
      await Promise.all([...rows.values()].map(details));
      render();
    } catch (e) {
      status.textContent = '';
      listErr.show(e);
    }
  }

  async function refreshOne(id: string): Promise<void> {
    try {
      // In a fleet the session is on its row's appliance; a new one on the appliance whose
      // events these are (the pinned one), or, at the fleet's root, wherever it is found.
      let where = rows.get(id)?.s.appliance ?? (f ? pinnedTo() : null);
      if (f && !where) where = await locateSession(f, id);
      if (f && !where) return;
      const s = await apiAt<SessionRecord>(applianceApi(where), 'GET', `/sessions/${encodeURIComponent(id)}`);
      if (f && !s.appliance && where) s.appliance = where;
      const r = rows.get(id) ?? { s, control: null, agent: null };
      r.s = s;
      rows.set(id, r);
      await details(r);
      render();
    } catch {
      // Gone or not ours: the next list load says so.
    }
  }

  function toggleForm(): void {
    if (formSlot.firstChild) {
      formSlot.replaceChildren();
      newBtn.setAttribute('aria-expanded', 'false');
      return;
    }
    newBtn.setAttribute('aria-expanded', 'true');
    const title = h('input', { id: 'new-title', name: 'title', maxlength: 200, autocomplete: 'off' });
    const profile = h('select', { id: 'new-profile', name: 'profile' }, h('option', { value: '' }, 'None'));
    const err = errorLine();
    const create = h('button', { type: 'submit' }, 'Create');
    const cancel = h('button', { type: 'button', class: 'secondary', onclick: () => toggleForm() }, 'Cancel');
    const note = h('p', { class: 'muted', role: 'status' });
    const form = h(
      'form',
      { class: 'card new-session', 'aria-label': 'New session' },
      h('h2', null, 'New session'),
      h('label', { for: 'new-title' }, 'Title'),
      title,
      h('label', { for: 'new-profile' }, 'Agent profile'),
      profile,
      h('div', { class: 'row form-actions' }, create, cancel),
      note,
      err,
    );
    form.onsubmit = (ev) => {
      ev.preventDefault();
      note.textContent = 'Creating the session and starting its desktop…';
      void act(create, err, async () => {
        try {
          const body: Record<string, unknown> = {};
          if (title.value.trim()) body.title = title.value.trim();
          // In a fleet the fleet's root creates it (HAProxy picks the appliance) and the
          // session's own appliance is told the rest.
          const s = await apiAt<SessionRecord>(createApi(), 'POST', '/sessions', body);
          if (profile.value) {
            try {
              await apiAt(applianceApi(s.appliance), 'PUT', `/sessions/${encodeURIComponent(s.id)}/agent`, { profile: profile.value });
            } catch (e) {
              sessionStorage.setItem('zigral.session-notice', `The session was created, but its agent profile was not set: ${explain(e)}`);
            }
          }
          // In a fleet the session's page is on its appliance: a full navigation to /a/<name>/.
          if (elsewhere(s.appliance)) location.assign(sessionHref(s.id, s.appliance));
          else ctx.navigate(`/sessions/${encodeURIComponent(s.id)}`);
        } finally {
          note.textContent = '';
        }
      });
    };
    formSlot.replaceChildren(form);
    title.focus();
    get<AgentProfile[]>('/agents')
      .then((agents) => {
        for (const a of agents) profile.appendChild(h('option', { value: a.id }, a.name));
      })
      .catch((e) => err.show(e));
  }

  const offs = [
    subscribe('session.', (e: AppEvent) => {
      if (!e.session_id) return;
      if (e.kind === 'session.deleted') {
        rows.delete(e.session_id);
        render();
      } else if (e.kind === 'session.control') {
        const r = rows.get(e.session_id);
        if (!r) return;
        const holder = (e.data.holder ?? null) as ControlStatus['holder'];
        r.control = { held: !!holder, holder, yours: false };
        render();
      } else {
        void refreshOne(e.session_id);
      }
    }),
    subscribe('agent.state', (e: AppEvent) => {
      const r = e.session_id ? rows.get(e.session_id) : undefined;
      if (!r) return;
      const state = e.data.state as AgentState;
      r.agent = { profile: r.agent?.profile ?? r.s.agent, status: { ...(r.agent?.status ?? { steps: 0, requests: 0, usage: { input_tokens: 0, output_tokens: 0 }, turns_finished: 0 }), state } };
      render();
    }),
  ];

  void load();
  return () => {
    offs.forEach((f) => f());
    root.classList.remove('sessions-page');
  };
};
