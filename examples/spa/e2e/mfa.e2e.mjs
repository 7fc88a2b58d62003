// A second factor in a real browser (Debian's Chromium, driven by playwright-core), the test
// being the authenticator app (RFC 6238 computed here from the secret the page shows): sign up,
// set up the app (QR code and secret; a wrong first code refused by its field, the right one
// answers ten recovery codes, and another device's session ends); log out, and logging in asks
// for a code (no cookie yet): a wrong one is refused, the right one logs in with amr
// ["pwd","otp","mfa"] (kept across a reload's refresh); a recovery code logs in with ["pwd","mfa"], once;
// five refused codes send the login back to the password form; turning the factor off takes a
// fresh code (a wrong one refused), and login asks for none again.
//
//   SPA_URL=... AUTH_URL=... TODO_URL=... node e2e/mfa.e2e.mjs
//   (deploy/dev e2e runs it)
//
// Screenshots of each step go to SCREENSHOTS (.dev/reports/spa by default), named mfa-*.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { launchChromium, reporter } from "./browser.mjs";

const SPA = process.env.SPA_URL ?? "http://127.0.0.1:5173";
const AUTH = process.env.AUTH_URL ?? "http://127.0.0.1:8080";
const TODO = process.env.TODO_URL ?? "http://127.0.0.1:8081";
const SHOTS = process.env.SCREENSHOTS ?? ".dev/reports/spa";
const REFRESH = `${AUTH}/v1/auth/refresh`;
/** How many codes a login's challenge takes (the auth service's rule). */
const CHALLENGE_TRIES = 5;

const browser = await launchChromium();
const { say, shot } = reporter("mfa", SHOTS);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- the authenticator app: RFC 6238 (SHA-1, 6 digits, 30 s steps), RFC 4648 base32 --------

const PERIOD_MS = 30_000;

function base32(secret) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "").toUpperCase()) {
    const value = alphabet.indexOf(c);
    assert.ok(value >= 0, `a base32 secret: ${secret}`);
    bits += value.toString(2).padStart(5, "0");
  }
  return Buffer.from((bits.match(/.{8}/g) ?? []).map((byte) => parseInt(byte, 2)));
}

