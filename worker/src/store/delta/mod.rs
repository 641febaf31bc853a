//! The table of contents as a Delta Lake table at `<output>/toc` (and each derived table
//! beside it): each published night is one committed version that adds that night's Parquet
//! files and removes every file live before it, so DuckDB's `delta_scan`, Polars'
//! `scan_delta`, `deltalake`, Spark and Trino read the newest night with no glue, and any kept
//! night by version.
//!
//! The state a night starts from is the Delta protocol's: the newest checkpoint and the
//! commits after it, replayed by `delta_kernel` ([`log`]). Other engines are neighbours: their
//! OPTIMIZE, VACUUM, property changes, checkpoints and appended files are part of that state,
//! and the next night replaces whatever is live. A table feature scanjob cannot honour is
//! refused by name ([`crate::error::Error::Unsupported`]).
//!
//! The commit is the JSON log entry `_delta_log/<version>.json`, written by scanjob itself with
//! put-if-absent (docs/design.md §3 says why not with the kernel's transaction): of two writers
//! racing for one version exactly one commits, and the other reads the log again and commits
//! after it ([`commit_night`]). That rests on the store refusing a second create of one
//! object, which the merge checks once per store ([`promise`]). Each add action carries
//! statistics from the file's Parquet footer ([`stats`]). Every `delta.checkpointInterval`
//! versions (10 by default) the kernel writes a checkpoint and `_last_checkpoint`
//! ([`maintenance`]); retention removes the log before the checkpoint that the oldest kept
//! night needs.
//!
//! Every commit names its run and scan time in `commitInfo` (`scanjob.run`,
//! `scanjob.scanTime`), with one `timestamp` for all the tables of a night; the rows carry the
//! scan time as `last_seen`. The table's `metaData` holds `scanjob.table`; a table without it
//! was written by something else and is never touched.

pub mod errors;
mod log;
pub mod maintenance;
mod promise;
mod stats;

use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt64Type};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::compute::{cast, kernels::arity::unary};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::store::Location;
use crate::store::writer::PartFile;

pub use log::read_state;
pub use promise::no_conditional_creates;

/// The ToC table's directory under the output location.
pub const TOC_TABLE: &str = "toc";

/// The table property that marks a table as written by scanjob, and which table it is.
pub const TABLE_PROPERTY: &str = "scanjob.table";

const ENGINE: &str = concat!("scanjob/", env!("CARGO_PKG_VERSION"));

/// The table property that turns on in-commit timestamps.
const IN_COMMIT_TIMESTAMPS: &str = "delta.enableInCommitTimestamps";

/// A retention longer than any table lives (Delta's durations are intervals).
const RETAIN_FOREVER: &str = "interval 36500 days";

/// How many times a night reads the log again after another writer took the version it
/// meant to commit.
const COMMIT_ATTEMPTS: usize = 10;

/// `<table>/_delta_log/<version>.json`, relative to the output location.
pub fn log_entry_path(table: &str, version: u64) -> String {
    format!("{table}/_delta_log/{version:020}.json")
}

/// What the log says the table is now.
#[derive(Debug, Clone, PartialEq)]
pub struct TableState {
    pub version: u64,
    pub id: String,
    pub schema_string: String,
    /// The table's properties, whoever set them (a new metaData carries them forward).
    pub configuration: BTreeMap<String, String>,
    /// Data files live at `version`, relative to the table, whoever added them.
    pub files: BTreeMap<String, LiveFile>,
    /// `scanjob.run` of the versions read that scanjob committed: those since the newest
    /// checkpoint, or else the newest such version before it.
    pub runs: BTreeMap<u64, String>,
    /// The in-commit timestamp of `version` (milliseconds since the epoch), when another
    /// engine turned them on and the next commit must carry one.
    pub in_commit_timestamp: Option<i64>,
    /// The table has the in-commit timestamps earlier scanjob versions turned on; the next
    /// commit turns them off, so delta-rs can write the table.
    pub drop_in_commit_timestamps: bool,
    /// `delta.checkpointInterval`.
    pub checkpoint_interval: u64,
    /// The newest checkpoint's version.
    pub checkpoint: Option<u64>,
}

/// A data file live in a version, as its add action says.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveFile {
    pub bytes: u64,
    /// `numRecords` of its statistics, when the writer recorded them.
    pub rows: Option<u64>,
}

impl TableState {
    /// The version that committed `run`, if one of those read did.
    pub fn version_of(&self, run: &str) -> Option<u64> {
        self.runs.iter().find_map(|(v, r)| (r == run).then_some(*v))
    }

