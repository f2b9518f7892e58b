#!/usr/bin/env bash
# Clients generated from rje's own OpenAPI document must work. Starts its
# own `rje serve` (loopback, a database of its own, tokens on), fetches
# /openapi.json and, with the two generators people reach for first:
#
#   - openapi-python-client: generates a Python client, installs it into a
#     venv, and runs submit (with parameters.env), get, list, logs, cancel
#     and delete through it;
#   - openapi-typescript + openapi-fetch: generates the types, type-checks a
#     client program with `tsc --strict`, and runs the same flow with node.
#
# Versions are pinned (npm resolves what was published before
# $NPM_BEFORE); the venv and the npm project live under
# target/generated-clients/ and are reused between runs; the generated code
# is written to a scratch directory and never kept. Exits non-zero on any
# failure.
#
#   scripts/generated-clients.sh            # builds rje (debug) if needed
#   RJE_BIN=target/release/rje scripts/generated-clients.sh
set -euo pipefail
cd "$(dirname "$0")/.."

OPENAPI_PYTHON_CLIENT=0.29.1
# What the generated Python client and its build need, pinned.
PYTHON_PINS="httpx==0.28.1 attrs==26.1.0 python-dateutil==2.9.0.post0 six==1.17.0 poetry-core==2.5.0"
OPENAPI_TYPESCRIPT=7.13.0
OPENAPI_FETCH=0.17.0
TYPESCRIPT=5.9.3
NPM_BEFORE=2026-12-01

DIR="${GENERATED_CLIENTS_DIR:-target/generated-clients}"
RJE_BIN="${RJE_BIN:-${CARGO_TARGET_DIR:-target}/debug/rje}"
TOKEN="generated-clients-token"

fail() {
  echo "generated-clients: FAILED: $*" >&2
  exit 1
}

mkdir -p "$DIR"
DIR="$(realpath "$DIR")"
VENV="$DIR/venv"
NPM_DIR="$DIR/ts"

echo "== tools"
# The venv: the generator, and the pinned libraries the client needs.
STAMP="openapi-python-client==$OPENAPI_PYTHON_CLIENT $PYTHON_PINS"
if [ "$(cat "$VENV/.pins" 2>/dev/null)" != "$STAMP" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV" || fail "python3 -m venv (install python3-venv)"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "openapi-python-client==$OPENAPI_PYTHON_CLIENT" $PYTHON_PINS \
    || fail "pip install openapi-python-client==$OPENAPI_PYTHON_CLIENT"
  echo "$STAMP" > "$VENV/.pins"
fi
# The npm project: the generator, the fetch client and the compiler.
PACKAGE_JSON="$(cat <<EOF
{
  "name": "rje-generated-client-check",
  "private": true,
  "type": "module",
  "devDependencies": {
    "openapi-fetch": "$OPENAPI_FETCH",
    "openapi-typescript": "$OPENAPI_TYPESCRIPT",
    "typescript": "$TYPESCRIPT"
  }
}
EOF
)"
mkdir -p "$NPM_DIR"
if [ "$(cat "$NPM_DIR/package.json" 2>/dev/null)" != "$PACKAGE_JSON" ] \
  || [ ! -x "$NPM_DIR/node_modules/.bin/tsc" ]; then
  rm -rf "$NPM_DIR/node_modules" "$NPM_DIR/package-lock.json"
  printf '%s\n' "$PACKAGE_JSON" > "$NPM_DIR/package.json"
  (cd "$NPM_DIR" && npm install --no-audit --no-fund --loglevel=error --before="$NPM_BEFORE") \
    || fail "npm install in $NPM_DIR"
fi
printf '%s\n' "$PACKAGE_JSON" > "$NPM_DIR/package.json"
echo "openapi-python-client $("$VENV/bin/openapi-python-client" --version | awk '{print $NF}'), python $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')"
echo "openapi-typescript $OPENAPI_TYPESCRIPT, openapi-fetch $OPENAPI_FETCH, typescript $("$NPM_DIR/node_modules/.bin/tsc" --version | awk '{print $NF}'), node $(node --version)"

[ -x "$RJE_BIN" ] || cargo build --quiet --bin rje

WORK="$(mktemp -d)"
cleanup() {
  [ -n "${RJE_PID:-}" ] && kill "$RJE_PID" 2>/dev/null && wait "$RJE_PID" 2>/dev/null
  rm -rf "$WORK" "$NPM_DIR/src" "$NPM_DIR/dist"
}
trap cleanup EXIT

echo "== server"
# A server of its own: a fresh database, no SSH hosts, short grace times.
RJE_BIN="$(realpath "$RJE_BIN")"
(cd "$WORK" && exec env -u RJE_SSH_HOST -u EC2_HOST -u RJE_HOSTS_FILE -u RJE_REDIS_URL -u REDIS_URL \
  RJE_BIND=127.0.0.1:0 \
  RJE_DATABASE_URL="sqlite://$WORK/rje.db" \
  RJE_STATE_DIR="$WORK/state" \
  RJE_API_TOKENS="$TOKEN" \
  RJE_KILL_GRACE_SECONDS=1 \
  RUST_LOG=warn \
  "$RJE_BIN" serve > "$WORK/stdout" 2> "$WORK/stderr") &
