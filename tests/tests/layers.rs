//! The import lint (`tests/layers.py`, run by `tests/run` beside clippy) passes on this tree,
//! and fails, naming the file, on a copy of it with one upward import or one circle added, so
//! the lint that keeps the layers cannot silently pass everything.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the lint on the crates under `root`: (passed, stderr).
fn lint(root: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .arg(workspace().join("tests/layers.py"))
        .arg("--root")
        .arg(root)
        .output()
        .expect("python3 runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of the crates' sources with `line` appended to `file`.
fn copy_with(file: &str, line: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for src in ["worker/src", "operator/src", "contract/src"] {
        copy_tree(&workspace().join(src), &dir.path().join(src));
    }
    let path = dir.path().join(file);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(line);
    std::fs::write(&path, text).unwrap();
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn the_tree_passes() {
    let (passed, stderr) = lint(&workspace());
    assert!(passed, "{stderr}");
}

#[test]
fn an_upward_import_fails_naming_the_file() {
    let dir = copy_with(
        "worker/src/store/layout.rs",
        "\nuse crate::merge::MergeOptions;\n",
    );
    let (passed, stderr) = lint(dir.path());
    assert!(!passed, "an upward import passed");
    assert!(
        stderr.contains("`store` (layer 2) uses `merge` (layer 8)")
            && stderr.contains("worker/src/store/layout.rs:"),
        "{stderr}"
    );
}

#[test]
fn a_circle_fails_naming_both_ends() {
    // decide uses status; status using decide closes a circle.
    let dir = copy_with("operator/src/status.rs", "\nuse crate::decide::decide;\n");
    let (passed, stderr) = lint(dir.path());
    assert!(!passed, "a circle passed");
    assert!(
        stderr.contains("circle between decide, status")
            && stderr.contains("operator/src/status.rs:"),
        "{stderr}"
    );
}
