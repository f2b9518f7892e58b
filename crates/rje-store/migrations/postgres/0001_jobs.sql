-- Jobs, their output chunks, and the leases of running jobs.

CREATE TABLE jobs (
    -- Insertion order: first come, first served within a priority, and the
    -- compact key of the output table.
    pk BIGSERIAL PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    command TEXT NOT NULL,
    timeout INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    parameters JSONB,
    stdout TEXT,
    stderr TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    modified_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    task_id TEXT,
    remote_process_id TEXT,
    exit_code INTEGER,
    signal INTEGER,
    error TEXT,
    host TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL,
    streaming BOOLEAN NOT NULL DEFAULT FALSE,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    run_at TIMESTAMPTZ NOT NULL
);

-- The queue: only queued jobs, in claim order. Claims lock rows with
-- FOR UPDATE SKIP LOCKED, so workers never wait on each other.
CREATE INDEX jobs_queue ON jobs (priority DESC, pk) WHERE status = 'Queued';
-- The list route: one index per filter and ordering it offers.
CREATE INDEX jobs_created ON jobs (created_at, pk);
CREATE INDEX jobs_status_created ON jobs (status, created_at, pk);
CREATE INDEX jobs_priority_created ON jobs (priority, created_at, pk);
CREATE INDEX jobs_host_created ON jobs (host, created_at, pk);
CREATE INDEX jobs_started ON jobs (started_at, pk);
CREATE INDEX jobs_completed ON jobs (completed_at, pk);
CREATE INDEX jobs_priority_pk ON jobs (priority, pk);
-- The reaper looks at running jobs only.
CREATE INDEX jobs_running ON jobs (pk) WHERE status = 'Running';

CREATE TABLE job_output (
    job_pk BIGINT NOT NULL REFERENCES jobs (pk) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    stream SMALLINT NOT NULL,
    text TEXT NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    dropped_before BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (job_pk, seq)
);

-- Heartbeats live apart from job rows, so that frequent renewals neither
-- bloat the jobs table (MVCC) nor contend with its readers.
CREATE TABLE leases (
    job_pk BIGINT PRIMARY KEY REFERENCES jobs (pk) ON DELETE CASCADE,
    worker_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX leases_worker ON leases (worker_id);
CREATE INDEX leases_expiry ON leases (expires_at);

-- A lease belongs to a running job: when the job leaves Running, by any
-- path, its lease goes with it.
CREATE FUNCTION jobs_release_lease() RETURNS trigger AS $$
BEGIN
    DELETE FROM leases WHERE job_pk = NEW.pk;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER jobs_release_lease AFTER UPDATE OF status ON jobs
FOR EACH ROW WHEN (OLD.status = 'Running' AND NEW.status <> 'Running')
EXECUTE FUNCTION jobs_release_lease();
