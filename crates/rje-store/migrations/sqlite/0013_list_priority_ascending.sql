-- `ordering=priority` sorts by priority ascending, then queue order (pk
-- ascending): neither `jobs_priority_desc` read backwards (pk would come
-- descending) nor `jobs_priority_created` gives that order, so SQLite
-- sorted the whole table (0.7 s at a million jobs). PostgreSQL has had
-- this index from its first migration (jobs_priority_pk).
CREATE INDEX jobs_priority_pk ON jobs (priority, pk);
