//! The session-free usage totals tell the same truth as the per-session rollups: generated
//! telemetry days (API requests and errors, cost and token counters, for sessions that have
//! one, the other or both) are posted in shuffled order and random pieces, and every usage
//! view, whichever table it reads, agrees with the one-truth rule worked out here: a
//! session's `api_request` events where it has any, else its counters; errors always.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

use crate::helpers::{Backend, T0, TestApp};

const MODELS: [&str; 2] = ["claude-sonnet-4-6", "claude-opus-4-1-20250805"];

/// Generated telemetry days per store.
const CASES: usize = 16;

/// One generated record of one session.
#[derive(Debug, Clone)]
enum Record {
    /// An API request: model, cost in thousandths of a dollar, input and output tokens.
    Request(usize, i64, i64, i64),
    /// An API error of a model.
    Error(usize),
    /// A cost counter's delta point and an input-token one: model, thousandths, tokens.
    Point(usize, i64, i64),
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        (0..2usize, 0..5_000i64, 0..100_000i64, 0..10_000i64)
            .prop_map(|(m, c, i, o)| Record::Request(m, c, i, o)),
        (0..2usize).prop_map(Record::Error),
        (0..2usize, 0..5_000i64, 0..100_000i64).prop_map(|(m, c, t)| Record::Point(m, c, t)),
    ]
}

/// Sessions of records, a shuffle of all of them, and where the shuffled list is cut into
/// requests.
fn day() -> impl Strategy<Value = (Vec<Vec<Record>>, Vec<usize>, Vec<usize>)> {
    proptest::collection::vec(proptest::collection::vec(record(), 1..6), 1..5).prop_flat_map(
        |sessions| {
            let n: usize = sessions.iter().map(Vec::len).sum();
            let order = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
            let cuts = proptest::collection::vec(0..n, 0..4);
            (Just(sessions), order, cuts)
        },
    )
}

/// What a session and a model should come to: thousandths of a dollar, input and output
/// tokens, requests, errors.
type Sums = [i64; 5];

fn attribute(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

fn text(s: &str) -> Value {
    json!({ "stringValue": s })
}

/// The OTLP body of `record` (the `n`-th overall, which sets its time and keys).
fn otlp(session: &str, n: usize, record: &Record) -> (&'static str, Value) {
    let at_ns = time_of(n) * 1_000_000;
    let log = |name: &str, model: usize, mut extra: Vec<Value>| {
        extra.extend([
            attribute("session.id", text(session)),
            attribute("event.name", text(name)),
            attribute("model", text(MODELS[model])),
            attribute("request_id", text(&format!("{session}-{n}"))),
            attribute("duration_ms", json!({"intValue": 100 + n})),
        ]);
        json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{
            "timeUnixNano": at_ns.to_string(),
            "body": text(&format!("claude_code.{name}")),
            "attributes": extra,
        }]}]}]})
    };
    match *record {
        Record::Request(model, cost, input, output) => (
            "/v1/logs",
            log(
                "api_request",
                model,
                vec![
                    attribute("cost_usd", json!({"doubleValue": cost as f64 / 1000.0})),
                    attribute("input_tokens", json!({"intValue": input})),
                    attribute("output_tokens", json!({"intValue": output})),
                ],
            ),
        ),
        Record::Error(model) => (
            "/v1/logs",
            log(
                "api_error",
                model,
                vec![attribute("error", text("Overloaded"))],
            ),
        ),
        Record::Point(model, cost, tokens) => {
            let point = |kind: Option<&str>, value: f64| {
                let mut attributes = vec![
                    attribute("session.id", text(session)),
                    attribute("model", text(MODELS[model])),
                ];
                if let Some(kind) = kind {
                    attributes.push(attribute("type", text(kind)));
                }
                json!({
                    "attributes": attributes,
                    "startTimeUnixNano": (at_ns - 1_000_000).to_string(),
                    "timeUnixNano": at_ns.to_string(),
                    "asDouble": value,
                })
            };
            (
                "/v1/metrics",
                json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
                    {"name": "claude_code.cost.usage", "sum": {"aggregationTemporality": 1,
                        "isMonotonic": true, "dataPoints": [point(None, cost as f64 / 1000.0)]}},
                    {"name": "claude_code.token.usage", "sum": {"aggregationTemporality": 1,
                        "isMonotonic": true, "dataPoints": [point(Some("input"), tokens as f64)]}},
                ]}]}]}),
            )
        }
    }
}

