-- The list route's descending orderings, as the queries write them: newest
-- first with never-started (NULL) jobs last, and High first in queue order.
-- A backward scan of the ascending indexes cannot give either, and on a
-- million jobs the sort they leave costs half a second.
CREATE INDEX jobs_started_desc ON jobs (started_at DESC NULLS LAST, pk DESC);
CREATE INDEX jobs_completed_desc ON jobs (completed_at DESC NULLS LAST, pk DESC);
CREATE INDEX jobs_priority_desc ON jobs (priority DESC, pk);
