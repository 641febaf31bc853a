//! `snapshots/<run>/summary.json`: the report's numbers (the talk's "bonus round" and more),
//! computed once by the merge and read by `scanjob report` and `report.html`.
//!
//! Files means regular files (each hard link counts, like `find -type f`); bytes is the sum of
//! their `size`. Top lists rank by the value, then by key, and hold at most [`TOP`] entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const TOP: usize = 5;

/// Entries kept in the full per-extension and per-project lists of the summary (the Parquet
/// rollups have all of them).
pub const LIST_LIMIT: usize = 1000;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Group {
    pub key: String,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Top {
    pub by_files: Vec<Group>,
    pub by_bytes: Vec<Group>,
}

impl Top {
    pub fn of(groups: &[Group]) -> Self {
        let mut by_files = groups.to_vec();
        by_files.sort_by(|a, b| b.files.cmp(&a.files).then_with(|| a.key.cmp(&b.key)));
        by_files.truncate(TOP);
        let mut by_bytes = groups.to_vec();
        by_bytes.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.key.cmp(&b.key)));
        by_bytes.truncate(TOP);
        Self { by_files, by_bytes }
    }
}

/// Sorted by bytes (then key), at most [`LIST_LIMIT`].
pub fn listed(groups: &[Group]) -> Vec<Group> {
    let mut all = groups.to_vec();
    all.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.key.cmp(&b.key)));
    all.truncate(LIST_LIMIT);
    all
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Totals {
    pub files: u64,
    pub bytes: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub other_kinds: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bucket {
    pub bucket: String,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GrowthRow {
    pub key: String,
    pub files_before: u64,
    pub bytes_before: u64,
    pub files_now: u64,
    pub bytes_now: u64,
    pub bytes_delta: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Growth {
    pub previous_run: String,
    pub files_before: u64,
    pub bytes_before: u64,
    pub diff: DiffCounts,
    /// Owners and projects with the largest growth in bytes (most negative last).
    pub owners: Vec<GrowthRow>,
    pub projects: Vec<GrowthRow>,
}

/// How far a duplicate file group's evidence got.
pub const STAGES: [&str; 3] = ["candidate", "sampled", "confirmed"];

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Duplicates {
    /// Size threshold of candidate duplicate files and trees.
    pub min_size: u64,
    /// File groups at every stage, and the bytes of their copies beyond the first.
    pub file_groups: u64,
    pub file_wasted_bytes: u64,
    /// Groups and wasted bytes per stage, in the order of [`STAGES`] (every stage listed).
    #[serde(default)]
    pub stages: Vec<StageTotal>,
    /// The file groups with the most wasted bytes: confirmed ones first, then sampled, then
    /// candidates; at most [`TOP_FILE_GROUPS`].
    #[serde(default)]
    pub top_files: Vec<FileGroup>,
    /// What reading contents cost this night; `None` when no hash step ran.
    #[serde(default)]
    pub hashing: Option<HashTotals>,
    pub tree_groups: u64,
    pub tree_wasted_bytes: u64,
    pub top_trees: Vec<TreeGroup>,
}

/// File groups listed in the summary (the `duplicate_files` table has all of them).
pub const TOP_FILE_GROUPS: usize = 20;
/// Paths listed per file group in the summary.
pub const GROUP_PATHS: usize = 10;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StageTotal {
    pub stage: String,
    pub groups: u64,
    pub wasted_bytes: u64,
}

/// One group of files believed to hold the same bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileGroup {
    /// `candidate` (same size and name, or same size and mtime), `sampled` (and the same
    /// sampled blocks) or `confirmed` (the same SHA-256 of the whole content).
    pub stage: String,
    /// `same name`, `same mtime`, `same sample` or `same content`.
    pub rule: String,
    pub size: u64,
    /// Distinct inodes (hard links are one copy).
    pub copies: u64,
    pub wasted_bytes: u64,
    /// The content's SHA-256 (confirmed) or the sample's (sampled), hex.
    pub hash: Option<String>,
    /// The first [`GROUP_PATHS`] paths, sorted; `paths_total` counts them all.
    pub paths: Vec<String>,
    pub paths_total: u64,
}

/// What the night's hash step read, over all its pods.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HashTotals {
    pub pods: u32,
    /// Bytes the pods together were allowed to read.
    pub budget_bytes: u64,
    pub bytes_read: u64,
    /// Candidate files (distinct inodes) the pods looked at.
    pub files: u64,
    /// Files whose sampled blocks were read tonight, and whose whole content was.
    pub files_sampled: u64,
    pub files_hashed: u64,
    /// Files whose hashes came from an earlier night (same dev, inode, size, mtime, ctime).
    pub cache_hits: u64,
    /// Groups left at `sampled` (or files left at `candidate`) because the budget ran out.
    pub groups_over_budget: u64,
    pub files_over_budget: u64,
    /// Files that changed since the scan or while being read: not hashed.
    pub changed: u64,
    /// Files that could not be opened without moving their atime (O_NOATIME refused: not
    /// their owner and no CAP_FOWNER), or not at all: not read.
    pub noatime_refused: u64,
    pub unreadable: u64,
    /// The slowest pod's wall time.
    pub seconds: f64,
}

impl HashTotals {
    /// Adds another pod's totals (its wall time counts only if it is the slowest).
    pub fn add(&mut self, other: &Self) {
        self.pods += other.pods;
        self.budget_bytes += other.budget_bytes;
        self.bytes_read += other.bytes_read;
        self.files += other.files;
        self.files_sampled += other.files_sampled;
        self.files_hashed += other.files_hashed;
        self.cache_hits += other.cache_hits;
        self.groups_over_budget += other.groups_over_budget;
        self.files_over_budget += other.files_over_budget;
        self.changed += other.changed;
        self.noatime_refused += other.noatime_refused;
        self.unreadable += other.unreadable;
        self.seconds = self.seconds.max(other.seconds);
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub run: String,
    pub root: String,
    pub created: chrono::DateTime<chrono::Utc>,
    /// Shards whose rows are missing (partial snapshot) or carried from the previous snapshot.
    pub missing_shards: Vec<u32>,
    pub carried_forward_from: Option<String>,
    pub project_level: usize,
    pub totals: Totals,
    pub by_extension: Vec<Group>,
    pub by_project: Vec<Group>,
    pub top_directories: Top,
    pub top_extensions: Top,
    pub top_owners: Top,
    pub top_projects: Top,
    /// Totals per age bucket, by `mtime` and by `atime`.
    pub age: BTreeMap<String, Vec<Bucket>>,
    pub atime: AtimeCheck,
    pub growth: Option<Growth>,
    pub duplicates: Duplicates,
    /// Totals of every night the `trends` table holds, this one last.
    #[serde(default)]
    pub nights: Vec<Night>,
    #[serde(default)]
    pub top_groups: Top,
    /// The biggest directories below the root with recursive totals, for the treemap: at most
    /// [`TREEMAP_NODES`], down to [`TREEMAP_DEPTH`], every parent of one listed too.
    #[serde(default)]
    pub tree: Vec<TreeNode>,
    /// Names of the uids and gids this summary lists, where `--passwd` and `--group` gave one.
    #[serde(default)]
    pub uid_names: BTreeMap<String, String>,
    #[serde(default)]
    pub gid_names: BTreeMap<String, String>,
}

/// Directories in the summary's treemap, and how deep it goes (capped by `--rollup-depth`).
pub const TREEMAP_NODES: usize = 300;
pub const TREEMAP_DEPTH: u32 = 3;

/// One directory's recursive totals (as `rollup_by_directory` has them).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TreeNode {
    pub path: String,
    pub depth: u32,
    pub files: u64,
    pub bytes: u64,
}

/// One night's totals, for growth over all nights.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Night {
    pub run: String,
    pub scan_time: String,
    pub files: u64,
    pub bytes: u64,
}

