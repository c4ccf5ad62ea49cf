// The control plane's REST API (`api/v1` next to the page), authenticated by the HttpOnly
// session cookie that `POST /auth/login` sets. Every failure becomes an `ApiError` with a
// sentence a person can read; a 401 also tells the app the session is over (it returns to the
// login page).
//
// Every URL is relative to the page's directory: the control plane serves the app at `/`, a
// fleet's HAProxy serves the same files at `/a/<name>/` (one appliance) and at `/` (any).

/** The page's directory: `/`, or `/a/<name>/` through a fleet (hash routing keeps it a directory). */
export const BASE = location.pathname.slice(0, location.pathname.lastIndexOf('/') + 1);

/** The REST API's root for this page: `/api/v1`, or `/a/<name>/api/v1` through a fleet. */
export const API = `${BASE}api/v1`;

/** A URL the appliance handed out (`/api/v1/...`, absolute from its own root) as this page
 * reaches it: under the page's `/a/<name>/` through a fleet. Anything else is returned as is. */
export function apiUrl(u: string): string {
  return u.startsWith('/api/v1/') ? `${API}${u.slice('/api/v1'.length)}` : u;
}

/** The `ws:`/`wss:` URL of a path (absolute from the origin, e.g. `${API}/events`) on this origin. */
export function wsUrl(path: string): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
  ) {
    super(message);
  }
}

type Listener = () => void;
const unauthorized: Listener[] = [];
/** Called when any request answers 401 (expired or revoked session). */
export function onUnauthorized(f: Listener): void {
  unauthorized.push(f);
}

/** A plain-words message for an API error (what a person sees). */
export function explain(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 403) return `Not allowed: ${e.message}`;
    if (e.status === 0) return e.message;
    return e.message || `The appliance answered ${e.status}.`;
  }
  return e instanceof Error ? e.message : String(e);
}

export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  return apiAt<T>(API, method, path, body);
}

/** Like `api`, on another REST root (in a fleet: `/a/<name>/api/v1`, one appliance's).
 * `signOut: false` keeps a 401 from ending the app's session (a fan-out over a fleet's
 * appliances reports each one's failure instead). */
export async function apiAt<T = unknown>(root: string, method: string, path: string, body?: unknown, opts: { signOut?: boolean } = {}): Promise<T> {
  let res: Response;
  try {
    res = await fetch(root + path, {
      method,
      credentials: 'same-origin',
      // A FormData body (file uploads) goes as multipart, with the browser's own boundary.
      headers: body === undefined || body instanceof FormData ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : body instanceof FormData ? body : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'network', 'The appliance cannot be reached. Check the connection and try again.');
  }
  if (res.status === 401 && path !== '/auth/login' && opts.signOut !== false) unauthorized.forEach((f) => f());
  const text = await res.text();
  let data: unknown = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    // The control plane says `message`; a fleet's HAProxy (503 appliance_unavailable) says `detail`.
    const d = (data ?? {}) as { error?: string; message?: string; detail?: string };
    throw new ApiError(res.status, d.error ?? `http_${res.status}`, d.message ?? d.detail ?? `The appliance answered ${res.status}.`);
  }
  return data as T;
}

export const get = <T = unknown>(path: string) => api<T>('GET', path);
export const post = <T = unknown>(path: string, body?: unknown) => api<T>('POST', path, body ?? {});
export const put = <T = unknown>(path: string, body?: unknown) => api<T>('PUT', path, body ?? {});
export const patch = <T = unknown>(path: string, body?: unknown) => api<T>('PATCH', path, body ?? {});
export const del = <T = unknown>(path: string) => api<T>('DELETE', path);

/** The signed-in user (`GET /auth/me`). */
export interface Me {
  id: string;
  username: string;
  is_admin: boolean;
}
