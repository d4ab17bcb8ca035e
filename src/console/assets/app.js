// README — Hydrant console front end (plain ES2020 modules, no build step).
//
// Files (served at /assets/<path>, index.html at /):
//   app.js          this file: session (token from the URL, login form), top nav, hash router
//   api.js          fetch helpers (errors → ApiError with the server's message, 401 → login),
//                   the `el()` DOM builder (textContent only, never innerHTML), formatting,
//                   `poll()` which pauses while the tab is hidden
//   chart.js        canvas time-series chart (decimation, legend, crosshair tooltip)
//   dashboards.js   renders dashboards/*.json panels as charts via storage range queries
//   logs.js         live log view: Log Cache backlog + /v2/read event stream
//   yaml-editor.js  textarea with a line-number gutter that marks problem lines
//   pages/apps.js      #/apps           app table, scale/delete, push form
//   pages/app.js       #/apps/<name>    instances, charts, logs, autoscaler explain/history
//   pages/policies.js  #/policies[/<app>] policy list and editor (check, dry run, save)
//   pages/platform.js  #/platform       component health and the platform dashboard
//
// Every page module exports `render(root, ...params)` returning a cleanup function the
// router calls when leaving the page (it stops pollers, streams and observers).

import { api, el, onUnauthorized, showError } from './api.js';
import * as appsPage from './pages/apps.js';
import * as appPage from './pages/app.js';
import * as policiesPage from './pages/policies.js';
import * as platformPage from './pages/platform.js';

const main = document.getElementById('main');
let cleanup = null;
let loginShown = false;
let session = null;

function leave() {
  if (cleanup) {
    try { cleanup(); } catch (e) { console.warn('cleanup', e); }
  }
  cleanup = null;
}

/** Parses `#/a/b?x=y` into path segments and query. */
function parseHash() {
  const h = location.hash.replace(/^#/, '');
  const [path, query = ''] = h.split('?');
  const parts = path.split('/').filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return { parts, query: new URLSearchParams(query) };
}

function setActiveNav(section) {
  for (const a of document.querySelectorAll('[data-nav]')) {
    a.classList.toggle('active', a.dataset.nav === section);
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}

function route() {
  if (loginShown) return;
  leave();
  const { parts } = parseHash();
  const root = el('div', { class: 'page' });
  main.replaceChildren(root);
  const [section = 'apps', arg] = parts;
  try {
    switch (section) {
      case 'apps':
        setActiveNav('apps');
        cleanup = arg ? appPage.render(root, arg) : appsPage.render(root);
        document.title = arg ? `${arg} · Hydrant` : 'Apps · Hydrant';
        break;
      case 'policies':
        setActiveNav('policies');
        cleanup = arg ? policiesPage.renderEditor(root, arg) : policiesPage.render(root);
        document.title = arg ? `Policy ${arg} · Hydrant` : 'Policies · Hydrant';
        break;
      case 'platform':
        setActiveNav('platform');
        cleanup = platformPage.render(root);
        document.title = 'Platform · Hydrant';
        break;
      default:
        setActiveNav('');
        root.append(el('h2', { text: 'Not found' }),
          el('p', {}, 'No page here. ', el('a', { href: '#/apps', text: 'Go to apps' }), '.'));
    }
  } catch (e) {
    const err = el('div', { class: 'error' });
    showError(err, e, 'page failed');
    root.append(err);
  }
}

function showLogin(reason) {
  if (loginShown) return;
  loginShown = true;
  leave();
  const input = el('input', {
    id: 'token', type: 'password', autocomplete: 'current-password', spellcheck: 'false',
    placeholder: 'token', 'aria-label': 'Token', required: true,
  });
  const err = el('div', { class: 'error', hidden: true, 'data-testid': 'login-error', role: 'alert' });
  const submit = el('button', { id: 'login-submit', type: 'submit', class: 'primary', text: 'Sign in' });
  const user = el('input', { type: 'text', name: 'username', autocomplete: 'username', value: 'hydrant', hidden: true, 'aria-hidden': 'true', tabindex: '-1' });
  const form = el('form', { class: 'login card', 'data-testid': 'login' }, user,
    el('h2', { text: 'Sign in to Hydrant' }),
    el('p', {}, 'Paste the token from ', el('code', { text: 'hydrant-data/token' }),
      ' (the bearer token the other Hydrant APIs accept).'),
    reason ? el('p', { class: 'muted', text: reason }) : null,
    el('div', { class: 'row' }, input, submit),
    err);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    showError(err, null);
    try {
      await api('/api/session', { method: 'POST', json: { token: input.value.trim() }, auth: false });
      loginShown = false;
      await loadSession();
      route();
    } catch (ex) {
      showError(err, ex.status === 401 ? new Error(ex.message || 'That token was refused.') : ex);
    } finally {
      submit.disabled = false;
    }
  });
  main.replaceChildren(form);
  input.focus();
}

async function loadSession() {
  const r = await api('/api/session', { allow: [401], auth: false });
  if ((r && r.status === 401) || (r && r.authenticated === false)) { session = null; return false; }
  session = r || { authenticated: true };
  const out = document.getElementById('logout');
  if (out) out.hidden = !!session.open;
  return true;
}

async function logout() {
  try {
    await api('/api/session', { method: 'DELETE', auth: false });
  } catch (e) {
    console.warn('logout', e);
  }
  showLogin('Signed out.');
}

/** A `token=<hex>` in the hash (`#/apps?token=…` or `#token=…`): sign in with it, drop it. */
async function tokenFromUrl() {
  const m = location.hash.match(/[#?&]token=([^&]*)/);
  if (!m) return;
  const token = decodeURIComponent(m[1]);
  let h = location.hash.replace(/([#?&])token=[^&]*&?/, '$1').replace(/[?&]$/, '');
  if (h === '#' || h === '') h = '#/apps';
  history.replaceState(null, '', `${location.pathname}${location.search}${h}`);
  try {
    await api('/api/session', { method: 'POST', json: { token }, auth: false });
  } catch (e) {
    console.warn('token from URL refused', e.message);
  }
}

async function start() {
  document.getElementById('logout').addEventListener('click', logout);
  onUnauthorized(() => showLogin('Your session has ended or the token was not accepted.'));
  await tokenFromUrl();
  let ok = false;
  try {
    ok = await loadSession();
  } catch (e) {
    const err = el('div', { class: 'error' });
    showError(err, e, 'session');
    main.replaceChildren(err);
    return;
  }
  if (!location.hash || location.hash === '#' || location.hash === '#/') history.replaceState(null, '', '#/apps');
  window.addEventListener('hashchange', async () => {
    if (/[#?&]token=/.test(location.hash)) {
      await tokenFromUrl();
      loginShown = false;
      if (!(await loadSession().catch(() => false))) { showLogin(); return; }
    }
    route();
  });
  if (!ok) { showLogin(); return; }
  route();
}

start();
