//! `scanjob merge`: checks every shard of a run and the previous snapshot, derives the
//! snapshot's history, diff, rollups, duplicates and report ([`crate::insights`]), commits
//! `snapshots/<run>/manifest.json`, points `latest.json` at it, and applies retention.
//!
//! A shard counts only with a `_SUCCESS.json` of this plan. By default every shard must have
//! one, else the run is [`Error::Incomplete`] and nothing is published. With
//! `--max-missing-shards N`, a run missing 1..=N shards (with at least one shard done) is
//! published anyway as a partial snapshot: its manifest's `missing_shards` names the shards
//! whose rows this run did not scan, and `latest.json` moves to it like to any other snapshot.
//! When a previous snapshot exists, the missing shards' rows are carried from it (with their
//! old `last_seen`) and none of their files is reported removed. More missing shards than
//! that is still `Incomplete`.
//!
//! It reads the run's shards and the previous snapshot ([`previous`]), and writes only below
//! `snapshots/<run>/` and `latest.json` (and, for retention, removes older snapshots and runs).
//!
//! A merge is safe to retry: an attempt that failed before its manifest leaves files no
//! manifest names, which the next attempt removes first; a run whose manifest exists (the
//! attempt was lost after committing) is only published again, never rewritten.

pub mod previous;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use object_store::{ObjectStoreExt, PutMode, PutPayload, UpdateVersion};
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::insights::{self, Inputs, InsightOptions, Joined};
use crate::pathbytes::parent_of;
use crate::plan::pieces::NameSlice;
use crate::report::summary::HashTotals;
use crate::scan::load_plan;
use crate::schema::{SCHEMA_VERSION, TOC_SCHEMA};
use crate::store::Location;
use crate::store::delta::{self, TOC_TABLE};
use crate::store::layout::{
    DERIVED_TABLES, EntryCounts, HashSuccess, JoinSuccess, LATEST_PATH, LAYOUT_FORMAT,
    LatestPointer, ShardPlan, ShardSuccess, ShardSummary, SnapshotManifest, TRENDS_TABLE,
    derived_dir, hash_success_path, hashes_dir, join_dir, join_success_path, manifest_path,
    plan_path, report_path, run_dir, snapshot_dir, split_run_url, success_path, summary_path,
    toc_merged_dir, toc_night_dir, url_of,
};
use crate::store::writer::{PartFile, rows_of};

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

