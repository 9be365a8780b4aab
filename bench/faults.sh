#!/usr/bin/env bash
# Fault check under load that `cargo test` cannot run everywhere: the disk fills up.
# The store sits on a small tmpfs (mounting one needs root); 32 connections post unique
# events; a filler file then takes every free byte, and is removed a few seconds later.
# bench/programs/faultload.rs checks that answers turn to 503 while the disk is full, come
# back to 200 by themselves afterwards, and that every event answered 200 is in the store.
#
#   sudo bench/faults.sh
#
# The other fault checks run in `cargo test` (tests/api): SIGKILL under load then
# restart (process.rs, sinks.rs), forward target down then up (sinks.rs), a full store
# via SQLite's max_page_count (http_receiver.rs), 10,000 hostile payloads and slow
# clients (faults.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/faults.sh mounts a tmpfs: run it as root" >&2; exit 2; }

cargo build --release --locked --bin innohook --example faultload 2>&1 | tail -1
WORK=$(mktemp -d)
MNT=$WORK/disk
mkdir -p "$MNT"
mount -t tmpfs -o size=256m innohook-faults "$MNT"
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; sleep 0.5; umount "$MNT" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
show_log() { echo "--- innohook log (last lines):"; tail -n 8 "$WORK/innohook.log"; }

cat > "$WORK/innohook.toml" <<TOML
sinks = []
[server]
listen = "127.0.0.1:18070"
[store]
dir = "$MNT/store"
[log]
level = "error"
[api]
token = "faults"
TOML
target/release/innohook --config "$WORK/innohook.toml" 2> "$WORK/innohook.log" & PID=$!
for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/18070) 2>/dev/null && break; sleep 0.05; done

target/release/examples/faultload http://127.0.0.1:18070/webhook faults \
  "dd if=/dev/zero of=$MNT/filler bs=1M 2>/dev/null || true; echo 'disk full:'; df -h $MNT | tail -1" \
  "rm $MNT/filler; echo 'disk freed'" || { show_log; exit 1; }
