//! `scanjob scan`: one shard of a plan → `runs/<run>/shards/<i>/` and, last, `_SUCCESS.json`.
//!
//! [`walk`] is the parallel walker of a mounted tree, [`nfs`] the walk of an NFS export through
//! the user-space client, [`rows`] turns entries into Arrow rows and error rows; the calls it
//! makes and the budget they are charged to are [`crate::fs`]'s (which of the two sources a root
//! names is [`crate::fs::source`]'s), what it walks is its [`crate::shard`] of the plan. It reads the tree (never writes it), reads the plan, and
//! writes only below its own shard's directory.

pub mod nfs;
pub mod rows;
pub mod walk;

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use arrow_schema::SchemaRef;
use object_store::PutMode;
use tokio::sync::mpsc;
use tracing::{info, warn};

use scanjob_contract::args::Budget;

use crate::error::{Error, Result};
use crate::fs::calls::device_of;
use crate::fs::identity::DeviceIds;
use crate::fs::nfs::RpcReport;
use crate::fs::politeness::Politeness;
use crate::fs::root::{exclude_set, open_root};
use crate::fs::source::{NfsExport, Source};
use crate::scan::nfs::NfsWalk;
use crate::scan::walk::{ShardBatch, WalkCounters, WalkOptions};
use crate::schema::{ERROR_SCHEMA, TOC_SCHEMA};
use crate::shard::{PlannedDirs, ShardAssignment, WalkStart, planned_dirs};
use crate::store::layout::{
    LAYOUT_FORMAT, ShardPlan, ShardSuccess, manifest_path, shard_dir, success_path, toc_shard_dir,
};
use crate::store::writer::{PartFile, RollingWriter};
use crate::store::{Location, load_plan};

/// Rows per Arrow batch handed from a walker thread to the writer.
pub const BATCH_ROWS: usize = 4096;

/// How to scan one shard.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    pub plan_url: String,
    pub index: u32,
    pub threads: usize,
    /// Roll to a new part file past this many bytes.
    pub part_bytes: usize,
    /// Where the plan's root is mounted here, when not at the planned path.
    pub root_override: Option<PathBuf>,
    /// The file-system calls this shard may make.
    pub budget: Budget,
}

/// Scans shard `request.index`. Re-running a shard first removes whatever an earlier attempt
/// left under its prefix, so a retry never duplicates rows.
pub async fn scan_shard(request: ScanRequest, counters: Arc<WalkCounters>) -> Result<ShardSuccess> {
    let (plan, output) = load_plan(&request.plan_url).await?;
    let assignment = assignment_to_scan(&plan, &output, &request).await?;
    let root_path = request
        .root_override
        .clone()
        .unwrap_or_else(|| PathBuf::from(&plan.root));
    // A mounted root that cannot be opened fails the shard before anything is removed.
    let mut options = walk_options(&plan, &request)?;
    let source = match Source::of(&root_path)? {
        Source::Mounted(path) => {
            let root = open_root(&path)?.1;
            options.devices =
                DeviceIds::of_root(&path, device_of(root.as_fd()).unwrap_or_default());
            Opened::Mounted(root)
        }
        Source::Nfs(export) => Opened::Nfs(export),
    };
    let dir = shard_dir(&plan.run, request.index);
    let toc_dir = toc_shard_dir(&plan.run, request.index);
    let removed = output.delete_prefix(&dir).await? + output.delete_prefix(&toc_dir).await?;
    if removed > 0 {
        warn!(
            shard = request.index,
            removed, "removed the files of an earlier attempt"
        );
    }

    let started_at = chrono::Utc::now();
    let started = Instant::now();
    let politeness = options.politeness.clone();
    let root_name = root_path.display().to_string();
    // The whole plan, not only this shard's part: a files-only directory of this shard enters
    // the subdirectories no shard was assigned (new since the plan's source was read).
    let planned = planned_dirs(&plan.shards);
    let walk = match source {
        Opened::Nfs(export) => Walk::Nfs(NfsWalk {
            export,
            root: root_name,
            client: plan.settings.nfs_client(),
            starts: assignment.walk_starts(),
            planned: Arc::new(planned),
            politeness: options.politeness.clone(),
            options,
            counters: counters.clone(),
        }),
        Opened::Mounted(root) => Walk::Mounted(MountedWalk {
            root,
            root_path: root_name,
            starts: assignment.walk_starts(),
            planned,
            options,
            counters: counters.clone(),
        }),
    };
    let (toc_files, error_files, rpc) =
        walk_into_parts(walk, &output, [toc_dir, dir], request.part_bytes).await?;
    let success = ShardSuccess {
        format: LAYOUT_FORMAT,
        run: plan.run.clone(),
        plan_id: plan.plan_id.clone(),
        index: request.index,
        started: started_at,
        duration_seconds: started.elapsed().as_secs_f64(),
        threads: request.threads,
        counts: counters.counts(),
        toc_files,
        error_files,
        politeness: politeness.report(counters.calls.load(Ordering::Relaxed)),
        nfs: rpc,
    };
    let relative = success_path(&plan.run, request.index);
    output
        .put_json(&relative, &success, PutMode::Overwrite)
        .await
        .map_err(|source| Error::store(&output.url, &relative, source))?;
    info!(
        run = %plan.run,
        shard = request.index,
        entries = success.counts.entries,
        errors = success.counts.errors,
        seconds = success.duration_seconds,
        "shard complete"
    );
    Ok(success)
}

