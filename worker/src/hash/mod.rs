//! `scanjob hash`: content evidence for the night's duplicate candidates, read politely and
//! within a byte budget, after the scan and before the merge.
//!
//! Metadata alone makes candidates: every run's 4 GiB `result.h5` has the same size and name,
//! and they are not copies. Evidence comes in stages, as fclones and rmlint gather it on one
//! host, here split over pods:
//!
//! 1. **candidate**: a file of at least `--duplicate-min-size` in a group of the same size and
//!    name, or the same size and mtime ([`crate::duplicates::candidate_keys`], the rule the
//!    merge's `duplicate_files` applies too). Hard links are one file: each inode is read once,
//!    through one of its paths.
//! 2. **sampled**: the SHA-256 of [`SAMPLE_BLOCKS`] blocks of [`BLOCK`] bytes (the start, the
//!    end and spread points between). A file no longer than that is read whole, and its sample
//!    is its full hash.
//! 3. **confirmed**: the SHA-256 of the whole content, for every file of a class of two or more
//!    inodes whose samples are equal.
//!
//! **The byte budget** (`--max-bytes`): classes are taken in the order of the bytes their
//! extra copies would waste, largest first; a size class is sampled, and a sampled class
//! read whole, only if all of it fits in what is left. What does not fit stays a candidate
//! (or sampled), and is counted. Every open, stat and read also goes through the scan's
//! operations budget and latency guard ([`crate::fs::politeness`]).
//!
//! **Atimes**: files are opened with `O_NOATIME`. Where the kernel refuses it (the reader is
//! not the file's owner and lacks CAP_FOWNER) the file is not read at all: reading would move
//! its atime, and with it the age-by-atime numbers of every later night. It is counted as
//! `noatime_refused`.
//!
//! **A file that changes** is not hashed: its size, mtime and ctime (and inode) must be the
//! scan's before the first read and after the last one. Such files are counted as `changed`.
//!
//! **The cache**: the previous snapshot's `file_hashes` table, keyed by (dev, inode, size,
//! mtime, ctime), where `dev` is the ToC's (the same after a remount: [`crate::fs::identity`]).
//! A file whose key did not move is not read again; the merge carries the table
//! forward, so an unchanged file is read at most once, ever.
//!
//! **Partitions**: pod `index` of `count` takes the sizes that [`crate::engine::size_part`]
//! puts in its partition, so every group is read by exactly one pod.
//!
//! It reads the plan, the night's shards, the previous snapshot's `file_hashes`
//! ([`crate::store::previous`]) and the candidates' contents (never writing the tree), and
//! writes only every hash its candidates have (read tonight or cached) to
//! `runs/<run>/hashes/<index>/part-00000.parquet`, then `runs/<run>/hashes/_SUCCESS-<index>.json`
//! ([`HashSuccess`]); the merge reads them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use object_store::PutMode;
use tracing::info;

use scanjob_contract::args::Budget;

use crate::duplicates::candidates_query;
use crate::engine::{Engine, EngineOptions};
use crate::error::{Error, Result};
use crate::fs::politeness::Politeness;
use crate::fs::source::Source;
use crate::schema::{HASH_SCHEMA, TOC_SCHEMA};
use crate::store::layout::{
    HashSuccess, LAYOUT_FORMAT, ShardSuccess, hash_success_path, hashes_dir, success_path,
};
use crate::store::load_plan;
use crate::store::previous::previous_snapshot;
use crate::store::writer::RollingWriter;
use crate::summary::HashTotals;

mod read;
use read::{Exported, Files, Mounted, Reader};

/// Bytes of one sampled block.
pub const BLOCK: u64 = 16 << 10;
/// Blocks a sample reads: the start, a quarter, the middle, three quarters, the end.
pub const SAMPLE_BLOCKS: u64 = 5;
/// Bytes of one read of a whole file.
const READ_BYTES: usize = 1 << 20;

/// One pod's share of the night's hashing.
#[derive(Debug, Clone)]
pub struct HashRequest {
    /// The full URL of `runs/<run>/plan.json`.
    pub plan_url: String,
    pub index: u32,
    pub count: u32,
    pub threads: usize,
    /// Where the planned root is mounted, if not at the planned path.
    pub root_override: Option<PathBuf>,
    /// Bytes this partition may read, samples included.
    pub max_bytes: u64,
    pub min_size: u64,
    /// The opens, stats and reads this partition may make.
    pub budget: Budget,
}

/// What identifies an unchanged file: the cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    dev: i64,
    inode: i64,
    size: i64,
    /// Microseconds, as the ToC holds them.
    mtime: i64,
    ctime: i64,
}

