//! The worker's own termination messages, from a real plan, scan and merge of a small tree and
//! from a real worker error, fed into the operator's decisions. A field renamed, retyped or
//! dropped on either side fails here.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use scanjob_contract::args::Budget;
use scanjob_operator::build::{JobRequest, Step};
use scanjob_operator::crd::{
    Outcome, RunStatus, ScanJob, ScanJobStatus, ShardCounts, Stage, to_time,
};
use scanjob_operator::decide::decide;
use scanjob_operator::observe::{JobState, Observed, PodReport, RunJobs};
use scanjob_worker::error::{EXIT_PERMANENT, Error};
use scanjob_worker::merge::{MergeOptions, merge_run};
use scanjob_worker::plan::{PlanRequest, make_plan};
use scanjob_worker::scan::walk::WalkCounters;
use scanjob_worker::scan::{ScanRequest, scan_shard};
use scanjob_worker::store::Location;
use scanjob_worker::store::layout::{WalkSettings, run_dir, url_of};
use scanjob_worker::termination::{
    PhaseResult, TerminationMessage, failure, merged, planned, scanned,
};

const RUN: &str = "20261123t000000z";

fn scanjob(stage: Stage, total: i32) -> ScanJob {
    let dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let yaml = std::fs::read_to_string(format!("{dir}/tests/fixtures/scanjob.yaml")).unwrap();
    let mut sj: ScanJob = serde_saphyr::from_str(&yaml).unwrap();
    let start = at("2026-11-23T00:00:02Z");
    sj.status = Some(ScanJobStatus {
        current_run: Some(RunStatus {
            id: RUN.into(),
            trigger: scanjob_operator::crd::Trigger::Schedule,
            scheduled_time: to_time(at("2026-11-23T00:00:00Z")),
            start_time: to_time(start),
            stage,
            shards: ShardCounts {
                total,
                ..ShardCounts::default()
            },
            failed_indexes: None,
            allow_shrink: false,
            waiting: None,
            admitted: false,
            preemptions: 0,
        }),
        last_schedule_time: Some(to_time(at("2026-11-23T00:00:00Z"))),
        ..ScanJobStatus::default()
    });
    sj
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn job(complete: bool) -> Option<JobState> {
    Some(JobState {
        name: "j".into(),
        complete,
        ..JobState::default()
    })
}

fn report(
    step: Step,
    index: Option<u32>,
    exit_code: i32,
    message: TerminationMessage,
) -> PodReport {
    PodReport::new(step, index, exit_code, message.to_line())
}

fn observed(jobs: RunJobs) -> Observed {
    Observed {
        runs: [(RUN.to_string(), jobs)].into(),
        not_allowed: None,
    }
}

/// A small tree planned into two shards, both scanned, and merged, all by the worker's code.
struct WorkerRun {
    plan: TerminationMessage,
    shards: u32,
    scans: Vec<TerminationMessage>,
    merge: TerminationMessage,
    files: u64,
    directories: u64,
    bytes: u64,
    snapshot: String,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn worker_run() -> WorkerRun {
    let tree = tempfile::tempdir().unwrap();
    for top in ["alpha", "beta", "gamma", "delta"] {
        for sub in 0..3 {
            let dir = tree.path().join(top).join(format!("d{sub}"));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..4 {
                std::fs::write(dir.join(format!("f{f}.txt")), vec![b'x'; 100 * f + 1]).unwrap();
            }
        }
    }
    let out = tempfile::tempdir().unwrap();
    let out_url = out.path().to_str().unwrap().to_string();
    let (plan, plan_url) = make_plan(PlanRequest {
        root: tree.path().to_path_buf(),
        output: Location::parse(&out_url).unwrap(),
        shards: 2,
        run: RUN.into(),
        previous: None,
        settings: WalkSettings::default(),
        threads: 2,
        budget: Budget::default(),
    })
    .await
    .unwrap();
    let shards = plan.shards.len() as u32;
    let mut scans = Vec::new();
    for index in 0..shards {
        let success = scan_shard(
            ScanRequest {
                plan_url: plan_url.clone(),
                index,
                threads: 2,
                part_bytes: 1 << 20,
                root_override: None,
                budget: Budget::default(),
            },
            Arc::new(WalkCounters::default()),
        )
        .await
        .unwrap();
        scans.push(PhaseResult::Scan(scanned(&success)).into());
    }
    let (manifest, snapshot) =
        merge_run(&url_of(&out_url, &run_dir(RUN)), &MergeOptions::default())
            .await
            .unwrap();
    WorkerRun {
        plan: PhaseResult::Plan(planned(&plan, &plan_url)).into(),
        shards,
        scans,
        merge: PhaseResult::Merge(merged(&manifest, &snapshot)).into(),
        files: manifest.counts.files,
        directories: manifest.counts.directories,
        bytes: manifest.counts.bytes,
        snapshot,
        _dirs: (tree, out),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_follows_a_run_by_the_workers_own_messages() {
    let worker = worker_run().await;
    assert!(
        worker.shards >= 1 && worker.files == 48,
        "{} files",
        worker.files
    );

    // The plan pod's message sizes the scan Job.
    let sj = scanjob(Stage::Planning, 3);
    let obs = observed(RunJobs {
        plan: job(true),
        reports: vec![report(Step::Plan, None, 0, worker.plan.clone())],
        ..RunJobs::default()
    });
    let d = decide(&sj, &obs, at("2026-11-23T00:03:00Z"));
    assert_eq!(
        d.create,
        [JobRequest {
            run: RUN.into(),
            step: Step::Scan,
            shards: worker.shards as i32,
            allow_shrink: false,
        }]
    );

    // The scan pods' messages are read without complaint; the merge pod's is published.
    let sj = scanjob(Stage::Merging, worker.shards as i32);
    let mut reports: Vec<PodReport> = worker
        .scans
        .iter()
        .enumerate()
        .map(|(i, m)| report(Step::Scan, Some(i as u32), 0, m.clone()))
        .collect();
    reports.push(report(Step::Merge, None, 0, worker.merge.clone()));
    let obs = observed(RunJobs {
        plan: job(true),
        scan: job(true),
        hash: None,
        join: None,
        merge: job(true),
        reports,
        unschedulable: Vec::new(),
    });
    let d = decide(&sj, &obs, at("2026-11-23T00:20:00Z"));
    let last = d.status.last_run.expect("a finished run");
    assert_eq!(
        (last.outcome, last.reason.as_str()),
        (Outcome::Succeeded, "SnapshotPublished"),
        "{}",
        last.message
    );
    let published = d.status.last_successful_run.expect("a published snapshot");
    assert_eq!(
        (published.files, published.directories, published.bytes),
        (
            worker.files as i64,
            worker.directories as i64,
            worker.bytes as i64
        )
    );
    assert_eq!(published.snapshot, worker.snapshot);
}

#[test]
fn a_worker_error_reaches_the_run_failure_with_its_label_and_exit_code() {
    let error = Error::BadRoot {
        path: "/scan/projects".into(),
        reason: "not a directory".into(),
    };
    assert_eq!(error.exit_code(), EXIT_PERMANENT);
    let mut sj = scanjob(Stage::Scanning, 3);
    sj.spec.max_failed_shards = 0;
    let obs = observed(RunJobs {
        plan: job(true),
        scan: Some(JobState {
            name: "s".into(),
            failed: Some(("FailedIndexes".into(), "Job has failed indexes".into())),
            completed_indexes: Some("0,2".into()),
            failed_indexes: Some("1".into()),
            ..JobState::default()
        }),
        reports: vec![report(
            Step::Scan,
            Some(1),
            error.exit_code(),
            failure(&error).into(),
        )],
        ..RunJobs::default()
    });
    let d = decide(&sj, &obs, at("2026-11-23T00:10:00Z"));
    let last = d.status.last_run.expect("a failed run");
    assert_eq!(last.outcome, Outcome::Failed);
    assert!(
        last.message
            .contains("shard 1: bad_root: scan root /scan/projects: not a directory"),
        "{}",
        last.message
    );
}
