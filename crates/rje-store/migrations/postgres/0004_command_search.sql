-- A trigram index of the commands, so that a list's text search (ILIKE)
-- finds a few jobs among millions without reading every command. pg_trgm
-- ships with PostgreSQL and is a trusted extension; where it cannot be
-- created, search still works, by scanning.
DO $$
BEGIN
    -- In public, so that no schema dropped later takes it along.
    CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm is unavailable (%): command search will scan', SQLERRM;
END
$$;

DO $$
DECLARE
    trgm_schema TEXT;
BEGIN
    SELECT n.nspname INTO trgm_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
    IF trgm_schema IS NOT NULL THEN
        EXECUTE format(
            'CREATE INDEX jobs_command_trgm ON jobs USING gin (command %I.gin_trgm_ops)',
            trgm_schema
        );
    END IF;
END
$$;