/// A candidate inode: its key, one of its paths, and what is known of its content.
#[derive(Debug, Clone)]
struct File {
    key: Key,
    path: Vec<u8>,
    sample: Option<String>,
    full: Option<String>,
    /// The run whose pod read it (this one, or the cache's).
    hashed_run: Option<String>,
}

/// The files of the plan's root, as this pod reads them.
enum FilesOfRoot {
    Mounted(Mounted),
    Exported(Exported),
}

/// How reading one file went.
enum Read {
    Hashed {
        sample: Option<String>,
        full: Option<String>,
    },
    Refused,
    Changed,
    Unreadable,
}

/// Hashes partition `index` of `count` of the run's candidates; see the module docs.
pub async fn hash_partition(request: HashRequest) -> Result<HashSuccess> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let (plan, output) = load_plan(&request.plan_url).await?;
    let count = request.count.max(1);
    if request.index >= count {
        return Err(Error::BadPlan {
            url: request.plan_url.clone(),
            reason: format!(
                "hash partition {} is out of range: there are {count} (0..={})",
                request.index,
                count - 1
            ),
        });
    }
    let mut toc_files = Vec::new();
    for index in 0..plan.shards.len() as u32 {
        if let Some(s) = output
            .get_json::<ShardSuccess>(&success_path(&plan.run, index))
            .await?
            .filter(|s| s.plan_id == plan.plan_id)
        {
            toc_files.extend(s.toc_files);
        }
    }
    let engine = Engine::new(
        &output,
        &EngineOptions {
            memory_limit_bytes: EngineOptions::memory_limit_for(crate::cgroup::memory_limit()),
            ..EngineOptions::default()
        },
    )?;
    engine
        .register_files("cur", &toc_files, &TOC_SCHEMA)
        .await?;
    let rows = engine
        .collect(
            "finding the partition's duplicate candidates",
            &candidates_query(request.min_size, request.index, count),
        )
        .await?;
    let mut files = files_of(&rows);
    let previous =
        previous_snapshot(&output, &plan.root, &plan.run, plan.previous_run.as_deref()).await?;
    let cache_files = previous
        .as_ref()
        .and_then(|m| m.derived.get("file_hashes").cloned())
        .unwrap_or_default();
    let mut totals = HashTotals {
        pods: 1,
        budget_bytes: request.max_bytes,
        files: files.len() as u64,
        ..HashTotals::default()
    };
    if !files.is_empty() && !cache_files.is_empty() {
        engine
            .register_files("cache", &cache_files, &HASH_SCHEMA)
            .await?;
        engine.register_batches("cand", rows[0].schema(), rows.clone())?;
        let cached = engine
            .collect(
                "reading the hash cache",
                "SELECT h.dev, h.inode, h.size, h.mtime, h.ctime, h.sample_sha256, h.sha256, \
                        h.hashed_run \
                 FROM cand c JOIN cache h ON c.dev = h.dev AND c.inode = h.inode \
                   AND c.size = h.size AND c.mtime = h.mtime AND c.ctime = h.ctime",
            )
            .await?;
        for entry in hash_rows(&cached) {
            if let Some(file) = files.get_mut(&(entry.key.dev, entry.key.inode))
                && file.key == entry.key
                && file.hashed_run.is_none()
            {
                file.sample = entry.sample;
                file.full = entry.full;
                file.hashed_run = entry.hashed_run;
                totals.cache_hits += 1;
            }
        }
    }
    drop(engine);

    let root_path = request
        .root_override
        .clone()
        .unwrap_or_else(|| PathBuf::from(&plan.root));
    let politeness = Arc::new(Politeness::new(request.budget, request.threads));
    let root_name = root_path.display().to_string();
    let files_of_root = match Source::of(&root_path)? {
        Source::Mounted(path) => FilesOfRoot::Mounted(Mounted::open(&path, politeness.clone())?),
        Source::Nfs(export) => FilesOfRoot::Exported(
            Exported::connect(
                &export,
                &root_name,
                plan.settings.nfs_client(),
                politeness.clone(),
            )
            .await?,
        ),
    };
    let run = plan.run.clone();
    let threads = request.threads.max(1);
    let budget = request.max_bytes;
    let (files, totals, bytes, calls) = tokio::task::spawn_blocking(move || {
        let mut left = budget;
        let (bytes, calls) = match files_of_root {
            FilesOfRoot::Mounted(root) => {
                confirm(&mut files, root, threads, &mut left, &mut totals, &run)
            }
            FilesOfRoot::Exported(export) => {
                confirm(&mut files, export, threads, &mut left, &mut totals, &run)
            }
        };
        (files, totals, bytes, calls)
    })
    .await
    .map_err(|e| Error::Io {
        what: "the hash step's threads".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let mut totals = totals;
    totals.bytes_read = bytes;
    totals.seconds = started.elapsed().as_secs_f64();

    // What an earlier attempt of this partition wrote is replaced.
    let dir = format!("{}/{}", hashes_dir(&plan.run), request.index);
    output.delete_prefix(&format!("{dir}/")).await?;
    let mut writer = RollingWriter::new(
        output.clone(),
        dir,
        "part",
        Arc::clone(&HASH_SCHEMA),
        usize::MAX,
    );
    let batch = hashes_batch(files.values())?;
    writer.write(&batch).await?;
    let written = writer.close().await?;
    let success = HashSuccess {
        format: LAYOUT_FORMAT,
        run: plan.run.clone(),
        plan_id: plan.plan_id.clone(),
        index: request.index,
        count,
        started: started_at,
        files: written,
        totals,
        politeness: politeness.report(calls),
    };
    let path = hash_success_path(&plan.run, request.index);
    output
        .put_json(&path, &success, PutMode::Overwrite)
        .await
        .map_err(|source| Error::store(&output.url, &path, source))?;
    info!(
        run = plan.run,
        index = request.index,
        count,
        files = success.totals.files,
        bytes_read = success.totals.bytes_read,
        cache_hits = success.totals.cache_hits,
        seconds = success.totals.seconds,
        "hashes written"
    );
    Ok(success)
}

/// The (dev, inode, size, mtime, ctime) key of every row of `batch`, by column name.
fn keys_of(batch: &RecordBatch) -> Vec<Key> {
    let col = |name: &str| batch.column(batch.schema().index_of(name).expect("column"));
    let int = |name: &str| col(name).as_primitive::<Int64Type>().clone();
    let time = |name: &str| col(name).as_primitive::<TimestampMicrosecondType>().clone();
    let (devs, inodes, sizes) = (int("dev"), int("inode"), int("size"));
    let (mtimes, ctimes) = (time("mtime"), time("ctime"));
    (0..batch.num_rows())
        .map(|i| Key {
            dev: devs.value(i),
            inode: inodes.value(i),
            size: sizes.value(i),
            mtime: mtimes.value(i),
            ctime: ctimes.value(i),
        })
        .collect()
}

/// The candidate rows as one file per inode, through its first path.
fn files_of(rows: &[RecordBatch]) -> BTreeMap<(i64, i64), File> {
    let mut files = BTreeMap::new();
    for batch in rows {
        let paths = batch.column(0).as_binary::<i32>();
        for (i, key) in keys_of(batch).into_iter().enumerate() {
            files.entry((key.dev, key.inode)).or_insert_with(|| File {
                key,
                path: paths.value(i).to_vec(),
                sample: None,
                full: None,
                hashed_run: None,
            });
        }
    }
    files
}

/// Rows of the `file_hashes` schema.
fn hash_rows(rows: &[RecordBatch]) -> Vec<File> {
    let mut out = Vec::new();
    for batch in rows {
        let text = |name: &str| {
            let col = batch.column(batch.schema().index_of(name).expect("column"));
            col.as_string::<i32>().clone()
        };
        let (samples, fulls, runs) = (text("sample_sha256"), text("sha256"), text("hashed_run"));
        let opt = |a: &arrow_array::StringArray, i: usize| {
            (!a.is_null(i)).then(|| a.value(i).to_string())
        };
        for (i, key) in keys_of(batch).into_iter().enumerate() {
            out.push(File {
                key,
                path: Vec::new(),
                sample: opt(&samples, i),
                full: opt(&fulls, i),
                hashed_run: opt(&runs, i),
            });
        }
    }
    out
}

/// The hashes known of `files` (read tonight or cached), as a batch of [`HASH_SCHEMA`].
fn hashes_batch<'a>(files: impl Iterator<Item = &'a File>) -> Result<RecordBatch> {
    let mut dev = Int64Builder::new();
    let mut inode = Int64Builder::new();
    let mut size = Int64Builder::new();
    let mut mtime = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut ctime = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut sample = StringBuilder::new();
    let mut full = StringBuilder::new();
    let mut run = StringBuilder::new();
    for f in files {
        let Some(hashed_run) = &f.hashed_run else {
            continue;
        };
        dev.append_value(f.key.dev);
        inode.append_value(f.key.inode);
        size.append_value(f.key.size);
        mtime.append_value(f.key.mtime);
        ctime.append_value(f.key.ctime);
        sample.append_option(f.sample.as_deref());
        full.append_option(f.full.as_deref());
        run.append_value(hashed_run);
    }
    RecordBatch::try_new(
        Arc::clone(&HASH_SCHEMA),
        vec![
            Arc::new(dev.finish()),
            Arc::new(inode.finish()),
            Arc::new(size.finish()),
            Arc::new(mtime.finish()),
            Arc::new(ctime.finish()),
            Arc::new(sample.finish()),
            Arc::new(full.finish()),
            Arc::new(run.finish()),
        ],
    )
    .map_err(|e| Error::Parquet {
        path: "file_hashes".into(),
        source: e.into(),
    })
}

