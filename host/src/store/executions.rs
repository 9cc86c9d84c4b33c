//! Executions, the runs of their steps, and the attempts of each run.
//!
//! The engine writes here for every execution. Its five hot-path writes
//! (insert, start and finish an execution, start and finish an attempt)
//! go through the store's group-commit writer (`writer.rs`): many callers'
//! writes share one transaction, each answered once it is committed. Each
//! is a single statement or, for the two that change several tables, a
//! batch of statements in its own savepoint, with no reads beyond what the
//! call returns. State changes are guarded by the status they start from
//! (`… WHERE status = 'queued'`) and report whether they happened, so a
//! late or repeated call changes nothing.

/// An execution to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewExecution {
    /// UUID v7 text, so ids sort by creation time.
    pub id: String,
    /// The job it runs.
    pub job_id: String,
    /// `manual`, `api`, `schedule`, `catch_up` or `backfill`.
    pub trigger: String,
    /// The schedule whose fire queued it.
    pub schedule_id: Option<String>,
    /// That fire's nominal local date-time, `YYYY-MM-DDTHH:MM:SS`.
    pub fire_nominal_local: Option<String>,
    /// That fire's UTC offset.
    pub fire_utc_offset_s: Option<i32>,
    /// The zone it runs in (IANA name).
    pub timezone: String,
    /// Higher runs first.
    pub priority: i32,
    /// Its parameters, a JSON object.
    pub params: String,
    /// The nominal instant it was due at, when it was due at one.
    pub scheduled_at_us: Option<i64>,
    /// When it was queued.
    pub queued_at_us: i64,
}

/// A stored execution, field for field as in the `executions` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRow {
    /// UUID v7 text.
    pub id: String,
    /// The job it runs.
    pub job_id: String,
    /// The job version it runs; set when it starts.
    pub job_version: Option<i64>,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled` or
    /// `timed_out`.
    pub status: String,
    /// `manual`, `api`, `schedule`, `catch_up` or `backfill`.
    pub trigger: String,
    /// The schedule whose fire queued it.
    pub schedule_id: Option<String>,
    /// That fire's nominal local date-time.
    pub fire_nominal_local: Option<String>,
    /// That fire's UTC offset.
    pub fire_utc_offset_s: Option<i32>,
    /// The zone it runs in.
    pub timezone: String,
    /// Higher runs first.
    pub priority: i32,
    /// Its parameters, a JSON object.
    pub params: String,
    /// The nominal instant it was due at.
    pub scheduled_at_us: Option<i64>,
    /// When it was queued.
    pub queued_at_us: i64,
    /// When it first started (a recovered execution keeps it).
    pub started_at_us: Option<i64>,
    /// When it finished.
    pub finished_at_us: Option<i64>,
    /// Why it did not succeed, JSON.
    pub error: Option<String>,
    /// How many step runs it has had so far.
    pub step_runs: i64,
    /// How many times recovery queued it again.
    pub recoveries: i64,
    /// Whether a cancellation was asked for.
    pub cancel_requested: bool,
    /// When the row last changed.
    pub updated_at_us: i64,
    /// The node that holds it (queued it, or took it over); see
    /// `backend/cluster.rs`.
    pub node_id: Option<String>,
    /// Its fencing epoch: moved on by every claim and every start, and
    /// named by every later write, which is refused once it moved (see
    /// `backend/cluster.rs`).
    pub epoch: i64,
}

/// A stored step run, field for field as in the `step_runs` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRunRow {
    /// The execution it belongs to.
    pub execution_id: String,
    /// 1-based order of this run within the execution.
    pub seq: i64,
    /// The step's id in the job.
    pub step_id: String,
    /// The step's type.
    pub step_type: String,
    /// `running`, `succeeded`, `failed`, `cancelled`, `timed_out` or
    /// `interrupted`.
    pub status: String,
    /// How many attempts it has had so far.
    pub attempts: i64,
    /// When its first attempt started.
    pub started_at_us: i64,
    /// When it ended.
    pub finished_at_us: Option<i64>,
    /// The output of the attempt that ended it, JSON.
    pub output: Option<String>,
    /// The exports of the attempt that ended it, JSON.
    pub exports: Option<String>,
    /// The error of the attempt that ended it, JSON.
    pub error: Option<String>,
}

/// A stored attempt, field for field as in the `attempts` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    /// The execution it belongs to.
    pub execution_id: String,
    /// Its step run's seq.
    pub seq: i64,
    /// 1-based number of this attempt within its step run.
    pub attempt: i64,
    /// `running`, `succeeded`, `failed`, `cancelled`, `timed_out` or
    /// `interrupted`.
    pub status: String,
    /// When it started.
    pub started_at_us: i64,
    /// When it ended.
    pub finished_at_us: Option<i64>,
    /// How long it ran.
    pub duration_us: Option<i64>,
    /// Its output, JSON.
    pub output: Option<String>,
    /// Its exports, JSON.
    pub exports: Option<String>,
    /// Its error, JSON.
    pub error: Option<String>,
    /// Its log records, a JSON array.
    pub logs: Option<String>,
    /// How many host calls it made.
    pub host_calls: i64,
}

/// An attempt starting: [`Store::start_attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptStart {
    /// The running execution.
    pub execution_id: String,
    /// The step run's seq: the next one for a new run.
    pub seq: i64,
    /// The step's id in the job.
    pub step_id: String,
    /// The step's type.
    pub step_type: String,
    /// 1 for a new step run; the next number for a retry.
    pub attempt: i64,
    /// Now.
    pub now_us: i64,
    /// The epoch the writer holds the execution under: the write is
    /// refused (`Ok(false)`) when it moved.
    pub epoch: i64,
}

/// An attempt ending: [`Store::finish_attempt`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttemptFinish {
    /// The execution.
    pub execution_id: String,
    /// The step run's seq.
    pub seq: i64,
    /// The attempt's number.
    pub attempt: i64,
    /// `succeeded`, `failed`, `cancelled` or `timed_out`.
    pub status: String,
    /// Now.
    pub now_us: i64,
    /// How long it ran.
    pub duration_us: i64,
    /// Its output, JSON.
    pub output: Option<String>,
    /// Its exports, JSON.
    pub exports: Option<String>,
    /// Its error, JSON.
    pub error: Option<String>,
    /// Its log records, a JSON array.
    pub logs: Option<String>,
    /// How many host calls it made.
    pub host_calls: i64,
    /// Whether this attempt ends the step run (no retry follows): the
    /// run then takes the attempt's status, output, exports and error.
    pub step_done: bool,
    /// The epoch the writer holds the execution under: the write is
    /// refused (`Ok(false)`) when it moved.
    pub epoch: i64,
}

