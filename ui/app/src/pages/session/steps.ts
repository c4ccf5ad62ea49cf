// The steps timeline: each agent step with its screens before and after, streaming in from the
// events; a click seeks the desktop's recording to that step's chapter when there is one.
import { API, apiUrl } from '../../api';
import { h } from '../../dom';
import type { AppEvent } from '../../events';

interface Step {
  n: number;
  call: string;
  ok: boolean | null;
  error: string | null;
  ms: number | null;
  at: number | null;
  after: string | null;
  before: string | null;
  li: HTMLLIElement;
}

export class Steps {
  readonly el: HTMLElement;
  private list = h('ol', { class: 'steps', 'aria-label': 'Steps' });
  private empty = h('p', { class: 'muted' }, 'No steps yet. The agent’s actions appear here as it works.');
  private note = h('p', { class: 'muted', role: 'status' });
  private steps = new Map<number, Step>();
  /** What feedback records told of steps (applied when the step shows). */
  private extra = new Map<number, { before: string | null; after: string | null; call?: string }>();
  /** Seeks the recording to step `n`; false when no recording has it. */
  seek: (n: number) => boolean = () => false;

  constructor(private sessionId: string) {
    this.el = h(
      'section',
      { class: 'card steps-card', 'aria-label': 'Steps' },
      h('h2', null, 'Steps'),
      this.empty,
      this.list,
      this.note,
    );
  }

  private thumb(n: number): string {
    return `${API}/sessions/${encodeURIComponent(this.sessionId)}/agent/steps/${n}/thumbnail`;
  }

  /** Steps 1..total that happened before the page opened (thumbnails of the newest are kept). */
  history(total: number): void {
    for (let n = Math.max(1, total - 63); n <= total; n++) {
      if (!this.steps.has(n)) this.put({ n, call: '', ok: null, error: null, ms: null, at: null, after: this.thumb(n), before: null });
    }
  }

  /** Screens (and the action) the feedback records have for a step. */
  shots(n: number, before: string | null, after: string | null, call?: string): void {
    this.extra.set(n, { before, after, call });
    const s = this.steps.get(n);
    if (!s) return;
    this.merge(s);
    this.render(s);
  }

  private merge(s: Step): void {
    const x = this.extra.get(s.n);
    if (!x) return;
    if (x.call && !s.call) s.call = x.call;
    if (x.before) s.before = x.before;
    if (x.after && !s.after) s.after = x.after;
  }

  private put(d: Omit<Step, 'li'>): void {
    const old = this.steps.get(d.n);
    const s: Step = { ...d, li: old?.li ?? h('li', { class: 'step' }) };
    this.merge(s);
    this.steps.set(d.n, s);
    if (!old) {
      const next = [...this.steps.keys()].filter((k) => k > d.n).sort((a, b) => a - b)[0];
      const anchor = next === undefined ? null : this.steps.get(next)?.li ?? null;
      this.list.insertBefore(s.li, anchor);
    }
    this.render(s);
    this.empty.hidden = true;
  }

  private img(src: string | null, alt: string): HTMLElement {
    if (!src) return h('span', { class: 'thumb none muted' }, 'no image');
    const i = h('img', { class: 'thumb', src, alt, loading: 'lazy', width: 128, height: 80 });
    i.onerror = () => i.replaceWith(h('span', { class: 'thumb none muted' }, 'no image'));
    return i;
  }

  private render(s: Step): void {
    const prev = this.steps.get(s.n - 1);
    const before = s.before ?? prev?.after ?? null;
    const what = s.call || 'step (from before this page opened)';
    const btn = h(
      'button',
      { type: 'button', class: 'step-btn', title: 'Show this step in the recording' },
      h(
        'span',
        { class: 'step-head' },
        h('strong', null, `Step ${s.n}`),
        ' ',
        s.ok === false ? h('span', { class: 'badge bad' }, 'failed') : s.ok ? h('span', { class: 'badge ok' }, 'ok') : null,
        ' ',
        h('span', { class: 'step-call' }, what),
      ),
      s.error ? h('span', { class: 'step-error' }, s.error) : null,
      h(
        'span',
        { class: 'shots' },
        h('span', { class: 'shot' }, this.img(before, `Screen before step ${s.n}`), h('span', { class: 'muted' }, 'before')),
        h('span', { class: 'shot' }, this.img(s.after, `Screen after step ${s.n}`), h('span', { class: 'muted' }, 'after')),
      ),
      s.ms != null ? h('span', { class: 'muted' }, `${Math.round(s.ms)} ms`) : null,
    );
    btn.onclick = () => {
      this.note.textContent = this.seek(s.n)
        ? `Playing the recording from step ${s.n}.`
        : `No recording of this desktop covers step ${s.n}.`;
    };
    s.li.replaceChildren(btn);
    // The next step's "before" is this step's "after".
    const next = this.steps.get(s.n + 1);
    if (next && !next.before && next.li.firstChild) {
      const img = next.li.querySelector('.shot img, .shot .none');
      if (img && s.after) img.replaceWith(this.img(s.after, `Screen before step ${next.n}`));
    }
  }

  onEvent(e: AppEvent): void {
    if (e.kind !== 'agent.step') return;
    const d = e.data as Record<string, unknown>;
    const n = Number(d.n);
    if (!Number.isFinite(n) || n <= 0) return;
    const actions = Array.isArray(d.actions) ? (d.actions as string[]).join(', ') : '';
    this.put({
      n,
      call: typeof d.call === 'string' && d.call ? d.call : actions,
      ok: d.ok === true ? true : d.ok === false ? false : null,
      error: typeof d.error === 'string' ? d.error : null,
      ms: typeof d.duration_ms === 'number' ? d.duration_ms : null,
      at: e.timestamp,
      after: typeof d.thumbnail === 'string' ? apiUrl(d.thumbnail) : null,
      before: this.steps.get(n)?.before ?? null,
    });
    this.list.scrollTop = this.list.scrollHeight;
  }
}
