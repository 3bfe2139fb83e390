// hookwatch dashboard: the server's own aggregates, live.
//
// Everything shown comes from the REST API (cards, charts, agents: exactly what the API
// answers) and the `/stream` WebSocket (events as they happen, plus `metrics`, `agent` and
// `health` messages that say when to refresh). Event payloads hold prompts, code and tool
// output: untrusted text. They only ever reach the DOM through `textContent` (see `el`), never
// as markup, and the server's Content-Security-Policy forbids inline script besides.
'use strict';

const RANGE_KEY = 'hookwatch-range-hours';
const ROWS_KEY = 'hookwatch-rows';
const DEFAULT_ROWS = 500;
const PULSE_WINDOW_MS = 10 * 60 * 1000;
const PULSE_BUCKET_MS = 10 * 1000;
const PULSE_MAX_SAMPLES = 200000;

// ---- settings ---------------------------------------------------------------------------

function clampRows(value) {
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) ? Math.min(5000, Math.max(10, n)) : DEFAULT_ROWS;
}

const AGENTS = ['claude-code', 'codex', 'gemini-cli'];

const state = {
  hours: Number(query.get('hours') || localStorage.getItem(RANGE_KEY) || 24),
  maxRows: clampRows(query.get('rows') || localStorage.getItem(ROWS_KEY) || DEFAULT_ROWS),
  filters: { app: '', session_id: '', event_type: '', tool: '', q: '' },
  // The coding agent whose API use the usage panels show ('' for all of them).
  agent: AGENTS.includes(query.get('agent')) ? query.get('agent') : '',
  paused: false,
  pending: [], // events received while paused, oldest first, at most maxRows
  pendingDropped: 0,
  shown: new Set(), // event_ids of rows in the table
  pulse: [], // arrival times (ms) of events in the last 10 minutes
  socket: null,
  backoffMs: 500,
  connected: false,
};
if (![1, 24, 168].includes(state.hours)) state.hours = 24;

// ---- small helpers ----------------------------------------------------------------------

async function apiPost(path, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  const response = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body) });
  if (!response.ok) {
    let message = response.status + ' ' + response.statusText;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response.json();
}

/** Runs `task` at most once per `ms`, always once more after the last call (trailing edge). */
function throttle(task, ms) {
  let timer = null;
  let again = false;
  const run = async () => {
    again = false;
    try { await task(); } catch (e) { console.warn(e.message); }
    timer = setTimeout(() => { timer = null; if (again) schedule(); }, ms);
  };
  const schedule = () => {
    if (timer) { again = true; return; }
    timer = setTimeout(run, 0);
  };
  return schedule;
}

// ---- header: connection and health -----------------------------------------------------------

function setConnection(stateName) {
  const pill = $('connection');
  pill.dataset.state = stateName;
  pill.textContent = stateName;
}

const STORE_NAMES = { sqlite: 'SQLite', postgres: 'PostgreSQL' };

function showHealth(store, redis, breaker, hitRate, backend) {
  const s = $('health-sqlite');
  s.dataset.state = store;
  s.textContent = (STORE_NAMES[backend] || 'Store') + ' ' + store;
  const r = $('health-redis');
  if (redis === 'disabled') {
    r.dataset.state = 'disabled';
    r.textContent = 'Redis off';
  } else {
    r.dataset.state = breaker && breaker !== 'closed' ? breaker : redis;
    r.textContent = 'Redis ' + redis + (breaker ? ' · breaker ' + breaker.replace('_', '-') : '');
  }
  if (hitRate !== undefined) {
    $('health-hit-rate').textContent = redis === 'disabled' ? 'no cache'
      : 'hit rate ' + (hitRate === null ? '–' : formatRate(hitRate));
  }
}

async function refreshHealth() {
  const health = await api('/api/agents/health');
  const redis = health.redis || {};
  const database = health.database || { backend: 'sqlite', detail: health.sqlite };
  showHealth(
    (database.detail && database.detail.status) || 'down',
    redis.status || 'disabled',
    redis.breaker ? redis.breaker.state : null,
    health.cache && health.cache.enabled ? health.cache.hit_rate : null,
    database.backend,
  );
}

// ---- metric cards and charts -------------------------------------------------------------------

const cardFormat = {
  active_agents: formatCount,
  executions_today: formatCount,
  success_rate: formatRate,
  avg_duration_ms: formatDuration,
  tokens: formatTokens,
  cost_usd: formatCost,
};

/** What a cost's source says: measured by Claude Code, estimated, or partly each. */
function costSourceText(cost) {
  if (cost.cost_source === 'telemetry') return 'measured';
  if (cost.estimated_cost_usd > 0 && cost.estimated_cost_usd < cost.cost_usd) {
    return `partly estimated (${formatCost(cost.estimated_cost_usd)})`;
  }
  return 'estimate';
}

