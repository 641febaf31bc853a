//! A kubelet stand-in: runs each Pod's container as a local process of a mapped binary and
//! reports its lifecycle through `pods/status`, so the real Job controller sees pods start,
//! succeed and fail as it would on a node.
//!
//! Scope: pods in one namespace or matching a label selector, so parallel tests each run their
//! own stand-in. Pods have one container; init containers and probes are not supported.
//! The container's `terminationMessagePath` is mapped to `<pod dir>/<container>.termination-log`:
//! the path is rewritten where the command, args or env values name it, as are volume mount paths
//! (see [`expand::rewrite_paths`]), and exported as `KUBELET_STANDIN_TERMINATION_MESSAGE_PATH`.

mod env;
pub mod expand;
mod pod;
mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// The env var through which a process may learn where its termination message goes. Named for
/// the stand-in so that it never switches on behaviour a real pod would not have.
pub const TERMINATION_MESSAGE_PATH_ENV: &str = "KUBELET_STANDIN_TERMINATION_MESSAGE_PATH";

/// Why a container could not be started; becomes the pod's Failed status.
#[derive(Debug, Clone)]
pub struct StartError {
    pub reason: &'static str,
    pub message: String,
}

impl StartError {
    pub(crate) fn new(reason: &'static str, message: String) -> Self {
        Self { reason, message }
    }

    pub(crate) fn api(kind: &str, name: &str, e: kube::Error) -> Self {
        Self::new(
            "CreateContainerConfigError",
            format!("reading {kind} {name}: {e}"),
        )
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for StartError {}

/// Maps container images to local executables.
#[derive(Debug, Clone, Default)]
pub struct ImageMap {
    /// Keyed by the full image reference or by the repository's last path segment (`scanjob` for
    /// `ghcr.io/acme/scanjob:1.2`); the full reference is tried first.
    binaries: BTreeMap<String, PathBuf>,
}

impl ImageMap {
    /// `scanjob` → the workspace's release build of the `scanjob` binary.
    pub fn with_scanjob() -> Self {
        let mut map = Self::default();
        map.insert("scanjob", scanjob_binary());
        map
    }

    pub fn insert(&mut self, image: impl Into<String>, binary: impl Into<PathBuf>) -> &mut Self {
        self.binaries.insert(image.into(), binary.into());
        self
    }

    pub fn resolve(&self, image: &str) -> Option<&Path> {
        self.binaries
            .get(image)
            .or_else(|| self.binaries.get(image_name(image)))
            .map(PathBuf::as_path)
    }

    pub fn images(&self) -> impl Iterator<Item = &str> {
        self.binaries.keys().map(String::as_str)
    }
}

/// The repository's last path segment, without registry, tag or digest.
pub fn image_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// Where the workspace's release `scanjob` binary is: `$SCANJOB_BIN`, else
/// `$CARGO_TARGET_DIR/release/scanjob`, else beside the running executable (a test binary lives in
/// `target/release/deps`, the stand-in binary in `target/release`).
pub fn scanjob_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SCANJOB_BIN") {
        return bin.into();
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Path::new(&target).join("release").join("scanjob");
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    dir.join("scanjob")
}

/// What the stand-in watches and how it runs pods.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// Watch only this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// Watch only pods matching this label selector.
    pub label_selector: Option<String>,
    pub images: ImageMap,
    /// Volume name → local directory, for sources other than hostPath.
    pub volumes: HashMap<String, PathBuf>,
    /// How many containers run at once; further pods wait in Pending.
    pub slots: usize,
    /// Per-pod directories (logs, termination messages, emptyDir and Secret volumes).
    pub work_dir: PathBuf,
    /// Host env vars passed to every process besides the pod's own (PATH and the like).
    pub inherited_env: Vec<String>,
}

