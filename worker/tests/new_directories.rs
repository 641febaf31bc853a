//! Directories the plan does not know — new since the snapshot it balances by, or created between
//! planning and scanning — are walked by exactly one shard: the one whose slice of the
//! files-only parent holds their name. Ground truth is GNU find over the tree as it is when the
//! shards walk it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::*;
use serde_json::Value;

/// A tree the planner has to cut: files at the top, six projects each heavier than a grain (a
/// tenth of a shard's share), and one directory ("hot") heavy enough to be sliced. With four
/// shards, "projN/sub0" is cut again and "projN/sub1" stays a subtree piece.
fn make_tree(root: &Path) {
    let files = |dir: &Path, n: usize| {
        std::fs::create_dir_all(dir).unwrap();
        for i in 0..n {
            std::fs::File::create(dir.join(format!("f{i:04}.dat"))).unwrap();
        }
    };
    files(root, 20);
    for p in 0..6 {
        let project = root.join(format!("proj{p}"));
        files(&project, 40);
        files(&project.join("sub0"), 600);
        for s in 1..4 {
            files(&project.join(format!("sub{s}")), 500);
        }
        files(&project.join("sub0/deep"), 200);
    }
    files(&root.join("hot"), 8000);
}

/// One new directory with files and two levels of subdirectories below `parent`.
fn add_new_directory(parent: &Path, name: &str, files: usize) {
    let dir = parent.join(name);
    for (sub, n) in [("", files), ("nested", 10), ("nested/deeper", 3)] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..n {
            std::fs::File::create(d.join(format!("new{i:03}.txt"))).unwrap();
        }
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A files-only directory of a plan: its path and, when sliced, (part, of).
type FilesOnlyPiece = (String, Option<(u64, u64)>);

/// Every directory a plan lists files-only, and the subtree roots.
fn plan_pieces(plan: &Value) -> (Vec<FilesOnlyPiece>, BTreeSet<String>) {
    let mut files_only = Vec::new();
    let mut subtrees = BTreeSet::new();
    for shard in plan["shards"].as_array().unwrap() {
        for f in shard["files_only"].as_array().unwrap() {
            let slice = f
                .get("slice")
                .map(|s| (s["part"].as_u64().unwrap(), s["of"].as_u64().unwrap()));
            files_only.push((f["path"].as_str().unwrap().to_string(), slice));
        }
        for s in shard["subtrees"].as_array().unwrap() {
            subtrees.insert(s.as_str().unwrap().to_string());
        }
    }
    (files_only, subtrees)
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// The latest snapshot holds every path below `root` exactly once, and every new directory's
/// contents were walked by the shard that wrote the directory's own row.
fn assert_exactly_the_tree(root: &Path, out: &Path, new_dirs: &[String], what: &str) {
    let rows = toc_rows(out);
    let paths: Vec<Vec<u8>> = rows.iter().map(|r| r.path.clone()).collect();
    let unique: BTreeSet<Vec<u8>> = paths.iter().cloned().collect();
    let mut seen = BTreeSet::new();
    let twice: Vec<String> = paths
        .iter()
        .filter(|p| !seen.insert(*p))
        .take(5)
        .map(|p| String::from_utf8_lossy(p).into())
        .collect();
    assert!(twice.is_empty(), "{what}: listed twice: {twice:?}");
    assert_same_paths(what, &unique, &find_paths(root));
    // Regular files by themselves, against find -type f.
    let files: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.kind == "file")
        .map(|r| r.path_display.clone())
        .collect();
    let find_files: BTreeSet<String> = find_files_paths(root);
    assert_eq!(files, find_files, "{what}: regular files");
    let shard_of: BTreeMap<&str, u32> = rows
        .iter()
        .map(|r| (r.path_display.as_str(), r.shard))
        .collect();
    for dir in new_dirs {
        let own = shard_of[dir.as_str()];
        let prefix = format!("{dir}/");
        let inside: BTreeSet<u32> = rows
            .iter()
            .filter(|r| r.path_display.starts_with(&prefix))
            .map(|r| r.shard)
            .collect();
        assert_eq!(
            inside,
            BTreeSet::from([own]),
            "{what}: {dir} is a row of shard {own}; its contents are walked by that shard"
        );
    }
}

fn find_files_paths(root: &Path) -> BTreeSet<String> {
    let out = run_ok(std::process::Command::new("find").arg(root).args([
        "-mindepth",
        "1",
        "-type",
        "f",
        "-printf",
        "%P\\0",
    ]));
    out.stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8(p.to_vec()).unwrap())
        .collect()
}

/// New directories at the places a plan splits (the root, each project, a files-only
/// subdirectory, the sliced "hot" directory) and, as a control, inside "projN/sub1", a subtree
/// piece with four shards.
fn add_new_directories(root: &Path) -> Vec<String> {
    let mut new_dirs = vec!["new_top".to_string()];
    add_new_directory(root, "new_top", 50);
    for p in 0..6 {
        for (parent, name) in [
            (format!("proj{p}"), "added"),
            (format!("proj{p}/sub0"), "added_in_sub"),
            (format!("proj{p}/sub1"), "added_in_leaf"),
        ] {
            add_new_directory(&root.join(&parent), name, 50);
            new_dirs.push(format!("{parent}/{name}"));
        }
    }
    // Enough names that they fall into every slice of "hot".
    for k in 0..24 {
        let name = format!("hot_new{k:02}");
        add_new_directory(&root.join("hot"), &name, 5);
        new_dirs.push(format!("hot/{name}"));
    }
    let nested: Vec<String> = new_dirs
        .iter()
        .flat_map(|d| [format!("{d}/nested"), format!("{d}/nested/deeper")])
        .collect();
    new_dirs.extend(nested);
    new_dirs
}

