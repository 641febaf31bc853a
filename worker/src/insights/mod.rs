//! What the table of contents tells, derived by `merge` for every snapshot: history, diffs,
//! rollups, duplicates, the atime check, and the numbers of the report (`crate::report`).
//! It reads the run's and the previous snapshot's rows and writes each table's night under
//! `<table>/<run>/` (the ToC under `toc/<run>/merged/`); the merge commits each as a version of
//! that Delta table (`crate::store::delta`). Every column has a Delta Lake type.
//!
//! Tables (listed in the manifest's `derived` map by these names):
//!
//! ```text
//! toc/<run>/merged/…                  the ToC with first_seen carried (when a previous snapshot exists)
//! diff_{added,removed,changed}/<run>/…   against the previous snapshot
//! growth/<run>/…                      files and bytes per uid and project, before and now
//! rollup_by_{extension,uid,gid,project,directory}/<run>/…
//! rollup_age/<run>/…                  mtime/atime age buckets per uid and project
//! duplicate_{files,trees}/<run>/…    duplicate files with their stage: candidate, sampled, confirmed
//! file_hashes/<run>/…                 content hashes (`crate::hash`) of files unchanged since read
//! trends/<run>/…                      the night's totals per key, appended to every night's
//! snapshots/<run>/summary.json        the report's numbers
//! snapshots/<run>/report.html         self-contained report
//! ```
//!
//! The big operations (the first_seen join, the diff, every group-by over the rows) run in
//! DataFusion ([`engine`]) over the Parquet files in the object store, with a bounded memory
//! pool; the first_seen join and the diff run in passes over path hashes when one build side
//! would not fit half of it. What the merge holds itself is bounded by the number of
//! directories (the tree of recursive totals and signatures), of distinct (uid, gid, project,
//! age bucket) groups (`owner_groups`), and of changed rows (the diff's `delta`).

pub mod history;
pub mod rollup;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tracing::info;

use crate::duplicates;
use crate::engine::columns::{i64s, strings, u64s};
use crate::engine::{AGE_BUCKETS, Engine, EngineOptions, age_bucket_udf, carried_udf};
use crate::error::{Error, Result};
use crate::report::owners::OwnerNames;
use crate::schema::TOC_SCHEMA;
use crate::store::Location;
use crate::store::layout::{
    EntryCounts, SnapshotManifest, TRENDS_TABLE, derived_dir, toc_merged_dir,
};
use crate::store::writer::{PartFile, rows_of};
use crate::summary;
use crate::summary::{
    AtimeCheck, Bucket, DiffCounts, Group, Growth, GrowthRow, Night, Summary, Top, Totals,
    TreeGroup, listed,
};

/// Settings of the derived tables.
#[derive(Debug, Clone)]
pub struct InsightOptions {
    /// Directories down to this depth get a row in `rollup_by_directory`.
    pub rollup_depth: u32,
    /// Smallest file (and directory tree) considered as a duplicate candidate.
    pub duplicate_min_size: u64,
    pub engine: EngineOptions,
    /// User and group names the report shows beside the ids.
    pub owner_names: OwnerNames,
}

impl Default for InsightOptions {
    fn default() -> Self {
        Self {
            rollup_depth: 3,
            duplicate_min_size: 1 << 20,
            engine: EngineOptions::default(),
            owner_names: OwnerNames::default(),
        }
    }
}

/// What this run's merge starts from.
pub struct Inputs<'a> {
    pub run: &'a str,
    pub root: &'a str,
    pub project_level: usize,
    pub created: chrono::DateTime<chrono::Utc>,
    /// The scan's time (the plan's): `last_seen` of the night's rows, and its trends rows' time.
    pub scanned: chrono::DateTime<chrono::Utc>,
    /// The `trends` table's files so far (relative to the output location): the earlier
    /// nights' totals, for the report's growth over every night.
    pub trends_files: Vec<String>,
    pub counts: &'a EntryCounts,
    /// This run's ToC parts (from its shards).
    pub toc_files: Vec<PartFile>,
    pub missing_shards: Vec<u32>,
    /// The previous snapshot, already checked to be readable.
    pub previous: Option<&'a SnapshotManifest>,
    /// Whether a previous snapshot's row belongs to one of `missing_shards`.
    pub carried: Option<crate::engine::PathPredicate>,
    /// The hash step's files of tonight (`crate::hash`) and its totals over all partitions;
    /// empty and `None` when it did not run.
    pub hash_files: Vec<PartFile>,
    pub hashing: Option<summary::HashTotals>,
    /// The first_seen join and the diff's join, already done by every join partition
    /// (`scanjob join`, [`crate::join`]); `None`: this merge does them.
    pub joined: Option<Joined>,
}

