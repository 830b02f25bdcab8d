// The Hot keys and Big keys panels (loaded after app.js, whose helpers they use).
//
// Hot keys: GET /api/v1/hotkeys every 2 s while the tab is visible (every proxy's sampled
// top-k of one window, summed). Big keys: GET /api/v1/bigkeys, polled twice a second while a
// scan runs; "Scan" (admin) is POST /api/v1/bigkeys/scan, "Cancel" POST /api/v1/bigkeys/cancel.
"use strict";

const keysPanel = { hot: null, big: null, bigTimer: null };

const gidSwatch = (gid) => (gid ? el("span", { class: "gid" }, el("span", { class: "swatch", style: `background:${groupColor(gid)}` }), `group ${gid}`) : "—");

function fmtClock(ts) {
  return ts ? new Date(ts * 1000).toLocaleTimeString() : "—";
}

// ---- hot keys --------------------------------------------------------------------------------

async function loadHotKeys() {
  const which = $("#hk-which").value;
  const group = $("#hk-group").value;
  const q = `window=${which}&limit=20${group ? `&group=${group}` : ""}`;
  try {
    keysPanel.hot = await api("GET", `/api/v1/hotkeys?${q}`);
  } catch (e) {
    keysPanel.hot = { error: e.message };
  }
  renderHotKeys();
}

function renderHotKeys() {
  const h = keysPanel.hot;
  const tbody = $("#hotkeys-table tbody");
  if (!h) return;
  if (h.error) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "empty" }, h.error)));
    return;
  }
  $("#hk-span").textContent = h.start
    ? `${fmtClock(h.start)}–${fmtClock(h.end)} · ~${fmtNum(h.requests)} requests · ${h.proxies.length} proxies`
    : "no proxy reported";
  const top = h.keys.length ? h.keys[0].share : 0;
  const rows = h.keys.map((k, i) => el("tr", { "data-key": k.key },
    el("td", {}, i + 1),
    el("td", { class: "key", title: k.key }, k.key),
    el("td", { class: "num" }, fmtNum(k.count)),
    el("td", {}, el("span", { class: "share", style: `width:${top ? Math.max(2, (60 * k.share) / top) : 0}px` }), `${(k.share * 100).toFixed(1)}%`),
    el("td", { class: "num muted", title: "the key had at least / at most this many requests (sampling aside)" }, `${fmtNum(k.lower)}–${fmtNum(k.upper)}`),
    el("td", {}, gidSwatch(k.group)),
    el("td", { class: "num" }, k.slot)));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 7, class: "empty" }, "no keys sampled in this window yet")));
  tbody.replaceChildren(...rows);
  const notes = [];
  if (h.missing && h.missing.length) notes.push(`no answer from ${h.missing.join(", ")}`);
  if (h.disabled && h.disabled.length) notes.push(`disabled on ${h.disabled.join(", ")}`);
  $("#hk-note").textContent = notes.length ? notes.join(" · ")
    : "Sampled on every proxy (1 request in N), summed over the proxies for one window; bounds are the Space-Saving error bounds.";
}

function syncGroupFilter() {
  if (!state.snap) return;
  const select = $("#hk-group");
  const ids = state.snap.overview.groups.map((g) => String(g.id));
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.join() === ids.join()) return;
  const keep = select.value;
  select.replaceChildren(el("option", { value: "" }, "all"), ...ids.map((id) => el("option", { value: id }, `group ${id}`)));
  if (ids.includes(keep)) select.value = keep;
}

// ---- big keys --------------------------------------------------------------------------------

async function loadBigKeys() {
  try {
    keysPanel.big = await api("GET", "/api/v1/bigkeys?rows=200");
  } catch (e) {
    keysPanel.big = { error: e.message };
  }
  renderBigKeys();
  const running = keysPanel.big && keysPanel.big.state === "running";
  clearTimeout(keysPanel.bigTimer);
  if (running) keysPanel.bigTimer = setTimeout(loadBigKeys, 500);
  else if (keysPanel.wasRunning && (heat.mode === "keys" || heat.mode === "memory")) loadHeat();
  keysPanel.wasRunning = running;
}

