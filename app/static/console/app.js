// The tradeloop console: sign in, then positions/orders/journal, strategies/templates, the risk
// graph, breakers, the live event feed and (admins) ML evaluation — on the public API and SSE
// streams only. The server is the authority: local state is a cache reconciled by version.
import * as api from "./api.js";
import { connectStreams, VersionedMap } from "./stream.js";
import * as charts from "./charts.js";
import * as pnl from "./pnl.js";
import * as journalRisk from "./journal-risk.js";

// -- tiny DOM helpers ------------------------------------------------------------------------
const $ = sel => document.querySelector(sel);
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "class") el.className = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}
const fmtMoney = s => s === null || s === undefined ? "–"
  : `${Number(s) < 0 ? "-" : ""}$${Math.abs(Number(s)).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
const fmtNum = (v, d = 2) => v === null || v === undefined ? "–" : Number(v).toFixed(d);
const fmtTime = s => s ? s.replace("T", " ").slice(0, 19) : "–";
const today = () => new Date().toISOString().slice(0, 10);
function debounce(fn, ms) { let t; return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); }; }

function toast(msg, kind = "error") {
  const el = h("div", { class: `toast ${kind}` }, msg);
  $("#toasts").append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 3000);
}
// Run a user action: a toast for its outcome. On 409 with the current representation
// (someone changed it first) the server's version is taken into `map` (the server is right).
async function act(fn, ok, map) {
  try { const r = await fn(); if (ok) toast(ok, "ok"); return r; }
  catch (err) {
    toast(api.describe(err));
    const cur = err.body && err.body.current;
    if (map && err.status === 409 && cur && cur.id) { map.put(cur); renderAll(); }
    return undefined;
  }
}
function renderAll() {
  if (has("tradelog")) { renderPositions(); renderOrders(); if (S.selected) renderDetail(); }
  if (has("riskgraph")) { renderStrategies(); scheduleGraph(); }
}

// -- state -------------------------------------------------------------------------------------
const S = {
  me: null, plugins: [], streams: null,
  positions: new VersionedMap(), orders: new VersionedMap(), strategies: new VersionedMap(),
  templates: [], breakers: null, stats: null,
  selected: null,          // position id shown in the detail panel
  graphPosition: null,     // position id overlaid on the risk graph (ad-hoc legs)
  spot: null, iv: 20, daysForward: 0,
  online: navigator.onLine, apiReachable: true,
  feedCount: 0,
  feedMax: 500,            // events kept in the live feed
};
window.tradeloopConsole = S;  // for the curious (and the browser tests' debugging)
const has = p => S.plugins.includes(p);

// -- connectivity: live / reconnecting / offline (read-only) ------------------------------------
function connectivity() {
  if (!S.online || !S.apiReachable) return "offline";
  if (!S.streams || !S.streams.allOpen()) return "connecting";
  return "live";
}
function renderConnectivity() {
  const state = connectivity();
  const el = $("#conn");
  el.dataset.state = state;
  el.textContent = { live: "● live", connecting: "◌ reconnecting…", offline: "○ offline" }[state];
  const readOnly = state !== "live";
  document.body.classList.toggle("read-only", readOnly);
  document.body.dataset.readOnly = readOnly ? "true" : "false";
  $("#readonly-banner").hidden = !readOnly;
  $("#readonly-banner").textContent = state === "offline"
    ? "Offline — read-only: showing the last known state; changes are blocked until the connection is back."
    : "Reconnecting to the live streams — read-only until they are back.";
  for (const b of document.querySelectorAll("[data-mutate]")) b.disabled = readOnly;
}
api.setWriteGate(() => connectivity() === "live" ? null : "read-only while offline or reconnecting");
api.onNetworkChange(ok => {
  if (S.apiReachable === ok) return;
  S.apiReachable = ok;
  renderConnectivity();
  if (ok) resync(); else probe();
});
// While the API is unreachable, ask /health now and then; the first answer ends offline mode.
async function probe() {
  while (!S.apiReachable) {
    await api.sleep(1500);
    if (!S.online) continue;
    try { const r = await fetch("/health", { cache: "no-store" }); if (r.status < 500) { S.apiReachable = true; renderConnectivity(); resync(); } }
    catch { /* still unreachable */ }
  }
}

window.addEventListener("offline", () => {
  S.online = false;
  if (S.streams) S.streams.close();
  renderConnectivity();
});
window.addEventListener("online", () => {
  S.online = true;
  S.apiReachable = true;
  if (S.streams) S.streams.open();   // resumes from the last applied seq: nothing missed
  renderConnectivity();
  resync();
});

// -- sign in -------------------------------------------------------------------------------------
async function boot() {
  let health;
  try { health = await api.get("/health"); } catch { health = { plugins: [] }; }
  S.plugins = health.plugins || [];
  // /api/auth/status answers 200 signed in or not (/me's 401 would be a red error in the
  // browser's console on every visit to the sign-in page)
  try { const st = await api.get("/api/auth/status"); S.me = st.authenticated ? st.user : null; } catch { S.me = null; }
  if (!S.me) return showLogin();
  startConsole();
}

function showLogin(message) {
  $("#app").hidden = true;
  $("#conn").hidden = true;     // nothing is connecting while signed out
  $("#login").hidden = false;
  $("#user").textContent = "";
  $("#logout").hidden = true;
  if (message) $("#login-error").textContent = message;
  $("#login-token").focus();
}

$("#login-form").addEventListener("submit", async e => {
  e.preventDefault();
  $("#login-error").textContent = "";
  try {
    S.me = await api.request("POST", "/api/auth/login", { body: { token: $("#login-token").value.trim() }, readOnly: true });
    $("#login-token").value = "";
    startConsole();
  } catch (err) {
    $("#login-error").textContent = err.status === 401 ? "Unknown or revoked token." : api.describe(err);
  }
});
$("#logout").addEventListener("click", async () => {
  if (S.streams) S.streams.stop();
  S.streams = null;
  await api.request("POST", "/api/auth/logout", { readOnly: true }).catch(() => {});
  location.reload();
});

function startConsole() {
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#conn").hidden = false;
  $("#user").textContent = `${S.me.name}${S.me.is_admin ? " (admin)" : ""}`;
  $("#logout").hidden = false;
  for (const sec of document.querySelectorAll("[data-plugin]")) sec.hidden = !has(sec.dataset.plugin);
  $("#ml-section").hidden = !(has("mlloop") && S.me.is_admin);
  const paths = { tradelog: "/sse/trade-log", riskgraph: "/sse/risk-graph", breakers: "/sse/breakers" };
  // Streams first, then the REST state: whatever commits in between arrives on a stream and
  // is reconciled by version, so nothing falls into a gap.
  S.streams = connectStreams({ userId: S.me.id, paths: Object.entries(paths).filter(([p]) => has(p)).map(([, path]) => path),
                               onEvent, onStatus: () => renderConnectivity() });
  renderConnectivity();
  resync();
  if (has("mlloop") && S.me.is_admin) loadMl();
}

// -- loading (and re-loading after a reconnect) ---------------------------------------------
let resyncing = null;
async function resync() {
  if (resyncing) return resyncing;
  resyncing = (async () => {
    const jobs = [];
    if (has("tradelog")) jobs.push(loadTradelog());
    if (has("riskgraph")) jobs.push(loadRiskgraph());
    if (has("breakers")) jobs.push(loadBreakers());
    await Promise.allSettled(jobs);
  })();
  try { await resyncing; } finally { resyncing = null; }
}

async function loadTradelog() {
  const [positions, orders, stats] = await Promise.all([
    api.getAll("/api/positions"), api.getAll("/api/orders/active"), api.get("/api/tradelog/stats")]);
  S.positions.replaceAll(positions);
  S.orders.replaceAll(orders);
  S.stats = stats;
  renderPositions(); renderOrders(); renderStats();
  pnl.load();
  if (!S.graphPosition && has("riskgraph")) {
    const firstOpen = positions.find(p => p.status === "open" && p.legs.some(l => l.instrument_type === "option"));
    if (firstOpen) S.graphPosition = firstOpen.id;
  }
  if (S.selected) renderDetail();
  scheduleGraph();
}

async function loadRiskgraph() {
  const [list, templates] = await Promise.all([api.getAll("/api/risk-graph/strategies"), api.getAll("/api/risk-graph/templates")]);
  S.strategies.replaceAll(list);
  S.templates = templates;
  renderStrategies(); renderTemplates();
  scheduleGraph();
}

async function loadBreakers() {
  S.breakers = await api.get("/api/breakers/status");
  renderBreakers();
}
const reloadBreakers = debounce(() => loadBreakers().catch(() => {}), 200);
const reloadStats = debounce(() => api.get("/api/tradelog/stats").then(s => { S.stats = s; renderStats(); }).catch(() => {}), 300);

// -- events: dedupe happened in the stream; here reconcile by aggregate_version ---------------
async function onEvent(env, stream) {
  addToFeed(env, stream);
  if (["FillRecorded", "LegSettled", "LegsMarked", "PositionClosed"].includes(env.type)) pnl.reload();
  const p = env.payload || {};
  const v = env.aggregate_version;
  switch (env.type) {
    case "PositionCreated":
    case "PositionAdjusted":
      if (S.positions.put(p.position)) renderPositions();
      break;
    case "FillRecorded":
      // The payload has the fill, not the position: fetch the position if this is news.
      if (v > S.positions.version(p.position_id)) await refetch(S.positions, `/api/positions/${p.position_id}`, renderPositions);
      break;
    case "PositionClosed": {
      const held = S.positions.get(p.position_id);
      if (held && v > held.version) {
        S.positions.put({ ...held, status: "closed", realized_pnl: p.realized_pnl, fees: p.fees, closed_at: p.closed_at, version: v });
        renderPositions();
      } else if (!held) await refetch(S.positions, `/api/positions/${p.position_id}`, renderPositions);
      reloadStats();
      break;
    }
    case "OrderCreated":
      if (S.orders.put(p.order)) renderOrders();
      break;
    case "OrderCancelled":
    case "OrderFilled":
      if (S.orders.remove(p.order_id, v)) renderOrders();
      break;
    case "StrategyAdded":
    case "StrategyUpdated":
      if (S.strategies.put(p.strategy)) { renderStrategies(); scheduleGraph(); }
      break;
    case "StrategyRemoved":
      if (S.strategies.remove(p.strategy.id, p.strategy.version)) { renderStrategies(); scheduleGraph(); }
      break;
    default:
      if (stream.path === "/sse/breakers") reloadBreakers();
  }
  if (S.selected && env.aggregate_id === S.selected) renderDetail();
}

async function refetch(map, path, render) {
  try { if (map.put(await api.get(path))) render(); } catch { /* the next resync fixes it */ }
}

// The feed keeps the newest S.feedMax events; when it is full the oldest event of the most
// frequent type goes first, so one type flooding the streams never pushes the others out.
// Each type has a toggle (with its count) above the feed; hidden types stay hidden across
// reloads (localStorage).
const feedTypes = new Map();   // type -> {count, button}
const hiddenTypes = new Set(JSON.parse(localStorage.getItem("tradeloop.feed.hidden") || "[]"));

function feedTypeButton(type) {
  let t = feedTypes.get(type);
  if (!t) {
    const n = h("span", { class: "n" }, "0");
    const button = h("button", { type: "button", class: "small feed-type", dataset: { type },
      "aria-pressed": String(!hiddenTypes.has(type)), onclick: () => toggleFeedType(type) }, type, n);
    t = { count: 0, button, n };
    feedTypes.set(type, t);
    const all = [...feedTypes.keys()].sort();
    $("#feed-types").replaceChildren(...all.map(k => feedTypes.get(k).button));
  }
  return t;
}

function toggleFeedType(type) {
  if (hiddenTypes.has(type)) hiddenTypes.delete(type); else hiddenTypes.add(type);
  localStorage.setItem("tradeloop.feed.hidden", JSON.stringify([...hiddenTypes]));
  feedTypes.get(type).button.setAttribute("aria-pressed", String(!hiddenTypes.has(type)));
  for (const li of document.querySelectorAll(`#feed li.ev[data-type="${CSS.escape(type)}"]`)) li.hidden = hiddenTypes.has(type);
  renderFeedCount();
}

