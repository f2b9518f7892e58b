-- Who submitted a job and who cancelled it: the names of their tokens
-- (NULL without tokens, and for the jobs from before).
ALTER TABLE jobs ADD COLUMN submitted_by TEXT;
ALTER TABLE jobs ADD COLUMN cancelled_by TEXT;
CREATE INDEX jobs_submitted_by ON jobs (submitted_by, created_at) WHERE submitted_by IS NOT NULL;
