// The page: signup, login, the todo list (create, edit with If-Match, done, delete), the
// sessions, logout here and everywhere; and the account's recovery: whether the email address
// is verified (and a new verification mail), "forgot password", changing the address, and the
// links the auth service mails (`#verify-email=<token>`, `#reset-password=<token>`); and a
// second factor: a login that answers a challenge asks for a code from the authenticator app
// (or a recovery code), and, signed in, the app is set up (QR code, secret, a first code, the
// recovery codes shown once) or turned off; and passkeys: added (named), listed and removed,
// logging in without a password, or answering a password login's challenge. Every failure
// shows the problem's `code` and, for validation errors, each field's.

import type { components as AuthSchemas } from "../../../clients/typescript/generated/auth";
import { type Outcome, type Problem, type Todo, todos, withFreshToken } from "./api";
import * as session from "./session";
import * as webauthn from "./webauthn";

type MfaChallenge = AuthSchemas["schemas"]["MfaChallenge"];
type MfaStatus = AuthSchemas["schemas"]["MfaStatus"];
type Passkey = AuthSchemas["schemas"]["Passkey"];

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`no #${id}`);
  return el as T;
};

function showProblem(problem: Problem | undefined, status?: number): void {
  if (!problem) {
    $("problem").textContent = status ? `Something went wrong (${status}).` : "";
    return;
  }
  const fields = (problem.errors ?? []).map((e) => `${e.field}: ${e.code} (${e.message})`);
  $("problem").textContent = [`${problem.code}: ${problem.detail}`, ...fields].join("\n");
}

/** What went right, for humans (a mailed link sent, an address verified, ...). */
function notice(message: string): void {
  $("notice").textContent = message;
}

function clearProblem(): void {
  $("problem").textContent = "";
  $("notice").textContent = "";
}

/** Show the problem of a failed outcome; true when the call succeeded. A success clears
 * nothing: a user action clears the last problem when it starts. */
function ok<T>(outcome: Outcome<T>): outcome is Outcome<T> & { data: T } {
  if (outcome.response.ok) return true;
  showProblem(outcome.error as Problem | undefined, outcome.response.status);
  return false;
}

/** A user action: the last problem (and notice) goes when it starts; a network failure is
 * shown. */
function action(run: () => Promise<void>): () => void {
  return () => {
    clearProblem();
    run().catch((err: unknown) => {
      $("problem").textContent = webauthn.cancelled(err)
        ? "The passkey prompt was cancelled or timed out."
        : `The service could not be reached (${String(err)}).`;
    });
  };
}

function render(signedIn: boolean): void {
  $("signed-in").hidden = !signedIn;
  $("signed-out").hidden = signedIn;
  if (signedIn) {
    // Signed in (here, or in another tab): a pending challenge is moot.
    if (challenge !== null) showChallenge(null);
    void loadTodos();
    void loadSessions();
  } else {
    $("who").textContent = "";
    $("email-status").textContent = "";
    $("resend-verification").hidden = true;
    $("todos").replaceChildren();
    $("sessions").replaceChildren();
    resetMfaSettings();
  }
}

async function loadTodos(): Promise<void> {
  const outcome = await withFreshToken(() => todos.GET("/v1/todos", { params: { query: { limit: 100 } } }));
  if (!ok(outcome)) return;
  $("todos").replaceChildren(...outcome.data.items.map(todoItem));
}

function todoItem(todo: Todo): HTMLLIElement {
  const li = document.createElement("li");
  li.dataset.testid = "todo";
  li.classList.toggle("done", todo.done);
  const done = document.createElement("input");
  done.type = "checkbox";
  done.checked = todo.done;
  done.dataset.testid = "todo-done";
  done.onchange = action(() => patch(todo, { done: done.checked }));
  const title = document.createElement("span");
  title.textContent = todo.title;
  title.dataset.testid = "todo-title";
  const edit = button(
    "Edit",
    "todo-edit",
    action(async () => {
      const next = prompt("Title", todo.title);
      if (next !== null) await patch(todo, { title: next });
    }),
  );
  const remove = button("Delete", "todo-delete", action(() => removeTodo(todo)));
  li.append(done, title, edit, remove);
  return li;
}

