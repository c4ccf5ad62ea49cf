// Shared bits of the dashboard: formatters, a confirm dialog, message regions, switches and a keyed table.
import { explain } from '../../api';
import { h, fill, type Child } from '../../dom';
export { fmtBytes } from '../../dom';


/** "1 h 02 min", "3 min 05 s", "12 s" for a length in milliseconds. */
export function fmtDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** A local date and time for a millisecond timestamp. */
export function fmtTime(ms: number | null | undefined): string {
  if (!ms) return '—';
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

/** Asks a yes/no question in a modal dialog (Escape or Cancel = no). */
export function confirmDialog(title: string, text: string, yes: string): Promise<boolean> {
  return new Promise((resolve) => {
    const titleId = `adm-dlg-${Math.random().toString(36).slice(2)}`;
    const yesBtn = h('button', { type: 'button', class: 'danger' }, yes);
    const noBtn = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
    const dlg = h(
      'dialog',
      { class: 'adm-dialog', 'aria-labelledby': titleId },
      h('h2', { id: titleId }, title),
      h('p', null, text),
      h('div', { class: 'row adm-dialog-buttons' }, noBtn, yesBtn),
    );
    let answer = false;
    yesBtn.onclick = () => {
      answer = true;
      dlg.close();
    };
    noBtn.onclick = () => dlg.close();
    dlg.addEventListener('close', () => {
      dlg.remove();
      resolve(answer);
    });
    document.body.appendChild(dlg);
    dlg.showModal();
    noBtn.focus();
  });
}

/**
 * The page's message area: errors in a `role=alert` region (they stay until dismissed or
 * replaced), confirmations in a polite `role=status` region.
 */
export class Messages {
  readonly el: HTMLElement;
  private alert: HTMLElement;
  private status: HTMLElement;
  private timer = 0;

  constructor() {
    this.alert = h('div', { role: 'alert', class: 'adm-alert' });
    this.status = h('div', { role: 'status', class: 'adm-status' });
    this.el = h('div', { class: 'adm-messages' }, this.alert, this.status);
  }

  /** Shows `e` (an API error or any error) as a sentence, prefixed by what was being done. */
  error(what: string, e: unknown): void {
    const text = `${what}: ${explain(e)}`;
    const close = h('button', { type: 'button', class: 'secondary', 'aria-label': 'Dismiss message' }, '×');
    const item = h('div', { class: 'notice error adm-error' }, h('span', null, text), close);
    close.onclick = () => item.remove();
    this.alert.appendChild(item);
    while (this.alert.children.length > 3) this.alert.firstElementChild?.remove();
  }

  clearErrors(): void {
    this.alert.replaceChildren();
  }

  /** A short confirmation ("Saved.") read out politely; it fades after a while. */
  info(text: string): void {
    fill(this.status, h('div', { class: 'notice adm-info' }, text));
    clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.status.replaceChildren(), 8000);
  }
}

/** A labelled checkbox drawn as a switch; `label` is its accessible name. */
export interface Switch {
  el: HTMLElement;
  input: HTMLInputElement;
  set(on: boolean): void;
  busy(b: boolean): void;
}

export function makeSwitch(id: string, label: string, onchange: (on: boolean, sw: Switch) => void): Switch {
  const input = h('input', { type: 'checkbox', id, class: 'adm-switch' });
  const state = h('span', { class: 'adm-switch-state', 'aria-hidden': 'true' }, 'Off');
  const el = h('div', { class: 'adm-switch-wrap' }, input, h('label', { for: id }, h('span', { class: 'adm-sr' }, label), state));
  // While busy the switch stays focusable (a disabled control would drop the keyboard focus)
  // but ignores presses.
  let busy = false;
  const sw: Switch = {
    el,
    input,
    set(on) {
      input.checked = on;
      state.textContent = on ? 'On' : 'Off';
    },
    busy(b) {
      busy = b;
      input.setAttribute('aria-busy', String(b));
      if (b) input.setAttribute('aria-disabled', 'true');
      else input.removeAttribute('aria-disabled');
      if (b) state.textContent = '…';
    },
  };
  input.addEventListener('click', (ev) => {
    if (busy) ev.preventDefault();
  });
  input.addEventListener('change', () => onchange(input.checked, sw));
  return sw;
}

/** One column of a keyed table: its header and how to draw an item's cell. */
export interface Column<T> {
  head: string;
  cell: (x: T) => Child;
  /** The cell is a row header (`<th scope="row">`). */
  rowHeader?: boolean;
}

/**
 * A table whose rows are keyed: `update` changes only the cells whose content changed, so a
 * focused switch or link keeps its focus while live data streams in. Below 640 px each row
 * becomes a card (the column name is shown beside each value).
 */
export class KeyedTable<T> {
  readonly el: HTMLElement;
  private tbody: HTMLTableSectionElement;
  private rows = new Map<string, HTMLTableRowElement>();
  private emptyRow: HTMLTableRowElement;

