//! The terminal report: what `scanjob report` prints of a snapshot's summary, and the owner and
//! group names the summary records for the uids and gids it lists.

use std::collections::BTreeMap;
use std::fmt::Write;

use scanjob_contract::units::human_bytes;

use crate::report::owners::OwnerNames;
use crate::summary::{Group, Summary, TOP, Top};

fn signed_bytes(delta: i64) -> String {
    let sign = if delta < 0 { "-" } else { "+" };
    format!("{sign}{}", human_bytes(delta.unsigned_abs()))
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
