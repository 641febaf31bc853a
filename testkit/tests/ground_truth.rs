//! The kit's ground truth against walks that share no code with it: mktree.py's summary against
//! the tree it made, slowfs' passthrough of that tree against the tree itself, and slowfs'
//! generated tree against its summary; each walked with openat and lstat, so also below
//! PATH_MAX.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fmt::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, open, openat, statat};
use scanjob_testkit::{SlowFs, mktree_script, nasty_tree, workspace_dir};
use serde_json::Value;

/// What a walk sees, in the summary's terms.
#[derive(Default, Debug)]
struct Walk {
    kinds: BTreeMap<&'static str, u64>,
    bytes: u64,
    /// Regular files' inodes with their sizes: hard links count once.
    inodes: BTreeMap<u64, u64>,
    ext_counts: BTreeMap<String, u64>,
}

fn walk(root: &Path) -> Walk {
    walk_but(root, None)
}

/// The walk of `root` without the entry at relative path `skip` and what is below it.
fn walk_but(root: &Path, skip: Option<&[u8]>) -> Walk {
    let mut walk = Walk::default();
    let dir = open(root, dir_flags(), Mode::empty()).expect("opening the root");
    walk_dir(dir, Vec::new(), skip, &mut walk);
    walk
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Relative to an open directory, so the 200-level chain below PATH_MAX is reached too.
fn walk_dir(dir: OwnedFd, path: Vec<u8>, skip: Option<&[u8]>, walk: &mut Walk) {
    // Names first, so one descriptor per level stays open while descending.
    let names: Vec<CString> = Dir::read_from(&dir)
        .expect("reading a directory")
        .map(|entry| entry.expect("a directory entry").file_name().to_owned())
        .filter(|name| name.as_bytes() != b"." && name.as_bytes() != b"..")
        .collect();
    for name in names {
        let path = [&path[..], name.as_bytes(), b"/"].concat();
        if skip.is_some_and(|skip| path.strip_suffix(b"/") == Some(skip)) {
            continue;
        }
        let st = statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW).expect("lstat of an entry");
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => "dir",
            FileType::RegularFile => "regular",
            FileType::Symlink => "symlink",
            FileType::Fifo => "fifo",
            FileType::Socket => "socket",
            _ => "other",
        };
        *walk.kinds.entry(kind).or_default() += 1;
        match kind {
            "dir" => walk_dir(
                openat(&dir, &name, dir_flags(), Mode::empty()).expect("opening a directory"),
                path,
                skip,
                walk,
            ),
            "regular" => {
                walk.bytes += st.st_size as u64;
                walk.inodes.insert(st.st_ino, st.st_size as u64);
                *walk
                    .ext_counts
                    .entry(extension(name.as_bytes()))
                    .or_default() += 1;
            }
            _ => {}
        }
    }
}

/// Python's `os.path.splitext(name)[1].lower()` on bytes, decoded as mktree.py does
/// (`backslashreplace`): the last dot unless only dots precede it.
fn extension(name: &[u8]) -> String {
    let Some(dot) = name.iter().rposition(|&b| b == b'.') else {
        return String::new();
    };
    if name[..dot].iter().all(|&b| b == b'.') {
        return String::new();
    }
    let mut ext = String::new();
    for chunk in name[dot..].to_ascii_lowercase().utf8_chunks() {
        ext.push_str(chunk.valid());
        for b in chunk.invalid() {
            write!(ext, "\\x{b:02x}").unwrap();
        }
    }
    ext
}

/// Panics unless `walk` saw what `summary` says: entries of each kind, bytes (per entry and
/// per inode), distinct inodes and the extension counts.
fn assert_agrees(what: &str, summary: &Value, walk: &Walk) {
    let number = |key: &str| {
        summary[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{what}: no {key}"))
    };
    let kinds: BTreeMap<&str, u64> = summary["kinds"]
        .as_object()
        .expect("kinds")
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_u64().unwrap()))
        .filter(|&(_, n)| n > 0)
        .collect();
    let seen: BTreeMap<&str, u64> = walk.kinds.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(seen, kinds, "{what}: entries by kind");
    assert_eq!(walk.kinds["regular"], number("files"), "{what}: files");
    assert_eq!(walk.kinds["dir"], number("dirs"), "{what}: directories");
    assert_eq!(walk.bytes, number("total_apparent_bytes"), "{what}: bytes");
    assert_eq!(
        walk.inodes.len() as u64,
        number("unique_file_inodes"),
        "{what}: distinct inodes"
    );
    assert_eq!(
        walk.inodes.values().sum::<u64>(),
        number("total_apparent_bytes_unique_inodes"),
        "{what}: bytes of distinct inodes"
    );
    let ext_counts: BTreeMap<String, u64> = summary["ext_counts"]
        .as_object()
        .expect("ext_counts")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    let keys = |m: &BTreeMap<String, u64>| m.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(
        keys(&walk.ext_counts),
        keys(&ext_counts),
        "{what}: extensions"
    );
    assert_eq!(walk.ext_counts, ext_counts, "{what}: files per extension");
}

