//! An NFS export as the steps see it: mounted by the user-space client (`scanjob_nfs`) with
//! an AUTH_SYS identity, every RPC charged to the same operations budget as a mounted scan's
//! calls, and the server's attributes and errors turned into the ToC's [`EntryMeta`] and errnos.

use std::future::Future;
use std::net::{IpAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustix::io::Errno;
use scanjob_nfs::{
    Attributes, Client, ClientBuilder, Credential, FileHandle, FileType, Procedure, Status,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fs::entry::{EntryKind, EntryMeta};
use crate::fs::politeness::Politeness;
use crate::fs::source::NfsExport;

/// The AUTH_SYS identity of a scan when none is given: nobody, whom the export's squash
/// rules leave as it is.
const NOBODY: u32 = 65534;

/// How the shards' client meets the server: the AUTH_SYS identity of every call, whether the
/// connections come from a reserved port (below 1024, which a `secure` export insists on and
/// binding which needs CAP_NET_BIND_SERVICE, or a network namespace whose unprivileged ports
/// start lower), and further addresses of the same server to spread the connections over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    pub uid: u32,
    pub gid: u32,
    pub reserved_port: bool,
    /// Other addresses (or names) of the server the root names: nodes of a cluster that serve
    /// one namespace.
    pub addresses: Vec<String>,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            uid: NOBODY,
            gid: NOBODY,
            reserved_port: false,
            addresses: Vec::new(),
        }
    }
}

/// TCP connections to the server: calls are pipelined on each, so a few suffice.
const CONNECTIONS: usize = 4;
/// Directory listings an export's walk (and a plan's count) keeps in flight for `threads`: a
/// listing in flight costs a pending call, not a thread, so four per thread and at least 64,
/// so that round trips of several milliseconds do not set the pace.
pub fn listings_in_flight(threads: usize) -> usize {
    (threads * 4).max(64)
}

/// How long a call may wait for its reply before the shard gives up on the server.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Charges every RPC to the operations budget, one slot each, waiting without blocking the
/// runtime's thread. The latency guard does not apply: it limits blocking calls in flight,
/// and here the calls in flight are the walker's `in_flight`.
struct PolitenessBudget(Arc<Politeness>);

impl scanjob_nfs::Budget for PolitenessBudget {
    fn acquire(&self, _: Procedure) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = self.0.budget.as_ref().and_then(|budget| budget.take_n(1));
        Box::pin(async move {
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
        })
    }
}

/// A runtime of its own for the client's calls, on two threads named `name`: the steps that
/// read an export (the scan's walk, the hash step's reads) run on threads that wait on it.
pub fn runtime(name: &str) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            what: format!("the {name} runtime"),
            source,
        })
}

/// Mounts `export` as `options` say. A refused mount or a server that rejects the identity is
/// bad input (a retry sends the same calls); a server that cannot be reached may come back.
pub async fn connect(
    export: &NfsExport,
    root: &str,
    options: &ClientOptions,
    politeness: Arc<Politeness>,
) -> Result<Client> {
    let server = resolve(&export.server, export.portmap_port, root)?;
    let more_servers = options
        .addresses
        .iter()
        .map(|s| resolve(s, export.portmap_port, root))
        .collect::<Result<Vec<_>>>()?;
    ClientBuilder::new(server, export.export.clone())
        .more_servers(more_servers)
        .portmap_port(export.portmap_port)
        .credential(Credential::new(options.uid, options.gid, Vec::new()))
        .reserved_port(options.reserved_port)
        .connections(CONNECTIONS)
        .timeout(CALL_TIMEOUT)
        .budget(Arc::new(PolitenessBudget(politeness)))
        .connect()
        .await
        .map_err(|e| failure(root, b"", e))
}

/// A server's address: an IP address as it is, a name through the resolver.
fn resolve(server: &str, port: u16, root: &str) -> Result<IpAddr> {
    if let Ok(ip) = server.parse() {
        return Ok(ip);
    }
    let mut addrs = (server, port).to_socket_addrs().map_err(|e| Error::Io {
        what: format!("resolving the NFS server {server} of {root}"),
        source: e,
    })?;
    addrs.next().map(|a| a.ip()).ok_or_else(|| Error::BadRoot {
        path: root.to_string(),
        reason: format!("{server} has no address"),
    })
}

