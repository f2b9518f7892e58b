#!/usr/bin/env bash
# Fuzzes rje's API against its own OpenAPI document with schemathesis:
# every phase (examples, coverage, fuzzing, stateful), every check, with
# tokens on and a fixed seed. Starts its own `rje serve` on a free loopback
# port with a database of its own, and a Python venv with schemathesis from
# PyPI (reused between runs). Exits non-zero on any failure.
#
#   scripts/schemathesis.sh            # builds rje (debug) if needed
#   RJE_BIN=target/release/rje scripts/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${SCHEMATHESIS_VENV:-target/schemathesis-venv}"
EXAMPLES="${SCHEMATHESIS_EXAMPLES:-60}"
SEED="${SCHEMATHESIS_SEED:-20261129}"
RJE_BIN="${RJE_BIN:-${CARGO_TARGET_DIR:-target}/debug/rje}"
TOKEN="schemathesis-token"
# What the document says in prose only (the client's own keys of
# `parameters` hold any JSON but no NUL): bodies that break it are left out.
export SCHEMATHESIS_HOOKS="$PWD/scripts/schemathesis_hooks.py"
SCRIPTS="$PWD/scripts"

if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi
[ -x "$RJE_BIN" ] || cargo build --quiet --bin rje

WORK="$(mktemp -d)"
cleanup() {
  [ -n "${RJE_PID:-}" ] && kill "$RJE_PID" 2>/dev/null && wait "$RJE_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# A server of its own: a fresh database, no SSH hosts, short grace times,
# and a scratch directory to run in: the fuzzer's commands really run.
RJE_BIN="$(realpath "$RJE_BIN")"
(cd "$WORK" && exec env -u RJE_SSH_HOST -u EC2_HOST -u RJE_HOSTS_FILE -u RJE_REDIS_URL -u REDIS_URL \
  RJE_BIND=127.0.0.1:0 \
  RJE_DATABASE_URL="sqlite://$WORK/rje.db" \
  RJE_API_TOKENS="$TOKEN" \
  RJE_KILL_GRACE_SECONDS=1 \
  RUST_LOG=warn \
  "$RJE_BIN" serve > "$WORK/stdout" 2> "$WORK/stderr") &
RJE_PID=$!
for _ in $(seq 1 100); do
  grep -q '^rje listening on ' "$WORK/stdout" 2>/dev/null && break
  kill -0 "$RJE_PID" 2>/dev/null || { cat "$WORK/stderr"; exit 1; }
  sleep 0.1
done
BASE="$(sed -n 's/^rje listening on //p' "$WORK/stdout")"
[ -n "$BASE" ] || { echo "rje did not start"; cat "$WORK/stderr"; exit 1; }
echo "schemathesis against $BASE (seed $SEED, up to $EXAMPLES examples per operation)"

# From the scratch directory: schemathesis keeps a cache where it runs.
VENV="$(realpath "$VENV")"
cd "$WORK"
# The document as a token's holder reads it: the public one names no host,
# and the fuzzer must know which hosts a job may name.
"$VENV/bin/python" - "$BASE/openapi.json" "$TOKEN" > "$WORK/openapi.json" <<'PY'
import sys, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
sys.stdout.write(urllib.request.urlopen(request).read().decode())
PY
"$VENV/bin/schemathesis" --config-file "$SCRIPTS/schemathesis.toml" run "$WORK/openapi.json" \
  --url "$BASE" \
  --header "Authorization: Bearer $TOKEN" \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$EXAMPLES" \
  --seed "$SEED" \
  --workers 1 \
  --report junit --report-dir "$WORK/report" \
  "$@"
