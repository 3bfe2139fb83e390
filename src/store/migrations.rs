//! The schema both databases share, written once. Each store keeps its own list of
//! migrations (their histories differ: PostgreSQL's first migration is SQLite's first four,
//! with sharded rollups) and names these where they fall in it.
//!
//! Where the two spell a column type differently, a text here says `{int}` (SQLite's
//! `INTEGER`, PostgreSQL's `BIGINT`), `{blob}` (`BLOB`, `BYTEA`), `{row_id}` (an integer key
//! the database assigns) or `{hot}` (PostgreSQL leaves room in each page for rows updated on
//! every event, so those updates are HOT: no index writes, no bloat); [`Dialect::ddl`] writes
//! them in one database's words.

use super::StoreError;
use super::sql::Dialect;

/// The migrations a database at schema version `current` still needs, each with the version
/// it brings the database to; refused when the database is newer than this build.
pub(crate) fn pending(
    current: usize,
    migrations: &[String],
) -> Result<impl Iterator<Item = (usize, &str)>, StoreError> {
    if current > migrations.len() {
        return Err(StoreError::Internal(format!(
            "the database is at schema version {current}, newer than this hookwatch ({}); upgrade hookwatch",
            migrations.len()
        )));
    }
    Ok(migrations
        .iter()
        .enumerate()
        .skip(current)
        .map(|(index, sql)| (index + 1, sql.as_str())))
}

impl Dialect {
    /// `template` (see the module docs) in this database's words.
    pub(crate) fn ddl(self, template: &str) -> String {
        let (int, blob, row_id, hot) = match self {
            Self::Sqlite => ("INTEGER", "BLOB", "INTEGER PRIMARY KEY", ""),
            Self::Postgres => (
                "BIGINT",
                "BYTEA",
                "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                " WITH (fillfactor = 70)",
            ),
        };
        template
            .replace("{row_id}", row_id)
            .replace("{int}", int)
            .replace("{blob}", blob)
            .replace("{hot}", hot)
    }
}

/// The migrations both databases run alike, in order, after their own first ones (SQLite's
/// 7 on, PostgreSQL's 4 on): a new migration is added here, once.
pub(crate) fn shared_migrations(dialect: Dialect) -> Vec<String> {
    vec![
        // Chats, apart from the event row.
        dialect.ddl(CHATS),
        // Human-in-the-loop status.
        HITL_STATUS.to_owned(),
        // Every subagent tool call by session and type.
        SPAWN_CALLS_INDEX.to_owned(),
        // Claude Code's own telemetry (OTLP).
        dialect.ddl(TELEMETRY),
        // What `/api/usage` reads (usage and latency rollups).
        dialect.ddl(&usage_rollups()),
        // The events a session's trace reads.
        trace_marks_index(),
        // Alert episodes.
        dialect.ddl(ALERTS),
        // Every app that has sent events, for the filter options.
        dialect.ddl(SOURCE_APPS),
        // Each prompt's head, so a trace never parses a payload.
        event_prompts(dialect),
        // Usage without the session, each session's one truth settled as it is written.
        usage_totals(dialect),
        // A chat's last messages, which its event carries.
        CHAT_TAILS.to_owned(),
        // Each session's usage, settled as it is written, for usage by session.
        session_totals(dialect),
        // Sessions by the minute telemetry last saw them, for the sessions list.
        TELEMETRY_SESSIONS_SEEN.to_owned(),
        // Running totals by series, turned into increases as they are stored.
        POINT_SERIES.to_owned(),
        // Each person's prompts and productivity counters per hour, for the team view.
        activity_rollup(dialect),
        // Which agent a session seen through telemetry is.
        TELEMETRY_SESSION_AGENT.to_owned(),
        // Which agent a session seen through hooks is.
        SESSION_CODING_AGENT.to_owned(),
    ]
}