function renderFeedCount() {
  const hidden = [...hiddenTypes].reduce((a, t) => a + (feedTypes.get(t)?.count || 0), 0);
  $("#feed-count").textContent = `${S.feedCount} events` + (hidden ? ` · ${hidden} hidden` : "");
}

function addToFeed(env, stream) {
  const feed = $("#feed");
  const streamName = env.stream || stream.path;
  const li = h("li", { class: "ev", dataset: { stream: streamName, seq: String(env.event_seq), eventId: env.event_id, type: env.type } },
    h("span", { class: "seq" }, `#${env.event_seq}`),
    h("span", { class: "type" }, env.type),
    h("span", { class: "agg" }, `${env.aggregate_type} ${String(env.aggregate_id || "").slice(0, 8)} v${env.aggregate_version ?? "–"}`),
    h("span", { class: "when" }, fmtTime(env.recorded_at)));
  li.hidden = hiddenTypes.has(env.type);
  feed.prepend(li);
  S.feedCount++;
  const t = feedTypeButton(env.type);
  t.count++;
  t.n.textContent = String(t.count);
  const held = new Map();
  if (feed.children.length > S.feedMax) {
    for (const el of feed.children) held.set(el.dataset.type, (held.get(el.dataset.type) || 0) + 1);
    while (feed.children.length > S.feedMax) {
      const top = [...held.entries()].sort((a, b) => b[1] - a[1])[0][0];
      const victims = feed.querySelectorAll(`li.ev[data-type="${CSS.escape(top)}"]`);
      victims[victims.length - 1].remove();
      held.set(top, held.get(top) - 1);
    }
  }
  renderFeedCount();
}

