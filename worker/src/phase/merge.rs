//! `scanjob merge`: checks every shard of a run, commits `snapshots/<run>/manifest.json`, then
//! points `latest.json` at it.
//!
//! A shard counts only with a `_SUCCESS.json` of this plan. By default every shard must have
//! one, else the run is [`Error::Incomplete`] and nothing is published. With
//! `--max-missing-shards N`, a run missing 1..=N shards (with at least one shard done) is
//! published anyway as a partial snapshot: its manifest's `missing_shards` names the shards
//! whose rows it lacks, and `latest.json` moves to it like to any other snapshot. More missing
//! shards than that is still `Incomplete`.

use object_store::{PutMode, UpdateVersion};
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::layout::{
    EntryCounts, LATEST_PATH, LAYOUT_FORMAT, LatestPointer, ShardSuccess, ShardSummary,
    SnapshotManifest, manifest_path, success_path,
};
use crate::phase::scan::load_plan;
use crate::phase::split_run_url;
use crate::schema::SCHEMA_VERSION;
use crate::store::Location;

/// Merges the run at `<output>/runs/<run>`, tolerating up to `max_missing_shards` shards
/// without a `_SUCCESS.json`. Returns the manifest and its full URL.
pub async fn merge_run(
    run_url: &str,
    max_missing_shards: u32,
) -> Result<(SnapshotManifest, String)> {
    let (base, run) = split_run_url(run_url, None).ok_or_else(|| Error::BadPlan {
        url: run_url.to_string(),
        reason: "expected <output>/runs/<run>".into(),
    })?;
    let plan_url = format!("{base}/{}", crate::layout::plan_path(&run));
    let (plan, output) = load_plan(&plan_url).await?;

    let mut successes = Vec::with_capacity(plan.shards.len());
    let mut missing = Vec::new();
    for index in 0..plan.shards.len() as u32 {
        match output
            .get_json::<ShardSuccess>(&success_path(&run, index))
            .await?
        {
            Some(s) if s.plan_id == plan.plan_id && s.index == index => successes.push(s),
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
        if successes.is_empty() || missing.len() > max_missing_shards as usize {
            return Err(Error::Incomplete { run, missing });
        }
        warn!(
            run,
            ?missing,
            max_missing_shards,
            "publishing a partial snapshot: these shards have no _SUCCESS.json and no rows in it"
        );
    }

    let mut counts = EntryCounts::default();
    for s in &successes {
        counts.add(&s.counts);
    }
    let manifest = SnapshotManifest {
        format: LAYOUT_FORMAT,
        schema_version: SCHEMA_VERSION,
        run: run.clone(),
        plan_id: plan.plan_id.clone(),
        root: plan.root.clone(),
        created: chrono::Utc::now(),
        counts,
        toc_files: successes.iter().flat_map(|s| s.toc_files.clone()).collect(),
        error_files: successes
            .iter()
            .flat_map(|s| s.error_files.clone())
            .collect(),
        shards: successes
            .iter()
            .map(|s| ShardSummary {
                index: s.index,
                entries: s.counts.entries,
                errors: s.counts.errors,
                duration_seconds: s.duration_seconds,
                carried_forward_from: None,
            })
            .collect(),
        missing_shards: missing,
        atime_reflects_user_access: true,
        previous_run: plan.previous_run.clone(),
        derived: Default::default(),
    };
    let relative = manifest_path(&run);
    output
        .put_json(&relative, &manifest, PutMode::Overwrite)
        .await
        .map_err(|source| Error::store(&output.url, &relative, source))?;
    publish(&output, &run, &relative).await?;
    info!(
        run,
        files = manifest.counts.files,
        bytes = manifest.counts.bytes,
        missing_shards = manifest.missing_shards.len(),
        "snapshot published"
    );
    let url = format!("{}/{relative}", output.url);
    Ok((manifest, url))
}

/// Moves `latest.json` to `run`, never backwards to an older run, with a conditional write so
/// two merges racing cannot both win.
async fn publish(output: &Location, run: &str, manifest: &str) -> Result<()> {
    let pointer = LatestPointer {
        run: run.to_string(),
        manifest: manifest.to_string(),
        updated: chrono::Utc::now(),
    };
    for _ in 0..5 {
        let current = output
            .get_json_versioned::<LatestPointer>(LATEST_PATH)
            .await?;
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
    Err(Error::Corrupt {
        what: format!("{}/{LATEST_PATH}", output.url),
        reason: "changed under five consecutive conditional writes".into(),
    })
}
