//! The pure steps of reconcile, from YAML fixtures and no client: what `decide` does with a
//! ScanJob, what it observed and the time, and the Jobs `build` makes of a decision.

use chrono::{DateTime, Utc};
use scanjob_operator::build::{JobRequest, Step, WorkerDefaults, job};
use scanjob_operator::crd::{
    ConcurrencyPolicy, Outcome, Phase, ScanJob, ScanJobStatus, Stage, Trigger, WaitingReason,
};
use scanjob_operator::decide::{Decision, Transition, decide};
use scanjob_operator::observe::Observed;

fn fixture(name: &str) -> String {
    let dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    std::fs::read_to_string(format!("{dir}/tests/fixtures/{name}")).expect("fixture")
}

fn scanjob() -> ScanJob {
    serde_saphyr::from_str(&fixture("scanjob.yaml")).expect("scanjob.yaml")
}

fn with_status(mut sj: ScanJob, yaml: &str) -> ScanJob {
    sj.status = Some(serde_saphyr::from_str::<ScanJobStatus>(yaml).expect("status YAML"));
    sj
}

fn observed(yaml: &str) -> Observed {
    serde_saphyr::from_str(yaml).expect("observed YAML")
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Applies a decision's status, as the next reconcile would see it.
fn after(mut sj: ScanJob, d: &Decision) -> ScanJob {
    sj.status = Some(d.status.clone());
    sj
}

/// The reasons of the Events the decision's transitions become.
fn reasons(d: &Decision) -> Vec<&'static str> {
    d.transitions.iter().map(Transition::reason).collect()
}

fn condition<'a>(d: &'a Decision, kind: &str) -> (&'a str, &'a str) {
    let c = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .expect(kind);
    (c.status.as_str(), c.reason.as_str())
}

const SCANNING_JOBS: &str = r#"
runs:
  20261123t000000z:
    plan: {name: nightly-20261123t000000z-plan, complete: true}
    scan: {name: nightly-20261123t000000z-scan, active: 2, completed_indexes: "0"}
"#;

#[test]
fn a_due_run_is_recorded_before_any_job_then_planned() {
    let sj = scanjob();
    // 01:00 Berlin is 00:00 UTC; two minutes later the run is due.
    let d = decide(&sj, &Observed::default(), at("2026-11-23T00:02:00Z"));
    let run = d.status.current_run.clone().expect("a run is recorded");
    assert_eq!(run.id, "20261123t000000z");
    assert_eq!(
        (run.stage, run.trigger),
        (Stage::Pending, Trigger::Schedule)
    );
    assert!(
        d.create.is_empty(),
        "no Job before the run is in the status"
    );
    assert_eq!(reasons(&d), ["RunStarted"]);
    assert_eq!(d.status.phase, Some(Phase::Planning));
    assert_eq!(d.status.observed_generation, Some(2));
    assert_eq!(
        d.status
            .next_schedule_time
            .as_ref()
            .map(|t| t.0.to_string()),
        Some("2026-11-24T00:00:00Z".into())
    );

    let d2 = decide(
        &after(sj, &d),
        &Observed::default(),
        at("2026-11-23T00:02:01Z"),
    );
    assert_eq!(
        d2.create,
        [JobRequest {
            run: run.id.clone(),
            step: Step::Plan,
            shards: 1,
            allow_shrink: false,
        }]
    );
    assert_eq!(d2.status.current_run.unwrap().stage, Stage::Planning);
    assert!(d2.transitions.is_empty(), "events on transitions only");
}

#[test]
fn the_scan_job_gets_as_many_completions_as_the_plan_made_shards() {
    let sj = with_status(
        scanjob(),
        "currentRun: {id: 20261123t000000z, trigger: Schedule, scheduledTime: '2026-11-23T00:00:00Z', startTime: '2026-11-23T00:00:02Z', stage: Planning, shards: {total: 3, succeeded: 0, failed: 0, active: 0}}\nlastScheduleTime: '2026-11-23T00:00:00Z'",
    );
    let obs = observed(
        r#"
runs:
  20261123t000000z:
    plan: {name: nightly-20261123t000000z-plan, complete: true}
    reports:
      - {step: plan, exit_code: 0, message: '{"phase":"plan","run":"20261123t000000z","plan":"s3://toc/isilon/runs/20261123t000000z/plan.json","shards":2,"balanced_by":"top-level-count","estimated_imbalance":1.1}'}
"#,
    );
    let d = decide(&sj, &obs, at("2026-11-23T00:03:00Z"));
    assert_eq!(
        d.create,
        [JobRequest {
            run: "20261123t000000z".into(),
            step: Step::Scan,
            shards: 2,
            allow_shrink: false,
        }]
    );
    let run = d.status.current_run.unwrap();
    assert_eq!((run.stage, run.shards.total), (Stage::Scanning, 2));
}