RJE_PID=$!
for _ in $(seq 1 100); do
  grep -q '^rje listening on ' "$WORK/stdout" 2>/dev/null && break
  kill -0 "$RJE_PID" 2>/dev/null || { cat "$WORK/stderr"; fail "rje exited at start"; }
  sleep 0.1
done
BASE="$(sed -n 's/^rje listening on //p' "$WORK/stdout")"
[ -n "$BASE" ] || { cat "$WORK/stderr"; fail "rje did not start"; }
echo "rje at $BASE"
# As a token's holder reads it (the document anyone may read can say less).
"$VENV/bin/python" - "$BASE/openapi.json" "$TOKEN" "$WORK/openapi.json" <<'EOF' || fail "GET /openapi.json"
import sys, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
with urllib.request.urlopen(request, timeout=10) as response:
    body = response.read()
open(sys.argv[3], "wb").write(body)
EOF

# The flow both clients run, told once.
FLOW="submit 'printf %s \"\$A\"' with parameters {env: {A: b}, ticket: OPS-42} (201), get it until Success with stdout 'b', \
list (it is there), logs (stdout 'b'), submit 'sleep 30' and cancel it once Running (Cancelled), \
delete both (204) and get (404)"

echo "== Python: openapi-python-client $OPENAPI_PYTHON_CLIENT"
# Every warning is a failure: a dropped schema is a warning there.
(cd "$WORK" && PATH="$VENV/bin:$PATH" "$VENV/bin/openapi-python-client" generate --path "$WORK/openapi.json" \
  --output-path "$WORK/rje-client" --meta poetry --fail-on-warning) > "$WORK/python-generate.log" 2>&1 \
  || { cat "$WORK/python-generate.log"; fail "openapi-python-client could not generate a clean client"; }
# shellcheck disable=SC2086
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation \
  --force-reinstall --no-deps "$WORK/rje-client" \
  || fail "pip install of the generated Python client"
"$VENV/bin/pip" check --disable-pip-version-check >/dev/null \
  || { "$VENV/bin/pip" check; fail "the generated Python client's requirements are not met"; }
echo "flow: $FLOW"
"$VENV/bin/python" - "$BASE" "$TOKEN" <<'EOF' || fail "the flow through the generated Python client"
import sys, time
from http import HTTPStatus

from rje_client import AuthenticatedClient
from rje_client.api.jobs import (
    cancel_job, delete_job, get_job, job_logs, list_jobs, submit_job,
)
from rje_client.models import Parameters, ParametersEnvType0, Status, Stream, SubmitRequest

base, token = sys.argv[1], sys.argv[2]
client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)


def expect(response, status, what):
    if response.status_code != status:
        raise SystemExit(f"{what}: expected {status}, got {response.status_code}: {response.content!r}")
    print(f"  python: {what}: {status.value} {status.phrase}")
    return response.parsed


def until(job_id, statuses, what):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = get_job.sync_detailed(job_id, client=client).parsed
        if job.status in statuses:
            return job
        time.sleep(0.1)
    raise SystemExit(f"{what}: still {job.status} after 30 s")


env = ParametersEnvType0()
env["A"] = "b"
parameters = Parameters(env=env)
parameters["ticket"] = "OPS-42"  # a key of the client's own
body = SubmitRequest(command='printf %s "$A"', parameters=parameters)
job = expect(submit_job.sync_detailed(client=client, body=body), HTTPStatus.CREATED, "submit with parameters.env")
assert job.parameters == {"env": {"A": "b"}, "ticket": "OPS-42"}, job.parameters

job = until(job.id, {Status.SUCCESS, Status.FAILED, Status.CANCELLED}, "get")
expect(get_job.sync_detailed(job.id, client=client), HTTPStatus.OK, "get")
assert job.status == Status.SUCCESS and job.stdout == "b", (job.status, job.stdout, job.error)

page = expect(list_jobs.sync_detailed(client=client, limit=100), HTTPStatus.OK, "list")
assert job.id in [listed.id for listed in page.jobs], page
assert page.total_count >= 1, page.total_count

chunks = expect(job_logs.sync_detailed(job.id, client=client), HTTPStatus.OK, "logs")
assert "".join(c.log for c in chunks.chunks if c.stream == Stream.STDOUT) == "b", chunks

sleeper = expect(
    submit_job.sync_detailed(client=client, body=SubmitRequest(command="sleep 30")),
    HTTPStatus.CREATED, "submit sleep 30",
)
until(sleeper.id, {Status.RUNNING}, "sleep 30 to run")
cancelled = expect(cancel_job.sync_detailed(sleeper.id, client=client), HTTPStatus.OK, "cancel")
assert cancelled.status == Status.CANCELLED, cancelled.status

