//! Reaching the test cluster from a test: the client, a namespace of its own with a directory
//! for its trees and logs, and waits that explain themselves when they time out.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const RUN_HINT: &str = "run the tests with `tests/run` (it installs and starts the control plane and S3), \
     or `source $SCANJOB_CACHE/run/env.sh` after `tests/cluster/up.sh`";

/// The client for the control plane named by `$KUBECONFIG`; panics, naming the fix, when there is none.
pub async fn client() -> Client {
    let Some(path) = std::env::var_os("KUBECONFIG") else {
        panic!("KUBECONFIG is not set: {RUN_HINT}");
    };
    assert!(
        PathBuf::from(&path).is_file(),
        "KUBECONFIG={} does not exist: {RUN_HINT}",
        path.to_string_lossy()
    );
    let client = Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("no client from KUBECONFIG: {e}"));
    if let Err(e) = client.apiserver_version().await {
        panic!("the control plane in KUBECONFIG does not answer ({e}): {RUN_HINT}");
    }
    client
}

/// Where tests keep the trees their pods scan (as hostPath volumes) and the logs of operators
/// they start: kept after the run for failures.
pub fn tests_dir() -> PathBuf {
    let base = std::env::var_os("SCANJOB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    base.join("run").join("e2e")
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{:05x}", std::process::id() % 4096, nanos % 0xfffff)
}

/// A namespace of one test, so tests run in parallel, and a host directory of its own.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
    /// `tests_dir()/<namespace>`: trees to scan, operator logs.
    pub dir: PathBuf,
}

impl TestNamespace {
    /// Creates `e2e-<test>-<suffix>` and waits until pods can be admitted in it.
    pub async fn create(test: &str) -> Self {
        let client = client().await;
        let name = format!("e2e-{test}-{}", unique_suffix());
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"scanjob.dev/e2e": "true"}}
        }))
        .expect("namespace literal");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        // The ServiceAccount admission plugin rejects pods until the controller made "default".
        let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while sa.get_opt("default").await.ok().flatten().is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no ServiceAccount default in {name} after 30 s: is kube-controller-manager running?"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let dir = tests_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Self { client, name, dir }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Pods of this namespace as one line each, for failure messages.
    pub async fn describe_pods(&self) -> String {
        let pods = self.api::<Pod>().list(&ListParams::default()).await;
        let Ok(pods) = pods else {
            return "(pods could not be listed)".to_owned();
        };
        pods.items
            .iter()
            .map(|p| {
                let status = p.status.as_ref();
                let state = status
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|c| c.first())
                    .and_then(|c| c.state.as_ref());
                let term = state.and_then(|s| s.terminated.as_ref());
                let waiting = state.and_then(|s| s.waiting.as_ref());
                format!(
                    "{} phase={:?} reason={:?} exit={:?} message={:?} waiting={:?}",
                    p.metadata.name.as_deref().unwrap_or(""),
                    status.and_then(|s| s.phase.as_deref()),
                    status.and_then(|s| s.reason.as_deref()),
                    term.map(|t| t.exit_code),
                    term.and_then(|t| t.message.as_deref()),
                    waiting.map(|w| (w.reason.as_deref(), w.message.as_deref())),
                )
            })
            .collect::<Vec<_>>()
            .join("\n  ")
    }

    /// Waits until the Job has a `Complete` or `Failed` condition that is True and returns it.
    pub async fn wait_job_finished(&self, name: &str, timeout: Duration) -> Job {
        let jobs = self.api::<Job>();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = jobs
                .get(name)
                .await
                .unwrap_or_else(|e| panic!("reading Job {name}: {e}"));
            let finished = job
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"
                    })
                });
            if finished {
                return job;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "Job {name} not finished after {timeout:?}; status: {}\n  pods:\n  {}",
                    serde_json::to_string(&job.status).unwrap_or_default(),
                    self.describe_pods().await,
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `pod` satisfies `done` and returns it.
    pub async fn wait_pod(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Pod) -> bool,
    ) -> Pod {
        let pods = self.api::<Pod>();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(pod) = pods
                .get_opt(name)
                .await
                .unwrap_or_else(|e| panic!("reading Pod {name}: {e}"))
                && done(&pod)
            {
                return pod;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "Pod {name} not {what} after {timeout:?}:\n  {}",
                    self.describe_pods().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Deletes the namespace (its controller deletes what is in it; the kubelet stops the pods).
    pub async fn delete(self) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::background())
            .await;
    }
}

/// The exit code of a pod's first container, once it has terminated.
pub fn exit_code(pod: &Pod) -> Option<i32> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    Some(status.state.as_ref()?.terminated.as_ref()?.exit_code)
}

/// The completion index of an Indexed Job's pod.
pub fn completion_index(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get("batch.kubernetes.io/job-completion-index")
        .map(String::as_str)
}

/// The phase of a pod, "" when it has none yet.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}
