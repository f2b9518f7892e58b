#!/usr/bin/env bash
# Fills a store with N finished jobs by SQL, for measuring the list route
# at scale (`rje bench --list-queries`, docs/BENCHMARKS.md):
#
#   scripts/fill-jobs.sh sqlite /tmp/big.db 1000000
#   scripts/fill-jobs.sh postgres postgres://postgres@127.0.0.1/rje_big 1000000
#
# The store must exist and be migrated (start `rje serve` on it once). Jobs
# are 1 ms apart, the newest a minute old; 60% Success, 20% Failed, 10% Cancelled, the last 50
# Queued; priorities and hosts (local, web-1, web-2) take turns; one job in
# 100,000 has the command `echo rare-needle`, the others `deploy web-I`
# or `backup db-I`. The hosts web-1 and web-2 must be in the server's
# hosts file for a `host=` filter (any address: --no-worker runs nothing).
set -euo pipefail
kind=${1:?sqlite or postgres}
target=${2:?the database file or URL}
count=${3:?how many jobs}
[[ $count =~ ^[0-9]+$ ]] || { echo "fill-jobs.sh: the count is a whole number" >&2; exit 2; }

# Column by column, the same rows for both stores; `i` counts from 1.
status="CASE WHEN i > $count - 50 THEN 'Queued' WHEN i % 10 IN (6, 7) THEN 'Failed' \
  WHEN i % 10 = 8 THEN 'Cancelled' ELSE 'Success' END"
command="CASE WHEN i % 100000 = 7 THEN 'echo rare-needle' WHEN i % 6 = 0 \
  THEN 'backup db-' || i ELSE 'deploy web-' || i END"
host="CASE i % 3 WHEN 0 THEN 'local' WHEN 1 THEN 'web-1' ELSE 'web-2' END"

case $kind in
sqlite)
  # The newest job a minute ago, in microseconds.
  base=$(( ($(date +%s) - 60) * 1000000 - count * 1000 ))
  sqlite3 "$target" >/dev/null <<SQL
PRAGMA journal_mode = WAL;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $count)
INSERT INTO jobs (id, command, timeout, priority, status, created_at, modified_at,
  started_at, completed_at, exit_code, host, max_retries, run_at, outcome, stdout, stderr)
SELECT printf('00000000-0000-4000-8000-%012x', i), $command, 60, i % 3 + 1, $status,
  $base + i * 1000, $base + i * 1000,
  CASE WHEN i > $count - 50 THEN NULL ELSE $base + i * 1000 + 200 END,
  CASE WHEN i > $count - 50 THEN NULL ELSE $base + i * 1000 + 700 END,
  CASE WHEN i > $count - 50 THEN NULL WHEN i % 10 IN (6, 7) THEN 1 ELSE 0 END,
  $host, 0, $base + i * 1000,
  CASE WHEN i > $count - 50 THEN NULL WHEN i % 10 IN (6, 7) THEN 'Failed'
    WHEN i % 10 = 8 THEN 'Cancelled' ELSE 'Success' END,
  CASE WHEN i > $count - 50 THEN NULL ELSE '' END,
  CASE WHEN i > $count - 50 THEN NULL ELSE '' END
FROM n;
INSERT INTO jobs_search (jobs_search) VALUES ('rebuild');
UPDATE jobs_search_upto SET pk = (SELECT MAX(pk) FROM jobs);
COMMIT;
-- no ANALYZE: rje never runs one, so neither does this
SQL
  ;;
postgres)
  psql -q -v ON_ERROR_STOP=1 "$target" <<SQL
INSERT INTO jobs (id, command, timeout, priority, status, created_at, modified_at,
  started_at, completed_at, exit_code, host, max_retries, run_at, outcome, stdout, stderr)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, $command, 60,
  i % 3 + 1, $status, t, t,
  CASE WHEN i > $count - 50 THEN NULL ELSE t + interval '200 microseconds' END,
  CASE WHEN i > $count - 50 THEN NULL ELSE t + interval '700 microseconds' END,
  CASE WHEN i > $count - 50 THEN NULL WHEN i % 10 IN (6, 7) THEN 1 ELSE 0 END,
  $host, 0, t,
  CASE WHEN i > $count - 50 THEN NULL WHEN i % 10 IN (6, 7) THEN 'Failed'
    WHEN i % 10 = 8 THEN 'Cancelled' ELSE 'Success' END,
  CASE WHEN i > $count - 50 THEN NULL ELSE '' END,
  CASE WHEN i > $count - 50 THEN NULL ELSE '' END
FROM generate_series(1, $count) AS i,
  LATERAL (SELECT date_trunc('second', now()) - interval '60 seconds'
    - ($count - i) * interval '1 millisecond') AS at(t);
VACUUM ANALYZE jobs;
SQL
  ;;
*)
  echo "fill-jobs.sh: the first argument is sqlite or postgres" >&2
  exit 2
  ;;
esac
