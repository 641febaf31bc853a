//! Damaged or hand-edited files in an output location: `plan.json`, a shard's `_SUCCESS.json`,
//! a snapshot's manifest and `latest.json`, each cut short, replaced by random bytes, and
//! replaced by every refused document of the kept corpus (`tests/corpus/<kind>/bad-*`). Every
//! step that reads one stops with one clear error line and a retry-aware exit code, never a
//! panic, and publishes nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// An output location with run `r1` published and run `r2` planned (3 shards) and scanned,
/// not yet merged.
fn template(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("tree");
    for d in ["a/x", "a/y", "b", "c/z"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
        for i in 0..30 {
            std::fs::write(root.join(d).join(format!("f{i}.csv")), b"12345").unwrap();
        }
    }
    let out = dir.join("template");
    scan(&root, &out, &["--run", "r1"]);
    run_ok(
        scanjob()
            .arg("plan")
            .arg(&root)
            .args(["--shards", "3", "--run", "r2", "--out"])
            .arg(&out),
    );
    for index in 0..3 {
        run_ok(
            scanjob()
                .args(["scan", "--index", &index.to_string(), "--plan"])
                .arg(out.join("runs/r2/plan.json")),
        );
    }
    (root, out)
}

/// The corpus documents are of run `r1` with this plan id; those of a run's own files (plan,
/// shard) are made this test's `r2` and its plan id, so that they fail their checks rather
/// than being taken for another plan's leftovers.
const CORPUS_PLAN_ID: &str = "r1-18eca8b6155c8a39-2154";

/// The variants of a file to put in place of the good one: cut at a third and two thirds,
/// empty, 300 random bytes, and the corpus's refused documents of this kind.
fn variants(kind: &str, good: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        ("cut at 1/3".to_string(), good[..good.len() / 3].to_vec()),
        (
            "cut at 2/3".to_string(),
            good[..good.len() * 2 / 3].to_vec(),
        ),
        ("empty".to_string(), Vec::new()),
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64 ^ kind.len() as u64;
    let random: Vec<u8> = (0..300)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    out.push(("random bytes".to_string(), random));
    let corpus = manifest_dir().join("tests/corpus").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("bad-"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "{}: the corpus is there",
        corpus.display()
    );
    let own_run = matches!(kind, "plan" | "success");
    let plan_id = serde_json::from_slice::<serde_json::Value>(good).unwrap()["plan_id"]
        .as_str()
        .filter(|_| own_run)
        .map(str::to_string);
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let mut bytes = std::fs::read(&file).unwrap();
        if let (Some(plan_id), Ok(text)) = (&plan_id, std::str::from_utf8(&bytes)) {
            bytes = text
                .replace(CORPUS_PLAN_ID, plan_id)
                .replace("r1", "r2")
                .into_bytes();
        }
        out.push((name, bytes));
    }
    out
}

/// Runs a step that must fail on the bad file: exit 1 or 3, one `scanjob: error:` line, no
/// panic.
fn refused(what: &str, cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        matches!(out.status.code(), Some(1 | 3)),
        "{what}: exit {:?} (1 or 3 expected): {stderr}",
        out.status.code()
    );
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("scanjob: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{what}: one error line: {stderr}");
    errors[0].to_string()
}

#[test]
fn damaged_or_edited_files_stop_each_step_with_one_error_and_publish_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (_root, template) = template(tmp.path());
    let latest_before = std::fs::read(template.join("latest.json")).unwrap();
    let kinds = [
        ("plan", "runs/r2/plan.json"),
        ("success", "runs/r2/shards/0/_SUCCESS.json"),
        ("manifest", "snapshots/r1/manifest.json"),
        ("latest", "latest.json"),
    ];
    let mut tried = 0;
    for (kind, relative) in kinds {
        let good = std::fs::read(template.join(relative)).unwrap();
        for (name, bytes) in variants(kind, &good) {
            let case = tmp.path().join(format!("case-{tried}"));
            run_ok(Command::new("cp").arg("-a").arg(&template).arg(&case));
            std::fs::write(case.join(relative), &bytes).unwrap();
            let what = format!("{kind} {name}");
            let mut errors = Vec::new();
            if kind == "plan" {
                errors.push(refused(
                    &format!("scan of {what}"),
                    scanjob()
                        .args(["scan", "--index", "0", "--plan"])
                        .arg(case.join(relative)),
                ));
            }
            errors.push(refused(
                &format!("merge with {what}"),
                scanjob()
                    .arg("merge")
                    .arg("--run")
                    .arg(case.join("runs/r2")),
            ));
            if matches!(kind, "manifest" | "latest") {
                errors.push(refused(
                    &format!("report with {what}"),
                    scanjob().arg("report").arg(&case),
                ));
            }
            // Each error names the file it could not use, or the shard it had to do without.
            for error in &errors {
                let file = Path::new(relative).file_name().unwrap().to_string_lossy();
                assert!(
                    error.contains(file.as_ref()) || error.contains("shards [0]"),
                    "{what}: the error names {file}: {error}"
                );
            }
            assert!(
                !case.join("snapshots/r2").exists(),
                "{what}: nothing of r2 is published"
            );
            let latest = std::fs::read(case.join("latest.json")).unwrap();
            let expected = if kind == "latest" {
                &bytes
            } else {
                &latest_before
            };
            assert_eq!(&latest, expected, "{what}: latest.json is untouched");
            std::fs::remove_dir_all(&case).unwrap();
            tried += 1;
        }
    }
    assert!(tried >= 40, "{tried} bad files tried");

    // The template itself was good: the same steps succeed on it.
    run_ok(
        scanjob()
            .arg("merge")
            .arg("--run")
            .arg(template.join("runs/r2")),
    );
    assert_eq!(latest_manifest(&template)["run"], "r2");
}
