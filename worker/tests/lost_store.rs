//! A store that is not there: a volume that was not mounted (an empty directory where the tree
//! was) and a mount lost in the middle of a scan (its FUSE server killed: ENOTCONN). Neither may
//! publish a night in which the store "disappeared"; the previous snapshot stays the latest.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{SlowFs, latest_manifest, run_ok, scan, scanjob};

/// `files` files of 1000 bytes in `dirs` directories.
fn tree(root: &Path, dirs: usize, files: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            std::fs::write(dir.join(format!("f{f:04}.dat")), [b'x'; 1000]).unwrap();
        }
    }
}

fn latest_run(out: &Path) -> String {
    latest_manifest(out)["run"].as_str().unwrap().to_string()
}

#[test]
fn a_night_whose_store_is_mostly_gone_is_not_published_until_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let out = tmp.path().join("toc");
    tree(&root, 4, 50);
    scan(&root, &out, &["--run", "night1"]);
    assert_eq!(latest_manifest(&out)["files"], 200);

    // The volume is not mounted tonight: its mount point is an empty directory.
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::create_dir(&root).unwrap();
    let refused = scanjob()
        .args(["run", "--run", "night2", "--out"])
        .arg(&out)
        .arg(&root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "permanent: {stderr}");
    assert!(
        stderr.contains("not published: files fell from 200 to 0 (-100.0 %) since snapshot night1")
            && stderr.contains("--max-shrink-percent 100"),
        "{stderr}"
    );
    assert_eq!(
        latest_run(&out),
        "night1",
        "the previous night stays the latest"
    );
    assert!(
        !out.join("snapshots/night2").exists(),
        "nothing of night2 is published"
    );

    // Losing a quarter is within the default 50 %.
    tree(&root, 3, 50);
    scan(&root, &out, &["--run", "night3"]);
    assert_eq!(latest_run(&out), "night3");
    assert_eq!(latest_manifest(&out)["files"], 150);

    // A shrink that is real is published on request.
    std::fs::remove_dir_all(root.join("d000")).unwrap();
    std::fs::remove_dir_all(root.join("d001")).unwrap();
    scan(
        &root,
        &out,
        &["--run", "night4", "--max-shrink-percent", "100"],
    );
    assert_eq!(latest_run(&out), "night4");
    assert_eq!(latest_manifest(&out)["files"], 50);
}

#[test]
fn a_mount_lost_mid_scan_fails_the_run_retryable_and_publishes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let backing = tmp.path().join("backing");
    let mnt = tmp.path().join("mnt");
    let out = tmp.path().join("toc");
    tree(&backing, 40, 250);
    let mut fs = SlowFs::mount(&backing, &mnt, 2000);
    scan(&mnt, &out, &["--run", "night1", "--threads", "16"]);
    assert_eq!(latest_manifest(&out)["files"], 10_000);

    // Night two: the server dies a moment into the scan (10 k entries at 2 ms per request and
    // 16 threads take a few seconds).
    let child = scanjob()
        .args(["run", "--run", "night2", "--threads", "16", "--out"])
        .arg(&out)
        .arg(&mnt)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    fs.kill();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "retryable: {stderr}");
    assert!(
        stderr.contains("the file system at") && stderr.contains("nothing of this shard is kept"),
        "{stderr}"
    );
    assert_eq!(
        latest_run(&out),
        "night1",
        "the previous night stays the latest"
    );
    assert!(!out.join("snapshots/night2").exists());
    drop(fs);

    // The same night, scanned again once the file system is back, is complete.
    let _fs = SlowFs::mount(&backing, &mnt, 0);
    run_ok(
        scanjob()
            .args(["run", "--run", "night2", "--out"])
            .arg(&out)
            .arg(&mnt),
    );
    assert_eq!(latest_run(&out), "night2");
    assert_eq!(latest_manifest(&out)["files"], 10_000);
}
