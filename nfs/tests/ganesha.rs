//! The client against a real NFSv3 server: nfs-ganesha exporting a generated tree, started by
//! `tests/nfs/ganesha.sh` in a network namespace of its own (the test kit's [`Ganesha`]). Each test compares what NFS returns
//! with a local walk of the same tree (the server's own file system), byte for byte and field
//! by field.
//!
//! Needs root (namespaces, and ganesha's VFS backend opens files by handle), nfs-ganesha and
//! rpcbind (`bash tests/cluster/install.sh`), and the tree generator ([`mktree`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use rustix::fs::{AtFlags, Dir, FileType as LocalType, Mode, OFlags};
use scanjob_nfs::{Attributes, Client, ClientBuilder, Credential, Error, FileType, Item, Walker};
use scanjob_testkit::Ganesha;

/// The workspace's root (this crate's parent).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .to_path_buf()
}

/// The tree generator, the test kit's.
fn mktree() -> PathBuf {
    workspace().join("testkit/mktree.py")
}

/// One ganesha at a time: each holds a namespace and both cores while it serves.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The nasty tree (2,000 files plus every hostile case, among them a 200,000-entry directory),
/// generated once into cargo's directory for tests' data and reused by later runs (only read).
fn nasty_tree() -> &'static Path {
    static TREE: OnceLock<PathBuf> = OnceLock::new();
    TREE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nfs-nasty-tree-131");
        let tree = dir.join("tree");
        if !tree.exists() {
            // Generated beside and renamed into place, so a run cut short leaves no half tree.
            let partial = dir.join("partial");
            let _ = std::fs::remove_dir_all(&partial);
            std::fs::create_dir_all(&partial).expect("a directory for the tree");
            let status = Command::new("python3")
                .arg(mktree())
                .arg(partial.join("tree"))
                .args(["--files", "2000", "--seed", "131", "--nasty", "--jobs", "2"])
                .stdout(Stdio::null())
                .status()
                .expect("python3 runs");
            assert!(status.success(), "{} failed: {status}", mktree().display());
            std::fs::rename(partial.join("tree"), &tree).expect("the tree moves into place");
        }
        // Reading a directory moves its atime when the atime is older than its mtime or a day
        // (relatime), and both the server and the local walk read every directory (ganesha also
        // reads every symlink it lists). One walk now moves them all; later reads within the day
        // leave them, so the walks agree.
        local_walk(&tree);
        tree
    })
}

async fn mount(server: &Ganesha, dir: &Path, uid: u32, connections: usize) -> Client {
    let ip: IpAddr = server.ip().parse().expect("an address");
    ClientBuilder::new(ip, dir.as_os_str().as_encoded_bytes())
        .credential(Credential::new(uid, uid, Vec::new()))
        .connections(connections)
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .expect("the export mounts")
}

/// Everything a walk found: entries by path, errors by path.
#[derive(Default)]
struct Listing {
    entries: BTreeMap<Vec<u8>, Attributes>,
    errors: BTreeMap<Vec<u8>, Error>,
}

async fn walk(client: &Client, in_flight: usize) -> Result<Listing, Error> {
    let mut listing = Listing::default();
    Walker::new(client.clone())
        .in_flight(in_flight)
        .walk(client.root(), |item| match item {
            Item::Entry(e) => {
                let old = listing.entries.insert(e.path.clone(), e.attributes);
                assert!(old.is_none(), "{} listed twice", show(&e.path));
            }
            Item::Error { path, error } => {
                listing.errors.insert(path, error);
            }
        })
        .await?;
    Ok(listing)
}