/** The code of time step `counter` (RFC 4226's HOTP of it). */
function totp(secret, counter) {
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac("sha1", base32(secret)).update(message).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

const stepNow = () => Math.floor(Date.now() / PERIOD_MS);

/** The RFC's own test vector (Appendix B, SHA-1, T = 59 s), cut to six digits. */
assert.equal(totp("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 1), "287082");

/** A code the app would use, of a time step later than the last one accepted (a code is good
 * once: its step must be later than the last accepted, and the service takes the previous,
 * current and next step). `next`: the next step's code (the current one may be spent),
 * waiting for the clock when that is not later than the last. */
class App {
  constructor(secret) {
    this.secret = secret;
    this.last = -Infinity;
  }

  async code({ next = false } = {}) {
    for (;;) {
      const now = stepNow();
      const counter = [next ? null : now, now + 1].find((c) => c !== null && c > this.last);
      if (counter !== undefined) {
        this.last = counter;
        return totp(this.secret, counter);
      }
      await sleep(PERIOD_MS - (Date.now() % PERIOD_MS) + 50);
    }
  }

  /** Six digits no step near now has. */
  wrong() {
    const near = new Set([-1, 0, 1, 2].map((d) => totp(this.secret, stepNow() + d)));
    let n = 123456;
    while (near.has(String(n))) n += 1;
    return String(n);
  }
}

// --- the page ------------------------------------------------------------------------------

/** The `amr` claim of an `Authorization: Bearer <jwt>` header (its payload read). */
function amrOf(authorization) {
  const payload = authorization.replace(/^Bearer /, "").split(".")[1];
  return JSON.parse(Buffer.from(payload, "base64url").toString("utf8")).amr;
}

/** The `amr` of the access token the page sends to the TODO service (its list reloaded). */
async function amrSent(page) {
  const [request] = await Promise.all([
    page.waitForRequest((r) => r.url().startsWith(TODO) && r.method() === "GET" && !!r.headers().authorization),
    page.getByTestId("reload").click(),
  ]);
  return amrOf(request.headers().authorization);
}

/** A page that fails on any script error. */
async function open(context, failures) {
  const page = await context.newPage();
  page.on("pageerror", (err) => failures.push(String(err)));
  await page.goto(SPA);
  return page;
}

/** Log in with the password; `challenge`: expect the code form instead of a session. */
async function passwordLogin(page, email, password, challenge) {
  await page.getByTestId("login-email").fill(email);
  await page.getByTestId("login-password").fill(password);
  await page.getByTestId("login").click();
  if (challenge) {
    await page.getByTestId("mfa-form").waitFor();
    assert.equal(await page.locator("#login-form").isHidden(), true, "the password form gives way");
    assert.equal(await page.getByTestId("login-password").inputValue(), "", "and keeps no password");
  } else {
    await page.getByTestId("signed-in").waitFor();
  }
}

async function enterCode(page, code) {
  await page.getByTestId("mfa-code").fill(code);
  await page.getByTestId("mfa-submit").click();
}

async function logout(page) {
  await page.getByTestId("logout").click();
  await page.getByTestId("signed-out").waitFor();
}

const refreshCookie = async (context) => (await context.cookies(REFRESH))[0];
const problemText = (page) => page.getByTestId("problem").textContent();

const failures = [];
try {
  const email = `mfa-${Date.now()}-${process.pid}@example.com`;
  const password = "two factors beat one";
  const context = await browser.newContext();
  const page = await open(context, failures);
  await page.getByTestId("signed-out").waitFor();

  say("sign up: two-factor authentication is off");
  await page.getByTestId("signup-email").fill(email);
  await page.getByTestId("signup-password").fill(password);
  await page.getByTestId("signup").click();
  await page.getByTestId("signed-in").waitFor();
  const status = page.getByTestId("mfa-status");
  await page.locator('[data-testid="mfa-status"][data-enabled="false"]').waitFor();
  assert.match(await status.textContent(), /Off/);
  assert.equal(await page.getByTestId("mfa-off").isHidden(), true);
  assert.deepEqual(await amrSent(page), ["pwd"]);

  say("another device logs in (its session ends when the factor is turned on)");
  const other = await browser.newContext();
  const device = await open(other, failures);
  await passwordLogin(device, email, password, false);

  say("set up the app: a QR code and the secret; a wrong first code is refused by its field");
  await page.getByTestId("mfa-setup-password").fill(password);
  await page.getByTestId("mfa-setup").click();
  await page.getByTestId("mfa-enrol").waitFor();
  assert.equal(await page.getByTestId("mfa-setup").isHidden(), true);
  const qr = page.getByTestId("mfa-qr");
  assert.match(await qr.getAttribute("src"), /^data:image\/png;base64,[A-Za-z0-9+/]+=*$/);
  await page.waitForFunction(() => {
    const img = document.getElementById("mfa-qr");
    return img instanceof HTMLImageElement && img.complete && img.naturalWidth > 0;
  });
  const secret = (await page.getByTestId("mfa-secret").textContent()).trim();
  assert.match(secret, /^[A-Z2-7]{16,}=*$/, "a base32 secret");
  const app = new App(secret);
  await page.getByTestId("mfa-confirm-code").fill(app.wrong());
  await page.getByTestId("mfa-confirm").click();
  await page.getByTestId("problem").getByText("code: INVALID").waitFor();
  assert.equal(await page.getByTestId("mfa-enrol").isVisible(), true, "still asking");
  await shot(page, "enrol");

  say("the right code turns it on: ten recovery codes, shown once; the other device is out");
  await page.getByTestId("mfa-confirm-code").fill(await app.code());
  await page.getByTestId("mfa-confirm").click();
  await page.getByTestId("mfa-recovery").waitFor();
  const recovery = await page.getByTestId("mfa-recovery-code").allTextContents();
  assert.equal(recovery.length, 10);
  for (const code of recovery) assert.match(code, /^[a-z0-9]{4}(-[a-z0-9]{4}){3}$/, code);
  assert.equal(new Set(recovery).size, 10);
  await page.locator('[data-testid="mfa-status"][data-enabled="true"]').waitFor();
  assert.equal(await page.getByTestId("mfa-enrol").isHidden(), true);
  assert.equal(await page.getByTestId("mfa-off").isVisible(), true);
  assert.equal(await problemText(page), "");
  await shot(page, "recovery-codes");
  await page.getByTestId("mfa-recovery-done").click();
  assert.equal(await page.getByTestId("mfa-recovery-code").count(), 0, "gone from the page");
  // This session goes on (its token still works at the TODO service); the other one ended.
  assert.deepEqual(await amrSent(page), ["pwd"]);
  assert.equal(await problemText(page), "");
  assert.equal(await device.evaluate(() => window.authsvc.refresh()), false, "the other device's session ended");
  await device.getByTestId("signed-out").waitFor();
  await other.close();

  say("log out; the password alone gets a code form, not a session (no cookie)");
  await logout(page);
  const cookieBefore = (await refreshCookie(context))?.value;
  await passwordLogin(page, email, password, true);
  await page.getByText("Code from your authenticator app (or a recovery code)").waitFor();
  assert.equal((await refreshCookie(context))?.value, cookieBefore, "no cookie from the password alone");
  assert.equal(await page.evaluate(() => window.authsvc.hasToken()), false);
  assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0);
  await shot(page, "code-form");

  say("a wrong code is refused and shown; the form stays");
  await enterCode(page, app.wrong());
  await page.getByTestId("problem").getByText("MFA_CODE_INVALID").waitFor();
  assert.equal(await page.getByTestId("mfa-form").isVisible(), true);
  await shot(page, "wrong-code");

  say('the right code logs in: a cookie session, amr ["pwd","otp","mfa"], kept across a reload');
  await enterCode(page, await app.code());
  await page.getByTestId("signed-in").waitFor();
  assert.equal(await problemText(page), "");
  const cookie = await refreshCookie(context);
  assert.ok(cookie && cookie.httpOnly && cookie.value !== cookieBefore, "a new HttpOnly refresh cookie");
  assert.deepEqual(await amrSent(page), ["pwd", "otp", "mfa"]);
  await page.reload();
  await page.getByTestId("signed-in").waitFor();
  assert.deepEqual(await amrSent(page), ["pwd", "otp", "mfa"], "the refreshed token keeps its amr");
  await page.locator('[data-testid="mfa-status"][data-enabled="true"]').waitFor();
  await shot(page, "signed-in-otp");

  say('a recovery code logs in instead: amr ["pwd","mfa"]');
  await logout(page);
  await passwordLogin(page, email, password, true);
  await enterCode(page, recovery[0]);
  await page.getByTestId("signed-in").waitFor();
  assert.deepEqual(await amrSent(page), ["pwd", "mfa"]);

  say(`the used recovery code is refused; after ${CHALLENGE_TRIES} refused codes, back to the password`);
  await logout(page);
  await passwordLogin(page, email, password, true);
  for (let i = 0; i < CHALLENGE_TRIES; i++) {
    const answered = page.waitForResponse((r) => r.url() === `${AUTH}/v1/auth/mfa` && r.request().method() === "POST");
    await enterCode(page, i === 0 ? recovery[0] : app.wrong());
    assert.equal((await answered).status(), 401);
    // Shown afresh each time (the problem clears when the form is sent).
    await page.getByTestId("problem").getByText("MFA_CODE_INVALID").waitFor();
    if (i < CHALLENGE_TRIES - 1) assert.equal(await page.getByTestId("mfa-form").isVisible(), true);
  }
  await page.locator("#login-form").waitFor();
  assert.equal(await page.getByTestId("mfa-form").isHidden(), true);
  await page.getByTestId("problem").getByText("log in with your password again").waitFor();
  await shot(page, "challenge-spent");

  say("turn it off: a wrong code is refused; a fresh one (the next step's) turns it off");
  await passwordLogin(page, email, password, true);
  await enterCode(page, await app.code());
  await page.getByTestId("signed-in").waitFor();
  assert.deepEqual(await amrSent(page), ["pwd", "otp", "mfa"]);
  await page.getByTestId("mfa-off-code").fill(app.wrong());
  await page.getByTestId("mfa-off-submit").click();
  await page.getByTestId("problem").getByText("code: INVALID").waitFor();
  await page.locator('[data-testid="mfa-status"][data-enabled="true"]').waitFor();
  await page.getByTestId("mfa-off-code").fill(await app.code({ next: true }));
  await page.getByTestId("mfa-off-submit").click();
  await page.locator('[data-testid="mfa-status"][data-enabled="false"]').waitFor();
  assert.equal(await page.getByTestId("mfa-setup").isVisible(), true);
  assert.equal(await page.getByTestId("mfa-off").isHidden(), true);
  assert.equal(await problemText(page), "");
  await shot(page, "turned-off");

  say('log in without a code again: amr ["pwd"]');
  await logout(page);
  await passwordLogin(page, email, password, false);
  assert.deepEqual(await amrSent(page), ["pwd"]);
  assert.equal(await page.getByTestId("mfa-form").isHidden(), true);
  await shot(page, "password-only");

  await context.close();
  assert.deepEqual(failures, [], "no errors in the pages");
  say("done");
} catch (err) {
  for (const [i, p] of browser.contexts().flatMap((c) => c.pages()).entries()) {
    await p.screenshot({ path: `${SHOTS}/mfa-failure-${i}.png` }).catch(() => {});
  }
  throw err;
} finally {
  await browser.close();
}
