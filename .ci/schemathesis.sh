#!/usr/bin/env bash
# Schemathesis against the real server's own OpenAPI document (/api/openapi.json): every
# check, a fixed seed, a bounded number of examples, realistic ids fed in. Runs alone
# (`bash .ci/schemathesis.sh`) or from .ci/run; exits non-zero on any failure. Arguments
# go to `schemathesis run` (e.g. `--seed 7 --max-examples 200` to look harder).
#
# It makes a virtualenv (.ci/venv, git-ignored) with the pinned schemathesis, builds the
# debug server, starts it on 127.0.0.1 with a store in a temporary directory, an API token
# and the webhook's [auth], stores the quickstart's events, a reply, a template's status
# and a send list, then runs schemathesis with .ci/schemathesis/schemathesis.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
venv=.ci/venv
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

"${CARGO:-cargo}" build --locked --quiet
work=$(mktemp -d)
# A copy: another build may replace the one in target/ while this runs.
cp "${CARGO_TARGET_DIR:-target}/debug/innohook" "$work/innohook"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
token=schemathesis-token
# The webhook's Authorization is whatever InnoPaaS is told to send; here the same header
# as the API's, so that the one Authorization schemathesis sends opens both.
hook_user=acme
hook_auth="Bearer $token"

INNOHOOK_SERVER__LISTEN=127.0.0.1:$port INNOHOOK_STORE__DIR=$work/data \
  INNOHOOK_API__TOKEN=$token INNOHOOK_AUTH__USERNAME=$hook_user \
  INNOHOOK_AUTH__AUTHORIZATION=$hook_auth \
  "$work/innohook" >"$work/server.log" 2>&1 &
server=$!
stop() {
  kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT

started=
for _ in $(seq 1 300); do
  curl -fs "$base/healthz" >/dev/null && { started=1; break; }
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$started" ]; then
  cat "$work/server.log" >&2
  echo "schemathesis: the server did not answer /healthz on $base" >&2
  exit 1
fi

push() {  # file
  curl -fsS -H "UserName: $hook_user" -H "Authorization: $hook_auth" \
    -H 'Content-Type: application/json' --data-binary "@$1" "$base/webhook" >/dev/null
}
for f in examples/quickstart/*.json .ci/schemathesis/*.json; do push "$f"; done
curl -fsS -H "Authorization: Bearer $token" -H 'Content-Type: text/csv' \
  --data-binary @.ci/schemathesis/sends.csv "$base/api/sends" >/dev/null

status=0
"$venv/bin/schemathesis" --config-file .ci/schemathesis/schemathesis.toml --no-color run \
  "$base/api/openapi.json" \
  --checks all \
  -H "Authorization: Bearer $token" -H "UserName: $hook_user" \
  "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "schemathesis: failed; the server's log:" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit "$status"
