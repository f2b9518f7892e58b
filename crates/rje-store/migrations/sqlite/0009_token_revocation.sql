-- A revoked token is kept, unusable, so that its name is never another's:
-- jobs it submitted and its audit entries stay its own.
ALTER TABLE tokens ADD COLUMN revoked_at INTEGER;

-- Names differ in more than letter case: `Reader` and `reader` would read
-- alike in the audit trail and in `submitted_by`.
CREATE UNIQUE INDEX tokens_name_folded ON tokens (lower(name));
