// The events websocket (`api/v1/events` next to the page): one connection for the whole app, reconnecting
// with backoff; pages subscribe to event kinds (prefix match: `session.` gets all session
// events) and unsubscribe when they unmount.

import { API, wsUrl } from './api';

export interface AppEvent {
  kind: string;
  session_id: string | null;
  data: Record<string, unknown>;
  timestamp: number;
}

type Handler = (e: AppEvent) => void;
const handlers = new Set<{ prefix: string; f: Handler }>();
let ws: WebSocket | null = null;
let retry = 500;
let stopped = true;
const stateListeners = new Set<(up: boolean) => void>();

function open(): void {
  ws = new WebSocket(wsUrl(`${API}/events`));
  ws.onopen = () => {
    retry = 500;
    stateListeners.forEach((f) => f(true));
  };
  ws.onmessage = (m) => {
    let e: AppEvent;
    try {
      e = JSON.parse(String(m.data));
    } catch {
      return;
    }
    for (const h of handlers) if (e.kind.startsWith(h.prefix)) h.f(e);
  };
  ws.onclose = () => {
    ws = null;
    stateListeners.forEach((f) => f(false));
    if (!stopped) setTimeout(open, (retry = Math.min(retry * 2, 10000)));
  };
}

export function startEvents(): void {
  if (!stopped) return;
  stopped = false;
  open();
}

export function stopEvents(): void {
  stopped = true;
  ws?.close();
}

/** Subscribes to events whose kind starts with `prefix` ('' = all); returns the unsubscribe. */
export function subscribe(prefix: string, f: Handler): () => void {
  const h = { prefix, f };
  handlers.add(h);
  return () => handlers.delete(h);
}

/** Follows the connection state (true = connected), starting with the current one. */
export function onEventsState(f: (up: boolean) => void): () => void {
  stateListeners.add(f);
  f(ws?.readyState === WebSocket.OPEN);
  return () => stateListeners.delete(f);
}
