//! `GET /metrics`: hookwatch's own counters in the Prometheus text format (0.0.4).
//!
//! The families are gathered from the service's `HealthSnapshot` and the API's own counters
//! into plain values, then written by the `prometheus-client` crate, which owns the format:
//! label values escaped (a quote, a backslash or a newline survives), `_total` on counters,
//! histogram buckets cumulative with `+Inf`. The metric names are stable: dashboards and
//! alerts use them.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::cache::breaker::BreakerState;
use crate::domain::usage::{UsageGroup, UsageRow};
use crate::health::HealthSnapshot;
use crate::telemetry::{Histogram, HistogramCounts};

use super::AppState;

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    // Read before the snapshot borrows the service; a store that cannot answer leaves the
    // usage families out of this scrape rather than failing it.
    let by_model = state.service.usage_all_time(UsageGroup::Model).await;
    let by_app = state.app_usage.rows(&state).await;
    // People only where reads need a token (`usage::identities_allowed`'s rule).
    let by_person = if state.metrics_person_label && !state.tokens.read.is_empty() {
        Some(state.service.usage_all_time(UsageGroup::User).await)
    } else {
        None
    };
    let health = state.service.health_snapshot();
    let mut families = gather(&state, &health);
    for (rows, by) in [
        (Some(by_model), &BY_MODEL),
        (Some(by_app), &BY_APP),
        (by_person, &BY_PERSON),
    ] {
        match rows {
            Some(Ok(rows)) => claude_code_usage(&mut families, &rows, by),
            Some(Err(e)) => {
                tracing::debug!(error = %e, by = by.label, "usage left out of /metrics")
            }
            None => {}
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        families.encode(),
    )
        .into_response()
}

/// A label set: `(name, value)` pairs, in the order they are written.
pub(crate) type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
enum Value {
    Counter(u64),
    /// A counter of a quantity with a fraction (dollars).
    Amount(f64),
    Gauge(i64),
    Histogram(HistogramCounts),
}

#[derive(Debug)]
struct Family {
    /// The full name; a counter's ends with `_total`, which the encoder writes itself.
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, Value)>,
}

/// The families of one scrape, in the order they are written.
#[derive(Debug, Default)]
pub(crate) struct Families(Vec<Family>);

impl Families {
    fn family(&mut self, name: &'static str, kind: MetricType, help: &'static str) -> &mut Self {
        self.0.push(Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        });
        self
    }

    pub(crate) fn counter(&mut self, name: &'static str, help: &'static str) -> &mut Self {
        self.family(name, MetricType::Counter, help)
    }

    pub(crate) fn gauge(&mut self, name: &'static str, help: &'static str) -> &mut Self {
        self.family(name, MetricType::Gauge, help)
    }

    pub(crate) fn histogram(&mut self, name: &'static str, help: &'static str) -> &mut Self {
        self.family(name, MetricType::Histogram, help)
    }

    fn sample(&mut self, labels: Labels, value: Value) -> &mut Self {
        if let Some(family) = self.0.last_mut() {
            family.samples.push((labels, value));
        }
        self
    }

    /// A sample of the current family (a counter).
    pub(crate) fn count(&mut self, labels: Labels, value: u64) -> &mut Self {
        self.sample(labels, Value::Counter(value))
    }

    /// A sample of the current family (a counter of dollars).
    pub(crate) fn amount(&mut self, labels: Labels, value: f64) -> &mut Self {
        self.sample(labels, Value::Amount(value))
    }

    /// A sample of the current family (a gauge; every gauge hookwatch has is a whole
    /// number, written without a decimal point).
    pub(crate) fn level(&mut self, labels: Labels, value: impl TryInto<i64>) -> &mut Self {
        self.sample(labels, Value::Gauge(value.try_into().unwrap_or(i64::MAX)))
    }

    /// A sample of the current family (a histogram).
    pub(crate) fn latency(&mut self, labels: Labels, histogram: &Histogram) -> &mut Self {
        self.sample(labels, Value::Histogram(histogram.prometheus_counts()))
    }

    /// The text of the exposition.
    pub(crate) fn encode(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let name = match family.kind {
                MetricType::Counter => family.name.strip_suffix("_total").unwrap_or(family.name),
                _ => family.name,
            };
            let mut metric = encoder.encode_descriptor(name, family.help, None, family.kind)?;
            for (labels, value) in &family.samples {
                let mut sample = metric.encode_family(labels)?;
                match value {
                    Value::Counter(n) => {
                        sample.encode_counter::<NoLabelSet, _, u64>(n, None)?;
                    }
                    Value::Amount(x) => {
                        sample.encode_counter::<NoLabelSet, _, u64>(x, None)?;
                    }
                    Value::Gauge(x) => sample.encode_gauge(x)?,
                    Value::Histogram(counts) => sample.encode_histogram::<NoLabelSet>(
                        counts.sum_s,
                        counts.count,
                        &counts.buckets,
                        None,
                    )?,
                }
            }
        }
        Ok(())
    }
}

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// How often `/metrics` reads usage by app: the read sums every session's rows (an app is a
/// session's), so it is taken at most once a minute and the app series lag the store by at
/// most that; the model and person series are read from session-free sums on every scrape.
const APP_USAGE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The last read of usage by app, and when it was taken.
#[derive(Debug, Default)]
pub(crate) struct AppUsage(tokio::sync::Mutex<Option<(std::time::Instant, Vec<UsageRow>)>>);

