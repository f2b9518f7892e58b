-- Durable jobs: where a successor goes on reading a command's output
-- file, and how many times a job was taken up again.
ALTER TABLE jobs ADD COLUMN reattached INTEGER NOT NULL DEFAULT 0;
ALTER TABLE job_output ADD COLUMN source_end INTEGER;
ALTER TABLE jobs ADD COLUMN supervised INTEGER NOT NULL DEFAULT 0;
