//! What the join partitions and the merge start from, read the same way by both: the run's
//! plan and its shards (a shard counts only with a `_SUCCESS.json` of this plan; more missing
//! than allowed is [`Error::Incomplete`]), the previous snapshot
//! ([`crate::store::previous::previous_snapshot`]), the shrink guard, and which of the previous
//! snapshot's rows are carried for shards that did not finish.
//!
//! It only reads: the run's files and the previous snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::warn;

use crate::engine::PathPredicate;
use crate::error::{Error, Result};
use crate::insights::InsightOptions;
use crate::pathbytes::name_of;
use crate::pathbytes::parent_of;
use crate::shard::NameSlice;
use crate::store::Location;
use crate::store::layout::{
    EntryCounts, ShardPlan, ShardSuccess, SnapshotManifest, manifest_path, plan_path,
    split_run_url, success_path, url_of,
};
use crate::store::load_plan;
use crate::store::previous::{check_parquet_files, previous_snapshot};
use crate::store::writer::PartFile;

/// The plan of the run at `<output>/runs/<run>`, its output location and its run id.
pub async fn open_run(run_url: &str) -> Result<(ShardPlan, Location, String)> {
    let (base, run) = split_run_url(run_url, None).ok_or_else(|| Error::BadPlan {
        url: run_url.to_string(),
        reason: "expected <output>/runs/<run>".into(),
    })?;
    let (plan, output) = load_plan(&url_of(&base, &plan_path(&run))).await?;
    Ok((plan, output, run))
}

/// What a merge, and each of its join partitions, starts from: the run's shards and rows, the
/// previous snapshot, and which of its rows are carried for missing shards.
pub struct Night {
    pub shards: Shards,
    pub toc_files: Vec<PartFile>,
    pub previous: Option<SnapshotManifest>,
    pub counts: EntryCounts,
    pub carried: Option<PathPredicate>,
}

/// Reads and checks the run's shards and the previous snapshot, and applies the shrink guard.
pub async fn night_of(
    output: &Location,
    plan: &ShardPlan,
    run: &str,
    options: &MergeOptions,
) -> Result<Night> {
    let shards = done_shards(output, plan, options.max_missing_shards).await?;
    let toc_files: Vec<PartFile> = shards
        .done
        .iter()
        .flat_map(|s| s.toc_files.clone())
        .collect();
    check_parquet_files(output, &toc_files, &format!("run {run}")).await?;
    let previous = previous_snapshot(output, &plan.root, run, plan.previous_run.as_deref()).await?;
    if let Some(previous) = &previous {
        let what = format!(
            "previous snapshot {}/{}",
            output.url,
            manifest_path(&previous.run)
        );
        check_parquet_files(output, &previous.toc_files, &what).await?;
    }
    let mut counts = EntryCounts::default();
    for s in &shards.done {
        counts.add(&s.counts);
    }
    if let (Some(previous), Some(max_percent), true) = (
        &previous,
        options.max_shrink_percent,
        shards.missing.is_empty(),
    ) {
        check_shrink(&previous.counts, &counts, &previous.run, max_percent)?;
    }
    let carried: Option<PathPredicate> = match (&previous, shards.missing.is_empty()) {
        (Some(_), false) => Some(Arc::new(owned_by(plan, &shards.missing))),
        _ => None,
    };
    Ok(Night {
        shards,
        toc_files,
        previous,
        counts,
        carried,
    })
}

/// The shrink guard: a night whose files or bytes fell by more than `max_percent` percent
/// against the previous snapshot is not published ([`Error::Shrunk`]). An unmounted volume
/// reads as an empty directory and a mount lost mid-scan as a tree cut short; publishing such
/// a night would report most of the store removed and reset its `first_seen` the night after.
/// A partial night (shards missing) is bounded by `max_missing_shards` instead and not checked.
pub fn check_shrink(
    before: &EntryCounts,
    now: &EntryCounts,
    previous_run: &str,
    max_percent: u32,
) -> Result<()> {
    for (what, before, now) in [
        ("files", before.files, now.files),
        ("bytes", before.bytes, now.bytes),
    ] {
        if before == 0 || now >= before {
            continue;
        }
        let percent = (before - now) as f64 * 100.0 / before as f64;
        if percent > f64::from(max_percent) {
            return Err(Error::Shrunk {
                what,
                before,
                now,
                percent,
                previous_run: previous_run.to_string(),
                max_percent,
            });
        }
    }
    Ok(())
}

