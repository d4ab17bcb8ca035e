// #/apps/<name>: one app as `cf app` shows it (instances every 2 s), its dashboard
// (dashboards/apps.json), live logs, and what the autoscaler thinks of it (explain, firing
// alerts, scaling history every 3 s).

import { api, el, errorLine, fmtDuration, fmtMB, fmtNum, fmtTime, poll, seg, showError } from '../api.js';
import { renderDashboard } from '../dashboards.js';
import { renderLogs } from '../logs.js';
import { deleteButton, instancesSummary, scaleForm, stateBadge } from '../widgets.js';

const STATUS = ['succeeded', 'failed', 'ignored'];
const SCALING_TYPE = ['dynamic', 'scheduled'];

export function render(root, name) {
  let app = null;
  let stopped = false;
  const stops = [];
  const err = errorLine('app-error');
  const badge = el('span', { 'data-testid': 'app-state' });
  const counts = el('span', { class: 'app-counts', 'data-testid': 'app-instances' });
  const meta = el('p', { class: 'muted small app-meta' });
  const scale = scaleForm(name, () => app, () => poller.now());
  const del = deleteButton(name, () => app, () => { location.hash = '#/apps'; });
  const policyLink = el('a', { href: `#/policies/${seg(name)}`, 'data-testid': 'policy-link', text: 'Autoscaling policy' });
  const instBody = el('tbody');
  const instErr = errorLine('instances-error');
  const instTable = el('table', { class: 'data', 'data-testid': 'instances-table' },
    el('thead', {}, el('tr', {}, ...['#', 'State', 'Since', 'CPU', 'Memory', 'Disk', 'Crashes', 'Details'].map((h) => el('th', { text: h })))),
    instBody);
  const charts = el('section', { class: 'section', 'data-testid': 'charts' }, el('h3', { text: 'Metrics' }));
  const logs = el('section', { class: 'section' }, el('h3', { text: 'Logs' }));
  const scaler = el('section', { class: 'section', 'data-testid': 'autoscaler' }, el('h3', { text: 'Autoscaler' }));

  root.append(
    el('p', { class: 'crumbs' }, el('a', { href: '#/apps', text: 'Apps' }), ' / ', name),
    el('div', { class: 'page-head' }, el('h2', { 'data-testid': 'app-name', text: name }), badge, counts),
    meta,
    el('div', { class: 'app-actions' }, scale.element, del, policyLink),
    err,
    el('section', { class: 'section' }, el('h3', { text: 'Instances' }), instErr, el('div', { class: 'table-wrap' }, instTable)),
    charts, logs, scaler);

  let guid = null;
  let dash = null;
  let stopLogs = null;
  const started = (g) => {
    if (g === guid) return;
    guid = g;
    if (dash) dash.setVars({ guid, app: name });
    else dash = renderDashboard(charts, '/assets/dashboards/apps.json', { guid, app: name });
    if (stopLogs) { stopLogs(); logs.replaceChildren(el('h3', { text: 'Logs' })); }
    stopLogs = renderLogs(logs, guid);
  };

  const refresh = async () => {
    try {
      const list = await api(`/api/cell/v3/apps?names=${encodeURIComponent(name)}`);
      const found = ((list && list.resources) || []).find((a) => a.name === name) || null;
      if (!found) {
        app = null;
        showError(err, new Error(`App ${name} not found (it may have been deleted).`));
        badge.replaceChildren();
        return;
      }
      app = found;
      showError(err, null);
    } catch (e) {
      showError(err, e, 'app');
      return;
    }
    if (stopped) return;
    badge.replaceChildren(stateBadge(app.state));
    meta.textContent = `guid ${app.guid} · command ${app.command} · ${app.memory_in_mb} MB memory, ${app.disk_in_mb} MB disk per instance`;
    scale.update(app);
    started(app.guid);
    try {
      const stats = await api(`/api/cell/v3/apps/${seg(app.guid)}/processes/web/stats`);
      showError(instErr, null);
      const rows = (stats && stats.resources) || [];
      counts.replaceChildren(...instancesSummary(app, rows));
      renderInstances(instBody, rows);
    } catch (e) {
      counts.replaceChildren(...instancesSummary(app, null));
      showError(instErr, e, 'stats');
    }
  };
  const poller = poll(refresh, 2000);
  stops.push(() => poller.stop());
  stops.push(renderAutoscaler(scaler, name, () => guid));

  return () => {
    stopped = true;
    for (const s of stops) s();
    if (dash) dash.stop();
    if (stopLogs) stopLogs();
  };
}

