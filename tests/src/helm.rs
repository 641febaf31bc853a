//! The Helm chart under test: rendering it, validating what it renders against the Kubernetes
//! schemas, installing it into a test namespace, and reading what its Deployment runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::Value;

use crate::operator::{kubectl, workspace_dir};

pub fn chart_dir() -> PathBuf {
    workspace_dir().join("charts/scanjob")
}

/// `helm <args>` with the test kubeconfig: (success, stdout + stderr).
pub fn helm(args: &[&str]) -> (bool, String) {
    let helm = std::env::var("HELM")
        .unwrap_or_else(|_| panic!("HELM is not set: run the tests with `tests/run`"));
    let out = Command::new(&helm)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {helm}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The control plane's Kubernetes version without the `v`, e.g. `1.36.3`.
pub async fn control_plane_version(client: &kube::Client) -> String {
    let info = client
        .apiserver_version()
        .await
        .expect("reading the control plane's version");
    let version = info.git_version.trim_start_matches('v');
    // Drop build metadata such as `+k3s1`.
    version.split('+').next().unwrap_or(version).to_owned()
}

/// `helm template` of the chart as `release` in `namespace`, for Kubernetes `kube_version`,
/// with `args` (values files, `--set`, `--include-crds`); panics with helm's output on failure.
pub fn render(release: &str, namespace: &str, kube_version: &str, args: &[&str]) -> String {
    let chart = chart_dir();
    let mut all = vec![
        "template",
        release,
        chart.to_str().expect("UTF-8 chart path"),
        "--namespace",
        namespace,
        "--kube-version",
        kube_version,
    ];
    all.extend_from_slice(args);
    let (ok, out) = helm(&all);
    assert!(ok, "helm {all:?} failed:\n{out}");
    out
}

/// The documents of a YAML stream, as JSON values.
pub fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{yaml}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// The one document of `kind` named `name`; panics listing what there is.
pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            panic!(
                "no {kind} {name} in the rendered chart; there is: {:?}",
                kinds_and_names(docs)
            )
        })
}