async function refreshCards() {
  const metrics = await api('/api/agents/metrics/current?hours=' + state.hours);
  for (const node of document.querySelectorAll('.card .value')) {
    const key = node.dataset.metric;
    // Cost and tokens are the one truth (measured where Claude Code sent telemetry, else the
    // transcript estimate): `tokens_used_today` stays the transcripts' for the origin's clients.
    const value = key === 'cost_usd' ? metrics.cost.cost_usd
      : key === 'tokens' ? metrics.cost.tokens : metrics[key];
    node.dataset.value = value === null || value === undefined ? '' : String(value);
    node.textContent = cardFormat[key](value);
  }
  for (const id of ['cost-source', 'tokens-source']) {
    const source = $(id);
    source.dataset.source = metrics.cost.cost_source;
    source.textContent = costSourceText(metrics.cost);
  }
}

// ---- alerts ------------------------------------------------------------------------------------

/** The header's alert pill: how many episodes fire now, named in its tooltip. */
async function refreshAlerts() {
  const { firing } = await api('/api/alerts?limit=1');
  const pill = $('alerts-pill');
  pill.dataset.firing = String(firing.length);
  pill.textContent = firing.length === 0 ? 'no alerts'
    : `${firing.length} alert${firing.length === 1 ? '' : 's'} firing`;
  pill.title = firing.map((a) => a.text).join('\n') || 'alerts';
}

// ---- API usage (Claude Code's telemetry) -----------------------------------------------------

/** The share of prompt tokens read from the cache: cache reads over all tokens sent. */
function cacheHitRate(row) {
  const sent = row.input_tokens + row.cache_read_tokens + row.cache_creation_tokens;
  return sent ? row.cache_read_tokens / sent : null;
}

function usageTooltip(row) {
  const latency = row.latency_p50_ms === null ? ''
    : `, latency p50 ${formatDuration(row.latency_p50_ms)} p95 ${formatDuration(row.latency_p95_ms)}`;
  return `${row.key}: ${formatCost(row.cost_usd)} (${row.cost_source}), ${formatCount(row.requests)} requests, `
    + `${formatCount(row.errors)} errors, ${formatTokens(row.total_tokens)} tokens${latency}`;
}

/** After a cost: nothing when measured, `est.` when estimated, the measured share when mixed. */
function sourceMark(row) {
  if (row.cost_source === 'estimate') return ' est.';
  if (row.cost_source === 'mixed') return ` (${Math.round(row.measured_share * 100)}% measured)`;
  return '';
}

function costRows(rows) {
  return rows.filter((r) => r.cost_usd > 0 || r.requests > 0).slice(0, 12).map((r) => ({
    label: r.key,
    amount: r.cost_usd,
    figure: formatCost(r.cost_usd) + sourceMark(r),
    tooltip: usageTooltip(r),
  }));
}

async function refreshUsage() {
  const everyAgent = 'hours=' + state.hours;
  const range = everyAgent + (state.agent ? '&agent=' + encodeURIComponent(state.agent) : '');
  const [byModel, timeline, byAgent] = await Promise.all([
    api('/api/usage?group_by=model&' + range),
    api('/api/usage/timeline?' + range),
    api('/api/usage?group_by=agent&' + everyAgent),
  ]);
  drawRows($('cost-by-model'), costRows(byModel.rows));
  // Every agent's, whichever is picked: the split the picker chooses from.
  drawRows($('cost-by-agent'), costRows(byAgent.rows));
  // Spend rules' budgets (`--alerts`): used of the budget, and where the window is heading.
  if (byModel.budgets.length) {
    drawRows($('budgets'), byModel.budgets.map((b) => ({
      label: `${b.rule} · ${b.key}`,
      amount: b.budget ? Math.min(1, b.used_usd / b.budget_usd) : 0,
      figure: `${formatCost(b.used_usd)} of ${formatCost(b.budget_usd)}`,
      tooltip: `${b.rule} (${b.per} ${b.key}, ${b.window || ''}): ${formatCost(b.left_usd)} left, `
        + `${formatCost(b.projected_usd)} projected at the current rate`,
    })));
  } else {
    $('budgets').replaceChildren(el('div', { class: 'empty' }, 'no spend rules (--alerts)'));
  }
  const measured = byModel.rows.filter((r) => r.requests > 0 || r.cost_source === 'telemetry');
  drawRows($('cache-efficiency'), measured.filter((r) => cacheHitRate(r) !== null).map((r) => ({
    label: r.key,
    amount: cacheHitRate(r),
    figure: formatRate(cacheHitRate(r)),
    tooltip: `${r.key}: ${formatTokens(r.cache_read_tokens)} cache reads, `
      + `${formatTokens(r.cache_creation_tokens)} cache writes, ${formatTokens(r.input_tokens)} uncached input`,
  })));
  const all = measured.reduce((sum, r) => ({
    input_tokens: sum.input_tokens + r.input_tokens,
    cache_read_tokens: sum.cache_read_tokens + r.cache_read_tokens,
    cache_creation_tokens: sum.cache_creation_tokens + r.cache_creation_tokens,
  }), { input_tokens: 0, cache_read_tokens: 0, cache_creation_tokens: 0 });
  $('cache-overall').textContent = cacheHitRate(all) === null ? '' : `${formatRate(cacheHitRate(all))} read from cache`;

  const points = timeline.timeline;
  const when = (i) => new Date(points[i].timestamp_ms).toLocaleString();
  drawBars($('chart-api-requests'), points.map((p) => p.requests),
    (i) => `${when(i)}: ${formatCount(points[i].requests)} requests, ${formatCost(points[i].cost_usd)}`);
  drawBars($('chart-api-errors'), points.map((p) => p.errors),
    (i) => `${when(i)}: ${formatCount(points[i].errors)} API errors`);
  drawBars($('chart-api-latency'), points.map((p) => p.latency_p95_ms || 0),
    (i) => `${when(i)}: p50 ${formatDuration(points[i].latency_p50_ms)}, p95 ${formatDuration(points[i].latency_p95_ms)}`);
  const requests = points.reduce((n, p) => n + p.requests, 0);
  const errors = points.reduce((n, p) => n + p.errors, 0);
  $('api-summary').textContent = requests || errors
    ? `${formatCount(requests)} requests · ${formatCount(errors)} errors`
    : 'no telemetry in this range: hookwatch install --otel';

  // People are shown only to a reader with a token (the server answers 403 without one).
  if (!token) {
    $('cost-by-person').replaceChildren(el('div', { class: 'empty' },
      'shown only behind a read token (--read-token)'));
    return;
  }
  const byUser = await api('/api/usage?group_by=user&' + range);
  drawRows($('cost-by-person'), costRows(byUser.rows));
}

