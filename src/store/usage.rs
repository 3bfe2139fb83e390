//! API use by model, session, person, agent type or app (`/api/usage`), and over time: read
//! from the usage and latency rollups that `telemetry::record` keeps, so a read costs the
//! same however many requests it sums. A read that neither groups by nor filters on a session
//! or an app (the metrics card, usage by model, agent type or person, the timeline) reads the
//! session-free totals instead, so it also costs the same however many sessions there are.
//!
//! One truth per session: a session with `api_request` events is counted from them; one
//! with only cost and token counters, from those; one with neither, from the transcript
//! estimate (the main agents' `session_usage` and the subagents' rows), as every view did
//! before Claude Code's telemetry. `telemetry_sessions` says which a session has, so no
//! request is counted twice.
//!
//! Rollup rows are per minute, so usage counts whole minutes: a request is in a range when
//! its minute overlaps it. The estimates, read from their own rows, are exact to the
//! millisecond, as in the other views.

use std::collections::BTreeMap;

use super::TokenCounts;
use super::rows::StoredRow;
use super::sql::{Dialect, Sql, Value};
use super::telemetry::latency_of_slot;
use crate::domain::time::{HOUR_MS, MINUTE_MS, TimeRange, ceil_to, floor_to};

/// What usage rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageGroup {
    Model,
    Session,
    /// The person: `user.email`, else `user.account_uuid`, else `user.id`.
    User,
    AgentType,
    App,
    /// One row for everything: the metrics cards' total.
    All,
}

impl UsageGroup {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "model" => Self::Model,
            "session" => Self::Session,
            "user" => Self::User,
            "agent_type" => Self::AgentType,
            "app" => Self::App,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Session => "session",
            Self::User => "user",
            Self::AgentType => "agent_type",
            Self::App => "app",
            Self::All => "all",
        }
    }

    /// Whether the rows' keys are people.
    pub fn is_identity(self) -> bool {
        self == Self::User
    }

    fn column(self) -> &'static str {
        match self {
            Self::Model => "u.model",
            Self::Session => "u.session_id",
            Self::User => "u.user_key",
            Self::AgentType => "u.agent_type",
            Self::App => "coalesce(s.source_app, '')",
            Self::All => "''",
        }
    }
}

/// Narrows usage to one value of any key; `None` leaves a key open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    pub model: Option<String>,
    pub session_id: Option<String>,
    pub app: Option<String>,
    pub agent_type: Option<String>,
    /// A person, as `user.email`, `user.account_uuid` or `user.id` (whichever the records
    /// carry first, in that order).
    pub user: Option<String>,
    pub organization_id: Option<String>,
}

impl UsageFilter {
    /// Whether it names a person or an organization.
    pub fn names_identity(&self) -> bool {
        self.user.is_some() || self.organization_id.is_some()
    }

    /// ` AND …` conditions, their parameters numbered from `first`. A model matches its own
    /// id and, given without its date, the dated ids of its snapshots (`claude-opus-4-1`
    /// matches `claude-opus-4-1-20250805`).
    fn conditions(&self, dialect: Dialect, first: usize) -> (String, Vec<Value<'_>>) {
        let mut sql = String::new();
        let mut args = Vec::new();
        if let Some(model) = &self.model {
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
            ("u.session_id", &self.session_id),
            ("coalesce(s.source_app, '')", &self.app),
            ("u.agent_type", &self.agent_type),
            ("u.user_key", &self.user),
            ("u.organization_id", &self.organization_id),
        ];
        for (column, value) in wanted {
            if let Some(value) = value {
                sql.push_str(&format!(" AND {column} = ?{}", first + args.len()));
                args.push(Value::Text(value));
            }
        }
        (sql, args)
    }
}

