//! One pod: wait for a slot, prepare the process, run it (restarting as the restart policy
//! says), and report each step through `pods/status`.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::expand::{PathMapping, expand, rewrite_paths};
use super::{Shared, StartError, TERMINATION_MESSAGE_PATH_ENV, env, volumes};

/// A kubelet keeps at most this much of a termination message (the file's tail).
const MAX_TERMINATION_MESSAGE: u64 = 4096;
/// FallbackToLogsOnError: the kubelet's limits on the log tail it reports instead.
const FALLBACK_LOG_BYTES: u64 = 2048;
const FALLBACK_LOG_LINES: usize = 80;
/// Deleted pods get at most this long between SIGTERM and SIGKILL, so test teardown stays fast.
const MAX_GRACE: Duration = Duration::from_secs(10);

/// Everything needed to start the container's process.
struct Prepared {
    container: String,
    image: String,
    binary: PathBuf,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    log: PathBuf,
    termination_log: PathBuf,
    fallback_to_logs: bool,
    restart_policy: String,
    grace: Duration,
}

fn now() -> Value {
    serde_json::to_value(Time(Timestamp::now())).unwrap_or(Value::Null)
}

/// Writes pod status with merge patches, as the node's kubelet would.
struct StatusReporter {
    api: Api<Pod>,
    name: String,
    start_time: Value,
}

impl StatusReporter {
    /// Returns false when the pod is gone, so the caller can stop.
    async fn patch(&self, status: Value) -> bool {
        let patch = Patch::Merge(json!({ "status": status }));
        for attempt in 0..5u32 {
            match self
                .api
                .patch_status(&self.name, &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => return true,
                Err(kube::Error::Api(e)) if e.code == 404 => return false,
                Err(error) => {
                    tracing::warn!(pod = %self.name, attempt, %error, "patching pod status failed");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        false
    }

    fn conditions(ready: bool, reason: Option<&str>) -> Value {
        let t = now();
        let ready_status = if ready { "True" } else { "False" };
        let mut conds = vec![
            json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": t}),
            json!({"type": "Initialized", "status": "True", "lastTransitionTime": t}),
        ];
        for kind in ["ContainersReady", "Ready"] {
            let mut c = json!({"type": kind, "status": ready_status, "lastTransitionTime": t});
            if let Some(reason) = reason {
                c["reason"] = json!(reason);
            }
            conds.push(c);
        }
        Value::Array(conds)
    }

    async fn running(&self, p: &Prepared, pid: u32, restarts: u32, started: &Value) -> bool {
        self.patch(json!({
            "phase": "Running",
            "startTime": self.start_time,
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "conditions": Self::conditions(true, None),
            "containerStatuses": [{
                "name": p.container, "image": p.image, "imageID": "", "containerID": format!("standin://{pid}"),
                "ready": true, "started": true, "restartCount": restarts,
                "state": {"running": {"startedAt": started}},
            }],
        }))
        .await
    }

    async fn terminated(
        &self,
        p: &Prepared,
        end: &Ended,
        restarts: u32,
        started: &Value,
        final_: bool,
    ) -> bool {
        let mut terminated = json!({
            "exitCode": end.exit_code,
            "reason": if end.exit_code == 0 { "Completed" } else { "Error" },
            "startedAt": started,
            "finishedAt": now(),
            "containerID": format!("standin://{}", end.pid),
        });
        if let Some(signal) = end.signal {
            terminated["signal"] = json!(signal);
        }
        if !end.message.is_empty() {
            terminated["message"] = json!(end.message);
        }
        let phase = match (final_, end.exit_code) {
            (false, _) => "Running",
            (true, 0) => "Succeeded",
            (true, _) => "Failed",
        };
        let state = if final_ {
            json!({"terminated": terminated})
        } else {
            json!({"waiting": {"reason": "CrashLoopBackOff"}})
        };
        let mut container = json!({
            "name": p.container, "image": p.image, "imageID": "", "containerID": format!("standin://{}", end.pid),
            "ready": false, "started": false, "restartCount": restarts, "state": state,
        });
        if !final_ {
            container["lastState"] = json!({"terminated": terminated});
        }
        self.patch(json!({
            "phase": phase,
            "startTime": self.start_time,
            "conditions": Self::conditions(false, Some("PodCompleted")),
            "containerStatuses": [container],
        }))
        .await
    }

    async fn failed_to_start(&self, container: &str, image: &str, e: &StartError) {
        tracing::warn!(pod = %self.name, reason = e.reason, message = %e.message, "pod cannot start");
        let t = now();
        self.patch(json!({
            "phase": "Failed",
            "reason": e.reason,
            "message": e.message,
            "startTime": self.start_time,
            "conditions": Self::conditions(false, Some(e.reason)),
            "containerStatuses": [{
                "name": container, "image": image, "imageID": "", "ready": false, "started": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 128, "reason": e.reason, "message": e.message,
                                         "startedAt": t, "finishedAt": t}},
            }],
        }))
        .await;
    }
}

/// How a container's process ended.
struct Ended {
    pid: u32,
    exit_code: i32,
    signal: Option<i32>,
    message: String,
}

pub(crate) async fn run(shared: Arc<Shared>, pod: Pod, mut killed: watch::Receiver<bool>) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let reporter = StatusReporter {
        api: Api::namespaced(shared.client.clone(), &namespace),
        name: name.clone(),
        start_time: now(),
    };
    let first = pod.spec.as_ref().and_then(|s| s.containers.first());
    let container = first.map(|c| c.name.clone()).unwrap_or_default();
    let image = first.and_then(|c| c.image.clone()).unwrap_or_default();

