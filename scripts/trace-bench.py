#!/usr/bin/env python3
"""Times GET /api/sessions/{id}/trace for one session of 10,000 hook events (5,000 tool calls,
each a PreToolUse and a PostToolUse, under 50 prompts) plus 1,000 API requests from Claude
Code's telemetry, against a running hookwatch (default http://127.0.0.1:4999).

    ./target/release/hookwatch serve --addr 127.0.0.1:4999 --data-dir "$(mktemp -d)" --otlp-grpc-addr off &
    python3 scripts/trace-bench.py
"""
import json
import sys
import time
import urllib.request

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:4999"
SESSION = "trace-bench"
T0 = int(time.time() * 1000) - 6 * 3600 * 1000


def post(path, body, content_type="application/json"):
    request = urllib.request.Request(BASE + path, data=body, headers={"content-type": content_type})
    with urllib.request.urlopen(request) as response:
        assert response.status == 200, response.status
        return response.read()


def envelope(event, at, payload):
    payload = dict(payload, session_id=SESSION, hook_event_name=event)
    return {"source_app": "bench", "session_id": SESSION, "hook_event_type": event,
            "payload": payload, "timestamp": T0 + at}


events = [envelope("SessionStart", 0, {})]
for p in range(50):
    base = 1 + p * 400_000
    events.append(envelope("UserPromptSubmit", base, {"prompt": f"prompt {p}", "prompt_id": f"P{p}"}))
    for n in range(100):
        at, tid = base + 100 + n * 3000, f"t{p}-{n}"
        events.append(envelope("PreToolUse", at, {"tool_name": "Read", "tool_use_id": tid, "tool_input": {"file_path": f"/f{n}"}}))
        events.append(envelope("PostToolUse", at + 1000, {"tool_name": "Read", "tool_use_id": tid, "tool_input": {}, "tool_response": {"ok": True}}))
    events.append(envelope("Stop", base + 390_000, {}))
events = events[:10_000]
for i in range(0, len(events), 1000):
    post("/events/batch", json.dumps(events[i:i + 1000]).encode())

records = []
for r in range(1000):
    at = 1 + (r // 20) * 400_000 + 500 + (r % 20) * 15_000
    attrs = {"session.id": SESSION, "event.name": "api_request", "prompt.id": f"P{r // 20}",
             "model": "claude-sonnet-4-6", "query_source": "repl_main_thread"}
    kv = [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()]
    kv += [{"key": "cost_usd", "value": {"doubleValue": 0.01}},
           {"key": "duration_ms", "value": {"intValue": 800}},
           {"key": "input_tokens", "value": {"intValue": 100}}]
    records.append({"timeUnixNano": str((T0 + at) * 1_000_000),
                    "body": {"stringValue": "claude_code.api_request"}, "attributes": kv})
post("/v1/logs", json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}).encode())

timings = []
for _ in range(21):
    started = time.perf_counter()
    with urllib.request.urlopen(f"{BASE}/api/sessions/{SESSION}/trace") as response:
        body = response.read()
    timings.append((time.perf_counter() - started) * 1000)
spans = len(json.loads(body)["spans"])
timings = sorted(timings[1:])
print(f"{len(events)} hook events, {len(records)} API requests -> {spans} spans, {len(body) / 1e6:.1f} MB")
print(f"GET trace (20 reads): median {timings[len(timings) // 2]:.1f} ms, min {timings[0]:.1f} ms, max {timings[-1]:.1f} ms")