function button(label: string, testid: string, onclick: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.textContent = label;
  b.dataset.testid = testid;
  b.onclick = onclick;
  return b;
}

/** Change a todo, but only from the version shown (If-Match): a change made meanwhile
 * elsewhere is a 412, shown, and the list reloaded. */
async function patch(todo: Todo, body: { title?: string; done?: boolean }): Promise<void> {
  const outcome = await withFreshToken(() =>
    todos.PATCH("/v1/todos/{id}", {
      params: { path: { id: todo.id }, header: { "If-Match": `"${todo.version}"` } },
      body,
    }),
  );
  ok(outcome);
  await loadTodos();
}

async function removeTodo(todo: Todo): Promise<void> {
  const outcome = await withFreshToken(() =>
    todos.DELETE("/v1/todos/{id}", {
      params: { path: { id: todo.id }, header: { "If-Match": `"${todo.version}"` } },
    }),
  );
  ok(outcome);
  await loadTodos();
}

async function loadSessions(): Promise<void> {
  const token = session.accessToken();
  if (!token) return;
  const outcome = await withFreshToken(() =>
    session.auth.GET("/v1/auth/sessions", {
      headers: { authorization: `Bearer ${session.accessToken()}` },
    }),
  );
  if (!ok(outcome)) return;
  $("sessions").replaceChildren(
    ...outcome.data.items.map((s) => {
      const li = document.createElement("li");
      li.dataset.testid = "session";
      li.textContent = `${s.user_agent ?? "unknown device"} · ${s.ip ?? "?"} · since ${s.created_at}${s.current ? " (this device)" : ""}`;
      return li;
    }),
  );
  await loadMe();
}

/** The bearer header of the auth service's own routes (read when the call is made). */
function bearer(): { authorization: string } {
  return { authorization: `Bearer ${session.accessToken() ?? ""}` };
}

/** Who is signed in, and whether their address is verified (if not: a button for a new
 * verification mail). */
async function loadMe(): Promise<void> {
  const me = await withFreshToken(() => session.auth.GET("/v1/users/me", { headers: bearer() }));
  if (!me.data) return;
  const { email, email_verified: verified } = me.data;
  $("who").textContent = me.data.display_name ?? email;
  const status = $("email-status");
  status.textContent = verified
    ? `${email}: verified`
    : `${email}: not verified yet (open the link in the mail sent to it)`;
  status.dataset.verified = String(verified);
  status.classList.toggle("unverified", !verified);
  $("resend-verification").hidden = verified;
  const [factors, keys] = await Promise.all([
    withFreshToken(() => session.auth.GET("/v1/users/me/mfa", { headers: bearer() })),
    withFreshToken(() => session.auth.GET("/v1/users/me/passkeys", { headers: bearer() })),
  ]);
  if (factors.data) showMfaSettings(me.data.mfa_enabled, factors.data);
  if (keys.data) showPasskeys(keys.data.items);
}

function onSubmit(id: string, run: (form: HTMLFormElement) => Promise<void>): void {
  $<HTMLFormElement>(id).onsubmit = (event) => {
    event.preventDefault();
    action(() => run(event.target as HTMLFormElement))();
  };
}

onSubmit("signup-form", async (form) => {
  const fields = new FormData(form);
  const name = String(fields.get("display_name") ?? "").trim();
  const email = String(fields.get("email"));
  const password = String(fields.get("password"));
  const signup = await session.auth.POST("/v1/auth/signup", {
    body: { email, password, display_name: name === "" ? null : name },
  });
  if (ok(signup)) await login(email, password);
});

onSubmit("login-form", async (form) => {
  const fields = new FormData(form);
  await login(String(fields.get("email")), String(fields.get("password")));
});

/** Log in; an account with a second factor answers a challenge instead of tokens, and the
 * code form is shown. */
