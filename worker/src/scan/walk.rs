//! The parallel, fd-relative directory walker.
//!
//! Shape (after `ignore::WalkParallel`): a pool of threads with work stealing over directories.
//! Each thread pushes the subdirectories it finds onto its own LIFO deque, so it goes depth-first
//! and the set of pending directories stays small; idle threads steal the oldest (shallowest)
//! directory of a busy one, which spreads whole subtrees across threads.
//!
//! Syscalls (after GNU fts): a directory is opened relative to its parent's descriptor and every
//! entry is `statx`'ed relative to the directory's descriptor, never by full path. That is faster
//! (no repeated path lookup) and it reaches entries whose full path exceeds PATH_MAX. Each entry
//! costs one `statx`; names and `d_type` come from `getdents64` into a per-thread buffer.
//!
//! Rows stream out: each thread fills its own Arrow builders and hands full batches to a sink
//! (the shard writer's bounded channel), so memory depends on batch size and thread count, not on
//! the size of the tree. One exception: a big directory's names wait in stat chunks (see
//! [`STAT_CHUNK`]) until a thread stats them, a few tens of bytes per name, so a directory of
//! 2 M entries listed by one shard can hold ~60 MB of names at once. Failures of one entry
//! become error rows.
//!
//! The walk never writes to the tree; directories are opened with `O_NOATIME` where the kernel
//! permits it (owner or CAP_FOWNER), and files are never opened at all.
//!
//! Directories the plan does not know. A plan is made from what the planner saw (the previous
//! snapshot, or a top-level listing) and lists some directories "files only": their known
//! subdirectories are pieces of their own, possibly in other shards. A subdirectory created since
//! (after the snapshot, or between planning and this scan) is an entry of such a directory, so it
//! gets its row, but no piece would ever enter it. So a files-only listing enters every
//! subdirectory that is not in the plan ([`PlannedDirs`]: every shard's pieces and their
//! ancestors) and walks it as a whole subtree. Only the shard whose name slice holds the
//! subdirectory's name sees it at all (the slice filter comes before anything else), so exactly
//! one shard walks it, the one that writes its row. The check costs one hash lookup per
//! subdirectory of a files-only directory; subtree walks, the bulk of any scan, never make it.

use std::collections::BTreeMap;
use std::ffi::{CStr, OsStr};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::RecordBatch;
use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use globset::GlobSet;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::RawDir;
use rustix::io::Errno;

use crate::fs::calls::{FileSystemFailure, device_of, fails_the_file_system, open_dir, stat_at};
use crate::fs::entry::{EntryKind, EntryMeta};
use crate::fs::identity::DeviceIds;
use crate::fs::politeness::{DIR_OPEN_SLOTS, Politeness};
use crate::pathbytes::join;
use crate::scan::rows::{
    ErrorBatchBuilder, ErrorKind, PerErrorKind, TocBatchBuilder, WalkOperation,
};
use crate::shard::{FilesOnly, NameSlice, PlannedDirs, WalkStart};
use crate::store::layout::EntryCounts;

/// A batch on its way to the shard writer.
pub enum ShardBatch {
    Toc(RecordBatch),
    Errors(RecordBatch),
}

/// How to walk.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    pub threads: usize,
    pub one_file_system: bool,
    pub exclude: Option<GlobSet>,
    pub batch_rows: usize,
    pub project_level: usize,
    /// ns since the epoch; fills `first_seen`/`last_seen`.
    pub seen_at: i64,
    pub shard: u32,
    /// The operations budget and latency guard every open and stat goes through.
    pub politeness: Arc<Politeness>,
    /// The `dev` column of each device below the root (the kernel's numbers by default).
    pub devices: DeviceIds,
}

/// Live totals of a walk, readable while it runs (progress bar) and at its end (shard report).
#[derive(Debug, Default)]
pub struct WalkCounters {
    pub entries: AtomicU64,
    pub files: AtomicU64,
    pub dirs: AtomicU64,
    pub symlinks: AtomicU64,
    pub other_kinds: AtomicU64,
    /// Sum of `st_size` over regular files (every hard link counts, like `find`).
    pub file_bytes: AtomicU64,
    /// Entries that became error rows, of every kind.
    pub errors: AtomicU64,
    /// The same errors by kind.
    pub errors_by_kind: PerErrorKind<AtomicU64>,
    /// Timestamps that do not fit i64 nanoseconds (beyond year 2262 or before 1677): stored as null.
    pub timestamps_out_of_range: AtomicU64,
    /// File-system calls made: directory opens and stats.
    pub calls: AtomicU64,
}

