//! The NFSv3 (RFC 1813), MOUNT v3 and portmapper v2 (RFC 1833) messages a scan sends, and the
//! types of what comes back: file handles, attributes, directory entries.
//!
//! Names are raw bytes everywhere: a file system name is any byte string without `/` and NUL,
//! and the ToC keeps it exactly.

use std::fmt;

use crate::error::Error;
use crate::xdr::{Decoder, Encoder};

pub(crate) const PMAP_PROGRAM: u32 = 100_000;
pub(crate) const MOUNT_PROGRAM: u32 = 100_005;
pub(crate) const NFS_PROGRAM: u32 = 100_003;

/// NFSv3 limits a file handle to 64 bytes (NFS3_FHSIZE).
const FHSIZE: usize = 64;
/// No server sends a name or a symlink target longer than this; a longer length is garbage.
const MAX_NAME: usize = 64 * 1024;

/// One remote procedure the client calls; counters and latencies are kept per procedure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Procedure {
    /// Portmapper GETPORT: which port serves a program.
    GetPort,
    /// MOUNT3 MNT: the root file handle of an export.
    Mount,
    Null,
    GetAttr,
    Lookup,
    ReadLink,
    Read,
    ReadDirPlus,
}

impl Procedure {
    pub const ALL: [Procedure; 8] = [
        Procedure::GetPort,
        Procedure::Mount,
        Procedure::Null,
        Procedure::GetAttr,
        Procedure::Lookup,
        Procedure::ReadLink,
        Procedure::Read,
        Procedure::ReadDirPlus,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// (program, version, procedure number) on the wire.
    pub(crate) fn wire(self) -> (u32, u32, u32) {
        match self {
            Procedure::GetPort => (PMAP_PROGRAM, 2, 3),
            Procedure::Mount => (MOUNT_PROGRAM, 3, 1),
            Procedure::Null => (NFS_PROGRAM, 3, 0),
            Procedure::GetAttr => (NFS_PROGRAM, 3, 1),
            Procedure::Lookup => (NFS_PROGRAM, 3, 3),
            Procedure::ReadLink => (NFS_PROGRAM, 3, 5),
            Procedure::Read => (NFS_PROGRAM, 3, 6),
            Procedure::ReadDirPlus => (NFS_PROGRAM, 3, 17),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Procedure::GetPort => "GETPORT",
            Procedure::Mount => "MNT",
            Procedure::Null => "NULL",
            Procedure::GetAttr => "GETATTR",
            Procedure::Lookup => "LOOKUP",
            Procedure::ReadLink => "READLINK",
            Procedure::Read => "READ",
            Procedure::ReadDirPlus => "READDIRPLUS",
        }
    }
}

impl fmt::Display for Procedure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An NFSv3 status (nfsstat3). Unknown codes are kept, not folded into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u32);

impl Status {
    pub const OK: Status = Status(0);
    pub const PERM: Status = Status(1);
    pub const NOENT: Status = Status(2);
    pub const IO: Status = Status(5);
    pub const ACCES: Status = Status(13);
    pub const NOTDIR: Status = Status(20);
    pub const INVAL: Status = Status(22);
    pub const NAMETOOLONG: Status = Status(63);
    pub const STALE: Status = Status(70);
    pub const BADHANDLE: Status = Status(10001);
    pub const NOT_SYNC: Status = Status(10002);
    pub const BAD_COOKIE: Status = Status(10003);
    pub const NOTSUPP: Status = Status(10004);
    pub const TOOSMALL: Status = Status(10005);
    pub const SERVERFAULT: Status = Status(10006);
    pub const JUKEBOX: Status = Status(10008);

    fn name(self) -> Option<&'static str> {
        Some(match self {
            Status::OK => "OK",
            Status::PERM => "PERM",
            Status::NOENT => "NOENT",
            Status::IO => "IO",
            Status::ACCES => "ACCES",
            Status::NOTDIR => "NOTDIR",
            Status::INVAL => "INVAL",
            Status::NAMETOOLONG => "NAMETOOLONG",
            Status::STALE => "STALE",
            Status::BADHANDLE => "BADHANDLE",
            Status::NOT_SYNC => "NOT_SYNC",
            Status::BAD_COOKIE => "BAD_COOKIE",
            Status::NOTSUPP => "NOTSUPP",
            Status::TOOSMALL => "TOOSMALL",
            Status::SERVERFAULT => "SERVERFAULT",
            Status::JUKEBOX => "JUKEBOX",
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "NFS3ERR_{name}"),
            None => write!(f, "NFS3 status {}", self.0),
        }
    }
}