#[test]
fn a_shard_failing_for_good_fails_the_run_with_its_message_and_one_event() {
    let sj = with_status(scanjob(), &fixture("scanning.yaml"));
    let obs = observed(
        r#"
runs:
  20261123t000000z:
    plan: {name: nightly-20261123t000000z-plan, complete: true}
    scan:
      name: nightly-20261123t000000z-scan
      failed: [MaxFailedIndexesExceeded, Job has exceeded the specified maximal number of failed indexes]
      completed_indexes: "0,2"
      failed_indexes: "1"
    reports:
      - {step: scan, index: 1, exit_code: 3, message: '{"error":"bad_root","message":"/scan/projects is not a directory","retryable":false}'}
"#,
    );
    let d = decide(&sj, &obs, at("2026-11-23T00:10:00Z"));
    assert_eq!(reasons(&d), ["ShardFailed", "RunFailed"]);
    assert!(d.create.is_empty(), "no merge of a failed run");
    let last = d.status.last_run.clone().unwrap();
    assert_eq!(
        (last.outcome, last.reason.as_str()),
        (Outcome::Failed, "ShardsFailed")
    );
    assert!(
        last.message
            .contains("shard 1: bad_root: /scan/projects is not a directory"),
        "{}",
        last.message
    );
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(d.status.shards.as_deref(), Some("2/3"));
    assert_eq!(condition(&d, "Degraded"), ("True", "ShardsFailed"));
    assert_eq!(condition(&d, "Ready"), ("False", "NoSnapshot"));
    assert!(d.status.current_run.is_none());

    // The next pass has nothing new to say, and never touches the finished run's Jobs.
    let d2 = decide(&after(sj, &d), &obs, at("2026-11-23T00:10:05Z"));
    assert!(d2.transitions.is_empty() && d2.create.is_empty());
    assert_eq!(
        d2.status.conditions, d.status.conditions,
        "lastTransitionTime moves only on change"
    );
}

#[test]
fn failed_shards_within_max_failed_shards_are_merged_as_a_partial_snapshot() {
    let mut sj = with_status(scanjob(), &fixture("scanning.yaml"));
    sj.spec.max_failed_shards = 1;
    sj.spec.output.keep_snapshots = Some(7);
    let obs = observed(
        r#"
runs:
  20261123t000000z:
    plan: {name: p, complete: true}
    scan: {name: s, failed: [FailedIndexes, Job has failed indexes], completed_indexes: "0,2", failed_indexes: "1"}
"#,
    );
    let d = decide(&sj, &obs, at("2026-11-23T00:10:00Z"));
    assert_eq!(
        d.create,
        [JobRequest {
            run: "20261123t000000z".into(),
            step: Step::Merge,
            shards: 1,
            allow_shrink: false,
        }]
    );
    assert_eq!(reasons(&d), ["ShardFailed"]);
    let merge = job(&sj, &d.create[0], &defaults());
    let args = merge.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(
        args,
        [
            "merge",
            "--run",
            "s3://toc/isilon/runs/20261123t000000z",
            "--max-missing-shards",
            "1",
            "--keep-snapshots",
            "7",
            "--max-shrink-percent",
            "50",
            "--duplicate-min-size",
            "1048576"
        ]
    );
    // A run started under a new `scanjob.dev/allow-shrink` value merges with the guard off.
    let allowed = JobRequest {
        allow_shrink: true,
        ..d.create[0].clone()
    };
    let args = job(&sj, &allowed, &defaults())
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    let at = args
        .iter()
        .position(|a| a == "--max-shrink-percent")
        .unwrap();
    assert_eq!(args[at + 1], "100");
}

#[test]
fn a_merged_run_reports_what_the_merge_pod_published() {
    let sj = with_status(
        scanjob(),
        "currentRun: {id: 20261123t000000z, trigger: Schedule, scheduledTime: '2026-11-23T00:00:00Z', startTime: '2026-11-23T00:00:02Z', stage: Merging, shards: {total: 3, succeeded: 3, failed: 0, active: 0}}\nlastScheduleTime: '2026-11-23T00:00:00Z'",
    );
    let obs = observed(
        r#"
runs:
  20261123t000000z:
    plan: {name: p, complete: true}
    scan: {name: s, complete: true, completed_indexes: "0-2"}
    merge: {name: m, complete: true}
    reports:
      - {step: merge, exit_code: 0, message: '{"phase":"merge","run":"20261123t000000z","snapshot":"s3://toc/isilon/snapshots/20261123t000000z/manifest.json","files":16000000,"directories":510000,"bytes":1649267441664000,"errors":12,"missing_shards":[]}'}
"#,
    );
    let d = decide(&sj, &obs, at("2026-11-23T00:20:02Z"));
    assert_eq!(reasons(&d), ["RunSucceeded"]);
    let s = d.status.last_successful_run.clone().unwrap();
    assert_eq!(
        (s.files, s.directories, s.errors),
        (16_000_000, 510_000, 12)
    );
    assert_eq!(s.size, "1.5 PiB");
    assert_eq!(
        s.snapshot,
        "s3://toc/isilon/snapshots/20261123t000000z/manifest.json"
    );
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    assert_eq!(condition(&d, "Ready"), ("True", "SnapshotPublished"));
    assert_eq!(condition(&d, "Progressing"), ("False", "Idle"));
    match &d.transitions[0] {
        Transition::RunSucceeded { seconds, .. } => assert_eq!(*seconds, 1200.0),
        t => panic!("{t:?}"),
    }
}

#[test]
fn a_job_deleted_under_an_active_run_fails_it_and_is_never_recreated() {
    let sj = with_status(scanjob(), &fixture("scanning.yaml"));
    let obs = observed("runs:\n  20261123t000000z:\n    plan: {name: p, complete: true}\n");
    let d = decide(&sj, &obs, at("2026-11-23T00:10:00Z"));
    assert!(d.create.is_empty());
    assert_eq!(
        d.status.last_run.as_ref().map(|r| r.reason.as_str()),
        Some("JobDeleted")
    );
    // A finished run whose Jobs a TTL removed: nothing to do, nothing recreated.
    let d2 = decide(
        &after(sj, &d),
        &Observed::default(),
        at("2026-11-23T00:11:00Z"),
    );
    assert!(d2.create.is_empty() && d2.transitions.is_empty() && d2.status.current_run.is_none());
}

