//! Another engine writing the Delta tables scanjob publishes: delta-rs (`deltalake`) as a data
//! platform's maintenance job compacts, vacuums, changes a property, writes a checkpoint and
//! appends a file, and the next night publishes a version that holds exactly its own rows. A
//! commit that lands between a merge's read and its write is retried after it; a table
//! feature scanjob cannot honour is refused by name. And scanjob's own checkpoints: every
//! tenth version, read by every reader, and the log before them removed when retention no
//! longer needs it.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// delta-rs doing `command` to `<out>/<table>`.
fn neighbour(out: &Path, table: &str, command: &str) -> Value {
    let got = run_ok(
        Command::new(python())
            .arg(manifest_dir().join("tests/delta_neighbour.py"))
            .arg(out.join(table))
            .arg(command),
    );
    serde_json::from_slice(&got.stdout).expect("delta_neighbour.py prints JSON")
}

/// delta-rs' view of the newest version of `<out>/<table>`: its live files relative to the
/// table, rows, version and run.
fn state(out: &Path, table: &str) -> (Vec<String>, u64, u64, Value) {
    let got = neighbour(out, table, "state");
    let prefix = format!("{}/", out.join(table).display());
    let files = got["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let f = f.as_str().unwrap().trim_start_matches("file://");
            f.strip_prefix(&prefix).unwrap_or(f).to_string()
        })
        .collect();
    (
        files,
        got["rows"].as_u64().unwrap(),
        got["version"].as_u64().unwrap(),
        got["run"].clone(),
    )
}

/// The ToC files the manifest of `run` lists, relative to the table.
fn night_files(out: &Path, run: &str) -> Vec<String> {
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(out.join(format!("snapshots/{run}/manifest.json"))).unwrap(),
    )
    .unwrap();
    let mut files: Vec<String> = manifest["toc_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            f["path"]
                .as_str()
                .unwrap()
                .strip_prefix("toc/")
                .unwrap()
                .to_string()
        })
        .collect();
    files.sort();
    files
}

/// DuckDB, Polars and deltalake all read `rows` rows at the newest version, which names `run`.
fn assert_readable(out: &Path, run: &str, rows: usize) {
    let got = run_ok(
        Command::new(python())
            .arg(manifest_dir().join("tests/toc_queries.py"))
            .arg(out),
    );
    let got: Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(got["run"], run, "{got}");
    for reader in ["duckdb", "polars", "deltalake"] {
        assert_eq!(got[reader]["rows"], rows, "{reader}: {got}");
    }
}

#[test]
fn after_another_engine_s_maintenance_the_next_night_holds_exactly_its_own_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    for (night, id) in ["r1", "r2", "r3"].iter().enumerate() {
        run_ok(&mut run_night(&night_tree(tmp.path(), night), &out, id));
    }
    // A platform's maintenance job, with delta-rs, on the ToC and on a derived table: each
    // commits versions of its own (a compaction and a Z-order that rewrite the night's files,
    // a vacuum that deletes the files they replaced, a property, a checkpoint).
    for table in ["toc", "rollup_by_extension"] {
        let before = state(&out, table).2;
        for command in ["compact", "zorder", "vacuum", "property", "checkpoint"] {
            neighbour(&out, table, command);
        }
        let (files, _, version, run) = state(&out, table);
        assert!(version > before, "{table}: delta-rs committed: {version}");
        assert_eq!(run, Value::Null, "{table}: the newest commit is delta-rs'");
        assert!(
            files.iter().all(|f| !f.starts_with("r3/")),
            "{table}: only delta-rs' files are live: {files:?}"
        );
        assert!(
            out.join(format!("{table}/_delta_log/_last_checkpoint"))
                .exists()
        );
    }
    // The next night reads the previous night from delta-rs' files (its own are gone) and
    // replaces them with its own.
    let root = night_tree(tmp.path(), 3);
    let r4 = run_ok(run_night(&root, &out, "r4").env("RUST_LOG", "info"));
    let log = String::from_utf8_lossy(&r4.stderr);
    assert!(
        log.contains("its rows are read from the table's live files"),
        "{log}"
    );
    let (files, rows, _, run_id) = state(&out, "toc");
    assert_eq!(run_id, "r4");
    assert_eq!(files, night_files(&out, "r4"), "only r4's files are live");
    assert_eq!(rows as usize, find_paths(&root).len());
    assert_readable(&out, "r4", find_paths(&root).len());
    let (files, _, _, run_id) = state(&out, "rollup_by_extension");
    assert_eq!(run_id, "r4");
    assert!(files.iter().all(|f| f.starts_with("r4/")), "{files:?}");

    // A file appended, then compacted and vacuumed with the night's: the night's rows are
    // no longer apart from others, and the next night still publishes exactly its own.
    for command in ["append", "compact", "vacuum"] {
        neighbour(&out, "toc", command);
    }
    let root = night_tree(tmp.path(), 4);
    run_ok(&mut run_night(&root, &out, "r5"));
    let (files, rows, _, run_id) = state(&out, "toc");
    assert_eq!(run_id, "r5");
    assert_eq!(files, night_files(&out, "r5"));
    assert_eq!(rows as usize, find_paths(&root).len());
    assert_readable(&out, "r5", find_paths(&root).len());
    // delta-rs can maintain the table scanjob wrote: no feature it does not support.
    neighbour(&out, "toc", "compact");
    assert_readable(&out, "r5", find_paths(&root).len());
}