function renderInstances(tbody, rows) {
  if (!rows.length) {
    tbody.replaceChildren(el('tr', {}, el('td', { colspan: '8', class: 'muted', text: 'No instances.' })));
    return;
  }
  const now = Date.now();
  const pct = (a, b) => (b ? ` (${Math.round((a / b) * 100)}%)` : '');
  tbody.replaceChildren(...rows.map((s) => {
    const u = s.usage;
    const since = s.state === 'RUNNING' || s.state === 'STARTING' ? fmtTime(now - s.uptime * 1000) : '–';
    let details = '';
    if (s.state === 'CRASHED' && s.restart_in_seconds !== null && s.restart_in_seconds !== undefined) details = `restarts in ${fmtNum(s.restart_in_seconds, 0)} s`;
    if (s.last_crash) details = `${details ? `${details}; ` : ''}last crash: ${s.last_crash.reason}`;
    return el('tr', { 'data-index': String(s.index), class: s.state === 'CRASHED' ? 'row-crashed' : '' },
      el('td', { text: `#${s.index}` }),
      el('td', {}, stateBadge(s.state)),
      el('td', { text: since, title: `uptime ${fmtDuration(s.uptime)}` }),
      el('td', { class: 'num', text: u ? `${(u.cpu * 100).toFixed(1)}%` : '–' }),
      el('td', { class: 'num', text: u ? `${fmtMB(u.mem)} of ${fmtMB(s.mem_quota)}${pct(u.mem, s.mem_quota)}` : '–' }),
      el('td', { class: 'num', text: u ? `${fmtMB(u.disk)} of ${fmtMB(s.disk_quota)}${pct(u.disk, s.disk_quota)}` : '–' }),
      el('td', { class: `num${s.crash_count ? ' crashed' : ''}`, text: s.crash_count !== undefined ? String(s.crash_count) : '–' }),
      el('td', { class: 'small', text: details }));
  }));
}

/** The autoscaler's view of the app. Returns a stop function. */
function renderAutoscaler(section, name, getGuid) {
  const err = errorLine('autoscaler-error');
  const none = el('p', { class: 'notice', 'data-testid': 'no-policy', hidden: true },
    `The autoscaler has no policy for ${name}. `, el('a', { href: `#/policies/${seg(name)}`, text: 'Create one' }), '.');
  const alerts = el('div', { class: 'alerts', 'data-testid': 'alerts' });
  const explain = el('div', { class: 'explain', 'data-testid': 'explain' });
  const histErr = errorLine('history-error');
  const histBody = el('tbody');
  const history = el('table', { class: 'data', 'data-testid': 'history' },
    el('thead', {}, el('tr', {}, ...['Time', 'Instances', 'Reason', 'Status', 'Type', 'Error'].map((h) => el('th', { text: h })))),
    histBody);
  section.append(err, none, alerts, explain, el('h4', { text: 'Scaling history' }), histErr, el('div', { class: 'table-wrap' }, history));
  let key = name;
  let triedGuid = null;

  const refresh = async () => {
    let r;
    try {
      r = await api(`/api/autoscaler/v1/apps/${seg(key)}/explain`, { allow: [404] });
      const guid = getGuid();
      // a policy may name the app by guid: try that once per guid
      if (r && r.status === 404 && key === name && guid && triedGuid !== guid) {
        triedGuid = guid;
        const g = await api(`/api/autoscaler/v1/apps/${seg(guid)}/explain`, { allow: [404] });
        if (!(g && g.status === 404)) { key = guid; r = g; }
      }
      showError(err, null);
    } catch (e) {
      showError(err, e, 'autoscaler');
      return;
    }
    if (r && r.status === 404) {
      none.hidden = false;
      explain.replaceChildren();
      alerts.replaceChildren();
      histBody.replaceChildren();
      if (key !== name) { key = name; triedGuid = null; }
      return;
    }
    none.hidden = true;
    renderExplain(explain, alerts, r);
    try {
      const h = await api(`/api/autoscaler/v1/apps/${seg(key)}/scaling_histories?order-direction=DESC&results-per-page=50`);
      showError(histErr, null);
      historyRows(histBody, (h && h.resources) || []);
    } catch (e) {
      showError(histErr, e, 'scaling history');
    }
  };
  const p = poll(refresh, 3000);
  return () => p.stop();
}

const secs = (v) => (v === null || v === undefined ? '–' : `${fmtNum(v, 0)} s`);