/// Merges the run at `<output>/runs/<run>`: checks its shards and the previous snapshot,
/// derives the snapshot's tables ([`crate::insights`]), writes the manifest, moves
/// `latest.json`, and applies retention. Returns the manifest and its full URL.
pub async fn merge_run(
    run_url: &str,
    options: &MergeOptions,
) -> Result<(SnapshotManifest, String)> {
    let (base, run) = split_run_url(run_url, None).ok_or_else(|| Error::BadPlan {
        url: run_url.to_string(),
        reason: "expected <output>/runs/<run>".into(),
    })?;
    let (plan, output) = load_plan(&url_of(&base, &plan_path(&run))).await?;
    // Read (and checked) before anything is written, so a damaged latest.json stops the merge
    // here; publishing reads it again for its conditional update.
    let latest = output.latest().await?;
    // So are the Delta tables' logs: a damaged or foreign table stops the merge before it
    // writes anything.
    let reading = std::time::Instant::now();
    let tables = Tables::read(&output).await?;
    info!(
        seconds = reading.elapsed().as_secs_f64(),
        "read the tables' logs"
    );
    let relative = manifest_path(&run);
    if let Some(manifest) = output.manifest(&run).await? {
        // A retry of a merge that wrote its manifest (its pod lost, or its commit lost a race
        // or the store): the night is not derived and written again under readers' feet, only
        // committed to the table if it is not yet, and published.
        info!(
            run,
            "snapshot already written; committing and publishing it as it is"
        );
        let version = commit(&output, &tables, &plan, &manifest).await?;
        publish(&output, &run, &relative, version).await?;
        return Ok((manifest, url_of(&output.url, &relative)));
    }
    let night = night_of(&output, &plan, &run, latest.as_ref(), options).await?;
    let joined = joined(&output, &plan, &night).await?;
    // What an earlier attempt wrote before it failed: files no manifest names (the join
    // partitions' ToC parts are this attempt's input).
    output.delete_prefix(&snapshot_dir(&run)).await?;
    if joined.is_none() {
        output.delete_prefix(&toc_merged_dir(&run)).await?;
    }
    for table in DERIVED_TABLES.iter().chain([&TRENDS_TABLE]) {
        output.delete_prefix(&derived_dir(table, &run)).await?;
    }
    let Night {
        shards,
        toc_files,
        previous,
        counts,
        carried,
    } = night;
    let (hash_files, hashing) = hashed(&output, &plan).await?;
    let created = chrono::Utc::now();
    let outcome = insights::derive(
        &output,
        Inputs {
            run: &run,
            root: &plan.root,
            project_level: plan.settings.project_level,
            created,
            scanned: plan.created,
            // The earlier nights' rows (a night merged again writes its own anew).
            trends_files: tables
                .trends
                .iter()
                .flat_map(|t| &t.files)
                .filter(|f| !f.starts_with(&format!("{run}/")))
                .map(|f| format!("{TRENDS_TABLE}/{f}"))
                .collect(),
            counts: &counts,
            toc_files,
            missing_shards: shards.missing.clone(),
            previous: previous.as_ref(),
            carried,
            hash_files,
            hashing,
            joined,
        },
        &options.insights,
    )
    .await?;
    write_report(&output, &run, &outcome).await?;

    let manifest = manifest_of(&plan, created, counts, shards, previous.as_ref(), outcome);
    output
        .put_json(&relative, &manifest, PutMode::Overwrite)
        .await
        .map_err(|source| Error::store(&output.url, &relative, source))?;
    let version = commit(&output, &tables, &plan, &manifest).await?;
    publish(&output, &run, &relative, version).await?;
    info!(
        run,
        files = manifest.counts.files,
        bytes = manifest.counts.bytes,
        missing_shards = manifest.missing_shards.len(),
        carried_forward_rows = manifest.carried_forward_rows,
        atime_reliable = manifest.atime_reliable,
        "snapshot published"
    );
    if let Some(keep) = options.keep_snapshots {
        let removed = retain_snapshots(&output, keep).await?;
        if !removed.is_empty() {
            info!(?removed, keep, "older snapshots removed");
        }
    }
    Ok((manifest, url_of(&output.url, &relative)))
}

/// What a merge, and each of its join partitions, starts from: the run's shards and rows, the
/// previous snapshot, and which of its rows are carried for missing shards.
struct Night {
    shards: Shards,
    toc_files: Vec<PartFile>,
    previous: Option<SnapshotManifest>,
    counts: EntryCounts,
    carried: Option<crate::insights::engine::PathPredicate>,
}

