#!/usr/bin/env bash
# How long `trackq status` takes with a large backlog (default 1,000,000 events pending).
#   scripts/bench-status.sh [N]      (builds release; prints one JSON line)
# The daemon's endpoint is a loopback port nobody listens on, so everything stays queued.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
swift build -c release >/dev/null
bin=.build/release/trackq
work=$(mktemp -d /tmp/trackq-status-bench.XXXXXX)
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
TRACKQ_TOKEN=bench "$bin" daemon --socket "$work/s.sock" --database "$work/q.db" \
  --endpoint http://127.0.0.1:9/api/track --retry-max 1h --log-level error 2>"$work/log" &
pid=$!
for _ in $(seq 100); do [[ -S $work/s.sock ]] && break; sleep 0.1; done
python3 ../shared/bench/loadgen.py "$work/s.sock" "$n" --mode pipeline >"$work/load.json"
python3 - "$bin" "$work/q.db" "$n" "$work/load.json" <<'PY'
import json, subprocess, sys, time
binary, db, n, load = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.load(open(sys.argv[4]))
times = []
for _ in range(20):
    t = time.perf_counter()
    out = subprocess.run([binary, "status", "--json", "--database", db], capture_output=True, text=True)
    times.append((time.perf_counter() - t) * 1000)
    pending = json.loads(out.stdout)["queue"]["pending"]
assert pending == n, (pending, n)
times.sort()
print(json.dumps({"pending": pending, "ingest_events_per_s": load["events_per_s"],
                  "status_ms_p50": round(times[10], 1), "status_ms_max": round(times[-1], 1)}))
PY
