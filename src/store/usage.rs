//! API use by model, session, person, agent type, app or coding agent (`/api/usage`), and over
//! time: read from the usage and latency rollups that `telemetry::record` keeps, so a read costs the
//! same however many requests it sums. A read that neither groups by nor filters on a session
//! or an app (the metrics card, usage by model, agent type or person, the timeline) reads the
//! session-free totals instead, so it also costs the same however many sessions there are;
//! usage by session, unfiltered, reads each session's settled sums (`top_sessions`).
//!
//! One truth per session: a session with `api_request` events is counted from them; one
//! with only cost and token counters, from those; one with neither, from the transcript
//! estimate (the main agents' `session_usage` and the subagents' rows), as every view did
//! before Claude Code's telemetry. `telemetry_sessions` says which a session has (and holds
//! its sums), so no request is counted twice.
//!
//! Rollup rows are per minute, so usage counts whole minutes: a request is in a range when
//! its minute overlaps it. The estimates, read from their own rows, are exact to the
//! millisecond, as in the other views.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};

use super::rows::StoredRow;
use super::sql::{Dialect, Sql, Value};
use crate::domain::sessions::TokenCounts;
use crate::domain::telemetry::latency_of_slot;
use crate::domain::time::{DAY_MS, HOUR_MS, MINUTE_MS, TimeRange, ceil_to, floor_to};
use crate::domain::usage::{
    MAX_USAGE_ROWS, UsageCursor, UsageFilter, UsageGroup, UsagePage, UsagePoint, UsageRow,
};

/// A usage row's app: its session's, or, for a session no hook has named, the app the
/// sessions list shows it under: its agent where its telemetry is Codex's or Gemini's
/// (`telemetry_sessions.agent`), else `domain::sessions::TELEMETRY_SOURCE_APP`.
const APP_OF_SESSION: &str = "coalesce(s.source_app, ts.agent, 'claude-code')";

/// A usage row's coding agent: its session's, as its hooks or its telemetry named it, else
/// Claude Code (`domain::coding_agent::CodingAgent::name`).
const AGENT_OF_SESSION: &str = "coalesce(s.coding_agent, ts.agent, 'claude-code')";

/// Whether a read joins each row's session (`s`, `ts`): to group or filter by its app or agent.
fn joins_sessions(group: UsageGroup, filter: &UsageFilter) -> bool {
    matches!(group, UsageGroup::App | UsageGroup::Agent)
        || filter.app.is_some()
        || filter.agent.is_some()
}

/// The column a group's key is read from (`u`: a usage row; `s`: its session).
fn group_column(group: UsageGroup) -> &'static str {
    match group {
        UsageGroup::Model => "u.model",
        UsageGroup::Session => "u.session_id",
        UsageGroup::User => "u.user_key",
        UsageGroup::AgentType => "u.agent_type",
        UsageGroup::App => APP_OF_SESSION,
        UsageGroup::Agent => AGENT_OF_SESSION,
        UsageGroup::All => "''",
    }
}

/// `filter`'s ` AND …` conditions, their parameters numbered from `first`. A model matches its own
/// id and, given without its date, the dated ids of its snapshots (`claude-opus-4-1`
/// matches `claude-opus-4-1-20250805`).
fn filter_conditions(
    filter: &UsageFilter,
    dialect: Dialect,
    first: usize,
) -> (String, Vec<Value<'_>>) {
    let mut sql = String::new();
    let mut args = Vec::new();
    if let Some(model) = &filter.model {
        let p = format!("?{first}");
        let suffix = format!("substr(u.model, length({p}) + 2)");
        sql.push_str(&format!(
            " AND (u.model = {p} OR (length(u.model) = length({p}) + 9 \
             AND substr(u.model, 1, length({p}) + 1) = {p} || '-' AND {}))",
            dialect.all_digits(&suffix)
        ));
        args.push(Value::Text(model));
    }
    let wanted = [
        ("u.session_id", &filter.session_id),
        (APP_OF_SESSION, &filter.app),
        (AGENT_OF_SESSION, &filter.agent),
        ("u.agent_type", &filter.agent_type),
        ("u.user_key", &filter.user),
        ("u.organization_id", &filter.organization_id),
    ];
    for (column, value) in wanted {
        if let Some(value) = value {
            sql.push_str(&format!(" AND {column} = ?{}", first + args.len()));
            args.push(Value::Text(value));
        }
    }
    (sql, args)
}

/// The range widened to whole minutes, for the rollups, and its parameters `?1`..`?8`: the
/// exact range (for the estimates' own rows), then the hour and minute rollups' spans.
fn rollup_params(range: TimeRange) -> [i64; 8] {
    let (start, end) = widened(range);
    let widened = TimeRange::new(start, end).unwrap_or(range).spans();
    [
        range.start_ms,
        range.end_ms,
        widened.hours.0,
        widened.hours.1,
        widened.minutes_before.0,
        widened.minutes_before.1,
        widened.minutes_after.0,
        widened.minutes_after.1,
    ]
}

