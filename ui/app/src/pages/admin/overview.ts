// Dashboard overview: every desktop and session with live state (who drives, agent steps, CPU, memory, viewers) and the live-view and recording switches.
import { ApiError, del, get, post, put } from '../../api';
import { ago, h } from '../../dom';
import { subscribe, type AppEvent } from '../../events';
import type { Section } from './index';
import { KeyedTable, Messages, fmtBytes, makeSwitch, stateBadge, type Switch } from './util';
import type { SessionRecord } from '../session/types';
import { sessionHref } from '../../fleet';

/** `GET /desktops` (a `DesktopView`: the record flattened with its usage). */
export interface Desktop {
  n: number;
  owner: string | null;
  sessions: string[];
  state: string;
  persistent: boolean;
  viewers: number | null;
  cpu_usec?: number | null;
  tasks?: number | null;
  idle_secs?: number;
  /** Limit, bytes (what it uses is in `usage`). */
  memory_bytes?: number | null;
  /** CPU and memory in use now (CPU in percent of one CPU); absent when unknown. */
  usage?: { cpu_percent?: number; memory_bytes?: number } | null;
}

/** A session as GET /api/v1/sessions lists it (the session pages' shape). */
export type Session = SessionRecord;

interface Holder {
  session_id: string;
  desktop: number;
  user_id: string;
  user_name: string;
  since_ms: number;
  expires_ms: number;
}

interface AgentStatus {
  state: string;
  profile: string | null;
  waiting_for: string | null;
  steps: number;
  requests: number;
  last_outcome: string | null;
}

interface Recording {
  id: string;
  desktop: number;
  state: string;
  started_at: number;
}

/** What the page knows about one session beyond its record. */
interface Live {
  holder: Holder | null;
  agent: AgentStatus | null;
  lastAction: string | null;
}

const ACTIVE = ['running', 'waiting', 'paused'];

