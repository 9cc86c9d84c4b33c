-- Schedules and the identities of their fires.
--
-- Portable SQL: the same file runs on SQLite and PostgreSQL. Instants are
-- BIGINT microseconds since the Unix epoch (UTC); local date-times are ISO
-- 8601 text without zone ('2026-03-29T02:30:00'); booleans are BOOLEAN.

CREATE TABLE schedules (
    id                  TEXT PRIMARY KEY,
    job_id              TEXT NOT NULL,
    cron                TEXT NOT NULL,
    timezone            TEXT NOT NULL,
    enabled             BOOLEAN NOT NULL,
    start_at_us         BIGINT,
    end_at_us           BIGINT,
    misfire_window_s    BIGINT NOT NULL,
    misfire_policy      TEXT NOT NULL,
    overlap_policy      TEXT NOT NULL,
    dst_gap             TEXT NOT NULL,
    dst_overlap         TEXT NOT NULL,
    jitter_s            BIGINT NOT NULL,
    priority            INTEGER NOT NULL,
    -- The nominal instant of the latest fire handled; the scheduler resumes
    -- after it, and misfire policies measure from it.
    cursor_us           BIGINT,
    created_at_us       BIGINT NOT NULL,
    updated_at_us       BIGINT NOT NULL
);

CREATE INDEX schedules_job ON schedules (job_id);

-- One row per fire: (schedule, nominal local time, UTC offset) is the
-- fire's identity, and the primary key makes firing exactly-once, also
-- across restarts and nodes.
CREATE TABLE fires (
    schedule_id         TEXT NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    nominal_local       TEXT NOT NULL,
    utc_offset_s        INTEGER NOT NULL,
    fire_at_us          BIGINT NOT NULL,
    -- scheduled | catch_up | backfill
    origin              TEXT NOT NULL,
    -- enqueued | skipped
    outcome             TEXT NOT NULL,
    run_id              TEXT,
    created_at_us       BIGINT NOT NULL,
    PRIMARY KEY (schedule_id, nominal_local, utc_offset_s)
);

CREATE INDEX fires_time ON fires (fire_at_us);
