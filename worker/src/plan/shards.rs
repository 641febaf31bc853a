//! Splitting a tree into balanced shards ("slice the pyramid", after GUFI).
//!
//! The planner knows, for some directories, how many entries they hold directly: all of them
//! when an earlier snapshot exists ([`crate::store::previous`]), the top levels otherwise (a quick
//! breadth-first listing, [`count_top_levels`]). From these it expands the top of the tree:
//! a subtree heavier than a grain (a tenth of one shard's share) is replaced by its own directory,
//! listed "files only", plus its subdirectories as subtrees, until every piece is light enough or
//! cannot be cut further. A directory that alone holds more than half a shard's share is split
//! into name-hash slices, each listed by a different shard. The pieces are then packed into shards
//! largest first, each into the currently lightest shard.
//!
//! Every directory listing belongs to exactly one piece and every entry is a row of the piece
//! that lists its parent, so the shards of a plan never overlap and together cover the tree as
//! the planner knew it. The tree the shards walk may have more: a directory new since the
//! snapshot, or created after the top-level count, inside a directory the plan lists files-only.
//! No piece names it, so the walker enters it from that files-only listing, in the one shard
//! whose name slice holds it ([`crate::shard::planned_dirs`], and the module docs of [`crate::scan::walk`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ffi::OsStr;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use globset::GlobSet;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FileType, RawDir};

use crate::fs::calls::{device_of, open_dir, stat_at};
use crate::fs::politeness::{DIR_OPEN_SLOTS, Politeness};
use crate::pathbytes::{PathBytes, join, parent_of};
use crate::shard::{DirStats, DirTable, FilesOnly, NameSlice, ShardAssignment};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PieceKind {
    Subtree,
    FilesOnly(Option<NameSlice>),
}

#[derive(Debug, Clone, Copy)]
struct Piece {
    node: usize,
    kind: PieceKind,
    weight: u64,
}

struct Tree<'a> {
    paths: Vec<&'a [u8]>,
    own: Vec<u64>,
    listed: Vec<bool>,
    children: Vec<Vec<usize>>,
    subtree: Vec<u64>,
}

impl<'a> Tree<'a> {
    /// Builds the directory tree of `table`; directories only known as someone's parent are
    /// added unlisted. `unlisted_estimate` stands in for the entries of unlisted directories.
    fn build(table: &'a DirTable, unlisted_estimate: u64) -> Self {
        let mut paths: Vec<&[u8]> = table.keys().map(Vec::as_slice).collect();
        // Missing ancestors: a table from a partial source may name a/b/c without a/b.
        let mut known: std::collections::HashSet<&[u8]> = paths.iter().copied().collect();
        let mut i = 0;
        while i < paths.len() {
            let mut p = paths[i];
            while !p.is_empty() {
                p = parent_of(p);
                if !known.insert(p) {
                    break;
                }
                paths.push(p);
            }
            i += 1;
        }
        if known.insert(&[]) {
            paths.push(&[]);
        }
        // Sorted, a parent comes before its children; children lists come out in name order.
        paths.sort_unstable();
        let index: HashMap<&[u8], usize> = paths.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        let n = paths.len();
        let mut own = vec![unlisted_estimate; n];
        let mut listed = vec![false; n];
        let mut children = vec![Vec::new(); n];
        for (i, p) in paths.iter().enumerate() {
            if let Some(stats) = table.get(*p)
                && stats.listed
            {
                own[i] = stats.entries;
                listed[i] = true;
            }
            if !p.is_empty() {
                children[index[parent_of(p)]].push(i);
            }
        }
        let mut subtree = own.clone();
        for i in (1..n).rev() {
            let parent = index[parent_of(paths[i])];
            subtree[parent] += subtree[i];
        }
        Self {
            paths,
            own,
            listed,
            children,
            subtree,
        }
    }
}

/// Balance of a plan: the heaviest shard's estimate over the mean.
pub fn imbalance(assignments: &[ShardAssignment]) -> f64 {
    let total: u64 = assignments.iter().map(|a| a.estimated_entries).sum();
    let max = assignments
        .iter()
        .map(|a| a.estimated_entries)
        .max()
        .unwrap_or(0);
    if total == 0 {
        1.0
    } else {
        max as f64 * assignments.len() as f64 / total as f64
    }
}

