//! What a shard is, as the plan writes it and the scan, the merge and the checks read it: the
//! pieces a plan assigns (whole subtrees, and directories listed without entering them, whole
//! or one slice of their names), each shard's assignment, the set of every planned directory
//! the walker consults in a files-only listing, and the per-directory entry counts a plan is
//! cut by.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::pathbytes::{PathBytes, parent_of};

/// Where a shard's walk starts, relative to the scan root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkStart {
    /// Every entry below this directory, recursively.
    Subtree(Vec<u8>),
    /// Only the entries of this directory; its subdirectories are rows but are not entered.
    FilesOnly(FilesOnly),
}

/// A directory listed without entering its subdirectories, whole or one slice of its names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FilesOnly {
    pub path: PathBytes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<NameSlice>,
}

/// The entries of a directory whose name hashes to `part` modulo `of`: how one huge directory
/// is shared between shards. Every slice lists the directory; each stats only its own names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NameSlice {
    pub part: u32,
    pub of: u32,
}

impl NameSlice {
    /// FNV-1a: stable across builds and platforms, unlike std's hasher.
    pub fn contains(&self, name: &[u8]) -> bool {
        let hash = name.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        hash % u64::from(self.of.max(1)) == u64::from(self.part)
    }
}

/// The directories a plan assigns to any of its shards, for a files-only listing to tell a
/// subdirectory someone else walks from one the plan does not know (see the module docs).
///
/// Holds every subtree root and files-only path of every shard, and every ancestor of those:
/// a directory the plan never names itself but that holds planned pieces is not the listing
/// shard's to enter either, or those pieces would be walked twice. Built once per shard scan;
/// a plan has at most a few hundred thousand pieces, so a set of path bytes is small enough.
#[derive(Debug, Default)]
pub struct PlannedDirs {
    /// Path → whether it is a subtree root (false: a files-only path or only an ancestor).
    dirs: HashMap<Vec<u8>, bool>,
}

impl PlannedDirs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one piece of some shard's assignment.
    pub fn add(&mut self, start: &WalkStart) {
        let (path, subtree) = match start {
            WalkStart::Subtree(path) => (path.as_slice(), true),
            WalkStart::FilesOnly(files_only) => (files_only.path.0.as_slice(), false),
        };
        self.add_path(path, subtree);
    }

    /// Adds a subtree root (`subtree`) or a files-only path, and its ancestors.
    pub fn add_path(&mut self, path: &[u8], subtree: bool) {
        *self.dirs.entry(path.to_vec()).or_default() |= subtree;
        let mut p = path;
        while !p.is_empty() {
            p = parent_of(p);
            if self.dirs.contains_key(p) {
                // Its ancestors were added with it.
                break;
            }
            self.dirs.insert(p.to_vec(), false);
        }
    }

    /// Whether the plan walks or lists `path`, or something below it.
    pub fn contains(&self, path: &[u8]) -> bool {
        self.dirs.contains_key(path)
    }

    /// Whether `path` or one of its ancestors is a subtree root: a subtree walk reaches all of it.
    pub fn within_subtree(&self, path: &[u8]) -> bool {
        let mut p = path;
        loop {
            if self.dirs.get(p).copied().unwrap_or(false) {
                return true;
            }
            if p.is_empty() {
                return false;
            }
            p = parent_of(p);
        }
    }

    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }
}

/// What the planner knows of one directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Entries directly inside (files, subdirectories, links, …).
    pub entries: u64,
    /// Whether `entries` was observed; unlisted directories get an estimate and are not cut.
    pub listed: bool,
}

/// Directories by path relative to the scan root ("" is the root itself).
pub type DirTable = HashMap<Vec<u8>, DirStats>;

/// The directories one shard lists.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardAssignment {
    pub index: u32,
    /// Walked recursively; the subtree's own directory entry is a row of its parent's shard.
    pub subtrees: Vec<PathBytes>,
    /// Listed without entering subdirectories.
    pub files_only: Vec<FilesOnly>,
    /// The planner's estimate of this shard's rows.
    pub estimated_entries: u64,
}

impl ShardAssignment {
    pub fn walk_starts(&self) -> Vec<WalkStart> {
        self.subtrees
            .iter()
            .map(|p| WalkStart::Subtree(p.0.clone()))
            .chain(self.files_only.iter().cloned().map(WalkStart::FilesOnly))
            .collect()
    }
}

/// Every directory `plan` (all of its shards) walks or lists, for a shard to tell which
/// subdirectories of its files-only directories no piece covers.
pub fn planned_dirs(plan: &[ShardAssignment]) -> PlannedDirs {
    let mut planned = PlannedDirs::new();
    for shard in plan {
        for subtree in &shard.subtrees {
            planned.add_path(&subtree.0, true);
        }
        for files_only in &shard.files_only {
            planned.add_path(&files_only.path.0, false);
        }
    }
    planned
}
