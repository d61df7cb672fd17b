// Audit: the append-only log, newest first, filtered by device, rollout, kind, outcome and
// age (the API filters; the page keeps at most MAX_ROWS), new records arriving live, CSV and
// JSON exports of the same filter, and the hash-chain tamper check.

import { api, apiUrl, bytes, empty, h, setText, showError, stateLabel, store, subscribe, time } from "./core.js";

const MAX_ROWS = 500;
const KINDS = ["attempt", "transition", "rollout_created", "firmware_added", "firmware_deleted", "server_started"];
const OUTCOMES = ["succeeded", "failed", "rolled_back", "timed_out", "skipped", "cancelled", "in_progress", "pending"];
const SINCE = [["", "any time"], ["1h", "last hour"], ["24h", "last day"], ["7days", "last week"]];

export function mount(main, { query }) {
  const device = h("input#audit-device", { type: "search", placeholder: "device id", "aria-label": "Device id", list: "audit-devices" });
  const devices = h("datalist#audit-devices", {}, [...store.devices.values()].map((d) => h("option", { value: d.id }, d.hostname)));
  const rollout = h("input#audit-rollout", { type: "search", placeholder: "rollout id", "aria-label": "Rollout id" });
  const kind = h("select#audit-kind", { "aria-label": "Kind" }, h("option", { value: "" }, "any kind"), KINDS.map((k) => h("option", { value: k }, stateLabel(k))));
  const outcome = h("select#audit-outcome", { "aria-label": "Outcome" }, h("option", { value: "" }, "any outcome"), OUTCOMES.map((k) => h("option", { value: k }, stateLabel(k))));
  const since = h("select#audit-since", { "aria-label": "Age" }, SINCE.map(([v, t]) => h("option", { value: v }, t)));
  const search = h("input#audit-search", { type: "search", placeholder: "search the shown records", "aria-label": "Search the shown records" });
  device.value = query.get("device") || "";
  rollout.value = query.get("rollout") || "";
  const csv = h("a.button#export-csv", { download: "aegis-audit.csv" }, "Export CSV");
  const json = h("a.button#export-json", { download: "aegis-audit.json" }, "Export JSON");
  const verify = h("div#verify", { role: "status" });
  const count = h("span.muted#audit-count");
  const tbody = h("tbody");
  const box = h("div");
  const table = h(
    "table.grid#audit",
    {},
    h("thead", {}, h("tr", {}, ["#", "When", "What", "Rollout", "Device", "Versions", "Outcome", "Bytes", "Reason"].map((t, i) => h([0, 3, 7].includes(i) ? "th.wide" : "th", { scope: "col" }, t)))),
    tbody,
  );
  main.append(
    h("h1", {}, "Audit"),
    verify,
    h("form.toolbar", { role: "search", onsubmit: (e) => e.preventDefault() }, device, devices, rollout, kind, outcome, since, search, count, h("span.spacer"), csv, json),
    box,
    h("div.scroll", {}, table),
  );

  function params() {
    const q = new URLSearchParams();
    if (device.value.trim()) q.set("device", device.value.trim());
    if (rollout.value.trim()) q.set("rollout", rollout.value.trim());
    if (kind.value) q.set("kind", kind.value);
    if (outcome.value) q.set("outcome", outcome.value);
    if (since.value) q.set("since", since.value);
    return q;
  }

  function matches(r) {
    const q = params();
    if (q.get("device") && r.device !== q.get("device")) return false;
    if (q.get("rollout") && r.rollout !== q.get("rollout")) return false;
    if (q.get("kind") && r.kind !== q.get("kind")) return false;
    if (q.get("outcome") && r.outcome !== q.get("outcome")) return false;
    return true;
  }

  function row(r) {
    const d = r.device && store.devices.get(r.device);
    const tr = h(
      "tr",
      { dataset: { seq: r.seq, kind: r.kind, outcome: r.outcome || "" } },
      h("td.wide.num", {}, r.seq),
      h("td", {}, time(r.at)),
      h("td", {}, stateLabel(r.kind)),
      h("td.wide.mono", {}, r.rollout ? h("a", { href: "#/rollout/" + encodeURIComponent(r.rollout) }, r.rollout) : ""),
      h("td", {}, r.device ? h("a", { href: "#/device/" + encodeURIComponent(r.device) }, d?.hostname || r.device) : ""),
      h("td", {}, r.from_version || r.to_version ? `${r.from_version || "?"} → ${r.to_version || "?"}` : ""),
      h("td", {}, r.outcome ? h("span.badge", { "data-state": r.outcome }, stateLabel(r.outcome)) : ""),
      h("td.wide.num", {}, r.bytes != null ? bytes(r.bytes) : ""),
      h("td.reason", {}, r.error || ""),
    );
    tr.dataset.text = [r.kind, r.rollout, r.device, d?.hostname, r.from_version, r.to_version, r.outcome, r.error].join(" ").toLowerCase();
    return tr;
  }

  function filterShown() {
    const q = search.value.trim().toLowerCase();
    let n = 0;
    for (const tr of tbody.children) {
      tr.hidden = !!q && !tr.dataset.text.includes(q);
      if (!tr.hidden) n++;
    }
    setText(count, `${n} record${n === 1 ? "" : "s"}${tbody.children.length >= MAX_ROWS ? ` (newest ${MAX_ROWS})` : ""}`);
    table.hidden = tbody.children.length === 0;
    box.replaceChildren(tbody.children.length ? "" : empty("No audit records match these filters."));
  }

  let seq = 0; // guards against an older answer overwriting a newer one
  async function load() {
    const q = params();
    csv.href = apiUrl("/audit?" + new URLSearchParams([...q, ["format", "csv"]]));
    json.href = apiUrl("/audit?" + new URLSearchParams([...q, ["format", "json"]]));
    q.set("limit", MAX_ROWS);
    const mine = ++seq;
    try {
      const records = await api("/audit?" + q);
      if (mine !== seq) return;
      tbody.replaceChildren(...records.reverse().map(row));
      filterShown();
    } catch (e) {
      if (mine === seq) showError(e);
    }
  }

  async function check() {
    verify.replaceChildren(h("p.muted", {}, "Checking the audit log's hash chain…"));
    try {
      const v = await api("/audit/verify");
      const again = h("button.link", { type: "button", onclick: check }, "check again");
      verify.replaceChildren(
        v.intact
          ? h("p.ok#verify-result", { dataset: { intact: "true" } }, `Tamper check: intact. All ${v.records} records verify against the hash chain. `, again)
          : h(
              "p.bad#verify-result",
              { dataset: { intact: "false" } },
              `Tamper check FAILED at record ${v.first_bad?.seq ?? "?"}: ${v.first_bad?.reason ?? "the chain does not verify"}. The log was changed outside AegisOTA. `,
              again,
            ),
      );
    } catch (e) {
      verify.replaceChildren(h("p.bad", {}, "The tamper check could not run: " + e.message));
    }
  }

  for (const el of [device, rollout, kind, outcome, since]) el.addEventListener("change", load);
  search.addEventListener("input", filterShown);
  const unsubscribe = subscribe((ch) => {
    if (ch.reload) return load();
    if (!ch.audit.length || since.value) return;
    for (const r of ch.audit) {
      if (!matches(r)) continue;
      if (tbody.querySelector(`tr[data-seq="${r.seq}"]`)) continue;
      tbody.prepend(row(r));
      if (tbody.children.length > MAX_ROWS) tbody.lastChild.remove();
    }
    filterShown();
  });
  load();
  check();
  return unsubscribe;
}
