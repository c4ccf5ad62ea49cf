// What every page gets from the shell (main.ts).
import type { Me } from './api';

export interface Ctx {
  /** The signed-in user. */
  me: Me;
  /** Goes to a hash route, e.g. `/sessions/abc`. */
  navigate(path: string): void;
  /** Sets the document title ("… · Zigral") and announces the page to screen readers. */
  setTitle(title: string): void;
}

/** A page: renders into `root`; the returned function is called when the page is left. */
export type Mount = (root: HTMLElement, ctx: Ctx, params: string[]) => (() => void) | void;
