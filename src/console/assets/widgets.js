// Small pieces shared by the apps list and the app page: the scale form, the delete
// button with its inline confirmation, usage bars.

import { api, el, fmtMB, seg, showError } from './api.js';

/**
 * An inline scale form, `data-testid="scale-<name>"`, inputs `instances`, `memory_in_mb`,
 * `disk_in_mb` (empty = unchanged; the current values are the placeholders).
 * `getApp()` returns the current app; `onDone()` runs after a successful scale.
 */
export function scaleForm(name, getApp, onDone) {
  const num = (field, label, min) => el('input', {
    type: 'number', name: field, min: String(min), step: '1', inputmode: 'numeric',
    'aria-label': label, title: label, class: 'num',
  });
  const inst = num('instances', 'Instances', 0);
  const mem = num('memory_in_mb', 'Memory (MB)', 1);
  const disk = num('disk_in_mb', 'Disk (MB)', 1);
  const button = el('button', { type: 'submit', text: 'Scale', 'data-testid': `scale-submit-${name}` });
  const msg = el('span', { class: 'form-msg', 'data-testid': `scale-result-${name}`, 'aria-live': 'polite' });
  const form = el('form', { class: 'scale-form', 'data-testid': `scale-${name}` },
    el('label', { class: 'mini' }, el('span', { text: 'inst' }), inst),
    el('label', { class: 'mini' }, el('span', { text: 'mem MB' }), mem),
    el('label', { class: 'mini' }, el('span', { text: 'disk MB' }), disk),
    button, msg);
  const update = (app) => {
    if (!app) return;
    inst.placeholder = String(app.instances);
    mem.placeholder = String(app.memory_in_mb);
    disk.placeholder = String(app.disk_in_mb);
  };
  update(getApp());
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const app = getApp();
    if (!app) return;
    const body = {};
    for (const [input, key] of [[inst, 'instances'], [mem, 'memory_in_mb'], [disk, 'disk_in_mb']]) {
      if (input.value.trim() !== '') body[key] = Math.trunc(Number(input.value));
    }
    if (!Object.keys(body).length) {
      msg.className = 'form-msg error';
      msg.textContent = 'enter instances, memory or disk';
      return;
    }
    button.disabled = true;
    msg.className = 'form-msg';
    msg.textContent = 'scaling…';
    try {
      const p = await api(`/api/cell/v3/apps/${seg(app.guid)}/processes/web/actions/scale`, { method: 'POST', json: body });
      msg.className = 'form-msg ok';
      msg.textContent = p && p.instances !== undefined
        ? `scaled: ${p.instances} × ${p.memory_in_mb} MB / ${p.disk_in_mb} MB` : 'scaled';
      inst.value = ''; mem.value = ''; disk.value = '';
      if (onDone) onDone();
    } catch (ex) {
      msg.className = 'form-msg error';
      msg.textContent = ex.message;
    } finally {
      button.disabled = false;
    }
  });
  return { element: form, update };
}

/**
 * A delete button (`data-testid="delete-<name>"`); clicking asks inline, confirming
 * (`data-testid="confirm-delete-<name>"`) deletes the app.
 */
export function deleteButton(name, getApp, onDone) {
  const wrap = el('span', { class: 'delete-wrap' });
  const msg = el('span', { class: 'form-msg error', hidden: true });
  const ask = el('button', { type: 'button', class: 'danger', text: 'Delete', 'data-testid': `delete-${name}` });
  const yes = el('button', { type: 'button', class: 'danger', text: 'Yes, delete', 'data-testid': `confirm-delete-${name}` });
  const no = el('button', { type: 'button', text: 'Cancel', 'data-testid': `cancel-delete-${name}` });
  const confirmBox = el('span', { class: 'confirm', hidden: true }, `Delete ${name}? `, yes, no);
  let timer = null;
  const reset = () => { clearTimeout(timer); confirmBox.hidden = true; ask.hidden = false; };
  ask.addEventListener('click', () => {
    ask.hidden = true;
    confirmBox.hidden = false;
    msg.hidden = true;
    clearTimeout(timer);
    timer = setTimeout(reset, 10000);
    yes.focus();
  });
  no.addEventListener('click', reset);
  yes.addEventListener('click', async () => {
    const app = getApp();
    if (!app) return;
    yes.disabled = true;
    try {
      await api(`/api/cell/v3/apps/${seg(app.guid)}`, { method: 'DELETE' });
      reset();
      if (onDone) onDone();
    } catch (ex) {
      showError(msg, ex, 'delete failed');
      reset();
    } finally {
      yes.disabled = false;
    }
  });
  wrap.append(ask, confirmBox, msg);
  return wrap;
}

/** CPU bars for a list of fractions of one core. */
export function cpuBars(stats) {
  const items = stats.filter((s) => s.usage);
  if (!items.length) return [el('span', { class: 'muted', text: '–' })];
  return [el('span', { class: 'bars' }, ...items.map((s) => {
    const pct = s.usage.cpu * 100;
    return el('span', { class: 'bar', title: `#${s.index}: ${pct.toFixed(1)}%` },
      el("span", { class: `fill${pct >= 90 ? " hot" : ""}`, style: `height:${Math.min(100, Math.max(0, pct)).toFixed(1)}%` }));
  })), el('span', { class: 'bar-text', text: items.map((s) => `${Math.round(s.usage.cpu * 100)}%`).join(' · ') })];
}

/** "45 MB / 256 MB" per instance, one per line. */
export function memLines(stats) {
  const items = stats.filter((s) => s.usage);
  if (!items.length) return [el('span', { class: 'muted', text: '–' })];
  return items.map((s) => el('div', { class: 'mem-line', title: `#${s.index}` }, `${fmtMB(s.usage.mem)} / ${fmtMB(s.mem_quota)}`));
}

/** "2/3" with the crashed count in red. */
export function instancesSummary(app, stats) {
  const running = stats ? stats.filter((s) => s.state === 'RUNNING').length : app.running_instances;
  const crashed = stats ? stats.filter((s) => s.state === 'CRASHED').length : 0;
  const out = [el('span', { class: 'inst-count', text: `${running}/${app.instances}` })];
  if (crashed) out.push(el('span', { class: 'crashed', 'data-testid': 'crashed', text: ` (${crashed} crashed)` }));
  return out;
}

/** A state badge. */
export function stateBadge(state) {
  return el('span', { class: `badge state-${String(state || '').toLowerCase()}`, text: state || '?' });
}