/// The shard's error for a client error that is not about one object: retryable when the
/// server could not be asked (nothing of the shard is kept), bad input when it refused.
pub fn failure(root: &str, path: &[u8], error: scanjob_nfs::Error) -> Error {
    if error.is_retryable() || error.is_row() {
        Error::FileSystemFailed {
            root: root.to_string(),
            path: String::from_utf8_lossy(path).into_owned(),
            source: std::io::Error::other(error),
        }
    } else {
        Error::BadRoot {
            path: root.to_string(),
            reason: error.to_string(),
        }
    }
}

/// The entry's metadata as a `statx` of it on a kernel mount would give it: `fileid` is the
/// inode, the server's `fsid` the device; no birth time (NFSv3 has none).
pub fn entry_meta(a: &Attributes) -> EntryMeta {
    let (kind, type_bits) = match a.file_type {
        FileType::Regular => (EntryKind::File, 0o100000),
        FileType::Directory => (EntryKind::Dir, 0o040000),
        FileType::Symlink => (EntryKind::Symlink, 0o120000),
        FileType::Fifo => (EntryKind::Fifo, 0o010000),
        FileType::Socket => (EntryKind::Socket, 0o140000),
        FileType::BlockDevice => (EntryKind::Block, 0o060000),
        FileType::CharDevice => (EntryKind::Char, 0o020000),
    };
    // Unsigned 32-bit seconds always fit i64 nanoseconds.
    let ns = |t: scanjob_nfs::Time| {
        Some(i64::from(t.seconds) * 1_000_000_000 + i64::from(t.nanoseconds))
    };
    EntryMeta {
        kind,
        size: a.size,
        blocks: a.used,
        uid: a.uid,
        gid: a.gid,
        mode: type_bits | (a.mode & 0o7777),
        nlink: a.nlink,
        inode: a.fileid,
        dev: a.fsid,
        mtime: ns(a.mtime),
        atime: ns(a.atime),
        ctime: ns(a.ctime),
        btime: None,
    }
}

/// The handle of the object at `path` below the export's root: one LOOKUP per component.
pub async fn look_up(
    client: &Client,
    path: &[u8],
) -> std::result::Result<FileHandle, scanjob_nfs::Error> {
    let mut handle = client.root().clone();
    for name in path.split(|&b| b == b'/').filter(|n| !n.is_empty()) {
        handle = client.lookup(&handle, name).await?.0;
    }
    Ok(handle)
}

/// The errno a kernel NFS client would return for an error about one object, so that error
/// rows are counted by the same kinds as a mounted scan's.
pub fn errno_of(error: &scanjob_nfs::Error) -> Errno {
    use scanjob_nfs::Error as E;
    match error {
        E::Denied { status, .. } if *status == Status::PERM => Errno::PERM,
        E::Denied { .. } => Errno::ACCESS,
        E::NotFound { .. } => Errno::NOENT,
        E::Stale { .. } => Errno::STALE,
        E::Status { status, .. } => match *status {
            Status::IO => Errno::IO,
            Status::NOTDIR => Errno::NOTDIR,
            Status::INVAL => Errno::INVAL,
            Status::NAMETOOLONG => Errno::NAMETOOLONG,
            Status::NOTSUPP => Errno::OPNOTSUPP,
            // NXIO, ISDIR, FBIG and the others the Linux client passes through by number.
            Status(code @ (6 | 17 | 18 | 19 | 21 | 27 | 28 | 30 | 31)) => {
                Errno::from_raw_os_error(code as i32)
            }
            _ => Errno::REMOTEIO,
        },
        E::Unstable { .. } => Errno::AGAIN,
        E::InvalidName { .. } => Errno::INVAL,
        _ => Errno::IO,
    }
}

/// What a scan cost the server, per NFS procedure: an additive field of a shard's
/// `_SUCCESS.json` and of the run's summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RpcReport {
    pub procedures: Vec<ProcedureReport>,
    /// Calls per server address, when the root's server was reached at more than one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerReport>,
}

/// The calls one server address answered, over how many connections.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerReport {
    pub address: String,
    pub connections: u64,
    pub calls: u64,
}

