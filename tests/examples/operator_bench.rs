//! Measures the operator on the test cluster: the time from `kubectl apply` of a ScanJob to the
//! creation of its plan and scan Jobs, to its first scan container started on the node, and to
//! its published snapshot; and the operator's memory with 100 ScanJobs that each ran once (their
//! 300 Jobs in its cache).
//!
//!     bash bench/operator.sh                  # starts the test cluster, runs this, stops it
//!     bash bench/operator.sh --latency-only   # without the 100 ScanJobs

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use scanjob_e2e::operator::{Harness, kubectl, scanjob_yaml, small_tree};
use scanjob_operator::crd::{Phase, ScanJob};

/// Polls every 5 ms until `step`'s Job of ScanJob `name` exists.
async fn until_job(h: &Harness, name: &str, step: &str) {
    let jobs = h.ns.api::<Job>();
    let selector = format!("scanjob.dev/name={name},scanjob.dev/step={step}");
    loop {
        let list = jobs
            .list(&ListParams::default().labels(&selector))
            .await
            .expect("listing Jobs");
        if !list.items.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls every 20 ms until a scan container of ScanJob `name` has started (running, or already
/// finished) on the node.
async fn until_scan_container_started(h: &Harness, name: &str) {
    let pods = h.ns.api::<Pod>();
    let selector = format!("scanjob.dev/name={name},scanjob.dev/step=scan");
    loop {
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .expect("listing pods");
        let started = list.items.iter().any(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .and_then(|c| c.state.as_ref())
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        });
        if started {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let h = Harness::start("bench-operator").await;
    let root = h.ns.dir.join("tree");
    let files = small_tree(&root, 4, 250);
    let op_pid = h.operator.as_ref().expect("operator").pid();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (mut to_plan, mut to_scan, mut to_done) = (Vec::new(), Vec::new(), Vec::new());
    let mut to_pod = Vec::new();
    for i in 0..5 {
        let name = format!("latency-{i}");
        let yaml = scanjob_yaml(
            &name,
            &root,
            &format!("{}/{name}", h.url),
            "  shards: 2\n  parallelism: 2\n",
        );
        let start = Instant::now();
        h.apply(&yaml);
        until_job(&h, &name, "plan").await;
        to_plan.push(start.elapsed().as_secs_f64());
        until_job(&h, &name, "scan").await;
        to_scan.push(start.elapsed().as_secs_f64());
        until_scan_container_started(&h, &name).await;
        to_pod.push(start.elapsed().as_secs_f64());
        h.wait_finished(&name, Phase::Succeeded).await;
        to_done.push(start.elapsed().as_secs_f64());
    }
    println!("tree: {files} files, 2 shards; 5 ScanJobs applied one after another");
    println!(
        "kubectl apply → plan Job created: median {:.3} s (min {:.3}, max {:.3})",
        median(to_plan.clone()),
        to_plan.iter().copied().fold(f64::MAX, f64::min),
        to_plan.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "kubectl apply → scan Job created: median {:.3} s (min {:.3}, max {:.3})",
        median(to_scan.clone()),
        to_scan.iter().copied().fold(f64::MAX, f64::min),
        to_scan.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "kubectl apply → first scan container started on the node: median {:.3} s (min {:.3}, max {:.3})",
        median(to_pod.clone()),
        to_pod.iter().copied().fold(f64::MAX, f64::min),
        to_pod.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "kubectl apply → snapshot published (phase Succeeded): median {:.3} s",
        median(to_done)
    );
    let (rss, hwm) = memory_kib(op_pid);
    println!(
        "operator memory with 5 ScanJobs: RSS {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );

    if std::env::args().any(|a| a == "--latency-only") {
        h.delete().await;
        return;
    }
    let all: String = (0..100)
        .map(|i| {
            let name = format!("many-{i:03}");
            scanjob_yaml(&name, &root, &format!("{}/{name}", h.url), "  shards: 1\n")
        })
        .collect::<Vec<_>>()
        .join("\n---\n");
    let start = Instant::now();
    let (ok, out) = kubectl(&["apply", "-n", &h.ns.name, "-f", "-"], Some(&all));
    assert!(ok, "{out}");
    let api = h.ns.api::<ScanJob>();
    loop {
        let list = api
            .list(&ListParams::default())
            .await
            .expect("listing ScanJobs");
        let done = list
            .items
            .iter()
            .filter(|sj| {
                sj.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("many-"))
            })
            .filter(|sj| {
                sj.status
                    .as_ref()
                    .is_some_and(|s| s.phase == Some(Phase::Succeeded))
            })
            .count();
        if done == 100 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "only {done} of 100 succeeded"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all_done = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss, hwm) = memory_kib(op_pid);
    let jobs =
        h.ns.api::<Job>()
            .list(&ListParams::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
    println!(
        "100 more ScanJobs applied at once (1 shard each): all published after {all_done:.1} s (pods on the test node)"
    );
    println!(
        "operator memory with 105 ScanJobs and {jobs} Jobs: RSS {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    h.delete().await;
}
