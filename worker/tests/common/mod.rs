//! Shared fixtures: the built binary, readers of the Parquet it writes, GNU find's view of a
//! tree, and the test kit's generated trees and slowfs mounts. Ground truth comes from the
//! generator's summary and from GNU find, never from scanjob itself.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int8Type, Int32Type, Int64Type, TimestampMicrosecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

// Each test binary uses some of the kit.
#[allow(unused_imports)]
pub use scanjob_testkit::{SlowFs, Tree, mktree, nasty_tree};

pub fn scanjob() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scanjob"))
}

/// This crate's directory. Read at run time: `cargo test` sets it for each test process, while
/// the compile-time value may name another checkout that shares the target directory.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The Python with pyarrow and duckdb that `tests/run` installs.
pub fn python() -> String {
    std::env::var("SCANJOB_PYTHON").unwrap_or_else(|_| {
        panic!("SCANJOB_PYTHON is not set: run the tests with `tests/run`, which installs pyarrow and duckdb")
    })
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("command starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `scanjob run ROOT --out OUT --json [extra]`, returning its JSON summary.
pub fn scan(root: &Path, out: &Path, extra: &[&str]) -> Value {
    let output = run_ok(
        scanjob()
            .arg("run")
            .arg(root)
            .arg("--out")
            .arg(out)
            .arg("--json")
            .args(extra),
    );
    serde_json::from_slice(&output.stdout).expect("--json prints JSON")
}

/// `scanjob plan` of `root` as run `run` into `out`, and the scan of its one shard (not merged).
pub fn plan_and_scan(root: &Path, out: &Path, run: &str) {
    run_ok(
        scanjob()
            .arg("plan")
            .arg(root)
            .args(["--run", run, "--out"])
            .arg(out),
    );
    run_ok(
        scanjob()
            .args(["scan", "--index", "0", "--plan"])
            .arg(out.join(format!("runs/{run}/plan.json"))),
    );
}

/// One ToC row, the columns the tests look at.
#[derive(Debug, Clone)]
pub struct Row {
    pub path: Vec<u8>,
    pub path_display: String,
    pub path_is_utf8: bool,
    pub dirname: String,
    pub extension: String,
    pub kind: String,
    pub size: u64,
    pub uid: u32,
    pub mode: u32,
    pub nlink: u32,
    pub inode: u64,
    /// Microseconds since the epoch.
    pub mtime: Option<i64>,
    pub shard: u32,
}

/// Every row of the table `files` (manifest entries) under the local output `out`.
pub fn read_rows(out: &Path, files: &Value) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in read_batches(out, files) {
        let col = |name: &str| b.column(b.schema().index_of(name).unwrap()).clone();
        let dict_str = |name: &str, i: usize| -> String {
            let c = col(name);
            if let Some(d) = c.as_dictionary_opt::<Int32Type>() {
                let v = d.values().as_string::<i32>();
                v.value(d.keys().value(i) as usize).to_string()
            } else {
                let d = c.as_dictionary::<Int8Type>();
                let v = d.values().as_string::<i32>();
                v.value(d.keys().value(i) as usize).to_string()
            }
        };
        for i in 0..b.num_rows() {
            let mtime = col("mtime");
            let mtime = mtime.as_primitive::<TimestampMicrosecondType>();
            rows.push(Row {
                path: col("path").as_binary::<i32>().value(i).to_vec(),
                path_display: col("path_display").as_string::<i32>().value(i).to_string(),
                path_is_utf8: col("path_is_utf8").as_boolean().value(i),
                dirname: dict_str("dirname", i),
                extension: dict_str("extension", i),
                kind: dict_str("kind", i),
                size: col("size").as_primitive::<Int64Type>().value(i) as u64,
                uid: col("uid").as_primitive::<Int64Type>().value(i) as u32,
                mode: col("mode").as_primitive::<Int32Type>().value(i) as u32,
                nlink: col("nlink").as_primitive::<Int64Type>().value(i) as u32,
                inode: col("inode").as_primitive::<Int64Type>().value(i) as u64,
                mtime: mtime.is_valid(i).then(|| mtime.value(i)),
                shard: col("shard").as_primitive::<Int32Type>().value(i) as u32,
            });
        }
    }
    rows
}

/// Every batch of the files a manifest lists (its `toc_files`, or a `derived[name]` array)
/// under the local output `out`; none for a missing list.
pub fn read_batches(out: &Path, files: &Value) -> Vec<arrow_array::RecordBatch> {
    let mut batches = Vec::new();
    for file in files.as_array().map(Vec::as_slice).unwrap_or_default() {
        let path = out.join(file["path"].as_str().unwrap());
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        batches.extend(reader.map(Result::unwrap));
    }
    batches
}

/// The latest snapshot's manifest under a local output directory.
pub fn latest_manifest(out: &Path) -> Value {
    let latest: Value =
        serde_json::from_slice(&std::fs::read(out.join("latest.json")).unwrap()).unwrap();
    serde_json::from_slice(&std::fs::read(out.join(latest["manifest"].as_str().unwrap())).unwrap())
        .unwrap()
}

pub fn toc_rows(out: &Path) -> Vec<Row> {
    read_rows(out, &latest_manifest(out)["toc_files"])
}

/// Every path below `root`, byte-exact and relative, as GNU find lists them.
pub fn find_paths(root: &Path) -> BTreeSet<Vec<u8>> {
    let out = run_ok(
        Command::new("find")
            .arg(root)
            .args(["-mindepth", "1", "-print0"]),
    );
    let prefix = [root.as_os_str().as_bytes(), b"/"].concat();
    out.stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.strip_prefix(prefix.as_slice())
                .expect("under root")
                .to_vec()
        })
        .collect()
}

