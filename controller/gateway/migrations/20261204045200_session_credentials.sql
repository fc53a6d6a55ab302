-- A session's brokered credentials, sealed (ChaCha20-Poly1305 under a key derived from the egress CA's key),
-- so that a gateway restart keeps them. Emptied when the session ends.
ALTER TABLE sessions ADD COLUMN credentials TEXT NOT NULL DEFAULT '';
