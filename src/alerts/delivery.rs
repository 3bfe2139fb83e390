//! Taking alerts to people: a webhook gets a JSON POST (with a Slack-compatible `text`, so an
//! incoming Slack or Mattermost URL works as it is); a command gets the same JSON on its
//! standard input. Each delivery runs on its own task, with a timeout per try, retries with
//! backoff and a per-target rate limit, so a target that hangs never slows evaluation or
//! ingest. Whether a transition reached all its targets is stored on its episode; one that
//! did not is kept and shown (`delivery_error`).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::json;

use super::rules::{AlertRules, Condition, Destination, Target};
use crate::store::Store;
use crate::store::alerts::{AlertOp, AlertRecord};

/// How long one try may take.
const TRY_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per transition and target; the waits between them double from `first_backoff`.
const TRIES: u32 = 5;

/// An alert's transition, as targets receive it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Notice {
    pub id: i64,
    pub rule: String,
    /// `firing` or `resolved`.
    pub state: &'static str,
    pub scope: String,
    pub key: String,
    pub value: f64,
    pub threshold: f64,
    pub window: Option<String>,
    pub started_at: i64,
    pub resolved_at: Option<i64>,
}

impl Notice {
    pub(crate) fn of(record: &AlertRecord) -> Self {
        Self {
            id: record.id,
            rule: record.rule.clone(),
            state: if record.state == "resolved" {
                "resolved"
            } else {
                "firing"
            },
            scope: record.scope.clone(),
            key: record.scope_key.clone(),
            value: record.value_micros as f64 / 1e6,
            threshold: record.threshold_micros as f64 / 1e6,
            window: record.window.clone(),
            started_at: record.started_at,
            resolved_at: record.resolved_at,
        }
    }

    /// The JSON body every target gets.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let scope = if self.key.is_empty() {
            self.scope.clone()
        } else {
            format!("{} {}", self.scope, self.key)
        };
        let text = format!(
            "[hookwatch] {} {}: {} (value {}, threshold {}{})",
            self.rule,
            self.state,
            scope,
            self.value,
            self.threshold,
            self.window
                .as_deref()
                .map(|w| format!(", window {w}"))
                .unwrap_or_default()
        );
        json!({
            "rule": self.rule,
            "state": self.state,
            "scope": self.scope,
            "key": self.key,
            "value": self.value,
            "threshold": self.threshold,
            "window": self.window,
            "started_at": crate::domain::time::iso8601(self.started_at),
            "resolved_at": self.resolved_at.map(crate::domain::time::iso8601),
            "text": text,
        })
    }
}

/// Where an alert points a person: the session, app and agent type it is about (where it has
/// them), the unit of its value, and a link to the session's trace or the alerts page.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AlertContext {
    pub unit: &'static str,
    pub session_id: Option<String>,
    pub app: Option<String>,
    pub agent_type: Option<String>,
    pub link: Option<String>,
}

/// The unit a condition's value and threshold are in.
pub(crate) fn unit_of(condition: Condition) -> &'static str {
    match condition {
        Condition::Spend => "USD",
        Condition::FailureRate => "fraction",
        Condition::FailedTools | Condition::ApiErrors => "count",
        Condition::Stuck | Condition::Silence | Condition::PendingApproval => "seconds",
    }
}

impl Notice {
    /// The JSON a target is sent: [`Self::to_json`] with what `context` knows (`unit`,
    /// `session_id`, `app`, `agent_type`, `link`, also said in the text), and its `text`
    /// escaped as Slack's message formatting requires (`&`, `<`, `>`), so a session id or app
    /// name such as `<!channel>` or `<http://evil.example|click here>` is shown, not acted on.
    /// The other fields stay as they were sent.
    pub(crate) fn to_delivered_json(&self, context: &AlertContext) -> serde_json::Value {
        let mut json = self.to_json();
        let with_unit = |n: f64| match context.unit {
            "USD" => format!("${n:.2}"),
            "fraction" => format!("{:.1}%", n * 100.0),
            "" => n.to_string(),
            unit => format!("{n} {unit}"),
        };
        let mut text = format!(
            "[hookwatch] {} {}: {} (value {}, threshold {}{})",
            self.rule,
            self.state,
            if self.key.is_empty() {
                self.scope.clone()
            } else {
                format!("{} {}", self.scope, self.key)
            },
            with_unit(self.value),
            with_unit(self.threshold),
            self.window
                .as_deref()
                .map(|w| format!(", window {w}"))
                .unwrap_or_default()
        );
        for (name, value) in [
            ("session", &context.session_id),
            ("app", &context.app),
            ("agent type", &context.agent_type),
        ] {
            if let Some(value) = value {
                text.push_str(&format!("; {name} {value}"));
            }
        }
        if let Some(link) = &context.link {
            text.push_str(&format!(" {link}"));
        }
        json["text"] = slack_escaped(&text).into();
        json["unit"] = context.unit.into();
        json["session_id"] = context.session_id.clone().into();
        json["app"] = context.app.clone().into();
        json["agent_type"] = context.agent_type.clone().into();
        json["link"] = context.link.clone().into();
        json
    }
}

/// `text` with the three characters Slack gives meaning escaped.
fn slack_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub(crate) struct Delivery {
    store: Arc<dyn Store>,
    /// Where people reach this hookwatch (`--public-url`), for the links alerts carry.
    public_url: Option<String>,
    limiters: Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
    first_backoff: Duration,
    http: ureq::Agent,
}

