// The SPA in a real browser (Debian's Chromium, driven by playwright-core): signup, todos,
// a stale edit, an access token expiring under two calls at once (one refresh), a silent
// refresh, a reload (the session from the cookie alone), a second tab (one refresh serves
// both), a page on another origin failing to use the cookie, logout in one tab ending the
// other's, and logging out everywhere ending another device's session.
//
//   SPA_URL=... EVIL_URL=... AUTH_URL=... TODO_URL=... node e2e/spa.e2e.mjs
//   (deploy/dev e2e runs it)
//
// Screenshots of each step go to SCREENSHOTS (.dev/reports/spa by default).

import assert from "node:assert/strict";
import { launchChromium, reporter } from "./browser.mjs";

const SPA = process.env.SPA_URL ?? "http://127.0.0.1:5173";
const EVIL = process.env.EVIL_URL ?? "http://127.0.0.1:5174";
const AUTH = process.env.AUTH_URL ?? "http://127.0.0.1:8080";
const TODO = process.env.TODO_URL ?? "http://127.0.0.1:8081";
const SHOTS = process.env.SCREENSHOTS ?? ".dev/reports/spa";
/** The stack's access-token lifetime (deploy/dev e2e: 60 s, no leeway). */
const TTL_MS = Number(process.env.ACCESS_TOKEN_TTL_SECS ?? 60) * 1000;
/** How long before expiry the SPA refreshes (src/session.ts, EARLY_MS). */
const EARLY_MS = 15_000;
const REFRESH = `${AUTH}/v1/auth/refresh`;

const browser = await launchChromium();
const { say, shot } = reporter("spa", SHOTS, "");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** What a browser context sends and gets: refreshes, TODO 401s, the last bearer per page. */
function watch(context) {
  const seen = { refreshes: 0, expired: 0, bearer: new Map() };
  context.on("request", (req) => {
    const auth = req.headers().authorization;
    if (req.url().startsWith(TODO) && auth) seen.bearer.set(req.frame().page(), auth);
  });
  context.on("response", async (resp) => {
    if (resp.url() === REFRESH && resp.request().method() === "POST") seen.refreshes += 1;
    if (resp.url().startsWith(TODO) && resp.status() === 401) {
      const body = await resp.json().catch(() => ({}));
      if (body.code === "TOKEN_EXPIRED") seen.expired += 1;
    }
  });
  return seen;
}

/** A page that fails on any script error; with `fakeClock`, its timers and `Date` are the
 * test's to hold and move. */
async function open(context, failures, fakeClock = false) {
  const page = await context.newPage();
  page.on("pageerror", (err) => failures.push(String(err)));
  if (fakeClock) await page.clock.install();
  await page.goto(SPA);
  return page;
}

/** Until the TODO service refuses `bearer` as revoked (the contract: within a second). */
async function refusedWithin(bearer, ms) {
  const started = Date.now();
  for (;;) {
    const resp = await fetch(`${TODO}/v1/todos`, { headers: { authorization: bearer } });
    if (resp.status === 401) {
      assert.equal((await resp.json()).code, "TOKEN_REVOKED");
      return;
    }
    assert.ok(Date.now() - started < ms, `the token was still accepted after ${ms} ms`);
    await sleep(20);
  }
}

/** A refresh with `cookie` from an allowed origin, as the browser would send it. */
const refreshWith = (cookie) =>
  fetch(REFRESH, { method: "POST", headers: { cookie: `${cookie.name}=${cookie.value}`, origin: SPA } });