/// The bytes a sample of a file of `size` reads.
pub fn sample_bytes(size: u64) -> u64 {
    size.min(SAMPLE_BLOCKS * BLOCK)
}

/// Both stages over the partition's files, within `left` bytes, read through `source`.
/// Returns the bytes read and the calls made.
fn confirm<F: Files>(
    files: &mut BTreeMap<(i64, i64), File>,
    source: F,
    threads: usize,
    left: &mut u64,
    totals: &mut HashTotals,
    run: &str,
) -> (u64, u64) {
    let reader = &Reader::new(source);
    // Stage 1: sample every size class of two inodes or more, largest waste first.
    let mut by_size: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for (id, f) in files.iter() {
        by_size.entry(f.key.size).or_default().push(*id);
    }
    let mut classes: Vec<(u64, Vec<(i64, i64)>)> = by_size
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(size, ids)| (size as u64 * (ids.len() as u64 - 1), ids))
        .collect();
    classes.sort_by_key(|c| std::cmp::Reverse(c.0));
    let mut work = Vec::new();
    for (_, ids) in classes {
        let needed: Vec<(i64, i64)> = ids
            .into_iter()
            .filter(|id| files[id].sample.is_none())
            .collect();
        let cost: u64 = needed
            .iter()
            .map(|id| sample_bytes(files[id].key.size as u64))
            .sum();
        if cost <= *left {
            *left -= cost;
            work.extend(needed);
        } else {
            totals.files_over_budget += needed.len() as u64;
        }
    }
    totals.files_sampled += read_all(files, &work, reader, threads, false, totals, run);

    // Stage 2: read whole every class of equal samples with two inodes or more.
    let mut by_sample: HashMap<(i64, String), Vec<(i64, i64)>> = HashMap::new();
    for (id, f) in files.iter() {
        if let Some(sample) = &f.sample {
            by_sample
                .entry((f.key.size, sample.clone()))
                .or_default()
                .push(*id);
        }
    }
    let mut classes: Vec<(u64, Vec<(i64, i64)>)> = by_sample
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|((size, _), ids)| (size as u64 * (ids.len() as u64 - 1), ids))
        .collect();
    classes.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut work = Vec::new();
    for (_, ids) in classes {
        let needed: Vec<(i64, i64)> = ids
            .into_iter()
            .filter(|id| files[id].full.is_none())
            .collect();
        let cost: u64 = needed.iter().map(|id| files[id].key.size as u64).sum();
        if needed.is_empty() {
            continue;
        }
        if cost <= *left {
            *left -= cost;
            work.extend(needed);
        } else {
            totals.groups_over_budget += 1;
        }
    }
    totals.files_hashed += read_all(files, &work, reader, threads, true, totals, run);
    (reader.bytes(), reader.files.calls())
}

