// The daily P&L panel: GET /api/tradelog/daily-pnl drawn as a calendar (one cell per trading
// day, green for a winning day, red for a losing one) and an equity curve with its drawdown;
// and performance by group (GET /api/tradelog/stats?group_by=): a table and total P&L bars.
// Self-contained: app.js calls load() after the trade log loads and reload() on its events.
import * as api from "./api.js";

const $ = sel => document.querySelector(sel);
const money = s => s === null || s === undefined ? "–"
  : `${Number(s) < 0 ? "-" : ""}$${Math.abs(Number(s)).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
const MONTHS = 6;  // the calendar shows the latest months with activity

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "dataset") Object.assign(e.dataset, v); else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

let chart = null;
let last = null;

export async function load() {
  if (!$("#pnl-section")) return;
  loadStats();
  try {
    last = await api.get("/api/tradelog/daily-pnl");
  } catch (err) {
    $("#pnl-summary").textContent = api.describe(err);
    return;
  }
  render(last);
}

let timer = null;
export function reload() {
  clearTimeout(timer);
  timer = setTimeout(() => load().catch(() => {}), 400);  // the calendar and the groups
}

export function render(d) {
  const s = d.summary;
  $("#pnl-summary").textContent = s.days
    ? `${s.days} trading days · total ${money(s.total_pnl)} · max drawdown ${money(s.max_drawdown)} · ` +
      `${s.winning_days} up / ${s.losing_days} down · streaks: best +${s.longest_win_streak}, ` +
      `worst -${s.longest_loss_streak}, now ${s.current_streak > 0 ? "+" : ""}${s.current_streak} · ${d.timezone}`
    : "No fills yet.";
  renderCalendar(d.days);
  renderEquity(d.days);
}

function renderCalendar(days) {
  const box = $("#pnl-calendar");
  box.innerHTML = "";
  const byDate = new Map(days.map(x => [x.date, x]));
  const months = [...new Set(days.map(x => x.date.slice(0, 7)))].slice(-MONTHS);
  const scale = Math.max(1, ...days.map(x => Math.abs(Number(x.pnl))));
  for (const ym of months.reverse()) {
    const [y, m] = ym.split("-").map(Number);
    const table = el("table", { class: "pnl-month", dataset: { month: ym } });
    table.append(el("caption", {}, new Date(Date.UTC(y, m - 1, 1)).toLocaleString(undefined, { month: "long", year: "numeric", timeZone: "UTC" })));
    table.append(el("tr", {}, ...["Mon", "Tue", "Wed", "Thu", "Fri"].map(n => el("th", {}, n))));
    let row = el("tr");
    const first = new Date(Date.UTC(y, m - 1, 1));
    const pad = (first.getUTCDay() + 6) % 7;               // Monday = 0
    for (let i = 0; i < Math.min(pad, 5); i++) row.append(el("td", { class: "blank" }));
    for (let d = 1; d <= 31; d++) {
      const date = new Date(Date.UTC(y, m - 1, d));
      if (date.getUTCMonth() !== m - 1) break;
      const wd = (date.getUTCDay() + 6) % 7;
      if (wd === 0 && row.childElementCount) { table.append(row); row = el("tr"); }
      if (wd > 4) continue;                                  // weekends: never a trading day
      const iso = date.toISOString().slice(0, 10);
      const day = byDate.get(iso);
      const cell = el("td", { class: "pnl-day", title: iso }, el("span", { class: "d" }, d));
      if (day) {
        const v = Number(day.pnl);
        cell.classList.add(v > 0 ? "up" : v < 0 ? "down" : "flat");
        cell.dataset.date = iso;
        cell.dataset.pnl = day.pnl;
        cell.style.setProperty("--a", (0.15 + 0.6 * Math.abs(v) / scale).toFixed(2));
        cell.title = `${iso}: ${money(day.pnl)} (realized ${money(day.realized_pnl)}, fees ${money(day.fees)}); ` +
                     `equity ${money(day.equity)}, drawdown ${money(day.drawdown)}`;
        cell.append(el("span", { class: "v" }, money(day.pnl)));
      }
      row.append(cell);
    }
    if (row.childElementCount) table.append(row);
    box.append(table);
  }
}

function renderEquity(days) {
  const box = $("#pnl-equity");
  box.innerHTML = "";
  if (chart) { chart.destroy(); chart = null; }
  if (!days.length || typeof uPlot === "undefined") return;
  // one step per listed trading day (no weekend gaps), labelled by its date
  const x = days.map((_, i) => i);
  const fmt = v => v == null ? "–" : money(v);
  const opts = {
    width: Math.max(box.clientWidth || 600, 300), height: 220,
    scales: { x: { time: false } },
    series: [
      { label: "day", value: (u, v) => v == null ? "–" : days[v].date },
      { label: "equity", stroke: "#2563eb", width: 2, value: (u, v) => fmt(v) },
      { label: "drawdown", stroke: "#dc2626", fill: "rgba(220,38,38,.12)", width: 1, value: (u, v) => fmt(v) },
    ],
    axes: [{ values: (u, ticks) => ticks.map(t => Number.isInteger(t) && days[t] ? days[t].date.slice(5) : "") },
           { size: 80, values: (u, ticks) => ticks.map(t => money(t)) }],
  };
  chart = new uPlot(opts, [x, days.map(d => Number(d.equity)), days.map(d => Number(d.drawdown))], box);
  box.dataset.points = String(days.length);
}

// -- performance by group ----------------------------------------------------------------------
let statsChart = null;
const pct = v => v == null ? "–" : `${(Number(v) * 100).toFixed(1)}%`;
const ratio = v => v == null ? "–" : Number(v).toFixed(2);

export async function loadStats() {
  const select = $("#stats-group-by");
  if (!select) return;
  if (!select.dataset.wired) {
    select.dataset.wired = "1";
    select.addEventListener("change", () => loadStats());
  }
  let st;
  try { st = await api.get("/api/tradelog/stats", { group_by: select.value }); } catch { return; }
  const groups = st.groups || [];
  const label = g => select.value === "roll_chain" ? g.key.slice(0, 8) : g.key;
  $("#stats-groups tbody").replaceChildren(...groups.map(g => el("tr", { dataset: { key: g.key } },
    el("td", {}, label(g)), el("td", { class: "num" }, g.closed_positions), el("td", { class: "num" }, pct(g.win_rate)),
    el("td", { class: "num" }, ratio(g.profit_factor)), el("td", { class: "num" }, money(g.expectancy)),
    el("td", { class: "num" }, ratio(g.average_r)), el("td", { class: "num" }, money(g.max_drawdown)),
    el("td", { class: "num" }, money(g.total_pnl)))));
  const box = $("#stats-chart");
  box.innerHTML = "";
  if (statsChart) { statsChart.destroy(); statsChart = null; }
  box.dataset.groups = String(groups.length);
  if (!groups.length || typeof uPlot === "undefined") return;
  const x = groups.map((_, i) => i);
  statsChart = new uPlot({
    width: Math.max(box.clientWidth || 600, 300), height: 180, legend: { show: false },
    scales: { x: { time: false, range: [-0.6, groups.length - 0.4] } },
    series: [{}, { label: "total P&L", fill: "#93c5fd", stroke: "#2563eb",
                   paths: uPlot.paths.bars({ size: [0.6, 60] }), points: { show: false } }],
    axes: [{ values: (u, ticks) => ticks.map(t => Number.isInteger(t) && groups[t] ? label(groups[t]) : ""), splits: () => x },
           { size: 80, values: (u, ticks) => ticks.map(t => money(t)) }],
  }, [x, groups.map(g => Number(g.total_pnl))], box);
}
