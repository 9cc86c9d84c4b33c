-- The allowed values of every enumerated column, as CHECK constraints
-- (PostgreSQL; SQLite has the same rules as triggers in
-- migrations/sqlite/0008_enumerations.sql, because SQLite cannot add a
-- constraint to an existing table). Each list is what the code writes: the
-- enum named beside it. Until now the lists lived only in comments.
--
-- Each constraint is added NOT VALID and then validated: validating scans
-- the table under a lock that lets reads and writes go on, where adding a
-- checked constraint at once would block writes for the scan. A row that
-- breaks a rule stops the migration (and so the node's start) with the
-- constraint's name: a store written by a build that wrote something else.

-- schedules
-- misfire_policy: MisfirePolicy (model/schedule.rs)
ALTER TABLE schedules ADD CONSTRAINT schedules_misfire_policy_allowed
    CHECK (misfire_policy IN ('all', 'latest', 'none')) NOT VALID;
ALTER TABLE schedules VALIDATE CONSTRAINT schedules_misfire_policy_allowed;
-- overlap_policy: RunOverlap
ALTER TABLE schedules ADD CONSTRAINT schedules_overlap_policy_allowed
    CHECK (overlap_policy IN ('allow', 'skip', 'buffer_one', 'buffer_all', 'cancel_other')) NOT VALID;
ALTER TABLE schedules VALIDATE CONSTRAINT schedules_overlap_policy_allowed;
-- dst_gap: GapPolicy (schedule/zone.rs); '' when the schedule leaves it to the default
ALTER TABLE schedules ADD CONSTRAINT schedules_dst_gap_allowed
    CHECK (dst_gap IN ('', 'shift', 'skip')) NOT VALID;
ALTER TABLE schedules VALIDATE CONSTRAINT schedules_dst_gap_allowed;
-- dst_overlap: OverlapPolicy (schedule/zone.rs); '' likewise
ALTER TABLE schedules ADD CONSTRAINT schedules_dst_overlap_allowed
    CHECK (dst_overlap IN ('', 'first', 'last', 'both')) NOT VALID;
ALTER TABLE schedules VALIDATE CONSTRAINT schedules_dst_overlap_allowed;

-- fires
-- origin: scheduler::dispatch::Origin
ALTER TABLE fires ADD CONSTRAINT fires_origin_allowed
    CHECK (origin IN ('scheduled', 'catch_up', 'backfill', 'manual')) NOT VALID;
ALTER TABLE fires VALIDATE CONSTRAINT fires_origin_allowed;
-- outcome: the scheduler's module docs
ALTER TABLE fires ADD CONSTRAINT fires_outcome_allowed
    CHECK (outcome IN ('enqueued', 'buffered', 'skipped', 'missed')) NOT VALID;
ALTER TABLE fires VALIDATE CONSTRAINT fires_outcome_allowed;

-- executions
-- status: engine::ExecutionStatus
ALTER TABLE executions ADD CONSTRAINT executions_status_allowed
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out')) NOT VALID;
ALTER TABLE executions VALIDATE CONSTRAINT executions_status_allowed;
-- trigger: who asked for it
ALTER TABLE executions ADD CONSTRAINT executions_trigger_allowed
    CHECK ("trigger" IN ('api', 'cli', 'schedule', 'catch_up', 'backfill', 'manual')) NOT VALID;
ALTER TABLE executions VALIDATE CONSTRAINT executions_trigger_allowed;

-- step_runs
-- status: engine::RunStatus
ALTER TABLE step_runs ADD CONSTRAINT step_runs_status_allowed
    CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'interrupted')) NOT VALID;
ALTER TABLE step_runs VALIDATE CONSTRAINT step_runs_status_allowed;

-- attempts
-- status: engine::RunStatus
ALTER TABLE attempts ADD CONSTRAINT attempts_status_allowed
    CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'interrupted')) NOT VALID;
ALTER TABLE attempts VALIDATE CONSTRAINT attempts_status_allowed;

-- api_tokens
-- role: auth::Role
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_allowed
    CHECK (role IN ('viewer', 'operator', 'auditor', 'admin')) NOT VALID;
ALTER TABLE api_tokens VALIDATE CONSTRAINT api_tokens_role_allowed;

-- audit_log
-- kind: the writers of the trail (store/audit.rs)
ALTER TABLE audit_log ADD CONSTRAINT audit_log_kind_allowed
    CHECK (kind IN ('capability', 'grant', 'api', 'token', 'plugin', 'schedule')) NOT VALID;
ALTER TABLE audit_log VALIDATE CONSTRAINT audit_log_kind_allowed;
