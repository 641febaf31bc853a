//! A user-space NFSv3 client for scanning an export: no mount, no kernel client, no privilege.
//!
//! A scan of a mounted NFS file system pays a round trip per `stat` (about 2.3 requests per
//! entry: LOOKUP, GETATTR, and a READDIR per few hundred entries), so it is bound by latency.
//! This client asks the server directly: READDIRPLUS returns the names, attributes and file
//! handles of a whole directory (up to ~1,500 entries per call) in one round trip, and many
//! calls are in flight at once, pipelined by XID over a small pool of TCP connections.
//!
//! * [`ClientBuilder`] mounts an export (portmapper GETPORT, MOUNT v3 MNT for the root handle)
//!   with an AUTH_SYS [`Credential`] (nobody unless told otherwise), from a reserved source
//!   port only when asked, and spreads its connections over the server's further addresses
//!   when given (a cluster serving one namespace from many nodes).
//! * [`Client`] calls READDIRPLUS (paged by cookie, restarted when the directory changes),
//!   LOOKUP, GETATTR, READ and READLINK; each call is charged to a [`Budget`] first and counted
//!   per procedure with its latency ([`Client::stats`]).
//! * [`Walker`] lists a tree with N directories in flight and yields entries with full paths,
//!   from one root or from several [`Start`]s at once, each whole or as chosen ([`Top`]).
//! * [`Error`] says, per error, whether it is about one object (an error row) or about the
//!   server (a retryable failure of the whole shard).
//!
//! File names and paths are raw bytes (`Vec<u8>`) everywhere: the ToC keeps every name exactly,
//! including names that are not UTF-8.
//!
//! # What the export must allow
//!
//! * MOUNT and NFSv3 over TCP for the scanning client's address, `sec=sys`, read-only access.
//! * The credential passes through the export's squash rules: under `root_squash` uid 0 is
//!   nobody, and a directory nobody may not read comes back as [`Error::Denied`]. A complete
//!   listing needs a uid that may read the tree, or `no_root_squash` for the scanner's address.
//! * A server that wants a reserved source port (`secure`) gets one only through
//!   [`ClientBuilder::reserved_port`], which needs CAP_NET_BIND_SERVICE and nothing else.
//!
//! # What differs from a scan of a mounted path
//!
//! * The server's `fsid` and `fileid` name an object, the same on every client and every night;
//!   a mount's `st_dev` changes with each mount.
//! * `mode` holds the permission bits, the type is [`FileType`]; `used` is bytes (no block
//!   count); `rdev` is a (major, minor) pair.
//! * Times are unsigned 32-bit seconds and nanoseconds: a time before 1970 arrives as 2^32 plus
//!   the time (the low 32 bits the server sends), as on a kernel NFS mount.
//! * Attributes are the server's at the moment of the reply; there is no client attribute
//!   cache between two looks at the same object.
//!
//! # Measured
//!
//! On the 1 M-file bench tree (1,031,847 entries in 31,848 directories) served by nfs-ganesha on
//! 2 cores, the walker lists everything with 32,082 READDIRPLUS calls (0.031 per entry: one per
//! directory and one per further page) and keeps that rate as the round trip grows, because
//! 64 directories are listed at once; `nfs-ls -R` (libnfs) needs 0.23 calls per entry, one at a
//! time. The numbers and the command are in `docs/benchmarks.md` ("The NFS source").

mod client;
mod error;
mod proto;
mod rpc;
mod stats;
mod transport;
mod walk;
mod xdr;

#[cfg(test)]
mod tests;

pub use crate::client::{Budget, Client, ClientBuilder, DEFAULT_DIRCOUNT, DEFAULT_MAXCOUNT};
pub use crate::error::Error;
pub use crate::proto::{
    Attributes, CookieVerf, DirEntry, FileHandle, FileType, MountStatus, Procedure, ReadChunk,
    Status, Time,
};
pub use crate::rpc::Credential;
pub use crate::stats::ProcedureStats;
pub use crate::transport::ConnectionStats;
pub use crate::walk::{Choose, Entry, Item, Start, Summary, Take, Top, Walker};
