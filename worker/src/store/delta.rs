//! The table of contents as a Delta Lake table at `<output>/toc`: each published night is one
//! committed version that adds that night's Parquet files and removes the previous night's, so
//! DuckDB's `delta_scan`, Polars' `scan_delta`, `deltalake`, Spark and Trino read the newest
//! night with no glue, and any kept night by version.
//!
//! The commit is the Delta protocol's JSON log entry `_delta_log/<version>.json` (reader
//! version 1, writer version 7 with the one writer feature `inCommitTimestamp`), written with
//! put-if-absent, so of two merges racing for one version exactly one commits. The files are added as the scan shards or the merge's history
//! join wrote them; no row is copied to commit them.
//!
//! Every commit names its run and scan time in `commitInfo` (`scanjob.run`,
//! `scanjob.scanTime`), and the rows carry the scan time as `last_seen`. Each commit also
//! carries its time as Delta's in-commit timestamp, one time for all the tables of a night, so
//! a reader's time travel by timestamp finds the same night in every table without relying on
//! the log objects' modification times (which a copy of the bucket would change). The table's `metaData` holds
//! `scanjob.table`; a table without it was written by something else and is never touched.
//!
//! The log is read whole (one small JSON object per night) before anything of a night is
//! written: a damaged entry (one that is not JSON, or whose adds and removes do not add up to
//! what its `commitInfo` says), a gap in the versions or a foreign table stops the plan and the
//! merge with an error naming the object, and the table stays at its previous version.

use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt64Type};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::compute::{cast, kernels::arity::unary};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::store::Location;
use crate::store::writer::PartFile;

/// The ToC table's directory under the output location.
pub const TOC_TABLE: &str = "toc";

/// The table property that marks a table as written by scanjob, and which table it is.
pub const TABLE_PROPERTY: &str = "scanjob.table";

const ENGINE: &str = concat!("scanjob/", env!("CARGO_PKG_VERSION"));

/// The table property that turns on in-commit timestamps.
const IN_COMMIT_TIMESTAMPS: &str = "delta.enableInCommitTimestamps";

/// A retention longer than any table lives (Delta's durations are intervals).
const RETAIN_FOREVER: &str = "interval 36500 days";

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
    /// Data files of the current version, relative to the table.
    pub files: BTreeSet<String>,
    /// `scanjob.run` of each version's commit, by version.
    pub runs: BTreeMap<u64, String>,
    /// The in-commit timestamp of the current version (milliseconds since the epoch), when
    /// the table has them enabled.
    pub in_commit_timestamp: Option<i64>,
}

impl TableState {
    /// The version that committed `run`, if one did.
    pub fn version_of(&self, run: &str) -> Option<u64> {
        self.runs.iter().find_map(|(v, r)| (r == run).then_some(*v))
    }