/// A rollup row's columns; its total is added as NUMERIC so that four saturated counts add up
/// without overflowing on PostgreSQL (the sums over it saturate, `Dialect::sum`).
const USAGE_COLUMNS: &str = "session_id, model, agent_type, user_key, organization_id, source, \
    cost_nanos, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, \
    CAST(input_tokens AS NUMERIC) + CAST(output_tokens AS NUMERIC) \
      + CAST(cache_read_tokens AS NUMERIC) + CAST(cache_creation_tokens AS NUMERIC) \
      AS total_tokens, \
    requests, errors";

/// The telemetry rows a read sums: the per-session rollups, or, where the read neither groups
/// by nor filters on a session or an app, the session-free totals, whose rows hold only what
/// counts (each session's one truth is settled as they are written: `store::telemetry`) and
/// stand as `event` rows here. A day of a million sessions is a million rollup rows and a few
/// hundred totals rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Telemetry {
    PerSession,
    Totals,
}

impl Telemetry {
    fn for_read(group: UsageGroup, filter: &UsageFilter) -> Self {
        let needs_session = matches!(
            group,
            UsageGroup::Session | UsageGroup::App | UsageGroup::Agent
        ) || filter.needs_session();
        if needs_session {
            Self::PerSession
        } else {
            Self::Totals
        }
    }

    /// A usage table's columns as [`USAGE_COLUMNS`] names them, and the table.
    fn usage_table(self, suffix: &str) -> (&'static str, String) {
        match self {
            Self::PerSession => (USAGE_COLUMNS, format!("usage_rollup{suffix}")),
            Self::Totals => (TOTALS_COLUMNS, format!("usage_totals{suffix}")),
        }
    }

    /// A latency table's columns (`session_id` … `requests`), and the table.
    fn latency_table(self, suffix: &str) -> (&'static str, String) {
        match self {
            Self::PerSession => (
                "bucket, session_id, model, agent_type, user_key, organization_id, slot, requests",
                format!("latency_rollup{suffix}"),
            ),
            Self::Totals => (
                "bucket, '' AS session_id, model, agent_type, user_key, organization_id, slot, \
                 requests",
                format!("latency_totals{suffix}"),
            ),
        }
    }
}

/// [`USAGE_COLUMNS`] of a totals row: no session, and all of it counts as events do.
const TOTALS_COLUMNS: &str = "'' AS session_id, model, agent_type, user_key, organization_id, \
    'event' AS source, cost_nanos, input_tokens, output_tokens, cache_read_tokens, \
    cache_creation_tokens, \
    CAST(input_tokens AS NUMERIC) + CAST(output_tokens AS NUMERIC) \
      + CAST(cache_read_tokens AS NUMERIC) + CAST(cache_creation_tokens AS NUMERIC) \
      AS total_tokens, \
    requests, errors";

/// The rows that count, with the source of their cost: telemetry rows (`event`, `point`) and
/// the estimates' rows (`estimate`), each session's one truth picked in each branch
/// ([`Telemetry::counted`]), so that an event row, which always counts, is never joined.
///
/// `telemetry` `None` leaves the telemetry out (the estimates alone); `arm` is added to each
/// branch's conditions (`r` is its table), so that it can use the branch's indexes.
fn usage_source(telemetry: Option<Telemetry>, arm: &str) -> String {
    let estimates = format!(
        "SELECT session_id, model, 'main', '', '', 'estimate', cost_nanos, input_tokens,
                output_tokens, cache_read_tokens, cache_creation_tokens, total_tokens, 0, 0
         FROM session_usage r WHERE ts >= ?1 AND ts < ?2 AND {NO_TELEMETRY}{arm}
         UNION ALL
         SELECT session_id, coalesce(model, ''), agent_type, '', '', 'estimate', cost_nanos,
                input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens,
                total_tokens, 0, 0
         FROM agents r
         WHERE status IN ('completed', 'failed') AND ended_at >= ?1 AND ended_at < ?2
           AND {NO_TELEMETRY}{arm}"
    );
    // Without telemetry its branches stay, empty, so that every parameter keeps its type on
    // PostgreSQL.
    let (telemetry, counted) = match telemetry {
        Some(telemetry) => (telemetry, telemetry.counted()),
        None => (Telemetry::PerSession, " AND 1 = 0"),
    };
    let (hour_columns, hour) = telemetry.usage_table("_hour");
    let (minute_columns, minute) = telemetry.usage_table("");
    format!(
        "SELECT {hour_columns} FROM {hour} r WHERE bucket >= ?3 AND bucket < ?4{counted}{arm}
         UNION ALL
         SELECT {minute_columns} FROM {minute} r
         WHERE ((bucket >= ?5 AND bucket < ?6) OR (bucket >= ?7 AND bucket < ?8)){counted}{arm}
         UNION ALL
         {estimates}"
    )
}

