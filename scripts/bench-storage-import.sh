#!/usr/bin/env bash
# Text import side by side: the same body into `hydrant storage` (WAL on) and Debian's
# VictoriaMetrics, each `/api/v1/import/prometheus` timed end to end by curl, alternating
# VictoriaMetrics, Hydrant, VictoriaMetrics, Hydrant per data set so both see the same
# moments of a noisy machine. Data: N series `load{source_id,instance_id,job}` (N = 1,000
# and 4,000: 720,000 and 2,880,000 samples), a sample every 10 s for 2 hours, ms times.
# Fresh series for each server on its first request, known series on its second.
# Usage: scripts/bench-storage-import.sh [N...]   (release build; ports 18428 and 19400)
set -euo pipefail
B="${HYDRANT_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/hydrant}"
[ -x "$B" ] || { echo "build first: cargo build --release" >&2; exit 1; }
sets=("${@:-1000 4000}")
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null; rm -rf "$dir"' EXIT
hour=3600000
start=$(( 1700000000000 / hour * hour - 3 * hour / 2 ))
for n in ${sets[*]}; do
  awk -v n="$n" -v start="$start" 'BEGIN { for (k = 0; k < 720; k++) for (i = 0; i < n; i++)
    printf "load{source_id=\"app-%d\",instance_id=\"%d\",job=\"bench%d\"} %s %.0f\n",
      int(i/10), i%10, n, 40 + ((k*7 + i*13) % 23) * 0.5, start + k*10000 }' > "$dir/data$n.prom"
done
"$B" storage --insecure-open --from 127.0.0.1:1 --http 127.0.0.1:19400 --data-dir "$dir/hydrant" \
  --retention 36500d --no-self-metrics >"$dir/hydrant.log" 2>&1 & pids+=($!)
victoria-metrics -httpListenAddr=127.0.0.1:18428 -storageDataPath="$dir/vm" \
  -retentionPeriod=100y -loggerLevel=ERROR >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 100); do
  curl -sf 127.0.0.1:19400/healthz >/dev/null && curl -sf 127.0.0.1:18428/health >/dev/null && break
  sleep 0.1
done
for n in ${sets[*]}; do
  for target in victoria-metrics:18428 hydrant:19400 victoria-metrics:18428 hydrant:19400; do
    t=$(curl -sf -o /dev/null -w '%{time_total}' --data-binary @"$dir/data$n.prom" \
      "127.0.0.1:${target#*:}/api/v1/import/prometheus")
    echo "$n series, ${target%%:*}: $(( 720 * n )) samples in ${t}s = $(echo "720 * $n / $t" | bc) samples/s"
  done
done