/// What the team view reads besides usage (`domain::team`): per hour, person and session,
/// the sum of each of `domain::team::ACTIVITY_METRICS` in billionths (prompts count one),
/// kept as telemetry is written and never pruned, as the hour rollups are. Filled from the
/// telemetry already stored: prompts from `user_prompt` events, counters from their increases
/// (edit decisions stored before their kind was kept, as `code_edit_decisions` alone, are left
/// out). SQLite 21, PostgreSQL 18.
fn activity_rollup(dialect: Dialect) -> String {
    let user_key = "coalesce(user_email, account_uuid, user_id, '')";
    let hour = crate::domain::time::HOUR_MS;
    let one = 1_000_000_000_i64;
    let metrics = crate::domain::team::ACTIVITY_METRICS
        .iter()
        .map(|m| format!("'{m}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sum = dialect.sum("value_nanos");
    dialect.ddl(&format!(
        "CREATE TABLE activity_rollup_hour (
             bucket     {{int}} NOT NULL,
             user_key   TEXT NOT NULL,
             session_id TEXT NOT NULL,
             metric     TEXT NOT NULL,
             value      {{int}} NOT NULL,
             PRIMARY KEY (bucket, user_key, session_id, metric)
         );
         INSERT INTO activity_rollup_hour (bucket, user_key, session_id, metric, value)
             SELECT time_ms - time_ms % {hour}, {user_key}, coalesce(session_id, ''), metric,
                    {sum}
             FROM telemetry_points WHERE delta = 1 AND metric IN ({metrics})
             GROUP BY time_ms - time_ms % {hour}, {user_key}, coalesce(session_id, ''), metric;
         INSERT INTO activity_rollup_hour (bucket, user_key, session_id, metric, value)
             SELECT at_ms - at_ms % {hour}, {user_key}, coalesce(session_id, ''), 'prompts',
                    count(*) * {one}
             FROM telemetry_events WHERE kind = 'user_prompt'
             GROUP BY at_ms - at_ms % {hour}, {user_key}, coalesce(session_id, '');"
    ))
}

/// The agent whose telemetry a session is, where it is not Claude Code (`codex`,
/// `gemini-cli`): the app a session seen only through telemetry is listed under, and what its
/// cost is (priced from its tokens). NULL, Claude Code, for every session stored before.
/// SQLite 22, PostgreSQL 19.
const TELEMETRY_SESSION_AGENT: &str = "ALTER TABLE telemetry_sessions ADD COLUMN agent TEXT;";

/// The coding agent a session's hooks came from, where it is not Claude Code (`codex`,
/// `gemini-cli`; `domain::coding_agent`): NULL, Claude Code, for every session stored before.
/// SQLite 23, PostgreSQL 20.
const SESSION_CODING_AGENT: &str = "ALTER TABLE sessions ADD COLUMN coding_agent TEXT;";

/// Sessions by the minute telemetry last saw them: the sessions list walks it for the sessions
/// telemetry alone has seen (`store::telemetry_sessions`). SQLite 19, PostgreSQL 16.
const TELEMETRY_SESSIONS_SEEN: &str =
    "CREATE INDEX telemetry_sessions_seen ON telemetry_sessions (last_bucket);";

/// A counter point's series, where Claude Code sends running totals (cumulative
/// temporality): the writer stores each as its increase over what its series has counted
/// (`domain::telemetry::TelemetryPointRow::series`). Delta points have none, and are not in
/// the index. SQLite 20, PostgreSQL 17.
const POINT_SERIES: &str = "ALTER TABLE telemetry_points ADD COLUMN series TEXT;
    CREATE INDEX telemetry_points_series ON telemetry_points (series) WHERE series IS NOT NULL;";

/// The tables every event writes, and their indexes: each database's first migration,
/// beside its rollups.
pub(crate) fn event_tables(dialect: Dialect) -> String {
    // PostgreSQL pages events by `(ts, id)`; SQLite's rowid is in every index already.
    let (events_ts, event_types) = match dialect {
        Dialect::Sqlite => (
            "CREATE INDEX events_ts ON events(ts);",
            "CREATE TABLE event_types (hook_event_type TEXT PRIMARY KEY) WITHOUT ROWID;",
        ),
        Dialect::Postgres => (
            "CREATE INDEX events_ts ON events(ts, id);",
            "CREATE TABLE event_types (hook_event_type TEXT PRIMARY KEY);",
        ),
    };
    [
        EVENTS,
        events_ts,
        EVENT_FILTER_INDEXES,
        event_types,
        SESSIONS,
        AGENTS,
        TOOL_CALLS,
    ]
    .map(|template| dialect.ddl(template))
    .concat()
}

/// Every event as received.
const EVENTS: &str = r#"
    CREATE TABLE events (
        id              {row_id},
        event_id        TEXT NOT NULL UNIQUE,
        ts              {int} NOT NULL,
        source_app      TEXT NOT NULL,
        session_id      TEXT NOT NULL,
        hook_event_type TEXT NOT NULL,
        tool_name       TEXT,
        tool_use_id     TEXT,
        agent_id        TEXT,
        model_name      TEXT,
        summary         TEXT,
        payload         TEXT NOT NULL,
        chat            TEXT,
        extra           TEXT
    );
"#;

/// The indexes of the events' filters, besides `events_ts`.
const EVENT_FILTER_INDEXES: &str = r#"
    CREATE INDEX events_session_ts ON events(session_id, ts);
    CREATE INDEX events_app_ts ON events(source_app, ts);
    CREATE INDEX events_type_ts ON events(hook_event_type, ts);
    CREATE INDEX events_tool_ts ON events(tool_name, ts) WHERE tool_name IS NOT NULL;
"#;

/// One row per session, updated by each of its events.
const SESSIONS: &str = r#"
    CREATE TABLE sessions (
        session_id      TEXT PRIMARY KEY,
        source_app      TEXT NOT NULL,
        started_at      {int} NOT NULL,
        last_seen       {int} NOT NULL,
        ended_at        {int},
        end_reason      TEXT,
        cwd             TEXT,
        model           TEXT,
        event_count     {int} NOT NULL DEFAULT 0,
        prompt_count    {int} NOT NULL DEFAULT 0,
        tool_call_count {int} NOT NULL DEFAULT 0,
        -- last_seen to the minute: what the indexes hold, so that an event moves a session's
        -- index entries at most once a minute instead of on every event.
        seen_minute     {int} NOT NULL
    ){hot};
    CREATE INDEX sessions_open ON sessions(seen_minute) WHERE ended_at IS NULL;
    CREATE INDEX sessions_seen ON sessions(seen_minute);
"#;

/// One row per agent (a session's main agent, or one subagent run), kept by the lifecycle
/// rules.
const AGENTS: &str = r#"
    CREATE TABLE agents (
        agent_key             TEXT PRIMARY KEY,
        session_id            TEXT NOT NULL,
        source_app            TEXT NOT NULL,
        agent_type            TEXT NOT NULL,
        name                  TEXT,
        description           TEXT,
        status                TEXT NOT NULL,
        started_at            {int},
        ended_at              {int},
        last_seen             {int} NOT NULL,
        subagent_start_at     {int},
        subagent_stop_at      {int},
        reported_duration_ms  {int},
        tool_duration_ms      {int},
        input_tokens          {int} NOT NULL,
        output_tokens         {int} NOT NULL,
        cache_creation_tokens {int} NOT NULL,
        cache_read_tokens     {int} NOT NULL,
        reported_total_tokens {int},
        model                 TEXT,
        cost_nanos            {int} NOT NULL,
        error                 TEXT,
        tool_use_id           TEXT,
        -- Derived by the lifecycle rules, stored so edge-of-range reads match the rollups.
        duration_ms           {int},
        total_tokens          {int} NOT NULL,
        seen_minute           {int} NOT NULL
    ){hot};
    CREATE INDEX agents_running ON agents(seen_minute) WHERE status = 'running';
    CREATE INDEX agents_seen ON agents(seen_minute);
    CREATE INDEX agents_ended ON agents(ended_at) WHERE status IN ('completed', 'failed');
    CREATE INDEX agents_session ON agents(session_id, started_at);
    CREATE INDEX agents_unlinked ON agents(session_id, agent_type, started_at)
        WHERE tool_use_id IS NULL;
"#;

/// One row per tool call, its Pre and Post joined by `tool_use_id`.
const TOOL_CALLS: &str = r#"
    CREATE TABLE tool_calls (
        id                {row_id},
        tool_use_id       TEXT,
        session_id        TEXT NOT NULL,
        source_app        TEXT NOT NULL,
        agent_key         TEXT NOT NULL,
        agent_type        TEXT NOT NULL,
        tool_name         TEXT NOT NULL,
        counted_at        {int} NOT NULL,
        started_at        {int},
        ended_at          {int},
        duration_ms       {int},
        status            TEXT NOT NULL,
        error             TEXT,
        spawn_type        TEXT,
        spawn_description TEXT,
        spawned_agent     TEXT
    );
    CREATE INDEX tool_calls_counted ON tool_calls(counted_at);
    -- One index serves both the Pre/Post join and an agent's list of calls: a call's Pre and
    -- Post always come from the same agent, and one index instead of two (one of them keyed by
    -- a random id) is one page fewer written per event.
    CREATE UNIQUE INDEX tool_calls_by_agent ON tool_calls(agent_key, tool_use_id);
    CREATE INDEX tool_calls_unlinked_spawns ON tool_calls(session_id, spawn_type, started_at)
        WHERE spawn_type IS NOT NULL AND spawned_agent IS NULL;
"#;

/// Tokens the main agent of a session used, read from its transcript by the hook client.
/// One row per report (a delta); aggregate reads sum the rows in the range (by `ts`), so
/// range edges are exact without a rollup.
pub(crate) const SESSION_USAGE: &str = r#"
    CREATE TABLE session_usage (
        id                    {row_id},
        session_id            TEXT NOT NULL,
        ts                    {int} NOT NULL,
        model                 TEXT NOT NULL,
        input_tokens          {int} NOT NULL,
        output_tokens         {int} NOT NULL,
        cache_creation_tokens {int} NOT NULL,
        cache_read_tokens     {int} NOT NULL,
        total_tokens          {int} NOT NULL,
        cost_nanos            {int} NOT NULL
    );
    CREATE INDEX session_usage_by_ts ON session_usage (ts);
    CREATE INDEX session_usage_by_session ON session_usage (session_id);
"#;

/// The envelope's session id as sent, when it is not Claude Code's own (the session the
/// event is keyed by, in `session_id`): filters match either. SQLite 5, PostgreSQL 2.
pub(crate) const SENT_SESSION_ID: &str = r#"
    ALTER TABLE events ADD COLUMN sent_session_id TEXT;
    CREATE INDEX events_sent_session_ts ON events(sent_session_id, ts)
        WHERE sent_session_id IS NOT NULL;
"#;

/// Chats (the upstream's --add-chat) compressed, apart from the event row: lists read the
/// row and its size only. SQLite 7, PostgreSQL 4.
pub(crate) const CHATS: &str = r#"
    ALTER TABLE events ADD COLUMN chat_bytes {int};
    CREATE TABLE event_chats (
        event_id   {int} PRIMARY KEY,
        compressed {blob} NOT NULL
    );
"#;

/// Human-in-the-loop requests: the status of an event sent with `humanInTheLoop` (the
/// upstream's `humanInTheLoopStatus`), pending until answered once. SQLite 8, PostgreSQL 5.
pub(crate) const HITL_STATUS: &str = r#"
    ALTER TABLE events ADD COLUMN hitl_status TEXT;
    CREATE INDEX events_hitl_pending ON events(id) WHERE hitl_status = '{"status":"pending"}';
"#;

/// Every subagent tool call by session and type, linked or not: a SubagentStart that finds no
/// unlinked call looks for one whose result went to a stand-in run
/// (`lifecycle::STAND_IN_PREFIXES`). SQLite 9, PostgreSQL 6.
pub(crate) const SPAWN_CALLS_INDEX: &str = r#"
    DROP INDEX tool_calls_unlinked_spawns;
    CREATE INDEX tool_calls_spawns ON tool_calls(session_id, spawn_type, started_at)
        WHERE spawn_type IS NOT NULL;
"#;

/// Claude Code's own telemetry (OTLP): its events (API requests and errors, tool results and
/// decisions, prompts, and any other, by name) and its counters' points, each once however
/// often an exporter retries (`dedup_key`). Money and amounts are integers in billionths.
/// SQLite 10, PostgreSQL 7.
pub(crate) const TELEMETRY: &str = r#"
    CREATE TABLE telemetry_events (
        id                    {row_id},
        kind                  TEXT NOT NULL,
        dedup_key             TEXT NOT NULL UNIQUE,
        session_id            TEXT,
        prompt_id             TEXT,
        at_ms                 {int} NOT NULL,
        sequence              {int},
        user_id               TEXT,
        user_email            TEXT,
        account_uuid          TEXT,
        organization_id       TEXT,
        model                 TEXT,
        cost_nanos           {int},
        input_tokens          {int},
        output_tokens         {int},
        cache_read_tokens     {int},
        cache_creation_tokens {int},
        duration_ms           {int},
        status_code           {int},
        attempt               {int},
        request_id            TEXT,
        agent_name            TEXT,
        query_source          TEXT,
        tool_name             TEXT,
        tool_use_id           TEXT,
        success               {int},
        decision              TEXT,
        decision_source       TEXT,
        error                 TEXT,
        prompt_length         {int},
        prompt                TEXT
    );
    CREATE INDEX telemetry_events_session ON telemetry_events (session_id, at_ms);
    CREATE INDEX telemetry_events_at ON telemetry_events (at_ms);
    CREATE INDEX telemetry_events_tool_use ON telemetry_events (tool_use_id)
        WHERE tool_use_id IS NOT NULL;
    CREATE TABLE telemetry_points (
        id              {row_id},
        metric          TEXT NOT NULL,
        dedup_key       TEXT NOT NULL UNIQUE,
        session_id      TEXT,
        user_id         TEXT,
        user_email      TEXT,
        account_uuid    TEXT,
        organization_id TEXT,
        model           TEXT,
        value_nanos    {int} NOT NULL,
        start_ms        {int},
        time_ms         {int} NOT NULL,
        delta           {int} NOT NULL
    );
    CREATE INDEX telemetry_points_session ON telemetry_points (session_id, time_ms);
    CREATE INDEX telemetry_points_time ON telemetry_points (time_ms);
"#;

/// What `/api/usage` reads, so its cost does not grow with events: Claude Code's API use per
/// minute and per hour (`_hour`), keyed by session, model, agent type, person and
/// organization, with the source of its cost (`event`: `api_request`/`api_error` events;
/// `point`: the cost and token counters); a histogram of API latencies on the same keys
/// (`slot`, see `domain::telemetry::latency_slot`); and per session, whether it has
/// `api_request` events or counter points, which picks the one truth of its cost. Each
/// event's and point's derived agent type is kept on its row. Absent keys are `''`, so that
/// they are keys. A template for [`Dialect::ddl`]. SQLite 11, PostgreSQL 8.
pub(crate) fn usage_rollups() -> String {
    let keys = "bucket {int} NOT NULL, session_id TEXT NOT NULL, model TEXT NOT NULL,
        agent_type TEXT NOT NULL, user_key TEXT NOT NULL, organization_id TEXT NOT NULL";
    let key = "bucket, session_id, model, agent_type, user_key, organization_id";
    let mut ddl = String::from(
        "ALTER TABLE telemetry_events ADD COLUMN agent_type TEXT;
         ALTER TABLE telemetry_points ADD COLUMN agent_type TEXT;
         CREATE INDEX telemetry_events_prompt ON telemetry_events (session_id, prompt_id)
             WHERE prompt_id IS NOT NULL;
         CREATE TABLE telemetry_sessions (
             session_id   TEXT PRIMARY KEY,
             api_requests {int} NOT NULL,
             usage_points {int} NOT NULL
         );",
    );
    for suffix in ["", "_hour"] {
        ddl.push_str(&format!(
            "CREATE TABLE usage_rollup{suffix} (
                 {keys},
                 source                TEXT NOT NULL,
                 cost_nanos            {{int}} NOT NULL,
                 input_tokens          {{int}} NOT NULL,
                 output_tokens         {{int}} NOT NULL,
                 cache_read_tokens     {{int}} NOT NULL,
                 cache_creation_tokens {{int}} NOT NULL,
                 requests              {{int}} NOT NULL,
                 errors                {{int}} NOT NULL,
                 PRIMARY KEY ({key}, source)
             );
             CREATE TABLE latency_rollup{suffix} (
                 {keys},
                 slot     {{int}} NOT NULL,
                 requests {{int}} NOT NULL,
                 PRIMARY KEY ({key}, slot)
             );"
        ));
    }
    ddl
}