impl Delivery {
    pub(crate) fn new(store: Arc<dyn Store>, public_url: Option<String>) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(TRY_TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
            .build();
        Self {
            store,
            public_url: public_url.map(|url| url.trim_end_matches('/').to_owned()),
            limiters: Mutex::new(HashMap::new()),
            first_backoff: Duration::from_secs(1),
            http: config.into(),
        }
    }

    /// Sends each transition to its rule's targets, each on a task of its own, and returns
    /// at once.
    pub(crate) fn deliver(self: &Arc<Self>, rules: &AlertRules, notices: Vec<Notice>) {
        for notice in notices {
            let rule = rules.rules.iter().find(|r| r.name == notice.rule);
            let targets: Vec<Target> = rule
                .map(|rule| {
                    rules
                        .targets
                        .iter()
                        .filter(|t| rule.notify.contains(&t.name))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let unit = rule.map_or("", |rule| unit_of(rule.condition));
            let delivery = Arc::clone(self);
            tokio::spawn(async move { delivery.send_all(notice, unit, targets).await });
        }
    }

    /// What the store knows of the alert's subject: a session's app; an agent's (a stuck
    /// subagent, or the agent whose call is stuck) session, app and type.
    async fn context(&self, notice: &Notice, unit: &'static str) -> AlertContext {
        let mut context = AlertContext {
            unit,
            ..AlertContext::default()
        };
        let agent_id = notice.key.strip_prefix("agent:").or_else(|| {
            notice
                .key
                .strip_prefix("call:")?
                .rsplit_once(':')
                .map(|(a, _)| a)
        });
        if let Some(agent_id) = agent_id {
            if let Ok(Some(detail)) = self.store.agent(agent_id, 0).await {
                context.session_id = Some(detail.agent.session_id);
                context.app = Some(detail.agent.source_app);
                context.agent_type = Some(detail.agent.agent_type);
            }
        } else if notice.scope == "session" {
            context.session_id = Some(notice.key.clone());
            if let Ok(Some(detail)) = self.store.session(&notice.key, 0).await {
                context.app = Some(detail.session.row.source_app);
            }
        } else if notice.scope == "app" {
            context.app = Some(notice.key.clone());
        }
        context.link = self
            .public_url
            .as_ref()
            .map(|url| match &context.session_id {
                Some(session) => {
                    format!("{url}/sessions/{}", crate::export::percent_encode(session))
                }
                None => format!("{url}/alerts"),
            });
        context
    }

    async fn send_all(&self, notice: Notice, unit: &'static str, targets: Vec<Target>) {
        let context = self.context(&notice, unit).await;
        let mut errors = Vec::new();
        for target in &targets {
            if let Err(e) = self.send_with_retries(&notice, &context, target).await {
                tracing::warn!(rule = %notice.rule, target = %target.name, error = %e,
                    "an alert could not be delivered");
                errors.push(format!("{}: {e}", target.name));
            }
        }
        let op = AlertOp::Delivered {
            id: notice.id,
            resolution: notice.state == "resolved",
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        };
        if let Err(e) = self.store.apply_alerts(vec![op]).await {
            tracing::warn!(error = %e, "an alert's delivery could not be recorded");
        }
    }

    async fn send_with_retries(
        &self,
        notice: &Notice,
        context: &AlertContext,
        target: &Target,
    ) -> Result<(), String> {
        let body =
            serde_json::to_vec(&notice.to_delivered_json(context)).map_err(|e| e.to_string())?;
        let limiter = self.limiter(target);
        let mut wait = self.first_backoff;
        let mut last = String::new();
        for attempt in 1..=TRIES {
            let result = if limiter.check().is_err() {
                Err(format!("more than {} a minute", target.per_minute))
            } else {
                self.send_once(&target.destination, &body).await
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            if attempt < TRIES {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        Err(format!("{last} (after {TRIES} tries)"))
    }

    fn limiter(&self, target: &Target) -> Arc<DefaultDirectRateLimiter> {
        let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(limiters.entry(target.name.clone()).or_insert_with(|| {
            let per_minute = NonZeroU32::new(target.per_minute).unwrap_or(NonZeroU32::MIN);
            Arc::new(RateLimiter::direct(Quota::per_minute(per_minute)))
        }))
    }

    async fn send_once(&self, destination: &Destination, body: &[u8]) -> Result<(), String> {
        match destination {
            Destination::Webhook(url) => {
                let (http, url, body) = (self.http.clone(), url.clone(), body.to_vec());
                tokio::task::spawn_blocking(move || {
                    let answer = http
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .send(&body[..])
                        .map_err(|e| e.to_string())?;
                    let status = answer.status().as_u16();
                    if (200..300).contains(&status) {
                        Ok(())
                    } else {
                        Err(format!("the webhook answered {status}"))
                    }
                })
                .await
                .map_err(|e| e.to_string())?
            }
            Destination::Command(command) => run_command(command, body).await,
        }
    }
}

/// Runs `command` with `body` on its standard input; it must exit 0 within the try's timeout.
async fn run_command(command: &[String], body: &[u8]) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let (program, args) = command.split_first().ok_or("an empty command")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{program} cannot be run: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no standard input")?;
    let run = async {
        stdin.write_all(body).await.map_err(|e| e.to_string())?;
        drop(stdin);
        child.wait().await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(TRY_TIMEOUT, run).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("{program} exited with {status}")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("{program} took longer than {TRY_TIMEOUT:?}")),
    }
}