/// What the join partitions wrote, together.
#[derive(Debug, Clone, Default)]
pub struct Joined {
    /// The snapshot's ToC (first_seen carried, and the missing shards' rows).
    pub toc_files: Vec<PartFile>,
    /// The rows of the diff's `delta` table.
    pub delta_files: Vec<PartFile>,
}

/// What the merge records in the manifest.
pub struct Outcome {
    pub toc_files: Vec<PartFile>,
    pub derived: BTreeMap<String, Vec<PartFile>>,
    /// Rows copied from the previous snapshot for the missing shards.
    pub carried_rows: u64,
    pub summary: Summary,
}

/// Derives every table of the snapshot and its summary, in four steps: the history against
/// the previous snapshot (first_seen, diff, growth), the rollups, the duplicates, and the
/// summary of all of them.
pub async fn derive(
    location: &Location,
    inputs: Inputs<'_>,
    options: &InsightOptions,
) -> Result<Outcome> {
    let started = Instant::now();
    let engine = open_engine(location, &inputs, options).await?;
    let mut derived = BTreeMap::new();
    let history = history(&engine, &inputs, &mut derived).await?;
    info!(
        run = inputs.run,
        seconds = started.elapsed().as_secs_f64(),
        "history done"
    );
    let rollups = rollups(&engine, inputs.run, options, &mut derived, started).await?;
    let duplicates = duplicates::derive(
        &engine,
        location,
        duplicates::Night {
            run: inputs.run,
            previous: inputs.previous,
            hash_files: &inputs.hash_files,
            hashing: inputs.hashing.clone(),
            min_size: options.duplicate_min_size,
            trees: &rollups.trees,
        },
        &mut derived,
    )
    .await?;
    let c = inputs.counts;
    let mut summary = Summary {
        run: inputs.run.to_string(),
        root: inputs.root.to_string(),
        created: inputs.created,
        missing_shards: inputs.missing_shards.clone(),
        carried_forward_from: history.carried_from,
        project_level: inputs.project_level,
        totals: totals_of(&engine, c).await?,
        by_extension: listed(&rollups.groups["by_extension"]),
        by_project: listed(&rollups.groups["by_project"]),
        top_directories: Top::of(&rollups.directories),
        top_extensions: Top::of(&rollups.groups["by_extension"]),
        top_owners: Top::of(&rollups.groups["by_uid"]),
        top_projects: Top::of(&rollups.groups["by_project"]),
        age: age_totals(&rollups.age_rows),
        atime: rollups.atime,
        growth: history.growth,
        duplicates,
        nights: Vec::new(),
        top_groups: Top::of(&rollups.groups["by_gid"]),
        tree: rollups.treemap,
        uid_names: BTreeMap::new(),
        gid_names: BTreeMap::new(),
    };
    summary.name_owners(&options.owner_names);
    let trends = trends_batch(inputs.run, inputs.scanned, &summary, &rollups.groups)?;
    summary.nights = nights(&engine, &inputs, &summary).await?;
    derived.insert(
        TRENDS_TABLE.into(),
        write_batches(&engine, &[trends], &derived_dir(TRENDS_TABLE, inputs.run)).await?,
    );
    let (spill_files, spilled_bytes) = engine.spilled();
    info!(
        run = inputs.run,
        seconds = started.elapsed().as_secs_f64(),
        spill_files,
        spilled_bytes,
        spill_dir = %std::env::temp_dir().display(),
        "insights done"
    );
    Ok(Outcome {
        toc_files: history.toc_files,
        derived,
        carried_rows: history.carried_rows,
        summary,
    })
}

/// A query engine with a memory pool (and join passes) sized for the bigger of this run and
/// the previous snapshot, its functions, and this run's rows registered as `cur`.
pub async fn open_engine(
    location: &Location,
    inputs: &Inputs<'_>,
    options: &InsightOptions,
) -> Result<Engine> {
    let largest =
        rows_of(&inputs.toc_files).max(inputs.previous.map_or(0, |p| rows_of(&p.toc_files)));
    let engine_options = options.engine.clone().passes_for(largest);
    info!(
        rows = largest,
        memory_pool = engine_options.memory_limit_bytes,
        join_passes = engine_options.join_passes,
        "query memory pool; the big joins run in passes when one side would not fit half of it"
    );
    let engine = Engine::new(location, &engine_options)?;
    register_night_udfs(&engine, inputs);
    engine
        .register_files("cur", &inputs.toc_files, &TOC_SCHEMA)
        .await?;
    Ok(engine)
}

