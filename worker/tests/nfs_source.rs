//! `scanjob run nfs://SERVER/EXPORT` against a real NFSv3 server: nfs-ganesha exporting the
//! nasty tree, started by `tests/nfs/ganesha.sh` in a network namespace of its own. The ToC of
//! the export must equal the ToC of `scanjob run` of the same directory, row by row, in every
//! field NFS carries. The server is the test kit's [`Ganesha`].
//!
//! Needs root (namespaces; ganesha's VFS backend opens files by handle), nfs-ganesha and
//! rpcbind (`bash tests/cluster/install.sh`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use arrow_array::Array;
use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int8Type, Int32Type, Int64Type, TimestampMicrosecondType};
use serde_json::Value;

use common::{latest_manifest, nasty_tree, read_batches, scan, scanjob};
use scanjob_testkit::Ganesha;

/// One ganesha at a time: each holds a namespace and both cores while it serves.
static SERIAL: Mutex<()> = Mutex::new(());

/// One ToC row, every column a source fills from an entry's metadata.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    kind: String,
    size: i64,
    blocks: i64,
    uid: i64,
    gid: i64,
    mode: i32,
    nlink: i64,
    inode: i64,
    dev: i64,
    mtime: Option<i64>,
    atime: Option<i64>,
    ctime: Option<i64>,
    btime: Option<i64>,
}

/// Every row of the latest snapshot under `out`, by path.
fn rows(out: &Path) -> BTreeMap<Vec<u8>, Row> {
    let manifest = latest_manifest(out);
    let mut rows = BTreeMap::new();
    for b in read_batches(out, &manifest["toc_files"]) {
        let col = |name: &str| b.column(b.schema().index_of(name).unwrap()).clone();
        let int = |name: &str, i: usize| col(name).as_primitive::<Int64Type>().value(i);
        let time = |name: &str, i: usize| {
            let c = col(name);
            let c = c.as_primitive::<TimestampMicrosecondType>();
            c.is_valid(i).then(|| c.value(i))
        };
        let kinds = col("kind");
        let kinds = kinds.as_dictionary::<Int8Type>();
        for i in 0..b.num_rows() {
            let kind = kinds.values().as_string::<i32>();
            let row = Row {
                kind: kind.value(kinds.keys().value(i) as usize).to_string(),
                size: int("size", i),
                blocks: int("blocks", i),
                uid: int("uid", i),
                gid: int("gid", i),
                mode: col("mode").as_primitive::<Int32Type>().value(i),
                nlink: int("nlink", i),
                inode: int("inode", i),
                dev: int("dev", i),
                mtime: time("mtime", i),
                atime: time("atime", i),
                ctime: time("ctime", i),
                btime: time("btime", i),
            };
            let path = col("path").as_binary::<i32>().value(i).to_vec();
            assert!(rows.insert(path, row).is_none(), "a path has two rows");
        }
    }
    rows
}

/// The paths of the latest snapshot's error rows.
fn error_paths(out: &Path) -> BTreeSet<Vec<u8>> {
    let manifest = latest_manifest(out);
    read_batches(out, &manifest["error_files"])
        .iter()
        .flat_map(|b: &RecordBatch| {
            let paths = b.column(b.schema().index_of("path").unwrap()).clone();
            let paths = paths.as_binary::<i32>();
            (0..paths.len())
                .map(|i| paths.value(i).to_vec())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).escape_debug().to_string()
}

/// A time as NFSv3 carries it: unsigned 32-bit seconds, so a time before 1970 (or after 2106)
/// arrives as its low 32 bits, as on a kernel NFS mount. Microseconds.
fn wire_time(micros: Option<i64>) -> Option<(u32, i64)> {
    micros.map(|m| (m.div_euclid(1_000_000) as u32, m.rem_euclid(1_000_000)))
}

/// Differences between the NFS row and the mounted row of one path, one line each: every
/// field but `dev` (the server's fsid over NFS, 0 for the mounted root's file system) and
/// `btime` (NFSv3 has none). A time the mounted scan could not store (null) is not compared.
fn differences(path: &[u8], nfs: &Row, local: &Row) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut check = |field: &str, nfs: String, local: String| {
        if nfs != local {
            diffs.push(format!("{}: {field}: NFS {nfs}, local {local}", show(path)));
        }
    };
    check("kind", nfs.kind.clone(), local.kind.clone());
    check("size", nfs.size.to_string(), local.size.to_string());
    check("blocks", nfs.blocks.to_string(), local.blocks.to_string());
    check("uid", nfs.uid.to_string(), local.uid.to_string());
    check("gid", nfs.gid.to_string(), local.gid.to_string());
    check(
        "mode",
        format!("{:o}", nfs.mode),
        format!("{:o}", local.mode),
    );
    check("nlink", nfs.nlink.to_string(), local.nlink.to_string());
    check("inode", nfs.inode.to_string(), local.inode.to_string());
    for (field, n, l) in [
        ("mtime", nfs.mtime, local.mtime),
        ("atime", nfs.atime, local.atime),
        ("ctime", nfs.ctime, local.ctime),
    ] {
        if l.is_some() {
            check(
                field,
                format!("{:?}", wire_time(n)),
                format!("{:?}", wire_time(l)),
            );
        }
    }
    check("btime", format!("{:?}", nfs.btime), "None".into());
    diffs
}

