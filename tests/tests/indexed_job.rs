//! The real Job controller drives Indexed Jobs whose pods the node runs from the worker image:
//! completion, and a failed index through `podFailurePolicy` / `FailIndex`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use scanjob_e2e::cluster::{TestNamespace, completion_index, exit_code};
use scanjob_e2e::node::{WORKER_IMAGE, scanjob_binary};
use serde_json::json;

/// The exit code `scanjob` uses for bad input that a retry will not fix.
const EXIT_NOT_RETRIABLE: i32 = 3;

fn scanjob() -> PathBuf {
    let bin = scanjob_binary();
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build --release --workspace`",
        bin.display()
    );
    bin
}

/// An Indexed Job of 3 completions running `scanjob scan` over `plan_url`, one retry per index,
/// and no retry for exit code 3. Scan root and output are hostPath volumes at the paths the plan
/// names, and the termination log is the container's terminationMessagePath, as the operator
/// sets it up.
fn scan_job(name: &str, plan: &Planned) -> Job {
    let root = plan.root.to_string_lossy();
    let out = plan.out.to_string_lossy();
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "completionMode": "Indexed",
            "completions": 3,
            "parallelism": 3,
            "backoffLimitPerIndex": 1,
            "podFailurePolicy": {"rules": [{
                "action": "FailIndex",
                "onExitCodes": {"containerName": "scanjob", "operator": "In", "values": [EXIT_NOT_RETRIABLE]},
            }]},
            "template": {"spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                // The test node's only network is loopback.
                "hostNetwork": true,
                "volumes": [
                    {"name": "root", "hostPath": {"path": root, "type": "Directory"}},
                    {"name": "toc", "hostPath": {"path": out, "type": "Directory"}},
                ],
                "containers": [{
                    "name": "scanjob",
                    "image": WORKER_IMAGE,
                    "args": ["scan", "--plan", plan.url, "--index", "$(JOB_COMPLETION_INDEX)"],
                    "env": [{"name": "SCANJOB_TERMINATION_LOG", "value": "/dev/termination-log"}],
                    "volumeMounts": [
                        {"name": "root", "mountPath": root, "readOnly": true},
                        {"name": "toc", "mountPath": out},
                    ],
                }],
            }},
        },
    }))
    .expect("Job literal")
}

/// A scan root with three top-level directories, planned into `shards` shards.
struct Planned {
    root: PathBuf,
    out: PathBuf,
    url: String,
}

fn plan(ns: &TestNamespace, shards: u32) -> Planned {
    let root = ns.dir.join("root");
    let out = ns.dir.join("toc");
    for dir in ["a", "b", "c/d"] {
        std::fs::create_dir_all(root.join(dir)).expect("creating scan root");
        std::fs::write(root.join(dir).join("file.txt"), dir).expect("writing scan root");
    }
    std::fs::create_dir_all(&out).expect("creating output dir");
    let plan = std::process::Command::new(scanjob())
        .arg("plan")
        .arg(&root)
        .args(["--shards", &shards.to_string(), "--out"])
        .arg(format!("file://{}", out.display()))
        .output()
        .expect("running scanjob plan");
    assert!(
        plan.status.success(),
        "scanjob plan failed: {}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let url = format!("file://{}", find_plan(&out).display());
    // The pods run as the image's user, 65532: the shards' output must be theirs to write.
    chown_tree(&out, 65532);
    Planned { root, out, url }
}

fn chown_tree(dir: &Path, uid: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(uid)).expect("chown");
    for entry in std::fs::read_dir(dir)
        .expect("listing the output")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            chown_tree(&path, uid);
        } else {
            std::os::unix::fs::chown(&path, Some(uid), Some(uid)).expect("chown");
        }
    }
}

/// Parses a Job's index list ("0,2-4") into its indexes.
fn indexes(list: Option<&str>) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for part in list.unwrap_or("").split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        out.extend(a.parse::<u32>().expect("index")..=b.parse::<u32>().expect("index"));
    }
    out
}

fn condition(job: &Job, kind: &str) -> Option<(String, Option<String>)> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    let c = conds
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")?;
    Some((c.type_.clone(), c.reason.clone()))
}

async fn pods_of(ns: &TestNamespace, job: &str) -> Vec<Pod> {
    let selector = format!("batch.kubernetes.io/job-name={job}");
    ns.api::<Pod>()
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("listing pods")
        .items
}

fn termination_message(pod: &Pod) -> &str {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    let state = statuses
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref());
    let terminated = state.and_then(|s| s.terminated.as_ref());
    terminated.and_then(|t| t.message.as_deref()).unwrap_or("")
}

/// Plans `shards` shards in a fresh namespace, runs the 3-completion scan Job on the node and
/// waits for it to finish: the namespace, the plan, the finished Job and a
/// description of its pods for failure messages.
async fn run_scan_job(test: &str, shards: u32) -> (TestNamespace, Planned, Job, String) {
    let ns = TestNamespace::create(test).await;
    let planned = plan(&ns, shards);
    ns.api::<Job>()
        .create(&PostParams::default(), &scan_job("scan", &planned))
        .await
        .expect("creating Job");
    let job = ns.wait_job_finished("scan", Duration::from_secs(120)).await;
    let pods = ns.describe_pods().await;
    (ns, planned, job, pods)
}

#[tokio::test(flavor = "multi_thread")]
async fn indexed_scan_job_completes() {
    let (ns, planned, job, pods) = run_scan_job("complete", 3).await;
    let status = job.status.clone().unwrap_or_default();
    assert_eq!(
        condition(&job, "Complete").map(|c| c.0),
        Some("Complete".to_owned()),
        "status: {status:?}\n  {pods}"
    );
    assert_eq!(status.succeeded, Some(3));
    assert_eq!(
        indexes(status.completed_indexes.as_deref()),
        BTreeSet::from([0, 1, 2])
    );
    let scan_pods = pods_of(&ns, "scan").await;
    assert_eq!(
        scan_pods.len(),
        3,
        "one pod per index, none retried: {pods}"
    );
    for pod in &scan_pods {
        assert_eq!(exit_code(pod), Some(0), "{pods}");
        assert!(
            !termination_message(pod).is_empty(),
            "every scan reports a result: {pods}"
        );
    }
    let run_dir = PathBuf::from(planned.url.trim_start_matches("file://"));
    let run_dir = run_dir.parent().expect("runs/<run>");
    for i in 0..3 {
        let marker = run_dir
            .join("shards")
            .join(i.to_string())
            .join("_SUCCESS.json");
        assert!(
            marker.is_file(),
            "{} written by index {i}",
            marker.display()
        );
    }
    ns.delete().await;
}

/// Plans 2 shards, then runs 3 indexes: index 2 is out of the plan's range, so `scanjob scan`
/// exits 3, the pod failure policy fails that index without a retry, and the Job reports it.
#[tokio::test(flavor = "multi_thread")]
async fn index_failing_with_exit_code_3_is_reported_in_failed_indexes() {
    let (ns, _, job, pods) = run_scan_job("failindex", 2).await;
    let status = job.status.clone().unwrap_or_default();
    assert_eq!(
        condition(&job, "Failed"),
        Some(("Failed".to_owned(), Some("FailedIndexes".to_owned()))),
        "status: {status:?}\n  {pods}"
    );
    assert_eq!(
        indexes(status.failed_indexes.as_deref()),
        BTreeSet::from([2]),
        "{pods}"
    );
    assert_eq!(
        indexes(status.completed_indexes.as_deref()),
        BTreeSet::from([0, 1]),
        "{pods}"
    );
    let index2: Vec<Pod> = pods_of(&ns, "scan")
        .await
        .into_iter()
        .filter(|p| completion_index(p) == Some("2"))
        .collect();
    assert_eq!(
        index2.len(),
        1,
        "FailIndex must not retry index 2 despite backoffLimitPerIndex=1: {pods}"
    );
    assert_eq!(exit_code(&index2[0]), Some(EXIT_NOT_RETRIABLE), "{pods}");
    // The worker's error label reaches the pod status, where the operator reads it.
    assert!(
        termination_message(&index2[0]).contains("index_out_of_range"),
        "termination message of index 2: {pods}"
    );
    ns.delete().await;
}

/// The one `runs/<run>/plan.json` under the output directory.
fn find_plan(out: &Path) -> PathBuf {
    let runs = std::fs::read_dir(out.join("runs"))
        .unwrap_or_else(|e| panic!("{}/runs: {e}", out.display()));
    let plans: Vec<PathBuf> = runs
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("plan.json"))
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(
        plans.len(),
        1,
        "expected one runs/<run>/plan.json under {}",
        out.display()
    );
    plans.into_iter().next().expect("one plan")
}
