//! `scanjob report`: its numbers against DuckDB over the same Parquet files, the atime check on
//! trees with and without real read times, and `report.html` rendered in headless Chromium,
//! its numbers read back from the page and compared with the derived tables.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

struct Snapshot {
    out: PathBuf,
    _dir: tempfile::TempDir,
}

/// User names of some of mktree's uids (0, 1000..1018), and of one it never uses; one line is
/// malformed. The second night is merged with it and [`GROUP_FILE`].
const PASSWD_FILE: &str = "root:x:0:0:root:/root:/bin/bash\n\
    alice:x:1000:100::/home/alice:/bin/sh\n\
    bob:x:1001:100::/home/bob:/bin/sh\n\
    this line is not a passwd entry\n\
    carol:x:1002:2000::/home/carol:/bin/sh\n\
    ghost:x:4242:100::/:/bin/false\n";
/// Names of two of mktree's gids (100, 1000, 2000, 2001, 2002).
const GROUP_FILE: &str = "users:x:100:\nstaff:x:1000:alice,bob\n";

/// A 20 k-file mktree tree (timestamps spread over ten years, a realistic mix of extensions,
/// owners and sizes; atime after mtime for most files) with a set of 10 MiB sparse files, then
/// changed (the set copied, files removed) and scanned again with owner and group names and
/// duplicates confirmed by content: the second snapshot has growth, a diff, a duplicate tree and
/// confirmed duplicate files. Made once per test binary.
fn mktree_snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = mktree(dir.path(), &["--files", "20000", "--seed", "11"]).root;
        let sparse_set = |name: &str| {
            let set = root.join("datasets_000/extra").join(name);
            std::fs::create_dir_all(&set).unwrap();
            for i in 0..10 {
                let file = std::fs::File::create(set.join(format!("x{i}.bin"))).unwrap();
                file.set_len(10 << 20).unwrap();
            }
        };
        sparse_set("set_a");
        let out = dir.path().join("toc");
        let opts = ["--shards", "2", "--project-level", "2"];
        scan(&root, &out, &[&["--run", "r1"][..], &opts].concat());
        sparse_set("set_b");
        std::fs::remove_file(root.join("datasets_000/extra/set_a/x0.bin")).unwrap();
        std::fs::remove_file(root.join("datasets_000/extra/set_b/x0.bin")).unwrap();
        let (passwd, group) = (dir.path().join("passwd"), dir.path().join("group"));
        std::fs::write(&passwd, PASSWD_FILE).unwrap();
        std::fs::write(&group, GROUP_FILE).unwrap();
        // The second night also reads duplicate candidates (within 500 MB), so the report
        // shows confirmed groups: the sparse sets are copies.
        let names = [
            "--passwd",
            passwd.to_str().unwrap(),
            "--group",
            group.to_str().unwrap(),
            "--hash-bytes",
            "500000000",
        ];
        scan(&root, &out, &[&["--run", "r2"][..], &opts, &names].concat());
        Snapshot { out, _dir: dir }
    })
}

fn report_json(out: &Path) -> Value {
    let output = run_ok(scanjob().arg("report").arg(out).arg("--json"));
    serde_json::from_slice(&output.stdout).expect("report --json prints JSON")
}

