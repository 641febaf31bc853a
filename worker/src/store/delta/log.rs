//! Reading a table's state as the Delta protocol defines it: the newest checkpoint and the
//! commits after it, replayed by `delta_kernel` (the Delta project's own library), so the live
//! files are whatever the log says, whoever wrote it. Beside the kernel, scanjob reads only
//! the JSON commits after that checkpoint itself: its own commits must add up to what their
//! `commitInfo` says (a torn entry is found before anything is written), and they name the
//! nights (`scanjob.run`) a retry or an older night needs to know about.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use delta_kernel::scan::state::ScanFile;
use delta_kernel::table_features::TableFeature;
use delta_kernel::{KernelError, KernelResult, Snapshot};
use delta_kernel_default_engine::DefaultEngineBuilder;
use delta_kernel_default_engine::executor::tokio::TokioMultiThreadExecutor;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use serde_json::Value;

use super::{IN_COMMIT_TIMESTAMPS, LiveFile, TABLE_PROPERTY, TableState, log_entry_path};
use crate::error::{Error, Result};
use crate::store::Location;

/// The writer features a scanjob commit honours: it writes none of the data the others
/// constrain (invariants and CHECK constraints are not used by scanjob's schemas, and a
/// table with constraints is refused below), and it carries in-commit timestamps forward
/// when a table has them on.
const HONOURED_FEATURES: &[&str] = &[
    "invariants",
    "timestampNtz",
    "inCommitTimestamp",
    "vacuumProtocolCheck",
    "checkpointProtection",
];

pub(super) type Engine = Arc<dyn delta_kernel::Engine>;

/// A kernel engine over `location`'s store and the URL of `table` in it. A local directory is
/// read through a plain file system store with absolute paths, as the kernel resolves every
/// object from its URL's path. The kernel's I/O runs on the worker's runtime, so the store's
/// connections stay on the runtime that made them; a single-threaded runtime (a unit test)
/// gives it a thread of its own.
pub(super) fn engine(location: &Location, table: &str) -> Result<(Engine, url::Url)> {
    let store: Arc<dyn object_store::ObjectStore> = if location.url.starts_with("file://") {
        Arc::new(LocalFileSystem::new())
    } else {
        Arc::clone(&location.store)
    };
    let url = url::Url::parse(&format!("{}/{table}/", location.url)).map_err(|e| {
        Error::BadOutputUrl {
            url: location.url.clone(),
            reason: e.to_string(),
        }
    })?;
    let engine: Engine = match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            Arc::new(
                DefaultEngineBuilder::new(store)
                    .with_task_executor(Arc::new(TokioMultiThreadExecutor::new(handle)))
                    .build(),
            )
        }
        _ => Arc::new(DefaultEngineBuilder::new(store).build()),
    };
    Ok((engine, url))
}

/// What the kernel's errors mean for a night: a store that failed may answer the retry; a
/// feature it cannot read is refused by name; anything else is a log that does not read.
pub(super) fn kernel_error(location: &Location, table: &str, e: KernelError) -> Error {
    let what = format!("{}/{table}", location.url);
    match e {
        KernelError::ObjectStore(source) => Error::store(&location.url, table, source),
        KernelError::Unsupported(reason) => Error::Unsupported {
            what,
            reason: format!("{reason}; scanjob leaves the table as it is"),
        },
        other => Error::Corrupt {
            what,
            reason: other.to_string(),
        },
    }
}

/// The kernel's task ended without an answer (it panicked): the log is reported as unread.
pub(super) fn kernel_stopped(
    location: &Location,
    table: &str,
    e: &tokio::task::JoinError,
) -> Error {
    Error::Corrupt {
        what: format!("{}/{table}/_delta_log", location.url),
        reason: format!("the Delta kernel stopped while reading it: {e}"),
    }
}

