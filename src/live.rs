//! Live fan-out of committed events and lifecycle changes to WebSocket clients.
//!
//! Each message is serialized once, when it is published, and shared by every client. The
//! channel is a `tokio::sync::broadcast` ring of fixed capacity: publishing never waits, so no
//! client can slow ingestion or another client, and memory is the ring whatever the clients
//! do. A client that falls more than the ring behind is told how many messages it missed
//! (`lagged`) and carries on from the oldest one still held.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast;

use crate::notices::AgentNotice;
use crate::store::{RecordOutcome, StoredEvent};

/// The version of hookwatch's own (non-origin) message types.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// What a client may filter on. Every field set must match; unset fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct Filters {
    #[serde(alias = "app")]
    pub source_app: Option<String>,
    pub session_id: Option<String>,
    #[serde(alias = "event_type")]
    pub hook_event_type: Option<String>,
    pub agent_id: Option<String>,
}

/// What a message is about, for filtering. Global messages (metrics, health) have no subject
/// and reach every client.
#[derive(Debug, Clone, Default)]
pub(crate) struct Subject {
    pub global: bool,
    pub source_app: String,
    pub session_id: String,
    /// The event's session id as its client sent it, when that is not Claude Code's own.
    pub sent_session_id: Option<String>,
    pub hook_event_type: Option<String>,
    pub agent_id: Option<String>,
}

impl Filters {
    pub(crate) fn matches(&self, subject: &Subject) -> bool {
        if subject.global {
            return true;
        }
        let equal = |wanted: &Option<String>, actual: Option<&str>| {
            wanted.as_deref().is_none_or(|w| Some(w) == actual)
        };
        equal(&self.source_app, Some(&subject.source_app))
            && (equal(&self.session_id, Some(&subject.session_id))
                || equal(&self.session_id, subject.sent_session_id.as_deref()))
            && equal(&self.hook_event_type, subject.hook_event_type.as_deref())
            && equal(&self.agent_id, subject.agent_id.as_deref())
    }
}

/// A message ready to send: its JSON text and what it is about.
#[derive(Debug)]
pub(crate) struct LiveMessage {
    pub json: String,
    pub subject: Subject,
    /// The event's row id, for messages that carry an event.
    pub event_row: Option<i64>,
    /// Held while the message carries a chat's last messages ([`MAX_LIVE_CHAT_TAILS`]).
    pub chat_tail: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The most messages in the ring that carry a chat's last messages (each at most
/// `--stream-chat-bytes`): 1,024 chat events would otherwise hold 1,024 tails. An event
/// published while all are taken goes out without its chat (`chat_truncated`).
pub(crate) const MAX_LIVE_CHAT_TAILS: usize = 16;

pub(crate) struct LiveHub {
    sender: broadcast::Sender<Arc<LiveMessage>>,
    /// Permits for messages carrying a chat tail ([`MAX_LIVE_CHAT_TAILS`]).
    chat_tails: Arc<tokio::sync::Semaphore>,
    /// Events published so far: the snapshot loop sends metrics only when this moved.
    published: std::sync::atomic::AtomicU64,
    /// Times a client fell behind and was sent `lagged`.
    lagged: std::sync::atomic::AtomicU64,
    /// Set once when the server stops: every connection says goodbye and closes, so clients
    /// reconnect to whatever serves next instead of waiting on a silent socket.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl LiveHub {
    pub(crate) fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            sender,
            chat_tails: Arc::new(tokio::sync::Semaphore::new(MAX_LIVE_CHAT_TAILS)),
            published: std::sync::atomic::AtomicU64::new(0),
            lagged: std::sync::atomic::AtomicU64::new(0),
            stopping: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Tells every connection to close (with 1001 "going away").
    pub(crate) fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once [`LiveHub::stop`] has been called.
    pub(crate) fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopping = self.stopping.subscribe();
        async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<LiveMessage>> {
        self.sender.subscribe()
    }

