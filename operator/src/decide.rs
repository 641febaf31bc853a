//! The plan step of the reconcile pipeline (named `decide` here, since a "plan" is the scan
//! planner's output): from the ScanJob, what was observed and the time, decide the next status,
//! the Jobs to create, the runs to delete and the events to emit. Pure: no client, no clock.
//!
//! A run's identity is written to the status before its first Job exists (stage Pending), and a
//! step's Job is only ever created when the run moves into that step. So a restarted operator
//! continues a run from its Jobs, and a Job removed by a TTL is never created again.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use scanjob_contract::layout::run_id;
use scanjob_contract::termination::{PhaseResult, TerminationMessage};

use crate::build::{JobRequest, Step};
use crate::crd::{
    ConcurrencyPolicy, FinishedRun, Outcome, Phase, RUN_NOW_ANNOTATION, RunStatus, ScanJob,
    ScanJobStatus, ShardCounts, SkippedSchedule, Stage, SuccessfulRun, Trigger,
};
use crate::observe::{JobState, Observed, RunJobs};
use crate::schedule::{Due, Schedule};

/// Longest wait before looking again when nothing is due: a safety net under the watches.
pub const MAX_REQUEUE: std::time::Duration = std::time::Duration::from_secs(300);

/// A transition worth an Event (and a metric).
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    RunStarted {
        run: String,
        trigger: Trigger,
    },
    RunSkipped {
        time: DateTime<Utc>,
        reason: String,
    },
    ShardFailed {
        run: String,
        index: u32,
        message: String,
    },
    RunSucceeded {
        run: String,
        seconds: f64,
        files: u64,
        bytes: u64,
        shards: ShardCounts,
    },
    RunFailed {
        run: String,
        seconds: f64,
        reason: String,
        message: String,
        shards: ShardCounts,
    },
}

impl Transition {
    /// The Event's reason (and action): one per kind of transition.
    pub fn reason(&self) -> &'static str {
        match self {
            Transition::RunStarted { .. } => "RunStarted",
            Transition::RunSkipped { .. } => "RunSkipped",
            Transition::ShardFailed { .. } => "ShardFailed",
            Transition::RunSucceeded { .. } => "RunSucceeded",
            Transition::RunFailed { .. } => "RunFailed",
        }
    }
}

/// What the reconcile does next, in this order: create Jobs, delete runs, write status, emit.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub create: Vec<JobRequest>,
    /// Runs whose Jobs are deleted (history limits, replaced runs).
    pub delete_runs: Vec<String>,
    pub status: ScanJobStatus,
    pub transitions: Vec<Transition>,
    pub requeue_after: std::time::Duration,
}

/// A pod's termination message, when it is the worker's JSON.
fn termination(message: &str) -> Option<TerminationMessage> {
    serde_json::from_str(message).ok()
}

/// A failed pod's message for humans: the worker's `label: message`, or the raw text.
fn failure_text(message: &str) -> String {
    match termination(message) {
        Some(TerminationMessage::Failure(e)) => format!("{}: {}", e.error, e.message),
        _ => message.trim().to_owned(),
    }
}

pub fn to_time(t: DateTime<Utc>) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).unwrap_or_default())
}

pub fn from_time(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), 0).unwrap_or_default()
}

/// Counts the indexes in a Job's index list ("0,2-4" has 4).
pub fn count_indexes(list: Option<&str>) -> i32 {
    indexes(list).len() as i32
}

pub fn indexes(list: Option<&str>) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for part in list.unwrap_or("").split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
            out.extend(a..=b);
        }
    }
    out
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// How one active run moves on.
enum Progress {
    Active(RunStatus),
    Finished(FinishedRun, Option<SuccessfulRun>),
}

struct Ctx<'a> {
    sj: &'a ScanJob,
    now: DateTime<Utc>,
    create: Vec<JobRequest>,
    transitions: Vec<Transition>,
}

