//! Rollups of the snapshot's ToC (table `toc`): per extension, owner, group and project; age
//! histograms; the atime check; recursive directory totals; duplicate files and directory trees.
//!
//! The scans and groupings over every row run in the query engine. What comes back is one row
//! per directory at most, which the directory tree (recursive totals, tree signatures) rolls
//! up bottom-up in memory: its size is the number of directories, not of files.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, ListBuilder, StringBuilder, TimestampNanosecondBuilder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

use crate::error::{Error, Result};
use crate::insights::engine::{Engine, hash_of, name_of};
use crate::pathbytes::parent_of;

/// Values of column `name` as u64 (nulls as 0), whatever integer type the query produced.
pub fn u64s(batches: &[RecordBatch], name: &str) -> Vec<u64> {
    cast_column(batches, name, &DataType::UInt64)
        .iter()
        .flat_map(|a| {
            a.as_primitive::<UInt64Type>()
                .iter()
                .map(|v| v.unwrap_or(0))
        })
        .collect()
}

/// Values of column `name` as i64, nulls kept (timestamps come back as ns since the epoch).
pub fn i64s(batches: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
    cast_column(batches, name, &DataType::Int64)
        .iter()
        .flat_map(|a| a.as_primitive::<Int64Type>().iter().collect::<Vec<_>>())
        .collect()
}

