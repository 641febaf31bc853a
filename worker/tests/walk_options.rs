//! What the walk options promise: pruning by name, the project column, and a scan that leaves
//! the tree exactly as it found it.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::*;

#[test]
fn excluded_names_are_pruned_with_everything_below_them() {
    let tree = nasty_tree();
    let out = tempfile::tempdir().unwrap();
    scan(
        &tree.root,
        out.path(),
        &["--exclude", "zz_nasty", "--exclude", "*.log"],
    );
    let ours: BTreeSet<Vec<u8>> = toc_rows(out.path()).into_iter().map(|r| r.path).collect();
    let find = run_ok(Command::new("find").arg(&tree.root).args([
        "-mindepth",
        "1",
        "(",
        "-name",
        "zz_nasty",
        "-o",
        "-name",
        "*.log",
        ")",
        "-prune",
        "-o",
        "-printf",
        "%P\\0",
    ]));
    let truth: BTreeSet<Vec<u8>> = find
        .stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    assert!(truth.len() > 1000);
    assert_eq!(ours, truth);
}

#[test]
fn project_is_the_configured_path_level() {
    let tree = nasty_tree();
    let out = tempfile::tempdir().unwrap();
    scan(&tree.root, out.path(), &["--project-level", "2"]);
    let out_path = out.path();
    let manifest = latest_manifest(out_path);
    let file = manifest["toc_files"][0]["path"].as_str().unwrap();
    let script = "import sys, pyarrow.parquet as pq\n\
        t = pq.read_table(sys.argv[1], columns=['path_display', 'kind', 'project']).to_pylist()\n\
        def want(r):\n\
        \x20   n = r['path_display'].count('/')\n\
        \x20   inside = n >= 2 or (n == 1 and r['kind'] == 'dir')\n\
        \x20   return r['path_display'].split('/')[1] if inside else None\n\
        bad = [r for r in t if r['project'] != want(r)]\n\
        print(len(t), len(bad), bad[:3])";
    let got = run_ok(
        Command::new(python())
            .args(["-c", script])
            .arg(out_path.join(file)),
    );
    let text = String::from_utf8_lossy(&got.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert!(fields[0].parse::<u64>().unwrap() > 1000, "{text}");
    assert_eq!(
        fields[1], "0",
        "rows whose project is not the directory at their second path component: {text}"
    );
}

#[test]
fn a_scan_leaves_directory_access_times_alone() {
    // Directory atimes set far in the past: under relatime, listing a directory would move its
    // atime to now unless it is opened with O_NOATIME.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    for d in ["a/b/c", "d"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in ["a/1.txt", "a/b/2.txt", "a/b/c/3.txt", "d/4.txt"] {
        std::fs::write(root.join(f), b"data").unwrap();
    }
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(946_684_800);
    let dirs = ["a", "a/b", "a/b/c", "d"];
    for d in dirs.iter().map(|d| root.join(d)).chain([root.clone()]) {
        let f = std::fs::File::open(&d).unwrap();
        f.set_times(std::fs::FileTimes::new().set_accessed(old))
            .unwrap();
    }
    let before: Vec<(i64, i64)> = dirs
        .iter()
        .map(|d| std::fs::metadata(root.join(d)).unwrap())
        .map(|m| (m.atime(), m.atime_nsec()))
        .collect();
    let out = tempfile::tempdir().unwrap();
    scan(&root, out.path(), &["--shards", "2"]);
    let after: Vec<(i64, i64)> = dirs
        .iter()
        .map(|d| std::fs::metadata(root.join(d)).unwrap())
        .map(|m| (m.atime(), m.atime_nsec()))
        .collect();
    assert_eq!(before, after);
    assert_eq!(
        toc_rows(out.path()).len(),
        8,
        "four directories and four files"
    );
}
