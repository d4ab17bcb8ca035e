// A plain textarea with a line-number gutter that scrolls with it and marks problem lines
// (`gutter-error` / `gutter-warning`, each gutter line a `div[data-line=N]`).

import { el } from './api.js';

/**
 * Creates the editor. `onInput(text)` runs on every edit.
 * Returns `{element, textarea, value, setValue, setMarks, gotoLine}`.
 */
export function createEditor({ value = '', onInput = () => {}, id = 'policy-editor' } = {}) {
  const lines = el('div', { class: 'gutter-lines' });
  const gutter = el('div', { class: 'gutter', 'aria-hidden': 'true', 'data-testid': 'policy-gutter' }, lines);
  const ta = el('textarea', {
    id, class: 'code', spellcheck: 'false', wrap: 'off', autocapitalize: 'off', autocomplete: 'off',
    'aria-label': 'Policy YAML', 'data-testid': id,
  });
  ta.value = value;
  const element = el('div', { class: 'editor' }, gutter, ta);
  let count = 0;
  let marks = new Map();

  const syncScroll = () => { gutter.scrollTop = ta.scrollTop; };

  const renderGutter = () => {
    const n = ta.value.split('\n').length;
    if (n !== count) {
      if (n > count) {
        const frag = document.createDocumentFragment();
        for (let i = count + 1; i <= n; i++) frag.append(el('div', { class: 'gl', 'data-line': String(i), text: String(i) }));
        lines.append(frag);
      } else {
        while (lines.children.length > n) lines.lastElementChild.remove();
      }
      count = n;
      applyMarks();
    }
    syncScroll();
  };

  const applyMarks = () => {
    for (const div of lines.children) {
      const m = marks.get(Number(div.dataset.line));
      div.classList.toggle('gutter-error', m?.severity === 'error');
      div.classList.toggle('gutter-warning', m?.severity === 'warning');
      if (m) div.title = m.messages.join('\n'); else div.removeAttribute('title');
    }
  };

  /** Marks lines from problems `{line, severity, message}` (lines past the end go on the last). */
  const setMarks = (problems) => {
    marks = new Map();
    for (const p of problems || []) {
      const line = Math.min(Math.max(1, Number(p.line) || 1), Math.max(1, count));
      const sev = p.severity === 'error' ? 'error' : 'warning';
      const m = marks.get(line) || { severity: sev, messages: [] };
      if (sev === 'error') m.severity = 'error';
      m.messages.push(`${p.severity}: ${p.message}`);
      marks.set(line, m);
    }
    applyMarks();
  };

  const gotoLine = (n, column = 1) => {
    const all = ta.value.split('\n');
    const line = Math.min(Math.max(1, n), all.length);
    let offset = 0;
    for (let i = 0; i < line - 1; i++) offset += all[i].length + 1;
    offset += Math.min(Math.max(0, column - 1), all[line - 1].length);
    ta.focus();
    ta.setSelectionRange(offset, offset);
    const lh = parseFloat(getComputedStyle(ta).lineHeight) || 18;
    ta.scrollTop = Math.max(0, (line - 1) * lh - ta.clientHeight / 2);
    syncScroll();
  };

  ta.addEventListener('scroll', syncScroll);
  ta.addEventListener('input', () => { renderGutter(); onInput(ta.value); });
  ta.addEventListener('keydown', (e) => {
    if (e.key === 'Tab' && !e.shiftKey && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      ta.setRangeText('  ', ta.selectionStart, ta.selectionEnd, 'end');
      ta.dispatchEvent(new Event('input'));
    }
  });
  renderGutter();

  return {
    element,
    textarea: ta,
    get value() { return ta.value; },
    setValue(v) { ta.value = v; renderGutter(); },
    setMarks,
    gotoLine,
  };
}