#[test]
fn report_numbers_equal_duckdb_over_the_same_files() {
    let snap = mktree_snapshot();
    let report = report_json(&snap.out);
    let manifest = snap.out.join("snapshots/r2/manifest.json");
    let duck = run_ok(
        Command::new(python())
            .arg(manifest_dir().join("tests/report_numbers.py"))
            .arg(&snap.out)
            .arg(&manifest)
            .arg(report["created"].as_str().unwrap()),
    );
    let duck: Value = serde_json::from_slice(&duck.stdout).expect("report_numbers.py prints JSON");
    for key in [
        "by_extension",
        "by_project",
        "top_directories",
        "top_extensions",
        "top_owners",
        "top_projects",
        "age",
    ] {
        assert_eq!(report[key], duck[key], "{key}");
    }
    for key in ["files", "bytes", "directories", "symlinks"] {
        assert_eq!(report["totals"][key], duck["totals"][key], "totals.{key}");
    }
    assert!(report["totals"]["files"].as_u64().unwrap() >= 20_000);
    assert_eq!(report["growth"]["previous_run"], "r1");
    assert_eq!(
        report["growth"]["diff"]["added"], 10,
        "set_b and its 9 files"
    );
    assert_eq!(report["growth"]["diff"]["removed"], 1, "set_a/x0.bin");
    let trees = &report["duplicates"]["top_trees"];
    assert_eq!(
        trees[0]["dirs"],
        serde_json::json!(["datasets_000/extra/set_a", "datasets_000/extra/set_b"])
    );
    assert_eq!(trees[0]["wasted_bytes"], 9 * (10u64 << 20));

    // The terminal report says the same numbers.
    let text = run_ok(scanjob().arg("report").arg(&snap.out));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(&format!("files {}", duck["totals"]["files"])),
        "{text}"
    );
    let top_ext = duck["top_extensions"]["by_files"][0]["key"]
        .as_str()
        .unwrap();
    assert!(text.contains(top_ext), "{text}");
    assert!(text.contains("since r1:"), "{text}");
}

#[test]
fn atime_check_tells_real_read_times_from_untracked_ones() {
    let snap = mktree_snapshot();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(snap.out.join("snapshots/r2/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["atime_reliable"], true,
        "mktree spreads atimes after mtimes"
    );

    // The same kind of tree with every atime set to its mtime, as a file system that does not
    // track reads leaves it.
    let tmp = tempfile::tempdir().unwrap();
    let root = mktree(tmp.path(), &["--files", "3000", "--seed", "11"]).root;
    run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import os, sys\n\
         for d, _, fs in os.walk(sys.argv[1]):\n\
         \x20   for f in fs:\n\
         \x20       p = os.path.join(d, f); st = os.lstat(p)\n\
         \x20       os.utime(p, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)\n",
            )
            .arg(&root),
    );
    let out = tmp.path().join("toc");
    scan(&root, &out, &["--run", "r1"]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("snapshots/r1/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["atime_reliable"], false);
    let report = report_json(&out);
    assert_eq!(report["atime"]["equal_mtime"], 1.0);
    let text = String::from_utf8(run_ok(scanjob().arg("report").arg(&out)).stdout).unwrap();
    assert!(text.contains("NOT tracked"), "{text}");
}

/// `page` rendered by headless Chromium with `extra` flags (`--dump-dom`, `--screenshot=…`), in
/// a window tall enough for the whole report.
fn chromium(page: &Path, extra: &[&str]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1280,2500",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("file://{}", page.display())),
    )
}

/// The DOM after the page's script ran, checked to have rendered without an error.
fn rendered_dom(page: &Path) -> String {
    let dom = String::from_utf8(chromium(page, &["--dump-dom"]).stdout).unwrap();
    assert!(
        dom.contains("data-rendered=\"ok\""),
        "the page's script ran to the end: {dom:.2000}"
    );
    assert!(!dom.contains("data-error"), "no script error: {dom:.2000}");
    dom
}