/// A session's estimate counts only when it has no telemetry that measures its cost: no
/// `api_request` event and no cost or token point (`api_error` events alone measure none).
const NO_TELEMETRY: &str = "NOT EXISTS (SELECT 1 FROM telemetry_sessions t
    WHERE t.session_id = r.session_id AND (t.api_requests > 0 OR t.usage_points > 0))";

impl Telemetry {
    /// ` AND …`: which rollup rows `r` count. Every event row; a session's points only when
    /// it has no `api_request` events. The totals hold only what counts.
    fn counted(self) -> &'static str {
        match self {
            Self::PerSession => COUNTED_PER_SESSION,
            Self::Totals => "",
        }
    }
}

/// ` AND …`: which per-session rollup rows `r` count (usage's one truth per session): every
/// event row; a session's point rows only while it has no `api_request` events.
pub(crate) const COUNTED_PER_SESSION: &str = " AND (r.source = 'event' OR NOT EXISTS \
    (SELECT 1 FROM telemetry_sessions t WHERE t.session_id = r.session_id \
     AND t.api_requests > 0))";

/// The join to the sessions (`s`, `ts`), for an app or an agent: only where the read groups
/// or filters by one.
fn sessions_join(group: UsageGroup, filter: &UsageFilter) -> &'static str {
    if joins_sessions(group, filter) {
        "LEFT JOIN sessions s ON s.session_id = u.session_id \
         LEFT JOIN telemetry_sessions ts ON ts.session_id = u.session_id"
    } else {
        ""
    }
}

/// Usage in `range`, grouped, most expensive first (then most requests, then by key), a page
/// of at most `page.limit` rows ([`MAX_USAGE_ROWS`] at most). The database sums, orders and
/// cuts the rows, and latency is read for the page's keys only: by session, a day of 200,000
/// sessions is one grouped scan, not 200,000 rows handed over and sorted here.
///
/// By session, unfiltered, the page is found from each session's settled sums
/// (`top_sessions`), so a day of a million sessions costs about what a day of a thousand
/// does.
pub(crate) fn usage<S: Sql>(
    sql: &mut S,
    range: TimeRange,
    group: UsageGroup,
    filter: &UsageFilter,
    page: &UsagePage,
) -> Result<Vec<UsageRow>, S::Error> {
    if group == UsageGroup::Session && *filter == UsageFilter::default() {
        return top_sessions(sql, range, page);
    }
    let telemetry = Telemetry::for_read(group, filter);
    let mut rows = grouped_usage(sql, range, group, filter, page, Some(telemetry), None)?;
    add_latencies(sql, range, group, filter, telemetry, &mut rows)?;
    Ok(rows)
}

/// Usage by session, unfiltered: the page read from each session's sums as they were settled
/// at write (`telemetry_sessions`), not summed from a range's rollup rows.
///
/// A session's settled sums are its whole telemetry, so they are its usage in the range when
/// all of its minutes lie in the range (and in the minute rollups still kept), and otherwise
/// at least that. Sessions are walked, day of their first minute by day, most expensive
/// first; a session not wholly in the range is summed from its own rollup rows (the rollups'
/// session index); the walk of a day stops at the first session whose settled sums come
/// after the page's last row, for none after it can enter the page. Sessions that began on an
/// earlier day and reach into the range are summed first, and the sessions measured by their
/// transcripts only (the estimates) are ranked by the database as before. A day of a million
/// sessions is one short index walk per day in the range.
fn top_sessions<S: Sql>(
    sql: &mut S,
    range: TimeRange,
    page: &UsagePage,
) -> Result<Vec<UsageRow>, S::Error> {
    let (start, end) = widened(range);
    let limit = page.limit.clamp(1, MAX_USAGE_ROWS);
    let mut top = TopRows::new(limit, page.after.clone());
    let mut seen: HashSet<String> = HashSet::new();
    let group = UsageGroup::Session;
    let all = UsageFilter::default();

    // The sessions measured by their transcripts: a page of them, exact; those that also
    // sent `api_error` events (which measure no cost) summed again with their errors.
    let estimated = grouped_usage(sql, range, group, &all, page, None, None)?;
    let keys: Vec<&str> = estimated.iter().map(|row| row.key.as_str()).collect();
    let with_errors = sessions_with_telemetry(sql, &keys)?;
    let mut exact: BTreeMap<String, UsageRow> = BTreeMap::new();
    if !with_errors.is_empty() {
        let keys: Vec<&str> = with_errors.iter().map(String::as_str).collect();
        exact = sum_sessions(sql, range, &keys)?;
    }
    for row in estimated {
        seen.insert(row.key.clone());
        top.offer(exact.remove(&row.key).unwrap_or(row));
    }

    // Minute rollups older than this were pruned: a session that began before it is summed
    // from what is kept, as every other read does.
    let kept_from = sql
        .query_first("SELECT min(bucket) FROM usage_rollup", &[], |row| {
            row.opt_int(0)
        })?
        .flatten()
        .unwrap_or(i64::MAX);
    let first_day = floor_to(start, DAY_MS);
    let last_day = floor_to(end - 1, DAY_MS);

    // Sessions that began on an earlier day and reach into the range, day by day present.
    let mut reaching_in: Vec<String> = Vec::new();
    let mut day = next_day(sql, i64::MIN, first_day)?;
    while let Some(d) = day {
        reaching_in.extend(sql.query(
            "SELECT session_id FROM telemetry_sessions WHERE day = ?1 AND last_bucket >= ?2",
            &[Value::Int(d), Value::Int(start)],
            |row| row.text(0),
        )?);
        day = next_day(sql, d, first_day)?;
    }
    reaching_in.retain(|key| seen.insert(key.clone()));
    for chunk in reaching_in.chunks(SUMMED_AT_ONCE) {
        let keys: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for row in sum_sessions(sql, range, &keys)?.into_values() {
            top.offer(row);
        }
    }

    let mut day = first_day;
    while day <= last_day {
        walk_day(
            sql,
            range,
            day,
            (start, end, kept_from),
            &mut top,
            &mut seen,
        )?;
        day += DAY_MS;
    }

    let mut rows = top.into_rows();
    add_latencies(sql, range, group, &all, Telemetry::PerSession, &mut rows)?;
    Ok(rows)
}