impl KubeletConfig {
    /// Pods of one namespace, `scanjob` images mapped, two slots, per-pod dirs under `work_dir`.
    pub fn for_namespace(namespace: impl Into<String>, work_dir: impl Into<PathBuf>) -> Self {
        Self {
            namespace: Some(namespace.into()),
            label_selector: None,
            images: ImageMap::with_scanjob(),
            volumes: HashMap::new(),
            slots: 2,
            work_dir: work_dir.into(),
            inherited_env: ["PATH", "RUST_BACKTRACE", "RUST_LOG", "TMPDIR"]
                .map(String::from)
                .to_vec(),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) config: KubeletConfig,
    pub(crate) slots: Semaphore,
}

/// A pod's task and the switch that kills its process. Kept after the task ends, until the pod is
/// deleted: watch events queued before the final status patch must not start the pod again.
struct PodTask {
    kill: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Runs the stand-in until the pod watch ends; dropping the future kills every process it started.
pub async fn run(client: Client, config: KubeletConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.work_dir)?;
    let api: Api<Pod> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut wc = watcher::Config::default();
    if let Some(selector) = &config.label_selector {
        wc = wc.labels(selector);
    }
    let shared = Arc::new(Shared {
        client,
        slots: Semaphore::new(config.slots.max(1)),
        config,
    });
    let mut tasks: HashMap<String, PodTask> = HashMap::new();
    // Aborting the pod tasks drops their children, which are spawned with kill_on_drop.
    struct AbortAll<'a>(&'a mut HashMap<String, PodTask>);
    impl Drop for AbortAll<'_> {
        fn drop(&mut self) {
            for t in self.0.values() {
                t.task.abort();
            }
        }
    }
    let tasks = AbortAll(&mut tasks);
    let mut seen_in_init: Option<Vec<String>> = None;
    let mut events = watcher(api, wc).default_backoff().boxed();
    tracing::info!(namespace = ?shared.config.namespace, selector = ?shared.config.label_selector, "kubelet stand-in watching pods");
    while let Some(event) = events.try_next().await? {
        match event {
            watcher::Event::Init => seen_in_init = Some(Vec::new()),
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                if let (Some(seen), Some(uid)) = (seen_in_init.as_mut(), pod.metadata.uid.as_ref())
                {
                    seen.push(uid.clone());
                }
                observe(&shared, tasks.0, pod);
            }
            watcher::Event::InitDone => {
                // A restarted watch can miss deletions: kill what is no longer listed.
                if let Some(seen) = seen_in_init.take() {
                    let gone: Vec<String> = tasks
                        .0
                        .keys()
                        .filter(|uid| !seen.contains(uid))
                        .cloned()
                        .collect();
                    for uid in gone {
                        if let Some(t) = tasks.0.remove(&uid) {
                            let _ = t.kill.send(true);
                        }
                    }
                }
            }
            watcher::Event::Delete(pod) => {
                if let Some(t) = pod
                    .metadata
                    .uid
                    .as_ref()
                    .and_then(|uid| tasks.0.remove(uid))
                {
                    tracing::info!(
                        pod = pod.metadata.name.as_deref(),
                        "pod deleted, killing its process"
                    );
                    let _ = t.kill.send(true);
                }
            }
        }
    }
    Ok(())
}

fn observe(shared: &Arc<Shared>, tasks: &mut HashMap<String, PodTask>, pod: Pod) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if pod.metadata.deletion_timestamp.is_some() {
        if let Some(t) = tasks.get(&uid) {
            let _ = t.kill.send(true);
        }
        return;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if tasks.contains_key(&uid) || matches!(phase, Some("Succeeded" | "Failed")) {
        return;
    }
    let (kill, killed) = watch::channel(false);
    let task = tokio::spawn(pod::run(shared.clone(), pod, killed));
    tasks.insert(uid, PodTask { kill, task });
}

/// The stand-in running in the background of a test; dropping it stops it and kills its processes.
pub struct KubeletHandle {
    task: JoinHandle<anyhow::Result<()>>,
}

impl KubeletHandle {
    pub fn spawn(client: Client, config: KubeletConfig) -> Self {
        Self {
            task: tokio::spawn(run(client, config)),
        }
    }
}

impl Drop for KubeletHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_images_by_repository_name() {
        let mut map = ImageMap::default();
        map.insert("scanjob", "/bin/scanjob")
            .insert("example.invalid/shell:1", "/bin/sh");
        assert_eq!(
            map.resolve("ghcr.io/acme/scanjob:0.1.0"),
            Some(Path::new("/bin/scanjob"))
        );
        assert_eq!(
            map.resolve("scanjob@sha256:abc"),
            Some(Path::new("/bin/scanjob"))
        );
        assert_eq!(
            map.resolve("example.invalid/shell:1"),
            Some(Path::new("/bin/sh"))
        );
        assert_eq!(map.resolve("localhost:5000/other:1"), None);
        assert_eq!(image_name("localhost:5000/scanjob"), "scanjob");
    }
}
