// hookwatch team page (after `common.js`): each person's Claude Code use per day or week from
// `GET /api/team`, as a table and as charts over time (everyone, or the person picked), with
// the same answer as CSV. People's names are text from telemetry: `textContent` only.
'use strict';

/** The address's range and bucket, passed through to the API (`?bucket=&hours=` or `start=&end=`). */
function teamQuery() {
  const params = new URLSearchParams();
  for (const key of ['bucket', 'hours', 'start', 'end']) {
    if (query.has(key)) params.set(key, query.get(key));
  }
  return params;
}

/** The text of the CSV last downloaded (kept for the page's test). */
let lastCsv = null;
let answer = null;

/** Every bucket start of the answer's range, so a chart has a bar for each, empty or not. */
function bucketStarts(team) {
  const starts = [];
  for (let t = team.range.start; t < team.range.end; t += team.bucket_ms) starts.push(t);
  return starts;
}

/** Per bucket start, the sums of the people shown (everyone, or the one picked). */
function sumsByBucket(team, person) {
  const byStart = new Map();
  for (const p of team.people) {
    if (person && p.person !== person) continue;
    for (const b of p.buckets) {
      const sum = byStart.get(b.start) || {};
      for (const [key, value] of Object.entries(b)) {
        if (key !== 'start') sum[key] = (sum[key] || 0) + value;
      }
      byStart.set(b.start, sum);
    }
  }
  return byStart;
}

const charts = [
  ['chart-cost', (s) => s.cost_usd || 0, formatCost],
  ['chart-tokens', (s) => s.total_tokens || 0, (n) => formatTokens(n) + ' tokens'],
  ['chart-sessions', (s) => s.sessions || 0, (n) => formatCount(n) + ' sessions'],
  ['chart-prompts', (s) => s.prompts || 0, (n) => formatCount(n) + ' prompts'],
  ['chart-lines', (s) => (s.lines_added || 0) + (s.lines_removed || 0), (n) => formatCount(n) + ' lines'],
  ['chart-commits', (s) => (s.commits || 0) + (s.pull_requests || 0), (n) => formatCount(n) + ' commits and PRs'],
  ['chart-active', (s) => (s.active_time_user_s || 0) + (s.active_time_cli_s || 0), (n) => formatDuration(n * 1000)],
  ['chart-edits', (s) => (s.edits_accepted || 0) + (s.edits_rejected || 0), (n) => formatCount(n) + ' decisions'],
];

function drawCharts() {
  const person = $('person').value;
  const starts = bucketStarts(answer);
  const sums = sumsByBucket(answer, person);
  const day = (t) => new Date(t).toISOString().slice(0, 10);
  for (const [id, value, format] of charts) {
    const values = starts.map((t) => value(sums.get(t) || {}));
    drawBars($(id), values, (i) => `${answer.bucket} of ${day(starts[i])}: ${format(values[i])}`);
  }
}

function ratio(user, cli) {
  return user > 0 ? (cli / user).toFixed(1) + '×' : '–';
}

function personRow(p) {
  const t = p.totals;
  const row = el('tr', { 'data-person': p.person });
  for (const text of [
    p.person || '(not named)',
    formatCost(t.cost_usd),
    formatTokens(t.total_tokens),
    formatCount(t.sessions),
    formatCount(t.prompts),
    formatCount(t.api_errors),
    `${formatDuration(t.active_time_user_s * 1000)} / ${formatDuration(t.active_time_cli_s * 1000)}`,
    `+${formatCount(t.lines_added)} / −${formatCount(t.lines_removed)}`,
    formatCount(t.commits),
    formatCount(t.pull_requests),
    `${formatCount(t.edits_accepted)} / ${formatCount(t.edits_rejected)}`,
    ratio(t.active_time_user_s, t.active_time_cli_s),
  ]) {
    row.append(el('td', { title: text }, text));
  }
  return row;
}

async function load() {
  answer = await api('/api/team?' + teamQuery());
  $('team-status').textContent = answer.people.length
    ? (answer.truncated ? 'the most expensive people only' : '')
    : 'no one in this range: people are named by Claude Code\'s telemetry (OTEL_* settings)';
  const day = (t) => new Date(t).toISOString().slice(0, 10);
  $('team-range').textContent = `${day(answer.range.start)} – ${day(answer.range.end - 1)}, by ${answer.bucket}`;
  const picked = $('person').value;
  $('person').replaceChildren(el('option', { value: '' }, 'everyone'),
    ...answer.people.map((p) => el('option', { value: p.person }, p.person || '(not named)')));
  $('person').value = answer.people.some((p) => p.person === picked) ? picked : '';
  $('people').querySelector('tbody').replaceChildren(...answer.people.map(personRow));
  for (const button of document.querySelectorAll('.ranges button')) {
    const pressed = query.get('bucket') === button.dataset.bucket && query.get('hours') === button.dataset.hours;
    button.setAttribute('aria-pressed', String(pressed));
  }
  drawCharts();
}

/** Fetches the same answer as CSV (with the token in a header, never in a link) and saves it. */
async function downloadCsv() {
  const params = teamQuery();
  params.set('format', 'csv');
  const headers = token ? { Authorization: 'Bearer ' + token } : {};
  const response = await fetch('/api/team?' + params, { headers, cache: 'no-store' });
  if (!response.ok) throw new Error('/api/team: ' + response.status);
  lastCsv = await response.text();
  const link = el('a', {
    href: URL.createObjectURL(new Blob([lastCsv], { type: 'text/csv' })),
    download: `hookwatch-team-${params.get('bucket') || 'day'}.csv`,
  });
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

$('person').addEventListener('change', drawCharts);
$('download-csv').addEventListener('click', () => downloadCsv().catch((e) => console.warn(e.message)));
for (const button of document.querySelectorAll('.ranges button')) {
  button.addEventListener('click', () => {
    query.delete('start');
    query.delete('end');
    query.set('bucket', button.dataset.bucket);
    query.set('hours', button.dataset.hours);
    history.replaceState(null, '', location.pathname + '?' + query);
    load().catch((e) => console.warn(e.message));
  });
}
load().catch((e) => {
  $('team-status').textContent = e.message;
  console.warn(e.message);
});
