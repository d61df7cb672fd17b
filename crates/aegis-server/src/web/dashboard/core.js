// Shared by every view: the API client (with the operator token), the live store fed by
// GET /api/v1/events, DOM helpers and formatting.
//
// The store keeps one record per device, firmware image and rollout (maps keyed by id), so
// memory stays bounded however long the page is open. Events are not applied one by one:
// they are coalesced by key and flushed once per animation frame, and each view gets the
// set of keys that changed.

const token = new URLSearchParams(location.search).get("token");

/// `path` under /api/v1 with the token added, for links (exports) and EventSource.
export function apiUrl(path) {
  const url = "/api/v1" + path;
  if (!token) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

/// A failed API call: `message` is the server's sentence.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/// Calls the API; resolves to the JSON body (or null), rejects with an ApiError in words.
export async function api(path, { method = "GET", body } = {}) {
  const headers = {};
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch("/api/v1" + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "unreachable", "The server cannot be reached; is `aegis` still running?");
  }
  return parseResponse(resp.status, await resp.text());
}

/// Turns a status and body text into the JSON value or an ApiError.
export function parseResponse(status, text) {
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (status >= 200 && status < 300) return json;
  const err = json && json.error;
  throw new ApiError(
    status,
    err ? err.code : "http_" + status,
    err ? err.message : `The server answered ${status} without an explanation.`,
  );
}

/// Uploads a file as the raw body with XMLHttpRequest, which reports upload progress.
/// Resolves to {status, entry}; rejects with an ApiError.
export function upload(file, notes, onProgress) {
  return new Promise((resolve, reject) => {
    const q = new URLSearchParams({ filename: file.name });
    if (notes) q.set("notes", notes);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/firmware?" + q);
    if (token) xhr.setRequestHeader("Authorization", "Bearer " + token);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded, e.total);
    xhr.onload = () => {
      try {
        resolve({ status: xhr.status, entry: parseResponse(xhr.status, xhr.responseText) });
      } catch (e) {
        reject(e);
      }
    };
    xhr.onerror = () =>
      reject(new ApiError(0, "unreachable", "The upload was cut off; is the server still running?"));
    xhr.send(file);
  });
}

// ---------------------------------------------------------------- the live store

export const store = {
  devices: new Map(), // id -> device
  firmware: new Map(), // sha256 -> entry
  rollouts: new Map(), // id -> summary
  rejected: [], // newest first, at most MAX_REJECTED
  loaded: false,
};
const MAX_REJECTED = 100;

const listeners = new Set();
/// `fn(changes)` runs after each flush; changes = {devices:Set, firmware:Set, rollouts:Set,
/// targets: Map(rollout -> Map(device -> target)), audit: [records] (bounded), rejected:bool,
/// reload:bool}. Returns an unsubscribe function.
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

const MAX_PENDING_AUDIT = 200;
let pending = emptyChanges();
let scheduled = false;

function emptyChanges() {
  return {
    devices: new Set(),
    firmware: new Set(),
    rollouts: new Set(),
    targets: new Map(),
    audit: [],
    rejected: false,
    reload: false,
  };
}

function schedule() {
  if (scheduled) return;
  scheduled = true;
  // An animation frame when visible; the timer covers hidden tabs (no frames there).
  const timer = setTimeout(flush, 250);
  requestAnimationFrame(() => {
    clearTimeout(timer);
    flush();
  });
}

function flush() {
  if (!scheduled) return;
  scheduled = false;
  const changes = pending;
  pending = emptyChanges();
  for (const fn of listeners) {
    try {
      fn(changes);
    } catch (e) {
      console.error(e);
    }
  }
}

// Events that arrive while a reload is reading the API are held and applied after it, so the
// snapshot never overwrites something newer. Bounded: past the cap, read everything again.
const MAX_HELD = 10000;
let held = null;

/// Reads everything the views share from the API (first load, and after a missed event).
export async function reload() {
  held = [];
  let devices, firmware, rollouts, rejected;
  try {
    [devices, firmware, rollouts, rejected] = await Promise.all([
      api("/devices"),
      api("/firmware"),
      api("/rollouts"),
      api("/devices/rejected?limit=" + MAX_REJECTED).catch(() => []),
    ]);
  } catch (e) {
    held = null;
    throw e;
  }
  const replay = held;
  held = null;
  store.devices = new Map(devices.map((d) => [d.id, d]));
  store.firmware = new Map(firmware.map((f) => [f.sha256, f]));
  store.rollouts = new Map(rollouts.map((r) => [r.id, r]));
  store.rejected = rejected;
  store.loaded = true;
  pending.reload = true;
  if (replay.length >= MAX_HELD) return reload();
  for (const [name, data] of replay) apply(name, data);
  schedule();
}

