//! The walker in-process, where a test can act in the middle of a walk.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use scanjob_worker::fs::root::open_root;
use scanjob_worker::pathbytes::PathBytes;
use scanjob_worker::scan::rows::ErrorKind;
use scanjob_worker::scan::walk::{ShardBatch, WalkCounters, WalkOptions, walk};
use scanjob_worker::shard::{FilesOnly, NameSlice, PlannedDirs, WalkStart};

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
        politeness: Default::default(),
        devices: Default::default(),
    };
    let counters = WalkCounters::default();
    let deleted = AtomicBool::new(false);
    let rows = std::sync::atomic::AtomicU64::new(0);
    // The first full batch is handed over while the rest of the directory's names sit in the
    // walker's getdents buffer: deleting the files now makes their stat fail with ENOENT.
    walk(
        Arc::clone(&root),
        vec![WalkStart::Subtree(Vec::new())],
        &PlannedDirs::new(),
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
    let vanished = counters.errors_of(ErrorKind::Vanished);
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

/// Every path a walk of `starts` (one shard of `plan`) writes a row for.
fn walked_paths(
    root: &Arc<rustix::fd::OwnedFd>,
    starts: Vec<WalkStart>,
    plan: &PlannedDirs,
) -> Vec<Vec<u8>> {
    use arrow_array::cast::AsArray;
    let options = WalkOptions {
        threads: 2,
        one_file_system: false,
        exclude: None,
        batch_rows: 64,
        project_level: 1,
        seen_at: 0,
        shard: 0,
        politeness: Default::default(),
        devices: Default::default(),
    };
    let paths = std::sync::Mutex::new(Vec::new());
    walk(
        Arc::clone(root),
        starts,
        plan,
        &options,
        &WalkCounters::default(),
        &|batch| {
            if let ShardBatch::Toc(b) = batch {
                let column = b.column(b.schema().index_of("path").unwrap()).clone();
                let mut paths = paths.lock().unwrap();
                paths.extend(
                    column
                        .as_binary::<i32>()
                        .iter()
                        .map(|p| p.unwrap().to_vec()),
                );
            }
            true
        },
    );
    paths.into_inner().unwrap()
}

/// A root listed files-only in three name slices, with one known subdirectory assigned as a
/// subtree and twenty the plan does not know: each unknown one is walked whole, by the one slice
/// that holds its name, and the known one only by its own piece.
#[test]
fn a_files_only_slice_walks_the_unplanned_subdirectories_it_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let root_path = tmp.path();
    let mut truth = std::collections::BTreeSet::new();
    let mut add = |path: String, dir: bool| {
        let full = root_path.join(&path);
        if dir {
            std::fs::create_dir(&full).unwrap();
        } else {
            std::fs::File::create(&full).unwrap();
        }
        truth.insert(path.into_bytes());
    };
    for i in 0..30 {
        add(format!("top{i}.txt"), false);
    }
    add("known".into(), true);
    for i in 0..5 {
        add(format!("known/k{i}.txt"), false);
    }
    for n in 0..20 {
        add(format!("new{n}"), true);
        add(format!("new{n}/nested"), true);
        for i in 0..3 {
            add(format!("new{n}/f{i}.txt"), false);
            add(format!("new{n}/nested/g{i}.txt"), false);
        }
    }
    let of = 3;
    let mut shards: Vec<Vec<WalkStart>> = (0..of)
        .map(|part| {
            vec![WalkStart::FilesOnly(FilesOnly {
                path: PathBytes(Vec::new()),
                slice: Some(NameSlice { part, of }),
            })]
        })
        .collect();
    shards.push(vec![WalkStart::Subtree(b"known".to_vec())]);
    let mut plan = PlannedDirs::new();
    for start in shards.iter().flatten() {
        plan.add(start);
    }
    let (_, root) = open_root(root_path).unwrap();
    let mut seen = std::collections::BTreeMap::<Vec<u8>, Vec<usize>>::new();
    for (shard, starts) in shards.into_iter().enumerate() {
        for path in walked_paths(&root, starts, &plan) {
            seen.entry(path).or_default().push(shard);
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, s)| s.len() > 1).collect();
    assert!(twice.is_empty(), "walked more than once: {twice:?}");
    let walked: std::collections::BTreeSet<Vec<u8>> = seen.keys().cloned().collect();
    assert_eq!(walked, truth);
    for n in 0..20 {
        let dir = format!("new{n}");
        let owner = &seen[dir.as_bytes()];
        let part = (0..of)
            .find(|&part| NameSlice { part, of }.contains(dir.as_bytes()))
            .unwrap() as usize;
        assert_eq!(
            owner,
            &vec![part],
            "{dir} is a row of the slice that holds it"
        );
        for inside in [format!("{dir}/nested"), format!("{dir}/nested/g0.txt")] {
            assert_eq!(&seen[inside.as_bytes()], owner, "{inside}");
        }
    }
    let used: std::collections::BTreeSet<usize> = (0..20)
        .map(|n| seen[format!("new{n}").as_bytes()][0])
        .collect();
    assert_eq!(
        used.len(),
        of as usize,
        "the new directories fall into every slice"
    );
}

/// After `ignore`'s `panic_in_parallel`: one walker thread panicking mid-walk (here in the
/// sink, while it holds a task) must end the walk with that panic, not leave the other threads
/// waiting forever for the task it never finished.
#[test]
fn a_panic_in_one_walker_thread_ends_the_walk_with_that_panic() {
    let tmp = tempfile::tempdir().unwrap();
    for d in 0..8 {
        let dir = tmp.path().join(format!("d{d}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..200 {
            std::fs::write(dir.join(format!("f{f}")), b"").unwrap();
        }
    }
    let (_, root) = open_root(tmp.path()).unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let options = WalkOptions {
            threads: 4,
            one_file_system: false,
            exclude: None,
            // A batch every 10 rows: the sink runs inside tasks, not only at the end.
            batch_rows: 10,
            project_level: 1,
            seen_at: 0,
            shard: 0,
            politeness: Default::default(),
            devices: Default::default(),
        };
        let panicked = AtomicBool::new(false);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            walk(
                root,
                vec![WalkStart::Subtree(Vec::new())],
                &PlannedDirs::new(),
                &options,
                &WalkCounters::default(),
                &|_batch| {
                    if !panicked.swap(true, Ordering::SeqCst) {
                        panic!("a sink that fails once");
                    }
                    true
                },
            )
        }));
        let _ = done.send(result.is_err());
    });
    let walk_panicked = finished
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the walk hangs after one thread panicked");
    assert!(walk_panicked, "the thread's panic reaches the caller");
}
