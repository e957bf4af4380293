// The box's page and /docs in a real browser: Debian's headless Chromium driven by playwright-core.
// tests/page.rs starts the real server (a replayed camera, a keys file of every role) and a second
// one without keys or camera, and runs this with:
//   BASE_URL     the keyed server, http://127.0.0.1:PORT
//   OPEN_URL     the server without keys
//   TWO_URL      a server without keys with two cameras: `entrance` (in, a 16:9 picture) and
//                `exit` (out, a square one)
//   API_KEY      its admin key (label `admin`); OPERATOR_KEY (`desk`), VIEWER_KEY (`hall`),
//                KIOSK_KEY (`lobby`): keys of the other roles
//   FACES_DIR    the shared real photos
//   ARTIFACTS    where the screenshots and the downloaded CSV are kept
//   CHROMIUM     the browser (default /usr/bin/chromium)
// What it holds: the pages run under the server's Content-Security-Policy (no 'unsafe-inline')
// without a single violation; no key ever appears in a URL, the DOM or the history (the live view
// and the WebSocket are opened with single-use tickets, a new one for each opening, reconnects
// included); each role's page shows only what the role may do; and the page works end to end.
// It exits 0 when every step held, else prints the failed step and exits 1.
import { check, launch } from "./common.mjs";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const base = process.env.BASE_URL;
const openBase = process.env.OPEN_URL;
const twoBase = process.env.TWO_URL;
const keys = {
  admin: process.env.API_KEY,
  operator: process.env.OPERATOR_KEY,
  viewer: process.env.VIEWER_KEY,
  kiosk: process.env.KIOSK_KEY,
};
const apiKey = keys.admin;
const faces = process.env.FACES_DIR;
const artifacts = process.env.ARTIFACTS;
const STEP_WAIT = 45_000;

mkdirSync(artifacts, { recursive: true });
const outside = [];
const pageErrors = [];
// Every URL a page asked for: {who, method, url}.
const requests = [];
// Every WebSocket a page opened: {who, url, frames}.
const sockets = [];
const cspViolations = [];
const consoleErrors = [];
let step = "start";

async function health() {
  const response = await fetch(base + "/health", { headers: { "X-API-Key": apiKey } });
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

// Anything but the servers themselves (and the page's own blob: URLs) is a request leaving the box.
function watch(url) {
  const u = new URL(url);
  if (u.protocol === "blob:" || u.protocol === "data:") return;
  if (u.hostname !== "127.0.0.1") outside.push(url);
}

// The Content-Security-Policy a document was served with: present, strict, nothing inline.
function checkCsp(what, headers) {
  const csp = headers["content-security-policy"] || "";
  for (const directive of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"]) {
    check(csp.includes(directive), what + " is served without `" + directive + "` in its CSP: " + JSON.stringify(csp));
  }
  check(!/unsafe-inline|unsafe-eval/.test(csp), what + "'s CSP allows inline code: " + csp);
}

const browser = await launch();

// A fresh browser profile (own session storage) for one key: a phone held next to the box.
async function newPage(who) {
  const context = await browser.newContext({
    acceptDownloads: true,
    viewport: { width: 412, height: 880 },
  });
  await context.exposeBinding("__cspViolation", (_source, text) => cspViolations.push(who + ": " + text));
  // Runs in every document before its own scripts; DevTools' scripts are not under the CSP.
  await context.addInitScript(() => {
    document.addEventListener(
      "securitypolicyviolation",
      (e) =>
        window.__cspViolation(
          e.violatedDirective + " blocked " + (e.blockedURI || "inline code") + " in " + e.documentURI +
            (e.sample ? " (" + e.sample + ")" : ""),
        ),
      true,
    );
  });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_WAIT);
  page.on("request", (r) => {
    watch(r.url());
    requests.push({ who, method: r.method(), url: r.url() });
  });
  page.on("websocket", (ws) => {
    watch(ws.url());
    const socket = { who, url: ws.url(), frames: 0 };
    sockets.push(socket);
    ws.on("framereceived", () => socket.frames++);
  });
  page.on("pageerror", (e) => pageErrors.push(who + ": " + String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(who + ": " + m.text());
  });
  page.on("dialog", (d) => d.accept());
  const shot = (name) => page.screenshot({ path: join(artifacts, name + ".png"), fullPage: true });
  return { context, page, shot };
}

