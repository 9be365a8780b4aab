#!/usr/bin/env bash
# Network partitions between innohook replicas, their PostgreSQL and a forward sink's
# target, with network namespaces (needs root, iproute2 and nftables). What is checked is
# what docs/design.md ("Partitions") promises; the run and its result are in
# docs/testing.md.
#
#   sudo bench/partition.sh                      # builds target/release/innohook
#   sudo BIN=path/to/innohook bench/partition.sh
#
# Namespaces ihp-pg (PostgreSQL at 10.77.10.2), ihp-tgt (the target at 10.77.20.2) and
# ihp-r1..3 (replica K at 10.77.K.2), each joined to this one by a veth pair; this
# namespace routes between them, and its nftables table `inet ihp` drops what a
# partition cuts (sets cut_pg, cut_tgt, isolated), both ways: packets vanish, nothing is
# refused. The driver (bench/programs/partition_driver.py) posts from here to all three
# replicas without pause; the target (partition_target.py) records every request and
# refuses a lease token lower than one it has seen. The run, each cut longer than the
# lease (LEASE_SECS, 4; CUT_SECS, 2.5 leases):
#   1. the replica holding the sink cut off from PostgreSQL, healed;
#   2. the same for the replica holding it then (another one), while it retries a
#      delivery (the target answers 503 from a second before the cut to a second after
#      the lease ran out);
#   3. the holder cut off from the target only;
#   4. the holder isolated entirely (PostgreSQL, target and senders) with pushes in
#      flight.
# Then the driver stops, every push answered 200 must reach the target, and
# bench/programs/partition_check.py checks the records. KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/partition.sh creates network namespaces: run it as root" >&2; exit 2; }
for tool in ip nft python3 curl; do
  command -v $tool >/dev/null || { echo "needs $tool (nft: apt-get install nftables)" >&2; exit 2; }
