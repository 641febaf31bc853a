//! A ScanJob on a shared batch cluster: its Jobs go through a Kueue queue (admitted with fewer
//! pods than their parallelism, preempted by work of a higher priority), and its pods land where
//! its placement fields say, or say in the status why they cannot.
//!
//! Kueue runs beside the control plane (tests/cluster/up.sh). Each test makes its own
//! ResourceFlavor, ClusterQueue (selecting only its namespace) and PriorityClasses, named after
//! its namespace. The placement test taints the node for a while: every pod of this file
//! tolerates any taint, and no other test binary runs at the same time.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use scanjob_e2e::cluster::TestNamespace;
use scanjob_e2e::node::wrapper_image;
use scanjob_e2e::operator::{
    Harness, jobs, kubectl, scanjob_events, scanjob_yaml_with_worker, small_tree,
};
use scanjob_operator::crd::{Outcome, Phase, ScanJob, WaitingReason};

/// Tolerates every taint, so the placement test's taint never holds this file's other pods.
const ANY_TAINT: &str = "tolerations: [{operator: Exists}]";

/// Small requests, so the quotas below count pods: 100m CPU per plan or scan pod, 200m for the
/// merge.
const STEP_RESOURCES: &str = "stepResources: {plan: {requests: {cpu: 100m, memory: 64Mi}}, scan: {requests: {cpu: 100m, memory: 64Mi}}, merge: {requests: {cpu: 200m, memory: 256Mi}}}";

fn kubectl_ok(args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out) = kubectl(args, stdin);
    assert!(
        ok,
        "kubectl {args:?} failed:\n{out}\n{}",
        stdin.unwrap_or("")
    );
    out
}

/// Cluster-scoped objects of one test, deleted when it ends (also when it fails).
struct ClusterObjects(Vec<String>);

impl Drop for ClusterObjects {
    fn drop(&mut self) {
        for object in self.0.iter().rev() {
            let _ = kubectl(
                &["delete", object, "--ignore-not-found", "--wait=false"],
                None,
            );
        }
    }
}

/// A ResourceFlavor and a ClusterQueue `<ns>` with `cpu` of quota (and 4Gi memory), selecting
/// only the test's namespace, and the LocalQueue `batch` in it. `extra` is more ClusterQueue
/// spec (two-space indented).
fn queue(ns: &TestNamespace, cpu: &str, extra: &str) -> ClusterObjects {
    let name = &ns.name;
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: kueue.x-k8s.io/v1beta2\nkind: ResourceFlavor\nmetadata: {{name: {name}}}\n---\n\
             apiVersion: kueue.x-k8s.io/v1beta2\nkind: ClusterQueue\nmetadata: {{name: {name}}}\nspec:\n  \
             namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {name}}}}}\n  \
             resourceGroups:\n  - coveredResources: [cpu, memory]\n    flavors:\n    - name: {name}\n      \
             resources: [{{name: cpu, nominalQuota: {cpu}}}, {{name: memory, nominalQuota: 4Gi}}]\n{extra}---\n\
             apiVersion: kueue.x-k8s.io/v1beta2\nkind: LocalQueue\nmetadata: {{name: batch, namespace: {name}}}\nspec: {{clusterQueue: {name}}}\n"
        )),
    );
    ClusterObjects(vec![
        format!("resourceflavor.kueue.x-k8s.io/{name}"),
        format!("clusterqueue.kueue.x-k8s.io/{name}"),
    ])
}

/// The scan Job of the ScanJob's only run, once it exists.
async fn scan_job(ns: &TestNamespace, name: &str) -> Option<Job> {
    jobs(ns, name).await.into_iter().find(|j| {
        j.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("scanjob.dev/step"))
            .is_some_and(|s| s == "scan")
    })
}

async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} not seen after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn waiting(sj: &ScanJob) -> Option<(WaitingReason, String)> {
    let run = sj.status.as_ref()?.current_run.as_ref()?;
    run.waiting.as_ref().map(|w| (w.reason, w.message.clone()))
}