/// The events a session's trace reads (`store::trace::MARK_TYPES`: prompts, Stops and the
/// events with no duration), by session and time, so a trace never reads the session's other
/// events. SQLite 12, PostgreSQL 9.
pub(crate) fn trace_marks_index() -> String {
    format!(
        "CREATE INDEX events_session_marks ON events (session_id, ts)
             WHERE hook_event_type IN {};",
        crate::store::trace::MARK_TYPES
    )
}

/// Each prompt's head, length and id (`domain::event::PromptHead`), keyed by its event's row,
/// so a trace reads prompts without parsing a payload. Filled from the prompts already stored.
/// SQLite 15, PostgreSQL 12.
pub(crate) fn event_prompts(dialect: Dialect) -> String {
    // As at ingest, a NUL (which a PostgreSQL text cannot hold, and SQLite's text functions
    // stop at) is read as U+FFFD: its JSON escape replaced before the prompt is read.
    let payload = r"replace(payload, '\u0000', '\ufffd')";
    let prompt = dialect.json_text(payload, "prompt");
    let head_chars = crate::domain::event::PROMPT_HEAD_CHARS;
    let prompt_id = dialect.json_text(payload, "prompt_id");
    let id_bytes = crate::domain::event::MAX_PROMPT_ID_BYTES;
    dialect.ddl(&format!(
        "CREATE TABLE event_prompts (
             event_row  {{int}} PRIMARY KEY,
             ts         {{int}} NOT NULL,
             prompt_id  TEXT,
             head       TEXT NOT NULL,
             chars      {{int}} NOT NULL
         );
         CREATE INDEX event_prompts_ts ON event_prompts (ts);
         INSERT INTO event_prompts (event_row, ts, prompt_id, head, chars)
             SELECT id, ts,
                    CASE WHEN prompt_id <> '' AND octet_length(prompt_id) <= {id_bytes}
                         THEN prompt_id END,
                    substr(prompt, 1, {head_chars}), length(prompt)
             FROM (SELECT id, ts, {prompt} AS prompt, {prompt_id} AS prompt_id
                   FROM events WHERE hook_event_type = 'UserPromptSubmit') p
             WHERE prompt IS NOT NULL;"
    ))
}

