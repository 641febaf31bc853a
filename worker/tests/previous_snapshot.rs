//! Bad input around the previous snapshot and the run's own files: each stops (or warns)
//! with a message naming what is wrong, and `latest.json` never moves to a broken snapshot.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use serde_json::Value;

fn fixture(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("tree");
    for d in ["a", "b/c"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
        for i in 0..20 {
            std::fs::write(root.join(d).join(format!("f{i}.dat")), vec![0u8; i * 10]).unwrap();
        }
    }
    let out = dir.join("toc");
    scan(&root, &out, &["--run", "r1"]);
    (root, out)
}

/// Plans (without reading the previous snapshot) and scans run `run`, then merges it.
fn plan_scan_merge(root: &Path, out: &Path, run: &str, before_merge: impl FnOnce()) -> Output {
    plan_and_scan(root, out, run);
    before_merge();
    scanjob()
        .args(["merge", "--run"])
        .arg(out.join(format!("runs/{run}")))
        .output()
        .unwrap()
}

fn latest_run(out: &Path) -> String {
    let latest: Value =
        serde_json::from_slice(&std::fs::read(out.join("latest.json")).unwrap()).unwrap();
    latest["run"].as_str().unwrap().to_string()
}

fn first_toc_file(out: &Path, run: &str) -> PathBuf {
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(out.join(format!("snapshots/{run}/manifest.json"))).unwrap(),
    )
    .unwrap();
    out.join(manifest["toc_files"][0]["path"].as_str().unwrap())
}

fn set_schema_version(out: &Path, run: &str, version: u32) {
    let path = out.join(format!("snapshots/{run}/manifest.json"));
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["schema_version"] = version.into();
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
}

fn assert_failed(output: &Output, code: i32, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} in: {stderr}");
    }
}

#[test]
fn an_older_schema_version_is_read_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, out) = fixture(tmp.path());
    set_schema_version(&out, "r1", 1);
    let output = run_ok(
        scanjob()
            .arg("run")
            .arg(&root)
            .args(["--run", "r2", "--out"])
            .arg(&out),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("older schema version"), "{stderr}");
    let manifest = latest_manifest(&out);
    assert_eq!(manifest["previous_run"], "r1");
    assert_eq!(manifest["schema_version"], 3);
    assert_eq!(
        rows_of(&manifest["derived"]["diff_added"]),
        0,
        "nothing added"
    );
}

/// Turns a first night into one written before the Delta table: its ToC files rewritten with
/// schema version 2's types (unsigned integers, nanosecond timestamps: the microseconds times
/// 1000) where version 2 kept them (`runs/<run>/shards/<i>/`), and no `toc/` table.
fn downgrade_to_version_2(out: &Path, run: &str) {
    let script = r#"
import json, sys, pyarrow as pa, pyarrow.parquet as pq
out, run = sys.argv[1], sys.argv[2]
manifest = json.load(open(f"{out}/snapshots/{run}/manifest.json"))
v2 = {"size": pa.uint64(), "blocks": pa.uint64(), "uid": pa.uint32(), "gid": pa.uint32(),
      "mode": pa.uint32(), "nlink": pa.uint32(), "inode": pa.uint64(), "dev": pa.uint64(),
      "shard": pa.uint32()}
for f in manifest["toc_files"]:
    t = pq.read_table(f"{out}/{f['path']}")
    f["path"] = f["path"].replace(f"toc/{run}/shards/", f"runs/{run}/shards/")
    path = f"{out}/{f['path']}"
    fields = []
    for field in t.schema:
        if field.name in v2:
            fields.append(field.with_type(v2[field.name]))
        elif pa.types.is_timestamp(field.type):
            fields.append(field.with_type(pa.timestamp("ns", tz="UTC")))
        else:
            fields.append(field)
    t = t.cast(pa.schema(fields))
    pq.write_table(t, path)
    f["bytes"] = __import__("os").path.getsize(path)
manifest["schema_version"] = 2
json.dump(manifest, open(f"{out}/snapshots/{run}/manifest.json", "w"))
__import__("shutil").rmtree(f"{out}/toc")
"#;
    let status = std::process::Command::new(python())
        .args(["-c", script])
        .arg(out)
        .arg(run)
        .status()
        .unwrap();
    assert!(status.success());
}

