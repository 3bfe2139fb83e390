//! The Redis cache against a real, private `redis-server`: hits and invalidation, and the
//! faults (kill, freeze, restart) that must never fail a request, lose an event or serve a
//! stale view.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use hookwatch::config::Config;
use serde_json::{Value, json};

use crate::fixtures::{envelope, in_subagent};
use crate::helpers::{T0, TestApp, all_events};
use crate::redis_server::RedisServer;

const TIMEOUT: Duration = Duration::from_millis(50);

async fn spawn_cached(redis_url: String, configure: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(|config| {
        config.cache.redis_url = Some(redis_url);
        // These tests hold the Redis tier to its rules: the in-process tier, which would
        // answer first, is off (`in_process_views_answer_until_a_commit` tests it).
        config.cache.local_views = false;
        config.cache.command_timeout = TIMEOUT;
        config.cache.maintenance_interval = Duration::from_millis(100);
        configure(config);
    })
    .await
}

/// Spawns with a cache and waits until the start-up warm-up is done.
async fn spawn_warm(redis_url: String, configure: impl FnOnce(&mut Config)) -> TestApp {
    let app = spawn_cached(redis_url, configure).await;
    wait_for_health(
        &app,
        "the start-up warm-up",
        Duration::from_secs(10),
        cache_is_warm,
    )
    .await;
    app
}

