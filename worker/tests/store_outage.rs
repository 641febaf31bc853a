//! The object store goes away for 30 s in the middle of a scan and in the middle of a merge:
//! a SeaweedFS of the test's own, killed and restarted, and separately frozen (SIGSTOP, so
//! requests hang rather than fail). `scanjob run` either rides the outage out on its client's
//! retries (docs/install.md, "When the object store fails") or exits 1, and then the retry a Job
//! would make completes the night. Either way the published night holds every row once and
//! carries the previous night's `first_seen`, checked by pyarrow against GNU find.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const BUCKET: &str = "outage";
const ACCESS_KEY: &str = "outage-test";
const SECRET_KEY: &str = "outage-test-secret";
const OUTAGE: Duration = Duration::from_secs(30);

/// A SeaweedFS server (`weed mini`) of this test alone, on ports from `base` (each test its
/// own base; away from the cluster's 18333 family and the kernel's ephemeral range).
struct Weed {
    dir: PathBuf,
    base: u16,
    child: Option<Child>,
}

impl Weed {
    fn start(dir: &Path, base: u16) -> Self {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(
            dir.join("identities.json"),
            format!(
                r#"{{"identities":[{{"name":"t","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","List","Tagging","Write"]}}]}}"#
            ),
        )
        .unwrap();
        let mut weed = Self {
            dir: dir.to_path_buf(),
            base,
            child: None,
        };
        weed.spawn();
        weed
    }