impl Ctx<'_> {
    fn finish(
        &mut self,
        run: &RunStatus,
        outcome: Outcome,
        reason: &str,
        message: String,
    ) -> FinishedRun {
        let seconds = self.seconds_since_start(run);
        if outcome == Outcome::Failed {
            self.transitions.push(Transition::RunFailed {
                run: run.id.clone(),
                seconds,
                reason: reason.to_owned(),
                message: message.clone(),
                shards: run.shards.clone(),
            });
        }
        FinishedRun {
            id: run.id.clone(),
            outcome,
            start_time: run.start_time.clone(),
            completion_time: to_time(self.now),
            reason: reason.to_owned(),
            message,
            shards: run.shards.clone(),
        }
    }

    /// Wall seconds of `run` so far.
    fn seconds_since_start(&self, run: &RunStatus) -> f64 {
        (self.now - from_time(&run.start_time)).num_milliseconds() as f64 / 1000.0
    }

    fn request(&mut self, run: &RunStatus, step: Step, shards: i32) {
        self.create.push(JobRequest {
            run: run.id.clone(),
            step,
            shards,
        });
    }

    fn vanished(&mut self, run: &RunStatus, step: Step) -> Progress {
        let message = format!(
            "the {} Job of run {} was deleted before it finished",
            step.as_str(),
            run.id
        );
        Progress::Finished(
            self.finish(run, Outcome::Failed, "JobDeleted", message),
            None,
        )
    }

    /// Moves one active run on by what its Jobs say.
    fn advance(&mut self, mut run: RunStatus, jobs: &RunJobs) -> Progress {
        match run.stage {
            Stage::Pending => {
                self.request(&run, Step::Plan, 1);
                run.stage = Stage::Planning;
                Progress::Active(run)
            }
            Stage::Planning => {
                let Some(plan) = jobs.get(Step::Plan) else {
                    return self.vanished(&run, Step::Plan);
                };
                if let Some((reason, message)) = &plan.failed {
                    let why = jobs
                        .report(Step::Plan, None, false)
                        .map(|r| failure_text(&r.message))
                        .unwrap_or_else(|| format!("{reason}: {message}"));
                    let finished = self.finish(&run, Outcome::Failed, "PlanFailed", why);
                    return Progress::Finished(finished, None);
                }
                if !plan.complete {
                    return Progress::Active(run);
                }
                let shards = jobs
                    .report(Step::Plan, None, true)
                    .and_then(|r| match termination(&r.message) {
                        Some(TerminationMessage::Success(PhaseResult::Plan(p))) => {
                            i32::try_from(p.shards).ok()
                        }
                        _ => None,
                    })
                    .filter(|&n| n >= 1)
                    .unwrap_or(self.sj.spec.shards);
                run.shards = ShardCounts {
                    total: shards,
                    ..ShardCounts::default()
                };
                self.request(&run, Step::Scan, shards);
                run.stage = Stage::Scanning;
                Progress::Active(run)
            }
            Stage::Scanning => {
                let Some(scan) = jobs.get(Step::Scan) else {
                    return self.vanished(&run, Step::Scan);
                };
                self.shard_progress(&mut run, scan, jobs);
                if scan.complete {
                    self.request(&run, Step::Merge, 1);
                    run.stage = Stage::Merging;
                    return Progress::Active(run);
                }
                let Some((reason, message)) = &scan.failed else {
                    return Progress::Active(run);
                };
                let allowed = self.sj.spec.max_failed_shards;
                if reason == "FailedIndexes"
                    && run.shards.failed <= allowed
                    && run.shards.succeeded > 0
                {
                    self.request(&run, Step::Merge, 1);
                    run.stage = Stage::Merging;
                    return Progress::Active(run);
                }
                let failed = indexes(run.failed_indexes.as_deref());
                let first = failed.iter().next().and_then(|&i| {
                    jobs.report(Step::Scan, Some(i), false)
                        .map(|r| format!("shard {i}: {}", failure_text(&r.message)))
                });
                let why = match first {
                    Some(first) => format!(
                        "{} of {} shards failed (maxFailedShards {allowed}); {first}",
                        run.shards.failed, run.shards.total
                    ),
                    None => format!("scan Job failed: {reason}: {message}"),
                };
                Progress::Finished(
                    self.finish(&run, Outcome::Failed, "ShardsFailed", why),
                    None,
                )
            }
            Stage::Merging => {
                let Some(merge) = jobs.get(Step::Merge) else {
                    return self.vanished(&run, Step::Merge);
                };
                if let Some((reason, message)) = &merge.failed {
                    let why = jobs
                        .report(Step::Merge, None, false)
                        .map(|r| failure_text(&r.message))
                        .unwrap_or_else(|| format!("{reason}: {message}"));
                    return Progress::Finished(
                        self.finish(&run, Outcome::Failed, "MergeFailed", why),
                        None,
                    );
                }
                if !merge.complete {
                    return Progress::Active(run);
                }
                let report = jobs.report(Step::Merge, None, true).and_then(|r| {
                    match termination(&r.message) {
                        Some(TerminationMessage::Success(
                            PhaseResult::Merge(m) | PhaseResult::Run(m),
                        )) => Some(m),
                        _ => None,
                    }
                });
                let Some(report) = report else {
                    let why = "the merge pod completed without a readable report".to_owned();
                    return Progress::Finished(
                        self.finish(&run, Outcome::Failed, "MergeFailed", why),
                        None,
                    );
                };
                let message = format!(
                    "published {} files, {} directories, {} in files{}",
                    report.files,
                    report.directories,
                    human_bytes(report.bytes),
                    if report.missing_shards.is_empty() {
                        String::new()
                    } else {
                        format!("; shards {:?} missing", report.missing_shards)
                    }
                );
                let finished = self.finish(&run, Outcome::Succeeded, "SnapshotPublished", message);
                self.transitions.push(Transition::RunSucceeded {
                    run: run.id.clone(),
                    seconds: self.seconds_since_start(&run),
                    files: report.files,
                    bytes: report.bytes,
                    shards: run.shards.clone(),
                });
                let success = SuccessfulRun {
                    id: run.id.clone(),
                    completion_time: to_time(self.now),
                    files: report.files as i64,
                    directories: report.directories as i64,
                    bytes: report.bytes as i64,
                    size: human_bytes(report.bytes),
                    errors: report.errors as i64,
                    snapshot: report.snapshot,
                    missing_shards: report
                        .missing_shards
                        .iter()
                        .map(|&i| i64::from(i))
                        .collect(),
                };
                Progress::Finished(finished, Some(success))
            }
        }
    }

    /// Shard counts from the scan Job, and an event for every newly failed shard.
    fn shard_progress(&mut self, run: &mut RunStatus, scan: &JobState, jobs: &RunJobs) {
        let before = indexes(run.failed_indexes.as_deref());
        let now_failed = indexes(scan.failed_indexes.as_deref());
        for &index in now_failed.difference(&before) {
            let message = jobs
                .report(Step::Scan, Some(index), false)
                .map(|r| failure_text(&r.message))
                .unwrap_or_else(|| "no termination message".into());
            self.transitions.push(Transition::ShardFailed {
                run: run.id.clone(),
                index,
                message,
            });
        }
        run.shards.succeeded = count_indexes(scan.completed_indexes.as_deref());
        run.shards.failed = now_failed.len() as i32;
        run.shards.active = scan.active;
        run.failed_indexes = scan.failed_indexes.clone();
    }
}

