//! Arrow builders for ToC rows and error rows.
//!
//! Each walker thread owns one [`TocBatchBuilder`] and one [`ErrorBatchBuilder`] (no locks on the
//! hot path) and hands full batches to the shard writer.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Int32Builder, Int64Builder, StringBuilder,
    StringDictionaryBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::types::{Int8Type, Int32Type};
use arrow_array::{ArrayRef, RecordBatch};

use crate::fs::entry::{EntryKind, EntryMeta};
use crate::pathbytes::join;
use crate::schema::{ERROR_SCHEMA, TOC_SCHEMA, micros};

/// Lower-case text after the last dot of `name`; "" when there is none. Leading dots do not
/// start an extension (`.bashrc` has none), the same rule as Python's `os.path.splitext`.
pub fn extension_of(name: &str) -> String {
    let stem_start = name.len() - name.trim_start_matches('.').len();
    match name[stem_start..].rfind('.') {
        Some(dot) => name[stem_start + dot + 1..].to_lowercase(),
        None => String::new(),
    }
}

/// The path component at `level` (1 = first component below the root): the project directory
/// an entry is in, or is. An entry above that level, or a file at it, is in no project.
pub fn project_of(path: &str, level: usize, is_dir: bool) -> Option<&str> {
    if level == 0 {
        return None;
    }
    let mut parts = path.split('/');
    let project = parts.nth(level - 1)?;
    (parts.next().is_some() || is_dir).then_some(project)
}

/// Builds ToC record batches row by row.
pub struct TocBatchBuilder {
    shard: u32,
    project_level: usize,
    seen_at: i64,
    rows: usize,
    path: BinaryBuilder,
    path_display: StringBuilder,
    path_is_utf8: BooleanBuilder,
    dirname: StringDictionaryBuilder<Int32Type>,
    filename: StringBuilder,
    extension: StringDictionaryBuilder<Int32Type>,
    kind: StringDictionaryBuilder<Int8Type>,
    size: Int64Builder,
    blocks: Int64Builder,
    uid: Int64Builder,
    gid: Int64Builder,
    mode: Int32Builder,
    nlink: Int64Builder,
    inode: Int64Builder,
    dev: Int64Builder,
    mtime: TimestampMicrosecondBuilder,
    atime: TimestampMicrosecondBuilder,
    ctime: TimestampMicrosecondBuilder,
    btime: TimestampMicrosecondBuilder,
    project: StringDictionaryBuilder<Int32Type>,
    first_seen: TimestampMicrosecondBuilder,
    last_seen: TimestampMicrosecondBuilder,
    shard_col: Int32Builder,
}

/// A byte count as the table's signed 64 bits (no file system reports 2^63 bytes).
fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn ts_builder() -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::new().with_timezone("UTC")
}

