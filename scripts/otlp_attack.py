#!/usr/bin/env python3
"""The OTLP probes of issue 29's outside run, made over the wire against a running hookwatch.

Called by scripts/attack.sh as: otlp_attack.py BASE_URL GRPC_HOST:PORT SERVER_PID
Prints one line a promise: HELD or BROKEN, then the promise and what was measured. Exits 1
when any promise is broken. Standard library only.
"""

import concurrent.futures
import gzip
import http.client
import json
import resource
import socket
import sys
import time
import urllib.parse

BASE, GRPC, PID = sys.argv[1], sys.argv[2], int(sys.argv[3])
URL = urllib.parse.urlsplit(BASE)
broken = 0


def verdict(promise, held):
    global broken
    print(("HELD    " if held else "BROKEN  ") + promise)
    broken += 0 if held else 1


def request(method, path, body=None, headers=None, timeout=60):
    connection = http.client.HTTPConnection(URL.hostname, URL.port, timeout=timeout)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def peak_kib():
    with open(f"/proc/{PID}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number, inner):
    return varint(number << 3 | 2) + varint(len(inner)) + inner


def empties(number, n):
    return field(number, b"") * n


# 1. Amplification: 16 KB bodies that inflate to millions of empty records.
bombs = [
    ("/v1/logs", "application/x-protobuf", field(1, field(2, empties(2, 8_000_000)))),
    ("/v1/logs", "application/json",
     ('{"resourceLogs":[{"scopeLogs":[{"logRecords":[' + ",".join(["{}"] * 5_000_000)
      + "]}]}]}").encode()),
    ("/v1/traces", "application/x-protobuf", field(1, field(2, empties(2, 8_000_000)))),
    ("/v1/metrics", "application/x-protobuf",
     field(1, field(2, field(2, field(7, empties(1, 8_000_000)))))),
]
bombs = [(path, kind, gzip.compress(body, 9)) for path, kind, body in bombs]


def send_bomb(bomb):
    path, kind, body = bomb
    status, answer = request("POST", path, body,
                             {"content-type": kind, "content-encoding": "gzip"})
    return status, answer


for bomb in bombs:
    status, answer = send_bomb(bomb)
    verdict(f"1. a {len(bomb[2]) // 1024} KB {bomb[1]} {bomb[0]} bomb is refused naming the "
            f"bound (got {status}: {answer[:90]!r})",
            status == 413 and b"--otlp-max-records" in answer)
with concurrent.futures.ThreadPoolExecutor(4) as pool:
    answers = list(pool.map(send_bomb, bombs))
peak = peak_kib()
verdict(f"1. four bombs at once: all 413, the server's peak RSS so far {peak // 1024} MiB (< 256 MiB; "
        f"was 14 GB)",
        all(status == 413 for status, _ in answers) and peak < 256 * 1024)

# 3. and 7. Numbers and identifiers: each record rejected alone through partial_success.
now_ns = time.time_ns()


def api_request(n, **changes):
    attributes = {"session.id": {"stringValue": "probe-session"},
                  "event.name": {"stringValue": "api_request"},
                  "model": {"stringValue": "claude-sonnet-4-6"},
                  "cost_usd": {"doubleValue": 0.01},
                  "input_tokens": {"intValue": 10},
                  "request_id": {"stringValue": f"probe-{n}"}}
    attributes.update(changes)
    return {"timeUnixNano": str(now_ns - n * 1_000_000),
            "body": {"stringValue": "claude_code.api_request"},
            "attributes": [{"key": k, "value": v} for k, v in attributes.items()]}


hostile = [
    api_request(1, input_tokens={"stringValue": str(2**63 - 1)}),
    api_request(2, cost_usd={"doubleValue": -1e10}),
    api_request(3, cost_usd={"stringValue": "NaN"}),
    api_request(4, cost_usd={"stringValue": "inf"}),
    api_request(5, cost_usd={"doubleValue": 1e300}),
    api_request(6, **{"session.id": {"stringValue": "s" * 100_000}}),
    api_request(7, model={"stringValue": "m" * 100_000}),
    api_request(8, **{"user.email": {"stringValue": "e" * 100_000}}),
    api_request(9),
]
export = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": hostile}]}]}).encode()
status, answer = request("POST", "/v1/logs", export, {"content-type": "application/json"})
partial = json.loads(answer or b"{}").get("partialSuccess", {})
verdict(f"3./7. tokens at i64::MAX, costs -1e10/NaN/inf/1e300 and 100 KB identifiers are rejected "
        f"through partial_success, the rest kept (got {status}, rejected "
        f"{partial.get('rejectedLogRecords')})",
        status == 200 and partial.get("rejectedLogRecords") == "8")
views = ["/api/agents/metrics/current", "/api/usage?group_by=model", "/api/usage?group_by=session",
         "/api/usage/timeline", "/api/sessions", "/api/agents"]
codes = {path: request("GET", path)[0] for path in views}
verdict(f"3. every view answers 200 ({codes})", set(codes.values()) == {200})


def negative_costs(value):
    if isinstance(value, dict):
        return sum((1 if "cost" in k and isinstance(v, (int, float)) and v < 0 else 0)
                   + negative_costs(v) for k, v in value.items())
    if isinstance(value, list):
        return sum(negative_costs(v) for v in value)
    return 0


negatives = sum(negative_costs(json.loads(request("GET", path)[1])) for path in views)
verdict(f"3. no cost is negative anywhere ({negatives} found)", negatives == 0)

# 9. Headers.
def raw_status(head):
    with socket.create_connection((URL.hostname, URL.port), timeout=10) as s:
        s.sendall(head.encode())
        return int(s.recv(4096).split(b" ")[1])


for name, head in [
    ("two Host headers", "GET /events HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n"),
    ("two Origin headers", "POST /events HTTP/1.1\r\nHost: localhost\r\nOrigin: http://localhost\r\n"
     "Origin: https://evil.example\r\nContent-Length: 2\r\n\r\n{}"),
    ("a Host of [::1]x", "GET /events HTTP/1.1\r\nHost: [::1]x\r\n\r\n"),
]:
    code = raw_status(head)
    verdict(f"9. {name} gets 400 (got {code})", code == 400)

# 2. 20,000 idle HTTP/2 connection attempts on the gRPC port leave /healthz answering fast.
# This process holds as many as its own file descriptors allow; past that, each new attempt
# first lets go of the oldest it holds (the attempts keep coming; the server sees 20,000).
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
except (ValueError, PermissionError):
    pass
room = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 256
host, port = GRPC.rsplit(":", 1)
held = []
attempts = 0
for _ in range(20_000):
    if len(held) >= room:
        held.pop(0).close()
    try:
        held.append(socket.create_connection((host, int(port)), timeout=2))
        attempts += 1
    except OSError:
        break
latencies = []
for _ in range(20):
    started = time.perf_counter()
    status, _ = request("GET", "/healthz", timeout=5)
    latencies.append((time.perf_counter() - started) * 1000)
worst = max(latencies)
verdict(f"2. {attempts} idle gRPC connection attempts, {len(held)} held: /healthz answers, slowest of 20 in "
        f"{worst:.1f} ms (< 100 ms)", status == 200 and worst < 100)
for s in held:
    s.close()

sys.exit(1 if broken else 0)
