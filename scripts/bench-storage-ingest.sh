#!/usr/bin/env bash
# End-to-end storage ingest: `hydrant emit` (2,000,000 gauges over 1,000 sources, no seq
# tag, paced at RATE) → `hydrant doppler` → `hydrant storage` (WAL on), all on this
# machine. Prints how many samples the storage stored and how long it took; stored ==
# sent means no loss. Usage: scripts/bench-storage-ingest.sh [RATE]  (release build)
set -u
rate=${1:-1000000}
B=${HYDRANT_BIN:-"$(cd "$(dirname "$0")/.." && pwd)/target/release/hydrant"}
D=$(mktemp -d); rm -rf $D; mkdir -p $D
$B doppler --insecure-open --grpc 127.0.0.1:28082 --http 127.0.0.1:28083 > $D/doppler.log 2>&1 & dp=$!
sleep 0.5
$B storage --insecure-open --from 127.0.0.1:28082 --http 127.0.0.1:29400 --data-dir $D/data > $D/storage.log 2>&1 & sp=$!
for i in $(seq 50); do curl -sf 127.0.0.1:29400/healthz >/dev/null && break; sleep 0.2; done
sleep 1
m() { curl -s 127.0.0.1:29400/metrics | awk '/^hydrant_storage_ingested_samples_total /{print $2}'; }
t0=$(date +%s.%N)
$B emit --to 127.0.0.1:28082 --kind gauge --count 2000000 --sources 1000 --streams 2 --no-seq --rate $rate > $D/emit.out 2>&1
for i in $(seq 300); do n=$(m); [ "${n%.*}" -ge 2000000 ] 2>/dev/null && break; sleep 0.1; done
t1=$(date +%s.%N)
echo "emit: $(cat $D/emit.out)"
echo "stored $(m) samples in $(echo "$t1 - $t0" | bc) s"
ps -o rss=,time=,comm= -p $sp
kill $sp $dp; wait 2>/dev/null
rm -rf "$D"