impl WalkCounters {
    /// Errors of `kind` so far.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors_by_kind[kind].load(Ordering::Relaxed)
    }

    /// Errors by kind, as the shard report states them: the kinds that occurred.
    pub fn errors_by_kind(&self) -> BTreeMap<String, u64> {
        ErrorKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let n = self.errors_of(kind);
                (n > 0).then(|| (kind.as_str().to_string(), n))
            })
            .collect()
    }

    /// The totals so far, as a shard's `_SUCCESS.json` records them.
    pub fn counts(&self) -> EntryCounts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EntryCounts {
            entries: load(&self.entries),
            files: load(&self.files),
            directories: load(&self.dirs),
            symlinks: load(&self.symlinks),
            other_kinds: load(&self.other_kinds),
            bytes: load(&self.file_bytes),
            errors: load(&self.errors),
            errors_by_kind: self.errors_by_kind(),
            timestamps_out_of_range: load(&self.timestamps_out_of_range),
        }
    }
}

/// Per-thread counts, added to the shared [`WalkCounters`] once per batch to keep the shared
/// cache lines out of the per-entry path.
#[derive(Default)]
struct LocalCounts {
    entries: u64,
    files: u64,
    dirs: u64,
    symlinks: u64,
    other_kinds: u64,
    file_bytes: u64,
    errors: PerErrorKind<u64>,
    timestamps_out_of_range: u64,
    calls: u64,
}

impl LocalCounts {
    fn flush(&mut self, to: &WalkCounters) {
        let add = |a: &AtomicU64, v: u64| {
            if v > 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        };
        add(&to.entries, self.entries);
        add(&to.files, self.files);
        add(&to.dirs, self.dirs);
        add(&to.symlinks, self.symlinks);
        add(&to.other_kinds, self.other_kinds);
        add(&to.file_bytes, self.file_bytes);
        for kind in ErrorKind::ALL {
            add(&to.errors, self.errors[kind]);
            add(&to.errors_by_kind[kind], self.errors[kind]);
        }
        add(&to.timestamps_out_of_range, self.timestamps_out_of_range);
        add(&to.calls, self.calls);
        *self = Self::default();
    }

    fn count_error(&mut self, error: &Errno) {
        self.errors[ErrorKind::of(error)] += 1;
    }
}

/// A directory waiting to be listed. It keeps its parent's descriptor alive, so opening it is
/// one `openat` on a name, whatever its depth.
/// A unit of stealable work: list a directory, or stat a chunk of one directory's names.
enum Task {
    Dir(DirTask),
    Stat(StatTask),
}

/// Up to [`STAT_CHUNK`] names of one directory, listed by one thread, stat'ed by any.
struct StatTask {
    dir: Arc<OwnedFd>,
    /// The directory's path relative to the scan root.
    path: Vec<u8>,
    /// NUL-terminated names, back to back.
    names: Vec<u8>,
    descend: bool,
    adopt_unplanned: bool,
}

/// Names per stat chunk. A directory with more entries hands its names out in chunks that idle
/// threads steal, so one big directory does not stat on one thread: on a file system where each
/// stat is a network round trip, that thread's sequence of stats would be the whole scan's
/// critical path (10,000 entries at 1 ms = 10 s however many threads wait).
pub const STAT_CHUNK: usize = 128;

struct DirTask {
    parent: Arc<OwnedFd>,
    /// Relative to `parent`: one name, or a start path below the root.
    name: Vec<u8>,
    /// Relative to the scan root.
    path: Vec<u8>,
    descend: bool,
    /// A files-only listing: enter the subdirectories the plan does not know (module docs).
    adopt_unplanned: bool,
    slice: Option<NameSlice>,
    /// A start from the plan: with `one_file_system`, check it is on the root's device.
    is_start: bool,
}

