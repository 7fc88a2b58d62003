// What every browser test shares: Debian's Chromium, headless, with the flags this machine's
// closed network needs (no background fetches to fail), and a reporter that names each step
// and screenshots it.

import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

/** Headless Chromium (`CHROMIUM`, else Debian's /usr/bin/chromium); no browser download. */
export function launchChromium() {
  return chromium.launch({
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
}

/** `say` prints a step as `<name>: ...`; `shot` screenshots a page as `<dir>/<prefix>NN-what.png`. */
export function reporter(name, dir, prefix = `${name}-`) {
  mkdirSync(dir, { recursive: true });
  let step = 0;
  return {
    say: (line) => console.log(`${name}: ${line}`),
    shot: (page, what) => page.screenshot({ path: `${dir}/${prefix}${String(++step).padStart(2, "0")}-${what}.png` }),
  };
}
