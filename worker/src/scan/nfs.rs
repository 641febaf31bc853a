//! A shard's walk of an NFS export through the user-space client: the crate's [`Walker`] lists
//! `in_flight` directories at once (one READDIRPLUS per page), from all of the shard's pieces
//! at once, and every entry becomes the same [`EntryMeta`] and the same rows as a mounted
//! walk's. A piece is walked as the mounted walker walks it: a whole subtree, or a directory's
//! own entries (one slice of its names, for a huge one) entering only the subdirectories no
//! piece names. An error about one object is an error
//! row at its path; an error that means the server could not be asked fails the shard, so a
//! listing with a hole is never written.
//!
//! It runs on a thread of its own with a runtime of its own, like the mounted walker on its
//! blocking threads: a full writer channel holds the walk back instead of piling up rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use scanjob_nfs::{Attributes, Client, FileHandle, FileType, Item, Start, Take, Top, Walker};

use crate::error::Result;
use crate::fs::entry::{EntryKind, EntryMeta};
use crate::fs::nfs::{ClientOptions, RpcReport, entry_meta, errno_of, failure, listings_in_flight};
use crate::fs::politeness::Politeness;
use crate::fs::source::NfsExport;
use crate::pathbytes::{name_of, parent_of};
use crate::scan::rows::{ErrorBatchBuilder, ErrorKind, TocBatchBuilder, WalkOperation};
use crate::scan::walk::{ShardBatch, WalkCounters, WalkOptions};
use crate::shard::{FilesOnly, NameSlice, PlannedDirs, WalkStart};

/// One shard's walk of an export, ready to start.
pub struct NfsWalk {
    pub export: NfsExport,
    /// The root as the plan names it, for messages.
    pub root: String,
    pub client: ClientOptions,
    pub starts: Vec<WalkStart>,
    /// Every shard's pieces: a files-only start enters only the subdirectories the plan does
    /// not name.
    pub planned: Arc<PlannedDirs>,
    /// `threads` is the number of directories listed at once.
    pub options: WalkOptions,
    pub politeness: Arc<Politeness>,
    pub counters: Arc<WalkCounters>,
}

/// Walks the export and hands every batch to `sink` (which blocks while the writer is behind);
/// stops early when `sink` returns `false`. Returns what the walk cost the server.
pub fn walk(walk: NfsWalk, sink: &(dyn Fn(ShardBatch) -> bool + Sync)) -> Result<RpcReport> {
    let runtime = crate::fs::nfs::runtime("scanjob-nfs")?;
    runtime.block_on(async {
        let client = crate::fs::nfs::connect(
            &walk.export,
            &walk.root,
            &walk.client,
            walk.politeness.clone(),
        )
        .await?;
        let result = walk_starts(&walk, &client, sink).await;
        let report = RpcReport::of(&client);
        walk.counters.calls.store(report.calls(), Ordering::Relaxed);
        result.map(|()| report)
    })
}

async fn walk_starts(
    walk: &NfsWalk,
    client: &Client,
    sink: &(dyn Fn(ShardBatch) -> bool + Sync),
) -> Result<()> {
    let options = &walk.options;
    let in_flight = listings_in_flight(options.threads);
    let mut walker = Walker::new(client.clone()).in_flight(in_flight);
    if let Some(exclude) = options.exclude.clone() {
        walker = walker.skip(move |name| exclude.is_match(OsStr::from_bytes(name)));
    }
    let mut rows = Rows {
        toc: TocBatchBuilder::new(options.shard, options.project_level, options.seen_at),
        errors: ErrorBatchBuilder::new(options.shard),
        batch_rows: options.batch_rows,
        counters: &walk.counters,
        sink,
        stopped: false,
    };
    let pieces: Vec<(&Vec<u8>, Top)> = walk
        .starts
        .iter()
        .map(|start| match start {
            WalkStart::Subtree(path) => (path, Top::All),
            WalkStart::FilesOnly(FilesOnly { path, slice }) => {
                (&path.0, files_only(&path.0, *slice, &walk.planned))
            }
        })
        .collect();
    let (found, failed) =
        start_handles(client, pieces.iter().map(|(p, _)| p.as_slice()), in_flight)
            .await
            .map_err(|error| failure(&walk.root, b"", error))?;
    let mut starts = Vec::with_capacity(pieces.len());
    for (path, top) in pieces {
        if let Some(handle) = found.get(path) {
            starts.push(Start {
                path: path.clone(),
                handle: handle.clone(),
                top,
            });
            continue;
        }
        // The start, or the ancestor whose LOOKUP failed, is an error row (once per
        // directory: only the first slice of a sliced one reports it).
        if !matches!(top, Top::Chosen { quiet: true, .. }) {
            let mut at = path.as_slice();
            while !failed.contains_key(at) && !at.is_empty() {
                at = parent_of(at);
            }
            if let Some(error) = failed.get(at) {
                rows.error(path, error);
            }
        }
    }
    walker
        .walk_from(starts, |item| match item {
            Item::Entry(entry) => rows.entry(&entry.path, &entry_meta(&entry.attributes)),
            Item::Error { path, error } => rows.error(&path, &error),
        })
        .await
        .map_err(|error| failure(&walk.root, b"", error))?;
    if rows.stopped {
        return Ok(());
    }
    rows.flush_toc();
    rows.flush_errors();
    Ok(())
}

