// Dashboard services: the appliance's services under zigral-init (state, pid, restarts, last exit), versions, readiness and software updates.
import { ApiError, BASE, explain, get } from '../../api';
import { h } from '../../dom';
import type { Section } from './index';
import { updatePanel } from './update';
import { KeyedTable, Messages, fmtDuration, stateBadge } from './util';

type Service = Record<string, unknown> & { name?: string };

const VERSION_NAMES: Record<string, string> = { control: 'Control plane', init: 'zigral-init' };

/** A cell for any JSON value: text for scalars, compact JSON for the rest. */
function show(v: unknown): string {
  if (v === null || v === undefined || v === '') return '—';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    // A last exit is usually {code, signal, at}: say it in words.
    if ('code' in o || 'signal' in o) {
      const parts: string[] = [];
      if (o.code !== null && o.code !== undefined) parts.push(`code ${String(o.code)}`);
      if (o.signal !== null && o.signal !== undefined) parts.push(`signal ${String(o.signal)}`);
      const at = o.at_ms ?? o.at ?? o.unix_ms;
      if (typeof at === 'number') parts.push(new Date(at).toLocaleString());
      if (parts.length) return parts.join(', ');
    }
    return JSON.stringify(v);
  }
  return String(v);
}

/** Milliseconds as seconds with one decimal: `13.4 s`. */
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

const pick = (s: Service, ...keys: string[]) => {
  for (const k of keys) if (k in s) return s[k];
  return undefined;
};

