// #/policies: the autoscaler's policies; #/policies/<app>: the policy editor, checked as
// you type, with a dry run (replay over past metrics) and save.

import { ApiError, api, el, errorLine, fmtTime, poll, seg, showError } from '../api.js';
import { createEditor } from '../yaml-editor.js';
import { historyRows } from './app.js';

export function render(root) {
  const err = errorLine('policies-error');
  const tbody = el('tbody');
  const table = el('table', { class: 'data', 'data-testid': 'policies-table' },
    el('thead', {}, el('tr', {}, ...['App', 'Instances', 'Min', 'Max', 'Rules', 'Target', 'Schedules', ''].map((h) => el('th', { text: h })))),
    tbody);
  const input = el('input', { id: 'policy-new-app', placeholder: 'app name', 'aria-label': 'App name', autocomplete: 'off' });
  const form = el('form', { class: 'row', 'data-testid': 'policy-new' }, input,
    el('button', { type: 'submit', id: 'policy-new-submit', text: 'New policy' }));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const name = input.value.trim();
    if (name) location.hash = `#/policies/${seg(name)}`;
  });
  root.append(el('div', { class: 'page-head' }, el('h2', { text: 'Autoscaling policies' })), err,
    el('div', { class: 'table-wrap' }, table), el('div', { class: 'card' }, el('h3', { text: 'Create a policy' }), form));

  const refresh = async () => {
    let list;
    try {
      list = await api('/api/autoscaler/v1/apps');
      showError(err, null);
    } catch (e) {
      showError(err, e, 'policies');
      return;
    }
    const items = (list && list.resources) || [];
    if (!items.length) {
      tbody.replaceChildren(el('tr', {}, el('td', { colspan: '8', class: 'muted', text: 'No policies yet.' })));
      return;
    }
    tbody.replaceChildren(...items.map((p) => el('tr', { 'data-app': p.app },
      el('td', {}, el('a', { href: `#/policies/${seg(p.app)}`, text: p.app, 'data-testid': `policy-link-${p.app}` }),
        p.guid ? el('div', { class: 'muted small', text: p.guid }) : null),
      el('td', { class: 'num', text: p.instances ?? '?' }),
      el('td', { class: 'num', text: String(p.instance_min_count) }),
      el('td', { class: 'num', text: String(p.instance_max_count) }),
      el('td', { class: 'num', text: String(p.rules) }),
      el('td', { text: p.target_tracking ? 'yes' : '–' }),
      el('td', { text: p.schedules ? 'yes' : '–' }),
      el('td', {}, el('a', { href: `#/apps/${seg(p.app)}`, text: 'app' })))));
  };
  const p = poll(refresh, 5000);
  return () => p.stop();
}

/** A commented starting point for an app without a policy. */
export function examplePolicy(app) {
  return `# Autoscaling policy for ${app} (Cloud Foundry app-autoscaler format).
# Scale out by one instance while CPU stays above 70% for 5 minutes;
# scale in by one while it stays below 20% for 10 minutes.
app: ${JSON.stringify(app)}
instance_min_count: 1
instance_max_count: 5
scaling_rules:
  - metric_type: cpu
    operator: '>'
    threshold: 70
    breach_duration: 5m
    cool_down: 5m
    adjustment: '+1'
  - metric_type: cpu
    operator: '<'
    threshold: 20
    breach_duration: 10m
    cool_down: 5m
    adjustment: '-1'
`;
}

const isError = (p) => p.severity === 'error';

/** `line:column: severity: path: message` */
export function problemText(p) {
  return `${p.line ?? '?'}:${p.column ?? '?'}: ${p.severity}: ${p.path ? `${p.path}: ` : ''}${p.message}`;
}

/** UNIX seconds, ms or ns → ms. */
function toMs(t) {
  const n = Number(t);
  if (!Number.isFinite(n)) return NaN;
  if (n > 1e17) return n / 1e6;
  if (n > 1e14) return n / 1e3;
  if (n > 1e11) return n;
  return n * 1000;
}

