//! The ingest parsers on arbitrary bytes: the envelope (`POST /events`), a batch (`POST
//! /events/batch`, JSON array or NDJSON) and a raw Claude Code hook body (`POST
//! /hooks/claude-code`). None may panic; an accepted event must keep its payload as a JSON
//! object, byte for byte from the input.
#![no_main]

use hookwatch::api::wire::{HookSource, Limits, parse_batch, parse_envelope, parse_hook_body};
use libfuzzer_sys::fuzz_target;

const NOW_MS: i64 = 1_795_168_800_000;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(event) = parse_envelope(data, &limits, NOW_MS) {
        assert!(event.payload.get().trim_start().starts_with('{'));
    }
    if let Ok((events, rejected)) = parse_batch(data, &limits, NOW_MS) {
        assert!(events.len() + rejected.len() <= limits.max_batch_items);
    }
    let source = HookSource {
        app_param: None,
        app_header: None,
        event_id_header: None,
    };
    if let Ok(event) = parse_hook_body(data, source, &limits, NOW_MS) {
        // The JSON value itself, byte for byte (whitespace around it is not part of it).
        let value = data.trim_ascii();
        assert_eq!(event.payload.get().as_bytes(), value, "a hook body is stored whole");
    }
});