impl TocBatchBuilder {
    /// `seen_at` (ns since the epoch) fills `first_seen`/`last_seen`; merge replaces `first_seen`
    /// with the value of an earlier snapshot where the file was already present.
    pub fn new(shard: u32, project_level: usize, seen_at: i64) -> Self {
        Self {
            shard,
            project_level,
            seen_at,
            rows: 0,
            path: BinaryBuilder::new(),
            path_display: StringBuilder::new(),
            path_is_utf8: BooleanBuilder::new(),
            dirname: StringDictionaryBuilder::new(),
            filename: StringBuilder::new(),
            extension: StringDictionaryBuilder::new(),
            kind: StringDictionaryBuilder::new(),
            size: Int64Builder::new(),
            blocks: Int64Builder::new(),
            uid: Int64Builder::new(),
            gid: Int64Builder::new(),
            mode: Int32Builder::new(),
            nlink: Int64Builder::new(),
            inode: Int64Builder::new(),
            dev: Int64Builder::new(),
            mtime: ts_builder(),
            atime: ts_builder(),
            ctime: ts_builder(),
            btime: ts_builder(),
            project: StringDictionaryBuilder::new(),
            first_seen: ts_builder(),
            last_seen: ts_builder(),
            shard_col: Int32Builder::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends the entry `name` of the directory at `dir` (both relative to the scan root).
    pub fn append(&mut self, dir: &[u8], name: &[u8], meta: &EntryMeta) {
        let path = join(dir, name);
        self.path.append_value(&path);
        let utf8 = std::str::from_utf8(&path).is_ok();
        self.path_is_utf8.append_value(utf8);
        let display = String::from_utf8_lossy(&path);
        self.path_display.append_value(&display);
        let dir_display = String::from_utf8_lossy(dir);
        self.dirname.append_value(&dir_display);
        let name_display = String::from_utf8_lossy(name);
        self.filename.append_value(&name_display);
        self.extension.append_value(extension_of(&name_display));
        self.kind.append_value(meta.kind.as_str());
        self.size.append_value(saturating_i64(meta.size));
        self.blocks.append_value(saturating_i64(meta.blocks));
        self.uid.append_value(meta.uid.into());
        self.gid.append_value(meta.gid.into());
        // The file type and permission bits: 16 of the 32.
        self.mode.append_value(meta.mode as i32);
        self.nlink.append_value(meta.nlink.into());
        // Identities, compared and never summed: the 64 bits are kept, so a number of 2^63 or
        // more reads as negative.
        self.inode.append_value(meta.inode as i64);
        self.dev.append_value(meta.dev as i64);
        self.mtime.append_option(meta.mtime.map(micros));
        self.atime.append_option(meta.atime.map(micros));
        self.ctime.append_option(meta.ctime.map(micros));
        self.btime.append_option(meta.btime.map(micros));
        self.project.append_option(project_of(
            &display,
            self.project_level,
            matches!(meta.kind, EntryKind::Dir),
        ));
        self.first_seen.append_value(micros(self.seen_at));
        self.last_seen.append_value(micros(self.seen_at));
        self.shard_col.append_value(self.shard as i32);
        self.rows += 1;
    }

    /// Takes the rows built so far as one batch and starts afresh (dictionaries included, so
    /// memory stays bounded by the batch size).
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.path.finish()),
            Arc::new(self.path_display.finish()),
            Arc::new(self.path_is_utf8.finish()),
            Arc::new(self.dirname.finish()),
            Arc::new(self.filename.finish()),
            Arc::new(self.extension.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.size.finish()),
            Arc::new(self.blocks.finish()),
            Arc::new(self.uid.finish()),
            Arc::new(self.gid.finish()),
            Arc::new(self.mode.finish()),
            Arc::new(self.nlink.finish()),
            Arc::new(self.inode.finish()),
            Arc::new(self.dev.finish()),
            Arc::new(self.mtime.finish()),
            Arc::new(self.atime.finish()),
            Arc::new(self.ctime.finish()),
            Arc::new(self.btime.finish()),
            Arc::new(self.project.finish()),
            Arc::new(self.first_seen.finish()),
            Arc::new(self.last_seen.finish()),
            Arc::new(self.shard_col.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(TOC_SCHEMA.clone(), columns).expect("builders match TOC_SCHEMA")
    }
}

/// What the walker was doing when an entry failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkOperation {
    OpenDir,
    ReadDir,
    Stat,
}

impl WalkOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenDir => "opendir",
            Self::ReadDir => "readdir",
            Self::Stat => "stat",
        }
    }
}

/// Builds error-table batches.
pub struct ErrorBatchBuilder {
    shard: u32,
    rows: usize,
    path: BinaryBuilder,
    path_display: StringBuilder,
    operation: StringDictionaryBuilder<Int8Type>,
    errno: Int32Builder,
    kind: StringDictionaryBuilder<Int8Type>,
    message: StringBuilder,
    shard_col: Int32Builder,
}

