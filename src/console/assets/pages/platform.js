// #/platform: every component's health (every 5 s) and the platform dashboard
// (dashboards/platform.json).

import { api, el, errorLine, fmtBytes, fmtDuration, poll, showError } from '../api.js';
import { renderDashboard } from '../dashboards.js';

export function render(root) {
  const err = errorLine('components-error');
  const tbody = el('tbody');
  const updated = el('span', { class: 'muted small' });
  const table = el('table', { class: 'data', 'data-testid': 'components' },
    el('thead', {}, el('tr', {}, ...['Component', 'Status', 'URL', 'Uptime', 'Memory', 'Details', 'Problems'].map((h) => el('th', { text: h })))),
    tbody);
  const charts = el('section', { class: 'section' }, el('h3', { text: 'Platform metrics' }));
  root.append(el('div', { class: 'page-head' }, el('h2', { text: 'Platform' }), updated), err,
    el('div', { class: 'table-wrap' }, table), charts);

  const refresh = async () => {
    let r;
    try {
      r = await api('/api/components');
      showError(err, null);
    } catch (e) {
      showError(err, e, 'components');
      return;
    }
    const list = (r && r.components) || [];
    tbody.replaceChildren(...(list.length ? list.map(row)
      : [el('tr', {}, el('td', { colspan: '7', class: 'muted', text: 'No components configured.' }))]));
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  };
  const p = poll(refresh, 5000);
  const dash = renderDashboard(charts, '/assets/dashboards/platform.json', {});
  return () => { p.stop(); dash.stop(); };
}

const SKIP = new Set(['component', 'status', 'pid', 'uptime_secs', 'uptime', 'uptime_seconds']);

/** The first key of `h` whose name matches, as a number. */
function pick(h, re) {
  for (const [k, v] of Object.entries(h)) if (re.test(k) && typeof v === 'number') return [k, v];
  return null;
}

function problemsOf(h) {
  const out = [];
  for (const [k, v] of Object.entries(h)) {
    if (!/problem|error|issue|warning/i.test(k)) continue;
    if (Array.isArray(v)) {
      for (const p of v) {
        if (typeof p === 'string') out.push(p);
        else if (p && typeof p === 'object') {
          const where = [p.file, p.line, p.column].filter((x) => x !== undefined && x !== null).join(':');
          out.push(`${where ? `${where}: ` : ''}${p.severity ? `${p.severity}: ` : ''}${p.message || JSON.stringify(p)}`);
        }
      }
    } else if (typeof v === 'string' && v) out.push(`${k}: ${v}`);
  }
  return out;
}

function row(c) {
  const h = c.health && typeof c.health === 'object' ? c.health : {};
  const status = c.status || h.status || 'unknown';
  const up = pick(h, /^uptime/i);
  const mem = pick(h, /mem|rss|resident/i);
  const problems = problemsOf(h);
  const details = Object.entries(h)
    .filter(([k, v]) => !SKIP.has(k) && (!mem || k !== mem[0]) && !/problem|error|issue|warning/i.test(k)
      && (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean'))
    .slice(0, 8)
    .map(([k, v]) => `${k}: ${v}`).join(' · ');
  return el('tr', { 'data-component': c.name, class: `status-${status}` },
    el('td', { class: 'name', text: c.name }),
    el('td', {}, el('span', { class: `badge health-${status}`, 'data-testid': `status-${c.name}`, text: status })),
    el('td', { class: 'url' }, c.url ? el('span', { class: 'mono small', text: c.url }) : '–'),
    el('td', { class: 'num', text: up ? fmtDuration(up[1]) : '–' }),
    el('td', { class: 'num', text: mem ? fmtBytes(mem[1]) : '–' }),
    el('td', { class: 'small', text: details || (c.error || '') }),
    el('td', { class: 'small' }, problems.length
      ? el('ul', { class: 'plain' }, ...problems.map((p) => el('li', { class: 'error-text', text: p })))
      : (c.message || c.error ? el('span', { class: 'error-text', text: c.message || c.error }) : '–')));
}
