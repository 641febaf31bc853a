//! A real client reads the table: pyarrow finds the files through the manifest and DuckDB runs
//! the talk's queries; the answers must equal ground truth from GNU find and the generator.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

fn queries(url: &str) -> Value {
    let script = manifest_dir().join("tests/toc_queries.py");
    let out = run_ok(Command::new(python()).arg(script).arg(url));
    serde_json::from_slice(&out.stdout).expect("toc_queries.py prints JSON")
}

/// Python's `os.path.splitext(name)[1].lower()` without the dot: the generator's own rule.
fn splitext_extension(name: &str) -> String {
    let stem = name.trim_start_matches('.');
    stem.rfind('.')
        .map_or(String::new(), |i| stem[i + 1..].to_lowercase())
}

/// The expected answers, from GNU find's view of the tree.
fn ground_truth(root: &Path) -> Value {
    let files = find_files(root);
    let names = run_ok(Command::new("find").arg(root).args([
        "-mindepth",
        "1",
        "-type",
        "f",
        "-printf",
        "%f\\0",
    ]));
    let extensions: Vec<String> = names
        .stdout
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| splitext_extension(&String::from_utf8_lossy(n)))
        .collect();
    let size: u64 = files.iter().map(|f| f.2).sum();
    let mut per_ext: BTreeMap<String, u64> = BTreeMap::new();
    for e in &extensions {
        *per_ext.entry(e.clone()).or_default() += 1;
    }
    fn top5<K: Ord + Clone + Into<Value>>(
        items: impl Iterator<Item = (K, u64)>,
        by_size: bool,
    ) -> Value {
        let mut agg: BTreeMap<K, u64> = BTreeMap::new();
        for (k, size) in items {
            *agg.entry(k).or_default() += if by_size { size } else { 1 };
        }
        let mut v: Vec<(K, u64)> = agg.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Value::Array(
            v.into_iter()
                .take(5)
                .map(|(k, m)| json!([k.into(), m]))
                .collect(),
        )
    }
    let dir = || files.iter().map(|f| (f.0.clone(), f.2));
    let ext = || extensions.iter().cloned().zip(files.iter().map(|f| f.2));
    let uid = || files.iter().map(|f| (u64::from(f.1), f.2));
    json!({
        "files": files.len(),
        "size": size,
        "per_extension": per_ext,
        "top5": {
            "dirname_by_count": top5(dir(), false),
            "dirname_by_size": top5(dir(), true),
            "extension_by_count": top5(ext(), false),
            "extension_by_size": top5(ext(), true),
            "uid_by_count": top5(uid(), false),
            "uid_by_size": top5(uid(), true),
        }
    })
}

fn assert_answers(got: &Value, truth: &Value) {
    for key in ["files", "size", "per_extension", "top5"] {
        assert_eq!(got[key], truth[key], "{key}");
    }
}

#[test]
fn duckdb_answers_equal_ground_truth_from_a_local_toc() {
    let tree = nasty_tree();
    let out = tempfile::tempdir().unwrap();
    scan(&tree.root, out.path(), &["--shards", "3"]);
    let got = queries(out.path().to_str().unwrap());
    let truth = ground_truth(&tree.root);
    assert_answers(&got, &truth);
    assert_eq!(got["files"], tree.summary["files"]);
    assert_eq!(got["size"], tree.summary["total_apparent_bytes"]);
}

#[test]
fn duckdb_answers_equal_ground_truth_from_s3() {
    let bucket = std::env::var("SCANJOB_TEST_BUCKET").unwrap_or_else(|_| {
        panic!("SCANJOB_TEST_BUCKET and AWS_* are not set: run the tests with `tests/run`, which starts SeaweedFS")
    });
    let tree = nasty_tree();
    let prefix = format!("readers-{}-{}", std::process::id(), chrono_free_stamp());
    let url = format!("s3://{bucket}/{prefix}");
    let first = run_ok(
        scanjob()
            .arg("run")
            .arg(&tree.root)
            .args(["--out", &url, "--shards", "2", "--run", "r1", "--json"]),
    );
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(first["output"], url.as_str());
    let got = queries(&url);
    assert_answers(&got, &ground_truth(&tree.root));
    assert_eq!(got["run"], "r1");
    // A second run moves latest.json with a conditional write and balances by the first.
    let second = run_ok(
        scanjob()
            .arg("run")
            .arg(&tree.root)
            .args(["--out", &url, "--shards", "2", "--run", "r2", "--json"]),
    );
    let second: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(second["balanced_by"], "previous-snapshot");
    assert_eq!(queries(&url)["run"], "r2");
}

