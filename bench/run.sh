#!/usr/bin/env bash
# Load benchmark: innohook against a bare axum server (bench/programs/baseline.rs, the ceiling
# of the HTTP stack here), driven by the same wrk script (bench/load.lua): 64 keep-alive
# connections, every request a unique status event. The server is pinned to core 0 and
# wrk to core 1; baseline and innohook runs alternate so drift cancels out.
#
#   apt-get install wrk        # once
#   bench/run.sh               # DURATION=10 ROUNDS=2 by default
#
# Profiles: a = store only; b = store + file sink (fsync) + log sink at warn;
#           c = store + forward sink to a local axum target;
#           p = store only, on PostgreSQL (PGURL, default the local server on 5432; a
#           database of its own per run, synchronous_commit as the server has it). Its
#           "pg CPU" line is the CPU of every postgres process per event.
# References (not innohook; bench/programs/reference.rs, a straightforward receiver),
# to show what the store alone costs here: rs = typed parse + one SQLite row
# per event (group commit, synchronous = FULL); rl = typed parse + bodies appended to a
# file, one fdatasync per batch. Neither waits for fuller batches (innohook waits 250 µs
# below 48 writes), so their batches are smaller. E.g. PROFILES="a rs rl" bench/run.sh
# "CPU us/ev" is the server's CPU time per request (all threads, from /proc/PID/stat);
# "kernel" is the part of it spent in the kernel (loopback TCP, writes, fsync).
# COMPARE=/path/to/another/innohook runs that binary too, right after this build in every
# round of profiles a, b and c (labelled "compare"; the two take turns going first), to weigh a change against the build
# before it: e.g. `git worktree add /tmp/before HEAD~1 && (cd /tmp/before && cargo build
# --release) && COMPARE=/tmp/before/target/release/innohook PROFILES="a b" bench/run.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
PROFILES=${PROFILES:-"a b c"}
for profile in $PROFILES; do
  case $profile in a|b|c|p|rs|rl) ;; *) echo "unknown profile $profile (a b c p rs rl)" >&2; exit 2 ;; esac
done
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
CONNS=64
command -v wrk >/dev/null || { echo "bench/run.sh needs wrk: apt-get install wrk" >&2; exit 2; }
command -v taskset >/dev/null || { echo "bench/run.sh needs taskset (util-linux)" >&2; exit 2; }

cargo build --release --locked --bin innohook --example baseline --example reference 2>&1 | tail -1
COMPARE=${COMPARE:-}
[ -z "$COMPARE" ] || [ -x "$COMPARE" ] || { echo "COMPARE=$COMPARE is not an executable" >&2; exit 2; }
# Let the build's writeback finish: it slows every fsync for a while.
sync; sleep 5
BIN=$PWD/target/release/innohook
BASE=$PWD/target/release/examples/baseline
REF=$PWD/target/release/examples/reference
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 1 200); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

# Latency from wrk ("850.00us", "1.23ms", "1.01s") in milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'; }

# CPU time of process $1 so far (all threads), in clock ticks: user + system, or with
# $2 = sys the system (kernel) part alone.
cpu_ticks() { awk -v part="${2:-all}" '{ print (part == "sys" ? $15 : $14 + $15) }' "/proc/$1/stat"; }
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))

# The CPU microseconds process $1 spent per request since it had $2 ticks, over the $3
# requests of the last drive (steadier than events/s on a noisy machine); $4 = sys counts
# the kernel's part alone ($2 then from `cpu_ticks PID sys`).
cpu_per_request() {
  [ -r "/proc/$1/stat" ] && [ "$3" -gt 0 ] || { echo "-"; return; }
  awk -v t=$(( ($(cpu_ticks "$1" "${4:-all}") - $2) * TICK_US )) -v n="$3" 'BEGIN { printf "%.1f", t / n }'
}

# wrk against $1; sets RPS P50 P99 BAD, and N (requests made).
drive() {
  local out="$WORK/wrk.out"
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s bench/load.lua "$1" > "$out"
  RPS=$(awk '/^Requests\/sec/ { printf "%d", $2 }' "$out")
  N=$(awk '/ requests in / { print $1 }' "$out"); N=${N:-0}
  P50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
  P99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
  BAD=$(awk '/Non-2xx/ { print $NF }' "$out"); BAD=${BAD:-0}
  local errs; errs=$(awk '/Socket errors/' "$out")
  [ -z "$errs" ] || echo "    wrk: $errs" >&2
}

