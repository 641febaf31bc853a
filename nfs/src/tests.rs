//! The client against a scripted server on a local socket: replies cut short, garbage, oversized
//! records, a connection closed mid-call, JUKEBOX, and a directory that changes between pages.
//! Whatever the server sends, the client returns an error (retryable where the server is at
//! fault) and never panics.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::proto::{self, FileHandle, Procedure};
use crate::rpc;
use crate::xdr::{Decoder, Encoder};
use crate::{ClientBuilder, Error, Status, Walker};

/// What the scripted server does with one call.
enum Answer {
    /// A successful RPC reply whose result is these bytes.
    Result(Vec<u8>),
    /// These bytes as the whole record after the XID.
    Raw(Vec<u8>),
    /// These bytes on the stream, no record mark added.
    Stream(Vec<u8>),
    /// No reply at all, the connection left open.
    Silence,
    Close,
}

/// Serves MNT (root handle `root-handle`) and hands every NFS call (procedure number, arguments, calls
/// so far) to `script`. Returns the port.
async fn scripted(
    script: impl Fn(u32, &[u8], u32) -> Answer + Send + Sync + 'static,
) -> (u16, Arc<AtomicU32>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = Arc::new(script);
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (script, calls) = (Arc::clone(&script), Arc::clone(&counter));
            tokio::spawn(async move {
                loop {
                    let mut mark = [0; 4];
                    if stream.read_exact(&mut mark).await.is_err() {
                        return;
                    }
                    let len = (u32::from_be_bytes(mark) & 0x7fff_ffff) as usize;
                    let mut call = vec![0; len];
                    if stream.read_exact(&mut call).await.is_err() {
                        return;
                    }
                    let mut dec = Decoder::new(&call);
                    let xid = dec.u32("xid").unwrap();
                    dec.u32("msg_type").unwrap();
                    dec.u32("rpcvers").unwrap();
                    let program = dec.u32("program").unwrap();
                    dec.u32("version").unwrap();
                    let procedure = dec.u32("procedure").unwrap();
                    dec.u32("cred").unwrap();
                    dec.opaque(400, "cred").unwrap();
                    dec.u32("verf").unwrap();
                    dec.opaque(400, "verf").unwrap();
                    let args = &call[call.len() - dec.remaining()..];
                    let answer = if program == proto::MOUNT_PROGRAM {
                        let mut e = Encoder::new();
                        e.u32(0).opaque(b"root-handle").u32(0);
                        Answer::Result(e.into_bytes())
                    } else {
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        script(procedure, args, n)
                    };
                    let mut record = Encoder::new();
                    record.u32(xid);
                    let bytes = match answer {
                        Answer::Result(result) => {
                            record.u32(1).u32(0).u32(0).opaque(&[]).u32(0);
                            let mut bytes = record.into_bytes();
                            bytes.extend_from_slice(&result);
                            bytes
                        }
                        Answer::Raw(raw) => {
                            let mut bytes = record.into_bytes();
                            bytes.extend_from_slice(&raw);
                            bytes
                        }
                        Answer::Stream(raw) => {
                            let _ = stream.write_all(&raw).await;
                            continue;
                        }
                        Answer::Silence => continue,
                        Answer::Close => return,
                    };
                    let mut framed = ((bytes.len() as u32) | 0x8000_0000).to_be_bytes().to_vec();
                    framed.extend_from_slice(&bytes);
                    if stream.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, calls)
}

async fn client(port: u16) -> crate::Client {
    ClientBuilder::new(IpAddr::V4(Ipv4Addr::LOCALHOST), "/export")
        .mount_port(port)
        .nfs_port(port)
        .connections(2)
        .timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .expect("mounts")
}

fn attributes(e: &mut Encoder, file_type: u32, fileid: u64) {
    e.u32(file_type).u32(0o755).u32(1).u32(0).u32(0);
    e.u64(10).u64(4096).u32(0).u32(0).u64(1).u64(fileid);
    for _ in 0..3 {
        e.u32(1_700_000_000).u32(5);
    }
}

/// A READDIRPLUS result (status OK) with `names` from cookie `first`, all with attributes and
/// handles.
fn page(verf: [u8; 8], first: u64, names: &[&[u8]], eof: bool) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u32(0).u32(0).fixed(&verf);
    for (i, name) in names.iter().enumerate() {
        let id = first + i as u64;
        e.u32(1).u64(id).opaque(name).u64(id).u32(1);
        attributes(&mut e, 1, id);
        e.u32(1).opaque(&id.to_be_bytes());
    }
    e.u32(0).u32(u32::from(eof));
    e.into_bytes()
}

/// A tiny deterministic generator for garbage.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn truncated_and_garbage_replies_are_errors_not_panics() {
    let mut reply = Encoder::new();
    reply.u32(9).u32(1).u32(0).u32(0).opaque(&[]).u32(0);
    let mut reply = reply.into_bytes();
    reply.extend_from_slice(&page([1; 8], 1, &[b"a", b"\xff\xfe", b"long name"], true));

    let parse = |record: &[u8]| -> Result<(), Error> {
        let mut dec = rpc::reply_body(Procedure::ReadDirPlus, record)?;
        proto::status(&mut dec)?;
        proto::readdirplus_ok(&mut dec).map(|_| ())
    };
    parse(&reply).expect("the whole reply parses");
    for cut in 0..reply.len() {
        assert!(parse(&reply[..cut]).is_err(), "a reply cut at {cut} parsed");
    }

    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for round in 0..20_000 {
        let mut bytes = reply.clone();
        // Flip some bytes of a valid reply, or replace it with noise.
        if round % 2 == 0 {
            for _ in 0..1 + rng.next() % 8 {
                let at = (rng.next() as usize) % bytes.len();
                bytes[at] = rng.next() as u8;
            }
        } else {
            bytes = (0..rng.next() % 300).map(|_| rng.next() as u8).collect();
        }
        let _ = parse(&bytes);
        let mut dec = Decoder::new(&bytes);
        let _ = proto::attributes(&mut dec);
        let mut dec = Decoder::new(&bytes);
        let _ = proto::lookup_ok(&mut dec);
        let mut dec = Decoder::new(&bytes);
        let _ = proto::read_ok(&mut dec, 1 << 20);
        let mut dec = Decoder::new(&bytes);
        let _ = proto::readlink_ok(&mut dec);
        let mut dec = Decoder::new(&bytes);
        let _ = proto::mount_res(&mut dec);
    }
}