/// An output written before the table had Delta Lake's types: the next night reads the old
/// snapshot's unsigned nanosecond columns as the new types, carries first_seen and finds
/// nothing changed.
#[test]
fn a_version_2_snapshot_carries_first_seen_into_version_3() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, out) = fixture(tmp.path());
    let before = toc_rows(&out);
    downgrade_to_version_2(&out, "r1");
    let output = run_ok(
        scanjob()
            .arg("run")
            .arg(&root)
            .args(["--run", "r2", "--out"])
            .arg(&out),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("older schema version"), "{stderr}");
    let manifest = latest_manifest(&out);
    assert_eq!(manifest["previous_run"], "r1");
    assert_eq!(manifest["schema_version"], 3);
    for table in ["diff_added", "diff_removed", "diff_changed"] {
        assert_eq!(
            rows_of(&manifest["derived"][table]),
            0,
            "{table}: nothing changed between the nights"
        );
    }
    let after = toc_rows(&out);
    assert_eq!(after.len(), before.len());
    let first_commit =
        std::fs::read_to_string(out.join("toc/_delta_log/00000000000000000000.json")).unwrap();
    assert!(
        first_commit.contains("\"scanjob.run\":\"r2\""),
        "the next night starts the table: {first_commit}"
    );
    assert_eq!(
        first_seen_by_path(&out, &manifest),
        first_seen_by_path(
            &out,
            &serde_json::json!({"toc_files": manifest_of_r1(&out)})
        ),
    );
}

fn manifest_of_r1(out: &Path) -> Value {
    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("snapshots/r1/manifest.json")).unwrap())
            .unwrap();
    m["toc_files"].clone()
}

/// path → first_seen in microseconds, whatever the unit the files hold.
fn first_seen_by_path(out: &Path, manifest: &Value) -> std::collections::BTreeMap<String, i64> {
    use arrow_array::cast::AsArray;
    let mut map = std::collections::BTreeMap::new();
    for b in read_batches(out, &manifest["toc_files"]) {
        let paths = b
            .column_by_name("path_display")
            .unwrap()
            .as_string::<i32>()
            .clone();
        let seen = b.column_by_name("first_seen").unwrap();
        let seen = datafusion::arrow::compute::cast(
            seen,
            &arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None),
        )
        .unwrap();
        let seen = datafusion::arrow::compute::cast(&seen, &arrow_schema::DataType::Int64).unwrap();
        let seen = seen.as_primitive::<arrow_array::types::Int64Type>();
        for i in 0..b.num_rows() {
            map.insert(paths.value(i).to_string(), seen.value(i));
        }
    }
    map
}

#[test]
fn a_newer_schema_version_stops_the_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, out) = fixture(tmp.path());
    set_schema_version(&out, "r1", 99);
    let output = plan_scan_merge(&root, &out, "r2", || {});
    assert_failed(
        &output,
        3,
        &["snapshots/r1/manifest.json", "schema version 99"],
    );
    assert_eq!(latest_run(&out), "r1");
    assert!(!out.join("snapshots/r2/manifest.json").exists());
}

#[test]
fn a_corrupt_previous_file_stops_the_merge_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, out) = fixture(tmp.path());
    let file = first_toc_file(&out, "r1");
    std::fs::write(&file, b"PAR1 this is not parquet PAR1").unwrap();
    let name = file.file_name().unwrap().to_str().unwrap().to_string();
    let output = plan_scan_merge(&root, &out, "r2", || {});
    assert_failed(
        &output,
        3,
        &["previous snapshot", &name, "not a readable Parquet file"],
    );
    assert_eq!(latest_run(&out), "r1");
    assert!(!out.join("snapshots/r2/manifest.json").exists());

    // `run` reads the previous snapshot to plan and stops there, naming the same file.
    let output = scanjob()
        .arg("run")
        .arg(&root)
        .args(["--run", "r3", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains(&name),
        "{stderr}"
    );
    assert_eq!(latest_run(&out), "r1");
}

#[test]
fn a_manifest_naming_a_missing_file_stops_the_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, out) = fixture(tmp.path());
    let file = first_toc_file(&out, "r1");
    std::fs::remove_file(&file).unwrap();
    let name = file.file_name().unwrap().to_str().unwrap().to_string();
    let output = plan_scan_merge(&root, &out, "r2", || {});
    assert_failed(&output, 3, &[&name, "is listed but does not exist"]);
    assert_eq!(latest_run(&out), "r1");
}

#[test]
fn a_missing_previous_manifest_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, out) = fixture(tmp.path());
    std::fs::remove_file(out.join("snapshots/r1/manifest.json")).unwrap();
    let output = plan_scan_merge(&root, &out, "r2", || {});
    assert_failed(
        &output,
        3,
        &["snapshots/r1/manifest.json", "does not exist"],
    );
    assert_eq!(latest_run(&out), "r1");
}

#[test]
fn a_corrupt_part_of_this_run_stops_the_merge_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, out) = fixture(tmp.path());
    let part = out.join("toc/r2/shards/0/part-00000.parquet");
    let output = plan_scan_merge(&root, &out, "r2", || {
        let mut bytes = std::fs::read(&part).unwrap();
        let n = bytes.len();
        bytes.truncate(n / 2);
        std::fs::write(&part, bytes).unwrap();
    });
    assert_failed(
        &output,
        3,
        &[
            "run r2",
            "shards/0/part-00000.parquet",
            "not a readable Parquet file",
        ],
    );
    assert_eq!(latest_run(&out), "r1");
    assert!(!out.join("snapshots/r2/manifest.json").exists());
}