/// The functions whose answer depends on the night: its age buckets and carried paths.
fn register_night_udfs(engine: &Engine, inputs: &Inputs<'_>) {
    let now_ns = inputs.created.timestamp_nanos_opt().unwrap_or(i64::MAX);
    engine.ctx.register_udf(age_bucket_udf(now_ns));
    let carried = inputs
        .carried
        .clone()
        .unwrap_or_else(|| Arc::new(|_: &[u8]| false));
    engine.ctx.register_udf(carried_udf(carried));
}

/// What the history step made.
struct History {
    /// The snapshot's ToC: rewritten with first_seen carried when there is a previous
    /// snapshot, else this run's parts as they are.
    toc_files: Vec<PartFile>,
    carried_rows: u64,
    carried_from: Option<String>,
    growth: Option<Growth>,
}

/// With a previous snapshot: the ToC with first_seen carried (and the missing shards' rows),
/// the diff and the growth tables. Either way, registers the snapshot's ToC as `toc` and its
/// owner groups.
async fn history(
    engine: &Engine,
    inputs: &Inputs<'_>,
    derived: &mut BTreeMap<String, Vec<PartFile>>,
) -> Result<History> {
    let started = Instant::now();
    let Some(previous) = inputs.previous else {
        engine
            .register_files("toc", &inputs.toc_files, &TOC_SCHEMA)
            .await?;
        group_owners(engine).await?;
        empty_history_tables(engine, inputs, derived).await?;
        return Ok(History {
            toc_files: inputs.toc_files.clone(),
            carried_rows: 0,
            carried_from: None,
            growth: None,
        });
    };
    let carry = inputs.carried.is_some();
    engine
        .register_files("prev", &previous.toc_files, &TOC_SCHEMA)
        .await?;
    let files = match &inputs.joined {
        Some(joined) => joined.toc_files.clone(),
        None => {
            engine.split_passes().await?;
            history::write_toc(engine, &toc_merged_dir(inputs.run), carry).await?
        }
    };
    let carried_rows = rows_of(&files).saturating_sub(rows_of(&inputs.toc_files));
    engine.register_files("toc", &files, &TOC_SCHEMA).await?;
    group_owners(engine).await?;
    info!(
        seconds = started.elapsed().as_secs_f64(),
        "first_seen joined"
    );
    if let Some(joined) = &inputs.joined {
        let schema = crate::store::parquet_schema(&engine.location, &joined.delta_files[0]).await?;
        engine
            .register_files("delta", &joined.delta_files, &schema)
            .await?;
    }
    let (diff, growth_rows) =
        diff_and_growth(engine, inputs.run, derived, inputs.joined.is_none()).await?;
    info!(
        seconds = started.elapsed().as_secs_f64(),
        "diff and growth done"
    );
    Ok(History {
        toc_files: files,
        carried_rows,
        carried_from: carry.then(|| previous.run.clone()),
        growth: Some(growth_summary(previous, &growth_rows, diff)),
    })
}

/// The diff tables and the growth table of `run`, between the engine's `prev` and `cur` (and
/// their owner groups); returns the diff's counts and the growth rows. Without `join`, the
/// diff's `delta` table is already registered (from the join partitions).
async fn diff_and_growth(
    engine: &Engine,
    run: &str,
    derived: &mut BTreeMap<String, Vec<PartFile>>,
    join: bool,
) -> Result<(DiffCounts, Vec<arrow_array::RecordBatch>)> {
    let dir_of = |t: &str| derived_dir(&format!("diff_{t}"), run);
    let (tables, diff) = if join {
        history::write_diff(engine, dir_of).await?
    } else {
        history::finish_diff(engine, dir_of).await?
    };
    for (name, files) in tables {
        derived.insert(format!("diff_{name}"), files);
    }
    engine
        .materialize(
            "prev_groups",
            "grouping the previous snapshot's owners",
            history::PREV_GROUPS_QUERY,
        )
        .await?;
    let growth_rows = engine
        .collect("computing growth", history::GROWTH_QUERY)
        .await?;
    derived.insert(
        "growth".into(),
        write_batches(engine, &growth_rows, &derived_dir("growth", run)).await?,
    );
    Ok((diff, growth_rows))
}