    /// The run of the newest night committed (other engines' commits may follow it).
    pub fn current_run(&self) -> Option<&str> {
        self.runs.last_key_value().map(|(_, r)| r.as_str())
    }
}

/// The Arrow type a column is written with so that Delta Lake has a type for it: unsigned
/// integers widen to the next signed type (a `UInt64` keeps its 64 bits, so a hash or an inode
/// of 2^63 or more reads negative), timestamps are microseconds in UTC, lists convert their
/// items. Everything else is kept.
fn delta_arrow_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::Timestamp(_, zone) => DataType::Timestamp(
            TimeUnit::Microsecond,
            Some(zone.clone().unwrap_or_else(|| "UTC".into())),
        ),
        DataType::List(item) => DataType::List(Arc::new(
            item.as_ref()
                .clone()
                .with_data_type(delta_arrow_type(item.data_type())),
        )),
        other => other.clone(),
    }
}

/// `schema` with the types [`delta_arrow_type`] gives.
pub fn delta_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            f.as_ref()
                .clone()
                .with_data_type(delta_arrow_type(f.data_type()))
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Casts `batch` to `schema` (the same columns, [`delta_schema`]'s types): a `UInt64` column
/// is reinterpreted bit for bit, everything else cast.
pub fn conform(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> std::result::Result<RecordBatch, ArrowError> {
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(
            |(field, column)| match (column.data_type(), field.data_type()) {
                (from, to) if from == to => Ok(Arc::clone(column)),
                (DataType::UInt64, DataType::Int64) => Ok(Arc::new(
                    unary::<UInt64Type, _, Int64Type>(column.as_primitive::<UInt64Type>(), |v| {
                        v as i64
                    }),
                ) as ArrayRef),
                (_, to) => cast(column, to),
            },
        )
        .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

/// The Delta type of a column written with [`delta_schema`]'s types.
fn delta_type(data_type: &DataType) -> Option<Value> {
    Some(Value::from(match data_type {
        DataType::Binary | DataType::LargeBinary => "binary",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        DataType::Dictionary(_, value) => return delta_type(value),
        DataType::Boolean => "boolean",
        DataType::Int8 => "byte",
        DataType::Int16 => "short",
        DataType::Int32 => "integer",
        DataType::Int64 => "long",
        DataType::Float32 => "float",
        DataType::Float64 => "double",
        DataType::Date32 => "date",
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => "timestamp",
        DataType::List(item) => {
            return Some(json!({
                "type": "array",
                "elementType": delta_type(item.data_type())?,
                "containsNull": item.is_nullable(),
            }));
        }
        _ => return None,
    }))
}

/// The Delta `schemaString` of an Arrow schema written with [`delta_schema`]'s types.
pub fn schema_string(schema: &Schema) -> String {
    let fields: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| {
            let data_type = delta_type(f.data_type()).unwrap_or_else(|| {
                panic!("column {} has no Delta type: {}", f.name(), f.data_type())
            });
            json!({"name": f.name(), "type": data_type, "nullable": f.is_nullable(), "metadata": {}})
        })
        .collect();
    json!({"type": "struct", "fields": fields}).to_string()
}

fn corrupt(location: &Location, relative: &str, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        what: format!("{}/{relative}", location.url),
        reason: reason.into(),
    }
}

pub(crate) fn foreign(location: &Location, table: &str) -> Error {
    corrupt(
        location,
        table,
        format!(
            "is a Delta table that scanjob did not write (its metaData has no \
             {TABLE_PROPERTY}={table}); it is left as it is: move it away, or write to another \
             output"
        ),
    )
}

/// The files that hold night `run` of `table`, whose manifest listed `listed`: those files
/// while they all exist. After another engine rewrote them (an OPTIMIZE, then a VACUUM), the
/// table's live files, when its newest night is still `run` and they hold exactly the rows
/// the manifest listed; `None` when the night's rows can no longer be told apart from other
/// rows (a file appended since), and what reads them starts without that night.
pub async fn night_files(
    location: &Location,
    table: &str,
    run: &str,
    listed: &[PartFile],
) -> Result<Option<Vec<PartFile>>> {
    let mut missing = 0usize;
    for file in listed {
        match location.store.head(&location.path(&file.path)).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => missing += 1,
            Err(source) => return Err(Error::store(&location.url, &file.path, source)),
        }
    }
    if missing == 0 {
        return Ok(Some(listed.to_vec()));
    }
    let state = read_state(location, table).await?;
    let live: Option<Vec<PartFile>> = state
        .as_ref()
        .filter(|s| s.current_run() == Some(run))
        .and_then(|s| {
            s.files
                .iter()
                .map(|(path, file)| {
                    file.rows.map(|rows| PartFile {
                        path: format!("{table}/{path}"),
                        rows,
                        bytes: file.bytes,
                    })
                })
                .collect()
        });
    let rows = crate::store::writer::rows_of(listed);
    match live {
        Some(files) if crate::store::writer::rows_of(&files) == rows => {
            info!(
                run,
                table,
                missing,
                files = files.len(),
                "another engine rewrote the night's files; its rows are read from the table's live files"
            );
            Ok(Some(files))
        }
        _ => {
            warn!(
                run,
                table,
                missing,
                "another engine removed the night's files and the table's live files hold other \
                 rows besides them: the night is read as if there were no earlier one"
            );
            Ok(None)
        }
    }
}

