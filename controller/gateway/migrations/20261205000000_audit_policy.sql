-- Decision counts per Policy (`GET /v1/policies/decisions`) read the rows a policy decided: denies, asks and
-- their answers, a small part of the log (allows name no policy). Partial, so the many allows cost nothing.
CREATE INDEX audit_policy ON audit (policy) WHERE policy IS NOT NULL;
