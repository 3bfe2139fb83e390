// hookwatch session trace: one session as a waterfall of timed spans, live (after
// `common.js`).
//
// The tree comes from `GET /api/sessions/{id}/trace` (built by the server from the session's
// rows); the `/stream` WebSocket, filtered to this session, says when to fetch it again.
// Only the rows in view are in the DOM (a session can have tens of thousands of spans), each
// a fixed height, placed over a spacer as tall as all the rows. Span names, prompts, tool
// input and output are untrusted text: they reach the DOM only through `textContent`.
'use strict';

const ROW_HEIGHT = 22;
const OVERSCAN = 10;
const sessionId = decodeURIComponent(location.pathname.replace(/^\/sessions\//, ''));

const state = {
  spans: [], // as the API answered, in start order
  byId: new Map(),
  children: new Map(), // span_id → child spans, in start order
  collapsed: new Set(),
  visible: [], // [{span, depth}] in display order
  critical: new Set(),
  criticalOnly: false,
  selected: null,
  t0: 0,
  t1: 1,
  renderQueued: false,
  backoffMs: 500,
};

// ---- the tree --------------------------------------------------------------------------------

/** A span's end for layout: an open span runs until now. */
function endOf(span) {
  return span.end_ms === null ? Math.max(Date.now(), span.start_ms) : span.end_ms;
}

function setTrace(trace) {
  state.spans = trace.spans;
  state.byId = new Map(trace.spans.map((s) => [s.span_id, s]));
  state.children = new Map();
  for (const span of trace.spans) {
    if (span.parent_id === null) continue;
    if (!state.children.has(span.parent_id)) state.children.set(span.parent_id, []);
    state.children.get(span.parent_id).push(span);
  }
  state.t0 = Math.min(...trace.spans.map((s) => s.start_ms));
  state.t1 = Math.max(...trace.spans.map(endOf), state.t0 + 1);
  state.critical = criticalPath(trace.spans.find((s) => s.parent_id === null));
  layout();
  const root = trace.spans.find((s) => s.parent_id === null);
  const errors = trace.spans.filter((s) => s.status === 'error').length;
  $('trace-summary').textContent = `${trace.spans.length} spans · ${formatDuration(state.t1 - state.t0)}`
    + (root && root.cost_usd !== null ? ` · ${formatCost(root.cost_usd)} (${root.cost_source})` : '')
    + (errors ? ` · ${errors} error${errors === 1 ? '' : 's'}` : '');
  drawAxis();
  if (state.selected && state.byId.has(state.selected)) showDetail(state.byId.get(state.selected));
}

/**
 * The critical path (see the note on the page): inside a span, walk back from its end: the
 * child that finished last, then the child that finished last before that one started, and
 * so on; the same inside each chosen child. Events have no duration and are left out.
 */
function criticalPath(root) {
  const marked = new Set();
  if (!root) return marked;
  const stack = [root];
  while (stack.length) {
    const span = stack.pop();
    marked.add(span.span_id);
    const kids = (state.children.get(span.span_id) || [])
      .filter((c) => c.kind !== 'event')
      .sort((a, b) => endOf(b) - endOf(a));
    let cursor = Infinity;
    for (const child of kids) {
      if (endOf(child) <= cursor) {
        stack.push(child);
        cursor = child.start_ms;
      }
    }
  }
  return marked;
}

/** The rows shown: a depth-first walk that skips collapsed subtrees (and, when asked, every
 * span off the critical path). */
function layout() {
  const rows = [];
  const roots = state.spans.filter((s) => s.parent_id === null || !state.byId.has(s.parent_id));
  const stack = roots.slice().reverse().map((span) => ({ span, depth: 0 }));
  while (stack.length) {
    const { span, depth } = stack.pop();
    if (state.criticalOnly && !state.critical.has(span.span_id)) continue;
    rows.push({ span, depth });
    if (state.collapsed.has(span.span_id)) continue;
    const kids = state.children.get(span.span_id) || [];
    for (let i = kids.length - 1; i >= 0; i--) stack.push({ span: kids[i], depth: depth + 1 });
  }
  state.visible = rows;
  $('waterfall-spacer').style.height = rows.length * ROW_HEIGHT + 'px';
  queueRender();
}

// ---- drawing ---------------------------------------------------------------------------------

function queueRender() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  requestAnimationFrame(() => {
    state.renderQueued = false;
    render();
  });
}

function percent(ms) {
  return ((ms - state.t0) / (state.t1 - state.t0)) * 100;
}

/** Draws the rows in view (and a few either side) and nothing else. */
function render() {
  const box = $('waterfall');
  const first = Math.max(0, Math.floor(box.scrollTop / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(state.visible.length, Math.ceil((box.scrollTop + box.clientHeight) / ROW_HEIGHT) + OVERSCAN);
  const rows = [];
  for (let i = first; i < last; i++) rows.push(row(state.visible[i], i));
  $('waterfall-rows').replaceChildren(...rows);
}

function row({ span, depth }, index) {
  const kids = state.children.get(span.span_id) || [];
  const line = el('div', {
    class: 'span-row',
    'data-span-id': span.span_id,
    'data-kind': span.kind,
    'data-status': span.status,
    'data-depth': depth,
    'data-critical': state.critical.has(span.span_id) ? 'true' : null,
    'aria-selected': state.selected === span.span_id ? 'true' : null,
  });
  line.style.top = index * ROW_HEIGHT + 'px';
  const name = el('div', { class: 'span-name' });
  name.style.paddingLeft = depth * 14 + 'px';
  const toggle = el('button', {
    type: 'button',
    class: 'toggle',
    'aria-label': state.collapsed.has(span.span_id) ? 'expand' : 'collapse',
    'aria-expanded': kids.length ? String(!state.collapsed.has(span.span_id)) : null,
  }, kids.length ? (state.collapsed.has(span.span_id) ? '▸' : '▾') : '');
  if (kids.length) {
    toggle.addEventListener('click', (e) => {
      e.stopPropagation();
      if (state.collapsed.has(span.span_id)) state.collapsed.delete(span.span_id);
      else state.collapsed.add(span.span_id);
      layout();
    });
  }
  name.append(toggle, el('span', { class: 'kind' }, span.kind), el('span', { class: 'label', title: span.name }, span.name));
  const figures = el('div', { class: 'span-figures' },
    span.tokens ? `${formatTokens(span.tokens.total)} · ${costText(span.cost_usd)}` : '');
  const track = el('div', { class: 'span-track' });
  const bar = el('div', { class: 'span-bar', title: `${span.name}: ${formatDuration(endOf(span) - span.start_ms)}` });
  const left = Math.min(percent(span.start_ms), 99.8);
  bar.style.left = left + '%';
  // An open span runs to now, which moves on past the axis's end until the next load.
  bar.style.width = Math.min(100 - left, Math.max(0.2, percent(endOf(span)) - left)) + '%';
  if (span.end_ms === null) bar.classList.add('open');
  track.append(bar);
  line.append(name, figures, track);
  line.addEventListener('click', () => {
    state.selected = span.span_id;
    showDetail(span);
    queueRender();
  });
  return line;
}

function drawAxis() {
  const axis = $('axis');
  const ticks = [];
  for (let i = 0; i <= 4; i++) {
    const tick = el('span', { class: 'tick' }, '+' + formatDuration(((state.t1 - state.t0) * i) / 4));
    tick.style.left = i * 25 + '%';
    ticks.push(tick);
  }
  axis.replaceChildren(...ticks);
}

// ---- details ---------------------------------------------------------------------------------

function facts(pairs) {
  const list = el('dl', { class: 'facts' });
  for (const [name, value] of pairs) {
    if (value === null || value === undefined || value === '') continue;
    list.append(el('dt', {}, name), el('dd', {}, value));
  }
  return list;
}

/** A cost, or nothing where there is none. */
function costText(usd) {
  return usd === null || usd === undefined ? '' : formatCost(usd);
}

async function showDetail(span) {
  const body = $('span-detail-body');
  const parts = [
    facts([
      ['kind', span.kind],
      ['name', span.name],
      ['status', span.status],
      ['error', span.error],
      ['start', new Date(span.start_ms).toLocaleString()],
      ['duration', span.end_ms === null ? 'running' : formatDuration(span.end_ms - span.start_ms)],
      ['agent', span.agent_id],
      ['tool_use_id', span.tool_use_id],
      ['tokens', span.tokens ? `${span.tokens.total} (input ${span.tokens.input}, output ${span.tokens.output}, `
        + `cache read ${span.tokens.cache_read}, cache write ${span.tokens.cache_creation})` : null],
      ['cost', span.cost_usd === null ? null : `${formatCost(span.cost_usd)} (${span.cost_source})`],
    ]),
  ];
  const attributes = Object.entries(span.attributes || {});
  if (span.attributes && typeof span.attributes.prompt === 'string') {
    parts.push(el('h3', {}, 'Prompt'), el('pre', { class: 'json', id: 'span-prompt' }, span.attributes.prompt));
  }
  if (attributes.length) {
    parts.push(el('h3', {}, 'Attributes'),
      el('pre', { class: 'json', id: 'span-attributes' }, JSON.stringify(span.attributes, null, 2)));
  }
  const io = el('div', { id: 'span-io' });
  parts.push(io);
  body.replaceChildren(...parts);
  if (span.kind === 'tool' && span.tool_use_id) {
    // The call's input and its result are in its hook events.
    try {
      const page = await api(`/events?session_id=${encodeURIComponent(sessionId)}`
        + `&q=${encodeURIComponent(span.tool_use_id)}&limit=20`);
      const events = (page.events || page).filter((e) => e.payload && e.payload.tool_use_id === span.tool_use_id);
      const input = events.map((e) => e.payload.tool_input).find((v) => v !== undefined);
      const result = events.map((e) => e.payload.tool_response ?? e.payload.error).find((v) => v !== undefined);
      io.replaceChildren(
        el('h3', {}, 'Input'), el('pre', { class: 'json', id: 'span-input' }, JSON.stringify(input ?? null, null, 2)),
        el('h3', {}, 'Result'), el('pre', { class: 'json', id: 'span-result' }, JSON.stringify(result ?? null, null, 2)),
      );
    } catch (e) {
      io.replaceChildren(el('p', { class: 'error' }, e.message));
    }
  }
}

// ---- loading and live updates ----------------------------------------------------------------

let loading = null;
let again = false;
async function load() {
  if (loading) { again = true; return; }
  loading = (async () => {
    try {
      setTrace(await api(`/api/sessions/${encodeURIComponent(sessionId)}/trace`));
    } catch (e) {
      $('trace-summary').textContent = e.message;
    }
  })();
  await loading;
  loading = null;
  if (again) { again = false; setTimeout(load, 200); }
}

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const params = new URLSearchParams({ session_id: sessionId });
  if (token) params.set('token', token);
  const socket = new WebSocket(`${scheme}://${location.host}/stream?${params}`);
  socket.addEventListener('open', () => {
    state.backoffMs = 500;
    $('connection').dataset.state = 'live';
    $('connection').textContent = 'live';
  });
  socket.addEventListener('message', (message) => {
    let parsed;
    try { parsed = JSON.parse(message.data); } catch (_) { return; }
    if (['event', 'agent', 'lagged', 'initial'].includes(parsed.type)) load();
  });
  socket.addEventListener('close', () => {
    $('connection').dataset.state = 'reconnecting';
    $('connection').textContent = 'reconnecting';
    setTimeout(connect, state.backoffMs);
    state.backoffMs = Math.min(state.backoffMs * 2, 5000);
  });
}

function start() {
  $('session-id').textContent = sessionId;
  document.title = `hookwatch · ${sessionId}`;
  $('waterfall').addEventListener('scroll', queueRender, { passive: true });
  window.addEventListener('resize', queueRender);
  $('critical-only').addEventListener('change', (e) => {
    state.criticalOnly = e.target.checked;
    layout();
  });
  load();
  connect();
  // Open spans grow, and Claude Code's telemetry arrives without hook events to announce it.
  setInterval(() => {
    if (state.spans.some((s) => s.end_ms === null)) load();
  }, 5000);
}

start();
