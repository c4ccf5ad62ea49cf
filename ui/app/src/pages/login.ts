// The login page: user name and password; a wrong password or a disabled account says so.
import { ApiError, post, type Me } from '../api';
import { h } from '../dom';

export function mountLogin(root: HTMLElement, notice: string, done: (me: Me) => void): () => void {
  const user = h('input', { id: 'login-user', name: 'username', autocomplete: 'username', required: true });
  const pass = h('input', { id: 'login-pass', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const msg = h('p', { class: 'form-error', role: 'alert', id: 'login-error' });
  const button = h('button', { type: 'submit' }, 'Log in');
  const form = h(
    'form',
    {
      class: 'card login',
      'aria-labelledby': 'login-title',
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        msg.textContent = '';
        button.disabled = true;
        try {
          const r = await post<{ user: Me }>('/auth/login', { username: user.value, password: pass.value });
          pass.value = '';
          done(r.user);
        } catch (e) {
          pass.value = '';
          if (e instanceof ApiError && e.status === 401) msg.textContent = 'Wrong user name or password.';
          else if (e instanceof ApiError && e.status === 429) msg.textContent = 'Too many attempts. Wait a minute and try again.';
          else msg.textContent = e instanceof Error ? e.message : String(e);
          pass.focus();
        } finally {
          button.disabled = false;
        }
      },
    },
    h('h1', { id: 'login-title' }, 'Log in to Zigral'),
    notice ? h('p', { class: 'notice', role: 'status' }, notice) : null,
    h('label', { for: 'login-user' }, 'User name'),
    user,
    h('label', { for: 'login-pass' }, 'Password'),
    pass,
    msg,
    button,
  );
  root.replaceChildren(form);
  user.focus();
  return () => {};
}
