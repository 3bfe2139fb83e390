//! The team view: each person's Claude Code use per day or week, as the Grafana dashboards
//! people build on Claude Code's OpenTelemetry export show it (cost, tokens, sessions,
//! prompts, API errors, active time, lines of code, commits, pull requests, edit decisions),
//! read from what hookwatch already keeps instead of a Prometheus and a Loki.
//!
//! A person is who Claude Code's telemetry names (`user.email`, else `user.account_uuid`,
//! else `user.id`, as usage names them: `UsageKey`); the hooks name no one, so everything here
//! is measured by telemetry. Cost, tokens, requests and errors are usage's one truth per
//! session (the usage rollups); the rest is kept per hour, person and session in an activity
//! rollup that [`ActivityFold`] fills as telemetry is written, so the view costs the same
//! however many events a week holds, and retention's pruning of raw rows does not change it.

use std::collections::BTreeMap;

use super::telemetry::{TelemetryEventRow, TelemetryPointRow, UsageKey};
use super::time::{DAY_MS, HOUR_MS, floor_to};

/// Whole days or whole weeks (Monday to Sunday, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamBucket {
    Day,
    Week,
}

/// 1970-01-05, the first Monday after the epoch: weeks are counted from it.
const FIRST_MONDAY_MS: i64 = 4 * DAY_MS;

impl TeamBucket {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "day" => Some(Self::Day),
            "week" => Some(Self::Week),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
        }
    }

    pub(crate) fn millis(self) -> i64 {
        match self {
            Self::Day => DAY_MS,
            Self::Week => 7 * DAY_MS,
        }
    }

    /// The start of the bucket that holds `ms`.
    pub(crate) fn floor(self, ms: i64) -> i64 {
        match self {
            Self::Day => floor_to(ms, DAY_MS),
            Self::Week => floor_to(ms - FIRST_MONDAY_MS, 7 * DAY_MS) + FIRST_MONDAY_MS,
        }
    }
}

/// The most people one answer lists (most expensive first); the rest are left out and the
/// answer says so.
pub(crate) const MAX_TEAM_PEOPLE: usize = 500;
/// The most buckets one answer covers: 92 days, or 92 weeks.
pub(crate) const MAX_TEAM_BUCKETS: i64 = 92;

/// What the activity rollup keeps, by stored name: Claude Code's counters that no other view
/// sums, and its prompts. Each value is in billionths, as the points are (a prompt counts
/// one).
pub(crate) const ACTIVITY_METRICS: [&str; 9] = [
    PROMPTS,
    "lines_of_code.added",
    "lines_of_code.removed",
    "commits",
    "pull_requests",
    "active_time.user",
    "active_time.cli",
    "code_edit_decisions.accept",
    "code_edit_decisions.reject",
];

/// `user_prompt` events, as the activity rollup names them.
pub(crate) const PROMPTS: &str = "prompts";

const ONE: i64 = 1_000_000_000;

/// A batch's additions to the activity rollup, per (hour, person, session, metric), so that a
/// batch writes a row per key, in key order.
#[derive(Debug, Default)]
pub(crate) struct ActivityFold {
    pub rows: BTreeMap<ActivityKey, i64>,
}

/// One activity rollup row's key. Absent keys are `""`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ActivityKey {
    pub bucket: i64,
    pub user_key: String,
    pub session_id: String,
    pub metric: String,
}

impl ActivityFold {
    /// A stored `user_prompt` event counts one prompt; other events add nothing here.
    pub(crate) fn add_event(&mut self, e: &TelemetryEventRow) {
        if e.kind == "user_prompt" {
            let key = UsageKey::new(
                e.at_ms,
                &e.session_id,
                &None,
                &None,
                [
                    &e.user_email,
                    &e.account_uuid,
                    &e.user_id,
                    &e.organization_id,
                ],
            );
            self.add(key, PROMPTS, ONE);
        }
    }

    /// A stored increase of one of [`ACTIVITY_METRICS`] (running totals arrive here already
    /// turned into increases: `TelemetryPointRow::into_increase`).
    pub(crate) fn add_point(&mut self, p: &TelemetryPointRow) {
        if p.delta != 1 || !ACTIVITY_METRICS.contains(&p.metric.as_str()) {
            return;
        }
        let key = UsageKey::new(
            p.time_ms,
            &p.session_id,
            &None,
            &None,
            [
                &p.user_email,
                &p.account_uuid,
                &p.user_id,
                &p.organization_id,
            ],
        );
        self.add(key, &p.metric, p.value_nanos);
    }