/// Every add action carries statistics for the columns people filter on, and delta-rs reads
/// them as the rows of the file are: the row count, each column's minimum, maximum and nulls.
#[test]
fn every_add_action_s_statistics_are_its_file_s_as_delta_rs_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    for (night, id) in ["r1", "r2"].iter().enumerate() {
        run_ok(&mut run_night(&night_tree(tmp.path(), night), &out, id));
    }
    for (table, version, columns) in [
        (
            "toc",
            0,
            &[
                "path_display",
                "dirname",
                "extension",
                "kind",
                "size",
                "uid",
                "gid",
                "mtime",
                "atime",
            ][..],
        ),
        ("toc", 1, &["dirname", "size", "mtime"][..]),
        (
            "rollup_by_extension",
            1,
            &["extension", "bytes", "files"][..],
        ),
    ] {
        let got = run_ok(
            Command::new(python())
                .arg(manifest_dir().join("tests/delta_neighbour.py"))
                .arg(out.join(table))
                .args(["stats", "--version", &version.to_string()]),
        );
        let got: Value = serde_json::from_slice(&got.stdout).unwrap();
        assert!(got["files"].as_u64() > Some(0), "{table}@{version}: {got}");
        assert_eq!(
            got["mismatches"],
            serde_json::json!([]),
            "{table}@{version}"
        );
        for column in columns {
            assert!(
                got["columns"]
                    .as_array()
                    .unwrap()
                    .contains(&Value::from(*column)),
                "{table}@{version}: no bounds for {column}: {got}"
            );
        }
    }
}

/// A later night's ToC is laid out by path: each file's rows in path order, and no two files'
/// ranges of paths overlapping, so a reader skips by statistics the files (and row groups)
/// outside the subtree it asks for. Written in several join passes, as a night too big for
/// one pass's memory is.
#[test]
fn a_later_night_s_toc_files_are_ranges_of_paths_in_path_order() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let root = tmp.path().join("tree");
    for d in 0..40 {
        let dir = root.join(format!("d{:02}/sub{}", (d * 7) % 40, d % 3));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..50 {
            std::fs::write(dir.join(format!("f{f}")), b"").unwrap();
        }
    }
    for run in ["r1", "r2"] {
        run_ok(run_night(&root, &out, run).args(["--merge-join-rows", "300"]));
    }
    let got = neighbour(&out, "toc", "layout");
    let files = got["files"].as_array().unwrap();
    assert!(files.len() >= 4, "several passes, several files: {got}");
    let rows: u64 = files.iter().map(|f| f["rows"].as_u64().unwrap()).sum();
    assert_eq!(rows, state(&out, "toc").1, "{got}");
    assert!(rows > 2000, "{got}");
    for file in files {
        assert_eq!(file["in_order"], true, "{file}");
    }
    assert_eq!(got["overlaps"], serde_json::json!([]), "{got}");
}

