// "Needs you": what waits on a person — feedback prompts, approvals of gated actions, requests
// for input such as a 2FA code — arriving live, loud (role=alert, highlighted); and undo.
import { apiUrl, get, post } from '../../api';
import { h, fill } from '../../dom';
import type { AppEvent } from '../../events';
import { act, errorLine } from './act';
import type { AgentView, FeedbackView, PendingApproval, PendingInput } from './types';

let uid = 0;

export class Prompts {
  readonly el: HTMLElement;
  private alerts = h('div', { class: 'alerts', role: 'alert' });
  private quiet = h('p', { class: 'muted' }, 'Nothing waits for you.');
  private approval: PendingApproval | null = null;
  private input: PendingInput | null = null;
  private feedback: FeedbackView[] = [];
  private keys = new Set<string>();
  private err = errorLine();
  /** Told the number of waiting items after each change. */
  onCount: (n: number) => void = () => {};
  /** Told the before/after screens of feedback records (for the steps timeline). */
  onShots: (step: number, before: string | null, after: string | null, call?: string) => void = () => {};

  constructor(private sessionId: string) {
    const undoN = h('input', { id: 'undo-n', type: 'number', min: 1, max: 100, value: '1', inputmode: 'numeric' });
    const undoBtn = h('button', { type: 'submit', class: 'secondary' }, 'Undo');
    const undoErr = errorLine();
    const undoNote = h('p', { class: 'muted', role: 'status' });
    const undo = h(
      'form',
      { class: 'undo', 'aria-label': 'Undo agent steps' },
      h('label', { for: 'undo-n' }, 'Steps to undo'),
      h('div', { class: 'row' }, undoN, undoBtn),
      undoNote,
      undoErr,
    );
    undo.onsubmit = (ev) => {
      ev.preventDefault();
      const steps = Number(undoN.value);
      if (!Number.isInteger(steps) || steps < 1) {
        undoErr.textContent = 'Enter how many steps to undo (1 or more).';
        return;
      }
      void act(undoBtn, undoErr, async () => {
        const u = await post<{ from_step: number; to_step: number; requested: number }>(this.path('/undo'), { steps });
        undoNote.textContent = `Undone: steps ${u.from_step} to ${u.to_step} (the browser went back to the checkpoint before step ${u.from_step}).`;
      });
    };
    this.el = h(
      'section',
      { class: 'card needs-you', 'aria-label': 'Needs you' },
      h('h2', null, 'Needs you'),
      this.quiet,
      this.alerts,
      this.err,
      undo,
    );
    void this.loadAll();
  }

  private path(p: string): string {
    return `/sessions/${encodeURIComponent(this.sessionId)}${p}`;
  }

  async loadAll(): Promise<void> {
    await Promise.all([this.loadApproval(), this.loadInput(), this.loadFeedback()]);
  }

  private async loadApproval(): Promise<void> {
    try {
      const v = await get<AgentView>(this.path('/agent'));
      this.approval = v.status?.approval ?? null;
      this.render();
    } catch (e) {
      this.err.show(e);
    }
  }

  private async loadInput(): Promise<void> {
    try {
      this.input = await get<PendingInput | null>(this.path('/input'));
      this.render();
    } catch (e) {
      this.err.show(e);
    }
  }

  private async loadFeedback(): Promise<void> {
    try {
      const all = await get<FeedbackView[]>(this.path('/feedback'));
      for (const f of all) this.onShots(f.feedback.step, f.before_url ? apiUrl(f.before_url) : null, f.after_url ? apiUrl(f.after_url) : null, f.feedback.call);
      this.feedback = all.filter((f) => f.feedback.status === 'pending' && f.feedback.kind === 'prompt');
      this.render();
    } catch (e) {
      this.err.show(e);
    }
  }

  /** Re-renders; cards already shown stay (keeping what a person typed). */
  private render(): void {
    const want = new Map<string, () => HTMLElement>();
    if (this.approval) {
      const a = this.approval;
      want.set(`approval:${a.id}`, () => this.approvalCard(a));
    }
    if (this.input) {
      const i = this.input;
      want.set(`input:${i.id}`, () => this.inputCard(i));
    }
    for (const f of this.feedback) want.set(`feedback:${f.seq}`, () => this.feedbackCard(f));
    for (const el of [...this.alerts.children] as HTMLElement[]) {
      if (!want.has(el.dataset.key ?? '')) el.remove();
    }
    for (const [key, make] of want) {
      if (this.keys.has(key) && this.alerts.querySelector(`[data-key="${key}"]`)) continue;
      const card = make();
      card.dataset.key = key;
      this.alerts.appendChild(card);
      this.keys.add(key);
    }
    this.quiet.hidden = want.size > 0;
    this.el.classList.toggle('waiting', want.size > 0);
    this.onCount(want.size);
  }

  private approvalCard(a: PendingApproval): HTMLElement {
    const id = `appr-${++uid}`;
    const comment = h('input', { id, autocomplete: 'off' });
    const err = errorLine();
    const answer = (approve: boolean, btn: HTMLButtonElement) =>
      void act(btn, err, async () => {
        await post(this.path('/agent/approve'), { approve, comment: comment.value.trim() || null });
        this.approval = null;
        this.render();
      });
    const yes = h('button', { type: 'button' }, 'Approve');
    const no = h('button', { type: 'button', class: 'danger' }, 'Reject');
    yes.onclick = () => answer(true, yes);
    no.onclick = () => answer(false, no);
    return h(
      'article',
      { class: 'prompt-card', 'aria-labelledby': `${id}-h` },
      h('h3', { id: `${id}-h` }, 'Approve this action?'),
      h('p', null, 'The agent wants to: ', h('strong', null, a.call)),
      a.details.length ? h('ul', null, ...a.details.map((d) => h('li', null, d))) : null,
      h('label', { for: id }, 'Comment (optional)'),
      comment,
      h('div', { class: 'row' }, yes, no),
      err,
    );
  }

