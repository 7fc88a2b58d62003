// Calls to the TODO service through the generated client, with the access token from memory.
// A call answered 401 TOKEN_EXPIRED is made again, once, with a new token: the one another
// call got meanwhile, or the one refresh in flight (shared by every caller). A call answered
// TOKEN_REVOKED means the session ended elsewhere.

import createClient from "openapi-fetch";

import type { components, paths } from "../../../clients/typescript/generated/todo";
import { config } from "./config";
import { accessToken, ended, refresh } from "./session";

export type Todo = components["schemas"]["Todo"];
export type Problem = components["schemas"]["Problem"];

export const todos = createClient<paths>({ baseUrl: config.todoUrl });
todos.use({
  onRequest({ request }) {
    const token = accessToken();
    if (token) request.headers.set("authorization", `Bearer ${token}`);
    return request;
  },
});

/** The outcome of a call: data, or the problem the service answered with. */
export interface Outcome<T> {
  data?: T | undefined;
  error?: Problem | undefined;
  response: Response;
}

/** Make `call`; on 401 TOKEN_EXPIRED make it again with a new token. */
export async function withFreshToken<T>(call: () => Promise<Outcome<T>>): Promise<Outcome<T>> {
  const used = accessToken();
  const first = await call();
  if (first.response.status === 401 && first.error?.code === "TOKEN_REVOKED") ended();
  if (first.response.status !== 401 || first.error?.code !== "TOKEN_EXPIRED") return first;
  // Another call may have brought a new token already; else wait for the shared refresh.
  if (accessToken() !== used || (await refresh())) return call();
  return first;
}
