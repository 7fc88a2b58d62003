// The whole user flow, driven through clients generated from the services' OpenAPI
// documents (openapi-typescript types, openapi-fetch calls): signup, login, todos with ETag
// and Idempotency-Key, pages, refresh, logout, and errors read as typed problems.
//
//   AUTH_URL=http://127.0.0.1:8080 TODO_URL=http://127.0.0.1:8081 npm run flow

import createClient, { type Middleware } from "openapi-fetch";
import assert from "node:assert/strict";

import type { components as AuthSchemas, paths as AuthPaths } from "../generated/auth.js";
import type { components as TodoSchemas, paths as TodoPaths } from "../generated/todo.js";

type Problem = TodoSchemas["schemas"]["Problem"];
type TokenPair = AuthSchemas["schemas"]["TokenPair"];
type Todo = TodoSchemas["schemas"]["Todo"];

const authUrl = process.env.AUTH_URL ?? "http://127.0.0.1:8080";
const todoUrl = process.env.TODO_URL ?? "http://127.0.0.1:8081";

const auth = createClient<AuthPaths>({ baseUrl: authUrl });
const todo = createClient<TodoPaths>({ baseUrl: todoUrl });

let accessToken = "";
const bearer: Middleware = {
  onRequest({ request }) {
    request.headers.set("authorization", `Bearer ${accessToken}`);
    return request;
  },
};
todo.use(bearer);

function step(name: string): void {
  console.log(`typescript: ${name}`);
}

/** The problem of a failed call, typed, with its status. */
function problem(error: Problem | undefined, response: Response, status: number, code: string): Problem {
  assert.equal(response.status, status, JSON.stringify(error));
  assert.ok(error, "a problem body");
  assert.equal(error.code, code);
  assert.equal(error.status, status);
  return error;
}

const email = `ts-${Date.now()}-${process.pid}@example.com`;
const password = "typed clients all the way";

step("a weak password is a 422 naming the field");
{
  const { error, response } = await auth.POST("/v1/auth/signup", {
    body: { email, password: "password" },
  });
  const p = problem(error, response, 422, "VALIDATION_FAILED");
  assert.equal(p.errors?.[0]?.field, "password");
}

step("signup and login");
{
  const { data, response } = await auth.POST("/v1/auth/signup", {
    body: { email, password, display_name: null },
  });
  assert.equal(response.status, 201);
  assert.equal(data?.email, email);
  assert.equal(data?.display_name, null);
}
let pair: TokenPair;
{
  const { data, error } = await auth.POST("/v1/auth/login", { body: { email, password } });
  assert.ok(data, JSON.stringify(error));
  pair = data;
  accessToken = pair.access_token;
  assert.equal(pair.token_type, "Bearer");
  assert.ok(pair.refresh_token);
}

step("create with an Idempotency-Key, and replay it");
const body = { title: "Buy milk", description: null, due_at: "2030-01-01T09:00:00Z" };
let first: Todo;
{
  const { data, response } = await todo.POST("/v1/todos", {
    body,
    params: { header: { "Idempotency-Key": `milk-${email}` } },
  });
  assert.equal(response.status, 201);
  assert.ok(data);
  first = data;
  assert.equal(response.headers.get("location"), `/v1/todos/${first.id}`);
  assert.equal(response.headers.get("etag"), `"${first.version}"`);
  const again = await todo.POST("/v1/todos", {
    body,
    params: { header: { "Idempotency-Key": `milk-${email}` } },
  });
  assert.equal(again.response.headers.get("idempotent-replayed"), "true");
  assert.equal(again.data?.id, first.id);
}

step("pages of one");
{
  for (const title of ["Bread", "Eggs"]) {
    const { response } = await todo.POST("/v1/todos", { body: { title } });
    assert.equal(response.status, 201);
  }
  const titles: string[] = [];
  let cursor: string | undefined;
  do {
    const query: TodoPaths["/v1/todos"]["get"]["parameters"]["query"] = { limit: 1 };
    if (cursor !== undefined) query.cursor = cursor;
    const { data, error } = await todo.GET("/v1/todos", { params: { query } });
    assert.ok(data, JSON.stringify(error));
    titles.push(...data.items.map((t) => t.title));
    cursor = data.next_cursor ?? undefined;
  } while (cursor !== undefined);
  assert.deepEqual(titles, ["Buy milk", "Bread", "Eggs"]);
}

step("read with its ETag, change with If-Match, a stale one is 412");
{
  const path = { id: first.id };
  const { data, response } = await todo.GET("/v1/todos/{id}", { params: { path } });
  assert.ok(data);
  const etag = response.headers.get("etag");
  assert.ok(etag);
  const done = await todo.PATCH("/v1/todos/{id}", {
    params: { path, header: { "If-Match": etag } },
    body: { done: true, due_at: null },
  });
  assert.equal(done.data?.done, true);
  assert.equal(done.data?.due_at, null);
  const stale = await todo.PATCH("/v1/todos/{id}", {
    params: { path, header: { "If-Match": etag } },
    body: { title: "Buy oat milk" },
  });
  problem(stale.error, stale.response, 412, "PRECONDITION_FAILED");
  const gone = await todo.DELETE("/v1/todos/{id}", { params: { path } });
  assert.equal(gone.response.status, 204);
  const missing = await todo.GET("/v1/todos/{id}", { params: { path } });
  problem(missing.error, missing.response, 404, "NOT_FOUND");
}

step("refresh rotates; the spent token is reuse");
{
  const spent = pair.refresh_token;
  assert.ok(spent);
  const { data, error } = await auth.POST("/v1/auth/refresh", { body: { refresh_token: spent } });
  assert.ok(data, JSON.stringify(error));
  assert.notEqual(data.refresh_token, spent);
  accessToken = data.access_token;
  const reused = await auth.POST("/v1/auth/refresh", { body: { refresh_token: spent } });
  problem(reused.error, reused.response, 401, "REFRESH_TOKEN_REUSED");
}

step("log in again, log out, and the TODO service refuses the token within a second");
{
  const { data } = await auth.POST("/v1/auth/login", { body: { email, password } });
  assert.ok(data);
  accessToken = data.access_token;
  const ok = await todo.GET("/v1/todos", {});
  assert.equal(ok.response.status, 200);
  const out = await auth.POST("/v1/auth/logout", {
    headers: { authorization: `Bearer ${accessToken}` },
  });
  assert.equal(out.response.status, 204);
  const started = Date.now();
  for (;;) {
    const { error, response } = await todo.GET("/v1/todos", {});
    if (response.status === 401) {
      problem(error, response, 401, "TOKEN_REVOKED");
      break;
    }
    assert.ok(Date.now() - started < 1000, "refused within a second");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

step("done");
