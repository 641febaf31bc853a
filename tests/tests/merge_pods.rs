//! The merge shared by several pods on the cluster: with `mergePods: 3`, a night with a previous
//! snapshot runs an Indexed join Job of three pods before the merge, and the published night
//! has the ToC they joined and the diff a single merge finds.

use scanjob_e2e::operator::{Harness, read_snapshot, scanjob_yaml_with_worker, small_tree};
use scanjob_operator::crd::Phase;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn three_merge_pods_share_the_joins_and_the_night_has_the_whole_diff() {
    let h = Harness::start("merge-pods").await;
    let root = h.ns.dir.join("tree");
    let files = small_tree(&root, 4, 25);
    h.apply(&scanjob_yaml_with_worker(
        "joins",
        &root,
        &h.url,
        "",
        "  shards: 2\n  mergePods: 3\n",
    ));
    let sj = h.wait_finished("joins", Phase::Succeeded).await;
    let first = sj.status.unwrap().last_run.unwrap().id;

    // One file added, one removed, one renamed (a move), one grown.
    let listed: Vec<_> = walk_files(&root);
    assert!(listed.len() >= 4, "{listed:?}");
    std::fs::write(root.join("added.txt"), b"new").unwrap();
    std::fs::remove_file(&listed[0]).unwrap();
    std::fs::rename(&listed[1], root.join("moved.txt")).unwrap();
    let mut grown = std::fs::read(&listed[2]).unwrap();
    grown.extend_from_slice(b"more bytes");
    std::fs::write(&listed[2], grown).unwrap();

    let sj = h
        .run_again("joins", &first, json!({"scanjob.dev/run-now": "1"}))
        .await;
    let status = sj.status.unwrap();
    let second = status.last_run.as_ref().unwrap().id.clone();
    let published = status.last_successful_run.unwrap();
    assert!(published.snapshot.contains(&second), "{published:?}");
    assert_eq!(published.files, files as i64);

    let snap = read_snapshot(&published.snapshot);
    // The ToC is the partitions' rows: their join passes write below merged/<pass>/.
    let toc: Vec<&str> = snap["manifest"]["toc_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for pass in 0..3 {
        assert!(
            toc.iter()
                .any(|p| p.starts_with(&format!("toc/{second}/merged/{pass}/"))),
            "no rows of pass {pass}: {toc:?}"
        );
    }
    assert_eq!(snap["kinds"]["file"], files as u64, "{snap}");
    assert_eq!(snap["distinct_paths"], snap["rows"]);
    let diff = &snap["summary"]["growth"]["diff"];
    assert_eq!(
        diff,
        &json!({"added": 1, "removed": 1, "changed": 2, "moved": 1}),
        "{diff}"
    );
    let jobs = scanjob_e2e::operator::job_names(&h.ns, "joins").await;
    assert!(
        jobs.contains(&format!("joins-{second}-join")),
        "a join Job: {jobs:?}"
    );
    h.delete().await;
}

/// The regular files below `root`, sorted.
fn walk_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                dirs.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}
