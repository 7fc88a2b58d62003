// The session of a browser app: the access token lives in this tab's memory only (never in
// web storage or a cookie the page can read); the refresh token is an HttpOnly cookie the
// page never sees, sent only to the auth routes that read it.
//
// Refreshing is single-flight twice over: within a tab, concurrent callers share one
// promise; across tabs, a Web Lock lets one tab refresh while the others wait, and the
// winner hands its new access token to them over a BroadcastChannel, so that one refresh
// serves every tab (two tabs presenting the same refresh token would be reuse, which ends
// the session). Logging out takes the same lock, so no refresh outlives it. A refresh is
// scheduled shortly before the token expires, checked again whenever the tab becomes
// visible (timers sleep with the machine), and made at once when an API call answers 401
// TOKEN_EXPIRED.

import createClient from "openapi-fetch";

import type { components, paths } from "../../../clients/typescript/generated/auth";
import { config } from "./config";

type TokenPair = components["schemas"]["TokenPair"];
export type Problem = components["schemas"]["Problem"];

export type Listener = (signedIn: boolean) => void;

const auth = createClient<paths>({ baseUrl: config.authUrl, credentials: "include" });
const channel = new BroadcastChannel("authsvc-session");
const LOCK = "authsvc-session";

let access: { token: string; expiresAt: number } | null = null;
/** Bumped whenever the token changes, here or from another tab. */
let generation = 0;
let inFlight: Promise<boolean> | null = null;
let timer: ReturnType<typeof setTimeout> | undefined;
const listeners: Listener[] = [];

/** Refresh this long before expiry. */
export const EARLY_MS = 15_000;

export function onChange(listener: Listener): void {
  listeners.push(listener);
}

function notify(): void {
  for (const listener of listeners) listener(access !== null);
}

export function accessToken(): string | null {
  return access?.token ?? null;
}

function adopt(token: string, expiresIn: number, announce: boolean): void {
  const signedInBefore = access !== null;
  access = { token, expiresAt: Date.now() + expiresIn * 1000 };
  generation += 1;
  clearTimeout(timer);
  timer = setTimeout(() => void refresh(), Math.max(1000, expiresIn * 1000 - EARLY_MS));
  if (announce) channel.postMessage({ type: "token", token, expiresIn });
  if (!signedInBefore) notify();
}

function forget(announce: boolean): void {
  access = null;
  generation += 1;
  clearTimeout(timer);
  if (announce) channel.postMessage({ type: "signed-out" });
  notify();
}

channel.onmessage = (event: MessageEvent<{ type: string; token?: string; expiresIn?: number }>) => {
  const message = event.data;
  if (message.type === "token" && message.token && message.expiresIn) {
    adopt(message.token, message.expiresIn, false);
  } else if (message.type === "signed-out") {
    forget(false);
  }
};

// A timer does not run while the machine sleeps: on waking, refresh if the token is near
// its end.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && access && access.expiresAt - Date.now() < EARLY_MS) {
    void refresh();
  }
});

/** A new access token from the cookie; false when there is no session (any more). A
 * network failure is thrown. */
export function refresh(): Promise<boolean> {
  inFlight ??= refreshAcrossTabs().finally(() => {
    inFlight = null;
  });
  return inFlight;
}

/** Wait (briefly) for another tab's token to arrive over the channel. */
function tokenFrom(otherTab: number): Promise<boolean> {
  return new Promise((resolve) => {
    const started = Date.now();
    const poll = () => {
      if (generation !== otherTab && access !== null) resolve(true);
      else if (Date.now() - started > 1000) resolve(false);
      else setTimeout(poll, 10);
    };
    poll();
  });
}

async function refreshAcrossTabs(): Promise<boolean> {
  const asked = generation;
  // Taken at once when free (atomically, across tabs): this tab refreshes.
  const mine = await navigator.locks.request(LOCK, { ifAvailable: true }, async (lock) => {
    if (!lock) return null;
    // Another tab's token may have arrived since this one asked.
    if (generation !== asked && access !== null) return { refreshed: true };
    return { refreshed: await refreshNow() };
  });
  if (mine) return mine.refreshed;
  // Another tab holds the lock, refreshing (its token comes over the channel) or logging
  // out (then this refresh finds no session).
  return navigator.locks.request(LOCK, async () => (await tokenFrom(asked)) || refreshNow());
}

/** Under the lock: rotate the cookie's refresh token. */
async function refreshNow(): Promise<boolean> {
  const { data, response } = await auth.POST("/v1/auth/refresh", {});
  if (data) {
    adopt(data.access_token, data.expires_in, true);
    return true;
  }
  if (response.status === 401 || response.status === 403) forget(true);
  return false;
}

export function signedIn(pair: TokenPair): void {
  adopt(pair.access_token, pair.expires_in, true);
}

/** Log out this device: the session ends at the auth service (by the cookie, or the access
 * token), and the cookie is cleared. Signed out only once the service says so. */
export async function logout(): Promise<Problem | undefined> {
  return navigator.locks.request(LOCK, async () => {
    const token = accessToken();
    const { error, response } = await auth.POST(
      "/v1/auth/logout",
      token ? { headers: { authorization: `Bearer ${token}` } } : {},
    );
    if (response.status !== 204) return error;
    forget(true);
    return undefined;
  });
}

/** End every session of the user, this one included. Signed out only once the service
 * says so; an expired token is refreshed first. */
export async function logoutEverywhere(): Promise<Problem | undefined> {
  const call = () =>
    auth.POST("/v1/auth/logout-all", { headers: { authorization: `Bearer ${accessToken() ?? ""}` } });
  let outcome = await call();
  if (outcome.response.status === 401 && outcome.error?.code === "TOKEN_EXPIRED") {
    if (!(await refresh())) return undefined;
    outcome = await call();
  }
  if (outcome.response.status !== 204) return outcome.error;
  // The cookie's session ended with the others; logging out with it clears the cookie.
  await navigator.locks.request(LOCK, async () => {
    await auth.POST("/v1/auth/logout", {});
    forget(true);
  });
  return undefined;
}

/** The session ended elsewhere (a call answered TOKEN_REVOKED): show it signed out here. */
export function ended(): void {
  forget(true);
}

export { auth };