/// Splits the tree described by `table` into `shards` assignments.
pub fn assign_shards(
    table: &DirTable,
    shards: u32,
    unlisted_estimate: u64,
) -> Vec<ShardAssignment> {
    let shards = shards.max(1);
    let tree = Tree::build(table, unlisted_estimate);
    let pieces = if shards == 1 {
        vec![Piece {
            node: 0,
            kind: PieceKind::Subtree,
            weight: tree.subtree[0],
        }]
    } else {
        cut(&tree, shards)
    };
    pack(&tree, pieces, shards)
}

/// The smallest piece worth cutting out of a subtree or slicing out of a directory.
const MIN_GRAIN: u64 = 256;

fn cut(tree: &Tree<'_>, shards: u32) -> Vec<Piece> {
    let total = tree.subtree[0];
    // Below a few hundred entries a piece costs more in plan size and listings than it balances.
    let grain = (total / (u64::from(shards) * 10)).max(MIN_GRAIN);
    // Enough pieces for a good packing, few enough that the plan stays small.
    let max_pieces = 200 * shards as usize + 10_000;
    let mut heap = BinaryHeap::from([(tree.subtree[0], 0usize)]);
    let mut pieces = Vec::new();
    while let Some((weight, node)) = heap.pop() {
        // A heavy leaf is "cut" too: it becomes a files-only piece, which can then be sliced.
        let cuttable =
            weight > grain && tree.listed[node] && pieces.len() + heap.len() < max_pieces;
        if !cuttable {
            pieces.push(Piece {
                node,
                kind: PieceKind::Subtree,
                weight,
            });
            continue;
        }
        pieces.push(Piece {
            node,
            kind: PieceKind::FilesOnly(None),
            weight: tree.own[node],
        });
        for &child in &tree.children[node] {
            heap.push((tree.subtree[child], child));
        }
    }
    // A directory heavier than half a shard's share is listed by several shards, each taking
    // the entries whose name hashes to its slice. Every slice reads the whole listing (cheap:
    // names only) but stats only its own entries (the cost that matters), so slices are made
    // as large as balance allows rather than grain-sized.
    let slice_weight = (total / (2 * u64::from(shards))).max(MIN_GRAIN);
    let mut sliced = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match piece.kind {
            PieceKind::FilesOnly(None) if piece.weight > slice_weight => {
                let of = piece.weight.div_ceil(slice_weight).min(u64::from(shards)) as u32;
                sliced.extend((0..of).map(|part| Piece {
                    node: piece.node,
                    kind: PieceKind::FilesOnly(Some(NameSlice { part, of })),
                    weight: piece.weight / u64::from(of),
                }));
            }
            _ => sliced.push(piece),
        }
    }
    sliced
}

fn pack(tree: &Tree<'_>, mut pieces: Vec<Piece>, shards: u32) -> Vec<ShardAssignment> {
    // Largest first into the lightest shard; ties go to the lowest index, so plans are stable.
    pieces.sort_by(|a, b| {
        b.weight
            .cmp(&a.weight)
            .then_with(|| tree.paths[a.node].cmp(tree.paths[b.node]))
    });
    let mut assignments: Vec<ShardAssignment> = (0..shards)
        .map(|index| ShardAssignment {
            index,
            ..Default::default()
        })
        .collect();
    let mut lightest: BinaryHeap<Reverse<(u64, u32)>> =
        (0..shards).map(|i| Reverse((0, i))).collect();
    for piece in pieces {
        let Reverse((load, index)) = lightest.pop().expect("shards > 0");
        let shard = &mut assignments[index as usize];
        let path = PathBytes(tree.paths[piece.node].to_vec());
        match piece.kind {
            PieceKind::Subtree => shard.subtrees.push(path),
            PieceKind::FilesOnly(slice) => shard.files_only.push(FilesOnly { path, slice }),
        }
        shard.estimated_entries += piece.weight;
        lightest.push(Reverse((load + piece.weight, index)));
    }
    for shard in &mut assignments {
        shard.subtrees.sort();
        shard.files_only.sort();
    }
    assignments
}

