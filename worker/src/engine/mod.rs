//! The query engine the join, the merge and the hash step run their big operations on: a
//! DataFusion session over the Parquet files of the output location, with a bounded memory pool
//! that spills to local disk, plus the few scalar functions SQL lacks for byte paths
//! ([`columns`] reads a result back into plain values).

pub mod columns;

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Int64Builder, StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionConfig, SessionContext};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::pathbytes::{name_of, parent_of};
use crate::store::Location;
use crate::store::layout::table_subdir;
use crate::store::writer::{PartFile, RollingWriter};

/// The URL under which the output location's store is registered with the session.
const STORE_URL: &str = "scanjob://output";

/// Derived tables are small next to the ToC; parts roll over at this size like shard parts.
const PART_BYTES: usize = 128 << 20;

/// Settings of the session.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Memory the query operators may hold before they spill (sorts, aggregates) or fail
    /// (a hash join's build side cannot spill).
    pub memory_limit_bytes: usize,
    /// Partitions of each scan and operator: the merge pod's cores.
    pub target_partitions: usize,
    /// The big joins (first_seen, the diff) run in this many passes, each over one range of
    /// paths ([`Engine::split_passes`]), so that one pass's build side fits half the memory
    /// limit. [`EngineOptions::passes_for`] sets it from the row count.
    pub join_passes: u32,
    /// The rows the passes were sized for (the larger of the two snapshots).
    pub rows: u64,
    /// Rows per join pass; by default as many as half the memory limit holds.
    pub join_pass_rows: Option<u64>,
    /// `(index, count)`: this process runs only the join passes of partition `index` of
    /// `count` (a merge pod of several, `scanjob join`): the passes whose number is `index`
    /// modulo `count`.
    pub partition: Option<(u32, u32)>,
}

/// What one ToC row of a hash join's build side costs, generously (path bytes, hash table).
pub const JOIN_BYTES_PER_ROW: usize = 256;

/// What each sort keeps back for merging its spilled runs: DataFusion's 10 MiB, or an eighth
/// of one partition's share of a smaller pool.
fn sort_spill_reservation(options: &EngineOptions) -> usize {
    const DATAFUSION_DEFAULT: usize = 10 * 1024 * 1024;
    let share = options.memory_limit_bytes / options.target_partitions.max(1);
    DATAFUSION_DEFAULT.min(share / 8)
}

/// The pool without a cgroup memory limit.
pub const DEFAULT_MEMORY_LIMIT: usize = 2 << 30;

impl EngineOptions {
    /// The pool for a process whose cgroup allows `cgroup_limit` bytes: half of it (the rest
    /// is the process itself, Parquet buffers and what the merge holds outside the pool), or
    /// [`DEFAULT_MEMORY_LIMIT`] without a limit.
    pub fn memory_limit_for(cgroup_limit: Option<u64>) -> usize {
        match cgroup_limit {
            Some(limit) => (limit / 2).max(64 << 20) as usize,
            None => DEFAULT_MEMORY_LIMIT,
        }
    }

    /// As many join passes as it takes for `rows` rows' build side to fit half the memory
    /// limit (hash joins cannot spill; DataFusion's sort-merge join over wide rows failed to
    /// spill under tight limits, so the rows are split instead).
    ///
    /// In partition `index` of `count`, each partition's rows (a `count`th) get their own passes:
    /// `count` × as many as one partition needs, numbered so that partition `index` runs those
    /// congruent to it ([`Engine::passes`]).
    pub fn passes_for(mut self, rows: u64) -> Self {
        let budget = self
            .join_pass_rows
            .unwrap_or((self.memory_limit_bytes / 2 / JOIN_BYTES_PER_ROW) as u64)
            .max(1);
        let count = u64::from(self.partition.map_or(1, |(_, count)| count.max(1)));
        let per_partition = rows.div_ceil(count).div_ceil(budget).max(1);
        self.join_passes = (per_partition * count).clamp(1, u32::MAX as u64) as u32;
        self.rows = rows;
        self
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT,
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            join_passes: 1,
            rows: 0,
            join_pass_rows: None,
            partition: None,
        }
    }
}

