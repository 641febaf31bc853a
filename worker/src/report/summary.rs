//! `snapshots/<run>/summary.json`: the report's numbers (the talk's "bonus round" and more),
//! computed once by the merge and read by `scanjob report` and `report.html`.
//!
//! Files means regular files (each hard link counts, like `find -type f`); bytes is the sum of
//! their `size`. Top lists rank by the value, then by key, and hold at most [`TOP`] entries.

use std::collections::BTreeMap;

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::insights::history::DiffCounts;
use crate::insights::rollup::{AtimeCheck, TreeGroup};
use crate::report::owners::OwnerNames;

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

/// Bytes in binary units, one decimal ("1.2 GiB"); plain bytes below 1 KiB.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn signed_bytes(delta: i64) -> String {
    let sign = if delta < 0 { "-" } else { "+" };
    format!("{sign}{}", human_bytes(delta.unsigned_abs()))
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

impl Summary {
    /// Records the names of the uids and gids the summary lists (top owners and groups,
    /// growth by owner), so that the report shows them without the whole mapping.
    pub fn name_owners(&mut self, names: &OwnerNames) {
        let uids: Vec<&str> = (self.top_owners.by_files.iter())
            .chain(&self.top_owners.by_bytes)
            .map(|g| g.key.as_str())
            .chain(
                self.growth
                    .iter()
                    .flat_map(|g| g.owners.iter().map(|r| r.key.as_str())),
            )
            .collect();
        let gids: Vec<&str> = (self.top_groups.by_files.iter())
            .chain(&self.top_groups.by_bytes)
            .map(|g| g.key.as_str())
            .collect();
        self.uid_names = OwnerNames::named(&names.users, &uids);
        self.gid_names = OwnerNames::named(&names.groups, &gids);
    }