/// A MOUNT v3 status (mountstat3): why an export was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountStatus(pub u32);

impl fmt::Display for MountStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1 => "PERM (not allowed to mount)",
            2 => "NOENT (no such export)",
            5 => "IO",
            13 => "ACCES",
            20 => "NOTDIR",
            22 => "INVAL",
            63 => "NAMETOOLONG",
            10004 => "NOTSUPP",
            10006 => "SERVERFAULT",
            other => return write!(f, "MOUNT status {other}"),
        };
        write!(f, "MNT3ERR_{name}")
    }
}

/// An opaque NFS file handle (at most 64 bytes): the server's name for an object.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FileHandle(pub Vec<u8>);

impl fmt::Debug for FileHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileHandle(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// The type of a file system object (ftype3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    Regular,
    Directory,
    BlockDevice,
    CharDevice,
    Symlink,
    Socket,
    Fifo,
}

impl FileType {
    fn from_wire(v: u32) -> Result<FileType, Error> {
        Ok(match v {
            1 => FileType::Regular,
            2 => FileType::Directory,
            3 => FileType::BlockDevice,
            4 => FileType::CharDevice,
            5 => FileType::Symlink,
            6 => FileType::Socket,
            7 => FileType::Fifo,
            other => return Err(Error::Malformed(format!("file type {other}"))),
        })
    }
}

/// Seconds and nanoseconds since the epoch (nfstime3: unsigned 32-bit seconds, so times before
/// 1970 and after 2106 cannot be carried; the server decides what it sends for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Time {
    pub seconds: u32,
    pub nanoseconds: u32,
}

/// The attributes of an object (fattr3), as the server reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub file_type: FileType,
    /// Permission bits only (07777); the type is in `file_type`.
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Bytes of storage used (st_blocks * 512 on most servers).
    pub used: u64,
    /// Device numbers of a block or character device.
    pub rdev: (u32, u32),
    /// The file system on the server; fsid and fileid together name the object across mounts.
    pub fsid: u64,
    pub fileid: u64,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
}

/// One entry of a READDIRPLUS reply. The server may omit attributes or handle of any entry.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub fileid: u64,
    pub cookie: u64,
    pub attributes: Option<Attributes>,
    pub handle: Option<FileHandle>,
}

/// A cookie verifier: the server's version of a directory listing; cookies from one version
/// are only valid with it.
pub type CookieVerf = [u8; 8];

/// One page of a directory: entries, the verifier to send with the next cookie, and whether
/// this is the last page.
#[derive(Debug)]
pub(crate) struct DirPage {
    pub(crate) cookieverf: CookieVerf,
    pub(crate) entries: Vec<DirEntry>,
    pub(crate) eof: bool,
}

/// The result of READ: bytes from the offset, and whether the file ends there.
#[derive(Debug)]
pub struct ReadChunk {
    pub data: Vec<u8>,
    pub eof: bool,
}

// --- arguments -----------------------------------------------------------------------------

pub(crate) fn getport_args(enc: &mut Encoder, program: u32, version: u32) {
    const IPPROTO_TCP: u32 = 6;
    enc.u32(program).u32(version).u32(IPPROTO_TCP).u32(0);
}

pub(crate) fn mount_args(enc: &mut Encoder, export: &[u8]) {
    enc.opaque(export);
}

pub(crate) fn handle_args(enc: &mut Encoder, fh: &FileHandle) {
    enc.opaque(&fh.0);
}

pub(crate) fn lookup_args(enc: &mut Encoder, dir: &FileHandle, name: &[u8]) {
    enc.opaque(&dir.0).opaque(name);
}

pub(crate) fn read_args(enc: &mut Encoder, fh: &FileHandle, offset: u64, count: u32) {
    enc.opaque(&fh.0).u64(offset).u32(count);
}

pub(crate) fn readdirplus_args(
    enc: &mut Encoder,
    dir: &FileHandle,
    cookie: u64,
    verf: &CookieVerf,
    dircount: u32,
    maxcount: u32,
) {
    enc.opaque(&dir.0)
        .u64(cookie)
        .fixed(verf)
        .u32(dircount)
        .u32(maxcount);
}

// --- results -------------------------------------------------------------------------------

pub(crate) fn getport_res(dec: &mut Decoder<'_>) -> Result<u16, Error> {
    let port = dec.u32("GETPORT port")?;
    u16::try_from(port).map_err(|_| Error::Malformed(format!("GETPORT port {port}")))
}