pub struct Engine {
    pub ctx: SessionContext,
    pub location: Location,
    pub join_passes: u32,
    /// See [`EngineOptions::rows`].
    rows: u64,
    /// See [`EngineOptions::partition`].
    pub partition: Option<(u32, u32)>,
    /// Spill files the queries wrote so far, and their bytes (see [`Engine::spilled`]).
    spill_files: AtomicU64,
    spill_bytes: AtomicU64,
}

impl Engine {
    pub fn new(location: &Location, options: &EngineOptions) -> Result<Self> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(options.memory_limit_bytes)))
            .build_arc()
            .map_err(|e| Error::query("starting the query engine", e))?;
        // Keep Binary/Utf8 as written (no view types), so the ToC's own schema comes back.
        let config = SessionConfig::new()
            .with_target_partitions(options.target_partitions.max(1))
            .set_bool(
                "datafusion.execution.parquet.schema_force_view_types",
                false,
            )
            // Every join is written with its build side first (the narrower one: the previous
            // snapshot's path and first_seen, the repeated keys of duplicates), and a build
            // side that fits half the pool is collected once and probed by every partition,
            // so the wide side streams through without being repartitioned.
            .set_bool("datafusion.optimizer.join_reordering", false)
            // In several passes, decode a pass's other columns only for the rows it keeps.
            .set_bool(
                "datafusion.execution.parquet.pushdown_filters",
                options.join_passes > 1,
            )
            // A sorted write is one sort over the coalesced partitions, not a sort per
            // partition merged at the top: that merge's memory cannot spill, and in a tight
            // pool beside a join's build side it failed instead of spilling.
            .set_bool("datafusion.optimizer.repartition_sorts", false)
            // A sort sets this much aside up front to merge its spilled runs; DataFusion's
            // 10 MiB is more than a partition's share of a small pool, and a sort that cannot
            // set it aside fails instead of spilling.
            .set_usize(
                "datafusion.execution.sort_spill_reservation_bytes",
                sort_spill_reservation(options),
            )
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold",
                options.memory_limit_bytes / 2,
            )
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold_rows",
                options.memory_limit_bytes / 2 / JOIN_BYTES_PER_ROW,
            );
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let url = url::Url::parse(STORE_URL).expect("static URL");
        ctx.register_object_store(&url, Arc::clone(&location.store));
        for udf in [
            parent_udf(),
            entry_hash_udf(),
            inode_key_udf(),
            change_sig_udf(),
            size_part_udf(),
        ] {
            ctx.register_udf(udf);
        }
        Ok(Self {
            ctx,
            location: location.clone(),
            join_passes: options.join_passes.max(1),
            rows: options.rows,
            partition: options.partition,
            spill_files: AtomicU64::new(0),
            spill_bytes: AtomicU64::new(0),
        })
    }

    /// Spill files and bytes written by every query run so far: sorts and aggregates spill to
    /// the local temporary directory (`TMPDIR`, else `/tmp`: a pod's scratch volume) when the
    /// memory pool is full.
    pub fn spilled(&self) -> (u64, u64) {
        (
            self.spill_files.load(Ordering::Relaxed),
            self.spill_bytes.load(Ordering::Relaxed),
        )
    }

    /// Adds what a finished query's operators spilled.
    fn count_spills(&self, plan: &Arc<dyn ExecutionPlan>) {
        fn add(plan: &Arc<dyn ExecutionPlan>, files: &mut usize, bytes: &mut usize) {
            if let Some(metrics) = plan.metrics() {
                *files += metrics.spill_count().unwrap_or(0);
                *bytes += metrics.spilled_bytes().unwrap_or(0);
            }
            for child in plan.children() {
                add(child, files, bytes);
            }
        }
        let (mut files, mut bytes) = (0, 0);
        add(plan, &mut files, &mut bytes);
        self.spill_files.fetch_add(files as u64, Ordering::Relaxed);
        self.spill_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Runs a planned query to the end and returns its rows.
    async fn collect_rows(&self, what: &str, df: DataFrame) -> Result<Vec<RecordBatch>> {
        let plan = df
            .create_physical_plan()
            .await
            .map_err(|e| Error::query(what.to_string(), e))?;
        let batches = datafusion::physical_plan::collect(Arc::clone(&plan), self.ctx.task_ctx())
            .await
            .map_err(|e| Error::query(what.to_string(), e))?;
        self.count_spills(&plan);
        Ok(batches)
    }

    /// The join passes this process runs: all of them, or those of its partition.
    pub fn passes(&self) -> impl Iterator<Item = u32> + use<> {
        let partition = self.partition;
        (0..self.join_passes)
            .filter(move |pass| partition.is_none_or(|(index, count)| pass % count == index))
    }

    /// Cuts the paths of tables `cur` and `prev` into [`Engine::join_passes`] ranges of about
    /// as many rows each, and registers `sj_pass(path)`, the range a path falls in. A pass is
    /// then a contiguous range of paths, so what it writes in path order are files that each
    /// hold a range no other file overlaps, which a reader skips by their statistics.
    ///
    /// The ranges are quantiles of a sample of both tables' paths (those whose hash is 0
    /// modulo a step that leaves about [`SAMPLE_PER_PASS`] a pass): the same in every process
    /// of one merge, since the sample depends on the paths alone. With one pass, nothing.
    pub async fn split_passes(&self) -> Result<()> {
        if self.join_passes <= 1 {
            return Ok(());
        }
        let step = (self.rows / (u64::from(self.join_passes) * SAMPLE_PER_PASS)).max(1);
        self.ctx.register_udf(sample_udf(step));
        let batches = self
            .collect(
                "sampling the paths to cut the join passes",
                "SELECT path FROM cur WHERE sj_sample(path) \
                 UNION ALL SELECT path FROM prev WHERE sj_sample(path)",
            )
            .await?;
        let mut sample = columns::binaries(&batches, "path");
        sample.sort_unstable();
        let passes = self.join_passes as usize;
        let mut bounds: Vec<Vec<u8>> = (1..passes)
            .filter_map(|k| sample.get(k * sample.len() / passes).cloned())
            .collect();
        bounds.dedup();
        tracing::info!(
            sampled = sample.len(),
            ranges = bounds.len() + 1,
            "join passes cut into ranges of paths"
        );
        self.ctx.register_udf(pass_udf(bounds));
        Ok(())
    }

    /// The condition that keeps the rows of join pass `pass` in a table with a `path` column;
    /// always true with a single pass. [`Engine::split_passes`] must have run.
    pub fn pass_filter(&self, pass: u32) -> String {
        if self.join_passes <= 1 {
            "TRUE".to_string()
        } else {
            format!("sj_pass(path) = {pass}")
        }
    }

    fn url_of(&self, relative: &str) -> String {
        format!("{STORE_URL}/{}", self.location.path(relative))
    }

    /// Registers `files` (relative to the output location) as table `name` with `schema`.
    pub async fn register_files(
        &self,
        name: &str,
        files: &[PartFile],
        schema: &SchemaRef,
    ) -> Result<()> {
        let what = || format!("reading table {name}");
        let _ = self.ctx.deregister_table(name);
        if files.is_empty() {
            let empty = MemTable::try_new(Arc::clone(schema), vec![vec![]])
                .map_err(|e| Error::query(what(), e))?;
            self.ctx
                .register_table(name, Arc::new(empty))
                .map_err(|e| Error::query(what(), e))?;
            return Ok(());
        }
        let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        self.register_parquet(name, &paths, Some(schema)).await
    }

    /// Registers the Parquet files at `paths` (relative to the output location, one schema, at
    /// least one) as table `name`, with the schema their footers give.
    pub async fn register_paths(&self, name: &str, paths: &[String]) -> Result<()> {
        self.register_parquet(name, paths, None).await
    }

    /// Registers the Parquet files at `paths` as table `name`, read as `schema` when given.
    async fn register_parquet(
        &self,
        name: &str,
        paths: &[String],
        schema: Option<&SchemaRef>,
    ) -> Result<()> {
        let what = || format!("reading table {name}");
        let _ = self.ctx.deregister_table(name);
        let urls: Vec<String> = paths.iter().map(|p| self.url_of(p)).collect();
        let options = ParquetReadOptions {
            schema: schema.map(|s| s.as_ref()),
            ..Default::default()
        };
        let df = self
            .ctx
            .read_parquet(urls, options)
            .await
            .map_err(|e| Error::query(what(), e))?;
        self.ctx
            .register_table(name, df.into_view())
            .map_err(|e| Error::query(what(), e))?;
        Ok(())
    }

    /// Registers record batches already in memory as table `name`.
    pub fn register_batches(
        &self,
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<()> {
        let what = || format!("registering table {name}");
        let _ = self.ctx.deregister_table(name);
        let table =
            MemTable::try_new(schema, vec![batches]).map_err(|e| Error::query(what(), e))?;
        self.ctx
            .register_table(name, Arc::new(table))
            .map_err(|e| Error::query(what(), e))?;
        Ok(())
    }

    /// Plans `query`; with debug logging on, logs its physical plan.
    pub async fn sql(&self, what: &str, query: &str) -> Result<DataFrame> {
        let df = self
            .ctx
            .sql(query)
            .await
            .map_err(|e| Error::query(what.to_string(), e))?;
        if tracing::enabled!(tracing::Level::DEBUG) {
            let plan = df
                .clone()
                .create_physical_plan()
                .await
                .map_err(|e| Error::query(what.to_string(), e))?;
            let plan = datafusion::physical_plan::displayable(plan.as_ref()).indent(true);
            tracing::debug!(what, "plan:\n{plan}");
        }
        Ok(df)
    }

    /// Runs `query` and registers its rows, held in memory, as table `name` (for small
    /// results that several later queries read).
    pub async fn materialize(&self, name: &str, what: &str, query: &str) -> Result<()> {
        self.materialize_all(name, what, &[query.to_string()]).await
    }

    /// [`Engine::materialize`] for the rows of several queries of one schema, run one after
    /// the other (one per join pass, so that only one pass's build side is held at a time).
    pub async fn materialize_all(&self, name: &str, what: &str, queries: &[String]) -> Result<()> {
        let mut schema = None;
        let mut batches = Vec::new();
        for query in queries {
            let df = self.sql(what, query).await?;
            schema.get_or_insert_with(|| Arc::new(df.schema().as_arrow().clone()));
            batches.extend(self.collect_rows(what, df).await?);
        }
        let schema = schema.ok_or_else(|| {
            Error::query(
                what.to_string(),
                datafusion::error::DataFusionError::Internal("no query".into()),
            )
        })?;
        self.register_batches(name, schema, batches)
    }

    /// Runs `query` and returns every row (for small results): at least one batch, so that a
    /// result with no rows still has its schema.
    pub async fn collect(&self, what: &str, query: &str) -> Result<Vec<RecordBatch>> {
        let started = std::time::Instant::now();
        let df = self.sql(what, query).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let mut batches = self.collect_rows(what, df).await?;
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema));
        }
        tracing::debug!(what, seconds = started.elapsed().as_secs_f64(), "collected");
        Ok(batches)
    }

    /// Runs `query` and streams its rows into Parquet parts `<dir>/<stem>-NNNNN.parquet`, one
    /// writer per output partition so encoding runs on every core. Batches are cast to
    /// `schema` when given (the ToC keeps its exact column types), and to the types Delta Lake
    /// has ([`crate::store::delta::delta_schema`]). A query with no rows writes one part with
    /// none, so that its table has a version (and its schema) every night.
    pub async fn write(
        &self,
        what: &str,
        query: &str,
        dir: &str,
        stem: &'static str,
        schema: Option<SchemaRef>,
    ) -> Result<Vec<PartFile>> {
        let df = self.sql(what, query).await?;
        let out_schema: SchemaRef = crate::store::delta::delta_schema(
            &schema.unwrap_or_else(|| Arc::new(df.schema().as_arrow().clone())),
        );
        let plan = df
            .create_physical_plan()
            .await
            .map_err(|e| Error::query(what.to_string(), e))?;
        let streams = datafusion::physical_plan::execute_stream_partitioned(
            Arc::clone(&plan),
            self.ctx.task_ctx(),
        )
        .map_err(|e| Error::query(what.to_string(), e))?;
        let mut tasks = Vec::with_capacity(streams.len());
        for (n, mut stream) in streams.into_iter().enumerate() {
            let location = self.location.clone();
            let schema = Arc::clone(&out_schema);
            let dir = table_subdir(dir, format_args!("p{n}"));
            let what = what.to_string();
            tasks.push(tokio::spawn(async move {
                let mut writer =
                    RollingWriter::new(location, dir, stem, Arc::clone(&schema), PART_BYTES);
                let mut rows = 0usize;
                while let Some(batch) = stream.next().await {
                    let batch = match batch {
                        Ok(b) => b,
                        Err(e) => {
                            writer.abort().await;
                            return Err(Error::query(what, e));
                        }
                    };
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    let batch = crate::store::delta::conform(&batch, &schema)
                        .map_err(|e| Error::query(&what, e.into()))?;
                    rows += batch.num_rows();
                    writer.write(&batch).await?;
                }
                if rows == 0 {
                    writer.abort().await;
                    return Ok(Vec::new());
                }
                writer.close().await
            }));
        }
        let mut files = Vec::new();
        for task in tasks {
            files.extend(task.await.map_err(|e| Error::Io {
                what: format!("{what}: writer task"),
                source: std::io::Error::other(e),
            })??);
        }
        self.count_spills(&plan);
        if files.is_empty() {
            let dir = table_subdir(dir, format_args!("p0"));
            let mut writer =
                RollingWriter::new(self.location.clone(), dir, stem, Arc::clone(&out_schema), 0);
            writer.write(&RecordBatch::new_empty(out_schema)).await?;
            files = writer.close().await?;
        }
        Ok(files)
    }
}