/// Spark with Delta's Spark connector, as the other writer.
fn spark(out: &Path, command: &str) -> Value {
    let jars = std::env::var("SCANJOB_SPARK_JARS").unwrap_or_else(|_| {
        panic!("SCANJOB_SPARK_JARS is not set: run the tests with `tests/run`, which fetches Delta's Spark jars")
    });
    let got = run_ok(
        Command::new(python())
            .arg(manifest_dir().join("tests/spark_neighbour.py"))
            .arg(out.join("toc"))
            .arg(jars)
            .arg(command),
    );
    serde_json::from_slice(&got.stdout).expect("spark_neighbour.py prints JSON")
}

/// Spark 4 with Delta 4 runs OPTIMIZE and SET TBLPROPERTIES on a three-night table (once the
/// next night stopped on their commits as "corrupt"); the next night publishes exactly its
/// own rows, and Spark reads them.
#[test]
fn after_spark_s_optimize_and_a_property_the_next_night_publishes_exactly_its_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    for (night, id) in ["r1", "r2", "r3"].iter().enumerate() {
        run_ok(&mut run_night(&night_tree(tmp.path(), night), &out, id));
    }
    let before = state(&out, "toc").2;
    let got = spark(&out, "maintain");
    assert_eq!(
        (&got["operations"][0], &got["operations"][1]),
        (&Value::from("SET TBLPROPERTIES"), &Value::from("OPTIMIZE")),
        "{got}"
    );
    let (files, _, version, run_id) = state(&out, "toc");
    assert_eq!(version, before + 2, "Spark committed two versions");
    assert_eq!(run_id, Value::Null, "the newest commit is Spark's");
    assert!(
        files.iter().all(|f| !f.starts_with("r3/")),
        "Spark rewrote the night's files: {files:?}"
    );

    let root = night_tree(tmp.path(), 3);
    run_ok(&mut run_night(&root, &out, "r4"));
    let (files, rows, version_after, run_id) = state(&out, "toc");
    assert_eq!((version_after, run_id), (version + 1, Value::from("r4")));
    assert_eq!(files, night_files(&out, "r4"), "only r4's files are live");
    assert_eq!(rows as usize, find_paths(&root).len());
    assert_readable(&out, "r4", find_paths(&root).len());
    assert_eq!(spark(&out, "count")["rows"], find_paths(&root).len());
}

#[test]
fn a_commit_that_lands_between_the_merge_s_read_and_its_write_is_retried_after() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    run_ok(&mut run_night(&night_tree(tmp.path(), 0), &out, "r1"));
    let root = night_tree(tmp.path(), 1);
    plan_and_scan(&root, &out, "r2");
    let mut merge = stopped_merge(&out, "r2");
    // delta-rs appends a file to the ToC, taking version 1 while the merge is held.
    neighbour(&out, "toc", "append");
    assert_eq!(state(&out, "toc").2, 1);
    signal(&merge, "-CONT");
    assert!(
        merge.wait().unwrap().success(),
        "the night commits after it"
    );
    let (files, rows, version, run) = state(&out, "toc");
    assert_eq!((version, run), (2, Value::from("r2")));
    assert_eq!(
        files,
        night_files(&out, "r2"),
        "the appended file is replaced"
    );
    assert_eq!(rows as usize, find_paths(&root).len());
    assert_readable(&out, "r2", find_paths(&root).len());
}

#[test]
fn a_table_feature_scanjob_cannot_honour_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let root = night_tree(tmp.path(), 0);
    run_ok(&mut run_night(&root, &out, "r1"));
    neighbour(&out, "toc", "change-data-feed");
    let versions = state(&out, "toc").2;
    let failed = run_night(&night_tree(tmp.path(), 1), &out, "r2")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("changeDataFeed") && stderr.contains("cannot honour"),
        "the error names the feature: {stderr}"
    );
    assert_eq!(state(&out, "toc").2, versions, "nothing committed");
    assert!(!out.join("snapshots/r2").exists());
}

