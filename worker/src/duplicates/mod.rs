//! Duplicate files, in stages of evidence (as fclones and rmlint gather it on one host, here
//! split over the hash pods and the merge):
//!
//! 1. **candidate**: files of at least the minimum size in a group of the same size and name,
//!    or the same size and mtime, with two inodes or more ([`candidate_keys`], the one rule the
//!    hash step's reading and the `duplicate_files` table share). Hard links are one file.
//! 2. **sampled**: the same size and the same SHA-256 of sampled blocks (the hash step's
//!    first read, `crate::hash`).
//! 3. **confirmed**: the same SHA-256 of the whole content.
//!
//! The hash step reads the candidates ([`candidates_query`]); the merge carries the hash cache
//! ([`file_hashes_query`]) and writes each group at the furthest stage its evidence reached
//! ([`duplicate_files_query`], [`derive`]). It reads the night's ToC and the hashes, and writes
//! the `file_hashes` and `duplicate_files` tables' nights.

use std::collections::BTreeMap;

use crate::engine::Engine;
use crate::engine::columns::{string_lists, strings, u64s};
use crate::error::Result;
use crate::schema::HASH_SCHEMA;
use crate::store::Location;
use crate::store::layout::{SnapshotManifest, derived_dir};
use crate::store::parquet_schema;
use crate::store::writer::{PartFile, rows_of};
use crate::summary::{
    Duplicates, FileGroup, GROUP_PATHS, HashTotals, STAGES, StageTotal, TOP, TOP_FILE_GROUPS,
    TreeGroup,
};

/// The candidate rule: `kn` holds each (size, filename) and `km` each (size, mtime) that two
/// inodes or more of relation `rows` share (its columns `size, filename, mtime, ino`, where
/// `ino` is `sj_inode_key(dev, inode)`). Hard links of one inode are one copy, so a name
/// shared only by links of one file is no candidate; an unknown mtime matches no other.
///
/// `count` is how a key's rows are counted here: the hash step counts distinct inodes at once
/// (`count(DISTINCT ino)`, over the few files it can key); `duplicate_files` counts rows
/// (`count(*)`, cheap over the whole night) and distinct inodes in its final grouping, which
/// sees only the rows of these keys. Both keep exactly the groups of two inodes or more.
pub fn candidate_keys(rows: &str, count: &str) -> String {
    format!(
        "kn AS (SELECT size, filename FROM {rows} GROUP BY size, filename HAVING {count} > 1), \
         km AS (SELECT size, mtime FROM {rows} WHERE mtime IS NOT NULL GROUP BY size, mtime \
                HAVING {count} > 1)"
    )
}

/// The files the hash step reads for partition `index` of `count` (`sj_size_part`, so every
/// group is read by one pod): every row of a group of [`candidate_keys`] among the files it can
/// key in its cache, those with a known mtime and ctime (a file with neither can never be
/// matched to a hash, so its group is read only if two other inodes are in it).
pub fn candidates_query(min_size: u64, index: u32, count: u32) -> String {
    let keys = candidate_keys("f", "count(DISTINCT ino)");
    format!(
        "WITH f AS (SELECT path, filename, size, mtime, ctime, dev, inode, \
                           sj_inode_key(dev, inode) AS ino \
                    FROM cur WHERE kind = 'file' AND size >= {min_size} \
                      AND mtime IS NOT NULL AND ctime IS NOT NULL \
                      AND sj_size_part(size, {count}) = {index}), \
              {keys} \
         SELECT f.path, f.size, f.mtime, f.ctime, f.dev, f.inode \
         FROM kn JOIN f ON f.size = kn.size AND f.filename = kn.filename \
         UNION \
         SELECT f.path, f.size, f.mtime, f.ctime, f.dev, f.inode \
         FROM km JOIN f ON f.size = km.size AND f.mtime = km.mtime \
         ORDER BY path"
    )
}

/// The columns of the `file_hashes` table ([`crate::schema::HASH_SCHEMA`]).
pub const HASH_COLUMNS: &str = "dev, inode, size, mtime, ctime, sample_sha256, sha256, hashed_run";

/// The hash cache after tonight: tonight's hashes, and the earlier nights' of files not read
/// tonight, each kept only while a file of the snapshot has its key (dev, inode, size, mtime,
/// ctime). A changed or removed file's hash is dropped, so the table is bounded by the files
/// hashed and still unchanged.
pub fn file_hashes_query() -> String {
    let c = HASH_COLUMNS;
    let k: Vec<String> = c.split(", ").map(|c| format!("k.{c}")).collect();
    format!(
        "WITH h AS (SELECT {c}, 0 AS pri FROM hashes_new \
                    UNION ALL SELECT {c}, 1 AS pri FROM hashes_prev), \
              r AS (SELECT {c}, row_number() OVER (PARTITION BY dev, inode, size, mtime, ctime \
                                                 ORDER BY pri, hashed_run DESC) AS rn FROM h), \
              k AS (SELECT {c} FROM r WHERE rn = 1) \
         SELECT {} FROM k LEFT SEMI JOIN toc t ON k.dev = t.dev AND k.inode = t.inode \
           AND k.size = t.size AND k.mtime = t.mtime AND k.ctime = t.ctime",
        k.join(", ")
    )
}

