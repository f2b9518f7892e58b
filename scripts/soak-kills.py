#!/usr/bin/env python3
"""Durable jobs under kill -9: the distributed deployment on this machine
(PostgreSQL and Redis on loopback), API processes and workers sharing one
state directory, jobs submitted without pause while a random API process or
worker is killed -9 every few seconds and started again. Then every job
must end Success with its line printed once, and no command may have run
twice (each appends its name to a file outside rje).

    scripts/soak-kills.py [--seconds 150] [--apis 2] [--workers 2]

Needs a built rje (RJE_BIN, default target/release/rje), PostgreSQL on
127.0.0.1:5432 (trust auth) and Redis on 127.0.0.1:6379; makes a database
of its own and drops it at the end. Only ever talks to loopback. Prints one
JSON line of figures.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def request(method, url, body=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


class Fleet:
    def __init__(self, binary, work, database_url, namespace, apis, workers):
        self.binary, self.work = binary, work
        self.env = dict(
            os.environ,
            RJE_DATABASE_URL=database_url,
            RJE_REDIS_URL="redis://127.0.0.1:6379",
            RJE_BUS_NAMESPACE=namespace,
            RJE_STATE_DIR=os.path.join(work, "state"),
            RJE_LEASE_SECONDS="3",
            RJE_KILL_GRACE_SECONDS="1",
            RJE_WORKER_CONCURRENCY="8",
            RUST_LOG="warn",
        )
        for name in ("RJE_API_TOKENS", "RJE_SSH_HOST", "EC2_HOST", "RJE_HOSTS_FILE"):
            self.env.pop(name, None)
        self.apis = [None] * apis
        self.bases = [None] * apis
        self.workers = [None] * workers
        self.lock = threading.Lock()

    def start_api(self, n):
        log = open(os.path.join(self.work, f"api{n}.log"), "ab")
        env = dict(self.env, RJE_BIND="127.0.0.1:0")
        process = subprocess.Popen(
            [self.binary, "serve", "--no-worker"], env=env, cwd=self.work,
            stdout=subprocess.PIPE, stderr=log,
        )
        line = process.stdout.readline().decode()
        match = re.match(r"rje listening on (\S+)", line)
        if not match:
            raise SystemExit(f"api {n} did not start: {line!r}")
        with self.lock:
            self.apis[n], self.bases[n] = process, match.group(1)

    def start_worker(self, n):
        log = open(os.path.join(self.work, f"worker{n}.log"), "ab")
        self.workers[n] = subprocess.Popen(
            [self.binary, "worker"], env=self.env, cwd=self.work,
            stdout=subprocess.DEVNULL, stderr=log,
        )

    def base(self):
        with self.lock:
            live = [b for b, p in zip(self.bases, self.apis) if p and p.poll() is None]
        return random.choice(live) if live else None

    def kill_one(self):
        kinds = [("api", n) for n in range(len(self.apis))] + [
            ("worker", n) for n in range(len(self.workers))
        ]
        kind, n = random.choice(kinds)
        process = self.apis[n] if kind == "api" else self.workers[n]
        process.send_signal(signal.SIGKILL)
        process.wait()
        if kind == "api":
            with self.lock:
                self.apis[n] = None
            self.start_api(n)
        else:
            self.start_worker(n)
        return kind

    def stop(self):
        for process in self.apis + self.workers:
            if process and process.poll() is None:
                process.terminate()
        for process in self.apis + self.workers:
            if process:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--apis", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=19)
    args = parser.parse_args()
    random.seed(args.seed)
    binary = os.path.abspath(os.environ.get("RJE_BIN", os.path.join(ROOT, "target/release/rje")))
    work = tempfile.mkdtemp(prefix="rje-soak-")
    os.chmod(work, 0o700)
    database = f"rje_soak_{os.getpid()}"
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", database], check=True)
    ran_file = os.path.join(work, "ran")
    fleet = Fleet(binary, work, f"postgres://postgres@127.0.0.1:5432/{database}",
                  f"soak{os.getpid()}", args.apis, args.workers)
    submitted, refused, kills = {}, 0, {"api": 0, "worker": 0}
    try:
        for n in range(args.apis):
            fleet.start_api(n)
        for n in range(args.workers):
            fleet.start_worker(n)
        stop = threading.Event()

        def killer():
            while not stop.wait(random.uniform(3, 8)):
                kills[fleet.kill_one()] += 1

        threading.Thread(target=killer, daemon=True).start()
        began = time.monotonic()
        n = 0
        while time.monotonic() - began < args.seconds:
            base = fleet.base()
            if base is None:
                time.sleep(0.05)
                continue
            # A name per submission, answered or not: one whose answer was
            # lost may still have been stored and run.
            name = f"soak-{n}"
            n += 1
            command = f"echo {name} >> {ran_file}; sleep 0.{random.randint(0, 9)}; echo {name}"
            try:
                job = request("POST", f"{base}/jobs/", {"command": command, "timeout": 60})
                submitted[job["id"]] = name
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                # The API process was killed under the request: whether it
                # stored the job is unknown, so it is not waited for.
                refused += 1
            time.sleep(0.05)
        stop.set()
        # Every job ends; give the fleet the time a lost lease takes.
        deadline = time.monotonic() + 300
        final = {}
        while time.monotonic() < deadline and len(final) < len(submitted):
            base = fleet.base()
            for id_ in [i for i in submitted if i not in final]:
                try:
                    job = request("GET", f"{base}/jobs/{id_}/")
                except (urllib.error.URLError, OSError):
                    break
                if job["status"] in ("Success", "Failed", "Cancelled"):
                    final[id_] = job
            time.sleep(0.5)
        ran = open(ran_file).read().split() if os.path.exists(ran_file) else []
        statuses = {}
        for job in final.values():
            statuses[job["status"]] = statuses.get(job["status"], 0) + 1
        wrong_output = [
            i for i, job in final.items()
            if job["status"] == "Success" and job["stdout"] != submitted[i] + "\n"
        ]
        counts = {}
        for name in ran:
            counts[name] = counts.get(name, 0) + 1
        twice = sorted(name for name, c in counts.items() if c > 1)
        failed = {i: job.get("error") for i, job in final.items() if job["status"] != "Success"}
        figures = {
            "seconds": args.seconds, "apis": args.apis, "workers": args.workers,
            "kills": kills, "submitted": len(submitted), "unknown_submits": refused,
            "final": len(final), "stuck": len(submitted) - len(final),
            "statuses": statuses, "wrong_output": len(wrong_output),
            "ran_twice": twice, "not_success": failed,
        }
        print(json.dumps(figures))
        ok = (not twice and not wrong_output and len(final) == len(submitted)
              and statuses.get("Success", 0) == len(submitted))
        return 0 if ok else 1
    finally:
        fleet.stop()
        subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", database])
        if os.environ.get("SOAK_KEEP") is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