    pub(crate) fn clients(&self) -> usize {
        self.sender.receiver_count()
    }

    /// Publishes what a commit changed: each new event (the origin's `event` message) and each
    /// agent status change (`agent`). Does nothing, cheaply, when nobody listens.
    pub(crate) fn publish(&self, outcomes: &[RecordOutcome]) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        for outcome in outcomes.iter().filter(|o| !o.duplicate) {
            let event = &outcome.event;
            self.published
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tail_permit = match &event.chat {
                Some(_) => Arc::clone(&self.chat_tails).try_acquire_owned().ok(),
                None => None,
            };
            let mut message = if event.chat.is_some() && tail_permit.is_none() {
                event_message(&StoredEvent {
                    chat: None,
                    ..event.clone()
                })
            } else {
                event_message(event)
            };
            message.chat_tail = tail_permit;
            self.send(message);
            for transition in &outcome.transitions {
                self.send(agent_message(&AgentNotice::new(
                    &event.source_app,
                    event.timestamp,
                    transition,
                )));
            }
        }
    }

    /// Publishes an event that changed after it was stored (a human-in-the-loop request
    /// answered): sent as the origin does, as an `event` message, to every client, including
    /// those whose `initial` held it before the change.
    pub(crate) fn publish_update(&self, event: &StoredEvent) {
        if self.sender.receiver_count() > 0 {
            let mut message = event_message(event);
            message.event_row = None;
            self.send(message);
        }
    }

    /// Publishes one event committed elsewhere (another instance), as read from the store.
    pub(crate) fn publish_event(&self, event: &StoredEvent) {
        self.published
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.sender.receiver_count() > 0 {
            self.send(event_message(event));
        }
    }

