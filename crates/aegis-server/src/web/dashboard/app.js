// The dashboard's entry point: loads the shared state, opens the event stream and shows the
// view the URL's hash names (#/fleet, #/device/ID, #/firmware, #/deploy, #/rollouts,
// #/rollout/ID, #/audit). A view is `mount(main, params) -> cleanup`.

import { connect, reload, showError } from "./core.js";
import * as fleet from "./fleet.js";
import * as firmware from "./firmware.js";
import * as deploy from "./deploy.js";
import * as rollouts from "./rollouts.js";
import * as audit from "./audit.js";

const routes = [
  [/^\/fleet$/, "fleet", () => fleet.mountFleet],
  [/^\/device\/([^/]+)$/, "fleet", () => fleet.mountDevice],
  [/^\/firmware$/, "firmware", () => firmware.mount],
  [/^\/deploy$/, "deploy", () => deploy.mount],
  [/^\/rollouts$/, "rollouts", () => rollouts.mountList],
  [/^\/rollout\/([^/]+)$/, "rollouts", () => rollouts.mountRollout],
  [/^\/audit$/, "audit", () => audit.mount],
];

const main = document.getElementById("main");
let cleanup = null;

function show() {
  const hash = location.hash.replace(/^#/, "") || "/fleet";
  const [path, query] = hash.split("?");
  let found = routes.find(([re]) => re.test(path));
  if (!found) {
    location.replace("#/fleet");
    return;
  }
  const [re, nav, view] = found;
  const params = {
    args: path.match(re).slice(1).map(decodeURIComponent),
    query: new URLSearchParams(query || ""),
  };
  if (cleanup) cleanup();
  main.replaceChildren();
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    cleanup = view()(main, params) || null;
  } catch (e) {
    showError(e);
  }
}

const live = document.getElementById("live");
connect((state) => {
  live.textContent = state === "live" ? "live" : "reconnecting…";
  live.dataset.state = state;
});
reload()
  .catch(showError)
  .finally(() => {
    window.addEventListener("hashchange", show);
    show();
  });
