//! A mounted export: the root file handle, a small pool of connections, and the procedures a
//! scan calls on it. Each call is charged to the caller's operations budget first, counted per
//! procedure, and retried with backoff while the server answers JUKEBOX.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::proto::{
    self, Attributes, DirEntry, DirPage, FileHandle, MOUNT_PROGRAM, NFS_PROGRAM, Procedure,
    ReadChunk, Status,
};
use crate::rpc::{self, Credential};
use crate::stats::{ProcedureStats, Stats};
use crate::transport::{Connection, ConnectionStats};
use crate::xdr::{Decoder, Encoder};

/// Charges each RPC to an operations budget before it is sent: the scan's pace on the filer is
/// counted in the server's own unit, calls. `acquire` returns when the call may go.
pub trait Budget: Send + Sync {
    fn acquire(&self, procedure: Procedure) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// How much a READDIRPLUS reply may hold, in bytes. 256 KiB holds ~1,500 entries with their
/// attributes and handles: one call lists a typical directory whole (the 1 M-file bench tree's
/// median directory holds 6 files), and 64 calls in flight hold at most 16 MiB of replies.
pub const DEFAULT_MAXCOUNT: u32 = 256 * 1024;
/// How much of a reply may be names, file ids and cookies (RFC 1813's `dircount`): a quarter of
/// `maxcount`, so the attributes and handles, not the names, fill a reply.
pub const DEFAULT_DIRCOUNT: u32 = DEFAULT_MAXCOUNT / 4;
/// A directory changed under its listing this many times in a row: report it, do not loop.
const MAX_RESTARTS: u32 = 5;
/// JUKEBOX backoff: 100 ms doubling to 3.2 s, then give up (about 6 s in all).
const JUKEBOX_ATTEMPTS: u32 = 7;
const JUKEBOX_FIRST_DELAY: Duration = Duration::from_millis(100);

/// Where and as whom to mount, and how to talk to the server.
#[derive(Clone)]
pub struct ClientBuilder {
    server: IpAddr,
    more_servers: Vec<IpAddr>,
    export: Vec<u8>,
    credential: Credential,
    portmap_port: u16,
    mount_port: Option<u16>,
    nfs_port: Option<u16>,
    connections: usize,
    reserved_port: bool,
    timeout: Duration,
    maxcount: u32,
    dircount: u32,
    budget: Option<Arc<dyn Budget>>,
}

impl ClientBuilder {
    /// `export` is the export's path as the server names it for MOUNT (NFSv3 knows no pseudo
    /// root): e.g. `/srv/tree`.
    pub fn new(server: IpAddr, export: impl Into<Vec<u8>>) -> ClientBuilder {
        ClientBuilder {
            server,
            more_servers: Vec::new(),
            export: export.into(),
            credential: Credential::default(),
            portmap_port: 111,
            mount_port: None,
            nfs_port: None,
            connections: 4,
            reserved_port: false,
            timeout: Duration::from_secs(60),
            maxcount: DEFAULT_MAXCOUNT,
            dircount: DEFAULT_DIRCOUNT,
            budget: None,
        }
    }

    /// The AUTH_SYS identity of every call; nobody (65534/65534) unless set.
    pub fn credential(mut self, credential: Credential) -> ClientBuilder {
        self.credential = credential;
        self
    }

    /// Further addresses of the same server, e.g. the nodes of a cluster that serve one
    /// namespace (file handles are valid at each). MOUNT goes to the first address; the
    /// connections are spread over all of them, at least one each.
    pub fn more_servers(mut self, servers: Vec<IpAddr>) -> ClientBuilder {
        self.more_servers = servers;
        self
    }

    /// The portmapper's port, asked for the MOUNT and NFS ports unless they are given.
    pub fn portmap_port(mut self, port: u16) -> ClientBuilder {
        self.portmap_port = port;
        self
    }

    pub fn mount_port(mut self, port: u16) -> ClientBuilder {
        self.mount_port = Some(port);
        self
    }

    pub fn nfs_port(mut self, port: u16) -> ClientBuilder {
        self.nfs_port = Some(port);
        self
    }

    /// TCP connections to the NFS port. Calls are pipelined on each, so a few suffice; more
    /// spread the calls over more of the server's receive threads.
    pub fn connections(mut self, n: usize) -> ClientBuilder {
        self.connections = n.max(1);
        self
    }