    /// Publishes one event committed elsewhere, as the Redis stream carries it: the event's
    /// own JSON, sent on unchanged.
    pub(crate) fn publish_event_json(&self, event_json: &str, subject: Subject, event_row: i64) {
        self.published
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.sender.receiver_count() > 0 {
            self.send(LiveMessage {
                json: format!(r#"{{"type":"event","data":{event_json}}}"#),
                subject,
                event_row: Some(event_row),
                chat_tail: None,
            });
        }
    }

    /// Publishes an agent change made elsewhere.
    pub(crate) fn publish_agent(&self, notice: &AgentNotice) {
        if self.sender.receiver_count() > 0 {
            self.send(agent_message(notice));
        }
    }

    pub(crate) fn count_lagged(&self) {
        self.lagged
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn lagged(&self) -> u64 {
        self.lagged.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn published(&self) -> u64 {
        self.published.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Publishes a message for every client: `{"type": kind, "version": 1, "data": data}`.
    pub(crate) fn publish_global(&self, kind: &str, data: &impl Serialize) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        self.send(LiveMessage {
            json: global_message(kind, data),
            subject: Subject {
                global: true,
                ..Subject::default()
            },
            event_row: None,
            chat_tail: None,
        });
    }

    fn send(&self, message: LiveMessage) {
        // An error only means nobody is listening.
        let _ = self.sender.send(Arc::new(message));
    }
}

/// `{"type": …, "data": …}`, serialized straight from `data` (no `Value` tree in between,
/// which would re-parse every payload).
#[derive(Serialize)]
pub(crate) struct Typed<'a, T: Serialize> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub data: &'a T,
}

/// The subagent an event's payload comes from, for filtering by agent.
pub(crate) fn payload_agent_id(payload: &serde_json::value::RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct AgentField {
        agent_id: Option<String>,
    }
    serde_json::from_str::<AgentField>(payload.get())
        .ok()
        .and_then(|p| p.agent_id)
}

fn event_message(event: &StoredEvent) -> LiveMessage {
    let agent_id = payload_agent_id(&event.payload);
    let typed = Typed {
        kind: "event",
        data: event,
    };
    LiveMessage {
        json: serde_json::to_string(&typed).unwrap_or_default(),
        subject: Subject {
            source_app: event.source_app.clone(),
            session_id: event.session_id.clone(),
            sent_session_id: event.sent_session_id.clone(),
            hook_event_type: Some(event.hook_event_type.clone()),
            agent_id,
            global: false,
        },
        event_row: Some(event.id),
        chat_tail: None,
    }
}

fn agent_message(notice: &AgentNotice) -> LiveMessage {
    let change = &notice.change;
    LiveMessage {
        json: json!({ "type": "agent", "version": PROTOCOL_VERSION, "data": change }).to_string(),
        subject: Subject {
            source_app: notice.source_app.clone(),
            session_id: change.session_id.clone(),
            sent_session_id: None,
            hook_event_type: None,
            agent_id: Some(change.agent_id.clone()),
            global: false,
        },
        event_row: None,
        chat_tail: None,
    }
}

/// `{"type": kind, "version": 1, "data": data}`.
pub(crate) fn global_message(kind: &str, data: &impl Serialize) -> String {
    json!({ "type": kind, "version": PROTOCOL_VERSION, "data": data }).to_string()
}

/// `{"type":"lagged","version":1,"dropped":n}`.
pub(crate) fn lagged_message(dropped: u64) -> String {
    json!({ "type": "lagged", "version": PROTOCOL_VERSION, "dropped": dropped }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_event(id: i64) -> RecordOutcome {
        let raw = |text: &str| serde_json::value::RawValue::from_string(text.into()).unwrap();
        RecordOutcome {
            event: StoredEvent {
                id,
                event_id: format!("e{id}"),
                timestamp: id,
                source_app: "a".into(),
                session_id: "s".into(),
                hook_event_type: "Stop".into(),
                payload: raw("{}"),
                chat: Some(raw(r#"[{"role":"user"}]"#)),
                chat_bytes: Some(1_000),
                hitl_status: None,
                summary: None,
                model_name: None,
                extra: None,
                tool_name: None,
                sent_session_id: None,
            },
            duplicate: false,
            transitions: Vec::new(),
        }
    }

    fn carries_chat(message: &LiveMessage) -> bool {
        let json: serde_json::Value = serde_json::from_str(&message.json).unwrap();
        json["data"].get("chat").is_some()
    }

    #[test]
    fn the_ring_holds_at_most_its_share_of_chat_tails() {
        let hub = LiveHub::new(1024);
        let mut stalled = hub.subscribe();
        let mut reader = hub.subscribe();
        let mut carried = 0;
        for id in 0..(MAX_LIVE_CHAT_TAILS as i64 + 4) {
            hub.publish(&[chat_event(id)]);
            let message = reader.try_recv().unwrap();
            carried += usize::from(carries_chat(&message));
            assert_eq!(carries_chat(&message), message.chat_tail.is_some());
        }
        assert_eq!(
            carried, MAX_LIVE_CHAT_TAILS,
            "a client that reads nothing holds them"
        );
        // Once every client has read them, the ring lets them go.
        while stalled.try_recv().is_ok() {}
        hub.publish(&[chat_event(100)]);
        assert!(carries_chat(&reader.try_recv().unwrap()));
    }

    #[test]
    fn filters_match_every_field_they_set() {
        let subject = Subject {
            source_app: "a".into(),
            session_id: "s".into(),
            sent_session_id: Some("s_123_456".into()),
            hook_event_type: Some("PreToolUse".into()),
            agent_id: None,
            global: false,
        };
        assert!(Filters::default().matches(&subject));
        let mut filters = Filters {
            source_app: Some("a".into()),
            ..Filters::default()
        };
        assert!(filters.matches(&subject));
        filters.session_id = Some("s_123_456".into());
        assert!(
            filters.matches(&subject),
            "the session id as sent matches too"
        );
        filters.session_id = Some("other".into());
        assert!(!filters.matches(&subject));
        let by_agent = Filters {
            agent_id: Some("x".into()),
            ..Filters::default()
        };
        assert!(!by_agent.matches(&subject), "no agent, no match");
    }
}