/// Orders duplicate file groups confirmed first, then sampled, then candidates.
pub const STAGE_ORDER: &str = "CASE stage WHEN 'confirmed' THEN 0 WHEN 'sampled' THEN 1 ELSE 2 END";

/// Duplicate files, each group at the furthest stage its evidence reached (`crate::hash`):
///
/// - Candidates are regular files of at least `min_size` bytes in a group of
///   [`candidate_keys`]; only the rows of those keys are then grouped with their paths.
/// - Files with the same size and sample hash (`file_hashes`, joined to the ToC by its key)
///   form a `sampled` group; when every file of it has a full hash, it splits by that hash into
///   `confirmed` groups of two inodes or more instead. Files whose samples differ form no
///   group: decoys drop out. Only hashed files take part, so this costs one pass over the ToC
///   with the (small) hashes as the build side.
/// - A candidate group stays `candidate` while any of its files has no hash (hashing off, the
///   budget spent, the file unreadable or changed).
///
/// `wasted_bytes` is the size times the copies beyond the first.
pub fn duplicate_files_query(min_size: u64) -> String {
    let paths =
        |alias: &str| format!("array_agg({alias}.path_display ORDER BY {alias}.path_display)");
    let (f_paths, hf_paths) = (paths("f"), paths("hf"));
    let keys = candidate_keys("f", "count(*)");
    format!(
        "WITH f AS (SELECT path_display, filename, size, mtime, ctime, dev, inode, \
                           sj_inode_key(dev, inode) AS ino \
                    FROM toc WHERE kind = 'file' AND size >= {min_size}), \
              {keys}, \
              hf AS (SELECT f.path_display, f.filename, f.size, f.mtime, f.ino, \
                            h.sample_sha256 AS sample, h.sha256 AS full \
                     FROM file_hashes h JOIN f ON h.dev = f.dev AND h.inode = f.inode \
                       AND h.size = f.size AND h.mtime = f.mtime AND h.ctime = f.ctime \
                     WHERE h.sample_sha256 IS NOT NULL), \
              hk AS (SELECT DISTINCT ino FROM hf), \
              sc AS (SELECT size, sample, bool_and(full IS NOT NULL) AS all_full FROM hf \
                     GROUP BY size, sample HAVING count(DISTINCT ino) > 1) \
         SELECT stage, rule, size, name, mtime, copies, \
                CAST(size AS BIGINT) * (copies - 1) AS wasted_bytes, hash, paths FROM (\
           SELECT 'confirmed' AS stage, 'same content' AS rule, hf.size, \
                  min(hf.filename) AS name, min(hf.mtime) AS mtime, \
                  count(DISTINCT hf.ino) AS copies, hf.full AS hash, {hf_paths} AS paths \
           FROM sc JOIN hf ON hf.size = sc.size AND hf.sample = sc.sample \
           WHERE sc.all_full GROUP BY hf.size, hf.full HAVING count(DISTINCT hf.ino) > 1 \
           UNION ALL \
           SELECT 'sampled', 'same sample', hf.size, min(hf.filename), min(hf.mtime), \
                  count(DISTINCT hf.ino), hf.sample, {hf_paths} \
           FROM sc JOIN hf ON hf.size = sc.size AND hf.sample = sc.sample \
           WHERE NOT sc.all_full GROUP BY hf.size, hf.sample \
           UNION ALL \
           SELECT 'candidate', 'same name', f.size, f.filename, min(f.mtime), \
                  count(DISTINCT f.ino), CAST(NULL AS VARCHAR), {f_paths} \
           FROM hk RIGHT JOIN (SELECT f.* FROM kn JOIN f \
                               ON f.size = kn.size AND f.filename = kn.filename) f \
             ON hk.ino = f.ino \
           GROUP BY f.size, f.filename \
           HAVING count(DISTINCT f.ino) > 1 AND bool_or(hk.ino IS NULL) \
           UNION ALL \
           SELECT 'candidate', 'same mtime', f.size, min(f.filename), f.mtime, \
                  count(DISTINCT f.ino), CAST(NULL AS VARCHAR), {f_paths} \
           FROM hk RIGHT JOIN (SELECT f.* FROM km JOIN f \
                               ON f.size = km.size AND f.mtime = km.mtime) f \
             ON hk.ino = f.ino \
           GROUP BY f.size, f.mtime \
           HAVING count(DISTINCT f.ino) > 1 AND bool_or(hk.ino IS NULL)) \
         ORDER BY {STAGE_ORDER}, wasted_bytes DESC, rule, size"
    )
}