/// Usage and latency without the session (`usage_totals`, `latency_totals`, minute and hour):
/// what the metrics card and usage by model, agent type or person read, so those reads cost
/// the same for a million sessions a day as for ten. Each session's one truth is settled as
/// it is written (`store::telemetry`): event rows count, point rows only while their session
/// has no `api_request` event. A `shard` per PostgreSQL writer, so no row is hot across
/// writers (SQLite's is 0). Filled from the rollups already kept; the session's point rows are
/// indexed, for when its first request takes them back out. SQLite 16, PostgreSQL 13.
pub(crate) fn usage_totals(dialect: Dialect) -> String {
    let keys = "bucket          {int} NOT NULL,
                model           TEXT NOT NULL,
                agent_type      TEXT NOT NULL,
                user_key        TEXT NOT NULL,
                organization_id TEXT NOT NULL,
                shard           {int} NOT NULL";
    let key = "bucket, model, agent_type, user_key, organization_id, shard";
    let sums = crate::store::telemetry::SUM_COLUMNS;
    let summed = sums
        .iter()
        .map(|c| dialect.sum(&format!("u.{c}")))
        .collect::<Vec<_>>()
        .join(", ");
    let mut ddl = String::new();
    for suffix in ["", "_hour"] {
        ddl.push_str(&format!(
            "CREATE TABLE usage_totals{suffix} (
                 {keys},
                 {columns},
                 PRIMARY KEY ({key})
             );
             CREATE TABLE latency_totals{suffix} (
                 {keys},
                 slot     {{int}} NOT NULL,
                 requests {{int}} NOT NULL,
                 PRIMARY KEY ({key}, slot)
             );
             CREATE INDEX usage_rollup{suffix}_points ON usage_rollup{suffix} (session_id)
                 WHERE source = 'point';
             INSERT INTO usage_totals{suffix} ({key}, {names})
                 SELECT u.bucket, u.model, u.agent_type, u.user_key, u.organization_id, 0,
                        {summed}
                 FROM usage_rollup{suffix} u
                 LEFT JOIN telemetry_sessions t ON t.session_id = u.session_id
                 WHERE u.source = 'event' OR coalesce(t.api_requests, 0) = 0
                 GROUP BY u.bucket, u.model, u.agent_type, u.user_key, u.organization_id;
             INSERT INTO latency_totals{suffix} ({key}, slot, requests)
                 SELECT u.bucket, u.model, u.agent_type, u.user_key, u.organization_id, 0,
                        u.slot, {requests}
                 FROM latency_rollup{suffix} u
                 GROUP BY u.bucket, u.model, u.agent_type, u.user_key, u.organization_id,
                          u.slot;",
            columns = sums
                .iter()
                .map(|c| format!("{c} {{int}} NOT NULL"))
                .collect::<Vec<_>>()
                .join(",\n                 "),
            names = sums.join(", "),
            requests = dialect.sum("u.requests"),
        ));
    }
    dialect.ddl(&ddl)
}