export const render: Section = (root) => {
  const msgs = new Messages();
  let desktops: Desktop[] = [];
  let sessions: Session[] = [];
  const users = new Map<string, string>();
  const agents = new Map<string, string>();
  const live = new Map<string, Live>();
  const liveView = new Map<number, boolean | null>();
  const recording = new Map<number, string | null>();
  const switches = new Map<number, { view: Switch; rec: Switch }>();
  /** Previous CPU sample per desktop, to turn CPU time into a percentage. */
  const cpuPrev = new Map<number, { usec: number; at: number; pct: number | null }>();
  const recent: AppEvent[] = [];
  let gone = false;

  const userName = (id: string | null) => (id ? (users.get(id) ?? id.slice(0, 8)) : 'pool (nobody)');
  const liveOf = (sid: string): Live => {
    let l = live.get(sid);
    if (!l) live.set(sid, (l = { holder: null, agent: null, lastAction: null }));
    return l;
  };
  const sessionsOn = (n: number) => sessions.filter((s) => s.desktop === n);

  // ---- who drives, CPU, memory -------------------------------------------------------------
  function driver(ss: Session[]): { text: string; kind: 'person' | 'agent' | 'none' } {
    for (const s of ss) {
      const l = live.get(s.id);
      if (l?.holder) return { text: `${l.holder.user_name} (person)`, kind: 'person' };
    }
    for (const s of ss) {
      const st = live.get(s.id)?.agent?.state;
      if (st && ACTIVE.includes(st)) return { text: st === 'running' ? 'the agent' : `the agent (${st})`, kind: 'agent' };
    }
    return { text: 'nobody', kind: 'none' };
  }
  const driverCell = (ss: Session[]) => {
    const d = driver(ss);
    return h('span', { class: `adm-driver adm-driver-${d.kind}` }, d.text);
  };

  function agentCell(ss: Session[]): string {
    const parts: string[] = [];
    let idle = false;
    for (const s of ss) {
      const a = live.get(s.id)?.agent;
      if (!a) continue;
      if (!ACTIVE.includes(a.state)) idle = true;
      else parts.push(`${a.state}, ${a.steps}\u00a0step${a.steps === 1 ? '' : 's'}`);
    }
    return parts.length ? parts.join('; ') : idle ? 'idle' : '—';
  }

  function num(v: unknown): number | null {
    return typeof v === 'number' && Number.isFinite(v) ? v : null;
  }

  function cpuText(d: Desktop): string {
    const pct = num(d.usage?.cpu_percent);
    if (pct !== null) return `${pct.toFixed(pct < 10 ? 1 : 0)}\u00a0%`;
    if (d.usage) return '—';
    const p = cpuPrev.get(d.n);
    if (p?.pct !== null && p?.pct !== undefined) return `${p.pct.toFixed(p.pct < 10 ? 1 : 0)}\u00a0%`;
    const usec = num(d.cpu_usec);
    return usec === null ? '—' : `${(usec / 1e6).toFixed(1)}\u00a0s used`;
  }

  function memText(d: Desktop): string {
    // `memory_bytes` at the top level is the desktop's limit; what it uses is `usage.memory_bytes`.
    const m = num(d.usage?.memory_bytes);
    if (m === null) return '—';
    const limit = num(d.memory_bytes);
    return limit !== null && limit >= m ? `${fmtBytes(m)} of ${fmtBytes(limit)}` : fmtBytes(m);
  }

  function sampleCpu(): void {
    const now = performance.now();
    for (const d of desktops) {
      const usec = num(d.cpu_usec);
      if (usec === null) continue;
      const p = cpuPrev.get(d.n);
      let pct: number | null = p?.pct ?? null;
      if (p && now > p.at && usec >= p.usec) pct = ((usec - p.usec) / 1000 / (now - p.at)) * 100;
      cpuPrev.set(d.n, { usec, at: now, pct });
    }
  }

  // ---- switches ----------------------------------------------------------------------------
  function switchesOf(n: number): { view: Switch; rec: Switch } {
    let s = switches.get(n);
    if (s) return s;
    const view = makeSwitch(`adm-lv-${n}`, `Live view of desktop ${n}`, async (on, sw) => {
      sw.busy(true);
      try {
        const r = await put<{ enabled: boolean }>(`/desktops/${n}/live-view`, { enabled: on });
        liveView.set(n, r.enabled);
        msgs.info(`The live view of desktop ${n} is ${r.enabled ? 'on' : 'off'}.`);
      } catch (e) {
        msgs.error(`Desktop ${n}'s live view could not be turned ${on ? 'on' : 'off'}`, e);
      } finally {
        sw.busy(false);
        sw.set(liveView.get(n) ?? !on);
      }
    });
    const rec = makeSwitch(`adm-rec-${n}`, `Recording of desktop ${n}`, async (on, sw) => {
      sw.busy(true);
      if (on) msgs.info(`Starting the recording of desktop ${n}…`);
      try {
        if (on) {
          const r = await post<Recording>(`/desktops/${n}/recordings`);
          recording.set(n, r.id);
          msgs.info(`Desktop ${n} is being recorded.`);
        } else {
          await del(`/desktops/${n}/recordings/current`);
          recording.set(n, null);
          msgs.info(`The recording of desktop ${n} stopped; it is being finalized.`);
        }
      } catch (e) {
        if (!on && e instanceof ApiError && e.status === 404) recording.set(n, null);
        msgs.error(on ? `Desktop ${n}'s recording could not start` : `Desktop ${n}'s recording could not stop`, e);
      } finally {
        sw.busy(false);
        sw.set(Boolean(recording.get(n)));
      }
    });
    s = { view, rec };
    switches.set(n, s);
    return s;
  }

  function viewSwitchCell(d: Desktop): HTMLElement {
    const s = switchesOf(d.n).view;
    if (s.input.getAttribute('aria-busy') === 'true') return s.el;
    const v = liveView.get(d.n);
    // undefined: not read yet; null: could not be read.
    s.input.disabled = v === undefined || v === null;
    s.set(Boolean(v));
    return s.el;
  }

  function recSwitchCell(d: Desktop): HTMLElement {
    const s = switchesOf(d.n).rec;
    if (s.input.getAttribute('aria-busy') !== 'true') s.set(Boolean(recording.get(d.n)));
    return s.el;
  }

  // ---- tables ------------------------------------------------------------------------------
  const sessionLinks = (ss: Session[]) =>
    ss.length
      ? h('ul', { class: 'adm-plain' }, ss.map((s) => h('li', null, h('a', { href: sessionHref(s.id, s.appliance) }, s.title || s.id))))
      : '—';

  const desktopTable = new KeyedTable<Desktop>(
    'Desktops',
    [
      { head: 'Desktop', rowHeader: true, cell: (d) => `Desktop ${d.n}` },
      { head: 'State', cell: (d) => stateBadge(d.state) },
      { head: 'Owner', cell: (d) => userName(d.owner) },
      { head: 'Sessions', cell: (d) => sessionLinks(sessionsOn(d.n)) },
      { head: 'Driven by', cell: (d) => driverCell(sessionsOn(d.n)) },
      { head: 'Agent', cell: (d) => agentCell(sessionsOn(d.n)) },
      { head: 'CPU', cell: (d) => cpuText(d) },
      { head: 'Memory', cell: (d) => memText(d) },
      { head: 'Viewers', cell: (d) => (d.viewers === null || d.viewers === undefined ? '—' : String(d.viewers)) },
      { head: 'Live view', cell: viewSwitchCell },
      { head: 'Recording', cell: recSwitchCell },
    ],
    (d) => String(d.n),
    'No desktops are running.',
  );

  const sessionTable = new KeyedTable<Session>(
    'Sessions',
    [
      { head: 'Session', rowHeader: true, cell: (s) => h('a', { href: sessionHref(s.id, s.appliance) }, s.title || s.id) },
      { head: 'Owner', cell: (s) => userName(s.owner) },
      { head: 'Desktop', cell: (s) => String(s.desktop) },
      { head: 'Agent profile', cell: (s) => (s.agent ? (agents.get(s.agent) ?? s.agent) : 'none') },
      { head: 'Agent state', cell: (s) => { const a = live.get(s.id)?.agent; return a ? stateBadge(a.state) : '—'; } },
      { head: 'Steps', cell: (s) => { const a = live.get(s.id)?.agent; return a ? String(a.steps) : '—'; } },
      { head: 'Last action', cell: (s) => live.get(s.id)?.lastAction ?? '—' },
      { head: 'Driven by', cell: (s) => driverCell([s]) },
      { head: 'Updated', cell: (s) => ago(s.updated_at) },
    ],
    (s) => s.id,
    'No sessions yet.',
  );

  const summary = h('p', { class: 'adm-summary' });
  const recentList = h('ol', { class: 'adm-recent', 'aria-label': 'Recent events' });

  function draw(): void {
    if (gone) return;
    desktopTable.update([...desktops].sort((a, b) => a.n - b.n));
    sessionTable.update([...sessions].sort((a, b) => b.updated_at - a.updated_at));
    const running = sessions.filter((s) => ACTIVE.includes(live.get(s.id)?.agent?.state ?? '')).length;
    const held = sessions.filter((s) => live.get(s.id)?.holder).length;
    const rec = [...recording.values()].filter(Boolean).length;
    summary.textContent = `${desktops.length} desktop${desktops.length === 1 ? '' : 's'}, ${sessions.length} session${sessions.length === 1 ? '' : 's'}, ${running} agent${running === 1 ? '' : 's'} active, ${held} driven by a person, ${rec} recording.`;
  }

  function drawRecent(): void {
    recentList.replaceChildren(
      ...recent.map((e) => {
        const s = e.session_id ? sessions.find((x) => x.id === e.session_id) : undefined;
        const d = typeof e.data?.desktop === 'number' ? ` desktop ${e.data.desktop}` : '';
        return h('li', null, h('time', { datetime: new Date(e.timestamp).toISOString() }, new Date(e.timestamp).toLocaleTimeString()), ' ', h('code', null, e.kind), s ? ` ${s.title}` : d);
      }),
    );
    if (!recent.length) recentList.appendChild(h('li', { class: 'muted' }, 'Nothing yet: events appear here as they happen.'));
  }

  // ---- loading -----------------------------------------------------------------------------
  async function loadDesktops(): Promise<void> {
    try {
      desktops = await get<Desktop[]>('/desktops');
      sampleCpu();
      await Promise.all(desktops.filter((d) => !liveView.has(d.n)).map((d) => loadDesktopExtras(d.n)));
    } catch (e) {
      msgs.error('The desktops could not be listed', e);
    }
    draw();
  }

  async function loadDesktopExtras(n: number): Promise<void> {
    const [lv, recs] = await Promise.allSettled([
      get<{ enabled: boolean }>(`/desktops/${n}/live-view`),
      get<Recording[]>(`/desktops/${n}/recordings`),
    ]);
    if (lv.status === 'fulfilled') liveView.set(n, lv.value.enabled);
    else {
      liveView.set(n, null);
      msgs.error(`Desktop ${n}'s live view state could not be read`, lv.reason);
    }
    if (recs.status === 'fulfilled') recording.set(n, recs.value.find((r) => r.state === 'recording')?.id ?? null);
    else msgs.error(`Desktop ${n}'s recordings could not be listed`, recs.reason);
  }

  async function loadSessionExtras(s: Session): Promise<void> {
    const l = liveOf(s.id);
    const [c, a] = await Promise.allSettled([
      get<{ held: boolean; holder: Holder | null }>(`/sessions/${encodeURIComponent(s.id)}/control`),
      get<{ profile: string | null; status: AgentStatus | null }>(`/sessions/${encodeURIComponent(s.id)}/agent`),
    ]);
    if (c.status === 'fulfilled') l.holder = c.value.holder;
    if (a.status === 'fulfilled') l.agent = a.value.status;
  }

  async function loadSessions(): Promise<void> {
    try {
      sessions = await get<Session[]>('/sessions');
      await Promise.all(sessions.filter((s) => !live.has(s.id)).map(loadSessionExtras));
    } catch (e) {
      msgs.error('The sessions could not be listed', e);
    }
    draw();
  }

  async function loadNames(): Promise<void> {
    const [u, a] = await Promise.allSettled([get<{ id: string; username: string }[]>('/users'), get<{ id: string; name: string }[]>('/agents')]);
    if (u.status === 'fulfilled') for (const x of u.value) users.set(x.id, x.username);
    else msgs.error('The users could not be listed', u.reason);
    if (a.status === 'fulfilled') for (const x of a.value) agents.set(x.id, x.name);
    else msgs.error('The agent profiles could not be listed', a.reason);
  }

  // ---- live events -------------------------------------------------------------------------
  const timers = new Map<string, number>();
  function soon(what: string, f: () => Promise<void>): void {
    if (timers.has(what)) return;
    timers.set(
      what,
      window.setTimeout(() => {
        timers.delete(what);
        if (!gone) void f();
      }, 300),
    );
  }

  function onEvent(e: AppEvent): void {
    if (gone || e.kind === 'hello') return;
    const d = e.data ?? {};
    const sid = e.session_id;
    const n = typeof d.desktop === 'number' ? d.desktop : null;
    if (e.kind === 'desktop.live_view' && n !== null && typeof d.enabled === 'boolean') {
      liveView.set(n, d.enabled);
    } else if (e.kind.startsWith('desktop.')) {
      if (n !== null && (e.kind === 'desktop.destroyed' || e.kind === 'desktop.created')) liveView.delete(n);
      soon('desktops', loadDesktops);
    } else if (e.kind === 'session.created' || e.kind === 'session.deleted' || e.kind === 'session.updated') {
      if (e.kind === 'session.deleted' && sid) live.delete(sid);
      soon('sessions', loadSessions);
    } else if (e.kind === 'session.control' && sid) {
      liveOf(sid).holder = (d.holder as Holder | null) ?? null;
    } else if (e.kind.startsWith('agent.') && sid) {
      const l = liveOf(sid);
      const a: AgentStatus = l.agent ?? { state: 'idle', profile: null, waiting_for: null, steps: 0, requests: 0, last_outcome: null };
      if (e.kind === 'agent.state' && typeof d.state === 'string') a.state = d.state;
      else if (e.kind === 'agent.turn.started') {
        a.state = 'running';
        a.steps = 0;
      } else if (e.kind === 'agent.turn.ended') {
        if (typeof d.state === 'string') a.state = d.state;
        if (typeof d.steps === 'number') a.steps = d.steps;
        if (typeof d.outcome === 'string') a.last_outcome = d.outcome;
      } else if (e.kind === 'agent.step') {
        if (typeof d.step === 'number') a.steps = Math.max(a.steps, d.step);
        if (typeof d.call === 'string') l.lastAction = d.call;
      }
      l.agent = a;
    } else if (e.kind.startsWith('recording.') && n !== null) {
      if (e.kind === 'recording.started' && typeof d.id === 'string') recording.set(n, d.id);
      else if (e.kind === 'recording.stopped' && recording.get(n) === d.id) recording.set(n, null);
    } else {
      return;
    }
    recent.unshift(e);
    recent.length = Math.min(recent.length, 12);
    drawRecent();
    draw();
  }

  root.replaceChildren(
    msgs.el,
    summary,
    h('section', { 'aria-labelledby': 'adm-desktops-h' }, h('h2', { id: 'adm-desktops-h' }, 'Desktops'), desktopTable.el),
    h('section', { 'aria-labelledby': 'adm-sessions-h' }, h('h2', { id: 'adm-sessions-h' }, 'Sessions and agents'), sessionTable.el),
    h('section', { 'aria-labelledby': 'adm-recent-h' }, h('h2', { id: 'adm-recent-h' }, 'Recent events'), recentList),
  );
  summary.textContent = 'Loading desktops and sessions…';
  drawRecent();

  const unsub = subscribe('', onEvent);
  void (async () => {
    await loadNames();
    await Promise.all([loadDesktops(), loadSessions()]);
    // A second sample soon, so CPU shows as a percentage without waiting for the poll.
    timers.set('cpu', window.setTimeout(() => { timers.delete('cpu'); if (!gone) void loadDesktops(); }, 1500));
  })();
  // Usage and viewers are not events: poll them.
  const poll = window.setInterval(() => {
    if (!document.hidden) void loadDesktops();
  }, 5000);
  return () => {
    gone = true;
    unsub();
    clearInterval(poll);
    for (const t of timers.values()) clearTimeout(t);
  };
};
