//! Duplicates confirmed by content (`scanjob hash`, `run --hash-bytes`) on a tree with planted
//! true copies, decoys, a hard link and a file rewritten between nights: the confirmed groups
//! are exactly the true copies, decoys never get there, a hard link is no waste, the budget
//! holds to the byte, an unchanged night reads nothing, a rewritten file is read again, a file
//! that may not be opened with O_NOATIME is not read, and no atime moves.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use common::*;
use serde_json::Value;

const MIN_SIZE: &str = "65536";
/// Bytes of one sample: five 16 KiB blocks (`scanjob_worker::hash`).
const SAMPLE: u64 = 5 * 16 * 1024;
/// True copies: three inodes (a/data.bin, b/data.bin, c/other.bin) and a hard link.
const A: u64 = 300 << 10;
/// Decoys of the same size and name that differ only between the sampled blocks.
const D: u64 = 400 << 10;
/// Decoys of the same size and mtime with other content.
const E: u64 = 200 << 10;
/// Two copies; h/copy.bin is written again between nights.
const G: u64 = 250 << 10;
/// Candidate inodes: a, b, c, d1, d2, e, f, g, h.
const CANDIDATES: u64 = 9;

fn content(seed: u64, len: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn at(year_offset_days: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(year_offset_days * 86_400)
}

/// 2020-01-01 as mtime, 2001-01-01 as atime: older than the mtime, so a read on a `relatime`
/// mount would move it.
fn old_times() -> std::fs::FileTimes {
    std::fs::FileTimes::new()
        .set_modified(at(18_262))
        .set_accessed(at(11_323))
}

fn write(root: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_times(old_times())
        .unwrap();
    path
}

/// The planted tree; returns every planted file.
fn plant(root: &Path) -> Vec<PathBuf> {
    let a = content(1, A);
    let d = content(2, D);
    let mut d_decoy = d.clone();
    // Sample blocks start at 0, 96, 192, 288 and 384 KiB: 250,000 is between two of them.
    d_decoy[250_000] ^= 0xff;
    let g = content(5, G);
    let files = vec![
        write(root, "a/data.bin", &a),
        write(root, "b/data.bin", &a),
        write(root, "c/other.bin", &a),
        write(root, "d1/result.h5", &d),
        write(root, "d2/result.h5", &d_decoy),
        write(root, "e/x.dat", &content(3, E)),
        write(root, "f/y.dat", &content(4, E)),
        write(root, "g/copy.bin", &g),
        write(root, "h/copy.bin", &g),
        // Not a candidate: unique size and name.
        write(root, "z/unique.bin", &content(6, 500 << 10)),
    ];
    std::fs::hard_link(root.join("a/data.bin"), root.join("a/data-link.bin")).unwrap();
    files
}

fn atime_of(path: &Path) -> i64 {
    std::fs::metadata(path).unwrap().atime()
}

/// Proves that this file system moves an old atime on a read: else the atime checks below
/// would pass whatever the hash step did.
fn assert_reads_move_atimes(dir: &Path) {
    let control = write(dir, "control/read-me.bin", &content(9, 4096));
    let before = atime_of(&control);
    std::fs::read(&control).unwrap();
    assert_ne!(
        atime_of(&control),
        before,
        "this file system does not record reads in atime ({}): the atime checks need one \
         that does (relatime or strictatime)",
        dir.display()
    );
}

fn run(root: &Path, out: &Path, run: &str, hash_bytes: u64) -> Value {
    scan(
        root,
        out,
        &[
            "--run",
            run,
            "--duplicate-min-size",
            MIN_SIZE,
            "--hash-bytes",
            &hash_bytes.to_string(),
            "--threads",
            "4",
        ],
    );
    summary(out, run)
}

fn summary(out: &Path, run: &str) -> Value {
    let path = out.join(format!("snapshots/{run}/summary.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A group of `duplicate_files`: its stage, copies, wasted bytes and paths.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Group {
    stage: String,
    copies: i64,
    wasted: i64,
    paths: BTreeSet<String>,
}

fn groups(out: &Path) -> Vec<Group> {
    let manifest = latest_manifest(out);
    let mut groups = Vec::new();
    for b in read_batches(out, &manifest["derived"]["duplicate_files"]) {
        let col = |name: &str| b.column(b.schema().index_of(name).unwrap()).clone();
        let (stage, copies, wasted, paths) = (
            col("stage"),
            col("copies"),
            col("wasted_bytes"),
            col("paths"),
        );
        for i in 0..b.num_rows() {
            let list = paths.as_list::<i32>().value(i);
            groups.push(Group {
                stage: stage.as_string::<i32>().value(i).to_string(),
                copies: copies.as_primitive::<Int64Type>().value(i),
                wasted: wasted.as_primitive::<Int64Type>().value(i),
                paths: list
                    .as_string::<i32>()
                    .iter()
                    .map(|p| p.unwrap().to_string())
                    .collect(),
            });
        }
    }
    groups.sort();
    groups
}

fn group(stage: &str, copies: i64, size: u64, paths: &[&str]) -> Group {
    Group {
        stage: stage.into(),
        copies,
        wasted: size as i64 * (copies - 1),
        paths: paths.iter().map(|p| p.to_string()).collect(),
    }
}

/// The `file_hashes` rows: (inode, run that read it).
fn hashed_runs(out: &Path) -> Vec<(i64, String)> {
    let manifest = latest_manifest(out);
    let mut rows = Vec::new();
    for b in read_batches(out, &manifest["derived"]["file_hashes"]) {
        let inode = b.column(b.schema().index_of("inode").unwrap()).clone();
        let run = b.column(b.schema().index_of("hashed_run").unwrap()).clone();
        for i in 0..b.num_rows() {
            rows.push((
                inode.as_primitive::<Int64Type>().value(i),
                run.as_string::<i32>().value(i).to_string(),
            ));
        }
    }
    rows.sort();
    rows
}

fn confirmed_truth() -> Vec<Group> {
    let mut truth = vec![
        group(
            "confirmed",
            3,
            A,
            &["a/data-link.bin", "a/data.bin", "b/data.bin", "c/other.bin"],
        ),
        group("confirmed", 2, G, &["g/copy.bin", "h/copy.bin"]),
    ];
    truth.sort();
    truth
}

/// A temporary directory with the planted tree at `root` (its files' atimes taken at
/// planting) and `out` for the table of contents.
struct Planted {
    dir: tempfile::TempDir,
    root: PathBuf,
    out: PathBuf,
    files: Vec<PathBuf>,
    atimes: Vec<i64>,
}

/// Plants the tree; with `atimes`, first checks that reads move atimes here (else the atime
/// checks could not fail).
fn planted(atimes: bool) -> Planted {
    let dir = tempfile::tempdir().unwrap();
    if atimes {
        assert_reads_move_atimes(dir.path());
    }
    let root = dir.path().join("tree");
    let files = plant(&root);
    let atimes = files.iter().map(|p| atime_of(p)).collect();
    let out = dir.path().join("toc");
    Planted {
        dir,
        root,
        out,
        files,
        atimes,
    }
}

#[test]
fn confirmed_groups_are_the_true_copies_and_unchanged_files_are_read_once() {
    let Planted {
        dir: _dir,
        root,
        out,
        files: planted,
        atimes,
    } = planted(true);

    // Night 1: enough budget for every stage.
    let s = run(&root, &out, "r1", 1 << 30);
    assert_eq!(
        groups(&out),
        confirmed_truth(),
        "only true copies confirmed"
    );
    let h = &s["duplicates"]["hashing"];
    let full = 3 * A + 2 * D + 2 * G;
    assert_eq!(h["files"], CANDIDATES);
    assert_eq!(h["files_sampled"], CANDIDATES);
    // The true copies and the middle-byte decoys have equal samples; x.dat and y.dat do not.
    assert_eq!(h["files_hashed"], 7);
    assert_eq!(h["bytes_read"], CANDIDATES * SAMPLE + full, "{h}");
    assert_eq!(h["cache_hits"], 0);
    let stages = &s["duplicates"]["stages"];
    assert_eq!(stages[2]["stage"], "confirmed");
    assert_eq!(stages[2]["groups"], 2);
    assert_eq!(
        stages[2]["wasted_bytes"],
        2 * A + G,
        "the hard link is no waste"
    );
    assert_eq!(stages[0]["groups"], 0, "no candidate left: {stages}");
    assert_eq!(stages[1]["groups"], 0, "no sampled group left: {stages}");

    // Night 2, nothing changed: nothing is read, the groups stand.
    let s = run(&root, &out, "r2", 1 << 30);
    let h = &s["duplicates"]["hashing"];
    assert_eq!(h["bytes_read"], 0, "{h}");
    assert_eq!(h["cache_hits"], CANDIDATES);
    assert_eq!(groups(&out), confirmed_truth());

    // Night 3: h/copy.bin written again (same bytes, new ctime): it alone is read again.
    let copy = root.join("h/copy.bin");
    let inode = std::fs::metadata(&copy).unwrap().ino() as i64;
    std::fs::write(&copy, content(5, G)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_times(old_times())
        .unwrap();
    let s = run(&root, &out, "r3", 1 << 30);
    let h = &s["duplicates"]["hashing"];
    assert_eq!(h["bytes_read"], SAMPLE + G, "{h}");
    assert_eq!(h["cache_hits"], CANDIDATES - 1);
    assert_eq!(groups(&out), confirmed_truth());
    let runs = hashed_runs(&out);
    assert_eq!(runs.len() as u64, CANDIDATES, "{runs:?}");
    for (ino, run) in &runs {
        let expected = if *ino == inode { "r3" } else { "r1" };
        assert_eq!(run, expected, "inode {ino}");
    }

    // Every planted file was read by the hash step (h/copy.bin's atime was set back after
    // its rewrite, before night 3 read it again).
    let after: Vec<i64> = planted.iter().map(|p| atime_of(p)).collect();
    assert_eq!(after, atimes, "atimes moved");
}

#[test]
fn the_byte_budget_holds_and_what_it_does_not_cover_stays_sampled() {
    let Planted { dir, root, out, .. } = planted(false);
    // Every sample, then the class with the most waste (the three copies of a) and nothing more.
    let budget = CANDIDATES * SAMPLE + 3 * A;
    let s = run(&root, &out, "r1", budget);
    let h = &s["duplicates"]["hashing"];
    assert_eq!(h["budget_bytes"], budget);
    assert_eq!(h["bytes_read"], budget, "{h}");
    assert_eq!(h["groups_over_budget"], 2, "{h}");
    let mut truth = vec![
        group(
            "confirmed",
            3,
            A,
            &["a/data-link.bin", "a/data.bin", "b/data.bin", "c/other.bin"],
        ),
        // The decoys look equal by their samples: sampled, never confirmed.
        group("sampled", 2, D, &["d1/result.h5", "d2/result.h5"]),
        group("sampled", 2, G, &["g/copy.bin", "h/copy.bin"]),
    ];
    truth.sort();
    assert_eq!(groups(&out), truth);

    // Without a budget nothing is read and every metadata group is a candidate.
    let out = dir.path().join("toc-off");
    let s = run(&root, &out, "r1", 0);
    assert!(s["duplicates"]["hashing"].is_null());
    let stages: BTreeSet<String> = groups(&out).into_iter().map(|g| g.stage).collect();
    assert_eq!(stages, BTreeSet::from(["candidate".to_string()]));
    // Same name: data.bin, result.h5, copy.bin; same size and mtime (all planted files have
    // one mtime): the sizes A, D, E and G.
    assert_eq!(groups(&out).len(), 7, "{:#?}", groups(&out));
}

/// As a uid that owns none of the files, O_NOATIME is refused: nothing is read, the groups
/// stay candidates, and the atimes stay where they were.
#[test]
fn a_file_that_cannot_be_opened_without_moving_its_atime_is_not_read() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to run the hash step as another uid");
        return;
    }
    let Planted {
        dir,
        root,
        out,
        files: planted,
        atimes,
    } = planted(true);
    plan_and_scan(&root, &out, "r1");
    // The tree is readable by all, and the output writable by the other uid.
    run_ok(
        std::process::Command::new("chmod")
            .args(["-R", "a+rwX"])
            .arg(dir.path()),
    );
    let plan = format!("{}/runs/r1/plan.json", out.display());
    let hashed = run_ok(
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_scanjob"))
            .args(["hash", "--plan", &plan, "--max-bytes", "1000000000"])
            .args(["--duplicate-min-size", MIN_SIZE, "--json"]),
    );
    let hashed: Value = serde_json::from_slice(&hashed.stdout).unwrap();
    let t = &hashed["totals"];
    assert_eq!(t["noatime_refused"], CANDIDATES, "{t}");
    assert_eq!(t["bytes_read"], 0);
    run_ok(
        scanjob()
            .args(["merge", "--run"])
            .arg(out.join("runs/r1"))
            .args(["--duplicate-min-size", MIN_SIZE]),
    );
    let stages: BTreeSet<String> = groups(&out).into_iter().map(|g| g.stage).collect();
    assert_eq!(stages, BTreeSet::from(["candidate".to_string()]));
    let s = summary(&out, "r1");
    assert_eq!(s["duplicates"]["hashing"]["noatime_refused"], CANDIDATES);
    let after: Vec<i64> = planted.iter().map(|p| atime_of(p)).collect();
    assert_eq!(after, atimes);
}

/// A file written again after the scan saw it (its ctime moved) is not hashed: it stays out of
/// the confirmed group, whose other copies are still confirmed, and it is counted as changed.
#[test]
fn a_file_changed_after_the_scan_is_not_confirmed() {
    let Planted {
        dir: _dir,
        root,
        out,
        ..
    } = planted(false);
    plan_and_scan(&root, &out, "r1");
    let copy = root.join("b/data.bin");
    std::fs::write(&copy, content(1, A)).unwrap();
    let plan = format!("{}/runs/r1/plan.json", out.display());
    let hashed = run_ok(
        scanjob()
            .args(["hash", "--plan", &plan, "--max-bytes", "1000000000"])
            .args(["--duplicate-min-size", MIN_SIZE, "--json"]),
    );
    let hashed: Value = serde_json::from_slice(&hashed.stdout).unwrap();
    assert_eq!(hashed["totals"]["changed"], 1, "{}", hashed["totals"]);
    run_ok(
        scanjob()
            .args(["merge", "--run"])
            .arg(out.join("runs/r1"))
            .args(["--duplicate-min-size", MIN_SIZE]),
    );
    let groups = groups(&out);
    let confirmed: Vec<&Group> = groups.iter().filter(|g| g.stage == "confirmed").collect();
    assert!(
        confirmed.contains(&&group(
            "confirmed",
            2,
            A,
            &["a/data-link.bin", "a/data.bin", "c/other.bin"]
        )),
        "{groups:#?}"
    );
    assert!(
        !confirmed.iter().any(|g| g.paths.contains("b/data.bin")),
        "{groups:#?}"
    );
    // Its name group still holds a file without a hash: a candidate.
    assert!(
        groups
            .iter()
            .any(|g| g.stage == "candidate" && g.paths.contains("b/data.bin")),
        "{groups:#?}"
    );
}

/// The candidate rule is one (`scanjob_worker::duplicates::candidate_keys`), applied to two
/// sets of rows: `duplicate_files` lists every group of the ToC, while the hash step reads only
/// the files it can key in its cache (a known mtime and ctime). A file whose mtime is past 2262
/// has none in the ToC: its group is still listed as a candidate, but a group with one other
/// inode is not read at all, and a group with two others has just those two read.
#[test]
fn a_file_without_an_mtime_is_a_candidate_but_is_never_read() {
    const P: u64 = (100 << 10) + 1;
    const T: u64 = (100 << 10) + 3;
    let dir = tempfile::tempdir().unwrap();
    let (root, out) = (dir.path().join("tree"), dir.path().join("toc"));
    // Past what the ToC's nanoseconds hold (2262), and distinct mtimes for the rest, so that
    // no group forms by mtime.
    let beyond = SystemTime::UNIX_EPOCH + Duration::from_secs(10_413_792_000);
    let with_mtime = |rel: &str, bytes: &[u8], mtime: SystemTime| {
        let path = write(&root, rel, bytes);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(std::fs::FileTimes::new().set_modified(mtime))
            .unwrap();
    };
    with_mtime("p/x.bin", &content(11, P), beyond);
    with_mtime("q/x.bin", &content(12, P), at(18_300));
    let y = content(13, T);
    with_mtime("t1/y.bin", &y, beyond);
    with_mtime("t2/y.bin", &y, at(18_301));
    with_mtime("t3/y.bin", &y, at(18_302));

    let s = run(&root, &out, "r1", 1 << 30);
    let mut expected = vec![
        group("candidate", 2, P, &["p/x.bin", "q/x.bin"]),
        group("candidate", 3, T, &["t1/y.bin", "t2/y.bin", "t3/y.bin"]),
        group("confirmed", 2, T, &["t2/y.bin", "t3/y.bin"]),
    ];
    expected.sort();
    assert_eq!(groups(&out), expected);
    let h = &s["duplicates"]["hashing"];
    assert_eq!(h["files"], 2, "only t2 and t3 can be keyed: {h}");
    assert_eq!(h["bytes_read"], 2 * SAMPLE + 2 * T, "{h}");
}
