//! The table of contents schema (docs/design.md §4) and the errors table.
//!
//! One row per directory entry below the scan root. `path` keeps the exact bytes so that names
//! which are not UTF-8 survive a round trip; the lossy `path_display`, `dirname` and `filename`
//! columns exist so that the usual SQL/pandas queries work without byte handling.

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Bumped whenever a column is added, removed or changes meaning; written into every Parquet
/// file's key-value metadata and into the snapshot manifest.
///
/// 2: `first_seen` is carried from the previous snapshot by `merge` (in 1 it was the scan time).
/// 3: the types Delta Lake has: signed integers (`uid`, `gid`, `nlink`, `inode`, `dev` and the
/// sizes as 64-bit, `mode` and `shard` as 32-bit) and timestamps in microseconds (in 2 they
/// were unsigned and in nanoseconds).
pub const SCHEMA_VERSION: u32 = 3;

/// Key under which [`SCHEMA_VERSION`] is stored in Parquet key-value metadata.
pub const SCHEMA_VERSION_KEY: &str = "scanjob.schema_version";

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn dictionary(key: DataType) -> DataType {
    DataType::Dictionary(Box::new(key), Box::new(DataType::Utf8))
}

/// The ToC row schema.
pub static TOC_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("path", DataType::Binary, false),
        Field::new("path_display", DataType::Utf8, false),
        Field::new("path_is_utf8", DataType::Boolean, false),
        Field::new("dirname", dictionary(DataType::Int32), false),
        Field::new("filename", DataType::Utf8, false),
        Field::new("extension", dictionary(DataType::Int32), false),
        Field::new("kind", dictionary(DataType::Int8), false),
        Field::new("size", DataType::Int64, false),
        Field::new("blocks", DataType::Int64, false),
        Field::new("uid", DataType::Int64, false),
        Field::new("gid", DataType::Int64, false),
        Field::new("mode", DataType::Int32, false),
        Field::new("nlink", DataType::Int64, false),
        Field::new("inode", DataType::Int64, false),
        Field::new("dev", DataType::Int64, false),
        Field::new("mtime", timestamp(), true),
        Field::new("atime", timestamp(), true),
        Field::new("ctime", timestamp(), true),
        Field::new("btime", timestamp(), true),
        Field::new("project", dictionary(DataType::Int32), true),
        Field::new("first_seen", timestamp(), true),
        Field::new("last_seen", timestamp(), true),
        Field::new("shard", DataType::Int32, false),
    ]))
});

/// The content hashes of files (`crate::hash`, the `file_hashes` table): keyed by what tells
/// an unchanged file, so a file is read again only when one of them moves. Hashes are SHA-256,
/// hex; `sample_sha256` is of the sampled blocks (the whole content for a file of at most
/// [`crate::hash::SAMPLE_BLOCKS`] blocks), `sha256` of the whole content when it was read.
pub static HASH_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("dev", DataType::Int64, false),
        Field::new("inode", DataType::Int64, false),
        Field::new("size", DataType::Int64, false),
        Field::new("mtime", timestamp(), false),
        Field::new("ctime", timestamp(), false),
        Field::new("sample_sha256", DataType::Utf8, true),
        Field::new("sha256", DataType::Utf8, true),
        Field::new("hashed_run", DataType::Utf8, false),
    ]))
});

/// Walk errors: an entry that could not be listed or stat'ed. These never abort a shard.
pub static ERROR_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("path", DataType::Binary, false),
        Field::new("path_display", DataType::Utf8, false),
        Field::new("operation", dictionary(DataType::Int8), false),
        Field::new("errno", DataType::Int32, false),
        Field::new("kind", dictionary(DataType::Int8), false),
        Field::new("message", DataType::Utf8, false),
        Field::new("shard", DataType::Int32, false),
    ]))
});

/// Columns whose values repeat a lot: dictionary-encoded in Parquet. Everything else (paths,
/// inodes, timestamps) is mostly unique, where a dictionary only costs memory.
pub const DICTIONARY_COLUMNS: &[&str] = &[
    "dirname",
    "extension",
    "kind",
    "uid",
    "gid",
    "mode",
    "nlink",
    "dev",
    "project",
    "first_seen",
    "last_seen",
    "shard",
    "path_is_utf8",
    "operation",
    "errno",
];

/// Sorted-ish byte strings share long prefixes with their neighbours.
pub const PREFIX_CODED_COLUMNS: &[&str] = &["path", "path_display", "filename"];

/// Nanoseconds since the epoch to the table's microseconds, rounding down (also before 1970).
pub fn micros(nanos: i64) -> i64 {
    nanos.div_euclid(1000)
}