fn log_objects(out: &Path, table: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out.join(format!("{table}/_delta_log")))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[test]
fn a_checkpoint_every_tenth_version_and_retention_keeps_the_log_its_nights_need() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut rows = Vec::new();
    for night in 0..14 {
        let root = night_tree(tmp.path(), night);
        let id = format!("r{:02}", night + 1);
        run_ok(run_night(&root, &out, &id).args(["--keep-snapshots", "3"]));
        rows.push(find_paths(&root).len());
        if night == 10 {
            // Version 10 is night r11: its checkpoint is there, and readers read it.
            let pointer: Value = serde_json::from_slice(
                &std::fs::read(out.join("toc/_delta_log/_last_checkpoint")).unwrap(),
            )
            .unwrap();
            assert_eq!(pointer["version"], 10, "{pointer}");
            assert_readable(&out, &id, rows[night]);
        }
    }
    // Versions 11, 12 and 13 are the kept nights r12..r14: the checkpoint at 10 and the
    // commits from 10 on are what they need; the log before it is gone, in every table.
    for table in ["toc", "rollup_by_uid", "trends"] {
        let names = log_objects(&out, table);
        assert_eq!(
            names,
            [
                "00000000000000000010.checkpoint.parquet",
                "00000000000000000010.json",
                "00000000000000000011.json",
                "00000000000000000012.json",
                "00000000000000000013.json",
                "_last_checkpoint"
            ],
            "{table}"
        );
    }
    assert_readable(&out, "r14", rows[13]);
    for (version, night) in [(11u64, 11usize), (12, 12), (13, 13)] {
        let got = run_ok(
            Command::new(python())
                .arg(manifest_dir().join("tests/toc_queries.py"))
                .arg(&out)
                .args(["--version", &version.to_string()]),
        );
        let got: Value = serde_json::from_slice(&got.stdout).unwrap();
        for reader in ["duckdb", "polars", "deltalake"] {
            assert_eq!(
                got[reader]["rows"], rows[night],
                "{reader} v{version}: {got}"
            );
        }
    }
}

/// `scanjob run` as nobody (no capabilities), so a mode-000 directory is an error row.
fn run_as_nobody(root: &Path, out: &Path, run: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
    ])
    .arg(env!("CARGO_BIN_EXE_scanjob"))
    .arg("run")
    .arg(root)
    .args(["--run", run, "--out"])
    .arg(out);
    cmd
}

#[test]
fn the_night_s_errors_are_a_delta_table_versioned_with_the_nights() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let root = night_tree(tmp.path(), 0);
    let locked = root.join("b/locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::write(locked.join("secret"), b"x").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    run_ok(&mut run_as_nobody(&root, &out, "r1"));
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    run_ok(&mut run_as_nobody(&root, &out, "r2"));

    let (_, rows, version, run) = state(&out, "errors");
    assert_eq!(
        (rows, version, run),
        (0, 1, Value::from("r2")),
        "no errors on r2"
    );
    let got = run_ok(
        Command::new(python())
            .arg(manifest_dir().join("tests/delta_neighbour.py"))
            .arg(out.join("errors"))
            .args(["state", "--version", "0"]),
    );
    let got: Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(
        (&got["rows"], &got["run"]),
        (&Value::from(1), &Value::from("r1"))
    );
    // The README's query, with DuckDB.
    let query = "import duckdb, json, os, pathlib, sys\n\
        m = __import__('duckdb_extension_delta')\n\
        con = duckdb.connect()\n\
        con.load_extension(str(next(pathlib.Path(m.__file__).parent.glob('extensions/*/*.duckdb_extension'))))\n\
        rows = con.execute(f\"SELECT kind, operation, path_display FROM delta_scan('{sys.argv[1]}/errors', version => 0)\").fetchall()\n\
        print(json.dumps(rows), flush=True)\n\
        os._exit(0)\n";
    let got = run_ok(Command::new(python()).args(["-c", query]).arg(&out));
    let got: Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(
        got,
        serde_json::json!([["permission_denied", "opendir", "b/locked"]])
    );
}