/// Panics unless `ours` holds exactly the paths of `truth`, naming how many differ and up to
/// five of each kind.
pub fn assert_same_paths(what: &str, ours: &BTreeSet<Vec<u8>>, truth: &BTreeSet<Vec<u8>>) {
    let sample = |a: &BTreeSet<Vec<u8>>, b: &BTreeSet<Vec<u8>>| -> (usize, Vec<String>) {
        let diff: Vec<&Vec<u8>> = a.difference(b).collect();
        let shown = diff
            .iter()
            .take(5)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        (diff.len(), shown)
    };
    let (missing, missing_shown) = sample(truth, ours);
    let (extra, extra_shown) = sample(ours, truth);
    assert!(
        missing == 0 && extra == 0,
        "{what}: {missing} missing (e.g. {missing_shown:?}), {extra} extra (e.g. {extra_shown:?})"
    );
}

/// Regular files as GNU find sees them: (dirname relative to root, uid, size).
pub fn find_files(root: &Path) -> Vec<(String, u32, u64)> {
    let out = run_ok(Command::new("find").arg(root).args([
        "-mindepth",
        "1",
        "-type",
        "f",
        "-printf",
        "%h\\0%U\\0%s\\0",
    ]));
    let fields: Vec<&[u8]> = out.stdout.split(|&b| b == 0).collect();
    let root_bytes = root.as_os_str().as_bytes();
    fields
        .chunks_exact(3)
        .map(|f| {
            let dir = f[0].strip_prefix(root_bytes).unwrap();
            let dir = dir.strip_prefix(b"/").unwrap_or(dir);
            (
                String::from_utf8_lossy(dir).into_owned(),
                std::str::from_utf8(f[1]).unwrap().parse().unwrap(),
                std::str::from_utf8(f[2]).unwrap().parse().unwrap(),
            )
        })
        .collect()
}

pub fn count_by<K: Ord, T>(items: &[T], key: impl Fn(&T) -> K) -> BTreeMap<K, u64> {
    let mut map = BTreeMap::new();
    for item in items {
        *map.entry(key(item)).or_default() += 1;
    }
    map
}

/// The rows of a manifest's file list (`toc_files`, or one table of `derived`): 0 for none.
pub fn rows_of(files: &Value) -> u64 {
    files.as_array().map_or(0, |files| {
        files.iter().map(|f| f["rows"].as_u64().unwrap()).sum()
    })
}

/// `<out>/<table>/_delta_log/<version>.json`.
pub fn delta_log_entry(out: &Path, table: &str, version: u64) -> PathBuf {
    out.join(format!("{table}/_delta_log/{version:020}.json"))
}

/// The first line of a Delta table's log entry: the commit's `commitInfo`.
pub fn commit_info(out: &Path, table: &str, version: u64) -> Value {
    let text = std::fs::read_to_string(delta_log_entry(out, table, version)).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    first["commitInfo"].clone()
}

/// Starts `scanjob merge` of `run` in `out` and stops it (SIGSTOP) once it has read the tables
/// and is deriving the night; its log keeps being drained so it never blocks on a full pipe.
pub fn stopped_merge(out: &Path, run: &str) -> std::process::Child {
    use std::io::BufRead;
    let mut child = scanjob()
        .args(["merge", "--run"])
        .arg(out.join(format!("runs/{run}")))
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("merge {run} ended before it derived anything"))
            .unwrap();
        if line.contains("first_seen joined") {
            break;
        }
    }
    signal(&child, "-STOP");
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// Sends `sig` (`-STOP`, `-CONT`, …) to `child`.
pub fn signal(child: &std::process::Child, sig: &str) {
    let status = Command::new("kill")
        .arg(sig)
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// 40 files in two directories under `<dir>/tree`; `night` adds its own files so every night
/// differs (the Delta tables' tests).
pub fn night_tree(dir: &Path, night: usize) -> PathBuf {
    let root = dir.join("tree");
    for d in ["a", "b/c"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
        for i in 0..20 {
            std::fs::write(root.join(d).join(format!("f{i}.dat")), vec![1u8; i * 3]).unwrap();
        }
    }
    for i in 0..night * 5 {
        std::fs::write(root.join(format!("a/night-{i}.txt")), b"x").unwrap();
    }
    root
}

/// `scanjob run ROOT --run RUN --out OUT`.
pub fn run_night(root: &Path, out: &Path, run: &str) -> Command {
    let mut cmd = scanjob();
    cmd.arg("run")
        .arg(root)
        .args(["--run", run, "--out"])
        .arg(out);
    cmd
}
