//! The operations budget, the deadline and progress lines of a shard, through the real binary:
//! a budget holds over a run, a shard that cannot finish in time exits retryable and says why,
//! and a budget of zero or less is refused.

mod common;

use std::path::Path;
use std::time::Instant;

use common::{run_ok, scanjob};
use serde_json::Value;

/// `dirs` directories of `files` empty files each; returns the entries below `root`.
fn tree(root: &Path, dirs: usize, files: usize) -> u64 {
    for d in 0..dirs {
        let dir = root.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            std::fs::write(dir.join(format!("f{f}")), b"").unwrap();
        }
    }
    (dirs * (files + 1)) as u64
}

#[test]
fn a_budget_holds_over_a_run_and_the_report_counts_the_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    let entries = tree(&root, 4, 100);
    let started = Instant::now();
    let out = run_ok(
        scanjob()
            .arg("run")
            .arg(&root)
            .arg("--out")
            .arg(tmp.path().join("toc"))
            .args(["--threads", "8", "--max-ops-per-second", "500", "--json"]),
    );
    let wall = started.elapsed().as_secs_f64();
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let calls = summary["politeness"]["calls"].as_u64().unwrap();
    // One stat per entry; per directory (and the root) one open and two getdents64 calls,
    // the second finding the end.
    assert_eq!(calls, entries + (4 + 1) * 3, "{summary}");
    assert_eq!(summary["politeness"]["max_ops_per_second"], 500.0);
    // Paced slots, three for each of the 5 directory opens: the last call cannot come before
    // (slots - 1) / rate seconds.
    let floor = (calls + 5 * 2 - 1) as f64 / 500.0;
    assert!(
        wall >= floor,
        "{calls} calls in {wall:.2} s beat 500/s ({floor:.2} s)"
    );
    assert_eq!(summary["files"], 400, "{summary}");
}

/// A first run's plan counts the top levels with many threads at once, and keeps the budget:
/// every directory listed once, the same plan as one thread makes, and no faster than the budget.
#[test]
fn a_first_plan_s_top_level_count_keeps_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    tree(&root, 300, 2);
    let plan = |threads: &str, budget: Option<&str>| {
        let out = tmp.path().join(format!("out-{threads}"));
        let mut cmd = scanjob();
        cmd.arg("plan").arg(&root).arg("--out").arg(&out).args([
            "--shards",
            "4",
            "--run",
            "r1",
            "--threads",
            threads,
            "--json",
        ]);
        if let Some(budget) = budget {
            cmd.args(["--max-ops-per-second", budget]);
        }
        let started = Instant::now();
        let summary: Value = serde_json::from_slice(&run_ok(&mut cmd).stdout).unwrap();
        let wall = started.elapsed().as_secs_f64();
        let plan: Value =
            serde_json::from_slice(&std::fs::read(out.join("runs/r1/plan.json")).unwrap()).unwrap();
        assert_eq!(plan["balanced_by"], "top-level-count", "{plan}");
        (summary, plan["shards"].clone(), wall)
    };
    let (one, one_shards, _) = plan("1", None);
    let (many, many_shards, wall) = plan("8", Some("400"));
    // The root's device, and per directory (the root and its 300) one open and two getdents64
    // calls, the second finding the end.
    assert_eq!(one["planning_calls"], 1 + 301 * 3, "{one}");
    assert_eq!(many["planning_calls"], 1 + 301 * 3, "{many}");
    assert_eq!(one_shards, many_shards, "eight threads plan what one does");
    // Three slots for each of the 301 directory opens.
    let slots = 1 + 301 * 3 + 301 * 2;
    let floor = (slots - 1) as f64 / 400.0;
    assert!(
        wall >= floor,
        "{slots} slots in {wall:.2} s beat 400/s ({floor:.2} s)"
    );
}

#[test]
fn a_shard_past_its_deadline_reports_progress_and_exits_retryable() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    tree(&root, 2, 200);
    let out = tmp.path().join("toc");
    run_ok(
        scanjob()
            .arg("plan")
            .arg(&root)
            .args(["--run", "r1", "--out"])
            .arg(&out),
    );
    let log = tmp.path().join("termination-log");
    let started = Instant::now();
    // 400 entries at 20 calls per second would take 20 s: the 3 s deadline comes first.
    let result = scanjob()
        .arg("scan")
        .arg("--plan")
        .arg(out.join("runs/r1/plan.json"))
        .args(["--index", "0", "--max-ops-per-second", "20"])
        .args(["--deadline-seconds", "3", "--progress-seconds", "1"])
        .arg("--termination-log")
        .arg(&log)
        .output()
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(
        wall < 15.0,
        "the deadline did not stop the shard: {wall:.1} s"
    );
    assert!(
        stderr.contains("scanjob: shard 0: "),
        "no progress line: {stderr}"
    );
    assert!(stderr.contains("did not finish within 3 s"), "{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&log).unwrap()).unwrap();
    assert_eq!(report["error"], "deadline_exceeded");
    assert_eq!(report["retryable"], true);
    assert!(
        !out.join("runs/r1/shards/0/_SUCCESS.json").exists(),
        "a shard that gave up is not marked done"
    );
}

#[test]
fn a_budget_of_zero_or_less_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in [
        "--max-ops-per-second=0",
        "--max-ops-per-second=-5",
        "--latency-guard-ms=0",
    ] {
        let result = scanjob()
            .arg("run")
            .arg(tmp.path())
            .arg("--out")
            .arg(tmp.path().join("toc"))
            .arg(bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(3), "{bad}: {stderr}");
        let flag = bad.split('=').next().unwrap();
        assert!(
            stderr.contains(flag),
            "{bad}: the message names the flag: {stderr}"
        );
        assert!(!tmp.path().join("toc").exists(), "{bad}: nothing written");
    }
}
