//! The termination message the operator reads from each pod: one line of JSON with the fields
//! `scanjob::report` documents, for every phase and for failures. Expected values come from
//! the fixture tree as the test builds it, never from scanjob itself.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// A tree of 3 top-level directories: (root, files, directories below the root, file bytes).
fn fixture(dir: &Path) -> (PathBuf, u64, u64, u64) {
    let root = dir.join("tree");
    let mut directories = 0;
    let mut files = 0;
    let mut bytes = 0;
    for d in ["a", "a/x", "a/y", "b", "c", "c/deep", "c/deep/er"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
        directories += 1;
    }
    for (d, n) in [
        ("a/x", 300),
        ("a/y", 50),
        ("b", 400),
        ("c/deep/er", 7),
        ("", 3),
    ] {
        for i in 0..n {
            let content = vec![b'z'; i % 17];
            std::fs::write(root.join(d).join(format!("f{i}.dat")), &content).unwrap();
            files += 1;
            bytes += content.len() as u64;
        }
    }
    (root, files, directories, bytes)
}

/// Runs `cmd` with `--termination-log` and returns (exit code, stderr, parsed message), after
/// checking that the message is one line of at most 4000 bytes.
fn logged(cmd: &mut Command, log: &Path) -> (Option<i32>, String, Value) {
    let _ = std::fs::remove_file(log);
    let out = cmd.arg("--termination-log").arg(log).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr, read_message(log))
}

fn read_message(log: &Path) -> Value {
    let text = std::fs::read_to_string(log).expect("the termination log is written");
    assert!(!text.contains('\n'), "one line: {text:?}");
    assert!(text.len() <= 4000, "{} bytes", text.len());
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn keys(v: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

fn sorted(mut keys: Vec<&str>) -> Vec<&str> {
    keys.sort_unstable();
    keys
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.canonicalize().unwrap().display())
}

#[test]
fn plan_scan_and_merge_report_their_results_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, files, directories, bytes) = fixture(tmp.path());
    let out = tmp.path().join("toc");
    let log = tmp.path().join("termination-log");

    let (code, stderr, plan) = logged(
        scanjob()
            .arg("plan")
            .arg(&root)
            .args(["--shards", "2", "--run", "r1", "--out"])
            .arg(&out),
        &log,
    );
    assert_eq!(code, Some(0), "{stderr}");
    let out_url = file_url(&out);
    assert_eq!(
        keys(&plan),
        sorted(vec![
            "phase",
            "run",
            "plan",
            "shards",
            "balanced_by",
            "estimated_imbalance"
        ])
    );
    assert_eq!(plan["phase"], "plan");
    assert_eq!(plan["run"], "r1");
    assert_eq!(plan["plan"], format!("{out_url}/runs/r1/plan.json"));
    assert_eq!(plan["shards"], 2);
    assert_eq!(plan["balanced_by"], "top-level-count");
    assert!(
        plan["estimated_imbalance"].as_f64().unwrap() >= 1.0,
        "{plan}"
    );
    assert!(out.join("runs/r1/plan.json").is_file());

    let mut scanned = json!({"entries": 0, "files": 0, "directories": 0, "bytes": 0, "errors": 0});
    for index in 0..2u64 {
        let (code, stderr, scan) = logged(
            scanjob()
                .args(["scan", "--index", &index.to_string(), "--plan"])
                .arg(plan["plan"].as_str().unwrap()),
            &log,
        );
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(
            keys(&scan),
            sorted(vec![
                "phase",
                "run",
                "index",
                "entries",
                "files",
                "directories",
                "bytes",
                "errors"
            ])
        );
        assert_eq!(scan["phase"], "scan");
        assert_eq!(scan["run"], "r1");
        assert_eq!(scan["index"], index);
        for key in ["entries", "files", "directories", "bytes", "errors"] {
            let sum = scanned[key].as_u64().unwrap() + scan[key].as_u64().unwrap();
            scanned[key] = json!(sum);
        }
    }
    assert_eq!(
        scanned,
        json!({"entries": files + directories, "files": files, "directories": directories,
               "bytes": bytes, "errors": 0}),
        "the shards' messages add up to the tree"
    );

    let (code, stderr, merge) = logged(
        scanjob().args(["merge", "--run"]).arg(out.join("runs/r1")),
        &log,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        merge,
        json!({
            "phase": "merge",
            "run": "r1",
            "snapshot": format!("{out_url}/snapshots/r1/manifest.json"),
            "files": files,
            "directories": directories,
            "bytes": bytes,
            "errors": 0,
            "missing_shards": [],
        })
    );
    assert!(out.join("snapshots/r1/manifest.json").is_file());
    assert_eq!(latest_manifest(&out)["missing_shards"], json!([]));

    // `run` reports like a merge; the log may also come from the environment.
    let out2 = tmp.path().join("toc2");
    let log2 = tmp.path().join("env-termination-log");
    run_ok(
        scanjob()
            .arg("run")
            .arg(&root)
            .args(["--shards", "3", "--run", "r9", "--out"])
            .arg(&out2)
            .env("SCANJOB_TERMINATION_LOG", &log2),
    );
    let run = read_message(&log2);
    assert_eq!(run["phase"], "run");
    assert_eq!(
        run["snapshot"],
        format!("{}/snapshots/r9/manifest.json", file_url(&out2))
    );
    assert_eq!(
        (&run["files"], &run["directories"], &run["bytes"]),
        (&json!(files), &json!(directories), &json!(bytes))
    );
    assert_eq!(run["missing_shards"], json!([]));
}