/// What a files-only start takes from its directory, as the mounted walker does (see the
/// module docs of [`crate::scan::walk`]): the names in its slice, and it enters only the
/// subdirectories no piece of the plan names. Only the first slice reports the directory
/// itself unreadable.
fn files_only(path: &[u8], slice: Option<NameSlice>, planned: &Arc<PlannedDirs>) -> Top {
    let adopt_unplanned = !planned.within_subtree(path);
    let planned = planned.clone();
    let choose = move |name: &[u8], path: &[u8], attributes: Option<&Attributes>| {
        if slice.is_some_and(|slice| !slice.contains(name)) {
            return Take::Leave;
        }
        let is_dir = attributes.is_some_and(|a| a.file_type == FileType::Directory);
        if is_dir && adopt_unplanned && !planned.contains(path) {
            Take::Enter
        } else {
            Take::Yield
        }
    };
    Top::Chosen {
        choose: Arc::new(choose),
        quiet: slice.is_some_and(|slice| slice.part != 0),
    }
}

/// The handles of the starts' directories and the errors of the LOOKUPs that failed (by the
/// path looked up), found a level at a time with up to `in_flight` LOOKUPs at once: the starts
/// cost as many round trips as the deepest is deep, and an ancestor they share one LOOKUP. A
/// directory below one whose LOOKUP failed is not looked up. Fails with an error that is not
/// about one object.
async fn start_handles(
    client: &Client,
    paths: impl Iterator<Item = &[u8]>,
    in_flight: usize,
) -> std::result::Result<Handles, scanjob_nfs::Error> {
    let mut levels: BTreeMap<usize, BTreeSet<&[u8]>> = BTreeMap::new();
    for path in paths {
        let mut p = path;
        while !p.is_empty() {
            let depth = p.iter().filter(|&&b| b == b'/').count();
            if !levels.entry(depth).or_default().insert(p) {
                break;
            }
            p = parent_of(p);
        }
    }
    let mut found = HashMap::from([(Vec::new(), client.root().clone())]);
    let mut failed = HashMap::new();
    for (_, level) in levels {
        let lookups = level.into_iter().filter_map(|path| {
            let dir = found.get(parent_of(path))?.clone();
            Some(async move {
                let found = client.lookup(&dir, name_of(path)).await;
                (path, found.map(|(handle, _)| handle))
            })
        });
        let results: Vec<_> = futures::stream::iter(lookups)
            .buffer_unordered(in_flight.max(1))
            .collect()
            .await;
        for (path, result) in results {
            match result {
                Ok(handle) => {
                    found.insert(path.to_vec(), handle);
                }
                Err(error) if error.is_row() => {
                    failed.insert(path.to_vec(), error);
                }
                Err(error) => return Err(error),
            }
        }
    }
    Ok((found, failed))
}

/// The starts' handles by path, and the failed LOOKUPs' errors by path.
type Handles = (
    HashMap<Vec<u8>, FileHandle>,
    HashMap<Vec<u8>, scanjob_nfs::Error>,
);

/// The rows of the walk so far, and where full batches go.
struct Rows<'a> {
    toc: TocBatchBuilder,
    errors: ErrorBatchBuilder,
    batch_rows: usize,
    counters: &'a WalkCounters,
    sink: &'a (dyn Fn(ShardBatch) -> bool + Sync),
    /// The writer went away: rows are no longer wanted.
    stopped: bool,
}

impl Rows<'_> {
    /// A row for the entry at `path`.
    fn entry(&mut self, path: &[u8], meta: &EntryMeta) {
        self.toc.append(parent_of(path), name_of(path), meta);
        let c = self.counters;
        let add = |a: &AtomicU64, n: u64| a.fetch_add(n, Ordering::Relaxed);
        add(&c.entries, 1);
        match meta.kind {
            EntryKind::File => {
                add(&c.files, 1);
                add(&c.file_bytes, meta.size);
            }
            EntryKind::Dir => {
                add(&c.dirs, 1);
            }
            EntryKind::Symlink => {
                add(&c.symlinks, 1);
            }
            _ => {
                add(&c.other_kinds, 1);
            }
        }
        if self.toc.len() >= self.batch_rows {
            self.flush_toc();
        }
    }

    /// An error row for the object at `path`: READDIRPLUS failed for a directory's listing,
    /// LOOKUP or GETATTR for one entry.
    fn error(&mut self, path: &[u8], error: &scanjob_nfs::Error) {
        let errno = errno_of(error);
        let operation = match error {
            scanjob_nfs::Error::Denied { procedure, .. }
            | scanjob_nfs::Error::NotFound { procedure }
            | scanjob_nfs::Error::Stale { procedure, .. }
            | scanjob_nfs::Error::Status { procedure, .. }
                if *procedure != scanjob_nfs::Procedure::ReadDirPlus =>
            {
                WalkOperation::Stat
            }
            _ => WalkOperation::ReadDir,
        };
        self.errors
            .append_message(path, operation, &errno, &error.to_string());
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.counters.errors_by_kind[ErrorKind::of(&errno)].fetch_add(1, Ordering::Relaxed);
        if self.errors.len() >= 1024 {
            self.flush_errors();
        }
    }

    fn flush_toc(&mut self) {
        if !self.toc.is_empty() && !self.stopped {
            self.stopped = !(self.sink)(ShardBatch::Toc(self.toc.finish()));
        }
    }

    fn flush_errors(&mut self) {
        if !self.errors.is_empty() && !self.stopped {
            self.stopped = !(self.sink)(ShardBatch::Errors(self.errors.finish()));
        }
    }
}