/// A session's records, each with its time (ms).
type Sessions = BTreeMap<String, Vec<(Record, i64)>>;

/// The time of the `n`-th record overall (see [`otlp`]).
fn time_of(n: usize) -> i64 {
    T0 + 60_000 + n as i64 * 5_000
}

/// The one-truth sums of each (session, model), of the records in `[start, end)`.
fn expected(sessions: &Sessions, (start, end): (i64, i64)) -> BTreeMap<(String, usize), Sums> {
    let mut sums: BTreeMap<(String, usize), Sums> = BTreeMap::new();
    for (session, records) in sessions {
        let has_requests = records
            .iter()
            .any(|(r, _)| matches!(r, Record::Request(..)));
        for (record, at) in records {
            if !(start..end).contains(at) {
                continue;
            }
            let (model, add) = match *record {
                Record::Request(m, cost, input, output) => (m, [cost, input, output, 1, 0]),
                Record::Error(m) => (m, [0, 0, 0, 0, 1]),
                Record::Point(m, cost, tokens) if !has_requests => (m, [cost, tokens, 0, 0, 0]),
                Record::Point(..) => continue,
            };
            let entry = sums.entry((session.clone(), model)).or_default();
            for (sum, n) in entry.iter_mut().zip(add) {
                *sum += n;
            }
        }
    }
    sums
}

/// A usage row's sums, its cost in thousandths.
fn row_sums(row: &Value) -> Sums {
    [
        (row["cost_usd"].as_f64().unwrap() * 1000.0).round() as i64,
        row["input_tokens"].as_i64().unwrap(),
        row["output_tokens"].as_i64().unwrap(),
        row["requests"].as_i64().unwrap(),
        row["errors"].as_i64().unwrap(),
    ]
}

/// A timeline point's sums, its cost in thousandths.
fn point_sums(point: &Value) -> Sums {
    [
        (point["cost_usd"].as_f64().unwrap() * 1000.0).round() as i64,
        point["tokens"]["input"].as_i64().unwrap(),
        point["tokens"]["output"].as_i64().unwrap(),
        point["requests"].as_i64().unwrap(),
        point["errors"].as_i64().unwrap(),
    ]
}

fn add(into: &mut Sums, sums: Sums) {
    for (sum, n) in into.iter_mut().zip(sums) {
        *sum += n;
    }
}

