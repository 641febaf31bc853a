//! `scanjob scan`: one shard of a plan → `runs/<run>/shards/<i>/` and, last, `_SUCCESS.json`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use object_store::PutMode;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::layout::{
    EntryCounts, LAYOUT_FORMAT, PLAN_FILE, ShardPlan, ShardSuccess, manifest_path, shard_dir,
    split_run_url, success_path,
};
use crate::phase::{exclude_set, open_root};
use crate::plan::planned_dirs;
use crate::politeness::Politeness;
use crate::schema::{ERROR_SCHEMA, TOC_SCHEMA};
use crate::store::Location;
use crate::walk::{ShardBatch, WalkCounters, WalkOptions, walk};
use crate::writer::RollingWriter;

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
    /// File-system calls per second this shard may make.
    pub max_ops_per_second: Option<u32>,
    /// Halve the calls in flight while their p99 latency is above this many milliseconds.
    pub latency_guard_ms: Option<u32>,
}

/// Loads and checks the plan at `plan_url`; returns it with its output location.
pub async fn load_plan(plan_url: &str) -> Result<(ShardPlan, Location)> {
    let bad = |reason: String| Error::BadPlan {
        url: plan_url.to_string(),
        reason,
    };
    let (base, run) = split_run_url(plan_url, Some(PLAN_FILE))
        .ok_or_else(|| bad("expected <output>/runs/<run>/plan.json".into()))?;
    let output = Location::parse(&base)?;
    let plan: ShardPlan = output
        .get_json(&crate::layout::plan_path(&run))
        .await?
        .ok_or_else(|| bad("does not exist".into()))?;
    if plan.run != run {
        return Err(bad(format!(
            "belongs to run {}, not {run} (copied from another run?)",
            plan.run
        )));
    }
    Ok((plan, output))
}

/// Scans shard `request.index`. Re-running a shard first removes whatever an earlier attempt
/// left under its prefix, so a retry never duplicates rows.
pub async fn scan_shard(request: ScanRequest, counters: Arc<WalkCounters>) -> Result<ShardSuccess> {
    let (plan, output) = load_plan(&request.plan_url).await?;
    let shards = plan.shards.len() as u32;
    let assignment = plan
        .shards
        .get(request.index as usize)
        .ok_or(Error::IndexOutOfRange {
            index: request.index,
            shards,
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
    let root_path = request
        .root_override
        .clone()
        .unwrap_or_else(|| PathBuf::from(&plan.root));
    let (_, root) = open_root(&root_path)?;
    let options = WalkOptions {
        threads: request.threads.max(1),
        one_file_system: plan.settings.one_file_system,
        exclude: exclude_set(&plan.settings.exclude)?,
        batch_rows: BATCH_ROWS,
        project_level: plan.settings.project_level,
        seen_at: plan.created.timestamp_nanos_opt().unwrap_or_default(),
        shard: request.index,
        politeness: Arc::new(Politeness::new(
            request.max_ops_per_second,
            request.latency_guard_ms,
            request.threads.max(1),
        )),
    };
    let dir = shard_dir(&plan.run, request.index);
    let removed = output.delete_prefix(&dir).await?;
    if removed > 0 {
        warn!(
            shard = request.index,
            removed, "removed the files of an earlier attempt"
        );
    }

    let started_at = chrono::Utc::now();
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel::<ShardBatch>(options.threads + 1);
    let starts = assignment.walk_starts();
    // The whole plan, not only this shard's part: a files-only directory of this shard enters the
    // subdirectories no shard was assigned (new since the plan's source was read).
    let planned = planned_dirs(&plan.shards);
    let walker_counters = counters.clone();
    let politeness = options.politeness.clone();
    let walker = tokio::task::spawn_blocking(move || {
        walk(
            root,
            starts,
            &planned,
            &options,
            &walker_counters,
            &|batch| tx.blocking_send(batch).is_ok(),
        );
    });

    let mut toc = RollingWriter::new(
        output.clone(),
        dir.clone(),
        "part",
        TOC_SCHEMA.clone(),
        request.part_bytes,
    );
    let mut errors = RollingWriter::new(
        output.clone(),
        dir,
        "errors",
        ERROR_SCHEMA.clone(),
        request.part_bytes,
    );
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
    walker.await.expect("walker thread");
    if let Some(e) = failure {
        toc.abort().await;
        errors.abort().await;
        return Err(e);
    }
    let toc_files = toc.close().await?;
    let error_files = errors.close().await?;

    let c = &*counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let success = ShardSuccess {
        format: LAYOUT_FORMAT,
        run: plan.run.clone(),
        plan_id: plan.plan_id.clone(),
        index: request.index,
        started: started_at,
        duration_seconds: started.elapsed().as_secs_f64(),
        threads: request.threads,
        counts: EntryCounts {
            entries: load(&c.entries),
            files: load(&c.files),
            directories: load(&c.dirs),
            symlinks: load(&c.symlinks),
            other_kinds: load(&c.other_kinds),
            bytes: load(&c.file_bytes),
            errors: load(&c.errors),
            errors_by_kind: c.errors_by_kind(),
            timestamps_out_of_range: load(&c.timestamps_out_of_range),
        },
        toc_files,
        error_files,
        politeness: politeness.report(load(&c.calls)),
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
