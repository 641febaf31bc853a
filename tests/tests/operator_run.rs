//! The operator end to end: `kubectl apply` a ScanJob, the operator runs its plan, scan and merge
//! Jobs on the real control plane, the node runs their pods as containers of the worker image,
//! the snapshot lands in SeaweedFS, and the faults a night can bring: a broken shard with and
//! without maxFailedShards, and the operator itself killed in the middle of a run, during the
//! merge, and after the merge committed the night but before its Job completed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use scanjob_e2e::node::wrapper_image;
use scanjob_e2e::operator::{
    Harness, job_names, jobs, kubectl, read_snapshot, s3_exists, s3_list, scanjob_events,
    scanjob_yaml, scanjob_yaml_with_worker, small_tree,
};
use scanjob_operator::crd::{Outcome, Phase, ScanJob};
use serde_json::Value;

fn status(sj: &ScanJob) -> &scanjob_operator::crd::ScanJobStatus {
    sj.status.as_ref().expect("a status")
}

fn reasons(events: &[(String, String)]) -> Vec<&str> {
    events.iter().map(|(r, _)| r.as_str()).collect()
}

/// What GNU find sees of `root` as `uid` (through `setpriv`, with no supplementary groups):
/// entries by kind (find's `%y`), bytes in regular files, and the directories it may not read,
/// relative to `root`.
struct FindView {
    kinds: BTreeMap<String, i64>,
    file_bytes: i64,
    denied: Vec<String>,
}

fn find_as(root: &std::path::Path, uid: u32) -> FindView {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args([
        &format!("--reuid={uid}"),
        &format!("--regid={uid}"),
        "--clear-groups",
        "find",
    ]);
    let out = cmd
        .arg(root)
        .args(["-mindepth", "1", "-printf", "%y %s\n"])
        .env("LC_ALL", "C")
        .output()
        .expect("running setpriv find");
    let mut view = FindView {
        kinds: BTreeMap::new(),
        file_bytes: 0,
        denied: Vec::new(),
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (kind, size) = line.split_once(' ').expect("%y %s");
        let name = match kind {
            "f" => "file",
            "d" => "dir",
            "l" => "symlink",
            "p" => "fifo",
            "s" => "socket",
            other => other,
        };
        *view.kinds.entry(name.to_owned()).or_default() += 1;
        if kind == "f" {
            view.file_bytes += size.parse::<i64>().expect("size");
        }
    }
    let prefix = format!("find: '{}/", root.display());
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        let path = line
            .strip_prefix(&prefix)
            .and_then(|l| l.strip_suffix("': Permission denied"))
            .unwrap_or_else(|| panic!("find as {uid}: {line}"));
        view.denied.push(path.to_owned());
    }
    view.denied.sort();
    view
}