/// One night as a table commits it.
#[derive(Clone, Copy)]
pub struct Night<'a> {
    pub run: &'a str,
    /// The scan's time, recorded in the commit.
    pub scan_time: chrono::DateTime<chrono::Utc>,
    /// Relative to the output location, all inside the table's directory.
    pub files: &'a [PartFile],
    /// Add `files` and remove none (else every file live before is removed).
    pub append: bool,
    /// When the night is committed (milliseconds since the epoch): the same for every table
    /// of the night, as the commit's `timestamp`.
    pub committed_at: i64,
}

/// A file the night adds: its path in the table, its size and rows, its statistics.
struct Added<'a> {
    path: &'a str,
    file: &'a PartFile,
    stats: String,
}

/// Commits one night: a version that adds its files and, unless it appends, removes every
/// file live in the version before, whoever added it. `schema` is the files' schema (`None`:
/// as the table's, for a night with no files). `previous` is the state read before the night
/// was derived. When another writer commits that version first, the log is read again and
/// the night committed after it; when what it committed is this night, or a newer one, nothing
/// more is committed. Returns the version that holds the night, `None` when a newer night is
/// the table's.
pub async fn commit_night(
    location: &Location,
    table: &str,
    previous: Option<&TableState>,
    schema: Option<&Schema>,
    night: Night<'_>,
) -> Result<Option<u64>> {
    let prefix = format!("{table}/");
    let mut added = Vec::with_capacity(night.files.len());
    for file in night.files {
        let path = file.path.strip_prefix(&prefix).ok_or_else(|| {
            corrupt(
                location,
                &file.path,
                format!("is outside the table {table}/ and cannot be added to it"),
            )
        })?;
        let stats = stats::of_file(location, file).await?;
        added.push(Added { path, file, stats });
    }
    let schema_string = schema.map(schema_string);
    promise::check_conditional_create(location).await?;
    let mut state = previous.cloned();
    for attempt in 0..COMMIT_ATTEMPTS {
        if attempt > 0 {
            state = read_state(location, table).await?;
            if let Some(version) = state.as_ref().and_then(|s| s.version_of(night.run)) {
                info!(
                    run = night.run,
                    table, version, "the table already holds this night"
                );
                return Ok(Some(version));
            }
            if let Some(newer) = state
                .as_ref()
                .and_then(|s| s.current_run())
                .filter(|r| *r > night.run)
            {
                warn!(
                    run = night.run,
                    table,
                    newer,
                    "a newer night is already the table's current version; this one stays out of it"
                );
                return Ok(None);
            }
        }
        let version = state.as_ref().map_or(0, |s| s.version + 1);
        let body = entry(
            location,
            table,
            state.as_ref(),
            schema_string.as_deref(),
            night,
            &added,
        )?;
        let relative = log_entry_path(table, version);
        match location
            .store
            .put_opts(
                &location.path(&relative),
                PutPayload::from(body),
                PutOptions::from(PutMode::Create),
            )
            .await
        {
            Ok(_) => {
                let interval = state.as_ref().map_or(10, |s| s.checkpoint_interval);
                maintenance::after_commit(location, table, version, interval).await;
                return Ok(Some(version));
            }
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                info!(
                    run = night.run,
                    table,
                    version,
                    "another writer committed this version first; reading the log again"
                );
            }
            Err(source) => return Err(Error::store(&location.url, &relative, source)),
        }
    }
    Err(Error::Contended {
        what: format!("{}/{table}/_delta_log", location.url),
        reason: format!(
            "other writers committed first {COMMIT_ATTEMPTS} times in a row; nothing of run {} \
             is committed, and a retry of this merge commits it after them",
            night.run
        ),
    })
}

