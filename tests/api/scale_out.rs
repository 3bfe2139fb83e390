//! PostgreSQL as the shared store: migrations under concurrent starts, foreign databases, and
//! several hookwatch processes on one database and one Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookwatch::domain::pricing::PriceTable;
use hookwatch::store::StoreError;
use hookwatch::store::postgres::{PostgresOptions, PostgresStore};
use serde_json::{Value, json};

use crate::fixtures::{envelope, in_subagent, pre_tool};
use crate::helpers::{ServerProcess, binary};
use crate::postgres::Database;
use crate::redis_server::RedisServer;
use crate::stream::{Socket, connect_to, next_of};

fn options(database: &Database, instance: &str) -> PostgresOptions {
    PostgresOptions {
        url: database.url.clone(),
        writers: 1,
        queue_capacity: 16,
        readers: 1,
        read_timeout: std::time::Duration::from_secs(2),
        instance_id: instance.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_at_once_migrate_the_schema_once() {
    let database = Database::create();
    let opens: Vec<_> = (0..6)
        .map(|n| {
            let options = options(&database, &format!("i{n}"));
            tokio::task::spawn_blocking(move || {
                PostgresStore::open(&options, Arc::new(PriceTable::default()))
            })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().expect("every instance starts"));
    }
    assert_eq!(database.count("SELECT count(*) FROM hookwatch_schema"), 1);
    assert_eq!(
        database.count("SELECT max(version) FROM hookwatch_schema"),
        20,
        "every migration ran (2: sent session ids, 3: the store id, 4: chats, 5: HITL status, \
         6: the spawn index, 7: telemetry, 8: usage rollups, 9: the trace's index, 10: alerts, \
         11: source apps, 12: prompt heads, 13: usage totals, 14: chat tails, 15: session sums, \
         16: sessions by when telemetry saw them, 17: counter series, 18: people's activity, \
         19: the agent of a telemetry session, 20: the agent of a hooks' session)"
    );
    assert_eq!(
        database.count(
            "SELECT count(*) FROM information_schema.tables
             WHERE table_schema = 'public' AND table_name = 'events'"
        ),
        1
    );
    for store in &stores {
        hookwatch::store::Store::close(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_not_hookwatchs_is_refused_and_left_alone() {
    let database = Database::create();
    database.count("SELECT count(*) FROM (SELECT 1) one");
    let url = database.url.clone();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .batch_execute("CREATE TABLE events (id int); INSERT INTO events VALUES (42);")
            .unwrap();
    })
    .join()
    .unwrap();
    let options = options(&database, "i");
    let refused = tokio::task::spawn_blocking(move || {
        PostgresStore::open(&options, Arc::new(PriceTable::default()))
    })
    .await
    .unwrap();
    match refused {
        Err(StoreError::Foreign(message)) => assert!(message.contains("events"), "{message}"),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("a foreign database was opened"),
    }
    assert_eq!(
        database.count("SELECT count(*) FROM events WHERE id = 42"),
        1
    );
    assert_eq!(
        database.count("SELECT count(*) FROM pg_tables WHERE tablename = 'hookwatch_schema'"),
        0,
        "nothing was created"
    );
}

/// Runs `hookwatch serve --addr 127.0.0.1:0` with `flags`, expects it to refuse to start, and
/// returns what it said.
async fn refused_start(flags: &[&str]) -> String {
    let output = tokio::process::Command::new(binary())
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(flags)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "the server started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn an_unreachable_database_fails_the_start_with_a_clear_message() {
    let stderr = refused_start(&[
        "--database-url",
        "postgres://hookwatch:secret@127.0.0.1:1/nowhere",
    ])
    .await;
    assert!(
        stderr.contains(
            "could not connect to PostgreSQL at postgres://hookwatch:***@127.0.0.1:1/nowhere"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret"),
        "the password is never shown: {stderr}"
    );
}

/// Two (or more) `hookwatch serve` processes on one PostgreSQL database and one private
/// redis-server, as a team would run them behind a load balancer.
struct Fleet {
    database: Database,
    redis: RedisServer,
    data_dir: tempfile::TempDir,
}

impl Fleet {
    fn new() -> Self {
        Self {
            database: Database::create(),
            redis: RedisServer::start(),
            data_dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Instances `a` and `b`, once `b` reads the Redis stream (until then `b`'s reads bypass
    /// the cache and its live clients miss `a`'s events).
    async fn two_with_b_reading(&self) -> (ServerProcess, ServerProcess) {
        let a = self.instance("a").await;
        let b = self.instance("b").await;
        wait_for(
            &b,
            "b's redis reader",
            Duration::from_secs(10),
            redis_reading,
        )
        .await;
        (a, b)
    }

    /// Instances `a` and `b`, and a live client of `b` once `b` reads the Redis stream.
    async fn two_with_a_client_of_b(&self) -> (ServerProcess, ServerProcess, Socket) {
        let (a, b) = self.two_with_b_reading().await;
        let socket = connect_to(&b.base_url, "").await;
        (a, b, socket)
    }

    async fn instance(&self, name: &str) -> ServerProcess {
        self.instance_with(name, &[]).await
    }

    async fn instance_with(&self, name: &str, flags: &[&str]) -> ServerProcess {
        let mut command = tokio::process::Command::new(binary());
        command.arg("serve").args(flags);
        command
            .args(["--addr", "127.0.0.1:0", "--instance-id", name])
            .args(["--database-url", &self.database.url])
            .args(["--redis-url", &self.redis.url()])
            .arg("--data-dir")
            .arg(self.data_dir.path().join(name));
        ServerProcess::spawn(command).await
    }
}

/// Waits (up to 30 s) until `count()` reaches `target`.
async fn wait_until_count(count: &impl Fn() -> usize, target: usize, what: &str) {
    let read = || std::future::ready(json!(count()));
    let enough = |n: &Value| n.as_u64() >= Some(target as u64);
    crate::helpers::wait_until(what, Duration::from_secs(30), read, enough).await;
}

/// Health until `condition` holds, failing after `within`.
async fn wait_for(
    server: &ServerProcess,
    what: &str,
    within: Duration,
    condition: impl Fn(&Value) -> bool,
) -> Value {
    let health = || server.get_ok("/api/agents/health");
    crate::helpers::wait_until(what, within, health, condition).await
}

fn redis_reading(health: &Value) -> bool {
    health["fanout"]["redis_reading"] == true
}

/// The next `event` message carrying `event_id`, skipping everything else.
async fn receive_event(socket: &mut Socket, event_id: &str) -> Value {
    loop {
        let message = next_of(socket, "event").await;
        if message["data"]["event_id"] == event_id {
            return message;
        }
    }
}

fn live_event(session: &str, n: i64) -> Value {
    let mut event = envelope(
        "fleet",
        session,
        "PreToolUse",
        n,
        pre_tool("Bash", &format!("t{n}"), json!({"command": "ls"})),
    );
    event["event_id"] = json!(uuid::Uuid::new_v4().to_string());
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_posted_to_one_instance_reaches_the_live_clients_of_the_other() {
    let fleet = Fleet::new();
    let (a, b, mut socket) = fleet.two_with_a_client_of_b().await;

    let event = live_event("S-live", 1);
    a.send_event(&event).await;
    let message = receive_event(&mut socket, event["event_id"].as_str().unwrap()).await;
    assert_eq!(message["data"]["source_app"], "fleet");
    assert_eq!(message["data"]["payload"]["tool_name"], "Bash");
    assert!(message["data"]["id"].as_i64().unwrap() > 0);

    let health = b.get_ok("/api/agents/health").await;
    assert_eq!(health["fanout"]["events_from_redis"], 1, "{health}");
    assert_eq!(health["database"]["backend"], "postgres");
    assert_eq!(health["database"]["instance"], "b");
    // Shown once, though PostgreSQL announced it too: once B has settled that notice (held
    // for its grace, then found shown already), it has shown nothing from it.
    let health = wait_for(&b, "B to settle A's notice", Duration::from_secs(10), |h| {
        h["fanout"]["notices_settled"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(health["fanout"]["events_from_postgres"], 0, "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_killed_live_fan_out_goes_through_postgres() {
    let mut fleet = Fleet::new();
    let (a, b, mut socket) = fleet.two_with_a_client_of_b().await;

    fleet.redis.kill();
    wait_for(
        &b,
        "b to notice redis is gone",
        Duration::from_secs(10),
        |h| !redis_reading(h),
    )
    .await;
    let mut sent = Vec::new();
    for n in 0..5 {
        let event = live_event("S-down", n);
        a.send_event(&event).await;
        sent.push(event["event_id"].as_str().unwrap().to_owned());
    }
    for event_id in &sent {
        receive_event(&mut socket, event_id).await;
    }
    let health = b.get_ok("/api/agents/health").await;
    assert_eq!(health["fanout"]["events_from_postgres"], 5, "{health}");
    assert_eq!(health["fanout"]["events_from_redis"], 0, "{health}");
    wait_for(
        &b,
        "b's health to say degraded",
        Duration::from_secs(10),
        |h| h["status"] == "degraded",
    )
    .await;
}

/// A finished subagent run at `at_ms` after T0.
fn subagent_run(session: &str, agent_id: &str, at_ms: i64) -> [Value; 2] {
    let fields = || in_subagent(agent_id, "Explore", json!({}));
    [
        envelope("fleet", session, "SubagentStart", at_ms, fields()),
        envelope("fleet", session, "SubagentStop", at_ms + 500, fields()),
    ]
}

const RANGE: &str = "start=1795168800000&end=1795172400000";

async fn executions(server: &ServerProcess) -> i64 {
    server
        .get_ok(&format!("/api/agents/metrics/current?{RANGE}"))
        .await["executions_today"]
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_read_from_one_instance_reflect_writes_to_the_other_within_the_bound() {
    let fleet = Fleet::new();
    // B's views go to Redis once it reads the stream of changes (until then a read bypasses
    // the cache, which on a loaded machine took one of the hits counted below).
    let (a, b) = fleet.two_with_b_reading().await;
    for round in 0..5 {
        // B has the range cached (the second read is a hit)...
        assert_eq!(executions(&b).await, round);
        assert_eq!(executions(&b).await, round);
        // ...and A commits a run: within the staleness bound B answers with it.
        for event in subagent_run("S-metrics", &format!("m{round}"), 1_000 * round) {
            a.send_event(&event).await;
        }
        let acked = Instant::now();
        loop {
            if executions(&b).await == round + 1 {
                break;
            }
            assert!(
                acked.elapsed() < STALENESS_BOUND,
                "B still answers {} executions {:?} after A acknowledged run {round}",
                round,
                acked.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let health = b.get_ok("/api/agents/health").await;
    let a_health = a.get_ok("/api/agents/health").await;
    assert_eq!(
        health["cache"]["namespace"], a_health["cache"]["namespace"],
        "instances on one database share one cache namespace"
    );
    assert!(
        health["cache"]["hits"].as_u64() >= Some(5),
        "B served from Redis: {health}"
    );
}

/// ARCHITECTURE.md's cross-instance staleness bound for cached views.
const STALENESS_BOUND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_and_a_stop_on_different_instances_at_once_give_one_execution() {
    let fleet = Fleet::new();
    let a = fleet.instance("a").await;
    let b = fleet.instance("b").await;
    const AGENTS: i64 = 40;
    let client = reqwest::Client::new();
    let mut requests = Vec::new();
    for n in 0..AGENTS {
        let [start, stop] = subagent_run("S-race", &format!("race-{n}"), 10 * n);
        // Odd agents start on A and stop on B; even ones the other way round. Both at once.
        let (first, second) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        for (server, event) in [(first, start), (second, stop)] {
            let request = client
                .post(format!("{}/events", server.base_url))
                .json(&event)
                .send();
            requests.push(tokio::spawn(async move {
                assert_eq!(request.await.unwrap().status(), 200);
            }));
        }
    }
    for request in requests {
        request.await.unwrap();
    }
    for server in [&a, &b] {
        assert_eq!(executions(server).await, AGENTS);
        let metrics = server
            .get_ok(&format!("/api/agents/metrics/current?{RANGE}"))
            .await;
        crate::helpers::approx(&metrics["success_rate"], 1.0);
    }
    assert_eq!(
        fleet.database.count(
            "SELECT count(*) FROM agents WHERE agent_key LIKE 'race-%' AND status = 'completed'"
        ),
        AGENTS
    );
    assert_eq!(
        fleet
            .database
            .count("SELECT coalesce(sum(executions), 0)::int8 FROM execution_rollup"),
        AGENTS,
        "each run counted once in the rollups"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_jobs_run_on_one_instance_and_move_when_it_dies() {
    let fleet = Fleet::new();
    // Retention every second (keeping 400 days: nothing to delete) is a background job too.
    let jobs = ["--retention", "400d", "--prune-interval", "1s"];
    let a = fleet.instance_with("a", &jobs).await;
    let b = fleet.instance_with("b", &jobs).await;
    // The cache rebuild at start-up is a background job: exactly one instance ran it.
    let warmups = |h: &Value| h["cache"]["warmup"]["runs"].as_u64().unwrap_or(0);
    let prunes = |h: &Value| h["retention"]["runs"].as_u64().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let (leader, follower) = loop {
        let (ha, hb) = (
            a.get_ok("/api/agents/health").await,
            b.get_ok("/api/agents/health").await,
        );
        match (warmups(&ha), warmups(&hb)) {
            (0, 0) => {}
            (_, 0) => break (a, b),
            (0, _) => break (b, a),
            (x, y) => panic!("both instances rebuilt the cache ({x} and {y} runs)"),
        }
        assert!(Instant::now() < deadline, "no instance rebuilt the cache");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Pruning every second, the leader has pruned twice and the follower never.
    wait_for(&leader, "two prunes", Duration::from_secs(10), |h| {
        prunes(h) >= 2
    })
    .await;
    // A new epoch (as after an outage) is rebuilt by the leader only.
    let before = warmups(&leader.get_ok("/api/agents/health").await);
    let namespace = leader.get_ok("/api/agents/health").await["cache"]["namespace"]
        .as_str()
        .unwrap()
        .to_owned();
    let epoch_key = format!("{namespace}:epoch");
    fleet
        .redis
        .command::<i64>(redis::cmd("INCR").arg(&epoch_key));
    wait_for(
        &leader,
        "the leader's rebuild",
        Duration::from_secs(10),
        |h| warmups(h) > before,
    )
    .await;
    let follower_health = follower.get_ok("/api/agents/health").await;
    assert_eq!(warmups(&follower_health), 0);
    assert_eq!(prunes(&follower_health), 0, "only the leader prunes");
    // When the leader dies, the other instance takes the lease and runs the jobs.
    leader.kill_hard().await;
    fleet
        .redis
        .command::<i64>(redis::cmd("INCR").arg(&epoch_key));
    wait_for(
        &follower,
        "the follower to take over",
        Duration::from_secs(15),
        |h| warmups(h) >= 1 && prunes(h) >= 1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_ingest_across_two_instances_loses_no_acknowledged_event() {
    let fleet = Fleet::new();
    let a = fleet.instance("a").await;
    let b = fleet.instance("b").await;
    let urls = [a.base_url.clone(), b.base_url.clone()];
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..8 {
        let url = urls[worker % 2].clone();
        let acknowledged = Arc::clone(&acknowledged);
        let stop = Arc::clone(&stop);
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let event = live_event(&format!("S-crash-{worker}"), n);
                let sent = client
                    .post(format!("{url}/events"))
                    .json(&event)
                    .send()
                    .await;
                if sent.is_ok_and(|r| r.status() == 200) {
                    let id = event["event_id"].as_str().unwrap().to_owned();
                    acknowledged.lock().unwrap().push(id);
                }
            }
        }));
    }
    // Kill A with ingest in full flow, then let the survivor take more on its own.
    let acknowledged_count = || acknowledged.lock().unwrap().len();
    wait_until_count(&acknowledged_count, 300, "ingest to run").await;
    a.kill_hard().await;
    let at_kill = acknowledged_count();
    wait_until_count(&acknowledged_count, at_kill + 100, "B to take events alone").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 200,
        "ingest ran: {}",
        acknowledged.len()
    );
    let list = acknowledged
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        fleet.database.count(&format!(
            "SELECT count(*) FROM events WHERE event_id IN ({list})"
        )),
        acknowledged.len() as i64,
        "every acknowledged event is stored"
    );
    // The survivor still serves, and sees everything.
    let page = b.get_ok("/events/recent?limit=1").await;
    assert_eq!(page.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_size_limit_is_refused_on_postgres_rather_than_emptying_it() {
    let database = Database::create();
    let stderr = refused_start(&["--max-db-size", "1GB", "--database-url", &database.url]).await;
    assert!(
        stderr.contains("--max-db-size works on SQLite only"),
        "{stderr}"
    );
    assert_eq!(
        database.count("SELECT count(*) FROM pg_tables WHERE tablename = 'hookwatch_schema'"),
        0,
        "refused before touching the database"
    );
}

/// Posts `event` to `server`; the status.
async fn post_status(server: &ServerProcess, event: &Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/events", server.base_url))
        .json(event)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_postgres_restarts_ingest_reads_and_live_fan_out_recover() {
    let postgres = crate::postgres::PrivatePostgres::start();
    postgres.create_database("hookwatch");
    let url = postgres.url("hookwatch");
    let data = tempfile::tempdir().unwrap();
    let serve = |name: &str| {
        let mut command = tokio::process::Command::new(binary());
        command
            .args(["serve", "--addr", "127.0.0.1:0", "--instance-id", name])
            .args(["--database-url", &url])
            .arg("--data-dir")
            .arg(data.path().join(name));
        command
    };
    let a = ServerProcess::spawn(serve("a")).await;
    let b = ServerProcess::spawn(serve("b")).await;
    let mut socket = connect_to(&b.base_url, "").await;
    let mut acknowledged = Vec::new();
    let first = live_event("S-restart", 1);
    a.send_event(&first).await;
    acknowledged.push(first["event_id"].as_str().unwrap().to_owned());
    receive_event(&mut socket, first["event_id"].as_str().unwrap()).await;

    // The database goes away: writes are refused (never acknowledged), the server keeps serving.
    postgres.stop();
    let refused = post_status(&a, &live_event("S-restart", 2)).await;
    assert_eq!(refused, 503, "a write while the database is down");
    let health = reqwest::get(format!("{}/healthz", a.base_url))
        .await
        .unwrap();
    assert_eq!(health.status(), 503, "health says the store is down");
    postgres.restart();

    // Once it is back (`pg_ctl -w` waits until it accepts connections), no request fails:
    // a writer or reader whose connection broke meanwhile reconnects and tries once more.
    let mut n = 3;
    for _ in 0..12 {
        let event = live_event("S-restart", n);
        n += 1;
        a.send_event(&event).await;
        acknowledged.push(event["event_id"].as_str().unwrap().to_owned());
    }
    for _ in 0..8 {
        let page = b.get_ok("/events/recent?limit=1").await;
        assert_eq!(page.as_array().unwrap().len(), 1);
    }
    // The coordinator listens again: B's live client sees A's commits.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let event = live_event("S-restart", n);
        n += 1;
        a.send_event(&event).await;
        let id = event["event_id"].as_str().unwrap().to_owned();
        acknowledged.push(id.clone());
        let seen =
            tokio::time::timeout(Duration::from_secs(2), receive_event(&mut socket, &id)).await;
        if seen.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "live fan-out did not recover");
    }
    // Every acknowledged event is stored, and nothing refused was.
    let stored: std::collections::HashSet<String> =
        b.get_ok("/events?limit=1000&session_id=S-restart").await["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_owned())
            .collect();
    let acknowledged: std::collections::HashSet<String> = acknowledged.into_iter().collect();
    assert_eq!(stored, acknowledged);
}
