-- Jobs run again, and jobs fired by schedules.
--
-- retry_of: the job this one runs again (by POST /jobs/{id}/retry/, or
-- automatically after a failure when the job asked for it). No foreign
-- key: the original may be pruned, and the link stays as history.
-- retry_number: automatic retries before this job in its chain (0 for a
-- first run and for a run-again asked by hand).
ALTER TABLE jobs ADD COLUMN retry_of TEXT;
ALTER TABLE jobs ADD COLUMN retry_number INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN retry_on_failure BOOLEAN NOT NULL DEFAULT 0;
-- The schedule that fired the job and the fire time it stands for.
ALTER TABLE jobs ADD COLUMN schedule_id TEXT;
ALTER TABLE jobs ADD COLUMN scheduled_for INTEGER;
-- Jobs sharing a serial key run one at a time, in queue order (a
-- schedule whose overlap is `queue`): a claim passes over a job while
-- another of its key runs or waits ahead of it.
ALTER TABLE jobs ADD COLUMN serial_key TEXT;
CREATE INDEX jobs_retry_of ON jobs (retry_of) WHERE retry_of IS NOT NULL;
CREATE INDEX jobs_schedule ON jobs (schedule_id, pk) WHERE schedule_id IS NOT NULL;
-- The active jobs only: what overlap `skip` and a serial claim ask about,
-- whatever the length of a schedule's history.
CREATE INDEX jobs_schedule_active ON jobs (schedule_id)
    WHERE schedule_id IS NOT NULL AND status IN ('Queued', 'Running');
CREATE INDEX jobs_serial ON jobs (serial_key, pk)
    WHERE serial_key IS NOT NULL AND status IN ('Queued', 'Running');

-- A schedule: its definition as it was created (the job template
-- included, as JSON in the shape of POST /schedules/), whether it is
-- paused, and `since`: fire times at or before it are handled (fired,
-- skipped or missed) and never considered again.
CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    definition TEXT NOT NULL,
    host TEXT NOT NULL,
    paused BOOLEAN NOT NULL DEFAULT 0,
    since INTEGER NOT NULL,
    created_by TEXT,
    created_at INTEGER NOT NULL,
    modified_at INTEGER NOT NULL
);

-- One row per fire time a process handled: the primary key lets exactly
-- one process win each fire time, whatever the number of processes.
CREATE TABLE schedule_fires (
    schedule_id TEXT NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    fire_time INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    job_id TEXT,
    missed INTEGER NOT NULL DEFAULT 0,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (schedule_id, fire_time)
);
CREATE INDEX schedule_fires_recorded ON schedule_fires (recorded_at);

-- Background chores that one process at a time carries out (retention):
-- who holds each, and until when.
CREATE TABLE chores (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
