// slotproxy dashboard page. Plain JS, no build step, no dependencies.
//
// Data flow: GET /api/v1/events (server-sent events) delivers a snapshot about once a second
// ({overview, migrations, point}); every render* function draws one part of the page from the
// latest snapshot. Actions call the same REST API as `proxyctl`, with the admin token from the
// login dialog; a refused action shows the API's own error message.
"use strict";

const $ = (sel) => document.querySelector(sel);
const TOKEN_KEY = "slotproxy.token";

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  admin: false,
  snap: null,           // last snapshot from the event stream
  points: [],           // chart points, oldest first (history from /metrics, then the stream)
  slotStats: null,      // /api/v1/slots/stats: keys and ops/s per slot
  owner: null,          // owner gid per slot, from the snapshot's ranges
  selection: null,      // [first, last] slots selected on the map
  plan: null,           // last rebalance dry run
};

// ---- helpers ---------------------------------------------------------------------------------

const PALETTE = ["#4f7df3", "#f59e0b", "#10b981", "#ef4476", "#8b5cf6", "#06b6d4", "#84cc16",
                 "#f97316", "#64748b", "#d946ef", "#14b8a6", "#a16207"];
const groupColor = (gid) => (gid ? PALETTE[(gid - 1) % PALETTE.length] : "#e5e7eb");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function fmtNum(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits });
}