/// Sessions summed from their rollup rows in one query.
const SUMMED_AT_ONCE: usize = 256;

/// The first `day` of a session after `after` and before `before`.
fn next_day<S: Sql>(sql: &mut S, after: i64, before: i64) -> Result<Option<i64>, S::Error> {
    Ok(sql
        .query_first(
            "SELECT min(day) FROM telemetry_sessions WHERE day > ?1 AND day < ?2",
            &[Value::Int(after), Value::Int(before)],
            |row| row.opt_int(0),
        )?
        .flatten())
}

/// Which of `keys` have a row in `telemetry_sessions`.
fn sessions_with_telemetry<S: Sql>(sql: &mut S, keys: &[&str]) -> Result<Vec<String>, S::Error> {
    let mut found = Vec::new();
    for chunk in keys.chunks(SUMMED_AT_ONCE) {
        let listed = serde_json::to_string(chunk).unwrap_or_else(|_| "[]".into());
        let condition = sql.dialect().in_text_list("session_id", "?1");
        found.extend(sql.query(
            &format!("SELECT session_id FROM telemetry_sessions WHERE {condition}"),
            &[Value::Text(&listed)],
            |row| row.text(0),
        )?);
    }
    Ok(found)
}

/// `keys`' usage in `range`, summed from their own rows, by session.
fn sum_sessions<S: Sql>(
    sql: &mut S,
    range: TimeRange,
    keys: &[&str],
) -> Result<BTreeMap<String, UsageRow>, S::Error> {
    let page = UsagePage {
        limit: MAX_USAGE_ROWS,
        after: None,
    };
    let mut rows = BTreeMap::new();
    for chunk in keys.chunks(SUMMED_AT_ONCE) {
        let summed = grouped_usage(
            sql,
            range,
            UsageGroup::Session,
            &UsageFilter::default(),
            &page,
            Some(Telemetry::PerSession),
            Some(chunk),
        )?;
        rows.extend(summed.into_iter().map(|row| (row.key.clone(), row)));
    }
    Ok(rows)
}

/// Walks the sessions whose first minute is on `day`, most expensive first, into `top`,
/// until no later one can enter it. `bounds` are the range's whole minutes and the oldest
/// minute rollup kept.
fn walk_day<S: Sql>(
    sql: &mut S,
    range: TimeRange,
    day: i64,
    (start, end, kept_from): (i64, i64, i64),
    top: &mut TopRows,
    seen: &mut HashSet<String>,
) -> Result<(), S::Error> {
    // In `usage_of_session`'s order.
    let columns = super::telemetry::SUM_COLUMNS.join(", ");
    let by_key = sql.dialect().binary("session_id");
    let mut fetch = 4 * top.limit + 64;
    loop {
        // Each pass reads from the top again (a snapshot of its own); sessions already
        // placed are passed over.
        let sessions = sql.query(
            &format!(
                "SELECT session_id, {columns}, api_requests, usage_points, first_bucket,
                        last_bucket
                 FROM telemetry_sessions WHERE day = ?1
                 ORDER BY cost_nanos DESC, requests DESC, {by_key} LIMIT ?2"
            ),
            &[Value::Int(day), Value::from(fetch)],
            |row| {
                Ok((
                    usage_of_session(row)?,
                    [row.int(8)?, row.int(9)?, row.int(10)?, row.int(11)?],
                ))
            },
        )?;
        let read_all = sessions.len() < fetch;
        let mut unsettled: Vec<String> = Vec::new();
        let mut stopped = false;
        for (row, [api_requests, usage_points, first, last]) in sessions {
            if seen.contains(&row.key) {
                continue;
            }
            if top.is_closed_to(&row) {
                // Perhaps not yet: the sessions still to be summed may lower the bar.
                sum_into(sql, range, &mut unsettled, top)?;
                if top.is_closed_to(&row) {
                    stopped = true;
                    break;
                }
            }
            seen.insert(row.key.clone());
            let whole = first >= start && last < end && first >= kept_from;
            // A session with `api_error` events only may have a transcript estimate too.
            let measured = api_requests > 0 || usage_points > 0;
            if whole && measured {
                top.offer(row);
            } else if first < end && last >= start {
                unsettled.push(row.key);
                if unsettled.len() >= SUMMED_AT_ONCE {
                    sum_into(sql, range, &mut unsettled, top)?;
                }
            }
        }
        sum_into(sql, range, &mut unsettled, top)?;
        if stopped || read_all {
            return Ok(());
        }
        fetch = fetch.saturating_mul(4);
    }
}

