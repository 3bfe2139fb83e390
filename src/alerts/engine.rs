//! Evaluating the rules and keeping their episodes: each tick (`--alert-interval`) reads what
//! every rule watches from rollups and live state (never a scan of raw events), opens an
//! episode for each scope key over its threshold and closes the open ones that are not any
//! more. Episodes are stored (`store::alerts`), so a restart neither forgets one nor notifies
//! it again; opening one is an insert only one writer wins, so with several instances on one
//! database each episode is notified once. Only the instance leading the background jobs
//! evaluates.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use super::delivery::{Delivery, Notice};
use super::rules::{AlertRules, Condition, Rule, RuleFileError, Scope};
use crate::clock::Clock;
use crate::domain::sessions::AgentStatusFilter;
use crate::domain::time::TimeRange;
use crate::domain::usage::{UsageFilter, UsageGroup, UsagePage};
use crate::store::alerts::{AlertOp, AlertRecord};
use crate::store::{Store, StoreError};

/// Usage rows read in one evaluation, by window and grouping.
type UsageReads = HashMap<(i64, UsageGroup), Vec<crate::domain::usage::UsageRow>>;

/// A spend rule's budget for one scope key, now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Budget {
    pub rule: String,
    pub per: &'static str,
    pub key: String,
    /// USD.
    pub budget: f64,
    pub window: Option<String>,
    pub used: f64,
    pub left: f64,
    /// The window's spend if the rate of its last quarter held for all of it.
    pub projected: f64,
}

/// The most budgets one answer lists per rule (the biggest spenders).
pub(crate) const MAX_BUDGETS_PER_RULE: usize = 20;

/// One scope key over a rule's threshold now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Breach {
    pub scope_key: String,
    pub value: f64,
}

/// What one evaluation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    pub fired: Vec<i64>,
    pub resolved: Vec<i64>,
}

/// `silence` watches apps that are regular senders: seen on at least this many days...
const SILENCE_REGULAR_DAYS: i64 = 3;
/// ...of the last week.
const SILENCE_LOOKBACK_MS: i64 = 7 * crate::domain::time::DAY_MS;

/// A person's key as readers without a token see it.
pub(crate) const HIDDEN_PERSON: &str = "(a person: shown only behind a read token)";

/// The most pending requests and active agents one evaluation reads.
const MAX_LIVE_ROWS: usize = 10_000;

fn micros(value: f64) -> i64 {
    (value * 1e6).round() as i64
}

pub struct AlertEngine {
    path: Option<PathBuf>,
    /// Live clients get each transition as an `alert` message.
    live: Option<Arc<crate::live::LiveHub>>,
    /// Whether readers present a token: without one, a person's key (per = "user") is not
    /// shown to them (the live message, `/api/alerts`).
    readers_identified: bool,
    /// Transitions made here, by (rule, state), for `/metrics`.
    counts: std::sync::Mutex<std::collections::BTreeMap<(String, &'static str), u64>>,
    /// Open episodes after the last evaluation here.
    firing: std::sync::atomic::AtomicUsize,
    /// Evaluations made here, and their wall time in all (µs), for `/metrics`.
    evaluations: std::sync::atomic::AtomicU64,
    evaluation_micros: std::sync::atomic::AtomicU64,
    rules: RwLock<Arc<AlertRules>>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    delivery: Arc<Delivery>,
    agent_idle_timeout_ms: i64,
}

impl AlertEngine {
    /// Reads the rule file at `path` (a start-up with a bad file stops with the reason).
    pub(crate) fn new(
        path: Option<PathBuf>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        agent_idle_timeout_ms: i64,
        public_url: Option<String>,
    ) -> Result<Self, RuleFileError> {
        let rules = match &path {
            Some(path) => read(path)?,
            None => AlertRules::default(),
        };
        Ok(Self {
            path,
            live: None,
            readers_identified: false,
            counts: std::sync::Mutex::default(),
            firing: std::sync::atomic::AtomicUsize::new(0),
            evaluations: std::sync::atomic::AtomicU64::new(0),
            evaluation_micros: std::sync::atomic::AtomicU64::new(0),
            rules: RwLock::new(Arc::new(rules)),
            store: Arc::clone(&store),
            clock,
            delivery: Arc::new(Delivery::new(store, public_url)),
            agent_idle_timeout_ms,
        })
    }

