#!/usr/bin/env python3
"""Memory over a daemon's long life: one daemon takes and delivers N events (default 20 M), a
million at a time through one connection (every ack checked), to bench.py's sink; after each million it prints
VmRSS and its anonymous and file-backed parts (/proc/PID/status). Flat anonymous memory after
the caches fill is the goal (BENCHMARKS.md, "Memory over a long life").

  python3 Benchmarks/rss_life.py BINARY [N]
"""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
binary = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000_000
sink_dir = tempfile.mkdtemp(prefix="trackq-rss-sink.")
sink = bench.Sink(sink_dir)
endpoint = f"http://127.0.0.1:{sink.port}/api/track"


def mem(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k = line.split(":")[0]
        if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[k] = int(line.split()[1])
    return out


with tempfile.TemporaryDirectory(prefix="trackq-rss.") as work:
    d = bench.Daemon(binary, work, endpoint)
    t0 = time.monotonic()
    written = 0
    while written < n:
        bench.pipeline(d.socket, written, 1_000_000)
        written += 1_000_000
        sink.wait_for(written, timeout=600)
        m = mem(d.proc.pid)
        print(f"t={time.monotonic()-t0:.0f}s delivered={written} " + " ".join(f"{k}={v}" for k, v in m.items()), flush=True)
    d.stop()
sink.stop()
shutil.rmtree(sink_dir, ignore_errors=True)
