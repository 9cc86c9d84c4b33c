-- The audit trail: append-only, hash-chained records of every capability
-- call (allowed, denied or failed) and every grant change. Each record's
-- hash covers its content and the previous record's hash (see
-- host/src/audit/mod.rs for the exact encoding), so an edited, removed or
-- reordered record breaks the chain at its position.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at_us BIGINT NOT NULL,
    -- 'capability' or 'grant'
    kind TEXT NOT NULL,
    -- Who acted, for changes made by a person ('cli:<user>', a token name).
    actor TEXT,
    plugin TEXT,
    digest TEXT,
    job_id TEXT,
    execution_id TEXT,
    step_id TEXT,
    capability TEXT,
    target TEXT,
    -- capability: allowed | denied | failed; grant: created | revoked
    decision TEXT NOT NULL,
    detail TEXT,
    grant_hint TEXT,
    duration_us BIGINT,
    -- JSON: the grant itself for grant changes.
    data TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE INDEX audit_log_plugin ON audit_log (plugin, seq);
CREATE INDEX audit_log_job ON audit_log (job_id, seq);
CREATE INDEX audit_log_at ON audit_log (at_us);

-- The head of the chain, one row. Appenders lock it first (an UPDATE on
-- SQLite, SELECT ... FOR UPDATE on PostgreSQL), so two processes appending
-- to one store never fork the chain; `meridian audit verify` also checks
-- that it names the last record.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);

INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Grants made through the CLI or the API (the config file's grants are
-- not stored): one row per grant, the spec as JSON in the grants-file
-- shape. Revoking deletes the row; the audit trail keeps the history.
CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    plugin TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    created_by TEXT NOT NULL
);

CREATE INDEX grants_plugin ON grants (plugin);