const ticketOf = (url) => new URL(url).searchParams.get("ticket");
const streams = (who) => requests.filter((r) => r.who === who && new URL(r.url).pathname === "/stream.mjpg");
const socketsOf = (who) => sockets.filter((s) => s.who === who);

async function liveImageShows(page) {
  await page.waitForFunction(() => {
    const img = document.getElementById("live-image");
    return img && !img.hidden && img.complete && img.naturalWidth > 0;
  });
}

async function login(page, key) {
  await page.goto(base + "/");
  await page.locator("#login").waitFor({ state: "visible" });
  await page.fill("#login-key", key);
  await page.click("#login button[type=submit]");
  await page.locator("#tabs").waitFor({ state: "visible" });
}

// No key in any URL, in the DOM or in the page's history. (/docs may mention `api_key` in its
// text, from the API's description: only addresses must not carry it.)
async function noKeyLeft(page, who) {
  const [html, addresses] = await page.evaluate(() => [
    document.documentElement.outerHTML,
    [location.href, ...[...document.querySelectorAll("[src], [href]")].map((e) => e.getAttribute("src") || e.getAttribute("href"))],
  ]);
  const cdp = await page.context().newCDPSession(page);
  const history = await cdp.send("Page.getNavigationHistory");
  await cdp.detach();
  for (const e of history.entries) addresses.push(e.url, e.userTypedURL || "");
  for (const url of addresses) check(!url.includes("api_key"), who + ": `api_key` in an address: " + url);
  for (const text of [html, ...addresses]) {
    for (const [role, key] of Object.entries(keys)) {
      check(!text.includes(key), who + ": the " + role + " key is in the page or its history");
    }
  }
}

// Each role's page: the controls it shows, the live view and the feed.
async function rolePage(role, label, shotName) {
  const { context, page, shot } = await newPage(role);
  await login(page, keys[role]);
  const whoText = await page.locator("#who-text").textContent();
  check(whoText === role + " · " + label, role + ": the page names the key as " + JSON.stringify(whoText));
  await page.locator("#feed-state", { hasText: "Live" }).waitFor();
  await page.locator("#feed li").first().waitFor();
  const tabs = await page.locator("#tabs button:visible").allTextContents();
  if (role === "kiosk") {
    check(tabs.join(",") === "Live,Status", "kiosk: tabs " + tabs);
    check(await page.locator("#live-image").isHidden(), "kiosk: the live view shows (it needs a viewer key)");
    check(streams("kiosk").length === 0, "kiosk: the page asked for the live view");
    await shot(shotName);
    await context.close();
    return;
  }
  check(tabs.join(",") === "Live,People,Unknowns,Today,Status", role + ": tabs " + tabs);
  await liveImageShows(page);

  await page.click("#tabs button[data-tab=people]");
  await page.locator('#people-list li[data-id="obama"]').locator("button", { hasText: "Open" }).click();
  await page.locator("#person").waitFor({ state: "visible" });
  await page.locator("#person-samples li").first().waitFor();
  const enroll = await page.locator("#enroll").isVisible();
  const rename = await page.locator("#rename").isVisible() || await page.locator("#label").isVisible();
  const deletePerson = await page.locator("#person-delete").isVisible();
  const deleteSample = await page.locator("#person-samples button", { hasText: "Delete" }).count();
  await page.click("#tabs button[data-tab=unknowns]");
  const cluster = page.locator("#unknown-list li[data-cluster]").first();
  await cluster.waitFor();
  const clusterControls = await cluster.locator("input, button").count();
  await shot(shotName);
  if (role === "viewer") {
    check(!enroll && !rename && !deletePerson && deleteSample === 0 && clusterControls === 0,
      "viewer: the page shows controls it may not use: " +
        JSON.stringify({ enroll, rename, deletePerson, deleteSample, clusterControls }));
    // What the server refuses is shown with its reason.
    await page.evaluate(() => act(() => apiJson("/people/obama", { method: "DELETE" }), "deleted"));
    const message = page.locator("#message.error");
    await message.waitFor();
    const text = await message.textContent();
    check(/admin/.test(text), "viewer: the 403 is shown as " + JSON.stringify(text));
    const obama = await fetch(base + "/people/obama", { headers: { "X-API-Key": apiKey } });
    check(obama.status === 200, "a viewer key deleted obama");
    await noKeyLeft(page, role);
    // "Change key" forgets the key and starts a fresh page.
    await page.click("#change-key");
    await page.locator("#login").waitFor({ state: "visible" });
    check(await page.locator("#tabs").isHidden(), "viewer: the tabs stay after changing the key");
    check(!(await page.evaluate(() => sessionStorage.getItem("face-attendance-key"))), "viewer: the key stays stored");
    await context.close();
    return;
  } else {
    check(enroll && !rename && !deletePerson && deleteSample === 0 && clusterControls === 3,
      "operator: " + JSON.stringify({ enroll, rename, deletePerson, deleteSample, clusterControls }));
  }
  await noKeyLeft(page, role);
  await context.close();
}

