//! The system calls every step makes on the mounted tree: a directory opened relative to its
//! parent's descriptor, an entry `statx`ed relative to its directory's, never by full path (GNU
//! fts' way: no repeated path lookup, and entries below PATH_MAX's reach stay reachable), and
//! which errors say the file system itself failed rather than one entry of it.

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
use rustix::io::Errno;

use crate::fs::entry::{EntryKind, EntryMeta};

pub const STATX_MASK: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::MODE)
    .union(StatxFlags::NLINK)
    .union(StatxFlags::UID)
    .union(StatxFlags::GID)
    .union(StatxFlags::ATIME)
    .union(StatxFlags::MTIME)
    .union(StatxFlags::CTIME)
    .union(StatxFlags::INO)
    .union(StatxFlags::SIZE)
    .union(StatxFlags::BLOCKS)
    .union(StatxFlags::BTIME);

fn nanos(t: &rustix::fs::StatxTimestamp, out_of_range: &mut u64) -> Option<i64> {
    let ns = t
        .tv_sec
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(i64::from(t.tv_nsec)));
    if ns.is_none() {
        *out_of_range += 1;
    }
    ns
}

/// `statx` relative to `dir`, without following a final symlink. `AT_STATX_DONT_SYNC` lets a
/// network file system answer from its attribute cache instead of a round trip per entry.
pub fn stat_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    out_of_range: &mut u64,
) -> Result<EntryMeta, Errno> {
    let stx = rustix::fs::statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC,
        STATX_MASK,
    )?;
    let mode = u32::from(stx.stx_mode);
    let has_btime = StatxFlags::from_bits_retain(stx.stx_mask).contains(StatxFlags::BTIME);
    Ok(EntryMeta {
        kind: EntryKind::from_mode(mode),
        size: stx.stx_size,
        blocks: stx.stx_blocks.saturating_mul(512),
        uid: stx.stx_uid,
        gid: stx.stx_gid,
        mode,
        nlink: stx.stx_nlink,
        inode: stx.stx_ino,
        dev: rustix::fs::makedev(stx.stx_dev_major, stx.stx_dev_minor),
        mtime: nanos(&stx.stx_mtime, out_of_range),
        atime: nanos(&stx.stx_atime, out_of_range),
        ctime: nanos(&stx.stx_ctime, out_of_range),
        btime: if has_btime {
            nanos(&stx.stx_btime, out_of_range)
        } else {
            None
        },
    })
}

/// `O_NOATIME` fails with EPERM for directories we do not own unless we are privileged; after the
/// first refusal the walk stops asking for it.
static NOATIME_PERMITTED: AtomicBool = AtomicBool::new(true);

/// Opens a directory below `parent` for listing, without following a symlink.
pub fn open_dir(parent: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    let name: &OsStr = if name.is_empty() {
        OsStr::new(".")
    } else {
        OsStr::from_bytes(name)
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if NOATIME_PERMITTED.load(Ordering::Relaxed) {
        match rustix::fs::openat(parent, name, flags | OFlags::NOATIME, Mode::empty()) {
            Err(Errno::PERM) => NOATIME_PERMITTED.store(false, Ordering::Relaxed),
            other => return other,
        }
    }
    rustix::fs::openat(parent, name, flags, Mode::empty())
}

/// The device of an open directory, encoded as the `dev` column encodes it.
pub fn device_of(dir: BorrowedFd<'_>) -> Option<u64> {
    stat_at(dir, c".", &mut 0).ok().map(|meta| meta.dev)
}

/// Errors that say the file system itself failed rather than one entry of it: its server or
/// FUSE daemon went away, or the mount is gone. The rest of the tree would read as error rows,
/// a night in which the store "disappeared", so the walk stops at the first one instead.
/// `EIO` is not among them: one damaged file or disk block is an error row, as it should be.
pub fn fails_the_file_system(errno: Errno) -> bool {
    matches!(
        errno,
        Errno::NOTCONN
            | Errno::HOSTDOWN
            | Errno::HOSTUNREACH
            | Errno::NETUNREACH
            | Errno::TIMEDOUT
            | Errno::CONNREFUSED
            | Errno::CONNABORTED
            | Errno::CONNRESET
            | Errno::SHUTDOWN
            | Errno::NODEV
    )
}

/// Where and how the file system failed (see [`fails_the_file_system`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSystemFailure {
    /// Relative to the scan root; empty for the root itself.
    pub path: Vec<u8>,
    pub errno: Errno,
}
