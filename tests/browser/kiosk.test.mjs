// The greeting screen (/kiosk) in a real browser: Debian's headless Chromium driven by
// playwright-core, as the box's own screen would run it (loopback, no key, autoplay allowed).
// tests/kiosk.rs starts the real server with a looping replayed camera whose frame files this
// script fills (each file replaced atomically), and runs this with:
//   BASE_URL      the server, http://127.0.0.1:PORT
//   FRAMES_DIR    the camera's frame files 00.jpg ... (FRAME_FILES of them)
//   BLANK         a frame without a face; PERSON a photo of the enrolled `obama`; STRANGER one
//                 of a stranger
//   ARTIFACTS     where the screenshots are kept
//   CHROMIUM      the browser (default /usr/bin/chromium)
// At 800x480 and at 1024x600: the person walks up -> the green greeting with the id and the crop
// of this sighting (a sound); they go, a stranger comes -> the amber notice (another sound); they
// go -> the idle clock after KIOSK_GREETING_SECONDS. At 1024x600 the mute switch is turned off
// first: no sound plays, and the switch is remembered across a reload. Every request went to the
// box, with no page error, console error or CSP violation. Exits 0 and prints KIOSK OK when all
// held.
import { check, launch } from "./common.mjs";
import { copyFileSync, mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";

const base = process.env.BASE_URL;
const framesDir = process.env.FRAMES_DIR;
const frameFiles = Number(process.env.FRAME_FILES || "8");
const artifacts = process.env.ARTIFACTS;
const STEP_WAIT = 60_000;

mkdirSync(artifacts, { recursive: true });
const outside = [];
const pageErrors = [];
const consoleErrors = [];
const cspViolations = [];
let step = "start";
let current = null;

// The camera now sees `photo` (every frame file, each replaced atomically).
function camera(photo) {
  for (let n = 0; n < frameFiles; n++) {
    const name = String(n).padStart(2, "0");
    const tmp = join(framesDir, "." + name + ".tmp");
    copyFileSync(photo, tmp);
    renameSync(tmp, join(framesDir, name + ".jpg"));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const browser = await launch(["--autoplay-policy=no-user-gesture-required"]);

async function screen(width, height) {
  const who = width + "x" + height;
  const context = await browser.newContext({ viewport: { width, height } });
  await context.exposeBinding("__cspViolation", (_source, text) => cspViolations.push(who + ": " + text));
  await context.addInitScript(() => {
    document.addEventListener(
      "securitypolicyviolation",
      (e) => window.__cspViolation(e.violatedDirective + " blocked " + (e.blockedURI || "inline code")),
      true,
    );
  });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_WAIT);
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (u.protocol === "blob:" || u.protocol === "data:") return;
    if (u.origin !== new URL(base).origin) outside.push(who + ": " + r.url());
  });
  page.on("pageerror", (e) => pageErrors.push(who + ": " + String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(who + ": " + m.text());
  });
  const shot = (name) => page.screenshot({ path: join(artifacts, who + "-" + name + ".png") });
  current = { page, shot };
  return { context, page, shot, who };
}

const visible = (page, id) => page.locator("#" + id).isVisible();
const sounds = (page) => page.evaluate(() => Number(document.body.dataset.sounds || "0"));

// Nothing sticks out of the screen: no scroll, and the element inside the viewport.
async function fits(page, who, id) {
  const [box, scroll] = await page.evaluate((id) => {
    const r = document.getElementById(id).getBoundingClientRect();
    const d = document.documentElement;
    return [
      { left: r.left, top: r.top, right: r.right, bottom: r.bottom },
      { w: d.scrollWidth, h: d.scrollHeight, vw: innerWidth, vh: innerHeight },
    ];
  }, id);
  check(scroll.w <= scroll.vw && scroll.h <= scroll.vh, who + ": the page scrolls: " + JSON.stringify(scroll));
  check(box.left >= 0 && box.top >= 0 && box.right <= scroll.vw + 1 && box.bottom <= scroll.vh + 1,
    who + ": #" + id + " leaves the screen: " + JSON.stringify(box));
}

