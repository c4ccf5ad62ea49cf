// The administrators' dashboard (#/admin/...): a heading, the section tabs and the chosen section.
import '../admin.css';
import type { Mount, Ctx } from '../../ctx';
import { h } from '../../dom';

/** A section of the dashboard: draws into `root`; the returned function is its cleanup. */
export type Section = (root: HTMLElement, ctx: Ctx) => (() => void) | void;

interface Tab {
  path: string;
  label: string;
  load: () => Promise<{ render: Section }>;
}

const tabs: Tab[] = [
  { path: '', label: 'Overview', load: () => import('./overview') },
  { path: 'users', label: 'Users', load: () => import('./users') },
  { path: 'agents', label: 'Agent profiles', load: () => import('./agents') },
  { path: 'recordings', label: 'Recordings', load: () => import('./recordings') },
  { path: 'services', label: 'Services', load: () => import('./services') },
  { path: 'audit', label: 'Audit log', load: () => import('./audit') },
];

export const mount: Mount = (root, ctx, params) => {
  const sub = (params[0] ?? '').split('/')[0];
  const tab = tabs.find((t) => t.path === sub);
  ctx.setTitle(tab && tab.path ? `Dashboard: ${tab.label}` : 'Dashboard');
  const panel = h('div', { class: 'adm-panel' });
  root.replaceChildren(
    h(
      'div',
      { class: 'adm' },
      h('h1', null, 'Dashboard'),
      h(
        'nav',
        { class: 'adm-tabs', 'aria-label': 'Dashboard sections' },
        tabs.map((t) =>
          h('a', { href: t.path ? `#/admin/${t.path}` : '#/admin', 'aria-current': t === tab ? 'page' : null }, t.label),
        ),
      ),
      panel,
    ),
  );
  if (!tab) {
    panel.appendChild(
      h('div', { class: 'notice', role: 'alert' }, 'There is no such dashboard section. ', h('a', { href: '#/admin' }, 'Go to the overview')),
    );
    return;
  }
  let cleanup: (() => void) | void = undefined;
  let gone = false;
  tab
    .load()
    .then((m) => {
      if (!gone) cleanup = m.render(panel, ctx);
    })
    .catch((e: unknown) => {
      panel.appendChild(
        h('div', { class: 'notice error', role: 'alert' }, `This section could not be loaded: ${(e as Error).message}. Reload the page to try again.`),
      );
    });
  return () => {
    gone = true;
    if (cleanup) cleanup();
  };
};
