#!/usr/bin/env bash
# The outside attack runs of issues 17 (the hook intake) and 29 (the OTLP intake), replayed
# against a fresh hookwatch: prints each promise and whether it held. Run outside CI (it builds a release binary, uploads 600 MB to itself and
# runs a few of the integration tests that need root, a private Redis or a browser-free
# WebSocket flood):
#
#   scripts/attack.sh            # everything
#   SKIP_TESTS=1 scripts/attack.sh   # only the checks made over HTTP here
#
# Needs curl and python3; the test-backed checks need what `cargo test` needs (README).
set -uo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet || exit 1
BIN=./target/release/hookwatch
WORK=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT

"$BIN" serve --addr 127.0.0.1:0 --otlp-grpc-addr 127.0.0.1:0 --data-dir "$WORK/data" \
  >"$WORK/out" 2>"$WORK/err" &
PID=$!
for _ in $(seq 1 100); do grep -q "listening on" "$WORK/out" 2>/dev/null && break; sleep 0.1; done
BASE=$(awk '/listening on/ {print $NF}' "$WORK/out")
for _ in $(seq 1 100); do grep -q "OTLP/gRPC on" "$WORK/out" 2>/dev/null && break; sleep 0.1; done
GRPC=$(awk '/OTLP\/gRPC on/ {print $NF}' "$WORK/out")
HOSTPORT=${BASE#http://}
[ -n "$BASE" ] || { echo "hookwatch did not start"; cat "$WORK/err"; exit 1; }

held=0
broken=0
verdict() { # promise, then 0 (held) or anything else
  if [ "$2" = 0 ]; then echo "HELD    $1"; held=$((held + 1)); else echo "BROKEN  $1"; broken=$((broken + 1)); fi
}
status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
body() { curl -s "$@"; }
is_json() { python3 -c 'import json,sys; json.load(sys.stdin)' >/dev/null 2>&1; }

echo "hookwatch $BASE ($($BIN --version))"
echo

# 1. The poison pill.
poison='{"source_app":"x","session_id":"x","hook_event_type":"Stop","payload":{},"transcript_usage":{"claude-sonnet-4-5":{"input_tokens":4000000000000000000}}}'
codes=""
for _ in 1 2 3; do codes="$codes$(status -H 'content-type: application/json' -d "$poison" "$BASE/events")"; done
[ "$codes" = "400400400" ]; verdict "a token count of 4e18 is refused, three times (got $codes)" $?
views_ok=0
for path in /api/agents/metrics/current /api/agents/metrics/timeline /api/sessions /api/agents; do
  [ "$(status "$BASE$path")" = 200 ] || views_ok=1
done
verdict "every main view answers 200 after the poison posts" $views_ok
cost=$(body "$BASE/api/agents/metrics/current" | python3 -c 'import json,sys; print(json.load(sys.stdin)["estimated_cost_today"])')
python3 -c "import sys; sys.exit(0 if float('$cost') >= 0 else 1)"; verdict "the cost is not negative ($cost)" $?
huge='{"source_app":"x","session_id":"x","hook_event_type":"PostToolUse","payload":{"tool_name":"Task","tool_use_id":"t","tool_response":{"agentId":"a","totalTokens":9223372036854775807,"usage":{"output_tokens":9223372036854775807}}}}'
[ "$(status -H 'content-type: application/json' -d "$huge" "$BASE/events")" = 400 ]; verdict "a subagent's usage at i64::MAX is refused" $?

# 2. Browsers.
event='{"source_app":"a","session_id":"s","hook_event_type":"Stop","payload":{}}'
ws_code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 --http1.1 -H 'Origin: https://evil.example' \
  -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
  -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "$BASE/stream")
