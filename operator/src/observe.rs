//! The observe step: what exists of a ScanJob's runs in the cluster, read fresh from the API
//! (not a cache, so a Job created by the previous reconcile is always seen). Only Jobs and the
//! termination messages of their pods; the operator never reads the file system or the store.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
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
    pub completed_indexes: Option<String>,
    pub failed_indexes: Option<String>,
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
            completed_indexes: status.completed_indexes.filter(|s| !s.is_empty()),
            failed_indexes: status.failed_indexes.filter(|s| !s.is_empty()),
        }
    }
}

/// A terminated worker container's report.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PodReport {
    pub step: Step,
    /// The completion index of a scan pod.
    pub index: Option<u32>,
    pub exit_code: i32,
    /// The termination message (the worker's one-line JSON, or log tail on a crash).
    pub message: String,
}

/// The Jobs and pod reports of one run.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RunJobs {
    pub plan: Option<JobState>,
    pub scan: Option<JobState>,
    pub merge: Option<JobState>,
    pub reports: Vec<PodReport>,
}

impl RunJobs {
    pub fn get(&self, step: Step) -> Option<&JobState> {
        match step {
            Step::Plan => self.plan.as_ref(),
            Step::Scan => self.scan.as_ref(),
            Step::Merge => self.merge.as_ref(),
        }
    }

    fn slot(&mut self, step: Step) -> &mut Option<JobState> {
        match step {
            Step::Plan => &mut self.plan,
            Step::Scan => &mut self.scan,
            Step::Merge => &mut self.merge,
        }
    }

    /// The newest report of `step` (and `index`) that exited with `success`.
    pub fn report(&self, step: Step, index: Option<u32>, success: bool) -> Option<&PodReport> {
        self.reports
            .iter()
            .rev()
            .find(|r| r.step == step && r.index == index && (r.exit_code == 0) == success)
    }
}

/// Everything observed of one ScanJob: its runs by id.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Observed {
    pub runs: BTreeMap<String, RunJobs>,
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
            let mut reports: Vec<(String, PodReport)> = pods
                .list(&ListParams::default().labels(&selector))
                .await?
                .into_iter()
                .filter_map(|p| pod_report(&p))
                .collect();
            // Oldest first, so the newest attempt of a shard wins in `report`.
            reports.sort_by(|a, b| a.0.cmp(&b.0));
            runs.entry(run.clone()).or_default().reports =
                reports.into_iter().map(|(_, r)| r).collect();
        }
        Ok(Self { runs })
    }
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
        PodReport {
            step,
            index,
            exit_code: terminated.exit_code,
            message,
        },
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
