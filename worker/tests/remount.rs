//! The ToC's `dev` is the same after a remount (`fs::identity`): a tree whose file system is
//! mounted again under another kernel device number between two nights keeps its hash cache
//! and sees a rename as one move, as it would on the next node or the next night's pod of an
//! NFS mount. The mount is a FUSE one (`slowfs`, passing the backing tree's inode numbers
//! through), below the scan root beside files on the root's own file system.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use serde_json::Value;

use common::{SlowFs, latest_manifest, read_batches, scan};

/// `dev` of every ToC row of the latest snapshot, by path.
fn devs(out: &Path) -> BTreeMap<String, i64> {
    let manifest = latest_manifest(out);
    let mut devs = BTreeMap::new();
    for b in read_batches(out, &manifest["toc_files"]) {
        let paths = b
            .column(b.schema().index_of("path_display").unwrap())
            .clone();
        let dev = b.column(b.schema().index_of("dev").unwrap()).clone();
        let (paths, dev) = (paths.as_string::<i32>(), dev.as_primitive::<Int64Type>());
        for i in 0..b.num_rows() {
            devs.insert(paths.value(i).to_owned(), dev.value(i));
        }
    }
    devs
}

fn night(root: &Path, out: &Path, run: &str) -> Value {
    scan(
        root,
        out,
        &[
            "--run",
            run,
            "--duplicate-min-size",
            "1",
            "--hash-bytes",
            "1000000000",
        ],
    );
    let summary = out.join(format!("snapshots/{run}/summary.json"));
    serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap()
}

#[test]
fn a_tree_mounted_again_under_another_device_keeps_its_hash_cache_and_sees_a_move() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing");
    for sub in ["copies", "unique"] {
        std::fs::create_dir_all(backing.join(sub)).unwrap();
    }
    let copy = vec![7u8; 20_000];
    std::fs::write(backing.join("copies/one.bin"), &copy).unwrap();
    std::fs::write(backing.join("copies/two.bin"), &copy).unwrap();
    std::fs::write(backing.join("unique/data.csv"), b"a,b\n1,2\n").unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("local.txt"), b"on the root's own file system").unwrap();
    let mountpoint = root.join("mounted");
    let out = dir.path().join("out");

    let mount = SlowFs::mount(&backing, &mountpoint, 0);
    let first_dev = std::fs::metadata(&mountpoint).unwrap().dev();
    let s = night(&root, &out, "r1");
    let h = &s["duplicates"]["hashing"];
    assert_eq!(
        (h["files"].as_u64(), h["cache_hits"].as_u64()),
        (Some(2), Some(0)),
        "{h}"
    );
    let night1 = devs(&out);
    assert_eq!(night1["local.txt"], 0, "{night1:?}");
    let mounted = night1["mounted/copies/one.bin"];
    assert!(mounted > 0, "{night1:?}");
    assert_ne!(mounted as u64, first_dev, "not the kernel's number");
    // The mount point's own row is the mounted file system's root.
    for (path, dev) in &night1 {
        let want = if path == "mounted" || path.starts_with("mounted/") {
            mounted
        } else {
            0
        };
        assert_eq!(*dev, want, "{path}");
    }
    drop(mount);

    // Another FUSE mount takes the freed device number first, so the tree comes back under a
    // new one; and one file is renamed meanwhile.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let _blocker = SlowFs::mount(&empty, &dir.path().join("blocker"), 0);
    let _mount = SlowFs::mount(&backing, &mountpoint, 0);
    let second_dev = std::fs::metadata(&mountpoint).unwrap().dev();
    assert_ne!(first_dev, second_dev, "the remount has another st_dev");
    std::fs::rename(
        backing.join("unique/data.csv"),
        backing.join("unique/renamed.csv"),
    )
    .unwrap();

    let s = night(&root, &out, "r2");
    let h = &s["duplicates"]["hashing"];
    assert_eq!(h["cache_hits"], 2, "both copies hashed on night 1: {h}");
    assert_eq!(h["bytes_read"], 0, "{h}");
    let diff = &s["growth"]["diff"];
    assert_eq!(
        (
            diff["moved"].as_u64(),
            diff["added"].as_u64(),
            diff["removed"].as_u64()
        ),
        (Some(1), Some(0), Some(0)),
        "one rename is one move, not a file removed and one added: {diff}"
    );
    let night2 = devs(&out);
    assert_eq!(night2["mounted/unique/renamed.csv"], mounted);
    assert_eq!(night2["mounted/copies/two.bin"], mounted);
}