async fn health(app: &TestApp) -> Value {
    app.client
        .get(app.url("/api/agents/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls health until `condition` holds, failing after `within`.
async fn wait_for_health(
    app: &TestApp,
    what: &str,
    within: Duration,
    condition: impl Fn(&Value) -> bool,
) -> Value {
    crate::helpers::wait_until(what, within, || health(app), condition).await
}

fn cache_is_warm(h: &Value) -> bool {
    h["redis"]["status"] == "up"
        && h["cache"]["dirty"] == false
        && h["cache"]["warmup"]["runs"].as_u64() >= Some(1)
        && h["cache"]["warmup"]["in_progress"] == false
}

/// (hits, misses) of one view.
async fn view_counts(app: &TestApp, view: &str) -> (u64, u64) {
    let h = health(app).await;
    let v = &h["cache"]["views"][view];
    (v["hits"].as_u64().unwrap(), v["misses"].as_u64().unwrap())
}

/// Every event in the live stream, oldest first (each entry holds a batch).
fn streamed_events(app: &TestApp, redis: &RedisServer) -> Vec<Value> {
    let entries: Vec<(String, Vec<String>)> = redis.command(
        redis::cmd("XRANGE")
            .arg(&app.cache_keys.event_stream)
            .arg("-")
            .arg("+"),
    );
    entries
        .into_iter()
        .flat_map(|(_, fields)| {
            // Field, value, field, value: `origin`, `events` and `agents`.
            let field = |name: &str| {
                let at = fields.iter().position(|f| f == name);
                at.and_then(|i| fields.get(i + 1)).cloned()
            };
            assert!(field("origin").is_some(), "{fields:?}");
            serde_json::from_str::<Vec<Value>>(&field("events").expect("an events field"))
                .expect("a JSON array of events")
        })
        .collect()
}

/// A subagent that starts and stops: one execution, ten minutes before the clock's `T0` plus
/// `at_ms` (today's metrics end at the clock's now).
fn subagent_run(session: &str, agent_id: &str, at_ms: i64) -> [Value; 2] {
    let fields = || in_subagent(agent_id, "Explore", json!({}));
    let at_ms = at_ms - 600_000;
    [
        envelope("cache-app", session, "SubagentStart", at_ms, fields()),
        envelope("cache-app", session, "SubagentStop", at_ms + 500, fields()),
    ]
}

async fn executions(app: &TestApp) -> i64 {
    app.get_ok("/api/agents/metrics/current").await["executions_today"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn repeated_reads_are_hits_and_an_ingested_event_invalidates_them() {
    let redis = RedisServer::start();
    let app = spawn_warm(redis.url(), |_| {}).await;

    // The warm-up cached today's metrics, so even the first read is a hit.
    let before = view_counts(&app, "metrics").await;
    let first = app.get_ok("/api/agents/metrics/current").await;
    let second = app.get_ok("/api/agents/metrics/current").await;
    assert_eq!(first, second);
    assert_eq!(first["executions_today"], 0);
    let after = view_counts(&app, "metrics").await;
    assert_eq!(after, (before.0 + 2, before.1), "two hits, no miss");

    for event in subagent_run("S1", "a1", 1_000) {
        app.send_event(&event).await;
    }
    let third = app.get_ok("/api/agents/metrics/current").await;
    assert_eq!(
        third["executions_today"], 1,
        "the next read reflects the event"
    );
    let fourth = app.get_ok("/api/agents/metrics/current").await;
    assert_eq!(fourth, third);
    assert_eq!(
        view_counts(&app, "metrics").await,
        (after.0 + 1, after.1 + 1),
        "one miss after the invalidation, then a hit"
    );

    // A rolling range is one key per minute: the same `hours=6` read hits.
    let (hits, misses) = view_counts(&app, "distribution").await;
    app.clock.set(T0 + 10_000);
    app.get_ok("/api/agents/types/distribution?hours=6").await;
    app.clock.set(T0 + 40_000); // later within the same minute
    app.get_ok("/api/agents/types/distribution?hours=6").await;
    assert_eq!(
        view_counts(&app, "distribution").await,
        (hits + 1, misses + 1)
    );

    // So are the defaults (the last 24 hours): the warm-up's key is still the one read.
    let (hits, _) = view_counts(&app, "tool_usage").await;
    app.get_ok("/api/agents/tools/usage").await;
    app.clock.set(T0 + 50_000);
    app.get_ok("/api/agents/tools/usage").await;
    assert_eq!(view_counts(&app, "tool_usage").await.0, hits + 1);

    // Recent events and filter options are cached and invalidated the same way.
    let recent = app.get_ok("/events/recent?limit=10").await;
    assert_eq!(recent.as_array().unwrap().len(), 2);
    app.get_ok("/events/recent?limit=10").await;
    assert_eq!(view_counts(&app, "recent_events").await.0, 1);

    // Write-through also kept the live state.
    let streamed = streamed_events(&app, &redis);
    let types: Vec<&str> = streamed
        .iter()
        .map(|e| e["hook_event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["SubagentStart", "SubagentStop"],
        "the stream holds the new events"
    );
    let active: Vec<String> = redis.command(
        redis::cmd("ZRANGE")
            .arg(&app.cache_keys.active_agents)
            .arg(0)
            .arg(-1),
    );
    assert_eq!(
        active,
        vec!["main:S1".to_owned()],
        "the session is active, the subagent done"
    );

    let metrics_text = app.get_text("/metrics").await;
    let hit_line = format!(
        "hookwatch_cache_requests_total{{view=\"metrics\",result=\"hit\"}} {}",
        after.0 + 1
    );
    assert!(
        metrics_text.contains(&hit_line),
        "{hit_line} in:\n{metrics_text}"
    );
    assert!(metrics_text.contains("hookwatch_redis_breaker_state{state=\"closed\"} 1"));
}

#[tokio::test]
async fn killing_redis_mid_load_fails_no_request_and_loses_no_event() {
    let mut redis = RedisServer::start();
    let app = Arc::new(
        spawn_warm(redis.url(), |c| {
            c.cache.breaker.cooldown = Duration::from_secs(1);
        })
        .await,
    );

    const WRITERS: i64 = 4;
    const RUNS: i64 = 60;
    let stops_sent = Arc::new(AtomicI64::new(0));
    let stops_acked = Arc::new(AtomicI64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (app, sent, acked) = (Arc::clone(&app), stops_sent.clone(), stops_acked.clone());
            tokio::spawn(async move {
                for run in 0..RUNS {
                    let [start, stop] =
                        subagent_run(&format!("W{w}"), &format!("w{w}-{run}"), run * 1_000);
                    app.send_event(&start).await;
                    sent.fetch_add(1, Ordering::SeqCst);
                    app.send_event(&stop).await;
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (app, sent, acked) = (Arc::clone(&app), stops_sent.clone(), stops_acked.clone());
            tokio::spawn(async move {
                let mut reads = 0;
                while acked.load(Ordering::SeqCst) < WRITERS * RUNS {
                    let lower = acked.load(Ordering::SeqCst);
                    let seen = executions(&app).await;
                    let upper = sent.load(Ordering::SeqCst);
                    assert!(
                        (lower..=upper).contains(&seen),
                        "a read saw {seen} executions; {lower} were acknowledged before it \
                         started and at most {upper} sent before it ended"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(30);
    while stops_acked.load(Ordering::SeqCst) < WRITERS * RUNS / 3 {
        assert!(
            Instant::now() < deadline,
            "a third of the writes were not acknowledged within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    redis.kill();

    for writer in writers {
        writer.await.expect("every write was acknowledged with 200");
    }
    for reader in readers {
        let reads = reader
            .await
            .expect("every read was correct and answered 200");
        assert!(reads > 0);
    }
    assert_eq!(executions(&app).await, WRITERS * RUNS);
    let stored = all_events(&app.client, &app.base_url).await;
    assert_eq!(
        stored.len() as i64,
        WRITERS * RUNS * 2,
        "no acknowledged event was lost"
    );
    let h = wait_for_health(&app, "the breaker to open", Duration::from_secs(5), |h| {
        h["redis"]["breaker"]["state"] != "closed"
    })
    .await;
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["redis"]["status"], "down");
}

#[tokio::test]
async fn a_frozen_redis_delays_no_request_beyond_the_timeout_and_opens_the_breaker() {
    let redis = RedisServer::start();
    let app = spawn_warm(redis.url(), |c| {
        c.cache.breaker.cooldown = Duration::from_secs(600);
    })
    .await;
    redis.freeze();

    // Generous margin: without a timeout a frozen Redis blocks these forever.
    let bound = TIMEOUT + Duration::from_millis(450);
    for i in 0..8 {
        let started = Instant::now();
        let [start, stop] = subagent_run("F1", &format!("f{i}"), i * 1_000);
        app.send_event(&start).await;
        app.send_event(&stop).await;
        let write_time = started.elapsed();
        assert!(write_time < bound * 2, "two writes took {write_time:?}");
        let started = Instant::now();
        assert_eq!(executions(&app).await, i + 1);
        let read_time = started.elapsed();
        assert!(read_time < bound, "a read took {read_time:?}");
    }
    let h = health(&app).await;
    assert_eq!(h["redis"]["breaker"]["state"], "open", "{h}");
    assert_eq!(h["redis"]["breaker"]["opened"], 1);
    let failures =
        h["redis"]["timeouts"].as_u64().unwrap() + h["redis"]["errors"].as_u64().unwrap();
    assert!(failures >= 5, "the breaker opened after five failures: {h}");
    assert!(
        h["redis"]["breaker"]["rejected"].as_u64().unwrap() > 0,
        "later calls skipped Redis"
    );
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["sqlite"]["status"], "up");
    redis.thaw();
}

#[tokio::test]
async fn after_an_outage_the_breaker_closes_and_the_cache_is_rebuilt() {
    let mut redis = RedisServer::start();
    let app = spawn_warm(redis.url(), |c| {
        c.cache.breaker.cooldown = Duration::from_millis(500);
    })
    .await;

    redis.kill();
    for event in subagent_run("R1", "r1", 1_000) {
        app.send_event(&event).await;
    }
    wait_for_health(&app, "the breaker to open", Duration::from_secs(10), |h| {
        h["redis"]["breaker"]["opened"].as_u64() >= Some(1)
    })
    .await;
    for event in subagent_run("R1", "r2", 5_000) {
        app.send_event(&event).await;
    }
    let runs_before = health(&app).await["cache"]["warmup"]["runs"]
        .as_u64()
        .unwrap();

    redis.restart();
    let h = wait_for_health(&app, "recovery", Duration::from_secs(10), |h| {
        cache_is_warm(h)
            && h["cache"]["warmup"]["runs"].as_u64() > Some(runs_before)
            && h["redis"]["breaker"]["state"] == "closed"
    })
    .await;
    assert!(
        h["redis"]["breaker"]["half_opened"].as_u64() >= Some(1),
        "{h}"
    );
    assert!(h["redis"]["breaker"]["closed"].as_u64() >= Some(1), "{h}");
    assert_eq!(h["cache"]["warmup"]["last"]["trigger"], "recovery");
    assert_eq!(h["cache"]["warmup"]["last"]["error"], Value::Null);
    assert_eq!(h["status"], "healthy");

    // The new, empty Redis holds the rebuilt views and live state...
    let pattern = format!("{}:view:metrics:*", app.cache_keys.namespace());
    let keys: Vec<String> = redis.command(redis::cmd("KEYS").arg(pattern));
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(
        streamed_events(&app, &redis).len(),
        4,
        "the stream was rebuilt from the database"
    );
    // ...and they are right: the warmed metrics are a hit that counts both executions.
    let (hits, _) = view_counts(&app, "metrics").await;
    assert_eq!(executions(&app).await, 2);
    assert_eq!(view_counts(&app, "metrics").await.0, hits + 1);
}

#[tokio::test]
async fn a_value_cached_before_an_outage_is_never_served_after_it() {
    let redis = RedisServer::start();
    let app = spawn_warm(redis.url(), |c| {
        c.cache.breaker.cooldown = Duration::from_millis(300);
    })
    .await;
    assert_eq!(executions(&app).await, 0);
    let (hits, _) = view_counts(&app, "metrics").await;
    assert_eq!(executions(&app).await, 0);
    assert_eq!(view_counts(&app, "metrics").await.0, hits + 1, "cached");

    redis.freeze();
    for i in 0..3 {
        for event in subagent_run("N1", &format!("n{i}"), i * 1_000) {
            app.send_event(&event).await;
        }
    }
    redis.thaw();
    assert_eq!(executions(&app).await, 3, "the first read after the thaw");

    wait_for_health(&app, "recovery", Duration::from_secs(10), |h| {
        cache_is_warm(h) && h["redis"]["breaker"]["state"] == "closed"
    })
    .await;
    let (hits, _) = view_counts(&app, "metrics").await;
    assert_eq!(executions(&app).await, 3);
    assert_eq!(executions(&app).await, 3);
    assert!(
        view_counts(&app, "metrics").await.0 > hits,
        "served from the cache again"
    );
}

#[tokio::test]
async fn hookwatch_starts_without_redis_and_connects_once_it_is_up() {
    let mut redis = RedisServer::start();
    redis.kill();
    let app = spawn_cached(redis.url(), |c| {
        c.cache.breaker.cooldown = Duration::from_millis(300);
    })
    .await;
    for event in subagent_run("U1", "u1", 0) {
        app.send_event(&event).await;
    }
    assert_eq!(executions(&app).await, 1);
    let h = health(&app).await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["redis"]["status"], "down");

    redis.restart();
    wait_for_health(
        &app,
        "the connection",
        Duration::from_secs(10),
        cache_is_warm,
    )
    .await;
    let (hits, _) = view_counts(&app, "metrics").await;
    assert_eq!(executions(&app).await, 1);
    assert_eq!(view_counts(&app, "metrics").await.0, hits + 1);
}

#[tokio::test]
async fn health_and_metrics_never_show_the_redis_password() {
    // Port 9 (discard) refuses connections on this machine: Redis is configured but down.
    let app = spawn_cached("redis://:hunter2-secret@127.0.0.1:9/0".into(), |_| {}).await;
    app.send_event(&envelope("p", "P1", "SessionStart", 0, json!({})))
        .await;
    let h = wait_for_health(&app, "a recorded error", Duration::from_secs(5), |h| {
        h["redis"]["last_error"].is_object()
    })
    .await;
    let text = h.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(h["redis"]["url"], "redis://***@127.0.0.1:9/0");
    assert_eq!(h["status"], "degraded");
    let metrics_text = app.get_text("/metrics").await;
    assert!(!metrics_text.contains("hunter2"));
    assert!(
        metrics_text.contains("hookwatch_redis_up 0"),
        "{metrics_text}"
    );
}

#[tokio::test]
async fn a_forced_sync_rebuilds_now_and_needs_a_cache() {
    let redis = RedisServer::start();
    let app = spawn_warm(redis.url(), |_| {}).await;
    let response = app
        .client
        .post(app.url("/api/cache/sync"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["status"] == "ran" || body["status"] == "joined",
        "{body}"
    );
    assert_eq!(body["report"]["trigger"], "forced");
    // Routine syncs are rate-limited: one ran moments ago.
    let limited: Value = app
        .client
        .post(app.url("/api/cache/sync?force=false"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(limited["status"], "rate_limited", "{limited}");

    let uncached = TestApp::spawn().await;
    let response = uncached
        .client
        .post(uncached.url("/api/cache/sync"))
        .send()
        .await
        .unwrap();
    crate::helpers::expect_error(response, 409).await;
}

#[tokio::test]
async fn a_redis_restored_from_an_old_snapshot_never_serves_its_values() {
    let mut redis = RedisServer::start();
    let app = spawn_warm(redis.url(), |c| {
        c.cache.breaker.cooldown = Duration::from_millis(300);
        // Only breaker transitions wake maintenance here, so a read may be the first call
        // after the outage: the window the dirty flag guards.
        c.cache.maintenance_interval = Duration::from_secs(3600);
    })
    .await;
    assert_eq!(executions(&app).await, 0);
    let (hits, _) = view_counts(&app, "metrics").await;
    assert_eq!(executions(&app).await, 0);
    assert_eq!(view_counts(&app, "metrics").await.0, hits + 1, "cached");
    let _: () = redis.command(&redis::cmd("SAVE"));

    redis.kill();
    // Writes fail to reach Redis (batched, so one failure per batch) until the breaker opens.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut runs = 0;
    while health(&app).await["redis"]["breaker"]["state"] != "open" {
        assert!(Instant::now() < deadline, "the breaker never opened");
        for event in subagent_run("O1", &format!("o{runs}"), runs * 100) {
            app.send_event(&event).await;
        }
        runs += 1;
    }
    // Back with the snapshot: the old epoch, generation and cached metrics (0 executions).
    redis.restart();
    // Once the breaker's 300 ms cool-down is over, the read below is the first call allowed
    // to reach the restored Redis (nothing else calls it meanwhile).
    wait_for_health(&app, "the cool-down", Duration::from_secs(10), |h| {
        h["redis"]["breaker"]["probe_in_ms"] == 0
    })
    .await;
    assert_eq!(
        executions(&app).await,
        runs,
        "the snapshot's value is never served"
    );

    // A write is the probe that closes the breaker; then a new epoch and a rebuild.
    app.send_event(&envelope(
        "cache-app",
        "O1",
        "Notification",
        -1_000,
        json!({}),
    ))
    .await;
    wait_for_health(&app, "recovery", Duration::from_secs(10), |h| {
        cache_is_warm(h) && h["redis"]["breaker"]["state"] == "closed"
    })
    .await;
    assert_eq!(executions(&app).await, runs);
}

/// Two stores on one Redis (issue 17, item 5): each store's keys carry its own identity, so B
/// never serves A's views, and the namespaces are shown in health.
#[tokio::test]
async fn two_stores_on_one_redis_stay_apart() {
    let redis = RedisServer::start();
    let a = spawn_warm(redis.url(), |_| {}).await;
    let b = spawn_warm(redis.url(), |_| {}).await;
    let (ha, hb) = (health(&a).await, health(&b).await);
    let namespace = |h: &Value| {
        h["cache"]["namespace"]
            .as_str()
            .unwrap_or_else(|| panic!("{h}"))
            .to_owned()
    };
    assert_ne!(namespace(&ha), namespace(&hb), "{ha} {hb}");
    assert!(namespace(&ha).starts_with("hookwatch:"));
    for event in crate::fixtures::main_session() {
        a.send_event(&event).await;
    }
    // Each read twice: a miss fills the cache, then a hit is served from it.
    for _ in 0..2 {
        let options = b.get_ok("/events/filter-options").await;
        assert_eq!(options["source_apps"], json!([]), "B's own (empty) store");
        assert_eq!(b.get_ok("/events/recent").await, json!([]));
        assert_eq!(b.get_ok("/api/agents/tools/usage").await["total_calls"], 0);
        let a_options = a.get_ok("/events/filter-options").await;
        assert_eq!(a_options["source_apps"], json!(["proj-alpha"]));
    }
    let (hits, _) = view_counts(&b, "filter_options").await;
    assert!(
        hits >= 1,
        "the second read of B was a hit, of B's own value"
    );
    // The namespace is the store's identity, kept in its database (so a restart keeps it).
    let db = rusqlite::Connection::open(a.data_dir.path().join("hookwatch.db")).unwrap();
    let store_id: String = db
        .query_row(
            "SELECT value FROM hookwatch_meta WHERE key = 'store_id'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(
        namespace(&health(&a).await),
        format!("hookwatch:{store_id}")
    );
}

/// Claude Code's telemetry changes the metrics cards' cost, so its commit invalidates the
/// cached views as a hook event's does: the next read is measured, never the cached estimate.
#[tokio::test]
async fn committed_telemetry_invalidates_the_cached_cards() {
    let redis = RedisServer::start();
    let app = spawn_warm(redis.url(), |_| {}).await;
    let before = app.get_ok("/api/agents/metrics/current").await;
    let cached = app.get_ok("/api/agents/metrics/current").await;
    assert_eq!(before, cached);
    assert_eq!(before["cost"]["cost_usd"], 0.0);

    let record = json!({
        "timeUnixNano": format!("{}", (T0 + 1_000) * 1_000_000),
        "body": {"stringValue": "claude_code.api_request"},
        "attributes": [
            {"key": "session.id", "value": {"stringValue": "S-otel"}},
            {"key": "event.name", "value": {"stringValue": "api_request"}},
            {"key": "cost_usd", "value": {"doubleValue": 0.42}},
        ],
    });
    let body = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]});
    let response = app
        .post_raw("/v1/logs", serde_json::to_vec(&body).unwrap())
        .await;
    assert_eq!(response.status(), 200);

    let after = app.get_ok("/api/agents/metrics/current").await;
    crate::helpers::approx(&after["cost"]["cost_usd"], 0.42);
    assert_eq!(after["cost"]["cost_source"], "telemetry", "{after}");
    assert_eq!(after["cost"]["api_requests"], 1);
}

/// With SQLite, the in-process tier answers a view read again with nothing committed since,
/// and never after an acknowledged write: the read after it has the new event.
#[tokio::test]
async fn in_process_views_answer_until_a_commit() {
    let app = TestApp::spawn().await;
    app.send_event(&envelope(
        "proj-local",
        "S-local",
        "SessionStart",
        0,
        json!({}),
    ))
    .await;
    let local_hits = |health: &Value| {
        assert_eq!(health["local_views"]["enabled"], true, "{health}");
        health["local_views"]["hits"]["recent_events"]
            .as_u64()
            .unwrap_or_else(|| panic!("no recent_events hits in {health}"))
    };
    let first = app.get_ok("/events/recent?limit=10").await;
    assert_eq!(first, app.get_ok("/events/recent?limit=10").await);
    let health = app.get_ok("/api/agents/health").await;
    assert_eq!(local_hits(&health), 1, "{health}");
    app.send_event(&envelope(
        "proj-local",
        "S-local",
        "UserPromptSubmit",
        1_000,
        json!({"prompt": "and now?"}),
    ))
    .await;
    let after = app.get_ok("/events/recent?limit=10").await;
    assert_eq!(
        after.as_array().unwrap().len(),
        first.as_array().unwrap().len() + 1,
        "{after}"
    );
    assert_eq!(
        local_hits(&app.get_ok("/api/agents/health").await),
        1,
        "the read after the commit was computed, not answered from memory"
    );
}
