"""What the benchmark scripts share: a `hookwatch serve` of their own, and its memory.

Imported by scripts/otlp-fairness-bench.py, scripts/trace-prompts-bench.py and
scripts/usage-cardinality-bench.py (Python puts a script's own directory on its path).
Standard library only.
"""

import http.client
import subprocess
import tempfile


def start(binary, *flags):
    """`binary serve` on port 0, a fresh data directory, no gRPC, and `flags`:
    (process, host, port)."""
    data = tempfile.mkdtemp()
    server = subprocess.Popen(
        [binary, "serve", "--addr", "127.0.0.1:0", "--otlp-grpc-addr", "off",
         "--data-dir", data, *flags],
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


def request(host, port, method, path, body=None):
    """One request on a connection of its own, JSON: (status, body bytes)."""
    connection = http.client.HTTPConnection(host, port, timeout=600)
    connection.request(method, path, body, {"content-type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data