[ "$ws_code" = 403 ]; verdict "a WebSocket from a foreign Origin is refused (got $ws_code)" $?
[ "$(status -H 'Origin: https://evil.example' -H 'content-type: text/plain' -d "$event" "$BASE/events")" = 403 ]
verdict "a foreign page's text/plain POST /events is refused" $?
[ "$(status -H 'Origin: https://evil.example' -H 'content-type: application/x-www-form-urlencoded' -d '{"session_id":"s","hook_event_name":"Stop"}' "$BASE/hooks/claude-code")" = 403 ]
verdict "a foreign page's form-typed /hooks/claude-code is refused" $?
[ "$(status -H "Host: attacker.example:${HOSTPORT##*:}" "$BASE/events")" = 421 ]
verdict "a foreign Host (DNS rebinding) gets 421" $?
[ "$(status -d "$event" "$BASE/events")" = 200 ]; verdict "curl -d (no Origin, form type) is still taken" $?

# 8. Time.
future='{"source_app":"a","session_id":"s-future","hook_event_type":"SessionStart","payload":{},"timestamp":'$(( ($(date +%s) + 10 * 365 * 86400) * 1000 ))'}'
ts=$(body -H 'content-type: application/json' -d "$future" "$BASE/events" | python3 -c 'import json,sys; print(json.load(sys.stdin)["timestamp"])')
[ "$ts" -le $(( ($(date +%s) + 60) * 1000 )) ]; verdict "a timestamp 10 years ahead is clamped to arrival ($ts)" $?

# 9. Sizes.
long_tool=$(python3 -c 'print("x" * 100000)')
[ "$(status -H 'content-type: application/json' -d "{\"source_app\":\"a\",\"session_id\":\"s\",\"hook_event_type\":\"PreToolUse\",\"payload\":{\"tool_name\":\"$long_tool\",\"tool_use_id\":\"t\"}}" "$BASE/events")" = 400 ]
verdict "a 100 KB tool name is refused" $?
python3 - "$WORK/batch.json" <<'PY'
import json, sys
line = {"source_app": "a", "session_id": "s", "hook_event_type": "Notification", "payload": {"blob": "b" * 14000}}
json.dump([dict(line, payload={"blob": "b" * 14000, "n": n}) for n in range(1000)], open(sys.argv[1], "w"))
PY
for n in $(seq 1 40); do
  curl -s -o /dev/null -w '%{http_code}\n' -H 'content-type: application/json' --data-binary "@$WORK/batch.json" "$BASE/events/batch" >>"$WORK/batches" &
done
wait $(jobs -p | grep -v "^$PID$") 2>/dev/null
peak=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
refused=$(grep -c '^503$' "$WORK/batches")
[ "$peak" -lt $((400 * 1024)) ] && [ "$refused" -gt 0 ]
verdict "40 concurrent 15 MB batches: $refused answered 503, peak RSS $((peak / 1024)) MiB (was 879 MB)" $?

# 10. Small.
bad_path=$(body "$BASE/api/agents/%FF%FE")
echo "$bad_path" | is_json; verdict "a path of bad UTF-8 gets a JSON error" $?
body "$BASE/stream" | is_json; verdict "/stream without an upgrade gets a JSON error" $?

# Issue 29: the OTLP intake (over the wire; see the script for each probe).
while read -r line; do
  case "$line" in
    HELD*) held=$((held + 1)); echo "$line" ;;
    BROKEN*) broken=$((broken + 1)); echo "$line" ;;
    *) echo "$line" ;;
  esac
done < <(python3 scripts/otlp_attack.py "$BASE" "$GRPC" "$PID" 2>&1)

# The promises whose checks need root (a small tmpfs), a private Redis or long runs: the
# integration tests that hold them.
if [ -z "${SKIP_TESTS:-}" ]; then
  run_test() { # promise, test filter
    if cargo test --quiet --test api -- --exact "$2" >/dev/null 2>&1; then verdict "$1" 0; else verdict "$1" 1; fi
  }
  run_test "3. a ping flood drops the client; 5,000 WebSockets stay under 64 MiB" stream_limits::five_thousand_websockets_and_a_ping_flood_stay_under_the_memory_bound
  run_test "4. WebSockets count against --max-connections and --max-stream-clients" stream_limits::websockets_count_against_both_caps
  run_test "5. two stores on one Redis stay apart" cache::two_stores_on_one_redis_stay_apart
  run_test "6. a full disk: 503, degraded health, recovery, integrity" disk_full::a_full_disk_answers_503_corrupts_nothing_and_recovers_when_space_returns
  run_test "6. starting on a full disk never calls the database foreign" disk_full::starting_on_a_full_disk_never_calls_the_database_foreign
  run_test "7. --max-db-size holds the database and its WAL within 10% under a hook and OTLP flood" retention::a_size_limit_holds_the_database_and_its_wal_under_a_hook_and_otlp_flood
  run_test "7. ragged edges read only what retention keeps" retention::sqlite::ragged_edges_read_only_what_retention_keeps
  run_test "10. the auth scheme is case-insensitive (BEARER x)" auth::the_auth_scheme_is_case_insensitive
  run_test "29.2 gRPC refuses a missing or wrong token before reading the message" otlp_limits::grpc_refuses_a_missing_or_wrong_token_before_reading_the_message
  run_test "29.2 gRPC: bounds, the body budget, a stalled message dropped" otlp_limits::grpc_holds_exports_to_the_bounds_the_budget_and_the_request_timeout
  run_test "29.2 an idle-connection flood on gRPC leaves the HTTP API answering" otlp_limits::an_idle_connection_flood_on_grpc_leaves_the_http_api_answering
  run_test "29.3 sums saturate on PostgreSQL" otlp_limits::postgres::telemetry_sums_saturate_instead_of_failing
  run_test "29.3/5/7 hostile numbers and identifiers, clamped times, on PostgreSQL" otlp_limits::postgres::hostile_numbers_and_identifiers_are_rejected_alone
  run_test "29.6 200 slow readers of a 30 MB chat stay under 512 MiB" limits::two_hundred_slow_readers_of_a_30_mb_chat_stay_within_the_memory_budget
  run_test "29.6 four traces of long prompts stay under 512 MiB" limits::four_traces_of_a_session_of_long_prompts_stay_within_the_memory_budget
  run_test "29.7 Slack markup is escaped in the webhook text" alerts::slack_markup_in_a_session_id_is_escaped_in_the_webhook_text
  run_test "29.8 a hook event is committed between the chunks of a large export" otlp_limits::a_hook_event_is_committed_between_the_chunks_of_a_large_export
fi

echo
echo "$held held, $broken broken"
[ "$broken" = 0 ]
