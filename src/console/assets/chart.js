// A dependency-free canvas time-series line chart.
//
//   const c = new TimeSeriesChart(hostElement, { unit: 'bytes', pointsTarget: panelElement });
//   c.setData([{ name, xs: Float64Array /* ms */, ys: Float64Array }], { start, end, step });
//
// One path per series with min/max decimation per pixel column, NaN and time gaps break
// lines, devicePixelRatio-sharp, resizes with its container, clickable legend, hover
// crosshair + tooltip on a separate overlay canvas (the base is not redrawn on hover).

import { el } from './api.js';

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2',
  '#17becf', '#7f7f7f', '#bcbd22', '#393b79', '#ad494a', '#637939', '#843c39', '#7b4173', '#3182bd'];
const FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';

const SI = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];

function trim(v, digits) {
  return String(Number(v.toFixed(digits)));
}

function short(v, digits = 2) {
  const a = Math.abs(v);
  for (const [f, s] of SI) if (a >= f) return trim(v / f, digits) + s;
  if (a !== 0 && a < 0.01) return v.toExponential(1);
  return trim(v, a < 1 ? 3 : digits);
}

/** Formats `v` for a Grafana unit: percent, percentunit, bytes, s, reqps, short. */
export function formatValue(v, unit = 'short') {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  switch (unit) {
    case 'percent': return `${short(v)}%`;
    case 'percentunit': return `${short(v * 100)}%`;
    case 'bytes': case 'decbytes': {
      const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
      let i = 0;
      let x = Math.abs(v);
      while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
      return `${v < 0 ? '-' : ''}${trim(x, x >= 100 ? 0 : 1)} ${units[i]}`;
    }
    case 's': {
      const a = Math.abs(v);
      if (a === 0) return '0 s';
      if (a < 1e-3) return `${trim(v * 1e6, 1)} µs`;
      if (a < 1) return `${trim(v * 1e3, 1)} ms`;
      if (a < 120) return `${trim(v, 2)} s`;
      if (a < 7200) return `${trim(v / 60, 1)} min`;
      return `${trim(v / 3600, 1)} h`;
    }
    case 'ms': return formatValue(v / 1000, 's');
    case 'reqps': return `${short(v)} req/s`;
    default: return short(v);
  }
}

function niceNum(x, round) {
  const exp = Math.floor(Math.log10(x));
  const f = x / 10 ** exp;
  let nf;
  if (round) nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
  else nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return nf * 10 ** exp;
}

/** Nice y ticks covering [min, max]. */
export function niceTicks(min, max, count = 5) {
  if (!(max > min)) {
    // A flat line: a flat zero (no loss, no drops) reads best as 0..1 above the axis.
    if (min === 0) { max = 1; } else { const d = Math.abs(min); min -= d / 2; max += d / 2; }
  }
  const step = niceNum(niceNum(max - min, false) / Math.max(1, count - 1), true);
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks = [];
  for (let v = lo; v <= hi + step / 2; v += step) ticks.push(Math.abs(v) < step / 1e6 ? 0 : v);
  return { lo, hi, ticks };
}

const S = 1000;
const TIME_STEPS = [S, 2 * S, 5 * S, 10 * S, 15 * S, 30 * S, 60 * S, 120 * S, 300 * S, 600 * S,
  900 * S, 1800 * S, 3600 * S, 7200 * S, 3 * 3600 * S, 6 * 3600 * S, 12 * 3600 * S, 86400 * S];
const pad = (n) => String(n).padStart(2, '0');

