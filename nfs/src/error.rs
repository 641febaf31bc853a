//! The crate's one error type, and what a caller does with each error: a row in the ToC (the
//! server answered about this object), or a retryable failure of the whole shard (the server
//! could not be asked, so any listing would have a hole).

use crate::proto::{MountStatus, Procedure, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ACCES or PERM: the credential may not read this object. An error row.
    #[error("{procedure}: permission denied ({status})")]
    Denied {
        procedure: Procedure,
        status: Status,
    },

    /// NOENT: the object went away between the listing and the call. An error row.
    #[error("{procedure}: no such file or directory")]
    NotFound { procedure: Procedure },

    /// STALE or BADHANDLE: the handle no longer names an object (deleted, or the export moved).
    /// An error row.
    #[error("{procedure}: stale file handle ({status})")]
    Stale {
        procedure: Procedure,
        status: Status,
    },

    /// Any other status about the object (IO, NAMETOOLONG, NOTDIR, SERVERFAULT, …). An error row.
    #[error("{procedure}: {status}")]
    Status {
        procedure: Procedure,
        status: Status,
    },

    /// A directory changed under its listing (BAD_COOKIE, NOT_SYNC or a new cookie verifier)
    /// every time it was listed from scratch. An error row: its entries are unknown.
    #[error("directory kept changing during {restarts} listings from scratch")]
    Unstable { restarts: u32 },

    /// The server listed a name no file system allows (empty, or with `/` or NUL): the entry
    /// cannot be given a path. An error row, in place of the entry.
    #[error("the server listed an invalid name {name:?}")]
    InvalidName { name: String },

    /// JUKEBOX after every backoff: the server is busy (e.g. recalling data from tape). Retry
    /// the shard later.
    #[error("{procedure}: server busy (JUKEBOX) after {attempts} attempts")]
    Busy { procedure: Procedure, attempts: u32 },

    /// MOUNT refused the export path.
    #[error("mount of {export:?} refused: {status}")]
    Mount { export: String, status: MountStatus },

    /// The server refused the RPC itself: an authentication error, or a program or version it
    /// does not serve. Configuration, not data: a retry sends the same call.
    #[error("{procedure}: RPC rejected: {reason}")]
    Rejected {
        procedure: Procedure,
        reason: String,
    },

    /// Could not connect, or the connection broke. Retryable.
    #[error("connection to {addr}: {source}")]
    Io {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// The connection closed with this call unanswered. Retryable.
    #[error("connection to {addr} lost with the call in flight")]
    ConnectionLost { addr: std::net::SocketAddr },

    /// No reply within the call timeout. Retryable.
    #[error("{procedure}: no reply within {seconds} s")]
    Timeout { procedure: Procedure, seconds: u64 },

    /// A reply that does not parse. The connection is closed (its framing cannot be trusted),
    /// and the failure is retryable: a listing with a hole must not be published.
    #[error("malformed reply: {0}")]
    Malformed(String),
}

impl Error {
    /// The server could not be asked (connection, timeout, busy, garbage): the caller fails the
    /// shard and retries it later rather than publishing a listing with a hole.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Busy { .. }
                | Error::Io { .. }
                | Error::ConnectionLost { .. }
                | Error::Timeout { .. }
                | Error::Malformed(_)
        )
    }

    /// The server answered about one object: the caller writes an error row for it and goes on.
    pub fn is_row(&self) -> bool {
        matches!(
            self,
            Error::Denied { .. }
                | Error::NotFound { .. }
                | Error::Stale { .. }
                | Error::Status { .. }
                | Error::Unstable { .. }
                | Error::InvalidName { .. }
        )
    }

    /// The error for a non-OK NFS status of `procedure`.
    pub(crate) fn from_status(procedure: Procedure, status: Status) -> Error {
        match status {
            Status::ACCES | Status::PERM => Error::Denied { procedure, status },
            Status::NOENT => Error::NotFound { procedure },
            Status::STALE | Status::BADHANDLE => Error::Stale { procedure, status },
            status => Error::Status { procedure, status },
        }
    }
}