/// The attributes of every `<tag …>` element in `html` that has attribute `with`, in order.
fn elements(html: &str, tag: &str, with: &str) -> Vec<BTreeMap<String, String>> {
    let open = format!("<{tag} ");
    let mut found = Vec::new();
    for (start, _) in html.match_indices(&open) {
        let mut attrs = BTreeMap::new();
        let mut rest = &html[start + open.len()..];
        loop {
            rest = rest.trim_start();
            if rest.is_empty() || rest.starts_with('>') || rest.starts_with("/>") {
                break;
            }
            let name_end = rest
                .find(|c: char| c == '=' || c == '>' || c.is_whitespace())
                .unwrap_or(rest.len());
            let name = rest[..name_end].to_string();
            rest = &rest[name_end..];
            let mut value = String::new();
            if let Some(quoted) = rest.strip_prefix("=\"") {
                let end = quoted.find('"').expect("a closed attribute value");
                value = unescape(&quoted[..end]);
                rest = &quoted[end + 1..];
            }
            attrs.insert(name, value);
        }
        if attrs.contains_key(with) {
            found.push(attrs);
        }
    }
    found
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The part of `html` from the element with id `id` to the next `until`.
fn section<'a>(html: &'a str, id: &str, until: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("the page has #{id}"));
    let end = html[start..].find(until).map_or(html.len(), |e| start + e);
    &html[start..end]
}

fn number(attrs: &BTreeMap<String, String>, name: &str) -> u64 {
    attrs[name]
        .parse()
        .unwrap_or_else(|_| panic!("{name} is a number: {attrs:?}"))
}

/// What DuckDB (and deltalake) read from the snapshot's derived tables: `report_tables.py`.
fn derived_tables(out: &Path, run: &str) -> Value {
    let output = run_ok(
        Command::new(python())
            .arg(manifest_dir().join("tests/report_tables.py"))
            .arg(out)
            .arg(out.join(format!("snapshots/{run}/manifest.json"))),
    );
    serde_json::from_slice(&output.stdout).expect("report_tables.py prints JSON")
}