/// mktree's `--nasty` tree (200 k entries in one directory, names that are not UTF-8, a chain
/// deeper than PATH_MAX, links, a mode-000 directory) and its ground-truth summary.
fn nasty_tree(dir: &std::path::Path) -> (PathBuf, Value) {
    let tree = scanjob_testkit::mktree(dir, &["--files", "3000", "--seed", "11", "--nasty"]);
    (tree.root, tree.summary)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scanjob_publishes_the_snapshot_of_a_nasty_tree() {
    let h = Harness::start("sj-nasty").await;
    let scratch = std::env::temp_dir().join(format!("scanjob-e2e-{}", h.ns.name));
    let (root, truth) = nasty_tree(&scratch);
    h.apply(&scanjob_yaml(
        "nightly",
        &root,
        &h.url,
        "  shards: 3\n  parallelism: 3\n",
    ));
    let sj = h.wait_finished("nightly", Phase::Succeeded).await;
    let st = status(&sj);
    let success = st.last_successful_run.as_ref().expect("lastSuccessfulRun");

    // The snapshot, read with pyarrow straight from S3, is the generator's tree as uid 65532
    // sees it. GNU find as root sees the generator's summary (so find is a fair witness), and
    // find as uid 65532 sees exactly the snapshot: every directory it may not read (mktree makes
    // some mode 700 for other owners, and one mode 000) is an error row, its contents missing.
    let snap = read_snapshot(&success.snapshot);
    let kinds = &truth["kinds"];
    let as_root = find_as(&root, 0);
    assert_eq!(Value::from(as_root.kinds["file"]), kinds["regular"]);
    assert_eq!(Value::from(as_root.kinds["dir"]), kinds["dir"]);
    assert_eq!(Value::from(as_root.kinds["symlink"]), kinds["symlink"]);
    assert_eq!(
        Value::from(as_root.file_bytes),
        truth["total_apparent_bytes"]
    );
    assert!(as_root.denied.is_empty(), "{:?}", as_root.denied);
    let seen = find_as(&root, 65532);
    assert!(
        seen.denied.contains(&"zz_nasty/locked_dir".to_owned()),
        "{:?}",
        seen.denied
    );
    let regular = seen.kinds["file"];
    let bytes = seen.file_bytes;
    assert_eq!(snap["kinds"]["file"], Value::from(regular), "{snap}");
    assert_eq!(
        snap["kinds"]["dir"],
        Value::from(seen.kinds["dir"]),
        "{snap}"
    );
    assert_eq!(
        snap["kinds"]["symlink"],
        Value::from(seen.kinds["symlink"]),
        "{snap}"
    );
    assert_eq!(snap["file_bytes"], Value::from(bytes), "{snap}");
    let errors: Vec<&str> = snap["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert_eq!(errors, seen.denied, "{snap}");
    assert_eq!(
        snap["distinct_paths"], snap["rows"],
        "no path twice: {snap}"
    );
    assert_eq!(snap["shards"], serde_json::json!([0, 1, 2]), "{snap}");
    assert_eq!(snap["latest"]["run"], Value::from(success.id.clone()));

    // The status says what the merge pod reported.
    assert_eq!(success.files, regular);
    assert_eq!(success.bytes, bytes);
    assert_eq!(st.shards.as_deref(), Some("3/3"));
    let conditions: BTreeMap<&str, (&str, &str)> = st
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), (c.status.as_str(), c.reason.as_str())))
        .collect();
    assert_eq!(conditions["Ready"], ("True", "SnapshotPublished"));
    assert_eq!(conditions["Progressing"], ("False", "Idle"));
    assert_eq!(conditions["Degraded"], ("False", "AsExpected"));
    assert_eq!(
        st.last_run.as_ref().map(|r| r.outcome),
        Some(Outcome::Succeeded)
    );

    // Three Jobs with deterministic names, owned by the ScanJob and labelled with the run.
    let run = &success.id;
    assert_eq!(
        job_names(&h.ns, "nightly").await,
        ["merge", "plan", "scan"].map(|s| format!("nightly-{run}-{s}"))
    );
    let scan: Job =
        h.ns.api::<Job>()
            .get(&format!("nightly-{run}-scan"))
            .await
            .unwrap();
    let spec = scan.spec.as_ref().unwrap();
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!(spec.completions, Some(3));
    let owner = &scan.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ScanJob", "nightly")
    );
    assert_eq!(
        scan.metadata.labels.as_ref().unwrap()["scanjob.dev/run"],
        *run
    );
    let pod_spec = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod_spec.automount_service_account_token, Some(false));
    assert_eq!(
        pod_spec.service_account_name.as_deref(),
        Some("scanjob-worker")
    );
    let container = &pod_spec.containers[0];
    assert_eq!(
        container.volume_mounts.as_ref().unwrap()[0].read_only,
        Some(true)
    );
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));

    // `kubectl get sj` shows it, and the Events tell the story.
    let (ok, table) = kubectl(&["get", "sj", "-n", &h.ns.name], None);
    assert!(ok, "{table}");
    println!("$ kubectl get sj\n{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with("nightly"))
        .unwrap_or_default();
    for expected in [
        "Succeeded",
        "3/3",
        &success.files.to_string(),
        &success.size,
    ] {
        assert!(
            line.contains(expected),
            "{expected:?} missing from `kubectl get sj`:\n{table}"
        );
    }
    let events = scanjob_events(&h.ns, "nightly").await;
    assert_eq!(
        reasons(&events),
        ["RunStarted", "RunSucceeded"],
        "{events:?}"
    );

    // The operator's endpoints.
    let op = h.operator.as_ref().unwrap();
    assert_eq!(op.get("/readyz").map(|r| r.0), Some(200));
    assert_eq!(op.get("/livez").map(|r| r.0), Some(200));
    let metrics = op.get("/metrics").map(|r| r.1).unwrap_or_default();
    assert!(
        metrics.contains("scanjob_runs_total{outcome=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scanjob_shards_total{outcome=\"succeeded\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scanjob_operator_reconciles_total"),
        "{metrics}"
    );

    let _ = std::fs::remove_dir_all(&scratch);
    h.delete().await;
}