// -- positions, orders, journal ----------------------------------------------------------------
function legText(l) {
  const q = l.quantity > 0 ? `+${l.quantity}` : `${l.quantity}`;
  if (l.instrument_type === "option") return `${q} ${l.right === "call" ? "C" : "P"} ${Number(l.strike)} ${l.expiry}`;
  if (l.instrument_type === "future") return `${q} FUT ${l.expiry}`;
  return `${q} STK`;
}

/** "+1 C 6100 2026-12-18; -1 C 6150 2026-12-18; +100 STK" -> legs */
function parseLegs(text) {
  return text.split(/[;\n]+/).map(s => s.trim()).filter(Boolean).map(s => {
    const [q, kind, a, b] = s.split(/\s+/);
    const quantity = parseInt(q, 10);
    if (!quantity) throw new Error(`bad quantity in "${s}"`);
    const k = (kind || "").toUpperCase();
    if (k === "STK") return { instrument_type: "stock", quantity };
    if (k === "FUT") return { instrument_type: "future", quantity, expiry: a };
    if (k !== "C" && k !== "P") throw new Error(`"${s}": use C, P, STK or FUT`);
    return { instrument_type: "option", right: k === "C" ? "call" : "put", strike: a, expiry: b, quantity };
  });
}

function renderPositions() {
  const rows = S.positions.values().sort((a, b) => (b.created_at || "").localeCompare(a.created_at || ""));
  const open = rows.filter(p => p.status !== "closed");
  const closed = rows.filter(p => p.status === "closed");
  const row = p => h("tr", {
    class: `position ${p.id === S.selected ? "selected" : ""} ${p._pending ? "pending" : ""}`,
    dataset: { id: p.id, version: String(p.version), status: p.status, symbol: p.symbol },
    onclick: () => { if (!p._pending) { S.selected = p.id; renderPositions(); renderDetail(); } },
  },
    h("td", {}, p.symbol), h("td", {}, h("span", { class: `badge ${p.status}` }, p._pending ? "saving…" : p.status)),
    h("td", { class: "legs" }, p.legs.map(legText).join("; ")),
    h("td", {}, p.status === "closed" ? fmtMoney(p.realized_pnl) : fmtTime(p.opened_at)),
    h("td", { class: "num" }, `v${p.version}`),
    h("td", {}, p.status !== "closed" && p.legs.some(l => l.instrument_type === "option") && has("riskgraph")
      ? h("button", { class: "small graph", onclick: e => { e.stopPropagation(); S.graphPosition = p.id; scheduleGraph(true); } }, "graph") : ""));
  $("#positions-body").replaceChildren(...open.map(row));
  $("#closed-body").replaceChildren(...closed.map(row));
  $("#closed-count").textContent = String(closed.length);
  $("#positions-empty").hidden = open.length > 0;
}

function renderStats() {
  const o = S.stats && S.stats.overall;
  $("#stats").textContent = o ? `closed ${o.closed_positions} · win rate ${o.win_rate === null ? "–" : (Number(o.win_rate) * 100).toFixed(0) + "%"} · total P&L ${fmtMoney(o.total_pnl)} · profit factor ${fmtNum(o.profit_factor)}` : "";
}

$("#new-position").addEventListener("submit", async e => {
  e.preventDefault();
  let legs;
  try { legs = parseLegs($("#np-legs").value); } catch (err) { return toast(err.message); }
  const body = { symbol: $("#np-symbol").value.trim().toUpperCase(), legs };
  const tags = $("#np-tags").value.split(",").map(s => s.trim()).filter(Boolean);
  if (tags.length) body.tags = tags;
  const tmpId = "tmp-" + api.newKey();
  const ok = await act(() => api.optimistic({
    apply: () => {
      const undo = S.positions.optimistic(tmpId, { id: tmpId, version: 0, status: "planned", symbol: body.symbol,
        legs: legs.map(l => ({ ...l })), created_at: new Date().toISOString() });
      renderPositions();
      return () => { undo(); renderPositions(); };
    },
    send: () => api.post("/api/positions", body),
    commit: pos => { S.positions.setRaw(tmpId, null); S.positions.put(pos); S.selected = pos.id; renderPositions(); renderDetail(); },
  }), "position created");
  if (ok) $("#np-legs").value = "";
});