/// A due run: when it was scheduled and why it starts.
struct DueRun {
    time: DateTime<Utc>,
    trigger: Trigger,
}

/// Decides the next step for `sj` given its observed Jobs at `now`.
pub fn decide(sj: &ScanJob, observed: &Observed, now: DateTime<Utc>) -> Decision {
    let spec = &sj.spec;
    let old = sj.status.clone().unwrap_or_default();
    let mut status = old.clone();
    status.observed_generation = sj.metadata.generation;
    let mut ctx = Ctx {
        sj,
        now,
        create: Vec::new(),
        transitions: Vec::new(),
    };
    let mut delete_runs = Vec::new();

    // 1. Move active runs on, oldest first.
    let mut active: Vec<RunStatus> = status.concurrent_runs.drain(..).collect();
    active.extend(status.current_run.take());
    let empty = RunJobs::default();
    let mut still_active = Vec::new();
    for run in active {
        let jobs = observed.runs.get(&run.id).unwrap_or(&empty);
        match ctx.advance(run, jobs) {
            Progress::Active(run) => still_active.push(run),
            Progress::Finished(finished, success) => {
                if success.is_some() {
                    status.last_successful_run = success;
                }
                if status
                    .last_run
                    .as_ref()
                    .is_none_or(|last| last.id <= finished.id)
                {
                    status.last_run = Some(finished);
                }
            }
        }
    }

    // 2. Is a run due?
    let schedule = Schedule::parse(spec.schedule.as_deref(), spec.time_zone.as_deref());
    let created = sj
        .metadata
        .creation_timestamp
        .as_ref()
        .map(from_time)
        .unwrap_or(now);
    let handled = [
        status.last_schedule_time.as_ref().map(from_time),
        status
            .last_skipped_schedule
            .as_ref()
            .map(|s| from_time(&s.time)),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(created);
    let mut due: Option<DueRun> = None;
    match &schedule {
        Ok(None) if status.last_schedule_time.is_none() => {
            due = Some(DueRun {
                time: created,
                trigger: Trigger::Once,
            });
        }
        Ok(Some(s)) if !spec.suspend => {
            match crate::schedule::due(s, now, handled, spec.starting_deadline_seconds) {
                Due::Run(time) => {
                    due = Some(DueRun {
                        time,
                        trigger: Trigger::Schedule,
                    })
                }
                Due::Missed(time) => skip(&mut status, &mut ctx, time, "MissedStartingDeadline"),
                Due::Nothing => {}
            }
        }
        _ => {}
    }
    let run_now = sj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RUN_NOW_ANNOTATION))
        .filter(|v| Some(*v) != status.last_run_now.as_ref())
        .cloned();
    if let Some(value) = run_now {
        status.last_run_now = Some(value);
        // A run already due this pass serves the request too.
        if schedule.is_ok() && due.is_none() {
            due = Some(DueRun {
                time: now,
                trigger: Trigger::RunNow,
            });
        }
    }

    // 3. Start it, within the concurrency policy.
    if let Some(due) = due {
        let busy = !still_active.is_empty();
        let start = match spec.concurrency_policy {
            _ if !busy => true,
            ConcurrencyPolicy::Allow => true,
            ConcurrencyPolicy::Forbid => {
                skip(&mut status, &mut ctx, due.time, "ConcurrentRunActive");
                false
            }
            ConcurrencyPolicy::Replace => {
                for run in still_active.drain(..) {
                    let message = format!("replaced by the run due at {}", due.time.to_rfc3339());
                    let finished = ctx.finish(&run, Outcome::Failed, "Replaced", message);
                    delete_runs.push(run.id.clone());
                    status.last_run = Some(finished);
                }
                true
            }
        };
        let id = run_id(due.time);
        let known = observed.runs.contains_key(&id)
            || still_active.iter().any(|r| r.id == id)
            || status.last_run.as_ref().is_some_and(|r| r.id == id);
        if start && !known {
            ctx.transitions.push(Transition::RunStarted {
                run: id.clone(),
                trigger: due.trigger,
            });
            still_active.push(RunStatus {
                id,
                trigger: due.trigger,
                scheduled_time: to_time(due.time),
                start_time: to_time(now),
                stage: Stage::Pending,
                shards: ShardCounts {
                    total: spec.shards,
                    ..ShardCounts::default()
                },
                failed_indexes: None,
            });
        }
        if start && due.trigger != Trigger::RunNow {
            status.last_schedule_time = Some(to_time(due.time));
        }
    }
    status.current_run = still_active.pop();
    status.concurrent_runs = still_active;

    // 4. History: finished runs beyond the limits lose their Jobs.
    let active_ids: BTreeSet<&str> = status
        .current_run
        .iter()
        .chain(&status.concurrent_runs)
        .map(|r| r.id.as_str())
        .collect();
    let (mut succeeded, mut failed) = (Vec::new(), Vec::new());
    for (id, jobs) in observed.runs.iter().rev() {
        if active_ids.contains(id.as_str()) || delete_runs.contains(id) {
            continue;
        }
        if jobs.merge.as_ref().is_some_and(|m| m.complete) {
            succeeded.push(id.clone());
        } else {
            failed.push(id.clone());
        }
    }
    delete_runs.extend(
        succeeded
            .into_iter()
            .skip(spec.successful_runs_history_limit.max(0) as usize),
    );
    delete_runs.extend(
        failed
            .into_iter()
            .skip(spec.failed_runs_history_limit.max(0) as usize),
    );

    // 5. What to show.
    let next = match &schedule {
        Ok(Some(s)) if !spec.suspend => s.next_after(now),
        _ => None,
    };
    status.next_schedule_time = next.map(to_time);
    status.phase = Some(phase(&status));
    status.shards = status
        .current_run
        .as_ref()
        .map(|r| &r.shards)
        .or(status.last_run.as_ref().map(|r| &r.shards))
        .map(|s| format!("{}/{}", s.succeeded, s.total));
    status.conditions = conditions(sj, &old, &status, schedule.as_ref().err(), now);

    let requeue_after = if !ctx.create.is_empty()
        || status
            .current_run
            .as_ref()
            .is_some_and(|r| r.stage == Stage::Pending)
    {
        // The status written now records the run; its Jobs follow on the next pass.
        std::time::Duration::from_secs(1)
    } else {
        next.map(|t| (t - now).to_std().unwrap_or_default() + std::time::Duration::from_millis(500))
            .unwrap_or(MAX_REQUEUE)
            .min(MAX_REQUEUE)
    };
    Decision {
        create: ctx.create,
        delete_runs,
        status,
        transitions: ctx.transitions,
        requeue_after,
    }
}

fn skip(status: &mut ScanJobStatus, ctx: &mut Ctx<'_>, time: DateTime<Utc>, reason: &str) {
    let already = status
        .last_skipped_schedule
        .as_ref()
        .is_some_and(|s| from_time(&s.time) >= time);
    if already {
        return;
    }
    status.last_skipped_schedule = Some(SkippedSchedule {
        time: to_time(time),
        reason: reason.to_owned(),
    });
    ctx.transitions.push(Transition::RunSkipped {
        time,
        reason: reason.to_owned(),
    });
}

fn phase(status: &ScanJobStatus) -> Phase {
    match (&status.current_run, &status.last_run) {
        (Some(run), _) => match run.stage {
            Stage::Pending | Stage::Planning => Phase::Planning,
            Stage::Scanning => Phase::Scanning,
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
    schedule_error: Option<&crate::schedule::ScheduleError>,
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
        Some(run) => {
            let reason = match run.stage {
                Stage::Pending => "RunPending",
                Stage::Planning => "Planning",
                Stage::Scanning => "Scanning",
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
    let degraded = match (schedule_error, &status.last_run) {
        (Some(e), _) => make("Degraded", true, e.reason(), e.to_string()),
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
