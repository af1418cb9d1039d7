// The console's only script (CSP: 'self' scripts only, nothing inline). It swaps in the fragments the
// server sends over Server-Sent Events and turns deadlines and ages into countdowns. It never builds HTML
// from data: fragments arrive rendered and escaped by the server's templates.
"use strict";

let clockSkewMs = 0; // server time minus this browser's, from the latest fragment

function readServerNow(root) {
  const el = root.querySelector("[data-server-now]");
  if (el) clockSkewMs = Date.parse(el.dataset.serverNow) - Date.now();
}

function span(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m " + String(s % 60).padStart(2, "0") + "s";
  const h = Math.floor(m / 60);
  if (h < 48) return h + "h " + String(m % 60).padStart(2, "0") + "m";
  return Math.floor(h / 24) + "d " + (h % 24) + "h";
}

function tick() {
  const now = Date.now() + clockSkewMs;
  for (const el of document.querySelectorAll("[data-due]")) {
    const left = Date.parse(el.dataset.due) - now;
    el.textContent = left >= 0 ? "due in " + span(left) : "overdue " + span(-left);
    el.classList.toggle("overdue", left < 0);
    el.title = el.dataset.due;
  }
  for (const el of document.querySelectorAll("[data-since]")) {
    const at = Date.parse(el.dataset.since);
    if (!Number.isNaN(at)) {
      el.textContent = span(now - at) + " ago";
      el.title = el.dataset.since;
    }
  }
}

function follow(live) {
  const state = document.getElementById("live-state");
  const source = new EventSource(live.dataset.stream);
  source.addEventListener("open", () => state && (state.className = "live-state on"));
  source.addEventListener("error", () => state && (state.className = "live-state off"));
  source.addEventListener("fragment", (event) => {
    live.innerHTML = event.data; // server-rendered, escaped by its templates
    readServerNow(live);
    tick();
  });
  source.addEventListener("logout", () => {
    source.close();
    window.location.assign("/console/login");
  });
}

document.addEventListener("DOMContentLoaded", () => {
  readServerNow(document);
  tick();
  setInterval(tick, 1000);
  const live = document.getElementById("live");
  if (live && live.dataset.stream) follow(live);
});