    fn spawn(&mut self) {
        let weed = Path::new(&python()).with_file_name("weed");
        let d = self.dir.display();
        let b = self.base;
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("weed.log"))
            .unwrap();
        let child = Command::new(weed)
            .arg("mini")
            .arg(format!("-dir={d}/data"))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-metricsIp=127.0.0.1",
            ])
            .arg(format!("-s3.port={b}"))
            .arg(format!("-master.port={}", b + 1000))
            .arg(format!("-volume.port={}", b + 1007))
            .arg(format!("-filer.port={}", b + 555))
            .arg(format!("-s3.port.iceberg={}", b - 152))
            .arg(format!("-s3.port.lance={}", b - 151))
            .arg(format!("-metricsPort={}", b + 768))
            .arg(format!("-admin.port={}", b + 1313))
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-master.telemetry=false",
            ])
            .arg(format!("-s3.localSocket={d}/s3.sock"))
            .arg(format!("-filer.localSocket={d}/filer.sock"))
            .arg(format!("-s3.config={d}/identities.json"))
            .arg(format!("-bucket={BUCKET}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("weed starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        while !self.ready() {
            assert!(
                Instant::now() < deadline,
                "SeaweedFS on port {b} not ready in 90 s; see {d}/weed.log"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The bucket answers a signed HEAD with 200.
    fn ready(&self) -> bool {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-I",
                "-m",
                "2",
            ])
            .args(["--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
            .arg(format!("{ACCESS_KEY}:{SECRET_KEY}"))
            .arg(format!("http://127.0.0.1:{}/{BUCKET}", self.base))
            .output()
            .expect("curl runs");
        out.stdout == b"200"
    }

    fn pid(&self) -> String {
        self.child.as_ref().unwrap().id().to_string()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    /// `cmd` talks to this server and nothing else.
    fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", self.base),
        )
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ALLOW_HTTP", "true")
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}

/// How the store goes away.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// Killed, and started again with the same data 30 s later.
    Killed,
    /// SIGSTOP for 30 s, then SIGCONT: connections hang rather than fail.
    Frozen,
}

/// `scanjob run` of `root` into `url` as night `run` (2 shards, parts of 200 kB, so that
/// the scan writes while it walks), talking to `weed`.
fn night(weed: &Weed, root: &Path, url: &str, run: &str) -> Command {
    let mut cmd = scanjob();
    weed.env(&mut cmd)
        .arg("run")
        .arg(root)
        .args(["--out", url, "--shards", "2", "--threads", "8"])
        .args(["--part-size", "200000", "--run", run]);
    cmd
}

/// [`night`] `run`; when its log says `trigger`, the store
/// goes away for 30 s. Returns the exit code, its stderr, and whether the outage began before
/// the process ended.
fn run_through_outage(
    weed: &mut Weed,
    root: &Path,
    url: &str,
    run: &str,
    trigger: &str,
    outage: Outage,
) -> (Option<i32>, String, bool) {
    let mut child = night(weed, root, url, run)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let mut began = false;
    while let Ok(line) = rx.recv() {
        if line.contains(trigger) {
            match outage {
                Outage::Killed => weed.kill(),
                Outage::Frozen => weed.signal("-STOP"),
            }
            began = child.try_wait().unwrap().is_none();
            std::thread::sleep(OUTAGE);
            match outage {
                Outage::Killed => weed.spawn(),
                Outage::Frozen => weed.signal("-CONT"),
            }
            break;
        }
    }
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    (status.code(), stderr, began)
}

/// What deltalake reads of the newest night at `url` (night n is version n).
fn read_newest(weed: &Weed, url: &str) -> Value {
    let out = run_ok(
        weed.env(&mut Command::new(python()))
            .arg(manifest_dir().join("tests/snapshot_rows.py"))
            .arg(url),
    );
    serde_json::from_slice(&out.stdout).expect("snapshot_rows.py prints JSON")
}

/// Night 1 with the store up; night 2 with the store gone for 30 s once its log says
/// `trigger` (and, when the step gave up, the same command again, as a Job's retry).
fn night_survives(outage: Outage, base: u16, trigger: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut weed = Weed::start(&tmp.path().join("weed"), base);
    let backing = tmp.path().join("backing");
    for d in 0..40 {
        let dir = backing.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..250 {
            std::fs::write(dir.join(format!("f{f:03}.dat")), vec![b'x'; f * 7]).unwrap();
        }
    }
    let rows = find_paths(&backing).len();
    // Every call to the file system takes 2 ms: the scan lasts seconds, not milliseconds.
    let mnt = tmp.path().join("mnt");
    let _fs = SlowFs::mount(&backing, &mnt, 2000);
    let url = format!("s3://{BUCKET}/toc");
    run_ok(&mut night(&weed, &mnt, &url, "night1"));
    assert_eq!(read_newest(&weed, &url)["rows"], rows);

    let what = format!("{outage:?} store, from {trigger:?} on");
    let (code, stderr, began) =
        run_through_outage(&mut weed, &mnt, &url, "night2", trigger, outage);
    assert!(
        began,
        "{what}: the outage began while the run was going: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    match code {
        Some(0) => {}
        Some(1) => {
            // Retryable: nothing of night 2 is published, and a retry completes it.
            assert_eq!(
                read_newest(&weed, &url)["version"],
                0,
                "{what}: night 1 stays the newest: {stderr}"
            );
            run_ok(&mut night(&weed, &mnt, &url, "night2"));
        }
        other => panic!("{what}: exit {other:?}, expected 0 or 1 (retryable): {stderr}"),
    }
    let read = read_newest(&weed, &url);
    assert_eq!(read["version"], 1, "{what}: night 2 is the newest: {read}");
    assert_eq!(read["rows"], rows, "{what}: every row: {read}");
    assert_eq!(read["distinct_paths"], rows, "{what}: each once: {read}");
    assert_eq!(read["committed_rows"], rows, "{what}: {read}");
    assert_eq!(
        read["carried"], rows,
        "{what}: first_seen carried from night 1: {read}"
    );
    eprintln!("{what}: exit {code:?}");
}

#[test]
fn a_store_killed_for_30_s_mid_scan_and_mid_merge_loses_nothing() {
    night_survives(Outage::Killed, 10300, "planned");
    night_survives(Outage::Killed, 10300, "query memory pool");
}

#[test]
fn a_store_frozen_for_30_s_mid_scan_and_mid_merge_loses_nothing() {
    night_survives(Outage::Frozen, 12300, "planned");
    night_survives(Outage::Frozen, 12300, "query memory pool");
}