/// A first night has nothing to diff against, and its diff and growth tables start with no
/// rows: written by the same queries over two empty snapshots, so that they have their schemas
/// and every table of the output starts on the same night (version N of each is one night).
async fn empty_history_tables(
    engine: &Engine,
    inputs: &Inputs<'_>,
    derived: &mut BTreeMap<String, Vec<PartFile>>,
) -> Result<()> {
    let empty = Engine::new(
        &engine.location,
        &EngineOptions {
            memory_limit_bytes: 64 << 20,
            target_partitions: 1,
            ..EngineOptions::default()
        },
    )?;
    register_night_udfs(&empty, inputs);
    for name in ["cur", "prev", "toc"] {
        empty.register_files(name, &[], &TOC_SCHEMA).await?;
    }
    group_owners(&empty).await?;
    diff_and_growth(&empty, inputs.run, derived, true).await?;
    Ok(())
}

/// What the rollup step made, for the summary.
struct Rollups {
    groups: BTreeMap<&'static str, Vec<Group>>,
    age_rows: Vec<arrow_array::RecordBatch>,
    atime: AtimeCheck,
    /// Directories with files directly in them: files and bytes of those files.
    directories: Vec<Group>,
    /// The biggest directories with recursive totals, for the report's treemap.
    treemap: Vec<summary::TreeNode>,
    trees: Vec<TreeGroup>,
}

/// The rollups by extension, owner, group and project, the age histograms, the atime check,
/// the recursive totals per directory and the duplicate trees found from them.
async fn rollups(
    engine: &Engine,
    run: &str,
    options: &InsightOptions,
    derived: &mut BTreeMap<String, Vec<PartFile>>,
    started: Instant,
) -> Result<Rollups> {
    let mut groups: BTreeMap<&str, Vec<Group>> = BTreeMap::new();
    for (name, query) in rollup::rollup_queries() {
        let batches = engine.collect(&format!("rollup {name}"), &query).await?;
        let key_column = name.trim_start_matches("by_");
        let keys = strings(&batches, key_column);
        let files = u64s(&batches, "files");
        let bytes = u64s(&batches, "bytes");
        groups.insert(
            name,
            keys.into_iter()
                .zip(files.into_iter().zip(bytes))
                .map(|(key, (files, bytes))| Group {
                    key: key.unwrap_or_default(),
                    files,
                    bytes,
                })
                .collect(),
        );
        let dir = derived_dir(&format!("rollup_{name}"), run);
        derived.insert(
            format!("rollup_{name}"),
            write_batches(engine, &batches, &dir).await?,
        );
    }
    let age_rows = engine
        .collect("age histograms", &rollup::age_query())
        .await?;
    derived.insert(
        "rollup_age".into(),
        write_batches(engine, &age_rows, &derived_dir("rollup_age", run)).await?,
    );
    let atime = rollup::atime_check(engine).await?;
    info!(
        seconds = started.elapsed().as_secs_f64(),
        "age and atime done"
    );
    let tree = rollup::directory_tree(engine).await?;
    info!(
        seconds = started.elapsed().as_secs_f64(),
        dirs = tree.len(),
        "directory tree done"
    );
    let batch = rollup::directory_batch(&tree, options.rollup_depth)?;
    let dir = derived_dir("rollup_by_directory", run);
    derived.insert(
        "rollup_by_directory".into(),
        write_batches(engine, &[batch], &dir).await?,
    );
    let directories: Vec<Group> = tree
        .iter()
        .filter(|(_, n)| n.files_direct > 0)
        .map(|(p, n)| Group {
            key: String::from_utf8_lossy(p).into_owned(),
            files: n.files_direct,
            bytes: n.bytes_direct,
        })
        .collect();
    let treemap = rollup::treemap_nodes(
        &tree,
        options.rollup_depth.min(summary::TREEMAP_DEPTH),
        summary::TREEMAP_NODES,
    );
    let trees = rollup::duplicate_trees(engine, &tree, options.duplicate_min_size).await?;
    drop(tree);
    let batch = rollup::duplicate_trees_batch(&trees)?;
    let dir = derived_dir("duplicate_trees", run);
    derived.insert(
        "duplicate_trees".into(),
        write_batches(engine, &[batch], &dir).await?,
    );
    info!(
        seconds = started.elapsed().as_secs_f64(),
        "duplicate trees done"
    );
    Ok(Rollups {
        groups,
        age_rows,
        atime,
        directories,
        treemap,
        trees,
    })
}

