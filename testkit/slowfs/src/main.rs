//! slowfs: a read-only passthrough FUSE file system that adds a fixed latency
//! to every metadata request (LOOKUP, GETATTR, READLINK, OPENDIR, READDIR),
//! like an NFS server with many RPCs outstanding at once.
//!
//!   slowfs BACKING MOUNTPOINT [--latency-us N] [--attr-ttl-ms N]
//!          [--entry-ttl-ms N] [--fuse-threads N] [--stats FILE] [--allow-other]
//!   slowfs --synthetic files=N[,dirs=D][,seed=S][,churn=C] MOUNTPOINT
//!          [--summary FILE] [same options]
//!
//! --synthetic serves a generated tree from memory instead of BACKING (see
//! synthetic.rs); requests, latency and counters work the same way.
//!
//! How the latency is added without stalling the FUSE request loop: the loop
//! thread answers each request from the backing directory at once (lstat,
//! read_dir, ...) but does not send the reply; it queues the reply with a
//! deadline (arrival + latency). One timer thread sends replies as they fall
//! due. Every request has the same latency, so the queue is FIFO in deadline
//! order, and any number of requests wait out their latency at the same time
//! (64 scanner threads see about 64x the throughput of one, until the CPU
//! runs out). With --latency-us 0 replies are sent inline.
//!
//! Inode numbers and attributes pass through unchanged: the FUSE node id of
//! an entry is its backing st_ino (the root is node 1, but GETATTR on it
//! reports the backing root's st_ino). The backing tree must sit on one file
//! system (st_ino is the node id, so inode numbers must be unique).
//!
//! Attribute and entry TTLs default to 0, so the kernel caches nothing and
//! every stat() of a name costs a LOOKUP plus a GETATTR, on every run.
//! Data reads, open/release, releasedir and statfs are passed through with
//! no added latency.
use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod synthetic;

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, Request, Session, SessionACL,
};

// ---------------------------------------------------------------- counters
const OPS: [&str; 10] = [
    "lookup",
    "getattr",
    "readlink",
    "opendir",
    "readdir",
    "releasedir",
    "open",
    "read",
    "release",
    "statfs",
];
#[derive(Clone, Copy)]
enum Op {
    Lookup,
    Getattr,
    Readlink,
    Opendir,
    Readdir,
    Releasedir,
    Open,
    Read,
    Release,
    Statfs,
}

#[derive(Default)]
struct Stats([AtomicU64; OPS.len()]);

impl Stats {
    fn count(&self, op: Op) {
        self.0[op as usize].fetch_add(1, Relaxed);
    }
    fn json(&self, latency_us: u64) -> String {
        let v: Vec<u64> = self.0.iter().map(|c| c.load(Relaxed)).collect();
        let delayed: u64 = v[..5].iter().sum();
        let mut s = format!("{{\"latency_us\":{latency_us}");
        for (n, c) in OPS.iter().zip(&v) {
            s += &format!(",\"{n}\":{c}");
        }
        s + &format!(
            ",\"delayed\":{delayed},\"total\":{}}}",
            v.iter().sum::<u64>()
        )
    }
}

// ------------------------------------------------------------- delay queue
type Job = Box<dyn FnOnce() + Send>;

/// Replies waiting for their deadline. All have the same latency, so pushing
/// at the back keeps the queue sorted by deadline.
struct Delay {
    latency: Duration,
    q: Mutex<VecDeque<(Instant, Job)>>,
    cv: Condvar,
}

impl Delay {
    /// Send `job` (a reply) at `arrival + latency`; inline when latency is 0.
    fn reply_at(&self, arrival: Instant, job: Job) {
        if self.latency.is_zero() {
            return job();
        }
        let mut q = self.q.lock().unwrap();
        let was_empty = q.is_empty();
        q.push_back((arrival + self.latency, job));
        drop(q);
        // A non-empty queue means the timer thread already waits for an
        // earlier deadline; it re-checks the queue after every wake-up.
        if was_empty {
            self.cv.notify_one();
        }
    }

