// The fleet (many appliances behind one HAProxy): whether this app is in one, which appliance
// the page is pinned to, where a session's page is (`/a/<appliance>/#/sessions/<id>`: a
// session lives on one appliance) and the user's sessions gathered from every member.
// Outside a fleet (`GET /info` says `fleet: null`) every function here keeps today's behaviour.
import { API, ApiError, BASE, apiAt, explain } from './api';
import { info } from './info';
import type { SessionRecord } from './pages/session/types';

/** This appliance in its fleet. */
export interface Fleet {
  /** The name of the appliance that answered `GET /info`. */
  name: string;
  /** Every appliance of the fleet (some may be unfilled slots that answer 503). */
  members: string[];
}

let current: Fleet | null = null;

/** Reads whether the app is in a fleet (once, at start: main.ts awaits it before the first page). */
export async function loadFleet(): Promise<Fleet | null> {
  const i = await info();
  const a = i?.appliance;
  current = a?.fleet && Array.isArray(a.fleet.members) ? { name: a.name, members: a.fleet.members } : null;
  return current;
}

/** The fleet, or null outside one (or before `loadFleet`). */
export function fleet(): Fleet | null {
  return current;
}

/** An appliance's directory through the fleet, absolute from the origin: `/a/<name>/`. */
export function applianceBase(name: string): string {
  return `/a/${encodeURIComponent(name)}/`;
}

/** The appliance this page is pinned to (it is served under `/a/<name>/`), or null (the fleet's root). */
export function pinnedTo(): string | null {
  const m = /^\/a\/([^/]+)\/$/.exec(BASE);
  return current && m ? decodeURIComponent(m[1]) : null;
}

/** The REST root of the appliance a session is on: in a fleet `/a/<appliance>/api/v1`, else this page's. */
export function applianceApi(appliance: string | null | undefined): string {
  return current && appliance ? `${applianceBase(appliance)}api/v1` : API;
}

/** The REST root that creates sessions: in a fleet the fleet's root (`/api/v1`, HAProxy picks
 * the appliance with the most free desktops), else this page's. */
export function createApi(): string {
  return current ? '/api/v1' : API;
}

/** The link to a session's page: in a fleet `/a/<appliance>/#/sessions/<id>`, else `#/sessions/<id>`. */
export function sessionHref(id: string, appliance: string | null | undefined): string {
  const hash = `#/sessions/${encodeURIComponent(id)}`;
  return current && appliance ? `${applianceBase(appliance)}${hash}` : hash;
}

/** Whether a session's page is elsewhere (in a fleet, on an appliance this page is not pinned to). */
export function elsewhere(appliance: string | null | undefined): boolean {
  return !!current && !!appliance && BASE !== applianceBase(appliance);
}

/** A session as the fleet lists it: the record with the appliance it is on. */
export type FleetSession = SessionRecord & { appliance: string };

/** The user's sessions of every member, fetched in parallel. A member answering 503
 * `appliance_unavailable` (an unfilled slot, or one restarting) is skipped quietly; every
 * other failure gives one sentence naming the appliance, and the other members still count. */
export async function fleetSessions(f: Fleet): Promise<{ sessions: FleetSession[]; problems: string[] }> {
  const answers = await Promise.allSettled(
    f.members.map((m) => apiAt<SessionRecord[]>(applianceApi(m), 'GET', '/sessions', undefined, { signOut: false })),
  );
  const sessions: FleetSession[] = [];
  const problems: string[] = [];
  answers.forEach((a, i) => {
    const m = f.members[i];
    if (a.status === 'fulfilled') {
      for (const s of Array.isArray(a.value) ? a.value : []) sessions.push({ ...s, appliance: s.appliance || m });
    } else if (!(a.reason instanceof ApiError && a.reason.status === 503 && a.reason.code === 'appliance_unavailable')) {
      const e = a.reason;
      problems.push(e instanceof ApiError && e.status !== 0 ? `${m} could not be reached: ${explain(e)}` : `${m} could not be reached.`);
    }
  });
  return { sessions, problems };
}

/** The appliance a session is on, asking every member (a page at the fleet's root may reach
 * any appliance, so the session's own may not be the one that answers); null when none has it. */
export async function locateSession(f: Fleet, id: string): Promise<string | null> {
  const answers = await Promise.allSettled(
    f.members.map((m) => apiAt<SessionRecord>(applianceApi(m), 'GET', `/sessions/${encodeURIComponent(id)}`, undefined, { signOut: false })),
  );
  for (let i = 0; i < answers.length; i++) {
    const a = answers[i];
    if (a.status === 'fulfilled') return a.value.appliance || f.members[i];
  }
  return null;
}
