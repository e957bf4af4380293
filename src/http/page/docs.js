// The API reference page (/docs): renders /openapi.json of the same server and runs its
// "try it" panels. Served as /ui/docs.js, loaded with `defer` (the page's Content-Security-Policy
// allows no inline script). Text from the spec or the server is always put in as text, never as
// HTML. The key travels only in the X-API-Key header; the WebSocket is opened with a single-use
// ticket (POST /tickets), a new one for every connection.
"use strict";
const $ = (id) => document.getElementById(id);
// Indented JSON, with arrays of plain values (boxes) kept on one line.
const pretty = (v) => JSON.stringify(v, null, 2)
  .replace(/\[\n\s*([^\[\]{}]*?)\n\s*\]/g, (_, inner) => "[" + inner.split(/,\n\s*/).join(", ") + "]");
let spec = null;

// el("tag", {class: …}, child, "text", …): a small DOM builder (text is never parsed as HTML).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// Text with `code` spans, as the descriptions in the spec are written.
function rich(text) {
  const frag = document.createDocumentFragment();
  String(text || "").split("`").forEach((part, i) => frag.append(i % 2 ? el("code", null, part) : part));
  return frag;
}

// Follows a local "$ref" ("#/components/…") to its target.
function resolve(obj) {
  if (!obj || !obj.$ref) return obj;
  return obj.$ref.replace(/^#\//, "").split("/").reduce((o, k) => (o ? o[k] : undefined), spec);
}
const refName = (obj) => (obj && obj.$ref ? obj.$ref.split("/").pop() : null);

function typeText(schema) {
  if (!schema) return "any";
  if (schema.$ref) return refName(schema);
  let t = schema.type || "any";
  if (t === "array") t = "array of " + typeText(schema.items);
  if (schema.format === "binary") t = "file (binary)";
  if (schema.enum) t += " ∈ {" + schema.enum.map((v) => JSON.stringify(v)).join(", ") + "}";
  if (schema.nullable) t += " | null";
  return t;
}

function schemaNotes(schema) {
  const s = resolve(schema) || {};
  const notes = [];
  if (s.default !== undefined) notes.push("default " + JSON.stringify(s.default));
  if (s.pattern) notes.push("pattern " + s.pattern);
  if (s.maxLength !== undefined) notes.push("max length " + s.maxLength);
  if (s.minimum !== undefined) notes.push("≥ " + s.minimum);
  return notes.join("; ");
}

function table(headings, rows) {
  return el("table", null, el("tr", null, ...headings.map((h) => el("th", null, h))),
    ...rows.map((cells) => el("tr", null, ...cells.map((c) => el("td", null, c)))));
}

// Example(s) of a media type or a schema, as [label, value] pairs.
function examplesOf(media) {
  if (!media) return [];
  if (media.examples) return Object.entries(media.examples).map(([k, ex]) => [resolve(ex).summary || k, resolve(ex).value]);
  if (media.example !== undefined) return [["", media.example]];
  const schema = resolve(media.schema);
  return schema && schema.example !== undefined ? [["", schema.example]] : [];
}

function exampleBlocks(media) {
  return examplesOf(media).map(([label, value]) =>
    el("div", null, label ? el("div", { class: "muted" }, "Example: " + label) : null, el("pre", null, pretty(value))));
}

function renderParameters(op) {
  const params = (op.parameters || []).map(resolve);
  if (!params.length) return null;
  return el("div", null, el("h4", null, "Parameters"), table(["name", "in", "type", "notes", "description"],
    params.map((p) => [el("code", null, p.name + (p.required ? " *" : "")), p.in, typeText(p.schema),
      schemaNotes(p.schema), rich(p.description)])));
}

function renderBody(op) {
  const body = resolve(op.requestBody);
  if (!body || !body.content) return null;
  const box = el("div", null, el("h4", null, "Request body" + (body.required ? " (required)" : "")));
  if (body.description) box.append(el("p", null, rich(body.description)));
  for (const [type, media] of Object.entries(body.content)) {
    box.append(el("div", null, "Content-Type ", el("code", null, type)));
    const schema = resolve(media.schema) || {};
    if (schema.properties) {
      const required = schema.required || [];
      box.append(table(["field", "type", "notes", "description"], Object.entries(schema.properties).map(([name, prop]) =>
        [el("code", null, name + (required.includes(name) ? " *" : "")), typeText(prop), schemaNotes(prop),
          rich((resolve(prop) || {}).description)])));
    } else if (schema.description) {
      box.append(el("p", null, rich(schema.description)));
    }
    box.append(...exampleBlocks(media));
  }
  return box;
}

function renderResponses(op) {
  const box = el("div", null, el("h4", null, "Responses"));
  for (const [status, raw] of Object.entries(op.responses || {})) {
    const r = resolve(raw) || {};
    const name = refName(raw);
    const head = el("span", null, el("span", { class: "status s" + status[0] }, status), " ",
      name ? el("code", null, name) : null, name ? " " : null, rich(r.description));
    const media = r.content && (r.content["application/json"] || Object.values(r.content)[0]);
    const blocks = exampleBlocks(media);
    if (r.content && !media) blocks.push(el("div", { class: "muted" }, Object.keys(r.content).join(", ")));
    if (status.startsWith("2") || status.startsWith("1")) {
      box.append(el("div", null, head, ...blocks));
    } else {
      box.append(el("details", null, el("summary", null, head), ...blocks));
    }
  }
  return box;
}

function renderRoute(path, method, op) {
  const id = (method + path).replace(/[^a-z0-9]+/gi, "-");
  $("toc").append(el("a", { href: "#" + id }, el("span", { class: "method " + method }, method.toUpperCase()), " ", path));
  return el("section", { class: "route", id },
    el("header", null, el("span", { class: "method " + method }, method.toUpperCase()),
      el("code", { class: "path" }, path), el("span", { class: "summary" }, op.summary || ""),
      (op.security || spec.security || []).length ? el("span", { class: "lock" }, "needs API key") : null),
    op.description ? el("p", null, rich(op.description)) : null,
    renderParameters(op), renderBody(op), renderResponses(op));
}

function render() {
  $("title").textContent = `${spec.info.title} ${spec.info.version}`;
  $("lead").replaceChildren(rich(spec.info.description || ""));
  const content = $("content");
  content.append(el("h2", null, "Routes"));
  const methods = ["get", "post", "put", "patch", "delete"];
  for (const [path, item] of Object.entries(spec.paths || {})) {
    for (const method of methods) if (item[method]) content.append(renderRoute(path, method, item[method]));
  }
  const components = spec.components || {};
  if (components.responses) {
    content.append(el("h2", { id: "errors" }, "Error answers"),
      el("p", null, rich("Every error is `{\"ok\":false,\"error\":\"…\"}` with one of these statuses.")));
    const rows = Object.entries(components.responses).map(([name, r]) => {
      const ex = examplesOf(r.content && r.content["application/json"])[0];
      return [el("code", null, name), rich(r.description), ex ? el("code", null, JSON.stringify(ex[1])) : ""];
    });
    content.append(table(["name", "meaning", "example"], rows));
  }
  const withExamples = Object.entries(components.schemas || {})
    .filter(([, s]) => s.type === "object" && s.description && s.example !== undefined);
  if (withExamples.length) {
    content.append(el("h2", { id: "messages" }, "Messages"));
    for (const [name, s] of withExamples) {
      content.append(el("section", { class: "route" }, el("h3", null, el("code", null, name)),
        el("p", null, rich(s.description)), el("pre", null, pretty(s.example))));
    }
  }
}

async function load() {
  try {
    const res = await fetch("/openapi.json", { headers: { Accept: "application/json" } });
    if (!res.ok) throw new Error(`the server answered HTTP ${res.status}`);
    spec = await res.json();
    render();
  } catch (err) {
    $("lead").textContent = "The API reference could not be shown.";
    $("error").hidden = false;
    $("error").textContent = `Could not load /openapi.json: ${err.message}. Is the face-attendance service running ` +
      "and is this page served by it? The panels below still work when it is.";
  }
}

$("send").onclick = async () => {
  const file = $("photo").files[0];
  if (!file) { $("answer").textContent = "Choose a photo first."; return; }
  const form = new FormData();
  form.append("image", file);
  $("answer").textContent = "Sending " + file.name + "…";
  try {
    const headers = apiKey() ? { "X-API-Key": apiKey() } : {};
    const res = await fetch("/recognize", { method: "POST", body: form, headers });
    const text = await res.text();
    let shown = text;
    try { shown = pretty(JSON.parse(text)); } catch (_) { /* not JSON: show as is */ }
    $("answer").textContent = `HTTP ${res.status}\n${shown}`;
  } catch (err) {
    $("answer").textContent = "Request failed: " + err.message;
  }
};

// The API key, kept for this tab only (the same entry as the box's page uses).
const KEY_STORE = "face-attendance-key";
const apiKey = () => sessionStorage.getItem(KEY_STORE) || "";
function showKey() {
  $("keystate").textContent = apiKey() ? "a key is set for this tab" : "no key: only open routes will answer if the server has keys";
}
$("savekey").onclick = () => {
  const key = $("apikey").value.trim();
  if (key) sessionStorage.setItem(KEY_STORE, key); else sessionStorage.removeItem(KEY_STORE);
  $("apikey").value = "";
  showKey();
};
showKey();

// A single-use ticket for the WebSocket, asked for with the key in a header.
async function ticket() {
  const headers = apiKey() ? { "X-API-Key": apiKey() } : {};
  const res = await fetch("/tickets", { method: "POST", headers });
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok || !body || typeof body.ticket !== "string") {
    throw new Error(`POST /tickets answered HTTP ${res.status}` + (body && body.error ? ": " + body.error : ""));
  }
  return body.ticket;
}