/// Two `scanjob run`s; between them, new directories appear where the second run's plan
/// (balanced by the first snapshot) lists directories files-only.
fn second_run_walks_new_directories_once(shards: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    make_tree(&root);
    let out = tmp.path().join("toc");
    let n = shards.to_string();
    let first = scan(&root, &out, &["--shards", &n, "--run", "first"]);
    assert_exactly_the_tree(&root, &out, &[], &format!("{shards} shards, first run"));

    let new_dirs = add_new_directories(&root);
    let second = scan(&root, &out, &["--shards", &n, "--run", "second"]);
    let plan = read_json(&out.join("runs/second/plan.json"));
    assert_eq!(plan["balanced_by"], "previous-snapshot", "{plan}");
    assert_eq!(second["balanced_by"], "previous-snapshot");
    let (files_only, subtrees) = plan_pieces(&plan);
    let planned: BTreeSet<&str> = files_only
        .iter()
        .map(|(p, _)| p.as_str())
        .chain(subtrees.iter().map(String::as_str))
        .collect();
    for dir in &new_dirs {
        assert!(!planned.contains(dir.as_str()), "{dir} is new: not planned");
    }
    if shards > 1 {
        // The case this test is about: new directories whose parent the plan lists files-only.
        let files_only_dirs: BTreeSet<&str> = files_only.iter().map(|(p, _)| p.as_str()).collect();
        let under_files_only: Vec<&String> = new_dirs
            .iter()
            .filter(|d| files_only_dirs.contains(parent(d)))
            .collect();
        assert!(
            files_only_dirs.contains("") && files_only_dirs.contains("proj0"),
            "the planner split the root and the projects: {plan}"
        );
        assert!(
            under_files_only.len() >= 1 + 6 + 24,
            "new directories under files-only ones: {under_files_only:?}"
        );
        if shards == 4 {
            assert!(files_only_dirs.contains("proj0/sub0"), "{plan}");
            assert!(subtrees.contains("proj0/sub1"), "the control: {plan}");
        }
        let hot_slices: Vec<(u64, u64)> = files_only
            .iter()
            .filter(|(p, _)| p == "hot")
            .map(|(_, s)| s.expect("hot is sliced"))
            .collect();
        assert!(hot_slices.len() >= 2, "hot is sliced: {hot_slices:?}");
        // A new subdirectory of a files-only directory lands in the shard whose slice holds it.
        let hot_shards: BTreeSet<u64> = toc_rows(&out)
            .iter()
            .filter(|r| r.dirname == "hot" && r.kind == "dir")
            .map(|r| u64::from(r.shard))
            .collect();
        assert!(
            hot_shards.len() >= 2,
            "new directories of hot are spread over its slices: {hot_shards:?}"
        );
    } else {
        assert_eq!(subtrees, BTreeSet::from([String::new()]));
        assert!(files_only.is_empty());
    }
    assert_exactly_the_tree(
        &root,
        &out,
        &new_dirs,
        &format!("{shards} shards, second run"),
    );
    let files = find_files_paths(&root).len() as u64;
    assert_eq!(second["files"].as_u64().unwrap(), files);
    assert_eq!(
        files - first["files"].as_u64().unwrap(),
        (new_dirs.len() / 3) as u64 * 13 + 19 * 50 + 24 * 5,
        "the second run sees every new file"
    );
}

#[test]
fn new_directories_under_files_only_directories_are_walked_with_four_shards() {
    second_run_walks_new_directories_once(4);
}

#[test]
fn new_directories_are_walked_exactly_once_with_one_shard() {
    second_run_walks_new_directories_once(1);
}

#[test]
fn new_directories_are_walked_exactly_once_with_seven_shards() {
    second_run_walks_new_directories_once(7);
}

/// The top-level count lists every directory it plans, but the tree may change between the plan
/// and the scan (a Job's pods start later): directories created in between are walked too.
#[test]
fn directories_created_between_plan_and_scan_are_walked_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    make_tree(&root);
    let out = tmp.path().join("toc");
    let shards = 5u32;
    let planned = run_ok(
        scanjob()
            .arg("plan")
            .arg(&root)
            .args(["--shards", &shards.to_string(), "--run", "r1", "--json"])
            .arg("--out")
            .arg(&out),
    );
    let planned: Value = serde_json::from_slice(&planned.stdout).unwrap();
    let plan_url = planned["plan"].as_str().unwrap().to_string();
    let plan = read_json(&out.join("runs/r1/plan.json"));
    assert_eq!(plan["balanced_by"], "top-level-count", "{plan}");
    let (files_only, _) = plan_pieces(&plan);
    let dirs: BTreeSet<String> = files_only.into_iter().map(|(p, _)| p).collect();
    assert!(
        dirs.len() >= 3,
        "the plan lists directories files-only: {plan}"
    );
    let mut new_dirs = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        for k in 0..6 {
            let name = format!("between{i}_{k}");
            add_new_directory(&root.join(dir), &name, 20);
            let path = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            new_dirs.push(format!("{path}/nested"));
            new_dirs.push(format!("{path}/nested/deeper"));
            new_dirs.push(path);
        }
    }
    for index in 0..shards {
        run_ok(scanjob().args([
            "scan",
            "--plan",
            &plan_url,
            "--index",
            &index.to_string(),
            "--json",
        ]));
    }
    run_ok(
        scanjob()
            .args(["merge", "--json", "--run"])
            .arg(out.join("runs/r1")),
    );
    assert_exactly_the_tree(&root, &out, &new_dirs, "top-level count");
}