/// Usage by session in `[start, end)` (whole minutes), whole and walked a page at a time,
/// against the rule: sessions wholly inside, cut by an edge, or outside.
async fn check_sessions_in(app: &TestApp, sessions: &Sessions, (start, end): (i64, i64)) {
    let mut want: BTreeMap<String, Sums> = BTreeMap::new();
    for ((session, _), sums) in expected(sessions, (start, end)) {
        add(want.entry(session).or_default(), sums);
    }
    want.retain(|_, sums| *sums != Sums::default());
    let range = format!("start={start}&end={end}");
    let whole = app
        .get_ok(&format!("/api/usage?group_by=session&{range}"))
        .await;
    let rows = whole["rows"].as_array().unwrap();
    let got: BTreeMap<String, Sums> = rows
        .iter()
        .map(|row| (row["key"].as_str().unwrap().to_owned(), row_sums(row)))
        .filter(|(_, sums)| *sums != Sums::default())
        .collect();
    assert_eq!(got, want, "by session in {range}");
    let order: Vec<(i64, i64)> = rows
        .iter()
        .map(|row| {
            let sums = row_sums(row);
            (sums[0], sums[3])
        })
        .collect();
    assert!(
        order.windows(2).all(|pair| pair[0] >= pair[1]),
        "most expensive first, then most requests: {order:?}"
    );
    let mut walked: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/usage?group_by=session&{range}&limit=3");
        if let Some(cursor) = &cursor {
            let encoded: String = url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect();
            path.push_str(&format!("&cursor={encoded}"));
        }
        let page = app.get_ok(&path).await;
        walked.extend(page["rows"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(&walked, rows, "paged in {range}");
}

/// Every view of usage against the rule: by model (the totals), by session (the rollups),
/// the card's cost, and the timeline.
async fn check(app: &TestApp, sessions: &Sessions) {
    let want = expected(sessions, (i64::MIN, i64::MAX));
    // Ranges whose edges cut the generated days' sessions: case k's records lie 5 s apart
    // from 500k + 60 s on, so its sessions span minutes, and minute edges fall inside them.
    for (from, to) in [(3, 20), (12, 13), (25, 71), (40, 140)] {
        check_sessions_in(app, sessions, (T0 + from * 60_000, T0 + to * 60_000)).await;
    }
    let mut by_model: BTreeMap<String, Sums> = BTreeMap::new();
    let mut by_session: BTreeMap<String, Sums> = BTreeMap::new();
    let mut all = Sums::default();
    for ((session, model), sums) in &want {
        add(
            by_model.entry(MODELS[*model].to_owned()).or_default(),
            *sums,
        );
        add(by_session.entry(session.clone()).or_default(), *sums);
        add(&mut all, *sums);
    }
    let rows = |answer: &Value| -> BTreeMap<String, Sums> {
        answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| (row["key"].as_str().unwrap().to_owned(), row_sums(row)))
            .filter(|(_, sums)| *sums != Sums::default())
            .collect()
    };
    by_model.retain(|_, sums| *sums != Sums::default());
    by_session.retain(|_, sums| *sums != Sums::default());
    let models = app.get_ok("/api/usage?group_by=model&hours=24").await;
    assert_eq!(rows(&models), by_model, "by model (the totals): {models}");
    let of_sessions = app.get_ok("/api/usage?group_by=session&hours=24").await;
    assert_eq!(rows(&of_sessions), by_session, "by session (the rollups)");
    // Walked two at a time with the cursor, the sessions come in the same order, each once.
    let mut walked: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/usage?group_by=session&hours=24&limit=2".to_owned();
        if let Some(cursor) = &cursor {
            let encoded: String = url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect();
            path.push_str(&format!("&cursor={encoded}"));
        }
        let page = app.get_ok(&path).await;
        let rows = page["rows"].as_array().unwrap();
        assert!(rows.len() <= 2);
        walked.extend(rows.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(&walked, of_sessions["rows"].as_array().unwrap(), "paged");
    for (model, sums) in &by_model {
        let filtered = app
            .get_ok(&format!(
                "/api/usage?group_by=session&hours=24&model={model}"
            ))
            .await;
        let mut summed = Sums::default();
        for sums in rows(&filtered).into_values() {
            add(&mut summed, sums);
        }
        assert_eq!(summed, *sums, "sessions of {model}");
    }
    let card = app.get_ok("/api/agents/metrics/current").await;
    let cost = &card["cost"];
    let card_sums = [
        (cost["cost_usd"].as_f64().unwrap() * 1000.0).round() as i64,
        cost["api_requests"].as_i64().unwrap(),
        cost["api_errors"].as_i64().unwrap(),
    ];
    assert_eq!(card_sums, [all[0], all[3], all[4]], "the card: {cost}");
    let timeline = app.get_ok("/api/usage/timeline?hours=24&bucket=1h").await;
    let mut over_time = Sums::default();
    for point in timeline["timeline"].as_array().unwrap() {
        add(&mut over_time, point_sums(point));
    }
    assert_eq!(over_time, all, "the timeline");
}

async fn the_totals_agree_with_the_rollups_whatever_the_order(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    app.clock.set(T0 + 3 * 3_600_000);
    // Generated cases (deterministic, so a failure repeats), posted and checked in turn on
    // one server: each case's sessions are new, and every check holds for all so far.
    let mut runner = TestRunner::deterministic();
    let mut all_sessions: Sessions = BTreeMap::new();
    let mut bodies: Vec<Vec<(&'static str, Value)>> = Vec::new();
    for case in 1..=CASES {
        let (sessions, order, cuts) = day().new_tree(&mut runner).unwrap().current();
        let mut records = Vec::new();
        for (s, list) in sessions.iter().enumerate() {
            let session = format!("S{case}-{s}");
            for record in list {
                records.push((session.clone(), record.clone()));
            }
        }
        let mut pieces: Vec<(&'static str, Value)> = Vec::new();
        for (i, &at) in order.iter().enumerate() {
            let (session, record) = &records[at];
            let (path, body) = otlp(session, case * 100 + at, record);
            match pieces.last_mut() {
                Some((last, into)) if *last == path && !cuts.contains(&i) => merge(into, body),
                _ => pieces.push((path, body)),
            }
            all_sessions
                .entry(session.clone())
                .or_default()
                .push((record.clone(), time_of(case * 100 + at)));
        }
        bodies.push(pieces);
    }
    let mut so_far: Sessions = BTreeMap::new();
    for (n, pieces) in bodies.into_iter().enumerate() {
        for (path, body) in pieces {
            let response = app.post_json(path, &body).await;
            assert_eq!(response.status(), 200, "{path}");
        }
        let prefix = format!("S{}-", n + 1);
        for (session, records) in &all_sessions {
            if session.starts_with(&prefix) {
                so_far.insert(session.clone(), records.clone());
            }
        }
        check(&app, &so_far).await;
        println!("case {}: {} sessions agree", n + 1, so_far.len());
    }
}

/// An `api_request` of `session` at `at_ms` costing `cost_usd`.
fn request_at(session: &str, at_ms: i64, cost_usd: f64) -> Value {
    json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{
        "timeUnixNano": (at_ms * 1_000_000).to_string(),
        "body": text("claude_code.api_request"),
        "attributes": [
            attribute("session.id", text(session)),
            attribute("event.name", text("api_request")),
            attribute("model", text(MODELS[0])),
            attribute("request_id", text(&format!("{session}-{at_ms}"))),
            attribute("cost_usd", json!({"doubleValue": cost_usd})),
            attribute("input_tokens", json!({"intValue": 100})),
            attribute("duration_ms", json!({"intValue": 900})),
        ],
    }]}]}]})
}

