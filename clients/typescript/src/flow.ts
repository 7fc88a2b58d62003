// The whole user flow, driven through clients generated from the services' OpenAPI
// documents (openapi-typescript types, openapi-fetch calls): signup, login, todos with ETag
// and Idempotency-Key, pages, refresh, logout, a second factor (TOTP: enrol, confirm, the
// login's challenge, a recovery code), and errors read as typed problems.
//
//   AUTH_URL=http://127.0.0.1:8080 TODO_URL=http://127.0.0.1:8081 npm run flow

import createClient, { type Middleware } from "openapi-fetch";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";

import type { components as AuthSchemas, paths as AuthPaths } from "../generated/auth.js";
import type { components as TodoSchemas, paths as TodoPaths } from "../generated/todo.js";

type Problem = TodoSchemas["schemas"]["Problem"];
type TokenPair = AuthSchemas["schemas"]["TokenPair"];
type LoginResult = AuthSchemas["schemas"]["LoginResult"];
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

/** The tokens of a login; this flow's accounts have no second factor, so a challenge
 * (`mfa_required`) instead fails the flow, saying so. */
function tokens(result: LoginResult | undefined, error: unknown): TokenPair {
  assert.ok(result, `login failed: ${JSON.stringify(error)}`);
  if (!("access_token" in result)) {
    assert.fail(`login answered an unexpected MFA challenge (methods: ${result.methods.join(", ")})`);
  }
  return result;
}

/** RFC 6238 (SHA-1, 6 digits, 30 s): the code of time step `step` for a base32 secret. */
function totp(secret: string, step: number): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "").toUpperCase()) {
    const value = alphabet.indexOf(c);
    assert.ok(value >= 0, `a base32 secret: ${secret}`);
    bits += value.toString(2).padStart(5, "0");
  }
  const key = Buffer.from((bits.match(/.{8}/g) ?? []).map((byte) => parseInt(byte, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

/** The `amr` claim of an access token (its payload read, not verified). */
function amr(token: string): unknown {
  const payload = token.split(".")[1] ?? "";
  return (JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { amr?: unknown }).amr;
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
  pair = tokens(data, error);
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
  const { data, error } = await auth.POST("/v1/auth/login", { body: { email, password } });
  accessToken = tokens(data, error).access_token;
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

step("a second factor: enrol TOTP, confirm it, and login asks for a code");
{
  const { data, error } = await auth.POST("/v1/auth/login", { body: { email, password } });
  accessToken = tokens(data, error).access_token;
  assert.deepEqual(amr(accessToken), ["pwd"]);
  const headers = { authorization: `Bearer ${accessToken}` };
  const enrolled = await auth.POST("/v1/users/me/mfa/totp", { headers, body: { current_password: password } });
  assert.equal(enrolled.response.status, 200, JSON.stringify(enrolled.error));
  assert.ok(enrolled.data);
  const { secret, otpauth_uri: uri, qr_png: qr } = enrolled.data;
  assert.ok(uri.startsWith("otpauth://totp/"), uri);
  assert.ok(Buffer.from(qr, "base64").subarray(1, 4).equals(Buffer.from("PNG")), "a PNG");
  // A code is good once: each one used is of a later time step than the last.
  let last = Math.floor(Date.now() / 30_000);
  const wrong = await auth.POST("/v1/users/me/mfa/totp/confirm", {
    headers,
    body: { code: totp(secret, last + 5) },
  });
  const invalid = problem(wrong.error, wrong.response, 422, "VALIDATION_FAILED");
  assert.equal(invalid.errors?.[0]?.field, "code");
  const confirmed = await auth.POST("/v1/users/me/mfa/totp/confirm", {
    headers,
    body: { code: totp(secret, last) },
  });
  assert.ok(confirmed.data, JSON.stringify(confirmed.error));
  const recovery = confirmed.data.recovery_codes;
  assert.equal(recovery.length, 10);
  const me = await auth.GET("/v1/users/me", { headers });
  assert.equal(me.data?.mfa_enabled, true);
  const again = await auth.POST("/v1/users/me/mfa/totp", { headers, body: { current_password: password } });
  problem(again.error, again.response, 409, "CONFLICT");

  const login = async (): Promise<string> => {
    const answer = await auth.POST("/v1/auth/login", { body: { email, password } });
    assert.ok(answer.data, JSON.stringify(answer.error));
    assert.ok(!("access_token" in answer.data), "a challenge, no tokens");
    assert.equal(answer.data.mfa_required, true);
    assert.deepEqual([...answer.data.methods].sort(), ["recovery_code", "totp"]);
    return answer.data.mfa_token;
  };
  let challenge = await login();
  const refused = await auth.POST("/v1/auth/mfa", {
    body: { mfa_token: challenge, code: "000000" },
  });
  problem(refused.error, refused.response, 401, "MFA_CODE_INVALID");
  last += 1;
  const passed = await auth.POST("/v1/auth/mfa", {
    body: { mfa_token: challenge, code: totp(secret, last) },
  });
  assert.ok(passed.data, JSON.stringify(passed.error));
  assert.ok(passed.data.refresh_token, "body delivery, as the login asked");
  assert.deepEqual(amr(passed.data.access_token), ["pwd", "otp", "mfa"]);

  step("a recovery code completes a login once, and removes the factor");
  challenge = await login();
  const [code, other] = recovery;
  assert.ok(code && other);
  const recovered = await auth.POST("/v1/auth/mfa", { body: { mfa_token: challenge, code } });
  assert.ok(recovered.data, JSON.stringify(recovered.error));
  assert.deepEqual(amr(recovered.data.access_token), ["pwd", "mfa"]);
  const spent = await auth.POST("/v1/auth/mfa", { body: { mfa_token: await login(), code } });
  problem(spent.error, spent.response, 401, "MFA_CODE_INVALID");
  const current = { authorization: `Bearer ${recovered.data.access_token}` };
  const remove = () => auth.DELETE("/v1/users/me/mfa/totp", { headers: current, body: { code: other } });
  const removed = await remove();
  assert.equal(removed.response.status, 204, JSON.stringify(removed.error));
  const none = await remove();
  problem(none.error, none.response, 404, "NOT_FOUND");
  const plain = await auth.POST("/v1/auth/login", { body: { email, password } });
  assert.deepEqual(amr(tokens(plain.data, plain.error).access_token), ["pwd"]);
}

step("done");