/// Values of column `name` as strings, nulls kept.
pub fn strings(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    cast_column(batches, name, &DataType::Utf8)
        .iter()
        .flat_map(|a| {
            a.as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Values of a list-of-strings column (`array_agg` of strings), nulls as empty lists.
pub fn string_lists(batches: &[RecordBatch], name: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for batch in batches {
        let Ok(index) = batch.schema().index_of(name) else {
            continue;
        };
        let column = batch.column(index);
        let lists = column.as_list::<i32>();
        for i in 0..lists.len() {
            if lists.is_null(i) {
                out.push(Vec::new());
                continue;
            }
            let values = datafusion::arrow::compute::cast(&lists.value(i), &DataType::Utf8)
                .map(|a| {
                    a.as_string::<i32>()
                        .iter()
                        .flatten()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            out.push(values);
        }
    }
    out
}

/// Values of a binary column, nulls as empty.
pub fn binaries(batches: &[RecordBatch], name: &str) -> Vec<Vec<u8>> {
    cast_column(batches, name, &DataType::Binary)
        .iter()
        .flat_map(|a| {
            a.as_binary::<i32>()
                .iter()
                .map(|v| v.unwrap_or_default().to_vec())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn cast_column(batches: &[RecordBatch], name: &str, to: &DataType) -> Vec<ArrayRef> {
    batches
        .iter()
        .map(|b| {
            let column = b
                .column_by_name(name)
                .unwrap_or_else(|| panic!("query result has no column {name}"));
            let column = match column.data_type() {
                // The ToC's microseconds, as the nanoseconds the rollups count in.
                DataType::Timestamp(_, zone) if to == &DataType::Int64 => {
                    datafusion::arrow::compute::cast(
                        column,
                        &DataType::Timestamp(TimeUnit::Nanosecond, zone.clone()),
                    )
                    .and_then(|ns| datafusion::arrow::compute::cast(&ns, &DataType::Int64))
                }
                _ => datafusion::arrow::compute::cast(column, to),
            };
            column.unwrap_or_else(|e| panic!("column {name} casts to {to}: {e}"))
        })
        .collect()
}

/// Files grouped by owner, project and the age buckets of their mtime and atime: the one scan
/// of the ToC that the per-owner and per-project rollups, the age histograms and growth are
/// rolled up from. Collected as table `owner_groups`; it holds one row per distinct (uid, gid,
/// project, mtime bucket, atime bucket), which is small next to the files.
pub const OWNER_GROUPS_QUERY: &str = "\
SELECT uid, gid, CAST(project AS VARCHAR) AS project, sj_age_bucket(mtime) AS mtime_bucket, \
       sj_age_bucket(atime) AS atime_bucket, count(*) AS files, \
       CAST(sum(size) AS BIGINT) AS bytes, max(mtime) AS newest_mtime, \
       max(atime) AS newest_atime \
FROM toc WHERE kind = 'file' \
GROUP BY uid, gid, CAST(project AS VARCHAR), sj_age_bucket(mtime), sj_age_bucket(atime)";

/// The small rollup tables: name and query (over `toc` for extensions, over `owner_groups`
/// for the rest).
pub fn rollup_queries() -> Vec<(&'static str, String)> {
    let totals = "CAST(sum(files) AS BIGINT) AS files, CAST(sum(bytes) AS BIGINT) AS bytes, \
                  max(newest_mtime) AS newest_mtime, max(newest_atime) AS newest_atime";
    let per_owner = |key: &str| {
        format!(
            "SELECT {key}, {totals} FROM owner_groups GROUP BY {key} \
             ORDER BY bytes DESC, files DESC"
        )
    };
    vec![
        (
            "by_extension",
            "SELECT CAST(extension AS VARCHAR) AS extension, count(*) AS files, \
             CAST(sum(size) AS BIGINT) AS bytes, max(mtime) AS newest_mtime, \
             max(atime) AS newest_atime \
             FROM toc WHERE kind = 'file' GROUP BY extension ORDER BY bytes DESC, files DESC"
                .to_string(),
        ),
        ("by_uid", per_owner("uid")),
        ("by_gid", per_owner("gid")),
        ("by_project", per_owner("project")),
    ]
}

/// Age histograms of mtime and atime per owner and project (from `owner_groups`).
pub fn age_query() -> String {
    let part = |dim: &str, key: &str, time: &str| {
        format!(
            "SELECT '{dim}' AS dimension, CAST({key} AS VARCHAR) AS key, '{time}' AS time, \
             {time}_bucket AS bucket, CAST(sum(files) AS BIGINT) AS files, \
             CAST(sum(bytes) AS BIGINT) AS bytes \
             FROM owner_groups GROUP BY {key}, {time}_bucket"
        )
    };
    format!(
        "SELECT * FROM ({} UNION ALL {} UNION ALL {} UNION ALL {}) \
         ORDER BY dimension, key, time, bucket",
        part("uid", "uid", "mtime"),
        part("uid", "uid", "atime"),
        part("project", "project", "mtime"),
        part("project", "project", "atime"),
    )
}

/// Whether the file system tracks access times, judged from the files' timestamps.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
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

/// A file system that updates atime on reads has files read since they were last written
/// (atime > mtime). Where fewer than this share of files has one, atimes are creation or copy
/// times (Isilon's default, `noatime` mounts), not reads.
pub const ATIME_MIN_READ_SHARE: f64 = 0.01;

pub async fn atime_check(engine: &Engine) -> Result<AtimeCheck> {
    let batches = engine
        .collect(
            "checking atimes",
            "SELECT count(*) AS files, \
               sum(CASE WHEN atime > mtime THEN 1 ELSE 0 END) AS after_mtime, \
               sum(CASE WHEN atime = mtime THEN 1 ELSE 0 END) AS equal_mtime, \
               sum(CASE WHEN atime > ctime THEN 1 ELSE 0 END) AS after_ctime \
             FROM toc WHERE kind = 'file' AND atime IS NOT NULL AND mtime IS NOT NULL",
        )
        .await?;
    let get = |name| u64s(&batches, name).first().copied().unwrap_or(0);
    let files = get("files");
    let share = |n: u64| {
        if files == 0 {
            0.0
        } else {
            n as f64 / files as f64
        }
    };
    let after_mtime = share(get("after_mtime"));
    Ok(AtimeCheck {
        files,
        after_mtime,
        equal_mtime: share(get("equal_mtime")),
        after_ctime: share(get("after_ctime")),
        reliable: files == 0 || after_mtime >= ATIME_MIN_READ_SHARE,
    })
}

/// One directory of the tree with direct and recursive totals.
#[derive(Debug, Clone, Default)]
pub struct DirNode {
    pub depth: u32,
    pub files_direct: u64,
    pub bytes_direct: u64,
    pub files: u64,
    pub bytes: u64,
    pub newest_mtime: Option<i64>,
    pub newest_atime: Option<i64>,
    /// XOR of the hashes of every entry below, each of (relative path, size): equal for two
    /// directories whose subtrees hold the same names with the same sizes.
    pub sig: u64,
    /// XOR of the inode keys of every file below: equal when the trees are hard links.
    pub isig: u64,
}

/// Every directory of the snapshot with recursive totals and tree signatures.
pub async fn directory_tree(engine: &Engine) -> Result<HashMap<Vec<u8>, DirNode>> {
    let direct = engine
        .collect(
            "totalling directories",
            "SELECT sj_parent(path) AS dir, \
               sum(CASE WHEN kind = 'file' THEN 1 ELSE 0 END) AS files, \
               sum(CASE WHEN kind = 'file' THEN size ELSE 0 END) AS bytes, \
               max(CASE WHEN kind = 'file' THEN mtime END) AS newest_mtime, \
               max(CASE WHEN kind = 'file' THEN atime END) AS newest_atime, \
               bit_xor(CASE WHEN kind <> 'dir' THEN sj_entry_hash(path, size) END) AS sig, \
               bit_xor(CASE WHEN kind = 'file' THEN sj_inode_key(dev, inode) END) AS isig \
             FROM toc GROUP BY sj_parent(path)",
        )
        .await?;
    let dirs = engine
        .collect(
            "listing directories",
            "SELECT path FROM toc WHERE kind = 'dir'",
        )
        .await?;
    let mut tree: HashMap<Vec<u8>, DirNode> = HashMap::new();
    let depth = |p: &[u8]| {
        if p.is_empty() {
            0
        } else {
            1 + p.iter().filter(|&&b| b == b'/').count() as u32
        }
    };
    tree.insert(Vec::new(), DirNode::default());
    for path in binaries(&dirs, "path") {
        let d = depth(&path);
        tree.entry(path).or_default().depth = d;
    }
    let (paths, files, bytes) = (
        binaries(&direct, "dir"),
        u64s(&direct, "files"),
        u64s(&direct, "bytes"),
    );
    let (mtimes, atimes) = (i64s(&direct, "newest_mtime"), i64s(&direct, "newest_atime"));
    let (sigs, isigs) = (u64s(&direct, "sig"), u64s(&direct, "isig"));
    for i in 0..paths.len() {
        let d = depth(&paths[i]);
        let node = tree.entry(paths[i].clone()).or_default();
        node.depth = d;
        node.files_direct = files[i];
        node.bytes_direct = bytes[i];
        node.files = files[i];
        node.bytes = bytes[i];
        node.newest_mtime = mtimes[i];
        node.newest_atime = atimes[i];
        node.sig = sigs[i];
        node.isig = isigs[i];
    }
    // Children before parents; a directory whose parent has no row of its own (a partial
    // snapshot) still rolls into it.
    let mut order: Vec<Vec<u8>> = tree.keys().filter(|p| !p.is_empty()).cloned().collect();
    order.sort_unstable_by_key(|p| std::cmp::Reverse(depth(p)));
    for path in order {
        let node = tree[&path].clone();
        let parent_path = parent_of(&path).to_vec();
        let sub = hash_of(&[b"d", name_of(&path), &node.sig.to_le_bytes()]);
        let parent = tree.entry(parent_path.clone()).or_default();
        parent.depth = depth(&parent_path);
        parent.files += node.files;
        parent.bytes += node.bytes;
        parent.newest_mtime = parent.newest_mtime.max(node.newest_mtime);
        parent.newest_atime = parent.newest_atime.max(node.newest_atime);
        parent.sig ^= sub;
        parent.isig ^= node.isig;
    }
    Ok(tree)
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The `by_directory` rollup: directories down to `max_depth` with recursive totals.
pub fn directory_batch(tree: &HashMap<Vec<u8>, DirNode>, max_depth: u32) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("path", DataType::Binary, false),
        Field::new("path_display", DataType::Utf8, false),
        Field::new("depth", DataType::UInt32, false),
        Field::new("files", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
        Field::new("newest_mtime", timestamp_type(), true),
        Field::new("newest_atime", timestamp_type(), true),
        Field::new("files_direct", DataType::UInt64, false),
        Field::new("bytes_direct", DataType::UInt64, false),
    ]));
    let mut rows: Vec<(&Vec<u8>, &DirNode)> =
        tree.iter().filter(|(_, n)| n.depth <= max_depth).collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    let mut path = BinaryBuilder::new();
    let mut display = StringBuilder::new();
    let mut depth = UInt32Builder::new();
    let mut files = UInt64Builder::new();
    let mut bytes = UInt64Builder::new();
    let mut mtime = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let mut atime = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let mut files_direct = UInt64Builder::new();
    let mut bytes_direct = UInt64Builder::new();
    for (p, n) in rows {
        path.append_value(p);
        display.append_value(String::from_utf8_lossy(p));
        depth.append_value(n.depth);
        files.append_value(n.files);
        bytes.append_value(n.bytes);
        mtime.append_option(n.newest_mtime);
        atime.append_option(n.newest_atime);
        files_direct.append_value(n.files_direct);
        bytes_direct.append_value(n.bytes_direct);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(path.finish()),
        Arc::new(display.finish()),
        Arc::new(depth.finish()),
        Arc::new(files.finish()),
        Arc::new(bytes.finish()),
        Arc::new(mtime.finish()),
        Arc::new(atime.finish()),
        Arc::new(files_direct.finish()),
        Arc::new(bytes_direct.finish()),
    ];
    RecordBatch::try_new(schema, columns)
        .map_err(|e| Error::query("building the directory rollup", e.into()))
}

/// The treemap's directories: the `limit` biggest of depth 1 to `max_depth` by recursive
/// bytes. Ranked by bytes, then depth, then path, a parent (never smaller than its child)
/// ranks before each of its children, so every listed directory's parent is listed.
pub fn treemap_nodes(
    tree: &HashMap<Vec<u8>, DirNode>,
    max_depth: u32,
    limit: usize,
) -> Vec<crate::report::summary::TreeNode> {
    let mut nodes: Vec<(&Vec<u8>, &DirNode)> = tree
        .iter()
        .filter(|(p, n)| !p.is_empty() && n.depth <= max_depth && n.bytes > 0)
        .collect();
    nodes.sort_unstable_by(|a, b| {
        (b.1.bytes.cmp(&a.1.bytes))
            .then_with(|| a.1.depth.cmp(&b.1.depth))
            .then_with(|| a.0.cmp(b.0))
    });
    nodes.truncate(limit);
    nodes
        .into_iter()
        .map(|(p, n)| crate::report::summary::TreeNode {
            path: String::from_utf8_lossy(p).into_owned(),
            depth: n.depth,
            files: n.files,
            bytes: n.bytes,
        })
        .collect()
}

/// One group of identical directory trees.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
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

/// Groups directories with equal tree signatures (the grouping runs in the query engine over
/// one row per directory), keeps only the topmost of nested duplicates, drops trees that are
/// hard links of one another, and ranks by wasted bytes.
pub async fn duplicate_trees(
    engine: &Engine,
    tree: &HashMap<Vec<u8>, DirNode>,
    min_bytes: u64,
) -> Result<Vec<TreeGroup>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("dir", DataType::Binary, false),
        Field::new("sig", DataType::UInt64, false),
        Field::new("isig", DataType::UInt64, false),
        Field::new("files", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
    ]));
    let mut dir = BinaryBuilder::new();
    let mut sig = UInt64Builder::new();
    let mut isig = UInt64Builder::new();
    let mut files = UInt64Builder::new();
    let mut bytes = UInt64Builder::new();
    for (p, n) in tree {
        if p.is_empty() || n.files == 0 || n.bytes < min_bytes.max(1) {
            continue;
        }
        dir.append_value(p);
        sig.append_value(n.sig);
        isig.append_value(n.isig);
        files.append_value(n.files);
        bytes.append_value(n.bytes);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(dir.finish()),
        Arc::new(sig.finish()),
        Arc::new(isig.finish()),
        Arc::new(files.finish()),
        Arc::new(bytes.finish()),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
        .map_err(|e| Error::query("building the directory signatures", e.into()))?;
    engine.register_batches("trees", schema, vec![batch])?;
    let groups = engine
        .collect(
            "grouping duplicate trees",
            "SELECT sig, files, bytes, count(DISTINCT isig) AS copies, \
                    array_agg(dir) AS dirs \
             FROM trees GROUP BY sig, files, bytes HAVING count(*) > 1",
        )
        .await?;
    let mut found: Vec<(Vec<Vec<u8>>, u64, u64, u64)> = Vec::new();
    for batch in &groups {
        let files = u64s(std::slice::from_ref(batch), "files");
        let bytes = u64s(std::slice::from_ref(batch), "bytes");
        let copies = u64s(std::slice::from_ref(batch), "copies");
        let dirs = batch
            .column_by_name("dirs")
            .expect("dirs column")
            .as_list::<i32>();
        for i in 0..batch.num_rows() {
            let members = dirs.value(i);
            let members = members.as_binary::<i32>();
            let mut list: Vec<Vec<u8>> = members.iter().flatten().map(<[u8]>::to_vec).collect();
            list.sort();
            found.push((list, files[i], bytes[i], copies[i]));
        }
    }
    let in_some_group: HashSet<&[u8]> = found
        .iter()
        .flat_map(|(dirs, ..)| dirs.iter().map(Vec::as_slice))
        .collect();
    let mut result: Vec<TreeGroup> = found
        .iter()
        .filter(|(dirs, ..)| {
            // Inside copies of a bigger duplicate tree: that group already counts them.
            !dirs.iter().all(|d| in_some_group.contains(parent_of(d)))
        })
        .filter(|(.., copies)| *copies > 1)
        .map(|(dirs, files, bytes, copies)| TreeGroup {
            dirs: dirs
                .iter()
                .map(|d| String::from_utf8_lossy(d).into_owned())
                .collect(),
            files: *files,
            bytes: *bytes,
            copies: *copies,
            wasted_bytes: bytes.saturating_mul(copies - 1),
        })
        .collect();
    result.sort_by(|a, b| {
        b.wasted_bytes
            .cmp(&a.wasted_bytes)
            .then_with(|| a.dirs.cmp(&b.dirs))
    });
    Ok(result)
}

/// The `duplicate_trees` table.
pub fn duplicate_trees_batch(groups: &[TreeGroup]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("rank", DataType::UInt32, false),
        Field::new("files", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
        Field::new("copies", DataType::UInt64, false),
        Field::new("wasted_bytes", DataType::UInt64, false),
        Field::new(
            "dirs",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
    ]));
    let mut rank = UInt32Builder::new();
    let mut files = UInt64Builder::new();
    let mut bytes = UInt64Builder::new();
    let mut copies = UInt64Builder::new();
    let mut wasted = UInt64Builder::new();
    let mut dirs = ListBuilder::new(StringBuilder::new());
    for (i, g) in groups.iter().enumerate() {
        rank.append_value(i as u32 + 1);
        files.append_value(g.files);
        bytes.append_value(g.bytes);
        copies.append_value(g.copies);
        wasted.append_value(g.wasted_bytes);
        for d in &g.dirs {
            dirs.values().append_value(d);
        }
        dirs.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(rank.finish()),
        Arc::new(files.finish()),
        Arc::new(bytes.finish()),
        Arc::new(copies.finish()),
        Arc::new(wasted.finish()),
        Arc::new(dirs.finish()),
    ];
    RecordBatch::try_new(schema, columns)
        .map_err(|e| Error::query("building the duplicate trees table", e.into()))
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
/// - Candidates are regular files of at least `min_size` bytes sharing size and name, or size
///   and mtime, with two inodes or more (hard links are one copy). A cheap count first finds
///   the keys held by more than one row; only those rows are then grouped with their paths.
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
    format!(
        "WITH f AS (SELECT path_display, filename, size, mtime, ctime, dev, inode, \
                           sj_inode_key(dev, inode) AS ino \
                    FROM toc WHERE kind = 'file' AND size >= {min_size}), \
              kn AS (SELECT size, filename FROM f GROUP BY size, filename HAVING count(*) > 1), \
              km AS (SELECT size, mtime FROM f WHERE mtime IS NOT NULL GROUP BY size, mtime \
                     HAVING count(*) > 1), \
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
