// The account's recovery in a real browser (Debian's Chromium, driven by playwright-core),
// reading the mails the auth service sends from the stack's SMTP sink: signup mails a
// verification link (and "Resend" another), following it in another browser verifies the
// address (a link the first one spent is refused); "Forgot password?" mails a reset link
// (with the same answer as for an unknown address), following it sets a new password (a
// refused one first, shown by its field), every session ends, the old password is refused and
// the new one logs in, a mail tells of the change, and the link does not work twice; changing
// the address mails the new one a link that, followed, makes it the account's.
//
//   SPA_URL=... AUTH_URL=... MAILDIR=... node e2e/recovery.e2e.mjs
//   (deploy/dev e2e runs it)
//
// Screenshots of each step go to SCREENSHOTS (.dev/reports/spa by default), named recovery-*.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { launchChromium, reporter } from "./browser.mjs";

const SPA = process.env.SPA_URL ?? "http://127.0.0.1:5173";
const AUTH = process.env.AUTH_URL ?? "http://127.0.0.1:8080";
const SHOTS = process.env.SCREENSHOTS ?? ".dev/reports/spa";
/** The SMTP sink's maildir (every mail a file in `new/`); the end-to-end stack's by default. */
const MAILDIR = process.env.MAILDIR ?? fileURLToPath(new URL("../../../.dev/mail_e2e", import.meta.url));
/** How long a mail may take to arrive (the service sends from an outbox). */
const MAIL_WAIT_MS = 15_000;

const browser = await launchChromium();
const { say, shot } = reporter("recovery", SHOTS);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A mail file: its headers (lower-case names, unfolded) and its text body, decoded. */
function parseMail(raw) {
  const split = raw.search(/\r?\n\r?\n/);
  const head = raw.slice(0, split).replace(/\r?\n[ \t]+/g, " ");
  const headers = {};
  for (const line of head.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = raw.slice(split).replace(/^\r?\n\r?\n/, "");
  if ((headers["content-transfer-encoding"] ?? "").toLowerCase() === "quoted-printable") {
    const bytes = body
      .replace(/=\r?\n/g, "")
      .replace(/=([0-9A-Fa-f]{2})/g, (_, hex) => String.fromCharCode(parseInt(hex, 16)));
    body = Buffer.from(bytes, "latin1").toString("utf8");
  } else if ((headers["content-transfer-encoding"] ?? "").toLowerCase() === "base64") {
    body = Buffer.from(body.replace(/\s+/g, ""), "base64").toString("utf8");
  }
  // multipart/alternative (text and HTML): the text part, with the mail's own headers.
  const boundary = (headers["content-type"] ?? "").match(/boundary="?([^";]+)"?/)?.[1];
  if (boundary) {
    const parts = body.split(`--${boundary}`).slice(1, -1).map((part) => parseMail(part.replace(/^\r?\n/, "")));
    const text = parts.find((part) => (part.headers["content-type"] ?? "").startsWith("text/plain"));
    assert.ok(text, "a text/plain part");
    return { headers, body: text.body };
  }
  return { headers, body };
}

/** The mail files already read, so that each is found once. */
const taken = new Set();

/** The next mail to `to` with `subject` (polling the maildir up to MAIL_WAIT_MS). */
async function mailTo(to, subject) {
  const started = Date.now();
  for (;;) {
    for (const sub of ["new", "cur"]) {
      let names = [];
      try {
        names = readdirSync(`${MAILDIR}/${sub}`).sort();
      } catch {
        continue;
      }
      for (const name of names) {
        const file = `${MAILDIR}/${sub}/${name}`;
        if (taken.has(name)) continue;
        let mail;
        try {
          mail = parseMail(readFileSync(file, "utf8"));
        } catch {
          continue; // being written, or moved meanwhile
        }
        const rcpt = (mail.headers["x-rcptto"] ?? "").toLowerCase();
        if (!rcpt.split(",").some((r) => r.trim() === to.toLowerCase())) continue;
        if (mail.headers.subject !== subject) continue;
        taken.add(name);
        return mail;
      }
    }
    assert.ok(Date.now() - started < MAIL_WAIT_MS, `no mail "${subject}" to ${to} within ${MAIL_WAIT_MS} ms`);
    await sleep(200);
  }
}

