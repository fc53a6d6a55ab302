-- The last record of the gateway's own log (SQLite) that this database holds, written in the same
-- transaction as the record's rows, so that a replay after a crash applies each record once.
CREATE TABLE journal_applied (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL);
INSERT INTO journal_applied (id, seq) VALUES (1, 0);
