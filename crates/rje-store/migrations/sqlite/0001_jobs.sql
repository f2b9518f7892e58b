-- Jobs, their output chunks, and the leases of running jobs.
-- Times are microseconds since the Unix epoch, UTC.

CREATE TABLE jobs (
    -- Insertion order: first come, first served within a priority, and the
    -- compact key of the output table.
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    command TEXT NOT NULL,
    timeout INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    parameters TEXT,
    stdout TEXT,
    stderr TEXT,
    created_at INTEGER NOT NULL,
    modified_at INTEGER NOT NULL,
    started_at INTEGER,
    completed_at INTEGER,
    task_id TEXT,
    remote_process_id TEXT,
    exit_code INTEGER,
    signal INTEGER,
    error TEXT,
    host TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL,
    streaming INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    run_at INTEGER NOT NULL
);

-- The queue: only queued jobs, in claim order.
CREATE INDEX jobs_queue ON jobs (priority DESC, pk) WHERE status = 'Queued';
-- The list route's filters and orderings.
CREATE INDEX jobs_created ON jobs (created_at, pk);
CREATE INDEX jobs_status_created ON jobs (status, created_at, pk);
CREATE INDEX jobs_priority_created ON jobs (priority, created_at, pk);
CREATE INDEX jobs_host_created ON jobs (host, created_at, pk);
CREATE INDEX jobs_started ON jobs (started_at, pk);
CREATE INDEX jobs_completed ON jobs (completed_at, pk);

CREATE TABLE job_output (
    job_pk INTEGER NOT NULL REFERENCES jobs (pk) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    text TEXT NOT NULL,
    ts INTEGER NOT NULL,
    dropped_before INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_pk, seq)
) WITHOUT ROWID;

-- Heartbeats live apart from job rows so renewing them never rewrites a job.
CREATE TABLE leases (
    job_pk INTEGER PRIMARY KEY REFERENCES jobs (pk) ON DELETE CASCADE,
    worker_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX leases_worker ON leases (worker_id);
CREATE INDEX leases_expiry ON leases (expires_at);