rss_mib() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# Sum of innohook_sink_pending_events on the metrics endpoint.
pending() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^innohook_sink_pending_events/ { s += $NF } END { print s + 0 }'; }

# CPU ticks of every postgres process so far.
pg_ticks() { cat /proc/[0-9]*/stat 2>/dev/null | awk '$2 == "(postgres)" { s += $14 + $15 } END { print s + 0 }'; }

config() {  # profile store-dir port
  local dir=$2
  case $1 in a|p) echo 'sinks = []' ;; esac   # top-level keys come before the first [table]
  printf '[server]\nlisten = "127.0.0.1:%s"\n[store]\ndir = "%s/store"\n' "$3" "$dir"
  [ "$1" = p ] && printf 'backend = "postgres"\nurl = "%s"\n' "$(pg_db_url "$dir")"
  printf '[log]\nlevel = "warn"\n'
  case $1 in
    a|p) ;;
    b) printf '[[sinks]]\ntype = "file"\npath = "%s/events.jsonl"\nfsync = "always"\n[[sinks]]\ntype = "log"\nlevel = "warn"\n' "$dir" ;;
    c) printf '[[sinks]]\ntype = "forward"\nurl = "http://127.0.0.1:18090/webhook"\nconcurrency = 16\n' ;;
  esac
}

# A database of its own for a run in $1 (named after the directory).
pg_db_name() { echo "innohook_bench_$(basename "$1" | tr -c 'a-z0-9\n' '_')"; }
pg_db_url() { echo "$PGURL" | sed -E "s#(://[^/]*/)[^?]*#\1$(pg_db_name "$1")#"; }

