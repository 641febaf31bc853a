//! The Delta table `<output>/toc` under bad input: a damaged log entry, a table scanjob did not
//! write, a commit that loses a race, a data file gone. Each is one clear error, or (a lost
//! race) a commit after the winner's; nothing of a failed night is committed, and the version
//! before stays whole and readable by every reader.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

fn fails(cmd: &mut Command, code: i32) -> String {
    let out: Output = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "{cmd:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn merge(out: &Path, run: &str) -> Command {
    let mut cmd = scanjob();
    cmd.args(["merge", "--run"])
        .arg(out.join(format!("runs/{run}")));
    cmd
}

fn versions(out: &Path) -> usize {
    std::fs::read_dir(out.join("toc/_delta_log"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")
        })
        .count()
}

/// DuckDB, Polars and deltalake reading version `version` (the newest when `None`).
fn read(out: &Path, version: Option<u64>) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(manifest_dir().join("tests/toc_queries.py"))
        .arg(out);
    if let Some(v) = version {
        cmd.args(["--version", &v.to_string()]);
    }
    serde_json::from_slice(&run_ok(&mut cmd).stdout).expect("toc_queries.py prints JSON")
}

/// Every reader reads `rows` rows at `version`, whose commit names `run`. With `None` the run
/// may also be unknown: a damaged newer entry can leave deltalake without the history, not
/// without the rows.
fn assert_readable(out: &Path, version: Option<u64>, run: Option<&str>, rows: usize) {
    let got = read(out, version);
    match run {
        Some(run) => assert_eq!(got["run"], run, "{got}"),
        None => assert!(got["run"].is_null() || got["run"] == "r1", "{got}"),
    }
    for reader in ["duckdb", "polars", "deltalake"] {
        assert_eq!(got[reader]["rows"], rows, "{reader}: {got}");
    }
}

fn latest_run(out: &Path) -> String {
    let latest: Value =
        serde_json::from_slice(&std::fs::read(out.join("latest.json")).unwrap()).unwrap();
    latest["run"].as_str().unwrap().to_string()
}

#[test]
fn a_torn_log_entry_stops_the_next_night_and_the_version_before_stays_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let root = night_tree(tmp.path(), 0);
    run_ok(&mut run_night(&root, &out, "r1"));
    let rows1 = find_paths(&root).len();
    let root = night_tree(tmp.path(), 1);
    run_ok(&mut run_night(&root, &out, "r2"));
    assert_eq!(versions(&out), 2);

    // Version 1 damaged as a writer that died mid-write, or a hand edit, would leave it: its
    // last line dropped (every line still JSON), then cut inside a line.
    let entry = delta_log_entry(&out, "toc", 1);
    let text = std::fs::read_to_string(&entry).unwrap();
    let last_line = text.trim_end().rfind('\n').unwrap() + 1;
    let damages = [
        (text[..last_line].to_string(), "adds and"),
        (text[..last_line + 20].to_string(), "not JSON"),
    ];
    let root = night_tree(tmp.path(), 2);
    for (damaged, says) in damages {
        std::fs::write(&entry, damaged).unwrap();
        let err = fails(&mut run_night(&root, &out, "r3"), 3);
        assert!(
            err.contains("toc/_delta_log/00000000000000000001.json is corrupt")
                && err.contains(says),
            "the error names the entry and what is wrong ({says}): {err}"
        );
        assert_eq!(versions(&out), 2, "nothing of r3 committed");
        assert!(!out.join("snapshots/r3/manifest.json").exists());
        assert!(
            !out.join("toc/r3").exists(),
            "no shard wrote into the table"
        );
        assert_eq!(latest_run(&out), "r2");
        assert_readable(&out, Some(0), None, rows1);
    }
    // Put back as it was, the next night commits on top of it.
    std::fs::write(&entry, &text).unwrap();
    run_ok(&mut run_night(&root, &out, "r3"));
    assert_readable(&out, None, Some("r3"), find_paths(&root).len());
}