    /// The run of the current version.
    pub fn current_run(&self) -> Option<&str> {
        self.runs.get(&self.version).map(String::as_str)
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

/// Reads and replays the table's log; `Ok(None)` when there is no table yet.
pub async fn read_state(location: &Location, table: &str) -> Result<Option<TableState>> {
    let log_dir = format!("{table}/_delta_log");
    let objects: Vec<String> = location
        .store
        .list(Some(&location.path(&log_dir)))
        .map_ok(|meta| meta.location.filename().unwrap_or_default().to_string())
        .try_collect()
        .await
        .map_err(|source| Error::store(&location.url, &log_dir, source))?;
    let mut versions: Vec<u64> = objects
        .iter()
        .filter_map(|name| name.strip_suffix(".json")?.parse().ok())
        .collect();
    versions.sort_unstable();
    if versions.is_empty() {
        if objects.is_empty() {
            return Ok(None);
        }
        return Err(corrupt(
            location,
            &log_dir,
            "holds no JSON commits (a checkpoint-only log is not one scanjob wrote)",
        ));
    }
    if let Some(gap) = versions.iter().enumerate().find(|(i, v)| *i as u64 != **v) {
        return Err(corrupt(
            location,
            &log_dir,
            format!(
                "version {} is missing; the log must run from version 0 without gaps",
                gap.0
            ),
        ));
    }
    let last = *versions.last().expect("not empty");
    let mut table_meta: Option<(String, String)> = None;
    let mut files = BTreeSet::new();
    let mut runs = BTreeMap::new();
    let (mut timestamps_enabled, mut in_commit_timestamp) = (false, None);
    for version in versions {
        let relative = log_entry_path(table, version);
        let (mut adds, mut removes, mut said) = (0u64, 0u64, None);
        let bytes = location
            .store
            .get(&location.path(&relative))
            .await
            .map_err(|source| Error::store(&location.url, &relative, source))?
            .bytes()
            .await
            .map_err(|source| Error::store(&location.url, &relative, source))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| corrupt(location, &relative, "is not UTF-8"))?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let action: Value = serde_json::from_str(line).map_err(|e| {
                corrupt(
                    location,
                    &relative,
                    format!("line {}: not JSON: {e}", n + 1),
                )
            })?;
            let bad = |what: &str| corrupt(location, &relative, format!("line {}: {what}", n + 1));
            if let Some(meta) = action.get("metaData") {
                if meta["configuration"][TABLE_PROPERTY].as_str() != Some(table) {
                    return Err(foreign(location, table));
                }
                let id = meta["id"]
                    .as_str()
                    .ok_or_else(|| bad("metaData has no id"))?;
                let schema = meta["schemaString"]
                    .as_str()
                    .ok_or_else(|| bad("metaData has no schemaString"))?;
                table_meta = Some((id.to_string(), schema.to_string()));
                timestamps_enabled =
                    meta["configuration"][IN_COMMIT_TIMESTAMPS].as_str() == Some("true");
            } else if let Some(add) = action.get("add") {
                let path = add["path"].as_str().ok_or_else(|| bad("add has no path"))?;
                files.insert(path.to_string());
                adds += 1;
            } else if let Some(remove) = action.get("remove") {
                let path = remove["path"]
                    .as_str()
                    .ok_or_else(|| bad("remove has no path"))?;
                files.remove(path);
                removes += 1;
            } else if let Some(info) = action.get("commitInfo") {
                in_commit_timestamp = info["inCommitTimestamp"].as_i64();
                let run = info["scanjob.run"].as_str();
                let counts = (
                    info["scanjob.adds"].as_u64(),
                    info["scanjob.removes"].as_u64(),
                );
                if let (Some(run), (Some(a), Some(r))) = (run, counts) {
                    runs.insert(version, run.to_string());
                    said = Some((a, r));
                }
            }
        }
        // Every commit scanjob writes says how many files it adds and removes: an entry cut
        // short at a line, or edited, does not add up.
        match said {
            None => {
                return Err(corrupt(
                    location,
                    &relative,
                    "has no commitInfo naming its run and its adds and removes",
                ));
            }
            Some(said) if said != (adds, removes) => {
                return Err(corrupt(
                    location,
                    &relative,
                    format!(
                        "holds {adds} adds and {removes} removes where its commitInfo says {} \
                         and {}",
                        said.0, said.1
                    ),
                ));
            }
            Some(_) => {}
        }
        if table_meta.is_none() {
            return Err(foreign(location, table));
        }
    }
    let (id, schema_string) = table_meta.expect("checked for every version");
    Ok(Some(TableState {
        version: last,
        id,
        schema_string,
        files,
        runs,
        in_commit_timestamp: in_commit_timestamp.filter(|_| timestamps_enabled),
    }))
}

fn foreign(location: &Location, table: &str) -> Error {
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

/// One night as a table commits it.
pub struct Night<'a> {
    pub run: &'a str,
    /// The scan's time, recorded in the commit.
    pub scan_time: chrono::DateTime<chrono::Utc>,
    /// Relative to the output location, all inside the table's directory.
    pub files: &'a [PartFile],
    /// Add `files` and remove none (else the version before's files are all removed).
    pub append: bool,
    /// When the night is committed (milliseconds since the epoch): the same for every table
    /// of the night. The commit's in-commit timestamp is this, or one millisecond after the
    /// version before's when that is later (they must increase).
    pub committed_at: i64,
}

