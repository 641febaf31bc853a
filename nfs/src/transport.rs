//! One TCP connection carrying many calls at once: calls are written as they come (batched into
//! one write when several are queued), and replies, in whatever order the server sends them, are
//! matched to their calls by XID. A latency-bound scan needs many calls in flight; one call per
//! connection would need a connection (and a server thread) per call in flight.
//!
//! A connection that breaks stays broken: its waiting calls and every later one fail with a
//! retryable error, and the caller fails the shard. Reconnecting in the middle of a listing
//! would hide that the server went away while the listing was taken.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::proto::Procedure;
use crate::rpc::{RecordError, RecordReader, reply_xid};

/// The largest reply accepted: a READ or READDIRPLUS of 1 MiB and its headers, with room.
const MAX_RECORD: usize = 4 << 20;

type ReplySender = oneshot::Sender<Result<Vec<u8>, Error>>;

/// Calls sent and not yet answered, by XID. `closed` once the connection is gone: every waiting
/// call has been failed and no new one may wait.
#[derive(Default)]
struct Pending {
    calls: HashMap<u32, ReplySender>,
    closed: bool,
}

/// What a connection observed, for the caller's report and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionStats {
    /// The server address the connection goes to.
    pub server: SocketAddr,
    pub calls: u64,
    /// The most calls that were waiting for a reply at one time.
    pub max_in_flight: usize,
}

#[derive(Debug)]
pub(crate) struct Connection {
    addr: SocketAddr,
    outgoing: mpsc::UnboundedSender<Vec<u8>>,
    pending: Arc<Mutex<Pending>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    calls: AtomicU64,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("calls", &self.calls.len())
            .field("closed", &self.closed)
            .finish()
    }
}

impl Connection {
    /// Connects to `addr`, from a reserved source port (below 1024) only when `reserved_port`:
    /// some servers insist on one (the `secure` export option), and binding it needs
    /// CAP_NET_BIND_SERVICE, which a scan should not hold unless the admin chose so.
    pub(crate) async fn open(addr: SocketAddr, reserved_port: bool) -> Result<Connection, Error> {
        let io = |source| Error::Io { addr, source };
        let stream = if reserved_port {
            connect_from_reserved_port(addr).await?
        } else {
            TcpStream::connect(addr).await.map_err(io)?
        };
        stream.set_nodelay(true).map_err(io)?;
        let (mut read_half, mut write_half) = stream.into_split();
        let pending = Arc::new(Mutex::new(Pending::default()));

        let (outgoing, mut queued) = mpsc::unbounded_channel::<Vec<u8>>();
        let writer_pending = Arc::clone(&pending);
        let writer = tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some(record) = queued.recv().await {
                // Calls queued while the last write ran go out in one write (one segment).
                batch.clear();
                batch.extend_from_slice(&record);
                while batch.len() < 64 * 1024 {
                    match queued.try_recv() {
                        Ok(more) => batch.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                if let Err(e) = write_half.write_all(&batch).await {
                    tracing::debug!(%addr, error = %e, "NFS connection write failed");
                    close(&writer_pending, || Error::ConnectionLost { addr });
                    return;
                }
            }
        });

        let reader_pending = Arc::clone(&pending);
        let reader = tokio::spawn(async move {
            let records = RecordReader::new(MAX_RECORD);
            loop {
                match records.next(&mut read_half).await {
                    Ok(Some(record)) => {
                        let Some(xid) = reply_xid(&record) else {
                            close(&reader_pending, || {
                                Error::Malformed("a record without an XID".into())
                            });
                            return;
                        };
                        let waiting = reader_pending
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .calls
                            .remove(&xid);
                        match waiting {
                            Some(reply) => {
                                let _ = reply.send(Ok(record));
                            }
                            // The answer to a call that timed out and gave up.
                            None => tracing::debug!(%addr, xid, "reply to no waiting call"),
                        }
                    }
                    Ok(None) => {
                        tracing::debug!(%addr, "NFS connection closed by the server");
                        close(&reader_pending, || Error::ConnectionLost { addr });
                        return;
                    }
                    Err(RecordError::Io(e)) => {
                        tracing::debug!(%addr, error = %e, "NFS connection read failed");
                        close(&reader_pending, || Error::ConnectionLost { addr });
                        return;
                    }
                    Err(RecordError::TooLong(len)) => {
                        close(&reader_pending, || {
                            Error::Malformed(format!("a record of {len} bytes"))
                        });
                        return;
                    }
                }
            }
        });

        Ok(Connection {
            addr,
            outgoing,
            pending,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            reader,
            writer,
        })
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            server: self.addr,
            calls: self.calls.load(Ordering::Relaxed),
            max_in_flight: self.max_in_flight.load(Ordering::Relaxed),
        }
    }

    /// Sends one call record and waits for the record that answers it.
    pub(crate) async fn call(
        &self,
        procedure: Procedure,
        xid: u32,
        record: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        let (reply, answer) = oneshot::channel();
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.closed {
                return Err(Error::ConnectionLost { addr: self.addr });
            }
            pending.calls.insert(xid, reply);
        }
        // Removes the call from `pending` however this future ends (answered, timed out, or
        // dropped by its caller), so a late reply finds nobody waiting.
        let _waiting = Waiting {
            connection: self,
            xid,
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
        if self.outgoing.send(record).is_err() {
            return Err(Error::ConnectionLost { addr: self.addr });
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(Error::ConnectionLost { addr: self.addr }),
            Err(_) => Err(Error::Timeout {
                procedure,
                seconds: timeout.as_secs(),
            }),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

struct Waiting<'a> {
    connection: &'a Connection,
    xid: u32,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.connection.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.connection
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .calls
            .remove(&self.xid);
    }
}

/// Fails every waiting call with the error `why` makes, and every later one with
/// ConnectionLost.
fn close(pending: &Mutex<Pending>, why: impl Fn() -> Error) {
    let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
    pending.closed = true;
    for (_, reply) in pending.calls.drain() {
        let _ = reply.send(Err(why()));
    }
}

/// Binds the highest free port below 1024 (as the kernel client does) and connects from it.
async fn connect_from_reserved_port(addr: SocketAddr) -> Result<TcpStream, Error> {
    let io = |source| Error::Io { addr, source };
    for port in (512..1024u16).rev() {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(io)?;
        let local = SocketAddr::new(
            match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
            },
            port,
        );
        match socket.bind(local) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(io(e)),
        }
        match socket.connect(addr).await {
            Ok(stream) => return Ok(stream),
            // The same local port may still be tied to this server from an earlier connection.
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => continue,
            Err(e) => return Err(io(e)),
        }
    }
    Err(io(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free reserved port (512..1024)",
    )))
}