  private inputCard(i: PendingInput): HTMLElement {
    const id = `input-${++uid}`;
    const err = errorLine();
    const send = (body: Record<string, unknown>, btn: HTMLButtonElement, then?: () => void) =>
      void act(btn, err, async () => {
        await post(this.path('/input'), { id: i.id, ...body });
        then?.();
        this.input = null;
        this.render();
      });
    const decline = h('button', { type: 'button', class: 'secondary' }, 'Decline');
    decline.onclick = () => send({ decline: true }, decline);
    const head = h('h3', { id: `${id}-h` }, i.kind === '2fa' ? 'The agent needs a code' : i.kind === 'confirm' ? 'The agent asks you to confirm' : 'The agent needs you to do something');
    const body: HTMLElement[] = [];
    if (i.kind === '2fa') {
      const code = h('input', { id, type: 'password', autocomplete: 'one-time-code', inputmode: 'text' });
      const submit = h('button', { type: 'submit' }, 'Submit');
      const form = h('form', null, h('label', { for: id }, i.prompt), code, h('div', { class: 'row' }, submit, decline));
      form.onsubmit = (ev) => {
        ev.preventDefault();
        if (!code.value) {
          err.textContent = 'Enter the code first.';
          return;
        }
        send({ code: code.value }, submit, () => (code.value = ''));
      };
      body.push(form, h('p', { class: 'muted' }, 'The code is typed straight into the focused field on the desktop and not stored.'));
    } else if (i.kind === 'confirm') {
      const yes = h('button', { type: 'button' }, 'Approve');
      yes.onclick = () => send({ approve: true }, yes);
      body.push(h('p', null, i.prompt), h('div', { class: 'row' }, yes, decline));
    } else {
      const done = h('button', { type: 'button' }, 'Done');
      done.onclick = () => send({ done: true }, done);
      body.push(
        h('p', null, i.prompt),
        h('p', { class: 'muted' }, 'Take control of the live view, do it, release control, then press Done.'),
        h('div', { class: 'row' }, done, decline),
      );
    }
    return h('article', { class: 'prompt-card', 'aria-labelledby': `${id}-h` }, head, ...body, err);
  }

  private feedbackCard(f: FeedbackView): HTMLElement {
    const id = `fb-${++uid}`;
    const err = errorLine();
    const comment = h('input', { id: `${id}-c`, autocomplete: 'off' });
    const correction = h('textarea', { id: `${id}-x`, rows: 2 });
    const rating = h(
      'select',
      { id: `${id}-r` },
      h('option', { value: '' }, 'No rating'),
      ...[1, 2, 3, 4, 5].map((n) => h('option', { value: String(n) }, `${n} of 5`)),
    );
    const send = (verdict: 'approve' | 'reject' | 'correct', btn: HTMLButtonElement) =>
      void act(btn, err, async () => {
        if (verdict === 'correct' && !correction.value.trim()) throw new Error('Write the correction first.');
        await post(this.path('/feedback'), {
          prompt: f.seq,
          verdict,
          comment: comment.value.trim() || null,
          correction: verdict === 'correct' ? correction.value.trim() : null,
          rating: rating.value ? Number(rating.value) : null,
        });
        this.feedback = this.feedback.filter((x) => x.seq !== f.seq);
        this.render();
      });
    const approve = h('button', { type: 'button' }, 'Approve');
    const reject = h('button', { type: 'button', class: 'danger' }, 'Reject');
    const correct = h('button', { type: 'button', class: 'secondary' }, 'Correct');
    approve.onclick = () => send('approve', approve);
    reject.onclick = () => send('reject', reject);
    correct.onclick = () => send('correct', correct);
    const shot = (src: string | null | undefined, alt: string) =>
      src ? h('img', { class: 'thumb', src, alt, width: 160, height: 100, loading: 'lazy' }) : null;
    return h(
      'article',
      { class: 'prompt-card', 'aria-labelledby': `${id}-h` },
      h('h3', { id: `${id}-h` }, `How was step ${f.feedback.step}?`),
      h('p', null, f.feedback.call ?? ''),
      h(
        'div',
        { class: 'row shots' },
        shot(f.before_url ? apiUrl(f.before_url) : f.before_url, `Screen before step ${f.feedback.step}`),
        shot(f.after_url ? apiUrl(f.after_url) : f.after_url, `Screen after step ${f.feedback.step}`),
      ),
      h('label', { for: `${id}-c` }, 'Comment (optional)'),
      comment,
      h('label', { for: `${id}-r` }, 'Rating'),
      rating,
      h('label', { for: `${id}-x` }, 'Correction (for Correct)'),
      correction,
      h('div', { class: 'row' }, approve, reject, correct),
      err,
    );
  }

  onEvent(e: AppEvent): void {
    switch (e.kind) {
      case 'agent.approval':
      case 'agent.approval.answered':
      case 'agent.turn.ended':
        void this.loadApproval();
        if (e.kind === 'agent.turn.ended') void this.loadInput();
        break;
      case 'agent.input_requested':
      case 'agent.input_answered':
        void this.loadInput();
        break;
      case 'feedback.requested':
      case 'feedback.answered':
        void this.loadFeedback();
        break;
    }
  }

  /** Clears the error line (e.g. when it came from a past request). */
  clear(): void {
    fill(this.err);
  }
}