#[test]
fn report_html_shows_the_numbers_of_the_tables() {
    let snap = mktree_snapshot();
    let report_page = snap.out.join("snapshots/r2/report.html");
    let html = std::fs::read_to_string(&report_page).unwrap();
    for external in ["src=\"http", "href=\"http", "src=\"//", "@import", "url("] {
        assert!(!html.contains(external), "self-contained: {external}");
    }
    let dom = rendered_dom(&report_page);
    assert!(dom.contains("class=\"card\""), "{dom:.2000}");
    assert!(dom.matches("class=\"bar").count() >= 10, "bars drawn");
    let tables = derived_tables(&snap.out, "r2");
    let summary = report_json(&snap.out);

    // The treemap: every rectangle's bytes and files are its directory's recursive totals in
    // rollup_by_directory; its parent is drawn too; the directories left out are smaller
    // than every one drawn; a top-level directory's area is its share of the bytes.
    let rects = elements(&dom, "rect", "data-path");
    assert_eq!(rects.len(), summary["tree"].as_array().unwrap().len());
    assert!(rects.len() >= 5, "a treemap with content: {rects:?}");
    let dirs = tables["directories"].as_object().unwrap();
    let drawn: BTreeMap<&str, &BTreeMap<String, String>> =
        rects.iter().map(|r| (r["data-path"].as_str(), r)).collect();
    for r in &rects {
        let path = &r["data-path"];
        let truth = &dirs
            .get(path)
            .unwrap_or_else(|| panic!("{path} is in rollup_by_directory"));
        assert_eq!(number(r, "data-bytes"), truth["bytes"], "bytes of {path}");
        assert_eq!(number(r, "data-files"), truth["files"], "files of {path}");
        if let Some((parent, _)) = path.rsplit_once('/') {
            assert!(
                drawn.contains_key(parent),
                "{path}'s parent {parent} is drawn"
            );
        }
    }
    let smallest = rects.iter().map(|r| number(r, "data-bytes")).min().unwrap();
    for (path, truth) in dirs {
        let depth = path.split('/').count();
        if path.is_empty() || depth > 3 || truth["bytes"] == 0 || drawn.contains_key(&**path) {
            continue;
        }
        assert_eq!(
            rects.len(),
            300,
            "{path} is left out only when the treemap is full"
        );
        assert!(
            truth["bytes"].as_u64().unwrap() <= smallest,
            "{path} is smaller"
        );
    }
    let total = summary["totals"]["bytes"].as_u64().unwrap() as f64;
    for r in rects.iter().filter(|r| r["data-depth"] == "1") {
        let area: f64 = ["width", "height"]
            .iter()
            .map(|a| r[*a].parse::<f64>().unwrap())
            .product();
        let share = number(r, "data-bytes") as f64 / total;
        assert!(
            (area / (1060.0 * 520.0) - share).abs() < 0.01,
            "{r:?}: area {area} for a share of {share}"
        );
    }

    // Age histograms: every bucket's files and bytes are rollup_age's.
    let columns = elements(&dom, "div", "data-bucket");
    for time in ["mtime", "atime"] {
        let page: BTreeMap<String, (u64, u64)> = columns
            .iter()
            .filter(|c| c["data-time"] == time)
            .map(|c| {
                let n = (number(c, "data-files"), number(c, "data-bytes"));
                (c["data-bucket"].clone(), n)
            })
            .collect();
        assert!(page.len() >= 5, "{time}: {page:?}");
        let truth = tables["age"][time].as_object().unwrap();
        for (bucket, n) in truth {
            let n = (n["files"].as_u64().unwrap(), n["bytes"].as_u64().unwrap());
            if n.0 > 0 {
                assert_eq!(page.get(bucket), Some(&n), "{time} {bucket}");
            }
        }
        for (bucket, n) in &page {
            let truth = truth.get(bucket).map_or((0, 0), |t| {
                (t["files"].as_u64().unwrap(), t["bytes"].as_u64().unwrap())
            });
            assert_eq!(*n, truth, "{time} {bucket}");
        }
    }

    // Size and files over every night: the points are the trends table's totals.
    let nights: Vec<(String, u64, u64)> = tables["nights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let (files, bytes) = (n["files"].as_u64().unwrap(), n["bytes"].as_u64().unwrap());
            (n["run"].as_str().unwrap().to_string(), files, bytes)
        })
        .collect();
    assert_eq!(nights.len(), 2, "{nights:?}");
    for (chart, value) in [("nights-chart", 2), ("nights-files-chart", 1)] {
        let points: Vec<(String, u64)> =
            elements(section(&dom, chart, "</svg>"), "circle", "data-run")
                .iter()
                .map(|c| (c["data-run"].clone(), number(c, "data-value")))
                .collect();
        let truth: Vec<(String, u64)> = nights
            .iter()
            .map(|n| (n.0.clone(), if value == 1 { n.1 } else { n.2 }))
            .collect();
        assert_eq!(points, truth, "{chart}");
    }

    // Duplicate file groups by stage: the duplicate_files table's groups and wasted bytes.
    let stages = elements(section(&dom, "dup-stages", "</table>"), "tr", "data-stage");
    let page: Vec<(String, u64, u64)> = stages
        .iter()
        .map(|r| {
            let n = (number(r, "data-groups"), number(r, "data-wasted"));
            (r["data-stage"].clone(), n.0, n.1)
        })
        .collect();
    let truth: Vec<(String, u64, u64)> = ["candidate", "sampled", "confirmed"]
        .iter()
        .map(|stage| {
            let t = &tables["duplicate_stages"][stage];
            let n = (
                t["groups"].as_u64().unwrap_or(0),
                t["wasted_bytes"].as_u64().unwrap_or(0),
            );
            (stage.to_string(), n.0, n.1)
        })
        .collect();
    assert_eq!(page, truth, "duplicate groups by stage");
    // The sparse sets' 18 files (9 each, all zeros) are one confirmed group: 17 copies wasted.
    assert!(
        page.contains(&("confirmed".to_string(), 1, 17 * (10 << 20))),
        "the sparse sets are one confirmed group: {page:?}"
    );
    let files = elements(&dom, "tr", "data-copies");
    let page: Vec<(String, u64)> = files
        .iter()
        .map(|r| (r["data-stage"].clone(), number(r, "data-wasted")))
        .collect();
    let listed: Vec<(String, u64)> = summary["duplicates"]["top_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let wasted = g["wasted_bytes"].as_u64().unwrap();
            (g["stage"].as_str().unwrap().to_string(), wasted)
        })
        .collect();
    assert_eq!(page, listed, "the top file groups, in the summary's order");

    // Owners and groups by name where the passwd and group files name them.
    let passwd = [
        ("0", "root"),
        ("1000", "alice"),
        ("1001", "bob"),
        ("1002", "carol"),
    ];
    let owners = section(&dom, "top-owners", "</table>");
    let mut named = 0;
    for row in elements(owners, "tr", "data-key") {
        let uid = row["data-key"].as_str();
        let shown = match passwd.iter().find(|(id, _)| *id == uid) {
            Some((_, name)) => {
                named += 1;
                format!("{name} ({uid})")
            }
            None => uid.to_string(),
        };
        assert!(
            owners.contains(&format!("title=\"{uid}\">{shown}</td>")),
            "owner {uid} shown as {shown}: {owners}"
        );
    }
    assert!(named > 0, "mktree's most common uids are named: {owners}");
    let groups = section(&dom, "top-groups", "</table>");
    for (gid, name) in [("100", "users"), ("1000", "staff")] {
        assert!(
            groups.contains(&format!(">{name} ({gid})</td>")),
            "{groups}"
        );
    }
    assert!(!dom.contains("ghost"), "a name of a uid that owns nothing");
    let uid_names = summary["uid_names"].as_object().unwrap();
    assert!(uid_names.values().all(|n| n != "ghost"), "{uid_names:?}");
    let text = String::from_utf8(run_ok(scanjob().arg("report").arg(&snap.out)).stdout).unwrap();
    for (uid, name) in uid_names {
        let name = name.as_str().unwrap();
        assert!(text.contains(&format!("{name} ({uid})")), "{text}");
    }
    assert!(text.contains("file groups by stage: candidate"), "{text}");

    // The screenshot (docs/report.png is a copy of it).
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&report_page, &[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 20_000,
        "a page with content, not a blank one: {} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}

/// What the hash step adds to the summary (stage totals, the top file groups, its own totals)
/// is drawn as given, confirmed groups first, with the O_NOATIME refusals.
#[test]
fn report_html_draws_duplicate_stages_and_the_hash_steps_totals() {
    use scanjob_worker::summary::{Duplicates, FileGroup, HashTotals, StageTotal, Summary};
    let stage = |stage: &str, groups, wasted_bytes| StageTotal {
        stage: stage.into(),
        groups,
        wasted_bytes,
    };
    let group = |stage: &str, size: u64, copies: u64, paths: &[&str], paths_total| FileGroup {
        stage: stage.into(),
        rule: "same content".into(),
        size,
        copies,
        wasted_bytes: size * (copies - 1),
        hash: Some("ab".repeat(32)),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        paths_total,
    };
    let top_files = vec![
        group(
            "confirmed",
            5 << 20,
            3,
            &["a/x.bin", "b/x.bin", "c/x.bin"],
            3,
        ),
        group("confirmed", 2 << 20, 2, &["a/y.bin", "b/y.bin"], 2),
        group("sampled", 40 << 20, 4, &["p/1", "p/2", "p/3", "p/4"], 12),
        group("candidate", 90 << 20, 2, &["q/big", "r/big"], 2),
    ];
    let summary = Summary {
        run: "r9".into(),
        root: "/data".into(),
        duplicates: Duplicates {
            min_size: 1 << 20,
            file_groups: 17,
            file_wasted_bytes: 900 << 20,
            stages: vec![
                stage("candidate", 10, 500 << 20),
                stage("sampled", 4, 300 << 20),
                stage("confirmed", 3, 100 << 20),
            ],
            top_files: top_files.clone(),
            hashing: Some(HashTotals {
                pods: 4,
                budget_bytes: 10 << 30,
                bytes_read: 3 << 30,
                files_sampled: 120,
                files_hashed: 31,
                cache_hits: 57,
                noatime_refused: 6,
                ..HashTotals::default()
            }),
            ..Duplicates::default()
        },
        ..Summary::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, scanjob_worker::report::html::render(&summary)).unwrap();
    let dom = rendered_dom(&page);

    let stages: Vec<(String, String, String)> =
        elements(section(&dom, "dup-stages", "</table>"), "tr", "data-stage")
            .into_iter()
            .map(|r| {
                let (groups, wasted) = (r["data-groups"].clone(), r["data-wasted"].clone());
                (r["data-stage"].clone(), groups, wasted)
            })
            .collect();
    let expected: Vec<(String, String, String)> = summary
        .duplicates
        .stages
        .iter()
        .map(|s| {
            let n = (s.groups.to_string(), s.wasted_bytes.to_string());
            (s.stage.clone(), n.0, n.1)
        })
        .collect();
    assert_eq!(stages, expected);
    let rows: Vec<(String, u64, u64)> = elements(&dom, "tr", "data-copies")
        .iter()
        .map(|r| {
            let n = (number(r, "data-wasted"), number(r, "data-copies"));
            (r["data-stage"].clone(), n.0, n.1)
        })
        .collect();
    let expected: Vec<(String, u64, u64)> = top_files
        .iter()
        .map(|g| (g.stage.clone(), g.wasted_bytes, g.copies))
        .collect();
    assert_eq!(rows, expected, "every group, in the summary's order");
    assert!(dom.contains("+9 more"), "12 paths, 3 shown: {dom:.3000}");
    let hashing = section(&dom, "dup-hashing", "</p>");
    for said in [
        "3.0 GiB of a 10.0 GiB budget",
        "120 files sampled",
        "31 hashed",
        "57 from the cache",
        "6 refused O_NOATIME",
    ] {
        assert!(hashing.contains(said), "{said}: {hashing}");
    }
    let text = summary.render_text();
    for said in [
        "confirmed 3 groups wasting 100.0 MiB",
        "6 refused O_NOATIME",
        "10.0 MiB wasted: confirmed 3 copies of 5.0 MiB: a/x.bin, b/x.bin, c/x.bin",
        "(+9 more)",
    ] {
        assert!(text.contains(said), "{said}: {text}");
    }
}

/// `--passwd` and `--group` files: one that cannot be read stops the run before it scans, naming
/// the file; a malformed line is skipped with a warning.
#[test]
fn owner_name_files_are_checked_before_the_run() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir_all(root.join("a")).unwrap();
    std::fs::write(root.join("a/file"), b"hello").unwrap();
    let uid = std::fs::metadata(root.join("a/file")).unwrap().uid();
    let out = tmp.path().join("toc");
    let missing = tmp.path().join("no-such-passwd");
    let failed = scanjob()
        .arg("run")
        .arg(&root)
        .arg("--out")
        .arg(&out)
        .arg("--passwd")
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains(&format!("--passwd {}", missing.display())),
        "{stderr}"
    );
    assert!(!out.join("latest.json").exists(), "nothing published");
    assert!(!out.join("runs").exists(), "nothing scanned: {stderr}");

    let passwd = tmp.path().join("passwd");
    std::fs::write(&passwd, format!("garbage\nowner:x:{uid}:0::/:/bin/sh\n")).unwrap();
    let ran = run_ok(
        scanjob()
            .arg("run")
            .arg(&root)
            .arg("--out")
            .arg(&out)
            .arg("--passwd")
            .arg(&passwd),
    );
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(
        stderr.contains("skipping a line") && stderr.contains("line=1"),
        "{stderr}"
    );
    let report = report_json(&out);
    assert_eq!(report["uid_names"][uid.to_string()], "owner", "{report}");
}