/// A 64-bit hash of `parts` (xxHash64, seed 0): the same for the same input in every merge,
/// and fast enough to run per row.
pub fn hash_of(parts: &[&[u8]]) -> u64 {
    let mut hasher = twox_hash::XxHash64::with_seed(0);
    for part in parts {
        part.hash(&mut hasher);
    }
    hasher.finish()
}

fn array_arg(args: &[ColumnarValue], rows: usize) -> datafusion::error::Result<Vec<ArrayRef>> {
    args.iter().map(|a| a.clone().into_array(rows)).collect()
}

fn rows_of(args: &[ColumnarValue]) -> usize {
    args.iter()
        .find_map(|a| match a {
            ColumnarValue::Array(array) => Some(array.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1)
}

/// A scalar function of one path (`BYTEA`) column: `per_array` maps the paths of a batch to
/// the result column.
fn path_udf(
    name: &str,
    returns: DataType,
    per_array: impl Fn(&BinaryArray) -> ArrayRef + Send + Sync + 'static,
) -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        name,
        vec![DataType::Binary],
        returns,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = array_arg(args, rows_of(args))?;
            Ok(ColumnarValue::Array(per_array(
                arrays[0].as_binary::<i32>(),
            )))
        }),
    )
}

/// Sampled paths per join pass, for [`Engine::split_passes`]: enough that a pass's share is
/// within a few percent of its due.
pub const SAMPLE_PER_PASS: u64 = 256;