function timeTicks(start, end, width) {
  const span = end - start;
  const iv = TIME_STEPS.find((s) => (s / span) * width >= 75) || TIME_STEPS[TIME_STEPS.length - 1];
  const tz = new Date(start).getTimezoneOffset() * 60000;
  const ticks = [];
  for (let t = Math.ceil((start - tz) / iv) * iv + tz; t <= end; t += iv) {
    const d = new Date(t);
    let label = iv < 60 * S ? `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
      : `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    if (span > 86400 * S && d.getHours() === 0 && d.getMinutes() === 0) label = `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    ticks.push([t, label]);
  }
  return ticks;
}

function lowerBound(xs, t) {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < t) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/** Index of the point of `xs` nearest `t` (-1 when empty). */
function nearest(xs, t) {
  if (!xs.length) return -1;
  const i = lowerBound(xs, t);
  if (i === 0) return 0;
  if (i >= xs.length) return xs.length - 1;
  return t - xs[i - 1] <= xs[i] - t ? i - 1 : i;
}

export class TimeSeriesChart {
  constructor(host, { unit = 'short', height = 220, pointsTarget = null } = {}) {
    this.host = host;
    this.unit = unit;
    this.height = height;
    this.pointsTarget = pointsTarget || host;
    this.series = [];
    this.hidden = new Set();
    this.colors = new Map();
    this.range = { start: Date.now() - 3600e3, end: Date.now(), step: 15 };
    this.canvas = el('canvas', { class: 'chart-base' });
    this.overlay = el('canvas', { class: 'chart-overlay' });
    this.tooltip = el('div', { class: 'chart-tooltip', hidden: true });
    this.nodata = el('div', { class: 'chart-nodata', hidden: true, text: 'No data' });
    this.wrap = el('div', { class: 'chart-wrap', style: `height:${height}px` },
      this.canvas, this.overlay, this.tooltip, this.nodata);
    this.legend = el('div', { class: 'chart-legend' });
    host.append(this.wrap, this.legend);
    this.layout = null;
    this.overlay.addEventListener('pointermove', (e) => this.hover(e));
    this.overlay.addEventListener('pointerleave', () => this.unhover());
    this.ro = new ResizeObserver(() => this.resize());
    this.ro.observe(this.wrap);
    this.pointsTarget.setAttribute('data-points', '0');
  }

  destroy() {
    this.ro.disconnect();
  }

  color(name) {
    if (!this.colors.has(name)) this.colors.set(name, COLORS[this.colors.size % COLORS.length]);
    return this.colors.get(name);
  }

  /** Replaces the data: series `{name, xs, ys}`, the range in ms and the step in seconds. */
  setData(series, range) {
    this.series = series.map((s) => ({ ...s, color: this.color(s.name) }));
    if (range) this.range = range;
    this.renderLegend();
    this.draw();
  }

  renderLegend() {
    const items = this.series.map((s) => el('button', {
      type: 'button',
      class: `legend-item${this.hidden.has(s.name) ? ' off' : ''}`,
      title: 'Click to hide or show',
      onclick: () => {
        if (this.hidden.has(s.name)) this.hidden.delete(s.name); else this.hidden.add(s.name);
        this.renderLegend();
        this.draw();
      },
    }, el('span', { class: 'swatch', style: `background:${s.color}` }), s.name || '(series)'));
    this.legend.replaceChildren(...items);
  }

  resize() {
    const w = this.wrap.clientWidth;
    const h = this.wrap.clientHeight;
    if (!w || !h) return;
    const dpr = window.devicePixelRatio || 1;
    for (const c of [this.canvas, this.overlay]) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
      c.style.width = `${w}px`;
      c.style.height = `${h}px`;
    }
    this.draw();
  }

  draw() {
    const visible = this.series.filter((s) => !this.hidden.has(s.name));
    let points = 0;
    let min = Infinity;
    let max = -Infinity;
    for (const s of visible) {
      for (let i = 0; i < s.ys.length; i++) {
        const v = s.ys[i];
        if (!Number.isFinite(v)) continue;
        points++;
        if (v < min) min = v;
        if (v > max) max = v;
      }
    }
    this.pointsTarget.setAttribute('data-points', String(points));
    const empty = this.series.every((s) => !s.ys.some(Number.isFinite));
    this.nodata.hidden = !empty;
    const w = this.wrap.clientWidth;
    const h = this.wrap.clientHeight;
    const ctx = this.canvas.getContext('2d');
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    this.clearOverlay();
    this.layout = null;
    if (!w || !h) return;
    if (!Number.isFinite(min)) { min = 0; max = 1; }
    if (min > 0) min = 0;
    const { lo, hi, ticks } = this.ticks(min, max, Math.max(3, Math.floor(h / 45)));
    ctx.font = FONT;
    const labels = ticks.map((t) => formatValue(t, this.unit));
    const left = Math.ceil(Math.max(...labels.map((l) => ctx.measureText(l).width))) + 10;
    const plot = { x: left, y: 8, w: Math.max(10, w - left - 10), h: Math.max(10, h - 8 - 22) };
    const { start, end } = this.range;
    const X = (t) => plot.x + ((t - start) / (end - start)) * plot.w;
    const Y = (v) => plot.y + plot.h - ((v - lo) / (hi - lo)) * plot.h;
    this.layout = { plot, X, Y, start, end, visible };

    // grid and axes
    ctx.strokeStyle = '#e3e6ea';
    ctx.fillStyle = '#555b63';
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    ctx.beginPath();
    ticks.forEach((t, i) => {
      const y = Math.round(Y(t)) + 0.5;
      ctx.moveTo(plot.x, y);
      ctx.lineTo(plot.x + plot.w, y);
      ctx.fillText(labels[i], plot.x - 6, y);
    });
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (const [t, label] of timeTicks(start, end, plot.w)) {
      const x = Math.round(X(t)) + 0.5;
      ctx.moveTo(x, plot.y);
      ctx.lineTo(x, plot.y + plot.h);
      ctx.fillText(label, x, plot.y + plot.h + 6);
    }
    ctx.stroke();
    ctx.strokeStyle = '#9aa1a9';
    ctx.beginPath();
    ctx.moveTo(plot.x + 0.5, plot.y);
    ctx.lineTo(plot.x + 0.5, plot.y + plot.h + 0.5);
    ctx.lineTo(plot.x + plot.w, plot.y + plot.h + 0.5);
    ctx.stroke();

    // series
    ctx.save();
    ctx.beginPath();
    ctx.rect(plot.x, plot.y - 2, plot.w + 1, plot.h + 4);
    ctx.clip();
    ctx.lineWidth = 1.5;
    ctx.lineJoin = 'round';
    const gap = Math.max(1, this.range.step || 1) * 1000 * 2.5;
    for (const s of visible) this.drawSeries(ctx, s, X, Y, gap, start, end);
    ctx.restore();
  }

  /** Y ticks; bytes tick at nice multiples of their KiB/MiB/GiB unit. */
  ticks(min, max, count) {
    if (this.unit !== 'bytes' && this.unit !== 'decbytes') return niceTicks(min, max, count);
    const k = 1024 ** Math.max(0, Math.floor(Math.log(Math.max(Math.abs(min), Math.abs(max), 1)) / Math.log(1024)));
    const t = niceTicks(min / k, max / k, count);
    return { lo: t.lo * k, hi: t.hi * k, ticks: t.ticks.map((v) => v * k) };
  }

  drawSeries(ctx, s, X, Y, gap, start, end) {
    const { xs, ys } = s;
    const dots = [];
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.beginPath();
    let col = null;
    let first = 0; let lo = 0; let hi = 0; let last = 0;
    let pen = false;
    let columns = 0;
    let prevT = -Infinity;
    const flush = () => {
      if (col === null) return;
      if (!pen) { ctx.moveTo(col, first); pen = true; } else ctx.lineTo(col, first);
      if (lo !== hi) { ctx.lineTo(col, lo); ctx.lineTo(col, hi); }
      ctx.lineTo(col, last);
      columns++;
      col = null;
    };
    let lastX = 0;
    const endSegment = () => {
      flush();
      if (columns === 1) dots.push([lastX, last]);
      pen = false;
      columns = 0;
    };
    const from = Math.max(0, lowerBound(xs, start - gap) - 1);
    for (let i = from; i < xs.length; i++) {
      const t = xs[i];
      if (t > end + gap) break;
      const v = ys[i];
      if (!Number.isFinite(v) || t - prevT > gap) {
        endSegment();
        if (!Number.isFinite(v)) { prevT = -Infinity; continue; }
      }
      prevT = t;
      const px = Math.round(X(t));
      const py = Y(v);
      if (px === col) {
        if (py < lo) lo = py;
        if (py > hi) hi = py;
        last = py;
        continue;
      }
      flush();
      col = px; lastX = px;
      first = lo = hi = last = py;
    }
    endSegment();
    ctx.stroke();
    for (const [x, y] of dots) {
      ctx.beginPath();
      ctx.arc(x, y, 2, 0, Math.PI * 2);
      ctx.fill();
    }
  }

  clearOverlay() {
    const ctx = this.overlay.getContext('2d');
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.overlay.width, this.overlay.height);
    this.tooltip.hidden = true;
  }

  unhover() {
    this.clearOverlay();
  }

  hover(e) {
    const L = this.layout;
    this.clearOverlay();
    if (!L || !L.visible.length) return;
    const rect = this.overlay.getBoundingClientRect();
    const mx = e.clientX - rect.left;
    const my = e.clientY - rect.top;
    if (mx < L.plot.x || mx > L.plot.x + L.plot.w) return;
    const t = L.start + ((mx - L.plot.x) / L.plot.w) * (L.end - L.start);
    // snap to the nearest sample time of any visible series
    let snap = null;
    for (const s of L.visible) {
      const i = nearest(s.xs, t);
      if (i >= 0 && (snap === null || Math.abs(s.xs[i] - t) < Math.abs(snap - t))) snap = s.xs[i];
    }
    if (snap === null) return;
    const tol = Math.max(1, this.range.step || 1) * 1000 * 1.5;
    const rows = [];
    for (const s of L.visible) {
      const i = nearest(s.xs, snap);
      if (i < 0 || Math.abs(s.xs[i] - snap) > tol || !Number.isFinite(s.ys[i])) continue;
      rows.push({ s, v: s.ys[i] });
    }
    const dpr = window.devicePixelRatio || 1;
    const ctx = this.overlay.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const x = Math.round(L.X(snap)) + 0.5;
    ctx.strokeStyle = 'rgba(0,0,0,0.45)';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x, L.plot.y);
    ctx.lineTo(x, L.plot.y + L.plot.h);
    ctx.stroke();
    for (const { s, v } of rows) {
      ctx.fillStyle = s.color;
      ctx.beginPath();
      ctx.arc(x, L.Y(v), 3, 0, Math.PI * 2);
      ctx.fill();
    }
    rows.sort((a, b) => b.v - a.v);
    const d = new Date(snap);
    const head = `${d.toLocaleDateString()} ${d.toLocaleTimeString()}`;
    this.tooltip.replaceChildren(el('div', { class: 'tt-time', text: head }),
      ...rows.slice(0, 12).map(({ s, v }) => el('div', { class: 'tt-row' },
        el('span', { class: 'swatch', style: `background:${s.color}` }),
        el('span', { class: 'tt-name', text: s.name }),
        el('span', { class: 'tt-val', text: formatValue(v, this.unit) }))),
      ...(rows.length > 12 ? [el('div', { class: 'tt-more', text: `+${rows.length - 12} more` })] : []));
    if (!rows.length) this.tooltip.append(el('div', { text: 'no value' }));
    this.tooltip.hidden = false;
    const tw = this.tooltip.offsetWidth;
    const th = this.tooltip.offsetHeight;
    const W = this.wrap.clientWidth;
    let left = mx + 12;
    if (left + tw > W) left = Math.max(0, mx - tw - 12);
    const top = Math.max(0, Math.min(my - th / 2, this.wrap.clientHeight - th));
    this.tooltip.style.left = `${left}px`;
    this.tooltip.style.top = `${top}px`;
  }
}
