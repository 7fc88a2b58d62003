// Passkeys in a real browser (Debian's Chromium, driven by playwright-core), the authenticator
// being Chromium's virtual one (DevTools protocol `WebAuthn.addVirtualAuthenticator`: a
// platform authenticator that verifies the user and keeps discoverable credentials). Sign up;
// add a named passkey (with the password; the first factor brings ten recovery codes,
// and the credential is discoverable); log out and log in with the passkey alone (amr
// ["pop","mfa"], a cookie session kept across a reload); log in with the password, and the
// challenge is answered with the passkey (amr ["pwd","pop","mfa"]); remove the passkey (the
// factor goes off), and the authenticator's credential logs in no more.
//
// Passkeys need a domain, not an address: the page is opened as http://localhost:<port>.
//
//   SPA_URL=... AUTH_URL=... TODO_URL=... node e2e/passkey.e2e.mjs
//   (deploy/dev e2e runs it)
//
// Screenshots of each step go to SCREENSHOTS (.dev/reports/spa by default), named passkey-*.

import assert from "node:assert/strict";
import { launchChromium, reporter } from "./browser.mjs";

const named = (url) => {
  const u = new URL(url);
  if (u.hostname === "127.0.0.1") u.hostname = "localhost";
  return u.origin;
};
const SPA = named(process.env.SPA_URL ?? "http://127.0.0.1:5173");
const AUTH = named(process.env.AUTH_URL ?? "http://127.0.0.1:8080");
const TODO = named(process.env.TODO_URL ?? "http://127.0.0.1:8081");
const SHOTS = process.env.SCREENSHOTS ?? ".dev/reports/spa";
const REFRESH = `${AUTH}/v1/auth/refresh`;

const browser = await launchChromium();
const { say, shot } = reporter("passkey", SHOTS);

/** The `amr` of the access token the page sends to the TODO service (its list reloaded). */
async function amrSent(page) {
  const [request] = await Promise.all([
    page.waitForRequest((r) => r.url().startsWith(TODO) && r.method() === "GET" && !!r.headers().authorization),
    page.getByTestId("reload").click(),
  ]);
  const payload = request.headers().authorization.replace(/^Bearer /, "").split(".")[1];
  return JSON.parse(Buffer.from(payload, "base64url").toString("utf8")).amr;
}

async function logout(page) {
  await page.getByTestId("logout").click();
  await page.getByTestId("signed-out").waitFor();
}

const problemText = (page) => page.getByTestId("problem").textContent();

const failures = [];
try {
  const email = `passkey-${Date.now()}-${process.pid}@example.com`;
  const password = "a passkey beats a password";
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (err) => failures.push(String(err)));
  await page.goto(SPA);
  await page.getByTestId("signed-out").waitFor();

  // The authenticator: this page's, like a laptop's built-in one.
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  const credentials = async () => (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials;

  say("sign up, and add a passkey named 'This laptop' (with the password)");
  await page.getByTestId("signup-email").fill(email);
  await page.getByTestId("signup-password").fill(password);
  await page.getByTestId("signup").click();
  await page.getByTestId("signed-in").waitFor();
  await page.locator('[data-testid="mfa-status"][data-enabled="false"]').waitFor();
  assert.equal(await page.getByTestId("passkey").count(), 0);
  await page.getByTestId("passkey-name").fill("This laptop");
  await page.getByTestId("passkey-password").fill(password);
  await page.getByTestId("passkey-add").click();
  await page.getByTestId("mfa-recovery").waitFor();
  assert.equal(await page.getByTestId("mfa-recovery-code").count(), 10, "ten recovery codes, once");
  await page.locator('[data-testid="mfa-status"][data-enabled="true"]').waitFor();
  assert.match(await page.getByTestId("mfa-status").textContent(), /passkeys \(1\)/);
  await page.getByTestId("passkey").filter({ hasText: "This laptop" }).waitFor();
  assert.match(await page.getByTestId("passkey").textContent(), /not used yet/);
  assert.equal(await problemText(page), "");
  const [credential] = await credentials();
  assert.ok(credential, "the authenticator holds the passkey");
  assert.equal(credential.isResidentCredential, true, "discoverable: it logs in without a name");
  assert.equal(credential.rpId, "localhost");
  await shot(page, "added");
  await page.getByTestId("mfa-recovery-done").click();

  say('log out; the passkey alone logs in: amr ["pop","mfa"], a cookie session kept across a reload');
  await logout(page);
  await page.getByTestId("passkey-login").click();
  await page.getByTestId("signed-in").waitFor();
  assert.equal(await problemText(page), "");
  assert.deepEqual(await amrSent(page), ["pop", "mfa"]);
  const cookie = (await context.cookies(REFRESH))[0];
  assert.ok(cookie && cookie.httpOnly, "an HttpOnly refresh cookie");
  await page.reload();
  await page.getByTestId("signed-in").waitFor();
  assert.deepEqual(await amrSent(page), ["pop", "mfa"], "the refreshed token keeps its amr");
  await page.getByTestId("passkey").filter({ hasText: "last used" }).waitFor();
  assert.equal((await credentials())[0].signCount >= 1, true, "the authenticator signed");
  await shot(page, "passwordless");

  say('the password now asks for a second factor; the passkey answers it: amr ["pwd","pop","mfa"]');
  await logout(page);
  await page.getByTestId("login-email").fill(email);
  await page.getByTestId("login-password").fill(password);
  await page.getByTestId("login").click();
  await page.getByTestId("mfa-form").waitFor();
  assert.equal(await page.getByTestId("mfa-passkey").isVisible(), true, "the challenge offers the passkey");
  await shot(page, "challenge");
  await page.getByTestId("mfa-passkey").click();
  await page.getByTestId("signed-in").waitFor();
  assert.equal(await problemText(page), "");
  assert.deepEqual(await amrSent(page), ["pwd", "pop", "mfa"]);

  say("remove the passkey (with the password): the factor is off, and the authenticator's credential logs in no more");
  await page.getByTestId("passkey-remove-password").fill(password);
  await page.getByTestId("passkey-remove").click();
  await page.locator('[data-testid="mfa-status"][data-enabled="false"]').waitFor();
  assert.equal(await page.getByTestId("passkey").count(), 0);
  assert.equal(await problemText(page), "");
  await shot(page, "removed");
  await logout(page);
  await page.getByTestId("passkey-login").click();
  await page.getByTestId("problem").getByText("INVALID_CREDENTIALS").waitFor();
  assert.equal(await page.getByTestId("signed-out").isVisible(), true);
  await shot(page, "refused");

  say("the password alone logs in again");
  await page.getByTestId("login-email").fill(email);
  await page.getByTestId("login-password").fill(password);
  await page.getByTestId("login").click();
  await page.getByTestId("signed-in").waitFor();
  assert.deepEqual(await amrSent(page), ["pwd"]);

  await context.close();
  assert.deepEqual(failures, [], "no errors in the page");
  say("done");
} catch (err) {
  for (const [i, p] of browser.contexts().flatMap((c) => c.pages()).entries()) {
    await p.screenshot({ path: `${SHOTS}/passkey-failure-${i}.png` }).catch(() => {});
  }
  throw err;
} finally {
  await browser.close();
}