    /// Sends each transition to live clients too; `readers_identified`: whether reads need a
    /// token (people are shown only then).
    pub(crate) fn with_live(
        mut self,
        live: Arc<crate::live::LiveHub>,
        readers_identified: bool,
    ) -> Self {
        self.live = Some(live);
        self.readers_identified = readers_identified;
        self
    }

    /// What readers may see of a notice: a person's key only behind a read token.
    pub(crate) fn shown(&self, mut notice: Notice) -> Notice {
        if !self.readers_identified && notice.scope == Scope::User.as_str() {
            notice.key = HIDDEN_PERSON.to_owned();
        }
        notice
    }

    /// Transitions made by this instance, by rule and state (`firing`, `resolved`).
    pub(crate) fn counts(&self) -> Vec<(String, &'static str, u64)> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((rule, state), n)| (rule.clone(), *state, *n))
            .collect()
    }

    /// Evaluations made here, and the microseconds they took in all.
    pub(crate) fn evaluation_time(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.evaluations.load(Relaxed),
            self.evaluation_micros.load(Relaxed),
        )
    }

    /// Open episodes after the last evaluation here.
    pub(crate) fn firing_now(&self) -> usize {
        self.firing.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn rules(&self) -> Arc<AlertRules> {
        Arc::clone(&self.rules.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reads the rule file again; on any error the rules in force stay. Returns how many
    /// rules are in force.
    pub(crate) fn reload(&self) -> Result<usize, RuleFileError> {
        let Some(path) = &self.path else {
            return Ok(0);
        };
        let rules = read(path)?;
        let count = rules.rules.len();
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
        Ok(count)
    }

    /// Every spend rule's budget per scope key: used in its window, left, and projected at the
    /// rate of the window's last quarter; the biggest spenders first.
    pub(crate) async fn budgets(&self) -> Result<Vec<Budget>, StoreError> {
        let now = self.clock.now_ms();
        let rules = self.rules();
        let mut budgets = Vec::new();
        for rule in rules
            .rules
            .iter()
            .filter(|r| r.condition == Condition::Spend)
        {
            let window = rule.window_ms.unwrap_or(crate::domain::time::DAY_MS);
            let range = |ms: i64| {
                TimeRange::new(now - ms, now).map_err(|e| StoreError::Internal(e.to_string()))
            };
            let group = usage_group(rule.per);
            let filter = UsageFilter::default;
            let (used, recent) = tokio::try_join!(
                self.store
                    .usage(range(window)?, group, filter(), UsagePage::default()),
                self.store.usage(
                    range((window / 4).max(60_000))?,
                    group,
                    filter(),
                    UsagePage::default(),
                ),
            )?;
            let recent: HashMap<String, i64> =
                recent.into_iter().map(|r| (r.key, r.cost_nanos)).collect();
            for row in used.into_iter().take(MAX_BUDGETS_PER_RULE) {
                let spent = row.cost_nanos as f64 / 1e9;
                let rate = recent.get(&row.key).copied().unwrap_or(0) as f64 / 1e9;
                budgets.push(Budget {
                    rule: rule.name.clone(),
                    per: rule.per.as_str(),
                    budget: rule.threshold,
                    window: rule.window_text.clone(),
                    used: spent,
                    left: (rule.threshold - spent).max(0.0),
                    projected: rate * window as f64 / (window / 4).max(60_000) as f64,
                    key: if rule.per == Scope::All {
                        "all".to_owned()
                    } else {
                        row.key
                    },
                });
            }
        }
        Ok(budgets)
    }

    /// The open episodes, and the newest `limit` of all.
    pub(crate) async fn episodes(
        &self,
        limit: usize,
    ) -> Result<(Vec<AlertRecord>, Vec<AlertRecord>), StoreError> {
        tokio::try_join!(self.store.firing_alerts(), self.store.alert_history(limit))
    }

    /// One evaluation of every rule at the clock's now.
    pub async fn evaluate_once(&self) -> Result<Evaluation, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let started = std::time::Instant::now();
        let evaluation = self.evaluate().await;
        self.evaluations.fetch_add(1, Relaxed);
        self.evaluation_micros
            .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        evaluation
    }

    async fn evaluate(&self) -> Result<Evaluation, StoreError> {
        let now = self.clock.now_ms();
        let rules = self.rules();
        let open = self.store.firing_alerts().await?;
        let mut open_by_key: HashMap<(&str, &str), &AlertRecord> = open
            .iter()
            .map(|a| ((a.rule.as_str(), a.scope_key.as_str()), a))
            .collect();
        let mut ops = Vec::new();
        // Rules with the same window and scope read the same usage rows: once per evaluation.
        let mut usage_reads = UsageReads::new();
        for rule in &rules.rules {
            let mut seen = HashSet::new();
            for breach in self.breaches(rule, now, &mut usage_reads).await? {
                seen.insert(breach.scope_key.clone());
                if open_by_key.contains_key(&(rule.name.as_str(), breach.scope_key.as_str())) {
                    continue; // this episode is open already: never fired twice
                }
                ops.push(AlertOp::Fire {
                    rule: rule.name.clone(),
                    scope: rule.per.as_str().to_owned(),
                    scope_key: breach.scope_key,
                    value_micros: micros(breach.value),
                    threshold_micros: micros(rule.threshold),
                    window: rule.window_text.clone(),
                    at_ms: now,
                });
            }
            // The rule's open episodes that no longer breach resolve.
            open_by_key.retain(|(name, key), episode| {
                if *name == rule.name && !seen.contains(*key) {
                    ops.push(AlertOp::Resolve {
                        id: episode.id,
                        at_ms: now,
                    });
                    false
                } else {
                    true
                }
            });
        }
        // Episodes of rules no longer in the file resolve too.
        let names: HashSet<&str> = rules.rules.iter().map(|r| r.name.as_str()).collect();
        for ((name, _), episode) in open_by_key {
            if !names.contains(name) {
                ops.push(AlertOp::Resolve {
                    id: episode.id,
                    at_ms: now,
                });
            }
        }
        let applied = self.store.apply_alerts(ops.clone()).await?;
        let mut evaluation = Evaluation::default();
        let open_by_id: HashMap<i64, &AlertRecord> = open.iter().map(|a| (a.id, a)).collect();
        // Each change as its targets get it, made from what this evaluation holds.
        let mut notices = Vec::new();
        for (op, id) in ops.into_iter().zip(applied) {
            let Some(id) = id else { continue };
            let notice = match op {
                AlertOp::Fire {
                    rule,
                    scope,
                    scope_key,
                    value_micros,
                    threshold_micros,
                    window,
                    at_ms,
                } => {
                    evaluation.fired.push(id);
                    Notice::of(&AlertRecord {
                        id,
                        rule,
                        scope,
                        scope_key,
                        state: "firing".into(),
                        value_micros,
                        threshold_micros,
                        window,
                        started_at: at_ms,
                        resolved_at: None,
                        firing_delivered: false,
                        resolved_delivered: false,
                        delivery_error: None,
                    })
                }
                AlertOp::Resolve { at_ms, .. } => {
                    evaluation.resolved.push(id);
                    let Some(episode) = open_by_id.get(&id) else {
                        continue;
                    };
                    Notice::of(&AlertRecord {
                        state: "resolved".into(),
                        resolved_at: Some(at_ms),
                        ..(*episode).clone()
                    })
                }
                AlertOp::Delivered { .. } => continue,
            };
            *self
                .counts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry((notice.rule.clone(), notice.state))
                .or_default() += 1;
            notices.push(notice);
        }
        self.firing.store(
            (open.len() + evaluation.fired.len()).saturating_sub(evaluation.resolved.len()),
            std::sync::atomic::Ordering::Relaxed,
        );
        if let Some(live) = &self.live {
            for notice in &notices {
                live.publish_global("alert", &self.shown(notice.clone()).to_json());
            }
        }
        self.delivery.deliver(&rules, notices);
        Ok(evaluation)
    }

    /// The scope keys over `rule`'s threshold at `now`, each with its value.
    async fn breaches(
        &self,
        rule: &Rule,
        now: i64,
        usage_reads: &mut UsageReads,
    ) -> Result<Vec<Breach>, StoreError> {
        let window = || {
            let ms = rule.window_ms.unwrap_or(crate::domain::time::DAY_MS);
            TimeRange::new(now - ms, now).map_err(|e| StoreError::Internal(e.to_string()))
        };
        let at_least = |value: f64| value >= rule.threshold;
        Ok(match rule.condition {
            Condition::Spend | Condition::ApiErrors => {
                let group = usage_group(rule.per);
                let key = (rule.window_ms.unwrap_or(crate::domain::time::DAY_MS), group);
                let rows = match usage_reads.entry(key) {
                    std::collections::hash_map::Entry::Occupied(read) => read.into_mut(),
                    std::collections::hash_map::Entry::Vacant(unread) => unread.insert(
                        self.store
                            .usage(
                                window()?,
                                group,
                                UsageFilter::default(),
                                UsagePage::default(),
                            )
                            .await?,
                    ),
                };
                rows.iter()
                    .map(|row| Breach {
                        value: match rule.condition {
                            Condition::Spend => row.cost_nanos as f64 / 1e9,
                            _ => row.errors as f64,
                        },
                        scope_key: row.key.clone(),
                    })
                    .filter(|b| b.value > 0.0 && at_least(b.value))
                    .collect()
            }
            Condition::FailureRate => {
                // The same sums and rule as the metrics view's success rate.
                let all =
                    crate::domain::views::sum_all(&self.store.execution_totals(window()?).await?);
                let (executions, rate) = (all.executions, all.failure_rate());
                if executions as u64 >= rule.min_count && executions > 0 && at_least(rate) {
                    vec![Breach {
                        scope_key: String::new(),
                        value: rate,
                    }]
                } else {
                    Vec::new()
                }
            }
            // Stuck is one of two things, each fired for once: a tool call running for the
            // threshold (its key `call:<agent>:<tool_use_id>`), or a subagent with no event
            // for the threshold and no tool call running (`agent:<id>`; one with a call running
            // is judged by the call, which started when it was last heard from). A main agent
            // is never stuck by itself: between prompts it waits for a person. Calls that
            // launched a subagent are not judged; their subagent is.
            Condition::Stuck => {
                let idle_cutoff = now - self.agent_idle_timeout_ms;
                let threshold_ms = (rule.threshold * 1000.0).ceil() as i64;
                let calls = self
                    .store
                    .running_calls(now - threshold_ms, idle_cutoff, MAX_LIVE_ROWS)
                    .await?
                    .into_iter()
                    .map(|call| Breach {
                        value: (now - call.began_at()) as f64 / 1000.0,
                        scope_key: format!(
                            "call:{}:{}",
                            call.agent_key,
                            call.tool_use_id.as_deref().unwrap_or(&call.tool_name)
                        ),
                    });
                let agents = self
                    .store
                    .agents(AgentStatusFilter::Active, idle_cutoff, MAX_LIVE_ROWS)
                    .await?
                    .into_iter()
                    .filter(|agent| agent.kind != "main" && agent.current_tool.is_none())
                    .map(|agent| Breach {
                        value: (now - agent.last_seen) as f64 / 1000.0,
                        scope_key: format!("agent:{}", agent.id),
                    });
                calls.chain(agents).filter(|b| at_least(b.value)).collect()
            }
            Condition::PendingApproval => self
                .store
                .pending_requests(MAX_LIVE_ROWS)
                .await?
                .into_iter()
                .map(|event| Breach {
                    value: (now - event.timestamp) as f64 / 1000.0,
                    scope_key: event.event_id,
                })
                .filter(|b| at_least(b.value))
                .collect(),
            Condition::FailedTools => {
                let per_app = self.store.failed_tools_per_app(window()?).await?;
                let breaches: Vec<Breach> = match rule.per {
                    Scope::App => per_app
                        .into_iter()
                        .map(|(app, n)| Breach {
                            scope_key: app,
                            value: n as f64,
                        })
                        .collect(),
                    _ => vec![Breach {
                        scope_key: String::new(),
                        value: per_app.iter().map(|(_, n)| *n).sum::<i64>() as f64,
                    }],
                };
                breaches
                    .into_iter()
                    .filter(|b| b.value > 0.0 && at_least(b.value))
                    .collect()
            }
            Condition::Silence => self
                .store
                .app_activity(now - SILENCE_LOOKBACK_MS)
                .await?
                .into_iter()
                .filter(|(_, _, days)| *days >= SILENCE_REGULAR_DAYS)
                .map(|(app, last_seen, _)| Breach {
                    scope_key: app,
                    value: (now - last_seen) as f64 / 1000.0,
                })
                .filter(|b| at_least(b.value))
                .collect(),
        })
    }
}

fn usage_group(per: Scope) -> UsageGroup {
    match per {
        Scope::All => UsageGroup::All,
        Scope::App => UsageGroup::App,
        Scope::Session => UsageGroup::Session,
        Scope::User => UsageGroup::User,
        Scope::Model => UsageGroup::Model,
    }
}

fn read(path: &std::path::Path) -> Result<AlertRules, RuleFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| RuleFileError {
        path: shown.clone(),
        line: 0,
        message: format!("cannot be read: {e}"),
    })?;
    AlertRules::parse(&shown, &text)
}
