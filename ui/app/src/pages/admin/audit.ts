// Dashboard audit log: who did what and when (newest first), filterable by action, actor or target.
import { get } from '../../api';
import { h } from '../../dom';
import type { Section } from './index';
import { KeyedTable, Messages, field, fmtTime, loading } from './util';

interface Audit {
  seq: number;
  timestamp: number;
  actor: string;
  action: string;
  target: string;
  detail: unknown;
}

const PAGE = 1000;
const SHOWN = 200;

export const render: Section = (root) => {
  const msgs = new Messages();
  const users = new Map<string, string>();
  let all: Audit[] = [];
  let gone = false;

  const actor = (a: string) => {
    const m = /^user:(.+)$/.exec(a);
    return m ? (users.get(m[1]) ?? a) : a;
  };

  const table = new KeyedTable<Audit>(
    'Audit log',
    [
      { head: 'When', rowHeader: true, cell: (a) => fmtTime(a.timestamp) },
      { head: 'Who', cell: (a) => actor(a.actor) },
      { head: 'Action', cell: (a) => h('code', null, a.action) },
      { head: 'Target', cell: (a) => a.target },
      { head: 'Detail', cell: (a) => (a.detail && typeof a.detail === 'object' && Object.keys(a.detail).length ? h('code', { class: 'adm-small' }, JSON.stringify(a.detail)) : '—') },
    ],
    (a) => String(a.seq),
    'No entries match.',
  );

  const filter = h('input', { type: 'search', autocomplete: 'off' });
  const count = h('p', { class: 'muted', role: 'status' });

  function draw(): void {
    const q = filter.value.trim().toLowerCase();
    const hits = all.filter((a) => !q || `${a.action} ${actor(a.actor)} ${a.target}`.toLowerCase().includes(q));
    table.update(hits.slice(0, SHOWN));
    count.textContent = `${hits.length} entr${hits.length === 1 ? 'y' : 'ies'}${hits.length > SHOWN ? `, the newest ${SHOWN} shown` : ''}.`;
  }

  async function load(): Promise<void> {
    try {
      if (!users.size) {
        try {
          for (const u of await get<{ id: string; username: string }[]>('/users')) users.set(u.id, u.username);
        } catch {
          // Ids are shown instead of names.
        }
      }
      // The log is read oldest first, a page at a time, from after the last entry seen.
      let after: number | null = all.length ? all[0].seq : null;
      const fresh: Audit[] = [];
      for (let i = 0; i < 20; i++) {
        const page = await get<Audit[]>(`/admin/audit?limit=${PAGE}${after === null ? '' : `&after=${after}`}`);
        fresh.push(...page);
        if (page.length < PAGE) break;
        after = page[page.length - 1].seq;
      }
      all = [...fresh.reverse(), ...all];
      listState.replaceChildren();
      draw();
    } catch (e) {
      listState.replaceChildren();
      msgs.error('The audit log could not be read', e);
    }
  }

  filter.addEventListener('input', draw);
  const listState = loading('the audit log');
  root.replaceChildren(
    msgs.el,
    h(
      'section',
      { 'aria-labelledby': 'adm-audit-h' },
      h('div', { class: 'row adm-section-head' }, h('h2', { id: 'adm-audit-h' }, 'Audit log'), h('button', { type: 'button', class: 'secondary', onclick: () => void load() }, 'Refresh')),
      h('div', { class: 'adm-inline-form' }, field('adm-audit-filter', 'Filter by action, user or target', filter)),
      count,
      listState,
      table.el,
    ),
  );
  void load();
  return () => {
    gone = true;
    void gone;
  };
};
