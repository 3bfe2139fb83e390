//! Token usage from Claude Code's transcripts, read incrementally.
//!
//! Hook payloads carry no tokens; the transcript (`transcript_path`, or `agent_transcript_path`
//! for a subagent) does: JSON Lines whose assistant messages have `message.model` and
//! `message.usage`. On Stop, SubagentStop and SessionEnd, `send` reads what was appended since
//! its last read of that transcript and attaches the sum per model to the envelope
//! (`transcript_usage`), so the server adds deltas and every token is counted once however
//! often Stop fires. The position (and the last message id, since one response can span several
//! lines that repeat its usage) is kept per transcript in a small state file, locked while it
//! is read and advanced, so two hooks racing on one transcript never count a line twice. Only
//! complete lines are consumed; a missing, truncated or malformed transcript is skipped.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde_json::{Map, Value, json};

/// Sums per model, in the hook payload's `usage` field names.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModelUsage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_creation_input_tokens: i64,
    pub cache_read_input_tokens: i64,
}

impl ModelUsage {
    fn add(&mut self, usage: &Map<String, Value>) {
        let count = |key: &str| usage.get(key).and_then(Value::as_i64).unwrap_or(0).max(0);
        self.input_tokens += count("input_tokens");
        self.output_tokens += count("output_tokens");
        self.cache_creation_input_tokens += count("cache_creation_input_tokens");
        self.cache_read_input_tokens += count("cache_read_input_tokens");
    }

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The usage appended to `transcript` since the last call for it, as the envelope's
/// `transcript_usage` value; `None` when there is none (or the transcript cannot be read).
pub(crate) fn usage_since_last_read(state_dir: &Path, transcript: &Path) -> Option<Value> {
    let by_model = read_new_usage(state_dir, transcript).ok()?;
    if by_model.is_empty() {
        return None;
    }
    Some(Value::Object(
        by_model
            .into_iter()
            .map(|(model, u)| {
                (
                    model,
                    json!({
                        "input_tokens": u.input_tokens,
                        "output_tokens": u.output_tokens,
                        "cache_creation_input_tokens": u.cache_creation_input_tokens,
                        "cache_read_input_tokens": u.cache_read_input_tokens,
                    }),
                )
            })
            .collect(),
    ))
}

fn read_new_usage(
    state_dir: &Path,
    transcript: &Path,
) -> std::io::Result<BTreeMap<String, ModelUsage>> {
    let mut source = File::open(transcript)?;
    std::fs::create_dir_all(state_dir)?;
    let state_path = state_dir.join(format!(
        "{:016x}.offset",
        fnv1a(transcript.to_string_lossy().as_bytes())
    ));
    let mut state = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&state_path)?;
    state.lock()?;
    let mut text = String::new();
    state.read_to_string(&mut text)?;
    let mut lines = text.lines();
    let mut offset: u64 = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut last_id = lines.next().unwrap_or_default().to_owned();
    if source.metadata()?.len() < offset {
        // Truncated or replaced: start over.
        offset = 0;
        last_id.clear();
    }
    source.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(source);
    let mut by_model: BTreeMap<String, ModelUsage> = BTreeMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 || line.last() != Some(&b'\n') {
            break; // The end, or a line still being written: leave it for next time.
        }
        offset += read as u64;
        let Ok(entry) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        let message = &entry["message"];
        let (Some(model), Some(usage)) = (message["model"].as_str(), message["usage"].as_object())
        else {
            continue;
        };
        if let Some(id) = message["id"].as_str() {
            if id == last_id || !seen.insert(id.to_owned()) {
                continue; // Another line of a response already counted.
            }
            last_id = id.to_owned();
        }
        by_model.entry(model.to_owned()).or_default().add(usage);
    }
    by_model.retain(|_, usage| !usage.is_empty());
    state.seek(SeekFrom::Start(0))?;
    state.set_len(0)?;
    write!(state, "{offset}\n{last_id}\n")?;
    Ok(by_model)
}

/// FNV-1a, 64 bits: a stable file name for a transcript path.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assistant(id: &str, model: &str, input: i64, output: i64) -> String {
        format!(
            "{}\n",
            json!({"type": "assistant", "message": {"id": id, "model": model,
                "usage": {"input_tokens": input, "output_tokens": output,
                          "cache_read_input_tokens": 1}}})
        )
    }

    #[test]
    fn each_token_is_counted_once_across_repeated_reads_of_a_growing_transcript() {
        let dir = tempfile::tempdir().unwrap();
        let transcript = dir.path().join("t.jsonl");
        let state = dir.path().join("state");
        let mut text = String::from("{\"type\":\"user\",\"message\":{\"content\":\"hi\"}}\n");
        text += &assistant("m1", "claude-sonnet-4-5", 10, 5);
        text += &assistant("m1", "claude-sonnet-4-5", 10, 5); // the same response, 2nd block
        text += "not json\n";
        std::fs::write(&transcript, &text).unwrap();
        let first = usage_since_last_read(&state, &transcript).unwrap();
        assert_eq!(first["claude-sonnet-4-5"]["input_tokens"], 10);
        assert_eq!(first["claude-sonnet-4-5"]["output_tokens"], 5);
        assert_eq!(first["claude-sonnet-4-5"]["cache_read_input_tokens"], 1);
        assert_eq!(
            usage_since_last_read(&state, &transcript),
            None,
            "nothing new"
        );

        // It grows: a new response, a repeat of the last one, and a half-written line.
        text += &assistant("m1", "claude-sonnet-4-5", 10, 5);
        text += &assistant("m2", "claude-haiku-4-5", 3, 4);
        let partial = assistant("m3", "claude-sonnet-4-5", 100, 100);
        std::fs::write(&transcript, format!("{text}{}", &partial[..20])).unwrap();
        let second = usage_since_last_read(&state, &transcript).unwrap();
        assert_eq!(second.as_object().unwrap().len(), 1, "{second}");
        assert_eq!(second["claude-haiku-4-5"]["output_tokens"], 4);

        std::fs::write(&transcript, format!("{text}{partial}")).unwrap();
        let third = usage_since_last_read(&state, &transcript).unwrap();
        assert_eq!(third["claude-sonnet-4-5"]["input_tokens"], 100);
    }

    #[test]
    fn a_missing_transcript_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            usage_since_last_read(dir.path(), &dir.path().join("nope.jsonl")),
            None
        );
    }
}
