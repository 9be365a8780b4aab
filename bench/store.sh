#!/usr/bin/env bash
# The store alone: bench/programs/storeload.rs feeds parsed status events (shaped like
# bench/load.lua's) to the group commit from 64 tasks, without HTTP, pinned to core 0.
# Prints events/s and CPU microseconds per event for a few runs, then, if valgrind is
# installed, the instructions per event of each thread under callgrind. Time varies by
# ±20% between runs on this machine; the store writer's instruction count varied by 0.2%
# over four runs (batch sizes under valgrind still depend on thread scheduling), so two
# builds are best compared by it.
#
#   bench/store.sh                 # EVENTS=100000 RUNS=3 CG_EVENTS=20000 by default
#   STORE_DIR=/dev/shm bench/store.sh   # leave the disk (fsync) out
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-100000}
RUNS=${RUNS:-3}
CG_EVENTS=${CG_EVENTS:-20000}
[ "$CG_EVENTS" -gt 0 ] && [ "$EVENTS" -gt 0 ] || { echo "EVENTS and CG_EVENTS must be positive" >&2; exit 2; }
command -v taskset >/dev/null || { echo "bench/store.sh needs taskset (util-linux)" >&2; exit 2; }

cargo build -q --release --locked --example storeload
BIN=$PWD/target/release/examples/storeload
WORK=$(mktemp -d "${STORE_DIR:-${TMPDIR:-/tmp}}/innohook-storeload.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

sync; sleep 2
for run in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/store"
  printf 'run %s: ' "$run"
  taskset -c 0 "$BIN" "$WORK/store" "$EVENTS"
done

command -v valgrind >/dev/null || { echo "(valgrind not installed: no instruction counts)"; exit 0; }
rm -rf "$WORK/store"; mkdir -p "$WORK/cg"
taskset -c 0 valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$WORK/cg/out" \
  "$BIN" "$WORK/store" "$CG_EVENTS" > "$WORK/cg/log" 2>&1 \
  || { cat "$WORK/cg/log" >&2; exit 1; }
# One file per thread. Thread 1 builds and parses the events and opens the store before
# the clock starts; the store writer is the thread that ran writer::run.
echo "instructions per event under callgrind ($CG_EVENTS events), per thread:"
writers=0
for f in "$WORK"/cg/out-*; do
  total=$(awk '/^(summary|totals):/ { print $2; exit }' "$f")
  thread=$(awk '/^thread:/ { print $2; exit }' "$f")
  [ -n "$total" ] && [ -n "$thread" ] || { echo "unreadable callgrind output $f" >&2; exit 1; }
  if [ "$thread" = 1 ]; then role="main: builds and parses the events, opens the store"
  elif grep -q 'writer::run' "$f"; then role="store writer"; writers=$((writers + 1))
  elif grep -q 'spawn_checkpointer' "$f"; then role="checkpointer"
  else role="tokio worker: queues the writes"; fi
  printf '  thread %-3s %9s  %s\n' "$thread" $((total / CG_EVENTS)) "$role"
done
[ "$writers" = 1 ] || { echo "expected one store writer thread, found $writers" >&2; exit 1; }
