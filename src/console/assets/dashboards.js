// Renders a shipped Grafana dashboard (dashboards/*.json, served under /assets/dashboards/)
// as canvas charts, so the console and Grafana never disagree: every `timeseries` panel's
// targets run as range queries against storage, `row` panels become headings.

import { api, el, errorLine, poll, queryRange, showError, slug } from './api.js';
import { TimeSeriesChart } from './chart.js';

export const RANGES = [['5m', 300], ['15m', 900], ['1h', 3600], ['6h', 21600], ['24h', 86400]];
const DEFAULT_RANGE = '15m';

const cache = new Map();

/** The dashboard JSON at `url`, fetched once. */
export function loadDashboard(url) {
  if (!cache.has(url)) {
    const p = api(url).catch((e) => { cache.delete(url); throw e; });
    cache.set(url, p);
  }
  return cache.get(url);
}

/** `$guid` / `${guid}` → its value, for every variable given. */
export function substitute(expr, vars) {
  return expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (m, a, b) => {
    const k = a || b;
    return Object.prototype.hasOwnProperty.call(vars, k) ? String(vars[k]) : m;
  });
}

/** A series' legend: `legendFormat` with `{{label}}` filled in, else its labels. */
export function legend(format, metric) {
  if (format && format !== '__auto') {
    return format.replace(/\{\{\s*([\w.]+)\s*\}\}/g, (m, k) => (metric[k] ?? '')).replace(/\s+/g, ' ').trim();
  }
  const { __name__: name, ...labels } = metric;
  const inner = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(', ');
  return `${name || ''}${inner ? `{${inner}}` : ''}` || 'value';
}

/** The step for a range: range / 240 rounded up, at least 1 s. */
export function stepFor(rangeSecs) {
  return Math.max(1, Math.ceil(rangeSecs / 240));
}

/** A range selector (`id="range"`); calls `onChange(seconds)`. */
export function rangeSelector(onChange, initial = DEFAULT_RANGE) {
  const select = el('select', { id: 'range', 'data-testid': 'range', 'aria-label': 'Time range' },
    ...RANGES.map(([label, secs]) => el('option', { value: String(secs), text: `Last ${label}`, selected: label === initial })));
  select.addEventListener('change', () => onChange(Number(select.value)));
  return { element: el('label', { class: 'range' }, 'Range ', select), get seconds() { return Number(select.value); } };
}

/**
 * Renders the dashboard at `url` into `container` with `vars` substituted, refreshing every
 * `every` ms. Returns `{stop, setVars}`.
 */
export function renderDashboard(container, url, vars, { every = 5000 } = {}) {
  const status = errorLine();
  const grid = el('div', { class: 'dash-grid' });
  let current = { ...vars };
  let panels = [];
  let seconds = RANGES.find(([l]) => l === DEFAULT_RANGE)[1];
  let poller = null;
  let stopped = false;
  const selector = rangeSelector((s) => { seconds = s; if (poller) poller.now(); });
  container.append(el('div', { class: 'dash-toolbar' }, selector.element), status, grid);

  const build = (dash) => {
    for (const p of dash.panels || []) {
      const list = p.type === 'row' ? [p, ...(p.panels || [])] : [p];
      for (const q of list) {
        if (q.type === 'row') {
          grid.append(el('h3', { class: 'dash-row', 'data-testid': `row-${slug(q.title || 'row')}`, text: q.title || '' }));
          continue;
        }
        if (q.type !== 'timeseries') continue;
        const unit = q.fieldConfig?.defaults?.unit || 'short';
        const box = el('div', {
          class: `panel${(q.gridPos?.w || 12) >= 24 ? ' wide' : ''}`,
          'data-testid': `chart-${slug(q.title || 'panel')}`,
          'data-points': '0',
        });
        const err = errorLine();
        const body = el('div', { class: 'panel-body' });
        box.append(el('h4', { text: q.title || '', title: q.description || '' }), err, body);
        grid.append(box);
        const chart = new TimeSeriesChart(body, { unit, pointsTarget: box });
        panels.push({ def: q, chart, err, box });
      }
    }
  };

  const refreshPanel = async (p, start, end, step) => {
    const targets = (p.def.targets || []).filter((t) => t.expr && !t.hide);
    const results = await Promise.allSettled(targets.map((t) => queryRange(substitute(t.expr, current), start, end, step)));
    const series = [];
    const errors = [];
    results.forEach((r, i) => {
      if (r.status === 'rejected') { errors.push(r.reason); return; }
      for (const s of r.value) {
        const n = s.values ? s.values.length : 0;
        const xs = new Float64Array(n);
        const ys = new Float64Array(n);
        for (let j = 0; j < n; j++) {
          xs[j] = Number(s.values[j][0]) * 1000;
          ys[j] = parseFloat(s.values[j][1]);
        }
        series.push({ name: legend(targets[i].legendFormat, s.metric || {}), xs, ys });
      }
    });
    const seen = new Map();
    for (const s of series) {
      const k = seen.get(s.name) || 0;
      seen.set(s.name, k + 1);
      if (k) s.name = `${s.name} (${k + 1})`;
    }
    showError(p.err, errors.length ? errors[0] : null);
    p.chart.setData(series, { start: start * 1000, end: end * 1000, step });
  };

  const refresh = async () => {
    if (!panels.length) return;
    const step = stepFor(seconds);
    const end = Math.floor(Date.now() / 1000);
    const start = end - seconds;
    await Promise.all(panels.map((p) => refreshPanel(p, start, end, step)));
  };

  loadDashboard(url).then((dash) => {
    if (stopped) return;
    build(dash);
    poller = poll(refresh, every);
  }, (e) => showError(status, e, `dashboard ${url}`));

  return {
    stop() {
      stopped = true;
      if (poller) poller.stop();
      for (const p of panels) p.chart.destroy();
      panels = [];
    },
    setVars(v) { current = { ...v }; if (poller) poller.now(); },
  };
}