/// Sums `keys` from their rows into `top`, and empties them.
fn sum_into<S: Sql>(
    sql: &mut S,
    range: TimeRange,
    keys: &mut Vec<String>,
    top: &mut TopRows,
) -> Result<(), S::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let listed: Vec<&str> = keys.iter().map(String::as_str).collect();
    for row in sum_sessions(sql, range, &listed)?.into_values() {
        top.offer(row);
    }
    keys.clear();
    Ok(())
}

/// A `telemetry_sessions` row's key and sums as a usage row.
fn usage_of_session<R: StoredRow>(row: &R) -> Result<UsageRow, R::Error> {
    let tokens = [row.int(2)?, row.int(3)?, row.int(4)?, row.int(5)?];
    let total = tokens.iter().map(|&n| i128::from(n)).sum::<i128>();
    let [input, output, cache_read, cache_creation] = tokens;
    Ok(UsageRow {
        key: row.text(0)?,
        cost_nanos: row.int(1)?,
        estimated_cost_nanos: 0,
        tokens: TokenCounts {
            input,
            output,
            cache_read,
            cache_creation,
            total: i64::try_from(total.clamp(0, i128::from(super::rows::SATURATED)))
                .unwrap_or(super::rows::SATURATED),
        },
        requests: row.int(6)?,
        errors: row.int(7)?,
        latency_p50_ms: None,
        latency_p95_ms: None,
        priced_from_tokens: false,
    })
}

/// Where a row stands in a usage page: most expensive first, then most requests, then by key
/// byte by byte; less is earlier.
fn standing(row: &UsageRow) -> (Reverse<i64>, Reverse<i64>, &[u8]) {
    (
        Reverse(row.cost_nanos),
        Reverse(row.requests),
        row.key.as_bytes(),
    )
}

/// The best `limit` rows offered after a cursor.
struct TopRows {
    limit: usize,
    after: Option<UsageCursor>,
    /// The rows kept, the one that stands last on top.
    kept: BinaryHeap<Standing>,
}

/// A row ordered by [`standing`].
struct Standing(UsageRow);

impl PartialEq for Standing {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Standing {}

impl PartialOrd for Standing {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Standing {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        standing(&self.0).cmp(&standing(&other.0))
    }
}

impl TopRows {
    fn new(limit: usize, after: Option<UsageCursor>) -> Self {
        Self {
            limit,
            after,
            kept: BinaryHeap::with_capacity(limit + 1),
        }
    }

    fn offer(&mut self, row: UsageRow) {
        if let Some(after) = &self.after {
            let cursor = (
                Reverse(after.cost_nanos),
                Reverse(after.requests),
                after.key.as_bytes(),
            );
            if standing(&row) <= cursor {
                return;
            }
        }
        self.kept.push(Standing(row));
        if self.kept.len() > self.limit {
            self.kept.pop();
        }
    }

    /// Whether the page is full and `bound` stands after its last row: then a row of the same
    /// key whose cost and requests are at most `bound`'s, and every row after it in the
    /// walk's order (the page's), could not enter it.
    fn is_closed_to(&self, bound: &UsageRow) -> bool {
        self.kept.len() == self.limit
            && self
                .kept
                .peek()
                .is_some_and(|last| standing(bound) > standing(&last.0))
    }

