//! The object layout (docs/design.md §3), the contract between plan, scan, merge and readers:
//!
//! ```text
//! <url>/runs/<run>/plan.json                       ShardPlan
//! <url>/toc/_delta_log/<version>.json               the ToC as a Delta table, a version a night
//! <url>/toc/<run>/shards/<i>/part-<n>.parquet       ToC rows of shard i
//! <url>/toc/<run>/merged/…/part-<n>.parquet         ToC with first_seen carried (when there is
//!                                                   a previous snapshot; else the shards' parts
//!                                                   are the night's table)
//! <url>/runs/<run>/shards/<i>/errors-<n>.parquet    entries that could not be listed or stat'ed
//! <url>/runs/<run>/shards/<i>/_SUCCESS.json         ShardSuccess, written last
//! <url>/<table>/_delta_log/, <url>/<table>/<run>/…  each derived table (diff_added, rollup_by_uid,
//!                                                   …: DERIVED_TABLES) as a Delta table
//! <url>/snapshots/<run>/summary.json, report.html
//! <url>/snapshots/<run>/manifest.json               SnapshotManifest: the committed snapshot
//! <url>/latest.json                                 LatestPointer to the newest snapshot
//! ```
//!
//! A shard's files count only once its `_SUCCESS.json` lists them, and a snapshot exists only
//! once its manifest is written and the Delta table has a version for it. The manifest is
//! written after every file it names, the table's version after the manifest, and
//! `latest.json` last. Readers of the ToC read the Delta table; the manifest and `latest.json`
//! name the same files (and `latest.json` the table's version).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fs::nfs::ClientOptions;
use crate::shard::ShardAssignment;
use crate::store::writer::PartFile;

// The paths the operator names too are declared in the contract crate.
pub use scanjob_contract::layout::{
    LATEST_PATH, PLAN_FILE, manifest_path, plan_path, run_dir, run_id, shard_dir, snapshot_dir,
    split_run_url, success_path, url_of, valid_run_id,
};

pub const LAYOUT_FORMAT: u32 = 1;

/// The derived tables, each a Delta table at `<name>/` under the output (the manifest's
/// `derived` map names their files by the same names).
pub const DERIVED_TABLES: [&str; 14] = [
    "errors",
    "diff_added",
    "diff_removed",
    "diff_changed",
    "growth",
    "rollup_by_extension",
    "rollup_by_uid",
    "rollup_by_gid",
    "rollup_by_project",
    "rollup_age",
    "rollup_by_directory",
    "duplicate_trees",
    "duplicate_files",
    "file_hashes",
];

/// The trends table: one row per night and dimension key (files and bytes in total, per
/// extension, uid, gid, project and age bucket) with the scan's time. Unlike the other
/// derived tables it only grows: each night's commit adds its rows and removes none, and
/// retention keeps them.
pub const TRENDS_TABLE: &str = "trends";

/// `<table>/<run>`: where the merge writes one night's files of derived table `table`.
pub fn derived_dir(table: &str, run: &str) -> String {
    format!("{table}/{run}")
}

/// `toc/<run>`: the Delta table's files of one night (see [`crate::store::delta`]).
pub fn toc_night_dir(run: &str) -> String {
    format!("{}/{run}", crate::store::delta::TOC_TABLE)
}

/// `toc/<run>/shards/<i>`: the ToC rows shard `i` wrote. A first night's table is these files.
pub fn toc_shard_dir(run: &str, index: u32) -> String {
    format!("{}/shards/{index}", toc_night_dir(run))
}

/// `toc/<run>/merged`: the ToC with first_seen carried, written by the merge when there is a
/// previous snapshot; that night's table is these files.
pub fn toc_merged_dir(run: &str) -> String {
    format!("{}/merged", toc_night_dir(run))
}

/// `snapshots/<run>/summary.json`: the report's numbers.
pub fn summary_path(run: &str) -> String {
    format!("{}/summary.json", snapshot_dir(run))
}

/// `snapshots/<run>/report.html`: the self-contained report.
pub fn report_path(run: &str) -> String {
    format!("{}/report.html", snapshot_dir(run))
}

