// What the browser tests share: Debian's headless Chromium launched as they all run it (no
// sandbox in CI containers, nothing of its own going out to the network).
import { chromium } from "playwright-core";

// Chromium at CHROMIUM (default /usr/bin/chromium), headless, with `extra` flags added.
export function launch(extra = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
      ...extra,
    ],
  });
}

// Fails the step with `what` unless `condition` holds.
export function check(condition, what) {
  if (!condition) throw new Error(what);
}
