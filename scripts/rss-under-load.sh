#!/usr/bin/env bash
# The RSS of `rje serve` under 50 concurrent GETs of jobs holding 2 x 10 MiB of
# output, and under 1,000 idle connections, with curl and python as clients.
# BIN=target/release/rje bash scripts/rss-under-load.sh
set -euo pipefail
BIN=$(realpath "${BIN:-target/release/rje}")
DIR=$(mktemp -d)
cd "$DIR"
RJE_BIND=127.0.0.1:0 RJE_DATABASE_URL="sqlite://$DIR/rje.db" RUST_LOG=warn "$BIN" serve > out.log 2> err.log &
PID=$!
for _ in $(seq 100); do grep -q listening out.log && break; sleep 0.1; done
BASE=$(sed -n 's/rje listening on //p' out.log | head -1)
rss() { awk '/VmRSS/ {print $2/1024 " MiB"}' /proc/$PID/status; }
hwm() { awk '/VmHWM/ {print $2/1024 " MiB"}' /proc/$PID/status; }
IDS=()
for i in $(seq 10); do
  ID=$(curl -s -X POST "$BASE/jobs/" -H 'content-type: application/json' \
    -d '{"command": "yes stdout-line-of-output | head -c 12000000; yes stderr-line-of-output | head -c 12000000 >&2", "timeout": 600}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])')
  IDS+=("$ID")
done
for ID in "${IDS[@]}"; do
  until curl -s "$BASE/jobs/$ID/?x" -o /dev/null -w '' && curl -s "$BASE/jobs/?output=none&limit=100" | python3 -c "import sys,json; j=[x for x in json.load(sys.stdin)['jobs'] if x['id']=='$ID'][0]; sys.exit(0 if j['status'] in ('Success','Failed') else 1)"; do sleep 0.5; done
done
echo "jobs done; rss $(rss), peak so far $(hwm)"
LIST=$(curl -s -o /dev/null -w '%{size_download}' "$BASE/jobs/")
echo "GET /jobs/ of 10 such jobs: $LIST bytes"
SINGLE=$(curl -s -o /dev/null -w '%{size_download}' "$BASE/jobs/${IDS[0]}/")
echo "GET /jobs/{id}/ of one: $SINGLE bytes"
# A fresh process on the same database, so that what the floods left in
# the allocator does not count.
kill $PID; wait $PID 2>/dev/null || true
RJE_BIND=127.0.0.1:0 RJE_DATABASE_URL="sqlite://$DIR/rje.db" RUST_LOG=warn "$BIN" serve > out2.log 2> err2.log &
PID=$!
for _ in $(seq 100); do grep -q listening out2.log && break; sleep 0.1; done
BASE=$(sed -n 's/rje listening on //p' out2.log | head -1)
curl -s -o /dev/null "$BASE/jobs/"
BEFORE=$(rss)
( while kill -0 $PID 2>/dev/null; do awk '/VmRSS/ {print $2}' /proc/$PID/status; sleep 0.05; done ) > samples.txt &
SAMPLER=$!
for round in 1 2 3; do
  for i in $(seq 50); do
    ID=${IDS[$((i % 10))]}
    curl -s -o /dev/null "$BASE/jobs/$ID/" &
  done
  wait $(jobs -p | grep -v $SAMPLER | grep -v $PID) 2>/dev/null || true
done
sleep 0.3
kill $SAMPLER
echo "50 concurrent GET /jobs/{id}/ x3: rss before $BEFORE, max during $(sort -n samples.txt | tail -1 | awk '{print $1/1024 " MiB"}')"
python3 - "$BASE" <<'PY' &
import socket, sys, time, urllib.request
host, port = sys.argv[1].split("//")[1].split(":")
socks = [socket.create_connection((host, int(port))) for _ in range(1000)]
t = time.time(); urllib.request.urlopen(sys.argv[1] + "/health").read()
print(f"1000 idle connections open; /health answered in {1000*(time.time()-t):.1f} ms", flush=True)
time.sleep(6)
PY
PY_PID=$!
sleep 3
echo "rss with 1000 idle connections: $(rss)"
wait $PY_PID
echo "peak rss of the whole run: $(hwm)"
kill $PID; wait $PID 2>/dev/null || true
rm -rf "$DIR"