/// Commits one night: a version that adds its files and, unless it appends, removes every
/// file of the version before. `schema` is the files' schema (`None`: as the table's, for a
/// night with no files). `previous` is the state read before the night was derived; when
/// another writer committed since, the put-if-absent fails and nothing of the night is
/// committed. Returns the new version.
pub async fn commit_night(
    location: &Location,
    table: &str,
    previous: Option<&TableState>,
    schema: Option<&Schema>,
    night: Night<'_>,
) -> Result<u64> {
    let Night {
        run,
        scan_time,
        files,
        append,
        committed_at,
    } = night;
    let previous_timestamp = previous.and_then(|p| p.in_commit_timestamp);
    let now = previous_timestamp.map_or(committed_at, |t| committed_at.max(t + 1));
    let version = previous.map_or(0, |p| p.version + 1);
    // Each file with its path relative to the table, as the log names it.
    let prefix = format!("{table}/");
    let mut added: Vec<(&str, &PartFile)> = Vec::with_capacity(files.len());
    for file in files {
        let path = file.path.strip_prefix(&prefix).ok_or_else(|| {
            corrupt(
                location,
                &file.path,
                format!("is outside the table {table}/ and cannot be added to it"),
            )
        })?;
        added.push((path, file));
    }
    let schema_string = match (schema, previous) {
        (Some(schema), _) => schema_string(schema),
        (None, Some(p)) => p.schema_string.clone(),
        (None, None) => {
            return Err(corrupt(
                location,
                table,
                "a table cannot start without a schema",
            ));
        }
    };
    let kept: BTreeSet<&str> = added.iter().map(|(path, _)| *path).collect();
    let removed: Vec<&String> = previous
        .iter()
        .flat_map(|p| &p.files)
        .filter(|path| !append && !kept.contains(path.as_str()))
        .collect();
    let new_files: Vec<(&str, &PartFile)> = added
        .into_iter()
        .filter(|(path, _)| !previous.is_some_and(|p| p.files.contains(*path)))
        .collect();
    // In-commit timestamps require commitInfo to be the first action.
    let mut actions = vec![json!({"commitInfo": {
        "inCommitTimestamp": now,
        "timestamp": now,
        "operation": "WRITE",
        "operationParameters": {"mode": if append { "Append" } else { "Overwrite" }},
        "isBlindAppend": append,
        "engineInfo": ENGINE,
        "scanjob.run": run,
        "scanjob.scanTime": scan_time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "scanjob.adds": new_files.len(),
        "scanjob.removes": removed.len(),
    }})];
    // A table started before in-commit timestamps gets them from this version on.
    let enable_timestamps = previous_timestamp.is_none();
    if enable_timestamps {
        actions.push(json!({"protocol": {
            "minReaderVersion": 1,
            "minWriterVersion": 7,
            "writerFeatures": ["inCommitTimestamp", "invariants"],
        }}));
    }
    if enable_timestamps || previous.is_none_or(|p| p.schema_string != schema_string) {
        let id = previous.map_or_else(|| uuid::Uuid::new_v4().to_string(), |p| p.id.clone());
        let mut configuration = json!({
            TABLE_PROPERTY: table,
            IN_COMMIT_TIMESTAMPS: "true",
            // scanjob removes a night's files itself, when retention drops the night;
            // another engine's VACUUM or log cleanup with Delta's defaults (7 days, 30
            // days) must not remove a night that retention keeps.
            "delta.deletedFileRetentionDuration": RETAIN_FOREVER,
            "delta.logRetentionDuration": RETAIN_FOREVER,
        });
        if version > 0 && enable_timestamps {
            configuration["delta.inCommitTimestampEnablementVersion"] = json!(version.to_string());
            configuration["delta.inCommitTimestampEnablementTimestamp"] = json!(now.to_string());
        }
        actions.push(json!({"metaData": {
            "id": id,
            "name": table,
            "format": {"provider": "parquet", "options": {}},
            "schemaString": schema_string,
            "partitionColumns": [],
            "configuration": configuration,
            "createdTime": now,
        }}));
    }
    for path in removed {
        actions.push(json!({"remove": {
            "path": path,
            "deletionTimestamp": now,
            "dataChange": true,
        }}));
    }
    for (path, file) in new_files {
        actions.push(json!({"add": {
            "path": path,
            "partitionValues": {},
            "size": file.bytes,
            "modificationTime": now,
            "dataChange": true,
            "stats": json!({"numRecords": file.rows}).to_string(),
        }}));
    }
    let mut body = Vec::new();
    for action in &actions {
        body.extend(serde_json::to_vec(action).expect("serialisable"));
        body.push(b'\n');
    }
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
        Ok(_) => Ok(version),
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => Err(Error::Contended {
            what: format!("{}/{relative}", location.url),
            reason: format!(
                "another writer committed version {version} of the table first; nothing of \
                     run {run} is committed, and a retry of this merge commits it after that \
                     version"
            ),
        }),
        Err(source) => Err(Error::store(&location.url, &relative, source)),
    }
}