/// Registers `owner_groups` ([`rollup::OWNER_GROUPS_QUERY`]) over the registered `toc`.
async fn group_owners(engine: &Engine) -> Result<()> {
    engine
        .materialize(
            "owner_groups",
            "grouping files by owner, project and age",
            rollup::OWNER_GROUPS_QUERY,
        )
        .await
}

/// Totals of the snapshot's rows (carried rows included); errors from this run's shards.
async fn totals_of(engine: &Engine, counts: &EntryCounts) -> Result<Totals> {
    let rows = engine
        .collect(
            "totalling kinds",
            "SELECT CAST(kind AS VARCHAR) AS kind, count(*) AS entries, \
                    CAST(sum(size) AS BIGINT) AS bytes FROM toc GROUP BY kind",
        )
        .await?;
    let mut totals = Totals {
        errors: counts.errors,
        ..Totals::default()
    };
    let entries = u64s(&rows, "entries");
    let bytes = u64s(&rows, "bytes");
    for (i, kind) in strings(&rows, "kind").into_iter().enumerate() {
        match kind.as_deref() {
            Some("file") => {
                totals.files += entries[i];
                totals.bytes += bytes[i];
            }
            Some("dir") => totals.directories += entries[i],
            Some("symlink") => totals.symlinks += entries[i],
            _ => totals.other_kinds += entries[i],
        }
    }
    Ok(totals)
}

fn age_totals(rows: &[arrow_array::RecordBatch]) -> BTreeMap<String, Vec<Bucket>> {
    let dims = strings(rows, "dimension");
    let times = strings(rows, "time");
    let buckets = strings(rows, "bucket");
    let files = u64s(rows, "files");
    let bytes = u64s(rows, "bytes");
    let mut out = BTreeMap::new();
    for time in ["mtime", "atime"] {
        let mut totals: Vec<Bucket> = AGE_BUCKETS
            .iter()
            .map(|b| Bucket {
                bucket: b.to_string(),
                files: 0,
                bytes: 0,
            })
            .collect();
        for i in 0..dims.len() {
            // Every file has exactly one uid row per time kind.
            if dims[i].as_deref() != Some("uid") || times[i].as_deref() != Some(time) {
                continue;
            }
            if let Some(t) = totals
                .iter_mut()
                .find(|t| Some(t.bucket.as_str()) == buckets[i].as_deref())
            {
                t.files += files[i];
                t.bytes += bytes[i];
            }
        }
        totals.retain(|t| t.files > 0 || !matches!(t.bucket.as_str(), "future" | "unknown"));
        out.insert(time.to_string(), totals);
    }
    out
}

fn growth_summary(
    previous: &SnapshotManifest,
    rows: &[arrow_array::RecordBatch],
    diff: DiffCounts,
) -> Growth {
    let dims = strings(rows, "dimension");
    let keys = strings(rows, "key");
    let fb = u64s(rows, "files_before");
    let bb = u64s(rows, "bytes_before");
    let fnow = u64s(rows, "files_now");
    let bnow = u64s(rows, "bytes_now");
    let delta = i64s(rows, "bytes_delta");
    let mut owners = Vec::new();
    let mut projects = Vec::new();
    let (mut files_before, mut bytes_before) = (0, 0);
    for i in 0..dims.len() {
        let row = GrowthRow {
            key: keys[i].clone().unwrap_or_default(),
            files_before: fb[i],
            bytes_before: bb[i],
            files_now: fnow[i],
            bytes_now: bnow[i],
            bytes_delta: delta[i].unwrap_or(0),
        };
        match dims[i].as_deref() {
            Some("uid") => {
                files_before += row.files_before;
                bytes_before += row.bytes_before;
                owners.push(row);
            }
            Some("project") => projects.push(row),
            _ => {}
        }
    }
    let rank = |rows: &mut Vec<GrowthRow>| {
        rows.retain(|r| r.bytes_delta != 0 || r.files_now != r.files_before);
        rows.sort_by(|a, b| {
            b.bytes_delta
                .abs()
                .cmp(&a.bytes_delta.abs())
                .then_with(|| a.key.cmp(&b.key))
        });
        rows.truncate(summary::TOP);
    };
    rank(&mut owners);
    rank(&mut projects);
    Growth {
        previous_run: previous.run.clone(),
        files_before,
        bytes_before,
        diff,
        owners,
        projects,
    }
}