# One row of the table: every column but the last (sinks drained) has a fixed width.
ROW='%-9s %-10s %10s %8s %8s %9s %10s %7s %7s %s\n'
printf "$ROW" profile server "events/s" "p50 ms" "p99 ms" "RSS MiB" "CPU us/ev" kernel ratio "sinks drained"
declare -A SUM_RATIO SUM_P99R MAX_RSS DRAIN_OK SUM_CPUR
for round in $(seq 1 "$ROUNDS"); do
  for profile in $PROFILES; do
    # A: baseline.
    taskset -c 0 "$BASE" 127.0.0.1:18081 & PIDS+=($!); bpid=$!
    wait_port 18081
    c0=$(cpu_ticks $bpid); k0=$(cpu_ticks $bpid sys)
    drive http://127.0.0.1:18081/webhook
    CPU=$(cpu_per_request $bpid "$c0" "$N"); KERNEL=$(cpu_per_request $bpid "$k0" "$N" sys)
    base_rps=$RPS; base_p99=$P99; base_cpu=$CPU
    printf "$ROW" "$profile" baseline "$RPS" "$P50" "$P99" "$(rss_mib $bpid)" "$CPU" "$KERNEL" 1.00 ""
    kill $bpid; wait $bpid 2>/dev/null || true

    # B: innohook (and the COMPARE build), or a reference receiver (fresh store each run).
    servers=innohook
    case $profile in
      rs) servers=ref-sqlite ;;
      rl) servers=ref-log ;;
      # Alternate which goes first: the run after another leaves writeback behind it.
      *) [ -z "$COMPARE" ] || servers=$([ $((round % 2)) = 1 ] && echo "innohook compare" || echo "compare innohook") ;;
    esac
    for server in $servers; do
    dir="$WORK/$profile-$round-$server"; mkdir -p "$dir"
    sync
    case $server in
      ref-sqlite) taskset -c 0 "$REF" 127.0.0.1:18080 "$dir" sqlite & ;;
      ref-log) taskset -c 0 "$REF" 127.0.0.1:18080 "$dir" log & ;;
      innohook|compare)
        bin=$BIN; [ "$server" = compare ] && bin=$COMPARE
        config "$profile" "$dir" 18080 > "$dir/innohook.toml"
        [ "$profile" = p ] && psql "$PGURL" -qc "CREATE DATABASE $(pg_db_name "$dir")"
        if [ "$profile" = c ]; then taskset -c 1 "$BASE" 127.0.0.1:18090 & PIDS+=($!); tpid=$!; wait_port 18090; fi
        taskset -c 0 "$bin" --config "$dir/innohook.toml" 2> "$dir/innohook.log" & ;;
    esac
    PIDS+=($!); ipid=$!
    wait_port 18080
    c0=$(cpu_ticks $ipid); k0=$(cpu_ticks $ipid sys); p0=$(pg_ticks)
    drive http://127.0.0.1:18080/webhook
    [ "$BAD" = 0 ] || echo "    $server answered $BAD non-2xx" >&2
    if [ "$profile" = p ]; then
      printf '    pg CPU: %s us/ev (every postgres process)\n' \
        "$(awk -v t=$(( ($(pg_ticks) - p0) * TICK_US )) -v n="$N" 'BEGIN { printf "%.1f", (n > 0 ? t / n : 0) }')"
    fi
    start=$(date +%s%N); drained=no
    while [ $(( ($(date +%s%N) - start) / 1000000 )) -lt 2000 ]; do
      case $server in innohook|compare) ;; *) drained="(no sinks)"; break ;; esac
      if [ "$(pending 18080)" = 0 ]; then drained="$(( ($(date +%s%N) - start) / 1000000 )) ms"; break; fi
      sleep 0.05
    done
    # The sinks' work after the load counts too.
    CPU=$(cpu_per_request $ipid "$c0" "$N"); KERNEL=$(cpu_per_request $ipid "$k0" "$N" sys)
    rss=$(rss_mib $ipid)
    ratio=$(awk -v a="$RPS" -v b="$base_rps" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    p99r=$(awk -v a="$P99" -v b="$base_p99" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }')
    printf "$ROW" "$profile" "$server" "$RPS" "$P50" "$P99" "$rss" "$CPU" "$KERNEL" "$ratio" "$drained"
    if [ "$server" != compare ]; then
      SUM_CPUR[$profile]=$(awk -v s="${SUM_CPUR[$profile]:-0}" -v a="$base_cpu" -v b="$CPU" 'BEGIN { print s + (a + 0 > 0 && b + 0 > 0 ? a / b : 0) }')
      SUM_RATIO[$profile]=$(awk -v s="${SUM_RATIO[$profile]:-0}" -v r="$ratio" 'BEGIN { print s + r }')
      SUM_P99R[$profile]=$(awk -v s="${SUM_P99R[$profile]:-0}" -v r="$p99r" 'BEGIN { print (r > s ? r : s) }')
      MAX_RSS[$profile]=$(awk -v s="${MAX_RSS[$profile]:-0}" -v r="$rss" 'BEGIN { print (r > s ? r : s) }')
      [ "$drained" = no ] && DRAIN_OK[$profile]=no
    fi
    kill -TERM $ipid; wait $ipid 2>/dev/null || true
    if [ "$profile" = c ]; then kill $tpid; wait $tpid 2>/dev/null || true; fi
    [ "$profile" = p ] && psql "$PGURL" -qc "DROP DATABASE $(pg_db_name "$dir") WITH (FORCE)"
    done
  done
done

echo
echo "Summary (ratio = the server's events/s / the baseline's in the same run, mean of rounds;"
echo "CPU ratio = the baseline's CPU per request / the server's CPU per event, sinks' catch-up"
echo "included, which tracks the events/s ratio with less noise; the COMPARE build is not summed):"
for profile in $PROFILES; do
  mean=$(awk -v s="${SUM_RATIO[$profile]}" -v n="$ROUNDS" 'BEGIN { printf "%.2f", s / n }')
  cpur=$(awk -v s="${SUM_CPUR[$profile]}" -v n="$ROUNDS" 'BEGIN { printf "%.2f", s / n }')
  case $profile in
    rs|rl) printf '  %s: reference receiver, ratio %s, CPU ratio %s\n' "$profile" "$mean" "$cpur" ;;
    *) printf '  %s: ratio %s, CPU ratio %s, worst p99 %sx baseline, peak RSS %s MiB, sinks drained within 2 s: %s\n' \
         "$profile" "$mean" "$cpur" "${SUM_P99R[$profile]}" "${MAX_RSS[$profile]}" "${DRAIN_OK[$profile]:-ok}" ;;
  esac
done
