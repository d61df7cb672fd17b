// Firmware: upload by drag-and-drop or the file picker (with upload progress), the library
// with each image's parsed metadata and notes, the validator's reason for a refused file,
// and deleting an image no unfinished rollout uses.

import { api, bytes, empty, h, setText, showError, store, subscribe, time, upload } from "./core.js";

const ACTIVE = new Set(["planned", "running", "paused"]);

export function mount(main) {
  const input = h("input#file-input", { type: "file", accept: ".bin,application/octet-stream", multiple: true });
  const notes = h("input#upload-notes", { type: "text", placeholder: "release notes (optional)", "aria-label": "Release notes for the upload" });
  const bar = h("progress#upload-progress", { max: 100, value: 0, hidden: true });
  const status = h("p#upload-status", { role: "status", "aria-live": "polite" });
  const zone = h(
    "label.drop#drop-zone",
    { for: "file-input" },
    h("strong", {}, "Drop .bin files here"),
    h("span", {}, " or press to choose files. Only ESP32 OTA app images are accepted; bootloaders, partition tables and merged flash images are refused."),
  );
  const tbody = h("tbody");
  const table = h(
    "table.grid#firmware",
    {},
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Project", "Version", "Chip", "IDF", "Size", "Secure ver.", "SHA-256", "File", "Notes", "Uploaded", ""].map((t, i) =>
          h(i >= 3 && i !== 4 && i < 10 ? "th.wide" : "th", { scope: "col" }, t),
        ),
      ),
    ),
    tbody,
  );
  const emptyBox = h("div");

  main.append(
    h("h1", {}, "Firmware"),
    h("section.upload", {}, zone, input, h("div.toolbar", {}, notes), bar, status),
    emptyBox,
    h("div.scroll", {}, table),
  );

  // --- uploads, one file at a time
  let queue = Promise.resolve();
  function send(files) {
    for (const file of files) {
      queue = queue.then(() => one(file));
    }
  }
  async function one(file) {
    bar.hidden = false;
    bar.value = 0;
    status.className = "";
    setText(status, `Uploading ${file.name}…`);
    try {
      const { status: code, entry } = await upload(file, notes.value.trim(), (done, total) => {
        bar.value = Math.round((done / total) * 100);
        setText(status, `Uploading ${file.name}: ${bar.value}% of ${bytes(total)}`);
      });
      bar.value = 100;
      status.className = "ok";
      setText(
        status,
        code === 201
          ? `Added ${entry.project} ${entry.version} for ${entry.chip} (${file.name}).`
          : `${file.name} is already in the library as ${entry.project} ${entry.version}.`,
      );
      store.firmware.set(entry.sha256, entry);
      render();
    } catch (e) {
      bar.hidden = true;
      status.className = "bad";
      setText(status, `Refused ${file.name}: ${e.message}`);
    }
  }
  input.addEventListener("change", () => {
    send([...input.files]);
    input.value = "";
  });
  zone.tabIndex = 0;
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      input.click();
    }
  });
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    send([...(e.dataTransfer?.files || [])]);
  });

  // --- the library
  const rows = new Map(); // sha -> tr
  function inUse(sha) {
    for (const r of store.rollouts.values()) if (r.firmware === sha && ACTIVE.has(r.state)) return r.id;
    return null;
  }
  function makeRow(f) {
    const del = h("button.danger", { type: "button" }, "Delete");
    let armed = null;
    del.addEventListener("click", async () => {
      if (!armed) {
        setText(del, "Confirm delete");
        armed = setTimeout(() => {
          armed = null;
          setText(del, "Delete");
        }, 5000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      try {
        await api("/firmware/" + f.sha256, { method: "DELETE" });
        store.firmware.delete(f.sha256);
        render();
      } catch (e) {
        showError(e);
        setText(del, "Delete");
      }
    });
    const tr = h(
      "tr",
      { dataset: { sha: f.sha256 } },
      h("td", {}, f.project),
      h("td.version", {}, f.version),
      h("td.wide", {}, f.chip),
      h("td.wide", {}, f.idf_version),
      h("td", {}, bytes(f.size)),
      h("td.wide", {}, f.secure_version),
      h("td.wide.mono", { title: f.sha256 }, f.sha256.slice(0, 16) + "…"),
      h("td.wide", {}, f.filename || ""),
      h("td.wide.notes", {}, f.notes || ""),
      h("td.wide", {}, time(f.uploaded_at)),
      h(
        "td.actions",
        {},
        h("a.button", { href: "#/deploy?fw=" + f.sha256 }, "Deploy…"),
        " ",
        del,
      ),
    );
    tr.del = del;
    return tr;
  }
  function render() {
    const list = [...store.firmware.values()].sort((a, b) => b.uploaded_at.localeCompare(a.uploaded_at));
    for (const [sha, tr] of rows) {
      if (!store.firmware.has(sha)) {
        tr.remove();
        rows.delete(sha);
      }
    }
    for (const f of list) {
      let tr = rows.get(f.sha256);
      if (!tr) rows.set(f.sha256, (tr = makeRow(f)));
      tbody.append(tr);
      const user = inUse(f.sha256);
      tr.del.disabled = !!user;
      tr.del.title = user ? `rollout ${user} uses this image; it can be deleted once that rollout ends` : "";
    }
    table.hidden = list.length === 0;
    emptyBox.replaceChildren(list.length ? "" : empty("No firmware yet: drop an ESP32 app image (.bin) above, or choose one with the file picker."));
  }

  const unsubscribe = subscribe((ch) => {
    if (ch.reload || ch.firmware.size || ch.rollouts.size) render();
  });
  render();
  return unsubscribe;
}
