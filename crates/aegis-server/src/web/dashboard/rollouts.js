// Rollouts: the list, and one rollout live — overall progress and counts by state, a row per
// device with its phase, a progress bar, bytes and rate, its final state and reason, the
// pause / resume / abort / retry-failed controls, and elapsed and remaining time. Everything
// shown is re-read from the API on load (and after missed events), then kept up to date by
// the event stream, so a reload shows the same truth.

import { api, bytes, duration, empty, h, setText, shortSha, showError, stateLabel, store, subscribe, time } from "./core.js";

const FINAL = new Set(["succeeded", "failed", "rolled_back", "timed_out", "skipped", "cancelled"]);
const ORDER = ["pending", "in_progress", "succeeded", "failed", "rolled_back", "timed_out", "skipped", "cancelled"];

/// Seconds between re-reads of an open rollout: a safety net only, since the server publishes
/// every change (throttled progress included) and a lagging stream triggers a full reload.
/// Re-reading 1,000 targets is the page's heaviest work, so it is kept rare.
const RESYNC_EVERY_S = 30;
const PHASES = ["queued", "preflight", "triggered", "downloading", "verifying", "rebooting", "confirming", "done"];

/// How far along a target is: later attempts, then end states, then phase, then bytes.
function rank(t) {
  const stage = FINAL.has(t.state) ? 2 : t.state === "in_progress" ? 1 : 0;
  return ((t.attempts || 0) * 3 + stage) * 100 * 1e12 + PHASES.indexOf(t.phase) * 1e12 + (t.bytes || 0);
}

function firmwareName(sha) {
  const f = store.firmware.get(sha);
  return f ? `${f.project} ${f.version}` : shortSha(sha);
}

export function mountList(main) {
  const tbody = h("tbody");
  const box = h("div");
  main.append(h("h1", {}, "Rollouts"), box);
  function render() {
    const list = [...store.rollouts.values()].sort((a, b) => b.created_at.localeCompare(a.created_at));
    if (!list.length) {
      box.replaceChildren(empty("No rollouts yet.", h("p", {}, "Pick an image and devices on ", h("a", { href: "#/deploy" }, "Deploy"), ".")));
      return;
    }
    tbody.replaceChildren(
      ...list.map((r) =>
        h(
          "tr",
          { dataset: { id: r.id } },
          h("td", {}, h("a", { href: "#/rollout/" + encodeURIComponent(r.id) }, r.id)),
          h("td", {}, h("span.badge", { "data-state": r.state }, stateLabel(r.state))),
          h("td", {}, firmwareName(r.firmware)),
          h("td", {}, Object.entries(r.counts || {}).map(([k, v]) => `${stateLabel(k)} ${v}`).join(", ")),
          h("td.wide", {}, time(r.created_at)),
          h("td.wide", {}, r.reason || ""),
        ),
      ),
    );
    box.replaceChildren(
      h(
        "div.scroll",
        {},
        h("table.grid#rollouts", {}, h("thead", {}, h("tr", {}, ["Rollout", "State", "Firmware", "Targets", "Created", "Note"].map((t) => h("th", {}, t)))), tbody),
      ),
    );
  }
  render();
  return subscribe((ch) => {
    if (ch.reload || ch.rollouts.size) render();
  });
}

