//! `merge --max-missing-shards`: a run missing a few shards is published as a partial snapshot
//! that names them; missing more than allowed still publishes nothing.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

/// Six top-level directories of four subdirectories of 60 files each: light enough that the
/// planner hands out whole top-level subtrees, two per shard for three shards.
fn fixture(dir: &Path) -> PathBuf {
    let root = dir.join("tree");
    for top in 0..6 {
        for sub in 0..4 {
            let d = root.join(format!("p{top}/s{sub}"));
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..60 {
                std::fs::write(d.join(format!("f{i}.txt")), b"x").unwrap();
            }
        }
    }
    root
}

/// Regular files below `dir`, recursively or (files only) directly inside, counted with std::fs.
fn count_files(dir: &Path, recursive: bool) -> u64 {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_file() {
            n += 1;
        } else if kind.is_dir() && recursive {
            n += count_files(&entry.path(), true);
        }
    }
    n
}

/// The files the plan gives shard `index`, counted in the tree from its walk starts.
fn planned_files(root: &Path, plan: &Value, index: usize) -> u64 {
    let shard = &plan["shards"][index];
    let subtrees = shard["subtrees"].as_array().unwrap().iter();
    let files_only = shard["files_only"].as_array().unwrap().iter();
    subtrees
        .map(|p| count_files(&root.join(p.as_str().unwrap()), true))
        .chain(files_only.map(|f| {
            assert!(f.get("slice").is_none(), "the fixture is not sliced: {f}");
            count_files(&root.join(f["path"].as_str().unwrap()), false)
        }))
        .sum()
}

fn merge(out: &Path, extra: &[&str]) -> std::process::Output {
    scanjob()
        .args(["merge", "--run"])
        .arg(out.join("runs/r1"))
        .args(extra)
        .output()
        .unwrap()
}

/// Plans run r1 into three shards and scans only `scanned`; returns the plan.
fn plan_and_scan(root: &Path, out: &Path, scanned: &[u32]) -> Value {
    run_ok(
        scanjob()
            .arg("plan")
            .arg(root)
            .args(["--shards", "3", "--run", "r1", "--out"])
            .arg(out),
    );
    let plan_path = out.join("runs/r1/plan.json");
    for index in scanned {
        run_ok(
            scanjob()
                .args(["scan", "--index", &index.to_string(), "--plan"])
                .arg(&plan_path),
        );
    }
    serde_json::from_slice(&std::fs::read(plan_path).unwrap()).unwrap()
}

#[test]
fn one_missing_shard_of_three_is_published_only_when_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture(tmp.path());
    let out = tmp.path().join("toc");
    let plan = plan_and_scan(&root, &out, &[0, 2]);
    let expected = planned_files(&root, &plan, 0) + planned_files(&root, &plan, 2);
    let skipped = planned_files(&root, &plan, 1);
    assert_eq!(expected + skipped, 6 * 4 * 60, "the plan covers the tree");
    assert!(expected > 0 && skipped > 0, "every shard has files: {plan}");

    // Without the flag: incomplete, retryable, nothing published.
    let out_default = merge(&out, &[]);
    let stderr = String::from_utf8_lossy(&out_default.stderr);
    assert_eq!(out_default.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("shards [1] have no _SUCCESS.json"),
        "{stderr}"
    );
    assert!(!out.join("latest.json").exists());
    assert!(!out.join("snapshots").exists());

    // With one shard allowed missing: published, naming it.
    let log = tmp.path().join("termination-log");
    run_ok(
        scanjob()
            .args(["merge", "--max-missing-shards", "1", "--run"])
            .arg(out.join("runs/r1"))
            .arg("--termination-log")
            .arg(&log),
    );
    let latest: Value =
        serde_json::from_slice(&std::fs::read(out.join("latest.json")).unwrap()).unwrap();
    assert_eq!(latest["run"], "r1");
    assert_eq!(latest["manifest"], "snapshots/r1/manifest.json");
    let manifest = latest_manifest(&out);
    assert_eq!(manifest["missing_shards"], json!([1]));
    let shards: Vec<u64> = manifest["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["index"].as_u64().unwrap())
        .collect();
    assert_eq!(shards, [0, 2]);
    assert_eq!(manifest["files"], expected);

    let rows = toc_rows(&out);
    let files = rows.iter().filter(|r| r.kind == "file").count() as u64;
    assert_eq!(files, expected, "the files of shards 0 and 2 only");
    let row_shards: BTreeSet<u32> = rows.iter().map(|r| r.shard).collect();
    assert!(
        row_shards.iter().all(|s| [0, 2].contains(s)),
        "{row_shards:?}"
    );

    let message: Value = serde_json::from_str(&std::fs::read_to_string(&log).unwrap()).unwrap();
    assert_eq!(message["phase"], "merge");
    assert_eq!(message["missing_shards"], json!([1]));
    assert_eq!(message["files"], expected);
}

#[test]
fn more_missing_shards_than_allowed_publish_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture(tmp.path());
    let out = tmp.path().join("toc");
    // An earlier complete snapshot, which must stay the latest.
    scan(&root, &out, &["--run", "r0"]);
    let latest_before = std::fs::read(out.join("latest.json")).unwrap();
    plan_and_scan(&root, &out, &[2]);
    let failed = merge(&out, &["--max-missing-shards", "1"]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("shards [0, 1] have no _SUCCESS.json"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(out.join("latest.json")).unwrap(),
        latest_before,
        "latest.json untouched"
    );
    assert!(!out.join("snapshots/r1").exists());

    // A run with no shard done is never published, whatever the allowance.
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture(tmp.path());
    let out = tmp.path().join("toc");
    plan_and_scan(&root, &out, &[]);
    let failed = merge(&out, &["--max-missing-shards", "3"]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("shards [0, 1, 2] have no _SUCCESS.json"),
        "{stderr}"
    );
    assert!(!out.join("latest.json").exists());
}
