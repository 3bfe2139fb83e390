#!/usr/bin/env python3
"""Hook event acks while OTLP exports of the largest size hookwatch takes arrive back to back.

    cargo build --release
    scripts/otlp-fairness-bench.py ./target/release/hookwatch [--seconds 20] [--records 32000]

Starts the binary on a fresh data directory; one client sends exports of `--records` Claude
Code api_request records (JSON, about 13.5 MB at 24,000: near --max-batch-bytes) back to back,
`--bodies` distinct ones then the same again (retries: stored as duplicates), while another posts a
hook event every 10 ms on one keep-alive connection and times each ack. Prints the acks'
p50/p99/max with and without the exports, and the exports' rate. Standard library only.
"""

import argparse
import http.client
import json
import statistics
import threading
import time

import bench_server

parser = argparse.ArgumentParser()
parser.add_argument("binary")
parser.add_argument("--seconds", type=float, default=20)
parser.add_argument("--records", type=int, default=24_000)
parser.add_argument("--bodies", type=int, default=16)
args = parser.parse_args()

server, host, port = bench_server.start(args.binary)


def export_body(round_number):
    now_ns = time.time_ns()
    records = []
    for n in range(args.records):
        attributes = {
            "session.id": {"stringValue": f"bench-{round_number % 50}"},
            "event.name": {"stringValue": "api_request"},
            "model": {"stringValue": "claude-sonnet-4-6"},
            "cost_usd": {"doubleValue": 0.0123},
            "input_tokens": {"intValue": 1200},
            "output_tokens": {"intValue": 340},
            "cache_read_tokens": {"intValue": 48000},
            "duration_ms": {"intValue": 2300},
            "request_id": {"stringValue": f"req-{round_number}-{n}"},
        }
        records.append({
            "timeUnixNano": str(now_ns - (args.records - n) * 1_000_000),
            "body": {"stringValue": "claude_code.api_request"},
            "attributes": [{"key": k, "value": v} for k, v in attributes.items()],
        })
    return json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}).encode()


def hook_acks(stop, latencies):
    connection = http.client.HTTPConnection(host, port, timeout=30)
    n = 0
    while not stop.is_set():
        n += 1
        event = json.dumps({"source_app": "bench", "session_id": "hooks",
                            "hook_event_type": "PreToolUse",
                            "payload": {"tool_name": "Read", "tool_use_id": f"t{n}-{time.time_ns()}"}})
        started = time.perf_counter()
        connection.request("POST", "/events", event, {"content-type": "application/json"})
        response = connection.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        assert response.status == 200, response.status
        time.sleep(0.01)


BODIES = [export_body(r) for r in range(args.bodies)]
print(f"exports of {args.records} records, {len(BODIES[0]) / 1e6:.1f} MB each")


def exporter(stop, done):
    connection = http.client.HTTPConnection(host, port, timeout=120)
    r = 0
    while not stop.is_set():
        body = BODIES[r % len(BODIES)]
        connection.request("POST", "/v1/logs", body, {"content-type": "application/json"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        done.append(len(body))
        r += 1


def run(with_exports):
    stop, latencies, done = threading.Event(), [], []
    threads = [threading.Thread(target=hook_acks, args=(stop, latencies))]
    if with_exports:
        threads.append(threading.Thread(target=exporter, args=(stop, done)))
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(args.seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    what = f"with {len(done)} exports of {args.records} records" if with_exports else "alone"
    print(f"hook acks {what}: n={len(latencies)} p50={statistics.median(latencies):.1f} ms "
          f"p99={p99:.1f} ms max={latencies[-1]:.1f} ms"
          + (f"; {len(done) * args.records / elapsed:,.0f} records/s" if with_exports else ""))


try:
    run(False)
    run(True)
finally:
    server.terminate()
    server.wait()
