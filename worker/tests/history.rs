//! History across snapshots: first_seen/last_seen, the diff tables (added, removed, changed,
//! moved), duplicate trees and files, carry-forward of a failed shard's rows, and retention.
//! The expectations come from what each test did to the tree, never from scanjob.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType, UInt64Type};
use arrow_array::{Array, RecordBatch};
use common::*;
use serde_json::Value;

/// p0..p5, each with s0..s3 of 60 files; every file has a size of its own (so no two
/// directories are alike), plus a hard link and a hard-linked copy of a directory, which are
/// not duplicates.
fn fixture(dir: &Path) -> PathBuf {
    let root = dir.join("tree");
    for top in 0..6 {
        for sub in 0..4 {
            let d = root.join(format!("p{top}/s{sub}"));
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..60 {
                let size = top * 1000 + sub * 100 + i + 1;
                std::fs::write(d.join(format!("f{i}.txt")), vec![b'x'; size]).unwrap();
            }
        }
    }
    std::fs::hard_link(root.join("p0/s1/f0.txt"), root.join("p5/hardlink.txt")).unwrap();
    let linked = root.join("p5/linked_s3");
    std::fs::create_dir(&linked).unwrap();
    for i in 0..60 {
        let name = format!("f{i}.txt");
        std::fs::hard_link(root.join("p0/s3").join(&name), linked.join(&name)).unwrap();
    }
    root
}

fn manifest(out: &Path, run: &str) -> Value {
    serde_json::from_slice(
        &std::fs::read(out.join(format!("snapshots/{run}/manifest.json"))).unwrap(),
    )
    .unwrap()
}

fn strings(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let c = b.column_by_name(name).unwrap();
        let c = datafusion::arrow::compute::cast(c, &arrow_schema::DataType::Utf8).unwrap();
        out.extend(c.as_string::<i32>().iter().map(|v| v.map(str::to_string)));
    }
    out
}

fn bools(batches: &[RecordBatch], name: &str) -> Vec<bool> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name(name).unwrap().as_boolean().clone();
            (0..c.len()).map(move |i| c.value(i))
        })
        .collect()
}

fn u64s(batches: &[RecordBatch], name: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for b in batches {
        let c = b.column_by_name(name).unwrap();
        let c = datafusion::arrow::compute::cast(c, &arrow_schema::DataType::UInt64).unwrap();
        out.extend(c.as_primitive::<UInt64Type>().iter().map(|v| v.unwrap()));
    }
    out
}

/// path → (first_seen, last_seen) of a snapshot's ToC.
fn seen(out: &Path, manifest: &Value) -> BTreeMap<String, (i64, i64)> {
    let batches = read_batches(out, &manifest["toc_files"]);
    let mut map = BTreeMap::new();
    for b in &batches {
        let path = b.column_by_name("path_display").unwrap().as_string::<i32>();
        let first = b
            .column_by_name("first_seen")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        let last = b
            .column_by_name("last_seen")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            let old = map.insert(path.value(i).to_string(), (first.value(i), last.value(i)));
            assert!(old.is_none(), "{} twice in the ToC", path.value(i));
        }
    }
    map
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn paths_of(out: &Path, manifest: &Value, table: &str) -> BTreeSet<String> {
    strings(
        &read_batches(out, &manifest["derived"][table]),
        "path_display",
    )
    .into_iter()
    .map(Option::unwrap)
    .collect()
}

#[test]
fn two_runs_give_exact_diff_history_and_duplicates() {
    two_runs(&[]);
}

/// The same with the joins in several passes, as a large snapshot under a memory limit runs.
#[test]
fn joins_in_passes_give_the_same_history() {
    let m2 = two_runs(&["--merge-join-rows", "500"]);
    let passes: BTreeSet<String> = m2["toc_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap();
            let rest = path.strip_prefix("toc/r2/merged/").unwrap();
            rest.split('/').next().unwrap().to_string()
        })
        .collect();
    assert!(
        passes.len() > 1,
        "the ToC was joined in one pass: {passes:?}"
    );
}