/// Walks `starts` below the directory `root` and hands every batch to `sink`. Returns early
/// (with whatever was walked) when `sink` returns `false`, i.e. the writer has gone away. A
/// panic in any walker thread stops the others and is raised again here once all have ended.
///
/// Returns the file system's failure, if it failed: the walk stops at the first call that
/// says so, and the root is checked once more at the end (a mount lost after the last call).
///
/// `planned` is the whole plan (every shard's starts, not only these): a files-only start also
/// walks each of its subdirectories that `planned` does not contain. With an empty `planned`,
/// files-only starts walk every subdirectory in their slice.
pub fn walk(
    root: Arc<OwnedFd>,
    starts: Vec<WalkStart>,
    planned: &PlannedDirs,
    options: &WalkOptions,
    counters: &WalkCounters,
    sink: &(dyn Fn(ShardBatch) -> bool + Sync),
) -> Option<FileSystemFailure> {
    let root_dev = device_of(root.as_fd()).unwrap_or_default();
    let injector = Injector::new();
    let pending = AtomicUsize::new(starts.len());
    for start in starts {
        let (path, descend, slice) = match start {
            WalkStart::Subtree(path) => (path, true, None),
            WalkStart::FilesOnly(FilesOnly { path, slice }) => (path.0, false, slice),
        };
        // A files-only directory inside a subtree piece (not a plan the planner makes) is
        // entered by that subtree walk; adopting its subdirectories would walk them twice.
        let adopt_unplanned = !descend && !planned.within_subtree(&path);
        injector.push(Task::Dir(DirTask {
            parent: root.clone(),
            name: path.clone(),
            path,
            descend,
            adopt_unplanned,
            slice,
            is_start: true,
        }));
    }
    let threads = options.threads.max(1);
    let workers: Vec<Worker<Task>> = (0..threads).map(|_| Worker::new_lifo()).collect();
    let stealers: Vec<Stealer<Task>> = workers.iter().map(Worker::stealer).collect();
    let aborted = AtomicBool::new(false);
    let failure = Mutex::new(None);
    let shared = Shared {
        failure: &failure,
        planned,
        injector: &injector,
        stealers: &stealers,
        pending: &pending,
        aborted: &aborted,
        options,
        counters,
        sink,
        root_dev,
    };
    std::thread::scope(|scope| {
        for (index, local) in workers.into_iter().enumerate() {
            let shared = &shared;
            std::thread::Builder::new()
                .name(format!("walk-{index}"))
                .spawn_scoped(scope, move || WalkThread::new(shared, local).run())
                .expect("spawn walker thread");
        }
    });
    let failed = failure
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    failed.or_else(|| match rustix::fs::fstat(&root) {
        Err(errno) if fails_the_file_system(errno) => Some(FileSystemFailure {
            path: Vec::new(),
            errno,
        }),
        _ => None,
    })
}

/// What every walker thread of one walk sees. Only `pending`, `aborted` and `counters` change
/// while it runs, and only through atomics; the rest is read-only.
struct Shared<'a> {
    /// Every shard's pieces, to tell a new subdirectory of a files-only listing (module docs).
    planned: &'a PlannedDirs,
    /// The starts of the walk, taken by whichever thread is idle first.
    injector: &'a Injector<Task>,
    /// One per thread, to steal the oldest task of another thread's deque.
    stealers: &'a [Stealer<Task>],
    /// Tasks queued or running anywhere; the walk is over when it is 0 and no thread holds one.
    /// A task's count is dropped only after it ran, so a thread that finds no work while a
    /// listing is under way waits for what that listing may push.
    pending: &'a AtomicUsize,
    /// Every thread stops at its next task: the sink refused a batch, a thread panicked, or
    /// the file system failed.
    aborted: &'a AtomicBool,
    /// The first call that said the file system failed ([`fails_the_file_system`]).
    failure: &'a Mutex<Option<FileSystemFailure>>,
    options: &'a WalkOptions,
    /// The live totals, added to per chunk and per batch.
    counters: &'a WalkCounters,
    /// Where full batches go (the shard writer's channel); `false` means stop.
    sink: &'a (dyn Fn(ShardBatch) -> bool + Sync),
    /// The root's device, for `one_file_system`.
    root_dev: u64,
}

/// One walker thread: its own deque, row builders, counts and getdents buffer, so the
/// per-entry path takes no lock.
struct WalkThread<'a> {
    shared: &'a Shared<'a>,
    /// This thread's tasks, LIFO: depth-first, which keeps the pending set small.
    local: Worker<Task>,
    toc: TocBatchBuilder,
    errors: ErrorBatchBuilder,
    /// Counts not yet added to `shared.counters`.
    counts: LocalCounts,
    dirent_buf: Vec<MaybeUninit<u8>>,
}