async function login(email: string, password: string): Promise<void> {
  const outcome = await session.auth.POST("/v1/auth/login", {
    body: { email, password, refresh_delivery: "cookie" },
  });
  if (!ok(outcome)) return;
  if ("access_token" in outcome.data) session.signedIn(outcome.data);
  else showChallenge(outcome.data);
}

// The second factor at login. The auth service answers a wrong code, a used one, and any code
// for a challenge that expired or ran out of tries alike (401 MFA_CODE_INVALID): the page
// counts, and once the challenge can take no more codes it goes back to the password form.

/** How long a challenge lasts, and how many codes it takes (the auth service's rules). */
const CHALLENGE_MS = 5 * 60_000;
const CHALLENGE_TRIES = 5;

/** The login waiting for its second factor: in this tab's memory only, like the token. */
let challenge: { token: string; expiresAt: number; triesLeft: number } | null = null;

/** A login's tokens: signed in, the challenge (if any) done. */
function loggedIn(pair: Parameters<typeof session.signedIn>[0]): void {
  showChallenge(null);
  session.signedIn(pair);
}

/** Ask for the code of `next` (instead of the password forms), or stop asking. */
function showChallenge(next: MfaChallenge | null): void {
  challenge = next && {
    token: next.mfa_token,
    expiresAt: Date.now() + CHALLENGE_MS,
    triesLeft: CHALLENGE_TRIES,
  };
  const asking = challenge !== null;
  const form = $<HTMLFormElement>("mfa-form");
  form.reset();
  form.hidden = !asking;
  $("mfa-passkey").hidden = !next?.methods.includes("passkey") || !webauthn.supported();
  for (const id of ["login-form", "signup-form", "forgot-form"]) $(id).hidden = asking;
  if (!asking) return;
  // The password did its part: it does not stay in the page (the address does).
  const typed = $("login-form").querySelector<HTMLInputElement>('[name="password"]');
  if (typed) typed.value = "";
  $("mfa-code").focus();
}

onSubmit("mfa-form", async (form) => {
  const current = challenge;
  if (current === null) return;
  const code = String(new FormData(form).get("code")).trim();
  // Delivered as the login asked: the refresh token in the HttpOnly cookie.
  const outcome = await session.auth.POST("/v1/auth/mfa", { body: { mfa_token: current.token, code } });
  if (outcome.data) {
    loggedIn(outcome.data);
    return;
  }
  refused(outcome);
});

/** A code or passkey the challenge did not take: one try fewer; none left, back to the
 * password. */
function refused(outcome: Outcome<unknown>): void {
  const current = challenge;
  showProblem(outcome.error as Problem | undefined, outcome.response.status);
  if (current === null) return;
  if (outcome.response.status !== 401 || outcome.error?.code !== "MFA_CODE_INVALID") return;
  current.triesLeft -= 1;
  if (current.triesLeft > 0 && Date.now() < current.expiresAt) {
    $<HTMLFormElement>("mfa-form").reset();
    $("mfa-code").focus();
    return;
  }
  showChallenge(null);
  $("problem").append("\nThis login can take no more codes (too many, or too late): log in with your password again.");
}

// Passkeys at login: on their own (the browser offers this site's passkeys; the answer names
// the user), or as the second step of a password login (that user's passkeys only). Either
// way the refresh token comes in the HttpOnly cookie, as with the password.

/** Start a passkey ceremony, let the browser answer it, finish it: the finish's outcome. */
async function passkeyLogin(mfaToken: string | null) {
  const start = await session.auth.POST("/v1/auth/passkey/start", {
    body: mfaToken === null ? { refresh_delivery: "cookie" } : { mfa_token: mfaToken },
  });
  if (!start.data) return start;
  const credential = await webauthn.get(start.data.options);
  return session.auth.POST("/v1/auth/passkey/finish", {
    body: { challenge_id: start.data.challenge_id, credential },
  });
}

$("passkey-login").hidden = !webauthn.supported();
$("passkey-login").onclick = action(async () => {
  const outcome = await passkeyLogin(null);
  if (ok(outcome) && "access_token" in outcome.data) loggedIn(outcome.data);
});