    fn add(&mut self, key: UsageKey, metric: &str, value: i64) {
        let row = self
            .rows
            .entry(ActivityKey {
                bucket: floor_to(key.bucket, HOUR_MS),
                user_key: key.user_key,
                session_id: key.session_id,
                metric: metric.to_owned(),
            })
            .or_default();
        *row = row.saturating_add(value);
    }
}

/// One person's use in one bucket (or in the whole range).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TeamSums {
    /// USD, in billionths.
    pub cost_nanos: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_creation_tokens: i64,
    pub total_tokens: i64,
    /// Distinct sessions with any telemetry in the bucket.
    pub sessions: i64,
    pub prompts: i64,
    pub api_requests: i64,
    pub api_errors: i64,
    /// Seconds: keyboard interaction (`user`) and tool execution and model responses (`cli`).
    pub active_time_user_s: f64,
    pub active_time_cli_s: f64,
    pub lines_added: i64,
    pub lines_removed: i64,
    pub commits: i64,
    pub pull_requests: i64,
    pub edits_accepted: i64,
    pub edits_rejected: i64,
}

impl TeamSums {
    pub(crate) fn cost_usd(&self) -> f64 {
        super::pricing::nanos_to_usd(self.cost_nanos)
    }

    /// Adds another bucket's sums (all but `sessions`, which are distinct over a range and
    /// are counted over it: a session may span buckets).
    pub(crate) fn add(&mut self, other: &Self) {
        self.cost_nanos = self.cost_nanos.saturating_add(other.cost_nanos);
        for (sum, n) in [
            (&mut self.input_tokens, other.input_tokens),
            (&mut self.output_tokens, other.output_tokens),
            (&mut self.cache_read_tokens, other.cache_read_tokens),
            (&mut self.cache_creation_tokens, other.cache_creation_tokens),
            (&mut self.total_tokens, other.total_tokens),
            (&mut self.prompts, other.prompts),
            (&mut self.api_requests, other.api_requests),
            (&mut self.api_errors, other.api_errors),
            (&mut self.lines_added, other.lines_added),
            (&mut self.lines_removed, other.lines_removed),
            (&mut self.commits, other.commits),
            (&mut self.pull_requests, other.pull_requests),
            (&mut self.edits_accepted, other.edits_accepted),
            (&mut self.edits_rejected, other.edits_rejected),
        ] {
            *sum = sum.saturating_add(n);
        }
        self.active_time_user_s += other.active_time_user_s;
        self.active_time_cli_s += other.active_time_cli_s;
    }

    /// Adds an activity rollup sum (billionths) under its stored name.
    pub(crate) fn add_activity(&mut self, metric: &str, nanos: i64) {
        let count = (nanos + ONE / 2).div_euclid(ONE);
        let seconds = nanos as f64 / ONE as f64;
        match metric {
            PROMPTS => self.prompts += count,
            "lines_of_code.added" => self.lines_added += count,
            "lines_of_code.removed" => self.lines_removed += count,
            "commits" => self.commits += count,
            "pull_requests" => self.pull_requests += count,
            "active_time.user" => self.active_time_user_s += seconds,
            "active_time.cli" => self.active_time_cli_s += seconds,
            "code_edit_decisions.accept" => self.edits_accepted += count,
            "code_edit_decisions.reject" => self.edits_rejected += count,
            _ => {}
        }
    }

    /// The CSV header of [`Self::csv_fields`].
    pub(crate) const CSV_HEADER: &'static str = "cost_usd,input_tokens,output_tokens,\
        cache_read_tokens,cache_creation_tokens,total_tokens,sessions,prompts,api_requests,\
        api_errors,active_time_user_s,active_time_cli_s,lines_added,lines_removed,commits,\
        pull_requests,edits_accepted,edits_rejected";

    pub(crate) fn csv_fields(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.cost_usd(),
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_creation_tokens,
            self.total_tokens,
            self.sessions,
            self.prompts,
            self.api_requests,
            self.api_errors,
            self.active_time_user_s,
            self.active_time_cli_s,
            self.lines_added,
            self.lines_removed,
            self.commits,
            self.pull_requests,
            self.edits_accepted,
            self.edits_rejected,
        )
    }
}