#[test]
fn forbid_skips_a_due_run_once_while_one_is_active() {
    let sj = with_status(scanjob(), &fixture("scanning.yaml"));
    let obs = observed(SCANNING_JOBS);
    // The next night's run is due while last night's still scans.
    let d = decide(&sj, &obs, at("2026-11-24T00:00:30Z"));
    assert_eq!(reasons(&d), ["RunSkipped"]);
    assert_eq!(
        d.status
            .last_skipped_schedule
            .as_ref()
            .map(|s| s.reason.as_str()),
        Some("ConcurrentRunActive")
    );
    assert_eq!(
        d.status.current_run.as_ref().map(|r| r.id.as_str()),
        Some("20261123t000000z")
    );
    let d2 = decide(&after(sj, &d), &obs, at("2026-11-24T00:00:40Z"));
    assert!(
        d2.transitions.is_empty(),
        "skipped once: {:?}",
        d2.transitions
    );
}

#[test]
fn replace_stops_the_active_run_and_allow_runs_both() {
    let mut sj = with_status(scanjob(), &fixture("scanning.yaml"));
    sj.spec.concurrency_policy = ConcurrencyPolicy::Replace;
    let obs = observed(SCANNING_JOBS);
    let d = decide(&sj, &obs, at("2026-11-24T00:00:30Z"));
    assert_eq!(reasons(&d), ["RunFailed", "RunStarted"]);
    assert_eq!(d.delete_runs, ["20261123t000000z"]);
    assert_eq!(
        d.status.last_run.as_ref().map(|r| r.reason.as_str()),
        Some("Replaced")
    );
    assert_eq!(
        d.status.current_run.as_ref().map(|r| r.id.as_str()),
        Some("20261124t000000z")
    );

    sj.spec.concurrency_policy = ConcurrencyPolicy::Allow;
    let d = decide(&sj, &obs, at("2026-11-24T00:00:30Z"));
    assert_eq!(reasons(&d), ["RunStarted"]);
    assert!(d.delete_runs.is_empty());
    assert_eq!(
        d.status.current_run.as_ref().map(|r| r.id.as_str()),
        Some("20261124t000000z")
    );
    assert_eq!(d.status.concurrent_runs.len(), 1);
    assert_eq!(d.status.concurrent_runs[0].id, "20261123t000000z");
}

#[test]
fn a_missed_time_beyond_the_starting_deadline_is_skipped_not_run() {
    let mut sj = with_status(scanjob(), "lastScheduleTime: '2026-11-20T00:00:00Z'");
    sj.spec.starting_deadline_seconds = Some(3600);
    // Back after three nights away, two hours after the last due time.
    let d = decide(&sj, &Observed::default(), at("2026-11-23T02:00:00Z"));
    assert_eq!(reasons(&d), ["RunSkipped"]);
    let skipped = d.status.last_skipped_schedule.clone().unwrap();
    assert_eq!(
        (skipped.time.0.to_string().as_str(), skipped.reason.as_str()),
        ("2026-11-23T00:00:00Z", "MissedStartingDeadline")
    );
    assert!(d.status.current_run.is_none());
    // Within the deadline, the latest missed time runs (only that one).
    let d = decide(&sj, &Observed::default(), at("2026-11-23T00:30:00Z"));
    assert_eq!(
        d.status.current_run.map(|r| r.id),
        Some("20261123t000000z".into())
    );
}

#[test]
fn run_now_starts_one_run_per_new_value_even_when_suspended() {
    let mut sj = with_status(scanjob(), "lastScheduleTime: '2026-11-23T00:00:00Z'");
    sj.spec.suspend = true;
    sj.metadata.annotations =
        Some([("scanjob.dev/run-now".to_owned(), "ticket-42".to_owned())].into());
    let d = decide(&sj, &Observed::default(), at("2026-11-23T09:15:07Z"));
    let run = d.status.current_run.clone().unwrap();
    assert_eq!(
        (run.id.as_str(), run.trigger),
        ("20261123t091507z", Trigger::RunNow)
    );
    assert_eq!(d.status.last_run_now.as_deref(), Some("ticket-42"));
    assert!(
        d.status.next_schedule_time.is_none(),
        "suspended: no next time"
    );
    // The schedule's bookkeeping is not moved by an on-demand run.
    assert_eq!(
        d.status
            .last_schedule_time
            .as_ref()
            .map(|t| t.0.to_string()),
        Some("2026-11-23T00:00:00Z".into())
    );
    let mut done = after(sj, &d);
    done.status.as_mut().unwrap().current_run = None;
    let d2 = decide(&done, &Observed::default(), at("2026-11-23T09:20:00Z"));
    assert!(
        d2.status.current_run.is_none(),
        "the same value does not run twice"
    );
}

#[test]
fn without_a_schedule_it_runs_once_under_its_creation_time() {
    let mut sj = scanjob();
    sj.spec.schedule = None;
    sj.spec.time_zone = None;
    let d = decide(&sj, &Observed::default(), at("2026-11-23T12:00:00Z"));
    let run = d.status.current_run.clone().unwrap();
    assert_eq!(
        (run.id.as_str(), run.trigger),
        ("20261120t100000z", Trigger::Once)
    );
    assert!(d.status.next_schedule_time.is_none());
    let mut done = after(sj, &d);
    done.status.as_mut().unwrap().current_run = None;
    let d2 = decide(&done, &Observed::default(), at("2026-11-24T12:00:00Z"));
    assert!(d2.status.current_run.is_none() && d2.transitions.is_empty());
}

#[test]
fn an_unknown_time_zone_degrades_and_starts_nothing() {
    let mut sj = scanjob();
    sj.spec.time_zone = Some("Mars/Olympus_Mons".into());
    let d = decide(&sj, &Observed::default(), at("2026-11-23T00:02:00Z"));
    assert!(d.status.current_run.is_none() && d.transitions.is_empty());
    assert_eq!(condition(&d, "Degraded"), ("True", "InvalidTimeZone"));
    let message = &d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap()
        .message;
    assert!(
        message.contains("spec.timeZone") && message.contains("Mars/Olympus_Mons"),
        "{message}"
    );
}