$("mfa-passkey").onclick = action(async () => {
  const current = challenge;
  if (current === null) return;
  let outcome;
  try {
    outcome = await passkeyLogin(current.token);
  } catch (err) {
    // The start took one of the challenge's tries.
    current.triesLeft -= 1;
    throw err;
  }
  if (outcome.data && "access_token" in outcome.data) loggedIn(outcome.data);
  else refused(outcome);
});

$("mfa-cancel").onclick = action(async () => showChallenge(null));

// The second factor, signed in: set up the authenticator app (its secret as a QR code and
// in base32; confirmed with a first code, which answers the recovery codes, shown once), or
// turn it off with a code. Either revokes the account's other sessions.

/** The section as the account has it (the enrolment and the recovery codes, while shown,
 * stay). */
function showMfaSettings(enabled: boolean, factors: MfaStatus): void {
  const status = $("mfa-status");
  const what = [
    ...(factors.totp ? ["a code from your authenticator app"] : []),
    ...(factors.passkeys > 0 ? [`one of your passkeys (${factors.passkeys})`] : []),
  ];
  status.textContent = enabled
    ? `On: logging in with your password asks for ${what.join(" or ")}. Recovery codes left: ${factors.recovery_codes_left}.`
    : "Off: logging in asks for your password only.";
  status.dataset.enabled = String(enabled);
  if (factors.totp) hideEnrolment();
  $("mfa-setup-form").hidden = factors.totp || !$("mfa-enrol-form").hidden;
  $("mfa-off-form").hidden = !factors.totp;
}

/** The account's passkeys, each with a button that removes it. */
function showPasskeys(keys: Passkey[]): void {
  $("passkeys").replaceChildren(
    ...keys.map((key) => {
      const li = document.createElement("li");
      li.dataset.testid = "passkey";
      li.textContent = `${key.name} · added ${key.created_at} · ${key.last_used_at ? `last used ${key.last_used_at}` : "not used yet"} `;
      // Its own password field: typing the password to add a passkey arms no Remove button.
      const password = document.createElement("input");
      password.type = "password";
      password.autocomplete = "off";
      password.placeholder = "your password, to remove it";
      password.dataset.testid = "passkey-remove-password";
      li.append(password, button("Remove", "passkey-remove", action(() => removePasskey(key, password))));
      return li;
    }),
  );
  $("passkey-add-form").hidden = !webauthn.supported();
}

/** The recovery codes, shown once. */
function showRecoveryCodes(codes: string[]): void {
  $("mfa-recovery-codes").replaceChildren(
    ...codes.map((recovery) => {
      const li = document.createElement("li");
      li.dataset.testid = "mfa-recovery-code";
      li.textContent = recovery;
      return li;
    }),
  );
  $("mfa-recovery").hidden = false;
}

// A passkey is added or removed with the password (always: a passkey logs in on its own); the
// first second factor brings the recovery codes. Adding or removing one logs out the other
// sessions.
onSubmit("passkey-add-form", async (form) => {
  const fields = new FormData(form);
  const typed = String(fields.get("current_password") ?? "");
  const name = String(fields.get("name") ?? "").trim();
  const start = await withFreshToken(() =>
    session.auth.POST("/v1/users/me/passkeys/register/start", {
      headers: bearer(),
      body: { current_password: typed },
    }),
  );
  if (!ok(start)) return;
  const credential = await webauthn.create(start.data.options);
  const finish = await withFreshToken(() =>
    session.auth.POST("/v1/users/me/passkeys/register/finish", {
      headers: bearer(),
      body: { challenge_id: start.data.challenge_id, name: name === "" ? null : name, credential },
    }),
  );
  if (!ok(finish)) return;
  form.reset();
  if (finish.data.recovery_codes) showRecoveryCodes(finish.data.recovery_codes);
  notice(`Passkey "${finish.data.passkey.name}" added; your other sessions were logged out.`);
  await loadSessions();
});