const { page, shot } = await newPage("admin");

try {
  step = "the pages are served with a strict Content-Security-Policy";
  for (const url of [base, openBase]) {
    for (const path of ["/", "/docs"]) {
      const response = await fetch(url + path);
      checkCsp(url + path, Object.fromEntries(response.headers));
    }
  }

  step = "the page asks for the key before showing anything";
  const first = await page.goto(base + "/");
  checkCsp("/ as the browser got it", first.headers());
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
  const whoText = await page.locator("#who-text").textContent();
  check(whoText === "admin · admin", "the page names the key as " + JSON.stringify(whoText));

  step = "the CSP is in force (an inline script is refused and reported)";
  const violationsBefore = cspViolations.length;
  const consoleBefore = consoleErrors.length;
  await page.evaluate(() => {
    const s = document.createElement("script");
    s.textContent = "window.__inlineRan = true";
    document.head.append(s);
  });
  await waitFor("the inline script's violation to be reported", async () => cspViolations.length > violationsBefore, 5000);
  check(!(await page.evaluate(() => window.__inlineRan)), "an inline script ran");
  cspViolations.splice(violationsBefore);
  consoleErrors.splice(consoleBefore);

  step = "the live image updates";
  const sentBefore = (await health()).camera.live.frames_sent;
  await liveImageShows(page);
  await waitFor("three more live frames sent to the page", async () => {
    const h = await health();
    return h.camera.live.viewers >= 1 && h.camera.live.frames_sent >= sentBefore + 3;
  });
  const src = await page.locator("#live-image").getAttribute("src");
  check(/^\/stream\.mjpg\?ticket=[^&]+$/.test(src), "the live view's address: " + src);
  check((await page.locator("#live-cameras").count()) === 1, "the page has no camera switch");
  check(await page.locator("#live-cameras").isHidden(), "a one-camera box shows a camera switch");

  step = "a used ticket opens nothing";
  const replay = await fetch(base + src);
  check(replay.status === 401, "the live view's ticket opened the stream again: HTTP " + replay.status);
  await replay.body?.cancel();

  step = "a recognition appears in the feed";
  await page.locator("#feed li", { hasText: "obama" }).first().waitFor();
  await shot("02-live");

  step = "the WebSocket reconnects with a new ticket";
  const before = socketsOf("admin").length;
  await page.evaluate(() => feed.close());
  await waitFor("a second WebSocket", async () => socketsOf("admin").length > before);
  const again = socketsOf("admin")[before];
  await page.locator("#feed-state", { hasText: "Live" }).waitFor();
  await waitFor("a message on the reconnected WebSocket", async () => again.frames > 0);

  step = "enroll a person by upload and see them listed with a crop";
  await page.click("#tabs button[data-tab=people]");
  await page.fill("#enroll-id", "amy");
  await page.fill("#enroll-name", "Amy Farrah Fowler");
  await page.fill("#enroll-group", "neuro");
  await page.setInputFiles("#enroll-file", join(faces, "known/amy/amy_1.jpg"));
  await page.click("#enroll-upload");
  const amy = page.locator('#people-list li[data-id="amy"]');
  await amy.waitFor();
  await page.waitForFunction(() => {
    const img = document.querySelector('#people-list li[data-id="amy"] img');
    return img && img.complete && img.naturalWidth > 0;
  });
  await shot("03-people");

  await amy.locator(".name", { hasText: "Amy Farrah Fowler" }).waitFor();

  step = "an admin edits the name and group on the person's view";
  await amy.locator("button", { hasText: "Open" }).click();
  await page.locator("#person").waitFor({ state: "visible" });
  await page.locator("#person-id", { hasText: "Amy Farrah Fowler (amy)" }).waitFor();
  await page.fill("#label-name", "Dr. Amy Fowler");
  await page.fill("#label-group", "");
  await page.click("#label button[type=submit]");
  await page.locator("#person-id", { hasText: "Dr. Amy Fowler (amy)" }).waitFor();
  const edited = await (await fetch(base + "/people/amy", { headers: { "X-API-Key": apiKey } })).json();
  check(edited.name === "Dr. Amy Fowler" && edited.group === null, "the edit was not saved: " + JSON.stringify(edited));
  await shot("03b-person-label");

  step = "an admin sees rename and delete; delete them";
  await page.locator("#person-samples button", { hasText: "Delete sample" }).first().waitFor();
  check(await page.locator("#rename").isVisible(), "an admin gets no rename form");
  await page.click("#person-delete");
  await amy.waitFor({ state: "detached" });
  const people = await (await fetch(base + "/people", { headers: { "X-API-Key": apiKey } })).json();
  check(!people.people.some((p) => p.student_id === "amy"), "amy is still enrolled");

  step = "an unknown cluster is kept";
  await waitFor("an unknown cluster", async () => (await health()).unknown_clusters >= 1);

  step = "a viewer's page: live view and feed, no enroll or delete";
  await rolePage("viewer", "hall", "07-viewer");
  step = "an operator's page: enroll and unknowns, no rename or delete";
  await rolePage("operator", "desk", "08-operator");
  step = "a kiosk's page: the feed only";
  await rolePage("kiosk", "lobby", "09-kiosk");

  step = "enroll an unknown cluster";
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

  step = "today's report: counts, the list, its CSV and the day's events CSV";
  await page.click("#tabs button[data-tab=today]");
  await page.locator("#today-table tbody tr.present", { hasText: "obama" }).first().waitFor();
  await shot("05-today");
  const report = await (await fetch(base + "/reports/daily", { headers: { "X-API-Key": apiKey } })).json();
  // The camera may see someone between the page's answer and this one: the counts add up to
  // everyone enrolled, obama among those present.
  const shown = Number(await page.locator("#today-present").textContent());
  const notShown = Number(await page.locator("#today-absent").textContent());
  check(shown >= 1 && shown + notShown === report.total, "present/absent counts on the page: " + shown + "/" + notShown);
  check((await page.locator("#today-table tbody tr").count()) === report.total, "one row per enrolled person");
  const [reportDownload] = await Promise.all([page.waitForEvent("download"), page.click("#today-csv")]);
  const reportPath = join(artifacts, "today-report.csv");
  await reportDownload.saveAs(reportPath);
  const reportRows = readFileSync(reportPath, "utf8").trim().split(/\r?\n/);
  check(reportRows[0] === "date,student_id,name,group,present,first_in,last_out,sightings", "report CSV header: " + reportRows[0]);
  const obamaRow = reportRows.slice(1).find((r) => r.split(",")[1] === "obama");
  check(obamaRow && obamaRow.split(",")[4] === "yes" && obamaRow.split(",")[0] === report.date, "obama present in the report CSV:\n" + reportRows.join("\n"));
  check(reportRows.length - 1 === report.total, "one CSV row per enrolled person");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#today-events-csv")]);
  const csvPath = join(artifacts, "today.csv");
  await download.saveAs(csvPath);
  const rows = readFileSync(csvPath, "utf8").trim().split(/\r?\n/);
  check(rows[0].startsWith("time,event_id,kind,student_id,distance,delivery"), "CSV header: " + rows[0]);
  const obama = rows.slice(1).filter((r) => r.split(",")[3] === "obama");
  check(obama.length >= 1, "no obama row in the CSV:\n" + rows.join("\n"));
  const today = report.date;
  check(obama.every((r) => r.split(",")[1].length === 36), "event ids in the CSV");
  check(rows.slice(1).every((r) => r.split(",")[0].length >= 10), "times in the CSV");
  console.log("CSV rows: " + (rows.length - 1) + " (" + obama.length + " of obama), " + today + "; report: " + report.present + " present, " + report.absent + " absent");

  step = "status";
  await page.click("#tabs button[data-tab=status]");
  await page.locator("#status-list dd", { hasText: "running" }).first().waitFor();
  await shot("06-status");

  step = "back to the live view: a new ticket for the image";
  const streamsBefore = streams("admin").length;
  await page.click("#tabs button[data-tab=live]");
  await liveImageShows(page);
  check(streams("admin").length > streamsBefore, "the live view was not opened again");
  await noKeyLeft(page, "admin");

  step = "the API reference under the CSP, its WebSocket panel with a ticket";
  const docs = await page.goto(base + "/docs");
  checkCsp("/docs as the browser got it", docs.headers());
  await waitFor("the routes rendered", async () => (await page.locator("section.route").count()) >= 20);
  const blue = await page.locator("#toc .method.get").first().evaluate((e) => getComputedStyle(e).backgroundColor);
  check(blue === "rgb(31, 111, 235)", "/docs is unstyled (docs.css refused?): " + blue);
  const docsSockets = socketsOf("admin").length;
  await page.click("#connect");
  await page.locator("#wsstate", { hasText: "connected to" }).waitFor();
  check(socketsOf("admin").length === docsSockets + 1, "/docs opened no WebSocket");
  await waitFor("a message on /docs' WebSocket", async () => socketsOf("admin")[docsSockets].frames > 0);
  await shot("10-docs");
  await noKeyLeft(page, "admin on /docs");

  step = "a box without keys: no key asked, tickets all the same";
  {
    const open = await newPage("keyless");
    const answer = await open.page.goto(openBase + "/");
    checkCsp("the keyless box's page", answer.headers());
    await open.page.locator("#tabs").waitFor({ state: "visible" });
    check(await open.page.locator("#login").isHidden(), "the keyless box asks for a key");
    const text = await open.page.locator("#who-text").textContent();
    check(text === "admin · anyone", "the keyless page names itself " + JSON.stringify(text));
    check(await open.page.locator("#change-key").isHidden(), "a keyless page offers to change the key");
    check(await open.page.locator("#no-camera").isVisible(), "a box without camera: no word of it");
    await open.page.locator("#feed-state", { hasText: "Live" }).waitFor();
    check(socketsOf("keyless").length === 1 && ticketOf(socketsOf("keyless")[0].url),
      "the keyless page's WebSocket: " + JSON.stringify(socketsOf("keyless")));
    await open.shot("11-keyless");
    await open.context.close();
  }

  step = "a box with two cameras: the live view switches between them";
  {
    const two = await newPage("two");
    await two.page.goto(twoBase + "/");
    await two.page.locator("#tabs").waitFor({ state: "visible" });
    const buttons = two.page.locator("#live-cameras button");
    await buttons.first().waitFor();
    const labels = await buttons.allTextContents();
    check(labels.join(",") === "entrance (in),exit (out)", "the camera switch shows " + JSON.stringify(labels));
    const pressed = async () =>
      two.page.locator("#live-cameras button.on").allTextContents();
    check((await pressed()).join(",") === "entrance (in)", "the first camera is not the one shown");
    // The picture's shape tells which camera it is (the live view keeps the aspect).
    const shape = () =>
      two.page.evaluate(() => {
        const img = document.getElementById("live-image");
        return img.complete && img.naturalWidth > 0 ? img.naturalWidth / img.naturalHeight : 0;
      });
    await liveImageShows(two.page);
    check(Math.abs((await shape()) - 16 / 9) < 0.02, "the entrance's picture is not 16:9: " + (await shape()));
    const first = streams("two");
    check(first.length === 1 && /^\/stream\.mjpg\?ticket=[0-9a-f]{64}$/.test(new URL(first[0].url).pathname + new URL(first[0].url).search),
      "the first camera's live view: " + JSON.stringify(first.map((r) => r.url)));

    await two.page.click('#live-cameras button[data-camera="exit"]');
    await waitFor("the exit's square picture", async () => Math.abs((await shape()) - 1) < 0.02);
    check((await pressed()).join(",") === "exit (out)", "the switch does not mark the exit");
    const exit = streams("two").slice(1);
    check(exit.length === 1 && new URL(exit[0].url).searchParams.get("camera") === "exit" && ticketOf(exit[0].url),
      "the exit's live view: " + JSON.stringify(exit.map((r) => r.url)));
    await waitFor("the box to have one viewer, on the exit", async () => {
      const h = await (await fetch(twoBase + "/health")).json();
      const viewers = Object.fromEntries(h.cameras.map((c) => [c.name, c.live.viewers]));
      return viewers.exit === 1 && viewers.entrance === 0;
    });
    await two.shot("12-two-cameras");

    // Back to the entrance, and a name the box does not have is refused (404), not shown.
    await two.page.click('#live-cameras button[data-camera="entrance"]');
    await waitFor("the entrance's picture again", async () => Math.abs((await shape()) - 16 / 9) < 0.02);
    const t = await (await fetch(twoBase + "/tickets", { method: "POST" })).json();
    const unknown = await fetch(twoBase + "/stream.mjpg?camera=nowhere&ticket=" + t.ticket);
    check(unknown.status === 404, "an unknown camera's live view: HTTP " + unknown.status);
    await unknown.body?.cancel();
    await two.context.close();
  }

  step = "tickets everywhere, each used once, no key in any URL";
  const opened = [
    ...requests.filter((r) => new URL(r.url).pathname === "/stream.mjpg").map((r) => r.url),
    ...sockets.map((s) => s.url),
  ];
  for (const url of [...requests.map((r) => r.url), ...sockets.map((s) => s.url)]) {
    check(!url.includes("api_key"), "a key in a URL: " + url);
    for (const key of Object.values(keys)) check(!url.includes(key), "a key in a URL: " + url);
  }
  const tickets = opened.map(ticketOf);
  check(tickets.every((t) => /^[0-9a-f]{64}$/.test(t || "")), "a live view or WebSocket opened without a ticket: " +
    opened.join(", "));
  check(new Set(tickets).size === tickets.length, "a ticket was used twice: " + opened.join(", "));
  const asked = requests.filter((r) => r.method === "POST" && new URL(r.url).pathname === "/tickets").length;
  check(asked >= tickets.length, asked + " tickets asked for, " + tickets.length + " used");
  console.log("tickets: " + tickets.length + " used (" + streams("admin").length + " admin live views, " +
    sockets.length + " WebSockets), " + asked + " asked for");

  step = "nothing left 127.0.0.1, no CSP violation, no script error";
  check(outside.length === 0, "requests left the box: " + outside.join(", "));
  check(cspViolations.length === 0, "CSP violations: " + cspViolations.join("; "));
  const refused = consoleErrors.filter((m) => /Content Security Policy|Refused to/i.test(m));
  check(refused.length === 0, "CSP errors in the console: " + refused.join("; "));
  check(pageErrors.length === 0, "page errors: " + pageErrors.join("; "));
  // The others are the answers the test provoked (a wrong key's 401, a viewer's 403).
  console.log("console errors (expected ones): " + JSON.stringify(consoleErrors));
  console.log("PAGE OK");
  await browser.close();
} catch (e) {
  console.error("FAILED at: " + step + "\n" + (e && e.stack ? e.stack : e));
  console.error("page errors: " + JSON.stringify(pageErrors));
  console.error("CSP violations: " + JSON.stringify(cspViolations));
  console.error("console errors: " + JSON.stringify(consoleErrors));
  try {
    await shot("failed");
  } catch (_) {
    /* the page may be gone */
  }
  await browser.close();
  process.exit(1);
}
