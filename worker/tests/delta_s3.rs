//! The store's promise on the real S3 server (SeaweedFS, started by `tests/run`): the merge's
//! check of conditional creates passes, so a night publishes, and a second create of a log
//! version that exists is refused by the server, which is what keeps two racing merges from
//! both committing one version.

mod common;

use std::process::Command;

use common::*;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

#[tokio::test]
async fn on_s3_a_second_create_of_one_log_version_is_refused() {
    let bucket = std::env::var("SCANJOB_TEST_BUCKET").unwrap_or_else(|_| {
        panic!("SCANJOB_TEST_BUCKET and AWS_* are not set: run the tests with `tests/run`, which starts SeaweedFS")
    });
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir_all(root.join("a")).unwrap();
    for i in 0..10 {
        std::fs::write(root.join(format!("a/f{i}")), vec![0u8; i]).unwrap();
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("delta-promise-{}-{stamp}", std::process::id());
    let url = format!("s3://{bucket}/{prefix}");
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_scanjob"))
            .arg("run")
            .arg(&root)
            .args(["--out", &url, "--run", "r1"]),
    );

    let store = AmazonS3Builder::from_env()
        .with_bucket_name(&bucket)
        .build()
        .unwrap();
    let entry = ObjectPath::from(format!("{prefix}/toc/_delta_log/00000000000000000000.json"));
    let before = store.get(&entry).await.unwrap().bytes().await.unwrap();
    let again = store
        .put_opts(
            &entry,
            PutPayload::from_static(b"{\"commitInfo\":{}}\n"),
            PutOptions::from(PutMode::Create),
        )
        .await;
    assert!(
        matches!(
            again,
            Err(object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. })
        ),
        "the server refuses a second create: {again:?}"
    );
    let after = store.get(&entry).await.unwrap().bytes().await.unwrap();
    assert_eq!(before, after, "version 0 is the one the merge wrote");
    // And the probe of the merge's check is gone.
    let listed = store
        .list_with_delimiter(Some(&ObjectPath::from(prefix.as_str())))
        .await
        .unwrap();
    assert!(
        listed
            .objects
            .iter()
            .all(|o| !o.location.as_ref().contains("_put_if_absent_probe")),
        "{listed:?}"
    );
}

/// A store configured without conditional creates (`AWS_CONDITIONAL_PUT=disabled`) would let
/// two merges both commit one version: the merge refuses it before it commits anything, and
/// says what to configure.
#[test]
fn a_store_without_conditional_creates_is_refused_before_anything_is_committed() {
    let bucket = std::env::var("SCANJOB_TEST_BUCKET").unwrap_or_else(|_| {
        panic!("SCANJOB_TEST_BUCKET and AWS_* are not set: run the tests with `tests/run`, which starts SeaweedFS")
    });
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir_all(root.join("a")).unwrap();
    std::fs::write(root.join("a/f"), b"x").unwrap();
    let prefix = format!("delta-no-promise-{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_scanjob"))
        .arg("run")
        .arg(&root)
        .args(["--out", &format!("s3://{bucket}/{prefix}"), "--run", "r1"])
        .env("AWS_CONDITIONAL_PUT", "disabled")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("conditional creates") && stderr.contains("AWS_CONDITIONAL_PUT"),
        "{stderr}"
    );
    // Nothing of the night is a table version.
    let listing = Command::new(env!("CARGO_BIN_EXE_scanjob"))
        .arg("run")
        .arg(&root)
        .args(["--out", &format!("s3://{bucket}/{prefix}"), "--run", "r2"])
        .output()
        .unwrap();
    assert!(listing.status.success(), "{listing:?}");
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(&bucket)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let first = runtime.block_on(async {
        let entry = ObjectPath::from(format!("{prefix}/toc/_delta_log/00000000000000000000.json"));
        store.get(&entry).await.unwrap().bytes().await.unwrap()
    });
    let first = String::from_utf8_lossy(&first);
    assert!(
        first.contains("\"scanjob.run\":\"r2\""),
        "version 0 is the night run with a store that honours creates: {first}"
    );
}
