#!/bin/bash
# Where one hook event's cost goes, per request (issue 33, BENCHMARKS.md): system calls and
# context switches (kernel tracepoints, exact and cheap), and allocations by thread (uprobes on
# mimalloc's entry points, which hookwatch's Rust code allocates through, and on libc's
# malloc, which SQLite allocates through; a uprobe traps on every call, so the server runs
# several times slower while they are counted, and commit groups are smaller than unobserved).
#
# Usage: scripts/per-event-costs.sh [HOOKWATCH_BINARY] [SECONDS]
# Needs perf, wrk and root (uprobes). The load: wrk -t2 -c32 posting ~1 KB PreToolUse
# envelopes without an event_id (the server mints one), each with its own tool_use_id, over
# 32 sessions per wrk thread, to a fresh data dir at --durability full.
set -euo pipefail
BIN=$(realpath "${1:-target/release/hookwatch}")
SECONDS_RUN=${2:-5}
PORT=4906
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
payload = {"session_id": "SESSION", "transcript_path": "/home/u/.claude/projects/x/SESSION.jsonl",
           "cwd": "/home/u/project", "hook_event_name": "PreToolUse", "tool_name": "Bash",
           "tool_use_id": "TOOLID",
           "tool_input": {"command": "cargo test --workspace -- --nocapture " + "x" * 500,
                          "description": "Run the tests"}}
body = {"source_app": "bench-app", "session_id": "SESSION", "hook_event_type": "PreToolUse",
        "payload": payload}
open(f"{work}/body.json", "w").write(json.dumps(body))
open(f"{work}/post.lua", "w").write(f'''
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{work}/body.json"); local template = f:read("*a"); f:close()
local n, prefix = 0, nil
function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6) + #tostring({{}}))
  prefix = string.format("%06d", math.random(0, 999999))
end
function request()
  n = n + 1
  local body = template:gsub("SESSION", "sess-" .. prefix .. "-" .. (n % 32))
                       :gsub("TOOLID", "toolu_" .. prefix .. "_" .. n)
  return wrk.format(nil, nil, nil, body)
end
''')
PY

# run_server EVENTS...: serves a fresh data dir, counts EVENTS under load, prints the file
run_server() {
  local data="$WORK/data-$RANDOM"
  mkdir -p "$data"
  "$BIN" serve --data-dir "$data" --addr 127.0.0.1:$PORT --durability full > "$data/log" 2>&1 &
  local pid=$!
  for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:$PORT/healthz && break; sleep 0.1; done
  perf stat --per-thread "$@" -p $pid -o "$WORK/stat" -- sleep $((SECONDS_RUN + 1)) &
  local stat=$!
  sleep 0.3
  wrk -t2 -c32 -d${SECONDS_RUN}s -s "$WORK/post.lua" http://127.0.0.1:$PORT/events > "$WORK/wrk"
  wait $stat
  kill $pid; wait $pid 2>/dev/null || true
}

per_request() { # $1: what the rows are
  python3 - "$WORK/stat" "$(awk '/requests in/{print $1}' "$WORK/wrk")" "$1" <<'PY'
import collections, re, sys
requests, what = int(sys.argv[2]), sys.argv[3]
totals = collections.Counter()
for line in open(sys.argv[1]):
    m = re.match(r'\s*(\S+?)-\d+\s+([\d,]+)\s+(\S+)', line)
    if not m:
        continue
    thread, count, event = m.group(1), int(m.group(2).replace(',', '')), m.group(3)
    thread = {'tokio-rt-worker': 'runtime', 'hookwatch-write': 'writer',
              'hookwatch-check': 'checkpointer'}.get(thread, thread)
    event = event.split(':')[-1].replace('sys_enter_', '')
    if what == 'allocations':
        event = 'libc (SQLite)' if event.startswith('libc') else 'mimalloc (Rust)'
    totals[(thread, event)] += count
print(f"{what} per request ({requests} requests)")
by_event = collections.Counter()
for (thread, event), count in totals.items():
    by_event[event] += count
for event, count in by_event.most_common():
    if count / requests >= 0.01:
        threads = ", ".join(f"{t} {c / requests:.2f}" for (t, e), c in sorted(totals.items())
                            if e == event and c / requests >= 0.01)
        print(f"  {event:28s} {count / requests:8.2f}   ({threads})")
print(f"  {'all':28s} {sum(c for (t, e), c in totals.items() if e != 'context-switches') / requests:8.2f}")
PY
}

run_server -e 'syscalls:sys_enter_*' -e context-switches
per_request "system calls"

LIBC=$(ldd "$BIN" | awk '/libc.so.6/{print $3}')
perf probe -q -d 'hwalloc:*' 2>/dev/null || true
for f in mi_malloc_aligned mi_zalloc_aligned mi_realloc_aligned; do
  perf probe -q -x "$BIN" -a "hwalloc:$f=$f"
done
for f in malloc calloc realloc; do perf probe -q -x "$LIBC" -a "hwalloc:libc_$f=$f"; done
trap 'perf probe -q -d "hwalloc:*" 2>/dev/null; rm -rf "$WORK"' EXIT
run_server -e 'hwalloc:*'
per_request allocations
