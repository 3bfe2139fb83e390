// hookwatch pages' shared helpers: the read token, element building (text only, never
// markup), the API and number formats. Loaded before each page's own script (`app.js`,
// `trace.js`, `team.js`); classic scripts share these top-level names.
'use strict';

const TOKEN_KEY = 'hookwatch-token';

// ---- settings from the address bar -------------------------------------------------------

const query = new URLSearchParams(location.search);
// A read token may come as `?token=`; keep it for this tab and take it out of the address bar
// so it is not left in history or screenshots.
const token = query.get('token') || sessionStorage.getItem(TOKEN_KEY) || '';
if (query.has('token')) {
  sessionStorage.setItem(TOKEN_KEY, token);
  query.delete('token');
  const rest = query.toString();
  history.replaceState(null, '', location.pathname + (rest ? '?' + rest : ''));
}

// ---- small helpers ----------------------------------------------------------------------

/** Makes an element; `text` is set as textContent, so it is never parsed as markup. */
function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(key, String(value));
  }
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

const $ = (id) => document.getElementById(id);

async function api(path) {
  const headers = token ? { Authorization: 'Bearer ' + token } : {};
  const response = await fetch(path, { headers, cache: 'no-store' });
  if (!response.ok) {
    let message = response.status + ' ' + response.statusText;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(path + ': ' + message);
  }
  return response.json();
}

const integer = new Intl.NumberFormat('en-US');
function formatCount(n) { return integer.format(n); }
function formatTokens(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + 'B';
  if (n >= 1e6) return (n / 1e6).toFixed(2) + 'M';
  if (n >= 1e4) return (n / 1e3).toFixed(1) + 'k';
  return integer.format(n);
}
function formatRate(r) { return r === null || r === undefined ? '–' : (r * 100).toFixed(1) + '%'; }
function formatDuration(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1000) return Math.round(ms) + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(1) + ' s';
  if (ms < 3600000) return (ms / 60000).toFixed(1) + ' min';
  return (ms / 3600000).toFixed(1) + ' h';
}
function formatCost(usd) {
  if (usd === 0) return '$0';
  if (usd < 0.01) return '$' + usd.toFixed(4);
  return '$' + usd.toFixed(2);
}
function formatTime(ms) {
  if (!ms) return '–';
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
function formatDateTime(ms) { return ms ? new Date(ms).toLocaleString() : '–'; }
function short(id) { return id && id.length > 12 ? id.slice(0, 8) + '…' : (id || '–'); }

// ---- charts ----------------------------------------------------------------------------

/** Vertical bars, one per value, in an SVG with a viewBox; `label(i)` is each bar's tooltip. */
function drawBars(target, values, label) {
  const box = target.viewBox.baseVal;
  const width = box.width;
  const height = box.height;
  target.replaceChildren();
  const max = Math.max(...values, 0);
  // An empty chart says so in CSS (`.chart-box[data-empty]`), not in the stretched SVG.
  target.parentElement.toggleAttribute('data-empty', !values.length || max === 0);
  if (!values.length || max === 0) return;
  const step = width / values.length;
  values.forEach((value, i) => {
    const h = value === 0 ? 0 : Math.max(1, (value / max) * (height - 4));
    const bar = svg('rect', { x: i * step + step * 0.1, y: height - h, width: step * 0.8, height: h });
    const title = svg('title');
    title.textContent = label(i);
    bar.append(title);
    target.append(bar);
  });
}
