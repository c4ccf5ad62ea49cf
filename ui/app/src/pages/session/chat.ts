// Chat with the session's agent: the conversation, the message box, stop/pause/resume, token use.
import { get, post, put } from '../../api';
import { h, fill } from '../../dom';
import type { AppEvent } from '../../events';
import { act, errorLine } from './act';
import type { AgentProfile, AgentStatus, AgentTurnRecord, AgentView, MessageRecord } from './types';
import { ms } from './types';

export class Chat {
  readonly el: HTMLElement;
  private list = h('ol', { class: 'messages', 'aria-label': 'Messages', 'aria-live': 'polite' });
  /** The newest message shown (-1: none; seqs start at 0). */
  private lastSeq = -1;
  private stateBadge = h('span', { class: 'badge', 'data-testid': 'agent-state' }, 'agent: …');
  private usage = h('p', { class: 'usage muted', 'data-testid': 'token-usage' }, 'Tokens: …');
  private stop = h('button', { type: 'button', class: 'danger' }, 'Stop agent');
  private pause = h('button', { type: 'button', class: 'secondary' }, 'Pause agent');
  private resume = h('button', { type: 'button', class: 'secondary' }, 'Resume agent');
  private profileSlot = h('div');
  private err = errorLine();
  private turns: AgentTurnRecord[] = [];
  private refreshing = false;
  private again = false;
  /** Told whenever the agent's status is read. */
  onStatus: (s: AgentStatus | null, profile: string | null) => void = () => {};