/// One person's range: the whole of it, and each bucket with any use, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonUse {
    /// Who telemetry names; `""` for use that names no one.
    pub person: String,
    pub totals: TeamSums,
    pub buckets: Vec<(i64, TeamSums)>,
}

/// The team view of a range.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamView {
    pub bucket: TeamBucket,
    pub range: super::time::TimeRange,
    /// Most expensive first, then by name; at most [`MAX_TEAM_PEOPLE`].
    pub people: Vec<PersonUse>,
    /// More people than [`MAX_TEAM_PEOPLE`] had use in the range.
    pub truncated: bool,
}

impl TeamView {
    /// The answer as CSV: one line per person and bucket with any use, in the answer's order,
    /// every field quoted where it must be (RFC 4180), so a person's name cannot break a row.
    pub(crate) fn to_csv(&self) -> String {
        let mut csv = format!("person,bucket_start,{}\r\n", TeamSums::CSV_HEADER);
        for person in &self.people {
            for (start, sums) in &person.buckets {
                csv.push_str(&format!(
                    "{},{},{}\r\n",
                    csv_text(&person.person),
                    super::time::iso8601(*start),
                    sums.csv_fields()
                ));
            }
        }
        csv
    }
}

/// A CSV field: quoted when it holds a comma, quote or line break, or starts with a character
/// a spreadsheet would take for a formula (then also prefixed with `'`).
fn csv_text(text: &str) -> String {
    let formula = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let text = if formula {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) || formula {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday_and_days_at_midnight_utc() {
        // 2026-12-07 is a Monday; 2026-12-09 12:00 UTC is the Wednesday after.
        let monday = 1_796_601_600_000;
        let wednesday_noon = monday + 2 * DAY_MS + 12 * HOUR_MS;
        assert_eq!(TeamBucket::Week.floor(wednesday_noon), monday);
        assert_eq!(TeamBucket::Week.floor(monday), monday);
        assert_eq!(TeamBucket::Week.floor(monday - 1), monday - 7 * DAY_MS);
        assert_eq!(TeamBucket::Day.floor(wednesday_noon), monday + 2 * DAY_MS);
    }

    #[test]
    fn prompts_and_productivity_counters_fold_per_hour_person_and_session() {
        let mut fold = ActivityFold::default();
        let prompt = TelemetryEventRow {
            kind: "user_prompt".into(),
            session_id: Some("s".into()),
            user_email: Some("a@example.com".into()),
            at_ms: HOUR_MS + 5,
            ..TelemetryEventRow::default()
        };
        fold.add_event(&prompt);
        fold.add_event(&prompt);
        fold.add_event(&TelemetryEventRow {
            kind: "api_request".into(),
            ..prompt.clone()
        });
        let point = |metric: &str, value: i64, delta: i64| TelemetryPointRow {
            metric: metric.into(),
            session_id: Some("s".into()),
            account_uuid: Some("acct".into()),
            value_nanos: value,
            time_ms: HOUR_MS + 60_000,
            delta,
            ..TelemetryPointRow::default()
        };
        fold.add_point(&point("lines_of_code.added", 12 * ONE, 1));
        fold.add_point(&point("lines_of_code.added", 3 * ONE, 1));
        fold.add_point(&point("cost", ONE, 1));
        fold.add_point(&point("commits", 9 * ONE, 0));
        let rows: Vec<_> = fold
            .rows
            .iter()
            .map(|(k, v)| (k.bucket, k.user_key.as_str(), k.metric.as_str(), *v))
            .collect();
        assert_eq!(
            rows,
            [
                (HOUR_MS, "a@example.com", PROMPTS, 2 * ONE),
                (HOUR_MS, "acct", "lines_of_code.added", 15 * ONE),
            ]
        );
        let mut sums = TeamSums::default();
        for (key, value) in &fold.rows {
            sums.add_activity(&key.metric, *value);
        }
        sums.add_activity("active_time.user", 1_500_000_000);
        assert_eq!((sums.prompts, sums.lines_added), (2, 15));
        assert_eq!(sums.active_time_user_s, 1.5);
    }

    #[test]
    fn a_name_cannot_break_a_csv_row_or_become_a_formula() {
        assert_eq!(csv_text("a@example.com"), "a@example.com");
        assert_eq!(csv_text("x,\"y\"\nz"), "\"x,\"\"y\"\"\nz\"");
        assert_eq!(csv_text("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
    }
}
