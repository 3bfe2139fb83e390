"""What the benchmark scripts share: a `hookwatch serve` of their own, and its memory.

Imported by scripts/otlp-fairness-bench.py and scripts/trace-prompts-bench.py (Python puts a
script's own directory on its path). Standard library only.
"""

import subprocess
import tempfile


def start(binary):
    """`binary serve` on port 0, a fresh data directory, no gRPC: (process, host, port)."""
    data = tempfile.mkdtemp()
    server = subprocess.Popen(
        [binary, "serve", "--addr", "127.0.0.1:0", "--otlp-grpc-addr", "off",
         "--data-dir", data],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline()
    host, port = line.rsplit("//", 1)[1].strip().split(":")
    return server, host, int(port)


def status_kib(pid, field):
    """A figure of /proc/<pid>/status in KiB: VmRSS (now) or VmHWM (peak)."""
    with open(f"/proc/{pid}/status") as status:
        for entry in status:
            if entry.startswith(field + ":"):
                return int(entry.split()[1])
    return 0