  constructor(private sessionId: string) {
    const text = h('textarea', { id: 'chat-text', name: 'text', rows: 3, placeholder: 'Tell the agent what to do' });
    const send = h('button', { type: 'submit' }, 'Send');
    const form = h(
      'form',
      { class: 'chat-form' },
      h('label', { for: 'chat-text' }, 'Message to the agent'),
      text,
      h('div', { class: 'row' }, send),
    );
    text.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) form.requestSubmit();
    });
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const t = text.value.trim();
      if (!t) return;
      void act(send, this.err, async () => {
        await post(this.path('/chat'), { text: t, wait: false });
        text.value = '';
        await this.loadMessages();
        await this.refresh();
      });
    };
    this.stop.onclick = () => void act(this.stop, this.err, () => post(this.path('/agent/stop')).then(() => this.refresh()));
    this.pause.onclick = () => void act(this.pause, this.err, () => post(this.path('/agent/pause')).then(() => this.refresh()));
    this.resume.onclick = () => void act(this.resume, this.err, () => post(this.path('/agent/resume')).then(() => this.refresh()));
    this.el = h(
      'section',
      { class: 'card chat', 'aria-labelledby': 'chat-h' },
      h('h2', { id: 'chat-h' }, 'Chat with the agent'),
      h('div', { class: 'row agent-bar' }, this.stateBadge, this.stop, this.pause, this.resume),
      this.usage,
      this.profileSlot,
      this.list,
      form,
      this.err,
    );
    void this.loadMessages();
    void this.loadTurns().then(() => this.refresh());
  }

  private path(p: string): string {
    return `/sessions/${encodeURIComponent(this.sessionId)}${p}`;
  }

  /** Appends messages newer than the last one shown. */
  async loadMessages(): Promise<void> {
    try {
      for (let i = 0; i < 20; i++) {
        const page = await get<{ messages: MessageRecord[]; next_after?: number | null }>(
          this.path(`/messages?${this.lastSeq >= 0 ? `after=${this.lastSeq}&` : ''}limit=200`),
        );
        for (const m of page.messages) this.add(m);
        if (page.next_after == null || page.messages.length === 0) break;
      }
    } catch (e) {
      this.err.show(e);
    }
  }

  private add(m: MessageRecord): void {
    if (m.seq <= this.lastSeq) return;
    this.lastSeq = Math.max(this.lastSeq, m.seq);
    const text = m.content
      .map((b) => (typeof b.text === 'string' ? b.text : b.type === 'image' ? '[image]' : ''))
      .filter(Boolean)
      .join('\n');
    if (!text || m.role === 'system' || m.role === 'tool') return;
    const who = m.role === 'user' ? 'You' : m.role === 'assistant' ? 'Agent' : m.role;
    const at = new Date(ms(m.created_at));
    this.list.appendChild(
      h(
        'li',
        { class: `msg msg-${m.role}` },
        h('div', { class: 'msg-who' }, who, ' ', h('time', { class: 'muted', datetime: at.toISOString() }, at.toLocaleTimeString())),
        h('div', { class: 'msg-text' }, text),
      ),
    );
    this.list.scrollTop = this.list.scrollHeight;
  }

  private async loadTurns(): Promise<void> {
    try {
      const all: AgentTurnRecord[] = [];
      let after: number | null | undefined = -1;
      for (let i = 0; i < 20 && after != null; i++) {
        const page: { turns: AgentTurnRecord[]; next_after?: number | null } = await get(
          this.path(`/agent/turns?${after >= 0 ? `after=${after}&` : ''}limit=200`),
        );
        all.push(...page.turns);
        after = page.turns.length ? page.next_after : null;
      }
      this.turns = all;
    } catch (e) {
      this.err.show(e);
    }
  }

  /** The finished turns (oldest first). */
  get finishedTurns(): AgentTurnRecord[] {
    return this.turns;
  }

  /** Reads the agent's status (coalescing bursts of events). */
  async refresh(): Promise<void> {
    if (this.refreshing) {
      this.again = true;
      return;
    }
    this.refreshing = true;
    try {
      const v = await get<AgentView>(this.path('/agent'));
      this.showStatus(v);
    } catch (e) {
      this.err.show(e);
    } finally {
      this.refreshing = false;
      if (this.again) {
        this.again = false;
        void this.refresh();
      }
    }
  }

  private showStatus(v: AgentView): void {
    const s = v.status ?? null;
    const state = s?.state ?? 'idle';
    this.stateBadge.textContent = v.profile ? `agent: ${state}` : 'no agent';
    this.stateBadge.className = `badge ${state === 'running' ? 'ok' : state === 'waiting' || state === 'paused' ? 'warn' : ''}`;
    this.stateBadge.dataset.state = state;
    this.stop.disabled = state === 'idle';
    this.pause.disabled = state !== 'running' && state !== 'waiting';
    this.resume.disabled = state !== 'paused';
    const sum = this.turns.reduce(
      (a, t) => ({ i: a.i + t.usage.input_tokens, o: a.o + t.usage.output_tokens }),
      { i: 0, o: 0 },
    );
    const cur = state !== 'idle' && s ? s.usage : null;
    const n = (x: number) => x.toLocaleString();
    this.usage.textContent =
      `Tokens: ${n(sum.i + (cur?.input_tokens ?? 0))} in, ${n(sum.o + (cur?.output_tokens ?? 0))} out` +
      ` over ${this.turns.length + (cur ? 1 : 0)} turn${this.turns.length + (cur ? 1 : 0) === 1 ? '' : 's'}` +
      (cur ? ` (this turn: ${n(cur.input_tokens)} in, ${n(cur.output_tokens)} out, ${s?.steps ?? 0} steps)` : '') +
      (s?.waiting_for ? `. Waiting for ${s.waiting_for}` : '') +
      (state === 'idle' && s?.last_error ? `. Last turn failed: ${s.last_error}` : '');
    if (!v.profile) this.offerProfile();
    else this.profileSlot.replaceChildren();
    this.onStatus(s, v.profile ?? null);
  }

  /** A session without an agent: choose a profile here. */
  private offerProfile(): void {
    if (this.profileSlot.firstChild) return;
    const sel = h('select', { id: 'chat-profile' }, h('option', { value: '' }, 'None'));
    const set = h('button', { type: 'button', class: 'secondary' }, 'Use this agent');
    const err = errorLine();
    set.onclick = () =>
      void act(set, err, async () => {
        if (!sel.value) throw new Error('Choose an agent profile first.');
        await put(this.path('/agent'), { profile: sel.value });
        this.profileSlot.replaceChildren();
        await this.refresh();
      });
    fill(
      this.profileSlot,
      h('p', { class: 'muted' }, 'This session has no agent: messages are stored but nobody acts on them.'),
      h('label', { for: 'chat-profile' }, 'Agent profile'),
      h('div', { class: 'row' }, sel, set),
      err,
    );
    get<AgentProfile[]>('/agents')
      .then((list) => list.forEach((a) => sel.appendChild(h('option', { value: a.id }, a.name))))
      .catch((e) => err.show(e));
  }

  onEvent(e: AppEvent): void {
    if (e.kind === 'message.appended') void this.loadMessages();
    if (e.kind === 'agent.turn.ended') void this.loadTurns().then(() => this.refresh());
    else if (e.kind.startsWith('agent.') || e.kind === 'session.agent') void this.refresh();
  }
}