    /// The timer thread: sleep until the head's deadline, send every reply
    /// that is due, repeat.
    fn run(&self) {
        // default timer slack is 50 us; ask for exact wake-ups
        let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
        let mut due: Vec<Job> = Vec::new();
        loop {
            {
                let mut q = self.q.lock().unwrap();
                loop {
                    let now = Instant::now();
                    match q.front() {
                        None => q = self.cv.wait(q).unwrap(),
                        Some((t, _)) if *t > now => {
                            let d = *t - now;
                            q = self.cv.wait_timeout(q, d).unwrap().0;
                        }
                        Some(_) => break,
                    }
                }
                let now = Instant::now();
                while q.front().is_some_and(|(t, _)| *t <= now) {
                    due.push(q.pop_front().unwrap().1);
                }
            }
            for job in due.drain(..) {
                job();
            }
        }
    }
}

/// What a file system shares with main: the reply queue, the counters, and
/// what INIT negotiated.
#[derive(Clone)]
struct Shared {
    delay: Arc<Delay>,
    stats: Arc<Stats>,
    parallel_dirops: Arc<AtomicBool>,
    kernel_abi: Arc<Mutex<String>>,
}

// ------------------------------------------------------------- file system
struct Dirent {
    ino: u64,
    kind: FileType,
    name: OsString,
}

struct SlowFs {
    root: PathBuf,
    attr_ttl: Duration,
    entry_ttl: Duration,
    delay: Arc<Delay>,
    stats: Arc<Stats>,
    parallel_dirops: Arc<AtomicBool>,
    kernel_abi: Arc<Mutex<String>>,
    /// node id (= backing st_ino) -> a backing path of that inode
    inodes: Mutex<HashMap<u64, PathBuf>>,
    /// open directories: a snapshot of the entries taken at OPENDIR
    dirs: Mutex<HashMap<u64, Arc<Vec<Dirent>>>>,
    files: Mutex<HashMap<u64, Arc<File>>>,
    next_fh: AtomicU64,
}

fn errno(e: &io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

fn ts(sec: i64, nsec: i64) -> SystemTime {
    let ns = Duration::from_nanos(nsec as u64);
    if sec >= 0 {
        UNIX_EPOCH + Duration::from_secs(sec as u64) + ns
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + ns
    }
}

fn kind(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn attr(md: &fs::Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(md.ino()),
        size: md.size(),
        blocks: md.blocks(),
        atime: ts(md.atime(), md.atime_nsec()),
        mtime: ts(md.mtime(), md.mtime_nsec()),
        ctime: ts(md.ctime(), md.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind(md.mode()),
        perm: (md.mode() & 0o7777) as u16,
        nlink: md.nlink() as u32,
        uid: md.uid(),
        gid: md.gid(),
        rdev: md.rdev() as u32,
        blksize: md.blksize() as u32,
        flags: 0,
    }
}

impl SlowFs {
    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        if ino.0 == 1 {
            return Ok(self.root.clone());
        }
        self.inodes
            .lock()
            .unwrap()
            .get(&ino.0)
            .cloned()
            .ok_or(Errno::ESTALE)
    }

    fn lstat(&self, ino: INodeNo) -> Result<(PathBuf, fs::Metadata), Errno> {
        let p = self.path(ino)?;
        let md = fs::symlink_metadata(&p).map_err(|e| errno(&e))?;
        Ok((p, md))
    }

    fn later(&self, arrival: Instant, job: impl FnOnce() + Send + 'static) {
        self.delay.reply_at(arrival, Box::new(job));
    }

    fn fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Relaxed)
    }

    fn read_dir(&self, ino: INodeNo) -> Result<Vec<Dirent>, Errno> {
        let (p, md) = self.lstat(ino)?;
        let parent = fs::symlink_metadata(p.join("..")).map_or(md.ino(), |m| m.ino());
        let mut v = vec![
            Dirent {
                ino: md.ino(),
                kind: FileType::Directory,
                name: ".".into(),
            },
            Dirent {
                ino: parent,
                kind: FileType::Directory,
                name: "..".into(),
            },
        ];
        for e in fs::read_dir(&p).map_err(|e| errno(&e))? {
            let e = e.map_err(|e| errno(&e))?;
            let kind = match e.file_type() {
                Ok(t) => FileType::from_std(t).unwrap_or(FileType::RegularFile),
                Err(_) => FileType::RegularFile,
            };
            v.push(Dirent {
                ino: e.ino(),
                kind,
                name: e.file_name(),
            });
        }
        Ok(v)
    }
}

