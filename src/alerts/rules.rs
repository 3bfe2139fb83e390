//! The rule file (`--alerts FILE`, TOML): where alerts go (`[[target]]`) and when they fire
//! (`[[rule]]`). Read whole and checked whole: a file with any error is refused with the line
//! it is on, and the rules already in force stay (`AlertRules::parse` never half-loads).
//!
//! ```toml
//! [[target]]
//! name = "team"
//! webhook = "https://hooks.slack.com/services/..."   # or: command = ["notify-send", "hookwatch"]
//!
//! [[rule]]
//! name = "session over $5"
//! condition = "spend"        # spend | failure_rate | failed_tools | stuck | api_errors | silence | pending_approval
//! threshold = 5.0            # USD for spend, a fraction for failure_rate, a count for failed_tools
//!                            # and api_errors, seconds for stuck, silence and pending_approval
//! window = "24h"             # for spend, failure_rate, failed_tools and api_errors
//! per = "session"            # all | app | session | user | model
//! notify = ["team"]
//! ```
//!
//! `failed_tools` counts PostToolUseFailure events (per `all` or `app`); `silence` watches
//! apps seen on at least 3 of the last 7 days, and fires for one not heard from for
//! `threshold` seconds.
//!
//! Each condition's options, besides `name`, `condition`, `threshold` and `notify`:
//!
//! | condition | `window` | `per` | `min_count` |
//! |---|---|---|---|
//! | `spend` | required | any | — |
//! | `failure_rate` | required | `all` | optional (default 1) |
//! | `failed_tools` | required | `all` or `app` | — |
//! | `api_errors` | required | any | — |
//! | `stuck`, `silence`, `pending_approval` | — | any | — |
//!
//! An option a condition does not take (a `window` on `stuck`, a `min_count` on `spend`) is
//! refused with its line, as an unknown key is: a rule never loads meaning less than it says.

use std::collections::HashSet;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::domain::time::parse_duration_ms;

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Condition {
    /// Cost over `threshold` USD in the window (Claude Code's telemetry where a session has
    /// it, else the transcript estimate).
    Spend,
    /// Failed executions over finished ones above `threshold`, with at least `min_count`.
    FailureRate,
    /// Failed tool calls (PostToolUseFailure events) in the window, at least `threshold`.
    FailedTools,
    /// A tool call running for `threshold` seconds, or a subagent with no event for that long
    /// and no tool call running, in a session still open; each fires once. A main agent is
    /// never stuck by itself (between prompts it waits for a person), and a call that launched
    /// a subagent is judged by its subagent.
    Stuck,
    /// `api_error` events in the window, at least `threshold`.
    ApiErrors,
    /// An app that sent events on at least 3 of the last 7 days and none for `threshold`
    /// seconds.
    Silence,
    /// A human-in-the-loop request waiting longer than `threshold` seconds.
    PendingApproval,
}

impl Condition {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Spend => "spend",
            Self::FailureRate => "failure_rate",
            Self::FailedTools => "failed_tools",
            Self::Stuck => "stuck",
            Self::ApiErrors => "api_errors",
            Self::Silence => "silence",
            Self::PendingApproval => "pending_approval",
        }
    }

    /// Whether the condition sums a window (the others look at live state).
    pub(crate) fn is_windowed(self) -> bool {
        matches!(
            self,
            Self::Spend | Self::FailureRate | Self::FailedTools | Self::ApiErrors
        )
    }
}

/// What one alert is about: everything, or one app, session, person or model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Scope {
    #[default]
    All,
    App,
    Session,
    User,
    Model,
}

impl Scope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::App => "app",
            Self::Session => "session",
            Self::User => "user",
            Self::Model => "model",
        }
    }
}

/// Where an alert goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// POSTed as JSON (with a Slack-compatible `text`).
    Webhook(String),
    /// Run with the alert as JSON on its standard input.
    Command(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub name: String,
    pub destination: Destination,
    /// The most deliveries a minute (default 30).
    pub per_minute: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    pub name: String,
    pub condition: Condition,
    pub threshold: f64,
    /// For windowed conditions.
    pub window_ms: Option<i64>,
    pub window_text: Option<String>,
    pub per: Scope,
    /// failure_rate: the fewest finished executions it judges.
    pub min_count: u64,
    /// Target names, each defined in the file.
    pub notify: Vec<String>,
}

/// A checked rule file.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AlertRules {
    pub targets: Vec<Target>,
    pub rules: Vec<Rule>,
}

/// Why a rule file was refused: what, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: line {line}: {message}")]
pub(crate) struct RuleFileError {
    pub path: String,
    /// 1-based; 0 when the error has no place in the file.
    pub line: usize,
    pub message: String,
}

/// The most rules and targets one file may hold.
pub(crate) const MAX_RULES: usize = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default, rename = "target")]
    targets: Vec<Spanned<TargetSpec>>,
    #[serde(default, rename = "rule")]
    rules: Vec<Spanned<RuleSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSpec {
    name: Spanned<String>,
    webhook: Option<String>,
    command: Option<Vec<String>>,
    per_minute: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: Spanned<String>,
    condition: Condition,
    threshold: Spanned<f64>,
    window: Option<Spanned<String>>,
    #[serde(default)]
    per: Scope,
    min_count: Option<Spanned<u64>>,
    #[serde(default)]
    notify: Vec<Spanned<String>>,
}

