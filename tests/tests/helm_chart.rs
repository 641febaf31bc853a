//! The Helm chart (charts/scanjob): it lints clean and renders valid Kubernetes objects, and
//! installed into the real cluster its Deployment runs the operator image on the node, becomes
//! Ready through its probes, and with its ServiceAccount's RBAC (and no more) runs a whole scan;
//! upgrades change the Deployment; uninstall keeps ScanJobs and snapshots; bad values die at
//! `helm install` with the schema's message.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::ListParams;
use scanjob_e2e::cluster::{self, TestNamespace};
use scanjob_e2e::helm::{
    can_i, chart_dir, control_plane_version, documents, find, helm, kinds_and_names,
    kubernetes_validate, render, service_account_kubeconfig,
};
use scanjob_e2e::operator::{
    S3_SECRET, bucket, create_s3_secret, install_crd, job_names, kubectl, operator_binary,
    read_snapshot, s3_exists, scanjob_events, small_tree, wait_scanjob, workspace_dir,
};
use scanjob_operator::crd::{Phase, ScanJob};
use serde_json::{Value, json};

/// The release name of every install: its objects are then named plainly `scanjob`.
const RELEASE: &str = "scanjob";

/// `helm VERB RELEASE <chart> --namespace NS -f VALUES [EXTRA…]` (install or upgrade): success,
/// output, and the command line for messages.
fn helm_release(
    verb: &str,
    namespace: &str,
    values: &Path,
    extra: &[&str],
) -> (bool, String, String) {
    let chart = chart_dir();
    let mut args = vec![
        verb,
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        namespace,
        "-f",
        values.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (ok, out) = helm(&args);
    (ok, out, format!("helm {args:?}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn scratch_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("scanjob-e2e-{name}"))
}

fn object_of(value: &Value) -> serde_json::Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// The dotted paths of the leaves of `value` (empty maps and lists are leaves).
fn leaves(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(value, &path, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn the_chart_ships_the_generated_crd_byte_for_byte() {
    let generated = workspace_dir().join("crds/scanjob.yaml");
    let shipped = chart_dir().join("crds/scanjob.yaml");
    assert!(
        read(&generated) == read(&shipped),
        "{} differs from {}: after regenerating the CRD, run `cp crds/scanjob.yaml charts/scanjob/crds/scanjob.yaml`",
        shipped.display(),
        generated.display()
    );
}

/// The spec properties the values schema checks for `scans`, with the bounds it checks, must
/// be the CRD's: a field added to the CRD, or a bound changed, fails here until
/// charts/scanjob/values.schema.json follows.
#[test]
fn the_values_schema_knows_every_scanjob_spec_field_with_the_crds_bounds() {
    let crd: Value = serde_saphyr::from_str(&read(&workspace_dir().join("crds/scanjob.yaml")))
        .expect("the CRD parses");
    let crd_spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let schema: Value =
        serde_json::from_str(&read(&chart_dir().join("values.schema.json"))).expect("JSON");
    assert_eq!(
        schema["properties"]["scans"]["items"]["properties"]["spec"]["$ref"],
        json!("#/$defs/scanJobSpec")
    );
    let values_spec = &schema["$defs"]["scanJobSpec"];

    let mut compared = 0;
    let mut pairs = vec![("spec".to_owned(), crd_spec, values_spec)];
    for nested in ["source", "output", "worker"] {
        pairs.push((
            format!("spec.{nested}"),
            &crd_spec["properties"][nested],
            &values_spec["properties"][nested],
        ));
    }
    for (path, crd_object, values_object) in pairs {
        assert_eq!(
            values_object["additionalProperties"],
            json!(false),
            "{path}: the values schema must refuse unknown keys"
        );
        let names = |o: &Value| -> BTreeSet<String> {
            object_of(&o["properties"]).keys().cloned().collect()
        };
        assert_eq!(
            names(values_object),
            names(crd_object),
            "{path}: the properties in values.schema.json differ from the CRD's"
        );
        let required = |o: &Value| -> BTreeSet<String> {
            o["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        };
        assert_eq!(
            required(values_object),
            required(crd_object),
            "{path}: required"
        );
        for (name, crd_prop) in object_of(&crd_object["properties"]) {
            let values_prop = &values_object["properties"][&name];
            let kind = |p: &Value| -> Value {
                match (&p["type"], &p["enum"]) {
                    (Value::Null, Value::Array(_)) => json!("string"),
                    (t, _) => t.clone(),
                }
            };
            let nested_ref = values_prop["$ref"].is_string();
            if !nested_ref {
                assert_eq!(
                    kind(values_prop),
                    kind(&crd_prop),
                    "{path}.{name}: type differs from the CRD's"
                );
            }
            for bound in ["minimum", "maximum", "maxLength", "maxItems", "enum"] {
                let as_f64 = |v: &Value| v.as_f64().map(Value::from).unwrap_or(v.clone());
                assert_eq!(
                    as_f64(&values_prop[bound]),
                    as_f64(&crd_prop[bound]),
                    "{path}.{name}: {bound} differs from the CRD's"
                );
            }
            compared += 1;
        }
    }
    assert!(compared > 20, "only {compared} properties compared");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_defaults_match_the_operator_and_the_containerfile() {
    let version = control_plane_version(&cluster::client().await).await;
    let docs = documents(&render(RELEASE, "toc", &version, &[]));
    let deployment = find(&docs, "Deployment", RELEASE);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| *a == flag)
            .and_then(|i| args.get(i + 1))
            .copied()
            .unwrap_or_else(|| panic!("{flag} not in the Deployment's args {args:?}"))
    };

    // The operator's own defaults, as `scanjob-operator --help` prints them.
    let help = std::process::Command::new(operator_binary())
        .arg("--help")
        .output()
        .expect("scanjob-operator --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let default_of = |flag: &str| -> String {
        let section = help
            .split(&format!("{flag} <"))
            .nth(1)
            .unwrap_or_else(|| panic!("{flag} not in --help:\n{help}"));
        section
            .split("[default: ")
            .nth(1)
            .and_then(|s| s.split(']').next())
            .unwrap_or_else(|| panic!("{flag} has no default in --help:\n{help}"))
            .to_owned()
    };
    assert_eq!(arg("--worker-image"), default_of("--worker-image"));
    assert_eq!(
        arg("--worker-service-account"),
        default_of("--worker-service-account")
    );
    assert_eq!(arg("--log-format"), default_of("--log-format"));
    let port = default_of("--http-addr")
        .rsplit(':')
        .next()
        .map(str::to_owned)
        .unwrap_or_default();
    assert_eq!(
        container["ports"][0]["containerPort"],
        json!(port.parse::<u16>().unwrap())
    );

    // The chart's images are the two targets of the Containerfile, at the crate version.
    let chart: Value =
        serde_saphyr::from_str(&read(&chart_dir().join("Chart.yaml"))).expect("Chart.yaml");
    assert_eq!(chart["appVersion"], json!(env!("CARGO_PKG_VERSION")));
    let containerfile = read(&workspace_dir().join("Containerfile"));
    let image = container["image"].as_str().expect("image");
    for (image, binary) in [
        (image, "scanjob-operator"),
        (arg("--worker-image"), "scanjob"),
    ] {
        let target = scanjob_e2e::node::image_name(image);
        assert_eq!(
            image,
            format!("ghcr.io/scanjob/{target}:{}", env!("CARGO_PKG_VERSION"))
        );
        let stage = containerfile
            .split(&format!(" AS {target}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no stage {target} in the Containerfile"));
        let stage = stage.split("\nFROM ").next().unwrap_or(stage);
        assert!(
            stage.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{binary}\"]")),
            "stage {target} of the Containerfile must run {binary}:\n{stage}"
        );
    }
}

/// Every rendering helm lints clean, and kubernetes-validate --strict passes every built-in
/// object against the control plane's Kubernetes version; the rendered ScanJobs pass the
/// API server's own validation (OpenAPI and CEL) in a server-side dry run.
#[tokio::test(flavor = "multi_thread")]
async fn helm_lint_is_clean_and_every_rendering_validates_against_the_kubernetes_schemas() {
    let ns = TestNamespace::create("helm-render").await;
    install_crd(&ns.client).await;
    let version = control_plane_version(&ns.client).await;
    let chart = chart_dir();
    let every = chart.join("ci/every-option-values.yaml");
    let every = every.to_str().unwrap();
    let scratch = scratch_dir(&ns.name);

    for values in [vec![], vec!["-f", every]] {
        let mut args = vec!["lint", "--strict", chart.to_str().unwrap()];
        args.extend_from_slice(&values);
        let (ok, out) = helm(&args);
        assert!(ok, "helm {args:?}:\n{out}");
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{out}"
        );
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "helm {args:?}:\n{out}"
        );
    }

    // Every value of values.yaml is set in the every-option file.
    let defaults: Value = serde_saphyr::from_str(&read(&chart.join("values.yaml"))).unwrap();
    let every_values: Value = serde_saphyr::from_str(&read(Path::new(every))).unwrap();
    let (mut want, mut have) = (Vec::new(), Vec::new());
    leaves(&defaults, "", &mut want);
    leaves(&every_values, "", &mut have);
    for key in &want {
        assert!(
            have.iter()
                .any(|h| h == key || h.starts_with(&format!("{key}."))),
            "{key} is not set in ci/every-option-values.yaml"
        );
    }

    // ...and so is every field of a ScanJob spec, in one scan or another.
    let crd: Value = serde_saphyr::from_str(&read(&workspace_dir().join("crds/scanjob.yaml")))
        .expect("the CRD parses");
    let crd_spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let scans = every_values["scans"]
        .as_array()
        .expect("scans in the every-option file");
    for (path, crd_object) in [
        ("", crd_spec),
        ("source", &crd_spec["properties"]["source"]),
        ("output", &crd_spec["properties"]["output"]),
        ("worker", &crd_spec["properties"]["worker"]),
    ] {
        for field in object_of(&crd_object["properties"]).keys() {
            let set = scans.iter().any(|scan| {
                let object = if path.is_empty() {
                    &scan["spec"]
                } else {
                    &scan["spec"][path]
                };
                !object[field].is_null()
            });
            assert!(
                set,
                "spec.{path}.{field} is not set by any scan of ci/every-option-values.yaml"
            );
        }
    }

    let renderings = [
        ("defaults", vec!["--include-crds"]),
        ("every option", vec!["--include-crds", "-f", every]),
        (
            "watch scope namespace",
            vec![
                "--set",
                "watch.scope=namespace",
                "--set",
                "watch.namespace=research",
            ],
        ),
    ];
    for (what, args) in renderings {
        let yaml = render(RELEASE, &ns.name, &version, &args);
        let docs = documents(&yaml);
        let custom: Vec<&Value> = docs
            .iter()
            .filter(|d| {
                d["apiVersion"].as_str().is_some_and(|a| {
                    a.starts_with("scanjob.dev/") || a.starts_with("monitoring.coreos.com/")
                })
            })
            .collect();
        let report = kubernetes_validate(&yaml, &version, &scratch.join(what.replace(' ', "-")));
        assert!(
            report.exit_ok && report.errors.is_empty(),
            "{what}: kubernetes-validate --strict -k {version} refused:\n{}",
            report.errors.join("\n")
        );
        assert_eq!(
            report.passed.len(),
            docs.len() - custom.len(),
            "{what}: every built-in object is validated: passed {:?} of {:?}",
            report.passed,
            kinds_and_names(&docs)
        );
        let unknown: BTreeSet<&str> = report.no_schema.iter().map(String::as_str).collect();
        assert!(
            unknown.is_subset(&BTreeSet::from(["ScanJob", "ServiceMonitor"])),
            "{what}: no schema for {unknown:?}"
        );

        // ScanJobs: the API server's validation, in the namespace they would land in.
        for sj in custom.iter().filter(|d| d["kind"] == "ScanJob") {
            let mut sj = (*sj).clone();
            sj["metadata"]["namespace"] = json!(ns.name);
            let (ok, out) = kubectl(
                &["apply", "--dry-run=server", "-f", "-"],
                Some(&sj.to_string()),
            );
            assert!(
                ok,
                "{what}: the API server refuses a rendered ScanJob:\n{out}\n{sj:#}"
            );
            assert!(out.contains("(server dry run)"), "{out}");
        }

        // A ServiceMonitor (its CRD is not in the test cluster) must select the metrics
        // Service and its port.
        for sm in custom.iter().filter(|d| d["kind"] == "ServiceMonitor") {
            let service = docs
                .iter()
                .find(|d| d["kind"] == "Service")
                .expect("a metrics Service");
            let labels = object_of(&service["metadata"]["labels"]);
            for (k, v) in object_of(&sm["spec"]["selector"]["matchLabels"]) {
                assert_eq!(
                    labels.get(&k),
                    Some(&v),
                    "{what}: ServiceMonitor selector {k}"
                );
            }
            assert_eq!(
                sm["spec"]["namespaceSelector"]["matchNames"],
                json!([service["metadata"]["namespace"]])
            );
            assert_eq!(
                sm["spec"]["endpoints"][0]["port"],
                service["spec"]["ports"][0]["name"]
            );
            assert_eq!(sm["spec"]["endpoints"][0]["path"], json!("/metrics"));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    ns.delete().await;
}

/// (apiGroup, resource) → verbs of one Role or ClusterRole.
fn rules(role: &Value) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rule in role["rules"].as_array().expect("rules") {
        for group in rule["apiGroups"].as_array().expect("apiGroups") {
            for resource in rule["resources"].as_array().expect("resources") {
                out.entry((
                    group.as_str().unwrap().to_owned(),
                    resource.as_str().unwrap().to_owned(),
                ))
                .or_default()
                .extend(
                    rule["verbs"]
                        .as_array()
                        .expect("verbs")
                        .iter()
                        .map(|v| v.as_str().unwrap().to_owned()),
                );
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rendered_operator_is_hardened_and_its_rbac_is_exactly_what_it_uses() {
    let version = control_plane_version(&cluster::client().await).await;
    let docs = documents(&render(RELEASE, "toc", &version, &[]));
    let deployment = find(&docs, "Deployment", RELEASE);
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], json!(1));
    assert_eq!(spec["strategy"]["type"], json!("Recreate"));
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], json!(RELEASE));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], json!(true));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        json!("RuntimeDefault")
    );
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], json!(true));
    assert_eq!(security["allowPrivilegeEscalation"], json!(false));
    assert_eq!(security["runAsNonRoot"], json!(true));
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"],
        json!("/livez")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        json!("/readyz")
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], json!("http"));
    assert_eq!(container["ports"][0]["name"], json!("http"));
    let pod_name = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "POD_NAME")
        .expect("POD_NAME in env");
    assert_eq!(
        pod_name["valueFrom"]["fieldRef"]["fieldPath"],
        json!("metadata.name")
    );
    let worker = find(&docs, "ServiceAccount", "scanjob-worker");
    assert_eq!(worker["automountServiceAccountToken"], json!(false));
    assert!(
        !docs.iter().any(|d| d["kind"]
            .as_str()
            .is_some_and(|k| k.ends_with("RoleBinding"))
            && d["subjects"][0]["name"] == "scanjob-worker"),
        "the worker ServiceAccount is bound to nothing"
    );

    let expected: BTreeMap<(String, String), BTreeSet<String>> = [
        ("scanjob.dev", "scanjobs", &["get", "list", "watch"][..]),
        ("scanjob.dev", "scanjobs/status", &["patch"]),
        (
            "batch",
            "jobs",
            &["create", "get", "list", "watch", "patch", "delete"],
        ),
        ("", "pods", &["get", "list", "watch"]),
        ("events.k8s.io", "events", &["create", "patch"]),
    ]
    .into_iter()
    .map(|(g, r, verbs)| {
        (
            (g.to_owned(), r.to_owned()),
            verbs.iter().map(|v| (*v).to_owned()).collect(),
        )
    })
    .collect();

    // Cluster scope (the default): a ClusterRole, no --namespace.
    let role = find(&docs, "ClusterRole", RELEASE);
    assert_eq!(rules(role), expected);
    let binding = find(&docs, "ClusterRoleBinding", RELEASE);
    assert_eq!(binding["roleRef"]["name"], json!(RELEASE));
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": "toc"}])
    );
    assert!(
        !container["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--namespace"))
    );
    // Every rule says why it is there, in a comment right above it.
    let rbac_text = read(&chart_dir().join("templates/rbac.yaml"));
    let lines: Vec<&str> = rbac_text.lines().collect();
    let mut commented = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("- apiGroups:") {
            assert!(
                i > 0 && lines[i - 1].trim_start().starts_with('#'),
                "templates/rbac.yaml line {}: a rule without a comment giving its reason",
                i + 1
            );
            commented += 1;
        }
    }
    assert_eq!(commented, expected.len());

    // Namespace scope: a Role and RoleBinding in the watched namespace, nothing cluster-wide.
    let docs = documents(&render(
        RELEASE,
        "toc",
        &version,
        &[
            "--set",
            "watch.scope=namespace",
            "--set",
            "watch.namespace=research",
        ],
    ));
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "ClusterRole" || d["kind"] == "ClusterRoleBinding"),
        "{:?}",
        kinds_and_names(&docs)
    );
    let role = find(&docs, "Role", RELEASE);
    assert_eq!(role["metadata"]["namespace"], json!("research"));
    assert_eq!(rules(role), expected);
    let binding = find(&docs, "RoleBinding", RELEASE);
    assert_eq!(binding["metadata"]["namespace"], json!("research"));
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": "toc"}])
    );
    let worker = find(&docs, "ServiceAccount", "scanjob-worker");
    assert_eq!(worker["metadata"]["namespace"], json!("research"));
    let args =
        &find(&docs, "Deployment", RELEASE)["spec"]["template"]["spec"]["containers"][0]["args"];
    let args: Vec<&str> = args
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let at = args
        .iter()
        .position(|a| *a == "--namespace")
        .expect("--namespace");
    assert_eq!(args[at + 1], "research");

    // ScanJobs of `scans` survive uninstall unless keepScans is false.
    let scan = "scans[0].name=a,scans[0].spec.source.volume.hostPath.path=/a,scans[0].spec.output.url=s3://b/a";
    for (keep, policy) in [("true", json!("keep")), ("false", Value::Null)] {
        let docs = documents(&render(
            RELEASE,
            "toc",
            &version,
            &["--set", scan, "--set", &format!("keepScans={keep}")],
        ));
        let sj = find(&docs, "ScanJob", "a");
        assert_eq!(
            sj["metadata"]["annotations"]["helm.sh/resource-policy"], policy,
            "keepScans={keep}"
        );
        assert_eq!(sj["metadata"]["namespace"], json!("toc"));
    }
}

