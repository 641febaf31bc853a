//! The apply and status steps: create the decided Jobs and delete old runs (server-side apply
//! under one field manager), then write the status and emit an Event per transition.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::build::{WorkerDefaults, job};
use crate::crd::{NAME_LABEL, RUN_LABEL, ScanJob};
use crate::decide::{Decision, Transition};
use crate::error::{Error, Result};

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "scanjob-operator";

/// Applies the decided Jobs that do not exist yet (the same run and step is always the same
/// Job). A Job is written once: from then on its `suspend` and `parallelism` may be a queue's
/// (Kueue admits a Job by resuming it, maybe with fewer pods, and preempts it by suspending
/// it), and applying the Job again would take them back.
pub async fn jobs(
    api: &Api<Job>,
    sj: &ScanJob,
    decision: &Decision,
    defaults: &WorkerDefaults,
) -> Result<()> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for request in &decision.create {
        let job = job(sj, request, defaults);
        let name = job.metadata.name.clone().unwrap_or_default();
        if api.get_metadata_opt(&name).await?.is_some() {
            continue;
        }
        api.patch(&name, &params, &Patch::Apply(&job)).await?;
        tracing::info!(scanjob = %sj.name_any(), job = %name, run = %request.run, step = request.step.as_str(), "job applied");
    }
    for run in &decision.delete_runs {
        let selector = format!("{NAME_LABEL}={},{RUN_LABEL}={run}", sj.name_any());
        for old in api.list(&ListParams::default().labels(&selector)).await? {
            let name = old.name_any();
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {
                    tracing::info!(scanjob = %sj.name_any(), job = %name, run = %run, "old run's job deleted")
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Drops nulls, so an absent field is released rather than claimed as null.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Writes the decided status when it differs from the observed one. The write is conditional
/// on the resourceVersion the decision was made from: a reconcile that read a stale copy of
/// the ScanJob (the cache not yet showing the operator's own last status write) gets a
/// conflict, and its status is not written. Returns whether the decision was made from the
/// current ScanJob.
pub async fn status(api: &Api<ScanJob>, sj: &ScanJob, decision: &Decision) -> Result<bool> {
    if sj.status.as_ref() == Some(&decision.status) {
        return Ok(true);
    }
    let mut status = serde_json::to_value(&decision.status).map_err(|source| Error::Serialize {
        what: "status",
        source,
    })?;
    strip_nulls(&mut status);
    let patch = json!({
        "apiVersion": ScanJob::api_version(&()),
        "kind": ScanJob::kind(&()),
        "metadata": {"name": sj.name_any(), "resourceVersion": sj.resource_version()},
        "status": status,
    });
    match api
        .patch_status(
            &sj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// One Event per transition, on the ScanJob.
pub async fn events(recorder: &Recorder, sj: &ScanJob, transitions: &[Transition]) {
    let reference = sj.object_ref(&());
    for t in transitions {
        let reason = t.reason();
        let (type_, note) = match t {
            Transition::RunStarted { run, trigger } => (
                EventType::Normal,
                format!("run {run} started ({trigger:?})"),
            ),
            Transition::RunSkipped { time, reason } => (
                EventType::Normal,
                format!("run due at {} skipped: {reason}", time.to_rfc3339()),
            ),
            Transition::ShardFailed {
                run,
                index,
                message,
            } => (
                EventType::Warning,
                format!("run {run} shard {index} failed: {message}"),
            ),
            Transition::RunSucceeded {
                run,
                files,
                bytes,
                seconds,
                ..
            } => (
                EventType::Normal,
                format!(
                    "run {run} published {files} files ({}) in {seconds:.0} s",
                    scanjob_contract::units::human_bytes(*bytes)
                ),
            ),
            Transition::RunFailed {
                run,
                reason,
                message,
                ..
            } => (
                EventType::Warning,
                format!("run {run} failed ({reason}): {message}"),
            ),
            Transition::RunQueued { run, message, .. } => {
                (EventType::Normal, format!("run {run}: {message}"))
            }
            Transition::RunAdmitted { run, step } => (
                EventType::Normal,
                format!("run {run}: the {} Job was admitted", step.as_str()),
            ),
            Transition::RunPreempted { run, message, .. } => {
                (EventType::Normal, format!("run {run}: {message}"))
            }
            Transition::PodsUnschedulable { run, message, .. } => {
                (EventType::Warning, format!("run {run}: {message}"))
            }
        };
        // Event notes are limited to 1 KiB.
        let note: String = note.chars().take(1000).collect();
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(scanjob = %sj.name_any(), reason, error = %e, "event not published");
        }
    }
}
