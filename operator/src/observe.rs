//! The observe step: what exists of a ScanJob's runs in the cluster, read fresh from the API
//! (not a cache, so a Job created by the previous reconcile is always seen), as typed values:
//! each Job's state and each worker pod's termination message, parsed once here. Only Jobs and
//! pods; the operator never reads the file system or the store.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use scanjob_contract::termination::{Merged, PhaseResult, TerminationMessage};
use serde::Deserialize;

use crate::build::{CONTAINER, Step};
use crate::crd::{NAME_LABEL, RUN_LABEL, STEP_LABEL};
use crate::error::Result;

/// One Job as far as the decision needs it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct JobState {
    pub name: String,
    /// Complete=True.
    pub complete: bool,
    /// Failed=True: (reason, message).
    pub failed: Option<(String, String)>,
    pub active: i32,
    /// Active pods that are ready (running); fewer than `active` while some are pending.
    pub ready: i32,
    pub completed_indexes: Option<String>,
    pub failed_indexes: Option<String>,
    /// `spec.suspend`: a queue holds the Job (not admitted yet, or preempted).
    pub suspended: bool,
}

impl JobState {
    pub fn from_job(job: &Job) -> Self {
        let status = job.status.clone().unwrap_or_default();
        let condition = |kind: &str| {
            status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == kind && c.status == "True")
                .cloned()
        };
        Self {
            name: job.metadata.name.clone().unwrap_or_default(),
            complete: condition("Complete").is_some(),
            failed: condition("Failed").map(|c| {
                (
                    c.reason.unwrap_or_else(|| "Failed".into()),
                    c.message.unwrap_or_default(),
                )
            }),
            active: status.active.unwrap_or(0),
            ready: status.ready.unwrap_or(0),
            completed_indexes: status.completed_indexes.filter(|s| !s.is_empty()),
            failed_indexes: status.failed_indexes.filter(|s| !s.is_empty()),
            suspended: job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false),
        }
    }
}

/// Pods of one step the scheduler could not place, and why (its message for the newest).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Unschedulable {
    pub step: Step,
    pub pods: i32,
    pub message: String,
}

/// A terminated worker container's report.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "RawPodReport")]
pub struct PodReport {
    pub step: Step,
    /// The completion index of a scan pod.
    pub index: Option<u32>,
    pub exit_code: i32,
    /// The termination message as the pod status holds it (the worker's one-line JSON, or the
    /// log tail of a crash).
    pub message: String,
    /// `message` parsed, when it is the worker's.
    pub said: Option<TerminationMessage>,
}

/// A pod report as written in fixtures: the message as text.
#[derive(Deserialize)]
struct RawPodReport {
    step: Step,
    index: Option<u32>,
    exit_code: i32,
    message: String,
}

impl From<RawPodReport> for PodReport {
    fn from(raw: RawPodReport) -> Self {
        Self::new(raw.step, raw.index, raw.exit_code, raw.message)
    }
}

impl PodReport {
    pub fn new(step: Step, index: Option<u32>, exit_code: i32, message: String) -> Self {
        let said = serde_json::from_str(&message).ok();
        Self {
            step,
            index,
            exit_code,
            message,
            said,
        }
    }

    /// Why the pod failed, for humans: the worker's `label: message`, or the raw text.
    pub fn failure_text(&self) -> String {
        match &self.said {
            Some(TerminationMessage::Failure(f)) => format!("{}: {}", f.error, f.message),
            _ => self.message.trim().to_owned(),
        }
    }
}

/// The Jobs and pod reports of one run.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RunJobs {
    pub plan: Option<JobState>,
    pub scan: Option<JobState>,
    pub hash: Option<JobState>,
    pub join: Option<JobState>,
    pub merge: Option<JobState>,
    pub reports: Vec<PodReport>,
    /// Pending pods the scheduler found no node for, by step.
    pub unschedulable: Vec<Unschedulable>,
}

impl RunJobs {
    pub fn get(&self, step: Step) -> Option<&JobState> {
        match step {
            Step::Plan => self.plan.as_ref(),
            Step::Scan => self.scan.as_ref(),
            Step::Hash => self.hash.as_ref(),
            Step::Join => self.join.as_ref(),
            Step::Merge => self.merge.as_ref(),
        }
    }

    fn slot(&mut self, step: Step) -> &mut Option<JobState> {
        match step {
            Step::Plan => &mut self.plan,
            Step::Scan => &mut self.scan,
            Step::Hash => &mut self.hash,
            Step::Join => &mut self.join,
            Step::Merge => &mut self.merge,
        }
    }

    /// Pods of `step` that cannot be scheduled, if any.
    pub fn unschedulable(&self, step: Step) -> Option<&Unschedulable> {
        self.unschedulable.iter().find(|u| u.step == step)
    }

    /// The newest report of `step` (and `index`) that exited with `success`.
    pub fn report(&self, step: Step, index: Option<u32>, success: bool) -> Option<&PodReport> {
        self.reports
            .iter()
            .rev()
            .find(|r| r.step == step && r.index == index && (r.exit_code == 0) == success)
    }

    /// Why the newest failed pod of `step` (and `index`) failed, in the worker's words.
    pub fn failure(&self, step: Step, index: Option<u32>) -> Option<String> {
        self.report(step, index, false).map(PodReport::failure_text)
    }

