//! `scanjob plan`: splits the tree into balanced shards and writes `runs/<run>/plan.json`.
//!
//! [`shards`] balances (by the previous snapshot's directory table, or a budgeted count of the
//! top levels) into the pieces each shard is given to walk ([`crate::shard`]). It reads the tree
//! only to count its top levels (through [`crate::fs`], within the operations budget), reads
//! the previous snapshot ([`crate::store::previous`]), and writes the plan, once per run id.
//! An `nfs://` root is planned the same way: by its previous snapshot, or by a count of the
//! export's top levels through the user-space client ([`nfs`]), and its shards walk their
//! pieces as a mounted root's do.

pub mod nfs;
pub mod shards;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use globset::GlobSet;
use object_store::PutMode;
use rustix::fd::OwnedFd;
use tracing::info;

use scanjob_contract::args::Budget;

use crate::error::{Error, Result};
use crate::fs::nfs::{ClientOptions, RpcReport, connect, failure, listings_in_flight};
use crate::fs::politeness::Politeness;
use crate::fs::root::{exclude_set, open_root};
use crate::fs::source::{NfsExport, Source};
use crate::plan::shards::{CountOptions, assign_shards, count_top_levels, imbalance};
use crate::shard::ShardAssignment;
use crate::store::Location;
use crate::store::layout::{
    LAYOUT_FORMAT, ShardPlan, SnapshotManifest, WalkSettings, plan_path, url_of, valid_run_id,
};
use crate::store::previous::{directory_table, previous_snapshot};

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
    /// A first run's top-level count lists this many directories at once, each open and stat
    /// under the scan's operations budget and latency guard.
    pub threads: usize,
    pub budget: Budget,
}

/// Directories the top-level count may list when there is no earlier snapshot.
fn count_budget(shards: u32) -> usize {
    (64 * shards as usize).max(4096)
}

/// A run id the layout accepts and at least one shard.
fn check_request(output: &Location, run: &str, shards: u32) -> Result<()> {
    let bad = |reason: String| Error::BadPlan {
        url: output.url.clone(),
        reason,
    };
    if !valid_run_id(run) {
        return Err(bad(format!("run id {run:?} must be 1-63 of [a-z0-9_-]")));
    }
    if shards == 0 {
        return Err(bad("shards must be at least 1".into()));
    }
    Ok(())
}

/// What an `nfs://` root cannot be planned with: `--one-file-system` (the walk follows the
/// server's directories whatever their fsid).
fn check_nfs_request(output: &Location, settings: &WalkSettings) -> Result<()> {
    if settings.one_file_system {
        return Err(Error::BadPlan {
            url: output.url.clone(),
            reason: "--one-file-system does not apply to an nfs:// root".into(),
        });
    }
    Ok(())
}

/// What the shards are balanced over when there is no usable previous snapshot.
struct Balance {
    shards: u32,
    root: Counted,
    exclude: Option<GlobSet>,
    threads: usize,
    politeness: Arc<Politeness>,
}

/// The root whose top levels are counted.
enum Counted {
    Mounted {
        fd: Arc<OwnedFd>,
        one_file_system: bool,
    },
    Nfs {
        export: NfsExport,
        /// The root as the plan names it, for messages.
        root: String,
        client: ClientOptions,
    },
}

/// What the shards are balanced by, the previous run, and the file-system calls the planner
/// made.
struct Assigned {
    assignments: Vec<ShardAssignment>,
    balanced_by: &'static str,
    previous_run: Option<String>,
    calls: u64,
}