/// `sj_pass(path)`: the join pass a path belongs to, the number of `bounds` (sorted) at or
/// below it.
fn pass_udf(bounds: Vec<Vec<u8>>) -> datafusion::logical_expr::ScalarUDF {
    path_udf("sj_pass", DataType::UInt32, move |paths| {
        let mut out = UInt32Builder::with_capacity(paths.len());
        for path in paths.iter() {
            let path = path.unwrap_or_default();
            let pass = bounds.partition_point(|bound| bound.as_slice() <= path);
            out.append_value(pass as u32);
        }
        Arc::new(out.finish())
    })
}

/// `sj_sample(path)`: whether a path is one of every `step` (by its hash).
fn sample_udf(step: u64) -> datafusion::logical_expr::ScalarUDF {
    path_udf("sj_sample", DataType::Boolean, move |paths| {
        let mut out = BooleanBuilder::with_capacity(paths.len());
        for path in paths.iter() {
            out.append_value(hash_of(&[b"s", path.unwrap_or_default()]).is_multiple_of(step));
        }
        Arc::new(out.finish())
    })
}

/// `sj_parent(path)`: the parent directory's path ("" for entries of the root).
fn parent_udf() -> datafusion::logical_expr::ScalarUDF {
    path_udf("sj_parent", DataType::Binary, |paths| {
        let mut out = BinaryBuilder::with_capacity(paths.len(), paths.values().len());
        for path in paths.iter() {
            match path {
                Some(p) => out.append_value(parent_of(p)),
                None => out.append_null(),
            }
        }
        Arc::new(out.finish())
    })
}

