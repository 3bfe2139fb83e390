//! Wire shapes: how the domain's and the store's values look on the wire, for the API, the
//! live stream, exports and the cache alike. Types outside `api` are plain data; their JSON
//! is written here. (Moving the rest here, the records that still derive `Serialize` in
//! `store` and `domain::views`, is the open part of issue 18.)

use serde::Serialize;
use serde_json::value::RawValue;

use crate::store::StoredEvent;

/// The origin's saved-event shape plus `event_id`: the envelope's unknown fields first, then
/// the known ones, so a known field always wins over an unknown one of the same name.
impl Serialize for StoredEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let extra: Vec<(String, Box<RawValue>)> = self
            .extra
            .as_ref()
            .and_then(|raw| {
                serde_json::from_str::<std::collections::BTreeMap<String, Box<RawValue>>>(raw.get())
                    .ok()
            })
            .map(|fields| fields.into_iter().collect())
            .unwrap_or_default();
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in &extra {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("event_id", &self.event_id)?;
        map.serialize_entry("source_app", &self.source_app)?;
        // The envelope's value as sent; Claude Code's own beside it when that differs, so a
        // client that rewrote the id can still find the session.
        match &self.sent_session_id {
            Some(sent) => {
                map.serialize_entry("session_id", sent)?;
                map.serialize_entry("claude_session_id", &self.session_id)?;
            }
            None => map.serialize_entry("session_id", &self.session_id)?,
        }
        map.serialize_entry("hook_event_type", &self.hook_event_type)?;
        map.serialize_entry("payload", &self.payload)?;
        if let Some(chat) = &self.chat {
            map.serialize_entry("chat", chat)?;
        }
        // The chat itself is read from `GET /events/{id}/chat`.
        if let Some(bytes) = &self.chat_bytes {
            map.serialize_entry("chat_bytes", bytes)?;
        }
        if let Some(status) = &self.hitl_status {
            map.serialize_entry("humanInTheLoopStatus", status)?;
        }
        if let Some(summary) = &self.summary {
            map.serialize_entry("summary", summary)?;
        }
        map.serialize_entry("timestamp", &self.timestamp)?;
        if let Some(model_name) = &self.model_name {
            map.serialize_entry("model_name", model_name)?;
        }
        map.end()
    }
}
