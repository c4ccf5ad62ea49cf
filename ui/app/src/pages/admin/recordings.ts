// Dashboard recordings: every desktop's recordings with state, start, duration, size and stop reason; download and delete.
import { API, del, get } from '../../api';
import { h } from '../../dom';
import { subscribe } from '../../events';
import type { Section } from './index';
import { KeyedTable, Messages, confirmDialog, field, fmtBytes, fmtDuration, fmtTime, loading, stateBadge } from './util';

interface Recording {
  id: string;
  desktop: number;
  owner: string;
  state: string;
  fps: number;
  started_at: number;
  first_frame_ms: number | null;
  stopped_at: number | null;
  finished_at: number | null;
  stop_reason: string | null;
  size_bytes: number | null;
  duration_ms: number | null;
  chapters: unknown[];
  pauses: unknown[];
  error: string | null;
}

const REASONS: Record<string, string> = {
  stopped: 'stopped by a person',
  duration_cap: 'reached its length limit',
  size_cap: 'reached its size limit',
  disk_full: 'the disk was nearly full',
  desktop_gone: 'the desktop went away',
  recorder_failed: 'the recorder failed',
};

export const render: Section = (root) => {
  const msgs = new Messages();
  const users = new Map<string, string>();
  /** Desktop numbers whose recordings are listed (the running desktops and any asked for). */
  const numbers = new Set<number>();
  let recs: Recording[] = [];
  let gone = false;

  function duration(r: Recording): string {
    if (r.duration_ms !== null) return fmtDuration(r.duration_ms);
    if (r.state === 'recording' && r.first_frame_ms) return `${fmtDuration(Date.now() - r.first_frame_ms)} so far`;
    return '—';
  }

  async function remove(r: Recording): Promise<void> {
    if (!(await confirmDialog('Delete this recording?', `The recording of desktop ${r.desktop} started ${fmtTime(r.started_at)} (${fmtBytes(r.size_bytes)}) is deleted for good.`, 'Delete recording'))) return;
    try {
      await del(`/desktops/${r.desktop}/recordings/${encodeURIComponent(r.id)}`);
      msgs.info(`The recording ${r.id} is deleted.`);
    } catch (e) {
      msgs.error(`The recording ${r.id} could not be deleted`, e);
    }
    if (!gone) await load();
  }

  const table = new KeyedTable<Recording>(
    'Recordings',
    [
      { head: 'Recording', rowHeader: true, cell: (r) => h('code', null, r.id) },
      { head: 'Desktop', cell: (r) => String(r.desktop) },
      { head: 'Started by', cell: (r) => users.get(r.owner) ?? r.owner.slice(0, 8) },
      { head: 'State', cell: (r) => [stateBadge(r.state), r.error ? h('div', { class: 'adm-small' }, r.error) : null] },
      { head: 'Started', cell: (r) => fmtTime(r.started_at) },
      { head: 'Duration', cell: duration },
      { head: 'Size', cell: (r) => fmtBytes(r.size_bytes) },
      { head: 'Stop reason', cell: (r) => (r.stop_reason ? (REASONS[r.stop_reason] ?? r.stop_reason) : '—') },
      { head: 'Chapters', cell: (r) => String(r.chapters?.length ?? 0) },
      {
        head: 'Actions',
        cell: (r) =>
          h(
            'div',
            { class: 'row adm-actions' },
            r.state === 'ready'
              ? h('a', { href: `${API}/desktops/${r.desktop}/recordings/${encodeURIComponent(r.id)}`, download: `desktop-${r.desktop}-${r.id}.mp4`, class: 'adm-link-button' }, 'Download')
              : null,
            r.state === 'recording' || r.state === 'finalizing'
              ? null
              : h('button', { type: 'button', class: 'danger', 'aria-label': `Delete recording ${r.id}`, onclick: () => void remove(r) }, 'Delete'),
          ),
      },
    ],
    (r) => `${r.id}:${r.state}`,
    'No recordings. Switch one on in the overview or on a session page.',
  );

  async function load(): Promise<void> {
    try {
      const [ds, us] = await Promise.allSettled([get<{ n: number }[]>('/desktops'), users.size ? Promise.resolve([]) : get<{ id: string; username: string }[]>('/users')]);
      if (ds.status === 'fulfilled') for (const d of ds.value) numbers.add(d.n);
      else msgs.error('The desktops could not be listed', ds.reason);
      if (us.status === 'fulfilled') for (const u of us.value) users.set(u.id, u.username);
      const lists = await Promise.allSettled([...numbers].map((n) => get<Recording[]>(`/desktops/${n}/recordings`)));
      const all: Recording[] = [];
      lists.forEach((l, i) => {
        if (l.status === 'fulfilled') all.push(...l.value);
        else msgs.error(`The recordings of desktop ${[...numbers][i]} could not be listed`, l.reason);
      });
      recs = all.sort((a, b) => b.started_at - a.started_at);
      table.update(recs);
      const total = recs.reduce((s, r) => s + (r.size_bytes ?? 0), 0);
      status.textContent = `${recs.length} recording${recs.length === 1 ? '' : 's'} on desktop${numbers.size === 1 ? '' : 's'} ${[...numbers].sort((a, b) => a - b).join(', ') || '—'}; ${fmtBytes(total)} in all.`;
    } catch (e) {
      msgs.error('The recordings could not be listed', e);
    }
  }

  // Recordings of a desktop that is gone are still kept: ask for its number.
  const more = h('input', { type: 'number', min: '0', max: '99', inputmode: 'numeric' });
  const moreForm = h(
    'form',
    { class: 'row adm-inline-form' },
    field('adm-rec-more', 'Also list desktop number', more),
    h('button', { type: 'submit', class: 'secondary' }, 'Show'),
  );
  moreForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const n = Number(more.value);
    if (more.value === '' || !Number.isInteger(n) || n < 0 || n > 99) {
      msgs.error('Cannot list that desktop', new Error('Give a desktop number from 0 to 99.'));
      return;
    }
    numbers.add(n);
    void load();
  });

  const status = loading('recordings');
  root.replaceChildren(
    msgs.el,
    h('section', { 'aria-labelledby': 'adm-recs-h' }, h('h2', { id: 'adm-recs-h' }, 'Recordings'), status, table.el, moreForm),
  );
  void load();
  let t = 0;
  const unsub = subscribe('recording.', () => {
    clearTimeout(t);
    t = window.setTimeout(() => void load(), 300);
  });
  // Durations of running recordings move on.
  const tick = window.setInterval(() => {
    if (recs.some((r) => r.state === 'recording')) table.update(recs);
  }, 5000);
  return () => {
    gone = true;
    unsub();
    clearTimeout(t);
    clearInterval(tick);
  };
};