/// The shards of a run with a `_SUCCESS.json` of its plan, and those without.
pub struct Shards {
    pub done: Vec<ShardSuccess>,
    pub missing: Vec<u32>,
}

/// Reads every shard's `_SUCCESS.json`. More than `max_missing` shards without one (or none
/// with one) is [`Error::Incomplete`].
async fn done_shards(output: &Location, plan: &ShardPlan, max_missing: u32) -> Result<Shards> {
    let run = &plan.run;
    let mut done = Vec::with_capacity(plan.shards.len());
    let mut missing = Vec::new();
    for index in 0..plan.shards.len() as u32 {
        match output
            .get_json::<ShardSuccess>(&success_path(run, index))
            .await?
        {
            Some(s) if s.plan_id == plan.plan_id && s.index == index => {
                s.check(run, index).map_err(|reason| Error::Corrupt {
                    what: format!("{}/{}", output.url, success_path(run, index)),
                    reason,
                })?;
                done.push(s)
            }
            Some(_) => {
                warn!(
                    run,
                    shard = index,
                    "shard was written for another plan of this run"
                );
                missing.push(index);
            }
            None => missing.push(index),
        }
    }
    if !missing.is_empty() {
        if done.is_empty() || missing.len() > max_missing as usize {
            return Err(Error::Incomplete {
                run: run.clone(),
                missing,
            });
        }
        warn!(
            run,
            ?missing,
            max_missing_shards = max_missing,
            "publishing a partial snapshot: these shards have no _SUCCESS.json"
        );
    }
    Ok(Shards { done, missing })
}

/// Whether a path (relative to the root) is a row of one of `shards` in `plan`: the shard that
/// lists its nearest planned ancestor (a subtree walks all below it; a files-only listing owns
/// the entries in its name slice and the unplanned directories among them).
fn owned_by(plan: &ShardPlan, shards: &[u32]) -> impl Fn(&[u8]) -> bool + Send + Sync + use<> {
    let mut subtrees: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut listings: HashMap<Vec<u8>, Vec<(Option<NameSlice>, u32)>> = HashMap::new();
    for shard in &plan.shards {
        for subtree in &shard.subtrees {
            subtrees.insert(subtree.0.clone(), shard.index);
        }
        for files_only in &shard.files_only {
            listings
                .entry(files_only.path.0.clone())
                .or_default()
                .push((files_only.slice, shard.index));
        }
    }
    let wanted: Vec<u32> = shards.to_vec();
    move |path: &[u8]| {
        let mut child = path;
        loop {
            let parent = parent_of(child);
            if let Some(shard) = subtrees.get(parent) {
                return wanted.contains(shard);
            }
            if let Some(slices) = listings.get(parent) {
                let name = name_of(child);
                return slices
                    .iter()
                    .find(|(slice, _)| slice.is_none_or(|s| s.contains(name)))
                    .is_some_and(|(_, shard)| wanted.contains(shard));
            }
            if parent.is_empty() {
                return false;
            }
            child = parent;
        }
    }
}

/// What `merge` does besides committing the snapshot.
#[derive(Debug, Clone, Default)]
pub struct MergeOptions {
    /// Shards that may lack a `_SUCCESS.json` (their rows are carried from the previous
    /// snapshot when there is one).
    pub max_missing_shards: u32,
    /// After publishing, keep only this many newest snapshots (and their runs' files).
    pub keep_snapshots: Option<u32>,
    /// Refuse a night whose files or bytes fell by more than this many percent against the
    /// previous snapshot ([`check_shrink`]); `None` publishes any night.
    pub max_shrink_percent: Option<u32>,
    pub insights: InsightOptions,
}
