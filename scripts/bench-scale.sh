#!/usr/bin/env bash
# The scale runs of `rje bench` (docs/BENCHMARKS.md, "Scale"), each on a
# fresh release `rje serve` of its own, with its RSS read from /proc:
#
#   scripts/bench-scale.sh sqlite sleepers      # 1,000 `sleep 30` at once
#   scripts/bench-scale.sh sqlite subscribers   # 1,000 WebSockets, 100,000 lines
#   scripts/bench-scale.sh postgres priority    # High behind 10,000 Low
#
# postgres uses a fresh database rje_bench_scale on 127.0.0.1 (the
# in-process bus: one process).
set -euo pipefail
kind=${1:?sqlite or postgres}
run=${2:?sleepers, subscribers or priority}
root=$(cd "$(dirname "$0")/.." && pwd)
rje=${RJE_BIN:-$root/target/release/rje}
work=$(mktemp -d)
port=${RJE_BENCH_PORT:-18412}
server=
trap '[[ -n $server ]] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT

case $kind in
sqlite) url=sqlite://$work/rje.db ;;
postgres)
  admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1/postgres}
  psql -q "$admin" -c 'DROP DATABASE IF EXISTS rje_bench_scale' -c 'CREATE DATABASE rje_bench_scale'
  url=${admin%/*}/rje_bench_scale
  ;;
*) echo "bench-scale.sh: sqlite or postgres" >&2; exit 2 ;;
esac
case $run in
sleepers) slots=1000; args=(--sleepers 1000) ;;
subscribers) slots=16; args=(--subscribers 1000) ;;
priority) slots=16; args=(--priority-backlog 10000) ;;
*) echo "bench-scale.sh: sleepers, subscribers or priority" >&2; exit 2 ;;
esac

cd "$work"
RJE_DATABASE_URL=$url RJE_BIND=127.0.0.1:$port RJE_WORKER_CONCURRENCY=$slots \
  RUST_LOG=warn "$rje" serve >"$work/serve.log" 2>&1 &
server=$!
up=
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && { up=1; break; }
  sleep 0.1
done
[[ -n $up ]] || { cat "$work/serve.log" >&2; exit 1; }
"$rje" --url "http://127.0.0.1:$port" bench "${args[@]}" --server-pid "$server" ${BENCH_JSON:+--json}