/// Stops the whole walk when its thread unwinds (after `ignore`'s walker): the task it held
/// would never be counted done, and the other threads would wait for it forever.
struct AbortOnPanic<'a>(&'a AtomicBool);

impl Drop for AbortOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

impl<'a> WalkThread<'a> {
    fn new(shared: &'a Shared<'a>, local: Worker<Task>) -> Self {
        let o = shared.options;
        Self {
            shared,
            local,
            toc: TocBatchBuilder::new(o.shard, o.project_level, o.seen_at),
            errors: ErrorBatchBuilder::new(o.shard),
            counts: LocalCounts::default(),
            dirent_buf: vec![MaybeUninit::uninit(); 64 * 1024],
        }
    }

    fn find_task(&self) -> Option<Task> {
        self.local.pop().or_else(|| {
            std::iter::repeat_with(|| {
                self.shared
                    .injector
                    .steal_batch_and_pop(&self.local)
                    .or_else(|| self.shared.stealers.iter().map(Stealer::steal).collect())
            })
            .find(|s| !s.is_retry())
            .and_then(Steal::success)
        })
    }

    fn run(mut self) {
        let _abort_on_panic = AbortOnPanic(self.shared.aborted);
        let mut idle = 0u32;
        while !self.shared.aborted.load(Ordering::Relaxed) {
            match self.find_task() {
                Some(task) => {
                    idle = 0;
                    match task {
                        Task::Dir(dir) => self.list(dir),
                        Task::Stat(chunk) => self.stat_chunk(chunk),
                    }
                    self.shared.pending.fetch_sub(1, Ordering::AcqRel);
                }
                None if self.shared.pending.load(Ordering::Acquire) == 0 => break,
                // Others are still listing and may push work: back off briefly rather than spin.
                None => {
                    idle = (idle + 1).min(10);
                    std::thread::sleep(Duration::from_micros(20 << idle));
                }
            }
        }
        self.flush_toc();
        self.flush_errors();
        self.counts.flush(self.shared.counters);
    }

    fn send(&self, batch: ShardBatch) {
        if !(self.shared.sink)(batch) {
            self.shared.aborted.store(true, Ordering::Relaxed);
        }
    }

    fn flush_toc(&mut self) {
        if !self.toc.is_empty() {
            let batch = self.toc.finish();
            self.send(ShardBatch::Toc(batch));
        }
        self.counts.flush(self.shared.counters);
    }

    fn flush_errors(&mut self) {
        if !self.errors.is_empty() {
            let batch = self.errors.finish();
            self.send(ShardBatch::Errors(batch));
        }
    }

    fn error(&mut self, path: &[u8], operation: WalkOperation, error: Errno) {
        if fails_the_file_system(error) {
            let mut failure = self
                .shared
                .failure
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            failure.get_or_insert_with(|| FileSystemFailure {
                path: path.to_vec(),
                errno: error,
            });
            self.shared.aborted.store(true, Ordering::Relaxed);
            return;
        }
        self.counts.count_error(&error);
        self.errors.append(path, operation, &error);
        if self.errors.len() >= 1024 {
            self.flush_errors();
        }
    }

