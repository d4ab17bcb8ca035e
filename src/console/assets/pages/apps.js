// #/apps: every app with its instances, usage and log rate, scale and delete in place, and
// the push form. Rows are keyed by name and updated in place every 3 s.

import { api, el, errorLine, fmtNum, poll, queryInstant, seg, showError } from '../api.js';
import { cpuBars, deleteButton, instancesSummary, memLines, scaleForm, stateBadge } from '../widgets.js';

const LOG_RATE = 'sum by (source_id) (rate(log_lines_total[1m]))';

export function render(root) {
  const err = errorLine('apps-error');
  const rateErr = errorLine('lograte-error');
  const tbody = el('tbody');
  const empty = el('tr', { class: 'empty' }, el('td', { colspan: '7', class: 'muted', text: 'No apps yet — push one below.' }));
  const table = el('table', { class: 'data', 'data-testid': 'apps-table' },
    el('thead', {}, el('tr', {},
      ...['Name', 'State', 'Instances', 'CPU', 'Memory', 'Log rate', 'Actions'].map((h) => el('th', { text: h })))),
    tbody);
  const updated = el('span', { class: 'muted small', 'data-testid': 'apps-updated' });
  const rows = new Map();
  let poller = null;
  const refreshSoon = () => poller && poller.now();

  root.append(
    el('div', { class: 'page-head' }, el('h2', { text: 'Apps' }), updated),
    err,
    el('div', { class: 'table-wrap' }, table),
    rateErr,
    pushForm(refreshSoon),
  );

  const makeRow = (app) => {
    const r = { app, stats: null };
    const link = el('a', { href: `#/apps/${seg(app.name)}`, text: app.name, 'data-testid': `app-link-${app.name}` });
    r.cells = {
      state: el('td', { class: 'state' }),
      inst: el('td', { class: 'inst' }),
      cpu: el('td', { class: 'cpu' }),
      mem: el('td', { class: 'mem' }),
      rate: el('td', { class: 'rate num' }),
    };
    r.statsErr = el('div', { class: 'error small', hidden: true });
    r.scale = scaleForm(app.name, () => r.app, refreshSoon);
    const actions = el('td', { class: 'actions' },
      r.scale.element, deleteButton(app.name, () => r.app, () => { rows.delete(app.name); r.tr.remove(); refreshSoon(); }));
    r.tr = el('tr', { 'data-app': app.name },
      el('td', { class: 'name' }, link, r.statsErr), r.cells.state, r.cells.inst, r.cells.cpu, r.cells.mem, r.cells.rate, actions);
    return r;
  };

  const refresh = async () => {
    let list;
    try {
      list = await api('/api/cell/v3/apps?per_page=5000');
      showError(err, null);
    } catch (e) {
      showError(err, e, 'apps');
      return;
    }
    const apps = (list && list.resources) || [];
    const [stats, rates] = await Promise.all([
      Promise.allSettled(apps.map((a) => api(`/api/cell/v3/apps/${seg(a.guid)}/processes/web/stats`))),
      queryInstant(LOG_RATE).then((result) => {
        showError(rateErr, null);
        const m = new Map();
        for (const s of result) m.set(s.metric.source_id, parseFloat(s.value[1]));
        return m;
      }, (e) => { showError(rateErr, e, 'log rate unavailable'); return null; }),
    ]);
    const seen = new Set();
    apps.forEach((app, i) => {
      seen.add(app.name);
      let r = rows.get(app.name);
      if (!r) { r = makeRow(app); rows.set(app.name, r); }
      r.app = app;
      const st = stats[i];
      if (st.status === 'fulfilled') {
        r.stats = (st.value && st.value.resources) || [];
        showError(r.statsErr, null);
      } else {
        r.stats = null;
        showError(r.statsErr, st.reason, 'stats');
      }
      updateRow(r, rates);
    });
    for (const [name, r] of rows) if (!seen.has(name)) { r.tr.remove(); rows.delete(name); }
    // keep the server's order, moving rows only when it changed
    const wanted = apps.map((a) => rows.get(a.name).tr);
    const current = Array.from(tbody.children).filter((c) => c !== empty);
    if (wanted.length !== current.length || wanted.some((tr, i) => tr !== current[i])) tbody.replaceChildren(...wanted);
    if (!apps.length && !empty.isConnected) tbody.replaceChildren(empty);
    updated.textContent = `${apps.length} app(s) · updated ${new Date().toLocaleTimeString()}`;
  };

  poller = poll(refresh, 3000);
  return () => poller.stop();
}

