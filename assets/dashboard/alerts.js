// hookwatch alerts page (after `common.js`): the episodes firing now, the history, and the
// rules in force, from `GET /api/alerts`; fetched again when the WebSocket sends an `alert`.
// Rule names and scope keys are text from a rule file and from agents: `textContent` only.
'use strict';

function delivered(alert) {
  if (alert.delivered) return 'yes';
  return alert.delivery_error ? `no: ${alert.delivery_error}` : 'pending';
}

function cells(row, values) {
  for (const value of values) row.append(el('td', {}, value));
  return row;
}

function alertRow(alert, history) {
  const row = el('tr', { 'data-alert-id': alert.id, 'data-rule': alert.rule });
  row.append(el('td', {}, alert.rule));
  row.append(el('td', { class: 'state', 'data-state': alert.state }, alert.state));
  cells(row, [alert.key ? `${alert.scope} ${alert.key}` : alert.scope, String(alert.value),
    String(alert.threshold), alert.window || '–', formatDateTime(Date.parse(alert.started_at))]);
  if (history) row.append(el('td', {}, alert.resolved_at ? formatDateTime(Date.parse(alert.resolved_at)) : '–'));
  row.append(el('td', { title: alert.delivery_error || '' }, delivered(alert)));
  return row;
}

async function load() {
  const answer = await api('/api/alerts?limit=200');
  $('firing-count').textContent = String(answer.firing.length);
  $('firing').replaceChildren(...answer.firing.map((a) => alertRow(a, false)));
  $('history').replaceChildren(...answer.history.map((a) => alertRow(a, true)));
  $('rules').replaceChildren(...answer.rules.map((r) => cells(el('tr', { 'data-rule': r.name }),
    [r.name, r.condition, String(r.threshold), r.window || '–', r.per, r.notify.join(', ')])));
}

function connect(backoffMs) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const socket = new WebSocket(`${scheme}://${location.host}/stream`
    + (token ? '?token=' + encodeURIComponent(token) : ''));
  socket.addEventListener('open', () => {
    $('connection').dataset.state = 'live';
    $('connection').textContent = 'live';
  });
  socket.addEventListener('message', (message) => {
    let parsed;
    try { parsed = JSON.parse(message.data); } catch (_) { return; }
    if (parsed.type === 'alert' || parsed.type === 'lagged') load().catch((e) => console.warn(e.message));
  });
  socket.addEventListener('close', () => {
    $('connection').dataset.state = 'reconnecting';
    $('connection').textContent = 'reconnecting';
    setTimeout(() => connect(Math.min(backoffMs * 2, 5000)), backoffMs);
  });
}

load().catch((e) => console.warn(e.message));
connect(500);