function renderDetail() {
  const box = $("#position-detail");
  const p = S.positions.get(S.selected);
  if (!p) { box.hidden = true; return; }
  box.hidden = false;
  box.dataset.id = p.id;
  $("#pd-title").textContent = `${p.symbol} · ${p.status} · v${p.version}`;
  $("#pd-legs").replaceChildren(...p.legs.map(l => h("li", {}, legText(l))));
  const legSel = $("#pd-fill-leg");
  if (legSel.dataset.for !== `${p.id}:${p.version}`) {
    legSel.dataset.for = `${p.id}:${p.version}`;
    legSel.replaceChildren(...p.legs.map(l => h("option", { value: l.id, dataset: { qty: String(l.quantity) } }, legText(l))));
    $("#pd-fill-qty").value = p.legs[0] ? String(p.legs[0].quantity) : "";
  }
  const closed = p.status === "closed";
  for (const el of document.querySelectorAll("#position-detail .needs-open")) el.hidden = closed;
  loadJournal(p.id);
}
$("#pd-fill-leg").addEventListener("change", e => { $("#pd-fill-qty").value = e.target.selectedOptions[0]?.dataset.qty || ""; });

$("#pd-fill").addEventListener("submit", async e => {
  e.preventDefault();
  const p = S.positions.get(S.selected);
  const body = { leg_id: $("#pd-fill-leg").value, price: $("#pd-fill-price").value, quantity: parseInt($("#pd-fill-qty").value, 10),
                 fees: $("#pd-fill-fees").value || "0", occurred_at: new Date().toISOString() };
  const r = await act(() => api.post(`/api/positions/${p.id}/fills`, body), "fill recorded");
  if (r && S.positions.put(r.position)) { renderPositions(); renderDetail(); }
});

$("#pd-close").addEventListener("click", async () => {
  const p = S.positions.get(S.selected);
  await act(() => api.optimistic({
    apply: () => { const undo = S.positions.optimistic(p.id, { ...p, status: "closed" }); renderPositions(); return () => { undo(); renderPositions(); renderDetail(); }; },
    send: () => api.post(`/api/positions/${p.id}/close`, {}, { ifMatch: p.version }),
    commit: pos => { S.positions.settle(p.id, pos); renderPositions(); renderDetail(); reloadStats(); },
  }), "position closed", S.positions);
});

async function loadJournal(positionId) {
  try {
    const entries = await api.getAll("/api/journal_entries", { position_id: positionId });
    if (S.selected !== positionId) return;
    $("#pd-journal").replaceChildren(...entries.map(j => journalRisk.decorate(h("li", { class: "journal", dataset: { id: j.id } },
      h("b", {}, `[${j.phase}] ${j.object_of_reflection}`), j.bias_flags?.length ? ` (${j.bias_flags.join(", ")})` : "",
      j.notes ? h("div", { class: "notes" }, j.notes) : "", h("div", { class: "when" }, fmtTime(j.created_at))), j)));
  } catch { /* offline: keep what is shown */ }
}

$("#pd-journal-form").addEventListener("submit", async e => {
  e.preventDefault();
  const body = { position_id: S.selected, phase: $("#pj-phase").value, object_of_reflection: $("#pj-object").value.trim(),
                 notes: $("#pj-notes").value.trim() || null,
                 bias_flags: $("#pj-flags").value.split(",").map(s => s.trim()).filter(Boolean) };
  const r = await act(() => api.post("/api/journal_entries", body), "journal entry saved");
  if (r) { $("#pj-object").value = ""; $("#pj-notes").value = ""; loadJournal(S.selected); }
});

function renderOrders() {
  const orders = S.orders.values().filter(o => o.status === "pending").sort((a, b) => (a.created_at || "").localeCompare(b.created_at || ""));
  $("#orders-body").replaceChildren(...orders.map(o => {
    const multi = o.position_template.legs.length > 1;
    const prices = h("input", { class: "prices", size: 12, placeholder: multi ? "leg prices a,b" : `fill (${o.limit_price ?? "mkt"})` });
    return h("tr", { class: `order ${o._pending ? "pending" : ""}`, dataset: { id: o.id, version: String(o.version) } },
      h("td", {}, o.position_template.symbol), h("td", { class: "legs" }, o.position_template.legs.map(legText).join("; ")),
      h("td", {}, `${o.order_type} ${o.limit_price ?? ""}`), h("td", {}, prices),
      h("td", {}, h("button", { class: "small execute", "data-mutate": true, onclick: () => executeOrder(o, prices.value) }, "execute"),
        " ", h("button", { class: "small cancel", "data-mutate": true, onclick: () => cancelOrder(o) }, "cancel")));
  }));
  $("#orders-empty").hidden = orders.length > 0;
  renderConnectivity();
}

function executeOrder(o, prices) {
  const body = {};
  const list = prices.split(",").map(s => s.trim()).filter(Boolean);
  if (o.position_template.legs.length > 1) {
    if (list.length !== o.position_template.legs.length) return toast(`give ${o.position_template.legs.length} leg prices, comma-separated`);
    body.leg_prices = list;
  } else if (list.length) body.fill_price = list[0];
  return act(() => api.optimistic({
    apply: () => { const undo = S.orders.optimistic(o.id, null); renderOrders(); return () => { undo(); renderOrders(); }; },
    send: () => api.post(`/api/orders/${o.id}/execute`, body),
    commit: r => { S.orders.remove(o.id, r.order.version); S.positions.put(r.position); renderOrders(); renderPositions(); },
  }), "order executed", S.orders);
}

function cancelOrder(o) {
  return act(() => api.optimistic({
    apply: () => { const undo = S.orders.optimistic(o.id, null); renderOrders(); return () => { undo(); renderOrders(); }; },
    send: () => api.del(`/api/orders/${o.id}`, { ifMatch: o.version }),
    commit: r => { S.orders.remove(o.id, r.version); renderOrders(); },
  }), "order cancelled", S.orders);
}

$("#new-order").addEventListener("submit", async e => {
  e.preventDefault();
  let legs;
  try { legs = parseLegs($("#no-legs").value); } catch (err) { return toast(err.message); }
  const limit = $("#no-limit").value.trim();
  const body = { order_type: limit ? "limit" : "market", position_template: { symbol: $("#no-symbol").value.trim().toUpperCase(), legs } };
  if (limit) body.limit_price = limit;
  const r = await act(() => api.post("/api/orders", body), "order created");
  if (r && S.orders.put(r)) { renderOrders(); $("#no-legs").value = ""; }
});

