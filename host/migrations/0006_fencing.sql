-- Fencing: every claim and every start of an execution moves its epoch on,
-- and every later write of that execution (attempts, its end, a requeue)
-- names the epoch its writer holds and changes nothing when the epoch has
-- moved. A node cut off from the database long enough to lose its lease
-- can therefore not overwrite what the node that took over records: its
-- writes are refused, and its engine stops the run.

ALTER TABLE executions ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;

-- Leases and heartbeats are stamped with the database's clock. Each node
-- also measures how far its own clock is from the database's at every
-- heartbeat, corrects its scheduler by it, and records it here for
-- operators (`GET /api/v2/cluster`).
ALTER TABLE nodes ADD COLUMN clock_offset_us BIGINT;