/// How the top-level count lists the tree.
pub struct CountOptions<'a> {
    /// Directories it may list.
    pub max_dirs: usize,
    pub exclude: Option<&'a GlobSet>,
    pub one_file_system: bool,
    /// Directories listed at once, as the scan's walker threads.
    pub threads: usize,
    /// The scan's operations budget and latency guard: every open and stat goes through it.
    pub politeness: &'a Politeness,
}

/// A directory the count has yet to list: its parent's descriptor, its name and its path.
type Pending = (Arc<OwnedFd>, Vec<u8>, Vec<u8>);

/// What listing one directory found: its path, its stats and its subdirectories, in listing
/// order.
type Listed = (Vec<u8>, DirStats, Vec<Pending>);

/// Lists the top of the tree breadth-first (names only; a stat only where the directory entry
/// does not give the type) until `options.max_dirs` directories are listed. Used when there is
/// no earlier snapshot to balance by. Each level is listed by `options.threads` threads, every
/// open and stat under the scan's budget and latency guard; the directories listed are exactly
/// those a one-thread breadth-first listing would list (each level in order, up to what the
/// budget leaves). Returns the table, the mean entries of a listed directory and the
/// file-system calls made.
pub fn count_top_levels(root: Arc<OwnedFd>, options: &CountOptions<'_>) -> (DirTable, u64, u64) {
    let root_dev = options
        .politeness
        .call(|| device_of(root.as_fd()))
        .unwrap_or_default();
    let calls = AtomicU64::new(1);
    let mut table = DirTable::new();
    let mut level: Vec<Pending> = vec![(root, Vec::new(), Vec::new())];
    while !level.is_empty() {
        let room = options.max_dirs.saturating_sub(table.len());
        for (_, _, path) in level.split_off(level.len().min(room)) {
            table.entry(path).or_default();
        }
        let mut next = Vec::new();
        for (path, stats, children) in list_level(level, options, root_dev, &calls) {
            table.insert(path, stats);
            next.extend(children);
        }
        level = next;
    }
    let estimate = unlisted_estimate(&table);
    (table, estimate, calls.into_inner())
}

/// What an unlisted directory of a top-level count stands for: the mean entries of a listed
/// directory below the root (at least 1).
pub fn unlisted_estimate(table: &DirTable) -> u64 {
    let listed: Vec<u64> = table
        .iter()
        .filter(|(p, s)| s.listed && !p.is_empty())
        .map(|(_, s)| s.entries)
        .collect();
    if listed.is_empty() {
        1
    } else {
        (listed.iter().sum::<u64>() / listed.len() as u64).max(1)
    }
}

/// Lists every directory of `level` with up to `options.threads` threads; the results are in
/// `level`'s order.
fn list_level(
    level: Vec<Pending>,
    options: &CountOptions<'_>,
    root_dev: u64,
    calls: &AtomicU64,
) -> Vec<Listed> {
    let count = level.len();
    let work = Mutex::new(level.into_iter().enumerate());
    let mut listed: Vec<Option<Listed>> = (0..count).map(|_| None).collect();
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..options.threads.clamp(1, count.max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
                    let mut done = Vec::new();
                    loop {
                        let Some((i, pending)) = work.lock().expect("not poisoned").next() else {
                            break;
                        };
                        done.push((i, list_one(pending, options, root_dev, calls, &mut buf)));
                    }
                    done
                })
            })
            .collect();
        for thread in threads {
            for (i, one) in thread.join().expect("a count thread panicked") {
                listed[i] = Some(one);
            }
        }
    });
    listed
        .into_iter()
        .map(|one| one.expect("every directory listed"))
        .collect()
}