#[test]
fn old_runs_beyond_the_history_limits_lose_their_jobs() {
    let mut sj = with_status(scanjob(), "lastScheduleTime: '2026-11-23T00:00:00Z'");
    sj.spec.successful_runs_history_limit = 1;
    sj.spec.failed_runs_history_limit = 0;
    let obs = observed(
        r#"
runs:
  20261121t000000z: {plan: {name: a, complete: true}, scan: {name: b, complete: true}, merge: {name: c, complete: true}}
  20261122t000000z: {plan: {name: a, complete: true}, scan: {name: b, failed: [BackoffLimitExceeded, x]}}
  20261123t000000z: {plan: {name: a, complete: true}, scan: {name: b, complete: true}, merge: {name: c, complete: true}}
"#,
    );
    let d = decide(&sj, &obs, at("2026-11-23T08:00:00Z"));
    let mut deleted = d.delete_runs.clone();
    deleted.sort();
    assert_eq!(deleted, ["20261121t000000z", "20261122t000000z"]);
}

fn defaults() -> WorkerDefaults {
    WorkerDefaults {
        image: "ghcr.io/scanjob/scanjob:0.1.0".into(),
        service_account: "scanjob-worker".into(),
    }
}

#[test]
fn the_scan_job_is_indexed_hardened_and_fails_an_index_on_exit_code_3() {
    let sj = scanjob();
    let request = JobRequest {
        run: "20261123t000000z".into(),
        step: Step::Scan,
        shards: 3,
        allow_shrink: false,
    };
    let job = job(&sj, &request, &defaults());
    let yaml = serde_json::to_value(&job).unwrap();
    let spec = &yaml["spec"];
    assert_eq!(yaml["metadata"]["name"], "nightly-20261123t000000z-scan");
    assert_eq!(yaml["metadata"]["labels"]["scanjob.dev/name"], "nightly");
    assert_eq!(
        yaml["metadata"]["labels"]["scanjob.dev/run"],
        "20261123t000000z"
    );
    assert_eq!(yaml["metadata"]["ownerReferences"][0]["kind"], "ScanJob");
    assert_eq!(yaml["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(
        (spec["completions"].as_i64(), spec["parallelism"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(
        (
            spec["backoffLimitPerIndex"].as_i64(),
            spec["maxFailedIndexes"].as_i64()
        ),
        (Some(3), Some(0))
    );
    let rules = &spec["podFailurePolicy"]["rules"];
    assert_eq!(rules[0]["action"], "FailIndex");
    assert_eq!(rules[0]["onExitCodes"]["values"], serde_json::json!([3]));
    assert_eq!(rules[1]["action"], "Ignore");
    assert_eq!(rules[1]["onPodConditions"][0]["type"], "DisruptionTarget");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["serviceAccountName"], "scanjob-worker");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["nodeSelector"]["pool"], "batch");
    assert_eq!(pod["tolerations"][0]["key"], "batch");
    assert_eq!(pod["activeDeadlineSeconds"], 7200);
    assert_eq!(pod["volumes"][0]["nfs"]["server"], "isilon.example.com");
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "ghcr.io/scanjob/scanjob:0.1.0");
    assert_eq!(
        c["args"],
        serde_json::json!([
            "scan",
            "--plan",
            "s3://toc/isilon/runs/20261123t000000z/plan.json",
            "--threads",
            "32",
            "--deadline-seconds",
            "7140"
        ])
    );
    assert_eq!(c["envFrom"][0]["secretRef"]["name"], "toc-s3");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["volumeMounts"][0]["readOnly"], true);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(c["resources"]["requests"]["cpu"], "2");
}

#[test]
fn every_pod_has_a_writable_scratch_volume_and_no_host_network_by_default() {
    let sj = scanjob();
    for step in [Step::Plan, Step::Scan, Step::Merge] {
        let request = JobRequest {
            run: "20261123t000000z".into(),
            step,
            shards: 3,
            allow_shrink: false,
        };
        let job = serde_json::to_value(job(&sj, &request, &defaults())).unwrap();
        let pod = &job["spec"]["template"]["spec"];
        let scratch = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "scratch")
            .unwrap_or_else(|| panic!("{step:?}: no scratch volume"));
        assert_eq!(scratch["emptyDir"], serde_json::json!({}), "{step:?}");
        let mount = pod["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "scratch")
            .unwrap_or_else(|| panic!("{step:?}: scratch not mounted"));
        assert_eq!(mount["mountPath"], "/tmp", "{step:?}");
        assert_eq!(mount.get("readOnly"), None, "{step:?}");
        assert_eq!(pod.get("hostNetwork"), None, "{step:?}");
        assert_eq!(
            pod["containers"][0]["securityContext"]["capabilities"],
            serde_json::json!({"drop": ["ALL"]}),
            "{step:?}"
        );
    }
}

#[test]
fn read_all_files_runs_as_root_with_only_dac_read_search() {
    let mut sj = scanjob();
    sj.spec.worker.run_as_user = Some(0);
    sj.spec.worker.read_all_files = true;
    sj.spec.worker.host_network = true;
    sj.spec.worker.scratch_size_limit = Some(
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("10Gi".into()),
    );
    let request = JobRequest {
        run: "20261123t000000z".into(),
        step: Step::Scan,
        shards: 3,
        allow_shrink: false,
    };
    let job = serde_json::to_value(job(&sj, &request, &defaults())).unwrap();
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], false);
    assert_eq!(pod["hostNetwork"], true);
    let c = &pod["containers"][0]["securityContext"];
    assert_eq!(
        c["capabilities"],
        serde_json::json!({"add": ["DAC_READ_SEARCH"], "drop": ["ALL"]})
    );
    assert_eq!(c["allowPrivilegeEscalation"], false);
    assert_eq!(c["readOnlyRootFilesystem"], true);
    let scratch = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "scratch")
        .unwrap();
    assert_eq!(scratch["emptyDir"]["sizeLimit"], "10Gi");
}