function apply(name, data) {
  if (held) {
    if (held.length < MAX_HELD) held.push([name, data]);
    return;
  }
  switch (name) {
    case "device_updated":
      store.devices.set(data.id, data);
      pending.devices.add(data.id);
      break;
    case "device_rejected":
      store.rejected.unshift(data);
      store.rejected.length = Math.min(store.rejected.length, MAX_REJECTED);
      pending.rejected = true;
      break;
    case "firmware_added":
      store.firmware.set(data.sha256, data);
      pending.firmware.add(data.sha256);
      break;
    case "firmware_deleted":
      store.firmware.delete(data.sha256);
      pending.firmware.add(data.sha256);
      break;
    case "rollout_updated":
      store.rollouts.set(data.id, data);
      pending.rollouts.add(data.id);
      break;
    case "target_updated": {
      let m = pending.targets.get(data.rollout);
      if (!m) pending.targets.set(data.rollout, (m = new Map()));
      m.set(data.target.device, data.target);
      break;
    }
    case "audit_appended":
      pending.audit.push(data);
      if (pending.audit.length > MAX_PENDING_AUDIT) pending.audit.shift();
      break;
  }
  schedule();
}

const EVENTS = [
  "device_updated",
  "device_rejected",
  "firmware_added",
  "firmware_deleted",
  "rollout_updated",
  "target_updated",
  "audit_appended",
];

/// Opens the event stream; `onState("live" | "reconnecting")` tracks it. After a reconnect or
/// a `resync` (events were missed) everything is re-read, so the page never shows stale state.
export function connect(onState) {
  const source = new EventSource(apiUrl("/events"));
  let lost = false;
  source.onopen = () => {
    onState("live");
    if (lost) reload().catch(showError);
    lost = false;
  };
  source.onerror = () => {
    lost = true;
    onState("reconnecting");
  };
  for (const name of EVENTS) {
    source.addEventListener(name, (e) => {
      try {
        apply(name, JSON.parse(e.data));
      } catch (err) {
        console.error(name, err);
      }
    });
  }
  source.addEventListener("resync", () => reload().catch(showError));
  return source;
}

// ---------------------------------------------------------------- DOM helpers

/// h("tag.class#id", {attr: value, onclick: fn}, ...children): a new element. Children are
/// nodes or text (never parsed as HTML).
export function h(spec, attrs, ...children) {
  const [, tag, rest] = spec.match(/^([a-z0-9]+)(.*)$/i);
  const el = document.createElement(tag);
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === ".") el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/// Sets text only when it differs (cheap in-place updates of big tables).
export function setText(el, text) {
  text = String(text ?? "");
  if (el.textContent !== text) el.textContent = text;
}

/// An empty state: a short sentence and what to do about it.
export function empty(text, ...extra) {
  return h("div.empty", { role: "note" }, h("p", {}, text), ...extra);
}

/// Shows an error in words at the top of the page (and for screen readers).
export function showError(err) {
  const box = document.getElementById("alerts");
  const msg = err instanceof Error ? err.message : String(err);
  const item = h(
    "div.alert",
    {},
    h("span", {}, msg),
    h("button.link", { type: "button", "aria-label": "Dismiss", onclick: () => item.remove() }, "×"),
  );
  box.append(item);
  while (box.children.length > 3) box.firstChild.remove();
  setTimeout(() => item.remove(), 15000);
}

// ---------------------------------------------------------------- formatting

export function bytes(n) {
  if (n == null) return "";
  if (n < 1024) return n + " B";
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1024 / 1024).toFixed(2) + " MiB";
}

export function duration(s) {
  if (s == null || !isFinite(s)) return "—";
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

/// "seen 4 s ago" style age of an RFC 3339 time.
export function ago(ts) {
  if (!ts) return "never";
  const s = (Date.now() - Date.parse(ts)) / 1000;
  if (s < 1.5) return "just now";
  return duration(s) + " ago";
}

/// A local date and time, "2024-05-01 12:00:03" (unambiguous in every locale).
export function time(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function shortSha(sha) {
  return sha ? sha.slice(0, 12) : "";
}

/// Compares versions part by part (numbers numerically): "1.10.0" > "1.9.2".
export function compareVersions(a, b) {
  const pa = String(a).split(/[.\-+_ ]/);
  const pb = String(b).split(/[.\-+_ ]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? "";
    const y = pb[i] ?? "";
    const nx = /^\d+$/.test(x);
    const ny = /^\d+$/.test(y);
    const c = nx && ny ? Number(x) - Number(y) : x.localeCompare(y);
    if (c !== 0) return Math.sign(c);
  }
  return 0;
}

/// Newest library version per project: Map(project -> entry).
export function newestByProject() {
  const best = new Map();
  for (const f of store.firmware.values()) {
    const cur = best.get(f.project);
    if (!cur || compareVersions(f.version, cur.version) > 0) best.set(f.project, f);
  }
  return best;
}

/// The newer version a device should run, or null when it is up to date (or nothing newer of
/// its project is in the library).
export function newerFor(device, newest) {
  const f = device.project && newest.get(device.project);
  return f && compareVersions(f.version, device.version) > 0 ? f.version : null;
}

/// Human words for a target or rollout state.
export function stateLabel(s) {
  return String(s || "").replace(/_/g, " ");
}

/// Devices picked on the fleet page for a deployment (kept across views in this tab).
export const selection = new Set(JSON.parse(sessionStorage.getItem("aegis.selection") || "[]"));
export function saveSelection() {
  sessionStorage.setItem("aegis.selection", JSON.stringify([...selection]));
}