done
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
[ -x "$PGBIN/initdb" ] || { echo "no PostgreSQL in $PGBIN (set PGBIN)" >&2; exit 2; }
LEASE=${LEASE_SECS:-4}
CUT=${CUT_SECS:-$((LEASE * 5 / 2))}
BIN=${BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release --locked --bin innohook 2>&1 | tail -1
  BIN=target/release/innohook
fi
BIN=$(realpath "$BIN")
PROGRAMS=$(realpath bench/programs)

WORK=$(mktemp -d /tmp/innohook-partition.XXXXXX)
chmod 755 "$WORK"
PIDS=()
FORWARD_WAS=$(sysctl -n net.ipv4.ip_forward)
cleanup() {
  set +e
  touch "$WORK/stop"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 1
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
  [ -d "$WORK/pg/data" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m fast -w stop >/dev/null 2>&1
  nft delete table inet ihp 2>/dev/null
  for ns in pg tgt r1 r2 r3; do ip netns del ihp-$ns 2>/dev/null; done
  sysctl -qw net.ipv4.ip_forward="$FORWARD_WAS"
  if [ "${KEEP:-0}" = 1 ]; then echo "records kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
say() { printf '%(%H:%M:%S)T %s\n' -1 "$*"; }
now() { date +%s.%N; }

# The network.
sysctl -qw net.ipv4.ip_forward=1
join() {  # namespace, subnet number
  ip netns add "ihp-$1"
  ip link add "ihp-v$2" type veth peer name eth0 netns "ihp-$1"
  ip addr add "10.77.$2.1/24" dev "ihp-v$2"
  ip link set "ihp-v$2" up
  ip -n "ihp-$1" addr add "10.77.$2.2/24" dev eth0
  ip -n "ihp-$1" link set eth0 up
  ip -n "ihp-$1" link set lo up
  ip -n "ihp-$1" route add default via "10.77.$2.1"
}
join pg 10; join tgt 20; join r1 1; join r2 2; join r3 3
PG=10.77.10.2 TGT=10.77.20.2
nft -f - <<NFT
table inet ihp {
  set cut_pg { type ipv4_addr; }
  set cut_tgt { type ipv4_addr; }
  set isolated { type ipv4_addr; }
  chain forward {
    type filter hook forward priority -10; policy accept;
    ip saddr @cut_pg ip daddr $PG drop
    ip saddr $PG ip daddr @cut_pg drop
    ip saddr @cut_tgt ip daddr $TGT drop
    ip saddr $TGT ip daddr @cut_tgt drop
    ip saddr @isolated drop
    ip daddr @isolated drop
  }
  chain input { type filter hook input priority -10; policy accept; ip saddr @isolated drop; }
  chain output { type filter hook output priority -10; policy accept; ip daddr @isolated drop; }
}
NFT

# PostgreSQL, of its own, in its namespace.
mkdir -p "$WORK/pg" && chown postgres "$WORK/pg"
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres -A trust --no-sync >/dev/null
echo "host all all 10.77.0.0/16 trust" >> "$WORK/pg/data/pg_hba.conf"
ip netns exec ihp-pg runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w \
  -o "-c listen_addresses=$PG -p 5432 -k $WORK/pg -c fsync=off" start >/dev/null
psql() { "$PGBIN/psql" -h $PG -U postgres -d postgres -Atq "$@"; }

# The target.
ip netns exec ihp-tgt python3 "$PROGRAMS/partition_target.py" $TGT 8080 "$WORK/target.jsonl" "$WORK/refuse" \
  2> "$WORK/target.log" &
PIDS+=($!)

# The replicas.
declare -A REPLICA_OF
for k in 1 2 3; do
  cat > "$WORK/r$k.toml" <<TOML
[server]
listen = "10.77.$k.2:8080"
[store]
backend = "postgres"
url = "postgres://postgres@$PG:5432/postgres?sslmode=disable"
lease_secs = $LEASE
[log]
format = "json"
level = "info"
[[sinks]]
type = "forward"
name = "crm"
url = "http://$TGT:8080/in"
timeout_secs = 2
backoff_initial_ms = 100
backoff_max_ms = 1000
TOML
  ip netns exec "ihp-r$k" "$BIN" --config "$WORK/r$k.toml" 2> "$WORK/r$k.log" &
  PIDS+=($!)
  REPLICA_OF[$!]=$k
done
ready() { curl -s -o /dev/null -m 2 -w '%{http_code}' "http://10.77.$1.2:8080/readyz" | grep -q 200; }
wait_until() {  # seconds, what, command...
  local deadline=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@"; do
    [ "$(date +%s)" -lt $deadline ] || { say "timed out waiting for $what"; return 1; }
    sleep 0.2
  done
}
all_ready() { ready 1 && ready 2 && ready 3; }
wait_until 30 "the replicas" all_ready || exit 1
holder() {  # the replica whose process holds the sink's lease
  local h pid
  h=$(psql -c "SELECT holder FROM leases WHERE name = 'sink:crm' AND expires_at > now()")
  pid=$(echo "$h" | awk -F- '{print $(NF-1)}')
  echo "${REPLICA_OF[$pid]:-0}"
}
has_holder() { [ "$(holder)" != 0 ]; }
wait_until 30 "a replica to hold the sink" has_holder || exit 1

python3 "$PROGRAMS/partition_driver.py" "$WORK/driver.jsonl" "$WORK/stop" 12 \
  http://10.77.1.2:8080/webhook http://10.77.2.2:8080/webhook http://10.77.3.2:8080/webhook &
DRIVER=$!
PIDS+=($DRIVER)
arrived() { [ -f "$WORK/target.jsonl" ] && [ "$(wc -l < "$WORK/target.jsonl")" -ge "$1" ]; }
wait_until 30 "events at the target" arrived 500 || exit 1
say "running: lease ${LEASE} s, each cut ${CUT} s"

partition() {  # name, kind (pg, target, isolated), "retrying" (the target answers 503 from
  # a second before the cut until a second after the lease ran out: the holder is
  # retrying a delivery when it is cut off)
  local name=$1 kind=$2 retrying=${3:-} r cut healed set
  r=$(holder)
  [ "$r" != 0 ] || { say "no replica holds the sink"; exit 1; }
  case $kind in pg) set=cut_pg ;; target) set=cut_tgt ;; isolated) set=isolated ;; esac
  local before; before=$(wc -l < "$WORK/target.jsonl")
  if [ -n "$retrying" ]; then
    touch "$WORK/refuse"; sleep 1
    ( sleep $((LEASE + 1)); rm -f "$WORK/refuse" ) &
  fi
  cut=$(now); nft add element inet ihp $set "{ 10.77.$r.2 }"
  say "$name: replica $r (holds the sink) cut off ($kind)${retrying:+, retrying a delivery}"
  sleep "$CUT"
  nft delete element inet ihp $set "{ 10.77.$r.2 }"; healed=$(now)
  say "$name: healed"
  echo "$name $kind $r $cut $healed" >> "$WORK/timeline.txt"
  wait_until 60 "every replica ready again" all_ready || exit 1
  wait_until 60 "deliveries going on" arrived $((before + 500)) || exit 1
}
partition pg-1 pg
partition pg-2 pg retrying
partition target-only target
partition isolated isolated

touch "$WORK/stop"
wait $DRIVER
say "driver stopped; waiting for every acknowledged event at the target"
at_target() { python3 "$PROGRAMS/partition_check.py" "$WORK" --wait >/dev/null; }
wait_until 120 "every acknowledged event at the target" at_target || true
# Their clean stop records what the sink delivered: wait for each to exit.
for pid in "${!REPLICA_OF[@]}"; do kill "$pid"; done
for pid in "${!REPLICA_OF[@]}"; do wait "$pid" 2>/dev/null || true; done
psql -c "COPY (SELECT seq, message_id, status FROM events ORDER BY seq) TO STDOUT WITH CSV" > "$WORK/events.csv"
psql -c "SELECT count(*) FROM dead_letters" > "$WORK/dead_letters.txt"
for k in 1 2 3; do
  echo "replica $k: $(grep -c 'could not be renewed in time' "$WORK/r$k.log" || true) leases given up unrenewed," \
    "$(grep -c 'Sink started' "$WORK/r$k.log" || true) sink starts"
done
echo
python3 "$PROGRAMS/partition_check.py" "$WORK"