#[test]
fn the_plan_job_walks_the_sub_path_with_the_spec_walk_options() {
    let sj = scanjob();
    let request = JobRequest {
        run: "20261123t000000z".into(),
        step: Step::Plan,
        shards: 1,
        allow_shrink: false,
    };
    let job = serde_json::to_value(job(&sj, &request, &defaults())).unwrap();
    assert_eq!(job["spec"]["backoffLimit"], 3);
    assert_eq!(
        job["spec"]["podFailurePolicy"]["rules"][0]["action"],
        "FailJob"
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["args"],
        serde_json::json!([
            "plan",
            "/scan/projects",
            "--shards",
            "3",
            "--out",
            "s3://toc/isilon",
            "--previous",
            "s3://toc/isilon",
            "--run",
            "20261123t000000z",
            "--project-level",
            "1",
            "--exclude",
            ".snapshot",
            "--one-file-system",
            "--threads",
            "32"
        ])
    );
}

#[test]
fn the_operations_budget_is_split_between_the_scan_pods() {
    let mut sj = scanjob();
    sj.spec.source.max_ops_per_second = Some(5000);
    sj.spec.source.latency_guard_milliseconds = Some(50);
    sj.spec.parallelism = 2;
    let args = |sj: &ScanJob, shards: i32| {
        let request = JobRequest {
            run: "r".into(),
            step: Step::Scan,
            shards,
            allow_shrink: false,
        };
        let job = serde_json::to_value(job(sj, &request, &defaults())).unwrap();
        job["spec"]["template"]["spec"]["containers"][0]["args"].clone()
    };
    let a = args(&sj, 3);
    let a: Vec<&str> = a
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let at = a.iter().position(|&x| x == "--max-ops-per-second").unwrap();
    assert_eq!(a[at + 1], "2500", "two pods at once, half each: {a:?}");
    let at = a.iter().position(|&x| x == "--latency-guard-ms").unwrap();
    assert_eq!(a[at + 1], "50");
    // One planned shard: one pod, the whole budget.
    let a = args(&sj, 1);
    assert!(
        a.to_string().contains("\"--max-ops-per-second\",\"5000\""),
        "{a}"
    );
    // The plan pod runs before any scan pod, alone: the whole budget and the guard.
    let request = JobRequest {
        run: "r".into(),
        step: Step::Plan,
        shards: 3,
        allow_shrink: false,
    };
    let plan = serde_json::to_value(job(&sj, &request, &defaults())).unwrap();
    let plan = plan["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        plan.contains("\"--max-ops-per-second\",\"5000\",\"--latency-guard-ms\",\"50\""),
        "{plan}"
    );
}

// --- Shared clusters: queues, placement, resources per step -------------------------------------

fn request(step: Step, shards: i32) -> JobRequest {
    JobRequest {
        run: "20261123t000000z".into(),
        step,
        shards,
        allow_shrink: false,
    }
}

fn queued() -> ScanJob {
    let mut sj = scanjob();
    sj.spec.queue_name = Some("batch".into());
    sj
}

#[test]
fn a_queued_scanjob_labels_its_jobs_for_the_queue_and_never_sets_suspend() {
    let sj = queued();
    for (step, shards, partial) in [
        (Step::Plan, 1, false),
        (Step::Scan, 3, true),
        (Step::Hash, 1, false),
        (Step::Join, 2, true),
        (Step::Merge, 1, false),
    ] {
        let job = serde_json::to_value(job(&sj, &request(step, shards), &defaults())).unwrap();
        let meta = &job["metadata"];
        assert_eq!(
            meta["labels"]["kueue.x-k8s.io/queue-name"], "batch",
            "{step:?}"
        );
        // Kueue refuses a minimum that is not below the Job's pods; one pod needs none.
        assert_eq!(
            meta["annotations"]["kueue.x-k8s.io/job-min-parallelism"].as_str(),
            partial.then_some("1"),
            "{step:?}"
        );
        assert!(
            job["spec"].get("suspend").is_none(),
            "{step:?}: suspend is the queue's"
        );
        let pod_labels = &job["spec"]["template"]["metadata"]["labels"];
        assert!(
            pod_labels.get("kueue.x-k8s.io/queue-name").is_none(),
            "the queue admits the Job, not its pods"
        );
    }
    let plain =
        serde_json::to_value(job(&scanjob(), &request(Step::Scan, 3), &defaults())).unwrap();
    assert!(
        plain["metadata"]["labels"]
            .get("kueue.x-k8s.io/queue-name")
            .is_none()
    );
    assert!(plain["metadata"].get("annotations").is_none());
}