/// One procedure's calls and latencies (percentiles within a quarter of the true value).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcedureReport {
    pub procedure: String,
    /// Calls sent, retries included.
    pub calls: u64,
    /// Calls answered with an error status, or not answered.
    pub errors: u64,
    /// Calls sent again after JUKEBOX.
    pub retries: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl RpcReport {
    pub fn of(client: &Client) -> RpcReport {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        RpcReport {
            procedures: client
                .stats()
                .into_iter()
                .map(|s| ProcedureReport {
                    procedure: s.procedure.name().to_string(),
                    calls: s.calls,
                    errors: s.errors,
                    retries: s.retries,
                    p50_ms: ms(s.p50),
                    p90_ms: ms(s.p90),
                    p99_ms: ms(s.p99),
                    max_ms: ms(s.max),
                })
                .collect(),
            servers: servers_of(client),
        }
    }

    /// Calls of every procedure.
    pub fn calls(&self) -> u64 {
        self.procedures.iter().map(|p| p.calls).sum()
    }

    /// Adds another shard's calls. Percentiles cannot be added: the larger of the two is kept,
    /// an upper bound of the run's.
    pub fn add(&mut self, other: &RpcReport) {
        for theirs in &other.servers {
            add_server(&mut self.servers, theirs.clone());
        }
        for theirs in &other.procedures {
            match self
                .procedures
                .iter_mut()
                .find(|p| p.procedure == theirs.procedure)
            {
                Some(ours) => {
                    ours.calls += theirs.calls;
                    ours.errors += theirs.errors;
                    ours.retries += theirs.retries;
                    ours.p50_ms = ours.p50_ms.max(theirs.p50_ms);
                    ours.p90_ms = ours.p90_ms.max(theirs.p90_ms);
                    ours.p99_ms = ours.p99_ms.max(theirs.p99_ms);
                    ours.max_ms = ours.max_ms.max(theirs.max_ms);
                }
                None => self.procedures.push(theirs.clone()),
            }
        }
    }

    /// One line per procedure, for the run's text output.
    pub fn render(&self) -> String {
        self.procedures
            .iter()
            .map(|p| {
                format!(
                    "{:<12} {:>10} calls {:>6} errors  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n",
                    p.procedure, p.calls, p.errors, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms
                )
            })
            .collect()
    }
}

/// Adds `server`'s connections and calls to its address's line of `servers`.
fn add_server(servers: &mut Vec<ServerReport>, server: ServerReport) {
    match servers.iter_mut().find(|s| s.address == server.address) {
        Some(ours) => {
            ours.connections += server.connections;
            ours.calls += server.calls;
        }
        None => servers.push(server),
    }
}

/// The client's calls by server address; empty when it reached one address only.
fn servers_of(client: &Client) -> Vec<ServerReport> {
    let mut servers: Vec<ServerReport> = Vec::new();
    for c in client.connection_stats() {
        let server = ServerReport {
            address: c.server.ip().to_string(),
            connections: 1,
            calls: c.calls,
        };
        add_server(&mut servers, server);
    }
    if servers.len() < 2 {
        servers.clear();
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_become_the_rows_metadata() {
        let t = |seconds, nanoseconds| scanjob_nfs::Time {
            seconds,
            nanoseconds,
        };
        let attributes = Attributes {
            file_type: FileType::Symlink,
            mode: 0o777,
            nlink: 1,
            uid: 1000,
            gid: 100,
            size: 12,
            used: 4096,
            rdev: (0, 0),
            fsid: 0xfeed,
            fileid: 42,
            atime: t(1, 2),
            mtime: t(u32::MAX, 999_999_999),
            ctime: t(0, 0),
        };
        let meta = entry_meta(&attributes);
        assert_eq!(meta.kind, EntryKind::Symlink);
        assert_eq!(meta.mode, 0o120777);
        assert_eq!((meta.inode, meta.dev, meta.blocks), (42, 0xfeed, 4096));
        assert_eq!(meta.atime, Some(1_000_000_002));
        assert_eq!(meta.mtime, Some(4_294_967_295_999_999_999));
        assert_eq!(meta.btime, None);
    }

    #[test]
    fn an_error_row_keeps_the_kernel_clients_errno() {
        let status = |status| scanjob_nfs::Error::Status {
            procedure: Procedure::ReadDirPlus,
            status,
        };
        assert_eq!(errno_of(&status(Status::NAMETOOLONG)), Errno::NAMETOOLONG);
        assert_eq!(errno_of(&status(Status(21))), Errno::ISDIR);
        assert_eq!(errno_of(&status(Status::SERVERFAULT)), Errno::REMOTEIO);
        let denied = scanjob_nfs::Error::Denied {
            procedure: Procedure::ReadDirPlus,
            status: Status::ACCES,
        };
        assert_eq!(errno_of(&denied), Errno::ACCESS);
    }
}
