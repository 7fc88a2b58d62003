// The whole user flow, driven through clients generated from the services' OpenAPI
// documents (openapi-typescript types, openapi-fetch calls): signup, login, todos with ETag
// and Idempotency-Key, pages, refresh, logout, a second factor (TOTP: enrol, confirm, the
// login's challenge, a recovery code), a passkey (a software authenticator here: added, then
// logging in alone and answering a password login's challenge, removed), and errors read as
// typed problems.
//
//   AUTH_URL=http://127.0.0.1:8080 TODO_URL=http://127.0.0.1:8081 \
//   WEBAUTHN_ORIGIN=http://localhost:5173 npm run flow

import createClient, { type Middleware } from "openapi-fetch";
import assert from "node:assert/strict";
import { createHash, createHmac, generateKeyPairSync, randomBytes, sign } from "node:crypto";

import type { components as AuthSchemas, paths as AuthPaths } from "../generated/auth.js";
import type { components as TodoSchemas, paths as TodoPaths } from "../generated/todo.js";

type Problem = TodoSchemas["schemas"]["Problem"];
type TokenPair = AuthSchemas["schemas"]["TokenPair"];
type LoginResult = AuthSchemas["schemas"]["LoginResult"];
type Todo = TodoSchemas["schemas"]["Todo"];

const authUrl = process.env.AUTH_URL ?? "http://127.0.0.1:8080";
/** The origin the service takes passkey ceremonies from (the SPA's). */
const webauthnOrigin = process.env.WEBAUTHN_ORIGIN ?? "http://localhost:5173";
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

// --- a passkey, with a software authenticator (P-256, attestation "none") -----------------

/** The CBOR (RFC 8949) of unsigned and negative integers, byte and text strings and maps. */
function cbor(value: number | Buffer | string | Map<number | string, unknown>): Buffer {
  const head = (major: number, n: number): Buffer =>
    n < 24
      ? Buffer.from([(major << 5) | n])
      : n < 256
        ? Buffer.from([(major << 5) | 24, n])
        : Buffer.from([(major << 5) | 25, n >> 8, n & 255]);
  if (typeof value === "number") return value >= 0 ? head(0, value) : head(1, -1 - value);
  if (typeof value === "string") return Buffer.concat([head(3, Buffer.byteLength(value)), Buffer.from(value)]);
  if (Buffer.isBuffer(value)) return Buffer.concat([head(2, value.length), value]);
  const entries = [...value].flatMap(([k, v]) => [cbor(k), cbor(v as Parameters<typeof cbor>[0])]);
  return Buffer.concat([head(5, value.size), ...entries]);
}

type Options = { publicKey: Record<string, any> };

/** A platform authenticator with one credential, verifying its user. */
class Authenticator {
  private readonly keys = generateKeyPairSync("ec", { namedCurve: "P-256" });
  private readonly id = randomBytes(16);
  private userHandle = Buffer.alloc(0);
  private counter = 0;

  private clientData(type: string, options: Options): Buffer {
    const { challenge } = options.publicKey;
    return Buffer.from(JSON.stringify({ type, challenge, origin: webauthnOrigin, crossOrigin: false }));
  }

  private authData(rpId: string, flags: number, attested: Buffer = Buffer.alloc(0)): Buffer {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(this.counter);
    const rpHash = createHash("sha256").update(rpId).digest();
    return Buffer.concat([rpHash, Buffer.from([flags]), counter, attested]);
  }

  /** A `PublicKeyCredential`'s JSON form around an authenticator's `response`. */
  private credential(response: Record<string, string>): Record<string, unknown> {
    const id = this.id.toString("base64url");
    return { id, rawId: id, type: "public-key", response, clientExtensionResults: {} };
  }

