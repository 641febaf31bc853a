//! Scale-out across pods on a latency-bound file system: one ScanJob of 8 shards over a slowfs
//! mount (a fixed latency per metadata request), run with parallelism 1, 2, 4 and 8 on the test
//! cluster; wall time from `kubectl apply` to the published snapshot, and files/s.
//!
//!     bash bench/scaleout.sh      # mounts slowfs, starts the test cluster, runs this
//!
//! Env: SCALEOUT_MNT (the slowfs mount), SCALEOUT_TRUTH (mktree's summary of the tree behind it),
//! SCALEOUT_THREADS (walker threads per pod, default 2).

use std::time::{Duration, Instant};

use scanjob_e2e::operator::{Harness, read_snapshot, scanjob_yaml_with_worker};
use scanjob_operator::crd::Phase;

#[tokio::main]
async fn main() {
    let mnt = std::env::var("SCALEOUT_MNT").expect("SCALEOUT_MNT: the slowfs mount");
    let truth: serde_json::Value = serde_json::from_slice(
        &std::fs::read(std::env::var("SCALEOUT_TRUTH").expect("SCALEOUT_TRUTH")).unwrap(),
    )
    .unwrap();
    let files = truth["files"].as_u64().unwrap();
    let threads: u32 = std::env::var("SCALEOUT_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let h = Harness::start("bench-scaleout").await;
    println!("tree: {files} files behind {mnt}; 8 shards, {threads} walker threads per pod");
    println!("| parallelism | wall s (apply → published) | files/s | speed-up |");
    println!("|---:|---:|---:|---:|");
    let mut base = None;
    for parallelism in [1, 2, 4, 8] {
        let name = format!("scaleout-p{parallelism}");
        let yaml = scanjob_yaml_with_worker(
            &name,
            std::path::Path::new(&mnt),
            &format!("{}/{name}", h.url),
            &format!("threads: {threads}"),
            &format!("  shards: 8\n  parallelism: {parallelism}\n"),
        );
        let start = Instant::now();
        h.apply(&yaml);
        let sj = h
            .wait(&name, Duration::from_secs(1800), "Succeeded", |sj| {
                sj.status
                    .as_ref()
                    .is_some_and(|s| s.current_run.is_none() && s.phase == Some(Phase::Succeeded))
            })
            .await;
        let wall = start.elapsed().as_secs_f64();
        let success = sj.status.unwrap().last_successful_run.unwrap();
        let snap = read_snapshot(&success.snapshot);
        assert_eq!(snap["kinds"]["file"].as_u64(), Some(files), "{snap}");
        let base = *base.get_or_insert(wall);
        println!(
            "| {parallelism} | {wall:.1} | {:.0} | {:.2}× |",
            files as f64 / wall,
            base / wall
        );
    }
    h.delete().await;
}