let ws = null;
let opening = false;
let received = 0;
$("connect").onclick = async () => {
  if (ws) { ws.close(); return; }
  if (opening) return;
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/recognitions";
  opening = true;
  $("wsstate").textContent = "asking for a ticket…";
  let t;
  try {
    t = await ticket();
  } catch (err) {
    $("wsstate").textContent = "no ticket: " + err.message;
    return;
  } finally {
    opening = false;
  }
  // Browsers cannot set headers on a WebSocket: a ticket, good once, goes in the query.
  ws = new WebSocket(url + "?ticket=" + encodeURIComponent(t));
  $("wsstate").textContent = "connecting to " + url + "…";
  $("connect").textContent = "Disconnect";
  ws.onopen = () => { $("wsstate").textContent = "connected to " + url; };
  ws.onerror = () => { $("wsstate").textContent = "connection error (is the service running?)"; };
  ws.onclose = () => {
    ws = null;
    $("connect").textContent = "Connect";
    if (!$("wsstate").textContent.startsWith("connection error")) $("wsstate").textContent = "closed";
  };
  ws.onmessage = (m) => {
    let text = m.data;
    try { text = JSON.stringify(JSON.parse(m.data)); } catch (_) { /* show as is */ }
    const lines = received++ ? $("messages").textContent.split("\n").slice(0, 199) : [];
    $("messages").textContent = [new Date().toLocaleTimeString() + "  " + text, ...lines].join("\n");
  };
};

load();
