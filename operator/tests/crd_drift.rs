//! The checked-in CRD (`crds/scanjob.yaml`, what installs and tests apply) is exactly what
//! `crdgen` prints from `operator/src/crd.rs`: a changed field, doc comment or validation rule
//! without a regenerated file fails here instead of silently shipping the old schema.

use std::path::PathBuf;

const REGENERATE: &str = "cargo run --release --bin crdgen > crds/scanjob.yaml";

/// `crds/scanjob.yaml` of the workspace this test was started from (read at run time: the
/// binary may have been built by another clone sharing the target directory).
fn checked_in_path() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .parent()
        .map_or_else(|| manifest.clone(), PathBuf::from)
        .join("crds/scanjob.yaml")
}

/// The first line where `a` and `b` differ: (1-based number, line of `a`, line of `b`).
fn first_difference(a: &str, b: &str) -> Option<(usize, String, String)> {
    let (mut left, mut right) = (a.lines(), b.lines());
    for n in 1.. {
        match (left.next(), right.next()) {
            (None, None) => return None,
            (l, r) if l == r => {}
            (l, r) => {
                let show =
                    |s: Option<&str>| s.map_or_else(|| "(end of file)".into(), str::to_owned);
                return Some((n, show(l), show(r)));
            }
        }
    }
    None
}

#[test]
fn checked_in_crd_matches_the_generator() {
    let path = checked_in_path();
    let generated = scanjob_operator::crd::crd_yaml().expect("generating the CRD");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e}\n  create it with `{REGENERATE}` (from the workspace root)",
            path.display()
        )
    });
    if checked_in == generated {
        return;
    }
    let detail = first_difference(&checked_in, &generated).map_or_else(
        || "  the files differ only in line endings or the final newline".to_owned(),
        |(n, file, gen_line)| {
            format!("  first difference at line {n}:\n    checked in: {file}\n    generated:  {gen_line}")
        },
    );
    panic!(
        "{} is stale: it differs from what crdgen generates from operator/src/crd.rs\n{detail}\n  \
         regenerate it with `{REGENERATE}` (from the workspace root) and commit it",
        path.display()
    );
}