impl Duplicates {
    /// Groups and wasted bytes of every stage in [`STAGES`]; without a hash step's totals
    /// every group is a candidate.
    pub fn stage_totals(&self) -> Vec<StageTotal> {
        STAGES
            .iter()
            .map(|&stage| {
                self.stages
                    .iter()
                    .find(|t| t.stage == stage)
                    .cloned()
                    .unwrap_or_else(|| {
                        let all = self.stages.is_empty() && stage == "candidate";
                        StageTotal {
                            stage: stage.to_string(),
                            groups: if all { self.file_groups } else { 0 },
                            wasted_bytes: if all { self.file_wasted_bytes } else { 0 },
                        }
                    })
            })
            .collect()
    }
}

/// Counts of the diff.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DiffCounts {
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    pub moved: u64,
}

/// Whether the file system tracks access times, judged from the files' timestamps.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AtimeCheck {
    /// Regular files with both atime and mtime.
    pub files: u64,
    /// Share of them read after their last modification (atime > mtime).
    pub after_mtime: f64,
    /// Share with atime == mtime exactly.
    pub equal_mtime: f64,
    /// Share with atime > ctime.
    pub after_ctime: f64,
    pub reliable: bool,
}

/// One group of identical directory trees.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TreeGroup {
    /// The directories, sorted.
    pub dirs: Vec<String>,
    /// Files and bytes in one copy.
    pub files: u64,
    pub bytes: u64,
    /// Copies that are not hard links of one another.
    pub copies: u64,
    /// `bytes × (copies − 1)`.
    pub wasted_bytes: u64,
}
