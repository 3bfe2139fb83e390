#!/usr/bin/env python3
"""Four concurrent traces of a session of long prompts: the server's peak memory.

    cargo build --release
    scripts/trace-prompts-bench.py ./target/release/hookwatch [--prompts 3000] [--kb 900]

Starts the binary on a fresh data directory, posts one session of `--prompts`
UserPromptSubmit events whose prompts are `--kb` KB each (batches of 15), then reads
`/api/sessions/{id}/trace` four times at once and prints the answers' status and size and the
server's RSS before and its peak (VmHWM, reset just before) during the reads. Standard library
only.
"""

import argparse
import concurrent.futures
import json
import time

import bench_server

parser = argparse.ArgumentParser()
parser.add_argument("binary")
parser.add_argument("--prompts", type=int, default=3000)
parser.add_argument("--kb", type=int, default=900)
args = parser.parse_args()

server, host, port = bench_server.start(args.binary)


def status_kib(field):
    return bench_server.status_kib(server.pid, field)


def request(method, path, body=None):
    return bench_server.request(host, port, method, path, body)


try:
    prompt = "p" * (args.kb * 1000)
    t0 = int(time.time() * 1000) - args.prompts * 1000 - 60_000
    started = time.perf_counter()
    for first in range(0, args.prompts, 15):
        batch = [{
            "source_app": "bench", "session_id": "S-long", "hook_event_type": "UserPromptSubmit",
            "timestamp": t0 + n * 1000,
            "payload": {"session_id": "S-long", "hook_event_name": "UserPromptSubmit",
                        "prompt": prompt, "prompt_id": f"P{n}"},
        } for n in range(first, min(first + 15, args.prompts))]
        status, answer = request("POST", "/events/batch", json.dumps(batch))
        assert status == 200, (status, answer[:200])
    posted = time.perf_counter() - started
    before = status_kib("VmRSS")
    # Resets the peak (VmHWM) to now, so the peak below is the reads' (needs root or the owner).
    with open(f"/proc/{server.pid}/clear_refs", "w") as clear:
        clear.write("5")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: request("GET", "/api/sessions/S-long/trace"), range(4)))
    peak = status_kib("VmHWM")
    print(f"{args.prompts} prompts of {args.kb} KB posted in {posted:.0f} s")
    for status, body in answers:
        spans = json.loads(body)["spans"] if status == 200 else []
        print(f"trace: {status}, {len(body) / 1e6:.1f} MB, {len(spans)} spans")
    print(f"server RSS before the reads {before // 1024} MiB; peak during them {peak // 1024} MiB")
finally:
    server.terminate()
    server.wait()