/// The NFS scan's rows are the mounted scan's: the same paths, no [`differences`].
fn assert_same_rows(nfs: &BTreeMap<Vec<u8>, Row>, local: &BTreeMap<Vec<u8>, Row>) {
    let nfs_paths: BTreeSet<&Vec<u8>> = nfs.keys().collect();
    let local_paths: BTreeSet<&Vec<u8>> = local.keys().collect();
    assert_eq!(
        nfs_paths.len(),
        local_paths.len(),
        "first paths only over NFS: {:?}; only mounted: {:?}",
        nfs_paths
            .difference(&local_paths)
            .take(5)
            .map(|p| show(p))
            .collect::<Vec<_>>(),
        local_paths
            .difference(&nfs_paths)
            .take(5)
            .map(|p| show(p))
            .collect::<Vec<_>>(),
    );
    assert_eq!(nfs_paths, local_paths);
    let diffs: Vec<String> = nfs
        .iter()
        .flat_map(|(path, row)| differences(path, row, &local[path]))
        .collect();
    assert!(
        diffs.is_empty(),
        "{} differences, first: {:#?}",
        diffs.len(),
        &diffs[..diffs.len().min(10)]
    );
}

#[test]
fn the_nasty_tree_over_nfs_equals_its_mounted_scan() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tree = nasty_tree();
    let server = Ganesha::start(&tree.root, "No_Root_Squash", 111);
    let tmp = tempfile::tempdir().unwrap();
    let url = server.url(&tree.root);
    // The server reads every directory (and symlink) it lists, which moves their atimes once a
    // day (relatime); the first scan moves them, the second and the mounted scan agree.
    scan(
        &url,
        &tmp.path().join("settle"),
        &["--nfs-uid", "0", "--nfs-gid", "0"],
    );
    let summary = scan(
        &url,
        &tmp.path().join("nfs"),
        &["--nfs-uid", "0", "--nfs-gid", "0", "--threads", "32"],
    );
    scan(&tree.root, &tmp.path().join("local"), &[]);

    let nfs = rows(&tmp.path().join("nfs"));
    let local = rows(&tmp.path().join("local"));
    assert_same_rows(&nfs, &local);
    // One file system on the server: one fsid.
    let devs: BTreeSet<i64> = nfs.values().map(|r| r.dev).collect();
    assert_eq!(devs.len(), 1, "fsids: {devs:?}");
    assert!(error_paths(&tmp.path().join("nfs")).is_empty());
    assert!(nfs.keys().any(|p| std::str::from_utf8(p).is_err()));
    assert!(nfs.keys().map(Vec::len).max().unwrap_or(0) > 4096);

    // The RPCs by procedure, in the run's summary and the shard's.
    let procedures = summary["nfs"]["procedures"]
        .as_array()
        .expect("an nfs report");
    let readdirplus = procedures
        .iter()
        .find(|p| p["procedure"] == "READDIRPLUS")
        .expect("READDIRPLUS was called");
    let directories = nfs.values().filter(|r| r.kind == "dir").count() as u64;
    assert!(readdirplus["calls"].as_u64().unwrap() > directories);
    assert!(readdirplus["p99_ms"].as_f64().unwrap() > 0.0);
    let calls: u64 = procedures
        .iter()
        .map(|p| p["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(summary["politeness"]["calls"].as_u64(), Some(calls));
}

#[test]
fn shards_of_an_export_equal_its_mounted_scan_on_a_first_night_and_a_later_one() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tree = nasty_tree();
    let server = Ganesha::start(&tree.root, "No_Root_Squash", 115);
    let tmp = tempfile::tempdir().unwrap();
    let url = server.url(&tree.root);
    let as_root = ["--nfs-uid", "0", "--nfs-gid", "0"];
    // The atimes the server's reads move, moved once (see the test above).
    scan(&url, &tmp.path().join("settle"), &as_root);
    scan(&tree.root, &tmp.path().join("local"), &[]);
    let local = rows(&tmp.path().join("local"));
    let out = tmp.path().join("nfs");
    // Night 1 is balanced by a count of the export's top levels, night 2 by night 1's
    // snapshot; both cut the tree's 200,000-entry directory into slices of its names.
    for (run, balanced_by) in [
        ("night-1", "top-level-count"),
        ("night-2", "previous-snapshot"),
    ] {
        let summary = scan(
            &url,
            &out,
            &[
                &as_root[..],
                &["--shards", "4", "--threads", "8", "--run", run],
            ]
            .concat(),
        );
        let plan: Value = serde_json::from_slice(
            &std::fs::read(out.join(format!("runs/{run}/plan.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(plan["balanced_by"], balanced_by, "{run}");
        let shards = plan["shards"].as_array().unwrap();
        assert_eq!(shards.len(), 4, "{run}");
        let pieces = |key: &str| -> usize {
            shards
                .iter()
                .map(|s| s[key].as_array().map_or(0, Vec::len))
                .sum()
        };
        assert!(pieces("subtrees") > 4, "{run}: {plan}");
        let slices = shards
            .iter()
            .flat_map(|s| s["files_only"].as_array().cloned().unwrap_or_default())
            .filter(|f| f.get("slice").is_some())
            .count();
        assert!(slices >= 2, "{run}: the huge directory is sliced: {plan}");
        assert_eq!(summary["errors"], Value::from(0), "{run}: {summary}");
        assert_same_rows(&rows(&out), &local);
        assert!(error_paths(&out).is_empty(), "{run}");
    }
}

#[test]
fn root_squash_gives_error_rows_for_what_nobody_cannot_read() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tree = nasty_tree();
    let server = Ganesha::start(&tree.root, "Root_Squash", 112);
    let tmp = tempfile::tempdir().unwrap();
    // uid 0 asks; the export maps it to nobody.
    scan(
        &server.url(&tree.root),
        &tmp.path().join("nfs"),
        &["--nfs-uid", "0"],
    );
    scan(&tree.root, &tmp.path().join("local"), &[]);
    let nfs = rows(&tmp.path().join("nfs"));
    let local = rows(&tmp.path().join("local"));

    // From the mounted scan: a directory nobody may not read is an error row, what lies under
    // it has no row, everything else has its row.
    const NOBODY: i64 = 65534;
    let may_read = |r: &Row| {
        let bits = if r.uid == NOBODY {
            r.mode >> 6
        } else if r.gid == NOBODY {
            r.mode >> 3
        } else {
            r.mode
        };
        bits & 0o4 != 0
    };
    let parent = |p: &[u8]| p.iter().rposition(|&b| b == b'/').map(|i| p[..i].to_vec());
    let mut denied = BTreeSet::new();
    let mut visible = BTreeSet::new();
    for (path, row) in &local {
        let mut ancestor = parent(path);
        let mut hidden = false;
        while let Some(dir) = ancestor {
            if !may_read(&local[&dir]) {
                hidden = true;
                break;
            }
            ancestor = parent(&dir);
        }
        if hidden {
            continue;
        }
        if row.kind == "dir" && !may_read(row) {
            denied.insert(path.clone());
        }
        visible.insert(path.clone());
    }
    assert!(
        !denied.is_empty(),
        "the tree has directories nobody may not read"
    );
    let errors = error_paths(&tmp.path().join("nfs"));
    assert_eq!(
        errors.iter().map(|p| show(p)).collect::<Vec<_>>(),
        denied.iter().map(|p| show(p)).collect::<Vec<_>>()
    );
    let listed: BTreeSet<Vec<u8>> = nfs.keys().cloned().collect();
    assert_eq!(listed.len(), visible.len());
    assert!(listed == visible, "the rows are what nobody may list");
    let manifest = latest_manifest(&tmp.path().join("nfs"));
    assert_eq!(
        manifest["errors_by_kind"]["permission_denied"].as_u64(),
        Some(denied.len() as u64),
        "{manifest}"
    );
}

#[test]
fn a_server_killed_mid_scan_fails_retryably_and_publishes_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tree = nasty_tree();
    let server = Ganesha::start(&tree.root, "No_Root_Squash", 113);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // 200 calls a second: the tree's directories take many seconds, the kill comes at one.
    let child = scanjob()
        .arg("run")
        .arg(server.url(&tree.root))
        .arg("--out")
        .arg(&out)
        .args(["--nfs-uid", "0", "--max-ops-per-second", "200"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("scanjob starts");
    std::thread::sleep(Duration::from_secs(1));
    server.kill();
    let output = child.wait_with_output().expect("scanjob ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "exit is retryable: {stderr}");
    assert!(stderr.contains("nothing of this shard is kept"), "{stderr}");
    assert!(!out.join("latest.json").exists(), "nothing is published");
    let shard = out.join("runs").read_dir().into_iter().flatten().flatten();
    for run in shard {
        assert!(
            !run.path().join("shards/0/_SUCCESS.json").exists(),
            "the shard is not complete"
        );
    }
}

/// The `duplicate_files` groups of the latest snapshot under `out`: (stage, sorted paths).
fn duplicate_groups(out: &Path) -> BTreeSet<(String, Vec<String>)> {
    let manifest = latest_manifest(out);
    let mut groups = BTreeSet::new();
    for b in read_batches(out, &manifest["derived"]["duplicate_files"]) {
        let stage = b.column(b.schema().index_of("stage").unwrap()).clone();
        let paths = b.column(b.schema().index_of("paths").unwrap()).clone();
        for i in 0..b.num_rows() {
            let stage = stage.as_string::<i32>().value(i).to_owned();
            let list = paths.as_list::<i32>().value(i);
            let mut names: Vec<String> = list
                .as_string::<i32>()
                .iter()
                .map(|p| p.unwrap().to_owned())
                .collect();
            names.sort();
            groups.insert((stage, names));
        }
    }
    groups
}

#[test]
fn duplicates_are_confirmed_by_reading_over_nfs_as_on_the_mount() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    // Three true copies, two decoys that differ in one byte, and a lone file: all of one size
    // and name, so all candidates.
    let content = |seed: u8, flip: bool| {
        let mut bytes: Vec<u8> = (0..400_000u32).map(|i| (i % 251) as u8 ^ seed).collect();
        if flip {
            bytes[200_000] ^= 0xff;
        }
        bytes
    };
    for (dir, bytes) in [
        ("a", content(1, false)),
        ("b", content(1, false)),
        ("c", content(1, false)),
        ("decoy/x", content(2, false)),
        ("decoy/y", content(2, true)),
        ("lone", content(3, false)),
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::fs::write(root.join(dir).join("data.bin"), bytes).unwrap();
    }
    let server = Ganesha::start(&root, "No_Root_Squash", 114);
    let hash = ["--duplicate-min-size", "1", "--hash-bytes", "100000000"];
    scan(
        &server.url(&root),
        &tmp.path().join("nfs"),
        &[&["--nfs-uid", "0", "--nfs-gid", "0"][..], &hash[..]].concat(),
    );
    scan(&root, &tmp.path().join("local"), &hash);

    let groups = duplicate_groups(&tmp.path().join("nfs"));
    assert_eq!(groups, duplicate_groups(&tmp.path().join("local")));
    let copies: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|d| format!("{d}/data.bin"))
        .collect();
    assert!(
        groups.contains(&("confirmed".to_owned(), copies)),
        "{groups:?}"
    );
    assert!(
        !groups
            .iter()
            .any(|(_, paths)| paths.iter().any(|p| p.starts_with("decoy"))),
        "the decoys differ in one byte: {groups:?}"
    );
    // The same bytes read over NFS as from the mount: a sample of each candidate, then the
    // whole of every class whose samples agree.
    let hashing = |out: &str| {
        let out = tmp.path().join(out);
        let manifest = latest_manifest(&out);
        let summary = out.join(manifest["summary"].as_str().unwrap());
        let summary: Value = serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap();
        summary["duplicates"]["hashing"].clone()
    };
    let (nfs, local) = (hashing("nfs"), hashing("local"));
    assert!(nfs["bytes_read"].as_u64().unwrap() > 3 * 400_000, "{nfs}");
    for field in ["files_sampled", "files_hashed", "bytes_read", "changed"] {
        assert_eq!(nfs[field], local[field], "{field}: {nfs} vs {local}");
    }
}

#[test]
fn a_secure_export_answers_only_a_client_on_a_reserved_port() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    for dir in ["a", "b"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::fs::write(root.join(dir).join("same.bin"), vec![7u8; 5000]).unwrap();
    }
    std::fs::write(root.join("other.txt"), b"other").unwrap();
    let server = Ganesha::start_secure(&root, "No_Root_Squash", 115);
    let url = server.url(&root);

    // From any port, the server turns the client away: bad input, nothing published.
    let out = tmp.path().join("refused");
    let output = scanjob()
        .arg("run")
        .arg(&url)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("scanjob runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(!out.join("latest.json").exists(), "nothing is published");

    // From a reserved port (the tests run as root, who may bind one), the scan and the hash
    // step's reads are answered.
    let out = tmp.path().join("reserved");
    let summary = scan(
        &url,
        &out,
        &[
            "--nfs-reserved-port",
            "--duplicate-min-size",
            "1",
            "--hash-bytes",
            "1000000",
        ],
    );
    assert_eq!(
        (
            &summary["files"],
            &summary["directories"],
            &summary["errors"]
        ),
        (&Value::from(3), &Value::from(2), &Value::from(0)),
        "{summary}"
    );
    let groups = duplicate_groups(&out);
    assert!(
        groups.contains(&(
            "confirmed".to_owned(),
            vec!["a/same.bin".to_owned(), "b/same.bin".to_owned()]
        )),
        "{groups:?}"
    );
}

#[test]
fn a_server_reached_at_two_addresses_answers_at_both_and_the_rows_are_the_same() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tree = nasty_tree();
    // Two servers of one file system, as two nodes of a cluster serving one namespace: the same
    // export, so the same file handles at each.
    let first = Ganesha::start(&tree.root, "No_Root_Squash", 116);
    let second = Ganesha::start(&tree.root, "No_Root_Squash", 117);
    let tmp = tempfile::tempdir().unwrap();
    let url = first.url(&tree.root);
    let root_ids = ["--nfs-uid", "0", "--nfs-gid", "0"];
    scan(&url, &tmp.path().join("settle"), &root_ids);
    let one = scan(&url, &tmp.path().join("one"), &root_ids);
    assert_eq!(
        one["nfs"].get("servers"),
        None,
        "one address: {}",
        one["nfs"]
    );
    let both = scan(
        &url,
        &tmp.path().join("both"),
        &[&root_ids[..], &["--nfs-address", second.ip()]].concat(),
    );

    let servers = both["nfs"]["servers"].as_array().expect("calls by address");
    let addresses: BTreeSet<&str> = servers
        .iter()
        .map(|s| s["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, BTreeSet::from([first.ip(), second.ip()]));
    for server in servers {
        assert_eq!(server["connections"], 2, "{server}");
        assert!(server["calls"].as_u64().unwrap() > 100, "{server}");
    }
    // Every call but the setup's (GETPORT at each address, MNT at the first) went over the pool.
    let pool: u64 = servers.iter().map(|s| s["calls"].as_u64().unwrap()).sum();
    let setup: u64 = both["nfs"]["procedures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["procedure"] == "GETPORT" || p["procedure"] == "MNT")
        .map(|p| p["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(setup, 4, "{}", both["nfs"]);
    assert_eq!(both["politeness"]["calls"].as_u64(), Some(pool + setup));
    assert!(error_paths(&tmp.path().join("both")).is_empty());
    assert_eq!(
        rows(&tmp.path().join("both")),
        rows(&tmp.path().join("one"))
    );
}
