//! Runs one execution of a job: its steps in order, each in the sandbox.
//!
//! Each step sees the job's identity and every earlier step's output and
//! exported variables; the first step that fails ends the execution.

use crate::model::Job;
use crate::runtime::{Invocation, Runtime, StepFailure, StepRun};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    Succeeded,
    Failed,
}

/// One step's part of an execution.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step_id: String,
    pub step_type: String,
    #[serde(flatten)]
    pub run: StepRun,
}

/// A finished execution.
#[derive(Debug, Clone, Serialize)]
pub struct Execution {
    pub execution_id: String,
    pub job_id: String,
    pub status: ExecutionStatus,
    pub steps: Vec<StepRecord>,
}

/// Runs the job's steps in order; the job must have been validated.
pub async fn run_job(runtime: &Runtime, job: &Job) -> Execution {
    let execution_id = uuid::Uuid::now_v7().to_string();
    let mut steps_seen = Map::new();
    let mut records = Vec::new();
    let mut status = ExecutionStatus::Succeeded;
    for step in &job.steps {
        let Some(plugin) = runtime.plugin(&step.step_type) else {
            let run = StepRun {
                result: Err(StepFailure::Unavailable {
                    message: format!("step type {:?} is not loaded", step.step_type),
                }),
                logs: Vec::new(),
                logs_dropped: 0,
                events: Vec::new(),
                host_calls: 0,
                duration: Duration::ZERO,
            };
            records.push(StepRecord {
                step_id: step.id.clone(),
                step_type: step.step_type.clone(),
                run,
            });
            status = ExecutionStatus::Failed;
            break;
        };
        let variables = json!({
            "job": { "id": job.id, "name": job.name, "timezone": job.timezone, "execution_id": execution_id },
            "steps": Value::Object(steps_seen.clone()),
        });
        let run = runtime
            .execute(
                plugin,
                Invocation {
                    job_id: job.id.clone(),
                    execution_id: execution_id.clone(),
                    step_id: step.id.clone(),
                    attempt: 1,
                    timezone: job.timezone.clone(),
                    scheduled_time: None,
                    config: step.config.clone(),
                    variables,
                    timeout: step.timeout_ms.map(Duration::from_millis),
                },
            )
            .await;
        let failed = run.result.is_err();
        if let Ok(success) = &run.result {
            steps_seen.insert(
                step.id.clone(),
                json!({ "output": success.output, "exports": success.exports }),
            );
        }
        records.push(StepRecord {
            step_id: step.id.clone(),
            step_type: step.step_type.clone(),
            run,
        });
        if failed {
            status = ExecutionStatus::Failed;
            break;
        }
    }
    Execution {
        execution_id,
        job_id: job.id.clone(),
        status,
        steps: records,
    }
}
