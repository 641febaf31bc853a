//! The operator at the reference scale: slowfs' synthetic tree (16 M files by default) mounted
//! on the test node, one ScanJob per parallelism over it as a hostPath volume, two nights each
//! (`churn=0`, then the same tree a night later), every step a Job whose pods are containers of
//! the worker image. For each night it prints the time from `kubectl apply` (night 1) or the
//! `scanjob.dev/run-now` annotation (night 2) to the published snapshot, each step's Job from
//! start to completion, the FUSE requests slowfs counted, and whether the published totals equal
//! the tree's ground truth; then `bench/reference_check.py` compares the tables on S3 (per
//! extension, the diff, `first_seen`) with it.
//!
//!     bash bench/operator_scale.sh [--files 16M] [--shards 16] [--parallelism "2 4 8"]
//!         [--latency-us 0] [--churn 0.005] [--merge-pods 1] [--out DIR]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use scanjob_e2e::operator::{Harness, scanjob_yaml, workspace_dir};
use scanjob_operator::crd::{Outcome, RUN_LABEL, STEP_LABEL, ScanJob};
use scanjob_testkit::SlowFs;

struct Options {
    files: String,
    shards: u32,
    parallelism: Vec<u32>,
    latency_us: u64,
    churn: String,
    merge_pods: u32,
    out: PathBuf,
}

fn options() -> Options {
    let mut o = Options {
        files: "16M".into(),
        shards: 16,
        parallelism: vec![2, 4, 8],
        latency_us: 0,
        churn: "0.005".into(),
        merge_pods: 1,
        out: std::env::temp_dir().join("scanjob-operator-scale"),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [key, value] = pair else {
            panic!("options come in pairs: {args:?}")
        };
        let num = |v: &str| {
            v.parse::<u32>()
                .unwrap_or_else(|_| panic!("bad value for {key}: {value}"))
        };
        match key.as_str() {
            "--files" => o.files = value.clone(),
            "--shards" => o.shards = num(value),
            "--parallelism" => o.parallelism = value.split_whitespace().map(num).collect(),
            "--latency-us" => o.latency_us = num(value).into(),
            "--churn" => o.churn = value.clone(),
            "--merge-pods" => o.merge_pods = num(value),
            "--out" => o.out = PathBuf::from(value),
            _ => panic!("unknown option {key}"),
        }
    }
    o
}

