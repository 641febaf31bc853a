//! Bad input gives one clear error line and a non-zero exit, and never a published snapshot
//! that points at incomplete data.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// Runs a command that must fail: returns its stderr after checking the exit code and that the
/// error is one line.
fn fails(cmd: &mut Command, code: i32) -> String {
    let out: Output = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "{cmd:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    assert!(lines[0].starts_with("scanjob: error: "), "{stderr}");
    stderr
}

fn small_tree(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("tree");
    for d in ["a/x", "b"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for i in 0..400 {
        std::fs::write(root.join(format!("a/x/f{i}.csv")), b"1").unwrap();
        std::fs::write(root.join(format!("b/g{i}.log")), b"22").unwrap();
    }
    root
}

/// Plans run `r1` of `root` into `out`.
fn plan_r1(root: &Path, out: &Path, shards: u32) {
    run_ok(
        scanjob()
            .arg("plan")
            .arg(root)
            .args(["--shards", &shards.to_string(), "--run", "r1", "--out"])
            .arg(out),
    );
}

#[test]
fn a_missing_root_or_a_root_that_is_a_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("toc");
    let err = fails(
        scanjob()
            .args(["run", "/nonexistent/scan/root", "--out"])
            .arg(&out),
        3,
    );
    assert!(
        err.contains("/nonexistent/scan/root") && err.contains("does not exist"),
        "{err}"
    );
    let file = tmp.path().join("file.txt");
    std::fs::write(&file, b"x").unwrap();
    let err = fails(scanjob().arg("run").arg(&file).arg("--out").arg(&out), 3);
    assert!(err.contains("is not a directory"), "{err}");
    assert!(!out.join("latest.json").exists());
}

#[test]
fn an_unwritable_or_malformed_output_url_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = small_tree(tmp.path());
    let err = fails(
        scanjob().arg("run").arg(&root).args(["--out", "/dev/null"]),
        3,
    );
    assert!(
        err.contains("\"/dev/null\"") && err.contains("not a directory"),
        "{err}"
    );
    let err = fails(
        scanjob()
            .arg("run")
            .arg(&root)
            .args(["--out", "/proc/version/toc"]),
        3,
    );
    assert!(err.contains("/proc/version/toc"), "{err}");
    let err = fails(
        scanjob()
            .arg("run")
            .arg(&root)
            .args(["--out", "ftp://host/toc"]),
        3,
    );
    assert!(err.contains("unsupported scheme \"ftp\""), "{err}");
    let err = fails(scanjob().arg("run").arg(&root).args(["--out", "s3://"]), 3);
    assert!(err.contains("output URL \"s3://\""), "{err}");
    let err = fails(
        scanjob()
            .arg("run")
            .arg(&root)
            .args(["--out"])
            .arg(tmp.path().join("t"))
            .args(["--exclude", "a[b"]),
        3,
    );
    assert!(err.contains("exclude pattern \"a[b\""), "{err}");
}

#[test]
fn a_plan_from_another_run_or_an_index_out_of_range_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = small_tree(tmp.path());
    let out = tmp.path().join("toc");
    plan_r1(&root, &out, 2);
    std::fs::create_dir_all(out.join("runs/r2")).unwrap();
    std::fs::copy(out.join("runs/r1/plan.json"), out.join("runs/r2/plan.json")).unwrap();
    let copied = out.join("runs/r2/plan.json");
    let err = fails(
        scanjob()
            .args(["scan", "--index", "0", "--plan"])
            .arg(&copied),
        3,
    );
    assert!(err.contains("belongs to run r1, not r2"), "{err}");
    let plan = out.join("runs/r1/plan.json");
    let err = fails(
        scanjob()
            .args(["scan", "--index", "2", "--plan"])
            .arg(&plan),
        3,
    );
    assert!(
        err.contains("shard index 2 is out of range: plan r1 has 2 shards"),
        "{err}"
    );
    let err = fails(
        scanjob()
            .args(["scan", "--index", "0", "--plan"])
            .arg(out.join("runs/r9/plan.json")),
        3,
    );
    assert!(err.contains("does not exist"), "{err}");
    // Planning the same run again with other parameters would pull the ground from under
    // running shards.
    let err = fails(
        scanjob()
            .arg("plan")
            .arg(&root)
            .args(["--shards", "3", "--run", "r1", "--out"])
            .arg(&out),
        3,
    );
    assert!(err.contains("already has a plan"), "{err}");
}