impl AppUsage {
    /// Usage by app, all time: the last read when it is younger than [`APP_USAGE_EVERY`], else
    /// a new one (scrapes that arrive meanwhile wait for it rather than read again).
    async fn rows(&self, state: &AppState) -> Result<Vec<UsageRow>, crate::service::ServiceError> {
        let mut last = self.0.lock().await;
        if let Some((taken, rows)) = last.as_ref()
            && taken.elapsed() < APP_USAGE_EVERY
        {
            return Ok(rows.clone());
        }
        let rows = state.service.usage_all_time(UsageGroup::App).await?;
        *last = Some((std::time::Instant::now(), rows.clone()));
        Ok(rows)
    }
}

/// A family's name and help.
type NameAndHelp = (&'static str, &'static str);
/// What a counter family of usage rows counts in a row.
type CountOf = fn(&UsageRow) -> i64;

/// One way `/metrics` breaks Claude Code's usage down: the label its series carry, what an
/// absent key is written as, and its four families' names and help.
struct UsageDimension {
    label: &'static str,
    absent: &'static str,
    cost: NameAndHelp,
    tokens: NameAndHelp,
    requests: NameAndHelp,
    errors: NameAndHelp,
}

const BY_MODEL: UsageDimension = UsageDimension {
    label: "model",
    absent: "unknown",
    cost: (
        "hookwatch_claude_code_cost_usd_total",
        "Claude Code's API cost in USD by model: measured by its telemetry, else estimated from transcripts.",
    ),
    tokens: (
        "hookwatch_claude_code_tokens_total",
        "Claude Code's tokens by model and type (input, output, cacheRead, cacheCreation).",
    ),
    requests: (
        "hookwatch_claude_code_api_requests_total",
        "Claude Code's API requests by model (its api_request events).",
    ),
    errors: (
        "hookwatch_claude_code_api_errors_total",
        "Claude Code's API errors by model (its api_error events).",
    ),
};

const BY_APP: UsageDimension = UsageDimension {
    label: "app",
    absent: "unknown",
    cost: (
        "hookwatch_claude_code_app_cost_usd_total",
        "Claude Code's API cost in USD by app (the hooks' source_app; claude-code for sessions only telemetry saw).",
    ),
    tokens: (
        "hookwatch_claude_code_app_tokens_total",
        "Claude Code's tokens by app and type.",
    ),
    requests: (
        "hookwatch_claude_code_app_api_requests_total",
        "Claude Code's API requests by app.",
    ),
    errors: (
        "hookwatch_claude_code_app_api_errors_total",
        "Claude Code's API errors by app.",
    ),
};

const BY_PERSON: UsageDimension = UsageDimension {
    label: "user",
    absent: "unknown",
    cost: (
        "hookwatch_claude_code_user_cost_usd_total",
        "Claude Code's API cost in USD by person (user.email, else user.account_uuid, else user.id).",
    ),
    tokens: (
        "hookwatch_claude_code_user_tokens_total",
        "Claude Code's tokens by person and type.",
    ),
    requests: (
        "hookwatch_claude_code_user_api_requests_total",
        "Claude Code's API requests by person.",
    ),
    errors: (
        "hookwatch_claude_code_user_api_errors_total",
        "Claude Code's API errors by person.",
    ),
};