#[test]
fn a_table_scanjob_did_not_write_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let table = out.join("toc");
    // Each script leaves with os._exit: the native thread pools' teardown has aborted the
    // interpreter under load after the work was done.
    let write = "import os, sys, pyarrow as pa, deltalake\n\
        deltalake.write_deltalake(sys.argv[1], pa.table({'x': [1, 2, 3]}))\n\
        os._exit(0)\n";
    run_ok(Command::new(python()).args(["-c", write]).arg(&table));
    let count = "import os, sys, deltalake\n\
        print(len(deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table()), flush=True)\n\
        os._exit(0)\n";
    let before: Vec<String> = std::fs::read_dir(&table)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();

    let root = night_tree(tmp.path(), 0);
    let err = fails(&mut run_night(&root, &out, "r1"), 3);
    assert!(
        err.contains("is a Delta table that scanjob did not write"),
        "{err}"
    );
    let after: Vec<String> = std::fs::read_dir(&table)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(before, after, "nothing written into the foreign table");
    let rows = run_ok(Command::new(python()).args(["-c", count]).arg(&table));
    assert_eq!(String::from_utf8_lossy(&rows.stdout).trim(), "3");
    assert!(!out.join("latest.json").exists());
}

/// Night r1 published, r2 and r3 planned and scanned (not merged) in `dir/out`; the rows of
/// r2 and r3.
fn two_nights_to_merge(dir: &Path) -> (PathBuf, usize, usize) {
    let out = dir.join("out");
    let root = night_tree(dir, 0);
    run_ok(&mut run_night(&root, &out, "r1"));
    let mut rows = [0; 2];
    for (n, run_id) in ["r2", "r3"].iter().enumerate() {
        let root = night_tree(dir, n + 1);
        plan_and_scan(&root, &out, run_id);
        rows[n] = find_paths(&root).len();
    }
    (out, rows[0], rows[1])
}

#[test]
fn of_two_merges_racing_for_one_version_the_loser_reads_the_log_again_and_commits_after() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, rows2, rows3) = two_nights_to_merge(tmp.path());

    // r3's merge reads the table at version 0 and is held while r2's merge commits version 1.
    let mut r3 = stopped_merge(&out, "r3");
    run_ok(&mut merge(&out, "r2"));
    assert_eq!(versions(&out), 2);
    signal(&r3, "-CONT");
    let status = r3.wait().unwrap();
    assert!(status.success(), "the loser commits after the winner");
    assert_eq!(versions(&out), 3);
    assert_readable(&out, None, Some("r3"), rows3);
    assert_readable(&out, Some(1), Some("r2"), rows2);
    assert_eq!(latest_run(&out), "r3");

    // A retry of it finds the night committed and only publishes it.
    let retried = run_ok(merge(&out, "r3").env("RUST_LOG", "info"));
    let log = String::from_utf8_lossy(&retried.stderr);
    assert!(log.contains("the table already holds this night"), "{log}");
    assert_eq!(versions(&out), 3);
}

#[test]
fn the_loser_of_a_race_that_is_the_older_night_stays_out_of_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, _, rows3) = two_nights_to_merge(tmp.path());

    let mut r2 = stopped_merge(&out, "r2");
    run_ok(&mut merge(&out, "r3"));
    signal(&r2, "-CONT");
    assert!(r2.wait().unwrap().success());
    // Its retry, too, finds a newer night current and leaves the table and latest.json alone.
    let retried = run_ok(merge(&out, "r2").env("RUST_LOG", "info"));
    let log = String::from_utf8_lossy(&retried.stderr);
    assert!(
        log.contains("a newer night is already the table's current version"),
        "{log}"
    );
    assert_eq!(versions(&out), 2);
    assert_readable(&out, None, Some("r3"), rows3);
    assert_eq!(latest_run(&out), "r3");
}

