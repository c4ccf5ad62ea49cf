// The Credentials page: the user's stored credentials by name (values are never shown back);
// add one (the secret in a password field, cleared after saving) and delete one.
import type { Mount } from '../ctx';
import { del, get, post } from '../api';
import { h, fill } from '../dom';
import { subscribe } from '../events';
import { act, errorLine } from './session/act';
import type { CredentialInfo } from './session/types';
import { ms } from './session/types';
import './credentials.css';

export const mount: Mount = (root, ctx) => {
  root.classList.add('cred-page');
  ctx.setTitle('Credentials');
  const tbody = h('tbody');
  const status = h('p', { class: 'muted', role: 'status' }, 'Loading…');
  const listErr = errorLine();
  const table = h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      null,
      h('caption', { class: 'visually-hidden' }, 'Your stored credentials'),
      h('thead', null, h('tr', null, ...['Name', 'Domains', 'User name', 'Expires', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody,
    ),
  );

  const name = h('input', { id: 'cred-name', required: true, pattern: '[a-z0-9][a-z0-9_.\\-]{0,63}', autocomplete: 'off', 'aria-describedby': 'cred-name-help' });
  const user = h('input', { id: 'cred-user', autocomplete: 'off' });
  const pass = h('input', { id: 'cred-pass', type: 'password', required: true, autocomplete: 'new-password' });
  const domains = h('input', { id: 'cred-domains', required: true, autocomplete: 'off', placeholder: 'example.com, *.example.org', 'aria-describedby': 'cred-domains-help' });
  const hours = h('input', { id: 'cred-ttl', type: 'number', min: 1, step: 1, inputmode: 'numeric', 'aria-describedby': 'cred-ttl-help' });
  const save = h('button', { type: 'submit' }, 'Save credential');
  const formErr = errorLine();
  const saved = h('p', { class: 'muted', role: 'status' });
  const form = h(
    'form',
    { class: 'card cred-form', 'aria-labelledby': 'cred-add-h' },
    h('h2', { id: 'cred-add-h' }, 'Add a credential'),
    h('label', { for: 'cred-name' }, 'Name'),
    name,
    h('p', { id: 'cred-name-help', class: 'muted help' }, 'What the agent calls it: lower-case letters, digits, “_”, “.”, “-”.'),
    h('label', { for: 'cred-user' }, 'User name (optional)'),
    user,
    h('label', { for: 'cred-pass' }, 'Password'),
    pass,
    h('label', { for: 'cred-domains' }, 'Domains'),
    domains,
    h('p', { id: 'cred-domains-help', class: 'muted help' }, 'Where it may be typed, comma-separated; a domain covers its subdomains.'),
    h('label', { for: 'cred-ttl' }, 'Keep for (hours, optional)'),
    hours,
    h('p', { id: 'cred-ttl-help', class: 'muted help' }, 'Credentials are held in memory only and are gone after a restart.'),
    h('div', { class: 'row form-actions' }, save),
    saved,
    formErr,
  );
  form.onsubmit = (ev) => {
    ev.preventDefault();
    saved.textContent = '';
    const body: Record<string, unknown> = {
      name: name.value.trim(),
      username: user.value,
      password: pass.value,
      domains: domains.value.split(/[,\s]+/).map((d) => d.trim()).filter(Boolean),
    };
    if (hours.value) body.ttl_secs = Math.round(Number(hours.value) * 3600);
    void act(save, formErr, async () => {
      try {
        const info = await post<CredentialInfo>('/credentials', body);
        pass.value = '';
        saved.textContent = `Saved “${info.name}”.`;
        name.value = user.value = domains.value = hours.value = '';
        await load();
      } finally {
        body.password = '';
      }
    });
  };

  fill(
    root,
    h('h1', null, 'Credentials'),
    h('p', { class: 'muted' }, 'Passwords the agent may type for you on the sites you name. The agent sees only the name; no page ever shows a value again.'),
    h('div', { class: 'cred-layout' }, h('section', { 'aria-label': 'Stored credentials' }, h('h2', null, 'Stored'), listErr, status, table), form),
  );

  function row(c: CredentialInfo): HTMLTableRowElement {
    const actions = h('td');
    const err = errorLine();
    const delBtn = h('button', { type: 'button', class: 'secondary', 'aria-label': `Delete ${c.name}` }, 'Delete');
    const reset = () => fill(actions, delBtn, err);
    delBtn.onclick = () => {
      const yes = h('button', { type: 'button', class: 'danger', 'aria-label': `Yes, delete ${c.name}` }, 'Yes, delete');
      const no = h('button', { type: 'button', class: 'secondary', onclick: () => { reset(); delBtn.focus(); } }, 'Cancel');
      yes.onclick = () => void act(yes, err, async () => { await del(`/credentials/${encodeURIComponent(c.name)}`); await load(); });
      fill(actions, h('div', { class: 'row' }, h('span', null, 'Forget it?'), yes, no), err);
      yes.focus();
    };
    reset();
    return h(
      'tr',
      null,
      h('td', null, h('strong', null, c.name)),
      h('td', null, c.domains.join(', ')),
      h('td', null, c.has_username ? 'stored' : '—'),
      h('td', null, new Date(ms(c.expires_at)).toLocaleString()),
      actions,
    );
  }

  async function load(): Promise<void> {
    try {
      const list = await get<CredentialInfo[]>('/credentials');
      listErr.clear();
      fill(tbody, ...list.map(row));
      table.hidden = list.length === 0;
      status.textContent = list.length === 0 ? 'No credentials stored.' : '';
    } catch (e) {
      status.textContent = '';
      listErr.show(e);
    }
  }
  void load();
  const off = subscribe('credential.', () => void load());
  return () => {
    off();
    root.classList.remove('cred-page');
  };
};
