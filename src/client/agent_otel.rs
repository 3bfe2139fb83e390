//! `hookwatch install --otel --agent codex|gemini`: points Codex CLI's or Gemini CLI's own
//! OpenTelemetry export at hookwatch, under the rules Claude Code's gets (`otel_settings`): the
//! user's settings stay, a second install changes nothing, a setting that sends elsewhere is
//! refused with nothing changed, and `--uninstall` takes out exactly what was added.
//!
//! - **Codex** reads only `$CODEX_HOME/config.toml`'s `[otel]` table, one exporter per signal,
//!   each a full URL (`other-agents-telemetry.md` §2.1). hookwatch sets `exporter` (logs),
//!   `trace_exporter` and `metrics_exporter` to OTLP/HTTP protobuf at `/v1/logs`, `/v1/traces`
//!   and `/v1/metrics`. An absent `metrics_exporter` means OpenAI's own Statsig endpoint, so
//!   hookwatch's takes its place; one the user set to send elsewhere is refused. Codex has no
//!   header helper: with `HOOKWATCH_TOKEN` set, the header is written into the file (Codex's
//!   own `auth.json` sits beside it), and the command says so. The file is edited in place
//!   (`toml_edit`), comments and order kept.
//! - **Gemini** reads `settings.json`'s `telemetry` object (§3.1): `enabled`, `target = local`,
//!   `otlpEndpoint` (the base URL: its HTTP exporter appends `/v1/<signal>`) and
//!   `otlpProtocol = http` (OTLP/HTTP JSON, which hookwatch takes). Its exporter reads a token
//!   from `OTEL_EXPORTER_OTLP_HEADERS` in its environment; nothing is written for it.
//!
//! Neither file has room for a marker of hookwatch's own (Gemini validates its settings), so
//! what was added, and what each key held before, is recorded in hookwatch's state directory
//! ([`InstallRecord`]): an uninstall puts back each key that still holds hookwatch's value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::domain::coding_agent::CodingAgent;