// -- strategies, templates, versions -------------------------------------------------------------
const sortedStrategies = () => S.strategies.values().sort((a, b) => a.sort_order - b.sort_order || a.added_at - b.added_at);
const colorOf = (s, i) => s.color || charts.PALETTE[i % charts.PALETTE.length];
const strategyName = s => s.label || `${s.symbol} ${s.strategy} ${s.side} ${Number(s.strike)}${s.width ? "/" + s.width : ""}`;

function renderStrategies() {
  const list = sortedStrategies();
  $("#strategies").replaceChildren(...list.map((s, i) => {
    const debit = h("input", { class: "debit-input", size: 7, value: s.debit ?? "", placeholder: "debit" });
    return h("li", { class: `strategy ${s._pending ? "pending" : ""}`, dataset: { id: s.id, version: String(s.version), visible: String(s.visible) } },
      h("input", { type: "checkbox", class: "toggle-visible", checked: s.visible, "data-mutate": true, title: "show on the risk graph",
                   onchange: () => patchStrategy(s, { visible: !s.visible }) }),
      h("span", { class: "swatch", style: `background:${colorOf(s, i)}` }),
      h("span", { class: "name" }, strategyName(s)),
      h("span", { class: "meta" }, `${s.expiration} · v${s.version}`),
      debit,
      h("button", { class: "small save-debit", "data-mutate": true, onclick: () => patchStrategy(s, { debit: debit.value.trim() || null, change_reason: "debit edited in the console" }) }, "save"),
      h("button", { class: "small up", "data-mutate": true, disabled: i === 0, onclick: () => moveStrategy(s.id, -1), title: "move up" }, "↑"),
      h("button", { class: "small down", "data-mutate": true, disabled: i === list.length - 1, onclick: () => moveStrategy(s.id, 1), title: "move down" }, "↓"),
      h("button", { class: "small versions", onclick: () => showVersions(s) }, "history"),
      h("button", { class: "small remove", "data-mutate": true, onclick: () => removeStrategy(s) }, "✕"));
  }));
  $("#strategies-empty").hidden = list.length > 0;
  renderConnectivity();
}

function patchStrategy(s, change) {
  const before = S.strategies.get(s.id);
  const redraw = () => { renderStrategies(); scheduleGraph(); };
  return act(() => api.optimistic({
    apply: () => { const undo = S.strategies.optimistic(s.id, { ...before, ...change }); redraw(); return () => { undo(); redraw(); }; },
    send: () => api.patch(`/api/risk-graph/strategies/${s.id}`, change, { ifMatch: before.version }),
    commit: rep => { S.strategies.settle(s.id, rep); redraw(); },
  }), null, S.strategies);
}

function removeStrategy(s) {
  const before = S.strategies.get(s.id);
  return act(() => api.optimistic({
    apply: () => { const undo = S.strategies.optimistic(s.id, null); renderStrategies(); scheduleGraph(); return () => { undo(); renderStrategies(); scheduleGraph(); }; },
    send: () => api.del(`/api/risk-graph/strategies/${s.id}`, { ifMatch: before.version, query: { change_reason: "removed in the console" } }),
    commit: rep => S.strategies.remove(rep.id, rep.version),
  }), "strategy removed", S.strategies);
}

function moveStrategy(id, delta) {
  const list = sortedStrategies();
  const i = list.findIndex(s => s.id === id);
  const j = i + delta;
  if (j < 0 || j >= list.length) return;
  [list[i], list[j]] = [list[j], list[i]];
  const order = list.map((s, k) => ({ id: s.id, sort_order: k }));
  const before = new Map(list.map(s => [s.id, S.strategies.get(s.id)]));
  return act(() => api.optimistic({
    apply: () => {
      const undos = order.map(o => S.strategies.optimistic(o.id, { ...before.get(o.id), sort_order: o.sort_order }));
      renderStrategies(); scheduleGraph();
      return () => { undos.forEach(u => u()); renderStrategies(); scheduleGraph(); };
    },
    send: () => api.post("/api/risk-graph/strategies/reorder", { order }),
    commit: r => { for (const rep of r) S.strategies.settle(rep.id, rep); renderStrategies(); scheduleGraph(); },
  }));
}

async function showVersions(s) {
  const r = await act(() => api.getAll(`/api/risk-graph/strategies/${s.id}/versions`));
  if (!r) return;
  const box = $("#versions");
  box.hidden = false;
  $("#versions-title").textContent = `History of ${strategyName(s)}`;
  $("#versions-body").replaceChildren(...r.map(v => h("tr", { class: "version", dataset: { version: String(v.version) } },
    h("td", {}, `v${v.version}`), h("td", {}, v.change_type), h("td", {}, v.debit ?? "–"), h("td", {}, v.visible ? "shown" : "hidden"),
    h("td", {}, v.change_reason || ""), h("td", {}, fmtTime(v.created_at)))));
}
$("#versions-close").addEventListener("click", () => { $("#versions").hidden = true; });

$("#new-strategy").addEventListener("submit", async e => {
  e.preventDefault();
  const f = e.target.elements;
  const body = { symbol: f.symbol.value.trim().toUpperCase() || "SPX", strategy: f.strategy.value, side: f.side.value,
                 strike: f.strike.value, dte: parseInt(f.dte.value, 10), visible: true };
  if (f.width.value) body.width = parseInt(f.width.value, 10);
  if (f.debit.value) body.debit = f.debit.value;
  if (f.label.value) body.label = f.label.value;
  const maxOrder = Math.max(-1, ...S.strategies.values().map(s => s.sort_order));
  body.sort_order = maxOrder + 1;
  const tmpId = "tmp-" + api.newKey();
  const ok = await act(() => api.optimistic({
    apply: () => {
      const undo = S.strategies.optimistic(tmpId, { ...body, id: tmpId, version: 0, added_at: Date.now(), expiration: "…" });
      renderStrategies();
      return () => { undo(); renderStrategies(); };
    },
    send: () => api.post("/api/risk-graph/strategies", body),
    commit: rep => { S.strategies.setRaw(tmpId, null); S.strategies.put(rep); renderStrategies(); scheduleGraph(); },
  }), "strategy added");
  if (ok) f.label.value = "";
});

