#!/usr/bin/env bash
# The price of durable jobs: `rje bench` against a release `rje serve` on a
# fresh SQLite database, plain and durable in turn, ROUNDS times.
#   scripts/bench-durable.sh local [ROUNDS]   jobs on this machine
#   scripts/bench-durable.sh ssh [ROUNDS]     jobs on an sshd on loopback, as
#     BENCH_USER (default rjebench, made if missing: /bin/sh, no start-up
#     files, so that the figures measure rje and sshd, not a login shell)
# Prints one JSON line of figures per run, tagged plain or durable.
set -euo pipefail
mode=${1:-local}
rounds=${2:-2}
bin=${BIN:-target/release/rje}
bench_args=(--jobs 1000 --latency-jobs 100 --output-samples 20 --cancel-samples 10 --log-lines 200000 --json)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [[ $mode == ssh ]]; then
  user=${BENCH_USER:-rjebench}
  id "$user" >/dev/null 2>&1 || useradd -m -s /bin/sh "$user"
  # No password, but not locked: sshd refuses locked accounts.
  usermod -p "*" "$user"
  sshd_port=$(free_port)
  ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
  cp "$work/client_key.pub" "$work/authorized_keys"
  # sshd reads the keys as the user logging in.
  chmod 755 "$work"; chmod 644 "$work/authorized_keys"
  echo "[127.0.0.1]:$sshd_port $(cat "$work/host_key.pub")" > "$work/known_hosts"
  mkdir -p /run/sshd
  cat > "$work/sshd_config" <<CONF
Port $sshd_port
ListenAddress 127.0.0.1
HostKey $work/host_key
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
MaxSessions 10
MaxStartups 200
LogLevel ERROR
CONF
  /usr/sbin/sshd -D -e -f "$work/sshd_config" &
  for _ in $(seq 100); do [[ -e $work/sshd.pid ]] && break; sleep 0.05; done
fi

hosts_file() { # durable?
  cat > "$work/hosts.toml" <<TOML
default = "box"
[hosts.box]
address = "127.0.0.1"
port = $sshd_port
user = "$user"
key = "$work/client_key"
known_hosts = "$work/known_hosts"
durable = $1
TOML
}

run() { # plain|durable
  local kind=$1 port db
  port=$(free_port)
  db="$work/$kind.db"
  rm -f "$db"*
  local env=(RJE_BIND="127.0.0.1:$port" RJE_DATABASE_URL="sqlite://$db" RUST_LOG=error)
  if [[ $mode == local && $kind == durable ]]; then
    env+=(RJE_STATE_DIR="$work/state")
  else
    env+=(RJE_STATE_DIR=)
  fi
  if [[ $mode == ssh ]]; then
    hosts_file "$([[ $kind == durable ]] && echo true || echo false)"
    env+=(RJE_HOSTS_FILE="$work/hosts.toml")
  fi
  env "${env[@]}" "$bin" serve > "$work/serve.out" &
  local server=$!
  for _ in $(seq 200); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.05; done
  local figures
  figures=$("$bin" --url "http://127.0.0.1:$port" bench "${bench_args[@]}")
  kill "$server"; wait "$server" || true
  echo "{\"run\":\"$kind\",\"figures\":$figures}"
}

for _ in $(seq "$rounds"); do
  run plain
  run durable
done
