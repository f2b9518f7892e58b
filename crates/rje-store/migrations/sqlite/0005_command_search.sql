-- A trigram index of the commands, so that a list's text search finds a
-- few jobs among millions without reading every command. External
-- content: the text stays in `jobs`, the triggers keep the index in step.
CREATE VIRTUAL TABLE jobs_search USING fts5(
    command,
    content = 'jobs',
    content_rowid = 'pk',
    tokenize = 'trigram'
);

CREATE TRIGGER jobs_search_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO jobs_search (rowid, command) VALUES (new.pk, new.command);
END;

CREATE TRIGGER jobs_search_delete AFTER DELETE ON jobs BEGIN
    INSERT INTO jobs_search (jobs_search, rowid, command) VALUES ('delete', old.pk, old.command);
END;

CREATE TRIGGER jobs_search_update AFTER UPDATE OF command ON jobs BEGIN
    INSERT INTO jobs_search (jobs_search, rowid, command) VALUES ('delete', old.pk, old.command);
    INSERT INTO jobs_search (rowid, command) VALUES (new.pk, new.command);
END;

INSERT INTO jobs_search (jobs_search) VALUES ('rebuild');
