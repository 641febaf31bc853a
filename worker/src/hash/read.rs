//! Reading a candidate's content, through whichever source the plan's root names: a mounted
//! root (fd-relative `openat` with `O_NOATIME`, `statx`, `pread`, each call charged to the
//! operations budget) or an NFS export (LOOKUP from the export's root, GETATTR, READ through
//! the user-space client, each RPC charged to the same budget). The hashing itself — which
//! ranges, and that the file is the scan's from the first read to the last — is one code for
//! both ([`Reader`]).
//!
//! NFSv3 has no `O_NOATIME`: the server decides whether a READ moves the atime (most do not
//! for a read-only export mounted `noatime` on the server's side).

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ring::digest::{Context, SHA256};
use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
use rustix::io::Errno;
use scanjob_nfs::{Client, FileHandle};

use super::{BLOCK, File, Key, READ_BYTES, Read, SAMPLE_BLOCKS, hex};
use crate::error::{Error, Result};
use crate::fs::calls::device_of;
use crate::fs::identity::DeviceIds;
use crate::fs::nfs::{ClientOptions, RpcReport, connect, entry_meta, errno_of, look_up, runtime};
use crate::fs::politeness::Politeness;
use crate::fs::root::open_root;
use crate::fs::source::NfsExport;
use crate::schema::micros;

/// Where the hash step's files are opened and read.
pub(super) trait Files: Sync {
    type Open;
    /// Opens the file at `path` below the root. `PERM` means the source refused to read it
    /// without moving its atime.
    fn open(&self, path: &[u8]) -> std::result::Result<Self::Open, Errno>;
    /// The open file's key, as the ToC records it.
    fn key(&self, file: &Self::Open) -> std::result::Result<Key, Errno>;
    /// Up to `buffer.len()` bytes at `offset`; 0 at the end of the file.
    fn read_at(
        &self,
        file: &Self::Open,
        buffer: &mut [u8],
        offset: u64,
    ) -> std::result::Result<usize, Errno>;
    /// Calls made so far (system calls, or RPCs).
    fn calls(&self) -> u64;
}

/// Hashes candidate files read through `files`.
pub(super) struct Reader<F> {
    pub files: F,
    bytes: AtomicU64,
}

impl<F: Files> Reader<F> {
    pub fn new(files: F) -> Self {
        Self {
            files,
            bytes: AtomicU64::new(0),
        }
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The file's sample (and, when the sample is the whole file or `whole` is asked, its full
    /// hash), if it is still the scan's file from the first read to the last.
    pub fn read(&self, file: &File, whole: bool) -> Read {
        let open = match self.files.open(&file.path) {
            Ok(open) => open,
            Err(Errno::PERM) => return Read::Refused,
            Err(_) => return Read::Unreadable,
        };
        match self.files.key(&open) {
            Ok(key) if key == file.key => {}
            Ok(_) => return Read::Changed,
            Err(_) => return Read::Unreadable,
        }
        let size = file.key.size as u64;
        let small = size <= SAMPLE_BLOCKS * BLOCK;
        let result = if whole || small {
            self.hash_range(&open, &[(0, size)]).map(|h| {
                let sample = small.then(|| h.clone());
                (sample, Some(h))
            })
        } else {
            let spots: Vec<(u64, u64)> = (0..SAMPLE_BLOCKS)
                .map(|i| ((size - BLOCK) * i / (SAMPLE_BLOCKS - 1), BLOCK))
                .collect();
            self.hash_range(&open, &spots).map(|h| (Some(h), None))
        };
        let (sample, full) = match result {
            Ok(hashes) => hashes,
            Err(Errno::NODATA) => return Read::Changed,
            Err(_) => return Read::Unreadable,
        };
        match self.files.key(&open) {
            Ok(key) if key == file.key => Read::Hashed { sample, full },
            Ok(_) => Read::Changed,
            Err(_) => Read::Unreadable,
        }
    }

    /// SHA-256 over the bytes of `ranges` (offset, length), read in order. A file shorter than
    /// a range (it shrank) is `NODATA`.
    fn hash_range(
        &self,
        open: &F::Open,
        ranges: &[(u64, u64)],
    ) -> std::result::Result<String, Errno> {
        let mut context = Context::new(&SHA256);
        let longest = ranges.iter().map(|r| r.1).max().unwrap_or(0);
        let mut buffer = vec![0u8; (longest.min(READ_BYTES as u64) as usize).max(1)];
        for &(offset, length) in ranges {
            let mut done = 0u64;
            while done < length {
                let want = (length - done).min(buffer.len() as u64) as usize;
                let n = self
                    .files
                    .read_at(open, &mut buffer[..want], offset + done)?;
                if n == 0 {
                    return Err(Errno::NODATA);
                }
                self.bytes.fetch_add(n as u64, Ordering::Relaxed);
                context.update(&buffer[..n]);
                done += n as u64;
            }
        }
        Ok(hex(context.finish().as_ref()))
    }
}

/// The files of a mounted root.
pub(super) struct Mounted {
    root: Arc<OwnedFd>,
    /// The ToC's `dev` of each device below the root.
    devices: DeviceIds,
    politeness: Arc<Politeness>,
    calls: AtomicU64,
}

impl Mounted {
    pub fn open(path: &Path, politeness: Arc<Politeness>) -> Result<Mounted> {
        let (_, root) = open_root(path)?;
        let devices = DeviceIds::of_root(path, device_of(root.as_fd()).unwrap_or_default());
        Ok(Mounted {
            root,
            devices,
            politeness,
            calls: AtomicU64::new(0),
        })
    }

