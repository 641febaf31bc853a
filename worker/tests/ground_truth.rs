//! `scanjob run` against ground truth: the generator's summary and GNU find.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;

use common::*;

#[test]
fn counts_bytes_and_extensions_match_the_generator() {
    let tree = nasty_tree();
    let out = tempfile::tempdir().unwrap();
    let summary = scan(&tree.root, out.path(), &[]);
    let rows = toc_rows(out.path());
    let kinds = count_by(&rows, |r| r.kind.clone());
    let truth = &tree.summary;
    assert_eq!(kinds["file"], truth["kinds"]["regular"].as_u64().unwrap());
    assert_eq!(kinds["dir"], truth["kinds"]["dir"].as_u64().unwrap());
    assert_eq!(
        kinds["symlink"],
        truth["kinds"]["symlink"].as_u64().unwrap()
    );
    assert_eq!(kinds["fifo"], truth["kinds"]["fifo"].as_u64().unwrap());
    assert_eq!(kinds["socket"], truth["kinds"]["socket"].as_u64().unwrap());
    let files: Vec<&Row> = rows.iter().filter(|r| r.kind == "file").collect();
    let bytes: u64 = files.iter().map(|r| r.size).sum();
    assert_eq!(bytes, truth["total_apparent_bytes"].as_u64().unwrap());
    let ext = count_by(&files, |r| {
        if r.extension.is_empty() {
            String::new()
        } else {
            format!(".{}", r.extension)
        }
    });
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in truth["ext_counts"].as_object().unwrap() {
        // "a." has the extension "." for splitext and none for us: both mean "no real extension".
        let key = if k == "." { String::new() } else { k.clone() };
        *expected.entry(key).or_default() += v.as_u64().unwrap();
    }
    assert_eq!(ext, expected);
    // The summary the command prints agrees with the table.
    assert_eq!(summary["files"].as_u64().unwrap(), kinds["file"]);
    assert_eq!(summary["bytes"].as_u64().unwrap(), bytes);
    // Hard links are separate rows sharing one inode.
    let links: Vec<&&Row> = files.iter().filter(|r| r.nlink == 3).collect();
    assert_eq!(links.len(), 3, "hard/orig.h5 has two more names");
    assert!(links.iter().all(|r| r.inode == links[0].inode));
}

#[test]
fn every_path_is_there_byte_exact_beyond_path_max() {
    let tree = nasty_tree();
    let out = tempfile::tempdir().unwrap();
    scan(&tree.root, out.path(), &[]);
    let rows = toc_rows(out.path());
    let ours: Vec<Vec<u8>> = rows.iter().map(|r| r.path.clone()).collect();
    let unique: BTreeSet<Vec<u8>> = ours.iter().cloned().collect();
    assert_eq!(unique.len(), ours.len(), "no path twice");
    assert_same_paths("scan of the nasty tree", &unique, &find_paths(&tree.root));

    let non_utf8: Vec<&Row> = rows
        .iter()
        .filter(|r| std::str::from_utf8(&r.path).is_err())
        .collect();
    assert!(!non_utf8.is_empty(), "the tree has non-UTF-8 names");
    for r in &non_utf8 {
        assert!(!r.path_is_utf8);
        assert!(r.path_display.contains('\u{FFFD}'), "{:?}", r.path_display);
    }
    let deepest = rows.iter().map(|r| r.path.len()).max().unwrap();
    assert!(
        deepest > 4096,
        "the deep chain is complete beyond PATH_MAX ({deepest} bytes)"
    );
    let huge = rows
        .iter()
        .filter(|r| r.dirname == "zz_nasty/huge_dir")
        .count();
    assert_eq!(huge, 200_000);
}