async function refreshTimeline() {
  const { timeline } = await api('/api/agents/metrics/timeline?hours=' + state.hours);
  const when = (i) => new Date(timeline[i].timestamp_ms).toLocaleString();
  drawBars($('chart-executions'), timeline.map((p) => p.executions),
    (i) => `${when(i)}: ${formatCount(timeline[i].executions)} executions`);
  drawBars($('chart-tokens'), timeline.map((p) => p.tokens),
    (i) => `${when(i)}: ${formatTokens(timeline[i].tokens)} tokens`);
  drawBars($('chart-cost'), timeline.map((p) => p.cost),
    (i) => `${when(i)}: ${formatCost(timeline[i].cost)}`);
  if (timeline.length) {
    const bucket = timeline.length > 1 ? timeline[1].timestamp_ms - timeline[0].timestamp_ms : 0;
    $('timeline-range').textContent = `${timeline.length} × ${formatDuration(bucket)}`;
  }
}

/** Horizontal bars: rows of [label, fraction of the widest, figure text, tooltip]. */
function drawRows(target, rows) {
  target.replaceChildren();
  if (!rows.length) {
    target.append(el('div', { class: 'empty' }, 'nothing in this range'));
    return;
  }
  const widest = Math.max(...rows.map((r) => r.amount), 1);
  for (const row of rows) {
    const fill = el('div', { class: 'fill' });
    fill.style.width = ((row.amount / widest) * 100).toFixed(1) + '%';
    const track = el('div', { class: 'track' });
    track.append(fill);
    const line = el('div', { class: 'row', title: row.tooltip });
    line.append(el('span', { class: 'label' }, row.label), track, el('span', { class: 'figure' }, row.figure));
    target.append(line);
  }
}

async function refreshDistribution() {
  const { distribution } = await api('/api/agents/types/distribution?hours=' + state.hours);
  drawRows($('distribution'), distribution.map((d) => ({
    label: d.type,
    amount: d.count,
    figure: `${formatCount(d.count)} · ${formatRate(d.percentage)}`,
    tooltip: `${d.type}: success ${formatRate(d.success_rate)}, avg ${formatDuration(d.avg_duration_ms)}`,
  })));
}

async function refreshTools() {
  const usage = await api('/api/agents/tools/usage?hours=' + state.hours);
  drawRows($('tools'), usage.tools.slice(0, 12).map((t) => ({
    label: t.name,
    amount: t.usage_count,
    figure: `${formatCount(t.usage_count)} · ${formatRate(t.percentage)}`,
    tooltip: `${t.name}: used by ${t.agent_types_using.join(', ')}`,
  })));
  for (const tool of usage.tools) addOption('tool', tool.name);
}

// ---- agents ------------------------------------------------------------------------------

function statusCell(status) {
  return el('td', { class: 'status', 'data-status': status }, status.replace('_', ' '));
}