/// Assigns the tree to shards: by the previous snapshot's directory table when there is one
/// of this root, else by a budgeted count of the top levels (or trivially, for one shard).
/// Returns the assignments, what they are balanced by and the previous run.
async fn assign(
    balance: Balance,
    previous: Option<(&Location, SnapshotManifest)>,
) -> Result<Assigned> {
    let shards = balance.shards;
    if let Some((location, manifest)) = previous {
        let table = directory_table(location, &manifest).await?;
        let assignments = tokio::task::spawn_blocking(move || assign_shards(&table, shards, 1))
            .await
            .expect("planner thread");
        return Ok(Assigned {
            assignments,
            balanced_by: "previous-snapshot",
            previous_run: Some(manifest.run),
            calls: 0,
        });
    }
    if shards == 1 {
        // One shard walks the whole tree: nothing to balance, nothing to count.
        return Ok(Assigned {
            assignments: assign_shards(&Default::default(), 1, 1),
            balanced_by: "single-shard",
            previous_run: None,
            calls: 0,
        });
    }
    let max_dirs = count_budget(shards);
    let (table, estimate, calls) = match balance.root {
        Counted::Mounted {
            fd,
            one_file_system,
        } => tokio::task::spawn_blocking(move || {
            count_top_levels(
                fd,
                &CountOptions {
                    max_dirs,
                    exclude: balance.exclude.as_ref(),
                    one_file_system,
                    threads: balance.threads,
                    politeness: &balance.politeness,
                },
            )
        })
        .await
        .expect("planner thread"),
        Counted::Nfs {
            export,
            root,
            client,
        } => {
            let client = connect(&export, &root, &client, balance.politeness.clone()).await?;
            // As many listings at once as a scan of this many threads keeps in flight.
            let in_flight = listings_in_flight(balance.threads);
            let (table, estimate) =
                nfs::count_top_levels(&client, max_dirs, balance.exclude.as_ref(), in_flight)
                    .await
                    .map_err(|error| failure(&root, b"", error))?;
            (table, estimate, RpcReport::of(&client).calls())
        }
    };
    let assignments = tokio::task::spawn_blocking(move || assign_shards(&table, shards, estimate))
        .await
        .expect("planner thread");
    Ok(Assigned {
        assignments,
        balanced_by: "top-level-count",
        previous_run: None,
        calls,
    })
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
        threads,
        budget,
    } = request;
    check_request(&output, &run, shards)?;
    // A damaged Delta log, or a table at <output>/toc that scanjob did not write, stops the
    // run here, before any shard writes into that directory.
    crate::store::delta::read_state(&output, crate::store::delta::TOC_TABLE).await?;
    let (root, counted) = match Source::of(&root)? {
        Source::Mounted(path) => {
            let (abs, fd) = open_root(&path)?;
            let counted = Counted::Mounted {
                fd,
                one_file_system: settings.one_file_system,
            };
            (abs, counted)
        }
        Source::Nfs(export) => {
            check_nfs_request(&output, &settings)?;
            let counted = Counted::Nfs {
                export,
                root: root.display().to_string(),
                client: settings.nfs_client(),
            };
            (root, counted)
        }
    };
    let exclude = exclude_set(&settings.exclude)?;
    let relative = plan_path(&run);
    let plan_url = url_of(&output.url, &relative);
    if let Some(existing) = output.get_json::<ShardPlan>(&relative).await? {
        return reuse(existing, &root, shards, plan_url);
    }

    let started = Instant::now();
    let previous = match &previous {
        Some(location) => previous_snapshot(location, &root.display().to_string(), &run, None)
            .await?
            .map(|manifest| (location, manifest)),
        None => None,
    };
    let balance = Balance {
        shards,
        root: counted,
        exclude,
        threads: threads.max(1),
        politeness: Arc::new(Politeness::new(budget, threads.max(1))),
    };
    let Assigned {
        assignments,
        balanced_by,
        previous_run,
        calls,
    } = assign(balance, previous).await?;
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
        planning_calls: calls,
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
        // The plan's create, like every table's commit, rests on conditional creates.
        Err(object_store::Error::NotImplemented { .. }) => {
            return Err(crate::store::delta::no_conditional_creates(&output));
        }
        Err(source) => return Err(Error::store(&output.url, &relative, source)),
    }
    info!(
        run = %plan.run,
        shards,
        balanced_by = %plan.balanced_by,
        imbalance = plan.estimated_imbalance,
        seconds = plan.planning_seconds,
        calls = plan.planning_calls,
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
