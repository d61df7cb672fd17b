// Deploy: pick an image, the targets (the fleet page's selection, the outdated devices of the
// image's project, or all / by project, chip or version) and the strategy; the dry run shows
// who gets it, who is skipped and why, and how long it should take. Starting is possible only
// once the preview shown matches the form.

import { api, compareVersions, duration, empty, h, selection, shortSha, showError, store, stateLabel } from "./core.js";

const STRATEGY = [
  ["max_parallel", "Parallel limit", 10, "devices updating at the same time"],
  ["canary", "Canary size", 1, "devices in the first wave; all must succeed before the rest start"],
  ["max_failure_pct", "Max failures %", 20, "pause when failures exceed this share of the rollout's devices"],
  ["retries", "Retries", 1, "extra attempts per device after a retryable failure"],
  ["timeout_s", "Timeout (s)", 300, "per device, from trigger to confirmation"],
];

export function mount(main, { query }) {
  if (store.firmware.size === 0) {
    main.append(
      h("h1", {}, "Deploy"),
      empty("There is no firmware to deploy yet.", h("p", {}, h("a", { href: "#/firmware" }, "Upload an image first"), ".")),
    );
    return;
  }
  const images = [...store.firmware.values()].sort(
    (a, b) => a.project.localeCompare(b.project) || compareVersions(b.version, a.version),
  );
  const fw = h(
    "select#deploy-fw",
    { "aria-label": "Firmware" },
    images.map((f) =>
      h("option", { value: f.sha256 }, `${f.project} ${f.version} (${f.chip}, ${shortSha(f.sha256)})`),
    ),
  );
  fw.value = query.get("fw") && store.firmware.has(query.get("fw")) ? query.get("fw") : images[0].sha256;

  const values = (key) => [...new Set([...store.devices.values()].map((d) => d[key]).filter(Boolean))].sort();
  const choice = (value, label, extra) =>
    h(
      "label.choice",
      {},
      h("input", { type: "radio", name: "targets", value, id: "targets-" + value }),
      " ",
      label,
      extra ? [" ", extra] : null,
    );
  const pick = (key) => h("select", { "aria-label": key, id: "targets-" + key + "-value" }, values(key).map((v) => h("option", { value: v }, v)));
  const byProject = pick("project");
  const byChip = pick("chip");
  const byVersion = pick("version");
  const targets = h(
    "fieldset#targets",
    {},
    h("legend", {}, "Targets"),
    choice("selected", `the ${selection.size} devices selected on the Fleet page`),
    choice("outdated", "all outdated devices of this image's project"),
    choice("all", "all devices"),
    choice("project", "devices of project", byProject),
    choice("chip", "devices with chip", byChip),
    choice("version", "devices running version", byVersion),
  );
  const radios = targets.querySelectorAll("input[type=radio]");
  radios[0].disabled = selection.size === 0;
  (selection.size ? radios[0] : radios[1]).checked = true;

  const inputs = {};
  const strategy = h(
    "fieldset#strategy",
    {},
    h("legend", {}, "Strategy"),
    STRATEGY.map(([key, label, def, help]) =>
      h(
        "label.field",
        {},
        h("span", {}, label),
        (inputs[key] = h("input", { type: "number", min: 0, value: def, id: "strategy-" + key, title: help })),
      ),
    ),
    h("label.inline", {}, (inputs.allow_downgrade = h("input#strategy-allow_downgrade", { type: "checkbox" })), " allow downgrade"),
  );

  const previewBtn = h("button.primary#preview", { type: "submit" }, "Preview (dry run)");
  const startBtn = h("button.go#start", { type: "button", disabled: true }, "Start rollout");
  const planBox = h("section#plan", { "aria-live": "polite" });
  const form = h(
    "form.deploy",
    {},
    h("label.field", {}, h("span", {}, "Firmware"), fw),
    targets,
    strategy,
    h("div.toolbar", {}, previewBtn, startBtn),
  );
  main.append(h("h1", {}, "Deploy"), form, planBox);

  function request(dryRun) {
    const kind = targets.querySelector("input:checked").value;
    const spec =
      kind === "selected"
        ? { ids: [...selection] }
        : kind === "outdated" || kind === "all"
          ? { selector: kind }
          : { selector: `${kind}:${{ project: byProject, chip: byChip, version: byVersion }[kind].value}` };
    const s = {};
    for (const [key] of STRATEGY) {
      const n = Number(inputs[key].value);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${key.replace(/_/g, " ")} must be a whole number, 0 or more.`);
      s[key] = n;
    }
    s.allow_downgrade = inputs.allow_downgrade.checked;
    return { firmware: fw.value, targets: spec, strategy: s, dry_run: dryRun };
  }

  let current = null; // the request the shown plan answers
  function stale() {
    current = null;
    startBtn.disabled = true;
    planBox.classList.add("stale");
  }
  form.addEventListener("input", stale);
  form.addEventListener("change", stale);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    let req;
    try {
      req = request(true);
    } catch (err) {
      return showError(err);
    }
    previewBtn.disabled = true;
    try {
      const plan = await api("/rollouts", { method: "POST", body: req });
      showPlan(plan);
      current = req;
      startBtn.disabled = plan.deploy === 0;
      planBox.classList.remove("stale");
    } catch (err) {
      planBox.replaceChildren(h("p.bad", { role: "alert" }, err.message));
    } finally {
      previewBtn.disabled = false;
    }
  });

  startBtn.addEventListener("click", async () => {
    if (!current) return;
    startBtn.disabled = true;
    try {
      const rollout = await api("/rollouts", { method: "POST", body: { ...current, dry_run: false } });
      store.rollouts.set(rollout.id, rollout);
      location.hash = "#/rollout/" + encodeURIComponent(rollout.id);
    } catch (err) {
      showError(err);
      startBtn.disabled = false;
    }
  });

  function showPlan(plan) {
    const f = store.firmware.get(plan.firmware);
    const what = f ? `${f.project} ${f.version}` : shortSha(plan.firmware);
    planBox.replaceChildren(
      h("h2", {}, "Dry run"),
      h(
        "p#plan-summary",
        {},
        h("strong", {}, `${plan.deploy} ${plan.deploy === 1 ? "device gets" : "devices get"} ${what}`),
        `; ${plan.skip} skipped. Estimated time: about ${duration(plan.estimated_s)}.`,
      ),
      plan.deploy === 0 ? h("p.bad", {}, "Nothing to deploy: every target is skipped (see why below).") : "",
      plan.targets.length
        ? h(
            "div.scroll",
            {},
            h(
              "table.grid#plan-targets",
              {},
              h("thead", {}, h("tr", {}, ["Device", "Hostname", "Change", "Decision", "Reason"].map((t) => h("th", {}, t)))),
              h(
                "tbody",
                {},
                plan.targets.map((t) =>
                  h(
                    "tr",
                    { dataset: { decision: t.decision } },
                    h("td.mono", {}, t.device),
                    h("td", {}, t.hostname),
                    h("td", {}, `${t.from_version || "?"} → ${t.to_version}`),
                    h("td", {}, h("span.badge", { "data-state": t.decision === "deploy" ? "succeeded" : "skipped" }, stateLabel(t.decision))),
                    h("td", {}, t.reason || ""),
                  ),
                ),
              ),
            ),
          )
        : empty("No device matches these targets."),
    );
  }
}