function renderBigKeys() {
  const b = keysPanel.big;
  if (!b || b.error) {
    $("#bk-figures").textContent = b ? b.error : "—";
    return;
  }
  const badge = $("#bk-state");
  badge.textContent = b.state;
  badge.className = `badge ${b.state === "running" ? "info" : b.state === "done" ? "ok" : b.state === "idle" ? "" : "warn"}`;
  const p = b.progress;
  const pct = p.dbsize ? Math.min(100, (100 * p.scanned) / p.dbsize) : (b.state === "done" ? 100 : 0);
  $("#bk-bar").style.width = `${pct}%`;
  $("#bk-bar").parentElement.classList.toggle("done", b.state === "done");
  const res = b.result;
  $("#bk-figures").textContent = b.state === "running"
    ? `scanning: ${fmtNum(p.scanned)} / ${fmtNum(p.dbsize)} keys`
    : res ? `${fmtNum(res.keys)} keys scanned, ${fmtAge(res.finished)}${b.state !== "done" ? ` (last scan ${b.state}${b.error ? `: ${b.error}` : ""})` : ""}`
      : b.state === "idle" ? "no scan yet" : `scan ${b.state}${b.error ? `: ${b.error}` : ""}`;
  $("#bk-groups").replaceChildren(...p.groups.map((g) => el("span", { "data-group": g.group },
    el("span", { class: "bar" }, el("div", { style: `width:${g.dbsize ? Math.min(100, (100 * g.scanned) / g.dbsize) : (g.done ? 100 : 0)}%` })),
    `group ${g.group}: ${fmtNum(g.scanned)}/${fmtNum(g.dbsize)}${g.error ? ` — ${g.error}` : g.done ? " ✓" : ""}`)));
  $("#bk-cancel").disabled = b.state !== "running";
  $("#bk-scan").disabled = b.state === "running";
  // The table: the biggest keys of the chosen type (all types: biggest first).
  const typeSel = $("#bk-type");
  const types = res ? Object.keys(res.summary) : [];
  if ([...typeSel.options].slice(1).map((o) => o.value).join() !== types.join()) {
    const keep = typeSel.value;
    typeSel.replaceChildren(el("option", { value: "" }, "all"), ...types.map((t) => el("option", { value: t }, t)));
    if (types.includes(keep)) typeSel.value = keep;
  }
  const kind = typeSel.value;
  const list = res ? (kind ? res.top[kind] || [] : res.rows) : [];
  const rows = list.slice(0, 50).map((r) => el("tr", { "data-key": r.key },
    el("td", { class: "key", title: r.key }, r.key),
    el("td", {}, r.type),
    el("td", { class: "num" }, fmtNum(r.elements)),
    el("td", { class: "num", title: `${r.bytes} bytes` }, fmtBytes(r.bytes)),
    el("td", {}, gidSwatch(r.group)),
    el("td", { class: "num" }, r.slot)));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 6, class: "empty" }, res ? "no keys" : "run a scan to list the biggest keys")));
  $("#bigkeys-table tbody").replaceChildren(...rows);
  const sum = res ? Object.entries(res.summary).map(([t, s]) => el("tr", { "data-type": t },
    el("td", {}, t),
    el("td", { class: "num" }, fmtNum(s.keys)),
    el("td", { class: "num" }, fmtBytes(s.bytes)),
    el("td", { class: "key", title: s.biggest.key }, `${s.biggest.key} (${fmtBytes(s.biggest.bytes)})`),
    el("td", { class: "key", title: s.most_elements.key }, `${s.most_elements.key} (${fmtNum(s.most_elements.elements)})`))) : [];
  $("#bigkeys-summary tbody").replaceChildren(...sum);
  $("#bigkeys-summary").classList.toggle("hidden", !sum.length);
}

function initKeysPanels() {
  $("#hk-which").addEventListener("change", loadHotKeys);
  $("#hk-group").addEventListener("change", loadHotKeys);
  $("#bk-type").addEventListener("change", renderBigKeys);
  $("#bk-scan").addEventListener("click", async () => {
    if (await act("Big-key scan started", "POST", "/api/v1/bigkeys/scan", {})) loadBigKeys();
  });
  $("#bk-cancel").addEventListener("click", async () => {
    if (await act("Big-key scan cancelled", "POST", "/api/v1/bigkeys/cancel")) loadBigKeys();
  });
  setInterval(() => { syncGroupFilter(); if (!document.hidden) loadHotKeys(); }, 2000);
  loadHotKeys();
  loadBigKeys();
}

initKeysPanels();