/// One row of usage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageRow {
    /// The group's value; `""` where the records did not say (no model, no person…).
    pub key: String,
    /// The whole cost, in nano-dollars: measured where there is telemetry, estimated where not.
    pub cost_nanos: i64,
    /// The part of `cost_nanos` that is the transcript estimate.
    pub estimated_cost_nanos: i64,
    pub tokens: TokenCounts,
    /// API requests (`api_request` events).
    pub requests: i64,
    /// `api_error` events.
    pub errors: i64,
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
}

impl UsageRow {
    /// Whether any of the cost is the estimate.
    pub fn estimated(&self) -> bool {
        self.estimated_cost_nanos != 0 || (self.cost_nanos == 0 && self.requests == 0)
    }
}

/// Usage in one bucket of a timeline: telemetry only (estimates say nothing of API calls).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsagePoint {
    pub bucket_ms: i64,
    pub cost_nanos: i64,
    pub tokens: TokenCounts,
    pub requests: i64,
    pub errors: i64,
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
}

/// The most rows one usage read answers (sessions are the many-valued key).
pub const MAX_USAGE_ROWS: usize = 1000;

/// Which rows of a usage read: at most `limit`, most expensive first, after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePage {
    pub limit: usize,
    pub after: Option<UsageCursor>,
}

impl Default for UsagePage {
    fn default() -> Self {
        Self {
            limit: MAX_USAGE_ROWS,
            after: None,
        }
    }
}

/// Where a page of usage rows ended: rows are ordered by cost and requests (most first), then
/// key, so the next page is the rows after the last one's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCursor {
    pub cost_nanos: i64,
    pub requests: i64,
    pub key: String,
}

impl UsageCursor {
    pub fn after(row: &UsageRow) -> Self {
        Self {
            cost_nanos: row.cost_nanos,
            requests: row.requests,
            key: row.key.clone(),
        }
    }

    /// `cost:requests:key`, the key as it is.
    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.cost_nanos, self.requests, self.key)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, ':');
        Some(Self {
            cost_nanos: parts.next()?.parse().ok()?,
            requests: parts.next()?.parse().ok()?,
            key: parts.next()?.to_owned(),
        })
    }
}

/// The range widened to whole minutes, for the rollups, and its parameters `?1`..`?8`: the
/// exact range (for the estimates' own rows), then the hour and minute rollups' spans.
fn rollup_params(range: TimeRange) -> [i64; 8] {
    let start = floor_to(range.start_ms, MINUTE_MS);
    let end = ceil_to(range.end_ms, MINUTE_MS).max(start + MINUTE_MS);
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
        let needs_session = matches!(group, UsageGroup::Session | UsageGroup::App)
            || filter.session_id.is_some()
            || filter.app.is_some();
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
fn usage_source(telemetry: Telemetry) -> String {
    let (hour_columns, hour) = telemetry.usage_table("_hour");
    let (minute_columns, minute) = telemetry.usage_table("");
    let counted = telemetry.counted();
    format!(
        "SELECT {hour_columns} FROM {hour} r WHERE bucket >= ?3 AND bucket < ?4{counted}
         UNION ALL
         SELECT {minute_columns} FROM {minute} r
         WHERE ((bucket >= ?5 AND bucket < ?6) OR (bucket >= ?7 AND bucket < ?8)){counted}
         UNION ALL
         SELECT session_id, model, 'main', '', '', 'estimate', cost_nanos, input_tokens,
                output_tokens, cache_read_tokens, cache_creation_tokens, total_tokens, 0, 0
         FROM session_usage r WHERE ts >= ?1 AND ts < ?2 AND {NO_TELEMETRY}
         UNION ALL
         SELECT session_id, coalesce(model, ''), agent_type, '', '', 'estimate', cost_nanos,
                input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens,
                total_tokens, 0, 0
         FROM agents r
         WHERE status IN ('completed', 'failed') AND ended_at >= ?1 AND ended_at < ?2
           AND {NO_TELEMETRY}"
    )
}

/// A session's estimate counts only when it has no telemetry.
const NO_TELEMETRY: &str =
    "NOT EXISTS (SELECT 1 FROM telemetry_sessions t WHERE t.session_id = r.session_id)";

impl Telemetry {
    /// ` AND …`: which rollup rows `r` count. Every event row; a session's points only when
    /// it has no `api_request` events. The totals hold only what counts.
    fn counted(self) -> &'static str {
        match self {
            Self::PerSession => {
                " AND (r.source = 'event' OR NOT EXISTS (SELECT 1 FROM telemetry_sessions t
                      WHERE t.session_id = r.session_id AND t.api_requests > 0))"
            }
            Self::Totals => "",
        }
    }
}