/// A setting of the user's that would have to be overwritten.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{key} is already set to {theirs} in {file}: {agent} sends its telemetry elsewhere; remove \
     that setting first, nothing was changed"
)]
pub struct AgentOtelConflict {
    pub agent: &'static str,
    pub file: String,
    pub key: String,
    pub theirs: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentOtelError {
    #[error(transparent)]
    Conflict(#[from] AgentOtelConflict),
    #[error("{0} is not valid TOML ({1}); fix or move it first, nothing was changed")]
    NotToml(PathBuf, String),
    #[error(transparent)]
    Settings(#[from] super::install::InstallError),
    #[error("could not read or write {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Where the agent's telemetry settings are.
pub fn settings_file(agent: CodingAgent, home: &Path) -> Option<PathBuf> {
    match agent {
        CodingAgent::ClaudeCode => None,
        CodingAgent::Codex => Some(super::install::codex_home(home).join("config.toml")),
        CodingAgent::Gemini => Some(home.join(".gemini/settings.json")),
    }
}

/// What one key held before hookwatch set it (`None`: absent), and what hookwatch wrote, each
/// as text (TOML for Codex, JSON for Gemini).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyRecord {
    pub was: Option<String>,
    pub ours: String,
}

/// Every file's keys hookwatch set: `{file: {key: KeyRecord}}`.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstallRecord(pub BTreeMap<String, BTreeMap<String, KeyRecord>>);

impl InstallRecord {
    /// `$XDG_STATE_HOME/hookwatch/telemetry-settings.json` (beside the spool).
    pub fn default_path() -> PathBuf {
        super::default_spool_dir().with_file_name("telemetry-settings.json")
    }

    pub fn load(path: &Path) -> Self {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn save(&self, path: &Path) -> Result<(), AgentOtelError> {
        let io = |e| AgentOtelError::Io(path.to_owned(), e);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let text = serde_json::to_vec_pretty(self).expect("a map of strings serializes");
        let temp = path.with_extension("json.tmp");
        std::fs::write(&temp, text).map_err(io)?;
        std::fs::rename(&temp, path).map_err(io)
    }
}

/// What an install or uninstall changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OtelChange {
    pub file: PathBuf,
    /// Keys set (install) or put back (uninstall).
    pub keys: usize,
}

/// The agent's settings file, its key in the record, and the record.
fn file_and_record(
    agent: CodingAgent,
    home: &Path,
    record_path: &Path,
) -> Option<(PathBuf, String, InstallRecord)> {
    let file = settings_file(agent, home)?;
    let key = file.to_string_lossy().into_owned();
    Some((file, key, InstallRecord::load(record_path)))
}

/// `install --otel --agent codex|gemini`.
pub fn install(
    agent: CodingAgent,
    home: &Path,
    server: &str,
    token: Option<&str>,
    record_path: &Path,
) -> Result<OtelChange, AgentOtelError> {
    let Some((file, key, mut record)) = file_and_record(agent, home, record_path) else {
        return Ok(OtelChange::default());
    };
    let mut recorded = record.0.remove(&key).unwrap_or_default();
    let added = match agent {
        CodingAgent::Codex => edit_codex(&file, token.is_some(), |doc| {
            codex_add(doc, &file, server, token)
        })?,
        _ => edit_gemini(&file, |settings| gemini_add(settings, &file, server))?,
    };
    let keys = added.len();
    for (name, new) in added {
        // A key set by an earlier install keeps what it held before that one.
        let was = recorded.get(&name).map_or(new.was, |old| old.was.clone());
        recorded.insert(
            name,
            KeyRecord {
                was,
                ours: new.ours,
            },
        );
    }
    if !recorded.is_empty() {
        record.0.insert(key, recorded);
        record.save(record_path)?;
    }
    Ok(OtelChange { file, keys })
}

/// `install --otel --agent codex|gemini --uninstall`: puts back every recorded key that still
/// holds what hookwatch wrote.
pub fn uninstall(
    agent: CodingAgent,
    home: &Path,
    record_path: &Path,
) -> Result<OtelChange, AgentOtelError> {
    let Some((file, key, mut record)) = file_and_record(agent, home, record_path) else {
        return Ok(OtelChange::default());
    };
    let Some(recorded) = record.0.remove(&key) else {
        return Ok(OtelChange { file, keys: 0 });
    };
    let keys = match agent {
        CodingAgent::Codex => edit_codex(&file, false, |doc| Ok(codex_remove(doc, &recorded)))?,
        _ => edit_gemini(&file, |settings| Ok(gemini_remove(settings, &recorded)))?,
    };
    record.save(record_path)?;
    Ok(OtelChange { file, keys })
}

/// Where the agent's settings send its telemetry, if anywhere hookwatch can tell (for
/// `doctor`): Codex's logs exporter's URL, Gemini's OTLP endpoint when telemetry is on.
pub fn configured_endpoint(agent: CodingAgent, home: &Path) -> Option<String> {
    let file = settings_file(agent, home)?;
    match agent {
        CodingAgent::Codex => {
            let text = std::fs::read_to_string(&file).ok()?;
            let doc: toml_edit::DocumentMut = text.parse().ok()?;
            let exporter = doc.get("otel")?.get("exporter")?;
            let inner = exporter
                .get("otlp-http")
                .or_else(|| exporter.get("otlp-grpc"))?;
            inner.get("endpoint")?.as_str().map(str::to_owned)
        }
        _ => {
            let settings = super::install::read_settings(&file).ok()??;
            let telemetry = settings.get("telemetry")?.as_object()?;
            if telemetry.get("enabled") != Some(&Value::Bool(true)) {
                return None;
            }
            Some(
                telemetry
                    .get("otlpEndpoint")
                    .and_then(Value::as_str)
                    .unwrap_or("http://localhost:4317")
                    .to_owned(),
            )
        }
    }
}

/// Each key hookwatch set: its name and record.
type Added = Vec<(String, KeyRecord)>;

/// Codex's three exporters and the signal each carries.
const CODEX_EXPORTERS: [(&str, &str); 3] = [
    ("exporter", "logs"),
    ("trace_exporter", "traces"),
    ("metrics_exporter", "metrics"),
];

/// The exporter hookwatch writes for one signal: OTLP/HTTP protobuf at the signal's URL.
fn codex_exporter(server: &str, signal: &str, token: Option<&str>) -> toml_edit::Item {
    let mut http = toml_edit::InlineTable::new();
    http.insert(
        "endpoint",
        format!("{}/v1/{signal}", server.trim_end_matches('/')).into(),
    );
    http.insert("protocol", "binary".into());
    if let Some(token) = token {
        let mut headers = toml_edit::InlineTable::new();
        headers.insert("Authorization", format!("Bearer {token}").into());
        http.insert("headers", toml_edit::Value::InlineTable(headers));
    }
    let mut exporter = toml_edit::InlineTable::new();
    exporter.insert("otlp-http", toml_edit::Value::InlineTable(http));
    toml_edit::value(exporter)
}

/// An item's text without its surrounding whitespace and comments, to compare and record.
fn toml_text(item: &toml_edit::Item) -> String {
    match item {
        toml_edit::Item::Value(value) => value.clone().decorated("", "").to_string(),
        other => other.to_string().trim().to_owned(),
    }
}

fn codex_add(
    doc: &mut toml_edit::DocumentMut,
    file: &Path,
    server: &str,
    token: Option<&str>,
) -> Result<Added, AgentOtelError> {
    let conflict = |key: &str, theirs: String| AgentOtelConflict {
        agent: CodingAgent::Codex.name(),
        file: file.display().to_string(),
        key: key.to_owned(),
        theirs,
    };
    if let Some(otel) = doc.get("otel")
        && !otel.is_table_like()
    {
        return Err(conflict("otel", toml_text(otel)).into());
    }
    let mut added = Added::new();
    // Check everything first: a conflict changes nothing.
    for (key, signal) in CODEX_EXPORTERS {
        let ours = codex_exporter(server, signal, token);
        match doc.get("otel").and_then(|otel| otel.get(key)) {
            None => added.push((
                format!("otel.{key}"),
                KeyRecord {
                    was: None,
                    ours: toml_text(&ours),
                },
            )),
            Some(theirs) if toml_text(theirs) == toml_text(&ours) => {}
            // "none" sends nowhere: the user asked for telemetry, and uninstall puts it back.
            Some(theirs) if theirs.as_str() == Some("none") => added.push((
                format!("otel.{key}"),
                KeyRecord {
                    was: Some(toml_text(theirs)),
                    ours: toml_text(&ours),
                },
            )),
            Some(theirs) => return Err(conflict(&format!("otel.{key}"), toml_text(theirs)).into()),
        }
    }
    if added.is_empty() {
        return Ok(added);
    }
    if doc.get("otel").is_none() {
        doc.insert("otel", toml_edit::Item::Table(toml_edit::Table::new()));
    }
    let otel = doc["otel"].as_table_like_mut().expect("checked above");
    for (key, signal) in CODEX_EXPORTERS {
        if added.iter().any(|(name, _)| name == &format!("otel.{key}")) {
            otel.insert(key, codex_exporter(server, signal, token));
        }
    }
    Ok(added)
}

fn codex_remove(doc: &mut toml_edit::DocumentMut, recorded: &BTreeMap<String, KeyRecord>) -> usize {
    let Some(otel) = doc.get_mut("otel").and_then(|o| o.as_table_like_mut()) else {
        return 0;
    };
    let mut put_back = 0;
    for (name, record) in recorded {
        let Some(key) = name.strip_prefix("otel.") else {
            continue;
        };
        if otel.get(key).map(toml_text).as_deref() != Some(record.ours.as_str()) {
            continue; // changed since: the user's now
        }
        put_back += 1;
        match record.was.as_deref().map(str::parse::<toml_edit::Value>) {
            Some(Ok(was)) => drop(otel.insert(key, toml_edit::Item::Value(was))),
            _ => drop(otel.remove(key)),
        }
    }
    let emptied = otel.is_empty();
    let created_by_us = recorded.values().all(|r| r.was.is_none());
    if emptied && created_by_us && put_back > 0 {
        doc.remove("otel");
    }
    put_back
}

/// Applies `change` to Codex's config.toml; writes (with a backup) only if it changed, keeping
/// its permissions, or with `secret` (a token written in it) readable by its owner only.
fn edit_codex<T>(
    file: &Path,
    secret: bool,
    change: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<T, AgentOtelError>,
) -> Result<T, AgentOtelError> {
    let io = |e| AgentOtelError::Io(file.to_owned(), e);
    let original = match std::fs::read_to_string(file) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let mut doc: toml_edit::DocumentMut =
        original
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|e: toml_edit::TomlError| {
                AgentOtelError::NotToml(file.to_owned(), e.to_string())
            })?;
    let result = change(&mut doc)?;
    let text = doc.to_string();
    if original.as_deref().unwrap_or_default() == text {
        return Ok(result);
    }
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    if original.is_some() {
        std::fs::copy(file, file.with_extension("toml.hookwatch-backup")).map_err(io)?;
    }
    let temp = file.with_extension("toml.hookwatch-tmp");
    super::install::replace_file(file, &temp, &text, secret).map_err(io)?;
    Ok(result)
}

/// Applies `change` to Gemini's settings.json, through the hooks' editor (backup, atomic,
/// written only if it changed). A conflict returns before anything is written.
fn edit_gemini<T>(
    file: &Path,
    change: impl FnOnce(&mut Map<String, Value>) -> Result<T, AgentOtelError>,
) -> Result<T, AgentOtelError> {
    let mut edited = super::install::read_settings(file)?.unwrap_or_default();
    let result = change(&mut edited)?;
    super::install::edit_settings(file, |settings| *settings = edited)?;
    Ok(result)
}

/// The `telemetry` keys hookwatch sets in Gemini's settings.
fn gemini_keys(server: &str) -> [(&'static str, Value); 4] {
    [
        ("enabled", json!(true)),
        ("target", json!("local")),
        ("otlpEndpoint", json!(server.trim_end_matches('/'))),
        ("otlpProtocol", json!("http")),
    ]
}

fn gemini_add(
    settings: &mut Map<String, Value>,
    file: &Path,
    server: &str,
) -> Result<Added, AgentOtelError> {
    let conflict = |key: &str, theirs: &Value| AgentOtelConflict {
        agent: CodingAgent::Gemini.name(),
        file: file.display().to_string(),
        key: key.to_owned(),
        theirs: theirs.to_string(),
    };
    let empty = Map::new();
    let telemetry = match settings.get("telemetry") {
        None => &empty,
        Some(Value::Object(telemetry)) => telemetry,
        Some(other) => return Err(conflict("telemetry", other).into()),
    };
    // Settings that send elsewhere: another collector, Google Cloud directly, or a file.
    for key in ["otlpEndpoint", "target", "outfile"] {
        let ours = gemini_keys(server)
            .into_iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value);
        if let Some(theirs) = telemetry.get(key)
            && Some(theirs) != ours.as_ref()
        {
            return Err(conflict(&format!("telemetry.{key}"), theirs).into());
        }
    }
    let mut added = Added::new();
    for (key, ours) in gemini_keys(server) {
        match telemetry.get(key) {
            Some(theirs) if *theirs == ours => {}
            theirs => added.push((
                format!("telemetry.{key}"),
                KeyRecord {
                    was: theirs.map(Value::to_string),
                    ours: ours.to_string(),
                },
            )),
        }
    }
    if added.is_empty() {
        return Ok(added);
    }
    let telemetry = settings
        .entry("telemetry")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .expect("checked above");
    for (key, ours) in gemini_keys(server) {
        telemetry.insert(key.to_owned(), ours);
    }
    Ok(added)
}

fn gemini_remove(
    settings: &mut Map<String, Value>,
    recorded: &BTreeMap<String, KeyRecord>,
) -> usize {
    let Some(Value::Object(telemetry)) = settings.get_mut("telemetry") else {
        return 0;
    };
    let mut put_back = 0;
    for (name, record) in recorded {
        let Some(key) = name.strip_prefix("telemetry.") else {
            continue;
        };
        if telemetry.get(key).map(Value::to_string).as_deref() != Some(record.ours.as_str()) {
            continue; // changed since: the user's now
        }
        put_back += 1;
        match record.was.as_deref().map(serde_json::from_str::<Value>) {
            Some(Ok(was)) => drop(telemetry.insert(key.to_owned(), was)),
            _ => drop(telemetry.remove(key)),
        }
    }
    let created_by_us = recorded.values().all(|r| r.was.is_none());
    if telemetry.is_empty() && created_by_us && put_back > 0 {
        settings.remove("telemetry");
    }
    put_back
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "http://127.0.0.1:4000";

    #[test]
    fn codexs_none_is_taken_over_and_put_back_and_its_comments_stay() {
        let text = "# mine\n[otel]\nexporter = \"none\" # off for now\nenvironment = \"prod\"\n";
        let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
        let added = codex_add(&mut doc, Path::new("config.toml"), SERVER, None).unwrap();
        let names: Vec<&str> = added.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "otel.exporter",
                "otel.trace_exporter",
                "otel.metrics_exporter"
            ]
        );
        assert_eq!(added[0].1.was.as_deref(), Some("\"none\""));
        let written = doc.to_string();
        assert!(written.contains("environment = \"prod\""), "{written}");
        assert!(
            written.contains("endpoint = \"http://127.0.0.1:4000/v1/logs\""),
            "{written}"
        );
        // A second install adds nothing.
        let mut again: toml_edit::DocumentMut = written.parse().unwrap();
        assert!(
            codex_add(&mut again, Path::new("c"), SERVER, None)
                .unwrap()
                .is_empty()
        );
        let recorded: BTreeMap<String, KeyRecord> = added.into_iter().collect();
        assert_eq!(codex_remove(&mut doc, &recorded), 3);
        let back = doc.to_string();
        assert!(back.starts_with("# mine\n[otel]\n"), "{back}");
        assert!(back.contains("exporter = \"none\""), "{back}");
        assert!(!back.contains("4000"), "{back}");
        assert!(back.contains("environment = \"prod\""), "{back}");
    }

