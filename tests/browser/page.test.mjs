// The box's page in a real browser: Debian's headless Chromium driven by playwright-core.
// tests/page.rs starts the real server (a replayed camera, an API key) and runs this with:
//   BASE_URL     the server, http://127.0.0.1:PORT
//   API_KEY      the key the page must ask for
//   FACES_DIR    the shared real photos
//   ARTIFACTS    where the screenshots and the downloaded CSV are kept
//   CHROMIUM     the browser (default /usr/bin/chromium)
// It exits 0 when every step held, else prints the failed step and exits 1.
import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const base = process.env.BASE_URL;
const apiKey = process.env.API_KEY;
const faces = process.env.FACES_DIR;
const artifacts = process.env.ARTIFACTS;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const STEP_WAIT = 45_000;

mkdirSync(artifacts, { recursive: true });
const outside = [];
const pageErrors = [];
let step = "start";

function check(condition, what) {
  if (!condition) throw new Error(what);
}

async function health() {
  const response = await fetch(base + "/health");
  return response.json();
}

async function waitFor(what, test, ms = STEP_WAIT) {
  const until = Date.now() + ms;
  for (;;) {
    if (await test()) return;
    if (Date.now() > until) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// Anything but the server itself (and the page's own blob: URLs) is a request leaving the box.
function watch(url) {
  const u = new URL(url);
  if (u.protocol === "blob:" || u.protocol === "data:") return;
  if (u.hostname !== "127.0.0.1") outside.push(url);
}

const browser = await chromium.launch({
  executablePath,
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
  ],
});
// A phone held next to the box.
const context = await browser.newContext({
  acceptDownloads: true,
  viewport: { width: 412, height: 880 },
});
const page = await context.newPage();
page.setDefaultTimeout(STEP_WAIT);
page.on("request", (r) => watch(r.url()));
page.on("websocket", (ws) => watch(ws.url()));
page.on("pageerror", (e) => pageErrors.push(String(e)));
page.on("dialog", (d) => d.accept());

const shot = (name) => page.screenshot({ path: join(artifacts, name + ".png"), fullPage: true });

try {
  step = "the page asks for the key before showing anything";
  await page.goto(base + "/");
  await page.locator("#login").waitFor({ state: "visible" });
  check(await page.locator("#tabs").isHidden(), "the tabs show before the key");
  check(await page.locator("#live").isHidden(), "the live view shows before the key");
  await shot("01-key");
  await page.fill("#login-key", "not-the-key-at-all");
  await page.click("#login button[type=submit]");
  await page.locator("#login-error").waitFor({ state: "visible" });
  check(await page.locator("#tabs").isHidden(), "a wrong key opened the page");
  await page.fill("#login-key", apiKey);
  await page.click("#login button[type=submit]");
  await page.locator("#tabs").waitFor({ state: "visible" });

  step = "the live image updates";
  const sentBefore = (await health()).camera.live.frames_sent;
  await page.waitForFunction(() => {
    const img = document.getElementById("live-image");
    return img && img.complete && img.naturalWidth > 0;
  });
  await waitFor("three more live frames sent to the page", async () => {
    const h = await health();
    return h.camera.live.viewers >= 1 && h.camera.live.frames_sent >= sentBefore + 3;
  });

  step = "a recognition appears in the feed";
  await page.locator("#feed li", { hasText: "obama" }).first().waitFor();
  await shot("02-live");

  step = "enroll a person by upload and see them listed with a crop";
  await page.click("#tabs button[data-tab=people]");
  await page.fill("#enroll-id", "amy");
  await page.setInputFiles("#enroll-file", join(faces, "known/amy/amy_1.jpg"));
  await page.click("#enroll-upload");
  const amy = page.locator('#people-list li[data-id="amy"]');
  await amy.waitFor();
  await page.waitForFunction(() => {
    const img = document.querySelector('#people-list li[data-id="amy"] img');
    return img && img.complete && img.naturalWidth > 0;
  });
  await shot("03-people");

  step = "delete them";
  await amy.locator("button", { hasText: "Open" }).click();
  await page.locator("#person").waitFor({ state: "visible" });
  await page.click("#person-delete");
  await amy.waitFor({ state: "detached" });
  const people = await (await fetch(base + "/people", { headers: { "X-API-Key": apiKey } })).json();
  check(!people.people.some((p) => p.student_id === "amy"), "amy is still enrolled");

  step = "enroll an unknown cluster";
  await waitFor("an unknown cluster", async () => (await health()).unknown_clusters >= 1);
  await page.click("#tabs button[data-tab=unknowns]");
  const cluster = page.locator("#unknown-list li[data-cluster]").first();
  await cluster.waitFor();
  await page.waitForFunction(() => {
    const img = document.querySelector("#unknown-list li[data-cluster] img");
    return img && img.complete && img.naturalWidth > 0;
  });
  await shot("04-unknowns");
  await cluster.locator("input").fill("stuart");
  await cluster.locator("button[type=submit]").click();
  await page.locator("#message", { hasText: "Enrolled stuart." }).waitFor();
  const stuart = await fetch(base + "/people/stuart", { headers: { "X-API-Key": apiKey } });
  check(stuart.status === 200, "the cluster was not enrolled as stuart: " + stuart.status);

  step = "download today's CSV and check its rows";
  await page.click("#tabs button[data-tab=today]");
  await page.locator("#today-table tbody tr", { hasText: "obama" }).first().waitFor();
  await shot("05-today");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#today-csv")]);
  const csvPath = join(artifacts, "today.csv");
  await download.saveAs(csvPath);
  const rows = readFileSync(csvPath, "utf8").trim().split(/\r?\n/);
  check(rows[0].startsWith("time,event_id,kind,student_id,distance,delivery"), "CSV header: " + rows[0]);
  const obama = rows.slice(1).filter((r) => r.split(",")[3] === "obama");
  check(obama.length >= 1, "no obama row in the CSV:\n" + rows.join("\n"));
  const today = new Date().toISOString().slice(0, 10);
  check(obama.every((r) => r.split(",")[1].length === 36), "event ids in the CSV");
  check(rows.slice(1).every((r) => r.split(",")[0].length >= 10), "times in the CSV");
  console.log("CSV rows: " + (rows.length - 1) + " (" + obama.length + " of obama), " + today);

  step = "status";
  await page.click("#tabs button[data-tab=status]");
  await page.locator("#status-list dd", { hasText: "running" }).first().waitFor();
  await shot("06-status");

  step = "nothing left 127.0.0.1, no script error";
  check(outside.length === 0, "requests left the box: " + outside.join(", "));
  check(pageErrors.length === 0, "page errors: " + pageErrors.join("; "));
  console.log("PAGE OK");
  await browser.close();
} catch (e) {
  console.error("FAILED at: " + step + "\n" + (e && e.stack ? e.stack : e));
  console.error("page errors: " + JSON.stringify(pageErrors));
  try {
    await shot("failed");
  } catch (_) {
    /* the page may be gone */
  }
  await browser.close();
  process.exit(1);
}
