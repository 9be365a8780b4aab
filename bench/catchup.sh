#!/usr/bin/env bash
# How fast each broker sink drains a backlog: EVENTS status events (100,000 by default)
# stored with no sink, then innohook started again with the sink (start = "beginning"),
# timed until the target holds them all. The brokers are the machine's (NATS_URL,
# AMQP_URL, REDIS_URL; the defaults are the local servers); a stream, an exchange with a
# queue, and a stream key of its own each, removed after.
#
#   bench/catchup.sh                  # EVENTS=100000 SINKS="nats rabbitmq redis"
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-100000}
SINKS=${SINKS:-"nats rabbitmq redis"}
cargo build --release --locked --bin innohook --example catchup 2>&1 | tail -1
sync; sleep 2
target/release/examples/catchup "$PWD/target/release/innohook" "$EVENTS" $SINKS
