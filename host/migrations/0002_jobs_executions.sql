-- Jobs with their version history, and executions with the runs of their
-- steps and the attempts of each run.
--
-- Portable SQL: the same file runs on SQLite and PostgreSQL. Instants are
-- BIGINT microseconds since the Unix epoch (UTC); local date-times are ISO
-- 8601 text without zone ('2026-03-29T02:30:00'); booleans are BOOLEAN;
-- JSON documents are TEXT. Counters and version numbers are BIGINT, as
-- they are i64 in the store's rows (PostgreSQL will not decode an INTEGER
-- as one).

-- A job's identity. Its definitions live in job_versions; a deleted job
-- keeps them (soft delete), and putting it again continues its numbering.
CREATE TABLE jobs (
    id                  TEXT PRIMARY KEY,
    -- The version in force: job_versions (id, current_version).
    current_version     BIGINT NOT NULL,
    -- Set while the job is deleted.
    deleted_at_us       BIGINT,
    created_at_us       BIGINT NOT NULL,
    updated_at_us       BIGINT NOT NULL
);

-- Every definition a job has had, numbered from 1; never changed.
CREATE TABLE job_versions (
    job_id              TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    version             BIGINT NOT NULL,
    -- The job's JSON, as put.
    definition          TEXT NOT NULL,
    created_at_us       BIGINT NOT NULL,
    PRIMARY KEY (job_id, version)
);

-- One row per execution of a job. No foreign key to jobs: the history of
-- a job outlives its deletion.
CREATE TABLE executions (
    -- UUID v7 text: ids sort by creation time.
    id                  TEXT PRIMARY KEY,
    job_id              TEXT NOT NULL,
    -- The job version it runs; set when it starts.
    job_version         BIGINT,
    -- queued | running | succeeded | failed | cancelled | timed_out
    status              TEXT NOT NULL,
    -- manual | api | schedule | catch_up | backfill
    trigger             TEXT NOT NULL,
    -- The fire that queued it, when a schedule did: the fire's identity
    -- (schedule, nominal local time, UTC offset) as in fires.
    schedule_id         TEXT,
    fire_nominal_local  TEXT,
    fire_utc_offset_s   INTEGER,
    timezone            TEXT NOT NULL,
    priority            INTEGER NOT NULL,
    -- JSON object.
    params              TEXT NOT NULL,
    -- The nominal instant it was due, when it was due at one.
    scheduled_at_us     BIGINT,
    queued_at_us        BIGINT NOT NULL,
    -- The first start: a recovered execution keeps it.
    started_at_us       BIGINT,
    finished_at_us      BIGINT,
    -- JSON, when it did not succeed.
    error               TEXT,
    -- How many step runs it has had so far (the highest step_runs.seq).
    step_runs           BIGINT NOT NULL DEFAULT 0,
    -- How many times recovery put it back in the queue after a node stopped.
    recoveries          BIGINT NOT NULL DEFAULT 0,
    cancel_requested    BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at_us       BIGINT NOT NULL
);

-- A job's executions newest first (ids sort by time) and retention.
CREATE INDEX executions_job ON executions (job_id, id);
-- The unfinished ones, at start-up.
CREATE INDEX executions_status ON executions (status);
CREATE INDEX executions_queued ON executions (queued_at_us);

-- One row per run of a step: a step can run several times in one execution
-- (a goto back to it), each run with the next seq.
CREATE TABLE step_runs (
    execution_id        TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    -- 1-based order of this run within the execution.
    seq                 BIGINT NOT NULL,
    step_id             TEXT NOT NULL,
    step_type           TEXT NOT NULL,
    -- running | succeeded | failed | cancelled | timed_out | interrupted
    status              TEXT NOT NULL,
    -- Attempts so far (the latest attempts.attempt).
    attempts            BIGINT NOT NULL,
    started_at_us       BIGINT NOT NULL,
    finished_at_us      BIGINT,
    -- JSON, from the attempt that ended the run.
    output              TEXT,
    exports             TEXT,
    error               TEXT,
    PRIMARY KEY (execution_id, seq)
);

-- One row per attempt of a step run, numbered from 1.
CREATE TABLE attempts (
    execution_id        TEXT NOT NULL,
    seq                 BIGINT NOT NULL,
    attempt             BIGINT NOT NULL,
    -- running | succeeded | failed | cancelled | timed_out | interrupted
    status              TEXT NOT NULL,
    started_at_us       BIGINT NOT NULL,
    finished_at_us      BIGINT,
    duration_us         BIGINT,
    -- JSON.
    output              TEXT,
    exports             TEXT,
    error               TEXT,
    -- JSON array of log records.
    logs                TEXT,
    host_calls          BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (execution_id, seq, attempt),
    FOREIGN KEY (execution_id, seq) REFERENCES step_runs (execution_id, seq) ON DELETE CASCADE
);
