// Fleet: the live device table (search, filters, multi-select, outdated against the newest
// library image of the same project, "seen N s ago"), rejected announcements, and the page
// of one device with its deployment history from the audit log.

import {
  api,
  ago,
  empty,
  h,
  newerFor,
  newestByProject,
  saveSelection,
  selection,
  setText,
  showError,
  stateLabel,
  store,
  subscribe,
  time,
} from "./core.js";

const FILTERS = ["project", "chip", "version"];

export function mountFleet(main) {
  const search = h("input#fleet-search", {
    type: "search",
    placeholder: "hostname, id or IP",
    "aria-label": "Search devices",
  });
  const selects = {};
  for (const f of FILTERS) {
    selects[f] = h(`select#filter-${f}`, { "aria-label": `Filter by ${f}` }, h("option", { value: "" }, `any ${f}`));
  }
  const online = h(
    "select#filter-online",
    { "aria-label": "Filter by presence" },
    h("option", { value: "" }, "online or not"),
    h("option", { value: "yes" }, "online"),
    h("option", { value: "no" }, "offline"),
  );
  const outdated = h("input#filter-outdated", { type: "checkbox" });
  const shown = h("span.muted#fleet-count");
  const deployBtn = h("button.primary#deploy-selected", {
    type: "button",
    onclick: () => (location.hash = "#/deploy"),
  });
  const clearBtn = h("button#clear-selection", {
    type: "button",
    onclick: () => {
      selection.clear();
      saveSelection();
      refreshSelection();
    },
  }, "Clear selection");
  const all = h("input#select-all", { type: "checkbox", "aria-label": "Select all shown devices" });
  const tbody = h("tbody");
  const table = h(
    "table.grid#fleet",
    {},
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th.check", {}, all),
        h("th", { scope: "col" }, "Hostname"),
        h("th.wide", { scope: "col" }, "ID"),
        h("th.wide", { scope: "col" }, "IP"),
        h("th", { scope: "col" }, "Project"),
        h("th.wide", { scope: "col" }, "Chip"),
        h("th", { scope: "col" }, "Version"),
        h("th.wide", { scope: "col" }, "Slot"),
        h("th.wide", { scope: "col" }, "State"),
        h("th", { scope: "col" }, "Online"),
      ),
    ),
    tbody,
  );
  const emptyBox = h("div");
  const rejectedBox = h("section#rejected");

  main.append(
    h("h1", {}, "Fleet"),
    h(
      "div.toolbar",
      { role: "search" },
      search,
      ...FILTERS.map((f) => selects[f]),
      online,
      h("label.inline", {}, outdated, " outdated only"),
      shown,
      h("span.spacer"),
      clearBtn,
      deployBtn,
    ),
    emptyBox,
    h("div.scroll", {}, table),
    rejectedBox,
  );

  const rows = new Map(); // id -> {tr, cells, box}
  let newest = newestByProject();

  function makeRow(id) {
    const box = h("input", { type: "checkbox", "aria-label": "Select " + id });
    box.addEventListener("change", () => {
      if (box.checked) selection.add(id);
      else selection.delete(id);
      saveSelection();
      refreshSelection();
    });
    const link = h("a", { href: "#/device/" + encodeURIComponent(id) });
    const cells = {
      hostname: link,
      id: h("td.wide.mono"),
      ip: h("td.wide"),
      project: h("td"),
      chip: h("td.wide"),
      version: h("td"),
      slot: h("td.wide"),
      state: h("td.wide"),
      online: h("td"),
    };
    const tr = h(
      "tr",
      { dataset: { id } },
      h("td.check", {}, box),
      h("td", {}, link),
      cells.id,
      cells.ip,
      cells.project,
      cells.chip,
      cells.version,
      cells.slot,
      cells.state,
      cells.online,
    );
    return { tr, cells, box };
  }

  function fillRow(row, d) {
    const c = row.cells;
    setText(c.hostname, d.hostname || d.id);
    setText(c.id, d.id);
    setText(c.ip, d.port && d.port !== 80 ? `${d.ip}:${d.port}` : d.ip);
    setText(c.project, d.project || "");
    setText(c.chip, d.chip || "");
    const newer = newerFor(d, newest);
    const key = `${d.version}|${newer}`;
    if (c.version.dataset.key !== key) {
      c.version.dataset.key = key;
      c.version.replaceChildren(h("span.ver", {}, d.version || "?"));
      if (newer) c.version.append(h("span.badge.warn", { title: `${newer} is in the library` }, "outdated → " + newer));
    }
    row.tr.dataset.outdated = newer ? "1" : "";
    setText(c.slot, d.slot || "");
    setText(c.state, stateLabel(d.state) + (d.duplicate ? " (duplicate id at " + d.duplicate + ")" : ""));
    c.online.dataset.ts = d.last_seen;
    const on = d.online ? "online" : "offline";
    if (c.online.dataset.on !== on) {
      c.online.dataset.on = on;
      c.online.replaceChildren(h("span.dot", { "aria-hidden": "true" }), h("span.on", {}, on), " ", h("span.seen.muted"));
    }
    setText(c.online.lastChild, "seen " + ago(d.last_seen));
    row.box.checked = selection.has(d.id);
  }

  function matches(d) {
    const q = search.value.trim().toLowerCase();
    if (q && ![d.hostname, d.id, d.ip].some((v) => (v || "").toLowerCase().includes(q))) return false;
    for (const f of FILTERS) {
      const v = selects[f].value;
      if (v && (f === "version" ? d.version : d[f]) !== v) return false;
    }
    if (online.value && (online.value === "yes") !== d.online) return false;
    if (outdated.checked && !newerFor(d, newest)) return false;
    return true;
  }

  function applyFilter() {
    let n = 0;
    for (const [id, row] of rows) {
      const d = store.devices.get(id);
      const show = !!d && matches(d);
      row.tr.hidden = !show;
      if (show) n++;
    }
    setText(shown, `${n} of ${rows.size} shown`);
    refreshSelection();
  }

  function refreshSelection() {
    const n = selection.size;
    setText(deployBtn, n ? `Deploy to ${n} selected…` : "Deploy…");
    clearBtn.disabled = n === 0;
    let visible = 0;
    let picked = 0;
    for (const [id, row] of rows) {
      row.box.checked = selection.has(id);
      if (!row.tr.hidden) {
        visible++;
        if (row.box.checked) picked++;
      }
    }
    all.checked = visible > 0 && picked === visible;
    all.indeterminate = picked > 0 && picked < visible;
  }

  all.addEventListener("change", () => {
    for (const [id, row] of rows) {
      if (row.tr.hidden) continue;
      if (all.checked) selection.add(id);
      else selection.delete(id);
    }
    saveSelection();
    refreshSelection();
  });

  function refreshOptions() {
    for (const f of FILTERS) {
      const values = new Set();
      for (const d of store.devices.values()) {
        const v = f === "version" ? d.version : d[f];
        if (v) values.add(v);
      }
      const sel = selects[f];
      const have = [...sel.options].slice(1).map((o) => o.value);
      const want = [...values].sort();
      if (have.join("\n") === want.join("\n")) continue;
      const cur = sel.value;
      sel.replaceChildren(sel.options[0], ...want.map((v) => h("option", { value: v }, v)));
      sel.value = want.includes(cur) ? cur : "";
    }
  }

  function sortRows() {
    const sorted = [...rows.entries()].sort(([a], [b]) => {
      const da = store.devices.get(a);
      const db = store.devices.get(b);
      return (da?.hostname || a).localeCompare(db?.hostname || b) || a.localeCompare(b);
    });
    for (const [, row] of sorted) tbody.append(row.tr);
  }

  function refreshEmpty() {
    if (store.devices.size === 0) {
      if (!emptyBox.firstChild)
        emptyBox.append(
          empty(
            "No devices yet: is the device on this network and running the Aegis library?",
            h("p", {}, "To try the dashboard without hardware, run ", h("code", {}, "aegis demo"), "."),
          ),
        );
    } else emptyBox.replaceChildren();
    table.hidden = store.devices.size === 0;
  }

  function renderRejected() {
    const list = store.rejected;
    if (!list.length) {
      rejectedBox.replaceChildren();
      return;
    }
    rejectedBox.replaceChildren(
      h(
        "details",
        {},
        h("summary", {}, `Rejected announcements (${list.length})`),
        h("p.muted", {}, "Announcements that could not become devices, newest first."),
        h(
          "div.scroll",
          {},
          h(
            "table.grid",
            {},
            h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "Instance"), h("th", {}, "Address"), h("th", {}, "Reason"))),
            h(
              "tbody",
              {},
              list.map((r) => h("tr", {}, h("td", {}, time(r.at)), h("td", {}, r.instance), h("td", {}, r.addr || ""), h("td", {}, r.reason))),
            ),
          ),
        ),
      ),
    );
  }

  function full() {
    newest = newestByProject();
    for (const [id, row] of rows) {
      if (!store.devices.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    for (const d of store.devices.values()) update(d);
    sortRows();
    refreshOptions();
    refreshEmpty();
    renderRejected();
    applyFilter();
  }

  function update(d) {
    let row = rows.get(d.id);
    let added = false;
    if (!row) {
      row = makeRow(d.id);
      rows.set(d.id, row);
      tbody.append(row.tr);
      added = true;
    }
    fillRow(row, d);
    row.tr.hidden = !matches(d);
    return added;
  }

  const unsubscribe = subscribe((ch) => {
    if (ch.reload || ch.firmware.size) return full();
    let added = false;
    for (const id of ch.devices) {
      const d = store.devices.get(id);
      if (d && update(d)) added = true;
    }
    if (added) {
      sortRows();
      refreshEmpty();
    }
    if (ch.devices.size) {
      refreshOptions();
      applyFilter();
    }
    if (ch.rejected) renderRejected();
  });

  for (const el of [search, online, outdated, ...Object.values(selects)]) {
    el.addEventListener("input", applyFilter);
    el.addEventListener("change", applyFilter);
  }
  // "seen N s ago" moves on by itself.
  const tick = setInterval(() => {
    for (const row of rows.values()) {
      if (!row.tr.hidden && row.cells.online.lastChild) setText(row.cells.online.lastChild, "seen " + ago(row.cells.online.dataset.ts));
    }
  }, 1000);

  full();
  search.focus();
  return () => {
    unsubscribe();
    clearInterval(tick);
  };
}

export function mountDevice(main, { args: [id] }) {
  const fields = h("dl.facts");
  const history = h("tbody");
  const historyBox = h("div");
  main.append(
    h("p", {}, h("a", { href: "#/fleet" }, "← Fleet")),
    h("h1#device-title", {}, id),
    fields,
    h(
      "div.toolbar",
      {},
      h(
        "button.primary",
        {
          type: "button",
          onclick: () => {
            selection.clear();
            selection.add(id);
            saveSelection();
            location.hash = "#/deploy";
          },
        },
        "Deploy to this device…",
      ),
    ),
    h("h2", {}, "Deployment history"),
    historyBox,
  );

  function renderFacts() {
    const d = store.devices.get(id);
    if (!d) {
      fields.replaceChildren(empty("No device with this id is known. It may not have announced itself yet."));
      return;
    }
    const newer = newerFor(d, newestByProject());
    setText(document.getElementById("device-title"), d.hostname || d.id);
    const fact = (k, v) => [h("dt", {}, k), h("dd", {}, v ?? "")];
    fields.replaceChildren(
      ...fact("ID", d.id),
      ...fact("Address", `${d.ip}:${d.port}`),
      ...fact("Project", d.project),
      ...fact("Chip", d.chip),
      ...fact("Version", newer ? `${d.version} (outdated: ${newer} is in the library)` : d.version),
      ...fact("Image SHA-256", d.sha),
      ...fact("Slot", d.slot),
      ...fact("State", stateLabel(d.state)),
      ...fact("Online", `${d.online ? "online" : "offline"}, seen ${ago(d.last_seen)}`),
      ...fact("First seen", time(d.first_seen)),
      ...fact("Trusts server key", d.key || "none (accepts unsigned triggers)"),
      ...(d.duplicate ? fact("Duplicate", `another device announces this id from ${d.duplicate}`) : []),
    );
  }

  const row = (r) =>
    h(
      "tr",
      { dataset: { seq: r.seq } },
      h("td", {}, time(r.at)),
      h("td", {}, r.kind),
      h("td", {}, r.rollout ? h("a", { href: "#/rollout/" + encodeURIComponent(r.rollout) }, r.rollout) : ""),
      h("td", {}, r.from_version || r.to_version ? `${r.from_version || "?"} → ${r.to_version || "?"}` : ""),
      h("td", {}, r.outcome ? h("span.badge", { "data-state": r.outcome }, stateLabel(r.outcome)) : ""),
      h("td.wide", {}, r.error || ""),
    );
  const MAX_ROWS = 500;

  api("/audit?device=" + encodeURIComponent(id) + "&limit=" + MAX_ROWS)
    .then((records) => {
      history.replaceChildren(...records.reverse().map(row));
      historyBox.replaceChildren(
        records.length
          ? h(
              "div.scroll",
              {},
              h(
                "table.grid#history",
                {},
                h("thead", {}, h("tr", {}, ["When", "What", "Rollout", "Versions", "Outcome", "Reason"].map((t) => h("th", {}, t)))),
                history,
              ),
            )
          : empty("No deployments to this device yet."),
      );
    })
    .catch(showError);

  const unsubscribe = subscribe((ch) => {
    if (ch.reload || ch.devices.has(id) || ch.firmware.size) renderFacts();
    for (const r of ch.audit) {
      if (r.device !== id) continue;
      history.prepend(row(r));
      if (history.children.length > MAX_ROWS) history.lastChild.remove();
    }
  });
  renderFacts();
  const tick = setInterval(renderFacts, 5000);
  return () => {
    unsubscribe();
    clearInterval(tick);
  };
}