/// The log entry that commits `night` on top of `state`.
fn entry(
    location: &Location,
    table: &str,
    state: Option<&TableState>,
    schema_string: Option<&str>,
    night: Night<'_>,
    added: &[Added<'_>],
) -> Result<Vec<u8>> {
    let Night {
        run,
        scan_time,
        append,
        committed_at,
        ..
    } = night;
    let schema_string = match (schema_string, state) {
        (Some(schema), _) => schema.to_string(),
        (None, Some(s)) => s.schema_string.clone(),
        (None, None) => {
            return Err(corrupt(
                location,
                table,
                "a table cannot start without a schema",
            ));
        }
    };
    let live = |path: &str| state.is_some_and(|s| s.files.contains_key(path));
    let kept: BTreeSet<&str> = added.iter().map(|a| a.path).collect();
    let removed: Vec<&String> = state
        .iter()
        .flat_map(|s| s.files.keys())
        .filter(|path| !append && !kept.contains(path.as_str()))
        .collect();
    let new_files: Vec<&Added> = added.iter().filter(|a| !live(a.path)).collect();
    let mut info = serde_json::Map::new();
    // In-commit timestamps, where another engine turned them on, must come first and grow.
    if let Some(previous) = state.and_then(|s| s.in_commit_timestamp) {
        info.insert(
            "inCommitTimestamp".into(),
            json!(committed_at.max(previous + 1)),
        );
    }
    for (key, value) in [
        ("timestamp", json!(committed_at)),
        ("operation", json!("WRITE")),
        (
            "operationParameters",
            json!({"mode": if append { "Append" } else { "Overwrite" }}),
        ),
        ("isBlindAppend", json!(append)),
        ("engineInfo", json!(ENGINE)),
        ("scanjob.run", json!(run)),
        (
            "scanjob.scanTime",
            json!(scan_time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        ),
        ("scanjob.adds", json!(new_files.len())),
        ("scanjob.removes", json!(removed.len())),
    ] {
        info.insert(key.into(), value);
    }
    let mut actions = vec![json!({ "commitInfo": info })];
    let new_protocol = state.is_none_or(|s| s.drop_in_commit_timestamps);
    if new_protocol {
        // The features every common writer supports (delta-rs among them): no table
        // features at all (docs/design.md §3).
        actions.push(json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}));
    }
    if new_protocol || state.is_some_and(|s| s.schema_string != schema_string) {
        let mut configuration = state.map_or_else(
            || {
                BTreeMap::from([
                    // scanjob removes a night's files itself, when retention drops the
                    // night; another engine's VACUUM or log cleanup with Delta's defaults
                    // (7 days, 30 days) must not remove a night that retention keeps.
                    (
                        "delta.deletedFileRetentionDuration".to_string(),
                        RETAIN_FOREVER.to_string(),
                    ),
                    (
                        "delta.logRetentionDuration".to_string(),
                        RETAIN_FOREVER.to_string(),
                    ),
                ])
            },
            |s| s.configuration.clone(),
        );
        configuration.insert(TABLE_PROPERTY.into(), table.into());
        for key in [
            IN_COMMIT_TIMESTAMPS,
            "delta.inCommitTimestampEnablementVersion",
            "delta.inCommitTimestampEnablementTimestamp",
        ] {
            if state.is_some_and(|s| s.drop_in_commit_timestamps) {
                configuration.remove(key);
            }
        }
        let id = state.map_or_else(|| uuid::Uuid::new_v4().to_string(), |s| s.id.clone());
        actions.push(json!({"metaData": {
            "id": id,
            "name": table,
            "format": {"provider": "parquet", "options": {}},
            "schemaString": schema_string,
            "partitionColumns": [],
            "configuration": configuration,
            "createdTime": committed_at,
        }}));
    }
    for path in removed {
        actions.push(json!({"remove": {
            "path": path,
            "deletionTimestamp": committed_at,
            "dataChange": true,
        }}));
    }
    for added in new_files {
        actions.push(json!({"add": {
            "path": added.path,
            "partitionValues": {},
            "size": added.file.bytes,
            "modificationTime": committed_at,
            "dataChange": true,
            "stats": added.stats,
        }}));
    }
    let mut body = Vec::new();
    for action in &actions {
        body.extend(serde_json::to_vec(action).expect("serialisable"));
        body.push(b'\n');
    }
    Ok(body)
}