    /// Connect from a port below 1024, for servers that insist (`secure`). Off by default: it
    /// needs CAP_NET_BIND_SERVICE and proves nothing about the client.
    pub fn reserved_port(mut self, yes: bool) -> ClientBuilder {
        self.reserved_port = yes;
        self
    }

    /// How long a call waits for its reply before the scan gives up on the server.
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
        self
    }

    /// READDIRPLUS reply sizes (see [`DEFAULT_MAXCOUNT`] and [`DEFAULT_DIRCOUNT`]).
    pub fn readdir_sizes(mut self, maxcount: u32, dircount: u32) -> ClientBuilder {
        self.maxcount = maxcount;
        self.dircount = dircount;
        self
    }

    pub fn budget(mut self, budget: Arc<dyn Budget>) -> ClientBuilder {
        self.budget = Some(budget);
        self
    }

    /// Asks the portmapper for the ports not given, mounts the export, and opens the
    /// connections to the NFS server.
    pub async fn connect(self) -> Result<Client, Error> {
        let stats = Stats::new();
        let credential = self.credential.encode();
        let xid = AtomicU32::new(initial_xid());
        let setup = Setup {
            stats: &stats,
            credential: &credential,
            xid: &xid,
            timeout: self.timeout,
            budget: self.budget.as_deref(),
        };

        let (mount_port, nfs_port) = self.ports(&setup, self.server, true).await?;
        let mount_addr = SocketAddr::new(self.server, mount_port);
        let mount = Connection::open(mount_addr, self.reserved_port).await?;
        let record = setup
            .call(&mount, Procedure::Mount, |e| {
                proto::mount_args(e, &self.export)
            })
            .await?;
        let mut dec = rpc::reply_body(Procedure::Mount, &record)?;
        let root = proto::mount_res(&mut dec)?.map_err(|status| Error::Mount {
            export: String::from_utf8_lossy(&self.export).into_owned(),
            status,
        })?;
        drop(mount);

        let mut servers = vec![SocketAddr::new(self.server, nfs_port)];
        for &other in &self.more_servers {
            let (_, port) = self.ports(&setup, other, false).await?;
            servers.push(SocketAddr::new(other, port));
        }
        let connections = self.connections.max(servers.len());
        let mut pool = Vec::with_capacity(connections);
        for server in servers.iter().cycle().take(connections) {
            pool.push(Connection::open(*server, self.reserved_port).await?);
        }
        tracing::info!(
            server = %self.server,
            export = %String::from_utf8_lossy(&self.export),
            nfs_port,
            mount_port,
            servers = servers.len(),
            connections,
            uid = self.credential.uid,
            gid = self.credential.gid,
            "NFS export mounted"
        );
        Ok(Client {
            inner: Arc::new(Inner {
                pool,
                root,
                credential,
                xid,
                stats,
                timeout: self.timeout,
                maxcount: self.maxcount,
                dircount: self.dircount,
                budget: self.budget,
            }),
        })
    }
}

impl ClientBuilder {
    /// The MOUNT port of `server` (0 unless `mount`) and its NFS port: those given, the rest
    /// from its portmapper.
    async fn ports(
        &self,
        setup: &Setup<'_>,
        server: IpAddr,
        mount: bool,
    ) -> Result<(u16, u16), Error> {
        let given_mount = if mount { self.mount_port } else { Some(0) };
        let (m, n) = match (given_mount, self.nfs_port) {
            (Some(m), Some(n)) => (m, n),
            (m, n) => {
                let addr = SocketAddr::new(server, self.portmap_port);
                let pmap = Connection::open(addr, false).await?;
                let getport = async |program| {
                    setup
                        .call(&pmap, Procedure::GetPort, |e| {
                            proto::getport_args(e, program, 3)
                        })
                        .await
                        .and_then(|record| {
                            let mut dec = rpc::reply_body(Procedure::GetPort, &record)?;
                            proto::getport_res(&mut dec)
                        })
                };
                let m = match m {
                    Some(m) => m,
                    None => getport(MOUNT_PROGRAM).await?,
                };
                let n = match n {
                    Some(n) => n,
                    None => getport(NFS_PROGRAM).await?,
                };
                (m, n)
            }
        };
        if (mount && m == 0) || n == 0 {
            return Err(Error::Rejected {
                procedure: Procedure::GetPort,
                reason: format!("MOUNT v3 or NFS v3 over TCP is not registered at {server}"),
            });
        }
        Ok((m, n))
    }
}

