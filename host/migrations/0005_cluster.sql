-- Several nodes on one database: the nodes, and which node holds each
-- unfinished execution under a lease it renews with its heartbeat.
--
-- A node that stops renewing (killed, cut off) loses its leases when they
-- expire; another node then claims the execution (SELECT … FOR UPDATE SKIP
-- LOCKED on PostgreSQL) and recovers it under the job's on_interrupted
-- policy. Rows from before this migration have no lease: the first node to
-- start claims them, as recovery always did.

CREATE TABLE nodes (
    id                  TEXT PRIMARY KEY,
    -- A random id per process: tells a second process with the same node
    -- id from a restart of the first.
    instance            TEXT NOT NULL,
    hostname            TEXT NOT NULL,
    pid                 BIGINT NOT NULL,
    version             TEXT NOT NULL,
    -- Where its API listens, as the node sees it.
    listen              TEXT NOT NULL,
    started_at_us       BIGINT NOT NULL,
    heartbeat_at_us     BIGINT NOT NULL,
    -- Set by a clean stop.
    stopped_at_us       BIGINT
);

ALTER TABLE executions ADD COLUMN node_id TEXT;
ALTER TABLE executions ADD COLUMN lease_until_us BIGINT;

CREATE INDEX executions_node ON executions (node_id, status);