    /// How many shards the plan pod planned.
    pub fn planned_shards(&self) -> Option<u32> {
        match &self.report(Step::Plan, None, true)?.said {
            Some(TerminationMessage::Success(PhaseResult::Plan(plan))) => Some(plan.shards),
            _ => None,
        }
    }

    /// What the merge pod published.
    pub fn published(&self) -> Option<&Merged> {
        match &self.report(Step::Merge, None, true)?.said {
            Some(TerminationMessage::Success(PhaseResult::Merge(m) | PhaseResult::Run(m))) => {
                Some(m)
            }
            _ => None,
        }
    }
}

/// Everything observed of one ScanJob: its runs by id, and whether its source is allowed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Observed {
    pub runs: BTreeMap<String, RunJobs>,
    /// Why the operator's allow-list refuses the ScanJob's source (an NFS export it does not
    /// grant this namespace, or not as this uid or gid), if it does.
    pub not_allowed: Option<String>,
}

impl Observed {
    /// Jobs labelled with the ScanJob's name, and terminated pods of the runs in `active`.
    pub async fn read(
        jobs: &Api<Job>,
        pods: &Api<Pod>,
        name: &str,
        active: &[String],
    ) -> Result<Self> {
        let selector = format!("{NAME_LABEL}={name}");
        let mut runs: BTreeMap<String, RunJobs> = BTreeMap::new();
        for job in jobs.list(&ListParams::default().labels(&selector)).await? {
            let labels = job.metadata.labels.clone().unwrap_or_default();
            let (Some(run), Some(step)) = (
                labels.get(RUN_LABEL),
                labels.get(STEP_LABEL).and_then(|s| Step::parse(s)),
            ) else {
                continue;
            };
            *runs.entry(run.clone()).or_default().slot(step) = Some(JobState::from_job(&job));
        }
        for run in active {
            let selector = format!("{NAME_LABEL}={name},{RUN_LABEL}={run}");
            let listed = pods.list(&ListParams::default().labels(&selector)).await?;
            let mut reports: Vec<(String, PodReport)> =
                listed.iter().filter_map(pod_report).collect();
            // Oldest first, so the newest attempt of a shard wins in `report`.
            reports.sort_by(|a, b| a.0.cmp(&b.0));
            let jobs = runs.entry(run.clone()).or_default();
            jobs.reports = reports.into_iter().map(|(_, r)| r).collect();
            jobs.unschedulable = unschedulable(&listed.items);
        }
        Ok(Self {
            runs,
            not_allowed: None,
        })
    }
}

/// Pending pods whose `PodScheduled` condition says the scheduler found no node, per step.
fn unschedulable(pods: &[Pod]) -> Vec<Unschedulable> {
    let mut by_step: BTreeMap<Step, (i32, String, String)> = BTreeMap::new();
    for pod in pods {
        let Some(step) = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(STEP_LABEL))
            .and_then(|s| Step::parse(s))
        else {
            continue;
        };
        let Some(status) = &pod.status else { continue };
        if status.phase.as_deref() != Some("Pending") || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(condition) = status.conditions.iter().flatten().find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        }) else {
            continue;
        };
        let since = condition
            .last_transition_time
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        let entry = by_step
            .entry(step)
            .or_insert((0, String::new(), String::new()));
        entry.0 += 1;
        if since >= entry.1 {
            entry.1 = since;
            entry.2 = condition.message.clone().unwrap_or_default();
        }
    }
    by_step
        .into_iter()
        .map(|(step, (pods, _, message))| Unschedulable {
            step,
            pods,
            message,
        })
        .collect()
}

fn pod_report(pod: &Pod) -> Option<(String, PodReport)> {
    let labels = pod.metadata.labels.as_ref()?;
    let step = Step::parse(labels.get(STEP_LABEL)?)?;
    let index = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("batch.kubernetes.io/job-completion-index"))
        .and_then(|i| i.parse().ok());
    let status = pod.status.as_ref()?;
    let terminated = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CONTAINER)?
        .state
        .as_ref()?
        .terminated
        .as_ref()?;
    let started = status
        .start_time
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let mut message = terminated.message.clone().unwrap_or_default();
    if let Some(killed) = killed_by_node(status, terminated) {
        // The worker could not say why it ended: the node's reason leads, then any log tail.
        message = match message.trim() {
            "" => killed,
            tail => format!("{killed}; {tail}"),
        };
    }
    Some((
        started,
        PodReport::new(step, index, terminated.exit_code, message),
    ))
}

/// Why the node ended a container the worker did not end itself: the kernel's OOM killer, or
/// the pod's `activeDeadlineSeconds`.
fn killed_by_node(
    status: &k8s_openapi::api::core::v1::PodStatus,
    terminated: &k8s_openapi::api::core::v1::ContainerStateTerminated,
) -> Option<String> {
    if terminated.reason.as_deref() == Some("OOMKilled") {
        return Some(format!(
            "OOMKilled: the container exceeded its memory limit (exit code {})",
            terminated.exit_code
        ));
    }
    match status.reason.as_deref() {
        Some(reason @ "DeadlineExceeded") => Some(format!(
            "{reason}: {}",
            status
                .message
                .as_deref()
                .unwrap_or("the pod ran longer than spec.worker.activeDeadlineSeconds")
        )),
        _ => None,
    }
}
