#!/usr/bin/env python3
"""Alert evaluation over a store of 1,000,000 hook events and 200,000 API requests, with 100
rules of every condition, against a running hookwatch whose rule file is alerts-bench.toml
(this script writes it; start the server after):

    python3 scripts/alerts-bench.py --write-rules /tmp/alerts-bench.toml
    ./target/release/hookwatch serve --addr 127.0.0.1:4999 --data-dir "$(mktemp -d)" \\
        --otlp-grpc-addr off --alerts /tmp/alerts-bench.toml --alert-interval 2s &
    python3 scripts/alerts-bench.py

It fills the store (4,000 sessions over the last 24 hours), waits for 30 evaluations, and
prints the mean wall time per evaluation (from /metrics) and the server's CPU per evaluation
(from /proc, idle baseline subtracted).
"""
import json
import os
import random
import subprocess
import sys
import time
import urllib.request

BASE = "http://127.0.0.1:4999"
CONDITIONS = [
    ('spend', 'threshold = 50.0\nwindow = "24h"\nper = "{per}"'),
    ('api_errors', 'threshold = 1000\nwindow = "1h"\nper = "{per}"'),
    ('failure_rate', 'threshold = 0.9\nwindow = "24h"\nmin_count = 10'),
    ('failed_tools', 'threshold = 10000\nwindow = "1h"\nper = "app"'),
    ('stuck', 'threshold = 3600'),
    ('silence', 'threshold = 86400'),
    ('pending_approval', 'threshold = 3600'),
]
PERS = ["all", "app", "session", "user", "model"]


def write_rules(path):
    rules = []
    for n in range(100):
        condition, body = CONDITIONS[n % len(CONDITIONS)]
        rules.append(f'[[rule]]\nname = "rule {n}"\ncondition = "{condition}"\n'
                     + body.format(per=PERS[n % len(PERS)]) + "\n")
    with open(path, "w") as f:
        f.write("\n".join(rules))


def post(path, body):
    request = urllib.request.Request(BASE + path, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 200, response.status


def metrics():
    with urllib.request.urlopen(BASE + "/metrics") as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        for name in ("hookwatch_alert_evaluations_total", "hookwatch_alert_evaluation_microseconds_total"):
            if line.startswith(name + " "):
                values[name] = int(line.split()[1])
    return values


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fill():
    now = int(time.time() * 1000)
    rnd = random.Random(7)
    batch, sent = [], 0
    for s in range(4000):
        session, app = f"s{s}", f"app{s % 20}"
        start = now - rnd.randint(0, 23 * 3600 * 1000)
        events = [("SessionStart", {})]
        for n in range(249):
            kind = "PostToolUseFailure" if n % 50 == 0 else ("PreToolUse" if n % 2 else "PostToolUse")
            events.append((kind, {"tool_name": "Read", "tool_use_id": f"{session}-{n // 2}"}))
        for i, (kind, payload) in enumerate(events):
            payload = dict(payload, session_id=session, hook_event_name=kind)
            batch.append({"source_app": app, "session_id": session, "hook_event_type": kind,
                          "payload": payload, "timestamp": start + i * 1000})
            if len(batch) == 1000:
                post("/events/batch", json.dumps(batch).encode())
                sent += len(batch)
                batch = []
        records = []
        for r in range(50):
            kv = [{"key": "session.id", "value": {"stringValue": session}},
                  {"key": "event.name", "value": {"stringValue": "api_request"}},
                  {"key": "user.email", "value": {"stringValue": f"dev{s % 50}@example.com"}},
                  {"key": "model", "value": {"stringValue": "claude-sonnet-4-6"}},
                  {"key": "cost_usd", "value": {"doubleValue": 0.01}},
                  {"key": "duration_ms", "value": {"intValue": 900}}]
            records.append({"timeUnixNano": str((start + r * 5000) * 1_000_000),
                            "body": {"stringValue": "claude_code.api_request"}, "attributes": kv})
        post("/v1/logs", json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}).encode())
    if batch:
        post("/events/batch", json.dumps(batch).encode())
        sent += len(batch)
    return sent


if len(sys.argv) > 2 and sys.argv[1] == "--write-rules":
    write_rules(sys.argv[2])
    sys.exit(0)

pid = int(subprocess.check_output(["pgrep", "-f", "hookwatch serve --addr 127.0.0.1:4999"]).split()[0])
started = time.time()
events = fill()
print(f"filled {events} hook events and 200000 API requests in {time.time() - started:.0f} s")
time.sleep(5)  # the last commits' evaluations
before, cpu_before = metrics(), cpu_seconds(pid)
time.sleep(60)
after, cpu_after = metrics(), cpu_seconds(pid)
n = after["hookwatch_alert_evaluations_total"] - before["hookwatch_alert_evaluations_total"]
wall = (after["hookwatch_alert_evaluation_microseconds_total"]
        - before["hookwatch_alert_evaluation_microseconds_total"]) / n / 1000
print(f"{n} evaluations of 100 rules: {wall:.1f} ms wall each, "
      f"{(cpu_after - cpu_before) / n * 1000:.1f} ms server CPU each (all threads, idle included)")
