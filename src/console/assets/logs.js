// Live logs of one app: the Log Cache backlog (`cf logs --recent`), then the live
// `/v2/read` event stream, reconnecting on `closing` or error and skipping lines already
// shown. Lines are built with textContent only.

import { api, el, errorLine, seg, showError } from './api.js';

const MAX_LINES = 2000;
const decoder = new TextDecoder('utf-8', { fatal: false });

/** Base64 → UTF-8 text (invalid bytes become U+FFFD). */
export function decodePayload(b64) {
  if (!b64) return '';
  try {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return decoder.decode(bytes);
  } catch {
    return String(b64);
  }
}

/** An envelope as a line `{key, ms, source, stream, text}`, or null if it is no log. */
export function toLine(env) {
  const log = env && env.log;
  if (!log) return null;
  const ts = String(env.timestamp ?? '0');
  const ms = ts.length > 6 ? Number(ts.slice(0, -6)) : Number(ts) / 1e6;
  const tags = env.tags || {};
  const type = tags.source_type || (env.deprecated_tags && env.deprecated_tags.source_type?.text) || 'APP';
  const instance = env.instance_id ?? env.instanceId ?? '';
  const source = instance !== '' ? `${type}/${instance}` : type;
  const stream = log.type === 'ERR' ? 'ERR' : 'OUT';
  const text = decodePayload(log.payload).replace(/\r?\n$/, '');
  return { key: `${ts}|${instance}|${log.payload}`, ms, source, stream, text };
}

const pad = (n, w = 2) => String(n).padStart(w, '0');
function clock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Renders the log view for `guid` into `container`. Returns a stop function. */
export function renderLogs(container, guid) {
  const filter = el('input', { id: 'log-filter', type: 'search', placeholder: 'Filter lines', 'aria-label': 'Filter log lines', spellcheck: 'false' });
  const out = el('input', { id: 'log-out', type: 'checkbox', checked: true });
  const err = el('input', { id: 'log-err', type: 'checkbox', checked: true });
  const status = el('span', { class: 'muted small', id: 'log-status', 'data-testid': 'log-status', text: 'connecting…' });
  const follow = el('button', { type: 'button', id: 'log-follow', hidden: true, text: '↓ Follow' });
  const clear = el('button', { type: 'button', id: 'log-clear', text: 'Clear' });
  const error = errorLine('logs-error');
  const box = el('div', { class: 'logs', 'data-testid': 'logs', role: 'log', 'aria-live': 'off', tabindex: '0' });
  container.append(
    el('div', { class: 'logs-toolbar' }, filter,
      el('label', { class: 'toggle out' }, out, 'OUT'),
      el('label', { class: 'toggle err' }, err, 'ERR'),
      clear, follow, status),
    error, box);

  const seen = new Set();
  let stick = true;
  let es = null;
  let stopped = false;
  let retry = null;
  let backoff = 1000;
  let needle = '';

  const matches = (div) => {
    const s = div.dataset.stream;
    if (s === 'OUT' && !out.checked) return false;
    if (s === 'ERR' && !err.checked) return false;
    return !needle || div.textContent.toLowerCase().includes(needle);
  };
  const applyFilter = () => {
    needle = filter.value.trim().toLowerCase();
    for (const div of box.children) div.hidden = !matches(div);
    if (stick) box.scrollTop = box.scrollHeight;
  };
  filter.addEventListener('input', applyFilter);
  out.addEventListener('change', applyFilter);
  err.addEventListener('change', applyFilter);
  clear.addEventListener('click', () => { box.replaceChildren(); });
  box.addEventListener('scroll', () => {
    stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 24;
    follow.hidden = stick;
  });
  follow.addEventListener('click', () => { stick = true; follow.hidden = true; box.scrollTop = box.scrollHeight; });

  const add = (lines) => {
    if (!lines.length) return;
    const frag = document.createDocumentFragment();
    for (const l of lines) {
      if (seen.has(l.key)) continue;
      seen.add(l.key);
      const div = el('div', { class: `log-line ${l.stream === 'ERR' ? 'err' : 'out'}`, dataset: { stream: l.stream, key: l.key } },
        el('span', { class: 'log-time', text: clock(l.ms) }), ' ',
        el('span', { class: 'log-source', text: `[${l.source}]` }), ' ',
        el('span', { class: 'log-stream', text: l.stream }), ' ',
        el('span', { class: 'log-text', text: l.text }));
      div.hidden = !matches(div);
      frag.append(div);
    }
    box.append(frag);
    let extra = box.children.length - MAX_LINES;
    while (extra-- > 0) {
      const first = box.firstElementChild;
      seen.delete(first.dataset.key);
      first.remove();
    }
    if (stick) box.scrollTop = box.scrollHeight;
  };

  const linesOf = (batch) => (batch || []).map(toLine).filter(Boolean);

  const backlog = async () => {
    try {
      const r = await api(`/api/logcache/api/v1/read/${seg(guid)}?envelope_types=LOG&limit=200&descending=true`);
      showError(error, null);
      const lines = linesOf(r && r.envelopes && r.envelopes.batch).reverse();
      lines.sort((a, b) => a.ms - b.ms);
      // after a reconnect, only what is newer than the last line shown
      const last = box.lastElementChild;
      const after = last ? Number(last.dataset.key.split('|')[0].slice(0, -6)) : -Infinity;
      add(lines.filter((l) => l.ms >= after));
    } catch (e) {
      showError(error, e, 'recent logs');
    }
  };

  const connect = () => {
    if (stopped) return;
    status.textContent = 'connecting…';
    es = new EventSource(`/api/logcache/v2/read?log&source_id=${encodeURIComponent(guid)}`);
    es.onopen = () => { status.textContent = 'live'; backoff = 1000; showError(error, null); };
    es.onmessage = (e) => {
      try {
        const data = JSON.parse(e.data);
        add(linesOf(data.batch));
      } catch (ex) {
        showError(error, ex, 'bad log event');
      }
    };
    es.addEventListener('heartbeat', () => { status.textContent = 'live'; });
    es.addEventListener('closing', () => reconnect(300));
    es.onerror = () => {
      showError(error, new Error('log stream interrupted; reconnecting'));
      reconnect(backoff);
      backoff = Math.min(backoff * 2, 15000);
    };
  };

  const reconnect = (delay) => {
    if (es) { es.close(); es = null; }
    if (stopped || retry) return;
    status.textContent = 'reconnecting…';
    retry = setTimeout(async () => {
      retry = null;
      await backlog();
      connect();
    }, delay);
  };

  backlog().then(connect);

  return () => {
    stopped = true;
    clearTimeout(retry);
    if (es) es.close();
  };
}