/// The log's objects by kind: JSON commits and checkpoints (classic, multi-part or V2), by
/// version.
pub(super) struct Listing {
    pub(super) commits: BTreeSet<u64>,
    pub(super) checkpoints: BTreeSet<u64>,
    any: bool,
    /// The version the listing starts at; `None`: the whole log.
    from: Option<u64>,
}

pub(super) async fn list_log(location: &Location, table: &str) -> Result<Listing> {
    list_log_from(location, table, None).await
}

/// The log's objects from version `from` on (all of them when `None`): a store lists only the
/// names after it (S3's `start-after`), so a table's years of commits are not listed every
/// night.
async fn list_log_from(location: &Location, table: &str, from: Option<u64>) -> Result<Listing> {
    let log_dir = format!("{table}/_delta_log");
    let prefix = location.path(&log_dir);
    let listed = match from {
        // Every name of version `from` sorts after the bare number.
        Some(version) => location.store.list_with_offset(
            Some(&prefix),
            &location.path(&format!("{log_dir}/{version:020}")),
        ),
        None => location.store.list(Some(&prefix)),
    };
    let names: Vec<String> = listed
        .map_ok(|meta| meta.location.filename().unwrap_or_default().to_string())
        .try_collect()
        .await
        .map_err(|source| Error::store(&location.url, &log_dir, source))?;
    let mut listing = Listing {
        commits: BTreeSet::new(),
        checkpoints: BTreeSet::new(),
        any: !names.is_empty(),
        from,
    };
    for name in &names {
        let Some((version, rest)) = name.split_once('.') else {
            continue;
        };
        let Ok(version) = version.parse::<u64>() else {
            continue;
        };
        if rest == "json" {
            listing.commits.insert(version);
        } else if rest.starts_with("checkpoint.") && rest.ends_with(".parquet") {
            listing.checkpoints.insert(version);
        }
    }
    Ok(listing)
}

/// One JSON commit as scanjob reads it: the night it names, if scanjob wrote it.
pub(super) struct Commit {
    pub(super) run: Option<String>,
}

pub(super) async fn read_commit(
    location: &Location,
    table: &str,
    version: u64,
) -> Result<Option<Commit>> {
    let corrupt = |reason: String| Error::Corrupt {
        what: format!("{}/{}", location.url, log_entry_path(table, version)),
        reason,
    };
    let Some(bytes) = location.get_bytes(&log_entry_path(table, version)).await? else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| corrupt("is not UTF-8".into()))?;
    let (mut adds, mut removes, mut said, mut run) = (0u64, 0u64, None, None);
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let action: Value = serde_json::from_str(line)
            .map_err(|e| corrupt(format!("line {}: not JSON: {e}", n + 1)))?;
        if action.get("add").is_some() {
            adds += 1;
        } else if action.get("remove").is_some() {
            removes += 1;
        } else if let Some(info) = action.get("commitInfo") {
            run = info["scanjob.run"].as_str().map(str::to_string);
            said = match (
                info["scanjob.adds"].as_u64(),
                info["scanjob.removes"].as_u64(),
            ) {
                (Some(a), Some(r)) => Some((a, r)),
                _ => None,
            };
        }
    }
    // Every commit scanjob writes says how many files it adds and removes: an entry cut short
    // at a line, or edited, does not add up. Another engine's commit is its own business.
    if run.is_some() {
        match said {
            None => {
                return Err(corrupt(
                    "names a scanjob run but not its adds and removes".into(),
                ));
            }
            Some(said) if said != (adds, removes) => {
                return Err(corrupt(format!(
                    "holds {adds} adds and {removes} removes where its commitInfo says {} and {}",
                    said.0, said.1
                )));
            }
            Some(_) => {}
        }
    }
    Ok(Some(Commit { run }))
}

