-- Runs: one command sent to many hosts at once, one job per host.
--
-- A run keeps its request (target and controls); its status and counts
-- are read from its jobs, so that nothing has two truths.
-- failures_allowed: the most failed hosts before the rest are skipped
-- (NULL: no limit), resolved from max_failures when the run was made.
CREATE TABLE runs (
    id UUID PRIMARY KEY,
    command TEXT NOT NULL,
    target TEXT NOT NULL,
    hosts TEXT NOT NULL,
    max_parallel INTEGER NOT NULL,
    max_failures TEXT,
    failures_allowed INTEGER,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    submitted_by TEXT,
    cancelled_by TEXT,
    retry_of UUID,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX runs_created ON runs (created_at);
-- A run is run again at most once (a retry of the retry goes on): two
-- retries asked at once make one new run, never two over the same hosts.
CREATE UNIQUE INDEX runs_retry_of ON runs (retry_of) WHERE retry_of IS NOT NULL;

-- A job's run, and how many of its run's jobs may run at once (copied
-- into the job, so that a claim needs no join).
ALTER TABLE jobs ADD COLUMN run_id UUID;
ALTER TABLE jobs ADD COLUMN run_parallel INTEGER;
-- How a finished job ended, as an operator reads it (Success, Failed,
-- TimedOut, Unreachable, AuthFailed, Cancelled, Skipped).
ALTER TABLE jobs ADD COLUMN outcome TEXT;
UPDATE jobs SET outcome = CASE
    WHEN status = 'Success' THEN 'Success'
    WHEN status = 'Cancelled' THEN 'Cancelled'
    WHEN status = 'Failed' AND error LIKE 'timed out after %' THEN 'TimedOut'
    WHEN status = 'Failed' THEN 'Failed'
    END
WHERE status IN ('Success', 'Failed', 'Cancelled');
CREATE INDEX jobs_run ON jobs (run_id, pk) WHERE run_id IS NOT NULL;
-- The active jobs of runs: what a claim ranks to keep max_parallel.
CREATE INDEX jobs_run_active ON jobs (run_id, pk)
    WHERE run_id IS NOT NULL AND status IN ('Queued', 'Running');
