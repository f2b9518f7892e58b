-- A trigram index of the commands, so that a list's text search finds a
-- few jobs among millions without reading every command. External
-- content: the text stays in `jobs`.
--
-- Submitting a job does not index it: an FTS5 insert per committed job
-- made a submit a quarter slower. Jobs above `jobs_search_upto.pk` are
-- searched by a scan of that (short) range of the primary key instead, and
-- a search first indexes them in one batch (SqliteStore::index_commands).
-- Below the mark the triggers keep the index in step with edits and
-- deletes, which are rare.
CREATE VIRTUAL TABLE jobs_search USING fts5(
    command,
    content = 'jobs',
    content_rowid = 'pk',
    tokenize = 'trigram'
);

CREATE TABLE jobs_search_upto (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    pk INTEGER NOT NULL
);

INSERT INTO jobs_search (jobs_search) VALUES ('rebuild');
INSERT INTO jobs_search_upto (id, pk) VALUES (0, COALESCE((SELECT MAX(pk) FROM jobs), 0));

-- SQLite gives a new row the highest key plus one, so a deleted job's key
-- can come back: the mark drops to the highest key left, and the index
-- holds exactly the jobs at or below it.
CREATE TRIGGER jobs_search_delete AFTER DELETE ON jobs
WHEN old.pk <= (SELECT pk FROM jobs_search_upto)
BEGIN
    INSERT INTO jobs_search (jobs_search, rowid, command) VALUES ('delete', old.pk, old.command);
    UPDATE jobs_search_upto SET pk = MIN(pk, COALESCE((SELECT MAX(pk) FROM jobs), 0));
END;

CREATE TRIGGER jobs_search_update AFTER UPDATE OF command ON jobs
WHEN old.pk <= (SELECT pk FROM jobs_search_upto)
BEGIN
    INSERT INTO jobs_search (jobs_search, rowid, command) VALUES ('delete', old.pk, old.command);
    INSERT INTO jobs_search (rowid, command) VALUES (new.pk, new.command);
END;