/// Claude Code's API use all time, broken down by `by`, with the one truth of every usage
/// view: each session's measured use where its telemetry measured it, else its transcript
/// estimate. The labels are bounded: the dimension's key (`unknown` where the records did
/// not say), a token's `type`, a cost's `source` (`telemetry` or `estimate`); never a
/// session, and a person only behind `--metrics-person-label` and a read token. Totals only
/// grow, except when a session's first `api_request` replaces counter points already counted
/// for it (the one-truth rule takes them back), which Prometheus reads as a counter reset.
fn claude_code_usage(out: &mut Families, rows: &[UsageRow], by: &UsageDimension) {
    let key = |row: &UsageRow| {
        if row.key.is_empty() {
            by.absent.to_owned()
        } else {
            row.key.clone()
        }
    };
    out.counter(by.cost.0, by.cost.1);
    for row in rows {
        let estimated = row.estimated_cost_nanos as f64 / 1e9;
        let measured = (row.cost_nanos - row.estimated_cost_nanos) as f64 / 1e9;
        out.amount(
            vec![(by.label, key(row)), ("source", "telemetry".into())],
            measured.max(0.0),
        );
        out.amount(
            vec![(by.label, key(row)), ("source", "estimate".into())],
            estimated.max(0.0),
        );
    }
    out.counter(by.tokens.0, by.tokens.1);
    for row in rows {
        for (kind, n) in [
            ("input", row.tokens.input),
            ("output", row.tokens.output),
            ("cacheRead", row.tokens.cache_read),
            ("cacheCreation", row.tokens.cache_creation),
        ] {
            out.count(
                vec![(by.label, key(row)), ("type", kind.into())],
                u64::try_from(n).unwrap_or(0),
            );
        }
    }
    let counts: [(NameAndHelp, CountOf); 2] = [
        (by.requests, |row| row.requests),
        (by.errors, |row| row.errors),
    ];
    for ((name, help), count_of) in counts {
        out.counter(name, help);
        for row in rows {
            out.count(
                vec![(by.label, key(row))],
                u64::try_from(count_of(row)).unwrap_or(0),
            );
        }
    }
}

