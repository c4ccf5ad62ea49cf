// Where the live view's websocket is: through a fleet, the page's own origin under the
// appliance's prefix (`/a/<name>/websockify`, which HAProxy sends to that appliance's proxy);
// in development the page's own origin; else the proxy's port on the page's host name.
/// <reference types="vite/client" />
import { wsUrl } from '../../api';
import { info } from '../../info';

/** The websocket URL of desktop `n` for a signed token. */
export async function liveUrl(token: string, n: number): Promise<string> {
  const q = `websockify?token=${encodeURIComponent(token)}&desktop=${n}`;
  const i = await info();
  const prefix = i?.appliance?.prefix;
  if (prefix) return wsUrl(`${prefix.replace(/\/+$/, '')}/${q}`);
  if (import.meta.env.DEV) return wsUrl(`/${q}`);
  const port = typeof i?.live_view_port === 'number' ? i.live_view_port : 6081;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.hostname}:${port}/${q}`;
}
