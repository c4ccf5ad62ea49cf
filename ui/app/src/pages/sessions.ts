// Placeholder: replaced by the page's owner.
import type { Mount } from '../ctx';
import { h } from '../dom';

export const mount: Mount = (root, ctx) => {
  ctx.setTitle('sessions');
  root.replaceChildren(h('h1', null, 'sessions'));
};
