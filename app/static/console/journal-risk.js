// Beside each journal entry: the risk graph as it was when the entry was written — riskgraph's
// artifact the entry remembers (GET /api/journal_entries/{id} links it), its expiry P&L curve
// drawn small, and a link to the position at that version. Self-contained (app.js calls decorate).
import * as api from "./api.js";

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) { if (k === "class") e.className = v; else e.setAttribute(k, v); }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
const money = v => v == null ? "–" : (v < 0 ? "-$" : "$") + Math.abs(v).toLocaleString(undefined, { maximumFractionDigits: 0 });

/** Append the entry's risk picture to its list item (asynchronously); returns the item. */
export function decorate(li, entry) {
  const links = entry.links || {};
  const box = el("div", { class: "journal-risk" },
    el("span", { class: "when" }, `position v${entry.position_version ?? "?"}`));
  li.append(box);
  if (!links.risk_artifact) {
    box.append(el("span", { class: "when" }, " · no risk artifact was linked yet"));
    return li;
  }
  api.get(links.risk_artifact).then(a => {
    const curves = a.curves || {};
    if (!curves.grid || !curves.expiry_pnl || typeof uPlot === "undefined") return;
    const chart = el("div", { class: "journal-risk-chart" });
    box.append(el("span", { class: "when" }, ` · risk as computed ${String(a.computed_at).replace("T", " ").slice(0, 16)}` +
      ` (spot ${a.summary?.spot ?? "–"}, max P ${money(a.summary?.max_profit)}, max L ${money(a.summary?.max_loss)})`), chart);
    box.dataset.artifact = a.id;
    new uPlot({
      width: 360, height: 140, legend: { show: false }, scales: { x: { time: false } },
      series: [{}, { stroke: "#2563eb", width: 1.5, fill: "rgba(37,99,235,.08)" }],
      axes: [{ size: 24, font: "10px sans-serif" }, { size: 56, font: "10px sans-serif", values: (u, t) => t.map(money) }],
    }, [curves.grid, curves.expiry_pnl], chart);
  }).catch(err => box.append(el("span", { class: "when" }, ` · ${api.describe(err)}`)));
  return li;
}