    let _slot = tokio::select! {
        slot = shared.slots.acquire() => match slot {
            Ok(slot) => slot,
            Err(_) => return,
        },
        _ = killed.wait_for(|k| *k) => return,
    };
    let prepared = match prepare(&shared, &pod, &namespace).await {
        Ok(p) => p,
        Err(e) => return reporter.failed_to_start(&container, &image, &e).await,
    };
    tracing::info!(pod = %name, %namespace, binary = %prepared.binary.display(), argv = ?prepared.argv, "starting container");

    let mut restarts = 0u32;
    loop {
        let _ = std::fs::write(&prepared.termination_log, b"");
        let mut child = match spawn(&prepared) {
            Ok(child) => child,
            Err(e) => {
                return reporter
                    .failed_to_start(&prepared.container, &prepared.image, &e)
                    .await;
            }
        };
        let pid = child.id().unwrap_or_default();
        let started = now();
        if !reporter.running(&prepared, pid, restarts, &started).await {
            let _ = terminate(&mut child, pid, Duration::ZERO).await;
            return;
        }
        let exited = tokio::select! {
            status = child.wait() => Some(status),
            _ = killed.wait_for(|k| *k) => None,
        };
        let was_killed = exited.is_none();
        let status = match exited {
            Some(status) => status,
            None => terminate(&mut child, pid, prepared.grace).await,
        };
        let status = status.ok();
        let signal = status.and_then(|s| s.signal());
        let exit_code = status
            .and_then(|s| s.code())
            .unwrap_or_else(|| 128 + signal.unwrap_or(9));
        let message = termination_message(&prepared, exit_code);
        let end = Ended {
            pid,
            exit_code,
            signal,
            message,
        };
        tracing::info!(pod = %name, %namespace, exit_code, killed = was_killed, "container exited");
        let restart = !was_killed
            && match prepared.restart_policy.as_str() {
                "Always" => true,
                "OnFailure" => exit_code != 0,
                _ => false,
            };
        if !restart {
            reporter
                .terminated(&prepared, &end, restarts, &started, true)
                .await;
            return;
        }
        restarts += 1;
        if !reporter
            .terminated(&prepared, &end, restarts, &started, false)
            .await
        {
            return;
        }
        // The kubelet's crash-loop back-off, shortened for tests.
        let backoff = Duration::from_millis(500 << restarts.min(4));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = killed.wait_for(|k| *k) => return,
        }
    }
}

fn spawn(p: &Prepared) -> Result<tokio::process::Child, StartError> {
    let io = |e: std::io::Error| {
        StartError::new("StartError", format!("log file {}: {e}", p.log.display()))
    };
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p.log)
        .map_err(io)?;
    let err = out.try_clone().map_err(io)?;
    tokio::process::Command::new(&p.binary)
        .args(&p.argv)
        .env_clear()
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&p.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        // Its own process group, so a kill reaches anything the container forked.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            StartError::new(
                "StartError",
                format!("starting {}: {e}", p.binary.display()),
            )
        })
}

/// SIGTERM to the process group, SIGKILL after `grace`; returns how the process ended.
async fn terminate(
    child: &mut tokio::process::Child,
    pid: u32,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    let group = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(group) = group {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
    }
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        return status;
    }
    if let Some(group) = group {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = child.start_kill();
    child.wait().await
}