/** A link to a session's trace (`/sessions/{id}`). */
function traceLink(sessionId, text) {
  const link = el('a', { href: '/sessions/' + encodeURIComponent(sessionId), class: 'trace-link',
    title: `the trace of session ${sessionId}` }, text);
  link.addEventListener('click', (e) => e.stopPropagation());
  return link;
}

function agentRow(agent, lastColumn) {
  const row = el('tr', { 'data-agent-id': agent.id, 'data-status': agent.status });
  const session = el('td', { title: agent.session_id });
  session.append(traceLink(agent.session_id, short(agent.session_id)));
  row.append(
    el('td', { title: agent.type }, agent.type),
    el('td', { title: agent.id }, short(agent.id)),
    session,
    el('td', { title: agent.source_app }, agent.source_app),
    el('td', {}, formatTime(agent.started_at)),
    lastColumn,
    statusCell(agent.status),
  );
  row.addEventListener('click', () => showAgent(agent.id));
  return row;
}

async function refreshAgents() {
  const [active, recent] = await Promise.all([
    api('/api/agents?status=active&limit=200'),
    api('/api/agents?status=all&limit=60'),
  ]);
  $('active-agents').replaceChildren(...active.agents.map((a) =>
    agentRow(a, el('td', {}, a.current_tool || '–'))));
  $('active-count').textContent = `(${active.agents.length})`;
  const finished = recent.agents.filter((a) => a.status !== 'running').slice(0, 20);
  $('finished-agents').replaceChildren(...finished.map((a) =>
    agentRow(a, el('td', {}, formatDuration(a.duration_ms)))));
  if (!active.agents.length) {
    $('active-agents').append(emptyRow(7, 'no agent is active'));
  }
}

function emptyRow(columns, text) {
  const row = el('tr', { class: 'empty' });
  row.append(el('td', { colspan: columns }, text));
  return row;
}

// ---- the event stream ------------------------------------------------------------------------

/** One line saying what an event is about. */
function summarize(event) {
  const p = event.payload || {};
  if (typeof event.summary === 'string' && event.summary) return event.summary;
  if (typeof p.prompt === 'string') return p.prompt;
  const input = p.tool_input || {};
  for (const key of ['command', 'file_path', 'pattern', 'url', 'description', 'query', 'prompt']) {
    if (typeof input[key] === 'string') return input[key];
  }
  for (const key of ['message', 'error', 'reason', 'source', 'agent_type', 'last_assistant_message']) {
    if (typeof p[key] === 'string') return p[key];
  }
  return '';
}

function toolOf(event) {
  return (event.payload && typeof event.payload.tool_name === 'string') ? event.payload.tool_name : '';
}

function matches(event) {
  const f = state.filters;
  if (f.app && event.source_app !== f.app) return false;
  if (f.session_id && event.session_id !== f.session_id) return false;
  if (f.event_type && event.hook_event_type !== f.event_type) return false;
  if (f.tool && toolOf(event) !== f.tool) return false;
  if (f.q && !JSON.stringify(event).toLowerCase().includes(f.q.toLowerCase())) return false;
  return true;
}

function eventRow(event) {
  const row = el('tr', { 'data-event-id': event.event_id, 'data-type': event.hook_event_type });
  const text = summarize(event);
  const session = el('td', { title: event.session_id });
  session.append(traceLink(event.session_id, short(event.session_id)));
  row.append(
    el('td', {}, formatTime(event.timestamp)),
    el('td', { title: event.source_app }, event.source_app),
    session,
    el('td', { title: event.hook_event_type }, event.hook_event_type),
    el('td', { title: toolOf(event) || '' }, toolOf(event) || ''),
    el('td', { class: 'summary', title: text.slice(0, 500) }, text.slice(0, 300)),
  );
  row.addEventListener('click', () => showEvent(event));
  return row;
}

/** Adds events (oldest first) at the top of the table, keeping at most `maxRows` rows. */
function showEvents(events) {
  const body = $('events');
  const fresh = events.filter((e) => !state.shown.has(e.event_id) && matches(e));
  if (!fresh.length) return;
  const fragment = document.createDocumentFragment();
  for (let i = fresh.length - 1; i >= 0; i -= 1) {
    fragment.append(eventRow(fresh[i]));
    state.shown.add(fresh[i].event_id);
  }
  body.prepend(fragment);
  trimRows();
}

function trimRows() {
  const body = $('events');
  while (body.rows.length > state.maxRows) {
    const last = body.lastElementChild;
    state.shown.delete(last.dataset.eventId);
    last.remove();
  }
  $('stream-count').textContent = `(${body.rows.length} shown` +
    (state.paused ? `, paused: ${state.pending.length + state.pendingDropped} new` : '') + ')';
}

function receive(event) {
  notePulse(Date.now());
  noteOptions(event);
  if (state.paused) {
    state.pending.push(event);
    if (state.pending.length > state.maxRows) {
      state.pending.shift();
      state.pendingDropped += 1;
    }
    trimRows();
    return;
  }
  showEvents([event]);
}

