//! The kubelet stand-in against the real API server: environment resolution, termination
//! messages, unknown images, and deletion killing the process.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{DeleteParams, PostParams};
use scanjob_e2e::cluster::{TestNamespace, phase};
use serde_json::json;

const SHELL_IMAGE: &str = "example.invalid/shell:1";

async fn namespace_with_shell(test: &str) -> TestNamespace {
    let mut ns = TestNamespace::create(test).await;
    let mut config = ns.kubelet_config();
    config.images.insert(SHELL_IMAGE, "/bin/sh");
    ns.start_kubelet(config);
    ns
}

fn shell_pod(name: &str, script: &str, extra: serde_json::Value) -> Pod {
    let mut container =
        json!({"name": "main", "image": SHELL_IMAGE, "command": ["sh", "-c", script]});
    if let (Some(c), Some(e)) = (container.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [container]},
    }))
    .expect("Pod literal")
}

fn terminated(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()
}

fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

#[tokio::test(flavor = "multi_thread")]
async fn env_is_resolved_and_the_termination_message_reaches_pod_status() {
    let ns = namespace_with_shell("termmsg").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"}, "stringData": {"token": "s3cr3t"}
    }))
    .unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "settings"}, "data": {"region": "eu-1", "A": "from-env-from"}
    }))
    .unwrap();
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating Secret");
    ns.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .expect("creating ConfigMap");

    // A custom terminationMessagePath: the stand-in maps it to a per-pod file and rewrites it here.
    let script = "printf '%s|%s|%s|%s|%s' \"$TOKEN\" \"$REGION\" \"$CFG_A\" \"$GREETING\" '$(POD_NAME)' \
                  > /var/run/scanjob/message; echo some log line; exit 7";
    let pod = shell_pod(
        "env",
        script,
        json!({
            "terminationMessagePath": "/var/run/scanjob/message",
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
            "env": [
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                {"name": "REGION", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "region"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "GREETING", "value": "hello-$(POD_NAME)-$$(NOT)"},
            ],
        }),
    );
    ns.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .expect("creating Pod");
    let pod = ns
        .wait_pod("env", Duration::from_secs(60), "finished", is_finished)
        .await;

    assert_eq!(phase(&pod), "Failed");
    let t = terminated(&pod).expect("terminated container state");
    assert_eq!(t.exit_code, 7);
    assert_eq!(t.reason.as_deref(), Some("Error"));
    assert_eq!(
        t.message.as_deref(),
        Some("s3cr3t|eu-1|from-env-from|hello-env-$(NOT)|env")
    );
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_failure_falls_back_to_the_log_tail_when_asked() {
    let ns = namespace_with_shell("fallback").await;
    let pod = shell_pod(
        "fallback",
        "echo first; echo 'bad input: no such shard' >&2; exit 3",
        json!({"terminationMessagePolicy": "FallbackToLogsOnError"}),
    );
    ns.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .expect("creating Pod");
    let pod = ns
        .wait_pod("fallback", Duration::from_secs(60), "finished", is_finished)
        .await;
    let t = terminated(&pod).expect("terminated container state");
    assert_eq!(t.exit_code, 3);
    assert_eq!(
        t.message.as_deref(),
        Some("first\nbad input: no such shard")
    );
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_image_fails_the_pod_with_a_reason() {
    let ns = namespace_with_shell("unknownimage").await;
    let mut pod = shell_pod("unknown", "true", json!({}));
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers[0].image = Some("registry.invalid/nothing-here:1".to_owned());
    }
    ns.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .expect("creating Pod");
    let pod = ns
        .wait_pod("unknown", Duration::from_secs(60), "finished", is_finished)
        .await;
    let status = pod.status.clone().unwrap_or_default();
    assert_eq!(phase(&pod), "Failed");
    assert_eq!(status.reason.as_deref(), Some("UnknownImage"));
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or("")
            .contains("registry.invalid/nothing-here:1"),
        "message names the image: {:?}",
        status.message
    );
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_pod_kills_its_process() {
    let ns = namespace_with_shell("delete").await;
    let pod = shell_pod("sleeper", "exec sleep 300", json!({}));
    ns.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .expect("creating Pod");
    let pod = ns
        .wait_pod("sleeper", Duration::from_secs(60), "Running", |p| {
            phase(p) == "Running"
        })
        .await;
    let container_id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.container_id.clone())
        .expect("containerID of a running container");
    let pid = container_id
        .strip_prefix("standin://")
        .expect("standin://<pid>");
    let proc_dir = Path::new("/proc").join(pid);
    assert!(proc_dir.exists(), "process {pid} of a Running pod is alive");

    ns.api::<Pod>()
        .delete("sleeper", &DeleteParams::default().grace_period(1))
        .await
        .expect("deleting Pod");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while proc_dir.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "process {pid} still alive 20 s after its pod was deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ns.delete().await;
}

/// With one slot, two pods run one after the other: their start/end marks never interleave.
#[tokio::test(flavor = "multi_thread")]
async fn slots_bound_how_many_containers_run_at_once() {
    let mut ns = TestNamespace::create("slots").await;
    let mut config = ns.kubelet_config();
    config.images.insert(SHELL_IMAGE, "/bin/sh");
    config.slots = 1;
    ns.start_kubelet(config);
    let marks = ns.kubelet_dir.join("marks");
    std::fs::create_dir_all(&marks).expect("creating marks dir");
    let marks_path = marks.to_string_lossy();
    for name in ["one", "two"] {
        let script =
            format!("echo start >> {marks_path}/log; sleep 1; echo end >> {marks_path}/log");
        let volume = json!({"name": "marks", "hostPath": {"path": marks_path}});
        let mut pod = shell_pod(
            name,
            &script,
            json!({"volumeMounts": [{"name": "marks", "mountPath": marks_path}]}),
        );
        if let Some(spec) = pod.spec.as_mut() {
            spec.volumes = Some(vec![serde_json::from_value(volume).expect("volume")]);
        }
        ns.api::<Pod>()
            .create(&PostParams::default(), &pod)
            .await
            .expect("creating Pod");
    }
    for name in ["one", "two"] {
        let pod = ns
            .wait_pod(name, Duration::from_secs(60), "finished", is_finished)
            .await;
        assert_eq!(phase(&pod), "Succeeded", "{}", ns.describe_pods().await);
    }
    let log = std::fs::read_to_string(marks.join("log")).expect("reading marks");
    assert_eq!(log, "start\nend\nstart\nend\n", "one container at a time");
    ns.delete().await;
}
