#!/usr/bin/env bash
# Syslog drain throughput: lines per second from `hydrant emit` through an agent's
# aggregate drain (syslog:// TCP, octet counting) into a real rsyslog writing a file.
#
#   scripts/bench-drain.sh [COUNT] [BINARY]
#
# COUNT envelopes of 200 bytes (default 1,000,000); BINARY defaults to
# target/release/hydrant. Prints the rate measured from the first emitted envelope to the
# last line rsyslog wrote, and what the agent counted sent and dropped. DRAIN_BUFFER
# sets the drain's buffer (default: COUNT, so nothing is dropped).
set -euo pipefail
count=${1:-1000000}
bin=${2:-target/release/hydrant}
command -v rsyslogd >/dev/null || { echo "rsyslogd is required (apt-get install rsyslog)" >&2; exit 1; }
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
syslog=$(port); grpc=$(port); http=$(port); agent=$(port); agent_http=$(port)
cat > "$dir/rsyslog.conf" <<CONF
global(workDirectory="$dir")
module(load="imtcp")
input(type="imtcp" port="$syslog" address="127.0.0.1")
template(name="msg" type="string" string="%msg:::drop-last-lf%\n")
action(type="omfile" file="$dir/out.log" template="msg" asyncWriting="on" ioBufferSize="256k")
CONF
rsyslogd -n -f "$dir/rsyslog.conf" -i "$dir/pid" 2>"$dir/rsyslog.err" & pids+=($!)
"$bin" doppler --insecure-open --no-self-metrics --grpc "127.0.0.1:$grpc" --http "127.0.0.1:$http" 2>"$dir/doppler.err" & pids+=($!)
"$bin" agent --insecure-open --no-self-metrics --udp off --grpc "127.0.0.1:$agent" --http "127.0.0.1:$agent_http" \
  --doppler "127.0.0.1:$grpc" --aggregate-drain "syslog://127.0.0.1:$syslog" --drain-buffer "${DRAIN_BUFFER:-$count}" 2>"$dir/agent.err" & pids+=($!)
for _ in $(seq 100); do curl -sf "127.0.0.1:$agent_http/healthz" >/dev/null && break; sleep 0.1; done
start=$(date +%s.%N)
"$bin" emit --to "127.0.0.1:$agent" --count "$count" --payload-bytes 200 >/dev/null
lines=0
for _ in $(seq 1200); do
  lines=$( (wc -l < "$dir/out.log") 2>/dev/null || echo 0)
  [ "$lines" -ge "$count" ] && break
  sleep 0.1
done
end=$(date +%s.%N)
metrics=$(curl -s "127.0.0.1:$agent_http/metrics")
sent=$(echo "$metrics" | awk '/^hydrant_agent_drain_sent_messages_total/ {print $2}')
dropped=$(echo "$metrics" | awk '/^hydrant_agent_drain_dropped_envelopes_total/ {print $2}')
python3 -c "
count, lines, secs = $count, $lines, $end - $start
print(f'{{\"envelopes\":{count},\"lines_at_rsyslog\":{lines},\"seconds\":{secs:.2f},\"lines_per_second\":{lines/secs:.0f},\"agent_sent\":${sent:-0},\"agent_dropped\":${dropped:-0}}}')
"
