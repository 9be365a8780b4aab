#!/usr/bin/env bash
# Soak: an hour at a steady campaign-like rate (bench/soak.lua: each message delivered then
# read or failed, a new batch every 20,000 messages), with a file sink and a forward sink
# (to bench/programs/baseline.rs), retention pruning events and messages older than 10
# minutes, and the dashboard and the API being read every few seconds. Every minute it
# prints the server's RSS, open descriptors, threads, the store's size on disk, the
# minute's events/s and p99, and how far the sinks are behind. Flat is the goal.
#
#   apt-get install wrk      # once
#   bench/soak.sh            # MINUTES=60 CONNS=8 DELAY=40 (about 200 events/s); BIN=… to skip the build
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-60}
CONNS=${CONNS:-8}
export DELAY=${DELAY:-40}
RETAIN=${RETAIN:-600s}
command -v wrk >/dev/null || { echo "bench/soak.sh needs wrk: apt-get install wrk" >&2; exit 2; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked --bin innohook --example baseline 2>&1 | tail -1
  BIN=$PWD/target/release/innohook
fi
BASE=${BASE:-$(dirname "$BIN")/examples/baseline}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 1 400); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

cat > "$WORK/innohook.toml" <<TOML
[server]
listen = "127.0.0.1:18087"
[store]
dir = "$WORK/store"
retain_events = "$RETAIN"
retain_messages = "$RETAIN"
[api]
token = "soak"
[log]
level = "warn"
[[sinks]]
type = "file"
path = "$WORK/events.jsonl"
[[sinks]]
type = "forward"
url = "http://127.0.0.1:18088/webhook"
TOML
"$BASE" 127.0.0.1:18088 & PIDS+=($!)
wait_port 18088
"$BIN" --config "$WORK/innohook.toml" 2> "$WORK/innohook.log" & PIDS+=($!); PID=$!
wait_port 18087
URL=http://127.0.0.1:18087

# The dashboard and the API, read by a person every few seconds.
reader() {
  local jar=$WORK/cookies
  curl -s -c "$jar" -o /dev/null --data 'token=soak' "$URL/ui/login"
  while :; do
    for page in /ui/ /ui/batches /ui/messages /ui/dead-letters /ui/reports/daily; do
      curl -s -b "$jar" -o /dev/null "$URL$page"
    done
    uid=$(curl -s -H 'Authorization: Bearer soak' "$URL/api/batches?limit=1" | sed -n 's/.*"uid":"\([^"]*\)".*/\1/p')
    if [ -n "$uid" ]; then
      curl -s -b "$jar" -o /dev/null "$URL/ui/batches/$uid"
      curl -s -H 'Authorization: Bearer soak' -o /dev/null "$URL/api/batches/$uid/messages.csv"
    fi
    curl -s -o /dev/null "$URL/metrics"
    sleep 5
  done
}
reader & PIDS+=($!)

metric() { curl -s "$URL/metrics" | awk -v m="$1" '$1 ~ "^"m { s += $NF } END { print s + 0 }'; }
ROW='%6s %8s %7s %8s %10s %9s %8s %8s\n'
printf "$ROW" minute "RSS MiB" fds threads "store MiB" events/s "p99 ms" behind
for minute in $(seq 1 "$MINUTES"); do
  out=$(wrk -t1 -c"$CONNS" -d60s --latency -s bench/soak.lua "$URL/webhook")
  rate=$(awk '/^Requests\/sec/ { printf "%d", $2 }' <<< "$out")
  p99=$(awk '$1 == "99%" { v = $2; n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.1f", n }' <<< "$out")
  bad=$(awk '/Non-2xx/ { print $NF }' <<< "$out")
  [ -z "$bad" ] || echo "  minute $minute: $bad answers were not 2xx" >&2
  rss=$(awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$PID/status")
  fds=$(ls "/proc/$PID/fd" | wc -l)
  threads=$(awk '/^Threads/ { print $2 }' "/proc/$PID/status")
  store=$(du -cb "$WORK/store" | awk 'END { printf "%.1f", $1 / 1048576 }')
  printf "$ROW" "$minute" "$rss" "$fds" "$threads" "$store" "$rate" "$p99" "$(metric innohook_sink_pending_events)"
done
# The file sink rotates (max_bytes): count the lines of every file it kept.
echo "file sink: $(cat "$WORK"/events.jsonl* | wc -l) lines in $(ls "$WORK"/events.jsonl* | wc -l) files; innohook log: $(grep -c . "$WORK/innohook.log" || true) lines"
grep -v ' INFO ' "$WORK/innohook.log" | tail -n 5 || true