let reloads = 0;

/** Refills the table from the API with what matches the filters. */
async function reloadEvents() {
  const reload = ++reloads;
  const params = new URLSearchParams({ limit: String(Math.min(state.maxRows, 1000)), order: 'desc' });
  for (const [key, value] of Object.entries(state.filters)) if (value) params.set(key, value);
  const page = await api('/events?' + params);
  if (reload !== reloads) return; // a newer reload (the user kept typing) wins
  $('events').replaceChildren();
  state.shown.clear();
  showEvents(page.events.slice().reverse());
}

function addOption(name, value) {
  if (!value) return;
  const select = document.querySelector(`#filters select[name="${name}"]`);
  for (const option of select.options) if (option.value === value) return;
  if (select.options.length > 500) return; // a bounded list; the search box finds the rest
  select.append(el('option', { value }, value));
}

function noteOptions(event) {
  addOption('app', event.source_app);
  addOption('session_id', event.session_id);
  addOption('event_type', event.hook_event_type);
  addOption('tool', toolOf(event));
}

async function refreshOptions() {
  const options = await api('/events/filter-options');
  options.source_apps.forEach((v) => addOption('app', v));
  options.session_ids.forEach((v) => addOption('session_id', v));
  options.hook_event_types.forEach((v) => addOption('event_type', v));
}

function setPaused(paused) {
  state.paused = paused;
  const button = $('pause');
  button.setAttribute('aria-pressed', String(paused));
  button.textContent = paused ? 'Resume' : 'Pause';
  if (!paused) {
    const pending = state.pending;
    const dropped = state.pendingDropped;
    state.pending = [];
    state.pendingDropped = 0;
    if (dropped) reloadEvents().catch((e) => console.warn(e.message));
    else showEvents(pending);
  }
  trimRows();
}

// ---- live pulse ----------------------------------------------------------------------------------

function notePulse(at) {
  state.pulse.push(at);
  if (state.pulse.length > PULSE_MAX_SAMPLES) state.pulse.splice(0, state.pulse.length - PULSE_MAX_SAMPLES);
}

function drawPulse() {
  const now = Date.now();
  const since = now - PULSE_WINDOW_MS;
  let first = 0;
  while (first < state.pulse.length && state.pulse[first] < since) first += 1;
  if (first) state.pulse.splice(0, first);
  const within = (ms) => state.pulse.filter((t) => t >= now - ms).length;
  $('pulse-1').textContent = formatCount(within(60000));
  $('pulse-5').textContent = formatCount(within(300000));
  $('pulse-10').textContent = formatCount(state.pulse.length);
  const buckets = new Array(PULSE_WINDOW_MS / PULSE_BUCKET_MS).fill(0);
  for (const t of state.pulse) {
    const index = buckets.length - 1 - Math.floor((now - t) / PULSE_BUCKET_MS);
    if (index >= 0) buckets[index] += 1;
  }
  drawBars($('chart-pulse'), buckets,
    (i) => `${buckets[i]} events, ${(buckets.length - i) * 10} s ago`);
}

// ---- detail views ------------------------------------------------------------------------------

function openDetail(title, ...children) {
  $('detail-title').textContent = title;
  $('detail-body').replaceChildren(...children);
  const dialog = $('detail');
  if (!dialog.open) dialog.showModal();
}

function facts(pairs) {
  const list = el('dl', { class: 'facts' });
  for (const [name, value] of pairs) list.append(el('dt', {}, name), el('dd', {}, value));
  return list;
}

function showEvent(event) {
  const parts = [
    facts([
      ['event id', event.event_id],
      ['time', formatDateTime(event.timestamp)],
      ['session', event.session_id],
    ]),
  ];
  if (typeof event.chat_bytes === 'number') {
    // The conversation is stored apart (it can be megabytes): read it when asked for.
    const button = el('button', { id: 'detail-chat-open', type: 'button' },
      `Show the conversation (${formatBytes(event.chat_bytes)})`);
    const chat = el('div', { id: 'detail-chat', class: 'chat' });
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        showChat(chat, await api(`/events/${encodeURIComponent(event.id)}/chat`));
        button.remove();
      } catch (e) {
        chat.replaceChildren(el('p', { class: 'error' }, e.message));
        button.disabled = false;
      }
    });
    parts.push(button, chat);
  }
  parts.push(traceLink(event.session_id, 'Open the session trace'));
  parts.push(el('pre', { class: 'json', id: 'detail-json' }, JSON.stringify(event, null, 2)));
  openDetail(`${event.hook_event_type} · ${event.source_app}`, ...parts);
}

function formatBytes(n) {
  if (n >= 1024 * 1024) return (n / 1024 / 1024).toFixed(1) + ' MB';
  if (n >= 1024) return (n / 1024).toFixed(0) + ' KB';
  return n + ' B';
}