    #[test]
    fn a_token_is_codexs_header_and_a_value_changed_since_is_left_alone() {
        let mut doc = toml_edit::DocumentMut::new();
        let added = codex_add(&mut doc, Path::new("c"), SERVER, Some("s3cret")).unwrap();
        let written = doc.to_string();
        assert!(
            written.contains("headers = { Authorization = \"Bearer s3cret\" }"),
            "{written}"
        );
        let recorded: BTreeMap<String, KeyRecord> = added.into_iter().collect();
        doc["otel"]["exporter"] = toml_edit::value("none");
        assert_eq!(codex_remove(&mut doc, &recorded), 2, "the user's own stays");
        assert_eq!(
            doc.to_string().trim(),
            "[otel]\nexporter = \"none\"",
            "the table stays while it holds the user's"
        );
    }

    #[test]
    fn geminis_own_keys_stay_and_a_false_switch_is_put_back() {
        let mut settings: Map<String, Value> =
            serde_json::from_value(json!({"telemetry": {"enabled": false, "logPrompts": false}}))
                .unwrap();
        let original = settings.clone();
        let added = gemini_add(&mut settings, Path::new("s"), SERVER).unwrap();
        assert_eq!(added.len(), 4);
        assert_eq!(
            settings["telemetry"],
            json!({"enabled": true, "logPrompts": false, "target": "local",
                   "otlpEndpoint": SERVER, "otlpProtocol": "http"})
        );
        let recorded: BTreeMap<String, KeyRecord> = added.into_iter().collect();
        assert_eq!(gemini_remove(&mut settings, &recorded), 4);
        assert_eq!(settings, original);
        let mut gcp: Map<String, Value> =
            serde_json::from_value(json!({"telemetry": {"target": "gcp"}})).unwrap();
        let refused = gemini_add(&mut gcp, Path::new("s"), SERVER).unwrap_err();
        assert!(
            refused.to_string().contains("telemetry.target"),
            "{refused}"
        );
    }
}