  constructor(
    caption: string,
    private cols: Column<T>[],
    private key: (x: T) => string,
    empty: string,
  ) {
    this.tbody = h('tbody');
    this.emptyRow = h('tr', { class: 'adm-empty' }, h('td', { colspan: String(cols.length) }, empty));
    this.el = h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'adm-table' },
        h('caption', { class: 'adm-sr' }, caption),
        h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col' }, c.head)))),
        this.tbody,
      ),
    );
  }

  private cellOf(c: Column<T>, x: T): HTMLTableCellElement {
    const content = c.cell(x);
    return c.rowHeader
      ? h('th', { scope: 'row', 'data-label': c.head }, content)
      : h('td', { 'data-label': c.head }, content);
  }

  update(items: T[]): void {
    const seen = new Set<string>();
    let prev: Element | null = null;
    for (const x of items) {
      const k = this.key(x);
      seen.add(k);
      let row = this.rows.get(k);
      if (!row) {
        row = h('tr', { dataset: { key: k } }, this.cols.map((c) => this.cellOf(c, x)));
        this.rows.set(k, row);
      } else {
        this.cols.forEach((c, i) => {
          const cur = row!.cells[i];
          const content = c.cell(x);
          // A persistent element (a switch) already in place stays where it is.
          if (content instanceof Node && content.parentNode === cur) return;
          const next = c.rowHeader
            ? h('th', { scope: 'row', 'data-label': c.head }, content)
            : h('td', { 'data-label': c.head }, content);
          if (next.innerHTML !== cur.innerHTML) row!.replaceChild(next, cur);
        });
      }
      const want: Element | null = prev ? prev.nextElementSibling : this.tbody.firstElementChild;
      if (want !== row) this.tbody.insertBefore(row, want);
      prev = row;
    }
    for (const [k, row] of this.rows) {
      if (!seen.has(k)) {
        row.remove();
        this.rows.delete(k);
      }
    }
    if (items.length === 0) this.tbody.appendChild(this.emptyRow);
    else this.emptyRow.remove();
  }
}

/** A badge whose colour follows a state word. */
export function stateBadge(state: string | null | undefined): HTMLElement {
  const s = state ?? 'unknown';
  const ok = ['ready', 'running', 'recording', 'active', 'ok', 'enabled', 'idle', 'up'];
  const warn = ['starting', 'finalizing', 'paused', 'waiting', 'destroying', 'restarting', 'stopping', 'backoff'];
  const kind = ok.includes(s) ? 'ok' : warn.includes(s) ? 'warn' : ['failed', 'error', 'down', 'exited', 'disabled'].includes(s) ? 'bad' : '';
  return h('span', { class: `badge ${kind}` }, s);
}

/** A "Loading…" line for a region that is filling. */
export function loading(what: string): HTMLElement {
  return h('p', { class: 'muted', role: 'status' }, `Loading ${what}…`);
}

/**
 * A modal form: `onSubmit` runs on submit; if it throws, the error is shown in the dialog
 * (`role=alert`) and the dialog stays open; otherwise it closes. Resolves true once submitted.
 */
export function formDialog(opts: { title: string; fields: Child[]; submit: string; onSubmit: () => Promise<void> }): Promise<boolean> {
  return new Promise((resolve) => {
    const titleId = `adm-dlg-${Math.random().toString(36).slice(2)}`;
    const err = h('p', { class: 'form-error', role: 'alert' });
    const submit = h('button', { type: 'submit' }, opts.submit);
    const cancel = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
    const form = h('form', { novalidate: false }, opts.fields, err, h('div', { class: 'row adm-dialog-buttons' }, cancel, submit));
    const dlg = h('dialog', { class: 'adm-dialog', 'aria-labelledby': titleId }, h('h2', { id: titleId }, opts.title), form);
    let done = false;
    cancel.onclick = () => dlg.close();
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      submit.disabled = true;
      err.textContent = '';
      try {
        await opts.onSubmit();
        done = true;
        dlg.close();
      } catch (e) {
        err.textContent = explain(e);
      } finally {
        submit.disabled = false;
      }
    });
    dlg.addEventListener('close', () => {
      dlg.remove();
      resolve(done);
    });
    document.body.appendChild(dlg);
    dlg.showModal();
    (form.querySelector('input, select, textarea') as HTMLElement | null)?.focus();
  });
}

/** A labelled input (`<label for>` + control) in a `.adm-field` block. */
export function field(id: string, label: string, control: HTMLElement, hint?: string): HTMLElement {
  control.id = id;
  const hintEl = hint ? h('p', { class: 'muted adm-hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'adm-field' }, h('label', { for: id }, label), control, hintEl);
}

/** A checkbox with its label beside it. */
export function checkField(id: string, label: string, checked: boolean, hint?: string): { el: HTMLElement; input: HTMLInputElement } {
  const input = h('input', { type: 'checkbox', id, checked });
  const hintEl = hint ? h('span', { class: 'muted adm-hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return { el: h('div', { class: 'adm-check' }, input, h('label', { for: id }, label), hintEl), input };
}