impl ErrorBatchBuilder {
    pub fn new(shard: u32) -> Self {
        Self {
            shard,
            rows: 0,
            path: BinaryBuilder::new(),
            path_display: StringBuilder::new(),
            operation: StringDictionaryBuilder::new(),
            errno: Int32Builder::new(),
            kind: StringDictionaryBuilder::new(),
            message: StringBuilder::new(),
            shard_col: Int32Builder::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn append(&mut self, path: &[u8], operation: WalkOperation, error: &rustix::io::Errno) {
        self.append_message(
            path,
            operation,
            error,
            &std::io::Error::from(*error).to_string(),
        );
    }

    /// [`ErrorBatchBuilder::append`] with the source's own words for the error (an NFS
    /// server's status and procedure) instead of the errno's.
    pub fn append_message(
        &mut self,
        path: &[u8],
        operation: WalkOperation,
        error: &rustix::io::Errno,
        message: &str,
    ) {
        self.path.append_value(path);
        self.path_display
            .append_value(String::from_utf8_lossy(path));
        self.operation.append_value(operation.as_str());
        self.errno.append_value(error.raw_os_error());
        self.kind.append_value(ErrorKind::of(error).as_str());
        self.message.append_value(message);
        self.shard_col.append_value(self.shard as i32);
        self.rows += 1;
    }

    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.path.finish()),
            Arc::new(self.path_display.finish()),
            Arc::new(self.operation.finish()),
            Arc::new(self.errno.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.message.finish()),
            Arc::new(self.shard_col.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(ERROR_SCHEMA.clone(), columns).expect("builders match ERROR_SCHEMA")
    }
}

/// One value per [`ErrorKind`], indexed by the kind itself.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PerErrorKind<T>([T; ErrorKind::ALL.len()]);

impl<T> std::ops::Index<ErrorKind> for PerErrorKind<T> {
    type Output = T;
    fn index(&self, kind: ErrorKind) -> &T {
        &self.0[kind as usize]
    }
}

impl<T> std::ops::IndexMut<ErrorKind> for PerErrorKind<T> {
    fn index_mut(&mut self, kind: ErrorKind) -> &mut T {
        &mut self.0[kind as usize]
    }
}

/// Error classes that the shard report counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The entry disappeared between listing and stat/open: normal on a live file system.
    Vanished,
    PermissionDenied,
    NameTooLong,
    Io,
    Other,
}

impl ErrorKind {
    /// Every kind, in declaration order (the order of [`PerErrorKind`]'s slots).
    pub const ALL: [Self; 5] = [
        Self::Vanished,
        Self::PermissionDenied,
        Self::NameTooLong,
        Self::Io,
        Self::Other,
    ];

    pub fn of(error: &rustix::io::Errno) -> Self {
        use rustix::io::Errno;
        match *error {
            Errno::NOENT | Errno::STALE => Self::Vanished,
            Errno::ACCESS | Errno::PERM => Self::PermissionDenied,
            Errno::NAMETOOLONG => Self::NameTooLong,
            Errno::IO => Self::Io,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vanished => "vanished",
            Self::PermissionDenied => "permission_denied",
            Self::NameTooLong => "name_too_long",
            Self::Io => "io",
            Self::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_follows_splitext() {
        assert_eq!(extension_of("a.tar.gz"), "gz");
        assert_eq!(extension_of("DATA.0001.H5"), "h5");
        assert_eq!(extension_of(".bashrc"), "");
        assert_eq!(extension_of("..x.CSV"), "csv");
        assert_eq!(extension_of("README"), "");
        assert_eq!(extension_of("a."), "");
    }

    #[test]
    fn project_is_the_configured_level() {
        assert_eq!(project_of("p1/sub/f.txt", 1, false), Some("p1"));
        assert_eq!(project_of("p1/sub/f.txt", 2, false), Some("sub"));
        assert_eq!(project_of("p1", 1, true), Some("p1"));
        assert_eq!(project_of("README", 1, false), None);
        assert_eq!(project_of("p1", 2, true), None);
        assert_eq!(project_of("p1/x", 0, false), None);
    }
}