/// Reads and checks the run's shards and the previous snapshot, and applies the shrink guard.
async fn night_of(
    output: &Location,
    plan: &ShardPlan,
    run: &str,
    latest: Option<&LatestPointer>,
    options: &MergeOptions,
) -> Result<Night> {
    let shards = done_shards(output, plan, options.max_missing_shards).await?;
    let toc_files: Vec<PartFile> = shards
        .done
        .iter()
        .flat_map(|s| s.toc_files.clone())
        .collect();
    check_parquet_files(output, &toc_files, &format!("run {run}")).await?;
    let previous = previous_snapshot(output, plan, run, latest).await?;
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
    let carried: Option<crate::insights::engine::PathPredicate> =
        match (&previous, shards.missing.is_empty()) {
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

/// `scanjob join`: partition `index` of `count` of the merge's big joins (the first_seen join
/// and the diff's), over the rows whose path hashes to it ([`insights::join_partition`]).
/// The merge finds every partition's `_SUCCESS-<i>.json` and derives the rest from them; a
/// partition retried writes its files again. Without a previous snapshot there is nothing to
/// join, and the partition says so.
pub async fn join_run(
    run_url: &str,
    options: &MergeOptions,
    index: u32,
    count: u32,
) -> Result<JoinSuccess> {
    let started = std::time::Instant::now();
    let (base, run) = split_run_url(run_url, None).ok_or_else(|| Error::BadPlan {
        url: run_url.to_string(),
        reason: "expected <output>/runs/<run>".into(),
    })?;
    if index >= count {
        return Err(Error::BadPlan {
            url: run_url.to_string(),
            reason: format!("join partition {index} is out of range: there are {count}"),
        });
    }
    let (plan, output) = load_plan(&url_of(&base, &plan_path(&run))).await?;
    let latest = output.latest().await?;
    let night = night_of(&output, &plan, &run, latest.as_ref(), options).await?;
    let joined = insights::join_partition(
        &output,
        &Inputs {
            run: &run,
            root: &plan.root,
            project_level: plan.settings.project_level,
            created: chrono::Utc::now(),
            scanned: plan.created,
            trends_files: Vec::new(),
            counts: &night.counts,
            toc_files: night.toc_files.clone(),
            missing_shards: night.shards.missing.clone(),
            previous: night.previous.as_ref(),
            carried: night.carried.clone(),
            hash_files: Vec::new(),
            hashing: None,
            joined: None,
        },
        &options.insights,
        (index, count),
        &join_dir(&run, index),
    )
    .await?;
    let success = JoinSuccess {
        format: LAYOUT_FORMAT,
        run: run.clone(),
        plan_id: plan.plan_id.clone(),
        index,
        count,
        previous_run: night.previous.as_ref().map(|p| p.run.clone()),
        missing_shards: night.shards.missing.clone(),
        toc_files: joined.toc_files,
        delta_files: joined.delta_files,
        seconds: started.elapsed().as_secs_f64(),
    };
    let path = join_success_path(&run, index);
    output
        .put_json(&path, &success, PutMode::Overwrite)
        .await
        .map_err(|source| Error::store(&output.url, &path, source))?;
    info!(
        run,
        index,
        count,
        rows = rows_of(&success.toc_files),
        seconds = success.seconds,
        "join partition written"
    );
    Ok(success)
}

/// The join partitions' output, when every partition of one count finished for this plan,
/// against this night's previous snapshot and with its missing shards; otherwise `None`, and
/// the merge joins everything itself.
async fn joined(output: &Location, plan: &ShardPlan, night: &Night) -> Result<Option<Joined>> {
    // A first night has nothing to join: the join pods wrote no partitions worth reading.
    if night.previous.is_none() {
        return Ok(None);
    }
    let Some(first) = output
        .get_json::<JoinSuccess>(&join_success_path(&plan.run, 0))
        .await?
    else {
        return Ok(None);
    };
    let matches = |s: &JoinSuccess, index: u32| {
        s.plan_id == plan.plan_id
            && s.index == index
            && s.count == first.count
            && s.previous_run == night.previous.as_ref().map(|p| p.run.clone())
            && s.missing_shards == night.shards.missing
    };
    let mut all = Joined::default();
    for index in 0..first.count {
        let s = match index {
            0 => Some(first.clone()),
            _ => {
                output
                    .get_json::<JoinSuccess>(&join_success_path(&plan.run, index))
                    .await?
            }
        };
        match s {
            Some(s) if matches(&s, index) => {
                all.toc_files.extend(s.toc_files);
                all.delta_files.extend(s.delta_files);
            }
            _ => {
                warn!(
                    run = plan.run,
                    index,
                    count = first.count,
                    "a join partition is missing or was made for another night: the merge \
                     joins every row itself"
                );
                return Ok(None);
            }
        }
    }
    let whose = format!("join partitions of run {}", plan.run);
    check_parquet_files(output, &all.toc_files, &whose).await?;
    check_parquet_files(output, &all.delta_files, &whose).await?;
    info!(
        run = plan.run,
        count = first.count,
        rows = rows_of(&all.toc_files),
        "using the join partitions"
    );
    Ok(Some(all))
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
struct Shards {
    done: Vec<ShardSuccess>,
    missing: Vec<u32>,
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

/// The hash step's output of this run (`crate::hash`), if it ran: the files of every
/// partition with a `_SUCCESS-<i>.json` of this plan, and their totals. Partitions of an
/// earlier attempt with another partition count are left out (the newest attempt's count
/// wins). A partition that did not finish leaves its groups at `candidate`.
async fn hashed(
    output: &Location,
    plan: &ShardPlan,
) -> Result<(Vec<PartFile>, Option<HashTotals>)> {
    use futures::TryStreamExt;
    let dir = hashes_dir(&plan.run);
    let listed: Vec<object_store::ObjectMeta> = output
        .store
        .list(Some(&output.path(&dir)))
        .try_collect()
        .await
        .map_err(|source| Error::store(&output.url, &dir, source))?;
    let mut done: Vec<HashSuccess> = Vec::new();
    for meta in listed {
        let Some(index) = meta
            .location
            .filename()
            .and_then(|n| n.strip_prefix("_SUCCESS-"))
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(s) = output
            .get_json::<HashSuccess>(&hash_success_path(&plan.run, index))
            .await?
            .filter(|s| s.plan_id == plan.plan_id && s.index == index)
        {
            done.push(s);
        }
    }
    let Some(count) = done.iter().max_by_key(|s| s.started).map(|s| s.count) else {
        return Ok((Vec::new(), None));
    };
    done.retain(|s| s.count == count);
    let files: Vec<PartFile> = done.iter().flat_map(|s| s.files.clone()).collect();
    check_parquet_files(output, &files, &format!("hashes of run {}", plan.run)).await?;
    let mut totals = HashTotals::default();
    for s in &done {
        totals.add(&s.totals);
    }
    if done.len() < count as usize {
        warn!(
            run = plan.run,
            done = done.len(),
            count,
            "not every hash partition finished: their groups stay candidates"
        );
    }
    Ok((files, Some(totals)))
}

/// Writes the snapshot's `summary.json` and `report.html`.
async fn write_report(output: &Location, run: &str, outcome: &insights::Outcome) -> Result<()> {
    let path = summary_path(run);
    output
        .put_json(&path, &outcome.summary, PutMode::Overwrite)
        .await
        .map_err(|source| Error::store(&output.url, &path, source))?;
    let path = report_path(run);
    output
        .store
        .put(
            &output.path(&path),
            PutPayload::from(crate::report::html::render(&outcome.summary)),
        )
        .await
        .map_err(|source| Error::store(&output.url, &path, source))?;
    Ok(())
}

/// The manifest that commits the snapshot.
fn manifest_of(
    plan: &ShardPlan,
    created: chrono::DateTime<chrono::Utc>,
    counts: EntryCounts,
    shards: Shards,
    previous: Option<&SnapshotManifest>,
    outcome: insights::Outcome,
) -> SnapshotManifest {
    let mut summaries: Vec<ShardSummary> = shards
        .done
        .iter()
        .map(|s| ShardSummary {
            index: s.index,
            entries: s.counts.entries,
            errors: s.counts.errors,
            duration_seconds: s.duration_seconds,
            carried_forward_from: None,
        })
        .collect();
    if let Some(from) = &outcome.summary.carried_forward_from {
        summaries.extend(shards.missing.iter().map(|&index| ShardSummary {
            index,
            entries: 0,
            errors: 0,
            duration_seconds: 0.0,
            carried_forward_from: Some(from.clone()),
        }));
        summaries.sort_by_key(|s| s.index);
    }
    SnapshotManifest {
        format: LAYOUT_FORMAT,
        schema_version: SCHEMA_VERSION,
        run: plan.run.clone(),
        plan_id: plan.plan_id.clone(),
        root: plan.root.clone(),
        created,
        counts,
        toc_files: outcome.toc_files,
        error_files: shards
            .done
            .iter()
            .flat_map(|s| s.error_files.clone())
            .collect(),
        shards: summaries,
        missing_shards: shards.missing,
        atime_reflects_user_access: true,
        atime_reliable: outcome.summary.atime.reliable,
        previous_run: previous.map(|p| p.run.clone()),
        carried_forward_rows: outcome.carried_rows,
        derived: outcome.derived,
        summary: Some(summary_path(&plan.run)),
        report: Some(report_path(&plan.run)),
    }
}

/// The snapshot this run compares with: the one its plan was balanced by, else the one
/// `latest` (`latest.json`) names if it is older than this run and of the same root. Checked
/// to be complete and readable, so a broken previous snapshot stops the merge with a message
/// instead of producing wrong history.
async fn previous_snapshot(
    output: &Location,
    plan: &ShardPlan,
    run: &str,
    latest: Option<&LatestPointer>,
) -> Result<Option<SnapshotManifest>> {
    let candidate = match &plan.previous_run {
        Some(previous) => Some(previous.clone()),
        None => latest.map(|latest| latest.run.clone()),
    };
    let Some(previous) = candidate.filter(|p| p.as_str() < run) else {
        info!(run, "no previous snapshot: first_seen starts now, no diff");
        return Ok(None);
    };
    let path = manifest_path(&previous);
    let what = format!("previous snapshot {}/{path}", output.url);
    let Some(manifest) = output.manifest(&previous).await? else {
        return Err(Error::Corrupt {
            what,
            reason: "does not exist (removed by hand?); point latest.json at a snapshot that \
                     exists, or remove latest.json to start history over"
                .into(),
        });
    };
    if manifest.root != plan.root {
        info!(
            run,
            previous, "previous snapshot is of another root: no history"
        );
        return Ok(None);
    }
    if manifest.schema_version > SCHEMA_VERSION {
        return Err(Error::Corrupt {
            what,
            reason: format!(
                "has schema version {}, newer than this scanjob's {SCHEMA_VERSION}; \
                 merge with the scanjob that wrote it",
                manifest.schema_version
            ),
        });
    }
    // Version 2's unsigned integers and nanoseconds are read as version 3's types (the
    // query engine casts them to the ToC schema), so its first_seen is carried.
    if manifest.schema_version < 2 {
        warn!(
            previous,
            schema_version = manifest.schema_version,
            "previous snapshot has an older schema version: its first_seen values are the \
             times it was scanned, so history starts there"
        );
    }
    check_parquet_files(output, &manifest.toc_files, &what).await?;
    Ok(Some(manifest))
}

/// Reads the footer of every file: a missing or corrupt file, or one whose row count is not
/// the one listed for it, stops the merge naming it, before anything of the new snapshot is
/// written.
#[allow(deprecated)]
async fn check_parquet_files(output: &Location, files: &[PartFile], whose: &str) -> Result<()> {
    use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
    for file in files {
        let what = format!("{whose}: {}/{}", output.url, file.path);
        let meta = match output.store.head(&output.path(&file.path)).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::Corrupt {
                    what,
                    reason: "is listed but does not exist".into(),
                });
            }
            Err(source) => return Err(Error::store(&output.url, &file.path, source)),
        };
        let reader = ParquetObjectReader::new(output.store.clone(), output.path(&file.path))
            .with_file_size(meta.size);
        let rows = match ParquetRecordBatchStreamBuilder::new(reader).await {
            Ok(builder) => builder.metadata().file_metadata().num_rows(),
            Err(e) => {
                return Err(Error::Corrupt {
                    what,
                    reason: format!("not a readable Parquet file: {e}"),
                });
            }
        };
        if u64::try_from(rows) != Ok(file.rows) {
            return Err(Error::Corrupt {
                what,
                reason: format!("holds {rows} rows where its listing says {}", file.rows),
            });
        }
    }
    Ok(())
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
                let name = insights::engine::name_of(child);
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

/// Keeps the `keep` newest snapshots (and always the one `latest.json` names); removes the
/// others' manifests first (so a half-removed snapshot is no snapshot), then their files and
/// their runs' shard files. Returns the removed run ids.
pub async fn retain_snapshots(output: &Location, keep: u32) -> Result<Vec<String>> {
    let listing = output
        .store
        .list_with_delimiter(Some(&output.path("snapshots")))
        .await
        .map_err(|source| Error::store(&output.url, "snapshots", source))?;
    let mut runs: Vec<String> = Vec::new();
    for prefix in listing.common_prefixes {
        let Some(run) = prefix.filename() else {
            continue;
        };
        let manifest = output.path(&manifest_path(run));
        match output.store.head(&manifest).await {
            Ok(_) => runs.push(run.to_string()),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => return Err(Error::store(&output.url, &manifest_path(run), source)),
        }
    }
    runs.sort();
    let latest = output.latest().await?.map(|l| l.run);
    let cut = runs.len().saturating_sub(keep.max(1) as usize);
    let mut removed = Vec::new();
    for run in &runs[..cut] {
        if latest.as_deref() == Some(run.as_str()) {
            continue;
        }
        let manifest = manifest_path(run);
        match output.store.delete(&output.path(&manifest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => return Err(Error::store(&output.url, &manifest, source)),
        }
        output.delete_prefix(&snapshot_dir(run)).await?;
        output.delete_prefix(&toc_night_dir(run)).await?;
        for table in DERIVED_TABLES {
            output.delete_prefix(&derived_dir(table, run)).await?;
        }
        output.delete_prefix(&run_dir(run)).await?;
        removed.push(run.clone());
    }
    Ok(removed)
}

/// The Delta tables of the output as their logs say they are before the night is written.
struct Tables {
    toc: Option<delta::TableState>,
    derived: BTreeMap<&'static str, Option<delta::TableState>>,
    trends: Option<delta::TableState>,
}

impl Tables {
    async fn read(output: &Location) -> Result<Self> {
        let mut derived = BTreeMap::new();
        for name in DERIVED_TABLES {
            derived.insert(name, delta::read_state(output, name).await?);
        }
        Ok(Self {
            toc: delta::read_state(output, TOC_TABLE).await?,
            derived,
            trends: delta::read_state(output, TRENDS_TABLE).await?,
        })
    }
}

/// Commits the night of `manifest` to every table: each derived table first, the ToC last (its
/// version is the night's), each as its next version unless a version already holds the night.
/// Returns the ToC's version; `None` when a newer night is already its current version, which
/// an older night must not replace.
async fn commit(
    output: &Location,
    tables: &Tables,
    plan: &ShardPlan,
    manifest: &SnapshotManifest,
) -> Result<Option<u64>> {
    let files = |name: &str| manifest.derived.get(name).map_or(&[][..], Vec::as_slice);
    // One commit time for the whole night, so time travel by timestamp finds it in every table.
    let at = chrono::Utc::now().timestamp_millis();
    for (name, state) in &tables.derived {
        let table = Commit::replace(name, state.as_ref(), files(name));
        commit_table(output, table, plan, &manifest.run, at).await?;
    }
    let trends = Commit {
        append: true,
        ..Commit::replace(TRENDS_TABLE, tables.trends.as_ref(), files(TRENDS_TABLE))
    };
    commit_table(output, trends, plan, &manifest.run, at).await?;
    let toc = Commit {
        schema: Some(TOC_SCHEMA.clone()),
        ..Commit::replace(TOC_TABLE, tables.toc.as_ref(), &manifest.toc_files)
    };
    commit_table(output, toc, plan, &manifest.run, at).await
}

/// One table's part of a night's commit.
struct Commit<'a> {
    name: &'a str,
    table: Option<&'a delta::TableState>,
    /// The files' schema; by default the first file's.
    schema: Option<arrow_schema::SchemaRef>,
    files: &'a [PartFile],
    /// Add the night's files and remove none (the trends table).
    append: bool,
}

impl<'a> Commit<'a> {
    fn replace(name: &'a str, table: Option<&'a delta::TableState>, files: &'a [PartFile]) -> Self {
        Self {
            name,
            table,
            schema: None,
            files,
            append: false,
        }
    }
}

/// Commits the files of `run` to one table (see [`commit`]). A table that does not exist yet
/// starts with the first night that has files for it.
async fn commit_table(
    output: &Location,
    commit: Commit<'_>,
    plan: &ShardPlan,
    run: &str,
    committed_at: i64,
) -> Result<Option<u64>> {
    let Commit {
        name,
        table,
        schema,
        files,
        append,
    } = commit;
    if let Some(version) = table.and_then(|t| t.version_of(run)) {
        info!(
            run,
            table = name,
            version,
            "the table already holds this night"
        );
        return Ok(Some(version));
    }
    if let Some(newer) = table.and_then(|t| t.current_run()).filter(|r| *r > run) {
        warn!(
            run,
            table = name,
            newer,
            "a newer night is already the table's current version; this one stays out of it"
        );
        return Ok(None);
    }
    let schema = match (schema, files.first()) {
        (Some(schema), _) => Some(schema),
        (None, Some(first)) => Some(insights::parquet_schema(output, first).await?),
        (None, None) if table.is_none() => return Ok(None),
        (None, None) => None,
    };
    let started = std::time::Instant::now();
    let version = delta::commit_night(
        output,
        name,
        table,
        schema.as_deref(),
        delta::Night {
            run,
            scan_time: plan.created,
            files,
            append,
            committed_at,
        },
    )
    .await?;
    info!(
        run,
        table = name,
        version,
        files = files.len(),
        seconds = started.elapsed().as_secs_f64(),
        "committed to the table"
    );
    Ok(Some(version))
}

/// Moves `latest.json` to `run`, never backwards to an older run, with a conditional write so
/// two merges racing cannot both win.
async fn publish(
    output: &Location,
    run: &str,
    manifest: &str,
    toc_version: Option<u64>,
) -> Result<()> {
    let pointer = LatestPointer {
        run: run.to_string(),
        manifest: manifest.to_string(),
        updated: chrono::Utc::now(),
        toc_version,
    };
    for _ in 0..5 {
        let current = output.latest_versioned().await?;
        let mode = match current {
            Some((latest, _)) if latest.run.as_str() > run => {
                warn!(run, latest = %latest.run, "a newer snapshot is already published; latest.json stays");
                return Ok(());
            }
            Some((_, version)) => PutMode::Update(version),
            None => PutMode::Create,
        };
        match output.put_json(LATEST_PATH, &pointer, mode.clone()).await {
            Ok(()) => return Ok(()),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => {
                continue;
            }
            // Stores without conditional updates (a local directory): a plain atomic overwrite.
            Err(object_store::Error::NotImplemented { .. })
                if matches!(mode, PutMode::Update(UpdateVersion { .. })) =>
            {
                return output
                    .put_json(LATEST_PATH, &pointer, PutMode::Overwrite)
                    .await
                    .map_err(|source| Error::store(&output.url, LATEST_PATH, source));
            }
            Err(source) => return Err(Error::store(&output.url, LATEST_PATH, source)),
        }
    }
    Err(Error::Contended {
        what: format!("{}/{LATEST_PATH}", output.url),
        reason: "changed under five consecutive conditional writes".into(),
    })
}
