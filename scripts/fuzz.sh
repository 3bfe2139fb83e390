#!/usr/bin/env bash
# Fuzzes the ingest parsers (fuzz/fuzz_targets/parsers.rs) for a set time; not part of CI.
#   scripts/fuzz.sh [seconds]     (default 300)
# Installs cargo-fuzz when missing. Runs on the stable toolchain without a sanitizer
# (RUSTC_BOOTSTRAP lets cargo-fuzz pass its -Z flags); crashes land in fuzz/artifacts/parsers/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
mkdir -p fuzz/corpus/parsers
# Seeds: a valid envelope, a batch and a hook body.
printf '%s' '{"source_app":"a","session_id":"s","hook_event_type":"PreToolUse","payload":{"tool_name":"Bash","tool_use_id":"t1"},"timestamp":1795168800000}' > fuzz/corpus/parsers/envelope.json
printf '%s\n%s\n' '{"source_app":"a","session_id":"s","hook_event_type":"Stop","payload":{}}' '{"source_app":"b","session_id":"t","hook_event_type":"SessionEnd","payload":{"reason":"exit"}}' > fuzz/corpus/parsers/batch.ndjson
printf '%s' '{"session_id":"s","hook_event_name":"SubagentStop","cwd":"/home/dev/p","agent_id":"a1","agent_type":"Explore"}' > fuzz/corpus/parsers/hook.json
RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none parsers fuzz/corpus/parsers -- \
  -max_total_time="$seconds" -max_len=65536