#[test]
fn placement_labels_annotations_and_priority_reach_the_pod_template() {
    let mut sj = scanjob();
    let worker: serde_json::Value = serde_json::json!({
        "priorityClassName": "batch-low",
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
        "podLabels": {"team": "storage", "app.kubernetes.io/name": "mine"},
        "podAnnotations": {"cost-center": "42"},
    });
    sj.spec.worker.priority_class_name =
        serde_json::from_value(worker["priorityClassName"].clone()).unwrap();
    sj.spec.worker.affinity = serde_json::from_value(worker["affinity"].clone()).unwrap();
    sj.spec.worker.pod_labels = serde_json::from_value(worker["podLabels"].clone()).unwrap();
    sj.spec.worker.pod_annotations =
        serde_json::from_value(worker["podAnnotations"].clone()).unwrap();
    for step in [Step::Plan, Step::Scan, Step::Hash, Step::Join, Step::Merge] {
        let job = serde_json::to_value(job(&sj, &request(step, 2), &defaults())).unwrap();
        let template = &job["spec"]["template"];
        let pod = &template["spec"];
        assert_eq!(pod["priorityClassName"], "batch-low", "{step:?}");
        assert_eq!(pod["affinity"], worker["affinity"], "{step:?}");
        assert_eq!(pod["nodeSelector"]["pool"], "batch");
        assert_eq!(pod["tolerations"][0]["key"], "batch");
        let labels = &template["metadata"]["labels"];
        assert_eq!(labels["team"], "storage");
        assert_eq!(
            labels["app.kubernetes.io/name"], "scanjob",
            "the operator's labels win"
        );
        assert_eq!(labels["scanjob.dev/step"], step.as_str());
        assert_eq!(template["metadata"]["annotations"]["cost-center"], "42");
        assert!(
            job["metadata"]["labels"].get("team").is_none(),
            "pod labels stay on pods"
        );
    }
}

#[test]
fn each_step_gets_its_own_resources_then_the_worker_s_then_its_default() {
    let resources = |sj: &ScanJob, step: Step| {
        let job = serde_json::to_value(job(sj, &request(step, 2), &defaults())).unwrap();
        job["spec"]["template"]["spec"]["containers"][0]["resources"].clone()
    };
    let mut sj = scanjob();
    sj.spec.worker.resources = None;
    for step in [Step::Plan, Step::Scan, Step::Hash] {
        assert_eq!(
            resources(&sj, step),
            serde_json::json!({"requests": {"cpu": "250m", "memory": "256Mi"}}),
            "{step:?}"
        );
    }
    for step in [Step::Join, Step::Merge] {
        assert_eq!(
            resources(&sj, step),
            serde_json::json!({"requests": {"cpu": "500m", "memory": "1536Mi"}, "limits": {"memory": "4Gi"}}),
            "{step:?}: the memory pool is half the limit"
        );
    }
    // worker.resources is every step's; stepResources wins for its step.
    let sj = scanjob();
    let mut sj2 = sj.clone();
    sj2.spec.worker.step_resources.merge =
        Some(serde_json::from_value(serde_json::json!({"limits": {"memory": "8Gi"}})).unwrap());
    assert_eq!(resources(&sj, Step::Merge)["requests"]["cpu"], "2");
    assert_eq!(resources(&sj2, Step::Scan)["requests"]["cpu"], "2");
    assert_eq!(
        resources(&sj2, Step::Merge),
        serde_json::json!({"limits": {"memory": "8Gi"}})
    );
}

/// The scan Job of the scanning fixture, as observed: `extra` adds fields to it.
fn scan_job(extra: &str) -> Observed {
    observed(&format!(
        r#"
runs:
  20261123t000000z:
    plan: {{name: nightly-20261123t000000z-plan, complete: true}}
    scan: {{name: nightly-20261123t000000z-scan, completed_indexes: "0"{extra}}}
"#
    ))
}

fn waiting(d: &Decision) -> Option<(WaitingReason, String)> {
    let run = d.status.current_run.as_ref()?;
    run.waiting.as_ref().map(|w| (w.reason, w.message.clone()))
}