#[test]
fn odd_timestamps_are_exact() {
    let tree = nasty_tree();
    let out = tempfile::tempdir().unwrap();
    scan(&tree.root, out.path(), &[]);
    let rows = toc_rows(out.path());
    let times: Vec<&Row> = rows
        .iter()
        .filter(|r| r.dirname == "zz_nasty/times")
        .collect();
    assert!(times.len() >= 3);
    let mut before_1970 = false;
    for r in times {
        let meta = std::fs::symlink_metadata(tree.root.join(&r.path_display)).unwrap();
        // The table keeps microseconds, rounded down (before 1970 too).
        let expected = (meta.mtime() * 1_000_000_000 + meta.mtime_nsec()).div_euclid(1000);
        assert_eq!(r.mtime, Some(expected), "{}", r.path_display);
        before_1970 |= expected < 0;
    }
    assert!(before_1970, "a timestamp before 1970 is among them");
}

#[test]
fn shards_of_one_plan_never_overlap_and_cover_the_tree() {
    let tree = nasty_tree();
    let truth = find_paths(&tree.root);
    for shards in [2u32, 3, 8, 16] {
        let out = tempfile::tempdir().unwrap();
        let summary = scan(&tree.root, out.path(), &["--shards", &shards.to_string()]);
        assert_eq!(summary["shards"].as_u64().unwrap(), u64::from(shards));
        let rows = toc_rows(out.path());
        let paths: Vec<Vec<u8>> = rows.iter().map(|r| r.path.clone()).collect();
        let unique: BTreeSet<Vec<u8>> = paths.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            paths.len(),
            "{shards} shards: a path appears twice"
        );
        assert_eq!(unique, truth, "{shards} shards: not the whole tree");
        let used: BTreeSet<u32> = rows.iter().map(|r| r.shard).collect();
        assert_eq!(
            used.len() as u32,
            shards,
            "{shards} shards: every shard has rows"
        );
    }
}

#[test]
fn a_second_run_balances_by_the_first_snapshot() {
    let tree = nasty_tree();
    let out = tempfile::tempdir().unwrap();
    let first = scan(&tree.root, out.path(), &["--shards", "4", "--run", "first"]);
    assert_eq!(first["balanced_by"], "top-level-count");
    let second = scan(
        &tree.root,
        out.path(),
        &["--shards", "4", "--run", "second"],
    );
    assert_eq!(second["balanced_by"], "previous-snapshot");
    assert!(
        second["estimated_imbalance"].as_f64().unwrap() <= 1.15,
        "{second}"
    );
    assert_eq!(second["files"], first["files"]);
    assert_eq!(latest_manifest(out.path())["run"], "second");
}

fn error_rows(out: &std::path::Path) -> Vec<(String, String, i32)> {
    let manifest = latest_manifest(out);
    let mut errors = Vec::new();
    for file in manifest["error_files"].as_array().unwrap() {
        let f = std::fs::File::open(out.join(file["path"].as_str().unwrap())).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            use arrow_array::cast::AsArray;
            let b = batch.unwrap();
            let paths = b.column(1).as_string::<i32>();
            let ops = b.column(2).as_dictionary::<arrow_array::types::Int8Type>();
            let errno = b.column(3).as_primitive::<arrow_array::types::Int32Type>();
            for i in 0..b.num_rows() {
                let op = ops
                    .values()
                    .as_string::<i32>()
                    .value(ops.keys().value(i) as usize);
                errors.push((paths.value(i).to_string(), op.to_string(), errno.value(i)));
            }
        }
    }
    errors
}