async fn write_batches(
    engine: &Engine,
    batches: &[arrow_array::RecordBatch],
    dir: &str,
) -> Result<Vec<PartFile>> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    // Written with the types Delta Lake has: each derived table is a Delta table.
    let schema = crate::store::delta::delta_schema(&first.schema());
    let mut writer = crate::store::writer::RollingWriter::new(
        engine.location.clone(),
        dir.to_string(),
        "part",
        Arc::clone(&schema),
        usize::MAX,
    );
    for batch in batches {
        let batch =
            crate::store::delta::conform(batch, &schema).map_err(|source| Error::Parquet {
                path: dir.to_string(),
                source: source.into(),
            })?;
        writer.write(&batch).await?;
    }
    writer.close().await
}

/// Every night's totals, from the trends table's earlier nights and this one, oldest first
/// (a night merged again replaces its earlier row).
async fn nights(engine: &Engine, inputs: &Inputs<'_>, summary: &Summary) -> Result<Vec<Night>> {
    let mut nights = Vec::new();
    if !inputs.trends_files.is_empty() {
        engine
            .register_paths("trends", &inputs.trends_files)
            .await?;
        let rows = engine
            .collect(
                "reading the earlier nights' totals",
                "SELECT run, CAST(scan_time AS VARCHAR) AS scan_time, files, bytes FROM trends \
                 WHERE dimension = 'total' ORDER BY scan_time, run",
            )
            .await?;
        let (runs, times) = (strings(&rows, "run"), strings(&rows, "scan_time"));
        let (files, bytes) = (u64s(&rows, "files"), u64s(&rows, "bytes"));
        for i in 0..runs.len() {
            let run = runs[i].clone().unwrap_or_default();
            if run != inputs.run {
                nights.push(Night {
                    run,
                    scan_time: times[i].clone().unwrap_or_default(),
                    files: files[i],
                    bytes: bytes[i],
                });
            }
        }
    }
    nights.push(Night {
        run: inputs.run.to_string(),
        scan_time: inputs.scanned.to_rfc3339(),
        files: summary.totals.files,
        bytes: summary.totals.bytes,
    });
    Ok(nights)
}

/// The night's rows of the `trends` table: files and bytes in total and per extension, uid,
/// gid, project and age bucket (of mtime and of atime), each with the scan's time and run, so
/// that a query over every night's rows is a trend.
fn trends_batch(
    run: &str,
    scanned: chrono::DateTime<chrono::Utc>,
    summary: &Summary,
    groups: &BTreeMap<&'static str, Vec<Group>>,
) -> Result<arrow_array::RecordBatch> {
    use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    let mut rows: Vec<(String, String, u64, u64)> = vec![(
        "total".into(),
        String::new(),
        summary.totals.files,
        summary.totals.bytes,
    )];
    for (dimension, name) in [
        ("extension", "by_extension"),
        ("uid", "by_uid"),
        ("gid", "by_gid"),
        ("project", "by_project"),
    ] {
        for g in groups.get(name).into_iter().flatten() {
            rows.push((dimension.into(), g.key.clone(), g.files, g.bytes));
        }
    }
    for (time, buckets) in &summary.age {
        for b in buckets {
            rows.push((format!("age_{time}"), b.bucket.clone(), b.files, b.bytes));
        }
    }
    let at = scanned.timestamp_micros();
    let (mut time, mut runs, mut dims, mut keys) = (
        TimestampMicrosecondBuilder::new().with_timezone("UTC"),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut files, mut bytes) = (Int64Builder::new(), Int64Builder::new());
    for (dimension, key, f, b) in &rows {
        time.append_value(at);
        runs.append_value(run);
        dims.append_value(dimension);
        keys.append_value(key);
        files.append_value(i64::try_from(*f).unwrap_or(i64::MAX));
        bytes.append_value(i64::try_from(*b).unwrap_or(i64::MAX));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "scan_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("run", DataType::Utf8, false),
        Field::new("dimension", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("files", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
    ]));
    let columns: Vec<arrow_array::ArrayRef> = vec![
        Arc::new(time.finish()),
        Arc::new(runs.finish()),
        Arc::new(dims.finish()),
        Arc::new(keys.finish()),
        Arc::new(files.finish()),
        Arc::new(bytes.finish()),
    ];
    arrow_array::RecordBatch::try_new(schema, columns).map_err(|e| Error::Parquet {
        path: derived_dir(TRENDS_TABLE, run),
        source: e.into(),
    })
}
