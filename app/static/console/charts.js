// Charts on uPlot (app/static/vendor/uplot, a global `uPlot` from the npm package's IIFE build).

export const PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#4b5563"];

const money = v => (v === null || v === undefined || Number.isNaN(v)) ? "–" :
  (v < 0 ? "-$" : "$") + Math.abs(v).toLocaleString(undefined, { maximumFractionDigits: 0 });

function sizeOf(el, height) {
  return { width: Math.max(el.clientWidth || 600, 300), height };
}

/**
 * The risk graph: for each strategy, P&L at expiry (solid) and at T+n (dashed) on one grid;
 * breakevens (dotted verticals), max profit / max loss (dashed horizontals, both P&Ls), zero and spot.
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
  const marks = ctxDraw(analysis, items, el);
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

// Labels of the marks never overlap: each is placed at its preferred spot, else slid along
// its line (and to the line's other side) to the first spot that is free and inside the plot.
// The boxes placed are kept on the chart element (data-labels, canvas pixels) for the tests.
function ctxDraw(analysis, items, el) {
  return u => {
    const ctx = u.ctx;
    const dpr = devicePixelRatio;
    const { left, top, width, height } = u.bbox;
    const right = left + width, bottom = top + height;
    const line = (x0, y0, x1, y1, color, dash) => {
      ctx.save(); ctx.beginPath(); ctx.strokeStyle = color; ctx.lineWidth = 1 * dpr;
      ctx.setLineDash(dash.map(d => d * dpr)); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
      ctx.restore();
    };
    ctx.save();
    ctx.font = `${11 * dpr}px sans-serif`;
    const lh = 13 * dpr, pad = 3 * dpr;
    const placed = [];
    const overlaps = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
    const inside = b => b.x >= left && b.x + b.w <= right && b.y >= top && b.y + b.h <= bottom;
    // candidates: [x, baselineY] in order of preference
    const label = (text, color, candidates) => {
      const w = ctx.measureText(text).width;
      let first = null;
      for (const [x, y] of candidates) {
        const box = { x, y: y - lh + pad, w, h: lh, text };
        if (!first) first = box;
        if (inside(box) && !placed.some(p => overlaps(p, box))) {
          placed.push(box);
          ctx.fillStyle = color; ctx.fillText(text, x, y);
          return;
        }
      }
      // no free spot at all (a crowded graph): leave this label out rather than overprint
    };
    function* along(y0, above) {           // a horizontal line's label: slide right, then flip side
      const ys = above ? [y0 - pad, y0 + lh] : [y0 + lh, y0 - pad];
      for (let x = left + 4 * dpr; x < right; x += 24 * dpr) for (const y of ys) yield [x, y];
    }
    function* up(x0) {                      // a vertical line's label: from the bottom upwards, right then left
      for (let y = bottom - 4 * dpr; y > top + lh; y -= lh) { yield [x0 + pad, y]; yield [x0 - pad - 60 * dpr, y]; }
    }

    const yz = u.valToPos(0, "y", true);
    if (yz >= top && yz <= bottom) line(left, yz, right, yz, "#9ca3af", []);
    const xs = u.valToPos(analysis.spot, "x", true);
    line(xs, top, xs, bottom, "#111827", [2, 3]);
    const marks = [];
    items.forEach(it => {
      const r = it.risk;
      for (const be of r.breakevens || []) {
        const x = u.valToPos(be, "x", true);
        if (x < left || x > right) continue;
        line(x, top, x, bottom, it.color, [1, 3]);
        marks.push(() => label(`BE ${be.toFixed(0)}`, it.color, up(x)));
      }
      if (r.max_profit !== null && r.max_profit !== undefined) {
        const y = u.valToPos(r.max_profit, "y", true);
        line(left, y, right, y, it.color, [8, 4]);
        marks.push(() => label(`max P ${money(r.max_profit)}`, it.color, along(y, true)));
      }
      if (r.max_loss !== null && r.max_loss !== undefined) {
        // max_loss is a P&L (the lowest one, negative for a loss: optionsmath's convention)
        const y = u.valToPos(r.max_loss, "y", true);
        line(left, y, right, y, it.color, [8, 4]);
        marks.push(() => label(`max L ${money(r.max_loss)}`, it.color, along(y, false)));
      }
    });
    label(`spot ${analysis.spot}`, "#111827", (function* () { for (let y = top + lh; y < bottom; y += lh) yield [xs + pad, y]; })());
    marks.forEach(m => m());
    ctx.restore();
    if (el) el.dataset.labels = JSON.stringify(placed.map(b => ({ text: b.text, x: Math.round(b.x), y: Math.round(b.y),
                                                               w: Math.round(b.w), h: Math.round(b.h) })));
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