/// `<dir>/<stem>-<n>.parquet`: the n-th Parquet file a writer rolls over to in `dir` (`stem`
/// is `part` or `errors`).
pub fn part_path(dir: &str, stem: &str, n: usize) -> String {
    format!("{dir}/{stem}-{n:05}.parquet")
}

/// `<dir>/<sub>`: a subdirectory of a table's directory, one per query partition or join pass,
/// so that concurrent writers never name the same part.
pub fn table_subdir(dir: &str, sub: impl std::fmt::Display) -> String {
    format!("{dir}/{sub}")
}

/// Options every shard of a run walks with, fixed at planning time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WalkSettings {
    pub one_file_system: bool,
    pub exclude: Vec<String>,
    /// 1-based path level whose component is the `project` column; 0 for none.
    pub project_level: usize,
    /// The AUTH_SYS identity an `nfs://` root is read as; nobody (65534) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs_uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs_gid: Option<u32>,
    /// Connect to an `nfs://` root from a reserved port (below 1024).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nfs_reserved_port: bool,
    /// Further addresses of an `nfs://` root's server to spread the connections over.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nfs_addresses: Vec<String>,
}

impl WalkSettings {
    /// How the shards' client meets the server of an `nfs://` root.
    pub fn nfs_client(&self) -> ClientOptions {
        let nobody = ClientOptions::default();
        ClientOptions {
            uid: self.nfs_uid.unwrap_or(nobody.uid),
            gid: self.nfs_gid.unwrap_or(nobody.gid),
            reserved_port: self.nfs_reserved_port,
            addresses: self.nfs_addresses.clone(),
        }
    }
}

/// `runs/<run>/plan.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardPlan {
    pub format: u32,
    pub run: String,
    /// Changes whenever a plan is made anew, so shards of an older plan for the same run id
    /// are never merged with this one.
    pub plan_id: String,
    pub root: String,
    pub output: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub settings: WalkSettings,
    /// "previous-snapshot", "top-level-count" or "single-shard": what the balance is based on.
    pub balanced_by: String,
    pub previous_run: Option<String>,
    pub planning_seconds: f64,
    /// File-system calls the planner made (directory opens and stats of a first run's
    /// top-level count; none when it balances by the previous snapshot).
    #[serde(default)]
    pub planning_calls: u64,
    pub estimated_imbalance: f64,
    pub shards: Vec<ShardAssignment>,
}

/// Counts of one shard or a whole snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntryCounts {
    pub entries: u64,
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub other_kinds: u64,
    /// Sum of `size` over regular files.
    pub bytes: u64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub timestamps_out_of_range: u64,
}

impl EntryCounts {
    pub fn add(&mut self, other: &Self) {
        self.entries += other.entries;
        self.files += other.files;
        self.directories += other.directories;
        self.symlinks += other.symlinks;
        self.other_kinds += other.other_kinds;
        self.bytes += other.bytes;
        self.errors += other.errors;
        for (kind, n) in &other.errors_by_kind {
            *self.errors_by_kind.entry(kind.clone()).or_default() += n;
        }
        self.timestamps_out_of_range += other.timestamps_out_of_range;
    }
}

/// `runs/<run>/shards/<i>/_SUCCESS.json`: written after every file of the shard is complete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardSuccess {
    pub format: u32,
    pub run: String,
    pub plan_id: String,
    pub index: u32,
    pub started: chrono::DateTime<chrono::Utc>,
    pub duration_seconds: f64,
    pub threads: usize,
    #[serde(flatten)]
    pub counts: EntryCounts,
    pub toc_files: Vec<PartFile>,
    pub error_files: Vec<PartFile>,
    /// File-system calls made, and how the budget and latency guard (if any) did.
    #[serde(default)]
    pub politeness: crate::fs::politeness::PolitenessReport,
    /// An `nfs://` root's RPCs by procedure, with their latencies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<crate::fs::nfs::RpcReport>,
}

impl ShardSuccess {
    pub fn output_bytes(&self) -> u64 {
        self.toc_files
            .iter()
            .chain(&self.error_files)
            .map(|f| f.bytes)
            .sum()
    }
}

/// `runs/<run>/hashes/`: what the hash step's pods wrote.
pub fn hashes_dir(run: &str) -> String {
    format!("{}/hashes", run_dir(run))
}