/// `Kind/name` of every document, in order.
pub fn kinds_and_names(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// What `kubernetes-validate --strict` said about a YAML stream.
#[derive(Debug, Default)]
pub struct Validation {
    /// `kind/name` of the documents that passed.
    pub passed: Vec<String>,
    /// Kinds it has no schema for (custom resources).
    pub no_schema: Vec<String>,
    /// Every other line: failures, fatal errors.
    pub errors: Vec<String>,
    pub exit_ok: bool,
}

/// Validates `yaml` with PyPI's `kubernetes-validate --strict` (unknown fields are errors)
/// against the schemas of Kubernetes `kube_version`. It lives in the venv beside
/// `$SCANJOB_PYTHON`.
pub fn kubernetes_validate(yaml: &str, kube_version: &str, scratch: &Path) -> Validation {
    let python = std::env::var("SCANJOB_PYTHON")
        .unwrap_or_else(|_| panic!("SCANJOB_PYTHON is not set: run the tests with `tests/run`"));
    let tool = Path::new(&python).with_file_name("kubernetes-validate");
    assert!(
        tool.is_file(),
        "{} is missing: run tests/cluster/install.sh",
        tool.display()
    );
    std::fs::create_dir_all(scratch).expect("creating the scratch directory");
    let file = scratch.join("rendered.yaml");
    std::fs::write(&file, yaml).expect("writing the rendered chart");
    let out = Command::new(&tool)
        .args(["--strict", "--kubernetes-version", kube_version])
        .arg(&file)
        .output()
        .expect("running kubernetes-validate");
    let mut v = Validation {
        exit_ok: out.status.success(),
        ..Validation::default()
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let passed = line
            .strip_prefix("INFO ")
            .and_then(|l| l.split(" passed for resource ").nth(1))
            .and_then(|l| l.split(" against version ").next());
        let no_schema = line
            .strip_prefix("WARN ")
            .and_then(|l| l.split("Couldn't find schema for kind ").nth(1))
            .and_then(|l| l.split(" with api version").next());
        match (passed, no_schema) {
            (Some(resource), _) => v.passed.push(resource.to_owned()),
            (_, Some(kind)) => v.no_schema.push(kind.to_owned()),
            _ => v.errors.push(line.to_owned()),
        }
    }
    v
}

/// Writes a kubeconfig for ServiceAccount `sa` of `namespace` to `path`: a token from the
/// TokenRequest API (`kubectl create token`), and the server and CA of the test kubeconfig.
pub fn service_account_kubeconfig(namespace: &str, sa: &str, path: &Path) {
    let view = |field: &str| {
        let jsonpath = format!("jsonpath={{.clusters[0].cluster.{field}}}");
        let (ok, out) = kubectl(
            &["config", "view", "--raw", "--minify", "-o", &jsonpath],
            None,
        );
        assert!(ok, "kubectl config view: {out}");
        out
    };
    let server = view("server");
    let ca_data = view("certificate-authority-data");
    let ca = if ca_data.is_empty() {
        format!(
            "certificate-authority: {}",
            json(&view("certificate-authority"))
        )
    } else {
        format!("certificate-authority-data: {}", json(&ca_data))
    };
    let (ok, token) = kubectl(
        &["create", "token", sa, "-n", namespace, "--duration", "1h"],
        None,
    );
    assert!(ok, "kubectl create token {sa}: {token}");
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    {ca}\n\
         users:\n- name: {sa}\n  user:\n    token: {}\n\
         contexts:\n- name: {sa}\n  context: {{cluster: test, user: {sa}, namespace: {namespace}}}\n\
         current-context: {sa}\n",
        json(&server),
        json(token.trim()),
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("creating the kubeconfig's directory");
    }
    std::fs::write(path, config).expect("writing the ServiceAccount's kubeconfig");
}

/// A YAML (and JSON) string literal.
fn json(s: &str) -> String {
    Value::from(s).to_string()
}

/// `kubectl auth can-i <question>` (e.g. `["patch", "scanjobs", "--subresource=status", "-n",
/// "ns"]`) as the identity in `kubeconfig`.
pub fn can_i(kubeconfig: &Path, question: &[&str]) -> bool {
    let kubeconfig = kubeconfig.to_str().expect("UTF-8 kubeconfig path");
    let mut args = vec!["--kubeconfig", kubeconfig, "auth", "can-i"];
    args.extend_from_slice(question);
    let (_, out) = kubectl(&args, None);
    match out.lines().next().map(str::trim) {
        Some("yes") => true,
        Some(l) if l.starts_with("no") => false,
        _ => panic!("kubectl auth can-i {question:?}: {out}"),
    }
}

/// The operator container's command line and env from `deployment`: `--http-addr` dropped,
/// downward-API `POD_NAME` set to a pod-like name. Panics on env it does not know how to resolve, so new wiring is noticed.
pub fn operator_command(deployment: &Deployment) -> (Vec<String>, Vec<(String, String)>) {
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let container = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .unwrap_or_else(|| panic!("Deployment {name} has no container"));
    let mut args = Vec::new();
    let mut given = container.args.clone().unwrap_or_default().into_iter();
    while let Some(arg) = given.next() {
        if arg == "--http-addr" {
            given.next();
        } else if !arg.starts_with("--http-addr=") {
            args.push(arg);
        }
    }
    let env = container
        .env
        .iter()
        .flatten()
        .map(|e| {
            let field = e
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str());
            let value = match (&e.value, field) {
                (Some(v), _) => v.clone(),
                (None, Some("metadata.name")) => format!("{name}-out-of-cluster"),
                _ => panic!("env {} of Deployment {name}: not resolvable here", e.name),
            };
            (e.name.clone(), value)
        })
        .collect();
    (args, env)
}
