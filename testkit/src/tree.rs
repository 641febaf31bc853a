//! Generated trees: `testkit/mktree.py` makes a deterministic "project storage" tree (and, with
//! `--nasty`, every hostile case a scanner meets) and writes its ground truth as JSON.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// A generated tree and the generator's summary of it (`files`, `dirs`, `kinds`,
/// `total_apparent_bytes`, `ext_counts`, …).
pub struct Tree {
    pub root: PathBuf,
    pub summary: Value,
}

/// The workspace root. Read at run time from the crate under test (`cargo test` and
/// `cargo run` set `CARGO_MANIFEST_DIR`): the compile-time value may name another clone that
/// shares the target directory.
pub fn workspace_dir() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest
        .ancestors()
        .find(|dir| dir.join("testkit/mktree.py").is_file())
        .unwrap_or_else(|| panic!("no testkit/mktree.py above {}", manifest.display()))
        .to_path_buf()
}

/// `testkit/mktree.py`, the tree generator.
pub fn mktree_script() -> PathBuf {
    workspace_dir().join("testkit/mktree.py")
}

/// `dir/tree`, made by `mktree.py` with `args` (`--files N --seed S [--nasty]`) on two
/// processes, and its ground truth (also kept as `dir/summary.json`).
pub fn mktree(dir: &Path, args: &[&str]) -> Tree {
    let root = dir.join("tree");
    let summary_path = dir.join("summary.json");
    let out = Command::new("python3")
        .arg(mktree_script())
        .arg(&root)
        .args(args)
        .args(["--jobs", "2", "--summary"])
        .arg(&summary_path)
        .output()
        .expect("python3 runs mktree.py");
    assert!(
        out.status.success(),
        "mktree.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = std::fs::read(&summary_path).expect("mktree.py writes its summary");
    Tree {
        root,
        summary: serde_json::from_slice(&summary).expect("the summary is JSON"),
    }
}

/// One hostile tree for every test that only reads: 20 k files plus mktree's `--nasty` cases
/// (non-UTF-8 names, a chain deeper than PATH_MAX, a 200 k-entry directory, hard links,
/// mode-000 entries, …). Made once per version of the generator and kept in the system's
/// temporary directory (`scanjob-trees/`), so test binaries and runs share it.
pub fn nasty_tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        const ARGS: [&str; 5] = ["--files", "20000", "--seed", "7", "--nasty"];
        let generator = std::fs::read(mktree_script()).expect("reading mktree.py");
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (generator, ARGS).hash(&mut h);
            format!("nasty-{:016x}", h.finish())
        };
        // Not under $SCANJOB_CACHE: a test scans it as nobody, who must reach it.
        let cache = std::env::temp_dir().join("scanjob-trees");
        let dir = cache.join(&key);
        if !dir.join("summary.json").exists() {
            let building = cache.join(format!("{key}.building-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&building);
            std::fs::create_dir_all(&building).expect("creating the tree cache");
            // World-readable, so a test may scan it as an unprivileged user.
            for dir in [&cache, &building] {
                std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .expect("opening the tree cache to all");
            }
            mktree(&building, &ARGS);
            if std::fs::rename(&building, &dir).is_err() {
                // Another test binary made it meanwhile.
                let _ = std::fs::remove_dir_all(&building);
            }
        }
        let summary = std::fs::read(dir.join("summary.json")).expect("a kept tree's summary");
        Tree {
            root: dir.join("tree"),
            summary: serde_json::from_slice(&summary).expect("the summary is JSON"),
        }
    })
}