/// The plan's assignment for shard `request.index`, if the index is in the plan and the run
/// is not published yet (its shards are final then).
async fn assignment_to_scan<'a>(
    plan: &'a ShardPlan,
    output: &Location,
    request: &ScanRequest,
) -> Result<&'a ShardAssignment> {
    let assignment = plan
        .shards
        .get(request.index as usize)
        .ok_or(Error::IndexOutOfRange {
            index: request.index,
            shards: plan.shards.len() as u32,
            run: plan.run.clone(),
        })?;
    if output
        .get_json::<serde_json::Value>(&manifest_path(&plan.run))
        .await?
        .is_some()
    {
        return Err(Error::BadPlan {
            url: request.plan_url.clone(),
            reason: format!(
                "run {} is already published; its shards are final",
                plan.run
            ),
        });
    }
    Ok(assignment)
}

/// How this shard walks: the plan's settings, the request's threads and politeness.
fn walk_options(plan: &ShardPlan, request: &ScanRequest) -> Result<WalkOptions> {
    let threads = request.threads.max(1);
    Ok(WalkOptions {
        threads,
        one_file_system: plan.settings.one_file_system,
        exclude: exclude_set(&plan.settings.exclude)?,
        batch_rows: BATCH_ROWS,
        project_level: plan.settings.project_level,
        seen_at: plan.created.timestamp_nanos_opt().unwrap_or_default(),
        shard: request.index,
        politeness: Arc::new(Politeness::new(request.budget, threads)),
        devices: DeviceIds::default(),
    })
}

/// The scan root, opened when it is mounted.
enum Opened {
    Mounted(Arc<rustix::fd::OwnedFd>),
    Nfs(NfsExport),
}

/// One shard's walk, ready to start: of a mounted tree, or of an NFS export.
enum Walk {
    Mounted(MountedWalk),
    Nfs(NfsWalk),
}

/// A walk of a mounted tree, ready to start.
struct MountedWalk {
    root: Arc<rustix::fd::OwnedFd>,
    /// Where the root is mounted, for messages.
    root_path: String,
    starts: Vec<WalkStart>,
    planned: PlannedDirs,
    options: WalkOptions,
    counters: Arc<WalkCounters>,
}

impl Walk {
    fn threads(&self) -> usize {
        match self {
            Walk::Mounted(walk) => walk.options.threads,
            Walk::Nfs(walk) => walk.options.threads,
        }
    }

    /// Starts the walk on threads of its own, sending batches on `tx`; its result is the
    /// source's failure, if it failed, and an NFS walk's calls.
    fn start(
        self,
        tx: mpsc::Sender<ShardBatch>,
    ) -> tokio::task::JoinHandle<Result<Option<RpcReport>>> {
        match self {
            Walk::Mounted(walk) => tokio::task::spawn_blocking(move || {
                let failure = crate::scan::walk::walk(
                    walk.root,
                    walk.starts,
                    &walk.planned,
                    &walk.options,
                    &walk.counters,
                    &|batch| tx.blocking_send(batch).is_ok(),
                );
                match failure {
                    Some(f) => Err(Error::FileSystemFailed {
                        root: walk.root_path,
                        path: String::from_utf8_lossy(&f.path).into_owned(),
                        source: std::io::Error::from(f.errno),
                    }),
                    None => Ok(None),
                }
            }),
            // The NFS walk's own runtime runs on this thread, where tokio's blocking_send
            // refuses to wait: a one-batch std channel hands each batch to a thread that
            // waits for the writer instead.
            Walk::Nfs(walk) => tokio::task::spawn_blocking(move || {
                let (batches, received) = std::sync::mpsc::sync_channel::<ShardBatch>(1);
                std::thread::scope(|scope| {
                    scope.spawn(move || {
                        for batch in received {
                            if tx.blocking_send(batch).is_err() {
                                // The writer has gone: the walk's next send fails.
                                break;
                            }
                        }
                    });
                    // The sender is dropped when the walk ends, which ends the thread above.
                    let batches = batches;
                    crate::scan::nfs::walk(walk, &|batch| batches.send(batch).is_ok()).map(Some)
                })
            }),
        }
    }
}

/// Runs the walk on threads of its own and writes its batches into rolling `part` files in the
/// first of `dirs` and `errors` files in the second; returns them once both are closed, and an
/// NFS walk's calls. On a failed write, or when the file system itself fails, the walk is
/// stopped and the files written so far are removed.
async fn walk_into_parts(
    walk: Walk,
    output: &Location,
    [toc_dir, errors_dir]: [String; 2],
    part_bytes: usize,
) -> Result<(Vec<PartFile>, Vec<PartFile>, Option<RpcReport>)> {
    let (tx, mut rx) = mpsc::channel::<ShardBatch>(walk.threads() + 1);
    let walker = walk.start(tx);
    let new = |dir, stem, schema: &SchemaRef| {
        RollingWriter::new(output.clone(), dir, stem, schema.clone(), part_bytes)
    };
    let mut toc = new(toc_dir, "part", &TOC_SCHEMA);
    let mut errors = new(errors_dir, "errors", &ERROR_SCHEMA);
    let mut failure = None;
    while let Some(batch) = rx.recv().await {
        let written = match &batch {
            ShardBatch::Toc(b) => toc.write(b).await,
            ShardBatch::Errors(b) => errors.write(b).await,
        };
        if let Err(e) = written {
            failure = Some(e);
            break;
        }
    }
    // Dropping the receiver makes the walker's next send fail, which stops it.
    drop(rx);
    let walked = walker.await.expect("walker thread");
    let (failure, rpc) = match (failure, walked) {
        (Some(e), _) | (None, Err(e)) => (Some(e), None),
        (None, Ok(rpc)) => (None, rpc),
    };
    if let Some(e) = failure {
        toc.abort().await;
        errors.abort().await;
        return Err(e);
    }
    Ok((toc.close().await?, errors.close().await?, rpc))
}