/** The link in a mail to the SPA with `#<fragment>=<token>`. */
function linkIn(mail, fragment) {
  const match = mail.body.match(new RegExp(`(\\S+)/#${fragment}=([A-Za-z0-9_-]+)`));
  assert.ok(match, `a #${fragment} link in:\n${mail.body}`);
  assert.equal(match[1], SPA.replace(/\/$/, ""), "the link points to the SPA");
  return `${match[1]}/#${fragment}=${match[2]}`;
}

/** A page that fails on any script error. */
async function open(context, failures, url = SPA) {
  const page = await context.newPage();
  page.on("pageerror", (err) => failures.push(String(err)));
  await page.goto(url);
  return page;
}

async function login(page, email, password) {
  await page.getByTestId("login-email").fill(email);
  await page.getByTestId("login-password").fill(password);
  await page.getByTestId("login").click();
  await page.getByTestId("signed-in").waitFor();
}

/** The fragment is gone from the address (the token is not kept in the history). */
async function noFragment(page) {
  await page.waitForFunction(() => location.hash === "");
  assert.equal(new URL(page.url()).hash, "");
}

const loginStatus = async (email, password) =>
  (
    await fetch(`${AUTH}/v1/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email, password }),
    })
  ).status;

const failures = [];
try {
  const stamp = `${Date.now()}-${process.pid}`;
  const email = `recovery-${stamp}@example.com`;
  const password = "the first of two passwords";
  const newPassword = "the second, after a reset";

  say("sign up: the address is not verified yet; a second verification mail on request");
  const first = await browser.newContext();
  const page = await open(first, failures);
  await page.getByTestId("signed-out").waitFor();
  await page.getByTestId("signup-email").fill(email);
  await page.getByTestId("signup-password").fill(password);
  await page.getByTestId("signup").click();
  await page.getByTestId("signed-in").waitFor();
  const status = page.getByTestId("email-status");
  await status.getByText("not verified").waitFor();
  assert.equal(await status.getAttribute("data-verified"), "false");
  const signupMail = await mailTo(email, "Confirm your email address");
  await page.getByTestId("resend-verification").click();
  await page.getByTestId("notice").filter({ hasText: /\S/ }).waitFor();
  await shot(page, "not-verified");
  const resentMail = await mailTo(email, "Confirm your email address");
  const verifyLink = linkIn(signupMail, "verify-email");
  const resentLink = linkIn(resentMail, "verify-email");
  assert.notEqual(verifyLink, resentLink, "a new link");

  say("the link, opened in another browser, verifies the address; logged in there, it shows");
  const second = await browser.newContext();
  const linked = await open(second, failures, verifyLink);
  await linked.getByTestId("notice").getByText("Email verified").waitFor();
  await noFragment(linked);
  await shot(linked, "verified");
  await login(linked, email, password);
  await linked.getByTestId("email-status").getByText(`${email}: verified`).waitFor();
  assert.equal(await linked.getByTestId("email-status").getAttribute("data-verified"), "true");
  assert.equal(await linked.getByTestId("resend-verification").isHidden(), true);

  say("the resent link was spent with it; opened into the first tab, it is refused");
  await page.goto(resentLink);
  await page.getByTestId("problem").getByText("invalid, used or expired").waitFor();
  await page.getByTestId("problem").getByText("VERIFY_TOKEN_INVALID").waitFor();
  await noFragment(page);
  await page.reload();
  await page.getByTestId("email-status").getByText(`${email}: verified`).waitFor();
  assert.equal(await page.getByTestId("problem").textContent(), "");

  say("forgot password: the answer's message, the same as for an unknown address");
  await linked.getByTestId("logout").click();
  await linked.getByTestId("signed-out").waitFor();
  await linked.getByTestId("forgot-email").fill(email);
  await linked.getByTestId("forgot-submit").click();
  const answered = linked.getByTestId("notice").filter({ hasText: /\S/ });
  await answered.waitFor();
  const unknown = await fetch(`${AUTH}/v1/auth/password-reset`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: `nobody-${stamp}@example.com` }),
  });
  assert.equal(unknown.status, 202);
  assert.equal(await answered.textContent(), (await unknown.json()).message);
  await shot(linked, "reset-asked");

  say("the reset link: a refused password is shown by its field, and the link still works");
  const resetLink = linkIn(await mailTo(email, "Reset your password"), "reset-password");
  const reset = await open(second, failures, resetLink);
  await reset.getByTestId("reset").waitFor();
  await reset.getByTestId("reset-password").fill("password");
  await reset.getByTestId("reset-submit").click();
  await reset.getByTestId("problem").getByText("new_password:").waitFor();
  await shot(reset, "reset-refused");
  assert.equal(new URL(reset.url()).hash.startsWith("#reset-password="), true, "the link stays");

  say("a new password: every session ends, the old password is refused, the new one logs in");
  await reset.getByTestId("reset-password").fill(newPassword);
  await reset.getByTestId("reset-submit").click();
  await reset.getByTestId("notice").getByText("password is changed").waitFor();
  await reset.getByTestId("reset").waitFor({ state: "hidden" });
  await noFragment(reset);
  assert.equal(await reset.getByTestId("problem").textContent(), "");
  await shot(reset, "reset-done");
  await mailTo(email, "Your password was changed");
  assert.equal(await page.evaluate(() => window.authsvc.refresh()), false, "the signup's session ended");
  await page.getByTestId("signed-out").waitFor();
  assert.equal(await loginStatus(email, password), 401, "the old password is refused");
  await login(reset, email, newPassword);
  await reset.getByTestId("email-status").getByText(`${email}: verified`).waitFor();
  await shot(reset, "new-password");

  say("the reset link does not work twice");
  const again = await open(second, failures, resetLink);
  await again.getByTestId("reset").waitFor();
  await again.getByTestId("reset-password").fill("a third password, too late");
  await again.getByTestId("reset-submit").click();
  await again.getByTestId("problem").getByText("This reset link is invalid, used or expired").waitFor();
  await again.getByTestId("problem").getByText("RESET_TOKEN_INVALID").waitFor();
  await again.getByTestId("reset").waitFor({ state: "hidden" });
  await noFragment(again);
  await shot(again, "reset-reused");
  assert.equal(await loginStatus(email, "a third password, too late"), 401);
  await again.close();

  say("a new address: its link, opened into the tab, makes it the account's, verified");
  const newEmail = `recovery-new-${stamp}@example.com`;
  await reset.getByTestId("new-email").fill(newEmail);
  await reset.getByTestId("email-password").fill(newPassword);
  await reset.getByTestId("change-email").click();
  await reset.getByTestId("notice").filter({ hasText: /\S/ }).waitFor();
  await mailTo(email, "Your email address is being changed");
  const changeLink = linkIn(await mailTo(newEmail, "Confirm your new email address"), "verify-email");
  await reset.goto(changeLink);
  await reset.getByTestId("notice").getByText("Email verified").waitFor();
  await reset.getByTestId("email-status").getByText(`${newEmail}: verified`).waitFor();
  await noFragment(reset);
  await shot(reset, "email-changed");
  assert.equal(await loginStatus(newEmail, newPassword), 200, "the new address logs in");

  await first.close();
  await second.close();
  assert.deepEqual(failures, [], "no errors in the pages");
  say("done");
} catch (err) {
  for (const [i, p] of browser.contexts().flatMap((c) => c.pages()).entries()) {
    await p.screenshot({ path: `${SHOTS}/recovery-failure-${i}.png` }).catch(() => {});
  }
  throw err;
} finally {
  await browser.close();
}
