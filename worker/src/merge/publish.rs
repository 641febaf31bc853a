//! Publishing a merged night: each table's Delta commit ([`commit`]), `latest.json` moved to
//! the snapshot ([`publish`]), and retention of older snapshots ([`retain_snapshots`]).
//!
//! It writes the tables' logs, `latest.json`, and (for retention) removes older snapshots and
//! their runs' files.

use std::collections::BTreeMap;

use object_store::{ObjectStoreExt, PutMode, UpdateVersion};
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::schema::TOC_SCHEMA;
use crate::store::Location;
use crate::store::delta::{self, TOC_TABLE};
use crate::store::layout::{
    DERIVED_TABLES, LATEST_PATH, LatestPointer, ShardPlan, SnapshotManifest, TRENDS_TABLE,
    derived_dir, manifest_path, run_dir, snapshot_dir, toc_night_dir,
};
use crate::store::writer::PartFile;

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
    // The tables' logs keep what the kept nights need: from the checkpoint at or before the
    // oldest of them on.
    let oldest_kept = runs[..cut]
        .iter()
        .filter(|r| latest.as_deref() == Some(r.as_str()))
        .chain(&runs[cut..])
        .min();
    if let (Some(oldest_kept), false) = (oldest_kept, removed.is_empty()) {
        for table in DERIVED_TABLES.iter().chain([&TRENDS_TABLE, &TOC_TABLE]) {
            let cleaned = delta::maintenance::clean_log(output, table, oldest_kept).await?;
            if cleaned > 0 {
                info!(
                    table,
                    objects = cleaned,
                    "log entries no kept night needs removed"
                );
            }
        }
    }
    Ok(removed)
}

/// The Delta tables of the output as their logs say they are before the night is written.
pub struct Tables {
    toc: Option<delta::TableState>,
    derived: BTreeMap<&'static str, Option<delta::TableState>>,
    pub trends: Option<delta::TableState>,
}

impl Tables {
    /// Reads every table's log, several at once (on an object store each read is a few round
    /// trips: `_last_checkpoint`, a listing, the checkpoint, the commits after it).
    pub async fn read(output: &Location) -> Result<Self> {
        use futures::{StreamExt, TryStreamExt};
        let names = DERIVED_TABLES
            .iter()
            .copied()
            .chain([TOC_TABLE, TRENDS_TABLE]);
        let mut states: BTreeMap<&'static str, Option<delta::TableState>> =
            futures::stream::iter(names)
                .map(|name| async move { Ok((name, delta::read_state(output, name).await?)) })
                .buffer_unordered(READ_AT_ONCE)
                .try_collect()
                .await?;
        let mut take = |name: &str| states.remove(name).flatten();
        Ok(Self {
            toc: take(TOC_TABLE),
            trends: take(TRENDS_TABLE),
            derived: DERIVED_TABLES
                .iter()
                .map(|name| (*name, take(name)))
                .collect(),
        })
    }
}

/// How many tables' logs [`Tables::read`] reads at once.
const READ_AT_ONCE: usize = 8;

/// Commits the night of `manifest` to every table: each derived table first, the ToC last (its
/// version is the night's), each as its next version unless a version already holds the night.
/// Returns the ToC's version; `None` when a newer night is already its current version, which
/// an older night must not replace.
pub async fn commit(
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
        (None, Some(first)) => Some(crate::store::parquet_schema(output, first).await?),
        (None, None) if table.is_none() => return Ok(None),
        (None, None) => None,
    };
    let started = std::time::Instant::now();
    let Some(version) = delta::commit_night(
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
    .await?
    else {
        return Ok(None);
    };
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
pub async fn publish(
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