/// The calls before the pool exists (GETPORT, MNT), charged and counted like every other.
struct Setup<'a> {
    stats: &'a Stats,
    credential: &'a [u8],
    xid: &'a AtomicU32,
    timeout: Duration,
    budget: Option<&'a dyn Budget>,
}

impl Setup<'_> {
    async fn call(
        &self,
        conn: &Connection,
        procedure: Procedure,
        args: impl FnOnce(&mut Encoder),
    ) -> Result<Vec<u8>, Error> {
        send(
            conn,
            self.stats,
            self.credential,
            self.xid,
            self.timeout,
            self.budget,
            procedure,
            args,
        )
        .await
    }
}

#[allow(clippy::too_many_arguments)]
async fn send(
    conn: &Connection,
    stats: &Stats,
    credential: &[u8],
    xid: &AtomicU32,
    timeout: Duration,
    budget: Option<&dyn Budget>,
    procedure: Procedure,
    args: impl FnOnce(&mut Encoder),
) -> Result<Vec<u8>, Error> {
    if let Some(budget) = budget {
        budget.acquire(procedure).await;
    }
    let xid = xid.fetch_add(1, Ordering::Relaxed);
    let record = rpc::call_record(xid, procedure, credential, args);
    let start = Instant::now();
    let reply = conn.call(procedure, xid, record, timeout).await;
    if reply.is_err() {
        stats.record(procedure, start.elapsed(), false);
    }
    reply.inspect(|_| stats.record(procedure, start.elapsed(), true))
}

/// XIDs need only differ from those of calls still in flight; starting from the clock keeps a
/// restarted client's first calls from matching a server's cached replies to the last one.
fn initial_xid() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(16))
        .unwrap_or(1)
}

/// A mounted export. Cheap to clone; clones share connections and counters, and any number of
/// tasks may call at once (that is the point).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Vec<Connection>,
    root: FileHandle,
    credential: Vec<u8>,
    xid: AtomicU32,
    stats: Stats,
    timeout: Duration,
    maxcount: u32,
    dircount: u32,
    budget: Option<Arc<dyn Budget>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("root", &self.inner.root)
            .field("connections", &self.inner.pool.len())
            .finish()
    }
}

impl Client {
    /// The export's root directory, from MOUNT.
    pub fn root(&self) -> &FileHandle {
        &self.inner.root
    }

    /// Calls, errors and latency percentiles per procedure so far: what the scan cost the server.
    pub fn stats(&self) -> Vec<ProcedureStats> {
        self.inner.stats.snapshot()
    }

    /// Calls and the most calls in flight at once, per connection.
    pub fn connection_stats(&self) -> Vec<ConnectionStats> {
        self.inner.pool.iter().map(Connection::stats).collect()
    }

