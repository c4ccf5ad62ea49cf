// The live view: noVNC's RFB on a signed token, view-only unless this login holds control;
// shows the connection state, reconnects with backoff, and says so when the view is switched off.
import RFB from '@novnc/novnc';
import { ApiError, explain, get, post } from '../../api';
import { h } from '../../dom';
import type { AppEvent } from '../../events';
import { liveUrl } from './url';

export type LiveState = 'connecting' | 'connected' | 'disconnected' | 'off' | 'error';
export type Role = 'view' | 'control';

const OFF_TEXT = 'The live view of this desktop is switched off';

export class LiveView {
  /** The screen and its status line (the caller puts them in the Live view region). */
  readonly status = h('span', { class: 'live-status', 'data-testid': 'live-status', role: 'status', 'aria-live': 'polite' });
  readonly screen = h('div', { class: 'live-screen', role: 'img', 'aria-label': 'The desktop (connecting)' });
  private rfb: RFB | null = null;
  private gen = 0;
  private role: Role = 'view';
  private retry = 1000;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  private onClipboard: (text: string) => void = () => {};
  /** Told when a connection is up with the role it really got. */
  onConnected: (role: Role) => void = () => {};

  constructor(
    private sessionId: string,
    private desktop: number,
  ) {
    this.setState('connecting', 'Connecting to the desktop…');
  }

  get state(): LiveState {
    return (this.status.dataset.state as LiveState) ?? 'connecting';
  }

  /** The role of the current connection. */
  get controlling(): boolean {
    return this.role === 'control' && !!this.rfb && !this.rfb.viewOnly;
  }

  private setState(state: LiveState, text: string): void {
    this.status.dataset.state = state;
    this.status.textContent = text;
    this.screen.setAttribute('aria-label', `The desktop (${text})`);
    this.screen.dataset.state = state;
  }

  /** Connects (again) with `role`; any open connection is closed first. */
  async connect(role: Role = this.role): Promise<void> {
    this.role = role;
    clearTimeout(this.timer);
    const gen = ++this.gen;
    this.drop();
    this.setState('connecting', role === 'control' ? 'Connecting with control…' : 'Connecting to the desktop…');
    let token: { token: string; role: string };
    try {
      token = await post(`/sessions/${encodeURIComponent(this.sessionId)}/view-token`, { role });
    } catch (e) {
      if (gen !== this.gen) return;
      if (e instanceof ApiError && e.status === 403) {
        this.setState('error', `You are not allowed to watch this desktop. ${explain(e)}`);
        return;
      }
      this.failed(gen, explain(e));
      return;
    }
    if (gen !== this.gen || this.closed) return;
    const url = await liveUrl(token.token, this.desktop);
    if (gen !== this.gen || this.closed) return;
    let rfb: RFB;
    try {
      rfb = new RFB(this.screen, url, { shared: true });
    } catch (e) {
      this.failed(gen, explain(e));
      return;
    }
    this.rfb = rfb;
    const got: Role = token.role === 'control' ? 'control' : 'view';
    rfb.viewOnly = got !== 'control';
    rfb.scaleViewport = true;
    rfb.focusOnClick = got === 'control';
    rfb.background = 'transparent';
    rfb.addEventListener('connect', () => {
      if (gen !== this.gen) return;
      this.retry = 1000;
      this.setState('connected', got === 'control' ? 'Connected: you control the desktop' : 'Connected: watching');
      this.onConnected(got);
      if (got === 'control') rfb.focus();
    });
    rfb.addEventListener('disconnect', () => {
      if (gen !== this.gen) return;
      this.rfb = null;
      void this.afterDrop(gen);
    });
    rfb.addEventListener('securityfailure', (ev) => {
      if (gen !== this.gen) return;
      const d = (ev as CustomEvent<{ reason?: string }>).detail;
      this.setState('error', `The desktop refused the connection${d?.reason ? `: ${d.reason}` : ''}.`);
    });
    rfb.addEventListener('clipboard', (ev) => {
      if (gen !== this.gen) return;
      this.onClipboard(String((ev as CustomEvent<{ text: string }>).detail.text ?? ''));
    });
  }

  /** After a connection ended by itself: off, or retry with backoff. */
  private async afterDrop(gen: number): Promise<void> {
    if (this.closed) return;
    if (await this.isOff()) {
      if (gen !== this.gen) return;
      this.setState('off', OFF_TEXT);
      // The switch event brings it back; a slow poll covers a missed event.
      this.timer = setTimeout(() => void this.connectIfOn(), 15000);
      return;
    }
    this.failed(gen, 'The connection to the desktop was lost');
  }

  private failed(gen: number, why: string): void {
    if (gen !== this.gen || this.closed) return;
    const secs = Math.round(this.retry / 1000);
    this.setState('disconnected', `${why}. Reconnecting in ${secs} s…`);
    this.timer = setTimeout(() => void this.connect(), this.retry);
    this.retry = Math.min(this.retry * 2, 15000);
  }

  private async isOff(): Promise<boolean> {
    try {
      const v = await get<{ enabled: boolean }>(`/desktops/${this.desktop}/live-view`);
      return !v.enabled;
    } catch {
      return false;
    }
  }

  private async connectIfOn(): Promise<void> {
    if (this.closed) return;
    if (await this.isOff()) {
      this.timer = setTimeout(() => void this.connectIfOn(), 15000);
    } else {
      this.retry = 1000;
      void this.connect();
    }
  }

  /** Events of this desktop: the live-view switch. */
  onEvent(e: AppEvent): void {
    if (e.kind !== 'desktop.live_view' || Number(e.data.desktop) !== this.desktop) return;
    if (e.data.enabled === false) {
      ++this.gen;
      this.drop();
      clearTimeout(this.timer);
      this.setState('off', OFF_TEXT);
    } else if (this.state === 'off') {
      this.retry = 1000;
      void this.connect();
    }
  }

  /** Sends text to the desktop's clipboard. */
  paste(text: string): boolean {
    if (!this.rfb || this.state !== 'connected') return false;
    this.rfb.clipboardPasteFrom(text);
    return true;
  }

  /** Follows the desktop's clipboard. */
  clipboard(f: (text: string) => void): void {
    this.onClipboard = f;
  }

  focus(): void {
    this.rfb?.focus();
  }

  blur(): void {
    this.rfb?.blur();
  }

  private drop(): void {
    const r = this.rfb;
    this.rfb = null;
    if (r) {
      try {
        r.disconnect();
      } catch {
        // Already closed.
      }
    }
  }

  destroy(): void {
    this.closed = true;
    ++this.gen;
    clearTimeout(this.timer);
    this.drop();
  }
}