#[test]
fn extensions_follow_python_splitext() {
    for (name, ext) in [
        (&b"a.tar.gz"[..], ".gz"),
        (b"README", ""),
        (b".bashrc", ""),
        (b"..x", ""),
        (b"trailing.dot.", "."),
        (b"DATA.CSV", ".csv"),
        (b"bad.\xff", ".\\xff"),
    ] {
        assert_eq!(extension(name), ext, "{}", String::from_utf8_lossy(name));
    }
}

#[test]
fn mktree_summary_agrees_with_a_walk_of_its_tree() {
    let tree = nasty_tree();
    assert_agrees("mktree.py --nasty", &tree.summary, &walk(&tree.root));
}

/// Entry for entry, with the same inodes and sizes, except the chain below PATH_MAX: slowfs
/// reaches its backing tree by full paths, so there it answers ENAMETOOLONG.
/// The reference tree's summary (`testkit/tree-1m.summary.json`) is what mktree.py makes of
/// `--files 1000000 --seed 42` today, computed without making the tree.
#[test]
fn the_reference_summary_is_what_mktree_makes() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("python3")
        .arg(mktree_script())
        .arg(dir.path().join("tree"))
        .args([
            "--files",
            "1000000",
            "--seed",
            "42",
            "--jobs",
            "2",
            "--dry-run",
        ])
        .output()
        .expect("python3 runs mktree.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut planned: Value = serde_json::from_slice(&out.stdout).expect("a JSON summary");
    let reference = std::fs::read(workspace_dir().join("testkit/tree-1m.summary.json")).unwrap();
    let mut reference: Value = serde_json::from_slice(&reference).unwrap();
    // Where and how fast it was made, and the reference's own check walk, are not the tree.
    for summary in [&mut planned, &mut reference] {
        let summary = summary.as_object_mut().unwrap();
        for key in ["root", "elapsed_s", "verify"] {
            summary.remove(key);
        }
    }
    assert_eq!(planned, reference);
}

#[test]
fn slowfs_passes_the_tree_through_unchanged() {
    let tree = nasty_tree();
    let dir = tempfile::tempdir().unwrap();
    let fs = SlowFs::mount(&tree.root, &dir.path().join("mnt"), 0);
    let chain = Some(&b"zz_nasty/deep"[..]);
    let (through, backing) = (
        walk_but(fs.mountpoint(), chain),
        walk_but(&tree.root, chain),
    );
    assert!(backing.kinds["regular"] > 200_000, "{:?}", backing.kinds);
    assert_eq!(through.kinds, backing.kinds, "entries by kind");
    assert_eq!(through.bytes, backing.bytes, "bytes");
    assert_eq!(
        through.ext_counts, backing.ext_counts,
        "files per extension"
    );
    let differ: Vec<_> = (through.inodes.iter())
        .filter(|&(inode, size)| backing.inodes.get(inode) != Some(size))
        .take(5)
        .collect();
    assert!(
        differ.is_empty() && through.inodes.len() == backing.inodes.len(),
        "{} inodes through slowfs, {} in the tree; e.g. (inode, size) {differ:?}",
        through.inodes.len(),
        backing.inodes.len()
    );
}

#[test]
fn slowfs_synthetic_summary_agrees_with_a_walk_of_its_mount() {
    let dir = tempfile::tempdir().unwrap();
    let (summary, stats) = (
        dir.path().join("summary.json"),
        dir.path().join("stats.json"),
    );
    for spec in ["files=20000,seed=3", "files=20000,seed=3,churn=0.05"] {
        let fs = SlowFs::synthetic(spec, &dir.path().join("mnt"), 0, &summary, &stats);
        let truth: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
        assert_agrees(
            &format!("slowfs --synthetic {spec}"),
            &truth,
            &walk(fs.mountpoint()),
        );
        drop(fs);
    }
}