/// What lstat says of one entry of the local tree.
#[derive(Debug)]
struct Local {
    file_type: FileType,
    mode: u32,
    nlink: u64,
    uid: u32,
    gid: u32,
    size: i64,
    ino: u64,
    atime: (i64, i64),
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// Every entry under `root` (not itself), by relative path: fd-relative, so paths longer than
/// PATH_MAX are read like any other.
fn local_walk(root: &Path) -> BTreeMap<Vec<u8>, Local> {
    let mut found = BTreeMap::new();
    let open = |at: &OwnedFd, name: &[u8]| {
        rustix::fs::openat(
            at,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let cwd = rustix::fs::openat(
        rustix::fs::CWD,
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("the tree opens");
    let mut queue = vec![(Vec::new(), cwd)];
    while let Some((dir_path, fd)) = queue.pop() {
        let mut names = Vec::new();
        for entry in Dir::read_from(&fd).expect("readable as root") {
            let name = entry
                .expect("a directory entry")
                .file_name()
                .to_bytes()
                .to_vec();
            if name != b"." && name != b".." {
                names.push(name);
            }
        }
        for name in names {
            let st =
                rustix::fs::statat(&fd, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW).expect("lstat");
            let file_type = match LocalType::from_raw_mode(st.st_mode) {
                LocalType::RegularFile => FileType::Regular,
                LocalType::Directory => FileType::Directory,
                LocalType::Symlink => FileType::Symlink,
                LocalType::Fifo => FileType::Fifo,
                LocalType::Socket => FileType::Socket,
                LocalType::CharacterDevice => FileType::CharDevice,
                LocalType::BlockDevice => FileType::BlockDevice,
                LocalType::Unknown => panic!("unknown type"),
            };
            let mut path = dir_path.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            if file_type == FileType::Symlink {
                // As the server does when it first meets a symlink (see `nasty_tree`).
                rustix::fs::readlinkat(&fd, name.as_slice(), Vec::new()).expect("readlink");
            }
            if file_type == FileType::Directory {
                queue.push((path.clone(), open(&fd, &name).expect("opens as root")));
            }
            found.insert(
                path,
                Local {
                    file_type,
                    mode: st.st_mode & 0o7777,
                    nlink: st.st_nlink,
                    uid: st.st_uid,
                    gid: st.st_gid,
                    size: st.st_size,
                    ino: st.st_ino,
                    atime: (st.st_atime, st.st_atime_nsec as i64),
                    mtime: (st.st_mtime, st.st_mtime_nsec as i64),
                    ctime: (st.st_ctime, st.st_ctime_nsec as i64),
                },
            );
        }
    }
    found
}

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).escape_debug().to_string()
}

/// Differences between what NFS reported for `path` and what lstat says, one line each.
fn differences(path: &[u8], nfs: &Attributes, local: &Local) -> Vec<String> {
    let time = |t: scanjob_nfs::Time| (t.seconds, t.nanoseconds as i64);
    // nfstime3 seconds are unsigned 32-bit: the server sends the low 32 bits of the time, so a
    // time before 1970 arrives as 2^32 + t (as on a kernel NFS mount).
    let wire = |(s, ns): (i64, i64)| (s as u32, ns);
    let mut diffs = Vec::new();
    let mut check = |field: &str, nfs: String, local: String| {
        if nfs != local {
            diffs.push(format!("{}: {field}: NFS {nfs}, local {local}", show(path)));
        }
    };
    check(
        "type",
        format!("{:?}", nfs.file_type),
        format!("{:?}", local.file_type),
    );
    check(
        "mode",
        format!("{:o}", nfs.mode),
        format!("{:o}", local.mode),
    );
    check("nlink", nfs.nlink.to_string(), local.nlink.to_string());
    check("uid", nfs.uid.to_string(), local.uid.to_string());
    check("gid", nfs.gid.to_string(), local.gid.to_string());
    check("size", nfs.size.to_string(), local.size.to_string());
    check("fileid", nfs.fileid.to_string(), local.ino.to_string());
    check(
        "mtime",
        format!("{:?}", time(nfs.mtime)),
        format!("{:?}", wire(local.mtime)),
    );
    check(
        "ctime",
        format!("{:?}", time(nfs.ctime)),
        format!("{:?}", wire(local.ctime)),
    );
    check(
        "atime",
        format!("{:?}", time(nfs.atime)),
        format!("{:?}", wire(local.atime)),
    );
    diffs
}

/// Asserts that `nfs` holds exactly the paths of `local` (or of `expected` paths of it), each
/// with the same attributes.
fn assert_same(nfs: &BTreeMap<Vec<u8>, Attributes>, local: &BTreeMap<Vec<u8>, Local>) {
    let only_nfs: Vec<String> = nfs
        .keys()
        .filter(|p| !local.contains_key(*p))
        .map(|p| show(p))
        .collect();
    let only_local: Vec<String> = local
        .keys()
        .filter(|p| !nfs.contains_key(*p))
        .map(|p| show(p))
        .collect();
    assert!(
        only_nfs.is_empty() && only_local.is_empty(),
        "{} paths only over NFS (first: {:?}), {} only locally (first: {:?})",
        only_nfs.len(),
        only_nfs.iter().take(5).collect::<Vec<_>>(),
        only_local.len(),
        only_local.iter().take(5).collect::<Vec<_>>(),
    );
    let diffs: Vec<String> = nfs
        .iter()
        .flat_map(|(path, attrs)| differences(path, attrs, &local[path]))
        .collect();
    assert!(
        diffs.is_empty(),
        "{} differences, first: {:#?}",
        diffs.len(),
        &diffs[..diffs.len().min(10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nasty_tree_over_nfs_equals_the_local_walk() {
    let _serial = SERIAL.lock().await;
    let tree = nasty_tree();
    let server = Ganesha::start(tree, "No_Root_Squash", 101);
    let client = mount(&server, tree, 0, 4).await;
    let listing = walk(&client, 32).await.expect("the listing completes");
    let local = local_walk(tree);

    assert!(listing.errors.is_empty(), "errors: {:?}", listing.errors);
    assert_same(&listing.entries, &local);
    let non_utf8 = listing
        .entries
        .keys()
        .filter(|p| std::str::from_utf8(p).is_err())
        .count();
    assert!(non_utf8 > 0, "the tree has non-UTF-8 names");
    let longest = listing.entries.keys().map(Vec::len).max().unwrap_or(0);
    assert!(
        longest > 4096,
        "the deepest path ({longest} bytes) exceeds PATH_MAX"
    );

    // One call per directory, plus one per further page: the 200,000-entry directory's pages.
    let stats = client.stats();
    let readdirplus = stats
        .iter()
        .find(|s| s.procedure == scanjob_nfs::Procedure::ReadDirPlus)
        .expect("READDIRPLUS was called");
    let directories = local
        .values()
        .filter(|l| l.file_type == FileType::Directory)
        .count() as u64;
    assert!(readdirplus.calls > directories);
    assert!(
        readdirplus.calls < directories + 400,
        "{} READDIRPLUS calls for {directories} directories",
        readdirplus.calls
    );
    assert_eq!(readdirplus.errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_pipelined_on_one_connection() {
    let _serial = SERIAL.lock().await;
    let tree = nasty_tree();
    let server = Ganesha::start(tree, "No_Root_Squash", 102);
    let client = mount(&server, tree, 0, 1).await;
    let listing = walk(&client, 16).await.expect("the listing completes");
    let local = local_walk(tree);
    assert_eq!(listing.entries.len(), local.len());

    let connections = client.connection_stats();
    assert_eq!(connections.len(), 1);
    assert!(
        connections[0].max_in_flight > 1,
        "at most {} call in flight on the one connection",
        connections[0].max_in_flight
    );
    let calls: u64 = client
        .stats()
        .iter()
        .filter(|s| {
            s.procedure != scanjob_nfs::Procedure::GetPort
                && s.procedure != scanjob_nfs::Procedure::Mount
        })
        .map(|s| s.calls)
        .sum();
    assert_eq!(connections[0].calls, calls);
}

/// What nobody (65534/65534, no other groups) may do with an object of `mode` owned by
/// `uid`:`gid`: the bits of owner, group or other that apply.
fn nobody_may(local: &Local, bit: u32) -> bool {
    const NOBODY: u32 = 65534;
    let bits = if local.uid == NOBODY {
        local.mode >> 6
    } else if local.gid == NOBODY {
        local.mode >> 3
    } else {
        local.mode
    };
    bits & bit != 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_squash_turns_what_nobody_cannot_read_into_errors() {
    let _serial = SERIAL.lock().await;
    let tree = nasty_tree();
    let server = Ganesha::start(tree, "Root_Squash", 103);
    // uid 0 asks; the export maps it to nobody.
    let client = mount(&server, tree, 0, 4).await;
    let listing = walk(&client, 32).await.expect("the listing completes");
    let local = local_walk(tree);

    // From the local tree: a directory nobody may not read (and search) is an error; what lies
    // under it is not listed; everything else is.
    let mut denied = BTreeSet::new();
    let mut visible = BTreeSet::new();
    let parent = |p: &[u8]| p.iter().rposition(|&b| b == b'/').map(|i| p[..i].to_vec());
    for (path, l) in &local {
        let mut hidden = false;
        let mut ancestor = parent(path);
        while let Some(dir) = ancestor {
            if denied.contains(&dir) || !nobody_may(&local[&dir], 0o4) {
                hidden = true;
                break;
            }
            ancestor = parent(&dir);
        }
        if hidden {
            continue;
        }
        if l.file_type == FileType::Directory && !nobody_may(l, 0o4) {
            denied.insert(path.clone());
        }
        visible.insert(path.clone());
    }
    assert!(
        !denied.is_empty(),
        "the tree has directories nobody may not read"
    );
    let errors: BTreeSet<Vec<u8>> = listing.errors.keys().cloned().collect();
    assert_eq!(
        errors.iter().map(|p| show(p)).collect::<Vec<_>>(),
        denied.iter().map(|p| show(p)).collect::<Vec<_>>()
    );
    for (path, error) in &listing.errors {
        assert!(
            matches!(error, Error::Denied { .. }),
            "{}: {error}",
            show(path)
        );
        assert!(error.is_row() && !error.is_retryable());
    }
    let visible: BTreeMap<Vec<u8>, Local> = local
        .into_iter()
        .filter(|(p, _)| visible.contains(p))
        .collect();
    assert_same(&listing.entries, &visible);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_listing_is_a_retryable_failure() {
    let _serial = SERIAL.lock().await;
    let tree = nasty_tree();
    let server = Ganesha::start(tree, "No_Root_Squash", 104);
    let client = mount(&server, tree, 0, 2).await;
    let mut seen = 0u64;
    let result = Walker::new(client.clone())
        .in_flight(4)
        .walk(client.root(), |_| {
            seen += 1;
            if seen == 1 {
                server.kill();
            }
        })
        .await;
    match result {
        Ok(summary) => panic!("a listing of a killed server succeeded: {summary:?}"),
        Err(e) => assert!(e.is_retryable(), "not retryable: {e}"),
    }
    let _ = std::io::stderr().flush();
}

/// Reads a whole file through READ, `chunk` bytes per call.
async fn read_all(client: &Client, fh: &scanjob_nfs::FileHandle, chunk: u32) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let got = client
            .read(fh, data.len() as u64, chunk)
            .await
            .expect("READ");
        data.extend_from_slice(&got.data);
        if got.eof {
            return data;
        }
        assert!(!got.data.is_empty(), "READ returned nothing before the end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_readlink_lookup_and_getattr_agree_with_the_local_files() {
    use std::os::unix::ffi::OsStrExt;

    let _serial = SERIAL.lock().await;
    // Files whose bytes differ everywhere, of sizes around READ's chunk, and symlinks whose
    // targets are not UTF-8.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    let sizes = [0usize, 1, 65_535, 65_536, 65_537, 300_001];
    for size in sizes {
        std::fs::write(root.join(format!("f{size}")), bytes(size)).unwrap();
    }
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/\u{e9}t\u{e9}"), bytes(10)).unwrap();
    let targets: [&[u8]; 3] = [b"f1", b"../no/such/\xff\xfe", b"sub"];
    for (i, target) in targets.iter().enumerate() {
        std::os::unix::fs::symlink(
            std::ffi::OsStr::from_bytes(target),
            root.join(format!("link{i}")),
        )
        .unwrap();
    }

    // Settles the atimes of directories and symlinks, which the server's listing reads.
    local_walk(root);

    let server = Ganesha::start(root, "No_Root_Squash", 105);
    let client = mount(&server, root, 0, 2).await;
    let mut found = Vec::new();
    Walker::new(client.clone())
        .walk(client.root(), |item| match item {
            Item::Entry(e) => found.push(e),
            Item::Error { path, error } => panic!("{}: {error}", show(&path)),
        })
        .await
        .expect("the listing completes");
    assert_eq!(found.len(), sizes.len() + 1 + 1 + targets.len());

    for entry in &found {
        let handle = entry.handle.as_ref().expect("ganesha sends every handle");
        // GETATTR and LOOKUP say what READDIRPLUS said.
        assert_eq!(client.getattr(handle).await.unwrap(), entry.attributes);
        let (parent, name) = match entry.path.iter().rposition(|&b| b == b'/') {
            Some(i) => {
                let parent = &entry.path[..i];
                let dir = found.iter().find(|e| e.path == parent).unwrap();
                (dir.handle.clone().unwrap(), &entry.path[i + 1..])
            }
            None => (client.root().clone(), &entry.path[..]),
        };
        let (looked_up, attrs) = client.lookup(&parent, name).await.unwrap();
        assert_eq!(&looked_up, handle, "{}", show(&entry.path));
        assert_eq!(attrs.as_ref(), Some(&entry.attributes));

        let local = root.join(std::ffi::OsStr::from_bytes(&entry.path));
        match entry.attributes.file_type {
            FileType::Symlink => {
                let target = std::fs::read_link(&local).unwrap();
                assert_eq!(
                    client.readlink(handle).await.unwrap(),
                    target.as_os_str().as_bytes()
                );
            }
            FileType::Regular => {
                let want = std::fs::read(&local).unwrap();
                assert_eq!(
                    read_all(&client, handle, 65_536).await,
                    want,
                    "{}",
                    show(&entry.path)
                );
                assert_eq!(
                    read_all(&client, handle, 4_000).await,
                    want,
                    "{}",
                    show(&entry.path)
                );
            }
            _ => {}
        }
    }
    let lookup = client
        .stats()
        .into_iter()
        .find(|s| s.procedure == scanjob_nfs::Procedure::Lookup)
        .unwrap();
    assert_eq!(lookup.calls, found.len() as u64);
    let missing = client
        .lookup(client.root(), b"no such name")
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing}");
}
