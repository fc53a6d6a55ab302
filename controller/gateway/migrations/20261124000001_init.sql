-- Portable SQL: the same schema serves SQLite (default) and PostgreSQL (several replicas).
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    agent TEXT NOT NULL,
    owner TEXT NOT NULL,
    parent TEXT,
    token_hash TEXT NOT NULL UNIQUE,
    phase TEXT NOT NULL,
    reason TEXT,
    created_at TEXT NOT NULL,
    ended_at TEXT,
    state TEXT NOT NULL
);

-- One row per metered model call: the ledger. Never updated.
CREATE TABLE charges (
    id TEXT PRIMARY KEY,
    ts TEXT NOT NULL,
    session TEXT NOT NULL,
    owner TEXT NOT NULL,
    day TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION,
    stream_complete BIGINT NOT NULL
);
CREATE INDEX charges_session ON charges (session);

CREATE TABLE user_daily (
    owner TEXT NOT NULL,
    day TEXT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    approved_usd DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (owner, day)
);

CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    session TEXT NOT NULL,
    phase TEXT NOT NULL,
    summary TEXT NOT NULL,
    reason TEXT NOT NULL,
    policy TEXT,
    rule TEXT,
    status TEXT NOT NULL,
    decided_by TEXT,
    decision_reason TEXT,
    created_at TEXT NOT NULL,
    decided_at TEXT
);
CREATE INDEX approvals_status ON approvals (status);

-- Every decision. Never updated.
CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    ts TEXT NOT NULL,
    session TEXT NOT NULL,
    agent TEXT NOT NULL,
    owner TEXT NOT NULL,
    revision TEXT NOT NULL,
    phase TEXT NOT NULL,
    policy TEXT,
    rule TEXT,
    verdict TEXT NOT NULL,
    reason TEXT NOT NULL,
    tool TEXT,
    approval_id TEXT,
    decided_by TEXT
);
CREATE INDEX audit_session ON audit (session);
