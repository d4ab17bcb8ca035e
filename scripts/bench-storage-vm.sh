#!/usr/bin/env bash
# The anchor side of the storage benchmark: the same data as
# `cargo bench -p hydrant-storage --bench storage` (N series `load{source_id,instance_id,job}`,
# a sample every 10 s for 2 hours) imported into VictoriaMetrics (Debian package), then the
# same query_range calls (1 h at a 15 s step), 20 runs each with VictoriaMetrics' result
# cache off (`nocache=1`), printing the median. Usage: scripts/bench-storage-vm.sh [PORT]
set -euo pipefail
port=${1:-18428}
dir=$(mktemp -d)
trap 'kill $vm 2>/dev/null || true; rm -rf "$dir"' EXIT
victoria-metrics -httpListenAddr=127.0.0.1:$port -storageDataPath="$dir/vm" \
  -retentionPeriod=100y -search.latencyOffset=0s -loggerLevel=ERROR >/dev/null 2>&1 &
vm=$!
for _ in $(seq 100); do curl -sf "127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
hour=3600000
now=$(( 1700000000000 / hour * hour + hour / 2 ))
start=$(( now - 2 * hour ))
for series in 100 1000; do
  # The bench's value pattern: 40 + ((k*7 + i*13) % 23) * 0.5.
  awk -v n="$series" -v start="$start" 'BEGIN {
    for (k = 0; k < 720; k++) for (i = 0; i < n; i++)
      printf "load{source_id=\"app-%d\",instance_id=\"%d\",job=\"bench%d\"} %s %.0f\n", int(i/10), i%10, n, 40 + ((k*7 + i*13) % 23) * 0.5, start + k*10000
  }' | curl -sf --data-binary @- "127.0.0.1:$port/api/v1/import/prometheus"
  curl -sf "127.0.0.1:$port/internal/force_flush" >/dev/null
  sleep 2
  n=$(curl -s --get "127.0.0.1:$port/api/v1/series" --data-urlencode "match[]=load{job=\"bench$series\"}" --data "start=$(( start / 1000 ))" | grep -o "__name__" | wc -l)
  [ "$n" -eq "$series" ] || { echo "import failed: $n series" >&2; exit 1; }
  qs=$(( (now - hour - 600000) / 1000 )); qe=$(( (now - 600000) / 1000 ))
  for q in "load{job=\"bench$series\"}" "avg_over_time(load{job=\"bench$series\"}[1m])"; do
    times=()
    for _ in $(seq 20); do
      t=$(curl -s -o /dev/null -w '%{time_total}' --get "127.0.0.1:$port/api/v1/query_range" \
        --data-urlencode "query=$q" --data "start=$qs" --data "end=$qe" --data step=15 --data nocache=1)
      times+=("$t")
    done
    median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 10p)
    echo "victoria-metrics $series series: $q median ${median}s"
  done
done
du -sb "$dir/vm" | awk '{print "victoria-metrics data dir: " $1 " bytes (both sets, " 720*1100 " samples)"}'