fn progressing(sj: &ScanJob) -> Option<(String, String)> {
    sj.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .map(|c| (c.reason.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queued_night_waits_for_admission_then_runs_with_the_pods_its_quota_admits() {
    let h = Harness::start("sj-queued").await;
    // 200m of CPU: two of the four scan pods (100m each) at a time. Held, so the first Job waits.
    let _objects = queue(&h.ns, "200m", "  stopPolicy: Hold\n");
    let root = h.ns.dir.join("tree");
    let files = small_tree(&root, 8, 40);
    h.apply(&scanjob_yaml_with_worker(
        "nightly",
        &root,
        &h.url,
        &format!("{ANY_TAINT}, {STEP_RESOURCES}"),
        "  shards: 4\n  parallelism: 4\n  queueName: batch\n",
    ));

    let sj = h
        .wait(
            "nightly",
            Duration::from_secs(60),
            "waiting for admission",
            |sj| waiting(sj).is_some_and(|(r, _)| r == WaitingReason::AwaitingAdmission),
        )
        .await;
    let (reason, message) = progressing(&sj).expect("Progressing");
    assert_eq!(reason, "AwaitingAdmission");
    assert!(
        message.ends_with("-plan waits for admission on queue batch"),
        "{message}"
    );
    let plan = jobs(&h.ns, "nightly").await.remove(0);
    assert_eq!(
        plan.spec.as_ref().unwrap().suspend,
        Some(true),
        "Kueue holds the Job"
    );
    assert_eq!(
        plan.metadata.labels.as_ref().unwrap()["kueue.x-k8s.io/queue-name"],
        "batch"
    );

    // The queue opens: every step is admitted in turn; the scan with 2 of its 4 pods.
    kubectl_ok(
        &[
            "patch",
            "clusterqueue",
            &h.ns.name,
            "--type=merge",
            "-p",
            r#"{"spec":{"stopPolicy":"None"}}"#,
        ],
        None,
    );
    let ns = &h.ns;
    let scan = wait_for(
        "the scan Job admitted",
        Duration::from_secs(120),
        || async {
            scan_job(ns, "nightly")
                .await
                .filter(|j| j.spec.as_ref().and_then(|s| s.suspend) == Some(false))
        },
    )
    .await;
    assert_eq!(
        scan.spec.as_ref().unwrap().parallelism,
        Some(2),
        "partial admission: the quota's 2 pods, not 4"
    );
    assert_eq!(
        scan.metadata.annotations.as_ref().unwrap()["kueue.x-k8s.io/job-min-parallelism"],
        "1"
    );
    assert_eq!(scan.spec.as_ref().unwrap().completions, Some(4));

    let sj = h.wait_finished("nightly", Phase::Succeeded).await;
    let status = sj.status.as_ref().unwrap();
    let success = status.last_successful_run.as_ref().unwrap();
    assert_eq!(success.files, files as i64, "the night is exact");
    assert_eq!(success.directories, 8 * 2);
    let last = status.last_run.as_ref().unwrap();
    assert_eq!((last.shards.succeeded, last.shards.failed), (4, 0));
    let events = scanjob_events(&h.ns, "nightly").await;
    let queued: Vec<&String> = events
        .iter()
        .filter(|(r, _)| r == "RunQueued")
        .map(|(_, n)| n)
        .collect();
    assert!(
        queued
            .iter()
            .any(|n| n.contains("waits for admission on queue batch")),
        "{events:?}"
    );
    assert!(events.iter().any(|(r, _)| r == "RunAdmitted"), "{events:?}");
    h.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_preempted_scan_counts_no_failure_and_the_night_completes_exactly() {
    let h = Harness::start("sj-preempt").await;
    let name = h.ns.name.clone();
    let mut objects = queue(
        &h.ns,
        "200m",
        "  preemption: {withinClusterQueue: LowerPriority}\n",
    );
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {{name: {name}-low}}\nvalue: 100\n---\n\
             apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {{name: {name}-high}}\nvalue: 1000\n"
        )),
    );
    objects.0.push(format!("priorityclass/{name}-low"));
    objects.0.push(format!("priorityclass/{name}-high"));
    let root = h.ns.dir.join("tree");
    let files = small_tree(&root, 6, 200);
    // 40 operations a second shared by the two scan pods: each shard takes ~30 s, long enough
    // to be preempted in the middle.
    let yaml = scanjob_yaml_with_worker(
        "nightly",
        &root,
        &h.url,
        &format!("{ANY_TAINT}, {STEP_RESOURCES}, priorityClassName: {name}-low, threads: 1"),
        "  shards: 2\n  parallelism: 2\n  queueName: batch\n",
    );
    h.apply(&yaml.replace("\n  source:\n", "\n  source:\n    maxOpsPerSecond: 40\n"));
    let ns = &h.ns;
    wait_for(
        "two scan pods running",
        Duration::from_secs(120),
        || async {
            scan_job(ns, "nightly")
                .await
                .filter(|j| j.status.as_ref().and_then(|s| s.ready) == Some(2))
        },
    )
    .await;

    // Work of a higher priority takes the whole quota for a while.
    let urgent_image = wrapper_image("urgent", "sleep 10");
    kubectl_ok(
        &["apply", "-n", &name, "-f", "-"],
        Some(&format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: urgent\n  labels: {{kueue.x-k8s.io/queue-name: batch}}\nspec:\n  \
             template:\n    spec:\n      restartPolicy: Never\n      priorityClassName: {name}-high\n      hostNetwork: true\n      \
             tolerations: [{{operator: Exists}}]\n      automountServiceAccountToken: false\n      \
             containers:\n      - name: urgent\n        image: {urgent_image}\n        args: [\"--version\"]\n        \
             resources: {{requests: {{cpu: 200m, memory: 64Mi}}}}\n"
        )),
    );
    let sj = h
        .wait("nightly", Duration::from_secs(60), "preempted", |sj| {
            waiting(sj).is_some_and(|(r, _)| r == WaitingReason::Preempted)
        })
        .await;
    let (reason, message) = progressing(&sj).expect("Progressing");
    assert_eq!(reason, "Preempted");
    assert!(
        message.contains("-scan was preempted and waits for admission again on queue batch"),
        "{message}"
    );

    // Once the urgent Job is done, the scan is admitted again and the night completes.
    let sj = h.wait_finished("nightly", Phase::Succeeded).await;
    let status = sj.status.as_ref().unwrap();
    let last = status.last_run.as_ref().unwrap();
    assert_eq!(last.outcome, Outcome::Succeeded);
    assert_eq!(last.preemptions, 1, "{last:?}");
    assert_eq!((last.shards.succeeded, last.shards.failed), (2, 0));
    let success = status.last_successful_run.as_ref().unwrap();
    assert_eq!(success.files, files as i64, "the night is exact");
    let scan = scan_job(&h.ns, "nightly").await.expect("the scan Job");
    let job_status = scan.status.unwrap();
    assert_eq!(
        job_status.failed.unwrap_or(0),
        0,
        "the preempted pods count as no failure"
    );
    assert_eq!(job_status.succeeded, Some(2));
    let urgent: Job = h.ns.api::<Job>().get("urgent").await.unwrap();
    assert_eq!(urgent.status.and_then(|s| s.succeeded), Some(1));
    let events = scanjob_events(&h.ns, "nightly").await;
    let reasons: Vec<&str> = events.iter().map(|(r, _)| r.as_str()).collect();
    assert!(reasons.contains(&"RunPreempted"), "{events:?}");
    assert!(!reasons.contains(&"ShardFailed"), "{events:?}");
    drop(objects);
    h.delete().await;
}

/// The node's name (the test cluster has one).
fn node_name() -> String {
    kubectl_ok(
        &["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"],
        None,
    )
}

/// A taint on the node, removed when dropped.
struct Taint(String, String);

impl Drop for Taint {
    fn drop(&mut self) {
        let _ = kubectl(&["taint", "node", &self.0, &format!("{}-", self.1)], None);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn placement_reaches_the_pods_and_pods_that_fit_no_node_say_so() {
    let h = Harness::start("sj-placement").await;
    let name = h.ns.name.clone();
    let node = node_name();
    let pool = format!("scanjob.dev/e2e-pool-{}", &name[name.len() - 8..]);
    kubectl_ok(
        &[
            "label",
            "node",
            &node,
            &format!("{pool}=yes"),
            "--overwrite",
        ],
        None,
    );
    let _priority = ClusterObjects(vec![format!("priorityclass/{name}-batch")]);
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {{name: {name}-batch}}\nvalue: 500\n"
        )),
    );
    let taint_key = format!("scanjob.dev/e2e-{}", &name[name.len() - 8..]);
    kubectl_ok(
        &[
            "taint",
            "node",
            &node,
            &format!("{taint_key}=x:NoSchedule"),
            "--overwrite",
        ],
        None,
    );
    let taint = Taint(node.clone(), format!("{taint_key}:NoSchedule"));

    let root = h.ns.dir.join("tree");
    let files = small_tree(&root, 3, 20);
    let placed = format!(
        "nodeSelector: {{{pool}: 'yes'}}, tolerations: [{{key: {taint_key}, operator: Exists, effect: NoSchedule}}], priorityClassName: {name}-batch, podLabels: {{team: storage}}, podAnnotations: {{cost-center: '42'}}"
    );
    h.apply(&scanjob_yaml_with_worker(
        "placed",
        &root,
        &h.url,
        &placed,
        "  shards: 2\n  parallelism: 2\n",
    ));
    // Nowhere to go: no node has this label.
    h.apply(&scanjob_yaml_with_worker(
        "nowhere",
        &root,
        &format!("{}-nowhere", h.url),
        &format!("nodeSelector: {{{pool}: 'no'}}, {ANY_TAINT}"),
        "",
    ));

    let sj = h.wait_finished("placed", Phase::Succeeded).await;
    assert_eq!(
        sj.status
            .as_ref()
            .unwrap()
            .last_successful_run
            .as_ref()
            .unwrap()
            .files,
        files as i64
    );
    let pods =
        h.ns.api::<Pod>()
            .list(&ListParams::default().labels("scanjob.dev/name=placed"))
            .await
            .unwrap()
            .items;
    let mut steps: Vec<&str> = pods
        .iter()
        .filter_map(|p| p.metadata.labels.as_ref()?.get("scanjob.dev/step"))
        .map(String::as_str)
        .collect();
    steps.sort_unstable();
    steps.dedup();
    assert_eq!(steps, ["merge", "plan", "scan"], "pods of every step");
    for pod in &pods {
        let spec = pod.spec.as_ref().unwrap();
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        assert_eq!(
            spec.node_name.as_deref(),
            Some(node.as_str()),
            "{pod_name}: the tainted node, by its toleration"
        );
        assert_eq!(
            spec.priority_class_name.as_deref(),
            Some(format!("{name}-batch").as_str())
        );
        assert_eq!(
            spec.priority,
            Some(500),
            "{pod_name}: admission resolved the class"
        );
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "storage", "{pod_name}");
        assert_eq!(
            pod.metadata.annotations.as_ref().unwrap()["cost-center"],
            "42"
        );
    }

    let sj = h
        .wait("nowhere", Duration::from_secs(60), "unschedulable", |sj| {
            waiting(sj).is_some_and(|(r, _)| r == WaitingReason::Unschedulable)
        })
        .await;
    let (reason, message) = progressing(&sj).expect("Progressing");
    assert_eq!(reason, "Unschedulable");
    assert!(
        message.contains("1 plan pod(s) cannot be scheduled: 0/1 nodes are available")
            && message.contains("node affinity/selector"),
        "{message}"
    );
    let events = scanjob_events(&h.ns, "nowhere").await;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "PodsUnschedulable" && n.contains("cannot be scheduled")),
        "{events:?}"
    );
    drop(taint);
    let _ = kubectl(&["label", "node", &node, &format!("{pool}-")], None);
    h.delete().await;
}