    /// Lists one directory: a row per entry, a task per subdirectory to enter.
    fn list(&mut self, task: DirTask) {
        // Every slice of a sliced directory lists it; only the first reports it unreadable.
        let reports_dir_errors = task.slice.is_none_or(|s| s.part == 0);
        self.counts.calls += 1;
        let opened = self
            .shared
            .options
            .politeness
            .call_costing(DIR_OPEN_SLOTS, || open_dir(task.parent.as_fd(), &task.name));
        let fd = match opened {
            Ok(fd) => Arc::new(fd),
            Err(e) if reports_dir_errors => {
                return self.error(&task.path, WalkOperation::OpenDir, e);
            }
            Err(_) => return,
        };
        drop(task.parent);
        let options = self.shared.options;
        if task.is_start
            && options.one_file_system
            && device_of(fd.as_fd()).is_some_and(|dev| dev != self.shared.root_dev)
        {
            return;
        }
        let mut buf = std::mem::take(&mut self.dirent_buf);
        let mut dir = RawDir::new(fd.as_fd(), &mut buf);
        let mut chunk = StatTask {
            dir: fd.clone(),
            path: task.path,
            names: Vec::new(),
            descend: task.descend,
            adopt_unplanned: task.adopt_unplanned,
        };
        let mut in_chunk = 0;
        let politeness = &*options.politeness;
        loop {
            let next = politeness.next_entry(&mut dir, || self.counts.calls += 1);
            let Some(next) = next else {
                break;
            };
            let entry = match next {
                Ok(entry) => entry,
                Err(e) => {
                    if reports_dir_errors {
                        self.error(&chunk.path, WalkOperation::ReadDir, e);
                    }
                    break;
                }
            };
            let name = entry.file_name().to_bytes_with_nul();
            let bare = &name[..name.len() - 1];
            if bare == b"." || bare == b".." {
                continue;
            }
            if task.slice.is_some_and(|slice| !slice.contains(bare)) {
                continue;
            }
            if let Some(exclude) = &options.exclude
                && exclude.is_match(OsStr::from_bytes(bare))
            {
                continue;
            }
            chunk.names.extend_from_slice(name);
            in_chunk += 1;
            if in_chunk == STAT_CHUNK {
                // A big directory: its names go out in chunks any thread may steal.
                let full = StatTask {
                    dir: chunk.dir.clone(),
                    path: chunk.path.clone(),
                    names: std::mem::take(&mut chunk.names),
                    descend: chunk.descend,
                    adopt_unplanned: chunk.adopt_unplanned,
                };
                in_chunk = 0;
                self.shared.pending.fetch_add(1, Ordering::AcqRel);
                self.local.push(Task::Stat(full));
            }
        }
        self.dirent_buf = buf;
        drop(fd);
        self.stat_chunk(chunk);
    }

    /// Stats the names of one chunk: a row each, a task per subdirectory to enter.
    fn stat_chunk(&mut self, chunk: StatTask) {
        let options = self.shared.options;
        let politeness = &*options.politeness;
        let mut rest = chunk.names.as_slice();
        while !rest.is_empty() {
            let Ok(name_c) = CStr::from_bytes_until_nul(rest) else {
                break;
            };
            rest = &rest[name_c.to_bytes_with_nul().len()..];
            let name = name_c.to_bytes();
            self.counts.calls += 1;
            let stat = politeness.call(|| {
                stat_at(
                    chunk.dir.as_fd(),
                    name_c,
                    &mut self.counts.timestamps_out_of_range,
                )
            });
            let meta = match stat {
                Ok(meta) => meta,
                Err(e) => {
                    self.error(&join(&chunk.path, name), WalkOperation::Stat, e);
                    continue;
                }
            };
            let row = EntryMeta {
                dev: options.devices.stable(meta.dev) as u64,
                ..meta
            };
            self.toc.append(&chunk.path, name, &row);
            self.count(&meta);
            if meta.kind == EntryKind::Dir
                && (chunk.descend || chunk.adopt_unplanned)
                && (!options.one_file_system || meta.dev == self.shared.root_dev)
            {
                let path = join(&chunk.path, name);
                // In a files-only listing, a subdirectory the plan does not know is new: this
                // shard, whose slice holds its name and which wrote its row, walks it whole.
                if chunk.descend || !self.shared.planned.contains(&path) {
                    self.shared.pending.fetch_add(1, Ordering::AcqRel);
                    self.local.push(Task::Dir(DirTask {
                        parent: chunk.dir.clone(),
                        name: name.to_vec(),
                        path,
                        descend: true,
                        adopt_unplanned: false,
                        slice: None,
                        is_start: false,
                    }));
                }
            }
            if self.toc.len() >= options.batch_rows {
                self.flush_toc();
            }
        }
        // Live totals per chunk, not only per batch: on a slow mount a batch can take minutes,
        // and progress lines read these.
        self.counts.flush(self.shared.counters);
    }

    fn count(&mut self, meta: &EntryMeta) {
        let c = &mut self.counts;
        c.entries += 1;
        match meta.kind {
            EntryKind::File => {
                c.files += 1;
                c.file_bytes += meta.size;
            }
            EntryKind::Dir => c.dirs += 1,
            EntryKind::Symlink => c.symlinks += 1,
            _ => c.other_kinds += 1,
        }
    }
}
