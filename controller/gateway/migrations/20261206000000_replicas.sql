-- What several gateway replicas on one PostgreSQL share besides the ledger. On SQLite (one gateway) the
-- columns stay at zero and the tables stay empty: that gateway keeps the same state in memory.
-- The worst case of a session's model requests in flight on any replica, and of an owner's today.
ALTER TABLE sessions ADD COLUMN reserved_usd DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE user_daily ADD COLUMN reserved_usd DOUBLE PRECISION NOT NULL DEFAULT 0;
-- One row per hold, naming the replica that holds it: the holds of a replica that stopped beating are
-- charged (their responses' usage never arrives), so that a replica killed mid-stream loses nothing billed.
CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    session TEXT NOT NULL,
    owner TEXT NOT NULL,
    day TEXT NOT NULL,
    model TEXT NOT NULL,
    usd DOUBLE PRECISION NOT NULL,
    replica TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX holds_replica ON holds (replica);
-- The Agents and Policies last pushed (`PUT /v1/policies`), which every replica loads.
CREATE TABLE policy_sets (
    id INTEGER PRIMARY KEY,
    revision TEXT NOT NULL,
    body TEXT NOT NULL,
    pushed_at TEXT NOT NULL
);
-- Each replica's heartbeat (Unix seconds) and the revision it enforces.
CREATE TABLE gateway_replicas (
    id TEXT PRIMARY KEY,
    revision TEXT NOT NULL,
    started_at TEXT NOT NULL,
    seen_at BIGINT NOT NULL
);
-- Tool calls already decided, so that a hook asking again on another replica gets the same answer.
CREATE TABLE decided_tools (
    session TEXT NOT NULL,
    tool_id TEXT NOT NULL,
    call TEXT NOT NULL,
    ruling TEXT NOT NULL,
    PRIMARY KEY (session, tool_id)
);
