#!/usr/bin/env bash
# Mutation testing with cargo-mutants, scoped to the modules where a bug breaks a promise
# the README makes: the SQLite store's writer and tracking, the message tracking rules,
# the parser's reject rules, the file sink's recovery, the forward sink's classification
# of answers, and authentication. A mutant that survives is a change to the code that
# no test notices; docs/testing.md records the score and every survivor judged harmless.
#
# Not in CI: about three hours on 2 cores for all groups (15-40 s a mutant: a build of
# about 10 s and the group's tests). Each build takes the shared build lock by itself
# ($LOCK, default /tmp/innohook-cargo.lock), so other builds interleave with the run
# instead of waiting for all of it, and a mutant's tests run without it. PostgreSQL tests
# are left out (INNOHOOK_TEST_POSTGRES_URL is unset).
#
#   cargo install cargo-mutants --locked   # once (v27)
#   bench/mutants.sh                       # every group
#   bench/mutants.sh sinks auth            # some of them: store tracking sinks auth
#   MUTANTS_ARGS=--iterate bench/mutants.sh auth   # again, only what was not caught
#   TIMEOUT=600 bench/mutants.sh store             # a mutant's tests time out after 300 s
#
# By default each group builds in a copy of the tree, dependencies included (minutes per
# group). In a checkout of its own that nobody edits meanwhile, mutate it in place, so
# that the dependencies are built once for every group:
#   git worktree add /tmp/mut HEAD
#   cd /tmp/mut && IN_PLACE=1 bench/mutants.sh
# Groups in checkouts of their own run at once (docs/testing.md shows three): their
# builds take turns under the lock, and one's tests run while another builds.
# Keep its target directory its own: cargo names a crate's artifacts alike in two
# checkouts, so a build in another checkout sharing it between a mutant's build and its
# tests would have the tests run unmutated code (and count the mutant as missed).
#
# Results: target/mutants/GROUP/mutants.out/{caught,missed,timeout,unviable}.txt, and a
# summary line per group at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || { echo "needs cargo-mutants: cargo install cargo-mutants --locked" >&2; exit 2; }
LOCK=${LOCK:-/tmp/innohook-cargo.lock}
GROUPS_WANTED=${*:-"store tracking sinks auth"}

# cargo-mutants runs the cargo named by $CARGO: this one takes the lock for each build
# (cargo test --no-run, the build phase) and runs the tests of a built mutant without
# it, so that two runs in checkouts of their own (LOCK shared) build one at a time while
# one's tests overlap the other's build.
WRAP=$(mktemp -d)
trap 'rm -rf "$WRAP"' EXIT
cat > "$WRAP/cargo" <<EOF
#!/bin/sh
case " \$* " in
  *" --no-run "*) exec flock "$LOCK" "$(command -v cargo)" "\$@" ;;
  " test "*) exec "$(command -v cargo)" "\$@" ;;
  *) exec flock "$LOCK" "$(command -v cargo)" "\$@" ;;
esac
EOF
chmod +x "$WRAP/cargo"

# In place (one at a time by nature), or in copies, one at a time for the shared lock.
where=(--jobs 1)
[ -z "${IN_PLACE:-}" ] || where=(--in-place)

# group NAME "FILES" TEST-FILTERS...: mutate FILES, run the tests whose names contain
# one of the filters (all of them when none is given).
group() {
  local name=$1 files=$2
  shift 2
  local args=()
  for f in $files; do args+=(-f "$f"); done
  [ $# -eq 0 ] || args+=(-- -- "$@")
  echo "== $name: $files (tests: ${*:-all})"
  mkdir -p "target/mutants/$name"
  # Exit code 2 means survivors, 3 timeouts: both are results, not failures of the run.
  env -u INNOHOOK_TEST_POSTGRES_URL CARGO="$WRAP/cargo" cargo-mutants mutants \
    "${where[@]}" ${MUTANTS_ARGS:-} -C --locked -C --tests --timeout "${TIMEOUT:-300}" --build-timeout 1800 --no-shuffle \
    -o "target/mutants/$name" "${args[@]}" || { rc=$?; [ $rc -eq 2 ] || [ $rc -eq 3 ]; }
}

for g in $GROUPS_WANTED; do
  case $g in
    store) group store "src/store/sqlite/writer.rs src/store/sqlite/tracking.rs" \
      store:: store_contract:: tracking:: process:: http_receiver:: retention:: sinks:: ;;
    tracking) group tracking "src/event/tracking.rs src/event/parse.rs" \
      event:: event_props:: event_rules:: event_seeds:: tracking:: store_contract:: \
      validate_cli:: http_receiver:: ;;
    sinks) group sinks "src/sink/file.rs src/sink/forward.rs" sink:: sinks:: check_config ;;
    auth) group auth "src/http/auth.rs" http_receiver:: ops:: process:: first_hour:: ;;
    *) echo "unknown group $g (store tracking sinks auth)" >&2; exit 2 ;;
  esac
done

echo "== summary (caught / missed / timeout / unviable)"
for g in $GROUPS_WANTED; do
  out=target/mutants/$g/mutants.out
  count() { [ -f "$out/$1.txt" ] && wc -l < "$out/$1.txt" || echo 0; }
  echo "$g: $(count caught) / $(count missed) / $(count timeout) / $(count unviable)"
  [ ! -s "$out/missed.txt" ] || sed 's/^/  missed: /' "$out/missed.txt"
done
