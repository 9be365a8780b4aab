#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of the parser and the tracking rule:
# fuzz/fuzz_targets/parse.rs takes any bytes as a webhook body; tracking.rs builds a
# message's status events from the bytes and checks that every order ends the same and
# that the batch counters add up to that one message. The parser starts from every
# example payload of the documentation (fuzz/seeds/parse). A crash is saved under
# fuzz/artifacts/TARGET/ and makes the script exit 1; turn it into a regression test.
#
#   cargo install cargo-fuzz --locked     # once
#   bench/fuzz.sh                         # MINUTES=10 per target; TARGETS="parse tracking"; JOBS=1
#
# cargo fuzz needs nightly-only compiler flags; on a stable toolchain RUSTC_BOOTSTRAP=1
# lets it use them. No sanitizer by default (the code is safe Rust; SANITIZER=address to
# add one).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
MINUTES=${MINUTES:-10}
TARGETS=${TARGETS:-"parse tracking"}
JOBS=${JOBS:-1}
SANITIZER=${SANITIZER:-none}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || { echo "bench/fuzz.sh needs cargo-fuzz: cargo install cargo-fuzz --locked" >&2; exit 2; }
for target in $TARGETS; do
  cargo fuzz build --release --sanitizer "$SANITIZER" "$target" 2>&1 | tail -1
done
# More than one job: libFuzzer's fork mode, its output in fuzz-N.log files.
parallel=(); [ "$JOBS" -gt 1 ] && parallel=(-fork="$JOBS")
status=0
for target in $TARGETS; do
  mkdir -p "corpus/$target"
  seeds=(); [ -d "seeds/$target" ] && seeds=("seeds/$target")
  echo "== $target, $MINUTES min, $JOBS job(s)"
  if ! cargo fuzz run --release --sanitizer "$SANITIZER" "$target" "corpus/$target" "${seeds[@]}" -- \
      -max_total_time=$((MINUTES * 60)) "${parallel[@]}" -max_len=8192 \
      -print_final_stats=1 2>&1 | grep -E '^(#[0-9]+.*(DONE|pulse)|stat::|==|SUMMARY|thread .* panicked|Failing input|Test unit written)'; then
    :
  fi
  if ls "artifacts/$target"/crash-* >/dev/null 2>&1; then
    echo "!! $target: crashes in fuzz/artifacts/$target" >&2; status=1
  fi
  echo "corpus: $(ls "corpus/$target" | wc -l) inputs"
done
exit $status