function fmtBytes(b) {
  if (b === null || b === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return `${b.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function fmtAge(ts) {
  if (!ts) return "never";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 60) return `${s.toFixed(0)}s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)}m ago`;
  return `${(s / 3600).toFixed(1)}h ago`;
}

function fmtDuration(s) {
  if (s === null || s === undefined) return "—";
  if (s < 60) return `${s.toFixed(0)}s`;
  return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
}

function toast(message, kind = "ok", title = null) {
  const node = el("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
    title ? el("div", { class: "title" }, title) : null, el("div", { class: "msg" }, message));
  $("#toasts").append(node);
  setTimeout(() => node.remove(), kind === "error" ? 12000 : 4000);
}

class ApiError extends Error {}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await resp.json(); } catch { /* empty body */ }
  if (!resp.ok) throw new ApiError((data && data.error) || `HTTP ${resp.status}`);
  return data;
}

// Run an action; show the API's message when it is refused. Returns the result or null.
async function act(label, method, path, body) {
  try {
    const out = await api(method, path, body);
    toast(label, "ok");
    return out;
  } catch (e) {
    toast(e.message, "error", `${label}: refused`);
    return null;
  }
}

// ---- login -----------------------------------------------------------------------------------

async function checkAuth() {
  let admin = false;
  if (state.token) {
    try { admin = (await api("GET", "/api/v1/auth")).admin; } catch { admin = false; }
  }
  setAdmin(admin);
  return admin;
}

function setAdmin(admin) {
  state.admin = admin;
  document.body.classList.toggle("readonly", !admin);
  const badge = $("#auth-state");
  badge.textContent = admin ? "admin" : "read-only";
  badge.className = `badge ${admin ? "ok" : "muted"}`;
  render();
}

function initLogin() {
  const dialog = $("#login-dialog");
  $("#login-btn").addEventListener("click", () => {
    $("#login-error").classList.add("hidden");
    $("#login-token").value = "";
    dialog.showModal();
  });
  $("#login-form").addEventListener("submit", async (ev) => {
    if (ev.submitter && ev.submitter.value === "cancel") return;
    ev.preventDefault();
    state.token = $("#login-token").value.trim();
    if (await checkAuth()) {
      sessionStorage.setItem(TOKEN_KEY, state.token);
      dialog.close();
      toast("Logged in: actions are enabled");
    } else {
      state.token = null;
      const err = $("#login-error");
      err.textContent = "That is not the admin token.";
      err.classList.remove("hidden");
    }
  });
  $("#logout-btn").addEventListener("click", () => {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    setAdmin(false);
  });
}

// ---- live stream -----------------------------------------------------------------------------

function connect() {
  const live = $("#live");
  const source = new EventSource("/api/v1/events");
  source.addEventListener("snapshot", (ev) => {
    const snap = JSON.parse(ev.data);
    live.className = "live on";
    live.textContent = "live";
    if (snap.point) {
      const last = state.points[state.points.length - 1];
      if (!last || snap.point.t > last.t) state.points.push(snap.point);
      const keep = Date.now() / 1000 - 600;
      while (state.points.length && state.points[0].t < keep) state.points.shift();
    }
    if (snap.overview) state.snap = snap;
    const banner = $("#error-banner");
    banner.classList.toggle("hidden", !snap.error);
    banner.textContent = snap.error ? `Dashboard: ${snap.error}` : "";
    render();
  });
  // EventSource reconnects by itself (the server sends retry: 2000); just show it.
  source.onerror = () => { live.className = "live off"; live.textContent = "reconnecting"; };
}

async function loadHistory() {
  try {
    const m = await api("GET", "/api/v1/metrics?seconds=600");
    const known = new Set(state.points.map((p) => p.t));
    state.points = m.points.filter((p) => !known.has(p.t)).concat(state.points).sort((a, b) => a.t - b.t);
    renderCharts();
  } catch { /* the stream fills the charts anyway */ }
}

// ---- rendering -------------------------------------------------------------------------------

function render() {
  if (!state.snap) return;
  renderHeader();
  renderTotals();
  renderGroups();
  renderProxies();
  renderSlotMap();
  renderMigration();
  renderCharts();
}

function renderHeader() {
  const ov = state.snap.overview;
  $("#cluster-name").textContent = `cluster ${ov.dashboard.cluster}`;
  $("#dash-id").textContent = ov.dashboard.id;
  const role = $("#dash-role");
  role.textContent = ov.dashboard.role;
  role.className = `badge ${ov.dashboard.role === "leader" ? "ok" : "warn"}`;
  $("#epoch").textContent = ov.epoch;
}

function renderTotals() {
  const { overview: ov, migrations: mig } = state.snap;
  const masters = ov.groups.filter((g) => g.master);
  const healthy = ov.groups.filter((g) => g.health.ok).length;
  $("#t-groups").textContent = ov.groups.length;
  $("#t-groups-sub").textContent = `${healthy} healthy`;
  const assigned = ov.ranges.reduce((n, [a, b]) => n + b - a + 1, 0);
  $("#t-slots").textContent = `${assigned}`;
  $("#t-slots-sub").textContent = `of ${ov.slots}`;
  $("#t-keys").textContent = fmtNum(masters.reduce((n, g) => n + (g.health.keys || 0), 0));
  $("#t-mem").textContent = fmtBytes(masters.reduce((n, g) => n + (g.health.used_memory || 0), 0));
  const ops = ov.proxies.reduce((n, p) => n + ((p.stats && p.stats.ops_per_sec) || 0), 0);
  $("#t-ops").textContent = fmtNum(ops, 1);
  const online = ov.proxies.filter((p) => p.state === "online" && !p.stale).length;
  $("#t-proxies").textContent = ov.proxies.length;
  $("#t-proxies-sub").textContent = `${online} online`;
  const moving = mig ? mig.slots.length : 0;
  $("#t-mig").textContent = moving ? `${moving} slots` : "idle";
  $("#t-mig-sub").textContent = moving ? `${fmtNum(mig.rate_keys_per_sec)} keys/s` : `${mig ? mig.slots_done : 0} slots moved`;
}

function serverRole(s) {
  if (s.reachable === false) return el("span", { class: "badge bad", title: s.error || "" }, "down");
  if (s.reachable !== true) return el("span", { class: "badge" }, "unknown");
  const wrong = s.role !== s.expected_role;
  return el("span", { class: `badge ${wrong ? "warn" : s.role === "master" ? "info" : ""}`,
    title: wrong ? `expected ${s.expected_role}` : "" }, s.role);
}

// A replica's replication health: link to its master and lag (bytes behind, seconds).
function replicaLink(s) {
  const r = s.replication;
  if (!r || s.expected_role !== "replica") return null;
  const link = r.link || (s.reachable === false ? "down" : "unknown");
  const cls = link === "up" ? "ok" : link === "syncing" ? "warn" : "bad";
  const lag = r.lag_bytes === null || r.lag_bytes === undefined ? "" :
    ` · lag ${fmtBytes(r.lag_bytes)}${r.lag_seconds !== null && r.lag_seconds !== undefined ? ` / ${r.lag_seconds}s` : ""}`;
  return el("div", { class: "muted small repl", title: r.replica_of ? `replicates from ${r.replica_of}` : "" },
    el("span", { class: `badge ${cls}` }, `link ${link}`), lag);
}

function renderGroups() {
  const tbody = $("#groups-table tbody");
  const rows = [];
  for (const g of state.snap.overview.groups) {
    const servers = g.health.servers.length ? g.health.servers : [null];
    servers.forEach((s, i) => {
      const first = i === 0;
      const gcell = first ? el("td", { rowspan: servers.length },
        el("div", { class: "gid" }, el("span", { class: "swatch", style: `background:${groupColor(g.id)}` }), `group ${g.id}`,
          state.admin ? el("button", { class: "btn link danger", title: `remove group ${g.id}`, onclick: () => removeGroup(g.id) }, "Remove") : null),
        el("div", { class: "ranges", title: g.slots || "no slots" }, g.slot_count ? `${g.slot_count} slots · ${g.slots}` : "no slots"),
        state.admin ? el("div", { class: "addsrv" },
          el("input", { placeholder: "replica host:port", "data-gid": g.id, "aria-label": `add server to group ${g.id}` }),
          el("button", { class: "btn small", onclick: (ev) => addServer(g.id, ev.target.previousSibling) }, "Add")) : null) : null;
      if (!s) {
        rows.push(el("tr", { class: "group-first" }, gcell, el("td", { colspan: 6, class: "muted" }, "no servers")));
        return;
      }
      const dotCls = s.reachable === true ? "ok" : s.reachable === false ? "bad" : "warn";
      const promoteBtn = state.admin && s.expected_role === "replica" && g.state === "active"
        ? el("button", { class: "btn link", title: `make ${s.addr} the master of group ${g.id}`,
          onclick: () => promoteServer(g.id, s.addr) }, "Promote") : null;
      rows.push(el("tr", { class: first ? "group-first" : "", "data-server": s.addr },
        gcell,
        el("td", { class: "addr" }, el("span", { class: `dot ${dotCls}` }), s.addr, promoteBtn),
        el("td", {}, serverRole(s), g.state !== "active" && s.expected_role === "master"
          ? el("span", { class: "badge warn" }, g.state) : null, replicaLink(s)),
        el("td", { class: "num" }, fmtBytes(s.used_memory)),
        el("td", { class: "num" }, fmtNum(s.keys)),
        el("td", { class: "num" }, fmtNum(s.ops_per_sec)),
        el("td", {}, state.admin ? el("button", { class: "btn x", title: `remove ${s.addr}`,
          onclick: () => removeServer(g.id, s.addr) }, "×") : null)));
    });
  }
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 7, class: "empty" }, "no groups yet")));
  keepFocus(tbody, rows);
}

// Re-rendering every second must not eat what the operator is typing into an input.
function keepFocus(tbody, rows) {
  const active = document.activeElement;
  if (active && tbody.contains(active) && active.tagName === "INPUT") return;
  tbody.replaceChildren(...rows);
}

function renderProxies() {
  const tbody = $("#proxies-table tbody");
  const rows = state.snap.overview.proxies.map((p) => {
    const st = p.stale ? "stale" : p.state;
    const cls = st === "online" ? "ok" : st === "pending" ? "warn" : "bad";
    return el("tr", { "data-proxy": p.id },
      el("td", {}, el("b", {}, p.id)),
      el("td", {}, p.addr, el("div", { class: "muted small" }, `admin ${p.admin}`)),
      el("td", {}, el("span", { class: `badge ${cls}`, title: p.error || "" }, st)),
      el("td", { class: "num" }, fmtNum(p.stats && p.stats.clients)),
      el("td", { class: "num" }, fmtNum(p.stats && p.stats.ops_per_sec, 1)),
      el("td", {}, fmtAge(p.last_seen)),
      el("td", {}, state.admin ? el("button", { class: "btn small danger", onclick: () => removeProxy(p) }, "Remove") : null));
  });
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 7, class: "empty" }, "no proxies registered")));
  tbody.replaceChildren(...rows);
}

// ---- slot map --------------------------------------------------------------------------------

const map = { cols: 64, cell: 10, gap: 1, dragFrom: null, hover: null, lastEvent: null };

function ownerFromRanges(n, ranges) {
  const owner = new Int32Array(n);
  for (const [a, b, gid] of ranges) owner.fill(gid, a, b + 1);
  return owner;
}

function renderSlotMap() {
  const ov = state.snap.overview;
  const n = ov.slots;
  state.owner = ownerFromRanges(n, ov.ranges);
  $("#slotmap-size").textContent = `· ${n} slots`;
  const canvas = $("#slotmap");
  map.cols = n <= 1024 ? 64 : 128;
  const rows = Math.ceil(n / map.cols);
  const width = canvas.clientWidth || 1000;
  map.gap = n <= 1024 ? 2 : 1;
  map.cell = (width - map.gap * (map.cols - 1)) / map.cols;
  const height = Math.ceil(rows * (map.cell + map.gap) - map.gap);
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    canvas.style.height = `${height}px`;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const migs = ov.migrations;
  const sel = state.selection;
  for (let s = 0; s < n; s++) {
    const x = (s % map.cols) * (map.cell + map.gap);
    const y = Math.floor(s / map.cols) * (map.cell + map.gap);
    ctx.fillStyle = groupColor(state.owner[s]);
    ctx.fillRect(x, y, map.cell, map.cell);
    const m = migs[s];
    if (m) {
      // A moving slot: its target's colour in the lower-right half, and a dark corner mark.
      ctx.fillStyle = groupColor(m.target);
      ctx.beginPath();
      ctx.moveTo(x + map.cell, y);
      ctx.lineTo(x + map.cell, y + map.cell);
      ctx.lineTo(x, y + map.cell);
      ctx.fill();
      ctx.strokeStyle = m.state === "pending" ? "rgba(17,24,39,.45)" : "#111827";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(x + 0.75, y + 0.75, map.cell - 1.5, map.cell - 1.5);
    }
    if (sel && s >= sel[0] && s <= sel[1]) {
      ctx.fillStyle = "rgba(17, 24, 39, .35)";
      ctx.fillRect(x, y, map.cell, map.cell);
    }
  }
  renderLegend(ov);
}

function renderLegend(ov) {
  const counts = new Map();
  for (const [a, b, gid] of ov.ranges) counts.set(gid, (counts.get(gid) || 0) + b - a + 1);
  const items = ov.groups.map((g) => el("span", {}, el("span", { class: "swatch", style: `background:${groupColor(g.id)}` }),
    `group ${g.id} (${counts.get(g.id) || 0})`));
  const free = ov.slots - [...counts.values()].reduce((x, y) => x + y, 0);
  if (free) items.push(el("span", {}, el("span", { class: "swatch", style: "background:#e5e7eb" }), `unassigned (${free})`));
  const moving = Object.keys(ov.migrations).length;
  if (moving) items.push(el("span", {}, el("span", { class: "swatch", style: "border:2px solid #111827" }), `migrating (${moving})`));
  $("#legend").replaceChildren(...items);
}

function slotAt(ev) {
  const canvas = $("#slotmap");
  const r = canvas.getBoundingClientRect();
  const step = map.cell + map.gap;
  const col = Math.min(map.cols - 1, Math.max(0, Math.floor((ev.clientX - r.left) / step)));
  const row = Math.max(0, Math.floor((ev.clientY - r.top) / step));
  const s = row * map.cols + col;
  return state.snap && s < state.snap.overview.slots ? s : null;
}

function showTip(ev, s) {
  const tip = $("#slot-tip");
  if (s === null || !state.snap) { tip.classList.add("hidden"); return; }
  const gid = state.owner[s];
  const m = state.snap.overview.migrations[s];
  const st = state.slotStats;
  const lines = [el("div", {}, el("b", {}, `slot ${s}`), " · ", gid ? `group ${gid}` : "unassigned")];
  if (st && st.keys) lines.push(el("div", {}, `keys ${fmtNum(st.keys[s])} · ops/s ${st.ops ? fmtNum(st.ops[s], 1) : "—"}`));
  else lines.push(el("div", { class: "muted" }, "keys/ops: measuring…"));
  if (m) lines.push(el("div", {}, `migrating ${m.source} → ${m.target} (${m.state})`));
  tip.replaceChildren(...lines);
  tip.classList.remove("hidden");
  const wrap = $(".slotmap-wrap").getBoundingClientRect();
  let x = ev.clientX - wrap.left + 14;
  if (x + tip.offsetWidth > wrap.width) x = ev.clientX - wrap.left - tip.offsetWidth - 14;
  tip.style.left = `${x}px`;
  tip.style.top = `${ev.clientY - wrap.top + 14}px`;
}

function setSelection(a, b) {
  state.selection = [Math.min(a, b), Math.max(a, b)];
  const [lo, hi] = state.selection;
  const text = lo === hi ? `${lo}` : `${lo}-${hi}`;
  $("#mig-slots").value = text;
  const owners = new Set();
  for (let s = lo; s <= hi; s++) owners.add(state.owner[s]);
  const hint = $("#selection");
  hint.replaceChildren("Selected ", el("b", { id: "selected-range" }, text),
    ` (${hi - lo + 1} slots, owned by ${[...owners].map((g) => (g ? `group ${g}` : "nobody")).join(", ")})`,
    state.admin ? " — choose a target group under Migration and press Start." : " — log in to migrate them.");
  renderSlotMap();
}

function initSlotMap() {
  const canvas = $("#slotmap");
  canvas.addEventListener("mousedown", (ev) => {
    const s = slotAt(ev);
    if (s === null) return;
    map.dragFrom = s;
    setSelection(s, s);
    ev.preventDefault();
  });
  canvas.addEventListener("mousemove", (ev) => {
    const s = slotAt(ev);
    if (map.dragFrom !== null && s !== null && (!state.selection || s !== map.hover)) setSelection(map.dragFrom, s);
    map.hover = s;
    map.lastEvent = ev;
    showTip(ev, s);
    if (!state.slotStats) loadSlotStats();
  });
  canvas.addEventListener("mouseleave", () => { map.hover = null; $("#slot-tip").classList.add("hidden"); });
  window.addEventListener("mouseup", () => { map.dragFrom = null; });
  window.addEventListener("resize", () => { if (state.snap) { renderSlotMap(); renderCharts(); } });
  $("#slot-stats-btn").addEventListener("click", () => loadSlotStats(true));
}

let slotStatsLoading = null;
async function loadSlotStats(announce = false) {
  if (slotStatsLoading) return slotStatsLoading;
  const btn = $("#slot-stats-btn");
  btn.disabled = true;
  slotStatsLoading = (async () => {
    try {
      state.slotStats = await api("GET", "/api/v1/slots/stats?sample_seconds=1");
      $("#slot-stats-age").textContent = `keys & ops measured ${new Date(state.slotStats.measured_at * 1000).toLocaleTimeString()}`;
      if (announce) toast("Per-slot keys and ops/s measured");
      if (map.hover !== null && map.lastEvent) showTip(map.lastEvent, map.hover);  // fill it in
    } catch (e) {
      toast(e.message, "error", "Measuring slots failed");
    } finally {
      btn.disabled = false;
      slotStatsLoading = null;
    }
  })();
  return slotStatsLoading;
}

// ---- migration and rebalance -----------------------------------------------------------------

const STATE_BADGE = { pending: "", preparing: "warn", prepared: "warn", migrating: "info", finished: "ok" };

function renderMigration() {
  const { overview: ov, migrations: mig } = state.snap;
  const target = $("#mig-target");
  const ids = ov.groups.filter((g) => g.master).map((g) => String(g.id));
  if ([...target.options].map((o) => o.value).join() !== ids.join()) {
    const keep = target.value;
    target.replaceChildren(...ids.map((id) => el("option", { value: id }, `group ${id}`)));
    if (ids.includes(keep)) target.value = keep;
  }
  if (!mig) return;
  const status = $("#mig-status");
  status.textContent = mig.status;
  status.className = `badge ${mig.status === "running" ? "info" : mig.status === "idle" ? "" : "warn"}`;
  const moving = mig.slots.length;
  const done = mig.slots_done;
  // Progress of this run: slots done since it started vs. those still listed.
  const total = moving + done;
  const pct = moving ? Math.min(100, (100 * done) / Math.max(total, 1)) : (done ? 100 : 0);
  $("#mig-bar").style.width = `${pct}%`;
  $("#mig-bar").parentElement.classList.toggle("done", !moving && done > 0);
  const states = Object.entries(mig.states).map(([k, v]) => `${v} ${k}`).join(", ");
  $("#mig-figures").textContent = moving
    ? `${states} · ${fmtNum(mig.keys_moved)} keys moved · ${fmtNum(mig.rate_keys_per_sec, 1)} keys/s · ETA ${fmtDuration(mig.eta_seconds)}`
    : done ? `idle · ${done} slots moved, ${fmtNum(mig.keys_moved)} keys in the last run` : "no migration running";
  const err = $("#mig-error");
  err.classList.toggle("hidden", !mig.error);
  err.textContent = mig.error || "";
  $("#mig-cancel").disabled = !moving;
  // Slots in flight first (they change), then the queue; at most 40 rows.
  const order = { migrating: 0, prepared: 1, preparing: 2, finished: 3, pending: 4 };
  const slots = [...mig.slots].sort((a, b) => (order[a.state] ?? 5) - (order[b.state] ?? 5) || a.slot - b.slot);
  const rows = slots.slice(0, 40).map((s) => {
    const frac = s.keys_total ? Math.min(1, s.keys_moved / s.keys_total) : (s.state === "finished" ? 1 : 0);
    return el("tr", { "data-slot": s.slot },
      el("td", {}, s.slot),
      el("td", {}, `${s.from} → ${s.to}`),
      el("td", {}, el("span", { class: `badge ${STATE_BADGE[s.state] ?? ""}` }, s.state)),
      el("td", { class: "num" }, s.keys_total === null ? fmtNum(s.keys_moved) : `${fmtNum(s.keys_moved)}/${fmtNum(s.keys_total)}`),
      el("td", {}, el("div", { class: "bar" }, el("div", { style: `width:${(frac * 100).toFixed(0)}%` }))));
  });
  if (slots.length > 40) rows.push(el("tr", {}, el("td", { colspan: 5, class: "muted small" }, `… and ${slots.length - 40} more`)));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 5, class: "empty" }, "no slots moving")));
  $("#mig-table tbody").replaceChildren(...rows);
}

function initMigration() {
  $("#mig-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const slots = $("#mig-slots").value.trim();
    const to = Number($("#mig-target").value);
    const out = await act(`Migration of ${slots} to group ${to} queued`, "POST", "/api/v1/migrations", { slots, to });
    if (out) { state.selection = null; renderSlotMap(); }
  });
  $("#mig-cancel").addEventListener("click", () => act("Migration cancelled", "POST", "/api/v1/migrations/cancel"));
  $("#rb-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const mode = $("#rb-mode").value;
    const btn = $("#rb-plan");
    btn.disabled = true;
    try {
      state.plan = await api("POST", "/api/v1/rebalance", { dry_run: true, mode });
      renderPlan();
    } catch (e) {
      state.plan = null;
      renderPlan();
      toast(e.message, "error", "Rebalance plan: refused");
    } finally {
      btn.disabled = false;
    }
  });
  $("#rb-run").addEventListener("click", async () => {
    if (!state.plan) return;
    const out = await act("Rebalance started", "POST", "/api/v1/rebalance", { dry_run: false, mode: state.plan.plan.mode });
    if (out) { state.plan = null; renderPlan(out.plan.slots_moved ? `Running: ${out.plan.slots_moved} slots queued.` : "Already balanced: nothing to move."); }
  });
}

function renderPlan(message) {
  const table = $("#rb-table");
  const result = $("#rb-result");
  const plan = state.plan && state.plan.plan;
  $("#rb-run").disabled = !(plan && plan.slots_moved);
  if (!plan) {
    table.classList.add("hidden");
    result.textContent = message || "Plan first: the moves are shown here before anything runs.";
    return;
  }
  result.textContent = plan.slots_moved
    ? `Planned: ${plan.slots_moved} slots in ${plan.moves.length} move(s). Nothing has moved yet.`
    : "Balanced: the plan moves no slots.";
  table.classList.toggle("hidden", !plan.moves.length);
  $("#rb-table tbody").replaceChildren(...plan.moves.map((m) => el("tr", {},
    el("td", {}, el("span", { class: "gid" }, el("span", { class: "swatch", style: `background:${groupColor(m.from)}` }), `group ${m.from}`)),
    el("td", {}, el("span", { class: "gid" }, el("span", { class: "swatch", style: `background:${groupColor(m.to)}` }), `group ${m.to}`)),
    el("td", { class: "num" }, m.count),
    el("td", { class: "ranges", title: m.slots }, m.slots))));
}

// ---- group, server and proxy management ------------------------------------------------------

function initManagement() {
  $("#group-add").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const body = { master: form.master.value.trim() };
    if (form.gid.value.trim()) body.id = Number(form.gid.value.trim());
    if (await act("Group added", "POST", "/api/v1/groups", body)) form.reset();
  });
}

async function addServer(gid, input) {
  const addr = input.value.trim();
  if (!addr) { input.focus(); return; }
  // A replica starts replicating at once; its row shows the link and lag while it syncs.
  const out = await act(`Server ${addr} added to group ${gid}`, "POST", `/api/v1/groups/${gid}/servers`, { addr });
  if (out) input.value = "";
}

async function removeServer(gid, addr) {
  if (!confirm(`Remove server ${addr} from group ${gid}?`)) return;
  const group = state.snap.overview.groups.find((g) => g.id === gid);
  // A replica keeps replicating unless detached (REPLICAOF NO ONE makes it a master).
  const detach = group && group.replicas.includes(addr) &&
    confirm(`Also detach ${addr} (REPLICAOF NO ONE)? Cancel leaves it replicating.`);
  await act(`Server ${addr} removed${detach ? " and detached" : ""}`, "DELETE",
    `/api/v1/groups/${gid}/servers/${encodeURIComponent(addr)}${detach ? "?detach=1" : ""}`);
}

async function promoteServer(gid, addr) {
  if (!confirm(`Make ${addr} the master of group ${gid}? The group's requests are held while it catches up; the old master becomes its replica.`)) return;
  const out = await act(`${addr} is now the master of group ${gid}`, "POST", `/api/v1/groups/${gid}/promote`, { addr });
  if (out) for (const w of out.warnings || []) toast(w, "error", "Promotion warning");
}

