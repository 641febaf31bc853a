//! The plan step of the reconcile pipeline (named `decide` here, since a "plan" is the scan
//! planner's output): from the ScanJob, what was observed and the time, decide the next status,
//! the Jobs to create, the runs to delete and the events to emit. Pure: no client, no clock.
//!
//! [`decide`] is five steps: move the active runs on by their Jobs, see whether a run is due,
//! start it within the concurrency policy, expire old runs beyond the history limits, and show
//! the result ([`crate::status`]).
//!
//! A run's identity is written to the status before its first Job exists (stage Pending), and a
//! step's Job is only ever created when the run moves into that step. So a restarted operator
//! continues a run from its Jobs, and a Job removed by a TTL is never created again.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use scanjob_contract::layout::run_id;
use scanjob_contract::termination::Merged;
use scanjob_contract::units::human_bytes;

use crate::build::{JobRequest, Step};
use crate::crd::{
    ALLOW_SHRINK_ANNOTATION, ConcurrencyPolicy, FinishedRun, Outcome, RUN_NOW_ANNOTATION,
    RunStatus, ScanJob, ScanJobStatus, ShardCounts, SkippedSchedule, Stage, SuccessfulRun, Trigger,
    Waiting, WaitingReason, from_time, to_time,
};
use crate::observe::{JobState, Observed, RunJobs};
use crate::schedule::{Due, Schedule, ScheduleError};
use crate::status::Refusal;

/// Longest wait before looking again when nothing is due: a safety net under the watches.
pub const MAX_REQUEUE: std::time::Duration = std::time::Duration::from_secs(300);