export function mountRollout(main, { args: [id] }) {
  const title = h("h1", {}, "Rollout ", h("span.mono", {}, id));
  const stateEl = h("span.badge#rollout-state");
  const what = h("span");
  const reason = h("p#rollout-reason.bad", { hidden: true, role: "status" });
  const overall = h("progress#overall", { max: 1, value: 0 });
  const overallText = h("span#overall-text");
  const counts = h("ul.counts#counts", { "aria-label": "Targets by state" });
  const elapsed = h("span#elapsed");
  const remaining = h("span#remaining");
  const buttons = {
    pause: h("button#pause", { type: "button" }, "Pause"),
    resume: h("button#resume", { type: "button" }, "Resume"),
    abort: h("button.danger#abort", { type: "button" }, "Abort"),
    "retry-failed": h("button#retry-failed", { type: "button" }, "Retry failed"),
  };
  const tbody = h("tbody");
  const body = h("div");
  main.append(
    h("p", {}, h("a", { href: "#/rollouts" }, "← Rollouts")),
    title,
    body,
  );
  body.append(
    h("p.summary", {}, stateEl, " ", what),
    reason,
    h("div.overall", {}, overall, overallText),
    counts,
    h("p.times", {}, "Elapsed ", elapsed, " · remaining ", remaining),
    h("div.toolbar", {}, Object.values(buttons)),
    h(
      "div.scroll",
      {},
      h(
        "table.grid#targets",
        {},
        h(
          "thead",
          {},
          h("tr", {}, ["Device", "Change", "State", "Phase", "Progress", "Bytes", "Rate", "Tries", "Reason"].map((t, i) =>
            h([1, 7].includes(i) ? "th.wide" : "th", { scope: "col" }, t),
          )),
        ),
        tbody,
      ),
    ),
  );

  let summary = null;
  const targets = new Map(); // device -> target
  const rows = new Map(); // device -> {tr, cells}
  const rates = new Map(); // device -> {t, bytes, rate}, only while it downloads

  for (const [action, btn] of Object.entries(buttons)) {
    btn.addEventListener("click", async () => {
      btn.disabled = true;
      try {
        summary = await api(`/rollouts/${encodeURIComponent(id)}/${action}`, { method: "POST" });
        store.rollouts.set(id, summary);
      } catch (e) {
        showError(e);
      }
      renderSummary();
    });
  }

  function makeRow(device) {
    const d = store.devices.get(device);
    const cells = {
      change: h("td.wide"),
      state: h("span.badge"),
      phase: h("td"),
      bar: h("progress", { max: 1, value: 0 }),
      bytes: h("td.num"),
      rate: h("td.num"),
      tries: h("td.wide.num"),
      reason: h("td.reason"),
    };
    const tr = h(
      "tr",
      { dataset: { device } },
      h("td", {}, h("a", { href: "#/device/" + encodeURIComponent(device) }, d?.hostname || device)),
      cells.change,
      h("td", {}, cells.state),
      cells.phase,
      h("td.bar", {}, cells.bar),
      cells.bytes,
      cells.rate,
      cells.tries,
      cells.reason,
    );
    return { tr, cells };
  }

  function renderTarget(t) {
    let row = rows.get(t.device);
    if (!row) {
      row = makeRow(t.device);
      rows.set(t.device, row);
      tbody.append(row.tr);
    }
    const c = row.cells;
    row.tr.dataset.state = t.state;
    setText(c.change, `${t.from_version || "?"} → ${t.to_version || "?"}`);
    c.state.dataset.state = t.state;
    setText(c.state, stateLabel(t.state));
    setText(c.phase, t.state === "in_progress" ? stateLabel(t.phase) : FINAL.has(t.state) ? "" : "waiting");
    const total = t.total || 0;
    const frac = total ? Math.min(1, t.bytes / total) : t.state === "succeeded" ? 1 : 0;
    if (c.bar.value !== frac) c.bar.value = frac;
    const label = `${Math.round(frac * 100)}%`;
    if (c.bar.getAttribute("aria-label") !== label) c.bar.setAttribute("aria-label", label);
    setText(c.bytes, total ? `${bytes(t.bytes)} / ${bytes(total)}` : "");
    // Download rate, smoothed, from successive byte counts.
    const now = performance.now();
    if (t.state === "in_progress" && t.phase === "downloading") {
      const prev = rates.get(t.device);
      if (prev && now > prev.t && t.bytes >= prev.bytes) {
        const inst = ((t.bytes - prev.bytes) * 1000) / (now - prev.t);
        const rate = prev.rate == null ? inst : prev.rate * 0.7 + inst * 0.3;
        rates.set(t.device, { t: now, bytes: t.bytes, rate });
        setText(c.rate, bytes(Math.round(rate)) + "/s");
      } else if (!prev) rates.set(t.device, { t: now, bytes: t.bytes, rate: null });
    } else {
      rates.delete(t.device);
      setText(c.rate, "");
    }
    setText(c.tries, t.attempts || "");
    setText(c.reason, t.error || "");
  }

  function renderSummary() {
    if (!summary) return;
    stateEl.dataset.state = summary.state;
    setText(stateEl, stateLabel(summary.state));
    const s = summary.strategy || {};
    setText(what, `${firmwareName(summary.firmware)} · parallel ${s.max_parallel}, canary ${s.canary}, pause past ${s.max_failure_pct}% failures, ${s.retries} retries, timeout ${s.timeout_s} s`);
    reason.hidden = !summary.reason;
    setText(reason, summary.reason ? `Paused: ${summary.reason}` : "");
    if (summary.reason && summary.state !== "paused") setText(reason, summary.reason);

    const n = {};
    for (const t of targets.values()) n[t.state] = (n[t.state] || 0) + 1;
    const total = targets.size;
    const done = [...targets.values()].filter((t) => FINAL.has(t.state)).length;
    overall.max = Math.max(1, total);
    overall.value = done;
    setText(overallText, `${done} of ${total} finished`);
    counts.replaceChildren(
      ...ORDER.filter((k) => n[k]).map((k) => h("li", { dataset: { state: k } }, h("span.badge", { "data-state": k }, stateLabel(k)), " ", n[k])),
    );

    const st = summary.started_at ? Date.parse(summary.started_at) : null;
    const end = summary.finished_at ? Date.parse(summary.finished_at) : Date.now();
    const el = st ? (end - st) / 1000 : null;
    setText(elapsed, duration(el));
    const active = summary.state === "running";
    setText(
      remaining,
      summary.finished_at || summary.state === "aborted" || summary.state === "completed"
        ? "none"
        : !active
          ? "stopped while " + stateLabel(summary.state)
          : done > 0 && el
            ? "about " + duration((el / done) * (total - done))
            : "estimating…",
    );
    const failures = (n.failed || 0) + (n.rolled_back || 0) + (n.timed_out || 0);
    const open = summary.state !== "completed" && summary.state !== "aborted";
    buttons.pause.disabled = summary.state !== "running";
    buttons.resume.disabled = summary.state !== "paused";
    buttons.abort.disabled = !open;
    buttons["retry-failed"].disabled = failures === 0 || summary.state === "aborted";
  }

  // Updates that arrive while the snapshot is being read: each is kept if it is further along
  // than what the snapshot says (it may be older or newer than the snapshot).
  let early = null;
  async function load() {
    early = new Map();
    try {
      const r = await api("/rollouts/" + encodeURIComponent(id));
      const { targets: list, ...rest } = r;
      summary = rest;
      targets.clear();
      for (const t of list) {
        const e = early.get(t.device);
        const best = e && rank(e) > rank(t) ? e : t;
        targets.set(t.device, best);
        renderTarget(best);
      }
      for (const [device, row] of rows) {
        if (!targets.has(device)) {
          row.tr.remove();
          rows.delete(device);
        }
      }
      early = null;
      renderSummary();
    } catch (e) {
      early = null;
      body.replaceChildren(e.status === 404 ? empty(`There is no rollout ${id}.`, h("p", {}, h("a", { href: "#/rollouts" }, "See all rollouts"), ".")) : h("p.bad", {}, e.message));
    }
  }

  const unsubscribe = subscribe((ch) => {
    if (ch.reload) return load();
    const changed = ch.targets.get(id);
    if (changed && early) for (const t of changed.values()) early.set(t.device, t);
    else if (changed) {
      for (const t of changed.values()) {
        targets.set(t.device, t);
        renderTarget(t);
      }
    }
    if (ch.rollouts.has(id)) {
      const s = store.rollouts.get(id);
      if (s) summary = s;
    }
    if (changed || ch.rollouts.has(id)) renderSummary();
  });
  // Progress events are throttled by the server; while the rollout is open, re-read it now
  // and then so bars and bytes never lag behind the API for long.
  let ticks = 0;
  const tick = setInterval(() => {
    renderSummary();
    const open = summary && (summary.state === "running" || summary.state === "paused");
    if (open && !document.hidden && ++ticks % RESYNC_EVERY_S === 0 && !early) load();
  }, 1000);
  load();
  return () => {
    unsubscribe();
    clearInterval(tick);
  };
}
