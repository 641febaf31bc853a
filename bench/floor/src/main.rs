//! floor: the least work a metadata scanner can do on Linux with std only.
//!
//!   floor [-j THREADS] [--stat entry|path|none] ROOT
//!
//! Walks ROOT with std::fs::read_dir (getdents64) and issues exactly one
//! lstat-equivalent per entry, without following symlinks:
//!   --stat entry  DirEntry::metadata(): statx(dirfd, name, AT_SYMLINK_NOFOLLOW),
//!                 relative to the open directory (default; the cheapest)
//!   --stat path   std::fs::symlink_metadata(full path): statx(AT_FDCWD, path)
//!   --stat none   no stat at all, d_type only (getdents-only lower bound;
//!                 sizes are then 0)
//! Counts regular files and sums st_size; prints one JSON line, nothing else.
//! With THREADS > 1 directories (and 1024-entry batches of big directories)
//! go through one shared LIFO queue.
use std::fs;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

#[derive(Clone, Copy, PartialEq)]
enum StatMode {
    Entry,
    Path,
    None,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    files: u64,
    dirs: u64,
    other: u64,
    bytes: u64,
    errors: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.other += o.other;
        self.bytes += o.bytes;
        self.errors += o.errors;
    }
}

enum Task {
    Dir(PathBuf),
    Batch(Vec<fs::DirEntry>),
}

struct Queue {
    state: Mutex<(Vec<Task>, usize)>, // (tasks, busy workers)
    cv: Condvar,
}

const BATCH: usize = 1024;

/// Stat one entry; returns Some(path) if it is a directory to descend into.
#[inline]
fn visit(e: &fs::DirEntry, mode: StatMode, c: &mut Counts) -> Option<PathBuf> {
    match mode {
        StatMode::None => match e.file_type() {
            Ok(ft) if ft.is_dir() => {
                c.dirs += 1;
                Some(e.path())
            }
            Ok(ft) if ft.is_file() => {
                c.files += 1;
                None
            }
            Ok(_) => {
                c.other += 1;
                None
            }
            Err(_) => {
                c.errors += 1;
                None
            }
        },
        _ => {
            let md = if mode == StatMode::Entry {
                e.metadata()
            } else {
                fs::symlink_metadata(e.path())
            };
            match md {
                Ok(m) => {
                    let ft = m.file_type();
                    if ft.is_dir() {
                        c.dirs += 1;
                        Some(e.path())
                    } else if ft.is_file() {
                        c.files += 1;
                        c.bytes += m.len();
                        None
                    } else {
                        c.other += 1;
                        None
                    }
                }
                Err(_) => {
                    c.errors += 1;
                    None
                }
            }
        }
    }
}

fn walk_serial(root: PathBuf, mode: StatMode) -> Counts {
    let mut c = Counts::default();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        let rd = match fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(_) => {
                c.errors += 1;
                continue;
            }
        };
        for e in rd {
            match e {
                Ok(e) => {
                    if let Some(p) = visit(&e, mode, &mut c) {
                        stack.push(p);
                    }
                }
                Err(_) => c.errors += 1,
            }
        }
    }
    c
}

fn push(q: &Queue, tasks: &mut Vec<Task>) {
    if tasks.is_empty() {
        return;
    }
    let mut g = q.state.lock().unwrap();
    g.0.append(tasks);
    drop(g);
    q.cv.notify_all();
}

fn worker(q: &Queue, mode: StatMode) -> Counts {
    let mut c = Counts::default();
    let mut out: Vec<Task> = Vec::new();
    loop {
        let task = {
            let mut g = q.state.lock().unwrap();
            loop {
                if let Some(t) = g.0.pop() {
                    g.1 += 1;
                    break Some(t);
                }
                if g.1 == 0 {
                    break None;
                }
                g = q.cv.wait(g).unwrap();
            }
        };
        let task = match task {
            Some(t) => t,
            None => {
                q.cv.notify_all();
                return c;
            }
        };
        match task {
            Task::Dir(d) => match fs::read_dir(&d) {
                Ok(rd) => {
                    let mut batch: Vec<fs::DirEntry> = Vec::new();
                    for e in rd {
                        match e {
                            Ok(e) => {
                                batch.push(e);
                                if batch.len() == BATCH {
                                    // hand full batches to the other threads,
                                    // keep reading
                                    out.push(Task::Batch(std::mem::take(&mut batch)));
                                    push(q, &mut out);
                                }
                            }
                            Err(_) => c.errors += 1,
                        }
                    }
                    for e in &batch {
                        if let Some(p) = visit(e, mode, &mut c) {
                            out.push(Task::Dir(p));
                        }
                    }
                }
                Err(_) => c.errors += 1,
            },
            Task::Batch(b) => {
                for e in &b {
                    if let Some(p) = visit(e, mode, &mut c) {
                        out.push(Task::Dir(p));
                    }
                }
            }
        }
        let mut g = q.state.lock().unwrap();
        g.0.append(&mut out);
        g.1 -= 1;
        drop(g);
        q.cv.notify_all();
    }
}

fn main() {
    let mut threads = 1usize;
    let mut mode = StatMode::Entry;
    let mut root: Option<PathBuf> = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("-j") => threads = args.next().unwrap().to_str().unwrap().parse().unwrap(),
            Some("--stat") => {
                mode = match args.next().unwrap().to_str().unwrap() {
                    "entry" => StatMode::Entry,
                    "path" => StatMode::Path,
                    "none" => StatMode::None,
                    m => panic!("bad --stat {m}"),
                }
            }
            _ => root = Some(PathBuf::from(a)),
        }
    }
    let root = root.expect("usage: floor [-j N] [--stat entry|path|none] ROOT");
    let t0 = Instant::now();
    let total = if threads <= 1 {
        walk_serial(root, mode)
    } else {
        let q = Queue {
            state: Mutex::new((vec![Task::Dir(root)], 0)),
            cv: Condvar::new(),
        };
        let mut total = Counts::default();
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads).map(|_| s.spawn(|| worker(&q, mode))).collect();
            for h in hs {
                total.add(&h.join().unwrap());
            }
        });
        total
    };
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{{\"threads\":{},\"stat\":\"{}\",\"files\":{},\"dirs\":{},\"other\":{},\"bytes\":{},\"errors\":{},\"secs\":{:.3},\"files_per_s\":{:.0},\"entries_per_s\":{:.0}}}",
        threads,
        match mode {
            StatMode::Entry => "entry",
            StatMode::Path => "path",
            StatMode::None => "none",
        },
        total.files,
        total.dirs,
        total.other,
        total.bytes,
        total.errors,
        secs,
        total.files as f64 / secs,
        (total.files + total.dirs + total.other) as f64 / secs
    );
}