/// How soon to look again while a step has pods that are not running yet, which may turn out
/// unschedulable: the Job's status does not change when the scheduler gives up on a pod.
pub const PENDING_PODS_REQUEUE: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// A step's Job waits for its queue to admit it.
    RunQueued {
        run: String,
        step: Step,
        message: String,
    },
    /// The queue admitted a step's Job that waited.
    RunAdmitted {
        run: String,
        step: Step,
    },
    /// The queue suspended a step's Job it had admitted.
    RunPreempted {
        run: String,
        step: Step,
        message: String,
    },
    /// Pods of a step cannot be scheduled.
    PodsUnschedulable {
        run: String,
        step: Step,
        message: String,
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
            Transition::RunQueued { .. } => "RunQueued",
            Transition::RunAdmitted { .. } => "RunAdmitted",
            Transition::RunPreempted { .. } => "RunPreempted",
            Transition::PodsUnschedulable { .. } => "PodsUnschedulable",
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

/// The step whose Job a run in `stage` waits on.
fn step_of(stage: Stage) -> Option<Step> {
    match stage {
        Stage::Pending => None,
        Stage::Planning => Some(Step::Plan),
        Stage::Scanning => Some(Step::Scan),
        Stage::Hashing => Some(Step::Hash),
        Stage::Joining => Some(Step::Join),
        Stage::Merging => Some(Step::Merge),
    }
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

/// Decides the next step for `sj` given its observed Jobs at `now`.
pub fn decide(sj: &ScanJob, observed: &Observed, now: DateTime<Utc>) -> Decision {
    let schedule = Schedule::parse(sj.spec.schedule.as_deref(), sj.spec.time_zone.as_deref());
    let mut pass = Pass::new(sj, now);
    let refusal = match (&observed.not_allowed, &schedule) {
        (Some(message), _) => Some(Refusal {
            reason: "SourceNotAllowed",
            message: message.clone(),
        }),
        (None, Err(e)) => Some(Refusal {
            reason: e.reason(),
            message: e.to_string(),
        }),
        (None, Ok(_)) => None,
    };
    let mut active = pass.advance_runs(observed);
    // A refused source starts nothing (its runs already going go on).
    if let Some(due) = pass
        .due_run(&schedule)
        .filter(|_| observed.not_allowed.is_none())
    {
        pass.start(due, &mut active, observed);
    }
    pass.status.current_run = active.pop();
    pass.status.concurrent_runs = active;
    pass.expire_history(observed);
    let next = match &schedule {
        Ok(Some(s)) if !sj.spec.suspend => s.next_after(now),
        _ => None,
    };
    let old = sj.status.clone().unwrap_or_default();
    crate::status::show(sj, &old, &mut pass.status, next, refusal.as_ref(), now);
    pass.decision(next)
}

/// How one active run moves on.
enum Progress {
    Active(RunStatus),
    Finished(FinishedRun, Option<SuccessfulRun>),
}

/// A due run: when it was scheduled and why it starts.
struct DueRun {
    time: DateTime<Utc>,
    trigger: Trigger,
}

/// One reconcile's decision as it is being made.
struct Pass<'a> {
    sj: &'a ScanJob,
    now: DateTime<Utc>,
    /// The status being decided, from the observed one.
    status: ScanJobStatus,
    create: Vec<JobRequest>,
    delete_runs: Vec<String>,
    transitions: Vec<Transition>,
    /// An active step has pods that are not running (pending, or found unschedulable).
    pods_pending: bool,
}

impl<'a> Pass<'a> {
    fn new(sj: &'a ScanJob, now: DateTime<Utc>) -> Self {
        let mut status = sj.status.clone().unwrap_or_default();
        status.observed_generation = sj.metadata.generation;
        Self {
            sj,
            now,
            status,
            create: Vec::new(),
            delete_runs: Vec::new(),
            transitions: Vec::new(),
            pods_pending: false,
        }
    }

    /// Step 1: moves every active run on by its Jobs, oldest first; returns those still active.
    fn advance_runs(&mut self, observed: &Observed) -> Vec<RunStatus> {
        let mut active: Vec<RunStatus> = self.status.concurrent_runs.drain(..).collect();
        active.extend(self.status.current_run.take());
        let empty = RunJobs::default();
        let mut still_active = Vec::new();
        for run in active {
            let jobs = observed.runs.get(&run.id).unwrap_or(&empty);
            let stage = run.stage;
            match self.advance(run, jobs) {
                Progress::Active(mut run) => {
                    self.wait_state(&mut run, stage, jobs);
                    still_active.push(run)
                }
                Progress::Finished(finished, success) => self.record_finished(finished, success),
            }
        }
        still_active
    }

    fn record_finished(&mut self, finished: FinishedRun, success: Option<SuccessfulRun>) {
        if success.is_some() {
            self.status.last_successful_run = success;
        }
        if self
            .status
            .last_run
            .as_ref()
            .is_none_or(|last| last.id <= finished.id)
        {
            self.status.last_run = Some(finished);
        }
    }

    /// Step 2: the run due now, by the schedule or a run-now request, if any.
    fn due_run(&mut self, schedule: &Result<Option<Schedule>, ScheduleError>) -> Option<DueRun> {
        let spec = &self.sj.spec;
        let created = self
            .sj
            .metadata
            .creation_timestamp
            .as_ref()
            .map(from_time)
            .unwrap_or(self.now);
        let handled = [
            self.status.last_schedule_time.as_ref().map(from_time),
            self.status
                .last_skipped_schedule
                .as_ref()
                .map(|s| from_time(&s.time)),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(created);
        let mut due = None;
        match schedule {
            Ok(None) if self.status.last_schedule_time.is_none() => {
                due = Some(DueRun {
                    time: created,
                    trigger: Trigger::Once,
                });
            }
            Ok(Some(s)) if !spec.suspend => {
                match crate::schedule::due(s, self.now, handled, spec.starting_deadline_seconds) {
                    Due::Run(time) => {
                        due = Some(DueRun {
                            time,
                            trigger: Trigger::Schedule,
                        })
                    }
                    Due::Missed(time) => self.skip(time, "MissedStartingDeadline"),
                    Due::Nothing => {}
                }
            }
            _ => {}
        }
        let run_now = self.new_annotation(RUN_NOW_ANNOTATION, &self.status.last_run_now);
        if let Some(value) = run_now {
            self.status.last_run_now = Some(value);
            // A run already due this pass serves the request too.
            if schedule.is_ok() && due.is_none() {
                due = Some(DueRun {
                    time: self.now,
                    trigger: Trigger::RunNow,
                });
            }
        }
        due
    }

    /// Step 3: starts the due run within the concurrency policy.
    fn start(&mut self, due: DueRun, active: &mut Vec<RunStatus>, observed: &Observed) {
        let spec = &self.sj.spec;
        let busy = !active.is_empty();
        let start = match spec.concurrency_policy {
            _ if !busy => true,
            ConcurrencyPolicy::Allow => true,
            ConcurrencyPolicy::Forbid => {
                self.skip(due.time, "ConcurrentRunActive");
                false
            }
            ConcurrencyPolicy::Replace => {
                for run in active.drain(..) {
                    let message = format!("replaced by the run due at {}", due.time.to_rfc3339());
                    let finished = self.finish(&run, Outcome::Failed, "Replaced", message);
                    self.delete_runs.push(run.id.clone());
                    self.status.last_run = Some(finished);
                }
                true
            }
        };
        let id = run_id(due.time);
        let known = observed.runs.contains_key(&id)
            || active.iter().any(|r| r.id == id)
            || self.status.last_run.as_ref().is_some_and(|r| r.id == id);
        if start && !known {
            self.transitions.push(Transition::RunStarted {
                run: id.clone(),
                trigger: due.trigger,
            });
            active.push(RunStatus {
                id,
                trigger: due.trigger,
                scheduled_time: to_time(due.time),
                start_time: to_time(self.now),
                stage: Stage::Pending,
                shards: ShardCounts {
                    total: spec.shards,
                    ..ShardCounts::default()
                },
                failed_indexes: None,
                allow_shrink: self.take_allow_shrink(),
                waiting: None,
                admitted: false,
                preemptions: 0,
            });
        }
        if start && due.trigger != Trigger::RunNow {
            self.status.last_schedule_time = Some(to_time(due.time));
        }
    }

    /// Step 4: finished runs beyond the history limits lose their Jobs.
    fn expire_history(&mut self, observed: &Observed) {
        let spec = &self.sj.spec;
        let active_ids: BTreeSet<&str> = self
            .status
            .current_run
            .iter()
            .chain(&self.status.concurrent_runs)
            .map(|r| r.id.as_str())
            .collect();
        let (mut succeeded, mut failed) = (Vec::new(), Vec::new());
        for (id, jobs) in observed.runs.iter().rev() {
            if active_ids.contains(id.as_str()) || self.delete_runs.contains(id) {
                continue;
            }
            if jobs.merge.as_ref().is_some_and(|m| m.complete) {
                succeeded.push(id.clone());
            } else {
                failed.push(id.clone());
            }
        }
        self.delete_runs.extend(
            succeeded
                .into_iter()
                .skip(spec.successful_runs_history_limit.max(0) as usize),
        );
        self.delete_runs.extend(
            failed
                .into_iter()
                .skip(spec.failed_runs_history_limit.max(0) as usize),
        );
    }

    /// The decision, looking again soon while a run waits for its Jobs, else at the next
    /// scheduled time (at most [`MAX_REQUEUE`] away).
    fn decision(self, next: Option<DateTime<Utc>>) -> Decision {
        let pending = self
            .status
            .current_run
            .as_ref()
            .is_some_and(|r| r.stage == Stage::Pending);
        let requeue_after = if !self.create.is_empty() || pending {
            // The status written now records the run; its Jobs follow on the next pass.
            std::time::Duration::from_secs(1)
        } else {
            // Pods are not watched: while some are not running, look again soon whether the
            // scheduler placed them.
            let limit = if self.pods_pending {
                PENDING_PODS_REQUEUE
            } else {
                MAX_REQUEUE
            };
            next.map(|t| {
                (t - self.now).to_std().unwrap_or_default() + std::time::Duration::from_millis(500)
            })
            .unwrap_or(limit)
            .min(limit)
        };
        Decision {
            create: self.create,
            delete_runs: self.delete_runs,
            status: self.status,
            transitions: self.transitions,
            requeue_after,
        }
    }

    /// Records a scheduled time that will not run, once.
    fn skip(&mut self, time: DateTime<Utc>, reason: &str) {
        let already = self
            .status
            .last_skipped_schedule
            .as_ref()
            .is_some_and(|s| from_time(&s.time) >= time);
        if already {
            return;
        }
        self.status.last_skipped_schedule = Some(SkippedSchedule {
            time: to_time(time),
            reason: reason.to_owned(),
        });
        self.transitions.push(Transition::RunSkipped {
            time,
            reason: reason.to_owned(),
        });
    }

    /// Moves one active run on by what its Jobs say.
    fn advance(&mut self, mut run: RunStatus, jobs: &RunJobs) -> Progress {
        match run.stage {
            Stage::Pending => {
                self.request(&run, Step::Plan, 1);
                run.stage = Stage::Planning;
                Progress::Active(run)
            }
            Stage::Planning => self.after_plan(run, jobs),
            Stage::Scanning => self.after_scan(run, jobs),
            Stage::Hashing => self.after_hash(run, jobs),
            Stage::Joining => self.after_join(run, jobs),
            Stage::Merging => self.after_merge(run, jobs),
        }
    }

    /// Whether the current step runs: its Job held by a queue (waiting for admission, or
    /// preempted after it), or its pods waiting for a node. A step just entered starts afresh.
    fn wait_state(&mut self, run: &mut RunStatus, stage_before: Stage, jobs: &RunJobs) {
        if run.stage != stage_before {
            run.waiting = None;
            run.admitted = false;
            return;
        }
        let Some(step) = step_of(run.stage) else {
            return;
        };
        let Some(job) = jobs.get(step) else {
            return;
        };
        if !job.suspended && job.active > job.ready {
            self.pods_pending = true;
        }
        let before = run.waiting.as_ref().map(|w| w.reason);
        let queued_before = matches!(
            before,
            Some(WaitingReason::AwaitingAdmission | WaitingReason::Preempted)
        );
        let on_queue = match &self.sj.spec.queue_name {
            Some(queue) => format!(" on queue {queue}"),
            None => String::new(),
        };
        let next = if job.suspended {
            let preempted = run.admitted || before == Some(WaitingReason::Preempted);
            if run.admitted {
                run.admitted = false;
                run.preemptions += 1;
            }
            if preempted {
                let message = format!(
                    "the {} Job {} was preempted and waits for admission again{on_queue} ({}/{} shards done)",
                    step.as_str(),
                    job.name,
                    run.shards.succeeded,
                    run.shards.total
                );
                Some((WaitingReason::Preempted, message))
            } else {
                let message = format!(
                    "the {} Job {} waits for admission{on_queue}",
                    step.as_str(),
                    job.name
                );
                Some((WaitingReason::AwaitingAdmission, message))
            }
        } else {
            if self.sj.spec.queue_name.is_some() || queued_before {
                run.admitted = true;
            }
            jobs.unschedulable(step).map(|u| {
                let message = format!(
                    "{} {} pod(s) cannot be scheduled: {}",
                    u.pods,
                    step.as_str(),
                    u.message
                );
                (WaitingReason::Unschedulable, message)
            })
        };
        if queued_before && !job.suspended {
            self.transitions.push(Transition::RunAdmitted {
                run: run.id.clone(),
                step,
            });
        }
        let Some((reason, message)) = next else {
            run.waiting = None;
            return;
        };
        if before != Some(reason) {
            let transition = match reason {
                WaitingReason::AwaitingAdmission => Transition::RunQueued {
                    run: run.id.clone(),
                    step,
                    message: message.clone(),
                },
                WaitingReason::Preempted => Transition::RunPreempted {
                    run: run.id.clone(),
                    step,
                    message: message.clone(),
                },
                WaitingReason::Unschedulable => Transition::PodsUnschedulable {
                    run: run.id.clone(),
                    step,
                    message: message.clone(),
                },
            };
            self.transitions.push(transition);
        }
        let since = match &run.waiting {
            Some(w) if w.reason == reason => w.since.clone(),
            _ => to_time(self.now),
        };
        run.waiting = Some(Waiting {
            reason,
            message,
            since,
        });
    }

    /// A planning run scans as many shards as its plan pod planned once the plan Job completes.
    fn after_plan(&mut self, mut run: RunStatus, jobs: &RunJobs) -> Progress {
        let Some(plan) = jobs.get(Step::Plan) else {
            return self.vanished(&run, Step::Plan);
        };
        if let Some((reason, message)) = &plan.failed {
            let why = jobs
                .failure(Step::Plan, None)
                .unwrap_or_else(|| format!("{reason}: {message}"));
            return self.failed(&run, "PlanFailed", why);
        }
        if !plan.complete {
            return Progress::Active(run);
        }
        let shards = jobs
            .planned_shards()
            .and_then(|n| i32::try_from(n).ok())
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

    /// A scanning run merges once every shard, or all but `maxFailedShards`, succeeded.
    fn after_scan(&mut self, mut run: RunStatus, jobs: &RunJobs) -> Progress {
        let Some(scan) = jobs.get(Step::Scan) else {
            return self.vanished(&run, Step::Scan);
        };
        self.shard_progress(&mut run, scan, jobs);
        if scan.complete {
            return self.after_shards(run);
        }
        let Some((reason, message)) = &scan.failed else {
            return Progress::Active(run);
        };
        let allowed = self.sj.spec.max_failed_shards;
        if reason == "FailedIndexes" && run.shards.failed <= allowed && run.shards.succeeded > 0 {
            return self.after_shards(run);
        }
        let failed = indexes(run.failed_indexes.as_deref());
        let first = failed.iter().next().and_then(|&i| {
            jobs.failure(Step::Scan, Some(i))
                .map(|why| format!("shard {i}: {why}"))
        });
        let why = match first {
            Some(first) => format!(
                "{} of {} shards failed (maxFailedShards {allowed}); {first}",
                run.shards.failed, run.shards.total
            ),
            None => format!("scan Job failed: {reason}: {message}"),
        };
        self.failed(&run, "ShardsFailed", why)
    }

    /// Shards done: the hash Job next when the night may read contents, else the merge.
    fn after_shards(&mut self, mut run: RunStatus) -> Progress {
        let duplicates = &self.sj.spec.duplicates;
        if duplicates.hash_bytes_per_night > 0 {
            self.request(&run, Step::Hash, duplicates.hash_pods.max(1));
            run.stage = Stage::Hashing;
            return Progress::Active(run);
        }
        self.before_merge(run)
    }

    /// The join Job first when the merge is shared by several pods, else the merge.
    fn before_merge(&mut self, mut run: RunStatus) -> Progress {
        if self.sj.spec.merge_pods > 1 {
            self.request(&run, Step::Join, self.sj.spec.merge_pods);
            run.stage = Stage::Joining;
        } else {
            self.request(&run, Step::Merge, 1);
            run.stage = Stage::Merging;
        }
        Progress::Active(run)
    }

    /// A joining run merges once its join Job has ended. If a partition failed, the merge finds
    /// the partitions incomplete and joins every row itself: slower, never a night published
    /// with a hole; its own failure fails the run.
    fn after_join(&mut self, mut run: RunStatus, jobs: &RunJobs) -> Progress {
        let Some(join) = jobs.get(Step::Join) else {
            return self.vanished(&run, Step::Join);
        };
        if !join.complete && join.failed.is_none() {
            return Progress::Active(run);
        }
        self.request(&run, Step::Merge, 1);
        run.stage = Stage::Merging;
        Progress::Active(run)
    }

    /// A hashing run merges once its hash Job has ended, however it ended: the hashes are
    /// evidence for the duplicates, not part of the table of contents, so a partition that
    /// failed leaves its groups at `candidate` and the night is still published.
    fn after_hash(&mut self, run: RunStatus, jobs: &RunJobs) -> Progress {
        let Some(hash) = jobs.get(Step::Hash) else {
            return self.vanished(&run, Step::Hash);
        };
        if !hash.complete && hash.failed.is_none() {
            return Progress::Active(run);
        }
        self.before_merge(run)
    }

    /// A merging run has succeeded once its merge pod says what it published.
    fn after_merge(&mut self, run: RunStatus, jobs: &RunJobs) -> Progress {
        let Some(merge) = jobs.get(Step::Merge) else {
            return self.vanished(&run, Step::Merge);
        };
        if let Some((reason, message)) = &merge.failed {
            let why = jobs
                .failure(Step::Merge, None)
                .unwrap_or_else(|| format!("{reason}: {message}"));
            return self.failed(&run, "MergeFailed", why);
        }
        if !merge.complete {
            return Progress::Active(run);
        }
        match jobs.published() {
            Some(published) => self.published(&run, published),
            None => self.failed(
                &run,
                "MergeFailed",
                "the merge pod completed without a readable report".to_owned(),
            ),
        }
    }

    fn published(&mut self, run: &RunStatus, report: &Merged) -> Progress {
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
        let finished = self.finish(run, Outcome::Succeeded, "SnapshotPublished", message);
        self.transitions.push(Transition::RunSucceeded {
            run: run.id.clone(),
            seconds: self.seconds_since_start(run),
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
            snapshot: report.snapshot.clone(),
            missing_shards: report
                .missing_shards
                .iter()
                .map(|&i| i64::from(i))
                .collect(),
        };
        Progress::Finished(finished, Some(success))
    }

    /// Shard counts from the scan Job, and an event for every newly failed shard.
    fn shard_progress(&mut self, run: &mut RunStatus, scan: &JobState, jobs: &RunJobs) {
        let before = indexes(run.failed_indexes.as_deref());
        let now_failed = indexes(scan.failed_indexes.as_deref());
        for &index in now_failed.difference(&before) {
            let message = jobs
                .failure(Step::Scan, Some(index))
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

    fn vanished(&mut self, run: &RunStatus, step: Step) -> Progress {
        let message = format!(
            "the {} Job of run {} was deleted before it finished",
            step.as_str(),
            run.id
        );
        self.failed(run, "JobDeleted", message)
    }

    fn failed(&mut self, run: &RunStatus, reason: &str, message: String) -> Progress {
        Progress::Finished(self.finish(run, Outcome::Failed, reason, message), None)
    }

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
            preemptions: run.preemptions,
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
            allow_shrink: run.allow_shrink,
        });
    }

    /// The value of annotation `key` when it differs from `acted_on`, the value last acted on.
    fn new_annotation(&self, key: &str, acted_on: &Option<String>) -> Option<String> {
        self.sj
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .filter(|v| Some(*v) != acted_on.as_ref())
            .cloned()
    }

    /// Whether `scanjob.dev/allow-shrink` has a value not acted on yet; if so, it is acted on
    /// now, by the run being started.
    fn take_allow_shrink(&mut self) -> bool {
        let value = self.new_annotation(ALLOW_SHRINK_ANNOTATION, &self.status.last_allow_shrink);
        let allow = value.is_some();
        if allow {
            self.status.last_allow_shrink = value;
        }
        allow
    }
}