    /// One call on the least busy connection, retried while the server answers JUKEBOX.
    /// `parse` sees the result after its status word; a non-OK status becomes an [`Error`].
    async fn call<T>(
        &self,
        procedure: Procedure,
        args: impl Fn(&mut Encoder),
        parse: impl Fn(&mut Decoder<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let inner = &*self.inner;
        let mut delay = JUKEBOX_FIRST_DELAY;
        for attempt in 1..=JUKEBOX_ATTEMPTS {
            let conn = inner
                .pool
                .iter()
                .min_by_key(|c| c.in_flight())
                .expect("a client has at least one connection");
            let record = send(
                conn,
                &inner.stats,
                &inner.credential,
                &inner.xid,
                inner.timeout,
                inner.budget.as_deref(),
                procedure,
                &args,
            )
            .await?;
            let mut dec = rpc::reply_body(procedure, &record)?;
            match proto::status(&mut dec)? {
                Status::OK => return parse(&mut dec),
                Status::JUKEBOX if attempt < JUKEBOX_ATTEMPTS => {
                    inner.stats.record_retry(procedure);
                    tracing::debug!(%procedure, attempt, ?delay, "server busy (JUKEBOX), backing off");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Status::JUKEBOX => {
                    return Err(Error::Busy {
                        procedure,
                        attempts: attempt,
                    });
                }
                status => return Err(Error::from_status(procedure, status)),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// A round trip that does nothing: is the server there?
    pub async fn null(&self) -> Result<(), Error> {
        // NULL has no status word; send it through the plain path.
        let inner = &*self.inner;
        let conn = &inner.pool[0];
        let record = send(
            conn,
            &inner.stats,
            &inner.credential,
            &inner.xid,
            inner.timeout,
            inner.budget.as_deref(),
            Procedure::Null,
            |_| {},
        )
        .await?;
        rpc::reply_body(Procedure::Null, &record).map(|_| ())
    }

    pub async fn getattr(&self, fh: &FileHandle) -> Result<Attributes, Error> {
        self.call(
            Procedure::GetAttr,
            |e| proto::handle_args(e, fh),
            proto::attributes,
        )
        .await
    }

    /// The handle and attributes of `name` in `dir`: for an entry READDIRPLUS sent without them.
    pub async fn lookup(
        &self,
        dir: &FileHandle,
        name: &[u8],
    ) -> Result<(FileHandle, Option<Attributes>), Error> {
        self.call(
            Procedure::Lookup,
            |e| proto::lookup_args(e, dir, name),
            proto::lookup_ok,
        )
        .await
    }

    /// A symlink's target, as bytes.
    pub async fn readlink(&self, fh: &FileHandle) -> Result<Vec<u8>, Error> {
        self.call(
            Procedure::ReadLink,
            |e| proto::handle_args(e, fh),
            proto::readlink_ok,
        )
        .await
    }

    /// Up to `count` bytes of a file from `offset` (the server may return fewer).
    pub async fn read(&self, fh: &FileHandle, offset: u64, count: u32) -> Result<ReadChunk, Error> {
        self.call(
            Procedure::Read,
            |e| proto::read_args(e, fh, offset, count),
            |d| proto::read_ok(d, count),
        )
        .await
    }

    /// One READDIRPLUS page of `dir` from `cookie` (0 and a zero verifier for the first page).
    async fn readdirplus_page(
        &self,
        dir: &FileHandle,
        cookie: u64,
        verf: &proto::CookieVerf,
    ) -> Result<DirPage, Error> {
        let (maxcount, dircount) = (self.inner.maxcount, self.inner.dircount);
        self.call(
            Procedure::ReadDirPlus,
            |e| proto::readdirplus_args(e, dir, cookie, verf, dircount, maxcount),
            proto::readdirplus_ok,
        )
        .await
    }

    /// Every entry of `dir` but `.` and `..`, page by page. A listing the server invalidates
    /// (BAD_COOKIE, NOT_SYNC, or a new cookie verifier between pages: the directory changed)
    /// starts again from the first page, so the entries are one consistent listing; after
    /// [`MAX_RESTARTS`] the directory is reported as [`Error::Unstable`].
    pub async fn readdirplus(&self, dir: &FileHandle) -> Result<Vec<DirEntry>, Error> {
        'listing: for restart in 0..=MAX_RESTARTS {
            if restart > 0 {
                tracing::debug!(
                    restart,
                    ?dir,
                    "directory changed during its listing; from scratch"
                );
            }
            let mut entries = Vec::new();
            let (mut cookie, mut verf) = (0u64, [0u8; 8]);
            loop {
                let page = match self.readdirplus_page(dir, cookie, &verf).await {
                    Ok(page) => page,
                    Err(Error::Status { status, .. })
                        if cookie != 0
                            && (status == Status::BAD_COOKIE || status == Status::NOT_SYNC) =>
                    {
                        continue 'listing;
                    }
                    Err(e) => return Err(e),
                };
                if cookie != 0 && page.cookieverf != verf {
                    continue 'listing;
                }
                verf = page.cookieverf;
                let progressed = !page.entries.is_empty();
                for entry in page.entries {
                    cookie = entry.cookie;
                    if entry.name != b"." && entry.name != b".." {
                        entries.push(entry);
                    }
                }
                if page.eof {
                    return Ok(entries);
                }
                if !progressed {
                    // Not at the end and nothing returned: asking again would loop forever.
                    return Err(Error::Malformed(
                        "READDIRPLUS returned no entries before the end".into(),
                    ));
                }
            }
        }
        Err(Error::Unstable {
            restarts: MAX_RESTARTS,
        })
    }
}