    /// The rows, first first.
    fn into_rows(self) -> Vec<UsageRow> {
        self.kept
            .into_sorted_vec()
            .into_iter()
            .map(|Standing(row)| row)
            .collect()
    }
}

/// The range widened to whole minutes, as the rollups read it: `[start, end)`.
fn widened(range: TimeRange) -> (i64, i64) {
    let start = floor_to(range.start_ms, MINUTE_MS);
    (
        start,
        ceil_to(range.end_ms, MINUTE_MS).max(start + MINUTE_MS),
    )
}

/// A page of usage rows, summed, ordered and cut by the database: from the estimates alone
/// when `telemetry` is `None`, and only of `sessions` when given.
fn grouped_usage<S: Sql>(
    sql: &mut S,
    range: TimeRange,
    group: UsageGroup,
    filter: &UsageFilter,
    page: &UsagePage,
    telemetry: Option<Telemetry>,
    sessions: Option<&[&str]>,
) -> Result<Vec<UsageRow>, S::Error> {
    let d = sql.dialect();
    let key = group_column(group);
    let (conditions, filter_args) = filter_conditions(filter, d, 9);
    let mut args: Vec<Value<'_>> = rollup_params(range).map(Value::Int).to_vec();
    args.extend(filter_args.iter().cloned());
    let listed;
    let mut arm = String::new();
    if let Some(sessions) = sessions {
        // The sessions: a JSON array, one parameter.
        listed = serde_json::to_string(sessions).unwrap_or_else(|_| "[]".into());
        args.push(Value::Text(&listed));
        arm = format!(
            " AND {}",
            d.in_text_list("r.session_id", &format!("?{}", args.len()))
        );
    }
    let mut after_sql = String::new();
    if let Some(after) = &page.after {
        let n = args.len();
        after_sql = format!(
            "WHERE cost < ?{c} OR (cost = ?{c} AND requests < ?{r})
                   OR (cost = ?{c} AND requests = ?{r} AND {k} > ?{key})",
            c = n + 1,
            r = n + 2,
            key = n + 3,
            k = d.binary("k"),
        );
        args.push(Value::Int(after.cost_nanos));
        args.push(Value::Int(after.requests));
        args.push(Value::Text(&after.key));
    }
    let limit = page.limit.clamp(1, MAX_USAGE_ROWS);
    args.push(Value::from(limit));
    let query = format!(
        "SELECT * FROM (
             SELECT {key} AS k, {} AS cost, {} AS estimated_cost, {}, {}, {}, {}, {},
                    {} AS requests, {}
             FROM ({}) u {}
             WHERE 1 = 1{conditions}
             GROUP BY k
         ) rows {after_sql}
         ORDER BY cost DESC, requests DESC, {} LIMIT ?{}",
        d.sum("u.cost_nanos"),
        d.sum("CASE WHEN u.source = 'estimate' THEN u.cost_nanos ELSE 0 END"),
        d.sum("u.input_tokens"),
        d.sum("u.output_tokens"),
        d.sum("u.cache_read_tokens"),
        d.sum("u.cache_creation_tokens"),
        d.sum("u.total_tokens"),
        d.sum("u.requests"),
        d.sum("u.errors"),
        usage_source(telemetry, &arm),
        sessions_join(group, filter),
        d.binary("k"),
        args.len(),
    );
    sql.query(&query, &args, |row| {
        Ok(UsageRow {
            key: row.text(0)?,
            cost_nanos: row.int(1)?,
            estimated_cost_nanos: row.int(2)?,
            tokens: TokenCounts {
                input: row.int(3)?,
                output: row.int(4)?,
                cache_read: row.int(5)?,
                cache_creation: row.int(6)?,
                // The estimate's total may be all an agent reported, without the four kinds.
                total: row.int(7)?,
            },
            requests: row.int(8)?,
            errors: row.int(9)?,
            latency_p50_ms: None,
            latency_p95_ms: None,
            priced_from_tokens: false,
        })
    })
}

/// The rows' latency percentiles, read for their keys only.
fn add_latencies<S: Sql>(
    sql: &mut S,
    range: TimeRange,
    group: UsageGroup,
    filter: &UsageFilter,
    telemetry: Telemetry,
    rows: &mut [UsageRow],
) -> Result<(), S::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = rows.iter().map(|row| row.key.as_str()).collect();
    let latencies = latency_histograms(sql, range, group, filter, telemetry, None, Some(&keys))?;
    for row in rows {
        if let Some(slots) = latencies.get(&(row.key.clone(), 0)) {
            (row.latency_p50_ms, row.latency_p95_ms) =
                (percentile(slots, 0.50), percentile(slots, 0.95));
        }
    }
    Ok(())
}

