// The greeting screen (GET /kiosk): polls GET /kiosk/state every 400 ms and shows what it says:
// the idle clock (the box's local time), a greeting (name, time, in/out, the face crop of this
// sighting), a stranger's or an ambiguous face's notice. A new `seq` plays that state's short
// sound (Web Audio, made here: nothing is loaded from anywhere), unless the box turned sounds off
// (KIOSK_SOUND=false: no switch either) or the switch in the corner did (kept in localStorage).
// It keeps no list of who came: it shows the one thing the box says now.
"use strict";

const POLL_MS = 400;
const MUTE_KEY = "kiosk-muted";
const SCREENS = ["idle", "greeting", "stranger", "ambiguous"];
// Each state's notes: [frequency Hz, start s, length s].
const SOUNDS = {
  greeting: [[660, 0, 0.12], [880, 0.14, 0.22]],
  stranger: [[392, 0, 0.2], [294, 0.24, 0.32]],
  ambiguous: [[523, 0, 0.09], [523, 0.15, 0.09], [523, 0.3, 0.09]],
};

let lastSeq = null;
let boxSound = false;
let audio = null;
// Sounds played, on the body as data-sounds (what a test can see of them).
let played = 0;

function $(id) {
  return document.getElementById(id);
}

function muted() {
  try {
    return localStorage.getItem(MUTE_KEY) === "1";
  } catch (_) {
    return false;
  }
}

function setMuted(on) {
  try {
    localStorage.setItem(MUTE_KEY, on ? "1" : "0");
  } catch (_) {
    // Storage refused (a private window): the switch holds until the page reloads.
  }
  showSwitch();
}

function showSwitch() {
  const button = $("sound");
  button.hidden = !boxSound;
  button.textContent = muted() ? "Sound off" : "Sound on";
  button.setAttribute("aria-pressed", String(muted()));
}

function context() {
  if (!audio) audio = new AudioContext();
  if (audio.state === "suspended") audio.resume().catch(() => {});
  return audio;
}

function play(state) {
  const notes = SOUNDS[state];
  if (!notes || !boxSound || muted()) return;
  try {
    const ctx = context();
    const t0 = ctx.currentTime + 0.02;
    for (const [frequency, at, length] of notes) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, t0 + at);
      gain.gain.exponentialRampToValueAtTime(0.3, t0 + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + at + length);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t0 + at);
      osc.stop(t0 + at + length + 0.05);
    }
    played += 1;
    document.body.dataset.sounds = String(played);
  } catch (_) {
    // No audio output: the screen stays silent.
  }
}

function pad(n) {
  return String(n).padStart(2, "0");
}

// "2026-03-29" as the browser's language writes a date (the day is the box's, not re-zoned).
function longDate(iso) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(iso || "")) return "";
  const day = new Date(iso + "T12:00:00Z");
  return day.toLocaleDateString(undefined, {
    weekday: "long",
    day: "numeric",
    month: "long",
    year: "numeric",
    timeZone: "UTC",
  });
}

function showScreen(state) {
  const known = SCREENS.includes(state) ? state : "idle";
  document.body.dataset.state = known;
  for (const id of SCREENS) $(id).hidden = id !== known;
  return known;
}

function render(s) {
  boxSound = s.sound === true;
  showSwitch();
  $("clock").textContent = s.clock || "--:--";
  $("date").textContent = longDate(s.date);
  const state = showScreen(s.state);
  if (state === "greeting") {
    $("name").textContent = s.name || "";
    $("time").textContent = s.time || "";
    $("punch").textContent = s.punch || "";
    $("punch").hidden = !s.punch;
    const photo = $("photo");
    if (s.photo) {
      if (photo.getAttribute("src") !== s.photo) photo.src = s.photo;
      photo.hidden = false;
    } else {
      photo.hidden = true;
      photo.removeAttribute("src");
    }
  }
  // A new thing shown sounds once; what was up when the page opened does not.
  if (lastSeq !== null && s.seq !== lastSeq && state !== "idle") play(state);
  lastSeq = s.seq;
}

// Without the box: its clock goes on from this browser's, and nothing else is shown.
function offline() {
  $("offline").hidden = false;
  showScreen("idle");
  const now = new Date();
  $("clock").textContent = pad(now.getHours()) + ":" + pad(now.getMinutes());
}

async function poll() {
  try {
    const response = await fetch("/kiosk/state", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const state = await response.json();
    $("offline").hidden = true;
    render(state);
  } catch (_) {
    offline();
  }
  setTimeout(poll, POLL_MS);
}

$("sound").addEventListener("click", () => {
  setMuted(!muted());
  if (!muted()) play("greeting");
});
// A touch anywhere lets sound start where the browser waits for one (no autoplay policy flag).
document.addEventListener("pointerdown", () => {
  if (!boxSound || muted()) return;
  try {
    context();
  } catch (_) {
    // No audio output.
  }
});
$("photo").addEventListener("error", () => {
  $("photo").hidden = true;
});
poll();
