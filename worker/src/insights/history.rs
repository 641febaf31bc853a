//! History: the snapshot's ToC with `first_seen` carried from the previous snapshot, the rows
//! of failed shards carried forward, and the diff against the previous snapshot (added,
//! removed, changed, moved) with growth per owner and project.
//!
//! Every join here runs in the query engine, with the narrow side as the build side: the
//! previous snapshot's `path, first_seen` for the ToC, and `path` with a hash of the compared
//! columns (`sj_change_sig`) for the diff, whose differing rows alone are then fetched whole.
//! When a build side would not fit half the memory pool, both joins run in passes, each over
//! one range of paths (`sj_pass`, [`Engine::split_passes`]). The new ToC is written in path
//! order, pass after pass, so each of its files holds one range of paths that no other file
//! overlaps and each row group a narrower one: a reader looking at one subtree skips the
//! rest by the files' and row groups' statistics. The previous snapshot's rows that belong to a
//! shard which failed in this run (`sj_carried(path)`) are copied into the new ToC unchanged,
//! keeping their old `last_seen`, and never count as removed (Robinhood's rule: a file not
//! seen because its shard failed is not a deleted file).

use crate::engine::Engine;
use crate::error::Result;
use crate::schema::TOC_SCHEMA;
use crate::store::layout::table_subdir;
use crate::store::writer::{PartFile, rows_of};
use crate::summary::DiffCounts;