#[test]
fn a_data_file_gone_before_the_merge_stops_it_and_the_version_before_stays_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let root = night_tree(tmp.path(), 0);
    run_ok(&mut run_night(&root, &out, "r1"));
    let rows1 = find_paths(&root).len();
    let root = night_tree(tmp.path(), 1);
    plan_and_scan(&root, &out, "r2");
    let part = out.join("toc/r2/shards/0/part-00000.parquet");
    std::fs::remove_file(&part).unwrap();
    let err = fails(&mut merge(&out, "r2"), 3);
    assert!(
        err.contains("toc/r2/shards/0/part-00000.parquet") && err.contains("does not exist"),
        "{err}"
    );
    assert_eq!(versions(&out), 1, "nothing of r2 committed");
    assert!(!out.join("snapshots/r2/manifest.json").exists());
    assert_readable(&out, None, Some("r1"), rows1);
}

#[test]
fn keep_snapshots_keeps_exactly_that_many_nights_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut rows = Vec::new();
    for night in 0..4 {
        let root = night_tree(tmp.path(), night);
        let name = format!("r{}", night + 1);
        run_ok(run_night(&root, &out, &name).args(["--keep-snapshots", "2"]));
        rows.push(find_paths(&root).len());
    }
    assert_eq!(versions(&out), 4, "the log keeps every commit");
    let mut left: Vec<String> = std::fs::read_dir(out.join("toc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["_delta_log", "r3", "r4"],
        "older nights' files removed"
    );
    assert_readable(&out, None, Some("r4"), rows[3]);
    assert_readable(&out, Some(3), Some("r4"), rows[3]);
    assert_readable(&out, Some(2), Some("r3"), rows[2]);
    // A night outside retention is gone, as after Delta's VACUUM: reading it fails.
    let gone = Command::new(python())
        .arg(manifest_dir().join("tests/toc_queries.py"))
        .arg(&out)
        .args(["--version", "1"])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "version 1's files are removed");
}