export function renderEditor(root, app) {
  const loadErr = errorLine('policy-load-error');
  const checkErr = errorLine('policy-check-error');
  const file = el('span', { class: 'muted small', 'data-testid': 'policy-file' });
  const note = el('p', { class: 'notice', 'data-testid': 'policy-new-note', hidden: true },
    `${app} has no policy yet: this is an example. Saving creates it.`);
  const status = el('span', { class: 'small', 'data-testid': 'policy-status', 'aria-live': 'polite', text: 'loading…' });
  const problems = el('ul', { class: 'problems', 'data-testid': 'policy-problems' });
  const save = el('button', { type: 'button', id: 'policy-save', class: 'primary', text: 'Save', disabled: true });
  const saveResult = el('div', { class: 'form-msg', 'data-testid': 'policy-save-result', 'aria-live': 'polite' });
  const hours = el('select', { id: 'policy-dryrun-hours', 'aria-label': 'Dry run over the last' },
    ...[1, 3, 6, 24].map((h) => el('option', { value: String(h), text: `last ${h} h`, selected: h === 3 })));
  const dry = el('button', { type: 'button', id: 'policy-dryrun', text: 'Dry run' });
  const dryOut = el('div', { class: 'dryrun', 'data-testid': 'dryrun' });

  let seq = 0;
  let timer = null;
  let errors = 0;
  let loaded = false;
  let stopped = false;

  const editor = createEditor({
    onInput: () => {
      clearTimeout(timer);
      status.textContent = 'editing…';
      timer = setTimeout(check, 300);
    },
  });

  const showProblems = (list) => {
    list = list || [];
    editor.setMarks(list);
    problems.replaceChildren(...list.map((p) => el('li', {
      'data-line': String(p.line ?? ''), class: `problem ${isError(p) ? 'error' : 'warning'}`,
      onclick: () => editor.gotoLine(Number(p.line) || 1, Number(p.column) || 1),
    }, problemText(p))));
    errors = list.filter(isError).length;
    const warnings = list.length - errors;
    status.textContent = list.length ? `${errors} error(s), ${warnings} warning(s)` : 'No problems.';
    status.className = `small ${errors ? 'error-text' : warnings ? 'warn-text' : 'ok-text'}`;
    save.disabled = errors > 0 || !loaded;
  };

  async function check() {
    const mine = ++seq;
    status.textContent = 'checking…';
    try {
      const r = await api(`/api/autoscaler/v1/policy/check?app=${encodeURIComponent(app)}`, { method: 'POST', text: editor.value });
      if (mine !== seq || stopped) return;
      showError(checkErr, null);
      showProblems((r && r.problems) || []);
    } catch (e) {
      if (mine !== seq || stopped) return;
      showError(checkErr, e, 'check');
      status.textContent = 'not checked';
      save.disabled = !loaded;
    }
  }

  save.addEventListener('click', async () => {
    save.disabled = true;
    saveResult.className = 'form-msg';
    saveResult.textContent = 'saving…';
    try {
      const r = await api(`/api/autoscaler/v1/apps/${seg(app)}/policy`, { method: 'PUT', text: editor.value, allow: [409, 422] });
      if (r && (r.status === 422 || r.status === 409)) {
        const b = r.body || {};
        saveResult.className = 'form-msg error';
        saveResult.textContent = `Not saved: ${b.message || 'the policy has errors'}`;
        showProblems(b.problems || []);
        return;
      }
      saveResult.className = 'form-msg ok';
      saveResult.textContent = `Saved${r && r.file ? ` to ${r.file}` : ''} at ${new Date().toLocaleTimeString()}.`;
      if (r && r.file) file.textContent = r.file;
      note.hidden = true;
      showProblems((r && r.problems) || []);
    } catch (e) {
      saveResult.className = 'form-msg error';
      saveResult.textContent = `Not saved: ${e.message}${e instanceof ApiError && e.status ? ` (HTTP ${e.status})` : ''}`;
    } finally {
      save.disabled = errors > 0;
    }
  });

  dry.addEventListener('click', async () => {
    dry.disabled = true;
    dryOut.replaceChildren(el('p', { class: 'muted', text: `Replaying the last ${hours.value} h…` }));
    try {
      const r = await api(`/api/autoscaler/v1/apps/${seg(app)}/policy/replay?from=-${hours.value}h&to=now`,
        { method: 'POST', text: editor.value, allow: [409, 422] });
      if (r && (r.status === 422 || r.status === 409)) {
        const b = r.body || {};
        dryOut.replaceChildren(el('p', { class: 'error', text: `Dry run refused: ${b.message || 'the policy has errors'}` }));
        if (b.problems) showProblems(b.problems);
        return;
      }
      renderDryRun(dryOut, r || {});
    } catch (e) {
      const p = el('p', { class: 'error' });
      showError(p, e, 'Dry run failed');
      dryOut.replaceChildren(p);
    } finally {
      dry.disabled = false;
    }
  });

  root.append(
    el('p', { class: 'crumbs' }, el('a', { href: '#/policies', text: 'Policies' }), ' / ', app),
    el('div', { class: 'page-head' }, el('h2', { text: `Policy for ${app}` }), file,
      el('a', { href: `#/apps/${seg(app)}`, class: 'small', text: 'app page' })),
    loadErr, note,
    editor.element,
    el('div', { class: 'editor-bar' }, status, el('span', { class: 'spacer' }), save,
      el('span', { class: 'dry-group' }, hours, dry)),
    checkErr, saveResult,
    el('h3', { text: 'Problems' }), problems,
    el('h3', { text: 'Dry run' }), dryOut);

  (async () => {
    try {
      const r = await api(`/api/autoscaler/v1/apps/${seg(app)}/policy`, { allow: [404] });
      if (stopped) return;
      if (r && r.status === 404) {
        editor.setValue(examplePolicy(app));
        note.hidden = false;
      } else {
        editor.setValue((r && r.text) || '');
        file.textContent = (r && r.file) || '';
      }
      loaded = true;
      showError(loadErr, null);
    } catch (e) {
      if (stopped) return;
      showError(loadErr, e, 'could not load the policy');
      editor.setValue(examplePolicy(app));
      loaded = true;
    }
    check();
  })();

  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function renderDryRun(box, r) {
  const records = r.records || [];
  const alerts = r.alerts || [];
  const scales = records.filter((x) => x.status === 0).length;
  const from = toMs(r.from);
  const to = toMs(r.to);
  const range = Number.isFinite(from) && Number.isFinite(to) ? ` between ${fmtTime(from)} and ${fmtTime(to)}` : '';
  const tbody = el('tbody');
  historyRows(tbody, records);
  box.replaceChildren(
    el('p', { 'data-testid': 'dryrun-summary', text: `${records.length} decision(s), ${scales} scale(s), ${alerts.length} alert notification(s)${range} (dry run: nothing was scaled or sent).` }),
    el('div', { class: 'table-wrap' }, el('table', { class: 'data', 'data-testid': 'dryrun-records' },
      el('thead', {}, el('tr', {}, ...['Time', 'Instances', 'Reason', 'Status', 'Type', 'Error'].map((h) => el('th', { text: h })))),
      tbody)),
    alerts.length
      ? el('ul', { class: 'dry-alerts', 'data-testid': 'dryrun-alerts' }, ...alerts.map((a) => {
        const inner = a.alert || a;
        const at = toMs(inner.at ?? inner.since);
        return el('li', { class: `alert-${inner.state || ''}` },
          `${Number.isFinite(at) ? fmtTime(at) : '?'}  alert ${inner.state || '?'}: rule ${inner.rule ?? '?'}${inner.summary ? `: ${inner.summary}` : ''}`);
      }))
      : el('p', { class: 'muted small', text: 'No alerts would have fired.' }));
}
