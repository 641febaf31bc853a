//! `scanjob report`: its numbers against DuckDB over the same Parquet files, the atime check on
//! trees with and without real read times, and `report.html` rendered in headless Chromium.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

struct Snapshot {
    out: PathBuf,
    _dir: tempfile::TempDir,
}

/// A 20 k-file mktree tree (timestamps spread over ten years, a realistic mix of extensions,
/// owners and sizes; atime after mtime for most files) with a set of 10 MiB sparse files, then
/// changed (the set copied, files removed) and scanned again: the second snapshot has growth,
/// a diff and a duplicate tree. Made once per test binary.
fn mktree_snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        mktree(&root, 20_000);
        let sparse_set = |name: &str| {
            let set = root.join("datasets_000/extra").join(name);
            std::fs::create_dir_all(&set).unwrap();
            for i in 0..10 {
                let file = std::fs::File::create(set.join(format!("x{i}.bin"))).unwrap();
                file.set_len(10 << 20).unwrap();
            }
        };
        sparse_set("set_a");
        let out = dir.path().join("toc");
        let opts = ["--shards", "2", "--project-level", "2"];
        scan(&root, &out, &[&["--run", "r1"][..], &opts].concat());
        sparse_set("set_b");
        std::fs::remove_file(root.join("datasets_000/extra/set_a/x0.bin")).unwrap();
        std::fs::remove_file(root.join("datasets_000/extra/set_b/x0.bin")).unwrap();
        scan(&root, &out, &[&["--run", "r2"][..], &opts].concat());
        Snapshot { out, _dir: dir }
    })
}

fn mktree(root: &Path, files: u32) {
    run_ok(
        Command::new("python3")
            .arg(shared_dir().join("bench/mktree.py"))
            .arg(root)
            .args(["--files", &files.to_string(), "--seed", "11", "--jobs", "2"]),
    );
}

fn report_json(out: &Path) -> Value {
    let output = run_ok(scanjob().arg("report").arg(out).arg("--json"));
    serde_json::from_slice(&output.stdout).expect("report --json prints JSON")
}

#[test]
fn report_numbers_equal_duckdb_over_the_same_files() {
    let snap = mktree_snapshot();
    let report = report_json(&snap.out);
    let manifest = snap.out.join("snapshots/r2/manifest.json");
    let duck = run_ok(
        Command::new(python())
            .arg(manifest_dir().join("tests/report_numbers.py"))
            .arg(&snap.out)
            .arg(&manifest)
            .arg(report["created"].as_str().unwrap()),
    );
    let duck: Value = serde_json::from_slice(&duck.stdout).expect("report_numbers.py prints JSON");
    for key in [
        "by_extension",
        "by_project",
        "top_directories",
        "top_extensions",
        "top_owners",
        "top_projects",
        "age",
    ] {
        assert_eq!(report[key], duck[key], "{key}");
    }
    for key in ["files", "bytes", "directories", "symlinks"] {
        assert_eq!(report["totals"][key], duck["totals"][key], "totals.{key}");
    }
    assert!(report["totals"]["files"].as_u64().unwrap() >= 20_000);
    assert_eq!(report["growth"]["previous_run"], "r1");
    assert_eq!(
        report["growth"]["diff"]["added"], 10,
        "set_b and its 9 files"
    );
    assert_eq!(report["growth"]["diff"]["removed"], 1, "set_a/x0.bin");
    let trees = &report["duplicates"]["top_trees"];
    assert_eq!(
        trees[0]["dirs"],
        serde_json::json!(["datasets_000/extra/set_a", "datasets_000/extra/set_b"])
    );
    assert_eq!(trees[0]["wasted_bytes"], 9 * (10u64 << 20));

    // The terminal report says the same numbers.
    let text = run_ok(scanjob().arg("report").arg(&snap.out));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(&format!("files {}", duck["totals"]["files"])),
        "{text}"
    );
    let top_ext = duck["top_extensions"]["by_files"][0]["key"]
        .as_str()
        .unwrap();
    assert!(text.contains(top_ext), "{text}");
    assert!(text.contains("since r1:"), "{text}");
}

#[test]
fn atime_check_tells_real_read_times_from_untracked_ones() {
    let snap = mktree_snapshot();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(snap.out.join("snapshots/r2/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["atime_reliable"], true,
        "mktree spreads atimes after mtimes"
    );

    // The same kind of tree with every atime set to its mtime, as a file system that does not
    // track reads leaves it.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    mktree(&root, 3_000);
    run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import os, sys\n\
         for d, _, fs in os.walk(sys.argv[1]):\n\
         \x20   for f in fs:\n\
         \x20       p = os.path.join(d, f); st = os.lstat(p)\n\
         \x20       os.utime(p, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)\n",
            )
            .arg(&root),
    );
    let out = tmp.path().join("toc");
    scan(&root, &out, &["--run", "r1"]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("snapshots/r1/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["atime_reliable"], false);
    let report = report_json(&out);
    assert_eq!(report["atime"]["equal_mtime"], 1.0);
    let text = String::from_utf8(run_ok(scanjob().arg("report").arg(&out)).stdout).unwrap();
    assert!(text.contains("NOT tracked"), "{text}");
}

#[test]
fn report_html_renders_in_headless_chromium() {
    let snap = mktree_snapshot();
    let page = snap.out.join("snapshots/r2/report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    for external in ["src=\"http", "href=\"http", "src=\"//", "@import", "url("] {
        assert!(!html.contains(external), "self-contained: {external}");
    }
    let profile = tempfile::tempdir().unwrap();
    let chromium = |extra: &[&str]| {
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1500",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()));
        run_ok(&mut cmd)
    };
    let dom = String::from_utf8(chromium(&["--dump-dom"]).stdout).unwrap();
    assert!(
        dom.contains("data-rendered=\"ok\""),
        "the page's script ran to the end: {dom:.2000}"
    );
    assert!(!dom.contains("data-error"), "no script error: {dom:.2000}");
    // The script drew the totals and the top lists from the embedded summary.
    assert!(dom.contains("class=\"card\""), "{dom:.2000}");
    assert!(dom.matches("class=\"bar").count() >= 10, "bars drawn");

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 20_000,
        "a page with content, not a blank one: {} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}
