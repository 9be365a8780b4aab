#!/usr/bin/env bash
# A send list of 100,000 rows imported while the webhook is under load: how long the
# import takes, and the webhook's p99 during it against the same load without it.
# Both ways in are measured: one POST /api/sends of the whole list (CSV, about 8 MB), and
# `innohook sends import FILE` beside the running server. The server is pinned to core 0,
# wrk (16 keep-alive connections, bench/load.lua) and the import to core 1.
#
#   apt-get install wrk      # once
#   bench/sends.sh           # ROWS=100000 DURATION=15 ROUNDS=2 by default; BIN=… to skip the build
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-100000}
DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-2}
command -v wrk >/dev/null || { echo "bench/sends.sh needs wrk: apt-get install wrk" >&2; exit 2; }
# BIN=/path/to/innohook measures that binary instead of building this tree.
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked --bin innohook 2>&1 | tail -1
  BIN=$PWD/target/release/innohook
fi
WORK=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 1 400); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
printf 'sinks = []\n[server]\nlisten = "127.0.0.1:18086"\n[store]\ndir = "%s/store"\n[api]\ntoken = "bench"\n[log]\nlevel = "warn"\n' "$WORK" > "$WORK/innohook.toml"
list() {  # file, id prefix: ROWS sends of one batch
  awk -v n="$ROWS" -v p="$2" 'BEGIN { print "id,phone,uid,sentAt,template";
    for (i = 0; i < n; i++) printf "%s%07d,65%08d,bench-%s,2026-03-01T08:%02d:%02dZ,promo\n", p, i, i, p, (i / 60) % 60, i % 60 }' > "$1"
}
p99() { taskset -c 1 wrk -t1 -c16 -d"${DURATION}s" --latency -s bench/load.lua http://127.0.0.1:18086/webhook \
  | awk '$1 == "99%" { p99 = $2 } /^Requests\/sec/ { rate = $2 } END { printf "%d events/s, p99 %s", rate, p99 }'; }
import() {  # how, file
  local start end
  start=$(date +%s.%N)
  case $1 in
    api) curl -sf -H 'Authorization: Bearer bench' -H 'Content-Type: text/csv' --data-binary @"$2" \
           http://127.0.0.1:18086/api/sends > "$WORK/answer" ;;
    cli) taskset -c 1 "$BIN" --config "$WORK/innohook.toml" sends import "$2" > "$WORK/answer" ;;
  esac
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }'
}

taskset -c 0 "$BIN" --config "$WORK/innohook.toml" 2> "$WORK/log" & PID=$!
wait_port 18086
echo "$ROWS rows per list; $DURATION s of webhook load per line"
for round in $(seq 1 "$ROUNDS"); do
  printf '  round %s, no import:    %s\n' "$round" "$(p99)"
  for how in api cli; do
    list "$WORK/list.csv" "$how$round-"
    p99 > "$WORK/p99" & LOAD=$!
    sleep 2
    took=$(import "$how" "$WORK/list.csv")
    wait $LOAD
    printf '  round %s, import by %s: %s; the import took %s s: %s\n' "$round" "$how" "$(cat "$WORK/p99")" "$took" "$(cat "$WORK/answer")"
  done
done