/// The version `_last_checkpoint` names, if it exists and reads; only a hint of where to list
/// from (the listing decides).
async fn last_checkpoint(location: &Location, table: &str) -> Result<Option<u64>> {
    let bytes = location
        .get_bytes(&format!("{table}/_delta_log/_last_checkpoint"))
        .await?;
    Ok(bytes
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["version"].as_u64()))
}

/// Reads the table's state; `Ok(None)` when there is no table yet. Reads the commits after
/// the newest checkpoint (and, when none of them is scanjob's, older commits back to the
/// newest night), then the kernel's snapshot of the newest version.
pub async fn read_state(location: &Location, table: &str) -> Result<Option<TableState>> {
    // From the checkpoint `_last_checkpoint` names, when it is listed there; else the whole log.
    let hint = last_checkpoint(location, table).await?;
    let mut listing = match hint {
        Some(version) => list_log_from(location, table, Some(version)).await?,
        None => list_log(location, table).await?,
    };
    if hint.is_some_and(|v| !listing.checkpoints.contains(&v)) {
        listing = list_log(location, table).await?;
    }
    let corrupt = |reason: String| Error::Corrupt {
        what: format!("{}/{table}/_delta_log", location.url),
        reason,
    };
    let Some(&newest) = listing.commits.last() else {
        if listing.any {
            return Err(corrupt("holds no JSON commits".into()));
        }
        return Ok(None);
    };
    let checkpoint = listing.checkpoints.range(..=newest).next_back().copied();
    // The versions a reader replays: those after the checkpoint, or all from version 0.
    let first = checkpoint.map_or(0, |c| c + 1);
    if let Some(gap) = (first..=newest).find(|v| !listing.commits.contains(v)) {
        return Err(corrupt(format!(
            "version {gap} is missing; the log must run without gaps from {}",
            checkpoint.map_or("version 0".into(), |c| format!("the checkpoint at {c}"))
        )));
    }
    let mut runs = BTreeMap::new();
    for version in checkpoint.unwrap_or(0)..=newest {
        if let Some(Commit { run: Some(run) }) = read_commit(location, table, version).await? {
            runs.insert(version, run);
        }
    }
    // The newest night before the checkpoint, when no commit after it is one.
    if runs.is_empty() && listing.from.is_some() {
        listing = list_log(location, table).await?;
    }
    if runs.is_empty() {
        for &version in listing.commits.range(..checkpoint.unwrap_or(0)).rev() {
            if let Some(Commit { run: Some(run) }) = read_commit(location, table, version).await? {
                runs.insert(version, run);
                break;
            }
        }
    }
    let (engine, url) = engine(location, table)?;
    let kernel = tokio::task::spawn_blocking(move || snapshot_state(engine.as_ref(), url, newest))
        .await
        .map_err(|e| kernel_stopped(location, table, &e))?
        .map_err(|e| kernel_error(location, table, e))?;
    let KernelState {
        id,
        schema_string,
        configuration,
        writer_features,
        min_writer_version,
        files,
        with_deletion_vectors,
        checkpoint_interval,
        timestamp,
    } = kernel;
    if configuration.get(TABLE_PROPERTY).map(String::as_str) != Some(table) {
        return Err(super::foreign(location, table));
    }
    let unsupported = |reason: String| Error::Unsupported {
        what: format!("{}/{table}", location.url),
        reason: format!(
            "{reason}, which scanjob cannot honour when it commits a night; the table is left \
             as it is: turn the feature off with the engine that turned it on, or write to \
             another output"
        ),
    };
    if let Some(feature) = writer_features
        .iter()
        .find(|f| !HONOURED_FEATURES.contains(&f.as_str()))
    {
        return Err(unsupported(format!("uses the table feature {feature}")));
    }
    // Legacy writer versions name features by number; each counts where it is turned on.
    let on = |key: &str| configuration.get(key).is_some_and(|v| v == "true");
    let legacy = [
        (
            2,
            on("delta.appendOnly"),
            "appendOnly (delta.appendOnly=true)",
        ),
        (
            3,
            configuration
                .keys()
                .any(|k| k.starts_with("delta.constraints.")),
            "checkConstraints (delta.constraints.*)",
        ),
        (
            4,
            on("delta.enableChangeDataFeed"),
            "changeDataFeed (delta.enableChangeDataFeed=true)",
        ),
        (
            5,
            configuration
                .get("delta.columnMapping.mode")
                .is_some_and(|m| m != "none"),
            "columnMapping (delta.columnMapping.mode)",
        ),
    ];
    for (version, turned_on, feature) in legacy {
        if min_writer_version >= version && turned_on {
            return Err(unsupported(format!("uses the table feature {feature}")));
        }
    }
    if with_deletion_vectors > 0 {
        return Err(unsupported(format!(
            "has {with_deletion_vectors} live files with deletion vectors"
        )));
    }
    let in_commit_timestamps = on(IN_COMMIT_TIMESTAMPS);
    // The protocol scanjob wrote before in-commit timestamps were dropped: exactly these two
    // features, on a table scanjob created.
    let scanjob_timestamps = in_commit_timestamps
        && writer_features.len() == 2
        && writer_features.iter().any(|f| f == "invariants")
        && writer_features.iter().any(|f| f == "inCommitTimestamp");
    Ok(Some(TableState {
        version: newest,
        id,
        schema_string,
        configuration,
        files,
        runs,
        in_commit_timestamp: timestamp.filter(|_| in_commit_timestamps && !scanjob_timestamps),
        drop_in_commit_timestamps: scanjob_timestamps,
        checkpoint_interval,
        checkpoint,
    }))
}