fn progressing_message(d: &Decision) -> String {
    d.status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[test]
fn a_queued_scan_waits_for_admission_and_a_preemption_counts_no_failure_and_no_retry() {
    let sj = with_status(queued(), &fixture("scanning.yaml"));
    // Kueue's webhook created the Job suspended; its quota is taken.
    let d = decide(
        &sj,
        &scan_job(", suspended: true"),
        at("2026-11-23T00:05:00Z"),
    );
    assert_eq!(condition(&d, "Progressing"), ("True", "AwaitingAdmission"));
    assert_eq!(
        progressing_message(&d),
        "run 20261123t000000z: the scan Job nightly-20261123t000000z-scan waits for admission on queue batch"
    );
    assert_eq!(reasons(&d), ["RunQueued"]);
    assert_eq!(d.status.phase, Some(Phase::Scanning));
    let d = decide(
        &after(sj, &d),
        &scan_job(", suspended: true"),
        at("2026-11-23T00:06:00Z"),
    );
    assert!(d.transitions.is_empty(), "events on transitions only");
    let since = d
        .status
        .current_run
        .as_ref()
        .unwrap()
        .waiting
        .as_ref()
        .unwrap()
        .since
        .clone();
    assert_eq!(since.0.to_string(), "2026-11-23T00:05:00Z");

    // Admitted: its pods run.
    let sj = after(with_status(queued(), &fixture("scanning.yaml")), &d);
    let d = decide(
        &sj,
        &scan_job(", active: 2, ready: 2"),
        at("2026-11-23T00:07:00Z"),
    );
    assert_eq!(waiting(&d), None);
    assert_eq!(condition(&d, "Progressing"), ("True", "Scanning"));
    assert_eq!(reasons(&d), ["RunAdmitted"]);
    assert!(d.status.current_run.as_ref().unwrap().admitted);

    // Preempted: Kueue suspends the Job again and its pods go away, uncounted.
    let sj = after(sj, &d);
    let d = decide(
        &sj,
        &scan_job(", suspended: true"),
        at("2026-11-23T00:08:00Z"),
    );
    let (reason, message) = waiting(&d).expect("waiting");
    assert_eq!(reason, WaitingReason::Preempted);
    assert_eq!(
        message,
        "the scan Job nightly-20261123t000000z-scan was preempted and waits for admission again on queue batch (1/3 shards done)"
    );
    assert_eq!(condition(&d, "Progressing"), ("True", "Preempted"));
    assert_eq!(reasons(&d), ["RunPreempted"]);
    let run = d.status.current_run.clone().unwrap();
    assert_eq!(
        (run.preemptions, run.shards.failed, run.stage),
        (1, 0, Stage::Scanning)
    );
    assert!(
        d.create.is_empty(),
        "nothing is retried: the Job goes on once admitted"
    );
    assert_eq!(condition(&d, "Degraded").0, "False");
    let d = decide(
        &after(sj, &d),
        &scan_job(", suspended: true"),
        at("2026-11-23T00:09:00Z"),
    );
    assert!(d.transitions.is_empty());
    assert_eq!(
        waiting(&d).unwrap().0,
        WaitingReason::Preempted,
        "still preempted, not queued anew"
    );

    // Admitted again, the remaining shards finish and the merge follows.
    let sj = after(with_status(queued(), &fixture("scanning.yaml")), &d);
    let d = decide(
        &sj,
        &scan_job(", active: 2, ready: 2"),
        at("2026-11-23T00:10:00Z"),
    );
    assert_eq!(reasons(&d), ["RunAdmitted"]);
    let d = decide(
        &after(sj, &d),
        &observed(
            r#"
runs:
  20261123t000000z:
    plan: {name: nightly-20261123t000000z-plan, complete: true}
    scan: {name: nightly-20261123t000000z-scan, complete: true, completed_indexes: "0-2"}
"#,
        ),
        at("2026-11-23T00:12:00Z"),
    );
    assert_eq!(d.create, [request(Step::Merge, 1)]);
    let run = d.status.current_run.clone().unwrap();
    assert_eq!(
        (run.stage, run.preemptions, run.admitted),
        (Stage::Merging, 1, false)
    );
    assert_eq!(run.waiting, None, "the merge Job starts afresh");
}

#[test]
fn pods_the_scheduler_cannot_place_say_so_in_the_status_once() {
    let sj = with_status(scanjob(), &fixture("scanning.yaml"));
    let obs = observed(
        r#"
runs:
  20261123t000000z:
    plan: {name: nightly-20261123t000000z-plan, complete: true}
    scan: {name: nightly-20261123t000000z-scan, active: 2, ready: 0, completed_indexes: "0"}
    unschedulable:
      - {step: scan, pods: 2, message: "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."}
"#,
    );
    let d = decide(&sj, &obs, at("2026-11-23T00:05:00Z"));
    assert_eq!(condition(&d, "Progressing"), ("True", "Unschedulable"));
    assert_eq!(
        progressing_message(&d),
        "run 20261123t000000z: 2 scan pod(s) cannot be scheduled: 0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    );
    assert_eq!(reasons(&d), ["PodsUnschedulable"]);
    assert_eq!(
        d.requeue_after,
        scanjob_operator::decide::PENDING_PODS_REQUEUE,
        "pods are not watched: look again soon"
    );
    let d2 = decide(&after(sj.clone(), &d), &obs, at("2026-11-23T00:05:10Z"));
    assert!(d2.transitions.is_empty(), "events on transitions only");
    // Placed at last (a node was added, a taint removed): the run says it scans again.
    let d3 = decide(
        &after(sj, &d2),
        &scan_job(", active: 2, ready: 2"),
        at("2026-11-23T00:06:00Z"),
    );
    assert_eq!(waiting(&d3), None);
    assert_eq!(condition(&d3, "Progressing"), ("True", "Scanning"));
}

/// The fixture reading an NFS export directly instead of mounting a volume.
fn nfs_scanjob() -> ScanJob {
    let mut sj = scanjob();
    sj.spec.source = serde_saphyr::from_str(
        "nfs: {server: filer1, export: /ifs/data, uid: 1000, gid: 100}\nexclude: ['.snapshot']",
    )
    .expect("nfs source YAML");
    sj
}

#[test]
fn an_nfs_source_the_allow_list_refuses_starts_no_run_and_says_what_is_refused() {
    let sj = nfs_scanjob();
    let refused = Observed {
        not_allowed: Some("uid 1000 is not allowed for filer1:/ifs/data in namespace data".into()),
        ..Observed::default()
    };
    let d = decide(&sj, &refused, at("2026-11-23T00:02:00Z"));
    assert_eq!(d.status.current_run, None);
    assert!(d.create.is_empty() && d.transitions.is_empty());
    assert_eq!(condition(&d, "Degraded"), ("True", "SourceNotAllowed"));
    let degraded = d.status.conditions.iter().find(|c| c.type_ == "Degraded");
    assert_eq!(
        degraded.unwrap().message,
        "uid 1000 is not allowed for filer1:/ifs/data in namespace data"
    );
    // Allowed, the same moment starts the run.
    let d = decide(&sj, &Observed::default(), at("2026-11-23T00:02:00Z"));
    assert_eq!(reasons(&d), ["RunStarted"]);
    assert_eq!(condition(&d, "Degraded"), ("False", "AsExpected"));
}

#[test]
fn an_nfs_source_is_planned_into_its_shards_read_as_its_identity_with_no_volume() {
    let sj = nfs_scanjob();
    assert_eq!(sj.spec.shards, 3);
    let args_and_volumes = |step: Step| {
        let request = JobRequest {
            run: "20261123t000000z".into(),
            step,
            shards: 1,
            allow_shrink: false,
        };
        let pod = job(&sj, &request, &defaults())
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        let volumes: Vec<String> = pod.volumes.unwrap().into_iter().map(|v| v.name).collect();
        (pod.containers[0].args.clone().unwrap(), volumes)
    };
    let (args, volumes) = args_and_volumes(Step::Plan);
    assert_eq!(
        args,
        [
            "plan",
            "nfs://filer1/ifs/data",
            "--shards",
            "3",
            "--out",
            "s3://toc/isilon",
            "--previous",
            "s3://toc/isilon",
            "--run",
            "20261123t000000z",
            "--project-level",
            "1",
            "--exclude",
            ".snapshot",
            "--nfs-uid",
            "1000",
            "--nfs-gid",
            "100",
            "--threads",
            "32"
        ]
    );
    assert_eq!(volumes, ["scratch"]);
    let (_, volumes) = args_and_volumes(Step::Scan);
    assert_eq!(
        volumes,
        ["scratch"],
        "a scan pod of an export mounts nothing"
    );
}

#[test]
fn a_reserved_source_port_is_bound_with_the_least_the_pod_network_allows() {
    let mut sj = nfs_scanjob();
    sj.spec.source.nfs.as_mut().unwrap().reserved_port = true;
    let pod = |sj: &ScanJob, step: Step| {
        let request = JobRequest {
            run: "20261123t000000z".into(),
            step,
            shards: 1,
            allow_shrink: false,
        };
        let job = serde_json::to_value(job(sj, &request, &defaults())).unwrap();
        job["spec"]["template"]["spec"].clone()
    };
    // The plan records the choice for the shards; it connects to nothing itself.
    let plan = pod(&sj, Step::Plan);
    let args = plan["containers"][0]["args"].as_array().unwrap();
    assert!(args.contains(&"--nfs-reserved-port".into()), "{args:?}");
    assert_eq!(plan["securityContext"].get("sysctls"), None);
    // In the pod's own network namespace: a namespaced sysctl, no capability, the same uid.
    for step in [Step::Scan, Step::Hash] {
        let p = pod(&sj, step);
        assert_eq!(
            p["securityContext"]["sysctls"],
            serde_json::json!([{"name": "net.ipv4.ip_unprivileged_port_start", "value": "512"}]),
            "{step:?}"
        );
        assert_eq!(p["securityContext"]["runAsUser"], 65532, "{step:?}");
        assert_eq!(
            p["containers"][0]["securityContext"]["capabilities"],
            serde_json::json!({"drop": ["ALL"]}),
            "{step:?}"
        );
    }
    // On the node's network the sysctl is not the pod's to set: uid 0 with NET_BIND_SERVICE.
    sj.spec.worker.host_network = true;
    sj.spec.worker.run_as_user = Some(0);
    for step in [Step::Scan, Step::Hash] {
        let p = pod(&sj, step);
        assert_eq!(p["securityContext"].get("sysctls"), None, "{step:?}");
        assert_eq!(
            p["containers"][0]["securityContext"]["capabilities"],
            serde_json::json!({"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}),
            "{step:?}"
        );
    }
    let merge = pod(&sj, Step::Merge);
    assert_eq!(
        merge["containers"][0]["securityContext"]["capabilities"],
        serde_json::json!({"drop": ["ALL"]})
    );
}

#[test]
fn a_preempted_merge_waits_without_a_failure_and_publishes_once_admitted_again() {
    let merging = "phase: Merging\nshards: 3/3\nlastScheduleTime: '2026-11-23T00:00:00Z'\ncurrentRun: {id: 20261123t000000z, trigger: Schedule, scheduledTime: '2026-11-23T00:00:00Z', startTime: '2026-11-23T00:00:02Z', stage: Merging, shards: {total: 3, succeeded: 3, failed: 0, active: 0}}";
    let merge = |extra: &str| {
        observed(&format!(
            r#"
runs:
  20261123t000000z:
    plan: {{name: nightly-20261123t000000z-plan, complete: true}}
    scan: {{name: nightly-20261123t000000z-scan, complete: true, completed_indexes: "0-2"}}
    merge: {{name: nightly-20261123t000000z-merge{extra}}}
"#
        ))
    };
    // The queue admitted the merge: its pod runs.
    let sj = with_status(queued(), merging);
    let d = decide(
        &sj,
        &merge(", active: 1, ready: 1"),
        at("2026-11-23T00:20:00Z"),
    );
    assert_eq!(waiting(&d), None);
    assert!(d.status.current_run.as_ref().unwrap().admitted);

    // Preempted: the merge Job is suspended again, its pod gone; nothing failed, nothing retried.
    let sj = after(sj, &d);
    let d = decide(&sj, &merge(", suspended: true"), at("2026-11-23T00:21:00Z"));
    let (reason, message) = waiting(&d).expect("waiting");
    assert_eq!(reason, WaitingReason::Preempted);
    assert_eq!(
        message,
        "the merge Job nightly-20261123t000000z-merge was preempted and waits for admission again on queue batch (3/3 shards done)"
    );
    assert_eq!(reasons(&d), ["RunPreempted"]);
    let run = d.status.current_run.clone().unwrap();
    assert_eq!((run.preemptions, run.stage), (1, Stage::Merging));
    assert!(d.create.is_empty(), "the merge Job goes on once admitted");
    assert_eq!(condition(&d, "Degraded").0, "False");

    // Admitted again, the merge completes and the night is published.
    let sj = after(sj, &d);
    let d = decide(
        &sj,
        &merge(", active: 1, ready: 1"),
        at("2026-11-23T00:25:00Z"),
    );
    assert_eq!(reasons(&d), ["RunAdmitted"]);
    let sj = after(sj, &d);
    let published = merge(
        ", complete: true}\n    reports:\n      - {step: merge, exit_code: 0, message: '{\"phase\":\"merge\",\"run\":\"20261123t000000z\",\"snapshot\":\"s3://toc/isilon/snapshots/20261123t000000z/manifest.json\",\"files\":3,\"directories\":1,\"bytes\":3,\"errors\":0,\"missing_shards\":[]}'",
    );
    let d = decide(&sj, &published, at("2026-11-23T00:26:00Z"));
    assert!(d.status.current_run.is_none());
    let last = d.status.last_run.as_ref().expect("the run ended");
    assert_eq!(last.outcome, Outcome::Succeeded);
    assert_eq!(last.preemptions, 1);
}