/// `sj_entry_hash(path, size)`: hash of an entry's name and size, the unit of a directory
/// tree's signature.
fn entry_hash_udf() -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        "sj_entry_hash",
        vec![DataType::Binary, DataType::Int64],
        DataType::UInt64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = array_arg(args, rows_of(args))?;
            let paths = arrays[0].as_binary::<i32>();
            let sizes = arrays[1].as_primitive::<Int64Type>();
            let mut out = UInt64Builder::with_capacity(paths.len());
            for (path, size) in paths.iter().zip(sizes.iter()) {
                match (path, size) {
                    (Some(p), Some(s)) => out.append_value(entry_hash(name_of(p), s as u64)),
                    _ => out.append_null(),
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// `sj_size_part(size, count)`: which of `count` hash partitions a file size falls in, so that
/// every duplicate candidate group (all of one size) is read by one pod ([`size_part`]).
fn size_part_udf() -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        "sj_size_part",
        vec![DataType::Int64, DataType::Int64],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = array_arg(args, rows_of(args))?;
            let sizes = arrays[0].as_primitive::<Int64Type>();
            let counts = arrays[1].as_primitive::<Int64Type>();
            let mut out = Int64Builder::with_capacity(sizes.len());
            for (size, count) in sizes.iter().zip(counts.iter()) {
                match (size, count) {
                    (Some(s), Some(c)) if c > 0 => out.append_value(size_part(s, c as u64) as i64),
                    _ => out.append_null(),
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// The partition of a file size among `count`: sizes are often round numbers, so they are
/// hashed first, not taken modulo `count`.
pub fn size_part(size: i64, count: u64) -> u64 {
    hash_of(&[b"s", &size.to_le_bytes()]) % count.max(1)
}

pub fn entry_hash(name: &[u8], size: u64) -> u64 {
    hash_of(&[b"e", name, &size.to_le_bytes()])
}

/// `sj_change_sig(is_dir, size, mtime, uid, gid, mode)`: a hash of what the diff compares.
/// A directory's size and mtime change with every entry, so they are left out for one.
fn change_sig_udf() -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        "sj_change_sig",
        vec![
            DataType::Boolean,
            DataType::Int64,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            DataType::Int64,
            DataType::Int64,
            DataType::Int32,
        ],
        DataType::UInt64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = array_arg(args, rows_of(args))?;
            let is_dir = arrays[0].as_boolean();
            let size = arrays[1].as_primitive::<Int64Type>();
            let mtime = arrays[2].as_primitive::<TimestampMicrosecondType>();
            let [uid, gid] = [&arrays[3], &arrays[4]].map(|a| a.as_primitive::<Int64Type>());
            let mode = arrays[5].as_primitive::<Int32Type>();
            let mut out = UInt64Builder::with_capacity(is_dir.len());
            for i in 0..is_dir.len() {
                let mut hasher = twox_hash::XxHash64::with_seed(0);
                hasher.write_u8(is_dir.value(i).into());
                hasher.write_i64(uid.value(i));
                hasher.write_i64(gid.value(i));
                hasher.write_i32(mode.value(i));
                if !is_dir.value(i) {
                    hasher.write_i64(size.value(i));
                    if mtime.is_null(i) {
                        hasher.write_u8(0);
                    } else {
                        hasher.write_u8(1);
                        hasher.write_i64(mtime.value(i));
                    }
                }
                out.append_value(hasher.finish());
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// `sj_inode_key(dev, inode)`: one value per inode, so hard links count once.
fn inode_key_udf() -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        "sj_inode_key",
        vec![DataType::Int64, DataType::Int64],
        DataType::UInt64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = array_arg(args, rows_of(args))?;
            let devs = arrays[0].as_primitive::<Int64Type>();
            let inodes = arrays[1].as_primitive::<Int64Type>();
            let mut out = UInt64Builder::with_capacity(devs.len());
            for (dev, inode) in devs.iter().zip(inodes.iter()) {
                match (dev, inode) {
                    (Some(d), Some(i)) => {
                        out.append_value(hash_of(&[b"i", &d.to_le_bytes(), &i.to_le_bytes()]))
                    }
                    _ => out.append_null(),
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// `sj_age_bucket(ts)`: the age bucket of a timestamp relative to the snapshot's time.
pub fn age_bucket_udf(now_ns: i64) -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        "sj_age_bucket",
        vec![DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        )],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = array_arg(args, rows_of(args))?;
            let times = arrays[0].as_primitive::<TimestampMicrosecondType>();
            let mut out = StringBuilder::with_capacity(times.len(), times.len() * 8);
            for t in times.iter() {
                out.append_value(age_bucket(now_ns, t.map(|t| t.saturating_mul(1000))));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// Age buckets in display order.
pub const AGE_BUCKETS: [&str; 7] = [
    "< 30 d", "< 90 d", "< 1 y", "< 3 y", "older", "future", "unknown",
];

pub fn age_bucket(now_ns: i64, t: Option<i64>) -> &'static str {
    const DAY: i64 = 86_400 * 1_000_000_000;
    let Some(t) = t else { return "unknown" };
    let age = now_ns.saturating_sub(t);
    if age < 0 {
        "future"
    } else if age < 30 * DAY {
        "< 30 d"
    } else if age < 90 * DAY {
        "< 90 d"
    } else if age < 365 * DAY {
        "< 1 y"
    } else if age < 3 * 365 * DAY {
        "< 3 y"
    } else {
        "older"
    }
}

/// Whether a path (relative to the root) is a row of one of this run's failed shards.
pub type PathPredicate = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// `sj_carried(path)`: whether a previous snapshot's row belongs to a shard that failed in
/// this run (its row is carried forward instead of reported removed).
pub fn carried_udf(owner: PathPredicate) -> datafusion::logical_expr::ScalarUDF {
    path_udf("sj_carried", DataType::Boolean, move |paths| {
        let mut out = BooleanBuilder::with_capacity(paths.len());
        for path in paths.iter() {
            out.append_value(path.is_some_and(|p| owner(p)));
        }
        Arc::new(out.finish())
    })
}