/// The join to the sessions (`s`), for an app: only where the read groups or filters by one.
fn sessions_join(group: UsageGroup, filter: &UsageFilter) -> &'static str {
    if group == UsageGroup::App || filter.app.is_some() {
        "LEFT JOIN sessions s ON s.session_id = u.session_id"
    } else {
        ""
    }
}

/// Usage in `range`, grouped, most expensive first (then most requests, then by key), a page
/// of at most `page.limit` rows ([`MAX_USAGE_ROWS`] at most). The database sums, orders and
/// cuts the rows, and latency is read for the page's keys only: by session, a day of 200,000
/// sessions is one grouped scan, not 200,000 rows handed over and sorted here.
pub fn usage<S: Sql>(
    sql: &mut S,
    range: TimeRange,
    group: UsageGroup,
    filter: &UsageFilter,
    page: &UsagePage,
) -> Result<Vec<UsageRow>, S::Error> {
    let d = sql.dialect();
    let key = group.column();
    let telemetry = Telemetry::for_read(group, filter);
    let (conditions, filter_args) = filter.conditions(d, 9);
    let mut args: Vec<Value<'_>> = rollup_params(range).map(Value::Int).to_vec();
    args.extend(filter_args.iter().cloned());
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
        usage_source(telemetry),
        sessions_join(group, filter),
        d.binary("k"),
        args.len(),
    );
    let mut rows = sql.query(&query, &args, |row| {
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
        })
    })?;
    let keys: Vec<&str> = rows.iter().map(|row| row.key.as_str()).collect();
    let latencies = latency_histograms(sql, range, group, filter, telemetry, None, Some(&keys))?;
    for row in &mut rows {
        if let Some(slots) = latencies.get(&(row.key.clone(), 0)) {
            (row.latency_p50_ms, row.latency_p95_ms) =
                (percentile(slots, 0.50), percentile(slots, 0.95));
        }
    }
    Ok(rows)
}

/// Telemetry usage per bucket of `bucket_ms` (a whole number of minutes; whole hours read the
/// hour rollup) from `range.start_ms`, zero-filled.
pub fn usage_timeline<S: Sql>(
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
    let (conditions, filter_args) = filter.conditions(d, 4);
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
    let key = group.column();
    let (source, mut args, time_slot) = match bucket_ms {
        None => {
            let p = rollup_params(range);
            let (columns, hour) = telemetry.latency_table("_hour");
            let (_, minute) = telemetry.latency_table("");
            (
                format!(
                    "SELECT {columns} FROM {hour} WHERE bucket >= ?1 AND bucket < ?2
                     UNION ALL
                     SELECT {columns} FROM {minute}
                     WHERE (bucket >= ?3 AND bucket < ?4) OR (bucket >= ?5 AND bucket < ?6)"
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
    let (mut conditions, filter_args) = filter.conditions(d, 7);
    args.extend(filter_args.iter().cloned());
    let listed;
    if let Some(keys) = only_keys {
        // The page's keys: a JSON array, one parameter.
        listed = serde_json::to_string(keys).unwrap_or_else(|_| "[]".into());
        args.push(Value::Text(&listed));
        conditions.push_str(&format!(
            " AND {}",
            d.in_text_list(key, &format!("?{}", args.len()))
        ));
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
pub fn percentile(slots: &[(i64, i64)], p: f64) -> Option<i64> {
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
    use crate::store::telemetry::latency_slot;

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