fn chrono_free_stamp() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Adds night `n`'s directory (200 × (n + 1) files) and removes the first night's first 50
/// files, so that every night has its own row count.
fn grow_for_night(root: &Path, n: usize) {
    let dir = root.join(format!("night{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..200 * (n + 1) {
        std::fs::write(dir.join(format!("f{i:05}.dat")), vec![b'x'; i % 300]).unwrap();
    }
    if n > 0 {
        for i in 0..50 * n {
            let _ = std::fs::remove_file(root.join(format!("night0/f{i:05}.dat")));
        }
    }
}

/// A reader (the README's recipe: latest.json, the manifest, its files) loops over the newest
/// snapshot at `url` while three more nights publish. Every read must see one whole night: as
/// many rows as that night's tree had paths (GNU find), each path once, and the manifest's count.
fn reader_sees_whole_nights(url: &str, root: &Path, scratch: &Path) {
    use std::io::BufRead;
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    let publish = |n: usize| {
        let run = format!("night{n}");
        run_ok(
            scanjob()
                .arg("run")
                .arg(root)
                .args(["--out", url, "--shards", "3", "--run", &run]),
        );
        run
    };
    grow_for_night(root, 0);
    expected.insert(publish(0), find_paths(root).len());

    let stop = scratch.join("stop-reading");
    let mut reader = Command::new(python())
        .arg(manifest_dir().join("tests/snapshot_rows.py"))
        .arg(url)
        .arg("--loop")
        .arg(&stop)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the reader starts");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let stdout = reader.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let value: Value = serde_json::from_str(&line.unwrap()).expect("a JSON line");
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    let mut reads: Vec<Value> = Vec::new();
    let await_run = |run: &str, reads: &mut Vec<Value>| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !reads.iter().any(|r| r["run"] == run) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let read = rx
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("the reader never read {run}: {e}; read {reads:?}"));
            reads.push(read);
        }
    };
    await_run("night0", &mut reads);
    for n in 1..=3 {
        grow_for_night(root, n);
        let paths = find_paths(root).len();
        let run = publish(n);
        expected.insert(run.clone(), paths);
        await_run(&run, &mut reads);
    }
    std::fs::write(&stop, b"").unwrap();
    let status = reader.wait().unwrap();
    lines.join().unwrap();
    reads.extend(rx.try_iter());
    assert!(status.success(), "the reader's last read failed: {reads:?}");

    let counts: Vec<usize> = expected.values().copied().collect();
    let distinct: std::collections::BTreeSet<usize> = counts.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        4,
        "every night has its own count: {expected:?}"
    );
    for read in &reads {
        assert!(read.get("error").is_none(), "a read failed: {read}");
        let run = read["run"].as_str().unwrap();
        let rows = read["rows"].as_u64().unwrap() as usize;
        assert_eq!(
            Some(&rows),
            expected.get(run),
            "a read of {run} saw {rows} rows; the nights had {expected:?}"
        );
        assert_eq!(
            read["distinct_paths"], read["rows"],
            "each path once: {read}"
        );
        assert_eq!(read["manifest_entries"], read["rows"], "{read}");
    }
    assert!(reads.len() >= 4, "{} reads", reads.len());
}

#[test]
fn a_reader_looping_while_three_nights_publish_sees_only_whole_nights() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("toc");
    reader_sees_whole_nights(&out.to_string_lossy(), &tmp.path().join("tree"), tmp.path());
}

#[test]
fn a_reader_looping_over_s3_while_three_nights_publish_sees_only_whole_nights() {
    let bucket = std::env::var("SCANJOB_TEST_BUCKET").unwrap_or_else(|_| {
        panic!("SCANJOB_TEST_BUCKET and AWS_* are not set: run the tests with `tests/run`, which starts SeaweedFS")
    });
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}/readers-loop-{}", chrono_free_stamp());
    reader_sees_whole_nights(&url, &tmp.path().join("tree"), tmp.path());
}