/// The worker image with shard 1 broken for good: it reports an error and exits 3.
fn broken_shard_image() -> String {
    wrapper_image(
        "broken-scanjob",
        r#"if [ "$1" = scan ] && [ "$JOB_COMPLETION_INDEX" = 1 ]; then
  echo '{"error":"injected","message":"shard 1 is broken on purpose","retryable":false}' > "$SCANJOB_TERMINATION_LOG"
  exit 3
fi"#,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_shard_fails_the_run_and_nothing_is_published() {
    let image = broken_shard_image();
    let h = Harness::start("sj-broken").await;
    let root = h.ns.dir.join("tree");
    small_tree(&root, 4, 10);
    h.apply(&scanjob_yaml_with_worker(
        "broken",
        &root,
        &h.url,
        &format!("image: '{image}'"),
        "  shards: 3\n  parallelism: 3\n  maxFailedShards: 0\n",
    ));
    let sj = h.wait_finished("broken", Phase::Failed).await;
    let st = status(&sj);
    let last = st.last_run.as_ref().unwrap();
    assert_eq!(last.reason, "ShardsFailed");
    assert!(
        last.message.contains("shard 1 is broken on purpose"),
        "{}",
        last.message
    );
    assert!(st.last_successful_run.is_none());
    let degraded = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ShardsFailed")
    );
    assert!(
        !s3_exists(&format!("{}/latest.json", h.url)),
        "nothing is published"
    );
    assert!(
        !job_names(&h.ns, "broken")
            .await
            .iter()
            .any(|n| n.ends_with("-merge")),
        "no merge Job for a failed run"
    );
    let events = scanjob_events(&h.ns, "broken").await;
    assert_eq!(
        reasons(&events),
        ["RunStarted", "ShardFailed", "RunFailed"],
        "{events:?}"
    );
    assert!(events[1].1.contains("shard 1"), "{events:?}");
    h.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_max_failed_shards_a_partial_snapshot_names_the_missing_shard() {
    let image = broken_shard_image();
    let h = Harness::start("sj-partial").await;
    let root = h.ns.dir.join("tree");
    small_tree(&root, 6, 300);
    h.apply(&scanjob_yaml_with_worker(
        "partial",
        &root,
        &h.url,
        &format!("image: '{image}'"),
        "  shards: 3\n  parallelism: 3\n  maxFailedShards: 1\n",
    ));
    let sj = h.wait_finished("partial", Phase::Succeeded).await;
    let success = status(&sj).last_successful_run.clone().unwrap();
    assert_eq!(success.missing_shards, [1]);
    let snap = read_snapshot(&success.snapshot);
    assert_eq!(
        snap["manifest"]["missing_shards"],
        serde_json::json!([1]),
        "{snap}"
    );
    assert_eq!(snap["shards"], serde_json::json!([0, 2]), "{snap}");
    assert_eq!(snap["latest"]["run"], Value::from(success.id.clone()));
    let events = scanjob_events(&h.ns, "partial").await;
    assert_eq!(
        reasons(&events),
        ["RunStarted", "ShardFailed", "RunSucceeded"],
        "{events:?}"
    );
    h.delete().await;
}

/// After an operator was replaced mid-run: the run of ScanJob `name` (2 shards) succeeded with
/// `files` files, one Job per step, one pod each (plan, 2 shards, merge), recorded by one
/// `RunStarted` and one `RunSucceeded` Event. Returns the run as the status records it.
async fn ran_once(h: &Harness, name: &str, files: usize) -> scanjob_operator::crd::SuccessfulRun {
    let sj = h.wait_finished(name, Phase::Succeeded).await;
    let success = status(&sj).last_successful_run.clone().unwrap();
    assert_eq!(success.files, files as i64);
    let run = &success.id;
    assert_eq!(
        job_names(&h.ns, name).await,
        ["merge", "plan", "scan"].map(|s| format!("{name}-{run}-{s}")),
        "one Job per step, none created twice"
    );
    let pods = h.ns.describe_pods().await;
    assert_eq!(
        pods.lines().count(),
        4,
        "plan + 2 shards + merge, one pod each:\n  {pods}"
    );
    let events = scanjob_events(&h.ns, name).await;
    assert_eq!(
        reasons(&events),
        ["RunStarted", "RunSucceeded"],
        "the run is recorded once: {events:?}"
    );
    success
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_killed_mid_run_is_replaced_and_the_run_completes_once() {
    let slow = wrapper_image("slow-scanjob", r#"[ "$1" = scan ] && sleep 6"#);
    let mut h = Harness::start("sj-restart").await;
    let root = h.ns.dir.join("tree");
    let files = small_tree(&root, 4, 25);
    h.apply(&scanjob_yaml_with_worker(
        "restart",
        &root,
        &h.url,
        &format!("image: '{slow}'"),
        "  shards: 2\n  parallelism: 2\n",
    ));
    h.wait("restart", Duration::from_secs(120), "Scanning", |sj| {
        scanjob_e2e::operator::phase(sj) == Some(Phase::Scanning)
    })
    .await;
    h.restart_operator();
    ran_once(&h, "restart", files).await;
    // A SIGTERM stops the operator cleanly.
    let op = h.operator.take().unwrap();
    assert!(op.terminate(), "the operator exits 0 on SIGTERM");
    h.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_killed_during_the_merge_and_while_it_commits_publishes_the_night_once() {
    // The merge container waits 10 s before merging and 10 s after it committed the night
    // (manifest and latest.json written, the Job not complete yet): one window for each kill.
    let slow = wrapper_image(
        "slow-merge",
        r#"if [ "$1" = merge ]; then sleep 10; /usr/local/bin/scanjob "$@" || exit $?; sleep 10; exit 0; fi"#,
    );
    let mut h = Harness::start("sj-kill-merge").await;
    let root = h.ns.dir.join("tree");
    let files = small_tree(&root, 4, 25);
    h.apply(&scanjob_yaml_with_worker(
        "killmerge",
        &root,
        &h.url,
        &format!("image: '{slow}'"),
        "  shards: 2\n  parallelism: 2\n",
    ));
    h.wait("killmerge", Duration::from_secs(120), "Merging", |sj| {
        scanjob_e2e::operator::phase(sj) == Some(Phase::Merging)
    })
    .await;
    // During the merge: killed, and nobody watches for a few seconds.
    h.operator.take().unwrap().kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.restart_operator();
    // While the night is committed: latest.json has moved, the merge Job has not completed.
    let latest = format!("{}/latest.json", h.url);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !s3_exists(&latest) {
        assert!(
            std::time::Instant::now() < deadline,
            "the merge never committed:\n{}",
            h.ns.describe_pods().await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    h.operator.take().unwrap().kill();
    let merge_jobs: Vec<Job> = jobs(&h.ns, "killmerge")
        .await
        .into_iter()
        .filter(|j| {
            j.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.ends_with("-merge"))
        })
        .collect();
    assert_eq!(merge_jobs.len(), 1);
    assert!(
        merge_jobs[0]
            .status
            .as_ref()
            .and_then(|s| s.succeeded)
            .unwrap_or(0)
            == 0,
        "killed while the night was committed but before its Job completed"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.restart_operator();

    let success = ran_once(&h, "killmerge", files).await;
    let run = &success.id;
    let manifests: Vec<String> = s3_list(&format!("{}/snapshots", h.url))
        .into_iter()
        .filter(|k| k.ends_with("manifest.json"))
        .collect();
    assert_eq!(
        manifests,
        [format!("{run}/manifest.json")],
        "one night published"
    );
    let snap = read_snapshot(&success.snapshot);
    assert_eq!(snap["latest"]["run"], run.as_str());
    assert_eq!(snap["kinds"]["file"], Value::from(files), "{snap}");
    assert_eq!(snap["distinct_paths"], snap["rows"], "no row twice: {snap}");
    h.delete().await;
}