/// Opens and lists one directory: its entries and its subdirectories (a directory that cannot
/// be opened is an empty leaf: the scan will report it).
fn list_one(
    (parent, name, path): Pending,
    options: &CountOptions<'_>,
    root_dev: u64,
    calls: &AtomicU64,
    buf: &mut [MaybeUninit<u8>],
) -> Listed {
    calls.fetch_add(1, Ordering::Relaxed);
    let opened = options
        .politeness
        .call_costing(DIR_OPEN_SLOTS, || open_dir(parent.as_fd(), &name));
    drop(parent);
    let Ok(fd) = opened else {
        return (
            path,
            DirStats {
                entries: 0,
                listed: true,
            },
            Vec::new(),
        );
    };
    let fd = Arc::new(fd);
    let mut entries = 0u64;
    let mut children = Vec::new();
    let mut ignored_ts = 0u64;
    let mut dir = RawDir::new(fd.as_fd(), buf);
    while let Some(Ok(entry)) = options.politeness.next_entry(&mut dir, || {
        calls.fetch_add(1, Ordering::Relaxed);
    }) {
        let entry_name = entry.file_name();
        let bytes = entry_name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        if options
            .exclude
            .is_some_and(|g| g.is_match(OsStr::from_bytes(bytes)))
        {
            continue;
        }
        entries += 1;
        let is_dir = match entry.file_type() {
            FileType::Directory if !options.one_file_system => true,
            FileType::Directory | FileType::Unknown => {
                calls.fetch_add(1, Ordering::Relaxed);
                options
                    .politeness
                    .call(|| stat_at(fd.as_fd(), entry_name, &mut ignored_ts))
                    .is_ok_and(|m| {
                        m.kind == crate::fs::entry::EntryKind::Dir
                            && (!options.one_file_system || m.dev == root_dev)
                    })
            }
            _ => false,
        };
        if is_dir {
            children.push((Arc::clone(&fd), bytes.to_vec(), join(&path, bytes)));
        }
    }
    (
        path,
        DirStats {
            entries,
            listed: true,
        },
        children,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::planned_dirs;

    fn table(entries: &[(&str, u64)]) -> DirTable {
        entries
            .iter()
            .map(|(p, n)| {
                (
                    p.as_bytes().to_vec(),
                    DirStats {
                        entries: *n,
                        listed: true,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn every_directory_is_listed_by_exactly_one_piece() {
        let t = table(&[
            ("", 3),
            ("a", 2),
            ("a/x", 5000),
            ("a/y", 100),
            ("b", 400),
            ("c", 1),
            ("c/d", 3000),
        ]);
        for shards in [1, 2, 3, 5, 8] {
            let plan = assign_shards(&t, shards, 1);
            assert_eq!(plan.len(), shards as usize);
            let mut listed: HashMap<Vec<u8>, Vec<Option<NameSlice>>> = HashMap::new();
            for a in &plan {
                for s in &a.subtrees {
                    for dir in t.keys().filter(|d| {
                        s.0.is_empty()
                            || *d == &s.0
                            || d.starts_with(&[s.0.as_slice(), b"/"].concat())
                    }) {
                        listed.entry(dir.clone()).or_default().push(None);
                    }
                }
                for f in &a.files_only {
                    listed.entry(f.path.0.clone()).or_default().push(f.slice);
                }
            }
            for dir in t.keys() {
                let slices = &listed[dir];
                if slices.len() > 1 {
                    let of = slices[0].expect("only sliced dirs are listed twice").of;
                    let mut parts: Vec<u32> = slices.iter().map(|s| s.unwrap().part).collect();
                    parts.sort();
                    assert_eq!(
                        parts,
                        (0..of).collect::<Vec<_>>(),
                        "{shards} shards, {dir:?}"
                    );
                }
            }
            assert_eq!(listed.len(), t.len(), "{shards} shards");
            // No known subdirectory of a files-only directory looks new to the walker.
            let planned = planned_dirs(&plan);
            for f in plan.iter().flat_map(|a| &a.files_only) {
                for dir in t
                    .keys()
                    .filter(|d| !d.is_empty() && parent_of(d) == f.path.0)
                {
                    assert!(planned.contains(dir), "{shards} shards, {dir:?}");
                }
            }
        }
    }

    #[test]
    fn a_huge_directory_is_sliced_for_balance() {
        let t = table(&[("", 2), ("hot", 100_000), ("cold", 1000)]);
        let plan = assign_shards(&t, 4, 1);
        assert!(imbalance(&plan) < 1.15, "{plan:?}");
    }
}