    /// The terminal report.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        self.write_totals(&mut out);
        self.write_tops(&mut out);
        self.write_age(&mut out);
        self.write_growth(&mut out);
        self.write_duplicates(&mut out);
        out
    }

    /// The snapshot, whether it is partial, and its totals.
    fn write_totals(&self, out: &mut String) {
        let t = &self.totals;
        let _ = writeln!(
            out,
            "snapshot {} of {} ({})",
            self.run, self.root, self.created
        );
        if !self.missing_shards.is_empty() {
            let _ = writeln!(
                out,
                "partial: shards {:?} failed{}",
                self.missing_shards,
                self.carried_forward_from
                    .as_deref()
                    .map(|r| format!("; their rows are carried from {r}"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(
            out,
            "files {}  size {} ({} B)  directories {}  symlinks {}  other {}  errors {}",
            t.files,
            human_bytes(t.bytes),
            t.bytes,
            t.directories,
            t.symlinks,
            t.other_kinds,
            t.errors
        );
    }

    /// The top directories, extensions, owners, groups and projects, and the per-type and
    /// per-project lists.
    fn write_tops(&self, out: &mut String) {
        let none = BTreeMap::new();
        let top = |out: &mut String, title: &str, top: &Top, names: &BTreeMap<String, String>| {
            let _ = writeln!(out, "\ntop {TOP} {title} by files:");
            group_lines(out, &top.by_files, names);
            let _ = writeln!(out, "top {TOP} {title} by size:");
            group_lines(out, &top.by_bytes, names);
        };
        top(
            out,
            "directories (files directly inside)",
            &self.top_directories,
            &none,
        );
        top(out, "extensions", &self.top_extensions, &none);
        top(out, "owners", &self.top_owners, &self.uid_names);
        if !self.top_groups.by_bytes.is_empty() {
            top(out, "groups", &self.top_groups, &self.gid_names);
        }
        if self.project_level > 0 {
            top(
                out,
                &format!("projects (path level {})", self.project_level),
                &self.top_projects,
                &none,
            );
        }
        let _ = writeln!(
            out,
            "\nper file type ({} extensions):",
            self.by_extension.len()
        );
        group_lines(
            out,
            &self.by_extension[..self.by_extension.len().min(15)],
            &none,
        );
        if self.project_level > 0 {
            let _ = writeln!(out, "per project ({}):", self.by_project.len());
            group_lines(
                out,
                &self.by_project[..self.by_project.len().min(15)],
                &none,
            );
        }
    }

    /// Age histograms by mtime and atime, and whether atime can be trusted.
    fn write_age(&self, out: &mut String) {
        for (time, buckets) in ["mtime", "atime"]
            .iter()
            .filter_map(|t| self.age.get(*t).map(|b| (t, b)))
        {
            let _ = writeln!(out, "\nage by {time}:");
            for b in buckets {
                let _ = writeln!(
                    out,
                    "  {:>8}  {:>12}  {:>10}",
                    b.bucket,
                    b.files,
                    human_bytes(b.bytes)
                );
            }
        }
        let a = &self.atime;
        let _ = writeln!(
            out,
            "atime {}: {:.1} % of {} files read after their last write",
            if a.reliable {
                "reliable"
            } else {
                "NOT tracked by this file system (tiering by atime would mislead)"
            },
            a.after_mtime * 100.0,
            a.files
        );
    }

    /// Growth and the diff against the previous snapshot.
    fn write_growth(&self, out: &mut String) {
        let t = &self.totals;
        match &self.growth {
            Some(g) => {
                let _ = writeln!(
                    out,
                    "\nsince {}: files {} -> {}  size {} -> {}  added {}  removed {}  changed {}  moved {}",
                    g.previous_run,
                    g.files_before,
                    t.files,
                    human_bytes(g.bytes_before),
                    human_bytes(t.bytes),
                    g.diff.added,
                    g.diff.removed,
                    g.diff.changed,
                    g.diff.moved
                );
                let none = BTreeMap::new();
                for (title, rows, names) in [
                    ("owners", &g.owners, &self.uid_names),
                    ("projects", &g.projects, &none),
                ] {
                    if rows.is_empty() {
                        continue;
                    }
                    let _ = writeln!(out, "growth by {title}:");
                    for r in rows {
                        let _ = writeln!(
                            out,
                            "  {:>12}  {}",
                            signed_bytes(r.bytes_delta),
                            named(&r.key, names)
                        );
                    }
                }
            }
            None => {
                let _ = writeln!(out, "\nno previous snapshot: no growth or diff");
            }
        }
    }

    /// Duplicate file groups by stage, the hash step's totals, the top file groups and trees.
    fn write_duplicates(&self, out: &mut String) {
        let d = &self.duplicates;
        let _ = writeln!(
            out,
            "\nduplicates (>= {}): {} file groups wasting {}, {} directory trees wasting {}",
            human_bytes(d.min_size),
            d.file_groups,
            human_bytes(d.file_wasted_bytes),
            d.tree_groups,
            human_bytes(d.tree_wasted_bytes)
        );
        let stages: Vec<String> = d
            .stage_totals()
            .iter()
            .map(|t| {
                format!(
                    "{} {} groups wasting {}",
                    t.stage,
                    t.groups,
                    human_bytes(t.wasted_bytes)
                )
            })
            .collect();
        let _ = writeln!(out, "file groups by stage: {}", stages.join(", "));
        match &d.hashing {
            Some(h) => {
                let _ = writeln!(
                    out,
                    "contents read: {} of a {} budget by {} pods in {:.0} s; {} files sampled,                      {} hashed, {} from the cache; not read: {} refused O_NOATIME, {} unreadable,                      {} changed, {} over budget",
                    human_bytes(h.bytes_read),
                    human_bytes(h.budget_bytes),
                    h.pods,
                    h.seconds,
                    h.files_sampled,
                    h.files_hashed,
                    h.cache_hits,
                    h.noatime_refused,
                    h.unreadable,
                    h.changed,
                    h.files_over_budget
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "contents not read: groups share name or mtime and size"
                );
            }
        }
        if !d.top_files.is_empty() {
            let _ = writeln!(out, "top file groups:");
        }
        for g in &d.top_files {
            let listed: Vec<&str> = g.paths.iter().take(3).map(String::as_str).collect();
            let more = g.paths_total.saturating_sub(listed.len() as u64);
            let _ = writeln!(
                out,
                "  {:>10} wasted: {:<9} {} copies of {}: {}{}",
                human_bytes(g.wasted_bytes),
                g.stage,
                g.copies,
                human_bytes(g.size),
                listed.join(", "),
                if more > 0 {
                    format!(" (+{more} more)")
                } else {
                    String::new()
                }
            );
        }
        if !d.top_trees.is_empty() {
            let _ = writeln!(out, "top directory trees:");
        }
        for g in &d.top_trees {
            let _ = writeln!(
                out,
                "  {:>10} wasted: {} copies of {} files, {}: {}",
                human_bytes(g.wasted_bytes),
                g.copies,
                g.files,
                human_bytes(g.bytes),
                g.dirs.join(", ")
            );
        }
    }
}

/// One line per group: files, size, key (with its name where `names` has one).
fn group_lines(out: &mut String, groups: &[Group], names: &BTreeMap<String, String>) {
    for g in groups {
        let _ = writeln!(
            out,
            "  {:>12}  {:>10}  {}",
            g.files,
            human_bytes(g.bytes),
            named(&g.key, names)
        );
    }
}

/// `name (id)` where `names` has the id, else the id.
fn named(key: &str, names: &BTreeMap<String, String>) -> String {
    match names.get(key) {
        Some(name) => format!("{name} ({key})"),
        None => shown(key).to_string(),
    }
}

fn shown(key: &str) -> &str {
    if key.is_empty() { "(none)" } else { key }
}
