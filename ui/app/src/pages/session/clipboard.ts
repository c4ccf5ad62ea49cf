// The clipboard panel: the desktop's clipboard comes in here; "Copy to desktop" puts text there.
import { h } from '../../dom';
import type { LiveView } from './live';

export function clipboardPanel(live: LiveView): HTMLElement {
  const text = h('textarea', { id: 'clipboard', rows: 2, placeholder: 'Copy on the desktop and it shows here' });
  const note = h('span', { class: 'muted', role: 'status' });
  const send = h('button', { type: 'button', class: 'secondary' }, 'Copy to desktop');
  send.onclick = () => {
    note.textContent = live.paste(text.value)
      ? 'Sent: paste it on the desktop.'
      : 'The live view is not connected: nothing was sent.';
  };
  live.clipboard((t) => {
    text.value = t;
    note.textContent = 'The desktop’s clipboard arrived.';
  });
  return h('div', { class: 'clipboard' }, h('label', { for: 'clipboard' }, 'Clipboard'), text, h('div', { class: 'row' }, send, note));
}
