// Control of the desktop: take, refresh and release the lease, who holds it, and the RTT
// (the time of a small API call, GET …/control, measured every few seconds).
import { ApiError, del, get, post } from '../../api';
import { h, toast } from '../../dom';
import type { AppEvent } from '../../events';
import { act, errorLine } from './act';
import type { LiveView } from './live';
import type { ControlStatus, LeaseHolder } from './types';

const LEASE_SECS = 300;
const REFRESH_MS = 60_000;
const POLL_MS = 5_000;

export class Control {
  readonly holder = h('span', { class: 'holder', 'aria-live': 'polite' }, 'Control: …');
  readonly rtt = h('span', { class: 'rtt muted', title: 'Round-trip time of a small request to the appliance' }, 'RTT …');
  readonly button = h('button', { type: 'button' }, 'Take control');
  readonly error = errorLine();
  private yours = false;
  private refresh: ReturnType<typeof setInterval> | undefined;
  private poll: ReturnType<typeof setInterval> | undefined;
  /** Whether the agent is working (for "who drives" when no person holds control). */
  agentBusy = false;

  constructor(
    private sessionId: string,
    private me: string,
    private live: LiveView,
  ) {
    this.button.onclick = () => void (this.yours ? this.release() : this.take());
    void this.check();
    this.poll = setInterval(() => void this.check(), POLL_MS);
  }

  private path(): string {
    return `/sessions/${encodeURIComponent(this.sessionId)}/control`;
  }

  /** Reads the lease (and times the request as the RTT). */
  async check(): Promise<void> {
    const t0 = performance.now();
    try {
      const c = await get<ControlStatus>(this.path());
      this.rtt.textContent = `RTT ${Math.round(performance.now() - t0)} ms`;
      this.show(c.holder ?? null, c.yours);
    } catch (e) {
      this.rtt.textContent = 'RTT —';
      if (e instanceof ApiError && e.status === 0) return;
    }
  }

  private show(holder: LeaseHolder | null, yours: boolean): void {
    if (this.yours && !yours) this.lost(holder);
    this.yours = yours;
    this.button.textContent = yours ? 'Release control' : 'Take control';
    this.button.className = yours ? 'danger' : '';
    if (holder) {
      this.holder.textContent = yours ? 'You control the desktop' : `${holder.user_name} controls the desktop`;
      this.holder.dataset.holder = holder.user_id === this.me ? 'you' : 'person';
    } else {
      this.holder.textContent = this.agentBusy ? 'The agent drives' : 'Nobody controls the desktop';
      this.holder.dataset.holder = this.agentBusy ? 'agent' : 'nobody';
    }
  }

  private lost(holder: LeaseHolder | null): void {
    clearInterval(this.refresh);
    this.refresh = undefined;
    toast(holder ? `${holder.user_name} took control of the desktop.` : 'Your control of the desktop ended.');
    void this.live.connect('view');
  }

  async take(): Promise<void> {
    await act(this.button, this.error, async () => {
      const c = await post<ControlStatus>(this.path(), { timeout_secs: LEASE_SECS });
      this.show(c.holder ?? null, c.yours);
      if (!c.yours) throw new Error('Someone else controls the desktop.');
      clearInterval(this.refresh);
      this.refresh = setInterval(() => void this.renew(), REFRESH_MS);
      await this.live.connect('control');
    });
  }

  private async renew(): Promise<void> {
    try {
      const c = await post<ControlStatus>(this.path(), { timeout_secs: LEASE_SECS });
      this.show(c.holder ?? null, c.yours);
    } catch (e) {
      this.error.show(e);
      await this.check();
    }
  }

  async release(): Promise<void> {
    await act(this.button, this.error, async () => {
      clearInterval(this.refresh);
      this.refresh = undefined;
      await del(this.path());
      this.yours = false;
      this.show(null, false);
      await this.live.connect('view');
    });
  }

  onEvent(e: AppEvent): void {
    if (e.kind === 'session.control') void this.check();
    if (e.kind === 'agent.state') {
      this.agentBusy = e.data.state !== 'idle';
      if (this.holder.dataset.holder === 'nobody' || this.holder.dataset.holder === 'agent') void this.check();
    }
  }

  destroy(): void {
    clearInterval(this.refresh);
    clearInterval(this.poll);
    // Leaving the page gives control back (the lease would expire by itself anyway).
    if (this.yours) void del(this.path()).catch(() => undefined);
  }
}