/// deltalake's view of each table `names` under `out`: rows, version and the run of that
/// version's commit; `{"error"}` where there is no table.
fn derived_tables(out: &Path, names: &[String]) -> Value {
    let script = "import json, os, sys, deltalake\n\
        res = {}\n\
        for name in sys.argv[2:]:\n\
        \x20   try:\n\
        \x20       dt = deltalake.DeltaTable(f'{sys.argv[1]}/{name}')\n\
        \x20       run = dt.history(1)[0].get('scanjob.run')\n\
        \x20       rows = dt.to_pyarrow_table().num_rows\n\
        \x20       res[name] = {'rows': rows, 'version': dt.version(), 'run': run}\n\
        \x20   except Exception as e:\n\
        \x20       res[name] = {'error': str(e)}\n\
        print(json.dumps(res), flush=True)\n\
        os._exit(0)\n";
    let out = run_ok(
        Command::new(python())
            .args(["-c", script])
            .arg(out)
            .args(names),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_derived_table_is_a_delta_table_and_a_night_is_the_same_version_in_every_table() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let root = night_tree(tmp.path(), 0);
    run_ok(&mut run_night(&root, &out, "r1"));
    let root = night_tree(tmp.path(), 1);
    run_ok(&mut run_night(&root, &out, "r2"));
    let manifest = |run: &str| -> Value {
        serde_json::from_slice(
            &std::fs::read(out.join(format!("snapshots/{run}/manifest.json"))).unwrap(),
        )
        .unwrap()
    };
    let (first, second) = (manifest("r1"), manifest("r2"));
    let names: Vec<String> = second["derived"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(names.len(), 15, "{names:?}");
    let tables = derived_tables(&out, &names);
    let mut with_rows = 0;
    for name in &names {
        let got = &tables[name];
        let mut rows2 = rows_of(&second["derived"][name]);
        if name == "trends" {
            // The only table that grows: each night adds its rows and removes none.
            rows2 += rows_of(&first["derived"][name]);
        }
        // Every table starts on the first night, with no rows where that night has none
        // (its diff and growth), so version N is night N in all of them.
        assert_eq!(got["rows"], rows2, "{name}: {got}");
        assert_eq!(got["run"], "r2", "{name}: {got}");
        assert_eq!(got["version"], 1, "{name}: {got}");
        with_rows += usize::from(rows2 > 0);
        // And one commit time for the night in every table.
        for (version, run) in [(0, "r1"), (1, "r2")] {
            let (info, toc) = (
                commit_info(&out, name, version),
                commit_info(&out, "toc", version),
            );
            assert_eq!(info["scanjob.run"], run, "{name}");
            assert!(info["timestamp"].is_i64(), "{name}: {info}");
            assert_eq!(info["timestamp"], toc["timestamp"], "{name} {version}");
        }
    }
    assert!(with_rows >= 10, "most derived tables hold rows: {tables}");
    assert!(
        commit_info(&out, "toc", 1)["timestamp"].as_i64()
            > commit_info(&out, "toc", 0)["timestamp"].as_i64()
    );
    // The first night's diff is empty; the second's added rows are the files it added.
    assert_eq!(rows_of(&first["derived"]["diff_added"]), 0);
    assert_eq!(tables["diff_added"]["rows"], 5, "{tables}");
}

/// `trends` after three nights with changes between them: per-project bytes of every night
/// equal what GNU find saw that night, read with one query over the Delta table.
#[test]
fn trends_hold_every_night_s_bytes_per_project() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let root = tmp.path().join("tree");
    let mut truth = std::collections::BTreeMap::new();
    for (night, run_id) in ["r1", "r2", "r3"].iter().enumerate() {
        for (project, files) in [("alpha", 3 + night * 4), ("beta", 10 - night * 3)] {
            let dir = root.join(project);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..files {
                std::fs::write(dir.join(format!("f{i}")), vec![7u8; 100 * (i + night + 1)])
                    .unwrap();
            }
        }
        run_ok(&mut run_night(&root, &out, run_id));
        for (dir, _, size) in find_files(&root) {
            let project = dir.split('/').next().unwrap().to_string();
            *truth.entry(format!("{run_id} {project}")).or_insert(0u64) += size;
        }
    }
    let script = "import os, sys, json, deltalake\n\
        t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table(columns=['run', 'dimension', 'key', 'bytes']).to_pylist()\n\
        print(json.dumps({f\"{r['run']} {r['key']}\": r['bytes'] for r in t if r['dimension'] == 'project'}), flush=True)\n\
        os._exit(0)\n";
    let got = run_ok(
        Command::new(python())
            .args(["-c", script])
            .arg(out.join("trends")),
    );
    let got: std::collections::BTreeMap<String, u64> = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(got, truth, "bytes per project and night");

    // The third night's report shows growth over all three nights: its numbers, and the page
    // as headless Chromium renders it.
    let night_bytes = |run: &str| -> u64 {
        truth
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{run} ")))
            .map(|(_, v)| v)
            .sum()
    };
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("snapshots/r3/summary.json")).unwrap())
            .unwrap();
    let nights: Vec<(String, u64)> = summary["nights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["run"].as_str().unwrap().to_string(),
                n["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = ["r1", "r2", "r3"]
        .iter()
        .map(|r| (r.to_string(), night_bytes(r)))
        .collect();
    assert_eq!(nights, expected, "the summary's nights");
    let profile = tempfile::tempdir().unwrap();
    let dom = run_ok(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!(
                "file://{}",
                out.join("snapshots/r3/report.html").display()
            )),
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("data-rendered=\"ok\""), "{dom:.2000}");
    assert!(dom.contains("id=\"nights-chart\""), "the chart is drawn");
    for (run, bytes) in &expected {
        let row = format!("data-run=\"{run}\" data-bytes=\"{bytes}\"");
        assert!(
            dom.contains(&row),
            "{row} in the page's nights: {dom:.3000}"
        );
    }
}