impl fuser::Filesystem for SlowFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Without this the kernel serialises LOOKUP/READDIR within one
        // directory (fi->mutex), which would cap a parallel scanner.
        let ok = config
            .add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS)
            .is_ok();
        self.parallel_dirops.store(ok, Relaxed);
        *self.kernel_abi.lock().unwrap() = config.kernel_abi().to_string();
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let t = Instant::now();
        self.stats.count(Op::Lookup);
        let res = self.path(parent).and_then(|p| {
            let p = p.join(name);
            let md = fs::symlink_metadata(&p).map_err(|e| errno(&e))?;
            let a = attr(&md);
            if a.ino.0 != 1 {
                self.inodes.lock().unwrap().insert(a.ino.0, p);
            }
            Ok(a)
        });
        let (attr_ttl, entry_ttl) = (self.attr_ttl, self.entry_ttl);
        self.later(t, move || match res {
            Ok(a) => reply.entry_with_ttls(&attr_ttl, &entry_ttl, &a, Generation(0)),
            Err(e) => reply.error(e),
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let t = Instant::now();
        self.stats.count(Op::Getattr);
        let res = self.lstat(ino).map(|(_, md)| attr(&md));
        let ttl = self.attr_ttl;
        self.later(t, move || match res {
            Ok(a) => reply.attr(&ttl, &a),
            Err(e) => reply.error(e),
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let t = Instant::now();
        self.stats.count(Op::Readlink);
        let res = self
            .path(ino)
            .and_then(|p| fs::read_link(p).map_err(|e| errno(&e)));
        self.later(t, move || match res {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let t = Instant::now();
        self.stats.count(Op::Opendir);
        let res = self.read_dir(ino).map(|v| {
            let fh = self.fh();
            self.dirs.lock().unwrap().insert(fh, Arc::new(v));
            fh
        });
        self.later(t, move || match res {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let t = Instant::now();
        self.stats.count(Op::Readdir);
        let Some(d) = self.dirs.lock().unwrap().get(&fh.0).cloned() else {
            return self.later(t, move || reply.error(Errno::EBADF));
        };
        for (i, e) in d.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(e.ino), i as u64 + 1, e.kind, &e.name) {
                break; // buffer full; the kernel asks again from this offset
            }
        }
        self.later(t, move || reply.ok());
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.stats.count(Op::Releasedir);
        self.dirs.lock().unwrap().remove(&fh.0);
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // the mount is "ro": the kernel refuses write opens before they get here
        self.stats.count(Op::Open);
        match self
            .path(ino)
            .and_then(|p| File::open(p).map_err(|e| errno(&e)))
        {
            Ok(f) => {
                let fh = self.fh();
                self.files.lock().unwrap().insert(fh, Arc::new(f));
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.stats.count(Op::Read);
        let Some(f) = self.files.lock().unwrap().get(&fh.0).cloned() else {
            return reply.error(Errno::EBADF);
        };
        let mut buf = vec![0u8; size as usize];
        let mut n = 0;
        while n < buf.len() {
            match f.read_at(&mut buf[n..], offset + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return reply.error(errno(&e)),
            }
        }
        reply.data(&buf[..n]);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.stats.count(Op::Release);
        self.files.lock().unwrap().remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.stats.count(Op::Statfs);
        let s = match rustix::fs::statvfs(&self.root) {
            Ok(s) => s,
            Err(e) => return reply.error(errno(&e.into())),
        };
        reply.statfs(
            s.f_blocks,
            s.f_bfree,
            s.f_bavail,
            s.f_files,
            s.f_ffree,
            s.f_bsize as u32,
            s.f_namemax as u32,
            s.f_frsize as u32,
        );
    }
}

// -------------------------------------------------------------------- main
const USAGE: &str = "usage: slowfs BACKING MOUNTPOINT [--latency-us N (default 1000)] \
[--attr-ttl-ms N (default 0)] [--entry-ttl-ms N (default 0)] [--fuse-threads N (default 1)] \
[--stats FILE] [--allow-other]
       slowfs --synthetic files=N[,dirs=D][,seed=S (default 42)][,churn=C (default 0)] \
MOUNTPOINT [--summary FILE] [same options]";

fn die(msg: &str) -> ! {
    eprintln!("slowfs: {msg}\n{USAGE}");
    std::process::exit(2)
}

fn main() {
    let mut pos: Vec<PathBuf> = Vec::new();
    let (mut latency_us, mut attr_ms, mut entry_ms, mut threads) = (1000u64, 0u64, 0u64, 1usize);
    let mut stats_file: Option<PathBuf> = None;
    let mut allow_other = false;
    let mut synth: Option<synthetic::Spec> = None;
    let mut summary: Option<PathBuf> = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> u64 {
            let v = args
                .next()
                .unwrap_or_else(|| die(&format!("{name} needs a value")));
            v.to_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| die(&format!("bad {name}")))
        };
        match a.to_str() {
            Some("--latency-us") => latency_us = num("--latency-us"),
            Some("--attr-ttl-ms") => attr_ms = num("--attr-ttl-ms"),
            Some("--entry-ttl-ms") => entry_ms = num("--entry-ttl-ms"),
            Some("--fuse-threads") => threads = num("--fuse-threads").max(1) as usize,
            Some("--stats") => {
                stats_file = Some(
                    args.next()
                        .unwrap_or_else(|| die("--stats needs a file"))
                        .into(),
                )
            }
            Some("--allow-other") => allow_other = true,
            Some("--synthetic") => {
                let v = args
                    .next()
                    .unwrap_or_else(|| die("--synthetic needs files=N[,...]"));
                let spec = synthetic::Spec::parse(&v.to_string_lossy());
                synth = Some(spec.unwrap_or_else(|e| die(&e)));
            }
            Some("--summary") => {
                summary = Some(
                    args.next()
                        .unwrap_or_else(|| die("--summary needs a file"))
                        .into(),
                )
            }
            Some("-h" | "--help") => {
                println!("{USAGE}");
                return;
            }
            Some(s) if s.starts_with('-') => die(&format!("unknown option {s}")),
            _ => pos.push(a.into()),
        }
    }
    // Build the synthetic tree (and its ground truth) before mounting, with
    // the stop signals still live: a long --summary can be interrupted.
    let (mountpoint, root, tree) = match synth {
        Some(spec) => {
            let [mountpoint] = <[PathBuf; 1]>::try_from(pos)
                .unwrap_or_else(|_| die("--synthetic takes MOUNTPOINT only (no BACKING)"));
            let t = Instant::now();
            let tree = synthetic::Tree::new(spec);
            let table_s = t.elapsed().as_secs_f64();
            eprintln!(
                "slowfs: synthetic {}: {} directories, table {:.1} MB, built in {table_s:.2} s",
                tree.spec.label(),
                tree.ndirs() - 1,
                tree.table_bytes() as f64 / 1e6
            );
            if let Some(path) = &summary {
                let t = Instant::now();
                let abs = std::path::absolute(&mountpoint).unwrap_or(mountpoint.clone());
                let js = tree.summary(&abs.to_string_lossy(), table_s);
                fs::write(path, js).unwrap_or_else(|e| die(&format!("{}: {e}", path.display())));
                let s = t.elapsed().as_secs_f64();
                eprintln!("slowfs: summary in {s:.2} s -> {}", path.display());
            }
            (mountpoint, PathBuf::new(), Some(tree))
        }
        None => {
            if summary.is_some() {
                die("--summary needs --synthetic");
            }
            let [backing, mountpoint] = <[PathBuf; 2]>::try_from(pos)
                .unwrap_or_else(|_| die("need BACKING and MOUNTPOINT"));
            let root = fs::canonicalize(&backing)
                .unwrap_or_else(|e| die(&format!("{}: {e}", backing.display())));
            if !root.is_dir() {
                die(&format!("{} is not a directory", root.display()));
            }
            (mountpoint, root, None)
        }
    };

    // Block the stop signals in every thread; one thread sigwait()s for them
    // and unmounts, which ends the session loop cleanly. Neither std nor rustix
    // offers a signal mask, hence the one exemption from the workspace's ban.
    // SAFETY: a zeroed sigset_t is emptied by sigemptyset before any use.
    #[allow(unsafe_code)]
    let sigs = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };

    let sh = Shared {
        delay: Arc::new(Delay {
            latency: Duration::from_micros(latency_us),
            q: Mutex::new(VecDeque::new()),
            cv: Condvar::new(),
        }),
        stats: Arc::new(Stats::default()),
        parallel_dirops: Arc::new(AtomicBool::new(false)),
        kernel_abi: Arc::new(Mutex::new(String::new())),
    };
    let (attr_ttl, entry_ttl) = (
        Duration::from_millis(attr_ms),
        Duration::from_millis(entry_ms),
    );

    let mut config = Config::default();
    // no commas: fusermount3 would split the option there
    let fsname = match &tree {
        Some(t) => format!("slowfs:synthetic:{}", t.spec.label().replace(',', ":")),
        None => format!("slowfs:{}", root.display()),
    };
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(fsname),
        MountOption::Subtype("slowfs".into()),
        MountOption::NoAtime,
    ];
    if allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(threads);
    config.clone_fd = threads > 1;

    let what = match &tree {
        Some(t) => format!("synthetic {}", t.spec.label()),
        None => root.display().to_string(),
    };
    let what = format!(
        "{what} mounted on {} (read-only), latency {latency_us} us, attr ttl {attr_ms} ms, \
         entry ttl {entry_ms} ms, fuse threads {threads}",
        mountpoint.display()
    );
    match tree {
        Some(tree) => {
            let fs = synthetic::SynthFs {
                tree,
                attr_ttl,
                entry_ttl,
                sh: sh.clone(),
            };
            serve(fs, &what, &mountpoint, &config, &sh, sigs, stats_file)
        }
        None => {
            let fs = SlowFs {
                root,
                attr_ttl,
                entry_ttl,
                delay: sh.delay.clone(),
                stats: sh.stats.clone(),
                parallel_dirops: sh.parallel_dirops.clone(),
                kernel_abi: sh.kernel_abi.clone(),
                inodes: Mutex::new(HashMap::new()),
                dirs: Mutex::new(HashMap::new()),
                files: Mutex::new(HashMap::new()),
                next_fh: AtomicU64::new(1),
            };
            serve(fs, &what, &mountpoint, &config, &sh, sigs, stats_file)
        }
    }
}

/// Mount `fs`, serve until a stop signal unmounts it, write the final counters.
fn serve<FS: fuser::Filesystem>(
    fs: FS,
    what: &str,
    mountpoint: &Path,
    config: &Config,
    sh: &Shared,
    sigs: libc::sigset_t,
    stats_file: Option<PathBuf>,
) {
    let (delay, stats) = (&sh.delay, &sh.stats);
    let latency_us = delay.latency.as_micros() as u64;
    let mut session = Session::new(fs, mountpoint, config)
        .unwrap_or_else(|e| die(&format!("mount on {} failed: {e}", mountpoint.display())));
    eprintln!(
        "slowfs: {what}, parallel dirops {}, kernel FUSE ABI {}",
        sh.parallel_dirops.load(Relaxed),
        sh.kernel_abi.lock().unwrap()
    );

    if !delay.latency.is_zero() {
        let d = delay.clone();
        std::thread::Builder::new()
            .name("timer".into())
            .spawn(move || d.run())
            .unwrap();
    }
    if let Some(path) = stats_file.clone() {
        let st = stats.clone();
        std::thread::spawn(move || {
            let tmp = path.with_extension("tmp");
            let mut last = String::new();
            loop {
                let s = st.json(latency_us);
                if s != last {
                    let ok = File::create(&tmp).and_then(|mut f| writeln!(f, "{s}"));
                    if ok.is_ok() {
                        let _ = fs::rename(&tmp, &path);
                    }
                    last = s;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    }
    let mut unmounter = session.unmount_callable();
    let mp = mountpoint.to_path_buf();
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: `sigs` is an initialised set; `sig` outlives the call.
        #[allow(unsafe_code)]
        let _ = unsafe { libc::sigwait(&sigs, &mut sig) };
        eprintln!("slowfs: signal {sig}, unmounting {}", mp.display());
        if let Err(e) = unmounter.unmount() {
            eprintln!(
                "slowfs: unmount failed: {e} (try: umount -l {})",
                mp.display()
            );
        }
    });

    let res = session.run();
    if let Some(path) = stats_file {
        let _ = fs::write(&path, stats.json(latency_us) + "\n");
    }
    eprintln!("slowfs: done; requests: {}", stats.json(latency_us));
    if let Err(e) = res {
        eprintln!("slowfs: session ended with error: {e}");
        std::process::exit(1);
    }
}
