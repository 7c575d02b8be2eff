// Charts: uPlot (vendored, assets/vendor/uplot) for the latency
// distribution and the series over time; the forest plots are SVG drawn
// here, since each is a handful of intervals on one axis.
import { colors, el, fmtNumber } from "./common.js";

const uPlot = window.uPlot;

function size(container, height) {
  return { width: Math.max(container.clientWidth || 300, 240), height };
}

// Resizing follows the container, so a chart fits a phone and a wide
// screen alike.
function follow(plot, container, height) {
  const ro = new ResizeObserver(() => plot.setSize(size(container, height)));
  ro.observe(container);
  return ro;
}

function axis(c, extra) {
  return Object.assign({ stroke: c.muted, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid, width: 1 } }, extra);
}

// TimeChart draws series over time: x in seconds since the epoch, one
// array per series. defs: [{label, kind}] where kind formats the legend.
export class TimeChart {
  constructor(container, defs, { height = 200, fmt = (v) => fmtNumber(v) } = {}) {
    this.container = container;
    this.defs = defs;
    this.height = height;
    this.fmt = fmt;
    this.data = [[], ...defs.map(() => [])];
    this.build();
  }

  build() {
    if (this.plot) {
      this.plot.destroy();
      this.ro.disconnect();
    }
    const c = colors();
    const fmt = this.fmt;
    const opts = Object.assign(size(this.container, this.height), {
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [axis(c), axis(c, { size: 60, values: (u, vals) => vals.map((v) => fmt(v)) })],
      series: [
        { label: "time" },
        ...this.defs.map((d, i) => ({
          label: d.label,
          stroke: c.series[i % c.series.length],
          width: 2,
          points: { show: true, size: 4 },
          value: (u, v) => (v === null || v === undefined ? "—" : fmt(v)),
          spanGaps: false,
        })),
      ],
    });
    this.container.replaceChildren();
    this.plot = new uPlot(opts, this.data, this.container);
    this.ro = follow(this.plot, this.container, this.height);
  }

  setData(data) {
    this.data = data;
    this.plot.setData(data);
  }
}

// Histogram draws the bins of /ui/experiments/{id}/latency-histogram as
// bars, with vertical lines at the given markers ({label, value}).
export class Histogram {
  constructor(container, { height = 240 } = {}) {
    this.container = container;
    this.height = height;
    this.hist = null;
    this.markers = [];
    this.build();
  }