/// Telemetry usage per bucket of `bucket_ms` (a whole number of minutes; whole hours read the
/// hour rollup) from `range.start_ms`, zero-filled.
pub(crate) fn usage_timeline<S: Sql>(
    sql: &mut S,
    range: TimeRange,
    bucket_ms: i64,
    filter: &UsageFilter,
) -> Result<Vec<UsagePoint>, S::Error> {
    let d = sql.dialect();
    let telemetry = Telemetry::for_read(UsageGroup::All, filter);
    let suffix = if bucket_ms % HOUR_MS == 0 {
        "_hour"
    } else {
        ""
    };
    let (columns, table) = telemetry.usage_table(suffix);
    let (conditions, filter_args) = filter_conditions(filter, d, 4);
    let counted = telemetry.counted();
    let join = sessions_join(UsageGroup::All, filter);
    let query = format!(
        "SELECT (?1 + (u.bucket - ?1) / ?3 * ?3) AS slot, {}, {}, {}, {}, {}, {}, {}
         FROM (SELECT bucket, {columns} FROM {table} r
               WHERE bucket >= ?1 AND bucket < ?2{counted}) u {join}
         WHERE 1 = 1{conditions}
         GROUP BY slot",
        d.sum("u.cost_nanos"),
        d.sum("u.input_tokens"),
        d.sum("u.output_tokens"),
        d.sum("u.cache_read_tokens"),
        d.sum("u.cache_creation_tokens"),
        d.sum("u.requests"),
        d.sum("u.errors"),
    );
    let mut args: Vec<Value<'_>> = [range.start_ms, range.end_ms, bucket_ms]
        .map(Value::Int)
        .to_vec();
    args.extend(filter_args.iter().cloned());
    let sums = sql.query(&query, &args, |row| {
        Ok((
            row.int(0)?,
            row.int(1)?,
            [row.int(2)?, row.int(3)?, row.int(4)?, row.int(5)?],
            row.int(6)?,
            row.int(7)?,
        ))
    })?;
    let mut points: BTreeMap<i64, UsagePoint> = BTreeMap::new();
    let mut bucket = range.start_ms;
    while bucket < range.end_ms {
        points.insert(
            bucket,
            UsagePoint {
                bucket_ms: bucket,
                ..UsagePoint::default()
            },
        );
        bucket += bucket_ms;
    }
    for (slot, cost, tokens, requests, errors) in sums {
        if let Some(point) = points.get_mut(&slot) {
            point.cost_nanos = cost;
            add_tokens(&mut point.tokens, tokens);
            point.tokens.total = tokens.iter().fold(0i64, |sum, &n| sum.saturating_add(n));
            point.requests = requests;
            point.errors = errors;
        }
    }
    let latencies = latency_histograms(
        sql,
        range,
        UsageGroup::All,
        filter,
        telemetry,
        Some(bucket_ms),
        None,
    )?;
    for ((_, slot), slots) in latencies {
        if let Some(point) = points.get_mut(&slot) {
            (point.latency_p50_ms, point.latency_p95_ms) =
                (percentile(&slots, 0.50), percentile(&slots, 0.95));
        }
    }
    Ok(points.into_values().collect())
}

type Histograms = BTreeMap<(String, i64), Vec<(i64, i64)>>;

/// API latency histograms per `(key, time bucket)`: the whole range when `bucket_ms` is
/// `None` (time bucket 0), else per bucket from `range.start_ms` (aligned to `bucket_ms`).
fn latency_histograms<S: Sql>(
    sql: &mut S,
    range: TimeRange,
    group: UsageGroup,
    filter: &UsageFilter,
    telemetry: Telemetry,
    bucket_ms: Option<i64>,
    only_keys: Option<&[&str]>,
) -> Result<Histograms, S::Error> {
    let d = sql.dialect();
    let key = group_column(group);
    let (mut conditions, filter_args) = filter_conditions(filter, d, 7);
    // The page's keys, after the filter's parameters; by session, they are read through the
    // rollups' session index.
    let keys_param = format!("?{}", 7 + filter_args.len());
    let arm = match (group, only_keys) {
        (UsageGroup::Session, Some(_)) => {
            format!(" AND {}", d.in_text_list("session_id", &keys_param))
        }
        _ => String::new(),
    };
    let (source, mut args, time_slot) = match bucket_ms {
        None => {
            let p = rollup_params(range);
            let (columns, hour) = telemetry.latency_table("_hour");
            let (_, minute) = telemetry.latency_table("");
            (
                format!(
                    "SELECT {columns} FROM {hour} WHERE bucket >= ?1 AND bucket < ?2{arm}
                     UNION ALL
                     SELECT {columns} FROM {minute}
                     WHERE ((bucket >= ?3 AND bucket < ?4) OR (bucket >= ?5 AND bucket < ?6)){arm}"
                ),
                p[2..].iter().map(|&n| Value::Int(n)).collect::<Vec<_>>(),
                "CAST(0 AS BIGINT)".to_owned(),
            )
        }
        Some(bucket_ms) => {
            let suffix = if bucket_ms % HOUR_MS == 0 {
                "_hour"
            } else {
                ""
            };
            let (columns, table) = telemetry.latency_table(suffix);
            (
                format!(
                    "SELECT {columns} FROM {table} WHERE bucket >= ?1 AND bucket < ?2
                     AND CAST(?3 AS BIGINT) = CAST(?3 AS BIGINT)
                     AND CAST(?4 AS BIGINT) = CAST(?4 AS BIGINT)
                     AND CAST(?5 AS BIGINT) = CAST(?5 AS BIGINT)
                     AND CAST(?6 AS BIGINT) = CAST(?6 AS BIGINT)"
                ),
                [range.start_ms, range.end_ms, bucket_ms, 0, 0, 0]
                    .map(Value::Int)
                    .to_vec(),
                "(?1 + (u.bucket - ?1) / ?3 * ?3)".to_owned(),
            )
        }
    };
    args.extend(filter_args.iter().cloned());
    let listed;
    if let Some(keys) = only_keys {
        // A JSON array, one parameter.
        listed = serde_json::to_string(keys).unwrap_or_else(|_| "[]".into());
        args.push(Value::Text(&listed));
        conditions.push_str(&format!(" AND {}", d.in_text_list(key, &keys_param)));
    }
    let query = format!(
        "SELECT {key} AS k, {time_slot} AS time_slot, u.slot, {}
         FROM ({source}) u {}
         WHERE 1 = 1{conditions}
         GROUP BY k, time_slot, u.slot",
        d.sum("u.requests"),
        sessions_join(group, filter),
    );
    let rows = sql.query(&query, &args, |row| {
        Ok((row.text(0)?, row.int(1)?, row.int(2)?, row.int(3)?))
    })?;
    let mut histograms = Histograms::new();
    for (key, time_slot, slot, requests) in rows {
        histograms
            .entry((key, time_slot))
            .or_default()
            .push((slot, requests));
    }
    Ok(histograms)
}