/** The most messages of a conversation the detail view shows (the newest). */
const MAX_CHAT_MESSAGES = 500;

/** One transcript entry's text: its message's content, whatever shape it has. */
function chatText(entry) {
  const message = entry && typeof entry === 'object' ? (entry.message || entry) : entry;
  const content = message && typeof message === 'object' ? message.content : message;
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return JSON.stringify(content === undefined ? entry : content);
  return content.map((part) => {
    if (!part || typeof part !== 'object') return String(part);
    if (part.type === 'text') return part.text;
    if (part.type === 'tool_use') return `[${part.name}] ${JSON.stringify(part.input)}`;
    if (part.type === 'tool_result') {
      return '[result] ' + (typeof part.content === 'string' ? part.content : JSON.stringify(part.content));
    }
    if (part.type === 'thinking') return '[thinking] ' + (part.thinking || '');
    return JSON.stringify(part);
  }).join('\n');
}

/** Renders a conversation (the transcript's entries) as messages; every text is textContent. */
function showChat(target, chat) {
  const entries = Array.isArray(chat) ? chat : [chat];
  const shown = entries.slice(-MAX_CHAT_MESSAGES);
  const nodes = [];
  if (shown.length < entries.length) {
    nodes.push(el('p', { class: 'muted' }, `the newest ${shown.length} of ${entries.length} messages`));
  }
  for (const entry of shown) {
    const role = (entry && entry.message && entry.message.role) || (entry && entry.type) || 'entry';
    const message = el('div', { class: 'chat-message', 'data-role': role });
    message.append(el('div', { class: 'chat-role' }, role), el('div', { class: 'chat-text' }, chatText(entry)));
    nodes.push(message);
  }
  target.replaceChildren(...nodes);
}

// ---- human in the loop ------------------------------------------------------------------------

/** What a request's tool call would do, in a line. */
function toolCallText(event) {
  const p = event.payload || {};
  if (typeof p.tool_name !== 'string') return '';
  const input = p.tool_input && typeof p.tool_input === 'object' ? p.tool_input : {};
  const detail = ['command', 'file_path', 'url', 'pattern', 'description']
    .map((key) => input[key]).find((value) => typeof value === 'string');
  return detail === undefined ? p.tool_name : `${p.tool_name}: ${detail}`;
}

/** One pending request: its question, where it comes from, its tool call, and the answers. */
function pendingItem(event) {
  const request = event.humanInTheLoop || {};
  const item = el('div', { class: 'request', 'data-event-id': event.id });
  const answered = el('p', { class: 'request-error' });
  const send = async (answer) => {
    for (const button of item.querySelectorAll('button, input')) button.disabled = true;
    try {
      await apiPost(`/events/${encodeURIComponent(event.id)}/respond`, answer);
      item.remove();
      refreshPendingSoon();
    } catch (e) {
      answered.textContent = e.message;
      for (const button of item.querySelectorAll('button, input')) button.disabled = false;
    }
  };
  const actions = el('div', { class: 'request-actions' });
  if (request.type === 'choice' && Array.isArray(request.choices)) {
    for (const choice of request.choices.slice(0, 20)) {
      const button = el('button', { type: 'button', 'data-choice': choice }, choice);
      button.addEventListener('click', () => send({ choice: String(choice) }));
      actions.append(button);
    }
  } else if (request.type === 'question') {
    const input = el('input', { type: 'text', 'aria-label': 'answer' });
    const button = el('button', { type: 'button', 'data-answer': 'send' }, 'Send');
    button.addEventListener('click', () => send({ response: input.value }));
    actions.append(input, button);
  } else {
    const allow = el('button', { type: 'button', 'data-answer': 'allow', class: 'allow' }, 'Allow');
    const deny = el('button', { type: 'button', 'data-answer': 'deny', class: 'deny' }, 'Deny');
    allow.addEventListener('click', () => send({ permission: true }));
    deny.addEventListener('click', () => send({ permission: false }));
    actions.append(allow, deny);
  }
  item.append(
    el('div', { class: 'request-question' }, String(request.question || 'A permission request')),
    el('div', { class: 'request-from muted' },
      `${event.source_app} · ${short(event.session_id)} · ${formatTime(event.timestamp)}`),
    el('div', { class: 'request-tool' }, toolCallText(event)),
    actions,
    answered,
  );
  return item;
}

async function refreshPending() {
  const answer = await api('/api/hitl/pending');
  const requests = Array.isArray(answer.requests) ? answer.requests : [];
  $('pending').hidden = requests.length === 0;
  $('pending-count').textContent = requests.length ? `(${requests.length})` : '';
  $('pending-list').replaceChildren(...requests.map(pendingItem));
}

