//! Running the real `scanjob-operator` binary against the test control plane: its CRD, a
//! process per test namespace that a test may kill and start again, and what worker pods need
//! (the output Secret, the worker ServiceAccount, images that misbehave on purpose).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use scanjob_operator::crd::{Phase, ScanJob};
use serde_json::json;

use crate::cluster::TestNamespace;
pub use crate::node::WORKER_IMAGE;
use crate::node::scanjob_binary;
/// The Secret with the S3 settings of the test store.
pub const S3_SECRET: &str = "toc-s3";

/// The workspace root (the test binary may run from another clone's target dir, so this is
/// read at run time).
pub fn workspace_dir() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The release build of `scanjob-operator`, beside the `scanjob` binary.
pub fn operator_binary() -> PathBuf {
    let bin = scanjob_binary().with_file_name("scanjob-operator");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build --release --workspace`",
        bin.display()
    );
    bin
}

/// Applies `crds/scanjob.yaml` (server-side, so parallel tests may all do it) and waits until
/// the API serves ScanJobs.
pub async fn install_crd(client: &Client) {
    let path = workspace_dir().join("crds/scanjob.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().expect("CRD name");
    api.patch(
        &name,
        &PatchParams::apply("scanjob-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap_or_else(|e| panic!("applying the ScanJob CRD: {e}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let established = api
            .get(&name)
            .await
            .ok()
            .and_then(|c| c.status)
            .and_then(|s| s.conditions)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ScanJob CRD is not Established after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Secret every worker pod gets as env: the test S3 server's endpoint and keys.
pub async fn create_s3_secret(ns: &TestNamespace) {
    let mut data = serde_json::Map::new();
    for key in [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_ALLOW_HTTP",
    ] {
        let value = std::env::var(key)
            .unwrap_or_else(|_| panic!("{key} is not set: run the tests with `tests/run`"));
        data.insert(key.into(), value.into());
    }
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": S3_SECRET},
        "stringData": data,
    }))
    .expect("Secret literal");
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating the S3 Secret");
}

/// The ServiceAccount worker pods run as: no RBAC, no token.
pub async fn create_worker_service_account(ns: &TestNamespace) {
    let sa: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": "scanjob-worker"},
        "automountServiceAccountToken": false,
    }))
    .expect("ServiceAccount literal");
    ns.api::<ServiceAccount>()
        .create(&PostParams::default(), &sa)
        .await
        .expect("creating the worker ServiceAccount");
}

/// The S3 bucket of the test store.
pub fn bucket() -> String {
    std::env::var("SCANJOB_TEST_BUCKET").unwrap_or_else(|_| "scanjob-test".into())
}

/// A free local port for the operator's endpoints.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// A running `scanjob-operator` watching one namespace; killed when dropped.
pub struct OperatorProcess {
    child: Child,
    pub http: String,
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Starts the operator for `ns`, logging to `<test dir>/operator-<n>.log`.
    pub fn start(ns: &TestNamespace) -> Self {
        let args = ["--namespace", &ns.name, "--worker-image", WORKER_IMAGE].map(String::from);
        Self::start_with(ns, &args, &[])
    }

    /// Starts the operator with `args` (no `--http-addr`: it serves on a free local port) and
    /// `env` on top of the test's own, e.g. `KUBECONFIG` naming other credentials.
    pub fn start_with(ns: &TestNamespace, args: &[String], env: &[(String, String)]) -> Self {
        std::fs::create_dir_all(&ns.dir).expect("creating the test's directory");
        let mut n = 0;
        let log = loop {
            let candidate = ns.dir.join(format!("operator-{n}.log"));
            if !candidate.exists() {
                break candidate;
            }
            n += 1;
        };
        let port = free_port();
        let file = std::fs::File::create(&log).expect("creating the operator log");
        let child = Command::new(operator_binary())
            .args(args)
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info,scanjob_operator=debug,kube=warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("starting scanjob-operator");
        Self {
            child,
            http: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// SIGKILL, as a node failure or OOM would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and waits up to 10 s for a clean exit; returns whether it exited by itself.
    pub fn terminate(mut self) -> bool {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The operator's log so far, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET one of the operator's endpoints: (status code, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&format!("{}{path}", self.http))
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.0 GET over a TCP stream: (status code, body).
pub fn http_get(url: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// `kubectl <args>` with the test kubeconfig: (success, stdout + stderr).
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let mut child = Command::new(kubectl)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running kubectl (set KUBECTL, as tests/run does)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("kubectl stdin")
            .write_all(input.as_bytes())
            .expect("writing to kubectl");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The ScanJob `name` in `ns` once `done` holds; panics with its status, the pods and the
/// operator's log when `timeout` passes first.
pub async fn wait_scanjob(
    ns: &TestNamespace,
    operator_log: &Path,
    name: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&ScanJob) -> bool,
) -> ScanJob {
    let api = ns.api::<ScanJob>();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let sj = api
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading ScanJob {name}: {e}"));
        if done(&sj) {
            return sj;
        }
        if tokio::time::Instant::now() >= deadline {
            let log = std::fs::read_to_string(operator_log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "ScanJob {name} not {what} after {timeout:?}\n  status: {}\n  pods:\n  {}\n  operator log (last lines, newest first):\n  {}",
                serde_json::to_string_pretty(&sj.status).unwrap_or_default(),
                ns.describe_pods().await,
                tail.join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The phase of a ScanJob, or `None` before the operator wrote one.
pub fn phase(sj: &ScanJob) -> Option<Phase> {
    sj.status.as_ref().and_then(|s| s.phase)
}

/// A ScanJob over a hostPath `root`, publishing to `url` with the S3 Secret; `extra` is more
/// spec YAML, indented by two spaces, without `worker:` (see [`scanjob_yaml_with_worker`]).
pub fn scanjob_yaml(name: &str, root: &Path, url: &str, extra: &str) -> String {
    scanjob_yaml_with_worker(name, root, url, "", extra)
}

/// As [`scanjob_yaml`], with `worker` more fields of `spec.worker` in YAML flow style (e.g.
/// `image: 'example.com/slow-scanjob:1', threads: 2`). Worker pods use the node's network: the
/// test S3 server listens on 127.0.0.1 only.
pub fn scanjob_yaml_with_worker(
    name: &str,
    root: &Path,
    url: &str,
    worker: &str,
    extra: &str,
) -> String {
    assert!(
        !extra.contains("\n  worker:") && !extra.starts_with("  worker:"),
        "pass spec.worker fields as `worker`, not in `extra`"
    );
    let sep = if worker.is_empty() { "" } else { ", " };
    format!(
        "apiVersion: scanjob.dev/v1alpha1\nkind: ScanJob\nmetadata:\n  name: {name}\nspec:\n  source:\n    volume:\n      hostPath: {{path: '{}', type: Directory}}\n  output:\n    url: {url}\n    secretRef: {{name: {S3_SECRET}}}\n  worker: {{hostNetwork: true{sep}{worker}}}\n{extra}",
        root.display()
    )
}

/// `kubectl apply -f -` of `yaml` in `ns`: (success, output).
pub fn kubectl_apply(ns: &TestNamespace, yaml: &str) -> (bool, String) {
    kubectl(&["apply", "-n", &ns.name, "-f", "-"], Some(yaml))
}

/// (reason, note) of the Events about ScanJob `name`, oldest first.
pub async fn scanjob_events(ns: &TestNamespace, name: &str) -> Vec<(String, String)> {
    let mut events: Vec<Event> = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("listing events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("ScanJob")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect();
    events.sort_by_key(|e| {
        e.event_time
            .as_ref()
            .map(|t| t.0)
            .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
    });
    events
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

fn read_snapshot_py(args: &[&str]) -> serde_json::Value {
    let python = std::env::var("SCANJOB_PYTHON")
        .unwrap_or_else(|_| panic!("SCANJOB_PYTHON is not set: run the tests with `tests/run`"));
    let script = workspace_dir().join("tests/tests/read_snapshot.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("running read_snapshot.py");
    assert!(
        out.status.success(),
        "read_snapshot.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("read_snapshot.py prints JSON")
}

/// What `tests/read_snapshot.py` reads with pyarrow straight from S3 for a manifest URL.
pub fn read_snapshot(manifest_url: &str) -> serde_json::Value {
    read_snapshot_py(&[manifest_url])
}

/// Whether the S3 object at `url` exists.
pub fn s3_exists(url: &str) -> bool {
    read_snapshot_py(&["--exists", url]) == serde_json::Value::Bool(true)
}

/// The keys below the S3 prefix `url`, relative to it, sorted.
pub fn s3_list(url: &str) -> Vec<String> {
    serde_json::from_value(read_snapshot_py(&["--list", url])).expect("a list of keys")
}

/// Jobs of ScanJob `name` by name.
pub async fn job_names(ns: &TestNamespace, name: &str) -> Vec<String> {
    let mut names: Vec<String> = jobs(ns, name)
        .await
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    names.sort();
    names
}

/// The Jobs of ScanJob `name`.
pub async fn jobs(ns: &TestNamespace, name: &str) -> Vec<Job> {
    ns.api::<Job>()
        .list(&ListParams::default().labels(&format!("scanjob.dev/name={name}")))
        .await
        .expect("listing Jobs")
        .items
}

/// A test namespace with everything a ScanJob needs: the CRD, the S3 Secret, the worker
/// ServiceAccount and an operator watching the namespace; the node runs the pods.
pub struct Harness {
    pub ns: TestNamespace,
    pub operator: Option<OperatorProcess>,
    /// The operator's current log.
    pub log: PathBuf,
    /// An S3 prefix of this test's own.
    pub url: String,
}

impl Harness {
    pub async fn start(test: &str) -> Self {
        let ns = TestNamespace::create(test).await;
        install_crd(&ns.client).await;
        create_s3_secret(&ns).await;
        create_worker_service_account(&ns).await;
        let operator = OperatorProcess::start(&ns);
        let log = operator.log.clone();
        let url = format!("s3://{}/{}/toc", bucket(), ns.name);
        Self {
            ns,
            operator: Some(operator),
            log,
            url,
        }
    }

    /// Kills the operator (SIGKILL) and starts a new one.
    pub fn restart_operator(&mut self) {
        self.restart_operator_with(&[]);
    }

    /// Kills the operator (SIGKILL) and starts a new one with `args` added to its usual ones.
    pub fn restart_operator_with(&mut self, args: &[&str]) {
        if let Some(op) = self.operator.take() {
            op.kill();
        }
        let mut all: Vec<String> = ["--namespace", &self.ns.name, "--worker-image", WORKER_IMAGE]
            .map(String::from)
            .into();
        all.extend(args.iter().map(|a| a.to_string()));
        let op = OperatorProcess::start_with(&self.ns, &all, &[]);
        self.log = op.log.clone();
        self.operator = Some(op);
    }

    /// `kubectl apply` of `yaml`; panics with kubectl's output when it is refused.
    pub fn apply(&self, yaml: &str) {
        let (ok, out) = kubectl_apply(&self.ns, yaml);
        assert!(ok, "kubectl apply refused:\n{out}\n{yaml}");
    }

    pub async fn wait(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&ScanJob) -> bool,
    ) -> ScanJob {
        wait_scanjob(&self.ns, &self.log, name, timeout, what, done).await
    }

    /// Waits for the newest run to end in `phase` (Succeeded or Failed).
    /// Sets `annotations` on ScanJob `name` (`scanjob.dev/run-now`, …) and waits for the run
    /// it starts (one other than `previous`) to end.
    pub async fn run_again(
        &self,
        name: &str,
        previous: &str,
        annotations: serde_json::Value,
    ) -> ScanJob {
        self.run_again_within(name, previous, annotations, Duration::from_secs(240))
            .await
    }

    /// [`Harness::run_again`], waiting up to `timeout` for the new run to end.
    pub async fn run_again_within(
        &self,
        name: &str,
        previous: &str,
        annotations: serde_json::Value,
        timeout: Duration,
    ) -> ScanJob {
        self.ns
            .api::<ScanJob>()
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(
                    serde_json::json!({"metadata": {"annotations": annotations}}),
                ),
            )
            .await
            .expect("annotating the ScanJob");
        let previous = previous.to_string();
        self.wait(name, timeout, "a new run to end", move |sj| {
            sj.status.as_ref().is_some_and(|s| {
                s.current_run.is_none() && s.last_run.as_ref().is_some_and(|r| r.id != previous)
            })
        })
        .await
    }

    pub async fn wait_finished(&self, name: &str, phase: Phase) -> ScanJob {
        self.wait(
            name,
            Duration::from_secs(240),
            &format!("{phase:?}"),
            |sj| {
                sj.status
                    .as_ref()
                    .is_some_and(|s| s.current_run.is_none() && s.phase == Some(phase))
            },
        )
        .await
    }

    pub async fn delete(mut self) {
        if let Some(op) = self.operator.take() {
            op.kill();
        }
        self.ns.delete().await;
    }
}

/// A small tree: `dirs` top-level directories of `files` files each; returns the file count.
pub fn small_tree(root: &Path, dirs: usize, files: usize) -> usize {
    for d in 0..dirs {
        let dir = root.join(format!("project-{d}")).join("data");
        std::fs::create_dir_all(&dir).expect("creating the tree");
        for f in 0..files {
            std::fs::write(dir.join(format!("part-{f:04}.csv")), vec![b'x'; f % 97])
                .expect("writing the tree");
        }
    }
    dirs * files
}
