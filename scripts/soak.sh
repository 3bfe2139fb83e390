#!/usr/bin/env bash
# The 30-minute soak (issue 6), outside CI: builds the release binary and runs `hookwatch-soak`.
#   scripts/soak.sh [minutes]     (default 30; other flags: ./target/release/hookwatch-soak --help)
# Needs redis-server (apt-get install redis-server). Prints acknowledged vs stored events (they
# must match), errors by kind and the server's RSS every 30 s; exits non-zero if any
# acknowledged event is missing. Figures of the last run: BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p hookwatch -p hookwatch-bench
exec ./target/release/hookwatch-soak --minutes "${1:-30}"