#[tokio::test]
async fn a_garbage_result_is_a_retryable_error() {
    let (port, _) = scripted(|_, _, _| Answer::Result(vec![0, 0, 0, 0, 0, 0, 0, 9])).await;
    let client = client(port).await;
    let err = client
        .getattr(&FileHandle(b"x".to_vec()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Malformed(_)), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn an_oversized_record_closes_the_connection() {
    let (port, _) = scripted(|_, _, _| Answer::Stream(vec![0xff; 16])).await;
    let client = client(port).await;
    let err = client
        .getattr(&FileHandle(b"x".to_vec()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Malformed(_)), "{err}");
    // The connection is closed; a later call on it fails at once.
    let err = client
        .getattr(&FileHandle(b"x".to_vec()))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn a_reply_that_is_not_a_reply_is_malformed() {
    let (port, _) = scripted(|_, _, _| Answer::Raw(vec![0, 0, 0, 0])).await;
    let client = client(port).await;
    let err = client.null().await.unwrap_err();
    assert!(matches!(err, Error::Malformed(_)), "{err}");
}

#[tokio::test]
async fn a_closed_connection_fails_the_call_retryably() {
    let (port, _) = scripted(|_, _, _| Answer::Close).await;
    let client = client(port).await;
    let err = client
        .getattr(&FileHandle(b"x".to_vec()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ConnectionLost { .. }), "{err}");
    assert!(err.is_retryable() && !err.is_row());
}

#[tokio::test]
async fn a_call_never_answered_times_out_retryably() {
    let (port, _) = scripted(|_, _, _| Answer::Silence).await;
    let client = ClientBuilder::new(IpAddr::V4(Ipv4Addr::LOCALHOST), "/export")
        .mount_port(port)
        .nfs_port(port)
        .timeout(std::time::Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let err = client
        .getattr(&FileHandle(b"x".to_vec()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.is_retryable());
    let getattr = &client.stats()[1];
    assert_eq!((getattr.procedure, getattr.errors), (Procedure::GetAttr, 1));
}

#[tokio::test]
async fn jukebox_is_retried_and_denied_is_a_row() {
    let (port, _) = scripted(|procedure, _, n| {
        let mut e = Encoder::new();
        match (procedure, n) {
            (1, 0 | 1) => e.u32(Status::JUKEBOX.0).u32(0),
            (1, _) => {
                e.u32(0);
                attributes(&mut e, 2, 77);
                &mut e
            }
            _ => e.u32(Status::ACCES.0).u32(0),
        };
        Answer::Result(e.into_bytes())
    })
    .await;
    let client = client(port).await;
    let attrs = client.getattr(&FileHandle(b"x".to_vec())).await.unwrap();
    assert_eq!(attrs.fileid, 77);
    let getattr = client
        .stats()
        .into_iter()
        .find(|s| s.procedure == Procedure::GetAttr)
        .unwrap();
    assert_eq!((getattr.calls, getattr.retries), (3, 2));

    let err = client
        .readlink(&FileHandle(b"x".to_vec()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Denied { .. }), "{err}");
    assert!(err.is_row() && !err.is_retryable());
}

#[tokio::test]
async fn a_directory_changed_between_pages_is_listed_again_from_the_start() {
    // First listing: page 1, then BAD_COOKIE; second: page 1 under a new verifier, then page 2
    // under yet another (the directory changed again); third: both pages, one verifier.
    let (port, _) = scripted(|_, args, n| {
        let mut dec = Decoder::new(args);
        dec.opaque(64, "fh").unwrap();
        let cookie = dec.u64("cookie").unwrap();
        Answer::Result(match (n, cookie) {
            (0, 0) => page([1; 8], 1, &[b"old"], false),
            (1, _) => {
                let mut e = Encoder::new();
                e.u32(Status::BAD_COOKIE.0).u32(0);
                e.into_bytes()
            }
            (2, 0) => page([2; 8], 1, &[b"a"], false),
            (3, _) => page([3; 8], 2, &[b"stale"], true),
            (_, 0) => page([4; 8], 1, &[b".", b"..", b"a"], false),
            (_, _) => page([4; 8], 2, &[b"\xffb"], true),
        })
    })
    .await;
    let client = client(port).await;
    let entries = client
        .readdirplus(&FileHandle(b"dir".to_vec()))
        .await
        .unwrap();
    let names: Vec<&[u8]> = entries.iter().map(|e| e.name.as_slice()).collect();
    assert_eq!(names, [b"a".as_slice(), b"\xffb".as_slice()]);
}

#[tokio::test]
async fn a_walk_reports_denied_directories_and_goes_on() {
    // The root holds a file, two directories and a name with slashes; listing `locked` is
    // denied.
    let (port, _) = scripted(|_, args, _| {
        let mut dec = Decoder::new(args);
        let fh = dec.opaque(64, "fh").unwrap().to_vec();
        let mut e = Encoder::new();
        match fh.as_slice() {
            b"root-handle" => {
                e.u32(0).u32(0).fixed(&[0; 8]);
                let entries = [
                    (1u64, &b"f"[..], 1),
                    (2, b"open", 2),
                    (3, b"locked", 2),
                    (4, b"not/a/name", 1),
                ];
                for (id, name, t) in entries {
                    e.u32(1).u64(id).opaque(name).u64(id).u32(1);
                    attributes(&mut e, t, id);
                    e.u32(1).opaque(name);
                }
                e.u32(0).u32(1);
            }
            b"open" => {
                e.u32(0).u32(0).fixed(&[0; 8]).u32(0).u32(1);
            }
            _ => {
                e.u32(Status::ACCES.0).u32(0);
            }
        }
        Answer::Result(e.into_bytes())
    })
    .await;
    let client = client(port).await;
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let summary = Walker::new(client.clone())
        .walk(client.root(), |item| match item {
            crate::Item::Entry(e) => entries.push(e.path),
            crate::Item::Error { path, error } => errors.push((path, error)),
        })
        .await
        .unwrap();
    entries.sort();
    assert_eq!(
        entries,
        [b"f".to_vec(), b"locked".to_vec(), b"open".to_vec()]
    );
    errors.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(errors.len(), 2);
    // The invalid name is reported at its directory (the root).
    assert_eq!(errors[0].0, b"");
    assert!(matches!(errors[0].1, Error::InvalidName { .. }));
    assert_eq!(errors[1].0, b"locked");
    assert!(matches!(errors[1].1, Error::Denied { .. }));
    assert_eq!((summary.entries, summary.errors), (3, 2));
}

/// A tree of two levels: the root holds `f`, directories `a` and `b` (each holding one file)
/// and an invalid name; listing `b` is denied.
async fn two_levels() -> crate::Client {
    let (port, _) = scripted(|_, args, _| {
        let mut dec = Decoder::new(args);
        let fh = dec.opaque(64, "fh").unwrap().to_vec();
        let mut e = Encoder::new();
        let entries: &[(u64, &[u8], u32)] = match fh.as_slice() {
            b"root-handle" => &[(1, b"f", 1), (2, b"a", 2), (3, b"b", 2), (4, b"x/y", 1)],
            b"a" => &[(5, b"in-a", 1)],
            _ => {
                e.u32(Status::ACCES.0).u32(0);
                return Answer::Result(e.into_bytes());
            }
        };
        e.u32(0).u32(0).fixed(&[0; 8]);
        for &(id, name, t) in entries {
            e.u32(1).u64(id).opaque(name).u64(id).u32(1);
            attributes(&mut e, t, id);
            e.u32(1).opaque(name);
        }
        e.u32(0).u32(1);
        Answer::Result(e.into_bytes())
    })
    .await;
    client(port).await
}

#[tokio::test]
async fn a_walk_from_chosen_entries_yields_and_enters_only_those() {
    let client = two_levels().await;
    let walk = |top: crate::Top| {
        let client = client.clone();
        async move {
            let start = crate::Start {
                path: b"top".to_vec(),
                handle: client.root().clone(),
                top,
            };
            let mut items = Vec::new();
            let summary = Walker::new(client.clone())
                .walk_from(vec![start], |item| match item {
                    crate::Item::Entry(e) => items.push(e.path),
                    crate::Item::Error { path, .. } => items.push([b"error:", &path[..]].concat()),
                })
                .await
                .unwrap();
            items.sort();
            (items, summary)
        }
    };
    let strings = |items: Vec<Vec<u8>>| -> Vec<String> {
        items
            .into_iter()
            .map(|p| String::from_utf8(p).unwrap())
            .collect()
    };
    // Everything, with the start's path before every path.
    let (items, summary) = walk(crate::Top::All).await;
    assert_eq!(
        strings(items),
        [
            "error:top",
            "error:top/b",
            "top/a",
            "top/a/in-a",
            "top/b",
            "top/f"
        ]
    );
    assert_eq!((summary.entries, summary.directories), (4, 3));
    // `f` left out, `a` entered, `b` yielded but not entered (so its denial is never met), and
    // the invalid name not reported by a quiet start.
    let choose = |name: &[u8], path: &[u8], attributes: Option<&crate::Attributes>| {
        assert_eq!(path, [b"top/", name].concat());
        assert!(attributes.is_some());
        match name {
            b"f" => crate::Take::Leave,
            b"a" => crate::Take::Enter,
            _ => crate::Take::Yield,
        }
    };
    let (items, summary) = walk(crate::Top::Chosen {
        choose: Arc::new(choose),
        quiet: true,
    })
    .await;
    assert_eq!(strings(items), ["top/a", "top/a/in-a", "top/b"]);
    assert_eq!(
        (summary.entries, summary.directories, summary.errors),
        (3, 2, 0)
    );
}

/// Counts what is charged to it, per procedure.
#[derive(Default)]
struct CountingBudget {
    charged: std::sync::Mutex<Vec<Procedure>>,
}

impl crate::Budget for CountingBudget {
    fn acquire(
        &self,
        procedure: Procedure,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        self.charged.lock().unwrap().push(procedure);
        Box::pin(async {})
    }
}

#[tokio::test]
async fn every_call_is_charged_to_the_budget_first() {
    let (port, _) = scripted(|_, _, n| {
        let mut e = Encoder::new();
        if n == 0 {
            e.u32(Status::JUKEBOX.0).u32(0);
        } else {
            e.u32(0);
            attributes(&mut e, 1, 5);
        }
        Answer::Result(e.into_bytes())
    })
    .await;
    let budget = Arc::new(CountingBudget::default());
    let client = ClientBuilder::new(IpAddr::V4(Ipv4Addr::LOCALHOST), "/export")
        .mount_port(port)
        .nfs_port(port)
        .budget(budget.clone())
        .connect()
        .await
        .unwrap();
    client.getattr(&FileHandle(b"x".to_vec())).await.unwrap();
    // The retry after JUKEBOX is a call like any other.
    assert_eq!(
        *budget.charged.lock().unwrap(),
        [Procedure::Mount, Procedure::GetAttr, Procedure::GetAttr]
    );
}

#[tokio::test]
async fn a_reserved_source_port_only_when_asked() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = tokio::spawn(async move {
        let mut ports = Vec::new();
        for _ in 0..2 {
            let (_stream, peer) = listener.accept().await.unwrap();
            ports.push(peer.port());
        }
        ports
    });
    let _plain = crate::transport::Connection::open(addr, false)
        .await
        .unwrap();
    let reserved = crate::transport::Connection::open(addr, true).await;
    let ports = accepted.await.unwrap();
    assert!(
        ports[0] >= 1024,
        "an unprivileged port unless asked: {}",
        ports[0]
    );
    // Binding below 1024 needs CAP_NET_BIND_SERVICE; the tests run as root.
    assert!(reserved.is_ok(), "{:?}", reserved.err());
    assert!(ports[1] < 1024, "a reserved port when asked: {}", ports[1]);
}