function updateRow(r, rates) {
  const { app, stats } = r;
  r.cells.state.replaceChildren(stateBadge(app.state));
  r.cells.inst.replaceChildren(...instancesSummary(app, stats));
  r.cells.cpu.replaceChildren(...(stats ? cpuBars(stats) : [el('span', { class: 'muted', text: '–' })]));
  r.cells.mem.replaceChildren(...(stats ? memLines(stats) : [el('span', { class: 'muted', text: '–' })]));
  if (!rates) r.cells.rate.textContent = '–';
  else {
    const v = rates.get(app.guid);
    r.cells.rate.textContent = `${fmtNum(v === undefined || !Number.isFinite(v) ? 0 : v, 1)}/s`;
  }
  r.scale.update(app);
}

/** Parses `KEY=VALUE` lines (blank lines and `#` comments skipped). */
export function parseEnv(text) {
  const env = {};
  text.split('\n').forEach((line, i) => {
    const l = line.trim();
    if (!l || l.startsWith('#')) return;
    const eq = l.indexOf('=');
    if (eq <= 0) throw new Error(`env line ${i + 1}: expected KEY=VALUE`);
    env[l.slice(0, eq).trim()] = l.slice(eq + 1);
  });
  return env;
}

function pushForm(onDone) {
  const field = (id, label, attrs = {}) => {
    const input = el(attrs.tag || 'input', { id, name: id.replace('push-', ''), ...attrs, tag: null });
    return [input, el('label', { class: 'field', for: id }, el('span', { text: label }), input)];
  };
  const [name, nameF] = field('push-name', 'Name', { required: true, placeholder: 'my-app', autocomplete: 'off' });
  const [command, commandF] = field('push-command', 'Command', { required: true, placeholder: 'python3 -m http.server $PORT', autocomplete: 'off' });
  const [inst, instF] = field('push-instances', 'Instances', { type: 'number', min: '0', value: '1' });
  const [mem, memF] = field('push-memory', 'Memory (MB)', { type: 'number', min: '1', placeholder: 'default' });
  const [disk, diskF] = field('push-disk', 'Disk (MB)', { type: 'number', min: '1', placeholder: 'default' });
  const [env, envF] = field('push-env', 'Environment (KEY=VALUE per line)', { tag: 'textarea', rows: '3', placeholder: 'GREETING=hello', spellcheck: 'false' });
  const submit = el('button', { type: 'submit', id: 'push-submit', class: 'primary', text: 'Push' });
  const result = el('div', { class: 'form-msg', 'data-testid': 'push-result', 'aria-live': 'polite' });
  const form = el('form', { class: 'card push-form', 'data-testid': 'push-form' },
    el('h3', { text: 'Push app' }),
    el('div', { class: 'form-grid' }, nameF, commandF, instF, memF, diskF),
    envF,
    el('div', { class: 'row' }, submit, result));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    result.className = 'form-msg';
    const body = { name: name.value.trim(), command: command.value };
    try {
      for (const [input, key] of [[inst, 'instances'], [mem, 'memory_in_mb'], [disk, 'disk_in_mb']]) {
        if (input.value.trim() !== '') body[key] = Math.trunc(Number(input.value));
      }
      body.env = parseEnv(env.value);
    } catch (ex) {
      result.className = 'form-msg error';
      result.textContent = ex.message;
      return;
    }
    submit.disabled = true;
    result.textContent = 'pushing…';
    try {
      const app = await api('/api/cell/v3/apps', { method: 'POST', json: body });
      result.className = 'form-msg ok';
      result.replaceChildren('Pushed ', el('a', { href: `#/apps/${seg(app.name)}`, text: app.name }), '.');
      name.value = '';
      onDone();
    } catch (ex) {
      result.className = 'form-msg error';
      result.textContent = ex.message;
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
