// The session of a browser app: the access token lives in this tab's memory only (never in
// localStorage or a cookie the page can read); the refresh token is an HttpOnly cookie the
// page never sees, sent only to the auth routes that read it.
//
// Refreshing is single-flight twice over: within a tab, concurrent callers share one
// promise; across tabs, a Web Lock lets one tab refresh while the others wait, and the
// winner hands its new access token to them over a BroadcastChannel, so that one refresh
// serves every tab (two tabs presenting the same refresh token would be reuse, which ends
// the session). A refresh is scheduled shortly before the token expires, and happens at
// once when an API call answers 401 TOKEN_EXPIRED.

import createClient from "openapi-fetch";

import type { components, paths } from "../../../clients/typescript/generated/auth";
import { config } from "./config";

type TokenPair = components["schemas"]["TokenPair"];

export type Listener = (signedIn: boolean) => void;

const auth = createClient<paths>({ baseUrl: config.authUrl, credentials: "include" });
const channel = new BroadcastChannel("authsvc-session");

let access: { token: string; expiresAt: number } | null = null;
/** Bumped whenever the token changes, here or from another tab. */
let generation = 0;
let inFlight: Promise<boolean> | null = null;
let timer: ReturnType<typeof setTimeout> | undefined;
const listeners: Listener[] = [];

/** Refresh this long before expiry. */
const EARLY_MS = 15_000;

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
  access = { token, expiresAt: Date.now() + expiresIn * 1000 };
  generation += 1;
  clearTimeout(timer);
  timer = setTimeout(() => void refresh(), Math.max(1000, expiresIn * 1000 - EARLY_MS));
  if (announce) channel.postMessage({ type: "token", token, expiresIn });
  notify();
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

/** A new access token from the cookie; false when there is no session (any more). */
export function refresh(): Promise<boolean> {
  inFlight ??= refreshAcrossTabs().finally(() => {
    inFlight = null;
  });
  return inFlight;
}

async function refreshAcrossTabs(): Promise<boolean> {
  const asked = generation;
  return navigator.locks.request("authsvc-refresh", async () => {
    // Another tab refreshed while this one waited: its token came over the channel.
    if (generation !== asked && access !== null) return true;
    const { data, response } = await auth.POST("/v1/auth/refresh", {});
    if (data) {
      adopt(data.access_token, data.expires_in, true);
      return true;
    }
    if (response.status === 401 || response.status === 403) forget(true);
    return false;
  });
}

export function signedIn(pair: TokenPair): void {
  adopt(pair.access_token, pair.expires_in, true);
}

/** Log out this device: the session ends at the auth service, and the cookie is cleared. */
export async function logout(): Promise<void> {
  const token = accessToken();
  await auth.POST("/v1/auth/logout", token ? { headers: { authorization: `Bearer ${token}` } } : {});
  forget(true);
}

/** End every session of the user, this one included. */
export async function logoutEverywhere(): Promise<void> {
  const token = accessToken();
  if (token) await auth.POST("/v1/auth/logout-all", { headers: { authorization: `Bearer ${token}` } });
  await auth.POST("/v1/auth/logout", {});
  forget(true);
}

export { auth };
