//! The images and the chart as a user gets them: from an OCI registry. The test cluster runs one
//! (CNCF distribution 2.8, Debian's docker-registry, on 127.0.0.1 only), and `tests/cluster/up.sh`
//! published the images and the chart to it with `release/publish.sh`, the release's own
//! recipe. Here `helm install oci://…/charts/scanjob` with the chart's defaults (cluster scope)
//! and only the registry's address, plus what this node needs (the node's network, the API
//! server's address), runs the operator from the pulled image; a ScanJob's pods pull the
//! worker image and publish the night.
//!
//! Cluster scope watches every namespace: this file is its own test binary, so no other test's
//! ScanJobs exist while it runs.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use kube::api::ListParams;
use scanjob_e2e::cluster::TestNamespace;
use scanjob_e2e::helm::helm;
use scanjob_e2e::operator::{
    bucket, create_s3_secret, kubectl_apply, scanjob_yaml, small_tree, wait_scanjob,
};
use scanjob_operator::crd::Phase;

const RELEASE: &str = "scanjob";

/// A field of the chart's Chart.yaml (`version: `, `appVersion: `).
fn chart_field(prefix: &str) -> String {
    let chart = std::fs::read_to_string(scanjob_e2e::helm::chart_dir().join("Chart.yaml"))
        .expect("Chart.yaml");
    chart
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in Chart.yaml"))
        .trim()
        .trim_matches('"')
        .to_owned()
}

fn chart_version() -> String {
    chart_field("version: ")
}

/// The images' tag: the chart's appVersion (the workspace's version, as up.sh publishes them).
fn app_version() -> String {
    chart_field("appVersion: ")
}

/// What the registry serves under `repository:tag`: the manifest's JSON and its digest.
fn manifest(registry: &str, repository: &str, tag: &str) -> (serde_json::Value, String) {
    let (host, namespace) = registry.split_once('/').expect("HOST/NAMESPACE");
    let url = format!("http://{host}/v2/{namespace}/{repository}/manifests/{tag}");
    let out = std::process::Command::new("curl")
        .args(["-sf", "-D", "/dev/stderr", "-H"])
        .arg("Accept: application/vnd.oci.image.index.v1+json")
        .arg(&url)
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "GET {url} failed");
    let headers = String::from_utf8_lossy(&out.stderr);
    let digest = headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("docker-content-digest:")
                .map(|d| d.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no digest in {headers}"));
    (serde_json::from_slice(&out.stdout).expect("JSON"), digest)
}

/// The image every container of `pods` runs, as the node resolved it (`imageID`).
fn image_ids(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .flat_map(|p| p.status.iter())
        .flat_map(|s| s.container_statuses.iter().flatten())
        .map(|c| c.image_id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_from_the_registry_runs_the_operator_in_cluster_scope_on_pulled_images() {
    let registry = std::env::var("SCANJOB_REGISTRY")
        .unwrap_or_else(|_| panic!("SCANJOB_REGISTRY is not set: run the tests with `tests/run`"));
    let api_port = std::env::var("SCANJOB_API_PORT").expect("SCANJOB_API_PORT");
    let ns = TestNamespace::create("registry").await;
    create_s3_secret(&ns).await;
    let scratch = std::env::temp_dir().join(format!("scanjob-e2e-{}", ns.name));
    let _ = std::fs::remove_dir_all(&scratch);
    let root = scratch.join("tree");
    let files = small_tree(&root, 3, 30);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port");
    let values = scratch.join("values.yaml");
    std::fs::write(
        &values,
        format!(
            "image: {{repository: {registry}/scanjob-operator, pullPolicy: Always}}\n\
             worker: {{image: {{repository: {registry}/scanjob}}}}\n\
             operator:\n  hostNetwork: true\n  port: {port}\n  env:\n    - {{name: KUBERNETES_SERVICE_HOST, value: '127.0.0.1'}}\n    - {{name: KUBERNETES_SERVICE_PORT, value: '{api_port}'}}\n"
        ),
    )
    .unwrap();
    let chart = format!("oci://{registry}/charts/scanjob");
    let version = chart_version();
    let (ok, out) = helm(&[
        "install",
        RELEASE,
        &chart,
        "--version",
        &version,
        "--plain-http",
        "--namespace",
        &ns.name,
        "-f",
        values.to_str().unwrap(),
        "--wait",
        "--timeout",
        "120s",
    ]);
    let uninstall = || helm(&["uninstall", RELEASE, "--namespace", &ns.name]);
    if !ok {
        uninstall();
        panic!(
            "helm install {chart} failed:\n{out}\n{}",
            ns.describe_pods().await
        );
    }
    assert!(out.contains("STATUS: deployed"), "{out}");

    // Cluster scope: a ClusterRoleBinding to the release's ServiceAccount.
    let bindings = Api::<ClusterRoleBinding>::all(ns.client.clone())
        .list(&ListParams::default())
        .await
        .expect("listing ClusterRoleBindings");
    assert!(
        bindings.items.iter().any(|b| b
            .subjects
            .iter()
            .flatten()
            .any(|s| s.namespace.as_deref() == Some(ns.name.as_str()))),
        "no cluster-wide binding: the chart's default scope is cluster"
    );

    let url = format!("s3://{}/{}/toc", bucket(), ns.name);
    let (ok, out) = kubectl_apply(&ns, &scanjob_yaml("nightly", &root, &url, "  shards: 2\n"));
    assert!(ok, "{out}");
    let log = scratch.join("operator.log");
    let sj = wait_scanjob(
        &ns,
        &log,
        "nightly",
        Duration::from_secs(180),
        "Succeeded",
        |sj| {
            sj.status
                .as_ref()
                .is_some_and(|s| s.current_run.is_none() && s.phase.is_some())
        },
    )
    .await;
    let status = sj.status.clone().unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{status:?}");
    assert_eq!(
        status.last_successful_run.as_ref().map(|r| r.files),
        Some(files as i64)
    );

    // Every container ran an image the node pulled from the registry.
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default())
        .await
        .expect("listing pods")
        .items;
    let ids = image_ids(&pods);
    let operator = format!("{registry}/scanjob-operator@sha256:");
    let worker = format!("{registry}/scanjob@sha256:");
    assert!(ids.iter().any(|i| i.starts_with(&operator)), "{ids:?}");
    assert!(ids.iter().any(|i| i.starts_with(&worker)), "{ids:?}");
    assert!(
        ids.iter()
            .all(|i| i.starts_with(&operator) || i.starts_with(&worker)),
        "an image not from the registry: {ids:?}"
    );
    // Each tag is an image index over the architectures published (this machine's here, amd64
    // and arm64 in a release), and the node resolved the tag through it.
    for repository in ["scanjob", "scanjob-operator"] {
        let (index, digest) = manifest(&registry, repository, &app_version());
        assert_eq!(
            index["mediaType"], "application/vnd.oci.image.index.v1+json",
            "{index}"
        );
        let arches: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["platform"]["architecture"].as_str().unwrap())
            .collect();
        assert_eq!(
            arches,
            [std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64")]
        );
        let id = format!("{registry}/{repository}@{digest}");
        assert!(ids.contains(&id), "{id} not among {ids:?}");
    }

    uninstall();
    ns.delete().await;
    let _ = std::fs::remove_dir_all(&scratch);
}
