//! Keeping a table's log short: a checkpoint every `delta.checkpointInterval` versions,
//! written by `delta_kernel` with `_last_checkpoint`, so a reader (and the next night) replays
//! one Parquet file and at most that many commits; and, under retention, the log before the
//! checkpoint that the oldest kept night needs is removed.

use delta_kernel::Snapshot;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use tracing::{info, warn};

use super::log::{engine, kernel_error, kernel_stopped, list_log, read_commit};
use crate::error::{Error, Result};
use crate::store::Location;

/// After `version` is committed: a checkpoint when it is a multiple of `interval`. A
/// checkpoint that fails costs readers time, not the night: it is logged, and the next
/// interval writes one again.
pub(super) async fn after_commit(location: &Location, table: &str, version: u64, interval: u64) {
    if version == 0 || !version.is_multiple_of(interval.max(1)) {
        return;
    }
    let started = std::time::Instant::now();
    match write_checkpoint(location, table, version).await {
        Ok(()) => info!(
            table,
            version,
            seconds = started.elapsed().as_secs_f64(),
            "checkpoint written"
        ),
        Err(e) => warn!(table, version, error = %e, "no checkpoint written"),
    }
}

/// Writes the checkpoint of `version` and points `_last_checkpoint` at it.
pub async fn write_checkpoint(location: &Location, table: &str, version: u64) -> Result<()> {
    let (engine, url) = engine(location, table)?;
    tokio::task::spawn_blocking(move || -> delta_kernel::KernelResult<()> {
        let snapshot = Snapshot::builder_for(url.as_str())
            .at_version(version)
            .build(engine.as_ref())?;
        snapshot.checkpoint(engine.as_ref(), None)?;
        Ok(())
    })
    .await
    .map_err(|e| kernel_stopped(location, table, &e))?
    .map_err(|e| kernel_error(location, table, e))
}

/// Removes the log objects that no kept night needs: every commit, checkpoint and checksum
/// older than the newest checkpoint at or before the first version after the newest night
/// older than `oldest_kept_run`. Nothing is removed while no such checkpoint exists. Returns
/// how many objects were removed.
pub async fn clean_log(location: &Location, table: &str, oldest_kept_run: &str) -> Result<usize> {
    let listing = list_log(location, table).await?;
    let mut dropped = None;
    for &version in listing.commits.iter().rev() {
        match read_commit(location, table, version).await? {
            Some(commit) if commit.run.as_deref().is_some_and(|r| r < oldest_kept_run) => {
                dropped = Some(version);
                break;
            }
            Some(_) => {}
            // Removed already: what is older is gone too.
            None => break,
        }
    }
    let Some(dropped) = dropped else {
        return Ok(0);
    };
    let Some(&keep_from) = listing.checkpoints.range(..=dropped + 1).next_back() else {
        return Ok(0);
    };
    let log_dir = format!("{table}/_delta_log");
    let old: Vec<object_store::path::Path> = location
        .store
        .list(Some(&location.path(&log_dir)))
        .try_filter(|meta| {
            let name = meta.location.filename().unwrap_or_default();
            let version = name
                .split_once('.')
                .and_then(|(v, _)| v.parse::<u64>().ok());
            futures::future::ready(version.is_some_and(|v| v < keep_from))
        })
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(|source| Error::store(&location.url, &log_dir, source))?;
    for path in &old {
        match location.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => return Err(Error::store(&location.url, path.as_ref(), source)),
        }
    }
    Ok(old.len())
}