function renderTemplates() {
  $("#templates").replaceChildren(...S.templates.map(t => h("li", { class: "template", dataset: { id: t.id } },
    h("span", { class: "name" }, `${t.name}: ${t.symbol} ${t.strategy} ${t.side} ATM${t.strike_offset >= 0 ? "+" : ""}${t.strike_offset}${t.width ? " w" + t.width : ""} ${t.dte_target}d`),
    h("span", { class: "meta" }, `used ${t.use_count}×`), t.share_code ? h("code", { class: "share-code" }, t.share_code) : "",
    h("button", { class: "small use", "data-mutate": true, onclick: () => useTemplate(`/api/risk-graph/templates/${t.id}/use`) }, "use"),
    h("button", { class: "small share", "data-mutate": true, onclick: () => shareTemplate(t) }, "share"))));
  renderConnectivity();
}

async function useTemplate(path) {
  const spot = S.spot || Number($("#spot").value) || null;
  if (!spot) return toast("set a spot price on the risk graph first");
  const rep = await act(() => api.post(path, { spot: String(spot) }), "strategy added from the template");
  if (rep && S.strategies.put(rep)) { renderStrategies(); scheduleGraph(); }
  loadRiskgraph().catch(() => {});
}

async function shareTemplate(t) {
  const r = await act(() => api.post(`/api/risk-graph/templates/${t.id}/share`));
  if (r) { t.share_code = r.share_code; renderTemplates(); toast(`share code: ${r.share_code}`, "ok"); }
}

$("#new-template").addEventListener("submit", async e => {
  e.preventDefault();
  const f = e.target.elements;
  const body = { name: f.name.value.trim(), symbol: f.symbol.value.trim().toUpperCase() || "SPX", strategy: f.strategy.value,
                 side: f.side.value, strike_offset: parseInt(f.offset.value || "0", 10), dte_target: parseInt(f.dte.value, 10) };
  if (f.width.value) body.width = parseInt(f.width.value, 10);
  if (f.debit.value) body.debit_estimate = f.debit.value;
  const r = await act(() => api.post("/api/risk-graph/templates", body), "template created");
  if (r) { S.templates.push(r); renderTemplates(); f.name.value = ""; }
});

$("#shared-form").addEventListener("submit", async e => {
  e.preventDefault();
  const code = $("#shared-code").value.trim();
  const t = await act(() => api.get(`/api/risk-graph/templates/shared/${encodeURIComponent(code)}`));
  if (!t) return;
  $("#shared-view").replaceChildren(h("span", {}, `${t.name}: ${t.symbol} ${t.strategy} ${t.side} ATM+${t.strike_offset} ${t.dte_target}d (used ${t.use_count}×) `),
    h("button", { class: "small", "data-mutate": true, onclick: () => useTemplate(`/api/risk-graph/templates/shared/${encodeURIComponent(code)}/use`) }, "use"),
    " ", h("button", { class: "small", "data-mutate": true, onclick: async () => { const c = await act(() => api.post(`/api/risk-graph/templates/shared/${encodeURIComponent(code)}/copy`), "copied to your templates"); if (c) { S.templates.push(c); renderTemplates(); } } }, "copy"));
});

// -- the risk graph --------------------------------------------------------------------------------
let chart = null;
let graphSeq = 0;
const scheduleGraph = debounce(() => drawGraph(), 250);

async function defaultSpot(symbol, strikes) {
  try {
    const m = await api.get(`/api/risk-graph/market-inputs/${encodeURIComponent(symbol)}`);
    if (m && m.spot) {
      // The IV slider starts at the stored market IV (unless the user has moved it already).
      if (!$("#iv").dataset.touched && m.iv) {
        S.iv = Math.round(Number(m.iv) * 100);
        $("#iv").value = S.iv;
        $("#iv-out").textContent = `${S.iv}%`;
        $("#iv").dataset.source = "market";
      }
      return Number(m.spot);
    }
  } catch { /* none stored */ }
  if (!strikes.length) return null;
  return Math.round(strikes.reduce((a, b) => a + b, 0) / strikes.length);
}

async function positionLegs(p) {
  // Entry prices from the snapshot's fills (the average in the leg's direction), so the
  // position's P&L uses what was paid; legs without fills are valued at the model.
  const snap = await api.get(`/api/positions/${p.id}/snapshot`);
  return snap.legs.filter(l => l.instrument_type === "option" && l.expiry >= today()).map(l => {
    const fills = snap.fills.filter(f => f.leg_id === l.id && Math.sign(f.quantity) === Math.sign(l.quantity));
    const qty = fills.reduce((a, f) => a + Math.abs(f.quantity), 0);
    const leg = { instrument_type: "option", right: l.right, strike: l.strike, expiry: l.expiry, quantity: l.quantity, multiplier: l.multiplier };
    if (qty) leg.price = (fills.reduce((a, f) => a + Number(f.price) * Math.abs(f.quantity), 0) / qty).toFixed(4);
    return leg;
  });
}