  create(options: Options): Record<string, unknown> {
    const { rp, user } = options.publicKey;
    this.userHandle = Buffer.from(user.id, "base64url");
    const jwk = this.keys.publicKey.export({ format: "jwk" });
    const cose = cbor(
      new Map<number, unknown>([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, Buffer.from(jwk.x ?? "", "base64url")],
        [-3, Buffer.from(jwk.y ?? "", "base64url")],
      ]),
    );
    const length = Buffer.alloc(2);
    length.writeUInt16BE(this.id.length);
    const attested = Buffer.concat([Buffer.alloc(16), length, this.id, cose]);
    const authData = this.authData(rp.id, 0x01 | 0x04 | 0x40, attested);
    const attestation = cbor(
      new Map<string, unknown>([
        ["fmt", "none"],
        ["attStmt", new Map()],
        ["authData", authData],
      ]),
    );
    return this.credential({
      attestationObject: attestation.toString("base64url"),
      clientDataJSON: this.clientData("webauthn.create", options).toString("base64url"),
    });
  }

  get(options: Options, rpId: string): Record<string, unknown> {
    this.counter += 1;
    const authData = this.authData(rpId, 0x01 | 0x04);
    const clientData = this.clientData("webauthn.get", options);
    const signed = Buffer.concat([authData, createHash("sha256").update(clientData).digest()]);
    return this.credential({
      authenticatorData: authData.toString("base64url"),
      clientDataJSON: clientData.toString("base64url"),
      signature: sign("sha256", signed, this.keys.privateKey).toString("base64url"),
      userHandle: this.userHandle.toString("base64url"),
    });
  }
}

step("a passkey: added with the password, then logging in alone and answering a challenge");
{
  const { data, error } = await auth.POST("/v1/auth/login", { body: { email, password } });
  const headers = { authorization: `Bearer ${tokens(data, error).access_token}` };
  const authenticator = new Authenticator();
  const started = await auth.POST("/v1/users/me/passkeys/register/start", {
    headers,
    body: { current_password: password },
  });
  assert.ok(started.data, JSON.stringify(started.error));
  const creation = started.data.options as Options;
  const rpId: string = creation.publicKey.rp.id;
  const finished = await auth.POST("/v1/users/me/passkeys/register/finish", {
    headers,
    body: {
      challenge_id: started.data.challenge_id,
      name: "flow key",
      credential: authenticator.create(creation),
    },
  });
  assert.equal(finished.response.status, 201, JSON.stringify(finished.error));
  assert.equal(finished.data?.passkey.name, "flow key");
  assert.equal(finished.data?.recovery_codes?.length, 10, "the first factor brings recovery codes");
  const listed = await auth.GET("/v1/users/me/passkeys", { headers });
  assert.deepEqual(listed.data?.items.map((p) => p.name), ["flow key"]);

  const passkeyLogin = async (mfaToken?: string) => {
    const start = await auth.POST("/v1/auth/passkey/start", { body: mfaToken ? { mfa_token: mfaToken } : {} });
    assert.ok(start.data, JSON.stringify(start.error));
    return auth.POST("/v1/auth/passkey/finish", {
      body: {
        challenge_id: start.data.challenge_id,
        credential: authenticator.get(start.data.options as Options, rpId),
      },
    });
  };
  const alone = await passkeyLogin();
  assert.ok(alone.data, JSON.stringify(alone.error));
  assert.deepEqual(amr(alone.data.access_token), ["pop", "mfa"]);

  const challenged = await auth.POST("/v1/auth/login", { body: { email, password } });
  assert.ok(challenged.data && !("access_token" in challenged.data), "a challenge, no tokens");
  assert.deepEqual(challenged.data.methods, ["passkey", "recovery_code"]);
  const second = await passkeyLogin(challenged.data.mfa_token);
  assert.ok(second.data, JSON.stringify(second.error));
  assert.deepEqual(amr(second.data.access_token), ["pwd", "pop", "mfa"]);

  const id = listed.data?.items[0]?.id ?? "";
  const removed = await auth.DELETE("/v1/users/me/passkeys/{id}", {
    params: { path: { id } },
    headers: { authorization: `Bearer ${second.data.access_token}` },
    body: { current_password: password },
  });
  assert.equal(removed.response.status, 204, JSON.stringify(removed.error));
  const refused = await passkeyLogin();
  problem(refused.error, refused.response, 401, "INVALID_CREDENTIALS");
}

step("done");