fn requests(stats: &Path) -> u64 {
    // slowfs rewrites its counters every 100 ms.
    std::thread::sleep(Duration::from_millis(250));
    let text = std::fs::read_to_string(stats).expect("slowfs --stats file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("slowfs --stats JSON");
    v["total"].as_u64().expect("total in slowfs --stats")
}

/// Each step's Job of run `run`, in the order they started: (step, seconds from start to
/// completion).
async fn step_times(h: &Harness, name: &str, run: &str) -> Vec<(String, f64)> {
    let selector = format!("scanjob.dev/name={name},{RUN_LABEL}={run}");
    let jobs =
        h.ns.api::<Job>()
            .list(&ListParams::default().labels(&selector))
            .await
            .expect("listing Jobs");
    let mut steps: Vec<(String, f64, f64)> = jobs
        .items
        .iter()
        .filter_map(|j| {
            let step = j.metadata.labels.as_ref()?.get(STEP_LABEL)?.clone();
            let status = j.status.as_ref()?;
            let start = status.start_time.as_ref()?.0.as_second() as f64;
            let end = status.completion_time.as_ref()?.0.as_second() as f64;
            Some((step, start, end - start))
        })
        .collect();
    steps.sort_by(|a, b| a.1.total_cmp(&b.1));
    steps.into_iter().map(|(s, _, d)| (s, d)).collect()
}

struct Night {
    parallelism: u32,
    night: u32,
    seconds: f64,
    steps: Vec<(String, f64)>,
    requests: u64,
    totals: String,
}

/// Waits for the run other than `previous` to end; panics unless it succeeded.
async fn finished(h: &Harness, name: &str, previous: Option<&str>) -> ScanJob {
    let previous = previous.map(str::to_string);
    let sj = h
        .wait(
            name,
            Duration::from_secs(3 * 3600),
            "the run to end",
            move |sj| {
                sj.status.as_ref().is_some_and(|s| {
                    s.current_run.is_none()
                        && s.last_run
                            .as_ref()
                            .is_some_and(|r| Some(&r.id) != previous.as_ref())
                })
            },
        )
        .await;
    let last = sj.status.as_ref().and_then(|s| s.last_run.as_ref());
    let last = last.expect("a finished run");
    assert_eq!(
        last.outcome,
        Outcome::Succeeded,
        "{name}: run {} ended {:?}: {} {}",
        last.id,
        last.outcome,
        last.reason,
        last.message
    );
    sj
}

/// "equal" when the published files, directories and bytes equal slowfs' summary, else both.
fn compare(sj: &ScanJob, truth: &Path) -> String {
    let run = sj
        .status
        .as_ref()
        .and_then(|s| s.last_successful_run.as_ref());
    let run = run.expect("a successful run");
    let text = std::fs::read_to_string(truth).expect("slowfs --summary file");
    let t: serde_json::Value = serde_json::from_str(&text).expect("slowfs --summary JSON");
    let want = (
        t["files"].as_i64().unwrap_or(-1),
        t["dirs"].as_i64().unwrap_or(-1),
        t["total_apparent_bytes"].as_i64().unwrap_or(-1),
    );
    let got = (run.files, run.directories, run.bytes);
    if got == want {
        format!("equal ({} files, {} dirs)", got.0, got.1)
    } else {
        format!("DIFFERS: published {got:?}, truth {want:?}")
    }
}

#[tokio::main]
async fn main() {
    let o = options();
    let truth_dir = o.out.join("bench");
    std::fs::create_dir_all(&truth_dir).expect("output directory");
    let h = Harness::start("bench-operator-scale").await;
    let mut nights = Vec::new();
    let mut checks = Vec::new();
    for &p in &o.parallelism {
        let name = format!("scale-p{p}");
        let url = format!("{}/{name}", h.url);
        let mnt = h.ns.dir.join(format!("mnt-{name}"));
        let stats = h.ns.dir.join(format!("stats-{name}.json"));
        let truth1 = truth_dir.join("truth1.json");
        let truth2 = truth_dir.join("truth2.json");

        let spec = format!(
            "  shards: {}\n  parallelism: {p}\n  mergePods: {}\n",
            o.shards, o.merge_pods
        );
        let mut previous: Option<String> = None;
        for (night, churn, truth) in [(1, "0", &truth1), (2, o.churn.as_str(), &truth2)] {
            let fs = SlowFs::synthetic(
                &format!("files={},churn={churn}", o.files),
                &mnt,
                o.latency_us,
                truth,
                &stats,
            );
            let before = requests(&stats);
            let start = Instant::now();
            match &previous {
                None => h.apply(&scanjob_yaml(&name, &mnt, &url, &spec)),
                Some(first) => {
                    h.run_again_within(
                        &name,
                        first,
                        serde_json::json!({"scanjob.dev/run-now": "night-2"}),
                        Duration::from_secs(3 * 3600),
                    )
                    .await;
                }
            }
            let sj = finished(&h, &name, previous.as_deref()).await;
            let seconds = start.elapsed().as_secs_f64();
            let run = sj.status.as_ref().and_then(|s| s.last_run.as_ref());
            let run = run.expect("a run").id.clone();
            nights.push(Night {
                parallelism: p,
                night,
                seconds,
                steps: step_times(&h, &name, &run).await,
                requests: requests(&stats) - before,
                totals: compare(&sj, truth),
            });
            drop(fs);
            previous = Some(run);
        }

        let python = std::env::var("SCANJOB_PYTHON").unwrap_or_else(|_| "python3".into());
        let check = std::process::Command::new(python)
            .arg(workspace_dir().join("bench/reference_check.py"))
            .arg(&o.out)
            .args(["--tables", &url])
            .output()
            .expect("running bench/reference_check.py");
        checks.push((
            p,
            check.status.success(),
            String::from_utf8_lossy(&check.stdout).into_owned()
                + &String::from_utf8_lossy(&check.stderr),
        ));
        for n in &nights[nights.len() - 2..] {
            eprintln!(
                "parallelism {p}, night {}: {:.1} s {:?}",
                n.night, n.seconds, n.steps
            );
        }
    }

    println!(
        "slowfs --synthetic files={} (night 2: churn={}) at {} µs per request; {} shards, \
         mergePods {}; pods on the test node\n",
        o.files, o.churn, o.latency_us, o.shards, o.merge_pods
    );
    println!(
        "| parallelism | night | apply → published s | each step's Job, start → complete (s) | FUSE requests | published totals vs truth |"
    );
    println!("|---:|---:|---:|---|---:|---|");
    for n in &nights {
        let steps: Vec<String> = n.steps.iter().map(|(s, d)| format!("{s} {d:.0}")).collect();
        println!(
            "| {} | {} | {:.1} | {} | {} | {} |",
            n.parallelism,
            n.night,
            n.seconds,
            steps.join(", "),
            n.requests,
            n.totals
        );
    }
    let mut bad = false;
    for (p, ok, out) in &checks {
        println!("\nparallelism {p}: the tables against the ground truth\n\n{out}");
        bad |= !ok;
    }
    h.delete().await;
    if bad {
        std::process::exit(1);
    }
}
