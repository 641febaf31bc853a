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
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

use crate::engine::columns::{binaries, i64s, u64s};
use crate::engine::{Engine, hash_of};
use crate::error::{Error, Result};
use crate::pathbytes::name_of;
use crate::pathbytes::parent_of;
use crate::summary::{AtimeCheck, TreeGroup};

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
) -> Vec<crate::summary::TreeNode> {
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
        .map(|(p, n)| crate::summary::TreeNode {
            path: String::from_utf8_lossy(p).into_owned(),
            depth: n.depth,
            files: n.files,
            bytes: n.bytes,
        })
        .collect()
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
