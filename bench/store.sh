#!/usr/bin/env bash
# The store alone: examples/storeload.rs feeds parsed status events (shaped like
# bench/load.lua's) to the group commit from 64 tasks, without HTTP, pinned to core 0.
# Prints events/s and CPU microseconds per event for a few runs, then, if valgrind is
# installed, the instructions per event of the store writer thread and of the tasks that
# queue the writes: a count that repeats from run to run, unlike time on this machine, so
# two builds can be compared by it.
#
#   bench/store.sh                 # EVENTS=100000 RUNS=3 CG_EVENTS=20000 by default
#   STORE_DIR=/dev/shm bench/store.sh   # leave the disk (fsync) out
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-100000}
RUNS=${RUNS:-3}
CG_EVENTS=${CG_EVENTS:-20000}
command -v taskset >/dev/null || { echo "bench/store.sh needs taskset (util-linux)" >&2; exit 2; }

cargo build --release --locked --example storeload 2>&1 | tail -1
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
valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$WORK/cg/out" \
  "$BIN" "$WORK/store" "$CG_EVENTS" > "$WORK/cg/log" 2>&1
# One file per thread: the store writer is the one running writer::run; the main thread
# only builds and parses the events before the clock starts, so it is left out.
writer=0; tasks=0
for f in "$WORK"/cg/out-*; do
  total=$(awk '/^(summary|totals):/ { print $2; exit }' "$f")
  if grep -q 'writer::run' "$f"; then writer=$((writer + total))
  elif grep -q '^thread: 1$' "$f"; then :
  else tasks=$((tasks + total)); fi
done
printf 'instructions per event (callgrind, %s events): store writer %s, queueing tasks and checkpointer %s\n' \
  "$CG_EVENTS" $((writer / CG_EVENTS)) $((tasks / CG_EVENTS))
