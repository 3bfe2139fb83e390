//! `hookwatch install --otel`: points Claude Code's own OpenTelemetry export at hookwatch, in
//! the same settings file as the hooks and under the same rules (the user's keys stay, a second
//! install changes nothing, `--uninstall` removes exactly what was added).
//!
//! It writes the `env` block Claude Code reads at start-up: telemetry on, logs and metrics
//! exported over `http/protobuf` to the hookwatch server. The ingest token is never written
//! into the file: with `HOOKWATCH_TOKEN` set, `otelHeadersHelper` runs `hookwatch otel-headers`,
//! which prints the header from the environment each time Claude Code asks. hookwatch refuses
//! to change an `OTEL_*` setting the user made for another backend. Which keys are hookwatch's
//! is recorded beside them ([`OURS`]), so an uninstall removes those and no others.

use serde_json::{Map, Value};

/// The `env` key listing the keys hookwatch added, comma-separated.
pub(crate) const OURS: &str = "HOOKWATCH_OTEL_KEYS";

/// The settings key of Claude Code's dynamic-headers script.
const HEADERS_HELPER: &str = "otelHeadersHelper";

/// What `install --otel` points Claude Code at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelTarget {
    /// The hookwatch server (`/v1/logs` and `/v1/metrics` are appended by the exporter).
    pub endpoint: String,
    /// The command that prints the `Authorization` header (`hookwatch otel-headers`), when a
    /// token is in use.
    pub headers_helper: Option<String>,
}

impl OtelTarget {
    fn env(&self) -> [(&'static str, String); 5] {
        [
            ("CLAUDE_CODE_ENABLE_TELEMETRY", "1".into()),
            ("OTEL_LOGS_EXPORTER", "otlp".into()),
            ("OTEL_METRICS_EXPORTER", "otlp".into()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                self.endpoint.trim_end_matches('/').to_owned(),
            ),
        ]
    }
}

/// A setting of the user's that `install --otel` would have to overwrite.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{key} is already set to {theirs:?} (hookwatch would set {ours:?}): Claude Code sends its \
     telemetry elsewhere; remove that setting first, nothing was changed"
)]
pub struct OtelConflict {
    pub key: String,
    pub theirs: String,
    pub ours: String,
}