/// The `p` quantile (0..1) of a latency histogram of `(slot, count)` pairs, in whole ms.
pub(crate) fn percentile(slots: &[(i64, i64)], p: f64) -> Option<i64> {
    let mut slots = slots.to_vec();
    slots.sort_unstable();
    let total: i64 = slots.iter().map(|&(_, n)| n).sum();
    if total <= 0 {
        return None;
    }
    let rank = ((p * total as f64).ceil() as i64).max(1);
    let mut seen = 0;
    for (slot, count) in slots {
        seen += count;
        if seen >= rank {
            return Some(latency_of_slot(slot).round() as i64);
        }
    }
    None
}

fn add_tokens(counts: &mut TokenCounts, [input, output, cache_read, cache_creation]: [i64; 4]) {
    counts.input = counts.input.saturating_add(input);
    counts.output = counts.output.saturating_add(output);
    counts.cache_read = counts.cache_read.saturating_add(cache_read);
    counts.cache_creation = counts.cache_creation.saturating_add(cache_creation);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::telemetry::latency_slot;

    #[test]
    fn a_percentile_is_within_nine_percent_of_the_exact_one() {
        for ms in [1, 7, 95, 180, 1_000, 2_345, 61_000, 600_000] {
            let read = percentile(&[(latency_slot(ms), 1)], 0.5).unwrap() as f64;
            let error = (read - ms as f64).abs() / ms as f64;
            assert!(error <= 0.09, "{ms} ms read as {read} ms");
        }
    }

    #[test]
    fn percentiles_rank_the_histogram() {
        // 90 fast requests and 10 slow ones: the median is fast, the 95th percentile slow.
        let slots = [(latency_slot(100), 90), (latency_slot(10_000), 10)];
        let p50 = percentile(&slots, 0.5).unwrap();
        let p95 = percentile(&slots, 0.95).unwrap();
        assert!((92..=108).contains(&p50), "p50 {p50}");
        assert!((9_200..=10_800).contains(&p95), "p95 {p95}");
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn the_top_rows_keep_the_page_after_the_cursor_and_close_behind_its_last() {
        let row = |key: &str, cost_nanos: i64, requests: i64| UsageRow {
            key: key.into(),
            cost_nanos,
            requests,
            ..UsageRow::default()
        };
        let after = UsageCursor::after(&row("b", 50, 2));
        let mut top = TopRows::new(2, Some(after));
        for offered in [
            row("a", 90, 1),
            row("b", 50, 2),
            row("c", 50, 2),
            row("a", 50, 2),
            row("d", 40, 9),
            row("e", 50, 1),
        ] {
            top.offer(offered);
        }
        let keys: Vec<String> = top.into_rows().into_iter().map(|r| r.key).collect();
        // Before the cursor, or the cursor's own row, are left out.
        assert_eq!(keys, ["c", "e"]);

        let mut top = TopRows::new(2, None);
        assert!(
            !top.is_closed_to(&row("z", 0, 0)),
            "not full: anything may enter"
        );
        top.offer(row("m", 30, 1));
        top.offer(row("n", 20, 1));
        assert!(top.is_closed_to(&row("o", 20, 1)), "same sums, later key");
        assert!(
            !top.is_closed_to(&row("a", 20, 1)),
            "same sums, earlier key"
        );
        assert!(!top.is_closed_to(&row("z", 20, 2)), "more requests");
        assert!(top.is_closed_to(&row("a", 19, 5)), "less cost");
    }

    #[test]
    fn usage_by_app_names_a_telemetry_only_session_as_the_sessions_list_does() {
        let quoted = format!("'{}'", crate::domain::sessions::TELEMETRY_SOURCE_APP);
        assert!(APP_OF_SESSION.contains(&quoted), "{APP_OF_SESSION}");
    }

    #[test]
    fn group_names_round_trip() {
        for group in [
            UsageGroup::Model,
            UsageGroup::Session,
            UsageGroup::User,
            UsageGroup::AgentType,
            UsageGroup::App,
        ] {
            assert_eq!(UsageGroup::parse(group.as_str()), Some(group));
        }
        assert_eq!(UsageGroup::parse("all"), None);
        assert_eq!(UsageGroup::parse("email"), None);
    }
}
