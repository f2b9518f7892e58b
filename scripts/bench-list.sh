#!/usr/bin/env bash
# The list route at scale (docs/BENCHMARKS.md, "The list route at 1,000
# and 1,000,000 jobs"): a fresh store filled with N jobs by SQL
# (scripts/fill-jobs.sh), a release `rje serve --no-worker` on it, and
# `rje bench --list-queries`.
#
#   scripts/bench-list.sh sqlite 1000000
#   scripts/bench-list.sh postgres 1000000   # a database rje_bench_list on 127.0.0.1
set -euo pipefail
kind=${1:?sqlite or postgres}
count=${2:?how many jobs}
root=$(cd "$(dirname "$0")/.." && pwd)
rje=${RJE_BIN:-$root/target/release/rje}
work=$(mktemp -d)
port=${RJE_BENCH_PORT:-18411}
server=
trap '[[ -n $server ]] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT

case $kind in
sqlite)
  target=$work/rje.db
  url=sqlite://$target
  ;;
postgres)
  admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1/postgres}
  psql -q "$admin" -c 'DROP DATABASE IF EXISTS rje_bench_list' -c 'CREATE DATABASE rje_bench_list'
  target=${admin%/*}/rje_bench_list
  url=$target
  ;;
*)
  echo "bench-list.sh: sqlite or postgres" >&2
  exit 2
  ;;
esac
cat >"$work/hosts.toml" <<HOSTS
[hosts.web-1]
address = "127.0.0.1"
[hosts.web-2]
address = "127.0.0.1"
HOSTS

serve() {
  RJE_DATABASE_URL=$url RJE_HOSTS_FILE=$work/hosts.toml RJE_BIND=127.0.0.1:$port \
    RJE_RETENTION_DAYS=0 RUST_LOG=warn "$rje" serve --no-worker >"$work/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && return
    sleep 0.1
  done
  cat "$work/serve.log" >&2
  exit 1
}

serve # migrates the store
kill $server
wait $server 2>/dev/null || true
"$root/scripts/fill-jobs.sh" "$kind" "$target" "$count"
serve
"$rje" --url "http://127.0.0.1:$port" bench --list-queries --host web-1 ${BENCH_JSON:+--json}
