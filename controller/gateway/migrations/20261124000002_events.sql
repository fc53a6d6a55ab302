-- Transcript events of each session, in order, for `paddock session logs` (live and replayed).
CREATE TABLE events (
    session TEXT NOT NULL,
    seq BIGINT NOT NULL,
    ts TEXT NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (session, seq)
);
