//! A ScanJob whose source is an NFS export (`source.nfs`): real pods on the node speak NFSv3 to
//! a real server (nfs-ganesha in a network namespace of the test's own, the test kit's
//! [`Ganesha`]) with no volume and no mount, and the operator starts runs only for what its
//! allow-list (`--nfs-allowed`) grants.
//!
//! Worker pods use the node's network (as every pod of the test cluster does), so they reach the
//! server over its veth pair from the host's address, the only client the export admits. A
//! `secure` export (ganesha's `PrivilegedPort`) answers only pods that connect from a reserved
//! port, which the admin grants and the ScanJob asks for.

use std::path::{Path, PathBuf};
use std::time::Duration;

use scanjob_e2e::operator::{Harness, S3_SECRET, jobs, read_snapshot, small_tree};
use scanjob_operator::crd::{Phase, ScanJob};
use scanjob_testkit::Ganesha;
use serde_json::Value;

/// A ScanJob reading `server:export` as `uid`/`gid`, publishing to `url`.
fn nfs_scanjob(name: &str, server: &str, export: &str, ids: (u32, u32), url: &str) -> String {
    format!(
        "apiVersion: scanjob.dev/v1alpha1\nkind: ScanJob\nmetadata:\n  name: {name}\nspec:\n  source:\n    nfs: {{server: '{server}', export: '{export}', uid: {}, gid: {}}}\n  output:\n    url: {url}\n    secretRef: {{name: {}}}\n  worker: {{hostNetwork: true}}\n",
        ids.0, ids.1, S3_SECRET,
    )
}

/// The operator's allow-list: `namespace` may read `server:export` as uid and gid 0.
fn grant(namespace: &str, server: &str, export: &str) -> String {
    grant_with(namespace, server, export, false)
}

/// [`grant`], and whether the pods may connect from a reserved port.
fn grant_with(namespace: &str, server: &str, export: &str, reserved_port: bool) -> String {
    serde_json::json!([{
        "namespaces": [namespace],
        "server": server,
        "export": export,
        "uids": [0],
        "gids": [0],
        "reservedPort": reserved_port,
    }])
    .to_string()
}

fn degraded(sj: &ScanJob) -> Option<(String, String)> {
    sj.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True")
        .map(|c| (c.reason.clone(), c.message.clone()))
}

/// Waits for ScanJob `name` to be refused by the allow-list with a message starting `why`, and
/// checks that it made no Job and started no run.
async fn refused(h: &Harness, name: &str, why: &str) {
    let sj = h
        .wait(name, Duration::from_secs(60), "Degraded", |sj| {
            degraded(sj).is_some()
        })
        .await;
    let (reason, message) = degraded(&sj).unwrap();
    assert_eq!(reason, "SourceNotAllowed");
    assert!(message.starts_with(why), "{name}: {message}");
    let status = sj.status.as_ref().unwrap();
    assert!(status.current_run.is_none() && status.last_run.is_none());
    assert!(jobs(&h.ns, name).await.is_empty(), "{name} made Jobs");
}