/// The keys hookwatch added, from the marker.
fn ours(env: &Map<String, Value>) -> Vec<String> {
    env.get(OURS)
        .and_then(Value::as_str)
        .map(|keys| {
            keys.split(',')
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn helper_is_ours(settings: &Map<String, Value>) -> bool {
    settings
        .get(HEADERS_HELPER)
        .and_then(Value::as_str)
        .is_some_and(|command| command.contains("hookwatch") && command.ends_with(" otel-headers"))
}

/// Adds the telemetry settings; returns how many settings it added or changed.
pub fn add_otel(
    settings: &mut Map<String, Value>,
    target: &OtelTarget,
) -> Result<usize, OtelConflict> {
    let empty = Map::new();
    let env = match settings.get("env") {
        Some(Value::Object(env)) => env,
        None => &empty,
        Some(other) => {
            return Err(OtelConflict {
                key: "env".into(),
                theirs: other.to_string(),
                ours: "an object".into(),
            });
        }
    };
    let mut owned = ours(env);
    // Check everything first: a conflict changes nothing.
    for (key, value) in target.env() {
        match env.get(key) {
            Some(Value::String(theirs)) if *theirs == value => {}
            Some(theirs) if !owned.iter().any(|k| k == key) => {
                return Err(OtelConflict {
                    key: key.into(),
                    theirs: theirs
                        .as_str()
                        .map_or_else(|| theirs.to_string(), str::to_owned),
                    ours: value,
                });
            }
            _ => {}
        }
    }
    if let Some(theirs) = settings.get(HEADERS_HELPER)
        && !helper_is_ours(settings)
    {
        return Err(OtelConflict {
            key: HEADERS_HELPER.into(),
            theirs: theirs
                .as_str()
                .map_or_else(|| theirs.to_string(), str::to_owned),
            ours: target.headers_helper.clone().unwrap_or_default(),
        });
    }
    let mut changed = 0;
    let env = settings
        .entry("env")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .expect("checked above");
    for (key, value) in target.env() {
        if env.get(key).and_then(Value::as_str) != Some(value.as_str()) {
            env.insert(key.into(), Value::String(value));
            changed += 1;
            if !owned.iter().any(|k| k == key) {
                owned.push(key.into());
            }
        }
    }
    if !owned.is_empty() {
        let marker = Value::String(owned.join(","));
        if env.get(OURS) != Some(&marker) {
            env.insert(OURS.into(), marker);
        }
    }
    match &target.headers_helper {
        Some(helper) if settings.get(HEADERS_HELPER).and_then(Value::as_str) != Some(helper) => {
            settings.insert(HEADERS_HELPER.into(), Value::String(helper.clone()));
            changed += 1;
        }
        None if helper_is_ours(settings) => {
            settings.remove(HEADERS_HELPER);
            changed += 1;
        }
        _ => {}
    }
    Ok(changed)
}

/// Removes what [`add_otel`] added, and nothing else; returns how many settings it removed.
pub fn remove_otel(settings: &mut Map<String, Value>) -> usize {
    let mut removed = 0;
    if helper_is_ours(settings) {
        settings.remove(HEADERS_HELPER);
        removed += 1;
    }
    let Some(Value::Object(env)) = settings.get_mut("env") else {
        return removed;
    };
    let owned = ours(env);
    for key in &owned {
        if env.remove(key).is_some() {
            removed += 1;
        }
    }
    if env.remove(OURS).is_some() && env.is_empty() {
        settings.remove("env");
    }
    removed
}

/// Where the settings send Claude Code's telemetry, when hookwatch set it up.
pub(crate) fn configured_endpoint(settings: &Map<String, Value>) -> Option<&str> {
    let env = settings.get("env")?.as_object()?;
    let owned = ours(env);
    (env.get("CLAUDE_CODE_ENABLE_TELEMETRY")
        .and_then(Value::as_str)
        == Some("1")
        && owned.iter().any(|k| k == "OTEL_EXPORTER_OTLP_ENDPOINT"))
    .then(|| env.get("OTEL_EXPORTER_OTLP_ENDPOINT")?.as_str())
    .flatten()
}

/// What `hookwatch otel-headers` prints: the `Authorization` header from `HOOKWATCH_TOKEN`, as
/// the JSON object of headers Claude Code's `otelHeadersHelper` expects (`{}` without one).
pub fn headers_json(token: Option<&str>) -> String {
    let mut headers = Map::new();
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        headers.insert(
            "Authorization".into(),
            Value::String(format!("Bearer {token}")),
        );
    }
    Value::Object(headers).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(helper: bool) -> OtelTarget {
        OtelTarget {
            endpoint: "http://127.0.0.1:4000/".into(),
            headers_helper: helper.then(|| "/usr/local/bin/hookwatch otel-headers".into()),
        }
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn the_users_env_stays_and_a_second_install_changes_nothing() {
        let users = object(json!({
            "model": "opus",
            "env": {"MY_FLAG": "1", "CLAUDE_CODE_ENABLE_TELEMETRY": "1"},
        }));
        let mut settings = users.clone();
        assert_eq!(add_otel(&mut settings, &target(true)), Ok(5));
        assert_eq!(settings["model"], "opus");
        assert_eq!(settings["env"]["MY_FLAG"], "1");
        assert_eq!(
            settings["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"],
            "http://127.0.0.1:4000"
        );
        assert_eq!(
            settings["env"]["OTEL_EXPORTER_OTLP_PROTOCOL"],
            "http/protobuf"
        );
        assert_eq!(
            settings["otelHeadersHelper"],
            "/usr/local/bin/hookwatch otel-headers"
        );
        assert_eq!(
            settings["env"][OURS],
            "OTEL_LOGS_EXPORTER,OTEL_METRICS_EXPORTER,OTEL_EXPORTER_OTLP_PROTOCOL,OTEL_EXPORTER_OTLP_ENDPOINT",
            "the user's own CLAUDE_CODE_ENABLE_TELEMETRY is not hookwatch's"
        );
        assert_eq!(
            configured_endpoint(&settings),
            Some("http://127.0.0.1:4000")
        );
        let once = settings.clone();
        assert_eq!(add_otel(&mut settings, &target(true)), Ok(0));
        assert_eq!(settings, once, "idempotent");
        assert_eq!(remove_otel(&mut settings), 5);
        assert_eq!(
            settings, users,
            "uninstall leaves exactly the user's settings"
        );
    }

    #[test]
    fn another_backend_is_not_overwritten() {
        let mut settings = object(json!({
            "env": {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.team.internal:4318"},
        }));
        let before = settings.clone();
        let conflict = add_otel(&mut settings, &target(false)).unwrap_err();
        assert_eq!(conflict.key, "OTEL_EXPORTER_OTLP_ENDPOINT");
        assert!(
            conflict.to_string().contains("collector.team.internal"),
            "{conflict}"
        );
        assert_eq!(settings, before, "nothing changed");
        let mut helper = object(json!({"otelHeadersHelper": "/opt/vault-headers.sh"}));
        assert_eq!(
            add_otel(&mut helper, &target(true)).unwrap_err().key,
            "otelHeadersHelper"
        );
    }

    #[test]
    fn a_reinstall_for_another_server_moves_hookwatchs_own_settings() {
        let mut settings = Map::new();
        add_otel(&mut settings, &target(true)).unwrap();
        let elsewhere = OtelTarget {
            endpoint: "https://hooks.team.internal".into(),
            headers_helper: None,
        };
        assert_eq!(
            add_otel(&mut settings, &elsewhere),
            Ok(2),
            "endpoint and helper"
        );
        assert_eq!(
            settings["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"],
            "https://hooks.team.internal"
        );
        assert!(
            settings.get("otelHeadersHelper").is_none(),
            "no token, no helper"
        );
        assert_eq!(remove_otel(&mut settings), 5);
        assert!(settings.is_empty(), "{settings:?}");
    }

    #[test]
    fn the_headers_helper_prints_the_token_from_the_environment() {
        assert_eq!(
            headers_json(Some("s3cret")),
            r#"{"Authorization":"Bearer s3cret"}"#
        );
        assert_eq!(headers_json(None), "{}");
        assert_eq!(headers_json(Some("")), "{}");
    }
}
