//! `scanjob plan`: writes `runs/<run>/plan.json`.

use std::path::PathBuf;
use std::time::Instant;

use object_store::PutMode;
use tracing::info;

use crate::error::{Error, Result};
use crate::layout::{LAYOUT_FORMAT, ShardPlan, WalkSettings, plan_path, valid_run_id};
use crate::phase::{exclude_set, open_root};
use crate::plan::{assign_shards, count_top_levels, imbalance};
use crate::previous::{directory_table, latest_manifest};
use crate::store::Location;

/// What to plan.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub root: PathBuf,
    pub output: Location,
    pub shards: u32,
    pub run: String,
    /// Balance by this location's latest snapshot when it has one.
    pub previous: Option<Location>,
    pub settings: WalkSettings,
}

/// Directories the top-level count may list when there is no earlier snapshot.
fn count_budget(shards: u32) -> usize {
    (64 * shards as usize).max(4096)
}

/// Plans the run, or returns the plan already stored for this run id (a retried plan pod must
/// not re-plan under shards that may already be running).
pub async fn make_plan(request: PlanRequest) -> Result<(ShardPlan, String)> {
    let PlanRequest {
        root,
        output,
        shards,
        run,
        previous,
        settings,
    } = request;
    if !valid_run_id(&run) {
        return Err(Error::BadPlan {
            url: output.url.clone(),
            reason: format!("run id {run:?} must be 1-63 of [a-z0-9_-]"),
        });
    }
    if shards == 0 {
        return Err(Error::BadPlan {
            url: output.url.clone(),
            reason: "shards must be at least 1".into(),
        });
    }
    let (root, root_fd) = open_root(&root)?;
    let exclude = exclude_set(&settings.exclude)?;
    let relative = plan_path(&run);
    let plan_url = format!("{}/{relative}", output.url);
    if let Some(existing) = output.get_json::<ShardPlan>(&relative).await? {
        return reuse(existing, &root, shards, plan_url);
    }

    let started = Instant::now();
    let previous_snapshot = match &previous {
        Some(location) => latest_manifest(location)
            .await?
            .map(|manifest| (location, manifest)),
        None => None,
    };
    let (assignments, balanced_by, previous_run) = match previous_snapshot {
        Some((location, manifest)) if manifest.root == root.display().to_string() => {
            let table = directory_table(location, &manifest).await?;
            let assignments = tokio::task::spawn_blocking(move || assign_shards(&table, shards, 1))
                .await
                .expect("planner thread");
            (assignments, "previous-snapshot", Some(manifest.run))
        }
        // One shard walks the whole tree: nothing to balance, nothing to count.
        _ if shards == 1 => (
            assign_shards(&Default::default(), 1, 1),
            "single-shard",
            None,
        ),
        _ => {
            let one_fs = settings.one_file_system;
            let assignments = tokio::task::spawn_blocking(move || {
                let (table, estimate) =
                    count_top_levels(root_fd, count_budget(shards), exclude.as_ref(), one_fs);
                assign_shards(&table, shards, estimate)
            })
            .await
            .expect("planner thread");
            (assignments, "top-level-count", None)
        }
    };
    let created = chrono::Utc::now();
    let plan = ShardPlan {
        format: LAYOUT_FORMAT,
        plan_id: format!(
            "{run}-{:x}-{:x}",
            created.timestamp_nanos_opt().unwrap_or_default(),
            std::process::id()
        ),
        run,
        root: root.display().to_string(),
        output: output.url.clone(),
        created,
        settings,
        balanced_by: balanced_by.to_string(),
        previous_run,
        planning_seconds: started.elapsed().as_secs_f64(),
        estimated_imbalance: imbalance(&assignments),
        shards: assignments,
    };
    match output.put_json(&relative, &plan, PutMode::Create).await {
        Ok(()) => {}
        // Another planner for the same run won the race: use its plan.
        Err(object_store::Error::AlreadyExists { .. }) => {
            let existing = output
                .get_json::<ShardPlan>(&relative)
                .await?
                .ok_or_else(|| Error::Corrupt {
                    what: plan_url.clone(),
                    reason: "exists and vanished".into(),
                })?;
            return reuse(existing, &root, shards, plan_url);
        }
        Err(source) => return Err(Error::store(&output.url, &relative, source)),
    }
    info!(
        run = %plan.run,
        shards,
        balanced_by = %plan.balanced_by,
        imbalance = plan.estimated_imbalance,
        seconds = plan.planning_seconds,
        "planned"
    );
    Ok((plan, plan_url))
}

fn reuse(
    existing: ShardPlan,
    root: &std::path::Path,
    shards: u32,
    plan_url: String,
) -> Result<(ShardPlan, String)> {
    if existing.root != root.display().to_string() || existing.shards.len() != shards as usize {
        return Err(Error::BadPlan {
            url: plan_url,
            reason: format!(
                "run {} already has a plan for {} with {} shards",
                existing.run,
                existing.root,
                existing.shards.len()
            ),
        });
    }
    info!(run = %existing.run, "plan exists; reusing it");
    Ok((existing, plan_url))
}