async function removePasskey(key: Passkey, typed: HTMLInputElement): Promise<void> {
  const password = typed.value;
  const outcome = await withFreshToken(() =>
    session.auth.DELETE("/v1/users/me/passkeys/{id}", {
      params: { path: { id: key.id } },
      headers: bearer(),
      body: { current_password: password },
    }),
  );
  typed.value = "";
  if (!ok(outcome)) return;
  notice(`Passkey "${key.name}" removed; your other sessions were logged out.`);
  await loadSessions();
}

function hideEnrolment(): void {
  $<HTMLFormElement>("mfa-enrol-form").reset();
  $("mfa-enrol-form").hidden = true;
  $("mfa-qr").removeAttribute("src");
  $("mfa-secret").textContent = "";
}

function hideRecoveryCodes(): void {
  $("mfa-recovery").hidden = true;
  $("mfa-recovery-codes").replaceChildren();
}

/** Signed out: nothing of the account's second factor stays on the page. */
function resetMfaSettings(): void {
  hideEnrolment();
  hideRecoveryCodes();
  $<HTMLFormElement>("mfa-off-form").reset();
  $("mfa-off-form").hidden = true;
  $("mfa-setup-form").hidden = true;
  $("mfa-status").textContent = "";
  delete $("mfa-status").dataset.enabled;
  $("passkeys").replaceChildren();
}

// Enrolling needs a recent login or the password: a token of an old session alone cannot
// add an authenticator.
onSubmit("mfa-setup-form", async (form) => {
  const typed = String(new FormData(form).get("current_password") ?? "");
  // A recent login is enough; the password otherwise (the service says which: 403).
  const body = typed ? { current_password: typed } : {};
  const outcome = await withFreshToken(() =>
    session.auth.POST("/v1/users/me/mfa/totp", { headers: bearer(), body }),
  );
  form.reset();
  if (!ok(outcome)) {
    if (outcome.response.status === 409) await loadMe(); // turned on meanwhile (another tab)
    return;
  }
  $<HTMLImageElement>("mfa-qr").src = `data:image/png;base64,${outcome.data.qr_png}`;
  $("mfa-secret").textContent = outcome.data.secret;
  $("mfa-enrol-form").hidden = false;
  $("mfa-setup-form").hidden = true;
  $("mfa-enrol-form").querySelector("input")?.focus();
});

onSubmit("mfa-enrol-form", async (form) => {
  const code = String(new FormData(form).get("code")).trim();
  const outcome = await withFreshToken(() =>
    session.auth.POST("/v1/users/me/mfa/totp/confirm", { headers: bearer(), body: { code } }),
  );
  if (!ok(outcome)) return;
  hideEnrolment();
  showRecoveryCodes(outcome.data.recovery_codes);
  notice("Two-factor authentication is on; your other sessions were logged out.");
  await loadSessions();
});

$("mfa-recovery-done").onclick = action(async () => hideRecoveryCodes());

onSubmit("mfa-off-form", async (form) => {
  const code = String(new FormData(form).get("code")).trim();
  const outcome = await withFreshToken(() =>
    session.auth.DELETE("/v1/users/me/mfa/totp", { headers: bearer(), body: { code } }),
  );
  if (!ok(outcome)) {
    if (outcome.response.status === 404) await loadMe(); // turned off meanwhile
    return;
  }
  form.reset();
  hideRecoveryCodes();
  notice("Two-factor authentication is off; your other sessions were logged out.");
  await loadSessions();
});

onSubmit("todo-form", async (form) => {
  const title = String(new FormData(form).get("title"));
  const outcome = await withFreshToken(() => todos.POST("/v1/todos", { body: { title } }));
  if (ok(outcome)) form.reset();
  await loadTodos();
});

onSubmit("forgot-form", async (form) => {
  const email = String(new FormData(form).get("email"));
  // The same answer whether or not an account has the address.
  const outcome = await session.auth.POST("/v1/auth/password-reset", { body: { email } });
  if (!ok(outcome)) return;
  form.reset();
  notice(outcome.data.message);
});

