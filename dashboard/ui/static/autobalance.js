// The auto-balance panel: its switch, dry-run and main settings, and the last rounds (what was
// measured, the plan, why it acted or did not). Loaded after app.js and uses its helpers
// ($, el, api, act, state, groupColor); it polls GET /api/v1/autobalance every 2 s on its own,
// so the event stream's snapshot stays as it is.
"use strict";

const autobalance = { data: null, timer: null };

async function loadAutobalance() {
  try {
    autobalance.data = await api("GET", "/api/v1/autobalance?rounds=8");
    renderAutobalance();
  } catch { /* shown as stale by the next successful poll */ }
}

function abDescribe(s) {
  const w = s.weights;
  return `tolerance ${s.tolerance}% · quiet ${s.quiet}s · every ${s.interval}s · ` +
    `≤ ${s.max_slots_per_hour} slots/h · cool-down ${s.cooldown}s · weights memory ${w.memory}, ` +
    `keys ${w.keys}, ops ${w.ops} · window ${s.window || "always"}`;
}

function renderAutobalance() {
  const d = autobalance.data;
  if (!d) return;
  const s = d.settings;
  const badge = $("#ab-status");
  badge.textContent = s.enabled ? (s.dry_run ? "on · dry run" : "on") : "off";
  badge.className = `badge ${s.enabled ? (s.dry_run ? "info" : "ok") : ""}`;
  const toggle = $("#ab-toggle");
  toggle.textContent = s.enabled ? "Switch off" : "Switch on";
  toggle.className = `btn small admin-only ${s.enabled ? "danger" : "primary"}`;
  const form = $("#ab-form");
  if (!form.contains(document.activeElement)) {
    form.tolerance.value = s.tolerance;
    form.quiet.value = s.quiet;
    form.max.value = s.max_slots_per_hour;
    form.dry.checked = s.dry_run;
  }
  $("#ab-settings").textContent = `${abDescribe(s)} · moved in the last hour: ${d.moved_last_hour}`;
  const err = $("#ab-error");
  err.classList.toggle("hidden", !d.error);
  err.textContent = d.error ? `Last round failed: ${d.error}` : "";
  const rows = d.rounds.map((r) => el("tr", {},
    el("td", {}, r.repeat > 1 ? `${r.round} (×${r.repeat})` : r.round),
    el("td", {}, new Date(r.at * 1000).toLocaleTimeString()),
    el("td", {}, el("span", { class: `badge ${r.acted ? "ok" : ""}` }, r.acted ? "acted" : "waited")),
    el("td", { class: "num" }, `${Number(r.imbalance || 0).toFixed(1)}%`),
    el("td", { class: "reason" }, r.reason)));
  $("#ab-rounds tbody").replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { class: "empty", colspan: 5 }, s.enabled ? "waiting for the first round" : "off: no rounds"))]));
  const last = d.rounds[0];
  const groups = last ? Object.entries(last.groups || {}) : [];
  const after = (last && last.plan && last.plan.after) || {};
  $("#ab-groups").replaceChildren(...groups.map(([gid, g]) => el("span", { class: "ab-group" },
    el("span", { class: "swatch", style: `background:${groupColor(Number(gid))}` }),
    `group ${gid}: ${g.load.toFixed(1)}% of ${g.target.toFixed(1)}% `,
    el("b", { class: g.deviation !== null && Math.abs(g.deviation) > s.tolerance ? "bad" : "" },
      g.deviation === null ? "drain" : `${g.deviation > 0 ? "+" : ""}${g.deviation.toFixed(1)}%`),
    after[gid] && after[gid].deviation !== null ? ` → ${after[gid].deviation.toFixed(1)}%` : "")));
  const notes = [];
  if (last && last.plan && last.plan.moves.length) {
    notes.push(`plan: ${last.plan.moves.map((m) => `${m.count} slots ${m.from}→${m.to}`).join(", ")}`);
  }
  for (const h of (last && last.hot_keys) || []) notes.push(`hot key ${h.key} in slot ${h.slot}: ${h.share}% of its ops, not moved`);
  for (const h of (last && last.hot_slots) || []) notes.push(`hot slot ${h.slot}: ${h.moved_to ? `moved to group ${h.moved_to}` : h.note}`);
  $("#ab-notes").textContent = notes.join(" · ");
}

function initAutobalance() {
  $("#ab-toggle").addEventListener("click", async () => {
    const on = !(autobalance.data && autobalance.data.settings.enabled);
    const form = $("#ab-form");
    const body = on ? { enabled: true, dry_run: form.dry.checked } : { enabled: false };
    if (await act(on ? "Auto-balance on" : "Auto-balance off", "PUT", "/api/v1/autobalance", body)) loadAutobalance();
  });
  $("#ab-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const body = { tolerance: f.tolerance.value.trim(), quiet: f.quiet.value.trim(),
                   max_slots_per_hour: Number(f.max.value), dry_run: f.dry.checked };
    if (await act("Auto-balance settings saved", "PUT", "/api/v1/autobalance", body)) loadAutobalance();
  });
  loadAutobalance();
  autobalance.timer = setInterval(loadAutobalance, 2000);
}

initAutobalance();