export const render: Section = (root) => {
  const msgs = new Messages();
  let gone = false;
  const healthBox = h('div', { class: 'adm-cards' });
  const svcState = h('div');
  const versionsBox = h('div', { class: 'adm-versions' });

  const table = new KeyedTable<Service>(
    'Services',
    [
      { head: 'Service', rowHeader: true, cell: (s) => String(pick(s, 'name', 'instance', 'id') ?? '?') },
      { head: 'Part of', cell: (s) => show(pick(s, 'group')) },
      { head: 'State', cell: (s) => stateBadge(String(pick(s, 'state', 'status') ?? 'unknown')) },
      { head: 'PID', cell: (s) => show(pick(s, 'pid')) },
      { head: 'Up for', cell: (s) => { const u = pick(s, 'uptime_ms'); return typeof u === 'number' ? fmtDuration(u) : '—'; } },
      { head: 'Ready at', cell: (s) => { const t = pick(s, 'ready_at_ms'); return typeof t === 'number' ? `+${secs(t)}` : '—'; } },
      { head: 'Restarts', cell: (s) => show(pick(s, 'restarts', 'restart_count')) },
      { head: 'Last exit', cell: (s) => show(pick(s, 'last_exit', 'exit', 'last_exit_status')) },
      { head: 'Paused', cell: (s) => show(pick(s, 'paused')) },
    ],
    (s) => `${String(pick(s, 'group') ?? '')}/${String(pick(s, 'name', 'instance', 'id') ?? '?')}`,
    'zigral-init reports no services.',
  );

  function card(title: string, value: string | Node, kind = ''): HTMLElement {
    return h('div', { class: `card adm-stat ${kind}` }, h('h3', null, title), h('p', null, value));
  }

  async function readiness(): Promise<HTMLElement> {
    try {
      const r = await fetch(`${BASE}readyz`, { credentials: 'same-origin' });
      const type = r.headers.get('content-type') ?? '';
      if (!type.includes('json')) return card('Readiness', 'not reachable from this page (a development server?)', 'warn');
      const j = (await r.json()) as { ready?: boolean; store?: string; supervisor?: string };
      return card('Readiness', h('span', null, stateBadge(j.ready ? 'ok' : 'failed'), ` store: ${j.store ?? '?'}, supervisor: ${j.supervisor ?? '?'}`));
    } catch {
      return card('Readiness', 'The appliance cannot be reached.', 'bad');
    }
  }

  async function load(): Promise<void> {
    const [info, ready, svc] = await Promise.allSettled([get<{ version?: string; live_view_port?: number }>('/info'), readiness(), get<unknown>('/admin/services')]);
    if (gone) return;
    const cards: HTMLElement[] = [];
    if (info.status === 'fulfilled') {
      cards.push(card('Control plane version', info.value.version ?? 'unknown'));
      cards.push(card('Live view port', String(info.value.live_view_port ?? '—')));
    } else {
      const e = info.reason;
      cards.push(card('Control plane version', e instanceof ApiError && e.status === 404 ? 'not reported by this appliance yet' : explain(e), 'warn'));
    }
    if (ready.status === 'fulfilled') cards.push(ready.value);
    healthBox.replaceChildren(...cards);

    if (svc.status === 'rejected') {
      const e = svc.reason;
      table.update([]);
      table.el.hidden = true;
      let text: string;
      if (e instanceof ApiError && e.status === 404) text = 'This appliance does not report its services yet (GET /api/v1/admin/services is missing): update the appliance to see them.';
      else if (e instanceof ApiError && e.status === 503) text = `The services could not be read: ${explain(e)}. Try again in a moment.`;
      else text = `The services could not be read: ${explain(e)}`;
      svcState.replaceChildren(h('div', { class: 'notice', role: 'alert' }, text));
      versionsBox.replaceChildren();
      return;
    }
    const v = svc.value;
    const boot = (v && typeof v === 'object' ? (v as Record<string, unknown>).boot : null) as
      | { kernel_ms?: number | null; all_ready_ms?: number | null }
      | null;
    if (boot) {
      const parts = [
        typeof boot.kernel_ms === 'number' ? `kernel ${secs(boot.kernel_ms)}` : null,
        typeof boot.all_ready_ms === 'number' ? `all services ready ${secs(boot.all_ready_ms)} after zigral-init started` : 'services still starting',
      ].filter(Boolean);
      healthBox.appendChild(card('Boot', parts.join('; ')));
    }
    let list: Service[] = [];
    let versions: unknown = null;
    if (Array.isArray(v)) list = v as Service[];
    else if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      list = (Array.isArray(o.services) ? o.services : []) as Service[];
      versions = o.versions ?? null;
    }
    const down = v && typeof v === 'object' && (v as Record<string, unknown>).shutting_down === true;
    svcState.replaceChildren(...(down ? [h('div', { class: 'notice', role: 'alert' }, 'The appliance is shutting down: zigral-init is stopping every service.')] : []));
    table.el.hidden = false;
    // The appliance's own services first, then each desktop's and recording's.
    const g = (s: Service) => String(pick(s, 'group') ?? '');
    table.update([...list].sort((a, b) => (g(a) === g(b) ? 0 : !g(a) ? -1 : !g(b) ? 1 : g(a).localeCompare(g(b), undefined, { numeric: true }))));
    if (versions && typeof versions === 'object') {
      const entries = Array.isArray(versions)
        ? (versions as Record<string, unknown>[]).map((x) => [String(x.name ?? '?'), show(x.version)] as const)
        : Object.entries(versions as Record<string, unknown>).map(([k, x]) => [VERSION_NAMES[k] ?? k, x === null ? 'not reported' : show(x)] as const);
      versionsBox.replaceChildren(
        h('h3', null, 'Versions'),
        h('dl', { class: 'adm-dl' }, entries.map(([k, x]) => [h('dt', null, k), h('dd', null, x)])),
      );
    } else versionsBox.replaceChildren();
  }

  const refresh = h('button', { type: 'button', class: 'secondary', onclick: () => void load() }, 'Refresh');
  const upd = updatePanel();
  root.replaceChildren(
    msgs.el,
    h('section', { 'aria-labelledby': 'adm-health-h' }, h('div', { class: 'row adm-section-head' }, h('h2', { id: 'adm-health-h' }, 'Health and versions'), refresh), healthBox),
    h('section', { 'aria-labelledby': 'adm-svc-h' }, h('h2', { id: 'adm-svc-h' }, 'Services'), svcState, table.el, versionsBox),
    upd.el,
  );
  healthBox.appendChild(h('p', { class: 'muted', role: 'status' }, 'Loading…'));
  void load();
  const poll = window.setInterval(() => {
    if (!document.hidden) void load();
  }, 10000);
  return () => {
    gone = true;
    clearInterval(poll);
    upd.stop();
  };
};
