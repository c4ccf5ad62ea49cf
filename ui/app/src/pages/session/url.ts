// Where the live view's websocket is: the page's own origin in development, else the proxy's port.
/// <reference types="vite/client" />
import { get } from '../../api';

let port: Promise<number> | null = null;

function livePort(): Promise<number> {
  port ??= get<{ live_view_port?: number }>('/info')
    .then((i) => (typeof i.live_view_port === 'number' ? i.live_view_port : 6081))
    .catch(() => 6081);
  return port;
}

/** The websocket URL of desktop `n` for a signed token. */
export async function liveUrl(token: string, n: number): Promise<string> {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const q = `websockify?token=${encodeURIComponent(token)}&desktop=${n}`;
  if (import.meta.env.DEV) return `${scheme}://${location.host}/${q}`;
  return `${scheme}://${location.hostname}:${await livePort()}/${q}`;
}
