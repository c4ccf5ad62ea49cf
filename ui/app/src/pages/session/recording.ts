// Recording of the session's desktop: start and stop, the list with downloads, and a player that
// seeks to an agent step's chapter.
import { API, ApiError, api, del, get, post } from '../../api';
import { fill, fmtBytes, h } from '../../dom';
import type { AppEvent } from '../../events';
import { act, errorLine } from './act';
import type { Chapter, RecordingRecord } from './types';
import { ms } from './types';

export class Recording {
  readonly el: HTMLElement;
  private start = h('button', { type: 'button' }, 'Start recording');
  private stop = h('button', { type: 'button', class: 'danger' }, 'Stop recording');
  private list = h('ul', { class: 'recordings', 'aria-label': 'Recordings of this desktop' });
  private state = h('p', { class: 'muted', role: 'status' });
  private video = h('video', { class: 'player', controls: true, preload: 'metadata', hidden: true });
  private err = errorLine();
  private recs: RecordingRecord[] = [];
  private chapters = new Map<string, Chapter[]>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** Told each agent step a chapter names (its number and action). */
  onStep: (n: number, call: string) => void = () => {};

  constructor(private desktop: number) {
    this.start.onclick = () =>
      void act(this.start, this.err, async () => {
        this.state.textContent = 'Starting the recording…';
        try {
          await post(this.base());
        } finally {
          this.state.textContent = '';
        }
        await this.load();
      });
    this.stop.onclick = () =>
      void act(this.stop, this.err, async () => {
        await del(`${this.base()}/current`);
        await this.load();
      });
    this.el = h(
      'section',
      { class: 'card recording', 'aria-labelledby': 'rec-h' },
      h('h2', { id: 'rec-h' }, 'Recording'),
      h('div', { class: 'row' }, this.start, this.stop),
      this.state,
      this.err,
      this.list,
      this.video,
    );
    this.stop.hidden = true;
    void this.load();
  }

  private base(): string {
    return `/desktops/${this.desktop}/recordings`;
  }

  async load(): Promise<void> {
    clearTimeout(this.timer);
    try {
      this.recs = await get<RecordingRecord[]>(this.base());
    } catch (e) {
      this.err.show(e);
      return;
    }
    const live = this.recs.find((r) => r.state === 'recording');
    this.start.hidden = !!live;
    this.stop.hidden = !live;
    const finalizing = this.recs.some((r) => r.state === 'finalizing');
    this.state.textContent = live
      ? `Recording since ${new Date(ms(live.started_at)).toLocaleTimeString()}.`
      : finalizing
        ? 'Finishing the recording file…'
        : '';
    if (finalizing) this.timer = setTimeout(() => void this.load(), 3000);
    this.render();
    for (const r of this.recs.filter((r) => r.state === 'ready').slice(-5)) void this.loadChapters(r.id);
  }

  private render(): void {
    const rows = [...this.recs].reverse().map((r) => {
      const started = new Date(ms(r.started_at));
      const size = r.size_bytes != null ? fmtBytes(r.size_bytes) : '';
      const dur = r.duration_ms != null ? `${Math.round(r.duration_ms / 1000)} s` : '';
      const url = `${API}/desktops/${this.desktop}/recordings/${encodeURIComponent(r.id)}`;
      return h(
        'li',
        { dataset: { recording: r.id, state: r.state } },
        h('span', null, started.toLocaleString(), ' '),
        h('span', { class: `badge ${r.state === 'ready' ? 'ok' : r.state === 'failed' ? 'bad' : 'warn'}` }, r.state),
        ' ',
        h('span', { class: 'muted' }, [dur, size].filter(Boolean).join(', ')),
        r.error ? h('span', { class: 'step-error' }, ` ${r.error}`) : null,
        r.state === 'ready'
          ? h(
              'span',
              { class: 'row' },
              h('a', { href: url, download: `desktop-${this.desktop}-${r.id}.mp4` }, 'Download'),
              h(
                'button',
                { type: 'button', class: 'secondary', 'aria-label': `Play the recording of ${started.toLocaleString()}`, onclick: () => this.play(r.id, 0) },
                'Play',
              ),
            )
          : null,
      );
    });
    fill(this.list, ...rows);
    if (rows.length === 0) this.list.appendChild(h('li', { class: 'muted' }, 'No recordings of this desktop yet.'));
  }

  private async loadChapters(id: string): Promise<void> {
    if (this.chapters.has(id)) return;
    try {
      const side = await api<{ chapters: Chapter[] } | null>('GET', `${this.base()}/${encodeURIComponent(id)}/chapters`);
      if (side && Array.isArray(side.chapters)) {
        this.chapters.set(id, side.chapters);
        for (const c of side.chapters) {
          const m = /^agent step (\d+): (.*)$/.exec(c.title);
          if (m) this.onStep(Number(m[1]), m[2]);
        }
      }
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) this.err.show(e);
    }
  }

  private play(id: string, startMs: number): void {
    const url = `${API}/desktops/${this.desktop}/recordings/${encodeURIComponent(id)}`;
    this.video.hidden = false;
    const seek = () => {
      this.video.currentTime = startMs / 1000;
      void this.video.play().catch(() => undefined);
    };
    if (this.video.dataset.id !== id) {
      this.video.dataset.id = id;
      this.video.src = url;
      this.video.addEventListener('loadedmetadata', seek, { once: true });
    } else seek();
    this.video.scrollIntoView({ block: 'nearest' });
  }

  /** Plays the newest recording that has agent step `n` from that chapter; false if none. */
  seekStep(n: number): boolean {
    const re = new RegExp(`^agent step ${n}:`);
    for (const r of [...this.recs].reverse()) {
      const c = this.chapters.get(r.id)?.find((c) => re.test(c.title));
      if (c) {
        this.play(r.id, c.start_ms);
        return true;
      }
    }
    return false;
  }

  onEvent(e: AppEvent): void {
    if (e.kind.startsWith('recording.') && Number(e.data.desktop) === this.desktop) void this.load();
  }

  destroy(): void {
    clearTimeout(this.timer);
    this.video.removeAttribute('src');
    this.video.load();
  }
}
