#!/usr/bin/env bash
# Log cache benchmark: fill the cache with PREFILL envelopes (200-byte log payloads) over
# 10,000 sources, then run ingest at 100,000 envelopes/s while timing READS `--recent`-style
# reads (newest 1000 LOG envelopes, descending) of one source. Prints read latency
# percentiles and memory per cached envelope (RSS and the cache's own accounting).
#
# usage: scripts/bench-logcache.sh [PREFILL=10000000] [READS=300]
set -euo pipefail
PREFILL=${1:-10000000}; READS=${2:-300}
BIN=${HYDRANT:-target/release/hydrant}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DG=127.0.0.1:$(port); DH=127.0.0.1:$(port); LC=127.0.0.1:$(port)
RUST_LOG=warn "$BIN" doppler --insecure-open --grpc "$DG" --http "$DH" &
RUST_LOG=warn "$BIN" logcache --insecure-open --from "$DG" --http "$LC" --memory-limit 8GiB & LPID=$!
for _ in $(seq 100); do curl -s "http://$DH/metrics" | grep -q 'subscriptions{shard_id="log-cache"} 1' && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2*1024}' "/proc/$1/status"; }
metric() { curl -s "http://$LC/metrics" | awk -v m="$1" '$1==m {print $2}'; }
base=$(rss $LPID)
"$BIN" emit --to "$DG" --count "$PREFILL" --sources 10000 --payload-bytes 200 --rate ${PREFILL_RATE:-400000} --streams 2 ${EMIT_ARGS:-} >/dev/null
for _ in $(seq 600); do [ "$(metric hydrant_logcache_ingress_envelopes_total)" = "$PREFILL" ] && break; sleep 0.1; done
held=$(metric hydrant_logcache_envelopes); accounted=$(metric hydrant_logcache_memory_bytes); full=$(rss $LPID)
dropped=$(curl -s "http://$DH/metrics" | awk '$1=="hydrant_doppler_dropped_envelopes_total{direction=\"egress\",shard_id=\"log-cache\"}" {print $2}')
# Reads with no ingest running, for comparison.
for i in $(seq "$READS"); do
  curl -s -o /dev/null -w '%{time_total}\n' "http://$LC/api/v1/read/emit-42?envelope_types=LOG&limit=1000&descending=true"
done > "$dir/idle"
# Ingest at 100k/s for the duration of the reads.
"$BIN" emit --to "$DG" --count 6000000 --sources 10000 --payload-bytes 200 --rate 100000 --streams 2 ${EMIT_ARGS:-} >/dev/null &
sleep 2
c0=$(awk '{print $14+$15}' "/proc/$LPID/stat"); t0=$(date +%s.%N)
for i in $(seq "$READS"); do
  curl -s -o /dev/null -w '%{time_total}\n' "http://$LC/api/v1/read/emit-42?envelope_types=LOG&limit=1000&descending=true"
done > "$dir/lat"
c1=$(awk '{print $14+$15}' "/proc/$LPID/stat"); t1=$(date +%s.%N)
echo "log cache CPU during ingest + reads: $(python3 -c "print(f'{($c1-$c0)/$(getconf CLK_TCK)/($t1-$t0)*100:.1f}')")% of one core"
n=$(curl -s "http://$LC/api/v1/read/emit-42?envelope_types=LOG&limit=1000&descending=true" | python3 -c 'import sys,json; print(len(json.load(sys.stdin)["envelopes"]["batch"]))')
cli=$( { /usr/bin/time -f '%e' "$BIN" logs emit-42 --recent --log-cache "http://$LC" --scheduler http://127.0.0.1:9 >/dev/null; } 2>&1 )
ingest_rate=$(metric hydrant_logcache_ingress_envelopes_total)
python3 - "$dir/lat" "$held" "$accounted" "$base" "$full" "$n" "$cli" "${dropped:-0}" <<'PY'
import sys
lat = sorted(float(x) * 1000 for x in open(sys.argv[1]))
pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))]
held, acc, base, full, n = int(float(sys.argv[2])), float(sys.argv[3]), int(float(sys.argv[4])), int(float(sys.argv[5])), int(sys.argv[6])
print(f"cached: {held} envelopes over 10000 sources (doppler dropped for the cache: {sys.argv[8]})")
print(f"read of newest {n} LOG envelopes during 100k/s ingest: p50 {pct(0.5):.2f} ms, p99 {pct(0.99):.2f} ms, max {lat[-1]:.2f} ms ({len(lat)} reads)")
idle = sorted(float(x) * 1000 for x in open(sys.argv[1].replace("lat", "idle")))
print(f"same read with no ingest: p50 {idle[len(idle)//2]:.2f} ms, p99 {idle[min(len(idle)-1, int(len(idle)*0.99))]:.2f} ms")
print(f"hydrant logs --recent wall time (process start to exit): {float(sys.argv[7])*1000:.0f} ms")
print(f"memory per envelope (200-byte payload): accounted {acc/held:.1f} B, RSS {(full-base)/held:.1f} B; budget 1.5x+64 = {1.5*200+64:.0f} B")
PY