/// Reads `work` on `threads` threads (samples, or whole files with `whole`) and records the
/// hashes; returns how many files were hashed.
fn read_all<F: Files>(
    files: &mut BTreeMap<(i64, i64), File>,
    work: &[(i64, i64)],
    reader: &Reader<F>,
    threads: usize,
    whole: bool,
    totals: &mut HashTotals,
    run: &str,
) -> u64 {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<((i64, i64), Read)>> = Mutex::new(Vec::with_capacity(work.len()));
    let shared: &BTreeMap<(i64, i64), File> = files;
    std::thread::scope(|s| {
        for _ in 0..threads.min(work.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = work.get(i) else { break };
                    let read = reader.read(&shared[id], whole);
                    results.lock().expect("results lock").push((*id, read));
                }
            });
        }
    });
    let mut hashed = 0;
    for (id, read) in results.into_inner().expect("results lock") {
        let file = files.get_mut(&id).expect("a file of the partition");
        match read {
            Read::Hashed { sample, full } => {
                hashed += 1;
                if sample.is_some() {
                    file.sample = sample;
                }
                if full.is_some() {
                    file.full = full;
                }
                file.hashed_run = Some(run.to_string());
            }
            Read::Refused => totals.noatime_refused += 1,
            Read::Changed => totals.changed += 1,
            Read::Unreadable => totals.unreadable += 1,
        }
    }
    hashed
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_covers_start_spread_and_end() {
        assert_eq!(sample_bytes(10), 10);
        assert_eq!(sample_bytes(1 << 30), SAMPLE_BLOCKS * BLOCK);
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
