-- The list route's descending orderings (see the PostgreSQL migration of
-- the same name). SQLite sorts NULL first, so `DESC` already puts jobs that
-- never started last, and its indexes take no NULLS clause.
CREATE INDEX jobs_started_desc ON jobs (started_at DESC, pk DESC);
CREATE INDEX jobs_completed_desc ON jobs (completed_at DESC, pk DESC);
CREATE INDEX jobs_priority_desc ON jobs (priority DESC, pk);
