-- Read-only links to one session's transcript, made in the web console (see docs/console.md). The link
-- carries a random token; only its hash is kept. A link works until it expires or is revoked, and only while
-- its creator (`authority`: who they signed in as, JSON) may still see the session.
CREATE TABLE shares (
    id TEXT PRIMARY KEY,
    session TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_by TEXT,
    revoked_at TEXT,
    authority TEXT NOT NULL DEFAULT ''
);
CREATE INDEX shares_session ON shares (session);
