-- API tokens: a name, a role, a scope of hosts, and only the hash of the
-- secret (SHA-256 of a 256-bit random secret; the secret is shown once).
CREATE TABLE tokens (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    -- JSON arrays of names; both empty: every host.
    hosts TEXT NOT NULL,
    labels TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER
);

-- Every request that changed something: append-only from the API's side,
-- pruned by age.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    token TEXT,
    client TEXT NOT NULL,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    target TEXT,
    status INTEGER NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_token ON audit_log (token, id);
