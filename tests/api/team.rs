//! The team view (`/api/team`, the `/team` page): a hand-counted team of three over three
//! days and two weeks, sent as Claude Code's OTLP logs and counters (one person's counters as
//! running totals), on both stores. Every person's day must equal the hand count: cost,
//! tokens, sessions, prompts, requests, errors, active time, lines, commits, pull requests and
//! edit decisions; the page must show the same in Chromium, and its CSV the same lines.

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::helpers::{Backend, T0, TestApp, approx};

const DAY: i64 = 86_400_000;
const READER: &str = "reader";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
/// Carol's telemetry names her account only.
const CAROL: &str = "acct-carol";

fn attribute(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

fn text(s: &str) -> Value {
    json!({ "stringValue": s })
}

/// Who a record or point is from: an email, or (Carol) an account only.
fn identity(session: &str, person: &str) -> Vec<Value> {
    let who = if person == CAROL {
        attribute("user.account_uuid", text(person))
    } else {
        attribute("user.email", text(person))
    };
    vec![attribute("session.id", text(session)), who]
}

fn record(session: &str, person: &str, name: &str, at_ms: i64, extra: Vec<Value>) -> Value {
    let mut attributes = identity(session, person);
    attributes.push(attribute("event.name", text(name)));
    attributes.push(attribute("prompt.id", text(&format!("{session}-p"))));
    attributes.extend(extra);
    json!({
        "timeUnixNano": format!("{}", at_ms * 1_000_000),
        "body": text(&format!("claude_code.{name}")),
        "attributes": attributes,
    })
}

fn request(session: &str, person: &str, at_ms: i64, cost: f64, tokens: [i64; 4]) -> Value {
    record(
        session,
        person,
        "api_request",
        at_ms,
        vec![
            attribute("model", text("claude-opus-4-1")),
            attribute("cost_usd", json!({"doubleValue": cost})),
            attribute("input_tokens", json!({"intValue": tokens[0]})),
            attribute("output_tokens", json!({"intValue": tokens[1]})),
            attribute("cache_read_tokens", json!({"intValue": tokens[2]})),
            attribute("cache_creation_tokens", json!({"intValue": tokens[3]})),
            attribute("duration_ms", json!({"intValue": 800})),
        ],
    )
}

fn prompt(session: &str, person: &str, at_ms: i64) -> Value {
    record(
        session,
        person,
        "user_prompt",
        at_ms,
        vec![attribute("prompt_length", json!({"intValue": 20}))],
    )
}

fn api_error(session: &str, person: &str, at_ms: i64) -> Value {
    record(
        session,
        person,
        "api_error",
        at_ms,
        vec![
            attribute("model", text("claude-opus-4-1")),
            attribute("status_code", json!({"intValue": 529})),
            attribute("error", text("Overloaded")),
        ],
    )
}

fn logs(records: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"resourceLogs": [{
        "resource": {"attributes": [attribute("service.name", text("claude-code"))]},
        "scopeLogs": [{"scope": {"name": "com.anthropic.claude_code.events"},
                       "logRecords": records}],
    }]}))
    .unwrap()
}

/// One counter point: `metric` with its attributes (`type`, `decision`, …) at `at_ms`.
struct Point<'a> {
    metric: &'a str,
    attributes: &'a [(&'a str, &'a str)],
    value: f64,
}

