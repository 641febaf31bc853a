//! The test node: a real kubelet with containerd and runc that `tests/cluster/up.sh` starts and
//! registers. Pods run as containers from images built out of the release binaries
//! (`tests/cluster/images.py`); this module builds the test images that misbehave on purpose,
//! finds a pod's container process on the host (to read what the kernel enforces on it, or to
//! kill it), and reads pod logs.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::Pod;

const RUN_HINT: &str = "run the tests with `tests/run` (it starts the node), or `source $SCANJOB_CACHE/run/env.sh` after `tests/cluster/up.sh`";

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is not set: {RUN_HINT}"))
}

/// The worker image every ScanJob of the tests runs: the `scanjob` stage of the Containerfile, at
/// the crate version, as the operator names it by default.
pub const WORKER_IMAGE: &str = concat!("ghcr.io/scanjob/scanjob:", env!("CARGO_PKG_VERSION"));
/// The operator's image: the `scanjob-operator` stage of the Containerfile.
pub const OPERATOR_IMAGE: &str = concat!(
    "ghcr.io/scanjob/scanjob-operator:",
    env!("CARGO_PKG_VERSION")
);

/// Where the workspace's release `scanjob` binary is: `$SCANJOB_BIN`, else
/// `$CARGO_TARGET_DIR/release/scanjob`, else beside the running executable (a test binary lives in
/// `target/release/deps`).
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

/// `ctr` against the node's containerd, in the kubelet's namespace: (success, output).
pub fn ctr(args: &[&str]) -> (bool, String) {
    let out = Command::new("ctr")
        .args(["-a", &env("SCANJOB_CONTAINERD_SOCK"), "-n", "k8s.io"])
        .args(args)
        .output()
        .expect("running ctr");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Builds and imports the test image `example.com/<name>:1`: the worker image with a shell, whose
/// entrypoint runs `body` (sh, with the pod's arguments in `$@`) and then `scanjob "$@"`.
/// Returns the image reference to put in `spec.worker.image`.
pub fn wrapper_image(name: &str, body: &str) -> String {
    let image = format!("example.com/{name}:1");
    let dir = std::env::temp_dir().join(format!("scanjob-e2e-images-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the image directory");
    let script = dir.join(format!("{name}.sh"));
    std::fs::write(
        &script,
        format!("#!/bin/sh\n{body}\nexec /usr/local/bin/scanjob \"$@\"\n"),
    )
    .expect("writing the wrapper script");
    let archive = dir.join(format!("{name}.tar"));
    let base = Path::new(&env("SCANJOB_IMAGES_DIR")).join("scanjob.tar");
    let out = Command::new("python3")
        .arg(env("SCANJOB_IMAGES_PY"))
        .args(["wrapper", "--name", &image])
        .arg("--base")
        .arg(&base)
        .arg("--script")
        .arg(&script)
        .arg("--out")
        .arg(&archive)
        .output()
        .expect("running images.py");
    assert!(
        out.status.success(),
        "images.py wrapper {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, text) = ctr(&["images", "import", &archive.to_string_lossy()]);
    assert!(ok, "ctr images import {}: {text}", archive.display());
    // The image holds the script now; the directory goes once no other wrapper is being made.
    let _ = std::fs::remove_file(&archive);
    let _ = std::fs::remove_file(&script);
    let _ = std::fs::remove_dir(&dir);
    image
}

/// The containerd id of the pod's first container, once it has one.
pub fn container_id(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    let id = status.container_id.as_deref()?;
    Some(id.strip_prefix("containerd://").unwrap_or(id).to_owned())
}

/// The host pid of the running task `container`, from `ctr tasks ls`.
pub fn container_pid(container: &str) -> Option<u32> {
    let (ok, text) = ctr(&["tasks", "ls"]);
    if !ok {
        return None;
    }
    text.lines().find_map(|line| {
        let mut cols = line.split_whitespace();
        (cols.next() == Some(container))
            .then(|| cols.next()?.parse().ok())
            .flatten()
            .filter(|pid| *pid > 0)
    })
}

/// `/proc/PID/status` read at one instant, so every field describes the same live process.
pub struct ProcStatus(String);

impl ProcStatus {
    /// `None` once the process is gone.
    pub fn read(pid: u32) -> Option<ProcStatus> {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .map(ProcStatus)
    }

    /// The value of `field` (e.g. `Uid`, `CapEff`, `NoNewPrivs`, `Seccomp`).
    pub fn field(&self, field: &str) -> Option<String> {
        self.0.lines().find_map(|l| {
            l.strip_prefix(field)
                .and_then(|r| r.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        })
    }
}

/// The mount options of `path` as the process `pid` sees it (from its mountinfo).
pub fn mount_options(pid: u32, path: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    text.lines()
        .rev()
        .find(|l| l.split_whitespace().nth(4) == Some(path))
        .and_then(|l| l.split_whitespace().nth(5).map(str::to_owned))
}

/// SIGKILL to the host process `pid`, as the kernel's OOM killer or a crash would end it.
pub fn kill(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// `kubectl logs` of a pod's container: what the kubelet kept of its output.
pub fn pod_logs(namespace: &str, pod: &str) -> String {
    let (_, out) = crate::operator::kubectl(&["logs", "-n", namespace, pod], None);
    out
}

/// The repository's last path segment, without registry, tag or digest (`scanjob` for
/// `ghcr.io/acme/scanjob:1.2`).
pub fn image_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}
