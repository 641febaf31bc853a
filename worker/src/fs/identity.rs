//! Which file system an entry is on, as the ToC's `dev` column records it: the same on every
//! node and every night, so that what is keyed by (dev, inode) — the hash cache, move
//! detection, hard links counted once across shards — survives a remount.
//!
//! The kernel's `st_dev` does not: an NFS or FUSE mount gets a new anonymous device number on
//! every mount, so each node (and each night's pod) sees another. On a mounted path, `dev` is
//! therefore the mount's position under the scan root: 0 for the root's own file system, and
//! for a file system mounted below the root, a 63-bit FNV-1a hash of its mount point's path
//! relative to the root (never 0 or negative). A device that is not mounted below the root
//! (which the walk does not meet) keeps its kernel number. On the NFS source, `dev` is the
//! server's fsid, which is already the same everywhere.
//!
//! The mounts are read once from `/proc/self/mountinfo` when the walk starts.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The stable `dev` of each device a walk below one root meets.
#[derive(Debug, Clone, Default)]
pub struct DeviceIds {
    /// The kernel's number of the root's file system; `None` (the default) keeps every
    /// kernel number as it is.
    root_dev: Option<u64>,
    /// File systems mounted below the root: kernel number and stable id.
    below: Vec<(u64, i64)>,
}

impl DeviceIds {
    /// The ids below `root` (an absolute path), whose file system is `root_dev`, from this
    /// process's mount table. Without a readable mount table, only the root's own file system
    /// gets its stable id.
    pub fn of_root(root: &Path, root_dev: u64) -> DeviceIds {
        let table = std::fs::read("/proc/self/mountinfo").unwrap_or_default();
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        DeviceIds::from_mountinfo(root.as_os_str().as_bytes(), root_dev, &table)
    }

    /// As [`DeviceIds::of_root`], from the text of a mount table.
    pub fn from_mountinfo(root: &[u8], root_dev: u64, mountinfo: &[u8]) -> DeviceIds {
        let root = trim_slash(root);
        let mut below: Vec<(u64, Vec<u8>)> = Vec::new();
        for line in mountinfo.split(|&b| b == b'\n') {
            // id parent major:minor root mount-point options ...
            let mut fields = line.split(|&b| b == b' ');
            let (Some(_), Some(_), Some(numbers), Some(_), Some(point)) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                continue;
            };
            let Some(dev) = device_number(numbers) else {
                continue;
            };
            let point = unescape(point);
            let Some(relative) = point.strip_prefix(root) else {
                continue;
            };
            let Some(relative) = relative.strip_prefix(b"/") else {
                continue;
            };
            if dev != root_dev && !relative.is_empty() {
                below.push((dev, trim_slash(relative).to_vec()));
            }
        }
        // One device mounted at several places below the root takes its shortest (then
        // first in byte order) mount point, the same on every node.
        below.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(a.1.len().cmp(&b.1.len()))
                .then(a.1.cmp(&b.1))
        });
        below.dedup_by_key(|(dev, _)| *dev);
        DeviceIds {
            root_dev: Some(root_dev),
            below: below
                .into_iter()
                .map(|(dev, point)| (dev, mount_id(&point)))
                .collect(),
        }
    }

    /// The `dev` column's value for the kernel's device number `dev`.
    pub fn stable(&self, dev: u64) -> i64 {
        if self.root_dev == Some(dev) {
            return 0;
        }
        match self.below.iter().find(|(d, _)| *d == dev) {
            Some((_, id)) => *id,
            None => dev as i64,
        }
    }
}

fn trim_slash(path: &[u8]) -> &[u8] {
    let mut path = path;
    while let [rest @ .., b'/'] = path {
        path = rest;
    }
    path
}

/// `major:minor` as the kernel's `st_dev`.
fn device_number(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let (major, minor) = text.split_once(':')?;
    Some(rustix::fs::makedev(
        major.parse().ok()?,
        minor.parse().ok()?,
    ))
}

/// A mount point as mountinfo writes it: space, tab, newline and backslash as `\ooo`.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = field[i + 1..i + 4]
                .iter()
                .fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

/// FNV-1a (64 bits) of a mount point relative to the root, as a positive, non-zero `dev`.
fn mount_id(relative: &[u8]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in relative {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ((hash >> 1) as i64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[u8] = b"22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
        30 1 8:1 / / rw - ext4 /dev/vda rw\n\
        41 30 0:50 / /scan rw - fuse.slowfs slowfs rw\n\
        42 41 0:51 / /scan/projects/big\\040data rw - fuse.slowfs slowfs rw\n\
        43 41 0:52 / /scan/projects/b rw - tmpfs tmpfs rw\n\
        44 41 0:52 /sub /scan/projects/a/again rw - tmpfs tmpfs rw\n\
        45 30 0:53 / /scanner rw - tmpfs tmpfs rw\n";

    #[test]
    fn the_roots_file_system_is_0_and_a_mount_below_it_is_named_by_its_place() {
        let ids = DeviceIds::from_mountinfo(b"/scan/projects/", rustix::fs::makedev(0, 50), TABLE);
        assert_eq!(ids.stable(rustix::fs::makedev(0, 50)), 0);
        let big = ids.stable(rustix::fs::makedev(0, 51));
        assert_eq!(big, mount_id(b"big data"));
        assert!(big > 0);
        // Mounted twice below the root: the shorter place names it.
        assert_eq!(ids.stable(rustix::fs::makedev(0, 52)), mount_id(b"b"));
        // Not below the root (/scanner only shares a prefix of bytes): the kernel's number.
        let outside = rustix::fs::makedev(0, 53);
        assert_eq!(ids.stable(outside), outside as i64);
    }

    #[test]
    fn a_remount_under_another_device_number_keeps_every_id() {
        let night1 =
            DeviceIds::from_mountinfo(b"/scan/projects", rustix::fs::makedev(0, 50), TABLE);
        let remounted = String::from_utf8(TABLE.to_vec())
            .unwrap()
            .replace("0:50", "0:60")
            .replace("0:51", "0:61");
        let night2 = DeviceIds::from_mountinfo(
            b"/scan/projects",
            rustix::fs::makedev(0, 60),
            remounted.as_bytes(),
        );
        assert_eq!(
            night1.stable(rustix::fs::makedev(0, 50)),
            night2.stable(rustix::fs::makedev(0, 60))
        );
        assert_eq!(
            night1.stable(rustix::fs::makedev(0, 51)),
            night2.stable(rustix::fs::makedev(0, 61))
        );
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape(b"/a\\040b\\011c\\134d"), b"/a b\tc\\d");
        assert_eq!(unescape(b"/end\\04"), b"/end\\04");
    }
}
