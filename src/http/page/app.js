// The box's page: plain JavaScript served from the binary, talking to the same API as curl does.
// Every value from the server is put in the page as text (textContent), never as HTML, and no
// handler is written into markup: the page runs under a Content-Security-Policy without
// 'unsafe-inline'. With API keys on, the key is asked for once and kept in this tab's session
// storage; nothing is shown before the server accepted it (`GET /session`, which also names the
// key's role: the page shows only what that role may do). The key travels only in the
// `X-API-Key` header: the live view and the WebSocket, which cannot carry a header, are opened
// with a single-use ticket (`POST /tickets`), a new one for every opening.
"use strict";

const KEY_STORE = "face-attendance-key";
// From least to most: each role may do what the ones before it may.
const ROLES = ["kiosk", "viewer", "operator", "admin"];
let key = sessionStorage.getItem(KEY_STORE) || "";
// `GET /session`'s answer: {role, label, keys_required}.
let session = null;
// Whether to show the camera's live view (false only when /health says there is no camera).
let camera = false;
// The box's cameras, from /health `cameras` ({name, direction}); a switch shows when there are
// several. `liveCamera`: the one watched, by name ("" = the box's first).
let cameras = [];
let liveCamera = "";
let feed = null;
let feedOpening = false;
// Bumped whenever the live view stops (or its image restarts), so answers that arrive for an
// older start are dropped.
let liveRun = 0;
let imageRun = 0;
let imageShown = false;
let statusTimer = null;
let lastFrames = null;
const objectUrls = new Set();

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function say(text, isError) {
  const m = $("message");
  m.textContent = text;
  m.className = isError ? "error" : "";
  m.hidden = !text;
}

// Whether the key's role includes `role`.
function may(role) {
  return !!session && ROLES.indexOf(session.role) >= ROLES.indexOf(role);
}

// Shows the controls of the key's role only (data-role: the least role that may use it).
function applyRole() {
  for (const e of document.querySelectorAll("[data-role]")) e.hidden = !may(e.dataset.role);
  $("who-text").textContent = session.role + " · " + session.label;
  $("who").hidden = false;
  $("change-key").hidden = !session.keys_required;
}

// fetch with the key; a 401 sends the user back to the key form.
async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    showLogin("The key was refused.");
    throw new Error("unauthorized");
  }
  return response;
}

async function apiJson(path, options) {
  const response = await api(path, options);
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const why = (body && (body.detail || body.error || body.message)) || response.statusText;
    throw new Error(typeof why === "string" ? why : JSON.stringify(why));
  }
  return body;
}

// A single-use ticket to open the live view or the WebSocket (both cannot send the key in a
// header, and a key in a URL would end up in history, the DOM and logs).
async function ticket() {
  const answer = await apiJson("/tickets", { method: "POST" });
  if (!answer || typeof answer.ticket !== "string") throw new Error("the box gave no ticket");
  return answer.ticket;
}