/// Quoted column list of the ToC, with `alias.` in front of each when given.
fn toc_columns(alias: &str, replace: &[(&str, &str)]) -> String {
    TOC_SCHEMA
        .fields()
        .iter()
        .map(|f| {
            let name = f.name();
            match replace.iter().find(|(n, _)| n == name) {
                Some((_, expr)) => format!("{expr} AS \"{name}\""),
                None if alias.is_empty() => format!("\"{name}\""),
                None => format!("{alias}.\"{name}\""),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes the new ToC to `<dir>`: this run's rows with `first_seen` from the previous
/// snapshot where the path was there before, plus the carried-forward rows, in path order.
/// With several join passes, pass `i` writes its rows under `<dir>/<i>`.
pub async fn write_toc(engine: &Engine, dir: &str, carry: bool) -> Result<Vec<PartFile>> {
    let joined = toc_columns(
        "c",
        &[("first_seen", "COALESCE(p.first_seen, c.first_seen)")],
    );
    let mut files = Vec::new();
    for pass in engine.passes() {
        let filter = engine.pass_filter(pass);
        let mut query = format!(
            "SELECT {joined} FROM (SELECT path, first_seen FROM prev WHERE {filter}) p \
             RIGHT JOIN (SELECT * FROM cur WHERE {filter}) c ON p.path = c.path"
        );
        if carry {
            query.push_str(&format!(
                " UNION ALL SELECT {} FROM prev WHERE sj_carried(path) AND {filter}",
                toc_columns("", &[])
            ));
        }
        let query = format!("SELECT * FROM ({query}) ORDER BY path");
        let dir = match engine.join_passes {
            1 => dir.to_string(),
            _ => table_subdir(dir, pass),
        };
        files.extend(
            engine
                .write(
                    "joining first_seen from the previous snapshot",
                    &query,
                    &dir,
                    "part",
                    Some(TOC_SCHEMA.clone()),
                )
                .await?,
        );
    }
    Ok(files)
}

/// The rows that differ between `cur` and `prev` (outside carried shards), held in memory as
/// table `delta`; then `moves`, and the `added`, `removed` and `changed` tables, each written
/// under `dir_of(table)`. Returns the tables' files by name and their counts.
pub async fn write_diff(
    engine: &Engine,
    dir_of: impl Fn(&str) -> String,
) -> Result<(Vec<(&'static str, Vec<PartFile>)>, DiffCounts)> {
    materialize_delta(engine).await?;
    finish_diff(engine, dir_of).await
}

/// A join partition's share of the diff: its rows of `delta` (the paths of its passes that
/// differ), written under `dir` for the merge to finish with [`finish_diff`].
pub async fn write_delta(engine: &Engine, dir: &str) -> Result<Vec<PartFile>> {
    materialize_delta(engine).await?;
    engine
        .write(DIFF, "SELECT * FROM delta", dir, "part", None)
        .await
}

/// The diff from table `delta` (every partition's rows of it): moves, then the `added`,
/// `removed` and `changed` tables. Moves pair paths of any two partitions, so they are found
/// here, over all of `delta`.
pub async fn finish_diff(
    engine: &Engine,
    dir_of: impl Fn(&str) -> String,
) -> Result<(Vec<(&'static str, Vec<PartFile>)>, DiffCounts)> {
    let moved = register_moves(engine).await?;
    // Added: the new side of rows with no old one; removed: the reverse. Moved paths are in
    // `changed` instead.
    let added = write_one_sided(engine, &dir_of("added"), "added", "new", "old").await?;
    let removed = write_one_sided(engine, &dir_of("removed"), "removed", "old", "new").await?;
    let changed = write_changed(engine, &dir_of("changed")).await?;
    let counts = DiffCounts {
        added: rows_of(&added),
        removed: rows_of(&removed),
        changed: rows_of(&changed),
        moved,
    };
    Ok((
        vec![("added", added), ("removed", removed), ("changed", changed)],
        counts,
    ))
}

const DIFF: &str = "diffing against the previous snapshot";

/// Table `delta`: every path new, gone or changed between `prev` and `cur`, with the columns
/// of both sides (`new_*`, `old_*`). The full outer join holds only the path and a hash of
/// what is compared per row; the rows that differ (few, next to the ToC) then get their
/// columns from both sides.
async fn materialize_delta(engine: &Engine) -> Result<()> {
    let sig = "sj_change_sig(CAST(kind AS VARCHAR) = 'dir', size, mtime, uid, gid, mode)";
    let keys_queries: Vec<String> = engine
        .passes()
        .map(|pass| {
            format!(
                "SELECT c.path AS new_key, p.path AS old_key \
                 FROM (SELECT path, {sig} AS sig FROM prev \
                       WHERE NOT sj_carried(path) AND {filter}) p \
                 FULL OUTER JOIN (SELECT path, {sig} AS sig FROM cur WHERE {filter}) c \
                   ON p.path = c.path \
                 WHERE c.path IS NULL OR p.path IS NULL OR c.sig <> p.sig",
                filter = engine.pass_filter(pass)
            )
        })
        .collect();
    engine
        .materialize_all("delta_keys", DIFF, &keys_queries)
        .await?;
    let delta_query = format!(
        "SELECT {}, {} FROM delta_keys k \
         LEFT JOIN cur c ON k.new_key = c.path \
         LEFT JOIN prev p ON k.old_key = p.path",
        delta_columns("new", "c"),
        delta_columns("old", "p")
    );
    engine.materialize("delta", DIFF, &delta_query).await
}

/// The columns of one side of `delta`: `<side>_path`, … from table alias `alias`.
fn delta_columns(side: &str, alias: &str) -> String {
    [
        "path",
        "path_display",
        "size",
        "mtime",
        "uid",
        "gid",
        "mode",
        "dev",
        "inode",
    ]
    .iter()
    .map(|c| format!("{alias}.\"{c}\" AS {side}_{c}"))
    .chain(std::iter::once(format!(
        "CAST({alias}.kind AS VARCHAR) AS {side}_kind"
    )))
    .collect::<Vec<_>>()
    .join(", ")
}

/// Table `moves`: pairs of a gone and a new path of `delta` that are one entry renamed.
/// Returns how many.
async fn register_moves(engine: &Engine) -> Result<u64> {
    // A path gone and a path new with the same (dev, inode) and kind is a move, when that
    // inode is unique on both sides (hard links stay added/removed) and the mtime, and for a
    // file the size, are unchanged: rename(2) keeps both, while a file system that hands a
    // deleted file's inode number to the next new file (ext4 does, at once) gives that file
    // its own. A file renamed and rewritten between two runs therefore reads as removed and
    // added.
    let moves = engine
        .collect(
            "finding moves",
            "WITH a AS (SELECT * FROM delta WHERE old_path IS NULL), \
                  r AS (SELECT * FROM delta WHERE new_path IS NULL), \
                  au AS (SELECT new_dev AS dev, new_inode AS inode FROM a \
                         GROUP BY new_dev, new_inode HAVING count(*) = 1), \
                  ru AS (SELECT old_dev AS dev, old_inode AS inode FROM r \
                         GROUP BY old_dev, old_inode HAVING count(*) = 1) \
             SELECT a.new_path, a.new_path_display, a.new_kind, a.new_size, a.new_mtime, \
                    a.new_uid, a.new_gid, a.new_mode, \
                    r.old_path, r.old_path_display, r.old_kind, r.old_size, r.old_mtime, \
                    r.old_uid, r.old_gid, r.old_mode \
             FROM a JOIN au ON a.new_dev = au.dev AND a.new_inode = au.inode \
                    JOIN ru ON a.new_dev = ru.dev AND a.new_inode = ru.inode \
                    JOIN r ON r.old_dev = ru.dev AND r.old_inode = ru.inode \
             WHERE a.new_kind = r.old_kind \
               AND (a.new_mtime IS NOT DISTINCT FROM r.old_mtime) \
               AND (a.new_kind = 'dir' OR a.new_size = r.old_size)",
        )
        .await?;
    let moves_schema = match moves.first() {
        Some(b) => b.schema(),
        None => engine
            .sql(
                "finding moves",
                "SELECT new_path, new_path_display, new_kind, new_size, new_mtime, new_uid, \
                     new_gid, new_mode, old_path, old_path_display, old_kind, old_size, \
                     old_mtime, old_uid, old_gid, old_mode FROM delta LIMIT 0",
            )
            .await?
            .schema()
            .as_arrow()
            .clone()
            .into(),
    };
    let moved = moves.iter().map(|b| b.num_rows() as u64).sum();
    engine.register_batches("moves", moves_schema, moves)?;
    Ok(moved)
}

/// The `added` (new side, no old one) or `removed` (the reverse) table, without moves.
async fn write_one_sided(
    engine: &Engine,
    dir: &str,
    table: &'static str,
    side: &'static str,
    other: &'static str,
) -> Result<Vec<PartFile>> {
    let query = format!(
        "SELECT d.{side}_path AS path, d.{side}_path_display AS path_display, \
                d.{side}_kind AS kind, d.{side}_size AS size, d.{side}_mtime AS mtime, \
                d.{side}_uid AS uid, d.{side}_gid AS gid, d.{side}_mode AS mode \
         FROM delta d LEFT ANTI JOIN moves m ON d.{side}_path = m.{side}_path \
         WHERE d.{other}_path IS NULL ORDER BY d.{side}_path"
    );
    engine
        .write(
            &format!("writing the {table} table"),
            &query,
            dir,
            "part",
            None,
        )
        .await
}

/// The `changed` table: paths on both sides that differ, and the moves.
async fn write_changed(engine: &Engine, dir: &str) -> Result<Vec<PartFile>> {
    let query = format!(
        "SELECT * FROM (\
           SELECT {} FROM delta WHERE old_path IS NOT NULL AND new_path IS NOT NULL \
           UNION ALL SELECT {} FROM moves) ORDER BY path",
        changed_columns(false),
        changed_columns(true)
    );
    engine
        .write("writing the changed table", &query, dir, "part", None)
        .await
}

/// The columns of the `changed` table, from `delta` or (`moved`) from `moves`.
fn changed_columns(moved: bool) -> String {
    format!(
        "new_path AS path, new_path_display AS path_display, \
         {old_path} AS old_path, {old_display} AS old_path_display, new_kind AS kind, \
         old_size, new_size AS size, old_mtime, new_mtime AS mtime, \
         old_uid, new_uid AS uid, old_gid, new_gid AS gid, old_mode, new_mode AS mode, \
         (new_kind <> 'dir' AND old_size <> new_size) AS size_changed, \
         (new_kind <> 'dir' AND old_mtime IS DISTINCT FROM new_mtime) AS mtime_changed, \
         (old_uid <> new_uid OR old_gid <> new_gid) AS owner_changed, \
         (old_mode <> new_mode) AS mode_changed, {moved} AS moved",
        old_path = if moved {
            "old_path"
        } else {
            "CAST(NULL AS BYTEA)"
        },
        old_display = if moved {
            "old_path_display"
        } else {
            "CAST(NULL AS VARCHAR)"
        },
    )
}

/// Files and bytes of the previous snapshot per uid and project: table `prev_groups`.
pub const PREV_GROUPS_QUERY: &str = "\
SELECT uid, CAST(project AS VARCHAR) AS project, count(*) AS files, \
       CAST(sum(size) AS BIGINT) AS bytes \
FROM prev WHERE kind = 'file' GROUP BY uid, CAST(project AS VARCHAR)";

/// Files and bytes per uid and project, before (`prev_groups`, from [`PREV_GROUPS_QUERY`]) and
/// now (`owner_groups`).
pub const GROWTH_QUERY: &str = "\
WITH c AS (\
  SELECT 'uid' AS dimension, CAST(uid AS VARCHAR) AS key, CAST(sum(files) AS BIGINT) AS files, \
         CAST(sum(bytes) AS BIGINT) AS bytes FROM owner_groups GROUP BY uid \
  UNION ALL \
  SELECT 'project', project, CAST(sum(files) AS BIGINT), CAST(sum(bytes) AS BIGINT) \
  FROM owner_groups GROUP BY project), \
p AS (\
  SELECT 'uid' AS dimension, CAST(uid AS VARCHAR) AS key, CAST(sum(files) AS BIGINT) AS files, \
         CAST(sum(bytes) AS BIGINT) AS bytes FROM prev_groups GROUP BY uid \
  UNION ALL \
  SELECT 'project', project, CAST(sum(files) AS BIGINT), CAST(sum(bytes) AS BIGINT) \
  FROM prev_groups GROUP BY project) \
SELECT COALESCE(c.dimension, p.dimension) AS dimension, COALESCE(c.key, p.key) AS key, \
       COALESCE(p.files, 0) AS files_before, COALESCE(p.bytes, 0) AS bytes_before, \
       COALESCE(c.files, 0) AS files_now, COALESCE(c.bytes, 0) AS bytes_now, \
       COALESCE(c.files, 0) - COALESCE(p.files, 0) AS files_delta, \
       COALESCE(c.bytes, 0) - COALESCE(p.bytes, 0) AS bytes_delta \
FROM c FULL OUTER JOIN p ON c.dimension = p.dimension AND c.key IS NOT DISTINCT FROM p.key \
ORDER BY dimension, bytes_delta DESC, key";