/// Usage by session in each range, as `(session, cost in thousandths, requests)`.
async fn sessions_in(app: &TestApp, ranges: &[(i64, i64)]) -> Vec<Vec<(String, i64, i64)>> {
    let mut answers = Vec::new();
    for (start, end) in ranges {
        let answer = app
            .get_ok(&format!(
                "/api/usage?group_by=session&start={start}&end={end}"
            ))
            .await;
        let rows: Vec<(String, i64, i64)> = answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let sums = row_sums(row);
                (row["key"].as_str().unwrap().to_owned(), sums[0], sums[3])
            })
            .collect();
        // One at a time, the cursor gives the same.
        let mut walked = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/usage?group_by=session&start={start}&end={end}&limit=1");
            if let Some(cursor) = &cursor {
                let encoded: String =
                    url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect();
                path.push_str(&format!("&cursor={encoded}"));
            }
            let page = app.get_ok(&path).await;
            walked.extend(page["rows"].as_array().unwrap().iter().map(|row| {
                let sums = row_sums(row);
                (row["key"].as_str().unwrap().to_owned(), sums[0], sums[3])
            }));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(walked, rows, "paged, {start}..{end}");
        answers.push(rows);
    }
    answers
}

/// Sessions that cross midnight, or began hours before a range, are cut at its edges; and a
/// database whose sessions were stored before their sums were kept is read alike once
/// upgraded.
async fn usage_by_session_cuts_sessions_at_the_range_edges_across_days(backend: Backend) {
    let mut app = TestApp::spawn_on(backend).await;
    let midnight = T0 - T0.rem_euclid(86_400_000) + 86_400_000;
    app.clock.set(midnight + 2 * 3_600_000);
    let minute = 60_000;
    for (session, at, cost) in [
        ("night", midnight - 90_000, 1.0),
        ("night", midnight + 90_000, 2.0),
        ("late", midnight + 30 * minute, 0.5),
        ("early", midnight - 2 * 3_600_000, 5.0),
        // A session that began two days before and is still going.
        ("long", midnight - 2 * 86_400_000, 4.0),
        ("long", midnight + 40 * minute, 0.25),
    ] {
        let response = app
            .post_json("/v1/logs", &request_at(session, at, cost))
            .await;
        assert_eq!(response.status(), 200);
    }
    let hour = 3_600_000;
    let ranges = [
        (midnight, midnight + hour),
        (midnight - hour, midnight + hour),
        (midnight - 3 * hour, midnight),
        (midnight - 3 * 86_400_000, midnight + 2 * hour),
        (midnight + 31 * minute, midnight + 2 * hour),
    ];
    let row = |key: &str, cost: i64, requests: i64| (key.to_owned(), cost, requests);
    let want = vec![
        vec![
            row("night", 2_000, 1),
            row("late", 500, 1),
            row("long", 250, 1),
        ],
        vec![
            row("night", 3_000, 2),
            row("late", 500, 1),
            row("long", 250, 1),
        ],
        vec![row("early", 5_000, 1), row("night", 1_000, 1)],
        vec![
            row("early", 5_000, 1),
            row("long", 4_250, 2),
            row("night", 3_000, 2),
            row("late", 500, 1),
        ],
        vec![row("long", 250, 1)],
    ];
    assert_eq!(sessions_in(&app, &ranges).await, want, "as written");

    // The minute rollups before midnight pruned (`--rollup-retention`), the hour ones kept:
    // the half hour before midnight reads the pruned minutes, so only what is kept counts,
    // as in every other usage read; the whole hours read as before.
    let pruned = "DELETE FROM usage_rollup WHERE bucket < ";
    app.execute(
        &format!("{pruned}{midnight};"),
        &format!("{pruned}{midnight};"),
    );
    let cut_range = (midnight - 30 * minute, midnight + hour);
    let cut = vec![
        row("night", 2_000, 1),
        row("late", 500, 1),
        row("long", 250, 1),
    ];
    let mut ranges = ranges.to_vec();
    let mut want = want;
    ranges.push(cut_range);
    want.push(cut);
    assert_eq!(
        sessions_in(&app, &ranges).await,
        want,
        "with minutes pruned"
    );

    // The database as hookwatch left it before sessions' sums were kept.
    let earlier = crate::helpers::without_session_sums();
    app.execute(
        &format!("{earlier} PRAGMA user_version = 17;"),
        &format!("{earlier} UPDATE hookwatch_schema SET version = 14;"),
    );
    app = app.restart().await;
    assert_eq!(sessions_in(&app, &ranges).await, want, "after the upgrade");
}

/// Adds `body`'s records (or points) to `into`, an OTLP body of the same signal.
fn merge(into: &mut Value, body: Value) {
    let (list, item) = if into.get("resourceLogs").is_some() {
        ("resourceLogs", body["resourceLogs"][0].clone())
    } else {
        ("resourceMetrics", body["resourceMetrics"][0].clone())
    };
    into[list].as_array_mut().unwrap().push(item);
}

crate::on_each_store!(
    the_totals_agree_with_the_rollups_whatever_the_order,
    usage_by_session_cuts_sessions_at_the_range_edges_across_days,
);
