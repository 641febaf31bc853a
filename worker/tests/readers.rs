//! Real clients read the table of contents, the Delta table `<output>/toc`, with no glue:
//! DuckDB's `delta_scan` runs the talk's queries, Polars and deltalake (pandas) count; every
//! answer must equal ground truth from GNU find and the generator, for the newest night and,
//! by version and by time, for the night before.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

fn queries(url: &str, extra: &[&str]) -> Value {
    let script = manifest_dir().join("tests/toc_queries.py");
    let out = run_ok(Command::new(python()).arg(script).arg(url).args(extra));
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

/// DuckDB's answers (when it read) and the counts of Polars and deltalake equal `truth`.
fn assert_answers(got: &Value, truth: &Value) {
    if got.get("duckdb").is_some() {
        for key in ["files", "size", "per_extension", "top5"] {
            assert_eq!(got["duckdb"][key], truth[key], "duckdb: {key}");
        }
        assert_eq!(got["duckdb"]["scan_times"], 1, "one night's rows");
    }
    for reader in ["polars", "deltalake"] {
        for key in ["files", "size", "per_extension"] {
            assert_eq!(got[reader][key], truth[key], "{reader}: {key}");
        }
    }
}

#[test]
fn duckdb_answers_equal_ground_truth_from_a_local_toc() {
    let tree = nasty_tree();
    let out = tempfile::tempdir().unwrap();
    scan(&tree.root, out.path(), &["--shards", "3"]);
    let got = queries(out.path().to_str().unwrap(), &[]);
    let truth = ground_truth(&tree.root);
    assert_answers(&got, &truth);
    assert_eq!(got["duckdb"]["files"], tree.summary["files"]);
    assert_eq!(got["duckdb"]["size"], tree.summary["total_apparent_bytes"]);
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
    let got = queries(&url, &[]);
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
    assert_eq!(queries(&url, &[])["run"], "r2");
}

/// Two nights at `url` with changes between them: every reader reads the newest night, the
/// night before by version, and (Polars, deltalake) by a time between the two commits.
fn newest_and_previous_night(url: &str, root: &Path) {
    let night = |run: &str| {
        run_ok(
            scanjob()
                .arg("run")
                .arg(root)
                .args(["--out", url, "--shards", "2", "--run", run]),
        );
        (ground_truth(root), find_paths(root).len())
    };
    grow_for_night(root, 0);
    let (truth1, rows1) = night("r1");
    // deltalake and Polars find a version by time from the log objects' modification times,
    // which S3 servers keep to the second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    grow_for_night(root, 1);
    let (truth2, rows2) = night("r2");
    assert_ne!(truth1["files"], truth2["files"], "the nights differ");

    let newest = queries(url, &[]);
    assert_eq!(
        (&newest["version"], &newest["run"]),
        (&json!(1), &json!("r2"))
    );
    assert_answers(&newest, &truth2);
    for reader in ["duckdb", "polars", "deltalake"] {
        assert_eq!(newest[reader]["rows"], rows2, "{reader}");
    }
    let latest: Value = serde_json::from_slice(&read_url(url, "latest.json")).unwrap();
    assert_eq!(
        latest["toc_version"], 1,
        "latest.json names the table's version"
    );

    let before = queries(url, &["--version", "0"]);
    assert_eq!(
        (&before["version"], &before["run"]),
        (&json!(0), &json!("r1"))
    );
    assert_answers(&before, &truth1);
    for reader in ["duckdb", "polars", "deltalake"] {
        assert_eq!(before[reader]["rows"], rows1, "{reader}");
    }
    let at = queries(url, &["--at", &between.to_string()]);
    assert_eq!((&at["version"], &at["run"]), (&json!(0), &json!("r1")));
    assert_answers(&at, &truth1);
    assert!(at["scan_time"].as_str().is_some_and(|t| t.ends_with('Z')));
}

/// Spark, with Delta's Spark connector, reads the newest night, the one before by version and
/// by time (a time between the two nights' commits, which Spark resolves with the log
/// objects' modification times: the tables have no in-commit timestamps, docs/design.md §3).
#[test]
fn spark_reads_the_newest_night_and_the_one_before_by_version_and_by_commit_time() {
    let jars = std::env::var("SCANJOB_SPARK_JARS").unwrap_or_else(|_| {
        panic!("SCANJOB_SPARK_JARS is not set: run the tests with `tests/run`, which fetches Delta's Spark jars")
    });
    let tmp = tempfile::tempdir().unwrap();
    let (out, root) = (tmp.path().join("out"), tmp.path().join("tree"));
    let night = |run: &str| {
        run_ok(
            scanjob()
                .arg("run")
                .arg(&root)
                .arg("--out")
                .arg(&out)
                .args(["--run", run]),
        );
        ground_truth(&root)
    };
    grow_for_night(&root, 0);
    let truth1 = night("r1");
    // Seconds apart, so a time between the commits falls between their log objects' times.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    grow_for_night(&root, 1);
    let truth2 = night("r2");
    let commit_time = |version| commit_info(&out, "toc", version)["timestamp"].as_i64();
    let (t0, t1) = (commit_time(0).unwrap(), commit_time(1).unwrap());
    assert!(t1 > t0, "commit times increase");
    let got = run_ok(
        Command::new(python())
            .arg(manifest_dir().join("tests/spark_queries.py"))
            .arg(&out)
            .arg(&jars)
            .arg("0")
            .arg(((t0 + t1) / 2).to_string()),
    );
    let got: Value = serde_json::from_slice(&got.stdout).expect("spark_queries.py prints JSON");
    for (key, truth, rows) in [
        ("newest", &truth2, find_paths(&root).len()),
        ("version", &truth1, 0),
        ("at", &truth1, 0),
    ] {
        for field in ["files", "size", "per_extension"] {
            assert_eq!(got[key][field], truth[field], "spark {key}: {field}: {got}");
        }
        if rows > 0 {
            assert_eq!(got[key]["rows"], rows, "spark {key}: {got}");
            assert_eq!(got["newest_sql"], rows, "{got}");
        }
    }
    assert_eq!(got["version"]["rows"], got["at"]["rows"], "{got}");
}

/// A file of the output location, local or on S3 (through pyarrow, as the readers would).
fn read_url(url: &str, relative: &str) -> Vec<u8> {
    if !url.starts_with("s3://") {
        return std::fs::read(Path::new(url).join(relative)).unwrap();
    }
    let script = "import os, sys, pyarrow.fs as f\n\
        e = os.environ['AWS_ENDPOINT_URL']\n\
        fs = f.S3FileSystem(access_key=os.environ['AWS_ACCESS_KEY_ID'], \
        secret_key=os.environ['AWS_SECRET_ACCESS_KEY'], region=os.environ.get('AWS_REGION', 'us-east-1'), \
        endpoint_override=e.split('://', 1)[-1], scheme=e.split('://', 1)[0])\n\
        sys.stdout.buffer.write(fs.open_input_stream(sys.argv[1][5:] + '/' + sys.argv[2]).read())\n";
    run_ok(Command::new(python()).args(["-c", script, url, relative])).stdout
}

#[test]
fn every_reader_reads_the_newest_night_and_the_one_before_from_a_local_table() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("toc");
    newest_and_previous_night(&out.to_string_lossy(), &tmp.path().join("tree"));
}

