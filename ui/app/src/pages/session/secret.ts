// Typing a stored credential into the focused field of the session's browser: the value goes
// from the appliance's memory to the desktop; neither the agent nor this page ever sees it.
import { get, post } from '../../api';
import { h } from '../../dom';
import { act, errorLine } from './act';
import type { CredentialInfo } from './types';

export function secretTyper(sessionId: string): HTMLElement {
  const name = h('select', { id: 'secret-name' });
  const field = h(
    'select',
    { id: 'secret-field' },
    h('option', { value: 'password' }, 'Password'),
    h('option', { value: 'username' }, 'User name'),
  );
  const go = h('button', { type: 'submit', class: 'secondary' }, 'Type it');
  const err = errorLine();
  const note = h('p', { class: 'muted', role: 'status' });
  const form = h(
    'form',
    { class: 'secret-typer', 'aria-label': 'Type a stored credential' },
    h('h3', null, 'Type a stored credential'),
    h('p', { class: 'muted' }, 'Click into the field on the desktop first. The value is typed by the appliance; it is never shown here or to the agent.'),
    h(
      'div',
      { class: 'row' },
      h('span', null, h('label', { for: 'secret-name' }, 'Credential'), name),
      h('span', null, h('label', { for: 'secret-field' }, 'Part'), field),
      go,
    ),
    note,
    err,
  );
  form.onsubmit = (ev) => {
    ev.preventDefault();
    note.textContent = '';
    void act(go, err, async () => {
      if (!name.value) throw new Error('You have no stored credentials. Add one on the Credentials page.');
      await post(`/sessions/${encodeURIComponent(sessionId)}/type-secret`, { name: name.value, field: field.value });
      note.textContent = `Typed the ${field.value === 'password' ? 'password' : 'user name'} of “${name.value}”.`;
    });
  };
  get<CredentialInfo[]>('/credentials')
    .then((list) => {
      if (list.length === 0) name.appendChild(h('option', { value: '' }, 'No credentials stored'));
      for (const c of list) name.appendChild(h('option', { value: c.name }, `${c.name} (${c.domains.join(', ')})`));
    })
    .catch((e) => err.show(e));
  return form;
}