/// `runs/<run>/hashes/_SUCCESS-<index>.json`: written after the partition's hashes.
pub fn hash_success_path(run: &str, index: u32) -> String {
    format!("{}/_SUCCESS-{index}.json", hashes_dir(run))
}

/// One partition of the hash step, done.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HashSuccess {
    pub format: u32,
    pub run: String,
    pub plan_id: String,
    pub index: u32,
    pub count: u32,
    pub started: chrono::DateTime<chrono::Utc>,
    /// Every hash of the partition's candidates, read tonight or from the cache.
    pub files: Vec<PartFile>,
    pub totals: crate::summary::HashTotals,
    pub politeness: crate::fs::politeness::PolitenessReport,
}

/// `runs/<run>/joins/<index>/`: what join partition `index` of the merge wrote besides its
/// ToC parts (which go to the snapshot's `toc/<run>/merged/<pass>/`).
pub fn join_dir(run: &str, index: u32) -> String {
    format!("{}/joins/{index}", run_dir(run))
}

/// `runs/<run>/joins/_SUCCESS-<index>.json`: written after the partition's files.
pub fn join_success_path(run: &str, index: u32) -> String {
    format!("{}/joins/_SUCCESS-{index}.json", run_dir(run))
}

/// One join partition of the merge, done (`scanjob join`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JoinSuccess {
    pub format: u32,
    pub run: String,
    pub plan_id: String,
    pub index: u32,
    pub count: u32,
    /// What it joined against, and which shards' rows it carried: the merge uses the
    /// partitions only when it finds the same.
    pub previous_run: Option<String>,
    pub missing_shards: Vec<u32>,
    pub toc_files: Vec<PartFile>,
    pub delta_files: Vec<PartFile>,
    pub seconds: f64,
}

/// One shard as the snapshot records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardSummary {
    pub index: u32,
    pub entries: u64,
    pub errors: u64,
    pub duration_seconds: f64,
    /// Set when the shard's rows come from an earlier snapshot because this run's attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried_forward_from: Option<String>,
}

/// `snapshots/<run>/manifest.json`: the committed snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotManifest {
    pub format: u32,
    pub schema_version: u32,
    pub run: String,
    pub plan_id: String,
    pub root: String,
    pub created: chrono::DateTime<chrono::Utc>,
    #[serde(flatten)]
    pub counts: EntryCounts,
    /// Parquet files of the `toc` table, relative to the output URL.
    pub toc_files: Vec<PartFile>,
    /// Parquet files of the `errors` table, relative to the output URL.
    pub error_files: Vec<PartFile>,
    pub shards: Vec<ShardSummary>,
    /// Shards of the plan whose rows this snapshot lacks: published anyway by
    /// `merge --max-missing-shards`. Empty for a complete snapshot (and in older manifests).
    #[serde(default)]
    pub missing_shards: Vec<u32>,
    /// The walk never opens files and asks for `O_NOATIME`, so atime is the users' last access
    /// unless something else on the system reads the files.
    pub atime_reflects_user_access: bool,
    /// Whether the file system tracks access times at all, judged from the rows: `false` when
    /// (nearly) no file was read after its last write, as on Isilon's default or `noatime`
    /// mounts. Tiering by atime is meaningless then. Details in the summary's `atime`.
    #[serde(default = "default_true")]
    pub atime_reliable: bool,
    /// The snapshot `first_seen` and the diff tables compare with; also the source of the
    /// carried-forward rows.
    pub previous_run: Option<String>,
    /// Rows copied from `previous_run` for the shards in `missing_shards` (their files were not
    /// seen this time, so they keep their old `last_seen` and are not reported removed).
    #[serde(default)]
    pub carried_forward_rows: u64,
    /// Derived tables (rollups, diff, duplicates) by name, relative to the output URL.
    #[serde(default)]
    pub derived: BTreeMap<String, Vec<PartFile>>,
    /// `summary.json` (the report's numbers) and `report.html`, relative to the output URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

fn default_true() -> bool {
    true
}

/// `latest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LatestPointer {
    pub run: String,
    pub manifest: String,
    pub updated: chrono::DateTime<chrono::Utc>,
    /// The version of the Delta table `toc/` that holds this run's rows (absent in pointers
    /// written before the table existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toc_version: Option<u64>,
}
