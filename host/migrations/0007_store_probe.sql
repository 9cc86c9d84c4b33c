-- One row the health check writes (and overwrites) each time it runs: a
-- store that answers reads but takes no writes (its disk full, a read-only
-- replica or transaction mode) fails the check, where `SELECT 1` passed.

CREATE TABLE store_probe (
    id      BIGINT PRIMARY KEY,
    at_us   BIGINT NOT NULL
);
