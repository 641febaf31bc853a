//! The status step's pure part: what a ScanJob shows once its runs have moved on — the phase,
//! the shard column, the next schedule time and the Ready, Progressing and Degraded conditions.
//! Reads the decided runs; writes only those summary fields. Pure: no client, no clock.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::crd::{
    Outcome, Phase, RunStatus, ScanJob, ScanJobStatus, Stage, WaitingReason, to_time,
};

/// Why no run of the ScanJob may start: its schedule does not parse, or the operator's
/// allow-list refuses its source. Shown as the Degraded condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

/// Fills the summary fields of `status` from its runs. `old` is the status as observed, whose
/// conditions keep their `lastTransitionTime` unless they flip.
pub fn show(
    sj: &ScanJob,
    old: &ScanJobStatus,
    status: &mut ScanJobStatus,
    next: Option<DateTime<Utc>>,
    refusal: Option<&Refusal>,
    now: DateTime<Utc>,
) {
    status.next_schedule_time = next.map(to_time);
    status.phase = Some(phase(status));
    status.shards = status
        .current_run
        .as_ref()
        .map(|r| &r.shards)
        .or(status.last_run.as_ref().map(|r| &r.shards))
        .map(|s| format!("{}/{}", s.succeeded, s.total));
    status.conditions = conditions(sj, old, status, refusal, now);
}

fn phase(status: &ScanJobStatus) -> Phase {
    match (&status.current_run, &status.last_run) {
        (Some(run), _) => match run.stage {
            Stage::Pending | Stage::Planning => Phase::Planning,
            Stage::Scanning | Stage::Hashing => Phase::Scanning,
            Stage::Joining => Phase::Merging,
            Stage::Merging => Phase::Merging,
        },
        (None, Some(last)) if last.outcome == Outcome::Succeeded => Phase::Succeeded,
        (None, Some(_)) => Phase::Failed,
        (None, None) => Phase::Idle,
    }
}

/// Ready, Progressing and Degraded; `lastTransitionTime` moves only when a status flips.
fn conditions(
    sj: &ScanJob,
    old: &ScanJobStatus,
    status: &ScanJobStatus,
    refusal: Option<&Refusal>,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let generation = sj.metadata.generation;
    let make = |kind: &str, ok: bool, reason: &str, message: String| {
        let previous = old.conditions.iter().find(|c| c.type_ == kind);
        let value = if ok { "True" } else { "False" };
        let since = match previous {
            Some(p) if p.status == value => p.last_transition_time.clone(),
            _ => to_time(now),
        };
        Condition {
            type_: kind.to_owned(),
            status: value.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: since,
        }
    };
    let ready = match &status.last_successful_run {
        Some(s) => make(
            "Ready",
            true,
            "SnapshotPublished",
            format!("run {} published {} files ({})", s.id, s.files, s.size),
        ),
        None => make(
            "Ready",
            false,
            "NoSnapshot",
            "no snapshot published yet".into(),
        ),
    };
    let progressing = match &status.current_run {
        // A step that does not run says why: the queue holds its Job, or no node fits its pods.
        Some(
            run @ RunStatus {
                waiting: Some(waiting),
                ..
            },
        ) => {
            let reason = match waiting.reason {
                WaitingReason::AwaitingAdmission => "AwaitingAdmission",
                WaitingReason::Preempted => "Preempted",
                WaitingReason::Unschedulable => "Unschedulable",
            };
            make(
                "Progressing",
                true,
                reason,
                format!("run {}: {}", run.id, waiting.message),
            )
        }
        Some(run) => {
            let reason = match run.stage {
                Stage::Pending => "RunPending",
                Stage::Planning => "Planning",
                Stage::Scanning => "Scanning",
                Stage::Hashing => "Hashing",
                Stage::Joining => "Joining",
                Stage::Merging => "Merging",
            };
            make(
                "Progressing",
                true,
                reason,
                format!(
                    "run {}: {}/{} shards done",
                    run.id, run.shards.succeeded, run.shards.total
                ),
            )
        }
        None if sj.spec.suspend => make(
            "Progressing",
            false,
            "Suspended",
            "spec.suspend is true".into(),
        ),
        None => make("Progressing", false, "Idle", "no run is active".into()),
    };
    let degraded = match (refusal, &status.last_run) {
        (Some(r), _) => make("Degraded", true, r.reason, r.message.clone()),
        (None, Some(last)) if last.outcome == Outcome::Failed => make(
            "Degraded",
            true,
            &last.reason,
            format!("run {} failed: {}", last.id, last.message),
        ),
        _ => make(
            "Degraded",
            false,
            "AsExpected",
            "the last run did not fail".into(),
        ),
    };
    vec![ready, progressing, degraded]
}