async function showAgent(id) {
  const agent = await api('/api/agents/' + encodeURIComponent(id));
  const activity = el('div', { id: 'detail-activity' }, 'loading…');
  const calls = el('table', { class: 'calls' });
  const head = el('tr');
  for (const name of ['Tool', 'Status', 'Started', 'Duration', 'Error']) head.append(el('th', {}, name));
  calls.append(el('thead'), el('tbody'));
  calls.tHead.append(head);
  for (const call of agent.tool_calls) {
    const row = el('tr');
    row.append(
      el('td', { title: call.tool_name }, call.tool_name),
      statusCell(call.status),
      el('td', {}, formatTime(call.started_at)),
      el('td', {}, formatDuration(call.duration_ms)),
      el('td', { title: call.error || '' }, call.error || ''),
    );
    calls.tBodies[0].append(row);
  }
  openDetail(
    `${agent.type} agent ${agent.id}`,
    facts([
      ['status', agent.status.replace('_', ' ')],
      ['session', agent.session_id],
      ['app', agent.source_app],
      ['started', formatDateTime(agent.started_at)],
      ['ended', formatDateTime(agent.ended_at)],
      ['last seen', formatDateTime(agent.last_seen)],
      ['duration', formatDuration(agent.duration_ms)],
      ['model', agent.model || '–'],
      ['tokens', formatCount(agent.telemetry ? agent.telemetry.tokens.total : agent.tokens.total)],
      ['cost', `${formatCost(agent.cost_usd)} (${agent.cost_source === 'telemetry' ? 'measured' : 'estimate'})`],
      ['API requests', agent.telemetry ? formatCount(agent.telemetry.requests) : '–'],
      ['description', agent.description || '–'],
      ['error', agent.error || '–'],
    ]),
    traceLink(agent.session_id, 'Open the session trace'),
    el('h2', {}, `Tool calls (${agent.tool_calls.length})`),
    calls,
    el('h2', {}, 'API requests between tool calls'),
    activity,
  );
  try {
    const { activity: steps } = await api(`/api/sessions/${encodeURIComponent(agent.session_id)}/activity`);
    showActivity(activity, steps.filter((s) => s.agent_id === agent.id));
  } catch (e) {
    activity.replaceChildren(el('p', { class: 'error' }, e.message));
  }
}

/** An agent's steps: each tool call, and between them one line per run of API requests. */
function showActivity(target, steps) {
  if (!steps.length) {
    target.replaceChildren(el('p', { class: 'empty' },
      'no API requests or tool calls known: telemetry comes from `hookwatch install --otel`'));
    return;
  }
  const table = el('table', { class: 'activity' });
  const body = el('tbody');
  table.append(body);
  let run = [];
  const flush = () => {
    if (!run.length) return;
    const requests = run.filter((s) => s.kind === 'api_request');
    const errors = run.length - requests.length;
    const cost = requests.reduce((n, s) => n + s.cost_usd, 0);
    const tokens = requests.reduce((n, s) => n + s.tokens.total, 0);
    const time = run.reduce((n, s) => n + (s.duration_ms || 0), 0);
    const models = [...new Set(run.map((s) => s.model).filter(Boolean))].join(', ');
    const row = el('tr', { class: 'api-run', 'data-requests': requests.length, 'data-errors': errors });
    row.append(
      el('td', {}, formatTime(run[0].at_ms)),
      el('td', {}, `${requests.length} API request${requests.length === 1 ? '' : 's'}`
        + (errors ? ` · ${errors} error${errors === 1 ? '' : 's'}` : '')),
      el('td', {}, models),
      el('td', {}, `${formatCost(cost)} · ${formatTokens(tokens)} tokens · ${formatDuration(time)}`),
    );
    row.title = run.map((s) => s.kind === 'api_error'
      ? `error ${s.status_code || ''} after ${s.attempt || 1} attempts: ${s.error || ''}`
      : `${s.model || 'model?'} ${formatCost(s.cost_usd)} ${formatDuration(s.duration_ms)}`).join('\n');
    body.append(row);
    run = [];
  };
  for (const step of steps) {
    if (step.kind !== 'tool') {
      run.push(step);
      continue;
    }
    flush();
    const row = el('tr', { class: 'tool-step', 'data-tool-use-id': step.tool_use_id || '' });
    row.append(
      el('td', {}, formatTime(step.at_ms)),
      el('td', {}, step.tool_name),
      statusCell(step.status),
      el('td', {}, formatDuration(step.duration_ms)
        + (step.decision ? ` · ${step.decision} (${step.decision_source || '?'})` : '')),
    );
    body.append(row);
  }
  flush();
  target.replaceChildren(table);
}

// ---- refresh scheduling ----------------------------------------------------------------------

