//! What only a real node shows: the security context the kernel enforces on a worker container,
//! the identity that reads a whole store, a scan container killed or its pod deleted in the
//! middle of a shard, a shard hung on a frozen FUSE mount until its deadline, an OOM-killed merge, and the merge's pool sized
//! from its cgroup. Tests read the container's process on the host (`/proc`) through containerd,
//! and check the published rows against the tree.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use scanjob_e2e::cluster::{completion_index, exit_code, phase};
use scanjob_e2e::node::{ProcStatus, container_id, container_pid, kill, mount_options};
use scanjob_e2e::operator::{Harness, read_snapshot, scanjob_events, scanjob_yaml_with_worker};
use scanjob_operator::crd::{Phase, ScanJob};
use scanjob_testkit::SlowFs;
use serde_json::Value;

/// A tree of `dirs` directories of `files` files, plus `locked/` (mode 000, 3 files of 999 bytes)
/// and `private/` (owned by uid 1000, mode 700, 2 files): what a scan pod's identity may not read.
/// Returns the file count a reader of everything sees.
fn tree_with_private_dirs(root: &Path, dirs: usize, files: usize) -> usize {
    use std::os::unix::fs::PermissionsExt;
    let n = scanjob_e2e::operator::small_tree(root, dirs, files);
    let locked = root.join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    for i in 0..3 {
        std::fs::write(locked.join(format!("secret-{i}.dat")), vec![b's'; 999]).unwrap();
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let private = root.join("private");
    std::fs::create_dir_all(&private).unwrap();
    for i in 0..2 {
        let f = private.join(format!("notes-{i}.txt"));
        std::fs::write(&f, b"mine").unwrap();
        std::os::unix::fs::chown(&f, Some(1000), Some(1000)).unwrap();
    }
    std::os::unix::fs::chown(&private, Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    n + 5
}

/// The first running scan container of ScanJob `name` (of shard `index` when given): its pod and
/// host pid, waiting up to two minutes.
async fn running_scan_container(h: &Harness, name: &str, index: Option<&str>) -> (Pod, u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        for pod in step_pods(h, name, "scan").await {
            if phase(&pod) != "Running" || index.is_some_and(|i| completion_index(&pod) != Some(i))
            {
                continue;
            }
            if let Some(pid) = container_id(&pod).and_then(|id| container_pid(&id)) {
                return (pod, pid);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no running scan container of {name} after 2 min:\n  {}",
            h.ns.describe_pods().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running scan container of ScanJob `name` with its `/proc/PID/status` read while it lives:
/// a shard may end between finding its process and reading it, and then another is looked up.
async fn running_scan_status(h: &Harness, name: &str) -> (Pod, u32, ProcStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (pod, pid) = running_scan_container(h, name, None).await;
        if let Some(status) = ProcStatus::read(pid) {
            return (pod, pid, status);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "every scan process of {name} ended before its status was read"
        );
    }
}

/// The pods of one step of ScanJob `name`.
async fn step_pods(h: &Harness, name: &str, step: &str) -> Vec<Pod> {
    h.ns.api::<Pod>()
        .list(
            &ListParams::default()
                .labels(&format!("scanjob.dev/name={name},scanjob.dev/step={step}")),
        )
        .await
        .unwrap()
        .items
}

fn success(sj: &ScanJob) -> scanjob_operator::crd::SuccessfulRun {
    sj.status
        .as_ref()
        .and_then(|s| s.last_successful_run.clone())
        .expect("lastSuccessfulRun")
}

fn error_paths(snap: &Value) -> Vec<String> {
    snap["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["path"].as_str().map(str::to_owned))
        .collect()
}

/// Two shards scanned at once, each retried up to twice.
const TWO_SHARDS: &str = "  shards: 2\n  parallelism: 2\n  backoffLimitPerShard: 2\n";

/// `yaml` with `spec.source.maxOpsPerSecond: ops`: a scan slow enough to look at (the budget is
/// split between the scan pods).
fn slowed(yaml: String, ops: u32) -> String {
    let slowed = yaml.replace(
        "\n  source:\n",
        &format!("\n  source:\n    maxOpsPerSecond: {ops}\n"),
    );
    assert_ne!(slowed, yaml, "no spec.source in {yaml}");
    slowed
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_container_runs_as_65532_with_no_capability_and_a_read_only_root() {
    let h = Harness::start("pods-hardened").await;
    let root = h.ns.dir.join("tree");
    let files = tree_with_private_dirs(&root, 2, 300);
    h.apply(&slowed(
        scanjob_yaml_with_worker("hardened", &root, &h.url, "", TWO_SHARDS),
        80,
    ));
    let (pod, pid, status) = running_scan_status(&h, "hardened").await;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    assert!(exe.ends_with("scanjob"), "pid {pid} runs {}", exe.display());
    // What the kernel holds the process to, not what the pod spec asks for.
    assert_eq!(
        status.field("Uid").as_deref(),
        Some("65532\t65532\t65532\t65532")
    );
    assert_eq!(
        status.field("Gid").as_deref(),
        Some("65532\t65532\t65532\t65532")
    );
    assert_eq!(status.field("CapEff").as_deref(), Some("0000000000000000"));
    assert_eq!(status.field("CapBnd").as_deref(), Some("0000000000000000"));
    assert_eq!(status.field("NoNewPrivs").as_deref(), Some("1"));
    assert_eq!(
        status.field("Seccomp").as_deref(),
        Some("2"),
        "RuntimeDefault is a seccomp filter"
    );
    let ro = |path: &str| {
        mount_options(pid, path)
            .unwrap_or_else(|| panic!("{path} is not a mount of pid {pid}"))
            .split(',')
            .any(|o| o == "ro")
    };
    assert!(ro("/"), "the root file system is read-only");
    assert!(ro("/scan"), "the source is mounted read-only");
    assert!(!ro("/tmp"), "the scratch volume is writable");
    let pod_spec = pod.spec.as_ref().unwrap();
    assert_eq!(pod_spec.host_network, Some(true));

    let sj = h.wait_finished("hardened", Phase::Succeeded).await;
    let snap = read_snapshot(&success(&sj).snapshot);
    // uid 65532 may not list locked/ nor private/: two error rows, their 5 files missing.
    assert_eq!(snap["kinds"]["file"], Value::from(files - 5), "{snap}");
    assert_eq!(error_paths(&snap), ["locked", "private"], "{snap}");
    h.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn read_all_files_lists_every_entry_and_root_without_it_does_not() {
    let h = Harness::start("pods-identity").await;
    let root = h.ns.dir.join("tree");
    let files = tree_with_private_dirs(&root, 2, 120);

    // uid 0 with every capability dropped is no better than any uid at a mode-700 directory of
    // another user, or a mode-000 one.
    h.apply(&scanjob_yaml_with_worker(
        "root-no-caps",
        &root,
        &h.url,
        "runAsUser: 0",
        "  shards: 1\n",
    ));
    let sj = h.wait_finished("root-no-caps", Phase::Succeeded).await;
    let snap = read_snapshot(&success(&sj).snapshot);
    assert_eq!(snap["kinds"]["file"], Value::from(files - 5), "{snap}");
    assert_eq!(error_paths(&snap), ["locked", "private"], "{snap}");

    // The opt-in: uid 0 and CAP_DAC_READ_SEARCH, nothing else. Every entry is a row.
    let url = format!("{}-all", h.url);
    h.apply(&slowed(
        scanjob_yaml_with_worker(
            "read-all",
            &root,
            &url,
            "runAsUser: 0, readAllFiles: true",
            TWO_SHARDS,
        ),
        40,
    ));
    let (_, _, status) = running_scan_status(&h, "read-all").await;
    assert_eq!(status.field("Uid").as_deref(), Some("0\t0\t0\t0"));
    // CAP_DAC_READ_SEARCH is capability 2.
    assert_eq!(status.field("CapEff").as_deref(), Some("0000000000000004"));
    assert_eq!(status.field("CapBnd").as_deref(), Some("0000000000000004"));
    assert_eq!(status.field("NoNewPrivs").as_deref(), Some("1"));
    let sj = h.wait_finished("read-all", Phase::Succeeded).await;
    let snap = read_snapshot(&success(&sj).snapshot);
    assert_eq!(snap["kinds"]["file"], Value::from(files), "{snap}");
    assert_eq!(error_paths(&snap), Vec::<String>::new(), "{snap}");
    assert_eq!(snap["distinct_paths"], snap["rows"], "{snap}");
    h.delete().await;
}

/// Runs ScanJob `name` over a fresh tree, does `fault` to shard 1's running container, and
/// checks that the run publishes every file exactly once. Returns the harness, the pod the fault
/// hit and the pods of shard 1 after the run, for the caller's own checks.
async fn a_shard_survives(
    test: &str,
    name: &str,
    fault: impl AsyncFnOnce(&Harness, &Pod, u32),
) -> (Harness, Pod, Vec<Pod>) {
    let h = Harness::start(test).await;
    let root = h.ns.dir.join("tree");
    let files = scanjob_e2e::operator::small_tree(&root, 4, 150);
    h.apply(&slowed(
        scanjob_yaml_with_worker(name, &root, &h.url, "", TWO_SHARDS),
        80,
    ));
    let (pod, pid) = running_scan_container(&h, name, Some("1")).await;
    // Let it write some of its rows first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    fault(&h, &pod, pid).await;
    let sj = h.wait_finished(name, Phase::Succeeded).await;
    let done = success(&sj);
    let snap = read_snapshot(&done.snapshot);
    assert_eq!(snap["kinds"]["file"], Value::from(files), "{snap}");
    assert_eq!(snap["distinct_paths"], snap["rows"], "no row twice: {snap}");
    assert_eq!(snap["shards"], serde_json::json!([0, 1]), "{snap}");
    let reasons: Vec<String> = scanjob_events(&h.ns, name)
        .await
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(reasons.first().map(String::as_str), Some("RunStarted"));
    assert_eq!(reasons.last().map(String::as_str), Some("RunSucceeded"));
    let of_shard_1 = step_pods(&h, name, "scan")
        .await
        .into_iter()
        .filter(|p| completion_index(p) == Some("1"))
        .collect();
    (h, pod, of_shard_1)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_process_killed_mid_shard_is_retried_with_no_row_lost_or_doubled() {
    let (h, killed, pods) =
        a_shard_survives("pods-kill", "killed", async |_, _, pid| kill(pid)).await;
    let of = |uid: &Option<String>| pods.iter().find(|p| &p.metadata.uid == uid);
    let first = of(&killed.metadata.uid).expect("the killed pod is kept");
    assert_eq!(exit_code(first), Some(137), "SIGKILL: {:?}", first.status);
    assert_eq!(phase(first), "Failed");
    assert!(
        pods.iter()
            .any(|p| p.metadata.uid != killed.metadata.uid && phase(p) == "Succeeded"),
        "a second pod of shard 1 succeeded:\n  {}",
        h.ns.describe_pods().await
    );
    h.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_pod_deleted_mid_shard_is_retried_with_no_row_lost_or_doubled() {
    let (h, deleted, pods) = a_shard_survives("pods-delete", "deleted", async |h, pod, _| {
        let name = pod.metadata.name.as_deref().unwrap();
        h.ns.api::<Pod>()
            .delete(name, &DeleteParams::default().grace_period(1))
            .await
            .expect("deleting the scan pod");
    })
    .await;
    assert!(
        pods.iter()
            .any(|p| p.metadata.uid != deleted.metadata.uid && phase(p) == "Succeeded"),
        "a new pod of shard 1 succeeded:\n  {}",
        h.ns.describe_pods().await
    );
    h.delete().await;
}

/// Runs ScanJob `name` over a small tree with the worker image wrapped by `script` (see
/// [`scanjob_e2e::node::wrapper_image`]) and `worker` / `spec` YAML, and returns how the run
/// failed once it has.
async fn a_failed_run(
    h: &Harness,
    name: &str,
    script: &str,
    worker: &str,
    spec: &str,
) -> scanjob_operator::crd::FinishedRun {
    let image = scanjob_e2e::node::wrapper_image(&format!("{name}-scanjob"), script);
    let root = h.ns.dir.join("tree");
    scanjob_e2e::operator::small_tree(&root, 2, 10);
    h.apply(&scanjob_yaml_with_worker(
        name,
        &root,
        &h.url,
        &format!("image: '{image}', {worker}"),
        spec,
    ));
    let sj = h.wait_finished(name, Phase::Failed).await;
    sj.status.and_then(|s| s.last_run).expect("lastRun")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_hung_on_its_file_system_ends_at_its_deadline_and_fails_the_run_saying_so() {
    let h = Harness::start("pods-deadline").await;
    // The source is a real FUSE mount below the hostPath (so the kubelet's check of the
    // hostPath itself never waits on it), served until the plan is written, then frozen: every
    // call of the scan pods waits in the kernel, as on a dead NFS server.
    let tree = h.ns.dir.join("tree");
    scanjob_e2e::operator::small_tree(&tree, 2, 10);
    let fs = SlowFs::mount(&tree, &h.ns.dir.join("mnt"), 0);
    h.apply(
        &scanjob_yaml_with_worker(
            "hung",
            &h.ns.dir,
            &h.url,
            "activeDeadlineSeconds: 20",
            "  shards: 2\n  parallelism: 2\n  backoffLimitPerShard: 0\n  maxFailedShards: 0\n",
        )
        .replace("    volume:", "    subPath: mnt\n    volume:"),
    );
    let jobs = h.ns.api::<Job>();
    let scan_jobs = ListParams::default().labels("scanjob.dev/name=hung,scanjob.dev/step=scan");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while jobs.list(&scan_jobs).await.unwrap().items.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scan Job:\n{}",
            h.ns.describe_pods().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fs.freeze();
    let sj = h.wait_finished("hung", Phase::Failed).await;
    let last = sj.status.and_then(|s| s.last_run).expect("lastRun");
    fs.thaw();
    drop(fs);
    assert_eq!(last.reason, "ShardsFailed", "{last:?}");
    // The worker gives up a little before the pod's deadline (exit 1, retryable, with its
    // reason); should the kubelet's deadline come first, the message names that instead.
    assert!(
        last.message.contains("did not finish within") || last.message.contains("DeadlineExceeded"),
        "the message says the shard ran out of time: {}",
        last.message
    );
    let pods = step_pods(&h, "hung", "scan").await;
    assert!(!pods.is_empty(), "{}", h.ns.describe_pods().await);
    for pod in &pods {
        assert_eq!(
            phase(pod),
            "Failed",
            "a hung scan pod ended: {:?}",
            pod.status
        );
    }
    h.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_termination_message_reaches_the_status_and_the_merge_pool_follows_the_pod_limit() {
    let h = Harness::start("pods-message").await;
    let root = h.ns.dir.join("tree");
    let files = scanjob_e2e::operator::small_tree(&root, 3, 7);
    h.apply(&scanjob_yaml_with_worker(
        "message",
        &root,
        &h.url,
        "resources: {limits: {memory: 256Mi}}",
        "  shards: 1\n",
    ));
    let sj = h.wait_finished("message", Phase::Succeeded).await;
    assert_eq!(success(&sj).files, files as i64);
    // The merge pod's terminated state carries the worker's JSON, as the kubelet read it from
    // /dev/termination-log.
    let pods = step_pods(&h, "message", "merge").await;
    let message = pods
        .iter()
        .find_map(|p| {
            p.status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .first()?
                .state
                .as_ref()?
                .terminated
                .as_ref()?
                .message
                .clone()
        })
        .expect("a termination message on the merge pod");
    let report: Value = serde_json::from_str(&message).expect("JSON");
    assert_eq!(report["files"], Value::from(files), "{report}");
    // The merge sized its query pool from its own cgroup: half of the 256 MiB limit.
    let merge_pod = pods[0].metadata.name.as_deref().unwrap();
    let log = scanjob_e2e::node::pod_logs(&h.ns.name, merge_pod);
    let pool = log
        .lines()
        .find(|l| l.contains("query memory pool"))
        .unwrap_or_else(|| panic!("no pool line in the merge log:\n{log}"));
    assert!(pool.contains(&(128u64 << 20).to_string()), "{pool}");
    h.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merge_that_must_spill_succeeds_in_a_tight_pod_on_its_scratch_volume() {
    let h = Harness::start("pods-spill").await;
    // 300 k files: at a 192 MiB limit the merge's pool is 96 MiB, and its sorts and aggregates
    // spill; the root file system is read-only, so they can only go to the /tmp emptyDir.
    let scanjob_testkit::Tree { root, summary } =
        scanjob_testkit::mktree(&h.ns.dir, &["--files", "300000", "--seed", "7"]);
    h.apply(&scanjob_yaml_with_worker(
        "spill",
        &root,
        &h.url,
        // mktree gives some directories to other owners, mode 700: read them all.
        "runAsUser: 0, readAllFiles: true, resources: {limits: {memory: 192Mi}}",
        "  shards: 2\n  parallelism: 2\n",
    ));
    let sj = h.wait_finished("spill", Phase::Succeeded).await;
    assert_eq!(Value::from(success(&sj).files), summary["files"]);
    let merge = step_pods(&h, "spill", "merge").await;
    let log = scanjob_e2e::node::pod_logs(&h.ns.name, merge[0].metadata.name.as_deref().unwrap());
    let done = log
        .lines()
        .find(|l| l.contains("insights done"))
        .unwrap_or_else(|| panic!("no insights line in the merge log:\n{log}"));
    let field = |name: &str| -> u64 {
        done.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {done}"))
    };
    assert!(field("spill_files") > 0, "the merge spilled: {done}");
    assert!(field("spilled_bytes") > 0, "{done}");
    assert!(done.contains("spill_dir=/tmp"), "{done}");
    assert!(
        log.contains(&format!("memory_pool={}", 96u64 << 20)),
        "the pool is half the limit:\n{log}"
    );
    h.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oom_killed_merge_fails_the_run_with_a_message_that_says_so() {
    let h = Harness::start("pods-oom").await;
    // The merge step holds 200 MB in a pod limited to 96 MiB: the kernel kills it.
    let last = a_failed_run(
        &h,
        "oom",
        r#"if [ "$1" = merge ]; then x=$(head -c 200000000 /dev/zero | tr '\0' a); echo "${#x}"; fi"#,
        "resources: {limits: {memory: 96Mi}}",
        "  shards: 1\n  backoffLimitPerShard: 1\n",
    )
    .await;
    assert_eq!(last.reason, "MergeFailed", "{last:?}");
    assert!(
        last.message.contains("OOMKilled"),
        "the message names the OOM kill: {}",
        last.message
    );
    // backoffLimitPerShard 1: the merge ran twice before the run failed.
    let merges = step_pods(&h, "oom", "merge").await;
    assert_eq!(merges.len(), 2, "{}", h.ns.describe_pods().await);
    for pod in &merges {
        assert_eq!(exit_code(pod), Some(137), "{:?}", pod.status);
    }
    h.delete().await;
}

/// A tree of `size`-byte files, owned by uid 4242: `copies/<i>/data.bin` are three true copies,
/// `decoys/<i>/result.h5` two files of one size and name that differ in one byte between the
/// sampled blocks. Every atime is set far before the mtime, so a read would move it.
fn planted_duplicates(root: &Path) -> Vec<PathBuf> {
    const SIZE: usize = 400 << 10;
    let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 + i / 1000) as u8).collect();
    // The decoys differ from the copies in their first byte (sampled), and from each other
    // only in one byte between the sampled blocks.
    let mut decoy = data.clone();
    decoy[0] ^= 0xff;
    let mut other_decoy = decoy.clone();
    other_decoy[250_000] ^= 0xff;
    let mut files = Vec::new();
    for (rel, bytes) in [
        ("copies/0/data.bin", &data),
        ("copies/1/data.bin", &data),
        ("copies/2/data.bin", &data),
        ("decoys/0/result.h5", &decoy),
        ("decoys/1/result.h5", &other_decoy),
    ] {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let times = std::fs::FileTimes::new()
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000))
            .set_accessed(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000));
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(times)
            .unwrap();
        std::os::unix::fs::chown(&path, Some(4242), Some(4242)).unwrap();
        files.push(path);
    }
    files
}

fn atimes(files: &[PathBuf]) -> Vec<i64> {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().atime())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn hash_pods_confirm_the_true_copies_without_moving_an_atime() {
    let h = Harness::start("pods-hash").await;
    let root = h.ns.dir.join("tree");
    let files = planted_duplicates(&root);
    let before = atimes(&files);
    // The owners' names, from a ConfigMap mounted into the merge pod.
    let (ok, out) = scanjob_e2e::operator::kubectl(
        &[
            "create",
            "configmap",
            "names",
            "-n",
            &h.ns.name,
            "--from-literal=passwd=alice:x:4242:4242:Alice:/home/alice:/bin/sh\n",
            "--from-literal=etc-group=lab:x:4242:alice\n",
        ],
        None,
    );
    assert!(ok, "{out}");
    // uid 0 with readAllFiles: the hash pods add CAP_FOWNER, so O_NOATIME is allowed on files
    // of uid 4242 (without it the kernel refuses, and the files would not be read).
    h.apply(&scanjob_yaml_with_worker(
        "hash",
        &root,
        &h.url,
        "runAsUser: 0, readAllFiles: true",
        &format!(
            "{TWO_SHARDS}  duplicates: {{minSize: 65536, hashBytesPerNight: 10000000, hashPods: 2}}\n  \
             ownerNames: {{configMapName: names, passwdKey: passwd, groupKey: etc-group}}\n"
        ),
    ));
    let sj = h.wait_finished("hash", Phase::Succeeded).await;
    assert_eq!(
        step_pods(&h, "hash", "hash").await.len(),
        2,
        "two hash pods"
    );
    let snap = read_snapshot(&success(&sj).snapshot);
    let hashing = &snap["summary"]["duplicates"]["hashing"];
    assert_eq!(hashing["pods"], 2, "{hashing}");
    assert_eq!(hashing["noatime_refused"], 0, "{hashing}");
    assert_eq!(hashing["files_sampled"], 5, "{hashing}");
    // Samples of five files, then the whole of the three copies and the two decoys.
    assert_eq!(
        hashing["bytes_read"],
        5 * 80 * 1024 + 5 * (400 << 10),
        "{hashing}"
    );
    let groups = snap["duplicates"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["stage"], "confirmed");
    assert_eq!(groups[0]["copies"], 3);
    assert_eq!(
        groups[0]["paths"],
        serde_json::json!([
            "copies/0/data.bin",
            "copies/1/data.bin",
            "copies/2/data.bin"
        ])
    );
    assert_eq!(atimes(&files), before, "an atime moved");
    let summary = &snap["summary"];
    assert_eq!(
        summary["uid_names"]["4242"], "alice",
        "{}",
        summary["uid_names"]
    );
    assert_eq!(
        summary["gid_names"]["4242"], "lab",
        "{}",
        summary["gid_names"]
    );
    h.delete().await;
}
