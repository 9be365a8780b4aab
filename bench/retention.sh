#!/usr/bin/env bash
# Retention under load, two measurements:
#  1. p99 of the webhook while a million-event prune runs, against the same load on the
#     same store with nothing to prune (both on a copy of the 1-million-event store that
#     `cargo bench --bench query` builds in target/bench-store-1m);
#  2. the store's size over time under a steady stream with a short retention: it levels
#     off once the retention is reached (SQLite reuses the freed pages).
#
#   apt-get install wrk      # once
#   bench/retention.sh       # DURATION=20 STEADY=120 by default
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20}
STEADY=${STEADY:-120}
command -v wrk >/dev/null || { echo "bench/retention.sh needs wrk: apt-get install wrk" >&2; exit 2; }
[ -f target/bench-store-1m/innohook.db ] || { echo "build the store first: cargo bench --bench query" >&2; exit 2; }
cargo build --release --locked --bin innohook 2>&1 | tail -1
BIN=$PWD/target/release/innohook
WORK=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 1 400); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
serve() {  # store-dir retain_events
  printf 'sinks = []\n[server]\nlisten = "127.0.0.1:18085"\n[store]\ndir = "%s"\nretain_events = "%s"\nretain_messages = "%s"\n[log]\nlevel = "warn"\n' "$1" "$2" "$2" > "$WORK/innohook.toml"
  taskset -c 0 "$BIN" --config "$WORK/innohook.toml" 2> "$WORK/log" & PID=$!
  wait_port 18085
}
p99() { taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" --latency -s bench/load.lua http://127.0.0.1:18085/webhook \
  | awk '$1 == "99%" { p99 = $2 } /^Requests\/sec/ { rate = $2 } END { printf "%d events/s, p99 %s\n", rate, p99 }'; }
events() { sqlite3 "$1/innohook.db" "SELECT count(*) FROM events" 2>/dev/null || echo "?"; }

echo "1. p99 with and without a million-event prune ($DURATION s of load each)"
for run in forever prune; do
  rm -rf "$WORK/store"; cp -r target/bench-store-1m "$WORK/store"; rm -f "$WORK/store/innohook.lock"
  sync; sleep 2
  retain=forever; [ "$run" = prune ] && retain=60s
  serve "$WORK/store" "$retain"
  printf '  %-8s events before %s; ' "$run" "$(events "$WORK/store")"
  p99
  printf '           events after: %s\n' "$(events "$WORK/store")"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
done

echo "2. size under a steady stream, retain_events = retain_messages = 20s ($STEADY s)"
rm -rf "$WORK/store"; serve "$WORK/store" 20s
taskset -c 1 wrk -t1 -c16 -d"${STEADY}s" -s bench/load.lua http://127.0.0.1:18085/webhook > /dev/null &
WRK=$!
for t in $(seq 10 10 "$STEADY"); do
  sleep 10
  size=$(du -cb "$WORK/store"/innohook.db* | awk 'END { printf "%.1f", $1 / 1048576 }')
  printf '  %4s s: %6s MiB, %s events\n' "$t" "$size" "$(events "$WORK/store")"
done
wait $WRK || true