/// What the kernel's snapshot says.
struct KernelState {
    id: String,
    schema_string: String,
    configuration: BTreeMap<String, String>,
    writer_features: Vec<String>,
    min_writer_version: i32,
    files: BTreeMap<String, LiveFile>,
    with_deletion_vectors: usize,
    checkpoint_interval: u64,
    timestamp: Option<i64>,
}

/// The kernel's replay of `version` (blocking: the kernel's engine runs its own I/O thread).
fn snapshot_state(
    engine: &dyn delta_kernel::Engine,
    url: url::Url,
    version: u64,
) -> KernelResult<KernelState> {
    let snapshot = Snapshot::builder_for(url.as_str())
        .at_version(version)
        .build(engine)?;
    let config = snapshot.table_configuration();
    let (protocol, metadata) = (config.protocol(), config.metadata());
    let writer_features = protocol
        .writer_features()
        .unwrap_or_default()
        .iter()
        .map(TableFeature::to_string)
        .collect();
    let configuration: BTreeMap<String, String> = metadata
        .configuration()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let properties = snapshot.table_properties();
    let checkpoint_interval = properties.checkpoint_interval.map_or(10, |n| n.get());
    let timestamp = match properties.enable_in_commit_timestamps {
        Some(true) => Some(snapshot.get_timestamp(engine)?),
        _ => None,
    };
    type Live = (BTreeMap<String, LiveFile>, usize);
    let mut live: Live = (BTreeMap::new(), 0);
    let scan = Arc::clone(&snapshot).scan_builder().build()?;
    for batch in scan.scan_metadata(engine)? {
        live = batch?.visit_scan_files(live, |live: &mut Live, file: ScanFile| {
            live.1 += usize::from(file.dv_info.has_vector());
            let entry = LiveFile {
                bytes: u64::try_from(file.size).unwrap_or_default(),
                rows: file.stats.map(|s| s.num_records),
            };
            live.0.insert(file.path, entry);
        })?;
    }
    Ok(KernelState {
        id: metadata.id().to_string(),
        schema_string: metadata.schema_string().clone(),
        configuration,
        writer_features,
        min_writer_version: protocol.min_writer_version(),
        files: live.0,
        with_deletion_vectors: live.1,
        checkpoint_interval,
        timestamp,
    })
}
