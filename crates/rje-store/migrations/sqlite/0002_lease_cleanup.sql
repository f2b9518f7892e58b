-- A lease belongs to a running job: when the job leaves Running, by any
-- path, its lease goes with it, in the same statement.
CREATE TRIGGER jobs_release_lease AFTER UPDATE OF status ON jobs
WHEN OLD.status = 'Running' AND NEW.status != 'Running'
BEGIN
    DELETE FROM leases WHERE job_pk = NEW.pk;
END;