async function drawGraph() {
  if (!has("riskgraph")) return;
  const my = ++graphSeq;
  const visible = sortedStrategies().filter(s => s.visible && !s._pending && s.expiration >= today());
  const pos = S.graphPosition && S.positions.get(S.graphPosition);
  const body = { iv: S.iv / 100, points: 161, days_forward: [S.daysForward] };
  const items = [];
  if (visible.length) body.strategy_ids = visible.slice(0, 20).map(s => s.id);
  let legs = null;
  if (pos && pos.status !== "closed") {
    try { legs = await positionLegs(pos); } catch { legs = null; }
    if (legs && legs.length) body.legs = legs; else legs = null;
  }
  const el = $("#risk-chart");
  if (!body.strategy_ids && !body.legs) {
    if (chart) { chart.destroy(); chart = null; }
    el.replaceChildren(h("p", { class: "empty" }, "Show a strategy (or press “graph” on an open position) to draw its risk graph."));
    el.dataset.series = "0";
    $("#greeks-body").replaceChildren();
    return;
  }
  const strikes = [...visible.map(s => Number(s.strike)), ...(legs || []).map(l => Number(l.strike))];
  if (!S.spot) {
    S.spot = await defaultSpot((pos && pos.symbol) || (visible[0] && visible[0].symbol) || "SPX", strikes);
    if (S.spot) $("#spot").value = S.spot;
  }
  if (!S.spot) return;
  body.spot = S.spot;
  const maxDte = Math.max(1, ...visible.map(s => daysUntil(s.expiration)), ...(legs || []).map(l => daysUntil(l.expiry)));
  $("#days").max = String(maxDte);
  let r;
  try { r = await api.request("POST", "/api/risk-graph/analyze", { body, readOnly: true }); }
  catch (err) { if (my === graphSeq) { el.dataset.error = api.describe(err); toast(`risk graph: ${api.describe(err)}`); } return; }
  if (my !== graphSeq) return;  // a newer request is on its way
  delete el.dataset.error;
  for (const risk of r.strategies) {
    if (risk.source === "legs") items.push({ label: `${pos.symbol} position`, color: "#111827", risk });
    else {
      const s = S.strategies.get(risk.strategy_id);
      const idx = sortedStrategies().findIndex(x => x.id === risk.strategy_id);
      items.push({ label: s ? strategyName(s) : risk.label || "strategy", color: s ? colorOf(s, idx) : "#6b7280", risk });
    }
  }
  if (chart) chart.destroy();
  chart = charts.riskGraph(el, r, items, S.daysForward);
  el.dataset.series = String(items.length);
  el.dataset.updated = String(Date.now());
  $("#greeks-body").replaceChildren(...items.map(it => {
    const g = it.risk.greeks.total;
    return h("tr", { class: "greeks" }, h("td", {}, h("span", { class: "swatch", style: `background:${it.color}` }), it.label),
      h("td", { class: "num" }, fmtNum(g.delta)), h("td", { class: "num" }, fmtNum(g.gamma, 3)), h("td", { class: "num" }, fmtNum(g.theta)),
      h("td", { class: "num" }, fmtNum(g.vega)), h("td", { class: "num" }, it.risk.breakevens.map(b => b.toFixed(0)).join(", ") || "–"),
      h("td", { class: "num" }, it.risk.max_profit_unbounded ? "∞" : fmtMoney(it.risk.max_profit)),
      h("td", { class: "num" }, it.risk.max_loss_unbounded ? "∞" : fmtMoney(it.risk.max_loss)),
      h("td", { class: "num" }, `${(it.risk.pop * 100).toFixed(0)}%`));
  }));
}
const daysUntil = d => Math.max(0, Math.round((Date.parse(d) - Date.parse(today())) / 86400000));

$("#iv").addEventListener("input", e => { e.target.dataset.touched = "1"; S.iv = Number(e.target.value); $("#iv-out").textContent = `${S.iv}%`; scheduleGraph(); });
$("#days").addEventListener("input", e => { S.daysForward = Number(e.target.value); $("#days-out").textContent = `T+${S.daysForward}`; scheduleGraph(); });
$("#spot").addEventListener("change", e => { S.spot = Number(e.target.value) || null; scheduleGraph(); });
$("#graph-clear-position").addEventListener("click", () => { S.graphPosition = null; scheduleGraph(); });
window.addEventListener("resize", debounce(() => scheduleGraph(), 300));

// -- breakers and kill switches -----------------------------------------------------------------
function renderBreakers() {
  const b = S.breakers;
  if (!b) return;
  const ts = $("#trading-state");
  ts.textContent = b.trading_state.state;
  ts.dataset.state = b.trading_state.state;
  $("#trading-reason").textContent = `${b.trading_state.reason || ""} · scoring ${b.scoring_mode} · since ${fmtTime(b.trading_state.since)}`;
  $("#breakers-body").replaceChildren(...b.breakers.map(x => h("tr", { class: `breaker ${x.tripped ? "tripped" : ""}`, dataset: { name: x.name, tripped: String(x.tripped) } },
    h("td", {}, x.name), h("td", {}, x.configured ? (x.tripped ? "TRIPPED" : "ok") : "not set"),
    h("td", { class: "num" }, x.value ?? "–"), h("td", { class: "num" }, x.limit ?? "–"), h("td", {}, x.unit),
    h("td", {}, x.tripped ? h("button", { class: "small", "data-mutate": true, onclick: () => clearBreaker(x.name) }, "clear") : ""))));
  const engaged = new Set(b.kill_switches.filter(k => k.engaged && k.scope === "user").map(k => k.kind));
  $("#kill-switches").replaceChildren(...b.kill_switches.filter(k => k.engaged).map(k =>
    h("li", { class: "kill", dataset: { kind: k.kind, scope: k.scope } }, `${k.kind} (${k.scope}) engaged by ${k.engaged_by} at ${fmtTime(k.engaged_at)}: ${k.reason}`)));
  for (const kind of ["orders", "ml_scoring"]) {
    const btn = $(`#kill-${kind}`);
    btn.dataset.engaged = String(engaged.has(kind));
    btn.textContent = engaged.has(kind) ? `release ${kind} kill switch` : `engage ${kind} kill switch`;
    btn.classList.toggle("danger", !engaged.has(kind));
  }
  renderConnectivity();
}

async function toggleKill(kind) {
  const engaged = $(`#kill-${kind}`).dataset.engaged === "true";
  const reason = $("#kill-reason").value.trim() || "from the console";
  const path = engaged ? "/api/breakers/kill-switch/release" : "/api/breakers/kill-switch";
  await act(() => api.post(path, { kind, reason, scope: "user" }), engaged ? `${kind} kill switch released` : `${kind} kill switch engaged`);
  await loadBreakers().catch(() => {});
}
$("#kill-orders").addEventListener("click", () => toggleKill("orders"));
$("#kill-ml_scoring").addEventListener("click", () => toggleKill("ml_scoring"));
async function clearBreaker(name) {
  await act(() => api.post(`/api/breakers/${name}/clear`, { reason: $("#kill-reason").value.trim() || "cleared in the console" }), `${name} cleared`);
  await loadBreakers().catch(() => {});
}

// -- ML evaluation (admins) ------------------------------------------------------------------------
// GET /api/admin/ml/evaluation/{score-outcomes, ml-vs-rules, regime-breakdown, go-live-checklist}.
const pct = v => v === null || v === undefined ? "–" : `${(Number(v) * 100).toFixed(1)}%`;
const num = v => v === null || v === undefined ? null : Number(v);
const EVAL = "/api/admin/ml/evaluation";

