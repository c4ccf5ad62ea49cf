// Dashboard "Software update" panel (Services tab): the running release, the last signed update
// and how it ended, and an upload form (bundle + minisign signature) for POST /admin/update.
// While an update runs the control plane restarts, so failed polls then mean "restarting", not
// an error.
import { ApiError, explain, get, post } from '../../api';
import { h } from '../../dom';
import { stateBadge } from './util';

interface Release {
  version: string;
  serial: number;
  schema: number;
  git: string;
}
interface UpdateStatus {
  id: string;
  phase: string;
  message: string;
  version: string;
  from_version: string;
  slot: string;
  active_slot: string;
  forced: boolean;
  started_ms: number;
  finished_ms?: number | null;
}
interface UpdateInfo {
  available: boolean;
  running: Release;
  update: UpdateStatus | null;
}

const FINISHED = ['committed', 'rolled_back', 'failed'];
const PHASE_WORDS: Record<string, string> = {
  verifying: 'checking the signature',
  unpacking: 'unpacking',
  snapshot: 'copying the database aside',
  restarting: 'restarting services',
  gate: 'health check',
  committed: 'installed',
  rolled_back: 'rolled back',
  failed: 'refused',
};

function badge(phase: string): HTMLElement {
  const b = stateBadge(phase === 'committed' ? 'ok' : phase === 'rolled_back' || phase === 'failed' ? 'failed' : 'restarting');
  b.textContent = PHASE_WORDS[phase] ?? phase;
  return b;
}

/** The panel; returns its element and a cleanup function. */
export function updatePanel(): { el: HTMLElement; stop: () => void } {
  const status = h('div', { 'aria-live': 'polite' });
  const result = h('p', { role: 'status', class: 'muted' });
  const bundle = h('input', { type: 'file', id: 'upd-bundle', accept: '.zst,.tar.zst', required: true }) as HTMLInputElement;
  const sig = h('input', { type: 'file', id: 'upd-sig', accept: '.minisig', required: true }) as HTMLInputElement;
  const force = h('input', { type: 'checkbox', id: 'upd-force' }) as HTMLInputElement;
  const send = h('button', { type: 'submit' }, 'Upload and install');
  let gone = false;
  let timer = 0;

  function schedule(ms: number): void {
    window.clearTimeout(timer);
    if (!gone) timer = window.setTimeout(() => void load(), ms);
  }

  async function load(): Promise<void> {
    let info: UpdateInfo;
    try {
      info = await get<UpdateInfo>('/admin/update');
    } catch (e) {
      if (gone) return;
      const restarting = e instanceof ApiError && (e.status === 0 || e.status === 502 || e.status === 503);
      status.replaceChildren(
        h('p', { class: restarting ? 'muted' : 'notice' }, restarting ? 'The appliance is restarting its services for an update…' : `The update status could not be read: ${explain(e)}`),
      );
      schedule(restarting ? 2000 : 15000);
      return;
    }
    if (gone) return;
    const r = info.running;
    const rows: Node[] = [
      h('dt', null, 'Running version'),
      h('dd', null, `${r.version} (${[r.serial ? `build ${r.serial}` : '', r.git !== 'unknown' ? `source ${r.git}` : '', `store schema ${r.schema}`].filter(Boolean).join(', ')})`),
    ];
    const u = info.update;
    if (u) {
      rows.push(
        h('dt', null, 'Last update'),
        h('dd', null, badge(u.phase), ` ${u.from_version} → ${u.version}${u.forced ? ' (forced)' : ''}, started ${new Date(u.started_ms).toLocaleString()}`),
        h('dt', null, 'What happened'),
        h('dd', null, u.message),
      );
    }
    status.replaceChildren(
      h('dl', { class: 'adm-dl' }, rows),
      ...(info.available ? [] : [h('p', { class: 'notice' }, 'Updates are not available on this appliance (no update key is configured, or zigral-init has no updater).')]),
    );
    form.hidden = !info.available;
    send.disabled = u !== null && !FINISHED.includes(u.phase);
    schedule(u && !FINISHED.includes(u.phase) ? 2000 : 15000);
  }

  async function submit(ev: Event): Promise<void> {
    ev.preventDefault();
    const b = bundle.files?.[0];
    const s = sig.files?.[0];
    if (!b || !s) {
      result.textContent = 'Choose the bundle (.tar.zst) and its signature (.minisig).';
      return;
    }
    const form = new FormData();
    form.append('bundle', b, b.name);
    form.append('signature', s, s.name);
    if (force.checked) form.append('force', 'true');
    send.disabled = true;
    result.textContent = `Uploading ${b.name}…`;
    try {
      const r = await post<{ id: string; version: string; from_version: string }>('/admin/update', form);
      result.textContent = `Accepted: ${r.from_version} → ${r.version}. The services restart; this page follows the update.`;
      bundle.value = '';
      sig.value = '';
      force.checked = false;
    } catch (e) {
      result.textContent = `Refused: ${explain(e)}`;
    }
    void load();
  }

  const form = h(
    'form',
    { class: 'adm-update-form', hidden: true, onsubmit: (e: Event) => void submit(e) },
    h('label', { for: 'upd-bundle' }, 'Bundle (.tar.zst)'),
    bundle,
    h('label', { for: 'upd-sig' }, 'Signature (.minisig)'),
    sig,
    h('label', { class: 'check' }, force, ' Install even if it is not newer than the running version'),
    h('div', { class: 'row' }, send),
    result,
  );
  const el = h('section', { 'aria-labelledby': 'adm-upd-h' }, h('h2', { id: 'adm-upd-h' }, 'Software update'), status, form);
  void load();
  return {
    el,
    stop: () => {
      gone = true;
      window.clearTimeout(timer);
    },
  };
}
