-- The allowed values of every enumerated column (SQLite). SQLite cannot
-- add a CHECK constraint to an existing table, and rebuilding the tables
-- would need foreign keys off, which a migration's transaction cannot do;
-- so each table gets a trigger before INSERT and one before an UPDATE of
-- those columns that abort with SQLite's own wording, "CHECK constraint
-- failed: <table>.<column>". PostgreSQL has the same rules as CHECK
-- constraints (migrations/postgres/0008_enumerations.sql). Each list is
-- what the code writes: the enum named beside it.
--
-- A trigger sees new writes only: the rows already stored are counted
-- first, and a rule one of them breaks stops the migration (and so the
-- node's start), naming the column, as PostgreSQL's VALIDATE does.

-- The rows already stored: a column whose count is not 0 fails its CHECK.
CREATE TEMP TABLE rows_outside_the_rules (
    schedules_misfire_policy BIGINT CHECK (schedules_misfire_policy = 0),
    schedules_overlap_policy BIGINT CHECK (schedules_overlap_policy = 0),
    schedules_dst_gap BIGINT CHECK (schedules_dst_gap = 0),
    schedules_dst_overlap BIGINT CHECK (schedules_dst_overlap = 0),
    fires_origin BIGINT CHECK (fires_origin = 0),
    fires_outcome BIGINT CHECK (fires_outcome = 0),
    executions_status BIGINT CHECK (executions_status = 0),
    executions_trigger BIGINT CHECK (executions_trigger = 0),
    step_runs_status BIGINT CHECK (step_runs_status = 0),
    attempts_status BIGINT CHECK (attempts_status = 0),
    api_tokens_role BIGINT CHECK (api_tokens_role = 0),
    audit_log_kind BIGINT CHECK (audit_log_kind = 0)
);
INSERT INTO rows_outside_the_rules VALUES (
    (SELECT count(*) FROM schedules WHERE misfire_policy NOT IN ('all', 'latest', 'none')),
    (SELECT count(*) FROM schedules WHERE overlap_policy NOT IN ('allow', 'skip', 'buffer_one', 'buffer_all', 'cancel_other')),
    (SELECT count(*) FROM schedules WHERE dst_gap NOT IN ('', 'shift', 'skip')),
    (SELECT count(*) FROM schedules WHERE dst_overlap NOT IN ('', 'first', 'last', 'both')),
    (SELECT count(*) FROM fires WHERE origin NOT IN ('scheduled', 'catch_up', 'backfill', 'manual')),
    (SELECT count(*) FROM fires WHERE outcome NOT IN ('enqueued', 'buffered', 'skipped', 'missed')),
    (SELECT count(*) FROM executions WHERE status NOT IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out')),
    (SELECT count(*) FROM executions WHERE "trigger" NOT IN ('api', 'cli', 'schedule', 'catch_up', 'backfill', 'manual')),
    (SELECT count(*) FROM step_runs WHERE status NOT IN ('running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'interrupted')),
    (SELECT count(*) FROM attempts WHERE status NOT IN ('running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'interrupted')),
    (SELECT count(*) FROM api_tokens WHERE role NOT IN ('viewer', 'operator', 'auditor', 'admin')),
    (SELECT count(*) FROM audit_log WHERE kind NOT IN ('capability', 'grant', 'api', 'token', 'plugin', 'schedule'))
);
DROP TABLE rows_outside_the_rules;

CREATE TRIGGER schedules_allowed_insert BEFORE INSERT ON schedules
BEGIN
    -- MisfirePolicy (model/schedule.rs)
    SELECT RAISE(ABORT, 'CHECK constraint failed: schedules.misfire_policy')
    WHERE NEW.misfire_policy NOT IN ('all', 'latest', 'none');
    -- RunOverlap
    SELECT RAISE(ABORT, 'CHECK constraint failed: schedules.overlap_policy')
    WHERE NEW.overlap_policy NOT IN ('allow', 'skip', 'buffer_one', 'buffer_all', 'cancel_other');
    -- GapPolicy (schedule/zone.rs); '' when the schedule leaves it to the default
    SELECT RAISE(ABORT, 'CHECK constraint failed: schedules.dst_gap')
    WHERE NEW.dst_gap NOT IN ('', 'shift', 'skip');
    -- OverlapPolicy (schedule/zone.rs); '' likewise
    SELECT RAISE(ABORT, 'CHECK constraint failed: schedules.dst_overlap')
    WHERE NEW.dst_overlap NOT IN ('', 'first', 'last', 'both');
END;

CREATE TRIGGER schedules_allowed_update BEFORE UPDATE OF misfire_policy, overlap_policy, dst_gap, dst_overlap ON schedules
BEGIN
    -- MisfirePolicy (model/schedule.rs)
    SELECT RAISE(ABORT, 'CHECK constraint failed: schedules.misfire_policy')
    WHERE NEW.misfire_policy NOT IN ('all', 'latest', 'none');
    -- RunOverlap
    SELECT RAISE(ABORT, 'CHECK constraint failed: schedules.overlap_policy')
    WHERE NEW.overlap_policy NOT IN ('allow', 'skip', 'buffer_one', 'buffer_all', 'cancel_other');
    -- GapPolicy (schedule/zone.rs); '' when the schedule leaves it to the default
    SELECT RAISE(ABORT, 'CHECK constraint failed: schedules.dst_gap')
    WHERE NEW.dst_gap NOT IN ('', 'shift', 'skip');
    -- OverlapPolicy (schedule/zone.rs); '' likewise
    SELECT RAISE(ABORT, 'CHECK constraint failed: schedules.dst_overlap')
    WHERE NEW.dst_overlap NOT IN ('', 'first', 'last', 'both');
END;

CREATE TRIGGER fires_allowed_insert BEFORE INSERT ON fires
BEGIN
    -- scheduler::dispatch::Origin
    SELECT RAISE(ABORT, 'CHECK constraint failed: fires.origin')
    WHERE NEW.origin NOT IN ('scheduled', 'catch_up', 'backfill', 'manual');
    -- the scheduler's module docs
    SELECT RAISE(ABORT, 'CHECK constraint failed: fires.outcome')
    WHERE NEW.outcome NOT IN ('enqueued', 'buffered', 'skipped', 'missed');
END;

CREATE TRIGGER fires_allowed_update BEFORE UPDATE OF origin, outcome ON fires
BEGIN
    -- scheduler::dispatch::Origin
    SELECT RAISE(ABORT, 'CHECK constraint failed: fires.origin')
    WHERE NEW.origin NOT IN ('scheduled', 'catch_up', 'backfill', 'manual');
    -- the scheduler's module docs
    SELECT RAISE(ABORT, 'CHECK constraint failed: fires.outcome')
    WHERE NEW.outcome NOT IN ('enqueued', 'buffered', 'skipped', 'missed');
END;

CREATE TRIGGER executions_allowed_insert BEFORE INSERT ON executions
BEGIN
    -- engine::ExecutionStatus
    SELECT RAISE(ABORT, 'CHECK constraint failed: executions.status')
    WHERE NEW.status NOT IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out');
    -- who asked for it
    SELECT RAISE(ABORT, 'CHECK constraint failed: executions.trigger')
    WHERE NEW."trigger" NOT IN ('api', 'cli', 'schedule', 'catch_up', 'backfill', 'manual');
END;

CREATE TRIGGER executions_allowed_update BEFORE UPDATE OF status, "trigger" ON executions
BEGIN
    -- engine::ExecutionStatus
    SELECT RAISE(ABORT, 'CHECK constraint failed: executions.status')
    WHERE NEW.status NOT IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out');
    -- who asked for it
    SELECT RAISE(ABORT, 'CHECK constraint failed: executions.trigger')
    WHERE NEW."trigger" NOT IN ('api', 'cli', 'schedule', 'catch_up', 'backfill', 'manual');
END;

CREATE TRIGGER step_runs_allowed_insert BEFORE INSERT ON step_runs
BEGIN
    -- engine::RunStatus
    SELECT RAISE(ABORT, 'CHECK constraint failed: step_runs.status')
    WHERE NEW.status NOT IN ('running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'interrupted');
END;

CREATE TRIGGER step_runs_allowed_update BEFORE UPDATE OF status ON step_runs
BEGIN
    -- engine::RunStatus
    SELECT RAISE(ABORT, 'CHECK constraint failed: step_runs.status')
    WHERE NEW.status NOT IN ('running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'interrupted');
END;

CREATE TRIGGER attempts_allowed_insert BEFORE INSERT ON attempts
BEGIN
    -- engine::RunStatus
    SELECT RAISE(ABORT, 'CHECK constraint failed: attempts.status')
    WHERE NEW.status NOT IN ('running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'interrupted');
END;

CREATE TRIGGER attempts_allowed_update BEFORE UPDATE OF status ON attempts
BEGIN
    -- engine::RunStatus
    SELECT RAISE(ABORT, 'CHECK constraint failed: attempts.status')
    WHERE NEW.status NOT IN ('running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'interrupted');
END;

CREATE TRIGGER api_tokens_allowed_insert BEFORE INSERT ON api_tokens
BEGIN
    -- auth::Role
    SELECT RAISE(ABORT, 'CHECK constraint failed: api_tokens.role')
    WHERE NEW.role NOT IN ('viewer', 'operator', 'auditor', 'admin');
END;

CREATE TRIGGER api_tokens_allowed_update BEFORE UPDATE OF role ON api_tokens
BEGIN
    -- auth::Role
    SELECT RAISE(ABORT, 'CHECK constraint failed: api_tokens.role')
    WHERE NEW.role NOT IN ('viewer', 'operator', 'auditor', 'admin');
END;

CREATE TRIGGER audit_log_allowed_insert BEFORE INSERT ON audit_log
BEGIN
    -- the writers of the trail (store/audit.rs)
    SELECT RAISE(ABORT, 'CHECK constraint failed: audit_log.kind')
    WHERE NEW.kind NOT IN ('capability', 'grant', 'api', 'token', 'plugin', 'schedule');
END;

CREATE TRIGGER audit_log_allowed_update BEFORE UPDATE OF kind ON audit_log
BEGIN
    -- the writers of the trail (store/audit.rs)
    SELECT RAISE(ABORT, 'CHECK constraint failed: audit_log.kind')
    WHERE NEW.kind NOT IN ('capability', 'grant', 'api', 'token', 'plugin', 'schedule');
END;
