//! The walker in-process, where a test can act in the middle of a walk.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use scanjob_worker::phase::open_root;
use scanjob_worker::walk::{ShardBatch, WalkCounters, WalkOptions, WalkStart, walk};

#[test]
fn files_deleted_while_their_directory_is_listed_are_vanished_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("churn");
    std::fs::create_dir(&dir).unwrap();
    let n = 20_000u64;
    for i in 0..n {
        std::fs::File::create(dir.join(format!("file-{i:06}.dat"))).unwrap();
    }
    let (_, root) = open_root(tmp.path()).unwrap();
    let options = WalkOptions {
        threads: 1,
        one_file_system: false,
        exclude: None,
        batch_rows: 100,
        project_level: 1,
        seen_at: 0,
        shard: 0,
    };
    let counters = WalkCounters::default();
    let deleted = AtomicBool::new(false);
    let rows = std::sync::atomic::AtomicU64::new(0);
    // The first full batch is handed over while the rest of the directory's names sit in the
    // walker's getdents buffer: deleting the files now makes their stat fail with ENOENT.
    walk(
        Arc::clone(&root),
        vec![WalkStart::Subtree(Vec::new())],
        &options,
        &counters,
        &|batch| {
            if let ShardBatch::Toc(b) = batch {
                rows.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
                if !deleted.swap(true, Ordering::Relaxed) {
                    for entry in std::fs::read_dir(&dir).unwrap() {
                        std::fs::remove_file(entry.unwrap().path()).unwrap();
                    }
                }
            }
            true
        },
    );
    let vanished = counters.vanished.load(Ordering::Relaxed);
    let files = counters.files.load(Ordering::Relaxed);
    assert!(
        vanished > 0,
        "entries listed before the deletion vanish at stat"
    );
    assert_eq!(
        counters.errors.load(Ordering::Relaxed),
        vanished,
        "and nothing else fails"
    );
    assert!(
        files >= 99 && files + vanished <= n,
        "files {files}, vanished {vanished}"
    );
    assert_eq!(
        rows.load(Ordering::Relaxed),
        files + 1,
        "a row per file and one for the directory"
    );
}
