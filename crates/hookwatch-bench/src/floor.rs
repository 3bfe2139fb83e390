//! The floor hookwatch's ingest is measured against (`hookwatch-floor`): the upstream Bun
//! server's whole write path, rebuilt, so that its speed on this machine is known without
//! the upstream (which these machines cannot fetch). Per `POST /events`: the body parsed as
//! JSON, its required fields checked, one prepared `INSERT` of the envelope into one `events`
//! table with the upstream's four single-column indexes, on SQLite in WAL mode with
//! `synchronous = NORMAL` (no fsync per commit: a crash may lose the last commits), and the
//! saved event echoed back with its id. No derived state, no cache, no live stream, one
//! thread (Bun runs its handlers on one), no limits: what a write costs when it does nothing
//! else. It is a yardstick, not a server anyone should run.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source_app TEXT NOT NULL,
        session_id TEXT NOT NULL,
        hook_event_type TEXT NOT NULL,
        payload TEXT NOT NULL,
        chat TEXT,
        summary TEXT,
        timestamp INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS events_source_app ON events(source_app);
    CREATE INDEX IF NOT EXISTS events_session_id ON events(session_id);
    CREATE INDEX IF NOT EXISTS events_hook_event_type ON events(hook_event_type);
    CREATE INDEX IF NOT EXISTS events_timestamp ON events(timestamp);";

const INSERT: &str = "INSERT INTO events \
    (source_app, session_id, hook_event_type, payload, chat, summary, timestamp) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

type Database = Arc<Mutex<Connection>>;

/// Serves the floor on `addr` with its database in `data_dir`, printing
/// `listening on http://ADDR` first (as `hookwatch serve` does), until the process ends.
pub fn serve(addr: SocketAddr, data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let connection = Connection::open(data_dir.join("floor.db")).context("opening floor.db")?;
    connection.execute_batch(SCHEMA)?;
    let database: Database = Arc::new(Mutex::new(connection));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("listening on http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/events", axum::routing::post(take_event))
            .with_state(database);
        axum::serve(listener, app).await?;
        anyhow::Ok(())
    })
}

async fn take_event(State(database): State<Database>, body: Bytes) -> Response {
    let Ok(mut event) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid JSON"})),
        )
            .into_response();
    };
    let text = |field: &str| event.get(field).and_then(Value::as_str).map(str::to_owned);
    let (Some(source_app), Some(session_id), Some(hook_event_type), Some(payload)) = (
        text("source_app"),
        text("session_id"),
        text("hook_event_type"),
        event.get("payload").map(Value::to_string),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "Missing required fields"})),
        )
            .into_response();
    };
    let timestamp = event
        .get("timestamp")
        .and_then(Value::as_i64)
        .unwrap_or_else(|| hookwatch::clock::Clock::now_ms(&hookwatch::clock::SystemClock));
    let chat = event.get("chat").map(Value::to_string);
    let summary = text("summary");
    let inserted = {
        let connection = database.lock().unwrap_or_else(|e| e.into_inner());
        connection.prepare_cached(INSERT).and_then(|mut insert| {
            insert.execute(params![
                source_app,
                session_id,
                hook_event_type,
                payload,
                chat,
                summary,
                timestamp
            ])?;
            Ok(connection.last_insert_rowid())
        })
    };
    match inserted {
        Ok(id) => {
            event["id"] = json!(id);
            event["timestamp"] = json!(timestamp);
            Json(event).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}