onSubmit("email-form", async (form) => {
  const fields = new FormData(form);
  const body = {
    new_email: String(fields.get("new_email")),
    current_password: String(fields.get("current_password")),
  };
  const outcome = await withFreshToken(() =>
    session.auth.POST("/v1/users/me/email", { headers: bearer(), body }),
  );
  if (!ok(outcome)) return;
  form.reset();
  notice(outcome.data.message);
});

$("resend-verification").onclick = action(async () => {
  const outcome = await withFreshToken(() =>
    session.auth.POST("/v1/auth/verify-email/resend", { headers: bearer() }),
  );
  if (ok(outcome)) notice(outcome.data.message);
  else if (outcome.response.status === 409) await loadMe(); // verified meanwhile
});

// Links from the mails: the token is in the fragment, which the browser never sends to a
// server (nor in a Referer). A verification link is followed at once; a reset link asks for
// the new password first. The fragment goes once the token is spent, so that a reload or
// the history does not present it again.

/** The token of `#<name>=<token>` in the address, if that is the fragment (tokens are
 * base64url: nothing to decode). */
function linkToken(name: string): string | null {
  const prefix = `#${name}=`;
  return location.hash.startsWith(prefix) ? location.hash.slice(prefix.length) : null;
}

function dropFragment(): void {
  history.replaceState(history.state, "", location.pathname + location.search);
}

/** A link's token refused as unknown, used or expired (400): say so in words. */
function invalidLink(outcome: Outcome<unknown>, what: string, hint: string): void {
  if (outcome.response.status === 400 && outcome.error) {
    $("problem").textContent =
      `This ${what} link is invalid, used or expired. ${hint} (${outcome.error.code})`;
  } else {
    showProblem(outcome.error as Problem | undefined, outcome.response.status);
  }
}

/** The token of the reset link being followed, while its form is shown. */
let resetToken: string | null = null;

function showReset(token: string | null): void {
  resetToken = token;
  $("reset").hidden = token === null;
}

async function followLink(): Promise<void> {
  showReset(linkToken("reset-password"));
  if (resetToken !== null) $("reset-form").querySelector("input")?.focus();
  const verify = linkToken("verify-email");
  if (verify === null) return;
  dropFragment();
  const outcome = await session.auth.POST("/v1/auth/verify-email", { body: { token: verify } });
  if (outcome.response.status !== 204) {
    invalidLink(outcome, "verification", "Log in to have a new one sent.");
    return;
  }
  notice("Email verified.");
  // Signed in: show the account's address as verified (it may be a new one).
  if (session.accessToken()) await loadMe();
}

onSubmit("reset-form", async (form) => {
  if (resetToken === null) return;
  const body = { token: resetToken, new_password: String(new FormData(form).get("new_password")) };
  const outcome = await session.auth.POST("/v1/auth/password-reset/confirm", { body });
  const status = outcome.response.status;
  if (status !== 204 && status !== 400) {
    // A password the rules refuse (422, each field's message), or a refusal for now: the
    // link still works; try again.
    showProblem(outcome.error, status);
    return;
  }
  // Spent, or dead: either way the link is done with.
  form.reset();
  showReset(null);
  dropFragment();
  if (status === 400) {
    invalidLink(outcome, "reset", "Ask for a new one (\"Forgot password?\").");
    return;
  }
  notice("Your password is changed. Log in with the new one.");
  // Every session of the account ended: if this tab held one, it is signed out now.
  if (session.accessToken()) await session.refresh();
});

$("reload").onclick = action(loadTodos);
$("logout").onclick = action(async () => showProblem(await session.logout()));
$("logout-all").onclick = action(async () => showProblem(await session.logoutEverywhere()));

session.onChange(render);

// For the browser test: refresh on demand, and see what this tab holds.
declare global {
  interface Window {
    authsvc: { refresh: () => Promise<boolean>; hasToken: () => boolean };
  }
}
window.authsvc = { refresh: session.refresh, hasToken: () => session.accessToken() !== null };

// A session survives a reload through the cookie alone.
render(false);
action(async () => {
  await session.refresh();
})();
// A mailed link opened (in this tab, or into it while it is open).
action(followLink)();
window.addEventListener("hashchange", action(followLink));
