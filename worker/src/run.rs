//! `scanjob run`: plan, scan every shard on local threads, hash the duplicate candidates
//! (with `--hash-bytes`), merge — the same layout a cluster run produces, without Kubernetes.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use scanjob_contract::args::Budget;

use crate::error::Result;
use crate::fs::nfs::RpcReport;
use crate::fs::politeness::PolitenessReport;
use crate::hash::{HashRequest, hash_partition};
use crate::join::join_run;
use crate::merge::{MergeOptions, merge_run};
use crate::plan::{PlanRequest, make_plan};
use crate::scan::walk::WalkCounters;
use crate::scan::{ScanRequest, scan_shard};
use crate::store::Location;
use crate::store::layout::{EntryCounts, SnapshotManifest, WalkSettings, run_dir, run_id, url_of};

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub root: PathBuf,
    pub output: Location,
    pub shards: u32,
    pub threads: usize,
    pub part_bytes: usize,
    pub run: Option<String>,
    pub settings: WalkSettings,
    pub budget: Budget,
    /// Derived tables and retention; `max_missing_shards` is ignored (every shard runs here).
    pub merge: MergeOptions,
    /// Partitions of the merge's joins, run one after another before it ([`join_run`]).
    pub merge_pods: u32,
    /// Bytes the hash step may read to confirm duplicates (`crate::hash`); 0 skips it.
    pub hash_bytes: u64,
}

/// Live totals over the shards of a local run, for the progress bar.
#[derive(Debug, Default)]
pub struct RunProgress {
    shards: Mutex<Vec<Arc<WalkCounters>>>,
}

/// A point-in-time view of [`RunProgress`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgressTotals {
    pub entries: u64,
    pub file_bytes: u64,
    pub errors: u64,
}

impl RunProgress {
    fn start_shard(&self) -> Arc<WalkCounters> {
        let counters = Arc::new(WalkCounters::default());
        self.shards
            .lock()
            .expect("progress lock")
            .push(counters.clone());
        counters
    }

    pub fn totals(&self) -> ProgressTotals {
        let shards = self.shards.lock().expect("progress lock");
        shards
            .iter()
            .fold(ProgressTotals::default(), |t, c| ProgressTotals {
                entries: t.entries + c.entries.load(Ordering::Relaxed),
                file_bytes: t.file_bytes + c.file_bytes.load(Ordering::Relaxed),
                errors: t.errors + c.errors.load(Ordering::Relaxed),
            })
    }
}

/// What `scanjob run --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run: String,
    pub output: String,
    pub manifest: String,
    pub root: String,
    pub shards: u32,
    pub threads: usize,
    pub balanced_by: String,
    pub estimated_imbalance: f64,
    pub seconds: f64,
    pub entries_per_second: f64,
    pub output_bytes: u64,
    /// File-system calls and how the budget and latency guard (of the last shard) did.
    pub politeness: PolitenessReport,
    /// An `nfs://` root's RPCs by procedure, over all shards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nfs: Option<RpcReport>,
    #[serde(flatten)]
    pub counts: EntryCounts,
    #[serde(skip)]
    pub snapshot: SnapshotManifest,
}

/// Runs every phase here. Shards run one after another, each with all `threads`: on one
/// machine that keeps memory at one shard's worth while the disk stays busy.
pub async fn run_local(request: RunRequest, progress: &RunProgress) -> Result<RunSummary> {
    let started = Instant::now();
    let run = request
        .run
        .clone()
        .unwrap_or_else(|| run_id(chrono::Utc::now()));
    let (plan, plan_url) = make_plan(PlanRequest {
        root: request.root.clone(),
        output: request.output.clone(),
        shards: request.shards,
        run: run.clone(),
        previous: Some(request.output.clone()),
        settings: request.settings.clone(),
        threads: request.threads,
        budget: request.budget,
    })
    .await?;
    let mut output_bytes = 0;
    let mut politeness = PolitenessReport::default();
    let mut nfs = None;
    for index in 0..plan.shards.len() as u32 {
        let success = scan_shard(
            ScanRequest {
                plan_url: plan_url.clone(),
                index,
                threads: request.threads,
                part_bytes: request.part_bytes,
                root_override: None,
                budget: request.budget,
            },
            progress.start_shard(),
        )
        .await?;
        output_bytes += success.output_bytes();
        politeness.calls += success.politeness.calls;
        politeness.max_ops_per_second = success.politeness.max_ops_per_second;
        politeness.latency_guard = success.politeness.latency_guard;
        if let Some(shard) = &success.nfs {
            nfs.get_or_insert_with(RpcReport::default).add(shard);
        }
    }
    if request.hash_bytes > 0 {
        hash_partition(HashRequest {
            plan_url: plan_url.clone(),
            index: 0,
            count: 1,
            threads: request.threads,
            root_override: None,
            max_bytes: request.hash_bytes,
            min_size: request.merge.insights.duplicate_min_size,
            budget: request.budget,
        })
        .await?;
    }
    // Every shard ran here, in this process: none may be missing.
    let merge = MergeOptions {
        max_missing_shards: 0,
        ..request.merge.clone()
    };
    let run_url = url_of(&request.output.url, &run_dir(&run));
    if request.merge_pods > 1 {
        for index in 0..request.merge_pods {
            join_run(&run_url, &merge, index, request.merge_pods).await?;
        }
    }
    let (snapshot, manifest) = merge_run(&run_url, &merge).await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(RunSummary {
        manifest,
        run,
        output: request.output.url.clone(),
        root: plan.root.clone(),
        shards: plan.shards.len() as u32,
        threads: request.threads,
        balanced_by: plan.balanced_by.clone(),
        estimated_imbalance: plan.estimated_imbalance,
        entries_per_second: snapshot.counts.entries as f64 / seconds.max(1e-9),
        seconds,
        output_bytes,
        politeness,
        nfs,
        counts: snapshot.counts.clone(),
        snapshot,
    })
}