#[test]
fn every_reader_reads_the_newest_night_and_the_one_before_from_s3() {
    let bucket = std::env::var("SCANJOB_TEST_BUCKET").unwrap_or_else(|_| {
        panic!("SCANJOB_TEST_BUCKET and AWS_* are not set: run the tests with `tests/run`, which starts SeaweedFS")
    });
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}/readers-nights-{}", chrono_free_stamp());
    newest_and_previous_night(&url, &tmp.path().join("tree"));
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

/// A reader (deltalake, reading the Delta table with no glue) loops over the newest night at
/// `url` while three more nights publish. Every read must see one whole night: as many rows as
/// that night's tree had paths (GNU find), each path once, and the count its commit records.
fn reader_sees_whole_nights(url: &str, root: &Path, scratch: &Path) {
    use std::io::BufRead;
    // Night n is the table's version n.
    let mut expected: BTreeMap<u64, usize> = BTreeMap::new();
    let publish = |n: usize| {
        let run = format!("night{n}");
        run_ok(
            scanjob()
                .arg("run")
                .arg(root)
                .args(["--out", url, "--shards", "3", "--run", &run]),
        );
        n as u64
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
    let await_version = |version: u64, reads: &mut Vec<Value>| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !reads.iter().any(|r| r["version"] == version) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let read = rx.recv_timeout(left).unwrap_or_else(|e| {
                panic!("the reader never read version {version}: {e}; read {reads:?}")
            });
            reads.push(read);
        }
    };
    await_version(0, &mut reads);
    for n in 1..=3 {
        grow_for_night(root, n);
        let paths = find_paths(root).len();
        let version = publish(n);
        expected.insert(version, paths);
        await_version(version, &mut reads);
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
        let version = read["version"].as_u64().unwrap();
        let rows = read["rows"].as_u64().unwrap() as usize;
        assert_eq!(
            Some(&rows),
            expected.get(&version),
            "a read of version {version} saw {rows} rows; the nights had {expected:?}"
        );
        assert_eq!(
            read["distinct_paths"], read["rows"],
            "each path once: {read}"
        );
        assert_eq!(read["committed_rows"], read["rows"], "{read}");
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