const refreshViews = throttle(() => Promise.all([
  refreshCards(), refreshTimeline(), refreshDistribution(), refreshTools(), refreshUsage(),
  refreshAlerts(),
]), 1000);
const refreshAlertsSoon = throttle(refreshAlerts, 300);
const refreshAgentsSoon = throttle(refreshAgents, 300);
const refreshHealthSoon = throttle(refreshHealth, 1000);
const refreshPendingSoon = throttle(refreshPending, 300);

function refreshAll() {
  refreshViews();
  refreshAgentsSoon();
  refreshHealthSoon();
  refreshPendingSoon();
  refreshOptions().catch((e) => console.warn(e.message));
}

const AGENT_EVENTS = new Set(['SessionStart', 'SessionEnd', 'SubagentStart', 'SubagentStop',
  'PreToolUse', 'PostToolUse', 'PostToolUseFailure', 'Stop', 'UserPromptSubmit']);

// ---- the WebSocket -------------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const url = `${scheme}://${location.host}/stream` + (token ? '?token=' + encodeURIComponent(token) : '');
  const socket = new WebSocket(url);
  state.socket = socket;
  socket.addEventListener('open', () => {
    state.backoffMs = 500;
    state.connected = true;
    setConnection('live');
  });
  socket.addEventListener('message', (message) => {
    let parsed;
    try { parsed = JSON.parse(message.data); } catch (_) { return; }
    handle(parsed);
  });
  socket.addEventListener('close', () => {
    if (state.socket !== socket) return;
    state.connected = false;
    setConnection('reconnecting');
    setTimeout(connect, state.backoffMs);
    state.backoffMs = Math.min(state.backoffMs * 2, 5000);
  });
}

function handle(message) {
  switch (message.type) {
    case 'initial': {
      const events = Array.isArray(message.data) ? message.data : [];
      for (const event of events) {
        noteOptions(event);
        if (Date.now() - event.timestamp < PULSE_WINDOW_MS && !state.shown.has(event.event_id)) {
          notePulse(event.timestamp);
        }
      }
      state.pulse.sort((a, b) => a - b);
      drawPulse();
      if (!state.paused) showEvents(events);
      refreshAll(); // after a reconnect, everything may have moved on
      break;
    }
    case 'event':
      receive(message.data);
      if (AGENT_EVENTS.has(message.data.hook_event_type)) refreshAgentsSoon();
      if (message.data.humanInTheLoop) refreshPendingSoon();
      break;
    case 'agent':
      refreshAgentsSoon();
      break;
    case 'metrics':
      refreshViews();
      break;
    case 'alert':
      refreshAlertsSoon();
      refreshViews(); // budgets and cost moved with it
      break;
    case 'health':
      showHealth(message.data.sqlite, message.data.redis, message.data.breaker, undefined,
        message.data.database || 'sqlite');
      refreshHealthSoon();
      break;
    case 'lagged':
      // Missed messages: the table may have holes, so reload it (unless the user paused it).
      if (!state.paused) reloadEvents().catch((e) => console.warn(e.message));
      refreshAll();
      break;
    default:
      break; // newer message types are ignored
  }
}

// ---- wiring ----------------------------------------------------------------------------------

function selectRange(hours) {
  state.hours = hours;
  localStorage.setItem(RANGE_KEY, String(hours));
  for (const button of document.querySelectorAll('.ranges button')) {
    button.setAttribute('aria-pressed', String(Number(button.dataset.hours) === hours));
  }
  refreshViews();
}

function start() {
  for (const button of document.querySelectorAll('.ranges button')) {
    button.addEventListener('click', () => selectRange(Number(button.dataset.hours)));
  }
  const agentFilter = $('agent-filter');
  agentFilter.value = state.agent;
  agentFilter.addEventListener('change', () => {
    state.agent = agentFilter.value;
    refreshUsage().catch((e) => console.warn(e.message));
  });
  selectRange(state.hours);

  const form = $('filters');
  form.rows.value = String(state.maxRows);
  const applyFilters = () => {
    for (const key of Object.keys(state.filters)) state.filters[key] = form[key].value.trim();
    reloadEvents().catch((e) => console.warn(e.message));
  };
  let searchTimer = null;
  form.addEventListener('input', (e) => {
    if (e.target.name === 'rows') return;
    clearTimeout(searchTimer);
    searchTimer = setTimeout(applyFilters, e.target.name === 'q' ? 250 : 0);
  });
  form.rows.addEventListener('change', () => {
    state.maxRows = clampRows(form.rows.value);
    form.rows.value = String(state.maxRows);
    localStorage.setItem(ROWS_KEY, String(state.maxRows));
    trimRows();
  });
  form.addEventListener('submit', (e) => e.preventDefault());
  $('pause').addEventListener('click', () => setPaused(!state.paused));

  setInterval(drawPulse, 1000);
  setInterval(refreshAll, 30000);
  // Claude Code's telemetry arrives without hook events to announce it.
  setInterval(refreshViews, 15000);
  drawPulse();
  connect();
}

start();