// An image behind the key: fetched with the header, shown from a blob.
async function keyedImage(img, path) {
  try {
    const response = await api(path);
    if (!response.ok) {
      img.alt = "no photo";
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    objectUrls.add(url);
    img.src = url;
  } catch (_) {
    img.alt = "no photo";
  }
}

function forgetImages() {
  for (const url of objectUrls) URL.revokeObjectURL(url);
  objectUrls.clear();
}

function showLogin(error) {
  session = null;
  $("tabs").hidden = true;
  $("who").hidden = true;
  for (const s of document.querySelectorAll("main > section")) s.hidden = true;
  stopLive();
  $("login").hidden = false;
  $("login-error").textContent = error || "";
  $("login-error").hidden = !error;
  $("login-key").focus();
}

async function boot() {
  let response;
  let body = null;
  try {
    response = await fetch("/session", { headers: key ? { "X-API-Key": key } : {} });
    body = await response.json();
  } catch (e) {
    if (!response) {
      say("The box does not answer: " + e.message, true);
      return;
    }
  }
  if (response.status === 401) {
    showLogin(key ? "The key was refused." : "");
    return;
  }
  if (response.status === 429) {
    const wait = response.headers.get("Retry-After");
    showLogin("Too many wrong keys from this address: try again" + (wait ? " in " + wait + " s." : " later."));
    return;
  }
  if (!response.ok || !body || !ROLES.includes(body.role)) {
    const why = (body && (body.error || body.detail)) || "HTTP " + response.status;
    say("The box refused this page: " + why, true);
    return;
  }
  session = body;
  camera = await cameraRuns();
  $("login").hidden = true;
  $("tabs").hidden = false;
  applyRole();
  show(location.hash.slice(1) || "live");
}

// Whether the box runs a camera, from /health (its full answer names the camera), and which
// cameras (`cameras`). When the answer says nothing either way, the live view is tried.
async function cameraRuns() {
  try {
    const h = await apiJson("/health");
    cameras = Array.isArray(h.cameras)
      ? h.cameras.filter((c) => c && typeof c.name === "string" && c.name !== "")
      : [];
    if (!cameras.some((c) => c.name === liveCamera)) liveCamera = "";
    return h.camera !== undefined || h.http === undefined;
  } catch (_) {
    return true;
  }
}

const views = {
  live: openLive,
  people: () => loadPeople(),
  unknowns: loadUnknowns,
  today: loadToday,
  status: loadStatus,
};

function show(tab) {
  const button = document.querySelector('#tabs button[data-tab="' + tab + '"]');
  if (!views[tab] || !button || button.hidden) tab = "live";
  for (const b of document.querySelectorAll("#tabs button")) {
    b.classList.toggle("on", b.dataset.tab === tab);
  }
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== tab;
  if (tab !== "live") stopLive();
  if (statusTimer) clearInterval(statusTimer);
  statusTimer = null;
  say("");
  forgetImages();
  views[tab]().catch((e) => {
    if (e.message !== "unauthorized") say(e.message, true);
  });
}

// --- Live ---------------------------------------------------------------------------------

async function openLive() {
  // A kiosk key may follow the recognitions but not watch the camera.
  const view = camera && may("viewer");
  $("no-camera").hidden = camera;
  $("live-image").hidden = !view;
  $("no-view").hidden = true;
  showCameraSwitch(view);
  if (view) startImage();
  if (!feed) connectFeed();
}

// One button per camera when the box has several; the one watched is marked. Names are the
// box's settings, shown as text.
function showCameraSwitch(view) {
  const box = $("live-cameras");
  box.replaceChildren();
  box.hidden = !view || cameras.length < 2;
  if (box.hidden) return;
  const watched = liveCamera || cameras[0].name;
  for (const c of cameras) {
    const label = c.name + (typeof c.direction === "string" && c.direction ? " (" + c.direction + ")" : "");
    const b = el("button", label, c.name === watched ? "on" : "");
    b.type = "button";
    b.dataset.camera = c.name;
    b.setAttribute("aria-pressed", String(c.name === watched));
    b.onclick = () => {
      if (c.name === (liveCamera || cameras[0].name)) return;
      liveCamera = c.name;
      showCameraSwitch(true);
      $("no-view").hidden = true;
      startImage();
    };
    box.append(b);
  }
}

function stopLive() {
  liveRun++;
  stopImage();
  if (feed) {
    feed.onclose = null;
    feed.close();
    feed = null;
  }
}

function stopImage() {
  imageRun++;
  imageShown = false;
  // Dropping the source ends the stream, so a hidden tab holds no viewer's place.
  $("live-image").removeAttribute("src");
}

// (Re)starts the live view with a ticket of its own.
async function startImage() {
  stopImage();
  const run = imageRun;
  let t;
  try {
    t = await ticket();
  } catch (e) {
    if (e.message !== "unauthorized" && run === imageRun) showNoView("The live view did not open: " + e.message);
    return;
  }
  if (run !== imageRun || $("live").hidden) return;
  const which = liveCamera ? "camera=" + encodeURIComponent(liveCamera) + "&" : "";
  $("live-image").src = "/stream.mjpg?" + which + "ticket=" + encodeURIComponent(t);
}

function showNoView(text) {
  $("no-view").textContent = text;
  $("no-view").hidden = false;
}

// The stream ended or was refused: one that had shown frames is opened again (with a new
// ticket); one that never did is not tried in a loop.
function liveImageFailed() {
  const img = $("live-image");
  if (!img.getAttribute("src") || $("live").hidden) return;
  const run = imageRun;
  if (!imageShown) {
    stopImage();
    showNoView("The live view did not open (the box refused it or has no camera).");
    return;
  }
  imageShown = false;
  setTimeout(() => {
    if (run === imageRun && !$("live").hidden) startImage();
  }, 2000);
}

async function connectFeed() {
  if (feed || feedOpening) return;
  const run = liveRun;
  feedOpening = true;
  let t;
  try {
    t = await ticket();
  } catch (e) {
    feedOpening = false;
    if (e.message === "unauthorized") return;
    $("feed-state").textContent = "No live feed (" + e.message + "); trying again…";
    retryFeed(run);
    return;
  }
  feedOpening = false;
  if (run !== liveRun || $("live").hidden || feed) return;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(scheme + "//" + location.host + "/ws/recognitions?ticket=" + encodeURIComponent(t));
  feed = ws;
  ws.onopen = () => ($("feed-state").textContent = "Live: new recognitions appear here.");
  ws.onmessage = (m) => {
    try {
      addRecognition(JSON.parse(m.data));
    } catch (_) {
      /* not an event */
    }
  };
  ws.onclose = () => {
    if (feed !== ws) return;
    $("feed-state").textContent = "Disconnected; reconnecting…";
    feed = null;
    retryFeed(run);
  };
}

// Opens the feed again (with a new ticket) after a pause, if the live view still shows.
function retryFeed(run) {
  setTimeout(() => {
    if (run === liveRun && !$("live").hidden && !feed) connectFeed();
  }, 2000);
}

function addRecognition(e) {
  const li = el("li");
  const who = e.candidates ? e.candidates.join(" or ") + "?" : e.student_id;
  li.className = e.type === "ambiguous" ? "ambiguous" : e.student_id === "Unknown" ? "unknown" : "";
  li.append(el("strong", who, "who"));
  const parts = [new Date((e.ts || 0) * 1000).toLocaleTimeString()];
  if (typeof e.distance === "number") parts.push("distance " + e.distance.toFixed(3));
  if (e.decision) parts.push(e.decision.frames + " frames");
  if (e.dispatch) parts.push("webhook: " + e.dispatch.status);
  li.append(el("div", parts.join(" · "), "muted"));
  const list = $("feed");
  list.prepend(li);
  while (list.children.length > 50) list.lastChild.remove();
}

// --- People -------------------------------------------------------------------------------

async function loadPeople() {
  const q = $("people-search").value.trim();
  const group = $("people-group").value.trim();
  const answer = await apiJson("/people?limit=200&q=" + encodeURIComponent(q) +
    (group ? "&group=" + encodeURIComponent(group) : ""));
  $("people-total").textContent = "(" + answer.total + ")";
  const list = $("people-list");
  list.replaceChildren();
  for (const p of answer.people) {
    const li = el("li");
    li.dataset.id = p.student_id;
    const img = el("img");
    img.alt = p.student_id;
    keyedImage(img, "/people/" + encodeURIComponent(p.student_id) + "/samples/0.jpg");
    const open = el("button", "Open");
    open.onclick = () => openPerson(p.student_id);
    li.append(img, el("span", p.student_id, "id"));
    if (p.name) li.append(el("span", p.name, "name"));
    if (p.group) li.append(el("span", p.group, "muted group"));
    li.append(el("span", p.samples + " samples", "muted"), open);
    list.append(li);
  }
}

async function openPerson(id) {
  const p = await apiJson("/people/" + encodeURIComponent(id));
  $("person").hidden = false;
  $("person").dataset.id = id;
  $("person-id").textContent = p.name ? p.name + " (" + id + ")" : id;
  $("person-label").textContent = p.group ? "Group: " + p.group : "";
  $("label-name").value = p.name || "";
  $("label-group").value = p.group || "";
  const samples = $("person-samples");
  samples.replaceChildren();
  for (const s of p.samples) {
    const li = el("li");
    const img = el("img");
    img.alt = id + " sample " + s.index;
    if (s.crop) keyedImage(img, s.crop);
    const q = s.quality ? s.quality.face_px + " px" : "";
    li.append(img, el("span", q, "muted"));
    if (may("admin")) {
      const remove = el("button", "Delete sample", "danger");
      remove.onclick = async () => {
        if (!confirm("Delete this sample of " + id + "?")) return;
        await act(() => apiJson("/people/" + encodeURIComponent(id) + "/samples/" + s.index, { method: "DELETE" }),
          "Sample deleted.");
        openPerson(id).catch(() => ($("person").hidden = true));
        loadPeople();
      };
      li.append(remove);
    }
    samples.append(li);
  }
  const history = $("person-history");
  history.replaceChildren();
  for (const h of p.history || []) {
    history.append(el("li", new Date(h.time * 1000).toLocaleString() + ": " + h.action + " by " + h.by));
  }
  try {
    const seen = await apiJson("/events?student_id=" + encodeURIComponent(id) + "&limit=50");
    for (const e of seen.events.slice(-20)) {
      history.append(el("li", new Date(e.at_ms).toLocaleString() + ": seen (" + e.kind + ")"));
    }
  } catch (_) {
    /* no event log: the gallery's history is enough */
  }
}

async function act(work, done) {
  say("Working…");
  try {
    await work();
    say(done);
    return true;
  } catch (e) {
    if (e.message !== "unauthorized") say(e.message, true);
    return false;
  }
}

function enrollForm() {
  const id = $("enroll-id").value.trim();
  if (!$("enroll-id").reportValidity()) return null;
  return id;
}

async function enrollUpload(event) {
  event.preventDefault();
  const id = enrollForm();
  const file = $("enroll-file").files[0];
  if (!id) return;
  if (!file) {
    say("Choose a photo first.", true);
    return;
  }
  const form = new FormData();
  form.append("student_id", id);
  appendLabel(form);
  form.append("image", file);
  const ok = await act(() => apiJson("/enroll", { method: "POST", body: form }), "Enrolled " + id + ".");
  if (ok) {
    $("enroll-file").value = "";
    $("enroll-name").value = "";
    $("enroll-group").value = "";
    await loadPeople();
  }
}

async function enrollCapture() {
  const id = enrollForm();
  if (!id) return;
  say("Look at the camera: taking 3 photos (up to 20 s)…");
  const ok = await act(
    () => {
      const form = new FormData();
      appendLabel(form);
      return apiJson("/people/" + encodeURIComponent(id) + "/capture?samples=3&seconds=20",
        { method: "POST", body: form });
    },
    "Enrolled " + id + " from the camera.");
  if (ok) await loadPeople();
}

// Saves the person's name and group: an empty field clears it.
async function saveLabel(event) {
  event.preventDefault();
  const id = $("person").dataset.id;
  const name = $("label-name").value.trim();
  const group = $("label-group").value.trim();
  const body = JSON.stringify({ name: name || null, group: group || null });
  const ok = await act(() => apiJson("/people/" + encodeURIComponent(id), {
    method: "PATCH", headers: { "Content-Type": "application/json" }, body,
  }), "Saved the name and group of " + id + ".");
  if (ok) {
    await openPerson(id);
    await loadPeople();
  }
}

// The enroll form's name and group, added to `form` when given.
function appendLabel(form) {
  for (const field of ["name", "group"]) {
    const value = $("enroll-" + field).value.trim();
    if (value) form.append(field, value);
  }
}

async function renamePerson(event) {
  event.preventDefault();
  const from = $("person").dataset.id;
  const to = $("rename-to").value.trim();
  const form = new FormData();
  form.append("student_id", to);
  const ok = await act(() => apiJson("/people/" + encodeURIComponent(from) + "/rename", { method: "POST", body: form }),
    "Renamed " + from + " to " + to + ".");
  if (ok) {
    $("rename-to").value = "";
    await openPerson(to);
    await loadPeople();
  }
}

async function deletePerson() {
  const id = $("person").dataset.id;
  if (!confirm("Delete " + id + " and every sample?")) return;
  const ok = await act(() => apiJson("/people/" + encodeURIComponent(id), { method: "DELETE" }), "Deleted " + id + ".");
  if (ok) {
    $("person").hidden = true;
    await loadPeople();
  }
}

// --- Unknowns -----------------------------------------------------------------------------

async function loadUnknowns() {
  const answer = await apiJson("/unknowns");
  const list = $("unknown-list");
  list.replaceChildren();
  if (!answer.clusters.length) list.append(el("li", "No unknown faces kept.", "muted"));
  for (const c of answer.clusters) {
    const li = el("li");
    li.dataset.cluster = c.cluster;
    for (const crop of c.crops.slice(0, 3)) {
      const img = el("img");
      img.alt = "unknown face";
      keyedImage(img, crop);
      li.append(img);
    }
    li.append(el("span", c.count + " sightings, last " + new Date(c.last_seen * 1000).toLocaleString(), "muted"));
    list.append(li);
    if (!may("operator")) continue;
    const form = el("form");
    const input = el("input");
    input.placeholder = "Student id";
    input.required = true;
    input.pattern = "[A-Za-z0-9_.\\-]+";
    const enroll = el("button", "Enroll");
    enroll.type = "submit";
    form.append(input, enroll);
    form.onsubmit = async (event) => {
      event.preventDefault();
      const body = new FormData();
      body.append("student_id", input.value.trim());
      const ok = await act(() => apiJson("/unknowns/" + c.cluster + "/enroll", { method: "POST", body }),
        "Enrolled " + input.value.trim() + ".");
      if (ok) await loadUnknowns();
    };
    const forget = el("button", "Forget", "danger");
    forget.onclick = async () => {
      if (!confirm("Forget these faces?")) return;
      const ok = await act(() => apiJson("/unknowns/" + c.cluster, { method: "DELETE" }), "Forgotten.");
      if (ok) await loadUnknowns();
    };
    li.append(form, forget);
  }
}

// --- Today --------------------------------------------------------------------------------

// The report shown last: its day's bounds give the events CSV its range.
let todayReport = null;

// The report's query: the day picked (else the box's today) and the group, if any.
function todayQuery() {
  const q = new URLSearchParams();
  if ($("today-date").value) q.set("date", $("today-date").value);
  const group = $("today-group").value.trim();
  if (group) q.set("group", group);
  return q.toString();
}

// `2026-10-25T07:42:10+01:00` as the box's local `07:42` (its own clock, not this browser's).
function boxTime(t) {
  return t ? t.slice(11, 16) : "–";
}

async function loadToday() {
  const r = await apiJson("/reports/daily?" + todayQuery());
  todayReport = r;
  if (!$("today-date").value) $("today-date").value = r.date;
  $("today-day").textContent = "(" + r.date + ", " + r.timezone + (r.group ? ", " + r.group : "") + ")";
  $("today-present").textContent = r.present;
  $("today-absent").textContent = r.absent;
  const body = $("today-table").tBodies[0];
  body.replaceChildren();
  // Those who came first, by their first sighting; then those not seen.
  const people = r.people.slice().sort((a, b) => {
    if (a.present !== b.present) return a.present ? -1 : 1;
    return (a.first_seen || "").localeCompare(b.first_seen || "") || a.student_id.localeCompare(b.student_id);
  });
  for (const p of people) {
    const tr = el("tr", null, p.present ? "present" : "absent");
    tr.dataset.id = p.student_id;
    const who = p.name ? p.name + " (" + p.student_id + ")" : p.student_id;
    const seen = p.present ? p.sightings : "not seen";
    for (const v of [who, p.group || "", boxTime(p.first_in), boxTime(p.last_out), seen]) {
      tr.append(el("td", v));
    }
    body.append(tr);
  }
}

// Saves the answer of `path` as the file `name` (or says why not).
async function download(path, name) {
  const response = await api(path);
  if (!response.ok) {
    let why = response.statusText;
    try {
      why = (await response.json()).error || why;
    } catch (_) {
      /* not JSON: the status says it */
    }
    say("The CSV could not be made: " + why, true);
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const a = el("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function downloadToday() {
  const date = $("today-date").value || (todayReport && todayReport.date) || "today";
  const group = $("today-group").value.trim();
  const name = "attendance-" + date + (group ? "-" + group.replace(/[^A-Za-z0-9_-]/g, "_") : "") + ".csv";
  await download("/reports/daily?format=csv&" + todayQuery(), name);
}

// The events of the day shown (its local bounds, from the report).
async function downloadTodayEvents() {
  if (!todayReport) await loadToday();
  const q = new URLSearchParams({ format: "csv", since: todayReport.day.start, until: todayReport.day.end });
  await download("/events?" + q.toString(), "events-" + todayReport.date + ".csv");
}

// --- Status -------------------------------------------------------------------------------

async function loadStatus() {
  await refreshStatus();
  statusTimer = setInterval(() => refreshStatus().catch(() => {}), 2000);
}

async function refreshStatus() {
  const h = await apiJson("/health");
  const rows = [
    ["Version", h.version],
    ["Healthy", h.ok ? "yes" : "no"],
    ["People enrolled", h.labels + " (" + h.encodings + " samples)"],
  ];
  if (h.camera) {
    const now = Date.now();
    let fps = "";
    if (lastFrames && now > lastFrames.at) {
      fps = (((h.camera.frames_processed - lastFrames.n) * 1000) / (now - lastFrames.at)).toFixed(1) + " fps";
    }
    lastFrames = { n: h.camera.frames_processed, at: now };
    rows.push(["Camera", h.camera.state + (fps ? ", " + fps : "")]);
    rows.push(["Frames processed", h.camera.frames_processed + " (" + h.camera.frames_dropped + " dropped)"]);
  } else {
    rows.push(["Camera", "none"]);
  }
  if (h.outbox) {
    rows.push(["Webhook outbox", h.outbox.pending + " pending, " + h.outbox.delivered + " delivered"]);
    rows.push(["Last webhook error", h.outbox.last_error || "none"]);
  } else {
    rows.push(["Webhook", "off"]);
  }
  if (h.unknown_clusters !== undefined) rows.push(["Unknown faces", h.unknown_clusters + " clusters"]);
  if (h.event_log) rows.push(["Event log", JSON.stringify(h.event_log)]);
  if (h.http) rows.push(["Connections", String(h.http.connections)]);
  const list = $("status-list");
  list.replaceChildren();
  for (const [k, v] of rows) list.append(el("dt", k), el("dd", v));
}

// --- Wiring -------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login").onsubmit = (event) => {
    event.preventDefault();
    key = $("login-key").value.trim();
    sessionStorage.setItem(KEY_STORE, key);
    $("login-key").value = "";
    boot();
  };
  for (const b of document.querySelectorAll("#tabs button")) {
    b.onclick = () => {
      history.replaceState(null, "", "#" + b.dataset.tab);
      show(b.dataset.tab);
    };
  }
  let searchTimer = null;
  $("people-search").oninput = () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => loadPeople().catch((e) => say(e.message, true)), 250);
  };
  $("people-group").oninput = $("people-search").oninput;
  $("change-key").onclick = () => {
    // A fresh page: nothing the old key could see stays in it.
    sessionStorage.removeItem(KEY_STORE);
    location.replace(location.pathname);
  };
  $("live-image").onload = () => (imageShown = true);
  $("live-image").onerror = liveImageFailed;
  $("enroll").onsubmit = enrollUpload;
  $("enroll-capture").onclick = enrollCapture;
  $("rename").onsubmit = renamePerson;
  $("label").onsubmit = saveLabel;
  $("person-delete").onclick = deletePerson;
  $("today-form").onsubmit = (e) => {
    e.preventDefault();
    loadToday().catch((err) => say(err.message, true));
  };
  $("today-csv").onclick = () => downloadToday().catch((e) => say(e.message, true));
  $("today-events-csv").onclick = () => downloadTodayEvents().catch((e) => say(e.message, true));
  boot();
});