async function removeGroup(gid) {
  if (!confirm(`Remove group ${gid}?`)) return;
  await act(`Group ${gid} removed`, "DELETE", `/api/v1/groups/${gid}`);
}

async function removeProxy(p) {
  const dead = p.state !== "online" || p.stale;
  const q = dead
    ? `Remove proxy ${p.id}? It cannot be reached: make sure it is STOPPED (a running proxy with an old slot map could write moved keys).`
    : `Remove proxy ${p.id}?`;
  if (!confirm(q)) return;
  await act(`Proxy ${p.id} removed`, "DELETE", `/api/v1/proxies/${encodeURIComponent(p.id)}${dead ? "?force=1" : ""}`);
}

// ---- charts ----------------------------------------------------------------------------------

function series(kind, field) {
  const out = new Map();  // name -> [[t, v], ...]
  for (const p of state.points) {
    for (const [name, v] of Object.entries(p[kind] || {})) {
      if (!out.has(name)) out.set(name, []);
      out.get(name).push([p.t, v[field]]);
    }
  }
  return out;
}

function drawChart(canvas, data, { unit = "", colorOf }) {
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (!w || !h) return;
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const windowSec = Number($("#chart-window").value);
  const now = Date.now() / 1000, t0 = now - windowSec;
  const pad = { l: 44, r: 8, t: 8, b: 34 };
  const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
  let max = 0;
  for (const pts of data.values()) for (const [t, v] of pts) if (t >= t0 && v !== null && v !== undefined) max = Math.max(max, v);
  max = niceMax(max);
  // grid and axis labels
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#6b7785";
  ctx.strokeStyle = "#eef2f6";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + ph - (ph * i) / 4;
    ctx.beginPath(); ctx.moveTo(pad.l, Math.round(y) + 0.5); ctx.lineTo(w - pad.r, Math.round(y) + 0.5); ctx.stroke();
    ctx.fillText(fmtNum((max * i) / 4, max < 10 ? 2 : 0) + unit, pad.l - 6, y);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const ticks = windowSec % 5 === 0 && windowSec >= 300 ? 5 : 4;  // whole minutes or 15 s
  for (let i = 0; i <= ticks; i++) {
    const ago = windowSec - (windowSec * i) / ticks;
    ctx.textAlign = i === ticks ? "right" : "center";
    ctx.fillText(ago ? `-${ago >= 60 ? `${ago / 60}m` : `${ago}s`}` : "now", pad.l + (pw * i) / ticks, pad.t + ph + 4);
  }
  const xOf = (t) => pad.l + ((t - t0) / windowSec) * pw;
  const yOf = (v) => pad.t + ph - (v / max) * ph;
  // lines, broken where a value is missing (server or proxy did not answer)
  const legend = [];
  for (const [name, pts] of data) {
    const color = colorOf(name);
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    let pen = false;
    for (const [t, v] of pts) {
      if (t < t0) continue;
      if (v === null || v === undefined) { pen = false; continue; }
      if (pen) ctx.lineTo(xOf(t), yOf(v)); else ctx.moveTo(xOf(t), yOf(v));
      pen = true;
    }
    ctx.stroke();
    legend.push([name, color]);
  }
  // legend in the bottom row
  ctx.textAlign = "left";
  ctx.textBaseline = "alphabetic";
  let x = pad.l;
  for (const [name, color] of legend) {
    ctx.fillStyle = color;
    ctx.fillRect(x, h - 11, 9, 9);
    ctx.fillStyle = "#374151";
    ctx.fillText(name, x + 13, h - 2);
    x += ctx.measureText(name).width + 26;
  }
  if (!legend.length) { ctx.fillStyle = "#9ca3af"; ctx.textAlign = "center"; ctx.fillText("no data yet", pad.l + pw / 2, pad.t + ph / 2); }
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

const proxyColor = (name) => {
  const names = state.snap ? state.snap.overview.proxies.map((p) => p.id) : [];
  const i = Math.max(0, names.indexOf(name));
  return ["#0ea5e9", "#e11d48", "#65a30d", "#7c3aed", "#ea580c", "#0d9488"][i % 6];
};

let chartFrame = null;
function renderCharts() {
  // At most one redraw per animation frame, however many snapshots arrive.
  if (chartFrame) return;
  chartFrame = requestAnimationFrame(() => {
    chartFrame = null;
    const gcol = (name) => groupColor(Number(name));
    const label = (m, prefix) => new Map([...m].map(([k, v]) => [`${prefix}${k}`, v]));
    drawChart($("#ch-group-ops"), label(series("groups", "ops"), "group "), { colorOf: (n) => gcol(n.slice(6)) });
    drawChart($("#ch-group-lat"), label(series("groups", "latency_ms"), "group "), { colorOf: (n) => gcol(n.slice(6)) });
    drawChart($("#ch-proxy-ops"), series("proxies", "ops"), { colorOf: proxyColor });
    drawChart($("#ch-proxy-lat"), series("proxies", "latency_ms"), { colorOf: proxyColor });
  });
}

// ---- start -----------------------------------------------------------------------------------

initLogin();
initSlotMap();
initMigration();
initManagement();
$("#chart-window").addEventListener("change", renderCharts);
checkAuth();
connect();
loadHistory();