fn gather(state: &AppState, health: &HealthSnapshot<'_>) -> Families {
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = Families::default();
    let none = Labels::new;
    out.counter(
        "hookwatch_events_ingested_total",
        "Events committed to the store.",
    )
    .count(none(), health.ingest.ingested);
    out.counter(
        "hookwatch_events_duplicate_total",
        "Events re-sent with a known event_id (stored once).",
    )
    .count(none(), health.ingest.duplicates);
    out.gauge(
        "hookwatch_write_queue_depth",
        "Write jobs waiting for the writer.",
    )
    .level(none(), health.store.write_queue_depth);
    out.gauge(
        "hookwatch_database_bytes",
        "Bytes the database takes on disk (with its WAL).",
    )
    .level(none(), health.store.size_bytes);
    let retention = &health.retention;
    out.counter(
        "hookwatch_rows_pruned_total",
        "Rows deleted by retention, by table.",
    );
    for (table, rows) in retention.pruned.by_table() {
        out.count(labels([("table", table)]), rows);
    }
    out.counter(
        "hookwatch_prune_runs_total",
        "Pruning runs, and those that failed.",
    )
    .count(
        labels([("outcome", "ok")]),
        retention.runs - retention.failures,
    )
    .count(labels([("outcome", "failed")]), retention.failures);
    out.counter(
        "hookwatch_connections_refused_total",
        "Connections closed at once because --max-connections were open.",
    )
    .count(none(), state.connection_stats.refused.load(Relaxed));
    let grpc = &state.grpc_stats;
    out.gauge(
        "hookwatch_otlp_grpc_connections",
        "Open OTLP/gRPC connections.",
    )
    .level(none(), grpc.connections_open.load(Relaxed));
    out.counter(
        "hookwatch_otlp_grpc_connections_closed_total",
        "OTLP/gRPC connections hookwatch closed: at_cap (--otlp-grpc-max-connections were \
         open), idle (no export for --otlp-grpc-idle-timeout).",
    )
    .count(
        labels([("reason", "at_cap")]),
        grpc.connections_refused.load(Relaxed),
    )
    .count(
        labels([("reason", "idle")]),
        grpc.connections_idle_closed.load(Relaxed),
    );
    out.gauge("hookwatch_websocket_clients", "Connected /stream clients.")
        .level(none(), health.live.clients);
    out.counter(
        "hookwatch_websocket_lagged_total",
        "Times a /stream client fell behind and was told what it missed.",
    )
    .count(none(), health.live.lagged);
    out.counter(
        "hookwatch_hitl_relays_total",
        "Human-in-the-loop answers relayed to hooks, by outcome (refused: host not allowed).",
    );
    let relays = &state.relay_stats;
    for (outcome, count) in [
        ("delivered", &relays.delivered),
        ("failed", &relays.failed),
        ("refused", &relays.refused),
    ] {
        out.count(labels([("outcome", outcome)]), count.load(Relaxed));
    }
    out.counter(
        "hookwatch_otlp_records_total",
        "Claude Code's OTLP records by signal and outcome (stored; duplicate: an exporter's \
         retry; refused: reported in partial_success).",
    );
    for signal in super::otlp::Signal::ALL {
        let counts = state.otlp_stats.of(signal);
        for (outcome, count) in [
            ("stored", &counts.stored),
            ("duplicate", &counts.duplicates),
            ("refused", &counts.refused),
        ] {
            out.count(
                labels([("signal", signal.name()), ("outcome", outcome)]),
                count.load(Relaxed),
            );
        }
    }
    out.counter(
        "hookwatch_otlp_requests_refused_total",
        "OTLP export requests refused whole, by signal and reason (over_limit: past a \
         --otlp-max-* count, found before decoding; too_large; malformed; unauthenticated; \
         unavailable: not taken now; timeout).",
    );
    for signal in super::otlp::Signal::ALL {
        for why in super::otlp::Refusal::ALL {
            out.count(
                labels([("signal", signal.name()), ("reason", why.name())]),
                state.otlp_stats.of(signal).refused_requests(why),
            );
        }
    }
    out.counter(
        "hookwatch_alerts_total",
        "Alert episodes this instance opened (firing) and closed (resolved), by rule.",
    );
    for (rule, state, n) in state.alerts.counts() {
        out.count(labels([("rule", rule.as_str()), ("state", state)]), n);
    }
    let (evaluations, micros) = state.alerts.evaluation_time();
    out.counter(
        "hookwatch_alert_evaluations_total",
        "Evaluations of the alert rules made here.",
    )
    .count(none(), evaluations);
    out.counter(
        "hookwatch_alert_evaluation_microseconds_total",
        "Wall time those evaluations took, in all.",
    )
    .count(none(), micros);
    out.gauge(
        "hookwatch_alerts_firing",
        "Alert episodes open now, as the last evaluation here left them.",
    )
    .level(none(), state.alerts.firing_now());
    out.gauge(
        "hookwatch_request_body_bytes_in_flight",
        "Request body bytes being handled now (capped by --max-body-bytes-in-flight).",
    )
    .level(none(), state.body_budget.in_flight());
    out.counter(
        "hookwatch_timestamps_clamped_total",
        "Events whose timestamp was further ahead than --max-clock-skew, stored at their arrival.",
    )
    .count(none(), health.ingest.clamped_timestamps);
    out.counter(
        "hookwatch_requests_rejected_total",
        "Requests refused with a 4xx or 5xx, by reason (queue_full, unwritable, too_large, \
         invalid, unauthorized, forbidden, rate_limited, timeout, …).",
    );
    for (reason, count) in state.rejections.counts() {
        out.count(labels([("reason", reason)]), count);
    }
    let routes = state.http_metrics.routes();
    out.counter(
        "hookwatch_http_requests_total",
        "HTTP requests by method, route template and status.",
    );
    for route in &routes {
        for (status, count) in &route.statuses {
            let status = status.to_string();
            out.count(
                labels([
                    ("method", &route.method),
                    ("route", &route.route),
                    ("status", &status),
                ]),
                *count,
            );
        }
    }
    out.histogram(
        "hookwatch_http_request_duration_seconds",
        "HTTP request latency by method and route template.",
    );
    for route in &routes {
        out.sample(
            labels([("method", &route.method), ("route", &route.route)]),
            Value::Histogram(route.latency.clone()),
        );
    }
    out.gauge(
        "hookwatch_cache_enabled",
        "1 when a Redis cache is configured.",
    )
    .level(none(), u8::from(health.cache.is_some()));
    if let Some(cache) = &health.cache {
        let stats = &cache.stats;
        out.counter(
            "hookwatch_cache_requests_total",
            "View reads by view and result (a bypass is a miss that skipped Redis).",
        );
        for v in &stats.views {
            for (result, value) in [("hit", v.hits), ("miss", v.misses), ("bypass", v.bypassed)] {
                out.count(labels([("view", v.view), ("result", result)]), value);
            }
        }
        out.counter(
            "hookwatch_cache_invalidations_total",
            "Write-throughs that reached Redis.",
        )
        .count(none(), stats.invalidations);
        out.counter(
            "hookwatch_cache_write_failures_total",
            "Write-throughs that failed or were skipped by the breaker.",
        )
        .count(none(), stats.write_failures);
        out.gauge("hookwatch_cache_epoch", "The cache epoch in use.")
            .level(none(), stats.epoch);
        out.counter(
            "hookwatch_cache_syncs_total",
            "Cache rebuilds from the database.",
        )
        .count(none(), cache.warmup_runs);
        out.histogram(
            "hookwatch_cache_read_seconds",
            "View read latency by result.",
        )
        .latency(labels([("result", "hit")]), cache.hit_latency)
        .latency(labels([("result", "miss")]), cache.miss_latency);
    }
    if let Some(redis) = &health.redis {
        out.gauge("hookwatch_redis_up", "1 when Redis is reachable.")
            .level(none(), u8::from(redis.status == "up"));
        out.counter(
            "hookwatch_redis_errors_total",
            "Redis calls that failed with an error.",
        )
        .count(none(), redis.errors);
        out.counter(
            "hookwatch_redis_timeouts_total",
            "Redis calls that ran past the command timeout.",
        )
        .count(none(), redis.timeouts);
        let counts = &redis.breaker_counts;
        out.counter(
            "hookwatch_redis_breaker_rejected_total",
            "Calls the open breaker skipped with no I/O.",
        )
        .count(none(), counts.rejected);
        out.counter(
            "hookwatch_redis_breaker_transitions_total",
            "Breaker transitions by the state entered.",
        )
        .count(labels([("to", "open")]), counts.opened)
        .count(labels([("to", "half_open")]), counts.half_opened)
        .count(labels([("to", "closed")]), counts.closed);
        out.gauge(
            "hookwatch_redis_breaker_state",
            "1 for the breaker's current state.",
        );
        for state in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            out.level(
                labels([("state", state.as_str())]),
                u8::from(state == redis.breaker),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A label value as the text format escapes it (`\\`, `\"`, `\n`), read back.
    fn unescape(written: &str) -> String {
        let mut value = String::new();
        let mut chars = written.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                value.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => value.push('\n'),
                Some(escaped) => value.push(escaped),
                None => value.push('\\'),
            }
        }
        value
    }

    /// Moved from `telemetry.rs` with the exposition: the same lines, now written by the crate.
    #[test]
    fn prometheus_buckets_are_cumulative_and_end_with_the_count() {
        let h = Histogram::default();
        h.record(std::time::Duration::from_micros(80));
        h.record(std::time::Duration::from_millis(3));
        h.record(std::time::Duration::from_secs(9));
        let mut families = Families::default();
        families
            .histogram("x_seconds", "Latency.")
            .latency(labels([("view", "metrics")]), &h);
        let out = families.encode();
        assert!(
            out.contains("x_seconds_bucket{view=\"metrics\",le=\"0.0001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{view=\"metrics\",le=\"0.005\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{view=\"metrics\",le=\"5\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{view=\"metrics\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_count{view=\"metrics\"} 3\n"),
            "{out}"
        );
    }

    #[test]
    fn label_values_with_quotes_backslashes_and_newlines_survive_a_parser() {
        let awkward = "say \"hi\"\\ then\nbreak";
        let histogram = Histogram::default();
        histogram.record(std::time::Duration::from_millis(3));
        let mut families = Families::default();
        families
            .counter("t_requests_total", "Requests.")
            .count(labels([("route", awkward)]), 7)
            .gauge("t_level", "A level.")
            .level(Labels::new(), 25)
            .histogram("t_seconds", "Latency.")
            .latency(labels([("route", awkward)]), &histogram);
        let text = families.encode();
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("parses");
        let requests = scrape
            .samples
            .iter()
            .find(|s| s.metric == "t_requests_total")
            .expect("the counter, under its stable name");
        // The parser hands label values back as written; the format's escapes undone, the
        // value is the one given.
        assert_eq!(
            unescape(requests.labels.get("route").unwrap()),
            awkward,
            "{text}"
        );
        assert!(matches!(requests.value, prometheus_parse::Value::Counter(v) if v == 7.0));
        let level = scrape
            .samples
            .iter()
            .find(|s| s.metric == "t_level")
            .unwrap();
        assert!(matches!(level.value, prometheus_parse::Value::Gauge(v) if v == 25.0));
        let latency = scrape
            .samples
            .iter()
            .find(|s| s.metric == "t_seconds")
            .expect("the histogram");
        assert_eq!(unescape(latency.labels.get("route").unwrap()), awkward);
        let prometheus_parse::Value::Histogram(buckets) = &latency.value else {
            panic!("a histogram: {text}");
        };
        let at = |bound: f64| {
            buckets
                .iter()
                .find(|b| b.less_than == bound)
                .map(|b| b.count)
        };
        assert_eq!(at(0.0025), Some(0.0), "{text}");
        assert_eq!(at(0.005), Some(1.0), "{text}");
        assert_eq!(at(f64::INFINITY), Some(1.0), "{text}");
    }
}