/// An export of `points` for a session, as increases (temporality 1) or running totals (2)
/// counted from `start_ms`.
fn counters(
    session: &str,
    person: &str,
    temporality: i64,
    start_ms: i64,
    at_ms: i64,
    points: &[Point<'_>],
) -> Vec<u8> {
    let metrics: Vec<Value> = points
        .iter()
        .map(|p| {
            let mut attributes = identity(session, person);
            for (key, value) in p.attributes {
                attributes.push(attribute(key, text(value)));
            }
            json!({"name": format!("claude_code.{}", p.metric), "sum": {
            "aggregationTemporality": temporality, "isMonotonic": true,
            "dataPoints": [{
                "attributes": attributes,
                "startTimeUnixNano": format!("{}", start_ms * 1_000_000),
                "timeUnixNano": format!("{}", at_ms * 1_000_000),
                "asDouble": p.value,
            }]}})
        })
        .collect();
    serde_json::to_vec(&json!({"resourceMetrics": [{
        "resource": {"attributes": [attribute("service.name", text("claude-code"))]},
        "scopeMetrics": [{"metrics": metrics}]}]}))
    .unwrap()
}

async fn post(app: &TestApp, path: &str, body: Vec<u8>) {
    let response = app.post_raw(path, body).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// The team's three days (Friday 2026-11-20, the Saturday after, and the Monday of the next
/// week), sent as Claude Code sends them.
async fn send_the_team(app: &TestApp) {
    // The server's clock after the team's last day: it takes no telemetry from the future.
    app.clock.set(T0 + 4 * DAY);
    let d1 = T0;
    let d2 = T0 + DAY;
    let d3 = T0 + 3 * DAY;
    // Alice, day 1: two requests, an error, two prompts; her counters (cost among them,
    // which her requests already measure: not counted again).
    post(
        app,
        "/v1/logs",
        logs(vec![
            prompt("A1", ALICE, d1 + 1_000),
            request("A1", ALICE, d1 + 2_000, 0.50, [100, 50, 900, 0]),
            api_error("A1", ALICE, d1 + 3_000),
            prompt("A1", ALICE, d1 + 4_000),
            request("A1", ALICE, d1 + 5_000, 0.25, [200, 20, 0, 100]),
            // Day 2, another session.
            prompt("A2", ALICE, d2 + 1_000),
            request("A2", ALICE, d2 + 2_000, 1.00, [10, 10, 10, 10]),
            // Carol, the next Monday.
            prompt("C1", CAROL, d3 + 1_000),
            request("C1", CAROL, d3 + 2_000, 0.10, [5, 5, 0, 0]),
        ]),
    )
    .await;
    let alice_day1 = [
        Point {
            metric: "cost.usage",
            attributes: &[("model", "claude-opus-4-1")],
            value: 0.75,
        },
        Point {
            metric: "lines_of_code.count",
            attributes: &[("type", "added")],
            value: 120.0,
        },
        Point {
            metric: "lines_of_code.count",
            attributes: &[("type", "removed")],
            value: 30.0,
        },
        Point {
            metric: "commit.count",
            attributes: &[],
            value: 2.0,
        },
        Point {
            metric: "pull_request.count",
            attributes: &[],
            value: 1.0,
        },
        Point {
            metric: "active_time.total",
            attributes: &[("type", "user")],
            value: 600.0,
        },
        Point {
            metric: "active_time.total",
            attributes: &[("type", "cli")],
            value: 1_200.5,
        },
        Point {
            metric: "code_edit_tool.decision",
            attributes: &[
                ("decision", "accept"),
                ("tool_name", "Edit"),
                ("source", "config"),
            ],
            value: 5.0,
        },
        Point {
            metric: "code_edit_tool.decision",
            attributes: &[
                ("decision", "reject"),
                ("tool_name", "Write"),
                ("source", "user_reject"),
            ],
            value: 1.0,
        },
    ];
    post(
        app,
        "/v1/metrics",
        counters("A1", ALICE, 1, d1, d1 + 59_000, &alice_day1),
    )
    .await;
    post(
        app,
        "/v1/metrics",
        counters(
            "A2",
            ALICE,
            1,
            d2,
            d2 + 59_000,
            &[Point {
                metric: "lines_of_code.count",
                attributes: &[("type", "added")],
                value: 7.0,
            }],
        ),
    )
    .await;
    post(
        app,
        "/v1/metrics",
        counters(
            "C1",
            CAROL,
            1,
            d3,
            d3 + 59_000,
            &[
                Point {
                    metric: "pull_request.count",
                    attributes: &[],
                    value: 2.0,
                },
                Point {
                    metric: "code_edit_tool.decision",
                    attributes: &[("decision", "reject"), ("tool_name", "Edit")],
                    value: 3.0,
                },
            ],
        ),
    )
    .await;
    // Bob, day 1: counters only, as running totals in two exports (the second repeats
    // what the first counted, plus the rest).
    for (at, cost, input, lines) in [(30_000, 0.15, 400.0, 20.0), (90_000, 0.40, 1_000.0, 50.0)] {
        post(
            app,
            "/v1/metrics",
            counters(
                "B1",
                BOB,
                2,
                d1,
                d1 + at,
                &[
                    Point {
                        metric: "cost.usage",
                        attributes: &[("model", "claude-sonnet-4-6")],
                        value: cost,
                    },
                    Point {
                        metric: "token.usage",
                        attributes: &[("model", "claude-sonnet-4-6"), ("type", "input")],
                        value: input,
                    },
                    Point {
                        metric: "token.usage",
                        attributes: &[("model", "claude-sonnet-4-6"), ("type", "output")],
                        value: input / 5.0,
                    },
                    Point {
                        metric: "lines_of_code.count",
                        attributes: &[("type", "added")],
                        value: lines,
                    },
                    Point {
                        metric: "commit.count",
                        attributes: &[],
                        value: 1.0,
                    },
                    Point {
                        metric: "active_time.total",
                        attributes: &[("type", "user")],
                        value: 300.0,
                    },
                ],
            ),
        )
        .await;
    }
}

/// A person's expected sums, by the hand count above (absent: zero).
#[derive(Default, Clone, Copy)]
struct Expected {
    cost: f64,
    tokens: [i64; 4],
    sessions: i64,
    prompts: i64,
    requests: i64,
    errors: i64,
    active: (f64, f64),
    lines: (i64, i64),
    commits: i64,
    pull_requests: i64,
    edits: (i64, i64),
}

fn alice_day1() -> Expected {
    Expected {
        cost: 0.75,
        tokens: [300, 70, 900, 100],
        sessions: 1,
        prompts: 2,
        requests: 2,
        errors: 1,
        active: (600.0, 1_200.5),
        lines: (120, 30),
        commits: 2,
        pull_requests: 1,
        edits: (5, 1),
    }
}

fn alice_day2() -> Expected {
    Expected {
        cost: 1.00,
        tokens: [10, 10, 10, 10],
        sessions: 1,
        prompts: 1,
        requests: 1,
        lines: (7, 0),
        ..Expected::default()
    }
}

fn bob_day1() -> Expected {
    Expected {
        cost: 0.40,
        tokens: [1_000, 200, 0, 0],
        sessions: 1,
        active: (300.0, 0.0),
        lines: (50, 0),
        commits: 1,
        ..Expected::default()
    }
}

fn carol_day3() -> Expected {
    Expected {
        cost: 0.10,
        tokens: [5, 5, 0, 0],
        sessions: 1,
        prompts: 1,
        requests: 1,
        pull_requests: 2,
        edits: (0, 3),
        ..Expected::default()
    }
}

fn sum(a: Expected, b: Expected) -> Expected {
    let pair = |x: (i64, i64), y: (i64, i64)| (x.0 + y.0, x.1 + y.1);
    Expected {
        cost: a.cost + b.cost,
        tokens: [0, 1, 2, 3].map(|i| a.tokens[i] + b.tokens[i]),
        sessions: a.sessions + b.sessions,
        prompts: a.prompts + b.prompts,
        requests: a.requests + b.requests,
        errors: a.errors + b.errors,
        active: (a.active.0 + b.active.0, a.active.1 + b.active.1),
        lines: pair(a.lines, b.lines),
        commits: a.commits + b.commits,
        pull_requests: a.pull_requests + b.pull_requests,
        edits: pair(a.edits, b.edits),
    }
}

fn check(sums: &Value, want: Expected, what: &str) {
    approx(&sums["cost_usd"], want.cost);
    let [input, output, cache_read, cache_creation] = want.tokens;
    let counts = [
        ("input_tokens", input),
        ("output_tokens", output),
        ("cache_read_tokens", cache_read),
        ("cache_creation_tokens", cache_creation),
        ("total_tokens", input + output + cache_read + cache_creation),
        ("sessions", want.sessions),
        ("prompts", want.prompts),
        ("api_requests", want.requests),
        ("api_errors", want.errors),
        ("lines_added", want.lines.0),
        ("lines_removed", want.lines.1),
        ("commits", want.commits),
        ("pull_requests", want.pull_requests),
        ("edits_accepted", want.edits.0),
        ("edits_rejected", want.edits.1),
    ];
    for (field, value) in counts {
        assert_eq!(sums[field], value, "{what}: {field} in {sums}");
    }
    assert_eq!(sums["active_time_user_s"], want.active.0, "{what}: {sums}");
    assert_eq!(sums["active_time_cli_s"], want.active.1, "{what}: {sums}");
}

async fn get_team(app: &TestApp, query: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/api/team?{query}")))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap()
}

async fn team(app: &TestApp, query: &str) -> Value {
    let response = get_team(app, query).await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

/// 2026-11-20 00:00 UTC, the first day's bucket.
const DAY1: i64 = T0 - 10 * 3_600_000;
/// 2026-11-16, the Monday of the first week.
const WEEK1: i64 = DAY1 - 4 * DAY;

fn range() -> String {
    format!("start={}&end={}", T0 - 3_600_000, T0 + 4 * DAY)
}

async fn each_persons_day_is_the_hand_count(backend: Backend) {
    let mut app = TestApp::spawn_on_with(backend, |c| c.tokens.read = vec![READER.into()]).await;
    send_the_team(&app).await;

    let by_day = team(&app, &format!("bucket=day&{}", range())).await;
    assert_eq!(by_day["bucket"], "day");
    assert_eq!(by_day["range"]["start"], DAY1, "{by_day}");
    assert_eq!(by_day["range"]["end"], DAY1 + 5 * DAY, "{by_day}");
    assert_eq!(by_day["truncated"], false);
    let people: Vec<&str> = by_day["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["person"].as_str().unwrap())
        .collect();
    assert_eq!(people, [ALICE, BOB, CAROL], "most expensive first");
    let person = |answer: &Value, name: &str| -> Value {
        answer["people"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["person"] == name)
            .cloned()
            .unwrap()
    };
    let starts = |p: &Value| -> Vec<i64> {
        p["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["start"].as_i64().unwrap())
            .collect()
    };
    let alice = person(&by_day, ALICE);
    assert_eq!(starts(&alice), [DAY1, DAY1 + DAY]);
    check(&alice["buckets"][0], alice_day1(), "alice, day 1");
    check(&alice["buckets"][1], alice_day2(), "alice, day 2");
    check(&alice["totals"], sum(alice_day1(), alice_day2()), "alice");
    let bob = person(&by_day, BOB);
    assert_eq!(starts(&bob), [DAY1]);
    check(&bob["buckets"][0], bob_day1(), "bob, day 1");
    check(&bob["totals"], bob_day1(), "bob");
    let carol = person(&by_day, CAROL);
    assert_eq!(starts(&carol), [DAY1 + 3 * DAY]);
    check(&carol["totals"], carol_day3(), "carol");

    // By week: Friday and Saturday are one week, Monday the next.
    let by_week = team(&app, &format!("bucket=week&{}", range())).await;
    assert_eq!(by_week["range"]["start"], WEEK1, "{by_week}");
    let alice = person(&by_week, ALICE);
    assert_eq!(starts(&alice), [WEEK1]);
    check(
        &alice["buckets"][0],
        sum(alice_day1(), alice_day2()),
        "alice, week 1",
    );
    assert_eq!(starts(&person(&by_week, CAROL)), [WEEK1 + 7 * DAY]);

    // The same as CSV: a line per person and day, in the answer's order.
    let response = get_team(&app, &format!("bucket=day&format=csv&{}", range())).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"),
        "{:?}",
        response.headers()
    );
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(
        lines[0].starts_with("person,bucket_start,cost_usd,"),
        "{csv}"
    );
    assert_eq!(
        lines[1],
        "alice@example.com,2026-11-20T00:00:00.000Z,0.75,300,70,900,100,1370,1,2,2,1,600,\
         1200.5,120,30,2,1,5,1",
        "{csv}"
    );
    assert!(
        lines[4].starts_with("acct-carol,2026-11-23T00:00:00.000Z,0.1,"),
        "{csv}"
    );

    // A store from before the activity rollup: the upgrade fills it from the stored telemetry,
    // and the answer is the same.
    // (Nor what came after it: the agent of a session, by telemetry and by hooks.)
    let earlier = "DROP TABLE activity_rollup_hour; ALTER TABLE telemetry_sessions DROP COLUMN \
                   agent; ALTER TABLE sessions DROP COLUMN coding_agent;";
    app.execute(
        &format!("{earlier} PRAGMA user_version = 20;"),
        &format!("{earlier} UPDATE hookwatch_schema SET version = 17;"),
    );
    app = app
        .restart_with(|c| c.tokens.read = vec![READER.into()])
        .await;
    let upgraded = team(&app, &format!("bucket=day&{}", range())).await;
    assert_eq!(upgraded, by_day);
}

/// People are named only behind a read token, and bad parameters are named.
#[tokio::test]
async fn the_team_is_shown_only_behind_a_read_token_and_bad_input_is_named() {
    let open = TestApp::spawn().await;
    let response = open.client.get(open.url("/api/team")).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert!(body.to_string().contains("--read-token"), "{body}");

    let app = TestApp::spawn_with(|c| c.tokens.read = vec![READER.into()]).await;
    let anonymous = app.client.get(app.url("/api/team")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    for (query, field) in [
        ("bucket=month", "bucket"),
        ("format=xml", "format"),
        ("hours=0", "hours"),
        ("bucket=day&hours=5000", "days"),
    ] {
        let response = get_team(&app, query).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert!(body.to_string().contains(field), "{query}: {body}");
    }
    let empty = team(&app, "bucket=week&hours=2000").await;
    assert_eq!(empty["people"], json!([]), "{empty}");
}

/// The `/team` page shows each person's figures as the API gives them, in Chromium, and its
/// CSV download holds the API's CSV.
#[tokio::test]
async fn the_team_page_shows_each_persons_figures_and_downloads_the_csv() {
    let app = TestApp::spawn_with(|c| c.tokens.read = vec![READER.into()]).await;
    send_the_team(&app).await;
    let browser = Browser::start().await;
    browser
        .goto(&app.url(&format!("/team?token={READER}&bucket=day&{}", range())))
        .await;
    let patience = std::time::Duration::from_secs(20);
    let rows = browser
        .wait_for(
            "the team's table",
            "const rows = [...document.querySelectorAll('#people tbody tr')];
             return rows.length === 3 ? rows.map(r => [...r.querySelectorAll('td')]
                 .map(td => td.textContent)) : null",
            json!([]),
            patience,
        )
        .await;
    let header = browser
        .run(
            "return [...document.querySelectorAll('#people thead th')].map(th => th.textContent)",
            json!([]),
        )
        .await;
    let column = |name: &str| -> usize {
        header
            .as_array()
            .unwrap()
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("column {name} in {header}"))
    };
    let cell = |row: usize, name: &str| rows[row][column(name)].as_str().unwrap().to_owned();
    assert_eq!(cell(0, "Person"), ALICE);
    assert_eq!(cell(0, "Cost"), "$1.75");
    assert_eq!(cell(0, "Tokens"), "1,410");
    assert_eq!(cell(0, "Sessions"), "2");
    assert_eq!(cell(0, "Prompts"), "3");
    assert_eq!(cell(0, "Lines +/−"), "+127 / −30");
    assert_eq!(cell(0, "Commits"), "2");
    assert_eq!(cell(0, "PRs"), "1");
    assert_eq!(cell(0, "Edits ✓/✗"), "5 / 1");
    assert_eq!(cell(0, "Active (you / Claude)"), "10.0 min / 20.0 min");
    assert_eq!(cell(0, "API errors"), "1");
    assert_eq!(cell(1, "Person"), BOB);
    assert_eq!(cell(1, "Cost"), "$0.40");
    assert_eq!(cell(2, "Person"), CAROL);
    assert_eq!(cell(2, "PRs"), "2");
    // Charts over time: one bar per day of the range for each chart.
    let bars = browser
        .run(
            "return [...document.querySelectorAll('svg.chart')].map(c => [c.id,
                 c.querySelectorAll('rect').length])",
            json!([]),
        )
        .await;
    assert!(
        bars.as_array().unwrap().len() >= 4
            && bars
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c[1].as_i64().unwrap() >= 1),
        "{bars}"
    );
    // Picking a person narrows the charts to them: Carol's cost is on the fourth day only.
    let carol_cost = browser
        .run(
            "const pick = document.getElementById('person');
             pick.value = arguments[0];
             pick.dispatchEvent(new Event('change'));
             return [...document.querySelectorAll('#chart-cost rect')]
                 .map(r => Number(r.getAttribute('height')) > 0)",
            json!([CAROL]),
        )
        .await;
    assert_eq!(carol_cost, json!([false, false, false, true, false]));
    // The CSV download is the API's CSV.
    let downloaded = browser
        .wait_for(
            "the CSV download",
            "if (!window.downloadStarted) {
               window.downloadStarted = true;
               document.getElementById('download-csv').click();
             }
             return typeof lastCsv === 'string' ? lastCsv : null",
            json!([]),
            patience,
        )
        .await;
    let api_csv = get_team(&app, &format!("bucket=day&format=csv&{}", range()))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(downloaded.as_str().unwrap(), api_csv);
    assert!(browser.console_errors().await.is_empty());
    browser.quit().await;
}

crate::on_each_store!(each_persons_day_is_the_hand_count);