/// MNT's result: the status, and on success the export's root handle (the list of accepted
/// authentication flavors after it is not needed: AUTH_SYS is what the scan speaks).
pub(crate) fn mount_res(dec: &mut Decoder<'_>) -> Result<Result<FileHandle, MountStatus>, Error> {
    let status = dec.u32("mountstat3")?;
    if status != 0 {
        return Ok(Err(MountStatus(status)));
    }
    Ok(Ok(handle(dec)?))
}

/// The status word that starts every NFSv3 result.
pub(crate) fn status(dec: &mut Decoder<'_>) -> Result<Status, Error> {
    Ok(Status(dec.u32("nfsstat3")?))
}

pub(crate) fn handle(dec: &mut Decoder<'_>) -> Result<FileHandle, Error> {
    Ok(FileHandle(dec.opaque(FHSIZE, "file handle")?.to_vec()))
}

fn time(dec: &mut Decoder<'_>) -> Result<Time, Error> {
    Ok(Time {
        seconds: dec.u32("nfstime3")?,
        nanoseconds: dec.u32("nfstime3")?,
    })
}

pub(crate) fn attributes(dec: &mut Decoder<'_>) -> Result<Attributes, Error> {
    Ok(Attributes {
        file_type: FileType::from_wire(dec.u32("ftype3")?)?,
        mode: dec.u32("mode")? & 0o7777,
        nlink: dec.u32("nlink")?,
        uid: dec.u32("uid")?,
        gid: dec.u32("gid")?,
        size: dec.u64("size")?,
        used: dec.u64("used")?,
        rdev: (dec.u32("rdev")?, dec.u32("rdev")?),
        fsid: dec.u64("fsid")?,
        fileid: dec.u64("fileid")?,
        atime: time(dec)?,
        mtime: time(dec)?,
        ctime: time(dec)?,
    })
}

pub(crate) fn post_op_attr(dec: &mut Decoder<'_>) -> Result<Option<Attributes>, Error> {
    if dec.bool("post_op_attr")? {
        Ok(Some(attributes(dec)?))
    } else {
        Ok(None)
    }
}

fn post_op_fh(dec: &mut Decoder<'_>) -> Result<Option<FileHandle>, Error> {
    if dec.bool("post_op_fh3")? {
        Ok(Some(handle(dec)?))
    } else {
        Ok(None)
    }
}

/// LOOKUP3resok: the object's handle and (optionally) attributes.
pub(crate) fn lookup_ok(dec: &mut Decoder<'_>) -> Result<(FileHandle, Option<Attributes>), Error> {
    let fh = handle(dec)?;
    let attrs = post_op_attr(dec)?;
    post_op_attr(dec)?; // the directory's
    Ok((fh, attrs))
}

pub(crate) fn readlink_ok(dec: &mut Decoder<'_>) -> Result<Vec<u8>, Error> {
    post_op_attr(dec)?;
    Ok(dec.opaque(MAX_NAME, "symlink target")?.to_vec())
}

pub(crate) fn read_ok(dec: &mut Decoder<'_>, asked: u32) -> Result<ReadChunk, Error> {
    post_op_attr(dec)?;
    let count = dec.u32("READ count")?;
    let eof = dec.bool("READ eof")?;
    let data = dec.opaque(asked as usize, "READ data")?;
    if data.len() != count as usize {
        return Err(Error::Malformed(format!(
            "READ count {count} with {} bytes of data",
            data.len()
        )));
    }
    Ok(ReadChunk {
        data: data.to_vec(),
        eof,
    })
}

pub(crate) fn readdirplus_ok(dec: &mut Decoder<'_>) -> Result<DirPage, Error> {
    post_op_attr(dec)?; // the directory's
    let verf = dec.fixed(8, "cookieverf")?;
    let mut cookieverf = [0; 8];
    cookieverf.copy_from_slice(verf);
    let mut entries = Vec::new();
    while dec.bool("entryplus3 follows")? {
        let fileid = dec.u64("fileid")?;
        let name = dec.opaque(MAX_NAME, "file name")?.to_vec();
        let cookie = dec.u64("cookie")?;
        let attributes = post_op_attr(dec)?;
        let handle = post_op_fh(dec)?;
        entries.push(DirEntry {
            name,
            fileid,
            cookie,
            attributes,
            handle,
        });
    }
    let eof = dec.bool("dirlistplus3 eof")?;
    Ok(DirPage {
        cookieverf,
        entries,
        eof,
    })
}
