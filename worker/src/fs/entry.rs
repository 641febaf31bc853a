//! One entry of the scanned tree as a stat call describes it: what the ToC's row is made of.

/// What an entry is, as `st_mode` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    Block,
    Char,
}

impl EntryKind {
    pub fn from_mode(mode: u32) -> Self {
        match mode & 0o170000 {
            0o040000 => Self::Dir,
            0o120000 => Self::Symlink,
            0o010000 => Self::Fifo,
            0o140000 => Self::Socket,
            0o060000 => Self::Block,
            0o020000 => Self::Char,
            _ => Self::File,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Dir => "dir",
            Self::Symlink => "symlink",
            Self::Fifo => "fifo",
            Self::Socket => "socket",
            Self::Block => "block",
            Self::Char => "char",
        }
    }
}

/// The metadata of one entry, as one `statx` returned it.
#[derive(Debug, Clone, Copy)]
pub struct EntryMeta {
    pub kind: EntryKind,
    pub size: u64,
    /// Allocated bytes: `st_blocks` × 512.
    pub blocks: u64,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub nlink: u32,
    pub inode: u64,
    pub dev: u64,
    pub mtime: Option<i64>,
    pub atime: Option<i64>,
    pub ctime: Option<i64>,
    pub btime: Option<i64>,
}