/// A test namespace with the chart installed in watch scope namespace, the S3 Secret, a small
/// tree and `scans:` describing a ScanJob `nightly` over it. The node runs the chart's operator
/// pod from the operator image, and the worker pods it creates.
struct Installed {
    ns: TestNamespace,
    scratch: PathBuf,
    url: String,
    files: usize,
}

/// Values for the test node: the API server and S3 listen on 127.0.0.1 only, so the operator
/// and worker pods use the node's network, the operator reaches the API server there rather
/// than through the `kubernetes` Service (there is no service proxy), and it serves its
/// endpoints on a port of its own (tests install in parallel on one node).
fn values_yaml(root: &Path, url: &str, shards: u32) -> String {
    let api_port = std::env::var("SCANJOB_API_PORT")
        .unwrap_or_else(|_| panic!("SCANJOB_API_PORT is not set: run the tests with `tests/run`"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port");
    format!(
        "watch:\n  scope: namespace\noperator:\n  hostNetwork: true\n  port: {port}\n  env:\n    - {{name: KUBERNETES_SERVICE_HOST, value: '127.0.0.1'}}\n    - {{name: KUBERNETES_SERVICE_PORT, value: '{api_port}'}}\nscans:\n  - name: nightly\n    spec:\n      source:\n        volume:\n          hostPath: {{path: '{}', type: Directory}}\n      output:\n        url: {url}\n        secretRef: {{name: {S3_SECRET}}}\n      worker: {{hostNetwork: true}}\n      shards: {shards}\n      parallelism: 2\n      successfulRunsHistoryLimit: 0\n",
        root.display()
    )
}

async fn install(test: &str) -> Installed {
    let ns = TestNamespace::create(test).await;
    create_s3_secret(&ns).await;
    let scratch = scratch_dir(&ns.name);
    let root = scratch.join("tree");
    let files = small_tree(&root, 3, 40);
    let url = format!("s3://{}/{}/toc", bucket(), ns.name);
    let values = scratch.join("values.yaml");
    std::fs::write(&values, values_yaml(&root, &url, 2)).expect("writing values");

    let (ok, out, command) = helm_release("install", &ns.name, &values, &[]);
    assert!(ok, "{command}:\n{out}");
    assert!(out.contains("STATUS: deployed"), "{out}");
    Installed {
        ns,
        scratch,
        url,
        files,
    }
}

impl Installed {
    async fn deployment(&self) -> Deployment {
        self.ns
            .api::<Deployment>()
            .get(RELEASE)
            .await
            .expect("the chart's Deployment")
    }

    /// A kubeconfig with a fresh token of the chart's operator ServiceAccount.
    fn operator_kubeconfig(&self) -> PathBuf {
        let path = self.scratch.join("operator.kubeconfig");
        service_account_kubeconfig(&self.ns.name, RELEASE, &path);
        path
    }

    /// Waits until the operator pod of Deployment generation `generation` or later is Ready
    /// (its readiness probe passed: the ScanJob watch synced); returns the pod.
    async fn wait_operator_ready(&self, generation: i64) -> Pod {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let deployment = self.deployment().await;
            let status = deployment.status.clone().unwrap_or_default();
            let current = status.observed_generation.unwrap_or(0) >= generation
                && status.updated_replicas == Some(1)
                && status.ready_replicas == Some(1)
                && status.replicas == Some(1);
            if current {
                let pods = self
                    .ns
                    .api::<Pod>()
                    .list(&ListParams::default().labels("app.kubernetes.io/component=operator"))
                    .await
                    .expect("listing operator pods")
                    .items;
                let ready = pods.into_iter().find(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|cs| {
                                cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            })
                });
                if let Some(pod) = ready {
                    return pod;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator Deployment is not Ready after 120 s: {status:?}\n  pods:\n  {}\n{}",
                self.ns.describe_pods().await,
                self.operator_logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The operator container's log (`kubectl logs` of the Deployment's pod).
    fn operator_logs(&self) -> String {
        let (_, out) = kubectl(
            &[
                "logs",
                "-n",
                &self.ns.name,
                &format!("deployment/{RELEASE}"),
            ],
            None,
        );
        out
    }

    /// Waits for the run of `nightly` to succeed; returns its manifest URL.
    async fn wait_published(&self) -> String {
        let log = self.scratch.join("operator.log");
        let _ = std::fs::write(&log, self.operator_logs());
        let sj = wait_scanjob(
            &self.ns,
            &log,
            "nightly",
            Duration::from_secs(120),
            "Succeeded",
            |sj| {
                sj.status
                    .as_ref()
                    .is_some_and(|s| s.current_run.is_none() && s.phase == Some(Phase::Succeeded))
            },
        )
        .await;
        let success = sj
            .status
            .and_then(|s| s.last_successful_run)
            .expect("lastSuccessfulRun");
        assert_eq!(success.files, self.files as i64);
        success.snapshot
    }

    async fn delete(self) {
        let _ = helm(&["uninstall", RELEASE, "--namespace", &self.ns.name]);
        self.ns.delete().await;
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_charts_service_account_may_run_a_whole_scan_and_nothing_more() {
    let t = install("helm-rbac").await;
    let ns = &t.ns;

    // What the chart made, watching one namespace: a Role, no cluster-wide binding.
    ns.api::<Role>()
        .get(RELEASE)
        .await
        .expect("the operator's Role");
    let binding = ns
        .api::<RoleBinding>()
        .get(RELEASE)
        .await
        .expect("its RoleBinding");
    assert_eq!(binding.role_ref.kind, "Role");
    let cluster_bindings = Api::<ClusterRoleBinding>::all(ns.client.clone())
        .list(&ListParams::default())
        .await
        .expect("listing ClusterRoleBindings");
    let ours = cluster_bindings.items.iter().find(|b| {
        b.subjects
            .iter()
            .flatten()
            .any(|s| s.namespace.as_deref() == Some(ns.name.as_str()))
    });
    assert!(
        ours.is_none(),
        "a cluster-wide binding into {}: {ours:?}",
        ns.name
    );
    let worker = ns
        .api::<ServiceAccount>()
        .get("scanjob-worker")
        .await
        .expect("the worker ServiceAccount");
    assert_eq!(worker.automount_service_account_token, Some(false));

    // The operator's identity, from the TokenRequest API.
    let kubeconfig = t.operator_kubeconfig();
    let config = kubeconfig.to_str().unwrap();
    let (ok, out) = kubectl(
        &["--kubeconfig", config, "get", "secrets", "-n", &ns.name],
        None,
    );
    assert!(!ok, "the operator may read Secrets:\n{out}");
    assert!(
        out.contains("Forbidden")
            && out.contains(&format!(
                "system:serviceaccount:{}:{RELEASE}\" cannot list resource \"secrets\"",
                ns.name
            )),
        "{out}"
    );
    let n = ns.name.as_str();
    let forbidden: &[&[&str]] = &[
        &["get", "secrets", "-n", n],
        &["create", "pods", "-n", n],
        &["delete", "pods", "-n", n],
        &["create", "scanjobs.scanjob.dev", "-n", n],
        &["patch", "scanjobs.scanjob.dev", "-n", n],
        &["delete", "scanjobs.scanjob.dev", "-n", n],
        &["update", "jobs.batch", "-n", n],
        &["create", "configmaps", "-n", n],
        &["patch", "serviceaccounts", "-n", n],
        &["create", "serviceaccounts/token", "-n", n],
        &["list", "jobs.batch", "-n", "default"],
        &["list", "scanjobs.scanjob.dev", "-n", "default"],
        &["list", "scanjobs.scanjob.dev", "--all-namespaces"],
    ];
    for question in forbidden {
        assert!(
            !can_i(&kubeconfig, question),
            "the operator's ServiceAccount may {question:?}"
        );
    }

    // The Deployment's pod runs the operator image with only those credentials.
    let pod = t.wait_operator_ready(1).await;
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some(RELEASE));
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some(scanjob_e2e::node::OPERATOR_IMAGE)
    );
    let manifest = t.wait_published().await;
    let snap = read_snapshot(&manifest);
    assert_eq!(snap["kinds"]["file"], json!(t.files), "{snap}");
    let reasons: Vec<String> = scanjob_events(ns, "nightly")
        .await
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert!(
        reasons.contains(&"RunStarted".to_owned()) && reasons.contains(&"RunSucceeded".to_owned()),
        "Events written with the ServiceAccount: {reasons:?}"
    );
    // successfulRunsHistoryLimit 0: the operator deletes the run's Jobs once it is published.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !job_names(ns, "nightly").await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the finished run's Jobs are not deleted: {:?}\n{}",
            job_names(ns, "nightly").await,
            t.operator_logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = t.operator_logs();
    assert!(
        !log.to_lowercase().contains("forbidden") && !log.contains("reconcile failed"),
        "the operator was refused something:\n{log}"
    );
    t.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_upgrade_changes_the_deployment_and_uninstall_keeps_scanjobs_and_snapshots() {
    let t = install("helm-upgrade").await;
    let ns = &t.ns;
    let before = t.deployment().await;
    let first = t.wait_operator_ready(1).await;
    let manifest = t.wait_published().await;

    // Upgrade: text logs, another worker image, three shards.
    let values2 = t.scratch.join("values-2.yaml");
    let root = t.scratch.join("tree");
    std::fs::write(&values2, values_yaml(&root, &t.url, 3)).unwrap();
    let (ok, out, command) = helm_release(
        "upgrade",
        &ns.name,
        &values2,
        &[
            "--set",
            "operator.logFormat=text",
            "--set",
            "worker.image.tag=0.2.0",
        ],
    );
    assert!(ok, "{command}:\n{out}");
    assert!(out.contains("REVISION: 2"), "{out}");
    let after = t.deployment().await;
    assert!(
        after.metadata.generation > before.metadata.generation,
        "the Deployment did not change"
    );
    let (args_before, _) = scanjob_e2e::helm::operator_command(&before);
    let (args_after, _) = scanjob_e2e::helm::operator_command(&after);
    let value = |args: &[String], flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args[i + 1].clone())
            .unwrap_or_default()
    };
    assert_eq!(value(&args_before, "--log-format"), "json");
    assert_eq!(value(&args_after, "--log-format"), "text");
    assert_eq!(
        value(&args_after, "--worker-image"),
        "ghcr.io/scanjob/scanjob:0.2.0"
    );
    let sj = ns.api::<ScanJob>().get("nightly").await.unwrap();
    assert_eq!(
        sj.spec.shards, 3,
        "scans: in the new values reach the ScanJob"
    );
    // The pod of the new Deployment replaced the old one and logs text, not JSON.
    let second = t
        .wait_operator_ready(after.metadata.generation.unwrap_or(2))
        .await;
    assert_ne!(
        second.metadata.uid, first.metadata.uid,
        "a new operator pod"
    );
    let (_, log) = kubectl(
        &[
            "logs",
            "-n",
            &ns.name,
            second.metadata.name.as_deref().unwrap(),
        ],
        None,
    );
    let first_line = log.lines().next().unwrap_or_default();
    assert!(
        !first_line.is_empty()
            && !first_line.starts_with('{')
            && first_line.contains("scanjob-operator starting"),
        "not a text log line: {first_line:?}"
    );

    // Uninstall: the release's objects go; the CRD, the ScanJob and the snapshot stay.
    let (ok, out) = helm(&["uninstall", RELEASE, "--namespace", &ns.name]);
    assert!(ok, "helm uninstall:\n{out}");
    assert!(
        out.contains("These resources were kept due to the resource policy:")
            && out.contains("[ScanJob] nightly"),
        "{out}"
    );
    let (ok, out) = helm(&["list", "--namespace", &ns.name, "--all", "-q"]);
    assert!(ok && out.trim().is_empty(), "releases left: {out}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = [
            ns.api::<Deployment>()
                .get_opt(RELEASE)
                .await
                .unwrap()
                .is_some(),
            ns.api::<ServiceAccount>()
                .get_opt(RELEASE)
                .await
                .unwrap()
                .is_some(),
            ns.api::<ServiceAccount>()
                .get_opt("scanjob-worker")
                .await
                .unwrap()
                .is_some(),
            ns.api::<Role>().get_opt(RELEASE).await.unwrap().is_some(),
            ns.api::<RoleBinding>()
                .get_opt(RELEASE)
                .await
                .unwrap()
                .is_some(),
            ns.api::<Service>()
                .get_opt(&format!("{RELEASE}-metrics"))
                .await
                .unwrap()
                .is_some(),
        ];
        if left.iter().all(|l| !l) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "left after uninstall (Deployment, ServiceAccount, worker ServiceAccount, Role, RoleBinding, Service): {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kept = ns
        .api::<ScanJob>()
        .get("nightly")
        .await
        .expect("the ScanJob is kept");
    let kept_uid = kept.metadata.uid.clone();
    assert_eq!(
        kept.status
            .and_then(|s| s.last_successful_run)
            .map(|r| r.snapshot),
        Some(manifest.clone())
    );
    Api::<CustomResourceDefinition>::all(ns.client.clone())
        .get("scanjobs.scanjob.dev")
        .await
        .expect("the CRD is kept");
    assert!(s3_exists(&manifest), "the snapshot {manifest} is gone");
    assert!(s3_exists(&format!("{}/latest.json", t.url)));
    ns.api::<Secret>()
        .get(S3_SECRET)
        .await
        .expect("the user's Secret is untouched");

    // Installing again adopts the kept ScanJob, with its status, instead of failing on it.
    let (ok, out, _) = helm_release("install", &ns.name, &values2, &[]);
    assert!(ok, "helm install after uninstall:\n{out}");
    let again = ns.api::<ScanJob>().get("nightly").await.unwrap();
    assert_eq!(again.metadata.uid, kept_uid, "the ScanJob was recreated");
    assert_eq!(
        again
            .status
            .and_then(|s| s.last_successful_run)
            .map(|r| r.snapshot),
        Some(manifest)
    );

    // A scan dropped from `scans:` is kept, not deleted.
    let no_scans = t.scratch.join("values-no-scans.yaml");
    std::fs::write(&no_scans, "watch:\n  scope: namespace\nscans: []\n").unwrap();
    let (ok, out, command) = helm_release("upgrade", &ns.name, &no_scans, &[]);
    assert!(ok, "{command}:\n{out}");
    assert!(out.contains("REVISION: 2"), "{out}");
    let kept = ns.api::<ScanJob>().get_opt("nightly").await.unwrap();
    assert_eq!(
        kept.map(|sj| sj.spec.shards),
        Some(3),
        "the ScanJob dropped from scans: is gone"
    );
    t.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_values_are_refused_by_helm_install_with_the_schemas_message() {
    let ns = TestNamespace::create("helm-bad-values").await;
    let scratch = scratch_dir(&ns.name);
    std::fs::create_dir_all(&scratch).unwrap();
    let scan = |extra: &str| {
        format!(
            "scans:\n  - name: nightly\n    spec:\n      source: {{volume: {{nfs: {{server: nfs.example.com, path: /data}}}}}}\n      output: {{url: 's3://toc/data', secretRef: {{name: toc-s3}}}}\n{extra}"
        )
    };
    let cases = [
        (
            "negative shards",
            scan("      shards: -1\n"),
            "- at '/scans/0/spec/shards': minimum: got -1, want 1",
        ),
        (
            "an unknown key",
            "operator:\n  logFromat: text\n".to_owned(),
            "- at '/operator': additional properties 'logFromat' not allowed",
        ),
        (
            "an unknown ScanJob field",
            scan("      shard: 4\n"),
            "- at '/scans/0/spec': additional properties 'shard' not allowed",
        ),
        (
            "a wrong type",
            "operator:\n  port: \"8080\"\n".to_owned(),
            "- at '/operator/port': got string, want integer",
        ),
        (
            "a value outside the enum",
            "watch:\n  scope: everywhere\n".to_owned(),
            "- at '/watch/scope': value must be one of 'cluster', 'namespace'",
        ),
    ];
    for (what, values, message) in cases {
        let file = scratch.join(format!("{}.yaml", what.replace(' ', "-")));
        std::fs::write(&file, &values).unwrap();
        let (ok, out, _) = helm_release("install", &ns.name, &file, &[]);
        assert!(!ok, "{what}: helm install accepted\n{values}\n{out}");
        assert!(
            out.contains("values don't meet the specifications of the schema(s)")
                && out.contains(message),
            "{what}: helm install did not refuse with {message:?}:\n{out}"
        );
    }
    let (ok, out) = helm(&["list", "--namespace", &ns.name, "--all", "-q"]);
    assert!(ok && out.trim().is_empty(), "releases left: {out}");
    assert!(
        ns.api::<Deployment>()
            .get_opt(RELEASE)
            .await
            .unwrap()
            .is_none(),
        "a refused install created the Deployment"
    );
    let _ = std::fs::remove_dir_all(&scratch);
    ns.delete().await;
}