    fn call<T>(&self, f: impl FnOnce() -> T) -> T {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.politeness.call(f)
    }
}

impl Files for Mounted {
    type Open = OwnedFd;

    fn open(&self, path: &[u8]) -> std::result::Result<OwnedFd, Errno> {
        let path = CString::new(path.to_vec()).map_err(|_| Errno::INVAL)?;
        let flags = OFlags::RDONLY | OFlags::NOATIME | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        self.call(|| rustix::fs::openat(&*self.root, &path, flags, Mode::empty()))
    }

    fn key(&self, fd: &OwnedFd) -> std::result::Result<Key, Errno> {
        let stx = self.call(|| {
            rustix::fs::statx(
                fd,
                c"",
                AtFlags::EMPTY_PATH,
                StatxFlags::SIZE | StatxFlags::INO | StatxFlags::MTIME | StatxFlags::CTIME,
            )
        })?;
        let ns = |t: rustix::fs::StatxTimestamp| {
            t.tv_sec
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::from(t.tv_nsec))
        };
        Ok(Key {
            dev: self
                .devices
                .stable(rustix::fs::makedev(stx.stx_dev_major, stx.stx_dev_minor)),
            inode: stx.stx_ino as i64,
            size: stx.stx_size as i64,
            mtime: micros(ns(stx.stx_mtime)),
            ctime: micros(ns(stx.stx_ctime)),
        })
    }

    fn read_at(
        &self,
        fd: &OwnedFd,
        buffer: &mut [u8],
        offset: u64,
    ) -> std::result::Result<usize, Errno> {
        self.call(|| rustix::io::pread(fd, buffer, offset))
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// The files of an NFS export, read by the user-space client on a runtime of its own (the
/// hash step's reading threads each wait on their call).
pub(super) struct Exported {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Exported {
    /// Mounts `export` as `options` say; RPCs are charged to `politeness`.
    pub async fn connect(
        export: &NfsExport,
        root: &str,
        options: ClientOptions,
        politeness: Arc<Politeness>,
    ) -> Result<Exported> {
        let runtime = runtime("scanjob-nfs-read")?;
        let (export, root) = (export.clone(), root.to_owned());
        let mounted = runtime
            .spawn(async move { connect(&export, &root, &options, politeness).await })
            .await;
        match mounted {
            Ok(Ok(client)) => Ok(Exported { runtime, client }),
            failed => {
                // A runtime may not be dropped where the caller's runtime would block.
                runtime.shutdown_background();
                Err(match failed {
                    Ok(Err(error)) => error,
                    _ => Error::Io {
                        what: "mounting the NFS export".into(),
                        source: std::io::Error::other("the mount's task ended early"),
                    },
                })
            }
        }
    }
}

impl Files for Exported {
    type Open = FileHandle;

    fn open(&self, path: &[u8]) -> std::result::Result<FileHandle, Errno> {
        self.runtime
            .block_on(look_up(&self.client, path))
            .map_err(|e| errno_of(&e))
    }

    fn key(&self, handle: &FileHandle) -> std::result::Result<Key, Errno> {
        let attributes = self
            .runtime
            .block_on(self.client.getattr(handle))
            .map_err(|e| errno_of(&e))?;
        let meta = entry_meta(&attributes);
        Ok(Key {
            dev: meta.dev as i64,
            inode: meta.inode as i64,
            size: meta.size as i64,
            mtime: meta.mtime.map(micros).unwrap_or(i64::MIN),
            ctime: meta.ctime.map(micros).unwrap_or(i64::MIN),
        })
    }

    fn read_at(
        &self,
        handle: &FileHandle,
        buffer: &mut [u8],
        offset: u64,
    ) -> std::result::Result<usize, Errno> {
        let chunk = self
            .runtime
            .block_on(
                self.client
                    .read(handle, offset, buffer.len().min(u32::MAX as usize) as u32),
            )
            .map_err(|e| errno_of(&e))?;
        let n = chunk.data.len().min(buffer.len());
        buffer[..n].copy_from_slice(&chunk.data[..n]);
        Ok(n)
    }

    fn calls(&self) -> u64 {
        RpcReport::of(&self.client).calls()
    }
}