/// A chat's last messages (`domain::event::Chat::tail`), which the stream and event lists
/// carry as the event's `chat`. Chats stored before have none (their events carry only
/// `chat_bytes`). SQLite 17, PostgreSQL 14.
pub(crate) const CHAT_TAILS: &str = "ALTER TABLE event_chats ADD COLUMN tail TEXT;";

/// Every app that has sent events, with the minute it was last seen, for the filter options:
/// `sessions` keeps one app per session, so apps that share a session were left out (the
/// fork's scripts send several apps under one Claude Code session). Filled from the events
/// already stored. SQLite 14, PostgreSQL 11.
pub(crate) const SOURCE_APPS: &str = r#"
    CREATE TABLE source_apps (
        source_app TEXT PRIMARY KEY,
        last_seen  {int} NOT NULL
    );
    CREATE INDEX source_apps_seen ON source_apps (last_seen);
    INSERT INTO source_apps (source_app, last_seen)
        SELECT source_app, max(ts) / 60000 * 60000 FROM events GROUP BY source_app;
"#;

/// Alert episodes (`store::alerts`): a rule firing for one scope key until it resolves, with
/// whether each transition reached its targets. At most one open episode per rule and key.
/// SQLite 13, PostgreSQL 10.
pub(crate) const ALERTS: &str = r#"
    CREATE TABLE alerts (
        id                 {row_id},
        rule               TEXT NOT NULL,
        scope              TEXT NOT NULL,
        scope_key          TEXT NOT NULL,
        state              TEXT NOT NULL,
        value_micros       {int} NOT NULL,
        threshold_micros   {int} NOT NULL,
        time_window        TEXT,
        started_at         {int} NOT NULL,
        resolved_at        {int},
        firing_delivered   {int} NOT NULL,
        resolved_delivered {int} NOT NULL,
        delivery_error     TEXT
    );
    CREATE UNIQUE INDEX alerts_open ON alerts (rule, scope_key) WHERE state = 'firing';
    CREATE INDEX alerts_started ON alerts (started_at);