/// Which executions [`Store::list_executions`] returns. `None` fields do
/// not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    /// Of this job.
    pub job_id: Option<String>,
    /// With this status.
    pub status: Option<String>,
    /// Queued by this schedule.
    pub schedule_id: Option<String>,
    /// Queued at or after this instant.
    pub since_us: Option<i64>,
    /// Queued before this instant.
    pub until_us: Option<i64>,
    /// Older than this execution (keyset cursor: pass the last id of the
    /// previous page).
    pub before_id: Option<String>,
    /// At most this many.
    pub limit: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FireRow, ScheduleRow};
    #[allow(unused_imports)]
    use crate::store::{INTERRUPTED, Store, StoreError};
    use futures::FutureExt as _;

    fn new_execution(id: &str, job: &str, queued_at_us: i64) -> NewExecution {
        NewExecution {
            id: id.into(),
            job_id: job.into(),
            trigger: "api".into(),
            schedule_id: None,
            fire_nominal_local: None,
            fire_utc_offset_s: None,
            timezone: "Europe/Berlin".into(),
            priority: 0,
            params: "{}".into(),
            scheduled_at_us: None,
            queued_at_us,
        }
    }

    fn attempt_start(id: &str, seq: i64, step: &str, attempt: i64, now_us: i64) -> AttemptStart {
        AttemptStart {
            execution_id: id.into(),
            seq,
            step_id: step.into(),
            step_type: "http".into(),
            attempt,
            now_us,
            epoch: 1,
        }
    }

    fn attempt_finish(id: &str, seq: i64, attempt: i64, status: &str, done: bool) -> AttemptFinish {
        AttemptFinish {
            execution_id: id.into(),
            seq,
            attempt,
            status: status.into(),
            now_us: 1_000 * seq + attempt,
            duration_us: 7,
            output: Some(format!(r#"{{"seq":{seq},"attempt":{attempt}}}"#)),
            exports: Some("{}".into()),
            error: (status != "succeeded").then(|| r#"{"kind":"failed"}"#.into()),
            logs: Some("[]".into()),
            host_calls: 3,
            step_done: done,
            epoch: 1,
        }
    }

    /// A running execution `id` of job `job`.
    async fn running(store: &Store, id: &str, job: &str, queued_at_us: i64) {
        store
            .insert_execution(&new_execution(id, job, queued_at_us))
            .await
            .unwrap();
        assert!(
            store
                .start_execution(id, 1, 0, queued_at_us + 1)
                .await
                .unwrap()
        );
    }

    /// A finished execution `id` of job `job`, with one step run.
    async fn finished(store: &Store, id: &str, job: &str, at_us: i64) {
        running(store, id, job, at_us).await;
        assert!(
            store
                .start_attempt(&attempt_start(id, 1, "a", 1, at_us))
                .await
                .unwrap()
        );
        let done = attempt_finish(id, 1, 1, "succeeded", true);
        assert!(store.finish_attempt(&done).await.unwrap());
        assert!(
            store
                .finish_execution(id, "succeeded", None, 1, 1, at_us)
                .await
                .unwrap()
        );
    }

    crate::store_test! {
        /// Every value of a batch of fires and executions comes back as
        /// given, whether its column holds the same value in every row
        /// (bound once on SQLite) or not: quotes, backslashes and
        /// non-ASCII text, a NULL beside values, extreme integers. A
        /// single-row batch has every column the same.
        async fn a_batch_stores_every_value_as_given(store) {
            store.insert_schedule(&schedule()).await.unwrap();
            let texts = ["it's", "say \"hi\"", "back\\slash", "ünï ☃ 日本"];
            let fires: Vec<FireRow> = (0..4)
                .map(|m| FireRow {
                    origin: ["scheduled", "catch_up"][m % 2].into(),
                    outcome: ["enqueued", "buffered"][m / 2].into(),
                    created_at_us: [i64::MAX, i64::MIN, 0, -1][m],
                    ..fire_with_run(m, &format!("run-{m}"))
                })
                .collect();
            let executions: Vec<NewExecution> = fires
                .iter()
                .enumerate()
                .map(|(m, f)| NewExecution {
                    trigger: ["schedule", "catch_up"][m % 2].into(),
                    params: serde_json::json!({ "text": texts[m] }).to_string(),
                    priority: [i32::MIN, -1, 0, i32::MAX][m],
                    timezone: texts[m].into(),
                    fire_nominal_local: (m != 2).then(|| f.nominal_local.clone()),
                    job_id: texts[3 - m].into(),
                    ..fired_execution(f.run_id.as_deref().unwrap(), f)
                })
                .collect();
            let one = FireRow {
                nominal_local: texts[3].into(),
                ..fire_with_run(100, "run-single")
            };
            let single = fired_execution("run-single", &one);
            // Nothing to store (a backfill of an empty range) is no error.
            assert!(store.record_fires_with_executions(&[], &[]).await.unwrap().is_empty());
            assert_eq!(
                store
                    .record_fires_with_executions(&fires, &executions)
                    .await
                    .unwrap(),
                [true; 4]
            );
            assert_eq!(
                store
                    .record_fires_with_executions(std::slice::from_ref(&one), std::slice::from_ref(&single))
                    .await
                    .unwrap(),
                [true]
            );
            let mut stored = store.list_fires("s1", 10).await.unwrap();
            stored.sort_by_key(|f| f.fire_at_us);
            let mut want = fires.clone();
            want.push(one);
            assert_eq!(stored, want);
            for e in executions.iter().chain([&single]) {
                let got = store.get_execution(&e.id).await.unwrap().unwrap();
                let got = (
                    got.job_id, got.status, got.trigger, got.schedule_id,
                    got.fire_nominal_local, got.fire_utc_offset_s, got.timezone,
                    got.priority, got.params, got.scheduled_at_us, got.queued_at_us,
                );
                let want = (
                    e.job_id.clone(), "queued".to_owned(), e.trigger.clone(),
                    e.schedule_id.clone(), e.fire_nominal_local.clone(),
                    e.fire_utc_offset_s, e.timezone.clone(), e.priority,
                    e.params.clone(), e.scheduled_at_us, e.queued_at_us,
                );
                assert_eq!(got, want, "{}", e.id);
            }
        }
    }

    crate::store_test! {
        /// Regression: a one-fire batch has every column bound as a
        /// parameter, and a skipped fire's `run_id` is NULL. PostgreSQL
        /// keeps the parameter types of a statement's first preparation, so
        /// a NULL bound with a guessed type made every later enqueued fire
        /// on that pooled connection fail (`incorrect binary data format in
        /// bind parameter 8`). Skipped and enqueued one-fire batches,
        /// alternating, are all stored.
        async fn skipped_and_enqueued_one_fire_batches_alternate(store) {
            store.insert_schedule(&schedule()).await.unwrap();
            for minute in 0..12 {
                if minute % 2 == 0 {
                    let skipped = FireRow {
                        outcome: "skipped".into(),
                        run_id: None,
                        ..fire_with_run(minute, "unused")
                    };
                    let stored = store
                        .record_fires_with_executions(std::slice::from_ref(&skipped), &[])
                        .await
                        .unwrap_or_else(|e| panic!("skipped fire {minute}: {e}"));
                    assert_eq!(stored, [true], "skipped fire {minute}");
                } else {
                    let run_id = format!("run-{minute}");
                    let fire = fire_with_run(minute, &run_id);
                    let execution = fired_execution(&run_id, &fire);
                    let stored = store
                        .record_fires_with_executions(
                            std::slice::from_ref(&fire),
                            std::slice::from_ref(&execution),
                        )
                        .await
                        .unwrap_or_else(|e| panic!("enqueued fire {minute}: {e}"));
                    assert_eq!(stored, [true], "enqueued fire {minute}");
                    let queued = store.get_execution(&run_id).await.unwrap();
                    assert_eq!(queued.map(|e| e.status).as_deref(), Some("queued"));
                }
            }
            let fires = store.list_fires("s1", 100).await.unwrap();
            assert_eq!(fires.len(), 12);
            let skipped = fires.iter().filter(|f| f.outcome == "skipped" && f.run_id.is_none());
            assert_eq!(skipped.count(), 6);
        }
    }

    crate::store_test! {
        async fn an_execution_goes_from_queued_to_running_to_finished_once(store) {
            let new = NewExecution {
                trigger: "schedule".into(),
                schedule_id: Some("s1".into()),
                fire_nominal_local: Some("2026-03-29T02:30:00".into()),
                fire_utc_offset_s: Some(7200),
                priority: -3,
                params: r#"{"x":1}"#.into(),
                scheduled_at_us: Some(90),
                ..new_execution("e1", "job", 100)
            };
            store.insert_execution(&new).await.unwrap();
            assert!(matches!(
                store.insert_execution(&new).await,
                Err(StoreError::Conflict {
                    what: "execution",
                    ..
                })
            ));
            let queued = store.get_execution("e1").await.unwrap().unwrap();
            assert_eq!(
                queued,
                ExecutionRow {
                    id: "e1".into(),
                    job_id: "job".into(),
                    job_version: None,
                    status: "queued".into(),
                    trigger: "schedule".into(),
                    schedule_id: Some("s1".into()),
                    fire_nominal_local: Some("2026-03-29T02:30:00".into()),
                    fire_utc_offset_s: Some(7200),
                    timezone: "Europe/Berlin".into(),
                    priority: -3,
                    params: r#"{"x":1}"#.into(),
                    scheduled_at_us: Some(90),
                    queued_at_us: 100,
                    started_at_us: None,
                    finished_at_us: None,
                    error: None,
                    step_runs: 0,
                    recoveries: 0,
                    cancel_requested: false,
                    updated_at_us: 100,
                    node_id: Some("local".into()),
                    epoch: 0,
                }
            );
            assert!(store.start_execution("e1", 4, 0, 110).await.unwrap());
            assert!(!store.start_execution("e1", 5, 0, 120).await.unwrap());
            assert!(!store.start_execution("e1", 5, 1, 120).await.unwrap(), "running");
            assert!(!store.start_execution("missing", 1, 0, 120).await.unwrap());
            let started = store.get_execution("e1").await.unwrap().unwrap();
            assert_eq!(started.status, "running");
            assert_eq!(started.job_version, Some(4));
            assert_eq!(started.started_at_us, Some(110));
            assert!(
                store
                    .finish_execution("e1", "succeeded", None, 2, 1, 130)
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .finish_execution("e1", "failed", Some("{}"), 3, 1, 140)
                    .await
                    .unwrap()
            );
            assert!(!store.start_execution("e1", 4, 0, 150).await.unwrap());
            let done = store.get_execution("e1").await.unwrap().unwrap();
            assert_eq!(
                (
                    done.status.as_str(),
                    done.error,
                    done.step_runs,
                    done.finished_at_us
                ),
                ("succeeded", None, 2, Some(130))
            );
            assert_eq!(done.updated_at_us, 130);
            // A queued execution can finish without starting (e.g. invalid).
            store
                .insert_execution(&new_execution("e2", "job", 200))
                .await
                .unwrap();
            let error = r#"{"kind":"invalid"}"#;
            assert!(
                store
                    .finish_execution("e2", "failed", Some(error), 0, 0, 210)
                    .await
                    .unwrap()
            );
            let e2 = store.get_execution("e2").await.unwrap().unwrap();
            assert_eq!(
                (e2.status.as_str(), e2.error.as_deref()),
                ("failed", Some(error))
            );
            assert_eq!(store.get_execution("missing").await.unwrap(), None);
        }
    }

    crate::store_test! {
        async fn retries_count_attempts_and_gotos_add_step_runs(store) {
            store
                .insert_execution(&new_execution("e1", "job", 1))
                .await
                .unwrap();
            // Not running yet: nothing is written.
            assert!(
                !store
                    .start_attempt(&attempt_start("e1", 1, "a", 1, 2))
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .start_attempt(&attempt_start("nope", 1, "a", 1, 2))
                    .await
                    .unwrap()
            );
            assert!(store.list_step_runs("e1").await.unwrap().is_empty());
            assert!(store.start_execution("e1", 1, 0, 2).await.unwrap());

            // Step a: fails once, then succeeds.
            assert!(
                store
                    .start_attempt(&attempt_start("e1", 1, "a", 1, 10))
                    .await
                    .unwrap()
            );
            assert!(matches!(
                store
                    .start_attempt(&attempt_start("e1", 1, "a", 1, 15))
                    .await,
                Err(StoreError::Conflict {
                    what: "attempt",
                    ..
                })
            ));
            // The failed batch was rolled back, its first statement included.
            assert_eq!(
                store
                    .get_execution("e1")
                    .await
                    .unwrap()
                    .unwrap()
                    .updated_at_us,
                10
            );
            assert!(
                store
                    .finish_attempt(&attempt_finish("e1", 1, 1, "failed", false))
                    .await
                    .unwrap()
            );
            // Finishing it again changes nothing.
            assert!(
                !store
                    .finish_attempt(&attempt_finish("e1", 1, 1, "succeeded", true))
                    .await
                    .unwrap()
            );
            let runs = store.list_step_runs("e1").await.unwrap();
            assert_eq!((runs[0].status.as_str(), runs[0].attempts), ("running", 1));
            assert_eq!(runs[0].finished_at_us, None);
            assert!(
                store
                    .start_attempt(&attempt_start("e1", 1, "a", 2, 20))
                    .await
                    .unwrap()
            );
            assert!(matches!(
                store
                    .start_attempt(&attempt_start("e1", 1, "a", 2, 20))
                    .await,
                Err(StoreError::Conflict {
                    what: "attempt",
                    ..
                })
            ));
            assert!(
                store
                    .finish_attempt(&attempt_finish("e1", 1, 2, "succeeded", true))
                    .await
                    .unwrap()
            );
            // Step b, then a goto back to a: a new run of a, seq 3.
            for (seq, step) in [(2, "b"), (3, "a")] {
                assert!(
                    store
                        .start_attempt(&attempt_start("e1", seq, step, 1, 10 * seq))
                        .await
                        .unwrap()
                );
                let finish = attempt_finish("e1", seq, 1, "succeeded", true);
                assert!(store.finish_attempt(&finish).await.unwrap());
            }
            assert!(matches!(
                store
                    .start_attempt(&attempt_start("e1", 9, "a", 2, 99))
                    .await,
                Err(StoreError::NotFound {
                    what: "step run",
                    ..
                })
            ));

            let runs = store.list_step_runs("e1").await.unwrap();
            assert_eq!(
                runs.iter()
                    .map(|r| (r.seq, r.step_id.as_str(), r.status.as_str(), r.attempts))
                    .collect::<Vec<_>>(),
                [
                    (1, "a", "succeeded", 2),
                    (2, "b", "succeeded", 1),
                    (3, "a", "succeeded", 1)
                ]
            );
            assert_eq!(
                runs[0],
                StepRunRow {
                    execution_id: "e1".into(),
                    seq: 1,
                    step_id: "a".into(),
                    step_type: "http".into(),
                    status: "succeeded".into(),
                    attempts: 2,
                    started_at_us: 10,
                    finished_at_us: Some(1_002),
                    output: Some(r#"{"seq":1,"attempt":2}"#.into()),
                    exports: Some("{}".into()),
                    error: None,
                }
            );
            let attempts = store.list_attempts("e1").await.unwrap();
            assert_eq!(
                attempts
                    .iter()
                    .map(|a| (a.seq, a.attempt))
                    .collect::<Vec<_>>(),
                [(1, 1), (1, 2), (2, 1), (3, 1)]
            );
            assert_eq!(
                attempts[0],
                AttemptRow {
                    execution_id: "e1".into(),
                    seq: 1,
                    attempt: 1,
                    status: "failed".into(),
                    started_at_us: 10,
                    finished_at_us: Some(1_001),
                    duration_us: Some(7),
                    output: Some(r#"{"seq":1,"attempt":1}"#.into()),
                    exports: Some("{}".into()),
                    error: Some(r#"{"kind":"failed"}"#.into()),
                    logs: Some("[]".into()),
                    host_calls: 3,
                }
            );
            let e1 = store.get_execution("e1").await.unwrap().unwrap();
            assert_eq!((e1.step_runs, e1.updated_at_us), (3, 30));
            // Finished: no more attempts.
            assert!(
                store
                    .finish_execution("e1", "succeeded", None, 3, 1, 40)
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .start_attempt(&attempt_start("e1", 4, "c", 1, 50))
                    .await
                    .unwrap()
            );
        }
    }

    crate::store_test! {
        async fn listing_filters_and_pages_newest_first(store) {
            // Ids sort like the time they were made, as UUID v7 do.
            let batch: Vec<NewExecution> = (0..205)
                .map(|i| NewExecution {
                    schedule_id: (i % 5 == 0).then(|| "s1".to_string()),
                    ..new_execution(
                        &format!("e{i:04}"),
                        if i % 2 == 0 { "even" } else { "odd" },
                        i as i64,
                    )
                })
                .collect();
            store.insert_executions(&batch).await.unwrap();
            for id in ["e0004", "e0006"] {
                assert!(store.start_execution(id, 1, 0, 1_000).await.unwrap());
            }
            let ids = |rows: Vec<ExecutionRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
            let all = ExecutionFilter {
                limit: 1_000,
                ..ExecutionFilter::default()
            };
            let everything = ids(store.list_executions(&all).await.unwrap());
            assert_eq!(everything.len(), batch.len());
            assert_eq!(everything[0], "e0204");
            assert!(everything.windows(2).all(|w| w[0] > w[1]));

            let even = ExecutionFilter {
                job_id: Some("even".into()),
                limit: 3,
                ..ExecutionFilter::default()
            };
            assert_eq!(
                ids(store.list_executions(&even).await.unwrap()),
                ["e0204", "e0202", "e0200"]
            );
            let page2 = ExecutionFilter {
                before_id: Some("e0200".into()),
                ..even.clone()
            };
            assert_eq!(
                ids(store.list_executions(&page2).await.unwrap()),
                ["e0198", "e0196", "e0194"]
            );

            let running = ExecutionFilter {
                status: Some("running".into()),
                limit: 10,
                ..ExecutionFilter::default()
            };
            assert_eq!(
                ids(store.list_executions(&running).await.unwrap()),
                ["e0006", "e0004"]
            );

            // Every filter at once: [since, until) on the queue time.
            let narrow = ExecutionFilter {
                job_id: Some("even".into()),
                status: Some("queued".into()),
                schedule_id: Some("s1".into()),
                since_us: Some(10),
                until_us: Some(60),
                before_id: Some("e0050".into()),
                limit: 10,
            };
            assert_eq!(
                ids(store.list_executions(&narrow).await.unwrap()),
                ["e0040", "e0030", "e0020", "e0010"]
            );
            let window = ExecutionFilter {
                since_us: Some(100),
                until_us: Some(103),
                limit: 10,
                ..ExecutionFilter::default()
            };
            assert_eq!(
                ids(store.list_executions(&window).await.unwrap()),
                ["e0102", "e0101", "e0100"]
            );
            // A value that looks like SQL is only ever a value.
            let odd = ExecutionFilter {
                job_id: Some("even' OR '1'='1".into()),
                limit: 10,
                ..ExecutionFilter::default()
            };
            assert!(store.list_executions(&odd).await.unwrap().is_empty());

            // A batch with an id already stored stores nothing.
            let again = vec![new_execution("fresh", "job", 1), batch[150].clone()];
            assert!(matches!(
                store.insert_executions(&again).await,
                Err(StoreError::Conflict {
                    what: "execution",
                    ..
                })
            ));
            assert_eq!(store.get_execution("fresh").await.unwrap(), None);
        }
    }

    crate::store_test! {
        async fn cancelling_queued_and_running_executions(store) {
            store
                .insert_execution(&new_execution("q", "job", 1))
                .await
                .unwrap();
            running(&store, "r", "job", 2).await;
            finished(&store, "f", "job", 3).await;

            assert_eq!(store.request_cancel("missing", 10).await.unwrap(), None);
            assert_eq!(
                store.request_cancel("q", 10).await.unwrap().as_deref(),
                Some("queued")
            );
            assert_eq!(
                store.request_cancel("r", 11).await.unwrap().as_deref(),
                Some("running")
            );
            assert_eq!(
                store.request_cancel("f", 12).await.unwrap().as_deref(),
                Some("succeeded")
            );
            let q = store.get_execution("q").await.unwrap().unwrap();
            assert!(q.cancel_requested);
            assert_eq!(q.updated_at_us, 10);
            assert!(
                store
                    .get_execution("r")
                    .await
                    .unwrap()
                    .unwrap()
                    .cancel_requested
            );
            // A finished execution is left as it was.
            assert!(
                !store
                    .get_execution("f")
                    .await
                    .unwrap()
                    .unwrap()
                    .cancel_requested
            );

            let error = r#"{"kind":"cancelled"}"#;
            assert!(store.cancel_queued("q", error, 20).await.unwrap());
            assert!(!store.cancel_queued("q", error, 21).await.unwrap());
            assert!(!store.cancel_queued("r", error, 21).await.unwrap());
            assert!(!store.cancel_queued("missing", error, 21).await.unwrap());
            let q = store.get_execution("q").await.unwrap().unwrap();
            assert_eq!(
                (q.status.as_str(), q.error.as_deref(), q.finished_at_us),
                ("cancelled", Some(error), Some(20))
            );
            assert!(!store.start_execution("q", 1, 0, 22).await.unwrap());
            // The running one is cancelled by the engine, through finish.
            assert!(
                store
                    .finish_execution("r", "cancelled", Some(error), 0, 1, 23)
                    .await
                    .unwrap()
            );
            assert_eq!(
                store.request_cancel("r", 24).await.unwrap().as_deref(),
                Some("cancelled")
            );
            assert!(store.unfinished_executions().await.unwrap().is_empty());
        }
    }

    crate::store_test! {
        async fn recovery_interrupts_what_ran_and_requeues(store) {
            running(&store, "e1", "job", 5).await;
            // Step 1 done; step 2 failed once and is on its second attempt.
            assert!(
                store
                    .start_attempt(&attempt_start("e1", 1, "a", 1, 10))
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .finish_attempt(&attempt_finish("e1", 1, 1, "succeeded", true))
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .start_attempt(&attempt_start("e1", 2, "b", 1, 20))
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .finish_attempt(&attempt_finish("e1", 2, 1, "failed", false))
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .start_attempt(&attempt_start("e1", 2, "b", 2, 30))
                    .await
                    .unwrap()
            );
            store
                .insert_execution(&new_execution("e0", "job", 1))
                .await
                .unwrap();
            store
                .insert_execution(&new_execution("e2", "job", 5))
                .await
                .unwrap();
            finished(&store, "done", "job", 0).await;

            let unfinished = store.unfinished_executions().await.unwrap();
            assert_eq!(
                unfinished.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
                ["e0", "e1", "e2"]
            );

            // Under an epoch it no longer has (started once: epoch 1),
            // nothing is interrupted.
            assert!(store.interrupt_running("e1", 0, 99).await.unwrap().is_empty());
            assert_eq!(store.interrupt_running("e1", 1, 100).await.unwrap(), [(2, 2)]);
            assert!(store.interrupt_running("e1", 1, 101).await.unwrap().is_empty());
            let attempts = store.list_attempts("e1").await.unwrap();
            let statuses: Vec<_> = attempts.iter().map(|a| a.status.as_str()).collect();
            assert_eq!(statuses, ["succeeded", "failed", "interrupted"]);
            assert_eq!(
                (
                    attempts[2].finished_at_us,
                    attempts[2].duration_us,
                    attempts[2].error.as_deref()
                ),
                (Some(100), None, Some(INTERRUPTED))
            );
            let runs = store.list_step_runs("e1").await.unwrap();
            assert_eq!(runs[0].status, "succeeded");
            assert_eq!(
                (
                    runs[1].status.as_str(),
                    runs[1].finished_at_us,
                    runs[1].error.as_deref()
                ),
                ("interrupted", Some(100), Some(INTERRUPTED))
            );
            // A late finish of the interrupted attempt changes nothing.
            assert!(
                !store
                    .finish_attempt(&attempt_finish("e1", 2, 2, "succeeded", true))
                    .await
                    .unwrap()
            );
            assert_eq!(
                store.list_step_runs("e1").await.unwrap()[1].status,
                "interrupted"
            );

            assert!(!store.requeue_execution("e1", 0, 110).await.unwrap(), "stale epoch");
            assert!(store.requeue_execution("e1", 1, 110).await.unwrap());
            assert!(!store.requeue_execution("e1", 1, 111).await.unwrap());
            assert!(!store.requeue_execution("e0", 0, 111).await.unwrap());
            let e1 = store.get_execution("e1").await.unwrap().unwrap();
            assert_eq!(
                (e1.status.as_str(), e1.recoveries, e1.updated_at_us),
                ("queued", 1, 110)
            );
            // Started again, it keeps its first start; the start is a
            // compare-and-set on the epoch read, which moves on.
            assert!(!store.start_execution("e1", 2, 0, 120).await.unwrap(), "stale epoch");
            assert!(store.start_execution("e1", 2, 1, 120).await.unwrap());
            let e1 = store.get_execution("e1").await.unwrap().unwrap();
            assert_eq!((e1.started_at_us, e1.job_version, e1.epoch), (Some(6), Some(2), 2));
            // The first run's writes (epoch 1) are refused from now on.
            assert!(
                !store
                    .start_attempt(&attempt_start("e1", 3, "b", 1, 130))
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .start_attempt(&AttemptStart { epoch: 2, ..attempt_start("e1", 3, "b", 1, 130) })
                    .await
                    .unwrap()
            );
            for done in [false, true] {
                let late = AttemptFinish {
                    epoch: 1,
                    ..attempt_finish("e1", 3, 1, "succeeded", done)
                };
                assert!(!store.finish_attempt(&late).await.unwrap(), "stale epoch");
            }
            let current = AttemptFinish {
                epoch: 2,
                ..attempt_finish("e1", 3, 1, "succeeded", true)
            };
            assert!(store.finish_attempt(&current).await.unwrap());
            assert_eq!(
                store.get_execution("e1").await.unwrap().unwrap().step_runs,
                3
            );
        }
    }

    crate::store_test! {
        async fn retention_deletes_only_finished_executions(store) {
            for i in 0..6 {
                finished(&store, &format!("e{i}"), "job", 100 * i).await;
            }
            // Unfinished ones, older than every finished one, and another job's.
            store
                .insert_execution(&new_execution("a-queued", "job", 0))
                .await
                .unwrap();
            running(&store, "a-running", "job", 0).await;
            finished(&store, "other", "other", 0).await;
            let ids = |rows: Vec<ExecutionRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
            let job = ExecutionFilter {
                job_id: Some("job".into()),
                limit: 100,
                ..ExecutionFilter::default()
            };

            assert_eq!(
                store
                    .apply_retention("job", None, None, 1_000)
                    .await
                    .unwrap(),
                0
            );
            // By count: the 4 newest finished stay.
            assert_eq!(
                store
                    .apply_retention("job", Some(4), None, 1_000)
                    .await
                    .unwrap(),
                2
            );
            assert_eq!(
                ids(store.list_executions(&job).await.unwrap()),
                ["e5", "e4", "e3", "e2", "a-running", "a-queued"]
            );
            // Cascade: their step runs and attempts went with them.
            assert!(store.list_step_runs("e0").await.unwrap().is_empty());
            assert!(store.list_attempts("e1").await.unwrap().is_empty());
            assert_eq!(store.list_step_runs("e2").await.unwrap().len(), 1);
            assert_eq!(
                store
                    .apply_retention("job", Some(4), None, 1_000)
                    .await
                    .unwrap(),
                0
            );
            // By age: finished before 1000 - 650 = 350 (e2 and e3 finished at
            // 200 and 300).
            assert_eq!(
                store
                    .apply_retention("job", None, Some(650), 1_000)
                    .await
                    .unwrap(),
                2
            );
            assert_eq!(
                ids(store.list_executions(&job).await.unwrap()),
                ["e5", "e4", "a-running", "a-queued"]
            );
            // Both at once: the count takes e4, the age (before 400) nothing.
            assert_eq!(
                store
                    .apply_retention("job", Some(1), Some(600), 1_000)
                    .await
                    .unwrap(),
                1
            );
            assert_eq!(
                ids(store.list_executions(&job).await.unwrap()),
                ["e5", "a-running", "a-queued"]
            );
            // Then the age alone takes the last finished one.
            assert_eq!(
                store
                    .apply_retention("job", Some(5), Some(0), 1_000)
                    .await
                    .unwrap(),
                1
            );
            assert_eq!(
                ids(store.list_executions(&job).await.unwrap()),
                ["a-running", "a-queued"]
            );
            assert!(store.get_execution("other").await.unwrap().is_some());
            assert_eq!(
                store
                    .apply_retention("other", Some(0), None, 1_000)
                    .await
                    .unwrap(),
                1
            );
        }
    }

    fn schedule() -> ScheduleRow {
        ScheduleRow {
            id: "s1".into(),
            job_id: "job".into(),
            cron: "* * * * *".into(),
            timezone: "UTC".into(),
            enabled: true,
            start_at_us: None,
            end_at_us: None,
            misfire_window_s: 60,
            misfire_policy: "latest".into(),
            overlap_policy: "allow".into(),
            dst_gap: "shift".into(),
            dst_overlap: "first".into(),
            jitter_s: 0,
            priority: 0,
            cursor_us: None,
            created_at_us: 0,
            updated_at_us: 0,
        }
    }

    crate::store_test! {
        /// A value outside an enumerated column's list is refused, on
        /// insert and on update (CHECK constraints on PostgreSQL, triggers
        /// on SQLite: migration 0008), with the column named, and what was
        /// stored stays as it was.
        async fn enumerated_columns_refuse_values_outside_their_list(store) {
            let bad = ScheduleRow {
                overlap_policy: "sometimes".into(),
                ..schedule()
            };
            let e = store.insert_schedule(&bad).await.unwrap_err();
            assert!(e.to_string().contains("overlap_policy"), "{e}");
            assert!(store.get_schedule("s1").await.unwrap().is_none());
            store.insert_schedule(&schedule()).await.unwrap();
            let bad = ScheduleRow {
                dst_gap: "later".into(),
                ..schedule()
            };
            let e = store.update_schedule(&bad).await.unwrap_err();
            assert!(e.to_string().contains("dst_gap"), "{e}");
            assert_eq!(store.get_schedule("s1").await.unwrap().unwrap(), schedule());
            let bad = NewExecution {
                trigger: "cron".into(),
                ..new_execution("e1", "job", 1)
            };
            let e = store.insert_execution(&bad).await.unwrap_err();
            assert!(e.to_string().contains("trigger"), "{e}");
            assert!(store.get_execution("e1").await.unwrap().is_none());
            // The values the code writes pass (the whole suite writes the
            // rest).
            store.insert_execution(&new_execution("e2", "job", 1)).await.unwrap();
            let fires: Vec<FireRow> = ["enqueued", "buffered", "skipped", "missed"]
                .into_iter()
                .enumerate()
                .map(|(m, outcome)| FireRow {
                    outcome: outcome.into(),
                    run_id: None,
                    ..fire_with_run(m, "")
                })
                .collect();
            store.record_fires(&fires).await.unwrap();
        }
    }

    fn fire_with_run(minute: usize, run_id: &str) -> FireRow {
        FireRow {
            schedule_id: "s1".into(),
            nominal_local: format!("2026-01-01T{:02}:{:02}:00", minute / 60, minute % 60),
            utc_offset_s: 0,
            fire_at_us: minute as i64 * 60_000_000,
            origin: "scheduled".into(),
            outcome: "enqueued".into(),
            run_id: Some(run_id.into()),
            created_at_us: 1,
        }
    }

    fn fired_execution(run_id: &str, fire: &FireRow) -> NewExecution {
        NewExecution {
            trigger: "schedule".into(),
            schedule_id: Some(fire.schedule_id.clone()),
            fire_nominal_local: Some(fire.nominal_local.clone()),
            fire_utc_offset_s: Some(fire.utc_offset_s),
            scheduled_at_us: Some(fire.fire_at_us),
            ..new_execution(run_id, "job", fire.fire_at_us)
        }
    }

    #[tokio::test]
    async fn a_fire_and_its_execution_are_stored_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("meridian.db"))
            .await
            .unwrap();
        store.insert_schedule(&schedule()).await.unwrap();
        let f1 = fire_with_run(1, "r1");
        let f2 = fire_with_run(2, "r2");
        let stray = new_execution("no-fire", "job", 0);
        let executions = [
            fired_execution("r1", &f1),
            fired_execution("r2", &f2),
            stray,
        ];
        let accepted = store
            .record_fires_with_executions(&[f1.clone(), f2.clone()], &executions)
            .await
            .unwrap();
        assert_eq!(accepted, [true, true]);
        let r1 = store.get_execution("r1").await.unwrap().unwrap();
        assert_eq!(
            (
                r1.status.as_str(),
                r1.schedule_id.as_deref(),
                r1.fire_nominal_local.as_deref()
            ),
            ("queued", Some("s1"), Some("2026-01-01T00:01:00"))
        );
        assert!(store.get_execution("r2").await.unwrap().is_some());
        // Only executions of fires are stored.
        assert_eq!(store.get_execution("no-fire").await.unwrap(), None);
        // The scheduler moves cursors once a burst is queued, not here.
        assert_eq!(
            store.get_schedule("s1").await.unwrap().unwrap().cursor_us,
            None
        );

        // The same fire again (another node, a restart), with a new run id:
        // refused, and its execution is not stored; a new fire beside it is.
        let again = fire_with_run(1, "r1-again");
        let f3 = fire_with_run(3, "r3");
        let executions = [
            fired_execution("r1-again", &again),
            fired_execution("r3", &f3),
        ];
        let accepted = store
            .record_fires_with_executions(&[again, f3.clone()], &executions)
            .await
            .unwrap();
        assert_eq!(accepted, [false, true]);
        assert_eq!(store.get_execution("r1-again").await.unwrap(), None);
        assert!(store.get_execution("r3").await.unwrap().is_some());

        // Atomic: when the execution cannot be stored, neither is its fire.
        let f4 = fire_with_run(4, "r3");
        let clash = [fired_execution("r3", &f4)];
        assert!(matches!(
            store
                .record_fires_with_executions(std::slice::from_ref(&f4), &clash)
                .await,
            Err(StoreError::Conflict {
                what: "execution",
                ..
            })
        ));
        assert_eq!(store.list_fires("s1", 10).await.unwrap().len(), 3);
        assert_eq!(store.record_fires(&[f4]).await.unwrap(), [true]);

        // A burst, some of its fires stored already: only the new ones'
        // executions are stored.
        let fires: Vec<FireRow> = (10..213)
            .map(|m| fire_with_run(m, &format!("b{m}")))
            .collect();
        let executions: Vec<NewExecution> = fires
            .iter()
            .map(|f| fired_execution(f.run_id.as_deref().unwrap(), f))
            .collect();
        assert_eq!(
            store.record_fires(&fires[5..7]).await.unwrap(),
            [true, true]
        );
        let accepted = store
            .record_fires_with_executions(&fires, &executions)
            .await
            .unwrap();
        let expected: Vec<bool> = (0..fires.len()).map(|i| !(5..7).contains(&i)).collect();
        assert_eq!(accepted, expected);
        for (e, new) in executions.iter().zip(&accepted) {
            assert_eq!(
                store.get_execution(&e.id).await.unwrap().is_some(),
                *new,
                "{}",
                e.id
            );
        }
    }

    #[tokio::test]
    async fn the_lifecycle_persists_in_the_file_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meridian.db");
        {
            let store = Store::open_sqlite(&path).await.unwrap();
            running(&store, "e1", "job", 1).await;
            assert!(
                store
                    .start_attempt(&attempt_start("e1", 1, "a", 1, 2))
                    .await
                    .unwrap()
            );
            finished(&store, "e2", "job", 3).await;
        }
        let store = Store::open_sqlite(&path).await.unwrap();
        let unfinished = store.unfinished_executions().await.unwrap();
        assert_eq!(unfinished.len(), 1);
        assert_eq!(store.interrupt_running("e1", 1, 9).await.unwrap(), [(1, 1)]);
        assert!(store.requeue_execution("e1", 1, 9).await.unwrap());
        assert_eq!(
            store.list_attempts("e2").await.unwrap()[0].status,
            "succeeded"
        );
        assert_eq!(
            store
                .apply_retention("job", Some(0), None, 10)
                .await
                .unwrap(),
            1
        );
        assert!(store.list_attempts("e2").await.unwrap().is_empty());
    }

    crate::store_test! {
        async fn a_batch_whose_caller_stops_waiting_still_runs_to_its_end(store) {
            running(&store, "e1", "job", 1).await;
            // Polled once (the batch starts), then dropped.
            let attempt = attempt_start("e1", 1, "a", 1, 10);
            let start = store.start_attempt(&attempt);
            tokio::select! {
                biased;
                _ = start => panic!("a batch is not done on its first poll"),
                _ = std::future::ready(()) => {}
            }
            // It runs on, and commits (no transaction is left open on the one
            // connection: the next batch could not begin).
            for _ in 0..1_000 {
                if !store.list_step_runs("e1").await.unwrap().is_empty() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert_eq!(store.list_step_runs("e1").await.unwrap().len(), 1);
            assert_eq!(store.list_attempts("e1").await.unwrap().len(), 1);
            let finish = attempt_finish("e1", 1, 1, "succeeded", true);
            assert!(store.finish_attempt(&finish).await.unwrap());
            assert_eq!(
                store.list_step_runs("e1").await.unwrap()[0].status,
                "succeeded"
            );
        }
    }

    crate::store_test! {
        /// Writes that share a batch of the group-commit writer fail alone:
        /// a duplicate among many concurrent inserts is refused, the others
        /// are stored (on PostgreSQL, after the fast path's rollback, by the
        /// guarded retry of the batch).
        async fn a_failed_write_fails_alone_in_its_batch(store) {
            store
                .insert_execution(&new_execution("dup", "job", 1))
                .await
                .unwrap();
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..64 {
                let store = store.clone();
                let id = if i == 32 { "dup".to_string() } else { format!("e{i:02}") };
                tasks.spawn(async move {
                    (id.clone(), store.insert_execution(&new_execution(&id, "job", 10 + i)).await)
                });
            }
            let mut stored = 0;
            while let Some(done) = tasks.join_next().await {
                let (id, result) = done.unwrap();
                if id == "dup" {
                    assert!(matches!(result, Err(StoreError::Conflict { .. })), "{result:?}");
                } else {
                    result.unwrap();
                    stored += 1;
                }
            }
            assert_eq!(stored, 63);
            let all = store
                .list_executions(&ExecutionFilter { limit: 100, ..Default::default() })
                .await
                .unwrap();
            assert_eq!(all.len(), 64);
        }
    }

    crate::store_test! {
        /// A write whose caller stopped waiting right after handing it over
        /// (an aborted task) still lands, and `settle_writes` waits for it:
        /// what reads after it see includes that write.
        async fn settled_writes_include_those_of_callers_that_gave_up(store) {
            store.insert_execution(&new_execution("gone", "job", 1)).await.unwrap();
            assert!(store.start_execution("gone", 1, 0, 2).await.unwrap());
            let handed_over = store
                .start_attempt(&attempt_start("gone", 1, "a", 1, 3))
                .now_or_never();
            assert!(handed_over.is_none(), "the write was answered without the writer");
            store.settle_writes().await.unwrap();
            let attempts = store.list_attempts("gone").await.unwrap();
            assert_eq!(attempts.len(), 1, "{attempts:?}");
            assert_eq!(attempts[0].status, "running");
        }
    }

    fn node(id: &str, lease_us: i64) -> crate::store::NodeLease {
        crate::store::NodeLease {
            id: std::sync::Arc::from(id),
            lease_us,
        }
    }

    fn node_row(id: &str, instance: &str) -> crate::store::NodeRow {
        crate::store::NodeRow {
            id: id.into(),
            instance: instance.into(),
            hostname: "host".into(),
            pid: 1,
            version: "test".into(),
            listen: "127.0.0.1:0".into(),
            started_at_us: 0,
            heartbeat_at_us: 0,
            stopped_at_us: None,
            clock_offset_us: None,
            live: false,
            held: 0,
            running: 0,
        }
    }

    /// Two nodes on one database, on the database's clock (real time, a
    /// lease of one second): a live heartbeat keeps another node off what
    /// a node holds; once it falls silent for a lease, a claim moves the
    /// execution and its epoch, which fences the old holder out of every
    /// write; a clean stop gives the leases up at once; one node id cannot
    /// be used by two live processes.
    async fn leases_hand_over(a: Store, b: Store) {
        const LEASE: i64 = 1_000_000;
        let silent_for_a_lease = || tokio::time::sleep(std::time::Duration::from_millis(1_150));
        a.set_node(node("A", LEASE));
        b.set_node(node("B", LEASE));
        a.register_node(&node_row("A", "a1"), None).await.unwrap();
        b.register_node(&node_row("B", "b1"), None).await.unwrap();
        assert!(matches!(
            b.register_node(&node_row("A", "other"), None).await,
            Err(StoreError::Conflict { .. })
        ));
        // ... unless the caller found that process dead.
        b.register_node(&node_row("A", "a0"), Some("a1"))
            .await
            .unwrap();
        a.register_node(&node_row("A", "a1"), Some("a0"))
            .await
            .unwrap();
        // The heartbeat is stamped with the database's time (on this
        // machine, the same as ours) and keeps the offset a node measured.
        let stamped = a.heartbeat(Some(-1_234)).await.unwrap().unwrap();
        let ours = chrono::Utc::now().timestamp_micros();
        assert!((ours - stamped).abs() < 1_000_000, "{stamped} vs {ours}");
        let listed = a.list_nodes().await.unwrap();
        assert_eq!(listed[0].clock_offset_us, Some(-1_234));
        assert!(listed.iter().all(|n| n.live), "{listed:?}");
        a.insert_execution(&new_execution("e1", "job", 100))
            .await
            .unwrap();
        // A's heartbeat is live: not B's to take.
        assert!(b.claim_executions(false, 10).await.unwrap().is_empty());
        // A falls silent for a lease: the execution is B's, at the next
        // epoch.
        silent_for_a_lease().await;
        b.heartbeat(None).await.unwrap();
        let claimed = b.claim_executions(false, 10).await.unwrap();
        assert_eq!(
            claimed
                .iter()
                .map(|e| (e.id.as_str(), e.epoch))
                .collect::<Vec<_>>(),
            [("e1", 1)]
        );
        // A, back, can neither start it nor end it under the epoch it read.
        assert!(
            !a.start_execution("e1", 1, 0, 1_502).await.unwrap(),
            "fenced"
        );
        assert!(
            !a.finish_execution("e1", "failed", None, 0, 0, 1_502)
                .await
                .unwrap(),
            "fenced"
        );
        assert!(b.start_execution("e1", 1, 1, 1_503).await.unwrap());
        a.heartbeat(None).await.unwrap();
        assert!(a.claim_executions(true, 10).await.unwrap().is_empty());
        let nodes = a.list_nodes().await.unwrap();
        let held: Vec<(&str, i64, i64)> = nodes
            .iter()
            .map(|n| (n.id.as_str(), n.held, n.running))
            .collect();
        assert_eq!(held, [("A", 0, 0), ("B", 1, 1)]);
        // B stops cleanly: A takes over at once; B's run is fenced out.
        b.stop_node().await.unwrap();
        assert!(!a.list_nodes().await.unwrap()[1].live);
        let claimed = a.claim_executions(false, 10).await.unwrap();
        assert_eq!(
            claimed
                .iter()
                .map(|e| (e.status.as_str(), e.epoch))
                .collect::<Vec<_>>(),
            [("running", 3)]
        );
        let late = AttemptStart {
            epoch: 2,
            ..attempt_start("e1", 1, "a", 1, 1_600)
        };
        assert!(!b.start_attempt(&late).await.unwrap(), "fenced");
        // A stopped node's id is free again.
        b.register_node(&node_row("B", "b2"), None).await.unwrap();
        // A restarted node claims its own executions, heartbeat or not.
        a.set_node(node("A", LEASE));
        let own = a.claim_executions(true, 10).await.unwrap();
        assert_eq!(own.len(), 1);
        // A released execution is claimable at once, whoever holds what.
        a.insert_execution(&new_execution("e3", "job", 1_900))
            .await
            .unwrap();
        assert!(!b.release_execution("e3").await.unwrap(), "not B's");
        assert!(a.release_execution("e3").await.unwrap());
        let ids = |v: Vec<ExecutionRow>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(b.claim_executions(false, 10).await.unwrap()), ["e3"]);
        assert_eq!(
            b.finish_execution("e3", "cancelled", None, 0, 1, 1_902)
                .await
                .ok(),
            Some(true)
        );
        // A holder that is no registered node (`meridian run`) lives by its
        // own lease, which it renews row by row.
        b.set_node(node("run-7", LEASE));
        b.insert_execution(&new_execution("e2", "job", 2_000))
            .await
            .unwrap();
        silent_for_a_lease().await;
        assert_eq!(b.renew_leases().await.unwrap(), 1);
        b.set_node(node("B", LEASE));
        b.heartbeat(None).await.unwrap();
        // A fell silent for a lease: its e1 is claimable; the run's e2,
        // just renewed, is not; a lease later it is.
        assert_eq!(ids(b.claim_executions(false, 10).await.unwrap()), ["e1"]);
        silent_for_a_lease().await;
        b.heartbeat(None).await.unwrap();
        assert_eq!(ids(b.claim_executions(false, 10).await.unwrap()), ["e2"]);
    }

    #[tokio::test]
    async fn leases_hand_over_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meridian.db");
        let a = Store::open_sqlite(&path).await.unwrap();
        let b = Store::open_sqlite(&path).await.unwrap();
        leases_hand_over(a, b).await;
    }

    #[tokio::test]
    #[cfg_attr(
        not(meridian_test_pg),
        ignore = "needs PostgreSQL: set MERIDIAN_TEST_PG_URL (or CI=true), or run with --ignored"
    )]
    async fn leases_hand_over_on_postgres() {
        let mut nodes = crate::store::testing::postgres_nodes(2).await;
        let (b, a) = (nodes.pop().unwrap(), nodes.pop().unwrap());
        leases_hand_over(a, b).await;
    }

    /// Three nodes claiming the executions of a dead one at the same time
    /// get disjoint sets that cover them all (`FOR UPDATE SKIP LOCKED`).
    #[tokio::test]
    #[cfg_attr(
        not(meridian_test_pg),
        ignore = "needs PostgreSQL: set MERIDIAN_TEST_PG_URL (or CI=true), or run with --ignored"
    )]
    async fn concurrent_claims_on_postgres_are_disjoint() {
        let mut nodes = crate::store::testing::postgres_nodes(4).await;
        let dead = nodes.pop().unwrap();
        dead.set_node(node("dead", 1));
        let all: Vec<NewExecution> = (0..300)
            .map(|i| new_execution(&format!("e{i:03}"), "job", 10 + i))
            .collect();
        dead.insert_executions(&all).await.unwrap();
        let claimers = nodes.into_iter().enumerate().map(|(i, store)| {
            store.set_node(node(&format!("n{i}"), 1_000_000));
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store.claim_executions(false, 7).await.unwrap();
                    if got.is_empty() {
                        break mine;
                    }
                    mine.extend(got.into_iter().map(|e| e.id));
                    tokio::task::yield_now().await;
                }
            })
        });
        let mut seen = std::collections::BTreeSet::new();
        let mut claimers_with_work = 0;
        for c in claimers.collect::<Vec<_>>() {
            let mine = c.await.unwrap();
            claimers_with_work += usize::from(!mine.is_empty());
            for id in mine {
                assert!(seen.insert(id.clone()), "{id} claimed twice");
            }
        }
        assert_eq!(seen.len(), 300);
        assert!(claimers_with_work >= 1);
    }
}
