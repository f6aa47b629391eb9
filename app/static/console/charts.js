// Charts on uPlot (app/static/vendor/uplot, a global `uPlot` from the npm package's IIFE build).

export const PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#4b5563"];

const money = v => (v === null || v === undefined || Number.isNaN(v)) ? "–" :
  (v < 0 ? "-$" : "$") + Math.abs(v).toLocaleString(undefined, { maximumFractionDigits: 0 });

function sizeOf(el, height) {
  return { width: Math.max(el.clientWidth || 600, 300), height };
}

/**
 * The risk graph: for each strategy, P&L at expiry (solid) and at T+n (dashed) on one grid;
 * breakevens (dotted verticals), max profit / max loss (dashed horizontals), zero and spot.
 * `items`: [{label, color, risk}] where risk is one entry of /analyze's `strategies`.
 */
export function riskGraph(el, analysis, items, daysForward) {
  el.innerHTML = "";
  const grid = analysis.grid;
  const data = [grid];
  const series = [{ label: "price", value: (u, v) => v == null ? "–" : v.toFixed(0) }];
  for (const it of items) {
    const r = it.risk;
    data.push(r.expiry.pnl);
    series.push({ label: `${it.label} · expiry`, stroke: it.color, width: 2, value: (u, v) => money(v) });
    const tn = r.curves[0];
    if (tn) {
      data.push(tn.pnl);
      series.push({ label: `${it.label} · T+${daysForward}`, stroke: it.color, width: 1.5, dash: [6, 4],
                    value: (u, v) => money(v) });
    }
  }
  const marks = ctxDraw(analysis, items);
  const opts = {
    ...sizeOf(el, 320),
    scales: { x: { time: false } },
    series,
    axes: [{ label: "underlying price" }, { label: "P&L ($)", size: 70, values: (u, ticks) => ticks.map(money) }],
    legend: { live: true },
    hooks: { draw: [marks] },
  };
  return new uPlot(opts, data, el);
}

function ctxDraw(analysis, items) {
  return u => {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    const line = (x0, y0, x1, y1, color, dash) => {
      ctx.save(); ctx.beginPath(); ctx.strokeStyle = color; ctx.lineWidth = 1 * devicePixelRatio;
      ctx.setLineDash(dash.map(d => d * devicePixelRatio)); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
      ctx.restore();
    };
    const text = (s, x, y, color) => {
      ctx.save(); ctx.fillStyle = color; ctx.font = `${11 * devicePixelRatio}px sans-serif`;
      ctx.fillText(s, x, y); ctx.restore();
    };
    const yz = u.valToPos(0, "y", true);
    if (yz >= top && yz <= top + height) line(left, yz, left + width, yz, "#9ca3af", []);
    const xs = u.valToPos(analysis.spot, "x", true);
    line(xs, top, xs, top + height, "#111827", [2, 3]);
    text(`spot ${analysis.spot}`, xs + 4, top + 12 * devicePixelRatio, "#111827");
    items.forEach((it, i) => {
      const r = it.risk;
      for (const be of r.breakevens || []) {
        const x = u.valToPos(be, "x", true);
        if (x < left || x > left + width) continue;
        line(x, top, x, top + height, it.color, [1, 3]);
        text(`BE ${be.toFixed(0)}`, x + 3, top + height - (6 + 14 * i) * devicePixelRatio, it.color);
      }
      if (r.max_profit !== null && r.max_profit !== undefined) {
        const y = u.valToPos(r.max_profit, "y", true);
        line(left, y, left + width, y, it.color, [8, 4]);
        text(`max P ${money(r.max_profit)}`, left + 4 + 110 * i * devicePixelRatio, y - 3, it.color);
      }
      if (r.max_loss !== null && r.max_loss !== undefined) {
        const y = u.valToPos(r.max_loss, "y", true);  // max loss is a P&L: negative for a loss
        line(left, y, left + width, y, it.color, [8, 4]);
        text(`max L ${money(r.max_loss)}`, left + 4 + 110 * i * devicePixelRatio, y + 12 * devicePixelRatio, it.color);
      }
    });
  };
}

/** Bars (left scale) with a line on a second scale (right), over category labels. */
export function barsWithLine(el, { labels, bars, barLabel, line, lineLabel, lineFmt, barFmt }) {
  el.innerHTML = "";
  const x = labels.map((_, i) => i);
  const opts = {
    ...sizeOf(el, 240),
    scales: { x: { time: false, range: [-0.6, labels.length - 0.4] }, y2: { auto: true } },
    series: [
      { label: "bucket", value: (u, v) => v == null ? "–" : labels[v] },
      { label: barLabel, fill: "#93c5fd", stroke: "#2563eb", paths: uPlot.paths.bars({ size: [0.6, 80] }),
        points: { show: false }, value: (u, v) => barFmt(v) },
      { label: lineLabel, stroke: "#dc2626", width: 2, scale: "y2", value: (u, v) => lineFmt(v) },
    ],
    axes: [
      { values: (u, ticks) => ticks.map(t => Number.isInteger(t) ? (labels[t] ?? "") : ""), splits: () => x },
      { label: barLabel, size: 60, values: (u, ticks) => ticks.map(barFmt) },
      { side: 1, scale: "y2", label: lineLabel, size: 60, grid: { show: false }, values: (u, ticks) => ticks.map(lineFmt) },
    ],
  };
  return new uPlot(opts, [x, bars, line], el);
}

/** Calibration: observed frequency vs predicted probability, with the diagonal. */
export function calibration(el, points) {
  el.innerHTML = "";
  const pts = [...points].sort((a, b) => a.predicted - b.predicted);
  const x = pts.map(p => p.predicted);
  const opts = {
    ...sizeOf(el, 240),
    scales: { x: { time: false, range: [0, 1] }, y: { range: [0, 1] } },
    series: [
      { label: "predicted", value: (u, v) => v == null ? "–" : v.toFixed(2) },
      { label: "observed", stroke: "#2563eb", width: 2, points: { size: 7 }, value: (u, v) => v == null ? "–" : v.toFixed(2) },
      { label: "perfect", stroke: "#9ca3af", dash: [4, 4], points: { show: false } },
    ],
    axes: [{ label: "predicted probability" }, { label: "observed frequency", size: 50 }],
  };
  return new uPlot(opts, [x, pts.map(p => p.observed), x], el);
}
