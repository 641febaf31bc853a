//! The merge's scratch disk fills while it spills: a tmpfs of a fixed size as its temporary
//! directory, too small for what a tight memory pool makes it spill. The merge fails with an
//! error that names the full directory, exit 1 (retryable), and publishes nothing; the previous
//! night stays the latest. The same merge retried with room publishes the whole night.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A tmpfs of `size` mounted at `dir` for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=1777"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a {size} tmpfs at {} (the tests run as root)",
            dir.display()
        );
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Merge memory small enough that the history join and the rollups of this tree spill.
const MERGE_MEMORY: &str = "20000000";

#[test]
fn a_full_scratch_disk_fails_the_merge_retryable_and_a_retry_with_room_publishes() {
    let tmp = tempfile::tempdir().unwrap();
    let Tree {
        root,
        summary: truth,
    } = mktree(tmp.path(), &["--files", "60000", "--seed", "11"]);
    let out = tmp.path().join("toc");
    scan(&root, &out, &["--run", "night1"]);
    let rows = find_paths(&root).len();
    assert_eq!(latest_manifest(&out)["entries"], rows);
    assert_eq!(latest_manifest(&out)["files"], truth["files"]);

    run_ok(
        scanjob()
            .arg("plan")
            .arg(&root)
            .args(["--shards", "2", "--run", "night2", "--out"])
            .arg(&out),
    );
    for index in ["0", "1"] {
        run_ok(
            scanjob()
                .args(["scan", "--index", index, "--plan"])
                .arg(out.join("runs/night2/plan.json")),
        );
    }
    let merge = |scratch: &Path| {
        scanjob()
            .arg("merge")
            .arg("--run")
            .arg(out.join("runs/night2"))
            .args(["--merge-memory", MERGE_MEMORY])
            .env("TMPDIR", scratch)
            .env("RUST_LOG", "info")
            .output()
            .unwrap()
    };

    let small = tmp.path().join("small-scratch");
    let tmpfs = Tmpfs::mount(&small, "256k");
    let failed = merge(&small);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "retryable: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let said = format!("the scratch directory {} is full", small.display());
    assert!(
        stderr.contains(&said),
        "the error names the full disk: {stderr}"
    );
    assert_eq!(
        latest_manifest(&out)["run"],
        "night1",
        "the previous night stays the latest"
    );
    assert!(!out.join("snapshots/night2/manifest.json").exists());
    drop(tmpfs);

    // Retried with room, the same merge spills and publishes the whole night, history carried.
    let roomy = tmp.path().join("roomy-scratch");
    let _tmpfs = Tmpfs::mount(&roomy, "512m");
    let done = merge(&roomy);
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stderr}");
    let spilled = stderr
        .lines()
        .find(|l| l.contains("insights done"))
        .and_then(|l| l.split("spill_files=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("the merge logs its spills: {stderr}"));
    assert!(spilled > 0, "the merge spilled with room: {stderr}");
    let manifest = latest_manifest(&out);
    assert_eq!(manifest["run"], "night2");
    assert_eq!(manifest["entries"], rows);
    let toc = toc_rows(&out);
    let paths: std::collections::BTreeSet<Vec<u8>> = toc.iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths.len(), toc.len(), "no row twice");
    assert_same_paths("night2 after the retry", &paths, &find_paths(&root));

    // Nothing the failed attempt wrote is left beside what the manifest names.
    let mut named: std::collections::BTreeSet<String> = ["toc_files", "error_files"]
        .iter()
        .flat_map(|k| manifest[*k].as_array().unwrap())
        .chain(
            manifest["derived"]
                .as_object()
                .unwrap()
                .values()
                .flat_map(|v| v.as_array().unwrap()),
        )
        .map(|f| f["path"].as_str().unwrap().to_string())
        .chain(["summary", "report"].map(|k| manifest[k].as_str().unwrap().to_string()))
        .filter(|p| p.starts_with("snapshots/night2/"))
        .collect();
    named.insert("snapshots/night2/manifest.json".to_string());
    let on_disk: std::collections::BTreeSet<String> = find_paths(&out.join("snapshots/night2"))
        .into_iter()
        .filter(|p| {
            out.join("snapshots/night2")
                .join(String::from_utf8_lossy(p).as_ref())
                .is_file()
        })
        .map(|p| format!("snapshots/night2/{}", String::from_utf8_lossy(&p)))
        .collect();
    assert_eq!(
        on_disk, named,
        "the snapshot's folder holds what its manifest names"
    );
}
