// `GET /info`, read once per page load: the live view's port and this appliance's place in a
// fleet (its name, the path prefix the fleet serves it under, the fleet's members).
import { get } from './api';

/** The part of `GET /api/v1/info` the app reads (fields an older control plane lacks are optional). */
export interface Info {
  version?: string;
  live_view_port?: number;
  appliance?: {
    name: string;
    draining?: boolean;
    /** `/a/<name>` when this request came through a fleet's HAProxy pinned to it, else null. */
    prefix?: string | null;
    /** The fleet's appliances, or null when this appliance is not in a fleet. */
    fleet?: { members: string[] } | null;
  };
}

let cached: Promise<Info | null> | null = null;

/** The appliance's info; null when it could not be read (the app then behaves as outside a
 * fleet, and the next call asks again). */
export function info(): Promise<Info | null> {
  cached ??= get<Info>('/info').catch(() => {
    cached = null;
    return null;
  });
  return cached;
}