#[test]
fn mode_000_entries_are_rows_for_root_and_error_rows_without_privileges() {
    let tree = nasty_tree();
    let as_root = rustix::process::geteuid().is_root();
    let out = tempfile::tempdir().unwrap();
    std::fs::set_permissions(out.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let privileged_rows = if as_root {
        scan(&tree.root, out.path(), &["--run", "root"]);
        let rows = toc_rows(out.path());
        let inside = rows
            .iter()
            .filter(|r| r.dirname == "zz_nasty/locked_dir")
            .count();
        assert_eq!(inside, 3, "root reads the mode-000 directory");
        assert!(error_rows(out.path()).is_empty());
        Some(rows)
    } else {
        None
    };
    // Without the capability: nobody's uid, no groups, no capabilities.
    let unprivileged = tempfile::tempdir().unwrap();
    std::fs::set_permissions(unprivileged.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut cmd = if as_root {
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_scanjob"));
        c
    } else {
        scanjob()
    };
    let output = run_ok(
        cmd.arg("run")
            .arg(&tree.root)
            .arg("--out")
            .arg(unprivileged.path())
            .args(["--json", "--run", "nobody"]),
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let errors = error_rows(unprivileged.path());
    assert!(errors.contains(&("zz_nasty/locked_dir".to_string(), "opendir".to_string(), 13)));
    assert!(
        errors
            .iter()
            .all(|(_, op, errno)| op == "opendir" && *errno == 13),
        "{errors:?}"
    );
    assert_eq!(
        summary["errors_by_kind"]["permission_denied"].as_u64(),
        Some(errors.len() as u64)
    );
    let rows = toc_rows(unprivileged.path());
    assert!(
        rows.iter().any(|r| r.path_display == "zz_nasty/locked_dir"),
        "the directory itself is a row"
    );
    assert!(
        rows.iter()
            .any(|r| r.path_display == "zz_nasty/locked_file.dat")
    );
    if let Some(privileged) = privileged_rows {
        // What nobody can see: every entry whose ancestors all grant others r and x; an error row
        // for each directory that is visible but does not.
        let open: BTreeSet<&str> = privileged
            .iter()
            .filter(|r| r.kind == "dir" && r.mode & 0o005 == 0o005)
            .map(|r| r.path_display.as_str())
            .collect();
        let reachable = |r: &&Row| {
            let mut dir = r.dirname.as_str();
            while !dir.is_empty() {
                if !open.contains(dir) {
                    return false;
                }
                dir = dir.rsplit_once('/').map_or("", |(parent, _)| parent);
            }
            true
        };
        let expected_rows = privileged.iter().filter(reachable).count();
        let expected_errors: BTreeSet<String> = privileged
            .iter()
            .filter(reachable)
            .filter(|r| r.kind == "dir" && !open.contains(r.path_display.as_str()))
            .map(|r| r.path_display.clone())
            .collect();
        let got_errors: BTreeSet<String> = errors.iter().map(|e| e.0.clone()).collect();
        assert_eq!(got_errors, expected_errors);
        assert_eq!(
            rows.len(),
            expected_rows,
            "every entry nobody can reach is a row"
        );
    }
}

#[test]
fn a_directory_that_vanishes_after_planning_is_counted_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    for d in ["keep", "gone/deeper"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for i in 0..300 {
        for d in ["keep", "gone", "gone/deeper"] {
            std::fs::write(root.join(d).join(format!("f{i}.txt")), b"x").unwrap();
        }
    }
    std::fs::write(root.join("top.txt"), b"x").unwrap();
    let out = tmp.path().join("toc");
    let plan = run_ok(
        scanjob()
            .arg("plan")
            .arg(&root)
            .args(["--shards", "2", "--run", "r1", "--json", "--out"])
            .arg(&out),
    );
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let plan_url = plan["plan"].as_str().unwrap();
    let plan_doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("runs/r1/plan.json")).unwrap()).unwrap();
    assert!(
        plan_doc.to_string().contains("\"gone\""),
        "the planner cut below the root: {plan_doc}"
    );
    std::fs::remove_dir_all(root.join("gone")).unwrap();
    for index in ["0", "1"] {
        run_ok(scanjob().args(["scan", "--plan", plan_url, "--index", index, "--json"]));
    }
    let merged = run_ok(
        scanjob()
            .args(["merge", "--json", "--run"])
            .arg(out.join("runs/r1")),
    );
    let manifest: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap();
    let vanished = manifest["errors_by_kind"]["vanished"].as_u64().unwrap_or(0);
    assert!(vanished >= 1, "{manifest}");
    assert_eq!(
        manifest["errors"].as_u64().unwrap(),
        vanished,
        "only vanished errors: {manifest}"
    );
    assert_eq!(manifest["files"], 301, "keep/* and top.txt");
    let out_path = out.as_path();
    for (path, op, errno) in error_rows(out_path) {
        assert!(path.starts_with("gone"), "{path} {op}");
        assert_eq!(errno, 2, "ENOENT for {path}");
    }
}
