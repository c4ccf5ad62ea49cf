// Runs a button's action: disables it meanwhile and shows any failure as a sentence (explain).
import { explain } from '../../api';
import { h, toast } from '../../dom';

/** A polite error line under a form; `show(e)` fills it, `clear()` empties it. */
export function errorLine(): HTMLParagraphElement & { show(e: unknown): void; clear(): void } {
  const p = h('p', { class: 'form-error', 'aria-live': 'assertive' }) as HTMLParagraphElement & {
    show(e: unknown): void;
    clear(): void;
  };
  p.show = (e: unknown) => {
    p.textContent = explain(e);
  };
  p.clear = () => {
    p.textContent = '';
  };
  return p;
}

/** Awaits `f` with `btn` disabled; a failure goes to `err` (or a toast) and is returned false. */
export async function act(
  btn: HTMLButtonElement | null,
  err: { show(e: unknown): void; clear(): void } | null,
  f: () => Promise<unknown>,
): Promise<boolean> {
  if (btn) btn.disabled = true;
  err?.clear();
  try {
    await f();
    return true;
  } catch (e) {
    if (err) err.show(e);
    else toast(explain(e), 'error');
    return false;
  } finally {
    if (btn) btn.disabled = false;
  }
}