/// The tail of the termination-message file, or with FallbackToLogsOnError and a failed, silent
/// container, the tail of its log.
fn termination_message(p: &Prepared, exit_code: i32) -> String {
    let message = read_tail(&p.termination_log, MAX_TERMINATION_MESSAGE);
    if !message.is_empty() || !p.fallback_to_logs || exit_code == 0 {
        return message;
    }
    let log = read_tail(&p.log, FALLBACK_LOG_BYTES);
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(FALLBACK_LOG_LINES)..].join("\n")
}

fn read_tail(path: &Path, max: u64) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = file.take(max).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

async fn prepare(shared: &Shared, pod: &Pod, namespace: &str) -> Result<Prepared, StartError> {
    let config = &shared.config;
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| StartError::new("Unsupported", "pod has no spec".to_owned()))?;
    let [container] = spec.containers.as_slice() else {
        return Err(StartError::new(
            "Unsupported",
            "the kubelet stand-in runs pods with exactly one container".to_owned(),
        ));
    };
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(StartError::new(
            "Unsupported",
            "the kubelet stand-in does not run init containers".to_owned(),
        ));
    }
    let image = container.image.clone().unwrap_or_default();
    let binary = config.images.resolve(&image).ok_or_else(|| {
        let known: Vec<&str> = config.images.images().collect();
        StartError::new(
            "UnknownImage",
            format!(
                "the kubelet stand-in maps no local binary to image {image:?} (known: {})",
                known.join(", ")
            ),
        )
    })?;
    if !binary.is_file() {
        return Err(StartError::new(
            "BinaryNotBuilt",
            format!(
                "image {image:?} maps to {}, which does not exist (cargo build --release --workspace)",
                binary.display()
            ),
        ));
    }

    let name = pod.metadata.name.as_deref().unwrap_or("pod");
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let pod_dir = config
        .work_dir
        .join(namespace)
        .join(format!("{name}-{}", &uid[..uid.len().min(8)]));
    std::fs::create_dir_all(&pod_dir).map_err(|e| {
        StartError::new(
            "CreateContainerError",
            format!("creating {}: {e}", pod_dir.display()),
        )
    })?;

    let refs = env::RefSource::new(&shared.client, namespace);
    let volume_dirs = volumes::resolve(pod, &config.volumes, &pod_dir, &refs).await?;
    let termination_log = pod_dir.join(format!("{}.termination-log", container.name));
    let termination_path = container
        .termination_message_path
        .as_deref()
        .unwrap_or("/dev/termination-log");
    let mut mappings = vec![PathMapping::new(termination_path, &termination_log)];
    for mount in container.volume_mounts.iter().flatten() {
        let dir = volume_dirs.get(&mount.name).ok_or_else(|| {
            StartError::new(
                "CreateContainerConfigError",
                format!("volumeMount {} names no volume", mount.name),
            )
        })?;
        let dir = match mount.sub_path.as_deref() {
            Some(sub) if !sub.is_empty() => dir.join(sub),
            _ => dir.clone(),
        };
        mappings.push(PathMapping::new(mount.mount_path.clone(), &dir));
    }

    let mut env: Vec<(String, String)> = config
        .inherited_env
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
        .collect();
    env.push(("HOSTNAME".to_owned(), name.to_owned()));
    env.push((
        TERMINATION_MESSAGE_PATH_ENV.to_owned(),
        termination_log.to_string_lossy().into_owned(),
    ));
    for (k, v) in env::resolve(pod, container, &refs).await? {
        env.retain(|(n, _)| *n != k);
        env.push((k, rewrite_paths(&v, &mappings)));
    }

    let lookup = |n: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let words = container
        .command
        .iter()
        .flatten()
        .skip(1)
        .chain(container.args.iter().flatten());
    let argv = words
        .map(|w| rewrite_paths(&expand(w, lookup), &mappings))
        .collect();
    let cwd = container
        .working_dir
        .as_deref()
        .map(|d| PathBuf::from(rewrite_paths(d, &mappings)))
        .filter(|d| d.is_dir())
        .unwrap_or_else(|| pod_dir.clone());
    let grace_secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or(spec.termination_grace_period_seconds)
        .unwrap_or(30);
    Ok(Prepared {
        container: container.name.clone(),
        image,
        binary: binary.to_path_buf(),
        argv,
        env,
        cwd,
        log: pod_dir.join(format!("{}.log", container.name)),
        termination_log,
        fallback_to_logs: container.termination_message_policy.as_deref()
            == Some("FallbackToLogsOnError"),
        restart_policy: spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".to_owned()),
        grace: Duration::from_secs(u64::try_from(grace_secs).unwrap_or(0)).min(MAX_GRACE),
    })
}