/// What the night's duplicates are derived from.
pub struct Night<'a> {
    pub run: &'a str,
    pub previous: Option<&'a SnapshotManifest>,
    /// Tonight's hash step's files, and its totals if it ran.
    pub hash_files: &'a [PartFile],
    pub hashing: Option<HashTotals>,
    /// Files smaller than this are not candidates.
    pub min_size: u64,
    /// The duplicate directory trees the rollups found.
    pub trees: &'a [TreeGroup],
}

/// The `file_hashes` table (tonight's hashes and the earlier nights' of files still
/// unchanged), the duplicate files table with each group's stage, and the duplicates' part of
/// the summary (with the trees the rollups found). The ToC is registered as `toc`.
pub async fn derive(
    engine: &Engine,
    location: &Location,
    night: Night<'_>,
    derived: &mut BTreeMap<String, Vec<PartFile>>,
) -> Result<Duplicates> {
    let Night {
        run,
        previous,
        hash_files,
        hashing,
        min_size,
        trees,
    } = night;
    let previous_hashes = previous
        .and_then(|p| p.derived.get("file_hashes").cloned())
        .unwrap_or_default();
    engine
        .register_files("hashes_new", hash_files, &HASH_SCHEMA)
        .await?;
    engine
        .register_files("hashes_prev", &previous_hashes, &HASH_SCHEMA)
        .await?;
    let query = if hash_files.is_empty() && previous_hashes.is_empty() {
        // No hashes at all: the table's night is empty, without reading the ToC for it.
        format!("SELECT {} FROM hashes_new", HASH_COLUMNS)
    } else {
        file_hashes_query()
    };
    let hash_files = engine
        .write(
            "carrying the hash cache",
            &query,
            &derived_dir("file_hashes", run),
            "part",
            None,
        )
        .await?;
    engine
        .register_files("file_hashes", &hash_files, &HASH_SCHEMA)
        .await?;
    derived.insert("file_hashes".into(), hash_files);
    let dup_files = engine
        .write(
            "finding duplicate files",
            &duplicate_files_query(min_size),
            &derived_dir("duplicate_files", run),
            "part",
            None,
        )
        .await?;
    let mut stages: Vec<StageTotal> = STAGES
        .iter()
        .map(|stage| StageTotal {
            stage: stage.to_string(),
            groups: 0,
            wasted_bytes: 0,
        })
        .collect();
    let mut top_files = Vec::new();
    if rows_of(&dup_files) > 0 {
        engine
            .register_files(
                "duplicate_files",
                &dup_files,
                &parquet_schema(location, &dup_files[0]).await?,
            )
            .await?;
        let totals = engine
            .collect(
                "totalling duplicate files",
                "SELECT stage, count(*) AS groups, CAST(sum(wasted_bytes) AS BIGINT) AS wasted \
                 FROM duplicate_files GROUP BY stage",
            )
            .await?;
        let groups = u64s(&totals, "groups");
        let wasted = u64s(&totals, "wasted");
        for (i, stage) in strings(&totals, "stage").into_iter().enumerate() {
            if let Some(t) = stages.iter_mut().find(|t| Some(&t.stage) == stage.as_ref()) {
                t.groups = groups[i];
                t.wasted_bytes = wasted[i];
            }
        }
        let top = engine
            .collect(
                "listing the top duplicate files",
                &format!(
                    "SELECT stage, rule, size, copies, wasted_bytes, hash, paths \
                     FROM duplicate_files ORDER BY {}, wasted_bytes DESC, rule, size LIMIT {}",
                    STAGE_ORDER, TOP_FILE_GROUPS
                ),
            )
            .await?;
        let (stage, rule, hash, paths) = (
            strings(&top, "stage"),
            strings(&top, "rule"),
            strings(&top, "hash"),
            string_lists(&top, "paths"),
        );
        let (size, copies, wasted) = (
            u64s(&top, "size"),
            u64s(&top, "copies"),
            u64s(&top, "wasted_bytes"),
        );
        for (i, mut paths) in paths.into_iter().enumerate() {
            let paths_total = paths.len() as u64;
            paths.truncate(GROUP_PATHS);
            top_files.push(FileGroup {
                stage: stage[i].clone().unwrap_or_default(),
                rule: rule[i].clone().unwrap_or_default(),
                size: size[i],
                copies: copies[i],
                wasted_bytes: wasted[i],
                hash: hash[i].clone(),
                paths,
                paths_total,
            });
        }
    }
    derived.insert("duplicate_files".into(), dup_files);
    Ok(Duplicates {
        min_size,
        file_groups: stages.iter().map(|s| s.groups).sum(),
        file_wasted_bytes: stages.iter().map(|s| s.wasted_bytes).sum(),
        stages,
        top_files,
        hashing,
        tree_groups: trees.len() as u64,
        tree_wasted_bytes: trees.iter().map(|t| t.wasted_bytes).sum(),
        top_trees: trees.iter().take(TOP).cloned().collect(),
    })
}
