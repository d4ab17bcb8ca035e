#!/usr/bin/env bash
# Pipeline benchmark: hydrant emit -> agent -> doppler -> hydrant firehose --stats, each a
# separate process on loopback. Prints the emitter's and the subscriber's JSON summaries and
# the CPU seconds each process used (user+system, from /proc) per million envelopes.
#
# usage: scripts/bench-pipeline.sh COUNT [RATE] [extra emit flags…]
#   COUNT  envelopes to send; RATE envelopes/s (omit or 0 for unpaced)
# env:    HYDRANT (binary, default target/release/hydrant), TLS=1 for mTLS on every hop,
#         PAYLOAD (bytes, default 200), AGENT_ARGS (extra agent flags, e.g. "--tag job=cell")
set -euo pipefail
COUNT=${1:?count}; RATE=${2:-0}; shift $(( $# > 1 ? 2 : 1 )) || true
BIN=${HYDRANT:-target/release/hydrant}
PAYLOAD=${PAYLOAD:-200}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT

tls_doppler=(); tls_agent=(); tls_client=(); tls_emit=(); scheme=http; curl_tls=()
if [ "${TLS:-0}" = 1 ]; then
  "$BIN" certs --out "$dir/certs" >/dev/null
  c="$dir/certs"
  tls_doppler=(--tls-ca "$c/ca.pem" --tls-cert "$c/doppler.pem" --tls-key "$c/doppler-key.pem")
  tls_agent=(--tls-ca "$c/ca.pem" --tls-cert "$c/metron.pem" --tls-key "$c/metron-key.pem")
  tls_client=(--tls-ca "$c/ca.pem" --tls-cert "$c/client.pem" --tls-key "$c/client-key.pem")
  tls_emit=("${tls_client[@]}" --tls-server-name metron)
  # With certificates the HTTP ports are HTTPS too.
  scheme=https; curl_tls=(--cacert "$c/ca.pem")
fi

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DG=127.0.0.1:$(port); DH=127.0.0.1:$(port); AG=127.0.0.1:$(port); AH=127.0.0.1:$(port)

RUST_LOG=warn "$BIN" doppler --insecure-open --grpc "$DG" --http "$DH" "${tls_doppler[@]}" & DPID=$!
RUST_LOG=warn "$BIN" agent --insecure-open --grpc "$AG" --http "$AH" --doppler "$DG" --udp off "${tls_agent[@]}" ${AGENT_ARGS:-} & APID=$!
for _ in $(seq 100); do curl -sf "${curl_tls[@]}" "$scheme://$AH/healthz" >/dev/null 2>&1 && curl -sf "${curl_tls[@]}" "$scheme://$DH/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
d0=$(cpu $DPID); a0=$(cpu $APID)
RUST_LOG=warn /usr/bin/time -f '%U %S' -o "$dir/fh.cpu" "$BIN" firehose --from "$DG" --stats --count "$COUNT" --duration 300s "${tls_client[@]}" > "$dir/fh.json" & FPID=$!
for _ in $(seq 100); do curl -s "${curl_tls[@]}" "$scheme://$DH/metrics" | grep -q 'hydrant_doppler_subscriptions{shard_id=""} 1' && break; sleep 0.1; done
rate_flag=(); [ "$RATE" != 0 ] && rate_flag=(--rate "$RATE")
/usr/bin/time -f '%U %S' -o "$dir/emit.cpu" "$BIN" emit --to "$AG" --count "$COUNT" --payload-bytes "$PAYLOAD" "${rate_flag[@]}" "${tls_emit[@]}" "$@" > "$dir/emit.json"
# Let the pipeline drain; the subscriber exits on --count or after it stops receiving.
for _ in $(seq 300); do kill -0 $FPID 2>/dev/null || break; sleep 0.1; done
if kill -0 $FPID 2>/dev/null; then pkill -INT -P $FPID || true; fi
wait $FPID 2>/dev/null || true
d1=$(cpu $DPID); a1=$(cpu $APID)
tck=$(getconf CLK_TCK)
echo "emit:     $(cat "$dir/emit.json")"
echo "firehose: $(cat "$dir/fh.json")"
python3 - "$COUNT" "$tck" "$d0" "$d1" "$a0" "$a1" "$dir/emit.cpu" "$dir/fh.cpu" <<'PY'
import sys
count, tck = int(sys.argv[1]), int(sys.argv[2])
d = (float(sys.argv[4]) - float(sys.argv[3])) / tck
a = (float(sys.argv[6]) - float(sys.argv[5])) / tck
def cpu(path):
    u, s = open(path).read().split()[-2:]
    return float(u) + float(s)
e, f = cpu(sys.argv[7]), cpu(sys.argv[8])
per = lambda x: x / count * 1e6
print(f"cpu-seconds per million envelopes: agent {per(a):.2f}, doppler {per(d):.2f}, emit {per(e):.2f}, firehose {per(f):.2f}")
PY
curl -s "${curl_tls[@]}" "$scheme://$AH/metrics" | grep -E '^hydrant_agent_(dropped|egress_batches)' || true
curl -s "${curl_tls[@]}" "$scheme://$DH/metrics" | grep -E '^hydrant_doppler_(dropped|ingress_batches)' || true