async function run(width, height, muteFirst) {
  const { context, page, shot, who } = await screen(width, height);
  step = who + ": the idle clock";
  await page.goto(base + "/kiosk");
  await page.waitForFunction(() => /^\d\d:\d\d$/.test(document.getElementById("clock").textContent));
  check(await visible(page, "idle"), who + ": not idle at first");
  check(await visible(page, "sound"), who + ": no sound switch");
  if (muteFirst) {
    step = who + ": the mute switch, kept across a reload";
    await page.click("#sound");
    check((await page.textContent("#sound")) === "Sound off", who + ": the switch did not turn off");
    await page.reload();
    await page.waitForFunction(() => !document.getElementById("sound").hidden);
    check((await page.textContent("#sound")) === "Sound off", who + ": the switch was forgotten");
  }
  const before = await sounds(page);

  step = who + ": the person's greeting";
  camera(process.env.PERSON);
  await page.waitForFunction(() => {
    const img = document.getElementById("photo");
    return document.body.dataset.state === "greeting" && !img.hidden && img.complete && img.naturalWidth > 0;
  });
  const name = await page.textContent("#name");
  check(name === "obama", who + ": greeted " + JSON.stringify(name));
  check(/^\d\d:\d\d$/.test(await page.textContent("#time")), who + ": no time in the greeting");
  const green = await page.evaluate(() => getComputedStyle(document.getElementById("greeting")).backgroundColor);
  check(green === "rgb(21, 128, 61)", who + ": the greeting is " + green);
  await fits(page, who, "name");
  await fits(page, who, "photo");
  await shot("greeting");
  const afterGreeting = await sounds(page);
  check(afterGreeting === before + (muteFirst ? 0 : 1),
    who + ": sounds " + before + " -> " + afterGreeting + (muteFirst ? " while muted" : ""));

  step = who + ": the stranger's notice";
  camera(process.env.BLANK);
  await sleep(2000);
  camera(process.env.STRANGER);
  await page.waitForFunction(() => document.body.dataset.state === "stranger");
  const amber = await page.evaluate(() => getComputedStyle(document.getElementById("stranger")).backgroundColor);
  check(amber === "rgb(217, 119, 6)", who + ": the notice is " + amber);
  check(/Not recognized/.test(await page.textContent("#stranger")), who + ": the notice's words");
  check(!(await visible(page, "greeting")), who + ": the greeting stayed up");
  await fits(page, who, "stranger");
  await shot("stranger");
  const afterStranger = await sounds(page);
  check(afterStranger === afterGreeting + (muteFirst ? 0 : 1), who + ": sounds " + afterStranger);

  step = who + ": back to the idle clock";
  camera(process.env.BLANK);
  await page.waitForFunction(() => document.body.dataset.state === "idle");
  check(/^\d\d:\d\d$/.test(await page.textContent("#clock")), who + ": no clock");
  check((await page.textContent("#date")).length > 0, who + ": no date");
  await fits(page, who, "clock");
  await shot("idle");
  await context.close();
}

try {
  await run(800, 480, false);
  await run(1024, 600, true);
  step = "nothing left the box, no CSP violation, no error";
  check(outside.length === 0, "requests left the box: " + outside.join(", "));
  check(cspViolations.length === 0, "CSP violations: " + cspViolations.join("; "));
  check(pageErrors.length === 0, "page errors: " + pageErrors.join("; "));
  check(consoleErrors.length === 0, "console errors: " + consoleErrors.join("; "));
  console.log("KIOSK OK");
  await browser.close();
} catch (e) {
  console.error("FAILED at: " + step + "\n" + (e && e.stack ? e.stack : e));
  console.error("page errors: " + JSON.stringify(pageErrors));
  console.error("CSP violations: " + JSON.stringify(cspViolations));
  console.error("console errors: " + JSON.stringify(consoleErrors));
  try {
    if (current) await current.shot("failed");
  } catch (_) {
    /* the page may be gone */
  }
  await browser.close();
  process.exit(1);
}