const failures = [];
try {
  const context = await browser.newContext();
  const seen = watch(context);
  const page = await open(context, failures, true);
  await page.getByTestId("signed-out").waitFor();

  say("sign up and log in; a weak password is shown by its code and field");
  const email = `spa-${Date.now()}@example.com`;
  const password = "a browser keeps no secrets";
  await page.getByTestId("signup-email").fill(email);
  await page.getByTestId("signup-password").fill("password");
  await page.getByTestId("signup").click();
  await page.getByTestId("problem").getByText("password: BREACHED_PASSWORD").waitFor();
  await shot(page, "weak-password");
  await page.getByTestId("signup-password").fill(password);
  await page.getByTestId("signup-name").fill("Browser Test");
  await page.getByTestId("signup").click();
  await page.getByTestId("signed-in").waitFor();
  await page.getByTestId("who").getByText("Browser Test").waitFor();
  await page.getByTestId("session").getByText("(this device)").waitFor();

  say("the refresh token is an HttpOnly, Strict, path-scoped cookie; the page sees none");
  const [cookie] = await context.cookies(REFRESH);
  assert.ok(cookie, "a refresh cookie");
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, "Strict");
  assert.equal(cookie.path, "/v1/auth");
  assert.equal(cookie.secure, true);
  assert.equal(await page.evaluate(() => document.cookie), "");

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

  say(`the access token expires (${TTL_MS / 1000} s, timers held): two calls 401 at once, one refresh`);
  await page.clock.pauseAt(Date.now() + 1000);
  const before = { ...seen };
  await sleep(TTL_MS + 2000);
  // Hold the refresh a moment, so that both calls are answered 401 before it completes.
  await context.route(REFRESH, async (route) => {
    await sleep(500);
    await route.continue();
  });
  await page.getByTestId("new-title").fill("After expiry");
  // `force`: with the page's clock held, no animation frame comes for the usual checks.
  await Promise.all([
    page.getByTestId("add").click({ force: true }),
    page.getByTestId("reload").click({ force: true }),
  ]);
  await page.getByTestId("todo-title").getByText("After expiry").waitFor();
  await context.unroute(REFRESH);
  assert.equal(seen.expired - before.expired, 2, "both calls were answered TOKEN_EXPIRED");
  assert.equal(seen.refreshes - before.refreshes, 1, "and served by one refresh");
  assert.equal(await page.getByTestId("problem").textContent(), "");
  await shot(page, "after-expiry");

  say("a silent refresh shortly before the next expiry, and no call sees the token expire");
  await page.clock.resume();
  const quiet = { ...seen };
  const silent = page.waitForResponse((r) => r.url() === REFRESH && r.status() === 200);
  await page.clock.fastForward(TTL_MS - EARLY_MS + 1000);
  await silent;
  await page.getByTestId("reload").click();
  await page.getByTestId("todo-title").getByText("After expiry").waitFor();
  assert.equal(seen.expired, quiet.expired, "refreshed before it expired");

  say("a reload restores the session from the cookie alone; nothing is in web storage");
  await page.reload();
  await page.getByTestId("signed-in").waitFor();
  await page.getByTestId("todo-title").getByText("After expiry").waitFor();
  assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0);
  await shot(page, "reloaded");

  say("a second tab: both work, one refresh serves both, and a stale edit is refused");
  const tab = await open(context, failures);
  await tab.getByTestId("signed-in").waitFor();
  const both = seen.refreshes;
  await context.route(REFRESH, async (route) => {
    await sleep(300);
    await route.continue();
  });
  const [a, b] = await Promise.all([
    page.evaluate(() => window.authsvc.refresh()),
    tab.evaluate(() => window.authsvc.refresh()),
  ]);
  await context.unroute(REFRESH);
  assert.ok(a && b, "both tabs hold a token");
  assert.equal(seen.refreshes - both, 1, "one refresh for two tabs (the other got its token over the channel)");
  await Promise.all([page.getByTestId("reload").click(), tab.getByTestId("reload").click()]);
  await tab.getByTestId("todo-title").getByText("After expiry").waitFor();
  assert.equal(seen.bearer.get(page), seen.bearer.get(tab), "both tabs use the one token");
  tab.once("dialog", (dialog) => dialog.accept("Changed in the second tab"));
  await tab.getByTestId("todo").filter({ hasText: "After expiry" }).getByTestId("todo-edit").click();
  await tab.getByTestId("todo-title").getByText("Changed in the second tab").waitFor();
  page.once("dialog", (dialog) => dialog.accept("Changed in the first tab"));
  await page.getByTestId("todo").filter({ hasText: "After expiry" }).getByTestId("todo-edit").click();
  await page.getByTestId("problem").getByText("PRECONDITION_FAILED").waitFor();
  await page.getByTestId("todo-title").getByText("Changed in the second tab").waitFor();
  await shot(page, "stale-edit");

  say("a page on another origin cannot use the cookie");
  const cookieBefore = (await context.cookies(REFRESH))[0];
  const evil = await context.newPage();
  const evilUrl = `${EVIL}/evil.html?auth=${encodeURIComponent(AUTH)}`;
  await evil.goto(evilUrl);
  await evil.locator("#result").filter({ hasNotText: "pending" }).waitFor();
  assert.equal(await evil.locator("#result").textContent(), "blocked", "CORS withholds the answer");
  await shot(evil, "other-origin");
  // Again, seeing the service's answer itself (which the page cannot), before handing it on.
  let refused;
  await evil.route(REFRESH, async (route) => {
    const resp = await route.fetch();
    refused = { status: resp.status(), headers: resp.headers(), body: await resp.json() };
    await route.fulfill({ response: resp });
  });
  await evil.goto(evilUrl);
  await evil.locator("#result").filter({ hasNotText: "pending" }).waitFor();
  assert.ok(refused, "the page tried the cookie");
  assert.equal(refused.status, 403, "refused by the service, not only by the browser");
  assert.equal(refused.headers["access-control-allow-origin"], undefined, "no CORS grant");
  assert.equal(refused.body.code, "CSRF_FAILED");
  assert.equal((await context.cookies(REFRESH))[0]?.value, cookieBefore?.value, "the cookie was not spent");
  assert.equal(await page.evaluate(() => window.authsvc.refresh()), true, "the session is untouched");

  say("log out in one tab; the other loses access, at the TODO service too");
  await tab.getByTestId("reload").click();
  await tab.getByTestId("todo-title").getByText("Changed in the second tab").waitFor();
  const tabBearer = seen.bearer.get(tab);
  const oldCookie = (await context.cookies(REFRESH))[0];
  await page.getByTestId("logout").click();
  await page.getByTestId("signed-out").waitFor();
  await tab.getByTestId("signed-out").waitFor();
  assert.equal(await tab.evaluate(() => window.authsvc.hasToken()), false);
  await refusedWithin(tabBearer, 1000);
  assert.equal((await refreshWith(oldCookie)).status, 401, "the old cookie is dead");
  await tab.reload();
  await tab.getByTestId("signed-out").waitFor();
  assert.equal(await tab.evaluate(() => window.authsvc.refresh()), false);
  await shot(tab, "logged-out");

  say("log out everywhere, with an expired token, ends another device's session");
  const other = await browser.newContext();
  const otherSeen = watch(other);
  const device = await open(other, failures);
  for (const p of [page, device]) {
    await p.getByTestId("login-email").fill(email);
    await p.getByTestId("login-password").fill(password);
    await p.getByTestId("login").click();
    await p.getByTestId("signed-in").waitFor();
  }
  await page.clock.pauseAt(Date.now() + 1000);
  await sleep(TTL_MS + 1000);
  // The other device refreshed silently meanwhile; this page's token has expired.
  await device.getByTestId("reload").click();
  await device.getByTestId("todo-title").getByText("Changed in the second tab").waitFor();
  const deviceBearer = otherSeen.bearer.get(device);
  const deviceCookie = (await other.cookies(REFRESH))[0];
  await page.getByTestId("logout-all").click({ force: true });
  await page.getByTestId("signed-out").waitFor();
  assert.equal(await page.getByTestId("problem").textContent(), "");
  await refusedWithin(deviceBearer, 1000);
  assert.equal((await refreshWith(deviceCookie)).status, 401, "the other device's cookie is dead");
  await shot(page, "logged-out-everywhere");
  await other.close();

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
