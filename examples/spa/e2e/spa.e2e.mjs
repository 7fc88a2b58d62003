// The SPA in a real browser (Debian's Chromium, driven by playwright-core): signup, todos,
// an access token expiring under concurrent calls (one refresh), a silent refresh, a reload
// (the session from the cookie alone), a second tab (one refresh serves both), a page on
// another origin failing to use the cookie, and logout in one tab ending the other's.
//
//   SPA_URL=... EVIL_URL=... AUTH_URL=... node e2e/spa.e2e.mjs   (deploy/dev e2e runs it)
//
// Screenshots of each step go to SCREENSHOTS (.dev/reports/spa by default).

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const SPA = process.env.SPA_URL ?? "http://127.0.0.1:5173";
const EVIL = process.env.EVIL_URL ?? "http://127.0.0.1:5174";
const AUTH = process.env.AUTH_URL ?? "http://127.0.0.1:8080";
const SHOTS = process.env.SCREENSHOTS ?? ".dev/reports/spa";
/** The stack's access-token lifetime (deploy/dev e2e: 60 s, no leeway). */
const TTL_MS = Number(process.env.ACCESS_TOKEN_TTL_SECS ?? 60) * 1000;
mkdirSync(SHOTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let step = 0;
const shot = (page, name) => page.screenshot({ path: `${SHOTS}/${String(++step).padStart(2, "0")}-${name}.png` });
const say = (line) => console.log(`spa: ${line}`);

try {
  const context = await browser.newContext();
  let refreshes = 0;
  const failures = [];
  context.on("response", (resp) => {
    const url = resp.url();
    if (url === `${AUTH}/v1/auth/refresh` && resp.request().method() === "POST") refreshes += 1;
  });
  const page = await context.newPage();
  page.on("pageerror", (err) => failures.push(String(err)));
  await page.clock.install();
  await page.goto(SPA);
  await page.getByTestId("signed-out").waitFor();

  say("sign up and log in; a weak password is shown by its code and field");
  const email = `spa-${Date.now()}@example.com`;
  await page.getByTestId("signup-email").fill(email);
  await page.getByTestId("signup-password").fill("password");
  await page.getByTestId("signup").click();
  await page.getByTestId("problem").getByText("password: BREACHED_PASSWORD").waitFor();
  await shot(page, "weak-password");
  await page.getByTestId("signup-password").fill("a browser keeps no secrets");
  await page.getByTestId("signup-name").fill("Browser Test");
  await page.getByTestId("signup").click();
  await page.getByTestId("signed-in").waitFor();
  await page.getByTestId("who").getByText("Browser Test").waitFor();

  say("create, edit (If-Match), mark done, delete");
  for (const title of ["Buy milk", "Walk the dog"]) {
    await page.getByTestId("new-title").fill(title);
    await page.getByTestId("add").click();
    await page.getByTestId("todo-title").getByText(title).waitFor();
  }
  page.once("dialog", (dialog) => dialog.accept("Buy oat milk"));
  await page.getByTestId("todo").filter({ hasText: "Buy milk" }).getByTestId("todo-edit").click();
  await page.getByTestId("todo-title").getByText("Buy oat milk").waitFor();
  await page.getByTestId("todo").filter({ hasText: "Buy oat milk" }).getByTestId("todo-done").check();
  await page.locator("li.done").getByText("Buy oat milk").waitFor();
  await page.getByTestId("todo").filter({ hasText: "Walk the dog" }).getByTestId("todo-delete").click();
  await page.getByTestId("todo-title").getByText("Walk the dog").waitFor({ state: "detached" });
  await shot(page, "todos");

  say(`the access token expires (${TTL_MS / 1000} s, timers held): two calls at once, one refresh`);
  await page.clock.pauseAt(Date.now() + 1000);
  const before = refreshes;
  await page.waitForTimeout(TTL_MS + 2000);
  await page.getByTestId("new-title").fill("After expiry");
  await Promise.all([page.getByTestId("add").click(), page.getByTestId("reload").click()]);
  await page.getByTestId("todo-title").getByText("After expiry").waitFor();
  assert.equal(refreshes - before, 1, "concurrent 401 TOKEN_EXPIRED answers share one refresh");
  assert.equal(await page.getByTestId("problem").textContent(), "");
  await shot(page, "after-expiry");

  say("a silent refresh shortly before the next expiry");
  await page.clock.resume();
  const silent = page.waitForResponse((r) => r.url() === `${AUTH}/v1/auth/refresh` && r.status() === 200);
  await page.clock.fastForward(TTL_MS);
  await silent;
  await page.getByTestId("reload").click();
  await page.getByTestId("todo-title").getByText("After expiry").waitFor();

  say("a reload restores the session from the cookie alone");
  await page.reload();
  await page.getByTestId("signed-in").waitFor();
  await page.getByTestId("todo-title").getByText("After expiry").waitFor();
  assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0, "no token in storage");
  await shot(page, "reloaded");

  say("a second tab: both work, and one refresh serves both");
  const tab = await context.newPage();
  tab.on("pageerror", (err) => failures.push(String(err)));
  await tab.goto(SPA);
  await tab.getByTestId("signed-in").waitFor();
  const both = refreshes;
  const [a, b] = await Promise.all([
    page.evaluate(() => window.authsvc.refresh()),
    tab.evaluate(() => window.authsvc.refresh()),
  ]);
  assert.ok(a && b, "both tabs hold a token");
  assert.equal(refreshes - both, 1, "one refresh for two tabs (the other got its token over the channel)");
  await tab.getByTestId("new-title").fill("From the second tab");
  await tab.getByTestId("add").click();
  await page.getByTestId("reload").click();
  await page.getByTestId("todo-title").getByText("From the second tab").waitFor();
  await shot(tab, "second-tab");

  say("a page on another origin cannot use the cookie");
  const evil = await context.newPage();
  await evil.goto(`${EVIL}/evil.html?auth=${encodeURIComponent(AUTH)}`);
  await evil.locator("#result").filter({ hasNotText: "pending" }).waitFor();
  const verdict = await evil.locator("#result").textContent();
  assert.ok(verdict === "blocked" || verdict === "read 403", `another origin got: ${verdict}`);
  await shot(evil, "other-origin");
  assert.equal(await page.evaluate(() => window.authsvc.refresh()), true, "the session is untouched");

  say("log out in one tab; the other loses access");
  await page.getByTestId("logout").click();
  await page.getByTestId("signed-out").waitFor();
  await tab.getByTestId("signed-out").waitFor();
  assert.equal(await tab.evaluate(() => window.authsvc.hasToken()), false);
  await tab.reload();
  await tab.getByTestId("signed-out").waitFor();
  assert.equal(await tab.evaluate(() => window.authsvc.refresh()), false, "the cookie no longer works");
  await shot(tab, "logged-out");

  assert.deepEqual(failures, [], "no errors in the pages");
  say("done");
} catch (err) {
  for (const [i, p] of browser.contexts().flatMap((c) => c.pages()).entries()) {
    await p.screenshot({ path: `${SHOTS}/failure-${i}.png` }).catch(() => {});
  }
  throw err;
} finally {
  await browser.close();
}
