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
//! It reads the run's shards and the previous snapshot ([`crate::night`]), the join
//! partitions' output if they ran ([`crate::join`]) and the hash step's ([`crate::hash`]), and
//! writes only below `snapshots/<run>/` and each table's night, then commits and publishes
//! ([`publish`]: the tables' logs, `latest.json`, and retention's removals).
//!
//! A merge is safe to retry: an attempt that failed before its manifest leaves files no
//! manifest names, which the next attempt removes first; a run whose manifest exists (the
//! attempt was lost after committing) is only published again, never rewritten.

pub mod publish;

use object_store::{ObjectStoreExt, PutMode, PutPayload};
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::insights::{self, Inputs};
use crate::join::joined;
pub use crate::night::MergeOptions;
use crate::night::{Night, Shards, night_of, open_run};
use crate::schema::SCHEMA_VERSION;
use crate::store::Location;
use crate::store::layout::{
    DERIVED_TABLES, EntryCounts, HashSuccess, LAYOUT_FORMAT, ShardPlan, ShardSummary,
    SnapshotManifest, TRENDS_TABLE, derived_dir, hash_success_path, hashes_dir, manifest_path,
    report_path, snapshot_dir, summary_path, toc_merged_dir, url_of,
};
use crate::store::previous::check_parquet_files;
use crate::store::writer::PartFile;
use crate::summary::HashTotals;
use publish::{Tables, commit, publish, retain_snapshots};

/// Merges the run at `<output>/runs/<run>`: checks its shards and the previous snapshot,
/// derives the snapshot's tables ([`crate::insights`]), writes the manifest, moves
/// `latest.json`, and applies retention. Returns the manifest and its full URL.
pub async fn merge_run(
    run_url: &str,
    options: &MergeOptions,
) -> Result<(SnapshotManifest, String)> {
    let (plan, output, run) = open_run(run_url).await?;
    // Read (and checked) before anything is written, so a damaged latest.json stops the merge
    // here; publishing reads it again for its conditional update.
    output.latest().await?;
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
    let night = night_of(&output, &plan, &run, options).await?;
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
    let error_files: Vec<PartFile> = shards
        .done
        .iter()
        .flat_map(|s| s.error_files.clone())
        .collect();
    let created = chrono::Utc::now();
    let mut outcome = insights::derive(
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
                .flat_map(|t| t.files.keys())
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
    // The night's error rows, a Delta table beside the others.
    outcome.derived.insert(
        crate::store::delta::errors::ERRORS_TABLE.into(),
        crate::store::delta::errors::copy_night(&output, &run, &error_files).await?,
    );

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