/// The same with the joins shared by three merge pods (`scanjob join`, one after another
/// here): the merge uses every partition's rows, and the tables are the same.
#[test]
fn joins_split_over_merge_pods_give_the_same_history() {
    let (_tmp, out, m2) = two_runs_in(&["--merge-pods", "3"]);
    let mut from_partitions = BTreeSet::new();
    for index in 0..3 {
        let success: Value = serde_json::from_slice(
            &std::fs::read(out.join(format!("runs/r2/joins/_SUCCESS-{index}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(success["count"], 3);
        for f in success["toc_files"].as_array().unwrap() {
            from_partitions.insert(f["path"].as_str().unwrap().to_string());
        }
    }
    let in_snapshot: BTreeSet<String> = m2["toc_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        in_snapshot, from_partitions,
        "the ToC is the partitions' rows"
    );
}

/// Two runs around known changes; returns the second run's manifest.
fn two_runs(extra: &[&str]) -> Value {
    two_runs_in(extra).2
}

/// [`two_runs`], returning the temporary directory and the output directory in it too.
fn two_runs_in(extra: &[&str]) -> (tempfile::TempDir, PathBuf, Value) {
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture(tmp.path());
    let out = tmp.path().join("toc");
    let opts = [
        &[
            "--shards",
            "3",
            "--duplicate-min-size",
            "1",
            "--project-level",
            "1",
        ][..],
        extra,
    ]
    .concat();
    scan(&root, &out, &[&["--run", "r1"][..], &opts[..]].concat());
    let m1 = manifest(&out, "r1");
    assert!(m1["previous_run"].is_null(), "first run: {m1}");
    for table in ["diff_added", "diff_removed", "diff_changed", "growth"] {
        let files = &m1["derived"][table];
        assert_eq!(
            (files.as_array().map(Vec::len), rows_of(files)),
            (Some(1), 0),
            "a first run has no diff: its tables start with one empty file"
        );
    }
    let seen1 = seen(&out, &m1);

    // The changes between the runs.
    std::fs::write(root.join("p0/new.txt"), b"0123456789").unwrap();
    let removed = root.join("p1/s0/f3.txt");
    let removed_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&removed).unwrap());
    std::fs::remove_file(&removed).unwrap();
    // ext4 hands the freed inode number to the next new file: that file is added, not moved.
    let reborn = root.join("p1/s0/reborn.txt");
    std::fs::write(&reborn, b"new content").unwrap();
    let reborn_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&reborn).unwrap());
    eprintln!(
        "inode reused by a new file: {}",
        reborn_inode == removed_inode
    );
    let grown = root.join("p2/s1/f0.txt");
    let mut data = std::fs::read(&grown).unwrap();
    data.extend_from_slice(b"more");
    std::fs::write(&grown, data).unwrap();
    std::os::unix::fs::chown(root.join("p3/s0/f1.txt"), Some(4242), None)
        .expect("chown (the tests run as root)");
    std::fs::rename(root.join("p4/s2/f5.txt"), root.join("p5/moved.txt")).unwrap();
    let copy = root.join("p5/copy_of_s0");
    std::fs::create_dir(&copy).unwrap();
    for i in 0..60 {
        let name = format!("f{i}.txt");
        std::fs::copy(root.join("p0/s0").join(&name), copy.join(&name)).unwrap();
    }

    scan(&root, &out, &[&["--run", "r2"][..], &opts[..]].concat());
    let m2 = manifest(&out, "r2");
    assert_eq!(m2["previous_run"], "r1");

    let mut added = set(&["p0/new.txt", "p1/s0/reborn.txt", "p5/copy_of_s0"]);
    added.extend((0..60).map(|i| format!("p5/copy_of_s0/f{i}.txt")));
    assert_eq!(paths_of(&out, &m2, "diff_added"), added);
    assert_eq!(paths_of(&out, &m2, "diff_removed"), set(&["p1/s0/f3.txt"]));

    let changed = read_batches(&out, &m2["derived"]["diff_changed"]);
    let paths = strings(&changed, "path_display");
    let old_paths = strings(&changed, "old_path_display");
    let flags = [
        "size_changed",
        "mtime_changed",
        "owner_changed",
        "mode_changed",
        "moved",
    ]
    .map(|f| bools(&changed, f));
    let mut rows = BTreeMap::new();
    for i in 0..paths.len() {
        let set: Vec<&str> = ["size", "mtime", "owner", "mode", "moved"]
            .iter()
            .zip(&flags)
            .filter(|(_, f)| f[i])
            .map(|(n, _)| *n)
            .collect();
        rows.insert(paths[i].clone().unwrap(), (old_paths[i].clone(), set));
    }
    let expected: BTreeMap<String, (Option<String>, Vec<&str>)> = [
        ("p2/s1/f0.txt", (None, vec!["size", "mtime"])),
        ("p3/s0/f1.txt", (None, vec!["owner"])),
        (
            "p5/moved.txt",
            (Some("p4/s2/f5.txt".to_string()), vec!["moved"]),
        ),
    ]
    .into_iter()
    .map(|(p, v)| (p.to_string(), v))
    .collect();
    assert_eq!(rows, expected);

    // first_seen stays with the path; last_seen is this run's for every row.
    let seen2 = seen(&out, &m2);
    let last2: BTreeSet<i64> = seen2.values().map(|v| v.1).collect();
    let last1: BTreeSet<i64> = seen1.values().map(|v| v.1).collect();
    assert!(
        last2.iter().min() > last1.iter().max(),
        "{last1:?} {last2:?}"
    );
    for (path, (first, last)) in &seen2 {
        match seen1.get(path) {
            Some((first1, _)) => assert_eq!(first, first1, "{path} keeps its first_seen"),
            None => assert_eq!(first, last, "{path} is new: first seen now"),
        }
    }
    assert!(seen2.contains_key("p5/moved.txt") && !seen2.contains_key("p4/s2/f5.txt"));

    // Growth: the chowned file moved 1 file to uid 4242.
    let growth = read_batches(&out, &m2["derived"]["growth"]);
    let (dims, keys) = (strings(&growth, "dimension"), strings(&growth, "key"));
    let (before, now) = (u64s(&growth, "files_before"), u64s(&growth, "files_now"));
    let i = (0..dims.len())
        .find(|&i| dims[i].as_deref() == Some("uid") && keys[i].as_deref() == Some("4242"))
        .expect("uid 4242 in growth");
    assert_eq!((before[i], now[i]), (0, 1));
    let p5 = (0..dims.len())
        .find(|&i| dims[i].as_deref() == Some("project") && keys[i].as_deref() == Some("p5"))
        .expect("project p5 in growth");
    // p5 gained the moved file and the 60 copies.
    assert_eq!(now[p5] - before[p5], 61);

    // Duplicate trees: the copy, and not the hard-linked copy.
    let trees = read_batches(&out, &m2["derived"]["duplicate_trees"]);
    let s0_bytes: u64 = (1..=60).sum();
    assert_eq!(
        trees.iter().map(|b| b.num_rows()).sum::<usize>(),
        1,
        "one duplicate tree group"
    );
    let dirs = trees[0]
        .column_by_name("dirs")
        .unwrap()
        .as_list::<i32>()
        .value(0);
    let dirs: Vec<&str> = dirs.as_string::<i32>().iter().map(Option::unwrap).collect();
    assert_eq!(dirs, ["p0/s0", "p5/copy_of_s0"]);
    assert_eq!(u64s(&trees, "wasted_bytes"), [s0_bytes]);
    assert_eq!(u64s(&trees, "files"), [60]);

    // Duplicate files: the 60 copied files by name; the hard links are one inode each.
    let files = read_batches(&out, &m2["derived"]["duplicate_files"]);
    let rules = strings(&files, "rule");
    let names = strings(&files, "name");
    let by_name: BTreeSet<String> = (0..rules.len())
        .filter(|&i| rules[i].as_deref() == Some("same name"))
        .map(|i| names[i].clone().unwrap())
        .collect();
    assert_eq!(by_name, (0..60).map(|i| format!("f{i}.txt")).collect());
    let wasted: u64 = (0..rules.len())
        .filter(|&i| rules[i].as_deref() == Some("same name"))
        .map(|i| u64s(&files, "wasted_bytes")[i])
        .sum();
    assert_eq!(wasted, s0_bytes);
    let all_paths: Vec<String> = files
        .iter()
        .flat_map(|b| {
            let l = b.column_by_name("paths").unwrap().as_list::<i32>().clone();
            (0..l.len())
                .flat_map(|i| {
                    let v = l.value(i);
                    v.as_string::<i32>()
                        .iter()
                        .map(|s| s.unwrap().to_string())
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        !all_paths
            .iter()
            .any(|p| p.contains("linked_s3") || p.contains("hardlink")),
        "hard links are not duplicates: {all_paths:?}"
    );

    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("snapshots/r2/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["growth"]["diff"]["added"], 63);
    assert_eq!(summary["growth"]["diff"]["removed"], 1);
    assert_eq!(summary["growth"]["diff"]["changed"], 3);
    assert_eq!(summary["growth"]["diff"]["moved"], 1);
    assert_eq!(summary["duplicates"]["tree_groups"], 1);
    assert!(out.join("snapshots/r2/report.html").exists());
    (tmp, out, m2)
}

/// Robinhood's rule: a shard that failed reports none of its files as removed; its rows come
/// from the previous snapshot with their old last_seen.
#[test]
fn a_failed_shard_carries_its_rows_forward_and_removes_nothing() {
    failed_shard_carried(0);
}

/// The same with the joins shared by three merge pods: only the first carries the rows.
#[test]
fn a_failed_shard_is_carried_once_with_the_joins_over_merge_pods() {
    failed_shard_carried(3);
}

fn failed_shard_carried(join_partitions: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture(tmp.path());
    let out = tmp.path().join("toc");
    scan(&root, &out, &["--run", "r1", "--shards", "3"]);
    let m1 = manifest(&out, "r1");
    let seen1 = seen(&out, &m1);

    run_ok(
        scanjob()
            .arg("plan")
            .arg(&root)
            .args(["--shards", "3", "--run", "r2", "--out"])
            .arg(&out)
            .arg("--previous")
            .arg(&out),
    );
    let plan = out.join("runs/r2/plan.json");
    let scan_shard = |index: u32| {
        run_ok(
            scanjob()
                .args(["scan", "--index", &index.to_string(), "--plan"])
                .arg(&plan),
        );
    };
    // Shard 1 runs first only to learn which paths it owns, then "fails": its _SUCCESS.json
    // and parts are removed, as if its pod had died.
    scan_shard(1);
    let success: Value =
        serde_json::from_slice(&std::fs::read(out.join("runs/r2/shards/1/_SUCCESS.json")).unwrap())
            .unwrap();
    let region: BTreeSet<String> = read_batches(&out, &success["toc_files"])
        .iter()
        .flat_map(|b| {
            let c = b
                .column_by_name("path_display")
                .unwrap()
                .as_string::<i32>()
                .clone();
            (0..c.len()).map(move |i| c.value(i).to_string())
        })
        .collect();
    assert!(!region.is_empty());
    std::fs::remove_dir_all(out.join("runs/r2/shards/1")).unwrap();
    std::fs::remove_dir_all(out.join("toc/r2/shards/1")).unwrap();

    // One file goes away inside the failed shard's part of the tree, one outside it.
    let inside = region
        .iter()
        .find(|p| p.ends_with(".txt") && seen1.contains_key(*p))
        .unwrap()
        .clone();
    let outside = seen1
        .keys()
        .find(|p| p.ends_with("f7.txt") && !region.contains(*p))
        .unwrap()
        .clone();
    std::fs::remove_file(root.join(&inside)).unwrap();
    std::fs::remove_file(root.join(&outside)).unwrap();
    scan_shard(0);
    scan_shard(2);
    for index in 0..join_partitions {
        run_ok(
            scanjob()
                .args([
                    "join",
                    "--max-missing-shards",
                    "1",
                    "--merge-join-rows",
                    "300",
                ])
                .args(["--count", &join_partitions.to_string()])
                .args(["--index", &index.to_string(), "--run"])
                .arg(out.join("runs/r2")),
        );
    }
    run_ok(
        scanjob()
            .args([
                "merge",
                "--max-missing-shards",
                "1",
                "--duplicate-min-size",
                "1",
                // Carried rows join in the first of several passes.
                "--merge-join-rows",
                "300",
                "--run",
            ])
            .arg(out.join("runs/r2")),
    );

    let m2 = manifest(&out, "r2");
    assert_eq!(m2["missing_shards"], serde_json::json!([1]));
    assert_eq!(m2["previous_run"], "r1");
    let carried: Vec<&Value> = m2["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["carried_forward_from"] == "r1")
        .collect();
    assert_eq!(carried.len(), 1);
    assert_eq!(carried[0]["index"], 1);

    assert_eq!(paths_of(&out, &m2, "diff_removed"), set(&[&outside]));
    assert!(paths_of(&out, &m2, "diff_added").is_empty());

    let seen2 = seen(&out, &m2);
    let carried_rows: Vec<&String> = seen2
        .iter()
        .filter(|(p, _)| region.contains(*p))
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        carried_rows.len(),
        region.len(),
        "every row of the failed shard is there"
    );
    assert_eq!(m2["carried_forward_rows"], region.len() as u64);
    for path in &region {
        assert_eq!(
            seen2[path], seen1[path],
            "{path}: carried with its old first/last_seen"
        );
    }
    assert!(
        seen2.contains_key(&inside),
        "not seen, so not removed: {inside}"
    );
    assert!(!seen2.contains_key(&outside));
    let expected: BTreeSet<&String> = seen1.keys().filter(|p| **p != outside).collect();
    assert_eq!(seen2.keys().collect::<BTreeSet<_>>(), expected);
}

#[test]
fn keep_snapshots_removes_older_ones_but_never_latest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir_all(root.join("a")).unwrap();
    std::fs::write(root.join("a/f.txt"), b"x").unwrap();
    let out = tmp.path().join("toc");
    for run in ["r1", "r2", "r3"] {
        scan(&root, &out, &["--run", run]);
    }
    scan(&root, &out, &["--run", "r4", "--keep-snapshots", "2"]);
    let listed = |dir: &str| -> BTreeSet<String> {
        std::fs::read_dir(out.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    assert_eq!(listed("snapshots"), set(&["r3", "r4"]));
    assert_eq!(listed("runs"), set(&["r3", "r4"]));

    // latest.json names r3 (by hand); an older run merged with --keep-snapshots 1 does not
    // move it, keeps r4 as the newest, and keeps r3 because latest.json names it.
    let latest = std::fs::read_to_string(out.join("latest.json"))
        .unwrap()
        .replace("r4", "r3");
    std::fs::write(out.join("latest.json"), latest).unwrap();
    scan(&root, &out, &["--run", "r0", "--keep-snapshots", "1"]);
    assert_eq!(listed("snapshots"), set(&["r3", "r4"]));
    let latest: Value =
        serde_json::from_slice(&std::fs::read(out.join("latest.json")).unwrap()).unwrap();
    assert_eq!(latest["run"], "r3");
}

#[test]
fn uid_column_type_is_what_the_rollup_reads() {
    // by_uid keeps the ToC's uid type, so joins with the ToC need no cast.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("f.txt"), b"abc").unwrap();
    let out = tmp.path().join("toc");
    scan(&root, &out, &["--run", "r1"]);
    let m = manifest(&out, "r1");
    let by_uid = read_batches(&out, &m["derived"]["rollup_by_uid"]);
    let uid = by_uid[0].column_by_name("uid").unwrap();
    assert_eq!(uid.data_type(), &arrow_schema::DataType::Int64);
    assert_eq!(
        uid.as_primitive::<Int64Type>().value(0),
        i64::from(rustix::process::geteuid().as_raw())
    );
    assert_eq!(u64s(&by_uid, "bytes"), [3]);
}
