#!/usr/bin/env bash
# End-to-end storage ingest over the Firehose: `hydrant emit` (ENVELOPES gauges of METRICS
# metrics each over 1,000 sources, no seq tag, paced at RATE envelopes/s) → `hydrant
# doppler` → `hydrant storage` (WAL on), all three on this machine. A cell's container
# metrics envelope carries five metrics, hence the default. Prints the samples stored
# (stored == sent × METRICS means no loss), the time from the first envelope sent to the
# last sample stored, and each process' CPU seconds.
# Usage: scripts/bench-storage-ingest.sh [RATE] [METRICS] [ENVELOPES]   (release build)
set -u
rate=${1:-400000}
metrics=${2:-5}
count=${3:-2000000}
B=${HYDRANT_BIN:-"$(cd "$(dirname "$0")/.." && pwd)/target/release/hydrant"}
D=$(mktemp -d)
$B doppler --insecure-open --grpc 127.0.0.1:28082 --http 127.0.0.1:28083 > $D/doppler.log 2>&1 & dp=$!
sleep 0.5
$B storage --insecure-open --from 127.0.0.1:28082 --http 127.0.0.1:29400 --data-dir $D/data > $D/storage.log 2>&1 & sp=$!
for i in $(seq 50); do curl -sf 127.0.0.1:29400/healthz >/dev/null && break; sleep 0.2; done
sleep 1
m() { curl -s 127.0.0.1:29400/metrics | awk '/^hydrant_storage_ingested_samples_total /{print $2}'; }
cpu() { awk '{printf "%.2f", ($14 + $15) / 100}' /proc/$1/stat; }
want=$((count * metrics))
t0=$(date +%s.%N)
/usr/bin/time -f "%U %S" -o $D/emit.cpu $B emit --to 127.0.0.1:28082 --kind gauge \
  --metrics $metrics --count $count --sources 1000 --streams 2 --no-seq --rate $rate > $D/emit.out 2>&1
for i in $(seq 300); do n=$(m); [ "${n%.*}" -ge $want ] 2>/dev/null && break; sleep 0.1; done
t1=$(date +%s.%N)
stored=$(m)
secs=$(echo "$t1 - $t0" | bc)
echo "emit: $(cat $D/emit.out)"
if [ "${stored%.*}" -ge $want ] 2>/dev/null; then
  echo "stored ${stored%.*} of $want samples in $secs s: $(echo "${stored%.*} / $secs" | bc) samples/s"
else
  echo "lossy: stored ${stored%.*} of $want samples ($(echo "100 * ${stored%.*} / $want" | bc) %)"
fi
echo "cpu seconds: emit $(awk '{print $1 + $2}' $D/emit.cpu), doppler $(cpu $dp), storage $(cpu $sp)"
kill $sp $dp; wait 2>/dev/null
rm -rf "$D"
