#!/usr/bin/env bash
# Storage side by side over HTTP: the same data into Hydrant (`hydrant storage`, release
# build), VictoriaMetrics and Prometheus 2.42 (Debian packages), then the same query_range
# calls against each. Data: N series `load{source_id,instance_id,job}` (N = 100 and 1000),
# a sample every 10 s for 2 hours, the value pattern of `benches/storage.rs`.
# - ingest: Hydrant and VictoriaMetrics take the text import (`/api/v1/import/prometheus`,
#   timed end to end); Prometheus has no push import for old samples, so its figure is
#   `promtool tsdb create-blocks-from openmetrics` (offline block creation).
# - bytes: Hydrant's Parquet parts once sealed, VictoriaMetrics' data dir after a flush,
#   Prometheus' blocks.
# - query: `query_range` over 1 h at a 15 s step (the 100 and 1,000-series sets, one series,
#   two selectors, an aggregation over 1,000 series, a 2 h range), instant queries, and the
#   label APIs; 20 runs each, median, no result caches.
# Usage: scripts/bench-storage-3way.sh   (ports 18428, 19090, 19400)
set -euo pipefail
B="${HYDRANT_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/hydrant}"
[ -x "$B" ] || { echo "build first: cargo build --release" >&2; exit 1; }
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null; rm -rf "$dir"' EXIT
hour=3600000
now=$(( 1700000000000 / hour * hour + hour / 2 ))
start=$(( now - 2 * hour ))
gen() { # series, format (prom: ms timestamps; om: seconds)
  awk -v n="$1" -v start="$start" -v fmt="$2" 'BEGIN {
    if (fmt == "om") print "# TYPE load gauge"
    for (k = 0; k < 720; k++) for (i = 0; i < n; i++) {
      v = 40 + ((k*7 + i*13) % 23) * 0.5; t = start + k*10000
      if (fmt == "om") printf "load{source_id=\"app-%d\",instance_id=\"%d\",job=\"bench%d\"} %s %.3f\n", int(i/10), i%10, n, v, t/1000
      else printf "load{source_id=\"app-%d\",instance_id=\"%d\",job=\"bench%d\"} %s %.0f\n", int(i/10), i%10, n, v, t
    }
    if (fmt == "om") print "# EOF"
  }'
}
for n in 100 1000; do gen $n prom > "$dir/data$n.prom"; done
# OpenMetrics needs one metric family in one block of lines: both sets in one file.
{ echo "# TYPE load gauge"; for n in 100 1000; do gen $n om | grep -v '^#'; done; echo "# EOF"; } > "$dir/data.om"
wait_up() { for _ in $(seq 200); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "$1 not up" >&2; exit 1; }
median() { sort -n | sed -n 10p; }
metric() { curl -s 127.0.0.1:19400/metrics | awk -v m="$1" '$1 == m {print $2}'; }

# Hydrant
"$B" storage --insecure-open --from 127.0.0.1:1 --http 127.0.0.1:19400 --data-dir "$dir/hydrant" \
  --retention 36500d --no-self-metrics >"$dir/hydrant.log" 2>&1 & pids+=($!)
wait_up 127.0.0.1:19400/healthz
# VictoriaMetrics
victoria-metrics -httpListenAddr=127.0.0.1:18428 -storageDataPath="$dir/vm" \
  -retentionPeriod=100y -search.latencyOffset=0s -loggerLevel=ERROR >/dev/null 2>&1 & pids+=($!)
wait_up 127.0.0.1:18428/health
for n in 100 1000; do
  for target in hydrant:19400 vm:18428; do
    t=$(curl -sf -o /dev/null -w '%{time_total}' --data-binary @"$dir/data$n.prom" \
      "127.0.0.1:${target#*:}/api/v1/import/prometheus")
    echo "ingest ${target%%:*} $n series: $(( 720 * n )) samples in ${t}s = $(echo "720 * $n / $t" | bc) samples/s"
  done