let mlPolls = 0, mlLastN = null;
async function loadMl() {
  const [outcomes, vsRules, regimes, checklist] = await Promise.all(
    ["score-outcomes", "ml-vs-rules", "regime-breakdown", "go-live-checklist"].map(p => api.get(`${EVAL}/${p}`).catch(e => e)));
  renderMlOutcomes(outcomes);
  renderMlVsRules(vsRules);
  renderMlRegimes(regimes);
  renderChecklist(checklist);
  // No settled history yet, or one still growing (the demo builds one in the background):
  // look again every 10 s until two reads agree.
  const n = outcomes instanceof Error ? null : outcomes.n;
  if (n !== null && (!n || n !== mlLastN) && mlPolls++ < 40) setTimeout(() => loadMl().catch(() => {}), 10_000);
  mlLastN = n;
}

function mlUnavailable(el, err) {
  el.replaceChildren(h("p", { class: "empty" }, `not available: ${api.describe(err)}`));
}

function renderMlOutcomes(r) {
  const chartEl = $("#ml-buckets-chart");
  const calEl = $("#ml-calibration-chart");
  if (r instanceof Error) { mlUnavailable(calEl, r); return mlUnavailable(chartEl, r); }
  const buckets = r.buckets || [];
  $("#ml-n").textContent = `${r.n} settled decisions · baseline win rate ${pct(r.baseline_win_rate)} · avg P&L ${fmtMoney(r.baseline_avg_pnl)}`;
  charts.barsWithLine(chartEl, {
    labels: buckets.map(b => b.bucket), bars: buckets.map(b => num(b.avg_pnl)), barLabel: "avg P&L",
    barFmt: v => v == null ? "–" : `$${Number(v).toFixed(0)}`,
    line: buckets.map(b => num(b.win_rate)), lineLabel: "win rate", lineFmt: v => v == null ? "–" : `${(v * 100).toFixed(0)}%`,
  });
  chartEl.dataset.buckets = String(buckets.length);
  $("#ml-buckets-body").replaceChildren(...buckets.map(b => h("tr", { class: "bucket" },
    h("td", {}, b.bucket), h("td", { class: "num" }, b.count), h("td", { class: "num" }, fmtMoney(b.avg_pnl)),
    h("td", { class: "num" }, pct(b.win_rate)), h("td", { class: "num" }, b.win_rate_vs_baseline == null ? "–" : `${b.win_rate_vs_baseline >= 0 ? "+" : ""}${pct(b.win_rate_vs_baseline)}`))));
  // Calibration: the score read as a probability of a win (bucket middle / 100) against the
  // observed win rate of the bucket; a calibrated score lies on the diagonal.
  const pts = buckets.filter(b => b.count > 0 && b.win_rate !== null)
    .map(b => ({ predicted: (b.low + b.high) / 200, observed: Number(b.win_rate) }));
  if (pts.length) { charts.calibration(calEl, pts); calEl.dataset.points = String(pts.length); }
  else calEl.replaceChildren(h("p", { class: "empty" }, "no settled decisions with a score yet"));
}

function renderMlVsRules(r) {
  const el = $("#ml-vs-rules");
  if (r instanceof Error) return mlUnavailable(el, r);
  const groups = [["agree", r.agree], [`ML higher (>${r.threshold} pts)`, r.ml_higher], [`ML lower (>${r.threshold} pts)`, r.ml_lower],
                  ["diverged", r.diverged]].filter(([, g]) => g);
  const chartDiv = h("div", { class: "chart" });
  el.replaceChildren(chartDiv, h("table", { class: "list" },
    h("thead", {}, h("tr", {}, h("th", {}, "ideas"), h("th", { class: "num" }, "count"), h("th", { class: "num" }, "avg P&L"),
      h("th", { class: "num" }, "win rate"), h("th", { class: "num" }, "ML right / wrong"))),
    h("tbody", {}, groups.map(([label, g]) => h("tr", { class: "group" }, h("td", {}, label), h("td", { class: "num" }, g.count),
      h("td", { class: "num" }, fmtMoney(g.avg_pnl)), h("td", { class: "num" }, pct(g.win_rate)),
      h("td", { class: "num" }, g.right === undefined ? "–" : `${g.right} / ${g.wrong} (${pct(g.accuracy)})`))))));
  charts.barsWithLine(chartDiv, { labels: groups.map(([l]) => l.split(" (")[0]), bars: groups.map(([, g]) => num(g.avg_pnl)), barLabel: "avg P&L",
    barFmt: v => v == null ? "–" : `$${Number(v).toFixed(0)}`, line: groups.map(([, g]) => num(g.win_rate)), lineLabel: "win rate",
    lineFmt: v => v == null ? "–" : `${(v * 100).toFixed(0)}%` });
}

function renderMlRegimes(r) {
  const el = $("#ml-regimes");
  if (r instanceof Error) return mlUnavailable(el, r);
  const rows = r.regimes || [];
  el.replaceChildren(rows.length ? h("table", { class: "list" },
    h("thead", {}, h("tr", {}, h("th", {}, "regime"), h("th", { class: "num" }, "count"), h("th", { class: "num" }, "win rate"),
      h("th", { class: "num" }, "avg P&L"), h("th", { class: "num" }, "ML AUC"), h("th", { class: "num" }, "rules AUC"))),
    h("tbody", {}, rows.map(x => h("tr", {}, h("td", {}, x.regime), h("td", { class: "num" }, x.count), h("td", { class: "num" }, pct(x.win_rate)),
      h("td", { class: "num" }, fmtMoney(x.avg_pnl)), h("td", { class: "num" }, fmtNum(x.ml_auc)), h("td", { class: "num" }, fmtNum(x.rule_auc))))))
    : h("p", { class: "empty" }, "no settled decisions yet"));
}

function renderChecklist(r) {
  const el = $("#ml-checklist");
  if (r instanceof Error) return mlUnavailable(el, r);
  el.replaceChildren(h("li", { class: r.ready ? "pass" : "fail" }, `${r.passed} of ${r.total} criteria met${r.ready ? ": ready to go live" : ""}`),
    ...(r.criteria || []).map(c => h("li", { class: c.passed ? "pass" : "fail", dataset: { key: c.key } },
      `${c.passed ? "✔" : "✘"} ${c.title}`, c.value !== null && typeof c.value !== "object" ? ` (${c.value}${c.target !== null && c.target !== undefined ? " / " + c.target : ""})` : "")));
}

boot();