  build() {
    if (this.plot) {
      this.plot.destroy();
      this.ro.disconnect();
    }
    const c = colors();
    const self = this;
    const bars = uPlot.paths.bars({ size: [1, Infinity], gap: 1, align: 1 });
    const opts = Object.assign(size(this.container, this.height), {
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false, range: (u, lo, hi) => self.xRange(lo, hi) } },
      axes: [
        axis(c, { values: (u, vals) => vals.map((v) => fmtNumber(v)), label: "latency (ms)", labelSize: 20 }),
        axis(c, { size: 50, values: (u, vals) => vals.map((v) => fmtNumber(v)) }),
      ],
      series: [
        { label: "from (ms)", value: (u, v) => (v === null || v === undefined ? "—" : fmtNumber(v)) },
        {
          label: "events",
          stroke: c.series[0],
          fill: c.bar,
          width: 1,
          paths: bars,
          points: { show: false },
          value: (u, v) => (v === null || v === undefined ? "—" : fmtNumber(v)),
        },
      ],
      hooks: { draw: [(u) => self.drawMarkers(u, c)] },
    });
    this.container.replaceChildren();
    this.plot = new uPlot(opts, this.data(), this.container);
    this.ro = follow(this.plot, this.container, this.height);
  }

  xRange(lo, hi) {
    const h = this.hist;
    if (!h || !h.bins.length) return [0, 1];
    return [h.bins[0].lower, h.bins[h.bins.length - 1].upper];
  }

  data() {
    const h = this.hist;
    if (!h || !h.bins.length) return [[], []];
    return [h.bins.map((b) => b.lower), h.bins.map((b) => b.count)];
  }

  set(hist, markers) {
    this.hist = hist;
    this.markers = markers.filter((m) => m.value !== null && m.value !== undefined);
    this.plot.setData(this.data());
  }

  drawMarkers(u, c) {
    const ctx = u.ctx;
    const dpr = window.devicePixelRatio || 1;
    ctx.save();
    ctx.font = `${11 * dpr}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    const styles = [c.series[1], c.series[3], c.series[2]];
    this.markers.forEach((m, i) => {
      const x = Math.round(u.valToPos(m.value, "x", true));
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
      ctx.strokeStyle = styles[i % styles.length];
      ctx.fillStyle = styles[i % styles.length];
      ctx.lineWidth = 2 * dpr;
      ctx.setLineDash([6 * dpr, 4 * dpr]);
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      const label = `${m.label} ${fmtNumber(m.value)}`;
      const w = ctx.measureText(label).width;
      const right = x + 4 * dpr + w < u.bbox.left + u.bbox.width;
      ctx.textAlign = right ? "left" : "right";
      ctx.fillText(label, right ? x + 4 * dpr : x - 4 * dpr, u.bbox.top + (2 + i * 14) * dpr);
    });
    ctx.restore();
  }
}

const SVG = "http://www.w3.org/2000/svg"; // the SVG namespace's name, not a location

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  for (const c of children) if (c) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// niceTicks are round axis positions covering [lo, hi].
function niceTicks(lo, hi, count = 5) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / count;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) || 10 * p;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  return out;
}

// forestPlot returns an SVG of rows [{label, kind, est, lo, hi}] (kind
// classical | sequential | paired) on one axis with 0 marked: each row is
// an interval with its estimate. Rows without an interval say so.
export function forestPlot(rows, { fmt = (v) => fmtNumber(v), title = "", width = 640 } = {}) {
  width = Math.max(260, Math.round(width));
  const rowH = 22, top = 8, bottom = 28, right = 16;
  const labelW = Math.round(Math.min(240, Math.max(100, width * 0.3)));
  const height = top + bottom + rows.length * rowH;
  const vals = [0];
  for (const r of rows) for (const v of [r.est, r.lo, r.hi]) if (typeof v === "number" && Number.isFinite(v)) vals.push(v);
  let lo = Math.min(...vals), hi = Math.max(...vals);
  const pad = (hi - lo) * 0.06 || Math.abs(hi) * 0.1 || 1;
  lo -= pad;
  hi += pad;
  const plotW = width - labelW - right;
  const x = (v) => labelW + ((v - lo) / (hi - lo)) * plotW;
  const root = svg("svg", { class: "forest", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  const ticks = niceTicks(lo, hi, Math.max(2, Math.floor(plotW / 90)));
  const ax = svg("g", { class: "axis" });
  for (const t of ticks) {
    ax.append(svg("line", { class: "grid", x1: x(t), x2: x(t), y1: top, y2: height - bottom }));
    ax.append(svg("text", { x: x(t), y: height - bottom + 16, "text-anchor": "middle" }, fmt(t)));
  }
  root.append(ax);
  root.append(svg("line", { class: "zero", x1: x(0), x2: x(0), y1: top - 4, y2: height - bottom + 4 }));
  rows.forEach((r, i) => {
    const y = top + i * rowH + rowH / 2;
    root.append(svg("text", { x: labelW - 8, y: y + 4, "text-anchor": "end" }, r.label));
    const g = svg("g", { class: r.kind });
    const has = [r.lo, r.hi].every((v) => typeof v === "number" && Number.isFinite(v));
    if (has) {
      g.append(svg("line", { x1: x(r.lo), x2: x(r.hi), y1: y, y2: y, "stroke-width": 3 }));
      g.append(svg("line", { x1: x(r.lo), x2: x(r.lo), y1: y - 5, y2: y + 5, "stroke-width": 2 }));
      g.append(svg("line", { x1: x(r.hi), x2: x(r.hi), y1: y - 5, y2: y + 5, "stroke-width": 2 }));
    }
    if (typeof r.est === "number" && Number.isFinite(r.est)) {
      g.append(svg("rect", { x: x(r.est) - 4, y: y - 4, width: 8, height: 8 }));
    }
    if (!has) g.append(svg("text", { x: labelW + 6, y: y + 4, class: "none" }, "no interval (too few data)"));
    g.append(svg("title", {}, `${r.label}: ${fmt(r.est)} [${fmt(r.lo)}, ${fmt(r.hi)}]`));
    root.append(g);
  });
  return root;
}

export { el };