/// Regular files, their apparent bytes and directories below `root` (not counting it), as the
/// file system says.
fn files_bytes_dirs(root: &Path) -> (u64, u64, u64) {
    let (mut files, mut bytes, mut dirs) = (0, 0, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("reading the tree") {
            let entry = entry.expect("a directory entry");
            let meta = entry.metadata().expect("lstat");
            if meta.is_dir() {
                dirs += 1;
                stack.push(entry.path());
            } else if meta.is_file() {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes, dirs)
}

/// Bytes of each of the two planted copies: the only duplicate candidates (the small tree's
/// files are far below `minSize`).
const COPY: usize = 300 << 10;

/// The test's scratch directory (to remove at the end) and in it `tree/`: `dirs` generated
/// directories of `files` small files, and two identical copies of [`COPY`] bytes
/// (`copies/0/data.bin`, `copies/1/data.bin`).
fn tree_with_two_copies(h: &Harness, dirs: usize, files: usize) -> (PathBuf, PathBuf) {
    let scratch = std::env::temp_dir().join(format!("scanjob-e2e-{}", h.ns.name));
    let _ = std::fs::remove_dir_all(&scratch);
    let root = scratch.join("tree");
    small_tree(&root, dirs, files);
    for copy in ["copies/0", "copies/1"] {
        std::fs::create_dir_all(root.join(copy)).unwrap();
        let bytes: Vec<u8> = (0..COPY).map(|i| (i % 251) as u8).collect();
        std::fs::write(root.join(copy).join("data.bin"), bytes).unwrap();
    }
    (scratch, root)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_is_scanned_by_shards_and_hashed_by_pods_over_nfs_exactly_on_two_nights() {
    let mut h = Harness::start("sj-nfs").await;
    let (scratch, root) = tree_with_two_copies(&h, 12, 50);
    let (files, bytes, dirs) = files_bytes_dirs(&root);
    let server = Ganesha::start(&root, "No_Root_Squash", 40);
    let export = Ganesha::export(&root);
    h.restart_operator_with(&["--nfs-allowed", &grant(&h.ns.name, server.ip(), &export)]);
    // Three shards, two pods at once: the plan pod counts the export's top levels (night 1)
    // or reads night 1's snapshot (night 2), and each scan pod is a client of its own.
    h.apply(&format!(
        "{}  shards: 3\n  parallelism: 2\n  duplicates: {{minSize: 65536, hashBytesPerNight: 10000000}}\n",
        nfs_scanjob("filer", server.ip(), &export, (0, 0), &h.url)
    ));

    let sj = h.wait_finished("filer", Phase::Succeeded).await;
    let status = sj.status.as_ref().unwrap();
    let success = status.last_successful_run.as_ref().unwrap();
    assert_eq!(success.files as u64, files, "the night is exact");
    let snap = read_snapshot(&success.snapshot);
    assert_eq!(snap["kinds"]["file"], Value::from(files), "{snap}");
    assert_eq!(snap["kinds"]["dir"], Value::from(dirs), "{snap}");
    assert_eq!(snap["file_bytes"], Value::from(bytes), "{snap}");
    assert_eq!(snap["errors"], Value::Array(vec![]), "{snap}");
    let last = status.last_run.as_ref().unwrap();
    assert_eq!(
        (last.shards.total, last.shards.succeeded),
        (3, 3),
        "three shards read the export"
    );
    // The hash pod read both copies over NFS: their samples, then the whole of each.
    let hashing = &snap["summary"]["duplicates"]["hashing"];
    assert_eq!(hashing["files_hashed"], 2, "{hashing}");
    assert_eq!(hashing["cache_hits"], 0, "{hashing}");
    assert_eq!(hashing["bytes_read"], 2 * 80 * 1024 + 2 * COPY, "{hashing}");
    let confirmed = serde_json::json!([{
        "stage": "confirmed",
        "copies": 2,
        "paths": ["copies/0/data.bin", "copies/1/data.bin"],
    }]);
    assert_eq!(snap["duplicates"], confirmed);
    for job in jobs(&h.ns, "filer").await {
        let pod = job.spec.unwrap().template.spec.unwrap();
        let volumes: Vec<String> = pod
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert!(
            !volumes.iter().any(|v| v == "source"),
            "no pod mounts the export: {volumes:?}"
        );
    }

    // Night 2, after churn on the server's side: a directory removed, 40 files added. The
    // changes are made beside ganesha, on its backing directory, and ganesha caches the
    // directories it listed: it is restarted, as a filer whose every change goes through it
    // would not need to be.
    drop(server);
    std::fs::remove_dir_all(root.join("project-0")).unwrap();
    let new_dir = root.join("arrived-tonight");
    std::fs::create_dir(&new_dir).unwrap();
    for i in 0..40 {
        std::fs::write(new_dir.join(format!("f{i}.dat")), vec![b'x'; i * 10]).unwrap();
    }
    let (files, bytes, dirs) = files_bytes_dirs(&root);
    let server = Ganesha::start(&root, "No_Root_Squash", 40);
    let previous = last.id.clone();
    let sj = h
        .run_again(
            "filer",
            &previous,
            serde_json::json!({"scanjob.dev/run-now": "night-2"}),
        )
        .await;
    let success = sj
        .status
        .as_ref()
        .unwrap()
        .last_successful_run
        .clone()
        .expect("night 2 published");
    assert_ne!(success.id, previous);
    assert_eq!(success.files as u64, files, "night 2 is exact");
    let snap = read_snapshot(&success.snapshot);
    assert_eq!(snap["kinds"]["file"], Value::from(files), "{snap}");
    assert_eq!(snap["kinds"]["dir"], Value::from(dirs), "{snap}");
    assert_eq!(snap["file_bytes"], Value::from(bytes), "{snap}");
    let diff = &snap["summary"]["growth"]["diff"];
    assert_eq!(
        (diff["added"].as_u64(), diff["removed"].as_u64()),
        (Some(41), Some(52)),
        "40 files and their directory added; a project's 50 files and 2 directories removed: {diff}"
    );
    // The fsid is the same for the next night's pod: both copies come from the cache.
    let hashing = &snap["summary"]["duplicates"]["hashing"];
    assert_eq!(hashing["cache_hits"], 2, "{hashing}");
    assert_eq!(hashing["bytes_read"], 0, "{hashing}");
    assert_eq!(snap["duplicates"], confirmed);
    drop(server);
    h.ns.delete().await;
    let _ = std::fs::remove_dir_all(&scratch);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_the_admin_did_not_allow_starts_nothing_and_says_what_is_refused() {
    let mut h = Harness::start("sj-nfs-refused").await;
    // The grant covers uid 0 on /srv/data of 10.99.41.2; one ScanJob asks for uid 1000,
    // another for an export beside it, a third to reach the server at an address not granted.
    h.restart_operator_with(&[
        "--nfs-allowed",
        &grant(&h.ns.name, "10.99.41.2", "/srv/data"),
    ]);
    h.apply(&nfs_scanjob(
        "other-uid",
        "10.99.41.2",
        "/srv/data/projects",
        (1000, 0),
        &h.url,
    ));
    h.apply(&nfs_scanjob(
        "other-export",
        "10.99.41.2",
        "/srv/database",
        (0, 0),
        &h.url,
    ));
    h.apply(
        &nfs_scanjob("other-address", "10.99.41.2", "/srv/data", (0, 0), &h.url)
            .replace("gid: 0}", "gid: 0, addresses: ['10.99.41.3']}"),
    );
    for (name, want) in [
        (
            "other-address",
            "server 10.99.41.3 is not allowed in namespace",
        ),
        (
            "other-uid",
            "uid 1000 is not allowed for 10.99.41.2:/srv/data/projects in namespace",
        ),
        (
            "other-export",
            "export 10.99.41.2:/srv/database is not allowed in namespace",
        ),
    ] {
        refused(&h, name, want).await;
    }

    // Without any allow-list, no export is allowed.
    h.restart_operator_with(&[]);
    h.apply(&nfs_scanjob(
        "no-list",
        "10.99.41.2",
        "/srv/data",
        (0, 0),
        &h.url,
    ));
    refused(&h, "no-list", "no NFS export is allowed in namespace").await;
    h.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secure_export_is_read_from_a_reserved_port_once_the_admin_grants_one() {
    let mut h = Harness::start("sj-nfs-secure").await;
    let (scratch, root) = tree_with_two_copies(&h, 3, 20);
    let (files, bytes, dirs) = files_bytes_dirs(&root);
    let server = Ganesha::start_secure(&root, "No_Root_Squash", 42);
    let export = Ganesha::export(&root);
    // On the node's network a capability is the only way to a reserved port, and Kubernetes
    // gives one to uid 0 only (the AUTH_SYS identity stays source.nfs.uid).
    let yaml = nfs_scanjob("secure", server.ip(), &export, (0, 0), &h.url)
        .replace("gid: 0}", "gid: 0, reservedPort: true}")
        .replace(
            "worker: {hostNetwork: true}",
            "worker: {hostNetwork: true, runAsUser: 0}",
        );
    assert!(
        yaml.contains("reservedPort: true") && yaml.contains("runAsUser: 0"),
        "{yaml}"
    );

    // Granted the export but not a reserved port: refused, nothing started.
    h.restart_operator_with(&[
        "--nfs-allowed",
        &grant_with(&h.ns.name, server.ip(), &export, false),
    ]);
    h.apply(&format!(
        "{yaml}  duplicates: {{minSize: 65536, hashBytesPerNight: 10000000}}\n"
    ));
    let why = format!(
        "a reserved source port is not allowed for {}:{export}",
        server.ip()
    );
    refused(&h, "secure", &why).await;

    // Granted: the scan and hash pods bind a reserved port, and the server answers them.
    h.restart_operator_with(&[
        "--nfs-allowed",
        &grant_with(&h.ns.name, server.ip(), &export, true),
    ]);
    let sj = h.wait_finished("secure", Phase::Succeeded).await;
    let success = sj
        .status
        .as_ref()
        .unwrap()
        .last_successful_run
        .clone()
        .unwrap();
    let snap = read_snapshot(&success.snapshot);
    assert_eq!(snap["kinds"]["file"], Value::from(files), "{snap}");
    assert_eq!(snap["kinds"]["dir"], Value::from(dirs), "{snap}");
    assert_eq!(snap["file_bytes"], Value::from(bytes), "{snap}");
    assert_eq!(snap["errors"], Value::Array(vec![]), "{snap}");
    // The hash pod read both copies over its own reserved-port connections.
    let hashing = &snap["summary"]["duplicates"]["hashing"];
    assert_eq!(hashing["files_hashed"], 2, "{hashing}");
    assert_eq!(
        snap["duplicates"],
        serde_json::json!([{
            "stage": "confirmed",
            "copies": 2,
            "paths": ["copies/0/data.bin", "copies/1/data.bin"],
        }]),
        "{snap}"
    );
    drop(server);
    h.ns.delete().await;
    let _ = std::fs::remove_dir_all(&scratch);
}
