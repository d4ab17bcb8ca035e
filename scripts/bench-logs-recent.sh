#!/usr/bin/env bash
# `hydrant logs APP --recent` end to end (process start to exit) against a log cache holding
# SOURCES other sources (100 log envelopes each) and a cell with APPS apps, the way a user
# runs it: the name is resolved through the scheduler, then the newest logs are read.
# Also times `hydrant logs SOURCE --recent` for a source id that is no app (a component),
# which the log cache itself must confirm. Prints p50/p99/max over RUNS runs of each.
#
# usage: scripts/bench-logs-recent.sh [SOURCES=10000] [APPS=100] [RUNS=50]
set -euo pipefail
SOURCES=${1:-10000}; APPS=${2:-100}; RUNS=${3:-50}
BIN=${HYDRANT:-target/release/hydrant}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DG=127.0.0.1:$(port); DH=127.0.0.1:$(port); AG=127.0.0.1:$(port); AH=127.0.0.1:$(port)
API=127.0.0.1:$(port); LC=127.0.0.1:$(port)
RUST_LOG=warn "$BIN" doppler --insecure-open --grpc "$DG" --http "$DH" &
RUST_LOG=warn "$BIN" agent --insecure-open --grpc "$AG" --http "$AH" --doppler "$DG" --udp off &
RUST_LOG=warn "$BIN" cell --insecure-open --api "$API" --agent "$AG" --data-dir "$dir/cell" &
RUST_LOG=warn "$BIN" logcache --insecure-open --from "$DG" --http "$LC" --scheduler "http://$API" &
for _ in $(seq 100); do
  curl -sf "http://$API/healthz" >/dev/null 2>&1 && curl -sf "http://$LC/healthz" >/dev/null 2>&1 \
    && curl -s "http://$DH/metrics" | grep -q 'subscriptions{shard_id="log-cache"} 1' && break
  sleep 0.1
done
export HYDRANT_SCHEDULER=http://$API HYDRANT_LOG_CACHE=http://$LC
# APPS apps with no instances (the scheduler's listing grows), then one that logs.
for i in $(seq "$APPS"); do "$BIN" push "idle-$i" -i 0 --no-wait -- sleep 1 >/dev/null; done
"$BIN" push web --no-wait -- sh -c 'i=0; while [ $i -lt 1000 ]; do echo "web line $i"; i=$((i+1)); done; exec sleep 600' >/dev/null
"$BIN" emit --to "$DG" --count $((SOURCES * 100)) --sources "$SOURCES" --payload-bytes 200 --rate 400000 --streams 2 --no-seq >/dev/null
sleep 2
time_runs() {
  python3 - "$RUNS" "$@" <<'PY'
import subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2:]
lat, lines = [], 0
for _ in range(runs):
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    lat.append((time.perf_counter() - t) * 1000)
    if out.returncode != 0:
        sys.exit(f"{cmd} failed: {out.stderr}")
    lines = len(out.stdout.splitlines())
lat.sort()
print(f"{' '.join(cmd[1:4])}: {lines} lines; p50 {lat[len(lat)//2]:.1f} ms, p99 {lat[min(len(lat)-1, int(len(lat)*0.99))]:.1f} ms, max {lat[-1]:.1f} ms ({runs} runs)")
PY
}
meta=$(curl -s "http://$LC/api/v1/meta" | wc -c)
echo "log cache: $SOURCES sources + web (meta listing: $meta bytes); cell: $((APPS + 1)) apps"
time_runs "$BIN" logs web --recent
time_runs "$BIN" logs emit-42 --recent