#[test]
fn merge_refuses_an_incomplete_run_and_publishes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = small_tree(tmp.path());
    let out = tmp.path().join("toc");
    plan_r1(&root, &out, 2);
    let plan = out.join("runs/r1/plan.json");
    run_ok(
        scanjob()
            .args(["scan", "--index", "1", "--plan"])
            .arg(&plan),
    );
    let err = fails(
        scanjob().args(["merge", "--run"]).arg(out.join("runs/r1")),
        1,
    );
    assert!(err.contains("shards [0] have no _SUCCESS.json"), "{err}");
    assert!(!out.join("latest.json").exists());
    assert!(!out.join("snapshots").exists());
}

#[test]
fn a_shard_rerun_after_a_crash_mid_write_replaces_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir_all(root.join("d")).unwrap();
    let n = 50_000;
    for i in 0..n {
        std::fs::File::create(root.join(format!("d/file-{i:06}.bin"))).unwrap();
    }
    let out = tmp.path().join("toc");
    plan_r1(&root, &out, 1);
    let plan = out.join("runs/r1/plan.json");
    // Paced to 2,000 calls a second, the scan of 50,000 files takes at least 25 s: it is
    // killed once its first part is written, mid-write, however fast the machine.
    let mut child = scanjob()
        .args([
            "scan",
            "--index",
            "0",
            "--threads",
            "1",
            "--part-size",
            "65536",
            "--max-ops-per-second",
            "2000",
            "--progress-seconds",
            "0",
            "--plan",
        ])
        .arg(&plan)
        .spawn()
        .unwrap();
    let shard = out.join("runs/r1/shards/0");
    let parts = out.join("toc/r1/shards/0");
    let started = std::time::Instant::now();
    while !parts.join("part-00000.parquet").exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "no part written within 20 s"
        );
        assert!(child.try_wait().unwrap().is_none(), "the scan ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success(), "the scan was killed");
    assert!(!shard.join("_SUCCESS.json").exists());
    // Leftovers a crash could leave: a torn part that no _SUCCESS.json lists.
    std::fs::write(parts.join("part-00099.parquet"), b"PAR1 torn").unwrap();
    let err = fails(
        scanjob().args(["merge", "--run"]).arg(out.join("runs/r1")),
        1,
    );
    assert!(err.contains("have no _SUCCESS.json"), "{err}");
    assert!(
        !out.join("latest.json").exists(),
        "nothing published after a crash"
    );
    run_ok(
        scanjob()
            .args(["scan", "--index", "0", "--plan"])
            .arg(&plan),
    );
    assert!(
        !parts.join("part-00099.parquet").exists(),
        "the retry cleared the prefix"
    );
    run_ok(scanjob().args(["merge", "--run"]).arg(out.join("runs/r1")));
    let rows = toc_rows(&out);
    assert_eq!(rows.len(), n + 1, "every file once, plus the directory");
    // A published run is final: re-scanning one of its shards is refused.
    let err = fails(
        scanjob()
            .args(["scan", "--index", "0", "--plan"])
            .arg(&plan),
        3,
    );
    assert!(err.contains("already published"), "{err}");
}

#[test]
fn a_merge_retried_after_it_committed_publishes_the_night_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let root = small_tree(tmp.path());
    let out = tmp.path().join("toc");
    scan(&root, &out, &["--run", "r1"]);
    std::fs::write(root.join("b/new.log"), b"new").unwrap();
    scan(&root, &out, &["--run", "r2"]);
    let committed = std::fs::read(out.join("snapshots/r2/manifest.json")).unwrap();
    let files = |dir: &Path| -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
        let out = Command::new("find")
            .arg(dir)
            .args(["-type", "f"])
            .output()
            .unwrap();
        let mut files: Vec<_> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|p| {
                let p = std::path::PathBuf::from(p);
                let modified = std::fs::metadata(&p).unwrap().modified().unwrap();
                (p, modified)
            })
            .collect();
        files.sort();
        files
    };
    let before = files(&out.join("snapshots/r2"));
    // The merge's pod was lost after it wrote the manifest but before latest.json moved.
    let r1_latest =
        r#"{"run":"r1","manifest":"snapshots/r1/manifest.json","updated":"2026-01-01T00:00:00Z"}"#;
    std::fs::write(out.join("latest.json"), r1_latest).unwrap();
    run_ok(scanjob().args(["merge", "--run"]).arg(out.join("runs/r2")));
    assert_eq!(
        std::fs::read(out.join("snapshots/r2/manifest.json")).unwrap(),
        committed,
        "the committed manifest is not written again"
    );
    assert_eq!(
        files(&out.join("snapshots/r2")),
        before,
        "no file of the snapshot is rewritten"
    );
    assert_eq!(
        latest_manifest(&out)["run"],
        "r2",
        "the publish is finished"
    );
    // Retried once more, it changes nothing.
    run_ok(scanjob().args(["merge", "--run"]).arg(out.join("runs/r2")));
    assert_eq!(files(&out.join("snapshots/r2")), before);
}
