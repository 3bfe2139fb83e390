//! What one instance tells the others about its commits, and the one encoding of it.
//!
//! With several instances on one database, each instance's live clients must see the others'
//! commits. Two paths carry them: the Redis stream (the cache appends each commit's agent
//! changes beside its events) and, when Redis cannot, PostgreSQL `NOTIFY` (the PostgreSQL
//! writer sends a [`CommitNotice`], the coordinator listens). Every sender and receiver
//! encodes and decodes here, so the paths cannot drift apart; this module depends on the
//! domain only, so the store and the cache can send notices without knowing the live hub.
//! The WebSocket `agent` message carries an [`AgentChange`] as encoded here too (`live`).

use serde::{Deserialize, Serialize};

use crate::domain::lifecycle::AgentTransition;

/// An agent's status change, as the `agent` message's `data` carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentChange {
    pub agent_id: String,
    pub agent_type: String,
    pub session_id: String,
    pub from: Option<String>,
    pub to: String,
    pub at: i64,
}

/// An agent change with what filtering it needs: how one instance tells the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentNotice {
    pub source_app: String,
    #[serde(flatten)]
    pub change: AgentChange,
}

impl AgentNotice {
    pub(crate) fn new(source_app: &str, at: i64, transition: &AgentTransition) -> Self {
        Self {
            source_app: source_app.to_owned(),
            change: AgentChange {
                agent_id: transition.agent_key.clone(),
                agent_type: transition.agent_type.clone(),
                session_id: transition.session_id.clone(),
                from: transition.from.map(|s| s.as_str().to_owned()),
                to: transition.to.as_str().to_owned(),
                at,
            },
        }
    }
}

/// What one commit on one instance added, for the live clients of the others: the new
/// events' row ids and the agent changes. Sent through PostgreSQL `NOTIFY` (small: the
/// receiver reads the events from the store) when Redis cannot carry the events themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitNotice {
    pub origin: String,
    pub events: Vec<i64>,
    pub agents: Vec<AgentNotice>,
}

impl CommitNotice {
    pub(crate) fn new(origin: &str) -> Self {
        Self {
            origin: origin.to_owned(),
            events: Vec::new(),
            agents: Vec::new(),
        }
    }
}

impl AgentNotice {
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A JSON array of notices (the Redis stream's `agents` field); nothing when malformed.
    pub(crate) fn decode_list(json: &str) -> Vec<Self> {
        serde_json::from_str(json).unwrap_or_default()
    }
}

impl CommitNotice {
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub(crate) fn decode(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}