function renderExplain(box, alertsBox, x) {
  const cd = x.cooldown || {};
  const lines = [
    el('p', {}, `${x.instances ?? '?'} instance(s); limits [${x.limits?.min ?? '?'}, ${x.limits?.max ?? '?'}]`,
      x.schedule ? ` (schedule #${x.schedule.id}: [${x.schedule.min}, ${x.schedule.max}])` : ''),
    el('p', { 'data-testid': 'cooldown' },
      `Cooldown remaining: scale-out ${secs(cd.scale_out_remaining_secs)}, scale-in ${secs(cd.scale_in_remaining_secs)}`,
      x.breaker && (x.breaker.failures || x.breaker.open_remaining_secs)
        ? `; breaker: ${x.breaker.failures} failure(s), open ${secs(x.breaker.open_remaining_secs)}` : ''),
  ];
  const rules = x.rules || [];
  if (rules.length) {
    lines.push(el('div', { class: 'table-wrap' }, el('table', { class: 'data rules' },
      el('thead', {}, el('tr', {}, ...['Rule', 'Value', 'Breaching', 'Verdict', 'Alert'].map((h) => el('th', { text: h })))),
      el('tbody', {}, ...rules.map((r) => {
        const state = r.alert?.state || 'inactive';
        return el('tr', { 'data-rule': String(r.rule), class: `${state === 'firing' ? 'row-firing' : ''}${r.breaching ? ' breaching' : ''}` },
          el('td', {}, el('span', { class: 'rule-text', text: r.text }), r.adjustment ? el('span', { class: 'muted', text: ` (${r.adjustment})` }) : null),
          el('td', { class: 'num', text: r.value === null || r.value === undefined ? '–' : fmtNum(r.value, 2) }),
          el('td', { class: 'num', text: `${secs(r.breaching_for_secs)} / ${secs(r.breach_duration_secs)}` }),
          el('td', { text: r.verdict || '' }),
          el('td', {}, el('span', { class: `badge alert-${state}`, text: state }),
            r.alert?.since ? el('span', { class: 'muted small', text: ` since ${fmtTime(r.alert.since * 1000)}` }) : null));
      })))));
  } else {
    lines.push(el('p', { class: 'muted', text: 'No scaling rules.' }));
  }
  if (x.target) {
    const t = x.target;
    lines.push(el('p', { text: `Target tracking: value ${fmtNum(t.value)}, ratio ${fmtNum(t.ratio)}, recommends ${t.recommended} (stabilized ${t.stabilized})` }));
  }
  lines.push(el('p', { class: 'next' }, el('strong', { text: 'Next: ' }), el('span', { 'data-testid': 'explain-next', text: x.next || '–' })));
  if (x.last_decision) {
    const d = x.last_decision;
    lines.push(el('p', { class: 'muted small', text: `Last decision ${fmtTime(d.timestamp / 1e6)}: ${d.old_instances}→${d.new_instances} ${STATUS[d.status] || d.status} — ${d.reason}${d.message ? ` (${d.message})` : ''}` }));
  }
  box.replaceChildren(...lines);

  const firing = rules.filter((r) => r.alert?.state === 'firing');
  alertsBox.classList.toggle('firing', firing.length > 0);
  alertsBox.replaceChildren(firing.length
    ? el('ul', {}, ...firing.map((r) => el('li', { 'data-rule': String(r.rule) },
      el('strong', { text: 'FIRING ' }), `rule ${r.rule}: ${r.text}`,
      r.alert.since ? ` — since ${fmtTime(r.alert.since * 1000)}` : '',
      r.value !== null && r.value !== undefined ? ` (value ${fmtNum(r.value, 2)})` : '')))
    : el('p', { class: 'muted small', text: 'No firing alerts.' }));
}

/** Scaling history rows (CF's autoscaling-history columns). */
export function historyRows(tbody, records) {
  if (!records.length) {
    tbody.replaceChildren(el('tr', {}, el('td', { colspan: '6', class: 'muted', text: 'No scaling decisions yet.' })));
    return;
  }
  tbody.replaceChildren(...records.map((r) => {
    const status = STATUS[r.status] ?? String(r.status);
    const inst = (n) => (n < 0 ? '?' : String(n));
    return el('tr', { class: `status-${status}` },
      el('td', { text: fmtTime(r.timestamp / 1e6) }),
      el('td', { class: 'num', text: `${inst(r.old_instances)}→${inst(r.new_instances)}` }),
      el('td', { text: `${r.reason || ''}${r.message ? ` (${r.message})` : ''}${r.rule !== null && r.rule !== undefined ? ` [rule ${r.rule}]` : ''}` }),
      el('td', {}, el('span', { class: `badge status-${status}`, text: status })),
      el('td', { text: SCALING_TYPE[r.scaling_type] ?? String(r.scaling_type ?? '') }),
      el('td', { class: 'error-text', text: r.error || '' }));
  }));
}
