// Dashboard users: the list, creating a user, disabling/enabling one and resetting a password (never shown back).
import { del, explain, get, patch, post } from '../../api';
import { h } from '../../dom';
import type { Section } from './index';
import { KeyedTable, Messages, checkField, confirmDialog, field, fmtTime, formDialog, loading, stateBadge } from './util';

interface User {
  id: string;
  username: string;
  is_admin: boolean;
  created_at: number;
  disabled: boolean;
  persistent_profile: boolean;
}

export const render: Section = (root, ctx) => {
  const msgs = new Messages();
  let users: User[] = [];
  let gone = false;

  async function load(): Promise<void> {
    try {
      users = await get<User[]>('/users');
      table.update(users.sort((a, b) => a.username.localeCompare(b.username)));
      listState.replaceChildren();
    } catch (e) {
      listState.replaceChildren();
      msgs.error('The users could not be listed', e);
    }
  }

  async function setDisabled(u: User, disabled: boolean): Promise<void> {
    if (disabled && !(await confirmDialog(`Disable ${u.username}?`, `${u.username} will be logged out and cannot log in or use any token until enabled again.`, 'Disable')))
      return;
    try {
      await patch(`/users/${encodeURIComponent(u.id)}`, { disabled });
      msgs.info(`${u.username} is ${disabled ? 'disabled' : 'enabled'}.`);
    } catch (e) {
      msgs.error(`${u.username} could not be ${disabled ? 'disabled' : 'enabled'}`, e);
    }
    if (!gone) await load();
  }

  function resetPassword(u: User): void {
    const pw = h('input', { type: 'password', autocomplete: 'new-password', required: true, minlength: '8' });
    void formDialog({
      title: `Reset the password of ${u.username}`,
      fields: [field(`adm-reset-${u.id}`, `New password for ${u.username}`, pw, '8 characters or more. Their current logins end.')],
      submit: 'Set password',
      onSubmit: async () => {
        await post(`/users/${encodeURIComponent(u.id)}/password`, { password: pw.value });
        pw.value = '';
      },
    }).then((ok) => {
      pw.value = '';
      if (ok) msgs.info(`The password of ${u.username} is set; their logins ended.`);
    });
  }

  async function remove(u: User): Promise<void> {
    if (!(await confirmDialog(`Delete ${u.username}?`, `The user ${u.username} is deleted with their tokens, and their desktop is released. This cannot be undone.`, 'Delete user'))) return;
    try {
      await del(`/users/${encodeURIComponent(u.id)}`);
      msgs.info(`${u.username} is deleted.`);
    } catch (e) {
      msgs.error(`${u.username} could not be deleted`, e);
    }
    if (!gone) await load();
  }

  const table = new KeyedTable<User>(
    'Users',
    [
      { head: 'User name', rowHeader: true, cell: (u) => [u.username, u.id === ctx.me.id ? h('span', { class: 'muted' }, ' (you)') : null] },
      { head: 'Role', cell: (u) => (u.is_admin ? 'administrator' : 'user') },
      { head: 'State', cell: (u) => stateBadge(u.disabled ? 'disabled' : 'active') },
      { head: 'Created', cell: (u) => fmtTime(u.created_at) },
      {
        head: 'Actions',
        cell: (u) =>
          h(
            'div',
            { class: 'row adm-actions' },
            u.id === ctx.me.id
              ? null
              : h(
                  'button',
                  { type: 'button', class: 'secondary', 'aria-label': `${u.disabled ? 'Enable' : 'Disable'} ${u.username}`, onclick: () => void setDisabled(u, !u.disabled) },
                  u.disabled ? 'Enable' : 'Disable',
                ),
            h('button', { type: 'button', class: 'secondary', 'aria-label': `Reset password of ${u.username}`, onclick: () => resetPassword(u) }, 'Reset password'),
            u.id === ctx.me.id
              ? null
              : h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${u.username}`, onclick: () => void remove(u) }, 'Delete'),
          ),
      },
    ],
    (u) => `${u.id}:${u.disabled}`,
    'No users.',
  );

  // The create form.
  const name = h('input', { type: 'text', autocomplete: 'off', required: true, maxlength: '64', pattern: '[A-Za-z0-9._\\-]+' });
  const pw = h('input', { type: 'password', autocomplete: 'new-password', required: true, minlength: '8' });
  const admin = checkField('adm-new-admin', 'Administrator', false, 'may see and manage everything');
  const formErr = h('p', { class: 'form-error', role: 'alert' });
  const create = h('button', { type: 'submit' }, 'Create user');
  const form = h(
    'form',
    { class: 'card adm-form', 'aria-labelledby': 'adm-new-user-h' },
    h('h2', { id: 'adm-new-user-h' }, 'New user'),
    h(
      'div',
      { class: 'adm-form-grid' },
      field('adm-new-name', "New user's name", name, 'Letters, digits, . _ - (up to 64).'),
      field('adm-new-pw', "New user's password", pw, '8 characters or more.'),
    ),
    admin.el,
    formErr,
    create,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    formErr.textContent = '';
    create.disabled = true;
    try {
      const u = await post<User>('/users', { username: name.value.trim(), password: pw.value, is_admin: admin.input.checked });
      msgs.info(`${u.username} is created.`);
      form.reset();
      await load();
    } catch (e) {
      formErr.textContent = `The user could not be created: ${explain(e)}`;
    } finally {
      pw.value = '';
      create.disabled = false;
    }
  });

  const listState = loading('users');
  root.replaceChildren(
    msgs.el,
    h('section', { 'aria-labelledby': 'adm-users-h' }, h('h2', { id: 'adm-users-h' }, 'Users'), listState, table.el),
    form,
  );
  void load();
  return () => {
    gone = true;
  };
};