"#;

/// Each session's usage, settled as it is written (`store::telemetry`: event rows count, point
/// rows only while the session has no `api_request` event), with the first and last minute of
/// its telemetry and the UTC day of the first (`day`): what usage by session reads, so its
/// top rows cost the same for a million sessions a day as for ten
/// (`store::usage::top_sessions`). Every session with rollup rows has one, `api_error`-only
/// ones too (with no requests and no points, which leaves its transcript estimate counting).
/// The rollups are indexed by session, so one session's rows in a range are read without the
/// range's others (the points' index gives way to it). Filled from the hour rollups, which
/// are never pruned: a session's first minute is taken as its first hour's start, and its last
/// from the minute rollups where they are kept. SQLite 18, PostgreSQL 15.
pub(crate) fn session_totals(dialect: Dialect) -> String {
    let sums = crate::store::telemetry::SUM_COLUMNS;
    let day = crate::domain::time::DAY_MS;
    let mut ddl = String::from(
        "ALTER TABLE telemetry_sessions ADD COLUMN day {int};
         ALTER TABLE telemetry_sessions ADD COLUMN first_bucket {int};
         ALTER TABLE telemetry_sessions ADD COLUMN last_bucket {int};",
    );
    for column in sums {
        ddl.push_str(&format!(
            "ALTER TABLE telemetry_sessions ADD COLUMN {column} {{int}} NOT NULL DEFAULT 0;"
        ));
    }
    for suffix in ["", "_hour"] {
        ddl.push_str(&format!(
            "DROP INDEX usage_rollup{suffix}_points;
             CREATE INDEX usage_rollup{suffix}_session ON usage_rollup{suffix} (session_id, bucket);
             CREATE INDEX latency_rollup{suffix}_session
                 ON latency_rollup{suffix} (session_id, bucket);"
        ));
    }
    let summed = sums
        .iter()
        .map(|c| {
            dialect.sum(&format!(
                "CASE WHEN u.source = 'event' OR t.api_requests = 0 THEN u.{c} ELSE 0 END"
            )) + &format!(" AS {c}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let set_sums = sums
        .iter()
        .map(|c| format!("{c} = a.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    // In a usage page's order: the key byte by byte, whatever the database's collation.
    let by_key = dialect.binary("session_id");
    ddl.push_str(&format!(
        "INSERT INTO telemetry_sessions (session_id, api_requests, usage_points)
             SELECT DISTINCT u.session_id, 0, 0 FROM usage_rollup_hour u
             WHERE NOT EXISTS
                 (SELECT 1 FROM telemetry_sessions t WHERE t.session_id = u.session_id);
         UPDATE telemetry_sessions SET
             day = a.first_bucket - a.first_bucket % {day},
             first_bucket = a.first_bucket,
             last_bucket = CASE WHEN m.last_bucket > a.last_bucket THEN m.last_bucket
                                ELSE a.last_bucket END,
             {set_sums}
         FROM (SELECT u.session_id, min(u.bucket) AS first_bucket, max(u.bucket) AS last_bucket,
                      {summed}
               FROM usage_rollup_hour u JOIN telemetry_sessions t ON t.session_id = u.session_id
               GROUP BY u.session_id) a
         LEFT JOIN (SELECT session_id, max(bucket) AS last_bucket FROM usage_rollup
                    GROUP BY session_id) m ON m.session_id = a.session_id
         WHERE a.session_id = telemetry_sessions.session_id;
         CREATE INDEX telemetry_sessions_by_cost
             ON telemetry_sessions (day, cost_nanos DESC, requests DESC, {by_key});
         CREATE INDEX telemetry_sessions_by_last ON telemetry_sessions (day, last_bucket);"
    ));
    dialect.ddl(&ddl)
}
