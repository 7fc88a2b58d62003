// Calls to the TODO service through the generated client, with the access token from memory.
// A call answered 401 TOKEN_EXPIRED waits for the one refresh in flight and is made again,
// once; concurrent ones share that refresh.

import createClient from "openapi-fetch";

import type { components, paths } from "../../../clients/typescript/generated/todo";
import { config } from "./config";
import { accessToken, refresh } from "./session";

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

/** Make `call`; on 401 TOKEN_EXPIRED refresh (once, shared) and make it again. */
export async function withFreshToken<T>(call: () => Promise<Outcome<T>>): Promise<Outcome<T>> {
  const first = await call();
  if (first.response.status !== 401 || first.error?.code !== "TOKEN_EXPIRED") return first;
  return (await refresh()) ? call() : first;
}
