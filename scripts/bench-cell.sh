#!/usr/bin/env bash
# Cost of observation: doppler + agent + cell, one app with INSTANCES instances, each printing
# RATE lines/s (perl, so the app itself costs little). Measures CPU seconds and RSS of the cell
# and the agent over SECONDS, and counts the lines that reached the Firehose.
#
# usage: scripts/bench-cell.sh [INSTANCES=50] [RATE=100] [SECONDS=60]
set -euo pipefail
N=${1:-50}; RATE=${2:-100}; SECS=${3:-60}
BIN=${HYDRANT:-target/release/hydrant}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DG=127.0.0.1:$(port); DH=127.0.0.1:$(port); AG=127.0.0.1:$(port); AH=127.0.0.1:$(port); API=127.0.0.1:$(port)
RUST_LOG=warn "$BIN" doppler --insecure-open --grpc "$DG" --http "$DH" & 
RUST_LOG=warn "$BIN" agent --insecure-open --grpc "$AG" --http "$AH" --doppler "$DG" --udp off & APID=$!
RUST_LOG=warn "$BIN" cell --insecure-open --api "$API" --agent "$AG" --data-dir "$dir/cell" & CPID=$!
for _ in $(seq 100); do curl -sf "http://$API/healthz" >/dev/null 2>&1 && curl -sf "http://$AH/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
export HYDRANT_SCHEDULER=http://$API
sleep_s=$(python3 -c "print(1/$RATE)")
# Several arguments after -- are a program and its arguments, each passed unchanged.
"$BIN" push bench -i "$N" --memory 64M -- perl -e "\$|=1; my \$i=0; while (1) { print \"bench line \$i \", \"x\" x 60, \"\\n\"; \$i++; select(undef,undef,undef,$sleep_s) }" >/dev/null
for _ in $(seq 300); do [ "$("$BIN" apps | awk '/^bench/ {print $3}')" = "$N/$N" ] && break; sleep 0.2; done
sleep 2
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
"$BIN" firehose --from "$DG" --type log --duration "${SECS}s" --stats > "$dir/fh.json" &
c0=$(cpu $CPID); a0=$(cpu $APID)
sleep "$SECS"
c1=$(cpu $CPID); a1=$(cpu $APID)
wait %4 2>/dev/null || sleep 1
tck=$(getconf CLK_TCK)
python3 - "$tck" "$SECS" "$c0" "$c1" "$a0" "$a1" "$(rss $CPID)" "$(rss $APID)" "$N" "$RATE" "$dir/fh.json" <<'PY'
import sys, json
tck, secs = int(sys.argv[1]), float(sys.argv[2])
c = (float(sys.argv[4]) - float(sys.argv[3])) / tck / secs * 100
a = (float(sys.argv[6]) - float(sys.argv[5])) / tck / secs * 100
n, rate = int(sys.argv[9]), int(sys.argv[10])
fh = json.load(open(sys.argv[11]))
print(f"instances {n} x {rate} lines/s for {secs:.0f}s")
print(f"cell:  {c:.2f}% of one core, RSS {int(sys.argv[7])/1024:.1f} MiB")
print(f"agent: {a:.2f}% of one core, RSS {int(sys.argv[8])/1024:.1f} MiB")
print(f"total: {c+a:.2f}% of one core; per instance {(c+a)/n:.3f}%")
print(f"firehose logs/s: {fh['rate']:.0f} (expected about {n*rate}; the app's own sleep granularity lowers it)")
PY