for job_id in (job.id, sleeper.id):
    expect(delete_job.sync_detailed(job_id, client=client), HTTPStatus.NO_CONTENT, "delete")
    expect(get_job.sync_detailed(job_id, client=client), HTTPStatus.NOT_FOUND, "get after delete")
print("  python: ok")
EOF

echo "== TypeScript: openapi-typescript $OPENAPI_TYPESCRIPT, openapi-fetch $OPENAPI_FETCH, tsc --strict"
mkdir -p "$NPM_DIR/src"
(cd "$NPM_DIR" && node_modules/.bin/openapi-typescript "$WORK/openapi.json" -o src/rje.d.ts) \
  > "$WORK/ts-generate.log" 2>&1 \
  || { cat "$WORK/ts-generate.log"; fail "openapi-typescript"; }
cat > "$NPM_DIR/tsconfig.json" <<'EOF'
{
  "compilerOptions": {
    "strict": true,
    "target": "ES2022",
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "lib": ["ES2022", "DOM"],
    "skipLibCheck": false,
    "outDir": "dist",
    "rootDir": "src"
  },
  "include": ["src"]
}
EOF
cat > "$NPM_DIR/src/flow.ts" <<'EOF'
// The flow, typed by the generated `paths`: submit (parameters.env), get,
// list, logs, cancel, delete.
import createClient from "openapi-fetch";
import type { components, paths } from "./rje.js";

type Job = components["schemas"]["JobResponse"];

const [base, token] = process_args();
const client = createClient<paths>({
  baseUrl: base,
  headers: { Authorization: `Bearer ${token}` },
});

function process_args(): [string, string] {
  const args = (globalThis as unknown as { process: { argv: string[] } }).process.argv;
  return [args[2], args[3]];
}

function expect<T>(what: string, result: { data?: T; error?: unknown; response: Response }, status: number): T {
  if (result.response.status !== status) {
    throw new Error(`${what}: expected ${status}, got ${result.response.status}: ${JSON.stringify(result.error)}`);
  }
  console.log(`  typescript: ${what}: ${status}`);
  return result.data as T;
}

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(`check failed: ${what}`);
}

async function until(id: string, statuses: Job["status"][], what: string): Promise<Job> {
  const deadline = Date.now() + 30_000;
  let status = "";
  while (Date.now() < deadline) {
    const { data } = await client.GET("/jobs/{id}", { params: { path: { id } } });
    if (data && statuses.includes(data.status)) return data;
    status = data?.status ?? "";
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what}: still ${status} after 30 s`);
}

const submitted = expect(
  "submit with parameters.env",
  await client.POST("/jobs", {
    body: { command: 'printf %s "$A"', parameters: { env: { A: "b" }, ticket: "OPS-42" } },
  }),
  201,
);
check(JSON.stringify(submitted.parameters) === '{"env":{"A":"b"},"ticket":"OPS-42"}', "parameters kept");

const done = await until(submitted.id, ["Success", "Failed", "Cancelled"], "get");
const got = expect("get", await client.GET("/jobs/{id}", { params: { path: { id: done.id } } }), 200);
check(got.status === "Success" && got.stdout === "b", `Success with stdout b: ${got.status} ${got.stdout}`);

const page = expect("list", await client.GET("/jobs", { params: { query: { limit: 100 } } }), 200);
check(page.jobs.some((job) => job.id === got.id), "the job is listed");
check(page.total_count >= 1, "total_count");

const logs = expect("logs", await client.GET("/jobs/{id}/logs", { params: { path: { id: got.id } } }), 200);
check(typeof logs !== "string", "logs as JSON");
const chunks = typeof logs === "string" ? [] : logs.chunks;
const stdout = chunks.filter((chunk) => chunk.stream === "stdout").map((chunk) => chunk.log).join("");
check(stdout === "b", `logs stdout b: ${stdout}`);

const sleeper = expect("submit sleep 30", await client.POST("/jobs", { body: { command: "sleep 30" } }), 201);
await until(sleeper.id, ["Running"], "sleep 30 to run");
const cancelled = expect(
  "cancel",
  await client.POST("/jobs/{id}/cancel", { params: { path: { id: sleeper.id } } }),
  200,
);
check(cancelled.status === "Cancelled", `Cancelled: ${cancelled.status}`);

for (const id of [got.id, sleeper.id]) {
  expect("delete", await client.DELETE("/jobs/{id}", { params: { path: { id } } }), 204);
  expect("get after delete", await client.GET("/jobs/{id}", { params: { path: { id } } }), 404);
}
console.log("  typescript: ok");
EOF
echo "tsc --strict --noEmit"
(cd "$NPM_DIR" && node_modules/.bin/tsc --strict --noEmit -p .) \
  || fail "tsc --strict refuses the generated types or the client program"
(cd "$NPM_DIR" && node_modules/.bin/tsc -p .) || fail "tsc (emit)"
echo "flow: $FLOW"
node "$NPM_DIR/dist/flow.js" "$BASE" "$TOKEN" || fail "the flow through the generated TypeScript client"

echo "generated clients: ok (Python and TypeScript, against $BASE)"
