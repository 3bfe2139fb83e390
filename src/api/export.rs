//! `GET /api/export?format=jsonl|csv&since=&until=&app=&session_id=&event_type=`: every
//! matching event, oldest first, streamed.
//!
//! The answer is written page by page as the store is read (keyset pages of
//! [`EXPORT_PAGE_EVENTS`], each read through the read pool like any other query), so the
//! server holds one page at a time whatever the export's size, and a slow reader only slows
//! its own export (the body is sent as the client takes it). A read that fails after the
//! first bytes were sent cannot change the status any more: the stream is cut, and the client
//! sees a truncated transfer rather than a short file that looks whole.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::domain::time::iso8601;
use crate::service::MetricsService;
use crate::store::{EventCursor, EventQuery, SortOrder, StoredEvent};

use super::AppState;
use super::error::ApiError;
use super::params::Params;

/// Events per store read. Events are at most `--max-event-bytes` each, so this bounds what one
/// export holds in memory.
pub(crate) const EXPORT_PAGE_EVENTS: usize = 100;

const CSV_HEADER: &str =
    "id,event_id,timestamp,time,source_app,session_id,hook_event_type,tool_name,summary,payload\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExportFormat {
    Jsonl,
    Csv,
}

impl ExportFormat {
    fn content_type(self) -> &'static str {
        match self {
            Self::Jsonl => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
        }
    }
}

pub(crate) async fn export(
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    let format = match params.text("format")?.as_deref() {
        None | Some("jsonl") => ExportFormat::Jsonl,
        Some("csv") => ExportFormat::Csv,
        Some(_) => return Err(ApiError::field("format", "format must be jsonl or csv")),
    };
    let query = EventQuery {
        source_app: params.text("app")?,
        session_id: params.text("session_id")?,
        hook_event_type: params.text("event_type")?,
        since: params.int("since")?,
        until: params.int("until")?,
        limit: EXPORT_PAGE_EVENTS,
        order: SortOrder::Ascending,
        ..EventQuery::default()
    };
    if let (Some(since), Some(until)) = (query.since, query.until)
        && since > until
    {
        return Err(ApiError::field("until", "until must not be before since"));
    }
    // Read the first page before answering, so a bad query is still a clean 4xx.
    let first = state.service.events_page(query.clone()).await?;
    let pages = Pages {
        service: Arc::clone(&state.service),
        query,
        format,
        first: Some(first.events),
        header_sent: false,
    };
    let body = Body::from_stream(futures_util::stream::unfold(pages, Pages::next));
    let disposition = format!(
        "attachment; filename=\"hookwatch-events.{}\"",
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}

/// The export's state between pages.
struct Pages {
    service: Arc<MetricsService>,
    query: EventQuery,
    format: ExportFormat,
    /// The page read before the answer started.
    first: Option<Vec<StoredEvent>>,
    header_sent: bool,
}

impl Pages {
    /// The next chunk of the body: one page, formatted; `None` after the last page.
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        let events = match self.first.take() {
            Some(events) => events,
            None if self.query.after.is_none() => return None, // the last page was short
            None => match self.service.events_page(self.query.clone()).await {
                Ok(page) => page.events,
                Err(e) => {
                    tracing::warn!(error = %e, "export cut short: a page could not be read");
                    self.query.after = None;
                    return Some((Err(std::io::Error::other(e.to_string())), self));
                }
            },
        };
        let mut chunk = Vec::with_capacity(events.len() * 512 + CSV_HEADER.len());
        if !self.header_sent {
            self.header_sent = true;
            if self.format == ExportFormat::Csv {
                chunk.extend_from_slice(CSV_HEADER.as_bytes());
            }
        }
        for event in &events {
            match self.format {
                ExportFormat::Jsonl => {
                    serde_json::to_writer(&mut chunk, event).expect("events serialize");
                    chunk.push(b'\n');
                }
                ExportFormat::Csv => write_csv_row(&mut chunk, event),
            }
        }
        // A full page may have more after it; a short one is the last.
        self.query.after = (events.len() == EXPORT_PAGE_EVENTS)
            .then(|| events.last())
            .flatten()
            .map(|last| EventCursor {
                timestamp: last.timestamp,
                id: last.id,
            });
        if chunk.is_empty() {
            return None;
        }
        Some((Ok(Bytes::from(chunk)), self))
    }
}

fn write_csv_row(out: &mut Vec<u8>, event: &StoredEvent) {
    let fields: [&str; 10] = [
        &event.id.to_string(),
        &event.event_id,
        &event.timestamp.to_string(),
        &iso8601(event.timestamp),
        &event.source_app,
        // As the event's JSON shows it: the id its client sent.
        event.sent_session_id.as_ref().unwrap_or(&event.session_id),
        &event.hook_event_type,
        event.tool_name.as_deref().unwrap_or(""),
        event.summary.as_deref().unwrap_or(""),
        event.payload.get(),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_csv_field(out, field);
    }
    out.push(b'\n');
}

/// RFC 4180: a field holding a comma, quote or line break is quoted, with quotes doubled.
fn write_csv_field(out: &mut Vec<u8>, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(field.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(field.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let mut out = Vec::new();
        write_csv_field(&mut out, "plain");
        out.push(b'|');
        write_csv_field(&mut out, "a,b");
        out.push(b'|');
        write_csv_field(&mut out, "say \"hi\"\nbye");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain|\"a,b\"|\"say \"\"hi\"\"\nbye\""
        );
    }
}
