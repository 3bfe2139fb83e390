#!/usr/bin/env python3
"""Usage reads over a day of many distinct OTLP sessions: their latency, p50, p99 and max.

    cargo build --release
    scripts/usage-cardinality-bench.py ./target/release/hookwatch [--sessions 1000000]
        [--reads 200] [--database-url postgres://...]

Starts the binary on a fresh data directory (or a given PostgreSQL database, which should be
empty), posts `--sessions` Claude Code `api_request` records over OTLP/HTTP JSON, each of its
own `session.id` (three models, two agent types, spread over the hours of today so far), in
bodies of 20,000 records, then reads each view `--reads` times one after another (no Redis:
every read goes to the store) and prints each one's answers and latency. Standard library only.
"""

import argparse
import json
import time

import bench_server

parser = argparse.ArgumentParser()
parser.add_argument("binary")
parser.add_argument("--sessions", type=int, default=1_000_000)
parser.add_argument("--reads", type=int, default=200)
parser.add_argument("--database-url")
args = parser.parse_args()

flags = ["--database-url", args.database_url] if args.database_url else []
server, host, port = bench_server.start(args.binary, *flags)
PER_BODY = 20_000
MODELS = ["claude-sonnet-4-6", "claude-opus-4-1-20250805", "claude-haiku-4-5"]


def request(method, path, body=None):
    return bench_server.request(host, port, method, path, body)


def body(first, count, day_start_ns, span_ns):
    records = []
    for n in range(first, first + count):
        attributes = {
            "session.id": {"stringValue": f"card-{n:07d}"},
            "event.name": {"stringValue": "api_request"},
            "model": {"stringValue": MODELS[n % 3]},
            "cost_usd": {"doubleValue": 0.001 * (1 + n % 17)},
            "input_tokens": {"intValue": 1000 + n % 500},
            "output_tokens": {"intValue": 300},
            "duration_ms": {"intValue": 800 + n % 4000},
            "query_source": {"stringValue": "subagent" if n % 5 == 0 else "repl_main_thread"},
            "request_id": {"stringValue": f"req-{n}"},
        }
        at = day_start_ns + (n * span_ns) // args.sessions
        records.append({
            "timeUnixNano": str(at),
            "body": {"stringValue": "claude_code.api_request"},
            "attributes": [{"key": k, "value": v} for k, v in attributes.items()],
        })
    return json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]})


try:
    now_ns = time.time_ns()
    day_start_ns = now_ns - now_ns % (86_400 * 10**9)
    span_ns = max(now_ns - day_start_ns - 120 * 10**9, 10**9)
    started = time.perf_counter()
    for first in range(0, args.sessions, PER_BODY):
        status, answer = request(
            "POST", "/v1/logs",
            body(first, min(PER_BODY, args.sessions - first), day_start_ns, span_ns))
        assert status == 200, (status, answer[:300])
    print(f"{args.sessions} sessions posted in {time.perf_counter() - started:.0f} s")
    views = [
        "/api/agents/metrics/current",
        "/api/usage?group_by=model",
        "/api/usage?group_by=session&limit=100",
    ]
    for path in views:
        latencies, statuses, size = [], {}, 0
        for _ in range(args.reads):
            t = time.perf_counter()
            status, answer = request("GET", path)
            latencies.append((time.perf_counter() - t) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            size = len(answer)
        latencies.sort()
        p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
        print(f"{path}: {statuses}, {size} bytes; p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, "
              f"max {latencies[-1]:.1f} ms")
finally:
    server.terminate()
    server.wait()