#[test]
fn a_failure_reports_its_label_message_and_whether_a_retry_may_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, ..) = fixture(tmp.path());
    let out = tmp.path().join("toc");
    let log = tmp.path().join("termination-log");
    run_ok(
        scanjob()
            .arg("plan")
            .arg(&root)
            .args(["--shards", "2", "--run", "r1", "--out"])
            .arg(&out),
    );
    let failure_keys = sorted(vec!["error", "message", "retryable"]);

    // Bad input: exit 3, not retryable; the message is the stderr line's.
    let (code, stderr, failure) = logged(
        scanjob()
            .args(["scan", "--index", "5", "--plan"])
            .arg(out.join("runs/r1/plan.json")),
        &log,
    );
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(keys(&failure), failure_keys);
    assert_eq!(failure["error"], "index_out_of_range");
    assert_eq!(failure["retryable"], false);
    let message = failure["message"].as_str().unwrap();
    assert!(
        message.starts_with("shard index 5 is out of range: plan r1 has 2 shards"),
        "{message}"
    );
    assert_eq!(stderr.trim_end(), format!("scanjob: error: {message}"));

    // An incomplete run: exit 1, retryable.
    let (code, stderr, failure) = logged(
        scanjob().args(["merge", "--run"]).arg(out.join("runs/r1")),
        &log,
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(keys(&failure), failure_keys);
    assert_eq!(failure["error"], "incomplete");
    assert_eq!(failure["retryable"], true);
    assert_eq!(
        failure["message"],
        "run r1 is not complete: shards [0, 1] have no _SUCCESS.json"
    );

    // A command line that does not parse: exit 3 (the same line fails again), "usage".
    let (code, stderr, failure) =
        logged(scanjob().args(["merge", "--max-missing-shards", "x"]), &log);
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(keys(&failure), failure_keys);
    assert_eq!(failure["error"], "usage");
    assert_eq!(failure["retryable"], false);
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains("--max-missing-shards"),
        "{failure}"
    );
}

#[test]
fn a_first_plan_with_previous_set_to_its_own_output_counts_the_top_levels() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, ..) = fixture(tmp.path());
    let out = tmp.path().join("toc");
    let log = tmp.path().join("termination-log");
    // No latest.json yet (the output does not even exist): balance by a top-level count.
    for (run, balanced_by) in [("r1", "top-level-count"), ("r2", "previous-snapshot")] {
        let (code, stderr, plan) = logged(
            scanjob()
                .arg("plan")
                .arg(&root)
                .args(["--shards", "2", "--run", run, "--out"])
                .arg(&out)
                .arg("--previous")
                .arg(&out),
            &log,
        );
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(plan["balanced_by"], balanced_by, "{run}: {plan}");
        for index in ["0", "1"] {
            run_ok(
                scanjob()
                    .args(["scan", "--index", index, "--plan"])
                    .arg(plan["plan"].as_str().unwrap()),
            );
        }
        run_ok(
            scanjob()
                .args(["merge", "--run"])
                .arg(out.join("runs").join(run)),
        );
    }
    assert_eq!(latest_manifest(&out)["previous_run"], "r1");
}
