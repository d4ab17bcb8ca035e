// Fetch helpers, DOM building, formatting and polling shared by every page.

/** An HTTP answer that was not a success; `message` is the server's own words. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

let unauthorized = () => {};
/** Registers what to do when any API answers 401 (app.js shows the login form). */
export function onUnauthorized(fn) { unauthorized = fn; }

/** The human text of an error body: `message`, CF's `errors[0].detail`, or the raw text. */
export function errorText(body, status) {
  if (body && typeof body === 'object') {
    if (typeof body.message === 'string' && body.message) return body.message;
    if (Array.isArray(body.errors) && body.errors[0]) {
      const e = body.errors[0];
      return e.detail || e.title || e.message || JSON.stringify(e);
    }
    if (typeof body.error === 'string') return body.error;
  }
  if (typeof body === 'string' && body.trim()) return body.trim().slice(0, 500);
  return `HTTP ${status}`;
}

/**
 * Calls the console's API. `json` sends a JSON body, `text` a raw body (YAML).
 * Resolves to the parsed JSON (or null for 204); rejects with ApiError.
 * With `allow: [404]` those statuses resolve to `{status, body}` instead of rejecting.
 */
export async function api(path, { method = 'GET', json, text, contentType, allow = [], auth = true } = {}) {
  const init = { method, headers: {}, credentials: 'same-origin' };
  if (json !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (text !== undefined) {
    init.headers['content-type'] = contentType || 'application/yaml';
    init.body = text;
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `network error: ${e.message || e}`, null);
  }
  const raw = await res.text().catch(() => '');
  let body = null;
  if (raw) {
    try { body = JSON.parse(raw); } catch { body = raw; }
  }
  if (res.ok) return body;
  if (allow.includes(res.status)) return { status: res.status, body };
  if (res.status === 401 && auth) unauthorized();
  throw new ApiError(res.status, errorText(body, res.status), body);
}

/** A Prometheus range query against storage; resolves to the `result` array. */
export async function queryRange(query, start, end, step) {
  const q = new URLSearchParams({ query, start: String(start), end: String(end), step: String(step) });
  const r = await api(`/api/storage/api/v1/query_range?${q}`);
  if (!r || r.status !== 'success') throw new ApiError(200, (r && r.error) || 'query failed', r);
  return r.data.result || [];
}

/** A Prometheus instant query; resolves to the `result` array. */
export async function queryInstant(query) {
  const r = await api(`/api/storage/api/v1/query?${new URLSearchParams({ query })}`);
  if (!r || r.status !== 'success') throw new ApiError(200, (r && r.error) || 'query failed', r);
  return r.data.result || [];
}

/**
 * Builds an element. `attrs`: `class`, `text`, `on<event>` functions, `dataset` object,
 * anything else as an attribute (false/null skipped). Children: nodes or strings (as text).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else if (k === 'value') node.value = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function setChildren(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

/** Shows an error (or clears it with null) in a small red line. */
export function showError(node, err, prefix = '') {
  if (!node) return;
  if (!err) { node.textContent = ''; node.hidden = true; return; }
  const msg = err instanceof ApiError && err.status ? `${err.message} (HTTP ${err.status})` : (err.message || String(err));
  node.textContent = prefix ? `${prefix}: ${msg}` : msg;
  node.hidden = false;
}

export function errorLine(testid) {
  return el('div', { class: 'error', hidden: true, role: 'alert', 'data-testid': testid || null });
}

/**
 * Runs `fn` now and then every `ms` after it finishes; pauses while the tab is hidden and
 * catches up when it shows again. Returns `{stop, now}`.
 */
export function poll(fn, ms) {
  let timer = null;
  let stopped = false;
  let running = false;
  const tick = async () => {
    timer = null;
    if (stopped || document.visibilityState === 'hidden') return;
    running = true;
    try { await fn(); } catch (e) { console.warn('poll', e); }
    running = false;
    if (!stopped && !timer && document.visibilityState !== 'hidden') timer = setTimeout(tick, ms);
  };
  const onVis = () => {
    if (document.visibilityState === 'visible' && !timer && !running && !stopped) tick();
  };
  document.addEventListener('visibilitychange', onVis);
  tick();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener('visibilitychange', onVis);
    },
    now() {
      if (stopped || running) return;
      clearTimeout(timer);
      tick();
    },
  };
}

// ---- formatting ----

const IEC = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Bytes as B/KiB/MiB… */
export function fmtBytes(n, digits = 1) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1024 && i < IEC.length - 1) { v /= 1024; i++; }
  const s = i === 0 ? String(Math.round(v)) : v.toFixed(v >= 100 ? 0 : digits);
  return `${n < 0 ? '-' : ''}${s} ${IEC[i]}`;
}

/** Bytes as whole MB, the way `cf app` shows memory ("45 MB"). */
export function fmtMB(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  const mb = n / (1024 * 1024);
  if (mb >= 1024) return `${(mb / 1024).toFixed(1)} GB`;
  return `${mb >= 10 || mb === 0 ? Math.round(mb) : mb.toFixed(1)} MB`;
}

/** Seconds as "3d 4h", "2h 5m", "4m 10s", "12s". */
export function fmtDuration(secs) {
  if (secs === null || secs === undefined || !Number.isFinite(secs)) return '–';
  let s = Math.max(0, Math.round(secs));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

/** A number with at most `digits` decimals and no trailing zeros. */
export function fmtNum(v, digits = 2) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  return String(Number(v.toFixed(digits)));
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** A local time "HH:MM:SS" (with the date when not today). */
export function fmtTime(ms, withMs = false) {
  const d = new Date(ms);
  const now = new Date();
  let s = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (withMs) s += `.${pad(d.getMilliseconds(), 3)}`;
  if (d.toDateString() !== now.toDateString()) s = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${s}`;
  return s;
}

/** "web app" → "web-app": lower case, non-alphanumerics as single dashes. */
export function slug(s) {
  return String(s).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
}

/** Encodes one path segment. */
export const seg = (s) => encodeURIComponent(s);
