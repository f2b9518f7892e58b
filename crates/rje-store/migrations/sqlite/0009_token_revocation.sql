-- A revoked token is kept, unusable, so that its name is never another's:
-- jobs it submitted and its audit entries stay its own.
ALTER TABLE tokens ADD COLUMN revoked_at INTEGER;