fn line_of(text: &str, span: &Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

impl AlertRules {
    /// Reads and checks `text` (the file at `path`, named in errors).
    pub(crate) fn parse(path: &str, text: &str) -> Result<Self, RuleFileError> {
        let error = |span: Option<Range<usize>>, message: String| RuleFileError {
            path: path.to_owned(),
            line: span.map_or(0, |s| line_of(text, &s)),
            message,
        };
        let spec: FileSpec =
            toml::from_str(text).map_err(|e| error(e.span(), e.message().to_owned()))?;
        if spec.targets.len() + spec.rules.len() > MAX_RULES {
            return Err(error(
                None,
                format!("more than {MAX_RULES} rules and targets"),
            ));
        }
        let mut targets = Vec::new();
        let mut names = HashSet::new();
        for target in spec.targets {
            let span = target.span();
            let target = target.into_inner();
            let name = target.name.get_ref().clone();
            if name.is_empty() || !names.insert(name.clone()) {
                return Err(error(
                    Some(target.name.span()),
                    format!("target name {name:?} is empty or used twice"),
                ));
            }
            let destination = match (target.webhook, target.command) {
                (Some(url), None) if url.starts_with("http://") || url.starts_with("https://") => {
                    Destination::Webhook(url)
                }
                (Some(url), None) => {
                    return Err(error(
                        Some(span),
                        format!("target {name:?}: webhook {url:?} is not an http(s) URL"),
                    ));
                }
                (None, Some(command)) if !command.is_empty() => Destination::Command(command),
                _ => {
                    return Err(error(
                        Some(span),
                        format!("target {name:?} needs exactly one of webhook or command"),
                    ));
                }
            };
            targets.push(Target {
                name,
                destination,
                per_minute: target.per_minute.unwrap_or(30).max(1),
            });
        }
        let mut rules = Vec::new();
        let mut rule_names = HashSet::new();
        for rule in spec.rules {
            let span = rule.span();
            let rule = rule.into_inner();
            let name = rule.name.get_ref().clone();
            if name.is_empty() || !rule_names.insert(name.clone()) {
                return Err(error(
                    Some(rule.name.span()),
                    format!("rule name {name:?} is empty or used twice"),
                ));
            }
            if rule.condition == Condition::FailureRate && rule.per != Scope::All {
                return Err(error(
                    Some(span),
                    format!(
                        "rule {name:?}: failure_rate is judged over everything (per = \"all\")"
                    ),
                ));
            }
            if rule.condition == Condition::FailedTools
                && !matches!(rule.per, Scope::All | Scope::App)
            {
                return Err(error(
                    Some(span),
                    format!("rule {name:?}: failed_tools is counted per \"all\" or \"app\""),
                ));
            }
            if let Some(min_count) = &rule.min_count
                && rule.condition != Condition::FailureRate
            {
                return Err(error(
                    Some(min_count.span()),
                    format!(
                        "rule {name:?}: min_count is failure_rate's; {} does not take it",
                        rule.condition.as_str()
                    ),
                ));
            }
            let threshold = *rule.threshold.get_ref();
            if !threshold.is_finite() || threshold < 0.0 {
                return Err(error(
                    Some(rule.threshold.span()),
                    format!("rule {name:?}: threshold must be a number ≥ 0"),
                ));
            }
            if rule.condition == Condition::FailureRate && threshold > 1.0 {
                return Err(error(
                    Some(rule.threshold.span()),
                    format!("rule {name:?}: a failure rate is a fraction between 0 and 1"),
                ));
            }
            let (window_ms, window_text) = match (&rule.window, rule.condition.is_windowed()) {
                (Some(window), true) => {
                    let ms = parse_duration_ms(window.get_ref())
                        .filter(|ms| *ms > 0 && *ms <= crate::domain::time::MAX_RANGE_MS)
                        .ok_or_else(|| {
                            error(
                                Some(window.span()),
                                format!(
                                    "rule {name:?}: window {:?} is not a duration such as 15m or 24h",
                                    window.get_ref()
                                ),
                            )
                        })?;
                    (Some(ms), Some(window.get_ref().clone()))
                }
                (None, true) => {
                    return Err(error(
                        Some(span),
                        format!(
                            "rule {name:?}: {} needs a window, such as window = \"24h\"",
                            rule.condition.as_str()
                        ),
                    ));
                }
                (Some(window), false) => {
                    return Err(error(
                        Some(window.span()),
                        format!(
                            "rule {name:?}: {} looks at what is happening now and takes no \
                             window (its threshold is in seconds)",
                            rule.condition.as_str()
                        ),
                    ));
                }
                (None, false) => (None, None),
            };
            for target in &rule.notify {
                if !names.contains(target.get_ref()) {
                    return Err(error(
                        Some(target.span()),
                        format!(
                            "rule {name:?}: no [[target]] is named {:?}",
                            target.get_ref()
                        ),
                    ));
                }
            }
            rules.push(Rule {
                name,
                condition: rule.condition,
                threshold,
                window_ms,
                window_text,
                per: rule.per,
                min_count: rule.min_count.map_or(1, Spanned::into_inner),
                notify: rule.notify.into_iter().map(Spanned::into_inner).collect(),
            });
        }
        Ok(Self { targets, rules })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[target]]
name = "team"
webhook = "https://hooks.example.com/services/x"

[[target]]
name = "desk"
command = ["notify-send", "hookwatch"]

[[rule]]
name = "session over $5"
condition = "spend"
threshold = 5.0
window = "24h"
per = "session"
notify = ["team", "desk"]

[[rule]]
name = "stuck agents"
condition = "stuck"
threshold = 300
"#;

    #[test]
    fn a_good_file_is_read_whole() {
        let rules = AlertRules::parse("alerts.toml", GOOD).unwrap();
        assert_eq!(rules.targets.len(), 2);
        assert_eq!(
            rules.targets[1].destination,
            Destination::Command(vec!["notify-send".into(), "hookwatch".into()])
        );
        let spend = &rules.rules[0];
        assert_eq!(spend.condition, Condition::Spend);
        assert_eq!(spend.window_ms, Some(86_400_000));
        assert_eq!(spend.per, Scope::Session);
        assert_eq!(spend.notify, ["team", "desk"]);
        assert_eq!(rules.rules[1].per, Scope::All);
        assert_eq!(rules.rules[1].window_ms, None);
    }

    fn refused(text: &str) -> RuleFileError {
        AlertRules::parse("alerts.toml", text).expect_err("refused")
    }

    #[test]
    fn each_error_names_its_line() {
        let unknown_condition = GOOD.replace("condition = \"stuck\"", "condition = \"slow\"");
        let e = refused(&unknown_condition);
        assert_eq!(e.line, 20, "{e}");
        assert!(e.message.contains("slow"), "{e}");

        let bad_window = GOOD.replace("window = \"24h\"", "window = \"a day\"");
        let e = refused(&bad_window);
        assert_eq!(e.line, 14, "{e}");
        assert!(e.message.contains("a day"), "{e}");

        let unknown_target = GOOD.replace("notify = [\"team\", \"desk\"]", "notify = [\"ops\"]");
        let e = refused(&unknown_target);
        assert_eq!(e.line, 16, "{e}");
        assert!(e.message.contains("\"ops\""), "{e}");

        let e = refused("[[rule]]\nname = \"x\"\ncondition = \"spend\"\nthreshold = 1\n");
        assert_eq!(e.line, 1, "the rule that lacks a window: {e}");
        assert!(e.message.contains("window"), "{e}");

        let e = refused("[[rule]\n");
        assert_eq!(e.line, 1, "{e}");
        let e = refused(&format!("{GOOD}\nmystery = 1\n"));
        assert!(e.message.contains("mystery"), "{e}");
        assert!(e.to_string().starts_with("alerts.toml: line "), "{e}");
    }

    #[test]
    fn thresholds_and_targets_are_checked() {
        let negative = GOOD.replace("threshold = 5.0", "threshold = -1.0");
        assert!(refused(&negative).message.contains("≥ 0"));
        let rate = "[[rule]]\nname = \"r\"\ncondition = \"failure_rate\"\nthreshold = 5\nwindow = \"1h\"\n";
        assert!(refused(rate).message.contains("fraction"));
        let both = "[[target]]\nname = \"t\"\nwebhook = \"https://x\"\ncommand = [\"a\"]\n";
        assert!(refused(both).message.contains("exactly one"));
        let twice = format!("{GOOD}\n[[target]]\nname = \"team\"\ncommand = [\"a\"]\n");
        assert!(refused(&twice).message.contains("used twice"));
        let ftp = GOOD.replace("https://hooks.example.com/services/x", "ftp://x");
        assert!(refused(&ftp).message.contains("http(s)"));
    }

    #[test]
    fn an_option_the_condition_does_not_take_is_refused_with_its_line() {
        let stuck_window =
            "[[rule]]\nname = \"s\"\ncondition = \"stuck\"\nthreshold = 600\nwindow = \"1h\"\n";
        let e = refused(stuck_window);
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("takes no window"), "{e}");
        let spend_min_count = "[[rule]]\nname = \"m\"\ncondition = \"spend\"\nthreshold = 1\n\
                               window = \"1h\"\nmin_count = 3\n";
        let e = refused(spend_min_count);
        assert_eq!(e.line, 6, "{e}");
        assert!(e.message.contains("min_count"), "{e}");
        let rate = "[[rule]]\nname = \"r\"\ncondition = \"failure_rate\"\nthreshold = 0.5\n\
                    window = \"1h\"\nmin_count = 3\n";
        let rules = AlertRules::parse("alerts.toml", rate).expect("failure_rate takes min_count");
        assert_eq!(rules.rules[0].min_count, 3);
    }
}