done
curl -sf 127.0.0.1:18428/internal/force_flush >/dev/null
# Prometheus: blocks from OpenMetrics, then the server over them.
t0=$(date +%s.%N)
promtool tsdb create-blocks-from openmetrics "$dir/data.om" "$dir/prom" >/dev/null
t1=$(date +%s.%N)
echo "ingest prometheus (promtool, offline) both sets: 792000 samples in $(echo "$t1 - $t0" | bc)s = $(echo "792000 / ($t1 - $t0)" | bc) samples/s"
printf 'global:\n  scrape_interval: 1h\n' > "$dir/prometheus.yml"
prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/prom" \
  --storage.tsdb.retention.time=100y --web.listen-address=127.0.0.1:19090 \
  --log.level=error >/dev/null 2>&1 & pids+=($!)
wait_up 127.0.0.1:19090/-/ready

# Hydrant seals old hours into Parquet at its next maintenance pass (every 10 s).
for _ in $(seq 300); do [ "$(metric hydrant_storage_buffer_rows)" = "0" ] && break; sleep 0.2; done
sleep 12 # one more pass: compaction of the sealed hours
echo "bytes hydrant: $(metric hydrant_storage_parquet_bytes) in $(metric hydrant_storage_parquet_files) Parquet files (792000 samples)"
echo "bytes victoria-metrics: $(du -sb "$dir/vm/data" | cut -f1) data dir (792000 samples)"
echo "bytes prometheus: $(du -sb --exclude=wal --exclude=chunks_head "$dir/prom" | cut -f1) blocks (792000 samples)"

qs=$(( (now - hour - 600000) / 1000 )); qe=$(( (now - 600000) / 1000 ))
ls=$(( (now - 2 * hour + 60000) / 1000 ))
targets="hydrant:19400 victoria-metrics:18428 prometheus:19090"
# time_of PORT PATH ARGS...: median of 20 curl timings (s) of GET PATH with ARGS.
time_of() {
  local port=$1 path=$2; shift 2
  for _ in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' --get "127.0.0.1:$port$path" "$@" --data nocache=1; done | median
}
# range CLASS QUERY START STEP EXPECTED_SERIES
range() {
  for target in $targets; do
    port=${target#*:}
    series=$(curl -s --get "127.0.0.1:$port/api/v1/query_range" --data-urlencode "query=$2" \
      --data "start=$3" --data "end=$qe" --data "step=$4" --data nocache=1 | grep -o '"metric"' | wc -l)
    [ "$series" -eq "$5" ] || { echo "${target%%:*}: $2 returned $series series, not $5" >&2; exit 1; }
    m=$(time_of "$port" /api/v1/query_range --data-urlencode "query=$2" --data "start=$3" --data "end=$qe" --data "step=$4")
    echo "query $1 ${target%%:*}: $2 median ${m}s"
  done
}
for n in 100 1000; do
  for q in "load{job=\"bench$n\"}" "avg_over_time(load{job=\"bench$n\"}[1m])"; do
    range "$n-series" "$q" "$qs" 15 "$n"
  done
done
range small-selector 'load{job="bench100",source_id="app-3",instance_id="7"}' "$qs" 15 1
range two-selectors 'load{job="bench100",source_id="app-3",instance_id="7"} - load{job="bench100",source_id="app-3",instance_id="7"} offset 5m' "$qs" 15 1
range aggregation-1000 'avg by (source_id) (load{job="bench1000"})' "$qs" 15 100
range long-range-100 'max_over_time(load{job="bench100"}[10m])' "$ls" 60 100
for target in $targets; do
  port=${target#*:}
  m=$(time_of "$port" /api/v1/query --data-urlencode 'query=load{job="bench100",source_id="app-3",instance_id="7"}' --data "time=$qe")
  echo "query instant-small ${target%%:*}: median ${m}s"
  m=$(time_of "$port" /api/v1/query --data-urlencode 'query=vector(1)' --data "time=$qe")
  echo "query vector(1) ${target%%:*}: median ${m}s"
  m=$(time_of "$port" /api/v1/labels --data "start=$qs" --data "end=$qe")
  echo "labels ${target%%:*}: median ${m}s"
  m=$(time_of "$port" /api/v1/label/source_id/values --data "start=$qs" --data "end=$qe")
  echo "label-values ${target%%:*}: median ${m}s"
  m=$(time_of "$port" /api/v1/series --data-urlencode 'match[]=load{job="bench1000"}' --data "start=$qs" --data "end=$qe")
  echo "series-1000 ${target%%:*}: median ${m}s"
done
